//! The injectable time source behind every expiry decision: stratum-core's
//! one [`Clock`], re-exported so `stratum_cache::{Clock, CoarseClock,
//! ManualClock, SystemClock}` keep working.
//!
//! The cache never reads the wall clock directly: every TTL, TTI, refresh
//! and staleness decision goes through a `Clock`, so tests drive time with a
//! [`ManualClock`] instead of sleeping. The default, [`CoarseClock`], is
//! read on every lookup without a virtual call ([`coarse_now_nanos`]); its
//! readings run up to one tick (1 ms) ahead of the ticker's last look at
//! real time, so an entry expires up to 1 ms early rather than late.
//!
//! ```
//! use stratum_cache::{Clock, ManualClock};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let t0 = clock.now();
//! clock.advance(Duration::from_secs(5));
//! assert_eq!(clock.now() - t0, Duration::from_secs(5));
//! ```

pub use stratum_core::clock::{Clock, CoarseClock, ManualClock, SystemClock};

/// [`CoarseClock`]'s reading without a `dyn Clock` (the cache's default
/// clock is read this way on every lookup): one relaxed load.
pub(crate) use stratum_core::clock::coarse_nanos as coarse_now_nanos;
/// Converts a duration to the nanosecond ticks stored in entries.
pub(crate) use stratum_core::clock::duration_nanos as ticks;
