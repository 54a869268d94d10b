//! Edge filters: per signal, decide which samples are worth sending ("move only
//! decision-relevant data"). Each filter takes one series' samples in time order and
//! returns the ones to send; the hub reconstructs the rest (step-hold for deadbands and
//! windows, straight lines between sent samples for the swinging door).
//!
//! Every filter passes a change of quality, and every sample that is not good, at once:
//! a sensor going bad is decision-relevant by definition. A heartbeat bounds how long a
//! filter may stay silent.

use model::sample::Sample;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A threshold in engineering units, or in percent of the signal's span (from the asset
/// model's physical or expected range). Written `0.5` or `"2%"` in the edge file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Absolute(f64),
    PercentOfSpan(f64),
}

impl Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Threshold::Absolute(v) => serializer.serialize_f64(*v),
            Threshold::PercentOfSpan(p) => serializer.serialize_str(&format!("{p}%")),
        }
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Threshold;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number in engineering units, or a percentage of span such as \"2%\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Threshold, E> {
                if v.is_finite() && v >= 0.0 { Ok(Threshold::Absolute(v)) } else { Err(E::custom("must be >= 0")) }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Threshold, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Threshold, E> {
                self.visit_f64(v as f64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Threshold, E> {
                let percent = v
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<f64>().ok())
                    .filter(|p| p.is_finite() && *p >= 0.0 && *p <= 100.0)
                    .ok_or_else(|| E::custom(format!("`{v}` is not a percentage such as \"2%\"")))?;
                Ok(Threshold::PercentOfSpan(percent))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Which aggregate a window filter sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    Min,
    Max,
    Mean,
}

/// A filter as configured for one signal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FilterSpec {
    /// Send every sample.
    All,
    /// Report by exception: send when the value moved by at least `threshold` from the
    /// last sent value (`0` = any change).
    Deadband {
        threshold: Threshold,
        #[serde(default)]
        heartbeat_ms: Option<i64>,
    },
    /// Swinging-door trending: send the fewest samples such that straight lines between
    /// them stay within `threshold` of every sample.
    SwingingDoor {
        threshold: Threshold,
        #[serde(default)]
        heartbeat_ms: Option<i64>,
    },
    /// One aggregate per window of `window_ms`, stamped with the window's start.
    Window { window_ms: i64, aggregate: Aggregate },
}

/// Why a filter cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "a percentage threshold needs the signal's span: declare physical_min/physical_max (or expected_min/expected_max) in the asset model, or give an absolute threshold"
    )]
    NoSpan,
    #[error("heartbeat_ms must be positive")]
    Heartbeat,
    #[error("window_ms must be positive")]
    Window,
}

/// A running filter for one series.
#[derive(Debug, Clone)]
pub struct Filter {
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    All,
    Deadband { threshold: f64, heartbeat: i64, last: Option<Sample> },
    Door(Door),
    Window { width: i64, aggregate: Aggregate, open: Option<Window> },
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    min: f64,
    max: f64,
    sum: f64,
    count: u32,
}

/// Swinging door with a guaranteed bound: the line from the last sent sample (the
/// anchor) to the next one sent must pass within `error` of every sample in between.
/// `pending` holds those samples with the slope interval `[lower, upper]` that still
/// satisfies all of them up to each one.
#[derive(Debug, Clone)]
struct Door {
    error: f64,
    heartbeat: i64,
    anchor: Option<Sample>,
    pending: Vec<(Sample, f64, f64)>,
}

/// Most samples a swinging door holds back before it sends one anyway.
const MAX_PENDING: usize = 4096;

impl Filter {
    /// Builds the filter; `span` is the signal's range (max - min) for percentages.
    pub fn new(spec: &FilterSpec, span: Option<f64>) -> Result<Self, FilterError> {
        let resolve = |t: &Threshold| match t {
            Threshold::Absolute(v) => Ok(*v),
            Threshold::PercentOfSpan(p) => span.filter(|s| *s > 0.0).map(|s| s * p / 100.0).ok_or(FilterError::NoSpan),
        };
        let heartbeat = |h: &Option<i64>| match h {
            None => Ok(i64::MAX),
            Some(ms) if *ms > 0 => Ok(*ms),
            Some(_) => Err(FilterError::Heartbeat),
        };
        let state = match spec {
            FilterSpec::All => State::All,
            FilterSpec::Deadband { threshold, heartbeat_ms } => {
                State::Deadband { threshold: resolve(threshold)?, heartbeat: heartbeat(heartbeat_ms)?, last: None }
            }
            FilterSpec::SwingingDoor { threshold, heartbeat_ms } => State::Door(Door {
                error: resolve(threshold)?,
                heartbeat: heartbeat(heartbeat_ms)?,
                anchor: None,
                pending: Vec::new(),
            }),
            FilterSpec::Window { window_ms, aggregate } => {
                if *window_ms <= 0 {
                    return Err(FilterError::Window);
                }
                State::Window { width: *window_ms, aggregate: *aggregate, open: None }
            }
        };
        Ok(Self { state })
    }

    /// Takes the next sample (in time order) and appends the samples to send to `out`.
    pub fn push(&mut self, sample: Sample, out: &mut Vec<Sample>) {
        match &mut self.state {
            State::All => out.push(sample),
            State::Deadband { threshold, heartbeat, last } => {
                let send = match last {
                    None => true,
                    Some(l) => {
                        l.quality != sample.quality
                            || !sample.quality.is_good()
                            || moved(l.value, sample.value, *threshold)
                            || sample.ts.saturating_sub(l.ts) >= *heartbeat
                    }
                };
                if send {
                    *last = Some(sample);
                    out.push(sample);
                }
            }
            State::Door(door) => door.push(sample, out),
            State::Window { width, aggregate, open } => {
                let start = sample.ts.div_euclid(*width) * *width;
                if open.is_some_and(|w| w.start != start)
                    && let Some(w) = open.take()
                {
                    out.push(window_sample(&w, *aggregate));
                }
                if !sample.quality.is_good() || !sample.value.is_finite() {
                    out.push(sample);
                    return;
                }
                let w = open.get_or_insert(Window {
                    start,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    sum: 0.0,
                    count: 0,
                });
                w.min = w.min.min(sample.value);
                w.max = w.max.max(sample.value);
                w.sum += sample.value;
                w.count += 1;
            }
        }
    }

    /// Sends what the filter still holds back (at shutdown, or before a gap).
    pub fn flush(&mut self, out: &mut Vec<Sample>) {
        match &mut self.state {
            State::All | State::Deadband { .. } => {}
            State::Door(door) => door.close(out),
            State::Window { aggregate, open, .. } => {
                if let Some(w) = open.take() {
                    out.push(window_sample(&w, *aggregate));
                }
            }
        }
    }
}

fn moved(from: f64, to: f64, threshold: f64) -> bool {
    if from.is_nan() != to.is_nan() {
        return true;
    }
    let delta = (to - from).abs();
    if threshold == 0.0 { to.to_bits() != from.to_bits() && delta != 0.0 } else { delta >= threshold }
}

fn window_sample(w: &Window, aggregate: Aggregate) -> Sample {
    let value = match aggregate {
        Aggregate::Min => w.min,
        Aggregate::Max => w.max,
        Aggregate::Mean => w.sum / f64::from(w.count),
    };
    Sample::good(w.start, value)
}

impl Door {
    fn push(&mut self, sample: Sample, out: &mut Vec<Sample>) {
        let Some(anchor) = self.anchor else {
            self.send(sample, out);
            return;
        };
        let dt = sample.ts.saturating_sub(anchor.ts);
        if sample.quality != anchor.quality
            || !sample.quality.is_good()
            || !sample.value.is_finite()
            || dt <= 0
            || dt >= self.heartbeat
            || self.pending.len() >= MAX_PENDING
        {
            self.close(out);
            self.send(sample, out);
            return;
        }
        let dt = dt as f64;
        let lower = (sample.value - self.error - anchor.value) / dt;
        let upper = (sample.value + self.error - anchor.value) / dt;
        let (l, u) = self.pending.last().map_or((lower, upper), |(_, l, u)| (l.max(lower), u.min(upper)));
        if l <= u {
            self.pending.push((sample, l, u));
            return;
        }
        // The doors opened past parallel: send the latest pending sample whose own line
        // from the anchor fits every sample before it, then start again from there.
        self.send_latest_fitting(out);
        let rest: Vec<Sample> = std::mem::take(&mut self.pending).into_iter().map(|(s, _, _)| s).collect();
        for s in rest {
            self.push(s, out);
        }
        self.push(sample, out);
    }

    /// Sends one pending sample (the latest that keeps the bound) and makes it the anchor;
    /// the samples after it stay in `pending` to be replayed by the caller.
    fn send_latest_fitting(&mut self, out: &mut Vec<Sample>) {
        let Some(anchor) = self.anchor else { return };
        let k = (0..self.pending.len())
            .rev()
            .find(|&k| {
                let (s, l, u) = self.pending[k];
                let slope = (s.value - anchor.value) / (s.ts - anchor.ts) as f64;
                slope >= l && slope <= u
            })
            .unwrap_or(0);
        let rest = self.pending.split_off(k + 1);
        if let Some((s, _, _)) = self.pending.pop() {
            self.send(s, out);
        }
        self.pending = rest;
    }

    /// Sends enough pending samples that every one is within the bound.
    fn close(&mut self, out: &mut Vec<Sample>) {
        while !self.pending.is_empty() {
            self.send_latest_fitting(out);
            let rest: Vec<Sample> = std::mem::take(&mut self.pending).into_iter().map(|(s, _, _)| s).collect();
            let mut replay = Vec::new();
            for s in rest {
                self.push(s, &mut replay);
            }
            out.extend(replay);
        }
    }

    fn send(&mut self, sample: Sample, out: &mut Vec<Sample>) {
        self.anchor = Some(sample);
        self.pending.clear();
        out.push(sample);
    }
}

/// How a filter did on a series: samples in and out, and the largest difference between
/// a sample and what the hub reconstructs from the sent ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fidelity {
    pub samples: usize,
    pub sent: usize,
    pub max_error: f64,
}

impl Fidelity {
    pub fn reduction(&self) -> f64 {
        self.samples as f64 / self.sent.max(1) as f64
    }
}

/// Runs `spec` over good samples (sorted by time) and measures the reconstruction:
/// straight lines for the swinging door, step-hold otherwise.
pub fn evaluate(spec: &FilterSpec, span: Option<f64>, samples: &[Sample]) -> Result<Fidelity, FilterError> {
    let mut filter = Filter::new(spec, span)?;
    let mut sent = Vec::new();
    for s in samples {
        filter.push(*s, &mut sent);
    }
    filter.flush(&mut sent);
    sent.sort_by_key(|s| s.ts);
    let linear = matches!(spec, FilterSpec::SwingingDoor { .. });
    let mut max_error: f64 = 0.0;
    let mut at = 0;
    for s in samples {
        while at + 1 < sent.len() && sent[at + 1].ts <= s.ts {
            at += 1;
        }
        let Some(base) = sent.get(at).filter(|b| b.ts <= s.ts) else { continue };
        let estimate = match (linear, sent.get(at + 1)) {
            (true, Some(next)) if next.ts > base.ts => {
                base.value + (next.value - base.value) * (s.ts - base.ts) as f64 / (next.ts - base.ts) as f64
            }
            _ => base.value,
        };
        max_error = max_error.max((s.value - estimate).abs());
    }
    Ok(Fidelity { samples: samples.len(), sent: sent.len(), max_error })
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::sample::Quality;

    /// A random walk with steps and plateaus, at 1 Hz.
    fn walk(seed: u64, n: usize) -> Vec<Sample> {
        let mut state = seed;
        let mut value = 50.0;
        (0..n)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let r = (state >> 33) as f64 / (1u64 << 31) as f64;
                value += if i % 500 < 100 { 0.0 } else { (r - 0.5) * 2.0 };
                if i % 997 == 0 {
                    value += 20.0;
                }
                Sample::good(i as i64 * 1000, (value * 100.0).round() / 100.0)
            })
            .collect()
    }

    #[test]
    fn swinging_door_keeps_its_bound_and_compresses() {
        for seed in 1..20 {
            let samples = walk(seed, 5000);
            for (error, at_least) in [(0.1, 1.2), (0.5, 2.0), (2.0, 5.0)] {
                let spec = FilterSpec::SwingingDoor { threshold: Threshold::Absolute(error), heartbeat_ms: None };
                let f = evaluate(&spec, None, &samples).expect("filter");
                assert!(f.max_error <= error + 1e-9, "seed {seed}, error {error}: {f:?}");
                assert!(f.reduction() > at_least, "seed {seed}, error {error}: {f:?}");
            }
        }
        // A straight ramp needs its two ends only.
        let ramp: Vec<Sample> = (0..1000).map(|i| Sample::good(i * 1000, i as f64 * 0.5)).collect();
        let spec = FilterSpec::SwingingDoor { threshold: Threshold::Absolute(0.01), heartbeat_ms: None };
        assert_eq!(evaluate(&spec, None, &ramp).expect("filter").sent, 2);
    }

    #[test]
    fn deadband_bound_heartbeat_and_percent_of_span() {
        let samples = walk(3, 5000);
        let spec = FilterSpec::Deadband { threshold: Threshold::PercentOfSpan(1.0), heartbeat_ms: Some(60_000) };
        let f = evaluate(&spec, Some(200.0), &samples).expect("filter");
        assert!(f.max_error < 2.0 && f.reduction() > 2.0, "{f:?}");
        let mut filter = Filter::new(&spec, Some(200.0)).expect("filter");
        let mut sent = Vec::new();
        let flat: Vec<Sample> = (0..600).map(|i| Sample::good(i * 1000, 7.0)).collect();
        for s in &flat {
            filter.push(*s, &mut sent);
        }
        let gaps: Vec<i64> = sent.windows(2).map(|w| w[1].ts - w[0].ts).collect();
        assert_eq!(sent.len(), 10, "a flat signal is sent once a minute: {gaps:?}");
        assert_eq!(Filter::new(&spec, None).err(), Some(FilterError::NoSpan));
    }

    #[test]
    fn quality_changes_and_bad_samples_always_pass() {
        let bad = Quality::BAD;
        let samples = vec![
            Sample::good(0, 1.0),
            Sample::good(1000, 1.0),
            Sample { ts: 2000, value: 1.0, quality: bad },
            Sample { ts: 3000, value: 1.0, quality: bad },
            Sample::good(4000, 1.0),
        ];
        for spec in [
            FilterSpec::Deadband { threshold: Threshold::Absolute(5.0), heartbeat_ms: None },
            FilterSpec::SwingingDoor { threshold: Threshold::Absolute(5.0), heartbeat_ms: None },
        ] {
            let mut filter = Filter::new(&spec, None).expect("filter");
            let mut sent = Vec::new();
            for s in &samples {
                filter.push(*s, &mut sent);
            }
            filter.flush(&mut sent);
            let times: Vec<i64> = sent.iter().map(|s| s.ts).collect();
            assert!(times.contains(&2000) && times.contains(&3000) && times.contains(&4000), "{spec:?}: {times:?}");
        }
    }

    #[test]
    fn windows_send_one_aggregate_each() {
        let samples: Vec<Sample> = (0..120).map(|i| Sample::good(i * 1000, i as f64)).collect();
        for (aggregate, first) in [(Aggregate::Min, 0.0), (Aggregate::Max, 59.0), (Aggregate::Mean, 29.5)] {
            let spec = FilterSpec::Window { window_ms: 60_000, aggregate };
            let mut filter = Filter::new(&spec, None).expect("filter");
            let mut sent = Vec::new();
            for s in &samples {
                filter.push(*s, &mut sent);
            }
            filter.flush(&mut sent);
            assert_eq!(sent.len(), 2);
            assert_eq!((sent[0].ts, sent[0].value, sent[1].ts), (0, first, 60_000));
        }
    }

    #[test]
    fn thresholds_read_numbers_and_percentages() {
        #[derive(Deserialize)]
        struct T {
            t: Threshold,
        }
        let read = |text: &str| serde_json::from_str::<T>(text).map(|t| t.t).map_err(|e| e.to_string());
        assert_eq!(read(r#"{"t": 0.5}"#), Ok(Threshold::Absolute(0.5)));
        assert_eq!(read(r#"{"t": 2}"#), Ok(Threshold::Absolute(2.0)));
        assert_eq!(read(r#"{"t": "2.5%"}"#), Ok(Threshold::PercentOfSpan(2.5)));
        assert!(read(r#"{"t": "lots"}"#).expect_err("not a number").contains("percentage"));
        assert!(read(r#"{"t": -1}"#).is_err());
    }
}
