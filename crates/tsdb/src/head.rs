//! The in-memory head: recent samples per series, not yet sealed into a chunk. Sharded
//! by series id so that concurrent writers rarely meet.
//!
//! A series' head is a short sorted tail of plain samples and, before it, compressed
//! blocks of older ones (2-4 bytes per sample instead of 24), so a hub holds an hour of
//! 10,000 series in about 100 MB. The newest `KEEP` samples stay plain, so slightly late
//! samples are merged without touching a block; a sample older than that thaws the
//! blocks after it (rare), which are frozen again afterwards.

use crate::SeriesId;
use crate::codec::{decode_block, encode_block};
use model::Sample;
use std::collections::HashMap;
use std::sync::Mutex;

const SHARDS: usize = 16;
/// Samples per frozen block.
const BLOCK: usize = 128;
/// Plain samples kept after freezing, for late arrivals.
const KEEP: usize = 32;

#[derive(Default)]
pub(crate) struct Head {
    shards: [Mutex<HashMap<SeriesId, SeriesHead>>; SHARDS],
}

/// Compressed samples covering `[first, last]`.
struct Block {
    first: i64,
    last: i64,
    len: usize,
    bytes: Box<[u8]>,
}

/// One series' unsealed samples and the oldest WAL segment holding any of them.
#[derive(Default)]
struct SeriesHead {
    /// In time order, disjoint, and all older than every sample in `tail`.
    frozen: Vec<Block>,
    frozen_len: usize,
    /// Sorted by time.
    tail: Vec<Sample>,
    since_segment: u64,
    /// A copy is being sealed; a second seal of the same series waits its turn.
    sealing: bool,
    /// Bumped by every insert, so a seal knows whether the head changed under its copy.
    version: u64,
    sealed_version: u64,
    /// The oldest WAL segment written to this head while a copy of it was being sealed:
    /// what the head pins once the copy is in a chunk.
    since_during_seal: u64,
    /// The oldest time stamp written while a copy was being sealed: when it is newer
    /// than everything copied (the usual case), removing the copy is a cut by time.
    oldest_during_seal: i64,
}

/// What inserting one sample did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Added,
    /// The head held exactly this sample: a no-op.
    Duplicate,
    /// The head held another value or quality at this time stamp: the newer write wins.
    Replaced,
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

fn decode(block: &Block, out: &mut Vec<Sample>) {
    // Blocks are written by this process from valid samples; failing to read one back
    // is a bug, not bad input, and must not take the hub down.
    if let Err(error) = decode_block(&block.bytes, out) {
        tracing::error!(%error, "an in-memory head block does not decode");
    }
}

impl SeriesHead {
    fn len(&self) -> usize {
        self.frozen_len + self.tail.len()
    }

    fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.len());
        for block in &self.frozen {
            decode(block, &mut out);
        }
        out.extend_from_slice(&self.tail);
        out
    }

    /// Moves the blocks that reach `ts` or later back into the tail.
    fn thaw_from(&mut self, ts: i64) {
        let at = self.frozen.partition_point(|b| b.last < ts);
        if at == self.frozen.len() {
            return;
        }
        let mut thawed = Vec::new();
        for block in self.frozen.drain(at..) {
            self.frozen_len -= block.len;
            decode(&block, &mut thawed);
        }
        thawed.append(&mut self.tail);
        self.tail = thawed;
    }

    /// Compresses all but the newest `KEEP` tail samples, in blocks of `BLOCK`.
    fn freeze(&mut self) {
        if self.tail.len() < BLOCK + KEEP {
            return;
        }
        let cut = self.tail.len() - KEEP;
        for part in self.tail[..cut].chunks(BLOCK) {
            let (first, last) = (part[0].ts, part[part.len() - 1].ts);
            self.frozen.push(Block { first, last, len: part.len(), bytes: encode_block(part).into_boxed_slice() });
            self.frozen_len += part.len();
        }
        self.tail.drain(..cut);
        self.tail.shrink_to(BLOCK + KEEP);
    }

    /// Drops every sample with `ts <= last`: whole blocks without decoding them, the one
    /// block that straddles `last` decoded and cut.
    fn cut_through(&mut self, last: i64) {
        let whole = self.frozen.partition_point(|b| b.last <= last);
        for block in self.frozen.drain(..whole) {
            self.frozen_len -= block.len;
        }
        if self.frozen.first().is_some_and(|b| b.first <= last) {
            // The one block that straddles `last`: its newer part becomes a shorter block.
            let block = self.frozen.remove(0);
            self.frozen_len -= block.len;
            let mut kept = Vec::with_capacity(block.len);
            decode(&block, &mut kept);
            kept.retain(|s| s.ts > last);
            if let (Some(first), Some(newest)) = (kept.first(), kept.last()) {
                let (first, newest) = (first.ts, newest.ts);
                let bytes = encode_block(&kept).into_boxed_slice();
                self.frozen.insert(0, Block { first, last: newest, len: kept.len(), bytes });
                self.frozen_len += kept.len();
            }
        }
        let cut = self.tail.partition_point(|s| s.ts <= last);
        self.tail.drain(..cut);
        self.freeze();
    }

    fn set(&mut self, samples: Vec<Sample>) {
        self.frozen.clear();
        self.frozen_len = 0;
        self.tail = samples;
        self.freeze();
    }

    /// Inserts `samples` in the order given; `kinds` receives what each one did.
    fn insert(&mut self, samples: &[Sample], outcome: &mut Inserted, kinds: &mut Vec<Kind>) {
        for sample in samples {
            if self.frozen.last().is_some_and(|b| sample.ts <= b.last) {
                self.thaw_from(sample.ts);
            }
            let tail = &mut self.tail;
            let kind = match tail.last() {
                Some(last) if last.ts < sample.ts => {
                    tail.push(*sample);
                    Kind::Added
                }
                None => {
                    tail.push(*sample);
                    Kind::Added
                }
                Some(_) => match tail.binary_search_by_key(&sample.ts, |s| s.ts) {
                    Ok(at) if tail[at].same_as(sample) => Kind::Duplicate,
                    Ok(at) => {
                        tail[at] = *sample;
                        Kind::Replaced
                    }
                    Err(at) => {
                        tail.insert(at, *sample);
                        Kind::Added
                    }
                },
            };
            match kind {
                Kind::Added => outcome.added += 1,
                Kind::Duplicate => outcome.duplicates += 1,
                Kind::Replaced => outcome.replaced += 1,
            }
            kinds.push(kind);
        }
        self.freeze();
    }

    /// Appends the samples in `[from, to)` to `out`, oldest first.
    fn range_into(&self, from: i64, to: i64, out: &mut Vec<Sample>) {
        for block in self.frozen.iter().filter(|b| b.last >= from && b.first < to) {
            let at = out.len();
            decode(block, out);
            if block.first < from || block.last >= to {
                // An edge block: cut what lies outside (a block is sorted).
                let cut = at + out[at..].partition_point(|s| s.ts < from);
                out.drain(at..cut);
                let end = at + out[at..].partition_point(|s| s.ts < to);
                out.truncate(end);
            }
        }
        let start = self.tail.partition_point(|s| s.ts < from);
        let end = self.tail.partition_point(|s| s.ts < to);
        out.extend_from_slice(&self.tail[start..end.max(start)]);
    }

    fn memory_bytes(&self) -> usize {
        self.frozen.iter().map(|b| b.bytes.len() + size_of::<Block>()).sum::<usize>()
            + self.tail.capacity() * size_of::<Sample>()
    }
}

impl Head {
    fn shard(&self, id: SeriesId) -> &Mutex<HashMap<SeriesId, SeriesHead>> {
        &self.shards[id as usize % SHARDS]
    }

    /// Inserts samples (any order) that the WAL holds in `segment`; returns the outcome
    /// and the series' head length.
    pub fn insert(&self, id: SeriesId, samples: &[Sample], segment: u64) -> (Inserted, usize) {
        self.insert_classified(id, samples, segment, &mut Vec::new())
    }

    /// `insert`, also telling what each sample did (in `kinds`, in the order given).
    pub fn insert_classified(
        &self,
        id: SeriesId,
        samples: &[Sample],
        segment: u64,
        kinds: &mut Vec<Kind>,
    ) -> (Inserted, usize) {
        let mut outcome = Inserted::default();
        let Ok(mut shard) = self.shard(id).lock() else { return (outcome, 0) };
        let entry = shard.entry(id).or_default();
        if entry.len() == 0 || segment < entry.since_segment {
            entry.since_segment = segment;
        }
        if entry.sealing {
            entry.since_during_seal = entry.since_during_seal.min(segment);
            let oldest = samples.iter().map(|s| s.ts).min().unwrap_or(i64::MAX);
            entry.oldest_during_seal = entry.oldest_during_seal.min(oldest);
        }
        kinds.reserve(samples.len());
        entry.insert(samples, &mut outcome, kinds);
        entry.version += 1;
        (outcome, entry.len())
    }

    /// Samples of one series with `from <= ts < to`.
    #[cfg(test)]
    fn range(&self, id: SeriesId, from: i64, to: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        self.range_into(id, from, to, &mut out);
        out
    }

    /// Appends a series' head samples in `[from, to)` to `out`, oldest first.
    pub fn range_into(&self, id: SeriesId, from: i64, to: i64, out: &mut Vec<Sample>) {
        let Ok(shard) = self.shard(id).lock() else { return };
        if let Some(head) = shard.get(&id) {
            // At most the whole head: reserved once rather than grown block by block.
            out.reserve(head.len());
            head.range_into(from, to, out);
        }
    }

    /// The oldest timestamp in a series' head.
    pub fn first_ts(&self, id: SeriesId) -> Option<i64> {
        let shard = self.shard(id).lock().ok()?;
        let head = shard.get(&id)?;
        head.frozen.first().map(|b| b.first).or_else(|| head.tail.first().map(|s| s.ts))
    }

    pub fn last(&self, id: SeriesId) -> Option<Sample> {
        let shard = self.shard(id).lock().ok()?;
        let head = shard.get(&id)?;
        if let Some(last) = head.tail.last() {
            return Some(*last);
        }
        let mut out = Vec::new();
        decode(head.frozen.last()?, &mut out);
        out.pop()
    }

    /// A copy of one series' head for sealing, unless it is already being sealed or
    /// holds fewer than `min` samples. The samples stay visible to queries until
    /// `remove_sealed`.
    pub fn copy_for_seal(&self, id: SeriesId, min: usize) -> Option<Vec<Sample>> {
        let mut shard = self.shard(id).lock().ok()?;
        let head = shard.get_mut(&id).filter(|h| !h.sealing && h.len() >= min.max(1))?;
        head.sealing = true;
        head.sealed_version = head.version;
        head.since_during_seal = u64::MAX;
        head.oldest_during_seal = i64::MAX;
        Some(head.samples())
    }

    /// Drops the samples that are now in a chunk (samples written meanwhile stay).
    pub fn remove_sealed(&self, id: SeriesId, sealed: &[Sample]) {
        let Ok(mut shard) = self.shard(id).lock() else { return };
        let Some(head) = shard.get_mut(&id) else { return };
        head.sealing = false;
        if head.version == head.sealed_version && sealed.len() == head.len() {
            // Nothing was written during the seal: all of it is in the chunk.
            shard.remove(&id);
            return;
        }
        let last_sealed = sealed.last().map_or(i64::MIN, |s| s.ts);
        if head.oldest_during_seal > last_sealed {
            // Everything written meanwhile is newer than the copy, and nothing older
            // changed: what is left is the head after the copy's last time stamp.
            head.cut_through(last_sealed);
        } else {
            let mut left = head.samples();
            left.retain(|s| match sealed.binary_search_by_key(&s.ts, |x| x.ts) {
                Ok(at) => !sealed[at].same_as(s),
                Err(_) => true,
            });
            head.set(left);
        }
        if head.len() == 0 {
            shard.remove(&id);
        } else {
            // Everything left was written during the seal.
            head.since_segment = head.since_during_seal;
        }
    }

    /// Every series with unsealed samples, with the time span they cover.
    pub fn spans(&self) -> Vec<(SeriesId, i64, i64)> {
        let mut out = Vec::new();
        for shard in self.shards.iter().filter_map(|s| s.lock().ok()) {
            for (id, head) in shard.iter() {
                let first = head.frozen.first().map(|b| b.first).or_else(|| head.tail.first().map(|s| s.ts));
                let last = head.tail.last().map(|s| s.ts).or_else(|| head.frozen.last().map(|b| b.last));
                if let (Some(first), Some(last)) = (first, last) {
                    out.push((*id, first, last));
                }
            }
        }
        out
    }

    /// Drops the head samples that `sealed` (sorted, one per time stamp: what the chunks
    /// say) already holds exactly; returns how many. For WAL replay after a restart: the
    /// WAL keeps sealed samples until a checkpoint deletes their segment.
    pub fn drop_sealed(&self, id: SeriesId, sealed: &[Sample]) -> usize {
        let Ok(mut shard) = self.shard(id).lock() else { return 0 };
        let Some(head) = shard.get_mut(&id) else { return 0 };
        let mut left = head.samples();
        let before = left.len();
        left.retain(|s| match sealed.binary_search_by_key(&s.ts, |x| x.ts) {
            Ok(at) => !sealed[at].same_as(s),
            Err(_) => true,
        });
        let dropped = before - left.len();
        if left.is_empty() {
            shard.remove(&id);
        } else if dropped > 0 {
            head.set(left);
        }
        dropped
    }

    /// Gives up sealing a copy (the chunk could not be written).
    pub fn cancel_seal(&self, id: SeriesId) {
        if let Ok(mut shard) = self.shard(id).lock()
            && let Some(head) = shard.get_mut(&id)
        {
            head.sealing = false;
        }
    }

    /// Removes and returns up to `limit` heads whose samples reach back before WAL
    /// `segment` (any head for `u64::MAX`) and that hold fewer than `full` samples.
    /// Heads being sealed are left to that seal, so a series is never sealed twice at once.
    pub fn take_older_than(&self, segment: u64, limit: usize, full: usize) -> Vec<(SeriesId, Vec<Sample>)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            if out.len() >= limit {
                break;
            }
            if let Ok(mut shard) = shard.lock() {
                let old: Vec<SeriesId> = shard
                    .iter()
                    .filter(|(_, h)| h.since_segment < segment && !h.sealing && h.len() < full)
                    .map(|(id, _)| *id)
                    .take(limit - out.len())
                    .collect();
                for id in old {
                    if let Some(head) = shard.remove(&id) {
                        out.push((id, head.samples()));
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
            .filter_map(|s| s.values().filter(|h| h.len() > 0).map(|h| h.since_segment).min())
            .min()
    }

    /// Puts samples back into a series' head (when sealing failed).
    pub fn restore(&self, id: SeriesId, samples: Vec<Sample>, segment: u64) {
        self.insert(id, &samples, segment);
    }

    pub fn sample_count(&self) -> usize {
        self.shards.iter().filter_map(|s| s.lock().ok()).map(|s| s.values().map(SeriesHead::len).sum::<usize>()).sum()
    }

    /// Bytes the head's samples take in memory (blocks and tails, not map overhead).
    pub fn memory_bytes(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok())
            .map(|s| s.values().map(SeriesHead::memory_bytes).sum::<usize>())
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
    fn frozen_blocks_take_late_samples_duplicates_and_replacements() {
        let head = Head::default();
        let samples: Vec<Sample> = (0..1000).map(|i| Sample::good(i * 1000, (i % 91) as f64 / 10.0)).collect();
        for part in samples.chunks(7) {
            head.insert(1, part, 1);
        }
        assert!(head.memory_bytes() < 1000 * 8, "compressed: {} bytes", head.memory_bytes());
        assert_eq!(head.range(1, 0, i64::MAX), samples);
        assert_eq!(head.range(1, 150_500, 400_000), samples[151..400].to_vec());
        // Late: before every block; duplicate and replacement inside a frozen block.
        let (late, _) = head.insert(1, &[Sample::good(-5, 1.0), Sample::good(3000, 0.3), Sample::good(4000, 9.0)], 2);
        assert_eq!(late, Inserted { added: 1, duplicates: 1, replaced: 1 });
        let all = head.range(1, i64::MIN, i64::MAX);
        assert_eq!(all.len(), 1001);
        assert_eq!((all[0].ts, all[5].value), (-5, 9.0));
        assert!(all.windows(2).all(|w| w[0].ts < w[1].ts));
        assert_eq!(head.first_ts(1), Some(-5));
        assert_eq!(head.last(1), samples.last().copied());
        let copy = head.copy_for_seal(1, 1).expect("copy");
        head.remove_sealed(1, &copy[..500]);
        assert_eq!(head.range(1, i64::MIN, i64::MAX), copy[500..].to_vec());
    }

    #[test]
    fn removing_a_sealed_copy_cuts_by_time_when_only_newer_samples_came_meanwhile() {
        let head = Head::default();
        let first: Vec<Sample> = (0..1000).map(|i| Sample::good(i * 10, (i % 7) as f64)).collect();
        head.insert(1, &first, 1);
        let copy = head.copy_for_seal(1, 1).expect("copy");
        // Written during the seal, all newer: enough to freeze blocks that straddle the cut.
        let newer: Vec<Sample> = (1000..1300).map(|i| Sample::good(i * 10, (i % 5) as f64)).collect();
        for part in newer.chunks(7) {
            head.insert(1, part, 2);
        }
        head.remove_sealed(1, &copy);
        assert_eq!(head.range(1, i64::MIN, i64::MAX), newer);
        assert_eq!(head.first_ts(1), Some(10_000));
        assert_eq!(head.min_since_segment(), Some(2));
    }

    #[test]
    fn sealing_copies_and_keeps_writes_made_meanwhile() {
        let head = Head::default();
        head.insert(1, &[Sample::good(10, 1.0), Sample::good(20, 2.0)], 1);
        let copy = head.copy_for_seal(1, 1).expect("copy");
        assert!(head.copy_for_seal(1, 1).is_none(), "one seal at a time");
        head.insert(1, &[Sample::good(40, 4.0), Sample::good(1, 0.1)], 3);
        assert_eq!(head.range(1, 0, 100).len(), 4, "still visible while sealing");
        head.remove_sealed(1, &copy);
        let left: Vec<i64> = head.range(1, 0, 100).iter().map(|s| s.ts).collect();
        assert_eq!(left, [1, 40]);
        assert!(head.copy_for_seal(1, 1).is_some(), "sealing can start again");
    }
}
