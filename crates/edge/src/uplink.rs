//! The uplink: how batches queued in the spool leave the gateway, in order, forgotten
//! only once the other side has them. Two kinds, chosen by the edge file:
//!
//! - `http` (the default): JSON batches to the hub, acknowledged after a 2xx, with a
//!   replay of the backlog marked historical while fresh batches go first;
//! - `sparkplug` (`[uplink]`): the gateway as a Sparkplug B edge node publishing to an
//!   MQTT broker, acknowledged after every PUBACK; `edge_node` is its encoding, without
//!   I/O (the simulator plays Sparkplug nodes with it).

mod edge_node;
pub mod http;
pub mod sparkplug;

pub use edge_node::{EdgeNode, asks_rebirth};
