//! The gateway's optional health endpoint, bound to loopback only (the gateway opens no
//! other port): `GET /health` answers JSON (per-source counters, the spool, the uplink)
//! and `GET /metrics` the same numbers in the Prometheus text format. Sources update
//! their entry as they go, through a `SourceHealth` handle, with whatever counters they
//! keep (this file knows no adapter's types); a request reads a snapshot.

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

/// Which adapter a source belongs to: its section of `/health` and the prefix of its
/// metrics. Every section is shown, with or without sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SourceKind {
    Modbus,
    OpcUa,
    Mqtt,
}

impl SourceKind {
    /// In the order of `/metrics`.
    pub const ALL: [SourceKind; 3] = [SourceKind::Modbus, SourceKind::OpcUa, SourceKind::Mqtt];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Modbus => "modbus",
            SourceKind::OpcUa => "opcua",
            SourceKind::Mqtt => "mqtt",
        }
    }
}

/// Whether a source reaches its peer right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    Ok,
    /// Not connected: its signals are bad quality until it is back.
    Degraded,
}

/// Shared by the gateway's tasks.
pub struct Health {
    gateway: String,
    started: Instant,
    spool: Arc<Spool>,
    /// Each source's latest report (its counters as JSON, plus `state`), by kind and name.
    sources: Mutex<BTreeMap<(SourceKind, String), serde_json::Value>>,
    pub uplink: Mutex<Uplink>,
}

impl Health {
    pub fn new(gateway: &str, spool: Arc<Spool>) -> Self {
        Self {
            gateway: gateway.to_owned(),
            started: Instant::now(),
            spool,
            sources: Mutex::default(),
            uplink: Mutex::default(),
        }
    }

    /// The handle a source reports through, under `name` in the section of `kind`.
    pub fn source(self: &Arc<Self>, kind: SourceKind, name: &str) -> SourceHealth {
        SourceHealth { to: Some((self.clone(), kind, name.to_owned())) }
    }

    /// Every source of `kind`, by name.
    fn section(&self, kind: SourceKind) -> serde_json::Value {
        let sources = self.sources.lock().map(|s| {
            s.iter().filter(|((k, _), _)| *k == kind).map(|((_, name), v)| (name.clone(), v.clone())).collect()
        });
        serde_json::Value::Object(sources.unwrap_or_default())
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
        let mut snapshot = serde_json::json!({
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
        });
        for kind in SourceKind::ALL {
            snapshot[kind.as_str()] = self.section(kind);
        }
        snapshot
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
        for section in SourceKind::ALL.map(SourceKind::as_str) {
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

/// Where one source reports its counters: a name in a section of the health endpoint,
/// or nowhere (a source under test).
#[derive(Clone, Default)]
pub struct SourceHealth {
    to: Option<(Arc<Health>, SourceKind, String)>,
}

impl SourceHealth {
    /// Reports nowhere.
    pub fn detached() -> Self {
        Self::default()
    }

    /// Replaces this source's entry: its counters (any serializable struct of numbers,
    /// nested structs becoming nested objects) and its state.
    pub fn report(&self, state: SourceState, counters: &impl Serialize) {
        let Some((health, kind, name)) = &self.to else { return };
        let mut entry = serde_json::to_value(counters).unwrap_or_default();
        if let Some(fields) = entry.as_object_mut() {
            fields.insert("state".into(), serde_json::json!(state));
        }
        if let Ok(mut sources) = health.sources.lock() {
            sources.insert((*kind, name.clone()), entry);
        }
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
