//! The trend rules' goals on synthetic series with fixed seeds, on a
//! manual clock (`support/series.rs`: real rolling histogram, SLO tracker
//! and alert engine): a 2x p99 step detected within 5 minutes, no alert for
//! a spike shorter than the confirmation window, none on a stationary
//! week; plus the controls that show each test can fail.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/series.rs"]
mod series;

use std::time::Duration;

use series::{Change, Fired, REGRESSION, Scenario, Setup};
use stratum_monitor::PercentileConfig;

const MIN: u64 = 60;
const HOUR: u64 = 3600;

/// A stationary lead of one hour (the regression baseline needs 15 min),
/// then `change` for `after`.
fn scenario(change: Change, after: u64) -> Scenario {
    Scenario {
        name: format!("{change:?}"),
        change_at: Duration::from_secs(HOUR),
        total: Duration::from_secs(HOUR + after),
        change,
    }
}

/// Cheaper histograms than the default (1 % instead of 0.1 % precision,
/// 10 s range): the unoptimised test build reads p99 thousands of times.
fn setup(rate: u32) -> Setup {
    Setup {
        rate,
        percentiles: PercentileConfig {
            significant_digits: 2,
            highest_trackable: Duration::from_secs(10),
            ..PercentileConfig::default()
        },
        ..Setup::default()
    }
}

fn regression_fired(fired: &[Fired]) -> Vec<&Fired> {
    fired.iter().filter(|f| f.rule == REGRESSION).collect()
}

#[test]
fn a_2x_p99_step_is_detected_within_five_minutes() {
    let s = scenario(Change::Step { factor: 2.0 }, 10 * MIN);
    for seed in [101, 102] {
        let fired = series::run(&s, seed, &setup(50));
        let regression = regression_fired(&fired);
        assert_eq!(regression.len(), 1, "seed {seed}: {fired:?}");
        let delay = regression[0].at - s.change_at;
        assert!(
            delay <= Duration::from_secs(5 * MIN),
            "seed {seed}: {delay:?}"
        );
        // It says when the change began, to within the percentile window.
        let began = regression[0].began.expect("a change start");
        let error = began.as_secs_f64() - s.change_at.as_secs_f64();
        assert!(
            (0.0..=60.0).contains(&error),
            "seed {seed}: began {error} s off"
        );
        // Nothing else fires: 2x p99 stays within the latency objective.
        assert_eq!(fired.len(), 1, "seed {seed}: {fired:?}");
    }
}

#[test]
fn a_spike_shorter_than_the_confirmation_window_does_not_alert() {
    let confirm = Setup::default().regression.confirm;
    let s = scenario(
        Change::Spike {
            length: confirm - Duration::from_secs(10),
            factor: 3.0,
        },
        30 * MIN,
    );
    for seed in [103, 104] {
        let fired = series::run(&s, seed, &setup(50));
        assert!(fired.is_empty(), "seed {seed}: {fired:?}");
    }
}

#[test]
fn a_spike_longer_than_the_confirmation_window_alerts() {
    // The control of the test above: the same spike, held past `confirm`.
    let confirm = Setup::default().regression.confirm;
    let s = scenario(
        Change::Spike {
            length: confirm + Duration::from_secs(30),
            factor: 3.0,
        },
        30 * MIN,
    );
    let fired = series::run(&s, 103, &setup(50));
    assert_eq!(regression_fired(&fired).len(), 1, "{fired:?}");
}

#[test]
fn a_stationary_week_raises_no_alert() {
    // A week at 10 calls/s: p99 comes from 600 calls a minute, noisier
    // than the 50 calls/s of the other tests.
    let s = Scenario {
        name: "stationary".into(),
        change_at: Duration::from_secs(7 * 24 * HOUR),
        total: Duration::from_secs(7 * 24 * HOUR),
        change: Change::None,
    };
    let fired = series::run(&s, 105, &setup(10));
    assert!(fired.is_empty(), "{fired:?}");
}

#[test]
fn error_burn_pages_as_fast_as_the_workbook_says() {
    // 10 % errors is 100x a 99.9 % budget: the 1 h window reaches 14.4x
    // after 14.4 / 100 * 60 min = 8.6 min.
    let s = scenario(Change::Errors { rate: 0.1 }, 15 * MIN);
    let fired = series::run(&s, 106, &setup(50));
    let page = fired
        .iter()
        .find(|f| f.rule == "store.call.error_burn_1h")
        .unwrap_or_else(|| panic!("{fired:?}"));
    let minutes = (page.at - s.change_at).as_secs_f64() / 60.0;
    assert!((8.0..=9.5).contains(&minutes), "{minutes}");
    assert!(regression_fired(&fired).is_empty(), "{fired:?}");
}
