//! Behaviour a user relies on, one scenario per test: both trip conditions,
//! waits that grow and are jittered, automatic transition, manual control,
//! outcome classification, cancellation, and the metrics the breaker reports.

// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::executor::block_on;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use stratum_breaker::{
    Breaker, BreakerBuilder, CallError, Classifier, EventKind, ManualClock, Outcome, State,
    TransitionReason, metric_names,
};

const MS: Duration = Duration::from_millis(1);

fn builder(clock: &ManualClock) -> BreakerBuilder<ManualClock> {
    Breaker::builder("svc")
        .count_based_window(10)
        .minimum_number_of_calls(10)
        .jitter(0.0)
        .clock(clock.clone())
}

fn reasons(
    breaker_builder: BreakerBuilder<ManualClock>,
) -> (Breaker<ManualClock>, Arc<Mutex<Vec<TransitionReason>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let breaker = breaker_builder
        .on_event(move |e| {
            if let EventKind::Transition { reason, .. } = e.kind {
                sink.lock().unwrap().push(reason);
            }
        })
        .build()
        .unwrap();
    (breaker, seen)
}

#[test]
fn slow_calls_open_the_breaker_even_when_all_succeed() {
    let clock = ManualClock::new();
    let (breaker, seen) = reasons(
        builder(&clock)
            .slow_call_duration_threshold(Duration::from_millis(100))
            .slow_call_rate_threshold(50.0),
    );
    for i in 0..10 {
        let elapsed = if i < 5 {
            Duration::from_millis(101)
        } else {
            MS
        };
        breaker.try_acquire().unwrap().success(elapsed);
    }
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(*seen.lock().unwrap(), vec![TransitionReason::SlowCallRate]);
}

#[test]
fn a_call_exactly_at_the_slow_threshold_is_not_slow() {
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .slow_call_duration_threshold(Duration::from_millis(100))
        .slow_call_rate_threshold(10.0)
        .build()
        .unwrap();
    for _ in 0..10 {
        breaker
            .try_acquire()
            .unwrap()
            .success(Duration::from_millis(100));
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().slow_calls, 0);
}

#[test]
fn nothing_is_judged_before_the_minimum_number_of_calls() {
    let clock = ManualClock::new();
    let breaker = builder(&clock).build().unwrap();
    for _ in 0..9 {
        breaker.try_acquire().unwrap().failure(MS);
    }
    assert_eq!(breaker.state(), State::Closed, "9 failures, minimum is 10");
    assert_eq!(breaker.snapshot().failure_rate, None);
    breaker.try_acquire().unwrap().failure(MS);
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn exponential_waits_grow_per_trip_cap_and_restart_after_closing() {
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .minimum_number_of_calls(1)
        .permitted_calls_in_half_open(1)
        .exponential_wait_in_open(Duration::from_secs(1), 2.0, Duration::from_secs(5))
        .build()
        .unwrap();
    breaker.try_acquire().unwrap().failure(MS);
    let mut waits = Vec::new();
    for _ in 0..5 {
        let wait = breaker.remaining_wait().unwrap();
        waits.push(wait.as_secs());
        clock.advance(wait);
        breaker.try_acquire().unwrap().failure(MS); // the probe fails: open again
    }
    assert_eq!(waits, vec![1, 2, 4, 5, 5]);
    clock.advance(breaker.remaining_wait().unwrap());
    breaker.try_acquire().unwrap().success(MS); // the probe passes: closed
    assert_eq!(breaker.state(), State::Closed);
    breaker.try_acquire().unwrap().failure(MS);
    assert_eq!(breaker.remaining_wait(), Some(Duration::from_secs(1)));
}

#[test]
fn jitter_spreads_a_fleet_and_never_exceeds_the_base_wait() {
    let clock = ManualClock::new();
    let waits: Vec<Duration> = (0..20)
        .map(|seed| {
            let breaker = builder(&clock)
                .minimum_number_of_calls(1)
                .wait_in_open(Duration::from_secs(10))
                .jitter(0.5)
                .jitter_seed(seed)
                .build()
                .unwrap();
            breaker.try_acquire().unwrap().failure(MS);
            breaker.remaining_wait().unwrap()
        })
        .collect();
    assert!(
        waits
            .iter()
            .all(|w| *w >= Duration::from_secs(5) && *w <= Duration::from_secs(10))
    );
    let distinct: std::collections::HashSet<_> = waits.iter().collect();
    assert!(
        distinct.len() >= 18,
        "seeds should give different waits: {waits:?}"
    );
}

#[test]
fn automatic_transition_shows_half_open_without_a_call() {
    let clock = ManualClock::new();
    let (breaker, seen) = reasons(
        builder(&clock)
            .minimum_number_of_calls(1)
            .wait_in_open(Duration::from_secs(5))
            .automatic_transition_to_half_open(true),
    );
    breaker.try_acquire().unwrap().failure(MS);
    clock.advance(Duration::from_secs(5));
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![TransitionReason::FailureRate, TransitionReason::WaitElapsed]
    );
}

#[test]
fn without_automatic_transition_open_waits_for_the_next_call() {
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .minimum_number_of_calls(1)
        .wait_in_open(Duration::from_secs(5))
        .build()
        .unwrap();
    breaker.try_acquire().unwrap().failure(MS);
    clock.advance(Duration::from_secs(60));
    assert_eq!(breaker.state(), State::Open);
    let probe = breaker.try_acquire().unwrap();
    assert_eq!(breaker.state(), State::HalfOpen);
    drop(probe);
}

#[test]
fn half_open_decides_on_the_failure_rate_of_all_its_probes() {
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .permitted_calls_in_half_open(4)
        .failure_rate_threshold(50.0)
        .build()
        .unwrap();
    // One failed probe out of four is 25 %: closes.
    breaker.transition_to(State::HalfOpen);
    for outcome in [
        Outcome::Failure,
        Outcome::Success,
        Outcome::Success,
        Outcome::Success,
    ] {
        breaker.try_acquire().unwrap().record(outcome, MS);
    }
    assert_eq!(breaker.state(), State::Closed);
    // Two of four is 50 %: opens.
    breaker.transition_to(State::HalfOpen);
    for outcome in [Outcome::Failure, Outcome::Success, Outcome::Failure] {
        breaker.try_acquire().unwrap().record(outcome, MS);
        assert_eq!(
            breaker.state(),
            State::HalfOpen,
            "undecided before the last probe"
        );
    }
    breaker.try_acquire().unwrap().success(MS);
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn half_open_times_out_back_to_open() {
    let clock = ManualClock::new();
    let (breaker, seen) = reasons(builder(&clock).max_wait_in_half_open(Duration::from_secs(30)));
    breaker.transition_to(State::HalfOpen);
    let _stuck = breaker.try_acquire().unwrap();
    clock.advance(Duration::from_secs(30));
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        seen.lock().unwrap().last(),
        Some(&TransitionReason::HalfOpenTimeout)
    );
}

#[test]
fn manual_states_do_what_they_say() {
    let clock = ManualClock::new();
    let breaker = builder(&clock).minimum_number_of_calls(1).build().unwrap();

    breaker.disable();
    for _ in 0..50 {
        breaker.try_acquire().unwrap().failure(MS);
    }
    assert_eq!(breaker.state(), State::Disabled);
    assert_eq!(breaker.snapshot().calls, 0, "disabled records nothing");

    breaker.metrics_only();
    for _ in 0..50 {
        breaker.try_acquire().unwrap().failure(MS);
    }
    let snapshot = breaker.snapshot();
    assert_eq!(
        (snapshot.state, snapshot.calls, snapshot.failure_rate),
        (State::MetricsOnly, 10, Some(100.0))
    );

    breaker.force_open();
    let refused = breaker.try_acquire().unwrap_err();
    assert_eq!(
        (refused.state(), refused.retry_after()),
        (State::ForcedOpen, None)
    );
    clock.advance(Duration::from_secs(3600));
    assert_eq!(
        breaker.state(),
        State::ForcedOpen,
        "forced open stays until told"
    );

    breaker.reset();
    let snapshot = breaker.snapshot();
    assert_eq!((snapshot.state, snapshot.calls), (State::Closed, 0));

    breaker.transition_to(State::Open);
    assert!(breaker.try_acquire().is_err());
}

#[test]
fn a_result_predicate_counts_busy_answers_as_failures() {
    let clock = ManualClock::new();
    let breaker = builder(&clock).build().unwrap();
    #[derive(Debug, PartialEq)]
    enum Reply {
        Ok,
        ServerBusy,
    }
    let classifier = Classifier::<Reply, ()>::new().failure_result(|r| *r == Reply::ServerBusy);
    for _ in 0..10 {
        let reply = breaker.call_sync_with(&classifier, || Ok(Reply::ServerBusy));
        assert_eq!(
            reply.unwrap(),
            Reply::ServerBusy,
            "the caller still gets the value"
        );
    }
    assert_eq!(breaker.state(), State::Open);
    assert!(matches!(
        breaker.call_sync_with(&classifier, || Ok(Reply::Ok)),
        Err(CallError::NotPermitted(_))
    ));
}

#[test]
fn ignored_and_unrecorded_errors_do_not_trip() {
    let clock = ManualClock::new();
    let breaker = builder(&clock).build().unwrap();
    let classifier = Classifier::<(), u16>::new()
        .record_error(|status| *status >= 500)
        .ignore_error(|status| *status == 429);
    for _ in 0..20 {
        let _ = breaker.call_sync_with(&classifier, || Err(429));
        let _ = breaker.call_sync_with(&classifier, || Err(404));
    }
    let snapshot = breaker.snapshot();
    assert_eq!(
        (snapshot.state, snapshot.calls, snapshot.failed_calls),
        (State::Closed, 10, 0)
    );
}

#[test]
fn the_async_call_is_timed_by_the_breaker_clock() {
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .slow_call_duration_threshold(Duration::from_secs(1))
        .build()
        .unwrap();
    let ticking = clock.clone();
    let result = block_on(breaker.call(async move {
        ticking.advance(Duration::from_secs(2)); // the call "takes" 2 s
        Ok::<_, ()>(5)
    }));
    assert_eq!(result.unwrap(), 5);
    assert_eq!(breaker.snapshot().slow_calls, 1);
}

#[test]
fn a_cancelled_async_probe_gives_its_slot_back() {
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    breaker.transition_to(State::HalfOpen);
    {
        let pending = breaker.call(futures::future::pending::<Result<(), ()>>());
        let mut pending = Box::pin(pending);
        // Poll once so the permit is taken, then drop the future (cancel).
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(pending.as_mut().poll(&mut cx).is_pending());
        assert!(
            breaker.try_acquire().is_err(),
            "the slot is held while the call runs"
        );
    }
    assert!(
        breaker.try_acquire().is_ok(),
        "cancelling gave the slot back"
    );
}

#[test]
fn metrics_are_reported_with_bounded_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let clock = ManualClock::new();
    // Handles bind to the recorder installed when the breaker is built.
    let breaker = metrics::with_local_recorder(&recorder, || {
        builder(&clock)
            .minimum_number_of_calls(4)
            .count_based_window(4)
            .slow_call_duration_threshold(Duration::from_millis(100))
            .build()
            .unwrap()
    });
    breaker.try_acquire().unwrap().success(MS);
    breaker
        .try_acquire()
        .unwrap()
        .success(Duration::from_millis(200));
    breaker.try_acquire().unwrap().failure(MS);
    breaker.try_acquire().unwrap().ignore(MS);
    breaker.try_acquire().unwrap().failure(MS); // 4 calls, 2 failures: 50 % opens
    assert!(breaker.try_acquire().is_err());
    breaker.reset();

    let mut found = std::collections::HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        assert!(labels.iter().any(|l| l == "breaker=svc"), "{key:?}");
        found.insert(format!("{}{{{}}}", key.name(), labels.join(",")), value);
    }
    let counter = |k: &str| match found.get(k) {
        Some(DebugValue::Counter(v)) => *v,
        other => panic!("{k}: {other:?}"),
    };
    let gauge = |k: &str| match found.get(k) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{k}: {other:?}"),
    };
    let calls = metric_names::CALLS;
    assert_eq!(
        counter(&format!("{calls}{{breaker=svc,outcome=success}}")),
        1
    );
    assert_eq!(
        counter(&format!("{calls}{{breaker=svc,outcome=slow_success}}")),
        1
    );
    assert_eq!(
        counter(&format!("{calls}{{breaker=svc,outcome=failure}}")),
        2
    );
    assert_eq!(
        counter(&format!("{calls}{{breaker=svc,outcome=ignored}}")),
        1
    );
    assert_eq!(
        counter(&format!("{calls}{{breaker=svc,outcome=not_permitted}}")),
        1
    );
    assert_eq!(
        counter(&format!(
            "{}{{breaker=svc,state=open}}",
            metric_names::NOT_PERMITTED
        )),
        1
    );
    assert_eq!(
        counter(&format!(
            "{}{{breaker=svc,from=closed,to=open}}",
            metric_names::TRANSITIONS
        )),
        1
    );
    assert_eq!(
        counter(&format!(
            "{}{{breaker=svc,from=open,to=closed}}",
            metric_names::TRANSITIONS
        )),
        1
    );
    assert_eq!(
        gauge(&format!("{}{{breaker=svc}}", metric_names::STATE)),
        0.0
    );
    // Reset emptied the window: the ratios are "no figure" (NaN) again.
    assert!(gauge(&format!("{}{{breaker=svc}}", metric_names::FAILURE_RATIO)).is_nan());
    assert!(gauge(&format!("{}{{breaker=svc}}", metric_names::SLOW_CALL_RATIO)).is_nan());
    match found.get(&format!(
        "{}{{breaker=svc,outcome=success}}",
        metric_names::CALL_DURATION
    )) {
        Some(DebugValue::Histogram(samples)) => {
            let mut secs: Vec<f64> = samples.iter().map(|s| s.into_inner()).collect();
            secs.sort_by(f64::total_cmp);
            assert_eq!(secs, vec![0.001, 0.2]);
        }
        other => panic!("duration histogram: {other:?}"),
    }
}

#[test]
fn the_rate_gauges_follow_the_window() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let clock = ManualClock::new();
    let breaker = metrics::with_local_recorder(&recorder, || {
        builder(&clock)
            .count_based_window(4)
            .minimum_number_of_calls(4)
            .failure_rate_threshold(100.0)
            .build()
            .unwrap()
    });
    for outcome in [
        Outcome::Failure,
        Outcome::Success,
        Outcome::Success,
        Outcome::Success,
    ] {
        breaker.try_acquire().unwrap().record(outcome, MS);
    }
    let rate = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(k, ..)| k.key().name() == metric_names::FAILURE_RATIO)
        .map(|(.., v)| v);
    assert!(
        matches!(rate, Some(DebugValue::Gauge(v)) if v.into_inner() == 0.25),
        "{rate:?}"
    );
}

#[test]
fn breakers_and_their_calls_can_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let breaker = Breaker::builder("threads").build().unwrap();
    send_sync(&breaker);
    let call = breaker.call(async { Ok::<_, ()>(1) });
    send(&call);
    assert_eq!(block_on(call).unwrap(), 1);
    let permit = breaker.try_acquire().unwrap();
    send_sync(&permit);
    permit.success(MS);
}
