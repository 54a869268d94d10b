//! Storage tiers. For each retention class there is a store of raw chunks and stores of
//! per-minute and per-hour rollups (`<dir>/<class>/{raw,minute,hour}`), each deleted by
//! its own retention. Rollups are maintained when a chunk is sealed: the hours the chunk
//! touches are recomputed from the raw chunks and written as one record that supersedes
//! older records for those hours, so late and replaced samples are reflected exactly.

use crate::SeriesId;
use crate::chunks::{ChunkMeta, ChunkStore, Record};
use crate::codec::{decode_chunk_range, decode_rollups, encode_chunk, encode_rollups, exact_sum};
use crate::query::{Bucket, aggregate, merge_latest_wins};
use crate::retention::Retention;
use crate::{Error, Result};
use model::RetentionClass;
use model::Sample;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A time range `[start, end)` in milliseconds.
pub type Span = (i64, i64);

/// A rollup record that says "too sparse to roll up: aggregate the samples".
const SPARSE: u8 = 0xff;

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;

/// A rollup resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Minute,
    Hour,
}

impl Resolution {
    pub fn millis(self) -> i64 {
        match self {
            Resolution::Minute => MINUTE,
            Resolution::Hour => HOUR,
        }
    }
}

pub(crate) struct Tiers {
    raw: Vec<ChunkStore>,
    minute: Vec<ChunkStore>,
    hour: Vec<ChunkStore>,
    seq: AtomicU64,
    /// Held while rollups are computed and written: a rollup written later has seen
    /// every raw chunk written before it, so the latest record for an hour is right.
    rolling: Mutex<()>,
}

fn floor(ts: i64, width: i64) -> i64 {
    ts.div_euclid(width) * width
}

impl Tiers {
    pub fn open(dir: &Path) -> Result<Self> {
        let open = |tier: &str| -> Result<Vec<ChunkStore>> {
            RetentionClass::ALL.iter().map(|c| ChunkStore::open(&dir.join(c.name()).join(tier))).collect()
        };
        let (raw, minute, hour) = (open("raw")?, open("minute")?, open("hour")?);
        let seq = raw.iter().chain(&minute).chain(&hour).map(ChunkStore::max_seq).max().unwrap_or(0);
        Ok(Self { raw, minute, hour, seq: AtomicU64::new(seq + 1), rolling: Mutex::new(()) })
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn rollup_stores(&self, resolution: Resolution) -> &[ChunkStore] {
        match resolution {
            Resolution::Minute => &self.minute,
            Resolution::Hour => &self.hour,
        }
    }

    /// Raw chunks of a series overlapping `[from, to)`, in write order.
    fn raw_overlapping(&self, id: SeriesId, from: i64, to: i64) -> Vec<(&ChunkStore, ChunkMeta)> {
        let mut metas: Vec<_> = self
            .raw
            .iter()
            .flat_map(|store| store.overlapping(id, from, to).into_iter().map(move |m| (store, m)))
            .collect();
        metas.sort_by_key(|(_, m)| m.seq);
        metas
    }

    /// Sealed samples of a series in `[from, to)`, oldest first; later writes win.
    pub fn raw_range(&self, id: SeriesId, from: i64, to: i64) -> Result<Vec<Sample>> {
        let mut all = Vec::new();
        self.raw_range_unmerged(id, from, to, &mut all)?;
        Ok(merge_latest_wins(all))
    }

    /// Appends the samples in `[from, to)` of every overlapping chunk, chunk by chunk in
    /// write order, not yet merged (`merge_latest_wins` of the result is `raw_range`).
    pub fn raw_range_unmerged(&self, id: SeriesId, from: i64, to: i64, out: &mut Vec<Sample>) -> Result<()> {
        for (store, meta) in self.raw_overlapping(id, from, to) {
            decode_chunk_range(&store.read(&meta)?, from, to, out)?;
        }
        Ok(())
    }

    /// The newest sealed sample of a series.
    pub fn raw_last(&self, id: SeriesId) -> Result<Option<Sample>> {
        let newest =
            self.raw.iter().filter_map(|store| Some((store, store.last(id)?))).max_by_key(|(_, m)| (m.end, m.seq));
        let Some((_, meta)) = newest else { return Ok(None) };
        // Later chunks may rewrite the newest timestamp; read everything covering it.
        Ok(self.raw_range(id, meta.end, meta.end + 1)?.pop())
    }

    /// Rollup buckets of a series starting in `[from, to)`; for each hour, the latest
    /// record that covers it wins. Also returns the ranges whose latest record says
    /// "sparse: aggregate the samples" (`[start, end)`), clipped to `[from, to)`.
    pub fn rollups(
        &self,
        resolution: Resolution,
        id: SeriesId,
        from: i64,
        to: i64,
    ) -> Result<(Vec<Bucket>, Vec<Span>)> {
        let mut metas: Vec<_> = self
            .rollup_stores(resolution)
            .iter()
            .flat_map(|store| store.overlapping(id, from, to).into_iter().map(move |m| (store, m)))
            .collect();
        metas.sort_by_key(|(_, m)| m.seq);
        let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
        let mut sparse: Vec<Span> = Vec::new();
        for (store, meta) in metas {
            let (start, end) = (meta.start, meta.end + 1);
            let stale: Vec<i64> = buckets.range(start..end).map(|(s, _)| *s).collect();
            for s in stale {
                buckets.remove(&s);
            }
            sparse = sparse
                .into_iter()
                .flat_map(|(a, b)| [(a, b.min(start)), (a.max(end), b)])
                .filter(|(a, b)| a < b)
                .collect();
            let payload = store.read(&meta)?;
            if payload == [SPARSE] {
                sparse.push((start, end));
            } else {
                for bucket in decode_rollups(&payload)? {
                    buckets.insert(bucket.start, bucket);
                }
            }
        }
        let sparse = sparse.into_iter().map(|(a, b)| (a.max(from), b.min(to))).filter(|(a, b)| a < b).collect();
        Ok((buckets.range(from..to).map(|(_, b)| *b).collect(), sparse))
    }

    /// The payload of a rollup record for `buckets` of `samples` good samples: the
    /// buckets, or the sparse marker when they would hold fewer than four samples each
    /// on average (a series read every few minutes gains nothing from minute rollups).
    fn rollup_payload(buckets: &[Bucket]) -> Result<Vec<u8>> {
        let samples: u64 = buckets.iter().map(|b| b.count).sum();
        if buckets.len() as u64 * 4 > samples { Ok(vec![SPARSE]) } else { encode_rollups(buckets) }
    }

    /// Durably writes sealed samples as raw chunks, then the rollups of the hours they
    /// touch. Each series appears at most once and is not being sealed elsewhere.
    pub fn persist(
        &self,
        sealed: &[(SeriesId, Vec<Sample>)],
        class_of: impl Fn(SeriesId) -> RetentionClass,
    ) -> Result<()> {
        let sealed: Vec<(&(SeriesId, Vec<Sample>), RetentionClass)> =
            sealed.iter().filter(|(_, s)| !s.is_empty()).map(|entry| (entry, class_of(entry.0))).collect();
        let mut raw: Vec<Vec<Record>> = per_class();
        let mut seqs = Vec::with_capacity(sealed.len());
        for ((id, samples), class) in &sealed {
            let seq = self.next_seq();
            seqs.push(seq);
            let (start, end) = (samples[0].ts, samples[samples.len() - 1].ts);
            raw[*class as usize].push(Record { id: *id, seq, start, end, payload: encode_chunk(samples)? });
        }
        for (store, records) in self.raw.iter().zip(raw) {
            store.append(records)?;
        }
        let _rolling = self.rolling.lock().map_err(|_| Error::Poisoned)?;
        let mut minute: Vec<Vec<Record>> = per_class();
        let mut hour: Vec<Vec<Record>> = per_class();
        for (((id, samples), class), seq) in sealed.iter().zip(seqs) {
            let from = floor(samples[0].ts, HOUR);
            let to = floor(samples[samples.len() - 1].ts, HOUR) + HOUR;
            if from < self.raw[*class as usize].expired_before() {
                // Its neighbours' raw samples are gone; recomputing would lose them.
                tracing::debug!(series = id, "late chunk older than retention: rollups left as they are");
                continue;
            }
            let overlapping = self.raw_overlapping(*id, from, to);
            let hours = if overlapping.len() == 1 && overlapping[0].1.seq == seq {
                minute_buckets(samples)
            } else {
                minute_buckets(&self.raw_range(*id, from, to)?)
            };
            let hourly = merge_buckets(&hours, HOUR);
            let end = to - 1;
            let minute_payload = Self::rollup_payload(&hours)?;
            minute[*class as usize].push(Record {
                id: *id,
                seq: self.next_seq(),
                start: from,
                end,
                payload: minute_payload,
            });
            let hour_payload = Self::rollup_payload(&hourly)?;
            hour[*class as usize].push(Record {
                id: *id,
                seq: self.next_seq(),
                start: from,
                end,
                payload: hour_payload,
            });
        }
        for (store, records) in self.minute.iter().zip(minute) {
            store.append(records)?;
        }
        for (store, records) in self.hour.iter().zip(hour) {
            store.append(records)?;
        }
        Ok(())
    }

    /// Deletes what every class keeps no longer; returns the number of segments deleted.
    pub fn enforce(&self, retention: &Retention, now: i64) -> Result<usize> {
        let mut deleted = 0;
        for (i, class) in RetentionClass::ALL.iter().enumerate() {
            let policy = retention.get(*class);
            deleted += self.raw[i].drop_expired(now.saturating_sub(policy.raw_ms))?;
            deleted += self.minute[i].drop_expired(now.saturating_sub(policy.minute_ms))?;
            deleted += self.hour[i].drop_expired(now.saturating_sub(policy.hour_ms))?;
        }
        Ok(deleted)
    }

    pub fn raw_chunk_count(&self) -> usize {
        self.raw.iter().map(ChunkStore::chunk_count).sum()
    }

    pub fn raw_bytes(&self) -> u64 {
        self.raw.iter().map(ChunkStore::disk_bytes).sum()
    }

    pub fn rollup_bytes(&self) -> u64 {
        self.minute.iter().chain(&self.hour).map(ChunkStore::disk_bytes).sum()
    }
}

/// Per-minute buckets of samples (sorted by time), with sums of decimal values
/// computed exactly.
fn minute_buckets(samples: &[Sample]) -> Vec<Bucket> {
    let mut buckets = aggregate(samples, MINUTE);
    let mut good = samples.iter().filter(|s| s.quality.is_good() && s.value.is_finite()).peekable();
    let mut values = Vec::with_capacity(64);
    for bucket in &mut buckets {
        values.clear();
        while let Some(s) = good.next_if(|s| floor(s.ts, MINUTE) == bucket.start) {
            values.push(s.value);
        }
        if let Some(sum) = exact_sum(&values) {
            bucket.sum = sum;
        }
    }
    buckets
}

/// One empty list of records per retention class.
fn per_class() -> Vec<Vec<Record>> {
    (0..RetentionClass::ALL.len()).map(|_| Vec::new()).collect()
}

/// Merges buckets (sorted by start, of a width dividing `width`) into buckets of `width`.
pub fn merge_buckets(buckets: &[Bucket], width: i64) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for b in buckets {
        let start = floor(b.start, width);
        match out.last_mut() {
            Some(m) if m.start == start => {
                m.count += b.count;
                m.min = m.min.min(b.min);
                m.max = m.max.max(b.max);
                m.sum += b.sum;
                m.last = b.last;
            }
            _ => out.push(Bucket { start, ..*b }),
        }
    }
    out
}
