//! Property test: with every write going through the repository, a read by
//! id always returns what a plain map says the collection holds, whatever
//! the interleaving of inserts, updates, upserts, deletes, reads and clock
//! advances (cache hits, expiry, refreshes and invalidations included).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use stratum::bson::DateTime;
use stratum::bson::oid::ObjectId;
use stratum::models::Conversation;
use stratum::{
    ManualClock, MemoryStore, RepositoryError, StoreError, Stratum, StratumConfig, Update,
};

#[derive(Debug, Clone)]
enum Step {
    Insert(usize),
    Update(usize, i64),
    Upsert(usize, i64),
    Delete(usize),
    Get(usize),
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..6usize).prop_map(Step::Insert),
        (0..6usize, 1..5i64).prop_map(|(k, n)| Step::Update(k, n)),
        (0..6usize, 1..5i64).prop_map(|(k, n)| Step::Upsert(k, n)),
        (0..6usize).prop_map(Step::Delete),
        (0..6usize).prop_map(Step::Get),
        (0..3u64).prop_map(Step::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn reads_match_the_model(steps in proptest::collection::vec(step(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let hand = ManualClock::new();
            #[cfg_attr(not(feature = "cache"), allow(unused_mut))]
            let mut config = StratumConfig::default();
            #[cfg(feature = "cache")]
            {
                config.cache.time_to_live = Some(Duration::from_secs(2));
            }
            let stratum = Stratum::builder(config)
                .store(Arc::new(MemoryStore::new()))
                .clock(hand.clone())
                .build()
                .unwrap();
            let repo = stratum.repository::<Conversation>().unwrap();
            let ids: Vec<ObjectId> = (0..6).map(|_| ObjectId::new()).collect();
            // The model: id -> message_count of the stored document.
            let mut model: BTreeMap<usize, i64> = BTreeMap::new();
            let at = DateTime::from_millis(1_700_000_000_000);
            for step in steps {
                match step {
                    Step::Insert(k) => {
                        let mut c = Conversation::new("m", at);
                        c.id = ids[k];
                        let result = repo.insert(&c).await;
                        if let std::collections::btree_map::Entry::Vacant(e) = model.entry(k) {
                            result.unwrap();
                            e.insert(0);
                        } else {
                            let dup = matches!(result, Err(RepositoryError::Store(StoreError::DuplicateKey { .. })));
                            prop_assert!(dup, "{:?}", result);
                        }
                    }
                    Step::Update(k, n) => {
                        let result = repo.update(&ids[k], &Update::new().inc("message_count", n)).await;
                        match model.get_mut(&k) {
                            Some(count) => {
                                *count += n;
                                prop_assert_eq!(result.unwrap().message_count, *count);
                            }
                            None => {
                                let missing = matches!(result, Err(RepositoryError::Store(StoreError::NotFound { .. })));
                                prop_assert!(missing, "{:?}", result);
                            }
                        }
                    }
                    Step::Upsert(k, n) => {
                        // Only existing documents: a bare `{_id}` would not decode as a Conversation.
                        if let Some(count) = model.get_mut(&k) {
                            *count = n;
                            let c = repo.upsert(&ids[k], &Update::new().set("message_count", n)).await.unwrap();
                            prop_assert_eq!(c.message_count, n);
                        }
                    }
                    Step::Delete(k) => {
                        prop_assert_eq!(repo.delete(&ids[k]).await.unwrap(), model.remove(&k).is_some());
                    }
                    Step::Get(k) => {
                        let read = repo.get(&ids[k]).await.unwrap();
                        prop_assert!(!read.is_stale(), "{:?}", read.origin);
                        prop_assert_eq!(read.value.map(|c| c.message_count), model.get(&k).copied());
                    }
                    Step::Advance(s) => hand.advance(Duration::from_secs(s)),
                }
            }
            Ok(())
        })?;
    }
}

/// The handle's own change-stream coherence over the test server (a
/// replica set): on by default, off by `mongodb.change_streams = false`,
/// a cache that is not trusted while its stream is down, and
/// `Stratum::shutdown` stopping the watchers. "Another process" writes with
/// the raw driver on its own client, around every cache of the handle.
#[cfg(all(feature = "mongodb", feature = "cache"))]
mod over_mongodb {
    use std::time::{Duration, Instant};

    use stratum::bson::DateTime;
    use stratum::models::Conversation;
    use stratum::watch::Support;
    use stratum::{Origin, Stratum, StratumConfig};
    use stratum_tests::TestDb;

    const WAIT: Duration = Duration::from_secs(30);

    async fn open(db: &TestDb, change_streams: bool) -> Stratum {
        let mut config = StratumConfig::default();
        config.mongodb.uri = Some(stratum_tests::mongodb_uri().parse().unwrap());
        config.mongodb.database = db.name().to_owned();
        config.mongodb.change_streams = change_streams;
        Stratum::builder(config).open().await.unwrap()
    }

    /// Waits until `done` holds of the handle's coherence state.
    async fn until(stratum: &Stratum, done: impl Fn(&stratum::watch::CoherenceState) -> bool) {
        let started = Instant::now();
        while !done(&stratum.coherence()) {
            assert!(started.elapsed() < WAIT, "{:?}", stratum.coherence());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Reads `id` until the title is `title` (the change event applied).
    async fn until_title(repo: &stratum::Repository<Conversation>, c: &Conversation, title: &str) {
        let started = Instant::now();
        loop {
            let read = repo.get(&c.id).await.unwrap();
            if read.value.unwrap().title.as_deref() == Some(title) {
                return;
            }
            assert!(started.elapsed() < WAIT, "{title} never read");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_repository_is_watched_by_default_and_shutdown_stops_it() {
        let db = TestDb::new("coherence_default").await;
        let stratum = open(&db, true).await;
        let repo = stratum.repository::<Conversation>().unwrap();
        until(&stratum, |s| s.all_open()).await;
        assert_eq!(stratum.coherence().support, Support::Supported);

        let c = Conversation::new("gpt-4o", DateTime::now());
        repo.insert(&c).await.unwrap();
        // The insert's own event applied, so it cannot drop what we cache.
        until(&stratum, |s| s.watchers[0].1.is_some_and(|w| w.events >= 1)).await;
        repo.get(&c.id).await.unwrap();
        let cached = repo.get(&c.id).await.unwrap();
        assert_eq!(cached.origin, Origin::Cache);

        // Another process's write (the escape hatch's driver bypasses the
        // cache) reaches the cached copy through the change stream.
        let elsewhere = db.db().collection::<Conversation>("conversations");
        let set = |t: &str| stratum::bson::doc! { "$set": { "title": t } };
        elsewhere
            .update_one(stratum::bson::doc! { "_id": c.id }, set("from elsewhere"))
            .await
            .unwrap();
        until_title(&repo, &c, "from elsewhere").await;

        // After shutdown nothing follows the stream: the copy stays cached
        // (60 s TTL) however the document changes.
        stratum.shutdown().await;
        assert_eq!(stratum.coherence().support, Support::Off);
        assert_eq!(repo.get(&c.id).await.unwrap().origin, Origin::Cache);
        elsewhere
            .update_one(stratum::bson::doc! { "_id": c.id }, set("unseen"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let read = repo.get(&c.id).await.unwrap();
        assert_eq!(read.origin, Origin::Cache);
        assert_eq!(read.value.unwrap().title.as_deref(), Some("from elsewhere"));
        stratum.shutdown().await; // twice is harmless
        db.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn switched_off_nothing_is_watched() {
        let db = TestDb::new("coherence_off").await;
        let stratum = open(&db, false).await;
        let repo = stratum.repository::<Conversation>().unwrap();
        let state = stratum.coherence();
        assert_eq!((state.support, state.watchers.len()), (Support::Off, 0));

        let c = Conversation::new("gpt-4o", DateTime::now());
        repo.insert(&c).await.unwrap();
        repo.get(&c.id).await.unwrap();
        db.db()
            .collection::<Conversation>("conversations")
            .update_one(
                stratum::bson::doc! { "_id": c.id },
                stratum::bson::doc! { "$set": { "title": "unseen" } },
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let read = repo.get(&c.id).await.unwrap();
        assert_eq!(read.origin, Origin::Cache);
        assert_eq!(read.value.unwrap().title, None);
        db.cleanup().await;
    }

    /// While a watcher's stream is down, a write elsewhere is read at once
    /// (from the database), not after the stream comes back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn while_the_stream_is_down_reads_go_to_the_database() {
        let db = TestDb::new("coherence_down").await;
        let stratum = open(&db, true).await;
        let repo = stratum.repository::<Conversation>().unwrap();
        until(&stratum, |s| s.all_open()).await;
        let c = Conversation::new("gpt-4o", DateTime::now());
        repo.insert(&c).await.unwrap();
        let opened = |s: &stratum::watch::CoherenceState| s.watchers[0].1.unwrap();
        until(&stratum, |s| opened(s).events >= 1).await;
        repo.get(&c.id).await.unwrap();
        assert_eq!(repo.get(&c.id).await.unwrap().origin, Origin::Cache);

        stratum.reconnect_watchers();
        until(&stratum, |s| !opened(s).open).await;
        // Written while no stream is open (it reopens after 2 s).
        db.db()
            .collection::<Conversation>("conversations")
            .update_one(
                stratum::bson::doc! { "_id": c.id },
                stratum::bson::doc! { "$set": { "title": "while down" } },
            )
            .await
            .unwrap();
        let read = repo.get(&c.id).await.unwrap();
        assert!(
            !opened(&stratum.coherence()).open,
            "the stream reopened too soon to tell"
        );
        assert_eq!(read.origin, Origin::Store);
        assert_eq!(read.value.unwrap().title.as_deref(), Some("while down"));

        // Back open: the cache is trusted again.
        until(&stratum, |s| s.all_open()).await;
        repo.get(&c.id).await.unwrap();
        assert_eq!(repo.get(&c.id).await.unwrap().origin, Origin::Cache);
        db.cleanup().await;
    }

    /// The driver escape hatch: there over MongoDB, absent over the
    /// embedded store.
    #[tokio::test]
    async fn the_driver_is_exposed_over_mongodb_only() {
        let db = TestDb::new("coherence_hatch").await;
        let stratum = open(&db, true).await;
        let database = stratum.mongo_database().unwrap();
        assert_eq!(database.name(), db.name());
        database
            .run_command(stratum::bson::doc! { "ping": 1 })
            .await
            .unwrap();
        assert!(stratum.mongo_client().is_some());
        let embedded = Stratum::builder(StratumConfig::default()).build().unwrap();
        assert!(embedded.mongo_database().is_none());
        assert_eq!(embedded.coherence().support, Support::Off);
        db.cleanup().await;
    }
}

/// The follower's metrics, with a recorder installed for this test binary
/// (the other tests here record nothing of their own that it could break).
#[cfg(all(feature = "mongodb", feature = "cache"))]
mod watcher_metrics {
    use std::time::{Duration, Instant};

    use stratum::bson::DateTime;
    use stratum::models::Conversation;
    use stratum::{Stratum, StratumConfig};
    use stratum_tests::TestDb;

    /// The value of the sample `name{...collection="conversations"...}`
    /// (the first one whose labels hold it) in a Prometheus text page.
    fn sample(page: &str, name: &str) -> Option<f64> {
        page.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| {
                l.split(['{', ' ']).next() == Some(name)
                    && l.contains("collection=\"conversations\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// The watcher's series are on the handle's own `/metrics` page (its
    /// monitor's recorder), whatever is installed globally.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_open_and_lag_are_recorded_per_collection() {
        let db = TestDb::new("coherence_metrics").await;
        let mut config = StratumConfig::default();
        config.mongodb.uri = Some(stratum_tests::mongodb_uri().parse().unwrap());
        config.mongodb.database = db.name().to_owned();
        config.monitor.settings.listen = "127.0.0.1:0".parse().unwrap();
        let stratum = Stratum::builder(config).open().await.unwrap();
        let repo = stratum.repository::<Conversation>().unwrap();
        let started = Instant::now();
        while !stratum.coherence().all_open() {
            assert!(started.elapsed() < Duration::from_secs(30));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..3 {
            repo.insert(&Conversation::new("gpt-4o", DateTime::now()))
                .await
                .unwrap();
        }
        while stratum.coherence().watchers[0].1.unwrap().events < 3 {
            assert!(started.elapsed() < Duration::from_secs(30));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let page = stratum.monitor().unwrap().render();
        let value =
            |name: &str| sample(&page, name).unwrap_or_else(|| panic!("no {name} in\n{page}"));
        assert!(value("stratum_change_stream_events_total") >= 3.0);
        assert_eq!(value("stratum_change_stream_open"), 1.0);
        let lag_count = value("stratum_change_stream_lag_seconds_count");
        let lag_sum = value("stratum_change_stream_lag_seconds_sum");
        assert!(lag_count >= 3.0, "{page}");
        assert!(lag_sum / lag_count < 10.0, "{page}");
        assert_eq!(value("stratum_change_stream_resumes_total"), 0.0);
        stratum.shutdown().await;
        db.cleanup().await;
    }
}
