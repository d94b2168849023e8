//! Unit tests of the merge, the environment layer and the report.

use std::time::Duration;

use super::*;

#[test]
fn defaults_are_valid_and_embedded() {
    let config = StratumConfig::builder().build().unwrap();
    assert_eq!(config, StratumConfig::default());
    assert!(!config.uses_mongodb());
    #[cfg(feature = "monitor")]
    assert!(config.monitor.listen.ip().is_loopback());
}

#[test]
fn the_default_round_trips_through_its_table() {
    let table = defaults_table();
    assert_eq!(
        StratumConfig::from_table(table).unwrap(),
        StratumConfig::default()
    );
}

#[cfg(feature = "breaker")]
#[test]
fn a_partial_section_keeps_stratums_defaults() {
    let config =
        StratumConfig::from_toml_str("[breaker]\nfailure_rate_threshold = 30.0\n").unwrap();
    assert_eq!(config.breaker.failure_rate_threshold, 30.0);
    // Stratum's override, not the layer's 60 s, although [breaker] was given.
    assert_eq!(
        config.breaker.slow_call_duration_threshold,
        Duration::from_secs(2)
    );
    assert_eq!(config.breaker.name, BREAKER_NAME);
    // The slow-call threshold a user gets adapts, within Stratum's bounds.
    assert!(config.breaker.adaptive_slow_call.enabled);
    assert_eq!(
        config.breaker.adaptive_slow_call.floor,
        Duration::from_millis(50)
    );
}

/// A file and an environment written for the full build load in a build
/// without a layer: its section is kept unread, only `enabled` is checked.
#[cfg(not(feature = "breaker"))]
#[test]
fn a_compiled_out_section_still_parses() {
    let config = StratumConfig::builder()
        .toml("[breaker]\nenabled = false\nfailure_rate_threshold = 30.0\n")
        .env_vars([(
            "STRATUM_BREAKER_WAIT_IN_OPEN",
            "{ type = \"constant\", wait = \"1s\" }",
        )])
        .build()
        .unwrap();
    assert!(!config.breaker.enabled);
    let err = StratumConfig::from_toml_str("[breaker]\nenabled = \"no\"\n").unwrap_err();
    assert_eq!(err.field(), "breaker.enabled");
    assert!(compiled_out().contains(&"breaker"));
}

#[test]
fn env_values_are_read_as_toml_then_as_text() {
    let config = StratumConfig::builder()
        .toml("[mongodb]\nuri = \"mongodb://file-host\"\n")
        .env_vars([
            // A string key holding digits: read as text after the number fails.
            ("STRATUM_MONGODB_DATABASE", "123"),
            ("STRATUM_MONGODB_OPERATION_TIMEOUT", "1500ms"),
            // Empty clears a key whose default is unset.
            ("STRATUM_MONGODB_URI", ""),
        ])
        .build()
        .unwrap();
    assert_eq!(config.mongodb.database, "123");
    assert_eq!(
        config.mongodb.operation_timeout,
        Duration::from_millis(1500)
    );
    assert!(config.mongodb.uri.is_none());
    // The last of a repeated variable wins, as in a shell.
    let config = StratumConfig::builder()
        .env_vars([
            ("STRATUM_MONGODB_DATABASE", "a"),
            ("STRATUM_MONGODB_DATABASE", "b"),
        ])
        .build()
        .unwrap();
    assert_eq!(config.mongodb.database, "b");
}

#[test]
fn a_missing_file_is_a_read_error() {
    let err = StratumConfig::builder()
        .file("/nonexistent/stratum.toml")
        .build()
        .unwrap_err();
    assert!(matches!(err.kind(), ConfigErrorKind::Read { .. }), "{err}");
    assert_eq!(err.field(), "");
}
