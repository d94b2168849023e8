//! A latency regression detector: a rolling percentile against a baseline
//! learned from its own history (an exponentially weighted mean and spread
//! of its logarithm), with a one-sided CUSUM that says a change is real and
//! when it began. [`RegressionConfig`] describes the method and its knobs.
//!
//! Why logarithms: latency changes multiply (a slow index doubles every
//! call), so a 2x step is the same distance at 5 ms as at 500 ms, and one
//! `min_ratio` serves every operation.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::alert::{AlertRule, Figure};
use crate::clock::Clock;
use crate::config::RegressionConfig;
use crate::error::ConfigError;

/// What the detector holds now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegressionReading {
    /// The learned baseline of the percentile.
    pub baseline: Duration,
    /// The last reading of the percentile.
    pub level: Duration,
    /// `level / baseline`.
    pub ratio: f64,
    /// When the change began: the reading at which the CUSUM last left 0
    /// (`None` while it is 0).
    pub began: Option<Instant>,
    /// Whether the CUSUM is over its decision threshold.
    pub shifted: bool,
    /// When the last reading was taken.
    pub at: Instant,
}

/// The detector: feed it readings of a percentile with
/// [`observe`](Self::observe), or let an alert rule do it
/// ([`rule`](Self::rule)).
///
/// ```
/// use std::time::{Duration, Instant};
/// use stratum_monitor::{RegressionConfig, RegressionDetector};
///
/// let d = RegressionDetector::new(RegressionConfig::default()).unwrap();
/// let start = Instant::now();
/// let at = |s: u64| start + Duration::from_secs(s);
/// // 30 minutes at about 20 ms: the baseline.
/// for i in 0..180u64 {
///     let jitter = (i % 5) as u64; // 20..24 ms
///     d.observe(at(i * 10), Some(Duration::from_millis(20 + jitter)));
/// }
/// assert!(!d.reading().unwrap().shifted);
/// // p99 doubles at 30 min: shifted after a few readings, began at the step.
/// for i in 180..190u64 {
///     d.observe(at(i * 10), Some(Duration::from_millis(44)));
/// }
/// let r = d.reading().unwrap();
/// assert!(r.shifted && r.ratio > 1.8);
/// assert_eq!(r.began, Some(at(1800)));
/// assert!(r.baseline > Duration::from_millis(20) && r.baseline < Duration::from_millis(24));
/// ```
pub struct RegressionDetector {
    config: RegressionConfig,
    state: Mutex<State>,
}

impl fmt::Debug for RegressionDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegressionDetector")
            .field("config", &self.config)
            .field("reading", &self.reading())
            .finish()
    }
}

#[derive(Debug, Default)]
struct State {
    first: Option<Instant>,
    last: Option<Instant>,
    samples: u64,
    /// Mean and variance of ln(seconds).
    mean: f64,
    var: f64,
    cusum: f64,
    began: Option<Instant>,
    level: f64,
    shifted: bool,
}

impl RegressionDetector {
    /// A detector with `config` (validated).
    pub fn new(config: RegressionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(RegressionDetector {
            config,
            state: Mutex::new(State::default()),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &RegressionConfig {
        &self.config
    }

    /// Takes `value` as a reading at `now` when `sample_every` has passed
    /// since the last one (a `None` or zero value is skipped), and returns
    /// the reading after it (`None` while the baseline is learned).
    pub fn observe(&self, now: Instant, value: Option<Duration>) -> Option<RegressionReading> {
        self.observe_with(now, || value)
    }

    /// [`observe`](Self::observe), reading the value from `read` only when
    /// a reading is due (reading a rolling percentile merges histograms).
    pub fn observe_with(
        &self,
        now: Instant,
        read: impl FnOnce() -> Option<Duration>,
    ) -> Option<RegressionReading> {
        let mut s = self.state.lock();
        let due = s
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.config.sample_every);
        if due && let Some(v) = read().filter(|v| !v.is_zero()) {
            self.update(&mut s, now, v.as_secs_f64().ln());
        }
        self.read(&s)
    }

    /// The reading now, without taking one (`None` while warming up).
    pub fn reading(&self) -> Option<RegressionReading> {
        self.read(&self.state.lock())
    }

    fn update(&self, s: &mut State, now: Instant, x: f64) {
        let c = &self.config;
        s.last = Some(now);
        s.level = x;
        let Some(first) = s.first else {
            s.first = Some(now);
            s.samples = 1;
            s.mean = x;
            return;
        };
        let warm = now.saturating_duration_since(first) >= c.warmup;
        let d = x - s.mean;
        let delta = c.min_ratio.ln().max(c.noise_sigmas * s.var.sqrt());
        if warm {
            let next = (s.cusum + d - delta / 2.0).max(0.0);
            if next > 0.0 && s.cusum == 0.0 {
                s.began = Some(now);
            } else if next == 0.0 {
                s.began = None;
            }
            s.cusum = next;
            s.shifted = s.cusum >= c.decision * delta;
        }
        // The baseline learns only from readings that show no change, so a
        // regression never becomes its own baseline; a drift slower than the
        // half-life stays under delta / 2 and is followed.
        if s.cusum == 0.0 {
            let per_sample = c.sample_every.as_secs_f64() / c.baseline_half_life.as_secs_f64();
            let ewma = 1.0 - 0.5f64.powf(per_sample);
            s.samples += 1;
            let alpha = ewma.max(1.0 / s.samples as f64);
            s.mean += alpha * d;
            s.var = (1.0 - alpha) * (s.var + alpha * d * d);
        }
    }

    fn read(&self, s: &State) -> Option<RegressionReading> {
        let (first, at) = (s.first?, s.last?);
        if at.saturating_duration_since(first) < self.config.warmup {
            return None;
        }
        let seconds = |ln: f64| Duration::try_from_secs_f64(ln.exp()).unwrap_or(Duration::MAX);
        Some(RegressionReading {
            baseline: seconds(s.mean),
            level: seconds(s.level),
            ratio: (s.level - s.mean).exp(),
            began: s.began,
            shifted: s.shifted,
            at,
        })
    }

    /// An alert rule named `name` that reads `percentile` (the configured
    /// quantile of `operation` over a rolling window of length `span`, e.g.
    /// a [`RollingHistogram`]'s) into this detector on every evaluation.
    /// Its figure is the level over the baseline while the CUSUM says
    /// shifted (else at most 1); it fires once that stayed at or above
    /// `min_ratio` for `confirm + span`, resolves at `resolve_ratio` held
    /// `resolve_for`.
    ///
    /// Why `+ span`: a rolling percentile stretches a spike by up to its
    /// window (a 110 s spike keeps a 60 s window's p99 high for up to
    /// 170 s), so holding for `confirm` alone would page on spikes shorter
    /// than `confirm`. With `span` added, a change must last `confirm` in
    /// the calls themselves. Events carry `baseline_seconds`,
    /// `level_seconds` and `began_seconds_ago` (from the last reading).
    /// Each read sets `stratum_monitor_latency_baseline_seconds` and
    /// `stratum_monitor_latency_level_seconds` for `operation`.
    ///
    /// [`RollingHistogram`]: crate::RollingHistogram
    pub fn rule(
        self: &Arc<Self>,
        name: &str,
        operation: &str,
        percentile: impl Fn() -> Option<Duration> + Send + Sync + 'static,
        span: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<AlertRule, ConfigError> {
        let c = &self.config;
        let detector = Arc::clone(self);
        let operation = operation.to_owned();
        let figure = Figure::custom(move || {
            let r = detector.observe_with(clock.instant(), &percentile)?;
            let labels = [("operation", operation.clone())];
            metrics::gauge!("stratum_monitor_latency_baseline_seconds", &labels)
                .set(r.baseline.as_secs_f64());
            metrics::gauge!("stratum_monitor_latency_level_seconds", &labels)
                .set(r.level.as_secs_f64());
            Some(if r.shifted { r.ratio } else { r.ratio.min(1.0) })
        });
        let detector = Arc::clone(self);
        AlertRule::above(name, figure, c.min_ratio)
            .resolve_at(c.resolve_ratio)
            .for_duration(c.confirm.saturating_add(span))
            .resolve_for(c.resolve_for)
            .details(move || {
                let Some(r) = detector.reading() else {
                    return Vec::new();
                };
                let began = r
                    .began
                    .map_or(0.0, |b| r.at.saturating_duration_since(b).as_secs_f64());
                vec![
                    ("baseline_seconds", r.baseline.as_secs_f64()),
                    ("level_seconds", r.level.as_secs_f64()),
                    ("began_seconds_ago", began),
                ]
            })
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertEngine, AlertEventKind};
    use crate::clock::ManualClock;
    use proptest::prelude::*;

    fn ms(v: f64) -> Option<Duration> {
        Some(Duration::from_secs_f64(v / 1000.0))
    }

    /// Feeds `f(i)` milliseconds every 10 s for `n` readings from `from`.
    fn feed(d: &RegressionDetector, start: Instant, from: u64, n: u64, f: impl Fn(u64) -> f64) {
        for i in from..from + n {
            d.observe(start + Duration::from_secs(i * 10), ms(f(i)));
        }
    }

    #[test]
    fn a_regression_never_becomes_its_own_baseline() {
        let d = RegressionDetector::new(RegressionConfig::default()).unwrap();
        let start = Instant::now();
        feed(&d, start, 0, 180, |i| 20.0 + (i % 3) as f64);
        // Two hours at 2x: twice the baseline's half-life.
        feed(&d, start, 180, 720, |_| 42.0);
        let r = d.reading().unwrap();
        assert!(r.shifted, "{r:?}");
        assert!(r.baseline < Duration::from_millis(22), "{r:?}");
        assert_eq!(r.began, Some(start + Duration::from_secs(1800)));
    }

    #[test]
    fn a_slow_drift_is_followed() {
        let d = RegressionDetector::new(RegressionConfig::default()).unwrap();
        let start = Instant::now();
        feed(&d, start, 0, 180, |_| 20.0);
        // 2x over 24 h, read every 10 s.
        feed(&d, start, 180, 8640, |i| {
            20.0 * (1.0 + (i - 180) as f64 / 8640.0)
        });
        let r = d.reading().unwrap();
        assert!(!r.shifted, "{r:?}");
        assert!(r.baseline > Duration::from_millis(37), "{r:?}");
    }

    #[test]
    fn nothing_is_read_while_warming_up_or_more_often_than_sample_every() {
        let d = RegressionDetector::new(RegressionConfig::default()).unwrap();
        let start = Instant::now();
        feed(&d, start, 0, 90, |_| 20.0); // up to 14 min 50 s
        assert_eq!(d.reading(), None);
        // A reading 5 s after the last is not taken (the level stays).
        d.observe(start + Duration::from_secs(895), ms(500.0));
        assert_eq!(d.reading(), None);
        d.observe(start + Duration::from_secs(900), ms(20.0));
        let r = d.reading().unwrap();
        assert_eq!(r.level, Duration::from_millis(20));
        assert!(!r.shifted);
    }

    #[test]
    fn the_rule_fires_after_confirm_plus_the_window_with_its_details() {
        let clock = ManualClock::new();
        let engine = AlertEngine::with_clock(Arc::new(clock.clone()));
        let detector = Arc::new(RegressionDetector::new(RegressionConfig::default()).unwrap());
        let level = Arc::new(Mutex::new(20.0f64));
        let source = Arc::clone(&level);
        let window = Duration::from_secs(60);
        engine
            .add(
                detector
                    .rule(
                        "regression",
                        "op",
                        move || ms(*source.lock()),
                        window,
                        Arc::new(clock.clone()),
                    )
                    .unwrap(),
            )
            .unwrap();
        let step = |secs: u64| {
            let mut events = Vec::new();
            for _ in 0..secs / 5 {
                clock.advance(Duration::from_secs(5));
                events.extend(engine.evaluate());
            }
            events
        };
        assert!(step(1800).is_empty());
        *level.lock() = 40.0;
        // Held for confirm (120 s) + the window (60 s), from the first
        // shifted reading (the second at 2x, 10 s in).
        assert!(step(185).is_empty());
        let fired = step(10);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].kind, AlertEventKind::Fired);
        let detail = |name: &str| fired[0].details.iter().find(|d| d.0 == name).unwrap().1;
        assert!((detail("baseline_seconds") - 0.020).abs() < 1e-6);
        assert!((detail("level_seconds") - 0.040).abs() < 1e-6);
        assert!((190.0..=200.0).contains(&detail("began_seconds_ago")));
        // Back to normal: resolves after resolve_for (2 min).
        *level.lock() = 20.0;
        let resolved = step(130);
        assert_eq!(resolved.len(), 1, "{resolved:?}");
        assert_eq!(resolved[0].kind, AlertEventKind::Resolved);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]

        /// For any positive series: the baseline stays within the readings'
        /// range, the level is the last reading, and a shift always says
        /// when it began.
        #[test]
        fn baseline_and_level_follow_the_readings(
            series in proptest::collection::vec(1.0f64..1000.0, 1..300),
        ) {
            let config = RegressionConfig { warmup: Duration::from_secs(60), ..Default::default() };
            let d = RegressionDetector::new(config).unwrap();
            let start = Instant::now();
            let (mut lo, mut hi) = (f64::MAX, 0.0f64);
            for (i, v) in series.iter().enumerate() {
                let v = Duration::from_secs_f64(v / 1000.0).as_secs_f64();
                lo = lo.min(v);
                hi = hi.max(v);
                let r = d.observe(start + Duration::from_secs(i as u64 * 10), Some(Duration::from_secs_f64(v)));
                if let Some(r) = r {
                    let b = r.baseline.as_secs_f64();
                    prop_assert!(b >= lo * 0.999 && b <= hi * 1.001, "{b} not in [{lo}, {hi}]");
                    prop_assert!((r.level.as_secs_f64() - v).abs() <= v * 1e-6);
                    if r.shifted {
                        prop_assert!(r.began.is_some());
                    }
                }
            }
        }
    }
}
