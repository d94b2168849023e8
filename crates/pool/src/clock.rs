//! The injectable clock: every timing decision (idle and lifetime reaping,
//! the health-check skip window, leak detection, adaptive sizing) reads time
//! through stratum-core's one [`Clock`], re-exported here, so tests move
//! time forward instead of sleeping.
//!
//! The default is [`CoarseClock`]: the pool reads it on every checkout and
//! return, as one relaxed atomic load and no virtual call (the pool keeps
//! "this is the coarse clock" as a flag, see `Shared::now_nanos`), instead of
//! an [`Instant`](std::time::Instant) read (about 33 ns on this project's
//! virtual machines). Its 1 ms resolution is ample for what the pool times:
//! the health-check skip window (500 ms), idle timeouts and lifetimes
//! (minutes), leak detection (seconds); the acquire-latency histogram's
//! resolution becomes one tick. [`SystemClock`] gives nanoseconds at the
//! cost of the clock reads.
//!
//! ```
//! use stratum_pool::{Clock, ManualClock};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let before = clock.instant();
//! clock.advance(Duration::from_secs(5));
//! assert_eq!(clock.instant() - before, Duration::from_secs(5));
//! ```

pub use stratum_core::clock::{Clock, CoarseClock, ManualClock, SystemClock};

/// A shared, type-erased clock, as the pool stores it.
pub(crate) use stratum_core::clock::SharedClock;
