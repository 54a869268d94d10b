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
    /// Local rules that write to a machine without the hub.
    #[serde(rename = "interlock", default)]
    pub interlocks: Vec<Spanned<Interlock>>,
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
    /// The hub's base URL, e.g. `http://127.0.0.1:8080`.
    pub hub: String,
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
    if !edge.gateway.hub.starts_with("http://") {
        reporter.report(
            0,
            "gateway.hub".into(),
            "the hub URL must start with http:// (TLS to the hub is not built yet)",
        );
    }
    let mut spans = Vec::new();
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
                let Some(model) = assets.get(entry.asset.as_str()) else {
                    reporter.report(
                        at_key("asset"),
                        format!("{field}.asset"),
                        format!("asset `{}` is not in the fleet", entry.asset),
                    );
                    continue;
                };
                let signal = model.signal(&entry.signal);
                let counter = model.counters.iter().find(|c| c.name == entry.signal);
                let unit = match (signal, counter) {
                    (Some(s), _) => &s.unit,
                    (None, Some(c)) => &c.unit,
                    (None, None) => {
                        reporter.report(
                            at_key("signal"),
                            format!("{field}.signal"),
                            format!(
                                "`{}` is not a signal or counter of model `{}` (asset `{}`)",
                                entry.signal, model.id, entry.asset
                            ),
                        );
                        continue;
                    }
                };
                if let Some(declared) = &entry.unit
                    && declared != unit
                {
                    let expected = if unit.is_empty() { "no unit".to_owned() } else { format!("`{unit}`") };
                    reporter.report(
                        at_key("unit"),
                        format!("{field}.unit"),
                        format!("unit `{declared}` does not match {expected} of {}#{} in model `{}`; fix the unit or the scale", entry.asset, entry.signal, model.id),
                    );
                }
                let span_of_signal = span_of(model, &entry.signal);
                if let Err(error) = Filter::new(&entry.filter, span_of_signal) {
                    reporter.report(at_key("filter"), format!("{field}.filter"), error.to_string());
                }
                spans.push((d, p, t, span_of_signal));
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
    check_interlocks(&edge, source, &mut reporter);
    if !reporter.found.is_empty() {
        return Err(Diagnostics(reporter.found));
    }
    // Percentages of span become absolute thresholds, so the gateway needs no models.
    for (d, p, t, span) in spans {
        let filter = &mut edge.modbus[d].polls[p].tags[t].get_mut().filter;
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
    Ok(edge)
}

fn check_interlocks(edge: &EdgeFile, source: &str, reporter: &mut Reporter<'_>) {
    let read: std::collections::HashSet<(&str, &str)> = edge
        .modbus
        .iter()
        .flat_map(|d| &d.polls)
        .flat_map(|p| &p.tags)
        .map(|t| (t.get_ref().asset.as_str(), t.get_ref().signal.as_str()))
        .collect();
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
