//! The MQTT adapter against Mosquitto (a broker of its own per test, so it can be killed)
//! with peers nobody here wrote: `mosquitto_pub` for JSON sensors, a pysparkplug edge
//! node (`tests/peers/sparkplug_node.py`) for Sparkplug B, and a TLS listener with
//! certificates made by `openssl`.

use edge::config::MqttBroker;
use edge::mqtt::Source;
use edge::source::SourceContext;
use model::sample::{Sample, SeriesKey, Severity};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A Mosquitto broker on its own port, killed when dropped.
struct Broker {
    child: Child,
    config: std::path::PathBuf,
}

impl Broker {
    fn start(dir: &Path, port: u16, tls: Option<&Path>) -> Self {
        Self::start_with(dir, port, tls, None)
    }

    /// With `users`, only those (name, password) may connect.
    fn start_with(dir: &Path, port: u16, tls: Option<&Path>, users: Option<&[(&str, &str)]>) -> Self {
        let config = dir.join(format!("mosquitto-{port}.conf"));
        let mut text = format!("listener {port} 127.0.0.1\npersistence false\n");
        match users {
            None => text += "allow_anonymous true\n",
            Some(users) => {
                let file = dir.join(format!("passwd-{port}"));
                for (i, (user, password)) in users.iter().enumerate() {
                    let mut command = Command::new("mosquitto_passwd");
                    if i == 0 {
                        command.arg("-c");
                    }
                    let status = command.arg("-b").arg(&file).args([user, password]).status();
                    assert!(status.expect("mosquitto_passwd (package mosquitto)").success(), "mosquitto_passwd");
                }
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
                let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644));
                text += &format!("allow_anonymous false\npassword_file {}\n", file.display());
            }
        }
        if let Some(certs) = tls {
            text += &format!("cafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n", certs.display());
        }
        std::fs::write(&config, text).expect("write config");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (apt-get install mosquitto mosquitto-clients; .ci/run does)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, config }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.config);
    }
}

fn broker_config(text: &str) -> MqttBroker {
    toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the adapter; samples arrive on the returned channel.
fn subscribe(broker: &MqttBroker) -> (mpsc::Receiver<Vec<(SeriesKey, Sample)>>, watch::Sender<bool>) {
    let source = Source::new(broker).unwrap_or_else(|e| panic!("{e}"));
    let (send, receive) = mpsc::channel(1024);
    let (stop, stopped) = watch::channel(false);
    let mut ctx = SourceContext::for_test(send, stopped);
    // A client id of its own (`<gateway>-<broker name>`), as two adapters may share a broker.
    ctx.gateway = format!("test-{}", free_port());
    tokio::spawn(edge::mqtt::run(source, ctx));
    (receive, stop)
}

/// Waits (up to 20 s) for a sample of `signal` that satisfies `want`; returns it.
async fn expect(
    samples: &mut mpsc::Receiver<Vec<(SeriesKey, Sample)>>,
    signal: &str,
    what: &str,
    want: impl Fn(&Sample) -> bool,
) -> Sample {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let batch = tokio::time::timeout_at(deadline, samples.recv())
            .await
            .unwrap_or_else(|_| panic!("no {signal} sample with {what} within 20 s"))
            .expect("the adapter stopped");
        if let Some((_, sample)) = batch.into_iter().find(|(k, s)| k.signal == signal && want(s)) {
            return sample;
        }
    }
}

fn publish(port: u16, topic: &str, payload: &str, tls: Option<&Path>) {
    let mut command = Command::new("mosquitto_pub");
    command.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", topic, "-m", payload]);
    if let Some(certs) = tls {
        command.arg("--cafile").arg(certs.join("ca.pem"));
    }
    let status = command.status().expect("mosquitto_pub must be installed (package mosquitto-clients)");
    assert!(status.success(), "mosquitto_pub failed");
}

const JSON_SENSOR: &str = r#"
name = "sensors"
broker = "mqtt://127.0.0.1:PORT"
[[json]]
topic = "acme/+/vibration"
asset = "acme/plant-1/line-1/p-101"
timestamp = "/ts"
[[json.tag]]
pointer = "/rms"
signal = "vibration"
scale = 0.001
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_sensors_through_mosquitto_and_a_broker_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut broker = Broker::start(dir.path(), port, None);
    let (mut samples, _stop) = subscribe(&broker_config(&JSON_SENSOR.replace("PORT", &port.to_string())));
    // Keep publishing until the adapter has subscribed and sees one.
    let seen = async {
        loop {
            publish(port, "acme/p-101/vibration", r#"{"ts": 1795311501123, "rms": 2500}"#, None);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let sample = tokio::select! {
        s = expect(&mut samples, "vibration", "a good value", |s| s.quality.is_good()) => s,
        _ = seen => unreachable!(),
    };
    assert_eq!((sample.ts, sample.value), (1_795_311_501_123, 2.5));
    publish(port, "acme/p-101/vibration", "not json {", None);
    let bad = expect(&mut samples, "vibration", "bad quality", |s| !s.quality.is_good()).await;
    assert_eq!(bad.quality.severity(), Severity::Bad);
    // The broker dies: the signal goes bad (not connected) at once, not silently stale.
    broker.kill();
    let lost = expect(&mut samples, "vibration", "bad quality", |s| !s.quality.is_good()).await;
    assert_eq!(lost.quality.sub_code(), 0x008A, "Bad_NotConnected");
    // It comes back on the same port: the adapter reconnects and subscribes again.
    let _broker = Broker::start(dir.path(), port, None);
    let again = async {
        loop {
            publish(port, "acme/p-102/vibration", r#"{"ts": "2026-11-22T01:38:22Z", "rms": 3000}"#, None);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let sample = tokio::select! {
        s = expect(&mut samples, "vibration", "a good value after the restart", |s| s.quality.is_good()) => s,
        _ = again => unreachable!(),
    };
    assert_eq!((sample.ts, sample.value), (1_795_311_502_000, 3.0));
}

/// The pysparkplug edge node, driven line by line.
struct Node {
    child: Child,
    stdin: ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Node {
    fn start(port: u16) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/sparkplug_node.py");
        let mut child = Command::new("python3")
            .args([script, &port.to_string(), "plant-1", "edge-7", "p-101"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 must be installed");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let mut node = Self { child, stdin, lines };
        node.wait_for("ready");
        node
    }

    fn wait_for(&mut self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(got) if got == line => return,
                Ok(_) => {}
                Err(_) => {
                    panic!("the Sparkplug node did not print `{line}` (pip install pysparkplug==0.6.1; .ci/run does)")
                }
            }
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write to the node");
        self.stdin.flush().expect("flush");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SPARKPLUG: &str = r#"
name = "scada"
broker = "mqtt://127.0.0.1:PORT"
host_id = "treaty-test"
[[sparkplug]]
group = "plant-1"
node = "edge-7"
device = "p-101"
asset = "acme/plant-1/line-1/p-101"
[[sparkplug.tag]]
metric = "Temp"
signal = "temperature"
offset = -273.15
[[sparkplug.tag]]
metric = "Speed"
signal = "speed"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pysparkplug_node_births_gaps_garbage_and_death() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = Broker::start(dir.path(), port, None);
    let (mut samples, _stop) = subscribe(&broker_config(&SPARKPLUG.replace("PORT", &port.to_string())));
    // Give the adapter time to subscribe; if it still misses the births, the node's data
    // makes it ask for a rebirth, which is what a host does.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut node = Node::start(port);
    // Births carry names, aliases and data types; Int16 -5 arrives signed.
    let speed = expect(&mut samples, "speed", "the birth value", |s| s.quality.is_good()).await;
    assert_eq!(speed.value, -5.0);
    // Data by alias only, without data types.
    node.send("data 310.5");
    node.wait_for("ok");
    let temp = expect(&mut samples, "temperature", "the DDATA value", |s| (s.value - 37.35).abs() < 1e-9).await;
    assert!(temp.quality.is_good());
    // A sequence gap: the value is used and the node is asked to rebirth, and does.
    node.send("gap 320");
    node.wait_for("ok");
    expect(&mut samples, "temperature", "the value after the gap", |s| (s.value - 46.85).abs() < 1e-9).await;
    node.wait_for("rebirth-requested");
    node.wait_for("reborn");
    expect(&mut samples, "speed", "the rebirth's value", |s| s.value == -5.0).await;
    node.send("data 330");
    node.wait_for("ok");
    expect(&mut samples, "temperature", "data after the rebirth", |s| (s.value - 56.85).abs() < 1e-9).await;
    // A payload that is not protobuf: bad quality (decoding error), no crash.
    node.send("garbage");
    node.wait_for("ok");
    let bad = expect(&mut samples, "temperature", "bad quality", |s| !s.quality.is_good()).await;
    assert_eq!(bad.quality.sub_code(), 0x0007, "Bad_DecodingError");
    // The node dies without DISCONNECT: the broker publishes its NDEATH will, and the
    // node's signals go bad (not connected).
    node.send("die");
    let dead = expect(&mut samples, "speed", "bad quality after NDEATH", |s| !s.quality.is_good()).await;
    assert_eq!(dead.quality.sub_code(), 0x008A, "Bad_NotConnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_with_passwords_takes_only_the_right_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = Broker::start_with(dir.path(), port, None, Some(&[("gateway", "right-one"), ("sensor", "s3nsor")]));
    let password = dir.path().join("gateway.password");
    let config = |secret: &str| {
        std::fs::write(&password, format!("{secret}\n")).expect("password file");
        let text = JSON_SENSOR.replace("PORT", &port.to_string()).replace(
            "name = \"sensors\"",
            &format!("name = \"sensors\"\nusername = \"gateway\"\npassword_file = \"{}\"", password.display()),
        );
        broker_config(&text)
    };
    // The source reads the password when it is built.
    let (mut refused, _stop_refused) = subscribe(&config("wrong"));
    let (mut samples, _stop) = subscribe(&config("right-one"));
    let feed = async {
        loop {
            let status = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-u", "sensor", "-P", "s3nsor"])
                .args(["-t", "acme/p-101/vibration", "-m", r#"{"ts": 1795311501123, "rms": 500}"#])
                .status()
                .expect("mosquitto_pub");
            assert!(status.success(), "the sensor's own credentials work");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let sample = tokio::select! {
        s = expect(&mut samples, "vibration", "a value with the right password", |s| s.quality.is_good()) => s,
        _ = feed => unreachable!(),
    };
    assert_eq!(sample.value, 0.5);
    assert!(refused.try_recv().is_err(), "a wrong password must not subscribe");
}

/// A CA and a server certificate for 127.0.0.1 (`tests/peers/make_certs.sh`).
fn certificates(dir: &Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/make_certs.sh");
    let status = Command::new("bash").arg(script).arg(dir).status().expect("bash");
    assert!(status.success(), "making certificates needs openssl (apt-get install openssl)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_broker_trusts_only_the_given_authority() {
    let dir = tempfile::tempdir().expect("tempdir");
    certificates(dir.path());
    let port = free_port();
    let _broker = Broker::start(dir.path(), port, Some(dir.path()));
    let config = |ca: &str| {
        let text = JSON_SENSOR.replace(
            "mqtt://127.0.0.1:PORT",
            &format!("mqtts://127.0.0.1:{port}\"\nca_file = \"{}", dir.path().join(ca).display()),
        );
        broker_config(&text)
    };
    // Trusting another authority: the adapter never gets a sample.
    let (mut untrusted, _stop_untrusted) = subscribe(&config("other.pem"));
    let (mut samples, _stop) = subscribe(&config("ca.pem"));
    let feed = async {
        loop {
            publish(port, "acme/p-101/vibration", r#"{"ts": 1795311501123, "rms": 1000}"#, Some(dir.path()));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let sample = tokio::select! {
        s = expect(&mut samples, "vibration", "a value over TLS", |s| s.quality.is_good()) => s,
        _ = feed => unreachable!(),
    };
    assert_eq!(sample.value, 1.0);
    assert!(untrusted.try_recv().is_err(), "a broker whose certificate the CA did not sign must not be trusted");
    // A CA file that is not PEM is refused with its name.
    std::fs::write(dir.path().join("junk.pem"), "junk").expect("write");
    let error = Source::new(&config("junk.pem")).err().expect("junk CA refused").to_string();
    assert!(error.contains("junk.pem") && error.contains("no PEM certificate"), "{error}");
}
