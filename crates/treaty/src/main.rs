//! `treaty`: the one binary. Parses the command line, sets up logging, and hands each
//! subcommand to its module. Exit codes: 0 success, 1 failure, 2 invalid configuration,
//! 3 audit chain broken.

mod audit;
mod bench;
mod edge;
mod import;
mod logging;
mod serve;
mod signal;
mod sim;
mod token;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Treaty — IT/OT convergence hub for aftermarket service.
///
/// Start with `treaty serve --import examples/fleet.toml`: it imports the example fleet
/// into ./treaty-data, prints an admin token once, and serves the API on
/// http://127.0.0.1:8080 (OpenAPI document at /api/v1/openapi.json).
#[derive(Debug, Parser)]
#[command(name = "treaty", version, about, long_about)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "human", env = "TREATY_LOG_FORMAT")]
    log_format: logging::Format,
    /// Log filter, e.g. `info` or `treaty=debug,tower_http=debug`.
    #[arg(long, global = true, default_value = "info", env = "TREATY_LOG")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

/// Where Treaty keeps its data; every command that reads or writes it takes this flag.
#[derive(Debug, clap::Args)]
pub struct DataDir {
    /// Data directory (created if missing). Safe to use while `treaty serve` runs on it.
    #[arg(long, default_value = "./treaty-data", env = "TREATY_DATA_DIR")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (and import a fleet file first, if given).
    Serve(serve::ServeArgs),
    /// Apply a fleet file to the data directory: creates, updates and deletes exactly the
    /// difference, in one transaction. A file with any problem changes nothing.
    Import(import::ImportArgs),
    /// Check a fleet file and list every problem with file:line:column (exit code 2 if any).
    CheckConfig {
        /// A fleet file (e.g. examples/fleet.toml) or an edge file (e.g. examples/edge.toml).
        file: PathBuf,
        /// For an edge file: the fleet its tag map must match.
        #[arg(long)]
        fleet: Option<PathBuf>,
    },
    /// Run the edge gateway: poll devices, filter, store and forward to the hub.
    Edge(edge::EdgeArgs),
    /// Simulate the fleet: every asset a machine with physics and failures, served over
    /// Modbus TCP, OPC UA and MQTT (JSON, Sparkplug B) on loopback.
    Sim(sim::SimArgs),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Inspect the tamper-evident audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Measure Treaty against real peers on the same data and print the tables.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// mimalloc instead of glibc's malloc: with a thread pool doing large transient
/// allocations (request bodies, seal copies), glibc's per-thread arenas kept ~530 MiB
/// resident for a 10,000-series hub that needs under 300 (`treaty bench memory`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc settings for the gateway, which must stay small: no transparent huge pages
/// (with THP a 2 MiB page is resident as soon as one byte of it is touched) and freed
/// memory returned at once. mimalloc reads them from the environment when the process
/// starts (setting them in code would take `unsafe`), so `treaty edge` re-executes
/// itself once with them set; an operator's own `MIMALLOC_*` settings win.
const GATEWAY_ALLOCATOR: [(&str, &str); 2] = [("MIMALLOC_ALLOW_THP", "0"), ("MIMALLOC_PURGE_DELAY", "0")];

fn tune_gateway_allocator() {
    use std::os::unix::process::CommandExt;
    const MARK: &str = "TREATY_ALLOCATOR_TUNED";
    if std::env::var_os(MARK).is_some() || GATEWAY_ALLOCATOR.iter().all(|(k, _)| std::env::var_os(k).is_some()) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut command = std::process::Command::new(exe);
    command.args(std::env::args_os().skip(1)).env(MARK, "1");
    for (key, value) in GATEWAY_ALLOCATOR {
        if std::env::var_os(key).is_none() {
            command.env(key, value);
        }
    }
    // Only returns if the exec failed; the gateway then runs with the defaults.
    let error = command.exec();
    eprintln!("warning: could not apply the gateway's allocator settings ({error}); running with the defaults");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Edge(_)) {
        tune_gateway_allocator();
    }
    if let Err(error) = logging::init(cli.log_format, &cli.log_level) {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if matches!(cli.command, Command::Edge(_)) {
        // The gateway's blocking work (spool writes, audit lines) is sequential: a few
        // blocking threads are enough, and each idle one keeps allocator pages resident.
        builder.max_blocking_threads(2).thread_keep_alive(std::time::Duration::from_secs(2));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Import(args) => import::run(args).await,
            Command::CheckConfig { file, fleet } => {
                if std::fs::read_to_string(&file).is_ok_and(|s| edge::is_edge_file(&s)) {
                    match edge::check(&file, fleet.as_deref()) {
                        Ok(Ok(edge)) => {
                            println!("{}: ok ({})", file.display(), edge.summary());
                            Ok(ExitCode::SUCCESS)
                        }
                        Ok(Err(code)) => Ok(code),
                        Err(error) => Err(error),
                    }
                } else {
                    import::check(&file)
                }
            }
            Command::Edge(args) => edge::run(args).await,
            Command::Sim(args) => sim::run(args).await,
            Command::Token(command) => token::run(command).await,
            Command::Audit(command) => audit::run(command).await,
            Command::Bench(command) => bench::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The operator running a CLI command, for the audit trail.
pub fn local_actor() -> model::Principal {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    model::Principal::local_admin(&user)
}

/// Opens the records store in the data directory.
pub fn open_store(data_dir: &DataDir) -> anyhow::Result<store::RecordStoreRef> {
    hub::open_store(&data_dir.data_dir)
}
