//! The edge file (`edge.toml`): the gateway, its uplink to the hub, and its devices with
//! the tag map from raw addresses to asset signals. `check` validates it against the
//! fleet (unknown asset or signal, unit mismatch, overlapping registers, percentage
//! thresholds without a span) and reports every problem with file:line:column.

use crate::filter::{Filter, FilterSpec, Threshold};
use crate::modbus::{DataType, Order, Table, Tag};
use crate::spool::Overflow;
use config::{Diagnostic, Diagnostics, line_col};
use model::{AssetModel, Entity};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use toml::Spanned;

/// A whole edge file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeFile {
    pub gateway: Gateway,
    #[serde(default)]
    pub modbus: Vec<ModbusDevice>,
    /// MQTT brokers to subscribe to (JSON sensors, Sparkplug B edge nodes).
    #[serde(default)]
    pub mqtt: Vec<Spanned<MqttBroker>>,
    /// OPC UA servers to subscribe to.
    #[serde(default)]
    pub opcua: Vec<Spanned<OpcUaServer>>,
    /// Local rules that write to a machine without the hub.
    #[serde(rename = "interlock", default)]
    pub interlocks: Vec<Spanned<Interlock>>,
    /// Send to an MQTT broker as a Sparkplug B edge node instead of HTTP to the hub.
    #[serde(default)]
    pub uplink: Option<Spanned<SparkplugUplink>>,
}

/// The gateway as a Sparkplug B edge node: everything it reads is published to a
/// broker (NBIRTH/DBIRTH with aliases, DDATA by alias), for the hub or any other
/// Sparkplug host application to consume. Same connection settings as `[[mqtt]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparkplugUplink {
    pub broker: String,
    /// Sparkplug group id.
    pub group: String,
    /// Edge node id (default: the gateway id).
    #[serde(default)]
    pub node: Option<String>,
    /// Publish only while this host application's STATE says online (Sparkplug 3.0
    /// primary host); meanwhile data stays in the spool and is replayed as historical.
    #[serde(default)]
    pub primary_host: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
}

impl SparkplugUplink {
    /// The connection settings in the shape of a `[[mqtt]]` broker (no subscriptions).
    pub fn connection(&self) -> MqttBroker {
        MqttBroker {
            name: "uplink".into(),
            broker: self.broker.clone(),
            client_id: self.client_id.clone(),
            username: self.username.clone(),
            password_env: self.password_env.clone(),
            password_file: self.password_file.clone(),
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            keep_alive_s: self.keep_alive_s,
            host_id: None,
            json: Vec::new(),
            sparkplug: Vec::new(),
        }
    }

    /// The edge node id.
    pub fn node_id<'a>(&'a self, gateway: &'a Gateway) -> &'a str {
        self.node.as_deref().unwrap_or(&gateway.id)
    }
}

impl EdgeFile {
    /// What the gateway reads, in words: `2 Modbus device(s) with 9 tag(s), 1 MQTT broker(s) with 3 tag(s)`.
    pub fn summary(&self) -> String {
        let modbus: usize = self.modbus.iter().flat_map(|d| &d.polls).map(|p| p.tags.len()).sum();
        let mqtt: usize = self
            .mqtt
            .iter()
            .map(|b| {
                let b = b.get_ref();
                b.json.iter().map(|t| t.get_ref().tags.len()).sum::<usize>()
                    + b.sparkplug.iter().map(|n| n.get_ref().tags.len()).sum::<usize>()
            })
            .sum();
        let opcua: usize = self.opcua.iter().map(|s| s.get_ref().nodes.len()).sum();
        format!(
            "{} Modbus device(s) with {modbus} tag(s), {} OPC UA server(s) with {opcua} node(s), {} MQTT broker(s) with {mqtt} tag(s)",
            self.modbus.len(),
            self.opcua.len(),
            self.mqtt.len()
        )
    }
}

/// "If `signal` of `asset` is above (or below) a limit for `for_ms`, write `value` to
/// `table`/`address` of `device`." The write happens once per excursion.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interlock {
    pub name: String,
    pub asset: String,
    pub signal: String,
    #[serde(default)]
    pub above: Option<f64>,
    #[serde(default)]
    pub below: Option<f64>,
    #[serde(default)]
    pub for_ms: u64,
    pub device: String,
    pub table: Table,
    pub address: u16,
    pub value: f64,
}

impl Interlock {
    /// Whether a value is past the limit.
    pub fn tripped(&self, value: f64) -> bool {
        self.above.is_some_and(|limit| value > limit) || self.below.is_some_and(|limit| value < limit)
    }
}

/// A register or coil that interlocks may write, and the values allowed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Writable {
    pub table: Table,
    pub address: u16,
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Names this gateway in batch ids and logs.
    pub id: String,
    /// The hub's base URL, e.g. `http://127.0.0.1:8080` or `https://hub.example.com`.
    pub hub: String,
    /// PEM file of the authorities trusted for an `https://` hub (the system's trust
    /// store when absent).
    #[serde(default)]
    pub hub_ca_file: Option<PathBuf>,
    /// Environment variable holding the gateway's device token (never the token itself).
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// Where the store-and-forward queue lives.
    pub spool_dir: PathBuf,
    #[serde(default = "default_spool_mb")]
    pub spool_max_mb: u64,
    #[serde(default)]
    pub overflow: Overflow,
    /// Samples are batched for this long before they are queued for the hub.
    #[serde(default = "default_batch_ms")]
    pub batch_ms: u64,
    /// Writes to machines (interlocks) are refused unless this is true.
    #[serde(default)]
    pub field_writes: bool,
    /// `127.0.0.1:PORT` (or `[::1]:PORT`): serve `/health` and `/metrics` there. Only
    /// loopback is allowed; the gateway opens no other port.
    #[serde(default)]
    pub health: Option<String>,
}

fn default_token_env() -> String {
    "TREATY_DEVICE_TOKEN".into()
}

fn default_spool_mb() -> u64 {
    1024
}

fn default_batch_ms() -> u64 {
    1000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusDevice {
    pub name: String,
    /// `host:port` of the Modbus TCP server.
    pub address: String,
    #[serde(default = "default_unit")]
    pub unit: u8,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(rename = "poll", default)]
    pub polls: Vec<PollGroup>,
    /// The only places of this device an interlock may write.
    #[serde(default)]
    pub writable: Vec<Writable>,
}

fn default_unit() -> u8 {
    1
}

fn default_timeout_ms() -> u64 {
    1000
}

/// Tags read together at one interval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollGroup {
    pub interval_ms: u64,
    #[serde(rename = "tag", default)]
    pub tags: Vec<Spanned<TagEntry>>,
}

/// One tag as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagEntry {
    pub asset: String,
    pub signal: String,
    pub table: Table,
    pub address: u16,
    #[serde(default)]
    pub data_type: DataType,
    #[serde(default)]
    pub order: Order,
    #[serde(default)]
    pub bit: Option<u8>,
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    /// The engineering unit after scaling; checked against the asset model.
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default = "all")]
    pub filter: FilterSpec,
}

fn one() -> f64 {
    1.0
}

fn all() -> FilterSpec {
    FilterSpec::All
}

impl TagEntry {
    pub fn tag(&self) -> Tag {
        Tag {
            asset: self.asset.clone(),
            signal: self.signal.clone(),
            table: self.table,
            address: self.address,
            data_type: if matches!(self.table, Table::Coil | Table::Discrete) {
                DataType::Bool
            } else {
                self.data_type
            },
            order: self.order,
            bit: self.bit,
            scale: self.scale,
            offset: self.offset,
        }
    }
}

/// OPC UA message security modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    None,
    Sign,
    #[default]
    SignAndEncrypt,
}

/// An OPC UA server and the nodes to follow on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpcUaServer {
    pub name: String,
    /// `opc.tcp://host:port[/path]`.
    pub endpoint: String,
    #[serde(default)]
    pub security_mode: SecurityMode,
    /// `Basic256Sha256` (default), `Aes128_Sha256_RsaOaep`, `Aes256_Sha256_RsaPss`, or
    /// `None` (only with `security_mode = "none"` and `allow_insecure = true`).
    #[serde(default = "default_security_policy")]
    pub security_policy: String,
    /// Security mode `none` is refused unless this is true.
    #[serde(default)]
    pub allow_insecure: bool,
    /// User name authentication, with the password from the environment variable
    /// `password_env` or the file `password_file` (never in this file).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Certificate authentication of the user: PEM certificate and private key.
    #[serde(default)]
    pub user_cert: Option<PathBuf>,
    #[serde(default)]
    pub user_key: Option<PathBuf>,
    /// The gateway's application certificate and key (`own/`, created on first start),
    /// and the server certificates it trusts (`trusted/`; rejected ones land in
    /// `rejected/` for an operator to move). Default `<spool_dir>/pki`.
    #[serde(default)]
    pub pki_dir: Option<PathBuf>,
    /// Trust any server certificate (commissioning only; off by default).
    #[serde(default)]
    pub trust_server_certs: bool,
    #[serde(default = "default_publishing_ms")]
    pub publishing_interval_ms: u64,
    /// How often nodes the server refused (unknown yet, not readable) are tried again.
    #[serde(default = "default_retry_refused_ms")]
    pub retry_refused_ms: u64,
    #[serde(rename = "node", default)]
    pub nodes: Vec<Spanned<NodeTag>>,
}

fn default_security_policy() -> String {
    "Basic256Sha256".into()
}

fn default_publishing_ms() -> u64 {
    1000
}

fn default_retry_refused_ms() -> u64 {
    30_000
}

/// A monitored node mapped to a signal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTag {
    /// E.g. `ns=2;s=Pump101.Temperature` or `ns=2;i=1001`.
    #[serde(default)]
    pub node_id: Option<String>,
    /// From the Objects folder: `2:Pump101/2:Temperature` (namespace index:browse name).
    #[serde(default)]
    pub browse_path: Option<String>,
    pub asset: String,
    pub signal: String,
    /// How often the server samples the value (default: the publishing interval).
    #[serde(default)]
    pub sampling_interval_ms: Option<u64>,
    /// Server-side absolute deadband: changes smaller than this are not sent.
    #[serde(default)]
    pub deadband: Option<f64>,
    /// Server-side percent deadband (of the node's EURange; the server must have one).
    #[serde(default)]
    pub deadband_percent: Option<f64>,
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default = "all")]
    pub filter: FilterSpec,
}

/// A password from the environment variable `env` or the file `file` (its first line),
/// an empty one when neither is given.
pub fn password(env: Option<&str>, file: Option<&std::path::Path>) -> Result<String, String> {
    match (env, file) {
        (Some(var), _) => {
            std::env::var(var).map_err(|_| format!("environment variable {var} (the password) is not set"))
        }
        (None, Some(file)) => std::fs::read_to_string(file)
            .map(|p| p.lines().next().unwrap_or("").to_owned())
            .map_err(|e| format!("password file {}: {e}", file.display())),
        (None, None) => Ok(String::new()),
    }
}

/// The OPC UA policy names Treaty accepts.
pub const SECURITY_POLICIES: [&str; 4] = ["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"];

/// Parses a browse path from the Objects folder into (namespace index, name) pairs.
pub fn browse_path(path: &str) -> Option<Vec<(u16, String)>> {
    let elements: Option<Vec<(u16, String)>> = path
        .trim_matches('/')
        .split('/')
        .map(|element| match element.split_once(':') {
            Some((ns, name)) if !name.is_empty() => Some((ns.parse().ok()?, name.to_owned())),
            None if !element.is_empty() => Some((0, element.to_owned())),
            _ => None,
        })
        .collect();
    elements.filter(|e| !e.is_empty())
}

/// An MQTT broker and what to read from it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttBroker {
    pub name: String,
    /// `mqtt://host:port` (default port 1883) or `mqtts://host:port` (TLS, default 8883).
    pub broker: String,
    /// Default: `<gateway id>-<name>`.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the password, or a file holding it (never the
    /// password itself).
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM file of the certificate authorities trusted for `mqtts://` (the system's trust
    /// store when absent).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and key, for brokers that authenticate clients by
    /// certificate.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    /// As a Sparkplug host application, publish `spBv1.0/STATE/<host_id>` (online on
    /// connect, offline as the will), so edge nodes know their host is up.
    #[serde(default)]
    pub host_id: Option<String>,
    #[serde(rename = "json", default)]
    pub json: Vec<Spanned<JsonTopic>>,
    #[serde(rename = "sparkplug", default)]
    pub sparkplug: Vec<Spanned<SparkplugSource>>,
}

fn default_keep_alive_s() -> u64 {
    30
}

/// A topic (filter, wildcards allowed) carrying JSON documents about one asset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonTopic {
    pub topic: String,
    pub asset: String,
    /// JSON pointer to the sample time (milliseconds since the epoch, or an RFC 3339
    /// string); the time of arrival when absent.
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(rename = "tag", default)]
    pub tags: Vec<Spanned<FieldTag>>,
}

/// A Sparkplug B edge node (or one of its devices) that is one asset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparkplugSource {
    pub group: String,
    pub node: String,
    /// The device; the node's own metrics when absent.
    #[serde(default)]
    pub device: Option<String>,
    pub asset: String,
    #[serde(rename = "tag", default)]
    pub tags: Vec<Spanned<FieldTag>>,
}

/// A value inside a message (a JSON pointer, or a Sparkplug metric name) mapped to a
/// signal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldTag {
    #[serde(default)]
    pub pointer: Option<String>,
    #[serde(default)]
    pub metric: Option<String>,
    pub signal: String,
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default = "all")]
    pub filter: FilterSpec,
}

/// Where the hub is: `host:port` to connect to, the host name (for TLS and the Host
/// header), and whether it speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUrl {
    pub address: String,
    pub host: String,
    pub tls: bool,
}

/// Parses `http://host[:port]` (default 80) or `https://host[:port]` (default 443).
pub fn hub_url(url: &str) -> Option<HubUrl> {
    let (rest, tls) = match url.strip_prefix("https://") {
        Some(rest) => (rest, true),
        None => (url.strip_prefix("http://")?, false),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || port.parse::<u16>().is_ok() => (host, port.parse().ok()?),
        _ => (rest, if tls { 443 } else { 80 }),
    };
    if host.is_empty() || host.contains('/') {
        return None;
    }
    Some(HubUrl { address: format!("{host}:{port}"), host: host.trim_matches(['[', ']']).to_owned(), tls })
}

/// `(host, port, tls)` of an `mqtt://` or `mqtts://` URL.
pub fn broker_address(url: &str) -> Option<(String, u16, bool)> {
    let (rest, tls) = match url.strip_prefix("mqtts://") {
        Some(rest) => (rest, true),
        None => (url.strip_prefix("mqtt://")?, false),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    (!host.is_empty() && !host.contains('/')).then(|| (host.to_owned(), port, tls))
}

/// Where `key = ...` is written in the table that starts at `span` (up to the next
/// table header), or the table's header.
fn key_offset(source: &str, span: &std::ops::Range<usize>, key: &str) -> usize {
    let text = source.get(span.start..).unwrap_or("");
    let mut at = span.start;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        if n > 0 && trimmed.starts_with('[') {
            break;
        }
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return at + (line.len() - trimmed.len());
        }
        at += line.len();
    }
    span.start
}

struct Reporter<'a> {
    file: &'a str,
    source: &'a str,
    found: Vec<Diagnostic>,
}

impl Reporter<'_> {
    fn report(&mut self, offset: usize, field: String, message: impl Into<String>) {
        let (line, column) = line_col(self.source, offset);
        self.found.push(Diagnostic { file: self.file.to_owned(), line, column, field, message: message.into() });
    }
}

/// What a tag of any protocol maps to.
struct Mapping<'a> {
    asset: &'a str,
    signal: &'a str,
    unit: Option<&'a str>,
    filter: &'a FilterSpec,
}

impl Reporter<'_> {
    /// Checks that the asset and its signal (or counter) exist, the unit matches and the
    /// filter is valid for the signal; false when the asset or signal is unknown.
    fn check_mapping(
        &mut self,
        assets: &HashMap<&str, &AssetModel>,
        field: &str,
        at_key: &dyn Fn(&str) -> usize,
        mapping: &Mapping<'_>,
    ) -> bool {
        let Some(model) = assets.get(mapping.asset) else {
            self.report(
                at_key("asset"),
                format!("{field}.asset"),
                format!("asset `{}` is not in the fleet", mapping.asset),
            );
            return false;
        };
        let signal = model.signal(mapping.signal);
        let counter = model.counters.iter().find(|c| c.name == mapping.signal);
        let unit = match (signal, counter) {
            (Some(s), _) => &s.unit,
            (None, Some(c)) => &c.unit,
            (None, None) => {
                self.report(
                    at_key("signal"),
                    format!("{field}.signal"),
                    format!(
                        "`{}` is not a signal or counter of model `{}` (asset `{}`)",
                        mapping.signal, model.id, mapping.asset
                    ),
                );
                return false;
            }
        };
        if let Some(declared) = mapping.unit
            && declared != unit
        {
            let expected = if unit.is_empty() { "no unit".to_owned() } else { format!("`{unit}`") };
            self.report(
                at_key("unit"),
                format!("{field}.unit"),
                format!(
                    "unit `{declared}` does not match {expected} of {}#{} in model `{}`; fix the unit or the scale",
                    mapping.asset, mapping.signal, model.id
                ),
            );
        }
        if let Err(error) = Filter::new(mapping.filter, span_of(model, mapping.signal)) {
            self.report(at_key("filter"), format!("{field}.filter"), error.to_string());
        }
        true
    }
}

/// Turns a percentage-of-span threshold into an absolute one.
fn resolve_percent(filter: &mut FilterSpec, span: Option<f64>) {
    let absolute = |threshold: &mut Threshold| {
        if let (Threshold::PercentOfSpan(percent), Some(span)) = (*threshold, span) {
            *threshold = Threshold::Absolute(span * percent / 100.0);
        }
    };
    match filter {
        FilterSpec::Deadband { threshold, .. } | FilterSpec::SwingingDoor { threshold, .. } => absolute(threshold),
        FilterSpec::All | FilterSpec::Window { .. } => {}
    }
}

/// A tag reading a register (or one bit of it).
struct RegisterUse {
    bit: Option<u8>,
    by: String,
}

/// The span of a signal or counter's values, for percentage thresholds.
fn span_of(model: &AssetModel, signal: &str) -> Option<f64> {
    let def = model.signal(signal)?;
    match (def.physical_min, def.physical_max, def.expected_min, def.expected_max) {
        (Some(lo), Some(hi), _, _) | (_, _, Some(lo), Some(hi)) => Some(hi - lo),
        _ => None,
    }
}

/// Parses an edge file and checks it against the fleet's records.
pub fn check(file: &str, source: &str, fleet: &[Entity]) -> Result<EdgeFile, Diagnostics> {
    let mut reporter = Reporter { file, source, found: Vec::new() };
    let mut edge: EdgeFile = match toml::from_str(source) {
        Ok(edge) => edge,
        Err(error) => {
            reporter.report(error.span().map_or(0, |s| s.start), String::new(), error.message().trim().to_owned());
            return Err(Diagnostics(reporter.found));
        }
    };
    let models: HashMap<&str, &AssetModel> = fleet
        .iter()
        .filter_map(|e| match e {
            Entity::AssetModel(m) => Some((m.id.as_str(), m)),
            _ => None,
        })
        .collect();
    let assets: HashMap<&str, &AssetModel> = fleet
        .iter()
        .filter_map(|e| match e {
            Entity::Asset(a) => Some((a.id.as_str(), *models.get(a.model.as_str())?)),
            _ => None,
        })
        .collect();
    match hub_url(&edge.gateway.hub) {
        None => reporter.report(
            key_offset(source, &(source.find("[gateway]").unwrap_or(0)..source.len()), "hub"),
            "gateway.hub".into(),
            format!("`{}` is not http://host:port or https://host[:port]", edge.gateway.hub),
        ),
        Some(hub) if !hub.tls && edge.gateway.hub_ca_file.is_some() => reporter.report(
            key_offset(source, &(source.find("[gateway]").unwrap_or(0)..source.len()), "hub_ca_file"),
            "gateway.hub_ca_file".into(),
            "a CA file is given but the hub URL is http:// (plain); use https://",
        ),
        Some(_) => {}
    }
    if let Some(health) = &edge.gateway.health
        && !health.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback())
    {
        reporter.report(
            key_offset(source, &(source.find("[gateway]").unwrap_or(0)..source.len()), "health"),
            "gateway.health".into(),
            format!("`{health}` is not a loopback address:port (e.g. 127.0.0.1:9181); the gateway opens no port to the network"),
        );
    }
    for (d, device) in edge.modbus.iter().enumerate() {
        if device.address.parse::<SocketAddr>().is_err() {
            reporter.report(
                0,
                format!("modbus[{d}].address"),
                format!("`{}` is not host:port with an IP address", device.address),
            );
        }
        // Who reads each (table, register) of the device, and which bit of it.
        let mut used: HashMap<(Table, u16), Vec<RegisterUse>> = HashMap::new();
        for (p, poll) in device.polls.iter().enumerate() {
            if poll.interval_ms == 0 {
                reporter.report(0, format!("modbus[{d}].poll[{p}].interval_ms"), "must be at least 1");
            }
            for (t, spanned) in poll.tags.iter().enumerate() {
                let span = spanned.span();
                let at_key = |key: &str| key_offset(source, &span, key);
                let entry = spanned.get_ref();
                let field = format!("modbus[{d}].poll[{p}].tag[{t}]");
                let mapping = Mapping {
                    asset: &entry.asset,
                    signal: &entry.signal,
                    unit: entry.unit.as_deref(),
                    filter: &entry.filter,
                };
                if !reporter.check_mapping(&assets, &field, &at_key, &mapping) {
                    continue;
                }
                let tag = entry.tag();
                let bit = (tag.data_type == DataType::Bool && !matches!(tag.table, Table::Coil | Table::Discrete))
                    .then_some(tag.bit.unwrap_or(0));
                for register in tag.address..tag.address.saturating_add(tag.width()) {
                    let here = used.entry((tag.table, register)).or_default();
                    if let Some(RegisterUse { by: other, .. }) =
                        here.iter().find(|u| u.bit.is_none() || bit.is_none() || u.bit == bit)
                    {
                        reporter.report(
                            at_key("address"),
                            format!("{field}.address"),
                            format!("{:?} register {register} is already read by {other}", tag.table).to_lowercase(),
                        );
                        break;
                    }
                    here.push(RegisterUse { bit, by: field.clone() });
                }
                if matches!(entry.filter, FilterSpec::Deadband { threshold: Threshold::PercentOfSpan(_), .. })
                    && tag.data_type == DataType::Bool
                {
                    reporter.report(
                        at_key("filter"),
                        format!("{field}.filter"),
                        "a percentage deadband makes no sense on a bit; use threshold = 0",
                    );
                }
            }
        }
    }
    check_mqtt(&edge, source, &assets, &mut reporter);
    check_opcua(&edge, source, &assets, &mut reporter);
    check_interlocks(&edge, source, &mut reporter);
    if !reporter.found.is_empty() {
        return Err(Diagnostics(reporter.found));
    }
    // Percentages of span become absolute thresholds, so the gateway needs no models.
    let span = |asset: &str, signal: &str| assets.get(asset).and_then(|m| span_of(m, signal));
    for tag in edge.modbus.iter_mut().flat_map(|d| &mut d.polls).flat_map(|p| &mut p.tags) {
        let tag = tag.get_mut();
        resolve_percent(&mut tag.filter, span(&tag.asset, &tag.signal));
    }
    for server in &mut edge.opcua {
        for tag in &mut server.get_mut().nodes {
            let tag = tag.get_mut();
            resolve_percent(&mut tag.filter, span(&tag.asset, &tag.signal));
        }
    }
    for broker in &mut edge.mqtt {
        let broker = broker.get_mut();
        for topic in &mut broker.json {
            let topic = topic.get_mut();
            for tag in &mut topic.tags {
                let tag = tag.get_mut();
                resolve_percent(&mut tag.filter, span(&topic.asset, &tag.signal));
            }
        }
        for source in &mut broker.sparkplug {
            let source = source.get_mut();
            for tag in &mut source.tags {
                let tag = tag.get_mut();
                resolve_percent(&mut tag.filter, span(&source.asset, &tag.signal));
            }
        }
    }
    Ok(edge)
}

/// Whether an MQTT topic filter is well formed: `#` only as the whole last level, `+`
/// only as a whole level.
pub fn valid_topic_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && levels.iter().enumerate().all(|(i, level)| {
            (*level == "#" && i == levels.len() - 1) || *level == "+" || !(level.contains('#') || level.contains('+'))
        })
}

/// The connection settings shared by `[[mqtt]]` brokers and the Sparkplug `[uplink]`.
fn check_connection(broker: &MqttBroker, field: &str, at_key: &dyn Fn(&str) -> usize, reporter: &mut Reporter<'_>) {
    match broker_address(&broker.broker) {
        None => reporter.report(
            at_key("broker"),
            format!("{field}.broker"),
            format!("`{}` is not mqtt://host:port or mqtts://host:port", broker.broker),
        ),
        Some((_, _, false)) if broker.ca_file.is_some() || broker.client_cert.is_some() => reporter.report(
            at_key("broker"),
            format!("{field}.broker"),
            "certificates are given but the broker URL is mqtt:// (plain); use mqtts://",
        ),
        _ => {}
    }
    if broker.client_cert.is_some() != broker.client_key.is_some() {
        reporter.report(
            at_key("client_cert"),
            format!("{field}.client_cert"),
            "give both `client_cert` and `client_key`, or neither",
        );
    }
    if (broker.password_env.is_some() || broker.password_file.is_some()) && broker.username.is_none() {
        reporter.report(at_key("username"), format!("{field}.username"), "a password needs a `username`");
    }
    if broker.password_env.is_some() && broker.password_file.is_some() {
        reporter.report(
            at_key("password_file"),
            format!("{field}.password_file"),
            "give `password_env` or `password_file`, not both",
        );
    }
}

fn check_mqtt(edge: &EdgeFile, source: &str, assets: &HashMap<&str, &AssetModel>, reporter: &mut Reporter<'_>) {
    let id_part = |s: &str| !s.is_empty() && !s.contains(['/', '+', '#']);
    if let Some(spanned) = &edge.uplink {
        let span = spanned.span();
        let at_key = |key: &str| key_offset(source, &span, key);
        let uplink = spanned.get_ref();
        check_connection(&uplink.connection(), "uplink", &at_key, reporter);
        let ids = [
            ("group", Some(uplink.group.as_str())),
            ("node", uplink.node.as_deref()),
            ("primary_host", uplink.primary_host.as_deref()),
        ];
        for (key, value) in ids {
            if let Some(value) = value
                && !id_part(value)
            {
                reporter.report(
                    at_key(key),
                    format!("uplink.{key}"),
                    format!("`{value}` is not a Sparkplug id (not empty; no `/`, `+` or `#`)"),
                );
            }
        }
        if uplink.node.is_none() && !id_part(&edge.gateway.id) {
            reporter.report(
                span.start,
                "uplink.node".into(),
                format!("the gateway id `{}` cannot be the Sparkplug node id; set `node`", edge.gateway.id),
            );
        }
    }
    for (b, spanned) in edge.mqtt.iter().enumerate() {
        let span = spanned.span();
        let at_key = |key: &str| key_offset(source, &span, key);
        let broker = spanned.get_ref();
        let field = format!("mqtt[{b}]");
        check_connection(broker, &field, &at_key, reporter);
        if broker.json.is_empty() && broker.sparkplug.is_empty() {
            reporter.report(span.start, field.clone(), "the broker has no [[mqtt.json]] or [[mqtt.sparkplug]] to read");
        }
        for (j, spanned) in broker.json.iter().enumerate() {
            let span = spanned.span();
            let at_key = |key: &str| key_offset(source, &span, key);
            let topic = spanned.get_ref();
            let field = format!("{field}.json[{j}]");
            if !valid_topic_filter(&topic.topic) {
                reporter.report(
                    at_key("topic"),
                    format!("{field}.topic"),
                    format!(
                        "`{}` is not an MQTT topic filter (`+` and `#` stand for whole levels, `#` only last)",
                        topic.topic
                    ),
                );
            }
            if let Some(pointer) = &topic.timestamp
                && !pointer.starts_with('/')
            {
                reporter.report(
                    at_key("timestamp"),
                    format!("{field}.timestamp"),
                    format!("`{pointer}` is not a JSON pointer (it starts with `/`)"),
                );
            }
            for (t, tagged) in topic.tags.iter().enumerate() {
                let tag_span = tagged.span();
                let at_tag = |key: &str| key_offset(source, &tag_span, key);
                let tag = tagged.get_ref();
                let field = format!("{field}.tag[{t}]");
                match &tag.pointer {
                    Some(pointer) if pointer.starts_with('/') => {}
                    Some(pointer) => reporter.report(
                        at_tag("pointer"),
                        format!("{field}.pointer"),
                        format!("`{pointer}` is not a JSON pointer (it starts with `/`)"),
                    ),
                    None => reporter.report(
                        tag_span.start,
                        format!("{field}.pointer"),
                        "a JSON tag needs `pointer`, e.g. \"/vibration/rms\"",
                    ),
                }
                if tag.metric.is_some() {
                    reporter.report(
                        at_tag("metric"),
                        format!("{field}.metric"),
                        "`metric` is for [[mqtt.sparkplug.tag]]; JSON tags use `pointer`",
                    );
                }
                let mapping = Mapping {
                    asset: &topic.asset,
                    signal: &tag.signal,
                    unit: tag.unit.as_deref(),
                    filter: &tag.filter,
                };
                reporter.check_mapping(
                    assets,
                    &field,
                    &|key| if key == "asset" { at_key(key) } else { at_tag(key) },
                    &mapping,
                );
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (n, spanned) in broker.sparkplug.iter().enumerate() {
            let span = spanned.span();
            let at_key = |key: &str| key_offset(source, &span, key);
            let node = spanned.get_ref();
            let field = format!("{field}.sparkplug[{n}]");
            for (key, value) in
                [("group", Some(&node.group)), ("node", Some(&node.node)), ("device", node.device.as_ref())]
            {
                if let Some(value) = value
                    && !id_part(value)
                {
                    reporter.report(
                        at_key(key),
                        format!("{field}.{key}"),
                        format!("`{value}` is not a Sparkplug id (no `/`, `+` or `#`)"),
                    );
                }
            }
            for (t, tagged) in node.tags.iter().enumerate() {
                let tag_span = tagged.span();
                let at_tag = |key: &str| key_offset(source, &tag_span, key);
                let tag = tagged.get_ref();
                let field = format!("{field}.tag[{t}]");
                match &tag.metric {
                    Some(metric) => {
                        if !seen.insert((&node.group, &node.node, &node.device, metric)) {
                            reporter.report(
                                at_tag("metric"),
                                format!("{field}.metric"),
                                format!("metric `{metric}` is already mapped"),
                            );
                        }
                    }
                    None => reporter.report(
                        tag_span.start,
                        format!("{field}.metric"),
                        "a Sparkplug tag needs `metric`, the metric's name in the births",
                    ),
                }
                if tag.pointer.is_some() {
                    reporter.report(
                        at_tag("pointer"),
                        format!("{field}.pointer"),
                        "`pointer` is for [[mqtt.json.tag]]; Sparkplug tags use `metric`",
                    );
                }
                let mapping =
                    Mapping { asset: &node.asset, signal: &tag.signal, unit: tag.unit.as_deref(), filter: &tag.filter };
                reporter.check_mapping(
                    assets,
                    &field,
                    &|key| if key == "asset" { at_key(key) } else { at_tag(key) },
                    &mapping,
                );
            }
        }
    }
}

fn check_opcua(edge: &EdgeFile, source: &str, assets: &HashMap<&str, &AssetModel>, reporter: &mut Reporter<'_>) {
    for (s, spanned) in edge.opcua.iter().enumerate() {
        let span = spanned.span();
        let at_key = |key: &str| key_offset(source, &span, key);
        let server = spanned.get_ref();
        let field = format!("opcua[{s}]");
        if !server.endpoint.starts_with("opc.tcp://") || server.endpoint.len() <= "opc.tcp://".len() {
            reporter.report(
                at_key("endpoint"),
                format!("{field}.endpoint"),
                format!("`{}` is not an opc.tcp:// URL", server.endpoint),
            );
        }
        if !SECURITY_POLICIES.contains(&server.security_policy.as_str()) {
            reporter.report(
                at_key("security_policy"),
                format!("{field}.security_policy"),
                format!(
                    "unknown security policy `{}`; use one of {}",
                    server.security_policy,
                    SECURITY_POLICIES.join(", ")
                ),
            );
        }
        let insecure = server.security_mode == SecurityMode::None || server.security_policy == "None";
        if insecure && !server.allow_insecure {
            reporter.report(
                at_key("security_mode"),
                format!("{field}.security_mode"),
                "security mode or policy `none` sends everything in the clear and unauthenticated; set `allow_insecure = true` to accept that",
            );
        }
        if (server.security_mode == SecurityMode::None) != (server.security_policy == "None") {
            reporter.report(
                at_key("security_policy"),
                format!("{field}.security_policy"),
                "security mode `none` goes with policy `None`, and only with it",
            );
        }
        if (server.password_env.is_some() || server.password_file.is_some()) && server.username.is_none() {
            reporter.report(at_key("username"), format!("{field}.username"), "a password needs a `username`");
        }
        if server.password_env.is_some() && server.password_file.is_some() {
            reporter.report(
                at_key("password_file"),
                format!("{field}.password_file"),
                "give `password_env` or `password_file`, not both",
            );
        }
        if server.user_cert.is_some() != server.user_key.is_some() {
            reporter.report(
                at_key("user_cert"),
                format!("{field}.user_cert"),
                "give both `user_cert` and `user_key`, or neither",
            );
        }
        if server.username.is_some() && server.user_cert.is_some() {
            reporter.report(
                at_key("user_cert"),
                format!("{field}.user_cert"),
                "authenticate with a user name or a certificate, not both",
            );
        }
        if server.nodes.is_empty() {
            reporter.report(span.start, field.clone(), "the server has no [[opcua.node]] to follow");
        }
        for (n, tagged) in server.nodes.iter().enumerate() {
            let tag_span = tagged.span();
            let at_tag = |key: &str| key_offset(source, &tag_span, key);
            let tag = tagged.get_ref();
            let field = format!("{field}.node[{n}]");
            match (&tag.node_id, &tag.browse_path) {
                (Some(id), None) => {
                    if id.parse::<opcua::types::NodeId>().is_err() {
                        reporter.report(
                            at_tag("node_id"),
                            format!("{field}.node_id"),
                            format!("`{id}` is not a node id such as ns=2;s=Pump.Temperature or ns=2;i=1001"),
                        );
                    }
                }
                (None, Some(path)) => {
                    if browse_path(path).is_none() {
                        reporter.report(
                            at_tag("browse_path"),
                            format!("{field}.browse_path"),
                            format!("`{path}` is not a browse path such as 2:Pump101/2:Temperature"),
                        );
                    }
                }
                _ => reporter.report(
                    tag_span.start,
                    format!("{field}.node_id"),
                    "give exactly one of `node_id` or `browse_path`",
                ),
            }
            if tag.deadband.is_some() && tag.deadband_percent.is_some() {
                reporter.report(
                    at_tag("deadband_percent"),
                    format!("{field}.deadband"),
                    "give `deadband` or `deadband_percent`, not both",
                );
            }
            if tag.deadband.is_some_and(|d| !(d >= 0.0 && d.is_finite()))
                || tag.deadband_percent.is_some_and(|d| !(0.0..=100.0).contains(&d))
            {
                reporter.report(
                    at_tag("deadband"),
                    format!("{field}.deadband"),
                    "a deadband is a finite number >= 0 (percent: 0..100)",
                );
            }
            let mapping =
                Mapping { asset: &tag.asset, signal: &tag.signal, unit: tag.unit.as_deref(), filter: &tag.filter };
            reporter.check_mapping(assets, &field, &at_tag, &mapping);
        }
    }
}

fn check_interlocks(edge: &EdgeFile, source: &str, reporter: &mut Reporter<'_>) {
    let mut read: std::collections::HashSet<(&str, &str)> = edge
        .modbus
        .iter()
        .flat_map(|d| &d.polls)
        .flat_map(|p| &p.tags)
        .map(|t| (t.get_ref().asset.as_str(), t.get_ref().signal.as_str()))
        .collect();
    for server in &edge.opcua {
        read.extend(server.get_ref().nodes.iter().map(|t| (t.get_ref().asset.as_str(), t.get_ref().signal.as_str())));
    }
    for broker in &edge.mqtt {
        for topic in &broker.get_ref().json {
            let topic = topic.get_ref();
            read.extend(topic.tags.iter().map(|t| (topic.asset.as_str(), t.get_ref().signal.as_str())));
        }
        for node in &broker.get_ref().sparkplug {
            let node = node.get_ref();
            read.extend(node.tags.iter().map(|t| (node.asset.as_str(), t.get_ref().signal.as_str())));
        }
    }
    for (i, spanned) in edge.interlocks.iter().enumerate() {
        let span = spanned.span();
        let at_key = |key: &str| key_offset(source, &span, key);
        let rule = spanned.get_ref();
        let field = format!("interlock[{i}]");
        if !edge.gateway.field_writes {
            reporter.report(
                span.start,
                field.clone(),
                format!("interlock `{}` writes to a machine, but field writes are off: set `field_writes = true` in [gateway]", rule.name),
            );
        }
        if rule.above.is_some() == rule.below.is_some() {
            reporter.report(at_key("asset"), field.clone(), "give exactly one of `above` or `below`");
        }
        if !read.contains(&(rule.asset.as_str(), rule.signal.as_str())) {
            reporter.report(
                at_key("signal"),
                format!("{field}.signal"),
                format!(
                    "{}#{} is not read by any tag of this gateway, so the rule could never fire",
                    rule.asset, rule.signal
                ),
            );
        }
        let Some(device) = edge.modbus.iter().find(|d| d.name == rule.device) else {
            reporter.report(
                at_key("device"),
                format!("{field}.device"),
                format!("no [[modbus]] device is named `{}`", rule.device),
            );
            continue;
        };
        if !matches!(rule.table, Table::Coil | Table::Holding) {
            reporter.report(
                at_key("table"),
                format!("{field}.table"),
                "only coils and holding registers can be written",
            );
        }
        match device.writable.iter().find(|w| w.table == rule.table && w.address == rule.address) {
            None => reporter.report(
                at_key("address"),
                format!("{field}.address"),
                format!(
                    "{:?} {} of `{}` is not allow-listed: add it to [[modbus.writable]] with its allowed range",
                    rule.table, rule.address, rule.device
                )
                .to_lowercase(),
            ),
            Some(w) if !(w.min..=w.max).contains(&rule.value) => reporter.report(
                at_key("value"),
                format!("{field}.value"),
                format!("{} is outside the allowed range [{}, {}] of that address", rule.value, w.min, w.max),
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Vec<Entity> {
        let source = r#"
[[customer]]
id = "acme"
name = "Acme"
[[site]]
id = "acme/p"
name = "P"
[[line]]
id = "acme/p/l"
name = "L"
[[asset_model]]
id = "pump"
name = "Pump"
category = "centrifugal_pump"
[[asset_model.signal]]
name = "temperature"
unit = "degC"
physical_min = -20.0
physical_max = 150.0
[[asset_model.signal]]
name = "running"
kind = "boolean"
[[asset]]
id = "acme/p/l/p-1"
name = "P-1"
model = "pump"
"#;
        config::parse_fleet("fleet.toml", source).unwrap_or_else(|d| panic!("{d}")).entities
    }

    const GOOD: &str = r#"[gateway]
id = "gw-1"
hub = "http://127.0.0.1:8080"
spool_dir = "spool"

[[modbus]]
name = "plc"
address = "127.0.0.1:5020"

[[modbus.poll]]
interval_ms = 1000

[[modbus.poll.tag]]
asset = "acme/p/l/p-1"
signal = "temperature"
table = "holding"
address = 0
data_type = "i16"
scale = 0.1
unit = "degC"
filter = { kind = "swinging_door", threshold = "1%" }

[[modbus.poll.tag]]
asset = "acme/p/l/p-1"
signal = "running"
table = "coil"
address = 0
"#;

    #[test]
    fn a_good_file_passes() {
        let edge = check("edge.toml", GOOD, &fleet()).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(edge.modbus[0].polls[0].tags.len(), 2);
        assert_eq!(edge.modbus[0].polls[0].tags[1].get_ref().tag().data_type, DataType::Bool);
        // 1% of the model's physical span (-20..150 degC) is 1.7 degC.
        let FilterSpec::SwingingDoor { threshold: Threshold::Absolute(t), .. } =
            edge.modbus[0].polls[0].tags[0].get_ref().filter
        else {
            panic!("threshold not resolved")
        };
        assert!((t - 1.7).abs() < 1e-9, "{t}");
    }

    #[test]
    fn interlocks_need_field_writes_an_allow_list_and_a_value_in_range() {
        let rule = "\n[[interlock]]\nname = \"stop on overheat\"\nasset = \"acme/p/l/p-1\"\nsignal = \"temperature\"\nabove = 90.0\ndevice = \"plc\"\ntable = \"coil\"\naddress = 5\nvalue = 1\n";
        let off = format!("{GOOD}{rule}");
        let found = check("edge.toml", &off, &fleet()).expect_err("writes are off").0;
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.contains("field writes are off")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("coil 5 of `plc` is not allow-listed")), "{text:?}");
        let allowed = off.replace("spool_dir = \"spool\"", "spool_dir = \"spool\"\nfield_writes = true").replace(
            "address = \"127.0.0.1:5020\"",
            "address = \"127.0.0.1:5020\"\n\n[[modbus.writable]]\ntable = \"coil\"\naddress = 5\nmin = 0\nmax = 1",
        );
        let edge = check("edge.toml", &allowed, &fleet()).unwrap_or_else(|d| panic!("{d}"));
        assert!(edge.interlocks[0].get_ref().tripped(91.0) && !edge.interlocks[0].get_ref().tripped(90.0));
        let too_big = allowed.replace("value = 1\n", "value = 7\n");
        let found = check("edge.toml", &too_big, &fleet()).expect_err("out of range").0;
        assert!(found[0].message.contains("outside the allowed range [0, 1]"), "{}", found[0]);
    }

    const MQTT: &str = r#"
[[mqtt]]
name = "sensors"
broker = "mqtt://127.0.0.1:1883"

[[mqtt.json]]
topic = "acme/+/p-1"
asset = "acme/p/l/p-1"
timestamp = "/ts"

[[mqtt.json.tag]]
pointer = "/temp"
signal = "temperature"
unit = "degC"
filter = { kind = "deadband", threshold = "10%" }

[[mqtt.sparkplug]]
group = "plant"
node = "edge-1"
device = "p-1"
asset = "acme/p/l/p-1"

[[mqtt.sparkplug.tag]]
metric = "Running"
signal = "running"
"#;

    #[test]
    fn opcua_servers_are_checked() {
        let server = r#"
[[opcua]]
name = "plc"
endpoint = "opc.tcp://127.0.0.1:4840"
security_mode = "none"
security_policy = "None"
allow_insecure = true

[[opcua.node]]
node_id = "ns=2;s=Pump.Temperature"
asset = "acme/p/l/p-1"
signal = "temperature"
deadband = 0.5

[[opcua.node]]
browse_path = "2:Pump/2:Running"
asset = "acme/p/l/p-1"
signal = "running"
"#;
        let good = format!("{GOOD}{server}");
        let edge = check("edge.toml", &good, &fleet()).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(edge.opcua[0].get_ref().nodes.len(), 2);
        assert!(edge.summary().contains("1 OPC UA server(s) with 2 node(s)"), "{}", edge.summary());
        let bad = good
            .replace("allow_insecure = true\n", "")
            .replace("node_id = \"ns=2;s=Pump.Temperature\"", "node_id = \"Pump.Temperature\"")
            .replace("browse_path = \"2:Pump/2:Running\"", "browse_path = \"x:Pump\"\nnode_id = \"i=85\"");
        let found = check("edge.toml", &bad, &fleet()).expect_err("problems").0;
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 3, "{text:?}");
        assert!(text[0].contains("edge.toml:32:") && text[0].contains("set `allow_insecure = true`"), "{text:?}");
        assert!(text[1].contains("edge.toml:36:") && text[1].contains("is not a node id"), "{text:?}");
        assert!(
            text[2].contains("edge.toml:41:") && text[2].contains("exactly one of `node_id` or `browse_path`"),
            "{text:?}"
        );
        let encrypted = good
            .replace("security_mode = \"none\"\nsecurity_policy = \"None\"\nallow_insecure = true\n", "")
            .replace("name = \"plc\"\nendpoint", "name = \"plc\"\nsecurity_policy = \"Basic128\"\nendpoint");
        let found = check("edge.toml", &encrypted, &fleet()).expect_err("unknown policy").0;
        assert!(found[0].message.contains("unknown security policy `Basic128`"), "{}", found[0]);
        assert_eq!(browse_path("/2:Pump/Motor"), Some(vec![(2, "Pump".into()), (0, "Motor".into())]));
        assert_eq!(browse_path("2:"), None);
    }

    #[test]
    fn mqtt_sources_are_checked_like_tags() {
        let good = format!("{GOOD}{MQTT}");
        let edge = check("edge.toml", &good, &fleet()).unwrap_or_else(|d| panic!("{d}"));
        let json = edge.mqtt[0].get_ref().json[0].get_ref();
        let FilterSpec::Deadband { threshold: Threshold::Absolute(t), .. } = json.tags[0].get_ref().filter else {
            panic!("threshold not resolved")
        };
        assert!((t - 17.0).abs() < 1e-9, "{t}");
        let bad = good
            .replace("mqtt://127.0.0.1:1883\"", "mqtts://127.0.0.1\"\nclient_cert = \"client.pem\"")
            .replace("acme/+/p-1", "acme/#/p-1")
            .replace("pointer = \"/temp\"", "pointer = \"temp\"")
            .replace("metric = \"Running\"\nsignal = \"running\"", "metric = \"Running\"\nsignal = \"runing\"")
            .replace("device = \"p-1\"", "device = \"p/1\"");
        let found = check("edge.toml", &bad, &fleet()).expect_err("problems").0;
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 5, "{text:?}");
        assert!(
            text[0].contains("edge.toml:32:") && text[0].contains("both `client_cert` and `client_key`"),
            "{text:?}"
        );
        assert!(text[1].contains("edge.toml:35:") && text[1].contains("not an MQTT topic filter"), "{text:?}");
        assert!(text[2].contains("edge.toml:40:") && text[2].contains("`temp` is not a JSON pointer"), "{text:?}");
        assert!(text[3].contains("edge.toml:48:") && text[3].contains("`p/1` is not a Sparkplug id"), "{text:?}");
        assert!(text[4].contains("edge.toml:53:") && text[4].contains("`runing` is not a signal"), "{text:?}");
        assert_eq!(
            hub_url("https://hub.example.com/"),
            Some(HubUrl { address: "hub.example.com:443".into(), host: "hub.example.com".into(), tls: true })
        );
        assert_eq!(hub_url("http://127.0.0.1:8080").map(|h| h.address), Some("127.0.0.1:8080".into()));
        assert_eq!(hub_url("ftp://x"), None);
        let public_health = GOOD.replace("spool_dir = \"spool\"", "spool_dir = \"spool\"\nhealth = \"0.0.0.0:9181\"");
        let found = check("edge.toml", &public_health, &fleet()).expect_err("health on all interfaces").0;
        assert!(found[0].message.contains("not a loopback address"), "{}", found[0]);
        let local_health = GOOD.replace("spool_dir = \"spool\"", "spool_dir = \"spool\"\nhealth = \"127.0.0.1:9181\"");
        assert!(check("edge.toml", &local_health, &fleet()).is_ok());
        let plain_with_ca = GOOD.replace("spool_dir = \"spool\"", "spool_dir = \"spool\"\nhub_ca_file = \"ca.pem\"");
        let found = check("edge.toml", &plain_with_ca, &fleet()).expect_err("ca on http").0;
        assert!(
            found[0].to_string().starts_with("edge.toml:5:") && found[0].message.contains("use https://"),
            "{}",
            found[0]
        );
        assert_eq!(broker_address("mqtt://broker.local"), Some(("broker.local".into(), 1883, false)));
        assert_eq!(broker_address("mqtts://10.0.0.1:8884/"), Some(("10.0.0.1".into(), 8884, true)));
        assert_eq!(broker_address("tcp://x:1"), None);
    }

    #[test]
    fn a_sparkplug_uplink_is_checked() {
        let good = format!(
            "{GOOD}\n[uplink]\nbroker = \"mqtt://127.0.0.1:1883\"\ngroup = \"plant-1\"\nprimary_host = \"treaty-hub\"\n"
        );
        let edge = check("edge.toml", &good, &fleet()).unwrap_or_else(|d| panic!("{d}"));
        let uplink = edge.uplink.as_ref().expect("uplink").get_ref();
        assert_eq!(uplink.node_id(&edge.gateway), edge.gateway.id, "the node id defaults to the gateway id");
        let bad = good
            .replace("group = \"plant-1\"", "group = \"plant/1\"\npassword_env = \"PW\"")
            .replace("mqtt://127.0.0.1:1883\"\ngroup", "tcp://127.0.0.1\"\ngroup");
        let found = check("edge.toml", &bad, &fleet()).expect_err("problems").0;
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 3, "{text:?}");
        assert!(text.iter().any(|t| t.contains("uplink.broker") && t.contains("not mqtt://")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("uplink.username") && t.contains("needs a `username`")), "{text:?}");
        assert!(
            text.iter().any(|t| t.contains("uplink.group") && t.contains("`plant/1` is not a Sparkplug id")),
            "{text:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let bad = GOOD
            .replace("signal = \"temperature\"", "signal = \"temprature\"")
            .replace("signal = \"running\"", "signal = \"running\"\nunit = \"rpm\"")
            .replace("table = \"coil\"\naddress = 0", "table = \"holding\"\naddress = 0");
        let found = check("edge.toml", &bad, &fleet()).expect_err("problems").0;
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 2, "{text:?}");
        assert!(text[0].contains("edge.toml:15:") && text[0].contains("`temprature` is not a signal"), "{text:?}");
        assert!(text[1].contains("edge.toml:26:") && text[1].contains("unit `rpm`"), "{text:?}");
        let overlap =
            GOOD.replace("signal = \"running\"\ntable = \"coil\"", "signal = \"running\"\ntable = \"holding\"");
        let found = check("edge.toml", &overlap, &fleet()).expect_err("overlap").0;
        assert!(found[0].message.contains("register 0 is already read by modbus[0].poll[0].tag[0]"), "{}", found[0]);
        let syntax = check("edge.toml", "[gateway]\nid = 1\n", &fleet()).expect_err("syntax").0;
        assert_eq!(syntax[0].line, 2, "{}", syntax[0]);
        let unknown = GOOD.replace("[[modbus]]\nname", "[[modbus]]\ncolour = \"red\"\nname");
        let found = check("edge.toml", &unknown, &fleet()).expect_err("unknown key").0;
        assert!(found[0].message.contains("colour"), "{}", found[0]);
        let no_span = GOOD.replace(
            "signal = \"running\"\ntable = \"coil\"\naddress = 0",
            "signal = \"running\"\ntable = \"coil\"\naddress = 0\nfilter = { kind = \"deadband\", threshold = \"5%\" }",
        );
        let found = check("edge.toml", &no_span, &fleet()).expect_err("no span").0;
        assert!(found.iter().any(|d| d.message.contains("span")), "{found:?}");
    }
}
