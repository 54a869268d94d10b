//! `treaty bench senders`: the edge's real pattern — many gateways, each posting small
//! batches (100 samples with unique time stamps over 30 series) as fast as it is
//! answered — against a real `treaty serve` process, VictoriaMetrics' JSON import and
//! InfluxDB 1.6's line protocol, same machine, same load generator, same run.
//!
//! The load generator is one thread with one keep-alive connection per sender (the
//! gateway's own client, `edge::http`), so that it takes as little CPU from the server
//! as possible; each request's latency is the time from its first byte sent to its last
//! byte received. For Treaty it also records the hub's peak resident memory and its
//! threads, which must not grow with the number of senders.

use crate::datasets::{asset_path, signal_name};
use crate::memory::{HubProcess, SIGNALS};
use anyhow::bail;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Samples per request.
const PER_REQUEST: u64 = 100;

#[derive(Debug, Clone)]
pub struct SendersBench {
    /// Concurrent senders to measure, each a row.
    pub senders: Vec<usize>,
    /// Seconds of load per cell, split over `rounds`.
    pub seconds: u64,
    /// Turns each system takes per cell (the median is reported).
    pub rounds: usize,
    /// Series the samples spread over (the figure: 30).
    pub series: usize,
    pub treaty: PathBuf,
    pub work_dir: PathBuf,
    /// Leave the peers out (Treaty only).
    pub no_peers: bool,
}

/// Wire formats under test.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    TreatyJson,
    TreatyLineProtocol,
    VictoriaJson,
    InfluxLineProtocol,
}

impl Format {
    fn path(self) -> &'static str {
        match self {
            Format::TreatyJson => "/api/v1/telemetry",
            Format::TreatyLineProtocol => "/api/v1/write?precision=ms",
            Format::VictoriaJson => "/api/v1/import",
            Format::InfluxLineProtocol => "/write?db=bench&precision=ms",
        }
    }

    /// The body of request `n`: sample `g = n * 100 + k` goes to series `g % series`
    /// at `base + g / series` seconds: each series reads like a 1 Hz sensor (sent much
    /// faster than real time), and no two samples of a series share a time stamp.
    fn body(self, n: u64, series: usize, base: i64) -> Vec<u8> {
        let series = series as u64;
        let mut per_series: Vec<(u64, Vec<(i64, f64)>)> = Vec::new();
        for k in 0..PER_REQUEST {
            let g = n * PER_REQUEST + k;
            let (s, ts) = (g % series, base + (g / series) as i64 * 1000);
            let value = ((g * 7919) % 1000) as f64 / 10.0;
            match per_series.iter_mut().find(|(id, _)| *id == s) {
                Some((_, samples)) => samples.push((ts, value)),
                None => per_series.push((s, vec![(ts, value)])),
            }
        }
        let name = |s: u64| (asset_path(s as usize / SIGNALS), signal_name(s as usize % SIGNALS));
        let mut out = String::new();
        match self {
            Format::TreatyJson => {
                out.push_str("{\"series\":[");
                for (i, (s, samples)) in per_series.iter().enumerate() {
                    let (asset, signal) = name(*s);
                    let sep = if i > 0 { "," } else { "" };
                    let _ = write!(out, "{sep}{{\"asset\":\"{asset}\",\"signal\":\"{signal}\",\"timestamps\":[");
                    columns(&mut out, samples.iter().map(|(t, _)| t.to_string()));
                    out.push_str("],\"values\":[");
                    columns(&mut out, samples.iter().map(|(_, v)| v.to_string()));
                    out.push_str("]}");
                }
                out.push_str("]}");
            }
            Format::VictoriaJson => {
                for (s, samples) in &per_series {
                    let (asset, signal) = name(*s);
                    let _ =
                        write!(out, "{{\"metric\":{{\"__name__\":\"{signal}\",\"asset\":\"{asset}\"}},\"values\":[");
                    columns(&mut out, samples.iter().map(|(_, v)| v.to_string()));
                    out.push_str("],\"timestamps\":[");
                    columns(&mut out, samples.iter().map(|(t, _)| t.to_string()));
                    out.push_str("]}\n");
                }
            }
            Format::TreatyLineProtocol | Format::InfluxLineProtocol => {
                for (s, samples) in &per_series {
                    let (asset, signal) = name(*s);
                    for (t, v) in samples {
                        let _ = writeln!(out, "{signal},asset={asset} value={v} {t}");
                    }
                }
            }
        }
        out.into_bytes()
    }

    fn ok(self, status: u16) -> bool {
        match self {
            Format::TreatyJson | Format::TreatyLineProtocol => status == 200,
            Format::VictoriaJson | Format::InfluxLineProtocol => status == 204 || status == 200,
        }
    }
}

fn columns(out: &mut String, items: impl Iterator<Item = String>) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item);
    }
}

/// What one measurement saw.
struct Measured {
    requests: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn cell(&self) -> String {
        format!("{:.0} req/s, p50 {:.1} / p99 {:.1} ms", self.requests as f64 / self.seconds, self.p50_ms, self.p99_ms)
    }
}

/// Runs `senders` connections posting as fast as they are answered for `seconds`.
fn load(
    address: &str,
    format: Format,
    token: Option<&str>,
    senders: usize,
    seconds: u64,
    series: usize,
    next: &Arc<AtomicU64>,
) -> anyhow::Result<Measured> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Far enough back that a whole run of 1 Hz data stays in the past.
    let base = model::Timestamp::now().0 - 60 * 86_400_000;
    let content_type = if matches!(format, Format::TreatyJson) { "application/json" } else { "text/plain" };
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let latencies = runtime.block_on(async {
        let mut tasks = Vec::with_capacity(senders);
        let target = edge::http::Target::plain(address);
        for _ in 0..senders {
            let mut client =
                edge::http::Client::connect(&target).await?.with_answer_timeout(crate::http::ANSWER_TIMEOUT);
            let authorization = token.map(|t| format!("Bearer {t}"));
            let (stop, next) = (stop.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut headers = vec![("Content-Type", content_type)];
                if let Some(authorization) = &authorization {
                    headers.push(("Authorization", authorization.as_str()));
                }
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let body = format.body(n, series, base);
                    let sent = Instant::now();
                    let (status, reply) = client.request("POST", format.path(), &headers, &body).await?;
                    latencies.push(sent.elapsed().as_micros() as u32);
                    if !format.ok(status) {
                        bail!("{} answered {status}: {}", format.path(), String::from_utf8_lossy(&reply));
                    }
                }
                anyhow::Ok(latencies)
            }));
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut sorted = latencies;
    sorted.sort_unstable();
    let at = |q: f64| sorted.get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1))).copied();
    Ok(Measured {
        requests: sorted.len() as u64,
        seconds: elapsed,
        p50_ms: at(0.50).unwrap_or(0) as f64 / 1000.0,
        p99_ms: at(0.99).unwrap_or(0) as f64 / 1000.0,
    })
}

/// The hub's peak resident memory and its thread count now.
fn hub_footprint(pid: u32) -> String {
    let kib = crate::memory::status_kib(pid, "VmHWM:").unwrap_or(0);
    let threads = crate::memory::status_kib(pid, "Threads:").unwrap_or(0);
    format!("{:.0} MiB, {threads} threads", kib as f64 / 1024.0)
}

/// A system under load: where it listens and how it is written to.
struct Target {
    format: Format,
    address: String,
    token: Option<&'static str>,
    /// Request numbers already used (time stamps stay unique within a system).
    next: Arc<AtomicU64>,
    /// Its process, waited for until idle after each turn.
    pid: u32,
}

pub fn run(bench: &SendersBench) -> anyhow::Result<String> {
    let dir = bench.work_dir.join("senders");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // Every system runs at once and the measurements take turns, round after round: a
    // machine that gets busier or quieter during the run affects every system alike. After
    // its turn a system is waited for until idle, so that its deferred work (merges,
    // compaction, sealing) is not done in another system's turn. Each cell is the median
    // of the rounds.
    let hub = HubProcess::start(&bench.treaty, &dir.join("treaty"), bench.series)?;
    let treaty_next = Arc::new(AtomicU64::new(0));
    let mut targets = vec![
        Target {
            format: Format::TreatyJson,
            address: hub.address.clone(),
            token: Some(hub.token),
            next: treaty_next.clone(),
            pid: hub.pid,
        },
        Target {
            format: Format::TreatyLineProtocol,
            address: hub.address.clone(),
            token: Some(hub.token),
            next: treaty_next,
            pid: hub.pid,
        },
    ];
    let peers = if bench.no_peers {
        None
    } else {
        let vm = crate::peers::victoria_metrics(&dir.join("vm"))?;
        let influx = crate::peers::influxdb(&dir.join("influx"))?;
        targets.push(Target {
            format: Format::VictoriaJson,
            address: vm.address.clone(),
            token: None,
            next: Default::default(),
            pid: vm.pid(),
        });
        targets.push(Target {
            format: Format::InfluxLineProtocol,
            address: influx.address.clone(),
            token: None,
            next: Default::default(),
            pid: influx.pid(),
        });
        Some((vm, influx))
    };
    let rounds = bench.rounds.max(1);
    let per_round = (bench.seconds / rounds as u64).max(1);
    let mut rows: Vec<Vec<String>> = Vec::new();
    for senders in &bench.senders {
        let mut cells: Vec<Vec<Measured>> = targets.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            for (target, cell) in targets.iter().zip(cells.iter_mut()) {
                let token = target.token;
                cell.push(load(
                    &target.address,
                    target.format,
                    token,
                    *senders,
                    per_round,
                    bench.series,
                    &target.next,
                )?);
                crate::peers::wait_idle(target.pid, Duration::from_secs(60))?;
            }
        }
        let mut row = vec![senders.to_string()];
        for (i, mut cell) in cells.into_iter().enumerate() {
            cell.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
            row.push(cell[cell.len() / 2].cell());
            if i == 1 {
                row.push(hub_footprint(hub.pid));
            }
        }
        rows.push(row);
    }
    drop(peers);
    drop(hub);
    let mut report = format!(
        "## Many senders, small batches: {PER_REQUEST} samples per request over {} series; median of {rounds} rounds of {per_round} s, systems taking turns\n\n",
        bench.series
    );
    report.push_str("| senders | Treaty JSON (fsync) | Treaty line protocol (fsync) | Treaty hub peak RSS, threads |");
    if !bench.no_peers {
        report.push_str(" VictoriaMetrics JSON import (not durable) | InfluxDB 1.6 line protocol (fsync) |");
    }
    report.push('\n');
    report.push_str(if bench.no_peers { "|---|---|---|---|\n" } else { "|---|---|---|---|---|---|\n" });
    for row in rows {
        let _ = writeln!(report, "| {} |", row.join(" | "));
    }
    Ok(report)
}
