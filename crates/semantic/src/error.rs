//! The crate's typed errors: one for embedding, one for the cache and index.

use stratum_core::ConfigError;

/// Why an [`Embedder`](crate::Embedder) could not embed a batch.
///
/// No variant carries an API key: the HTTP embedder removes the key from any
/// text it quotes from the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The embedder's settings are invalid (an unparsable URL, zero dimensions...).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The endpoint could not be reached or the connection broke.
    #[error("embedding endpoint unreachable: {0}")]
    Connect(String),
    /// The endpoint did not answer within the configured timeout.
    #[error("embedding endpoint did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The endpoint answered with a non-success status.
    #[error("embedding endpoint answered {status}: {body}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The start of the response body (at most 512 bytes, key removed).
        body: String,
    },
    /// The answer was not the expected JSON.
    #[error("embedding answer not understood: {0}")]
    Decode(String),
    /// A vector had another length than the embedder's dimensions.
    #[error("embedding has {got} dimensions, expected {expected}")]
    Dimensions {
        /// The configured dimensions.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// The answer held another number of vectors than texts sent.
    #[error("sent {sent} texts, received {received} embeddings")]
    Count {
        /// Texts in the request.
        sent: usize,
        /// Embeddings in the answer.
        received: usize,
    },
    /// A vector is all zeros or holds NaN/infinity, so it has no direction.
    #[error("embedding has no direction (zero, NaN or infinite)")]
    Degenerate,
    /// The local model failed (loading the weights, tokenising or running).
    #[error("local model: {0}")]
    Model(String),
}

/// Why a [`SemanticCache`](crate::SemanticCache) or
/// [`VectorIndex`](crate::VectorIndex) refused an operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A vector had another length than the index's dimensions.
    #[error("vector has {got} dimensions, the index has {expected}")]
    Dimensions {
        /// The index's dimensions.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// A vector is all zeros or holds NaN/infinity.
    #[error("vector has no direction (zero, NaN or infinite)")]
    Degenerate,
    /// A similarity outside [-1, 1] or NaN was reported.
    #[error("similarity {0} is outside [-1, 1]")]
    Similarity(f32),
    /// Stored labels could not be read back (see
    /// [`EntryLabels::from_bytes`](crate::threshold::EntryLabels::from_bytes)).
    #[error("stored labels: {0}")]
    Labels(String),
    /// The approximate index failed (allocation, internal error).
    #[error("vector index: {0}")]
    Index(String),
}
