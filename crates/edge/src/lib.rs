//! Treaty's edge gateway (`treaty edge`): it sits next to the machines, reads their
//! industrial protocols, sends only what matters to the hub, keeps what it cannot send
//! yet, and acts locally when it must.
//!
//! The edge file and its check against the fleet (`config`), filters (`filter`),
//! store-and-forward (`spool`), the Modbus TCP adapter (`modbus`), the OPC UA adapter
//! (`opcua`), the MQTT adapter for JSON sensors and Sparkplug B nodes (`mqtt`,
//! `sparkplug`), TLS client settings (`tls`), the health endpoint (`health`) and the
//! running gateway with its interlocks and HTTP uplink (`gateway`), or the Sparkplug B
//! edge-node uplink (`uplink`).

pub mod config;
pub mod filter;
pub mod gateway;
pub mod health;
pub mod modbus;
pub mod mqtt;
pub mod opcua;
pub mod sparkplug;
pub mod spool;
pub mod tls;
pub mod uplink;

pub use filter::{Filter, FilterSpec, Threshold};
