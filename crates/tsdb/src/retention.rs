//! Retention classes: how long raw samples, per-minute and per-hour rollups are kept.

use crate::{Error, Result};
use model::RetentionClass;

const DAY: i64 = 24 * 3600 * 1000;

/// How long one class keeps each resolution, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub raw_ms: i64,
    pub minute_ms: i64,
    pub hour_ms: i64,
}

/// A policy per retention class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    policies: [RetentionPolicy; 4],
}

impl Default for Retention {
    fn default() -> Self {
        let policy =
            |raw, minute, hour| RetentionPolicy { raw_ms: raw * DAY, minute_ms: minute * DAY, hour_ms: hour * DAY };
        let mut policies = [policy(90, 730, 3650); 4];
        policies[RetentionClass::HighRate as usize] = policy(14, 365, 3650);
        policies[RetentionClass::Diagnostic as usize] = policy(7, 90, 365);
        policies[RetentionClass::Counter as usize] = policy(1096, 1096, 3650);
        Self { policies }
    }
}

impl Retention {
    pub fn get(&self, class: RetentionClass) -> RetentionPolicy {
        self.policies[class as usize]
    }

    pub fn set(&mut self, class: RetentionClass, policy: RetentionPolicy) {
        self.policies[class as usize] = policy;
    }

    /// Applies an override such as `standard=90d/2y/10y` (raw/minute/hour; units h, d, y).
    pub fn apply(&mut self, spec: &str) -> Result<()> {
        let invalid = |why: String| Error::Invalid(format!("retention `{spec}`: {why}"));
        let (name, durations) = spec
            .split_once('=')
            .ok_or_else(|| invalid("expected CLASS=RAW/MINUTE/HOUR, e.g. standard=90d/2y/10y".into()))?;
        let class = RetentionClass::parse(name.trim()).ok_or_else(|| {
            let known: Vec<&str> = RetentionClass::ALL.iter().map(|c| c.name()).collect();
            invalid(format!("unknown class `{name}`; classes are {}", known.join(", ")))
        })?;
        let parts: Vec<&str> = durations.split('/').collect();
        let [raw, minute, hour] = parts.as_slice() else {
            return Err(invalid("give three durations RAW/MINUTE/HOUR, e.g. 90d/2y/10y".into()));
        };
        let policy = RetentionPolicy {
            raw_ms: duration(raw).map_err(&invalid)?,
            minute_ms: duration(minute).map_err(&invalid)?,
            hour_ms: duration(hour).map_err(&invalid)?,
        };
        self.set(class, policy);
        Ok(())
    }
}

/// `36h`, `90d`, `2y` in milliseconds.
fn duration(text: &str) -> std::result::Result<i64, String> {
    let text = text.trim();
    let unit = match text.chars().last() {
        Some('h') => 3600 * 1000,
        Some('d') => DAY,
        Some('y') => 365 * DAY,
        _ => return Err(format!("`{text}` needs a unit: h, d or y")),
    };
    match text[..text.len() - 1].parse::<i64>() {
        Ok(n) if n > 0 && n < 1000 * 365 * 24 => Ok(n * unit),
        _ => Err(format!("`{text}` is not a positive whole number of hours, days or years")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_and_bad_ones_say_why() {
        let mut retention = Retention::default();
        retention.apply("high_rate=36h/30d/2y").expect("valid");
        let policy = retention.get(RetentionClass::HighRate);
        assert_eq!((policy.raw_ms, policy.minute_ms, policy.hour_ms), (36 * 3600 * 1000, 30 * DAY, 730 * DAY));
        for (bad, says) in [
            ("fast=1d/1d/1d", "unknown class `fast`"),
            ("standard=1d/1d", "three durations"),
            ("standard=1d/1w/1y", "needs a unit"),
            ("standard=0d/1d/1y", "positive whole number"),
            ("standard", "expected CLASS="),
        ] {
            let error = retention.apply(bad).expect_err(bad).to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
        assert_eq!(retention.get(RetentionClass::HighRate), policy, "failed overrides change nothing");
    }
}
