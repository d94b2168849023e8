//! What a store operation can fail with, and which failures the breaker counts.

/// A failed store operation.
///
/// [`is_breaker_failure`](StoreError::is_breaker_failure) tells the circuit
/// breaker whether the failure says something about the database's health
/// (a timeout, a network error) or only about the request (a duplicate key,
/// an invalid filter).
///
/// ```
/// use stratum_store::StoreError;
///
/// let dup = StoreError::DuplicateKey { collection: "users".into(), message: "email".into() };
/// assert!(!dup.is_breaker_failure());
/// let timeout = StoreError::Timeout { message: "after 5s".into() };
/// assert!(timeout.is_breaker_failure());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No document has the id the operation named.
    #[error("no document with that id in `{collection}`")]
    NotFound {
        /// The collection searched.
        collection: String,
    },
    /// The write would give two documents the same value of a unique index
    /// (`_id` included).
    #[error("duplicate key in `{collection}`: {message}")]
    DuplicateKey {
        /// The collection written.
        collection: String,
        /// The store's description of the conflict.
        message: String,
    },
    /// A field name that could be read as a query operator or a path: it
    /// starts with `$`, contains `.` or NUL, or is empty.
    #[error("invalid field name {field:?}: {reason}")]
    InvalidField {
        /// The refused name (at most 64 characters of it).
        field: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The request is malformed or the document breaks a rule: too large, an
    /// unsupported value in a filter, an update that cannot apply.
    #[error("invalid request: {reason}")]
    Validation {
        /// What is wrong.
        reason: String,
    },
    /// The operation did not finish within its deadline. For a write the
    /// outcome is unknown: it may or may not have been applied.
    #[error("timed out: {message}")]
    Timeout {
        /// What timed out.
        message: String,
    },
    /// No suitable server could be reached (server selection failed, the
    /// server is shutting down or stepping down).
    #[error("database unavailable: {message}")]
    Unavailable {
        /// The driver's description, credentials masked.
        message: String,
    },
    /// The connection failed mid-operation.
    #[error("network error: {message}")]
    Network {
        /// The driver's description, credentials masked.
        message: String,
    },
    /// Any other failure reported by the database or the driver.
    #[error("database error{}: {message}", code.map(|c| format!(" {c}")).unwrap_or_default())]
    Backend {
        /// The server's error code, when there is one.
        code: Option<i32>,
        /// The description, credentials masked.
        message: String,
    },
}

impl StoreError {
    /// Whether a circuit breaker should count this as a failure of the
    /// database: timeouts, unavailability, network and unclassified backend
    /// errors do; a missing document, a duplicate key and invalid requests
    /// are the caller's outcome, not the database's health, and do not.
    pub fn is_breaker_failure(&self) -> bool {
        match self {
            StoreError::Timeout { .. }
            | StoreError::Unavailable { .. }
            | StoreError::Network { .. }
            | StoreError::Backend { .. } => true,
            StoreError::NotFound { .. }
            | StoreError::DuplicateKey { .. }
            | StoreError::InvalidField { .. }
            | StoreError::Validation { .. } => false,
        }
    }

    /// A short, fixed name for the kind of error, fit for a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "not_found",
            StoreError::DuplicateKey { .. } => "duplicate_key",
            StoreError::InvalidField { .. } => "invalid_field",
            StoreError::Validation { .. } => "validation",
            StoreError::Timeout { .. } => "timeout",
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::Network { .. } => "network",
            StoreError::Backend { .. } => "backend",
        }
    }

    pub(crate) fn validation(reason: impl Into<String>) -> StoreError {
        StoreError::Validation {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_field(field: &str, reason: &'static str) -> StoreError {
        StoreError::InvalidField {
            field: field.chars().take(64).collect(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_classification() {
        let counted = [
            StoreError::Timeout {
                message: String::new(),
            },
            StoreError::Unavailable {
                message: String::new(),
            },
            StoreError::Network {
                message: String::new(),
            },
            StoreError::Backend {
                code: Some(1),
                message: String::new(),
            },
        ];
        let ignored = [
            StoreError::NotFound {
                collection: "c".into(),
            },
            StoreError::DuplicateKey {
                collection: "c".into(),
                message: String::new(),
            },
            StoreError::invalid_field("$x", "starts with `$`"),
            StoreError::validation("too large"),
        ];
        assert!(counted.iter().all(StoreError::is_breaker_failure));
        assert!(!ignored.iter().any(StoreError::is_breaker_failure));
    }

    #[test]
    fn invalid_field_names_are_truncated() {
        let long = "x".repeat(1000);
        let StoreError::InvalidField { field, .. } = StoreError::invalid_field(&long, "r") else {
            unreachable!()
        };
        assert_eq!(field.len(), 64);
    }
}
