//! `cargo xtask chaos`: the fault drills of `tests/tests/chaos.rs`, one at a
//! time, with their measured figures collected at the end.
//!
//! Each drill starts its own test server process and kills (SIGKILL),
//! freezes (SIGSTOP) or resumes (SIGCONT) it while the facade is in use; it
//! prints every figure it measured as a `chaos figure: DRILL: NAME = VALUE`
//! line. This task runs them one after another (so they do not compete for
//! the machine's cores), including the server durability measurement that
//! `cargo xtask ci` leaves out, passes their output through, and repeats
//! the figures as one summary: the text `docs/reliability.md` quotes.
//! The concurrency limit's figures under a slowed server (the drill
//! `d_slow_server_lowers_the_concurrency_limit_and_recovery_raises_it`) are
//! also written into `docs/reliability.md` and `docs/benchmarks.md`, as a
//! generated section, when the drills pass.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Instant;

use crate::load::{Section, splice};
use crate::shell::{Result, cargo};
use crate::test_server;

/// The prefix of a figure line printed by a drill.
const FIGURE: &str = "chaos figure: ";

/// Runs the drills (those whose test name contains one of `filters`; all by
/// default) and prints their figures.
pub(crate) fn run(filters: &[&str]) -> Result {
    // The drills start their own servers from this binary: the same one
    // `cargo xtask test-server` runs (built once, if missing).
    let binary = test_server::install()?;
    let started = Instant::now();
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--package",
        "stratum-tests",
        "--test",
        "tests",
        "--",
        "--include-ignored",
        "--test-threads=1",
        "--nocapture",
    ]);
    if filters.is_empty() {
        cmd.arg("chaos::");
    } else {
        cmd.args(filters.iter().map(|f| format!("chaos::{f}")));
    }
    cmd.env("STRATUM_TEST_SERVER_BIN", &binary)
        .stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let mut figures = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|e| format!("reading the drills' output: {e}"))?;
            println!("{line}");
            // A figure may follow the test's name on the same line.
            if let Some(at) = line.find(FIGURE) {
                figures.push(line[at + FIGURE.len()..].to_owned());
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {cmd:?}: {e}"))?;

    println!(
        "\nchaos: fault drill figures ({:.1} s with the build; server {})",
        started.elapsed().as_secs_f64(),
        binary.display()
    );
    let mut drill = "";
    for figure in &figures {
        let (name, rest) = figure.split_once(": ").unwrap_or(("", figure));
        if name != drill {
            println!("\n  {name}");
            drill = name;
        }
        println!("    {rest}");
    }
    if !status.success() {
        return Err(format!("the fault drills failed ({status})"));
    }
    if let Some(text) = slow_limit_section(&figures, filters) {
        for page in ["docs/reliability.md", "docs/benchmarks.md"] {
            splice(page, &SLOW_LIMIT, &text)?;
        }
    }
    Ok(())
}

/// The drill whose figures go into the docs.
const SLOW_LIMIT_DRILL: &str = "slow limit";

/// Its generated section.
const SLOW_LIMIT: Section = Section {
    marker: "slow-drill-limit",
    command: "cargo xtask chaos",
    heading: "stratum / concurrency limit under a slowed server (fault drill)",
};

/// The slowed-server drill's figures as a table (`None` when it did not
/// run), with how and where they were measured.
fn slow_limit_section(figures: &[String], filters: &[&str]) -> Option<String> {
    let prefix = format!("{SLOW_LIMIT_DRILL}: ");
    let rows: Vec<String> = figures
        .iter()
        .filter_map(|f| f.strip_prefix(&prefix))
        .filter_map(|f| f.split_once(" = "))
        .map(|(name, value)| format!("| {name} | {value} |"))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let command = if filters.is_empty() {
        "cargo xtask chaos".to_owned()
    } else {
        format!("cargo xtask chaos {}", filters.join(" "))
    };
    Some(format!(
        "Measured by `{command}` (the drill \
         `d_slow_server_lowers_the_concurrency_limit_and_recovery_raises_it` in \
         `tests/tests/chaos.rs`, against a test server process of its own) on this machine \
         ({} cores shared with other work; load average {} at the end). Times are from the \
         limit sampled every 10 ms; one run, so expect them to move by a few hundred \
         milliseconds between runs.\n\n| figure | value |\n|---|---|\n{}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into()),
        rows.join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slow_limit_figures_become_a_table() {
        let figures = [
            "slow: opened by = slow_call_rate".to_owned(),
            "slow limit: limit before the slowdown = 90".to_owned(),
            "slow limit: lowest limit while slowed = 16".to_owned(),
        ];
        let text = slow_limit_section(&figures, &["d_slow"]).unwrap();
        assert!(text.contains("`cargo xtask chaos d_slow`"));
        assert!(
            text.contains("| limit before the slowdown | 90 |\n| lowest limit while slowed | 16 |")
        );
        assert!(!text.contains("opened by"));
        assert!(slow_limit_section(&figures[..1], &[]).is_none());
    }
}
