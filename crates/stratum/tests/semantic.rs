//! The prompt cache's semantic tier end to end, with the local model, on
//! the embedded store and on the real test server: a paraphrase is answered
//! after the handle is dropped and reopened (the index rebuilt from the
//! stored vectors), never across tenants or parameters, never with an
//! expired response, and a reported wrong answer tightens its entry.
//!
//! Needs the weights (`cargo xtask fetch-model`); without them each test
//! says so and passes, unless `STRATUM_REQUIRE_MODEL=1`, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stratum::llm::{AnswerSource, Completion, PromptAnswer, PromptCache};
use stratum::models::{CachedResponse, ChatMessage, RequestParams, ResponseCacheEntry, TokenUsage};
use stratum::semantic::{EmbedderConfig, HitPolicy, ThresholdConfig};
use stratum::store::WallClock;
use stratum::{ManualClock, MemoryStore, Store, Stratum, StratumConfig};
use support::request;

const QUESTION: &str = "What is the capital city of Peru?";
const PARAPHRASE: &str = "Which city is the capital of Peru?";
const OTHER: &str = "How many legs does a spider have?";

/// Whether the model's weights are there (else the test is skipped, or
/// fails under `STRATUM_REQUIRE_MODEL`).
fn model_present() -> bool {
    let dir = stratum::semantic::default_model_dir().unwrap();
    if dir.join("model.safetensors").is_file() {
        return true;
    }
    assert!(
        std::env::var_os("STRATUM_REQUIRE_MODEL").is_none(),
        "no model in {}: run `cargo xtask fetch-model`",
        dir.display()
    );
    eprintln!(
        "skipped: no model in {} (`cargo xtask fetch-model`)",
        dir.display()
    );
    false
}

/// A stack over `store` with the semantic tier on, deciding hits by
/// `policy`.
fn stack(store: Arc<dyn Store>, clock: &ManualClock, policy: HitPolicy) -> Stratum {
    let mut config = StratumConfig::default();
    config.llm.semantic.enabled = true;
    config.llm.semantic.embedder = EmbedderConfig::Local { model_dir: None };
    config.llm.semantic.policy = policy;
    Stratum::builder(config)
        .store(store)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// A similarity a paraphrase clears and an unrelated question does not
/// (all-MiniLM-L6-v2 puts these paraphrases near 0.9, unrelated questions
/// under 0.2).
const FIXED: HitPolicy = HitPolicy::Fixed { similarity: 0.7 };

/// Asks `text` (after a fixed system prompt) with `params`, counting provider
/// calls in `calls`; the provider answers `answer <n>`.
async fn ask(
    prompts: &PromptCache,
    text: &str,
    params: &RequestParams,
    calls: &AtomicUsize,
) -> PromptAnswer {
    let messages = [
        ChatMessage::system("Answer briefly."),
        ChatMessage::user(text),
    ];
    prompts
        .get_or_compute(&request(&messages, params), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, std::io::Error>(Completion {
                response: CachedResponse::text(format!("answer {n}")),
                usage: TokenUsage::new(10, 3),
                cost_usd: 0.001,
            })
        })
        .await
        .unwrap()
}

/// Answers written by one handle are found by meaning from a new handle on
/// the same store: the index is rebuilt from the vectors stored with them.
async fn a_paraphrase_is_answered_after_a_restart(store: Arc<dyn Store>) {
    let clock = ManualClock::new();
    let calls = AtomicUsize::new(0);
    let params = RequestParams::default();
    {
        let first = stack(Arc::clone(&store), &clock, FIXED);
        let prompts = first.prompt_cache().unwrap();
        assert!(prompts.semantic_enabled());
        let a = ask(&prompts, QUESTION, &params, &calls).await;
        assert_eq!(a.source, AnswerSource::Provider);
        let b = ask(&prompts, OTHER, &params, &calls).await;
        assert_eq!(b.source, AnswerSource::Provider);
    }
    let second = stack(Arc::clone(&store), &clock, FIXED);
    let prompts = second.prompt_cache().unwrap();
    let answer = ask(&prompts, PARAPHRASE, &params, &calls).await;
    assert_eq!(
        answer.source,
        AnswerSource::Semantic,
        "{:?}",
        prompts.semantic_stats()
    );
    assert_eq!(answer.entry.response.content, "answer 1");
    let matched = answer
        .semantic
        .expect("a semantic answer says how it matched");
    assert!(matched.similarity >= 0.7, "{matched:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no provider call for it");
    assert_eq!(prompts.semantic_stats().unwrap().entries, 2);
    // The answer is not kept under the paraphrase's key: asked again, it is
    // looked up by meaning again (so a report of a wrong answer reaches it).
    let again = ask(&prompts, PARAPHRASE, &params, &calls).await;
    assert_eq!(
        again.source,
        AnswerSource::Semantic,
        "{:?} {:?}",
        prompts.semantic_stats(),
        again.entry.response
    );
    // The exact tier still comes first.
    let exact = ask(&prompts, QUESTION, &params, &calls).await;
    assert_eq!(exact.source, AnswerSource::Store);
}

/// A paraphrase under another tenant, another temperature or another
/// system prompt is a miss; under the same ones, a hit.
async fn never_across_tenants_or_parameters(store: Arc<dyn Store>) {
    let clock = ManualClock::new();
    let calls = AtomicUsize::new(0);
    let stratum = stack(store, &clock, FIXED);
    let acme = stratum.prompt_cache().unwrap().with_tenant("acme");
    let globex = stratum.prompt_cache().unwrap().with_tenant("globex");
    let cold = RequestParams {
        temperature: Some(0.0),
        ..RequestParams::default()
    };
    let warm = RequestParams {
        temperature: Some(0.7),
        ..RequestParams::default()
    };
    assert_eq!(
        ask(&acme, QUESTION, &cold, &calls).await.source,
        AnswerSource::Provider
    );
    assert_eq!(
        ask(&globex, PARAPHRASE, &cold, &calls).await.source,
        AnswerSource::Provider,
        "another tenant's answer"
    );
    assert_eq!(
        ask(&acme, PARAPHRASE, &warm, &calls).await.source,
        AnswerSource::Provider,
        "another temperature's answer"
    );
    let messages = [
        ChatMessage::system("Answer at length."),
        ChatMessage::user(PARAPHRASE),
    ];
    let other_system = acme
        .get_or_compute(&request(&messages, &cold), || async {
            Ok::<_, std::io::Error>(Completion {
                response: CachedResponse::text("fresh"),
                usage: TokenUsage::new(1, 1),
                cost_usd: 0.0,
            })
        })
        .await
        .unwrap();
    assert_eq!(other_system.source, AnswerSource::Provider);
    // The same tenant and parameters: answered, with tenant acme's answer.
    let hit = ask(&acme, "Which city is Peru's capital?", &cold, &calls).await;
    assert_eq!(hit.source, AnswerSource::Semantic);
    assert_eq!(hit.entry.response.content, "answer 1");
}

/// Labels of the tests' calibration: lookups above 0.6 were right, below
/// wrong (a learned threshold near 0.6 at a 5 % target).
fn calibration() -> impl Iterator<Item = (f32, bool)> {
    (0..2_000).map(|i| {
        let s = i as f32 / 2_000.0;
        (s, s > 0.6)
    })
}

/// A paraphrase of [`QUESTION`] that the calibrated threshold answers.
const THIRD: &str = "Tell me the capital of Peru.";

/// What an entry learned is stored with it: a wrong answer reported before
/// a restart still keeps that entry from answering after it.
async fn a_reported_wrong_answer_survives_a_restart(store: Arc<dyn Store>) {
    let clock = ManualClock::new();
    let calls = AtomicUsize::new(0);
    let params = RequestParams::default();
    let policy = HitPolicy::Learned(ThresholdConfig::with_target_error(0.05));
    {
        let first = stack(Arc::clone(&store), &clock, policy);
        let prompts = first.prompt_cache().unwrap();
        ask(&prompts, QUESTION, &params, &calls).await;
        prompts.calibrate(calibration()).await.unwrap();
        let hit = ask(&prompts, THIRD, &params, &calls).await;
        assert_eq!(hit.source, AnswerSource::Semantic, "{:?}", hit.semantic);
        assert!(prompts.report_wrong(&hit).await);
    }
    let second = stack(Arc::clone(&store), &clock, policy);
    let prompts = second.prompt_cache().unwrap();
    // The same labelled set again (as an application that calibrates on
    // every start would): counted once, not twice.
    prompts.calibrate(calibration()).await.unwrap();
    let again = ask(&prompts, THIRD, &params, &calls).await;
    assert_eq!(
        again.source,
        AnswerSource::Provider,
        "the reported wrong answer was given again after the restart: {:?}",
        again.semantic
    );
    // The stored wrong label fed the restarted cache-wide threshold too:
    // 2,000 calibration labels and the one restored.
    let stats = prompts.semantic_stats().unwrap();
    assert_eq!(stats.entries, 2, "{stats:?}");
    let stored = store
        .find(
            <ResponseCacheEntry as stratum::models::Document>::COLLECTION,
            &stratum::Query::new(stratum::Filter::eq("cache_key", hit_key(QUESTION, &params))),
        )
        .await
        .unwrap();
    let labels = stored[0].get_document("semantic_labels").unwrap();
    assert!(labels.get_f64("floor").is_ok(), "{labels:?}");
    // Five bytes per observation: the report and the miss labelled since.
    assert_eq!(
        labels.get_binary_generic("observations").unwrap().len(),
        2 * 5,
        "{labels:?}"
    );
}

/// The calibration is stored: a restarted handle that is not calibrated
/// again answers by the threshold learned before the restart, and a set
/// given again is counted once.
async fn a_calibration_survives_a_restart(store: Arc<dyn Store>) {
    let clock = ManualClock::new();
    let calls = AtomicUsize::new(0);
    let params = RequestParams::default();
    let policy = HitPolicy::Learned(ThresholdConfig::with_target_error(0.05));
    let learned = {
        let first = stack(Arc::clone(&store), &clock, policy);
        let prompts = first.prompt_cache().unwrap();
        ask(&prompts, QUESTION, &params, &calls).await;
        prompts.calibrate(calibration()).await.unwrap();
        let once = prompts.semantic_stats().unwrap();
        // Again: the same set, not counted twice (twice the labels would
        // show a lower threshold).
        prompts.calibrate(calibration()).await.unwrap();
        let stats = prompts.semantic_stats().unwrap();
        assert_eq!(stats.learned_threshold, once.learned_threshold);
        stats.learned_threshold.unwrap()
    };
    let second = stack(Arc::clone(&store), &clock, policy);
    let prompts = second.prompt_cache().unwrap();
    let hit = ask(&prompts, THIRD, &params, &calls).await;
    assert_eq!(
        hit.source,
        AnswerSource::Semantic,
        "the calibration was lost in the restart: {:?}",
        prompts.semantic_stats()
    );
    assert_eq!(
        prompts.semantic_stats().unwrap().learned_threshold,
        Some(learned)
    );
    // Calibrating with it once more after the restart changes nothing.
    prompts.calibrate(calibration()).await.unwrap();
    assert_eq!(
        prompts.semantic_stats().unwrap().learned_threshold,
        Some(learned)
    );
    let stored = store
        .find(
            "llm_semantic_calibrations",
            &stratum::Query::new(stratum::Filter::eq(
                "space",
                EmbedderConfig::Local { model_dir: None }.space(),
            )),
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].get_i64("labels").unwrap(), 2_000);
}

#[tokio::test]
async fn a_calibration_survives_a_restart_on_the_embedded_store() {
    if model_present() {
        a_calibration_survives_a_restart(Arc::new(MemoryStore::new())).await;
    }
}

/// The cache key [`ask`] stores `text` under.
fn hit_key(text: &str, params: &RequestParams) -> String {
    let messages = [
        ChatMessage::system("Answer briefly."),
        ChatMessage::user(text),
    ];
    stratum::models::CacheKey::compute(&request(&messages, params))
        .unwrap()
        .into_string()
}

#[tokio::test]
async fn a_reported_wrong_answer_survives_a_restart_on_the_embedded_store() {
    if model_present() {
        a_reported_wrong_answer_survives_a_restart(Arc::new(MemoryStore::new())).await;
    }
}

#[tokio::test]
async fn a_paraphrase_is_answered_after_a_restart_on_the_embedded_store() {
    if model_present() {
        a_paraphrase_is_answered_after_a_restart(Arc::new(MemoryStore::new())).await;
    }
}

#[tokio::test]
async fn never_across_tenants_or_parameters_on_the_embedded_store() {
    if model_present() {
        never_across_tenants_or_parameters(Arc::new(MemoryStore::new())).await;
    }
}

/// An expired response is never a semantic answer, and its vector goes.
#[tokio::test]
async fn an_expired_response_is_never_a_semantic_answer() {
    if !model_present() {
        return;
    }
    let clock = ManualClock::new();
    let store = MemoryStore::new().with_clock(WallClock::new(clock.clone()));
    let calls = AtomicUsize::new(0);
    let params = RequestParams::default();
    let stratum = stack(Arc::new(store), &clock, FIXED);
    let prompts = stratum
        .prompt_cache()
        .unwrap()
        .with_store_ttl(Duration::from_secs(60));
    ask(&prompts, QUESTION, &params, &calls).await;
    assert_eq!(
        ask(&prompts, PARAPHRASE, &params, &calls).await.source,
        AnswerSource::Semantic
    );
    clock.advance(Duration::from_secs(61));
    let after = ask(&prompts, PARAPHRASE, &params, &calls).await;
    assert_eq!(after.source, AnswerSource::Provider);
    assert_eq!(after.entry.response.content, "answer 2");
    // The expired one's vector was dropped; the fresh answer's added.
    assert_eq!(prompts.semantic_stats().unwrap().entries, 1);
}

/// With learned thresholds nothing is answered before labels show a
/// threshold; once calibrated, a paraphrase is; reported wrong, that entry
/// no longer answers it.
#[tokio::test]
async fn a_reported_wrong_answer_tightens_its_entry() {
    if !model_present() {
        return;
    }
    let clock = ManualClock::new();
    let calls = AtomicUsize::new(0);
    let params = RequestParams::default();
    let policy = HitPolicy::Learned(ThresholdConfig::with_target_error(0.05));
    let stratum = stack(Arc::new(MemoryStore::new()), &clock, policy);
    let prompts = stratum.prompt_cache().unwrap();
    ask(&prompts, QUESTION, &params, &calls).await;
    // Nothing learned yet: no semantic answer.
    assert_eq!(
        ask(&prompts, PARAPHRASE, &params, &calls).await.source,
        AnswerSource::Provider
    );
    // Labels: lookups above 0.6 were right, below wrong.
    prompts
        .calibrate((0..2_000).map(|i| {
            let s = i as f32 / 2_000.0;
            (s, s > 0.6)
        }))
        .await
        .unwrap();
    let threshold = prompts.semantic_stats().unwrap().learned_threshold.unwrap();
    assert!((0.5..0.65).contains(&threshold), "{threshold}");
    let third = "Tell me the capital of Peru.";
    let hit = ask(&prompts, third, &params, &calls).await;
    assert_eq!(hit.source, AnswerSource::Semantic, "{:?}", hit.semantic);
    assert!(prompts.report_wrong(&hit).await);
    assert_eq!(prompts.semantic_stats().unwrap().wrong_reported, 1);
    let before = calls.load(Ordering::SeqCst);
    let again = ask(&prompts, third, &params, &calls).await;
    assert_eq!(again.source, AnswerSource::Provider);
    assert_eq!(calls.load(Ordering::SeqCst), before + 1);
    // Not a semantic answer: nothing to tighten.
    assert!(!prompts.report_wrong(&again).await);
}

/// The tier's series on the handle's own `/metrics`: lookups by outcome,
/// the label of a miss, a reported wrong answer, the estimated error rate,
/// the lookup and embedding histograms and the index size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tier_reports_on_the_handles_metrics() {
    if !model_present() {
        return;
    }
    let mut config = StratumConfig::default();
    config.monitor.listen = "127.0.0.1:0".parse().unwrap();
    config.llm.semantic.enabled = true;
    config.llm.semantic.policy = HitPolicy::Learned(ThresholdConfig::with_target_error(0.05));
    let stratum = Stratum::builder(config).build().unwrap();
    let prompts = stratum.prompt_cache().unwrap();
    let calls = AtomicUsize::new(0);
    let params = RequestParams::default();
    ask(&prompts, QUESTION, &params, &calls).await;
    // Missed (nothing learned), then labelled wrong: "answer 2" is not
    // "answer 1".
    ask(&prompts, PARAPHRASE, &params, &calls).await;
    prompts
        .calibrate((0..2_000).map(|i| {
            let s = i as f32 / 2_000.0;
            (s, s > 0.6)
        }))
        .await
        .unwrap();
    let hit = ask(&prompts, "Tell me the capital of Peru.", &params, &calls).await;
    assert_eq!(hit.source, AnswerSource::Semantic);
    assert!(prompts.report_wrong(&hit).await);
    let addr = stratum.metrics_addr().unwrap();
    let text = stratum_tests::http::get(addr, "/metrics").await.body;
    let sample = |name: &str, label: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} {label} in\n{text}"))
    };
    assert_eq!(
        sample("stratum_llm_semantic_lookups_total", "outcome=\"hit\""),
        1.0
    );
    assert_eq!(
        sample("stratum_llm_semantic_lookups_total", "outcome=\"miss\""),
        2.0
    );
    assert_eq!(
        sample("stratum_llm_semantic_labels_total", "label=\"wrong\""),
        1.0
    );
    assert_eq!(sample("stratum_llm_semantic_wrong_reports_total", ""), 1.0);
    assert_eq!(
        sample("stratum_llm_prompt_answers_total", "source=\"semantic\""),
        1.0
    );
    assert_eq!(sample("stratum_llm_semantic_entries", ""), 2.0);
    let rate = sample("stratum_llm_semantic_estimated_error_ratio", "");
    assert!((0.0..=0.05).contains(&rate), "{rate}");
    assert_eq!(
        sample("stratum_llm_semantic_lookup_duration_seconds_count", ""),
        3.0
    );
    assert_eq!(
        sample("stratum_llm_semantic_embed_duration_seconds_count", ""),
        3.0
    );
}

/// An HTTP embedder that cannot be reached costs no availability: the
/// provider answers; and its key is in no `Debug`, report or error.
#[tokio::test]
async fn an_unreachable_embedder_asks_the_provider_and_never_shows_its_key() {
    let text = "[llm.semantic]\nenabled = true\nembedder = { type = \"http\", url = \"http://127.0.0.1:9/v1/embeddings\", model = \"m\", dimensions = 8, timeout = \"2s\", api_key = \"sk-very-secret\" }\n";
    let (config, report) = StratumConfig::builder()
        .toml(text)
        .build_explained()
        .unwrap();
    assert!(matches!(
        config.llm.semantic.embedder,
        EmbedderConfig::Http(_)
    ));
    let stratum = Stratum::builder(config.clone()).build().unwrap();
    let prompts = stratum.prompt_cache().unwrap();
    for shown in [
        format!("{config:?}"),
        format!("{report}"),
        format!("{prompts:?}"),
        toml::to_string(&config).unwrap(),
    ] {
        assert!(!shown.contains("sk-very-secret"), "{shown}");
    }
    let calls = AtomicUsize::new(0);
    let answer = ask(&prompts, QUESTION, &RequestParams::default(), &calls).await;
    assert_eq!(answer.source, AnswerSource::Provider);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // An https endpoint is refused when the configuration is built.
    let err = StratumConfig::builder()
        .toml(text.replace("http://", "https://"))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "llm.semantic.embedder.url");
    assert!(!err.to_string().contains("sk-very-secret"));
}

/// The real test server over TCP (`STRATUM_TEST_MONGODB_URI`).
mod server {
    use stratum::MongoStore;
    use stratum_tests::TestDb;

    use super::*;

    #[tokio::test]
    async fn a_paraphrase_is_answered_after_a_restart() {
        if !model_present() {
            return;
        }
        let db = TestDb::new("llm_semantic_restart").await;
        let store = Arc::new(MongoStore::new(db.db().clone()));
        super::a_paraphrase_is_answered_after_a_restart(store).await;
        // The vector is in the response's document.
        let raw = db
            .db()
            .collection::<stratum::bson::Document>(
                <ResponseCacheEntry as stratum::models::Document>::COLLECTION,
            )
            .find_one(stratum::bson::doc! {})
            .await
            .unwrap()
            .unwrap();
        let stored = raw.get_document("semantic").unwrap();
        assert_eq!(stored.get_binary_generic("vector").unwrap().len(), 384 * 4);
        db.cleanup().await;
    }

    #[tokio::test]
    async fn a_calibration_survives_a_restart() {
        if !model_present() {
            return;
        }
        let db = TestDb::new("llm_semantic_calibration").await;
        let store = Arc::new(MongoStore::new(db.db().clone()));
        super::a_calibration_survives_a_restart(store).await;
        db.cleanup().await;
    }

    #[tokio::test]
    async fn a_reported_wrong_answer_survives_a_restart() {
        if !model_present() {
            return;
        }
        let db = TestDb::new("llm_semantic_labels").await;
        let store = Arc::new(MongoStore::new(db.db().clone()));
        super::a_reported_wrong_answer_survives_a_restart(store).await;
        db.cleanup().await;
    }

    /// The rebuild's query (the newest responses of one vector space) is
    /// served by the declared `semantic_space_created_at` index, not a
    /// collection scan.
    #[tokio::test]
    async fn the_rebuild_reads_through_its_index() {
        let db = TestDb::new("llm_semantic_index").await;
        let stratum = Stratum::builder(StratumConfig::default())
            .store(Arc::new(MongoStore::new(db.db().clone())))
            .build()
            .unwrap();
        stratum
            .repository::<ResponseCacheEntry>()
            .unwrap()
            .ensure_indexes()
            .await
            .unwrap();
        let space = EmbedderConfig::Local { model_dir: None }.space();
        let explained = db
            .db()
            .run_command(stratum::bson::doc! {
                "explain": {
                    "find": <ResponseCacheEntry as stratum::models::Document>::COLLECTION,
                    "filter": { "semantic_space": space },
                    "sort": { "created_at": -1 },
                    "limit": 100_000_i64,
                },
                "verbosity": "queryPlanner",
            })
            .await
            .unwrap();
        let plan = explained.to_string();
        assert!(
            plan.contains("IXSCAN") && plan.contains("semantic_space_created_at"),
            "{plan}"
        );
        assert!(!plan.contains("COLLSCAN"), "{plan}");
        db.cleanup().await;
    }

    /// A handle over the test server with the semantic tier on (fixed
    /// policy) and change-stream coherence.
    async fn open(db: &TestDb) -> Stratum {
        let mut config = StratumConfig::default();
        config.mongodb.uri = Some(stratum_tests::mongodb_uri().parse().unwrap());
        config.mongodb.database = db.name().to_owned();
        config.llm.semantic.enabled = true;
        config.llm.semantic.policy = FIXED;
        Stratum::builder(config).open().await.unwrap()
    }

    /// Waits until `stratum` applied `events` change events of the
    /// response collection.
    async fn until_events(stratum: &Stratum, events: u64) {
        let started = std::time::Instant::now();
        loop {
            let state = stratum.coherence();
            let applied = state
                .watchers
                .iter()
                .find(|(name, _)| *name == "llm_response_cache")
                .and_then(|(_, s)| *s)
                .map_or(0, |s| s.events);
            if applied >= events {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{applied} of {events} events: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Two processes on one database: a response the other one cached is
    /// found by meaning without a restart, a wrong answer it reports
    /// tightens the entry here too, and a deleted response leaves the index.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_processs_answers_join_the_index_and_deleted_ones_leave() {
        if !model_present() {
            return;
        }
        let db = TestDb::new("llm_semantic_coherence").await;
        let here = open(&db).await;
        let there = open(&db).await;
        let (ours, theirs) = (here.prompt_cache().unwrap(), there.prompt_cache().unwrap());
        for handle in [&here, &there] {
            let started = std::time::Instant::now();
            while !handle.coherence().all_open() {
                assert!(started.elapsed() < Duration::from_secs(30));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let calls = AtomicUsize::new(0);
        let params = RequestParams::default();
        // Both indexes loaded: ours empty, theirs with our first answer
        // (read by its rebuild), which answers a paraphrase there. Our
        // answer is an insert, then its vector: two events.
        let first = ask(&ours, OTHER, &params, &calls).await;
        let spider = "How many legs has a spider got?";
        assert_eq!(
            ask(&theirs, spider, &params, &calls).await.source,
            AnswerSource::Semantic
        );
        // The other process caches an answer: an insert, the label of its
        // miss against its nearest entry (ours, the spider's: `label_misses`
        // stores that entry's labels), then its vector. Five events.
        let cached = ask(&theirs, QUESTION, &params, &calls).await;
        assert_eq!(cached.source, AnswerSource::Provider);
        let responses = db.db().collection::<stratum::bson::Document>(
            <ResponseCacheEntry as stratum::models::Document>::COLLECTION,
        );
        let labelled = responses
            .find_one(stratum::bson::doc! { "_id": first.entry.id })
            .await
            .unwrap()
            .unwrap();
        assert!(
            labelled.contains_key("semantic_labels"),
            "the miss was not labelled against the spider's entry (one event fewer): {labelled:?}"
        );
        until_events(&here, 5).await;
        let hit = ask(&ours, PARAPHRASE, &params, &calls).await;
        assert_eq!(
            hit.source,
            AnswerSource::Semantic,
            "another process's answer is not in the index: {:?}",
            ours.semantic_stats()
        );
        assert_eq!(hit.entry.response.content, cached.entry.response.content);
        // The other process finds that answer wrong for the paraphrase: the
        // entry tightens here too once its labels' write (the sixth event)
        // is heard. Waiting for fewer events would not wait for that write.
        let theirs_hit = ask(&theirs, PARAPHRASE, &params, &calls).await;
        assert_eq!(theirs_hit.source, AnswerSource::Semantic);
        assert!(theirs.report_wrong(&theirs_hit).await);
        until_events(&here, 6).await;
        let tightened = ask(&ours, PARAPHRASE, &params, &calls).await;
        assert_eq!(
            tightened.source,
            AnswerSource::Provider,
            "the other process's report did not reach this index"
        );
        // That answer (an insert, the label of the miss against the other
        // process's entry, its vector): nine.
        until_events(&here, 9).await;
        // Both answers of Peru's capital deleted (as another tool would):
        // they leave the index, so one more paraphrase asks the provider.
        let deleted = responses
            .delete_many(stratum::bson::doc! {
                "_id": { "$in": [cached.entry.id, tightened.entry.id] },
            })
            .await
            .unwrap();
        assert_eq!(deleted.deleted_count, 2);
        // One event each: eleven.
        until_events(&here, 11).await;
        let after = ask(&ours, "Which city is Peru's capital?", &params, &calls).await;
        assert_eq!(
            after.source,
            AnswerSource::Provider,
            "a deleted response answered: {:?}",
            after.semantic
        );
        assert_eq!(
            ours.semantic_stats().unwrap().entries,
            2,
            "spider and the last"
        );
        db.cleanup().await;
    }

    /// The state of `stratum`'s watcher of the response collection.
    fn responses(stratum: &Stratum) -> Option<stratum::watch::WatchState> {
        stratum
            .coherence()
            .watchers
            .iter()
            .find(|(name, _)| *name == "llm_response_cache")
            .and_then(|(_, s)| *s)
    }

    /// Waits until that watcher's stream is `open` (or not).
    async fn until_open(stratum: &Stratum, open: bool) {
        let started = std::time::Instant::now();
        while responses(stratum).is_none_or(|s| s.open != open) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{:?}",
                stratum.coherence()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// An index loaded while the change stream is not open misses what
    /// another process writes before the stream opens (a stream that never
    /// delivered an event opens afresh, from then on): it is rebuilt once
    /// the stream is open, so that answer is found.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_index_loaded_before_the_stream_opened_is_rebuilt_once_it_is() {
        if !model_present() {
            return;
        }
        let calls = AtomicUsize::new(0);
        let params = RequestParams::default();
        // Another process's answer, cached in a database of its own first,
        // so that writing it below takes one insert (the window is 2 s).
        let elsewhere = TestDb::new("llm_semantic_reopen_src").await;
        let there = open(&elsewhere).await;
        let cached = ask(&there.prompt_cache().unwrap(), QUESTION, &params, &calls).await;
        assert_eq!(cached.source, AnswerSource::Provider);
        let collection = <ResponseCacheEntry as stratum::models::Document>::COLLECTION;
        let answer = elsewhere
            .db()
            .collection::<stratum::bson::Document>(collection)
            .find_one(stratum::bson::doc! { "_id": cached.entry.id })
            .await
            .unwrap()
            .unwrap();
        assert!(answer.get_document("semantic").is_ok(), "{answer:?}");

        let db = TestDb::new("llm_semantic_reopen").await;
        let here = open(&db).await;
        let ours = here.prompt_cache().unwrap();
        until_open(&here, true).await;
        // Dropped with no event delivered yet, the stream reopens (after
        // 2 s) from the time it opens: writes until then are never heard.
        here.reconnect_watchers();
        until_open(&here, false).await;
        // A request with no user turn last loads the index (while the
        // stream is down) without embedding anything.
        let prefill = [ChatMessage::user("Hi"), ChatMessage::assistant("The")];
        ours.get_or_compute(&request(&prefill, &params), || async {
            Ok::<_, std::io::Error>(Completion {
                response: CachedResponse::text("end"),
                usage: TokenUsage::new(1, 1),
                cost_usd: 0.0,
            })
        })
        .await
        .unwrap();
        // The other process's answer arrives.
        db.db()
            .collection::<stratum::bson::Document>(collection)
            .insert_one(answer)
            .await
            .unwrap();
        assert!(
            responses(&here).is_some_and(|s| !s.open),
            "the stream reopened too soon to tell"
        );
        until_open(&here, true).await;
        let hit = ask(&ours, PARAPHRASE, &params, &calls).await;
        assert_eq!(
            hit.source,
            AnswerSource::Semantic,
            "the answer written while the stream was down is not in the index: {:?}",
            ours.semantic_stats()
        );
        assert_eq!(hit.entry.response.content, cached.entry.response.content);
        elsewhere.cleanup().await;
        db.cleanup().await;
    }

    #[tokio::test]
    async fn never_across_tenants_or_parameters() {
        if !model_present() {
            return;
        }
        let db = TestDb::new("llm_semantic_scope").await;
        let store = Arc::new(MongoStore::new(db.db().clone()));
        super::never_across_tenants_or_parameters(store).await;
        db.cleanup().await;
    }
}
