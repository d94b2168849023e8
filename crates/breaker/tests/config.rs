//! Configuration: every refused value names its field and the reason; serde
//! reads the same configuration a builder makes.

// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use stratum_breaker::{
    AdaptiveSlowCall, Breaker, BreakerConfig, ConfigError, MAX_COUNT_WINDOW,
    MAX_PERMITTED_IN_HALF_OPEN, OpenWait, SlidingWindow,
};

fn refused(config: BreakerConfig) -> ConfigError {
    let err = config.validate().unwrap_err();
    // Building refuses it the same way.
    assert_eq!(Breaker::new(config).unwrap_err(), err);
    err
}

fn with(f: impl FnOnce(&mut BreakerConfig)) -> BreakerConfig {
    let mut config = BreakerConfig::default();
    f(&mut config);
    config
}

#[test]
fn failure_rate_threshold_must_be_a_percentage_above_zero() {
    for bad in [0.0, -1.0, 100.5, f64::NAN, f64::INFINITY] {
        let err = refused(with(|c| c.failure_rate_threshold = bad));
        assert_eq!(err.field(), "failure_rate_threshold");
        assert!(
            err.reason()
                .unwrap_or_default()
                .starts_with("must be in (0, 100]"),
            "{}",
            err.reason().unwrap_or_default()
        );
    }
    with(|c| c.failure_rate_threshold = 100.0)
        .validate()
        .unwrap();
    with(|c| c.failure_rate_threshold = 0.1).validate().unwrap();
}

#[test]
fn slow_call_rate_threshold_must_be_a_percentage_above_zero() {
    for bad in [0.0, 101.0, f64::NAN] {
        assert_eq!(
            refused(with(|c| c.slow_call_rate_threshold = bad)).field(),
            "slow_call_rate_threshold"
        );
    }
}

#[test]
fn slow_call_duration_threshold_must_not_be_zero() {
    let err = refused(with(|c| c.slow_call_duration_threshold = Duration::ZERO));
    assert_eq!(
        (err.field(), err.reason().unwrap_or_default()),
        ("slow_call_duration_threshold", "must be greater than zero")
    );
}

#[test]
fn count_window_must_hold_between_one_and_the_maximum() {
    for bad in [0, MAX_COUNT_WINDOW + 1] {
        let err = refused(with(|c| {
            c.sliding_window = SlidingWindow::CountBased { size: bad }
        }));
        assert_eq!(err.field(), "sliding_window.size");
    }
    with(|c| {
        c.sliding_window = SlidingWindow::CountBased {
            size: MAX_COUNT_WINDOW,
        }
    })
    .validate()
    .unwrap();
}

#[test]
fn time_window_must_be_whole_seconds_up_to_an_hour() {
    for bad in [
        Duration::ZERO,
        Duration::from_millis(1_500),
        Duration::from_secs(3_601),
    ] {
        let err = refused(with(|c| {
            c.sliding_window = SlidingWindow::TimeBased { duration: bad }
        }));
        assert_eq!(err.field(), "sliding_window.duration");
    }
}

#[test]
fn minimum_number_of_calls_must_be_at_least_one() {
    let err = refused(with(|c| c.minimum_number_of_calls = 0));
    assert_eq!(
        (err.field(), err.reason().unwrap_or_default()),
        ("minimum_number_of_calls", "must be at least 1")
    );
}

#[test]
fn permitted_calls_in_half_open_must_be_between_one_and_the_maximum() {
    for bad in [0, MAX_PERMITTED_IN_HALF_OPEN + 1] {
        assert_eq!(
            refused(with(|c| c.permitted_calls_in_half_open = bad)).field(),
            "permitted_calls_in_half_open"
        );
    }
}

#[test]
fn waits_in_open_must_be_positive_and_growing() {
    let constant = refused(with(|c| {
        c.wait_in_open = OpenWait::Constant {
            wait: Duration::ZERO,
        }
    }));
    assert_eq!(constant.field(), "wait_in_open.wait");
    let exp = |initial, multiplier, max| {
        with(|c| {
            c.wait_in_open = OpenWait::Exponential {
                initial,
                multiplier,
                max,
            }
        })
    };
    let s = Duration::from_secs;
    assert_eq!(
        refused(exp(Duration::ZERO, 2.0, s(1))).field(),
        "wait_in_open.initial"
    );
    assert_eq!(
        refused(exp(s(1), 0.5, s(2))).field(),
        "wait_in_open.multiplier"
    );
    assert_eq!(
        refused(exp(s(1), f64::NAN, s(2))).field(),
        "wait_in_open.multiplier"
    );
    assert_eq!(refused(exp(s(2), 2.0, s(1))).field(), "wait_in_open.max");
    exp(s(1), 1.0, s(1)).validate().unwrap();
}

#[test]
fn jitter_must_be_in_zero_to_one() {
    for bad in [-0.1, 1.0, f64::NAN] {
        assert_eq!(refused(with(|c| c.jitter = bad)).field(), "jitter");
    }
}

#[test]
fn max_wait_in_half_open_must_not_be_zero() {
    assert_eq!(
        refused(with(|c| c.max_wait_in_half_open = Duration::ZERO)).field(),
        "max_wait_in_half_open"
    );
}

#[test]
fn name_must_be_a_bounded_label() {
    for bad in [
        "",
        "has space",
        "user@host",
        "mongodb://u:p@h",
        &"x".repeat(65),
    ] {
        let err = refused(with(|c| c.name = bad.to_owned()));
        assert_eq!(err.field(), "name", "{bad:?}");
    }
    with(|c| c.name = "orders-db_2.primary".to_owned())
        .validate()
        .unwrap();
}

#[test]
fn the_error_message_names_field_and_reason() {
    let err = refused(with(|c| c.minimum_number_of_calls = 0));
    assert_eq!(
        err.to_string(),
        "invalid `minimum_number_of_calls`: must be at least 1"
    );
}

#[test]
fn serde_and_builder_make_the_same_configuration() {
    let from_toml: BreakerConfig = toml::from_str(
        r#"
        name = "orders"
        failure_rate_threshold = 30.0
        slow_call_rate_threshold = 80.0
        slow_call_duration_threshold = "2s"
        minimum_number_of_calls = 10
        permitted_calls_in_half_open = 3
        jitter = 0.25
        jitter_seed = 9
        automatic_transition_to_half_open = true
        max_wait_in_half_open = "30s"
        sliding_window = { type = "count_based", size = 50 }
        wait_in_open = { type = "exponential", initial = "500ms", multiplier = 2.0, max = "1m" }
        "#,
    )
    .unwrap();
    let built = Breaker::builder("orders")
        .failure_rate_threshold(30.0)
        .slow_call_rate_threshold(80.0)
        .slow_call_duration_threshold(Duration::from_secs(2))
        .minimum_number_of_calls(10)
        .permitted_calls_in_half_open(3)
        .jitter(0.25)
        .jitter_seed(9)
        .automatic_transition_to_half_open(true)
        .max_wait_in_half_open(Duration::from_secs(30))
        .count_based_window(50)
        .exponential_wait_in_open(Duration::from_millis(500), 2.0, Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(built.config(), &from_toml);
    // JSON too, with every default filled in.
    let json: BreakerConfig = serde_json::from_str(r#"{"name":"j"}"#).unwrap();
    assert_eq!(
        json,
        BreakerConfig {
            name: "j".into(),
            ..Default::default()
        }
    );
}

#[test]
fn a_refused_value_from_a_file_fails_at_build_not_later() {
    let config: BreakerConfig = toml::from_str("permitted_calls_in_half_open = 0").unwrap();
    let err = Breaker::builder("x").config(config).build().unwrap_err();
    assert_eq!(err.field(), "permitted_calls_in_half_open");
    assert_eq!(err.reason(), Some("must be between 1 and 4095, got 0"));
}

#[test]
fn adaptive_slow_call_refuses_each_bad_knob_by_name() {
    let adaptive = |f: fn(&mut AdaptiveSlowCall)| {
        with(|c| {
            f(&mut c.adaptive_slow_call);
        })
    };
    /// A change to the defaults, the refused field, the reason.
    type Case = (fn(&mut AdaptiveSlowCall), &'static str, &'static str);
    let cases: [Case; 6] = [
        (
            |a| a.multiple = 0.5,
            "adaptive_slow_call.multiple",
            "must be finite and at least 1, got 0.5",
        ),
        (
            |a| a.multiple = f64::NAN,
            "adaptive_slow_call.multiple",
            "must be finite and at least 1, got NaN",
        ),
        (
            |a| a.floor = Duration::ZERO,
            "adaptive_slow_call.floor",
            "must be greater than zero",
        ),
        (
            |a| a.cap = Duration::from_millis(1),
            "adaptive_slow_call.cap",
            "must be at least `floor` (5ms), got 1ms",
        ),
        (
            |a| a.min_samples = 9,
            "adaptive_slow_call.min_samples",
            "must be between 10 and 1000000, got 9",
        ),
        (
            |a| a.min_samples = stratum_breaker::MAX_MIN_SAMPLES + 1,
            "adaptive_slow_call.min_samples",
            "must be between 10 and 1000000, got 1000001",
        ),
    ];
    for (f, field, reason) in cases {
        let err = refused(adaptive(f));
        assert_eq!((err.field(), err.reason()), (field, Some(reason)));
    }
    // Off, its knobs are still checked: turning it back on must not
    // surprise.
    let err = refused(adaptive(|a| {
        a.enabled = false;
        a.multiple = -1.0;
    }));
    assert_eq!(err.field(), "adaptive_slow_call.multiple");
}

#[test]
fn the_default_adapts_and_a_table_reads_into_it() {
    let config = BreakerConfig::default();
    assert!(config.adaptive_slow_call.enabled);
    let read: BreakerConfig = toml::from_str(
        r#"
        adaptive_slow_call = { multiple = 5.0, floor = "2ms", cap = "3s", min_samples = 100 }
        "#,
    )
    .unwrap();
    assert_eq!(
        read.adaptive_slow_call,
        AdaptiveSlowCall {
            enabled: true,
            multiple: 5.0,
            floor: Duration::from_millis(2),
            cap: Duration::from_secs(3),
            min_samples: 100,
        }
    );
    assert!(toml::from_str::<BreakerConfig>("adaptive_slow_call = { quantile = 0.9 }").is_err());
}
