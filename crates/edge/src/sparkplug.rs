//! Sparkplug B: the payload (the Eclipse Tahu `sparkplug_b.proto`, the fields Treaty
//! uses, decoded with prost; unknown fields such as data sets and templates are skipped)
//! and the host side of the protocol — births, aliases, `seq` and `bdSeq` checks, deaths
//! and rebirth requests — as a state machine that takes (topic, payload) and says what
//! happened. No I/O here: the MQTT adapter feeds it and acts on the answer, and the fuzz
//! target drives it with arbitrary bytes.

use std::collections::HashMap;

/// The Sparkplug B topic namespace.
pub const NAMESPACE: &str = "spBv1.0";

/// The metric a host writes in an NCMD to ask an edge node to publish its births again.
pub const REBIRTH: &str = "Node Control/Rebirth";

/// `Payload` of sparkplug_b.proto.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
    #[prost(string, optional, tag = "4")]
    pub uuid: Option<String>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub body: Option<Vec<u8>>,
}

/// `Payload.Metric` of sparkplug_b.proto (metadata, properties, data sets, templates and
/// extensions are skipped when decoding).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    #[prost(oneof = "Value", tags = "10, 11, 12, 13, 14, 15, 16")]
    pub value: Option<Value>,
}

/// The scalar members of `Metric.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(uint32, tag = "10")]
    Int(u32),
    #[prost(uint64, tag = "11")]
    Long(u64),
    #[prost(float, tag = "12")]
    Float(f32),
    #[prost(double, tag = "13")]
    Double(f64),
    #[prost(bool, tag = "14")]
    Boolean(bool),
    #[prost(string, tag = "15")]
    String(String),
    #[prost(bytes = "vec", tag = "16")]
    Bytes(Vec<u8>),
}

/// Sparkplug B data types (the numeric ones Treaty stores).
pub mod datatype {
    pub const INT8: u32 = 1;
    pub const INT16: u32 = 2;
    pub const INT32: u32 = 3;
    pub const INT64: u32 = 4;
    pub const UINT8: u32 = 5;
    pub const UINT16: u32 = 6;
    pub const UINT32: u32 = 7;
    pub const UINT64: u32 = 8;
    pub const FLOAT: u32 = 9;
    pub const DOUBLE: u32 = 10;
    pub const BOOLEAN: u32 = 11;
    pub const DATETIME: u32 = 13;
}

/// A metric's value as a number, given its data type (from the metric or its birth).
/// Signed integers are read from their low bits, so both the sign-extended and the
/// plain two's complement encodings seen in the wild decode the same. `None` for nulls,
/// strings, bytes and anything else that is not a number.
pub fn number(value: &Value, datatype: u32) -> Option<f64> {
    use datatype::*;
    Some(match (value, datatype) {
        (Value::Int(v), INT8) => f64::from(*v as u8 as i8),
        (Value::Int(v), INT16) => f64::from(*v as u16 as i16),
        (Value::Int(v), INT32) => f64::from(*v as i32),
        (Value::Int(v), _) => f64::from(*v),
        (Value::Long(v), INT64) => *v as i64 as f64,
        (Value::Long(v), _) => *v as f64,
        (Value::Float(v), _) => f64::from(*v),
        (Value::Double(v), _) => *v,
        (Value::Boolean(v), _) => f64::from(u8::from(*v)),
        (Value::String(_) | Value::Bytes(_), _) => return None,
    })
}

/// The kinds of Sparkplug B message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NBirth,
    NData,
    NDeath,
    NCmd,
    DBirth,
    DData,
    DDeath,
    DCmd,
}

/// A parsed `spBv1.0/<group>/<kind>/<node>[/<device>]` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic<'a> {
    pub group: &'a str,
    pub kind: Kind,
    pub node: &'a str,
    pub device: Option<&'a str>,
}

impl<'a> Topic<'a> {
    /// `None` for anything that is not a Sparkplug B edge topic (including STATE).
    pub fn parse(topic: &'a str) -> Option<Self> {
        let mut parts = topic.split('/');
        if parts.next()? != NAMESPACE {
            return None;
        }
        let group = parts.next()?;
        let kind = match parts.next()? {
            "NBIRTH" => Kind::NBirth,
            "NDATA" => Kind::NData,
            "NDEATH" => Kind::NDeath,
            "NCMD" => Kind::NCmd,
            "DBIRTH" => Kind::DBirth,
            "DDATA" => Kind::DData,
            "DDEATH" => Kind::DDeath,
            "DCMD" => Kind::DCmd,
            _ => return None,
        };
        let node = parts.next()?;
        let device = parts.next();
        let device_kind = matches!(kind, Kind::DBirth | Kind::DData | Kind::DDeath | Kind::DCmd);
        if parts.next().is_some() || device.is_some() != device_kind || group.is_empty() || node.is_empty() {
            return None;
        }
        Some(Self { group, kind, node, device })
    }
}

/// The NCMD topic and payload that ask `group`/`node` to rebirth.
pub fn rebirth_request(group: &str, node: &str, now_ms: i64) -> (String, Vec<u8>) {
    let payload = Payload {
        timestamp: Some(now_ms.max(0) as u64),
        metrics: vec![Metric {
            name: Some(REBIRTH.to_owned()),
            timestamp: Some(now_ms.max(0) as u64),
            datatype: Some(datatype::BOOLEAN),
            value: Some(Value::Boolean(true)),
            ..Metric::default()
        }],
        ..Payload::default()
    };
    (format!("{NAMESPACE}/{group}/NCMD/{node}"), prost::Message::encode_to_vec(&payload))
}

/// One metric value received, resolved to its name.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub group: String,
    pub node: String,
    pub device: Option<String>,
    pub metric: String,
    pub ts: i64,
    /// `None` when the metric is null or not a number.
    pub value: Option<f64>,
    pub historical: bool,
}

/// Which metrics went stale: a whole node (and its devices) or one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    pub group: String,
    pub node: String,
    pub device: Option<String>,
}

/// Why a message was not (fully) trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The payload is not a Sparkplug B protobuf.
    Undecodable(String),
    /// Data or a device birth arrived from a node whose birth we have not seen.
    NoBirth,
    /// `seq` did not follow the previous message's.
    SeqGap { expected: u8, got: Option<u64> },
    /// A metric carried an alias no birth defined (or no name and no alias).
    UnknownAlias(u64),
    /// An NDEATH whose bdSeq is not the current session's: a stale will, ignored.
    StaleDeath { birth: Option<u64>, death: Option<u64> },
    /// A birth without the bdSeq metric.
    NoBdSeq,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Undecodable(e) => write!(f, "payload is not a Sparkplug B protobuf: {e}"),
            Problem::NoBirth => write!(f, "message before the node's birth"),
            Problem::SeqGap { expected, got } => write!(f, "seq gap: expected {expected}, got {got:?}"),
            Problem::UnknownAlias(alias) => write!(f, "metric alias {alias} is not in any birth"),
            Problem::StaleDeath { birth, death } => {
                write!(f, "NDEATH bdSeq {death:?} does not match the birth's {birth:?}; ignored")
            }
            Problem::NoBdSeq => write!(f, "NBIRTH without a bdSeq metric"),
        }
    }
}

/// What one message meant.
#[derive(Debug, Default)]
pub struct Handled {
    pub readings: Vec<Reading>,
    pub deaths: Vec<Death>,
    pub problems: Vec<Problem>,
    /// The node should be asked to rebirth (`rebirth_request`).
    pub rebirth: Option<(String, String)>,
}

/// Counters of the host side, for the health endpoint and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub messages: u64,
    pub undecodable: u64,
    pub seq_gaps: u64,
    pub unknown_aliases: u64,
    pub before_birth: u64,
    pub rebirth_requests: u64,
    pub births: u64,
    pub deaths: u64,
    pub stale_deaths: u64,
}

#[derive(Debug, Default)]
struct Node {
    bd_seq: Option<u64>,
    /// The last seq seen (births and data of the node and its devices share it).
    seq: Option<u8>,
    /// (device, alias) -> (name, datatype); the node's own metrics have device `None`.
    aliases: HashMap<(Option<String>, u64), (String, u32)>,
    /// (device, name) -> datatype from the births.
    types: HashMap<(Option<String>, String), u32>,
}

/// The host application's view of every edge node it hears.
#[derive(Debug, Default)]
pub struct Host {
    nodes: HashMap<(String, String), Node>,
    /// When each node was last asked to rebirth (so a burst of bad messages, or data
    /// from a node whose birth we missed, asks once per `REBIRTH_EVERY_MS`).
    asked: HashMap<(String, String), i64>,
    pub counters: Counters,
}

/// A node is not asked to rebirth more often than this.
const REBIRTH_EVERY_MS: i64 = 5_000;

impl Host {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every node's session (after losing the broker, messages may have been
    /// missed): the next message of each node must be a birth, or it is asked for one.
    pub fn forget_sessions(&mut self) {
        self.nodes.clear();
    }

    /// Handles one message; `now_ms` stamps metrics that carry no timestamp and paces
    /// rebirth requests.
    pub fn handle(&mut self, topic: &str, payload: &[u8], now_ms: i64) -> Handled {
        let mut out = Handled::default();
        let Some(topic) = Topic::parse(topic) else { return out };
        if matches!(topic.kind, Kind::NCmd | Kind::DCmd) {
            return out;
        }
        self.counters.messages += 1;
        let payload = match <Payload as prost::Message>::decode(payload) {
            Ok(p) => p,
            Err(error) => {
                self.counters.undecodable += 1;
                out.problems.push(Problem::Undecodable(error.to_string()));
                // Ask for a clean state unless this is a death (nothing to recover).
                if !matches!(topic.kind, Kind::NDeath | Kind::DDeath) {
                    self.ask_rebirth(&topic, now_ms, &mut out);
                }
                return out;
            }
        };
        let key = (topic.group.to_owned(), topic.node.to_owned());
        let device = topic.device.map(str::to_owned);
        match topic.kind {
            Kind::NBirth => {
                self.counters.births += 1;
                let bd_seq =
                    payload.metrics.iter().find(|m| m.name.as_deref() == Some("bdSeq")).and_then(|m| match m.value {
                        Some(Value::Long(v)) => Some(v),
                        Some(Value::Int(v)) => Some(u64::from(v)),
                        _ => None,
                    });
                if bd_seq.is_none() {
                    out.problems.push(Problem::NoBdSeq);
                }
                // A new session: everything learnt from the old one is void.
                let node = Node { bd_seq, seq: payload.seq.map(|s| s as u8), ..Node::default() };
                self.nodes.insert(key.clone(), node);
                self.learn(&key, None, &payload);
                self.read(&key, &topic, None, &payload, now_ms, &mut out);
            }
            Kind::NDeath => {
                let death_bd =
                    payload.metrics.iter().find(|m| m.name.as_deref() == Some("bdSeq")).and_then(|m| match m.value {
                        Some(Value::Long(v)) => Some(v),
                        Some(Value::Int(v)) => Some(u64::from(v)),
                        _ => None,
                    });
                let birth_bd = self.nodes.get(&key).and_then(|n| n.bd_seq);
                if self.nodes.contains_key(&key) && (birth_bd.is_none() || death_bd.is_none() || birth_bd == death_bd) {
                    self.counters.deaths += 1;
                    self.nodes.remove(&key);
                    out.deaths.push(Death { group: key.0, node: key.1, device: None });
                } else {
                    self.counters.stale_deaths += 1;
                    out.problems.push(Problem::StaleDeath { birth: birth_bd, death: death_bd });
                }
            }
            Kind::NData | Kind::DBirth | Kind::DData | Kind::DDeath => {
                let Some(node) = self.nodes.get_mut(&key) else {
                    self.counters.before_birth += 1;
                    out.problems.push(Problem::NoBirth);
                    self.ask_rebirth(&topic, now_ms, &mut out);
                    return out;
                };
                let expected = node.seq.map_or(0, |s| s.wrapping_add(1));
                if payload.seq != Some(u64::from(expected)) {
                    self.counters.seq_gaps += 1;
                    out.problems.push(Problem::SeqGap { expected, got: payload.seq });
                    self.ask_rebirth(&topic, now_ms, &mut out);
                }
                if let Some(node) = self.nodes.get_mut(&key) {
                    node.seq = payload.seq.map(|s| s as u8).or(Some(expected));
                }
                match topic.kind {
                    Kind::DBirth => {
                        self.counters.births += 1;
                        if let Some(node) = self.nodes.get_mut(&key) {
                            node.aliases.retain(|(d, _), _| *d != device);
                            node.types.retain(|(d, _), _| *d != device);
                        }
                        self.learn(&key, device.clone(), &payload);
                        self.read(&key, &topic, device, &payload, now_ms, &mut out);
                    }
                    Kind::DDeath => {
                        self.counters.deaths += 1;
                        // The device must be born again before its data is trusted.
                        if let Some(node) = self.nodes.get_mut(&key) {
                            node.aliases.retain(|(d, _), _| *d != device);
                            node.types.retain(|(d, _), _| *d != device);
                        }
                        out.deaths.push(Death { group: key.0, node: key.1, device });
                    }
                    _ => self.read(&key, &topic, device, &payload, now_ms, &mut out),
                }
            }
            Kind::NCmd | Kind::DCmd => {}
        }
        out
    }

    /// Records the aliases and data types a birth declares.
    fn learn(&mut self, key: &(String, String), device: Option<String>, payload: &Payload) {
        let Some(node) = self.nodes.get_mut(key) else { return };
        for metric in &payload.metrics {
            let Some(name) = &metric.name else { continue };
            let datatype = metric.datatype.unwrap_or(0);
            node.types.insert((device.clone(), name.clone()), datatype);
            if let Some(alias) = metric.alias {
                node.aliases.insert((device.clone(), alias), (name.clone(), datatype));
            }
        }
    }

    /// Turns a payload's metrics into readings, resolving aliases and data types.
    fn read(
        &mut self,
        key: &(String, String),
        topic: &Topic<'_>,
        device: Option<String>,
        payload: &Payload,
        now_ms: i64,
        out: &mut Handled,
    ) {
        let mut unknown = None;
        if let Some(node) = self.nodes.get(key) {
            for metric in &payload.metrics {
                let (name, datatype) = match (&metric.name, metric.alias) {
                    (Some(name), _) => {
                        let declared = node.types.get(&(device.clone(), name.clone())).copied();
                        (name.clone(), metric.datatype.or(declared).unwrap_or(0))
                    }
                    (None, Some(alias)) => match node.aliases.get(&(device.clone(), alias)) {
                        Some((name, datatype)) => (name.clone(), metric.datatype.unwrap_or(*datatype)),
                        None => {
                            unknown = Some(alias);
                            continue;
                        }
                    },
                    (None, None) => {
                        unknown = Some(u64::MAX);
                        continue;
                    }
                };
                if name == "bdSeq" || name.starts_with("Node Control/") {
                    continue;
                }
                let value = if metric.is_null == Some(true) {
                    None
                } else {
                    metric.value.as_ref().and_then(|v| number(v, datatype)).filter(|v| v.is_finite())
                };
                let ts = metric.timestamp.or(payload.timestamp).map_or(now_ms, |t| t.min(i64::MAX as u64) as i64);
                out.readings.push(Reading {
                    group: key.0.clone(),
                    node: key.1.clone(),
                    device: device.clone(),
                    metric: name,
                    ts,
                    value,
                    historical: metric.is_historical == Some(true),
                });
            }
        }
        if let Some(alias) = unknown {
            self.counters.unknown_aliases += 1;
            out.problems.push(Problem::UnknownAlias(alias));
            self.ask_rebirth(topic, now_ms, out);
        }
    }

    fn ask_rebirth(&mut self, topic: &Topic<'_>, now_ms: i64, out: &mut Handled) {
        if out.rebirth.is_some() {
            return;
        }
        let key = (topic.group.to_owned(), topic.node.to_owned());
        if self.asked.get(&key).is_some_and(|at| now_ms.saturating_sub(*at) < REBIRTH_EVERY_MS) {
            return;
        }
        self.asked.insert(key.clone(), now_ms);
        self.counters.rebirth_requests += 1;
        out.rebirth = Some(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn metric(name: Option<&str>, alias: Option<u64>, datatype: Option<u32>, value: Value) -> Metric {
        Metric { name: name.map(str::to_owned), alias, datatype, value: Some(value), ..Metric::default() }
    }

    fn payload(seq: Option<u64>, metrics: Vec<Metric>) -> Vec<u8> {
        Payload { timestamp: Some(1_000), seq, metrics, ..Payload::default() }.encode_to_vec()
    }

    fn birth(bd: u64) -> Vec<u8> {
        payload(
            Some(0),
            vec![
                metric(Some("bdSeq"), None, Some(datatype::INT64), Value::Long(bd)),
                metric(Some("Temp"), Some(1), Some(datatype::FLOAT), Value::Float(20.5)),
                metric(Some("Offset"), Some(2), Some(datatype::INT16), Value::Int(0xffff)),
            ],
        )
    }

    #[test]
    fn topics_parse_strictly() {
        let t = Topic::parse("spBv1.0/plant/DDATA/edge-1/pump").expect("topic");
        assert_eq!((t.group, t.kind, t.node, t.device), ("plant", Kind::DData, "edge-1", Some("pump")));
        assert!(Topic::parse("spBv1.0/plant/NDATA/edge-1/extra").is_none());
        assert!(Topic::parse("spBv1.0/plant/DDATA/edge-1").is_none());
        assert!(Topic::parse("spBv1.0/STATE/host").is_none());
        assert!(Topic::parse("spAv1.0/plant/NDATA/edge-1").is_none());
    }

    #[test]
    fn births_aliases_and_signed_values() {
        let mut host = Host::new();
        let h = host.handle("spBv1.0/g/NBIRTH/n", &birth(3), 5);
        assert!(h.problems.is_empty(), "{:?}", h.problems);
        assert_eq!(h.readings.len(), 2);
        assert_eq!(h.readings[1].value, Some(-1.0), "Int16 0xffff is -1");
        let data = payload(Some(1), vec![metric(None, Some(1), None, Value::Float(21.0))]);
        let h = host.handle("spBv1.0/g/NDATA/n", &data, 5);
        assert!(h.problems.is_empty() && h.rebirth.is_none(), "{h:?}");
        assert_eq!((h.readings[0].metric.as_str(), h.readings[0].value, h.readings[0].ts), ("Temp", Some(21.0), 1_000));
        // Sign-extended encodings of negative Int8 decode the same as plain ones.
        assert_eq!(number(&Value::Int(0xffff_ffff), datatype::INT8), Some(-1.0));
        assert_eq!(number(&Value::Int(0xff), datatype::INT8), Some(-1.0));
        assert_eq!(number(&Value::Long(u64::MAX), datatype::INT64), Some(-1.0));
    }

    #[test]
    fn gaps_unknown_aliases_and_data_before_birth_ask_for_a_rebirth_once() {
        let mut host = Host::new();
        let h = host.handle("spBv1.0/g/NDATA/n", &payload(Some(4), vec![]), 0);
        assert_eq!(h.problems, vec![Problem::NoBirth]);
        assert_eq!(h.rebirth, Some(("g".into(), "n".into())));
        assert!(host.handle("spBv1.0/g/NDATA/n", &payload(Some(5), vec![]), 1).rebirth.is_none(), "paced");
        host.handle("spBv1.0/g/NBIRTH/n", &birth(0), 0);
        let h = host.handle("spBv1.0/g/NDATA/n", &payload(Some(2), vec![]), REBIRTH_EVERY_MS);
        assert_eq!(h.problems, vec![Problem::SeqGap { expected: 1, got: Some(2) }]);
        assert!(h.rebirth.is_some());
        // Paced: a second problem right after does not ask again.
        let h = host.handle(
            "spBv1.0/g/NDATA/n",
            &payload(Some(3), vec![metric(None, Some(9), None, Value::Int(1))]),
            REBIRTH_EVERY_MS + 20,
        );
        assert_eq!(h.problems, vec![Problem::UnknownAlias(9)]);
        assert!(h.rebirth.is_none());
        let h = host.handle("spBv1.0/g/NDATA/n", &payload(Some(4), vec![]), 20 + 2 * REBIRTH_EVERY_MS);
        assert!(h.problems.is_empty());
        let h = host.handle("spBv1.0/g/NDATA/n", b"\xff\xff\xff", 30 + 2 * REBIRTH_EVERY_MS);
        assert!(matches!(h.problems[0], Problem::Undecodable(_)));
        assert!(h.rebirth.is_some());
        assert_eq!(host.counters.seq_gaps, 1);
        assert_eq!(host.counters.rebirth_requests, 3);
        // Sequence numbers wrap at 256.
        let mut host = Host::new();
        host.handle("spBv1.0/g/NBIRTH/n", &birth(0), 0);
        for seq in 1..=300u64 {
            let h = host.handle("spBv1.0/g/NDATA/n", &payload(Some(seq % 256), vec![]), 0);
            assert!(h.problems.is_empty(), "seq {seq}: {:?}", h.problems);
        }
    }

    #[test]
    fn deaths_need_the_births_bdseq() {
        let mut host = Host::new();
        host.handle("spBv1.0/g/NBIRTH/n", &birth(7), 0);
        let dbirth = payload(Some(1), vec![metric(Some("Speed"), Some(1), Some(datatype::DOUBLE), Value::Double(3.0))]);
        let h = host.handle("spBv1.0/g/DBIRTH/n/d", &dbirth, 0);
        assert_eq!(h.readings[0].device.as_deref(), Some("d"));
        let stale = payload(None, vec![metric(Some("bdSeq"), None, Some(datatype::INT64), Value::Long(6))]);
        let h = host.handle("spBv1.0/g/NDEATH/n", &stale, 0);
        assert!(h.deaths.is_empty() && matches!(h.problems[0], Problem::StaleDeath { .. }));
        let h = host.handle("spBv1.0/g/DDEATH/n/d", &payload(Some(2), vec![]), 0);
        assert_eq!(h.deaths, vec![Death { group: "g".into(), node: "n".into(), device: Some("d".into()) }]);
        // A dead device's aliases are forgotten: its data needs a new DBIRTH.
        let after = payload(Some(3), vec![metric(None, Some(1), None, Value::Double(4.0))]);
        let h = host.handle("spBv1.0/g/DDATA/n/d", &after, REBIRTH_EVERY_MS);
        assert_eq!(h.problems, vec![Problem::UnknownAlias(1)]);
        assert!(h.readings.is_empty());
        let death = payload(None, vec![metric(Some("bdSeq"), None, Some(datatype::INT64), Value::Long(7))]);
        let h = host.handle("spBv1.0/g/NDEATH/n", &death, 0);
        assert_eq!(h.deaths, vec![Death { group: "g".into(), node: "n".into(), device: None }]);
        // After the death, data is from no session until the next birth.
        let h = host.handle("spBv1.0/g/NDATA/n", &payload(Some(4), vec![]), 0);
        assert_eq!(h.problems, vec![Problem::NoBirth]);
    }

    #[test]
    fn rebirth_requests_decode() {
        let (topic, bytes) = rebirth_request("g", "n", 42);
        assert_eq!(topic, "spBv1.0/g/NCMD/n");
        let p = Payload::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(p.metrics[0].name.as_deref(), Some(REBIRTH));
        assert_eq!(p.metrics[0].value, Some(Value::Boolean(true)));
    }
}
