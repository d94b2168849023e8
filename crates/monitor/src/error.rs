//! Typed errors: invalid configuration, and what can go wrong while running.

use std::net::SocketAddr;

/// A configuration value was refused when it was built: stratum-core's
/// shape, shared by every layer, naming the field as spelled in
/// [`MonitorConfig`](crate::MonitorConfig) (nested ones dotted).
///
/// ```
/// use stratum_monitor::MonitorConfig;
///
/// let mut config = MonitorConfig::default();
/// config.percentiles.sub_windows = 0;
/// let err = config.validate().unwrap_err();
/// assert_eq!(err.field(), "percentiles.sub_windows");
/// ```
pub use stratum_core::ConfigError;

/// An error from the running monitor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP listener could not bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Another `metrics` recorder is already installed process-wide.
    #[error("a global metrics recorder is already installed")]
    RecorderAlreadyInstalled,
    /// A health check or alert rule name is already registered.
    #[error("`{name}` is already registered")]
    Duplicate {
        /// The name registered twice.
        name: String,
    },
    /// A name is empty or uses characters outside `[a-z0-9_.-]`.
    #[error("invalid name `{name}`: use 1-64 characters from [a-z0-9_.-]")]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// The latency tracker already tracks its configured maximum of operations.
    #[error("already tracking {max} operations; `{operation}` was not added")]
    TooManyOperations {
        /// The operation that was refused.
        operation: String,
        /// The configured maximum.
        max: usize,
    },
}

/// Names of checks, rules and operations end up in metric labels: keep them
/// short and from a small alphabet so nobody passes user input by accident.
pub(crate) fn validate_name(name: &str) -> Result<(), MonitorError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(MonitorError::InvalidName {
            name: name.chars().take(80).collect(),
        })
    }
}
