//! The metric catalogue (`docs/metrics.md`) is the single source of truth:
//! this test parses its table, enforces the naming and bounded-label rules,
//! checks that every metric this crate writes is catalogued, and generates
//! the Grafana dashboard (`docs/grafana-dashboard.json`) from it, failing when
//! the committed dashboard has drifted. `STRATUM_BLESS=1` rewrites it.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stratum_monitor::{AlertRule, CheckKind, Figure, Health, Monitor, MonitorConfig};

#[derive(Debug, Clone)]
struct Row {
    name: String,
    kind: String,
    unit: String,
    labels: Vec<String>,
    layer: String,
    description: String,
}

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

fn unquote(cell: &str) -> String {
    cell.trim().trim_matches('`').to_owned()
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split('|')
        .map(|c| c.trim().to_owned())
        .collect()
}

/// Rows of the catalogue table: lines starting with "| `stratum_" or, for
/// the standard process collector's names, "| `process_".
fn catalogue() -> Vec<Row> {
    let text = std::fs::read_to_string(docs().join("metrics.md")).unwrap();
    text.lines()
        .filter(|l| l.starts_with("| `stratum_") || l.starts_with("| `process_"))
        .map(|l| {
            let c = cells(l);
            assert_eq!(c.len(), 6, "catalogue row needs 6 columns: {l}");
            let labels = if c[3] == "-" {
                vec![]
            } else {
                c[3].split(',').map(unquote).collect()
            };
            Row {
                name: unquote(&c[0]),
                kind: c[1].clone(),
                unit: c[2].clone(),
                labels,
                layer: c[4].clone(),
                description: c[5].clone(),
            }
        })
        .collect()
}

/// Label names documented in the label table (rows "| `x` |" after "## Labels").
fn documented_labels() -> BTreeSet<String> {
    let text = std::fs::read_to_string(docs().join("metrics.md")).unwrap();
    let section = text.split("## Labels").nth(1).expect("a ## Labels section");
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| unquote(&cells(l)[0]))
        .collect()
}

#[test]
fn catalogue_follows_the_naming_and_label_rules() {
    let rows = catalogue();
    assert!(
        rows.len() >= 30,
        "catalogue looks truncated: {} rows",
        rows.len()
    );
    let labels = documented_labels();
    // Labels that would carry ids or user input: never allowed.
    let forbidden = [
        "id",
        "user",
        "user_id",
        "tenant",
        "key",
        "query",
        "uri",
        "url",
        "session",
        "request_id",
        "document",
        "collection_id",
        "conversation",
    ];
    let mut names = BTreeSet::new();
    for row in &rows {
        assert!(names.insert(row.name.clone()), "duplicate {}", row.name);
        // The prefixes each layer may use (see the naming rule in docs/metrics.md).
        let prefixes: Vec<String> = match row.layer.as_str() {
            "monitor" => vec!["stratum_monitor_".into(), "process_".into()],
            "pool" => vec!["stratum_pool_".into(), "stratum_mongo_".into()],
            "facade" => vec![
                "stratum_store_".into(),
                "stratum_repository_".into(),
                "stratum_llm_".into(),
                "stratum_change_stream_".into(),
            ],
            layer => vec![format!("stratum_{layer}_")],
        };
        let layer_prefix = prefixes.iter().any(|p| row.name.starts_with(p.as_str()));
        assert!(layer_prefix, "{} does not start with its layer", row.name);
        assert!(
            row.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{} is not snake case",
            row.name
        );
        match row.kind.as_str() {
            "counter" => assert!(
                row.name.ends_with("_total"),
                "counter {} must end in _total",
                row.name
            ),
            "histogram" => {
                assert!(
                    row.name.ends_with("_seconds"),
                    "histogram {} must be in seconds",
                    row.name
                );
                assert_eq!(row.unit, "seconds", "{}", row.name);
            }
            "gauge" => assert!(
                !row.name.ends_with("_total"),
                "gauge {} must not end in _total",
                row.name
            ),
            other => panic!("{}: unknown type {other}", row.name),
        }
        if row.name.ends_with("_bytes") {
            assert_eq!(row.unit, "bytes", "{}", row.name);
        }
        // Fractions are 0..1 ratios (Prometheus's unit), never percent.
        assert_ne!(row.unit, "percent", "{}: use a 0..1 ratio", row.name);
        for label in &row.labels {
            assert!(
                !forbidden.contains(&label.as_str()),
                "{}: unbounded label {label}",
                row.name
            );
            assert!(
                labels.contains(label),
                "{}: label {label} not in the label table",
                row.name
            );
        }
        assert!(
            !row.description.is_empty(),
            "{} has no description",
            row.name
        );
    }
}

/// Every `stratum_*` series the monitor itself writes is catalogued, with
/// the right type and labels.
#[test]
fn every_metric_the_monitor_writes_is_catalogued() {
    let rows = catalogue();
    let clock = stratum_monitor::ManualClock::new();
    let config = MonitorConfig::builder()
        .percentiles(stratum_monitor::PercentileConfig {
            max_operations: 1,
            ..Default::default()
        })
        .alerts(stratum_monitor::AlertsConfig {
            // A webhook, so its delivery counters are registered too.
            webhook: stratum_monitor::WebhookConfig {
                url: Some("http://127.0.0.1:9/api/v2/alerts".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .build()
        .unwrap();
    let monitor = Monitor::builder(config)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    monitor.sample_resources();
    monitor
        .health()
        .register_fn("db", CheckKind::Readiness, Health::up)
        .unwrap();
    let report = futures_report(&monitor);
    monitor.in_scope(|| report.export());
    monitor
        .alerts()
        .add(
            AlertRule::above("always", Figure::custom(|| Some(1.0)), 0.5)
                .build()
                .unwrap(),
        )
        .unwrap();
    // The trend rules: the burn rates of the default objective, and a
    // regression detector past a short warm-up.
    for rule in monitor.slo().rules().unwrap() {
        monitor.alerts().add(rule).unwrap();
    }
    let detector = Arc::new(
        stratum_monitor::RegressionDetector::new(stratum_monitor::RegressionConfig {
            sample_every: Duration::from_secs(1),
            warmup: Duration::from_secs(2),
            ..Default::default()
        })
        .unwrap(),
    );
    let rule = detector
        .rule(
            "regression",
            "store.call",
            || Some(Duration::from_millis(10)),
            Duration::from_secs(60),
            Arc::new(clock.clone()),
        )
        .unwrap();
    monitor.alerts().add(rule).unwrap();
    monitor.evaluate_alerts();
    clock.advance(Duration::from_secs(3));
    monitor.evaluate_alerts();
    monitor.in_scope(|| {
        monitor.latency().record("a", Duration::from_millis(1));
        monitor.latency().record("b", Duration::from_millis(1)); // over the cap: dropped
    });
    let scrape =
        prometheus_parse::Scrape::parse(monitor.render().lines().map(|l| Ok(l.to_owned())))
            .unwrap();
    let mut seen = BTreeSet::new();
    for sample in &scrape.samples {
        let row = rows
            .iter()
            .find(|r| r.name == sample.metric)
            .unwrap_or_else(|| panic!("{} is written but not catalogued", sample.metric));
        let kind = match sample.value {
            prometheus_parse::Value::Counter(_) => "counter",
            prometheus_parse::Value::Gauge(_) => "gauge",
            prometheus_parse::Value::Histogram(_) => "histogram",
            _ => "other",
        };
        assert_eq!(kind, row.kind, "{}", row.name);
        let mut labels: Vec<String> = sample.labels.keys().cloned().collect();
        labels.sort();
        let mut want = row.labels.clone();
        want.sort();
        assert_eq!(labels, want, "{}", row.name);
        seen.insert(row.name.clone());
    }
    let monitor_rows: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.layer == "monitor")
        .map(|r| r.name.clone())
        .collect();
    if cfg!(target_os = "linux") {
        assert_eq!(
            seen, monitor_rows,
            "catalogued monitor metrics that were never written"
        );
    }
}

fn futures_report(monitor: &Monitor) -> stratum_monitor::HealthReport {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(monitor.health().report(CheckKind::Readiness))
}

/// The dashboard generated from the catalogue: a row per layer, a panel per
/// metric (rate for counters, p50/p99 for histograms, value for gauges).
fn dashboard(rows: &[Row]) -> Value {
    let mut panels = Vec::new();
    let mut id = 1;
    let mut y = 0;
    let mut layers: Vec<&str> = Vec::new();
    for row in rows {
        if !layers.contains(&row.layer.as_str()) {
            layers.push(&row.layer);
        }
    }
    for layer in layers {
        panels.push(json!({
            "id": id, "type": "row", "title": layer, "collapsed": false,
            "gridPos": { "h": 1, "w": 24, "x": 0, "y": y },
            "panels": []
        }));
        id += 1;
        y += 1;
        for (i, row) in rows.iter().filter(|r| r.layer == layer).enumerate() {
            let by = row.labels.join(", ");
            let targets = if row.kind == "histogram" {
                let by = if by.is_empty() {
                    "le".to_owned()
                } else {
                    format!("le, {by}")
                };
                [0.5, 0.99]
                    .iter()
                    .zip(["A", "B"])
                    .map(|(q, ref_id)| {
                        json!({
                            "refId": ref_id,
                            "expr": format!("histogram_quantile({q}, sum by ({by}) (rate({}_bucket[$__rate_interval])))", row.name),
                            "legendFormat": format!("p{} {}", q * 100.0, legend(&row.labels)),
                        })
                    })
                    .collect::<Vec<_>>()
            } else {
                let inner = if row.name.ends_with("_total") {
                    format!("rate({}[$__rate_interval])", row.name)
                } else {
                    row.name.clone()
                };
                let expr = if by.is_empty() {
                    inner
                } else {
                    format!("sum by ({by}) ({inner})")
                };
                vec![json!({ "refId": "A", "expr": expr, "legendFormat": legend(&row.labels) })]
            };
            let unit = match (row.kind.as_str(), row.unit.as_str()) {
                ("histogram", _) => "s",
                (_, "bytes") => "bytes",
                (_, "ratio") => "percentunit",
                (_, "seconds") if row.name.ends_with("_total") => "percentunit", // CPU seconds per second
                _ if row.name.ends_with("_total") => "ops",
                _ => "short",
            };
            panels.push(json!({
                "id": id,
                "type": "timeseries",
                "title": row.name,
                "description": row.description,
                "datasource": { "type": "prometheus", "uid": "${datasource}" },
                "gridPos": { "h": 8, "w": 12, "x": (i % 2) * 12, "y": y + (i / 2) * 8 },
                "fieldConfig": { "defaults": { "unit": unit }, "overrides": [] },
                "options": { "legend": { "displayMode": "list", "placement": "bottom" } },
                "targets": targets,
            }));
            id += 1;
        }
        let count = rows.iter().filter(|r| r.layer == layer).count();
        y += count.div_ceil(2) * 8;
    }
    json!({
        "title": "Stratum",
        "uid": "stratum-overview",
        "description": "Generated from docs/metrics.md by crates/monitor/tests/catalogue.rs; do not edit by hand.",
        "tags": ["stratum"],
        "schemaVersion": 39,
        "version": 1,
        "editable": true,
        "refresh": "30s",
        "time": { "from": "now-1h", "to": "now" },
        "templating": { "list": [{
            "name": "datasource", "label": "Prometheus", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0
        }]},
        "panels": panels,
    })
}

/// Rebuilds every object with its keys in sorted order. Whether `serde_json`
/// keeps insertion order depends on its `preserve_order` feature, which another
/// crate in the workspace build may switch on; sorted keys make the committed
/// file the same either way.
fn sorted_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sorted_keys(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted_keys).collect()),
        other => other,
    }
}

fn legend(labels: &[String]) -> String {
    labels
        .iter()
        .map(|l| format!("{{{{{l}}}}}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn grafana_dashboard_is_generated_from_the_catalogue() {
    let rows = catalogue();
    let generated = serde_json::to_string_pretty(&sorted_keys(dashboard(&rows))).unwrap() + "\n";
    let path = docs().join("grafana-dashboard.json");
    if std::env::var("STRATUM_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/grafana-dashboard.json is out of date with docs/metrics.md; run \
         `STRATUM_BLESS=1 cargo test -p stratum-monitor --test catalogue`"
    );
    // Every catalogued metric has exactly one panel.
    let dash: Value = serde_json::from_str(&committed).unwrap();
    let titles: BTreeSet<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "timeseries")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    let names: BTreeSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(titles, names);
}

/// Every `"stratum_…"` (and standard `"process_…"`) metric-name literal in
/// the workspace's crate sources.
fn metric_names_in_sources() -> BTreeSet<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let crates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(&crates).unwrap().flatten() {
        walk(&krate.path().join("src"), &mut files);
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let literals = text
            .match_indices("\"stratum_")
            .chain(text.match_indices("\"process_"));
        for (i, _) in literals {
            let rest = &text[i + 1..];
            let end = rest.find('"').unwrap_or(rest.len());
            let name = &rest[..end];
            // A metric name is `stratum_<layer>_<what>`: at least three parts.
            // Shorter literals (a database named `stratum_demo`) are not metrics.
            let is_metric_shaped = name.split('_').filter(|p| !p.is_empty()).count() >= 3;
            if is_metric_shaped
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The catalogue cannot drift from the code: a metric written anywhere in the
/// workspace has a row, and every row names a metric some crate writes.
#[test]
fn every_metric_written_in_the_sources_is_catalogued() {
    let written = metric_names_in_sources();
    assert!(
        written.len() >= 30,
        "the source scan found too little: {written:?}"
    );
    let catalogued: BTreeSet<String> = catalogue().into_iter().map(|r| r.name).collect();
    let missing: Vec<_> = written.difference(&catalogued).collect();
    let stale: Vec<_> = catalogued.difference(&written).collect();
    assert!(
        missing.is_empty(),
        "written but not in docs/metrics.md: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "in docs/metrics.md but written nowhere: {stale:?}"
    );
}
