//! One time source for the whole stack: the breaker's waits and call
//! durations and the cache's expiry read the same clock, so a test moves
//! both with one call and never sleeps.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The clock the facade hands to every layer it builds.
///
/// Each layer has its own small `Clock` trait (the layers do not know each
/// other); this adapter implements the breaker's and the cache's (each with
/// its feature) over one source. Production uses the cache's coarse clock (a
/// 1 ms tick read from an atomic; without the `cache` feature, `Instant`);
/// tests use [`StackClock::manual`].
///
/// ```
/// use std::time::Duration;
/// use stratum::StackClock;
///
/// let (clock, hand) = StackClock::manual();
/// hand.advance(Duration::from_secs(3));
/// assert_eq!(clock.now(), Duration::from_secs(3));
/// ```
#[derive(Clone)]
pub struct StackClock {
    source: Arc<dyn Source>,
}

/// Where a [`StackClock`] reads the time.
trait Source: Send + Sync + fmt::Debug + 'static {
    fn now_nanos(&self) -> u64;
}

#[cfg(feature = "cache")]
impl<C: stratum_cache::Clock> Source for C {
    fn now_nanos(&self) -> u64 {
        stratum_cache::Clock::now_nanos(self)
    }
}

/// Time since the clock was made, from `Instant` (the production source when
/// the cache, and its coarse clock, is compiled out).
#[cfg(not(feature = "cache"))]
#[derive(Debug)]
struct Monotonic(std::time::Instant);

#[cfg(not(feature = "cache"))]
impl Source for Monotonic {
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The hand of a manual [`StackClock`]: time moves only when it is advanced.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            })
            .ok();
    }

    /// The time on the clock.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

#[cfg(not(feature = "cache"))]
impl Source for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
    }
}

#[cfg(feature = "cache")]
impl stratum_cache::Clock for ManualClock {
    fn now(&self) -> Duration {
        ManualClock::now(self)
    }

    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
    }
}

impl fmt::Debug for StackClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StackClock").field(&self.source).finish()
    }
}

impl StackClock {
    /// The production clock: the cache's coarse clock (1 ms resolution), or
    /// `Instant` without the `cache` feature.
    pub fn system() -> StackClock {
        #[cfg(feature = "cache")]
        let source = Arc::new(stratum_cache::CoarseClock::new());
        #[cfg(not(feature = "cache"))]
        let source = Arc::new(Monotonic(std::time::Instant::now()));
        StackClock { source }
    }

    /// A clock that moves only when the returned hand is advanced.
    pub fn manual() -> (StackClock, ManualClock) {
        let hand = ManualClock::default();
        let clock = StackClock {
            source: Arc::new(hand.clone()),
        };
        (clock, hand)
    }

    /// A clock over any of the cache's clocks.
    #[cfg(feature = "cache")]
    pub fn from_source(source: impl stratum_cache::Clock) -> StackClock {
        StackClock {
            source: Arc::new(source),
        }
    }

    /// Time since the source's origin.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.source.now_nanos())
    }
}

impl Default for StackClock {
    fn default() -> Self {
        StackClock::system()
    }
}

#[cfg(feature = "cache")]
impl stratum_cache::Clock for StackClock {
    fn now(&self) -> Duration {
        StackClock::now(self)
    }

    fn now_nanos(&self) -> u64 {
        self.source.now_nanos()
    }
}

#[cfg(feature = "breaker")]
impl stratum_breaker::Clock for StackClock {
    fn now(&self) -> u64 {
        self.source.now_nanos()
    }
}
