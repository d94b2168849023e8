//! A password planted in the MongoDB URI must appear nowhere: not in `Debug`
//! or `Display` output, not in error messages, not in log lines. Each test
//! captures what the code renders and searches it.

// Test helpers outside #[test] functions unwrap too: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use stratum::{ConfigErrorKind, MongoUri, StratumConfig};
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
    // The effective configuration (`stratum config`) shows the URI masked,
    // from the file and from the environment alike. (Here, under this
    // test's subscriber: a successful build elsewhere in this binary would
    // race it for the log callsite's registration.)
    let with_options =
        format!("mongodb://app:{PASSWORD}@db/?authMechanismProperties=TOKEN:{PASSWORD}");
    for builder in [
        StratumConfig::builder().toml(format!("[mongodb]\nuri = \"{with_options}\"\n")),
        StratumConfig::builder().env_vars([("STRATUM_MONGODB_URI", with_options.as_str())]),
    ] {
        let (config, report) = builder.build_explained().unwrap();
        assert!(config.mongodb.uri.is_some());
        assert_clean(
            "the effective configuration",
            &format!("{report} {report:?}"),
        );
        let serialized = toml::to_string(&config).unwrap();
        assert_clean("a serialized configuration", &serialized);
    }
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
    assert!(matches!(err.kind(), ConfigErrorKind::Invalid { .. }));
    assert_clean("an env error", &format!("{err} {err:?}"));
    let err = MongoUri::parse(&format!("mongodb://a:{PASSWORD}@")).unwrap_err();
    assert_clean("a URI error", &format!("{err} {err:?}"));
}

/// Every URI option of the MongoDB URI options specification that carries
/// a secret (and a legacy spelling), each with the options it needs, its
/// planted value sharing the stem of [`PASSWORD`].
const SECRET_OPTIONS: &[(&str, &str)] = &[
    (
        "authMechanism=MONGODB-AWS&authMechanismProperties",
        "AWS_SESSION_TOKEN:Pl4nted-token",
    ),
    ("tls=true&tlsCertificateKeyFilePassword", "Pl4nted-pem"),
    (
        "proxyHost=127.0.0.1&proxyUsername=p&proxyPassword",
        "Pl4nted-proxy",
    ),
    ("tls=true&sslPEMKeyPassword", "Pl4nted-legacy"),
];

/// Fails when `text` holds any planted secret: the shared stem in any case,
/// or a value's bytes as `Vec<u8>`'s `Debug` writes them (the driver keeps
/// `tlsCertificateKeyFilePassword` as bytes).
fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.to_ascii_lowercase().contains("pl4nted"),
        "{what} shows a secret: {text}"
    );
    for (_, value) in SECRET_OPTIONS {
        let bytes = format!("{:?}", value.as_bytes());
        assert!(
            !text.contains(bytes.trim_matches(['[', ']'])),
            "{what} shows a secret's bytes: {text}"
        );
    }
}

/// Each secret option in a URI, through everything that renders it: the
/// config's `Debug`, the URI's `Display`, the driver options the store
/// builds (and their `Debug`, which a wiring crate may log), the store, the
/// whole stack with its pool, their errors and the log lines (the driver
/// parts with the `mongodb` feature).
#[tokio::test(flavor = "current_thread")]
async fn every_secret_uri_option_is_hidden() {
    use std::time::Duration;

    let (logs, _guard) = capture();
    let mut shown = Vec::new();
    for (option, value) in SECRET_OPTIONS {
        let uri =
            format!("mongodb://app:{PASSWORD}@127.0.0.1:1/?directConnection=true&{option}={value}");
        let config = StratumConfig::builder()
            .env_vars([("STRATUM_MONGODB_URI", uri.as_str())])
            .configure(|c| {
                c.mongodb.server_selection_timeout = Duration::from_millis(200);
                c.mongodb.connect_timeout = Duration::from_millis(200);
            })
            .build()
            .unwrap();
        let parsed = config.mongodb.uri.clone().unwrap();
        assert!(parsed.expose_secret().contains(value), "the driver gets it");
        shown.push(format!("{config:?} {config:#?} {parsed} {parsed:?}"));
        #[cfg(feature = "mongodb")]
        driver_renderings(config, &mut shown).await;
    }
    shown.push(logs.text());
    for text in &shown {
        assert_no_secret("a rendering", text);
        assert_clean("a rendering", text);
    }
    // The searched text is the real thing: every option was rendered, masked.
    let all = shown.concat();
    for (option, _) in SECRET_OPTIONS {
        let name = option.rsplit('&').next().unwrap();
        assert!(all.contains(&format!("{name}=****")), "{name}: {all}");
    }
}

/// What the driver side renders for `config`: the client options, the
/// store, the whole stack, and their errors.
#[cfg(feature = "mongodb")]
async fn driver_renderings(config: StratumConfig, shown: &mut Vec<String>) {
    use stratum::{MongoStore, Store, Stratum};

    match MongoStore::client_options(&config.mongodb).await {
        Ok(options) => shown.push(format!("{options:?} {options:#?}")),
        Err(e) => shown.push(format!("{e} {e:?}")),
    }
    match MongoStore::connect(&config.mongodb, &config.store).await {
        Ok(store) => {
            shown.push(format!("{store:?}"));
            if let Err(e) = store.ping().await {
                shown.push(format!("{e} {e:?}"));
            }
        }
        Err(e) => shown.push(format!("{e} {e:?}")),
    }
    match Stratum::builder(config).open().await {
        Ok(stratum) => {
            shown.push(format!("{stratum:?} {stratum:#?}"));
            if let Err(e) = stratum.store().ping().await {
                shown.push(format!("{e} {e:?}"));
            }
        }
        Err(e) => shown.push(format!("{e} {e:?}")),
    }
}

/// The whole stack (store, breaker, cache, pool, health checks, metrics
/// exporter) with a planted password, failing against a refused login and a
/// dead port. Everything it renders is captured and searched.
#[cfg(all(feature = "mongodb", feature = "monitor"))]
#[test]
fn the_whole_stack_hides_the_password() {
    use std::time::Duration;

    use stratum::Stratum;
    use stratum::bson::oid::ObjectId;
    use stratum::models::Conversation;
    use stratum::monitor::{CheckKind, HealthRegistry};
    use stratum::{Filter, Query, Store};
    use stratum_tests::planted::{PLANTED_ENCODED, assert_no_planted, planted_uris};

    let (logs, _guard) = capture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut shown: Vec<(String, String)> = Vec::new();
    let mut failures = 0;
    // Each stack's own monitor holds its series: rendered per stack.
    let mut rendered = String::new();
    {
        rt.block_on(async {
            for uri in planted_uris() {
                let config = StratumConfig::builder()
                    .env_vars([("STRATUM_MONGODB_URI", uri.as_str())])
                    .configure(|c| {
                        c.mongodb.server_selection_timeout = Duration::from_millis(500);
                        c.mongodb.connect_timeout = Duration::from_millis(500);
                        c.mongodb.operation_timeout = Duration::from_secs(3);
                        c.monitor.listen = "127.0.0.1:0".parse().unwrap();
                    })
                    .build()
                    .unwrap();
                assert!(
                    config
                        .mongodb
                        .uri
                        .as_ref()
                        .unwrap()
                        .expose_secret()
                        .contains(PLANTED_ENCODED)
                );
                shown.push(("config".into(), format!("{config:?} {config:#?}")));
                let stratum = match Stratum::builder(config).open().await {
                    Ok(stratum) => stratum,
                    Err(e) => {
                        shown.push(("open error".into(), format!("{e} {e:?}")));
                        failures += 1;
                        continue;
                    }
                };
                shown.push(("handle".into(), format!("{stratum:?} {stratum:#?}")));
                // A registry per stack: check names are unique within one.
                let health = HealthRegistry::new(Duration::from_secs(1));
                stratum.register_health(&health).unwrap();
                let conversations = stratum.repository::<Conversation>().unwrap();
                for _ in 0..3 {
                    let err = conversations.get(&ObjectId::new()).await.unwrap_err();
                    shown.push(("get error".into(), format!("{err} {err:?}")));
                    failures += 1;
                }
                let fresh = Conversation::new("gpt-4o", stratum::bson::DateTime::now());
                let err = conversations.insert(&fresh).await.unwrap_err();
                shown.push(("insert error".into(), format!("{err} {err:?}")));
                let err = conversations
                    .find(&Query::new(Filter::eq("model", "gpt-4o")))
                    .await
                    .unwrap_err();
                shown.push(("find error".into(), format!("{err} {err:?}")));
                let err = stratum.store().ping().await.unwrap_err();
                shown.push(("ping error".into(), format!("{err} {err:?}")));
                failures += 3;
                let report = health.report(CheckKind::Readiness).await;
                shown.push(("readiness".into(), report.to_json()));
                shown.push(("handle after".into(), format!("{stratum:?}")));
                let ready =
                    stratum_tests::http::get(stratum.metrics_addr().unwrap(), "/health/ready")
                        .await;
                shown.push(("/health/ready".into(), ready.body));
                rendered.push_str(&stratum.monitor().unwrap().render());
                stratum.shutdown().await;
            }
        });
    }
    assert!(
        rendered.contains("stratum_store_operations_total"),
        "the failures were recorded: {rendered}"
    );
    shown.push(("/metrics".into(), rendered));
    let logged = logs.text();
    assert!(!logged.is_empty(), "the failures were logged");
    shown.push(("logs".into(), logged));
    assert!(
        failures >= 2,
        "both servers failed the operations ({failures})"
    );
    for (what, text) in &shown {
        assert_no_planted(what, text);
    }
    // The searched text is the real thing: the login was refused, the dead
    // port was unreachable, and the URI was rendered (masked).
    let all: String = shown.iter().map(|(_, t)| t.as_str()).collect();
    assert!(all.contains("Authentication failed"), "{all}");
    assert!(all.contains("database unavailable"), "{all}");
    assert!(all.contains("admin:****@127.0.0.1"), "{all}");
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
                        "group",
                        "ensure_index",
                        "list_indexes",
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
