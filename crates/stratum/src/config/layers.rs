//! The layer sections mapped onto each layer's own configuration type.
//!
//! The facade's sections are the user's vocabulary (`breaker.open_wait`);
//! the layers validate their own types. A value the layer refuses comes back
//! as a facade [`crate::ConfigError`] naming the facade's field, so a user never
//! has to know a layer's internal field names.

#[cfg(any(feature = "breaker", feature = "cache"))]
use super::ConfigError;
#[cfg(feature = "breaker")]
use super::sections::BreakerConfig;
#[cfg(feature = "cache")]
use super::sections::CacheConfig;

/// The breaker configuration for `section`, named `name` (the metric
/// label), validated by the breaker itself.
///
/// ```
/// use stratum::config::{layers, sections::BreakerConfig};
///
/// let section = BreakerConfig { half_open_calls: 9_000, ..Default::default() };
/// let err = layers::breaker_config(&section, "store").unwrap_err();
/// assert_eq!(err.field(), Some("breaker.half_open_calls"));
/// ```
#[cfg(feature = "breaker")]
pub fn breaker_config(
    section: &BreakerConfig,
    name: &str,
) -> Result<stratum_breaker::BreakerConfig, ConfigError> {
    let config = stratum_breaker::BreakerConfig {
        name: name.to_owned(),
        failure_rate_threshold: section.failure_rate_threshold,
        slow_call_rate_threshold: section.slow_call_rate_threshold,
        slow_call_duration_threshold: section.slow_call_duration,
        sliding_window: stratum_breaker::SlidingWindow::CountBased {
            size: section.window_size,
        },
        minimum_number_of_calls: section.minimum_calls,
        permitted_calls_in_half_open: section.half_open_calls,
        wait_in_open: stratum_breaker::OpenWait::Constant {
            wait: section.open_wait,
        },
        // A fleet that tripped together should not probe together.
        jitter: 0.1,
        jitter_seed: None,
        // Health checks and the demo's report should see half-open without
        // waiting for traffic.
        automatic_transition_to_half_open: true,
        ..stratum_breaker::BreakerConfig::default()
    };
    config.validate().map_err(|e| {
        let field = match e.field() {
            "failure_rate_threshold" => "breaker.failure_rate_threshold",
            "slow_call_rate_threshold" => "breaker.slow_call_rate_threshold",
            "slow_call_duration_threshold" => "breaker.slow_call_duration",
            "sliding_window.size" | "sliding_window" => "breaker.window_size",
            "minimum_number_of_calls" => "breaker.minimum_calls",
            "permitted_calls_in_half_open" => "breaker.half_open_calls",
            "wait_in_open.wait" | "wait_in_open" => "breaker.open_wait",
            "name" => "breaker.name",
            other => other,
        };
        ConfigError::invalid(field, e.reason().to_owned())
    })?;
    Ok(config)
}

/// The cache configuration for one repository's cache, named `name` (the
/// metric label: a collection name, fixed by the program), validated by the
/// cache itself.
///
/// `stale_for = 0s` turns stale reads off (`max_stale = None`).
///
/// ```
/// use std::time::Duration;
/// use stratum::config::{layers, sections::CacheConfig};
///
/// let section = CacheConfig { ttl: Duration::from_secs(30), ..Default::default() };
/// let config = layers::cache_config(&section, "messages").unwrap();
/// assert_eq!(config.time_to_live, Some(Duration::from_secs(30)));
/// assert_eq!(config.max_stale, Some(Duration::from_secs(300)));
/// ```
#[cfg(feature = "cache")]
pub fn cache_config(
    section: &CacheConfig,
    name: &str,
) -> Result<stratum_cache::CacheConfig, ConfigError> {
    let config = stratum_cache::CacheConfig {
        name: name.to_owned(),
        max_capacity: section.max_entries,
        time_to_live: Some(section.ttl),
        max_stale: (!section.stale_for.is_zero()).then_some(section.stale_for),
        ..stratum_cache::CacheConfig::default()
    };
    config.validate().map_err(|e| {
        let field = match e.field {
            "max_capacity" | "shards" => "cache.max_entries",
            "time_to_live" => "cache.ttl",
            "max_stale" => "cache.stale_for",
            "name" => "cache.name",
            other => other,
        };
        ConfigError::invalid(field, e.reason.clone())
    })?;
    Ok(config)
}

#[cfg(all(test, feature = "breaker", feature = "cache"))]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn defaults_map_and_validate() {
        let b = breaker_config(&BreakerConfig::default(), "store").unwrap();
        assert_eq!(b.name, "store");
        assert_eq!(b.minimum_number_of_calls, 20);
        assert_eq!(
            b.sliding_window,
            stratum_breaker::SlidingWindow::CountBased { size: 100 }
        );
        let c = cache_config(&CacheConfig::default(), "messages").unwrap();
        assert_eq!(c.max_capacity, 10_000);
        assert_eq!(c.time_to_live, Some(Duration::from_secs(60)));
    }

    #[test]
    fn zero_stale_for_turns_stale_reads_off() {
        let section = CacheConfig {
            stale_for: Duration::ZERO,
            ..Default::default()
        };
        assert_eq!(cache_config(&section, "x").unwrap().max_stale, None);
    }

    #[test]
    fn layer_refusals_name_the_facade_field() {
        let err = breaker_config(&BreakerConfig::default(), "bad name!").unwrap_err();
        assert_eq!(err.field(), Some("breaker.name"));
        let err = breaker_config(
            &BreakerConfig {
                half_open_calls: 5_000,
                ..Default::default()
            },
            "ok",
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("breaker.half_open_calls"));
        let err = cache_config(&CacheConfig::default(), "").unwrap_err();
        assert_eq!(err.field(), Some("cache.name"));
    }
}
