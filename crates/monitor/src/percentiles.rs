//! In-process latency percentiles: per operation, an HDR histogram over a
//! rolling window (a ring of sub-window histograms rotated by the clock).
//!
//! Why not the exporter's histograms: Prometheus buckets answer "how many
//! under 25 ms" for a scraper; code (reports, alert rules) wants "p99 over the
//! last minute" now, at 0.1 % precision, without a Prometheus server.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::{Mutex, RwLock};

use crate::clock::{Clock, SystemClock};
use crate::config::PercentileConfig;
use crate::error::{ConfigError, MonitorError, validate_name};

/// Percentiles of one operation over the rolling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// Samples in the window.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Largest sample (to the histogram's precision).
    pub max: Duration,
}

/// A rolling-window HDR histogram for one operation.
///
/// Values are kept in microseconds, from 1 µs to
/// [`PercentileConfig::highest_trackable`]; longer ones are clamped.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use stratum_monitor::{ManualClock, PercentileConfig, RollingHistogram};
///
/// let clock = ManualClock::new();
/// let h = RollingHistogram::new(&PercentileConfig::default(), Arc::new(clock.clone())).unwrap();
/// for ms in 1..=100 {
///     h.record(Duration::from_millis(ms));
/// }
/// let p = h.percentiles().unwrap();
/// assert_eq!(p.count, 100);
/// assert!(p.p99 >= Duration::from_millis(98) && p.p99 <= Duration::from_millis(100));
///
/// clock.advance(Duration::from_secs(61)); // the whole window has passed
/// assert!(h.percentiles().is_none());
/// ```
pub struct RollingHistogram {
    ring: Mutex<Ring>,
    clock: Arc<dyn Clock>,
    highest_micros: u64,
}

impl fmt::Debug for RollingHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.ring.lock();
        f.debug_struct("RollingHistogram")
            .field("sub_windows", &ring.slots.len())
            .field("sub_window", &ring.slot_len)
            .finish_non_exhaustive()
    }
}

struct Ring {
    slots: Vec<Histogram<u64>>,
    /// Index of the slot now being written.
    current: usize,
    /// When the current slot began.
    current_start: Instant,
    /// When it ends: the hot path's only time comparison.
    current_end: Instant,
    slot_len: Duration,
    /// Scratch histogram for merging, kept to avoid allocating per read.
    merged: Histogram<u64>,
}

impl Ring {
    /// Moves the ring forward to `now`, clearing every slot that fell out.
    fn rotate(&mut self, now: Instant) {
        if now < self.current_end {
            return;
        }
        let elapsed = now.saturating_duration_since(self.current_start);
        let n = self.slots.len();
        let steps = elapsed.as_nanos() / self.slot_len.as_nanos().max(1);
        let to_clear = usize::try_from(steps).unwrap_or(usize::MAX).min(n);
        for _ in 0..to_clear {
            self.current = (self.current + 1) % n;
            if let Some(slot) = self.slots.get_mut(self.current) {
                slot.reset();
            }
        }
        // Advance the start by whole slots so slot boundaries stay fixed.
        let advance = self.slot_len.as_nanos().saturating_mul(steps);
        let advance = Duration::from_nanos(u64::try_from(advance).unwrap_or(u64::MAX));
        self.current_start = self.current_start.checked_add(advance).unwrap_or(now);
        self.current_end = self.current_start.checked_add(self.slot_len).unwrap_or(now);
    }
}

impl RollingHistogram {
    /// A histogram with `config`'s window, reading time from `clock`.
    pub fn new(config: &PercentileConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        config.validate()?;
        let highest_micros = u64::try_from(config.highest_trackable.as_micros())
            .unwrap_or(u64::MAX)
            .max(2);
        let make = || {
            Histogram::<u64>::new_with_bounds(1, highest_micros, config.significant_digits)
                .map_err(|e| ConfigError::invalid("percentiles", e.to_string()))
        };
        let slots = (0..config.sub_windows)
            .map(|_| make())
            .collect::<Result<Vec<_>, _>>()?;
        let slot_len = config.window / u32::try_from(config.sub_windows).unwrap_or(u32::MAX);
        let start = clock.instant();
        Ok(Self {
            ring: Mutex::new(Ring {
                slots,
                current: 0,
                current_start: start,
                current_end: start.checked_add(slot_len).unwrap_or(start),
                slot_len,
                merged: make()?,
            }),
            clock,
            highest_micros,
        })
    }

    /// Records one latency. Takes a short lock; never allocates.
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, self.highest_micros);
        let now = self.clock.instant();
        let mut ring = self.ring.lock();
        ring.rotate(now);
        let current = ring.current;
        if let Some(slot) = ring.slots.get_mut(current) {
            slot.saturating_record(micros);
        }
    }

    /// The value at quantile `q` in `[0, 1]` over the window, or `None` when
    /// the window is empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.with_merged(|h| Duration::from_micros(h.value_at_quantile(q.clamp(0.0, 1.0))))
    }

    /// p50/p95/p99/p999 over the window, or `None` when it is empty.
    pub fn percentiles(&self) -> Option<Percentiles> {
        self.with_merged(|h| {
            let at = |q: f64| Duration::from_micros(h.value_at_quantile(q));
            Percentiles {
                count: h.len(),
                p50: at(0.50),
                p95: at(0.95),
                p99: at(0.99),
                p999: at(0.999),
                max: Duration::from_micros(h.max()),
            }
        })
    }

    /// Samples in the window.
    pub fn count(&self) -> u64 {
        self.with_merged(|h| h.len()).unwrap_or(0)
    }

    fn with_merged<T>(&self, read: impl FnOnce(&Histogram<u64>) -> T) -> Option<T> {
        let now = self.clock.instant();
        let mut guard = self.ring.lock();
        let ring = &mut *guard;
        ring.rotate(now);
        ring.merged.reset();
        for slot in &ring.slots {
            // Same bounds everywhere, so `add` cannot fail; a failure would
            // only under-report, never panic.
            let _ = ring.merged.add(slot);
        }
        if ring.merged.is_empty() {
            None
        } else {
            Some(read(&ring.merged))
        }
    }
}

/// Rolling percentiles for many named operations.
///
/// The number of operations is capped ([`PercentileConfig::max_operations`])
/// so a caller passing user input as an operation name cannot grow memory
/// without bound; samples for refused operations are counted in
/// `stratum_monitor_latency_dropped_total`.
///
/// ```
/// use std::time::Duration;
/// use stratum_monitor::{LatencyTracker, PercentileConfig};
///
/// let tracker = LatencyTracker::new(PercentileConfig::default()).unwrap();
/// tracker.record("cache.get", Duration::from_micros(120));
/// tracker.record("cache.get", Duration::from_micros(80));
/// let p = tracker.percentiles("cache.get").unwrap();
/// assert_eq!(p.count, 2);
/// assert!(tracker.percentiles("never.seen").is_none());
/// ```
pub struct LatencyTracker {
    config: PercentileConfig,
    clock: Arc<dyn Clock>,
    operations: RwLock<HashMap<String, Arc<RollingHistogram>>>,
}

impl fmt::Debug for LatencyTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyTracker")
            .field("config", &self.config)
            .field("operations", &self.operations.read().len())
            .finish_non_exhaustive()
    }
}

impl LatencyTracker {
    /// A tracker on the system clock.
    pub fn new(config: PercentileConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A tracker reading time from `clock`.
    pub fn with_clock(
        config: PercentileConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            clock,
            operations: RwLock::new(HashMap::new()),
        })
    }

    /// The histogram of `operation`, created on first use. Keep the returned
    /// handle on a hot path to skip the name lookup.
    ///
    /// # Errors
    /// [`MonitorError::InvalidName`] for a name outside `[a-z0-9_.-]{1,64}`,
    /// [`MonitorError::TooManyOperations`] past the configured maximum.
    pub fn operation(&self, operation: &str) -> Result<Arc<RollingHistogram>, MonitorError> {
        if let Some(h) = self.operations.read().get(operation) {
            return Ok(Arc::clone(h));
        }
        validate_name(operation)?;
        let mut ops = self.operations.write();
        if let Some(h) = ops.get(operation) {
            return Ok(Arc::clone(h));
        }
        if ops.len() >= self.config.max_operations {
            return Err(MonitorError::TooManyOperations {
                operation: operation.to_owned(),
                max: self.config.max_operations,
            });
        }
        let h = Arc::new(RollingHistogram::new(
            &self.config,
            Arc::clone(&self.clock),
        )?);
        ops.insert(operation.to_owned(), Arc::clone(&h));
        Ok(h)
    }

    /// Records one latency of `operation`. A refused operation (bad name, or
    /// over the cap) is dropped and counted, never an error on the hot path.
    pub fn record(&self, operation: &str, latency: Duration) {
        match self.operation(operation) {
            Ok(h) => h.record(latency),
            Err(_) => metrics::counter!("stratum_monitor_latency_dropped_total").increment(1),
        }
    }

    /// Runs `work`, records how long it took (on the tracker's clock) under
    /// `operation`, and returns its output.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use stratum_monitor::{LatencyTracker, PercentileConfig};
    ///
    /// let tracker = LatencyTracker::new(PercentileConfig::default()).unwrap();
    /// let answer = tracker.time("compute", async { 6 * 7 }).await;
    /// assert_eq!(answer, 42);
    /// assert_eq!(tracker.percentiles("compute").unwrap().count, 1);
    /// # });
    /// ```
    pub async fn time<F: std::future::Future>(&self, operation: &str, work: F) -> F::Output {
        let start = self.clock.instant();
        let output = work.await;
        self.record(
            operation,
            self.clock.instant().saturating_duration_since(start),
        );
        output
    }

    /// Percentiles of `operation` over the window; `None` when unknown or empty.
    pub fn percentiles(&self, operation: &str) -> Option<Percentiles> {
        let h = self.operations.read().get(operation).cloned()?;
        h.percentiles()
    }

    /// The value at quantile `q` of `operation`; `None` when unknown or empty.
    pub fn quantile(&self, operation: &str, q: f64) -> Option<Duration> {
        let h = self.operations.read().get(operation).cloned()?;
        h.quantile(q)
    }

    /// Every operation with samples in the window, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, Percentiles)> {
        let ops: Vec<(String, Arc<RollingHistogram>)> = self
            .operations
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let mut out: Vec<_> = ops
            .into_iter()
            .filter_map(|(name, h)| h.percentiles().map(|p| (name, p)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use proptest::prelude::*;

    fn config(window_secs: u64, sub_windows: usize) -> PercentileConfig {
        PercentileConfig {
            window: Duration::from_secs(window_secs),
            sub_windows,
            ..Default::default()
        }
    }

    #[test]
    fn percentiles_of_uniform_1_to_1000_ms() {
        let clock = ManualClock::new();
        let h = RollingHistogram::new(&config(60, 6), Arc::new(clock)).unwrap();
        for ms in 1..=1000 {
            h.record(Duration::from_millis(ms));
        }
        let p = h.percentiles().unwrap();
        assert_eq!(p.count, 1000);
        let near = |d: Duration, ms: u64| {
            let want = ms as f64 * 1000.0;
            let got = d.as_micros() as f64;
            (got - want).abs() / want < 0.002
        };
        assert!(near(p.p50, 500), "{p:?}");
        assert!(near(p.p95, 950), "{p:?}");
        assert!(near(p.p99, 990), "{p:?}");
        assert!(near(p.p999, 999), "{p:?}");
        assert!(near(p.max, 1000), "{p:?}");
    }

    #[test]
    fn old_sub_windows_fall_out_one_at_a_time() {
        let clock = ManualClock::new();
        let h = RollingHistogram::new(&config(60, 6), Arc::new(clock.clone())).unwrap();
        h.record(Duration::from_millis(500)); // slot 0
        clock.advance(Duration::from_secs(10));
        h.record(Duration::from_millis(5)); // slot 1
        assert_eq!(h.count(), 2);
        assert_eq!(h.quantile(1.0).unwrap().as_millis(), 500);
        // 50 s later slot 0 is six slots old: gone; slot 1 is still in.
        clock.advance(Duration::from_secs(50));
        assert_eq!(h.count(), 1);
        assert_eq!(h.quantile(1.0).unwrap().as_millis(), 5);
        clock.advance(Duration::from_secs(10));
        assert_eq!(h.count(), 0);
        assert!(h.percentiles().is_none());
    }

    #[test]
    fn long_and_tiny_values_are_clamped_not_lost() {
        let h = RollingHistogram::new(
            &PercentileConfig {
                highest_trackable: Duration::from_secs(1),
                ..Default::default()
            },
            Arc::new(ManualClock::new()),
        )
        .unwrap();
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(3600));
        let p = h.percentiles().unwrap();
        assert_eq!(p.count, 2);
        assert!(p.max <= Duration::from_millis(1001));
    }

    #[test]
    fn tracker_caps_operations_and_names() {
        let tracker = LatencyTracker::with_clock(
            PercentileConfig {
                max_operations: 2,
                ..Default::default()
            },
            Arc::new(ManualClock::new()),
        )
        .unwrap();
        tracker.operation("a").unwrap();
        tracker.operation("b").unwrap();
        assert!(matches!(
            tracker.operation("c"),
            Err(MonitorError::TooManyOperations { max: 2, .. })
        ));
        assert!(matches!(
            tracker.operation("user 42"),
            Err(MonitorError::InvalidName { .. })
        ));
        tracker.record("c", Duration::from_millis(1)); // dropped, no panic
        assert!(tracker.percentiles("c").is_none());
        tracker.record("a", Duration::from_millis(1));
        assert_eq!(tracker.snapshot().len(), 1);
    }

    #[test]
    fn concurrent_recording_counts_every_sample() {
        let tracker = Arc::new(
            LatencyTracker::with_clock(PercentileConfig::default(), Arc::new(ManualClock::new()))
                .unwrap(),
        );
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let tracker = Arc::clone(&tracker);
                std::thread::spawn(move || {
                    let h = tracker.operation("op").unwrap();
                    for i in 0..10_000u64 {
                        h.record(Duration::from_micros(1 + (i * (t + 1)) % 5000));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(tracker.percentiles("op").unwrap().count, 40_000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The tracker against a set model: operations are admitted until the
        /// cap, then refused; admitted ones keep every sample.
        #[test]
        fn tracker_cap_matches_set_model(
            cap in 1usize..5,
            ops in proptest::collection::vec(0usize..8, 1..60),
        ) {
            let tracker = LatencyTracker::with_clock(
                PercentileConfig {
                    max_operations: cap,
                    sub_windows: 1,
                    highest_trackable: Duration::from_millis(1),
                    ..Default::default()
                },
                Arc::new(ManualClock::new()),
            ).unwrap();
            let mut admitted: Vec<usize> = Vec::new();
            let mut counts = [0u64; 8];
            for op in ops {
                let name = format!("op{op}");
                tracker.record(&name, Duration::from_micros(10));
                if admitted.contains(&op) || admitted.len() < cap {
                    if !admitted.contains(&op) {
                        admitted.push(op);
                    }
                    counts[op] += 1;
                }
                for (o, want) in counts.iter().enumerate() {
                    let got = tracker.percentiles(&format!("op{o}")).map_or(0, |p| p.count);
                    prop_assert_eq!(got, *want);
                }
            }
            prop_assert_eq!(tracker.snapshot().len(), admitted.len());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Against a reference model: a plain list of (time, value); a sample
        /// is in the window iff its sub-window index is within the last
        /// `sub_windows` of the current one.
        #[test]
        fn rolling_window_matches_reference_model(
            sub_windows in 1usize..8,
            steps in proptest::collection::vec((0u64..4_000, 1u64..1_000_000, any::<bool>()), 1..80),
        ) {
            let slot_ms = 1_000u64;
            let cfg = PercentileConfig {
                window: Duration::from_millis(slot_ms * sub_windows as u64),
                sub_windows,
                // Samples stay under 1 s: a smaller range keeps debug-build merges quick.
                highest_trackable: Duration::from_secs(2),
                ..Default::default()
            };
            let clock = ManualClock::new();
            let h = RollingHistogram::new(&cfg, Arc::new(clock.clone())).unwrap();
            let mut now_ms = 0u64;
            let mut model: Vec<(u64, u64)> = Vec::new();
            for (advance, value, read) in steps {
                clock.advance(Duration::from_millis(advance));
                now_ms += advance;
                if read {
                    let current = now_ms / slot_ms;
                    let live: Vec<u64> = model
                        .iter()
                        .filter(|(t, _)| t / slot_ms + sub_windows as u64 > current)
                        .map(|(_, v)| *v)
                        .collect();
                    prop_assert_eq!(h.count(), live.len() as u64);
                    if let Some(max) = live.iter().max() {
                        let got = h.quantile(1.0).unwrap().as_micros() as f64;
                        prop_assert!((got - *max as f64).abs() <= *max as f64 * 0.001 + 1.0);
                    }
                } else {
                    h.record(Duration::from_micros(value));
                    model.push((now_ms, value));
                }
            }
        }
    }
}
