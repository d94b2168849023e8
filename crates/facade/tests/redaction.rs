//! A password planted in the MongoDB URI must appear nowhere: not in `Debug`
//! or `Display` output, not in error messages, not in log lines. Each test
//! captures what the code renders and searches it.

// Test helpers outside #[test] functions unwrap too: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use stratum::{ConfigError, MongoUri, StratumConfig};
use tracing_subscriber::fmt::MakeWriter;

const PASSWORD: &str = "Pl4nted-s3cret";

/// Everything a `tracing` subscriber writes, kept for searching.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A subscriber that records every event at every level, for this thread.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (captured, guard)
}

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "{what} shows the password: {text}"
    );
}

#[test]
fn config_debug_and_logs_hide_the_password() {
    let (logs, _guard) = capture();
    let uri = format!("mongodb://app:{PASSWORD}@db.internal:27017/?replicaSet=rs0");
    let config = StratumConfig::builder()
        .env_vars([("STRATUM_MONGODB_URI", uri.as_str())])
        .build()
        .unwrap();
    let parsed = config.mongodb.uri.clone().unwrap();
    assert!(
        parsed.expose_secret().contains(PASSWORD),
        "the driver still gets it"
    );
    assert_clean("Debug of the config", &format!("{config:?}"));
    assert_clean("pretty Debug of the config", &format!("{config:#?}"));
    assert_clean("Display of the URI", &parsed.to_string());
    let builder = StratumConfig::builder()
        .toml(format!("[mongodb]\nuri = \"{uri}\"\n"))
        .env();
    assert_clean("Debug of the builder", &format!("{builder:?}"));
    let logged = logs.text();
    assert!(
        logged.contains("configuration loaded"),
        "the load was logged: {logged}"
    );
    assert!(logged.contains("app:****@db.internal"), "{logged}");
    assert_clean("log output", &logged);
}

#[test]
fn config_errors_hide_the_password() {
    let uri = format!("mongodb://app:{PASSWORD}@db");
    let cases = [
        // Unterminated string: the parser's snippet would show the line.
        format!("[mongodb]\nuri = \"{uri}\n"),
        // A URI that fails our checks.
        format!("[mongodb]\nuri = \"{uri}/x@y\"\n"),
        format!("[mongodb]\nuri = \"postgres://app:{PASSWORD}@db\"\n"),
        // A URI in the wrong field: serde quotes the value.
        format!("[cache]\nenabled = \"{uri}\"\n"),
        format!("[mongodb]\ndatabase = 5\nuri = \"{uri}\"\napp_name = [\"{uri}\"]\n"),
    ];
    for text in cases {
        let err = StratumConfig::builder()
            .toml(text.as_str())
            .build()
            .unwrap_err();
        assert_clean("a config error", &err.to_string());
        assert_clean("a config error's Debug", &format!("{err:?}"));
    }
    let err = StratumConfig::builder()
        .env_vars([("STRATUM_MONGODB_URI", format!("mongodb://a:{PASSWORD}@h/@"))])
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { .. }));
    assert_clean("an env error", &format!("{err} {err:?}"));
    let err = MongoUri::parse(&format!("mongodb://a:{PASSWORD}@")).unwrap_err();
    assert_clean("a URI error", &format!("{err} {err:?}"));
}

#[cfg(feature = "mongodb")]
mod mongo {
    use std::time::Duration;

    use stratum::bson::Bson;
    use stratum::{MongoStore, Store};

    use super::*;

    /// Connects with a planted password, runs operations that fail, and
    /// searches the errors and the log output.
    async fn fail_and_search(uri: String) {
        let (logs, _guard) = capture();
        let config = StratumConfig::builder()
            .mongodb_uri(uri)
            .configure(|c| {
                c.mongodb.server_selection_timeout = Duration::from_millis(300);
                c.mongodb.connect_timeout = Duration::from_millis(300);
                c.mongodb.operation_timeout = Duration::from_secs(5);
            })
            .build()
            .unwrap();
        let store = MongoStore::connect(&config.mongodb, &config.store)
            .await
            .unwrap();
        assert_clean("Debug of the store", &format!("{store:?}"));
        let err = store.ping().await.unwrap_err();
        assert!(err.is_breaker_failure(), "{err:?}");
        assert_clean("a ping error", &format!("{err} {err:?}"));
        let err = store.get("c", &Bson::Int32(1)).await.unwrap_err();
        assert_clean("a get error", &format!("{err} {err:?}"));
        assert_clean("log output", &logs.text());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unreachable_server_hides_the_password() {
        // Port 1 on loopback: nothing listens there, the connection is refused.
        fail_and_search(format!(
            "mongodb://app:{PASSWORD}@127.0.0.1:1/?directConnection=true"
        ))
        .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_refused_login_hides_the_password() {
        // The test server with credentials it does not know.
        let base = stratum_tests::mongodb_uri();
        let uri = base.replacen("mongodb://", &format!("mongodb://app:{PASSWORD}@"), 1);
        let (logs, _guard) = capture();
        let config = StratumConfig::builder().mongodb_uri(uri).build().unwrap();
        let store = MongoStore::connect(&config.mongodb, &config.store)
            .await
            .unwrap();
        // Whether the server refuses the login or ignores it, nothing may show it.
        let outcome = store.ping().await;
        assert_clean("the ping outcome", &format!("{outcome:?}"));
        if let Err(err) = outcome {
            assert_clean("a login error", &err.to_string());
        }
        assert_clean("log output", &logs.text());
    }

    /// Every store operation reports a counter and a latency histogram with
    /// fixed label values: no URI, no collection, no id, no password.
    #[test]
    fn metrics_have_bounded_labels_and_no_secrets() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            rt.block_on(async {
                let uri = format!("mongodb://app:{PASSWORD}@127.0.0.1:1/?directConnection=true");
                let config = StratumConfig::builder()
                    .mongodb_uri(uri)
                    .configure(|c| c.mongodb.server_selection_timeout = Duration::from_millis(200))
                    .build()
                    .unwrap();
                let store = MongoStore::connect(&config.mongodb, &config.store)
                    .await
                    .unwrap();
                let _ = store
                    .get("users-of-tenant-42", &Bson::String(PASSWORD.into()))
                    .await;
                let _ = store.ping().await;
            });
        });
        let snapshot = snapshotter.snapshot().into_vec();
        let mut names = Vec::new();
        for (key, _, _, _) in &snapshot {
            let key = key.key();
            names.push(key.name().to_owned());
            for label in key.labels() {
                let allowed: &[&str] = match label.key() {
                    "backend" => &["mongodb"],
                    "operation" => &[
                        "get",
                        "find",
                        "insert",
                        "update",
                        "upsert",
                        "delete",
                        "count",
                        "ensure_index",
                        "ping",
                        "hello",
                        "build_info",
                    ],
                    "outcome" => &[
                        "ok",
                        "not_found",
                        "duplicate_key",
                        "invalid_field",
                        "validation",
                        "timeout",
                        "unavailable",
                        "network",
                        "backend",
                    ],
                    other => panic!("unexpected label {other}"),
                };
                assert!(
                    allowed.contains(&label.value()),
                    "{}={}",
                    label.key(),
                    label.value()
                );
                assert_clean("a label", label.value());
            }
        }
        assert!(
            names.iter().any(|n| n == "stratum_store_operations_total"),
            "{names:?}"
        );
        assert!(
            names
                .iter()
                .any(|n| n == "stratum_store_operation_duration_seconds"),
            "{names:?}"
        );
        let unavailable = snapshot.iter().any(|(key, _, _, _)| {
            key.key()
                .labels()
                .any(|l| l.key() == "outcome" && l.value() == "unavailable")
        });
        assert!(unavailable, "the failures were counted by kind");
    }
}
