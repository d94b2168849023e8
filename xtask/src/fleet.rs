//! `cargo xtask fleet`: several `stratum load` processes over one test
//! server through the fault-injecting proxy, one drill per fault, and the
//! fleet's verifier (`crates/cli/tests/fleet.rs`); their tables go into
//! docs/reliability.md.
//!
//! The drills are ignored tests of the `stratum-cli` package: each starts
//! its own server (from the build `cargo xtask test-server` runs) and
//! proxy, launches the processes, applies its fault schedule, verifies,
//! and prints its tables as `fleet table: ` lines. This task runs them
//! one at a time, passes their output through, and writes the tables
//! between the `fleet` markers of docs/reliability.md (also when a drill
//! failed: the table then says which invariant did not hold, and the task
//! fails). `--short` runs the short drill only (3 processes, 8 s, a 1 s
//! stall and 2 s of 200 ms latency), as CI does, and writes nothing.
//! The full run also installs the PyPI build of the server (`secantusd-py`,
//! into a venv in the cache folder, once): its `failCommand` drills need
//! its fail points.
//!
//! The test binary is built as `cargo test --workspace --all-features`
//! builds it, so after CI's test step nothing is compiled again.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Instant;

use crate::shell::{Result, cargo};
use crate::test_server;

/// The prefix of a table line printed by a drill.
const TABLE: &str = "fleet table: ";

/// Where the tables go, and the section's marker.
const DOC: &str = "docs/reliability.md";
/// The fleet's generated section of [`DOC`].
const SECTION: crate::load::Section = crate::load::Section {
    marker: "fleet",
    command: "cargo xtask fleet",
    heading: "Fleet",
};

/// `cargo xtask fleet [--short] [DRILL]`: every drill (those whose name
/// contains DRILL), or the short one.
pub(crate) fn run(args: &[&str]) -> Result {
    let short = args.contains(&"--short");
    let only = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .copied()
        .unwrap_or("");
    let binary = test_server::install()?;
    // The `failCommand` drills run on the PyPI build (it has fail points);
    // the short run does not need it.
    let py_binary = if short {
        None
    } else {
        Some(test_server::install_py()?)
    };
    let started = Instant::now();
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--workspace",
        "--all-features",
        "--test",
        "fleet",
        "--",
        "--ignored",
        "--exact",
        "--nocapture",
        "--test-threads=1",
        if short {
            "short_fleet"
        } else {
            "drills_under_faults"
        },
    ])
    .env("STRATUM_TEST_SERVER_BIN", &binary)
    .env("FLEET_DRILL", only)
    .stdout(Stdio::piped());
    if let Some(py) = &py_binary {
        cmd.env("STRATUM_TEST_SERVER_PY_BIN", py);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let mut tables = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|e| format!("reading the drills' output: {e}"))?;
            println!("{line}");
            if let Some(at) = line.find(TABLE) {
                tables.push(line[at + TABLE.len()..].to_owned());
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {cmd:?}: {e}"))?;
    println!(
        "\nfleet: {:.1} s with the build (server {})",
        started.elapsed().as_secs_f64(),
        binary.display()
    );
    if !short && only.is_empty() && !tables.is_empty() {
        let text = format!(
            "Generated {} on this machine (2 shared cores, load average {} at the end; \
             debug build of `stratum`).\n\n{}\n",
            utc_now(),
            std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().next().map(str::to_owned))
                .unwrap_or_else(|| "unknown".into()),
            tables.join("\n").trim_end()
        );
        crate::load::splice(DOC, &SECTION, &text)?;
        println!("fleet: tables written into {DOC}");
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("a fleet drill failed ({status})"))
    }
}

/// The date and time now, UTC, from `date` (xtask has no dependencies).
fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "at an unknown time".into())
}
