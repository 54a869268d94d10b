//! Store-and-forward: a bounded on-disk queue of batches for the hub, so that an uplink
//! outage loses nothing (up to the bound) and a gateway restart or kill -9 neither.
//!
//! Layout: `<dir>/<n>.seg` files of records `[len u32][crc32 u32][payload]`, appended and
//! fsync'd before `push` returns, and `<dir>/cursor` (`<segment> <offset>`), the first
//! record not yet acknowledged by the hub, replaced atomically on `ack`. Every record
//! carries a sequence number; the uplink sends it as the batch id, so a batch replayed
//! after a crash between "hub stored it" and "cursor moved" is a no-op at the hub.
//!
//! When the queue exceeds `max_bytes`, the overflow policy applies: `drop_oldest`
//! (default) deletes the oldest segment, `drop_newest` refuses the new batch. Either way
//! every dropped sample is counted.

use model::sample::{Quality, Sample, SeriesKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What to do when the queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    #[default]
    DropOldest,
    DropNewest,
}

#[derive(Debug, Clone)]
pub struct SpoolOptions {
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub overflow: Overflow,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self { max_bytes: 1 << 30, segment_bytes: 16 << 20, overflow: Overflow::DropOldest }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool I/O at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("spool record in {path} at byte {offset} is corrupt: {what}")]
    Corrupt { path: PathBuf, offset: u64, what: String },
    #[error("a spool lock was poisoned by a panic")]
    Poisoned,
}

type Result<T, E = SpoolError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_owned(), source }
}

/// One queued batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub series: Vec<(SeriesKey, Vec<Sample>)>,
}

/// Counters for health and for the hub's event about dropped data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub queued_records: u64,
    pub queued_bytes: u64,
    pub dropped_records: u64,
    pub dropped_samples: u64,
}

pub struct Spool {
    /// Random, made when the spool directory is created: with the sequence number it
    /// makes batch ids unique even when the directory is wiped or replaced.
    id: u64,
    dir: PathBuf,
    options: SpoolOptions,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    segment: u64,
    offset: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Segment {
    bytes: u64,
    /// Records and samples per segment, so that dropping one can be counted.
    records: u64,
    samples: u64,
}

struct State {
    segments: BTreeMap<u64, Segment>,
    writer: File,
    current: u64,
    cursor: Position,
    next_seq: u64,
    /// Records and samples before the cursor in its segment (already acknowledged).
    acked_in_cursor_segment: (u64, u64),
    stats: SpoolStats,
}

/// Reads the spool's identity from `spool-id`, or makes a random one (durably) when the
/// directory has none.
fn spool_id(dir: &Path) -> Result<u64> {
    use std::hash::{BuildHasher, Hasher};
    let path = dir.join("spool-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => u64::from_str_radix(text.trim(), 16).map_err(|_| SpoolError::Corrupt {
            path: path.clone(),
            offset: 0,
            what: format!("expected 16 hexadecimal digits, found `{}`", text.trim()),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // The standard library seeds `RandomState` from the operating system.
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
            );
            hasher.write_u32(std::process::id());
            let id = hasher.finish();
            let temporary = dir.join("spool-id.tmp");
            std::fs::write(&temporary, format!("{id:016x}\n"))
                .and_then(|()| File::open(&temporary)?.sync_all())
                .and_then(|()| std::fs::rename(&temporary, &path))
                .map_err(io(&path))?;
            sync_dir(dir)?;
            Ok(id)
        }
        Err(error) => Err(SpoolError::Io { path, source: error }),
    }
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:010}.seg"))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }

    fn text(&mut self) -> Option<String> {
        let n = usize::try_from(self.varint()?).ok()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn encode(seq: u64, series: &[(SeriesKey, Vec<Sample>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + series.iter().map(|(_, s)| 40 + s.len() * 12).sum::<usize>());
    put_varint(&mut out, seq);
    put_varint(&mut out, series.len() as u64);
    for (key, samples) in series {
        for text in [&key.asset, &key.signal] {
            put_varint(&mut out, text.len() as u64);
            out.extend(text.as_bytes());
        }
        put_varint(&mut out, samples.len() as u64);
        let mut previous = 0i64;
        for s in samples {
            let delta = s.ts.wrapping_sub(previous);
            put_varint(&mut out, ((delta << 1) ^ (delta >> 63)) as u64);
            previous = s.ts;
            out.extend(s.value.to_bits().to_le_bytes());
            put_varint(&mut out, u64::from(s.quality.0));
        }
    }
    out
}

fn decode(payload: &[u8]) -> Option<Entry> {
    let mut r = Reader { bytes: payload, at: 0 };
    let seq = r.varint()?;
    let n = usize::try_from(r.varint()?).ok()?;
    let mut series = Vec::with_capacity(n.min(payload.len()));
    for _ in 0..n {
        let key = SeriesKey::new(r.text()?, r.text()?);
        let count = usize::try_from(r.varint()?).ok()?;
        let mut samples = Vec::with_capacity(count.min(payload.len()));
        let mut ts = 0i64;
        for _ in 0..count {
            let z = r.varint()?;
            ts = ts.wrapping_add(((z >> 1) as i64) ^ -((z & 1) as i64));
            let bits = r.take(8)?;
            let value = f64::from_bits(u64::from_le_bytes(bits.try_into().ok()?));
            let quality = Quality(u32::try_from(r.varint()?).ok()?);
            samples.push(Sample { ts, value, quality });
        }
        series.push((key, samples));
    }
    (r.at == payload.len()).then_some(Entry { seq, series })
}

/// Visits the records of a segment from `from`, one at a time (never the whole file in
/// memory), until `visit` returns false; returns where the valid records end. A torn or
/// corrupt record ends the walk.
fn each_record(path: &Path, from: u64, mut visit: impl FnMut(&[u8], u64) -> Result<bool>) -> Result<u64> {
    use std::io::{BufReader, Seek, SeekFrom};
    let file = File::open(path).map_err(io(path))?;
    let size = file.metadata().map_err(io(path))?.len();
    let mut reader = BufReader::with_capacity(64 << 10, file);
    reader.seek(SeekFrom::Start(from)).map_err(io(path))?;
    let mut at = from;
    let mut payload = Vec::new();
    loop {
        let mut frame = [0u8; 8];
        if reader.read_exact(&mut frame).is_err() {
            return Ok(at);
        }
        let len = u64::from(u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]));
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        // The length comes from disk: never allocate past the end of the file.
        if len > size.saturating_sub(at + 8) {
            return Ok(at);
        }
        payload.resize(len as usize, 0);
        if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            return Ok(at);
        }
        at += 8 + len;
        if !visit(&payload, at)? {
            return Ok(at);
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Spool {
    pub fn open(dir: &Path, options: SpoolOptions) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut numbers: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let cursor_path = dir.join("cursor");
        let id = spool_id(dir)?;
        // The cursor file also keeps the next sequence number: when every segment was
        // acknowledged or dropped, no record is left to continue the numbering from.
        let (cursor, seq_floor) = match std::fs::read_to_string(&cursor_path) {
            Ok(text) => {
                let mut parts = text.split_whitespace().map(str::parse::<u64>);
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(Ok(segment)), Some(Ok(offset)), next) if !matches!(next, Some(Err(_))) => {
                        (Position { segment, offset }, next.and_then(Result::ok).unwrap_or(1))
                    }
                    _ => {
                        return Err(SpoolError::Corrupt {
                            path: cursor_path,
                            offset: 0,
                            what: format!("expected `<segment> <offset> <next seq>`, found `{}`", text.trim()),
                        });
                    }
                }
            }
            Err(_) => (Position { segment: numbers.first().copied().unwrap_or(1), offset: 0 }, 1),
        };
        let mut segments = BTreeMap::new();
        let mut next_seq = seq_floor.max(1);
        let mut acked = (0, 0);
        let mut stats = SpoolStats::default();
        for (i, n) in numbers.iter().enumerate() {
            let path = segment_path(dir, *n);
            if *n < cursor.segment {
                // Fully acknowledged; a crash came before its deletion.
                std::fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            let mut segment = Segment::default();
            let end = each_record(&path, 0, |payload, after| {
                let entry = decode(payload).ok_or_else(|| SpoolError::Corrupt {
                    path: path.clone(),
                    offset: after - payload.len() as u64,
                    what: "record does not decode".into(),
                })?;
                let samples = entry.series.iter().map(|(_, s)| s.len() as u64).sum::<u64>();
                segment.records += 1;
                segment.samples += samples;
                next_seq = next_seq.max(entry.seq + 1);
                if *n == cursor.segment && after <= cursor.offset {
                    acked.0 += 1;
                    acked.1 += samples;
                }
                Ok(true)
            })?;
            let size = std::fs::metadata(&path).map_err(io(&path))?.len();
            if end < size {
                if i + 1 != numbers.len() {
                    return Err(SpoolError::Corrupt {
                        path,
                        offset: end,
                        what: "bad record before the last segment's end".into(),
                    });
                }
                // A torn append was never acknowledged to the caller: cut it off.
                let file = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
                file.set_len(end).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
            }
            segment.bytes = end;
            segments.insert(*n, segment);
        }
        let current = numbers.last().copied().unwrap_or(cursor.segment).max(cursor.segment);
        let path = segment_path(dir, current);
        let writer = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        segments.entry(current).or_default();
        sync_dir(dir)?;
        let mut state = State {
            segments,
            writer,
            current,
            cursor,
            next_seq,
            acked_in_cursor_segment: acked,
            stats: SpoolStats::default(),
        };
        stats.queued_records = state.queued_records();
        stats.queued_bytes = state.queued_bytes();
        state.stats = stats;
        Ok(Self { id, dir: dir.to_owned(), options, state: Mutex::new(state) })
    }

    /// Appends a batch durably; returns its sequence number, or `None` when the queue is
    /// full and the policy is `drop_newest` (the batch is counted as dropped).
    pub fn push(&self, series: &[(SeriesKey, Vec<Sample>)]) -> Result<Option<u64>> {
        let mut state = self.state.lock().map_err(|_| SpoolError::Poisoned)?;
        let samples: u64 = series.iter().map(|(_, s)| s.len() as u64).sum();
        let seq = state.next_seq;
        let payload = encode(seq, series);
        let size = payload.len() as u64 + 8;
        if state.queued_bytes() + size > self.options.max_bytes && self.options.overflow == Overflow::DropNewest {
            state.stats.dropped_records += 1;
            state.stats.dropped_samples += samples;
            return Ok(None);
        }
        if state
            .segments
            .get(&state.current)
            .is_some_and(|s| s.bytes > 0 && s.bytes + size > self.options.segment_bytes)
        {
            self.rotate(&mut state)?;
        }
        let mut record = Vec::with_capacity(payload.len() + 8);
        record.extend((payload.len() as u32).to_le_bytes());
        record.extend(crc32fast::hash(&payload).to_le_bytes());
        record.extend(payload);
        let path = segment_path(&self.dir, state.current);
        let good = state.segments.get(&state.current).map_or(0, |s| s.bytes);
        if let Err(error) = state.writer.write_all(&record) {
            // A failed append (a full disk) is cut off again, so that no later record
            // lands behind a torn one (the walk at open would stop there and lose it).
            self.cut_back(&mut state, good, false);
            return Err(SpoolError::Io { path, source: error });
        }
        if let Err(error) = state.writer.sync_data() {
            // After a failed fsync the segment's unsynced pages are not trusted: it is cut
            // back to what was synced and the next record starts a new segment.
            self.cut_back(&mut state, good, true);
            return Err(SpoolError::Io { path, source: error });
        }
        state.next_seq += 1;
        let current = state.current;
        let segment = state.segments.entry(current).or_default();
        segment.bytes += size;
        segment.records += 1;
        segment.samples += samples;
        while state.queued_bytes() > self.options.max_bytes && state.segments.len() > 1 {
            self.drop_oldest(&mut state)?;
        }
        state.stats.queued_records = state.queued_records();
        state.stats.queued_bytes = state.queued_bytes();
        Ok(Some(seq))
    }

    /// Cuts the open segment back to `good` bytes after a failed append; with `close`,
    /// also starts a new segment. A failure here is logged: the record was not
    /// acknowledged, and the next push tries again.
    fn cut_back(&self, state: &mut State, good: u64, close: bool) {
        let path = segment_path(&self.dir, state.current);
        let mut result = state.writer.set_len(good).and_then(|()| state.writer.sync_all()).map_err(io(&path));
        if result.is_ok() && close {
            result = self.rotate(state);
        }
        if let Err(error) = result {
            tracing::error!(%error, "cannot cut a failed append off the spool");
        }
    }

    fn rotate(&self, state: &mut State) -> Result<()> {
        let next = state.current + 1;
        let path = segment_path(&self.dir, next);
        state.writer = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        state.current = next;
        state.segments.insert(next, Segment::default());
        sync_dir(&self.dir)
    }

    /// Deletes the oldest segment (the overflow policy), counting what was not yet sent.
    fn drop_oldest(&self, state: &mut State) -> Result<()> {
        let Some((&oldest, &segment)) = state.segments.iter().next() else { return Ok(()) };
        if oldest == state.current {
            self.rotate(state)?;
        }
        let (acked_records, acked_samples) =
            if oldest == state.cursor.segment { state.acked_in_cursor_segment } else { (0, 0) };
        state.stats.dropped_records += segment.records - acked_records;
        state.stats.dropped_samples += segment.samples - acked_samples;
        state.segments.remove(&oldest);
        let next = state.segments.keys().next().copied().unwrap_or(state.current);
        self.move_cursor(state, Position { segment: next, offset: 0 }, (0, 0))?;
        let path = segment_path(&self.dir, oldest);
        std::fs::remove_file(&path).map_err(io(&path))?;
        tracing::warn!(
            segment = oldest,
            dropped_samples = state.stats.dropped_samples,
            "store-and-forward queue full: dropped the oldest data"
        );
        Ok(())
    }

    fn move_cursor(&self, state: &mut State, to: Position, acked: (u64, u64)) -> Result<()> {
        let path = self.dir.join("cursor");
        let temporary = self.dir.join("cursor.tmp");
        std::fs::write(&temporary, format!("{} {} {}\n", to.segment, to.offset, state.next_seq))
            .and_then(|()| File::open(&temporary)?.sync_all())
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(io(&path))?;
        sync_dir(&self.dir)?;
        state.cursor = to;
        state.acked_in_cursor_segment = acked;
        Ok(())
    }

    /// Up to `max` of the oldest batches not yet acknowledged, in order.
    pub fn peek(&self, max: usize) -> Result<Vec<Entry>> {
        let state = self.state.lock().map_err(|_| SpoolError::Poisoned)?;
        let mut out = Vec::new();
        for (&n, _) in state.segments.range(state.cursor.segment..) {
            let from = if n == state.cursor.segment { state.cursor.offset } else { 0 };
            let path = segment_path(&self.dir, n);
            each_record(&path, from, |payload, after| {
                let entry = decode(payload).ok_or_else(|| SpoolError::Corrupt {
                    path: path.clone(),
                    offset: after - payload.len() as u64,
                    what: "record does not decode".into(),
                })?;
                out.push(entry);
                Ok(out.len() < max)
            })?;
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Marks every batch up to and including `seq` as delivered.
    pub fn ack(&self, seq: u64) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| SpoolError::Poisoned)?;
        let mut position = state.cursor;
        let mut acked = state.acked_in_cursor_segment;
        let segments: Vec<u64> = state.segments.range(state.cursor.segment..).map(|(n, _)| *n).collect();
        'segments: for n in segments {
            let from = if n == position.segment { position.offset } else { 0 };
            if n != position.segment {
                acked = (0, 0);
            }
            let path = segment_path(&self.dir, n);
            let mut done = false;
            each_record(&path, from, |payload, after| match decode(payload) {
                Some(entry) if entry.seq <= seq => {
                    acked.0 += 1;
                    acked.1 += entry.series.iter().map(|(_, s)| s.len() as u64).sum::<u64>();
                    position = Position { segment: n, offset: after };
                    Ok(true)
                }
                _ => {
                    done = true;
                    Ok(false)
                }
            })?;
            if done {
                break 'segments;
            }
        }
        if position == state.cursor {
            return Ok(());
        }
        self.move_cursor(&mut state, position, acked)?;
        // Whole segments behind the cursor are done.
        let done: Vec<u64> = state.segments.range(..position.segment).map(|(n, _)| *n).collect();
        for n in done {
            state.segments.remove(&n);
            let path = segment_path(&self.dir, n);
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        state.stats.queued_records = state.queued_records();
        state.stats.queued_bytes = state.queued_bytes();
        Ok(())
    }

    pub fn stats(&self) -> SpoolStats {
        self.state.lock().map(|s| s.stats).unwrap_or_default()
    }

    /// This spool's identity (see [`Spool`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The sequence number the next pushed batch will get.
    pub fn next_seq(&self) -> u64 {
        self.state.lock().map(|s| s.next_seq).unwrap_or(u64::MAX)
    }
}

impl State {
    fn queued_bytes(&self) -> u64 {
        let total: u64 = self.segments.range(self.cursor.segment..).map(|(_, s)| s.bytes).sum();
        total.saturating_sub(self.cursor.offset)
    }

    fn queued_records(&self) -> u64 {
        let total: u64 = self.segments.range(self.cursor.segment..).map(|(_, s)| s.records).sum();
        total.saturating_sub(self.acked_in_cursor_segment.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(i: i64) -> Vec<(SeriesKey, Vec<Sample>)> {
        vec![(
            SeriesKey::new("acme/p/l/m-1", "temp"),
            (0..10).map(|k| Sample::good(i * 10_000 + k * 1000, i as f64)).collect(),
        )]
    }

    #[test]
    fn numbering_continues_after_everything_was_dropped_and_a_new_directory_gets_a_new_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Tiny segments and a tiny limit: the oldest segments (all of them) are dropped.
        let options = SpoolOptions { segment_bytes: 256, max_bytes: 300, ..SpoolOptions::default() };
        let id = {
            let spool = Spool::open(dir.path(), options.clone()).expect("open");
            for i in 0..20 {
                spool.push(&batch(i)).expect("push");
            }
            assert!(spool.stats().dropped_records > 0, "{:?}", spool.stats());
            let last = spool.peek(100).expect("peek").last().expect("one queued").seq;
            spool.ack(last).expect("ack");
            spool.push(&batch(20)).expect("push").expect("queued");
            let newest = spool.next_seq() - 1;
            // Drop the rest too: only the cursor file remembers the numbering now.
            while spool.stats().queued_records > 0 {
                spool.push(&batch(21)).expect("push");
                spool.ack(spool.next_seq() - 1).expect("ack");
            }
            assert!(spool.next_seq() > newest);
            spool.id()
        };
        let reopened = Spool::open(dir.path(), options.clone()).expect("reopen");
        assert_eq!(reopened.id(), id, "the identity is kept");
        assert!(reopened.next_seq() > 21, "numbering restarted at {}", reopened.next_seq());
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(Spool::open(other.path(), options).expect("open").id(), id, "a new spool, a new identity");
        std::fs::write(dir.path().join("spool-id"), "not hex").expect("write");
        let error = Spool::open(dir.path(), SpoolOptions::default()).err().expect("bad id").to_string();
        assert!(error.contains("spool-id") && error.contains("hexadecimal"), "{error}");
    }

    #[test]
    fn batches_come_back_in_order_until_acknowledged_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SpoolOptions { segment_bytes: 1024, ..SpoolOptions::default() };
        {
            let spool = Spool::open(dir.path(), options.clone()).expect("open");
            for i in 0..50 {
                assert_eq!(spool.push(&batch(i)).expect("push"), Some(i as u64 + 1));
            }
            let first = spool.peek(5).expect("peek");
            assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
            assert_eq!(first[2].series, batch(2));
            spool.ack(20).expect("ack");
            assert_eq!(spool.stats().queued_records, 30);
        }
        let spool = Spool::open(dir.path(), options).expect("reopen");
        let rest = spool.peek(100).expect("peek");
        assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), (21..=50).collect::<Vec<_>>());
        assert_eq!(spool.push(&batch(50)).expect("push"), Some(51), "sequence numbers continue");
        spool.ack(51).expect("ack");
        assert!(spool.peek(10).expect("peek").is_empty());
        assert_eq!(spool.stats().queued_records, 0);
        let segments = std::fs::read_dir(dir.path())
            .expect("list")
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg")));
        assert!(segments.count() <= 2, "acknowledged segments are deleted");
    }

    #[test]
    fn overflow_drops_the_oldest_and_counts_every_sample() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SpoolOptions { max_bytes: 4096, segment_bytes: 1024, overflow: Overflow::DropOldest };
        let spool = Spool::open(dir.path(), options).expect("open");
        for i in 0..100 {
            spool.push(&batch(i)).expect("push");
        }
        let stats = spool.stats();
        assert!(stats.queued_bytes <= 4096, "{stats:?}");
        let left = spool.peek(1000).expect("peek");
        assert_eq!(left.last().map(|e| e.seq), Some(100), "the newest data is kept");
        assert_eq!(stats.dropped_records + left.len() as u64, 100, "{stats:?}");
        assert_eq!(stats.dropped_samples, stats.dropped_records * 10);
        let seqs: Vec<u64> = left.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "what is left is contiguous: {seqs:?}");
    }

    #[test]
    fn drop_newest_refuses_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SpoolOptions { max_bytes: 2048, segment_bytes: 1024, overflow: Overflow::DropNewest };
        let spool = Spool::open(dir.path(), options).expect("open");
        let accepted = (0..100).filter(|i| spool.push(&batch(*i)).expect("push").is_some()).count() as u64;
        let stats = spool.stats();
        assert_eq!(stats.dropped_records, 100 - accepted);
        assert_eq!(spool.peek(1000).expect("peek").first().map(|e| e.seq), Some(1), "the oldest data is kept");
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_bad_cursor_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let spool = Spool::open(dir.path(), SpoolOptions::default()).expect("open");
            for i in 0..3 {
                spool.push(&batch(i)).expect("push");
            }
        }
        let segment = segment_path(dir.path(), 1);
        let mut file = OpenOptions::new().append(true).open(&segment).expect("open segment");
        file.write_all(&[200, 0, 0, 0, 1, 2, 3]).expect("tear");
        let spool = Spool::open(dir.path(), SpoolOptions::default()).expect("reopen");
        assert_eq!(spool.peek(10).expect("peek").len(), 3);
        assert_eq!(spool.push(&batch(3)).expect("push"), Some(4));
        assert_eq!(spool.peek(10).expect("peek").len(), 4);
        drop(spool);
        std::fs::write(dir.path().join("cursor"), "garbage").expect("write");
        let error = Spool::open(dir.path(), SpoolOptions::default()).err().expect("bad cursor").to_string();
        assert!(error.contains("cursor") && error.contains("garbage"), "{error}");
    }
}
