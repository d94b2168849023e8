//! Configuration: plain data with documented defaults, serde (durations in
//! humantime form, `"30s"`), and validation that names the offending field.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// How a pool behaves. Every field's doc states its default.
///
/// Defaults follow HikariCP where it has one (30 s acquire timeout, 10 min
/// idle timeout, 30 min lifetime with 2.5 % jitter, 500 ms validation skip
/// window) and the product's sizing (10 to 200 objects, adaptive).
///
/// ```
/// use stratum_pool::PoolConfig;
///
/// let config: PoolConfig = serde_json::from_str(
///     r#"{ "name": "orders", "min_size": 2, "max_size": 16, "acquire_timeout": "2s" }"#,
/// ).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.acquire_timeout, std::time::Duration::from_secs(2));
///
/// let bad = PoolConfig { min_size: 20, max_size: 10, ..PoolConfig::default() };
/// assert_eq!(bad.validate().unwrap_err().field(), "min_size");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// The pool's name, used as the `pool` metric label and in logs: 1 to 48
    /// characters from `[A-Za-z0-9_.-]`. Default: `"default"`.
    pub name: String,
    /// Objects kept alive at all times: created in the background, never
    /// reaped for idleness or age below this count, and the floor of adaptive
    /// sizing. Default: 10.
    pub min_size: usize,
    /// The hard ceiling on live objects; adaptive sizing never goes above it.
    /// Default: 200.
    pub max_size: usize,
    /// How long `get` waits for a slot before failing with a timeout.
    /// Never unbounded. With the background task (the default) the pool's
    /// sweeper enforces it in sixteenths: a wait ends between 15/16 of it
    /// and it. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// How long creating one object may take. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub create_timeout: Duration,
    /// How long a health check on checkout may take before the object is
    /// retired. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub recycle_timeout: Duration,
    /// An idle object older than this (minus jitter) is retired, unless that
    /// would leave fewer than `min_size`. `None` disables. Default: 10 min.
    #[serde(with = "stratum_core::optional_duration")]
    pub idle_timeout: Option<Duration>,
    /// An object older than this (minus jitter) is retired when idle or at its
    /// next checkout. `None` disables. Default: 30 min.
    #[serde(with = "stratum_core::optional_duration")]
    pub max_lifetime: Option<Duration>,
    /// Each object's idle timeout and lifetime are shortened by a random
    /// fraction in `[0, jitter)`, so objects created together do not all
    /// expire together. In `[0, 0.5]`. Default: 0.025.
    pub jitter: f64,
    /// The health check on checkout is skipped when the object came back to
    /// the pool less than this long ago. Zero checks every time. Default: 500 ms.
    #[serde(with = "humantime_serde")]
    pub validation_skip_window: Duration,
    /// A lease held longer than this is logged with where it was taken and
    /// counted as a leak. `None` disables. Default: 60 s.
    #[serde(with = "stratum_core::optional_duration")]
    pub leak_detection_threshold: Option<Duration>,
    /// How often the background task keeps `min_size` warm, reaps, scans for
    /// leaks, updates gauges and runs the adaptive controller. Default: 1 s.
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: Duration,
    /// Adaptive sizing between `min_size` and `max_size`.
    pub adaptive: AdaptiveConfig,
    /// The adaptive concurrency limit between `limit.min` and `max_size`,
    /// for a [`ConcurrencyLimit`](crate::ConcurrencyLimit) put in front of
    /// the pool (Stratum's admission does).
    pub limit: LimitConfig,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            name: "default".to_owned(),
            min_size: 10,
            max_size: 200,
            acquire_timeout: Duration::from_secs(30),
            create_timeout: Duration::from_secs(10),
            recycle_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            jitter: 0.025,
            validation_skip_window: Duration::from_millis(500),
            leak_detection_threshold: Some(Duration::from_secs(60)),
            maintenance_interval: Duration::from_secs(1),
            adaptive: AdaptiveConfig::default(),
            limit: LimitConfig::default(),
        }
    }
}

/// Adaptive sizing: the pool's limit moves between `min_size` and `max_size`.
///
/// It grows while tasks queue for an object or the mean acquire latency is
/// above target, and shrinks once objects have sat idle with nobody waiting
/// for `shrink_after`. See [`crate::adaptive`] for the decision rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// Whether the limit adapts. When off, the limit is `max_size`. Default: true.
    pub enabled: bool,
    /// Mean acquire latency over one maintenance interval above which the
    /// pool grows even without queued tasks. Default: 10 ms.
    #[serde(with = "humantime_serde")]
    pub target_acquire_latency: Duration,
    /// How long the pool must have been calm (idle objects, nobody waiting,
    /// latency under target) before it shrinks. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub shrink_after: Duration,
    /// The minimum time between two resizes in the same direction. Default: 1 s.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            enabled: true,
            target_acquire_latency: Duration::from_millis(10),
            shrink_after: Duration::from_secs(30),
            cooldown: Duration::from_secs(1),
        }
    }
}

/// The adaptive concurrency limit (see [`crate::gradient`] for the rule and
/// [`crate::ConcurrencyLimit`] for the admission it drives): how many calls
/// may be in flight at once, following the backend's power (goodput over
/// mean latency) under a latency guard, between `min` and the pool's `max_size`; and how long a
/// caller that finds the limit reached may wait (a CoDel-style bound, so overload is answered at once
/// instead of by a long queue).
///
/// ```
/// use stratum_pool::{LimitConfig, PoolConfig};
///
/// let config: PoolConfig = serde_json::from_str(
///     r#"{ "max_size": 128, "limit": { "min": 2, "tolerance": 3.0, "queue_delay_target": "2ms" } }"#,
/// ).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.limit.min, 2);
///
/// let mut bad = PoolConfig::default();
/// bad.limit.smoothing = 0.0;
/// assert_eq!(bad.validate().unwrap_err().field(), "limit.smoothing");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitConfig {
    /// Whether the limit adapts. When off, it stays at the pool's
    /// `max_size`, and the queue bounds below still apply. Default: true.
    pub enabled: bool,
    /// The floor of the limit, also the limit while the no-load latency is
    /// re-measured. At least 1; above `max_size` it is `max_size`. Default: 4.
    pub min: usize,
    /// The limit after the first window, which runs at `min` to measure
    /// the no-load latency (brought inside `[min, max_size]`). Default: 24.
    pub initial: usize,
    /// Mean latency up to this multiple of the no-load latency counts as
    /// healthy (the limit follows power, up or down); beyond it the
    /// limit falls in proportion, by at least an eighth per window.
    /// Greater than 1. Default: 2.0.
    pub tolerance: f64,
    /// The fraction of a computed decrease applied per window, in (0, 1]:
    /// one bad window takes at most half of it off the limit (and at least
    /// an eighth of the limit, whichever is more). Default: 0.2.
    pub smoothing: f64,
    /// How long samples are collected before the limit is recomputed (at
    /// the first completed call after it, with at least `min_samples`).
    /// Default: 100 ms.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The fewest completed calls a window needs to be judged. At least 1.
    /// Default: 10.
    pub min_samples: u64,
    /// How often the no-load latency is re-measured: one window at `min`,
    /// whose mean latency becomes the new no-load latency. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// A caller arriving at a standing queue (one not empty at any time in
    /// the last `queue_interval`) waits at most this long, then fails
    /// `Overloaded`. CoDel's target. Also when a freed slot stops going to
    /// the longest waiter: once that one has waited longer than this, the
    /// newest waiter is served first (adaptive LIFO). Default: 5 ms.
    #[serde(with = "humantime_serde")]
    pub queue_delay_target: Duration,
    /// A caller arriving while the queue has recently been empty waits at
    /// most this long. CoDel's interval; at least `queue_delay_target`.
    /// Default: 100 ms.
    #[serde(with = "humantime_serde")]
    pub queue_interval: Duration,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            enabled: true,
            min: 4,
            initial: 24,
            tolerance: 2.0,
            smoothing: 0.2,
            window: Duration::from_millis(100),
            min_samples: 10,
            probe_interval: Duration::from_secs(10),
            queue_delay_target: Duration::from_millis(5),
            queue_interval: Duration::from_millis(100),
        }
    }
}

impl LimitConfig {
    /// Checks every field; the error names the field (undotted;
    /// [`PoolConfig::validate`] prefixes `limit.`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min == 0 {
            return Err(ConfigError::invalid("min", "must be at least 1"));
        }
        if !(self.tolerance.is_finite() && self.tolerance > 1.0) {
            return Err(ConfigError::invalid(
                "tolerance",
                "must be a finite number greater than 1",
            ));
        }
        if !(self.smoothing.is_finite() && self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(ConfigError::invalid("smoothing", "must be in (0, 1]"));
        }
        positive("window", self.window)?;
        if self.min_samples == 0 {
            return Err(ConfigError::invalid("min_samples", "must be at least 1"));
        }
        positive("probe_interval", self.probe_interval)?;
        positive("queue_delay_target", self.queue_delay_target)?;
        if self.queue_interval < self.queue_delay_target {
            return Err(ConfigError::invalid(
                "queue_interval",
                "must not be less than queue_delay_target",
            ));
        }
        Ok(())
    }
}

fn positive(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::invalid(field, "must be greater than zero"));
    }
    Ok(())
}

fn positive_if_set(field: &'static str, value: Option<Duration>) -> Result<(), ConfigError> {
    match value {
        Some(v) if v.is_zero() => Err(ConfigError::invalid(
            field,
            "must be greater than zero (omit it to disable)",
        )),
        _ => Ok(()),
    }
}

impl PoolConfig {
    /// Checks every field; the error names the first invalid one and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 48
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            return Err(ConfigError::invalid(
                "name",
                "must be 1 to 48 characters from [A-Za-z0-9_.-]",
            ));
        }
        if self.max_size == 0 {
            return Err(ConfigError::invalid(
                "max_size",
                "must be greater than zero",
            ));
        }
        // deadpool's semaphore holds at most usize::MAX >> 3 permits; a
        // million objects is far past any sane pool.
        if self.max_size > 1_000_000 {
            return Err(ConfigError::invalid("max_size", "must be at most 1000000"));
        }
        if self.min_size > self.max_size {
            return Err(ConfigError::invalid(
                "min_size",
                "must not be greater than max_size",
            ));
        }
        positive("acquire_timeout", self.acquire_timeout)?;
        positive("create_timeout", self.create_timeout)?;
        positive("recycle_timeout", self.recycle_timeout)?;
        positive_if_set("idle_timeout", self.idle_timeout)?;
        positive_if_set("max_lifetime", self.max_lifetime)?;
        positive_if_set("leak_detection_threshold", self.leak_detection_threshold)?;
        if !(self.jitter.is_finite() && (0.0..=0.5).contains(&self.jitter)) {
            return Err(ConfigError::invalid("jitter", "must be in [0, 0.5]"));
        }
        positive("maintenance_interval", self.maintenance_interval)?;
        positive(
            "adaptive.target_acquire_latency",
            self.adaptive.target_acquire_latency,
        )?;
        positive("adaptive.shrink_after", self.adaptive.shrink_after)?;
        self.limit.validate().map_err(|e| e.within("limit"))?;
        Ok(())
    }

    /// The limit a new pool starts with: `min_size` when adaptive (at least
    /// one), else `max_size`.
    pub(crate) fn initial_limit(&self) -> usize {
        if self.adaptive.enabled {
            self.min_size.max(1)
        } else {
            self.max_size
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: PoolConfig) -> String {
        config.validate().unwrap_err().field().to_owned()
    }

    #[test]
    fn defaults_are_valid_and_bounded() {
        let config = PoolConfig::default();
        config.validate().unwrap();
        assert_eq!((config.min_size, config.max_size), (10, 200));
        assert_eq!(config.acquire_timeout, Duration::from_secs(30));
    }

    #[test]
    fn every_invalid_field_is_named() {
        let d = PoolConfig::default;
        assert_eq!(
            field_of(PoolConfig {
                max_size: 0,
                min_size: 0,
                ..d()
            }),
            "max_size"
        );
        assert_eq!(
            field_of(PoolConfig {
                min_size: 11,
                max_size: 10,
                ..d()
            }),
            "min_size"
        );
        assert_eq!(
            field_of(PoolConfig {
                acquire_timeout: Duration::ZERO,
                ..d()
            }),
            "acquire_timeout"
        );
        assert_eq!(
            field_of(PoolConfig {
                create_timeout: Duration::ZERO,
                ..d()
            }),
            "create_timeout"
        );
        assert_eq!(
            field_of(PoolConfig {
                recycle_timeout: Duration::ZERO,
                ..d()
            }),
            "recycle_timeout"
        );
        assert_eq!(
            field_of(PoolConfig {
                idle_timeout: Some(Duration::ZERO),
                ..d()
            }),
            "idle_timeout"
        );
        assert_eq!(
            field_of(PoolConfig {
                max_lifetime: Some(Duration::ZERO),
                ..d()
            }),
            "max_lifetime"
        );
        assert_eq!(field_of(PoolConfig { jitter: 0.9, ..d() }), "jitter");
        assert_eq!(
            field_of(PoolConfig {
                jitter: f64::NAN,
                ..d()
            }),
            "jitter"
        );
        assert_eq!(
            field_of(PoolConfig {
                name: String::new(),
                ..d()
            }),
            "name"
        );
        assert_eq!(
            field_of(PoolConfig {
                name: "a b".into(),
                ..d()
            }),
            "name"
        );
        assert_eq!(
            field_of(PoolConfig {
                maintenance_interval: Duration::ZERO,
                ..d()
            }),
            "maintenance_interval"
        );
        let adaptive = AdaptiveConfig {
            shrink_after: Duration::ZERO,
            ..AdaptiveConfig::default()
        };
        assert_eq!(
            field_of(PoolConfig { adaptive, ..d() }),
            "adaptive.shrink_after"
        );
    }

    #[test]
    fn every_invalid_limit_field_is_named() {
        let with = |f: &dyn Fn(&mut LimitConfig)| {
            let mut c = PoolConfig::default();
            f(&mut c.limit);
            field_of(c)
        };
        assert_eq!(with(&|l| l.min = 0), "limit.min");
        assert_eq!(with(&|l| l.tolerance = 1.0), "limit.tolerance");
        assert_eq!(with(&|l| l.tolerance = f64::INFINITY), "limit.tolerance");
        assert_eq!(with(&|l| l.smoothing = 0.0), "limit.smoothing");
        assert_eq!(with(&|l| l.smoothing = 1.5), "limit.smoothing");
        assert_eq!(with(&|l| l.window = Duration::ZERO), "limit.window");
        assert_eq!(with(&|l| l.min_samples = 0), "limit.min_samples");
        assert_eq!(
            with(&|l| l.probe_interval = Duration::ZERO),
            "limit.probe_interval"
        );
        assert_eq!(
            with(&|l| l.queue_delay_target = Duration::ZERO),
            "limit.queue_delay_target"
        );
        assert_eq!(
            with(&|l| l.queue_interval = Duration::from_millis(1)),
            "limit.queue_interval"
        );
        // A pool smaller than the default minimum of 4 stays valid.
        PoolConfig {
            min_size: 0,
            max_size: 2,
            ..PoolConfig::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn serde_round_trips_with_humantime_durations() {
        let config = PoolConfig {
            idle_timeout: None,
            ..PoolConfig::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains("\"acquire_timeout\":\"30s\""), "{json}");
        let back: PoolConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<PoolConfig>(r#"{ "max_sise": 3 }"#).unwrap_err();
        assert!(err.to_string().contains("max_sise"), "{err}");
    }
}
