//! The trend rules on synthetic series with known change points: detection
//! delay and false alarms per simulated week, on seeds the defaults were
//! tuned on and on seeds they never saw. Prints the Markdown that
//! `cargo xtask trends` puts in docs/trends.md.
// A report program: printing is its job; a failed unwrap is a failed run.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/series.rs"]
mod series;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use series::{Change, Fired, Scenario, Setup, family};

const TUNE: &[u64] = &[1, 2, 3, 4];
const REPORT: &[u64] = &[11, 12, 13, 14, 15, 16, 17, 18];
const FAMILIES: [&str; 3] = ["regression", "error burn", "latency burn"];

fn h(hours: u64) -> Duration {
    Duration::from_secs(hours * 3600)
}

fn m(minutes: u64) -> Duration {
    Duration::from_secs(minutes * 60)
}

/// The scenarios and what each family should do on it (`true`: detect).
fn scenarios() -> Vec<(Scenario, [Option<bool>; 3])> {
    // Six stationary hours first: the 6 h burn window and the regression
    // baseline are full before anything changes.
    let lead = h(6);
    let s = |name: &str, after: Duration, change: Change| Scenario {
        name: name.to_owned(),
        change_at: lead,
        total: lead + after,
        change,
    };
    vec![
        (
            Scenario {
                name: "stationary, 1 week".into(),
                change_at: h(24 * 7),
                total: h(24 * 7),
                change: Change::None,
            },
            [Some(false), Some(false), Some(false)],
        ),
        (
            s(
                "slow drift: latency 2x over 24 h",
                h(30),
                Change::Drift {
                    over: h(24),
                    factor: 2.0,
                },
            ),
            [None, Some(false), None],
        ),
        (
            s("step: latency 2x", h(1), Change::Step { factor: 2.0 }),
            [Some(true), Some(false), None],
        ),
        (
            s("step: latency 4x", h(1), Change::Step { factor: 4.0 }),
            [Some(true), Some(false), Some(true)],
        ),
        (
            s(
                "spike: latency 3x for 60 s",
                m(30),
                Change::Spike {
                    length: Duration::from_secs(60),
                    factor: 3.0,
                },
            ),
            [Some(false), Some(false), Some(false)],
        ),
        (
            s(
                "spike: latency 3x for 110 s",
                m(30),
                Change::Spike {
                    length: Duration::from_secs(110),
                    factor: 3.0,
                },
            ),
            [Some(false), Some(false), Some(false)],
        ),
        (
            s(
                "spike: latency 3x for 5 min",
                m(30),
                Change::Spike {
                    length: m(5),
                    factor: 3.0,
                },
            ),
            [Some(true), Some(false), Some(false)],
        ),
        (
            s(
                "errors: 10 % (100x budget)",
                h(1),
                Change::Errors { rate: 0.1 },
            ),
            [Some(false), Some(true), Some(false)],
        ),
        (
            s(
                "errors: 2 % (20x budget)",
                h(2),
                Change::Errors { rate: 0.02 },
            ),
            [Some(false), Some(true), Some(false)],
        ),
        (
            s(
                "error spike: 20 % for 2 min",
                h(1),
                Change::ErrorSpike {
                    length: m(2),
                    rate: 0.2,
                },
            ),
            [Some(false), Some(false), Some(false)],
        ),
        (
            s(
                "outage: 100 % errors for 1 min",
                h(1),
                Change::ErrorSpike {
                    length: m(1),
                    rate: 1.0,
                },
            ),
            [Some(false), Some(true), Some(false)],
        ),
    ]
}

/// One family on one scenario over a set of seeds.
#[derive(Default)]
struct Cell {
    runs: usize,
    detected: usize,
    delays: Vec<f64>,
    began_errors: Vec<f64>,
    false_alarms: usize,
}

fn cell(scenario: &Scenario, runs: &[Vec<Fired>], fam: &str) -> Cell {
    let mut c = Cell {
        runs: runs.len(),
        ..Cell::default()
    };
    let change = matches!(scenario.change, Change::None);
    for fired in runs {
        let mine: Vec<&Fired> = fired.iter().filter(|f| family(&f.rule) == fam).collect();
        c.false_alarms += mine.iter().filter(|f| f.at < scenario.change_at).count();
        if change {
            continue;
        }
        if let Some(first) = mine.iter().find(|f| f.at >= scenario.change_at) {
            c.detected += 1;
            c.delays
                .push((first.at - scenario.change_at).as_secs_f64() / 60.0);
            if let Some(b) = first.began {
                c.began_errors
                    .push(b.as_secs_f64() - scenario.change_at.as_secs_f64());
            }
        }
    }
    c
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn run_all(scenario: &Scenario, seeds: &[u64], setup: &Setup) -> Vec<Vec<Fired>> {
    // Two threads: the build machine has two cores.
    let (a, b) = seeds.split_at(seeds.len() / 2);
    std::thread::scope(|s| {
        let left = s.spawn(|| {
            a.iter()
                .map(|&seed| series::run(scenario, seed, setup))
                .collect::<Vec<_>>()
        });
        let mut right: Vec<Vec<Fired>> = b
            .iter()
            .map(|&seed| series::run(scenario, seed, setup))
            .collect();
        let mut out = left.join().unwrap();
        out.append(&mut right);
        out
    })
}

fn main() {
    let started = Instant::now();
    let setup = Setup::default();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // binary without it (unoptimised): then one short series only, as a
    // smoke test of the harness.
    if !std::env::args().any(|a| a == "--bench") {
        let step = Scenario {
            name: "smoke".into(),
            change_at: m(20),
            total: m(30),
            change: Change::Step { factor: 2.0 },
        };
        let fired = series::run(&step, 1, &setup);
        assert!(
            fired.iter().any(|f| family(&f.rule) == "regression"),
            "{fired:?}"
        );
        println!("trends smoke run: {} event(s)", fired.len());
        return;
    }
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| series | seeds | rule | expected | detected | delay min (median / max) | change began (median error) | false alarms |\n|---|---|---|---|---|---|---|---|"
    );
    let mut goals = Vec::new();
    for (scenario, expected) in scenarios() {
        for (label, seeds) in [("tune", TUNE), ("report", REPORT)] {
            let runs = run_all(&scenario, seeds, &setup);
            for (i, fam) in FAMILIES.iter().enumerate() {
                let mut c = cell(&scenario, &runs, fam);
                let want = match expected[i] {
                    Some(true) => "alert",
                    Some(false) => "none",
                    None => "-",
                };
                let stationary = matches!(scenario.change, Change::None);
                let detected = if stationary {
                    "-".to_owned()
                } else {
                    format!("{}/{}", c.detected, c.runs)
                };
                let max = c.delays.iter().copied().reduce(f64::max);
                let delay = match (median(&mut c.delays), max) {
                    (Some(med), Some(max)) => format!("{med:.1} / {max:.1}"),
                    _ => "-".to_owned(),
                };
                let began =
                    median(&mut c.began_errors).map_or("-".to_owned(), |e| format!("{e:+.0} s"));
                let weeks = scenario
                    .total
                    .as_secs_f64()
                    .min(scenario.change_at.as_secs_f64())
                    / (7.0 * 86_400.0)
                    * c.runs as f64;
                let false_alarms = if stationary {
                    format!(
                        "{} in {:.0} weeks ({:.2}/week)",
                        c.false_alarms,
                        weeks,
                        c.false_alarms as f64 / weeks
                    )
                } else {
                    c.false_alarms.to_string()
                };
                let _ = writeln!(
                    table,
                    "| {} | {label} {} | {fam} | {want} | {detected} | {delay} | {began} | {false_alarms} |",
                    scenario.name,
                    seeds_text(seeds),
                );
                if label == "report" {
                    goals.push((scenario.name.clone(), fam.to_string(), c, weeks));
                }
            }
        }
        eprintln!(
            "{} done at {:.0} s",
            scenario.name,
            started.elapsed().as_secs_f64()
        );
    }
    println!("{table}");
    println!("{}", goal_lines(&goals, &setup));
    println!(
        "Setup: {} calls/s, log-normal latency (median {} ms, sigma {}, p99 about 64 ms), {} % errors at rest; the defaults of `[monitor.alerts]` except the latency objective's threshold ({} ms, since this series' p99 is 64 ms); `[monitor.percentiles]` defaults (60 s window); evaluation every 5 s. Simulated in {:.0} s of wall time.",
        setup.rate,
        series::MEDIAN_SECONDS * 1000.0,
        series::SIGMA,
        series::BASE_ERRORS * 100.0,
        setup.latency_threshold.as_millis(),
        started.elapsed().as_secs_f64()
    );
}

fn seeds_text(seeds: &[u64]) -> String {
    match (seeds.first(), seeds.last()) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => String::new(),
    }
}

/// The goal lines, met or not, on the report seeds.
fn goal_lines(goals: &[(String, String, Cell, f64)], setup: &Setup) -> String {
    let find = |name: &str, fam: &str| {
        goals
            .iter()
            .find(|(n, f, _, _)| n == name && f == fam)
            .expect("scenario in the table")
    };
    let mut out = String::from("Goals (report seeds only):\n\n");
    let (_, _, step, _) = find("step: latency 2x", "regression");
    let worst = step
        .delays
        .iter()
        .copied()
        .reduce(f64::max)
        .unwrap_or(f64::INFINITY);
    let _ = writeln!(
        out,
        "- a 2x p99 step detected within 5 minutes: {} ({}/{} runs detected, slowest after {worst:.1} min)",
        met(step.detected == step.runs && worst <= 5.0),
        step.detected,
        step.runs
    );
    let stationary: Vec<_> = goals
        .iter()
        .filter(|(n, ..)| n == "stationary, 1 week")
        .collect();
    let alarms: usize = stationary.iter().map(|(_, _, c, _)| c.false_alarms).sum();
    let weeks = stationary.first().map_or(0.0, |g| g.3);
    let _ = writeln!(
        out,
        "- fewer than one false alarm per simulated week on the stationary series: {} ({alarms} alarms from all rules in {weeks:.0} simulated weeks)",
        met((alarms as f64) < weeks),
    );
    let spikes: Vec<_> = goals
        .iter()
        .filter(|(n, ..)| n.starts_with("spike:") && !n.ends_with("5 min"))
        .collect();
    let spike_alarms: usize = spikes
        .iter()
        .map(|(_, _, c, _)| c.detected + c.false_alarms)
        .sum();
    let _ = writeln!(
        out,
        "- no alert for a spike shorter than the confirmation window ({} s): {} ({spike_alarms} alerts from all rules on 60 s and 110 s spikes of 3x latency)",
        setup.regression.confirm.as_secs(),
        met(spike_alarms == 0),
    );
    out
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**not met**" }
}
