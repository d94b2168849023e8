//! Against the real test server (STRATUM_TEST_MONGODB_URI): declared indexes,
//! duplicate keys, and writes refused before they are sent.

use futures::TryStreamExt;
use stratum_models::{
    ContextSnapshot, Conversation, Document, Message, ResponseCacheEntry, Role, StoreError,
    UsageRecord, ensure_indexes, find_by_id, insert, lookup_response,
};
use stratum_tests::TestDb;

fn now() -> bson::DateTime {
    bson::DateTime::now()
}

pub(crate) fn entry_for(prompt: &str) -> ResponseCacheEntry {
    crate::support::response_entry(prompt, now())
}

async fn index_docs(db: &mongodb::Database, collection: &str) -> Vec<bson::Document> {
    db.collection::<bson::Document>(collection)
        .list_indexes()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|model| {
            let mut doc = bson::doc! { "key": model.keys };
            if let Some(o) = model.options {
                doc.insert("name", o.name.unwrap_or_default());
                doc.insert("unique", o.unique.unwrap_or(false));
                if let Some(ttl) = o.expire_after {
                    doc.insert("expireAfterSeconds", ttl.as_secs() as i64);
                }
            }
            doc
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_indexes_creates_unique_and_ttl_indexes_idempotently() {
    let t = TestDb::new("models_indexes").await;
    let db = t.db();
    let names = ensure_indexes::<ResponseCacheEntry>(db).await.unwrap();
    assert_eq!(
        names,
        [
            "cache_key_unique",
            "expires_at_ttl",
            "provider_model_created_at"
        ]
    );

    let first = index_docs(db, ResponseCacheEntry::COLLECTION).await;
    let find = |name: &str| {
        first
            .iter()
            .find(|d| d.get_str("name") == Ok(name))
            .cloned()
    };
    let unique = find("cache_key_unique").expect("unique index listed");
    assert_eq!(unique.get_bool("unique"), Ok(true));
    assert_eq!(
        unique
            .get_document("key")
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["cache_key"]
    );
    let ttl = find("expires_at_ttl").expect("TTL index listed");
    assert_eq!(ttl.get_i64("expireAfterSeconds"), Ok(0));
    let compound = find("provider_model_created_at").expect("compound index listed");
    assert_eq!(
        compound
            .get_document("key")
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["provider", "model", "created_at"]
    );
    assert_eq!(first.len(), 4, "_id plus the three declared: {first:?}");

    // Again: no error, no new index, same definitions.
    ensure_indexes::<ResponseCacheEntry>(db).await.unwrap();
    let second = index_docs(db, ResponseCacheEntry::COLLECTION).await;
    assert_eq!(first, second);

    // Every other model's indexes are accepted by the server too.
    ensure_indexes::<Conversation>(db).await.unwrap();
    ensure_indexes::<Message>(db).await.unwrap();
    ensure_indexes::<ContextSnapshot>(db).await.unwrap();
    ensure_indexes::<UsageRecord>(db).await.unwrap();
    let message_indexes = index_docs(db, Message::COLLECTION).await;
    assert!(
        message_indexes
            .iter()
            .any(|d| d.get_str("name") == Ok("conversation_id_seq_unique")
                && d.get_bool("unique") == Ok(true))
    );
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_cache_key_is_rejected() {
    let t = TestDb::new("models_dupkey").await;
    let db = t.db();
    ensure_indexes::<ResponseCacheEntry>(db).await.unwrap();

    let first = entry_for("What is 2+2?");
    insert(db, &first).await.unwrap();
    // Same request up to end whitespace: same key, different _id.
    let again = entry_for("  What is 2+2?\n");
    assert_eq!(first.cache_key, again.cache_key);
    assert_ne!(first.id, again.id);
    let err = insert(db, &again).await.unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::DuplicateKey {
                collection: "llm_response_cache",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("E11000") || err.to_string().contains("duplicate"),
        "{err}"
    );

    // A different request is a different key and goes in.
    insert(db, &entry_for("What is 2+3?")).await.unwrap();
    let count = db
        .collection::<bson::Document>(ResponseCacheEntry::COLLECTION)
        .count_documents(bson::doc! {})
        .await
        .unwrap();
    assert_eq!(count, 2);
    let read: ResponseCacheEntry = find_by_id(db, &first.id).await.unwrap().unwrap();
    assert_eq!(read, first);
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_document_is_never_written() {
    let t = TestDb::new("models_invalid").await;
    let db = t.db();
    let mut bad = Message::new(
        bson::oid::ObjectId::new(),
        0,
        Role::parse(""),
        "hi",
        1,
        now(),
    );
    assert!(matches!(
        insert(db, &bad).await,
        Err(StoreError::Validation(_))
    ));
    bad.role = Role::User;
    bad.token_count = -1;
    assert!(matches!(
        insert(db, &bad).await,
        Err(StoreError::Validation(_))
    ));
    let mut big = entry_for("big");
    big.response.content = "x".repeat(stratum_models::MAX_BSON_DOCUMENT_SIZE);
    assert!(matches!(
        insert(db, &big).await,
        Err(StoreError::Validation(
            stratum_models::ValidationError::TooLarge { .. }
        ))
    ));
    let messages = db
        .collection::<bson::Document>(Message::COLLECTION)
        .count_documents(bson::doc! {})
        .await
        .unwrap();
    let entries = db
        .collection::<bson::Document>(ResponseCacheEntry::COLLECTION)
        .count_documents(bson::doc! {})
        .await
        .unwrap();
    assert_eq!((messages, entries), (0, 0));

    // A stored document that no longer decodes is a typed error on read.
    let id = bson::oid::ObjectId::new();
    db.collection::<bson::Document>(Message::COLLECTION)
        .insert_one(bson::doc! { "_id": id, "schema_version": 1, "role": "user" })
        .await
        .unwrap();
    let err = find_by_id::<Message>(db, &id).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Validation(stratum_models::ValidationError::Malformed { .. })
        ),
        "{err:?}"
    );
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_round_trips_through_the_server() {
    let t = TestDb::new("models_conversation").await;
    let db = t.db();
    ensure_indexes::<Message>(db).await.unwrap();
    let c = Conversation::new("gpt-4o", now()).with_user("u1");
    insert(db, &c).await.unwrap();
    for (seq, text) in ["hello", "hi, how can I help?"].into_iter().enumerate() {
        let role = if seq == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        insert(db, &Message::new(c.id, seq as i64, role, text, 3, now()))
            .await
            .unwrap();
    }
    // A retried append of seq 1 hits the (conversation_id, seq) unique index.
    let retry = Message::new(c.id, 1, Role::Assistant, "hi, how can I help?", 3, now());
    assert!(matches!(
        insert(db, &retry).await,
        Err(StoreError::DuplicateKey {
            collection: "messages",
            ..
        })
    ));
    assert_eq!(
        find_by_id::<Conversation>(db, &c.id).await.unwrap(),
        Some(c)
    );
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_counts_hits_and_never_serves_an_expired_entry() {
    let t = TestDb::new("models_lookup").await;
    let db = t.db();
    ensure_indexes::<ResponseCacheEntry>(db).await.unwrap();
    let clock = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis());

    let live = entry_for("live").with_ttl(std::time::Duration::from_secs(3600));
    let mut stale = entry_for("stale");
    stale.created_at = bson::DateTime::from_millis(clock.timestamp_millis() - 10_000);
    let stale = stale.with_ttl(std::time::Duration::from_secs(5));
    let forever = entry_for("forever");
    for e in [&live, &stale, &forever] {
        insert(db, e).await.unwrap();
    }

    let first = lookup_response(db, &live.cache_key, clock)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.hit_count, 1);
    let second = lookup_response(db, &live.cache_key, clock)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.hit_count, 2);
    assert_eq!(second.response, live.response);
    assert_eq!(
        lookup_response(db, &forever.cache_key, clock)
            .await
            .unwrap()
            .unwrap()
            .hit_count,
        1
    );

    // Expired but (probably) not swept yet: still stored, never served.
    assert_eq!(
        lookup_response(db, &stale.cache_key, clock).await.unwrap(),
        None
    );
    // A key that was never cached.
    assert_eq!(
        lookup_response(db, &entry_for("other").cache_key, clock)
            .await
            .unwrap(),
        None
    );
    t.cleanup().await;
}
