//! Many threads on one breaker (8 threads on however many cores): half-open
//! admits exactly the permitted probes, and no outcome is lost from the
//! window's counts or from the events.

// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use stratum_breaker::{Breaker, EventKind, ManualClock, Outcome, State};

const THREADS: usize = 8;

#[test]
fn half_open_admits_exactly_the_permitted_probes_under_contention() {
    for permitted in [1u32, 3, 7, 16] {
        let breaker = Breaker::builder("probes")
            .permitted_calls_in_half_open(permitted)
            .clock(ManualClock::new())
            .build()
            .unwrap();
        for round in 0..50 {
            breaker.transition_to(State::HalfOpen);
            let barrier = Barrier::new(THREADS);
            // Every thread keeps trying until it has been refused a few times
            // in a row, holding whatever it was admitted (as slow probes do).
            let admitted: usize = thread::scope(|scope| {
                let handles: Vec<_> = (0..THREADS)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            let mut mine = Vec::new();
                            let mut refusals = 0;
                            while refusals < 50 {
                                match breaker.try_acquire() {
                                    Ok(permit) => mine.push(permit),
                                    Err(_) => refusals += 1,
                                }
                            }
                            let n = mine.len();
                            // Drop the permits only after every thread is
                            // done trying, or a freed slot would be re-admitted.
                            (n, mine)
                        })
                    })
                    .collect();
                let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
                let total = results.iter().map(|r| r.0).sum();
                for (_, permits) in results {
                    for permit in permits {
                        permit.success(Duration::from_millis(1));
                    }
                }
                total
            });
            assert_eq!(
                admitted, permitted as usize,
                "round {round}: half-open admitted {admitted} probes, {permitted} permitted"
            );
            // All probes succeeded: the breaker closed on them.
            assert_eq!(breaker.state(), State::Closed, "round {round}");
        }
    }
}

#[test]
fn half_open_with_releases_never_exceeds_the_permitted_outstanding_probes() {
    // Threads take probes and give some back (dropped or ignored) while
    // others take them: at no moment may more than `permitted` be out.
    let permitted = 4u32;
    let breaker = Breaker::builder("churn")
        .permitted_calls_in_half_open(permitted)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    breaker.transition_to(State::HalfOpen);
    let outstanding = AtomicU64::new(0);
    let peak = AtomicU64::new(0);
    let barrier = Barrier::new(THREADS);
    thread::scope(|scope| {
        for t in 0..THREADS {
            let (breaker, outstanding, peak, barrier) = (&breaker, &outstanding, &peak, &barrier);
            scope.spawn(move || {
                barrier.wait();
                for i in 0..20_000 {
                    if let Ok(permit) = breaker.try_acquire() {
                        let now = outstanding.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        outstanding.fetch_sub(1, Ordering::SeqCst);
                        if (i + t) % 2 == 0 {
                            drop(permit);
                        } else {
                            permit.ignore(Duration::from_millis(1));
                        }
                    }
                }
            });
        }
    });
    assert!(
        peak.load(Ordering::SeqCst) <= u64::from(permitted),
        "peak outstanding probes {} > {permitted}",
        peak.load(Ordering::SeqCst)
    );
    // Every slot came back: exactly `permitted` can be taken now.
    let probes: Vec<_> = (0..permitted)
        .map(|_| breaker.try_acquire().unwrap())
        .collect();
    assert!(breaker.try_acquire().is_err());
    drop(probes);
}

/// Each thread's outcome for its `i`-th call.
fn outcome_of(thread: usize, i: usize) -> (Outcome, Duration) {
    let outcome = match (thread + i) % 5 {
        0 | 1 => Outcome::Success,
        2 | 3 => Outcome::Failure,
        _ => Outcome::Ignored,
    };
    let elapsed = if (thread * 7 + i).is_multiple_of(3) {
        Duration::from_millis(500) // slow
    } else {
        Duration::from_millis(1)
    };
    (outcome, elapsed)
}

fn expected_counts(per_thread: usize) -> (u64, u64, u64, u64) {
    let (mut calls, mut failures, mut slow, mut ignored) = (0, 0, 0, 0);
    for t in 0..THREADS {
        for i in 0..per_thread {
            match outcome_of(t, i) {
                (Outcome::Ignored, _) => ignored += 1,
                (outcome, elapsed) => {
                    calls += 1;
                    failures += u64::from(outcome == Outcome::Failure);
                    slow += u64::from(elapsed > Duration::from_millis(100));
                }
            }
        }
    }
    (calls, failures, slow, ignored)
}

fn hammer(breaker: &Breaker<ManualClock>, per_thread: usize) {
    let barrier = Barrier::new(THREADS);
    thread::scope(|scope| {
        for t in 0..THREADS {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                for i in 0..per_thread {
                    let (outcome, elapsed) = outcome_of(t, i);
                    breaker.try_acquire().unwrap().record(outcome, elapsed);
                }
            });
        }
    });
}

fn counting_breaker(
    window: impl FnOnce(
        stratum_breaker::BreakerBuilder<ManualClock>,
    ) -> stratum_breaker::BreakerBuilder<ManualClock>,
) -> (Breaker<ManualClock>, Arc<[AtomicU64; 3]>) {
    // success, failure, ignored events
    let events: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let sink = Arc::clone(&events);
    let builder = Breaker::builder("counts")
        .slow_call_duration_threshold(Duration::from_millis(100))
        .clock(ManualClock::new())
        .on_event(move |event| {
            if let EventKind::Call { outcome, .. } = event.kind {
                let i = match outcome {
                    Outcome::Success => 0,
                    Outcome::Failure => 1,
                    _ => 2,
                };
                sink[i].fetch_add(1, Ordering::Relaxed);
            }
        });
    (window(builder).build().unwrap(), events)
}

#[test]
fn no_outcome_is_lost_from_a_count_window() {
    let per_thread = 5_000;
    let (calls, failures, slow, ignored) = expected_counts(per_thread);
    // A window larger than the run, and metrics-only so 40 % failures do not
    // trip it: every outcome must be in the totals.
    let (breaker, events) = counting_breaker(|b| b.count_based_window(100_000));
    breaker.metrics_only();
    hammer(&breaker, per_thread);
    let snapshot = breaker.snapshot();
    assert_eq!(
        (snapshot.calls, snapshot.failed_calls, snapshot.slow_calls),
        (calls, failures, slow)
    );
    assert_eq!(
        events[0].load(Ordering::Relaxed) + events[1].load(Ordering::Relaxed),
        calls
    );
    assert_eq!(events[1].load(Ordering::Relaxed), failures);
    assert_eq!(events[2].load(Ordering::Relaxed), ignored);
}

#[test]
fn a_full_count_window_under_contention_holds_exactly_its_size() {
    // The ring wraps many times while 8 threads write: afterwards it holds
    // exactly `size` calls, and its totals equal a recount of what is in it
    // (checked through the rates of a uniform run).
    let (breaker, _) = counting_breaker(|b| b.count_based_window(64));
    breaker.metrics_only();
    let barrier = Barrier::new(THREADS);
    thread::scope(|scope| {
        for _ in 0..THREADS {
            let (breaker, barrier) = (&breaker, &barrier);
            scope.spawn(move || {
                barrier.wait();
                for i in 0..20_000 {
                    let outcome = if i % 2 == 0 {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    breaker
                        .try_acquire()
                        .unwrap()
                        .record(outcome, Duration::from_millis(1));
                }
            });
        }
    });
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.calls, 64);
    assert_eq!(snapshot.slow_calls, 0);
    // Then a quiet, single-threaded pass of 64 successes replaces everything.
    for _ in 0..64 {
        breaker
            .try_acquire()
            .unwrap()
            .success(Duration::from_millis(1));
    }
    let snapshot = breaker.snapshot();
    assert_eq!((snapshot.calls, snapshot.failed_calls), (64, 0));
}

#[test]
fn no_outcome_is_lost_from_a_time_window() {
    let per_thread = 5_000;
    let (calls, failures, slow, _) = expected_counts(per_thread);
    let (breaker, _) = counting_breaker(|b| b.time_based_window(Duration::from_secs(10)));
    breaker.metrics_only();
    hammer(&breaker, per_thread);
    let snapshot = breaker.snapshot();
    assert_eq!(
        (snapshot.calls, snapshot.failed_calls, snapshot.slow_calls),
        (calls, failures, slow)
    );
    // Once the window has passed, nothing is left.
    breaker.clock().advance(Duration::from_secs(10));
    assert_eq!(breaker.snapshot().calls, 0);
}

#[test]
fn concurrent_failures_open_the_breaker_once() {
    let transitions = Arc::new(AtomicU64::new(0));
    let sink = Arc::clone(&transitions);
    let breaker = Breaker::builder("trip")
        .count_based_window(100)
        .minimum_number_of_calls(100)
        .wait_in_open(Duration::from_secs(60))
        .clock(ManualClock::new())
        .on_event(move |event| {
            if let EventKind::Transition {
                to: State::Open, ..
            } = event.kind
            {
                sink.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .unwrap();
    let barrier = Barrier::new(THREADS);
    thread::scope(|scope| {
        for _ in 0..THREADS {
            let (breaker, barrier) = (&breaker, &barrier);
            scope.spawn(move || {
                barrier.wait();
                for _ in 0..1_000 {
                    if let Ok(permit) = breaker.try_acquire() {
                        permit.failure(Duration::from_millis(1));
                    }
                }
            });
        }
    });
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        transitions.load(Ordering::Relaxed),
        1,
        "one trip, however many threads saw it"
    );
}
