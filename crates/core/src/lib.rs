//! Stratum's shared foundation: the few things every layer must agree on, and
//! nothing else.
//!
//! This is the one written exception to the dependency rule (layers never
//! depend on each other): every layer may depend on this crate, as ripgrep's
//! crates all depend on its matcher crate. It knows no layer, no database and
//! no async runtime.
//!
//! # Brief overview
//!
//! - [`Clock`] and its three clocks ([`clock`]): the one time source of every
//!   layer, nanoseconds since one process-wide origin. [`CoarseClock`] (the
//!   layers' default: one 1 ms ticker thread per process, a relaxed atomic
//!   load per reading), [`SystemClock`] (exact, `Instant`), [`ManualClock`]
//!   (tests move it by hand).
//! - [`ConfigError`]: one shape for a refused configuration across the
//!   crates, the field's dotted name and a [`ConfigErrorKind`].
//! - [`IndexSpec`]: an index as a document type declares it and a store
//!   creates it (name, keys, uniqueness, TTL).
//! - [`optional_duration`]: the one serde spelling of an optional duration
//!   (`"30s"`, or `"off"` for none), so a file can switch any of them off.
//! - [`metrics::OperationMetrics`]: per-operation metric handles, registered
//!   once, for the store and the repository.
//!
//! ```
//! use stratum_core::{ConfigError, ConfigErrorKind};
//!
//! let err = ConfigError::invalid("cache.ttl", "must be at least 1ms");
//! assert_eq!(err.field(), "cache.ttl");
//! assert!(matches!(err.kind(), ConfigErrorKind::Invalid { .. }));
//! assert_eq!(err.to_string(), "invalid `cache.ttl`: must be at least 1ms");
//! ```
#![deny(missing_docs)]

pub mod clock;
mod config_error;
mod index;
pub mod metrics;
pub mod optional_duration;

pub use crate::clock::{Clock, CoarseClock, ManualClock, SharedClock, SystemClock};
pub use crate::config_error::{ConfigError, ConfigErrorKind, Location};
pub use crate::index::{IndexDirection, IndexSpec};
