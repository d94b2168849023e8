//! `stratum load` end to end against the test server: a short clean run
//! passes, and a run whose acknowledged write is deleted behind the stack's
//! back fails its verification (the check can fail).

use std::process::Command;

/// Runs `stratum load` briefly; `(passed, stdout)`.
fn load(extra: &[&str]) -> (bool, String) {
    load_with(extra, &[])
}

/// [`load`] with environment variables set.
#[allow(clippy::expect_used)] // a test helper: failing to start the program fails the test
fn load_with(extra: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stratum"))
        .args([
            "load",
            "--tasks",
            "50",
            "--duration",
            "1s",
            "--documents",
            "500",
        ])
        .args(extra)
        .env("STRATUM_TEST_MONGODB_URI", stratum_tests::mongodb_uri())
        .envs(env.iter().copied())
        .output()
        .expect("the load program runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.code().is_some_and(|c| c < 2),
        "the run itself failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), stdout)
}

#[test]
fn a_clean_run_reports_every_figure_and_passes() {
    let (passed, report) = load(&[]);
    assert!(passed, "{report}");
    for line in [
        "throughput:",
        "read by id",
        "insert",
        "update",
        "cache:",
        "pool:",
        "breaker:",
        "peak resident",
        "missing acknowledged inserts: 0",
        "lost acknowledged updates:    0",
        "result:       PASS",
    ] {
        assert!(report.contains(line), "no {line:?} in\n{report}");
    }
}

#[test]
fn a_lost_acknowledged_write_fails_the_run() {
    let (passed, report) = load(&["--sabotage", "1", "--read-ratio", "0.5"]);
    assert!(!passed, "{report}");
    assert!(
        report.contains("missing acknowledged inserts: 1 (e.g. "),
        "{report}"
    );
    assert!(report.contains("result:       FAIL"), "{report}");
}

/// The value of `key` on the `summary:` line of a load report.
#[allow(clippy::expect_used)] // a test helper: a missing field fails the test
fn summary_field(report: &str, key: &str) -> f64 {
    let line = report.lines().find(|l| l.starts_with("summary:"));
    let value = line.and_then(|l| {
        l.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    });
    value
        .and_then(|v| v.parse().ok())
        .expect("the summary line has the field, a number")
}

/// The summary counts database calls apart from operations: without the
/// cache every successful operation is one (a read loads from the
/// database, a write writes), with it the cache hits are not.
#[test]
fn the_summary_counts_successful_database_calls_apart() {
    let (passed, report) = load_with(&[], &[("STRATUM_CACHE_ENABLED", "false")]);
    assert!(passed, "{report}");
    let (ok, db) = (
        summary_field(&report, "ok_per_s"),
        summary_field(&report, "db_ok_per_s"),
    );
    assert!(ok > 0.0 && (ok - db).abs() <= 1.0, "{report}");
    let (passed, report) = load(&[]);
    assert!(passed, "{report}");
    let (ok, db) = (
        summary_field(&report, "ok_per_s"),
        summary_field(&report, "db_ok_per_s"),
    );
    assert!(db > 0.0 && db < 0.5 * ok, "{report}");
}
