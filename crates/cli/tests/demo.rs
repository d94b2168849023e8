//! `stratum demo` run as a user would: the binary, briefly, on the embedded
//! store, with faults injected, and against the real test server. Each run
//! must finish with a report whose throughput is not zero.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn demo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stratum"))
        .env_remove("STRATUM_MONGODB_URI")
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
    let report = demo(&["--duration", "1s"]);
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

#[test]
fn the_demo_with_faults_reports_them() {
    let report = demo(&["--duration", "1s", "--inject-faults"]);
    assert!(report.contains("faults injected"), "{report}");
    assert!(throughput(&report) > 0.0, "{report}");
}

#[test]
fn the_demo_runs_against_the_test_server() {
    let report = demo(&[
        "--duration",
        "1s",
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
