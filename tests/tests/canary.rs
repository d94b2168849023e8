//! The plumbing canary: the official `mongodb` driver against the test server
//! over TCP. If this fails, every other integration failure is noise.

use futures::TryStreamExt;
use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::IndexOptions;
use stratum_tests::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_insert_and_find_with_a_filter() {
    let t = TestDb::new("canary_find").await;
    let reply = t.db().run_command(doc! { "ping": 1 }).await.expect("ping");
    assert_eq!(
        reply
            .get_f64("ok")
            .ok()
            .or(reply.get_i32("ok").ok().map(f64::from)),
        Some(1.0)
    );

    let coll = t.db().collection::<Document>("prompts");
    coll.insert_many(
        (0..10).map(|i| doc! { "n": i, "model": if i % 2 == 0 { "gpt" } else { "claude" } }),
    )
    .await
    .expect("insert_many");
    let found: Vec<Document> = coll
        .find(doc! { "model": "claude", "n": { "$gte": 5 } })
        .sort(doc! { "n": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("cursor");
    let ns: Vec<i32> = found.iter().map(|d| d.get_i32("n").unwrap()).collect();
    assert_eq!(ns, vec![5, 7, 9]);
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_index_rejects_a_duplicate_with_11000() {
    let t = TestDb::new("canary_unique").await;
    let coll = t.db().collection::<Document>("keys");
    coll.create_index(
        IndexModel::builder()
            .keys(doc! { "key": 1 })
            .options(IndexOptions::builder().unique(true).build())
            .build(),
    )
    .await
    .expect("create unique index");
    coll.insert_one(doc! { "key": "k1" })
        .await
        .expect("first insert");
    let err = coll
        .insert_one(doc! { "key": "k1" })
        .await
        .expect_err("a duplicate must be rejected");
    match *err.kind {
        ErrorKind::Write(WriteFailure::WriteError(ref e)) => assert_eq!(e.code, 11000, "{e:?}"),
        ref other => panic!("expected a duplicate-key write error, got {other:?}"),
    }
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 1);
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_transaction_leaves_nothing_behind() {
    let t = TestDb::new("canary_txn").await;
    let coll = t.db().collection::<Document>("ledger");
    // Create the collection outside the transaction, as MongoDB < 4.4 requires.
    coll.insert_one(doc! { "seed": true }).await.unwrap();

    let mut session = t.client().start_session().await.expect("session");
    session
        .start_transaction()
        .await
        .expect("start transaction");
    coll.insert_one(doc! { "in_txn": 1 })
        .session(&mut session)
        .await
        .expect("insert in txn");
    coll.insert_one(doc! { "in_txn": 2 })
        .session(&mut session)
        .await
        .expect("insert in txn");
    // Isolation: outside the transaction nothing is visible yet.
    assert_eq!(
        coll.count_documents(doc! { "in_txn": { "$exists": true } })
            .await
            .unwrap(),
        0
    );
    session.abort_transaction().await.expect("abort");

    assert_eq!(
        coll.count_documents(doc! { "in_txn": { "$exists": true } })
            .await
            .unwrap(),
        0
    );
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 1);
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_transaction_is_visible() {
    let t = TestDb::new("canary_commit").await;
    let coll = t.db().collection::<Document>("ledger");
    coll.insert_one(doc! { "seed": true }).await.unwrap();
    let mut session = t.client().start_session().await.expect("session");
    session
        .start_transaction()
        .await
        .expect("start transaction");
    coll.insert_one(doc! { "in_txn": 1 })
        .session(&mut session)
        .await
        .expect("insert in txn");
    session.commit_transaction().await.expect("commit");
    assert_eq!(coll.count_documents(doc! { "in_txn": 1 }).await.unwrap(), 1);
    t.cleanup().await;
}
