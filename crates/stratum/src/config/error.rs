//! Why a configuration was refused.

use std::path::PathBuf;

/// A configuration that cannot be used, naming the field (or the file
/// position) and the reason. Messages never quote a connection string's
/// credentials.
///
/// ```
/// use stratum::{ConfigError, StratumConfig};
///
/// let err = StratumConfig::builder()
///     .toml("[breaker]\nfailure_rate_threshold = 0.0\n")
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), Some("breaker.failure_rate_threshold"));
/// assert_eq!(err.to_string(), "invalid `breaker.failure_rate_threshold`: must be in (0, 100]");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value is out of range or malformed.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The dotted path of the field (`cache.ttl`), or the environment
        /// variable that set it (`STRATUM_CACHE_TTL`).
        field: String,
        /// What is wrong, and what would be right.
        reason: String,
    },
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The TOML text is malformed or does not fit the schema (an unknown key,
    /// a wrong type, a nonsense duration).
    #[error(
        "{source_name}:{line}:{column}: {}{message}",
        field.as_deref().map(|f| format!("`{f}`: ")).unwrap_or_default()
    )]
    Parse {
        /// The file path, or `<toml>` for text given in code.
        source_name: String,
        /// 1-based line of the offending text (0 when unknown).
        line: usize,
        /// 1-based column of the offending text (0 when unknown).
        column: usize,
        /// The dotted path of the field whose value does not fit
        /// (`cache.ttl`), or of the table holding an unknown key; `None` for
        /// a syntax error, which belongs to no field.
        field: Option<String>,
        /// The parser's message, with any credentials masked.
        message: String,
    },
}

impl ConfigError {
    /// A value refused by validation.
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The field this error is about, when it is about one field: the
    /// refused field, or the field whose TOML value does not fit its type.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            ConfigError::Parse { field, .. } => field.as_deref(),
            ConfigError::Read { .. } => None,
        }
    }
}

impl From<stratum_core::ConfigError> for ConfigError {
    fn from(e: stratum_core::ConfigError) -> ConfigError {
        ConfigError::invalid(e.field(), e.reason().unwrap_or_default())
    }
}
