//! Typed errors: what `get` can fail with, and what a bad configuration is.

use thiserror::Error;

/// A configuration value that cannot work, naming the field (as spelled in
/// [`crate::PoolConfig`], nested ones dotted) and the reason: stratum-core's
/// shape, shared by every layer.
///
/// ```
/// use stratum_pool::PoolConfig;
///
/// let err = PoolConfig { max_size: 0, min_size: 0, ..PoolConfig::default() }
///     .validate()
///     .unwrap_err();
/// assert_eq!(err.field(), "max_size");
/// assert_eq!(err.to_string(), "invalid `max_size`: must be greater than zero");
/// ```
pub use stratum_core::ConfigError;

/// Why a pool could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Background maintenance was asked for outside a tokio runtime.
    #[error(
        "the pool's background task needs a tokio runtime: build it inside one, or turn background maintenance off"
    )]
    NoRuntime,
    /// The MongoDB driver refused its client options.
    #[cfg(feature = "mongodb")]
    #[error("the MongoDB driver refused the client options: {0}")]
    Driver(#[source] mongodb::error::Error),
}

/// Which step of `get` ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Waiting for a free slot (the acquire timeout).
    Wait,
    /// Creating a new object.
    Create,
    /// The health check on checkout.
    Recycle,
}

/// Why `get` failed. `E` is the backend's error (the manager's).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PoolError<E> {
    /// A step of `get` exceeded its timeout.
    #[error("timed out getting a pooled object ({0:?} step)")]
    Timeout(TimeoutKind),
    /// The backend failed to create an object.
    #[error("the backend failed to create an object: {0}")]
    Backend(#[source] E),
    /// The pool has been closed.
    #[error("the pool is closed")]
    Closed,
}

impl<E> PoolError<E> {
    /// Whether this is a timeout of any step.
    pub fn is_timeout(&self) -> bool {
        matches!(self, PoolError::Timeout(_))
    }

    pub(crate) fn from_deadpool(err: deadpool::managed::PoolError<E>) -> PoolError<E> {
        use deadpool::managed::{PoolError as Dp, TimeoutType};
        match err {
            Dp::Timeout(TimeoutType::Wait) => PoolError::Timeout(TimeoutKind::Wait),
            Dp::Timeout(TimeoutType::Create) => PoolError::Timeout(TimeoutKind::Create),
            Dp::Timeout(TimeoutType::Recycle) => PoolError::Timeout(TimeoutKind::Recycle),
            Dp::Backend(e) => PoolError::Backend(e),
            // No hooks are installed and the runtime is always set, so these
            // two cannot occur; mapping them to Closed keeps `get` total.
            Dp::Closed | Dp::NoRuntimeSpecified | Dp::PostCreateHook(_) => PoolError::Closed,
        }
    }
}
