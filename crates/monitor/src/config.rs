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
        self.webhook
            .validate()
            .map_err(|e| e.within("webhook").within("alerts"))
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
