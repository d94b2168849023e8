//! The fault-injecting proxy (`stratum_tests::proxy`) between the official
//! driver (and the whole stack) and the real test server: a ping goes
//! through, and each fault does what it says.
//!
//! Time assertions are lower bounds the proxy imposes (added latency) or
//! configured bounds plus the drills' slack, never speed.

// A test that cannot set up (no server, no proxy) fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use mongodb::bson::doc;
use mongodb::error::ErrorKind;
use serde::{Deserialize, Serialize};
use stratum::models::Document;
use stratum::{Stratum, StratumConfig};
use stratum_tests::proxy::{Direction, FaultProxy, address_of};

/// Room on top of a configured bound (a loaded 2-core machine).
const SLACK: Duration = Duration::from_secs(5);

fn proxy() -> FaultProxy {
    let upstream = address_of(&stratum_tests::mongodb_uri()).expect("a one-host test server URI");
    FaultProxy::start(upstream).expect("the proxy starts")
}

async fn client(proxy: &FaultProxy, selection_ms: u64) -> mongodb::Client {
    let uri = format!(
        "{}&serverSelectionTimeoutMS={selection_ms}&connectTimeoutMS={selection_ms}",
        proxy.uri()
    );
    mongodb::Client::with_uri_str(uri).await.expect("a client")
}

async fn ping(client: &mongodb::Client) -> mongodb::error::Result<mongodb::bson::Document> {
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_go_through_and_latency_is_added_per_direction() {
    let proxy = proxy();
    let client = client(&proxy, 5_000).await;
    ping(&client).await.expect("a ping through the proxy");
    let stats = proxy.stats();
    assert!(
        stats.accepted >= 1 && stats.forwarded_bytes > 0,
        "{stats:?}"
    );

    let latency = Duration::from_millis(200);
    proxy.set_latency(Direction::ToClient, latency);
    let started = Instant::now();
    ping(&client).await.expect("a slow ping");
    let replies_only = started.elapsed();
    assert!(replies_only >= latency, "{replies_only:?}");

    proxy.set_latency(Direction::ToServer, latency);
    let started = Instant::now();
    ping(&client).await.expect("a slower ping");
    assert!(started.elapsed() >= 2 * latency, "{:?}", started.elapsed());

    proxy.clear();
    ping(&client).await.expect("a ping after the faults");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_holds_the_bytes_until_it_is_cleared() {
    let proxy = proxy();
    let client = client(&proxy, 5_000).await;
    ping(&client).await.expect("a ping through the proxy");
    for direction in [Direction::ToServer, Direction::ToClient] {
        proxy.stall(direction);
        let pinging = tokio::spawn({
            let client = client.clone();
            async move { ping(&client).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !pinging.is_finished(),
            "{direction:?}: a stalled ping answered"
        );
        proxy.clear();
        // The held bytes go on: the very same call completes.
        let answered = tokio::time::timeout(SLACK, pinging).await;
        assert!(
            matches!(answered, Ok(Ok(Ok(_)))),
            "{direction:?}: {answered:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_accepts_and_never_forwards() {
    let proxy = proxy();
    proxy.blackhole(Direction::ToServer);
    // A fresh client: its connections are accepted and swallowed.
    let client = client(&proxy, 1_000).await;
    let started = Instant::now();
    let failed = ping(&client).await;
    assert!(failed.is_err(), "a ping through a blackhole answered");
    assert!(started.elapsed() < Duration::from_secs(1) + SLACK);
    let stats = proxy.stats();
    assert!(stats.accepted >= 1, "{stats:?}");
    assert!(stats.dropped_bytes > 0, "nothing was swallowed: {stats:?}");
    assert_eq!(stats.forwarded_bytes, 0, "{stats:?}");

    proxy.clear();
    let started = Instant::now();
    while let Err(e) = ping(&client).await {
        assert!(
            started.elapsed() < SLACK,
            "no recovery after the blackhole: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_fails_the_call_in_flight_with_a_network_error() {
    let proxy = proxy();
    let client = client(&proxy, 5_000).await;
    ping(&client).await.expect("a ping through the proxy");
    // The request reaches the server; its reply is held: mid-operation.
    proxy.stall(Direction::ToClient);
    let pinging = tokio::spawn({
        let client = client.clone();
        async move { ping(&client).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pinging.is_finished());
    proxy.reset_all();
    let reset_at = Instant::now();
    let outcome = tokio::time::timeout(SLACK, pinging)
        .await
        .expect("the call in flight returned after the reset")
        .expect("the task ran");
    let error = outcome.expect_err("a reset connection cannot answer");
    assert!(
        matches!(*error.kind, ErrorKind::Io(_)),
        "not a network error: {error}"
    );
    assert!(reset_at.elapsed() < SLACK);
    assert!(proxy.stats().reset >= 1, "{:?}", proxy.stats());
}

/// A document for the stack's calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Probe {
    #[serde(rename = "_id")]
    id: i64,
}

impl Document for Probe {
    const COLLECTION: &'static str = "proxy_probes";
    const SCHEMA_VERSION: i32 = 1;
    type Id = i64;

    fn id(&self) -> &i64 {
        &self.id
    }
}

/// Runs `call` with its reply held and resets every connection 300 ms
/// in: then lifts the stall, or (`again`) keeps it and resets every
/// connection every 100 ms (one opening when the call began included),
/// until the call returns; returns what it returned.
async fn reset_mid_operation<T>(
    proxy: &FaultProxy,
    call: impl Future<Output = T>,
    again: bool,
) -> T {
    proxy.stall(Direction::ToClient);
    let fault = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.reset_all();
        if !again {
            proxy.clear();
        }
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if again {
                proxy.reset_all();
            }
        }
    };
    let out = tokio::select! {
        out = call => out,
        () = fault => unreachable!("the fault never ends"),
    };
    proxy.clear();
    out
}

async fn stack(
    proxy: &FaultProxy,
    operation: Duration,
    options: &str,
    database: &str,
) -> (Stratum, StratumConfig) {
    let database = database.to_owned();
    let config = StratumConfig::builder()
        .mongodb_uri(format!("{}{options}", proxy.uri()))
        .configure(move |c| {
            c.mongodb.database = database;
            c.mongodb.operation_timeout = operation;
            c.mongodb.server_selection_timeout = Duration::from_secs(2);
            c.mongodb.connect_timeout = Duration::from_secs(1);
            c.monitor.enabled = false;
            c.cache.enabled = false;
            c.pool.acquire_timeout = Duration::from_secs(1);
        })
        .build()
        .expect("a valid configuration");
    let stratum = Stratum::builder(config.clone())
        .open()
        .await
        .expect("the stack opens through the proxy");
    (stratum, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_stack_resets_are_network_errors_and_stalls_timeouts() {
    // The stack's database, dropped at the end (the harness names it).
    let db = stratum_tests::TestDb::new("proxy_stack").await;
    let proxy = proxy();
    let (stratum, config) = stack(&proxy, Duration::from_secs(2), "", db.name()).await;
    let bound = config.pool.acquire_timeout + config.mongodb.operation_timeout;
    let repo = stratum.repository::<Probe>().expect("a repository");
    match repo.insert(&Probe { id: 1 }).await {
        Ok(()) => {}
        Err(e) if e.kind() == "duplicate_key" => {}
        Err(e) => panic!("an insert through the proxy: {e}"),
    }

    // Stalled replies longer than the operation timeout: a timeout, in time.
    proxy.stall(Direction::ToClient);
    let started = Instant::now();
    let stalled = repo.get(&1).await.expect_err("no reply can arrive");
    assert_eq!(stalled.kind(), "timeout", "{stalled}");
    assert!(
        started.elapsed() <= bound + SLACK,
        "{:?}",
        started.elapsed()
    );
    proxy.clear();

    // A reply held, then the connection reset mid-operation: the driver
    // retries a read once on a fresh connection, which answers.
    let retried = reset_mid_operation(&proxy, repo.get(&1), false).await;
    assert!(
        retried.is_ok(),
        "the driver's retry did not answer: {retried:?}"
    );
    stratum.shutdown().await;

    // Without the driver's retry the reset is the caller's: a network error.
    let (stratum, _) = stack(
        &proxy,
        Duration::from_secs(2),
        "&retryReads=false",
        db.name(),
    )
    .await;
    let repo = stratum.repository::<Probe>().expect("a repository");
    repo.get(&1).await.expect("a read through the proxy");
    let started = Instant::now();
    let reset = reset_mid_operation(&proxy, repo.get(&1), true)
        .await
        .expect_err("the connection was reset");
    assert_eq!(reset.kind(), "network", "{reset}");
    assert!(
        started.elapsed() <= bound + SLACK,
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    while let Err(e) = repo.get(&1).await {
        assert!(started.elapsed() < bound + SLACK, "no recovery: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stratum.store().ping().await;
    stratum.shutdown().await;
    db.cleanup().await;
}
