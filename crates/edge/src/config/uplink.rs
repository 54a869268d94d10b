//! `[uplink]`: the gateway as a Sparkplug B edge node (broker connection settings as in
//! `[[mqtt]]`, group and node ids, the primary host it follows), and its check.

use super::EdgeFile;
use super::check::{Reporter, key_offset};
use super::gateway::Gateway;
use super::mqtt::{MqttBroker, check_connection, default_keep_alive_s, is_sparkplug_id};
use serde::Deserialize;
use std::path::PathBuf;

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

/// The connection settings, and ids usable in Sparkplug topics.
pub(super) fn check(edge: &EdgeFile, reporter: &mut Reporter<'_>) {
    let source = reporter.source;
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
                && !is_sparkplug_id(value)
            {
                reporter.report(
                    at_key(key),
                    format!("uplink.{key}"),
                    format!("`{value}` is not a Sparkplug id (not empty; no `/`, `+` or `#`)"),
                );
            }
        }
        if uplink.node.is_none() && !is_sparkplug_id(&edge.gateway.id) {
            reporter.report(
                span.start,
                "uplink.node".into(),
                format!("the gateway id `{}` cannot be the Sparkplug node id; set `node`", edge.gateway.id),
            );
        }
    }
}
