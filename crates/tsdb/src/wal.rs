//! The write-ahead log: every accepted batch is appended and fsync'd before it is
//! acknowledged. The committer appends a whole group of records with one write and one
//! fsync (group commit).
//!
//! Files are `wal/<segment>.wal`, each a sequence of `[len u32][crc32 u32][payload]`; the
//! top bit of `len` marks the record format (set: the current one, with flags and batch
//! digests; clear: the first format, still read). A segment is closed (fsync'd) and a new
//! one started every `segment_bytes`. A record's position is its segment and its index
//! in it. The engine deletes whole old segments once every sample in them is sealed and
//! every durable consumer of the stream is past them.
//!
//! Failures leave the log as it was: a failed append is cut off again (so no later
//! record lands behind a torn one), and after a failed fsync the segment is cut back to
//! what was synced and closed — pages the kernel failed to write are never trusted, and
//! the failed records are never acknowledged. If even the repair fails the log refuses
//! every later append until the hub restarts. A torn record at the end of the last
//! segment (a crash mid-write) is cut off at open; a bad record anywhere else is
//! corruption and refuses to open.

use crate::codec::{WalFormat, WalRecord, decode_wal_record};
use crate::{Error, Result};
use model::Position;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Marks a frame of the current record format in the length field.
const CURRENT_FORMAT: u32 = 0x8000_0000;

pub(crate) struct Wal {
    dir: PathBuf,
    /// Size at which the open segment is closed and a new one started.
    segment_bytes: u64,
    state: Mutex<Segment>,
}

struct Segment {
    file: File,
    number: u64,
    /// Bytes of whole, synced records in the open segment.
    bytes: u64,
    /// Records in the open segment (the next one's index).
    records: u32,
    /// Sizes of the closed segments still on disk.
    closed: std::collections::BTreeMap<u64, u64>,
    /// Set when a failure could not be repaired: nothing more is appended.
    failed: Option<String>,
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:010}.wal"))
}

/// An I/O error with what was being done; a full disk is its own kind of error, so that
/// callers can tell senders to keep their data and retry.
pub(crate) fn io_error(context: &str, path: &Path, error: &std::io::Error) -> Error {
    let text = format!("{context} {}: {error}", path.display());
    if is_disk_full(error) { Error::DiskFull(text) } else { Error::Io(text) }
}

fn is_disk_full(error: &std::io::Error) -> bool {
    // ENOSPC (28), EDQUOT (122) on Linux.
    error.kind() == std::io::ErrorKind::StorageFull || matches!(error.raw_os_error(), Some(28 | 122))
}

fn io(context: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let (context, path) = (context.to_owned(), path.to_owned());
    move |e| io_error(&context, &path, &e)
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
    /// Opens the log in `dir`, returning every record still in it with its position
    /// (oldest first). New records go to a fresh segment.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Wal, Vec<(Position, WalRecord)>)> {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let numbers = segments(dir)?;
        let mut records = Vec::new();
        let mut closed = std::collections::BTreeMap::new();
        for (i, number) in numbers.iter().enumerate() {
            let last = i + 1 == numbers.len();
            let path = segment_path(dir, *number);
            let before = records.len();
            read_segment(&path, last, &mut records, *number)?;
            if records.len() - before > u32::MAX as usize {
                return Err(Error::Corrupt(format!("{} holds too many records", path.display())));
            }
            closed.insert(*number, std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0));
        }
        let number = numbers.last().map_or(1, |n| n + 1);
        let file = create_segment(dir, number)?;
        let state = Segment { file, number, bytes: 0, records: 0, closed, failed: None };
        let wal = Wal { dir: dir.to_owned(), segment_bytes, state: Mutex::new(state) };
        Ok((wal, records))
    }

    /// Appends records (payloads of the current format) and makes them durable with one
    /// write and one fsync; returns their positions. On failure nothing of them remains
    /// and the log is as it was.
    pub fn append_durable(&self, payloads: &[&[u8]]) -> Result<Vec<Position>> {
        // Frame headers apart, payloads written from where they are (no copy of the data).
        let mut headers = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|l| *l < CURRENT_FORMAT)
                .ok_or_else(|| Error::Invalid("a WAL record must be smaller than 2 GiB".into()))?;
            let mut header = [0u8; 8];
            header[..4].copy_from_slice(&(len | CURRENT_FORMAT).to_le_bytes());
            header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
            headers.push(header);
        }
        let total: u64 = payloads.iter().map(|p| p.len() as u64 + 8).sum();
        let mut state = self.state.lock().map_err(|_| Error::Poisoned)?;
        if let Some(failure) = &state.failed {
            return Err(Error::Io(format!("the telemetry WAL failed earlier ({failure}); restart the hub")));
        }
        if state.bytes >= self.segment_bytes || u32::MAX - state.records < payloads.len() as u32 {
            self.close_segment(&mut state)?;
        }
        let path = segment_path(&self.dir, state.number);
        let mut slices = Vec::with_capacity(2 * payloads.len());
        for (header, payload) in headers.iter().zip(payloads) {
            slices.push(std::io::IoSlice::new(header));
            slices.push(std::io::IoSlice::new(payload));
        }
        if let Err(error) = write_all_vectored(&state.file, &mut slices) {
            let error = io_error("appending to", &path, &error);
            self.cut_back(&mut state, false);
            return Err(error);
        }
        if let Err(error) = state.file.sync_data() {
            // The kernel may have dropped the pages it failed to write: this segment is
            // cut back to what was synced before and closed; the records are not acknowledged.
            let error = io_error("syncing", &path, &error);
            self.cut_back(&mut state, true);
            return Err(error);
        }
        let first = state.records;
        state.records += payloads.len() as u32;
        state.bytes += total;
        Ok((0..payloads.len() as u32).map(|i| Position::new(state.number, first + i)).collect())
    }

    /// Cuts the open segment back to its synced records; after a failed fsync also
    /// closes it. If that fails too, the log refuses further appends.
    fn cut_back(&self, state: &mut Segment, close: bool) {
        let path = segment_path(&self.dir, state.number);
        let repaired = state.file.set_len(state.bytes).and_then(|()| state.file.sync_all());
        let repaired = match repaired {
            Ok(()) if close => self.close_segment(state).map_err(|e| std::io::Error::other(e.to_string())),
            other => other,
        };
        if let Err(error) = repaired {
            tracing::error!(path = %path.display(), %error, "cannot cut a failed append off the WAL; refusing further writes");
            state.failed = Some(format!("cutting back {}: {error}", path.display()));
        }
    }

    /// Closes the open segment (even if not full) so that it can be deleted once sealed.
    pub fn rotate(&self) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| Error::Poisoned)?;
        if state.bytes > 0 {
            self.close_segment(&mut state)?;
        }
        Ok(())
    }

    /// Closes the open segment and starts the next one.
    fn close_segment(&self, state: &mut Segment) -> Result<()> {
        state.file.sync_data().map_err(io("syncing", &segment_path(&self.dir, state.number)))?;
        let next = create_segment(&self.dir, state.number + 1)?;
        let (number, bytes) = (state.number, state.bytes);
        state.closed.insert(number, bytes);
        state.file = next;
        state.number = number + 1;
        state.bytes = 0;
        state.records = 0;
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
                Err(e) => return Err(io_error("removing", &path, &e)),
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

/// Writes every slice, however the kernel splits the writes (and at most `IOV_MAX`
/// slices per call).
fn write_all_vectored(mut file: &File, mut slices: &mut [std::io::IoSlice<'_>]) -> std::io::Result<()> {
    const IOV_MAX: usize = 1024;
    while !slices.is_empty() {
        match file.write_vectored(&slices[..slices.len().min(IOV_MAX)]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => std::io::IoSlice::advance_slices(&mut slices, written),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

fn read_segment(path: &Path, last: bool, records: &mut Vec<(Position, WalRecord)>, number: u64) -> Result<()> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io("reading", path))?;
    let mut at = 0usize;
    let mut index = 0u32;
    while at < bytes.len() {
        match frame_at(&bytes, at) {
            Some((payload, format, next)) => {
                records.push((Position::new(number, index), decode_wal_record(payload, format)?));
                index = index.wrapping_add(1);
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

/// The payload of the frame at `at`, its format and the offset after it, if the frame is
/// whole and its checksum matches.
fn frame_at(bytes: &[u8], at: usize) -> Option<(&[u8], WalFormat, usize)> {
    let header = bytes.get(at..at.checked_add(8)?)?;
    let raw = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let format = if raw & CURRENT_FORMAT != 0 { WalFormat::Current } else { WalFormat::First };
    let len = (raw & !CURRENT_FORMAT) as usize;
    let end = at.checked_add(8)?.checked_add(len)?;
    let payload = bytes.get(at + 8..end)?;
    (crc32fast::hash(payload) == crc).then_some((payload, format, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_wal_record;
    use model::Sample;

    #[test]
    fn a_group_of_more_records_than_one_system_call_takes_is_written_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let payloads: Vec<Vec<u8>> =
            (0..1500).map(|i| encode_wal_record(None, false, &[(i, &[Sample::good(i64::from(i), 0.5)][..])])).collect();
        {
            let (wal, replayed) = Wal::open(dir.path(), 1 << 30).expect("open");
            assert!(replayed.is_empty());
            let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let positions = wal.append_durable(&slices).expect("append");
            assert_eq!(positions.len(), 1500);
            assert!(positions.windows(2).all(|w| w[0] < w[1]));
        }
        let (_, replayed) = Wal::open(dir.path(), 1 << 30).expect("reopen");
        assert_eq!(replayed.len(), 1500);
        assert!(replayed.iter().enumerate().all(|(i, (_, r))| r.series[0].0 == i as u32));
    }
}
