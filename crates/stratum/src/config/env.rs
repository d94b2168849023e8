//! The environment layer: `STRATUM_<SECTION>_<FIELD>` sets the key
//! `<section>.<field>` (nested fields joined with `_` too), for every key in
//! [`keys`](super::keys()).
//!
//! A value is read as a TOML value (`6`, `25.5`, `true`, `[0.1, 1.0]`,
//! `{ type = "constant", wait = "5s" }`), else as a bare string (`45s`,
//! `mongodb://h`), and then checked by the same serde types as the file.
//! Booleans also take `1/0`, `yes/no`, `on/off`. An empty value clears a key
//! whose default is unset (`STRATUM_MONGODB_URI=`).
//!
//! Any other `STRATUM_*` variable is an error that names the closest valid
//! one, except the variables of other tools listed in [`ENV_IGNORED`] and,
//! in a build without a layer, that layer's variables (the environment of a
//! full build stays usable).

use super::keys::{self, Key, RENAMED};
use super::{ConfigError, ConfigErrorKind, StratumConfig, compiled_out, set_path};

/// `STRATUM_*` variables that belong to other tools and are never read as
/// configuration: a name equal to one, or starting with one that ends in `_`.
pub const ENV_IGNORED: &[&str] = &[
    // The test harness: the server the integration tests use, its binary.
    "STRATUM_TEST_",
    // Benchmark knobs (`STRATUM_BENCH_ROUNDS`, `STRATUM_BENCH_RECORDER`, ...).
    "STRATUM_BENCH_",
    // Regenerate checked-in files from tests.
    "STRATUM_BLESS",
    // Trace output of the load program.
    "STRATUM_TRACES",
    // xtask's folder for server builds.
    "STRATUM_CACHE_DIR",
    // The cache benches' profiling and memory-case switches.
    "STRATUM_PROFILE",
    "STRATUM_MEMORY_CASE",
    // The semantic layer's model folder (its evaluation) and the switch that
    // makes its model tests fail when the weights are missing (CI).
    "STRATUM_MODEL_DIR",
    "STRATUM_REQUIRE_MODEL",
    // The semantic evaluation's Bible texts folder.
    "STRATUM_SWORD_DIR",
    // The cache's hit-ratio bench knobs (`STRATUM_HIT_SEEDS`, ...).
    "STRATUM_HIT_",
];

/// Whether `name` is another tool's variable ([`ENV_IGNORED`]).
pub fn is_ignored(name: &str) -> bool {
    ENV_IGNORED
        .iter()
        .any(|ignored| name == *ignored || (ignored.ends_with('_') && name.starts_with(ignored)))
}

/// Applies the variables in `vars` (the last of a repeated name wins) to
/// the merged `table`, each checked on its own so an error names its
/// variable. Returns which key each variable set.
pub(crate) fn apply(
    table: &mut toml::Table,
    vars: &[(String, String)],
) -> Result<Vec<(&'static Key, String)>, ConfigError> {
    let mut last: Vec<&(String, String)> = Vec::new();
    for var in vars.iter().rev() {
        if !last.iter().any(|seen| seen.0 == var.0) {
            last.push(var);
        }
    }
    last.sort_by(|a, b| a.0.cmp(&b.0));
    let mut applied = Vec::new();
    for (name, value) in last {
        if is_ignored(name) {
            continue;
        }
        let Some(key) = keys::keys().iter().find(|k| k.env == *name) else {
            refuse_or_skip(name)?;
            continue;
        };
        set_one(table, key, name, value)?;
        applied.push((key, name.clone()));
    }
    Ok(applied)
}

/// An unknown variable: renamed, of a compiled-out layer (skipped), or a
/// typo.
fn refuse_or_skip(name: &str) -> Result<(), ConfigError> {
    if let Some(r) = RENAMED.iter().find(|r| keys::env_name(r.from) == name) {
        return Err(ConfigError::new(
            name,
            ConfigErrorKind::Renamed {
                to: keys::env_name(r.to),
            },
        ));
    }
    if compiled_out()
        .iter()
        .any(|section| name.starts_with(&keys::env_name(&format!("{section}."))))
    {
        tracing::debug!(variable = name, "ignored: its layer is not compiled in");
        return Ok(());
    }
    let renamed: Vec<(String, String)> = RENAMED
        .iter()
        .map(|r| (keys::env_name(r.from), keys::env_name(r.to)))
        .collect();
    let candidates = keys::keys()
        .iter()
        .map(|k| (k.env.as_str(), k.env.as_str()))
        .chain(renamed.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    Err(ConfigError::new(
        name,
        ConfigErrorKind::Unknown {
            suggestion: keys::closest(name, candidates),
        },
    ))
}

/// Sets one key from one variable, trying its readings in turn.
fn set_one(table: &mut toml::Table, key: &Key, name: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<&str> = key.path.split('.').collect();
    let text = value.trim();
    if text.is_empty() && key.default.is_null() {
        remove_path(table, &path);
        return check(table).map_err(|reason| ConfigError::invalid(name, reason));
    }
    let mut first_error = None;
    for reading in readings(key, text) {
        let mut trial = table.clone();
        set_path(&mut trial, &path, reading);
        match check(&trial) {
            Ok(()) => {
                *table = trial;
                return Ok(());
            }
            Err(reason) => {
                first_error.get_or_insert(reason);
            }
        }
    }
    Err(ConfigError::invalid(
        name,
        first_error.unwrap_or_else(|| "not a value".to_owned()),
    ))
}

/// The ways to read a variable's text, most specific first.
fn readings(key: &Key, text: &str) -> Vec<toml::Value> {
    let mut out = Vec::new();
    if key.default.is_boolean() {
        match text.to_ascii_lowercase().as_str() {
            "1" | "yes" | "on" => out.push(toml::Value::Boolean(true)),
            "0" | "no" | "off" => out.push(toml::Value::Boolean(false)),
            _ => {}
        }
    }
    if let Ok(parsed) = format!("v = {text}").parse::<toml::Table>()
        && parsed.len() == 1
        && let Some(v) = parsed.get("v")
    {
        out.push(v.clone());
    }
    out.push(toml::Value::String(text.to_owned()));
    out
}

/// Whether the table deserializes; the reason (credentials masked) if not.
fn check(table: &toml::Table) -> Result<(), String> {
    StratumConfig::from_table(table.clone())
        .map(drop)
        .map_err(|e| stratum_store::uri::scrub(e.message()))
}

fn remove_path(table: &mut toml::Table, path: &[&str]) {
    match path {
        [] => {}
        [last] => {
            table.remove(*last);
        }
        [first, rest @ ..] => {
            if let Some(toml::Value::Table(inner)) = table.get_mut(*first) {
                remove_path(inner, rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_tools_variables_are_ignored_and_never_keys() {
        for name in [
            "STRATUM_TEST_MONGODB_URI",
            "STRATUM_TEST_SERVER_BIN",
            "STRATUM_BENCH_ROUNDS",
            "STRATUM_BLESS",
            "STRATUM_TRACES",
            "STRATUM_CACHE_DIR",
            "STRATUM_MODEL_DIR",
            "STRATUM_REQUIRE_MODEL",
        ] {
            assert!(is_ignored(name), "{name}");
        }
        assert!(!is_ignored("STRATUM_BLESSED"));
        for key in keys::keys() {
            assert!(!is_ignored(&key.env), "{} would be ignored", key.env);
        }
    }
}
