//! The crate's errors: a refused call ([`NotPermitted`]), a guarded call that
//! was refused or failed ([`CallError`]), and invalid configuration
//! ([`ConfigError`], stratum-core's).

use std::sync::Arc;
use std::time::Duration;

use crate::State;

/// The breaker refused a call.
///
/// ```
/// use stratum_breaker::{Breaker, State};
///
/// let breaker = Breaker::builder("payments").build().unwrap();
/// breaker.force_open();
/// let refused = breaker.try_acquire().unwrap_err();
/// assert_eq!(refused.state(), State::ForcedOpen);
/// assert_eq!(refused.breaker(), "payments");
/// assert_eq!(refused.to_string(), "circuit breaker `payments` is forced_open: call not permitted");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("circuit breaker `{breaker}` is {state}: call not permitted{}", RetryAfter(*.retry_after))]
pub struct NotPermitted {
    breaker: Arc<str>,
    state: State,
    retry_after: Option<Duration>,
}

impl NotPermitted {
    pub(crate) fn new(breaker: Arc<str>, state: State, retry_after: Option<Duration>) -> Self {
        Self {
            breaker,
            state,
            retry_after,
        }
    }

    /// The configured name of the breaker that refused.
    pub fn breaker(&self) -> &str {
        &self.breaker
    }

    /// The state that refused: open, forced open, or half-open with every
    /// probe slot taken.
    pub fn state(&self) -> State {
        self.state
    }

    /// When the breaker is open: how long until it lets probes through.
    /// `None` when that is not known (forced open, half-open).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// Formats the optional "; retry after ..." suffix of [`NotPermitted`].
struct RetryAfter(Option<Duration>);

impl std::fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(d) => write!(f, "; retry after {d:?}"),
            None => Ok(()),
        }
    }
}

/// What a guarded call ([`Breaker::call`](crate::Breaker::call)) returns
/// instead of its value.
///
/// ```
/// use stratum_breaker::{Breaker, CallError};
///
/// let breaker = Breaker::builder("search").build().unwrap();
/// let failed = breaker.call_sync(|| Err::<(), _>("timed out"));
/// assert!(matches!(failed, Err(CallError::Failed("timed out"))));
/// breaker.force_open();
/// let refused = breaker.call_sync(|| Ok::<_, &str>(1));
/// assert!(matches!(refused, Err(CallError::NotPermitted(_))));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError<E> {
    /// The breaker refused the call; it never ran.
    #[error(transparent)]
    NotPermitted(NotPermitted),
    /// The call ran and returned this error (however it was classified).
    #[error("{0}")]
    Failed(E),
}

impl<E> CallError<E> {
    /// The call's own error, if it ran.
    pub fn into_failed(self) -> Option<E> {
        match self {
            CallError::Failed(e) => Some(e),
            CallError::NotPermitted(_) => None,
        }
    }
}

/// A configuration value the breaker refuses: the workspace's one shape,
/// naming the field (as spelled in [`BreakerConfig`](crate::BreakerConfig),
/// a nested one as `wait_in_open.initial`) and why.
///
/// ```
/// use stratum_breaker::Breaker;
///
/// let err = Breaker::builder("orders")
///     .failure_rate_threshold(150.0)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "failure_rate_threshold");
/// assert_eq!(err.to_string(), "invalid `failure_rate_threshold`: must be in (0, 100], got 150");
/// ```
pub use stratum_core::ConfigError;
