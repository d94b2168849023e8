//! The `Store` contract as executable cases. Every case is generic over the
//! store and is run, unchanged, against `MemoryStore` and `MongoStore` (see
//! `conformance_suite!`), so the two cannot drift apart.

use std::time::Duration;
use stratum_store::bson::{Bson, Document, doc, oid::ObjectId};

use stratum_store::bson::DateTime;
use stratum_store::{
    Filter, Grouping, IndexDirection, IndexSpec, Order, Query, Store, StoreError, Update,
};

/// Expands to one `#[tokio::test]` per case, each with a fresh store from
/// `$make` (an async fn returning the store and a guard kept alive for the
/// test).
macro_rules! conformance_suite {
    ($make:path) => {
        conformance_suite!(@cases $make;
            get_missing_is_none,
            insert_generates_an_object_id,
            numeric_ids_are_one_id,
            duplicate_id_is_a_duplicate_key,
            unique_index_refuses_repeats,
            unique_index_over_repeated_data_fails,
            conflicting_index_options_are_refused,
            indexes_keep_their_name_and_ttl,
            invalid_indexes_are_refused,
            update_missing_id_is_not_found,
            update_operators,
            failed_update_changes_nothing,
            push_to_non_array_is_refused,
            upsert_creates_then_updates,
            delete_reports_whether_it_deleted,
            count_with_every_filter,
            eq_matches_array_elements,
            range_filters_stay_within_a_type,
            find_sorts_skips_and_limits,
            sort_orders_across_types,
            hostile_values_stay_values,
            hostile_field_names_are_refused,
            operator_documents_as_values_are_refused,
            oversize_documents_are_refused,
            encoded_documents_follow_the_same_rules,
            invalid_collection_names_are_refused,
            ping_answers,
            ttl_index_deletes_expired_documents,
            group_counts_and_sums_per_key_and_day,
            group_sums_only_numbers,
            group_keeps_values_values_and_refuses_bad_names,
        );
    };
    (@ignored $make:path, $reason:literal; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            #[ignore = $reason]
            async fn $case() {
                let (store, _guard) = $make().await;
                crate::conformance::$case(&store).await;
            }
        )*
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $make().await;
                crate::conformance::$case(&store).await;
            }
        )*
    };
}

const C: &str = "things";

fn ids(docs: &[Document]) -> Vec<i32> {
    docs.iter().map(|d| d.get_i32("_id").unwrap()).collect()
}

async fn seed<S: Store>(s: &S, docs: Vec<Document>) {
    for d in docs {
        s.insert(C, d).await.unwrap();
    }
}

pub(crate) async fn get_missing_is_none<S: Store>(s: &S) {
    assert_eq!(s.get("never_written", &Bson::Int32(1)).await.unwrap(), None);
    s.insert(C, doc! { "_id": 1 }).await.unwrap();
    assert_eq!(s.get(C, &Bson::Int32(2)).await.unwrap(), None);
    assert_eq!(s.get(C, &Bson::String("1".into())).await.unwrap(), None);
}

pub(crate) async fn insert_generates_an_object_id<S: Store>(s: &S) {
    let id = s.insert(C, doc! { "text": "hi", "n": 1 }).await.unwrap();
    assert!(matches!(id, Bson::ObjectId(_)), "{id:?}");
    let got = s.get(C, &id).await.unwrap().unwrap();
    let keys: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(keys, ["_id", "text", "n"]);
    assert_eq!(got, doc! { "_id": id, "text": "hi", "n": 1 });
}

pub(crate) async fn numeric_ids_are_one_id<S: Store>(s: &S) {
    s.insert(C, doc! { "_id": 7, "v": "seven" }).await.unwrap();
    for id in [Bson::Int32(7), Bson::Int64(7), Bson::Double(7.0)] {
        let got = s.get(C, &id).await.unwrap();
        assert_eq!(
            got.map(|d| d.get_str("v").unwrap().to_owned()),
            Some("seven".into()),
            "{id:?}"
        );
    }
    let err = s.insert(C, doc! { "_id": 7i64 }).await.unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err}");
}

pub(crate) async fn duplicate_id_is_a_duplicate_key<S: Store>(s: &S) {
    let oid = ObjectId::new();
    s.insert(C, doc! { "_id": oid, "v": 1 }).await.unwrap();
    let err = s.insert(C, doc! { "_id": oid, "v": 2 }).await.unwrap_err();
    match &err {
        StoreError::DuplicateKey { collection, .. } => assert_eq!(collection, C),
        other => panic!("expected a duplicate key, got {other:?}"),
    }
    assert!(!err.is_breaker_failure());
    assert_eq!(
        s.get(C, &Bson::ObjectId(oid))
            .await
            .unwrap()
            .unwrap()
            .get_i32("v")
            .unwrap(),
        1
    );
}

pub(crate) async fn unique_index_refuses_repeats<S: Store>(s: &S) {
    let unique = IndexSpec::new([("email", Order::Ascending)]).unique();
    s.ensure_index(C, &unique).await.unwrap();
    s.ensure_index(C, &unique).await.unwrap(); // declaring it again is a no-op
    s.insert(C, doc! { "_id": 1, "email": "a@x" })
        .await
        .unwrap();
    s.insert(C, doc! { "_id": 2, "email": "b@x" })
        .await
        .unwrap();
    let err = s
        .insert(C, doc! { "_id": 3, "email": "a@x" })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err}");
    // Updates and upserts are checked too, and a refused write changes nothing.
    let err = s
        .update(C, &Bson::Int32(2), &Update::new().set("email", "a@x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err}");
    let err = s
        .upsert(C, &Bson::Int32(9), &Update::new().set("email", "b@x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err}");
    assert_eq!(
        s.get(C, &Bson::Int32(2))
            .await
            .unwrap()
            .unwrap()
            .get_str("email")
            .unwrap(),
        "b@x"
    );
    assert_eq!(s.count(C, &Filter::all()).await.unwrap(), 2);
    // A missing field counts as null: one document may lack it, a second may not.
    s.insert(C, doc! { "_id": 4 }).await.unwrap();
    let err = s.insert(C, doc! { "_id": 5 }).await.unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err}");
    // Updating a document to its own key is fine.
    s.update(
        C,
        &Bson::Int32(1),
        &Update::new().set("email", "a@x").set("n", 1),
    )
    .await
    .unwrap();
}

pub(crate) async fn unique_index_over_repeated_data_fails<S: Store>(s: &S) {
    seed(
        s,
        vec![
            doc! { "_id": 1, "k": "same" },
            doc! { "_id": 2, "k": "same" },
        ],
    )
    .await;
    let err = s
        .ensure_index(C, &IndexSpec::new([("k", Order::Ascending)]).unique())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err}");
    // The index was not created: a third repeat is accepted.
    s.insert(C, doc! { "_id": 3, "k": "same" }).await.unwrap();
}

pub(crate) async fn conflicting_index_options_are_refused<S: Store>(s: &S) {
    let keys = [("k", Order::Ascending)];
    s.ensure_index(C, &IndexSpec::new(keys)).await.unwrap();
    let err = s
        .ensure_index(C, &IndexSpec::new(keys).unique())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Validation { .. }), "{err}");
    assert!(!err.is_breaker_failure());
}

pub(crate) async fn indexes_keep_their_name_and_ttl<S: Store>(s: &S) {
    assert_eq!(s.indexes(C).await.unwrap(), [], "no collection, no indexes");
    let ttl = IndexSpec::ttl("expires_at_ttl", "expires_at", Duration::from_secs(3600));
    let unique = IndexSpec::compound(
        "tenant_seq",
        [
            ("tenant", IndexDirection::Ascending),
            ("seq", IndexDirection::Descending),
        ],
    )
    .unique();
    for index in [&ttl, &unique, &ttl] {
        s.ensure_index(C, index).await.unwrap();
    }
    let listed = s.indexes(C).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0].name, "_id_");
    for declared in [&ttl, &unique] {
        assert!(
            listed.iter().any(|i| i.same_definition(declared)),
            "{declared} not in {listed:?}"
        );
    }
    // The same index under another name (as an earlier release or another
    // tool made it) is already there: accepted, and nothing is added.
    s.ensure_index(C, &ttl.clone().named("expires_at_1"))
        .await
        .unwrap();
    assert_eq!(s.indexes(C).await.unwrap(), listed);
    // The same name or the same keys with other options is refused, and
    // nothing changes.
    let refused = [
        ttl.clone().expiring_after(Duration::from_secs(60)),
        IndexSpec::ascending("expires_at_ttl", ["other"]),
    ];
    for index in &refused {
        let Err(err) = s.ensure_index(C, index).await else {
            panic!("{index} was accepted");
        };
        assert!(
            matches!(err, StoreError::Validation { .. }),
            "{index}: {err}"
        );
    }
    assert_eq!(s.indexes(C).await.unwrap(), listed);
}

pub(crate) async fn invalid_indexes_are_refused<S: Store>(s: &S) {
    let refused = [
        IndexSpec::new(Vec::<(&'static str, Order)>::new()),
        IndexSpec::new([("$where", Order::Ascending)]),
        IndexSpec::ascending("", ["a"]),
        IndexSpec::ascending("a", ["a", "b"]).expiring_after(Duration::ZERO),
        IndexSpec::ttl("a", "a", Duration::from_millis(1500)),
        IndexSpec::ttl("a", "a", Duration::from_secs(1 << 31)),
    ];
    for index in &refused {
        let Err(err) = s.ensure_index(C, index).await else {
            panic!("{index} was accepted");
        };
        assert!(
            matches!(
                err,
                StoreError::Validation { .. } | StoreError::InvalidField { .. }
            ),
            "{index}: {err}"
        );
    }
    assert_eq!(s.indexes(C).await.unwrap(), []);
}

pub(crate) async fn update_missing_id_is_not_found<S: Store>(s: &S) {
    let err = s
        .update(C, &Bson::Int32(404), &Update::new().set("a", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert!(!err.is_breaker_failure());
    assert_eq!(
        s.count(C, &Filter::all()).await.unwrap(),
        0,
        "update must not create"
    );
}

pub(crate) async fn update_operators<S: Store>(s: &S) {
    s.insert(
        C,
        doc! { "_id": 1, "title": "old", "gone": true, "n": 1, "f": 1.5, "tags": ["a"] },
    )
    .await
    .unwrap();
    let after = s
        .update(
            C,
            &Bson::Int32(1),
            &Update::new()
                .set("title", "new")
                .unset("gone")
                .inc("n", 2)
                .inc("f", 1)
                .inc("fresh", 5i64)
                .push("tags", "b")
                .push("list", doc! { "role": "user" }),
        )
        .await
        .unwrap();
    let expected = doc! {
        "_id": 1, "title": "new", "n": 3, "f": 2.5, "tags": ["a", "b"],
        "fresh": 5i64, "list": [ { "role": "user" } ],
    };
    assert_eq!(after, expected);
    assert_eq!(s.get(C, &Bson::Int32(1)).await.unwrap().unwrap(), expected);
    assert_eq!(after.get("n"), Some(&Bson::Int32(3)), "i32 + i32 stays i32");
    // Unsetting a missing field is not an error.
    s.update(C, &Bson::Int32(1), &Update::new().unset("never"))
        .await
        .unwrap();
}

pub(crate) async fn failed_update_changes_nothing<S: Store>(s: &S) {
    s.insert(C, doc! { "_id": 1, "s": "text", "n": 1 })
        .await
        .unwrap();
    let err = s
        .update(C, &Bson::Int32(1), &Update::new().inc("n", 1).inc("s", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Validation { .. }), "{err}");
    assert!(!err.is_breaker_failure());
    assert_eq!(
        s.get(C, &Bson::Int32(1)).await.unwrap().unwrap(),
        doc! { "_id": 1, "s": "text", "n": 1 }
    );
}

pub(crate) async fn push_to_non_array_is_refused<S: Store>(s: &S) {
    s.insert(C, doc! { "_id": 1, "tags": "scalar" })
        .await
        .unwrap();
    let err = s
        .update(C, &Bson::Int32(1), &Update::new().push("tags", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Validation { .. }), "{err}");
}

pub(crate) async fn upsert_creates_then_updates<S: Store>(s: &S) {
    let id = Bson::String("conv-1".into());
    let created = s
        .upsert(
            C,
            &id,
            &Update::new()
                .set("title", "t")
                .inc("turns", 1)
                .push("msgs", "hi"),
        )
        .await
        .unwrap();
    assert_eq!(
        created,
        doc! { "_id": "conv-1", "msgs": ["hi"], "title": "t", "turns": 1 }
    );
    let updated = s
        .upsert(C, &id, &Update::new().inc("turns", 1).push("msgs", "again"))
        .await
        .unwrap();
    assert_eq!(
        updated,
        doc! { "_id": "conv-1", "msgs": ["hi", "again"], "title": "t", "turns": 2 }
    );
    assert_eq!(s.count(C, &Filter::all()).await.unwrap(), 1);
    assert_eq!(s.get(C, &id).await.unwrap().unwrap(), updated);
}

pub(crate) async fn delete_reports_whether_it_deleted<S: Store>(s: &S) {
    assert!(!s.delete("never_written", &Bson::Int32(1)).await.unwrap());
    seed(s, vec![doc! { "_id": 1 }, doc! { "_id": 2 }]).await;
    assert!(s.delete(C, &Bson::Int32(1)).await.unwrap());
    assert!(!s.delete(C, &Bson::Int32(1)).await.unwrap());
    assert_eq!(s.get(C, &Bson::Int32(1)).await.unwrap(), None);
    assert_eq!(s.count(C, &Filter::all()).await.unwrap(), 1);
    // The id is free again.
    s.insert(C, doc! { "_id": 1 }).await.unwrap();
}

pub(crate) async fn count_with_every_filter<S: Store>(s: &S) {
    seed(
        s,
        vec![
            doc! { "_id": 1, "role": "user", "tokens": 10 },
            doc! { "_id": 2, "role": "assistant", "tokens": 250 },
            doc! { "_id": 3, "role": "user", "tokens": 40.5 },
            doc! { "_id": 4, "role": "system", "tokens": Bson::Null },
            doc! { "_id": 5, "role": "user" },
        ],
    )
    .await;
    let cases: Vec<(Filter, u64)> = vec![
        (Filter::all(), 5),
        (Filter::eq("role", "user"), 3),
        (Filter::ne("role", "user"), 2),
        (Filter::gt("tokens", 10), 2),
        (Filter::gte("tokens", 10), 3),
        (Filter::lt("tokens", 40.5), 1),
        (Filter::lte("tokens", 40.5), 2),
        (
            Filter::gte("tokens", 10i64).and(Filter::lt("tokens", 100.0)),
            2,
        ),
        (Filter::is_in("role", ["system", "assistant"]), 2),
        (Filter::exists("tokens", true), 4),
        (Filter::exists("tokens", false), 1),
        (Filter::eq("tokens", Bson::Null), 2), // null matches missing too
        (Filter::ne("tokens", Bson::Null), 3),
        (
            Filter::eq("role", "system").or(Filter::gt("tokens", 100)),
            2,
        ),
        (Filter::id(3), 1),
        (Filter::eq("role", "nobody"), 0),
        // A batch by id (a repository's prefetch; the embedded store looks
        // it up by id): numbers equal across types, an id repeated, one absent.
        (
            Filter::is_in(
                "_id",
                [
                    Bson::Int32(1),
                    Bson::Double(3.0),
                    Bson::Int64(9),
                    Bson::Int32(1),
                ],
            ),
            2,
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(s.count(C, &filter).await.unwrap(), expected, "{filter:?}");
        let found = s.find(C, &Query::new(filter.clone())).await.unwrap();
        assert_eq!(found.len() as u64, expected, "find {filter:?}");
    }
}

pub(crate) async fn eq_matches_array_elements<S: Store>(s: &S) {
    seed(
        s,
        vec![
            doc! { "_id": 1, "tags": ["a", "b"] },
            doc! { "_id": 2, "tags": ["c"] },
        ],
    )
    .await;
    assert_eq!(s.count(C, &Filter::eq("tags", "a")).await.unwrap(), 1);
    assert_eq!(
        s.count(C, &Filter::eq("tags", vec!["a", "b"]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.count(C, &Filter::is_in("tags", ["b", "c"]))
            .await
            .unwrap(),
        2
    );
    assert_eq!(s.count(C, &Filter::ne("tags", "a")).await.unwrap(), 1);
}

pub(crate) async fn range_filters_stay_within_a_type<S: Store>(s: &S) {
    seed(
        s,
        vec![
            doc! { "_id": 1, "v": 5 },
            doc! { "_id": 2, "v": "5" },
            doc! { "_id": 3, "v": "zzz" },
            doc! { "_id": 4, "v": true },
        ],
    )
    .await;
    assert_eq!(
        ids(&s.find(C, &Query::new(Filter::gt("v", 1))).await.unwrap()),
        [1]
    );
    assert_eq!(
        ids(&s
            .find(
                C,
                &Query::new(Filter::gt("v", "1")).sort("_id", Order::Ascending)
            )
            .await
            .unwrap()),
        [2, 3]
    );
    assert_eq!(s.count(C, &Filter::lt("v", 100)).await.unwrap(), 1);
}

pub(crate) async fn find_sorts_skips_and_limits<S: Store>(s: &S) {
    let docs = (0..10)
        .map(|i| doc! { "_id": i, "score": (i * 7) % 10, "group": i % 2 })
        .collect();
    seed(s, docs).await;
    let q = |query: Query| async move { ids(&s.find(C, &query).await.unwrap()) };
    // scores by id: 0,7,4,1,8,5,2,9,6,3
    assert_eq!(
        q(Query::new(Filter::all())
            .sort("score", Order::Descending)
            .limit(3))
        .await,
        [7, 4, 1]
    );
    assert_eq!(
        q(Query::new(Filter::all())
            .sort("score", Order::Ascending)
            .skip(2)
            .limit(3))
        .await,
        [6, 9, 2]
    );
    assert_eq!(
        q(Query::new(Filter::all())
            .sort("group", Order::Ascending)
            .sort("score", Order::Descending)
            .limit(4))
        .await,
        [4, 8, 2, 6]
    );
    assert_eq!(
        q(Query::new(Filter::eq("group", 1)).sort("_id", Order::Descending)).await,
        [9, 7, 5, 3, 1]
    );
    assert!(q(Query::new(Filter::all()).limit(0)).await.is_empty());
    assert!(
        q(Query::new(Filter::all())
            .sort("_id", Order::Ascending)
            .skip(50))
        .await
        .is_empty()
    );
    assert_eq!(q(Query::new(Filter::all()).limit(20)).await.len(), 10);
}

pub(crate) async fn sort_orders_across_types<S: Store>(s: &S) {
    seed(
        s,
        vec![
            doc! { "_id": 1, "v": "apple" },
            doc! { "_id": 2, "v": 2.5 },
            doc! { "_id": 3, "v": true },
            doc! { "_id": 4, "v": 10i64 },
            doc! { "_id": 5, "v": { "x": 1 } },
            doc! { "_id": 6, "v": 3 },
            doc! { "_id": 7, "v": "Banana" },
        ],
    )
    .await;
    let asc = s
        .find(C, &Query::new(Filter::all()).sort("v", Order::Ascending))
        .await
        .unwrap();
    assert_eq!(ids(&asc), [2, 6, 4, 7, 1, 5, 3]);
    let desc = s
        .find(C, &Query::new(Filter::all()).sort("v", Order::Descending))
        .await
        .unwrap();
    assert_eq!(ids(&desc), [3, 5, 1, 7, 4, 6, 2]);
}

pub(crate) async fn hostile_values_stay_values<S: Store>(s: &S) {
    let hostile = r#"{"$ne": null}"#;
    seed(
        s,
        vec![
            doc! { "_id": 1, "name": hostile },
            doc! { "_id": 2, "name": "bob" },
        ],
    )
    .await;
    assert_eq!(
        ids(&s
            .find(C, &Query::new(Filter::eq("name", hostile)))
            .await
            .unwrap()),
        [1]
    );
    assert_eq!(
        s.count(C, &Filter::eq("name", r#"{"$gt": ""}"#))
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.get(C, &Bson::String(hostile.into())).await.unwrap(), None);
    let updated = s
        .update(
            C,
            &Bson::Int32(2),
            &Update::new().set("name", r#"{"$set": 1}"#),
        )
        .await
        .unwrap();
    assert_eq!(updated.get_str("name").unwrap(), r#"{"$set": 1}"#);
}

pub(crate) async fn hostile_field_names_are_refused<S: Store>(s: &S) {
    let is_invalid_field =
        |r: Result<(), StoreError>| matches!(r, Err(StoreError::InvalidField { .. }));
    for name in ["$where", "a.b", "nul\0", ""] {
        let mut bad = Document::new();
        bad.insert(name, 1);
        assert!(
            is_invalid_field(s.insert(C, bad).await.map(drop)),
            "insert {name:?}"
        );
        let nested = doc! { "ok": { name: 1 } };
        assert!(
            is_invalid_field(s.insert(C, nested).await.map(drop)),
            "nested {name:?}"
        );
        assert!(
            is_invalid_field(s.count(C, &Filter::eq(name, 1)).await.map(drop)),
            "filter {name:?}"
        );
        assert!(
            is_invalid_field(
                s.find(C, &Query::new(Filter::all()).sort(name, Order::Ascending))
                    .await
                    .map(drop)
            ),
            "sort {name:?}"
        );
        assert!(
            is_invalid_field(
                s.upsert(C, &Bson::Int32(1), &Update::new().set(name, 1))
                    .await
                    .map(drop)
            ),
            "update {name:?}"
        );
        assert!(
            is_invalid_field(
                s.ensure_index(C, &IndexSpec::new([(name, Order::Ascending)]))
                    .await
            ),
            "index {name:?}"
        );
    }
    assert_eq!(
        s.count(C, &Filter::all()).await.unwrap(),
        0,
        "nothing was written"
    );
}

pub(crate) async fn operator_documents_as_values_are_refused<S: Store>(s: &S) {
    s.insert(C, doc! { "_id": 1, "name": "x" }).await.unwrap();
    let op = doc! { "$ne": Bson::Null };
    let err = s
        .count(C, &Filter::eq("name", op.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidField { .. }), "{err}");
    let err = s.get(C, &Bson::Document(op.clone())).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidField { .. }), "{err}");
    let err = s.delete(C, &Bson::Document(op.clone())).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidField { .. }), "{err}");
    let err = s
        .update(C, &Bson::Int32(1), &Update::new().set("name", op))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidField { .. }), "{err}");
    assert_eq!(s.count(C, &Filter::all()).await.unwrap(), 1);
}

pub(crate) async fn oversize_documents_are_refused<S: Store>(s: &S) {
    let big = "x".repeat(17 * 1024 * 1024);
    let err = s
        .insert(C, doc! { "_id": 1, "blob": big.as_str() })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Validation { .. }), "{err}");
    s.insert(C, doc! { "_id": 2 }).await.unwrap();
    let err = s
        .update(C, &Bson::Int32(2), &Update::new().set("blob", big.as_str()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Validation { .. }), "{err}");
    assert_eq!(
        s.get(C, &Bson::Int32(2)).await.unwrap().unwrap(),
        doc! { "_id": 2 }
    );
    assert_eq!(s.count(C, &Filter::all()).await.unwrap(), 1);
}

/// `insert_raw` and `get_raw` (the typed path's encoded documents) mean
/// what `insert` and `get` mean.
pub(crate) async fn encoded_documents_follow_the_same_rules<S: Store>(s: &S) {
    use stratum_store::bson::RawDocumentBuf;
    let raw = |d: Document| RawDocumentBuf::from_document(&d).unwrap();

    let id = s
        .insert_raw(C, raw(doc! { "_id": 1, "n": { "k": [1, 2] } }))
        .await
        .unwrap();
    assert_eq!(id, Bson::Int32(1));
    let got = s.get_raw(C, &id).await.unwrap().unwrap();
    assert_eq!(
        got.to_document().unwrap(),
        s.get(C, &id).await.unwrap().unwrap()
    );
    assert_eq!(
        got.to_document().unwrap(),
        doc! { "_id": 1, "n": { "k": [1, 2] } }
    );
    assert!(s.get_raw(C, &Bson::Int32(9)).await.unwrap().is_none());

    // No `_id`, or not first: one is generated or moved first, as by `insert`.
    let generated = s.insert_raw(C, raw(doc! { "x": 1 })).await.unwrap();
    assert!(matches!(generated, Bson::ObjectId(_)));
    s.insert_raw(C, raw(doc! { "x": 2, "_id": 3 }))
        .await
        .unwrap();
    let moved = s.get(C, &Bson::Int32(3)).await.unwrap().unwrap();
    assert_eq!(moved.keys().next().map(String::as_str), Some("_id"));

    let err = s.insert_raw(C, raw(doc! { "_id": 1 })).await.unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err}");
    for bad in [
        doc! { "_id": 4, "ok": { "$where": 1 } },
        doc! { "_id": 5, "a.b": 1 },
    ] {
        let err = s.insert_raw(C, raw(bad)).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidField { .. }), "{err}");
    }
    let err = s.insert_raw(C, raw(doc! { "_id": [1] })).await.unwrap_err();
    assert!(matches!(err, StoreError::Validation { .. }), "{err}");
    let big = "x".repeat(17 * 1024 * 1024);
    let err = s
        .insert_raw(C, raw(doc! { "_id": 6, "blob": big.as_str() }))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Validation { .. }), "{err}");
    assert_eq!(s.count(C, &Filter::all()).await.unwrap(), 3);
}

pub(crate) async fn invalid_collection_names_are_refused<S: Store>(s: &S) {
    for name in ["", "a$b", "system.users"] {
        let err = s.insert(name, doc! { "x": 1 }).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Validation { .. }),
            "{name:?}: {err}"
        );
        let err = s.get(name, &Bson::Int32(1)).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Validation { .. }),
            "{name:?}: {err}"
        );
    }
}

pub(crate) async fn ping_answers<S: Store>(s: &S) {
    s.ping().await.unwrap();
}

pub(crate) async fn unique_index_follows_updates<S: Store>(s: &S) {
    s.ensure_index(C, &IndexSpec::new([("tag", Order::Ascending)]).unique())
        .await
        .unwrap();
    // A key an update moved away from is free again.
    s.insert(C, doc! { "_id": 1, "tag": "b" }).await.unwrap();
    s.update(C, &Bson::Int32(1), &Update::new().set("tag", "a"))
        .await
        .unwrap();
    s.insert(C, doc! { "_id": 2, "tag": "b" }).await.unwrap();
    // So is the implicit null of a missing field.
    s.insert(C, doc! { "_id": 3 }).await.unwrap();
    s.update(C, &Bson::Int32(3), &Update::new().set("tag", "c"))
        .await
        .unwrap();
    s.insert(C, doc! { "_id": 4 }).await.unwrap();
    // And a deleted document's key.
    assert!(s.delete(C, &Bson::Int32(2)).await.unwrap());
    s.insert(C, doc! { "_id": 5, "tag": "b" }).await.unwrap();
}

/// How long a store may take to delete an expired document: `MemoryStore`
/// never returns one; MongoDB's TTL monitor deletes them in a sweep (the
/// MongoDB half of the suite sets `ttlMonitorSleepSecs` to 1 so a sweep
/// comes within this bound instead of every 60 s).
const TTL_SWEEP_BOUND: Duration = Duration::from_secs(20);

/// A TTL index deletes documents whose date plus `expireAfterSeconds` has
/// passed, keeps those whose date is ahead and those whose field holds no
/// date, and is listed with its TTL.
pub(crate) async fn ttl_index_deletes_expired_documents<S: Store>(s: &S) {
    let ttl = IndexSpec::ttl("at_ttl", "at", Duration::from_secs(60));
    s.ensure_index(C, &ttl).await.unwrap();
    assert!(
        s.indexes(C)
            .await
            .unwrap()
            .iter()
            .any(|i| i.same_definition(&ttl)),
        "the TTL index is listed with its TTL"
    );
    let now = DateTime::now().timestamp_millis();
    let at = |offset_ms: i64| DateTime::from_millis(now + offset_ms);
    seed(
        s,
        vec![
            doc! { "_id": 1, "at": at(-3_600_000) }, // expired an hour ago
            doc! { "_id": 2, "at": [at(3_600_000), at(-3_600_000)] }, // earliest date counts
            doc! { "_id": 3, "at": at(3_600_000) },  // expires in an hour
            doc! { "_id": 4, "at": "not a date" },   // never expires
            doc! { "_id": 5 },                       // never expires
        ],
    )
    .await;
    let started = std::time::Instant::now();
    loop {
        let left = s
            .find(C, &Query::new(Filter::all()).sort("_id", Order::Ascending))
            .await
            .unwrap();
        if ids(&left) == [3, 4, 5] {
            break;
        }
        assert!(
            started.elapsed() < TTL_SWEEP_BOUND,
            "expired documents still there after {TTL_SWEEP_BOUND:?}: {:?}",
            ids(&left)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.get(C, &Bson::Int32(1)).await.unwrap(), None);
    assert_eq!(s.count(C, &Filter::all()).await.unwrap(), 3);
    // The expired document's `_id` is free again.
    s.insert(C, doc! { "_id": 1, "at": at(3_600_000) })
        .await
        .unwrap();
}

fn day(n: i64) -> DateTime {
    DateTime::from_millis(1_700_006_400_000 + n * 86_400_000) // 2023-11-15 + n days, 00:00 UTC
}

fn at(n: i64, hour: i64) -> DateTime {
    DateTime::from_millis(day(n).timestamp_millis() + hour * 3_600_000)
}

/// Grouping by a field and the UTC day of a date: one row per (value, day),
/// sorted by key, with the count and the sums; a missing key field groups
/// with `null`, and a field holding no date falls in the `null` day.
pub(crate) async fn group_counts_and_sums_per_key_and_day<S: Store>(s: &S) {
    seed(
        s,
        vec![
            doc! { "_id": 1, "user": "ann", "at": at(0, 1), "tokens": 100, "cost": 0.25 },
            doc! { "_id": 2, "user": "ann", "at": at(0, 23), "tokens": 50, "cost": 0.5 },
            doc! { "_id": 3, "user": "bob", "at": at(0, 2), "tokens": 7_i64, "cost": 0.125 },
            doc! { "_id": 4, "user": "ann", "at": at(1, 0), "tokens": 1, "cost": 1.0 },
            doc! { "_id": 5, "at": at(1, 5), "tokens": 3 },
            doc! { "_id": 6, "user": Bson::Null, "at": "yesterday", "tokens": 4 },
            doc! { "_id": 7, "user": "carol", "at": at(2, 0), "tokens": 1_000 },
        ],
    )
    .await;
    let grouping = Grouping::new(Filter::lt("tokens", 1_000))
        .by("user")
        .by_day("at")
        .sum("tokens")
        .sum("cost");
    let rows = s.group(C, &grouping).await.unwrap();
    let got: Vec<(Document, u64, i64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r.key.clone(),
                r.count,
                r.sum_i64("tokens"),
                r.sum_f64("cost"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (doc! { "user": Bson::Null, "at": Bson::Null }, 1, 4, 0.0),
            (doc! { "user": Bson::Null, "at": day(1) }, 1, 3, 0.0),
            (doc! { "user": "ann", "at": day(0) }, 2, 150, 0.75),
            (doc! { "user": "ann", "at": day(1) }, 1, 1, 1.0),
            (doc! { "user": "bob", "at": day(0) }, 1, 7, 0.125),
        ]
    );
    // No key: one group of everything the filter selects; a collection
    // that does not exist has no groups.
    let all = s
        .group(C, &Grouping::new(Filter::all()).sum("tokens"))
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].count, all[0].sum_i64("tokens")), (7, 1_165));
    assert_eq!(all[0].key, Document::new());
    assert!(
        s.group("never_written", &grouping)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Only `int`, `long` and `double` are summed; a sum of integers stays an
/// `Int64`, one with a double is a `Double`.
pub(crate) async fn group_sums_only_numbers<S: Store>(s: &S) {
    seed(
        s,
        vec![
            doc! { "_id": 1, "k": "a", "n": 2, "x": 1 },
            doc! { "_id": 2, "k": "a", "n": 3_i64, "x": 0.5 },
            doc! { "_id": 3, "k": "a", "n": "9", "x": [4] },
            doc! { "_id": 4, "k": "a", "n": true },
            doc! { "_id": 5, "k": "b" },
        ],
    )
    .await;
    let rows = s
        .group(C, &Grouping::new(Filter::all()).by("k").sum("n").sum("x"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].key, doc! { "k": "a" });
    assert_eq!(rows[0].count, 4);
    assert_eq!(rows[0].sums, doc! { "n": 5_i64, "x": 1.5 });
    assert_eq!(rows[1].sums, doc! { "n": 0_i64, "x": 0_i64 });
}

/// A user's value in the filter is a value; field names that would be an
/// operator or a path are refused before the store is asked.
pub(crate) async fn group_keeps_values_values_and_refuses_bad_names<S: Store>(s: &S) {
    seed(
        s,
        vec![
            doc! { "_id": 1, "user": "ann", "n": 1 },
            doc! { "_id": 2, "user": r#"{"$ne": null}"#, "n": 2 },
        ],
    )
    .await;
    let hostile = Grouping::new(Filter::eq("user", r#"{"$ne": null}"#))
        .by("user")
        .sum("n");
    let rows = s.group(C, &hostile).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].sum_i64("n"), 2);
    for bad in [
        Grouping::new(Filter::all()).by("$user"),
        Grouping::new(Filter::all()).by_day("a.b"),
        Grouping::new(Filter::all()).sum("$n"),
        Grouping::new(Filter::all()).by("user").by("user"),
        Grouping::new(Filter::eq("$where", "1")),
    ] {
        let err = s.group(C, &bad).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::InvalidField { .. } | StoreError::Validation { .. }
            ),
            "{bad:?}: {err}"
        );
        assert!(!err.is_breaker_failure());
    }
}
