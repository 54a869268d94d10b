//! Sealed chunks on disk: append-only segment files `chunks/<n>.seg` of records
//! `[len u32][crc32 u32][series varint][start zigzag varint][end - start varint][chunk]`,
//! and an in-memory index per series rebuilt by scanning the record headers at open.
//! (Varints keep the per-chunk overhead near 12 bytes: short series are common.)
//!
//! The record is exactly the row a PostgreSQL backend will store as
//! `(series, start, end, count, bytea)`.

use crate::codec::{Reader, decode_chunk, encode_chunk, put_varint, unzigzag, zigzag};
use crate::sample::{Sample, SeriesId};
use crate::wal::sync_dir;
use crate::{Error, Result};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Where one chunk lives and what it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    pub start: i64,
    pub end: i64,
    segment: u32,
    /// Offset of the chunk bytes (after the record header) and their length.
    offset: u64,
    len: u32,
}

/// The frame around a record: length and checksum.
const FRAME: usize = 8;
const SEGMENT_LIMIT: u64 = 256 << 20;

pub(crate) struct ChunkStore {
    dir: PathBuf,
    writer: Mutex<Writer>,
    readers: RwLock<HashMap<u32, Arc<File>>>,
    index: RwLock<HashMap<SeriesId, Vec<ChunkMeta>>>,
}

struct Writer {
    file: File,
    segment: u32,
    bytes: u64,
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
        for (i, segment) in numbers.iter().enumerate() {
            scan_segment(&segment_path(dir, *segment), *segment, i + 1 == numbers.len(), &mut index)?;
        }
        for metas in index.values_mut() {
            metas.sort_by_key(|m| (m.start, m.segment, m.offset));
        }
        let segment = numbers.last().copied().unwrap_or(1);
        let path = segment_path(dir, segment);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            writer: Mutex::new(Writer { file, segment, bytes }),
            readers: RwLock::new(HashMap::new()),
            index: RwLock::new(index),
        })
    }

    /// Compresses and durably appends one chunk per series, then publishes them in the index.
    pub fn append(&self, chunks: &[(SeriesId, Vec<Sample>)]) -> Result<()> {
        let mut encoded = Vec::with_capacity(chunks.len());
        for (id, samples) in chunks.iter().filter(|(_, s)| !s.is_empty()) {
            encoded.push((
                *id,
                samples.first().map_or(0, |s| s.ts),
                samples.last().map_or(0, |s| s.ts),
                encode_chunk(samples)?,
            ));
        }
        let mut writer = self.writer.lock().map_err(|_| Error::Poisoned)?;
        if writer.bytes > SEGMENT_LIMIT {
            let segment = writer.segment + 1;
            let path = segment_path(&self.dir, segment);
            writer.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(format!("creating {}", path.display())))?;
            writer.segment = segment;
            writer.bytes = 0;
            sync_dir(&self.dir)?;
        }
        let mut buffer = Vec::new();
        let mut metas = Vec::with_capacity(encoded.len());
        for (id, start, end, bytes) in encoded {
            let mut record = Vec::with_capacity(24 + bytes.len());
            put_varint(&mut record, u64::from(id));
            put_varint(&mut record, zigzag(start));
            put_varint(&mut record, end.wrapping_sub(start) as u64);
            let header = record.len();
            record.extend(&bytes);
            let offset = writer.bytes + (buffer.len() + FRAME + header) as u64;
            buffer.extend((record.len() as u32).to_le_bytes());
            buffer.extend(crc32fast::hash(&record).to_le_bytes());
            buffer.extend(record);
            let meta = ChunkMeta { start, end, segment: writer.segment, offset, len: bytes.len() as u32 };
            metas.push((id, meta));
        }
        let path = segment_path(&self.dir, writer.segment);
        writer
            .file
            .write_all(&buffer)
            .and_then(|()| writer.file.sync_data())
            .map_err(io(format!("writing {}", path.display())))?;
        writer.bytes += buffer.len() as u64;
        drop(writer);
        let mut index = self.index.write().map_err(|_| Error::Poisoned)?;
        for (id, meta) in metas {
            let list = index.entry(id).or_default();
            let at = list.partition_point(|m| m.start <= meta.start);
            list.insert(at, meta);
        }
        Ok(())
    }

    /// Chunks of a series that may hold samples in `[from, to)`, oldest first.
    pub fn overlapping(&self, id: SeriesId, from: i64, to: i64) -> Vec<ChunkMeta> {
        let Ok(index) = self.index.read() else { return Vec::new() };
        index
            .get(&id)
            .map(|l| l.iter().filter(|m| m.start < to && m.end >= from).copied().collect())
            .unwrap_or_default()
    }

    pub fn last(&self, id: SeriesId) -> Option<ChunkMeta> {
        let index = self.index.read().ok()?;
        index.get(&id)?.iter().max_by_key(|m| m.end).copied()
    }

    pub fn read(&self, meta: &ChunkMeta) -> Result<Vec<Sample>> {
        let file = self.reader(meta.segment)?;
        let mut bytes = vec![0u8; meta.len as usize];
        file.read_exact_at(&mut bytes, meta.offset).map_err(io(format!("reading segment {}", meta.segment)))?;
        decode_chunk(&bytes)
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

/// Reads record headers (verifying checksums) to rebuild the index. A torn record at
/// the end of the last segment was never reported as sealed; it is cut off.
fn scan_segment(path: &Path, segment: u32, last: bool, index: &mut HashMap<SeriesId, Vec<ChunkMeta>>) -> Result<()> {
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
        let (id, start, end, header_len) = record_header(record)
            .map_err(|e| Error::Corrupt(format!("{}: chunk record at byte {at}: {e}", path.display())))?;
        let offset = (at + FRAME + header_len) as u64;
        let meta = ChunkMeta { start, end, segment, offset, len: (record.len() - header_len) as u32 };
        index.entry(id).or_default().push(meta);
        at += FRAME + record.len();
    }
    Ok(())
}

/// (series, start, end, header length) of a chunk record.
fn record_header(record: &[u8]) -> Result<(SeriesId, i64, i64, usize)> {
    let mut reader = Reader::new(record);
    let id = SeriesId::try_from(reader.varint()?).map_err(|_| Error::Corrupt("series id out of range".into()))?;
    let start = unzigzag(reader.varint()?);
    let end = start.wrapping_add(reader.varint()? as i64);
    Ok((id, start, end, record.len() - reader.remaining()))
}
