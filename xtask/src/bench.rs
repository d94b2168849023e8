//! `cargo xtask bench`: runs every criterion suite and writes `docs/benchmarks.md`.
//!
//! Each bench measures Stratum and its peer in the same process and prints
//! its own summary (a table or ratio lines) after criterion's output. This
//! task keeps criterion's median for every benchmark and each summary
//! verbatim, with the machine and the command, so every figure in the
//! document comes from one run of one command.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::load::{Section, splice};
use crate::shell::{Result, cargo};
use crate::test_server::Server;

/// The generated section of docs/prefetch.md: the prefetch suite's
/// figures, embedded store and test server, as docs/benchmarks.md has them.
const PREFETCH: Section = Section {
    marker: "prefetch",
    command: "cargo xtask bench prefetch",
    heading: "Measurements",
};

/// The suites in report order: (package, bench target, what it compares).
const SUITES: &[(&str, &str, &str)] = &[
    (
        "stratum-breaker",
        "breaker",
        "closed-state call cost against failsafe and a bare call",
    ),
    (
        "stratum-cache",
        "throughput",
        "Zipf get-heavy throughput against moka and quick_cache, and a second shape (capacity 50 000, 5 % inserts, Arc<[u8]> values) against quick_cache",
    ),
    (
        "stratum-cache",
        "hit_ratio",
        "hit ratio (not timed) on the shared LIRS traces and two synthetic ones against moka, quick_cache, libCacheSim's S3-FIFO at its defaults, exact LRU and Belady's optimum (the last three computed by the bench); also writes the curves to docs/cache-hit-ratio-<trace>.svg",
    ),
    (
        "stratum-cache",
        "memory",
        "memory per entry against moka and quick_cache",
    ),
    (
        "stratum-pool",
        "acquire",
        "acquire and release against deadpool and bb8",
    ),
    (
        "stratum-monitor",
        "percentiles",
        "recording latencies against a raw hdrhistogram",
    ),
    (
        "stratum-models",
        "tokens",
        "token counting against tiktoken-rs directly",
    ),
    (
        "stratum-models",
        "compress",
        "context compression of a 100-message conversation",
    ),
    (
        "stratum-store",
        "store",
        "MongoStore against the raw mongodb driver (test server)",
    ),
    (
        "stratum",
        "repository",
        "cached and uncached reads and writes through the repository against the raw driver (test server)",
    ),
    (
        "stratum",
        "prefetch",
        "predictive pre-loading off against on, same run: a correlated LLM workload through a Repository, and the Zipf and scan controls, over the embedded store with 1 ms per database call and over the test server; the read path's cost, interleaved (docs/prefetch.md)",
    ),
];

/// Runs the suites (all, or those whose package or bench name is given) and
/// writes `docs/benchmarks.md`: all suites rewrite it; a subset replaces only
/// its own sections and keeps the others, each section saying which run
/// measured it.
pub(crate) fn run(args: &[&str]) -> Result {
    let chosen: Vec<_> = SUITES
        .iter()
        .filter(|(pkg, bench, _)| args.is_empty() || args.iter().any(|a| a == pkg || a == bench))
        .collect();
    if chosen.is_empty() {
        return Err(format!("no bench matches {args:?}"));
    }
    let started = Instant::now();
    let command = if args.is_empty() {
        "cargo xtask bench".to_owned()
    } else {
        format!("cargo xtask bench {}", args.join(" "))
    };
    let stamp = format!("Measured by `{command}` on {}.", machine());
    let mut sections = Vec::new();
    for (pkg, bench, what) in chosen {
        // The store and repository benches talk to a fresh server; the
        // others need none.
        let server = if matches!(*pkg, "stratum" | "stratum-store") {
            Some(Server::start()?)
        } else {
            None
        };
        let mut cmd = cargo();
        cmd.args(["bench", "-p", pkg, "--bench", bench]);
        if let Some(s) = &server {
            cmd.env("STRATUM_TEST_MONGODB_URI", s.uri());
        }
        println!("==> cargo bench -p {pkg} --bench {bench}");
        let out = output(&mut cmd)?;
        drop(server);
        let text =
            section(pkg, bench, what, &out).replacen("Command:", &format!("{stamp} Command:"), 1);
        if *bench == "prefetch" {
            // docs/prefetch.md quotes the same figures, without the heading.
            let body = text
                .trim_start()
                .split_once('\n')
                .map_or("", |(_, rest)| rest);
            let path = root().join("docs").join("prefetch.md");
            splice(
                &path.to_string_lossy(),
                &PREFETCH,
                &format!("{}\n", body.trim()),
            )?;
        }
        sections.push((format!("{pkg} / {bench}"), text));
    }
    println!("took {:.0} s", started.elapsed().as_secs_f64());
    let path = root().join("docs").join("benchmarks.md");
    // Read even when every suite reruns: the sections other commands
    // write (`cargo xtask load --sweep`, `cargo xtask chaos`) are kept.
    let kept = fs::read_to_string(&path).unwrap_or_default();
    let doc = document(&kept, &sections);
    fs::write(&path, doc).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// The document: a header, then every suite's section in `SUITES` order,
/// the fresh ones from `fresh` and the others as `kept` had them.
fn document(kept: &str, fresh: &[(String, String)]) -> String {
    let mut doc = String::from(
        "# Benchmarks\n\n\
         Written by `cargo xtask bench` (all suites; `cargo xtask bench NAME` reruns \
         one and keeps the others). Each section says which run measured it, on \
         which machine; each bench measures Stratum and its peer in the same \
         process, so compare the ratios within a section, not absolute times across \
         sections (2-core machines are noisy). Rerun the command to reproduce. \
         The trend rules' detection delays and false alarms on synthetic series \
         are in [trends.md](trends.md) (`cargo xtask trends`).\n",
    );
    for (pkg, bench, _) in SUITES {
        let title = format!("{pkg} / {bench}");
        let fresh = fresh
            .iter()
            .find(|(t, _)| *t == title)
            .map(|(_, s)| s.as_str());
        if let Some(s) = fresh.or_else(|| old_section(kept, &title)) {
            doc.push_str(s);
        }
    }
    // Sections no suite writes come from other commands: kept, in order.
    for title in kept.split("\n## ").skip(1).filter_map(|s| s.lines().next()) {
        if !SUITES.iter().any(|(p, b, _)| format!("{p} / {b}") == title)
            && let Some(s) = old_section(kept, title)
        {
            doc.push_str(s);
        }
    }
    doc
}

/// The section titled `title` in an earlier document, heading included, up
/// to the next section.
fn old_section<'a>(doc: &'a str, title: &str) -> Option<&'a str> {
    let heading = format!("\n## {title}\n");
    let start = doc.find(&heading)?;
    let rest = &doc[start + heading.len()..];
    let end = rest
        .find("\n## ")
        .map_or(doc.len(), |i| start + heading.len() + i);
    Some(&doc[start..end])
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One suite's part of the document: criterion's medians as a table, then
/// everything else the bench printed (its own comparison), verbatim.
fn section(pkg: &str, bench: &str, what: &str, stdout: &str) -> String {
    let mut medians = Vec::new();
    let mut summary = Vec::new();
    let mut last_name = String::new();
    for line in stdout.lines() {
        let trimmed = line.trim();
        if let Some((name, rest)) = trimmed.split_once("time:") {
            let name = if name.trim().is_empty() {
                last_name.clone()
            } else {
                name.trim().to_owned()
            };
            if let Some(median) = middle_estimate(rest) {
                medians.push((name, median));
            }
        } else if is_criterion_noise(trimmed) {
            if !trimmed.contains(':') && !trimmed.is_empty() {
                last_name = trimmed.to_owned();
            }
        } else {
            summary.push(line);
        }
    }
    let mut s = format!(
        "\n## {pkg} / {bench}\n\n{what}. Command: `cargo bench -p {pkg} --bench {bench}`.\n"
    );
    if !medians.is_empty() {
        s.push_str("\n| benchmark | criterion median |\n|---|---|\n");
        for (name, median) in medians {
            let _ = writeln!(s, "| `{name}` | {median} |");
        }
    }
    let summary = summary.join("\n");
    if !summary.trim().is_empty() {
        let _ = write!(
            s,
            "\nThe bench's own comparison (same run):\n\n```text\n{}\n```\n",
            summary.trim()
        );
    }
    s
}

/// Criterion prints `time: [low median high]`; the middle one is the median estimate.
fn middle_estimate(rest: &str) -> Option<String> {
    let inner = rest.trim().trim_start_matches('[').trim_end_matches(']');
    let parts: Vec<&str> = inner.split_whitespace().collect();
    (parts.len() == 6).then(|| format!("{} {}", parts[2], parts[3]))
}

/// Lines of criterion's own progress and statistics, which the document leaves out.
fn is_criterion_noise(line: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "Benchmarking",
        "Found ",
        "change:",
        "thrpt:",
        "Performance has",
        "No change",
        "Change within",
        "Warning:",
        "Gnuplot",
        "Running ",
    ];
    // Outlier counts: "2 (6.67%) high mild".
    const SUFFIXES: &[&str] = &["high mild", "high severe", "low mild", "low severe"];
    line.is_empty()
        || PREFIXES.iter().any(|p| line.starts_with(p))
        || SUFFIXES.iter().any(|p| line.ends_with(p))
        || (!line.contains(' ') && line.contains('/'))
}

/// A one-line description of this machine: cores, CPU model, memory, rustc, date.
pub(crate) fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let load = fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {mem_gib:.0} GiB, {rustc}, {date}, load average {load} at the end"
    )
}

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_run_replaces_its_sections_and_keeps_the_others() {
        let kept = "# Benchmarks\n\nold header\n\n## stratum-breaker / breaker\n\nold breaker\n\n## stratum-cache / hit_ratio\n\nold hits\n\n## stratum / repository\n\nold repo\n";
        let fresh = [(
            "stratum-cache / hit_ratio".to_owned(),
            "\n## stratum-cache / hit_ratio\n\nnew hits\n".to_owned(),
        )];
        let doc = document(kept, &fresh);
        assert!(doc.contains("old breaker"), "{doc}");
        assert!(doc.contains("new hits"), "{doc}");
        assert!(!doc.contains("old hits"), "{doc}");
        assert!(doc.contains("old repo"), "{doc}");
        assert!(!doc.contains("old header"), "{doc}");
        // In SUITES order: breaker, then the cache, then the repository.
        let at = |s: &str| doc.find(s).unwrap();
        assert!(at("old breaker") < at("new hits") && at("new hits") < at("old repo"));
    }

    #[test]
    fn sections_other_commands_write_are_kept() {
        let kept = "# Benchmarks\n\n## stratum / repository\n\nold repo\n\n## stratum load / sweep\n\n<!-- BEGIN GENERATED: x (cargo xtask load --sweep) -->\nthe table\n<!-- END GENERATED: x -->\n";
        let fresh = [(
            "stratum / repository".to_owned(),
            "\n## stratum / repository\n\nnew repo\n".to_owned(),
        )];
        let doc = document(kept, &fresh);
        assert!(
            doc.contains("new repo") && !doc.contains("old repo"),
            "{doc}"
        );
        assert!(doc.contains("\n## stratum load / sweep\n\n<!-- BEGIN GENERATED: x (cargo xtask load --sweep) -->\nthe table\n"), "{doc}");
        assert!(doc.find("new repo").unwrap() < doc.find("the table").unwrap());
    }

    #[test]
    fn a_section_keeps_medians_and_the_benchs_own_summary() {
        let out = "\
Benchmarking closed/stratum: Warming up for 1.0000 s
closed/stratum          time:   [9.1012 ns 9.3641 ns 9.6000 ns]
Found 3 outliers among 30 measurements (10.00%)
  2 (6.67%) high mild
closed/a_rather_long_benchmark_name
                        time:   [70.001 ns 71.460 ns 72.900 ns]
                        change: [-1.0% +0.2% +1.1%] (p = 0.70 > 0.05)
                        No change in performance detected.

| threads | stratum ns | failsafe ns | ratio |
|---|---|---|---|
| 1 | 9.36 | 71.46 | 0.131 |
";
        let s = section("stratum-breaker", "breaker", "closed-state cost", out);
        assert!(s.contains("| `closed/stratum` | 9.3641 ns |"), "{s}");
        assert!(
            s.contains("| `closed/a_rather_long_benchmark_name` | 71.460 ns |"),
            "{s}"
        );
        assert!(s.contains("| 1 | 9.36 | 71.46 | 0.131 |"), "{s}");
        assert!(!s.contains("outliers"), "{s}");
        assert!(!s.contains("high mild"), "{s}");
        assert!(!s.contains("No change"), "{s}");
        assert!(
            s.contains("`cargo bench -p stratum-breaker --bench breaker`"),
            "{s}"
        );
    }
}
