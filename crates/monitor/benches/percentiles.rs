//! Recording cost: the rolling-window HDR tracker against a raw
//! `hdrhistogram::Histogram` (the peer), and the `metrics` facade into the
//! Prometheus recorder. Criterion measures each; a manual timing loop in the
//! same run prints medians and the stratum/peer ratios.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use hdrhistogram::Histogram;
use stratum_monitor::{LatencyTracker, Monitor, MonitorConfig, PercentileConfig, SystemClock};

/// Latencies spread 1 µs .. ~100 ms, precomputed so the loop measures recording only.
fn latencies() -> Vec<Duration> {
    (0..4096u64)
        .map(|i| Duration::from_micros(1 + (i * 7919) % 100_000))
        .collect()
}

fn raw_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap()
}

fn tracker() -> LatencyTracker {
    LatencyTracker::with_clock(PercentileConfig::default(), Arc::new(SystemClock)).unwrap()
}

fn bench_record(c: &mut Criterion, values: &[Duration]) {
    let mut group = c.benchmark_group("record_latency");
    let mut raw = raw_histogram();
    let mut i = 0usize;
    group.bench_function("hdrhistogram_raw", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            raw.saturating_record(black_box(values[i]).as_micros() as u64);
        })
    });
    // What a hand-rolled thread-safe window needs at least: a lock and a clock read.
    let locked = parking_lot::Mutex::new(raw_histogram());
    group.bench_function("hdrhistogram_mutex_and_clock", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(Instant::now());
            locked
                .lock()
                .saturating_record(black_box(values[i]).as_micros() as u64);
        })
    });
    let t = tracker();
    let h = t.operation("find").unwrap();
    group.bench_function("rolling_tracker_handle", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            h.record(black_box(values[i]));
        })
    });
    group.bench_function("rolling_tracker_by_name", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            t.record(black_box("find"), black_box(values[i]));
        })
    });
    group.finish();

    let mut group = c.benchmark_group("read_percentiles");
    for v in values {
        h.record(*v);
    }
    group.bench_function("rolling_tracker_p50_p99_p999", |b| {
        b.iter(|| black_box(h.percentiles()))
    });
    let mut raw = raw_histogram();
    for v in values {
        raw.record(v.as_micros() as u64).unwrap();
    }
    group.bench_function("hdrhistogram_raw_p50_p99_p999", |b| {
        b.iter(|| {
            black_box((
                raw.value_at_quantile(0.5),
                raw.value_at_quantile(0.95),
                raw.value_at_quantile(0.99),
                raw.value_at_quantile(0.999),
            ))
        })
    });
    group.finish();
}

fn bench_facade(c: &mut Criterion, values: &[Duration]) {
    let monitor = Monitor::new(MonitorConfig::default()).unwrap();
    let (histogram, counter) = monitor.in_scope(|| {
        (
            metrics::histogram!("stratum_bench_duration_seconds", "op" => "find"),
            metrics::counter!("stratum_bench_total", "op" => "find"),
        )
    });
    let mut group = c.benchmark_group("metrics_facade");
    let mut i = 0usize;
    let mut n = 0u64;
    group.bench_function("histogram_handle_record", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            histogram.record(black_box(values[i]).as_secs_f64());
            // Upkeep as the background task would, so buffers stay small.
            n += 1;
            if n.is_multiple_of(65_536) {
                monitor.run_upkeep();
            }
        })
    });
    group.bench_function("counter_handle_increment", |b| {
        b.iter(|| counter.increment(black_box(1)))
    });
    let recorder = monitor.recorder();
    metrics::with_local_recorder(&*recorder, || {
        group.bench_function("histogram_macro_record", |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                metrics::histogram!("stratum_bench_duration_seconds", "op" => "find")
                    .record(black_box(values[i]).as_secs_f64());
                n += 1;
                if n.is_multiple_of(65_536) {
                    monitor.run_upkeep();
                }
            })
        });
    });
    group.finish();
}

/// Median ns/op of `rounds` timed batches of `batch` calls.
fn median_ns(rounds: usize, batch: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut per_op: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for i in 0..batch {
                f(i);
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    per_op.sort_by(|a, b| a.partial_cmp(b).unwrap());
    per_op[rounds / 2]
}

fn print_ratios(values: &[Duration]) {
    const ROUNDS: usize = 21;
    const BATCH: usize = 200_000;
    let mut raw = raw_histogram();
    let raw_ns = median_ns(ROUNDS, BATCH, |i| {
        raw.saturating_record(black_box(values[i & 4095]).as_micros() as u64)
    });
    let locked = parking_lot::Mutex::new(raw_histogram());
    let locked_ns = median_ns(ROUNDS, BATCH, |i| {
        black_box(Instant::now());
        locked
            .lock()
            .saturating_record(black_box(values[i & 4095]).as_micros() as u64)
    });
    let t = tracker();
    let h = t.operation("find").unwrap();
    let handle_ns = median_ns(ROUNDS, BATCH, |i| h.record(black_box(values[i & 4095])));
    let by_name_ns = median_ns(ROUNDS, BATCH, |i| {
        t.record(black_box("find"), black_box(values[i & 4095]))
    });

    let monitor = Monitor::new(MonitorConfig::default()).unwrap();
    let histogram =
        monitor.in_scope(|| metrics::histogram!("stratum_bench_duration_seconds", "op" => "find"));
    let facade_ns = median_ns(ROUNDS, BATCH, |i| {
        histogram.record(black_box(values[i & 4095]).as_secs_f64());
        if i % 65_536 == 65_535 {
            monitor.run_upkeep();
        }
    });
    let recorder = monitor.recorder();
    let macro_ns = metrics::with_local_recorder(&*recorder, || {
        median_ns(ROUNDS, BATCH, |i| {
            metrics::histogram!("stratum_bench_duration_seconds", "op" => "find")
                .record(black_box(values[i & 4095]).as_secs_f64());
            if i % 65_536 == 65_535 {
                monitor.run_upkeep();
            }
        })
    });

    println!("\nmedian ns/op over {ROUNDS} batches of {BATCH} (manual timing loop, same run):");
    println!("  hdrhistogram raw record (peer)        {raw_ns:8.1}");
    println!("  hdrhistogram + mutex + Instant::now    {locked_ns:8.1}");
    println!("  rolling tracker, handle               {handle_ns:8.1}");
    println!("  rolling tracker, by name              {by_name_ns:8.1}");
    println!("  metrics facade histogram handle       {facade_ns:8.1}");
    println!("  metrics facade histogram! macro       {macro_ns:8.1}");
    println!(
        "stratum/peer ratio (rolling handle / raw hdrhistogram): {:.2}",
        handle_ns / raw_ns
    );
    println!(
        "stratum/peer ratio (rolling handle / hdrhistogram + mutex + clock): {:.2}",
        handle_ns / locked_ns
    );
    println!(
        "stratum/peer ratio (rolling by name / raw hdrhistogram): {:.2}",
        by_name_ns / raw_ns
    );
    println!(
        "facade/peer ratio (histogram handle / raw hdrhistogram): {:.2}",
        facade_ns / raw_ns
    );
    println!(
        "facade/peer ratio (histogram! macro / raw hdrhistogram): {:.2}",
        macro_ns / raw_ns
    );
}

fn main() {
    let values = latencies();
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
    bench_record(&mut c, &values);
    bench_facade(&mut c, &values);
    c.final_summary();
    print_ratios(&values);
}
