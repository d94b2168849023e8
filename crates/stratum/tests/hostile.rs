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
        for i in 0..depth {
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

/// One test per suite function, on each store: the embedded one, and the
/// official driver against the test server in a fresh database.
macro_rules! on_both_stores {
    ($($suite:ident($collection:literal)),* $(,)?) => {
        /// The embedded store.
        mod memory {
            $(
                #[tokio::test]
                async fn $suite() {
                    super::$suite(&stratum::MemoryStore::new(), $collection).await;
                }
            )*
        }

        /// `MongoStore` against the test server.
        #[cfg(feature = "mongodb")]
        mod mongo_store {
            $(
                #[tokio::test]
                async fn $suite() {
                    let (store, db) = super::mongo::store().await;
                    super::$suite(&store, $collection).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

on_both_stores!(
    login_lookups_match_nothing("users"),
    operator_values_are_refused("users"),
    operator_field_names_are_refused("users"),
    hostile_strings_round_trip("notes"),
    oversize_documents_are_refused("blobs"),
    deep_documents_are_refused("deep"),
);

/// What only the MongoDB store can show.
#[cfg(feature = "mongodb")]
mod mongo {
    use stratum::MongoStore;
    use stratum_tests::TestDb;

    use super::*;

    pub(super) async fn store() -> (MongoStore, TestDb) {
        let db = TestDb::new("facade_hostile").await;
        (MongoStore::new(db.db().clone()), db)
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

    /// A configured limit below 16 MiB binds the MongoDB store as it binds the
    /// embedded one, for updates that grow a document too.
    #[tokio::test]
    async fn a_configured_limit_binds_updates() {
        let (store, db) = store().await;
        let store = store.with_max_document_bytes(1024);
        let memory = stratum::MemoryStore::from_config(&stratum::config::StoreConfig {
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
}

/// Configuration from a hostile or careless hand: nonsense durations, wrong
/// types, unknown keys, out-of-range numbers, and fuzzed text. Always a
/// typed error naming the field, never a panic. Over every layer's keys, so
/// only in a build with every layer.
#[cfg(all(
    feature = "breaker",
    feature = "cache",
    feature = "pool",
    feature = "monitor"
))]
mod config {
    use std::time::Duration;

    use proptest::prelude::*;
    use stratum::config::keys;
    use stratum::{ConfigError, ConfigErrorKind, StratumConfig};

    /// Every duration field: its section and its key.
    const DURATIONS: &[(&str, &str)] = &[
        ("mongodb", "connect_timeout"),
        ("mongodb", "server_selection_timeout"),
        ("mongodb", "operation_timeout"),
        ("cache", "time_to_live"),
        ("cache", "time_to_idle"),
        ("cache", "max_stale"),
        ("breaker", "slow_call_duration_threshold"),
        ("breaker", "max_wait_in_half_open"),
        ("pool", "acquire_timeout"),
        ("pool", "idle_timeout"),
        ("pool", "max_lifetime"),
        ("monitor", "upkeep_interval"),
    ];

    /// Durations no one means: negative, unknown units, overflow, empty,
    /// look-alike Unicode digits and units.
    const NONSENSE: &[&str] = &[
        "-1s",
        "1 fortnight",
        "99999999999999999999s",
        "18446744073709551616ms",
        "",
        " ",
        "５s",
        "1ｓ",
        "∞",
        "NaN",
        "1.5.5s",
        "s",
        "1h -5m",
        "9999999999999 years",
        "\u{0}1s",
        "1s\u{202e}",
    ];

    /// A TOML basic string holding `raw` exactly.
    fn toml_string(raw: &str) -> String {
        let mut out = String::from("\"");
        for c in raw.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn toml_err(text: &str) -> ConfigError {
        match StratumConfig::builder().toml(text).build() {
            Ok(config) => panic!("{text:?} was accepted: {config:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn nonsense_durations_name_their_field() {
        let mut cases = 0;
        for (section, key) in DURATIONS {
            let field = format!("{section}.{key}");
            for value in NONSENSE {
                let text = format!("[{section}]\n{key} = {}\n", toml_string(value));
                let err = toml_err(&text);
                assert_eq!(err.field(), field, "{text:?}: {err}");
                cases += 1;
            }
            // A bare number or a boolean is a wrong type, not a duration.
            for value in ["30", "true", "1.5", "[\"1s\"]", "{ secs = 1 }"] {
                let err = toml_err(&format!("[{section}]\n{key} = {value}\n"));
                assert!(matches!(err.kind(), ConfigErrorKind::Parse { .. }), "{err}");
                assert_eq!(err.location().map(|l| l.line), Some(2), "{err}");
                assert_eq!(err.field(), field, "{value}: {err}");
                cases += 1;
            }
            let var = stratum::config::env_name(&field);
            for value in NONSENSE.iter().filter(|v| !v.trim().is_empty()) {
                let err = StratumConfig::builder()
                    .env_vars([(var.as_str(), *value)])
                    .build()
                    .unwrap_err();
                assert_eq!(err.field(), var, "{value:?}: {err}");
                cases += 1;
            }
        }
        // In range for humantime, out of range for the field: validation
        // names the field.
        for var in [
            "STRATUM_MONGODB_CONNECT_TIMEOUT",
            "STRATUM_MONGODB_OPERATION_TIMEOUT",
        ] {
            let err = StratumConfig::builder()
                .env_vars([(var, "400years")])
                .build()
                .unwrap_err();
            assert!(err.field().starts_with("mongodb."), "{err}");
            cases += 1;
        }
        assert_eq!(cases, 12 * (16 + 5 + 14) + 2);
    }

    #[test]
    fn wrong_types_unknown_keys_and_out_of_range_numbers_name_the_field() {
        let cases: &[(&str, &str)] = &[
            // Wrong types.
            ("[pool]\nmax_size = \"16\"", "pool.max_size"),
            ("[pool]\nmax_size = 1.5", "pool.max_size"),
            ("[cache]\nenabled = 1", "cache.enabled"),
            ("[cache]\nenabled = \"yes\"", "cache.enabled"),
            ("[monitor]\nlisten = 9000", "monitor.listen"),
            ("[monitor]\nlisten = \"0.0.0.0\"", "monitor.listen"),
            ("[mongodb]\nuri = 5", "mongodb.uri"),
            ("[mongodb]\nuri = \"\"", "mongodb.uri"),
            ("[mongodb]\ndatabase = [\"a\"]", "mongodb.database"),
            ("[breaker]\nsliding_window = [1]", "breaker.sliding_window"),
            (
                "[breaker]\nfailure_rate_threshold = \"50%\"",
                "breaker.failure_rate_threshold",
            ),
            ("[store]\nbackend = 1", "store.backend"),
            ("[store]\nbackend = \"MongoDB \"", "store.backend"),
            ("cache = 5", "cache"),
            ("cache = \"on\"", "cache"),
            // Unknown keys: the key itself is named.
            ("[cache]\nttll = \"30s\"", "cache.ttll"),
            ("[pool]\nmax_szie = 4", "pool.max_szie"),
            (
                "[monitor]\nlisten = \"127.0.0.1:9000\"\nexpose = true",
                "monitor.expose",
            ),
            // Out of range for the type: the parser refuses.
            ("[pool]\nmax_size = -1", "pool.max_size"),
            (
                "[cache]\nmax_capacity = -9223372036854775808",
                "cache.max_capacity",
            ),
            // Out of range for the field: validation refuses.
            ("[pool]\nmax_size = 0", "pool.max_size"),
            ("[pool]\nmax_size = 4294967295", "pool.max_size"),
            ("[cache]\nmax_capacity = 0", "cache.max_capacity"),
            (
                "[breaker]\nfailure_rate_threshold = inf",
                "breaker.failure_rate_threshold",
            ),
            (
                "[breaker]\nfailure_rate_threshold = -inf",
                "breaker.failure_rate_threshold",
            ),
            (
                "[breaker]\nfailure_rate_threshold = -0.0",
                "breaker.failure_rate_threshold",
            ),
            (
                "[breaker]\nfailure_rate_threshold = 100.000001",
                "breaker.failure_rate_threshold",
            ),
            (
                "[breaker]\nslow_call_rate_threshold = nan",
                "breaker.slow_call_rate_threshold",
            ),
            (
                "[breaker]\nsliding_window = { type = \"count_based\", size = 0 }",
                "breaker.sliding_window.size",
            ),
            (
                "[breaker]\npermitted_calls_in_half_open = 10001",
                "breaker.permitted_calls_in_half_open",
            ),
            (
                "[store]\nmax_document_bytes = 15",
                "store.max_document_bytes",
            ),
            (
                "[store]\nmax_document_bytes = 16777217",
                "store.max_document_bytes",
            ),
            ("[mongodb]\ndatabase = \"a/b\"", "mongodb.database"),
            ("[mongodb]\ndatabase = \"nul\\u0000\"", "mongodb.database"),
            ("[mongodb]\napp_name = \"\"", "mongodb.app_name"),
            (
                "[monitor]\nupkeep_interval = \"0s\"",
                "monitor.upkeep_interval",
            ),
            ("[cache]\ntime_to_live = \"0s\"", "cache.time_to_live"),
            ("[cache]\nname = \"mine\"", "cache.name"),
            ("[pool]\nmax_size = 99999999999999999999", "pool.max_size"),
            // Syntax errors belong to no field, but carry a position.
            ("[cache\nttl = \"1s\"", ""),
            ("[cache]\nttl = \"1s", ""),
            ("[cache]\n[cache]", ""),
            ("[cache]\nname = \"a\"\nname = \"b\"", ""),
            ("= 5", ""),
            ("[[cache]]\ntime_to_live = \"1s\"", "cache"),
            ("nosuch = 1", "nosuch"),
        ];
        for (text, field) in cases {
            let err = toml_err(text);
            assert_eq!(err.field(), *field, "{text:?}: {err}");
            if let Some(at) = err.location() {
                assert!(
                    at.line >= 1 && at.column >= 1,
                    "{text:?}: a position: {err}"
                );
            }
            let shown = err.to_string();
            assert!(
                shown.contains(field),
                "{text:?}: the message names the field: {shown}"
            );
        }
    }

    /// The section headers and keys the schema knows, the keys of the last
    /// release, plus one it never knew.
    fn known_word() -> impl Strategy<Value = String> {
        let mut words: Vec<String> = keys()
            .iter()
            .flat_map(|k| k.path.split('.').map(str::to_owned).collect::<Vec<_>>())
            .chain(
                stratum::config::RENAMED
                    .iter()
                    .map(|r| r.from.rsplit('.').next().unwrap_or_default().to_owned()),
            )
            .chain(["nosuch".to_owned()])
            .collect();
        words.sort();
        words.dedup();
        proptest::sample::select(words)
    }

    /// TOML-ish values: right and wrong types, edge numbers, odd strings.
    fn toml_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            Just("inf".to_owned()),
            Just("-nan".to_owned()),
            Just("true".to_owned()),
            Just("\"off\"".to_owned()),
            "\\PC{0,16}".prop_map(|s| toml_string(&s)),
            "[0-9]{1,25}(ms|s|m|h|d|years| fortnight)?".prop_map(|s| format!("\"{s}\"")),
            "-?[0-9]{1,3}(\\.[0-9]{1,3})?(e[+-]?[0-9]{1,3})?",
            "\\[[0-9, \"a-z]{0,12}\\]",
            "\\{ ?[a-z]{1,4} = [0-9]{1,3} ?\\}",
            "\\{ type = \"(constant|count_based|time_based|exponential)\", [a-z]{1,8} = [0-9]{1,3} \\}",
            "\"(127\\.0\\.0\\.1|0\\.0\\.0\\.0|\\[::1?\\]|localhost):[0-9]{1,6}\"",
            "\"mongodb(\\+srv)?://[a-z:@%/?=&.,0-9]{0,24}\"",
        ]
    }

    /// Lines of TOML soup: headers, keys with values, and stray bytes.
    fn toml_soup() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            known_word().prop_map(|w| format!("[{w}]")),
            known_word().prop_map(|w| format!("[[{w}]]")),
            (known_word(), toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
            (known_word(), known_word(), toml_value())
                .prop_map(|(a, b, v)| format!("{a}.{b} = {v}")),
            "[\\[\\]=\"'#{},.a-z0-9 \\\\]{0,16}",
        ];
        proptest::collection::vec(line, 0..8).prop_map(|lines| lines.join("\n"))
    }

    fn never_panics(text: &str) -> Result<(), TestCaseError> {
        match StratumConfig::builder().toml(text).build() {
            Ok(config) => prop_assert!(config.validate().is_ok()),
            Err(err) => prop_assert!(
                !matches!(err.kind(), ConfigErrorKind::Read { .. }),
                "{text:?}: {err:?}"
            ),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary bytes (lossy UTF-8) are a configuration or a typed error.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            never_panics(&String::from_utf8_lossy(&bytes))?;
        }

        /// TOML-shaped soup over the real schema's words.
        #[test]
        fn toml_soup_never_panics(text in toml_soup()) {
            never_panics(&text)?;
        }

        /// Any text in any environment variable: parsed, or refused naming the
        /// variable (or, for a value that parses but is out of range, its key).
        #[test]
        fn arbitrary_env_values_never_panic(var in 0..keys().len(), value in "\\PC{0,24}") {
            let key = &keys()[var];
            match StratumConfig::builder().env_vars([(key.env.as_str(), value.as_str())]).build() {
                Ok(config) => prop_assert!(config.validate().is_ok()),
                Err(err) => {
                    let field = err.field();
                    prop_assert!(
                        field == key.env || field.starts_with(&key.path) || field == "mongodb.uri",
                        "{}: {err}", key.env
                    );
                }
            }
        }

        /// Valid values written as TOML and as environment variables come back
        /// exactly: durations through humantime, numbers, booleans, addresses.
        #[test]
        fn valid_values_round_trip(
            ttl_ms in 1u64..=86_400_000,
            wait_ms in 1u64..=86_400_000,
            max_capacity in 1u64..=1 << 40,
            max_size in 2usize..=10_000,
            threshold in 1u32..=100,
            enabled in any::<bool>(),
            port in 1u16..,
        ) {
            let ttl = Duration::from_millis(ttl_ms);
            let wait = Duration::from_millis(wait_ms);
            let text = format!(
                "[cache]\ntime_to_live = \"{}\"\nmax_capacity = {max_capacity}\nenabled = {enabled}\n\
                 [pool]\nmax_size = {max_size}\nacquire_timeout = \"{}\"\n\
                 [breaker]\nfailure_rate_threshold = {threshold}.0\n\
                 [monitor]\nlisten = \"127.0.0.1:{port}\"\n",
                humantime::format_duration(ttl),
                humantime::format_duration(wait),
            );
            let from_file = StratumConfig::builder().toml(text.as_str()).build().unwrap();
            let from_env = StratumConfig::builder()
                .env_vars([
                    ("STRATUM_CACHE_TIME_TO_LIVE", humantime::format_duration(ttl).to_string()),
                    ("STRATUM_CACHE_MAX_CAPACITY", max_capacity.to_string()),
                    ("STRATUM_CACHE_ENABLED", enabled.to_string()),
                    ("STRATUM_POOL_MAX_SIZE", max_size.to_string()),
                    ("STRATUM_POOL_ACQUIRE_TIMEOUT", humantime::format_duration(wait).to_string()),
                    ("STRATUM_BREAKER_FAILURE_RATE_THRESHOLD", threshold.to_string()),
                    ("STRATUM_MONITOR_LISTEN", format!("127.0.0.1:{port}")),
                ])
                .build()
                .unwrap();
            for config in [&from_file, &from_env] {
                prop_assert_eq!(config.cache.time_to_live, Some(ttl));
                prop_assert_eq!(config.cache.max_capacity, max_capacity);
                prop_assert_eq!(config.cache.enabled, enabled);
                prop_assert_eq!(config.pool.max_size, max_size);
                prop_assert_eq!(config.pool.acquire_timeout, wait);
                prop_assert_eq!(config.breaker.failure_rate_threshold, f64::from(threshold));
                prop_assert_eq!(config.monitor.listen.port(), port);
            }
            prop_assert_eq!(&from_file, &from_env);
        }
    }
}

/// Connection strings: fuzzed, and structured ones with a planted password.
mod uri {
    use proptest::prelude::*;
    use stratum::MongoUri;

    /// Characters that must be percent-encoded in the credentials.
    fn encode(raw: &str) -> String {
        let mut out = String::new();
        for byte in raw.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(char::from(byte));
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out
    }

    fn structured() -> impl Strategy<Value = (String, String)> {
        (
            prop_oneof![Just("mongodb://"), Just("mongodb+srv://")],
            "[a-z][a-z0-9_]{0,7}",
            "\\PC{1,12}",
            proptest::collection::vec("[a-z][a-z0-9-]{0,8}(\\.[a-z]{2,4})?(:[0-9]{1,5})?", 1..4),
            proptest::option::of("[a-z][a-z0-9_]{0,8}"),
            proptest::collection::vec(
                prop_oneof![
                    Just("replicaSet=rs0".to_owned()),
                    Just("tls=true".to_owned()),
                    Just("directConnection=true".to_owned()),
                    "[A-Za-z0-9]{1,8}".prop_map(|t| format!(
                        "authMechanismProperties=AWS_SESSION_TOKEN:PLANTED{t}"
                    )),
                    "[A-Za-z0-9]{1,8}"
                        .prop_map(|t| format!("tlsCertificateKeyFilePassword=PLANTED{t}")),
                ],
                0..3,
            ),
        )
            .prop_map(|(scheme, user, secret, hosts, db, options)| {
                // The marker makes "does it show" unambiguous: no host,
                // option or user name holds it.
                let password = format!("PLANTED{secret}");
                let mut uri = format!("{scheme}{user}:{}@{}", encode(&password), hosts.join(","));
                if db.is_some() || !options.is_empty() {
                    uri.push('/');
                }
                if let Some(db) = db {
                    uri.push_str(&db);
                }
                if !options.is_empty() {
                    uri.push('?');
                    uri.push_str(&options.join("&"));
                }
                (uri, password)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text, any bytes: a URI or a typed error, never a panic.
        #[test]
        fn arbitrary_input_never_panics(text in "\\PC{0,80}", bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            for input in [text, String::from_utf8_lossy(&bytes).into_owned()] {
                if let Ok(uri) = MongoUri::parse(&input) {
                    // Whatever was accepted renders and re-parses.
                    let again = MongoUri::parse(uri.expose_secret());
                    prop_assert_eq!(again, Ok(uri.clone()));
                    prop_assert!(MongoUri::parse(uri.redacted()).is_ok());
                }
                let _ = stratum::uri::scrub(&input);
            }
        }

        /// A well-formed URI with a planted password: accepted, round-trips,
        /// and no rendering shows the password in either form.
        #[test]
        fn planted_passwords_never_render((text, password) in structured()) {
            let uri = MongoUri::parse(&text).unwrap();
            prop_assert_eq!(uri.expose_secret(), text.as_str());
            prop_assert_eq!(MongoUri::parse(uri.expose_secret()).unwrap(), uri.clone());
            prop_assert!(uri.has_password());
            let encoded = encode(&password);
            let renderings = [
                uri.to_string(),
                format!("{uri:?}"),
                format!("{uri:#?}"),
                uri.redacted().to_owned(),
                uri.scrub(&format!("failed: {text} (password {password}, {encoded})")),
                stratum::uri::scrub(&format!("failed: {text}")),
            ];
            for shown in &renderings {
                prop_assert!(!shown.contains("PLANTED"), "{}", shown);
            }
            // Redaction is stable: the redacted form parses to itself.
            let again = MongoUri::parse(uri.redacted()).unwrap();
            prop_assert_eq!(again.redacted(), uri.redacted());
        }
    }
}
