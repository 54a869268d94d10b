//! The record feed: every committed change, as the audit trail records it, relayed to
//! the event bus as `records.<kind>.<action>` (e.g. `records.asset_model.update`,
//! `records.token.token.revoke`, `records.asset.device.interlock`) with the id
//! `audit-<seq>` and a small JSON payload (`seq`, `actor`, `action`, `kind`, `id`).
//!
//! The audit trail is written in the same transaction as the change, so it is an outbox:
//! the feed reads what is new after the last sequence it published and publishes it in
//! order. It wakes on this process's commits at once and polls for other processes'
//! (a `treaty import` beside a running hub) every `POLL`. Delivery is at least once
//! (the ids let subscribers and JetStream de-duplicate); the feed starts at the audit
//! head it finds, because subscribers load current state when they start.

use crate::RecordStoreRef;
use bus::BusRef;
use serde_json::json;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the feed looks for changes committed by other processes.
pub const POLL: Duration = Duration::from_secs(1);

/// The bus subject of an audit entry: its kind and action as subject tokens.
pub fn subject(kind: &str, action: &str) -> String {
    let token = |text: &str| -> String {
        text.split('.')
            .map(|part| {
                let clean: String =
                    part.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
                if clean.is_empty() { "_".to_owned() } else { clean }
            })
            .collect::<Vec<_>>()
            .join(".")
    };
    format!("records.{}.{}", token(kind), token(action))
}

/// Relays audit entries to the bus until `stop` is cancelled.
pub async fn relay(store: RecordStoreRef, bus: BusRef, stop: CancellationToken) {
    let mut commits = store.commits();
    let mut after = loop {
        match store.audit_head().await {
            Ok(head) => break head,
            Err(error) => {
                tracing::error!(%error, "record feed: cannot read the audit head; retrying");
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    };
    loop {
        match publish_new(&store, &bus, after).await {
            Ok(next) => after = next,
            Err(error) => tracing::error!(%error, "record feed: cannot relay changes; retrying"),
        }
        tokio::select! {
            _ = commits.changed() => {}
            () = tokio::time::sleep(POLL) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Publishes the entries after `after`; returns the last sequence published.
async fn publish_new(store: &RecordStoreRef, bus: &BusRef, mut after: u64) -> Result<u64, String> {
    loop {
        let entries = store.audit(after, 500).await.map_err(|e| e.to_string())?;
        let Some(last) = entries.last().map(|e| e.seq) else { return Ok(after) };
        for entry in entries {
            let payload = json!({"seq": entry.seq, "actor": entry.actor, "action": entry.action, "kind": entry.kind, "id": entry.id});
            bus.publish(
                &subject(&entry.kind, &entry.action),
                &format!("audit-{}", entry.seq),
                payload.to_string().into_bytes(),
            )
            .await
            .map_err(|e| e.to_string())?;
            after = entry.seq;
        }
        after = after.max(last);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subjects_are_valid_bus_subjects() {
        for (kind, action, want) in [
            ("asset_model", "update", "records.asset_model.update"),
            ("token", "token.revoke", "records.token.token.revoke"),
            ("asset", "device.spool_overflow", "records.asset.device.spool_overflow"),
            ("gateway", "device.x", "records.gateway.device.x"),
        ] {
            let subject = super::subject(kind, action);
            assert_eq!(subject, want);
            assert!(bus::check_subject(&subject).is_ok());
        }
    }
}
