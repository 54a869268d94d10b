//! The in-memory head: recent samples per series, sorted by time, not yet sealed into a
//! chunk. Sharded by series id so that concurrent writers rarely meet.

use crate::sample::{Sample, SeriesId};
use std::collections::HashMap;
use std::sync::Mutex;

const SHARDS: usize = 16;

#[derive(Default)]
pub(crate) struct Head {
    shards: [Mutex<HashMap<SeriesId, SeriesHead>>; SHARDS],
    /// Capacity reserved for a new head: a head usually grows to a full chunk, and
    /// growing by doubling would copy every sample about twice.
    reserve: usize,
}

/// One series' unsealed samples and the oldest WAL segment holding any of them.
#[derive(Default)]
struct SeriesHead {
    samples: Vec<Sample>,
    since_segment: u64,
    /// A copy is being sealed; a second seal of the same series waits its turn.
    sealing: bool,
}

/// What inserting one series' samples did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    pub added: usize,
    /// Exact duplicates of samples already in the head: no-ops.
    pub duplicates: usize,
    /// Same timestamp, different value or quality: the newer write wins.
    pub replaced: usize,
}

impl Head {
    /// A head whose series will hold about `chunk_samples` before sealing.
    pub fn with_chunk_samples(chunk_samples: usize) -> Self {
        Self { reserve: chunk_samples, ..Self::default() }
    }

    fn shard(&self, id: SeriesId) -> &Mutex<HashMap<SeriesId, SeriesHead>> {
        &self.shards[id as usize % SHARDS]
    }

    /// Inserts samples (any order) that the WAL holds in `segment`; returns the outcome
    /// and the series' head length.
    pub fn insert(&self, id: SeriesId, samples: &[Sample], segment: u64) -> (Inserted, usize) {
        let mut outcome = Inserted::default();
        let Ok(mut shard) = self.shard(id).lock() else { return (outcome, 0) };
        let entry = shard.entry(id).or_default();
        if entry.samples.is_empty() || segment < entry.since_segment {
            entry.since_segment = segment;
        }
        // Busy series get their whole chunk's room once; slow ones stay small.
        let needed = entry.samples.len() + samples.len();
        if needed > 256 && entry.samples.capacity() < self.reserve {
            entry.samples.reserve_exact(self.reserve.max(needed) - entry.samples.len());
        }
        let head = &mut entry.samples;
        for sample in samples {
            match head.last() {
                Some(last) if last.ts < sample.ts => {
                    head.push(*sample);
                    outcome.added += 1;
                }
                None => {
                    head.push(*sample);
                    outcome.added += 1;
                }
                Some(_) => match head.binary_search_by_key(&sample.ts, |s| s.ts) {
                    Ok(at) if head[at].same_as(sample) => outcome.duplicates += 1,
                    Ok(at) => {
                        head[at] = *sample;
                        outcome.replaced += 1;
                    }
                    Err(at) => {
                        head.insert(at, *sample);
                        outcome.added += 1;
                    }
                },
            }
        }
        (outcome, head.len())
    }

    /// Samples of one series with `from <= ts < to`.
    pub fn range(&self, id: SeriesId, from: i64, to: i64) -> Vec<Sample> {
        let Ok(shard) = self.shard(id).lock() else { return Vec::new() };
        let Some(head) = shard.get(&id).map(|h| &h.samples) else { return Vec::new() };
        let start = head.partition_point(|s| s.ts < from);
        let end = head.partition_point(|s| s.ts < to);
        head[start..end.max(start)].to_vec()
    }

    pub fn first(&self, id: SeriesId) -> Option<Sample> {
        self.shard(id).lock().ok()?.get(&id)?.samples.first().copied()
    }

    pub fn last(&self, id: SeriesId) -> Option<Sample> {
        self.shard(id).lock().ok()?.get(&id)?.samples.last().copied()
    }

    /// A copy of one series' head for sealing, unless it is already being sealed. The
    /// samples stay visible to queries until `remove_sealed`.
    pub fn copy_for_seal(&self, id: SeriesId) -> Option<Vec<Sample>> {
        let mut shard = self.shard(id).lock().ok()?;
        let head = shard.get_mut(&id).filter(|h| !h.sealing && !h.samples.is_empty())?;
        head.sealing = true;
        Some(head.samples.clone())
    }

    /// Drops the samples that are now in a chunk (samples written meanwhile stay).
    pub fn remove_sealed(&self, id: SeriesId, sealed: &[Sample]) {
        let Ok(mut shard) = self.shard(id).lock() else { return };
        let Some(head) = shard.get_mut(&id) else { return };
        head.sealing = false;
        head.samples.retain(|s| match sealed.binary_search_by_key(&s.ts, |x| x.ts) {
            Ok(at) => !sealed[at].same_as(s),
            Err(_) => true,
        });
        if head.samples.is_empty() {
            shard.remove(&id);
        }
    }

    /// Gives up sealing a copy (the chunk could not be written).
    pub fn cancel_seal(&self, id: SeriesId) {
        if let Ok(mut shard) = self.shard(id).lock()
            && let Some(head) = shard.get_mut(&id)
        {
            head.sealing = false;
        }
    }

    /// Removes and returns the heads whose samples reach back before WAL `segment`
    /// (every head for `u64::MAX`). Heads being sealed are left to that seal, so a series
    /// is never sealed twice at once.
    pub fn take_older_than(&self, segment: u64) -> Vec<(SeriesId, Vec<Sample>)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            if let Ok(mut shard) = shard.lock() {
                let old: Vec<SeriesId> =
                    shard.iter().filter(|(_, h)| h.since_segment < segment && !h.sealing).map(|(id, _)| *id).collect();
                for id in old {
                    if let Some(head) = shard.remove(&id) {
                        out.push((id, head.samples));
                    }
                }
            }
        }
        out
    }

    /// The oldest WAL segment any unsealed sample lives in.
    pub fn min_since_segment(&self) -> Option<u64> {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok())
            .filter_map(|s| s.values().filter(|h| !h.samples.is_empty()).map(|h| h.since_segment).min())
            .min()
    }

    /// Puts samples back into a series' head (when sealing failed).
    pub fn restore(&self, id: SeriesId, samples: Vec<Sample>, segment: u64) {
        self.insert(id, &samples, segment);
    }

    pub fn sample_count(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok())
            .map(|s| s.values().map(|h| h.samples.len()).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_duplicates_and_replacements() {
        let head = Head::default();
        let (first, len) = head.insert(1, &[Sample::good(10, 1.0), Sample::good(30, 3.0), Sample::good(20, 2.0)], 1);
        assert_eq!((first.added, len), (3, 3));
        let (again, _) = head.insert(1, &[Sample::good(20, 2.0), Sample::good(30, 9.0), Sample::good(5, 0.5)], 2);
        assert_eq!(head.min_since_segment(), Some(1));
        assert_eq!(again, Inserted { added: 1, duplicates: 1, replaced: 1 });
        let values: Vec<f64> = head.range(1, 0, 100).iter().map(|s| s.value).collect();
        assert_eq!(values, [0.5, 1.0, 2.0, 9.0]);
        assert_eq!(head.range(1, 10, 30).len(), 2);
        assert_eq!(head.last(1).map(|s| s.ts), Some(30));
    }

    #[test]
    fn sealing_copies_and_keeps_writes_made_meanwhile() {
        let head = Head::default();
        head.insert(1, &[Sample::good(10, 1.0), Sample::good(20, 2.0)], 1);
        let copy = head.copy_for_seal(1).expect("copy");
        assert!(head.copy_for_seal(1).is_none(), "one seal at a time");
        head.insert(1, &[Sample::good(40, 4.0), Sample::good(1, 0.1)], 3);
        assert_eq!(head.range(1, 0, 100).len(), 4, "still visible while sealing");
        head.remove_sealed(1, &copy);
        let left: Vec<i64> = head.range(1, 0, 100).iter().map(|s| s.ts).collect();
        assert_eq!(left, [1, 40]);
        assert!(head.copy_for_seal(1).is_some(), "sealing can start again");
    }
}
