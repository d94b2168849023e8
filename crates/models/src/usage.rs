//! Token usage of one LLM call, and the per-call usage and performance record.

use std::time::Duration;

use bson::DateTime;
use bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

use crate::validate;
use crate::{Document, IndexDirection, IndexSpec, ValidationError};

/// Tokens one call consumed, as providers report them.
///
/// ```
/// use stratum_models::TokenUsage;
///
/// let usage = TokenUsage::new(120, 30);
/// assert_eq!(usage.total_tokens, 150);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens sent (the prompt).
    pub prompt_tokens: i64,
    /// Tokens generated (reasoning tokens included).
    pub completion_tokens: i64,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: i64,
}

impl TokenUsage {
    /// Usage with the total computed (saturating, so an absurd input stays a
    /// validation error rather than an overflow).
    pub fn new(prompt_tokens: i64, completion_tokens: i64) -> Self {
        TokenUsage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }

    /// Checks each count and that the total adds up; `prefix` names the field path.
    pub fn validate(&self, prefix: &str) -> Result<(), ValidationError> {
        validate::token_count(format!("{prefix}.prompt_tokens"), self.prompt_tokens)?;
        validate::token_count(
            format!("{prefix}.completion_tokens"),
            self.completion_tokens,
        )?;
        validate::token_count(format!("{prefix}.total_tokens"), self.total_tokens)?;
        if self.prompt_tokens + self.completion_tokens != self.total_tokens {
            return Err(ValidationError::Invalid {
                field: format!("{prefix}.total_tokens").into(),
                reason: "must equal prompt_tokens + completion_tokens".into(),
            });
        }
        Ok(())
    }
}

/// How the response cache answered a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    /// Served from the cache: no provider call.
    Hit,
    /// Not in the cache: the provider was called.
    Miss,
    /// The cache was not consulted (streaming, a non-deterministic request...).
    Bypass,
}

/// One LLM call: who asked for it (tenant and user), who served it, what it
/// cost, how long it took, whether the cache answered. Collection
/// `usage_records`.
///
/// For a [`CacheOutcome::Hit`], `tokens_in`/`tokens_out` are the tokens the
/// cached response cost when it was generated (what the hit saved),
/// `saved_usd` what that call cost, and `cost_usd` what this call actually
/// spent (normally 0): a report counts a hit's tokens as saved, never as spent.
///
/// Every record names its caller ([`with_caller`](UsageRecord::with_caller)):
/// validation refuses an empty, oversized (over 256 bytes) or
/// control-character tenant or user. Records of schema version 1, written
/// before records had a caller, decode with both empty.
///
/// ```
/// use std::time::Duration;
/// use stratum_models::{CacheOutcome, Document, UsageRecord, ValidationError};
///
/// let now = bson::DateTime::from_millis(1_700_000_000_000);
/// let record = UsageRecord::new("openai", "gpt-4o", CacheOutcome::Miss, now)
///     .with_caller("acme", "ann")
///     .with_tokens(1_000, 200)
///     .with_latency(Duration::from_millis(850))
///     .with_cost(0.0045);
/// record.validate()?;
/// assert_eq!(record.latency(), Duration::from_millis(850));
///
/// let anonymous = UsageRecord::new("openai", "gpt-4o", CacheOutcome::Miss, now);
/// assert!(matches!(anonymous.validate(), Err(ValidationError::Blank { .. })));
/// # Ok::<(), stratum_models::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The record's id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// The stored shape's version.
    pub schema_version: i32,
    /// The tenant (organisation, account) the call is billed to.
    #[serde(default)]
    pub tenant: String,
    /// The user who made the call, within the tenant.
    #[serde(default)]
    pub user: String,
    /// The provider (`openai`, `anthropic`...).
    pub provider: String,
    /// The model id.
    pub model: String,
    /// Hit, miss or bypass.
    pub cache: CacheOutcome,
    /// Prompt tokens.
    pub tokens_in: i64,
    /// Completion tokens.
    pub tokens_out: i64,
    /// End-to-end latency in microseconds.
    pub latency_us: i64,
    /// What the call spent, in US dollars.
    pub cost_usd: f64,
    /// For a cache hit, what the call that produced the cached answer cost,
    /// in US dollars (what the hit saved); 0 otherwise.
    #[serde(default)]
    pub saved_usd: f64,
    /// When the call finished.
    pub timestamp: DateTime,
    /// The conversation it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ObjectId>,
}

impl UsageRecord {
    /// A record with no caller and zero tokens, latency and cost; fill them
    /// with the `with_` methods (a caller is required to validate).
    pub fn new(
        provider: impl Into<String>,
        model: impl Into<String>,
        cache: CacheOutcome,
        timestamp: DateTime,
    ) -> Self {
        UsageRecord {
            id: ObjectId::new(),
            schema_version: Self::SCHEMA_VERSION,
            tenant: String::new(),
            user: String::new(),
            provider: provider.into(),
            model: model.into(),
            cache,
            tokens_in: 0,
            tokens_out: 0,
            latency_us: 0,
            cost_usd: 0.0,
            saved_usd: 0.0,
            timestamp,
            conversation_id: None,
        }
    }

    /// Sets who made the call: the tenant and the user within it.
    pub fn with_caller(mut self, tenant: impl Into<String>, user: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self.user = user.into();
        self
    }

    /// Sets what a cache hit saved, in US dollars (the cost of the call
    /// that produced the cached answer).
    pub fn with_saved(mut self, saved_usd: f64) -> Self {
        self.saved_usd = saved_usd;
        self
    }

    /// Sets the token counts.
    pub fn with_tokens(mut self, tokens_in: i64, tokens_out: i64) -> Self {
        self.tokens_in = tokens_in;
        self.tokens_out = tokens_out;
        self
    }

    /// Sets the latency (saturating at `i64::MAX` microseconds).
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency_us = i64::try_from(latency.as_micros()).unwrap_or(i64::MAX);
        self
    }

    /// Sets the cost in US dollars.
    pub fn with_cost(mut self, cost_usd: f64) -> Self {
        self.cost_usd = cost_usd;
        self
    }

    /// The latency as a duration (0 when the stored value is negative).
    pub fn latency(&self) -> Duration {
        Duration::from_micros(u64::try_from(self.latency_us).unwrap_or(0))
    }
}

/// A day in microseconds: no single call legitimately takes longer.
const MAX_LATENCY_US: i64 = 86_400 * 1_000_000;

impl Document for UsageRecord {
    const COLLECTION: &'static str = "usage_records";
    /// 2: `tenant`, `user` and `saved_usd`.
    const SCHEMA_VERSION: i32 = 2;
    type Id = ObjectId;

    fn id(&self) -> &ObjectId {
        &self.id
    }

    fn indexes() -> Vec<IndexSpec> {
        vec![
            // Reports: usage per tenant, per user, over time.
            IndexSpec::compound(
                "tenant_user_timestamp",
                [
                    ("tenant", IndexDirection::Ascending),
                    ("user", IndexDirection::Ascending),
                    ("timestamp", IndexDirection::Descending),
                ],
            ),
            // Dashboards: usage per provider and model over time.
            IndexSpec::compound(
                "provider_model_timestamp",
                [
                    ("provider", IndexDirection::Ascending),
                    ("model", IndexDirection::Ascending),
                    ("timestamp", IndexDirection::Descending),
                ],
            ),
            IndexSpec::ascending("conversation_id", ["conversation_id"]),
        ]
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::schema_version(self.schema_version, Self::SCHEMA_VERSION)?;
        // Version 1 records were written before calls had a caller.
        if self.schema_version >= 2 {
            validate::identifier("tenant", &self.tenant)?;
            validate::identifier("user", &self.user)?;
        }
        validate::not_blank("provider", &self.provider)?;
        validate::not_blank("model", &self.model)?;
        validate::token_count("tokens_in", self.tokens_in)?;
        validate::token_count("tokens_out", self.tokens_out)?;
        validate::in_range("latency_us", self.latency_us, 0, MAX_LATENCY_US)?;
        validate::non_negative_finite("cost_usd", self.cost_usd)?;
        validate::non_negative_finite("saved_usd", self.saved_usd)?;
        if self.saved_usd > 0.0 && self.cache != CacheOutcome::Hit {
            return Err(ValidationError::Invalid {
                field: "saved_usd".into(),
                reason: "only a cache hit saves".into(),
            });
        }
        Ok(())
    }
}
