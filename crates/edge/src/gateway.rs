//! The running gateway (`treaty edge`): Modbus pollers, OPC UA sessions and MQTT
//! subscriptions -> interlocks and per-tag filters -> batches in the store-and-forward
//! spool -> the uplink, which sends them to the hub's JSON batch endpoint with the spool
//! sequence as batch id and acknowledges them in the spool only after the hub replied
//! 2xx. The gateway opens no listening port but the optional loopback health endpoint.

use crate::config::{EdgeFile, Interlock};
use crate::filter::Filter;
use crate::modbus::Device;
use crate::modbus::Table;
use crate::spool::{Entry, Spool, SpoolOptions};
use model::sample::{Sample, SeriesKey};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

fn now_ms() -> i64 {
    model::Timestamp::now().0
}

/// The hub: where it is and, for `https://`, how to talk TLS to it.
#[derive(Clone)]
struct Hub {
    url: crate::config::HubUrl,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Hub {
    fn new(gateway: &crate::config::Gateway) -> Result<Self, GatewayError> {
        let url = crate::config::hub_url(&gateway.hub)
            .ok_or_else(|| GatewayError::Config(format!("bad hub URL `{}`", gateway.hub)))?;
        let tls = if url.tls {
            let config =
                crate::tls::client_config(gateway.hub_ca_file.as_deref(), None).map_err(GatewayError::Config)?;
            Some(tokio_rustls::TlsConnector::from(config))
        } else {
            None
        };
        Ok(Self { url, tls })
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("store-and-forward queue: {0}")]
    Spool(#[from] crate::spool::SpoolError),
    #[error("{0}")]
    Config(String),
}

/// Runs the gateway (an edge file that passed `config::check`) until `stop` turns true.
pub async fn run(edge: EdgeFile, token: String, mut stop: watch::Receiver<bool>) -> Result<(), GatewayError> {
    let spool_dir = edge.gateway.spool_dir.clone();
    let options = SpoolOptions {
        max_bytes: edge.gateway.spool_max_mb.saturating_mul(1 << 20),
        overflow: edge.gateway.overflow,
        ..SpoolOptions::default()
    };
    let spool = Arc::new(
        tokio::task::spawn_blocking(move || Spool::open(&spool_dir, options))
            .await
            .map_err(|e| GatewayError::Config(e.to_string()))??,
    );
    let hub = Hub::new(&edge.gateway)?;
    let health = Arc::new(crate::health::Health::new(&edge.gateway.id, spool.clone()));
    if let Some(address) = &edge.gateway.health {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| GatewayError::Config(format!("health endpoint {address}: {e}")))?;
        tracing::info!(%address, "health endpoint: GET /health, /metrics");
        tokio::spawn(crate::health::serve(listener, health.clone(), stop.clone()));
    }
    let (samples, mut incoming) = mpsc::channel::<Vec<(SeriesKey, Sample)>>(1024);
    // One writer (with its own connection) per device an interlock writes to.
    let audit = edge.gateway.spool_dir.join("interlock-audit.jsonl");
    let mut writers: HashMap<String, mpsc::Sender<WriteCommand>> = HashMap::new();
    for rule in &edge.interlocks {
        let rule = rule.get_ref();
        if writers.contains_key(&rule.device) {
            continue;
        }
        let Some(device) = edge.modbus.iter().find(|d| d.name == rule.device) else { continue };
        let address: std::net::SocketAddr = device
            .address
            .parse()
            .map_err(|_| GatewayError::Config(format!("bad device address {}", device.address)))?;
        let (send, receive) = mpsc::channel(64);
        let timeout = Duration::from_millis(device.timeout_ms);
        let report = Report::new(&hub, &edge.gateway, &token);
        tokio::spawn(writer(device.name.clone(), address, device.unit, timeout, receive, audit.clone(), report));
        writers.insert(rule.device.clone(), send);
    }
    for device in &edge.modbus {
        let address = device
            .address
            .parse()
            .map_err(|_| GatewayError::Config(format!("bad device address {}", device.address)))?;
        for (p, poll) in device.polls.iter().enumerate() {
            let source = if device.polls.len() == 1 { device.name.clone() } else { format!("{}[{p}]", device.name) };
            let health = health.clone();
            let tags: Vec<_> = poll.tags.iter().map(|t| t.get_ref().tag()).collect();
            let mapped = poll.tags.iter().map(|t| {
                let t = t.get_ref();
                (SeriesKey::new(t.asset.clone(), t.signal.clone()), &t.filter)
            });
            let mut pipeline = Pipeline::new(mapped, &edge.interlocks, &writers)?;
            let mut device = Device::new(address, device.unit, Duration::from_millis(device.timeout_ms), tags);
            let interval = Duration::from_millis(poll.interval_ms.max(1));
            let samples = samples.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.changed() => return pipeline.hand_over(&samples).await,
                    }
                    let polled = device.poll(now_ms()).await;
                    if let Ok(mut map) = health.modbus.lock() {
                        map.insert(source.clone(), device.counters);
                    }
                    let out = pipeline.process(polled, std::time::Instant::now()).await;
                    if !out.is_empty() && samples.send(out).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    for server in &edge.opcua {
        let server = server.get_ref();
        let mapped = server.nodes.iter().map(|t| {
            let t = t.get_ref();
            (SeriesKey::new(t.asset.clone(), t.signal.clone()), &t.filter)
        });
        let pipeline = Pipeline::new(mapped, &edge.interlocks, &writers)?;
        tokio::spawn(crate::opcua::run(
            server.clone(),
            edge.gateway.id.clone(),
            edge.gateway.spool_dir.join("pki"),
            pipeline,
            samples.clone(),
            stop.clone(),
            Some(health.clone()),
        ));
    }
    for broker in &edge.mqtt {
        let broker = broker.get_ref();
        let mapped = broker.json.iter().flat_map(|t| {
            let t = t.get_ref();
            t.tags
                .iter()
                .map(|tag| (SeriesKey::new(t.asset.clone(), tag.get_ref().signal.clone()), &tag.get_ref().filter))
        });
        let sparkplug = broker.sparkplug.iter().flat_map(|n| {
            let n = n.get_ref();
            n.tags
                .iter()
                .map(|tag| (SeriesKey::new(n.asset.clone(), tag.get_ref().signal.clone()), &tag.get_ref().filter))
        });
        let pipeline = Pipeline::new(mapped.chain(sparkplug), &edge.interlocks, &writers)?;
        let client_id = broker.client_id.clone().unwrap_or_else(|| format!("{}-{}", edge.gateway.id, broker.name));
        let source = crate::mqtt::Source::new(broker)
            .map_err(GatewayError::Config)?
            .with_health(health.clone(), broker.name.clone());
        tokio::spawn(crate::mqtt::run(source, client_id, pipeline, samples.clone(), stop.clone()));
    }
    drop(samples);
    // Batcher: what arrived during `batch_ms` becomes one durable spool record.
    let batcher_spool = spool.clone();
    let batch_every = Duration::from_millis(edge.gateway.batch_ms.max(10));
    let (dropped_now, dropped_seen) = watch::channel(spool.stats());
    tokio::spawn(overflow_reporter(Report::new(&hub, &edge.gateway, &token), dropped_seen));
    // Fresh batches also go straight to the uplink, so that live data keeps flowing
    // while a backlog is replayed (they are sent again, harmlessly, in their turn).
    let (live, live_batches) = mpsc::channel::<Entry>(4);
    let batcher = tokio::spawn(async move {
        let mut pending: BTreeMap<SeriesKey, Vec<Sample>> = BTreeMap::new();
        let mut tick = tokio::time::interval(batch_every);
        loop {
            tokio::select! {
                received = incoming.recv() => {
                    if let Some(samples) = received {
                        for (key, sample) in samples {
                            pending.entry(key).or_default().push(sample);
                        }
                        continue;
                    }
                }
                _ = tick.tick() => {}
            }
            if !pending.is_empty() {
                let batch: Vec<(SeriesKey, Vec<Sample>)> = std::mem::take(&mut pending).into_iter().collect();
                let spool = batcher_spool.clone();
                match tokio::task::spawn_blocking(move || (spool.push(&batch), batch)).await {
                    Ok((Ok(Some(seq)), series)) => {
                        let _ = live.try_send(Entry { seq, series });
                    }
                    Ok((Ok(None), _)) => {}
                    Ok((Err(error), _)) => tracing::error!(%error, "cannot queue samples for the hub"),
                    Err(error) => tracing::error!(%error, "queueing task failed"),
                }
                let stats = batcher_spool.stats();
                dropped_now.send_if_modified(|seen| {
                    let more = stats.dropped_samples > seen.dropped_samples;
                    if more {
                        *seen = stats;
                    }
                    more
                });
            }
            if incoming.is_closed() && incoming.is_empty() {
                return;
            }
        }
    });
    // Batch ids are `<gateway>-<spool id>-<seq>`: unique even if the spool is wiped.
    let batch_prefix = format!("{}-{:016x}", edge.gateway.id, spool.id());
    let uplink = match &edge.uplink {
        Some(sparkplug) => {
            let sparkplug = sparkplug.get_ref().clone();
            let node = sparkplug.node_id(&edge.gateway).to_owned();
            let settings = crate::uplink::Settings {
                client_id: sparkplug.client_id.clone().unwrap_or_else(|| format!("{}-uplink", edge.gateway.id)),
                node,
                uplink: sparkplug,
                spool_dir: edge.gateway.spool_dir.clone(),
            };
            let series = crate::uplink::mapped_series(&edge);
            tokio::spawn(crate::uplink::run(settings, series, spool, health, stop.clone()))
        }
        None => {
            let lane = Lane { hub, batch_prefix, token, health };
            tokio::spawn(uplink(lane, spool, live_batches, stop.clone()))
        }
    };
    let _ = stop.changed().await;
    // The sources stop, hand over what their filters held and drop their senders; the
    // batcher then queues the rest durably and ends (delivered at the next start).
    let mut batcher = batcher;
    if tokio::time::timeout(Duration::from_secs(10), &mut batcher).await.is_err() {
        tracing::error!("the gateway's sources did not stop within 10 s; samples not yet queued are lost");
        batcher.abort();
    }
    let _ = uplink.await;
    Ok(())
}

/// Tells the hub about dropped data: one event per new total (the event id makes a
/// retry harmless), coalesced while the hub is unreachable, so that a long outage
/// costs one pending report, not one per batch.
async fn overflow_reporter(report: Report, mut dropped: watch::Receiver<crate::spool::SpoolStats>) {
    let mut reported = dropped.borrow_and_update().dropped_samples;
    while dropped.changed().await.is_ok() {
        let stats = *dropped.borrow_and_update();
        if stats.dropped_samples <= reported {
            continue;
        }
        let details = serde_json::json!({
            "dropped_samples": stats.dropped_samples - reported,
            "dropped_total": stats.dropped_samples,
            "dropped_batches_total": stats.dropped_records,
        });
        let event = format!("{}/spool_overflow/{}", report.gateway, stats.dropped_samples);
        report_event(report.clone(), event, "spool_overflow", None, details).await;
        reported = stats.dropped_samples;
    }
}

/// Where interlock writes are reported (the hub's audit trail).
#[derive(Clone)]
struct Report {
    hub: Hub,
    token: String,
    gateway: String,
}

impl Report {
    fn new(hub: &Hub, gateway: &crate::config::Gateway, token: &str) -> Self {
        Self { hub: hub.clone(), token: token.to_owned(), gateway: gateway.id.clone() }
    }
}

/// Reports an event (an interlock write, dropped data) to the hub's audit trail,
/// retrying with backoff for up to about ten minutes (the event id makes retries
/// harmless).
async fn report_event(
    report: Report,
    event: String,
    kind: &'static str,
    asset: Option<String>,
    details: serde_json::Value,
) {
    let body = serde_json::json!({"event": event, "kind": kind, "asset": asset, "details": details});
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut backoff = Duration::from_millis(500);
    for _ in 0..20 {
        if let Ok(mut client) = HttpClient::connect(&report.hub).await {
            match client.post("/api/v1/events", &report.token, &body).await {
                Ok((200, _)) => return,
                Ok((status, reply)) if (400..500).contains(&status) && status != 408 && status != 429 => {
                    tracing::error!(status, reply = %String::from_utf8_lossy(&reply), "the hub refused an event report");
                    return;
                }
                _ => {}
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
    tracing::error!(%event, "could not report an event to the hub; it is in the local log");
}

/// A write an interlock asks for, and when its trigger was observed.
struct WriteCommand {
    rule: String,
    asset: String,
    table: Table,
    address: u16,
    value: f64,
    sample_ts: i64,
    observed: std::time::Instant,
}

/// What every source does with what it read: interlock rules see each sample first
/// (they act on raw values, not filtered ones), then the series' filter decides what
/// goes to the hub. Historical samples (replayed by a device) skip both.
pub struct Pipeline {
    filters: HashMap<SeriesKey, Filter>,
    rules: Vec<Armed>,
}

impl Pipeline {
    fn new<'a>(
        tags: impl Iterator<Item = (SeriesKey, &'a crate::filter::FilterSpec)>,
        interlocks: &[toml::Spanned<Interlock>],
        writers: &HashMap<String, mpsc::Sender<WriteCommand>>,
    ) -> Result<Self, GatewayError> {
        let mut filters = HashMap::new();
        for (key, spec) in tags {
            // `check` turned percentages into absolute thresholds from the models.
            let filter = Filter::new(spec, None).map_err(|e| GatewayError::Config(e.to_string()))?;
            filters.insert(key, filter);
        }
        let rules = interlocks
            .iter()
            .map(|r| r.get_ref())
            .filter(|r| filters.contains_key(&SeriesKey::new(r.asset.clone(), r.signal.clone())))
            .filter_map(|r| {
                Some(Armed { rule: r.clone(), writer: writers.get(&r.device)?.clone(), since: None, fired: false })
            })
            .collect();
        Ok(Self { filters, rules })
    }

    /// Everything passes unchanged (no interlocks, no filters): for adapters under test.
    pub fn passthrough() -> Self {
        Self { filters: HashMap::new(), rules: Vec::new() }
    }

    /// What the filters still hold back (a swinging door's last point, an open
    /// window), for a source that stops: nothing read is lost at shutdown.
    pub(crate) fn finish(&mut self) -> Vec<(SeriesKey, Sample)> {
        let mut out = Vec::new();
        let mut held = Vec::new();
        for (key, filter) in &mut self.filters {
            filter.flush(&mut held);
            out.extend(held.drain(..).map(|s| (key.clone(), s)));
        }
        out
    }

    /// Sends what the filters still hold back to the batcher, for a source that stops.
    pub(crate) async fn hand_over(&mut self, samples: &mpsc::Sender<Vec<(SeriesKey, Sample)>>) {
        let held = self.finish();
        if !held.is_empty() {
            let _ = samples.send(held).await;
        }
    }

    /// Interlocks, then filters; returns what is to be sent.
    pub(crate) async fn process(
        &mut self,
        read: Vec<(SeriesKey, Sample)>,
        observed: std::time::Instant,
    ) -> Vec<(SeriesKey, Sample)> {
        for armed in &mut self.rules {
            armed.check(&read, observed).await;
        }
        let mut out = Vec::with_capacity(read.len());
        let mut sent = Vec::new();
        for (key, sample) in read {
            match self.filters.get_mut(&key) {
                Some(filter) => filter.push(sample, &mut sent),
                None => sent.push(sample),
            }
            out.extend(sent.drain(..).map(|s| (key.clone(), s)));
        }
        out
    }
}

/// An interlock rule in a poll task, with its excursion state.
struct Armed {
    rule: Interlock,
    writer: mpsc::Sender<WriteCommand>,
    /// When the current excursion began (sample time).
    since: Option<i64>,
    /// Whether this excursion has already written.
    fired: bool,
}

impl Armed {
    async fn check(&mut self, polled: &[(SeriesKey, Sample)], observed: std::time::Instant) {
        for (key, sample) in polled {
            if key.asset != self.rule.asset || key.signal != self.rule.signal || !sample.quality.is_good() {
                continue;
            }
            if !self.rule.tripped(sample.value) {
                (self.since, self.fired) = (None, false);
                continue;
            }
            let since = *self.since.get_or_insert(sample.ts);
            if !self.fired && sample.ts.saturating_sub(since) >= self.rule.for_ms as i64 {
                self.fired = true;
                let command = WriteCommand {
                    rule: self.rule.name.clone(),
                    asset: self.rule.asset.clone(),
                    table: self.rule.table,
                    address: self.rule.address,
                    value: self.rule.value,
                    sample_ts: sample.ts,
                    observed,
                };
                if self.writer.send(command).await.is_err() {
                    tracing::error!(interlock = %self.rule.name, "the interlock writer has stopped");
                }
            }
        }
    }
}

/// Performs interlock writes on one device over its own connection, and logs each one
/// (result and the time from the triggering sample's poll to the write's reply) to the
/// local audit file.
async fn writer(
    name: String,
    address: std::net::SocketAddr,
    unit: u8,
    timeout: Duration,
    mut commands: mpsc::Receiver<WriteCommand>,
    audit: std::path::PathBuf,
    report: Report,
) {
    use tokio_modbus::client::Writer;
    let mut context: Option<tokio_modbus::client::Context> = None;
    while let Some(command) = commands.recv().await {
        if context.is_none() {
            context = tokio::time::timeout(
                timeout,
                tokio_modbus::client::tcp::connect_slave(address, tokio_modbus::Slave(unit)),
            )
            .await
            .ok()
            .and_then(Result::ok);
        }
        let result = match context.as_mut() {
            None => Err("cannot connect".to_owned()),
            Some(ctx) => {
                let write = async {
                    match command.table {
                        Table::Coil => ctx.write_single_coil(command.address, command.value != 0.0).await,
                        _ => ctx.write_single_register(command.address, command.value as u16).await,
                    }
                };
                match tokio::time::timeout(timeout, write).await {
                    Ok(Ok(Ok(()))) => Ok(()),
                    Ok(Ok(Err(code))) => Err(format!("Modbus exception {code:?}")),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            }
        };
        if result.is_err() {
            context = None;
        }
        let latency_ms = command.observed.elapsed().as_secs_f64() * 1000.0;
        let line = serde_json::json!({
            "at": now_ms(), "interlock": command.rule, "device": name, "table": format!("{:?}", command.table).to_lowercase(),
            "address": command.address, "value": command.value, "trigger_sample_ts": command.sample_ts,
            "latency_ms": latency_ms, "result": result.as_ref().map_or_else(Clone::clone, |()| "written".to_owned()),
        });
        match &result {
            Ok(()) => {
                tracing::warn!(interlock = %command.rule, device = %name, address = command.address, value = command.value, latency_ms, "interlock wrote to the machine")
            }
            Err(error) => tracing::error!(interlock = %command.rule, device = %name, %error, "interlock write failed"),
        }
        let event = format!("{}/interlock/{}/{}", report.gateway, command.rule, command.sample_ts);
        tokio::spawn(report_event(report.clone(), event, "interlock", Some(command.asset.clone()), line.clone()));
        let path = audit.clone();
        let _ = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            writeln!(file, "{line}")?;
            file.sync_data()
        })
        .await;
    }
}

/// How a batch fared at the hub.
enum Delivery {
    Delivered,
    /// The hub will never take it (400/413/422): dropped so it cannot block the queue.
    Refused,
    Failed,
}

/// Where the uplink sends, as whom, and where it reports.
struct Lane {
    hub: Hub,
    /// What batch ids start with.
    batch_prefix: String,
    token: String,
    health: Arc<crate::health::Health>,
}

/// Sends one batch (connecting first if needed), logs what happened and records it for
/// the health endpoint.
async fn deliver(client: &mut Option<HttpClient>, lane: &Lane, seq: u64, body: &[u8], replaying: bool) -> Delivery {
    let delivery = send(client, &lane.hub, &lane.token, seq, body).await;
    if let Ok(mut uplink) = lane.health.uplink.lock() {
        uplink.replaying = replaying;
        match &delivery {
            (Delivery::Delivered, _) => {
                uplink.delivered_batches += 1;
                uplink.last_delivery_ms = Some(now_ms());
                uplink.connected = true;
            }
            (Delivery::Refused, _) => {
                uplink.refused_batches += 1;
                uplink.connected = true;
            }
            (Delivery::Failed, error) => {
                uplink.failed_attempts += 1;
                uplink.last_error = error.clone();
                uplink.connected = false;
            }
        }
    }
    delivery.0
}

async fn send(
    client: &mut Option<HttpClient>,
    hub: &Hub,
    token: &str,
    seq: u64,
    body: &[u8],
) -> (Delivery, Option<String>) {
    let mut connect_error = String::new();
    if client.is_none() {
        *client = HttpClient::connect(hub).await.map_err(|e| connect_error = e).ok();
    }
    let result = match client.as_mut() {
        Some(c) => c.post("/api/v1/telemetry", token, body).await,
        None => Err(connect_error),
    };
    match result {
        Ok((status, reply)) if (200..300).contains(&status) => {
            tracing::debug!(seq, reply = %String::from_utf8_lossy(&reply), "batch delivered");
            (Delivery::Delivered, None)
        }
        Ok((status, reply)) if status == 400 || status == 413 || status == 422 => {
            tracing::error!(seq, status, reply = %String::from_utf8_lossy(&reply), "the hub refused a batch; dropping it");
            (Delivery::Refused, None)
        }
        Ok((status, reply)) => {
            tracing::warn!(status, reply = %String::from_utf8_lossy(&reply), "the hub did not take a batch; retrying");
            *client = None;
            (Delivery::Failed, Some(format!("the hub answered {status}")))
        }
        Err(error) => {
            tracing::warn!(%error, "the hub is unreachable; samples stay queued");
            *client = None;
            (Delivery::Failed, Some(error))
        }
    }
}

/// Sends queued batches to the hub in order, forever; backs off while it cannot.
/// Batches queued while the hub was unreachable (or before this start) are replayed
/// marked historical; meanwhile fresh batches from `live` go first, unmarked, so live
/// data keeps flowing during a long replay.
async fn uplink(lane: Lane, spool: Arc<Spool>, mut live: mpsc::Receiver<Entry>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    let mut client: Option<HttpClient> = None;
    // Batches below this sequence number were queued during an outage (`u64::MAX`: the
    // hub is unreachable right now, so everything queued is historical).
    let mut replay_below = spool.next_seq();
    // The newest batch already sent ahead of the replay.
    let mut sent_live: Option<u64> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let peek = spool.clone();
        let entries = match tokio::task::spawn_blocking(move || peek.peek(16)).await {
            Ok(Ok(entries)) => entries,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read the store-and-forward queue; retrying");
                Vec::new()
            }
            Err(error) => {
                tracing::error!(%error, "the queue reader failed; retrying");
                Vec::new()
            }
        };
        if entries.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                _ = stop.changed() => return,
            }
        }
        for entry in entries {
            // Replaying, and the link is up: the freshest batch goes first.
            let mut fresh = None;
            while let Ok(next) = live.try_recv() {
                fresh = Some(next);
            }
            if let Some(fresh) = fresh
                && replay_below != u64::MAX
                && fresh.seq >= replay_below
                && fresh.seq > entry.seq
                && sent_live.is_none_or(|s| fresh.seq > s)
            {
                let body = batch_json(&lane.batch_prefix, &fresh, false);
                if let Delivery::Delivered = deliver(&mut client, &lane, fresh.seq, &body, true).await {
                    sent_live = Some(fresh.seq);
                }
            }
            let historical = entry.seq < replay_below;
            let body = batch_json(&lane.batch_prefix, &entry, historical);
            match deliver(&mut client, &lane, entry.seq, &body, historical).await {
                outcome @ (Delivery::Delivered | Delivery::Refused) => {
                    if matches!(outcome, Delivery::Delivered) {
                        backoff = Duration::from_millis(200);
                        if replay_below == u64::MAX {
                            // The link is back: what is queued from now on is live.
                            replay_below = spool.next_seq();
                        }
                    }
                    let ack = spool.clone();
                    let seq = entry.seq;
                    if let Ok(Err(error)) = tokio::task::spawn_blocking(move || ack.ack(seq)).await {
                        tracing::error!(%error, "cannot record a delivered batch");
                    }
                }
                Delivery::Failed => {
                    replay_below = u64::MAX;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    break;
                }
            }
        }
    }
}

/// The hub's JSON batch for a spool entry; the batch id (`<prefix>-<seq>`) makes a
/// replay a no-op.
pub fn batch_json(prefix: &str, entry: &Entry, historical: bool) -> Vec<u8> {
    /// Serialised straight from the entry (no intermediate JSON tree: a batch can hold
    /// tens of thousands of samples, and the gateway should stay small).
    #[derive(serde::Serialize)]
    struct Batch<'a> {
        batch_id: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        historical: bool,
        series: Vec<Series<'a>>,
    }
    #[derive(serde::Serialize)]
    struct Series<'a> {
        asset: &'a str,
        signal: &'a str,
        #[serde(serialize_with = "timestamps")]
        timestamps: &'a [Sample],
        #[serde(serialize_with = "values")]
        values: &'a [Sample],
        #[serde(serialize_with = "qualities")]
        qualities: &'a [Sample],
    }
    fn timestamps<S: serde::Serializer>(samples: &&[Sample], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(samples.iter().map(|x| x.ts))
    }
    fn values<S: serde::Serializer>(samples: &&[Sample], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(samples.iter().map(|x| x.value.is_finite().then_some(x.value)))
    }
    fn qualities<S: serde::Serializer>(samples: &&[Sample], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(samples.iter().map(|x| x.quality.0))
    }
    let batch = Batch {
        batch_id: format!("{prefix}-{}", entry.seq),
        historical,
        series: entry
            .series
            .iter()
            .map(|(key, samples)| Series {
                asset: &key.asset,
                signal: &key.signal,
                timestamps: samples,
                values: samples,
                qualities: samples,
            })
            .collect(),
    };
    serde_json::to_vec(&batch).unwrap_or_default()
}

/// A byte stream to the hub: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A minimal HTTP/1.1 client with keep-alive (over TLS for an `https://` hub), enough
/// for the uplink's POSTs.
struct HttpClient {
    host: String,
    reader: BufReader<tokio::io::ReadHalf<Box<dyn Io>>>,
    writer: tokio::io::WriteHalf<Box<dyn Io>>,
}

impl HttpClient {
    async fn connect(hub: &Hub) -> Result<Self, String> {
        let address = &hub.url.address;
        let connect = async {
            let stream = TcpStream::connect(address).await.map_err(|e| format!("connecting to {address}: {e}"))?;
            let _ = stream.set_nodelay(true);
            let stream: Box<dyn Io> = match &hub.tls {
                None => Box::new(stream),
                Some(connector) => {
                    let name = rustls::pki_types::ServerName::try_from(hub.url.host.clone())
                        .map_err(|e| format!("hub host `{}`: {e}", hub.url.host))?;
                    let tls = connector.connect(name, stream).await.map_err(|e| format!("TLS with {address}: {e}"))?;
                    Box::new(tls)
                }
            };
            Ok::<_, String>(stream)
        };
        let stream = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| format!("connecting to {address} timed out"))??;
        let (read, write) = tokio::io::split(stream);
        Ok(Self { host: hub.url.host.clone(), reader: BufReader::new(read), writer: write })
    }

    async fn post(&mut self, path: &str, token: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let exchange = async {
            self.writer.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
            self.writer.write_all(body).await.map_err(|e| e.to_string())?;
            let mut line = String::new();
            self.reader.read_line(&mut line).await.map_err(|e| e.to_string())?;
            let status: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad status line `{}`", line.trim()))?;
            let mut length = 0usize;
            loop {
                line.clear();
                if self.reader.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
                    return Err("the hub closed the connection".to_owned());
                }
                let header = line.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().map_err(|_| "bad content-length".to_owned())?;
                }
            }
            let mut reply = vec![0u8; length.min(16 << 20)];
            self.reader.read_exact(&mut reply).await.map_err(|e| e.to_string())?;
            Ok((status, reply))
        };
        tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .map_err(|_| "the hub did not answer in 30 s".to_owned())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    /// A hub that takes every batch (slowly) and records (batch id, historical).
    async fn recording_hub() -> (String, mpsc::UnboundedReceiver<(String, bool)>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let (record, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        let mut length = 0;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; length];
                        if read.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let batch: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                        let id = batch["batch_id"].as_str().unwrap_or_default().to_owned();
                        let _ = record.send((id, batch["historical"] == true));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        let reply = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                        if write.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (address, received)
    }

    fn batch(ts: i64) -> Vec<(SeriesKey, Vec<Sample>)> {
        vec![(SeriesKey::new("a", "s"), vec![Sample { ts, value: 1.0, quality: model::sample::Quality::GOOD }])]
    }

    #[tokio::test]
    async fn a_backlog_replays_as_historical_while_fresh_batches_go_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).expect("spool"));
        for n in 0..40 {
            spool.push(&batch(n)).expect("push");
        }
        let (address, mut received) = recording_hub().await;
        let hub = Hub { url: crate::config::hub_url(&format!("http://{address}")).expect("url"), tls: None };
        let (live, live_batches) = mpsc::channel(4);
        let (_stop, stopped) = watch::channel(false);
        let health = Arc::new(crate::health::Health::new("gw", spool.clone()));
        let lane = Lane { hub, batch_prefix: "gw".into(), token: "token".into(), health: health.clone() };
        tokio::spawn(uplink(lane, spool.clone(), live_batches, stopped));
        // The replay has begun: a fresh batch arrives.
        let first = received.recv().await.expect("first batch");
        assert_eq!(first, ("gw-1".to_owned(), true), "queued before the start: historical");
        let seq = spool.push(&batch(1_000)).expect("push").expect("queued");
        live.send(Entry { seq, series: batch(1_000) }).await.expect("live");
        let mut order = vec![first];
        while order.len() < 42 {
            order.push(received.recv().await.expect("batch"));
        }
        let fresh = format!("gw-{seq}");
        let ahead = order.iter().position(|(id, _)| *id == fresh).expect("the fresh batch was sent");
        assert!(ahead < 10, "the fresh batch waited behind the backlog: position {ahead} of {order:?}");
        assert!(!order[ahead].1, "the fresh batch is live, not historical");
        let backlog: Vec<&(String, bool)> = order.iter().filter(|(id, _)| *id != fresh).collect();
        assert_eq!(backlog.len(), 40, "{order:?}");
        assert!(backlog.iter().all(|(_, historical)| *historical), "{order:?}");
        let ids: Vec<u64> = backlog.iter().filter_map(|(id, _)| id.strip_prefix("gw-")?.parse().ok()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "the replay is in order: {ids:?}");
        // In its turn the fresh batch is sent again (a no-op at the hub: same batch id).
        assert_eq!(order.iter().filter(|(id, _)| *id == fresh).count(), 2, "{order:?}");
        // The health endpoint's view of it.
        let snapshot = health.snapshot();
        assert_eq!(snapshot["status"], "ok", "{snapshot}");
        assert!(snapshot["uplink"]["delivered_batches"].as_u64() >= Some(41), "{snapshot}");
        let text = health.prometheus();
        assert!(text.contains("treaty_edge_up{gateway=\"gw\"} 1"), "{text}");
        assert!(text.contains("treaty_edge_spool_dropped_samples{gateway=\"gw\"} 0"), "{text}");
    }
}
