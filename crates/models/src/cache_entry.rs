//! The LLM response cache entry: one provider response, stored under the key of
//! the request that produced it, with a TTL.

use std::time::Duration;

use bson::DateTime;
use bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

use crate::validate;
use crate::{
    CacheKey, CacheKeyRequest, ChatMessage, Document, IndexDirection, IndexSpec, MAX_TOKEN_COUNT,
    RequestParams, TokenUsage, ValidationError,
};

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The tool's name.
    pub name: String,
    /// The arguments, as the JSON text the model produced.
    pub arguments: String,
}

/// The part of a provider's reply worth replaying.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedResponse {
    /// The reply text.
    pub content: String,
    /// Why generation stopped (`stop`, `length`, `tool_calls`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Tool calls, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

impl CachedResponse {
    /// A text reply that finished normally.
    pub fn text(content: impl Into<String>) -> Self {
        CachedResponse {
            content: content.into(),
            finish_reason: Some("stop".into()),
            tool_calls: Vec::new(),
        }
    }
}

/// A cached LLM response. Collection `llm_response_cache`.
///
/// The key is unique (a second insert with the same key fails with E11000),
/// and `expires_at` carries a TTL index: the server deletes the entry once that
/// date has passed (within its TTL sweep interval, 60 s on mongod).
///
/// ```
/// use std::time::Duration;
/// use stratum_models::{
///     CacheKeyRequest, CachedResponse, ChatMessage, Document, RequestParams,
///     ResponseCacheEntry, TokenUsage,
/// };
///
/// let messages = [ChatMessage::user("What is the capital of France?")];
/// let params = RequestParams { temperature: Some(0.0), ..Default::default() };
/// let request = CacheKeyRequest { provider: "openai", model: "gpt-4o", messages: &messages, params: &params };
/// let now = bson::DateTime::from_millis(1_700_000_000_000);
/// let entry = ResponseCacheEntry::new(&request, CachedResponse::text("Paris."), TokenUsage::new(14, 2), now)?
///     .with_cost(0.00005)
///     .with_ttl(Duration::from_secs(3600));
/// entry.validate()?;
/// assert_eq!(entry.expires_at.unwrap().timestamp_millis() - now.timestamp_millis(), 3_600_000);
/// # Ok::<(), stratum_models::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseCacheEntry {
    /// The entry's id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// The stored shape's version.
    pub schema_version: i32,
    /// The provider.
    pub provider: String,
    /// The model id.
    pub model: String,
    /// The request's [`CacheKey`]; unique.
    pub cache_key: CacheKey,
    /// The messages that were sent (kept to audit wrong hits).
    #[serde(default)]
    pub prompt: Vec<ChatMessage>,
    /// The parameters that were sent.
    #[serde(default)]
    pub params: RequestParams,
    /// The reply.
    pub response: CachedResponse,
    /// Tokens the original call consumed (what each hit saves).
    pub usage: TokenUsage,
    /// What the original call cost, in US dollars.
    pub cost_usd: f64,
    /// When the response was stored.
    pub created_at: DateTime,
    /// When the server may delete it (TTL index); `None` keeps it forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime>,
    /// How many times it has been served.
    #[serde(default)]
    pub hit_count: i64,
}

impl ResponseCacheEntry {
    /// An entry for `request`'s response, keyed by [`CacheKey::compute`], with
    /// no cost and no expiry. `now` is passed in so callers (and tests) own the clock.
    pub fn new(
        request: &CacheKeyRequest<'_>,
        response: CachedResponse,
        usage: TokenUsage,
        now: DateTime,
    ) -> Result<Self, ValidationError> {
        Ok(ResponseCacheEntry {
            id: ObjectId::new(),
            schema_version: Self::SCHEMA_VERSION,
            provider: request.provider.trim().to_owned(),
            model: request.model.trim().to_owned(),
            cache_key: CacheKey::compute(request)?,
            prompt: request.messages.to_vec(),
            params: request.params.clone(),
            response,
            usage,
            cost_usd: 0.0,
            created_at: now,
            expires_at: None,
            hit_count: 0,
        })
    }

    /// Sets the cost of the original call in US dollars.
    pub fn with_cost(mut self, cost_usd: f64) -> Self {
        self.cost_usd = cost_usd;
        self
    }

    /// Expires the entry `ttl` after `created_at` (saturating at the largest date).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.expires_at = Some(DateTime::from_millis(
            self.created_at.timestamp_millis().saturating_add(ttl_ms),
        ));
        self
    }

    /// Whether the entry has expired at `now` (the server's sweep may lag behind).
    pub fn is_expired(&self, now: DateTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

impl Document for ResponseCacheEntry {
    const COLLECTION: &'static str = "llm_response_cache";
    const SCHEMA_VERSION: i32 = 1;
    type Id = ObjectId;

    fn id(&self) -> &ObjectId {
        &self.id
    }

    fn indexes() -> Vec<IndexSpec> {
        vec![
            IndexSpec::ascending("cache_key_unique", ["cache_key"]).unique(),
            // expireAfterSeconds 0: each entry expires at its own `expires_at`.
            IndexSpec::ttl("expires_at_ttl", "expires_at", Duration::ZERO),
            IndexSpec::compound(
                "provider_model_created_at",
                [
                    ("provider", IndexDirection::Ascending),
                    ("model", IndexDirection::Ascending),
                    ("created_at", IndexDirection::Descending),
                ],
            ),
            // The semantic tier's rebuild: the newest entries of one vector
            // space (`semantic_space`, set only with the tier on).
            IndexSpec::compound(
                "semantic_space_created_at",
                [
                    ("semantic_space", IndexDirection::Ascending),
                    ("created_at", IndexDirection::Descending),
                ],
            ),
        ]
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::schema_version(self.schema_version, Self::SCHEMA_VERSION)?;
        validate::not_blank("provider", &self.provider)?;
        validate::not_blank("model", &self.model)?;
        validate::not_blank("cache_key", self.cache_key.as_str())?;
        for (i, m) in self.prompt.iter().enumerate() {
            validate::not_blank(format!("prompt[{i}].role"), m.role.as_str())?;
        }
        validate_params(&self.params)?;
        self.usage.validate("usage")?;
        validate::non_negative_finite("cost_usd", self.cost_usd)?;
        validate::in_range("hit_count", self.hit_count, 0, i64::MAX)?;
        if let Some(at) = self.expires_at
            && at < self.created_at
        {
            return Err(ValidationError::Invalid {
                field: "expires_at".into(),
                reason: "is before created_at".into(),
            });
        }
        Ok(())
    }
}

fn validate_params(p: &RequestParams) -> Result<(), ValidationError> {
    for (field, value) in [
        ("params.temperature", p.temperature),
        ("params.top_p", p.top_p),
    ] {
        if let Some(v) = value {
            validate::non_negative_finite(field, v)?;
        }
    }
    for (field, value) in [
        ("params.presence_penalty", p.presence_penalty),
        ("params.frequency_penalty", p.frequency_penalty),
    ] {
        if let Some(v) = value.filter(|v| !v.is_finite()) {
            return Err(ValidationError::Invalid {
                field: field.into(),
                reason: format!("{v} is not finite").into(),
            });
        }
    }
    if let Some(max) = p.max_tokens {
        validate::in_range("params.max_tokens", max, 1, MAX_TOKEN_COUNT)?;
    }
    for (i, tool) in p.tools.iter().enumerate() {
        validate::not_blank(format!("params.tools[{i}].name"), &tool.name)?;
    }
    Ok(())
}
