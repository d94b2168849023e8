//! Alert delivery to a real HTTP receiver (an axum server on 127.0.0.1:0 in
//! this test): Alertmanager's JSON for fired and resolved, retries with
//! backoff after failures, the bounded queue dropping (and counting) what
//! does not fit, and the flush at shutdown.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use parking_lot::Mutex;
use serde_json::Value;
use stratum_monitor::{AlertRule, AlertsConfig, Figure, Monitor, MonitorConfig, WebhookConfig};

/// What the receiver saw: every body, and how many posts to refuse first.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    refuse_first: Arc<AtomicUsize>,
    posts: Arc<AtomicUsize>,
}

async fn receive(State(r): State<Receiver>, body: String) -> StatusCode {
    let n = r.posts.fetch_add(1, Ordering::SeqCst);
    if n < r.refuse_first.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.bodies.lock().push(serde_json::from_str(&body).unwrap());
    StatusCode::OK
}

async fn receiver() -> (SocketAddr, Receiver) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/api/v2/alerts", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, r)
}

fn config(url: String, webhook: WebhookConfig) -> MonitorConfig {
    MonitorConfig::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .alert_interval(Duration::from_millis(20))
        .alerts(AlertsConfig {
            webhook: WebhookConfig {
                url: Some(url),
                initial_backoff: Duration::from_millis(10),
                ..webhook
            },
            ..AlertsConfig::default()
        })
        .build()
        .unwrap()
}

/// A rule on a figure the test sets.
fn knob(monitor: &Monitor) -> Arc<AtomicU64> {
    let cell = Arc::new(AtomicU64::new(0));
    let read = Arc::clone(&cell);
    monitor
        .alerts()
        .add(
            AlertRule::above(
                "queue_deep",
                Figure::custom(move || Some(read.load(Ordering::SeqCst) as f64)),
                10.0,
            )
            .build()
            .unwrap(),
        )
        .unwrap();
    cell
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn alerts(r: &Receiver) -> Vec<Value> {
    r.bodies
        .lock()
        .iter()
        .flat_map(|b| b.as_array().unwrap().clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fired_and_resolved_reach_the_receiver_in_alertmanagers_shape() {
    let (addr, r) = receiver().await;
    let url = format!("http://{addr}/api/v2/alerts");
    let monitor = Monitor::new(config(url, WebhookConfig::default())).unwrap();
    let value = knob(&monitor);
    let running = monitor.start().await.unwrap();

    value.store(50, Ordering::SeqCst);
    wait_for("the fired alert", || alerts(&r).len() == 1).await;
    value.store(0, Ordering::SeqCst);
    wait_for("the resolved alert", || alerts(&r).len() == 2).await;
    running.shutdown().await;

    let seen = alerts(&r);
    let (fired, resolved) = (&seen[0], &seen[1]);
    assert_eq!(fired["labels"]["alertname"], "queue_deep");
    assert_eq!(fired["annotations"]["value"], "50");
    assert!(fired.get("endsAt").is_none(), "{fired}");
    assert_eq!(resolved["labels"], fired["labels"]);
    assert_eq!(resolved["startsAt"], fired["startsAt"]);
    let starts = humantime::parse_rfc3339(fired["startsAt"].as_str().unwrap()).unwrap();
    let ends = humantime::parse_rfc3339(resolved["endsAt"].as_str().unwrap()).unwrap();
    assert!(ends >= starts, "{starts:?} {ends:?}");
    let text = monitor.render();
    assert!(
        text.contains(
            "stratum_monitor_alert_deliveries_total{sink=\"webhook\",result=\"delivered\"} 2"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_receiver_gets_retries_until_it_accepts() {
    let (addr, r) = receiver().await;
    r.refuse_first.store(3, Ordering::SeqCst);
    let url = format!("http://{addr}/api/v2/alerts");
    let monitor = Monitor::new(config(url, WebhookConfig::default())).unwrap();
    let value = knob(&monitor);
    let running = monitor.start().await.unwrap();
    value.store(50, Ordering::SeqCst);
    wait_for("the fired alert", || alerts(&r).len() == 1).await;
    running.shutdown().await;
    assert_eq!(r.posts.load(Ordering::SeqCst), 4);
    let text = monitor.render();
    assert!(
        text.contains("stratum_monitor_alert_delivery_retries_total{sink=\"webhook\"} 3"),
        "{text}"
    );
    assert!(text.contains("result=\"delivered\"} 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_counts_a_failure_and_a_full_queue_drops() {
    // Nothing listens on the receiver's address once it is dropped.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{gone}/api/v2/alerts");
    let monitor = Monitor::new(config(
        url,
        WebhookConfig {
            max_attempts: 2,
            queue_capacity: 1,
            ..WebhookConfig::default()
        },
    ))
    .unwrap();
    let value = knob(&monitor);
    // Not started: nothing drains the queue of one.
    value.store(50, Ordering::SeqCst);
    monitor.evaluate_alerts(); // fired: queued
    value.store(0, Ordering::SeqCst);
    monitor.evaluate_alerts(); // resolved: dropped
    value.store(50, Ordering::SeqCst);
    monitor.evaluate_alerts(); // fired again: dropped
    let text = monitor.render();
    assert!(text.contains("result=\"dropped\"} 2"), "{text}");
    // Started, the queued event is posted twice and given up.
    let running = monitor.start().await.unwrap();
    wait_for("the failure", || {
        monitor.render().contains("result=\"failed\"} 1")
    })
    .await;
    running.shutdown().await;
    assert!(
        monitor
            .render()
            .contains("stratum_monitor_alert_delivery_retries_total{sink=\"webhook\"} 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_the_last_evaluation() {
    let (addr, r) = receiver().await;
    let url = format!("http://{addr}/api/v2/alerts");
    let slow = MonitorConfig {
        // Evaluated only at shutdown within this test.
        alert_interval: Duration::from_secs(3600),
        ..config(url, WebhookConfig::default())
    };
    let monitor = Monitor::new(slow).unwrap();
    let value = knob(&monitor);
    let running = monitor.start().await.unwrap();
    // The interval's first tick is immediate: let it pass with no breach.
    tokio::time::sleep(Duration::from_millis(100)).await;
    value.store(50, Ordering::SeqCst);
    running.shutdown().await;
    let seen = alerts(&r);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["labels"]["alertname"], "queue_deep");
}
