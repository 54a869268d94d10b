//! "The last hour of an asset" (every signal, 1 Hz) with history behind it: Treaty's
//! `GET /api/v1/telemetry/asset` against VictoriaMetrics' `/api/v1/export`, both over
//! HTTP on loopback, same data, same run. Reports p50/p99 over random assets.

use crate::datasets::{asset_path, signal_name};
use crate::http::Client;
use crate::peers;
use crate::treaty_hub::Hub;
use model::sample::{Sample, SeriesKey};
use std::time::{Duration, Instant};

/// Query benchmark parameters.
#[derive(Debug, Clone)]
pub struct QueryBench {
    pub assets: usize,
    pub signals: usize,
    pub hours: i64,
    pub queries: usize,
    pub work_dir: std::path::PathBuf,
    pub with_vm: bool,
    /// Hours of older history loaded into Treaty alone through its bulk backfill (in
    /// front of `hours`, which both systems ingest normally).
    pub backfill_hours: i64,
    /// Query what an earlier run with the same sizes loaded (Treaty only).
    pub reuse: bool,
}

const START: i64 = 1_767_225_600_000;
/// Requests sent to each system before timing starts.
const WARM_UP: usize = 5;

/// One hour of one signal of one asset at 1 Hz.
fn sample_hour(asset: usize, k: usize, hour: i64) -> impl Iterator<Item = Sample> {
    (0..3600).map(move |s| {
        let t = hour * 3600 + s;
        let value = ((t as f64 / 600.0 + k as f64).sin() * 10.0 + 50.0 + (asset % 7) as f64 * 0.1) * 10.0;
        Sample::good(START + t * 1000, value.round() / 10.0)
    })
}

/// One batch: every signal of one asset for one hour at 1 Hz.
fn hour_batch(asset: usize, signals: usize, hour: i64) -> Vec<(SeriesKey, Vec<Sample>)> {
    (0..signals)
        .map(|k| (SeriesKey::new(asset_path(asset), signal_name(k)), sample_hour(asset, k, hour).collect()))
        .collect()
}

/// p50, p99 and the slowest, in milliseconds.
fn percentiles(mut latencies: Vec<Duration>) -> (f64, f64, f64) {
    latencies.sort();
    let at =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99), at(1.0))
}

pub fn run(bench: &QueryBench) -> anyhow::Result<String> {
    let dir = bench.work_dir.join("treaty-query");
    // What a completed load leaves behind, so that `reuse` only opens matching data.
    let sizes = format!("{} {} {} {}\n", bench.assets, bench.signals, bench.hours, bench.backfill_hours);
    let marker = dir.join("loaded");
    if bench.reuse {
        let found = std::fs::read_to_string(&marker).unwrap_or_default();
        anyhow::ensure!(
            found == sizes,
            "--reuse: {} holds no completed load of these sizes (found `{}`); run once without --reuse",
            dir.display(),
            found.trim()
        );
    }
    let opening = Instant::now();
    let hub = Hub::open(&dir, bench.assets, bench.reuse)?;
    if bench.reuse {
        tracing::info!(seconds = opening.elapsed().as_secs(), "reopened the loaded hub");
    }
    let vm = if bench.with_vm { Some(peers::victoria_metrics(&bench.work_dir.join("vm-query"))?) } else { None };
    let mut loaded = 0usize;
    let backfill_started = Instant::now();
    let backfilled = std::sync::atomic::AtomicUsize::new(0);
    let load = !bench.reuse;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        if !load {
            return Ok(());
        }
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (hub, backfilled) = (&hub, &backfilled);
                scope.spawn(move || -> anyhow::Result<()> {
                    for asset in (0..bench.assets).filter(|a| a % 2 == w) {
                        let series: Vec<(SeriesKey, Vec<Sample>)> = (0..bench.signals)
                            .map(|k| {
                                let samples =
                                    (-bench.backfill_hours..0).flat_map(|hour| sample_hour(asset, k, hour)).collect();
                                (SeriesKey::new(asset_path(asset), signal_name(k)), samples)
                            })
                            .collect();
                        let n = hub.tsdb.backfill(series)?;
                        backfilled.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| anyhow::anyhow!("backfill worker panicked"))??;
        }
        Ok(())
    })?;
    let mut backfilled = backfilled.into_inner();
    if backfilled > 0 {
        tracing::info!(samples = backfilled, seconds = backfill_started.elapsed().as_secs(), "history backfilled");
    }
    for hour in (0..bench.hours).filter(|_| load) {
        let batches: Vec<_> = (0..bench.assets).map(|a| hour_batch(a, bench.signals, hour)).collect();
        hub.ingest_in_process(&batches, 2)?;
        if let Some(vm) = &vm {
            let bodies: Vec<Vec<u8>> = batches.iter().map(|b| peers::vm_json_body(b)).collect();
            peers::vm_ingest(vm, "/api/v1/import", &bodies, 2)?;
        }
        loaded += batches.iter().flatten().map(|(_, s)| s.len()).sum::<usize>();
    }
    if let Some(vm) = &vm {
        peers::victoria_metrics_settle(vm)?;
    }
    if load {
        std::fs::write(&marker, &sizes)?;
    } else {
        let per_hour = bench.assets * bench.signals * 3600;
        loaded = per_hour * bench.hours as usize;
        backfilled = per_hour * bench.backfill_hours as usize;
    }
    let end = START + bench.hours * 3_600_000;
    let from = end - 3_600_000;
    let mut seed = 0x1234_5678_u64;
    let mut picks = Vec::with_capacity(bench.queries);
    for _ in 0..bench.queries {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        picks.push((seed >> 33) as usize % bench.assets);
    }
    let auth = format!("Bearer {}", hub.token);
    let mut client = Client::connect(&hub.address)?;
    // Untimed: the first request verifies the token (argon2id, tens of milliseconds by
    // design; verified tokens are remembered) and starts the reading threads.
    for asset in picks.iter().take(WARM_UP) {
        let path = format!("/api/v1/telemetry/asset?asset={}&from={from}&to={end}", asset_path(*asset));
        client.request("GET", &path, &[("Authorization", &auth)], b"")?;
    }
    let mut treaty = Vec::with_capacity(picks.len());
    for asset in &picks {
        let path = format!("/api/v1/telemetry/asset?asset={}&from={from}&to={end}", asset_path(*asset));
        let start = Instant::now();
        let (status, body) = client.request("GET", &path, &[("Authorization", &auth)], b"")?;
        treaty.push(start.elapsed());
        anyhow::ensure!(
            status == 200 && body.len() > bench.signals * 3600,
            "treaty answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    let mut rows = vec![("Treaty", "GET /api/v1/telemetry/asset", percentiles(treaty))];
    if let Some(vm) = &vm {
        let mut client = Client::connect(&vm.address)?;
        let mut latencies = Vec::with_capacity(picks.len());
        let export = |asset: usize| {
            format!(
                "/api/v1/export?match[]=%7Basset%3D%22{}%22%7D&start={}&end={}",
                asset_path(asset).replace('/', "%2F"),
                from / 1000,
                (end - 1) / 1000
            )
        };
        for asset in picks.iter().take(WARM_UP) {
            client.request("GET", &export(*asset), &[], b"")?;
        }
        for asset in &picks {
            let path = export(*asset);
            let start = Instant::now();
            let (status, body) = client.request("GET", &path, &[], b"")?;
            latencies.push(start.elapsed());
            anyhow::ensure!(
                status == 200 && body.len() > bench.signals * 3600,
                "victoria-metrics answered {status} with {} bytes",
                body.len()
            );
        }
        rows.push(("VictoriaMetrics 1.79", "GET /api/v1/export", percentiles(latencies)));
    }
    let mut report = format!(
        "## Last hour of an asset ({} signals at 1 Hz), {} h of history for {} assets ({:.1} M samples){}, {} queries over HTTP\n\n\
         | system | request | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n",
        bench.signals,
        bench.hours + bench.backfill_hours,
        bench.assets,
        (loaded + backfilled) as f64 / 1e6,
        if backfilled > 0 && bench.with_vm {
            format!(
                " — the oldest {} h backfilled into Treaty only; VictoriaMetrics holds the newest {} h",
                bench.backfill_hours, bench.hours
            )
        } else if backfilled > 0 {
            format!(" — the oldest {} h backfilled", bench.backfill_hours)
        } else {
            String::new()
        },
        bench.queries
    );
    for (system, request, (p50, p99, max)) in rows {
        report.push_str(&format!("| {system} | {request} | {p50:.2} | {p99:.2} | {max:.2} |\n"));
    }
    Ok(report)
}
