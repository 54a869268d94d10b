//! `treaty bench interlock`: the time from the sample that trips an interlock to the
//! write's reply. A `treaty edge` child polls pymodbus every `poll_ms`; the bench drives
//! the trigger register above and below the limit `cycles` times; every excursion makes
//! the gateway write a coil and log the latency (poll result in hand -> write
//! acknowledged by the PLC) to its audit file, which is read back here.

use crate::treaty_hub::Hub;
use anyhow::Context;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct InterlockBench {
    pub cycles: usize,
    pub poll_ms: u64,
    pub treaty: PathBuf,
    pub modbus_server: PathBuf,
    pub fleet: PathBuf,
    pub work_dir: PathBuf,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

pub fn run(bench: &InterlockBench) -> anyhow::Result<String> {
    let dir = bench.work_dir.join("interlock");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let hub = Hub::start(&dir.join("hub"), 1)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut plc = crate::peers::pymodbus(&bench.modbus_server, port, 1)?;
    let spool = dir.join("spool");
    let edge = format!(
        "[gateway]\nid = \"gw-interlock\"\nhub = \"http://{}\"\nspool_dir = \"{}\"\nfield_writes = true\n\n\
         [[modbus]]\nname = \"plc\"\naddress = \"127.0.0.1:{port}\"\n\n[[modbus.writable]]\ntable = \"coil\"\naddress = 5\nmin = 0\nmax = 1\n\n\
         [[modbus.poll]]\ninterval_ms = {}\n\n[[modbus.poll.tag]]\nasset = \"acme/plant-1/line-1/p-101\"\nsignal = \"bearing_temperature\"\ntable = \"holding\"\naddress = 0\n\n\
         [[interlock]]\nname = \"stop on heat\"\nasset = \"acme/plant-1/line-1/p-101\"\nsignal = \"bearing_temperature\"\nabove = 40.0\ndevice = \"plc\"\ntable = \"coil\"\naddress = 5\nvalue = 1\n",
        hub.address,
        spool.display(),
        bench.poll_ms
    );
    let edge_file = dir.join("edge.toml");
    std::fs::write(&edge_file, edge)?;
    let mut gateway = Command::new(&bench.treaty)
        .args(["edge", "--log-level", "error", "--config"])
        .arg(&edge_file)
        .arg("--fleet")
        .arg(&bench.fleet)
        .env("TREATY_DEVICE_TOKEN", &hub.token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting treaty edge")?;
    // Drive the trigger: 42 (tripped) and 10 (clear), each held for a few polls.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let hold = Duration::from_millis(bench.poll_ms * 4);
    runtime.block_on(async {
        use tokio_modbus::client::Writer;
        let address = format!("127.0.0.1:{port}").parse()?;
        let mut ctx = tokio_modbus::client::tcp::connect_slave(address, tokio_modbus::Slave(1)).await?;
        for _ in 0..bench.cycles {
            ctx.write_single_register(0, 10).await??;
            tokio::time::sleep(hold).await;
            ctx.write_single_register(0, 42).await??;
            tokio::time::sleep(hold).await;
        }
        ctx.write_single_register(0, 42).await??;
        anyhow::Ok(())
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let _ = gateway.kill();
    let _ = gateway.wait();
    let _ = plc.kill();
    let _ = plc.wait();
    let text = std::fs::read_to_string(spool.join("interlock-audit.jsonl")).context("the gateway wrote no audit")?;
    let mut latencies = Vec::new();
    let mut failed = 0;
    for line in text.lines() {
        let entry: serde_json::Value = serde_json::from_str(line)?;
        if entry["result"] == "written" {
            latencies.push(entry["latency_ms"].as_f64().unwrap_or(f64::NAN));
        } else {
            failed += 1;
        }
    }
    anyhow::ensure!(!latencies.is_empty(), "no interlock write happened");
    latencies.sort_by(f64::total_cmp);
    let mut report = format!(
        "## Interlock: sample to coil write ({} excursions, polling every {} ms, pymodbus as the PLC)\n\n| measure | value |\n|---|---|\n",
        bench.cycles, bench.poll_ms
    );
    let _ = writeln!(report, "| writes (failed) | {} ({failed}) |", latencies.len());
    let _ = writeln!(report, "| p50 | {:.2} ms |", percentile(&latencies, 0.5));
    let _ = writeln!(report, "| p99 | {:.2} ms |", percentile(&latencies, 0.99));
    let _ = writeln!(report, "| max | {:.2} ms |", latencies[latencies.len() - 1]);
    Ok(report)
}
