//! `treaty bench outage`: an uplink outage of `minutes` at `rate` samples/s. The
//! gateway's store-and-forward spool takes every batch while the hub is away; then the
//! backlog is replayed to a hub (in-process engine, real HTTP) in order, and the hub's
//! contents are checked: every sample once, none twice. Half of the backlog is then sent
//! again, as after a gateway crash between "hub stored it" and "spool forgot it": the
//! hub must ignore all of it (batch ids).

use crate::datasets::{asset_path, signal_name};
use crate::http::Client;
use crate::treaty_hub::Hub;
use edge::spool::{Spool, SpoolOptions};
use model::sample::{Sample, SeriesKey};
use std::fmt::Write as _;
use std::time::Instant;

pub struct OutageBench {
    pub minutes: i64,
    pub rate: usize,
    pub work_dir: std::path::PathBuf,
}

const SERIES: usize = 100;

pub fn run(bench: &OutageBench) -> anyhow::Result<String> {
    let dir = bench.work_dir.join("outage");
    let _ = std::fs::remove_dir_all(&dir);
    let hub = Hub::start(&dir.join("hub"), SERIES.div_ceil(20))?;
    let spool = Spool::open(&dir.join("spool"), SpoolOptions::default())?;
    let per_series = (bench.rate / SERIES).max(1);
    let seconds = bench.minutes * 60;
    let start_ms = model::Timestamp::now().0 - (seconds + 60) * 1000;
    let keys: Vec<SeriesKey> = (0..SERIES).map(|i| SeriesKey::new(asset_path(i / 20), signal_name(i % 20))).collect();

    // The outage: one batch per second, each made durable in the spool.
    let queued = Instant::now();
    for second in 0..seconds {
        let batch: Vec<(SeriesKey, Vec<Sample>)> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let samples = (0..per_series as i64)
                    .map(|k| {
                        let ts = start_ms + second * 1000 + k * (1000 / per_series as i64);
                        Sample::good(ts, ((second + k + i as i64) % 500) as f64 / 10.0)
                    })
                    .collect();
                (key.clone(), samples)
            })
            .collect();
        spool.push(&batch)?;
    }
    let queue_time = queued.elapsed();
    let backlog = spool.stats();
    let total = (seconds as usize) * per_series * SERIES;

    // The link is back: replay in order, acknowledging each batch after the hub's 2xx.
    let mut client = Client::connect(&hub.address)?;
    let auth = format!("Bearer {}", hub.token);
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let (mut stored, mut duplicates, mut last_seq) = (0u64, 0u64, 0u64);
    let mut sent_bodies = Vec::new();
    let replayed = Instant::now();
    loop {
        let entries = spool.peek(64)?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            anyhow::ensure!(entry.seq > last_seq, "the spool replayed out of order");
            last_seq = entry.seq;
            let body = edge::uplink::http::batch_json("gw-bench", &entry, true);
            let (status, reply) = client.request("POST", "/api/v1/telemetry", &headers, &body)?;
            anyhow::ensure!(status == 200, "hub answered {status}: {}", String::from_utf8_lossy(&reply));
            let reply: serde_json::Value = serde_json::from_slice(&reply)?;
            stored += reply["stored"].as_u64().unwrap_or(0);
            duplicates += reply["duplicates"].as_u64().unwrap_or(0) + reply["replaced"].as_u64().unwrap_or(0);
            spool.ack(entry.seq)?;
            if sent_bodies.len() < seconds as usize / 2 {
                sent_bodies.push(body);
            }
        }
    }
    hub.tsdb.wait_for_seals();
    let replay_time = replayed.elapsed();

    // A crash before the acks: half the backlog is sent again, and ignored.
    let mut ignored = 0usize;
    for body in &sent_bodies {
        let (status, reply) = client.request("POST", "/api/v1/telemetry", &headers, body)?;
        let reply: serde_json::Value = serde_json::from_slice(&reply)?;
        // The hub answers a known batch id with the original outcome and writes nothing.
        if status == 200 && reply["replayed_batch"] == true {
            ignored += 1;
        }
    }
    let mut at_hub = 0usize;
    for key in &keys {
        let samples = hub.tsdb.range(key, start_ms, start_ms + (seconds + 1) * 1000)?;
        anyhow::ensure!(samples.windows(2).all(|w| w[0].ts < w[1].ts), "series {key} is not in time order");
        at_hub += samples.len();
    }
    anyhow::ensure!(at_hub == total, "the hub holds {at_hub} of {total} samples");
    let mut report = format!(
        "## Store-and-forward: a {}-minute uplink outage at {} samples/s ({} series)\n\n| measure | value |\n|---|---|\n",
        bench.minutes,
        per_series * SERIES,
        SERIES
    );
    let _ = writeln!(report, "| samples queued during the outage | {total} |");
    let _ = writeln!(
        report,
        "| spool on disk | {:.1} MiB in {} batches |",
        backlog.queued_bytes as f64 / 1048576.0,
        backlog.queued_records
    );
    let _ = writeln!(report, "| time to queue (fsync per batch) | {:.2} s |", queue_time.as_secs_f64());
    let _ = writeln!(
        report,
        "| replay to the hub, in order | {:.2} s ({:.0} samples/s) |",
        replay_time.as_secs_f64(),
        total as f64 / replay_time.as_secs_f64()
    );
    let _ = writeln!(report, "| samples at the hub afterwards | {at_hub} of {total} |");
    let _ =
        writeln!(report, "| stored by the replay / duplicates or replacements reported | {stored} / {duplicates} |");
    let _ = writeln!(
        report,
        "| batches sent again after the replay, recognised by batch id | {ignored} of {} |",
        sent_bodies.len()
    );
    anyhow::ensure!(ignored == sent_bodies.len(), "the hub did not recognise every re-sent batch");
    Ok(report)
}
