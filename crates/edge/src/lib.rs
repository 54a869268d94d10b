//! Treaty's edge gateway (`treaty edge`): it sits next to the machines, reads their
//! industrial protocols, sends only what matters to the hub, keeps what it cannot send
//! yet, and acts locally when it must.
//!
//! The edge file and its check against the fleet (`config`); the protocol adapters,
//! each `run(config, ctx)` with a `source::SourceContext` — Modbus TCP (`modbus`), OPC
//! UA (`opcua`), MQTT for JSON sensors and Sparkplug B nodes (`mqtt`, with the host side
//! of Sparkplug in `sparkplug`); what every source does with what it read (`pipeline`:
//! interlocks, then `filter`s); interlock writes (`interlock`) and events for the hub
//! (`report`); store-and-forward (`spool`, fed by `batcher`); the uplink, HTTP or as a
//! Sparkplug B edge node (`uplink`); the HTTP client (`http`) and TLS settings (`tls`);
//! the health endpoint (`health`); and the process wiring (`gateway`).

mod batcher;
pub mod config;
pub mod filter;
pub mod gateway;
pub mod health;
pub mod http;
pub mod interlock;
pub mod modbus;
pub mod mqtt;
pub mod opcua;
pub mod pipeline;
pub mod report;
pub mod source;
pub mod sparkplug;
pub mod spool;
pub mod tls;
pub mod uplink;

pub use filter::{Filter, FilterSpec, Threshold};
