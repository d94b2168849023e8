//! Validation before the database: each broken rule is a typed error naming
//! the field, never a panic, and the checked conversions refuse to produce BSON.

use bson::oid::ObjectId;
use stratum_models::{
    ChatMessage, Document, MAX_BSON_DOCUMENT_SIZE, Message, ResponseCacheEntry, Role, TokenUsage,
    UsageRecord, ValidationError,
};

fn now() -> bson::DateTime {
    bson::DateTime::from_millis(1_700_000_000_000)
}

fn entry() -> ResponseCacheEntry {
    crate::support::response_entry("hello", now())
}

fn field_of(e: &ValidationError) -> String {
    match e {
        ValidationError::Blank { field }
        | ValidationError::OutOfRange { field, .. }
        | ValidationError::Invalid { field, .. } => field.to_string(),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn an_empty_role_is_refused() {
    let mut m = Message::new(ObjectId::new(), 0, Role::parse(""), "text", 1, now());
    assert_eq!(field_of(&m.validate().unwrap_err()), "role");
    m.role = Role::parse("   ");
    assert!(matches!(
        m.to_bson_checked(),
        Err(ValidationError::Blank { .. })
    ));
    // Inside a cache entry's prompt, the path says which message.
    let mut e = entry();
    e.prompt.push(ChatMessage::new(Role::parse(""), "x"));
    assert_eq!(field_of(&e.validate().unwrap_err()), "prompt[1].role");
}

#[test]
fn negative_and_absurd_token_counts_are_refused() {
    let mut e = entry();
    e.usage = TokenUsage::new(-1, 5);
    let err = e.validate().unwrap_err();
    assert!(
        matches!(err, ValidationError::OutOfRange { value: -1, .. }),
        "{err:?}"
    );
    assert_eq!(field_of(&err), "usage.prompt_tokens");

    e.usage = TokenUsage::new(5, 2_000_000_000);
    assert_eq!(
        field_of(&e.validate().unwrap_err()),
        "usage.completion_tokens"
    );

    e.usage = TokenUsage {
        prompt_tokens: 5,
        completion_tokens: 5,
        total_tokens: 11,
    };
    assert_eq!(field_of(&e.validate().unwrap_err()), "usage.total_tokens");

    let r = UsageRecord::new(
        "openai",
        "gpt-4o",
        stratum_models::CacheOutcome::Miss,
        now(),
    )
    .with_caller("acme", "ann")
    .with_tokens(i64::MIN, 0);
    assert_eq!(field_of(&r.validate().unwrap_err()), "tokens_in");
    let mut m = Message::new(ObjectId::new(), 0, Role::User, "x", i64::MAX, now());
    assert_eq!(field_of(&m.validate().unwrap_err()), "token_count");
    m.token_count = 1;
    m.seq = -3;
    assert_eq!(field_of(&m.validate().unwrap_err()), "seq");
}

#[test]
fn other_field_rules() {
    let mut e = entry();
    e.cost_usd = f64::NAN;
    assert_eq!(field_of(&e.validate().unwrap_err()), "cost_usd");
    let mut e = entry();
    e.expires_at = Some(bson::DateTime::from_millis(0));
    assert_eq!(field_of(&e.validate().unwrap_err()), "expires_at");
    let mut e = entry();
    e.provider = " ".into();
    assert_eq!(field_of(&e.validate().unwrap_err()), "provider");
    let mut e = entry();
    e.params.max_tokens = Some(0);
    assert_eq!(field_of(&e.validate().unwrap_err()), "params.max_tokens");
    let mut e = entry();
    e.schema_version = 99;
    assert_eq!(field_of(&e.validate().unwrap_err()), "schema_version");
}

#[test]
fn a_document_over_16_mib_is_refused_with_its_size() {
    let mut e = entry();
    e.response.content = "x".repeat(MAX_BSON_DOCUMENT_SIZE);
    assert!(
        e.validate().is_ok(),
        "every field rule holds; only the size is wrong"
    );
    match e.to_raw_checked() {
        Err(ValidationError::TooLarge { size, limit }) => {
            assert!(size > MAX_BSON_DOCUMENT_SIZE);
            assert_eq!(limit, MAX_BSON_DOCUMENT_SIZE);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Just under the limit is fine.
    let overhead = entry().to_raw_checked().unwrap().as_bytes().len() - 2;
    e.response.content = "x".repeat(MAX_BSON_DOCUMENT_SIZE - overhead - 1);
    let size = e.to_raw_checked().unwrap().as_bytes().len();
    assert!(size <= MAX_BSON_DOCUMENT_SIZE, "{size}");
}

#[test]
fn a_missing_required_field_is_malformed_not_a_panic() {
    let mut doc = entry().to_bson_checked().unwrap();
    doc.remove("provider");
    let err = ResponseCacheEntry::from_bson_checked(doc).unwrap_err();
    assert!(
        matches!(&err, ValidationError::Malformed { reason } if reason.contains("provider")),
        "{err:?}"
    );

    let mut doc = entry().to_bson_checked().unwrap();
    doc.insert("usage", "not a document");
    assert!(matches!(
        ResponseCacheEntry::from_bson_checked(doc),
        Err(ValidationError::Malformed { .. })
    ));

    // A stored document that decodes but breaks a rule is refused too.
    let mut doc = entry().to_bson_checked().unwrap();
    doc.insert("hit_count", -5_i64);
    assert!(matches!(
        ResponseCacheEntry::from_bson_checked(doc),
        Err(ValidationError::OutOfRange { .. })
    ));
}

/// A usage record names its caller: an empty, blank, oversized or
/// control-character tenant or user is a typed error naming the field; a
/// saving on anything but a cache hit is refused; a version 1 record
/// (written before callers) still validates without one.
#[test]
fn usage_records_name_a_valid_caller() {
    use stratum_models::CacheOutcome;
    let record = |tenant: &str, user: &str| {
        UsageRecord::new("openai", "gpt-4o", CacheOutcome::Miss, now()).with_caller(tenant, user)
    };
    assert!(record("acme", "ann@example.com").validate().is_ok());
    for (tenant, user, field) in [
        ("", "ann", "tenant"),
        ("acme", "  ", "user"),
        ("acme\n", "ann", "tenant"),
        ("acme", "ann\u{7f}", "user"),
        ("acme", &"x".repeat(257), "user"),
    ] {
        let err = record(tenant, user).validate().unwrap_err();
        assert!(
            matches!(
                err,
                ValidationError::Blank { .. } | ValidationError::Invalid { .. }
            ),
            "{err:?}"
        );
        assert_eq!(field_of(&err), field, "{tenant:?} {user:?}");
    }
    assert!(record("acme", &"x".repeat(256)).validate().is_ok());
    let saved_on_a_miss = record("acme", "ann").with_saved(0.01);
    assert_eq!(
        field_of(&saved_on_a_miss.validate().unwrap_err()),
        "saved_usd"
    );
    let mut old = UsageRecord::new("openai", "gpt-4o", CacheOutcome::Hit, now());
    old.schema_version = 1;
    assert!(old.validate().is_ok());
}
