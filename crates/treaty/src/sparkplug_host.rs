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

use anyhow::Context;
use api::telemetry::Telemetry;
use edge::sparkplug::{self, Host};
use model::sample::{Quality, Sample, SeriesKey, Severity};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use store::RecordStoreRef;
use tsdb::WriteRequest;

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

/// Runs until the process ends, reconnecting with backoff.
pub async fn run(options: HostOptions, telemetry: Arc<Telemetry>, store: RecordStoreRef) -> anyhow::Result<()> {
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
    let born_at = model::Timestamp::now().0;
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
    let mut connected = false;
    let mut machine = Host::new();
    // The signals each node's or device's births announced, for staleness on death.
    let mut born: HashMap<Scope, BTreeSet<String>> = HashMap::new();
    let mut backoff = Duration::from_millis(200);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(200);
                tracing::info!(broker = %options.broker, host_id = %options.host_id, "Sparkplug host online");
                for filter in &filters {
                    let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                }
                let online = serde_json::json!({"online": true, "timestamp": born_at}).to_string();
                let _ = client.try_publish(state_topic.clone(), QoS::AtLeastOnce, true, online);
                // Sessions may have changed while we were away: start over from births.
                machine.forget_sessions();
                connected = true;
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if publish.topic == state_topic {
                    let says_online = serde_json::from_slice::<serde_json::Value>(&publish.payload)
                        .is_ok_and(|v| v["online"] == true);
                    if !says_online {
                        tracing::warn!("Sparkplug host: our STATE says offline while we are online; correcting it");
                        let online = serde_json::json!({"online": true, "timestamp": born_at}).to_string();
                        let _ = client.try_publish(state_topic.clone(), QoS::AtLeastOnce, true, online);
                    }
                    continue;
                }
                if publish.topic.starts_with(&format!("{}/STATE/", sparkplug::NAMESPACE)) {
                    continue;
                }
                let now = model::Timestamp::now().0;
                let handled = machine.handle(&publish.topic, &publish.payload, now);
                for problem in &handled.problems {
                    tracing::warn!(topic = %publish.topic, %problem, "Sparkplug B");
                }
                if let Some((group, node)) = &handled.rebirth {
                    let (topic, payload) = sparkplug::rebirth_request(group, node, now);
                    // NCMD goes at QoS 0, not retained (Sparkplug 3.0, tck-id-topics-ncmd-mqtt).
                    let _ = client.try_publish(topic, QoS::AtMostOnce, false, payload);
                }
                let kind = sparkplug::Topic::parse(&publish.topic).map(|t| t.kind);
                let births = matches!(kind, Some(sparkplug::Kind::NBirth | sparkplug::Kind::DBirth));
                if let (Some(sparkplug::Kind::NBirth), Some(topic)) = (kind, sparkplug::Topic::parse(&publish.topic)) {
                    // A new session announces its devices anew: forget the old session's.
                    born.retain(|(g, n, _), _| !(g == topic.group && n == topic.node));
                }
                let mut live: HashMap<SeriesKey, Vec<Sample>> = HashMap::new();
                let mut historical: HashMap<SeriesKey, Vec<Sample>> = HashMap::new();
                let mut refused = 0usize;
                for reading in handled.readings {
                    let Some(device) = &reading.device else { continue };
                    let asset = asset_of(device);
                    let allowed = options
                        .bindings
                        .get(&(reading.group.clone(), reading.node.clone()))
                        .is_some_and(|prefixes| bound(prefixes, &asset));
                    if !allowed {
                        refused += 1;
                        continue;
                    }
                    let key = SeriesKey::new(asset, reading.metric.clone());
                    if births {
                        born.entry((reading.group.clone(), reading.node.clone(), reading.device.clone()))
                            .or_default()
                            .insert(reading.metric.clone());
                    }
                    let sample = match reading.value {
                        Some(value) => Sample { ts: reading.ts, value, quality: Quality::GOOD },
                        None => {
                            Sample { ts: reading.ts, value: f64::NAN, quality: Quality::new(Severity::Bad, 0x009B) }
                        }
                    };
                    let target = if reading.historical { &mut historical } else { &mut live };
                    target.entry(key).or_default().push(sample);
                }
                if refused > 0 {
                    metrics::counter!("treaty_sparkplug_unbound_metrics_total").increment(refused as u64);
                    tracing::warn!(topic = %publish.topic, refused, "Sparkplug metrics of a device its node is not bound to (--sparkplug-node); refused");
                }
                for death in handled.deaths {
                    let dead: Vec<Scope> = born
                        .keys()
                        .filter(|(g, n, d)| {
                            *g == death.group && *n == death.node && (death.device.is_none() || *d == death.device)
                        })
                        .cloned()
                        .collect();
                    for scope in dead {
                        let Some(device) = &scope.2 else { continue };
                        for signal in born.get(&scope).into_iter().flatten() {
                            let bad = Sample { ts: now, value: f64::NAN, quality: Quality::new(Severity::Bad, 0x008A) };
                            live.entry(SeriesKey::new(asset_of(device), signal.clone())).or_default().push(bad);
                        }
                    }
                }
                for (series, historical) in [(live, false), (historical, true)] {
                    if series.is_empty() {
                        continue;
                    }
                    store_samples(&telemetry, &store, series.into_iter().collect(), historical).await;
                }
            }
            Ok(_) => {}
            Err(error) => {
                if std::mem::take(&mut connected) {
                    // Without the broker nothing is known about any device: all stale.
                    let now = model::Timestamp::now().0;
                    let bad = Sample { ts: now, value: f64::NAN, quality: Quality::new(Severity::Bad, 0x008A) };
                    let stale: Vec<(SeriesKey, Vec<Sample>)> = born
                        .drain()
                        .filter_map(|((_, _, device), signals)| Some((asset_of(&device?), signals)))
                        .flat_map(|(asset, signals)| {
                            signals.into_iter().map(move |s| (SeriesKey::new(asset.clone(), s), vec![bad]))
                        })
                        .collect();
                    if !stale.is_empty() {
                        store_samples(&telemetry, &store, stale, false).await;
                    }
                }
                tracing::warn!(broker = %options.broker, %error, "Sparkplug host: broker unreachable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Validates and stores; rejected samples (unknown asset or signal, out of range) are
/// logged with their reason and counted, like rejections over HTTP.
async fn store_samples(
    telemetry: &Telemetry,
    store: &RecordStoreRef,
    series: Vec<(SeriesKey, Vec<Sample>)>,
    historical: bool,
) {
    let (accepted, rejected) = match telemetry.validate(store, series).await {
        Ok(checked) => checked,
        Err(error) => {
            tracing::error!(error = %error.message, "Sparkplug host: cannot validate samples");
            return;
        }
    };
    for rejection in rejected.iter().take(10) {
        tracing::warn!(series = %rejection.key, reason = %rejection.reason.message(&rejection.key), "Sparkplug metric rejected");
    }
    metrics::counter!("treaty_telemetry_samples_rejected_total").increment(rejected.len() as u64);
    if accepted.is_empty() {
        return;
    }
    if let Err(error) = telemetry.write(WriteRequest { batch_id: None, series: accepted, historical }).await {
        tracing::error!(error = %error.message, "Sparkplug host: cannot store samples");
    }
}
