//! The background sealer: series whose heads are full are compressed into chunks by one
//! thread, so that a write is acknowledged as soon as it is durable and compression
//! overlaps the next group's I/O. The same thread runs the checkpoints the committer asks
//! for when the WAL grows, so that neither stalls acknowledgements.

use crate::SeriesId;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

/// Series sealed together: one fsync per group, and a bounded number of plain copies.
pub(crate) const SEAL_GROUP: usize = 256;

/// Past this many queued series, the committer seals inline (backpressure).
const MAX_QUEUED_SEALS: usize = 4 * SEAL_GROUP;

#[derive(Default)]
pub(crate) struct SealQueue {
    state: Mutex<SealState>,
    changed: Condvar,
}

#[derive(Default)]
struct SealState {
    ids: VecDeque<SeriesId>,
    queued: HashSet<SeriesId>,
    /// The WAL passed its checkpoint size: run a checkpoint once the queue is empty.
    checkpoint: bool,
    busy: bool,
    closed: bool,
}

/// The sealer's next job.
pub(crate) enum Work {
    Seal(Vec<SeriesId>),
    Checkpoint,
}

impl SealQueue {
    /// Queues `ids`; returns false (queuing nothing) when the queue is too long.
    pub fn offer(&self, ids: &[SeriesId]) -> bool {
        let Ok(mut state) = self.state.lock() else { return false };
        if state.closed || state.ids.len() >= MAX_QUEUED_SEALS {
            return false;
        }
        for id in ids {
            if state.queued.insert(*id) {
                state.ids.push_back(*id);
            }
        }
        self.changed.notify_all();
        true
    }

    /// Asks for a checkpoint after the queued seals.
    pub fn want_checkpoint(&self) {
        if let Ok(mut state) = self.state.lock()
            && !state.checkpoint
        {
            state.checkpoint = true;
            self.changed.notify_all();
        }
    }

    /// The next job, waiting for one; `None` once closed.
    pub fn take(&self) -> Option<Work> {
        let mut state = self.state.lock().ok()?;
        state.busy = false;
        self.changed.notify_all();
        while state.ids.is_empty() && !state.checkpoint && !state.closed {
            state = self.changed.wait(state).ok()?;
        }
        if state.closed {
            return None;
        }
        state.busy = true;
        if state.ids.is_empty() {
            state.checkpoint = false;
            return Some(Work::Checkpoint);
        }
        let n = state.ids.len().min(SEAL_GROUP);
        let group: Vec<SeriesId> = state.ids.drain(..n).collect();
        for id in &group {
            state.queued.remove(id);
        }
        Some(Work::Seal(group))
    }

    /// Waits until nothing is queued or being sealed.
    pub fn wait_idle(&self) {
        let Ok(mut state) = self.state.lock() else { return };
        while (!state.ids.is_empty() || state.busy) && !state.closed {
            match self.changed.wait(state) {
                Ok(next) => state = next,
                Err(_) => return,
            }
        }
    }

    pub fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        self.changed.notify_all();
    }
}

/// The sealer thread: holds the engine only while it works.
pub(crate) fn run(engine: std::sync::Weak<crate::Inner>, queue: Arc<SealQueue>) {
    while let Some(work) = queue.take() {
        let Some(inner) = engine.upgrade() else { return };
        let db = crate::Tsdb { inner };
        let (what, result) = match work {
            Work::Seal(group) => ("sealing", db.seal(&group)),
            Work::Checkpoint => ("checkpoint", db.checkpoint()),
        };
        if let Err(error) = result {
            // The samples stay in the head and the WAL; the next full head or WAL size check retries.
            tracing::error!(%error, what, "background telemetry work failed; will retry");
        }
    }
}
