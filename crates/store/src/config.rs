//! The store's configuration: which store, the MongoDB server and driver
//! timeouts, and the rules both stores apply. Plain data with public fields,
//! each field's doc stating its default.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stratum_core::ConfigError;

use crate::MongoUri;

/// The longest timeout or wait any section accepts: longer is a typo, and
/// would overflow deadline arithmetic sooner or later.
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);
/// MongoDB's own limit on a document's BSON size.
pub const MONGODB_MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

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

/// Where documents live and how the driver reaches them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongoConfig {
    /// The server's connection string; `None` (the default) means the
    /// embedded in-memory store. Redacted in every `Debug`, `Display` and
    /// serialization.
    pub uri: Option<MongoUri>,
    /// The database name. Default `stratum`.
    pub database: String,
    /// The application name the driver reports to the server. Default `stratum`.
    pub app_name: String,
    /// How long opening a connection may take. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long the driver may look for a suitable server. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub server_selection_timeout: Duration,
    /// The deadline of one store operation, end to end. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// Whether a `Stratum` handle over this server follows each
    /// repository's change stream and drops the cached documents other
    /// processes change (the server must be a replica set or a sharded
    /// cluster; on a standalone server the cache falls back to its TTL).
    /// Costs one long-lived cursor and connection per repository. Default
    /// `true`.
    pub change_streams: bool,
}

impl Default for MongoConfig {
    fn default() -> Self {
        MongoConfig {
            uri: None,
            database: "stratum".into(),
            app_name: "stratum".into(),
            connect_timeout: Duration::from_secs(5),
            server_selection_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(5),
            change_streams: true,
        }
    }
}

impl MongoConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_database_name("mongodb.database", &self.database)?;
        if self.app_name.is_empty() || self.app_name.len() > 128 {
            return Err(ConfigError::invalid(
                "mongodb.app_name",
                "must be 1 to 128 bytes long",
            ));
        }
        let ms = Duration::from_millis(1);
        check_duration(
            "mongodb.connect_timeout",
            self.connect_timeout,
            ms,
            MAX_WAIT,
        )?;
        check_duration(
            "mongodb.server_selection_timeout",
            self.server_selection_timeout,
            ms,
            MAX_WAIT,
        )?;
        check_duration(
            "mongodb.operation_timeout",
            self.operation_timeout,
            ms,
            MAX_WAIT,
        )
    }
}

/// MongoDB's rules for database names (the stricter, portable set).
pub fn validate_database_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 63 {
        return Err(ConfigError::invalid(field, "must be 1 to 63 bytes long"));
    }
    if name.chars().any(|c| {
        matches!(
            c,
            '/' | '\\' | '.' | ' ' | '"' | '$' | '*' | '<' | '>' | ':' | '|' | '?' | '\0'
        )
    }) {
        return Err(ConfigError::invalid(
            field,
            "must not contain any of / \\ . space \" $ * < > : | ? or NUL",
        ));
    }
    Ok(())
}

/// Which store backs the facade.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// MongoDB when `mongodb.uri` is set, the embedded store otherwise (the default).
    #[default]
    Auto,
    /// The embedded in-process store, even when a URI is set.
    Memory,
    /// MongoDB; `mongodb.uri` must be set.
    Mongodb,
}

/// Store-wide rules that both stores apply the same way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Which store to use. Default `auto`.
    pub backend: Backend,
    /// The largest document accepted, in bytes of BSON. Default and maximum
    /// 16 MiB (MongoDB's own limit).
    pub max_document_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Auto,
            max_document_bytes: MONGODB_MAX_DOCUMENT_BYTES,
        }
    }
}

impl StoreConfig {
    /// Whether this configuration selects MongoDB (with `mongodb` giving the
    /// server): `auto` does when a URI is set.
    pub fn uses_mongodb(&self, mongodb: &MongoConfig) -> bool {
        match self.backend {
            Backend::Auto => mongodb.uri.is_some(),
            Backend::Memory => false,
            Backend::Mongodb => true,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "store.max_document_bytes",
            self.max_document_bytes,
            16,
            MONGODB_MAX_DOCUMENT_BYTES,
        )
    }
}
