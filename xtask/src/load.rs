//! `cargo xtask load`: thousands of concurrent tasks through the stack
//! against a test server, then a report and a read-back of every
//! acknowledged write (`stratum load`, in `crates/cli/src/load/`).
//!
//! By default the `stratum` binary is built optimised and a fresh test
//! server is started for the run (stopped afterwards, failures included);
//! `--mongodb-uri URI` runs against another server instead. `--dev` uses
//! the unoptimised binary that `cargo test --workspace --all-features`
//! builds, which is what `cargo xtask ci` does for its short run so CI
//! compiles nothing twice.

use std::process::{Command, Stdio};

use crate::shell::{self, Result, cargo};
use crate::test_server::Server;

/// The short run inside `cargo xtask ci`: a tenth of the default tasks, a
/// few seconds, enough documents that the cache cannot hold them all.
const SHORT: &[&str] = &[
    "--tasks",
    "1000",
    "--duration",
    "5s",
    "--documents",
    "20000",
];

/// `cargo xtask load [--dev] [LOAD ARGS...]`: every argument but `--dev`
/// goes to `stratum load` (`--tasks`, `--duration`, `--read-ratio`, ...).
pub(crate) fn run(args: &[&str]) -> Result {
    let dev = args.contains(&"--dev");
    let rest: Vec<&str> = args.iter().copied().filter(|a| *a != "--dev").collect();
    if rest.iter().any(|a| *a == "--help" || *a == "-h") {
        let program = if dev {
            dev_binary()?
        } else {
            release_binary()?
        };
        return shell::run(Command::new(program).args(["load", "--help"]));
    }
    let given_uri = rest
        .iter()
        .any(|a| *a == "--mongodb-uri" || a.starts_with("--mongodb-uri="));
    let program = if dev {
        dev_binary()?
    } else {
        release_binary()?
    };
    // The server lives exactly as long as this guard.
    let server = if given_uri {
        None
    } else {
        Some(Server::start()?)
    };
    let mut cmd = Command::new(program);
    cmd.arg("load").args(&rest);
    if let Some(s) = &server {
        cmd.arg("--mongodb-uri").arg(s.uri());
    }
    shell::run(&mut cmd)
}

/// The short run `cargo xtask ci` makes against its own server, with the
/// binary its test step built.
pub(crate) fn short(uri: &str) -> Result {
    let program = dev_binary()?;
    shell::run(
        Command::new(program)
            .arg("load")
            .args(SHORT)
            .arg("--mongodb-uri")
            .arg(uri),
    )
}

/// The optimised `stratum` binary (built on first use; later runs only
/// check it is fresh).
fn release_binary() -> Result<String> {
    built(cargo().args([
        "build",
        "--release",
        "-p",
        "stratum-cli",
        "--bin",
        "stratum",
    ]))
}

/// The `stratum` binary as `cargo test --workspace --all-features` builds it (its
/// integration tests make cargo build the package's binaries), with the
/// same features, so nothing is compiled again after CI's test step.
fn dev_binary() -> Result<String> {
    built(cargo().args(["test", "--workspace", "--all-features", "--no-run"]))
}

/// Runs a cargo build and returns the path of the `stratum` executable it reports.
fn built(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", out.status));
    }
    executable(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| format!("{cmd:?} built no stratum binary"))
}

/// The `stratum` binary's path in cargo's JSON messages (the binary itself:
/// not its unit-test harness, not the `stratum` library of the same name).
fn executable(messages: &str) -> Option<String> {
    messages
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .filter(|l| {
            l.contains(r#""kind":["bin"],"#)
                && l.contains(r#""name":"stratum","#)
                && !built_for_tests(l)
        })
        .find_map(|l| {
            let rest = l.split_once(r#""executable":""#)?.1;
            rest.split_once('"').map(|(path, _)| path.to_owned())
        })
}

/// Whether a message's profile is a test build (the program's unit-test
/// harness), not the program: `"profile":{...,"test":true}`.
fn built_for_tests(message: &str) -> bool {
    message
        .split_once(r#""profile":{"#)
        .and_then(|(_, rest)| rest.split_once('}'))
        .is_some_and(|(profile, _)| profile.contains(r#""test":true"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_found_among_cargos_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"stratum_tests"},"profile":{"test":false},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["lib"],"crate_types":["lib"],"name":"stratum","test":true},"profile":{"opt_level":"0","test":false},"executable":"/t/debug/wrong-lib"}
{"reason":"compiler-artifact","target":{"kind":["bin"],"crate_types":["bin"],"name":"stratum","test":true},"profile":{"opt_level":"0","test":true},"executable":"/t/debug/deps/stratum-abc"}
{"reason":"compiler-artifact","target":{"kind":["bin"],"crate_types":["bin"],"name":"stratum-other","test":true},"profile":{"opt_level":"0","test":false},"executable":"/t/debug/stratum-other"}
{"reason":"compiler-artifact","target":{"kind":["bin"],"crate_types":["bin"],"name":"stratum","test":true},"profile":{"opt_level":"0","test":false},"executable":"/t/debug/stratum"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(executable(messages).as_deref(), Some("/t/debug/stratum"));
        assert_eq!(
            executable(r#"{"reason":"build-finished","success":true}"#),
            None
        );
    }
}
