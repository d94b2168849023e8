//! The breaker's states, and how the current one is packed into one atomic
//! word together with an epoch that changes on every transition.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where the breaker stands.
///
/// The first three are driven by the outcomes of calls; the last three are
/// set by hand and stay until another manual transition or a reset.
///
/// ```
/// use stratum_breaker::State;
///
/// assert!(State::Closed.permits_calls());
/// assert!(!State::ForcedOpen.permits_calls());
/// assert_eq!(State::HalfOpen.as_str(), "half_open");
/// assert_eq!(State::HalfOpen.gauge_value(), 2.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Calls go through and their outcomes fill the sliding window; the
    /// breaker opens when a rate reaches its threshold.
    Closed,
    /// Calls are refused until the wait in the open state has passed.
    Open,
    /// A fixed number of probe calls go through; their failure and slow-call
    /// rates decide between closed and open.
    HalfOpen,
    /// Set by hand: every call goes through and nothing is recorded.
    Disabled,
    /// Set by hand: every call is refused.
    ForcedOpen,
    /// Set by hand: every call goes through, outcomes are recorded and
    /// reported, but the breaker never trips.
    MetricsOnly,
}

impl State {
    /// Every state, in gauge order.
    pub const ALL: [State; 6] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::Disabled,
        State::ForcedOpen,
        State::MetricsOnly,
    ];

    /// The state's name as used in metric labels and logs (`half_open`...).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::Disabled => "disabled",
            State::ForcedOpen => "forced_open",
            State::MetricsOnly => "metrics_only",
        }
    }

    /// The value of the `stratum_breaker_state` gauge: closed 0, open 1,
    /// half-open 2, disabled 3, forced open 4, metrics only 5.
    pub fn gauge_value(self) -> f64 {
        f64::from(self.code())
    }

    /// Whether a call may go through in this state at all (half-open admits
    /// only its probes).
    pub fn permits_calls(self) -> bool {
        !matches!(self, State::Open | State::ForcedOpen)
    }

    /// 0..=5, in [`State::ALL`] order.
    pub(crate) fn index(self) -> usize {
        usize::from(self.code())
    }

    const fn code(self) -> u8 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::Disabled => 3,
            State::ForcedOpen => 4,
            State::MetricsOnly => 5,
        }
    }

    fn from_code(code: u64) -> State {
        match code {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::Disabled,
            4 => State::ForcedOpen,
            // Only `pack` writes the word and it writes codes 0..=5.
            _ => State::MetricsOnly,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bits of the state word that hold the state; the rest is the epoch.
const STATE_BITS: u32 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

/// The packed state word: `epoch << 3 | state`.
///
/// The epoch grows by one on every transition, so a permit taken in one
/// state can tell, when its call finishes, whether the breaker has moved on
/// since (and then its outcome belongs to no current window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

impl Word {
    pub(crate) fn new(epoch: u64, state: State) -> Word {
        Word((epoch << STATE_BITS) | u64::from(state.code()))
    }

    pub(crate) fn state(self) -> State {
        State::from_code(self.0 & STATE_MASK)
    }

    pub(crate) fn epoch(self) -> u64 {
        self.0 >> STATE_BITS
    }

    /// The word for the next epoch, in state `to`. Wraps after 2^61
    /// transitions, which no breaker lives to see.
    pub(crate) fn next(self, to: State) -> Word {
        Word::new(self.epoch().wrapping_add(1) & (u64::MAX >> STATE_BITS), to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_round_trips_every_state() {
        for (i, s) in State::ALL.into_iter().enumerate() {
            let w = Word::new(12345 + i as u64, s);
            assert_eq!(w.state(), s);
            assert_eq!(w.epoch(), 12345 + i as u64);
            assert_eq!(w.next(State::Open).epoch(), 12346 + i as u64);
            assert_eq!(w.next(State::Open).state(), State::Open);
        }
    }

    #[test]
    fn gauge_values_are_distinct_and_documented() {
        let values: Vec<f64> = State::ALL.iter().map(|s| s.gauge_value()).collect();
        assert_eq!(values, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }
}
