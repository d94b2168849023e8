//! The adaptive concurrency limit's decision rule: a latency-based limit in
//! the TCP Vegas / gradient family, pure (time and samples come in as
//! arguments) so it is tested without a clock or a runtime.
//!
//! Anchors, read and re-derived rather than copied: Netflix's
//! concurrency-limits `Gradient2Limit` (the limit is multiplied by a
//! gradient `tolerance * baseline / latency`, bounded to `[0.5, 1]`, and
//! smoothed) and Envoy's adaptive concurrency filter (the baseline is the
//! *minimum* latency measured while the limit is pinned to its floor, and it
//! is re-measured periodically so a permanent change of the backend becomes
//! the new normal).
//!
//! The rule, run once per sample window (see [`Gradient::update`]):
//! - **No-load latency** (the floor): the lowest window mean since the
//!   last *probe*. The first window and, after it, every `probe_interval` the next window runs at the
//!   minimum limit and its mean becomes the floor; the limit then goes back
//!   to where it was. A mean, not the fastest call: the calls are of mixed
//!   kinds (a read by id, an insert), and the mean of a mix at no load is
//!   what the mean under load is compared with; the fastest call of a
//!   window is the cheapest kind, against which any mix looks congested
//!   (the first version did that and sat at the minimum limit). Envoy
//!   likewise aggregates both with the same percentile.
//! - **Within tolerance** (mean latency of the window at most `tolerance`
//!   times the floor): the limit grows by its square root (Gradient2's queue
//!   allowance: a few calls may queue in the backend), but only when the
//!   window actually used at least half of it (a light load does not drive
//!   the limit to the maximum without evidence).
//! - **Beyond tolerance**: the limit is multiplied by
//!   `max(0.5, tolerance * floor / mean)`, smoothed by `smoothing` (so one
//!   bad window takes at most `smoothing / 2` of the limit away).
//! - The limit always stays in `[min, max]`.
//!
//! ```
//! use std::time::Duration;
//! use stratum_pool::gradient::{Gradient, Bounds, Window};
//!
//! let bounds = Bounds { min: 4, max: 128, initial: 16, tolerance: 2.0, smoothing: 0.2,
//!                       probe_interval: Duration::from_secs(10) };
//! let mut g = Gradient::new(bounds, 0);
//! assert_eq!(g.limit(), 4); // the first window measures the no-load latency at min
//! let probe = Window { samples: 20, sum_nanos: 20 * 1_000_000, max_in_flight: 4 };
//! assert_eq!(g.update(&probe, 50_000_000), 16);
//! let fast = Window { samples: 100, sum_nanos: 100 * 1_000_000, max_in_flight: 16 };
//! assert_eq!(g.update(&fast, 100_000_000), 20); // 16 + sqrt(16)
//! let slow = Window { samples: 100, sum_nanos: 100 * 8_000_000, max_in_flight: 20 };
//! assert!(g.update(&slow, 200_000_000) < 20);   // 8 ms against a 1 ms floor
//! ```

use std::time::Duration;

/// The bounds and tuning of the rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// The floor of the limit (at least 1).
    pub min: usize,
    /// The ceiling of the limit.
    pub max: usize,
    /// The limit before any sample.
    pub initial: usize,
    /// Mean latency up to this multiple of the no-load latency is accepted.
    pub tolerance: f64,
    /// The fraction of a decrease applied per window, in `(0, 1]`.
    pub smoothing: f64,
    /// How often the no-load latency is re-measured at the minimum limit.
    pub probe_interval: Duration,
}

/// What one sample window saw: the latencies of the calls that completed
/// in it and the most calls that were in flight at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    /// Completed calls.
    pub samples: u64,
    /// Their latencies added up, in nanoseconds.
    pub sum_nanos: u64,
    /// The most calls in flight at once during the window.
    pub max_in_flight: usize,
}

/// The rule's state between windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient {
    bounds: Bounds,
    limit: f64,
    /// Lowest window mean since the last probe (`u64::MAX`: none yet).
    floor: u64,
    /// When the last probe ended (or the rule started), in nanoseconds.
    probed_at: u64,
    /// During a probe window: the limit to go back to.
    probing: Option<f64>,
}

impl Gradient {
    /// A rule started at `now_nanos` whose first window is a probe at
    /// `min`; after it the limit is `bounds.initial` (brought inside
    /// `[min, max]`).
    pub fn new(bounds: Bounds, now_nanos: u64) -> Gradient {
        let (min, max) = Self::range(&bounds);
        // The first window is a probe, as Envoy starts: a floor measured at
        // the initial limit would already include queueing in the backend.
        Gradient {
            bounds,
            limit: min,
            floor: u64::MAX,
            probed_at: now_nanos,
            probing: Some((bounds.initial as f64).clamp(min, max)),
        }
    }

    fn range(bounds: &Bounds) -> (f64, f64) {
        let max = bounds.max.max(1) as f64;
        ((bounds.min.max(1) as f64).min(max), max)
    }

    /// The limit now (whole calls).
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// Whether the next window is a probe at the minimum limit.
    pub fn is_probing(&self) -> bool {
        self.probing.is_some()
    }

    /// The no-load latency, once a sample has been seen.
    pub fn no_load(&self) -> Option<Duration> {
        (self.floor != u64::MAX).then(|| Duration::from_nanos(self.floor))
    }

    /// Takes one window's samples at `now_nanos` and returns the new limit.
    /// A window without samples changes nothing.
    pub fn update(&mut self, w: &Window, now_nanos: u64) -> usize {
        if w.samples == 0 {
            return self.limit();
        }
        let (min, max) = Self::range(&self.bounds);
        let mean = w.sum_nanos as f64 / w.samples as f64;
        if let Some(before) = self.probing.take() {
            // The probe window ran at the minimum limit: its mean is the
            // no-load latency now, whatever was measured before.
            self.floor = mean as u64;
            self.probed_at = now_nanos;
            self.limit = before.clamp(min, max);
            return self.limit();
        }
        self.floor = self.floor.min(mean as u64);
        // A floor of 0 (a clock too coarse for the calls) must not make
        // every latency look infinitely worse: count it as 1 ns.
        let floor = self.floor.max(1) as f64;
        let limit = self.limit;
        if mean <= self.bounds.tolerance * floor {
            if (w.max_in_flight as f64) * 2.0 >= limit {
                self.limit = (limit + limit.sqrt().max(1.0)).min(max);
            }
        } else {
            let gradient = (self.bounds.tolerance * floor / mean).clamp(0.5, 1.0);
            let target = limit * gradient;
            self.limit = (limit - (limit - target) * self.bounds.smoothing).max(min);
        }
        self.limit = self.limit.clamp(min, max);
        let due = now_nanos.saturating_sub(self.probed_at)
            >= stratum_core::clock::duration_nanos(self.bounds.probe_interval);
        if due {
            self.probing = Some(self.limit);
            self.limit = min;
        }
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    fn bounds(min: usize, max: usize) -> Bounds {
        Bounds {
            min,
            max,
            initial: 16,
            tolerance: 2.0,
            smoothing: 0.2,
            probe_interval: Duration::from_secs(10),
        }
    }

    /// A rule past its first (probe) window, which measured `floor_ms`.
    fn started(b: Bounds, floor_ms: u64) -> Gradient {
        let mut g = Gradient::new(b, 0);
        assert!(g.is_probing());
        g.update(&window(floor_ms, b.min), 0);
        assert!(!g.is_probing());
        g
    }

    fn window(latency_ms: u64, in_flight: usize) -> Window {
        Window {
            samples: 50,
            sum_nanos: 50 * latency_ms * MS,
            max_in_flight: in_flight,
        }
    }

    #[test]
    fn rises_at_the_floor_and_falls_beyond_tolerance() {
        let mut g = started(bounds(4, 128), 2);
        let mut now = 0;
        let mut tick = || {
            now += 100 * MS;
            now
        };
        // At the floor and using the limit: +sqrt(limit) each window.
        assert_eq!(g.update(&window(2, 16), tick()), 20);
        assert_eq!(g.update(&window(2, 20), tick()), 24);
        assert_eq!(g.no_load(), Some(Duration::from_millis(2)));
        // Within tolerance (2x): still rising.
        assert_eq!(g.update(&window(4, 24), tick()), 29); // 24.47 + 4.95
        // 8 ms against a 2 ms floor with tolerance 2: gradient 0.5, smoothed
        // by 0.2: 10 % off per window.
        let before = g.limit;
        g.update(&window(8, 28), tick());
        assert!((g.limit - before * 0.9).abs() < 1e-9, "{}", g.limit);
        for _ in 0..40 {
            g.update(&window(8, 28), tick());
        }
        assert_eq!(g.limit(), 4, "sustained overload drives it to the minimum");
    }

    #[test]
    fn a_light_load_does_not_raise_the_limit() {
        let mut g = started(bounds(4, 128), 2);
        assert_eq!(g.update(&window(2, 7), 100 * MS), 16);
        assert_eq!(g.update(&window(2, 8), 200 * MS), 20);
    }

    #[test]
    fn the_floor_is_re_measured_at_the_minimum_limit() {
        let mut g = started(bounds(4, 128), 2);
        g.update(&window(2, 16), 100 * MS);
        // The backend got slower for good: 10 ms is now its normal.
        g.update(&window(10, 20), 5_000 * MS);
        assert_eq!(g.no_load(), Some(Duration::from_millis(2)));
        // The probe interval has passed: the next window runs at the minimum.
        assert_eq!(g.update(&window(10, 20), 10_000 * MS), 4);
        assert!(g.is_probing());
        let back = g.update(&window(10, 4), 10_100 * MS);
        assert!(!g.is_probing());
        assert_eq!(g.no_load(), Some(Duration::from_millis(10)));
        assert!(back > 4, "the limit goes back after the probe: {back}");
        // And now 10 ms is within tolerance: the limit rises again.
        assert!(g.update(&window(10, back), 10_200 * MS) > back);
    }

    #[test]
    fn empty_windows_change_nothing() {
        let mut g = Gradient::new(bounds(4, 128), 0);
        assert_eq!(g.update(&Window::default(), 100 * MS), 4);
        assert!(g.is_probing());
        assert_eq!(g.no_load(), None);
    }

    #[test]
    fn the_first_window_is_a_probe_at_the_minimum() {
        let mut g = Gradient::new(bounds(4, 128), 0);
        assert_eq!(g.limit(), 4);
        // Measured at 4 in flight: 1 ms. Then the initial limit.
        assert_eq!(g.update(&window(1, 4), 100 * MS), 16);
        assert_eq!(g.no_load(), Some(Duration::from_millis(1)));
        // 16 in flight queue in the backend: 3 ms is beyond 2x, it falls.
        assert!(g.update(&window(3, 16), 200 * MS) < 16);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Against a simple model: the limit is always in [min, max]; a
        /// window at the floor that uses the limit never lowers it (and
        /// raises it unless at max); a window whose mean is beyond the
        /// tolerance never raises it (and lowers it unless at min). Probe
        /// windows are exempt from both (they pin the limit to min and put
        /// it back).
        #[test]
        fn limit_follows_the_model(
            min in 1usize..32, span in 0usize..256, initial in 0usize..400,
            steps in proptest::collection::vec((1u64..50, 0u64..40, 0usize..400, 1u64..3_000), 1..60),
        ) {
            let b = Bounds { initial, ..bounds(min, min + span) };
            let mut g = Gradient::new(b, 0);
            let mut now = 0u64;
            for (lat_ms, extra_ms, in_flight, advance_ms) in steps {
                now += advance_ms * MS;
                let before = g.limit;
                let probing = g.is_probing();
                let floor_before = g.floor;
                let w = Window { samples: 10, sum_nanos: 10 * (lat_ms + extra_ms) * MS,
                                 max_in_flight: in_flight };
                let after = g.update(&w, now);
                prop_assert!(after >= min && after <= min + span, "{after} outside [{min}, {}]", min + span);
                if probing || g.is_probing() {
                    continue;
                }
                let mean = ((lat_ms + extra_ms) * MS) as f64;
                let floor = floor_before.min(mean as u64) as f64;
                if mean <= 2.0 * floor && in_flight as f64 * 2.0 >= before {
                    prop_assert!(g.limit >= before);
                    if before < (min + span) as f64 { prop_assert!(g.limit > before); }
                } else if mean > 2.0 * floor {
                    prop_assert!(g.limit <= before);
                    if before > min as f64 { prop_assert!(g.limit < before); }
                } else {
                    prop_assert_eq!(g.limit, before);
                }
            }
        }
    }
}
