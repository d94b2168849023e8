//! Stratum: one configuration and one handle for an LLM application's data,
//! over MongoDB or an embedded in-memory store.
//!
//! This crate is the part of Stratum a user touches. It holds the wiring and no
//! logic that belongs in a layer: the layers (circuit breaker, pool, cache,
//! monitor, typed LLM documents) are separate crates that this facade puts in
//! front of the store.
//!
//! # Brief overview
//!
//! - [`StratumConfig`]: every section (`mongodb`, `store`, `cache`, `breaker`,
//!   `pool`, `monitor`) from defaults, a TOML file, `STRATUM_*` environment
//!   variables and code, merged in that order and validated into a typed
//!   [`ConfigError`] that names the field.
//! - [`MongoUri`]: a connection string whose credentials never show in
//!   `Debug`, `Display`, logs or errors.
//! - [`Store`]: get by id, find with sort and limit, insert, update, upsert,
//!   delete, count, unique indexes, over BSON [`Document`](bson::Document)s.
//!   [`Filter`] and [`Update`] take values as values, so user input never
//!   becomes a query operator. Errors are a typed [`StoreError`] that says
//!   whether a circuit breaker should count it.
//! - [`MemoryStore`]: embedded, the default when no URI is configured.
//!   `MongoStore` (feature `mongodb`, on by default): the official driver.
//!   One conformance suite runs against both. [`store::open`] picks the one
//!   a configuration selects, as an `Arc<dyn Store>`.
//! - [`Stratum`]: the handle that puts the layers in front of a store: one
//!   circuit breaker (stratum-breaker) around every database call, a
//!   read-through cache (stratum-cache) per collection, one [`Clock`]
//!   (stratum-core's, a [`CoarseClock`] unless a test passes a
//!   [`ManualClock`]) for every layer. Layers are left out with `enabled = false` in their section,
//!   or at build time without their cargo feature (`breaker`, `cache`,
//!   `pool`, all on by default; a section whose layer is compiled out is
//!   kept as an opaque table, so a full build's file still loads).
//!   Each layer's section is the layer's own configuration type; every key
//!   and its `STRATUM_*` variable is in docs/configuration.md, and
//!   [`ConfigBuilder::build_explained`] reports where each value came from.
//! - [`Repository<T>`](Repository) for any `stratum_models::Document`: reads
//!   by id through the cache (single-flight on a miss), writes that refresh
//!   or invalidate what they touch, stale reads within `cache.max_stale` when
//!   the database fails or the breaker is open (the [`Read`] says so), a
//!   metric series and a `tracing` span per operation.
//! - [`watch`] (feature `mongodb`): over MongoDB every repository follows
//!   its collection's change stream, so another process's write drops the
//!   cached copy within milliseconds (`mongodb.change_streams`, on by
//!   default); [`Stratum::shutdown`] stops the watchers, and
//!   `Stratum::mongo_database` is the driver for what the [`Store`] does
//!   not cover (bypassing every layer).
//! - [`llm`]: a provider call cached by its request ([`llm::PromptCache`],
//!   single-flight) and conversations appended and read back compressed to a
//!   token budget ([`llm::Conversations`]).
//! - Monitoring (feature `monitor`, [`monitoring`]): the handle's own
//!   stratum-monitor, built before the layers so their series land on it,
//!   serving `/metrics` and `/health/*` (`Stratum::metrics_addr`), with the
//!   breaker, pool and database as readiness checks, the default alert
//!   rules (callbacks and an Alertmanager webhook), every cache's
//!   statistics, and `Stratum::shutdown`.
//!
//! ```
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! # rt.block_on(async {
//! use stratum::bson::doc;
//! use stratum::{Filter, MemoryStore, Order, Query, Store, StratumConfig, Update};
//!
//! let config = StratumConfig::builder().env().build()?;
//! let store = MemoryStore::from_config(&config.store);
//!
//! for (turn, text) in ["hello", "how are you?"].into_iter().enumerate() {
//!     store.insert("messages", doc! { "conversation": "c1", "turn": turn as i32, "text": text }).await?;
//! }
//! // A user's string is compared as a string, never read as an operator.
//! let hostile = Filter::eq("conversation", r#"{"$ne": null}"#);
//! assert_eq!(store.count("messages", &hostile).await?, 0);
//!
//! let latest = store
//!     .find("messages", &Query::new(Filter::eq("conversation", "c1")).sort("turn", Order::Descending).limit(1))
//!     .await?;
//! assert_eq!(latest[0].get_str("text")?, "how are you?");
//!
//! // The same store behind the breaker and the cache, with typed documents.
//! use stratum::models::Conversation;
//! use stratum::{Origin, Stratum};
//!
//! let stratum = Stratum::builder(config).store(std::sync::Arc::new(store)).build()?;
//! let conversations = stratum.repository::<Conversation>()?;
//! let c = Conversation::new("gpt-4o", stratum::bson::DateTime::now());
//! conversations.insert(&c).await?;
//! assert_eq!(conversations.get(&c.id).await?.origin, Origin::Store);
//! # #[cfg(feature = "cache")] // (without the cache, from the store)
//! assert_eq!(conversations.get(&c.id).await?.origin, Origin::Cache);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![deny(missing_docs)]

#[cfg(feature = "pool")]
pub mod admission;
#[cfg(feature = "cache")]
mod caches;
pub mod config;
#[cfg(feature = "monitor")]
pub mod health;
#[cfg(feature = "mongodb")]
pub mod indexes;
pub mod llm;
#[cfg(feature = "semantic")]
mod llm_semantic;
#[cfg(feature = "monitor")]
pub mod monitoring;
pub mod repository;
mod stack;
#[cfg(feature = "mongodb")]
pub mod watch;

/// The BSON crate the stores speak (the same one the driver re-exports as
/// `mongodb::bson`).
pub use bson;
/// The document store (stratum-store): the `Store` trait, `MemoryStore`,
/// `MongoStore` (feature `mongodb`).
pub use stratum_store as store;
/// The store's URI type and the one credential redaction of the workspace.
pub use stratum_store::uri;

/// The circuit breaker (stratum-breaker; feature `breaker`).
#[cfg(feature = "breaker")]
pub use stratum_breaker as breaker;
/// The in-process cache (stratum-cache; feature `cache`).
#[cfg(feature = "cache")]
pub use stratum_cache as cache;
/// The typed LLM documents, cache keys, token counting and compression the
/// repositories store (stratum-models).
pub use stratum_models as models;
/// The monitor the facade registers its health checks with (stratum-monitor).
#[cfg(feature = "monitor")]
pub use stratum_monitor as monitor;
/// The admission pool (stratum-pool; feature `pool`).
#[cfg(feature = "pool")]
pub use stratum_pool as pool;
/// The semantic response cache the prompt cache's semantic tier is built
/// on (stratum-semantic; feature `semantic`).
#[cfg(feature = "semantic")]
pub use stratum_semantic as semantic;

pub use crate::config::{
    BREAKER_NAME, ConfigBuilder, ConfigError, ConfigErrorKind, ConfigReport, StratumConfig,
};
pub use crate::repository::{Origin, Read, Repository, RepositoryError};
#[cfg(feature = "breaker")]
pub use crate::stack::BreakerTransition;
pub use crate::stack::{Stratum, StratumBuilder, StratumError};
pub use stratum_core::clock::{Clock, CoarseClock, ManualClock, SharedClock, SystemClock};
pub use stratum_store::{Filter, IndexSpec, MemoryStore, Order, Query, Store, StoreError, Update};
#[cfg(feature = "mongodb")]
pub use stratum_store::{MongoStore, ServerInfo};
pub use stratum_store::{MongoUri, UriError};
