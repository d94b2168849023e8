//! The environment layer: `STRATUM_<SECTION>_<FIELD>` variables.
//!
//! Every variable is listed in [`ENV_VARS`] with the field it sets, so the
//! documentation and the code cannot disagree. Variables with the `STRATUM_`
//! prefix that are not listed (`STRATUM_TEST_MONGODB_URI`, `STRATUM_CACHE_DIR`)
//! belong to other tools and are ignored.

use std::str::FromStr;
use std::time::Duration;

use super::{ConfigError, StratumConfig};
use crate::MongoUri;
use stratum_store::Backend;

/// One environment variable and the field it sets.
pub struct EnvVar {
    /// The variable's name.
    pub name: &'static str,
    /// The dotted path of the field it sets.
    pub field: &'static str,
    apply: fn(&mut StratumConfig, &str, &'static str) -> Result<(), ConfigError>,
}

fn duration(name: &'static str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        ConfigError::invalid(
            name,
            format!("not a duration such as `250ms`, `30s` or `5m` ({e})"),
        )
    })
}

fn number<T: FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| ConfigError::invalid(name, "not a number in the accepted range"))
}

fn boolean(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::invalid(
            name,
            "not a boolean (true/false, 1/0, yes/no, on/off)",
        )),
    }
}

macro_rules! env_vars {
    ($( $name:literal => $field:literal : |$c:ident, $v:ident, $n:ident| $body:expr ;)*) => {
        /// Every environment variable the configuration reads, in the order
        /// they are applied.
        pub const ENV_VARS: &[EnvVar] = &[
            $( EnvVar {
                name: $name,
                field: $field,
                apply: |$c: &mut StratumConfig, $v: &str, $n: &'static str| {
                    $body;
                    Ok(())
                },
            }, )*
        ];
    };
}

env_vars! {
    "STRATUM_MONGODB_URI" => "mongodb.uri": |c, v, n| c.mongodb.uri = if v.trim().is_empty() {
        None
    } else {
        Some(MongoUri::parse(v).map_err(|e| ConfigError::invalid(n, e.reason))?)
    };
    "STRATUM_MONGODB_DATABASE" => "mongodb.database": |c, v, _n| c.mongodb.database = v.trim().to_owned();
    "STRATUM_MONGODB_APP_NAME" => "mongodb.app_name": |c, v, _n| c.mongodb.app_name = v.trim().to_owned();
    "STRATUM_MONGODB_CONNECT_TIMEOUT" => "mongodb.connect_timeout": |c, v, n| c.mongodb.connect_timeout = duration(n, v)?;
    "STRATUM_MONGODB_SERVER_SELECTION_TIMEOUT" => "mongodb.server_selection_timeout": |c, v, n| c.mongodb.server_selection_timeout = duration(n, v)?;
    "STRATUM_MONGODB_OPERATION_TIMEOUT" => "mongodb.operation_timeout": |c, v, n| c.mongodb.operation_timeout = duration(n, v)?;
    "STRATUM_STORE_BACKEND" => "store.backend": |c, v, n| c.store.backend = match v.trim().to_ascii_lowercase().as_str() {
        "auto" => Backend::Auto,
        "memory" => Backend::Memory,
        "mongodb" => Backend::Mongodb,
        _ => return Err(ConfigError::invalid(n, "must be `auto`, `memory` or `mongodb`")),
    };
    "STRATUM_STORE_MAX_DOCUMENT_BYTES" => "store.max_document_bytes": |c, v, n| c.store.max_document_bytes = number(n, v)?;
    "STRATUM_CACHE_ENABLED" => "cache.enabled": |c, v, n| c.cache.enabled = boolean(n, v)?;
    "STRATUM_CACHE_MAX_ENTRIES" => "cache.max_entries": |c, v, n| c.cache.max_entries = number(n, v)?;
    "STRATUM_CACHE_TTL" => "cache.ttl": |c, v, n| c.cache.ttl = duration(n, v)?;
    "STRATUM_CACHE_STALE_FOR" => "cache.stale_for": |c, v, n| c.cache.stale_for = duration(n, v)?;
    "STRATUM_BREAKER_ENABLED" => "breaker.enabled": |c, v, n| c.breaker.enabled = boolean(n, v)?;
    "STRATUM_BREAKER_FAILURE_RATE_THRESHOLD" => "breaker.failure_rate_threshold": |c, v, n| c.breaker.failure_rate_threshold = number(n, v)?;
    "STRATUM_BREAKER_SLOW_CALL_DURATION" => "breaker.slow_call_duration": |c, v, n| c.breaker.slow_call_duration = duration(n, v)?;
    "STRATUM_BREAKER_OPEN_WAIT" => "breaker.open_wait": |c, v, n| c.breaker.open_wait = duration(n, v)?;
    "STRATUM_POOL_ENABLED" => "pool.enabled": |c, v, n| c.pool.enabled = boolean(n, v)?;
    "STRATUM_POOL_MAX_SIZE" => "pool.max_size": |c, v, n| c.pool.max_size = number(n, v)?;
    "STRATUM_POOL_ACQUIRE_TIMEOUT" => "pool.acquire_timeout": |c, v, n| c.pool.acquire_timeout = duration(n, v)?;
    "STRATUM_MONITOR_ENABLED" => "monitor.enabled": |c, v, n| c.monitor.enabled = boolean(n, v)?;
    "STRATUM_MONITOR_ALLOW_NON_LOOPBACK" => "monitor.allow_non_loopback": |c, v, n| c.monitor.allow_non_loopback = boolean(n, v)?;
    "STRATUM_MONITOR_LISTEN" => "monitor.listen": |c, v, n| c.monitor.listen = v.trim().parse().map_err(|_| {
        ConfigError::invalid(n, "not a socket address such as `127.0.0.1:9000`")
    })?;
}

/// Applies the listed variables found in `vars` to `config`, in table order.
pub(crate) fn apply(
    config: &mut StratumConfig,
    vars: &[(String, String)],
) -> Result<(), ConfigError> {
    for var in ENV_VARS {
        // The last occurrence wins, as in a shell.
        if let Some((_, value)) = vars.iter().rev().find(|(name, _)| name == var.name) {
            (var.apply)(config, value, var.name)?;
        }
    }
    Ok(())
}
