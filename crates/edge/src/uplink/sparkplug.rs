//! The gateway as a Sparkplug B edge node (`[uplink]` in the edge file): instead of
//! HTTP batches to the hub, what the gateway reads is published to an MQTT broker for
//! the hub (`treaty serve --sparkplug-broker`) or any Sparkplug host application.
//!
//! - Devices are the assets of the tag map (device id = asset id with `:` for `/`, as
//!   the hub's host expects); metrics are their signals, named in DBIRTH with an alias
//!   and data type Double, then sent by alias (with the type, for decoders that read
//!   each message on its own) in DDATA, one metric per sample with its time stamp. Samples that are not good, or not a number, are sent as null.
//! - NBIRTH carries `bdSeq` (kept in `<spool_dir>/sparkplug-bdseq` and incremented for
//!   every MQTT session, so a restart never reuses one) and `Node Control/Rebirth`; the
//!   NDEATH with the same `bdSeq` is the connection's will, and is published before a
//!   clean shutdown. `seq` counts 0..255 over NBIRTH, DBIRTH and DDATA. An NCMD rebirth
//!   request republishes the births.
//! - Store-and-forward: spool entries are published in order and forgotten only when
//!   the broker has acknowledged every message of the entry (PUBACK). For that the
//!   gateway publishes births and data at QoS 1, where Sparkplug 3.0 says QoS 0; host
//!   applications do not depend on the publisher's QoS.
//! - With `primary_host`, the node follows that host's STATE: it publishes only while
//!   the host is online (births first); data queued meanwhile is replayed marked
//!   `is_historical`.
//!
//! `edge_node` encodes; this file owns the connection, the flight of unacknowledged
//! entries and the durable `bdSeq`.

use super::edge_node::{EdgeNode, asks_rebirth};
use crate::config::SparkplugUplink;
use crate::health::Health;
use crate::mqtt::Connection;
use crate::sparkplug::NAMESPACE;
use crate::spool::Spool;
use model::sample::SeriesKey;
use rumqttc::{AsyncClient, Event, LastWill, Outgoing, Packet, QoS};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Spool entries published and not yet acknowledged by the broker, at most.
const IN_FLIGHT: usize = 8;

fn now_ms() -> i64 {
    model::Timestamp::now().0
}

/// The bdSeq for the next MQTT session (0..255, durable before it is used).
fn next_bd_seq(spool_dir: &Path) -> std::io::Result<u64> {
    let path = spool_dir.join("sparkplug-bdseq");
    let current = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse::<u64>().ok()).unwrap_or(0) % 256;
    let temporary = spool_dir.join("sparkplug-bdseq.tmp");
    std::fs::write(&temporary, format!("{}\n", (current + 1) % 256))?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, &path)?;
    Ok(current)
}

/// What one MQTT session has in flight.
#[derive(Default)]
struct Flight {
    /// Entries published, oldest first, with how many of their messages await PUBACK.
    entries: VecDeque<(u64, usize)>,
    /// Our QoS 1 publishes in request order, waiting for their packet id (entry seq, or
    /// `None` for births and deaths).
    awaiting_id: VecDeque<Option<u64>>,
    by_packet: HashMap<u16, Option<u64>>,
    last_sent: Option<u64>,
}

impl Flight {
    /// Entries whose every message was acknowledged, from the oldest: the newest of
    /// them may be acknowledged in the spool.
    fn completed(&mut self) -> Option<u64> {
        let mut done = None;
        while let Some(&(seq, 0)) = self.entries.front() {
            done = Some(seq);
            self.entries.pop_front();
        }
        done
    }
}

/// Where and as what the node publishes.
pub struct Settings {
    pub uplink: SparkplugUplink,
    pub node: String,
    pub client_id: String,
    pub spool_dir: PathBuf,
}

/// Publishes the spool as a Sparkplug B edge node until `stop` turns true.
pub async fn run(
    settings: Settings,
    series: Vec<SeriesKey>,
    spool: Arc<Spool>,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) {
    let connection = match Connection::new(&settings.uplink.connection()) {
        Ok(connection) => connection,
        Err(error) => {
            tracing::error!(%error, "Sparkplug uplink settings; nothing is sent");
            return;
        }
    };
    let mut node = EdgeNode::new(&settings.uplink.group, &settings.node, series);
    let ncmd = node.topic("NCMD", None);
    let state = settings.uplink.primary_host.as_ref().map(|h| format!("{NAMESPACE}/STATE/{h}"));
    let mut backoff = Duration::from_millis(200);
    loop {
        let dir = settings.spool_dir.clone();
        node.bd_seq = match tokio::task::spawn_blocking(move || next_bd_seq(&dir)).await {
            Ok(Ok(bd)) => bd,
            other => {
                tracing::error!(?other, "cannot keep the Sparkplug bdSeq in the spool directory; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let mut options = connection.options(&settings.client_id);
        options.set_last_will(LastWill::new(node.topic("NDEATH", None), node.death(), QoS::AtLeastOnce, false));
        let (client, mut events) = AsyncClient::new(options, 64);
        let mut flight = Flight::default();
        let mut host_online = state.is_none();
        let mut born = false;
        // Entries queued before the node was last born were not sent live: historical.
        let mut replay_below = u64::MAX;
        let mut pump = tokio::time::interval(Duration::from_millis(50));
        let ended = loop {
            let mut publish: Vec<(String, Vec<u8>, Option<u64>)> = Vec::new();
            tokio::select! {
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(200);
                        tracing::info!(node = %node.node, bd_seq = node.bd_seq, "Sparkplug uplink connected");
                        let _ = client.try_subscribe(ncmd.clone(), QoS::AtLeastOnce);
                        if let Some(state) = &state {
                            let _ = client.try_subscribe(state.clone(), QoS::AtLeastOnce);
                        }
                        set_connected(&health, true, None);
                        if host_online {
                            born = true;
                            replay_below = spool.next_seq();
                            publish.extend(node.births().into_iter().map(|(t, p)| (t, p, None)));
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(message))) => {
                        if message.topic == ncmd && asks_rebirth(&message.payload) && born {
                            tracing::info!(node = %node.node, "rebirth requested");
                            publish.extend(node.births().into_iter().map(|(t, p)| (t, p, None)));
                        } else if state.as_deref() == Some(message.topic.as_str()) {
                            let online = serde_json::from_slice::<serde_json::Value>(&message.payload)
                                .is_ok_and(|v| v["online"] == true);
                            if online != host_online {
                                tracing::info!(host = ?settings.uplink.primary_host, online, "primary host STATE");
                            }
                            host_online = online;
                            if online && !born {
                                born = true;
                                replay_below = spool.next_seq();
                                publish.extend(node.births().into_iter().map(|(t, p)| (t, p, None)));
                            } else if !online {
                                // Hold data until the host is back; then rebirth and replay.
                                born = false;
                                flight.last_sent = flight.entries.back().map(|(s, _)| *s);
                            }
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(packet))) => {
                        if let Some(tag) = flight.awaiting_id.pop_front() {
                            flight.by_packet.insert(packet, tag);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(Some(seq)) = flight.by_packet.remove(&ack.pkid)
                            && let Some(entry) = flight.entries.iter_mut().find(|(s, _)| *s == seq)
                        {
                            entry.1 = entry.1.saturating_sub(1);
                        }
                        acknowledge(&mut flight, &spool, &health).await;
                    }
                    Ok(_) => {}
                    Err(error) => break Some(error.to_string()),
                },
                _ = pump.tick(), if born && flight.entries.len() < IN_FLIGHT => {
                    // Nothing queued beyond what is in flight: do not read (and decode)
                    // the in-flight entries again.
                    let nothing_new = spool.stats().queued_records == 0
                        || flight.last_sent.is_some_and(|s| s + 1 >= spool.next_seq());
                    if nothing_new {
                        continue;
                    }
                    let peek = spool.clone();
                    let wanted = flight.entries.len() + IN_FLIGHT;
                    let entries = tokio::task::spawn_blocking(move || peek.peek(wanted)).await;
                    let entries = match entries {
                        Ok(Ok(entries)) => entries,
                        other => {
                            tracing::error!(?other, "cannot read the store-and-forward queue");
                            Vec::new()
                        }
                    };
                    let after = flight.last_sent;
                    for entry in entries.iter().filter(|e| after.is_none_or(|s| e.seq > s)) {
                        if flight.entries.len() >= IN_FLIGHT {
                            break;
                        }
                        let messages = node.data(entry, entry.seq < replay_below);
                        flight.entries.push_back((entry.seq, messages.len()));
                        flight.last_sent = Some(entry.seq);
                        publish.extend(messages.into_iter().map(|(t, p)| (t, p, Some(entry.seq))));
                    }
                    if let Ok(mut uplink) = health.uplink.lock() {
                        uplink.replaying = flight.last_sent.is_some_and(|s| s < replay_below);
                    }
                    // Entries with nothing to publish are done at once.
                    acknowledge(&mut flight, &spool, &health).await;
                }
                _ = stop.changed() => {
                    // A clean end: announce the death (the will covers the unclean ones).
                    flight.awaiting_id.push_back(None);
                    let _ = client.publish(node.topic("NDEATH", None), QoS::AtLeastOnce, false, node.death()).await;
                    let _ = client.disconnect().await;
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                    while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, events.poll()).await {}
                    return;
                }
            }
            for (topic, payload, tag) in publish {
                flight.awaiting_id.push_back(tag);
                if client.publish(topic, QoS::AtLeastOnce, false, payload).await.is_err() {
                    break;
                }
            }
        };
        if let Some(error) = ended {
            tracing::warn!(%error, "Sparkplug uplink: lost the broker; samples stay queued");
            set_connected(&health, false, Some(error));
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn set_connected(health: &Health, connected: bool, error: Option<String>) {
    if let Ok(mut uplink) = health.uplink.lock() {
        uplink.connected = connected;
        if let Some(error) = error {
            uplink.failed_attempts += 1;
            uplink.last_error = Some(error);
        }
    }
}

/// Forgets, in the spool, every entry the broker has fully acknowledged.
async fn acknowledge(flight: &mut Flight, spool: &Arc<Spool>, health: &Health) {
    let before = flight.entries.len();
    let Some(seq) = flight.completed() else { return };
    let ack = spool.clone();
    match tokio::task::spawn_blocking(move || ack.ack(seq)).await {
        Ok(Ok(())) => {
            if let Ok(mut uplink) = health.uplink.lock() {
                uplink.delivered_batches += (before - flight.entries.len()) as u64;
                uplink.last_delivery_ms = Some(now_ms());
            }
        }
        other => tracing::error!(?other, "cannot record a delivered batch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bd_seq_counts_up_per_session_and_survives_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(next_bd_seq(dir.path()).expect("bd"), 0);
        assert_eq!(next_bd_seq(dir.path()).expect("bd"), 1);
        std::fs::write(dir.path().join("sparkplug-bdseq"), "255\n").expect("write");
        assert_eq!(next_bd_seq(dir.path()).expect("bd"), 255);
        assert_eq!(next_bd_seq(dir.path()).expect("bd"), 0, "wraps at 256");
    }
}
