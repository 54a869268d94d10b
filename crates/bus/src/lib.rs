//! The hub's event bus, for things that are not samples: a record changed, and later an
//! alarm transition or an outbox event. Samples have their own ordered, durable stream
//! in the telemetry engine; this bus carries the rest.
//!
//! The semantics are the ones NATS JetStream can honour, so that a JetStream
//! implementation can replace the in-process one without changing any publisher or
//! subscriber:
//! - **Subjects** are dot-separated tokens (`records.asset.update`); a subscription's
//!   filter may use `*` for one token and `>` for all remaining ones.
//! - **Ordered per subject**: a subscriber sees the events of one subject in the order
//!   they were published (the in-process bus keeps one global order, which is stronger).
//! - **At least once, with ids**: every event carries the publisher's id; publishing an
//!   id that was published recently again is a no-op (JetStream's `Nats-Msg-Id`
//!   de-duplication), and subscribers de-duplicate by id whatever is redelivered.
//! - **Never dropped silently**: a subscriber's queue is bounded and a publisher waits
//!   for room (backpressure), as JetStream's flow control does.

mod memory;
mod subject;

pub use memory::InProcessBus;
pub use subject::{check_filter, check_subject, matches};

use async_trait::async_trait;
use std::sync::Arc;

/// One event on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub subject: String,
    /// The publisher's id for it: the same id is the same event.
    pub id: String,
    /// Where the bus put it: grows with every published event.
    pub sequence: u64,
    /// Usually JSON.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a subject: use dot-separated tokens of letters, digits, `_` and `-`")]
    BadSubject(String),
    #[error("`{0}` is not a subscription filter: use dot-separated tokens, `*` for one token, `>` as the last")]
    BadFilter(String),
    #[error("the event bus is closed")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Publish and subscribe.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes an event and returns its sequence once the bus holds it. Publishing an
    /// id the bus has seen recently returns that event's sequence and delivers nothing.
    async fn publish(&self, subject: &str, id: &str, payload: Vec<u8>) -> Result<u64>;
    /// Events published from now on whose subject matches `filter`.
    async fn subscribe(&self, filter: &str) -> Result<Subscription>;
}

/// How the rest of Treaty holds a bus.
pub type BusRef = Arc<dyn Bus>;

/// A subscriber's queue of events.
pub struct Subscription {
    receiver: tokio::sync::mpsc::Receiver<Event>,
}

impl Subscription {
    pub(crate) fn new(receiver: tokio::sync::mpsc::Receiver<Event>) -> Self {
        Self { receiver }
    }

    /// The next event, waiting for one; `None` once the bus closed.
    pub async fn next(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }

    /// The next event if one is queued.
    pub fn try_next(&mut self) -> Option<Event> {
        self.receiver.try_recv().ok()
    }
}
