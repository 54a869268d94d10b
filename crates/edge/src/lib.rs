//! Treaty's edge gateway (`treaty edge`): it sits next to the machines, reads their
//! industrial protocols, sends only what matters to the hub, keeps what it cannot send
//! yet, and acts locally when it must.
//!
//! Built so far: the edge filters (`filter`). Protocol adapters, store-and-forward and
//! interlocks follow (issue 4).

pub mod filter;

pub use filter::{Filter, FilterSpec, Threshold};
