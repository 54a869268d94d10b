//! The whole path from machines to the hub: pymodbus's server (a PLC), a JSON sensor
//! (`mosquitto_pub`) and a pysparkplug edge node through Mosquitto -> `treaty edge`
//! (poll/subscribe, filter, spool, uplink) -> `treaty serve`; then the hub is killed and
//! restarted while the gateway keeps polling, and what was read meanwhile arrives
//! afterwards.

use super::{Server, http_post, run, text, treaty};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PUMP: &str = "acme/plant-1/line-1/p-101";
pub(super) const ADMIN: &str = "trt_edge-test-admin-token-0123456789abcdef";

/// A child process killed when the test ends, even by a failed assertion (so no peer
/// outlives its test holding ports or pipes).
pub(super) struct Kill(pub(super) Child);

impl std::ops::Deref for Kill {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Kill {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn modbus_server(port: u16) -> Kill {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../edge/tests/peers/modbus_server.py");
    let child =
        Command::new("python3").arg(script).arg(port.to_string()).stderr(Stdio::null()).spawn().expect("python3");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "pymodbus did not start: `pip install pymodbus==3.16.1` (.ci/run does)");
        std::thread::sleep(Duration::from_millis(100));
    }
    Kill(child)
}

/// A Mosquitto broker of the test's own on `port` (killed when the test ends).
pub(super) fn mosquitto(dir: &std::path::Path, port: u16) -> Kill {
    let config = dir.join("mosquitto.conf");
    std::fs::write(&config, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"))
        .expect("conf");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto (apt-get install mosquitto; .ci/run does)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Kill(child)
}

/// The asyncua OPC UA server (P-103's controller), commanded on stdin.
fn opcua_server(port: u16) -> Kill {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../edge/tests/peers/opcua_server.py");
    let child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with asyncua");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the asyncua server did not start: `pip install asyncua==2.1.0` (.ci/run does)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Kill(child)
}

/// A pysparkplug edge node (group `plant-1`, node `line-1-edge`) with one device whose
/// temperature metric starts at 55.5; commanded on stdin.
fn sparkplug_node(mqtt_port: u16, device: &str, metric: &str) -> Kill {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../edge/tests/peers/sparkplug_node.py");
    Kill(
        Command::new("python3")
            .args([script, &mqtt_port.to_string(), "plant-1", "line-1-edge", device, metric, "55.5"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with pysparkplug"),
    )
}

/// Sends one command line to a peer driven on stdin.
pub(super) fn tell(peer: &mut Kill, command: &str) {
    use std::io::Write as _;
    let stdin = peer.stdin.as_mut().expect("stdin");
    writeln!(stdin, "{command}").and_then(|()| stdin.flush()).expect("command the peer");
}

fn latest(server: &Server) -> serde_json::Value {
    latest_of(server, PUMP)
}

pub(super) fn latest_of(server: &Server, asset: &str) -> serde_json::Value {
    let (status, body) = server.get(&format!("/api/v1/telemetry/latest?asset={asset}"), ADMIN);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

pub(super) fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_plc_feeds_the_hub_through_the_gateway_and_an_outage_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("hub");
    let data = data.to_str().expect("utf-8");
    let bind = format!("127.0.0.1:{}", free_port());
    let mut hub = Server::start_on(data, Some(ADMIN), true, &bind);
    let created =
        run(&["token", "create", "--role", "device", "--name", "gw", "--asset", "acme/plant-1", "--data-dir", data]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let device_token = text(&created.stdout).trim().to_owned();
    let modbus_port = free_port();
    let mut plc = modbus_server(modbus_port);
    let mqtt_port = free_port();
    let mut broker = mosquitto(dir.path(), mqtt_port);
    let health_port = free_port();
    let opcua_port = free_port();
    let mut controller = opcua_server(opcua_port);

    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/edge.toml")).expect("example");
    let edge_file = dir.path().join("edge.toml");
    let config = example
        .replace("http://127.0.0.1:8080", &format!("http://{bind}"))
        .replace("127.0.0.1:5020", &format!("127.0.0.1:{modbus_port}"))
        .replace("mqtt://127.0.0.1:1883", &format!("mqtt://127.0.0.1:{mqtt_port}"))
        .replace("opc.tcp://127.0.0.1:4840/", &format!("opc.tcp://127.0.0.1:{opcua_port}/"))
        .replace("./treaty-edge-spool", &dir.path().join("spool").display().to_string())
        .replace("interval_ms = 1000", "interval_ms = 200")
        .replace("batch_ms = 1000", "batch_ms = 200")
        .replace(
            "batch_ms = 200\n",
            &format!("batch_ms = 200\nfield_writes = true\nhealth = \"127.0.0.1:{health_port}\"\n"),
        )
        .replace(
            "timeout_ms = 1000\n",
            "timeout_ms = 1000\n\n[[modbus.writable]]\ntable = \"coil\"\naddress = 5\nmin = 0\nmax = 1\n",
        )
        + "\n[[interlock]]\nname = \"stop on heat\"\nasset = \"acme/plant-1/line-1/p-101\"\nsignal = \"bearing_temperature\"\nabove = 40.0\nfor_ms = 400\ndevice = \"p-101-plc\"\ntable = \"coil\"\naddress = 5\nvalue = 1\n";
    std::fs::write(&edge_file, config).expect("write edge file");
    let edge_path = edge_file.to_str().expect("utf-8");
    let fleet = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.toml");
    let checked = run(&["check-config", edge_path, "--fleet", fleet]);
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    let mut gateway = Kill(
        treaty()
            .args(["edge", "--config", edge_path, "--fleet", fleet])
            .env("TREATY_DEVICE_TOKEN", &device_token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn treaty edge"),
    );

    // Every tag arrives, decoded, scaled and in range.
    wait_for("the gateway's first samples", || latest(&hub)["signals"]["running"]["value"] == 1.0);
    let signals = latest(&hub)["signals"].clone();
    assert_eq!(signals["bearing_temperature"]["value"], 42.0);
    assert_eq!(signals["flow"]["value"], 123.45);
    assert_eq!(signals["discharge_pressure"]["value"], 7.75);

    // The interlock (42 degC > 40 for 400 ms) switched coil 5 on, once, and logged it.
    let audit = dir.path().join("spool").join("interlock-audit.jsonl");
    wait_for("the interlock's write", || std::fs::read_to_string(&audit).is_ok_and(|t| t.contains("written")));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line"))
        .collect();
    assert_eq!(lines.len(), 1, "one write per excursion: {lines:?}");
    assert_eq!((lines[0]["address"].as_u64(), lines[0]["value"].as_f64()), (Some(5), Some(1.0)));
    let coil = edge::modbus::Tag {
        asset: PUMP.into(),
        signal: "stop".into(),
        table: edge::modbus::Table::Coil,
        address: 5,
        data_type: edge::modbus::DataType::Bool,
        order: edge::modbus::Order::Abcd,
        bit: None,
        scale: 1.0,
        offset: 0.0,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let address = format!("127.0.0.1:{modbus_port}").parse().expect("address");
    let read = runtime.block_on(edge::modbus::Device::new(address, 1, Duration::from_secs(2), vec![coil]).poll(0));
    assert_eq!(read[0].1.value, 1.0, "the PLC's coil 5 was written: {read:?}");
    // ... and reported into the hub's audit trail.
    wait_for("the interlock in the hub's audit trail", || {
        let (_, body) = hub.get("/api/v1/audit?limit=1000", ADMIN);
        body.contains("device.interlock")
    });

    // P-103's OPC UA controller (asyncua): its values arrive through the subscription.
    const P103: &str = "acme/plant-1/line-1/p-103";
    wait_for("the OPC UA values at the hub", || {
        let signals = latest_of(&hub, P103)["signals"].clone();
        signals["bearing_temperature"]["value"] == 20.0 && signals["running"]["value"] == 1.0
    });
    tell(&mut controller, "set Temperature 47.5");
    wait_for("an OPC UA value change at the hub", || {
        latest_of(&hub, P103)["signals"]["bearing_temperature"]["value"] == 47.5
    });
    // A JSON vibration sensor on P-101, published by Mosquitto's own client.
    wait_for("the JSON sensor's reading at the hub", || {
        let published = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &mqtt_port.to_string(), "-q", "1"])
            .args(["-t", "acme/plant-1/p-101/vibration", "-m", &format!("{{\"ts\": {}, \"rms\": 4.25}}", now_ms())])
            .status()
            .expect("mosquitto_pub (apt-get install mosquitto-clients)");
        assert!(published.success());
        latest(&hub)["signals"]["bearing_vibration_rms"]["value"] == 4.25
    });
    // A Sparkplug B edge node (pysparkplug) for P-102: birth, then data by alias.
    let mut node = sparkplug_node(mqtt_port, "p-102", "Bearing/Temperature");
    const P102: &str = "acme/plant-1/line-1/p-102";
    wait_for("the Sparkplug birth at the hub", || {
        latest_of(&hub, P102)["signals"]["bearing_temperature"]["value"] == 55.5
    });
    tell(&mut node, "data 61.25");
    wait_for("the Sparkplug data at the hub", || {
        latest_of(&hub, P102)["signals"]["bearing_temperature"]["value"] == 61.25
    });
    let _ = node.kill();
    let _ = node.wait();
    // The gateway's loopback health endpoint sees both sources and the uplink.
    let health = || -> serde_json::Value {
        use std::io::{Read as _, Write as _};
        let mut stream = TcpStream::connect(("127.0.0.1", health_port)).expect("health endpoint");
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("reply");
        serde_json::from_str(reply.split_once("\r\n\r\n").map_or("", |(_, b)| b)).expect("health JSON")
    };
    // Sources report their counters about once a second.
    wait_for("the sources' counters in the health report", || {
        let now = health();
        now["opcua"]["p-103-controller"]["value_changes"].as_u64() >= Some(3)
            && now["mqtt"]["plant-broker"]["sparkplug"]["births"].as_u64() >= Some(2)
    });
    let health = health();
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["modbus"]["p-101-plc"]["requests"].as_u64() > Some(0), "{health}");
    assert!(health["mqtt"]["plant-broker"]["connection"]["messages"].as_u64() >= Some(2), "{health}");
    assert!(health["mqtt"]["plant-broker"]["sparkplug"]["births"].as_u64() >= Some(2), "{health}");
    assert!(health["opcua"]["p-103-controller"]["value_changes"].as_u64() >= Some(3), "{health}");
    assert!(health["uplink"]["delivered_batches"].as_u64() > Some(0), "{health}");

    // The hub dies; the gateway keeps reading the PLC into its spool.
    hub.child.kill().expect("SIGKILL the hub");
    let _ = hub.child.wait();
    let outage_start = now_ms();
    std::thread::sleep(Duration::from_secs(3));
    let outage_end = now_ms();
    let hub = Server::start_on(data, Some(ADMIN), false, &bind);
    // `running` is read every 200 ms and sent unfiltered: the outage's readings arrive.
    let during = || {
        let path = format!("/api/v1/telemetry/range?asset={PUMP}&signal=running&from={outage_start}&to={outage_end}");
        let (status, body) = hub.get(&path, ADMIN);
        assert_eq!(status, 200, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("json");
        body["samples"]["timestamps"].as_array().map_or(0, Vec::len)
    };
    wait_for("the samples read during the outage", || during() >= 10);
    // They were replayed marked historical (the hub counts them; live views tell them apart).
    let historical = || {
        let (status, body) = hub.get("/metrics", ADMIN);
        assert_eq!(status, 200, "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix("treaty_telemetry_historical_samples_stored_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    wait_for("historical samples at the hub", || historical() >= 10.0);
    // Once the backlog is gone, fresh data is live again: the latest `running` is recent.
    wait_for("live data after the replay", || {
        latest(&hub)["signals"]["running"]["timestamp"].as_i64().is_some_and(|t| t > outage_end)
    });
    let _ = gateway.kill();
    let _ = gateway.wait();
    let _ = plc.kill();
    let _ = plc.wait();
    let _ = broker.kill();
    let _ = broker.wait();
    let _ = controller.kill();
    let _ = controller.wait();
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// GET over HTTPS with curl, trusting `ca`.
fn curl_get(address: &str, path: &str, ca: &std::path::Path) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--cacert"])
        .arg(ca)
        .args(["-H", &format!("Authorization: Bearer {ADMIN}"), &format!("https://{address}{path}")])
        .output()
        .expect("curl (apt-get install curl)");
    assert!(out.status.success(), "curl: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn the_gateway_reaches_an_https_hub_it_trusts_and_only_that() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).expect("mkdir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../edge/tests/peers/make_certs.sh");
    assert!(Command::new("bash").arg(script).arg(&certs).status().expect("bash").success(), "openssl");
    let data = dir.path().join("hub");
    let data = data.to_str().expect("utf-8");
    let (cert, key) = (certs.join("server.pem"), certs.join("server.key"));
    let tls = ["--tls-cert", cert.to_str().expect("utf-8"), "--tls-key", key.to_str().expect("utf-8")];
    let mut hub = Server::start_args(data, Some(ADMIN), true, "127.0.0.1:0", &tls);
    // Plain HTTP on the TLS port gets no answer.
    let (status, _) = http_post(&hub.address, "/api/v1/telemetry", ADMIN, "{}").unwrap_or((0, String::new()));
    assert_eq!(status, 0, "plain HTTP must not be served on the HTTPS port");
    let created =
        run(&["token", "create", "--role", "device", "--name", "gw", "--asset", "acme/plant-1", "--data-dir", data]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let device_token = text(&created.stdout).trim().to_owned();
    let modbus_port = free_port();
    let mut plc = modbus_server(modbus_port);
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/edge.toml")).expect("example");
    let fleet = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.toml");
    let gateway = |name: &str, ca: &str| {
        let edge_file = dir.path().join(format!("{name}.toml"));
        let config = example
            .replace(
                "hub = \"http://127.0.0.1:8080\"",
                &format!("hub = \"https://{}\"\nhub_ca_file = \"{}\"", hub.address, certs.join(ca).display()),
            )
            .replace("127.0.0.1:5020", &format!("127.0.0.1:{modbus_port}"))
            .replace("mqtt://127.0.0.1:1883", &format!("mqtt://127.0.0.1:{}", free_port()))
            .replace("./treaty-edge-spool", &dir.path().join(name).display().to_string())
            .replace("interval_ms = 1000", "interval_ms = 200")
            .replace("batch_ms = 1000", "batch_ms = 200");
        std::fs::write(&edge_file, config).expect("write edge file");
        Kill(
            treaty()
                .args(["edge", "--config", edge_file.to_str().expect("utf-8"), "--fleet", fleet])
                .env("TREATY_DEVICE_TOKEN", &device_token)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn treaty edge"),
        )
    };
    let path = format!("/api/v1/telemetry/latest?asset={PUMP}");
    // A gateway that trusts another authority never hands its data to this hub.
    let mut untrusting = gateway("untrusting", "other.pem");
    std::thread::sleep(Duration::from_secs(3));
    let latest = curl_get(&hub.address, &path, &certs.join("ca.pem"));
    assert!(latest["signals"]["running"].is_null(), "an untrusted hub got data: {latest}");
    let _ = untrusting.kill();
    let _ = untrusting.wait();
    // The one that trusts the hub's CA delivers over HTTPS.
    let mut trusting = gateway("trusting", "ca.pem");
    wait_for("samples over HTTPS", || {
        curl_get(&hub.address, &path, &certs.join("ca.pem"))["signals"]["running"]["value"] == 1.0
    });
    let _ = trusting.kill();
    let _ = trusting.wait();
    let _ = plc.kill();
    let _ = plc.wait();
    let _ = hub.child.kill();
    let _ = hub.child.wait();
}

#[test]
fn the_hub_is_a_sparkplug_host_application() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mqtt_port = free_port();
    let _broker = mosquitto(dir.path(), mqtt_port);
    let data = dir.path().join("hub");
    let data = data.to_str().expect("utf-8");
    let broker_url = format!("mqtt://127.0.0.1:{mqtt_port}");
    let binding = ["--sparkplug-node", "plant-1/line-1-edge=acme/plant-1/line-1"];
    // Deny by default: a host without any node binding does not start.
    let unbound = treaty()
        .args(["serve", "--data-dir", &format!("{data}-unbound"), "--bind", "127.0.0.1:0"])
        .args(["--sparkplug-broker", &broker_url])
        .env("TREATY_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("run");
    assert!(!unbound.status.success());
    assert!(text(&unbound.stderr).contains("--sparkplug-node"), "{}", text(&unbound.stderr));
    let hub = Server::start_args(
        data,
        Some(ADMIN),
        true,
        "127.0.0.1:0",
        &[&["--sparkplug-broker", &broker_url][..], &binding].concat(),
    );
    // The host announces itself with a retained STATE message.
    let state = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &mqtt_port.to_string(),
            "-t",
            "spBv1.0/STATE/treaty-hub",
            "-C",
            "1",
            "-W",
            "20",
        ])
        .output()
        .expect("mosquitto_sub (package mosquitto-clients)");
    let state = text(&state.stdout);
    assert!(state.contains("\"online\":true"), "STATE: {state}");
    // The node is bound to line 1 of plant 1: a device elsewhere is refused.
    let mut outsider = sparkplug_node(mqtt_port, "lakeshore:north-plant:high-lift:hl-1", "bearing_temperature");
    wait_for("the refusal of an unbound device", || {
        let (_, metrics) = hub.get("/metrics", ADMIN);
        metrics.lines().any(|l| l.starts_with("treaty_sparkplug_unbound_metrics_total ") && !l.ends_with(" 0"))
    });
    let _ = outsider.kill();
    let _ = outsider.wait();
    assert!(
        latest_of(&hub, "lakeshore/north-plant/high-lift/hl-1")["signals"].as_object().is_none_or(|s| s.is_empty()),
        "nothing of the unbound device is stored"
    );
    // A pysparkplug node whose device is P-102 (asset id with `/` written as `:`).
    let mut node = sparkplug_node(mqtt_port, "acme:plant-1:line-1:p-102", "bearing_temperature");
    const P102: &str = "acme/plant-1/line-1/p-102";
    wait_for("the DBIRTH value at the hub", || {
        latest_of(&hub, P102)["signals"]["bearing_temperature"]["value"] == 55.5
    });
    tell(&mut node, "data 61.25");
    wait_for("DDATA by alias at the hub", || latest_of(&hub, P102)["signals"]["bearing_temperature"]["value"] == 61.25);
    // The node dies without DISCONNECT: the broker's NDEATH makes the signal stale (bad).
    let _ = node.kill();
    let _ = node.wait();
    wait_for("staleness after NDEATH", || {
        let quality = latest_of(&hub, P102)["signals"]["bearing_temperature"]["quality"].as_u64().unwrap_or(0);
        quality >> 30 == 2 && (quality >> 16) & 0x3fff == 0x008A
    });
}

/// The gateway as a Sparkplug B edge node: pymodbus -> `treaty edge` ([uplink]) ->
/// Mosquitto -> `treaty serve --sparkplug-broker`; an independent host (pysparkplug)
/// decodes the same births; while the hub is down (its STATE offline) the node holds
/// its data and replays it, marked historical, when the hub is back. (Without
/// `primary_host` the readings of the outage are lost: checked by hand.)
#[test]
fn the_gateway_publishes_as_a_sparkplug_edge_node_and_holds_data_while_the_host_is_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mqtt_port = free_port();
    let _broker = mosquitto(dir.path(), mqtt_port);
    let data = dir.path().join("hub");
    let data = data.to_str().expect("utf-8");
    let broker_url = format!("mqtt://127.0.0.1:{mqtt_port}");
    let bind = format!("127.0.0.1:{}", free_port());
    let sparkplug_args =
        ["--sparkplug-broker", broker_url.as_str(), "--sparkplug-node", "plant-1/gw-sp=acme/plant-1/line-1"];
    let mut hub = Server::start_args(data, Some(ADMIN), true, &bind, &sparkplug_args);
    let modbus_port = free_port();
    let _plc = modbus_server(modbus_port);
    let edge_file = dir.path().join("edge.toml");
    std::fs::write(
        &edge_file,
        format!(
            "[gateway]\nid = \"gw-sp\"\nhub = \"http://{bind}\"\nspool_dir = \"{}\"\nbatch_ms = 200\n\n\
             [uplink]\nbroker = \"{broker_url}\"\ngroup = \"plant-1\"\nnode = \"gw-sp\"\nprimary_host = \"treaty-hub\"\n\n\
             [[modbus]]\nname = \"p-101-plc\"\naddress = \"127.0.0.1:{modbus_port}\"\n\n[[modbus.poll]]\ninterval_ms = 200\n\n\
             [[modbus.poll.tag]]\nasset = \"{PUMP}\"\nsignal = \"bearing_temperature\"\ntable = \"holding\"\naddress = 0\ndata_type = \"u16\"\n",
            dir.path().join("spool").display()
        ),
    )
    .expect("edge file");
    let edge_path = edge_file.to_str().expect("utf-8");
    let fleet = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.toml");
    let checked = run(&["check-config", edge_path, "--fleet", fleet]);
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    let _gateway = Kill(
        treaty()
            .args(["edge", "--config", edge_path, "--fleet", fleet])
            .env("TREATY_DEVICE_TOKEN", "trt_not-used-by-a-sparkplug-uplink-0123456789")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn treaty edge"),
    );
    wait_for("the PLC's value at the hub via Sparkplug", || {
        latest(&hub)["signals"]["bearing_temperature"]["value"] == 42.0
    });
    // An independent host decodes the node's births after asking for a rebirth.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../sim/tests/peers/sim_client.py");
    let out = Command::new("python3")
        .args([script, "sparkplug", &mqtt_port.to_string(), "plant-1", "gw-sp", "2"])
        .output()
        .expect("python3");
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let birth = seen["messages"].as_array().and_then(|m| m.iter().find(|m| m["type"] == "DBIRTH")).cloned();
    let birth = birth.unwrap_or_else(|| panic!("no DBIRTH decoded by pysparkplug: {seen} {}", text(&out.stderr)));
    assert_eq!(birth["device"], "acme:plant-1:line-1:p-101");
    assert_eq!(birth["metrics"]["bearing_temperature"], 42.0);
    // The hub goes away (its will says offline): the node holds what it reads.
    hub.child.kill().expect("SIGKILL the hub");
    hub.child.wait().expect("reap");
    let down = now_ms();
    std::thread::sleep(Duration::from_secs(3));
    let up = now_ms();
    let hub = Server::start_args(data, Some(ADMIN), false, &bind, &sparkplug_args);
    let from = down + 500;
    let to = up - 500;
    let path = format!("/api/v1/telemetry/range?asset={PUMP}&signal=bearing_temperature&from={from}&to={to}");
    wait_for("the readings taken while the hub was down", || {
        let (status, body) = hub.get(&path, ADMIN);
        status == 200
            && serde_json::from_str::<serde_json::Value>(&body)
                .is_ok_and(|r| r["samples"]["values"].as_array().is_some_and(|v| v.len() >= 8))
    });
}

/// The Sparkplug host when the hub's disk is full: data messages are QoS 0, so what the
/// host received must not be lost when it cannot be stored. The host keeps it, says its
/// STATE is offline (so that edge nodes buffer), and once there is room stores what it
/// kept and says online again.
#[test]
fn the_sparkplug_host_keeps_what_it_cannot_store_and_says_offline_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = super::small_disk::SmallDisk::mount(&dir.path().join("disk"), "48m");
    let mqtt_port = free_port();
    let _broker = mosquitto(dir.path(), mqtt_port);
    let data = disk.0.join("hub");
    let data = data.to_str().expect("utf-8");
    let broker_url = format!("mqtt://127.0.0.1:{mqtt_port}");
    let args =
        ["--sparkplug-broker", broker_url.as_str(), "--sparkplug-node", "plant-1/line-1-edge=acme/plant-1/line-1"];
    let hub = Server::start_args(data, Some(ADMIN), true, "127.0.0.1:0", &args);
    let state = || {
        let out = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &mqtt_port.to_string(),
                "-t",
                "spBv1.0/STATE/treaty-hub",
                "-C",
                "1",
                "-W",
                "5",
            ])
            .output()
            .expect("mosquitto_sub");
        text(&out.stdout)
    };
    const P102: &str = "acme/plant-1/line-1/p-102";
    let mut node = sparkplug_node(mqtt_port, "acme:plant-1:line-1:p-102", "bearing_temperature");
    wait_for("the DBIRTH value at the hub", || {
        latest_of(&hub, P102)["signals"]["bearing_temperature"]["value"] == 55.5
    });
    let filler = disk.fill(0);
    // Small messages may still fit in the WAL's last page: send new values until the
    // host says it cannot store them.
    let mut last = 60.0;
    wait_for("the host saying offline while it cannot store", || {
        last += 0.25;
        tell(&mut node, &format!("data {last}"));
        state().contains("\"online\":false")
    });
    let stored = latest_of(&hub, P102)["signals"]["bearing_temperature"]["value"].as_f64();
    assert_ne!(stored, Some(last), "the last value sent could not have been stored yet");
    std::fs::remove_file(filler).expect("free the disk");
    wait_for("what the host kept, stored", || {
        latest_of(&hub, P102)["signals"]["bearing_temperature"]["value"].as_f64() == Some(last)
    });
    wait_for("the host online again", || state().contains("\"online\":true"));
    let _ = node.kill();
    let _ = node.wait();
}
