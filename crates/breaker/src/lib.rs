//! A circuit breaker that stops calling a failing or slow dependency, lets a
//! few probe calls test it after a wait, and closes again when they pass.
//!
//! It works at resilience4j's level (count- or time-based windows, failure
//! **and** slow-call rates, a fixed number of half-open probes, manual
//! control, events and metrics), fixes what users of those breakers still ask
//! for (half-open admits exactly the permitted probes under any concurrency
//! and can never get stuck, waits grow exponentially with jitter so a fleet
//! does not probe in lockstep), and costs a few atomic operations per call in
//! the closed state, with no lock.
//!
//! # Overview
//!
//! - [`CircuitBreaker`]: the one trait. [`try_acquire`](CircuitBreaker::try_acquire)
//!   answers "may this call go through?" with a [`Permit`]; the permit
//!   reports how the call went ([`Permit::record`]) or, when dropped, gives
//!   its slot back. Plain synchronous code: threads, any async runtime, or no
//!   runtime.
//! - [`Breaker`]: the production implementation, built with
//!   [`Breaker::builder`] or from a [`BreakerConfig`] (serde, validated:
//!   invalid values are refused with a [`ConfigError`] naming the field).
//!   [`Breaker::call`] wraps an async call: it times it with the breaker's
//!   clock and records the outcome; [`Breaker::call_with`] classifies it with
//!   a [`Classifier`] (record and ignore predicates on errors, a predicate on
//!   successful results).
//! - [`State`]: closed, open, half-open, and the manual disabled, forced
//!   open and metrics-only ([`Breaker::disable`], [`Breaker::force_open`],
//!   [`Breaker::metrics_only`], [`Breaker::reset`], [`Breaker::transition_to`]).
//! - [`Clock`]: time for every wait and duration, stratum-core's one clock
//!   trait; [`CoarseClock`] by default (1 ms resolution, a relaxed atomic
//!   load per reading), [`SystemClock`] for exact time, [`ManualClock`] in
//!   tests, which never sleep.
//! - [`Event`]: every call outcome, refused call and transition, handed to
//!   subscribers ([`BreakerBuilder::on_event`]) and reported through the
//!   `metrics` facade (the metric names are listed in `docs/breaker.md`).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use stratum_breaker::{Breaker, CallError, Classifier, ManualClock, State};
//!
//! #[derive(Debug)]
//! enum DbError { Timeout, DuplicateKey }
//!
//! let clock = ManualClock::new();
//! let breaker = Breaker::builder("mongodb")
//!     .count_based_window(10)
//!     .minimum_number_of_calls(5)
//!     .failure_rate_threshold(50.0)
//!     .slow_call_duration_threshold(Duration::from_millis(500))
//!     .wait_in_open(Duration::from_secs(30))
//!     .jitter(0.0)
//!     .permitted_calls_in_half_open(3)
//!     .clock(clock.clone())
//!     .build()?;
//!
//! // A duplicate key is the caller's problem, not the database's.
//! let classifier = Classifier::<u64, DbError>::new()
//!     .ignore_error(|e| matches!(e, DbError::DuplicateKey));
//!
//! futures::executor::block_on(async {
//!     for _ in 0..5 {
//!         let result = breaker.call_with(&classifier, async { Err::<u64, _>(DbError::Timeout) }).await;
//!         assert!(matches!(result, Err(CallError::Failed(DbError::Timeout))));
//!     }
//!     // Five failures out of five: the breaker is open and refuses at once.
//!     assert_eq!(breaker.state(), State::Open);
//!     let refused = breaker.call(async { Ok::<_, DbError>(1) }).await.unwrap_err();
//!     let CallError::NotPermitted(refused) = refused else { unreachable!() };
//!     assert_eq!(refused.retry_after(), Some(Duration::from_secs(30)));
//!
//!     // After the wait, three probes decide.
//!     clock.advance(Duration::from_secs(30));
//!     for _ in 0..3 {
//!         assert_eq!(breaker.call(async { Ok::<_, DbError>(1) }).await.unwrap(), 1);
//!     }
//!     assert_eq!(breaker.state(), State::Closed);
//! });
//!
//! // From synchronous code, without a runtime: take a permit, report how it went.
//! let permit = breaker.try_acquire()?;
//! permit.success(Duration::from_millis(12));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Implementation notes
//!
//! The state and an epoch share one atomic word; a permit remembers the word
//! it was issued under, so an outcome that arrives after a transition is not
//! counted against the new state. The count-based window is a ring of
//! one-byte atomic slots whose running totals (calls, failures, slow calls)
//! are packed into one atomic word; when a success evicts a success (a healthy
//! steady state), a call writes no shared word at all but the ring's head,
//! and each thread claims its ring positions in runs, so it writes the head
//! once per run rather than once per call. Half-open's
//! probes are counted in one more atomic word changed only by compare-and-swap,
//! so exactly the permitted number is admitted. The adaptive slow-call
//! threshold ([`AdaptiveSlowCall`], on by default) learns healthy calls into
//! per-thread shards of atomic histogram buckets with plain stores. A lock is
//! taken only to change state, once per round of the adaptive threshold,
//! and, in a time-based window, once per second to retire old buckets.
#![deny(missing_docs)]

mod baseline;
mod breaker;
mod builder;
mod clock;
mod config;
mod error;
mod event;
mod jitter;
mod outcome;
mod permit;
mod probes;
mod state;
mod telemetry;
mod window;

pub use breaker::{Breaker, Snapshot};
pub use builder::BreakerBuilder;
pub use clock::{Clock, CoarseClock, ManualClock, SystemClock};
pub use config::{
    AdaptiveSlowCall, BreakerConfig, MAX_COUNT_WINDOW, MAX_MIN_SAMPLES, MAX_NAME_LEN,
    MAX_PERMITTED_IN_HALF_OPEN, MAX_TIME_WINDOW, OpenWait, SlidingWindow,
};
pub use error::{CallError, ConfigError, NotPermitted};
pub use event::{Event, EventKind, Subscriber, TransitionReason};
pub use outcome::{Classifier, Outcome};
pub use permit::{CircuitBreaker, Permit, Ticket};
pub use state::State;

/// The names of the metrics this crate reports, for dashboards and tests.
/// Their types, units and labels are documented in `docs/breaker.md`.
pub mod metric_names {
    /// Gauge, label `breaker`: the state (0 closed, 1 open, 2 half-open,
    /// 3 disabled, 4 forced open, 5 metrics only).
    pub const STATE: &str = crate::telemetry::STATE;
    /// Counter, labels `breaker`, `outcome` (success, failure, slow_success,
    /// slow_failure, ignored, not_permitted).
    pub const CALLS: &str = crate::telemetry::CALLS;
    /// Counter, labels `breaker`, `state` (open, half_open, forced_open).
    pub const NOT_PERMITTED: &str = crate::telemetry::NOT_PERMITTED;
    /// Gauge (ratio 0..1), label `breaker`; NaN below the minimum number of
    /// calls.
    pub const FAILURE_RATIO: &str = crate::telemetry::FAILURE_RATIO;
    /// Gauge (ratio 0..1), label `breaker`; NaN below the minimum number of
    /// calls.
    pub const SLOW_CALL_RATIO: &str = crate::telemetry::SLOW_CALL_RATIO;
    /// Gauge (seconds), label `breaker`: the current slow-call threshold,
    /// fixed or adaptive.
    pub const SLOW_CALL_THRESHOLD: &str = crate::telemetry::SLOW_CALL_THRESHOLD;
    /// Counter, labels `breaker`, `from`, `to`.
    pub const TRANSITIONS: &str = crate::telemetry::TRANSITIONS;
    /// Histogram (seconds), labels `breaker`, `outcome` (success, failure,
    /// ignored).
    pub const CALL_DURATION: &str = crate::telemetry::DURATION;
}
