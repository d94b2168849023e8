//! Time as the breaker sees it: stratum-core's one [`Clock`], re-exported so
//! `stratum_breaker::{Clock, CoarseClock, ManualClock, SystemClock}` keep
//! working.
//!
//! Every wait, every call duration and every time-based window bucket is read
//! through the breaker's clock, so a test drives time forward instead of
//! sleeping. The default is [`CoarseClock`]: a timed call
//! ([`Breaker::call`](crate::Breaker::call)) reads it twice, and two relaxed
//! atomic loads cost next to nothing where two `Instant` reads cost about
//! 66 ns (see `docs/breaker.md`). Its 1 ms resolution is ample for what the
//! breaker judges with time: slow-call thresholds, open and half-open waits
//! and time-based windows, all in the order of seconds. A call's duration
//! reads to within one tick; a breaker whose slow-call threshold is below a
//! few milliseconds should be built on [`SystemClock`].
//!
//! ```
//! use std::time::Duration;
//! use stratum_breaker::{Clock, ManualClock};
//!
//! let clock = ManualClock::new();
//! let start = clock.now_nanos();
//! clock.advance(Duration::from_millis(5));
//! assert_eq!(clock.now_nanos() - start, 5_000_000);
//! ```

pub use stratum_core::clock::{Clock, CoarseClock, ManualClock, SystemClock};

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) use stratum_core::clock::duration_nanos;
