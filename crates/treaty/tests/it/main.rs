//! End-to-end tests of the `treaty` binary: the commands a new user runs, as processes.

mod edge;
mod layering;
mod sim;
#[path = "../../../../tests/support/small_disk.rs"]
mod small_disk;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn treaty() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_treaty"));
    command.env_remove("TREATY_ADMIN_TOKEN").env_remove("TREATY_DATA_DIR").env("TREATY_LOG", "warn");
    command
}

fn example() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.toml").to_owned()
}

fn run(args: &[&str]) -> Output {
    treaty().args(args).output().expect("run treaty")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn audit_len(dir: &Path) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("records.db")).expect("open");
    conn.query_row("SELECT count(*) FROM audit", [], |r| r.get(0)).expect("count")
}

#[test]
fn check_config_accepts_the_example_and_lists_every_problem_otherwise() {
    let ok = run(&["check-config", &example()]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("ok (415 records)") || text(&ok.stdout).contains(": ok ("));

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    let source = std::fs::read_to_string(example())
        .expect("read example")
        .replacen("[[customer]]", "[[customer]]\nfavourite_colour = \"blue\"", 1)
        .replacen("model = \"cp200\"", "model = \"cp-200\"", 1);
    std::fs::write(&bad, source).expect("write");
    let out = run(&["check-config", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let located: Vec<&str> = stderr.lines().filter(|l| l.contains("bad.toml:")).collect();
    assert_eq!(located.len(), 2, "{stderr}");
    assert!(located[0].contains("unknown field `favourite_colour`"), "{stderr}");
    assert!(
        located[1].contains(".model: refers to asset_model `cp-200`") && located[1].contains("did you mean `cp200`?"),
        "{stderr}"
    );
    assert!(stderr.contains("2 problems found; nothing was applied"));
    let missing = run(&["check-config", "/no/such/fleet.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("cannot read the file"));
}

#[test]
fn import_is_idempotent_applies_differences_and_refuses_bad_files_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let first = run(&["import", &example(), "--data-dir", data]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("applied: created 415, updated 0, deleted 0"), "{}", text(&first.stdout));
    let entries = audit_len(Path::new(data));

    let again = run(&["import", &example(), "--data-dir", data]);
    assert!(text(&again.stdout).contains("already up to date (415 records unchanged)"), "{}", text(&again.stdout));
    assert_eq!(audit_len(Path::new(data)), entries, "re-import must not write");

    // Rename one technician and remove one user: exactly that difference is applied.
    let source = std::fs::read_to_string(example()).expect("read");
    let tech_name = source
        .lines()
        .skip_while(|l| !l.starts_with("[[technician]]"))
        .find(|l| l.starts_with("name = "))
        .expect("tech name")
        .to_owned();
    let changed_source = source.replacen(&tech_name, "name = \"Renamed Technician\"", 1);
    let user_start = changed_source.rfind("[[user]]").expect("a user");
    let changed_source = changed_source[..user_start].to_owned();
    let changed = dir.path().join("changed.toml");
    std::fs::write(&changed, &changed_source).expect("write");
    let dry = run(&["import", changed.to_str().expect("utf-8"), "--data-dir", data, "--dry-run"]);
    assert!(text(&dry.stdout).contains("dry run: would create 0, update 1, delete 1"), "{}", text(&dry.stdout));
    assert_eq!(audit_len(Path::new(data)), entries, "dry run must not write");
    let applied = run(&["import", changed.to_str().expect("utf-8"), "--data-dir", data]);
    assert!(
        text(&applied.stdout).contains("applied: created 0, updated 1, deleted 1; 413 unchanged"),
        "{}",
        text(&applied.stdout)
    );
    assert_eq!(audit_len(Path::new(data)), entries + 2);

    // A file with one problem changes nothing at all.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, format!("{source}\n[[customer]]\nid = \"new\"\n")).expect("write");
    let refused = run(&["import", broken.to_str().expect("utf-8"), "--data-dir", data]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("missing field `name`"), "{}", text(&refused.stderr));
    assert_eq!(audit_len(Path::new(data)), entries + 2);

    let verify = run(&["audit", "verify", "--data-dir", data]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    let conn = rusqlite::Connection::open(Path::new(data).join("records.db")).expect("open");
    conn.execute_batch("DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'mallory' WHERE seq = 10;")
        .expect("tamper");
    let tampered = run(&["audit", "verify", "--data-dir", data]);
    assert_eq!(tampered.status.code(), Some(3));
    assert!(text(&tampered.stderr).contains("entry 10 was modified"), "{}", text(&tampered.stderr));
}

/// A running `treaty serve` on an ephemeral port.
struct Server {
    child: Child,
    address: String,
    /// Receives every `trt_` line the server prints on stdout.
    token_reader: std::sync::mpsc::Receiver<String>,
}

impl Server {
    fn start(data: &str, env_token: Option<&str>) -> Server {
        Self::start_with(data, env_token, true)
    }

    fn start_with(data: &str, env_token: Option<&str>, import: bool) -> Server {
        Self::start_on(data, env_token, import, "127.0.0.1:0")
    }

    fn start_on(data: &str, env_token: Option<&str>, import: bool, bind: &str) -> Server {
        Self::start_args(data, env_token, import, bind, &[])
    }

    fn start_args(data: &str, env_token: Option<&str>, import: bool, bind: &str, extra: &[&str]) -> Server {
        let mut command = treaty();
        command.args(["serve", "--data-dir", data, "--bind", bind]).args(extra);
        if import {
            command.args(["--import", &example()]);
        }
        if let Some(token) = env_token {
            command.env("TREATY_ADMIN_TOKEN", token);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let (token_sender, token_reader) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("trt_") {
                    let _ = token_sender.send(line);
                }
                // Keep draining so that the server never writes into a closed pipe.
            }
        });
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut address = None;
        let mut seen = String::new();
        let mut line = String::new();
        while address.is_none() && Instant::now() < deadline {
            line.clear();
            if stderr.read_line(&mut line).expect("read stderr") == 0 {
                break;
            }
            seen.push_str(&line);
            if let Some(rest) =
                line.strip_prefix("Treaty is serving on http://").or(line.strip_prefix("Treaty is serving on https://"))
            {
                address = rest.split_whitespace().next().map(str::to_owned);
            }
        }
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let address = address.unwrap_or_else(|| panic!("the server did not report its address; it said:\n{seen}"));
        Server { child, address, token_reader }
    }

    /// The admin token printed on first start.
    fn printed_token(&self) -> Option<String> {
        self.token_reader.recv_timeout(Duration::from_secs(30)).ok()
    }

    fn get(&self, path: &str, token: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.address).expect("connect");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: treaty\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }
}

/// A server a test forgets (or that outlives a failed assertion) does not linger.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 POST with a JSON body over a fresh connection.
fn http_post(address: &str, path: &str, token: &str, body: &str) -> std::io::Result<(u16, String)> {
    {
        let mut stream = TcpStream::connect(address)?;
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: treaty\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        Ok((status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
    }
}

impl Server {
    fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        self.child.wait().expect("wait")
    }
}

#[test]
fn serve_bootstraps_an_admin_once_and_shuts_down_gracefully() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    let server = Server::start(data, None);
    let admin = server.printed_token().expect("first start prints an admin token");
    let (status, body) = server.get("/api/v1/whoami", &admin);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"role\":\"admin\""), "{body}");
    let (status, _) = server.get("/api/v1/assets", "trt_wrong_wrong_wrong_wrong_wrong_wrong");
    assert_eq!(status, 401);
    // The CLI writes to the same data directory while the hub serves.
    let created = run(&[
        "token",
        "create",
        "--role",
        "customer-viewer",
        "--customer",
        "acme",
        "--name",
        "acme portal",
        "--data-dir",
        data,
    ]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let viewer = text(&created.stdout).trim().to_owned();
    let (status, body) = server.get("/api/v1/sites?limit=1000", &viewer);
    assert_eq!(status, 200);
    let sites: serde_json::Value = serde_json::from_str(&body).expect("json");
    let ids: Vec<&str> =
        sites["items"].as_array().expect("items").iter().filter_map(|s| s["data"]["id"].as_str()).collect();
    assert!(!ids.is_empty() && ids.iter().all(|id| id.starts_with("acme/")), "{ids:?}");
    let (status, _) = server.get("/metrics", &admin);
    assert_eq!(status, 200);
    let status = server.terminate();
    assert!(status.success(), "SIGTERM must shut down cleanly: {status}");

    // Second start: no new token printed, the old one still works.
    let server = Server::start(data, None);
    let (status, _) = server.get("/api/v1/whoami", &admin);
    assert_eq!(status, 200);
    assert_eq!(server.token_reader.try_recv().ok(), None, "a second start must not mint another token");
    assert!(server.terminate().success());
    let listed = run(&["token", "list", "--data-dir", data]);
    assert_eq!(text(&listed.stdout).lines().filter(|l| l.contains(" admin ")).count(), 1, "{}", text(&listed.stdout));
}

#[test]
fn serve_takes_the_first_admin_token_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    let chosen = "trt_operator-chosen-secret-0123456789abcdef";
    let server = Server::start(data, Some(chosen));
    assert_eq!(server.get("/api/v1/whoami", chosen).0, 200);
    assert!(server.terminate().success());
    let short = treaty()
        .args(["serve", "--data-dir", &format!("{data}/other"), "--bind", "127.0.0.1:0"])
        .env("TREATY_ADMIN_TOKEN", "short")
        .output()
        .expect("run");
    assert!(!short.status.success());
    assert!(text(&short.stderr).contains("at least 32"), "{}", text(&short.stderr));
}

#[test]
fn help_explains_the_commands() {
    let help = run(&["--help"]);
    let out = text(&help.stdout);
    for command in ["serve", "import", "check-config", "edge", "sim", "token", "audit", "bench"] {
        assert!(out.contains(command), "{out}");
    }
    let token_help = text(&run(&["token", "create", "--help"]).stdout);
    assert!(token_help.contains("--role") && token_help.contains("--customer") && token_help.contains("--data-dir"));
    let bad_role = run(&["token", "create", "--role", "overlord"]);
    assert_eq!(bad_role.status.code(), Some(2));
    assert!(text(&bad_role.stderr).contains("not a role"));
}

/// Acknowledged means durable, for the whole hub: a writer sends telemetry batches over
/// HTTP while the hub is killed with SIGKILL; after each restart every acknowledged
/// sample must be readable. Repeated several times in one run.
#[test]
fn acknowledged_telemetry_survives_sigkill_of_the_hub() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8").to_owned();
    let token = "trt_durability-test-admin-token-0123456789";
    const PER_BATCH: i64 = 1000;
    let t0 = 1_700_000_000_000_i64;
    let asset = "acme/plant-1/line-1/p-101";
    let acknowledged = Arc::new(AtomicI64::new(-1));
    for round in 0..6 {
        let server = Server::start_with(&data, Some(token), round == 0);
        let address = server.address.clone();
        let acked = acknowledged.clone();
        let writer = std::thread::spawn(move || {
            let mut n = acked.load(Ordering::SeqCst) + 1;
            loop {
                let timestamps: Vec<i64> = (0..PER_BATCH).map(|k| t0 + (n * PER_BATCH + k) * 1000).collect();
                let values: Vec<f64> = (0..PER_BATCH).map(|k| ((n * PER_BATCH + k) % 500) as f64).collect();
                let body = serde_json::json!({"batch_id": format!("b{n}"), "series": [
                    {"asset": asset, "signal": "flow", "timestamps": timestamps, "values": values}]})
                .to_string();
                match http_post(&address, "/api/v1/telemetry", token, &body) {
                    Ok((200, reply)) if reply.contains("\"stored\"") => {
                        acked.store(n, Ordering::SeqCst);
                        n += 1;
                    }
                    _ => return,
                }
            }
        });
        let target = acknowledged.load(Ordering::SeqCst) + 3 + round;
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged.load(Ordering::SeqCst) < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut server = server;
        server.child.kill().expect("SIGKILL the hub");
        server.child.wait().expect("reap");
        writer.join().expect("writer");
        let acked = acknowledged.load(Ordering::SeqCst);
        assert!(acked >= target, "round {round}: the writer made no progress");

        let server = Server::start_with(&data, Some(token), false);
        let to = t0 + (acked + 1) * PER_BATCH * 1000;
        let (status, body) =
            server.get(&format!("/api/v1/telemetry/range?asset={asset}&signal=flow&from={t0}&to={to}"), token);
        assert_eq!(status, 200, "{body}");
        let reply: serde_json::Value = serde_json::from_str(&body).expect("json");
        let values = reply["samples"]["values"].as_array().expect("values");
        assert_eq!(values.len() as i64, (acked + 1) * PER_BATCH, "round {round}: acknowledged samples were lost");
        assert!(
            values.iter().enumerate().all(|(i, v)| v.as_f64() == Some((i as i64 % 500) as f64)),
            "round {round}: wrong values"
        );
        assert!(server.terminate().success());
    }
}

/// A client on the live stream does not hold a shutdown up: SIGTERM ends the stream, the
/// hub exits within its grace period, and the last checkpoint runs (the batch ids it
/// saves are on disk).
#[test]
fn a_connected_live_stream_does_not_delay_sigterm_and_the_hub_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    let token = "trt_shutdown-test-admin-token-0123456789ab";
    let server = Server::start(data, Some(token));
    let asset = "acme/plant-1/line-1/p-101";
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let body = serde_json::json!({"batch_id": "before-shutdown", "series": [
        {"asset": asset, "signal": "flow", "timestamps": [now - 1000], "values": [5.5]}]})
    .to_string();
    let (status, reply) = http_post(&server.address, "/api/v1/telemetry", token, &body).expect("post");
    assert_eq!(status, 200, "{reply}");
    let mut stream = TcpStream::connect(&server.address).expect("connect");
    write!(
        stream,
        "GET /api/v1/telemetry/stream?asset={asset} HTTP/1.1\r\nHost: treaty\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .expect("request");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).expect("response head");
    assert_eq!(&head, b"HTTP/1.1 200", "the stream is open");
    let started = Instant::now();
    let mut server = server;
    Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().expect("kill");
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(8), "the hub is still running 8 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let batches = std::fs::read_to_string(dir.path().join("telemetry/batches.log")).expect("checkpointed batch ids");
    assert!(batches.contains("before-shutdown"), "{batches}");
}

/// A full disk, for the whole hub: telemetry is refused with 507 and a message that says
/// so (gateways keep their spool), nothing half-written stays behind, and once there is
/// room again every acknowledged batch survives a SIGKILL.
#[test]
fn a_full_disk_is_refused_with_507_and_acknowledged_telemetry_survives_sigkill() {
    let root = tempfile::tempdir().expect("tempdir");
    let disk = small_disk::SmallDisk::mount(&root.path().join("disk"), "48m");
    let data = disk.0.join("data");
    let data = data.to_str().expect("utf-8");
    let token = "trt_disk-full-test-admin-token-0123456789";
    let asset = "acme/plant-1/line-1/p-101";
    let t0 = 1_700_000_000_000_i64;
    let body = |n: i64| {
        let timestamps: Vec<i64> = (0..500).map(|k| t0 + (n * 500 + k) * 1000).collect();
        let values: Vec<f64> = (0..500).map(|k| ((n * 500 + k) % 100) as f64 / 4.0).collect();
        serde_json::json!({"batch_id": format!("b{n}"), "series": [
            {"asset": asset, "signal": "flow", "timestamps": timestamps, "values": values}]})
        .to_string()
    };
    let server = Server::start(data, Some(token));
    let mut acknowledged = Vec::new();
    let post = |n: i64| http_post(&server.address, "/api/v1/telemetry", token, &body(n)).expect("post");
    assert_eq!(post(0).0, 200);
    acknowledged.push(0);
    let filler = disk.fill(2000);
    let mut refused = 0;
    for n in 1..5 {
        let (status, reply) = post(n);
        match status {
            507 => {
                assert!(reply.contains("disk_full") && reply.contains("disk is full"), "{reply}");
                refused += 1;
            }
            200 => acknowledged.push(n),
            other => panic!("expected 507 from a full disk, got {other}: {reply}"),
        }
    }
    assert!(refused >= 3, "the disk should have been full");
    std::fs::remove_file(filler).expect("free the disk");
    for n in 5..8 {
        let (status, reply) = post(n);
        assert_eq!(status, 200, "once there is room again: {reply}");
        acknowledged.push(n);
    }
    let mut server = server;
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reap");
    let server = Server::start_with(data, Some(token), false);
    let to = t0 + 8 * 500 * 1000;
    let (status, reply) =
        server.get(&format!("/api/v1/telemetry/range?asset={asset}&signal=flow&from={t0}&to={to}"), token);
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).expect("json");
    let stored: std::collections::BTreeSet<i64> = reply["samples"]["timestamps"]
        .as_array()
        .expect("timestamps")
        .iter()
        .filter_map(|t| Some((t.as_i64()? - t0) / 1000 / 500))
        .collect();
    assert_eq!(stored.into_iter().collect::<Vec<_>>(), acknowledged, "every acknowledged batch, and only those");
    assert!(server.terminate().success());
}

/// The hub's `/metrics` passes Prometheus' own linter (`promtool check metrics`): every
/// metric has help text and a valid name, type and unit.
#[test]
fn the_metrics_pass_promtool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    let token = "trt_metrics-test-admin-token-0123456789abc";
    let server = Server::start(data, Some(token));
    // Telemetry stored and rejected, an auth failure: the counters exist.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let body = serde_json::json!({"series": [
        {"asset": "acme/plant-1/line-1/p-101", "signal": "flow", "timestamps": [now - 1000], "values": [5.5]},
        {"asset": "acme/plant-1/line-1/p-101", "signal": "no_such", "timestamps": [now - 1000], "values": [1.0]}]})
    .to_string();
    assert_eq!(http_post(&server.address, "/api/v1/telemetry", token, &body).expect("post").0, 200);
    assert_eq!(server.get("/api/v1/whoami", "trt_wrong_wrong_wrong_wrong_wrong_wrong").0, 401);
    let (status, metrics) = server.get("/metrics", token);
    assert_eq!(status, 200);
    assert!(metrics.contains("treaty_telemetry_samples_rejected_total"), "{metrics}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    promtool.stdin.take().expect("stdin").write_all(metrics.as_bytes()).expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool found problems:\n{said}\n{metrics}");
}
