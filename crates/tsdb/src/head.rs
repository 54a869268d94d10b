//! The in-memory head: recent samples per series, sorted by time, not yet sealed into a
//! chunk. Sharded by series id so that concurrent writers rarely meet.

use crate::sample::{Sample, SeriesId};
use std::collections::HashMap;
use std::sync::Mutex;

const SHARDS: usize = 16;

#[derive(Default)]
pub(crate) struct Head {
    shards: [Mutex<HashMap<SeriesId, Vec<Sample>>>; SHARDS],
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
    fn shard(&self, id: SeriesId) -> &Mutex<HashMap<SeriesId, Vec<Sample>>> {
        &self.shards[id as usize % SHARDS]
    }

    /// Inserts samples (any order); returns the outcome and the series' head length.
    pub fn insert(&self, id: SeriesId, samples: &[Sample]) -> (Inserted, usize) {
        let mut outcome = Inserted::default();
        let Ok(mut shard) = self.shard(id).lock() else { return (outcome, 0) };
        let head = shard.entry(id).or_default();
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
        let Some(head) = shard.get(&id) else { return Vec::new() };
        let start = head.partition_point(|s| s.ts < from);
        let end = head.partition_point(|s| s.ts < to);
        head[start..end.max(start)].to_vec()
    }

    pub fn last(&self, id: SeriesId) -> Option<Sample> {
        self.shard(id).lock().ok()?.get(&id)?.last().copied()
    }

    /// Removes and returns one series' head.
    pub fn take(&self, id: SeriesId) -> Vec<Sample> {
        self.shard(id).lock().ok().and_then(|mut s| s.remove(&id)).unwrap_or_default()
    }

    /// Removes and returns every series' head.
    pub fn take_all(&self) -> Vec<(SeriesId, Vec<Sample>)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            if let Ok(mut shard) = shard.lock() {
                out.extend(shard.drain().filter(|(_, s)| !s.is_empty()));
            }
        }
        out
    }

    /// Calls `f` with every non-empty series head, one shard locked at a time.
    pub fn visit(&self, f: &mut dyn FnMut(SeriesId, &[Sample]) -> crate::Result<()>) -> crate::Result<()> {
        for shard in &self.shards {
            let shard = shard.lock().map_err(|_| crate::Error::Poisoned)?;
            for (id, samples) in shard.iter().filter(|(_, s)| !s.is_empty()) {
                f(*id, samples)?;
            }
        }
        Ok(())
    }

    /// Puts samples back in front of a series' head (when sealing failed).
    pub fn restore(&self, id: SeriesId, samples: Vec<Sample>) {
        self.insert(id, &samples);
    }

    pub fn sample_count(&self) -> usize {
        self.shards.iter().filter_map(|s| s.lock().ok()).map(|s| s.values().map(Vec::len).sum::<usize>()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_duplicates_and_replacements() {
        let head = Head::default();
        let (first, len) = head.insert(1, &[Sample::good(10, 1.0), Sample::good(30, 3.0), Sample::good(20, 2.0)]);
        assert_eq!((first.added, len), (3, 3));
        let (again, _) = head.insert(1, &[Sample::good(20, 2.0), Sample::good(30, 9.0), Sample::good(5, 0.5)]);
        assert_eq!(again, Inserted { added: 1, duplicates: 1, replaced: 1 });
        let values: Vec<f64> = head.range(1, 0, 100).iter().map(|s| s.value).collect();
        assert_eq!(values, [0.5, 1.0, 2.0, 9.0]);
        assert_eq!(head.range(1, 10, 30).len(), 2);
        assert_eq!(head.last(1).map(|s| s.ts), Some(30));
    }
}
