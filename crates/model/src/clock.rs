//! The one seam for time. Components of the hub take a `ClockRef` instead of reading the
//! system clock, so that on-delays, shelving expiry, SLA windows and retention run under
//! virtual time in tests (`ManualClock`) and under the system clock in production.

use crate::date::Timestamp;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where the current time comes from.
pub trait Clock: Debug + Send + Sync + 'static {
    /// Now, in milliseconds since the Unix epoch (UTC).
    fn now(&self) -> Timestamp;

    /// `now()` as plain milliseconds.
    fn now_ms(&self) -> i64 {
        self.now().0
    }
}

/// How components hold a clock.
pub type ClockRef = Arc<dyn Clock>;

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

impl SystemClock {
    /// The system clock as a `ClockRef`.
    pub fn shared() -> ClockRef {
        Arc::new(SystemClock)
    }
}

/// A clock that moves only when told to: tests set and advance it.
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    pub fn new(at: Timestamp) -> Arc<Self> {
        Arc::new(Self { millis: AtomicI64::new(at.0) })
    }

    pub fn set(&self, at: Timestamp) {
        self.millis.store(at.0, Ordering::SeqCst);
    }

    /// Moves the clock forward by `millis` and returns the new time.
    pub fn advance(&self, millis: i64) -> Timestamp {
        Timestamp(self.millis.fetch_add(millis, Ordering::SeqCst) + millis)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.millis.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp(1_000));
        let shared: ClockRef = clock.clone();
        assert_eq!(shared.now_ms(), 1_000);
        assert_eq!(clock.advance(500), Timestamp(1_500));
        assert_eq!(shared.now(), Timestamp(1_500));
        clock.set(Timestamp(7));
        assert_eq!(shared.now_ms(), 7);
        assert!(SystemClock.now_ms() > 1_700_000_000_000);
    }
}
