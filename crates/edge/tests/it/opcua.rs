//! The OPC UA adapter against asyncua's server (`tests/peers/opcua_server.py`, an
//! independent implementation): node ids and browse paths, value types and status
//! codes, the server restarting, and a secured session (Basic256Sha256, sign and
//! encrypt, user name) whose server certificate must be trusted.

use edge::config::OpcUaServer;
use edge::source::SourceContext;
use model::sample::{Sample, SeriesKey, Severity};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The asyncua server, driven line by line.
struct Plc {
    child: Child,
    stdin: ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Plc {
    fn start(port: u16, secure: Option<(&std::path::Path, &str, &str)>) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/opcua_server.py");
        let mut command = Command::new("python3");
        command.arg(script).arg(port.to_string());
        if let Some((dir, user, password)) = secure {
            command.arg("--secure").arg(dir).args([user, password]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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
        let mut plc = Self { child, stdin, lines };
        plc.wait_for("ready");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the OPC UA server does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        plc
    }

    fn wait_for(&mut self, line: &str) {
        match self.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(got) if got == line => {}
            other => panic!(
                "the OPC UA server did not print `{line}` but {other:?} (pip install asyncua==2.1.0; .ci/run does)"
            ),
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").and_then(|()| self.stdin.flush()).expect("command the server");
        self.wait_for("ok");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Plc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn follow(text: &str) -> (Seen, watch::Sender<bool>, tempfile::TempDir) {
    let pki = tempfile::tempdir().expect("tempdir");
    let (seen, stop) = follow_with(text, pki.path());
    (seen, stop, pki)
}

/// Runs the adapter for the server in `text` with its PKI in `pki`.
fn follow_with(text: &str, pki: &std::path::Path) -> (Seen, watch::Sender<bool>) {
    super::logs();
    let mut server: OpcUaServer = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    server.pki_dir = Some(pki.to_path_buf());
    let (send, receive) = mpsc::channel(1024);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(edge::opcua::run(server, SourceContext::for_test(send, stopped)));
    (Seen::new(receive), stop)
}

/// What the adapter sent, kept across expectations (one batch may carry several).
struct Seen {
    receiver: mpsc::Receiver<Vec<(SeriesKey, Sample)>>,
    pending: std::collections::VecDeque<(SeriesKey, Sample)>,
}

impl Seen {
    fn new(receiver: mpsc::Receiver<Vec<(SeriesKey, Sample)>>) -> Self {
        Self { receiver, pending: Default::default() }
    }

    /// Waits (up to 30 s) for a sample of `signal` that satisfies `want`; earlier samples
    /// of that signal are passed over.
    async fn expect(&mut self, signal: &str, what: &str, want: impl Fn(&Sample) -> bool) -> Sample {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(at) = self.pending.iter().position(|(k, s)| k.signal == signal && want(s)) {
                let found = self.pending[at].1;
                let mut index = 0;
                self.pending.retain(|(k, _)| {
                    index += 1;
                    index > at + 1 || k.signal != signal
                });
                return found;
            }
            let batch = tokio::time::timeout_at(deadline, self.receiver.recv())
                .await
                .unwrap_or_else(|_| panic!("no {signal} sample with {what} within 30 s"))
                .expect("the adapter stopped");
            self.pending.extend(batch);
        }
    }

    fn nothing_yet(&mut self) -> bool {
        self.pending.is_empty() && self.receiver.try_recv().is_err()
    }
}

const PLAIN: &str = r#"
name = "plc"
endpoint = "opc.tcp://127.0.0.1:PORT/treaty-test"
security_mode = "none"
security_policy = "None"
allow_insecure = true
publishing_interval_ms = 100
retry_refused_ms = 500
[[node]]
node_id = "ns=2;s=Pump101.Temperature"
asset = "a"
signal = "temperature"
sampling_interval_ms = 50
[[node]]
browse_path = "2:Pump101/2:Running"
asset = "a"
signal = "running"
[[node]]
node_id = "ns=2;s=Pump101.Speed"
asset = "a"
signal = "speed"
scale = 10.0
[[node]]
node_id = "ns=2;s=Pump101.Label"
asset = "a"
signal = "label"
[[node]]
node_id = "ns=2;s=Pump101.Missing"
asset = "a"
signal = "missing"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_asyncua_nodes_statuses_and_a_restart() {
    let port = free_port();
    let mut plc = Plc::start(port, None);
    let (mut samples, _stop, _pki) = follow(&PLAIN.replace("PORT", &port.to_string()));
    // Initial values: by node id and by browse path; Int16 scaled; Boolean as 1.
    assert_eq!(samples.expect("temperature", "the initial value", |s| s.quality.is_good()).await.value, 20.0);
    assert_eq!(samples.expect("running", "the initial value", |s| s.quality.is_good()).await.value, 1.0);
    assert_eq!(samples.expect("speed", "the initial value", |s| s.quality.is_good()).await.value, -50.0);
    // A string is not a number: bad quality (type mismatch), not a crash.
    let label = samples.expect("label", "bad quality", |s| !s.quality.is_good()).await;
    assert_eq!(label.quality.sub_code(), 0x0074);
    // A node the server does not have: bad quality, until it appears (tried again).
    samples.expect("missing", "bad quality", |s| s.quality.severity() == Severity::Bad).await;
    plc.send("add Missing");
    samples.expect("missing", "the node once it exists", |s| s.value == 7.0 && s.quality.is_good()).await;
    plc.send("set Temperature 42.5");
    samples.expect("temperature", "the new value", |s| s.value == 42.5).await;
    // The server's status code becomes the sample's quality.
    plc.send("bad Temperature");
    let bad = samples.expect("temperature", "Bad_SensorFailure", |s| !s.quality.is_good()).await;
    assert_eq!((bad.quality.severity(), bad.quality.sub_code()), (Severity::Bad, 0x008C));
    // The server goes away: every node goes bad (not connected); it comes back on the
    // same port and the subscription is recreated.
    plc.kill();
    let lost = samples.expect("running", "not connected", |s| !s.quality.is_good()).await;
    assert_eq!(lost.quality.sub_code(), 0x008A, "Bad_NotConnected");
    let mut plc = Plc::start(port, None);
    samples.expect("temperature", "the value after the restart", |s| s.value == 20.0 && s.quality.is_good()).await;
    // An unchanged value read back after the outage is newer than the bad mark, so the
    // latest sample is good again.
    let back = samples.expect("running", "the value after the restart", |s| s.quality.is_good()).await;
    assert!(back.ts > lost.ts, "{} must follow the bad mark at {}", back.ts, lost.ts);
    plc.send("set Temperature 55");
    samples.expect("temperature", "a change after the restart", |s| s.value == 55.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_session_needs_the_trusted_server_and_the_right_user() {
    let port = free_port();
    let certs = tempfile::tempdir().expect("tempdir");
    let _plc = Plc::start(port, Some((certs.path(), "operator", "s3cret-pass")));
    let secure = format!(
        r#"
name = "plc"
endpoint = "opc.tcp://127.0.0.1:{port}/treaty-test"
security_mode = "sign_and_encrypt"
security_policy = "Basic256Sha256"
username = "operator"
password_file = "PASSWORD_FILE"
publishing_interval_ms = 100
[[node]]
node_id = "ns=2;s=Pump101.Temperature"
asset = "a"
signal = "temperature"
"#
    );
    let password = certs.path().join("password");
    std::fs::write(&password, "s3cret-pass\n").expect("password file");
    let secure = secure.replace("PASSWORD_FILE", &password.display().to_string());
    // The server's certificate is not trusted yet: no session, no samples.
    let (mut untrusted, stop_untrusted, pki) = follow(&secure);
    // Its certificate is put aside in pki/rejected for an operator to review.
    let rejected_dir = pki.path().join("rejected");
    let deadline = Instant::now() + Duration::from_secs(30);
    let rejected = loop {
        let found: Vec<std::path::PathBuf> = std::fs::read_dir(&rejected_dir)
            .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
            .unwrap_or_default();
        if !found.is_empty() {
            break found;
        }
        assert!(Instant::now() < deadline, "the untrusted server certificate did not land in pki/rejected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rejected.len(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(untrusted.nothing_yet(), "an untrusted server must not be read");
    let _ = stop_untrusted.send(true);
    // The operator trusts it (moves it into pki/trusted): now it works.
    let trusted = pki.path().join("trusted");
    std::fs::create_dir_all(&trusted).expect("mkdir");
    let name = rejected[0].file_name().expect("file name");
    std::fs::rename(&rejected[0], trusted.join(name)).expect("trust the server");
    // It is the certificate the server presents.
    let presented = std::fs::read(certs.path().join("server.der")).expect("server certificate");
    assert_eq!(std::fs::read(trusted.join(name)).expect("trusted"), presented);
    let (mut samples, _stop) = follow_with(&secure, pki.path());
    assert_eq!(
        samples.expect("temperature", "a value over the secure channel", |s| s.quality.is_good()).await.value,
        20.0
    );
    // With a wrong password the session is refused: no samples.
    std::fs::write(&password, "wrong").expect("password file");
    let (mut refused, _stop2) = follow_with(&secure, pki.path());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(refused.nothing_yet(), "a wrong password must not open a session");
}
