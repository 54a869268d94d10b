//! Events the gateway tells the hub about, for its audit trail (`POST /api/v1/events`):
//! interlock writes, and data the spool dropped when it overflowed. Each event has an
//! id that makes a retry harmless; reports retry with backoff on their own connection,
//! apart from the uplink's batches.

use crate::http::{Client, Target};
use crate::spool::SpoolStats;
use std::time::Duration;
use tokio::sync::watch;

/// Where events are reported, and as whom.
#[derive(Clone)]
pub struct Report {
    hub: Target,
    token: String,
    /// The gateway's id: the first part of every event id.
    pub gateway: String,
}

impl Report {
    pub fn new(hub: Target, gateway: &str, token: &str) -> Self {
        Self { hub, token: token.to_owned(), gateway: gateway.to_owned() }
    }

    /// Reports an event (an interlock write, dropped data) to the hub's audit trail,
    /// retrying with backoff for up to about ten minutes (the event id makes retries
    /// harmless).
    pub async fn event(&self, event: String, kind: &'static str, asset: Option<String>, details: serde_json::Value) {
        let body = serde_json::json!({"event": event, "kind": kind, "asset": asset, "details": details});
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut backoff = Duration::from_millis(500);
        for _ in 0..20 {
            if let Ok(mut client) = Client::connect(&self.hub).await {
                match client.post_json("/api/v1/events", &self.token, &body).await {
                    Ok((200, _)) => return,
                    Ok((status, reply)) if (400..500).contains(&status) && status != 408 && status != 429 => {
                        tracing::error!(status, reply = %String::from_utf8_lossy(&reply), "the hub refused an event report");
                        return;
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
        tracing::error!(%event, "could not report an event to the hub; it is in the local log");
    }
}

/// Tells the hub about dropped data: one event per new total (the event id makes a
/// retry harmless), coalesced while the hub is unreachable, so that a long outage
/// costs one pending report, not one per batch.
pub async fn overflow(report: Report, mut dropped: watch::Receiver<SpoolStats>) {
    let mut reported = dropped.borrow_and_update().dropped_samples;
    while dropped.changed().await.is_ok() {
        let stats = *dropped.borrow_and_update();
        if stats.dropped_samples <= reported {
            continue;
        }
        let details = serde_json::json!({
            "dropped_samples": stats.dropped_samples - reported,
            "dropped_total": stats.dropped_samples,
            "dropped_batches_total": stats.dropped_records,
        });
        let event = format!("{}/spool_overflow/{}", report.gateway, stats.dropped_samples);
        report.event(event, "spool_overflow", None, details).await;
        reported = stats.dropped_samples;
    }
}
