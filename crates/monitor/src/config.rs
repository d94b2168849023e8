//! Configuration: plain data with public fields, `Default`, serde (durations
//! in humantime, e.g. `"30s"`), and [`MonitorConfig::validate`], which names
//! the offending field.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The default `/metrics` address: loopback only, the Prometheus "stratum" port.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// Bucket upper bounds (seconds) for every `*_seconds` histogram: 100 µs to
/// 30 s, dense where database round trips and cache loads fall.
pub const DEFAULT_SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Everything the monitor can be told.
///
/// ```
/// use stratum_monitor::MonitorConfig;
///
/// let config: MonitorConfig = serde_json::from_str(
///     r#"{ "listen": "127.0.0.1:0", "upkeep_interval": "2s", "idle_timeout": "5m" }"#,
/// ).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.upkeep_interval.as_secs(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Where `/metrics`, `/health/live` and `/health/ready` are served.
    /// Default `127.0.0.1:9464`.
    pub listen: SocketAddr,
    /// Must be `true` to listen on anything but loopback: exposing metrics
    /// beyond the host is a decision, not a default. Default `false`.
    pub allow_non_loopback: bool,
    /// Whether a `Stratum` handle binds `listen` and serves the routes
    /// itself. `false`: it runs the monitor's background work only
    /// ([`Monitor::spawn_background`](crate::Monitor::spawn_background)),
    /// and the program mounts [`Monitor::router`](crate::Monitor::router) in
    /// its own server. Default `true`. (`Monitor::start` always binds.)
    pub serve: bool,
    /// How often the exporter drains buffered histogram samples. Without
    /// upkeep every sample stays in memory until the next scrape. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub upkeep_interval: Duration,
    /// Series not updated for this long disappear from `/metrics`; `None`
    /// keeps them forever. Default 10 min.
    #[serde(with = "stratum_core::optional_duration")]
    pub idle_timeout: Option<Duration>,
    /// Bucket upper bounds (seconds) for every `*_seconds` histogram, strictly
    /// increasing. Default [`DEFAULT_SECONDS_BUCKETS`].
    pub seconds_buckets: Vec<f64>,
    /// How often process resources (RSS, CPU, fds) are sampled. Default 15 s.
    #[serde(with = "humantime_serde")]
    pub resource_interval: Duration,
    /// How often alert rules are evaluated. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub alert_interval: Duration,
    /// A health check slower than this counts as `DOWN`. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub health_check_timeout: Duration,
    /// The in-process latency tracker.
    pub percentiles: PercentileConfig,
    /// The default alert rules and where their events are delivered.
    pub alerts: AlertsConfig,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            allow_non_loopback: false,
            serve: true,
            upkeep_interval: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            seconds_buckets: DEFAULT_SECONDS_BUCKETS.to_vec(),
            resource_interval: Duration::from_secs(15),
            alert_interval: Duration::from_secs(5),
            health_check_timeout: Duration::from_secs(2),
            percentiles: PercentileConfig::default(),
            alerts: AlertsConfig::default(),
        }
    }
}

impl MonitorConfig {
    /// A builder starting from the defaults.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stratum_monitor::MonitorConfig;
    ///
    /// let config = MonitorConfig::builder()
    ///     .listen("127.0.0.1:0".parse().unwrap())
    ///     .upkeep_interval(Duration::from_secs(1))
    ///     .build()
    ///     .unwrap();
    /// assert!(config.listen.ip().is_loopback());
    /// ```
    pub fn builder() -> MonitorConfigBuilder {
        MonitorConfigBuilder {
            config: Self::default(),
        }
    }

    /// Checks every field; the error names the first offending one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && !self.allow_non_loopback {
            return Err(ConfigError::invalid(
                "listen",
                format!(
                    "{} is not a loopback address; set allow_non_loopback = true to expose metrics beyond this host",
                    self.listen.ip()
                ),
            ));
        }
        positive("upkeep_interval", self.upkeep_interval)?;
        if let Some(idle) = self.idle_timeout {
            positive("idle_timeout", idle)?;
        }
        positive("resource_interval", self.resource_interval)?;
        positive("alert_interval", self.alert_interval)?;
        positive("health_check_timeout", self.health_check_timeout)?;
        validate_buckets(&self.seconds_buckets)?;
        self.percentiles.validate()?;
        self.alerts.validate()
    }
}

/// `[monitor.alerts]`: the default rule set a `Stratum` handle registers,
/// each rule switchable, and the webhook its events are posted to.
///
/// Every rule has hysteresis: it fires once its figure has breached on every
/// evaluation for `for_duration`, and resolves once the figure has stayed
/// at or under `resolve_at` for `resolve_for`.
///
/// ```
/// use stratum_monitor::MonitorConfig;
///
/// let config: MonitorConfig = toml_like(r#"{
///     "alerts": {
///         "error_ratio": { "threshold": 0.1, "resolve_at": 0.02 },
///         "latency_p99": { "enabled": false },
///         "webhook": { "url": "http://127.0.0.1:9093/api/v2/alerts" }
///     }
/// }"#);
/// config.validate().unwrap();
/// assert_eq!(config.alerts.error_ratio.threshold, 0.1);
/// assert!(config.alerts.breaker_open.enabled);
/// # fn toml_like(s: &str) -> MonitorConfig { serde_json::from_str(s).unwrap() }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// `breaker_open`: the store's circuit breaker is not closed (open,
    /// forced open or half-open). Default on, fires at once, resolves after
    /// 10 s closed.
    pub breaker_open: StateRuleConfig,
    /// `admission_saturated`: admission slots in use over the limit, a 0..1
    /// ratio. Default on, fires above 0.95 held 30 s, resolves at 0.8 held
    /// 30 s.
    pub admission_saturated: RatioRuleConfig,
    /// `error_ratio`: database calls that failed (the database failed or
    /// timed out, or the breaker or admission refused the call) over all
    /// calls since the previous evaluation, a 0..1 ratio. Default on, fires
    /// above 0.05 held 30 s, resolves at 0.01 held 60 s.
    pub error_ratio: RatioRuleConfig,
    /// `latency_p99`: the p99 of database calls over the latency tracker's
    /// window against an objective. Default on, fires above 500 ms held
    /// 60 s, resolves at 200 ms held 60 s.
    pub latency_p99: LatencyRuleConfig,
    /// `<operation>.<sli>_burn_<long window>`: service-level objectives per
    /// operation and the multiwindow, multi-burn-rate rules on their error
    /// budgets (Google SRE Workbook, "Alerting on SLOs"). Default on, one
    /// objective for the stack's database calls (`store.call`): 99.9 %
    /// succeed, 99 % within 500 ms; pages at 14.4x over 1 h and 5 min, and
    /// at 6x over 6 h and 30 min.
    pub burn_rate: BurnRateConfig,
    /// `latency_regression`: the p99 of database calls against a baseline
    /// learned from its own history (EWMA baseline, CUSUM change point).
    /// Default on: fires when p99 has stayed at least 1.5x the baseline for
    /// 2 min (plus the percentile window).
    pub latency_regression: RegressionConfig,
    /// Where fired and resolved events are posted (besides callbacks and
    /// `tracing`).
    pub webhook: WebhookConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            breaker_open: StateRuleConfig {
                enabled: true,
                for_duration: Duration::ZERO,
                resolve_for: Duration::from_secs(10),
            },
            admission_saturated: RatioRuleConfig {
                enabled: true,
                threshold: 0.95,
                resolve_at: 0.8,
                for_duration: Duration::from_secs(30),
                resolve_for: Duration::from_secs(30),
            },
            error_ratio: RatioRuleConfig {
                enabled: true,
                threshold: 0.05,
                resolve_at: 0.01,
                for_duration: Duration::from_secs(30),
                resolve_for: Duration::from_secs(60),
            },
            latency_p99: LatencyRuleConfig::default(),
            burn_rate: BurnRateConfig::default(),
            latency_regression: RegressionConfig::default(),
            webhook: WebhookConfig::default(),
        }
    }
}

impl AlertsConfig {
    /// Checks every rule and the webhook; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, rule) in [
            ("admission_saturated", &self.admission_saturated),
            ("error_ratio", &self.error_ratio),
        ] {
            rule.validate()
                .map_err(|e| e.within(name).within("alerts"))?;
        }
        self.latency_p99
            .validate()
            .map_err(|e| e.within("latency_p99").within("alerts"))?;
        self.burn_rate
            .validate()
            .map_err(|e| e.within("burn_rate").within("alerts"))?;
        self.latency_regression
            .validate()
            .map_err(|e| e.within("latency_regression").within("alerts"))?;
        self.webhook
            .validate()
            .map_err(|e| e.within("webhook").within("alerts"))
    }
}

/// `[monitor.alerts.burn_rate]`: error-budget burn-rate alerting.
///
/// Each [objective](SloObjective) names an operation and what share of its
/// calls must be good: succeed (`availability`), and finish within
/// `latency_threshold` (`latency_target`). The error budget is the rest
/// (`1 - target`). The **burn rate** over a window is the bad share in the
/// window divided by the budget: 1 spends the budget exactly over `period`.
/// Each [window pair](BurnWindow) is a rule per objective and kind of bad
/// call, firing while the burn rate over **both** its long and its short
/// window is at least `budget_share * period / long`: the long window says
/// the budget share is really being spent, the short one that it still is
/// (so the alert resolves minutes, not hours, after the burning stops).
///
/// Calls are counted in a ring of `bucket`-wide buckets per operation,
/// sized for the longest window (6 h of 1 min buckets: 360 buckets of 24
/// bytes, 8.6 KB per operation; at most 86 400 buckets); a window of `n`
/// buckets covers the current bucket and the `n - 1` before it.
///
/// ```
/// use stratum_monitor::BurnRateConfig;
///
/// let config = BurnRateConfig::default();
/// config.validate().unwrap();
/// let page = &config.windows[0];
/// assert_eq!(config.threshold(page), 14.4); // 2 % of 30 days' budget in 1 h
/// assert_eq!(config.threshold(&config.windows[1]), 6.0); // 5 % in 6 h
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BurnRateConfig {
    /// Whether the rules are registered.
    pub enabled: bool,
    /// The period the error budget is defined over. Default 30 days.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// The width of one counting bucket, at least 1 s; a window covers its
    /// length in buckets, rounded up. Default 1 min.
    #[serde(with = "humantime_serde")]
    pub bucket: Duration,
    /// Calls the short window must hold before its burn rate is read (fewer:
    /// no figure, so a handful of calls cannot page). Default 20.
    pub min_calls: u64,
    /// The window pairs, each a rule per objective and kind. Default: 2 % of
    /// the budget in 1 h confirmed over 5 min (14.4x), 5 % in 6 h confirmed
    /// over 30 min (6x).
    pub windows: Vec<BurnWindow>,
    /// The objectives, one per operation. Default: `store.call` (the
    /// stack's database calls), 99.9 % available, 99 % within 500 ms.
    pub objectives: Vec<SloObjective>,
    /// How long both burn rates must stay at or over the threshold before a
    /// rule fires. Default 0: the short window is the confirmation.
    #[serde(with = "humantime_serde")]
    pub for_duration: Duration,
    /// How long they must stay under it before the rule resolves. Default
    /// 0: the short window drains within its own length.
    #[serde(with = "humantime_serde")]
    pub resolve_for: Duration,
}

/// One long/short window pair of [`BurnRateConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnWindow {
    /// The long window (e.g. 1 h).
    #[serde(with = "humantime_serde")]
    pub long: Duration,
    /// The short, confirming window (e.g. 5 min; the workbook uses 1/12 of
    /// the long one).
    #[serde(with = "humantime_serde")]
    pub short: Duration,
    /// The share of the period's error budget that, spent within `long`,
    /// pages (e.g. 0.02).
    pub budget_share: f64,
}

/// One operation's service-level objective in [`BurnRateConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloObjective {
    /// The operation (`[a-z0-9_.-]{1,64}`): `store.call` is every database
    /// call of a `Stratum` handle; other names are operations the program
    /// records itself with [`SloTracker::record`](crate::SloTracker::record).
    pub operation: String,
    /// The share of calls that must succeed, in `(0, 1)`; `None`: no error
    /// rules.
    pub availability: Option<f64>,
    /// A call slower than this is bad for the latency objective; `None`: no
    /// latency rules.
    #[serde(with = "stratum_core::optional_duration")]
    pub latency_threshold: Option<Duration>,
    /// The share of calls that must finish within `latency_threshold`, in
    /// `(0, 1)`.
    pub latency_target: f64,
}

impl Default for BurnRateConfig {
    fn default() -> Self {
        BurnRateConfig {
            enabled: true,
            period: Duration::from_secs(30 * 86_400),
            bucket: Duration::from_secs(60),
            min_calls: 20,
            windows: vec![
                BurnWindow {
                    long: Duration::from_secs(3600),
                    short: Duration::from_secs(300),
                    budget_share: 0.02,
                },
                BurnWindow {
                    long: Duration::from_secs(6 * 3600),
                    short: Duration::from_secs(1800),
                    budget_share: 0.05,
                },
            ],
            objectives: vec![SloObjective {
                operation: "store.call".to_owned(),
                availability: Some(0.999),
                latency_threshold: Some(Duration::from_millis(500)),
                latency_target: 0.99,
            }],
            for_duration: Duration::ZERO,
            resolve_for: Duration::ZERO,
        }
    }
}

impl BurnRateConfig {
    /// The burn rate at which `window` fires: `budget_share * period / long`.
    pub fn threshold(&self, window: &BurnWindow) -> f64 {
        let raw = window.budget_share * self.period.as_secs_f64() / window.long.as_secs_f64();
        // Round away the float noise of the division (14.400000000000002).
        (raw * 1e9).round() / 1e9
    }

    /// The buckets a window covers: its length over `bucket`, rounded up.
    pub fn buckets_of(&self, window: Duration) -> usize {
        let n = window.as_nanos().div_ceil(self.bucket.as_nanos().max(1));
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    /// The buckets of every operation's ring: those of the longest window.
    pub fn buckets(&self) -> usize {
        self.buckets_of(self.longest()).max(1)
    }

    /// The longest window, which sizes every operation's ring.
    pub fn longest(&self) -> Duration {
        self.windows
            .iter()
            .map(|w| w.long.max(w.short))
            .max()
            .unwrap_or(self.bucket)
    }

    /// Checks every field; the error names the first offending one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("period", self.period)?;
        positive("bucket", self.bucket)?;
        if self.bucket < Duration::from_secs(1) {
            return Err(ConfigError::invalid("bucket", "must be at least 1s"));
        }
        if self.windows.len() > 8 {
            return Err(ConfigError::invalid("windows", "at most 8 window pairs"));
        }
        for w in &self.windows {
            for (field, d) in [("windows.long", w.long), ("windows.short", w.short)] {
                if d < self.bucket {
                    return Err(ConfigError::invalid(field, "must be at least one bucket"));
                }
                if d > self.period {
                    return Err(ConfigError::invalid(field, "must not exceed period"));
                }
            }
            if w.short > w.long {
                return Err(ConfigError::invalid("windows.short", "must be <= long"));
            }
            if !(w.budget_share > 0.0 && w.budget_share <= 1.0) {
                return Err(ConfigError::invalid(
                    "windows.budget_share",
                    "must be in (0, 1]",
                ));
            }
        }
        if self.buckets() > 86_400 {
            return Err(ConfigError::invalid(
                "windows",
                "the longest window holds at most 86400 buckets",
            ));
        }
        if self.objectives.len() > 16 {
            return Err(ConfigError::invalid("objectives", "at most 16 objectives"));
        }
        for (i, o) in self.objectives.iter().enumerate() {
            if crate::error::validate_name(&o.operation).is_err() {
                return Err(ConfigError::invalid(
                    "objectives.operation",
                    "must be 1-64 characters from [a-z0-9_.-]",
                ));
            }
            if self.objectives[..i]
                .iter()
                .any(|p| p.operation == o.operation)
            {
                return Err(ConfigError::invalid(
                    "objectives.operation",
                    format!("`{}` has two objectives", o.operation),
                ));
            }
            let open_unit = |v: f64| v > 0.0 && v < 1.0;
            if let Some(a) = o.availability
                && !open_unit(a)
            {
                return Err(ConfigError::invalid(
                    "objectives.availability",
                    "must be in (0, 1)",
                ));
            }
            if let Some(t) = o.latency_threshold {
                positive("objectives.latency_threshold", t)?;
                if !open_unit(o.latency_target) {
                    return Err(ConfigError::invalid(
                        "objectives.latency_target",
                        "must be in (0, 1)",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `[monitor.alerts.latency_regression]`: a latency regression detector on
/// a rolling percentile.
///
/// Every `sample_every` it reads the percentile and works on its logarithm
/// (so a 2x rise is the same step at 5 ms as at 500 ms). A **baseline**
/// (mean and spread) is learned as an exponentially weighted average with
/// half-life `baseline_half_life`, from readings that show no change; a
/// slow drift is followed, a step is not. The smallest rise that counts is
/// `delta = max(ln(min_ratio), noise_sigmas * spread)`. A one-sided
/// **CUSUM** adds up each reading's excess over the baseline beyond
/// `delta / 2` (never below 0); the time it last left 0 is when the change
/// began. While the sum is at least `decision * delta` the rule's figure is
/// the level over the baseline (else at most 1); the rule fires when that
/// ratio has stayed at or above `min_ratio` for `confirm` plus the
/// percentile's window (which stretches every change by up to its length),
/// and resolves when it has stayed at or under `resolve_ratio` for
/// `resolve_for`.
///
/// ```
/// use stratum_monitor::RegressionConfig;
///
/// let config = RegressionConfig::default();
/// config.validate().unwrap();
/// assert_eq!(config.min_ratio, 1.5);
/// assert_eq!(config.confirm.as_secs(), 120);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegressionConfig {
    /// Whether the rule is registered.
    pub enabled: bool,
    /// The percentile watched, in `(0, 1)`. Default 0.99.
    pub quantile: f64,
    /// How often the percentile is read (at most once per alert
    /// evaluation). Default 10 s.
    #[serde(with = "humantime_serde")]
    pub sample_every: Duration,
    /// How fast the baseline follows the percentile. Default 1 h.
    #[serde(with = "humantime_serde")]
    pub baseline_half_life: Duration,
    /// How long the baseline is learned before the rule can fire. Default
    /// 15 min.
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
    /// The smallest rise over the baseline that is a regression, > 1.
    /// Default 1.5.
    pub min_ratio: f64,
    /// A rise must also exceed this many baseline spreads (standard
    /// deviations of the log percentile), so a noisy series needs a larger
    /// step. Default 4.
    pub noise_sigmas: f64,
    /// The CUSUM decision threshold, in units of the smallest rise. Default 2.
    pub decision: f64,
    /// How long the calls' percentile must stay at or above `min_ratio`
    /// times the baseline before the rule fires (the rule holds for this
    /// plus the percentile's window): a spike shorter than this does not
    /// page. Default 2 min.
    #[serde(with = "humantime_serde")]
    pub confirm: Duration,
    /// The rule resolves at or under this level over the baseline, in
    /// `[1, min_ratio]`. Default 1.2.
    pub resolve_ratio: f64,
    /// How long the level must stay there. Default 2 min.
    #[serde(with = "humantime_serde")]
    pub resolve_for: Duration,
}

impl Default for RegressionConfig {
    fn default() -> Self {
        RegressionConfig {
            enabled: true,
            quantile: 0.99,
            sample_every: Duration::from_secs(10),
            baseline_half_life: Duration::from_secs(3600),
            warmup: Duration::from_secs(900),
            min_ratio: 1.5,
            noise_sigmas: 4.0,
            decision: 2.0,
            confirm: Duration::from_secs(120),
            resolve_ratio: 1.2,
            resolve_for: Duration::from_secs(120),
        }
    }
}

impl RegressionConfig {
    /// Checks every field; the error names the first offending one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.quantile > 0.0 && self.quantile < 1.0) {
            return Err(ConfigError::invalid("quantile", "must be in (0, 1)"));
        }
        positive("sample_every", self.sample_every)?;
        if self.baseline_half_life < self.sample_every {
            return Err(ConfigError::invalid(
                "baseline_half_life",
                "must be >= sample_every",
            ));
        }
        if !(self.min_ratio.is_finite() && self.min_ratio > 1.0) {
            return Err(ConfigError::invalid("min_ratio", "must be finite and > 1"));
        }
        if !(self.noise_sigmas.is_finite() && self.noise_sigmas >= 0.0) {
            return Err(ConfigError::invalid(
                "noise_sigmas",
                "must be finite and >= 0",
            ));
        }
        if !(self.decision.is_finite() && self.decision > 0.0) {
            return Err(ConfigError::invalid("decision", "must be finite and > 0"));
        }
        if !(self.resolve_ratio >= 1.0 && self.resolve_ratio <= self.min_ratio) {
            return Err(ConfigError::invalid(
                "resolve_ratio",
                "must be in [1, min_ratio]",
            ));
        }
        Ok(())
    }
}

/// A rule on a state (on or off): fires while the state holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateRuleConfig {
    /// Whether the rule is registered.
    pub enabled: bool,
    /// How long the state must hold before the rule fires.
    #[serde(with = "humantime_serde")]
    pub for_duration: Duration,
    /// How long the state must be gone before the rule resolves.
    #[serde(with = "humantime_serde")]
    pub resolve_for: Duration,
}

impl Default for StateRuleConfig {
    fn default() -> Self {
        AlertsConfig::default().breaker_open
    }
}

/// A rule on a 0..1 ratio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RatioRuleConfig {
    /// Whether the rule is registered.
    pub enabled: bool,
    /// Fires above this ratio, in `[0, 1]`.
    pub threshold: f64,
    /// Resolves at or under this ratio, in `[0, threshold]`.
    pub resolve_at: f64,
    /// How long the ratio must stay above `threshold` before the rule fires.
    #[serde(with = "humantime_serde")]
    pub for_duration: Duration,
    /// How long it must stay at or under `resolve_at` before it resolves.
    #[serde(with = "humantime_serde")]
    pub resolve_for: Duration,
}

impl Default for RatioRuleConfig {
    fn default() -> Self {
        AlertsConfig::default().error_ratio
    }
}

impl RatioRuleConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(ConfigError::invalid("threshold", "must be in [0, 1]"));
        }
        if !(0.0..=self.threshold).contains(&self.resolve_at) {
            return Err(ConfigError::invalid(
                "resolve_at",
                "must be in [0, threshold]",
            ));
        }
        Ok(())
    }
}

/// A rule on a latency percentile against an objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyRuleConfig {
    /// Whether the rule is registered.
    pub enabled: bool,
    /// Fires when the percentile is above this.
    #[serde(with = "humantime_serde")]
    pub objective: Duration,
    /// Resolves when the percentile is at or under this (at most `objective`).
    #[serde(with = "humantime_serde")]
    pub resolve_at: Duration,
    /// How long the percentile must stay above the objective before it fires.
    #[serde(with = "humantime_serde")]
    pub for_duration: Duration,
    /// How long it must stay at or under `resolve_at` before it resolves.
    #[serde(with = "humantime_serde")]
    pub resolve_for: Duration,
}

impl Default for LatencyRuleConfig {
    fn default() -> Self {
        LatencyRuleConfig {
            enabled: true,
            objective: Duration::from_millis(500),
            resolve_at: Duration::from_millis(200),
            for_duration: Duration::from_secs(60),
            resolve_for: Duration::from_secs(60),
        }
    }
}

impl LatencyRuleConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("objective", self.objective)?;
        if self.resolve_at > self.objective {
            return Err(ConfigError::invalid("resolve_at", "must be <= objective"));
        }
        Ok(())
    }
}

/// `[monitor.alerts.webhook]`: an HTTP endpoint that receives alert events
/// as Alertmanager's `POST /api/v2/alerts` body (a JSON array of alerts
/// with `labels`, `annotations`, `startsAt`, `endsAt`).
///
/// Events wait in a bounded queue (full: the event is dropped and counted),
/// are posted by one background task with retries and exponential backoff,
/// and never hold up the evaluation or a database call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://host:port/path`; `None` (the default) posts nothing. Only
    /// plain `http` (a loopback Alertmanager or a sidecar; TLS is not spoken).
    pub url: Option<String>,
    /// How long one attempt may take. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per post before it is given up (counted as failed), at
    /// least 1. Default 5.
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles after each
    /// further failure, up to `max_backoff`. Default 200 ms.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// The longest wait between attempts. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Events waiting to be posted, 1..=65536; more are dropped. Default 1024.
    pub queue_capacity: usize,
    /// Firing alerts are posted again this often, so a receiver that
    /// resolves unrefreshed alerts (Alertmanager's `resolve_timeout`) keeps
    /// them. Default 1 min.
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: None,
            timeout: Duration::from_secs(5),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            queue_capacity: 1024,
            repeat_interval: Duration::from_secs(60),
        }
    }
}

impl WebhookConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
            crate::webhook::Endpoint::parse(url)?;
        }
        positive("timeout", self.timeout)?;
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid("max_attempts", "must be at least 1"));
        }
        positive("initial_backoff", self.initial_backoff)?;
        if self.max_backoff < self.initial_backoff {
            return Err(ConfigError::invalid(
                "max_backoff",
                "must be >= initial_backoff",
            ));
        }
        if !(1..=65_536).contains(&self.queue_capacity) {
            return Err(ConfigError::invalid(
                "queue_capacity",
                "must be in 1..=65536",
            ));
        }
        positive("repeat_interval", self.repeat_interval)
    }
}

/// The rolling window of the in-process latency tracker.
///
/// The window is a ring of `sub_windows` histograms, each covering
/// `window / sub_windows`; the oldest is cleared as time moves on, so a
/// percentile covers between `window - window/sub_windows` and `window` of
/// history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PercentileConfig {
    /// The span percentiles cover. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Sub-windows in the ring, 1..=120. Default 6 (10 s each).
    pub sub_windows: usize,
    /// Largest latency that is tracked exactly; longer ones are clamped to it.
    /// Between 1 ms and 24 h. Default 1 h.
    #[serde(with = "humantime_serde")]
    pub highest_trackable: Duration,
    /// Significant decimal digits kept, 1..=5. Default 3 (0.1 % error).
    pub significant_digits: u8,
    /// Most operations tracked; more are refused, which keeps memory and
    /// label cardinality bounded. Each operation holds `sub_windows + 1`
    /// histograms of about 190 KB each at the default range and precision
    /// (about 1.3 MB per operation). Default 64.
    pub max_operations: usize,
}

impl Default for PercentileConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            sub_windows: 6,
            highest_trackable: Duration::from_secs(3600),
            significant_digits: 3,
            max_operations: 64,
        }
    }
}

impl PercentileConfig {
    /// Checks every field; the error names the first offending one.
    ///
    /// ```
    /// use stratum_monitor::PercentileConfig;
    ///
    /// let config = PercentileConfig { significant_digits: 9, ..Default::default() };
    /// assert_eq!(config.validate().unwrap_err().field(), "percentiles.significant_digits");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=120).contains(&self.sub_windows) {
            return Err(ConfigError::invalid(
                "percentiles.sub_windows",
                "must be in 1..=120",
            ));
        }
        if self.window.is_zero()
            || self.window / (self.sub_windows as u32) < Duration::from_millis(1)
        {
            return Err(ConfigError::invalid(
                "percentiles.window",
                "must give every sub-window at least 1ms",
            ));
        }
        if self.highest_trackable < Duration::from_millis(1)
            || self.highest_trackable > Duration::from_secs(86_400)
        {
            return Err(ConfigError::invalid(
                "percentiles.highest_trackable",
                "must be between 1ms and 24h",
            ));
        }
        if !(1..=5).contains(&self.significant_digits) {
            return Err(ConfigError::invalid(
                "percentiles.significant_digits",
                "must be in 1..=5",
            ));
        }
        if self.max_operations == 0 {
            return Err(ConfigError::invalid(
                "percentiles.max_operations",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Builds a validated [`MonitorConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MonitorConfigBuilder {
    config: MonitorConfig,
}

impl MonitorConfigBuilder {
    /// See [`MonitorConfig::listen`].
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }
    /// See [`MonitorConfig::allow_non_loopback`].
    pub fn allow_non_loopback(mut self, allow: bool) -> Self {
        self.config.allow_non_loopback = allow;
        self
    }
    /// See [`MonitorConfig::upkeep_interval`].
    pub fn upkeep_interval(mut self, every: Duration) -> Self {
        self.config.upkeep_interval = every;
        self
    }
    /// See [`MonitorConfig::idle_timeout`].
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }
    /// See [`MonitorConfig::seconds_buckets`].
    pub fn seconds_buckets(mut self, buckets: Vec<f64>) -> Self {
        self.config.seconds_buckets = buckets;
        self
    }
    /// See [`MonitorConfig::resource_interval`].
    pub fn resource_interval(mut self, every: Duration) -> Self {
        self.config.resource_interval = every;
        self
    }
    /// See [`MonitorConfig::alert_interval`].
    pub fn alert_interval(mut self, every: Duration) -> Self {
        self.config.alert_interval = every;
        self
    }
    /// See [`MonitorConfig::health_check_timeout`].
    pub fn health_check_timeout(mut self, timeout: Duration) -> Self {
        self.config.health_check_timeout = timeout;
        self
    }
    /// See [`MonitorConfig::percentiles`].
    pub fn percentiles(mut self, percentiles: PercentileConfig) -> Self {
        self.config.percentiles = percentiles;
        self
    }
    /// See [`MonitorConfig::alerts`].
    pub fn alerts(mut self, alerts: AlertsConfig) -> Self {
        self.config.alerts = alerts;
        self
    }
    /// Validates and returns the configuration.
    pub fn build(self) -> Result<MonitorConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

fn positive(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::invalid(field, "must be greater than zero"))
    } else {
        Ok(())
    }
}

fn validate_buckets(buckets: &[f64]) -> Result<(), ConfigError> {
    const FIELD: &str = "seconds_buckets";
    if buckets.is_empty() {
        return Err(ConfigError::invalid(FIELD, "must hold at least one bound"));
    }
    if buckets.len() > 64 {
        return Err(ConfigError::invalid(
            FIELD,
            "at most 64 bounds (each is a series per label set)",
        ));
    }
    if buckets.iter().any(|b| !b.is_finite() || *b <= 0.0) {
        return Err(ConfigError::invalid(
            FIELD,
            "every bound must be finite and > 0",
        ));
    }
    if buckets.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ConfigError::invalid(
            FIELD,
            "bounds must be strictly increasing",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &MonitorConfig) -> String {
        config.validate().unwrap_err().field().to_owned()
    }

    #[test]
    fn defaults_are_valid_and_loopback() {
        let config = MonitorConfig::default();
        config.validate().unwrap();
        assert!(config.listen.ip().is_loopback());
    }

    #[test]
    fn wide_bind_needs_explicit_opt_in() {
        let mut config = MonitorConfig {
            listen: "0.0.0.0:9464".parse().unwrap(),
            ..Default::default()
        };
        assert_eq!(field_of(&config), "listen");
        config.allow_non_loopback = true;
        config.validate().unwrap();
    }

    #[test]
    fn each_invalid_field_is_named() {
        let base = MonitorConfig::default();
        let cases: Vec<(MonitorConfig, &str)> = vec![
            (
                MonitorConfig {
                    upkeep_interval: Duration::ZERO,
                    ..base.clone()
                },
                "upkeep_interval",
            ),
            (
                MonitorConfig {
                    idle_timeout: Some(Duration::ZERO),
                    ..base.clone()
                },
                "idle_timeout",
            ),
            (
                MonitorConfig {
                    resource_interval: Duration::ZERO,
                    ..base.clone()
                },
                "resource_interval",
            ),
            (
                MonitorConfig {
                    alert_interval: Duration::ZERO,
                    ..base.clone()
                },
                "alert_interval",
            ),
            (
                MonitorConfig {
                    health_check_timeout: Duration::ZERO,
                    ..base.clone()
                },
                "health_check_timeout",
            ),
            (
                MonitorConfig {
                    seconds_buckets: vec![],
                    ..base.clone()
                },
                "seconds_buckets",
            ),
            (
                MonitorConfig {
                    seconds_buckets: vec![0.1, 0.1],
                    ..base.clone()
                },
                "seconds_buckets",
            ),
            (
                MonitorConfig {
                    seconds_buckets: vec![f64::NAN],
                    ..base.clone()
                },
                "seconds_buckets",
            ),
            (
                MonitorConfig {
                    seconds_buckets: vec![-1.0],
                    ..base.clone()
                },
                "seconds_buckets",
            ),
            (
                MonitorConfig {
                    percentiles: PercentileConfig {
                        window: Duration::from_micros(10),
                        ..Default::default()
                    },
                    ..base.clone()
                },
                "percentiles.window",
            ),
            (
                MonitorConfig {
                    percentiles: PercentileConfig {
                        sub_windows: 121,
                        ..Default::default()
                    },
                    ..base.clone()
                },
                "percentiles.sub_windows",
            ),
            (
                MonitorConfig {
                    percentiles: PercentileConfig {
                        highest_trackable: Duration::from_secs(90_000),
                        ..Default::default()
                    },
                    ..base.clone()
                },
                "percentiles.highest_trackable",
            ),
            (
                MonitorConfig {
                    percentiles: PercentileConfig {
                        max_operations: 0,
                        ..Default::default()
                    },
                    ..base.clone()
                },
                "percentiles.max_operations",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(field_of(&config), field, "{config:?}");
        }
    }

    #[test]
    fn serde_round_trip_with_humantime() {
        let config = MonitorConfig::default();
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains("\"upkeep_interval\":\"5s\""), "{json}");
        let back: MonitorConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err =
            serde_json::from_str::<MonitorConfig>(r#"{ "listn": "127.0.0.1:1" }"#).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn builder_validates() {
        let err = MonitorConfig::builder()
            .upkeep_interval(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "upkeep_interval");
        assert!(err.to_string().contains("upkeep_interval"));
    }
}
