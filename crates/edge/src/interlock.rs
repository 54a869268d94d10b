//! Interlocks at run time: a rule armed in a source's pipeline watches its signal's raw
//! samples and, once per excursion that lasts `for_ms`, asks its device's writer for a
//! write. One writer task per written device, with its own Modbus connection (a poll in
//! progress never delays a write); every write is appended with its result and latency
//! to `<spool_dir>/interlock-audit.jsonl` and reported to the hub's audit trail.

use crate::config::{EdgeFile, Interlock};
use crate::modbus::Table;
use crate::report::Report;
use model::sample::{Sample, SeriesKey};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Why the interlock writers could not start.
#[derive(Debug, thiserror::Error)]
pub enum InterlockError {
    #[error("bad device address {0}")]
    DeviceAddress(String),
}

/// Why a write did not happen; its text is the audit log's `result`.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("cannot connect")]
    Connect,
    #[error("Modbus exception {0:?}")]
    Exception(tokio_modbus::ExceptionCode),
    #[error("{0}")]
    Transport(tokio_modbus::Error),
    #[error("timed out")]
    Timeout,
}

/// A write an interlock asks for, and when its trigger was observed.
struct WriteCommand {
    rule: String,
    asset: String,
    table: Table,
    address: u16,
    value: f64,
    sample_ts: i64,
    observed: Instant,
}

/// The writer of each device some interlock writes to, by device name.
#[derive(Default)]
pub struct Writers {
    by_device: HashMap<String, mpsc::Sender<WriteCommand>>,
}

impl Writers {
    /// Starts one writer per device an interlock of `edge` writes to (a checked edge
    /// file names only `[[modbus]]` devices).
    pub fn start(edge: &EdgeFile, report: &Report) -> Result<Self, InterlockError> {
        let audit = edge.gateway.spool_dir.join("interlock-audit.jsonl");
        let mut by_device = HashMap::new();
        for rule in &edge.interlocks {
            let rule = rule.get_ref();
            if by_device.contains_key(&rule.device) {
                continue;
            }
            let Some(device) = edge.modbus.iter().find(|d| d.name == rule.device) else { continue };
            let address: SocketAddr =
                device.address.parse().map_err(|_| InterlockError::DeviceAddress(device.address.clone()))?;
            let (send, receive) = mpsc::channel(64);
            let target = Device {
                name: device.name.clone(),
                address,
                unit: device.unit,
                timeout: Duration::from_millis(device.timeout_ms),
            };
            tokio::spawn(writer(target, receive, audit.clone(), report.clone()));
            by_device.insert(rule.device.clone(), send);
        }
        Ok(Self { by_device })
    }

    /// The rule, armed with its device's writer; `None` when nothing writes to it.
    pub(crate) fn arm(&self, rule: &Interlock) -> Option<Armed> {
        let writer = self.by_device.get(&rule.device)?.clone();
        Some(Armed { rule: rule.clone(), writer, since: None, fired: false })
    }
}

/// An interlock rule in a source's pipeline, with its excursion state.
pub(crate) struct Armed {
    rule: Interlock,
    writer: mpsc::Sender<WriteCommand>,
    /// When the current excursion began (sample time).
    since: Option<i64>,
    /// Whether this excursion has already written.
    fired: bool,
}

impl Armed {
    pub(crate) async fn check(&mut self, polled: &[(SeriesKey, Sample)], observed: Instant) {
        for (key, sample) in polled {
            if key.asset != self.rule.asset || key.signal != self.rule.signal || !sample.quality.is_good() {
                continue;
            }
            if !self.rule.tripped(sample.value) {
                (self.since, self.fired) = (None, false);
                continue;
            }
            let since = *self.since.get_or_insert(sample.ts);
            if !self.fired && sample.ts.saturating_sub(since) >= self.rule.for_ms as i64 {
                self.fired = true;
                let command = WriteCommand {
                    rule: self.rule.name.clone(),
                    asset: self.rule.asset.clone(),
                    table: self.rule.table,
                    address: self.rule.address,
                    value: self.rule.value,
                    sample_ts: sample.ts,
                    observed,
                };
                if self.writer.send(command).await.is_err() {
                    tracing::error!(interlock = %self.rule.name, "the interlock writer has stopped");
                }
            }
        }
    }
}

/// The device a writer writes to.
struct Device {
    name: String,
    address: SocketAddr,
    unit: u8,
    timeout: Duration,
}

/// Performs interlock writes on one device over its own connection, and logs each one
/// (result and the time from the triggering sample's poll to the write's reply) to the
/// local audit file.
async fn writer(device: Device, mut commands: mpsc::Receiver<WriteCommand>, audit: PathBuf, report: Report) {
    let mut context: Option<tokio_modbus::client::Context> = None;
    while let Some(command) = commands.recv().await {
        if context.is_none() {
            context = tokio::time::timeout(
                device.timeout,
                tokio_modbus::client::tcp::connect_slave(device.address, tokio_modbus::Slave(device.unit)),
            )
            .await
            .ok()
            .and_then(Result::ok);
        }
        let result = match context.as_mut() {
            None => Err(WriteError::Connect),
            Some(ctx) => write(ctx, &command, device.timeout).await,
        };
        if result.is_err() {
            context = None;
        }
        let latency_ms = command.observed.elapsed().as_secs_f64() * 1000.0;
        let line = serde_json::json!({
            "at": model::Timestamp::now().0, "interlock": command.rule, "device": device.name, "table": format!("{:?}", command.table).to_lowercase(),
            "address": command.address, "value": command.value, "trigger_sample_ts": command.sample_ts,
            "latency_ms": latency_ms, "result": result.as_ref().map_or_else(ToString::to_string, |()| "written".to_owned()),
        });
        match &result {
            Ok(()) => {
                tracing::warn!(interlock = %command.rule, device = %device.name, address = command.address, value = command.value, latency_ms, "interlock wrote to the machine")
            }
            Err(error) => {
                tracing::error!(interlock = %command.rule, device = %device.name, %error, "interlock write failed")
            }
        }
        let event = format!("{}/interlock/{}/{}", report.gateway, command.rule, command.sample_ts);
        let (reporter, asset, details) = (report.clone(), command.asset.clone(), line.clone());
        tokio::spawn(async move { reporter.event(event, "interlock", Some(asset), details).await });
        let path = audit.clone();
        let _ = tokio::task::spawn_blocking(move || append(&path, &line)).await;
    }
}

/// One write, within `timeout`.
async fn write(
    ctx: &mut tokio_modbus::client::Context,
    command: &WriteCommand,
    timeout: Duration,
) -> Result<(), WriteError> {
    use tokio_modbus::client::Writer;
    let write = async {
        match command.table {
            Table::Coil => ctx.write_single_coil(command.address, command.value != 0.0).await,
            _ => ctx.write_single_register(command.address, command.value as u16).await,
        }
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(code))) => Err(WriteError::Exception(code)),
        Ok(Err(error)) => Err(WriteError::Transport(error)),
        Err(_) => Err(WriteError::Timeout),
    }
}

/// Appends one line to the audit log, durably.
fn append(path: &std::path::Path, line: &serde_json::Value) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(file, "{line}")?;
    file.sync_data()
}
