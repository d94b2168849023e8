//! The circuit breaker guarding real MongoDB calls: healthy calls to the test
//! server keep it closed, calls to a server that is not there open it, an
//! open breaker refuses without touching the network, and probes against the
//! healthy server close it again. Time in the breaker is a `ManualClock`;
//! the driver's own timeouts are real.

// The helper below is test code outside a #[test] function.
#![allow(clippy::expect_used)]

use std::net::TcpListener;
use std::time::Duration;

use mongodb::Client;
use mongodb::bson::{Document, doc};
use mongodb::options::ClientOptions;
use stratum_breaker::{Breaker, CallError, ManualClock, State};

/// A client for a loopback port nothing listens on, failing fast.
async fn unreachable_client() -> Client {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        listener.local_addr().expect("its address").port()
    }; // the listener closes here: nothing listens on `port` any more
    let mut options =
        ClientOptions::parse(format!("mongodb://127.0.0.1:{port}/?directConnection=true"))
            .await
            .expect("a valid URI");
    options.server_selection_timeout = Some(Duration::from_millis(300));
    options.connect_timeout = Some(Duration::from_millis(300));
    Client::with_options(options).expect("client options are valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_on_an_unreachable_server_and_closes_on_a_healthy_one() {
    let db = stratum_tests::TestDb::new("breaker").await;
    let things = db.db().collection::<Document>("things");
    let clock = ManualClock::new();
    let breaker = Breaker::builder("mongodb_test")
        .count_based_window(10)
        .minimum_number_of_calls(10)
        .failure_rate_threshold(50.0)
        .permitted_calls_in_half_open(2)
        .wait_in_open(Duration::from_secs(30))
        .jitter(0.0)
        .clock(clock.clone())
        .build()
        .expect("a valid configuration");

    // Healthy: ten real writes and a read through the breaker.
    for i in 0..10 {
        breaker
            .call(things.insert_one(doc! { "i": i }))
            .await
            .expect("the test server accepts the insert");
    }
    let count = breaker
        .call(things.count_documents(doc! {}))
        .await
        .expect("the test server counts");
    assert_eq!(count, 10);
    assert_eq!(breaker.state(), State::Closed);

    // The server is gone: every call fails with the driver's own error.
    let gone = unreachable_client()
        .await
        .database("x")
        .collection::<Document>("y");
    for _ in 0..5 {
        let result = breaker.call(gone.find_one(doc! {})).await;
        assert!(matches!(result, Err(CallError::Failed(_))), "{result:?}");
    }
    // The last ten calls: five successes and five failures, 50 %: open.
    assert_eq!(breaker.state(), State::Open);
    let snapshot = breaker.snapshot();
    assert_eq!((snapshot.calls, snapshot.failed_calls), (10, 5));

    // Open: refused at once, the driver is never asked.
    let refused = breaker.call(gone.find_one(doc! {})).await;
    match refused {
        Err(CallError::NotPermitted(e)) => {
            assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // After the wait, two probes to the healthy server close the breaker.
    clock.advance(Duration::from_secs(30));
    for _ in 0..2 {
        let found = breaker
            .call(things.find_one(doc! { "i": 3 }))
            .await
            .expect("the probe reaches the test server");
        assert!(found.is_some());
    }
    assert_eq!(breaker.state(), State::Closed);
    db.cleanup().await;
}
