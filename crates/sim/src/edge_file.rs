//! The edge file that reads the running simulator (`treaty sim --write-edge-config`):
//! a Modbus device per Modbus machine, an OPC UA server per OPC UA machine, and the
//! broker with its JSON sensors and Sparkplug devices, every tag mapped to its asset's
//! signal. It passes `treaty check-config --fleet` against the same fleet file.

use crate::{Endpoint, Protocol};

/// TOML basic string (JSON escaping is a subset of TOML's).
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// Where the gateway sends and keeps its data.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub id: String,
    pub hub: String,
    pub token_env: String,
    pub spool_dir: String,
}

/// The edge file for `endpoints` (machine, protocol, where, its tags).
pub fn render(gateway: &GatewaySettings, broker: Option<&str>, endpoints: &[Endpoint]) -> String {
    let mut out = format!(
        "# Written by `treaty sim --write-edge-config`: reads every simulated machine.\n\
         # Check it with `treaty check-config <this file> --fleet <fleet file>`.\n\n\
         [gateway]\nid = {}\nhub = {}\ntoken_env = {}\nspool_dir = {}\nbatch_ms = 1000\n",
        quote(&gateway.id),
        quote(&gateway.hub),
        quote(&gateway.token_env),
        quote(&gateway.spool_dir)
    );
    for endpoint in endpoints.iter().filter(|e| e.protocol == Protocol::Modbus) {
        out.push_str(&format!(
            "\n[[modbus]]\nname = {}\naddress = {}\nunit = 1\ntimeout_ms = 1000\n\n[[modbus.poll]]\ninterval_ms = 1000\n",
            quote(&endpoint.name),
            quote(&endpoint.address)
        ));
        for (signal, address) in &endpoint.tags {
            out.push_str(&format!(
                "\n[[modbus.poll.tag]]\nasset = {}\nsignal = {}\ntable = \"holding\"\naddress = {address}\ndata_type = \"f32\"\norder = \"ABCD\"\n",
                quote(&endpoint.asset),
                quote(signal)
            ));
        }
    }
    for endpoint in endpoints.iter().filter(|e| e.protocol == Protocol::OpcUa) {
        out.push_str(&format!(
            "\n# The simulator's OPC UA servers offer security mode None only (loopback).\n\
             [[opcua]]\nname = {}\nendpoint = {}\nsecurity_mode = \"none\"\nsecurity_policy = \"None\"\nallow_insecure = true\npublishing_interval_ms = 1000\n",
            quote(&endpoint.name),
            quote(&endpoint.address)
        ));
        for (signal, node_id) in &endpoint.tags {
            out.push_str(&format!(
                "\n[[opcua.node]]\nnode_id = {}\nasset = {}\nsignal = {}\n",
                quote(node_id),
                quote(&endpoint.asset),
                quote(signal)
            ));
        }
    }
    let mqtt: Vec<&Endpoint> =
        endpoints.iter().filter(|e| matches!(e.protocol, Protocol::MqttJson | Protocol::Sparkplug)).collect();
    if let (Some(broker), false) = (broker, mqtt.is_empty()) {
        out.push_str(&format!(
            "\n[[mqtt]]\nname = \"sim-broker\"\nbroker = {}\nclient_id = {}\n",
            quote(broker),
            quote(&format!("{}-sim-broker", gateway.id))
        ));
        for endpoint in mqtt.iter().filter(|e| e.protocol == Protocol::MqttJson) {
            out.push_str(&format!(
                "\n[[mqtt.json]]\ntopic = {}\nasset = {}\ntimestamp = \"/ts\"\n",
                quote(&endpoint.address),
                quote(&endpoint.asset)
            ));
            for (signal, _) in &endpoint.tags {
                out.push_str(&format!(
                    "\n[[mqtt.json.tag]]\npointer = {}\nsignal = {}\n",
                    quote(&format!("/{}", signal.replace('~', "~0").replace('/', "~1"))),
                    quote(signal)
                ));
            }
        }
        for endpoint in mqtt.iter().filter(|e| e.protocol == Protocol::Sparkplug) {
            out.push_str(&format!(
                "\n[[mqtt.sparkplug]]\ngroup = {}\nnode = {}\ndevice = {}\nasset = {}\n",
                quote(crate::mqtt::GROUP),
                quote(&crate::mqtt::sparkplug_id(&crate::mqtt::site_of(&endpoint.asset))),
                quote(&crate::mqtt::sparkplug_id(&endpoint.asset)),
                quote(&endpoint.asset)
            ));
            for (signal, _) in &endpoint.tags {
                out.push_str(&format!(
                    "\n[[mqtt.sparkplug.tag]]\nmetric = {}\nsignal = {}\n",
                    quote(signal),
                    quote(signal)
                ));
            }
        }
    }
    out
}
