//! The batcher: what the sources send during `batch_ms` becomes one durable spool
//! record (samples grouped per series). Each fresh record is also offered straight to
//! the uplink, and every change of the spool's drop counters to the overflow reporter.
//! It ends when every source has dropped its sender and what they sent is queued.

use crate::source::Samples;
use crate::spool::{Entry, Spool, SpoolStats};
use model::sample::{Sample, SeriesKey};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Queues what arrives on `incoming` every `every`, until every sender is gone.
pub async fn run(
    mut incoming: mpsc::Receiver<Samples>,
    spool: Arc<Spool>,
    every: Duration,
    live: mpsc::Sender<Entry>,
    dropped: watch::Sender<SpoolStats>,
) {
    let mut pending: BTreeMap<SeriesKey, Vec<Sample>> = BTreeMap::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            received = incoming.recv() => {
                if let Some(samples) = received {
                    for (key, sample) in samples {
                        pending.entry(key).or_default().push(sample);
                    }
                    continue;
                }
            }
            _ = tick.tick() => {}
        }
        if !pending.is_empty() {
            let batch: Vec<(SeriesKey, Vec<Sample>)> = std::mem::take(&mut pending).into_iter().collect();
            queue(&spool, batch, &live).await;
            let stats = spool.stats();
            dropped.send_if_modified(|seen| {
                let more = stats.dropped_samples > seen.dropped_samples;
                if more {
                    *seen = stats;
                }
                more
            });
        }
        if incoming.is_closed() && incoming.is_empty() {
            return;
        }
    }
}

/// Appends one record (fsync'd, off the runtime's threads) and offers it to the uplink,
/// which skips it if busy: it is sent in its turn anyway.
async fn queue(spool: &Arc<Spool>, batch: Vec<(SeriesKey, Vec<Sample>)>, live: &mpsc::Sender<Entry>) {
    let spool = spool.clone();
    match tokio::task::spawn_blocking(move || (spool.push(&batch), batch)).await {
        Ok((Ok(Some(seq)), series)) => {
            let _ = live.try_send(Entry { seq, series });
        }
        Ok((Ok(None), _)) => {}
        Ok((Err(error), _)) => tracing::error!(%error, "cannot queue samples for the hub"),
        Err(error) => tracing::error!(%error, "queueing task failed"),
    }
}
