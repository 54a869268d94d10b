//! Simulated machines that publish to an MQTT broker: smart sensors with JSON payloads,
//! and Sparkplug B edge nodes (one per site, a device per machine).
//!
//! - JSON: topic `treaty-sim/<asset id>`, payload `{"ts": <Unix ms>, "<signal>": value, ...}`.
//! - Sparkplug B: group `treaty-sim`, node = the site id with `:` for `/`, device = the
//!   asset id with `:` for `/` (the hub's Sparkplug host maps it back), metrics named
//!   after the signals. NBIRTH carries `bdSeq` and `Node Control/Rebirth`; DBIRTH
//!   names every metric with an alias and a data type; DDATA sends only what changed,
//!   by alias, with `seq` counting 0..255 across the node's messages; NDEATH is the
//!   connection's will; an NCMD rebirth request republishes the births. The encoding
//!   is the gateway's own edge node (`edge::uplink::EdgeNode`).

use crate::Shared;
use edge::spool::Entry;
use edge::uplink::{EdgeNode, asks_rebirth};
use model::sample::{Sample, SeriesKey};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
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

fn options(client_id: &str, broker: &(String, u16)) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, broker.0.clone(), broker.1);
    options.set_keep_alive(Duration::from_secs(10));
    options.set_clean_session(true);
    options
}

/// Publishes the JSON machines `indices` every `tick` until the task is dropped.
pub async fn json(world: Shared, indices: Vec<usize>, broker: (String, u16), tick: Duration, clock: model::ClockRef) {
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
                    body.insert("ts".into(), clock.now_ms().into());
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

/// Runs one Sparkplug edge node for the machines `indices` (all of one site) until the
/// task is dropped.
pub async fn sparkplug(
    world: Shared,
    site: String,
    indices: Vec<usize>,
    broker: (String, u16),
    tick: Duration,
    clock: model::ClockRef,
) {
    // Devices and metrics in register-map order (aliases follow it).
    let devices: Vec<(usize, Vec<SeriesKey>)> = {
        let Ok(world) = world.lock() else { return };
        indices
            .iter()
            .map(|i| {
                let m = &world.machines[*i];
                (
                    *i,
                    crate::modbus::layout(m)
                        .into_iter()
                        .map(|(name, _)| SeriesKey::new(m.asset.clone(), name))
                        .collect(),
                )
            })
            .collect()
    };
    let mut node = EdgeNode::new(GROUP, &sparkplug_id(&site), devices.iter().flat_map(|(_, keys)| keys.clone()));
    node.bd_seq = (clock.now_ms() / 1000 % 256) as u64;
    let mut options = options(&format!("treaty-sim-{}", node.node), &broker);
    options.set_last_will(LastWill::new(node.topic("NDEATH", None), node.death(), QoS::AtLeastOnce, false));
    let (client, mut events) = AsyncClient::new(options, 4096);
    let ncmd = node.topic("NCMD", None);
    let mut every = tokio::time::interval(tick);
    let mut connected = false;
    // The current value of every metric, as samples stamped now.
    let current = |world: &crate::World| -> Vec<(SeriesKey, Sample)> {
        let now = clock.now_ms();
        devices
            .iter()
            .flat_map(|(i, keys)| {
                let values = &world.machines[*i].values;
                keys.iter().filter_map(move |k| Some((k.clone(), Sample::good(now, *values.get(&k.signal)?))))
            })
            .collect()
    };
    loop {
        let publish = tokio::select! {
            _ = every.tick() => {
                if !connected {
                    continue;
                }
                let Ok(world) = world.lock() else { return };
                // Report by exception: only what changed since it was last sent.
                let series: Vec<(SeriesKey, Vec<Sample>)> = current(&world)
                    .into_iter()
                    .filter(|(k, s)| node.latest(k).is_none_or(|l| l.value != s.value))
                    .map(|(k, s)| (k, vec![s]))
                    .collect();
                node.data(&Entry { seq: 0, series }, false)
            }
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    let _ = client.try_subscribe(ncmd.clone(), QoS::AtLeastOnce);
                    let Ok(world) = world.lock() else { return };
                    births(&mut node, current(&world))
                }
                Ok(Event::Incoming(Packet::Publish(message))) if message.topic == ncmd => {
                    if !asks_rebirth(&message.payload) {
                        continue;
                    }
                    tracing::info!(node = %node.node, "rebirth requested");
                    let Ok(world) = world.lock() else { return };
                    births(&mut node, current(&world))
                }
                Ok(_) => continue,
                Err(error) => {
                    connected = false;
                    tracing::warn!(node = %node.node, %error, "simulated Sparkplug node: broker connection; retrying");
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

/// Births carrying the machines' current values.
fn births(node: &mut EdgeNode, current: Vec<(SeriesKey, Sample)>) -> Vec<(String, Vec<u8>)> {
    for (key, sample) in current {
        node.remember(&key, sample);
    }
    node.births()
}
