//! `[[interlock]]`: local rules that write to a machine without the hub, and their
//! check (field writes on, exactly one limit, a signal some tag reads, an allow-listed
//! target on a named Modbus device, a value in its allowed range).

use super::EdgeFile;
use super::check::{Reporter, key_offset};
use crate::modbus::Table;
use model::sample::SeriesKey;
use serde::Deserialize;
use std::collections::HashSet;

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

    /// The series the rule watches.
    pub fn key(&self) -> SeriesKey {
        SeriesKey::new(self.asset.clone(), self.signal.clone())
    }
}

pub(super) fn check(edge: &EdgeFile, reporter: &mut Reporter<'_>) {
    let source = reporter.source;
    let read: HashSet<SeriesKey> = edge.mapped().map(|(key, _)| key).collect();
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
        if !read.contains(&rule.key()) {
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
