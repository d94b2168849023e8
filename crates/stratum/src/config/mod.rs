//! One configuration for the whole stack, from defaults, a TOML file, the
//! environment and code, merged in that order and validated once.
//!
//! Each layer's section *is* that layer's own configuration type
//! (`stratum_breaker::BreakerConfig` under `[breaker]`, ...) plus an
//! `enabled` switch ([`Section`]): one name, one default and one validator
//! per knob, and everything a layer can do can be set from a file or the
//! environment. Where Stratum needs another default than the layer's (a
//! slow database call is slower than 2 s, not 60 s), [`StratumConfig::default`]
//! sets it, in one place. `docs/configuration.md` lists every key, its
//! variable and its default, generated from these types by a test.
//!
//! # Precedence
//!
//! `defaults < file < environment < code`: each later layer overrides the
//! fields it sets and leaves the others alone. The environment beats the file
//! so an operator can change one knob of a deployed file without editing it
//! (the twelve-factor convention); code beats both because a value written in
//! code is a decision of the program itself (a test forcing the embedded
//! store, say), and the calls are there to read.
//!
//! ```
//! use std::time::Duration;
//! use stratum::StratumConfig;
//!
//! let config = StratumConfig::builder()
//!     .toml("[store]\nmax_document_bytes = 4096\n[mongodb]\ndatabase = \"app\"\n")
//!     .env_vars([("STRATUM_MONGODB_DATABASE", "from_env")])
//!     .configure(|c| c.store.max_document_bytes = 2048)
//!     .build()
//!     .unwrap();
//! assert_eq!(config.mongodb.database, "from_env"); // env beats file
//! assert_eq!(config.store.max_document_bytes, 2048); // code beats file
//! ```
//!
//! # A layer compiled out
//!
//! Without a layer's cargo feature its crate is not compiled, and its
//! section is kept as an opaque table: a file or an environment written for
//! the full build still loads (the layer's keys are read and ignored, only
//! `enabled` is checked), rather than failing on the first key of a layer
//! that is not there.

mod env;
mod keys;
mod report;
mod section;

use std::fmt;
use std::path::{Path, PathBuf};
#[cfg(any(feature = "breaker", feature = "cache", feature = "pool"))]
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::env::{ENV_IGNORED, is_ignored};
pub use self::keys::{Key, RENAMED, Renamed, env_name, keys};
pub use self::report::{ConfigReport, ReportEntry, Source};
pub use self::section::{ENABLED, Section};
use crate::MongoUri;
pub use stratum_core::{ConfigError, ConfigErrorKind, Location};
pub use stratum_store::{Backend, MongoConfig, StoreConfig};

/// The section of a layer whose cargo feature is off: any table, unread.
pub type Opaque = toml::Table;

/// `[breaker]`: `stratum_breaker::BreakerConfig` (an [`Opaque`] table
/// without the `breaker` feature).
#[cfg(feature = "breaker")]
pub type BreakerSettings = stratum_breaker::BreakerConfig;
/// `[breaker]`: `stratum_breaker::BreakerConfig` (an [`Opaque`] table
/// without the `breaker` feature).
#[cfg(not(feature = "breaker"))]
pub type BreakerSettings = Opaque;
/// `[cache]`: `stratum_cache::CacheConfig` (an [`Opaque`] table without the
/// `cache` feature).
#[cfg(feature = "cache")]
pub type CacheSettings = stratum_cache::CacheConfig;
/// `[cache]`: `stratum_cache::CacheConfig` (an [`Opaque`] table without the
/// `cache` feature).
#[cfg(not(feature = "cache"))]
pub type CacheSettings = Opaque;
/// `[pool]`: `stratum_pool::PoolConfig` (an [`Opaque`] table without the
/// `pool` feature).
#[cfg(feature = "pool")]
pub type PoolSettings = stratum_pool::PoolConfig;
/// `[pool]`: `stratum_pool::PoolConfig` (an [`Opaque`] table without the
/// `pool` feature).
#[cfg(not(feature = "pool"))]
pub type PoolSettings = Opaque;
/// `[monitor]`: `stratum_monitor::MonitorConfig` (an [`Opaque`] table
/// without the `monitor` feature).
#[cfg(feature = "monitor")]
pub type MonitorSettings = stratum_monitor::MonitorConfig;
/// `[monitor]`: `stratum_monitor::MonitorConfig` (an [`Opaque`] table
/// without the `monitor` feature).
#[cfg(not(feature = "monitor"))]
pub type MonitorSettings = Opaque;

/// `[llm.semantic]`: `stratum_semantic::TierConfig` (an [`Opaque`] table
/// without the `semantic` feature).
#[cfg(feature = "semantic")]
pub type SemanticSettings = stratum_semantic::TierConfig;
/// `[llm.semantic]`: `stratum_semantic::TierConfig` (an [`Opaque`] table
/// without the `semantic` feature).
#[cfg(not(feature = "semantic"))]
pub type SemanticSettings = Opaque;

/// The name of the breaker around the store (its `breaker` metric label),
/// Stratum's default for `breaker.name`.
pub const BREAKER_NAME: &str = "store";
/// The name of the admission pool (its `pool` metric label), Stratum's
/// default for `pool.name`.
pub const POOL_NAME: &str = "store";

/// The sections whose layer is compiled out of this build.
pub(crate) fn compiled_out() -> Vec<&'static str> {
    [
        ("breaker", cfg!(feature = "breaker")),
        ("cache", cfg!(feature = "cache")),
        ("pool", cfg!(feature = "pool")),
        ("monitor", cfg!(feature = "monitor")),
        ("llm.semantic", cfg!(feature = "semantic")),
    ]
    .into_iter()
    .filter(|(_, on)| !on)
    .map(|(section, _)| section)
    .collect()
}

/// The whole configuration: one section per concern.
///
/// Build one with [`StratumConfig::builder`] to merge a file and the
/// environment and have it validated.
///
/// ```
/// let config = stratum::StratumConfig::default();
/// assert!(config.mongodb.uri.is_none()); // the embedded store
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StratumConfig {
    /// The MongoDB server and driver timeouts (stratum-store).
    pub mongodb: MongoConfig,
    /// Which store, and rules both stores apply (stratum-store).
    pub store: StoreConfig,
    /// The read-through cache of each repository (stratum-cache).
    pub cache: Section<CacheSettings>,
    /// The circuit breaker around every database call (stratum-breaker).
    pub breaker: Section<BreakerSettings>,
    /// Admission to the database (stratum-pool).
    pub pool: Section<PoolSettings>,
    /// Metrics and health serving (stratum-monitor).
    pub monitor: Section<MonitorSettings>,
    /// The LLM helpers: the prompt cache's semantic tier.
    pub llm: LlmConfig,
}

/// `[llm]`: settings of the LLM helpers (`stratum::llm`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LlmConfig {
    /// `[llm.semantic]`: the prompt cache's semantic tier
    /// (stratum-semantic), **off by default**: with `enabled = true` (and
    /// the `semantic` cargo feature), an exact miss is looked up by the
    /// meaning of its last user turn among cached responses of the same
    /// model, parameters, system prompt, tools and tenant.
    pub semantic: Section<SemanticSettings>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            semantic: Section {
                enabled: false,
                settings: SemanticSettings::default(),
            },
        }
    }
}

impl Default for StratumConfig {
    /// Every layer's own defaults, and every layer on, except where Stratum
    /// in front of a database needs another value. These are all the
    /// overrides (the layers' own defaults are generic; docs/configuration.md
    /// marks each):
    ///
    /// - `breaker.name = "store"`, `pool.name = "store"`: the metric labels
    ///   of the one breaker and the one admission pool ([`BREAKER_NAME`],
    ///   [`POOL_NAME`]).
    /// - `breaker.slow_call_duration_threshold = "2s"` (layer: 60 s): a
    ///   database call under a 5 s operation timeout that takes 2 s is
    ///   already slow. With the adaptive threshold (on, as in the layer)
    ///   this is the threshold until the first estimate.
    /// - `breaker.adaptive_slow_call.cap = "2s"` (layer: 10 s): the learned
    ///   threshold is never more lenient than that.
    /// - `breaker.adaptive_slow_call.floor = "50ms"` (layer: 5 ms): the
    ///   breaker times the call from the task's side, so a loaded runtime's
    ///   or host's scheduling delay (tens of milliseconds for every call at
    ///   once) is in every duration; under 50 ms that is not the database
    ///   degrading. A database whose calls take 2 ms still trips on 200 ms.
    /// - `breaker.minimum_number_of_calls = 20` (layer: 100): judge a small
    ///   service's window without waiting for 100 calls.
    /// - `breaker.wait_in_open = { type = "constant", wait = "5s" }` (layer:
    ///   60 s): a database usually recovers or fails over in seconds.
    /// - `breaker.permitted_calls_in_half_open = 5` (layer: 10).
    /// - `breaker.automatic_transition_to_half_open = true` (layer: false):
    ///   health checks and the demo's report see half-open without traffic.
    /// - `cache.time_to_live = "60s"` (layer: none): a cached document is
    ///   re-read from the database at least every minute.
    /// - `cache.max_stale = "5m"` (layer: none): a repository serves a copy
    ///   up to five minutes past its TTL while the database fails.
    /// - `pool.min_size = 0` (layer: 10), `pool.max_size = 128` (layer: 200),
    ///   `pool.acquire_timeout = "2s"` (layer: 30 s), `pool.adaptive.enabled
    ///   = false` (layer: true): connections are opened on demand, up to 128;
    ///   how many calls are in flight is decided by the adaptive concurrency
    ///   limit (`pool.limit`, on by default, between the layer's
    ///   `pool.limit.min = 4` and `max_size`, starting at 24), so
    ///   the pool's own sizing stays off and its slots are always there.
    fn default() -> Self {
        StratumConfig {
            mongodb: MongoConfig::default(),
            store: StoreConfig::default(),
            cache: Section::on(default_cache()),
            breaker: Section::on(default_breaker()),
            pool: Section::on(default_pool()),
            monitor: Section::default(),
            llm: LlmConfig::default(),
        }
    }
}

#[cfg(feature = "cache")]
fn default_cache() -> CacheSettings {
    stratum_cache::CacheConfig {
        time_to_live: Some(Duration::from_secs(60)),
        max_stale: Some(Duration::from_secs(300)),
        ..Default::default()
    }
}

#[cfg(feature = "breaker")]
fn default_breaker() -> BreakerSettings {
    stratum_breaker::BreakerConfig {
        name: BREAKER_NAME.to_owned(),
        slow_call_duration_threshold: Duration::from_secs(2),
        adaptive_slow_call: stratum_breaker::AdaptiveSlowCall {
            floor: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            ..Default::default()
        },
        minimum_number_of_calls: 20,
        wait_in_open: stratum_breaker::OpenWait::Constant {
            wait: Duration::from_secs(5),
        },
        permitted_calls_in_half_open: 5,
        automatic_transition_to_half_open: true,
        ..Default::default()
    }
}

#[cfg(feature = "pool")]
fn default_pool() -> PoolSettings {
    stratum_pool::PoolConfig {
        name: POOL_NAME.to_owned(),
        min_size: 0,
        max_size: 128,
        acquire_timeout: Duration::from_secs(2),
        adaptive: stratum_pool::AdaptiveConfig {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(not(feature = "cache"))]
fn default_cache() -> CacheSettings {
    Opaque::new()
}
#[cfg(not(feature = "breaker"))]
fn default_breaker() -> BreakerSettings {
    Opaque::new()
}
#[cfg(not(feature = "pool"))]
fn default_pool() -> PoolSettings {
    Opaque::new()
}

/// A section's settings check themselves with the layer's own validator.
trait Settings {
    fn check(&self) -> Result<(), ConfigError>;
}

impl Settings for Opaque {
    fn check(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

#[cfg(feature = "breaker")]
impl Settings for stratum_breaker::BreakerConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.validate()
    }
}

#[cfg(feature = "cache")]
impl Settings for stratum_cache::CacheConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.validate()?;
        if self.name != stratum_cache::CacheConfig::default().name {
            return Err(ConfigError::invalid(
                "name",
                "is set by Stratum: each repository's cache is named after its collection \
                 and the prompt cache `llm_prompts`; leave it out",
            ));
        }
        Ok(())
    }
}

#[cfg(feature = "semantic")]
impl Settings for stratum_semantic::TierConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.validate()
    }
}

#[cfg(feature = "pool")]
impl Settings for stratum_pool::PoolConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.validate()
    }
}

#[cfg(feature = "monitor")]
impl Settings for stratum_monitor::MonitorConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.validate()
    }
}

#[cfg(feature = "cache")]
impl Section<stratum_cache::CacheConfig> {
    /// The cache's configuration for one cache of the stack, named `name`
    /// (its `cache` metric label: a collection name, fixed by the program).
    ///
    /// ```
    /// let config = stratum::StratumConfig::default();
    /// let cache = config.cache.named("messages");
    /// assert_eq!(cache.name, "messages");
    /// assert_eq!(cache.time_to_live, config.cache.time_to_live);
    /// ```
    pub fn named(&self, name: &str) -> stratum_cache::CacheConfig {
        stratum_cache::CacheConfig {
            name: name.to_owned(),
            ..self.settings.clone()
        }
    }
}

impl StratumConfig {
    /// A builder that merges defaults, a file, the environment and code.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Parses TOML text over the defaults, without validating it.
    ///
    /// ```
    /// use stratum::ConfigErrorKind;
    ///
    /// let err = stratum::StratumConfig::from_toml_str("[mongodb]\nconnect_timeout = \"soon\"\n").unwrap_err();
    /// assert!(matches!(err.kind(), ConfigErrorKind::Parse { .. }), "{err}");
    /// assert_eq!(err.field(), "mongodb.connect_timeout");
    /// assert_eq!(err.location().map(|l| l.line), Some(2));
    /// ```
    pub fn from_toml_str(text: &str) -> Result<StratumConfig, ConfigError> {
        let mut table = defaults_table();
        merge(&mut table, parse_toml("<toml>", text)?);
        finish(&table)
    }

    /// Checks every section with its layer's own validator; the error names
    /// the first offending field by its dotted path (`breaker.jitter`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.mongodb.validate()?;
        self.store.validate()?;
        self.cache.check().map_err(|e| e.within("cache"))?;
        self.breaker.check().map_err(|e| e.within("breaker"))?;
        self.pool.check().map_err(|e| e.within("pool"))?;
        self.monitor.check().map_err(|e| e.within("monitor"))?;
        self.llm
            .semantic
            .check()
            .map_err(|e| e.within("llm.semantic"))?;
        if self.store.backend == Backend::Mongodb && self.mongodb.uri.is_none() {
            return Err(ConfigError::invalid(
                "mongodb.uri",
                "must be set when `store.backend` is `mongodb`",
            ));
        }
        Ok(())
    }

    /// Whether the configuration selects MongoDB (else the embedded store).
    pub fn uses_mongodb(&self) -> bool {
        self.store.uses_mongodb(&self.mongodb)
    }

    /// Deserializes a merged table.
    pub(crate) fn from_table(table: toml::Table) -> Result<StratumConfig, toml::de::Error> {
        StratumConfig::deserialize(toml::Value::Table(table))
    }
}

/// The default configuration as a table: the base every file and variable
/// is merged onto, so a key left out keeps Stratum's default rather than
/// the layer's.
fn defaults_table() -> toml::Table {
    // Plain data with string keys serializes to TOML; the round trip is
    // checked by the property test in tests/config.rs.
    #[allow(clippy::expect_used)]
    toml::Table::try_from(StratumConfig::default()).expect("the default serializes")
}

/// Merges `over` into `base`: tables key by key, anything else (and a table
/// with a `type` key, which chooses a variant) replaced whole.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over))
                if !over.contains_key("type") =>
            {
                merge(inner, over);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sets the value at a dotted path, creating tables on the way.
pub(crate) fn set_path(table: &mut toml::Table, path: &[&str], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let inner = table
                .entry(*first)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !inner.is_table() {
                *inner = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = inner {
                set_path(inner, rest, value);
            }
        }
    }
}

/// The value at a dotted path.
pub(crate) fn get_path<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let mut parts = path.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

fn finish(table: &toml::Table) -> Result<StratumConfig, ConfigError> {
    StratumConfig::from_table(table.clone()).map_err(|e| {
        // Only reachable when a value fits the file's pass but not the merged
        // one; name what the parser names.
        ConfigError::new(
            "",
            ConfigErrorKind::Parse {
                message: stratum_store::uri::scrub(e.message()),
            },
        )
    })
}

/// Reads a file's text as a table, refusing what the configuration types
/// refuse, with the position and the dotted path of the offending key.
fn parse_toml(source_name: &str, text: &str) -> Result<toml::Table, ConfigError> {
    // First against the types, for errors with positions: the merged table
    // is checked again later, but positions are lost by then.
    if let Err(e) = toml::from_str::<StratumConfig>(text) {
        return Err(toml_error(source_name, text, e));
    }
    toml::from_str(text).map_err(|e| toml_error(source_name, text, e))
}

fn toml_error(source_name: &str, text: &str, mut e: toml::de::Error) -> ConfigError {
    let (line, column) = e
        .span()
        .map_or((0, 0), |span| line_and_column(text, span.start));
    // toml records the key path of a value that does not fit, but shows it
    // only when the error is rendered without its input (`in `a.b``).
    e.set_input(None);
    let rendered = e.to_string();
    let table = rendered
        .lines()
        .find_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))
        .map(stratum_store::uri::scrub)
        .unwrap_or_default();
    let location = Location {
        source_name: source_name.to_owned(),
        line,
        column,
    };
    // `message()` without the snippet of the offending line, which could
    // show a password; scrubbed, as serde may quote a value.
    let message = stratum_store::uri::scrub(e.message());
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    let error = match unknown {
        Some(name) => {
            let path = if table.is_empty() {
                name.to_owned()
            } else {
                format!("{table}.{name}")
            };
            let kind = match keys::renamed(&path) {
                Some(r) => ConfigErrorKind::Renamed {
                    to: r.to.to_owned(),
                },
                None => ConfigErrorKind::Unknown {
                    suggestion: keys::closest(&path, keys::path_candidates()),
                },
            };
            ConfigError::new(path, kind)
        }
        None => ConfigError::new(table, ConfigErrorKind::Parse { message }),
    };
    error.at(location)
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A change made in code, applied after the file and the environment.
type CodeLayer = Box<dyn FnOnce(&mut StratumConfig) -> Result<(), ConfigError> + Send>;

/// Merges the configuration layers; see the [module docs](self) for the order.
///
/// The order of the calls does not matter: layers are applied by precedence
/// in [`build`](ConfigBuilder::build), and code layers among themselves in
/// call order.
#[derive(Default)]
pub struct ConfigBuilder {
    file: Option<FileLayer>,
    env: Option<Vec<(String, String)>>,
    code: Vec<CodeLayer>,
}

enum FileLayer {
    Path(PathBuf),
    Text(String),
}

impl fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The file text and environment values may hold credentials: show
        // only which layers are present.
        f.debug_struct("ConfigBuilder")
            .field(
                "file",
                &self.file.as_ref().map(|file| match file {
                    FileLayer::Path(path) => path.display().to_string(),
                    FileLayer::Text(_) => "<toml>".into(),
                }),
            )
            .field("env_vars", &self.env.as_ref().map(Vec::len))
            .field("code_layers", &self.code.len())
            .finish()
    }
}

impl ConfigBuilder {
    /// Reads this TOML file as the file layer (replacing an earlier one).
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.file = Some(FileLayer::Path(path.as_ref().to_owned()));
        self
    }

    /// Uses this TOML text as the file layer (replacing an earlier one).
    pub fn toml(mut self, text: impl Into<String>) -> Self {
        self.file = Some(FileLayer::Text(text.into()));
        self
    }

    /// Reads the process environment as the environment layer.
    pub fn env(self) -> Self {
        self.env_vars(std::env::vars())
    }

    /// Uses these variables as the environment layer (for tests and
    /// embedding; see [`keys`] for the names). Variables without the
    /// `STRATUM_` prefix are left out.
    pub fn env_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| k.starts_with("STRATUM_"));
        self.env.get_or_insert_with(Vec::new).extend(vars);
        self
    }

    /// Sets the MongoDB connection string in code (highest precedence).
    pub fn mongodb_uri(mut self, uri: impl AsRef<str>) -> Self {
        let parsed = MongoUri::parse(uri.as_ref());
        self.code.push(Box::new(move |c| {
            c.mongodb.uri =
                Some(parsed.map_err(|e| ConfigError::invalid("mongodb.uri", e.reason))?);
            Ok(())
        }));
        self
    }

    /// Sets the database name in code (highest precedence).
    pub fn database(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.configure(move |c| c.mongodb.database = name)
    }

    /// Changes any field in code (highest precedence).
    pub fn configure(mut self, change: impl FnOnce(&mut StratumConfig) + Send + 'static) -> Self {
        self.code.push(Box::new(move |c| {
            change(c);
            Ok(())
        }));
        self
    }

    /// Merges the layers and validates the result.
    pub fn build(self) -> Result<StratumConfig, ConfigError> {
        self.build_explained().map(|(config, _)| config)
    }

    /// Merges the layers, validates the result, and reports every key's
    /// value (secrets masked) and which layer set it.
    ///
    /// ```
    /// use stratum::config::Source;
    ///
    /// let (config, report) = stratum::StratumConfig::builder()
    ///     .toml("[mongodb]\nuri = \"mongodb://app:s3cret@db\"\n")
    ///     .env_vars([("STRATUM_MONGODB_DATABASE", "orders")])
    ///     .configure(|c| c.mongodb.app_name = "worker".into())
    ///     .build_explained()
    ///     .unwrap();
    /// assert_eq!(config.mongodb.database, "orders");
    /// let uri = report.entry("mongodb.uri").unwrap();
    /// assert_eq!(uri.value, "\"mongodb://app:****@db\"");
    /// assert_eq!(uri.source, Source::File("<toml>".into()));
    /// assert_eq!(report.entry("mongodb.database").unwrap().source, Source::Env("STRATUM_MONGODB_DATABASE".into()));
    /// assert_eq!(report.entry("mongodb.app_name").unwrap().source, Source::Code);
    /// assert_eq!(report.entry("mongodb.connect_timeout").unwrap().source, Source::Default);
    /// assert!(!report.to_string().contains("s3cret"));
    /// ```
    pub fn build_explained(self) -> Result<(StratumConfig, ConfigReport), ConfigError> {
        let mut table = defaults_table();
        let mut file = None;
        match &self.file {
            None => {}
            Some(FileLayer::Text(text)) => {
                file = Some(("<toml>".to_owned(), parse_toml("<toml>", text)?))
            }
            Some(FileLayer::Path(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(
                        "",
                        ConfigErrorKind::Read {
                            path: path.clone(),
                            reason: e.to_string(),
                        },
                    )
                })?;
                let name = path.display().to_string();
                file = Some((name.clone(), parse_toml(&name, &text)?));
            }
        }
        if let Some((_, file_table)) = &file {
            merge(&mut table, file_table.clone());
        }
        let from_env = match &self.env {
            Some(vars) => env::apply(&mut table, vars)?,
            None => Vec::new(),
        };
        let mut config = finish(&table)?;
        let before_code = report::values(&config);
        for change in self.code {
            change(&mut config)?;
        }
        config.validate()?;
        let report = ConfigReport::new(
            &config,
            file.as_ref().map(|(name, table)| (name.as_str(), table)),
            &from_env,
            &before_code,
        );
        tracing::debug!(?config, "configuration loaded");
        Ok((config, report))
    }
}

#[cfg(test)]
mod tests;
