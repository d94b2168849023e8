//! The LLM helpers across expiry and in reports: the prompt cache never
//! serves an entry past its `expires_at` and costs one provider call per
//! expiry (not per miss), and `Usage::per_user_per_day` counts hits as
//! savings, each on the embedded store and on the real test server.
//!
//! Time is a `ManualClock` the stack (and so the prompt cache) reads: the
//! entries expire by moving it, never by sleeping.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stratum::bson::DateTime;
use stratum::llm::{AnswerSource, Completion, PromptCache, UserDay};
use stratum::models::{
    CacheKey, CacheKeyRequest, CacheOutcome, CachedResponse, ChatMessage, Document, RequestParams,
    ResponseCacheEntry, TokenUsage, UsageRecord,
};
use stratum::store::WallClock;
use stratum::{Filter, ManualClock, MemoryStore, Store, Stratum, StratumConfig};
use support::request;

const TTL: Duration = Duration::from_secs(60);

/// A stack over `store` on `clock`, with or without the memory tier.
fn stack(store: Arc<dyn Store>, clock: &ManualClock, memory_tier: bool) -> Stratum {
    let mut config = StratumConfig::default();
    config.cache.enabled = memory_tier;
    // The memory tier's own TTL is far longer than the entries' TTL: what
    // keeps an expired entry from being served must be `expires_at`.
    config.cache.time_to_live = Some(Duration::from_secs(3_600));
    Stratum::builder(config)
        .store(store)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// Asks `prompts` once, counting provider calls in `calls`.
async fn ask(
    prompts: &PromptCache,
    request: &CacheKeyRequest<'_>,
    calls: &AtomicUsize,
) -> AnswerSource {
    prompts
        .get_or_compute(request, || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, std::io::Error>(Completion {
                response: CachedResponse::text(format!("answer {n}")),
                usage: TokenUsage::new(10, 3),
                cost_usd: 0.001,
            })
        })
        .await
        .unwrap()
        .source
}

/// `n` identical requests at once; how many provider calls they made.
async fn burst(
    prompts: &PromptCache,
    request: &CacheKeyRequest<'_>,
    calls: &AtomicUsize,
    n: usize,
) {
    let asks = (0..n).map(|_| ask(prompts, request, calls));
    futures::future::join_all(asks).await;
}

/// The whole story on one store: two stacks ("processes") share it, one
/// clock moves both.
async fn one_provider_call_per_expiry(store: Arc<dyn Store>, clock: ManualClock) {
    // Both stacks read the clock from the start, so they agree on the date.
    let a = stack(Arc::clone(&store), &clock, true);
    let b = stack(Arc::clone(&store), &clock, true);
    a.repository::<ResponseCacheEntry>()
        .unwrap()
        .ensure_indexes()
        .await
        .unwrap();
    let pa = a.prompt_cache().unwrap().with_store_ttl(TTL);
    let pb = b.prompt_cache().unwrap().with_store_ttl(TTL);
    let messages = [ChatMessage::user("What is the capital of Peru?")];
    let params = RequestParams::default();
    let request = request(&messages, &params);
    let calls = AtomicUsize::new(0);

    assert_eq!(ask(&pa, &request, &calls).await, AnswerSource::Provider);
    assert_eq!(ask(&pa, &request, &calls).await, AnswerSource::Memory);
    assert_eq!(ask(&pb, &request, &calls).await, AnswerSource::Store);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Past `expires_at`: neither tier serves it; one call answers a burst.
    clock.advance(TTL + Duration::from_secs(1));
    burst(&pa, &request, &calls, 8).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one provider call per expiry"
    );
    assert_eq!(ask(&pa, &request, &calls).await, AnswerSource::Memory);
    // The other process's memory holds the expired entry: it drops it and
    // finds the replacement in the store (the old code found only the
    // expired entry there, since the fresh one's insert failed on the
    // unique key, and asked the provider on every memory miss).
    assert_eq!(ask(&pb, &request, &calls).await, AnswerSource::Store);
    assert_eq!(ask(&pb, &request, &calls).await, AnswerSource::Memory);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // And again at the next expiry, from the other process this time.
    clock.advance(TTL);
    assert_eq!(ask(&pb, &request, &calls).await, AnswerSource::Provider);
    assert_eq!(ask(&pa, &request, &calls).await, AnswerSource::Store);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // One stored entry for the request, holding the latest answer.
    let key = CacheKey::compute(&request).unwrap();
    let stored = a
        .repository::<ResponseCacheEntry>()
        .unwrap()
        .find(&stratum::Query::new(Filter::eq("cache_key", key.as_str())))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].response.content, "answer 3");
}

/// Without the memory tier every request reads the store: an expired
/// entry there is replaced by one provider call, then served.
async fn one_provider_call_per_expiry_without_memory(store: Arc<dyn Store>, clock: ManualClock) {
    let a = stack(store, &clock, false);
    let prompts = a.prompt_cache().unwrap().with_store_ttl(TTL);
    let messages = [ChatMessage::user("And of Chile?")];
    let params = RequestParams::default();
    let request = request(&messages, &params);
    let calls = AtomicUsize::new(0);
    assert_eq!(
        ask(&prompts, &request, &calls).await,
        AnswerSource::Provider
    );
    assert_eq!(ask(&prompts, &request, &calls).await, AnswerSource::Store);
    clock.advance(TTL);
    assert_eq!(
        ask(&prompts, &request, &calls).await,
        AnswerSource::Provider
    );
    assert_eq!(ask(&prompts, &request, &calls).await, AnswerSource::Store);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

const DAY_MS: i64 = 86_400_000;
const DAY0: i64 = 1_700_006_400_000; // 2023-11-15 00:00 UTC

/// Records for two tenants, three users, two days, hits and misses;
/// `per_user_per_day` answers in one call, hits saved, never spent.
async fn usage_per_user_per_day(store: Arc<dyn Store>) {
    let stratum = stack(store, &ManualClock::new(), true);
    let usage = stratum.usage().unwrap();
    usage.records().ensure_indexes().await.unwrap();
    let at = |day: i64, hour: i64| DateTime::from_millis(DAY0 + day * DAY_MS + hour * 3_600_000);
    let call = |tenant, user, cache, when, tin, tout, cost: f64| {
        let r = UsageRecord::new("openai", "gpt-4o", cache, when)
            .with_caller(tenant, user)
            .with_tokens(tin, tout);
        match cache {
            CacheOutcome::Hit => r.with_saved(cost),
            _ => r.with_cost(cost),
        }
    };
    use CacheOutcome::{Bypass, Hit, Miss};
    for record in [
        call("acme", "ann", Miss, at(0, 1), 100, 20, 0.5),
        call("acme", "ann", Hit, at(0, 2), 100, 20, 0.5),
        call("acme", "ann", Hit, at(0, 23), 100, 20, 0.5),
        call("acme", "ann", Bypass, at(1, 0), 7, 1, 0.25),
        call("acme", "bob", Hit, at(0, 5), 40, 4, 0.125),
        call("other", "ann", Miss, at(0, 3), 1_000, 1, 2.0),
    ] {
        usage.record(&record).await.unwrap();
    }
    let report = usage
        .per_user_per_day(Filter::eq("tenant", "acme"))
        .await
        .unwrap();
    // (user, day, calls, hits, spent (in, out, $), saved (in, out, $))
    type Row<'a> = (&'a str, i64, u64, u64, (i64, i64, f64), (i64, i64, f64));
    let summary: Vec<Row<'_>> = report
        .iter()
        .map(|d: &UserDay| {
            (
                d.user.as_str(),
                (d.day.timestamp_millis() - DAY0) / DAY_MS,
                d.calls,
                d.cache_hits,
                (d.spent.tokens_in, d.spent.tokens_out, d.spent.cost_usd),
                (d.saved.tokens_in, d.saved.tokens_out, d.saved.cost_usd),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ann", 0, 3, 2, (100, 20, 0.5), (200, 40, 1.0)),
            ("ann", 1, 1, 0, (7, 1, 0.25), (0, 0, 0.0)),
            ("bob", 0, 1, 1, (0, 0, 0.0), (40, 4, 0.125)),
        ]
    );
    assert!(report.iter().all(|d| d.tenant == "acme"));
    // A user's value is a value: no tenant is literally this.
    let hostile = usage
        .per_user_per_day(Filter::eq("tenant", r#"{"$ne": null}"#))
        .await
        .unwrap();
    assert!(hostile.is_empty());
    // A record without a caller never reaches the store.
    let anonymous = UsageRecord::new("openai", "gpt-4o", Miss, at(0, 0));
    assert!(usage.record(&anonymous).await.is_err());
}

mod memory {
    use proptest::prelude::*;

    use super::*;

    /// Half a second off the whole seconds the clock moves by, so no
    /// check lands within a millisecond of an expiry (two stacks anchor
    /// their dates up to a millisecond apart).
    const MODEL_TTL_MS: i64 = 60_500;

    /// One step: ask through stack 0 or 1, or move the clock.
    #[derive(Debug, Clone)]
    enum Step {
        Ask(usize),
        Advance(u64),
    }

    /// Where the model says an answer comes from, and the calls it counts.
    #[derive(Debug, Default)]
    struct Model {
        stored: Option<i64>,
        memory: [Option<i64>; 2],
        calls: usize,
    }

    impl Model {
        fn ask(&mut self, stack: usize, now: i64) -> AnswerSource {
            if self.memory[stack].is_some_and(|at| at > now) {
                return AnswerSource::Memory;
            }
            if let Some(at) = self.stored.filter(|&at| at > now) {
                self.memory[stack] = Some(at);
                return AnswerSource::Store;
            }
            self.calls += 1;
            self.stored = Some(now + MODEL_TTL_MS);
            self.memory[stack] = self.stored;
            AnswerSource::Provider
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Two stacks over one store, asked in any order while the clock
        /// moves: every answer's source and the provider calls match a
        /// model with one stored expiry and one memory expiry per stack
        /// (a provider call only when both tiers have expired).
        #[test]
        fn answers_follow_a_model_of_the_two_tiers(
            steps in proptest::collection::vec(
                prop_oneof![
                    3 => (0..2usize).prop_map(Step::Ask),
                    2 => (0..90u64).prop_map(Step::Advance),
                ],
                1..40,
            )
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let clock = ManualClock::new();
                let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
                let stacks = [stack(Arc::clone(&store), &clock, true), stack(store, &clock, true)];
                let ttl = Duration::from_millis(u64::try_from(MODEL_TTL_MS).unwrap());
                let prompts: Vec<PromptCache> =
                    stacks.iter().map(|s| s.prompt_cache().unwrap().with_store_ttl(ttl)).collect();
                let messages = [ChatMessage::user("What is the capital of Peru?")];
                let params = RequestParams::default();
                let request = request(&messages, &params);
                let calls = AtomicUsize::new(0);
                let mut model = Model::default();
                let mut now = 0i64;
                for step in steps {
                    match step {
                        Step::Ask(i) => {
                            let got = ask(&prompts[i], &request, &calls).await;
                            prop_assert_eq!(got, model.ask(i, now), "stack {} at {} ms", i, now);
                            prop_assert_eq!(calls.load(Ordering::SeqCst), model.calls);
                        }
                        Step::Advance(secs) => {
                            clock.advance(Duration::from_secs(secs));
                            now += i64::try_from(secs).unwrap() * 1_000;
                        }
                    }
                }
                Ok(())
            })?;
        }
    }

    /// The embedded store on the real date: it never reaps an entry that
    /// only the stack's manual clock has expired, so the stored entry is
    /// there, expired, and must be replaced.
    #[tokio::test]
    async fn one_provider_call_per_expiry_with_the_expired_entry_still_stored() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        one_provider_call_per_expiry(store, ManualClock::new()).await;
    }

    /// The embedded store on the stack's clock: its TTL index has deleted
    /// the expired entry by the time it is looked for.
    #[tokio::test]
    async fn one_provider_call_per_expiry_with_the_store_reaping() {
        let clock = ManualClock::new();
        let store = MemoryStore::new().with_clock(WallClock::new(clock.clone()));
        one_provider_call_per_expiry(Arc::new(store), clock).await;
    }

    #[tokio::test]
    async fn one_provider_call_per_expiry_without_the_memory_tier() {
        one_provider_call_per_expiry_without_memory(
            Arc::new(MemoryStore::new()),
            ManualClock::new(),
        )
        .await;
    }

    #[tokio::test]
    async fn usage_per_user_per_day_counts_hits_as_savings() {
        usage_per_user_per_day(Arc::new(MemoryStore::new())).await;
    }
}

/// The real test server over TCP (`STRATUM_TEST_MONGODB_URI`). The
/// server's TTL sweep runs on the real date, so the entries the manual
/// clock expires are still stored: the replacement path is what runs.
mod mongo {
    use stratum::MongoStore;
    use stratum_tests::TestDb;

    use super::*;

    #[tokio::test]
    async fn one_provider_call_per_expiry_with_the_expired_entry_still_stored() {
        let db = TestDb::new("llm_expiry").await;
        let store = Arc::new(MongoStore::new(db.db().clone()));
        super::one_provider_call_per_expiry(store, ManualClock::new()).await;
        db.cleanup().await;
    }

    #[tokio::test]
    async fn one_provider_call_per_expiry_without_the_memory_tier() {
        let db = TestDb::new("llm_expiry").await;
        let store = Arc::new(MongoStore::new(db.db().clone()));
        one_provider_call_per_expiry_without_memory(store, ManualClock::new()).await;
        db.cleanup().await;
    }

    #[tokio::test]
    async fn usage_per_user_per_day_counts_hits_as_savings() {
        let db = TestDb::new("llm_usage").await;
        usage_per_user_per_day(Arc::new(MongoStore::new(db.db().clone()))).await;
        db.cleanup().await;
    }
}

/// The embedded store a handle opens itself reads the stack's clock: moving
/// the `ManualClock` past the TTL makes the store's TTL index delete the
/// entry, with no real time passing (it would stay an hour on system time).
#[tokio::test]
async fn the_handles_own_embedded_store_expires_on_the_stack_clock() {
    let clock = ManualClock::new();
    let mut config = StratumConfig::default();
    config.monitor.enabled = false;
    let stratum = Stratum::builder(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    stratum
        .repository::<ResponseCacheEntry>()
        .unwrap()
        .ensure_indexes()
        .await
        .unwrap();
    let prompts = stratum.prompt_cache().unwrap().with_store_ttl(TTL);
    let calls = AtomicUsize::new(0);
    let (messages, params) = ([ChatMessage::user("hello")], RequestParams::default());
    ask(&prompts, &request(&messages, &params), &calls).await;
    let all = Filter::all();
    let stored = || stratum.store().count(ResponseCacheEntry::COLLECTION, &all);
    assert_eq!(stored().await.unwrap(), 1);
    clock.advance(TTL - Duration::from_secs(1));
    assert_eq!(stored().await.unwrap(), 1, "deleted before its TTL");
    clock.advance(Duration::from_secs(2));
    assert_eq!(stored().await.unwrap(), 0, "kept past its TTL");
}
