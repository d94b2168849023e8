//! # stratum-pool
//!
//! A bounded, adaptive, health-checked pool on [`deadpool`], at HikariCP's
//! level, and (with the `mongodb` feature) admission slots for MongoDB
//! operations with the driver's own connection pool made visible.
//!
//! deadpool alone waits forever by default and has no idle timeout, maximum
//! lifetime or leak detection. This crate adds them and is faster than
//! deadpool used directly: a lease that comes back while nobody waits parks
//! its object on a stack the next `get` pops (a lock and a pop, no trip
//! through deadpool's semaphore and slot queue), a waiting caller is handed
//! the next object that comes back, and timing reads a coarse clock (an
//! atomic load, see [`CoarseClock`]). deadpool still creates objects, runs
//! the health check outside the skip window and holds the idle ones that
//! maintenance reaps.
//!
//! ## Brief overview
//!
//! - [`Pool`]: the one small trait: `get` a lease (waiting at most the
//!   configured timeout), `status`, `resize`.
//! - [`Manager`]: how to create a resource and (optionally) check one.
//! - [`ManagedPool`]: the production implementation for any [`Manager`]:
//!   - an acquire timeout by default (30 s, never unbounded), plus create
//!     and recycle (health-check) timeouts;
//!   - `min_size` objects kept warm by a background task;
//!   - idle timeout and maximum lifetime, each with per-object jitter, never
//!     reaping idle objects below `min_size`;
//!   - the health check on checkout skipped for an object returned less than
//!     `validation_skip_window` ago;
//!   - leak detection: a lease held past the threshold is logged with the
//!     file and line that took it (`#[track_caller]`) and counted;
//!   - FIFO fairness among waiters (they queue in the pool, and a returning
//!     lease hands its object straight to the oldest; without the background
//!     task, deadpool's tokio semaphore queues them; tests check both),
//!     [`ManagedPool::close`] and [`ManagedPool::drain`];
//!   - adaptive sizing between `min_size` and `max_size` (defaults 10 and 200),
//!     decided by the pure rule in [`adaptive`] on an injectable [`Clock`].
//! - [`ConcurrencyLimit`]: an adaptive concurrency limit to put in front of
//!   the pool: the limit follows the latency of completed calls (the rule
//!   in [`gradient`]) between `limit.min` and `max_size`, and a caller that
//!   will not be served in time fails [`Overloaded`] within milliseconds.
//! - [`PoolConfig`]: plain data, serde with humantime durations, validated
//!   with a [`ConfigError`] naming the field.
//! - [`Status`] and [`PoolStats`]: accounting now and event totals; the same
//!   figures go to the `metrics` facade under the names in [`metrics`].
#![cfg_attr(
    feature = "mongodb",
    doc = "- [`MongoPool`]: admission slots for MongoDB operations; the driver's \
    pool is configured from the same settings and its CMAP events show up in \
    [`Status::connections`]."
)]
//!
//! ## Example
//!
//! ```
//! use std::time::Duration;
//! use stratum_pool::{ManagedPool, Manager, Pool, PoolError};
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("backend unavailable")]
//! struct Unavailable;
//!
//! /// Stands in for a database connection.
//! struct Connection { healthy: bool }
//!
//! struct Connector;
//!
//! impl Manager for Connector {
//!     type Resource = Connection;
//!     type Error = Unavailable;
//!
//!     async fn create(&self) -> Result<Connection, Unavailable> {
//!         Ok(Connection { healthy: true })
//!     }
//!
//!     async fn check(&self, conn: &mut Connection) -> Result<(), Unavailable> {
//!         if conn.healthy { Ok(()) } else { Err(Unavailable) }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let pool = ManagedPool::builder(Connector)
//!     .name("example")
//!     .min_size(2)
//!     .max_size(16)
//!     .acquire_timeout(Duration::from_secs(2))
//!     .build()
//!     .expect("a valid configuration");
//!
//! {
//!     let conn = pool.get().await.expect("a connection");
//!     assert!(conn.healthy);
//! } // back in the pool here
//!
//! let status = pool.status();
//! assert!(status.size >= 1 && status.size <= 16);
//! assert_eq!(status.in_use, 0);
//!
//! assert!(pool.drain(Duration::from_secs(1)).await);
//! assert!(matches!(pool.get().await, Err(PoolError::Closed)));
//! # }
//! ```
//!
//! ## Cargo features
//!
//! - `mongodb` (off by default): [`MongoPool`](crate::MongoPool) and the CMAP
//!   listener. Off so that a user of the generic pool does not compile a
//!   database driver; the facade crate turns it on.
#![deny(missing_docs)]

pub mod adaptive;
mod clock;
mod config;
mod error;
pub mod gradient;
mod limit;
mod managed;
mod manager;
pub mod metrics;
#[cfg(feature = "mongodb")]
mod mongo;
mod pool;
mod queue;
mod status;

pub use clock::{Clock, CoarseClock, ManualClock, SystemClock};
pub use config::{AdaptiveConfig, LimitConfig, PoolConfig};
pub use error::{BuildError, ConfigError, PoolError, TimeoutKind};
pub use limit::{ConcurrencyLimit, LimitPermit, LimitStatus, Overloaded, Rejection};
pub use managed::{Builder, Lease, ManagedPool, jitter_fraction};
pub use manager::Manager;
pub use metrics::RetireCause;
#[cfg(feature = "mongodb")]
pub use mongo::{ConnectionEvents, MongoConfig, MongoLease, MongoPool, MongoSlots};
pub use pool::Pool;
pub use status::{ConnectionStatus, PoolStats, Status};
