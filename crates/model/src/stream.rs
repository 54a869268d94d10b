//! The stream of accepted samples, as its consumers see it: every write the hub
//! acknowledged, in the order it was made durable, each at a `Position` a durable
//! consumer persists together with its own state.

use crate::sample::{Sample, SeriesKey};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where an accepted write sits in the stream: its WAL segment in the high 32 bits and
/// its index within the segment in the low 32. Positions only grow, across restarts too
/// (a reopened log starts a new segment); `Position::START` is before every write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Position(pub u64);

impl Position {
    pub const START: Position = Position(0);

    pub fn new(segment: u64, index: u32) -> Self {
        Position((segment << 32) | u64::from(index))
    }

    pub fn segment(self) -> u64 {
        self.0 >> 32
    }

    pub fn index(self) -> u32 {
        (self.0 & 0xffff_ffff) as u32
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment(), self.index())
    }
}

/// How a delivered sample relates to what was stored for its time stamp before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing was stored at this time stamp.
    New,
    /// A different value or quality was stored at this time stamp; this one replaces it.
    Replacement,
}

/// One series' part of an accepted write: its samples in time-stamp order, one per time
/// stamp, without the exact duplicates of samples stored before (those are no-ops).
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedSeries {
    pub key: SeriesKey,
    pub samples: Vec<Sample>,
    /// Indices into `samples` (ascending) of the ones that replaced a stored sample.
    pub replaced: Vec<u32>,
}

impl AcceptedSeries {
    /// Each sample with its change.
    pub fn changes(&self) -> impl Iterator<Item = (Sample, Change)> + '_ {
        let mut replaced = self.replaced.iter().peekable();
        self.samples.iter().enumerate().map(move |(i, sample)| {
            if replaced.peek().is_some_and(|r| **r as usize == i) {
                replaced.next();
                (*sample, Change::Replacement)
            } else {
                (*sample, Change::New)
            }
        })
    }
}

/// One acknowledged write, as delivered to the stream's consumers.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedWrite {
    pub position: Position,
    /// Queued at the edge while the hub was unreachable and replayed later: old data,
    /// not news (live rules and consoles can tell it from fresh samples).
    pub historical: bool,
    /// Series with at least one delivered sample, in the order they were written.
    pub series: Vec<AcceptedSeries>,
}

impl AcceptedWrite {
    /// Delivered samples in all series.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_segment_then_index() {
        let a = Position::new(3, 7);
        assert_eq!((a.segment(), a.index()), (3, 7));
        assert!(Position::new(3, u32::MAX) < Position::new(4, 0));
        assert!(Position::START < Position::new(1, 0));
        assert_eq!(a.to_string(), "3:7");
    }

    #[test]
    fn changes_mark_the_replacements() {
        let series = AcceptedSeries {
            key: SeriesKey::new("a", "s"),
            samples: vec![Sample::good(1, 1.0), Sample::good(2, 2.0), Sample::good(3, 3.0)],
            replaced: vec![1],
        };
        let kinds: Vec<Change> = series.changes().map(|(_, c)| c).collect();
        assert_eq!(kinds, [Change::New, Change::Replacement, Change::New]);
    }
}
