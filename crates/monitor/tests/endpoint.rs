//! The real listener on 127.0.0.1:0: scrape `/metrics` over HTTP and parse it
//! with `prometheus-parse`; `/health/live` and `/health/ready` JSON and status
//! codes as contributors change; the exporter's idle timeout.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use prometheus_parse::Value;
use stratum_monitor::{
    AlertRule, CheckKind, Figure, Health, ManualClock, Monitor, MonitorConfig, MonitorError,
};
use support::{get, parse};

fn local_config() -> MonitorConfig {
    MonitorConfig::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap()
}

fn find<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> &'a prometheus_parse::Sample {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_over_http_has_right_names_types_and_values() {
    let monitor = Monitor::new(local_config()).unwrap();
    let running = monitor.start().await.unwrap();
    let addr = running.local_addr();
    assert!(addr.ip().is_loopback());

    monitor.in_scope(|| {
        metrics::counter!("stratum_cache_hits_total", "cache" => "prompts").increment(41);
        metrics::counter!("stratum_cache_hits_total", "cache" => "prompts").increment(1);
        metrics::counter!("stratum_cache_hits_total", "cache" => "embeddings").increment(7);
        metrics::gauge!("stratum_pool_in_use", "pool" => "mongodb").set(3.0);
        let h = metrics::histogram!("stratum_pool_acquire_duration_seconds", "pool" => "mongodb");
        // 3 fast (0.2 ms), 2 medium (20 ms), 1 slow (2 s).
        for v in [0.0002, 0.0002, 0.0002, 0.02, 0.02, 2.0] {
            h.record(v);
        }
    });
    monitor.sample_resources();

    let response = get(addr, "/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let scrape = parse(&response.body);

    let hits = find(&scrape, "stratum_cache_hits_total", &[("cache", "prompts")]);
    assert_eq!(hits.value, Value::Counter(42.0));
    let hits = find(
        &scrape,
        "stratum_cache_hits_total",
        &[("cache", "embeddings")],
    );
    assert_eq!(hits.value, Value::Counter(7.0));
    assert_eq!(
        find(&scrape, "stratum_pool_in_use", &[("pool", "mongodb")]).value,
        Value::Gauge(3.0)
    );

    // A real histogram (not a summary) with the configured buckets.
    let Value::Histogram(buckets) = &find(
        &scrape,
        "stratum_pool_acquire_duration_seconds",
        &[("pool", "mongodb")],
    )
    .value
    else {
        panic!("not a histogram");
    };
    let at = |le: f64| {
        buckets
            .iter()
            .find(|b| b.less_than == le || (b.less_than - le).abs() < 1e-12)
            .unwrap_or_else(|| panic!("no bucket le={le}"))
            .count
    };
    assert_eq!(at(0.0001), 0.0);
    assert_eq!(at(0.00025), 3.0);
    assert_eq!(at(0.025), 5.0);
    assert_eq!(at(1.0), 5.0);
    assert_eq!(at(2.5), 6.0);
    assert_eq!(at(f64::INFINITY), 6.0);
    let les: Vec<f64> = buckets
        .iter()
        .map(|b| b.less_than)
        .filter(|le| le.is_finite())
        .collect();
    assert_eq!(les, stratum_monitor::DEFAULT_SECONDS_BUCKETS);
    assert!(
        response
            .body
            .contains("stratum_pool_acquire_duration_seconds_count{pool=\"mongodb\"} 6")
    );

    // Process figures under the standard names (Linux: /proc/self): CPU
    // time a counter, the rest gauges.
    if cfg!(target_os = "linux") {
        let Value::Counter(cpu) = find(&scrape, "process_cpu_seconds_total", &[]).value else {
            panic!("process_cpu_seconds_total is not a counter");
        };
        assert!(cpu >= 0.0);
        for name in [
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let Value::Gauge(v) = find(&scrape, name, &[]).value else {
                panic!("{name} is not a gauge");
            };
            assert!(v > 0.0, "{name} = {v}");
        }
        let Value::Gauge(rss) = find(&scrape, "process_resident_memory_bytes", &[]).value else {
            unreachable!()
        };
        assert!(rss > 1_000_000.0);
        let Value::Gauge(started) = find(&scrape, "process_start_time_seconds", &[]).value else {
            unreachable!()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
        assert!(!response.body.contains("stratum_process_"), "old names");
    }

    // Unknown paths are 404, not metrics.
    assert_eq!(get(addr, "/nope").await.status, 404);
    running.shutdown().await;
    // After shutdown the port no longer answers.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_follow_their_contributors() {
    let monitor = Monitor::new(local_config()).unwrap();
    let running = monitor.start().await.unwrap();
    let addr = running.local_addr();

    // Only the monitor's own `process` liveness check: both probes UP.
    let live = get(addr, "/health/live").await;
    assert_eq!(live.status, 200);
    assert_eq!(live.header("content-type"), Some("application/json"));
    assert_eq!(
        live.body,
        r#"{"status":"UP","components":{"process":{"status":"UP"}}}"#
    );
    assert_eq!(
        get(addr, "/health/ready").await.body,
        r#"{"status":"UP","components":{}}"#
    );

    let db = Arc::new(AtomicU8::new(0));
    let breaker_open = Arc::new(AtomicU8::new(0));
    // The monitor registered `process` itself: a second one is refused.
    assert!(matches!(
        monitor
            .health()
            .register_fn("process", CheckKind::Liveness, Health::up),
        Err(MonitorError::Duplicate { .. })
    ));
    {
        let db = Arc::clone(&db);
        monitor
            .health()
            .register_async("database", CheckKind::Readiness, move || {
                let state = db.load(Ordering::SeqCst);
                async move {
                    match state {
                        0 => Health::up(),
                        1 => Health::degraded("ping 900ms"),
                        _ => Health::down("ping failed: connection refused"),
                    }
                }
            })
            .unwrap();
    }
    {
        let open = Arc::clone(&breaker_open);
        monitor
            .health()
            .register_fn("breaker.mongodb", CheckKind::Readiness, move || {
                if open.load(Ordering::SeqCst) == 1 {
                    Health::down("breaker open")
                } else {
                    Health::up()
                }
            })
            .unwrap();
    }

    let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap();

    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready.status, 200);
    let body = json(&ready.body);
    assert_eq!(body["status"], "UP");
    assert_eq!(body["components"]["database"]["status"], "UP");
    assert_eq!(body["components"]["breaker.mongodb"]["status"], "UP");
    assert!(
        body["components"].get("process").is_none(),
        "liveness check in readiness"
    );

    db.store(1, Ordering::SeqCst);
    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready.status, 200, "degraded still takes traffic");
    let body = json(&ready.body);
    assert_eq!(body["status"], "DEGRADED");
    assert_eq!(body["components"]["database"]["reason"], "ping 900ms");

    breaker_open.store(1, Ordering::SeqCst);
    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready.status, 503);
    let body = json(&ready.body);
    assert_eq!(body["status"], "DOWN");
    assert_eq!(
        body["components"]["breaker.mongodb"]["reason"],
        "breaker open"
    );
    assert_eq!(body["components"]["database"]["status"], "DEGRADED");

    // Liveness never looks at dependencies.
    let live = get(addr, "/health/live").await;
    assert_eq!(live.status, 200);
    assert_eq!(json(&live.body)["components"]["process"]["status"], "UP");

    db.store(2, Ordering::SeqCst);
    breaker_open.store(0, Ordering::SeqCst);
    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        json(&ready.body)["components"]["database"]["reason"],
        "ping failed: connection refused"
    );

    // The probes were exported as gauges.
    let scrape = parse(&get(addr, "/metrics").await.body);
    assert_eq!(
        find(
            &scrape,
            "stratum_monitor_health_status",
            &[("check", "database"), ("kind", "readiness")]
        )
        .value,
        Value::Gauge(0.0)
    );
    assert_eq!(
        find(
            &scrape,
            "stratum_monitor_health_status",
            &[("check", "process"), ("kind", "liveness")]
        )
        .value,
        Value::Gauge(2.0)
    );

    db.store(0, Ordering::SeqCst);
    assert!(monitor.health().unregister("database"));
    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready.status, 200);
    assert_eq!(json(&ready.body)["status"], "UP");
    running.shutdown().await;
}

#[tokio::test]
async fn alert_metrics_reach_the_scrape() {
    let clock = ManualClock::new();
    let monitor = Monitor::builder(local_config())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let ratio = Arc::new(AtomicU8::new(90));
    let figure = {
        let ratio = Arc::clone(&ratio);
        Figure::custom(move || Some(f64::from(ratio.load(Ordering::SeqCst)) / 100.0))
    };
    monitor
        .alerts()
        .add(
            AlertRule::below("cache_hit_ratio_low", figure, 0.8)
                .resolve_at(0.85)
                .for_duration(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .unwrap();
    let running = monitor.start().await.unwrap();
    assert!(monitor.evaluate_alerts().is_empty());
    ratio.store(50, Ordering::SeqCst);
    assert!(monitor.evaluate_alerts().is_empty());
    clock.advance(Duration::from_secs(60));
    assert_eq!(monitor.evaluate_alerts().len(), 1);

    let scrape = parse(&get(running.local_addr(), "/metrics").await.body);
    assert_eq!(
        find(
            &scrape,
            "stratum_monitor_alert_firing",
            &[("alert", "cache_hit_ratio_low")]
        )
        .value,
        Value::Gauge(1.0)
    );
    assert_eq!(
        find(
            &scrape,
            "stratum_monitor_alert_events_total",
            &[("alert", "cache_hit_ratio_low"), ("event", "fired")]
        )
        .value,
        Value::Counter(1.0)
    );
    running.shutdown().await;
}

#[tokio::test]
async fn binding_a_busy_port_is_a_typed_error() {
    let first = Monitor::new(local_config()).unwrap().start().await.unwrap();
    let busy = MonitorConfig::builder()
        .listen(first.local_addr())
        .build()
        .unwrap();
    let err = Monitor::new(busy).unwrap().start().await.unwrap_err();
    assert!(matches!(err, MonitorError::Bind { .. }), "{err}");
    first.shutdown().await;
}

#[test]
fn wide_bind_is_refused_without_opt_in() {
    let config = MonitorConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..Default::default()
    };
    assert_eq!(Monitor::new(config).unwrap_err().field(), "listen");
}

/// Series idle longer than the timeout disappear from the scrape. The
/// exporter's recency clock is not injectable, so this test waits (20 ms
/// past a 1 ms timeout); it asserts only the direction, never a duration.
#[test]
fn idle_series_disappear() {
    let config = MonitorConfig::builder()
        .idle_timeout(Some(Duration::from_millis(1)))
        .build()
        .unwrap();
    let monitor = Monitor::new(config).unwrap();
    monitor
        .in_scope(|| metrics::counter!("stratum_cache_misses_total", "cache" => "a").increment(1));
    assert!(monitor.render().contains("stratum_cache_misses_total"));
    std::thread::sleep(Duration::from_millis(20));
    assert!(!monitor.render().contains("stratum_cache_misses_total{"));

    let keep = MonitorConfig::builder().idle_timeout(None).build().unwrap();
    let monitor = Monitor::new(keep).unwrap();
    monitor
        .in_scope(|| metrics::counter!("stratum_cache_misses_total", "cache" => "a").increment(1));
    std::thread::sleep(Duration::from_millis(20));
    assert!(monitor.render().contains("stratum_cache_misses_total{"));
}

#[test]
fn install_global_once() {
    let monitor = Monitor::new(MonitorConfig::default()).unwrap();
    monitor.install_global().unwrap();
    metrics::counter!("stratum_breaker_not_permitted_total", "breaker" => "mongodb").increment(2);
    assert!(
        monitor
            .render()
            .contains("stratum_breaker_not_permitted_total{breaker=\"mongodb\"} 2")
    );
    let other = Monitor::new(MonitorConfig::default()).unwrap();
    assert!(matches!(
        other.install_global(),
        Err(MonitorError::RecorderAlreadyInstalled)
    ));
}

/// The started monitor samples resources and evaluates alert rules on its
/// own intervals; tokio's paused clock drives them without waiting.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn background_loop_samples_and_evaluates() {
    let config = MonitorConfig::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .resource_interval(Duration::from_secs(15))
        .alert_interval(Duration::from_secs(5))
        .build()
        .unwrap();
    let monitor = Monitor::new(config).unwrap();
    let fired = Arc::new(AtomicU8::new(0));
    {
        let fired = Arc::clone(&fired);
        monitor.alerts().on_event(move |_| {
            fired.fetch_add(1, Ordering::SeqCst);
        });
    }
    monitor
        .alerts()
        .add(
            AlertRule::above("queue_deep", Figure::custom(|| Some(100.0)), 10.0)
                .build()
                .unwrap(),
        )
        .unwrap();
    let running = monitor.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        fired.load(Ordering::SeqCst),
        1,
        "fired once, then kept firing"
    );
    assert!(monitor.alerts().firing().contains(&"queue_deep".to_owned()));
    if cfg!(target_os = "linux") {
        let text = monitor.render();
        assert!(text.contains("\nprocess_open_fds "), "{text}");
        assert!(text.contains("stratum_monitor_alert_firing{alert=\"queue_deep\"} 1"));
    }
    running.shutdown().await;
}
