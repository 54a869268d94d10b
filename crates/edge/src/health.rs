//! The gateway's optional health endpoint, bound to loopback only (the gateway opens no
//! other port): `GET /health` answers JSON (per-source counters, the spool, the uplink)
//! and `GET /metrics` the same numbers in the Prometheus text format. Sources update
//! their entry as they go; a request reads a snapshot.

use crate::spool::Spool;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

/// What the uplink has done.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Uplink {
    pub delivered_batches: u64,
    pub refused_batches: u64,
    pub failed_attempts: u64,
    /// Milliseconds since the epoch of the last delivery.
    pub last_delivery_ms: Option<i64>,
    pub last_error: Option<String>,
    /// True while batches queued during an outage are being replayed.
    pub replaying: bool,
    /// True when the last attempt reached the hub.
    pub connected: bool,
}

/// Counters of one MQTT broker connection and its Sparkplug host.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Mqtt {
    pub connection: crate::mqtt::Counters,
    pub sparkplug: crate::sparkplug::Counters,
}

/// Shared by the gateway's tasks.
pub struct Health {
    gateway: String,
    started: Instant,
    spool: Arc<Spool>,
    pub modbus: Mutex<BTreeMap<String, crate::modbus::Counters>>,
    pub mqtt: Mutex<BTreeMap<String, Mqtt>>,
    pub opcua: Mutex<BTreeMap<String, crate::opcua::Counters>>,
    pub uplink: Mutex<Uplink>,
}

impl Health {
    pub fn new(gateway: &str, spool: Arc<Spool>) -> Self {
        Self {
            gateway: gateway.to_owned(),
            started: Instant::now(),
            spool,
            modbus: Mutex::default(),
            mqtt: Mutex::default(),
            opcua: Mutex::default(),
            uplink: Mutex::default(),
        }
    }

    /// `ok` while the hub takes batches, `degraded` while it does not (data is queued).
    pub fn snapshot(&self) -> serde_json::Value {
        let uplink = self.uplink.lock().map(|u| u.clone()).unwrap_or_default();
        let spool = self.spool.stats();
        let status = if uplink.connected || (uplink.failed_attempts == 0 && spool.queued_records == 0) {
            "ok"
        } else {
            "degraded"
        };
        serde_json::json!({
            "gateway": self.gateway,
            "status": status,
            "uptime_s": self.started.elapsed().as_secs(),
            "uplink": uplink,
            "spool": {
                "queued_batches": spool.queued_records,
                "queued_bytes": spool.queued_bytes,
                "dropped_batches": spool.dropped_records,
                "dropped_samples": spool.dropped_samples,
            },
            "modbus": self.modbus.lock().map(|m| serde_json::json!(*m)).unwrap_or_default(),
            "mqtt": self.mqtt.lock().map(|m| serde_json::json!(*m)).unwrap_or_default(),
            "opcua": self.opcua.lock().map(|m| serde_json::json!(*m)).unwrap_or_default(),
        })
    }

    /// The snapshot's numbers as Prometheus text: `treaty_edge_<section>_<field>` with a
    /// `source` label for per-source sections.
    pub fn prometheus(&self) -> String {
        let snapshot = self.snapshot();
        let mut out = String::new();
        let gateway = escape(&self.gateway);
        let up = u8::from(snapshot["status"] == "ok");
        out += &format!("treaty_edge_up{{gateway=\"{gateway}\"}} {up}\n");
        out += &format!("treaty_edge_uptime_seconds{{gateway=\"{gateway}\"}} {}\n", snapshot["uptime_s"]);
        for section in ["uplink", "spool"] {
            numbers(&snapshot[section], &format!("treaty_edge_{section}"), &format!("gateway=\"{gateway}\""), &mut out);
        }
        for section in ["modbus", "opcua", "mqtt"] {
            if let Some(sources) = snapshot[section].as_object() {
                for (source, counters) in sources {
                    let labels = format!("gateway=\"{gateway}\",source=\"{}\"", escape(source));
                    numbers(counters, &format!("treaty_edge_{section}"), &labels, &mut out);
                }
            }
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Every number (and boolean) under `value`, named by its path.
fn numbers(value: &serde_json::Value, prefix: &str, labels: &str, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                numbers(inner, &format!("{prefix}_{key}"), labels, out);
            }
        }
        serde_json::Value::Number(n) => *out += &format!("{prefix}{{{labels}}} {n}\n"),
        serde_json::Value::Bool(b) => *out += &format!("{prefix}{{{labels}}} {}\n", u8::from(*b)),
        _ => {}
    }
}

/// Serves `/health` and `/metrics` on `listener` until `stop` turns true.
pub async fn serve(listener: tokio::net::TcpListener, health: Arc<Health>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // E.g. out of file descriptors: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let health = health.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let mut request = String::new();
            let head = async {
                read.read_line(&mut request).await?;
                let mut line = String::new();
                while read.read_line(&mut line).await? > 2 {
                    line.clear();
                }
                Ok::<_, std::io::Error>(())
            };
            if tokio::time::timeout(Duration::from_secs(5), head).await.is_err() {
                return;
            }
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, kind, body) = match (request.split_whitespace().next(), path) {
                (Some("GET"), "/health") => ("200 OK", "application/json", health.snapshot().to_string()),
                (Some("GET"), "/metrics") => ("200 OK", "text/plain; version=0.0.4", health.prometheus()),
                _ => ("404 Not Found", "text/plain", "GET /health or /metrics\n".to_owned()),
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = write.write_all(reply.as_bytes()).await;
        });
    }
}
