//! The committer: one thread that makes writes durable and applies them, in one order.
//!
//! Writers encode their WAL record on their own thread and queue it; the committer takes
//! everything queued as one group, checks batch ids, appends the group with one write and
//! one fsync, then — in WAL order — inserts each write into the head, hands it to the
//! stream of accepted writes and answers its writer. So the WAL, the head and every
//! consumer see writes in the same order, a group costs one fsync however many writers
//! wait, and the number of writers costs no threads.

use crate::batches::{BatchId, Seen};
use crate::codec::WalBatch;
use crate::stream::deliverable;
use crate::{Error, Inner, Result, SeriesId, Tsdb, WriteOutcome};
use model::{AcceptedWrite, Sample, SeriesKey};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

/// A write waiting for the committer.
pub(crate) struct Pending {
    pub ids: Vec<SeriesId>,
    pub series: Vec<(SeriesKey, Vec<Sample>)>,
    pub payload: Vec<u8>,
    pub batch: Option<BatchId>,
    pub historical: bool,
    pub reply: Reply,
}

/// Answers a writer (a blocking or an async one).
pub(crate) type Reply = Box<dyn FnOnce(Result<WriteOutcome>) + Send>;

/// A group smaller than this, found right after a sleep when the last group was at
/// least this big, waits `GATHER` for more writes.
const GATHER_BELOW: usize = 4;
const GATHER: std::time::Duration = std::time::Duration::from_micros(100);

#[derive(Default)]
pub(crate) struct CommitQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

#[derive(Default)]
struct QueueState {
    pending: Vec<Pending>,
    closed: bool,
    /// The committer sleeps on the condition variable: only then does a push wake it
    /// (a wake is a system call; while it commits a group it finds new writes anyway).
    sleeping: bool,
    /// Writes in the last group: many means many writers, whose next writes are near.
    last_group: usize,
}

impl CommitQueue {
    pub fn push(&self, pending: Pending) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| Error::Poisoned)?;
        if state.closed {
            return Err(Error::Closed);
        }
        state.pending.push(pending);
        if state.sleeping {
            self.changed.notify_one();
        }
        Ok(())
    }

    /// Everything queued, waiting for something; `None` once closed and drained.
    fn take(&self) -> Option<Vec<Pending>> {
        let mut state = self.state.lock().ok()?;
        let mut slept = false;
        while state.pending.is_empty() {
            if state.closed {
                return None;
            }
            state.sleeping = true;
            state = self.changed.wait(state).ok()?;
            state.sleeping = false;
            slept = true;
        }
        if slept && state.pending.len() < GATHER_BELOW && state.last_group >= GATHER_BELOW {
            // Woken by a lone write while many writers are about (the last group was
            // big): give its neighbours a moment to join its fsync. A few writers of big
            // batches never wait.
            let (next, _) = self.changed.wait_timeout(state, GATHER).ok()?;
            state = next;
        }
        state.last_group = state.pending.len();
        Some(std::mem::take(&mut state.pending))
    }

    pub fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        self.changed.notify_all();
    }
}

/// The committer thread: holds the engine only while it commits a group.
pub(crate) fn run(engine: std::sync::Weak<Inner>, queue: Arc<CommitQueue>) {
    while let Some(group) = queue.take() {
        let Some(inner) = engine.upgrade() else {
            for pending in group {
                (pending.reply)(Err(Error::Closed));
            }
            return;
        };
        Tsdb { inner }.commit_group(group);
    }
}

/// How a queued write is answered.
enum Admitted {
    /// Written by this group.
    Write(Pending),
    /// Same batch as the write at this index of the group: answered with its outcome.
    SameAs(usize, Reply),
}

impl Tsdb {
    fn commit_group(&self, group: Vec<Pending>) {
        let inner = &*self.inner;
        let (writes, same_as) = self.admit(group);
        if writes.is_empty() {
            return;
        }
        inner.stream.wait_for_room();
        let mut outcomes: Vec<Result<WriteOutcome>> = Vec::with_capacity(writes.len());
        let mut full = Vec::new();
        {
            let Ok(_gate) = inner.gate.read() else {
                answer_all(writes, same_as, &Error::Poisoned);
                return;
            };
            let payloads: Vec<&[u8]> = writes.iter().map(|w| w.payload.as_slice()).collect();
            let positions = match inner.wal.append_durable(&payloads) {
                Ok(positions) => positions,
                Err(error) => {
                    answer_all(writes, same_as, &error);
                    return;
                }
            };
            let now = inner.options.clock.now_ms();
            let mut kinds = Vec::new();
            for (write, position) in writes.into_iter().zip(positions) {
                let Pending { ids, series, batch, historical, reply, .. } = write;
                let mut outcome = WriteOutcome { position: Some(position), ..WriteOutcome::default() };
                let mut delivered = Vec::with_capacity(series.len());
                for (id, (key, samples)) in ids.into_iter().zip(series) {
                    kinds.clear();
                    let (inserted, len) = inner.head.insert_classified(id, &samples, position.segment(), &mut kinds);
                    outcome.stored += inserted.added;
                    outcome.duplicates += inserted.duplicates;
                    outcome.replaced += inserted.replaced;
                    if len >= inner.options.chunk_samples {
                        full.push(id);
                    }
                    delivered.extend(deliverable(key, samples, &kinds));
                }
                if let Some(batch) = batch {
                    inner.batches.remember(batch.scope, batch.id, Some(batch.digest), now, outcome);
                }
                inner.stream.push(AcceptedWrite { position, historical, series: delivered });
                outcomes.push(Ok(outcome));
                reply(Ok(outcome));
            }
        }
        for (leader, reply) in same_as {
            let outcome =
                outcomes[leader].as_ref().map(|o| WriteOutcome { replayed_batch: true, position: None, ..*o });
            reply(outcome.map_err(Clone::clone));
        }
        if !full.is_empty() && !inner.seals.offer(&full) {
            // The sealer is far behind: sealing here holds every writer back until it
            // catches up (backpressure) rather than letting the head grow without bound.
            if let Err(error) = self.seal(&full) {
                tracing::error!(%error, "sealing failed; will retry");
            }
        }
        if inner.wal.total_bytes() > inner.options.wal_checkpoint_bytes {
            inner.seals.want_checkpoint();
        }
    }

    /// Answers retries and conflicts of batch ids; returns the writes to make and the
    /// retries of a batch written by this very group.
    fn admit(&self, group: Vec<Pending>) -> (Vec<Pending>, Vec<(usize, Reply)>) {
        let mut writes = Vec::with_capacity(group.len());
        let mut same_as = Vec::new();
        let mut leaders: HashMap<(String, String), (usize, [u8; 32])> = HashMap::new();
        for pending in group {
            let admitted = match &pending.batch {
                None => Ok(Admitted::Write(pending)),
                Some(batch) => {
                    let key = (batch.scope.clone(), batch.id.clone());
                    match leaders.get(&key) {
                        Some((_, digest)) if *digest != batch.digest => {
                            Err((pending.reply, Error::BatchConflict { id: batch.id.clone() }))
                        }
                        Some((leader, _)) => Ok(Admitted::SameAs(*leader, pending.reply)),
                        None => match self.inner.batches.check(batch) {
                            Ok(Seen::New) => {
                                leaders.insert(key, (writes.len(), batch.digest));
                                Ok(Admitted::Write(pending))
                            }
                            Ok(Seen::Retry(outcome)) => {
                                (pending.reply)(Ok(outcome));
                                continue;
                            }
                            Err(error) => Err((pending.reply, error)),
                        },
                    }
                }
            };
            match admitted {
                Ok(Admitted::Write(pending)) => writes.push(pending),
                Ok(Admitted::SameAs(leader, reply)) => same_as.push((leader, reply)),
                Err((reply, error)) => reply(Err(error)),
            }
        }
        (writes, same_as)
    }
}

fn answer_all(writes: Vec<Pending>, same_as: Vec<(usize, Reply)>, error: &Error) {
    for write in writes {
        (write.reply)(Err(error.clone()));
    }
    for (_, reply) in same_as {
        reply(Err(error.clone()));
    }
}

/// The batch as the WAL keeps it.
pub(crate) fn wal_batch(batch: &BatchId) -> WalBatch {
    WalBatch { scope: batch.scope.clone(), id: batch.id.clone(), digest: Some(batch.digest) }
}
