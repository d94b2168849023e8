//! What a breaker tells its subscribers: every call outcome, every refused
//! call and every state transition.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Outcome, State};

/// Something that happened to a breaker, as handed to subscribers
/// registered with [`BreakerBuilder::on_event`](crate::BreakerBuilder::on_event).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use stratum_breaker::{Breaker, EventKind, State};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let breaker = Breaker::builder("inventory")
///     .on_event(move |event| {
///         if let EventKind::Transition { from, to, .. } = event.kind {
///             sink.lock().unwrap().push((event.breaker.to_owned(), from, to));
///         }
///     })
///     .build()
///     .unwrap();
/// breaker.force_open();
/// assert_eq!(*seen.lock().unwrap(), vec![("inventory".to_owned(), State::Closed, State::ForcedOpen)]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Event<'a> {
    /// The configured name of the breaker.
    pub breaker: &'a str,
    /// What happened.
    pub kind: EventKind,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// A permitted call finished and was recorded (calls in the disabled
    /// state are not).
    Call {
        /// How it counted.
        outcome: Outcome,
        /// Whether it took longer than the slow-call threshold.
        slow: bool,
        /// How long it took.
        elapsed: Duration,
    },
    /// A call was refused.
    NotPermitted {
        /// The state that refused it.
        state: State,
        /// How long until an open breaker probes, when known.
        retry_after: Option<Duration>,
    },
    /// The breaker changed state.
    Transition {
        /// The state it left.
        from: State,
        /// The state it entered.
        to: State,
        /// Why.
        reason: TransitionReason,
    },
}

/// Why a breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The failure rate reached its threshold (closed or half-open to open).
    FailureRate,
    /// The slow-call rate reached its threshold (closed or half-open to open).
    SlowCallRate,
    /// The wait in the open state is over (open to half-open).
    WaitElapsed,
    /// Every probe finished and both rates stayed below their thresholds
    /// (half-open to closed).
    ProbesPassed,
    /// Half-open reached its maximum wait without a decision (to open).
    HalfOpenTimeout,
    /// A manual transition ([`Breaker::transition_to`](crate::Breaker::transition_to)
    /// and friends).
    Manual,
    /// [`Breaker::reset`](crate::Breaker::reset).
    Reset,
}

impl TransitionReason {
    /// The reason's name as used in logs (`failure_rate`...).
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionReason::FailureRate => "failure_rate",
            TransitionReason::SlowCallRate => "slow_call_rate",
            TransitionReason::WaitElapsed => "wait_elapsed",
            TransitionReason::ProbesPassed => "probes_passed",
            TransitionReason::HalfOpenTimeout => "half_open_timeout",
            TransitionReason::Manual => "manual",
            TransitionReason::Reset => "reset",
        }
    }
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subscriber: called synchronously, on the thread where the event
/// happened, so it should be quick (hand heavy work to a channel).
pub type Subscriber = Arc<dyn Fn(&Event<'_>) + Send + Sync>;
