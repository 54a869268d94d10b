//! The ordered stream of accepted writes: what the committer made durable, in WAL order,
//! for the hub's consumers.
//!
//! Two kinds of reader:
//! - A **durable consumer** (alarms, metering) has a named slot. It reads after a
//!   position it persisted with its own state and acknowledges (`commit`) what it has
//!   persisted since. Records after the slowest slot's acknowledgement stay in memory,
//!   and the WAL segments holding them are not deleted, so after a crash the engine
//!   replays them into the stream again and the consumer resumes where its state says.
//!   Nothing is ever dropped behind a durable consumer: when the slowest one is more than
//!   `lag_limit` samples behind, the committer waits for it (ingest stalls, bounded).
//! - A **live reader** (the SSE stream, console charts) never holds anything back: when
//!   it falls behind the records kept for live readers it is told how many it missed.

use crate::head::Kind;
use crate::{Error, Result};
use model::{AcceptedSeries, AcceptedWrite, Position, Sample, SeriesKey};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Records kept for live readers beyond what durable consumers need, at most.
const LIVE_RECORDS: usize = 1024;
/// Samples kept for live readers beyond what durable consumers need, at most.
const LIVE_SAMPLES: usize = 256 * 1024;

pub(crate) struct Stream {
    state: Mutex<State>,
    /// Signalled when a slot acknowledges (the committer may be waiting for room).
    room: Condvar,
    /// The ordinal of the newest record; readers wait on it.
    newest: tokio::sync::watch::Sender<u64>,
    /// Samples a durable consumer may fall behind before ingest waits for it.
    lag_limit: usize,
    /// Where slot positions are saved (at checkpoints, before WAL segments go).
    slots_path: PathBuf,
}

struct State {
    /// Records in order; `records[i]` has ordinal `front + i`.
    records: VecDeque<Arc<AcceptedWrite>>,
    /// Ordinal of `records[0]` (ordinals count records since the engine opened).
    front: u64,
    /// Samples in `records`.
    samples: usize,
    /// Every record after this position is in `records` (older ones are gone).
    complete_after: Position,
    /// The newest position written (or replayed).
    newest: Position,
    slots: BTreeMap<String, Slot>,
    closed: bool,
}

#[derive(Debug, Clone)]
struct Slot {
    /// The consumer persisted its state up to here.
    committed: Position,
    /// A consumer of this process reads it (slots loaded from disk are unclaimed).
    claimed: bool,
}

impl Stream {
    /// A stream whose slots are saved in `dir`; `newest` is the last position the WAL
    /// holds (records replayed at open follow through `replayed`).
    pub fn open(dir: &Path, lag_limit: usize) -> Result<Self> {
        let slots_path = dir.join("stream-slots.log");
        let slots = load_slots(&slots_path)?;
        let (newest, _) = tokio::sync::watch::channel(0);
        Ok(Self {
            state: Mutex::new(State {
                records: VecDeque::new(),
                front: 1,
                samples: 0,
                complete_after: Position::START,
                newest: Position::START,
                slots,
                closed: false,
            }),
            room: Condvar::new(),
            newest,
            lag_limit: lag_limit.max(1),
            slots_path,
        })
    }

    /// The oldest position any slot still needs (its records are replayed from the WAL).
    pub fn min_slot(&self) -> Option<Position> {
        let state = self.state.lock().ok()?;
        state.slots.values().map(|s| s.committed).min()
    }

    /// A record replayed from the WAL at open. Kept only if a slot still needs it.
    pub fn replayed(&self, record: AcceptedWrite) {
        let Ok(mut state) = self.state.lock() else { return };
        let needed = state.slots.values().any(|s| s.committed < record.position);
        state.newest = state.newest.max(record.position);
        if needed {
            state.push(record);
        } else {
            state.complete_after = record.position;
        }
    }

    /// Called once the WAL replay is done.
    pub fn opened(&self) {
        if let Ok(mut state) = self.state.lock() {
            if state.records.is_empty() {
                // Nothing after the newest position is missing.
                state.complete_after = state.complete_after.max(state.newest);
            }
            let newest = state.front + state.records.len() as u64 - 1;
            self.newest.send_replace(newest);
        }
    }

    /// Waits while the slowest durable consumer is `lag_limit` samples behind (logging
    /// which one every 10 s); the committer calls it before making a group durable.
    pub fn wait_for_room(&self) {
        let Ok(mut state) = self.state.lock() else { return };
        let mut waited = 0u64;
        while !state.closed && state.samples > self.lag_limit && state.front_is_pinned() {
            let (next, timeout) = match self.room.wait_timeout(state, Duration::from_secs(10)) {
                Ok(next) => next,
                Err(_) => return,
            };
            state = next;
            if timeout.timed_out() {
                waited += 10;
                let slowest = state.slots.iter().min_by_key(|(_, s)| s.committed).map(|(n, _)| n.clone());
                tracing::warn!(
                    consumer = slowest.as_deref().unwrap_or("?"),
                    waited_s = waited,
                    behind_samples = state.samples,
                    "ingest is waiting for a durable consumer of the sample stream"
                );
            }
        }
    }

    /// Appends a record the committer just made durable.
    pub fn push(&self, record: AcceptedWrite) {
        let Ok(mut state) = self.state.lock() else { return };
        state.newest = record.position;
        state.push(record);
        state.trim();
        let newest = state.front + state.records.len() as u64 - 1;
        drop(state);
        self.newest.send_replace(newest);
    }

    /// Ends every reader's wait (the engine is closing).
    pub fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        self.room.notify_all();
        // Wakes every waiting reader, which then finds the stream closed.
        self.newest.send_modify(|_| {});
    }

    /// Attaches the durable consumer `name`, reading after `after`. `None` is a consumer
    /// without a saved position: it resumes after its slot if it has one (it ran before
    /// but persisted nothing), or starts with the next write. A new slot is saved at once,
    /// so that a crash before the next checkpoint cannot lose what it pins.
    pub fn attach(self: &Arc<Self>, name: &str, after: Option<Position>) -> Result<Consumer> {
        let mut state = self.state.lock().map_err(|_| Error::Poisoned)?;
        let slot = state.slots.get(name).cloned();
        if slot.as_ref().is_some_and(|s| s.claimed) {
            return Err(Error::Invalid(format!("the stream consumer `{name}` is already attached")));
        }
        let after = match (after, &slot) {
            (Some(after), _) if after < state.complete_after => {
                return Err(Error::ConsumerBehind {
                    consumer: name.to_owned(),
                    after,
                    available_after: state.complete_after,
                });
            }
            (Some(after), _) => after,
            (None, Some(slot)) => slot.committed,
            (None, None) => state.newest,
        };
        state.slots.insert(name.to_owned(), Slot { committed: after, claimed: true });
        let cursor = state.front + state.records.partition_point(|r| r.position <= after) as u64;
        drop(state);
        if slot.is_none() {
            self.save_slots()?;
        }
        Ok(Consumer { stream: self.clone(), name: name.to_owned(), cursor, newest: self.newest.subscribe() })
    }

    /// Drops slots no consumer of this process attached to (consumers no longer
    /// configured), so that they pin nothing. Returns their names.
    pub fn release_unclaimed(&self) -> Vec<String> {
        let Ok(mut state) = self.state.lock() else { return Vec::new() };
        let unclaimed: Vec<String> = state.slots.iter().filter(|(_, s)| !s.claimed).map(|(n, _)| n.clone()).collect();
        for name in &unclaimed {
            state.slots.remove(name);
        }
        state.trim();
        drop(state);
        self.room.notify_all();
        unclaimed
    }

    /// A reader that may skip; starts at the next write.
    pub fn live(self: &Arc<Self>) -> LiveReader {
        let cursor = self.state.lock().map(|s| s.front + s.records.len() as u64).unwrap_or(0);
        LiveReader { stream: self.clone(), cursor, newest: self.newest.subscribe() }
    }

    /// Saves every slot's committed position (durably); call before WAL segments go.
    pub fn save_slots(&self) -> Result<()> {
        let text: String = {
            let state = self.state.lock().map_err(|_| Error::Poisoned)?;
            state.slots.iter().map(|(name, slot)| format!("{}\t{}\n", slot.committed.0, name)).collect()
        };
        crate::write_atomically(&self.slots_path, text.as_bytes())
    }

    /// Positions of every slot, for metrics: name, committed position, records behind.
    pub fn slots(&self) -> Vec<(String, Position, usize)> {
        let Ok(state) = self.state.lock() else { return Vec::new() };
        state
            .slots
            .iter()
            .map(|(name, slot)| {
                let behind = state.records.len() - state.records.partition_point(|r| r.position <= slot.committed);
                (name.clone(), slot.committed, behind)
            })
            .collect()
    }

    /// Record `ordinal`, or where the reader stands if it is gone or not there yet.
    fn get(&self, ordinal: u64) -> Read {
        let Ok(state) = self.state.lock() else { return Read::Closed };
        if ordinal < state.front {
            return Read::Gone { front: state.front };
        }
        match state.records.get((ordinal - state.front) as usize) {
            Some(record) => Read::Record(record.clone()),
            None if state.closed => Read::Closed,
            None => Read::NotYet,
        }
    }

    fn commit(&self, name: &str, position: Position) {
        if let Ok(mut state) = self.state.lock() {
            if let Some(slot) = state.slots.get_mut(name) {
                slot.committed = slot.committed.max(position);
            }
            state.trim();
        }
        self.room.notify_all();
    }

    fn detach(&self, name: &str) {
        if let Ok(mut state) = self.state.lock()
            && let Some(slot) = state.slots.get_mut(name)
        {
            slot.claimed = false;
        }
    }
}

impl State {
    fn push(&mut self, record: AcceptedWrite) {
        self.samples += record.sample_count();
        self.records.push_back(Arc::new(record));
    }

    /// Whether a durable slot still needs the oldest record.
    fn front_is_pinned(&self) -> bool {
        let Some(front) = self.records.front() else { return false };
        self.slots.values().any(|s| s.committed < front.position)
    }

    /// Drops the records no slot needs, keeping a bounded tail for live readers.
    fn trim(&mut self) {
        while let Some(front) = self.records.front() {
            let pinned = self.slots.values().any(|s| s.committed < front.position);
            let live_room = self.records.len() <= LIVE_RECORDS && self.samples <= LIVE_SAMPLES;
            if pinned || live_room {
                return;
            }
            self.samples -= front.sample_count();
            self.complete_after = front.position;
            self.records.pop_front();
            self.front += 1;
        }
    }
}

enum Read {
    Record(Arc<AcceptedWrite>),
    NotYet,
    Gone { front: u64 },
    Closed,
}

/// A durable consumer's handle: reads in order, commits what it has persisted. Dropping
/// it keeps the slot (and what it pins) for the next attach.
pub struct Consumer {
    stream: Arc<Stream>,
    name: String,
    /// Ordinal of the next record to read.
    cursor: u64,
    newest: tokio::sync::watch::Receiver<u64>,
}

impl Consumer {
    /// The next accepted write, waiting for one; `None` once the engine closed.
    pub async fn next(&mut self) -> Option<Arc<AcceptedWrite>> {
        loop {
            match self.stream.get(self.cursor) {
                Read::Record(record) => {
                    self.cursor += 1;
                    return Some(record);
                }
                Read::Gone { front } => {
                    // Cannot happen while the slot pins the records; say so loudly if it does.
                    tracing::error!(consumer = %self.name, missed = front - self.cursor, "a durable consumer lost records");
                    self.cursor = front;
                }
                Read::Closed => return None,
                Read::NotYet => {
                    // Any send since the last wait wakes this at once, so a record pushed
                    // between `get` and here is not missed.
                    if self.newest.changed().await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// The next accepted write if one is there.
    pub fn try_next(&mut self) -> Option<Arc<AcceptedWrite>> {
        match self.stream.get(self.cursor) {
            Read::Record(record) => {
                self.cursor += 1;
                Some(record)
            }
            _ => None,
        }
    }

    /// The consumer has durably processed everything up to `position`: the engine may
    /// forget those records and delete WAL segments that only they need.
    pub fn commit(&self, position: Position) {
        self.stream.commit(&self.name, position);
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stream.detach(&self.name);
    }
}

/// What a live reader gets.
#[derive(Debug, Clone)]
pub enum Live {
    Write(Arc<AcceptedWrite>),
    /// The reader fell behind what is kept for live readers: this many writes were not
    /// shown to it.
    Skipped(u64),
}

/// A reader that never holds ingest back and says when it skipped.
pub struct LiveReader {
    stream: Arc<Stream>,
    cursor: u64,
    newest: tokio::sync::watch::Receiver<u64>,
}

impl LiveReader {
    /// The next write (or how many were skipped); `None` once the engine closed.
    pub async fn next(&mut self) -> Option<Live> {
        loop {
            match self.stream.get(self.cursor) {
                Read::Record(record) => {
                    self.cursor += 1;
                    return Some(Live::Write(record));
                }
                Read::Gone { front } => {
                    let skipped = front - self.cursor;
                    self.cursor = front;
                    return Some(Live::Skipped(skipped));
                }
                Read::Closed => return None,
                Read::NotYet => {
                    // Any send since the last wait wakes this at once, so a record pushed
                    // between `get` and here is not missed.
                    if self.newest.changed().await.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}

fn load_slots(path: &Path) -> Result<BTreeMap<String, Slot>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::Io(format!("reading {}: {e}", path.display()))),
    };
    let mut slots = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let parsed = line.split_once('\t').and_then(|(p, name)| Some((p.parse::<u64>().ok()?, name)));
        let Some((position, name)) = parsed else {
            return Err(Error::Corrupt(format!("{}: bad line `{line}`", path.display())));
        };
        slots.insert(name.to_owned(), Slot { committed: Position(position), claimed: false });
    }
    Ok(slots)
}

/// One series' part of an accepted write as consumers see it, from the samples as
/// written and what inserting each did: sorted by time stamp, one sample per time stamp
/// (the last written wins, as in storage), exact duplicates of stored samples left out.
/// `None` when nothing is left.
pub(crate) fn deliverable(key: SeriesKey, mut samples: Vec<Sample>, kinds: &[Kind]) -> Option<AcceptedSeries> {
    let sorted = samples.windows(2).all(|w| w[0].ts < w[1].ts);
    if sorted && kinds.iter().all(|k| *k == Kind::Added) {
        return (!samples.is_empty()).then_some(AcceptedSeries { key, samples, replaced: Vec::new() });
    }
    let mut order: Vec<usize> = (0..samples.len()).collect();
    if !sorted {
        // Stable: writes of one time stamp stay in the order they were applied.
        order.sort_by_key(|i| samples[*i].ts);
    }
    let mut out = Vec::with_capacity(samples.len());
    let mut replaced = Vec::new();
    let mut run = 0;
    while run < order.len() {
        let ts = samples[order[run]].ts;
        let end = run + order[run..].iter().take_while(|i| samples[**i].ts == ts).count();
        let run_kinds = order[run..end].iter().map(|i| kinds[*i]);
        if run_kinds.clone().any(|k| k != Kind::Duplicate) {
            // Whatever the batch did at this time stamp, the last write is what is stored;
            // it is new if nothing was stored before the batch, a replacement otherwise.
            if kinds[order[run]] != Kind::Added {
                replaced.push(out.len() as u32);
            }
            out.push(samples[order[end - 1]]);
        }
        run = end;
    }
    samples.clear();
    (!out.is_empty()).then_some(AcceptedSeries { key, samples: out, replaced })
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Change;

    #[test]
    fn deliverable_sorts_collapses_and_leaves_out_duplicates() {
        let key = SeriesKey::new("a", "s");
        let in_order = vec![Sample::good(1, 1.0), Sample::good(2, 2.0)];
        let plain = deliverable(key.clone(), in_order.clone(), &[Kind::Added, Kind::Added]).expect("some");
        assert_eq!((plain.samples, plain.replaced), (in_order, vec![]));
        // t=3 twice in the batch (added then replaced by the batch itself): one new sample,
        // the last; t=1 a duplicate; t=2 a replacement of a stored sample; out of order.
        let samples = vec![Sample::good(3, 3.0), Sample::good(1, 1.0), Sample::good(3, 3.5), Sample::good(2, 9.0)];
        let kinds = [Kind::Added, Kind::Duplicate, Kind::Replaced, Kind::Replaced];
        let got = deliverable(key.clone(), samples, &kinds).expect("some");
        let changes: Vec<(i64, f64, Change)> = got.changes().map(|(s, c)| (s.ts, s.value, c)).collect();
        assert_eq!(changes, [(2, 9.0, Change::Replacement), (3, 3.5, Change::New)]);
        assert!(deliverable(key, vec![Sample::good(1, 1.0)], &[Kind::Duplicate]).is_none());
    }
}
