//! The exporter's memory stays bounded however many histogram samples arrive,
//! as long as upkeep runs; without upkeep it grows with every sample (the
//! control, which proves the measurement can see growth).
//!
//! Its own test binary (one process, one test), so the resident-memory figure
//! read from `/proc/self` belongs to this test alone. Upkeep here is the
//! started monitor's own background loop, driven by tokio's paused clock
//! (no wall-clock waiting).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

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

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn millions_of_samples_with_upkeep_stay_bounded() {
    if !cfg!(target_os = "linux") {
        return; // needs /proc/self for resident memory
    }
    let upkeep = Duration::from_secs(5);
    let config = MonitorConfig::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .upkeep_interval(upkeep)
        .build()
        .unwrap();
    let monitor = Monitor::new(config).unwrap();
    let running = monitor.start().await.unwrap();
    let histograms: Vec<metrics::Histogram> = monitor.in_scope(|| {
        ["find", "insert", "update", "delete"]
            .into_iter()
            .map(|op| metrics::histogram!("stratum_test_op_duration_seconds", "op" => op))
            .collect()
    });
    let record = |n: usize| {
        for i in 0..n {
            // Deterministic spread over the buckets: 50 µs .. ~5 s.
            let v = 0.000_05 * (1 + (i * 7919) % 100_000) as f64;
            histograms[i % histograms.len()].record(v);
        }
    };
    // Batches of 50 k samples, one upkeep interval apart: the background
    // loop runs its upkeep in between (paused time advances instantly).
    let record_with_background_upkeep = |batches: usize| async move {
        for _ in 0..batches {
            record(50_000);
            tokio::time::sleep(upkeep).await;
        }
    };

    // Warm up: allocator arenas, the distributions, the first render.
    record_with_background_upkeep(4).await;
    let rendered_before = series_lines(&monitor.render());
    let before = rss();

    // 2 M samples while the started monitor's upkeep loop runs.
    record_with_background_upkeep(SAMPLES / 50_000).await;
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

    // Control: the same samples with the loop stopped are all buffered.
    running.shutdown().await;
    let before = rss();
    record(SAMPLES);
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
