//! Sealed records on disk: append-only segment files `<n>.seg` of records
//! `[len u32][crc32 u32][series varint][seq varint][start zigzag varint][end - start varint][payload]`,
//! and an in-memory index per series rebuilt by scanning the record headers at open.
//! (Varints keep the per-record overhead near 14 bytes: short series are common.)
//! The payload is a compressed chunk of raw samples or of rollup buckets; `seq` orders
//! records by write across every store, so that a later write wins over an earlier one.
//!
//! Retention drops whole segments: a segment is closed after `SEGMENT_LIMIT` bytes or a
//! day, and deleted once the newest sample it covers is older than the cutoff.
//!
//! The record is exactly the row a PostgreSQL backend will store as
//! `(series, seq, start, end, bytea)`.

use crate::SeriesId;
use crate::codec::{Reader, put_varint, unzigzag, zigzag};
use crate::wal::sync_dir;
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Where one chunk lives and what it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    pub start: i64,
    /// Inclusive.
    pub end: i64,
    /// Write order across all stores.
    pub seq: u64,
    segment: u32,
    /// Offset of the chunk bytes (after the record header) and their length.
    offset: u64,
    len: u32,
}

/// The frame around a record: length and checksum.
const FRAME: usize = 8;
const SEGMENT_LIMIT: u64 = 256 << 20;
/// A segment takes records for at most this long, so retention can delete it in time.
const SEGMENT_SPAN: Duration = Duration::from_secs(24 * 3600);

/// One record to append: a series' payload covering `[start, end]`.
pub(crate) struct Record {
    pub id: SeriesId,
    pub seq: u64,
    pub start: i64,
    pub end: i64,
    pub payload: Vec<u8>,
}

pub(crate) struct ChunkStore {
    dir: PathBuf,
    writer: Mutex<Writer>,
    readers: RwLock<HashMap<u32, Arc<File>>>,
    index: RwLock<HashMap<SeriesId, Vec<ChunkMeta>>>,
    /// Everything before this time has been deleted by retention (persisted in `expired`).
    expired_before: AtomicI64,
}

struct Writer {
    file: File,
    segment: u32,
    bytes: u64,
    opened: Instant,
    /// The newest timestamp each segment covers.
    newest: BTreeMap<u32, i64>,
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:08}.seg"))
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Io(format!("{context}: {e}"))
}

impl ChunkStore {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let mut numbers: Vec<u32> = std::fs::read_dir(dir)
            .map_err(io(format!("listing {}", dir.display())))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let mut index: HashMap<SeriesId, Vec<ChunkMeta>> = HashMap::new();
        let mut newest = BTreeMap::new();
        for (i, segment) in numbers.iter().enumerate() {
            let end = scan_segment(&segment_path(dir, *segment), *segment, i + 1 == numbers.len(), &mut index)?;
            newest.insert(*segment, end);
        }
        for metas in index.values_mut() {
            metas.sort_by_key(|m| (m.start, m.seq));
        }
        let expired_before = match std::fs::read_to_string(dir.join("expired")) {
            Ok(text) => {
                text.trim().parse().map_err(|_| Error::Corrupt(format!("{}/expired is not a time", dir.display())))?
            }
            Err(_) => i64::MIN,
        };
        // A fresh segment per open: the age of the last one is not known.
        let last = numbers.last().copied();
        let segment = match last {
            Some(n) if newest.get(&n).is_some_and(|e| *e != i64::MIN) => n + 1,
            Some(n) => n,
            None => 1,
        };
        let path = segment_path(dir, segment);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        newest.entry(segment).or_insert(i64::MIN);
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            writer: Mutex::new(Writer { file, segment, bytes, opened: Instant::now(), newest }),
            readers: RwLock::new(HashMap::new()),
            index: RwLock::new(index),
            expired_before: AtomicI64::new(expired_before),
        })
    }

    /// Durably appends records, then publishes them in the index.
    pub fn append(&self, records: Vec<Record>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer.lock().map_err(|_| Error::Poisoned)?;
        if writer.bytes > SEGMENT_LIMIT || (writer.bytes > 0 && writer.opened.elapsed() > SEGMENT_SPAN) {
            self.rotate(&mut writer)?;
        }
        let mut buffer = Vec::new();
        let mut metas = Vec::with_capacity(records.len());
        let mut newest = i64::MIN;
        for Record { id, seq, start, end, payload } in records {
            let mut record = Vec::with_capacity(24 + payload.len());
            put_varint(&mut record, u64::from(id));
            put_varint(&mut record, seq);
            put_varint(&mut record, zigzag(start));
            put_varint(&mut record, end.wrapping_sub(start) as u64);
            let header = record.len();
            record.extend(&payload);
            let offset = writer.bytes + (buffer.len() + FRAME + header) as u64;
            buffer.extend((record.len() as u32).to_le_bytes());
            buffer.extend(crc32fast::hash(&record).to_le_bytes());
            buffer.extend(record);
            newest = newest.max(end);
            let meta = ChunkMeta { start, end, seq, segment: writer.segment, offset, len: payload.len() as u32 };
            metas.push((id, meta));
        }
        let path = segment_path(&self.dir, writer.segment);
        writer
            .file
            .write_all(&buffer)
            .and_then(|()| writer.file.sync_data())
            .map_err(io(format!("writing {}", path.display())))?;
        writer.bytes += buffer.len() as u64;
        let segment = writer.segment;
        let slot = writer.newest.entry(segment).or_insert(i64::MIN);
        *slot = (*slot).max(newest);
        drop(writer);
        let mut index = self.index.write().map_err(|_| Error::Poisoned)?;
        for (id, meta) in metas {
            let list = index.entry(id).or_default();
            let at = list.partition_point(|m| (m.start, m.seq) <= (meta.start, meta.seq));
            list.insert(at, meta);
        }
        Ok(())
    }

    fn rotate(&self, writer: &mut Writer) -> Result<()> {
        let segment = writer.segment + 1;
        let path = segment_path(&self.dir, segment);
        writer.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("creating {}", path.display())))?;
        writer.segment = segment;
        writer.bytes = 0;
        writer.opened = Instant::now();
        writer.newest.insert(segment, i64::MIN);
        sync_dir(&self.dir)
    }

    /// Deletes the segments whose newest sample is older than `cutoff`; returns how many.
    pub fn drop_expired(&self, cutoff: i64) -> Result<usize> {
        let mut writer = self.writer.lock().map_err(|_| Error::Poisoned)?;
        let expired: Vec<u32> =
            writer.newest.iter().filter(|(_, end)| **end != i64::MIN && **end < cutoff).map(|(s, _)| *s).collect();
        if expired.is_empty() {
            return Ok(0);
        }
        if expired.contains(&writer.segment) {
            self.rotate(&mut writer)?;
        }
        // The watermark first: a crash after it leaves segments that are deleted next time.
        let path = self.dir.join("expired");
        let temporary = self.dir.join("expired.tmp");
        std::fs::write(&temporary, cutoff.to_string())
            .and_then(|()| File::open(&temporary)?.sync_all())
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(io(format!("writing {}", path.display())))?;
        self.expired_before.fetch_max(cutoff, Ordering::SeqCst);
        {
            let mut index = self.index.write().map_err(|_| Error::Poisoned)?;
            for list in index.values_mut() {
                list.retain(|m| !expired.contains(&m.segment));
            }
            index.retain(|_, list| !list.is_empty());
        }
        if let Ok(mut readers) = self.readers.write() {
            readers.retain(|s, _| !expired.contains(s));
        }
        for segment in &expired {
            writer.newest.remove(segment);
            let path = segment_path(&self.dir, *segment);
            std::fs::remove_file(&path).map_err(io(format!("deleting {}", path.display())))?;
        }
        sync_dir(&self.dir)?;
        Ok(expired.len())
    }

    /// Everything before this time has been deleted by retention.
    pub fn expired_before(&self) -> i64 {
        self.expired_before.load(Ordering::SeqCst)
    }

    /// The highest write sequence number in the store.
    pub fn max_seq(&self) -> u64 {
        self.index.read().map(|i| i.values().flatten().map(|m| m.seq).max().unwrap_or(0)).unwrap_or(0)
    }

    /// Chunks of a series that may hold samples in `[from, to)`, oldest first.
    pub fn overlapping(&self, id: SeriesId, from: i64, to: i64) -> Vec<ChunkMeta> {
        let Ok(index) = self.index.read() else { return Vec::new() };
        index
            .get(&id)
            .map(|l| l[..l.partition_point(|m| m.start < to)].iter().filter(|m| m.end >= from).copied().collect())
            .unwrap_or_default()
    }

    pub fn last(&self, id: SeriesId) -> Option<ChunkMeta> {
        let index = self.index.read().ok()?;
        index.get(&id)?.iter().max_by_key(|m| (m.end, m.seq)).copied()
    }

    /// The payload of a record.
    pub fn read(&self, meta: &ChunkMeta) -> Result<Vec<u8>> {
        let file = self.reader(meta.segment)?;
        let mut bytes = vec![0u8; meta.len as usize];
        file.read_exact_at(&mut bytes, meta.offset)
            .map_err(io(format!("reading {}", segment_path(&self.dir, meta.segment).display())))?;
        Ok(bytes)
    }

    fn reader(&self, segment: u32) -> Result<Arc<File>> {
        if let Some(file) = self.readers.read().ok().and_then(|r| r.get(&segment).cloned()) {
            return Ok(file);
        }
        let path = segment_path(&self.dir, segment);
        let file = Arc::new(File::open(&path).map_err(io(format!("opening {}", path.display())))?);
        if let Ok(mut readers) = self.readers.write() {
            readers.insert(segment, file.clone());
        }
        Ok(file)
    }

    /// Bytes of sealed data on disk.
    pub fn disk_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|entries| entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }

    pub fn chunk_count(&self) -> usize {
        self.index.read().map(|i| i.values().map(Vec::len).sum()).unwrap_or(0)
    }
}

/// Reads record headers (verifying checksums) to rebuild the index, and returns the
/// newest time the segment covers. A torn record at the end of the last segment was
/// never reported as sealed; it is cut off.
fn scan_segment(path: &Path, segment: u32, last: bool, index: &mut HashMap<SeriesId, Vec<ChunkMeta>>) -> Result<i64> {
    let mut newest = i64::MIN;
    let mut file = File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io(format!("reading {}", path.display())))?;
    let mut at = 0usize;
    while at < bytes.len() {
        let whole = bytes.get(at..at + FRAME).and_then(|h| {
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let record = bytes.get(at + FRAME..at + FRAME + len)?;
            (crc32fast::hash(record) == crc).then_some(record)
        });
        let Some(record) = whole else {
            if !last {
                return Err(Error::Corrupt(format!("{} has a bad chunk record at byte {at}", path.display())));
            }
            tracing::warn!(path = %path.display(), offset = at, "cutting a torn chunk record off the end");
            let file = OpenOptions::new().write(true).open(path).map_err(io(format!("opening {}", path.display())))?;
            file.set_len(at as u64).map_err(io(format!("truncating {}", path.display())))?;
            let _ = (&file).seek(SeekFrom::End(0));
            break;
        };
        let (id, seq, start, end, header_len) = record_header(record)
            .map_err(|e| Error::Corrupt(format!("{}: chunk record at byte {at}: {e}", path.display())))?;
        let offset = (at + FRAME + header_len) as u64;
        let meta = ChunkMeta { start, end, seq, segment, offset, len: (record.len() - header_len) as u32 };
        index.entry(id).or_default().push(meta);
        newest = newest.max(end);
        at += FRAME + record.len();
    }
    Ok(newest)
}

/// (series, seq, start, end, header length) of a chunk record.
fn record_header(record: &[u8]) -> Result<(SeriesId, u64, i64, i64, usize)> {
    let mut reader = Reader::new(record);
    let id = SeriesId::try_from(reader.varint()?).map_err(|_| Error::Corrupt("series id out of range".into()))?;
    let seq = reader.varint()?;
    let start = unzigzag(reader.varint()?);
    let end = start.wrapping_add(reader.varint()? as i64);
    Ok((id, seq, start, end, record.len() - reader.remaining()))
}
