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

/// `cargo xtask load [--dev] [--sweep] [LOAD ARGS...]`: every argument but
/// `--dev` and `--sweep` goes to `stratum load` (`--tasks`, `--duration`,
/// `--read-ratio`, ...). `--sweep` runs the admission comparison instead
/// (see [`sweep`]).
pub(crate) fn run(args: &[&str]) -> Result {
    if args.contains(&"--sweep") {
        let rest: Vec<&str> = args.iter().copied().filter(|a| *a != "--sweep").collect();
        return sweep(&rest);
    }
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

/// The fixed limits the sweep compares the adaptive one with.
const FIXED: &[usize] = &[4, 8, 16, 32, 64, 128];

/// One scenario of the sweep: tasks and think time.
struct Scenario {
    tasks: &'static str,
    think: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        tasks: "10000",
        think: "50ms",
    },
    Scenario {
        tasks: "10000",
        think: "0s",
    },
    Scenario {
        tasks: "64",
        think: "0s",
    },
];

/// The `key=value` pairs of a run's `summary:` line.
fn summary(stdout: &str) -> Option<Vec<(String, String)>> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("summary: "))?;
    Some(
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

fn field<'a>(s: &'a [(String, String)], key: &str) -> &'a str {
    s.iter()
        .find(|(k, _)| k == key)
        .map_or("?", |(_, v)| v.as_str())
}

/// `cargo xtask load --sweep [--duration D] [LOAD ARGS...]`: for each
/// scenario (10,000 tasks with 50 ms think time, 10,000 with none, 64 with
/// none), one run per fixed limit in [`FIXED`] (`--fixed-limit --pool-size
/// N`) and three with the adaptive limit (the default configuration:
/// first, between the small and the large fixed limits, and last), all
/// against one fresh test server, each short (`--duration`, default 3 s, a
/// fresh database of 5,000 documents). Prints a table and writes it into
/// `docs/reliability.md` between its `adaptive-sweep` markers.
fn sweep(args: &[&str]) -> Result {
    let program = release_binary()?;
    let server = Server::start()?;
    let duration = args
        .iter()
        .position(|a| *a == "--duration")
        .and_then(|i| args.get(i + 1))
        .copied()
        .unwrap_or("3s");
    let extra: Vec<&str> = {
        let mut v = Vec::new();
        let mut it = args.iter().copied();
        while let Some(a) = it.next() {
            if a == "--duration" {
                it.next();
            } else {
                v.push(a);
            }
        }
        v
    };
    let mut rows = Vec::new();
    let mut panels = Vec::new();
    for sc in SCENARIOS {
        let mut runs: Vec<(String, Vec<(String, String)>)> = Vec::new();
        // The machine's other load drifts during a sweep: the adaptive run
        // goes first, in the middle and last, so it is not compared only
        // with the fixed runs of a quieter (or busier) moment.
        let (low, high) = FIXED.split_at(FIXED.len() / 2);
        let order = [None]
            .into_iter()
            .chain(low.iter().map(|n| Some(*n)))
            .chain([None])
            .chain(high.iter().map(|n| Some(*n)))
            .chain([None]);
        let mut adaptive = 0;
        for limit in order {
            let mut cmd = Command::new(&program);
            cmd.arg("load")
                .args(["--tasks", sc.tasks, "--think-time", sc.think])
                .args(["--duration", duration, "--documents", "5000"])
                .args(&extra)
                .arg("--mongodb-uri")
                .arg(server.uri())
                .stderr(Stdio::null());
            let name = match limit {
                Some(n) => {
                    cmd.args(["--fixed-limit", "--pool-size", &n.to_string()]);
                    format!("fixed {n}")
                }
                None => {
                    adaptive += 1;
                    format!("adaptive ({adaptive}/3)")
                }
            };
            let out = cmd
                .output()
                .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let s = summary(&stdout)
                .ok_or_else(|| format!("{name}, {} tasks: no summary line:\n{stdout}", sc.tasks))?;
            eprintln!(
                "{} tasks, think {}, {name}: {}",
                sc.tasks,
                sc.think,
                s.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            runs.push((name, s));
        }
        let best = runs
            .iter()
            .filter(|(n, _)| n.starts_with("fixed"))
            .max_by(|a, b| {
                let ok = |r: &(String, Vec<(String, String)>)| {
                    field(&r.1, "ok_per_s").parse::<f64>().unwrap_or(0.0)
                };
                ok(a).total_cmp(&ok(b))
            })
            .map(|(n, s)| {
                (
                    n.clone(),
                    field(s, "ok_per_s").parse::<f64>().unwrap_or(0.0),
                )
            });
        panels.push(Panel {
            title: format!("{} tasks, think time {}", sc.tasks, sc.think),
            points: runs
                .iter()
                .map(|(name, s)| Point {
                    label: name.trim_start_matches("fixed ").to_owned(),
                    adaptive: name.starts_with("adaptive"),
                    ok_per_s: field(s, "ok_per_s").parse().unwrap_or(0.0),
                    p99_ms: field(s, "worst_p99_ms").parse().unwrap_or(0.0),
                })
                .collect(),
        });
        runs.sort_by_key(|(name, _)| {
            FIXED
                .iter()
                .position(|n| name == &format!("fixed {n}"))
                .unwrap_or(FIXED.len())
        });
        for (name, s) in &runs {
            let ok = field(s, "ok_per_s").parse::<f64>().unwrap_or(0.0);
            let share = best.as_ref().filter(|(_, b)| *b > 0.0).map_or_else(
                || "-".to_owned(),
                |(_, b)| format!("{:.0} %", 100.0 * ok / b),
            );
            let is_best = best.as_ref().is_some_and(|(n, _)| n == name);
            rows.push(format!(
                "| {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} |",
                sc.tasks,
                sc.think,
                name,
                if is_best { " (best fixed)" } else { "" },
                field(s, "ok_per_s"),
                share,
                field(s, "worst_p99_ms"),
                field(s, "overloaded"),
                field(s, "stale"),
                field(s, "limit_range"),
                field(s, "passed"),
            ));
        }
    }
    let table = format!(
        "Each run {duration}, a fresh database of 5,000 documents, one test server for all, \
         on this machine (2 shared cores; load average {} at the end). `ok/s`: successful operations \
         per second; `share`: of the best fixed limit's in the same scenario; `worst p99`: the \
         slowest operation's p99 of successful calls; `overloaded`: refused by admission; \
         `stale`: reads answered from an expired cached copy; `limit`: the lowest and highest \
         limit sampled every 100 ms; `verified`: every acknowledged write read back.\n\n\
         | tasks | think | limit | ok/s | share | worst p99 (ms) | overloaded | stale | limit | verified |\n\
         |---|---|---|---|---|---|---|---|---|---|\n{}\n",
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into()),
        rows.join("\n")
    );
    println!("{table}");
    std::fs::write(SVG, svg(&panels)).map_err(|e| format!("cannot write {SVG}: {e}"))?;
    let table =
        format!("{table}\n![throughput against p99, one point per limit](admission-sweep.svg)\n");
    splice(
        "docs/reliability.md",
        "adaptive-sweep",
        "cargo xtask load --sweep",
        &table,
    )
}

/// Where the sweep draws its runs.
const SVG: &str = "docs/admission-sweep.svg";

/// One run in the drawing.
struct Point {
    label: String,
    adaptive: bool,
    ok_per_s: f64,
    p99_ms: f64,
}

/// One scenario's runs.
struct Panel {
    title: String,
    points: Vec<Point>,
}

/// Successful throughput against the worst operation's p99, one panel per
/// scenario (their scales differ), one point per fixed limit (labelled
/// with it) and the adaptive run as a red diamond.
fn svg(panels: &[Panel]) -> String {
    use std::fmt::Write;
    const W: f64 = 360.0;
    const H: f64 = 300.0;
    const M: f64 = 50.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        W * panels.len() as f64
    );
    for (i, panel) in panels.iter().enumerate() {
        let x0 = W * i as f64;
        let max_x = panel.points.iter().map(|p| p.p99_ms).fold(1.0, f64::max) * 1.1;
        let max_y = panel.points.iter().map(|p| p.ok_per_s).fold(1.0, f64::max) * 1.1;
        let px = |v: f64| x0 + M + (W - M - 15.0) * v / max_x;
        let py = |v: f64| H - M + -(H - M - 30.0) * v / max_y;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"13\">{}</text>",
            x0 + W / 2.0,
            panel.title
        );
        let _ = writeln!(
            out,
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/><line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"30\" stroke=\"black\"/>",
            px(0.0),
            py(0.0),
            px(max_x)
        );
        for t in 0..=4 {
            let (vx, vy) = (max_x * f64::from(t) / 4.0, max_y * f64::from(t) / 4.0);
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{vx:.0}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}k</text>",
                px(vx),
                py(0.0) + 14.0,
                px(0.0) - 4.0,
                py(vy) + 4.0,
                vy / 1000.0
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">worst operation p99 (ms)</text><text x=\"{:.1}\" y=\"{:.1}\" transform=\"rotate(-90 {:.1} {:.1})\" text-anchor=\"middle\">successful operations/s</text>",
            x0 + W / 2.0,
            H - 12.0,
            x0 + 12.0,
            H / 2.0,
            x0 + 12.0,
            H / 2.0
        );
        for p in &panel.points {
            let (x, y) = (px(p.p99_ms), py(p.ok_per_s));
            if p.adaptive {
                let _ = writeln!(
                    out,
                    "<path d=\"M {x:.1} {:.1} L {:.1} {y:.1} L {x:.1} {:.1} L {:.1} {y:.1} Z\" fill=\"#d62728\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d62728\">{}</text>",
                    y - 6.0,
                    x + 6.0,
                    y + 6.0,
                    x - 6.0,
                    x + 8.0,
                    y - 6.0,
                    p.label
                );
            } else {
                let _ = writeln!(
                    out,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"#1f77b4\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    x + 6.0,
                    y + 4.0,
                    p.label
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

/// Replaces the text between `<!-- BEGIN GENERATED: {marker} ({command}) -->`
/// and `<!-- END GENERATED: {marker} -->` in `path` (appending a new section
/// when the markers are missing).
pub(crate) fn splice(path: &str, marker: &str, command: &str, text: &str) -> Result {
    let doc = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let begin = format!("<!-- BEGIN GENERATED: {marker} ({command}) -->\n");
    let end = format!("<!-- END GENERATED: {marker} -->");
    let new = match (doc.find(&begin), doc.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{begin}{text}{}", &doc[..b], &doc[e..])
        }
        _ => format!("{doc}\n{begin}{text}{end}\n"),
    };
    std::fs::write(path, new).map_err(|e| format!("cannot write {path}: {e}"))
}

#[cfg(test)]
mod sweep_tests {
    use super::*;

    #[test]
    fn the_summary_line_is_read_and_drawn() {
        let out = "report...\nsummary: ok_per_s=120 worst_p99_ms=8.5 overloaded=3 stale=0 limit_range=4-9 limit_end=7 passed=true\n";
        let s = summary(out).unwrap();
        assert_eq!(field(&s, "ok_per_s"), "120");
        assert_eq!(field(&s, "limit_range"), "4-9");
        assert_eq!(field(&s, "missing"), "?");
        assert!(summary("no summary here").is_none());
        let panel = Panel {
            title: "t".into(),
            points: vec![
                Point {
                    label: "16".into(),
                    adaptive: false,
                    ok_per_s: 100.0,
                    p99_ms: 10.0,
                },
                Point {
                    label: "adaptive".into(),
                    adaptive: true,
                    ok_per_s: 90.0,
                    p99_ms: 5.0,
                },
            ],
        };
        let drawn = svg(&[panel]);
        assert_eq!(drawn.matches("<circle").count(), 1);
        assert_eq!(drawn.matches(">adaptive</text>").count(), 1);
        assert!(drawn.ends_with("</svg>\n"));
    }
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
