//! Simulated machines that publish to an MQTT broker: smart sensors with JSON payloads,
//! and Sparkplug B edge nodes (one per site, a device per machine).
//!
//! - JSON: topic `treaty-sim/<asset id>`, payload `{"ts": <Unix ms>, "<signal>": value, ...}`.
//! - Sparkplug B: group `treaty-sim`, node = the site id with `:` for `/`, device = the
//!   asset id with `:` for `/` (the hub's Sparkplug host maps it back), metrics named
//!   after the signals. NBIRTH carries `bdSeq` and `Node Control/Rebirth`; DBIRTH
//!   names every metric with an alias and a data type; DDATA sends only what changed,
//!   by alias, with `seq` counting 0..255 across the node's messages; NDEATH is the
//!   connection's will; an NCMD rebirth request republishes the births.

use crate::Shared;
use edge::sparkplug::{Metric, Payload, REBIRTH, Value, datatype};
use prost::Message;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use std::collections::BTreeMap;
use std::time::Duration;

pub const GROUP: &str = "treaty-sim";
pub const JSON_PREFIX: &str = "treaty-sim";

/// The Sparkplug id of an asset or site path.
pub fn sparkplug_id(path: &str) -> String {
    path.replace('/', ":")
}

/// The site of an asset (`customer/site/line/asset` -> `customer/site`).
pub fn site_of(asset: &str) -> String {
    asset.splitn(3, '/').take(2).collect::<Vec<_>>().join("/")
}

/// Broker host and port from `mqtt://host:port`.
pub fn broker_address(url: &str) -> Result<(String, u16), String> {
    edge::config::broker_address(url)
        .filter(|(_, _, tls)| !tls)
        .map(|(host, port, _)| (host, port))
        .ok_or_else(|| format!("bad broker URL `{url}`: expected mqtt://host[:port]"))
}

fn now_ms() -> i64 {
    model::Timestamp::now().0
}

fn options(client_id: &str, broker: &(String, u16)) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, broker.0.clone(), broker.1);
    options.set_keep_alive(Duration::from_secs(10));
    options.set_clean_session(true);
    options
}

/// Publishes the JSON machines `indices` every `tick` until the task is dropped.
pub async fn json(world: Shared, indices: Vec<usize>, broker: (String, u16), tick: Duration) {
    let (client, mut events) = AsyncClient::new(options("treaty-sim-json", &broker), 1024);
    tokio::spawn(async move {
        loop {
            if let Err(error) = events.poll().await {
                tracing::warn!(%error, "simulated JSON sensors: broker connection; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let mut every = tokio::time::interval(tick);
    loop {
        every.tick().await;
        let messages: Vec<(String, Vec<u8>)> = {
            let Ok(world) = world.lock() else { return };
            indices
                .iter()
                .map(|i| {
                    let machine = &world.machines[*i];
                    let mut body = serde_json::Map::new();
                    body.insert("ts".into(), now_ms().into());
                    for (name, value) in &machine.values {
                        body.insert(name.clone(), serde_json::json!(value));
                    }
                    (format!("{JSON_PREFIX}/{}", machine.asset), serde_json::to_vec(&body).unwrap_or_default())
                })
                .collect()
        };
        for (topic, payload) in messages {
            if client.try_publish(topic, QoS::AtMostOnce, false, payload).is_err() {
                tracing::debug!("simulated JSON sensors: publish queue full");
            }
        }
    }
}

/// One Sparkplug edge node's state.
struct Node {
    id: String,
    bd_seq: u64,
    seq: u64,
    /// Devices: machine index, device id, metric names (alias = position).
    devices: Vec<(usize, String, Vec<String>)>,
    /// Last published value per device and alias (report by exception).
    last: BTreeMap<(usize, usize), f64>,
}

impl Node {
    fn topic(&self, kind: &str, device: Option<&str>) -> String {
        match device {
            Some(d) => format!("spBv1.0/{GROUP}/{kind}/{}/{d}", self.id),
            None => format!("spBv1.0/{GROUP}/{kind}/{}", self.id),
        }
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.seq;
        self.seq = (self.seq + 1) % 256;
        seq
    }

    fn death(&self) -> Vec<u8> {
        let metric = Metric {
            name: Some("bdSeq".into()),
            datatype: Some(datatype::UINT64),
            value: Some(Value::Long(self.bd_seq)),
            ..Metric::default()
        };
        Payload { timestamp: Some(now_ms() as u64), metrics: vec![metric], ..Payload::default() }.encode_to_vec()
    }

    /// NBIRTH and every DBIRTH, with fresh sequence numbers from 0.
    fn births(&mut self, world: &crate::World) -> Vec<(String, Vec<u8>)> {
        self.seq = 0;
        self.last.clear();
        let now = now_ms() as u64;
        let node_metrics = vec![
            Metric {
                name: Some("bdSeq".into()),
                datatype: Some(datatype::UINT64),
                value: Some(Value::Long(self.bd_seq)),
                ..Metric::default()
            },
            Metric {
                name: Some(REBIRTH.into()),
                datatype: Some(datatype::BOOLEAN),
                value: Some(Value::Boolean(false)),
                ..Metric::default()
            },
        ];
        let seq = self.next_seq();
        let mut out = vec![(
            self.topic("NBIRTH", None),
            Payload { timestamp: Some(now), metrics: node_metrics, seq: Some(seq), ..Payload::default() }
                .encode_to_vec(),
        )];
        let devices = self.devices.clone();
        for (index, device, names) in &devices {
            let values = &world.machines[*index].values;
            let metrics = names
                .iter()
                .enumerate()
                .map(|(alias, name)| {
                    let value = values.get(name).copied().unwrap_or(0.0);
                    self.last.insert((*index, alias), value);
                    Metric {
                        name: Some(name.clone()),
                        alias: Some(alias as u64),
                        timestamp: Some(now),
                        datatype: Some(datatype::DOUBLE),
                        value: Some(Value::Double(value)),
                        ..Metric::default()
                    }
                })
                .collect();
            let seq = self.next_seq();
            out.push((
                self.topic("DBIRTH", Some(device)),
                Payload { timestamp: Some(now), metrics, seq: Some(seq), ..Payload::default() }.encode_to_vec(),
            ));
        }
        out
    }

    /// DDATA for every device with changed values (by alias only).
    fn data(&mut self, world: &crate::World) -> Vec<(String, Vec<u8>)> {
        let now = now_ms() as u64;
        let mut out = Vec::new();
        let devices = self.devices.clone();
        for (index, device, names) in &devices {
            let values = &world.machines[*index].values;
            let mut metrics = Vec::new();
            for (alias, name) in names.iter().enumerate() {
                let Some(value) = values.get(name).copied() else { continue };
                if self.last.get(&(*index, alias)) == Some(&value) {
                    continue;
                }
                self.last.insert((*index, alias), value);
                metrics.push(Metric {
                    alias: Some(alias as u64),
                    // Not required after the birth, but decoders that read each message
                    // on its own (pysparkplug) need it.
                    datatype: Some(datatype::DOUBLE),
                    timestamp: Some(now),
                    value: Some(Value::Double(value)),
                    ..Metric::default()
                });
            }
            if metrics.is_empty() {
                continue;
            }
            let seq = self.next_seq();
            out.push((
                self.topic("DDATA", Some(device)),
                Payload { timestamp: Some(now), metrics, seq: Some(seq), ..Payload::default() }.encode_to_vec(),
            ));
        }
        out
    }
}

/// Runs one Sparkplug edge node for the machines `indices` (all of one site) until the
/// task is dropped.
pub async fn sparkplug(world: Shared, site: String, indices: Vec<usize>, broker: (String, u16), tick: Duration) {
    let devices = {
        let Ok(world) = world.lock() else { return };
        indices
            .iter()
            .map(|i| {
                let m = &world.machines[*i];
                let names = crate::modbus::layout(m).into_iter().map(|(name, _)| name).collect();
                (*i, sparkplug_id(&m.asset), names)
            })
            .collect()
    };
    let mut node = Node {
        id: sparkplug_id(&site),
        bd_seq: (now_ms() / 1000 % 256) as u64,
        seq: 0,
        devices,
        last: BTreeMap::new(),
    };
    let mut options = options(&format!("treaty-sim-{}", node.id), &broker);
    options.set_last_will(LastWill::new(node.topic("NDEATH", None), node.death(), QoS::AtLeastOnce, false));
    let (client, mut events) = AsyncClient::new(options, 4096);
    let ncmd = node.topic("NCMD", None);
    let mut every = tokio::time::interval(tick);
    let mut connected = false;
    loop {
        let publish = tokio::select! {
            _ = every.tick() => {
                if !connected {
                    continue;
                }
                let Ok(world) = world.lock() else { return };
                node.data(&world)
            }
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    let _ = client.try_subscribe(ncmd.clone(), QoS::AtLeastOnce);
                    let Ok(world) = world.lock() else { return };
                    node.births(&world)
                }
                Ok(Event::Incoming(Packet::Publish(message))) if message.topic == ncmd => {
                    let rebirth = Payload::decode(message.payload.as_ref()).is_ok_and(|p| {
                        p.metrics.iter().any(|m| {
                            m.name.as_deref() == Some(REBIRTH) && matches!(m.value, Some(Value::Boolean(true)))
                        })
                    });
                    if !rebirth {
                        continue;
                    }
                    tracing::info!(node = %node.id, "rebirth requested");
                    let Ok(world) = world.lock() else { return };
                    node.births(&world)
                }
                Ok(_) => continue,
                Err(error) => {
                    connected = false;
                    tracing::warn!(node = %node.id, %error, "simulated Sparkplug node: broker connection; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        for (topic, payload) in publish {
            if client.try_publish(topic, QoS::AtMostOnce, false, payload).is_err() {
                tracing::debug!("simulated Sparkplug node: publish queue full");
            }
        }
    }
}
