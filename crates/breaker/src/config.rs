//! Configuration as plain data: [`BreakerConfig`] with its window and wait
//! choices, `Default` values that follow resilience4j, serde (durations as
//! `"60s"`, `"250ms"`) and validation that names the refused field.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::clock::duration_nanos;

/// The largest count-based window, in calls (2^20 - 1): the running totals
/// pack three counts of this size into one atomic word.
pub const MAX_COUNT_WINDOW: u32 = (1 << 20) - 1;
/// The longest time-based window: one hour of one-second buckets.
pub const MAX_TIME_WINDOW: Duration = Duration::from_secs(3600);
/// The most probe calls half-open may permit: the probe counters share one
/// atomic word.
pub const MAX_PERMITTED_IN_HALF_OPEN: u32 = (1 << 12) - 1;
/// The longest name: names become a metric label.
pub const MAX_NAME_LEN: usize = 64;

/// Everything that shapes a breaker's behaviour.
///
/// Plain data with public fields, each field's doc stating its default (the
/// defaults are resilience4j's, except the half-open cap and the jitter,
/// which fix what its users keep asking for). Validated when a breaker is
/// built; [`validate`](Self::validate) checks it on its own.
///
/// ```
/// use std::time::Duration;
/// use stratum_breaker::{BreakerConfig, OpenWait, SlidingWindow};
///
/// let config: BreakerConfig = toml::from_str(r#"
///     name = "mongodb"
///     failure_rate_threshold = 25.0
///     slow_call_duration_threshold = "250ms"
///     sliding_window = { type = "time_based", duration = "30s" }
///     wait_in_open = { type = "exponential", initial = "1s", multiplier = 2.0, max = "1m" }
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.sliding_window, SlidingWindow::TimeBased { duration: Duration::from_secs(30) });
/// assert_eq!(config.minimum_number_of_calls, 100); // a default
/// assert!(matches!(config.wait_in_open, OpenWait::Exponential { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// The breaker's name, used as the `breaker` label of every metric and in
    /// logs and errors. 1 to 64 characters from `[A-Za-z0-9_.-]`, so it can
    /// never carry a secret or unbounded user input into a label.
    /// Default `"default"`.
    pub name: String,
    /// The failure rate, in percent, at or above which the breaker opens.
    /// In (0, 100]. Default 50.
    pub failure_rate_threshold: f64,
    /// The slow-call rate, in percent, at or above which the breaker opens.
    /// In (0, 100]. Default 100.
    pub slow_call_rate_threshold: f64,
    /// A call that takes longer than this is slow, while
    /// [`adaptive_slow_call`](Self::adaptive_slow_call) is off; while it is
    /// on, the threshold until the first estimate, and always the one
    /// half-open probes are judged against (the first calls after the open
    /// wait pay for cold connections, which the learned threshold never
    /// saw). Non-zero. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub slow_call_duration_threshold: Duration,
    /// Derives "slow" from the latency of healthy calls instead of a fixed
    /// number. Default: on, 3 x the p99 of healthy calls, between 5 ms and
    /// 10 s, re-estimated every 200 healthy calls.
    pub adaptive_slow_call: AdaptiveSlowCall,
    /// The window the rates are computed over in the closed state.
    /// Default: the last 100 calls.
    pub sliding_window: SlidingWindow,
    /// No rate is judged before the window holds this many calls (for a
    /// count-based window, at most the window's size is needed). At least 1.
    /// Default 100.
    pub minimum_number_of_calls: u32,
    /// How many probe calls half-open admits, under any concurrency; their
    /// failure and slow-call rates decide. 1 to 4095. Default 10.
    pub permitted_calls_in_half_open: u32,
    /// How long the breaker stays open before it lets probes through.
    /// Default: 60 s, constant.
    pub wait_in_open: OpenWait,
    /// Each wait in the open state is multiplied by a factor drawn uniformly
    /// from `[1 - jitter, 1]`, so a fleet that tripped together does not
    /// probe together. In [0, 1). Default 0.1.
    pub jitter: f64,
    /// The seed of the jitter's generator (SplitMix64). `None`: a seed that
    /// differs per process and per breaker. Set it to make waits repeatable.
    /// Default `None`.
    pub jitter_seed: Option<u64>,
    /// When `false`, an open breaker moves to half-open on the first call
    /// after the wait; when `true`, as soon as the wait is over, seen by
    /// [`Breaker::state`](crate::Breaker::state),
    /// [`Breaker::poll`](crate::Breaker::poll) or a call, so dashboards and
    /// health checks show half-open without traffic. Default `false`.
    pub automatic_transition_to_half_open: bool,
    /// The longest the breaker stays half-open without a decision (probes
    /// that never finish); then it opens again, so it can never be stuck in
    /// half-open. Non-zero. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub max_wait_in_half_open: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration_threshold: Duration::from_secs(60),
            adaptive_slow_call: AdaptiveSlowCall::default(),
            sliding_window: SlidingWindow::default(),
            minimum_number_of_calls: 100,
            permitted_calls_in_half_open: 10,
            wait_in_open: OpenWait::default(),
            jitter: 0.1,
            jitter_seed: None,
            automatic_transition_to_half_open: false,
            max_wait_in_half_open: Duration::from_secs(60),
        }
    }
}

/// The adaptive slow-call threshold: `multiple` x a slow-moving p99 of the
/// healthy calls the breaker has seen, clamped to `[floor, cap]`.
///
/// Learned only in the closed state, only from successes no slower than the
/// current threshold, in rounds of `min_samples` such calls: the first round
/// sets the baseline, each later one moves it a quarter of the way to the
/// round's p99. It freezes while the breaker is not closed, and the round in
/// progress is dropped when the breaker opens. Until the first round ends,
/// [`BreakerConfig::slow_call_duration_threshold`] is the threshold.
///
/// ```
/// use std::time::Duration;
/// use stratum_breaker::{AdaptiveSlowCall, BreakerConfig};
///
/// let config: BreakerConfig = toml::from_str(r#"
///     adaptive_slow_call = { multiple = 4.0, floor = "2ms", cap = "1s", min_samples = 500 }
/// "#).unwrap();
/// config.validate().unwrap();
/// assert!(config.adaptive_slow_call.enabled); // a default
/// assert_eq!(config.adaptive_slow_call.cap, Duration::from_secs(1));
///
/// // A fixed threshold instead:
/// let fixed: BreakerConfig = toml::from_str(r#"
///     slow_call_duration_threshold = "250ms"
///     adaptive_slow_call = { enabled = false }
/// "#).unwrap();
/// assert_eq!(fixed.adaptive_slow_call.multiple, AdaptiveSlowCall::default().multiple);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveSlowCall {
    /// Whether the threshold adapts; `false`: it is
    /// [`BreakerConfig::slow_call_duration_threshold`]. Default `true`.
    pub enabled: bool,
    /// The threshold is this many times the baseline p99. Finite, at
    /// least 1. Default 3: a call three times slower than nearly every
    /// healthy call is slow, and a uniform 5x degradation is caught.
    pub multiple: f64,
    /// The threshold never goes below this (a clock's resolution, jitter of
    /// very fast services). Non-zero. Default 5 ms.
    #[serde(with = "humantime_serde")]
    pub floor: Duration,
    /// The threshold never goes above this. At least `floor`. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub cap: Duration,
    /// Healthy calls per estimate: the first estimate replaces the fallback
    /// after this many, and each later one is blended in. 10 to
    /// [`MAX_MIN_SAMPLES`]. Default 200.
    pub min_samples: u32,
}

/// The most healthy calls one estimate of the adaptive threshold may take.
pub const MAX_MIN_SAMPLES: u32 = 1_000_000;

impl Default for AdaptiveSlowCall {
    fn default() -> Self {
        Self {
            enabled: true,
            multiple: 3.0,
            floor: Duration::from_millis(5),
            cap: Duration::from_secs(10),
            min_samples: 200,
        }
    }
}

impl AdaptiveSlowCall {
    fn validate(&self) -> Result<(), ConfigError> {
        let a = self;
        if !a.multiple.is_finite() || a.multiple < 1.0 {
            return Err(ConfigError::invalid(
                "adaptive_slow_call.multiple",
                format!("must be finite and at least 1, got {}", a.multiple),
            ));
        }
        non_zero("adaptive_slow_call.floor", a.floor)?;
        if a.cap < a.floor {
            return Err(ConfigError::invalid(
                "adaptive_slow_call.cap",
                format!("must be at least `floor` ({:?}), got {:?}", a.floor, a.cap),
            ));
        }
        if !(10..=MAX_MIN_SAMPLES).contains(&a.min_samples) {
            return Err(ConfigError::invalid(
                "adaptive_slow_call.min_samples",
                format!(
                    "must be between 10 and {MAX_MIN_SAMPLES}, got {}",
                    a.min_samples
                ),
            ));
        }
        Ok(())
    }
}

/// The sliding window of the closed state; both read their running totals in
/// O(1).
///
/// ```
/// use std::time::Duration;
/// use stratum_breaker::SlidingWindow;
///
/// let w: SlidingWindow = serde_json::from_str(r#"{"type":"count_based","size":50}"#).unwrap();
/// assert_eq!(w, SlidingWindow::CountBased { size: 50 });
/// let w: SlidingWindow = serde_json::from_str(r#"{"type":"time_based","duration":"10s"}"#).unwrap();
/// assert_eq!(w, SlidingWindow::TimeBased { duration: Duration::from_secs(10) });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SlidingWindow {
    /// The last `size` calls. 1 to [`MAX_COUNT_WINDOW`].
    CountBased {
        /// How many calls the window holds.
        size: u32,
    },
    /// The calls of the last `duration`, in one-second buckets: a whole
    /// number of seconds from 1 s to [`MAX_TIME_WINDOW`].
    TimeBased {
        /// How far back the window reaches.
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
}

impl Default for SlidingWindow {
    fn default() -> Self {
        SlidingWindow::CountBased { size: 100 }
    }
}

/// How long the breaker waits in the open state before probing.
///
/// ```
/// use std::time::Duration;
/// use stratum_breaker::OpenWait;
///
/// let wait = OpenWait::Exponential {
///     initial: Duration::from_secs(1),
///     multiplier: 2.0,
///     max: Duration::from_secs(10),
/// };
/// assert_eq!(wait.base_wait(1), Duration::from_secs(1));
/// assert_eq!(wait.base_wait(3), Duration::from_secs(4));
/// assert_eq!(wait.base_wait(50), Duration::from_secs(10)); // capped
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OpenWait {
    /// The same wait every time. Non-zero.
    Constant {
        /// The wait.
        #[serde(with = "humantime_serde")]
        wait: Duration,
    },
    /// `initial * multiplier^(trip - 1)`, capped at `max`, where `trip`
    /// counts the openings since the breaker was last closed.
    Exponential {
        /// The first wait. Non-zero.
        #[serde(with = "humantime_serde")]
        initial: Duration,
        /// The growth per consecutive trip. Finite, at least 1.
        multiplier: f64,
        /// The cap. At least `initial`.
        #[serde(with = "humantime_serde")]
        max: Duration,
    },
}

impl Default for OpenWait {
    fn default() -> Self {
        OpenWait::Constant {
            wait: Duration::from_secs(60),
        }
    }
}

impl OpenWait {
    /// The wait before jitter for the `trip`-th consecutive opening (1 for
    /// the first; 0 is treated as 1), truncated to whole nanoseconds.
    pub fn base_wait(&self, trip: u32) -> Duration {
        match *self {
            OpenWait::Constant { wait } => wait,
            OpenWait::Exponential {
                initial,
                multiplier,
                max,
            } => {
                let exponent = i32::try_from(trip.saturating_sub(1)).unwrap_or(i32::MAX);
                // In nanoseconds, so an integer multiplier gives exact waits.
                let nanos = duration_nanos(initial) as f64 * multiplier.powi(exponent);
                if !nanos.is_finite() || nanos >= duration_nanos(max) as f64 {
                    max
                } else {
                    // In [0, max): the truncating cast cannot saturate.
                    Duration::from_nanos(nanos as u64)
                }
            }
        }
    }
}

impl BreakerConfig {
    /// Checks every field; the first refused one comes back as a
    /// [`ConfigError`] naming it and the reason.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stratum_breaker::BreakerConfig;
    ///
    /// let config = BreakerConfig { max_wait_in_half_open: Duration::ZERO, ..Default::default() };
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.field(), "max_wait_in_half_open");
    /// assert_eq!(err.reason(), Some("must be greater than zero"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name(&self.name)?;
        percent("failure_rate_threshold", self.failure_rate_threshold)?;
        percent("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        non_zero(
            "slow_call_duration_threshold",
            self.slow_call_duration_threshold,
        )?;
        self.adaptive_slow_call.validate()?;
        match self.sliding_window {
            SlidingWindow::CountBased { size } => {
                if size == 0 || size > MAX_COUNT_WINDOW {
                    return Err(ConfigError::invalid(
                        "sliding_window.size",
                        format!("must be between 1 and {MAX_COUNT_WINDOW} calls, got {size}"),
                    ));
                }
            }
            SlidingWindow::TimeBased { duration } => {
                if duration.is_zero() || duration.subsec_nanos() != 0 || duration > MAX_TIME_WINDOW
                {
                    return Err(ConfigError::invalid(
                        "sliding_window.duration",
                        format!(
                            "must be a whole number of seconds from 1s to {}s, got {duration:?}",
                            MAX_TIME_WINDOW.as_secs()
                        ),
                    ));
                }
            }
        }
        if self.minimum_number_of_calls == 0 {
            return Err(ConfigError::invalid(
                "minimum_number_of_calls",
                "must be at least 1",
            ));
        }
        let permitted = self.permitted_calls_in_half_open;
        if permitted == 0 || permitted > MAX_PERMITTED_IN_HALF_OPEN {
            return Err(ConfigError::invalid(
                "permitted_calls_in_half_open",
                format!("must be between 1 and {MAX_PERMITTED_IN_HALF_OPEN}, got {permitted}"),
            ));
        }
        match self.wait_in_open {
            OpenWait::Constant { wait } => non_zero("wait_in_open.wait", wait)?,
            OpenWait::Exponential {
                initial,
                multiplier,
                max,
            } => {
                non_zero("wait_in_open.initial", initial)?;
                if !multiplier.is_finite() || multiplier < 1.0 {
                    return Err(ConfigError::invalid(
                        "wait_in_open.multiplier",
                        format!("must be finite and at least 1, got {multiplier}"),
                    ));
                }
                if max < initial {
                    return Err(ConfigError::invalid(
                        "wait_in_open.max",
                        format!("must be at least `initial` ({initial:?}), got {max:?}"),
                    ));
                }
            }
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(ConfigError::invalid(
                "jitter",
                format!("must be in [0, 1), got {}", self.jitter),
            ));
        }
        non_zero("max_wait_in_half_open", self.max_wait_in_half_open)?;
        Ok(())
    }
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(ConfigError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} characters, got {}", name.len()),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(ConfigError::invalid(
            "name",
            format!("may only hold [A-Za-z0-9_.-] (it becomes a metric label), found {bad:?}"),
        ));
    }
    Ok(())
}

fn percent(field: &'static str, value: f64) -> Result<(), ConfigError> {
    // `!(a && b)` rather than `a || b` so NaN is refused too.
    if !(value > 0.0 && value <= 100.0) {
        return Err(ConfigError::invalid(
            field,
            format!("must be in (0, 100], got {value}"),
        ));
    }
    Ok(())
}

fn non_zero(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::invalid(field, "must be greater than zero"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        BreakerConfig::default().validate().unwrap();
    }

    #[test]
    fn exponential_wait_grows_and_caps() {
        let w = OpenWait::Exponential {
            initial: Duration::from_millis(100),
            multiplier: 3.0,
            max: Duration::from_secs(2),
        };
        assert_eq!(w.base_wait(0), Duration::from_millis(100));
        assert_eq!(w.base_wait(2), Duration::from_millis(300));
        assert_eq!(w.base_wait(4), Duration::from_millis(2000));
        assert_eq!(w.base_wait(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn serde_round_trip_keeps_every_field() {
        let config = BreakerConfig {
            name: "x".into(),
            jitter_seed: Some(7),
            sliding_window: SlidingWindow::TimeBased {
                duration: Duration::from_secs(5),
            },
            wait_in_open: OpenWait::Exponential {
                initial: Duration::from_millis(10),
                multiplier: 1.5,
                max: Duration::from_secs(1),
            },
            ..Default::default()
        };
        let text = toml::to_string(&config).unwrap();
        let back: BreakerConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(toml::from_str::<BreakerConfig>("failure_rate = 3.0").is_err());
        assert!(
            toml::from_str::<BreakerConfig>(
                "sliding_window = { type = \"count_based\", size = 3, extra = 1 }"
            )
            .is_err()
        );
    }
}
