//! Treaty's edge gateway (`treaty edge`): it sits next to the machines, reads their
//! industrial protocols, sends only what matters to the hub, keeps what it cannot send
//! yet, and acts locally when it must.
//!
//! Built so far: the edge filters (`filter`) and the store-and-forward queue (`spool`).
//! Protocol adapters, the uplink and interlocks follow (issue 4).

pub mod config;
pub mod filter;
pub mod modbus;
pub mod spool;

pub use filter::{Filter, FilterSpec, Threshold};
