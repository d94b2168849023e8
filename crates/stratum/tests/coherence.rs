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
