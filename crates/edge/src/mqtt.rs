//! The MQTT adapter: subscribes to a broker (plain or TLS, with credentials) and turns
//! smart sensors' JSON documents (values found by JSON pointers) and Sparkplug B edge
//! nodes' metrics into samples. Undecodable payloads, nulls, out-of-sequence Sparkplug
//! messages, deaths and a lost broker become bad-quality samples, counters and a log
//! line; Sparkplug gaps and unknown aliases also ask the node to rebirth.
//!
//! `connection` turns a broker's settings into client options (also used by the
//! Sparkplug uplink); `source` holds the tag map and does the decoding without I/O
//! (unit-tested there); `run` here owns the connection.

mod connection;
mod source;

pub use connection::{Connection, MqttError};
pub use source::{Counters, Decoded, Source, topic_matches};

use crate::health::SourceState;
use crate::source::SourceContext;
use crate::sparkplug;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use source::state_topic;
use std::time::Duration;

fn now_ms() -> i64 {
    model::Timestamp::now().0
}

/// What the health endpoint shows of a broker: the connection's counters and those of
/// its Sparkplug host.
#[derive(serde::Serialize)]
struct BrokerCounters {
    connection: Counters,
    sparkplug: sparkplug::Counters,
}

/// Runs one broker connection until the gateway stops: connects (and reconnects with
/// backoff), subscribes, decodes, and sends samples through the pipeline. The client id
/// is the broker's `client_id`, or `<gateway id>-<broker name>`.
pub async fn run(mut source: Source, mut ctx: SourceContext) {
    let client_id = source.client_id.clone().unwrap_or_else(|| format!("{}-{}", ctx.gateway, source.name));
    let state_at = now_ms();
    let (client, mut events) = AsyncClient::new(source.options(&client_id, state_at), 256);
    let mut connected = false;
    let mut backoff = Duration::from_millis(200);
    let mut report_every = tokio::time::interval(Duration::from_secs(1));
    loop {
        let event = tokio::select! {
            _ = report_every.tick() => {
                let state = if connected { SourceState::Ok } else { SourceState::Degraded };
                let counters = BrokerCounters { connection: source.counters, sparkplug: source.sparkplug_counters() };
                ctx.health.report(state, &counters);
                continue;
            }
            event = events.poll() => event,
            _ = ctx.stop.changed() => break,
        };
        let out = match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                backoff = Duration::from_millis(200);
                source.counters.connects += 1;
                let (host, port) = (&source.connection.host, source.connection.port);
                tracing::info!(broker = %host, port, topics = ?source.subscriptions(), "connected to the MQTT broker");
                for topic in source.subscriptions() {
                    if let Err(error) = client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                        tracing::error!(topic, %error, "cannot subscribe");
                    }
                }
                if let Some(host_id) = &source.host_id {
                    let payload = serde_json::json!({"online": true, "timestamp": state_at}).to_string();
                    let _ = client.try_publish(state_topic(host_id), QoS::AtLeastOnce, true, payload);
                }
                continue;
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let decoded = source.handle(&publish.topic, &publish.payload, now_ms());
                for (topic, payload) in decoded.publish {
                    // NCMD goes at QoS 0, not retained (Sparkplug 3.0, tck-id-topics-ncmd-mqtt).
                    if let Err(error) = client.try_publish(topic, QoS::AtMostOnce, false, payload) {
                        tracing::warn!(%error, "cannot publish a Sparkplug command");
                    }
                }
                // Samples the device marked historical skip interlocks and filters.
                let mut out = ctx.pipeline.process(decoded.samples, std::time::Instant::now()).await;
                out.extend(decoded.historical);
                out
            }
            Ok(_) => continue,
            Err(error) => {
                let (host, port) = (&source.connection.host, source.connection.port);
                let lost = if connected {
                    connected = false;
                    source.counters.connection_losses += 1;
                    tracing::warn!(broker = %host, %error, "lost the MQTT broker; its signals get bad quality until it is back");
                    source.disconnected(now_ms())
                } else {
                    tracing::warn!(broker = %host, port, %error, "cannot reach the MQTT broker; retrying");
                    Vec::new()
                };
                if !lost.is_empty() && !ctx.send(lost).await {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = ctx.stop.changed() => return ctx.hand_over().await,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        if !ctx.send_unfiltered(out).await {
            return;
        }
    }
    // Stopping: the host application says it is offline, then the filters hand over.
    if let Some(host_id) = &source.host_id {
        let payload = serde_json::json!({"online": false, "timestamp": state_at}).to_string();
        let _ = client.try_publish(state_topic(host_id), QoS::AtLeastOnce, true, payload);
    }
    let _ = client.try_disconnect();
    ctx.hand_over().await;
}
