//! A primary step-down through the whole stack (the `Stratum` handle and a
//! repository) against a real test server: while the node is a secondary,
//! writes fail with the typed, retryable `not_primary` kind, reads keep
//! being served, and the breaker stays closed (it guards against a database
//! that does not answer or answers slowly, and a node that says "I am not
//! the primary" does neither). The server is one of its own
//! (`ServerProcess`): a step-down would disturb the other tests sharing
//! `STRATUM_TEST_MONGODB_URI`.

// A test that cannot set up (no server) fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use mongodb::bson::doc;
use serde::{Deserialize, Serialize};
use stratum::breaker::State;
use stratum::models::Document;
use stratum::{Stratum, StratumConfig};
use stratum_tests::server::ServerProcess;

/// How long the node stays a secondary.
const STEP_DOWN_SECS: i32 = 10;
/// Reads and writes made while it is one; enough to fill the breaker's
/// window twice.
const CALLS: u32 = 12;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Note {
    #[serde(rename = "_id")]
    id: i64,
}

impl Document for Note {
    const COLLECTION: &'static str = "step_down_notes";
    const SCHEMA_VERSION: i32 = 1;
    type Id = i64;

    fn id(&self) -> &i64 {
        &self.id
    }
}

/// `replSetStepDown` with `force`, straight to the server; whether it
/// reports itself writable right after.
async fn step_down(server: &ServerProcess) -> Option<bool> {
    let client = mongodb::Client::with_uri_str(server.uri())
        .await
        .expect("a client");
    let admin = client.database("admin");
    admin
        .run_command(doc! { "replSetStepDown": STEP_DOWN_SECS, "force": true })
        .await
        .expect("the test server steps down");
    let hello = admin.run_command(doc! { "hello": 1 }).await.expect("hello");
    hello.get_bool("isWritablePrimary").ok()
}

/// The stack over `uri` in a database of its own, every read going to the
/// server (no cache), and a breaker with a small window that failed writes
/// would open (half the calls of the tests that use it are writes) if it
/// counted them. Also used by the fail-point test.
pub(crate) async fn stack_with_a_small_window(uri: String, prefix: &str) -> Stratum {
    let database = stratum_tests::unique_name(prefix);
    let config = StratumConfig::builder()
        .mongodb_uri(uri)
        .configure(move |c| {
            c.mongodb.database = database;
            c.mongodb.operation_timeout = Duration::from_secs(5);
            c.monitor.enabled = false;
            c.cache.enabled = false;
            c.breaker.sliding_window = stratum::breaker::SlidingWindow::CountBased { size: 10 };
            c.breaker.minimum_number_of_calls = 10;
            c.breaker.failure_rate_threshold = 40.0;
        })
        .build()
        .expect("a valid configuration");
    Stratum::builder(config)
        .open()
        .await
        .expect("the stack opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_step_down_reads_are_served_and_the_breaker_stays_closed() {
    let server = ServerProcess::start().expect("a server starts");
    let stratum = stack_with_a_small_window(server.uri(), "step_down").await;
    let notes = stratum.repository::<Note>().expect("a repository");
    notes.insert(&Note { id: 0 }).await.expect("a first write");
    let breaker = stratum.breaker().expect("the breaker is on by default");

    assert_eq!(step_down(&server).await, Some(false));
    let stepped_down = Instant::now();
    let (mut reads, mut writes) = (0, 0);
    for i in 1..=i64::from(CALLS) {
        let written = notes.insert(&Note { id: i }).await;
        let read = notes.get(&0).await;
        // The calls must fall within the step-down to prove anything.
        assert!(
            stepped_down.elapsed() < Duration::from_secs(STEP_DOWN_SECS as u64),
            "the calls outlasted the step-down ({i} rounds)"
        );
        let error = written.expect_err("a secondary takes no writes");
        assert_eq!(error.kind(), "not_primary", "{error}");
        assert!(error.is_unavailable(), "{error:?}");
        writes += 1;
        let read = read.expect("the secondary still serves reads");
        assert_eq!(read.origin, stratum::Origin::Store, "{:?}", read.origin);
        assert_eq!(read.value.map(|note| note.id), Some(0));
        reads += 1;
        assert_eq!(breaker.state(), State::Closed, "after {i} rounds");
    }
    assert_eq!((reads, writes), (CALLS, CALLS));
    // Counted as answers, not failures: nothing in the window failed.
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.failed_calls, 0, "{snapshot:?}");
    assert_eq!(stratum.breaker_transitions().0, 0);

    // The node steps up again: writes succeed.
    let deadline = Instant::now() + Duration::from_secs(STEP_DOWN_SECS as u64 + 30);
    let mut last = None;
    while Instant::now() < deadline {
        match notes.insert(&Note { id: 1_000 }).await {
            Ok(()) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(last.is_none(), "no write after the step-up: {last:?}");
    stratum.shutdown().await;
}
