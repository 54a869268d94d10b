//! The ingest service: every way samples arrive — HTTP JSON batches and line protocol
//! (decoded by `api`), the Sparkplug host, in-process sources such as the simulator —
//! calls `Ingest::ingest`, which validates against the installed base (the `Catalog`)
//! and writes durably through the telemetry engine. No HTTP types here.
//!
//! It is also where the consumers of accepted samples attach: durable consumers (alarms,
//! metering) and live readers (the console) read the engine's ordered stream of accepted
//! writes through `consume` and `live`.
//!
//! The catalogue follows the records: `watch_records` listens on the event bus for
//! changed assets and asset models and reloads it, so a new signal is accepted and a
//! deleted asset refused without a restart.

mod catalog;
pub mod line_protocol;

pub use catalog::{Catalog, Reason, Rejected, SeriesSpec};
pub use line_protocol::{LineError, Precision, parse_line_protocol};

use model::sample::{Millis, Sample, SeriesKey};
use model::{ClockRef, Position};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use store::RecordStoreRef;
use tsdb::{BatchId, Tsdb, WriteOutcome, WriteRequest};

/// Default tolerance for timestamps ahead of the hub's clock.
pub const DEFAULT_MAX_FUTURE_MS: Millis = 10 * 60 * 1000;

/// Samples grouped by series.
pub type SeriesSamples = Vec<(SeriesKey, Vec<Sample>)>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sender reused a batch id for different content: nothing was written.
    #[error(
        "batch id `{id}` was already used by this sender for a different batch; nothing was written (use a new id for new data)"
    )]
    BatchConflict { id: String },
    /// The hub's disk is full: nothing was written; the sender should keep the data and retry.
    #[error("the hub's disk is full; nothing was written: keep the data and retry later ({0})")]
    DiskFull(String),
    /// The hub is shutting down.
    #[error("the hub is shutting down; retry against the restarted hub")]
    Closed,
    #[error("telemetry storage: {0}")]
    Storage(tsdb::Error),
    #[error("records: {0}")]
    Records(#[from] store::Error),
}

impl From<tsdb::Error> for Error {
    fn from(error: tsdb::Error) -> Self {
        match error {
            tsdb::Error::BatchConflict { id } => Error::BatchConflict { id },
            tsdb::Error::DiskFull(detail) => Error::DiskFull(detail),
            tsdb::Error::Closed => Error::Closed,
            other => Error::Storage(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A batch's id as its sender gave it, with a digest of its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRef {
    pub id: String,
    /// SHA-256 of what the sender sent (for HTTP: the request body and the parameters
    /// that change its meaning), so that a reused id with other content is caught.
    pub digest: [u8; 32],
}

/// Samples from one sender.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Who sent it (a token's actor, `sparkplug:<group>/<node>`, `sim`): batch ids are
    /// unique per sender only.
    pub sender: String,
    pub id: Option<BatchRef>,
    /// Queued at the edge during an outage and replayed now.
    pub historical: bool,
    pub series: SeriesSamples,
    /// Refuse the whole batch if any sample is rejected.
    pub atomic: bool,
}

/// What became of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// What the write did; `None` when nothing was written (an atomic batch with
    /// rejections, or nothing valid to write).
    pub written: Option<WriteOutcome>,
    /// Every rejected sample with its reason.
    pub rejected: Vec<Rejected>,
}

/// Registers the descriptions of the metrics this crate records.
pub fn describe_metrics() {
    metrics::describe_counter!("treaty_telemetry_samples_stored_total", "Samples stored (new or replacing another)");
    metrics::describe_counter!(
        "treaty_telemetry_historical_samples_stored_total",
        "Samples stored that an edge gateway had queued during an outage"
    );
    metrics::describe_counter!(
        "treaty_telemetry_samples_rejected_total",
        "Samples refused by validation against the installed base, by reason"
    );
    metrics::describe_counter!("treaty_telemetry_catalog_loads_total", "Loads of the catalogue of valid series");
}

/// The ingest service. Shared as `Arc<Ingest>`.
pub struct Ingest {
    tsdb: Tsdb,
    store: RecordStoreRef,
    clock: ClockRef,
    max_future_ms: Millis,
    catalog: RwLock<Arc<Catalog>>,
    /// When an unknown asset last made the catalogue reload (at most once a second):
    /// records imported by another process before the record feed saw them.
    unknown_reload: Mutex<Option<Millis>>,
    loads: AtomicU64,
}

impl Ingest {
    /// The service over an open engine, with the catalogue loaded from `store`.
    pub async fn open(tsdb: Tsdb, store: RecordStoreRef, clock: ClockRef, max_future_ms: Millis) -> Result<Arc<Self>> {
        let ingest = Arc::new(Self {
            tsdb,
            store,
            clock,
            max_future_ms,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            unknown_reload: Mutex::new(None),
            loads: AtomicU64::new(0),
        });
        ingest.reload().await?;
        Ok(ingest)
    }

    pub fn tsdb(&self) -> &Tsdb {
        &self.tsdb
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// How many times the catalogue was loaded (tests wait for a reload with it).
    pub fn catalog_loads(&self) -> u64 {
        self.loads.load(Ordering::SeqCst)
    }

    /// Loads the catalogue of valid series from the store now; returns the asset count.
    pub async fn reload(&self) -> Result<usize> {
        let snapshot = self.store.snapshot().await?;
        let catalog = Arc::new(Catalog::from_entities(snapshot.iter().map(|s| &s.entity)));
        self.tsdb.set_classes(catalog.classes());
        let assets = catalog.asset_count();
        if let Ok(mut slot) = self.catalog.write() {
            *slot = catalog;
        }
        self.loads.fetch_add(1, Ordering::SeqCst);
        metrics::counter!("treaty_telemetry_catalog_loads_total").increment(1);
        Ok(assets)
    }

    /// The catalogue, reloaded first if it does not know one of `assets` (at most once a
    /// second, for records imported by another process).
    async fn catalog_knowing<'a>(&self, mut assets: impl Iterator<Item = &'a str>) -> Result<Arc<Catalog>> {
        let catalog = self.catalog();
        if assets.all(|a| catalog.has_asset(a)) {
            return Ok(catalog);
        }
        let now = self.clock.now_ms();
        let due = self
            .unknown_reload
            .lock()
            .map(|mut at| {
                let due = at.is_none_or(|t| now - t >= 1000);
                if due {
                    *at = Some(now);
                }
                due
            })
            .unwrap_or(true);
        if due {
            self.reload().await?;
        }
        Ok(self.catalog())
    }

    /// Whether `asset` is in the installed base.
    pub async fn knows_asset(&self, asset: &str) -> Result<bool> {
        Ok(self.catalog_knowing(std::iter::once(asset)).await?.has_asset(asset))
    }

    /// Splits samples into what may be stored and what is rejected, with reasons. A
    /// sample of an unknown asset reloads the catalogue (at most once a second) and the
    /// batch is checked again: the asset may have been imported by another process.
    pub async fn validate(&self, series: SeriesSamples) -> Result<(SeriesSamples, Vec<Rejected>)> {
        let now = self.clock.now_ms();
        let catalog = self.catalog();
        if series.iter().all(|(key, _)| catalog.has_asset(&key.asset)) {
            return Ok(catalog.validate(series, now, self.max_future_ms));
        }
        let catalog = self.catalog_knowing(series.iter().map(|(k, _)| k.asset.as_str())).await?;
        Ok(catalog.validate(series, now, self.max_future_ms))
    }

    /// Validates and writes a batch durably: when this returns, what `written` says was
    /// stored survives a crash. Rejected samples are reported, not stored.
    pub async fn ingest(&self, batch: Batch) -> Result<Report> {
        let Batch { sender, id, historical, series, atomic } = batch;
        let (accepted, rejected) = self.validate(series).await?;
        count_rejections(&rejected);
        let submitted: usize = accepted.iter().map(|(_, s)| s.len()).sum();
        if (atomic && !rejected.is_empty()) || submitted == 0 {
            return Ok(Report { written: None, rejected });
        }
        let batch = id.map(|b| BatchId { scope: sender, id: b.id, digest: b.digest });
        let outcome = self.tsdb.write_async(WriteRequest { batch, series: accepted, historical }).await?;
        metrics::counter!("treaty_telemetry_samples_stored_total").increment(outcome.stored as u64);
        if historical {
            metrics::counter!("treaty_telemetry_historical_samples_stored_total").increment(outcome.stored as u64);
        }
        Ok(Report { written: Some(outcome), rejected })
    }

    /// Attaches a durable consumer of accepted writes (see `tsdb::Tsdb::consume`).
    pub fn consume(&self, name: &str, after: Option<Position>) -> Result<tsdb::Consumer> {
        Ok(self.tsdb.consume(name, after)?)
    }

    /// A live reader of accepted writes, which may skip (and says so).
    pub fn live(&self) -> tsdb::LiveReader {
        self.tsdb.live()
    }

    /// Follows record changes on the bus and reloads the catalogue when an asset or an
    /// asset model changed (several changes in a row cost one reload). Runs until the
    /// subscription ends (the bus closed).
    pub async fn watch_records(self: Arc<Self>, mut changes: bus::Subscription) {
        while let Some(event) = changes.next().await {
            if !affects_catalog(&event.subject) {
                continue;
            }
            // Drain what else is queued: one reload covers them all.
            while changes.try_next().is_some() {}
            if let Err(error) = self.reload().await {
                tracing::error!(%error, "cannot reload the series catalogue after a record change");
            }
        }
    }
}

/// Subjects of record changes the catalogue depends on (`records.<kind>.<action>`).
pub const CATALOG_SUBJECTS: &str = "records.>";

fn affects_catalog(subject: &str) -> bool {
    bus::matches("records.asset.*", subject) || bus::matches("records.asset_model.*", subject)
}

fn count_rejections(rejected: &[Rejected]) {
    for rejection in rejected {
        metrics::counter!("treaty_telemetry_samples_rejected_total", "reason" => rejection.reason.code()).increment(1);
    }
}
