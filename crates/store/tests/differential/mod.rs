//! Random operation sequences run against `MemoryStore` and `MongoStore` (on
//! the test server) side by side: every answer, error kind included, must be
//! the same. This catches drift the hand-written cases did not think of.

use std::sync::atomic::{AtomicU32, Ordering};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use stratum_store::bson::{Bson, Document, doc};
use stratum_store::{
    Filter, GroupRow, Grouping, IndexSpec, MemoryStore, MongoStore, Order, Query, Store,
    StoreError, Update,
};
use stratum_tests::TestDb;

#[derive(Debug, Clone)]
enum Op {
    Insert {
        id: i32,
        v: Bson,
        tag: &'static str,
    },
    Update {
        id: i32,
        update: Update,
        upsert: bool,
    },
    Delete(i32),
    Get(i32),
    Count(Filter),
    Find {
        filter: Filter,
        order: Order,
        limit: u64,
    },
    /// Grouped by `tag` (or not at all), `n` and `v` summed. Never by `v`:
    /// `1` and `1.0` are one group whose key keeps whichever came first.
    Group {
        filter: Filter,
        by_tag: bool,
    },
}

/// What an operation answered, comparable across stores.
#[derive(Debug, PartialEq)]
enum Outcome {
    Doc(Option<Document>),
    Docs(Vec<Document>),
    Id(Bson),
    Count(u64),
    Deleted(bool),
    Groups(Vec<GroupRow>),
    Failed(&'static str),
}

fn value() -> impl Strategy<Value = Bson> {
    prop_oneof![
        (-5i32..5).prop_map(Bson::Int32),
        (-5i64..5).prop_map(Bson::Int64),
        (-4i32..4).prop_map(|i| Bson::Double(f64::from(i) / 2.0)),
        "[ab]{0,2}".prop_map(Bson::String),
        Just(Bson::Null),
    ]
}

fn tag() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")]
}

fn update() -> impl Strategy<Value = Update> {
    let one = prop_oneof![
        value().prop_map(|v| ("v", Update::new().set("v", v))),
        (-3i32..3).prop_map(|n| ("n", Update::new().inc("n", n))),
        (-3i32..3).prop_map(|n| ("v", Update::new().inc("v", n))),
        value().prop_map(|v| ("tags", Update::new().push("tags", v))),
        // No update touches `tag`, the uniquely indexed field: the test
        // server keeps stale unique keys after updates (see the ignored
        // conformance case `unique_index_follows_updates`).
        Just(("v", Update::new().unset("v"))),
    ];
    // Up to three operations on distinct fields.
    vec(one, 1..4).prop_map(|parts| {
        let mut seen = Vec::new();
        let mut update = Update::new();
        for (field, part) in parts {
            if !seen.contains(&field) {
                seen.push(field);
                update = merge(update, part);
            }
        }
        update
    })
}

/// Appends the operations of `part` to `update` (Update has no public merge:
/// rebuild through its rendered form).
fn merge(update: Update, part: Update) -> Update {
    let rendered = part.to_document().unwrap();
    let mut out = update;
    for (operator, fields) in rendered {
        let Bson::Document(fields) = fields else {
            unreachable!()
        };
        for (field, v) in fields {
            out = match operator.as_str() {
                "$set" => out.set(field, v),
                "$unset" => out.unset(field),
                "$inc" => out.inc(field, v),
                "$push" => out.push(field, v),
                other => unreachable!("{other}"),
            };
        }
    }
    out
}

fn filter() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        value().prop_map(|v| Filter::eq("v", v)),
        value().prop_map(|v| Filter::ne("v", v)),
        value().prop_map(|v| Filter::gt("v", v)),
        value().prop_map(|v| Filter::lte("v", v)),
        value().prop_map(|v| Filter::eq("tags", v)),
        tag().prop_map(|t| Filter::eq("tag", t)),
        any::<bool>().prop_map(|b| Filter::exists("tag", b)),
        vec(value(), 0..3).prop_map(|vs| Filter::is_in("v", vs)),
        Just(Filter::all()),
    ];
    leaf.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a.and(b)),
            (inner.clone(), inner).prop_map(|(a, b)| a.or(b)),
        ]
    })
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..6i32;
    prop_oneof![
        3 => (id.clone(), value(), tag()).prop_map(|(id, v, tag)| Op::Insert { id, v, tag }),
        3 => (id.clone(), update(), any::<bool>()).prop_map(|(id, update, upsert)| Op::Update { id, update, upsert }),
        1 => id.clone().prop_map(Op::Delete),
        1 => id.prop_map(Op::Get),
        2 => filter().prop_map(Op::Count),
        2 => (filter(), prop_oneof![Just(Order::Ascending), Just(Order::Descending)], 0..5u64)
            .prop_map(|(filter, order, limit)| Op::Find { filter, order, limit }),
        2 => (filter(), any::<bool>()).prop_map(|(filter, by_tag)| Op::Group { filter, by_tag }),
    ]
}

fn outcome<T>(result: Result<T, StoreError>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
    match result {
        Ok(value) => ok(value),
        Err(e) => Outcome::Failed(e.kind()),
    }
}

async fn apply<S: Store>(store: &S, coll: &str, op: &Op) -> Outcome {
    match op {
        Op::Insert { id, v, tag } => outcome(
            store
                .insert(
                    coll,
                    doc! { "_id": *id, "v": v.clone(), "n": 0, "tag": *tag },
                )
                .await,
            Outcome::Id,
        ),
        Op::Update {
            id,
            update,
            upsert: true,
        } => outcome(store.upsert(coll, &Bson::Int32(*id), update).await, |d| {
            Outcome::Doc(Some(d))
        }),
        Op::Update {
            id,
            update,
            upsert: false,
        } => outcome(store.update(coll, &Bson::Int32(*id), update).await, |d| {
            Outcome::Doc(Some(d))
        }),
        Op::Delete(id) => outcome(
            store.delete(coll, &Bson::Int32(*id)).await,
            Outcome::Deleted,
        ),
        Op::Get(id) => outcome(store.get(coll, &Bson::Int32(*id)).await, Outcome::Doc),
        Op::Count(filter) => outcome(store.count(coll, filter).await, Outcome::Count),
        Op::Find {
            filter,
            order,
            limit,
        } => {
            // `_id` breaks ties, so the order is fully determined.
            let query = Query::new(filter.clone())
                .sort("v", *order)
                .sort("_id", Order::Ascending)
                .limit(*limit);
            outcome(store.find(coll, &query).await, Outcome::Docs)
        }
        Op::Group { filter, by_tag } => {
            let mut grouping = Grouping::new(filter.clone());
            if *by_tag {
                grouping = grouping.by("tag");
            }
            let grouping = grouping.sum("n").sum("v");
            outcome(store.group(coll, &grouping).await, Outcome::Groups)
        }
    }
}

#[test]
fn stores_agree_on_random_operations() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new("facade_differential"));
    let mongo = MongoStore::new(db.db().clone());
    let cases = AtomicU32::new(0);
    let mut runner = TestRunner::new(Config::with_cases(64));
    let result = runner.run(&vec(op(), 1..20), |ops| {
        let coll = format!("diff_{}", cases.fetch_add(1, Ordering::Relaxed));
        let memory = MemoryStore::new();
        rt.block_on(async {
            let unique_tag = IndexSpec::new([("tag", Order::Ascending)]).unique();
            memory.ensure_index(&coll, &unique_tag).await.unwrap();
            mongo.ensure_index(&coll, &unique_tag).await.unwrap();
            for (step, op) in ops.iter().enumerate() {
                let expected = apply(&memory, &coll, op).await;
                let got = apply(&mongo, &coll, op).await;
                prop_assert_eq!(&expected, &got, "step {} of {:?}", step, ops);
            }
            Ok(())
        })
    });
    drop(rt);
    drop(db);
    if let Err(e) = result {
        panic!("{e}");
    }
}
