//! `treaty bench telemetry`: runs the telemetry benchmark (see `crates/bench`) and prints
//! its tables. Build with `--release` for meaningful numbers.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Ingest throughput and bytes per sample: Treaty against VictoriaMetrics, InfluxDB
    /// 1.6 and PostgreSQL (ts_kv), on the same data in the same run.
    Telemetry {
        /// Series in the synthetic fleet.
        #[arg(long, default_value_t = 10_000)]
        series: usize,
        /// Seconds of 1 Hz data per series.
        #[arg(long, default_value_t = 3_600)]
        seconds: i64,
        /// Samples per write batch.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Concurrent writers.
        #[arg(long, default_value_t = 2)]
        clients: usize,
        /// Peers to compare with (comma-separated): vm, influx, pg.
        #[arg(long, value_delimiter = ',', default_value = "vm,influx,pg")]
        peers: Vec<String>,
        /// Scratch directory (emptied per system).
        #[arg(long, default_value = "./treaty-bench")]
        work_dir: PathBuf,
        /// The shared reference data (C-MAPSS, NAB).
        #[arg(long, default_value = "../shared/data")]
        data_dir: PathBuf,
        /// Leave out the many-senders table (see `treaty bench senders`).
        #[arg(long)]
        no_senders: bool,
    },
    /// Many gateways posting small batches (100 samples over 30 series) to a real `treaty
    /// serve`: requests per second and latency per number of senders, against
    /// VictoriaMetrics' JSON import and InfluxDB's line protocol; the hub's memory and
    /// threads.
    Senders {
        /// Concurrent senders, one row each (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "8,64,256")]
        senders: Vec<usize>,
        /// Seconds of load per cell (split over the rounds).
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Rounds per cell: the systems take turns, each cell is the median.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Series the samples spread over.
        #[arg(long, default_value_t = 30)]
        series: usize,
        /// Treaty only.
        #[arg(long)]
        no_peers: bool,
        #[arg(long, default_value = "./treaty-bench")]
        work_dir: PathBuf,
    },
    /// Reduction and reconstruction error of each edge filter on the real series in ../shared/data.
    EdgeFilters {
        /// The shared reference data (C-MAPSS, NAB).
        #[arg(long, default_value = "../shared/data")]
        data_dir: PathBuf,
    },
    /// A `treaty edge` process polling many Modbus devices (pymodbus): its CPU and memory.
    Gateway {
        #[arg(long, default_value_t = 50)]
        devices: usize,
        /// Holding registers per device (at most 200).
        #[arg(long, default_value_t = 100)]
        registers: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// The pymodbus server script.
        #[arg(long, default_value = "crates/edge/tests/peers/modbus_server.py")]
        modbus_server: PathBuf,
        /// OPC UA value changes per second to follow at the same time (0: none).
        #[arg(long, default_value_t = 10_000)]
        opcua_changes: usize,
        /// Over this many OPC UA nodes.
        #[arg(long, default_value_t = 1_000)]
        opcua_nodes: usize,
        /// The asyncua server script.
        #[arg(long, default_value = "crates/edge/tests/peers/opcua_server.py")]
        opcua_server: PathBuf,
        #[arg(long, default_value = "./treaty-bench")]
        work_dir: PathBuf,
    },
    /// Interlock latency: trigger sample to coil write, against pymodbus.
    Interlock {
        #[arg(long, default_value_t = 200)]
        cycles: usize,
        #[arg(long, default_value_t = 50)]
        poll_ms: u64,
        #[arg(long, default_value = "crates/edge/tests/peers/modbus_server.py")]
        modbus_server: PathBuf,
        #[arg(long, default_value = "examples/fleet.toml")]
        fleet: PathBuf,
        #[arg(long, default_value = "./treaty-bench")]
        work_dir: PathBuf,
    },
    /// An uplink outage: the edge spool queues it, then replays it to a hub in order.
    Outage {
        #[arg(long, default_value_t = 30)]
        minutes: i64,
        /// Samples per second during the outage.
        #[arg(long, default_value_t = 1000)]
        rate: usize,
        #[arg(long, default_value = "./treaty-bench")]
        work_dir: PathBuf,
    },
    /// Resident memory of a real `treaty serve` while series at 1 Hz stream in.
    Memory {
        #[arg(long, default_value_t = 10_000)]
        series: usize,
        /// Seconds of 1 Hz data per series (an hour fills every head to a whole chunk).
        #[arg(long, default_value_t = 3_600)]
        seconds: i64,
        /// Seconds of data per request.
        #[arg(long, default_value_t = 10)]
        seconds_per_request: i64,
        #[arg(long, default_value = "./treaty-bench")]
        work_dir: PathBuf,
    },
    /// Latency of "the last hour of an asset" with history behind it, against VictoriaMetrics.
    Query {
        /// Assets (each with `signals` series at 1 Hz).
        #[arg(long, default_value_t = 100)]
        assets: usize,
        #[arg(long, default_value_t = 20)]
        signals: usize,
        /// Hours of history per series.
        #[arg(long, default_value_t = 24)]
        hours: i64,
        /// Queries to time.
        #[arg(long, default_value_t = 500)]
        queries: usize,
        /// Skip VictoriaMetrics.
        #[arg(long)]
        no_peer: bool,
        /// Hours of older history bulk-loaded into Treaty only (e.g. 696 with --hours 24
        /// for 30 days), through the engine's backfill rather than the HTTP API.
        #[arg(long, default_value_t = 0)]
        backfill_hours: i64,
        #[arg(long, default_value = "./treaty-bench")]
        work_dir: PathBuf,
        /// Query the data an earlier run with the same sizes left in --work-dir instead
        /// of loading it again (Treaty only; the 30-day load takes about an hour).
        #[arg(long)]
        reuse: bool,
    },
}

pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    let report = match command {
        BenchCommand::Telemetry { series, seconds, batch, clients, peers, work_dir, data_dir, no_senders } => {
            let senders = (!no_senders).then(|| -> anyhow::Result<_> {
                Ok(bench::senders::SendersBench {
                    senders: vec![8, 64, 256],
                    seconds: 15,
                    rounds: 3,
                    series: 30,
                    treaty: std::env::current_exe()?,
                    work_dir: work_dir.clone(),
                    no_peers: !(peers.iter().any(|p| p == "vm") && peers.iter().any(|p| p == "influx")),
                })
            });
            let bench = bench::TelemetryBench {
                series,
                seconds,
                batch_samples: batch,
                clients,
                work_dir,
                data_dir,
                peers,
                senders: senders.transpose()?,
            };
            tokio::task::spawn_blocking(move || bench::run(&bench)).await??
        }
        BenchCommand::Senders { senders, seconds, rounds, series, no_peers, work_dir } => {
            let treaty = std::env::current_exe()?;
            let bench = bench::senders::SendersBench { senders, seconds, rounds, series, treaty, work_dir, no_peers };
            tokio::task::spawn_blocking(move || bench::senders::run(&bench)).await??
        }
        BenchCommand::EdgeFilters { data_dir } => {
            let bench = bench::filters::FilterBench { data_dir };
            tokio::task::spawn_blocking(move || bench::filters::run(&bench)).await??
        }
        BenchCommand::Gateway {
            devices,
            registers,
            seconds,
            modbus_server,
            opcua_changes,
            opcua_nodes,
            opcua_server,
            work_dir,
        } => {
            let treaty = std::env::current_exe()?;
            let bench = bench::gateway::GatewayBench {
                devices,
                registers,
                seconds,
                treaty,
                modbus_server,
                opcua_changes,
                opcua_nodes,
                opcua_server,
                work_dir,
            };
            tokio::task::spawn_blocking(move || bench::gateway::run(&bench)).await??
        }
        BenchCommand::Interlock { cycles, poll_ms, modbus_server, fleet, work_dir } => {
            let treaty = std::env::current_exe()?;
            let bench = bench::interlock::InterlockBench {
                cycles: cycles.max(1),
                poll_ms: poll_ms.max(1),
                treaty,
                modbus_server,
                fleet,
                work_dir,
            };
            tokio::task::spawn_blocking(move || bench::interlock::run(&bench)).await??
        }
        BenchCommand::Outage { minutes, rate, work_dir } => {
            let bench = bench::outage::OutageBench { minutes: minutes.max(1), rate: rate.max(1), work_dir };
            tokio::task::spawn_blocking(move || bench::outage::run(&bench)).await??
        }
        BenchCommand::Memory { series, seconds, seconds_per_request, work_dir } => {
            let treaty = std::env::current_exe()?;
            let bench = bench::memory::MemoryBench {
                series,
                seconds,
                seconds_per_request: seconds_per_request.max(1),
                treaty,
                work_dir,
            };
            tokio::task::spawn_blocking(move || bench::memory::run(&bench)).await??
        }
        BenchCommand::Query { assets, signals, hours, queries, no_peer, work_dir, backfill_hours, reuse } => {
            let bench = bench::query::QueryBench {
                assets,
                signals,
                hours,
                queries,
                work_dir,
                with_vm: !no_peer && !reuse,
                backfill_hours: backfill_hours.max(0),
                reuse,
            };
            tokio::task::spawn_blocking(move || bench::query::run(&bench)).await??
        }
    };
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
