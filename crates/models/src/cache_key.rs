//! Response-cache keys: a request normalized to a canonical form, hashed with
//! SHA-256, behind a version prefix.
//!
//! Normalization removes only what cannot change a provider's output:
//!
//! | part | normalized | kept significant |
//! |---|---|---|
//! | provider, model | trimmed, ASCII-lowercased (model ids are case-insensitive identifiers) | every other character |
//! | message content, system prompt, names | whitespace at both ends trimmed | whitespace inside, case, order of messages |
//! | parameters | canonical order (sorted JSON object keys), `-0.0` as `0.0`, floats in shortest round-trip form | every value; an absent parameter differs from an explicit default |
//! | stop sequences | sorted and de-duplicated (providers treat them as a set) | their exact text, whitespace included |
//! | tools | JSON-schema object keys sorted | the order of the tools (it is the order the model reads them in) |
//!
//! Changing the normalization changes keys: bump [`CACHE_KEY_VERSION`] so old
//! entries are simply missed rather than wrongly hit.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{ChatMessage, ValidationError};

/// The version of the normalization, written into every key as `v{N}:`.
pub const CACHE_KEY_VERSION: u32 = 1;

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The function name.
    pub name: String,
    /// What the tool does, as the model reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema of the arguments.
    #[serde(default)]
    pub parameters: Value,
}

/// The request parameters that change an LLM's output.
///
/// ```
/// use stratum_models::RequestParams;
///
/// let params = RequestParams { temperature: Some(0.2), max_tokens: Some(256), ..Default::default() };
/// assert_eq!(params.seed, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestParams {
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// The most tokens the reply may have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// Sequences that end the reply.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// The sampling seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Presence penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// A system prompt given apart from the messages (Anthropic style).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Tools the model may call, in the order it sees them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// `auto`, `none`, `required` or a tool name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<String>,
    /// The requested response format (JSON mode, a JSON schema...); `null` when none.
    /// A plain value rather than an `Option`: BSON cannot tell `Some(null)` from `None`.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub response_format: Value,
    /// Any other provider parameter, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Value>,
}

/// What a cache key is computed from.
#[derive(Debug, Clone, Copy)]
pub struct CacheKeyRequest<'a> {
    /// The provider (`openai`, `anthropic`...).
    pub provider: &'a str,
    /// The model id.
    pub model: &'a str,
    /// The conversation sent.
    pub messages: &'a [ChatMessage],
    /// The parameters sent.
    pub params: &'a RequestParams,
}

/// A versioned SHA-256 cache key: `v1:` followed by 64 hex digits.
///
/// ```
/// use stratum_models::{CacheKey, CacheKeyRequest, ChatMessage, RequestParams};
///
/// let params = RequestParams { temperature: Some(0.0), ..Default::default() };
/// let a = [ChatMessage::user("  What is 2+2?\n")];
/// let b = [ChatMessage::user("What is 2+2?")];
/// let key = |messages| CacheKey::compute(&CacheKeyRequest {
///     provider: "openai", model: "gpt-4o", messages, params: &params,
/// });
/// assert_eq!(key(&a)?, key(&b)?);
/// let c = [ChatMessage::user("What is  2+2?")]; // whitespace inside counts
/// assert_ne!(key(&a)?, key(&c)?);
/// assert!(key(&a)?.as_str().starts_with("v1:"));
/// # Ok::<(), stratum_models::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CacheKey(String);

impl CacheKey {
    /// Normalizes the request and hashes it. Fails only on a parameter that has
    /// no canonical form (a NaN or infinite float).
    pub fn compute(request: &CacheKeyRequest<'_>) -> Result<CacheKey, ValidationError> {
        let canonical = canonical_form(request)?;
        let digest = Sha256::digest(canonical.as_bytes());
        let mut key = format!("v{CACHE_KEY_VERSION}:");
        for byte in digest {
            key.push(char::from(HEX[usize::from(byte >> 4)]));
            key.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        Ok(CacheKey(key))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The canonical text a key hashes: compact JSON with sorted object keys.
/// Useful to see why two requests that "look the same" miss each other.
///
/// ```
/// use stratum_models::{cache_key::canonical_form, CacheKeyRequest, ChatMessage, RequestParams};
///
/// let text = canonical_form(&CacheKeyRequest {
///     provider: " OpenAI", model: "GPT-4o", messages: &[ChatMessage::user("hi ")],
///     params: &RequestParams::default(),
/// })?;
/// assert!(text.contains(r#""model":"gpt-4o""#) && text.contains(r#""content":"hi""#));
/// # Ok::<(), stratum_models::ValidationError>(())
/// ```
pub fn canonical_form(request: &CacheKeyRequest<'_>) -> Result<String, ValidationError> {
    let p = request.params;
    let mut root = BTreeMap::new();
    root.insert(
        "provider",
        Value::from(request.provider.trim().to_ascii_lowercase()),
    );
    root.insert(
        "model",
        Value::from(request.model.trim().to_ascii_lowercase()),
    );
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| {
            let mut o = serde_json::Map::new();
            o.insert("role".into(), Value::from(m.role.as_str()));
            o.insert("content".into(), Value::from(m.content.trim()));
            if let Some(name) = &m.name {
                o.insert("name".into(), Value::from(name.trim()));
            }
            Value::Object(o)
        })
        .collect();
    root.insert("messages", Value::Array(messages));

    let mut params = BTreeMap::new();
    for (field, value) in [
        ("temperature", p.temperature),
        ("top_p", p.top_p),
        ("presence_penalty", p.presence_penalty),
        ("frequency_penalty", p.frequency_penalty),
    ] {
        if let Some(v) = value {
            params.insert(field.to_owned(), canonical_float(field, v)?);
        }
    }
    if let Some(v) = p.max_tokens {
        params.insert("max_tokens".to_owned(), Value::from(v));
    }
    if let Some(v) = p.seed {
        params.insert("seed".to_owned(), Value::from(v));
    }
    if !p.stop.is_empty() {
        let mut stop: Vec<&str> = p.stop.iter().map(String::as_str).collect();
        stop.sort_unstable();
        stop.dedup();
        params.insert("stop".to_owned(), Value::from(stop));
    }
    if let Some(system) = &p.system {
        params.insert("system".to_owned(), Value::from(system.trim()));
    }
    if !p.tools.is_empty() {
        let tools: Vec<Value> = p
            .tools
            .iter()
            .map(|t| {
                let mut o = serde_json::Map::new();
                o.insert("name".into(), Value::from(t.name.trim()));
                if let Some(d) = &t.description {
                    o.insert("description".into(), Value::from(d.trim()));
                }
                o.insert("parameters".into(), t.parameters.clone());
                Value::Object(o)
            })
            .collect();
        params.insert("tools".to_owned(), Value::Array(tools));
    }
    if let Some(choice) = &p.tool_choice {
        params.insert("tool_choice".to_owned(), Value::from(choice.trim()));
    }
    if !p.response_format.is_null() {
        params.insert("response_format".to_owned(), p.response_format.clone());
    }
    // Under its own key, so an extra parameter can never pose as a named one.
    if !p.extra.is_empty() {
        let extra: serde_json::Map<String, Value> = p
            .extra
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        params.insert("extra".to_owned(), Value::Object(extra));
    }
    let params: serde_json::Map<String, Value> = params.into_iter().collect();
    root.insert("params", Value::Object(params));

    let mut out = String::with_capacity(256);
    let root: serde_json::Map<String, Value> =
        root.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    write_canonical(&Value::Object(root), &mut out);
    Ok(out)
}

/// `-0.0` and `0.0` are the same setting; a NaN or an infinity is no setting at all.
fn canonical_float(field: &'static str, v: f64) -> Result<Value, ValidationError> {
    if !v.is_finite() {
        return Err(ValidationError::Invalid {
            field: field.into(),
            reason: "a NaN or infinite parameter has no cache key".into(),
        });
    }
    let v = if v == 0.0 { 0.0 } else { v };
    // Rust's `{:?}` for f64 is the shortest text that round-trips to the same bits.
    Ok(Value::from(format!("{v:?}")))
}

/// Compact JSON with object keys sorted at every depth, whatever order the
/// map kept (serde_json keeps insertion order under `preserve_order`).
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Req {
        provider: String,
        model: String,
        messages: Vec<ChatMessage>,
        params: RequestParams,
    }

    impl Req {
        fn key(&self) -> CacheKey {
            CacheKey::compute(&CacheKeyRequest {
                provider: &self.provider,
                model: &self.model,
                messages: &self.messages,
                params: &self.params,
            })
            .unwrap()
        }
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![
            Just(Role::System),
            Just(Role::User),
            Just(Role::Assistant),
            Just(Role::Tool)
        ]
    }

    // Content that is non-empty after trimming, so "insert inside" is meaningful.
    fn content() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9?.,]{2,8}( [a-zA-Z0-9?.,\n]{1,8}){0,4}"
    }

    fn json_schema() -> impl Strategy<Value = Value> {
        proptest::collection::btree_map(
            "[a-z]{1,6}",
            prop_oneof![
                any::<i32>().prop_map(Value::from),
                "[a-z ]{0,6}".prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
            ],
            0..4,
        )
        .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    fn params() -> impl Strategy<Value = RequestParams> {
        (
            proptest::option::of(0.0f64..2.0),
            proptest::option::of(0.0f64..1.0),
            proptest::option::of(1i64..100_000),
            proptest::collection::vec("[a-z#\n ]{1,5}", 0..3),
            proptest::option::of(any::<i64>()),
            proptest::option::of(content()),
            proptest::collection::vec(("[a-z_]{1,8}", json_schema()), 0..3),
            proptest::collection::btree_map("[a-z_]{1,8}", json_schema(), 0..3),
        )
            .prop_map(
                |(temperature, top_p, max_tokens, stop, seed, system, tools, extra)| {
                    RequestParams {
                        temperature,
                        top_p,
                        max_tokens,
                        stop,
                        seed,
                        system,
                        tools: tools
                            .into_iter()
                            .map(|(name, parameters)| ToolSpec {
                                name,
                                description: None,
                                parameters,
                            })
                            .collect(),
                        extra,
                        ..Default::default()
                    }
                },
            )
    }

    fn request() -> impl Strategy<Value = Req> {
        (
            "[a-z]{2,8}",
            "[a-z0-9.-]{2,12}",
            proptest::collection::vec((role(), content()), 1..5),
            params(),
        )
            .prop_map(|(provider, model, messages, params)| Req {
                provider,
                model,
                messages: messages
                    .into_iter()
                    .map(|(role, content)| ChatMessage::new(role, content))
                    .collect(),
                params,
            })
    }

    fn pad(s: &str, lead: &str, trail: &str) -> String {
        format!("{lead}{s}{trail}")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]

        /// Insignificant differences: end whitespace, provider/model case,
        /// stop order and duplicates, map key order, -0.0.
        #[test]
        fn insignificant_differences_share_a_key(
            req in request(),
            lead in "[ \t\n]{0,3}",
            trail in "[ \t\n]{0,3}",
            rotate in 0usize..4,
        ) {
            let mut other = req.clone();
            other.provider = pad(&req.provider.to_ascii_uppercase(), &lead, &trail);
            other.model = pad(&req.model.to_ascii_uppercase(), &lead, &trail);
            for m in &mut other.messages {
                m.content = pad(&m.content, &lead, &trail);
            }
            other.params.system = req.params.system.as_ref().map(|s| pad(s, &lead, &trail));
            if !other.params.stop.is_empty() {
                let n = other.params.stop.len();
                other.params.stop.rotate_left(rotate % n);
                let first = other.params.stop[0].clone();
                other.params.stop.push(first);
            }
            if other.params.temperature == Some(0.0) {
                other.params.temperature = Some(-0.0);
            }
            // Rebuild every JSON object with its keys inserted in reverse order.
            for t in &mut other.params.tools {
                t.parameters = reversed(&t.parameters);
            }
            prop_assert_eq!(req.key(), other.key());
        }

        /// Anything that changes the output changes the key.
        #[test]
        fn significant_differences_change_the_key(req in request(), which in 0usize..11, at in any::<prop::sample::Index>()) {
            let mut other = req.clone();
            let i = at.index(other.messages.len());
            match which {
                0 => {
                    // Whitespace inside a prompt is significant.
                    let m = &mut other.messages[i].content;
                    let trimmed = m.trim().to_owned();
                    let cut = trimmed.char_indices().nth(1).map_or(trimmed.len(), |(p, _)| p);
                    *m = format!("{} {}", &trimmed[..cut], &trimmed[cut..]);
                }
                1 => other.messages[i].content.push('!'),
                2 => other.messages[i].role = match other.messages[i].role {
                    Role::User => Role::Assistant,
                    _ => Role::User,
                },
                3 => other.params.temperature = Some(other.params.temperature.map_or(0.7, |t| t + 0.125)),
                4 => other.params.max_tokens = Some(other.params.max_tokens.map_or(1, |t| t + 1)),
                5 => other.params.seed = Some(other.params.seed.map_or(0, |s| s.wrapping_add(1))),
                6 => other.params.stop.push("<END>".into()),
                7 => other.model.push('x'),
                8 => other.messages.push(ChatMessage::user("more")),
                9 => other.params.tools.push(ToolSpec { name: "search".into(), description: None, parameters: Value::Null }),
                _ => {
                    if other.messages.len() > 1
                        && (&other.messages[0].role, other.messages[0].content.trim())
                            != (&other.messages[1].role, other.messages[1].content.trim())
                    {
                        other.messages.swap(0, 1);
                    } else {
                        other.messages[0].name = Some("bob".into());
                    }
                }
            }
            prop_assert_ne!(req.key(), other.key());
        }
    }

    fn reversed(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(String, Value)> =
                    map.iter().map(|(k, v)| (k.clone(), reversed(v))).collect();
                entries.reverse();
                Value::Object(entries.into_iter().collect())
            }
            other => other.clone(),
        }
    }

    #[test]
    fn message_boundaries_are_unambiguous() {
        let p = RequestParams::default();
        let k = |messages: &[ChatMessage]| {
            CacheKey::compute(&CacheKeyRequest {
                provider: "p",
                model: "m",
                messages,
                params: &p,
            })
            .unwrap()
        };
        assert_ne!(
            k(&[ChatMessage::user("ab"), ChatMessage::user("c")]),
            k(&[ChatMessage::user("a"), ChatMessage::user("bc")])
        );
    }

    #[test]
    fn an_absent_parameter_differs_from_an_explicit_default() {
        let messages = [ChatMessage::user("hi")];
        let a = RequestParams::default();
        let b = RequestParams {
            temperature: Some(1.0),
            ..Default::default()
        };
        let k = |params: &RequestParams| {
            CacheKey::compute(&CacheKeyRequest {
                provider: "p",
                model: "m",
                messages: &messages,
                params,
            })
            .unwrap()
        };
        assert_ne!(k(&a), k(&b));
    }

    #[test]
    fn nan_has_no_key() {
        let params = RequestParams {
            top_p: Some(f64::NAN),
            ..Default::default()
        };
        let err = CacheKey::compute(&CacheKeyRequest {
            provider: "p",
            model: "m",
            messages: &[],
            params: &params,
        })
        .unwrap_err();
        assert!(matches!(err, ValidationError::Invalid { ref field, .. } if field == "top_p"));
    }

    #[test]
    fn key_shape_is_versioned_sha256_hex() {
        let key = CacheKey::compute(&CacheKeyRequest {
            provider: "p",
            model: "m",
            messages: &[],
            params: &RequestParams::default(),
        })
        .unwrap();
        let hex = key.as_str().strip_prefix("v1:").unwrap();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}
