//! Time as the breaker sees it: a [`Clock`] trait, the production
//! [`SystemClock`] and a [`ManualClock`] that tests move by hand.
//!
//! Every wait, every call duration and every time-based window bucket is read
//! through a clock, so a test drives time forward instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic source of time, in nanoseconds since an origin the clock picks.
///
/// Only differences between two readings mean anything. The breaker reads the
/// clock when a call is timed ([`Breaker::call`](crate::Breaker::call)), when
/// a time-based window records, and while the breaker is open or half-open;
/// a count-based window in the closed state never reads it.
///
/// ```
/// use std::time::Duration;
/// use stratum_breaker::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_millis(5));
/// assert_eq!(clock.now() - start, 5_000_000);
/// ```
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since this clock's origin; never decreases.
    fn now(&self) -> u64;
}

/// The production clock: [`Instant`], counted from when the clock was made.
///
/// ```
/// use stratum_breaker::{Clock, SystemClock};
///
/// let clock = SystemClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        // 2^64 ns is 584 years of uptime: saturating is the honest answer past it.
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// Public so tests in other crates can drive a breaker (or anything else that
/// takes a [`Clock`]) without sleeping.
///
/// ```
/// use std::time::Duration;
/// use stratum_breaker::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let handle = clock.clone();
/// handle.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), 2_000_000_000);
/// clock.set(Duration::from_secs(10));
/// assert_eq!(handle.now(), 10_000_000_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by` (saturating at `u64::MAX` nanoseconds).
    pub fn advance(&self, by: Duration) {
        let by = duration_nanos(by);
        // fetch_update cannot fail with a closure that always returns Some.
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Sets the clock to `to` since its origin. Setting it backwards breaks
    /// the monotonic promise of [`Clock`]; the breaker tolerates it (waits are
    /// computed with saturating arithmetic) but tests should not rely on it.
    pub fn set(&self, to: Duration) {
        self.nanos.store(duration_nanos(to), Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
    }
}

impl<C: Clock> Clock for Arc<C> {
    fn now(&self) -> u64 {
        (**self).now()
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_saturates_instead_of_wrapping() {
        let clock = ManualClock::new();
        clock.set(Duration::from_nanos(u64::MAX - 1));
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now(), u64::MAX);
    }

    #[test]
    fn duration_nanos_saturates() {
        assert_eq!(duration_nanos(Duration::MAX), u64::MAX);
        assert_eq!(duration_nanos(Duration::from_micros(3)), 3_000);
    }
}
