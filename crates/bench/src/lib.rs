//! `treaty bench telemetry`: Treaty's telemetry engine against VictoriaMetrics,
//! InfluxDB 1.6 and PostgreSQL (ThingsBoard's `ts_kv` layout) on the same data in the
//! same run, printed as tables with ratios. Peers that are not installed are reported
//! as missing rather than silently skipped.

pub mod datasets;
pub mod filters;
pub mod gateway;
mod http;
pub mod interlock;
pub mod memory;
pub mod outage;
mod peers;
pub mod query;
pub mod senders;
mod treaty_hub;

use datasets::Dataset;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to run.
#[derive(Debug, Clone)]
pub struct TelemetryBench {
    /// Series in the synthetic fleet (the figure: 10,000).
    pub series: usize,
    /// Seconds of 1 Hz data per series (the figure: 3,600).
    pub seconds: i64,
    /// Samples per write batch.
    pub batch_samples: usize,
    /// Concurrent writers.
    pub clients: usize,
    /// Scratch directory for every system's data.
    pub work_dir: PathBuf,
    /// `../shared/data`.
    pub data_dir: PathBuf,
    /// Peers to run: any of `vm`, `influx`, `pg`.
    pub peers: Vec<String>,
    /// Also measure many senders of small batches against a `treaty serve` process
    /// (this binary) and the peers (`senders`).
    pub senders: Option<senders::SendersBench>,
}

pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn rate(samples: usize, elapsed: Duration) -> f64 {
    samples as f64 / elapsed.as_secs_f64()
}

fn millions(rate: f64) -> String {
    format!("{:.2} M/s", rate / 1e6)
}

/// One row of the ingest table.
struct IngestRow {
    system: &'static str,
    interface: &'static str,
    durable: &'static str,
    rate: Option<f64>,
    note: String,
}

/// Runs everything and returns the report (markdown tables).
pub fn run(bench: &TelemetryBench) -> anyhow::Result<String> {
    let wants = |peer: &str| bench.peers.iter().any(|p| p == peer);
    let fleet = datasets::fleet(bench.series, bench.seconds);
    let cmapss = datasets::cmapss(&bench.data_dir)?;
    let nab = datasets::nab(&bench.data_dir)?;
    let assets = bench.series.div_ceil(20).max(120);
    let batches = datasets::batches(&fleet, bench.batch_samples);
    let n = fleet.samples();
    tracing::info!(samples = n, batches = batches.len(), "datasets ready");
    let mut rows = Vec::new();

    let hub = treaty_hub::Hub::start(&bench.work_dir.join("treaty-inproc"), assets)?;
    let elapsed = hub.ingest_in_process(&batches, bench.clients)?;
    rows.push(IngestRow {
        system: "Treaty",
        interface: "in-process",
        durable: "yes (fsync)",
        rate: Some(rate(n, elapsed)),
        note: String::new(),
    });
    let fleet_bytes_treaty = hub.disk_bytes()?;
    drop(hub);

    let json: Vec<Vec<u8>> = batches.iter().enumerate().map(|(i, b)| treaty_hub::json_body(b, i)).collect();
    let hub = treaty_hub::Hub::start(&bench.work_dir.join("treaty-json"), assets)?;
    let elapsed = hub.ingest_http("/api/v1/telemetry", "application/json", &json, bench.clients)?;
    rows.push(IngestRow {
        system: "Treaty",
        interface: "HTTP JSON batch",
        durable: "yes (fsync)",
        rate: Some(rate(n, elapsed)),
        note: String::new(),
    });
    drop(hub);
    drop(json);

    let lines: Vec<Vec<u8>> = batches.iter().map(|b| treaty_hub::line_protocol_body(b)).collect();
    let hub = treaty_hub::Hub::start(&bench.work_dir.join("treaty-lp"), assets)?;
    let elapsed = hub.ingest_http("/api/v1/write?precision=ms", "text/plain", &lines, bench.clients)?;
    rows.push(IngestRow {
        system: "Treaty",
        interface: "line protocol",
        durable: "yes (fsync)",
        rate: Some(rate(n, elapsed)),
        note: String::new(),
    });
    drop(hub);

    let mut fleet_bytes_vm = None;
    if wants("vm") {
        let vm_json: Vec<Vec<u8>> = batches.iter().map(|b| peers::vm_json_body(b)).collect();
        let vm = peers::victoria_metrics(&bench.work_dir.join("vm-json"))?;
        let elapsed = peers::vm_ingest(&vm, "/api/v1/import", &vm_json, bench.clients)?;
        rows.push(IngestRow {
            system: "VictoriaMetrics 1.79",
            interface: "JSON import",
            durable: "no (buffered ~1 s)",
            rate: Some(rate(n, elapsed)),
            note: String::new(),
        });
        peers::victoria_metrics_settle(&vm)?;
        fleet_bytes_vm = Some(dir_bytes(&vm.dir));
        drop(vm);
        let vm = peers::victoria_metrics(&bench.work_dir.join("vm-lp"))?;
        let elapsed = peers::vm_ingest(&vm, "/write?precision=ms", &lines, bench.clients)?;
        rows.push(IngestRow {
            system: "VictoriaMetrics 1.79",
            interface: "line protocol",
            durable: "no (buffered ~1 s)",
            rate: Some(rate(n, elapsed)),
            note: String::new(),
        });
    }
    let mut fleet_bytes_influx = None;
    if wants("influx") {
        let influx = peers::influxdb(&bench.work_dir.join("influx"))?;
        let elapsed = peers::influx_ingest(&influx, &lines, bench.clients)?;
        rows.push(IngestRow {
            system: "InfluxDB 1.6",
            interface: "line protocol",
            durable: "WAL, fsync per write",
            rate: Some(rate(n, elapsed)),
            note: String::new(),
        });
        peers::influx_settle();
        fleet_bytes_influx = Some(dir_bytes(&influx.dir));
    }
    drop(lines);
    let mut fleet_bytes_pg = None;
    if wants("pg") {
        peers::postgres_reset()?;
        let csv: Vec<Vec<u8>> = batches.iter().map(|b| peers::postgres_csv(b)).collect();
        let elapsed = peers::postgres_ingest(&csv, bench.clients)?;
        rows.push(IngestRow {
            system: "PostgreSQL 15 ts_kv",
            interface: "COPY",
            durable: "yes (commit)",
            rate: Some(rate(n, elapsed)),
            note: String::new(),
        });
        fleet_bytes_pg = Some(peers::postgres_bytes()?);
    }

    let mut report = String::new();
    report.push_str(&format!(
        "## Telemetry ingest: {} = {:.1} M samples, batches of ~{} samples, {} concurrent writers\n\n",
        fleet.name,
        n as f64 / 1e6,
        bench.batch_samples,
        bench.clients
    ));
    let vm_json_rate =
        rows.iter().find(|r| r.system.starts_with("Victoria") && r.interface == "JSON import").and_then(|r| r.rate);
    report.push_str(
        "| system | interface | acknowledged after | samples/s | vs VictoriaMetrics JSON |\n|---|---|---|---|---|\n",
    );
    for row in &rows {
        let ratio = match (row.rate, vm_json_rate) {
            (Some(r), Some(v)) => format!("{:.2}x", r / v),
            _ => "-".into(),
        };
        report.push_str(&format!(
            "| {} | {} | {} | {} | {} |{}\n",
            row.system,
            row.interface,
            row.durable,
            row.rate.map_or("-".into(), millions),
            ratio,
            row.note
        ));
    }

    report.push_str("\n## Bytes per sample on disk\n\nTreaty's samples (chunks, registry, what is left of the WAL) are compared with the peers; its per-minute and per-hour rollups, which the peers do not keep, are shown on their own.\n\n| dataset | samples | Treaty | Treaty rollups | VictoriaMetrics | InfluxDB 1.6 | PostgreSQL ts_kv | Treaty / VictoriaMetrics |\n|---|---|---|---|---|---|---|---|\n");
    let mut sizes: Vec<(&Dataset, Sizes)> =
        vec![(&fleet, (fleet_bytes_treaty, fleet_bytes_vm, fleet_bytes_influx, fleet_bytes_pg))];
    for dataset in [&cmapss, &nab] {
        sizes.push((dataset, bytes_for(bench, dataset, assets, &wants)?));
    }
    for (dataset, ((total, rollups), vm, influx, pg)) in sizes {
        let per = |bytes: Option<u64>| {
            bytes.map_or("-".to_owned(), |b| format!("{:.2}", b as f64 / dataset.samples() as f64))
        };
        let treaty = total - rollups;
        let ratio = vm.map_or("-".to_owned(), |v| format!("{:.2}x", treaty as f64 / v as f64));
        report.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            dataset.name,
            dataset.samples(),
            per(Some(treaty)),
            per(Some(rollups)),
            per(vm),
            per(influx),
            per(pg),
            ratio
        ));
    }
    if let Some(senders) = &bench.senders {
        report.push('\n');
        report.push_str(&senders::run(senders)?);
    }
    Ok(report)
}

type Sizes = ((u64, u64), Option<u64>, Option<u64>, Option<u64>);

fn bytes_for(
    bench: &TelemetryBench,
    dataset: &Dataset,
    assets: usize,
    wants: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Sizes> {
    let batches = datasets::batches(dataset, bench.batch_samples);
    let hub = treaty_hub::Hub::start(&bench.work_dir.join("treaty-size"), assets)?;
    hub.ingest_in_process(&batches, 1)?;
    let treaty = hub.disk_bytes()?;
    drop(hub);
    let lines: Vec<Vec<u8>> = batches.iter().map(|b| treaty_hub::line_protocol_body(b)).collect();
    let vm = if wants("vm") {
        let vm = peers::victoria_metrics(&bench.work_dir.join("vm-size"))?;
        let bodies: Vec<Vec<u8>> = batches.iter().map(|b| peers::vm_json_body(b)).collect();
        peers::vm_ingest(&vm, "/api/v1/import", &bodies, 1)?;
        peers::victoria_metrics_settle(&vm)?;
        Some(dir_bytes(&vm.dir))
    } else {
        None
    };
    let influx = if wants("influx") {
        let influx = peers::influxdb(&bench.work_dir.join("influx-size"))?;
        peers::influx_ingest(&influx, &lines, 1)?;
        peers::influx_settle();
        Some(dir_bytes(&influx.dir))
    } else {
        None
    };
    let pg = if wants("pg") {
        peers::postgres_reset()?;
        let csv: Vec<Vec<u8>> = batches.iter().map(|b| peers::postgres_csv(b)).collect();
        peers::postgres_ingest(&csv, 1)?;
        Some(peers::postgres_bytes()?)
    } else {
        None
    };
    Ok((treaty, vm, influx, pg))
}
