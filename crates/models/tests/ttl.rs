//! TTL expiry against the real test server. SLOW ON PURPOSE: the server (like
//! mongod) deletes expired documents in a background sweep every 60 s, so this
//! test polls for up to 150 s. It asserts only "eventually gone within the
//! bound", never a timing.

use std::time::Duration;

use stratum_models::{Document, ResponseCacheEntry, ensure_indexes, insert};
use stratum_tests::TestDb;

use crate::mongo::entry_for;

/// One full sweep interval (60 s) plus the time for the sweep itself, twice over.
const SWEEP_BOUND: Duration = Duration::from_secs(150);
const POLL_EVERY: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_ttl_sweep_removes_an_expired_cache_entry() {
    let t = TestDb::new("models_ttl").await;
    let db = t.db();
    ensure_indexes::<ResponseCacheEntry>(db).await.unwrap();
    let coll = db.collection::<bson::Document>(ResponseCacheEntry::COLLECTION);

    // Already expired (created an hour ago, one-second TTL), and one that never expires.
    let mut expired = entry_for("expired");
    expired.created_at =
        bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() - 3_600_000);
    let expired = expired.with_ttl(Duration::from_secs(1));
    let forever = entry_for("forever");
    insert(db, &expired).await.unwrap();
    insert(db, &forever).await.unwrap();
    assert_eq!(coll.count_documents(bson::doc! {}).await.unwrap(), 2);

    let started = tokio::time::Instant::now();
    let mut gone = false;
    while started.elapsed() < SWEEP_BOUND {
        if coll
            .count_documents(bson::doc! { "_id": expired.id })
            .await
            .unwrap()
            == 0
        {
            gone = true;
            break;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    assert!(
        gone,
        "the expired entry was still there after {SWEEP_BOUND:?}"
    );
    assert_eq!(
        coll.count_documents(bson::doc! { "_id": forever.id })
            .await
            .unwrap(),
        1,
        "an entry without expires_at is never swept"
    );
    t.cleanup().await;
}
