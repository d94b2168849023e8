//! The guides as doc tests: every page of `docs/` and the README is a module
//! here, so `cargo test -p stratum-doctests --doc` compiles (and, unless the
//! block says `no_run`, runs) every Rust code block exactly as a reader sees
//! it. `tests/pages.rs` fails when a page is missing from this list and
//! parses every configuration block.
//!
//! A fenced block with no language is Rust to rustdoc: the pages mark output
//! and diagrams `text`. A block that needs a server says `no_run` and why.
#![deny(missing_docs)]

/// `README.md`.
#[doc = include_str!("../../../README.md")]
pub mod readme {}

/// `docs/architecture.md`.
#[doc = include_str!("../../../docs/architecture.md")]
pub mod architecture {}

/// `docs/benchmarks.md`.
#[doc = include_str!("../../../docs/benchmarks.md")]
pub mod benchmarks {}

/// `docs/breaker.md`.
#[doc = include_str!("../../../docs/breaker.md")]
pub mod breaker {}

/// `docs/cache.md`.
#[doc = include_str!("../../../docs/cache.md")]
pub mod cache {}

/// `docs/cache-tuning.md`.
#[doc = include_str!("../../../docs/cache-tuning.md")]
pub mod cache_tuning {}

/// `docs/cli.md`.
#[doc = include_str!("../../../docs/cli.md")]
pub mod cli {}

/// `docs/configuration.md`.
#[doc = include_str!("../../../docs/configuration.md")]
pub mod configuration {}

/// `docs/metrics.md`.
#[doc = include_str!("../../../docs/metrics.md")]
pub mod metrics {}

/// `docs/models.md`.
#[doc = include_str!("../../../docs/models.md")]
pub mod models {}

/// `docs/monitor.md`.
#[doc = include_str!("../../../docs/monitor.md")]
pub mod monitor {}

/// `docs/pool.md`.
#[doc = include_str!("../../../docs/pool.md")]
pub mod pool {}

/// `docs/prefetch.md`.
#[doc = include_str!("../../../docs/prefetch.md")]
pub mod prefetch {}

/// `docs/reliability.md`.
#[doc = include_str!("../../../docs/reliability.md")]
pub mod reliability {}

/// `docs/semantic.md`.
#[doc = include_str!("../../../docs/semantic.md")]
pub mod semantic {}

/// `docs/store.md`.
#[doc = include_str!("../../../docs/store.md")]
pub mod store {}

/// `docs/stratum.md`.
#[doc = include_str!("../../../docs/stratum.md")]
pub mod stratum {}

/// `docs/trends.md`.
#[doc = include_str!("../../../docs/trends.md")]
pub mod trends {}
