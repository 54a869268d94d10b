//! The check of an edge file against the fleet: parse, let each section report its
//! problems (in file order: gateway, Modbus, uplink, MQTT, OPC UA, interlocks), then
//! resolve percentages of span into absolute thresholds so that the running gateway
//! needs no models. Also what the sections share: the `Reporter`, the check of a tag's
//! mapping to an asset signal, and where a key is written.

use super::EdgeFile;
use crate::filter::{Filter, FilterSpec, Threshold};
use config::{Diagnostic, Diagnostics, line_col};
use model::{AssetModel, Entity};
use std::collections::HashMap;

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
    super::gateway::check(&edge, &mut reporter);
    super::modbus::check(&edge, &assets, &mut reporter);
    super::uplink::check(&edge, &mut reporter);
    super::mqtt::check(&edge, &assets, &mut reporter);
    super::opcua::check(&edge, &assets, &mut reporter);
    super::interlock::check(&edge, &mut reporter);
    if !reporter.found.is_empty() {
        return Err(Diagnostics(reporter.found));
    }
    resolve_percentages(&mut edge, &assets);
    Ok(edge)
}

/// Percentages of span become absolute thresholds, so the gateway needs no models.
fn resolve_percentages(edge: &mut EdgeFile, assets: &HashMap<&str, &AssetModel>) {
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
}

/// Collects diagnostics with file:line:column.
pub(super) struct Reporter<'a> {
    file: &'a str,
    /// The edge file's text, for positions.
    pub(super) source: &'a str,
    found: Vec<Diagnostic>,
}

impl Reporter<'_> {
    pub(super) fn report(&mut self, offset: usize, field: String, message: impl Into<String>) {
        let (line, column) = line_col(self.source, offset);
        self.found.push(Diagnostic { file: self.file.to_owned(), line, column, field, message: message.into() });
    }

    /// Checks that the asset and its signal (or counter) exist, the unit matches and the
    /// filter is valid for the signal; false when the asset or signal is unknown.
    pub(super) fn check_mapping(
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

/// What a tag of any protocol maps to.
pub(super) struct Mapping<'a> {
    pub(super) asset: &'a str,
    pub(super) signal: &'a str,
    pub(super) unit: Option<&'a str>,
    pub(super) filter: &'a FilterSpec,
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

/// The span of a signal or counter's values, for percentage thresholds.
fn span_of(model: &AssetModel, signal: &str) -> Option<f64> {
    let def = model.signal(signal)?;
    match (def.physical_min, def.physical_max, def.expected_min, def.expected_max) {
        (Some(lo), Some(hi), _, _) | (_, _, Some(lo), Some(hi)) => Some(hi - lo),
        _ => None,
    }
}

/// Where `key = ...` is written in the table that starts at `span` (up to the next
/// table header), or the table's header.
///
/// A scan of the table's lines rather than `config`'s `locate` helpers: those walk a
/// parsed document tree to the span of a *value* by field path, and are private to that
/// crate; diagnostics here point at the *key*, in a table whose span serde already
/// gave us (`Spanned`), so the text from there to the next header is all it takes.
pub(super) fn key_offset(source: &str, span: &std::ops::Range<usize>, key: &str) -> usize {
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
