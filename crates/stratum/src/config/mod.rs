//! One configuration for the whole stack, from defaults, a TOML file, the
//! environment and code, merged in that order and validated once.
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
//!     .toml("[cache]\nttl = \"30s\"\nmax_entries = 500\n")
//!     .env_vars([("STRATUM_CACHE_TTL", "45s")])
//!     .configure(|c| c.cache.max_entries = 1_000)
//!     .build()
//!     .unwrap();
//! assert_eq!(config.cache.ttl, Duration::from_secs(45)); // env beats file
//! assert_eq!(config.cache.max_entries, 1_000); // code beats file
//! ```

mod env;
mod error;
pub mod layers;
pub mod sections;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use self::env::{ENV_VARS, EnvVar};
pub use self::error::ConfigError;
use self::sections::{BreakerConfig, CacheConfig, MonitorConfig, PoolConfig};
use crate::MongoUri;
pub use stratum_store::{Backend, MongoConfig, StoreConfig};

/// The whole configuration: one section per concern.
///
/// `Default` gives the embedded store with every layer on and loopback-only
/// listening. Build one with [`StratumConfig::builder`] to merge a file and
/// the environment and have it validated.
///
/// ```
/// let config = stratum::StratumConfig::default();
/// assert!(config.mongodb.uri.is_none()); // the embedded store
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StratumConfig {
    /// The MongoDB server and driver timeouts.
    pub mongodb: MongoConfig,
    /// Which store, and rules both stores apply.
    pub store: StoreConfig,
    /// The read-through cache.
    pub cache: CacheConfig,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
    /// Admission to the database.
    pub pool: PoolConfig,
    /// Metrics and health serving.
    pub monitor: MonitorConfig,
}

impl StratumConfig {
    /// A builder that merges defaults, a file, the environment and code.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Parses TOML text over the defaults, without validating it.
    ///
    /// ```
    /// let err = stratum::StratumConfig::from_toml_str("[cache]\nttl = \"soon\"\n").unwrap_err();
    /// assert!(matches!(err, stratum::ConfigError::Parse { line: 2, .. }), "{err}");
    /// ```
    pub fn from_toml_str(text: &str) -> Result<StratumConfig, ConfigError> {
        parse_toml("<toml>", text)
    }

    /// Checks every section; the error names the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.mongodb.validate()?;
        self.store.validate()?;
        self.cache.validate()?;
        self.breaker.validate()?;
        self.pool.validate()?;
        self.monitor.validate()?;
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
    /// embedding; see [`ENV_VARS`] for the names).
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
        let mut config = match &self.file {
            None => StratumConfig::default(),
            Some(FileLayer::Text(text)) => parse_toml("<toml>", text)?,
            Some(FileLayer::Path(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                parse_toml(&path.display().to_string(), &text)?
            }
        };
        if let Some(vars) = &self.env {
            env::apply(&mut config, vars)?;
        }
        for change in self.code {
            change(&mut config)?;
        }
        config.validate()?;
        tracing::debug!(?config, "configuration loaded");
        Ok(config)
    }
}

fn parse_toml(source_name: &str, text: &str) -> Result<StratumConfig, ConfigError> {
    toml::from_str(text).map_err(|mut e: toml::de::Error| {
        let (line, column) = e
            .span()
            .map_or((0, 0), |span| line_and_column(text, span.start));
        // toml records the key path of a value that does not fit, but shows it
        // only when the error is rendered without its input (`in `a.b``).
        e.set_input(None);
        let rendered = e.to_string();
        let field = rendered
            .lines()
            .find_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))
            .map(stratum_store::uri::scrub);
        ConfigError::Parse {
            source_name: source_name.to_owned(),
            line,
            column,
            field,
            // `message()` without the snippet of the offending line, which
            // could show a password; scrubbed, as serde may quote a value.
            message: stratum_store::uri::scrub(e.message()),
        }
    })
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn defaults_are_valid_and_embedded() {
        let config = StratumConfig::builder().build().unwrap();
        assert_eq!(config, StratumConfig::default());
        assert!(!config.uses_mongodb());
        assert!(config.monitor.listen.ip().is_loopback());
    }

    #[test]
    fn layers_merge_in_documented_order() {
        let file = "[mongodb]\ndatabase = \"from_file\"\nconnect_timeout = \"2s\"\n\
                    [pool]\nmax_size = 8\nacquire_timeout = \"1s\"\n";
        let config = StratumConfig::builder()
            // Call order is irrelevant: code is applied last anyway.
            .configure(|c| c.pool.max_size = 4)
            .env_vars([
                ("STRATUM_POOL_MAX_SIZE", "6"),
                ("STRATUM_POOL_ACQUIRE_TIMEOUT", "1500ms"),
                ("UNRELATED", "x"),
            ])
            .toml(file)
            .build()
            .unwrap();
        assert_eq!(config.mongodb.database, "from_file"); // file over default
        assert_eq!(config.mongodb.connect_timeout, Duration::from_secs(2));
        assert_eq!(config.pool.acquire_timeout, Duration::from_millis(1500)); // env over file
        assert_eq!(config.pool.max_size, 4); // code over env and file
        assert_eq!(config.cache, CacheConfig::default()); // untouched sections keep defaults
    }

    #[test]
    fn reads_a_file_and_reports_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("stratum-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stratum.toml");
        std::fs::write(&path, "[store]\nbackend = \"memory\"\n").unwrap();
        let config = StratumConfig::builder().file(&path).build().unwrap();
        assert_eq!(config.store.backend, Backend::Memory);
        let err = StratumConfig::builder()
            .file(dir.join("missing.toml"))
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_env_var_is_applied_and_names_a_real_field() {
        let values: Vec<(&str, &str)> = ENV_VARS
            .iter()
            .map(|var| {
                let value = match var.field {
                    "mongodb.uri" => "mongodb://h:1",
                    "mongodb.database" | "mongodb.app_name" => "envname",
                    "store.backend" => "mongodb",
                    "store.max_document_bytes" => "1024",
                    "monitor.listen" => "127.0.0.1:9100",
                    f if f.ends_with("enabled") => "false",
                    "monitor.allow_non_loopback" => "yes",
                    f if f.ends_with("threshold") => "25",
                    "cache.max_entries" | "pool.max_size" => "7",
                    _ => "1234ms",
                };
                (var.name, value)
            })
            .collect();
        let c = StratumConfig::builder().env_vars(values).build().unwrap();
        assert_eq!(
            c.mongodb.uri.as_ref().map(MongoUri::redacted),
            Some("mongodb://h:1")
        );
        assert_eq!(c.mongodb.database, "envname");
        assert_eq!(c.mongodb.operation_timeout, Duration::from_millis(1234));
        assert_eq!(c.store.backend, Backend::Mongodb);
        assert_eq!(c.store.max_document_bytes, 1024);
        assert!(!c.cache.enabled && !c.breaker.enabled && !c.pool.enabled && !c.monitor.enabled);
        assert_eq!(c.breaker.failure_rate_threshold, 25.0);
        assert_eq!(c.cache.max_entries, 7);
        assert_eq!(c.pool.max_size, 7);
        assert_eq!(c.monitor.listen.port(), 9100);
        assert!(c.monitor.allow_non_loopback);
        for var in ENV_VARS {
            assert!(var.name.starts_with("STRATUM_"), "{}", var.name);
            let expected = format!("STRATUM_{}", var.field.replace('.', "_").to_uppercase());
            assert_eq!(var.name, expected, "a variable's name follows its field");
        }
    }

    #[test]
    fn invalid_values_name_field_and_reason() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[breaker]\nfailure_rate_threshold = 150.0",
                "breaker.failure_rate_threshold",
                "must be in (0, 100]",
            ),
            (
                "[breaker]\nfailure_rate_threshold = nan",
                "breaker.failure_rate_threshold",
                "must be in (0, 100]",
            ),
            (
                "[breaker]\nwindow_size = 10\nminimum_calls = 11",
                "breaker.minimum_calls",
                "window_size",
            ),
            ("[cache]\nttl = \"0s\"", "cache.ttl", "must be between"),
            (
                "[cache]\nttl = \"400years\"",
                "cache.ttl",
                "must be between",
            ),
            (
                "[cache]\nmax_entries = 0",
                "cache.max_entries",
                "must be between 1",
            ),
            (
                "[mongodb]\noperation_timeout = \"0ms\"",
                "mongodb.operation_timeout",
                "must be between",
            ),
            (
                "[mongodb]\ndatabase = \"a.b\"",
                "mongodb.database",
                "must not contain",
            ),
            ("[mongodb]\ndatabase = \"\"", "mongodb.database", "1 to 63"),
            (
                "[pool]\nmax_size = 2\nmin_idle = 3",
                "pool.min_idle",
                "max_size",
            ),
            (
                "[store]\nmax_document_bytes = 99999999999",
                "store.max_document_bytes",
                "must be between",
            ),
            (
                "[store]\nbackend = \"mongodb\"",
                "mongodb.uri",
                "must be set",
            ),
        ];
        for (text, field, reason) in cases {
            let err = StratumConfig::builder().toml(*text).build().unwrap_err();
            assert_eq!(err.field(), Some(*field), "{text}: {err}");
            assert!(err.to_string().contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn malformed_toml_and_nonsense_durations_are_parse_errors() {
        for (text, line, field) in [
            ("[cache\nttl = 1", 1, None),
            ("[cache]\nttl = \"soon\"", 2, Some("cache.ttl")),
            ("[cache]\nttl = \"-5s\"", 2, Some("cache.ttl")),
            (
                "[cache]\nttl = \"99999999999999999999999s\"",
                2,
                Some("cache.ttl"),
            ),
            ("[cache]\nttl = 30", 2, Some("cache.ttl")),
            ("[cache]\nttll = \"30s\"", 2, Some("cache")),
            ("[nosuch]\nx = 1", 1, None),
            (
                "[monitor]\nlisten = \"everywhere\"",
                2,
                Some("monitor.listen"),
            ),
            ("[store]\nbackend = \"postgres\"", 2, Some("store.backend")),
            (
                "[breaker]\nwindow_size = -1",
                2,
                Some("breaker.window_size"),
            ),
        ] {
            let err = StratumConfig::builder().toml(text).build().unwrap_err();
            match &err {
                ConfigError::Parse {
                    line: got,
                    source_name,
                    ..
                } => {
                    assert_eq!(
                        (*got, source_name.as_str(), err.field()),
                        (line, "<toml>", field),
                        "{text}: {err}"
                    );
                }
                other => panic!("{text}: expected a parse error, got {other:?}"),
            }
        }
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        for (name, value) in [
            ("STRATUM_CACHE_TTL", "soon"),
            ("STRATUM_POOL_MAX_SIZE", "-3"),
            ("STRATUM_CACHE_ENABLED", "maybe"),
            ("STRATUM_MONITOR_LISTEN", "nowhere"),
            ("STRATUM_STORE_BACKEND", "redis"),
            ("STRATUM_MONGODB_URI", "mysql://root:hunter2@h"),
        ] {
            let err = StratumConfig::builder()
                .env_vars([(name, value)])
                .build()
                .unwrap_err();
            assert_eq!(err.field(), Some(name), "{err}");
            assert!(!err.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn the_listener_stays_on_loopback_unless_asked() {
        let default = StratumConfig::default().monitor;
        assert_eq!(default.listen, "127.0.0.1:9000".parse().unwrap());
        assert!(!default.allow_non_loopback);
        for wide in [
            "0.0.0.0:9000",
            "[::]:9000",
            "192.0.2.7:9000",
            "[::ffff:127.0.0.1]:9000",
        ] {
            let text = format!("[monitor]\nlisten = \"{wide}\"\n");
            let err = StratumConfig::builder()
                .toml(text.as_str())
                .build()
                .unwrap_err();
            assert_eq!(err.field(), Some("monitor.listen"), "{wide}: {err}");
            assert!(err.to_string().contains("allow_non_loopback"), "{err}");
            let env = StratumConfig::builder()
                .env_vars([("STRATUM_MONITOR_LISTEN", wide)])
                .build()
                .unwrap_err();
            assert_eq!(env.field(), Some("monitor.listen"), "{wide}: {env}");
            let asked = format!("{text}allow_non_loopback = true\n");
            let config = StratumConfig::builder().toml(asked).build().unwrap();
            assert_eq!(
                config.monitor.listen,
                wide.parse().unwrap(),
                "honoured when asked"
            );
            let config = StratumConfig::builder()
                .env_vars([
                    ("STRATUM_MONITOR_LISTEN", wide),
                    ("STRATUM_MONITOR_ALLOW_NON_LOOPBACK", "true"),
                ])
                .build()
                .unwrap();
            assert_eq!(config.monitor.listen, wide.parse().unwrap());
        }
        for local in ["127.0.0.1:0", "127.8.9.10:9000", "[::1]:9000"] {
            let text = format!("[monitor]\nlisten = \"{local}\"\n");
            assert!(
                StratumConfig::builder().toml(text).build().is_ok(),
                "{local}"
            );
        }
    }

    #[test]
    fn code_uri_errors_surface_at_build() {
        let err = StratumConfig::builder()
            .mongodb_uri("nope")
            .build()
            .unwrap_err();
        assert_eq!(err.field(), Some("mongodb.uri"));
        let ok = StratumConfig::builder()
            .mongodb_uri("mongodb://h")
            .build()
            .unwrap();
        assert!(ok.uses_mongodb());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary text never panics the loader: it is a config or a typed error.
        #[test]
        fn arbitrary_toml_never_panics(text in "(\\[[a-z]{0,8}\\]\n)?([a-z_]{1,12} = (\"[ -~]{0,12}\"|-?[0-9]{1,22}|[0-9.e+-]{1,8}|true|nan|inf)\n){0,4}") {
            let _ = StratumConfig::builder().toml(text).build();
        }

        /// Any duration string in the cache section parses or is refused; never panics.
        #[test]
        fn arbitrary_durations_never_panic(d in "[ -~]{0,24}") {
            let text = format!("[cache]\nttl = {:?}\n", d);
            let _ = StratumConfig::builder().toml(text).build();
            let _ = StratumConfig::builder().env_vars([("STRATUM_CACHE_TTL", d)]).build();
        }
    }
}
