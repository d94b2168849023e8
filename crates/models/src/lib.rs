//! Typed MongoDB documents for LLM applications, with the pieces around them:
//! response-cache keys, exact token counting and context compression.
//!
//! # Overview
//!
//! - [`Document`]: the one small trait every stored type implements: its
//!   collection, id, schema version, declared [`IndexSpec`]s (unique,
//!   compound, TTL; the one [`IndexSpec`] of `stratum-core`, which the
//!   stores create as declared) and validation. [`Document::to_raw_checked`]
//!   validates and enforces MongoDB's 16 MiB limit before a write. The crate
//!   knows no database driver: the stores (`stratum-store`) create the
//!   indexes and write the checked bytes.
//! - The models: [`ResponseCacheEntry`] (a cached LLM response with its
//!   [`RequestParams`], [`TokenUsage`], cost, TTL and hit count),
//!   [`Conversation`], [`Message`] and [`ContextSnapshot`], and
//!   [`UsageRecord`] (latency, tokens, cache hit or miss, cost).
//! - [`CacheKey`]: a versioned SHA-256 of the request in canonical form:
//!   equal for requests that differ only in end whitespace or parameter
//!   order, different for anything that changes the output.
//! - [`TokenCounter`]: cl100k_base and o200k_base through `tiktoken-rs`,
//!   tables built once per process, the chat format's per-message overhead,
//!   and `count_async` (feature `tokio`) for long inputs.
//! - [`ContextCompressor`]: fits a conversation into a token budget (keeps the
//!   system message and the latest turns, drops duplicates, truncates at a
//!   token boundary, collapses whitespace, optional [`Summarizer`] slot) and
//!   returns a [`CompressionReport`].
//! - [`EfficiencyTracker`]: hit ratio, tokens, dollars (from a [`PriceTable`])
//!   and latency saved.
//!
//! # Example
//!
//! ```
//! use stratum_models::{
//!     CacheKeyRequest, CachedResponse, ChatMessage, CompressionConfig, ContextCompressor,
//!     Document, Encoding, RequestParams, ResponseCacheEntry, TokenCounter, TokenUsage,
//! };
//!
//! // Fit a long conversation into 200 tokens.
//! let mut chat = vec![ChatMessage::system("You answer in one line.")];
//! for i in 0..50 {
//!     chat.push(ChatMessage::user(format!("Tell me fact number {i} about Paris.")));
//!     chat.push(ChatMessage::assistant(format!("Fact {i}: Paris has {} bridges.", 30 + i)));
//! }
//! let compressor = ContextCompressor::new(CompressionConfig::builder().budget_tokens(200).build()?)?;
//! let context = compressor.compress(&chat)?;
//! let counter = TokenCounter::new(Encoding::O200kBase)?;
//! assert!(counter.count_chat(&context.messages) <= 200);
//! assert!(context.report.ratio > 5.0);
//!
//! // Cache the provider's reply under the request's key, for an hour.
//! let params = RequestParams { temperature: Some(0.0), ..Default::default() };
//! let request = CacheKeyRequest {
//!     provider: "openai", model: "gpt-4o", messages: &context.messages, params: &params,
//! };
//! let now = bson::DateTime::from_millis(1_700_000_000_000);
//! let entry = ResponseCacheEntry::new(&request, CachedResponse::text("37 bridges."), TokenUsage::new(190, 4), now)?
//!     .with_ttl(std::time::Duration::from_secs(3600));
//! let bson = entry.to_bson_checked()?; // validated, under 16 MiB
//! assert_eq!(ResponseCacheEntry::from_bson_checked(bson)?, entry);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! - `tokio` (default): [`TokenCounter::count_async`] and
//!   [`TokenCounter::count_chat_async`], which count long inputs on tokio's
//!   blocking pool.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod cache_entry;
pub mod cache_key;
mod chat;
pub mod compress;
mod conversation;
mod document;
mod efficiency;
mod error;
mod telemetry;
mod tokens;
mod usage;

pub use cache_entry::{CachedResponse, ResponseCacheEntry, ToolCall};
pub use cache_key::{CACHE_KEY_VERSION, CacheKey, CacheKeyRequest, RequestParams, ToolSpec};
pub use chat::{ChatMessage, Role};
pub use compress::{
    CompressedContext, CompressionConfig, CompressionConfigBuilder, CompressionReport,
    ContextCompressor, ExtractiveSummarizer, Summarizer,
};
pub use conversation::{ContextSnapshot, Conversation, Message};
pub use document::{Document, MAX_BSON_DOCUMENT_SIZE, MAX_TOKEN_COUNT, validate};
pub use efficiency::{EfficiencyReport, EfficiencyTracker, ModelPrice, PriceTable};
pub use error::{CompressError, ConfigError, TokenizerError, ValidationError};
/// The index description documents declare, shared with the stores (stratum-core).
pub use stratum_core::{IndexDirection, IndexSpec};
pub use tokens::{
    ASYNC_INLINE_LIMIT_BYTES, Encoding, REPLY_PRIMING_TOKENS, TOKENS_PER_MESSAGE, TOKENS_PER_NAME,
    TokenCounter,
};
pub use usage::{CacheOutcome, TokenUsage, UsageRecord};

/// The `bson` crate the documents are written in, so callers name the same version.
pub use bson;
