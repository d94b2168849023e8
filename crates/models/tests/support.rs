//! Strategies shared by the integration tests.

use bson::DateTime;
use bson::oid::ObjectId;
use proptest::prelude::*;
use stratum_models::{
    CacheKeyRequest, CacheOutcome, CachedResponse, ChatMessage, CompressionReport, ContextSnapshot,
    Conversation, Encoding, Message, RequestParams, ResponseCacheEntry, Role, TokenUsage, ToolCall,
    ToolSpec, UsageRecord,
};

pub(crate) fn object_id() -> impl Strategy<Value = ObjectId> {
    any::<[u8; 12]>().prop_map(ObjectId::from_bytes)
}

/// Dates anywhere BSON (and chrono-free formatting) can hold them.
pub(crate) fn date() -> impl Strategy<Value = DateTime> {
    (-8_000_000_000_000i64..8_000_000_000_000).prop_map(DateTime::from_millis)
}

pub(crate) fn role() -> impl Strategy<Value = Role> {
    role_or("[a-z]{1,10}".prop_map(|r| Role::parse(&r)))
}

/// The named roles, or one from `other` (the tests choose its domain).
pub(crate) fn role_or(other: impl Strategy<Value = Role>) -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::System),
        Just(Role::Developer),
        Just(Role::User),
        Just(Role::Assistant),
        Just(Role::Tool),
        other,
    ]
}

pub(crate) fn chat_message() -> impl Strategy<Value = ChatMessage> {
    (role(), "\\PC{0,60}", proptest::option::of("[a-z_]{1,10}")).prop_map(
        |(role, content, name)| ChatMessage {
            role,
            content,
            name,
        },
    )
}

pub(crate) fn tokens() -> impl Strategy<Value = i64> {
    0i64..10_000_000
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1e9f64..1e9).prop_map(serde_json::Value::from),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The sampling fields of `RequestParams`, in the order [`request_params`]
/// takes them: temperature, top_p, presence and frequency penalties,
/// max_tokens, seed.
pub(crate) type Sampling = (
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<i64>,
    Option<i64>,
);

/// The text fields: stop sequences, system prompt, tools (name, description,
/// parameters), tool_choice, response_format, extra.
pub(crate) type Texts = (
    Vec<String>,
    Option<String>,
    Vec<(String, Option<String>, serde_json::Value)>,
    Option<String>,
    serde_json::Value,
    std::collections::BTreeMap<String, serde_json::Value>,
);

/// Assembles generated parts into `RequestParams`: one place for the
/// strategies here and the cache-key tests' hostile ones.
pub(crate) fn request_params(
    (temperature, top_p, presence_penalty, frequency_penalty, max_tokens, seed): Sampling,
    (stop, system, tools, tool_choice, response_format, extra): Texts,
) -> RequestParams {
    RequestParams {
        temperature,
        top_p,
        presence_penalty,
        frequency_penalty,
        max_tokens,
        seed,
        stop,
        system,
        tools: tools
            .into_iter()
            .map(|(name, description, parameters)| ToolSpec {
                name,
                description,
                parameters,
            })
            .collect(),
        tool_choice,
        response_format,
        extra,
    }
}

pub(crate) fn params() -> impl Strategy<Value = RequestParams> {
    (
        (
            proptest::option::of(0.0f64..2.0),
            proptest::option::of(0.0f64..1.0),
            proptest::option::of(-2.0f64..2.0),
            proptest::option::of(1i64..100_000),
            proptest::option::of(any::<i64>()),
        )
            // The frequency penalty mirrors the presence penalty.
            .prop_map(|(t, p, presence, max, seed)| {
                (t, p, presence, presence.map(|p| -p), max, seed)
            }),
        (
            proptest::collection::vec("\\PC{1,6}", 0..3),
            proptest::option::of("\\PC{0,40}"),
            proptest::collection::vec(
                ("[a-z_]{1,10}", proptest::option::of("\\PC{0,20}"), json()),
                0..3,
            ),
            proptest::option::of("[a-z]{1,8}"),
            json(),
            proptest::collection::btree_map("[a-z_]{1,8}", json(), 0..3),
        ),
    )
        .prop_map(|(sampling, texts)| request_params(sampling, texts))
}

pub(crate) fn cache_entry() -> impl Strategy<Value = ResponseCacheEntry> {
    (
        (
            "[a-z]{1,10}",
            "[a-z0-9.-]{1,16}",
            proptest::collection::vec(chat_message(), 0..5),
            params(),
        ),
        (
            "\\PC{0,80}",
            proptest::option::of("[a-z_]{1,10}"),
            proptest::collection::vec(("[a-z_]{1,8}", "\\PC{0,20}"), 0..3),
        ),
        (
            tokens(),
            tokens(),
            0.0f64..100.0,
            date(),
            proptest::option::of(0u64..1_000_000_000),
            0i64..1_000_000,
        ),
        object_id(),
    )
        .prop_map(
            |(
                (provider, model, prompt, params),
                (content, finish_reason, calls),
                (tin, tout, cost, created, ttl_ms, hits),
                id,
            )| {
                let request = CacheKeyRequest {
                    provider: &provider,
                    model: &model,
                    messages: &prompt,
                    params: &params,
                };
                let response = CachedResponse {
                    content,
                    finish_reason,
                    tool_calls: calls
                        .into_iter()
                        .map(|(name, arguments)| ToolCall { name, arguments })
                        .collect(),
                };
                let mut entry = ResponseCacheEntry::new(
                    &request,
                    response,
                    TokenUsage::new(tin, tout),
                    created,
                )
                .expect("finite params always have a key")
                .with_cost(cost);
                if let Some(ms) = ttl_ms {
                    entry = entry.with_ttl(std::time::Duration::from_millis(ms));
                }
                entry.id = id;
                entry.hit_count = hits;
                entry
            },
        )
}

pub(crate) fn conversation() -> impl Strategy<Value = Conversation> {
    (
        object_id(),
        proptest::option::of("\\PC{1,20}"),
        proptest::option::of("\\PC{0,30}"),
        "[a-z0-9.-]{1,16}",
        0i64..100_000,
        tokens(),
        date(),
        0i64..1_000_000_000,
        proptest::collection::btree_map("[a-z]{1,6}", "\\PC{0,10}", 0..3),
    )
        .prop_map(
            |(id, user_id, title, model, count, total, created, later, metadata)| Conversation {
                id,
                schema_version: 1,
                user_id,
                title,
                model,
                message_count: count,
                total_tokens: total,
                created_at: created,
                updated_at: DateTime::from_millis(created.timestamp_millis() + later),
                metadata,
            },
        )
}

pub(crate) fn message() -> impl Strategy<Value = Message> {
    (
        object_id(),
        object_id(),
        0i64..100_000,
        chat_message(),
        tokens(),
        date(),
    )
        .prop_map(
            |(id, conversation_id, seq, chat, token_count, created_at)| {
                let mut m = Message::new(
                    conversation_id,
                    seq,
                    chat.role,
                    chat.content,
                    token_count,
                    created_at,
                );
                m.id = id;
                m.name = chat.name;
                m
            },
        )
}

pub(crate) fn snapshot() -> impl Strategy<Value = ContextSnapshot> {
    (
        object_id(),
        object_id(),
        prop_oneof![Just(Encoding::Cl100kBase), Just(Encoding::O200kBase)],
        proptest::collection::vec(chat_message(), 0..6),
        (1i64..100_000, 1i64..100_000, 0i64..50, 0i64..50, 0i64..50),
        any::<bool>(),
        date(),
    )
        .prop_map(
            |(
                id,
                conversation_id,
                encoding,
                messages,
                (before, after, dups, dropped, cut),
                summarized,
                created_at,
            )| {
                ContextSnapshot {
                    id,
                    schema_version: 1,
                    conversation_id,
                    encoding,
                    budget_tokens: after,
                    report: CompressionReport {
                        tokens_before: before,
                        tokens_after: after,
                        ratio: before as f64 / after as f64,
                        tokens_saved: (before - after).max(0),
                        messages_before: messages.len() as i64 + dups + dropped,
                        messages_after: messages.len() as i64,
                        duplicates_dropped: dups,
                        budget_dropped: dropped,
                        truncated: cut,
                        summarized,
                    },
                    messages,
                    created_at,
                }
            },
        )
}

pub(crate) fn usage_record() -> impl Strategy<Value = UsageRecord> {
    (
        object_id(),
        "[a-z]{1,10}",
        "[a-z0-9.-]{1,16}",
        prop_oneof![
            Just(CacheOutcome::Hit),
            Just(CacheOutcome::Miss),
            Just(CacheOutcome::Bypass)
        ],
        tokens(),
        tokens(),
        0i64..86_400_000_000,
        0.0f64..100.0,
        date(),
        proptest::option::of(object_id()),
        ("[a-z0-9-]{1,12}", "[a-z][^\\p{Cc}]{0,23}"),
    )
        .prop_map(
            |(
                id,
                provider,
                model,
                cache,
                tin,
                tout,
                latency_us,
                cost,
                timestamp,
                conversation_id,
                (tenant, user),
            )| {
                let mut r = UsageRecord::new(provider, model, cache, timestamp)
                    .with_caller(tenant, user)
                    .with_tokens(tin, tout)
                    .with_cost(cost);
                if cache == CacheOutcome::Hit {
                    r.saved_usd = cost;
                }
                r.id = id;
                r.latency_us = latency_us;
                r.conversation_id = conversation_id;
                r
            },
        )
}

/// A valid response-cache entry for one user prompt, created at `created_at`:
/// the common starting point of the validation and database tests.
pub(crate) fn response_entry(prompt: &str, created_at: DateTime) -> ResponseCacheEntry {
    let messages = [ChatMessage::user(prompt)];
    let params = RequestParams {
        temperature: Some(0.0),
        ..Default::default()
    };
    let request = CacheKeyRequest {
        provider: "openai",
        model: "gpt-4o",
        messages: &messages,
        params: &params,
    };
    ResponseCacheEntry::new(
        &request,
        CachedResponse::text("answer"),
        TokenUsage::new(10, 2),
        created_at,
    )
    .unwrap()
}
