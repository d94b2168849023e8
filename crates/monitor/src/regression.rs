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
