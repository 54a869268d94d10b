//! The write-ahead log: every accepted batch is appended and fsync'd before it is
//! acknowledged. Concurrent writers share fsyncs (group commit): a writer whose record
//! was already covered by another writer's fsync does not sync again.
//!
//! Files are `wal/<segment>.wal`, each a sequence of `[len u32][crc32 u32][payload]`; a
//! segment is closed (fsync'd) and a new one started every `SEGMENT_BYTES`. The engine
//! deletes whole old segments once every sample in them is sealed into chunks.
//! A torn record at the end of the last segment (a crash mid-write) is cut off at open;
//! a bad record anywhere else is corruption and refuses to open.

use crate::codec::{WalRecord, decode_wal_record};
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub(crate) struct Wal {
    dir: PathBuf,
    /// Size at which the open segment is closed and a new one started.
    segment_bytes: u64,
    /// The open segment and the sequence number of the last appended record.
    state: Mutex<Segment>,
    /// The sequence number known to be on disk.
    synced: Mutex<u64>,
}

struct Segment {
    file: Arc<File>,
    number: u64,
    bytes: u64,
    seq: u64,
    /// Sizes of the closed segments still on disk.
    closed: std::collections::BTreeMap<u64, u64>,
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:010}.wal"))
}

fn io(context: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let context = format!("{context} {}", path.display());
    move |e| Error::Io(format!("{context}: {e}"))
}

/// Segment numbers present in `dir`, ascending.
fn segments(dir: &Path) -> Result<Vec<u64>> {
    let mut numbers: Vec<u64> = std::fs::read_dir(dir)
        .map_err(io("listing", dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".wal")?.parse().ok())
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

impl Wal {
    /// Opens the log in `dir`, returning every record still in it with its segment
    /// number (oldest first). New records go to a fresh segment.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Wal, Vec<(u64, WalRecord)>)> {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let numbers = segments(dir)?;
        let mut records = Vec::new();
        let mut closed = std::collections::BTreeMap::new();
        for (i, number) in numbers.iter().enumerate() {
            let last = i + 1 == numbers.len();
            let mut in_segment = Vec::new();
            let path = segment_path(dir, *number);
            read_segment(&path, last, &mut in_segment)?;
            records.extend(in_segment.into_iter().map(|r| (*number, r)));
            closed.insert(*number, std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0));
        }
        let number = numbers.last().map_or(1, |n| n + 1);
        let file = create_segment(dir, number)?;
        let state = Segment { file: Arc::new(file), number, bytes: 0, seq: 0, closed };
        let wal = Wal { dir: dir.to_owned(), segment_bytes, state: Mutex::new(state), synced: Mutex::new(0) };
        Ok((wal, records))
    }

    /// Appends one record; returns its sequence number (for `sync`) and its segment.
    pub fn append(&self, payload: &[u8]) -> Result<(u64, u64)> {
        let mut frame = Vec::with_capacity(payload.len() + 8);
        frame.extend((payload.len() as u32).to_le_bytes());
        frame.extend(crc32fast::hash(payload).to_le_bytes());
        frame.extend(payload);
        let mut state = self.state.lock().map_err(|_| Error::Poisoned)?;
        if state.bytes >= self.segment_bytes {
            self.close_segment(&mut state)?;
        }
        let path = segment_path(&self.dir, state.number);
        (&*state.file).write_all(&frame).map_err(io("appending to", &path))?;
        state.bytes += frame.len() as u64;
        state.seq += 1;
        Ok((state.seq, state.number))
    }

    /// Closes the open segment (even if not full) so that it can be deleted once sealed.
    pub fn rotate(&self) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| Error::Poisoned)?;
        if state.bytes > 0 {
            self.close_segment(&mut state)?;
        }
        Ok(())
    }

    /// Closes the open segment: its records are on disk before writers move on (their
    /// `sync` will fsync the new file).
    fn close_segment(&self, state: &mut Segment) -> Result<()> {
        state.file.sync_data().map_err(io("syncing", &segment_path(&self.dir, state.number)))?;
        let (number, bytes) = (state.number, state.bytes);
        state.closed.insert(number, bytes);
        state.file = Arc::new(create_segment(&self.dir, number + 1)?);
        state.number = number + 1;
        state.bytes = 0;
        Ok(())
    }

    /// The open segment's number.
    pub fn current_segment(&self) -> u64 {
        self.state.lock().map(|s| s.number).unwrap_or(0)
    }

    /// Bytes per segment still on disk, oldest first, the open one last.
    pub fn segment_sizes(&self) -> Vec<(u64, u64)> {
        let Ok(state) = self.state.lock() else { return Vec::new() };
        let mut sizes: Vec<(u64, u64)> = state.closed.iter().map(|(n, b)| (*n, *b)).collect();
        sizes.push((state.number, state.bytes));
        sizes
    }

    /// Returns once record `seq` is on disk, sharing the fsync with concurrent writers.
    pub fn sync(&self, seq: u64) -> Result<()> {
        let mut synced = self.synced.lock().map_err(|_| Error::Poisoned)?;
        if *synced >= seq {
            return Ok(());
        }
        let (file, upto, number) = {
            let state = self.state.lock().map_err(|_| Error::Poisoned)?;
            (state.file.clone(), state.seq, state.number)
        };
        file.sync_data().map_err(io("syncing", &segment_path(&self.dir, number)))?;
        *synced = upto;
        Ok(())
    }

    pub fn total_bytes(&self) -> u64 {
        self.segment_sizes().iter().map(|(_, b)| b).sum()
    }

    /// Deletes the closed segments numbered below `boundary` (never the open one).
    pub fn remove_before(&self, boundary: u64) -> Result<()> {
        let doomed: Vec<u64> = {
            let Ok(state) = self.state.lock() else { return Err(Error::Poisoned) };
            state.closed.range(..boundary.min(state.number)).map(|(n, _)| *n).collect()
        };
        if doomed.is_empty() {
            return Ok(());
        }
        for number in &doomed {
            let path = segment_path(&self.dir, *number);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io(format!("removing {}: {e}", path.display()))),
            }
        }
        if let Ok(mut state) = self.state.lock() {
            for number in &doomed {
                state.closed.remove(number);
            }
        }
        sync_dir(&self.dir)
    }
}

fn create_segment(dir: &Path, number: u64) -> Result<File> {
    let path = segment_path(dir, number);
    let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io("creating", &path))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Makes a created or removed file name durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("syncing directory", dir))
}

fn read_segment(path: &Path, last: bool, records: &mut Vec<WalRecord>) -> Result<()> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io("reading", path))?;
    let mut at = 0usize;
    while at < bytes.len() {
        match frame_at(&bytes, at) {
            Some((payload, next)) => {
                records.push(decode_wal_record(payload)?);
                at = next;
            }
            None if last => {
                tracing::warn!(path = %path.display(), offset = at, lost_bytes = bytes.len() - at, "cutting a torn record off the end of the WAL (never acknowledged)");
                let file = OpenOptions::new().write(true).open(path).map_err(io("opening", path))?;
                file.set_len(at as u64).and_then(|()| file.sync_all()).map_err(io("truncating", path))?;
                break;
            }
            None => return Err(Error::Corrupt(format!("{} has a bad record at byte {at}", path.display()))),
        }
    }
    Ok(())
}

/// The payload of the frame at `at` and the offset after it, if the frame is whole and its checksum matches.
fn frame_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(at..at + 8)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let payload = bytes.get(at + 8..at + 8 + len)?;
    (crc32fast::hash(payload) == crc).then_some((payload, at + 8 + len))
}
