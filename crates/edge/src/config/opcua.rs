//! `[[opcua]]`: OPC UA servers (endpoint, security, user identity, PKI) and the nodes
//! followed on each; browse path parsing; and the section's check.

use super::check::{Mapping, Reporter, key_offset};
use super::{EdgeFile, Mapped};
use crate::filter::FilterSpec;
use model::AssetModel;
use model::sample::SeriesKey;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use toml::Spanned;

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
    #[serde(default = "super::one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default = "super::all")]
    pub filter: FilterSpec,
}

impl OpcUaServer {
    /// The series the server's nodes map to, with their filters.
    pub fn mapped(&self) -> impl Iterator<Item = Mapped<'_>> {
        self.nodes.iter().map(|t| {
            let t = t.get_ref();
            (SeriesKey::new(t.asset.clone(), t.signal.clone()), &t.filter)
        })
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

/// Endpoint and security settings, identity, and every node: an id or a browse path,
/// one deadband, a mapping to the fleet.
pub(super) fn check(edge: &EdgeFile, assets: &HashMap<&str, &AssetModel>, reporter: &mut Reporter<'_>) {
    let source = reporter.source;
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
