//! The hub as a Sparkplug B host application (`treaty serve --sparkplug-broker ...`):
//! subscribes to the broker, announces itself with a retained Sparkplug 3.0 STATE
//! message (and an offline will), checks births, aliases, `seq` and `bdSeq` with the
//! same state machine as the edge adapter, asks nodes to rebirth when needed, and stores
//! device metrics as telemetry through the same validation as the HTTP endpoints. A
//! device is an asset: its Sparkplug id is the asset id with `/` written as `:` (ids may
//! not contain `/`), e.g. `acme:plant-1:line-1:p-102`; a metric is the signal of that
//! name. A node may only write the assets it is bound to (`--sparkplug-node
//! GROUP/NODE=PREFIX`): the broker's clients are not trusted with every asset. When a
//! node or device dies, or the broker is lost, each signal the births announced gets a
//! bad sample (not connected), so the hub shows it stale rather than frozen.
//!
//! Data messages are QoS 0 (Sparkplug 3.0), so the broker keeps nothing for the host:
//! once a message arrived, storing it is the host's job. When a write fails (the hub's
//! disk is full), the samples are kept and retried, and the host publishes its STATE as
//! offline meanwhile — Sparkplug edge nodes then buffer their data (store and forward)
//! and send it as historical once the host is online again. On shutdown the host says
//! offline itself before it disconnects.
//!
//! The broker's clients are trusted with the topics they publish on: a node binding
//! only means something if the broker's ACLs let each edge node publish only its own
//! topics (see the README).

use anyhow::Context;
use edge::sparkplug::{self, Host};
use ingest::{Batch, Ingest, SeriesSamples};
use model::sample::{Quality, Sample, SeriesKey, Severity};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where the host listens and how it names itself.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub broker: String,
    pub host_id: String,
    /// Sparkplug groups to follow (all when empty).
    pub groups: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<std::path::PathBuf>,
    /// (group, node) -> the asset ids or prefixes its devices may be.
    pub bindings: HashMap<(String, String), Vec<String>>,
}

/// Parses `--sparkplug-node GROUP/NODE=PREFIX[,PREFIX...]`; at least one is required.
pub fn parse_bindings(flags: &[String]) -> anyhow::Result<HashMap<(String, String), Vec<String>>> {
    anyhow::ensure!(
        !flags.is_empty(),
        "--sparkplug-broker needs at least one --sparkplug-node GROUP/NODE=ASSET-PREFIX: \
         the hub stores a node's data only for the assets it is bound to"
    );
    let mut out: HashMap<(String, String), Vec<String>> = HashMap::new();
    for flag in flags {
        let parsed = flag.split_once('=').and_then(|(id, prefixes)| {
            let (group, node) = id.split_once('/')?;
            let prefixes: Vec<String> = prefixes
                .split(',')
                .map(|p| p.trim().trim_end_matches('/').to_owned())
                .filter(|p| !p.is_empty())
                .collect();
            let valid = |s: &str| !s.is_empty() && !s.contains(['/', '+', '#']);
            (valid(group) && valid(node) && !prefixes.is_empty())
                .then(|| ((group.to_owned(), node.to_owned()), prefixes))
        });
        let (key, prefixes) = parsed.with_context(|| {
            format!("--sparkplug-node `{flag}`: expected GROUP/NODE=PREFIX[,PREFIX...], e.g. plant-1/gw-1=acme/plant-1")
        })?;
        out.entry(key).or_default().extend(prefixes);
    }
    Ok(out)
}

/// Whether `asset` is one of `prefixes` or under one of them.
fn bound(prefixes: &[String], asset: &str) -> bool {
    prefixes.iter().any(|p| asset == p || asset.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('/')))
}

/// The asset a Sparkplug device id names.
pub fn asset_of(device: &str) -> String {
    device.replace(':', "/")
}

type Scope = (String, String, Option<String>);

/// Samples kept while they cannot be stored, at most (beyond, the oldest are dropped and
/// counted; the nodes buffer at the edge once the host says offline, so this is a bound
/// for the messages in flight, not for an outage).
const MAX_PENDING_SAMPLES: usize = 1 << 20;

/// How often kept samples are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// Runs until `stop`, reconnecting with backoff.
pub async fn run(
    options: HostOptions,
    ingest: Arc<Ingest>,
    clock: model::ClockRef,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (host, port, tls) = edge::config::broker_address(&options.broker).with_context(|| {
        format!("--sparkplug-broker `{}` is not mqtt://host:port or mqtts://host:port", options.broker)
    })?;
    let mut mqtt = MqttOptions::new(format!("treaty-host-{}", options.host_id), host.clone(), port);
    mqtt.set_keep_alive(Duration::from_secs(30));
    mqtt.set_clean_session(true);
    mqtt.set_max_packet_size(4 << 20, 4 << 20);
    if tls {
        let config = edge::tls::client_config(options.ca_file.as_deref(), None).map_err(anyhow::Error::msg)?;
        mqtt.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    }
    if let Some(user) = &options.username {
        mqtt.set_credentials(user.clone(), options.password.clone().unwrap_or_default());
    }
    let state_topic = format!("{}/STATE/{}", sparkplug::NAMESPACE, options.host_id);
    let born_at = clock.now_ms();
    let offline = serde_json::json!({"online": false, "timestamp": born_at}).to_string();
    mqtt.set_last_will(LastWill::new(state_topic.clone(), offline, QoS::AtLeastOnce, true));
    let (client, mut events) = AsyncClient::new(mqtt, 256);
    let mut filters: Vec<String> = if options.groups.is_empty() {
        vec![format!("{}/#", sparkplug::NAMESPACE)]
    } else {
        options.groups.iter().map(|g| format!("{}/{g}/#", sparkplug::NAMESPACE)).collect()
    };
    // Its own STATE too: if a stale offline will lands after we came online, say online again.
    if !options.groups.is_empty() {
        filters.push(state_topic.clone());
    }
    let mut session = Session {
        options,
        ingest,
        client: client.clone(),
        state_topic,
        born_at,
        machine: Host::new(),
        clock,
        born: HashMap::new(),
        pending: VecDeque::new(),
        pending_samples: 0,
        connected: false,
    };
    let mut backoff = Duration::from_millis(200);
    let mut retry = tokio::time::interval(RETRY_EVERY);
    loop {
        let event = tokio::select! {
            event = events.poll() => event,
            _ = retry.tick(), if !session.pending.is_empty() => {
                session.retry().await;
                continue;
            }
            () = stop.cancelled() => {
                session.say_offline();
                let _ = client.try_disconnect();
                // Let the offline STATE and the DISCONNECT go out (bounded).
                let flush = async { while events.poll().await.is_ok() {} };
                let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
                return Ok(());
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(200);
                tracing::info!(broker = %session.options.broker, host_id = %session.options.host_id, "Sparkplug host online");
                for filter in &filters {
                    let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                }
                if session.pending.is_empty() {
                    session.say_online();
                }
                // Sessions may have changed while we were away: start over from births.
                session.machine.forget_sessions();
                session.connected = true;
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => session.on_publish(&publish.topic, &publish.payload).await,
            Ok(_) => {}
            Err(error) => {
                if std::mem::take(&mut session.connected) {
                    session.all_stale().await;
                }
                tracing::warn!(broker = %session.options.broker, %error, "Sparkplug host: broker unreachable; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The host's state across messages.
struct Session {
    options: HostOptions,
    ingest: Arc<Ingest>,
    client: AsyncClient,
    state_topic: String,
    born_at: i64,
    machine: Host,
    /// The hub's clock: time stamps of the stale marks, the rebirth requests.
    clock: model::ClockRef,
    /// The signals each node's or device's births announced, for staleness on death.
    born: HashMap<Scope, BTreeSet<String>>,
    /// Samples not stored yet (the write failed), oldest first, with their historical mark.
    pending: VecDeque<(SeriesSamples, bool)>,
    pending_samples: usize,
    connected: bool,
}

impl Session {
    fn say_online(&self) {
        let online = serde_json::json!({"online": true, "timestamp": self.born_at}).to_string();
        let _ = self.client.try_publish(self.state_topic.clone(), QoS::AtLeastOnce, true, online);
    }

    fn say_offline(&self) {
        let offline = serde_json::json!({"online": false, "timestamp": self.born_at}).to_string();
        let _ = self.client.try_publish(self.state_topic.clone(), QoS::AtLeastOnce, true, offline);
    }

    async fn on_publish(&mut self, topic: &str, payload: &[u8]) {
        if topic == self.state_topic {
            let says_online = serde_json::from_slice::<serde_json::Value>(payload).is_ok_and(|v| v["online"] == true);
            if !says_online && self.pending.is_empty() {
                tracing::warn!("Sparkplug host: our STATE says offline while we are online; correcting it");
                self.say_online();
            }
            return;
        }
        if topic.starts_with(&format!("{}/STATE/", sparkplug::NAMESPACE)) {
            return;
        }
        let now = self.clock.now_ms();
        let handled = self.machine.handle(topic, payload, now);
        for problem in &handled.problems {
            tracing::warn!(%topic, %problem, "Sparkplug B");
        }
        if let Some((group, node)) = &handled.rebirth {
            let (topic, payload) = sparkplug::rebirth_request(group, node, now);
            // NCMD goes at QoS 0, not retained (Sparkplug 3.0, tck-id-topics-ncmd-mqtt).
            let _ = self.client.try_publish(topic, QoS::AtMostOnce, false, payload);
        }
        let parsed = sparkplug::Topic::parse(topic);
        let kind = parsed.as_ref().map(|t| t.kind);
        let births = matches!(kind, Some(sparkplug::Kind::NBirth | sparkplug::Kind::DBirth));
        if let (Some(sparkplug::Kind::NBirth), Some(topic)) = (kind, &parsed) {
            // A new session announces its devices anew: forget the old session's.
            self.born.retain(|(g, n, _), _| !(*g == topic.group && *n == topic.node));
        }
        let mut live: HashMap<SeriesKey, Vec<Sample>> = HashMap::new();
        let mut historical: HashMap<SeriesKey, Vec<Sample>> = HashMap::new();
        let mut refused = 0usize;
        for reading in handled.readings {
            let Some(device) = &reading.device else { continue };
            let asset = asset_of(device);
            let allowed = self
                .options
                .bindings
                .get(&(reading.group.clone(), reading.node.clone()))
                .is_some_and(|prefixes| bound(prefixes, &asset));
            if !allowed {
                refused += 1;
                continue;
            }
            let key = SeriesKey::new(asset, reading.metric.clone());
            if births {
                self.born
                    .entry((reading.group.clone(), reading.node.clone(), reading.device.clone()))
                    .or_default()
                    .insert(reading.metric.clone());
            }
            let sample = match reading.value {
                Some(value) => Sample { ts: reading.ts, value, quality: Quality::GOOD },
                None => Sample { ts: reading.ts, value: f64::NAN, quality: Quality::new(Severity::Bad, 0x009B) },
            };
            let target = if reading.historical { &mut historical } else { &mut live };
            target.entry(key).or_default().push(sample);
        }
        if refused > 0 {
            metrics::counter!("treaty_sparkplug_unbound_metrics_total").increment(refused as u64);
            tracing::warn!(%topic, refused, "Sparkplug metrics of a device its node is not bound to (--sparkplug-node); refused");
        }
        for death in handled.deaths {
            let dead: Vec<Scope> = self
                .born
                .keys()
                .filter(|(g, n, d)| {
                    *g == death.group && *n == death.node && (death.device.is_none() || *d == death.device)
                })
                .cloned()
                .collect();
            for scope in dead {
                let Some(device) = &scope.2 else { continue };
                for signal in self.born.get(&scope).into_iter().flatten() {
                    let bad = Sample { ts: now, value: f64::NAN, quality: Quality::new(Severity::Bad, 0x008A) };
                    live.entry(SeriesKey::new(asset_of(device), signal.clone())).or_default().push(bad);
                }
            }
        }
        for (series, historical) in [(live, false), (historical, true)] {
            if !series.is_empty() {
                self.store(series.into_iter().collect(), historical).await;
            }
        }
    }

    /// Without the broker nothing is known about any device: every born signal goes stale.
    async fn all_stale(&mut self) {
        let now = self.clock.now_ms();
        let bad = Sample { ts: now, value: f64::NAN, quality: Quality::new(Severity::Bad, 0x008A) };
        let stale: SeriesSamples = self
            .born
            .drain()
            .filter_map(|((_, _, device), signals)| Some((asset_of(&device?), signals)))
            .flat_map(|(asset, signals)| {
                signals.into_iter().map(move |s| (SeriesKey::new(asset.clone(), s), vec![bad]))
            })
            .collect();
        if !stale.is_empty() {
            self.store(stale, false).await;
        }
    }

    /// Stores samples after those still waiting (order is kept); a failed write keeps
    /// them and takes the host offline until the retry succeeds.
    async fn store(&mut self, series: SeriesSamples, historical: bool) {
        if !self.pending.is_empty() {
            self.keep(series, historical);
            return;
        }
        if let Err(series) = self.write(series, historical).await {
            self.keep(series, historical);
            tracing::error!("Sparkplug host: samples cannot be stored; saying offline so that edge nodes buffer");
            self.say_offline();
        }
    }

    fn keep(&mut self, series: SeriesSamples, historical: bool) {
        self.pending_samples += series.iter().map(|(_, s)| s.len()).sum::<usize>();
        self.pending.push_back((series, historical));
        while self.pending_samples > MAX_PENDING_SAMPLES {
            let Some((dropped, _)) = self.pending.pop_front() else { break };
            let n: usize = dropped.iter().map(|(_, s)| s.len()).sum();
            self.pending_samples -= n;
            metrics::counter!("treaty_sparkplug_samples_dropped_total").increment(n as u64);
            tracing::error!(samples = n, "Sparkplug host: dropped samples that could not be stored for too long");
        }
    }

    /// Tries the kept samples again, in order; back online once all are stored.
    async fn retry(&mut self) {
        while let Some((series, historical)) = self.pending.pop_front() {
            let n: usize = series.iter().map(|(_, s)| s.len()).sum();
            match self.write(series, historical).await {
                Ok(()) => self.pending_samples -= n,
                Err(series) => {
                    self.pending.push_front((series, historical));
                    return;
                }
            }
        }
        tracing::info!("Sparkplug host: kept samples stored; online again");
        self.say_online();
    }

    /// Validates and writes; rejected samples (unknown asset or signal, out of range) are
    /// logged with their reason and counted, like rejections over HTTP. Returns the
    /// samples when the write failed and may succeed later.
    async fn write(&self, series: SeriesSamples, historical: bool) -> Result<(), SeriesSamples> {
        let batch = Batch { sender: "sparkplug".into(), id: None, historical, series: series.clone(), atomic: false };
        match self.ingest.ingest(batch).await {
            Ok(report) => {
                for rejection in report.rejected.iter().take(10) {
                    tracing::warn!(series = %rejection.key, reason = %rejection.reason.message(&rejection.key), "Sparkplug metric rejected");
                }
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "Sparkplug host: cannot store samples; keeping them");
                Err(series)
            }
        }
    }
}
