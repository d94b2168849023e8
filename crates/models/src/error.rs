//! The crate's typed errors: one per kind of failure, each naming what went wrong.

use std::borrow::Cow;

/// A document that must not reach the database, and why.
///
/// Returned by [`Document::validate`](crate::Document::validate), by the checked
/// conversions [`Document::to_bson_checked`](crate::Document::to_bson_checked) /
/// [`Document::from_bson_checked`](crate::Document::from_bson_checked), and by the
/// validated writes. Never a panic, never a partial write.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A required text field is empty or only whitespace (an empty role, provider, model...).
    #[error("`{field}` must not be empty")]
    Blank {
        /// The field, as a path into the document (`messages[2].role`).
        field: Cow<'static, str>,
    },
    /// A number outside the range the field allows (a negative or absurd token count).
    #[error("`{field}` is {value}, outside [{min}, {max}]")]
    OutOfRange {
        /// The field, as a path into the document.
        field: Cow<'static, str>,
        /// The offending value.
        value: i64,
        /// The smallest allowed value.
        min: i64,
        /// The largest allowed value.
        max: i64,
    },
    /// Any other field-level rule (a NaN cost, totals that do not add up, an expiry before creation).
    #[error("`{field}` is invalid: {reason}")]
    Invalid {
        /// The field, as a path into the document.
        field: Cow<'static, str>,
        /// Why the value is refused.
        reason: Cow<'static, str>,
    },
    /// The encoded document is over MongoDB's 16 MiB limit.
    #[error("the document encodes to {size} bytes, over MongoDB's {limit}-byte limit")]
    TooLarge {
        /// The encoded size in bytes.
        size: usize,
        /// The limit, [`MAX_BSON_DOCUMENT_SIZE`](crate::MAX_BSON_DOCUMENT_SIZE).
        limit: usize,
    },
    /// BSON that does not decode into the type: a missing required field, a wrong type, an unknown enum value.
    #[error("the document does not decode: {reason}")]
    Malformed {
        /// The decoder's message (it names the missing or mistyped field).
        reason: String,
    },
    /// The value could not be encoded to BSON at all (an unsigned integer over `i64::MAX`...).
    #[error("the document does not encode to BSON: {reason}")]
    Unencodable {
        /// The encoder's message.
        reason: String,
    },
}

impl ValidationError {
    /// A bounded label for metrics: the variant, never the field or the value.
    pub fn kind(&self) -> &'static str {
        match self {
            ValidationError::Blank { .. } => "blank",
            ValidationError::OutOfRange { .. } => "out_of_range",
            ValidationError::Invalid { .. } => "invalid",
            ValidationError::TooLarge { .. } => "too_large",
            ValidationError::Malformed { .. } => "malformed",
            ValidationError::Unencodable { .. } => "unencodable",
        }
    }
}

/// An invalid configuration value, refused when the configuration is built:
/// stratum-core's shape, shared by every crate.
///
/// ```
/// use stratum_models::CompressionConfig;
///
/// let err = CompressionConfig::builder().budget_tokens(0).build().unwrap_err();
/// assert_eq!(err.field(), "budget_tokens");
/// ```
pub use stratum_core::ConfigError;

/// A tokenizer that could not be built or could not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// Building the BPE tables failed (the vocabulary is embedded, so this means a broken build).
    #[error("building the {encoding} tokenizer failed: {reason}")]
    Build {
        /// The encoding's name.
        encoding: &'static str,
        /// The tokenizer library's message.
        reason: String,
    },
    /// A counting task on the blocking pool did not finish (the runtime is shutting down).
    #[error("the token-counting task did not finish: {reason}")]
    Join {
        /// The runtime's message.
        reason: String,
    },
}

/// Why a context could not be compressed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// The budget cannot even hold the system messages' framing and the reply priming.
    #[error("a budget of {budget} tokens cannot hold the fixed overhead of {minimum} tokens")]
    BudgetTooSmall {
        /// The configured budget.
        budget: usize,
        /// The smallest budget that can hold the kept system messages.
        minimum: usize,
    },
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The caller's summarizer failed.
    #[error("the summarizer failed: {0}")]
    Summarizer(#[source] Box<dyn std::error::Error + Send + Sync>),
}
