//! What `Stratum::open` starts with the `[monitor]` section, checked over the
//! real listener: every layer's series on the handle's `/metrics` although
//! another recorder was installed globally first, cache statistics by
//! unique name, health reflecting the breaker, the default `breaker_open`
//! rule firing and resolving to a callback and to a real HTTP receiver,
//! and `shutdown` stopping it all.
//!
//! One binary on its own: it installs a process-wide recorder.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use stratum::bson::DateTime;
use stratum::llm::Completion;
use stratum::models::{
    CacheKeyRequest, CachedResponse, ChatMessage, Conversation, Document, RequestParams, TokenUsage,
};
use stratum::monitor::{AlertEventKind, WebhookConfig};
use stratum::{Stratum, StratumConfig};
use stratum_tests::http;

fn config() -> StratumConfig {
    let mut config = StratumConfig::default();
    config.monitor.listen = "127.0.0.1:0".parse().unwrap();
    config.monitor.alert_interval = Duration::from_millis(20);
    config
}

fn sample<'a>(text: &'a str, name: &str, labels: &[&str]) -> Option<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next())
}

async fn scrape(addr: SocketAddr) -> String {
    let response = http::get(addr, "/metrics").await;
    assert_eq!(response.status, 200);
    response.body
}

/// A second document type on the `conversations` collection: its cache
/// asks for the name the `Conversation` cache already has.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Note {
    #[serde(rename = "_id")]
    id: String,
    text: String,
}

impl Document for Note {
    const COLLECTION: &'static str = "conversations";
    const SCHEMA_VERSION: i32 = 1;
    type Id = String;
    fn id(&self) -> &String {
        &self.id
    }
}

async fn ask(stratum: &Stratum, question: &str) {
    let prompts = stratum.prompt_cache().unwrap();
    let messages = [ChatMessage::user(question)];
    let params = RequestParams::default();
    let request = CacheKeyRequest {
        provider: "openai",
        model: "gpt-4o",
        messages: &messages,
        params: &params,
    };
    prompts
        .get_or_compute(&request, || async {
            Ok::<_, std::io::Error>(Completion {
                response: CachedResponse::text("an answer"),
                usage: TokenUsage::new(10, 2),
                cost_usd: 0.0001,
            })
        })
        .await
        .unwrap();
}

/// A global recorder installed before the stack is built, and the stack's
/// series are still on its own `/metrics` (not in the global one): the
/// breaker's, the pool's, the repository's (ok and error outcomes, the
/// error counted long after the handles were made, on another task), each
/// cache's statistics by unique name, the process figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_reaches_the_handles_metrics_whatever_was_installed_before() {
    let global = metrics_util::debugging::DebuggingRecorder::new();
    let global_seen = global.snapshotter();
    // Another test of this binary may have installed it first: either way
    // a global recorder is in place before this stack is built.
    let _ = metrics::set_global_recorder(global);

    let stratum = Stratum::builder(config()).build().unwrap();
    let addr = stratum.metrics_addr().unwrap();
    assert!(addr.ip().is_loopback());

    let conversations = stratum.repository::<Conversation>().unwrap();
    let c = Conversation::new("gpt-4o", DateTime::now());
    conversations.insert(&c).await.unwrap();
    conversations.get(&c.id).await.unwrap(); // miss
    conversations.get(&c.id).await.unwrap(); // hit
    let notes = stratum.repository::<Note>().unwrap();
    let note = Note {
        id: "n1".into(),
        text: "x".into(),
    };
    notes.insert(&note).await.unwrap();
    notes.get(&note.id).await.unwrap();
    ask(&stratum, "capital of Peru?").await; // miss: provider
    ask(&stratum, "capital of Peru?").await; // hit: memory
    // An error outcome, recorded from a spawned task.
    stratum.breaker().unwrap().force_open();
    let other = conversations.clone();
    let id = c.id;
    tokio::spawn(async move {
        other
            .find(&stratum::Query::new(stratum::Filter::eq("_id", id)))
            .await
    })
    .await
    .unwrap()
    .unwrap_err();
    stratum.breaker().unwrap().reset();

    let text = scrape(addr).await;
    for (name, labels) in [
        ("stratum_breaker_state", vec![]),
        ("stratum_breaker_calls_total", vec!["outcome=\"success\""]),
        ("stratum_pool_limit", vec![]),
        (
            "stratum_repository_operations_total",
            vec![
                "collection=\"conversations\"",
                "operation=\"insert\"",
                "outcome=\"ok\"",
            ],
        ),
        (
            "stratum_repository_operations_total",
            vec!["operation=\"find\"", "outcome=\"not_permitted\""],
        ),
        (
            "stratum_llm_prompt_answers_total",
            vec!["source=\"memory\""],
        ),
        ("process_cpu_seconds_total", vec![]),
        ("process_open_fds", vec![]),
    ] {
        assert!(
            sample(&text, name, &labels).is_some(),
            "{name} {labels:?} missing from /metrics:\n{text}"
        );
    }
    // Cache statistics, one series per cache, names unique.
    let value = |name, cache: &str| {
        sample(&text, name, &[&format!("cache=\"{cache}\"")])
            .unwrap_or_else(|| panic!("{name} of {cache} missing:\n{text}"))
            .to_owned()
    };
    assert_eq!(value("stratum_cache_hits_total", "conversations"), "1");
    assert_eq!(value("stratum_cache_misses_total", "conversations"), "1");
    assert_eq!(value("stratum_cache_misses_total", "conversations_2"), "1");
    assert_eq!(value("stratum_cache_hits_total", "llm_prompts"), "1");
    assert_eq!(value("stratum_cache_misses_total", "llm_prompts"), "1");
    let names: Vec<String> = stratum.cache_stats().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"conversations_2".to_owned()), "{names:?}");

    // Nothing of the stack's went to the global recorder.
    let leaked: Vec<String> = global_seen
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, ..)| k.key().name().to_owned())
        .filter(|n| n.starts_with("stratum_"))
        .collect();
    assert!(leaked.is_empty(), "went to the global recorder: {leaked:?}");
    stratum.shutdown().await;
}

/// `/health/ready` follows the breaker, `/health/live` holds `process`, and
/// `shutdown` closes the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_breaker_and_shutdown_closes_the_listener() {
    let stratum = Stratum::builder(config()).build().unwrap();
    let addr = stratum.metrics_addr().unwrap();
    let ready = http::get(addr, "/health/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    for check in ["breaker.store", "database", "pool.store"] {
        assert!(ready.body.contains(check), "{}", ready.body);
    }
    let live = http::get(addr, "/health/live").await;
    assert!(live.body.contains("\"process\""), "{}", live.body);
    stratum.breaker().unwrap().force_open();
    let ready = http::get(addr, "/health/ready").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    stratum.shutdown().await;
    assert_eq!(stratum.metrics_addr(), None);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // Idempotent, and the data path keeps working.
    stratum.shutdown().await;
    stratum.breaker().unwrap().reset();
    let c = Conversation::new("gpt-4o", DateTime::now());
    stratum
        .repository::<Conversation>()
        .unwrap()
        .insert(&c)
        .await
        .unwrap();
}

/// Alerts fire on the stack's force-opened breaker: the background work
/// runs (the listener is not needed for it).
async fn fires_on_force_open(stratum: &Stratum) {
    let fired = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&fired);
    stratum.on_alert(move |e| {
        if e.rule == "breaker_open" && e.kind == AlertEventKind::Fired {
            *flag.lock() = true;
        }
    });
    stratum.breaker().unwrap().force_open();
    for _ in 0..300 {
        if *fired.lock() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("breaker_open never fired");
}

/// `monitor.serve = false`: nothing bound, the background work runs, and
/// the program serves the monitor's router from its own server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unserved_the_router_mounts_in_the_programs_own_server() {
    let mut config = config();
    config.monitor.serve = false;
    let stratum = Stratum::builder(config).build().unwrap();
    assert_eq!(stratum.metrics_addr(), None);
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "my service" }))
        .merge(stratum.monitor().unwrap().router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    assert_eq!(http::get(addr, "/").await.body, "my service");
    let text = scrape(addr).await;
    assert!(
        sample(&text, "stratum_breaker_state", &[]).is_some(),
        "{text}"
    );
    assert_eq!(http::get(addr, "/health/ready").await.status, 200);
    fires_on_force_open(&stratum).await;
    assert_eq!(http::get(addr, "/health/ready").await.status, 503);
    stratum.shutdown().await;
    server.abort();
}

/// The listen address taken: `open` still succeeds (logged), nothing is
/// served, and the sampler and the alerts run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_costs_the_endpoint_not_the_stack_or_its_alerts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = config();
    config.monitor.listen = taken.local_addr().unwrap();
    let stratum = Stratum::builder(config).build().unwrap();
    assert_eq!(stratum.metrics_addr(), None);
    let c = Conversation::new("gpt-4o", DateTime::now());
    stratum
        .repository::<Conversation>()
        .unwrap()
        .insert(&c)
        .await
        .unwrap();
    fires_on_force_open(&stratum).await;
    stratum.shutdown().await;
}

/// Switched off: no monitor, nothing bound.
#[tokio::test]
async fn a_disabled_monitor_starts_nothing() {
    let mut config = config();
    config.monitor.enabled = false;
    let stratum = Stratum::builder(config).build().unwrap();
    assert!(stratum.monitor().is_none());
    assert_eq!(stratum.metrics_addr(), None);
}

/// The default `breaker_open` rule: the breaker opened, the rule fires; it
/// closed, the rule resolves after `resolve_for`. Both reach the callback
/// and the webhook (Alertmanager's JSON, one `startsAt`, `endsAt` on the
/// resolution).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_open_fires_and_resolves_to_the_callback_and_the_webhook() {
    let (receiver_addr, posted) = http::receive_alerts().await;
    let mut config = config();
    config.monitor.alerts.breaker_open.resolve_for = Duration::from_millis(100);
    config.monitor.alerts.webhook = WebhookConfig {
        url: Some(format!("http://{receiver_addr}/api/v2/alerts")),
        ..WebhookConfig::default()
    };
    let stratum = Stratum::builder(config).build().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    stratum.on_alert(move |e| sink.lock().push((e.rule.clone(), e.kind)));

    let wait = |what: &'static str, done: Box<dyn Fn() -> bool + Send>| async move {
        for _ in 0..300 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    };
    stratum.breaker().unwrap().force_open();
    let seen = Arc::clone(&posted);
    wait("the fired post", Box::new(move || seen.lock().len() == 1)).await;
    stratum.breaker().unwrap().reset();
    let seen = Arc::clone(&posted);
    wait(
        "the resolved post",
        Box::new(move || seen.lock().len() == 2),
    )
    .await;
    stratum.shutdown().await;

    let breaker_events: Vec<AlertEventKind> = events
        .lock()
        .iter()
        .filter(|(r, _)| r == "breaker_open")
        .map(|(_, k)| *k)
        .collect();
    assert_eq!(
        breaker_events,
        [AlertEventKind::Fired, AlertEventKind::Resolved]
    );
    let posted: Vec<serde_json::Value> = posted.lock().iter().map(|(_, a)| a.clone()).collect();
    assert_eq!(posted[0]["labels"]["alertname"], "breaker_open");
    assert!(posted[0].get("endsAt").is_none(), "{}", posted[0]);
    assert_eq!(posted[1]["labels"]["alertname"], "breaker_open");
    assert_eq!(posted[1]["startsAt"], posted[0]["startsAt"]);
    assert!(posted[1]["endsAt"].is_string(), "{}", posted[1]);
}

/// Alert latency, fault to webhook: a stack over a fault injector with a
/// worker reading through it; at `t0` every store call starts failing;
/// the breaker trips, the next evaluation fires `breaker_open`, the webhook
/// posts it; `t1` is when the receiver has it. Printed over several runs
/// (`--nocapture`); the test itself only requires every run to deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_latency_from_fault_to_webhook() {
    use stratum::breaker::SlidingWindow;
    use stratum_store::{FaultPlan, FaultyStore};

    let alert_interval = Duration::from_millis(200);
    let mut latencies = Vec::new();
    for run in 0..20u64 {
        let (receiver_addr, posted) = http::receive_alerts().await;
        let mut config = config();
        config.monitor.alert_interval = alert_interval;
        config.monitor.alerts.webhook.url = Some(format!("http://{receiver_addr}/api/v2/alerts"));
        config.breaker.sliding_window = SlidingWindow::CountBased { size: 10 };
        config.breaker.minimum_number_of_calls = 5;
        // Every read goes to the store.
        config.cache.enabled = false;
        let faulty = Arc::new(FaultyStore::new(
            Arc::new(stratum::MemoryStore::default()),
            run,
        ));
        let stratum = Stratum::builder(config)
            .store(Arc::clone(&faulty) as Arc<dyn stratum::Store>)
            .build()
            .unwrap();
        let reader = keep_reading(&stratum);
        // Faults start at a different point of the evaluation cycle each run.
        tokio::time::sleep(Duration::from_millis(37 * run % 200)).await;
        let t0 = Instant::now();
        faulty.set_plan(FaultPlan {
            error_rate: 1.0,
            latency: Duration::ZERO,
            slow_rate: 0.0,
            slow_latency: Duration::ZERO,
        });
        let t1 = loop {
            if let Some((at, _)) = posted
                .lock()
                .iter()
                .find(|(_, a)| a["labels"]["alertname"] == "breaker_open")
            {
                break *at;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "no alert delivered");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        latencies.push(t1 - t0);
        reader.abort();
        stratum.shutdown().await;
    }
    latencies.sort();
    println!(
        "alert latency fault -> webhook over {} runs (alert_interval {alert_interval:?}): min {:?}, median {:?}, max {:?}",
        latencies.len(),
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}

/// The other default rules on real figures: every store call failing
/// fires `error_ratio` (the breaker off, so the failures are the store's);
/// every call slow (50 ms, one admission slot) fires `latency_p99` over a
/// 20 ms objective and `admission_saturated` (the one slot always in use).
/// Back to healthy, the error ratio resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_ratio_latency_and_admission_rules_fire_on_their_figures() {
    use stratum_store::{FaultPlan, FaultyStore};

    let mut config = config();
    config.breaker.enabled = false;
    config.cache.enabled = false;
    config.pool.min_size = 1;
    config.pool.max_size = 1;
    let alerts = &mut config.monitor.alerts;
    alerts.error_ratio.for_duration = Duration::ZERO;
    alerts.error_ratio.resolve_for = Duration::ZERO;
    alerts.latency_p99.objective = Duration::from_millis(20);
    alerts.latency_p99.resolve_at = Duration::from_millis(10);
    alerts.latency_p99.for_duration = Duration::ZERO;
    // Utilisation is sampled: one fast call in flight reads as 1.0, so the
    // rule needs the slot in use at every evaluation for a while (the
    // default is 30 s) to tell saturation from a call caught in flight.
    alerts.admission_saturated.for_duration = Duration::from_millis(150);
    let faulty = Arc::new(FaultyStore::new(
        Arc::new(stratum::MemoryStore::default()),
        7,
    ));
    let stratum = Stratum::builder(config)
        .store(Arc::clone(&faulty) as Arc<dyn stratum::Store>)
        .build()
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    stratum.on_alert(move |e| sink.lock().push((e.rule.clone(), e.kind)));
    let reader = keep_reading(&stratum);
    let plan = |error_rate: f64, latency: Duration| FaultPlan {
        error_rate,
        latency,
        slow_rate: 0.0,
        slow_latency: Duration::ZERO,
    };
    // Healthy and fast: nothing fires.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(events.lock().is_empty(), "{:?}", events.lock());
    faulty.set_plan(plan(1.0, Duration::ZERO));
    wait(&events, "error_ratio", AlertEventKind::Fired).await;
    faulty.set_plan(plan(0.0, Duration::ZERO));
    wait(&events, "error_ratio", AlertEventKind::Resolved).await;
    faulty.set_plan(plan(0.0, Duration::from_millis(50)));
    wait(&events, "latency_p99", AlertEventKind::Fired).await;
    wait(&events, "admission_saturated", AlertEventKind::Fired).await;
    reader.abort();
    stratum.shutdown().await;
}

/// Reads a missing conversation by id every millisecond (one database call
/// each) until the task is aborted.
fn keep_reading(stratum: &Stratum) -> tokio::task::JoinHandle<()> {
    let conversations = stratum.repository::<Conversation>().unwrap();
    tokio::spawn(async move {
        loop {
            let _ = conversations
                .get(&stratum::bson::oid::ObjectId::new())
                .await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

/// Waits (up to 5 s) until `events` holds `rule`'s `kind`.
async fn wait(events: &Mutex<Vec<(String, AlertEventKind)>>, rule: &str, kind: AlertEventKind) {
    for _ in 0..500 {
        if events.lock().iter().any(|(r, k)| r == rule && *k == kind) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{rule} never {kind:?}: {:?}", events.lock());
}

/// The trend rules of `[monitor.alerts]`: the handle registers the four
/// burn-rate rules of the default `store.call` objective and
/// `latency_regression`; every store call failing spends the error budget
/// and pages `store.call.error_burn_1h`; switched off, none is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trend_rules_are_registered_and_the_error_budget_pages() {
    use stratum_store::{FaultPlan, FaultyStore};

    const TREND_RULES: [&str; 5] = [
        "store.call.error_burn_1h",
        "store.call.error_burn_6h",
        "store.call.latency_burn_1h",
        "store.call.latency_burn_6h",
        stratum::monitoring::rules::LATENCY_REGRESSION,
    ];
    let mut config = config();
    config.breaker.enabled = false;
    config.cache.enabled = false;
    let faulty = Arc::new(FaultyStore::new(
        Arc::new(stratum::MemoryStore::default()),
        11,
    ));
    let stratum = Stratum::builder(config.clone())
        .store(Arc::clone(&faulty) as Arc<dyn stratum::Store>)
        .build()
        .unwrap();
    let engine = stratum.monitor().unwrap().alerts();
    for rule in TREND_RULES {
        assert!(engine.state(rule).is_some(), "{rule} not registered");
    }
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    stratum.on_alert(move |e| sink.lock().push((e.rule.clone(), e.kind)));
    faulty.set_plan(FaultPlan {
        error_rate: 1.0,
        latency: Duration::ZERO,
        slow_rate: 0.0,
        slow_latency: Duration::ZERO,
    });
    let reader = keep_reading(&stratum);
    wait(
        &events,
        stratum::monitoring::rules::ERROR_BURN_1H,
        AlertEventKind::Fired,
    )
    .await;
    reader.abort();
    stratum.shutdown().await;

    config.monitor.alerts.burn_rate.enabled = false;
    config.monitor.alerts.latency_regression.enabled = false;
    let off = Stratum::builder(config).build().unwrap();
    let engine = off.monitor().unwrap().alerts();
    for rule in TREND_RULES {
        assert!(engine.state(rule).is_none(), "{rule} registered while off");
    }
    off.shutdown().await;
}
