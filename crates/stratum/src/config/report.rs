//! The effective configuration: every key's value, secrets masked, and the
//! layer that set it (what `stratum config` prints).

use std::fmt;

use super::keys::{self, Key};
use super::{StratumConfig, get_path};

/// Which layer set a value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The default (the layer's own, or Stratum's override of it).
    Default,
    /// The file, by its path (`<toml>` for text given in code).
    File(String),
    /// This environment variable.
    Env(String),
    /// A change made in code (a `configure` call, a command-line flag). Only
    /// changes are seen: code that sets a value to what it already was
    /// leaves the earlier source.
    Code,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(name) => write!(f, "file {name}"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Code => f.write_str("code"),
        }
    }
}

/// One key of the effective configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportEntry {
    /// The dotted path.
    pub key: String,
    /// Its environment variable.
    pub env: String,
    /// The value as TOML text (`"5s"`, `16`, `{ type = "constant", wait =
    /// "5s" }`), `none` for an unset option; a connection string's password
    /// is masked.
    pub value: String,
    /// Which layer set it.
    pub source: Source,
}

/// The effective configuration, key by key; `Display` prints one
/// `key = value  # source` line each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigReport {
    entries: Vec<ReportEntry>,
}

/// Every key's serialized value (credentials masked: `MongoUri` serializes
/// redacted).
pub(crate) fn values(config: &StratumConfig) -> Vec<serde_json::Value> {
    let json = serde_json::to_value(config).unwrap_or_default();
    keys::keys()
        .iter()
        .map(|key| lookup(&json, &key.path).cloned().unwrap_or_default())
        .collect()
}

fn lookup<'a>(json: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(json, |v, part| v.get(part))
}

impl ConfigReport {
    pub(crate) fn new(
        config: &StratumConfig,
        file: Option<(&str, &toml::Table)>,
        env: &[(&'static Key, String)],
        before_code: &[serde_json::Value],
    ) -> ConfigReport {
        let after = values(config);
        let entries = keys::keys()
            .iter()
            .zip(after.iter().zip(before_code))
            .map(|(key, (value, before))| {
                let source = if value != before {
                    Source::Code
                } else if let Some((_, var)) = env.iter().find(|(k, _)| k.path == key.path) {
                    Source::Env(var.clone())
                } else if let Some((name, _)) =
                    file.filter(|(_, table)| get_path(table, &key.path).is_some())
                {
                    Source::File(name.to_owned())
                } else {
                    Source::Default
                };
                ReportEntry {
                    key: key.path.clone(),
                    env: key.env.clone(),
                    value: render(value),
                    source,
                }
            })
            .collect();
        ConfigReport { entries }
    }

    /// Every key, in file order.
    pub fn entries(&self) -> &[ReportEntry] {
        &self.entries
    }

    /// A key's default, rendered as [`ReportEntry::value`] renders values.
    pub fn default_value(key: &Key) -> String {
        render(&key.default)
    }

    /// A serialized value as TOML text, as [`ReportEntry::value`] shows it.
    pub fn render(value: &serde_json::Value) -> String {
        render(value)
    }

    /// The entry of one dotted path.
    pub fn entry(&self, key: &str) -> Option<&ReportEntry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

impl fmt::Display for ConfigReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .entries
            .iter()
            .map(|e| e.key.len() + e.value.len() + 3)
            .max()
            .unwrap_or(0)
            // Long values (the bucket list) should not push every comment away.
            .min(60);
        for e in &self.entries {
            let line = format!("{} = {}", e.key, e.value);
            writeln!(f, "{line:width$}  # {}", e.source)?;
        }
        Ok(())
    }
}

/// A serialized value as TOML text.
fn render(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "none".to_owned(),
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        serde_json::Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k} = {}", render(v)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{f:.1}")
            } else {
                f.to_string()
            }
        }
        other => other.to_string(),
    }
}
