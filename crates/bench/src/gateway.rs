//! `treaty bench gateway`: one `treaty edge` process polling `devices` Modbus TCP servers
//! (pymodbus, one process serving every port) with `registers` holding registers each,
//! once a second, and following `opcua_changes` value changes per second on an asyncua
//! OPC UA server (`opcua_nodes` nodes), sending everything to a hub. Reports the
//! gateway's resident memory and CPU (from `/proc`) and checks what the hub received.

use crate::datasets::{asset_path, signal_name};
use crate::memory::{fleet_file, status_kib};
use crate::treaty_hub::Hub;
use anyhow::Context;
use model::sample::SeriesKey;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct GatewayBench {
    pub devices: usize,
    pub registers: usize,
    pub seconds: u64,
    pub treaty: PathBuf,
    /// The pymodbus server script (crates/edge/tests/peers/modbus_server.py).
    pub modbus_server: PathBuf,
    /// Value changes per second on the OPC UA server (0: no OPC UA load).
    pub opcua_changes: usize,
    pub opcua_nodes: usize,
    /// The asyncua server script (crates/edge/tests/peers/opcua_server.py).
    pub opcua_server: PathBuf,
    pub work_dir: PathBuf,
}

/// Clock ticks of user + system CPU a process has used.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

pub fn run(bench: &GatewayBench) -> anyhow::Result<String> {
    anyhow::ensure!(bench.registers <= 200, "the test server has 200 registers per device");
    let dir = bench.work_dir.join("gateway");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let tags = bench.devices * bench.registers;
    let nodes = if bench.opcua_changes > 0 { bench.opcua_nodes.max(1) } else { 0 };
    let assets = (tags + nodes).div_ceil(20);
    let hub = Hub::start(&dir.join("hub"), assets)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().saturating_add(1000);
    let mut plc = crate::peers::pymodbus(&bench.modbus_server, port, bench.devices)?;
    let fleet = dir.join("fleet.toml");
    std::fs::write(&fleet, fleet_file(assets))?;
    let mut edge = format!(
        "[gateway]\nid = \"gw-bench\"\nhub = \"http://{}\"\nspool_dir = \"{}\"\nbatch_ms = 1000\n",
        hub.address,
        dir.join("spool").display()
    );
    for d in 0..bench.devices {
        let _ = write!(
            edge,
            "\n[[modbus]]\nname = \"plc-{d}\"\naddress = \"127.0.0.1:{}\"\n\n[[modbus.poll]]\ninterval_ms = 1000\n",
            port + d as u16
        );
        for k in 0..bench.registers {
            let n = d * bench.registers + k;
            let _ = write!(
                edge,
                "[[modbus.poll.tag]]\nasset = \"{}\"\nsignal = \"{}\"\ntable = \"holding\"\naddress = {}\n",
                asset_path(n / 20),
                signal_name(n % 20),
                20 + k
            );
        }
    }
    let mut opcua = None;
    if nodes > 0 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = Command::new("python3")
            .arg(&bench.opcua_server)
            .arg(port.to_string())
            .args(["--load", &nodes.to_string(), &bench.opcua_changes.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the asyncua server (pip install asyncua==2.1.0)")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = server.kill();
                anyhow::bail!("the asyncua server did not start");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = write!(
            edge,
            "\n[[opcua]]\nname = \"load\"\nendpoint = \"opc.tcp://127.0.0.1:{port}/treaty-test\"\nsecurity_mode = \"none\"\nsecurity_policy = \"None\"\nallow_insecure = true\npublishing_interval_ms = 100\n"
        );
        for i in 0..nodes {
            let n = tags + i;
            let _ = write!(
                edge,
                "[[opcua.node]]\nnode_id = \"ns=2;s=Load.{i}\"\nasset = \"{}\"\nsignal = \"{}\"\nsampling_interval_ms = 50\n",
                asset_path(n / 20),
                signal_name(n % 20)
            );
        }
        opcua = Some(server);
    }
    let edge_file = dir.join("edge.toml");
    std::fs::write(&edge_file, edge)?;
    let mut gateway = Command::new(&bench.treaty)
        .args(["edge", "--log-level", "warn", "--config"])
        .arg(&edge_file)
        .arg("--fleet")
        .arg(&fleet)
        .env("TREATY_DEVICE_TOKEN", &hub.token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting treaty edge")?;
    let pid = gateway.id();
    std::thread::sleep(Duration::from_secs(3)); // connect and settle
    let (ticks_before, started) = (cpu_ticks(pid).unwrap_or(0), Instant::now());
    let window_start = model::Timestamp::now().0;
    std::thread::sleep(Duration::from_secs(bench.seconds));
    let (ticks_after, elapsed) = (cpu_ticks(pid).unwrap_or(0), started.elapsed());
    let window_end = model::Timestamp::now().0;
    let (rss, peak) = (status_kib(pid, "VmRSS:").unwrap_or(0), status_kib(pid, "VmHWM:").unwrap_or(0));
    std::thread::sleep(Duration::from_secs(2)); // let the last batches arrive
    let _ = gateway.kill();
    let _ = gateway.wait();
    let _ = plc.kill();
    let _ = plc.wait();
    if let Some(mut server) = opcua {
        let _ = server.kill();
        let _ = server.wait();
    }
    let count = |range: std::ops::Range<usize>| -> anyhow::Result<usize> {
        let mut received = 0;
        for n in range {
            let key = SeriesKey::new(asset_path(n / 20), signal_name(n % 20));
            received += hub.tsdb.range(&key, window_start, window_end)?.len();
        }
        Ok(received)
    };
    let received = count(0..tags)?;
    let changes = count(tags..tags + nodes)?;
    // Each node counts up by one per round: a gap between consecutive values at the hub is
    // a change the gateway missed, whatever rate the server managed.
    let mut missed = 0u64;
    for n in tags..tags + nodes {
        let key = SeriesKey::new(asset_path(n / 20), signal_name(n % 20));
        let samples = hub.tsdb.range(&key, window_start, window_end)?;
        for pair in samples.windows(2) {
            missed += (pair[1].value - pair[0].value - 1.0).max(0.0) as u64;
        }
    }
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let cpu = (ticks_after - ticks_before) as f64 / ticks_per_second / elapsed.as_secs_f64() * 100.0;
    let expected = tags as f64 * (window_end - window_start) as f64 / 1000.0;
    let opcua_load = if nodes > 0 {
        format!(" + {} OPC UA value changes/s on {nodes} nodes (asyncua)", bench.opcua_changes)
    } else {
        String::new()
    };
    let mut report = format!(
        "## Edge gateway load: {} Modbus TCP devices x {} registers, polled once a second ({} registers/s){opcua_load}, {} s\n\n| measure | value |\n|---|---|\n",
        bench.devices, bench.registers, tags, bench.seconds
    );
    let _ = writeln!(report, "| gateway CPU | {cpu:.1}% of one core |");
    let _ =
        writeln!(report, "| gateway RSS (now / peak) | {:.1} / {:.1} MiB |", rss as f64 / 1024.0, peak as f64 / 1024.0);
    let _ =
        writeln!(report, "| Modbus readings at the hub in the window | {received} (expected about {expected:.0}) |");
    if nodes > 0 {
        let seconds = (window_end - window_start) as f64 / 1000.0;
        let _ = writeln!(
            report,
            "| OPC UA value changes at the hub in the window | {changes} ({:.0}/s; asked of the server: {}/s) |",
            changes as f64 / seconds,
            bench.opcua_changes
        );
        let _ = writeln!(report, "| OPC UA changes missed (gaps in each node's count) | {missed} |");
    }
    Ok(report)
}
