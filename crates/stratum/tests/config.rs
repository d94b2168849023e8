//! The configuration vocabulary end to end: every key reachable from its
//! variable, unknown and renamed names answered with the right spelling,
//! the effective-configuration report, a TOML round trip, and the generated
//! reference in docs/configuration.md.

use std::time::Duration;

use proptest::prelude::*;
use stratum::breaker::{OpenWait, SlidingWindow};
use stratum::cache::Policy;
use stratum::config::Backend;
use stratum::config::{RENAMED, Source, env_name, keys};
use stratum::{ConfigErrorKind, MongoUri, StratumConfig};

/// Values to try for a key, from its default's shape: the first that builds
/// and differs from the default is used.
fn candidates(default: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    match default {
        Value::Bool(b) => vec![(!b).to_string()],
        Value::Number(n) if n.is_u64() => {
            let n = n.as_u64().unwrap_or_default();
            vec![n + 1, n.saturating_sub(1), n * 2, n / 2]
                .into_iter()
                .map(|n| n.to_string())
                .collect()
        }
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or_default();
            vec![f / 2.0, f * 0.9, 0.5]
                .into_iter()
                .map(|f| format!("{f:?}"))
                .collect()
        }
        Value::String(s) => {
            let mut out = Vec::new();
            if let Ok(d) = humantime::parse_duration(s) {
                out.push(humantime::format_duration(d * 2).to_string());
                out.push("off".to_owned());
            }
            out.extend(
                [
                    "1s",
                    "lru",
                    "memory",
                    "frequency",
                    "127.0.0.2:1234",
                    &format!("{s}2"),
                ]
                .map(str::to_owned),
            );
            // A unit variant's alternative may carry data (`small_queue`).
            out.push("{ fixed = 10 }".to_owned());
            out
        }
        Value::Null => [
            "4",
            "0.5",
            "7",
            "mongodb://h:1",
            "http://127.0.0.1:9093/api/v2/alerts",
        ]
        .map(str::to_owned)
        .to_vec(),
        // A list of numbers (bucket bounds), or of tables (the burn-rate
        // windows and objectives), which can be emptied.
        Value::Array(_) => vec!["[0.5, 1.0]".to_owned(), "[]".to_owned()],
        Value::Object(_) => vec![
            "{ type = \"time_based\", duration = \"30s\" }".to_owned(),
            "{ type = \"exponential\", initial = \"1s\", multiplier = 2.0, max = \"1m\" }"
                .to_owned(),
            // The semantic tier's hit policy, embedder and index.
            "{ type = \"fixed\", similarity = 0.9 }".to_owned(),
            "{ type = \"http\", url = \"http://127.0.0.1:8080/v1/embeddings\", model = \"m\", dimensions = 8 }"
                .to_owned(),
            // Its index.
            "{ type = \"hnsw\", quantization = \"b1\", connectivity = 32, rescore = 64 }".to_owned(),
        ],
    }
}

/// Walks the generated key list (not a hand-written one): a field that no
/// variable reaches, or whose variable does not land in it, fails here.
#[test]
fn every_key_is_settable_from_its_variable() {
    assert!(keys().len() > 60, "the walk found {} keys", keys().len());
    for key in keys() {
        assert_eq!(key.env, env_name(&key.path));
        let default = stratum::config::ConfigReport::default_value(key);
        let mut landed = None;
        let mut refusals = Vec::new();
        for value in candidates(&key.default) {
            match StratumConfig::builder()
                .env_vars([(key.env.as_str(), value.as_str())])
                .build_explained()
            {
                Ok((_, report)) => {
                    let entry = report.entry(&key.path).unwrap();
                    assert_eq!(entry.source, Source::Env(key.env.clone()), "{}", key.path);
                    if entry.value != default {
                        landed = Some(entry.value.clone());
                        break;
                    }
                }
                Err(e) => refusals.push(e),
            }
        }
        if key.path == "cache.name" {
            // Refused by design (each cache is named after its collection),
            // but refused by validation of that very key: it was reached.
            assert!(landed.is_none());
            assert!(
                refusals.iter().any(|e| e.field() == "cache.name"),
                "{refusals:?}"
            );
            continue;
        }
        assert!(
            landed.is_some(),
            "{} could not be set through {}: {refusals:?}",
            key.path,
            key.env
        );
    }
}

#[test]
fn an_unknown_variable_names_the_closest() {
    for (wrong, closest) in [
        (
            "STRATUM_CACHE_MAX_CAPACTY",
            Some("STRATUM_CACHE_MAX_CAPACITY"),
        ),
        (
            "STRATUM_BREAKER_JITTER_SEEDS",
            Some("STRATUM_BREAKER_JITTER_SEED"),
        ),
        (
            "STRATUM_POOL_ADAPTIVE_ENABLE",
            Some("STRATUM_POOL_ADAPTIVE_ENABLED"),
        ),
        // A typo of an old name: the new spelling.
        ("STRATUM_CACHE_TLL", Some("STRATUM_CACHE_TIME_TO_LIVE")),
        ("STRATUM_NOTHING_LIKE_ANY_KEY", None),
    ] {
        let err = StratumConfig::builder()
            .env_vars([(wrong, "1")])
            .build()
            .unwrap_err();
        assert_eq!(err.field(), wrong);
        assert_eq!(
            err.kind(),
            &ConfigErrorKind::Unknown {
                suggestion: closest.map(str::to_owned)
            },
            "{err}"
        );
    }
    // Other tools' variables are not configuration.
    let config = StratumConfig::builder()
        .env_vars([
            ("STRATUM_TEST_MONGODB_URI", "mongodb://elsewhere"),
            ("STRATUM_BENCH_ROUNDS", "3"),
            ("STRATUM_BLESS", "1"),
            ("STRATUM_TRACES", "x"),
            ("STRATUM_CACHE_DIR", "/tmp"),
        ])
        .build()
        .unwrap();
    assert_eq!(config, StratumConfig::default());
}

#[test]
fn an_unknown_toml_key_names_the_closest_and_where() {
    let err = StratumConfig::builder()
        .toml("[cache]\nenabled = true\nmax_capacty = 3\n")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "cache.max_capacty");
    assert_eq!(
        err.kind(),
        &ConfigErrorKind::Unknown {
            suggestion: Some("cache.max_capacity".into())
        }
    );
    assert_eq!(err.location().map(|l| (l.line, l.column)), Some((3, 1)));
    assert_eq!(
        err.to_string(),
        "<toml>:3:1: unknown `cache.max_capacty`; did you mean `cache.max_capacity`?"
    );
    let err = StratumConfig::builder()
        .toml("[brekaer]\n")
        .build()
        .unwrap_err();
    assert_eq!(
        err.kind(),
        &ConfigErrorKind::Unknown {
            suggestion: Some("breaker".into())
        }
    );
}

#[test]
fn an_old_key_names_its_new_spelling() {
    for r in RENAMED {
        let (section, key) = r.from.split_once('.').unwrap();
        let err = StratumConfig::builder()
            .toml(format!("[{section}]\n{key} = 1\n"))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), r.from);
        assert_eq!(err.kind(), &ConfigErrorKind::Renamed { to: r.to.into() });
        assert!(err.to_string().contains(r.to), "{err}");
        assert!(
            stratum::config::keys().iter().any(|k| k.path == r.to),
            "{}",
            r.to
        );

        let err = StratumConfig::builder()
            .env_vars([(env_name(r.from), "1".to_owned())])
            .build()
            .unwrap_err();
        assert_eq!(err.field(), env_name(r.from));
        assert_eq!(err.kind(), &ConfigErrorKind::Renamed { to: env_name(r.to) });
    }
}

#[test]
fn the_report_names_every_source_and_masks_secrets() {
    let dir = std::env::temp_dir().join(format!("stratum-config-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stratum.toml");
    std::fs::write(
        &path,
        "[mongodb]\nuri = \"mongodb://app:hunter2@db\"\n[breaker]\njitter = 0.2\n",
    )
    .unwrap();
    let (config, report) = StratumConfig::builder()
        .file(&path)
        .env_vars([
            ("STRATUM_POOL_MAX_SIZE", "32"),
            ("STRATUM_BREAKER_JITTER", "0.3"),
        ])
        .configure(|c| c.cache.max_capacity = 77)
        .build_explained()
        .unwrap();
    assert_eq!(config.breaker.jitter, 0.3, "env beats file");
    let file = Source::File(path.display().to_string());
    let source = |key: &str| report.entry(key).unwrap().source.clone();
    assert_eq!(source("mongodb.uri"), file);
    assert_eq!(
        source("breaker.jitter"),
        Source::Env("STRATUM_BREAKER_JITTER".into())
    );
    assert_eq!(
        source("pool.max_size"),
        Source::Env("STRATUM_POOL_MAX_SIZE".into())
    );
    assert_eq!(source("cache.max_capacity"), Source::Code);
    assert_eq!(source("cache.time_to_live"), Source::Default);
    assert_eq!(report.entry("pool.max_size").unwrap().value, "32");
    let shown = report.to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("mongodb://app:****@db"), "{shown}");
    assert!(shown.contains("# env STRATUM_POOL_MAX_SIZE"), "{shown}");
    assert_eq!(shown.lines().count(), keys().len());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn duration() -> impl Strategy<Value = Duration> {
    (1u64..=86_400_000).prop_map(Duration::from_millis)
}

fn optional_duration() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![Just(None), duration().prop_map(Some)]
}

prop_compose! {
    /// Configurations that differ from the default in every kind of value:
    /// durations, optional ones switched off, choices among variants,
    /// floats, integers, booleans, strings, addresses, a URI.
    fn any_config()(
        uri in proptest::option::of("[a-z]{1,8}(:[0-9]{2,5})?"),
        database in "[a-z_]{1,20}",
        operation_timeout in duration(),
        backend in prop_oneof![Just(Backend::Auto), Just(Backend::Memory)],
        cache_on in any::<bool>(),
        ttl in optional_duration(),
        tti in optional_duration(),
        max_stale in optional_duration(),
        lru in any::<bool>(),
        shards in proptest::option::of(0u32..6),
        capacity in 64u64..1 << 40,
        threshold in 0.001f64..=100.0,
        window in prop_oneof![
            (1u32..1000).prop_map(|size| SlidingWindow::CountBased { size }),
            (1u64..3600).prop_map(|s| SlidingWindow::TimeBased { duration: Duration::from_secs(s) }),
        ],
        wait in prop_oneof![
            duration().prop_map(|wait| OpenWait::Constant { wait }),
            (duration(), 1.0f64..8.0).prop_map(|(initial, multiplier)| OpenWait::Exponential {
                initial, multiplier, max: initial * 4,
            }),
        ],
        // TOML integers are i64: a seed above i64::MAX has no spelling.
        seed in proptest::option::of(0..=i64::MAX as u64),
        max_size in 1usize..10_000,
        idle in optional_duration(),
        adaptive in any::<bool>(),
        port in 1u16..,
        buckets in proptest::collection::btree_set(1u32..100_000, 1..8),
    ) -> StratumConfig {
        let mut c = StratumConfig::default();
        c.mongodb.uri = uri.and_then(|host| MongoUri::parse(&format!("mongodb://{host}")).ok());
        c.mongodb.database = database;
        c.mongodb.operation_timeout = operation_timeout;
        c.store.backend = backend;
        c.cache.enabled = cache_on;
        c.cache.time_to_live = ttl;
        c.cache.time_to_idle = tti;
        c.cache.max_stale = max_stale;
        c.cache.policy = if lru { Policy::Lru } else { Policy::S3Fifo };
        c.cache.shards = shards.map(|s| 1 << s);
        c.cache.max_capacity = capacity;
        c.breaker.failure_rate_threshold = threshold;
        c.breaker.sliding_window = window;
        c.breaker.wait_in_open = wait;
        c.breaker.jitter_seed = seed;
        c.pool.max_size = max_size;
        c.pool.idle_timeout = idle;
        c.pool.adaptive.enabled = adaptive;
        c.monitor.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        c.monitor.seconds_buckets = buckets.into_iter().map(|b| f64::from(b) / 1000.0).collect();
        c
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A configuration written as TOML reads back equal: every value has a
    /// spelling (an optional duration that is off is `"off"`), and a key
    /// left out of a section keeps Stratum's default, not the layer's.
    #[test]
    fn toml_round_trips(config in any_config()) {
        let text = toml::to_string(&config).unwrap();
        let back = StratumConfig::from_toml_str(&text);
        prop_assert_eq!(back.as_ref().ok(), Some(&config), "{}\n{:?}", text, back);
    }
}

/// The generated part of docs/configuration.md: one table per section.
fn reference() -> String {
    let layer_defaults = serde_json::json!({
        "cache": stratum::config::Section::<stratum::cache::CacheConfig>::default(),
        "breaker": stratum::config::Section::<stratum::breaker::BreakerConfig>::default(),
        "pool": stratum::config::Section::<stratum::pool::PoolConfig>::default(),
        "monitor": stratum::config::Section::<stratum::monitor::MonitorConfig>::default(),
    });
    let layer_of = |section: &str| match section {
        "mongodb" => "`stratum_store::MongoConfig`",
        "store" => "`stratum_store::StoreConfig`",
        "cache" => "`stratum_cache::CacheConfig`",
        "breaker" => "`stratum_breaker::BreakerConfig`",
        "pool" => "`stratum_pool::PoolConfig`",
        "monitor" => "`stratum_monitor::MonitorConfig`",
        "llm" => {
            "`stratum::config::LlmConfig`: `[llm.semantic]` is `stratum_semantic::TierConfig` \
             (feature `semantic`), off by default"
        }
        _ => "",
    };
    let mut out = String::new();
    let mut current = "";
    for key in keys() {
        let section = key.path.split('.').next().unwrap_or_default();
        if section != current {
            current = section;
            out.push_str(&format!(
                "\n### `[{section}]`\n\nThe fields of {}; their rustdoc says what each does.\n\n\
                 | key | variable | default |\n|---|---|---|\n",
                layer_of(section)
            ));
        }
        let default = stratum::config::ConfigReport::default_value(key);
        let layer = key
            .path
            .split('.')
            .try_fold(&layer_defaults, |v, part| v.get(part))
            .map(stratum::config::ConfigReport::render);
        let note = match layer {
            Some(layer) if layer != default => format!(" (Stratum's; the layer's own: `{layer}`)"),
            _ if key.path == "cache.name" => {
                " (set by Stratum: each repository's cache is named after its collection; \
                 refused if set)"
                    .to_owned()
            }
            _ => String::new(),
        };
        let name = key.path.split_once('.').map_or("", |(_, k)| k);
        out.push_str(&format!(
            "| `{name}` | `{}` | `{}`{note} |\n",
            key.env,
            default.replace('|', "\\|")
        ));
    }
    out
}

const BEGIN: &str =
    "<!-- BEGIN GENERATED: STRATUM_BLESS=1 cargo test -p stratum --test config -->\n";
const END: &str = "<!-- END GENERATED -->";

/// docs/configuration.md lists every key, its variable and its default as
/// the code has them; `STRATUM_BLESS=1` rewrites the list.
#[test]
fn the_reference_in_the_docs_is_generated_from_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let start = page.find(BEGIN).expect("the begin marker") + BEGIN.len();
    let end = page.find(END).expect("the end marker");
    let generated = reference();
    if std::env::var_os("STRATUM_BLESS").is_some() {
        let page = format!("{}{generated}{}", &page[..start], &page[end..]);
        std::fs::write(&path, page).unwrap();
        return;
    }
    assert!(
        page[start..end] == generated,
        "docs/configuration.md is out of date: run STRATUM_BLESS=1 cargo test -p stratum --test config"
    );
}
