//! The exporter's memory stays bounded however many histogram samples arrive,
//! as long as upkeep runs; without upkeep it grows with every sample (the
//! control, which proves the measurement can see growth).
//!
//! Its own test binary (one process, one test), so the resident-memory figure
//! read from `/proc/self` belongs to this test alone.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use stratum_monitor::{Monitor, MonitorConfig, ProcSelf, ResourceSource};

const SAMPLES: usize = 2_000_000;
/// Each buffered sample costs about 8.5 bytes (an `f64` slot in 64-slot
/// blocks), so 2 M buffered samples are about 17 MB.
const MB: u64 = 1024 * 1024;

fn rss() -> u64 {
    ProcSelf::default().sample().resident_memory_bytes.unwrap()
}

fn series_lines(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#')).count()
}

#[test]
fn millions_of_samples_with_upkeep_stay_bounded() {
    if !cfg!(target_os = "linux") {
        return; // needs /proc/self for resident memory
    }
    let monitor = Monitor::new(MonitorConfig::default()).unwrap();
    let histograms: Vec<metrics::Histogram> = monitor.in_scope(|| {
        ["find", "insert", "update", "delete"]
            .into_iter()
            .map(|op| metrics::histogram!("stratum_test_op_duration_seconds", "op" => op))
            .collect()
    });
    let record = |n: usize, upkeep_every: Option<usize>| {
        for i in 0..n {
            // Deterministic spread over the buckets: 50 µs .. ~5 s.
            let v = 0.000_05 * (1 + (i * 7919) % 100_000) as f64;
            histograms[i % histograms.len()].record(v);
            if let Some(every) = upkeep_every
                && i % every == every - 1
            {
                monitor.run_upkeep();
            }
        }
    };

    // Warm up: allocator arenas, the distributions, the first render.
    record(200_000, Some(50_000));
    let rendered_before = series_lines(&monitor.render());
    let before = rss();

    // 2 M samples, upkeep every 50 k (what the background task does on its interval).
    record(SAMPLES, Some(50_000));
    monitor.run_upkeep();
    let with_upkeep = rss();
    let rendered = monitor.render();
    assert_eq!(
        series_lines(&rendered),
        rendered_before,
        "series count changed"
    );
    let total = 200_000 + SAMPLES;
    let counts: usize = rendered
        .lines()
        .filter(|l| l.starts_with("stratum_test_op_duration_seconds_count"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(counts, total, "every sample is counted");
    let growth = with_upkeep.saturating_sub(before);
    eprintln!(
        "with upkeep: RSS +{} KiB over {SAMPLES} samples",
        growth / 1024
    );
    assert!(
        growth < 4 * MB,
        "with upkeep, {SAMPLES} samples grew RSS by {} KiB",
        growth / 1024
    );

    // Control: the same samples without upkeep are all buffered.
    let before = rss();
    record(SAMPLES, None);
    let without_upkeep = rss();
    let buffered_growth = without_upkeep.saturating_sub(before);
    eprintln!(
        "without upkeep: RSS +{} KiB over {SAMPLES} samples",
        buffered_growth / 1024
    );
    assert!(
        buffered_growth > 12 * MB,
        "without upkeep {SAMPLES} samples grew RSS by only {} KiB: the measurement cannot see growth",
        buffered_growth / 1024
    );
    monitor.run_upkeep();
    assert_eq!(series_lines(&monitor.render()), rendered_before);
}
