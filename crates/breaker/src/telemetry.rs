//! Where events go: the `metrics` facade (handles registered once, when the
//! breaker is built, so a call pays no key construction), subscribers and
//! `tracing` for transitions.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::baseline::Change;
use crate::event::{Event, EventKind, Subscriber, TransitionReason};
use crate::window::Counts;
use crate::{Outcome, State};

pub(crate) const STATE: &str = "stratum_breaker_state";
pub(crate) const CALLS: &str = "stratum_breaker_calls_total";
pub(crate) const NOT_PERMITTED: &str = "stratum_breaker_not_permitted_total";
pub(crate) const FAILURE_RATIO: &str = "stratum_breaker_failure_ratio";
pub(crate) const SLOW_CALL_RATIO: &str = "stratum_breaker_slow_call_ratio";
pub(crate) const TRANSITIONS: &str = "stratum_breaker_transitions_total";
pub(crate) const SLOW_CALL_THRESHOLD: &str = "stratum_breaker_slow_call_threshold_seconds";
pub(crate) const DURATION: &str = "stratum_breaker_call_duration_seconds";

/// `outcome` label values of `stratum_breaker_calls_total`, by index.
const CALL_OUTCOMES: [&str; 6] = [
    "success",
    "failure",
    "slow_success",
    "slow_failure",
    "ignored",
    "not_permitted",
];
const NOT_PERMITTED_INDEX: usize = 5;
/// The states that refuse calls, for `stratum_breaker_not_permitted_total`.
const REFUSING: [State; 3] = [State::Open, State::HalfOpen, State::ForcedOpen];

pub(crate) struct Telemetry {
    name: Arc<str>,
    state: Gauge,
    failure_rate: Gauge,
    slow_call_rate: Gauge,
    slow_call_threshold: Gauge,
    calls: [Counter; 6],
    not_permitted: [Counter; 3],
    /// By outcome: success, failure, ignored.
    durations: [Histogram; 3],
    /// By `from.index() * 6 + to.index()`.
    transitions: Vec<Counter>,
    subscribers: Box<[Subscriber]>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("name", &self.name)
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Registers every handle with the recorder installed now (the `metrics`
    /// facade binds handles at registration: install the recorder first).
    pub(crate) fn new(name: Arc<str>, subscribers: Vec<Subscriber>) -> Self {
        describe();
        let label = name.to_string();
        let calls = CALL_OUTCOMES.map(
            |outcome| metrics::counter!(CALLS, "breaker" => label.clone(), "outcome" => outcome),
        );
        let not_permitted = REFUSING.map(|state| {
            metrics::counter!(NOT_PERMITTED, "breaker" => label.clone(), "state" => state.as_str())
        });
        let durations = [Outcome::Success, Outcome::Failure, Outcome::Ignored].map(|outcome| {
            metrics::histogram!(DURATION, "breaker" => label.clone(), "outcome" => outcome.as_str())
        });
        let transitions = State::ALL
            .iter()
            .flat_map(|from| State::ALL.iter().map(move |to| (*from, *to)))
            .map(|(from, to)| {
                metrics::counter!(
                    TRANSITIONS,
                    "breaker" => label.clone(),
                    "from" => from.as_str(),
                    "to" => to.as_str()
                )
            })
            .collect();
        let telemetry = Self {
            state: metrics::gauge!(STATE, "breaker" => label.clone()),
            failure_rate: metrics::gauge!(FAILURE_RATIO, "breaker" => label.clone()),
            slow_call_rate: metrics::gauge!(SLOW_CALL_RATIO, "breaker" => label.clone()),
            slow_call_threshold: metrics::gauge!(SLOW_CALL_THRESHOLD, "breaker" => label),
            name,
            calls,
            not_permitted,
            durations,
            transitions,
            subscribers: subscribers.into_boxed_slice(),
        };
        telemetry.failure_rate.set(f64::NAN);
        telemetry.slow_call_rate.set(f64::NAN);
        telemetry
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// A recorded call: the hot path, so nothing here allocates.
    #[inline]
    pub(crate) fn call(&self, outcome: Outcome, slow: bool, elapsed: Duration) {
        let (counter, histogram) = match (outcome, slow) {
            (Outcome::Success, false) => (0, 0),
            (Outcome::Failure, false) => (1, 1),
            (Outcome::Success, true) => (2, 0),
            (Outcome::Failure, true) => (3, 1),
            (Outcome::Ignored, _) => (4, 2),
        };
        if let Some(c) = self.calls.get(counter) {
            c.increment(1);
        }
        if let Some(h) = self.durations.get(histogram) {
            h.record(elapsed.as_secs_f64());
        }
        if !self.subscribers.is_empty() {
            self.emit(EventKind::Call {
                outcome,
                slow,
                elapsed,
            });
        }
    }

    pub(crate) fn not_permitted(&self, state: State, retry_after: Option<Duration>) {
        if let Some(c) = self.calls.get(NOT_PERMITTED_INDEX) {
            c.increment(1);
        }
        if let Some(c) = REFUSING
            .iter()
            .position(|s| *s == state)
            .and_then(|i| self.not_permitted.get(i))
        {
            c.increment(1);
        }
        self.emit(EventKind::NotPermitted { state, retry_after });
    }

    /// Sets the state gauge; called under the transition lock so
    /// concurrent transitions leave the gauge at the final state.
    pub(crate) fn state(&self, to: State) {
        self.state.set(to.gauge_value());
    }

    pub(crate) fn transition(&self, from: State, to: State, reason: TransitionReason) {
        if let Some(c) = self
            .transitions
            .get(from.index() * State::ALL.len() + to.index())
        {
            c.increment(1);
        }
        tracing::info!(
            breaker = %self.name,
            from = from.as_str(),
            to = to.as_str(),
            reason = reason.as_str(),
            "circuit breaker changed state"
        );
        self.emit(EventKind::Transition { from, to, reason });
    }

    /// Publishes the window's rates as 0..1 ratios (Prometheus's unit for
    /// a fraction); NaN, "no figure", while below the minimum of calls.
    pub(crate) fn rates(&self, counts: Counts, minimum_calls: u64) {
        let (failure, slow) = rates(counts, minimum_calls);
        let ratio = |percent: Option<f64>| percent.map_or(f64::NAN, |p| p / 100.0);
        self.failure_rate.set(ratio(failure));
        self.slow_call_rate.set(ratio(slow));
    }

    /// Publishes the slow-call threshold; logs a material change of the
    /// adaptive one.
    pub(crate) fn slow_call_threshold(&self, nanos: u64, change: Option<&Change>) {
        self.slow_call_threshold
            .set(Duration::from_nanos(nanos).as_secs_f64());
        if let Some(Change {
            nanos,
            material_from: Some(from),
            baseline,
        }) = change
        {
            tracing::info!(
                breaker = %self.name,
                from = ?Duration::from_nanos(*from),
                to = ?Duration::from_nanos(*nanos),
                baseline_p99 = ?Duration::from_nanos(*baseline as u64),
                "circuit breaker's adaptive slow-call threshold changed"
            );
        }
    }

    fn emit(&self, kind: EventKind) {
        if self.subscribers.is_empty() {
            return;
        }
        let event = Event {
            breaker: &self.name,
            kind,
        };
        for subscriber in self.subscribers.iter() {
            subscriber(&event);
        }
    }
}

/// Failure and slow-call rates in percent, `None` below the minimum of calls.
pub(crate) fn rates(counts: Counts, minimum_calls: u64) -> (Option<f64>, Option<f64>) {
    if counts.calls == 0 || counts.calls < minimum_calls {
        return (None, None);
    }
    let calls = counts.calls as f64;
    (
        Some(counts.failures as f64 * 100.0 / calls),
        Some(counts.slow as f64 * 100.0 / calls),
    )
}

fn describe() {
    metrics::describe_gauge!(
        STATE,
        "Breaker state: 0 closed, 1 open, 2 half-open, 3 disabled, 4 forced open, 5 metrics only"
    );
    metrics::describe_counter!(
        CALLS,
        "Calls by outcome: success, failure, slow_success, slow_failure, ignored, not_permitted"
    );
    metrics::describe_counter!(NOT_PERMITTED, "Calls refused, by the refusing state");
    metrics::describe_gauge!(
        FAILURE_RATIO,
        "Failed calls over calls in the closed-state window (0..1), NaN below the minimum number of calls"
    );
    metrics::describe_gauge!(
        SLOW_CALL_RATIO,
        "Slow calls over calls in the closed-state window (0..1), NaN below the minimum number of calls"
    );
    metrics::describe_gauge!(
        SLOW_CALL_THRESHOLD,
        Unit::Seconds,
        "The current slow-call threshold: fixed, or adaptive (a multiple of the healthy p99)"
    );
    metrics::describe_counter!(TRANSITIONS, "State transitions, by from and to state");
    metrics::describe_histogram!(
        DURATION,
        Unit::Seconds,
        "Duration of recorded calls, by outcome (success, failure, ignored)"
    );
}
