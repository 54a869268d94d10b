//! Treaty's telemetry engine: durable high-rate ingest, compressed columnar storage and
//! the queries service work needs.
//!
//! A write is appended to the WAL and fsync'd (shared with concurrent writers) before it
//! is applied to the in-memory head and acknowledged. A series' head is sealed into a
//! compressed chunk (pcodec timestamps and values, run-length qualities) when it reaches
//! `chunk_samples`; WAL segments are deleted once every sample in them is sealed, and
//! series too slow to fill a chunk are sealed early when the WAL grows past
//! `wal_checkpoint_bytes`. Queries merge sealed chunks and the head; on
//! equal timestamps the later write wins, so replays and retries never double-count.
//!
//! The engine is synchronous (it does blocking I/O); async callers use `spawn_blocking`.

mod chunks;
mod codec;
mod head;
mod ingest;
mod line_protocol;
mod query;
mod retention;
mod series;
mod tiers;
mod wal;

pub use codec::{
    WalRecord, decode_chunk, decode_chunk_range, decode_rollups, decode_wal_record, encode_chunk, encode_rollups,
    encode_wal_record,
};
pub use head::Inserted;
pub use ingest::{Catalog, Reason, Rejected, SeriesSpec};
pub use line_protocol::{LineError, Precision, parse_line_protocol};
pub use model::RetentionClass;
pub use query::{Bucket, CounterDelta, aggregate, counter_delta};
pub use retention::{Retention, RetentionPolicy};
pub use tiers::{Resolution, merge_buckets};

use model::sample::{Millis, Sample, SeriesKey};

/// The dense, engine-internal number of a series (assigned on first write, never reused).
pub type SeriesId = u32;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("telemetry storage I/O: {0}")]
    Io(String),
    #[error("telemetry storage is corrupt: {0}")]
    Corrupt(String),
    #[error("compression failed: {0}")]
    Codec(String),
    #[error("{0}")]
    Invalid(String),
    #[error("a telemetry lock was poisoned by a panic")]
    Poisoned,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tuning knobs; the defaults suit a hub with thousands of 1 Hz series.
#[derive(Debug, Clone)]
pub struct TsdbOptions {
    /// Samples per series at which the head is sealed into a chunk.
    pub chunk_samples: usize,
    /// WAL size at which a checkpoint drops sealed segments (and seals slow series early).
    pub wal_checkpoint_bytes: u64,
    /// Size of one WAL segment file; whole segments are deleted.
    pub wal_segment_bytes: u64,
    /// How long batch ids are remembered for retry detection, in milliseconds.
    pub batch_id_ttl_ms: i64,
    /// How long each retention class keeps raw samples and rollups.
    pub retention: Retention,
}

impl Default for TsdbOptions {
    fn default() -> Self {
        // The WAL must hold a full chunk period of every series (10,000 series at 1 Hz
        // write ~360 MB per hour), or checkpoints would seal chunks early.
        Self {
            chunk_samples: 3600,
            wal_checkpoint_bytes: 1 << 30,
            wal_segment_bytes: 64 << 20,
            batch_id_ttl_ms: 24 * 3600 * 1000,
            retention: Retention::default(),
        }
    }
}

/// Samples for several series, written atomically and durably.
#[derive(Debug, Clone, Default)]
pub struct WriteRequest {
    /// A retry of a batch with the same id is acknowledged again without writing.
    pub batch_id: Option<String>,
    pub series: Vec<(SeriesKey, Vec<Sample>)>,
    /// The samples were queued at the edge while the hub was unreachable and are being
    /// replayed: stored like any others, published to subscribers as historical (live
    /// rules and consoles can tell them from fresh data).
    pub historical: bool,
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub stored: usize,
    pub duplicates: usize,
    pub replaced: usize,
    /// True when the batch id had been written before: nothing was written this time.
    pub replayed_batch: bool,
}

/// Samples accepted by one write, as published to subscribers.
#[derive(Debug, Clone)]
pub struct Published {
    pub series: Vec<(SeriesKey, Vec<Sample>)>,
    /// From a replay of queued data (see `WriteRequest::historical`).
    pub historical: bool,
}

/// The telemetry engine. Cheap to clone.
#[derive(Clone)]
pub struct Tsdb {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    options: TsdbOptions,
    series: series::Registry,
    wal: wal::Wal,
    tiers: tiers::Tiers,
    head: head::Head,
    /// Retention class per series, from the asset models (`standard` when not set).
    classes: RwLock<HashMap<SeriesKey, RetentionClass>>,
    /// Writers hold it shared from WAL append to head insert; a checkpoint holds it
    /// exclusively while it decides which WAL segments are covered by chunks.
    gate: RwLock<()>,
    /// Seals hold it shared from taking a head until its chunk is durable; a checkpoint
    /// holds it exclusively, so it never deletes WAL behind a chunk still being written.
    checkpointing: RwLock<()>,
    batches: Mutex<HashMap<String, (i64, WriteOutcome)>>,
    subscribers: tokio::sync::broadcast::Sender<Arc<Published>>,
    /// Full heads waiting for the background sealer.
    seals: Arc<SealQueue>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.seals.close();
    }
}

/// Series whose heads are full, sealed by a background thread so that a write is
/// acknowledged as soon as it is durable; compression then overlaps the next request's
/// I/O and parsing instead of delaying the reply.
#[derive(Default)]
struct SealQueue {
    state: Mutex<SealState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct SealState {
    ids: std::collections::VecDeque<SeriesId>,
    queued: std::collections::HashSet<SeriesId>,
    busy: bool,
    closed: bool,
}

/// Past this many queued series, writers seal inline (backpressure).
const MAX_QUEUED_SEALS: usize = 4 * SEAL_GROUP;

impl SealQueue {
    /// Queues `ids`; returns false (queuing nothing) when the queue is too long.
    fn offer(&self, ids: &[SeriesId]) -> bool {
        let Ok(mut state) = self.state.lock() else { return false };
        if state.closed || state.ids.len() >= MAX_QUEUED_SEALS {
            return false;
        }
        for id in ids {
            if state.queued.insert(*id) {
                state.ids.push_back(*id);
            }
        }
        self.changed.notify_all();
        true
    }

    /// The next group to seal, waiting for one; `None` once closed.
    fn take(&self) -> Option<Vec<SeriesId>> {
        let mut state = self.state.lock().ok()?;
        state.busy = false;
        self.changed.notify_all();
        while state.ids.is_empty() && !state.closed {
            state = self.changed.wait(state).ok()?;
        }
        if state.ids.is_empty() {
            return None;
        }
        let n = state.ids.len().min(SEAL_GROUP);
        let group: Vec<SeriesId> = state.ids.drain(..n).collect();
        for id in &group {
            state.queued.remove(id);
        }
        state.busy = true;
        Some(group)
    }

    /// Waits until nothing is queued or being sealed.
    fn wait_idle(&self) {
        let Ok(mut state) = self.state.lock() else { return };
        while (!state.ids.is_empty() || state.busy) && !state.closed {
            match self.changed.wait(state) {
                Ok(next) => state = next,
                Err(_) => return,
            }
        }
    }

    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        self.changed.notify_all();
    }
}

/// The background sealer: holds the engine only while it seals a group.
fn run_sealer(engine: std::sync::Weak<Inner>, queue: Arc<SealQueue>) {
    while let Some(group) = queue.take() {
        let Some(inner) = engine.upgrade() else { return };
        let db = Tsdb { inner };
        if let Err(error) = db.seal(&group) {
            // The samples stay in the head and the WAL; the next write to a full head retries.
            tracing::error!(%error, series = group.len(), "sealing failed; will retry");
        }
    }
}

/// Series sealed together: one fsync per group, and a bounded number of plain copies.
const SEAL_GROUP: usize = 256;

fn now_ms() -> i64 {
    model::Timestamp::now().0
}

impl Tsdb {
    /// Opens (or creates) the engine in `dir`, replaying the WAL into the head.
    pub fn open(dir: &Path, options: TsdbOptions) -> Result<Self> {
        if options.chunk_samples == 0 || options.chunk_samples > codec::MAX_CHUNK_SAMPLES / 2 {
            return Err(Error::Invalid(format!(
                "chunk_samples must be between 1 and {}",
                codec::MAX_CHUNK_SAMPLES / 2
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("creating {}: {e}", dir.display())))?;
        let series = series::Registry::open(dir)?;
        let tiers = tiers::Tiers::open(&dir.join("chunks"))?;
        let (wal, records) = wal::Wal::open(&dir.join("wal"), options.wal_segment_bytes)?;
        let head = head::Head::default();
        let mut batches = load_batches(dir);
        let replayed = records.len();
        for (segment, record) in records {
            let mut outcome = WriteOutcome::default();
            for (id, samples) in &record.series {
                let (inserted, _) = head.insert(*id, samples, segment);
                outcome.stored += inserted.added;
            }
            if let Some(batch) = record.batch_id {
                batches.insert(batch, (now_ms(), outcome));
            }
        }
        // The WAL keeps samples until a checkpoint deletes their segment, also those
        // sealed since: drop them from the heads again, or they would be held (and, once a
        // head fills up, sealed) a second time.
        let mut already_sealed = 0;
        for (id, first, last) in head.spans() {
            let sealed = tiers.raw_range(id, first, last.saturating_add(1))?;
            if !sealed.is_empty() {
                already_sealed += head.drop_sealed(id, &sealed);
            }
        }
        tracing::info!(
            series = series.len(),
            wal_records = replayed,
            already_sealed,
            chunks = tiers.raw_chunk_count(),
            "telemetry engine opened"
        );
        let (subscribers, _) = tokio::sync::broadcast::channel(1024);
        let seals = Arc::new(SealQueue::default());
        let db = Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                options,
                series,
                wal,
                tiers,
                head,
                classes: RwLock::new(HashMap::new()),
                gate: RwLock::new(()),
                checkpointing: RwLock::new(()),
                batches: Mutex::new(batches),
                subscribers,
                seals: seals.clone(),
            }),
        };
        let engine = Arc::downgrade(&db.inner);
        std::thread::Builder::new()
            .name("tsdb-sealer".into())
            .spawn(move || run_sealer(engine, seals))
            .map_err(|e| Error::Io(format!("starting the sealer thread: {e}")))?;
        Ok(db)
    }

    /// Bulk import of history (from another historian, or a benchmark's past): each
    /// series' samples (sorted by time, unique timestamps) go straight into chunks of
    /// `chunk_samples` and their rollups, bypassing the WAL and the head. Durable when it
    /// returns; not published to subscribers; later writes still win where they overlap.
    pub fn backfill(&self, series: Vec<(SeriesKey, Vec<Sample>)>) -> Result<usize> {
        for (key, samples) in &series {
            if samples.windows(2).any(|w| w[0].ts >= w[1].ts) {
                return Err(Error::Invalid(format!(
                    "backfill of `{key}`: samples must be sorted with unique timestamps"
                )));
            }
        }
        let keys: Vec<&SeriesKey> = series.iter().map(|(k, _)| k).collect();
        let ids = self.inner.series.resolve(&keys)?;
        let chunk = self.inner.options.chunk_samples;
        let mut stored = 0;
        let mut group = Vec::new();
        for (id, (_, samples)) in ids.into_iter().zip(series) {
            stored += samples.len();
            for part in samples.chunks(chunk) {
                group.push((id, part.to_vec()));
                if group.len() == SEAL_GROUP {
                    self.persist(&std::mem::take(&mut group))?;
                }
            }
        }
        self.persist(&group)?;
        Ok(stored)
    }

    /// Waits until every full head queued for sealing has been sealed.
    pub fn wait_for_seals(&self) {
        self.inner.seals.wait_idle();
    }

    /// Writes a batch durably: when this returns `Ok`, the samples survive a crash.
    pub fn write(&self, request: WriteRequest) -> Result<WriteOutcome> {
        let inner = &self.inner;
        if let Some(batch) = &request.batch_id
            && let Some((_, outcome)) = inner.batches.lock().map_err(|_| Error::Poisoned)?.get(batch)
        {
            return Ok(WriteOutcome { replayed_batch: true, ..*outcome });
        }
        let keys: Vec<&SeriesKey> = request.series.iter().map(|(k, _)| k).collect();
        let ids = inner.series.resolve(&keys)?;
        let columns: Vec<(SeriesId, &[Sample])> =
            ids.iter().copied().zip(request.series.iter().map(|(_, s)| s.as_slice())).collect();
        let payload = codec::encode_wal_record(request.batch_id.as_deref(), &columns);
        let mut outcome = WriteOutcome::default();
        let mut full = Vec::new();
        {
            let _gate = inner.gate.read().map_err(|_| Error::Poisoned)?;
            let (seq, segment) = inner.wal.append(&payload)?;
            inner.wal.sync(seq)?;
            for (id, samples) in &columns {
                let (inserted, len) = inner.head.insert(*id, samples, segment);
                outcome.stored += inserted.added;
                outcome.duplicates += inserted.duplicates;
                outcome.replaced += inserted.replaced;
                if len >= inner.options.chunk_samples {
                    full.push(*id);
                }
            }
        }
        if let Some(batch) = request.batch_id.clone()
            && let Ok(mut batches) = inner.batches.lock()
        {
            batches.insert(batch, (now_ms(), outcome));
        }
        if inner.subscribers.receiver_count() > 0 {
            let _ =
                inner.subscribers.send(Arc::new(Published { series: request.series, historical: request.historical }));
        }
        if !full.is_empty() && !inner.seals.offer(&full) {
            self.seal(&full)?;
        }
        if inner.wal.total_bytes() > inner.options.wal_checkpoint_bytes {
            // Queued seals first, so that the checkpoint never cuts a series that is full.
            self.wait_for_seals();
            self.checkpoint()?;
        }
        Ok(outcome)
    }

    /// Writes sealed samples as chunks and rollups, each in its series' retention class.
    fn persist(&self, sealed: &[(SeriesId, Vec<Sample>)]) -> Result<()> {
        let classes: HashMap<SeriesId, RetentionClass> = {
            let map = self.inner.classes.read().map_err(|_| Error::Poisoned)?;
            sealed.iter().filter_map(|(id, _)| Some((*id, *map.get(&self.inner.series.key(*id)?)?))).collect()
        };
        self.inner.tiers.persist(sealed, |id| classes.get(&id).copied().unwrap_or_default())
    }

    /// Sets the retention class of series (from the asset models); series not named keep
    /// theirs. Applies to chunks sealed from now on.
    pub fn set_classes(&self, classes: impl IntoIterator<Item = (SeriesKey, RetentionClass)>) {
        if let Ok(mut map) = self.inner.classes.write() {
            map.extend(classes);
        }
    }

    /// Deletes raw chunks and rollups older than their class keeps them; returns the
    /// number of segment files deleted.
    pub fn enforce_retention(&self, now: Millis) -> Result<usize> {
        let deleted = self.inner.tiers.enforce(&self.inner.options.retention, now)?;
        if deleted > 0 {
            tracing::info!(segments = deleted, "retention deleted expired telemetry");
        }
        Ok(deleted)
    }

    /// Periodic upkeep for a running hub: bounds the WAL and applies retention.
    pub fn maintain(&self) -> Result<()> {
        self.checkpoint()?;
        self.enforce_retention(now_ms())?;
        Ok(())
    }

    /// Seals the heads of `ids` into chunks, a group at a time (a group's copies are the
    /// only plain samples in memory).
    fn seal(&self, ids: &[SeriesId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let _sealing = self.inner.checkpointing.read().map_err(|_| Error::Poisoned)?;
        // A series queued twice may have been sealed meanwhile: only full heads are sealed.
        let full = self.inner.options.chunk_samples;
        for group in ids.chunks(SEAL_GROUP) {
            // Copies: the samples stay queryable in the head until their chunk is indexed.
            let copies: Vec<(SeriesId, Vec<Sample>)> =
                group.iter().filter_map(|id| Some((*id, self.inner.head.copy_for_seal(*id, full)?))).collect();
            if let Err(error) = self.persist(&copies) {
                for (id, _) in &copies {
                    self.inner.head.cancel_seal(*id);
                }
                return Err(error);
            }
            for (id, sealed) in &copies {
                self.inner.head.remove_sealed(*id, sealed);
            }
        }
        Ok(())
    }

    /// Seals every head holding samples from before WAL `segment`, a group at a time.
    /// Heads holding `full` samples or more are left alone.
    fn seal_older_than(&self, segment: u64, full: usize) -> Result<()> {
        loop {
            let group = self.inner.head.take_older_than(segment, SEAL_GROUP, full);
            if group.is_empty() {
                return Ok(());
            }
            if let Err(error) = self.persist(&group) {
                for (id, samples) in group {
                    self.inner.head.restore(id, samples, 0);
                }
                return Err(error);
            }
        }
    }

    /// Bounds the WAL. Segments whose samples are all sealed are deleted; if the WAL is
    /// still over `wal_checkpoint_bytes / 2`, the heads that pin its oldest segments
    /// (series too slow to fill a chunk) are sealed early so those segments can go too.
    /// Fast series are never cut: they seal on their own when their chunk is full.
    pub fn checkpoint(&self) -> Result<()> {
        let inner = &self.inner;
        let Ok(_only_one) = inner.checkpointing.try_write() else { return Ok(()) };
        let (free, boundary) = {
            // No writer is between its WAL append and its head insert while this is held;
            // writers after it append at or after `current`.
            let _gate = inner.gate.write().map_err(|_| Error::Poisoned)?;
            let current = inner.wal.current_segment();
            let free = inner.head.min_since_segment().unwrap_or(current).min(current);
            let sizes = inner.wal.segment_sizes();
            let mut keep = 0u64;
            let mut boundary = current;
            for (number, bytes) in sizes.iter().rev() {
                if keep + bytes > inner.options.wal_checkpoint_bytes / 2 && *number < current {
                    break;
                }
                keep += bytes;
                boundary = *number;
            }
            (free, boundary)
        };
        let free = if boundary > free {
            tracing::debug!(boundary, "sealing slow series early to bound the WAL");
            // Full heads are left to the sealer: they are fast series, never cut.
            self.seal_older_than(boundary, inner.options.chunk_samples)?;
            let _gate = inner.gate.write().map_err(|_| Error::Poisoned)?;
            let current = inner.wal.current_segment();
            inner.head.min_since_segment().unwrap_or(current).min(current)
        } else {
            free
        };
        self.save_batches()?;
        inner.wal.remove_before(free)?;
        Ok(())
    }

    /// Seals every head into chunks, whatever its size, and drops the WAL behind them.
    /// For measuring sealed sizes, and for a hub that will be archived.
    pub fn seal_all(&self) -> Result<()> {
        self.wait_for_seals();
        {
            let _sealing = self.inner.checkpointing.read().map_err(|_| Error::Poisoned)?;
            {
                // Close the open WAL segment, so that the checkpoint below can drop it too.
                let _gate = self.inner.gate.write().map_err(|_| Error::Poisoned)?;
                self.inner.wal.rotate()?;
            }
            self.seal_older_than(u64::MAX, usize::MAX)?;
        }
        self.checkpoint()
    }

    fn save_batches(&self) -> Result<()> {
        let cutoff = now_ms() - self.inner.options.batch_id_ttl_ms;
        let mut batches = self.inner.batches.lock().map_err(|_| Error::Poisoned)?;
        batches.retain(|_, (at, _)| *at >= cutoff);
        let mut text = String::new();
        for (id, (at, o)) in batches.iter() {
            text.push_str(&format!(
                "{at}\t{}\t{}\t{}\t{}\n",
                o.stored,
                o.duplicates,
                o.replaced,
                id.replace(['\t', '\n'], " ")
            ));
        }
        let path = self.inner.dir.join("batches.log");
        let temporary = self.inner.dir.join("batches.log.tmp");
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|e| Error::Io(format!("writing {}: {e}", path.display())))?;
        wal::sync_dir(&self.inner.dir)
    }

    /// Samples of a series with `from <= ts < to`, oldest first, one per timestamp.
    pub fn range(&self, key: &SeriesKey, from: Millis, to: Millis) -> Result<Vec<Sample>> {
        let Some(id) = self.inner.series.get(key) else { return Ok(Vec::new()) };
        self.range_by_id(id, from, to)
    }

    fn range_by_id(&self, id: SeriesId, from: Millis, to: Millis) -> Result<Vec<Sample>> {
        // Chunks in write order, then the head: one merge keeps the latest write per stamp.
        let mut all = Vec::new();
        self.inner.tiers.raw_range_unmerged(id, from, to, &mut all)?;
        self.inner.head.range_into(id, from, to, &mut all);
        Ok(query::merge_latest_wins(all))
    }

    /// The newest sample of a series.
    pub fn latest(&self, key: &SeriesKey) -> Result<Option<Sample>> {
        let Some(id) = self.inner.series.get(key) else { return Ok(None) };
        let from_head = self.inner.head.last(id);
        let from_chunks = self.inner.tiers.raw_last(id)?;
        Ok(match (from_head, from_chunks) {
            (Some(h), Some(c)) if c.ts > h.ts => Some(c),
            (Some(h), _) => Some(h),
            (None, c) => c,
        })
    }

    /// Good-quality samples of a series in `[from, to)` aggregated into buckets of
    /// `width` aligned to the epoch. When `width` is a whole number of minutes (hours),
    /// sealed data is read from the per-minute (per-hour) rollups, so long ranges cost
    /// one bucket per minute (hour) instead of every sample and still answer after raw
    /// retention; the edges of the range and unsealed data are computed from samples.
    pub fn aggregate(&self, key: &SeriesKey, from: Millis, to: Millis, width: Millis) -> Result<Aggregated> {
        let width = width.max(1);
        let Some(id) = self.inner.series.get(key) else { return Ok(Aggregated::default()) };
        let resolution = if width % tiers::HOUR == 0 {
            Resolution::Hour
        } else if width % tiers::MINUTE == 0 {
            Resolution::Minute
        } else {
            let samples = self.range_by_id(id, from, to)?;
            return Ok(Aggregated { buckets: aggregate(&samples, width), resolution: None });
        };
        let res = resolution.millis();
        let ceil = |t: Millis| t.div_euclid(res) * res + if t.rem_euclid(res) == 0 { 0 } else { res };
        let floor = |t: Millis| t.div_euclid(res) * res;
        // Rollups cover whole buckets of sealed data: not the head, not the ragged edges.
        let head_from = self.inner.head.first_ts(id).map_or(Millis::MAX, floor);
        let start = ceil(from).min(to);
        let end = floor(to).min(head_from).max(start);
        let mut parts = Vec::new();
        if from < start {
            parts.extend(aggregate(&self.range_by_id(id, from, start)?, res));
        }
        if start < end {
            let (buckets, sparse) = self.inner.tiers.rollups(resolution, id, start, end)?;
            parts.extend(buckets);
            for (a, b) in sparse {
                parts.extend(aggregate(&self.range_by_id(id, a, b)?, res));
            }
        }
        if end < to {
            parts.extend(aggregate(&self.range_by_id(id, end, to)?, res));
        }
        parts.sort_by_key(|b| b.start);
        Ok(Aggregated { buckets: merge_buckets(&parts, width), resolution: Some(resolution) })
    }

    /// Every series of an asset that has ever been written, in signal order.
    pub fn series_of_asset(&self, asset: &str) -> Vec<SeriesKey> {
        self.inner.series.of_asset(asset).into_iter().map(|(k, _)| k).collect()
    }

    /// Every sample of every series of an asset in `[from, to)`, in signal order (the
    /// in-process "last hour of an asset"; the HTTP endpoint reads the same series in
    /// parallel parts).
    pub fn asset_range(&self, asset: &str, from: Millis, to: Millis) -> Result<Vec<(SeriesKey, Vec<Sample>)>> {
        self.inner
            .series
            .of_asset(asset)
            .into_iter()
            .map(|(key, id)| Ok((key, self.range_by_id(id, from, to)?)))
            .collect()
    }

    /// Receives every accepted write, in write order (per series, in timestamp order
    /// when writers send in order). A subscriber that falls behind by more than 1024
    /// writes is told how many it missed.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Published>> {
        self.inner.subscribers.subscribe()
    }

    /// Counters for benchmarks and metrics.
    pub fn stats(&self) -> Stats {
        Stats {
            series: self.inner.series.len(),
            head_samples: self.inner.head.sample_count(),
            head_bytes: self.inner.head.memory_bytes(),
            chunks: self.inner.tiers.raw_chunk_count(),
            chunk_bytes: self.inner.tiers.raw_bytes(),
            rollup_bytes: self.inner.tiers.rollup_bytes(),
        }
    }
}

/// A snapshot of engine size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub series: usize,
    pub head_samples: usize,
    /// Memory the unsealed samples take (compressed blocks and plain tails).
    pub head_bytes: usize,
    pub chunks: usize,
    /// Bytes of raw chunks on disk.
    pub chunk_bytes: u64,
    /// Bytes of per-minute and per-hour rollups on disk.
    pub rollup_bytes: u64,
}

/// Buckets of an aggregated range, and the rollups used for the sealed part (`None`:
/// computed from samples).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregated {
    pub buckets: Vec<Bucket>,
    pub resolution: Option<Resolution>,
}

fn load_batches(dir: &Path) -> HashMap<String, (i64, WriteOutcome)> {
    let Ok(text) = std::fs::read_to_string(dir.join("batches.log")) else { return HashMap::new() };
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(5, '\t');
            let at = parts.next()?.parse().ok()?;
            let stored = parts.next()?.parse().ok()?;
            let duplicates = parts.next()?.parse().ok()?;
            let replaced = parts.next()?.parse().ok()?;
            let id = parts.next()?.to_owned();
            Some((id, (at, WriteOutcome { stored, duplicates, replaced, replayed_batch: false })))
        })
        .collect()
}
