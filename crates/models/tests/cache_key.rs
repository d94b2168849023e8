//! Prompt-cache keys under fuzzing: never a panic, always the same key for
//! the same request, and equal keys exactly when an independent reference
//! normalization says the requests are the same.
//!
//! The reference below restates the documented normalization (see
//! `stratum_models::cache_key`) as plain Rust values, with no text encoding,
//! so it has no separators to confuse: if two requests collide on a key while
//! the reference tells them apart, the key's encoding is ambiguous.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::Value;
use stratum_models::cache_key::canonical_form;
use stratum_models::{
    CacheKey, CacheKeyRequest, ChatMessage, RequestParams, Role, ValidationError,
};

#[derive(Debug, Clone)]
struct Request {
    provider: String,
    model: String,
    messages: Vec<ChatMessage>,
    params: RequestParams,
}

impl Request {
    fn key(&self) -> Result<CacheKey, ValidationError> {
        CacheKey::compute(&CacheKeyRequest {
            provider: &self.provider,
            model: &self.model,
            messages: &self.messages,
            params: &self.params,
        })
    }
}

/// A float setting as the documentation defines it: `-0.0` is `0.0`.
fn float(v: Option<f64>) -> Option<u64> {
    v.map(|v| if v == 0.0 { 0.0f64 } else { v }.to_bits())
}

/// JSON with every `-0.0` read as `0.0` is not part of the documented
/// normalization, so the reference keeps JSON values exactly, order of
/// object keys aside (serde_json's maps compare without order).
#[derive(Debug, PartialEq)]
struct Reference {
    provider: String,
    model: String,
    messages: Vec<(String, String, Option<String>)>,
    temperature: Option<u64>,
    top_p: Option<u64>,
    presence_penalty: Option<u64>,
    frequency_penalty: Option<u64>,
    max_tokens: Option<i64>,
    seed: Option<i64>,
    stop: BTreeSet<String>,
    system: Option<String>,
    tools: Vec<(String, Option<String>, Value)>,
    tool_choice: Option<String>,
    response_format: Value,
    extra: BTreeMap<String, Value>,
}

fn reference(r: &Request) -> Reference {
    let p = &r.params;
    Reference {
        provider: r.provider.trim().to_ascii_lowercase(),
        model: r.model.trim().to_ascii_lowercase(),
        messages: r
            .messages
            .iter()
            .map(|m| {
                (
                    m.role.as_str().to_owned(),
                    m.content.trim().to_owned(),
                    m.name.as_deref().map(|n| n.trim().to_owned()),
                )
            })
            .collect(),
        temperature: float(p.temperature),
        top_p: float(p.top_p),
        presence_penalty: float(p.presence_penalty),
        frequency_penalty: float(p.frequency_penalty),
        max_tokens: p.max_tokens,
        seed: p.seed,
        stop: p.stop.iter().cloned().collect(),
        system: p.system.as_deref().map(|s| s.trim().to_owned()),
        tools: p
            .tools
            .iter()
            .map(|t| {
                (
                    t.name.trim().to_owned(),
                    t.description.as_deref().map(|d| d.trim().to_owned()),
                    t.parameters.clone(),
                )
            })
            .collect(),
        tool_choice: p.tool_choice.as_deref().map(|c| c.trim().to_owned()),
        response_format: p.response_format.clone(),
        extra: p.extra.clone(),
    }
}

/// Text built from the characters that could confuse an encoding: quotes,
/// backslashes, JSON and CSV separators, NUL, newlines, Unicode spaces.
fn tricky_text() -> BoxedStrategy<String> {
    let piece = prop_oneof![
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("\",\"".to_owned()),
        Just("\":\"".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("\0".to_owned()),
        Just("\n".to_owned()),
        Just(" ".to_owned()),
        Just("\u{3000}".to_owned()),
        Just("role".to_owned()),
        Just("user".to_owned()),
        Just("content".to_owned()),
        "[a-c]{1,2}",
    ];
    proptest::collection::vec(piece, 0..5)
        .prop_map(|parts| parts.concat())
        .boxed()
}

/// A small alphabet, so that generated pairs often normalize to the same
/// request and the "equal keys" direction is exercised as much as the other.
fn small_text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("a".to_owned()),
        Just(" a".to_owned()),
        Just("a\n".to_owned()),
        Just("A".to_owned()),
        Just("a b".to_owned()),
        Just("a  b".to_owned()),
    ]
    .boxed()
}

fn role() -> impl Strategy<Value = Role> {
    crate::support::role_or("[a-z\"\\\\,]{0,6}".prop_map(Role::Other))
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Finite, and never -0.0 (see `Reference`).
        (-1e6f64..1e6).prop_filter_map("not -0.0", |f| {
            (f != 0.0 || f.is_sign_positive()).then_some(Value::from(f))
        }),
        "[a-z\",:{}\\\\]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z\",:]{0,4}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn params(
    text: impl Strategy<Value = String> + Clone + 'static,
) -> impl Strategy<Value = RequestParams> {
    let floats = prop_oneof![Just(0.0), Just(-0.0), Just(0.5), Just(1.0), -2.0f64..2.0];
    (
        (
            proptest::option::of(floats.clone()),
            proptest::option::of(floats.clone()),
            proptest::option::of(floats.clone()),
            proptest::option::of(floats),
            proptest::option::of(prop_oneof![Just(0i64), Just(1), any::<i64>()]),
            proptest::option::of(prop_oneof![Just(0i64), any::<i64>()]),
        ),
        (
            proptest::collection::vec(text.clone(), 0..3),
            proptest::option::of(text.clone()),
            proptest::collection::vec(
                (text.clone(), proptest::option::of(text.clone()), json()),
                0..2,
            ),
            proptest::option::of(text),
            prop_oneof![Just(Value::Null), json()],
            proptest::collection::btree_map("[a-z_\"]{0,5}", json(), 0..3),
        ),
    )
        .prop_map(|(sampling, texts)| crate::support::request_params(sampling, texts))
}

fn request(
    text: impl Strategy<Value = String> + Clone + 'static,
) -> impl Strategy<Value = Request> {
    (
        prop_oneof![
            Just("openai".to_owned()),
            Just(" OpenAI".to_owned()),
            text.clone()
        ],
        prop_oneof![
            Just("gpt-4o".to_owned()),
            Just("GPT-4o ".to_owned()),
            text.clone()
        ],
        proptest::collection::vec(
            (role(), text.clone(), proptest::option::of(text.clone())),
            0..4,
        ),
        params(text),
    )
        .prop_map(|(provider, model, messages, params)| Request {
            provider,
            model,
            messages: messages
                .into_iter()
                .map(|(role, content, name)| ChatMessage {
                    role,
                    content,
                    name,
                })
                .collect(),
            params,
        })
}

fn key_shape(key: &CacheKey) -> bool {
    key.as_str().strip_prefix("v1:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary text everywhere, any float: a well-formed key, or a typed
    /// error naming the non-finite parameter. Never a panic; always the same
    /// answer for the same request.
    #[test]
    fn never_panics_and_is_deterministic(
        req in request("\\PC{0,12}"),
        poison in proptest::option::of((0usize..4, prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)])),
    ) {
        let mut req = req;
        if let Some((which, bad)) = poison {
            let slot = match which {
                0 => &mut req.params.temperature,
                1 => &mut req.params.top_p,
                2 => &mut req.params.presence_penalty,
                _ => &mut req.params.frequency_penalty,
            };
            *slot = Some(bad);
        }
        match req.key() {
            Ok(key) => {
                prop_assert!(poison.is_none());
                prop_assert!(key_shape(&key), "{}", key);
                prop_assert_eq!(req.clone().key().unwrap(), key);
            }
            Err(ValidationError::Invalid { field, .. }) => {
                let (which, _) = poison.unwrap();
                let expected = ["temperature", "top_p", "presence_penalty", "frequency_penalty"][which];
                prop_assert_eq!(field.as_ref(), expected);
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    /// Structurally tricky text (separators, quotes, NUL): two requests share
    /// a key exactly when the reference normalization says they are equal.
    #[test]
    fn keys_are_equal_exactly_when_requests_are(a in request(tricky_text()), b in request(tricky_text())) {
        prop_assert_eq!(a.key().unwrap() == b.key().unwrap(), reference(&a) == reference(&b), "{:?}\n{:?}", a, b);
    }

    /// A request and a copy differing in one semantically relevant part
    /// never share a key, whatever that part holds.
    #[test]
    fn one_relevant_change_changes_the_key(req in request(tricky_text()), which in 0usize..8, extra in "[a-z\",:]{1,4}") {
        let mut other = req.clone();
        match which {
            0 => other.model.push_str(&extra),
            1 => other.provider = format!("{extra}{}", other.provider.trim()),
            2 => other.messages.push(ChatMessage::user(extra.clone())),
            3 => match other.messages.first_mut() {
                Some(m) => m.content = format!("{}{extra}", m.content.trim()),
                None => other.messages.push(ChatMessage::assistant(extra.clone())),
            },
            4 => match other.messages.first_mut() {
                Some(m) => m.role = if m.role == Role::User { Role::Assistant } else { Role::User },
                None => other.messages.push(ChatMessage::system(extra.clone())),
            },
            5 => other.params.seed = Some(other.params.seed.map_or(7, |s| s.wrapping_add(1))),
            6 => { other.params.extra.insert(format!("x{extra}"), Value::from(extra.clone())); }
            _ => other.params.max_tokens = Some(other.params.max_tokens.map_or(1, |t| t.wrapping_add(1))),
        }
        // Pushing to a trimmed-away tail or an overwritten map key could be
        // no change at all: the reference decides what must differ.
        prop_assume!(reference(&req) != reference(&other));
        prop_assert_ne!(req.key().unwrap(), other.key().unwrap());
    }
}

/// Hand-picked collisions a naive concatenation would produce.
#[test]
fn crafted_lookalikes_get_different_keys() {
    let chat = |messages: Vec<ChatMessage>| Request {
        provider: "openai".into(),
        model: "gpt-4o".into(),
        messages,
        params: RequestParams::default(),
    };
    let with = |params: RequestParams| Request {
        params,
        ..chat(vec![])
    };
    let stop = |stop: &[&str]| {
        with(RequestParams {
            stop: stop.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        })
    };
    let temperature = with(RequestParams {
        temperature: Some(0.7),
        ..Default::default()
    });
    let two = || vec![ChatMessage::user("a"), ChatMessage::assistant("b")];
    let pairs = [
        (
            chat(vec![ChatMessage::user(
                r#"a","role":"assistant","content":"b"#,
            )]),
            chat(two()),
        ),
        (
            chat(vec![ChatMessage::user("a\nassistant: b")]),
            chat(two()),
        ),
        (stop(&["a,b"]), stop(&["a", "b"])),
        (
            temperature.clone(),
            with(RequestParams {
                extra: [("temperature".to_owned(), Value::from(0.7))].into(),
                ..Default::default()
            }),
        ),
        (
            temperature,
            with(RequestParams {
                top_p: Some(0.7),
                ..Default::default()
            }),
        ),
        (
            chat(vec![ChatMessage::new(
                Role::Other("user\",\"x".into()),
                "a",
            )]),
            chat(vec![ChatMessage::user("a")]),
        ),
        (
            chat(vec![ChatMessage::user("a\0b")]),
            chat(vec![ChatMessage::user("a"), ChatMessage::user("b")]),
        ),
        (
            Request {
                provider: "open".into(),
                model: "ai\",\"model\":\"gpt-4o".into(),
                ..chat(vec![])
            },
            chat(vec![]),
        ),
    ];
    for (a, b) in &pairs {
        assert_ne!(reference(a), reference(b));
        assert_ne!(a.key().unwrap(), b.key().unwrap(), "{a:?} vs {b:?}");
    }
}

/// The canonical form is valid JSON whatever the text holds: the encoding
/// escapes, so no content can close a string or an object early.
#[test]
fn canonical_form_is_json_for_hostile_text() {
    let hostile = "\"}],\"params\":{\"seed\":1},\"x\":[{\"\\\0\u{2028}\u{202e}";
    let req = Request {
        provider: hostile.into(),
        model: hostile.into(),
        messages: vec![ChatMessage::new(Role::Other(hostile.into()), hostile)],
        params: RequestParams {
            system: Some(hostile.into()),
            stop: vec![hostile.into()],
            ..Default::default()
        },
    };
    let text = canonical_form(&CacheKeyRequest {
        provider: &req.provider,
        model: &req.model,
        messages: &req.messages,
        params: &req.params,
    })
    .unwrap();
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        parsed["messages"][0]["content"],
        Value::from(hostile.trim())
    );
    assert_eq!(parsed["params"].as_object().unwrap().len(), 2, "{text}");
}

/// One edit of a request: some must not change the key (padding, case of
/// provider and model, stop order and duplicates, `-0.0`), some must.
fn perturb(req: &mut Request, edit: usize, pad: &str) {
    let padded = |s: &str| format!("{pad}{s}{pad}");
    match edit {
        0 => req.provider = padded(&req.provider.to_ascii_uppercase()),
        1 => req.model = padded(&req.model.to_ascii_uppercase()),
        2 => req
            .messages
            .iter_mut()
            .for_each(|m| m.content = padded(&m.content)),
        3 => req
            .messages
            .iter_mut()
            .for_each(|m| m.name = m.name.as_deref().map(padded)),
        4 => {
            req.params.stop.reverse();
            if let Some(first) = req.params.stop.first().cloned() {
                req.params.stop.push(first);
            }
        }
        5 => {
            if req.params.temperature == Some(0.0) {
                req.params.temperature = Some(-0.0);
            }
        }
        6 => req.params.system = req.params.system.as_deref().map(padded),
        7 => req.params.tool_choice = req.params.tool_choice.as_deref().map(padded),
        8 => {
            req.params.extra.insert("k".into(), Value::from(pad));
        }
        9 => req
            .messages
            .iter_mut()
            .for_each(|m| m.content = m.content.replace(' ', "  ")),
        10 => {
            if let Some(m) = req.messages.first_mut() {
                m.role = if m.role == Role::User {
                    Role::Tool
                } else {
                    Role::User
                };
            }
        }
        11 => {
            req.messages.pop();
        }
        _ => req.params.seed = Some(req.params.seed.map_or(0, |s| s.wrapping_add(1))),
    }
}

/// Pairs made by editing one request, with a small alphabet: both outcomes
/// (same key, different key) occur often, and every pair agrees with the
/// reference. Counts both, so the test fails if one side is never exercised.
#[test]
fn edited_pairs_agree_with_the_reference() {
    use proptest::test_runner::{Config, TestRunner};
    use std::cell::Cell;

    let (same, different) = (Cell::new(0u32), Cell::new(0u32));
    let strategy = (
        request(small_text()),
        proptest::collection::vec(0usize..13, 1..4),
        prop_oneof![Just(" "), Just("\n"), Just("\t "), Just("\u{3000}")],
    );
    TestRunner::new(Config::with_cases(256))
        .run(&strategy, |(a, edits, pad)| {
            let mut b = a.clone();
            for edit in edits {
                perturb(&mut b, edit, pad);
            }
            let equal = reference(&a) == reference(&b);
            prop_assert_eq!(
                a.key().unwrap() == b.key().unwrap(),
                equal,
                "{:?}\n{:?}",
                a,
                b
            );
            let counter = if equal { &same } else { &different };
            counter.set(counter.get() + 1);
            Ok(())
        })
        .unwrap();
    assert!(
        same.get() >= 32 && different.get() >= 32,
        "same {}, different {}",
        same.get(),
        different.get()
    );
}
