//! Server-returned errors through the whole stack, from the fail points of
//! the PyPI build of the test server (`failCommand`, which the pinned Rust
//! build lacks): a user whose write privilege is gone (13 Unauthorized on
//! every insert) gets the typed, final `not_authorized` kind, its reads keep
//! being served, and the breaker does not count the refusals (it guards
//! against a database that does not answer or answers slowly; a server that
//! promptly refuses a request to its user does neither). Until the store
//! mapped 13 to `NotAuthorized`, it was a `Backend` error: the breaker
//! counted it, opened and refused the reads too.
//!
//! The server is one of its own (`ServerProcess::start_with_fail_points`,
//! `$STRATUM_TEST_SERVER_PY_BIN`): a fail point is server-wide.

// A test that cannot set up (no server) fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use mongodb::bson::{Bson, doc};
use serde::{Deserialize, Serialize};
use stratum::breaker::State;
use stratum::models::Document;
use stratum_tests::server::{ServerProcess, fail_command};

use crate::step_down::stack_with_a_small_window;

/// Reads and writes made while the fail point is on; enough to fill the
/// breaker's window twice.
const CALLS: u32 = 12;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    #[serde(rename = "_id")]
    id: i64,
}

impl Document for Entry {
    const COLLECTION: &'static str = "fail_point_entries";
    const SCHEMA_VERSION: i32 = 1;
    type Id = i64;

    fn id(&self) -> &i64 {
        &self.id
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorized_write_is_typed_final_and_not_counted_by_the_breaker() {
    let server = ServerProcess::start_with_fail_points(&[]).expect("the PyPI build starts");
    // A small window that the refused writes would open if the breaker
    // counted them (the step-down test's stack).
    let stratum = stack_with_a_small_window(server.uri(), "fail_points").await;
    let entries = stratum.repository::<Entry>().expect("a repository");
    entries
        .insert(&Entry { id: 0 })
        .await
        .expect("a first write");
    let breaker = stratum.breaker().expect("the breaker is on by default");

    fail_command(
        &server.uri(),
        Bson::from("alwaysOn"),
        doc! { "failCommands": ["insert"], "errorCode": 13 },
    )
    .await
    .expect("the fail point is armed");
    for i in 1..=i64::from(CALLS) {
        let error = entries
            .insert(&Entry { id: i })
            .await
            .expect_err("the fail point refuses every insert");
        assert_eq!(error.kind(), "not_authorized", "{error}");
        // Final, and the server applied nothing: not an unknown outcome.
        assert!(!error.is_unavailable(), "{error:?}");
        let read = entries.get(&0).await.expect("reads are still served");
        assert_eq!(read.value.map(|e| e.id), Some(0));
        assert_eq!(breaker.state(), State::Closed, "after {i} rounds");
    }
    // Answers, not failures: nothing in the window failed.
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.failed_calls, 0, "{snapshot:?}");
    assert_eq!(stratum.breaker_transitions().0, 0);

    fail_command(&server.uri(), Bson::from("off"), doc! {})
        .await
        .expect("the fail point is cleared");
    entries
        .insert(&Entry { id: 1_000 })
        .await
        .expect("writes succeed again");
    // None of the refused inserts was applied.
    for i in 1..=i64::from(CALLS) {
        let read = entries.get(&i).await.expect("a read");
        assert!(read.value.is_none(), "refused insert {i} was applied");
    }
    stratum.shutdown().await;
}
