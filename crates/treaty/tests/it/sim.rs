//! `treaty sim` against clients nobody here wrote (pymodbus, asyncua, pysparkplug,
//! mosquitto_sub), and `treaty sim` + `treaty edge` + `treaty serve`: the whole example
//! fleet reaches the hub over every protocol, and a coil write stops a machine.

use super::edge::{ADMIN, Kill, free_port, latest_of, mosquitto, wait_for};
use super::{Server, run, text, treaty};
use std::path::Path;
use std::process::{Command, Stdio};

const PUMP: &str = "acme/plant-1/line-1/p-101";
const VMC: &str = "meridian/stuttgart/machining-a/vmc-01";
const COMPRESSOR: &str = "acme/plant-2/aeration/c-301";
const ENGINE: &str = "skyways/lhr-base/narrowbody/esn-894101";

fn fleet() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.toml")
}

/// `treaty sim` on free ports with its broker, ground truth and PKI in `dir`; waits
/// for the edge file it writes.
fn simulator(dir: &Path, mqtt_port: u16, speed: &str, only: &[&str]) -> (Kill, String) {
    let edge_file = dir.join("sim-edge.toml");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");
    let mut command = treaty();
    command
        .args(["sim", "--fleet", fleet(), "--data-dir", data, "--speed", speed, "--seed", "42"])
        .args(["--modbus-port", "0", "--opcua-port", "0", "--broker", &format!("mqtt://127.0.0.1:{mqtt_port}")])
        .arg("--truth")
        .arg(dir.join("truth.jsonl"))
        .arg("--pki-dir")
        .arg(dir.join("sim-pki"))
        .arg("--write-edge-config")
        .arg(&edge_file);
    for prefix in only {
        command.args(["--only", prefix]);
    }
    let child =
        Kill(command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("treaty sim"));
    wait_for("the simulator's edge file", || edge_file.exists());
    // Written in one go once every server listens; read it when complete.
    std::thread::sleep(std::time::Duration::from_millis(300));
    (child, std::fs::read_to_string(&edge_file).expect("edge file"))
}

/// The value of `key = "..."` in the table that follows `marker` in an edge file.
fn field_after(edge_file: &str, marker: &str, key: &str) -> String {
    let at = edge_file.find(marker).unwrap_or_else(|| panic!("{marker} not in:\n{edge_file}"));
    let line = edge_file[at..].lines().find(|l| l.starts_with(&format!("{key} = "))).expect("field");
    line.split('"').nth(1).expect("quoted").to_owned()
}

fn client(args: &[&str]) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../sim/tests/peers/sim_client.py");
    let out = Command::new("python3").arg(script).args(args).output().expect("python3");
    assert!(out.status.success(), "sim_client {args:?}: {}", text(&out.stderr));
    serde_json::from_str(text(&out.stdout).trim()).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[test]
fn the_simulator_answers_clients_nobody_here_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mqtt_port = free_port();
    let _broker = mosquitto(dir.path(), mqtt_port);
    let (_sim, edge_file) = simulator(dir.path(), mqtt_port, "60", &[PUMP, VMC, COMPRESSOR, ENGINE]);
    let modbus_port: String =
        field_after(&edge_file, "name = \"p-101\"", "address").rsplit(':').next().expect("port").into();
    let endpoint = field_after(&edge_file, "name = \"vmc-01\"", "endpoint");

    // pymodbus: the pump's nine values (six signals, three counters) as f32 pairs.
    let read = client(&["modbus", &modbus_port, "18"]);
    let values: Vec<f64> = read["values"].as_array().expect("values").iter().filter_map(|v| v.as_f64()).collect();
    assert_eq!(values.len(), 9, "{read}");
    let (flow, running, run_hours) = (values[3], values[5], values[6]);
    assert!((100.0..450.0).contains(&flow), "flow {flow} m3/h: {read}");
    assert_eq!(running, 1.0);
    assert!(run_hours > 1000.0, "a pump in the field has history: {run_hours} h");
    assert_eq!(read["beyond_is_error"], true, "reads beyond the map get a Modbus exception");
    // Coil 0 is the run command: writing 0 stops the pump.
    assert_eq!(client(&["coil", &modbus_port, "0"])["ok"], true);
    wait_for("the pump to stop", || client(&["inputs", &modbus_port])["running"] == false);
    let stopped = client(&["modbus", &modbus_port, "18"]);
    assert_eq!(stopped["values"][3], 0.0, "a stopped pump delivers no flow: {stopped}");

    // asyncua: the machining centre's address space, values, and its Run node.
    let browsed = client(&["opcua-browse", &endpoint, "vmc-01"]);
    let children: Vec<&str> =
        browsed["children"].as_array().expect("children").iter().filter_map(|c| c.as_str()).collect();
    for name in ["spindle_speed", "spindle_temperature", "spindle_vibration", "cycles", "Run"] {
        assert!(children.contains(&name), "{name} missing: {children:?}");
    }
    let ns = browsed["namespace"].as_u64().expect("namespace");
    let temperature = client(&["opcua", &endpoint, &format!("ns={ns};s=spindle_temperature")]);
    let t = temperature["values"][0].as_f64().expect("a number");
    assert!((5.0..80.0).contains(&t), "spindle temperature {t}");
    assert_eq!(client(&["opcua-write", &endpoint, &format!("ns={ns};s=Run"), "false"])["ok"], true);
    wait_for("the machining centre to stop", || {
        client(&["opcua", &endpoint, &format!("ns={ns};s=spindle_speed")])["values"][0] == 0.0
    });

    // mosquitto_sub: the compressor's JSON.
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &mqtt_port.to_string(), "-t", &format!("treaty-sim/{COMPRESSOR}")])
        .args(["-C", "1", "-W", "30"])
        .output()
        .expect("mosquitto_sub");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON payload");
    assert!(json["ts"].as_i64().is_some_and(|ts| (ts - super::edge::now_ms()).abs() < 60_000), "{json}");
    assert!(json["discharge_pressure"].as_f64().is_some_and(|p| (5.0..11.0).contains(&p)), "{json}");

    // pysparkplug: a rebirth request answered with births naming every metric, then data.
    let seen = client(&["sparkplug", &mqtt_port.to_string(), "treaty-sim", "skyways:lhr-base", "3"]);
    let messages = seen["messages"].as_array().expect("messages");
    let birth = messages.iter().find(|m| m["type"] == "DBIRTH").unwrap_or_else(|| panic!("no DBIRTH: {seen}"));
    assert_eq!(birth["device"], "skyways:lhr-base:narrowbody:esn-894101");
    let t50 = birth["metrics"]["T50"].as_f64().expect("T50 in the birth");
    assert!((1350.0..1450.0).contains(&t50), "T50 {t50} degR is a C-MAPSS value");

    // The ground truth: every machine's schedule, and both stops with who caused them.
    let truth = std::fs::read_to_string(dir.path().join("truth.jsonl")).expect("truth");
    let lines: Vec<serde_json::Value> = truth.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    for asset in [PUMP, VMC, COMPRESSOR, ENGINE] {
        assert!(lines.iter().any(|l| l["asset"] == asset && l["event"] == "failure_scheduled"), "{asset}: {truth}");
    }
    assert!(
        lines.iter().any(|l| l["asset"] == PUMP && l["event"] == "stop_commanded" && l["detail"] == "Modbus coil 0")
    );
    assert!(
        lines.iter().any(|l| l["asset"] == VMC && l["event"] == "stop_commanded" && l["detail"] == "OPC UA node Run")
    );
    let engine = lines.iter().find(|l| l["asset"] == ENGINE).expect("engine");
    assert_eq!(engine["cause"], "cmapss", "{engine}");
}

#[test]
fn sim_and_edge_feed_the_whole_example_fleet_to_the_hub() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("hub");
    let data = data.to_str().expect("utf-8");
    let bind = format!("127.0.0.1:{}", free_port());
    let hub = Server::start_on(data, Some(ADMIN), true, &bind);
    let mut args = vec!["token", "create", "--role", "device", "--name", "sim gateway", "--data-dir", data];
    for customer in ["acme", "lakeshore", "meridian", "skyways"] {
        args.extend(["--asset", customer]);
    }
    let created = run(&args);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let device_token = text(&created.stdout).trim().to_owned();
    let mqtt_port = free_port();
    let _broker = mosquitto(dir.path(), mqtt_port);
    // One simulated day per minute.
    let (mut sim, edge_file) = simulator(dir.path(), mqtt_port, "1440", &[]);
    let edge_path = dir.path().join("edge.toml");
    let spool = dir.path().join("spool").display().to_string();
    let edge_file =
        edge_file.replace("http://127.0.0.1:8080", &format!("http://{bind}")).replace("./treaty-edge-spool", &spool);
    std::fs::write(&edge_path, &edge_file).expect("write");
    let edge_path = edge_path.to_str().expect("utf-8");
    let checked = run(&["check-config", edge_path, "--fleet", fleet()]);
    assert!(checked.status.success(), "the written edge file must pass check-config: {}", text(&checked.stderr));
    assert!(text(&checked.stdout).contains("10 OPC UA server(s)"), "{}", text(&checked.stdout));
    let _gateway = Kill(
        treaty()
            .args(["edge", "--config", edge_path, "--fleet", fleet()])
            .env("TREATY_DEVICE_TOKEN", &device_token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("treaty edge"),
    );
    let assets: Vec<String> = edge_file
        .lines()
        .filter_map(|l| l.strip_prefix("asset = \""))
        .map(|a| a.trim_end_matches('"').to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(assets.len(), 48, "every asset of the example fleet is simulated");
    // Every asset's every signal reaches the hub, over whichever protocol it speaks.
    wait_for("every asset at the hub", || {
        assets.iter().all(|asset| latest_of(&hub, asset)["signals"].as_object().is_some_and(|s| s.len() >= 5))
    });
    for asset in [PUMP, VMC, COMPRESSOR, ENGINE] {
        let signals = latest_of(&hub, asset)["signals"].clone();
        let good = signals.as_object().expect("signals").values().filter(|s| s["quality"] == 0).count();
        assert!(good >= 5, "{asset}: {signals}");
    }
    // Accelerated time: the pump's run-hour counter advances a day per minute.
    let hours = |hub: &Server| latest_of(hub, PUMP)["signals"]["run_hours"]["value"].as_f64().unwrap_or(0.0);
    let before = hours(&hub);
    wait_for("run hours to advance by simulated time", || hours(&hub) > before + 2.0);
    // A stop on the simulator's command line reaches the hub as `running = 0`.
    super::edge::tell(&mut sim, &format!("stop {PUMP}"));
    wait_for("the stopped pump at the hub", || latest_of(&hub, PUMP)["signals"]["running"]["value"] == 0.0);
}
