//! The shared test harness: a real MongoDB-compatible server, over TCP, for
//! every integration test in the workspace.
//!
//! Tests never talk to a mock. The server's URI comes from the environment
//! variable [`URI_VAR`] (`STRATUM_TEST_MONGODB_URI`): `cargo xtask ci` starts
//! the pinned SecantusDB server and sets it, and a user can point it at a real
//! `mongod` to run the very same tests there. When it is unset a test fails
//! with a message naming the command that starts a server; it never passes
//! silently.
//!
//! Each test gets its own uniquely named database from [`TestDb::new`] and
//! drops it at the end, also when the test panics.
//!
//! Fault drills, which kill or freeze their server, start one of their own
//! with [`server::ServerProcess`]; network faults go through a
//! [`proxy::FaultProxy`] between the application and the server.
//!
//! ```no_run
//! # async fn demo() {
//! use mongodb::bson::doc;
//!
//! let db = stratum_tests::TestDb::new("example").await;
//! db.db().collection("things").insert_one(doc! { "x": 1 }).await.unwrap();
//! db.cleanup().await; // or let it drop
//! # }
//! ```
#![deny(missing_docs)]
// A harness reports a missing server by failing the test that asked for it.
#![allow(clippy::panic, clippy::expect_used)]

pub mod http;
pub mod planted;
pub mod proxy;
pub mod server;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

/// The environment variable that holds the test server's URI.
pub const URI_VAR: &str = "STRATUM_TEST_MONGODB_URI";

/// What to run when [`URI_VAR`] is missing.
pub const START_HINT: &str = "start one with `cargo xtask test-server start` and export \
STRATUM_TEST_MONGODB_URI=<the URI it prints>, or run everything with `cargo xtask ci`";

/// The test server's URI.
///
/// # Panics
/// When [`URI_VAR`] is unset or empty: the test fails and the message names
/// the command that starts a server.
pub fn mongodb_uri() -> String {
    match std::env::var(URI_VAR) {
        Ok(uri) if !uri.trim().is_empty() => uri,
        _ => panic!(
            "{URI_VAR} is not set: this test needs a MongoDB-compatible server; {START_HINT}"
        ),
    }
}

/// Client options for the test server, with short timeouts so a dead server
/// fails a test in seconds rather than the driver's default 30 s.
pub async fn client_options() -> ClientOptions {
    let uri = mongodb_uri();
    let mut options = ClientOptions::parse(&uri)
        .await
        .unwrap_or_else(|e| panic!("{URI_VAR} is not a valid MongoDB URI: {e}"));
    options.server_selection_timeout = Some(Duration::from_secs(10));
    options.connect_timeout = Some(Duration::from_secs(5));
    options.app_name = Some("stratum-tests".into());
    options
}

/// A client connected to the test server.
pub async fn client() -> Client {
    Client::with_options(client_options().await).expect("the driver accepts the test options")
}

/// A uniquely named database on the test server, dropped when the test ends.
pub struct TestDb {
    client: Client,
    db: Database,
    dropped: bool,
}

impl TestDb {
    /// Connects and picks a fresh database name that starts with `label`.
    pub async fn new(label: &str) -> TestDb {
        let client = client().await;
        let name = unique_name(label);
        let db = client.database(&name);
        TestDb {
            client,
            db,
            dropped: false,
        }
    }

    /// The database this test owns.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The client, for sessions and transactions.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        self.db.name()
    }

    /// Drops the database now.
    pub async fn cleanup(mut self) {
        self.dropped = true;
        self.db.drop().await.expect("dropping the test database");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop runs inside the test's runtime, where we cannot block on it:
        // drop the database from a thread with a runtime of its own.
        let uri = mongodb_uri();
        let name = self.db.name().to_owned();
        let joined = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(client) = Client::with_uri_str(&uri).await {
                    let _ = client.database(&name).drop().await;
                }
            });
        })
        .join();
        let _ = joined;
    }
}

/// A database name unique across processes and calls, within MongoDB's 63-byte limit.
pub fn unique_name(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let clean: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(24)
        .collect();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("st_{clean}_{}_{n}_{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_fit() {
        let a = unique_name("a very long label with spaces and symbols !!!");
        let b = unique_name("a very long label with spaces and symbols !!!");
        assert_ne!(a, b);
        assert!(a.len() <= 63, "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }
}
