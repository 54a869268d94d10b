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
//! Writes are committed by one thread in groups (see `commit`): the WAL, the head and
//! the stream of accepted writes (see `stream`) all see them in one order. Writers wait
//! for their answer on their own thread (`write`) or as a future (`write_async`); reads
//! are synchronous (they do blocking I/O) and async callers use `spawn_blocking`.

mod batches;
mod chunks;
mod codec;
mod commit;
mod head;
mod query;
mod retention;
mod seal;
mod series;
mod stream;
mod tiers;
mod wal;

pub use batches::BatchId;
pub use codec::{
    WalBatch, WalFormat, WalRecord, decode_chunk, decode_chunk_range, decode_rollups, decode_wal_record, encode_chunk,
    encode_rollups, encode_wal_record,
};
pub use head::Inserted;
pub use model::RetentionClass;
pub use query::{Bucket, CounterDelta, aggregate, counter_delta};
pub use retention::{Retention, RetentionPolicy};
pub use stream::{Consumer, Live, LiveReader};
pub use tiers::{Resolution, merge_buckets};

use model::sample::{Millis, Sample, SeriesKey};
use model::{AcceptedWrite, ClockRef, Position};
use seal::SEAL_GROUP;

/// The dense, engine-internal number of a series (assigned on first write, never reused).
pub type SeriesId = u32;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum Error {
    #[error("telemetry storage I/O: {0}")]
    Io(String),
    /// The disk holding the telemetry is full: nothing was written; retry once there is room.
    #[error("the hub's telemetry disk is full: {0}")]
    DiskFull(String),
    #[error("telemetry storage is corrupt: {0}")]
    Corrupt(String),
    #[error("compression failed: {0}")]
    Codec(String),
    #[error("{0}")]
    Invalid(String),
    /// A batch id this sender already used for a batch with other content.
    #[error("batch id `{id}` was already used for a different batch; use a new id for new data")]
    BatchConflict { id: String },
    /// A durable consumer asked for records the engine no longer has.
    #[error(
        "the stream consumer `{consumer}` resumes after position {after}, but the stream only has records after {available_after}"
    )]
    ConsumerBehind { consumer: String, after: Position, available_after: Position },
    #[error("the telemetry engine is closing")]
    Closed,
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
    /// Samples a durable consumer of the stream may fall behind before ingest waits for it.
    pub stream_lag_samples: usize,
    /// Where "now" comes from (batch id expiry, retention).
    pub clock: ClockRef,
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
            stream_lag_samples: 4 << 20,
            clock: model::SystemClock::shared(),
        }
    }
}

/// Samples for several series, written atomically and durably.
#[derive(Debug, Clone, Default)]
pub struct WriteRequest {
    /// A retry of a batch with the same id and content is acknowledged again without writing.
    pub batch: Option<BatchId>,
    pub series: Vec<(SeriesKey, Vec<Sample>)>,
    /// The samples were queued at the edge while the hub was unreachable and are being
    /// replayed: stored like any others, marked historical in the stream (live rules and
    /// consoles can tell them from fresh data).
    pub historical: bool,
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub stored: usize,
    pub duplicates: usize,
    pub replaced: usize,
    /// True when the batch had been written before: nothing was written this time.
    pub replayed_batch: bool,
    /// Where the write sits in the stream of accepted writes (none for a retry).
    pub position: Option<Position>,
}

/// The telemetry engine. Cheap to clone.
#[derive(Clone)]
pub struct Tsdb {
    inner: Arc<Inner>,
}

struct Inner {
    options: TsdbOptions,
    series: series::Registry,
    wal: wal::Wal,
    tiers: tiers::Tiers,
    head: head::Head,
    /// Retention class per series, from the asset models (`standard` when not set).
    classes: RwLock<HashMap<SeriesKey, RetentionClass>>,
    /// The committer holds it shared from WAL append to head insert; a checkpoint holds
    /// it exclusively while it decides which WAL segments are covered by chunks.
    gate: RwLock<()>,
    /// Seals hold it shared from taking a head until its chunk is durable; a checkpoint
    /// holds it exclusively, so it never deletes WAL behind a chunk still being written.
    checkpointing: RwLock<()>,
    batches: batches::Batches,
    /// Accepted writes in commit order, for the hub's consumers.
    stream: Arc<stream::Stream>,
    /// Writes waiting for the committer.
    commits: Arc<commit::CommitQueue>,
    /// Full heads waiting for the background sealer.
    seals: Arc<seal::SealQueue>,
    /// The committer and sealer threads, joined by `close`.
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.commits.close();
        self.seals.close();
        self.stream.close();
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, durably.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| wal::io_error("writing", path, &e))?;
    wal::sync_dir(path.parent().unwrap_or(Path::new(".")))
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
        let batches = batches::Batches::open(dir);
        let stream = Arc::new(stream::Stream::open(dir, options.stream_lag_samples)?);
        let replayed = records.len();
        let now = options.clock.now_ms();
        let needed_after = stream.min_slot();
        let mut kinds = Vec::new();
        for (position, record) in records {
            // Durable consumers that had not processed this record get it again.
            let deliver = needed_after.is_some_and(|after| position > after);
            let mut outcome = WriteOutcome::default();
            let mut delivered = Vec::new();
            for (id, samples) in record.series {
                kinds.clear();
                let (inserted, _) = head.insert_classified(id, &samples, position.segment(), &mut kinds);
                outcome.stored += inserted.added;
                if deliver {
                    let key = series.key(id).ok_or_else(|| {
                        Error::Corrupt(format!("the WAL names series {id}, which the series registry does not know"))
                    })?;
                    delivered.extend(stream::deliverable(key, samples, &kinds));
                }
            }
            if let Some(batch) = record.batch {
                batches.remember(batch.scope, batch.id, batch.digest, now, outcome);
            }
            stream.replayed(AcceptedWrite { position, historical: record.historical, series: delivered });
        }
        stream.opened();
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
        let seals = Arc::new(seal::SealQueue::default());
        let commits = Arc::new(commit::CommitQueue::default());
        let db = Self {
            inner: Arc::new(Inner {
                options,
                series,
                wal,
                tiers,
                head,
                classes: RwLock::new(HashMap::new()),
                gate: RwLock::new(()),
                checkpointing: RwLock::new(()),
                batches,
                stream,
                commits: commits.clone(),
                seals: seals.clone(),
                threads: std::sync::Mutex::new(Vec::new()),
            }),
        };
        let engine = Arc::downgrade(&db.inner);
        let sealer = std::thread::Builder::new()
            .name("tsdb-sealer".into())
            .spawn(move || seal::run(engine, seals))
            .map_err(|e| Error::Io(format!("starting the sealer thread: {e}")))?;
        let engine = Arc::downgrade(&db.inner);
        let committer = std::thread::Builder::new()
            .name("tsdb-committer".into())
            .spawn(move || commit::run(engine, commits))
            .map_err(|e| Error::Io(format!("starting the committer thread: {e}")))?;
        if let Ok(mut threads) = db.inner.threads.lock() {
            threads.extend([committer, sealer]);
        }
        Ok(db)
    }

    /// Stops the engine for a clean shutdown: writes queued so far are committed and
    /// answered, later ones get `Closed`; stream readers end; the background threads are
    /// joined, and a last checkpoint saves batch ids and consumer slots. Reads still work.
    pub fn close(&self) -> Result<()> {
        self.inner.commits.close();
        let threads: Vec<_> = self.inner.threads.lock().map(|mut t| t.drain(..).collect()).unwrap_or_default();
        let mut threads = threads.into_iter();
        // The committer first (it drains the queue), then the sealer.
        if let Some(committer) = threads.next() {
            let _ = committer.join();
        }
        self.inner.seals.close();
        for thread in threads {
            let _ = thread.join();
        }
        self.inner.stream.close();
        self.checkpoint()
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

    /// Writes a batch durably, waiting on this thread: when this returns `Ok`, the
    /// samples survive a crash. Not for async code (use `write_async`).
    pub fn write(&self, request: WriteRequest) -> Result<WriteOutcome> {
        let (send, receive) = std::sync::mpsc::sync_channel(1);
        self.submit(
            request,
            Box::new(move |outcome| {
                let _ = send.send(outcome);
            }),
        )?;
        receive.recv().map_err(|_| Error::Closed)?
    }

    /// `write` for async callers: the committer answers the future, no thread waits.
    /// (Series seen for the first time are registered durably on the calling thread.)
    pub async fn write_async(&self, request: WriteRequest) -> Result<WriteOutcome> {
        let (send, receive) = tokio::sync::oneshot::channel();
        self.submit(
            request,
            Box::new(move |outcome| {
                let _ = send.send(outcome);
            }),
        )?;
        receive.await.map_err(|_| Error::Closed)?
    }

    /// Encodes the WAL record on the caller's thread and queues it for the committer.
    fn submit(&self, request: WriteRequest, reply: commit::Reply) -> Result<()> {
        let inner = &self.inner;
        let keys: Vec<&SeriesKey> = request.series.iter().map(|(k, _)| k).collect();
        let ids = inner.series.resolve(&keys)?;
        let columns: Vec<(SeriesId, &[Sample])> =
            ids.iter().copied().zip(request.series.iter().map(|(_, s)| s.as_slice())).collect();
        let batch = request.batch.as_ref().map(commit::wal_batch);
        let payload = codec::encode_wal_record(batch.as_ref(), request.historical, &columns);
        inner.commits.push(commit::Pending {
            ids,
            series: request.series,
            payload,
            batch: request.batch,
            historical: request.historical,
            reply,
        })
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
        self.enforce_retention(self.inner.options.clock.now_ms())?;
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
        // Durable consumers of the stream pin the segments of the records they still need.
        let consumers = inner.stream.min_slot().map_or(u64::MAX, |p| p.segment());
        let (free, boundary) = {
            // No write is between its WAL append and its head insert while this is held;
            // writes after it append at or after `current`.
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
        inner.batches.save(inner.options.clock.now_ms() - inner.options.batch_id_ttl_ms)?;
        inner.stream.save_slots()?;
        inner.wal.remove_before(free.min(consumers))?;
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

    /// Attaches the durable consumer `name` to the stream of accepted writes, reading
    /// after `after` — the position it persisted with its state — or, for a consumer
    /// that never ran, from the next write on. Its slot pins what it has not committed
    /// (in memory and in the WAL, across restarts); `ConsumerBehind` if `after` is older
    /// than what the engine still has.
    pub fn consume(&self, name: &str, after: Option<Position>) -> Result<Consumer> {
        if name.is_empty() || name.contains(['\t', '\n']) {
            return Err(Error::Invalid(format!("`{name}` is not a consumer name")));
        }
        self.inner.stream.attach(name, after)
    }

    /// Forgets the slots of durable consumers that did not attach in this process (no
    /// longer configured), so that they stop pinning the WAL; returns their names. A hub
    /// calls it once every consumer it runs is attached.
    pub fn release_unclaimed_consumers(&self) -> Vec<String> {
        self.inner.stream.release_unclaimed()
    }

    /// A live reader of the stream: it never holds ingest back and is told when it
    /// skipped writes. Starts at the next write.
    pub fn live(&self) -> LiveReader {
        self.inner.stream.live()
    }

    /// Each durable consumer: name, committed position, and records it has not committed.
    pub fn consumers(&self) -> Vec<(String, Position, usize)> {
        self.inner.stream.slots()
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
