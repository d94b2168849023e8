//! `Repository<T>` through the whole stack: every operation against the
//! embedded store and against the real test server (MongoStore over TCP),
//! cache invalidation on writes, the load/write race, stale reads and the
//! breaker with a fault-injecting store, readiness, and the LLM helpers.
//!
//! Time is a manual clock wherever expiry or breaker waits matter: no test
//! sleeps or asserts on wall-clock time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use stratum::bson::{Bson, DateTime, Document};
use stratum::models::{Conversation, Message, Role};
use stratum::{
    Filter, IndexSpec, ManualClock, MemoryStore, Order, Origin, Query, RepositoryError, Store,
    StoreError, Stratum, StratumConfig, Update,
};
use stratum_store::{FaultPlan, FaultyStore};

fn config() -> StratumConfig {
    let mut config = StratumConfig::default();
    config.cache.time_to_live = Some(Duration::from_secs(10));
    config.cache.max_stale = Some(Duration::from_secs(60));
    config.breaker.sliding_window = stratum::breaker::SlidingWindow::CountBased { size: 10 };
    config.breaker.minimum_number_of_calls = 5;
    config.breaker.permitted_calls_in_half_open = 1;
    config.breaker.wait_in_open = stratum::breaker::OpenWait::Constant {
        wait: Duration::from_secs(5),
    };
    config
}

fn stack(store: Arc<dyn Store>) -> (Stratum, ManualClock) {
    let hand = ManualClock::new();
    let stratum = Stratum::builder(config())
        .store(store)
        .clock(hand.clone())
        .build()
        .unwrap();
    (stratum, hand)
}

fn conversation(model: &str) -> Conversation {
    Conversation::new(model, DateTime::from_millis(1_700_000_000_000))
}

/// Every repository operation, on whichever store is given.
async fn every_operation(store: Arc<dyn Store>) {
    let (stratum, _) = stack(store);
    let repo = stratum.repository::<Conversation>().unwrap();
    repo.ensure_indexes().await.unwrap();
    let a = conversation("gpt-4o").with_user("ann");
    let b = conversation("claude").with_user("bob");
    repo.insert(&a).await.unwrap();
    repo.insert(&b).await.unwrap();

    // get: loaded once, then served from the cache.
    let first = repo.get(&a.id).await.unwrap();
    assert_eq!(first.origin, Origin::Store);
    assert_eq!(first.value.as_deref(), Some(&a));
    assert_eq!(repo.get(&a.id).await.unwrap().origin, Origin::Cache);

    // A duplicate id is the caller's error, typed.
    let dup = repo.insert(&a).await.unwrap_err();
    assert!(
        matches!(dup, RepositoryError::Store(StoreError::DuplicateKey { .. })),
        "{dup:?}"
    );

    // update returns the new version and the cache holds it.
    let updated = repo
        .update(&a.id, &Update::new().inc("message_count", 2i64))
        .await
        .unwrap();
    assert_eq!(updated.message_count, 2);
    let read = repo.get(&a.id).await.unwrap();
    assert_eq!(read.origin, Origin::Cache);
    assert_eq!(read.value.unwrap().message_count, 2);

    // upsert of an existing id behaves as update.
    let upserted = repo
        .upsert(&b.id, &Update::new().set("title", "hello"))
        .await
        .unwrap();
    assert_eq!(upserted.title.as_deref(), Some("hello"));

    // find and count.
    let found = repo
        .find(&Query::new(Filter::all()).sort("model", Order::Ascending))
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|c| c.model.as_str()).collect::<Vec<_>>(),
        ["claude", "gpt-4o"]
    );
    assert_eq!(repo.count(&Filter::eq("user_id", "ann")).await.unwrap(), 1);

    // delete: the cached copy goes too.
    assert!(repo.delete(&a.id).await.unwrap());
    assert!(!repo.delete(&a.id).await.unwrap());
    let gone = repo.get(&a.id).await.unwrap();
    assert_eq!(gone.origin, Origin::Store);
    assert!(gone.value.is_none());
    // The absence is cached as well, and an insert replaces it.
    assert_eq!(repo.get(&a.id).await.unwrap().origin, Origin::Cache);
    repo.insert(&a).await.unwrap();
    assert!(repo.get(&a.id).await.unwrap().value.is_some());

    // update of a missing id is NotFound, and leaves no entry behind.
    let missing = conversation("x");
    let err = repo
        .update(&missing.id, &Update::new().set("title", "t"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        RepositoryError::Store(StoreError::NotFound { .. })
    ));

    // The breaker saw only answers: nothing counted as a failure.
    let snapshot = stratum.breaker().unwrap().snapshot();
    assert_eq!(snapshot.failed_calls, 0);
    assert_eq!(snapshot.state, stratum::breaker::State::Closed);
}

/// A write made around the repository is not seen until the entry expires;
/// writes through it are seen at once.
async fn writes_invalidate(store: Arc<dyn Store>) {
    let (stratum, clock) = stack(Arc::clone(&store));
    let repo = stratum.repository::<Conversation>().unwrap();
    let c = conversation("gpt-4o");
    repo.insert(&c).await.unwrap();
    assert_eq!(repo.get(&c.id).await.unwrap().origin, Origin::Store);

    // Behind the cache's back: the cache still answers with what it has.
    let id = Bson::ObjectId(c.id);
    store
        .update("conversations", &id, &Update::new().set("title", "direct"))
        .await
        .unwrap();
    let cached = repo.get(&c.id).await.unwrap();
    assert_eq!(cached.origin, Origin::Cache);
    assert_eq!(cached.value.unwrap().title, None);
    // Until the TTL: then it is read again.
    clock.advance(Duration::from_secs(10));
    let fresh = repo.get(&c.id).await.unwrap();
    assert_eq!(fresh.origin, Origin::Store);
    assert_eq!(fresh.value.unwrap().title.as_deref(), Some("direct"));

    // Through the repository: refreshed in place.
    repo.update(&c.id, &Update::new().set("title", "through"))
        .await
        .unwrap();
    let read = repo.get(&c.id).await.unwrap();
    assert_eq!(read.origin, Origin::Cache);
    assert_eq!(read.value.unwrap().title.as_deref(), Some("through"));

    // Another handle on the same type shares the cache.
    let again = stratum.repository::<Conversation>().unwrap();
    assert_eq!(again.get(&c.id).await.unwrap().origin, Origin::Cache);
    assert!(again.delete(&c.id).await.unwrap());
    assert!(repo.get(&c.id).await.unwrap().value.is_none());
}

mod memory {
    use super::*;

    /// A read's future carries only what a hit needs: the database call's
    /// state (breaker, admission, the driver's call) is boxed on the miss
    /// path. Unboxed it made `get`'s future 7 000 bytes, copied a few
    /// times per read (`memmove` was 23 % of a cached read's CPU); boxed it
    /// is about 1 600 with every feature.
    #[tokio::test]
    async fn a_reads_future_stays_small() {
        let (stratum, _) = stack(Arc::new(MemoryStore::new()));
        let repo = stratum.repository::<Conversation>().unwrap();
        let id = conversation("gpt-4o").id;
        let read = repo.get(&id);
        let bytes = std::mem::size_of_val(&read);
        drop(read);
        assert!(bytes <= 3_000, "Repository::get's future is {bytes} bytes");
    }

    #[tokio::test]
    async fn every_operation() {
        super::every_operation(Arc::new(MemoryStore::new())).await;
    }

    #[tokio::test]
    async fn writes_invalidate() {
        super::writes_invalidate(Arc::new(MemoryStore::new())).await;
    }
}

/// The same cases on the real test server, one fresh database per test.
#[cfg(feature = "mongodb")]
mod mongo {
    use stratum::MongoStore;
    use stratum_tests::TestDb;

    use super::*;

    #[tokio::test]
    async fn every_operation() {
        let db = TestDb::new("facade_repository").await;
        super::every_operation(Arc::new(MongoStore::new(db.db().clone()))).await;
        db.cleanup().await;
    }

    #[tokio::test]
    async fn writes_invalidate() {
        let db = TestDb::new("facade_repository").await;
        super::writes_invalidate(Arc::new(MongoStore::new(db.db().clone()))).await;
        db.cleanup().await;
    }

    /// A write made by one instance invalidates another instance's cached
    /// copy through the change stream. The delay is printed, not asserted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn change_streams_invalidate_other_instances() {
        let db = TestDb::new("facade_watch").await;
        // Two instances: separate clients, separate stacks, one database.
        let other_client =
            mongodb::Client::with_options(stratum_tests::client_options().await).unwrap();
        let (a, _) = stack(Arc::new(MongoStore::new(db.db().clone())));
        let (b, _) = stack(Arc::new(MongoStore::new(other_client.database(db.name()))));
        let in_a = a.repository::<Conversation>().unwrap();
        let in_b = b.repository::<Conversation>().unwrap();
        let mut watcher = in_a.watch(&MongoStore::new(db.db().clone())).unwrap();
        tokio::time::timeout(Duration::from_secs(30), watcher.opened())
            .await
            .expect("the change stream opens");

        let c = conversation("gpt-4o");
        in_b.insert(&c).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), watcher.applied(1))
            .await
            .expect("the insert is seen");
        assert_eq!(in_a.get(&c.id).await.unwrap().origin, Origin::Store);
        assert_eq!(in_a.get(&c.id).await.unwrap().origin, Origin::Cache);

        let written = std::time::Instant::now();
        in_b.update(&c.id, &Update::new().set("title", "from b"))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), watcher.applied(2))
            .await
            .expect("the update is seen");
        println!("change-stream invalidation delay: {:?}", written.elapsed());
        let read = in_a.get(&c.id).await.unwrap();
        assert_eq!(read.origin, Origin::Store);
        assert_eq!(read.value.unwrap().title.as_deref(), Some("from b"));
        assert!(watcher.invalidations() >= 2);
        drop(watcher);
        db.cleanup().await;
    }

    /// A change stream that breaks reopens from the last event's resume
    /// token: a write made while no stream was open still invalidates.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broken_change_stream_resumes_where_it_stopped() {
        let db = TestDb::new("facade_resume").await;
        let (a, _) = stack(Arc::new(MongoStore::new(db.db().clone())));
        let repo = a.repository::<Conversation>().unwrap();
        // Another process's writes: straight to the server, around this cache.
        let elsewhere = db.db().collection::<Conversation>("conversations");
        let mut watcher = repo.watch(&MongoStore::new(db.db().clone())).unwrap();
        let wait = Duration::from_secs(30);
        tokio::time::timeout(wait, watcher.opened())
            .await
            .expect("the change stream opens");
        // One event, so the watcher holds a resume token.
        elsewhere.insert_one(conversation("gpt-4o")).await.unwrap();
        tokio::time::timeout(wait, watcher.applied(1))
            .await
            .expect("the first insert is seen");

        // The absence of `later` is cached (the manual clock never expires it).
        let later = conversation("gpt-4o");
        assert!(repo.get(&later.id).await.unwrap().value.is_none());
        assert_eq!(repo.get(&later.id).await.unwrap().origin, Origin::Cache);

        watcher.reconnect();
        tokio::time::timeout(wait, watcher.closed())
            .await
            .expect("the stream closes");
        // Written while no stream is open (the watcher pauses 2 s before
        // reopening): only a resumed stream replays it.
        elsewhere.insert_one(&later).await.unwrap();
        tokio::time::timeout(wait, watcher.applied(2))
            .await
            .expect("the write made while the stream was down is replayed");
        let state = watcher.state();
        assert_eq!((state.resumes, state.restarts), (1, 0), "{state:?}");
        let read = repo.get(&later.id).await.unwrap();
        assert_eq!(read.origin, Origin::Store);
        assert_eq!(read.value.unwrap().id, later.id);
        drop(watcher);
        db.cleanup().await;
    }

    /// Over MongoDB the pool owns the driver client: admission slots and the
    /// driver's connections (CMAP events) are both visible.
    #[tokio::test]
    async fn the_pool_owns_the_driver_client() {
        let db = TestDb::new("facade_pool").await;
        let mut config = config();
        config.mongodb.uri = Some(stratum_tests::mongodb_uri().parse().unwrap());
        config.mongodb.database = db.name().to_owned();
        config.pool.max_size = 4;
        let stratum = Stratum::builder(config).open().await.unwrap();
        assert_eq!(stratum.store().backend(), "mongodb");
        let repo = stratum.repository::<Conversation>().unwrap();
        let c = conversation("gpt-4o");
        repo.insert(&c).await.unwrap();
        assert_eq!(repo.get(&c.id).await.unwrap().origin, Origin::Store);
        let status = stratum.pool_status().unwrap();
        assert_eq!(status.max, 4);
        let connections = status.connections.expect("CMAP figures over MongoDB");
        assert!(connections.created >= 1, "{connections:?}");
        assert!(connections.checked_out >= 2, "{connections:?}");
        drop(stratum);
        db.cleanup().await;
    }

    /// `close` ends the driver's client: a program that calls it last
    /// leaves no drop-time cleanup to race the runtime's teardown, and every
    /// clone of the client, and every repository, fails afterwards.
    #[tokio::test]
    async fn close_shuts_the_drivers_client() {
        let db = TestDb::new("facade_close").await;
        let mut config = config();
        config.mongodb.uri = Some(stratum_tests::mongodb_uri().parse().unwrap());
        config.mongodb.database = db.name().to_owned();
        let stratum = Stratum::builder(config).open().await.unwrap();
        let repo = stratum.repository::<Conversation>().unwrap();
        let c = conversation("gpt-4o");
        repo.insert(&c).await.unwrap();
        let client = stratum.mongo_client().cloned().unwrap();
        client.list_database_names().await.unwrap();
        stratum.close().await;
        assert!(client.list_database_names().await.is_err());
        let other = conversation("gpt-4o");
        assert!(repo.get(&other.id).await.is_err());
        db.cleanup().await;
    }

    #[tokio::test]
    async fn conversations_round_trip() {
        let db = TestDb::new("facade_conversations").await;
        let (stratum, _) = stack(Arc::new(MongoStore::new(db.db().clone())));
        super::conversation_flow(&stratum).await;
        db.cleanup().await;
    }
}

/// A store whose `get` reads, then waits for a signal before answering:
/// the load it serves has read the old document when a write lands. With
/// `hold_update` set, the next `update` is applied and its answer held the
/// same way.
struct GatedStore {
    inner: MemoryStore,
    reading: tokio::sync::Notify,
    release: tokio::sync::Notify,
    hold_update: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Store for GatedStore {
    async fn get(&self, c: &str, id: &Bson) -> Result<Option<Document>, StoreError> {
        let found = self.inner.get(c, id).await;
        self.reading.notify_one();
        self.release.notified().await;
        found
    }
    async fn find(&self, c: &str, q: &Query) -> Result<Vec<Document>, StoreError> {
        self.inner.find(c, q).await
    }
    async fn insert(&self, c: &str, d: Document) -> Result<Bson, StoreError> {
        self.inner.insert(c, d).await
    }
    async fn update(&self, c: &str, id: &Bson, u: &Update) -> Result<Document, StoreError> {
        let updated = self.inner.update(c, id, u).await;
        if self.hold_update.swap(false, Ordering::SeqCst) {
            self.reading.notify_one();
            self.release.notified().await;
        }
        updated
    }
    async fn upsert(&self, c: &str, id: &Bson, u: &Update) -> Result<Document, StoreError> {
        self.inner.upsert(c, id, u).await
    }
    async fn delete(&self, c: &str, id: &Bson) -> Result<bool, StoreError> {
        self.inner.delete(c, id).await
    }
    async fn count(&self, c: &str, f: &Filter) -> Result<u64, StoreError> {
        self.inner.count(c, f).await
    }
    async fn ensure_index(&self, c: &str, i: &IndexSpec) -> Result<(), StoreError> {
        self.inner.ensure_index(c, i).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

fn gated_store() -> Arc<GatedStore> {
    Arc::new(GatedStore {
        inner: MemoryStore::new(),
        reading: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
        hold_update: std::sync::atomic::AtomicBool::new(false),
    })
}

/// Two updates of one document answered in the opposite order to the one
/// the store applied them in (as concurrent callers see under load): the
/// cache must not end up holding the older version.
#[tokio::test]
async fn updates_answered_out_of_order_never_leave_the_older_version_cached() {
    let store = gated_store();
    let (stratum, _) = stack(store.clone());
    let repo = stratum.repository::<Conversation>().unwrap();
    let c = conversation("gpt-4o");
    repo.insert(&c).await.unwrap();

    store.hold_update.store(true, Ordering::SeqCst);
    let first = tokio::spawn({
        let repo = repo.clone();
        let id = c.id;
        async move { repo.update(&id, &Update::new().set("title", "first")).await }
    });
    store.reading.notified().await; // applied; its answer is held
    let second = repo
        .update(&c.id, &Update::new().set("title", "second"))
        .await
        .unwrap();
    assert_eq!(second.title.as_deref(), Some("second"));
    store.release.notify_one();
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.title.as_deref(), Some("first")); // what it was told

    store.release.notify_one(); // lets the read through if it reaches the store
    let read = repo.get(&c.id).await.unwrap();
    assert_eq!(read.value.unwrap().title.as_deref(), Some("second"));
}

#[tokio::test]
async fn a_load_that_raced_a_write_is_not_kept() {
    let store = gated_store();
    let (stratum, _) = stack(store.clone());
    let repo = stratum.repository::<Conversation>().unwrap();
    let c = conversation("gpt-4o");
    repo.insert(&c).await.unwrap();

    let loading = tokio::spawn({
        let repo = repo.clone();
        let id = c.id;
        async move { repo.get(&id).await.unwrap() }
    });
    store.reading.notified().await; // the load has read the old version
    repo.update(&c.id, &Update::new().set("title", "new"))
        .await
        .unwrap();
    store.release.notify_one();
    let raced = loading.await.unwrap();
    assert_eq!(raced.origin, Origin::Store);
    assert_eq!(raced.value.unwrap().title, None); // what it read, honestly

    // The old version did not replace the new one in the cache.
    let next = tokio::spawn({
        let repo = repo.clone();
        let id = c.id;
        async move { repo.get(&id).await.unwrap() }
    });
    store.reading.notified().await;
    store.release.notify_one();
    let next = next.await.unwrap();
    assert_eq!(next.origin, Origin::Store);
    assert_eq!(next.value.unwrap().title.as_deref(), Some("new"));
}

/// Admission lets `pool.max_size` calls in at once (here the concurrency
/// limit's ceiling: the limit cannot rise above it); a caller that cannot
/// get in within the limit's bounded wait is refused as overloaded, the
/// database is not called and the breaker does not count it; a read with an
/// expired cached copy gets that copy instead, counted as stale.
#[tokio::test]
async fn admission_bounds_calls_in_flight_and_overload_serves_stale() {
    let store = gated_store();
    let hand = ManualClock::new();
    let mut config = config();
    config.pool.max_size = 1;
    config.pool.acquire_timeout = Duration::from_millis(50);
    let stratum = Stratum::builder(config)
        .store(store.clone())
        .clock(hand.clone())
        .build()
        .unwrap();
    let repo = stratum.repository::<Conversation>().unwrap();
    let (a, b, never) = (conversation("a"), conversation("b"), conversation("c"));
    repo.insert(&a).await.unwrap();
    repo.insert(&b).await.unwrap();
    // b is read once (cached), then its copy expires.
    let first = tokio::spawn({
        let repo = repo.clone();
        async move { repo.get(&b.id).await.unwrap() }
    });
    store.reading.notified().await;
    store.release.notify_one();
    assert_eq!(first.await.unwrap().origin, Origin::Store);
    hand.advance(Duration::from_secs(12));

    let holding = tokio::spawn({
        let repo = repo.clone();
        async move { repo.get(&a.id).await.unwrap() }
    });
    store.reading.notified().await; // the only slot is taken
    let status = stratum.pool_status().unwrap();
    assert_eq!(status.in_use, 1);
    let limit = stratum.limit_status().unwrap();
    assert_eq!((limit.limit, limit.in_flight), (1, 1));
    let err = repo.get(&never.id).await.unwrap_err();
    assert!(matches!(err, RepositoryError::Overloaded { .. }), "{err:?}");
    assert!(err.is_unavailable());
    // The expired copy of b is served instead of the refusal, as stale.
    let read = repo.get(&b.id).await.unwrap();
    assert!(read.is_stale(), "{:?}", read.origin);
    assert_eq!(read.value.as_deref(), Some(&b));
    store.release.notify_one();
    assert!(holding.await.unwrap().value.is_some());
    let limit = stratum.limit_status().unwrap();
    assert_eq!(limit.rejected_queue_timeout, 2, "{limit:?}");
    // The limit refused them; the pool (sized to its ceiling) never timed out.
    assert_eq!(stratum.pool_stats().unwrap().timeouts, 0);
    // The refused calls were never recorded by the breaker.
    let snapshot = stratum.breaker().unwrap().snapshot();
    assert_eq!(snapshot.failed_calls, 0);
    assert_eq!(snapshot.calls, 4); // two inserts, the first read of b, the held read
}

#[tokio::test]
async fn stale_reads_when_the_store_fails_and_the_breaker_opens() {
    let faulty = Arc::new(FaultyStore::new(MemoryStore::new(), 7));
    let (stratum, clock) = stack(faulty.clone());
    let repo = stratum.repository::<Conversation>().unwrap();
    let c = conversation("gpt-4o");
    repo.insert(&c).await.unwrap();
    assert_eq!(repo.get(&c.id).await.unwrap().origin, Origin::Store);

    // Expired, and the database is down: the stale copy is served, and says so.
    clock.advance(Duration::from_secs(12));
    faulty.set_plan(FaultPlan::outage());
    let read = repo.get(&c.id).await.unwrap();
    assert_eq!(
        read.origin,
        Origin::Stale {
            age: Duration::from_secs(12)
        }
    );
    assert!(read.is_stale());
    assert_eq!(read.value.as_deref(), Some(&c));

    // An id never read has nothing stale to offer: the error comes through.
    let other = conversation("x");
    let err = repo.get(&other.id).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    // Failures open the breaker; then the database is not called at all.
    for _ in 0..4 {
        let _ = repo.get(&conversation("y").id).await;
    }
    let breaker = stratum.breaker().unwrap();
    assert_eq!(breaker.state(), stratum::breaker::State::Open);
    let injected = faulty.injected_errors();
    let err = repo.get(&other.id).await.unwrap_err();
    assert!(
        matches!(err, RepositoryError::NotPermitted { .. }),
        "{err:?}"
    );
    assert_eq!(faulty.injected_errors(), injected);
    // ...and the stale copy is still served.
    assert!(repo.get(&c.id).await.unwrap().is_stale());
    // Writes fail fast too.
    let err = repo
        .update(&c.id, &Update::new().set("title", "t"))
        .await
        .unwrap_err();
    assert!(matches!(err, RepositoryError::NotPermitted { .. }));

    // Past the stale bound (TTL 10 s + stale_for 60 s) the error is returned.
    // (The open wait is over too: this call is the half-open probe, it
    // fails, and the breaker opens again.)
    clock.advance(Duration::from_secs(59));
    assert!(repo.get(&c.id).await.is_err());
    assert_eq!(breaker.state(), stratum::breaker::State::Open);

    // Recovery: after the open wait one probe succeeds and the breaker closes.
    faulty.set_plan(FaultPlan::none());
    clock.advance(Duration::from_secs(5));
    let fresh = repo.get(&c.id).await.unwrap();
    assert_eq!(fresh.origin, Origin::Store);
    assert_eq!(breaker.state(), stratum::breaker::State::Closed);
    let (total, transitions) = stratum.breaker_transitions();
    let path: Vec<_> = transitions.iter().map(|t| (t.from, t.to)).collect();
    use stratum::breaker::State::{Closed, HalfOpen, Open};
    assert_eq!(
        path,
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed)
        ]
    );
    assert_eq!(total, 5);
}

#[tokio::test]
async fn duplicate_keys_do_not_trip_the_breaker() {
    let (stratum, _) = stack(Arc::new(MemoryStore::new()));
    let repo = stratum.repository::<Conversation>().unwrap();
    let c = conversation("gpt-4o");
    repo.insert(&c).await.unwrap();
    for _ in 0..30 {
        assert!(repo.insert(&c).await.is_err());
    }
    let snapshot = stratum.breaker().unwrap().snapshot();
    assert_eq!(snapshot.state, stratum::breaker::State::Closed);
    assert_eq!(snapshot.failed_calls, 0);
}

#[tokio::test]
async fn layers_can_be_turned_off_by_config() {
    let mut config = config();
    config.cache.enabled = false;
    config.breaker.enabled = false;
    let stratum = Stratum::builder(config).build().unwrap();
    assert!(stratum.breaker().is_none());
    let repo = stratum.repository::<Conversation>().unwrap();
    let c = conversation("gpt-4o");
    repo.insert(&c).await.unwrap();
    // No cache: every read is the store's.
    assert_eq!(repo.get(&c.id).await.unwrap().origin, Origin::Store);
    assert_eq!(repo.get(&c.id).await.unwrap().origin, Origin::Store);
    assert!(repo.cache_stats().is_none());
}

#[tokio::test]
async fn invalid_layer_config_names_the_field() {
    let mut config = config();
    // Set in code after validation: the stack validates again, with the
    // breaker's own validator, and names the field by its full path.
    config.breaker.permitted_calls_in_half_open = 9_999;
    let err = Stratum::builder(config).build().unwrap_err();
    let stratum::StratumError::Config(err) = err else {
        panic!("{err:?}")
    };
    assert_eq!(err.field(), "breaker.permitted_calls_in_half_open");
}

#[tokio::test]
async fn readiness_follows_the_breaker_and_the_database() {
    use stratum::monitor::{CheckKind, HealthRegistry, Status};

    let faulty = Arc::new(FaultyStore::new(MemoryStore::new(), 1));
    let (stratum, _) = stack(faulty.clone());
    let health = HealthRegistry::new(Duration::from_secs(5));
    stratum.register_health(&health).unwrap();
    assert_eq!(health.report(CheckKind::Readiness).await.status, Status::Up);
    assert_eq!(health.report(CheckKind::Liveness).await.status, Status::Up);

    faulty.set_plan(FaultPlan::outage());
    let ready = health.report(CheckKind::Readiness).await;
    assert_eq!(ready.status, Status::Down);
    assert!(
        ready.to_json().contains("ping failed: unavailable"),
        "{}",
        ready.to_json()
    );
    // Liveness never checks a dependency.
    assert_eq!(health.report(CheckKind::Liveness).await.status, Status::Up);

    faulty.set_plan(FaultPlan::none());
    stratum.breaker().unwrap().force_open();
    let ready = health.report(CheckKind::Readiness).await;
    assert_eq!(ready.status, Status::Down);
    assert!(ready.to_json().contains("circuit breaker open"));
    stratum.breaker().unwrap().reset();
    assert_eq!(health.report(CheckKind::Readiness).await.status, Status::Up);
}

async fn conversation_flow(stratum: &Stratum) {
    let chats = stratum.conversations().unwrap();
    chats.messages().ensure_indexes().await.unwrap();
    let c = conversation("gpt-4o");
    chats.start(&c).await.unwrap();
    chats
        .append(&c.id, stratum::models::ChatMessage::system("Be brief."))
        .await
        .unwrap();
    for i in 0..30 {
        let m = chats
            .append(
                &c.id,
                stratum::models::ChatMessage::user(format!(
                    "Message {i}: tell me more about the harbour, the ships and the tides."
                )),
            )
            .await
            .unwrap();
        assert_eq!(m.seq, i + 1);
    }
    let history: Vec<Message> = chats.history(&c.id).await.unwrap();
    assert_eq!(history.len(), 31);
    assert!(history.windows(2).all(|w| w[0].seq < w[1].seq));
    let header = chats.headers().get(&c.id).await.unwrap().value.unwrap();
    assert_eq!(header.message_count, 31);
    assert_eq!(
        header.total_tokens,
        history.iter().map(|m| m.token_count).sum::<i64>()
    );
    let context = chats.context(&c.id, 120).await.unwrap();
    assert!(context.report.tokens_after <= 120);
    assert!(context.report.tokens_saved > 0);
    assert_eq!(context.messages[0].role, Role::System);
    assert_eq!(
        context.messages.last().unwrap().content,
        history.last().unwrap().content
    );
    // Appending to a conversation that does not exist is NotFound.
    let err = chats
        .append(
            &conversation("x").id,
            stratum::models::ChatMessage::user("hi"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            stratum::llm::ConversationError::Repository(RepositoryError::Store(
                StoreError::NotFound { .. }
            ))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn conversations_round_trip_in_memory() {
    let (stratum, _) = stack(Arc::new(MemoryStore::new()));
    conversation_flow(&stratum).await;
}

mod prompts {
    use stratum::llm::{AnswerSource, Completion, PromptAnswer, PromptCache, PromptError};
    use stratum::models::{
        CacheKeyRequest, CachedResponse, ChatMessage, RequestParams, TokenUsage,
    };

    use super::*;

    fn completion(text: &str) -> Completion {
        Completion {
            response: CachedResponse::text(text),
            usage: TokenUsage::new(10, 3),
            cost_usd: 0.0001,
        }
    }

    pub(super) use crate::support::request;

    /// `n` concurrent `get_or_compute` calls for `request`, whose provider
    /// call (`outcome`) is held open until every caller has asked; returns
    /// how many provider calls ran and every caller's answer.
    async fn burst(
        prompts: &PromptCache,
        request: &CacheKeyRequest<'_>,
        n: usize,
        outcome: fn() -> Result<Completion, std::io::Error>,
    ) -> (
        usize,
        Vec<Result<PromptAnswer, Arc<PromptError<std::io::Error>>>>,
    ) {
        let calls = AtomicUsize::new(0);
        let (release, released) = tokio::sync::watch::channel(false);
        let callers = (0..n).map(|_| {
            let mut released = released.clone();
            let calls = &calls;
            prompts.get_or_compute(request, move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                released.wait_for(|r| *r).await.unwrap();
                outcome()
            })
        });
        let releaser = async {
            // Every caller is polled once before this runs again.
            tokio::task::yield_now().await;
            release.send(true).unwrap();
        };
        let (answers, ()) = futures::join!(futures::future::join_all(callers), releaser);
        (calls.load(Ordering::SeqCst), answers)
    }

    /// A burst of identical prompts costs one provider call; the answer
    /// reaches every caller.
    #[tokio::test]
    async fn a_burst_of_identical_prompts_calls_the_provider_once() {
        let (stratum, _) = stack(Arc::new(MemoryStore::new()));
        let prompts = stratum.prompt_cache().unwrap();
        let messages = [ChatMessage::user("Summarize the meeting notes.")];
        let params = RequestParams::default();
        let request = request(&messages, &params);
        let (calls, answers) = burst(&prompts, &request, 32, || {
            Ok(completion("Decisions: ship on Friday."))
        })
        .await;
        assert_eq!(calls, 1);
        let sources: Vec<_> = answers.iter().map(|a| a.as_ref().unwrap().source).collect();
        assert_eq!(
            sources
                .iter()
                .filter(|s| **s == AnswerSource::Provider)
                .count(),
            1
        );
        assert_eq!(
            sources
                .iter()
                .filter(|s| **s == AnswerSource::Memory)
                .count(),
            31
        );
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().unwrap().entry.response.content == "Decisions: ship on Friday.")
        );

        // A different prompt is a different key.
        let other = [ChatMessage::user("Summarize the meeting notes!")];
        let request = CacheKeyRequest {
            messages: &other,
            ..request
        };
        let answer = prompts
            .get_or_compute(&request, || async {
                Ok::<_, std::io::Error>(completion("x"))
            })
            .await
            .unwrap();
        assert_eq!(answer.source, AnswerSource::Provider);
    }

    /// The answer is stored, so a second process (another stack over the
    /// same store) finds it without calling the provider.
    #[tokio::test]
    async fn answers_are_shared_through_the_store() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (first, _) = stack(Arc::clone(&store));
        let (second, _) = stack(store);
        let messages = [ChatMessage::user("Translate 'hello' into Basque.")];
        let params = RequestParams::default();
        let request = request(&messages, &params);
        let a = first
            .prompt_cache()
            .unwrap()
            .get_or_compute(&request, || async {
                Ok::<_, std::io::Error>(completion("Kaixo"))
            })
            .await
            .unwrap();
        assert_eq!(a.source, AnswerSource::Provider);
        let b = second
            .prompt_cache()
            .unwrap()
            .get_or_compute(&request, || async {
                Err::<Completion, _>(std::io::Error::other("must not be called"))
            })
            .await
            .unwrap();
        assert_eq!(b.source, AnswerSource::Store);
        assert_eq!(b.entry.response.content, "Kaixo");
    }

    /// A provider error reaches every waiting caller, from one call.
    #[tokio::test]
    async fn a_provider_error_reaches_every_caller_once() {
        let (stratum, _) = stack(Arc::new(MemoryStore::new()));
        let prompts = stratum.prompt_cache().unwrap();
        let messages = [ChatMessage::user("Will this fail?")];
        let params = RequestParams::default();
        let request = request(&messages, &params);
        let (calls, answers) = burst(&prompts, &request, 8, || {
            Err(std::io::Error::other("rate limited"))
        })
        .await;
        assert_eq!(calls, 1);
        assert!(answers.iter().all(|a| {
            a.as_ref()
                .is_err_and(|e| e.to_string().contains("rate limited"))
        }));
    }

    /// With the store down the provider still answers (and nothing is stored).
    #[tokio::test]
    async fn the_provider_answers_when_the_store_is_down() {
        let faulty = Arc::new(FaultyStore::new(MemoryStore::new(), 3));
        faulty.set_plan(FaultPlan::outage());
        let (stratum, _) = stack(faulty);
        let messages = [ChatMessage::user("Is the database up?")];
        let params = RequestParams::default();
        let request = request(&messages, &params);
        let answer = stratum
            .prompt_cache()
            .unwrap()
            .get_or_compute(&request, || async {
                Ok::<_, std::io::Error>(completion("No."))
            })
            .await
            .unwrap();
        assert_eq!(answer.source, AnswerSource::Provider);
        assert_eq!(answer.entry.response.content, "No.");
    }
}

/// The document types' declared indexes and validated writes against the
/// real test server, through the repository (moved here from stratum-models,
/// which no longer knows the driver): names, uniqueness and TTLs as
/// declared, read back with the raw driver.
#[cfg(feature = "mongodb")]
mod models_on_the_server {
    use futures::TryStreamExt;
    use stratum::models::{
        CachedResponse, ChatMessage, ContextSnapshot, Document as _, MAX_BSON_DOCUMENT_SIZE,
        RequestParams, ResponseCacheEntry, TokenUsage, UsageRecord, ValidationError,
    };
    use stratum::{MongoStore, Repository};
    use stratum_tests::TestDb;

    use super::*;

    fn now() -> DateTime {
        DateTime::now()
    }

    fn entry_for(prompt: &str) -> ResponseCacheEntry {
        let messages = [ChatMessage::user(prompt)];
        let params = RequestParams {
            temperature: Some(0.0),
            ..Default::default()
        };
        ResponseCacheEntry::new(
            &super::prompts::request(&messages, &params),
            CachedResponse::text("answer"),
            TokenUsage::new(10, 2),
            now(),
        )
        .unwrap()
    }

    /// A stack over the test database (no cache, so reads see the server).
    fn on(db: &TestDb) -> (Stratum, MongoStore) {
        let store = MongoStore::new(db.db().clone());
        let mut config = config();
        config.cache.enabled = false;
        let stratum = Stratum::builder(config)
            .store(Arc::new(store.clone()))
            .build()
            .unwrap();
        (stratum, store)
    }

    /// What the server lists, read with the raw driver: name, keys,
    /// uniqueness, `expireAfterSeconds`.
    async fn index_docs(db: &mongodb::Database, collection: &str) -> Vec<Document> {
        db.collection::<Document>(collection)
            .list_indexes()
            .await
            .unwrap()
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .map(|model| {
                let mut doc = stratum::bson::doc! { "key": model.keys };
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

    /// The bug this guards: `ensure_indexes` used to go through an index
    /// description without name or TTL, so the response cache's TTL index
    /// was created as a plain `expires_at_1` and entries never expired.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ensure_indexes_creates_names_unique_and_ttl_idempotently() {
        let db = TestDb::new("repo_indexes").await;
        let (stratum, store) = on(&db);
        let cache = stratum.repository::<ResponseCacheEntry>().unwrap();
        cache.ensure_indexes().await.unwrap();

        let first = index_docs(db.db(), ResponseCacheEntry::COLLECTION).await;
        let find = |name: &str| {
            first
                .iter()
                .find(|d| d.get_str("name") == Ok(name))
                .cloned()
                .unwrap_or_else(|| panic!("no index {name}: {first:?}"))
        };
        let unique = find("cache_key_unique");
        assert_eq!(unique.get_bool("unique"), Ok(true));
        assert_eq!(
            unique
                .get_document("key")
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["cache_key"]
        );
        let ttl = find("expires_at_ttl");
        assert_eq!(ttl.get_i64("expireAfterSeconds"), Ok(0), "{ttl:?}");
        let compound = find("provider_model_created_at");
        assert_eq!(
            compound
                .get_document("key")
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["provider", "model", "created_at"]
        );
        assert_eq!(first.len(), 5, "_id plus the four declared: {first:?}");

        // Again: no error, no new index, same definitions.
        cache.ensure_indexes().await.unwrap();
        assert_eq!(
            index_docs(db.db(), ResponseCacheEntry::COLLECTION).await,
            first
        );

        // What `stratum check` reports: every declared index present.
        let report = stratum::indexes::check::<ResponseCacheEntry>(&store)
            .await
            .unwrap();
        assert_eq!(report.len(), 4);
        for status in &report {
            assert!(status.is_present(), "{status}");
        }
        let ttl_line = report
            .iter()
            .find(|s| s.declared.name == "expires_at_ttl")
            .unwrap();
        assert_eq!(
            ttl_line.to_string(),
            "llm_response_cache.expires_at_ttl ({expires_at: 1}): present as `expires_at_ttl`"
        );

        // Every other model's indexes are accepted by the server too.
        stratum
            .repository::<Conversation>()
            .unwrap()
            .ensure_indexes()
            .await
            .unwrap();
        stratum
            .repository::<Message>()
            .unwrap()
            .ensure_indexes()
            .await
            .unwrap();
        stratum
            .repository::<ContextSnapshot>()
            .unwrap()
            .ensure_indexes()
            .await
            .unwrap();
        stratum
            .repository::<UsageRecord>()
            .unwrap()
            .ensure_indexes()
            .await
            .unwrap();
        let declared = stratum::indexes::check_declared(&store).await.unwrap();
        assert!(declared.iter().all(|s| s.is_present()), "{declared:?}");
        let messages = index_docs(db.db(), Message::COLLECTION).await;
        assert!(
            messages
                .iter()
                .any(|d| d.get_str("name") == Ok("conversation_id_seq_unique")
                    && d.get_bool("unique") == Ok(true))
        );
        db.cleanup().await;
    }

    /// An index of the declared name with another definition is refused,
    /// never replaced or doubled.
    #[tokio::test]
    async fn a_changed_definition_is_refused() {
        let db = TestDb::new("repo_index_conflict").await;
        let (_, store) = on(&db);
        let declared = IndexSpec::ttl("expires_at_ttl", "expires_at", Duration::ZERO);
        store.ensure_index("c", &declared).await.unwrap();
        let changed = declared.clone().expiring_after(Duration::from_secs(60));
        let err = store.ensure_index("c", &changed).await.unwrap_err();
        assert!(matches!(err, StoreError::Validation { .. }), "{err:?}");
        let listed = store.indexes("c").await.unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(
            listed.iter().any(|i| i.same_definition(&declared)),
            "{listed:?}"
        );
        db.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_duplicate_cache_key_is_rejected() {
        let db = TestDb::new("repo_dupkey").await;
        let (stratum, _) = on(&db);
        let cache = stratum.repository::<ResponseCacheEntry>().unwrap();
        cache.ensure_indexes().await.unwrap();

        let first = entry_for("What is 2+2?");
        cache.insert(&first).await.unwrap();
        // Same request up to end whitespace: same key, different _id.
        let again = entry_for("  What is 2+2?\n");
        assert_eq!(first.cache_key, again.cache_key);
        assert_ne!(first.id, again.id);
        let err = cache.insert(&again).await.unwrap_err();
        assert!(
            matches!(
                &err,
                RepositoryError::Store(StoreError::DuplicateKey { collection, .. })
                    if collection == "llm_response_cache"
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("E11000") || err.to_string().contains("duplicate"),
            "{err}"
        );

        // A different request is a different key and goes in.
        cache.insert(&entry_for("What is 2+3?")).await.unwrap();
        assert_eq!(cache.count(&Filter::all()).await.unwrap(), 2);
        let read = cache.get(&first.id).await.unwrap().value.unwrap();
        assert_eq!(*read, first);
        db.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invalid_document_is_never_written() {
        let db = TestDb::new("repo_invalid").await;
        let (stratum, _) = on(&db);
        let messages = stratum.repository::<Message>().unwrap();
        let cache = stratum.repository::<ResponseCacheEntry>().unwrap();
        let oid = stratum::bson::oid::ObjectId::new;
        let mut bad = Message::new(oid(), 0, Role::parse(""), "hi", 1, now());
        let invalid =
            |r: Result<(), RepositoryError>| matches!(r, Err(RepositoryError::Invalid(_)));
        assert!(invalid(messages.insert(&bad).await));
        bad.role = Role::User;
        bad.token_count = -1;
        assert!(invalid(messages.insert(&bad).await));
        let mut big = entry_for("big");
        big.response.content = "x".repeat(MAX_BSON_DOCUMENT_SIZE);
        assert!(matches!(
            cache.insert(&big).await,
            Err(RepositoryError::Invalid(ValidationError::TooLarge { .. }))
        ));
        let raw = |c: &str| db.db().collection::<Document>(c);
        assert_eq!(
            raw(Message::COLLECTION)
                .count_documents(stratum::bson::doc! {})
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            raw(ResponseCacheEntry::COLLECTION)
                .count_documents(stratum::bson::doc! {})
                .await
                .unwrap(),
            0
        );

        // A stored document that no longer decodes is a typed error on read.
        let id = oid();
        raw(Message::COLLECTION)
            .insert_one(stratum::bson::doc! { "_id": id, "schema_version": 1, "role": "user" })
            .await
            .unwrap();
        let err = messages.get(&id).await.unwrap_err();
        assert!(
            matches!(
                err,
                RepositoryError::Invalid(ValidationError::Malformed { .. })
            ),
            "{err:?}"
        );
        db.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_conversation_round_trips_through_the_server() {
        let db = TestDb::new("repo_conversation").await;
        let (stratum, _) = on(&db);
        let headers = stratum.repository::<Conversation>().unwrap();
        let messages = stratum.repository::<Message>().unwrap();
        messages.ensure_indexes().await.unwrap();
        let c = Conversation::new("gpt-4o", now()).with_user("u1");
        headers.insert(&c).await.unwrap();
        for (seq, text) in ["hello", "hi, how can I help?"].into_iter().enumerate() {
            let role = if seq == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            messages
                .insert(&Message::new(c.id, seq as i64, role, text, 3, now()))
                .await
                .unwrap();
        }
        // A retried append of seq 1 hits the (conversation_id, seq) unique index.
        let retry = Message::new(c.id, 1, Role::Assistant, "hi, how can I help?", 3, now());
        assert!(matches!(
            messages.insert(&retry).await,
            Err(RepositoryError::Store(StoreError::DuplicateKey { collection, .. }))
                if collection == "messages"
        ));
        assert_eq!(headers.get(&c.id).await.unwrap().value.as_deref(), Some(&c));
        db.cleanup().await;
    }

    /// A live entry for `key` at `now`: unexpired or without expiry.
    async fn lookup(
        cache: &Repository<ResponseCacheEntry>,
        key: &str,
        now: DateTime,
    ) -> Option<Arc<ResponseCacheEntry>> {
        let live = Filter::gt("expires_at", now).or(Filter::exists("expires_at", false));
        let query = Query::new(Filter::eq("cache_key", key).and(live)).limit(1);
        let found = cache.find(&query).await.unwrap().into_iter().next()?;
        Some(
            cache
                .update(&found.id, &Update::new().inc("hit_count", 1i64))
                .await
                .unwrap(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookup_counts_hits_and_never_serves_an_expired_entry() {
        let db = TestDb::new("repo_lookup").await;
        let (stratum, _) = on(&db);
        let cache = stratum.repository::<ResponseCacheEntry>().unwrap();
        cache.ensure_indexes().await.unwrap();
        let clock = DateTime::from_millis(DateTime::now().timestamp_millis());

        let live = entry_for("live").with_ttl(Duration::from_secs(3600));
        let mut stale = entry_for("stale");
        stale.created_at = DateTime::from_millis(clock.timestamp_millis() - 10_000);
        let stale = stale.with_ttl(Duration::from_secs(5));
        let forever = entry_for("forever");
        for e in [&live, &stale, &forever] {
            cache.insert(e).await.unwrap();
        }

        let key = |e: &ResponseCacheEntry| e.cache_key.as_str().to_owned();
        assert_eq!(
            lookup(&cache, &key(&live), clock).await.unwrap().hit_count,
            1
        );
        let second = lookup(&cache, &key(&live), clock).await.unwrap();
        assert_eq!(second.hit_count, 2);
        assert_eq!(second.response, live.response);
        assert_eq!(
            lookup(&cache, &key(&forever), clock)
                .await
                .unwrap()
                .hit_count,
            1
        );
        // Expired but (probably) not swept yet: still stored, never served.
        assert!(lookup(&cache, &key(&stale), clock).await.is_none());
        // A key that was never cached.
        assert!(
            lookup(&cache, &key(&entry_for("other")), clock)
                .await
                .is_none()
        );
        db.cleanup().await;
    }

    /// One full sweep interval (60 s) plus the time for the sweep itself, twice over.
    const SWEEP_BOUND: Duration = Duration::from_secs(150);

    /// TTL expiry end to end: the index `ensure_indexes` creates makes the
    /// server delete an expired entry. SLOW ON PURPOSE: the server (like
    /// mongod) sweeps every 60 s, so this polls for up to 150 s; it asserts
    /// only "eventually gone within the bound", never a timing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_ttl_sweep_removes_an_expired_cache_entry() {
        let db = TestDb::new("repo_ttl").await;
        let (stratum, _) = on(&db);
        let cache = stratum.repository::<ResponseCacheEntry>().unwrap();
        cache.ensure_indexes().await.unwrap();

        // Already expired (created an hour ago, one-second TTL), and one that never expires.
        let mut expired = entry_for("expired");
        expired.created_at = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
        let expired = expired.with_ttl(Duration::from_secs(1));
        let forever = entry_for("forever");
        cache.insert(&expired).await.unwrap();
        cache.insert(&forever).await.unwrap();
        assert_eq!(cache.count(&Filter::all()).await.unwrap(), 2);

        let started = tokio::time::Instant::now();
        let mut gone = false;
        while started.elapsed() < SWEEP_BOUND {
            if cache.count(&Filter::id(expired.id)).await.unwrap() == 0 {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        assert!(
            gone,
            "the expired entry was still there after {SWEEP_BOUND:?}"
        );
        assert_eq!(
            cache.count(&Filter::id(forever.id)).await.unwrap(),
            1,
            "an entry without expires_at is never swept"
        );
        db.cleanup().await;
    }
}
