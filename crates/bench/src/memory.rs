//! `treaty bench memory`: the resident memory of a real `treaty serve` process while
//! `series` series at 1 Hz stream in over HTTP. Time is accelerated (an hour of data is
//! sent as fast as the hub takes it), which is the worst case for memory: every series'
//! head fills to a whole chunk at the same moment. RSS is sampled from `/proc`.

use crate::datasets::{asset_path, signal_name};
use crate::http::Client;
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub(crate) const SIGNALS: usize = 20;
const TOKEN: &str = "trt_memory-benchmark-token-0123456789abcdef";

pub struct MemoryBench {
    pub series: usize,
    pub seconds: i64,
    /// Seconds of data per request (every series, this many samples each).
    pub seconds_per_request: i64,
    /// The `treaty` binary to run as the hub.
    pub treaty: PathBuf,
    pub work_dir: PathBuf,
}

/// A fleet file with `assets` assets of one model with `SIGNALS` signals.
pub(crate) fn fleet_file(assets: usize) -> String {
    let mut out = String::from(
        "[[customer]]\nid = \"bench\"\nname = \"Benchmark\"\n\n[[site]]\nid = \"bench/site\"\nname = \"Site\"\n\n\
         [[line]]\nid = \"bench/site/line\"\nname = \"Line\"\n\n[[asset_model]]\nid = \"bench-model\"\nname = \"Bench\"\ncategory = \"bench\"\n",
    );
    for k in 0..SIGNALS {
        let _ = write!(out, "[[asset_model.signal]]\nname = \"{}\"\nunit = \"u\"\n", signal_name(k));
    }
    for n in 0..assets {
        let _ = write!(out, "\n[[asset]]\nid = \"{}\"\nname = \"A{n}\"\nmodel = \"bench-model\"\n", asset_path(n));
    }
    out
}

/// A sensor-like value of series `i` at second `t`: a swing plus noise, quantised.
fn value(i: usize, t: i64) -> f64 {
    let resolution = [0.01, 0.1, 0.5, 1.0][i % 4];
    let level = 20.0 + (i % 80) as f64;
    let mut h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (t as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 31;
    let noise = (h % 1000) as f64 / 1000.0 - 0.5;
    let raw = level * (1.0 + 0.05 * (t as f64 / (600.0 + i as f64 % 3000.0)).sin()) + noise * resolution * 4.0;
    (raw / resolution).round() * resolution
}

fn body(series: usize, from: i64, seconds: i64, start_ms: i64) -> Vec<u8> {
    let mut out = String::from("{\"series\":[");
    for i in 0..series {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"asset\":\"{}\",\"signal\":\"{}\",\"timestamps\":[",
            asset_path(i / SIGNALS),
            signal_name(i % SIGNALS)
        );
        for t in from..from + seconds {
            let _ = write!(out, "{}{}", if t > from { "," } else { "" }, start_ms + t * 1000);
        }
        out.push_str("],\"values\":[");
        for t in from..from + seconds {
            let _ = write!(out, "{}{}", if t > from { "," } else { "" }, value(i, t));
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out.into_bytes()
}

pub(crate) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A real `treaty serve` process over a fresh data directory with the benchmark fleet
/// (`series` series, in assets of `SIGNALS` signals) imported; stopped with SIGTERM when
/// dropped.
pub(crate) struct HubProcess {
    child: std::process::Child,
    pub pid: u32,
    pub address: String,
    pub token: &'static str,
}

impl HubProcess {
    pub fn start(treaty: &std::path::Path, dir: &std::path::Path, series: usize) -> anyhow::Result<HubProcess> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let fleet = dir.join("fleet.toml");
        std::fs::write(&fleet, fleet_file(series.div_ceil(SIGNALS)))?;
        let data = dir.join("data");
        let data_arg = data.to_str().context("work dir is not UTF-8")?;
        let import = Command::new(treaty)
            .args(["import", "--data-dir", data_arg])
            .arg(&fleet)
            .output()
            .context("running treaty import")?;
        if !import.status.success() {
            bail!("treaty import failed: {}", String::from_utf8_lossy(&import.stderr));
        }
        let mut child = Command::new(treaty)
            .args(["serve", "--data-dir", data_arg, "--bind", "127.0.0.1:0", "--log-level", "warn"])
            .env("TREATY_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting treaty serve")?;
        let pid = child.id();
        let mut stderr = BufReader::new(child.stderr.take().context("stderr")?);
        let mut address = None;
        let mut line = String::new();
        while stderr.read_line(&mut line)? > 0 {
            if let Some(rest) = line.split("serving on http://").nth(1) {
                address = rest.split_whitespace().next().map(str::to_owned);
                break;
            }
            line.clear();
        }
        let address = address.context("treaty serve did not say where it listens")?;
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Ok(HubProcess { child, pid, address, token: TOKEN })
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        let _ = self.child.wait();
    }
}

pub fn run(bench: &MemoryBench) -> anyhow::Result<String> {
    let hub = HubProcess::start(&bench.treaty, &bench.work_dir.join("memory"), bench.series)?;
    let (pid, address) = (hub.pid, hub.address.clone());
    let idle_kib = status_kib(pid, "VmRSS:").unwrap_or(0);

    let start_ms = model::Timestamp::now().0 - (bench.seconds + 60) * 1000;
    let requests: Vec<i64> = (0..bench.seconds).step_by(bench.seconds_per_request as usize).collect();
    let done = AtomicBool::new(false);
    let began = Instant::now();
    let samples = std::thread::scope(|scope| -> anyhow::Result<u64> {
        let sampler = scope.spawn(|| {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(status_kib(pid, "VmRSS:").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (requests, address) = (&requests, &address);
                scope.spawn(move || -> anyhow::Result<u64> {
                    let mut client = Client::connect(address)?;
                    let auth = format!("Bearer {TOKEN}");
                    let mut stored = 0u64;
                    for from in requests.iter().skip(w).step_by(2) {
                        let seconds = bench.seconds_per_request.min(bench.seconds - from);
                        let payload = body(bench.series, *from, seconds, start_ms);
                        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
                        let (status, reply) = client.request("POST", "/api/v1/telemetry", &headers, &payload)?;
                        let reply: serde_json::Value = serde_json::from_slice(&reply)?;
                        anyhow::ensure!(status == 200, "status {status}: {reply}");
                        stored += reply["stored"].as_u64().unwrap_or(0);
                    }
                    Ok(stored)
                })
            })
            .collect();
        let mut stored = 0;
        for writer in writers {
            stored += writer.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        done.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        Ok(stored)
    })?;
    let elapsed = began.elapsed();
    let peak_kib = status_kib(pid, "VmHWM:").unwrap_or(0);
    std::thread::sleep(Duration::from_secs(2));
    let after_kib = status_kib(pid, "VmRSS:").unwrap_or(0);
    drop(hub);
    let expected = bench.series as u64 * bench.seconds as u64;
    anyhow::ensure!(samples == expected, "the hub stored {samples} of {expected} samples");
    let mib = |kib: u64| format!("{:.0} MiB", kib as f64 / 1024.0);
    let mut report = format!(
        "## Hub memory: `treaty serve` with {} series at 1 Hz, {} s of data ({} samples, {} s per request, sent in {:.0} s)\n\n",
        bench.series,
        bench.seconds,
        samples,
        bench.seconds_per_request,
        elapsed.as_secs_f64()
    );
    report.push_str("| measure | RSS |\n|---|---|\n");
    let _ = writeln!(report, "| idle, catalogue loaded | {} |", mib(idle_kib));
    let _ = writeln!(report, "| peak while ingesting (VmHWM) | {} |", mib(peak_kib));
    let _ = writeln!(report, "| after ingest | {} |", mib(after_kib));
    let _ = writeln!(report, "| target | 512 MiB |");
    Ok(report)
}
