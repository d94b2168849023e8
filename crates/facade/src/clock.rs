//! One time source for the whole stack: the breaker's waits and call
//! durations and the cache's expiry read the same clock, so a test moves
//! both with one call and never sleeps.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The clock the facade hands to every layer it builds.
///
/// Each layer has its own small `Clock` trait (the layers do not know each
/// other); this adapter implements both the breaker's and the cache's over
/// one source. Production uses the cache's coarse clock (a 1 ms tick read
/// from an atomic); tests use [`StackClock::manual`].
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
    source: Arc<dyn stratum_cache::Clock>,
}

impl fmt::Debug for StackClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StackClock").field(&self.source).finish()
    }
}

impl StackClock {
    /// The production clock: the cache's coarse clock (1 ms resolution).
    pub fn system() -> StackClock {
        StackClock::from_source(stratum_cache::CoarseClock::new())
    }

    /// A clock that moves only when the returned hand is advanced.
    pub fn manual() -> (StackClock, stratum_cache::ManualClock) {
        let hand = stratum_cache::ManualClock::new();
        (StackClock::from_source(hand.clone()), hand)
    }

    /// A clock over any source.
    pub fn from_source(source: impl stratum_cache::Clock) -> StackClock {
        StackClock {
            source: Arc::new(source),
        }
    }

    /// Time since the source's origin.
    pub fn now(&self) -> Duration {
        self.source.now()
    }
}

impl Default for StackClock {
    fn default() -> Self {
        StackClock::system()
    }
}

impl stratum_cache::Clock for StackClock {
    fn now(&self) -> Duration {
        self.source.now()
    }

    fn now_nanos(&self) -> u64 {
        self.source.now_nanos()
    }
}

impl stratum_breaker::Clock for StackClock {
    fn now(&self) -> u64 {
        self.source.now_nanos()
    }
}
