//! A semantic response cache that is right when it answers: a lookup is
//! answered by the cached response of a request that *means* the same, and
//! the share of wrong answers is held under a target the user sets.
//!
//! # Overview
//!
//! - [`Embedder`]: text in, a fixed-size vector out (batch form, typed
//!   [`EmbedError`]). [`HttpEmbedder`] talks to an OpenAI-compatible
//!   `/v1/embeddings` endpoint; with the `local-model` feature,
//!   `LocalEmbedder` runs all-MiniLM-L6-v2 on the CPU (candle), no Python.
//! - [`Scope`]: everything that must match exactly (model, parameters,
//!   system prompt, tools, tenant); its [`ScopeDigest`] keys a partition, and
//!   a lookup never looks outside its own.
//! - [`SemanticCache`]: per-partition nearest-neighbour search
//!   ([`FlatBinaryIndex`], a flat scan of sign bits rescored exactly, by
//!   default, or [`VectorIndex`], HNSW by usearch; [`IndexConfig`]), bounded with least-recently-used
//!   eviction, and a [`HitPolicy`]: a fixed similarity (GPTCache's style) or
//!   thresholds learned to a target error rate ([`ThresholdConfig`]), per
//!   entry and cache-wide, tightened by [`SemanticCache::report_wrong`].
//! - [`TierConfig`]: a host's settings for the tier (the [`EmbedderConfig`],
//!   the policy, the capacity), plain serde data; `stratum` embeds it as
//!   `[llm.semantic]` and wires the tier into its prompt cache.
//! - [`ExactIndex`]: brute-force search, the reference the index is tested
//!   and measured against.
//!
//! The method and the measured hit and wrong-hit rates are in
//! `docs/semantic.md`.
//!
//! # Example
//!
//! ```
//! use stratum_semantic::{HitPolicy, Lookup, Scope, SemanticCache, SemanticCacheConfig, ThresholdConfig};
//!
//! let cache = SemanticCache::new(SemanticCacheConfig::new(
//!     2,
//!     10_000,
//!     HitPolicy::Learned(ThresholdConfig::with_target_error(0.02)),
//! ))?;
//! let scope = Scope::model("m").tenant("t").digest();
//! let id = cache.insert(scope, vec![1.0, 0.0], "answer")?;
//!
//! // Nothing is learned yet: the semantic tier answers nothing.
//! assert!(matches!(cache.lookup(scope, &[1.0, 0.01])?, Lookup::Miss(Some(_))));
//!
//! // Labelled observations: lookups above 0.95 were right, below were wrong.
//! let labelled = (0..2_000).map(|i| {
//!     let s = i as f32 / 2_000.0;
//!     (s, s > 0.95)
//! });
//! cache.calibrate(labelled)?;
//! assert!(matches!(cache.lookup(scope, &[1.0, 0.01])?, Lookup::Hit { .. }));
//! assert!(matches!(cache.lookup(scope, &[1.0, 1.0])?, Lookup::Miss(Some(_))));
//! # let _ = id;
//! # Ok::<(), stratum_semantic::CacheError>(())
//! ```

#![deny(missing_docs)]

mod cache;
mod config;
mod embed;
mod error;
mod flat;
mod http;
mod index;
#[cfg(feature = "local-model")]
mod local;
mod scope;
pub mod threshold;

pub use cache::{
    EntryId, HitPolicy, Lookup, Nearest, SemanticCache, SemanticCacheConfig, SemanticStats,
};
pub use config::{EmbedderConfig, TierConfig};
pub use embed::{Embedder, dot, normalize};
pub use error::{CacheError, EmbedError};
pub use flat::{DEFAULT_FLAT_RESCORE, FlatBinaryIndex};
pub use http::{ApiKey, HttpEmbedder, HttpEmbedderConfig};
pub use index::{
    ExactIndex, IndexConfig, IndexSettings, NearestNeighbours, Neighbour, Quantization, VectorIndex,
};
#[cfg(feature = "local-model")]
pub use local::{LocalEmbedder, MINILM_DIMENSIONS, default_model_dir};
pub use scope::{Scope, ScopeDigest};
pub use threshold::ThresholdConfig;
