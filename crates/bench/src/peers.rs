//! The peers, installed from Debian's packages and run on loopback with their own
//! import APIs: VictoriaMetrics (JSON import and line protocol), InfluxDB 1.6 (line
//! protocol) and PostgreSQL with ThingsBoard's one-row-per-sample `ts_kv` table (COPY).

use crate::treaty_hub::{join, post_all};
use anyhow::{Context, bail};
use model::sample::{Sample, SeriesKey};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A peer server process, stopped when dropped.
pub struct Server {
    child: Child,
    pub dir: PathBuf,
    pub address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_ready(address: &str, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(mut client) = crate::http::Client::connect(address)
            && let Ok((status, _)) = client.request("GET", path, &[], b"")
            && status < 500
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{address}{path} did not become ready")
}

fn fresh(dir: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    Ok(())
}

pub fn victoria_metrics(dir: &Path) -> anyhow::Result<Server> {
    fresh(dir)?;
    let address = format!("127.0.0.1:{}", free_port()?);
    let child = Command::new("victoria-metrics")
        .args([
            format!("-storageDataPath={}", dir.display()),
            format!("-httpListenAddr={address}"),
            "-retentionPeriod=100y".into(),
            "-loggerLevel=ERROR".into(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting victoria-metrics (apt-get install victoria-metrics)")?;
    let server = Server { child, dir: dir.to_owned(), address };
    wait_ready(&server.address, "/health")?;
    Ok(server)
}

/// Makes VictoriaMetrics write and merge everything it buffered, then lets merges settle.
/// Its merges run in the background for minutes after a large import; they would take
/// CPU from whatever is measured next, so this waits until the process is idle.
pub fn victoria_metrics_settle(server: &Server) -> anyhow::Result<()> {
    let mut client = crate::http::Client::connect(&server.address)?;
    client.request("GET", "/internal/force_flush", &[], b"")?;
    client.request("GET", "/internal/force_merge", &[], b"")?;
    std::thread::sleep(Duration::from_secs(5));
    client.request("GET", "/internal/force_flush", &[], b"")?;
    server.wait_idle(Duration::from_secs(900))
}

/// CPU time a process has used, in clock ticks (utime + stime of /proc/<pid>/stat).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).context("reading /proc/<pid>/stat");
    Ok(field(11)? + field(12)?)
}

/// Waits until process `pid` uses less than 5% of a core over two seconds (at most
/// `limit`; a process still busy then is measured busy, and says so in the log).
pub(crate) fn wait_idle(pid: u32, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut before = cpu_ticks(pid)?;
    while started.elapsed() < limit {
        std::thread::sleep(Duration::from_secs(2));
        let now = cpu_ticks(pid)?;
        // Clock ticks are 1/100 s on Linux: 10 ticks in 2 s is 5% of a core.
        if now - before < 10 {
            tracing::info!(seconds = started.elapsed().as_secs(), pid, "process idle");
            return Ok(());
        }
        before = now;
    }
    tracing::warn!(seconds = limit.as_secs(), pid, "process still busy; measuring anyway");
    Ok(())
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the peer is idle (see `wait_idle`).
    pub fn wait_idle(&self, limit: Duration) -> anyhow::Result<()> {
        wait_idle(self.child.id(), limit)
    }
}

/// VictoriaMetrics' JSON line import: one line per series with its columns.
pub fn vm_json_body(batch: &[(SeriesKey, Vec<Sample>)]) -> Vec<u8> {
    let mut out = String::new();
    for (key, samples) in batch {
        out.push_str(&format!(
            "{{\"metric\":{{\"__name__\":\"{}\",\"asset\":\"{}\"}},\"values\":[",
            key.signal, key.asset
        ));
        join(&mut out, samples.iter().map(|s| s.value.to_string()));
        out.push_str("],\"timestamps\":[");
        join(&mut out, samples.iter().map(|s| s.ts.to_string()));
        out.push_str("]}\n");
    }
    out.into_bytes()
}

pub fn vm_ingest(server: &Server, path: &str, bodies: &[Vec<u8>], threads: usize) -> anyhow::Result<Duration> {
    post_all(&server.address, path, &[], bodies, threads, |status, _| status == 204 || status == 200)
}

pub fn influxdb(dir: &Path) -> anyhow::Result<Server> {
    fresh(dir)?;
    let port = free_port()?;
    let config = dir.join("influxdb.conf");
    let text = format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:{}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  \
         cache-snapshot-write-cold-duration = \"1s\"\n  compact-full-write-cold-duration = \"1s\"\n  query-log-enabled = false\n  index-version = \"inmem\"\n\
         [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n  max-body-size = 0\n[monitor]\n  store-enabled = false\n",
        free_port()?,
        d = dir.display()
    );
    std::fs::write(&config, text)?;
    let child = Command::new("influxd")
        .args(["run", "-config", &config.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting influxd (apt-get install influxdb)")?;
    let server = Server { child, dir: dir.to_owned(), address: format!("127.0.0.1:{port}") };
    wait_ready(&server.address, "/ping")?;
    let mut client = crate::http::Client::connect(&server.address)?;
    let (status, body) = client.request("POST", "/query?q=CREATE%20DATABASE%20bench", &[], b"")?;
    anyhow::ensure!(status == 200, "influxdb create database: {status} {}", String::from_utf8_lossy(&body));
    Ok(server)
}

pub fn influx_ingest(server: &Server, bodies: &[Vec<u8>], threads: usize) -> anyhow::Result<Duration> {
    post_all(&server.address, "/write?db=bench&precision=ms", &[], bodies, threads, |status, _| status == 204)
}

/// Waits for InfluxDB to snapshot its cache and compact (cold durations are 1 s).
pub fn influx_settle() {
    std::thread::sleep(Duration::from_secs(20));
}

/// PostgreSQL connection arguments for `psql` (from `TREATY_BENCH_PG`, default the local server).
fn psql() -> Command {
    let url = std::env::var("TREATY_BENCH_PG").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into());
    let mut command = Command::new("psql");
    command.args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-X"]);
    command
}

fn psql_run(sql: &str) -> anyhow::Result<String> {
    let output = psql().args(["-A", "-t", "-c", sql]).output().context("running psql")?;
    anyhow::ensure!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Recreates ThingsBoard's `ts_kv` table as `bench_ts_kv`.
pub fn postgres_reset() -> anyhow::Result<()> {
    psql_run(
        "DROP TABLE IF EXISTS bench_ts_kv; CREATE TABLE bench_ts_kv (entity_id uuid NOT NULL, key int NOT NULL, ts bigint NOT NULL, \
         bool_v boolean, str_v varchar(10000000), long_v bigint, dbl_v double precision, json_v json, \
         CONSTRAINT bench_ts_kv_pkey PRIMARY KEY (entity_id, key, ts));",
    )
    .map(drop)
}

/// CSV rows for COPY: entity uuid from the asset, key number from the signal.
pub fn postgres_csv(batch: &[(SeriesKey, Vec<Sample>)]) -> Vec<u8> {
    let mut out = String::new();
    for (key, samples) in batch {
        let digits: String = key.asset.chars().filter(char::is_ascii_digit).collect();
        let entity = format!("00000000-0000-0000-0000-{:0>12}", digits);
        let signal: String = key.signal.chars().filter(char::is_ascii_digit).collect();
        for s in samples {
            out.push_str(&format!("{entity},{signal},{},,,,{},\n", s.ts, s.value));
        }
    }
    out.into_bytes()
}

/// Streams the bodies through `threads` parallel `COPY ... FROM STDIN` sessions.
pub fn postgres_ingest(bodies: &[Vec<u8>], threads: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || -> anyhow::Result<()> {
                    let mut child = psql()
                        .args(["-c", "\\copy bench_ts_kv FROM STDIN WITH (FORMAT csv)"])
                        .stdin(Stdio::piped())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .context("running psql")?;
                    let mut stdin = child.stdin.take().context("psql stdin")?;
                    for body in bodies.iter().skip(t).step_by(threads) {
                        stdin.write_all(body)?;
                    }
                    drop(stdin);
                    let output = child.wait_with_output()?;
                    anyhow::ensure!(
                        output.status.success(),
                        "COPY failed: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| anyhow::anyhow!("copy thread panicked"))?)
    })?;
    Ok(start.elapsed())
}

/// Table plus index bytes of `bench_ts_kv`.
pub fn postgres_bytes() -> anyhow::Result<u64> {
    psql_run("VACUUM ANALYZE bench_ts_kv")?;
    psql_run("SELECT pg_total_relation_size('bench_ts_kv')")?.parse().context("parsing relation size")
}

/// Starts the pymodbus test server (`crates/edge/tests/peers/modbus_server.py`) on
/// `count` ports from `port` and waits until every one accepts connections.
pub fn pymodbus(script: &std::path::Path, port: u16, count: usize) -> anyhow::Result<std::process::Child> {
    use anyhow::Context;
    let mut server = std::process::Command::new("python3")
        .arg(script)
        .args([port.to_string(), count.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting pymodbus (pip install pymodbus==3.16.1)")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while (0..count).any(|d| std::net::TcpStream::connect(("127.0.0.1", port + d as u16)).is_err()) {
        if std::time::Instant::now() > deadline {
            let _ = server.kill();
            anyhow::bail!("pymodbus did not open {count} port(s) from {port}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(server)
}
