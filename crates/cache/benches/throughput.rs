//! Get-heavy Zipf throughput on 1 and 2 threads: stratum (S3-FIFO, S3-FIFO
//! with TinyLFU admission and exact LRU, with a TTL and statistics on) against moka and quick_cache sync
//! caches, in the same run. Each op is a get, and an insert on a miss.
//!
//! Criterion reports each case; afterwards a manual timing loop takes the
//! median of 21 interleaved rounds per cache (`STRATUM_BENCH_ROUNDS`) and
//! prints ops/s, the stratum/peer ratios, and a closing line with the
//! stratum S3-FIFO / quick_cache ratio per thread count (the goal).
//!
//! A second shape follows (manual loop only): capacity 50 000 over 100 000
//! Zipf 0.99 keys, 95 % gets and 5 % inserts (a get does not insert on a
//! miss), `Arc<[u8]>` values of 64 bytes, stratum S3-FIFO with a TTL
//! against quick_cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use stratum_cache::{Admission, Cache, CacheBuilder, Policy};

const KEYS: u64 = 100_000;
const CAPACITY: u64 = 10_000;
const OPS_PER_THREAD: usize = 200_000;

/// The operations every contender offers.
trait Contender: Send + Sync {
    fn get(&self, k: u64) -> Option<u64>;
    fn insert(&self, k: u64, v: u64);
}

struct Stratum(stratum_cache::ShardedCache<u64, u64>);
impl Contender for Stratum {
    fn get(&self, k: u64) -> Option<u64> {
        Cache::get(&self.0, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        Cache::insert(&self.0, k, v);
    }
}

struct Moka(moka::sync::Cache<u64, u64>);
impl Contender for Moka {
    fn get(&self, k: u64) -> Option<u64> {
        self.0.get(&k)
    }
    fn insert(&self, k: u64, v: u64) {
        self.0.insert(k, v);
    }
}

struct Quick(quick_cache::sync::Cache<u64, u64>);
impl Contender for Quick {
    fn get(&self, k: u64) -> Option<u64> {
        self.0.get(&k)
    }
    fn insert(&self, k: u64, v: u64) {
        self.0.insert(k, v);
    }
}

fn contenders() -> Vec<(&'static str, Arc<dyn Contender>)> {
    let stratum = |policy, admission| {
        // Expiry and statistics on, as in production.
        CacheBuilder::new(CAPACITY)
            .policy(policy)
            .admission(admission)
            .time_to_live(Duration::from_secs(3_600))
            .build()
            .unwrap()
    };
    vec![
        (
            "stratum-s3fifo",
            Arc::new(Stratum(stratum(Policy::S3Fifo, Admission::Ghost))) as Arc<dyn Contender>,
        ),
        (
            "stratum-s3fifo-tinylfu",
            Arc::new(Stratum(stratum(Policy::S3Fifo, Admission::Frequency))),
        ),
        (
            "stratum-lru",
            Arc::new(Stratum(stratum(Policy::Lru, Admission::Ghost))),
        ),
        ("moka", Arc::new(Moka(moka::sync::Cache::new(CAPACITY)))),
        (
            "quick_cache",
            Arc::new(Quick(quick_cache::sync::Cache::new(CAPACITY as usize))),
        ),
    ]
}

fn run_ops(cache: &dyn Contender, trace: &[u64]) {
    for &k in trace {
        if black_box(cache.get(k)).is_none() {
            cache.insert(k, k);
        }
    }
}

/// Runs one trace per thread on `threads` threads; returns the wall time.
fn run_threads(cache: &Arc<dyn Contender>, traces: &[Vec<u64>], threads: usize) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for trace in traces.iter().take(threads) {
            let cache = Arc::clone(cache);
            s.spawn(move || run_ops(&*cache, trace));
        }
    });
    start.elapsed()
}

/// The process's CPU time so far (user + system, all threads, in clock
/// ticks of usually 10 ms), from `/proc/self/stat`: the profiling modes
/// print ops per CPU second too, which other processes on a loaded machine
/// disturb less than wall time. `None` off Linux.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is 3rd,
    // utime the 14th and stime the 15th of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// How many times a profiling mode replays its trace
/// (`STRATUM_PROFILE_RUNS`, default 50).
fn profile_runs() -> usize {
    std::env::var("STRATUM_PROFILE_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50)
}

/// Prints a profiling loop's wall and CPU throughput.
fn report_profile(name: &str, ops: usize, wall: Duration, cpu: Option<u64>) {
    let cpu = cpu.map_or(String::new(), |t| {
        format!(
            ", {:.2} Mops per CPU second",
            ops as f64 / (t as f64 / 100.0) / 1e6
        )
    });
    println!(
        "{name}: {:.2} Mops/s{cpu}",
        ops as f64 / wall.as_secs_f64() / 1e6
    );
}

/// The second shape's operations: `(key, is_insert)`.
fn mixed_trace(seed: u64) -> Vec<(u64, bool)> {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let keys = support::zipf_trace(KEYS, 0.99, OPS_PER_THREAD, seed);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    keys.into_iter()
        .map(|k| (k, rng.random::<f64>() < 0.05))
        .collect()
}

/// The second shape: medians of interleaved rounds, stratum / quick_cache.
fn arc_values_shape(rounds: usize) {
    const CAP: u64 = 50_000;
    type Value = Arc<[u8]>;
    // A value per key (a hit clones that key's Arc, as a real cache would).
    let values: Vec<Value> = (0..KEYS).map(|k| Arc::from(vec![k as u8; 64])).collect();
    let traces: Vec<Vec<(u64, bool)>> = (0..2).map(|t| mixed_trace(300 + t)).collect();
    let stratum = CacheBuilder::<u64, Value>::new(CAP)
        .time_to_live(Duration::from_secs(3_600))
        .build()
        .unwrap();
    let quick = quick_cache::sync::Cache::<u64, Value>::new(CAP as usize);
    // Warm both to a steady state: every key of the traces, once.
    for &(k, _) in traces.iter().flatten() {
        let v = &values[k as usize % values.len()];
        Cache::insert(&stratum, k, v.clone());
        quick.insert(k, v.clone());
    }
    let run = |threads: usize, ours: bool| {
        let start = Instant::now();
        std::thread::scope(|s| {
            for trace in traces.iter().take(threads) {
                let (stratum, quick, values) = (&stratum, &quick, &values);
                s.spawn(move || {
                    for &(k, insert) in trace {
                        let value = &values[k as usize % values.len()];
                        if ours {
                            if insert {
                                Cache::insert(stratum, k, value.clone());
                            } else {
                                black_box(Cache::get(stratum, &k));
                            }
                        } else if insert {
                            quick.insert(k, value.clone());
                        } else {
                            black_box(quick.get(&k));
                        }
                    }
                });
            }
        });
        start.elapsed()
    };
    // Profiling mode for this shape: `STRATUM_PROFILE=arc-stratum-s3fifo`
    // (or `arc-quick_cache`) runs only that cache's loop, 1 thread.
    if let Ok(only) = std::env::var("STRATUM_PROFILE") {
        let ours = only == "arc-stratum-s3fifo";
        if ours || only == "arc-quick_cache" {
            let before = cpu_ticks();
            let t: Duration = (0..profile_runs()).map(|_| run(1, ours)).sum();
            let cpu = cpu_ticks().zip(before).map(|(a, b)| a - b);
            report_profile(&only, profile_runs() * OPS_PER_THREAD, t, cpu);
        }
        return;
    }
    println!(
        "\nsecond shape: capacity {CAP}, Zipf 0.99 over {KEYS} keys, 95 % gets / 5 % inserts, Arc<[u8]> values; median of {rounds} interleaved rounds"
    );
    for threads in [1usize, 2] {
        let mut ratios = Vec::new();
        for _ in 0..rounds {
            let ours = run(threads, true);
            let theirs = run(threads, false);
            ratios.push(theirs.as_secs_f64() / ours.as_secs_f64());
        }
        println!(
            "stratum-s3fifo (TTL 1 h + statistics on) / quick_cache, Arc<[u8]> values, {threads} thread(s): {:.2}",
            support::median(&mut ratios)
        );
    }
}

fn main() {
    if std::env::var("STRATUM_PROFILE").is_ok_and(|p| p.starts_with("arc-")) {
        arc_values_shape(1);
        return;
    }
    let traces: Vec<Vec<u64>> = (0..2)
        .map(|t| support::zipf_trace(KEYS, 0.99, OPS_PER_THREAD, 100 + t))
        .collect();
    let caches = contenders();
    for (_, cache) in &caches {
        run_ops(&**cache, &traces[0]); // warm up to a steady state
    }

    // Misses cost an insert and an eviction, so a cache with a lower hit
    // ratio on this trace does more work per op: print each one's.
    for (name, cache) in &caches {
        let hits = traces[1]
            .iter()
            .filter(|&&k| {
                let hit = cache.get(k).is_some();
                if !hit {
                    cache.insert(k, k);
                }
                hit
            })
            .count();
        println!(
            "{name}: hit ratio {:.2} % on this trace",
            100.0 * hits as f64 / traces[1].len() as f64
        );
    }

    // Profiling mode: `STRATUM_PROFILE=<cache name>` runs only that cache's
    // loop (e.g. under `perf record`) and skips everything else.
    if let Ok(only) = std::env::var("STRATUM_PROFILE") {
        for (name, cache) in caches.iter().filter(|(n, _)| *n == only) {
            let before = cpu_ticks();
            let t: Duration = (0..profile_runs())
                .map(|_| run_threads(cache, &traces, 1))
                .sum();
            let cpu = cpu_ticks().zip(before).map(|(a, b)| a - b);
            report_profile(name, profile_runs() * OPS_PER_THREAD, t, cpu);
        }
        return;
    }

    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for threads in [1usize, 2] {
        let mut group = criterion.benchmark_group(format!("zipf_get_heavy_{threads}t"));
        group.throughput(Throughput::Elements((OPS_PER_THREAD * threads) as u64));
        for (name, cache) in &caches {
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| run_threads(cache, &traces, threads))
                        .sum()
                })
            });
        }
        group.finish();
    }

    // Medians of a manual loop, so the ratios below come from this run. The
    // caches take turns within each round, so load from other processes on
    // this shared machine hits all of them alike; the ratio column is the
    // median of the per-round ratios. For A/B comparisons of two builds,
    // `STRATUM_BENCH_ROUNDS=<n>` sets the number of rounds and
    // `STRATUM_BENCH_CACHES=stratum-s3fifo,quick_cache` limits the loop to
    // those caches (the first one listed is the reference of the ratios).
    let rounds: usize = std::env::var("STRATUM_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(21);
    let caches: Vec<_> = match std::env::var("STRATUM_BENCH_CACHES") {
        Ok(only) => {
            let only: Vec<&str> = only.split(',').collect();
            caches
                .into_iter()
                .filter(|(n, _)| only.contains(n))
                .collect()
        }
        Err(_) => caches,
    };
    let reference = caches.first().map_or("none", |(n, _)| *n);
    println!(
        "\nmedian of {rounds} interleaved rounds, {OPS_PER_THREAD} ops per thread, Zipf 0.99 over {KEYS} keys, capacity {CAPACITY}"
    );
    println!("| threads | cache | Mops/s | {reference} / this (median of round ratios) |");
    println!("|---|---|---|---|");
    let mut summary = Vec::new();
    for threads in [1usize, 2] {
        let mut mops = vec![Vec::new(); caches.len()];
        for _ in 0..rounds {
            for (i, (_, cache)) in caches.iter().enumerate() {
                let t = run_threads(cache, &traces, threads);
                mops[i].push((OPS_PER_THREAD * threads) as f64 / t.as_secs_f64() / 1e6);
            }
        }
        for (i, (name, _)) in caches.iter().enumerate() {
            let mut ratios: Vec<f64> = mops[0]
                .iter()
                .zip(&mops[i])
                .map(|(ours, m)| ours / m)
                .collect();
            let ratio = support::median(&mut ratios);
            let m = support::median(&mut mops[i].clone());
            println!("| {threads} | {name} | {m:.2} | {ratio:.2} |");
            if *name == "quick_cache" {
                summary.push((threads, ratio));
            }
        }
    }
    for (threads, ratio) in summary {
        println!(
            "{reference} (TTL 1 h + statistics on) / quick_cache, {threads} thread(s): {ratio:.2} (goal: >= 1.00 on 2 threads)"
        );
    }
    if std::env::var("STRATUM_BENCH_CACHES").map_or(true, |c| c.contains("quick_cache")) {
        arc_values_shape(rounds);
    }
}
