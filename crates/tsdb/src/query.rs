//! Pure computations over samples: merging sources, bucketed aggregation, and counter
//! deltas with resets and rollovers (the basis of metering).

use model::sample::{Millis, Sample};

/// Sorts by time and keeps, for each timestamp, the last sample in input order (sources
/// are passed oldest first, so the newest write wins).
pub(crate) fn merge_latest_wins(mut samples: Vec<Sample>) -> Vec<Sample> {
    // The usual case (sources that do not overlap, each in order) needs no work.
    if samples.windows(2).all(|w| w[0].ts < w[1].ts) {
        return samples;
    }
    // Stable sort keeps input order among equal timestamps.
    samples.sort_by_key(|s| s.ts);
    let mut out: Vec<Sample> = Vec::with_capacity(samples.len());
    for s in samples {
        match out.last_mut() {
            Some(last) if last.ts == s.ts => *last = s,
            _ => out.push(s),
        }
    }
    out
}

/// One aggregation bucket `[start, start + width)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start: Millis,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub first: f64,
    pub last: f64,
}

impl Bucket {
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// Aggregates good-quality samples (sorted by time) into buckets aligned to `width`.
pub fn aggregate(samples: &[Sample], width: Millis) -> Vec<Bucket> {
    let width = width.max(1);
    let mut out: Vec<Bucket> = Vec::new();
    for s in samples.iter().filter(|s| s.quality.is_good() && s.value.is_finite()) {
        let start = s.ts.div_euclid(width) * width;
        match out.last_mut() {
            Some(b) if b.start == start => {
                b.count += 1;
                b.min = b.min.min(s.value);
                b.max = b.max.max(s.value);
                b.sum += s.value;
                b.last = s.value;
            }
            _ => out.push(Bucket {
                start,
                count: 1,
                min: s.value,
                max: s.value,
                sum: s.value,
                first: s.value,
                last: s.value,
            }),
        }
    }
    out
}

/// How much a monotonic counter advanced.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CounterDelta {
    pub delta: f64,
    /// Times the counter went backwards (device restart or rollover).
    pub resets: u32,
    pub first_ts: Option<Millis>,
    pub last_ts: Option<Millis>,
}

/// The increase of a counter over samples sorted by time, ignoring bad-quality samples.
/// A decrease is a reset: with a `rollover` value the counter wrapped (the increase is
/// `rollover - previous + current`); without one it restarted from zero (`current`).
pub fn counter_delta(samples: &[Sample], rollover: Option<f64>) -> CounterDelta {
    let mut result = CounterDelta::default();
    let mut previous: Option<f64> = None;
    for s in samples.iter().filter(|s| s.quality.is_good() && s.value.is_finite()) {
        result.first_ts.get_or_insert(s.ts);
        result.last_ts = Some(s.ts);
        if let Some(p) = previous {
            if s.value >= p {
                result.delta += s.value - p;
            } else {
                result.resets += 1;
                result.delta += match rollover {
                    Some(r) if p <= r => r - p + s.value,
                    _ => s.value,
                };
            }
        }
        previous = Some(s.value);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Quality;

    fn s(ts: i64, v: f64) -> Sample {
        Sample::good(ts, v)
    }

    #[test]
    fn later_sources_win_on_equal_timestamps() {
        let merged = merge_latest_wins(vec![s(2, 1.0), s(1, 1.0), s(2, 5.0)]);
        assert_eq!(merged, vec![s(1, 1.0), s(2, 5.0)]);
    }

    #[test]
    fn buckets_skip_bad_quality() {
        let samples = [s(0, 1.0), s(500, 3.0), Sample { ts: 700, value: 99.0, quality: Quality::BAD }, s(1000, 10.0)];
        let buckets = aggregate(&samples, 1000);
        assert_eq!(buckets.len(), 2);
        assert_eq!((buckets[0].count, buckets[0].min, buckets[0].max, buckets[0].mean()), (2, 1.0, 3.0, 2.0));
        assert_eq!((buckets[1].first, buckets[1].last), (10.0, 10.0));
    }

    #[test]
    fn counters_with_resets_and_rollover() {
        let restart = counter_delta(&[s(0, 100.0), s(1, 110.0), s(2, 5.0), s(3, 7.0)], None);
        assert_eq!((restart.delta, restart.resets), (17.0, 1));
        let wrap = counter_delta(&[s(0, 65530.0), s(1, 65535.0), s(2, 4.0)], Some(65536.0));
        assert_eq!((wrap.delta, wrap.resets), (10.0, 1));
        let gap = counter_delta(&[s(0, 1.0), Sample { ts: 1, value: 0.0, quality: Quality::BAD }, s(2, 3.0)], None);
        assert_eq!((gap.delta, gap.resets), (2.0, 0));
    }
}
