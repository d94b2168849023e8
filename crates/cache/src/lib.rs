//! A concurrent in-process cache with exact LRU and S3-FIFO eviction,
//! TTL / TTI / per-entry expiry, refresh-ahead, stale-if-error,
//! single-flight loads and built-in statistics.
//!
//! Stratum puts it in front of MongoDB, but it knows nothing of MongoDB: the
//! loader is yours, and the core needs no async runtime.
//!
//! # Overview
//!
//! - [`Cache`]: the small trait (`get`, `insert`, `insert_with_ttl`,
//!   `remove`, `invalidate_all`, `get_or_load`).
//! - [`ShardedCache`]: the production implementation, built by
//!   [`CacheBuilder`] from a serde [`CacheConfig`] (validated; a bad value is
//!   a [`ConfigError`] naming the field). Bounded by entry count or by weight
//!   ([`CacheBuilder::weigher`]); [`Policy::Lru`] (exact) or
//!   [`Policy::S3Fifo`] (scan resistant, the default).
//!   `get_or_load_async` is its async face.
//! - [`LoadingCache`] and [`AsyncLoader`] (feature `tokio`, on by default):
//!   a cache bound to its loader, for refresh-ahead and warm-up.
//! - [`CacheStats`] and [`RemovalCause`]: counters with
//!   [`CacheStats::hit_ratio`], the cause given to the eviction listener, and
//!   `publish_metrics` / `spawn_maintenance` to export them through the
//!   `metrics` facade (names in `docs/cache.md`).
//! - [`Predictor`], [`PrefetchConfig`] and [`ShardedCache::begin_prefetch`]:
//!   predictive pre-loading, an online model of which keys follow which,
//!   and prefetched entries that enter the probationary queue, counted
//!   apart (docs/prefetch.md).
//! - [`Clock`], [`CoarseClock`] (the default), [`SystemClock`],
//!   [`ManualClock`]: the injectable time source.
//!
//! # Example
//!
//! ```
//! use stratum_cache::{Cache, CacheBuilder, ManualClock, RemovalCause};
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let removed = Arc::new(Mutex::new(Vec::new()));
//! let log = Arc::clone(&removed);
//! let cache = CacheBuilder::new(1_000)
//!     .name("users")
//!     .time_to_live(Duration::from_secs(60))
//!     .max_stale(Duration::from_secs(30))
//!     .eviction_listener(move |k: &u32, _v: &String, cause| {
//!         log.lock().unwrap().push((*k, cause))
//!     })
//!     .clock(clock.clone())
//!     .build()
//!     .unwrap();
//!
//! // Single-flight load on a miss.
//! let v = cache.get_or_load(1, |id| Ok::<_, &str>(format!("user {id}"))).unwrap();
//! assert_eq!(v, "user 1");
//!
//! // Expired: no longer returned; the loader fails, so the stale value is
//! // served (within max_stale) and counted.
//! clock.advance(Duration::from_secs(61));
//! assert_eq!(cache.get(&1), None);
//! let v = cache.get_or_load(1, |_| Err("database down")).unwrap();
//! assert_eq!(v, "user 1");
//! assert_eq!(cache.stats().stale_serves, 1);
//!
//! // The listener is told why an entry left.
//! cache.insert(2, "user 2".into());
//! cache.remove(&2);
//! assert_eq!(removed.lock().unwrap().as_slice(), &[(2, RemovalCause::Explicit)]);
//! ```
//!
//! # Expiry reclamation
//!
//! An expired entry is never returned. It is reclaimed without any call from
//! you: every write examines a few slots of its shard and removes dead
//! entries; eviction prefers to report an expired victim as `Expired`; an
//! exact-LRU read removes a dead entry it finds. [`ShardedCache::spawn_maintenance`]
//! adds a periodic full sweep.
#![deny(missing_docs)]

mod adapt;
mod cache;
mod clock;
mod config;
mod error;
mod flight;
mod ghost;
#[cfg(feature = "tokio")]
mod loading;
#[cfg(feature = "tokio")]
mod maintenance;
mod predict;
mod shard;
mod sketch;
mod stats;

pub use cache::{Cache, ShardedCache};
pub use clock::{Clock, CoarseClock, ManualClock, SystemClock};
pub use config::{
    Admission, CacheBuilder, CacheConfig, EvictionListener, Policy, SmallQueue, Weigher,
};
pub use error::ConfigError;
#[cfg(feature = "tokio")]
pub use loading::{AsyncLoader, LoadingCache, WarmUpReport};
#[cfg(feature = "tokio")]
pub use maintenance::MaintenanceHandle;
pub use predict::{
    DRAIN_AT, GATE_EPOCH, GATE_SHARE, HALVE_AT, MAX_SUCCESSORS, MAX_WINDOW, Predictor, Prefetch,
    PrefetchConfig, ReadBuffer, STRIPE_CAPACITY,
};
pub use stats::{CacheStats, RemovalCause};
