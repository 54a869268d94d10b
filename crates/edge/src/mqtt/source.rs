//! One broker's tag map and protocol state, without I/O: smart sensors' JSON documents
//! (values found by JSON pointers) and Sparkplug B nodes' metrics become samples;
//! undecodable payloads, nulls, deaths and a lost broker become bad-quality samples and
//! counters; Sparkplug gaps and unknown aliases produce rebirth requests to publish.

use super::connection::{Connection, MqttError};
use crate::config::MqttBroker;
use crate::sparkplug::{self, Host};
use model::sample::{Quality, Sample, SeriesKey, Severity};
use rumqttc::{LastWill, MqttOptions, QoS};
use std::collections::HashMap;

/// OPC UA sub-codes used for MQTT failures.
mod status {
    /// Bad_DecodingError: the payload is not the JSON or protobuf expected.
    pub const DECODING: u16 = 0x0007;
    /// Bad_TypeMismatch: the value at the pointer is not a number.
    pub const TYPE_MISMATCH: u16 = 0x0074;
    /// Bad_NoData: the value is null.
    pub const NO_DATA: u16 = 0x009B;
    /// Bad_NotConnected: the node or device died, or the broker is gone.
    pub const NOT_CONNECTED: u16 = 0x008A;
}

fn bad(sub: u16, ts: i64) -> Sample {
    Sample { ts, value: f64::NAN, quality: Quality::new(Severity::Bad, sub) }
}

/// A mapped value: where it goes and how it is scaled.
#[derive(Debug, Clone)]
struct Target {
    key: SeriesKey,
    scale: f64,
    offset: f64,
}

impl Target {
    fn sample(&self, ts: i64, value: Option<f64>, sub_if_none: u16) -> (SeriesKey, Sample) {
        let sample = match value {
            Some(v) => Sample { ts, value: v * self.scale + self.offset, quality: Quality::GOOD },
            None => bad(sub_if_none, ts),
        };
        (self.key.clone(), sample)
    }
}

#[derive(Debug)]
struct JsonRoute {
    filter: String,
    timestamp: Option<String>,
    tags: Vec<(String, Target)>,
}

/// Counters of one broker connection, for the health endpoint and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub connects: u64,
    pub connection_losses: u64,
    pub messages: u64,
    pub undecodable_json: u64,
    pub bad_timestamps: u64,
    pub unmapped: u64,
}

/// What one message produced.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Live samples (through interlocks and filters).
    pub samples: Vec<(SeriesKey, Sample)>,
    /// Samples the device marked historical (stored as they are).
    pub historical: Vec<(SeriesKey, Sample)>,
    /// Messages to publish (Sparkplug rebirth requests).
    pub publish: Vec<(String, Vec<u8>)>,
}

/// One broker's tag map and protocol state.
pub struct Source {
    /// The broker's name in the edge file (health, logs, the default client id).
    pub(super) name: String,
    /// The client id the file asks for, if any.
    pub(super) client_id: Option<String>,
    pub(super) connection: Connection,
    /// As a Sparkplug host application: the id whose STATE is published.
    pub(super) host_id: Option<String>,
    json: Vec<JsonRoute>,
    /// (group, node, device, metric) -> target.
    metrics: HashMap<(String, String, Option<String>, String), Target>,
    subscriptions: Vec<String>,
    sparkplug: Host,
    pub counters: Counters,
}

/// Whether `topic` matches the MQTT topic filter `filter`.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let (mut f, mut t) = (filter.split('/'), topic.split('/'));
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) | (None, None) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

impl Source {
    /// Builds the source from a checked edge file entry; reads the password from its
    /// environment variable or file, and the TLS files.
    pub fn new(broker: &MqttBroker) -> Result<Self, MqttError> {
        let connection = Connection::new(broker)?;
        let target = |asset: &str, tag: &crate::config::FieldTag| Target {
            key: SeriesKey::new(asset, tag.signal.clone()),
            scale: tag.scale,
            offset: tag.offset,
        };
        let mut subscriptions = Vec::new();
        let mut json = Vec::new();
        for topic in &broker.json {
            let topic = topic.get_ref();
            let tags = topic
                .tags
                .iter()
                .map(|t| (t.get_ref().pointer.clone().unwrap_or_default(), target(&topic.asset, t.get_ref())))
                .collect();
            subscriptions.push(topic.topic.clone());
            json.push(JsonRoute { filter: topic.topic.clone(), timestamp: topic.timestamp.clone(), tags });
        }
        let mut metrics = HashMap::new();
        for node in &broker.sparkplug {
            let node = node.get_ref();
            subscriptions.push(format!("{}/{}/+/{}/#", sparkplug::NAMESPACE, node.group, node.node));
            for tag in &node.tags {
                let key = (
                    node.group.clone(),
                    node.node.clone(),
                    node.device.clone(),
                    tag.get_ref().metric.clone().unwrap_or_default(),
                );
                metrics.insert(key, target(&node.asset, tag.get_ref()));
            }
        }
        subscriptions.sort();
        subscriptions.dedup();
        Ok(Self {
            name: broker.name.clone(),
            client_id: broker.client_id.clone(),
            connection,
            host_id: broker.host_id.clone(),
            json,
            metrics,
            subscriptions,
            sparkplug: Host::new(),
            counters: Counters::default(),
        })
    }

    /// The topic filters to subscribe to.
    pub fn subscriptions(&self) -> &[String] {
        &self.subscriptions
    }

    /// The Sparkplug host's counters.
    pub fn sparkplug_counters(&self) -> sparkplug::Counters {
        self.sparkplug.counters
    }

    /// Decodes one message.
    pub fn handle(&mut self, topic: &str, payload: &[u8], now: i64) -> Decoded {
        self.counters.messages += 1;
        let mut out = Decoded::default();
        if topic.starts_with(sparkplug::NAMESPACE) && topic.as_bytes().get(sparkplug::NAMESPACE.len()) == Some(&b'/') {
            self.sparkplug_message(topic, payload, now, &mut out);
            return out;
        }
        let mut matched = false;
        let mut document: Option<Result<serde_json::Value, serde_json::Error>> = None;
        for route in self.json.iter().filter(|r| topic_matches(&r.filter, topic)) {
            matched = true;
            let doc = document.get_or_insert_with(|| serde_json::from_slice(payload));
            let doc = match doc {
                Ok(doc) => doc,
                Err(error) => {
                    self.counters.undecodable_json += 1;
                    tracing::warn!(topic, %error, "MQTT payload is not JSON; its signals get bad quality");
                    out.samples.extend(route.tags.iter().map(|(_, t)| t.sample(now, None, status::DECODING)));
                    continue;
                }
            };
            let ts = match route.timestamp.as_deref().map(|p| doc.pointer(p)) {
                None => now,
                Some(Some(serde_json::Value::Number(n))) if n.as_f64().is_some_and(f64::is_finite) => {
                    n.as_f64().map_or(now, |v| v.round() as i64)
                }
                Some(Some(serde_json::Value::String(s))) if model::Timestamp::parse_rfc3339(s).is_ok() => {
                    model::Timestamp::parse_rfc3339(s).map_or(now, |t| t.0)
                }
                Some(found) => {
                    self.counters.bad_timestamps += 1;
                    tracing::warn!(topic, found = ?found, "MQTT timestamp missing or not ms/RFC 3339; using arrival time");
                    now
                }
            };
            for (pointer, target) in &route.tags {
                let sample = match doc.pointer(pointer) {
                    None => continue,
                    Some(serde_json::Value::Number(n)) => target.sample(ts, n.as_f64(), status::TYPE_MISMATCH),
                    Some(serde_json::Value::Bool(b)) => target.sample(ts, Some(f64::from(u8::from(*b))), 0),
                    Some(serde_json::Value::Null) => target.sample(ts, None, status::NO_DATA),
                    Some(serde_json::Value::String(s)) => {
                        target.sample(ts, s.trim().parse::<f64>().ok().filter(|v| v.is_finite()), status::TYPE_MISMATCH)
                    }
                    Some(_) => target.sample(ts, None, status::TYPE_MISMATCH),
                };
                out.samples.push(sample);
            }
        }
        if !matched {
            self.counters.unmapped += 1;
        }
        out
    }

    fn sparkplug_message(&mut self, topic: &str, payload: &[u8], now: i64, out: &mut Decoded) {
        let handled = self.sparkplug.handle(topic, payload, now);
        for problem in &handled.problems {
            tracing::warn!(topic, %problem, "Sparkplug B");
        }
        if let Some((group, node)) = handled.rebirth {
            tracing::info!(group, node, "asking the Sparkplug node to rebirth");
            out.publish.push(sparkplug::rebirth_request(&group, &node, now));
        }
        // An undecodable payload from a node: its mapped signals are in doubt.
        if handled.problems.iter().any(|p| matches!(p, sparkplug::Problem::Undecodable(_)))
            && let Some(t) = sparkplug::Topic::parse(topic)
        {
            let (group, node) = (t.group.to_owned(), t.node.to_owned());
            out.samples.extend(
                self.metrics
                    .iter()
                    .filter(|((g, n, d, _), _)| {
                        *g == group && *n == node && (t.device.is_none() || d.as_deref() == t.device)
                    })
                    .map(|(_, target)| target.sample(now, None, status::DECODING)),
            );
        }
        for reading in handled.readings {
            let key = (reading.group, reading.node, reading.device, reading.metric);
            let Some(target) = self.metrics.get(&key) else { continue };
            let sample = target.sample(reading.ts, reading.value, status::NO_DATA);
            if reading.historical { out.historical.push(sample) } else { out.samples.push(sample) }
        }
        for death in handled.deaths {
            out.samples.extend(
                self.metrics
                    .iter()
                    .filter(|((g, n, d, _), _)| {
                        *g == death.group && *n == death.node && (death.device.is_none() || *d == death.device)
                    })
                    .map(|(_, target)| target.sample(now, None, status::NOT_CONNECTED)),
            );
        }
    }

    /// The broker is gone: every mapped signal is in doubt until data arrives again, and
    /// Sparkplug sessions must start over with births.
    pub fn disconnected(&mut self, now: i64) -> Vec<(SeriesKey, Sample)> {
        self.sparkplug.forget_sessions();
        let mut keys: Vec<&Target> = self.json.iter().flat_map(|r| r.tags.iter().map(|(_, t)| t)).collect();
        keys.extend(self.metrics.values());
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        keys.dedup_by(|a, b| a.key == b.key);
        keys.into_iter().map(|t| t.sample(now, None, status::NOT_CONNECTED)).collect()
    }

    /// The connection's options, with the host application's offline STATE as the will.
    pub(super) fn options(&self, client_id: &str, state_at: i64) -> MqttOptions {
        let mut options = self.connection.options(client_id);
        if let Some(host_id) = &self.host_id {
            let payload = serde_json::json!({"online": false, "timestamp": state_at}).to_string();
            options.set_last_will(LastWill::new(state_topic(host_id), payload, QoS::AtLeastOnce, true));
        }
        options
    }
}

/// The Sparkplug 3.0 STATE topic of a host application.
pub(super) fn state_topic(host_id: &str) -> String {
    format!("{}/STATE/{host_id}", sparkplug::NAMESPACE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparkplug::{Metric, Payload, Value, datatype};
    use prost::Message as _;

    fn broker() -> MqttBroker {
        let source = r#"
name = "b"
broker = "mqtt://127.0.0.1:1883"
[[json]]
topic = "plant/+/vib"
asset = "a"
timestamp = "/ts"
[[json.tag]]
pointer = "/rms"
signal = "vibration"
scale = 2.0
[[json.tag]]
pointer = "/running"
signal = "running"
[[sparkplug]]
group = "g"
node = "n"
device = "d"
asset = "a"
[[sparkplug.tag]]
metric = "Temp"
signal = "temperature"
offset = -273.15
"#;
        toml::from_str(source).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn topic_filters() {
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(topic_matches("a/#", "a"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(!topic_matches("+/x", "$SYS/x"));
        assert!(!topic_matches("a/b", "a/b/c"));
    }

    #[test]
    fn json_documents_map_through_pointers() {
        let mut source = Source::new(&broker()).expect("source");
        assert_eq!(source.subscriptions(), ["plant/+/vib", "spBv1.0/g/+/n/#"]);
        let d = source.handle("plant/p1/vib", br#"{"ts": 1700000000000, "rms": 1.5, "running": true}"#, 5);
        let got: Vec<(String, i64, f64)> = d.samples.iter().map(|(k, s)| (k.signal.clone(), s.ts, s.value)).collect();
        assert_eq!(got, vec![("vibration".into(), 1_700_000_000_000, 3.0), ("running".into(), 1_700_000_000_000, 1.0)]);
        let d = source.handle("plant/p1/vib", br#"{"ts": "2026-11-22T01:38:21.123Z", "rms": null}"#, 5);
        assert_eq!(d.samples.len(), 1, "running is absent, so it is not sampled");
        assert_eq!((d.samples[0].1.ts, d.samples[0].1.quality.sub_code()), (1_795_311_501_123, status::NO_DATA));
        let d = source.handle("plant/p1/vib", br#"{"rms": "fast", "ts": [1]}"#, 5);
        assert_eq!((d.samples[0].1.ts, d.samples[0].1.quality.sub_code()), (5, status::TYPE_MISMATCH));
        let d = source.handle("plant/p1/vib", b"\x00garbage", 9);
        assert_eq!(d.samples.len(), 2);
        assert!(d.samples.iter().all(|(_, s)| s.quality.sub_code() == status::DECODING && s.ts == 9));
        assert!(source.handle("other/topic", b"{}", 9).samples.is_empty());
        assert_eq!(
            (source.counters.undecodable_json, source.counters.bad_timestamps, source.counters.unmapped),
            (1, 1, 1)
        );
    }

    #[test]
    fn sparkplug_metrics_map_deaths_go_bad_and_gaps_ask_for_rebirth() {
        let mut source = Source::new(&broker()).expect("source");
        let payload = |seq: Option<u64>, metrics: Vec<Metric>| {
            Payload { timestamp: Some(1_000), seq, metrics, ..Payload::default() }.encode_to_vec()
        };
        let temp = |alias, value| Metric {
            name: (alias == 0).then(|| "Temp".to_owned()),
            alias: Some(1),
            datatype: Some(datatype::DOUBLE),
            value: Some(Value::Double(value)),
            ..Metric::default()
        };
        let bd = Metric { name: Some("bdSeq".into()), value: Some(Value::Long(0)), ..Metric::default() };
        source.handle("spBv1.0/g/NBIRTH/n", &payload(Some(0), vec![bd]), 0);
        let d = source.handle("spBv1.0/g/DBIRTH/n/d", &payload(Some(1), vec![temp(0, 300.0)]), 0);
        assert!((d.samples[0].1.value - 26.85).abs() < 1e-9);
        let mut historical = temp(1, 301.0);
        historical.is_historical = Some(true);
        let d = source.handle("spBv1.0/g/DDATA/n/d", &payload(Some(2), vec![historical]), 0);
        assert!(d.samples.is_empty() && d.historical.len() == 1);
        let d = source.handle("spBv1.0/g/DDATA/n/d", &payload(Some(9), vec![temp(1, 302.0)]), 0);
        assert_eq!(d.publish.len(), 1, "a gap asks for a rebirth");
        assert_eq!(d.publish[0].0, "spBv1.0/g/NCMD/n");
        assert_eq!(d.samples.len(), 1, "the values of the message are still used");
        let d = source.handle("spBv1.0/g/DDEATH/n/d", &payload(Some(10), vec![]), 77);
        assert_eq!(d.samples.len(), 1);
        assert_eq!((d.samples[0].1.ts, d.samples[0].1.quality.sub_code()), (77, status::NOT_CONNECTED));
        let lost = source.disconnected(80);
        assert_eq!(lost.len(), 3);
    }
}
