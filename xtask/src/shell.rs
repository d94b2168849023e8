//! Running commands and timing the steps of a task.

use std::process::Command;
use std::time::Instant;

/// The outcome of one task: `Err` carries the message printed before exiting non-zero.
pub(crate) type Result<T = ()> = std::result::Result<T, String>;

/// Runs `cmd` with inherited stdio and fails unless it exits successfully.
pub(crate) fn run(cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

/// A `cargo` command that uses the same cargo as the one running xtask.
pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Whether `program` can be run (for optional tools such as cargo-nextest).
pub(crate) fn available(program: &str, probe_args: &[&str]) -> bool {
    Command::new(program)
        .args(probe_args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Records the steps of a task: one line each with its duration, then a summary.
#[derive(Default)]
pub(crate) struct Steps {
    lines: Vec<String>,
    failed: Vec<String>,
}

impl Steps {
    /// Runs one named step, prints its line as soon as it ends, and remembers a failure.
    pub(crate) fn step(&mut self, name: &str, f: impl FnOnce() -> Result) -> bool {
        println!("==> {name}");
        let started = Instant::now();
        let outcome = f();
        let secs = started.elapsed().as_secs_f64();
        let line = match &outcome {
            Ok(()) => format!("step {name:<28} ok      {secs:>7.1} s"),
            Err(e) => format!("step {name:<28} FAILED  {secs:>7.1} s  ({e})"),
        };
        println!("{line}");
        self.lines.push(line);
        if outcome.is_err() {
            self.failed.push(name.to_owned());
        }
        outcome.is_ok()
    }

    /// Prints every step's line again and turns any failure into an error.
    pub(crate) fn finish(self, task: &str, started: Instant) -> Result {
        println!("\n{task} summary:");
        for line in &self.lines {
            println!("  {line}");
        }
        let total = started.elapsed().as_secs_f64();
        if self.failed.is_empty() {
            println!(
                "{task}: all {} steps passed in {total:.1} s",
                self.lines.len()
            );
            Ok(())
        } else {
            Err(format!(
                "{task}: failed steps: {} (after {total:.1} s)",
                self.failed.join(", ")
            ))
        }
    }
}
