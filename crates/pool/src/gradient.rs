//! The adaptive concurrency limit's decision rule: a hill climber on
//! *power* (completed calls per second over their mean latency) under a
//! latency guard of the TCP Vegas / gradient family, pure (time and
//! samples come in as arguments) so it is tested without a clock or a
//! runtime.
//!
//! Anchors, read and re-derived rather than copied: Netflix's
//! concurrency-limits `Gradient2Limit` (the limit is multiplied by a
//! gradient `tolerance * baseline / latency`, bounded to `[0.5, 1]`, and
//! smoothed), Envoy's adaptive concurrency filter (the baseline is the
//! *minimum* latency measured while the limit is pinned to its floor, and it
//! is re-measured periodically so a permanent change of the backend becomes
//! the new normal) and Caffeine's hill climber (it moves the window size a
//! step, keeps the direction while the hit ratio improves and turns back
//! when it worsens; here the measure is power).
//!
//! Why power, Kleinrock's throughput over delay, and neither goodput nor
//! latency alone: a latency-only rule sat near its floor where the
//! callers and the backend share the cores (16-24 while 32 and 64 served
//! more), and let a saturated backend's limit climb to the tolerance's
//! bound for no more goodput. Goodput alone (the rule's measure until
//! 2026-12-04) kept every step that completed 3 % more calls, whatever it
//! cost in latency: with 64 callers on two cores shared with the
//! database, a step from 4 to 8 in flight completed about a quarter more
//! database calls at twice the latency, and the limit wandered up to 24,
//! where each caller waited several times as long. Power rises with a step
//! that completes more calls at no more latency (a backend with room),
//! falls with one that completes the same calls at more latency (a
//! saturated one, as before), and falls with one whose latency grows
//! faster than its goodput: its maximum is the knee, the most calls
//! completed for the least waiting (the operating point TCP BBR aims at).
//! Focused sweeps (docs/pool.md, "Power, not goodput") moved the 64-caller
//! line from 77 % to 91 % of the best fixed limit, the same runs' p99 from
//! 50 ms to 17 ms.
//!
//! The rule, run once per sample window (see [`Gradient::update`]):
//! - **No-load latency** (the floor): the lowest window mean since the
//!   last *probe*. The first window and, after it, every `probe_interval`
//!   the next window runs at the minimum limit and its mean becomes the
//!   floor; the limit then goes back to where it was. A mean, not the
//!   fastest call: the calls are of mixed kinds (a read by id, an insert),
//!   and the mean of a mix at no load is what the mean under load is
//!   compared with; the fastest call of a window is the cheapest kind,
//!   against which any mix looks congested (the first version did that and
//!   sat at the minimum limit). Envoy likewise aggregates both with the
//!   same percentile.
//! - **The guard, beyond tolerance** (mean latency of the window more than
//!   `tolerance` times the floor: calls queue in the backend, or it slowed
//!   down): the limit is multiplied by `max(0.5, tolerance * floor /
//!   mean)`, smoothed by `smoothing` (so one bad window takes at most
//!   `smoothing / 2` of the limit away), and the climb starts afresh.
//! - **Not reached** (the most calls in flight in the window stayed below
//!   the limit): the limit decided nothing and the window's goodput is the
//!   load's, so the limit holds: a light load neither raises it without
//!   evidence nor walks it down into a queue.
//! - **The climb** (within tolerance and the limit reached): a step of an
//!   eighth of the limit (at least one call), up at first; then in the same
//!   direction while the power rose by more than 3 % over the window
//!   before the step, back when it fell by more, and down when it stayed
//!   within 3 % (as many calls complete with fewer in flight, and each
//!   waits less). A window whose length is unknown is judged by latency
//!   alone: the limit grows by its square root (Gradient2's queue
//!   allowance).
//! - **Back to the minimum**: the first window after a probe that used
//!   the limit and had no more power than the probe had at the minimum
//!   (within 3 %) sends the limit to the minimum at once: the slots above
//!   it bought less than they cost in waiting (64 callers sharing two
//!   cores with the backend, where 16 in flight complete a quarter more
//!   calls than 4, each waiting several times as long).
//! - **A probe short of sure** (at least half of [`SURE_SAMPLES`] calls,
//!   fewer than all) runs one more window at the minimum and is judged on
//!   the two together; a thinner probe is judged at once.
//! - **Sure windows**: only a window of at least [`SURE_SAMPLES`] calls
//!   (its goodput known within 6 %) can take the limit below `initial`,
//!   and only a sure probe can send it back to the minimum. Where calls
//!   complete in bursts of a few dozen per window (10,000 callers crowd
//!   the runtime), the climber and the guard still move the limit, but it
//!   stays at or above `initial` (or where a sure window left it).
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
//! const MS: u64 = 1_000_000;
//! // `in_flight` calls of `ms` each, for 100 ms.
//! let w = |ms: u64, in_flight: u64| Window {
//!     samples: in_flight * 100 / ms, sum_nanos: in_flight * 100 * MS,
//!     max_in_flight: in_flight as usize, elapsed_nanos: 100 * MS,
//! };
//! assert_eq!(g.update(&w(1, 4), 100 * MS), 16);
//! assert_eq!(g.update(&w(1, 16), 200 * MS), 18);  // reached, healthy: a step up
//! assert_eq!(g.update(&w(1, 18), 300 * MS), 20);  // goodput rose: another
//! assert_eq!(g.update(&w(1, 10), 400 * MS), 20);  // not reached: holds
//! assert!(g.update(&w(8, 20), 500 * MS) < 20);    // 8 ms against a 1 ms floor
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
/// in it, the most calls that were in flight at once, and how long it
/// lasted (so `samples / elapsed` is the window's goodput).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    /// Completed calls.
    pub samples: u64,
    /// Their latencies added up, in nanoseconds.
    pub sum_nanos: u64,
    /// The most calls in flight at once during the window.
    pub max_in_flight: usize,
    /// How long the window lasted, in nanoseconds (0: unknown, and the
    /// window is judged by latency alone).
    pub elapsed_nanos: u64,
}

impl Window {
    /// Completed calls per second, when the duration is known.
    pub fn goodput(&self) -> Option<f64> {
        (self.elapsed_nanos > 0).then(|| self.samples as f64 * 1e9 / self.elapsed_nanos as f64)
    }

    /// Kleinrock's power: the goodput over the calls' mean latency in
    /// seconds, when the duration is known (a mean of 0, a clock too coarse
    /// for the calls, counts as 1 ns).
    pub fn power(&self) -> Option<f64> {
        let mean_seconds = (self.sum_nanos.max(1) as f64 / self.samples.max(1) as f64) / 1e9;
        Some(self.goodput()? / mean_seconds)
    }
}

/// The climber's step: this fraction of the limit (at least one call).
const STEP: f64 = 0.125;

/// Goodput within this fraction of the previous step's counts as the same
/// (a window of a few hundred calls on a shared machine differs from the
/// next by a few per cent without any change).
const SAME: f64 = 0.03;

/// The fewest completed calls a window needs to take the limit below the
/// initial limit: enough that the window's goodput, a count of Poisson-like
/// arrivals, is known to within twice the 3 % the climber counts as the
/// same (one standard deviation is `1 / sqrt(samples)`): 278. A thinner
/// window (a runtime so crowded that calls complete in bursts, 10 to 300
/// per 100 ms window at 10,000 tasks) still moves the limit, but no lower
/// than the initial limit.
pub const SURE_SAMPLES: u64 = (1.0 / (2.0 * SAME * 2.0 * SAME)) as u64 + 1;

/// The climber's direction and what the window before its last step saw.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Climb {
    /// The direction of the last step (or of the next, when there is
    /// nothing to compare with).
    up: bool,
    /// The power of the window before the last step (none: the next
    /// window that reaches the limit steps in `up`'s direction without
    /// comparing).
    power: Option<f64>,
}

impl Climb {
    /// A climb with nothing to compare with: the next window that reaches
    /// the limit steps in `up`'s direction.
    const fn afresh(up: bool) -> Climb {
        Climb { up, power: None }
    }
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
    /// The power of the last probe window, when it was sure (see
    /// [`SURE_SAMPLES`]), until the next climber's step is judged.
    at_min: Option<f64>,
    /// The climber's state.
    climb: Climb,
    /// A probe window that came short of sure by less than half, kept
    /// while the probe runs one more window to finish it.
    partial_probe: Option<Window>,
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
            at_min: None,
            climb: Climb::afresh(true),
            partial_probe: None,
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
        // A probe short of sure by less than half runs one more window
        // and is judged on both together: at 64 callers a probe completes
        // a few hundred calls a window, and the one at the start, while
        // the first connections open, often came short (88-200), so the
        // back-to-the-minimum rule could not fire. A probe with fewer
        // calls (a few dozen at 10,000 callers) would need many windows
        // at the minimum and is judged thin at once.
        let joined;
        let w = match self.partial_probe.take() {
            // (Held only while probing: the probe is judged below.)
            Some(p) => {
                joined = Window {
                    samples: p.samples.saturating_add(w.samples),
                    sum_nanos: p.sum_nanos.saturating_add(w.sum_nanos),
                    max_in_flight: p.max_in_flight.max(w.max_in_flight),
                    elapsed_nanos: p.elapsed_nanos.saturating_add(w.elapsed_nanos),
                };
                &joined
            }
            _ if self.probing.is_some()
                && w.samples < SURE_SAMPLES
                && w.samples >= SURE_SAMPLES.div_ceil(2) =>
            {
                self.partial_probe = Some(*w);
                return self.limit();
            }
            _ => w,
        };
        let mean = w.sum_nanos as f64 / w.samples as f64;
        let sure = w.samples >= SURE_SAMPLES;
        if let Some(before) = self.probing.take() {
            // The probe window ran at the minimum limit: its mean is the
            // no-load latency now, whatever was measured before.
            self.floor = mean as u64;
            self.at_min = w.power().filter(|_| sure);
            self.probed_at = now_nanos;
            self.limit = before.clamp(min, max);
            return self.limit();
        }
        self.floor = self.floor.min(mean as u64);
        // A thin window cannot take the limit below the initial limit (or
        // below where it is, if a sure window took it lower): its goodput
        // and mean are too noisy to tell a limit that sheds load for
        // nothing from one that sheds it to the backend's benefit.
        let lowest = if sure {
            min
        } else {
            (self.bounds.initial as f64).clamp(min, max).min(self.limit)
        };
        // A floor of 0 (a clock too coarse for the calls) must not make
        // every latency look infinitely worse: count it as 1 ns.
        let floor = self.floor.max(1) as f64;
        let limit = self.limit;
        // The first window after a probe, against the probe's: when the
        // limit it went back to, used, had no more power than the minimum
        // had (a sure window of each), the slots above the minimum bought
        // less than they cost in waiting, and the limit goes to the
        // minimum at once instead of an eighth a window.
        let no_better = self.at_min.take().is_some_and(|at_min| {
            sure && w.max_in_flight >= self.limit()
                && w.power().is_some_and(|p| p <= at_min * (1.0 + SAME))
        });
        if no_better {
            self.limit = lowest;
            self.climb = Climb::afresh(true);
        } else if mean > self.bounds.tolerance * floor {
            // The guard: calls queue in the backend (or it slowed down).
            // At least one climber's step: a mean just past the tolerance
            // gives a gradient of almost 1, and a limit that only inches
            // down while every window stays just past it would stay there.
            let gradient = (self.bounds.tolerance * floor / mean).clamp(0.5, 1.0);
            let target = limit * gradient;
            let smoothed = limit - (limit - target) * self.bounds.smoothing;
            self.limit = smoothed.min(limit - (limit * STEP).max(1.0)).max(lowest);
            // Too many in flight: the climb goes on downward.
            self.climb = Climb::afresh(false);
        } else if w.max_in_flight < self.limit() {
            // The limit was not reached: it decided nothing in this window,
            // and the goodput is the load's, not the limit's. Hold (a
            // light load neither raises nor lowers it); once the load
            // reaches it, the climb starts upward.
            self.climb = Climb::afresh(true);
        } else {
            self.climb(w, limit, lowest);
        }
        self.limit = self.limit.clamp(lowest, max);
        let due = now_nanos.saturating_sub(self.probed_at)
            >= stratum_core::clock::duration_nanos(self.bounds.probe_interval);
        if due {
            self.probing = Some(self.limit);
            self.limit = min;
            // After the probe the climb starts afresh, as at the start (the
            // probe window's goodput is the minimum's: not comparable).
            self.climb = Climb::afresh(true);
        }
        self.limit()
    }

    /// One step of the hill climber, in a window that reached the limit
    /// and stayed within tolerance: keep the direction while power
    /// improves, turn back when it falls, and step down when it stays the
    /// same (as many calls complete with fewer in flight: each waits less).
    fn climb(&mut self, w: &Window, limit: f64, lowest: f64) {
        let Some(power) = w.power() else {
            // No duration: latency within tolerance is all there is.
            self.limit = limit + limit.sqrt().max(1.0);
            return;
        };
        let last = self.climb;
        let up = match last.power {
            None => last.up,
            Some(p) if power > p * (1.0 + SAME) => last.up,
            Some(p) if power < p * (1.0 - SAME) => !last.up,
            Some(_) => false,
        };
        // At a bound the only step is away from it (a step into it would
        // change nothing, and the next window would find power the same
        // and step into it again).
        let (_, max) = Self::range(&self.bounds);
        let up = (up || limit <= lowest) && limit < max;
        let step = (limit * STEP).max(1.0);
        self.limit = if up { limit + step } else { limit - step };
        self.climb = Climb {
            up,
            power: Some(power),
        };
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

    /// A 1 s window with `in_flight` calls in flight throughout, each
    /// taking `latency_ms`: by Little's law `in_flight / latency` complete
    /// per second (enough calls, in these tests, for a sure window).
    fn window(latency_ms: u64, in_flight: usize) -> Window {
        let samples = (in_flight as u64 * 1_000 / latency_ms).max(1);
        Window {
            samples,
            sum_nanos: samples * latency_ms * MS,
            max_in_flight: in_flight,
            elapsed_nanos: 1_000 * MS,
        }
    }

    /// `window`, cut to `samples` calls in a 100 ms window (the same mean).
    fn thin(latency_ms: u64, in_flight: usize, samples: u64) -> Window {
        Window {
            samples,
            sum_nanos: samples * latency_ms * MS,
            max_in_flight: in_flight,
            elapsed_nanos: 100 * MS,
        }
    }

    /// A backend whose calls take `no_load_ms` up to `knee` calls in
    /// flight (goodput grows with them), beyond which the excess queues and
    /// each call in flight costs the others a little more (goodput falls 2 %
    /// per knee's worth of excess): the window the rule sees at its current
    /// limit, all of it used (a closed loop with more callers than the
    /// limit).
    fn saturated(g: &Gradient, knee: f64, no_load_ms: f64) -> Window {
        let in_flight = g.limit() as f64;
        let excess = (in_flight / knee - 1.0).max(0.0);
        let latency_ms = no_load_ms * (1.0 + excess) * (1.0 + 0.02 * excess);
        let samples = (in_flight * 1_000.0 / latency_ms).max(1.0) as u64;
        Window {
            samples,
            sum_nanos: (samples as f64 * latency_ms * MS as f64) as u64,
            max_in_flight: g.limit(),
            elapsed_nanos: 1_000 * MS,
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
        // At the floor, using the limit: a first step up by an eighth ...
        assert_eq!(g.update(&window(2, 16), tick()), 18);
        // ... and another, since the goodput rose with it (9,000/s > 8,000/s).
        assert_eq!(g.update(&window(2, 18), tick()), 20); // 20.25
        assert_eq!(g.no_load(), Some(Duration::from_millis(2)));
        // Within tolerance (2x) but fewer calls complete (5,000/s): turn back.
        assert_eq!(g.update(&window(4, 20), tick()), 17); // 20.25 - 2.53
        // 8 ms against a 2 ms floor with tolerance 2: gradient 0.5, smoothed
        // by 0.2: 10 % off; a step (12.5 %) is more.
        let before = g.limit;
        g.update(&window(8, 17), tick());
        assert!((g.limit - before * 0.875).abs() < 1e-9, "{}", g.limit);
        for _ in 0..40 {
            g.update(&window(8, 28), tick());
        }
        assert_eq!(g.limit(), 4, "sustained overload drives it to the minimum");
    }

    #[test]
    fn a_light_load_does_not_raise_the_limit() {
        let mut g = started(bounds(4, 128), 2);
        // The limit is never reached: it decided nothing, and holds.
        assert_eq!(g.update(&window(2, 7), 100 * MS), 16);
        assert_eq!(g.update(&window(2, 15), 200 * MS), 16);
        // Reached: the climb starts.
        assert_eq!(g.update(&window(2, 16), 300 * MS), 18);
    }

    #[test]
    fn a_light_load_does_not_lower_the_limit() {
        // The old rule stepped down whenever goodput stopped rising, in use
        // or not; a limit the load never reaches must not be walked down
        // into it (it would queue and refuse a light load).
        let mut g = started(bounds(4, 128), 2);
        for i in 1..=20 {
            assert_eq!(g.update(&window(3, 10), i * 100 * MS), 16);
        }
    }

    #[test]
    fn the_climber_finds_the_knee_where_latency_allows_more() {
        // Goodput stops growing at 16 in flight; latency is within the
        // tolerance up to 32. The latency rule alone climbed to 32 (twice
        // the calls in flight, twice the latency, no more throughput); the
        // climber turns back when goodput stops rising and stays near 16.
        let mut g = started(bounds(4, 128), 2);
        let mut seen = Vec::new();
        for i in 1..=60 {
            let w = saturated(&g, 16.0, 2.0);
            seen.push(g.update(&w, i * 100 * MS));
        }
        let late = &seen[20..];
        assert!(
            late.iter().all(|l| (12..=22).contains(l)),
            "the limit wandered off the knee: {seen:?}"
        );
    }

    #[test]
    fn falling_goodput_turns_the_climber_back() {
        let mut g = started(bounds(4, 128), 2);
        assert_eq!(g.update(&window(2, 16), 100 * MS), 18); // up, 8,000/s
        // 3 ms at 18: 6,000/s, fewer than before the step: back down.
        assert_eq!(g.update(&window(3, 18), 200 * MS), 15); // 18 - 2.25
        // 2 ms at 15: 7,500/s, more than at 18: keep going down.
        assert_eq!(g.update(&window(2, 15), 300 * MS), 13); // 15.75 - 1.97
        // 2 ms at 13: 6,500/s, fewer: up again.
        assert!(g.update(&window(2, 13), 400 * MS) > 13);
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
    fn a_thin_window_does_not_take_the_limit_below_the_initial() {
        // Calls complete in bursts of a few dozen per window (a crowded
        // runtime): goodput that looks the same, or latency past the
        // tolerance, is noise as often as not, and the limit stays at or
        // above the initial 16 however long it lasts ...
        let mut g = started(bounds(4, 128), 2);
        for i in 1..=30 {
            let l = g.limit();
            let w = if i % 3 == 0 {
                thin(8, l, 40)
            } else {
                thin(2, l, 40)
            };
            assert!(
                g.update(&w, i * 100 * MS) >= 16,
                "window {i}: {}",
                g.limit()
            );
        }
        // ... while a sure window past the tolerance takes it below.
        g.update(&window(8, g.limit()), 3_100 * MS);
        assert!(g.limit() < 16, "{}", g.limit());
        // And a thin window below the initial holds it there, not lower.
        let below = g.limit();
        g.update(&thin(8, below, 40), 3_200 * MS);
        assert_eq!(g.limit(), below);
    }

    #[test]
    fn a_limit_no_better_than_the_probe_goes_to_the_minimum() {
        // The probe completes 4 calls per ms at the minimum; at 16 the
        // calls take 4x as long, and just as many complete: the slots above
        // the minimum only queue. The limit goes to 4 at once.
        let mut g = Gradient::new(bounds(4, 128), 0);
        g.update(&window(1, 4), 100 * MS);
        assert_eq!(g.limit(), 16);
        assert_eq!(g.update(&window(4, 16), 200 * MS), 4);
        // From there the climber steps up as at any minimum.
        assert_eq!(g.update(&window(1, 4), 300 * MS), 5);

        // Twice the calls for twice the wait is no better either: the
        // power is the probe's (a goodput rule kept 16 and climbed).
        let mut g = Gradient::new(bounds(4, 128), 0);
        g.update(&window(1, 4), 100 * MS);
        assert_eq!(g.update(&window(2, 16), 200 * MS), 4);

        // Where the limit completes more calls at no more latency than the
        // probe, it stays.
        let mut g = Gradient::new(bounds(4, 128), 0);
        g.update(&window(2, 4), 100 * MS);
        assert_eq!(g.update(&window(2, 16), 200 * MS), 18);

        // A thin probe proves nothing: the guard's eighth instead.
        let mut g = Gradient::new(bounds(4, 128), 0);
        g.update(&thin(1, 4, 40), 100 * MS);
        assert_eq!(g.update(&window(4, 16), 200 * MS), 14);
    }

    #[test]
    fn a_step_that_costs_more_waiting_than_it_gains_is_taken_back() {
        let mut g = started(bounds(4, 128), 2);
        // At 16, 8,000 calls a second at 2 ms: the first step up.
        assert_eq!(g.update(&window(2, 16), 100 * MS), 18);
        // At 18, 12.5 % more calls (9,000 a second) but at 3 ms, 50 % more
        // waiting (within the tolerance): power fell by a quarter, so the
        // climber turns back (by goodput alone it climbed on to 20).
        let w = Window {
            samples: 9_000,
            sum_nanos: 9_000 * 3 * MS,
            max_in_flight: 18,
            elapsed_nanos: 1_000 * MS,
        };
        assert_eq!(g.update(&w, 200 * MS), 15); // 18 - 2.25
        assert_eq!(w.power(), Some(9_000.0 / 0.003));
    }

    #[test]
    fn a_probe_short_of_sure_by_less_than_half_runs_one_more_window() {
        // 200 calls at 1 ms (a sure window needs 278): the probe holds
        // the minimum for one more window ...
        let probe = |samples: u64| Window {
            samples,
            sum_nanos: samples * MS,
            max_in_flight: 4,
            elapsed_nanos: 100 * MS,
        };
        let mut g = Gradient::new(bounds(4, 128), 0);
        assert_eq!(g.update(&probe(200), 100 * MS), 4);
        assert!(g.is_probing());
        // ... and the two together (400 calls, sure) are the probe: 16
        // in flight for no more power than it goes back to the minimum.
        assert_eq!(g.update(&probe(200), 200 * MS), 16);
        assert_eq!(g.no_load(), Some(Duration::from_millis(1)));
        assert_eq!(g.update(&window(4, 16), 300 * MS), 4);

        // A probe of under half a sure window is judged at once, thin:
        // no back to the minimum, the guard's eighth instead.
        let mut g = Gradient::new(bounds(4, 128), 0);
        assert_eq!(g.update(&probe(138), 100 * MS), 16);
        assert_eq!(g.update(&window(4, 16), 200 * MS), 14);
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

    #[test]
    fn a_window_of_unknown_length_is_judged_by_latency() {
        let mut g = started(bounds(4, 128), 2);
        let w = Window {
            elapsed_nanos: 0,
            ..window(2, 16)
        };
        assert_eq!(g.update(&w, 100 * MS), 20); // 16 + sqrt(16)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Against a simple model of the rule: the limit is always in
        /// [min, max]; a window beyond the tolerance lowers it by at least
        /// a step (an eighth, at least 1) and at most half (unless at
        /// min); a window that did not reach the limit leaves it as it
        /// was; a healthy window that reached it moves it by one step up
        /// or down: after a window that did not reach the limit or a probe
        /// up, after the guard down, then on in the same direction while
        /// power (goodput over mean latency) rose by more than 3 %, back
        /// when it fell by more, down
        /// when it stayed; away from a bound it sits at. Probe windows are
        /// exempt (they pin the limit to min and put it back).
        #[test]
        fn limit_follows_the_model(
            min in 1usize..32, span in 0usize..256, initial in 0usize..400,
            steps in proptest::collection::vec(
                (1u64..50, 0u64..40, 0usize..400, 1u64..3_000, 1u64..2_000), 1..60),
        ) {
            let b = Bounds { initial, ..bounds(min, min + span) };
            let max = (min + span) as f64;
            let mut g = Gradient::new(b, 0);
            let mut now = 0u64;
            // The model's memory: the last step's direction, and the
            // power before it when the step was a climber's.
            let (mut up_last, mut power_last): (bool, Option<f64>) = (true, None);
            // The last probe's power, when sure, until the window after it.
            let mut at_min: Option<f64> = None;
            // A probe window short of sure by less than half (samples,
            // latency sum in ns, length in ms), waiting for its second.
            let mut partial: Option<(u64, u64, u64)> = None;
            for (lat_ms, extra_ms, in_flight, advance_ms, samples) in steps {
                now += advance_ms * MS;
                let before = g.limit;
                let probing = g.is_probing();
                let floor_before = g.floor;
                let w = Window { samples, sum_nanos: samples * (lat_ms + extra_ms) * MS,
                                 max_in_flight: in_flight, elapsed_nanos: advance_ms * MS };
                let after = g.update(&w, now);
                prop_assert!(after >= min && after <= min + span, "{after} outside [{min}, {}]", min + span);
                // Calls per second over the mean latency in seconds.
                let power = (samples as f64 * 1e3 / advance_ms as f64)
                    / ((lat_ms + extra_ms) as f64 / 1e3);
                let sure = samples >= SURE_SAMPLES;
                if probing {
                    let sum = samples * (lat_ms + extra_ms) * MS;
                    if let Some((s0, sum0, ms0)) = partial.take() {
                        // Judged on both windows together.
                        let (n, sum, ms) = (s0 + samples, sum0 + sum, ms0 + advance_ms);
                        let power = (n as f64 * 1e3 / ms as f64) / (sum as f64 / n as f64 / 1e9);
                        at_min = (n >= SURE_SAMPLES).then_some(power);
                    } else if !sure && samples * 2 >= SURE_SAMPLES {
                        // One more window at the minimum.
                        prop_assert!(g.is_probing());
                        prop_assert_eq!(g.limit, before);
                        partial = Some((samples, sum, advance_ms));
                        continue;
                    } else {
                        at_min = sure.then_some(power);
                    }
                    prop_assert!(!g.is_probing() || after == min);
                    (up_last, power_last) = (true, None);
                    continue;
                }
                let no_better = at_min.take().is_some_and(|g0| {
                    sure && in_flight >= before as usize && power <= g0 * 1.03
                });
                if g.is_probing() {
                    (up_last, power_last) = (true, None);
                    continue;
                }
                // A thin window takes the limit no lower than the initial
                // (or where it is, when below).
                let lo = if sure {
                    min as f64
                } else {
                    (initial as f64).clamp(min as f64, max).min(before)
                };
                let mean = ((lat_ms + extra_ms) * MS) as f64;
                let floor = floor_before.min(mean as u64) as f64;
                if no_better {
                    prop_assert_eq!(g.limit, min as f64);
                    (up_last, power_last) = (true, None);
                } else if mean > 2.0 * floor {
                    // Down by at least a step, at most half.
                    let step = (before / 8.0).max(1.0);
                    prop_assert!(g.limit <= (before - step).max(lo) + 1e-9);
                    prop_assert!(g.limit >= (before / 2.0).min(before - step).max(lo) - 1e-9);
                    (up_last, power_last) = (false, None);
                } else if in_flight < before as usize {
                    prop_assert_eq!(g.limit, before);
                    (up_last, power_last) = (true, None);
                } else {
                    let up = match power_last {
                        None => up_last,
                        Some(p0) if power > p0 * 1.03 => up_last,
                        Some(p0) if power < p0 * 0.97 => !up_last,
                        Some(_) => false,
                    };
                    let up = (up || before <= lo) && before < max;
                    let step = (before / 8.0).max(1.0);
                    let expected = if up { before + step } else { before - step };
                    prop_assert!((g.limit - expected.clamp(lo, max)).abs() < 1e-9,
                        "{} after {before}, expected {expected} (up {up})", g.limit);
                    (up_last, power_last) = (up, Some(power));
                }
            }
        }

        /// Against a simple backend (goodput grows with calls in flight up
        /// to a knee, latency grows beyond it), saturated by callers: the
        /// limit settles near the knee, not at the tolerance's bound and
        /// not at the minimum, wherever it starts.
        #[test]
        fn the_limit_settles_near_the_knee(
            knee in 8.0f64..100.0, initial in 1usize..200, no_load_ms in 1.0f64..20.0,
        ) {
            let b = Bounds { initial, ..bounds(4, 200) };
            let mut g = started(b, 1);
            // The probe saw the backend's own no-load latency.
            g.floor = (no_load_ms * MS as f64) as u64;
            let mut late = Vec::new();
            for i in 1..=120u64 {
                let w = saturated(&g, knee, no_load_ms);
                let l = g.update(&w, i * 100 * MS);
                if i > 80 {
                    late.push(l as f64);
                }
            }
            let mean = late.iter().sum::<f64>() / late.len() as f64;
            prop_assert!(mean >= knee * 0.75 && mean <= knee * 1.4,
                "knee {knee}: settled at {mean} ({late:?})");
        }
    }
}
