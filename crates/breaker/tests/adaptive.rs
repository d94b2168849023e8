//! The adaptive slow-call threshold on a manual clock: it learns the healthy
//! p99, a 5x degradation opens the breaker within the window, a drift within
//! the multiple does not, and neither the slow period nor anything seen
//! while the breaker is not closed poisons the baseline.

// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use stratum_breaker::{
    AdaptiveSlowCall, Breaker, BreakerBuilder, CallError, ManualClock, State, metric_names,
};

const MS: Duration = Duration::from_millis(1);
/// The default window: the last 100 calls, all of them judged.
const WINDOW: u32 = 100;

/// A breaker with the layer's defaults (adaptive: 3 x p99, 5 ms to 10 s,
/// rounds of 200) except a 1 s fallback, no jitter and a manual clock.
fn builder(clock: &ManualClock) -> BreakerBuilder<ManualClock> {
    Breaker::builder("adaptive")
        .slow_call_duration_threshold(Duration::from_secs(1))
        .wait_in_open(Duration::from_secs(10))
        .jitter(0.0)
        .clock(clock.clone())
}

/// One call that takes `took` on the manual clock, timed by the breaker.
fn call(breaker: &Breaker<ManualClock>, clock: &ManualClock, took: Duration) -> bool {
    match breaker.call_sync(|| {
        clock.advance(took);
        Ok::<_, ()>(())
    }) {
        Ok(()) => true,
        Err(CallError::NotPermitted(_)) => false,
        Err(other) => panic!("{other:?}"),
    }
}

fn calls(breaker: &Breaker<ManualClock>, clock: &ManualClock, n: usize, took: Duration) {
    for i in 0..n {
        assert!(
            call(breaker, clock, took),
            "call {i} of {n} at {took:?} refused"
        );
    }
}

/// The threshold learned from a steady `normal`: 3 x the upper edge of its
/// bucket, which is at most 1/8 above it.
fn assert_learned(breaker: &Breaker<ManualClock>, normal: Duration) {
    let threshold = breaker.slow_call_threshold();
    let low = (normal * 3).max(5 * MS);
    let high = (normal * 3 + normal * 3 / 8).max(5 * MS);
    assert!(
        threshold >= low && threshold <= high,
        "threshold {threshold:?} not in [{low:?}, {high:?}] for a normal of {normal:?}"
    );
}

#[test]
fn the_baseline_learns_the_healthy_p99_and_the_fallback_holds_until_then() {
    let clock = ManualClock::new();
    let breaker = builder(&clock).build().unwrap();
    calls(&breaker, &clock, 199, 20 * MS);
    assert_eq!(breaker.slow_call_threshold(), Duration::from_secs(1));
    assert_eq!(breaker.slow_call_baseline(), None);
    calls(&breaker, &clock, 1, 20 * MS);
    assert_learned(&breaker, 20 * MS);
    let baseline = breaker.slow_call_baseline().unwrap();
    assert!(baseline >= 20 * MS && baseline <= 20 * MS + 20 * MS / 8);

    // A p99, not a mean or a maximum: 1 % of outliers does not move it,
    // 3 % does.
    let clock = ManualClock::new();
    let breaker = builder(&clock).build().unwrap();
    for i in 0..200 {
        let took = if i % 100 == 0 { 500 * MS } else { 10 * MS };
        call(&breaker, &clock, took);
    }
    assert_learned(&breaker, 10 * MS);
    let clock = ManualClock::new();
    let breaker = builder(&clock).build().unwrap();
    for i in 0..200 {
        let took = if i % 33 == 0 { 100 * MS } else { 10 * MS };
        call(&breaker, &clock, took);
    }
    assert_learned(&breaker, 100 * MS);
}

#[test]
fn a_five_fold_degradation_opens_the_breaker_within_the_window() {
    for normal in [2 * MS, 20 * MS, 80 * MS] {
        let clock = ManualClock::new();
        let breaker = builder(&clock).build().unwrap();
        calls(&breaker, &clock, 400, normal);
        let learned = breaker.slow_call_threshold();
        // The window is full of healthy calls; 99 slow ones leave one.
        calls(&breaker, &clock, WINDOW as usize - 1, normal * 5);
        assert_eq!(breaker.state(), State::Closed, "normal {normal:?}");
        calls(&breaker, &clock, 1, normal * 5);
        assert_eq!(
            breaker.state(),
            State::Open,
            "normal {normal:?}, threshold {learned:?}"
        );
        // The slow calls taught the baseline nothing.
        assert_eq!(breaker.slow_call_threshold(), learned);
    }
}

#[test]
fn the_fixed_threshold_would_not_have_seen_it() {
    // The peer of the test above: the same 2 ms -> 10 ms jump under a fixed
    // threshold (the old default, 60 s) never opens.
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .slow_call_duration_threshold(Duration::from_secs(60))
        .adaptive_slow_call(AdaptiveSlowCall {
            enabled: false,
            ..Default::default()
        })
        .build()
        .unwrap();
    calls(&breaker, &clock, 400, 2 * MS);
    calls(&breaker, &clock, 1_000, 10 * MS);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.slow_call_threshold(), Duration::from_secs(60));
    assert_eq!(breaker.slow_call_baseline(), None);
}

#[test]
fn a_drift_within_the_multiple_does_not_open_it() {
    // 80 ms normal, then 100 ms for good: not slow, and learned.
    let clock = ManualClock::new();
    let breaker = builder(&clock).build().unwrap();
    calls(&breaker, &clock, 400, 80 * MS);
    calls(&breaker, &clock, 3_000, 100 * MS);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().slow_calls, 0);
    assert_learned(&breaker, 100 * MS);

    // A creep of 5 % every 100 calls, 10 ms to over 100 ms: the baseline
    // follows (each round is within the multiple of the last) and nothing
    // is ever slow.
    let clock = ManualClock::new();
    let breaker = builder(&clock).build().unwrap();
    let mut took = 10.0_f64;
    calls(&breaker, &clock, 200, 10 * MS);
    while took < 100.0 {
        took *= 1.05;
        calls(
            &breaker,
            &clock,
            100,
            Duration::from_secs_f64(took / 1000.0),
        );
        assert_eq!(breaker.snapshot().slow_calls, 0, "at {took:.1} ms");
    }
    assert_eq!(breaker.state(), State::Closed);
    assert!(
        breaker.slow_call_threshold() > 150 * MS,
        "{:?}",
        breaker.slow_call_threshold()
    );
}

#[test]
fn a_slow_period_while_closed_does_not_drag_the_baseline_up() {
    // Half the calls 5x slower, for 5,000 calls: too few slow to open at the
    // default 100 % slow-call rate, and none of them learned.
    let clock = ManualClock::new();
    let breaker = builder(&clock).build().unwrap();
    calls(&breaker, &clock, 200, 20 * MS);
    let learned = breaker.slow_call_threshold();
    for i in 0..5_000 {
        let took = if i % 2 == 0 { 100 * MS } else { 20 * MS };
        assert!(call(&breaker, &clock, took));
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.slow_call_threshold(), learned);
}

#[test]
fn a_creep_within_the_multiple_does_not_hide_a_jump_after_it() {
    // 20 ms learned (threshold about 63 ms); then 400 calls at 50 ms, within
    // the multiple, so learned, but only a quarter of the way per round:
    // the threshold is about 101 ms, not 151 ms. A jump to 120 ms (6 x the
    // original, 2.4 x the creep) is still slow and opens the breaker.
    let clock = ManualClock::new();
    let breaker = builder(&clock).build().unwrap();
    calls(&breaker, &clock, 200, 20 * MS);
    calls(&breaker, &clock, 400, 50 * MS);
    let threshold = breaker.slow_call_threshold();
    assert!(threshold < 110 * MS, "{threshold:?}");
    calls(&breaker, &clock, WINDOW as usize, 120 * MS);
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn the_baseline_is_frozen_while_the_breaker_is_not_closed() {
    // Rounds of 10, half-open probes of 10: a round could complete inside
    // half-open if it learned there.
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .adaptive_slow_call(AdaptiveSlowCall {
            min_samples: 10,
            ..Default::default()
        })
        .count_based_window(10)
        .minimum_number_of_calls(10)
        .permitted_calls_in_half_open(10)
        .build()
        .unwrap();
    calls(&breaker, &clock, 10, 20 * MS);
    let learned = breaker.slow_call_threshold();
    let baseline = breaker.slow_call_baseline();

    // The slow period: 10 calls at 5x open it.
    calls(&breaker, &clock, 10, 100 * MS);
    assert_eq!(breaker.state(), State::Open);
    // Half-open: slow probes (under the configured 1 s that judges probes)
    // pass and close it again; they are not learned.
    clock.advance(Duration::from_secs(10));
    calls(&breaker, &clock, 10, 50 * MS);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.slow_call_threshold(), learned);
    assert_eq!(breaker.slow_call_baseline(), baseline);

    // Forced open, disabled, metrics-only: no learning either.
    for manual in [State::Disabled, State::MetricsOnly] {
        breaker.transition_to(manual);
        calls(&breaker, &clock, 30, 50 * MS);
        assert_eq!(breaker.slow_call_baseline(), baseline, "{manual:?}");
    }
}

#[test]
fn half_open_probes_are_judged_against_the_configured_threshold() {
    // The fleet's stall drill: a learned threshold well under the
    // configured one (3 x 20 ms against 1 s), an outage opens the breaker,
    // and the database is back, but the five probes (the first calls after
    // the wait, together on cold connections) take 700 ms. Against the
    // learned threshold they were slow and reopened the breaker, trial
    // after trial; against the configured 1 s they pass.
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .adaptive_slow_call(AdaptiveSlowCall {
            min_samples: 10,
            ..Default::default()
        })
        .count_based_window(10)
        .minimum_number_of_calls(10)
        .permitted_calls_in_half_open(5)
        .build()
        .unwrap();
    calls(&breaker, &clock, 10, 20 * MS);
    assert_learned(&breaker, 20 * MS);
    // Five failures in the window of ten: 50 %.
    for _ in 0..5 {
        breaker.try_acquire().unwrap().failure(MS);
    }
    assert_eq!(breaker.state(), State::Open);
    clock.advance(Duration::from_secs(10));
    let probes: Vec<_> = (0..5).map(|_| breaker.try_acquire().unwrap()).collect();
    for probe in probes {
        probe.success(700 * MS);
    }
    assert_eq!(breaker.state(), State::Closed);
    // Back in the closed state the learned threshold judges again: a
    // service that stays 35x slower opens it once the window is full.
    calls(&breaker, &clock, 10, 700 * MS);
    assert_eq!(breaker.state(), State::Open);
    // And a probe slower than the configured threshold reopens it.
    clock.advance(Duration::from_secs(10));
    let probes: Vec<_> = (0..5).map(|_| breaker.try_acquire().unwrap()).collect();
    for probe in probes {
        probe.success(1_100 * MS);
    }
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn the_round_in_progress_is_dropped_when_the_breaker_opens() {
    // 20 ms learned; then the onset of trouble: 5 calls at 50 ms (under the
    // threshold, so learned into the round) and then failures open it.
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .adaptive_slow_call(AdaptiveSlowCall {
            min_samples: 10,
            ..Default::default()
        })
        .count_based_window(10)
        .minimum_number_of_calls(10)
        .failure_rate_threshold(50.0)
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    calls(&breaker, &clock, 10, 20 * MS);
    let baseline = breaker.slow_call_baseline().unwrap();
    calls(&breaker, &clock, 5, 50 * MS);
    for _ in 0..5 {
        breaker.try_acquire().unwrap().failure(MS);
    }
    assert_eq!(breaker.state(), State::Open);
    clock.advance(Duration::from_secs(10));
    calls(&breaker, &clock, 1, 20 * MS);
    assert_eq!(breaker.state(), State::Closed);
    // Had the 5 onset calls been kept, this round would end after 5 calls
    // with a 50 ms p99 and move the baseline a quarter of the way to it.
    calls(&breaker, &clock, 9, 20 * MS);
    assert_eq!(breaker.slow_call_baseline(), Some(baseline));
    calls(&breaker, &clock, 1, 20 * MS);
    assert_eq!(breaker.slow_call_baseline(), Some(baseline));
}

#[test]
fn the_threshold_is_a_gauge_labelled_by_breaker() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let clock = ManualClock::new();
    let breaker = metrics::with_local_recorder(&recorder, || builder(&clock).build().unwrap());
    let gauge = || {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find(|(k, ..)| k.key().name() == metric_names::SLOW_CALL_THRESHOLD)
            .map(|(k, _, _, v)| {
                let labels: Vec<String> = k
                    .key()
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                assert_eq!(labels, ["breaker=adaptive"]);
                match v {
                    DebugValue::Gauge(v) => v.into_inner(),
                    other => panic!("{other:?}"),
                }
            })
            .unwrap()
    };
    assert_eq!(gauge(), 1.0); // the fallback, from the start
    calls(&breaker, &clock, 200, 20 * MS);
    assert_eq!(gauge(), breaker.slow_call_threshold().as_secs_f64());
    assert!(gauge() < 0.07);
}

#[test]
fn threads_learn_together_into_their_shards() {
    // 4 threads, each reporting 20 ms successes: every thread's shard ends
    // rounds, and the learned threshold is the same as from one thread.
    let clock = ManualClock::new();
    let breaker = builder(&clock).build().unwrap();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..1_000 {
                    breaker.try_acquire().unwrap().success(20 * MS);
                }
            });
        }
    });
    assert_eq!(breaker.state(), State::Closed);
    assert_learned(&breaker, 20 * MS);
}
