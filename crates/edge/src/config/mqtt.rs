//! `[[mqtt]]`: MQTT brokers (URL, credentials, TLS, keep-alive, Sparkplug host id) and
//! what to read from them: JSON topics and Sparkplug B nodes; broker URLs and topic
//! filters; and the section's check.

use super::check::{Mapping, Reporter, key_offset};
use super::{EdgeFile, Mapped};
use crate::filter::FilterSpec;
use model::AssetModel;
use model::sample::SeriesKey;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use toml::Spanned;

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

pub(super) fn default_keep_alive_s() -> u64 {
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
    #[serde(default = "super::one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default = "super::all")]
    pub filter: FilterSpec,
}

impl MqttBroker {
    /// The series the broker's JSON and Sparkplug tags map to, with their filters.
    pub fn mapped(&self) -> impl Iterator<Item = Mapped<'_>> {
        let json = self.json.iter().flat_map(|t| {
            let t = t.get_ref();
            t.tags
                .iter()
                .map(|tag| (SeriesKey::new(t.asset.clone(), tag.get_ref().signal.clone()), &tag.get_ref().filter))
        });
        let sparkplug = self.sparkplug.iter().flat_map(|n| {
            let n = n.get_ref();
            n.tags
                .iter()
                .map(|tag| (SeriesKey::new(n.asset.clone(), tag.get_ref().signal.clone()), &tag.get_ref().filter))
        });
        json.chain(sparkplug)
    }
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
pub(super) fn check_connection(
    broker: &MqttBroker,
    field: &str,
    at_key: &dyn Fn(&str) -> usize,
    reporter: &mut Reporter<'_>,
) {
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

/// Whether a Sparkplug id (group, node, device, host) is usable in a topic.
pub(super) fn is_sparkplug_id(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#'])
}

/// Every broker: its connection settings, at least one thing to read, topic filters,
/// JSON pointers, Sparkplug ids and metrics (each mapped once), and the mappings.
pub(super) fn check(edge: &EdgeFile, assets: &HashMap<&str, &AssetModel>, reporter: &mut Reporter<'_>) {
    let source = reporter.source;
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
                    && !is_sparkplug_id(value)
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
