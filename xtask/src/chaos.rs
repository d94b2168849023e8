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

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Instant;

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
    if status.success() {
        Ok(())
    } else {
        Err(format!("the fault drills failed ({status})"))
    }
}
