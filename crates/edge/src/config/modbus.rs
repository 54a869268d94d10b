//! `[[modbus]]`: Modbus TCP devices, their poll groups and tags, the places interlocks
//! may write; and the section's check (addresses, intervals, tags that map to the
//! fleet, registers read by two tags).

use super::check::{Mapping, Reporter, key_offset};
use super::{EdgeFile, Mapped};
use crate::filter::{FilterSpec, Threshold};
use crate::modbus::{DataType, Order, Table, Tag};
use model::AssetModel;
use model::sample::SeriesKey;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use toml::Spanned;

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

/// A register or coil that interlocks may write, and the values allowed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Writable {
    pub table: Table,
    pub address: u16,
    pub min: f64,
    pub max: f64,
}

/// Tags read together at one interval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollGroup {
    pub interval_ms: u64,
    #[serde(rename = "tag", default)]
    pub tags: Vec<Spanned<TagEntry>>,
}

impl PollGroup {
    /// The series the group's tags map to, with their filters.
    pub fn mapped(&self) -> impl Iterator<Item = Mapped<'_>> {
        self.tags.iter().map(|t| {
            let t = t.get_ref();
            (SeriesKey::new(t.asset.clone(), t.signal.clone()), &t.filter)
        })
    }
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
    #[serde(default = "super::one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    /// The engineering unit after scaling; checked against the asset model.
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default = "super::all")]
    pub filter: FilterSpec,
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

/// A tag reading a register (or one bit of it).
struct RegisterUse {
    bit: Option<u8>,
    by: String,
}

pub(super) fn check(edge: &EdgeFile, assets: &HashMap<&str, &AssetModel>, reporter: &mut Reporter<'_>) {
    let source = reporter.source;
    for (d, device) in edge.modbus.iter().enumerate() {
        // Devices and poll groups are not kept with their spans: their problems point at
        // the top of the file (the field path says where).
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
                if !reporter.check_mapping(assets, &field, &at_key, &mapping) {
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
}
