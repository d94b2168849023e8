//! Predictive pre-loading through `Repository<T>`: a learned group is
//! prefetched in one query and read from the cache, across collections
//! too (a conversation predicts its messages); a prefetch waits for
//! nothing and is never made while the breaker is not closed or beyond its
//! share of the read calls; a missed read asks for its likely successors
//! in its own call. On the embedded store and on the real test
//! server (MongoStore over TCP).

// Prefetching lives in the repository's cache.
#![cfg(all(feature = "cache", feature = "breaker", feature = "pool"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use stratum::bson::DateTime;
use stratum::models::{Conversation, Document};
use stratum::{MemoryStore, Origin, Repository, Store, Stratum, StratumConfig};
use stratum_store::{FaultPlan, FaultyStore};

fn config(max_share: f64) -> StratumConfig {
    let mut config = StratumConfig::default();
    config.cache.prefetch.enabled = true;
    config.cache.prefetch.max_share = max_share;
    config.monitor.enabled = false;
    config
}

struct Group {
    stratum: Stratum,
    repo: Repository<Conversation>,
    ids: Vec<<Conversation as Document>::Id>,
}

/// A stack over `store` whose repository has seen `a, b, c` read in this
/// order three times (enough for `a`'s successors to be proposed), then
/// once more with `b` and `c` dropped: a read of `a` now proposes them.
async fn learned(store: Arc<dyn Store>, max_share: f64) -> Group {
    learned_with(store, config(max_share)).await
}

async fn learned_with(store: Arc<dyn Store>, config: StratumConfig) -> Group {
    let stratum = Stratum::builder(config).store(store).build().unwrap();
    let repo = stratum.repository::<Conversation>().unwrap();
    let mut ids = Vec::new();
    for model in ["a", "b", "c"] {
        let c = Conversation::new(model, DateTime::from_millis(1_700_000_000_000));
        repo.insert(&c).await.unwrap();
        ids.push(c.id);
    }
    for _ in 0..3 {
        for id in &ids {
            repo.get(id).await.unwrap();
        }
    }
    assert_eq!(repo.prefetch_calls().unwrap().1, 0, "everything was cached");
    // The reads wait in the buffer until a drain records them.
    repo.drain_predictions();
    miss_round(&repo, &ids).await;
    Group { stratum, repo, ids }
}

/// Reads `ids` with all but the first dropped. A read of the first
/// proposes the others only while its hint is armed: armed when it gained
/// likely successors, disarmed by a check that found them all cached (a
/// drain running during the learning reads may have made one), armed
/// again by a miss of one of them after it. So whichever happened before,
/// the first one's next read proposes the others.
async fn miss_round<T: Document>(repo: &Repository<T>, ids: &[T::Id]) {
    for id in &ids[1..] {
        repo.invalidate_id(id).unwrap();
    }
    for id in ids {
        repo.get(id).await.unwrap();
        tokio::task::yield_now().await;
    }
    repo.drain_predictions();
}

impl Group {
    /// Drops `b` and `c` from the cache, reads `a` (a hit: its hint is
    /// armed, so the read proposes `b` and `c`) and yields once, so a
    /// prefetch task can run: what the prefetcher does next is the test's.
    async fn read_head(&self) {
        for id in &self.ids[1..] {
            self.repo.invalidate_id(id).unwrap();
        }
        let read = self.repo.get(&self.ids[0]).await.unwrap();
        assert_eq!(read.origin, Origin::Cache);
        tokio::task::yield_now().await;
    }
}

async fn a_learned_group_is_prefetched_in_one_call(store: Arc<dyn Store>) {
    let g = learned(store, 1.0).await;
    let (calls, stats) = (
        g.repo.prefetch_calls().unwrap(),
        g.repo.cache_stats().unwrap(),
    );
    g.read_head().await;
    for id in &g.ids[1..] {
        let read = g.repo.get(id).await.unwrap();
        assert_eq!(
            read.origin,
            Origin::Cache,
            "prefetched (or being prefetched)"
        );
    }
    assert_eq!(
        g.repo.prefetch_calls().unwrap(),
        (calls.0, calls.1 + 1),
        "no load, 1 prefetch"
    );
    let now = g.repo.cache_stats().unwrap();
    assert_eq!(
        (
            now.prefetch_issued - stats.prefetch_issued,
            now.prefetch_inserted - stats.prefetch_inserted,
            now.prefetch_read - stats.prefetch_read,
            now.prefetch_unread - stats.prefetch_unread,
        ),
        (2, 2, 2, 0)
    );
}

#[tokio::test]
async fn a_learned_group_is_prefetched_in_one_call_embedded() {
    a_learned_group_is_prefetched_in_one_call(Arc::new(MemoryStore::new())).await;
}

/// With the breaker open no prefetch is made: the check is the
/// prefetcher's own (without it the prefetch would be counted as a call,
/// and refused by the breaker only after taking its share).
#[tokio::test]
async fn no_prefetch_while_the_breaker_is_not_closed() {
    let g = learned(Arc::new(MemoryStore::new()), 1.0).await;
    let (calls, issued) = (
        g.repo.prefetch_calls().unwrap(),
        g.repo.cache_stats().unwrap().prefetch_issued,
    );
    g.stratum.breaker().unwrap().force_open();
    g.read_head().await;
    tokio::task::yield_now().await;
    assert_eq!(g.repo.prefetch_calls().unwrap(), calls);
    assert_eq!(g.repo.cache_stats().unwrap().prefetch_issued, issued);
    g.stratum.breaker().unwrap().reset();
    g.read_head().await;
    assert_eq!(g.repo.get(&g.ids[1]).await.unwrap().origin, Origin::Cache);
    assert_eq!(
        g.repo.prefetch_calls().unwrap(),
        (calls.0, calls.1 + 1),
        "closed again: prefetched"
    );
}

/// While a caller waits for admission (one slot, held by a slow read) no
/// prefetch is made: without the check it would be counted and queue too.
#[tokio::test]
async fn no_prefetch_while_callers_wait_for_admission() {
    let faulty = Arc::new(FaultyStore::new(MemoryStore::new(), 1));
    let mut config = config(1.0);
    config.pool.max_size = 1;
    let g = learned_with(Arc::clone(&faulty) as Arc<dyn Store>, config).await;
    let others: Vec<_> = (0..2)
        .map(|_| Conversation::new("x", DateTime::from_millis(1_700_000_000_000)))
        .collect();
    for c in &others {
        g.repo.insert(c).await.unwrap();
    }
    faulty.set_plan(FaultPlan {
        latency: Duration::from_millis(300),
        ..FaultPlan::none()
    });
    let readers: Vec<_> = others
        .iter()
        .map(|c| {
            let (repo, id) = (g.repo.clone(), c.id);
            // The waiter may be refused (queue timeout): not what is tested.
            tokio::spawn(async move { drop(repo.get(&id).await) })
        })
        .collect();
    // One reader holds the slot in the slow store, the other waits for it
    // (the readers run while this task yields; no time needs to pass).
    let waiting =
        || g.stratum.pool_status().unwrap().waiting + g.stratum.limit_status().unwrap().waiting;
    for _ in 0..1_000 {
        if waiting() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(waiting(), 1);
    let (calls, issued) = (
        g.repo.prefetch_calls().unwrap(),
        g.repo.cache_stats().unwrap().prefetch_issued,
    );
    g.read_head().await;
    assert_eq!(g.repo.prefetch_calls().unwrap().1, calls.1);
    assert_eq!(g.repo.cache_stats().unwrap().prefetch_issued, issued);
    for r in readers {
        r.await.unwrap();
    }
}

/// A key whose successors were all cached at its last proposal proposes
/// nothing (its hint is disarmed) until one of them misses after it: the
/// miss re-arms it, and its next read proposes again.
#[tokio::test]
async fn a_miss_after_a_key_rearms_its_proposal() {
    let g = learned(Arc::new(MemoryStore::new()), 1.0).await;
    // Everything cached: a's proposal finds nothing to load and disarms.
    g.repo.get(&g.ids[0]).await.unwrap();
    let calls = g.repo.prefetch_calls().unwrap();
    g.read_head().await;
    assert_eq!(g.repo.prefetch_calls().unwrap().1, calls.1, "disarmed");
    assert_eq!(g.repo.get(&g.ids[1]).await.unwrap().origin, Origin::Store);
    g.repo.drain_predictions();
    // The drain task the miss woke finds nothing left.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    let calls = g.repo.prefetch_calls().unwrap();
    g.read_head().await;
    assert_eq!(g.repo.get(&g.ids[1]).await.unwrap().origin, Origin::Cache);
    assert_eq!(g.repo.prefetch_calls().unwrap(), (calls.0, calls.1 + 1));
}

/// A missed read of a key with likely successors in its collection asks
/// for them in its own call (`_id: {$in: [a, b, c]}`): no prefetch call
/// and no admission slot of their own, and `b` and `c` are then read
/// from the cache as prefetched entries. Without the joined load, `b`
/// and `c` come from a separate prefetch call (or, with no slot free, a
/// read call each).
async fn a_missed_read_brings_its_likely_successors(store: Arc<dyn Store>) {
    let g = learned(store, 1.0).await;
    let (calls, stats) = (
        g.repo.prefetch_calls().unwrap(),
        g.repo.cache_stats().unwrap(),
    );
    for id in &g.ids {
        g.repo.invalidate_id(id).unwrap();
    }
    assert_eq!(g.repo.get(&g.ids[0]).await.unwrap().origin, Origin::Store);
    // The drain task the miss woke finds b and c being loaded already.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    for id in &g.ids[1..] {
        assert_eq!(g.repo.get(id).await.unwrap().origin, Origin::Cache);
    }
    assert_eq!(
        g.repo.prefetch_calls().unwrap(),
        (calls.0 + 1, calls.1),
        "one read call, no prefetch call"
    );
    let now = g.repo.cache_stats().unwrap();
    assert_eq!(
        (
            now.prefetch_issued - stats.prefetch_issued,
            now.prefetch_inserted - stats.prefetch_inserted,
            now.prefetch_read - stats.prefetch_read,
        ),
        (2, 2, 2)
    );
}

#[tokio::test]
async fn a_missed_read_brings_its_likely_successors_embedded() {
    a_missed_read_brings_its_likely_successors(Arc::new(MemoryStore::new())).await;
}

/// With the breaker open a missed read leads no load of its successors:
/// the read is refused, and nothing is counted as issued (without the
/// check their loads would be led, counted and abandoned).
#[tokio::test]
async fn a_missed_read_brings_nothing_while_the_breaker_is_not_closed() {
    let g = learned(Arc::new(MemoryStore::new()), 1.0).await;
    let issued = g.repo.cache_stats().unwrap().prefetch_issued;
    for id in &g.ids {
        g.repo.invalidate_id(id).unwrap();
    }
    g.stratum.breaker().unwrap().force_open();
    assert!(g.repo.get(&g.ids[0]).await.is_err());
    assert_eq!(g.repo.cache_stats().unwrap().prefetch_issued, issued);
    g.stratum.breaker().unwrap().reset();
    assert_eq!(g.repo.get(&g.ids[0]).await.unwrap().origin, Origin::Store);
    assert_eq!(
        g.repo.cache_stats().unwrap().prefetch_issued,
        issued + 2,
        "closed again: b and c come along"
    );
}

/// `max_share = 0`: never a prefetch, and the group is read from the store.
#[tokio::test]
async fn no_prefetch_beyond_a_zero_share() {
    let g = learned(Arc::new(MemoryStore::new()), 0.0).await;
    let calls = g.repo.prefetch_calls().unwrap();
    assert_eq!(calls.1, 0);
    g.read_head().await;
    assert_eq!(g.repo.get(&g.ids[1]).await.unwrap().origin, Origin::Store);
    assert_eq!(g.repo.prefetch_calls().unwrap(), (calls.0 + 1, 0));
}

/// Round after round the group is dropped and read again: prefetches never
/// pass half of the read calls (without the limit every round after the
/// first would be one prefetch and no read call).
#[tokio::test]
async fn prefetches_stay_within_their_share_of_the_calls() {
    let g = learned(Arc::new(MemoryStore::new()), 0.5).await;
    let mut prefetched = 0;
    for _ in 0..20 {
        g.read_head().await;
        for id in &g.ids[1..] {
            if g.repo.get(id).await.unwrap().origin == Origin::Cache {
                prefetched += 1;
            }
        }
        let (demand, prefetch) = g.repo.prefetch_calls().unwrap();
        assert!(
            prefetch as f64 <= 0.5 * (demand + prefetch) as f64,
            "{prefetch} prefetch calls, {demand} read calls"
        );
    }
    assert!(prefetched > 0, "some rounds were prefetched");
}

/// Opening a conversation is followed by reads of its messages, in another
/// collection: one predictor per handle learns it (key = collection + id),
/// and the messages' repository prefetches them when the conversation is
/// read (with a predictor per repository nothing would be proposed).
async fn a_conversation_predicts_its_messages(store: Arc<dyn Store>) {
    use stratum::models::{Message, Role};
    let stratum = Stratum::builder(config(1.0)).store(store).build().unwrap();
    let conversations = stratum.repository::<Conversation>().unwrap();
    let messages = stratum.repository::<Message>().unwrap();
    let at = DateTime::from_millis(1_700_000_000_000);
    let c = Conversation::new("gpt-4o", at);
    conversations.insert(&c).await.unwrap();
    let mut ids = Vec::new();
    for seq in 0..2 {
        let m = Message::new(c.id, seq, Role::User, "hello", 1, at);
        messages.insert(&m).await.unwrap();
        ids.push(m.id);
    }
    for _ in 0..3 {
        conversations.get(&c.id).await.unwrap();
        for id in &ids {
            messages.get(id).await.unwrap();
        }
    }
    conversations.drain_predictions();
    // As in `miss_round`: the messages dropped and read after the header.
    for id in &ids {
        messages.invalidate_id(id).unwrap();
    }
    conversations.get(&c.id).await.unwrap();
    tokio::task::yield_now().await;
    for id in &ids {
        messages.get(id).await.unwrap();
        tokio::task::yield_now().await;
    }
    conversations.drain_predictions();
    let (calls, stats) = (
        messages.prefetch_calls().unwrap(),
        messages.cache_stats().unwrap(),
    );
    for id in &ids {
        messages.invalidate_id(id).unwrap();
    }
    assert_eq!(
        conversations.get(&c.id).await.unwrap().origin,
        Origin::Cache
    );
    tokio::task::yield_now().await;
    for id in &ids {
        assert_eq!(messages.get(id).await.unwrap().origin, Origin::Cache);
    }
    assert_eq!(
        messages.prefetch_calls().unwrap(),
        (calls.0, calls.1 + 1),
        "no load, 1 prefetch of both messages"
    );
    assert_eq!(conversations.prefetch_calls().unwrap(), (1, 0));
    let now = messages.cache_stats().unwrap();
    assert_eq!(
        (
            now.prefetch_issued - stats.prefetch_issued,
            now.prefetch_read - stats.prefetch_read
        ),
        (2, 2)
    );
}

#[tokio::test]
async fn a_conversation_predicts_its_messages_embedded() {
    a_conversation_predicts_its_messages(Arc::new(MemoryStore::new())).await;
}

/// The same on the real test server, one fresh database.
#[cfg(feature = "mongodb")]
mod mongo {
    use stratum::MongoStore;
    use stratum_tests::TestDb;

    use super::*;

    #[tokio::test]
    async fn a_learned_group_is_prefetched_in_one_call() {
        let db = TestDb::new("facade_prefetch").await;
        super::a_learned_group_is_prefetched_in_one_call(Arc::new(MongoStore::new(
            db.db().clone(),
        )))
        .await;
        db.cleanup().await;
    }

    #[tokio::test]
    async fn a_missed_read_brings_its_likely_successors() {
        let db = TestDb::new("facade_prefetch_joined").await;
        super::a_missed_read_brings_its_likely_successors(Arc::new(MongoStore::new(
            db.db().clone(),
        )))
        .await;
        db.cleanup().await;
    }

    #[tokio::test]
    async fn a_conversation_predicts_its_messages() {
        let db = TestDb::new("facade_prefetch_across").await;
        super::a_conversation_predicts_its_messages(Arc::new(MongoStore::new(db.db().clone())))
            .await;
        db.cleanup().await;
    }
}
