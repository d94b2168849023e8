//! `cargo xtask trends`: the trend rules (burn rate, latency regression) on
//! synthetic series with known change points, written into docs/trends.md.
//!
//! The simulation is `crates/monitor/benches/trends.rs` (release build, a
//! manual clock, about 8 minutes on two cores); this task runs it and puts
//! its table and goal lines between the generated-section markers, with the
//! machine and the command.

use std::process::Command;

use crate::bench::{machine, root};
use crate::load::{Section, splice};
use crate::shell::{Result, cargo};

const COMMAND: &str = "cargo xtask trends";

/// The generated section of docs/trends.md.
const TRENDS: Section = Section {
    marker: "trends",
    command: COMMAND,
    heading: "Trend rules on synthetic series",
};

pub(crate) fn run() -> Result {
    println!("==> cargo bench -p stratum-monitor --bench trends");
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "stratum-monitor", "--bench", "trends"]);
    let table = output(&mut cmd)?;
    let text = format!(
        "Measured by `{COMMAND}` on {}.\n\n{}\n",
        machine(),
        table.trim()
    );
    let path = root().join("docs").join("trends.md");
    let path = path.to_string_lossy();
    splice(&path, &TRENDS, &text)?;
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
