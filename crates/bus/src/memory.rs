//! The in-process bus: the default on one machine. Every subscriber has a bounded queue;
//! a publisher waits while a matching subscriber's queue is full. Ids published within
//! the last `DEDUP_IDS` events are remembered, so a re-published event is delivered once.

use crate::{Bus, Error, Event, Result, Subscription, check_filter, check_subject, matches};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Events a subscriber may have queued before publishers wait for it.
const QUEUE: usize = 4096;
/// How many recent ids are remembered for de-duplication.
const DEDUP_IDS: usize = 100_000;

#[derive(Default)]
pub struct InProcessBus {
    state: Mutex<State>,
    /// Publishers take it in turn, so that every subscriber sees one order.
    order: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    sequence: u64,
    subscribers: Vec<(String, mpsc::Sender<Event>)>,
    seen: HashMap<String, u64>,
    seen_order: VecDeque<String>,
    closed: bool,
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends every subscription (their `next` returns `None`) and refuses new events.
    pub fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
            state.subscribers.clear();
        }
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn publish(&self, subject: &str, id: &str, payload: Vec<u8>) -> Result<u64> {
        check_subject(subject)?;
        let _turn = self.order.lock().await;
        let (event, targets) = {
            let mut state = self.state.lock().map_err(|_| Error::Closed)?;
            if state.closed {
                return Err(Error::Closed);
            }
            if let Some(sequence) = state.seen.get(id) {
                return Ok(*sequence);
            }
            state.sequence += 1;
            let sequence = state.sequence;
            state.seen.insert(id.to_owned(), sequence);
            state.seen_order.push_back(id.to_owned());
            if state.seen_order.len() > DEDUP_IDS
                && let Some(old) = state.seen_order.pop_front()
            {
                state.seen.remove(&old);
            }
            state.subscribers.retain(|(_, s)| !s.is_closed());
            let targets: Vec<mpsc::Sender<Event>> =
                state.subscribers.iter().filter(|(f, _)| matches(f, subject)).map(|(_, s)| s.clone()).collect();
            (Event { subject: subject.to_owned(), id: id.to_owned(), sequence, payload }, targets)
        };
        for target in targets {
            // Waits for room; a subscription dropped meanwhile is simply gone.
            let _ = target.send(event.clone()).await;
        }
        Ok(event.sequence)
    }

    async fn subscribe(&self, filter: &str) -> Result<Subscription> {
        check_filter(filter)?;
        let (sender, receiver) = mpsc::channel(QUEUE);
        let mut state = self.state.lock().map_err(|_| Error::Closed)?;
        if state.closed {
            return Err(Error::Closed);
        }
        state.subscribers.push((filter.to_owned(), sender));
        Ok(Subscription::new(receiver))
    }
}
