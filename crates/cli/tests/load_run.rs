//! `stratum load` end to end against the test server: a short clean run
//! passes, and a run whose acknowledged write is deleted behind the stack's
//! back fails its verification (the check can fail).

use std::process::Command;

/// Runs `stratum load` briefly; `(passed, stdout)`.
#[allow(clippy::expect_used)] // a test helper: failing to start the program fails the test
fn load(extra: &[&str]) -> (bool, String) {
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
