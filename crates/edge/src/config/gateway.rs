//! `[gateway]`: who the gateway is, where the hub is (and how to trust it), where the
//! spool lives and how it batches; the hub URL parser; and the section's check.

use super::EdgeFile;
use super::check::{Reporter, key_offset};
use crate::spool::Overflow;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

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

/// The hub URL and its CA file agree; the health endpoint is on loopback only.
pub(super) fn check(edge: &EdgeFile, reporter: &mut Reporter<'_>) {
    // `[gateway]` is a plain table, not kept with its span: find its keys in the text.
    let source = reporter.source;
    let at_key = |key: &str| key_offset(source, &(source.find("[gateway]").unwrap_or(0)..source.len()), key);
    let gateway = &edge.gateway;
    match hub_url(&gateway.hub) {
        None => reporter.report(
            at_key("hub"),
            "gateway.hub".into(),
            format!("`{}` is not http://host:port or https://host[:port]", gateway.hub),
        ),
        Some(hub) if !hub.tls && gateway.hub_ca_file.is_some() => reporter.report(
            at_key("hub_ca_file"),
            "gateway.hub_ca_file".into(),
            "a CA file is given but the hub URL is http:// (plain); use https://",
        ),
        Some(_) => {}
    }
    if let Some(health) = &gateway.health
        && !health.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback())
    {
        reporter.report(
            at_key("health"),
            "gateway.health".into(),
            format!("`{health}` is not a loopback address:port (e.g. 127.0.0.1:9181); the gateway opens no port to the network"),
        );
    }
}
