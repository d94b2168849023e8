//! `stratum demo` run as a user would: the binary, briefly, on the embedded
//! store, with faults injected, and against the real test server. Each run
//! must finish with a report whose throughput is not zero.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;
use std::io::BufReader;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

fn demo(args: &[&str]) -> String {
    demo_with(args, &[])
}

/// `demo` with environment variables set.
fn demo_with(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stratum"))
        .env_remove("STRATUM_MONGODB_URI")
        .envs(env.iter().copied())
        .args([
            "demo",
            "--no-progress",
            "--listen",
            "127.0.0.1:0",
            "--concurrency",
            "4",
        ])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// On a machine without the model the demo still runs, and its semantic
/// phase is one line saying why it did not run and how to fetch the model.
#[test]
fn without_the_model_the_semantic_phase_is_one_line() {
    let report = demo_with(
        &["--duration", "300ms"],
        &[("STRATUM_CACHE_DIR", "/nonexistent/stratum-cache")],
    );
    assert!(throughput(&report) > 0.0, "{report}");
    let lines: Vec<&str> = report
        .lines()
        .skip_while(|l| !l.starts_with("semantic:"))
        .take_while(|l| !l.starts_with("served:"))
        .collect();
    assert_eq!(lines.len(), 1, "{report}");
    assert!(lines[0].starts_with("semantic:     skipped: "), "{report}");
    assert!(lines[0].contains("cargo xtask fetch-model"), "{report}");
}

/// The operations per second the report states.
fn throughput(report: &str) -> f64 {
    report
        .lines()
        .find_map(|l| l.strip_prefix("throughput:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no throughput line in:\n{report}"))
}

#[test]
fn the_embedded_demo_reports_its_throughput() {
    // The semantic phase embeds 150 texts: minutes in a debug build.
    let report = demo(&["--duration", "1s", "--no-semantic"]);
    assert!(report.contains("memory store"), "{report}");
    assert!(throughput(&report) > 0.0, "{report}");
    for op in [
        "prompt.lookup",
        "usage.write",
        "conversation.append",
        "conversation.context",
        "conversation.get",
    ] {
        assert!(report.contains(op), "{op} missing:\n{report}");
    }
    assert!(report.contains("prompt cache:"), "{report}");
    assert!(report.contains("breaker:"), "{report}");
}

/// The figure after `prefix` on the report line starting with `line`.
fn figure(report: &str, line: &str, prefix: &str) -> u64 {
    let l = report
        .lines()
        .find(|l| l.starts_with(line))
        .unwrap_or_else(|| panic!("no line {line:?} in:\n{report}"));
    let rest = &l[l
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix:?} not in {l:?}"))
        + prefix.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// The `ok` and `errors` columns of an operation's row.
fn calls(report: &str, op: &str) -> u64 {
    let row: Vec<u64> = report
        .lines()
        .find(|l| l.split_whitespace().next() == Some(op))
        .unwrap_or_else(|| panic!("no row {op}:\n{report}"))
        .split_whitespace()
        .skip(1)
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    row[0] + row[1]
}

/// Reads `from` to its end on a thread of its own.
fn read_on_a_thread(
    mut from: impl std::io::Read + Send + 'static,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = from.read_to_string(&mut text);
        text
    })
}

/// The series value of `name` with every label in `labels`.
fn series(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The run a user makes with `--inject-faults`, the binary on the embedded
/// store: faults happened and were handled (the breaker opened and closed
/// again, stale reads were served), the default `breaker_open` alert fired
/// and resolved (in the report, from `Stratum::on_alert`, and at a real
/// webhook receiver), the report's figures add up, and `/metrics`, scraped
/// from the real listener during the run, holds the conversation and prompt
/// caches' hits and misses.
#[test]
fn the_demo_with_faults_handles_them_and_alerts() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (receiver, posted) = runtime.block_on(stratum_tests::http::receive_alerts());
    let mut child = Command::new(env!("CARGO_BIN_EXE_stratum"))
        .env_remove("STRATUM_MONGODB_URI")
        .env(
            "STRATUM_MONITOR_ALERTS_WEBHOOK_URL",
            format!("http://{receiver}/api/v2/alerts"),
        )
        .args([
            "demo",
            "--no-progress",
            "--listen",
            "127.0.0.1:0",
            "--concurrency",
            "4",
            "--duration",
            "6s",
            "--inject-faults",
            "--no-semantic",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The bound address, announced on stderr once the stack serves it.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no announcement");
        if let Some(url) = line
            .trim()
            .strip_prefix("stratum demo: metrics and health on http://")
        {
            break url.parse().unwrap();
        }
    };
    // The listener serves from here (the workload is prepared after the
    // announcement, which takes seconds on a loaded machine) until the
    // stack shuts down after the workload's duration: scrape all along,
    // until the process exits, so that the scrapes see the whole run
    // however long the preparation takes.
    // Both pipes are read meanwhile, so that a full one never holds the
    // process (the loop below waits for it to exit).
    let drain = read_on_a_thread(stderr);
    let report = read_on_a_thread(child.stdout.take().unwrap());
    // Scrape during the run: the caches' series are there and only grow.
    let mut scrapes = Vec::new();
    while child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(500));
        // After the run the listener is gone: nothing more to scrape.
        if let Ok(response) = runtime.block_on(stratum_tests::http::try_get(addr, "/metrics")) {
            assert_eq!(response.status, 200);
            scrapes.push(response.body);
        }
    }
    let status = child.wait().unwrap();
    let report = report.join().unwrap();
    let logs = drain.join().unwrap();
    assert!(status.success(), "{report}\n{logs}");

    // The prompt cache exists from `open`, the conversations' cache once
    // the workload has prepared its repository (the first scrapes may come
    // earlier); from the first scrape with both, every scrape has them.
    const CACHES: [&str; 2] = ["conversations", "llm_prompts"];
    let first = scrapes
        .iter()
        .position(|s| {
            CACHES
                .iter()
                .all(|c| s.contains(&format!("stratum_cache_hits_total{{cache=\"{c}\"")))
        })
        .unwrap_or(scrapes.len());
    let scrapes = &scrapes[first..];
    assert!(
        scrapes.len() >= 3,
        "{} scrapes with the caches",
        scrapes.len()
    );
    let last = scrapes.last().unwrap();
    let mut names = std::collections::BTreeSet::new();
    for line in last
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        names.insert(line.split(['{', ' ']).next().unwrap().to_owned());
    }
    println!(
        "series on /metrics during the demo: {} samples, {} metric names",
        last.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count(),
        names.len()
    );
    for cache in CACHES {
        for what in ["stratum_cache_hits_total", "stratum_cache_misses_total"] {
            let label = format!("cache=\"{cache}\"");
            let values: Vec<f64> = scrapes
                .iter()
                .map(|s| {
                    series(s, what, &[&label])
                        .unwrap_or_else(|| panic!("{what} {cache} missing:\n{s}"))
                })
                .collect();
            assert!(
                values.windows(2).all(|w| w[0] <= w[1]),
                "{what} {cache}: {values:?}"
            );
            assert!(*values.last().unwrap() > 0.0, "{what} {cache}: {values:?}");
        }
    }
    for name in [
        "stratum_breaker_state",
        "stratum_pool_limit",
        "process_cpu_seconds_total",
    ] {
        assert!(names.contains(name), "{name} not on /metrics");
    }

    // Faults happened and were handled.
    assert!(figure(&report, "faults:", "faults:") > 0, "{report}");
    assert!(report.contains("closed -> open"), "{report}");
    assert!(report.contains("-> closed"), "{report}");
    assert!(report.contains("closed at the end"), "{report}");
    assert!(
        figure(&report, "documents:", "documents:") > 0,
        "no stale reads:\n{report}"
    );
    // The alert fired and resolved: in the report ...
    let fired = report
        .lines()
        .position(|l| l.starts_with("alert:        breaker_open fired"));
    let resolved = report
        .lines()
        .position(|l| l.starts_with("alert:        breaker_open resolved"));
    assert!(fired.is_some() && fired < resolved, "{report}");
    // The error budget burned: with 60 % of calls failing, both windows of
    // the 1 h pair burn far over 14.4x the 99.9 % objective's budget.
    assert!(
        report.lines().any(
            |l| l.starts_with("alert:        store.call.error_burn_1h fired")
                && l.contains("burn_rate_short")
        ),
        "{report}"
    );
    // ... and at the webhook: fired, then resolved with the same start.
    let posted: Vec<serde_json::Value> = posted.lock().iter().map(|(_, a)| a.clone()).collect();
    let breaker: Vec<&serde_json::Value> = posted
        .iter()
        .filter(|a| a["labels"]["alertname"] == "breaker_open")
        .collect();
    assert!(breaker.len() >= 2, "{posted:?}");
    assert!(breaker[0].get("endsAt").is_none(), "{posted:?}");
    let last = breaker.last().unwrap();
    assert!(last["endsAt"].is_string(), "{posted:?}");
    assert_eq!(last["startsAt"], breaker[0]["startsAt"]);

    // The figures add up: every lookup a hit or a miss, one lookup per
    // operation that makes one; what the workers wrote is what the store
    // holds more.
    let cache_line = |name: &str| -> (u64, u64, u64) {
        let prefix = format!("cache {name}:");
        (
            figure(&report, &prefix, &prefix),
            figure(&report, &prefix, "= "),
            figure(&report, &prefix, "+ "),
        )
    };
    let (lookups, hits, misses) = cache_line("llm_prompts");
    assert_eq!(lookups, hits + misses, "{report}");
    assert_eq!(lookups, calls(&report, "prompt.lookup"), "{report}");
    let (lookups, hits, misses) = cache_line("conversations");
    assert_eq!(lookups, hits + misses, "{report}");
    assert_eq!(lookups, calls(&report, "conversation.get"), "{report}");
    let written = figure(&report, "documents:", "served, ");
    let stored = figure(&report, "documents:", "written (");
    assert!(written > 0);
    assert_eq!(written, stored, "{report}");
}

#[test]
fn the_demo_runs_against_the_test_server() {
    let report = demo(&[
        "--duration",
        "1s",
        "--no-semantic",
        "--mongodb-uri",
        &stratum_tests::mongodb_uri(),
    ]);
    assert!(report.contains("mongodb store"), "{report}");
    assert!(throughput(&report) > 0.0, "{report}");
}

#[test]
fn the_library_runs_it_too() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime
        .block_on(stratum_cli::demo::run(stratum_cli::demo::DemoOptions {
            duration: std::time::Duration::from_millis(500),
            concurrency: 2,
            ..Default::default()
        }))
        .unwrap();
    assert!(report.throughput() > 0.0);
    assert!(report.run.operations.iter().any(|o| o.ok > 0));
    assert_eq!(report.backend(), "memory");
    // Every operation the workers made is in the table, with its latency.
    assert_eq!(report.run.tasks, 2);
    for o in &report.run.operations {
        assert_eq!(o.latency.map_or(0, |l| l.count), o.ok, "{o:?}");
    }
    // Each prompt lookup that succeeded went on to write one usage record.
    let op = |name| {
        report
            .run
            .operations
            .iter()
            .find(|o| o.name == name)
            .unwrap()
    };
    let usage = op("usage.write");
    assert_eq!(op("prompt.lookup").ok, usage.ok + usage.errors);
}
