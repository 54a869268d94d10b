//! The edge file (`edge.toml`): the gateway, its uplink to the hub, and its devices with
//! the tag map from raw addresses to asset signals. `check` validates it against the
//! fleet (unknown asset or signal, unit mismatch, overlapping registers, percentage
//! thresholds without a span) and reports every problem with file:line:column.
//!
//! One file per section, each with its types and its part of the check: `gateway`
//! (`[gateway]`, the hub URL), `modbus`, `opcua`, `mqtt` (brokers and their URLs),
//! `interlock`, `uplink` (the Sparkplug `[uplink]`), `secret` (passwords from the
//! environment or a file); `check` is the driver and what the sections share.

mod check;
mod gateway;
mod interlock;
mod modbus;
mod mqtt;
mod opcua;
mod secret;
#[cfg(test)]
mod tests;
mod uplink;

pub use check::check;
pub use gateway::{Gateway, HubUrl, hub_url};
pub use interlock::Interlock;
pub use modbus::{ModbusDevice, PollGroup, TagEntry, Writable};
pub use mqtt::{FieldTag, JsonTopic, MqttBroker, SparkplugSource, broker_address, valid_topic_filter};
pub use opcua::{NodeTag, OpcUaServer, SECURITY_POLICIES, SecurityMode, browse_path};
pub use secret::{PasswordError, password};
pub use uplink::SparkplugUplink;

use crate::filter::FilterSpec;
use model::sample::SeriesKey;
use serde::Deserialize;
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

/// A series a tag writes to, with the filter that decides what of it is sent.
pub type Mapped<'a> = (SeriesKey, &'a FilterSpec);

impl EdgeFile {
    /// What the gateway reads, in words: `2 Modbus device(s) with 9 tag(s), 1 MQTT broker(s) with 3 tag(s)`.
    pub fn summary(&self) -> String {
        let modbus: usize = self.modbus.iter().flat_map(|d| &d.polls).map(|p| p.tags.len()).sum();
        let mqtt: usize = self.mqtt.iter().map(|b| b.get_ref().mapped().count()).sum();
        let opcua: usize = self.opcua.iter().map(|s| s.get_ref().nodes.len()).sum();
        format!(
            "{} Modbus device(s) with {modbus} tag(s), {} OPC UA server(s) with {opcua} node(s), {} MQTT broker(s) with {mqtt} tag(s)",
            self.modbus.len(),
            self.opcua.len(),
            self.mqtt.len()
        )
    }

    /// Every series a tag of any source maps to, in file order (Modbus, OPC UA, MQTT),
    /// with its filter.
    pub fn mapped(&self) -> impl Iterator<Item = Mapped<'_>> {
        let modbus = self.modbus.iter().flat_map(|d| &d.polls).flat_map(PollGroup::mapped);
        let opcua = self.opcua.iter().flat_map(|s| s.get_ref().mapped());
        let mqtt = self.mqtt.iter().flat_map(|b| b.get_ref().mapped());
        modbus.chain(opcua).chain(mqtt)
    }

    /// Every series the edge file maps (what a Sparkplug uplink announces in its births).
    pub fn mapped_series(&self) -> Vec<SeriesKey> {
        self.mapped().map(|(key, _)| key).collect()
    }
}

/// The default scale of every kind of tag.
fn one() -> f64 {
    1.0
}

/// The default filter of every kind of tag: send everything.
fn all() -> FilterSpec {
    FilterSpec::All
}
