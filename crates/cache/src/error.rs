//! Typed errors: a refused configuration is the workspace's one shape.

/// A configuration value that cannot be used, naming the field (as spelled
/// in [`CacheConfig`](crate::CacheConfig)) and why: stratum-core's shape,
/// shared by every layer.
///
/// ```
/// use stratum_cache::CacheBuilder;
///
/// let err = CacheBuilder::<u32, u32>::new(0).build().unwrap_err();
/// assert_eq!(err.field(), "max_capacity");
/// assert_eq!(err.to_string(), "invalid `max_capacity`: must be at least 1");
/// ```
pub use stratum_core::ConfigError;
