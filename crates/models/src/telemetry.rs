//! Metric names and the few places that report them (see "Metrics" in docs/models.md).
//! Labels are bounded: collection names are compile-time constants, kinds are enum names.

use crate::ValidationError;

/// Documents refused before the database, by collection and error kind.
pub(crate) const VALIDATION_FAILURES: &str = "stratum_models_validation_failures_total";
/// Context compressions run.
pub(crate) const COMPRESSIONS: &str = "stratum_models_compressions_total";
/// Tokens removed by context compression.
pub(crate) const COMPRESSION_TOKENS_SAVED: &str = "stratum_models_compression_tokens_saved_total";

pub(crate) fn validation_failed(collection: &'static str, error: &ValidationError) {
    metrics::counter!(VALIDATION_FAILURES, "collection" => collection, "kind" => error.kind())
        .increment(1);
    tracing::debug!(collection, error = %error, "document refused before the database");
}

pub(crate) fn compressed(tokens_saved: usize) {
    metrics::counter!(COMPRESSIONS).increment(1);
    metrics::counter!(COMPRESSION_TOKENS_SAVED).increment(tokens_saved as u64);
}
