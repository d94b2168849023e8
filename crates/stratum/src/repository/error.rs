//! What a repository operation can fail with.

use std::time::Duration;

use crate::StoreError;

/// A failed repository operation.
///
/// ```
/// use stratum::{RepositoryError, StoreError};
///
/// let e = RepositoryError::Store(StoreError::Timeout { message: "5s".into() });
/// assert_eq!(e.kind(), "timeout");
/// assert!(e.is_unavailable());
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// The store refused or failed the operation.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The circuit breaker is open (or half-open with every probe taken):
    /// the database was not called.
    #[error("the database is not being called: circuit breaker {state}{}", retry_after.map(|d| format!("; retry after {d:?}")).unwrap_or_default())]
    NotPermitted {
        /// The breaker's state (`open`, `half_open`, `forced_open`).
        state: &'static str,
        /// How long until an open breaker lets probes through, when known.
        retry_after: Option<Duration>,
    },
    /// No admission slot freed up within the pool's acquire timeout: the
    /// database was not called.
    #[error("no admission slot within the pool's acquire timeout: {message}")]
    Overloaded {
        /// The pool's description.
        message: String,
    },
    /// A document broke its type's rules, or a stored document no longer
    /// decodes into its type.
    #[error("invalid document: {0}")]
    Invalid(#[from] stratum_models::ValidationError),
}

impl RepositoryError {
    /// A short, fixed name for the kind of error, fit for a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            RepositoryError::Store(e) => e.kind(),
            RepositoryError::NotPermitted { .. } => "not_permitted",
            RepositoryError::Overloaded { .. } => "overloaded",
            RepositoryError::Invalid(_) => "invalid_document",
        }
    }

    /// Whether the database could not be used (it failed, timed out, was
    /// not the primary, or the breaker or pool kept the call away from it),
    /// as opposed to a request the database answered with a refusal.
    pub fn is_unavailable(&self) -> bool {
        match self {
            RepositoryError::Store(e) => e.is_unavailable(),
            RepositoryError::NotPermitted { .. } | RepositoryError::Overloaded { .. } => true,
            RepositoryError::Invalid(_) => false,
        }
    }

    #[cfg(feature = "breaker")]
    pub(crate) fn not_permitted(refused: &stratum_breaker::NotPermitted) -> RepositoryError {
        RepositoryError::NotPermitted {
            state: refused.state().as_str(),
            retry_after: refused.retry_after(),
        }
    }
}
