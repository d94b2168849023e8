//! What a store operation can fail with, and which failures the breaker counts.

/// A failed store operation.
///
/// [`is_breaker_failure`](StoreError::is_breaker_failure) tells the circuit
/// breaker whether the failure says something about the database's health
/// (a timeout, a network error) or only about the request (a duplicate key,
/// an invalid filter, a node that answered "I am not the primary", a user
/// the server does not authorize).
/// [`is_unavailable`](StoreError::is_unavailable) tells a caller whether the
/// database did not serve the request now (and a write's outcome may be
/// unknown), whatever the breaker makes of it.
///
/// ```
/// use stratum_store::StoreError;
///
/// let dup = StoreError::DuplicateKey { collection: "users".into(), message: "email".into() };
/// assert!(!dup.is_breaker_failure());
/// let timeout = StoreError::Timeout { message: "after 5s".into() };
/// assert!(timeout.is_breaker_failure());
/// // A step-down: the node answers, quickly, that it takes no writes now.
/// let stepped_down = StoreError::NotPrimary { code: 10107, message: "not primary".into() };
/// assert!(!stepped_down.is_breaker_failure());
/// assert!(stepped_down.is_unavailable() && stepped_down.is_retryable());
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
    /// host is unreachable), or the server is shutting down (91
    /// ShutdownInProgress, 11600 InterruptedAtShutdown) or neither primary
    /// nor secondary (13436): it will not answer reads either.
    #[error("database unavailable: {message}")]
    Unavailable {
        /// The driver's description, credentials masked.
        message: String,
    },
    /// The node answered that it is not (or no longer) the primary: a
    /// step-down or an election is under way (10107 NotWritablePrimary,
    /// 13435 NotPrimaryNoSecondaryOk, 189 PrimarySteppedDown, 11602
    /// InterruptedDueToReplStateChange). Retryable: a primary is usually
    /// back within seconds. Not a breaker failure: the server is reachable
    /// and answered promptly, and it may still serve reads. A write that
    /// failed so may still have been applied when the driver's retry
    /// followed a first attempt whose answer was lost.
    #[error("not the primary (error {code}): {message}")]
    NotPrimary {
        /// The server's error code.
        code: i32,
        /// The server's description, credentials masked.
        message: String,
    },
    /// The server refused the operation to this user (13 Unauthorized): a
    /// role without the privilege, one revoked meanwhile. Not retryable (the
    /// same request fails the same way until someone changes the roles),
    /// not a breaker failure (the server is reachable and answered promptly;
    /// counting a lost write privilege would open the breaker and refuse the
    /// reads the user may still make), and not an unknown outcome: the
    /// server did not apply the write.
    #[error("not authorized (error {code}): {message}")]
    NotAuthorized {
        /// The server's error code.
        code: i32,
        /// The server's description, credentials masked.
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
    /// Nor does [`NotPrimary`](StoreError::NotPrimary): the breaker guards
    /// against a database that does not answer or answers slowly, and a
    /// node that promptly says "I am not the primary" does neither; counting
    /// a step-down's failed writes would open the breaker and refuse the
    /// reads the node still serves.
    pub fn is_breaker_failure(&self) -> bool {
        match self {
            StoreError::Timeout { .. }
            | StoreError::Unavailable { .. }
            | StoreError::Network { .. }
            | StoreError::Backend { .. } => true,
            StoreError::NotFound { .. }
            | StoreError::DuplicateKey { .. }
            | StoreError::InvalidField { .. }
            | StoreError::Validation { .. }
            | StoreError::NotPrimary { .. }
            | StoreError::NotAuthorized { .. } => false,
        }
    }

    /// Whether the database did not serve the request now, for a reason of
    /// its own rather than the request's: every breaker failure, and
    /// [`NotPrimary`](StoreError::NotPrimary). A write that failed so may or
    /// may not have been applied (a timeout, a lost answer before the
    /// driver's retry); a read may be answered from a stale copy.
    pub fn is_unavailable(&self) -> bool {
        self.is_breaker_failure() || matches!(self, StoreError::NotPrimary { .. })
    }

    /// Whether the same request may succeed when tried again later, without
    /// any change: a timeout, an unreachable or restarting server, a lost
    /// connection, a node that is not the primary now. (Retrying a write
    /// whose outcome is unknown may apply it twice unless it is idempotent.)
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Timeout { .. }
                | StoreError::Unavailable { .. }
                | StoreError::Network { .. }
                | StoreError::NotPrimary { .. }
        )
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
            StoreError::NotPrimary { .. } => "not_primary",
            StoreError::NotAuthorized { .. } => "not_authorized",
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
            StoreError::NotPrimary {
                code: 10107,
                message: String::new(),
            },
            StoreError::NotAuthorized {
                code: 13,
                message: String::new(),
            },
        ];
        assert!(counted.iter().all(StoreError::is_breaker_failure));
        assert!(!ignored.iter().any(StoreError::is_breaker_failure));
        // The database did not serve these: every breaker failure, and a
        // node that is not the primary; the others are the request's own.
        // A refusal to the user is an answer: not applied, not unknown.
        let (requests, rest) = ignored.split_at(4);
        let (not_primary, not_authorized) = rest.split_at(1);
        assert!(counted.iter().all(StoreError::is_unavailable));
        assert!(not_primary.iter().all(StoreError::is_unavailable));
        assert!(!requests.iter().any(StoreError::is_unavailable));
        assert!(!not_authorized.iter().any(StoreError::is_unavailable));
        let retryable: Vec<&str> = counted
            .iter()
            .chain(&ignored)
            .filter(|e| e.is_retryable())
            .map(StoreError::kind)
            .collect();
        assert_eq!(
            retryable,
            ["timeout", "unavailable", "network", "not_primary"]
        );
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
