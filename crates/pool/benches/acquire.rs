//! Acquire-and-release: stratum's `ManagedPool` against deadpool used
//! directly (its defaults, and with a 30 s wait timeout) and bb8, with 1, 2 and 64 concurrent tasks in the same run, on a
//! pool of 16. Each task gets an object, holds it across one yield (as an
//! operation awaiting I/O would) and drops it.
//!
//! Criterion measures throughput; a manual loop after it takes medians over
//! alternating rounds and prints the stratum/deadpool and stratum/bb8
//! throughput ratios and the p99 acquire latency at 64 tasks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use stratum_pool::{ManagedPool, Manager};
use tokio::runtime::Runtime;

const POOL_SIZE: usize = 16;
const CONCURRENCY: [usize; 3] = [1, 2, 64];

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

struct Stratum;
impl Manager for Stratum {
    type Resource = u64;
    type Error = Never;
    async fn create(&self) -> Result<u64, Never> {
        Ok(7)
    }
}

struct Dead;
impl deadpool::managed::Manager for Dead {
    type Type = u64;
    type Error = Infallible;
    async fn create(&self) -> Result<u64, Infallible> {
        Ok(7)
    }
    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

struct Bb8;
impl bb8::ManageConnection for Bb8 {
    type Connection = u64;
    type Error = Infallible;
    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(7)
    }
    async fn is_valid(&self, _: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

#[derive(Clone)]
enum Pools {
    Stratum(ManagedPool<Stratum>),
    Deadpool(deadpool::managed::Pool<Dead>),
    DeadpoolTimeout(deadpool::managed::Pool<Dead>),
    Bb8(bb8::Pool<Bb8>),
}

impl Pools {
    fn all(rt: &Runtime) -> Vec<(&'static str, Pools)> {
        rt.block_on(async {
            let stratum = ManagedPool::builder(Stratum)
                .name("bench")
                // `POOL_BENCH_NOLEAK=1` turns leak detection off, to measure its cost.
                .leak_detection_threshold(
                    std::env::var_os("POOL_BENCH_NOLEAK")
                        .is_none()
                        .then_some(Duration::from_secs(60)),
                )
                .min_size(POOL_SIZE)
                .max_size(POOL_SIZE)
                .adaptive(false)
                .build()
                .unwrap();
            // deadpool as most users run it: its defaults, so no wait timeout.
            let dead = deadpool::managed::Pool::builder(Dead)
                .max_size(POOL_SIZE)
                .build()
                .unwrap();
            // deadpool with the guarantee stratum gives: a bounded wait.
            let dead_timeout = deadpool::managed::Pool::builder(Dead)
                .max_size(POOL_SIZE)
                .wait_timeout(Some(Duration::from_secs(30)))
                .runtime(deadpool::Runtime::Tokio1)
                .build()
                .unwrap();
            let bb8 = bb8::Pool::builder()
                .max_size(POOL_SIZE as u32)
                .build(Bb8)
                .await
                .unwrap();
            // Fill all three so creation is outside the measurement.
            let pools = vec![
                ("stratum", Pools::Stratum(stratum)),
                ("deadpool", Pools::Deadpool(dead)),
                ("bb8", Pools::Bb8(bb8)),
                ("deadpool+timeout", Pools::DeadpoolTimeout(dead_timeout)),
            ];
            for (_, pool) in &pools {
                run(pool, POOL_SIZE, POOL_SIZE as u64 * 4, false).await;
            }
            pools
        })
    }

    /// One acquire, a yield while holding, one release; returns the acquire time.
    async fn cycle(&self) -> Duration {
        let start = Instant::now();
        match self {
            Pools::Stratum(p) => {
                let lease = p.get().await.unwrap();
                let waited = start.elapsed();
                tokio::task::yield_now().await;
                drop(lease);
                waited
            }
            Pools::Deadpool(p) | Pools::DeadpoolTimeout(p) => {
                let object = p.get().await.unwrap();
                let waited = start.elapsed();
                tokio::task::yield_now().await;
                drop(object);
                waited
            }
            Pools::Bb8(p) => {
                let conn = p.get().await.unwrap();
                let waited = start.elapsed();
                tokio::task::yield_now().await;
                drop(conn);
                waited
            }
        }
    }
}

/// `ops` cycles spread over `tasks` tasks; the elapsed time, and every
/// acquire latency in nanoseconds when `sample` is set.
async fn run(pool: &Pools, tasks: usize, ops: u64, sample: bool) -> (Duration, Vec<u64>) {
    let per_task = (ops / tasks as u64).max(1);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(if sample { per_task as usize } else { 0 });
                for _ in 0..per_task {
                    let waited = pool.cycle().await;
                    if sample {
                        samples.push(waited.as_nanos() as u64);
                    }
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.unwrap());
    }
    (start.elapsed(), all)
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn acquire_release(c: &mut Criterion) {
    let rt = runtime();
    let pools = Pools::all(&rt);
    for tasks in CONCURRENCY {
        let mut group = c.benchmark_group(format!("acquire_release/{tasks}_tasks"));
        group
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1))
            .sample_size(20);
        for (name, pool) in &pools {
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(run(pool, tasks, iters.max(tasks as u64), false))
                        .0
                })
            });
        }
        group.finish();
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(samples: &mut [u64], p: f64) -> u64 {
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

/// Alternating rounds, medians of throughput and of the p99 at each
/// concurrency, and the ratios the goals are stated in.
fn ratios() {
    const ROUNDS: usize = 15;
    const OPS: u64 = 64_000;
    let rt = runtime();
    let pools = Pools::all(&rt);
    println!(
        "\n== medians over {ROUNDS} alternating rounds of {OPS} acquire+release, pool of {POOL_SIZE} =="
    );
    for tasks in CONCURRENCY {
        let mut throughput = vec![Vec::new(); pools.len()];
        let mut p99 = vec![Vec::new(); pools.len()];
        for _ in 0..ROUNDS {
            for (i, (_, pool)) in pools.iter().enumerate() {
                let (elapsed, mut samples) = rt.block_on(run(pool, tasks, OPS, true));
                throughput[i].push(OPS as f64 / elapsed.as_secs_f64());
                p99[i].push(percentile(&mut samples, 0.99) as f64);
            }
        }
        let tput: Vec<f64> = throughput.iter_mut().map(|v| median(v)).collect();
        let p99: Vec<f64> = p99.iter_mut().map(|v| median(v)).collect();
        for (i, (name, _)) in pools.iter().enumerate() {
            println!(
                "{tasks:>2} tasks  {name:<16}  {:>10.0} ops/s  p99 acquire {:>8.1} us",
                tput[i],
                p99[i] / 1000.0
            );
        }
        println!(
            "{tasks:>2} tasks  throughput ratio stratum/deadpool {:.3}  stratum/bb8 {:.3}",
            tput[0] / tput[1],
            tput[0] / tput[2]
        );
        println!(
            "{tasks:>2} tasks  throughput ratio stratum/deadpool+timeout {:.3}",
            tput[0] / tput[3]
        );
        println!(
            "{tasks:>2} tasks  p99 acquire ratio stratum/deadpool {:.3}  stratum/bb8 {:.3}  stratum/deadpool+timeout {:.3}  (lower is better)",
            p99[0] / p99[1],
            p99[0] / p99[2],
            p99[0] / p99[3]
        );
    }
}

criterion_group!(benches, acquire_release);

/// `POOL_BENCH_FOCUS=<pool>:<tasks>:<rounds>` (pool one of stratum,
/// deadpool, bb8, deadpool+timeout) runs only that pool and concurrency,
/// for `perf record` and A/B timing; prints the elapsed time.
fn focus(spec: &str) {
    let mut parts = spec.split(':');
    let name = parts.next().unwrap();
    let tasks: usize = parts.next().unwrap().parse().unwrap();
    let rounds: usize = parts.next().unwrap_or("30").parse().unwrap();
    let rt = runtime();
    let pools = Pools::all(&rt);
    let (_, pool) = pools.iter().find(|(n, _)| *n == name).unwrap();
    match pool {
        Pools::Stratum(p) => println!("get future: {} bytes", std::mem::size_of_val(&p.get())),
        Pools::Deadpool(p) | Pools::DeadpoolTimeout(p) => {
            println!("get future: {} bytes", std::mem::size_of_val(&p.get()))
        }
        Pools::Bb8(_) => {}
    }
    let start = Instant::now();
    for _ in 0..rounds {
        rt.block_on(run(pool, tasks, 64_000, false));
    }
    println!("{name} {tasks} tasks: {:?}", start.elapsed());
}

fn main() {
    // `POOL_BENCH_RECORDER=1` installs a metrics recorder (metrics-util's
    // debugging recorder: atomic counters and histogram buckets, as the
    // Prometheus exporter keeps them), to measure what recording costs.
    if std::env::var_os("POOL_BENCH_RECORDER").is_some() {
        metrics::set_global_recorder(metrics_util::debugging::DebuggingRecorder::new()).unwrap();
    }
    if let Ok(spec) = std::env::var("POOL_BENCH_FOCUS") {
        focus(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratios();
}
