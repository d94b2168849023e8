//! The breaker against a small, obviously correct reference model: random
//! configurations, then random sequences of calls (finished at once, or held
//! and finished or dropped later), clock advances, state reads and manual
//! transitions. After every step both must agree on whether a call was
//! permitted, on the refusal (state and retry-after), and on every
//! transition so far (which pins the state after every step).
//!
//! Some configurations learn their slow-call threshold (adaptive, rounds of
//! 10): the model takes the closed state's threshold from the breaker before
//! each record (the estimator has its own tests, adaptive.rs) and judges
//! half-open probes against the configured `SLOW_MS`, as documented.

// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use stratum_breaker::{
    AdaptiveSlowCall, Breaker, EventKind, ManualClock, NotPermitted, Outcome, Permit, State,
};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const SLOW_MS: u64 = 50;

// ---------------------------------------------------------------- the model

#[derive(Debug, Clone)]
enum Wait {
    Constant {
        ms: u64,
    },
    Exponential {
        initial_ms: u64,
        multiplier: u64,
        max_ms: u64,
    },
}

#[derive(Debug, Clone)]
struct Spec {
    count_window: Option<u32>,
    time_window_secs: u64,
    minimum_calls: u32,
    failure_threshold: f64,
    slow_threshold: f64,
    permitted: u32,
    wait: Wait,
    jitter: f64,
    seed: u64,
    automatic: bool,
    max_half_open_ms: u64,
    /// Learn the closed state's slow-call threshold (`SLOW_MS` until the
    /// first round); half-open probes are judged against `SLOW_MS` anyway.
    adaptive: bool,
}

/// A permit as the model sees it: the state and epoch it was issued in.
#[derive(Debug, Clone, Copy)]
struct Ticket {
    state: State,
    epoch: u64,
}

/// The reference: plain vectors, a state enum and the rules written out.
struct Model {
    spec: Spec,
    state: State,
    epoch: u64,
    /// (second, failed, slow) of every call recorded since the window was
    /// last cleared; the live window is filtered from it.
    window: Vec<(u64, bool, bool)>,
    open_until: u64,
    half_open_since: u64,
    admitted: u32,
    probes: Vec<(bool, bool)>,
    trips: u32,
    rng: u64,
    transitions: Vec<(State, State)>,
}

impl Model {
    fn new(spec: Spec) -> Self {
        let rng = spec.seed;
        Self {
            spec,
            state: State::Closed,
            epoch: 0,
            window: Vec::new(),
            open_until: 0,
            half_open_since: 0,
            admitted: 0,
            probes: Vec::new(),
            trips: 0,
            rng,
            transitions: Vec::new(),
        }
    }

    /// SplitMix64, as documented for the jitter.
    fn next_unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn base_wait_ns(&self) -> u64 {
        match self.spec.wait {
            Wait::Constant { ms } => ms * MS,
            Wait::Exponential {
                initial_ms,
                multiplier,
                max_ms,
            } => {
                let mut wait = initial_ms * MS;
                for _ in 1..self.trips {
                    wait = wait.saturating_mul(multiplier);
                    if wait >= max_ms * MS {
                        break;
                    }
                }
                wait.min(max_ms * MS)
            }
        }
    }

    fn go(&mut self, to: State, now: u64) {
        self.transitions.push((self.state, to));
        self.state = to;
        self.epoch += 1;
        match to {
            State::Closed => {
                self.window.clear();
                self.trips = 0;
            }
            State::MetricsOnly => self.window.clear(),
            State::Open => {
                self.trips += 1;
                let base = self.base_wait_ns();
                let factor = 1.0 - self.spec.jitter * self.next_unit();
                let wait = ((base as f64 * factor) as u64).max(1);
                self.open_until = now + wait;
            }
            State::HalfOpen => {
                self.admitted = 0;
                self.probes.clear();
                self.half_open_since = now;
            }
            State::Disabled | State::ForcedOpen => {}
        }
    }

    fn half_open_timed_out(&self, now: u64) -> bool {
        now - self.half_open_since >= self.spec.max_half_open_ms * MS
    }

    /// `Ok(ticket)`, or `Err((refusing state, retry after))`.
    fn acquire(&mut self, now: u64) -> Result<Ticket, (State, Option<Duration>)> {
        loop {
            match self.state {
                State::Closed | State::MetricsOnly | State::Disabled => {
                    return Ok(Ticket {
                        state: self.state,
                        epoch: self.epoch,
                    });
                }
                State::ForcedOpen => return Err((State::ForcedOpen, None)),
                State::Open => {
                    if now < self.open_until {
                        let left = Duration::from_nanos(self.open_until - now);
                        return Err((State::Open, Some(left)));
                    }
                    self.go(State::HalfOpen, now);
                }
                State::HalfOpen => {
                    if self.half_open_timed_out(now) {
                        self.go(State::Open, now);
                        continue;
                    }
                    if self.admitted < self.spec.permitted {
                        self.admitted += 1;
                        return Ok(Ticket {
                            state: State::HalfOpen,
                            epoch: self.epoch,
                        });
                    }
                    return Err((State::HalfOpen, None));
                }
            }
        }
    }

    /// The calls in the window now: (calls, failures, slow).
    fn live(&self, now: u64) -> (u64, u64, u64) {
        let live: Vec<&(u64, bool, bool)> = match self.spec.count_window {
            Some(size) => {
                let start = self.window.len().saturating_sub(size as usize);
                self.window[start..].iter().collect()
            }
            None => {
                let sec = now / SEC;
                self.window
                    .iter()
                    .filter(|c| c.0 + self.spec.time_window_secs > sec)
                    .collect()
            }
        };
        (
            live.len() as u64,
            live.iter().filter(|c| c.1).count() as u64,
            live.iter().filter(|c| c.2).count() as u64,
        )
    }

    fn minimum_calls(&self) -> u64 {
        let min = u64::from(self.spec.minimum_calls);
        match self.spec.count_window {
            Some(size) => min.min(u64::from(size)),
            None => min,
        }
    }

    fn opens(&self, calls: u64, failures: u64, slow: u64) -> bool {
        let calls = calls as f64;
        failures as f64 * 100.0 / calls >= self.spec.failure_threshold
            || slow as f64 * 100.0 / calls >= self.spec.slow_threshold
    }

    /// `learned_ns`: the breaker's slow-call threshold as the call ends
    /// (`SLOW_MS` when fixed); a half-open probe is judged against `SLOW_MS`.
    fn record(
        &mut self,
        ticket: Ticket,
        outcome: Outcome,
        elapsed_ms: u64,
        now: u64,
        learned_ns: u64,
    ) {
        let slow = if ticket.state == State::HalfOpen {
            elapsed_ms > SLOW_MS
        } else {
            elapsed_ms * MS > learned_ns
        };
        let failed = outcome == Outcome::Failure;
        if ticket.epoch != self.epoch {
            return; // admitted in a state that is over
        }
        match ticket.state {
            State::Closed | State::MetricsOnly => {
                if outcome == Outcome::Ignored {
                    return;
                }
                self.window.push((now / SEC, failed, slow));
                let (calls, failures, slows) = self.live(now);
                if ticket.state == State::Closed
                    && calls >= self.minimum_calls()
                    && self.opens(calls, failures, slows)
                {
                    self.go(State::Open, now);
                }
            }
            State::HalfOpen => {
                if outcome == Outcome::Ignored {
                    self.admitted -= 1;
                    return;
                }
                self.probes.push((failed, slow));
                if self.probes.len() == self.spec.permitted as usize {
                    let n = self.probes.len() as u64;
                    let failures = self.probes.iter().filter(|p| p.0).count() as u64;
                    let slows = self.probes.iter().filter(|p| p.1).count() as u64;
                    if self.opens(n, failures, slows) {
                        self.go(State::Open, now);
                    } else {
                        self.go(State::Closed, now);
                    }
                }
            }
            _ => {}
        }
    }

    fn drop_permit(&mut self, ticket: Ticket) {
        if ticket.state == State::HalfOpen && ticket.epoch == self.epoch {
            self.admitted -= 1;
        }
    }

    fn poll(&mut self, now: u64) {
        loop {
            match self.state {
                State::Open if self.spec.automatic && now >= self.open_until => {
                    self.go(State::HalfOpen, now)
                }
                State::HalfOpen if self.half_open_timed_out(now) => self.go(State::Open, now),
                _ => return,
            }
        }
    }
}

// ---------------------------------------------------------------- the test

#[derive(Debug, Clone)]
enum Op {
    Call {
        outcome: Outcome,
        elapsed_ms: u64,
    },
    Hold,
    Finish {
        index: usize,
        outcome: Outcome,
        elapsed_ms: u64,
    },
    Drop {
        index: usize,
    },
    Advance {
        ms: u64,
    },
    ReadState,
    Manual(State),
    Reset,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        5 => Just(Outcome::Success),
        4 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (outcome(), 0u64..100).prop_map(|(outcome, elapsed_ms)| Op::Call { outcome, elapsed_ms }),
        2 => Just(Op::Hold),
        2 => (any::<usize>(), outcome(), 0u64..100)
            .prop_map(|(index, outcome, elapsed_ms)| Op::Finish { index, outcome, elapsed_ms }),
        1 => any::<usize>().prop_map(|index| Op::Drop { index }),
        5 => prop_oneof![0u64..200, 200u64..3_000].prop_map(|ms| Op::Advance { ms }),
        2 => Just(Op::ReadState),
        1 => proptest::sample::select(State::ALL.to_vec()).prop_map(Op::Manual),
        1 => Just(Op::Reset),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            // Windows of 16 and more are filled in runs of several positions
            // per thread (see window/count.rs): cover both kinds.
            prop_oneof![
                (1u32..8).prop_map(Some),
                (16u32..80).prop_map(Some),
                Just(None)
            ],
            1u64..4,
            prop_oneof![1u32..7, 10u32..40],
        ),
        (
            proptest::sample::select(vec![20.0, 50.0, 100.0]),
            proptest::sample::select(vec![30.0, 50.0, 100.0]),
            1u32..4,
        ),
        prop_oneof![
            (1u64..3_000).prop_map(|ms| Wait::Constant { ms }),
            (100u64..1_000, 2u64..4, 1_000u64..5_000).prop_map(
                |(initial_ms, multiplier, max_ms)| {
                    Wait::Exponential {
                        initial_ms,
                        multiplier,
                        max_ms,
                    }
                }
            ),
        ],
        (
            proptest::sample::select(vec![0.0, 0.5]),
            any::<u64>(),
            any::<bool>(),
            1u64..5_000,
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (count_window, time_window_secs, minimum_calls),
                (failure_threshold, slow_threshold, permitted),
                wait,
                (jitter, seed, automatic, max_half_open_ms, adaptive),
            )| Spec {
                count_window,
                time_window_secs,
                minimum_calls,
                failure_threshold,
                slow_threshold,
                permitted,
                wait,
                jitter,
                seed,
                automatic,
                max_half_open_ms,
                adaptive,
            },
        )
}

fn build(
    spec: &Spec,
    clock: &ManualClock,
    transitions: Arc<Mutex<Vec<(State, State)>>>,
) -> Breaker<ManualClock> {
    let builder = Breaker::builder("model")
        .minimum_number_of_calls(spec.minimum_calls)
        .failure_rate_threshold(spec.failure_threshold)
        .slow_call_rate_threshold(spec.slow_threshold)
        .slow_call_duration_threshold(Duration::from_millis(SLOW_MS))
        // Learned: 1.5 x the p99 of rounds of 10 healthy calls, within
        // 5..200 ms, so it lands on either side of SLOW_MS for calls of
        // 0..100 ms.
        .adaptive_slow_call(AdaptiveSlowCall {
            enabled: spec.adaptive,
            multiple: 1.5,
            floor: Duration::from_millis(5),
            cap: Duration::from_millis(200),
            min_samples: 10,
        })
        .permitted_calls_in_half_open(spec.permitted)
        .jitter(spec.jitter)
        .jitter_seed(spec.seed)
        .automatic_transition_to_half_open(spec.automatic)
        .max_wait_in_half_open(Duration::from_millis(spec.max_half_open_ms))
        .clock(clock.clone())
        .on_event(move |event| {
            if let EventKind::Transition { from, to, .. } = event.kind {
                transitions.lock().unwrap().push((from, to));
            }
        });
    let builder = match spec.count_window {
        Some(size) => builder.count_based_window(size),
        None => builder.time_based_window(Duration::from_secs(spec.time_window_secs)),
    };
    let builder = match spec.wait {
        Wait::Constant { ms } => builder.wait_in_open(Duration::from_millis(ms)),
        Wait::Exponential {
            initial_ms,
            multiplier,
            max_ms,
        } => builder.exponential_wait_in_open(
            Duration::from_millis(initial_ms),
            multiplier as f64,
            Duration::from_millis(max_ms),
        ),
    };
    builder.build().unwrap()
}

fn refusal(e: &NotPermitted) -> (State, Option<Duration>) {
    (e.state(), e.retry_after())
}

fn check(spec: Spec, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    // Start away from zero so "now - since" arithmetic is exercised.
    clock.set(Duration::from_millis(123_456));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let breaker = build(&spec, &clock, Arc::clone(&seen));
    let mut model = Model::new(spec);
    let mut held: Vec<(Permit<'_, Breaker<ManualClock>>, Ticket)> = Vec::new();

    for (step, op) in ops.into_iter().enumerate() {
        let now = clock_now(&clock);
        match op {
            Op::Call {
                outcome,
                elapsed_ms,
            } => {
                let real = breaker.try_acquire();
                let expected = model.acquire(now);
                match (real, expected) {
                    (Ok(permit), Ok(ticket)) => {
                        let learned = threshold_ns(&breaker);
                        permit.record(outcome, Duration::from_millis(elapsed_ms));
                        model.record(ticket, outcome, elapsed_ms, now, learned);
                    }
                    (Err(e), Err(refused)) => {
                        prop_assert_eq!(refusal(&e), refused, "step {}", step)
                    }
                    (real, expected) => prop_assert!(
                        false,
                        "step {step}: breaker permitted {} but model {}",
                        real.is_ok(),
                        expected.is_ok()
                    ),
                }
            }
            Op::Hold => match (breaker.try_acquire(), model.acquire(now)) {
                (Ok(permit), Ok(ticket)) => held.push((permit, ticket)),
                (Err(e), Err(refused)) => prop_assert_eq!(refusal(&e), refused, "step {}", step),
                (real, expected) => prop_assert!(
                    false,
                    "step {step}: breaker permitted {} but model {}",
                    real.is_ok(),
                    expected.is_ok()
                ),
            },
            Op::Finish {
                index,
                outcome,
                elapsed_ms,
            } => {
                if !held.is_empty() {
                    let (permit, ticket) = held.swap_remove(index % held.len());
                    let learned = threshold_ns(&breaker);
                    permit.record(outcome, Duration::from_millis(elapsed_ms));
                    model.record(ticket, outcome, elapsed_ms, now, learned);
                }
            }
            Op::Drop { index } => {
                if !held.is_empty() {
                    let (permit, ticket) = held.swap_remove(index % held.len());
                    drop(permit);
                    model.drop_permit(ticket);
                }
            }
            Op::Advance { ms } => clock.advance(Duration::from_millis(ms)),
            Op::ReadState => {
                model.poll(now);
                let snapshot = breaker.snapshot();
                prop_assert_eq!(snapshot.state, model.state, "step {}", step);
                let in_window = matches!(model.state, State::Closed | State::MetricsOnly);
                if in_window {
                    let (calls, failures, slow) = model.live(now);
                    prop_assert_eq!(
                        (snapshot.calls, snapshot.failed_calls, snapshot.slow_calls),
                        (calls, failures, slow),
                        "step {}",
                        step
                    );
                }
            }
            Op::Manual(to) => {
                breaker.transition_to(to);
                model.go(to, now);
            }
            Op::Reset => {
                breaker.reset();
                model.go(State::Closed, now);
            }
        }
        prop_assert_eq!(
            &*seen.lock().unwrap(),
            &model.transitions,
            "transitions after step {}",
            step
        );
    }
    Ok(())
}

fn threshold_ns(breaker: &Breaker<ManualClock>) -> u64 {
    u64::try_from(breaker.slow_call_threshold().as_nanos()).unwrap()
}

fn clock_now(clock: &ManualClock) -> u64 {
    use stratum_breaker::Clock;
    clock.now_nanos()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn breaker_agrees_with_the_reference_model(
        spec in spec(),
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        check(spec, ops)?;
    }

    /// Adaptive configurations that surely learn a threshold first (a warm
    /// start of steady healthy calls), so that half-open periods judged
    /// against it or against the configured one come apart.
    #[test]
    fn adaptive_breaker_agrees_with_the_reference_model(
        spec in spec(),
        warm_ms in 0u64..40,
        warm_calls in 10usize..40,
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        let warm = Op::Call { outcome: Outcome::Success, elapsed_ms: warm_ms };
        let mut all = vec![warm; warm_calls];
        all.extend(ops);
        check(Spec { adaptive: true, ..spec }, all)?;
    }
}

/// A hand-written case the random search may take long to hit: probes that
/// never finish, then half-open's maximum wait, then fresh probes.
#[test]
fn half_open_never_gets_stuck_on_probes_that_never_finish() {
    let spec = Spec {
        count_window: Some(2),
        time_window_secs: 1,
        minimum_calls: 2,
        failure_threshold: 50.0,
        slow_threshold: 100.0,
        permitted: 2,
        wait: Wait::Constant { ms: 1_000 },
        jitter: 0.0,
        seed: 1,
        automatic: false,
        max_half_open_ms: 5_000,
        adaptive: false,
    };
    let ops = vec![
        Op::Call {
            outcome: Outcome::Failure,
            elapsed_ms: 1,
        },
        Op::Call {
            outcome: Outcome::Failure,
            elapsed_ms: 1,
        },
        Op::Advance { ms: 1_000 },
        Op::Hold,
        Op::Hold,
        Op::Call {
            outcome: Outcome::Success,
            elapsed_ms: 1,
        }, // refused: both slots held
        Op::Advance { ms: 5_000 },
        Op::Call {
            outcome: Outcome::Success,
            elapsed_ms: 1,
        }, // half-open timed out: open again
        Op::Advance { ms: 1_000 },
        Op::Call {
            outcome: Outcome::Success,
            elapsed_ms: 1,
        }, // a fresh probe
        Op::Finish {
            index: 0,
            outcome: Outcome::Success,
            elapsed_ms: 1,
        }, // stale: ignored
        Op::Call {
            outcome: Outcome::Success,
            elapsed_ms: 1,
        }, // second probe: closes
        Op::ReadState,
    ];
    check(spec, ops).unwrap();
}
