//! A running hub. One way to run one: `Hub::start(options)` opens the telemetry engine, the ingest
//! service and the event bus over a records store, starts every background task and the
//! HTTP(S) server, and returns a `RunningHub`. `treaty serve`, the tests and `treaty
//! demo` all start hubs this way.
//!
//! Every task the hub starts is owned by the `RunningHub` and awaited by `shutdown`,
//! which is bounded: it stops accepting connections, ends long-lived streams (SSE) and
//! background tasks, waits at most `shutdown_grace` for requests in flight, then closes
//! the engine — queued writes are committed and answered, and a last checkpoint saves
//! batch ids and consumer positions.

pub mod sparkplug_host;
pub mod tls;

use anyhow::Context;
use bus::{BusRef, InProcessBus};
use ingest::Ingest;
use model::ClockRef;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::RecordStoreRef;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tsdb::{Tsdb, TsdbOptions};

/// How a hub runs. `HubOptions::new(data_dir)` gives the defaults of `treaty serve`.
pub struct HubOptions {
    /// Where the telemetry engine keeps its files (`<data dir>/telemetry`).
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free one (see `RunningHub::address`).
    pub bind: SocketAddr,
    pub body_limit: usize,
    pub telemetry_body_limit: usize,
    /// Samples timestamped further ahead of the hub's clock are rejected.
    pub max_future_ms: i64,
    /// The telemetry engine's settings (retention, stream limits); its clock is the hub's.
    pub tsdb: TsdbOptions,
    /// Serve HTTPS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Also act as a Sparkplug B host application.
    pub sparkplug: Option<sparkplug_host::HostOptions>,
    /// Renders `/metrics` and keeps the recorder's memory bounded (installed once per
    /// process by `treaty serve`; tests run without).
    pub metrics: Option<Metrics>,
    /// Where "now" comes from, for every component of the hub.
    pub clock: ClockRef,
    /// How long shutdown waits for requests in flight before it cuts them off.
    pub shutdown_grace: Duration,
    /// How often the engine bounds its WAL and applies retention.
    pub maintenance_every: Duration,
}

/// The process's metrics recorder, as the hub uses it.
#[derive(Clone)]
pub struct Metrics {
    pub render: api::MetricsRender,
    /// Drains histograms; called every few seconds.
    pub upkeep: Arc<dyn Fn() + Send + Sync>,
}

impl HubOptions {
    pub fn new(data_dir: PathBuf) -> Self {
        let clock = model::SystemClock::shared();
        Self {
            data_dir,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            body_limit: api::DEFAULT_BODY_LIMIT,
            telemetry_body_limit: api::DEFAULT_TELEMETRY_BODY_LIMIT,
            max_future_ms: ingest::DEFAULT_MAX_FUTURE_MS,
            tsdb: TsdbOptions { clock: clock.clone(), ..TsdbOptions::default() },
            tls: None,
            sparkplug: None,
            metrics: None,
            clock,
            shutdown_grace: Duration::from_secs(10),
            maintenance_every: Duration::from_secs(300),
        }
    }
}

/// Opens the records store in a data directory (SQLite, migrated).
pub fn open_store(data_dir: &std::path::Path) -> anyhow::Result<RecordStoreRef> {
    let store = store::SqliteStore::open(data_dir)
        .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
    Ok(Arc::new(store))
}

/// A hub that is serving.
pub struct RunningHub {
    /// Where it listens (the port chosen when `bind` asked for port 0).
    pub address: SocketAddr,
    pub scheme: &'static str,
    pub store: RecordStoreRef,
    pub ingest: Arc<Ingest>,
    pub bus: BusRef,
    in_process_bus: Arc<InProcessBus>,
    tsdb: Tsdb,
    /// Cancelled by `shutdown`: the server stops accepting, streams and tasks end.
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    grace: Duration,
}

pub struct Hub;

impl Hub {
    /// Starts a hub over `store` (see `open_store`).
    pub async fn start(options: HubOptions, store: RecordStoreRef) -> anyhow::Result<RunningHub> {
        let telemetry_dir = options.data_dir.join("telemetry");
        let tsdb_options = TsdbOptions { clock: options.clock.clone(), ..options.tsdb };
        let tsdb = tokio::task::spawn_blocking(move || Tsdb::open(&telemetry_dir, tsdb_options))
            .await
            .context("opening the telemetry engine")?
            .context("opening the telemetry engine")?;
        let ingest = Ingest::open(tsdb.clone(), store.clone(), options.clock.clone(), options.max_future_ms)
            .await
            .context("loading the series catalogue")?;
        tracing::info!(assets = ingest.catalog().asset_count(), "telemetry catalogue loaded");
        let in_process_bus = Arc::new(InProcessBus::new());
        let bus: BusRef = in_process_bus.clone();
        let stop = CancellationToken::new();
        let mut tasks: Vec<(&'static str, JoinHandle<()>)> = Vec::new();

        // Durable consumers of the sample stream attach here (alarms, metering); then the
        // slots of consumers no longer configured stop pinning the WAL.
        for released in tsdb.release_unclaimed_consumers() {
            tracing::warn!(consumer = %released, "released the stream position of a consumer that no longer runs");
        }

        let changes = bus.subscribe(ingest::CATALOG_SUBJECTS).await.context("subscribing to record changes")?;
        tasks.push(("catalogue", tokio::spawn(ingest.clone().watch_records(changes))));
        tasks.push(("record feed", tokio::spawn(store::feed::relay(store.clone(), bus.clone(), stop.clone()))));
        tasks.push(("maintenance", tokio::spawn(maintain(tsdb.clone(), options.maintenance_every, stop.clone()))));
        if let Some(metrics) = &options.metrics {
            tasks.push(("metrics upkeep", tokio::spawn(metrics_upkeep(metrics.upkeep.clone(), stop.clone()))));
        }
        if let Some(host) = options.sparkplug {
            let (ingest, clock, stop) = (ingest.clone(), options.clock.clone(), stop.clone());
            tasks.push((
                "sparkplug host",
                tokio::spawn(async move {
                    if let Err(error) = sparkplug_host::run(host, ingest, clock, stop).await {
                        tracing::error!(error = %format!("{error:#}"), "the Sparkplug host stopped");
                    }
                }),
            ));
        }

        let app_options = api::AppOptions {
            body_limit: options.body_limit,
            telemetry_body_limit: options.telemetry_body_limit,
            metrics: options.metrics.as_ref().map(|m| m.render.clone()),
            ingest: Some(ingest.clone()),
            clock: options.clock.clone(),
            shutdown: stop.clone(),
        };
        let state = api::state(store.clone(), app_options);
        // Remembered tokens are forgotten whenever tokens change (a revocation by the CLI
        // in another process included).
        let tokens = bus.subscribe("records.token.>").await.context("subscribing to token changes")?;
        tasks.push(("token changes", tokio::spawn(forget_tokens(state.clone(), tokens))));
        let router = api::router(state);
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .with_context(|| format!("cannot listen on {}", options.bind))?;
        let address = listener.local_addr().context("reading the bound address")?;
        let scheme = if options.tls.is_some() { "https" } else { "http" };
        let stopped = stop.clone().cancelled_owned();
        let server = match options.tls {
            Some(config) => {
                let listener = tls::TlsListener::new(listener, config).context("TLS listener")?;
                tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(stopped).await })
            }
            None => tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(stopped).await }),
        };
        tracing::info!(%address, scheme, data_dir = %options.data_dir.display(), "serving the Treaty API");
        Ok(RunningHub {
            address,
            scheme,
            store,
            ingest,
            bus,
            in_process_bus,
            tsdb,
            stop,
            server,
            tasks,
            grace: options.shutdown_grace,
        })
    }
}

impl RunningHub {
    /// `http://127.0.0.1:PORT` (or https).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.address)
    }

    /// Resolves once the hub's shutdown has begun.
    pub fn stopping(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.stop.clone().cancelled_owned()
    }

    /// Stops the hub: no new connections; streams and background tasks end; requests in
    /// flight get `shutdown_grace` to finish; then the engine closes (queued writes are
    /// committed and answered, a last checkpoint runs).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        tracing::info!("shutting down the hub: finishing in-flight requests");
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + self.grace;
        let mut server = self.server;
        match tokio::time::timeout_at(deadline, &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::error!(%error, "the HTTP server failed"),
            Ok(Err(error)) => tracing::error!(%error, "the HTTP server task failed"),
            Err(_) => {
                tracing::warn!(
                    grace_s = self.grace.as_secs(),
                    "requests still in flight after the grace period; cutting them off"
                );
                server.abort();
            }
        }
        // The bus closes, so that its subscribers (the catalogue) end too.
        self.in_process_bus.close();
        for (name, mut task) in self.tasks {
            match tokio::time::timeout_at(deadline.max(tokio::time::Instant::now() + Duration::from_secs(1)), &mut task)
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(task = name, %error, "a hub task failed"),
                Err(_) => {
                    tracing::warn!(task = name, "a hub task did not stop in time; aborting it");
                    task.abort();
                }
            }
        }
        let tsdb = self.tsdb;
        tokio::task::spawn_blocking(move || tsdb.close())
            .await
            .context("closing the telemetry engine")?
            .context("closing the telemetry engine")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Registers the descriptions of the metrics the hub's own parts record.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "treaty_sparkplug_unbound_metrics_total",
        "Sparkplug metrics refused because their edge node is not bound to the device's asset"
    );
    metrics::describe_counter!(
        "treaty_sparkplug_samples_dropped_total",
        "Sparkplug samples dropped after they could not be stored for too long"
    );
}

/// Forgets remembered tokens on every token change; ends with the bus.
async fn forget_tokens(state: Arc<api::AppState>, mut changes: bus::Subscription) {
    while changes.next().await.is_some() {
        state.auth.forget();
    }
}

/// Bounds the WAL and applies retention, every `every`, until `stop`.
async fn maintain(tsdb: Tsdb, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let engine = tsdb.clone();
        match tokio::task::spawn_blocking(move || engine.maintain()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "telemetry maintenance failed; retrying later"),
            Err(error) => tracing::error!(%error, "telemetry maintenance panicked"),
        }
    }
}

/// Drains the metrics recorder's histograms every 5 s, so that its memory stays bounded.
async fn metrics_upkeep(upkeep: Arc<dyn Fn() + Send + Sync>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => upkeep(),
            () = stop.cancelled() => return,
        }
    }
}
