//! The injectable clock: every rolling window and alert `for` duration reads
//! time through stratum-core's one [`Clock`], re-exported here, so tests
//! drive time by hand and never sleep.
//!
//! The monitor's default is [`SystemClock`] (exact), not the layers'
//! coarse clock: latency percentiles resolve well below a millisecond, and
//! [`LatencyTracker::time`](crate::LatencyTracker::time) measures with it.
//!
//! ```
//! use std::time::Duration;
//! use stratum_monitor::{Clock, ManualClock};
//!
//! let clock = ManualClock::new();
//! let start = clock.instant();
//! clock.advance(Duration::from_secs(30));
//! assert_eq!(clock.instant() - start, Duration::from_secs(30));
//! ```

pub use stratum_core::clock::{Clock, ManualClock, SystemClock};
