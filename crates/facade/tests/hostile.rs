//! Hostile input against both stores: values that try to become query
//! operators, field names that try to become operators or paths, documents
//! too large or too deep. Every case runs on `MemoryStore` and on
//! `MongoStore` against the real test server, and checks both the typed
//! error and that nothing was written.

// Test helpers outside #[test] functions unwrap too: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use stratum::bson::{Bson, Document, doc};
use stratum::{Filter, IndexSpec, Order, Query, Store, StoreError, Update};

/// Values a user might type into a login form or a search box, hoping one
/// of them is read as an operator.
const HOSTILE_STRINGS: &[&str] = &[
    r#"{"$ne": null}"#,
    r#"{"$gt": ""}"#,
    r#"{"$regex": ".*"}"#,
    r#"{"$where": "return true"}"#,
    "$ne",
    "$where",
    "'; return true; var x='",
    "admin' || '1'=='1",
    ".*",
];

/// Field names that would be an operator, a path, or cut a C string short.
const HOSTILE_FIELDS: &[&str] = &["$where", "$ne", "$set", "a.b", ".", "x\0y", ""];

/// JSON bodies a client could send where a plain value is expected. Parsed
/// the way a web handler would (`serde_json` into `Bson`), some become
/// operator documents, one becomes a regex (extended JSON), one becomes code.
const HOSTILE_JSON: &[&str] = &[
    r#"{"$ne": null}"#,
    r#"{"$gt": ""}"#,
    r#"{"$where": "sleep(1000) || true"}"#,
    r#"{"$in": ["s3cret", "admin"]}"#,
    r#"{"$regularExpression": {"pattern": ".*", "options": ""}}"#,
    r#"{"$code": "function() { return true; }"}"#,
    r#"{"nested": {"$exists": true}}"#,
    r#"[{"$ne": null}]"#,
];

fn users() -> Vec<Document> {
    vec![
        doc! { "_id": 1, "name": "admin", "password": "s3cret", "role": "admin" },
        doc! { "_id": 2, "name": "guest", "role": "guest" },
        doc! { "_id": 3, "name": "carol", "password": Bson::Null, "role": "user" },
    ]
}

async fn seed(store: &dyn Store, collection: &str) {
    for user in users() {
        store.insert(collection, user).await.unwrap();
    }
}

/// Every document in `collection`, by `_id`.
async fn all(store: &dyn Store, collection: &str) -> Vec<Document> {
    store
        .find(
            collection,
            &Query::new(Filter::all()).sort("_id", Order::Ascending),
        )
        .await
        .unwrap()
}

/// What a user-supplied JSON value becomes after a web handler parses it.
fn parsed(json: &str) -> Bson {
    serde_json::from_str::<Bson>(json).unwrap()
}

fn assert_refused(what: &str, result: Result<impl std::fmt::Debug, StoreError>) -> StoreError {
    match result {
        Err(e @ (StoreError::InvalidField { .. } | StoreError::Validation { .. })) => e,
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

/// Checks that `result` is an `InvalidField` error naming `name`.
fn expect_named(name: &str, what: &str, result: Result<impl std::fmt::Debug, StoreError>) {
    let StoreError::InvalidField { field, .. } = assert_refused(what, result) else {
        panic!("{what}: {name:?} was refused, but not as an invalid field");
    };
    assert_eq!(field, name, "{what}: the error names the field");
}

/// The login lookup: a name and a password straight from a form. No hostile
/// string may match a document, whatever the store.
async fn login_lookups_match_nothing(store: &dyn Store, collection: &str) {
    seed(store, collection).await;
    let mut tried = 0;
    for hostile in HOSTILE_STRINGS {
        for (name, password) in [
            ("admin", *hostile),
            (*hostile, "s3cret"),
            (*hostile, *hostile),
        ] {
            let login = Filter::eq("name", name).and(Filter::eq("password", password));
            let found = store
                .find(collection, &Query::new(login.clone()))
                .await
                .unwrap();
            assert!(found.is_empty(), "{name:?}/{password:?} matched {found:?}");
            assert_eq!(store.count(collection, &login).await.unwrap(), 0);
            tried += 1;
        }
        let any = Filter::is_in("password", [*hostile, "nope"]);
        assert_eq!(store.count(collection, &any).await.unwrap(), 0, "{hostile}");
        assert_eq!(
            store
                .get(collection, &Bson::String((*hostile).into()))
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(tried, 3 * HOSTILE_STRINGS.len());
    // The control: the right password does match, so "nothing" above means something.
    let login = Filter::eq("name", "admin").and(Filter::eq("password", "s3cret"));
    assert_eq!(store.count(collection, &login).await.unwrap(), 1);
    assert_eq!(all(store, collection).await, users());
}

/// Operator documents and regexes arriving as values (parsed JSON) are
/// refused in filters, ids, updates and inserts, and nothing changes.
async fn operator_values_are_refused(store: &dyn Store, collection: &str) {
    seed(store, collection).await;
    let before = all(store, collection).await;
    for json in HOSTILE_JSON {
        let value = parsed(json);
        assert!(
            matches!(
                value,
                Bson::Document(_)
                    | Bson::Array(_)
                    | Bson::RegularExpression(_)
                    | Bson::JavaScriptCode(_)
            ),
            "{json} parsed as {value:?}"
        );
        let login = Filter::eq("name", "admin").and(Filter::eq("password", value.clone()));
        assert_refused(
            json,
            store.find(collection, &Query::new(login.clone())).await,
        );
        assert_refused(json, store.count(collection, &login).await);
        assert_refused(
            json,
            store
                .count(collection, &Filter::is_in("password", [value.clone()]))
                .await,
        );
        assert_refused(json, store.get(collection, &value).await);
        assert_refused(json, store.delete(collection, &value).await);
        if let Bson::RegularExpression(_) = value {
            // Stored, a regex is data: no query reads a stored value as a
            // pattern. Only filters and ids refuse it (checked above).
            continue;
        }
        let set = Update::new().set("password", value.clone());
        assert_refused(json, store.update(collection, &Bson::Int32(1), &set).await);
        assert_refused(json, store.upsert(collection, &Bson::Int32(9), &set).await);
        let push = Update::new().push("tags", value.clone());
        assert_refused(json, store.update(collection, &Bson::Int32(1), &push).await);
        assert_refused(
            json,
            store
                .insert(
                    collection,
                    doc! { "_id": 10, "name": "mallory", "password": value.clone() },
                )
                .await,
        );
        assert_refused(
            json,
            store
                .insert(collection, doc! { "_id": value, "name": "mallory" })
                .await,
        );
    }
    assert_eq!(all(store, collection).await, before, "nothing was written");
}

/// Hostile field names are refused in filters, sorts, indexes, updates and
/// documents (at any depth), with an error naming the field.
async fn operator_field_names_are_refused(store: &dyn Store, collection: &str) {
    seed(store, collection).await;
    let before = all(store, collection).await;
    let mut refusals = 0;
    for name in HOSTILE_FIELDS {
        let name = *name;
        let filters = [
            Filter::eq(name, 1),
            Filter::ne(name, 1),
            Filter::exists(name, true),
            Filter::is_in(name, [1]),
            Filter::eq("name", "admin").and(Filter::gt(name, 0)),
            Filter::eq("name", "admin").or(Filter::lte(name, 0)),
            Filter::eq("profile", doc! { name: 1 }),
        ];
        for filter in filters {
            expect_named(
                name,
                "a filter",
                store.find(collection, &Query::new(filter.clone())).await,
            );
            expect_named(name, "a count", store.count(collection, &filter).await);
            refusals += 2;
        }
        let sorted = Query::new(Filter::all())
            .sort("name", Order::Ascending)
            .sort(name, Order::Descending);
        expect_named(name, "a sort", store.find(collection, &sorted).await);
        expect_named(
            name,
            "an index",
            store
                .ensure_index(collection, &IndexSpec::new([(name, Order::Ascending)]))
                .await,
        );
        for update in [
            Update::new().set(name, 1),
            Update::new().unset(name),
            Update::new().inc(name, 1),
            Update::new().push(name, 1),
            Update::new().set("profile", doc! { name: 1 }),
            Update::new().push("tags", doc! { "ok": { name: 1 } }),
        ] {
            expect_named(
                name,
                "an update",
                store.update(collection, &Bson::Int32(1), &update).await,
            );
            expect_named(
                name,
                "an upsert",
                store.upsert(collection, &Bson::Int32(9), &update).await,
            );
            refusals += 2;
        }
        for document in [
            doc! { "_id": 10, name: "x" },
            doc! { "_id": 10, "profile": { name: "x" } },
            doc! { "_id": 10, "list": [1, { "deep": [{ name: "x" }] }] },
            doc! { "_id": { name: 1 } },
        ] {
            expect_named(name, "an insert", store.insert(collection, document).await);
            refusals += 1;
        }
        refusals += 2;
    }
    assert_eq!(refusals, HOSTILE_FIELDS.len() * (7 * 2 + 6 * 2 + 4 + 2));
    assert_eq!(all(store, collection).await, before, "nothing was written");
}

/// Hostile strings are data: they are stored and read back verbatim, and
/// match exactly themselves.
async fn hostile_strings_round_trip(store: &dyn Store, collection: &str) {
    for (i, hostile) in HOSTILE_STRINGS.iter().enumerate() {
        let id = Bson::Int32(i32::try_from(i).unwrap());
        let document = doc! { "_id": id.clone(), "name": *hostile, "tags": [*hostile] };
        store.insert(collection, document.clone()).await.unwrap();
        assert_eq!(store.get(collection, &id).await.unwrap(), Some(document));
        let updated = store
            .update(
                collection,
                &id,
                &Update::new().set("note", *hostile).push("tags", "$set"),
            )
            .await
            .unwrap();
        assert_eq!(updated.get_str("note").unwrap(), *hostile);
        let found = store
            .find(collection, &Query::new(Filter::eq("name", *hostile)))
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{hostile} matches exactly itself");
        assert_eq!(found[0].get("_id"), Some(&id));
    }
    let count = store.count(collection, &Filter::all()).await.unwrap();
    assert_eq!(count, u64::try_from(HOSTILE_STRINGS.len()).unwrap());
}

/// A document of `bytes` encoded bytes: one string field padded to size.
fn document_of(bytes: usize) -> Document {
    // Overhead: 4 (length) + 1 (type) + 5 ("blob\0") + 4 (string length)
    // + 1 (string NUL) + 1 (document NUL) + the `_id` int32 element (1 + 4 + 4).
    let overhead = 4 + 1 + 5 + 4 + 1 + 1 + 9;
    let document = doc! { "_id": 1, "blob": "x".repeat(bytes - overhead) };
    assert_eq!(stratum::bson::to_vec(&document).unwrap().len(), bytes);
    document
}

const MIB: usize = 1024 * 1024;

/// Over 16 MiB is refused before any write; at the limit is accepted.
async fn oversize_documents_are_refused(store: &dyn Store, collection: &str) {
    let over = document_of(16 * MIB + 1);
    let err = assert_refused("16 MiB + 1", store.insert(collection, over).await);
    assert!(err.to_string().contains("16777217 bytes"), "{err}");
    assert_eq!(
        store.count(collection, &Filter::all()).await.unwrap(),
        0,
        "nothing was written"
    );
    // Growing a stored document past the limit with an update: refused, unchanged.
    let half = doc! { "_id": 2, "blob": "y".repeat(9 * MIB) };
    store.insert(collection, half.clone()).await.unwrap();
    let grow = Update::new().set("more", "z".repeat(9 * MIB));
    assert_refused(
        "an update over 16 MiB",
        store.update(collection, &Bson::Int32(2), &grow).await,
    );
    let unchanged = store
        .get(collection, &Bson::Int32(2))
        .await
        .unwrap()
        .unwrap();
    assert!(
        unchanged.get("more").is_none(),
        "the update was not applied"
    );
    assert_eq!(unchanged.get_str("blob").unwrap().len(), 9 * MIB);
    assert_eq!(store.count(collection, &Filter::all()).await.unwrap(), 1);
}

/// Nesting deeper than MongoDB's 100 levels is refused without a stack
/// overflow, in documents, values, filters and updates.
async fn deep_documents_are_refused(store: &dyn Store, collection: &str) {
    for depth in [101, 200, 1_000] {
        let mut value = Bson::Int32(1);
        for _ in 0..depth {
            value = Bson::Document(doc! { "a": value });
        }
        let mut list = Bson::Int32(1);
        for _ in 0..depth {
            list = Bson::Array(vec![list]);
        }
        for deep in [value, list] {
            let what = format!("{depth} levels");
            assert_refused(
                &what,
                store
                    .insert(collection, doc! { "_id": 1, "deep": deep.clone() })
                    .await,
            );
            assert_refused(
                &what,
                store
                    .count(collection, &Filter::eq("deep", deep.clone()))
                    .await,
            );
            let set = Update::new().set("deep", deep.clone());
            assert_refused(&what, store.upsert(collection, &Bson::Int32(1), &set).await);
            assert_refused(&what, store.get(collection, &deep).await);
        }
        let mut filter = Filter::eq("a", 1);
        for i in 0..i32::try_from(depth).unwrap() {
            filter = if i % 2 == 0 {
                Filter::eq("b", i).or(filter)
            } else {
                Filter::eq("c", i).and(filter)
            };
        }
        let what = format!("a filter {depth} levels deep");
        assert_refused(&what, store.count(collection, &filter).await);
    }
    assert_eq!(
        store.count(collection, &Filter::all()).await.unwrap(),
        0,
        "nothing was written"
    );
    // 99 levels under the top-level document is within MongoDB's limit.
    let mut value = Bson::Int32(1);
    for _ in 0..98 {
        value = Bson::Document(doc! { "a": value });
    }
    store
        .insert(collection, doc! { "_id": 1, "deep": value })
        .await
        .unwrap();
}

/// The embedded store.
mod memory {
    use stratum::MemoryStore;

    #[tokio::test]
    async fn login_lookups_match_nothing() {
        super::login_lookups_match_nothing(&MemoryStore::new(), "users").await;
    }

    #[tokio::test]
    async fn operator_values_are_refused() {
        super::operator_values_are_refused(&MemoryStore::new(), "users").await;
    }

    #[tokio::test]
    async fn operator_field_names_are_refused() {
        super::operator_field_names_are_refused(&MemoryStore::new(), "users").await;
    }

    #[tokio::test]
    async fn hostile_strings_round_trip() {
        super::hostile_strings_round_trip(&MemoryStore::new(), "notes").await;
    }

    #[tokio::test]
    async fn oversize_documents_are_refused() {
        super::oversize_documents_are_refused(&MemoryStore::new(), "blobs").await;
    }

    #[tokio::test]
    async fn deep_documents_are_refused() {
        super::deep_documents_are_refused(&MemoryStore::new(), "deep").await;
    }
}

/// The official driver against the test server, one fresh database per test.
#[cfg(feature = "mongodb")]
mod mongo {
    use stratum::MongoStore;
    use stratum_tests::TestDb;

    use super::*;

    async fn store() -> (MongoStore, TestDb) {
        let db = TestDb::new("facade_hostile").await;
        (MongoStore::new(db.db().clone()), db)
    }

    #[tokio::test]
    async fn login_lookups_match_nothing() {
        let (store, db) = store().await;
        super::login_lookups_match_nothing(&store, "users").await;
        db.cleanup().await;
    }

    /// Without the typed filter, the raw driver shows what is at stake: the
    /// same parsed JSON, put straight into a query, logs in as anyone.
    #[tokio::test]
    async fn the_same_value_in_a_raw_query_would_match() {
        let (store, db) = store().await;
        seed(&store, "users").await;
        let raw = db.db().collection::<Document>("users");
        let injected = doc! { "name": "admin", "password": parsed(r#"{"$ne": null}"#) };
        assert_eq!(
            raw.count_documents(injected).await.unwrap(),
            1,
            "the attack works on a raw query"
        );
        let typed = Filter::eq("name", "admin").and(Filter::eq("password", r#"{"$ne": null}"#));
        assert_eq!(
            store.count("users", &typed).await.unwrap(),
            0,
            "and not through the store"
        );
        db.cleanup().await;
    }

    #[tokio::test]
    async fn operator_values_are_refused() {
        let (store, db) = store().await;
        super::operator_values_are_refused(&store, "users").await;
        db.cleanup().await;
    }

    #[tokio::test]
    async fn operator_field_names_are_refused() {
        let (store, db) = store().await;
        super::operator_field_names_are_refused(&store, "users").await;
        db.cleanup().await;
    }

    #[tokio::test]
    async fn hostile_strings_round_trip() {
        let (store, db) = store().await;
        super::hostile_strings_round_trip(&store, "notes").await;
        db.cleanup().await;
    }

    #[tokio::test]
    async fn oversize_documents_are_refused() {
        let (store, db) = store().await;
        super::oversize_documents_are_refused(&store, "blobs").await;
        // Checked with the raw driver too: the collection holds one document.
        let raw = db.db().collection::<Document>("blobs");
        assert_eq!(raw.count_documents(doc! {}).await.unwrap(), 1);
        db.cleanup().await;
    }

    /// A configured limit below 16 MiB binds the MongoDB store as it binds the
    /// embedded one, for updates that grow a document too.
    #[tokio::test]
    async fn a_configured_limit_binds_updates() {
        let (store, db) = store().await;
        let store = store.with_max_document_bytes(1024);
        let memory = stratum::MemoryStore::from_config(&stratum::config::sections::StoreConfig {
            max_document_bytes: 1024,
            ..Default::default()
        });
        for store in [&store as &dyn Store, &memory] {
            assert_refused(
                "2 KiB insert",
                store
                    .insert("c", doc! { "_id": 1, "b": "x".repeat(2048) })
                    .await,
            );
            store
                .insert("c", doc! { "_id": 1, "b": "x".repeat(600) })
                .await
                .unwrap();
            let grow = Update::new().set("c", "y".repeat(600));
            assert_refused(
                "a growing update",
                store.update("c", &Bson::Int32(1), &grow).await,
            );
            let grow = Update::new().push("list", "y".repeat(600));
            assert_refused(
                "a growing push",
                store.upsert("c", &Bson::Int32(1), &grow).await,
            );
            let kept = store.get("c", &Bson::Int32(1)).await.unwrap().unwrap();
            assert_eq!(
                kept,
                doc! { "_id": 1, "b": "x".repeat(600) },
                "{}",
                store.backend()
            );
            // A small update still goes through; an upsert creates; a missing id is not found.
            store
                .update("c", &Bson::Int32(1), &Update::new().set("n", 1))
                .await
                .unwrap();
            let created = store
                .upsert("c", &Bson::Int32(2), &Update::new().set("n", 2))
                .await
                .unwrap();
            assert_eq!(created, doc! { "_id": 2, "n": 2 });
            let missing = store
                .update("c", &Bson::Int32(3), &Update::new().set("n", 3))
                .await;
            assert!(
                matches!(missing, Err(StoreError::NotFound { .. })),
                "{missing:?}"
            );
        }
        db.cleanup().await;
    }

    #[tokio::test]
    async fn deep_documents_are_refused() {
        let (store, db) = store().await;
        super::deep_documents_are_refused(&store, "deep").await;
        db.cleanup().await;
    }
}
