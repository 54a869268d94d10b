//! The HTTP uplink (the default): queued batches go to the hub's JSON batch endpoint in
//! spool order, with the spool sequence in the batch id, and are acknowledged in the
//! spool only after the hub replied 2xx (or refused them for good). While a backlog is
//! replayed, fresh batches go first so that live data keeps flowing.

use crate::health::Health;
use crate::http::{Client, Target};
use crate::spool::{Entry, Spool};
use model::sample::Sample;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

fn now_ms() -> i64 {
    model::Timestamp::now().0
}

/// How a batch fared at the hub.
enum Delivery {
    Delivered,
    /// The hub will never take it (400/413/422): dropped so it cannot block the queue.
    Refused,
    Failed,
}

/// Where the uplink sends, as whom, and where it reports.
pub struct Lane {
    pub hub: Target,
    /// What batch ids start with.
    pub batch_prefix: String,
    pub token: String,
    pub health: Arc<Health>,
}

/// Sends one batch (connecting first if needed), logs what happened and records it for
/// the health endpoint.
async fn deliver(client: &mut Option<Client>, lane: &Lane, seq: u64, body: &[u8], replaying: bool) -> Delivery {
    let delivery = send(client, &lane.hub, &lane.token, seq, body).await;
    if let Ok(mut uplink) = lane.health.uplink.lock() {
        uplink.replaying = replaying;
        match &delivery {
            (Delivery::Delivered, _) => {
                uplink.delivered_batches += 1;
                uplink.last_delivery_ms = Some(now_ms());
                uplink.connected = true;
            }
            (Delivery::Refused, _) => {
                uplink.refused_batches += 1;
                uplink.connected = true;
            }
            (Delivery::Failed, error) => {
                uplink.failed_attempts += 1;
                uplink.last_error = error.clone();
                uplink.connected = false;
            }
        }
    }
    delivery.0
}

/// Sends one batch on the open connection, or a new one; a connection that failed is
/// dropped. The error, if any, is for the health endpoint.
async fn send(
    client: &mut Option<Client>,
    hub: &Target,
    token: &str,
    seq: u64,
    body: &[u8],
) -> (Delivery, Option<String>) {
    let result = match client {
        Some(c) => c.post_json("/api/v1/telemetry", token, body).await,
        None => match Client::connect(hub).await {
            Ok(c) => client.insert(c).post_json("/api/v1/telemetry", token, body).await,
            Err(error) => Err(error),
        },
    };
    match result {
        Ok((status, reply)) if (200..300).contains(&status) => {
            tracing::debug!(seq, reply = %String::from_utf8_lossy(&reply), "batch delivered");
            (Delivery::Delivered, None)
        }
        Ok((status, reply)) if status == 400 || status == 413 || status == 422 => {
            tracing::error!(seq, status, reply = %String::from_utf8_lossy(&reply), "the hub refused a batch; dropping it");
            (Delivery::Refused, None)
        }
        Ok((status, reply)) => {
            tracing::warn!(status, reply = %String::from_utf8_lossy(&reply), "the hub did not take a batch; retrying");
            *client = None;
            (Delivery::Failed, Some(format!("the hub answered {status}")))
        }
        Err(error) => {
            tracing::warn!(%error, "the hub is unreachable; samples stay queued");
            *client = None;
            (Delivery::Failed, Some(error.to_string()))
        }
    }
}

/// Sends queued batches to the hub in order, forever; backs off while it cannot.
/// Batches queued while the hub was unreachable (or before this start) are replayed
/// marked historical; meanwhile fresh batches from `live` go first, unmarked, so live
/// data keeps flowing during a long replay.
pub async fn run(lane: Lane, spool: Arc<Spool>, mut live: mpsc::Receiver<Entry>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    let mut client: Option<Client> = None;
    // Batches below this sequence number were queued during an outage (`u64::MAX`: the
    // hub is unreachable right now, so everything queued is historical).
    let mut replay_below = spool.next_seq();
    // The newest batch already sent ahead of the replay.
    let mut sent_live: Option<u64> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let peek = spool.clone();
        let entries = match tokio::task::spawn_blocking(move || peek.peek(16)).await {
            Ok(Ok(entries)) => entries,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read the store-and-forward queue; retrying");
                Vec::new()
            }
            Err(error) => {
                tracing::error!(%error, "the queue reader failed; retrying");
                Vec::new()
            }
        };
        if entries.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                _ = stop.changed() => return,
            }
        }
        for entry in entries {
            // Replaying, and the link is up: the freshest batch goes first.
            let mut fresh = None;
            while let Ok(next) = live.try_recv() {
                fresh = Some(next);
            }
            if let Some(fresh) = fresh
                && replay_below != u64::MAX
                && fresh.seq >= replay_below
                && fresh.seq > entry.seq
                && sent_live.is_none_or(|s| fresh.seq > s)
            {
                let body = batch_json(&lane.batch_prefix, &fresh, false);
                if let Delivery::Delivered = deliver(&mut client, &lane, fresh.seq, &body, true).await {
                    sent_live = Some(fresh.seq);
                }
            }
            let historical = entry.seq < replay_below;
            let body = batch_json(&lane.batch_prefix, &entry, historical);
            match deliver(&mut client, &lane, entry.seq, &body, historical).await {
                outcome @ (Delivery::Delivered | Delivery::Refused) => {
                    if matches!(outcome, Delivery::Delivered) {
                        backoff = Duration::from_millis(200);
                        if replay_below == u64::MAX {
                            // The link is back: what is queued from now on is live.
                            replay_below = spool.next_seq();
                        }
                    }
                    let ack = spool.clone();
                    let seq = entry.seq;
                    if let Ok(Err(error)) = tokio::task::spawn_blocking(move || ack.ack(seq)).await {
                        tracing::error!(%error, "cannot record a delivered batch");
                    }
                }
                Delivery::Failed => {
                    replay_below = u64::MAX;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    break;
                }
            }
        }
    }
}

/// The hub's JSON batch for a spool entry; the batch id (`<prefix>-<seq>`) makes a
/// replay a no-op.
pub fn batch_json(prefix: &str, entry: &Entry, historical: bool) -> Vec<u8> {
    /// Serialised straight from the entry (no intermediate JSON tree: a batch can hold
    /// tens of thousands of samples, and the gateway should stay small).
    #[derive(serde::Serialize)]
    struct Batch<'a> {
        batch_id: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        historical: bool,
        series: Vec<Series<'a>>,
    }
    #[derive(serde::Serialize)]
    struct Series<'a> {
        asset: &'a str,
        signal: &'a str,
        #[serde(serialize_with = "timestamps")]
        timestamps: &'a [Sample],
        #[serde(serialize_with = "values")]
        values: &'a [Sample],
        #[serde(serialize_with = "qualities")]
        qualities: &'a [Sample],
    }
    fn timestamps<S: serde::Serializer>(samples: &&[Sample], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(samples.iter().map(|x| x.ts))
    }
    fn values<S: serde::Serializer>(samples: &&[Sample], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(samples.iter().map(|x| x.value.is_finite().then_some(x.value)))
    }
    fn qualities<S: serde::Serializer>(samples: &&[Sample], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(samples.iter().map(|x| x.quality.0))
    }
    let batch = Batch {
        batch_id: format!("{prefix}-{}", entry.seq),
        historical,
        series: entry
            .series
            .iter()
            .map(|(key, samples)| Series {
                asset: &key.asset,
                signal: &key.signal,
                timestamps: samples,
                values: samples,
                qualities: samples,
            })
            .collect(),
    };
    serde_json::to_vec(&batch).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SpoolOptions;
    use model::sample::SeriesKey;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    /// A hub that takes every batch (slowly) and records (batch id, historical).
    async fn recording_hub() -> (String, mpsc::UnboundedReceiver<(String, bool)>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let (record, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        let mut length = 0;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; length];
                        if read.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let batch: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                        let id = batch["batch_id"].as_str().unwrap_or_default().to_owned();
                        let _ = record.send((id, batch["historical"] == true));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        let reply = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                        if write.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (address, received)
    }

    fn batch(ts: i64) -> Vec<(SeriesKey, Vec<Sample>)> {
        vec![(SeriesKey::new("a", "s"), vec![Sample { ts, value: 1.0, quality: model::sample::Quality::GOOD }])]
    }

    #[tokio::test]
    async fn a_backlog_replays_as_historical_while_fresh_batches_go_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).expect("spool"));
        for n in 0..40 {
            spool.push(&batch(n)).expect("push");
        }
        let (address, mut received) = recording_hub().await;
        let hub = Target::plain(&address);
        let (live, live_batches) = mpsc::channel(4);
        let (_stop, stopped) = watch::channel(false);
        let health = Arc::new(Health::new("gw", spool.clone()));
        let lane = Lane { hub, batch_prefix: "gw".into(), token: "token".into(), health: health.clone() };
        tokio::spawn(run(lane, spool.clone(), live_batches, stopped));
        // The replay has begun: a fresh batch arrives.
        let first = received.recv().await.expect("first batch");
        assert_eq!(first, ("gw-1".to_owned(), true), "queued before the start: historical");
        let seq = spool.push(&batch(1_000)).expect("push").expect("queued");
        live.send(Entry { seq, series: batch(1_000) }).await.expect("live");
        let mut order = vec![first];
        while order.len() < 42 {
            order.push(received.recv().await.expect("batch"));
        }
        let fresh = format!("gw-{seq}");
        let ahead = order.iter().position(|(id, _)| *id == fresh).expect("the fresh batch was sent");
        assert!(ahead < 10, "the fresh batch waited behind the backlog: position {ahead} of {order:?}");
        assert!(!order[ahead].1, "the fresh batch is live, not historical");
        let backlog: Vec<&(String, bool)> = order.iter().filter(|(id, _)| *id != fresh).collect();
        assert_eq!(backlog.len(), 40, "{order:?}");
        assert!(backlog.iter().all(|(_, historical)| *historical), "{order:?}");
        let ids: Vec<u64> = backlog.iter().filter_map(|(id, _)| id.strip_prefix("gw-")?.parse().ok()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "the replay is in order: {ids:?}");
        // In its turn the fresh batch is sent again (a no-op at the hub: same batch id).
        assert_eq!(order.iter().filter(|(id, _)| *id == fresh).count(), 2, "{order:?}");
        // The health endpoint's view of it.
        let snapshot = health.snapshot();
        assert_eq!(snapshot["status"], "ok", "{snapshot}");
        assert!(snapshot["uplink"]["delivered_batches"].as_u64() >= Some(41), "{snapshot}");
        let text = health.prometheus();
        assert!(text.contains("treaty_edge_up{gateway=\"gw\"} 1"), "{text}");
        assert!(text.contains("treaty_edge_spool_dropped_samples{gateway=\"gw\"} 0"), "{text}");
    }
}
