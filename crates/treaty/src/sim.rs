//! `treaty sim`: the fleet simulator on loopback, with its ground-truth log, the edge
//! file that reads it, and commands on standard input.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// The fleet file whose assets are simulated.
    #[arg(long, default_value = "examples/fleet.toml")]
    pub fleet: PathBuf,
    /// Simulated seconds per real second (1440 = one simulated day per minute).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Random seed: the same seed and fleet give the same failure schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Mean simulated days between two occurrences of a failure mode on one machine.
    #[arg(long, default_value_t = 120.0)]
    pub mtbf_days: f64,
    /// Leave failed machines down until `repair ASSET` (default: repaired after the
    /// failure mode's mean repair time).
    #[arg(long)]
    pub no_auto_repair: bool,
    /// Simulate only assets whose id starts with this (repeatable).
    #[arg(long = "only", value_name = "PREFIX")]
    pub only: Vec<String>,
    /// Protocol for a model category, e.g. `centrifugal_pump=opcua` (repeatable;
    /// modbus, opcua, mqtt-json, sparkplug).
    #[arg(long = "protocol", value_name = "CATEGORY=PROTOCOL")]
    pub protocols: Vec<String>,
    /// First Modbus TCP port (one per machine, counting up; 0 = any free port).
    #[arg(long, default_value_t = 15020)]
    pub modbus_port: u16,
    /// First OPC UA port (one per machine, counting up; 0 = any free port).
    #[arg(long, default_value_t = 14840)]
    pub opcua_port: u16,
    /// MQTT broker for the JSON sensors and Sparkplug B nodes.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// How often machines advance and publish, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub tick_ms: u64,
    /// Folder holding cmapss/train_FD001.txt (turbofans replay it).
    #[arg(long, default_value = "../shared/data", env = "TREATY_SIM_DATA")]
    pub data_dir: PathBuf,
    /// Ground-truth log: every scheduled, injected and actual failure, stop and repair
    /// (JSON lines, appended).
    #[arg(long, default_value = "treaty-sim-truth.jsonl")]
    pub truth: PathBuf,
    /// Where the simulated OPC UA servers keep their (self-signed) certificate.
    #[arg(long, default_value = "treaty-sim-pki")]
    pub pki_dir: PathBuf,
    /// Write the edge file that reads every simulated machine here.
    #[arg(long, value_name = "FILE")]
    pub write_edge_config: Option<PathBuf>,
    /// The hub the written edge file sends to.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub hub: String,
    /// The gateway id in the written edge file.
    #[arg(long, default_value = "sim-gateway")]
    pub gateway_id: String,
}

pub async fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let fleet = match config::load_fleet(&args.fleet) {
        Ok(fleet) => fleet,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::from(crate::import::INVALID_CONFIG));
        }
    };
    anyhow::ensure!(args.speed.is_finite() && args.speed > 0.0, "--speed must be a positive number");
    anyhow::ensure!(args.mtbf_days.is_finite() && args.mtbf_days > 0.0, "--mtbf-days must be a positive number");
    let mut protocols = Vec::new();
    for text in &args.protocols {
        let (category, protocol) =
            text.split_once('=').with_context(|| format!("--protocol `{text}`: expected CATEGORY=PROTOCOL"))?;
        protocols.push((category.to_owned(), sim::Protocol::parse(protocol).map_err(anyhow::Error::msg)?));
    }
    let options = sim::SimOptions {
        world: sim::WorldOptions {
            speed: args.speed,
            seed: args.seed,
            mtbf_days: args.mtbf_days,
            auto_repair: !args.no_auto_repair,
        },
        tick: Duration::from_millis(args.tick_ms.max(10)),
        modbus_port: args.modbus_port,
        opcua_port: args.opcua_port,
        broker: args.broker.clone(),
        only: args.only.clone(),
        protocols,
        data_dir: args.data_dir.clone(),
        truth: Some(args.truth.clone()),
        pki_dir: args.pki_dir.clone(),
        clock: model::SystemClock::shared(),
    };
    let running = sim::start(&fleet.entities, options).await.map_err(anyhow::Error::msg)?;
    for endpoint in &running.endpoints {
        tracing::info!(asset = %endpoint.asset, protocol = endpoint.protocol.name(), address = %endpoint.address, "simulated machine");
    }
    if let Some(path) = &args.write_edge_config {
        let settings = sim::edge_file::GatewaySettings {
            id: args.gateway_id.clone(),
            hub: args.hub.clone(),
            token_env: "TREATY_DEVICE_TOKEN".into(),
            spool_dir: "./treaty-edge-spool".into(),
        };
        std::fs::write(path, running.edge_file(&settings))
            .with_context(|| format!("writing the edge file {}", path.display()))?;
        eprintln!(
            "edge file written: {} (run it with `treaty edge --config {} --fleet {}`)",
            path.display(),
            path.display(),
            args.fleet.display()
        );
    }
    let count = |p: sim::Protocol| running.endpoints.iter().filter(|e| e.protocol == p).count();
    eprintln!(
        "Treaty simulator: {} machines ({} Modbus TCP, {} OPC UA, {} MQTT JSON, {} Sparkplug B via {}) at {}x; \
         ground truth in {}. Commands on stdin: fault ASSET MODE [DAYS], stop ASSET, start ASSET, repair ASSET, status. Ctrl-C stops.",
        running.endpoints.len(),
        count(sim::Protocol::Modbus),
        count(sim::Protocol::OpcUa),
        count(sim::Protocol::MqttJson),
        count(sim::Protocol::Sparkplug),
        args.broker,
        args.speed,
        args.truth.display()
    );
    let world = running.world.clone();
    let commands = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply = match world.lock() {
                Ok(mut world) => world.apply(&line),
                Err(_) => return,
            };
            match reply {
                Ok(text) if text.is_empty() => {}
                Ok(text) => println!("{}", text.trim_end()),
                Err(error) => eprintln!("error: {error}"),
            }
        }
    });
    crate::signal::stop_requested("the simulator").await;
    commands.abort();
    running.stop();
    tracing::info!("simulator stopped");
    Ok(ExitCode::SUCCESS)
}
