//! Typed errors.

/// A configuration value that cannot be used, naming the field and why.
///
/// ```
/// use stratum_cache::CacheBuilder;
///
/// let err = CacheBuilder::<u32, u32>::new(0).build().unwrap_err();
/// assert_eq!(err.field, "max_capacity");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cache configuration: `{field}` {reason}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The configuration field at fault.
    pub field: &'static str,
    /// Why the value was rejected.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}
