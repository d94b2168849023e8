//! The sections of [`StratumConfig`](super::StratumConfig): plain data with
//! public fields, each field's doc stating its default.
//!
//! The layer sections (cache, breaker, pool, monitor) are the facade's view of
//! each layer's knobs; they are mapped onto the layers' own configurations
//! when the layers are wired in.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// The longest timeout or wait any section accepts: longer is a typo, and
/// would overflow deadline arithmetic sooner or later.
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest time-to-live or staleness bound the cache accepts.
const MAX_AGE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

fn check_duration(
    field: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            field,
            format!(
                "must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(())
}

fn check_percent(field: &str, value: f64) -> Result<(), ConfigError> {
    // Written so that NaN fails too.
    if !(value > 0.0 && value <= 100.0) {
        return Err(ConfigError::invalid(field, "must be in (0, 100]"));
    }
    Ok(())
}

fn check_range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            field,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(())
}

/// The read-through cache in front of the store.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Whether the cache layer is used. Default `true`.
    pub enabled: bool,
    /// The most entries held. Default 10 000.
    pub max_entries: u64,
    /// How long an entry is fresh after it was written. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How long past its TTL an entry may still be served when the database
    /// fails or the breaker is open; zero disables stale reads. Default 5 min.
    #[serde(with = "humantime_serde")]
    pub stale_for: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_entries: 10_000,
            ttl: Duration::from_secs(60),
            stale_for: Duration::from_secs(300),
        }
    }
}

impl CacheConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("cache.max_entries", self.max_entries, 1, 1 << 40)?;
        check_duration("cache.ttl", self.ttl, Duration::from_millis(1), MAX_AGE)?;
        check_duration("cache.stale_for", self.stale_for, Duration::ZERO, MAX_AGE)
    }
}

/// The circuit breaker around every database call.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Whether the breaker layer is used. Default `true`.
    pub enabled: bool,
    /// The failure rate, in percent of the calls in the window, that opens
    /// the breaker. Default 50.
    pub failure_rate_threshold: f64,
    /// The slow-call rate, in percent, that opens the breaker. Default 100.
    pub slow_call_rate_threshold: f64,
    /// A call slower than this counts as slow. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub slow_call_duration: Duration,
    /// How many calls the window holds. Default 100.
    pub window_size: u32,
    /// How many calls must be in the window before it is judged. Default 20.
    pub minimum_calls: u32,
    /// How long the breaker stays open before it lets probes through. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub open_wait: Duration,
    /// How many probe calls a half-open breaker permits. Default 5.
    pub half_open_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: Duration::from_secs(2),
            window_size: 100,
            minimum_calls: 20,
            open_wait: Duration::from_secs(5),
            half_open_calls: 5,
        }
    }
}

impl BreakerConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_percent(
            "breaker.failure_rate_threshold",
            self.failure_rate_threshold,
        )?;
        check_percent(
            "breaker.slow_call_rate_threshold",
            self.slow_call_rate_threshold,
        )?;
        let ms = Duration::from_millis(1);
        check_duration(
            "breaker.slow_call_duration",
            self.slow_call_duration,
            ms,
            MAX_WAIT,
        )?;
        check_range("breaker.window_size", self.window_size, 1, 1_000_000)?;
        check_range(
            "breaker.minimum_calls",
            self.minimum_calls,
            1,
            self.window_size,
        )
        .map_err(|_| {
            ConfigError::invalid(
                "breaker.minimum_calls",
                "must be between 1 and `breaker.window_size`",
            )
        })?;
        check_duration("breaker.open_wait", self.open_wait, ms, MAX_WAIT)?;
        check_range("breaker.half_open_calls", self.half_open_calls, 1, 10_000)
    }
}

/// Admission to the database: how many operations run at once.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Whether the pool layer is used. Default `true`.
    pub enabled: bool,
    /// The most connections (or operation slots). Default 16.
    pub max_size: u32,
    /// Connections kept open when idle. Default 0.
    pub min_idle: u32,
    /// How long a caller waits for a slot before a timeout error. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// An idle connection is closed after this long. Default 10 min.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A connection is replaced after this long. Default 30 min.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            enabled: true,
            max_size: 16,
            min_idle: 0,
            acquire_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(1800),
        }
    }
}

impl PoolConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("pool.max_size", self.max_size, 1, 10_000)?;
        if self.min_idle > self.max_size {
            return Err(ConfigError::invalid(
                "pool.min_idle",
                "must not exceed `pool.max_size`",
            ));
        }
        let ms = Duration::from_millis(1);
        check_duration("pool.acquire_timeout", self.acquire_timeout, ms, MAX_WAIT)?;
        check_duration("pool.idle_timeout", self.idle_timeout, ms, MAX_WAIT)?;
        check_duration("pool.max_lifetime", self.max_lifetime, ms, MAX_AGE)
    }
}

/// The metrics and health listener.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Whether the monitor layer is used. Default `true`.
    pub enabled: bool,
    /// Where `/metrics` and `/health/*` are served. Default `127.0.0.1:9000`
    /// (loopback: exposing it is a decision to make explicitly).
    pub listen: SocketAddr,
    /// Must be `true` for `listen` to name anything but a loopback address
    /// (`0.0.0.0`, a public interface): metrics and health then reach
    /// beyond this host. Default `false`.
    pub allow_non_loopback: bool,
    /// How often histogram buffers are drained. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub upkeep_interval: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            enabled: true,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9000)),
            allow_non_loopback: false,
            upkeep_interval: Duration::from_secs(5),
        }
    }
}

impl MonitorConfig {
    /// Checks every field.
    ///
    /// ```
    /// use stratum::config::sections::MonitorConfig;
    ///
    /// let mut monitor = MonitorConfig { listen: "0.0.0.0:9000".parse().unwrap(), ..Default::default() };
    /// assert_eq!(monitor.validate().unwrap_err().field(), Some("monitor.listen"));
    /// monitor.allow_non_loopback = true; // asked for explicitly
    /// assert!(monitor.validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && !self.allow_non_loopback {
            return Err(ConfigError::invalid(
                "monitor.listen",
                format!(
                    "{} is not a loopback address; set `monitor.allow_non_loopback = true` \
                     to serve metrics and health beyond this host",
                    self.listen.ip()
                ),
            ));
        }
        check_duration(
            "monitor.upkeep_interval",
            self.upkeep_interval,
            Duration::from_millis(10),
            MAX_WAIT,
        )
    }
}
