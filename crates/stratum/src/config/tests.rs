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
}

#[test]
fn print_report() {
    let (_, report) = StratumConfig::builder()
        .toml("[mongodb]\nuri = \"mongodb://a:b@h\"\n")
        .env_vars([("STRATUM_MONGODB_DATABASE", "x")])
        .build_explained()
        .unwrap();
    println!("{report}");
}
