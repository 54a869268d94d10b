//! Samples, their quality, and the key that names a series: what machines say, in the
//! words every crate shares (the edge reads them, the engine stores them, the rules will
//! evaluate them).

use std::fmt;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// A series: one signal or counter of one asset, e.g. `acme/plant-1/line-1/p-104` +
/// `bearing_vibration_rms`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub asset: String,
    pub signal: String,
}

impl SeriesKey {
    pub fn new(asset: impl Into<String>, signal: impl Into<String>) -> Self {
        Self { asset: asset.into(), signal: signal.into() }
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.asset, self.signal)
    }
}

/// Sample quality in the shape of an OPC UA StatusCode: the top two bits are the
/// severity (good, uncertain, bad) and bits 16..30 the sub-code. `0` is plain good, so
/// the common case compresses to nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Quality(pub u32);

/// The three OPC UA severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Good,
    Uncertain,
    Bad,
}

impl Quality {
    pub const GOOD: Quality = Quality(0);
    pub const UNCERTAIN: Quality = Quality(0x4000_0000);
    pub const BAD: Quality = Quality(0x8000_0000);

    /// A quality from a severity and an OPC UA sub-code (e.g. 0x0031 for Bad_SensorFailure's low bits).
    pub fn new(severity: Severity, sub_code: u16) -> Self {
        let top = match severity {
            Severity::Good => 0,
            Severity::Uncertain => 0x4000_0000,
            Severity::Bad => 0x8000_0000,
        };
        Quality(top | (u32::from(sub_code & 0x3fff) << 16))
    }

    pub fn severity(self) -> Severity {
        match self.0 >> 30 {
            0 => Severity::Good,
            1 => Severity::Uncertain,
            _ => Severity::Bad,
        }
    }

    pub fn sub_code(self) -> u16 {
        ((self.0 >> 16) & 0x3fff) as u16
    }

    pub fn is_good(self) -> bool {
        self.severity() == Severity::Good
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub ts: Millis,
    pub value: f64,
    pub quality: Quality,
}

impl Sample {
    pub fn good(ts: Millis, value: f64) -> Self {
        Self { ts, value, quality: Quality::GOOD }
    }

    /// Same timestamp, bit-identical value and same quality: a no-op when written again.
    pub fn same_as(&self, other: &Sample) -> bool {
        self.ts == other.ts && self.value.to_bits() == other.value.to_bits() && self.quality == other.quality
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_round_trips_severity_and_sub_code() {
        for severity in [Severity::Good, Severity::Uncertain, Severity::Bad] {
            let q = Quality::new(severity, 0x31);
            assert_eq!((q.severity(), q.sub_code()), (severity, 0x31));
        }
        assert!(Quality::GOOD.is_good());
        assert_eq!(Quality::BAD.severity(), Severity::Bad);
    }
}
