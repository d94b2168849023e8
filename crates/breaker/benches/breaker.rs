//! Closed-state per-call cost of a guarded call on 1 and 2 threads: stratum
//! against the `failsafe` crate's breaker and a bare call, in the same run.
//!
//! Criterion measures each variant; then a plain timing loop takes the median
//! of 21 rounds per variant and prints the ratios (stratum/failsafe), which
//! is what `docs/breaker.md` quotes.
//!
//! Every figure is the measuring thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`),
//! not wall time: the benches run on a 2-core machine shared with other
//! builds, and wall time would count the time a thread sat descheduled as
//! per-call cost. Cache-line transfers between cores (the cost of contention)
//! are CPU time and are counted. The plain loop also prints wall-time medians.
//!
//! Variants: `bare` is the call alone; `stratum` takes a permit and reports
//! a success with a duration the caller measured (the sync API, as a service
//! that already times its calls would use it), with the default adaptive
//! slow-call threshold, which learns every such call (it is under the
//! threshold); `stratum_fixed` is the same with the fixed threshold
//! (`adaptive_slow_call.enabled = false`), the peer that prices learning; `stratum_timed` is
//! `Breaker::call_sync`, which also reads the clock twice to time the call
//! (the default `CoarseClock`: two relaxed atomic loads);
//! `stratum_time_window` is `stratum` on a 60 s time-based window (one clock
//! read per record); `failsafe` is `failsafe::CircuitBreaker::call` with
//! failsafe's default policy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use cpu_time::ThreadTime;
use criterion::{Criterion, criterion_group};
use failsafe::CircuitBreaker as _;
use stratum_breaker::{AdaptiveSlowCall, Breaker};

/// What the guarded "call" does: next to nothing, so the breaker's own cost
/// is what is measured.
#[inline(never)]
fn work(x: u64) -> Result<u64, ()> {
    Ok(black_box(x).wrapping_add(1))
}

/// A duration the caller measured; well under the slow-call threshold.
const ELAPSED: Duration = Duration::from_micros(150);

struct Subjects {
    stratum: Breaker,
    stratum_fixed: Breaker,
    stratum_time: Breaker,
    /// failsafe's default: success rate over a time window, or else
    /// consecutive failures.
    failsafe: failsafe::StateMachine<
        failsafe::failure_policy::OrElse<
            failsafe::failure_policy::SuccessRateOverTimeWindow<failsafe::backoff::EqualJittered>,
            failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::EqualJittered>,
        >,
        (),
    >,
}

fn subjects() -> Subjects {
    Subjects {
        stratum: Breaker::builder("bench").build().unwrap(),
        stratum_fixed: Breaker::builder("bench_fixed")
            .adaptive_slow_call(AdaptiveSlowCall {
                enabled: false,
                ..Default::default()
            })
            .build()
            .unwrap(),
        stratum_time: Breaker::builder("bench_time")
            .time_based_window(Duration::from_secs(60))
            .build()
            .unwrap(),
        failsafe: failsafe::Config::new().build(),
    }
}

type Variant = (&'static str, fn(&Subjects, u64));

const VARIANTS: [Variant; 6] = [
    ("bare", |_, i| {
        black_box(work(i)).unwrap();
    }),
    ("stratum", |s, i| {
        let permit = s.stratum.try_acquire().unwrap();
        let r = work(i);
        permit.success(ELAPSED);
        black_box(r).unwrap();
    }),
    ("stratum_fixed", |s, i| {
        let permit = s.stratum_fixed.try_acquire().unwrap();
        let r = work(i);
        permit.success(ELAPSED);
        black_box(r).unwrap();
    }),
    ("stratum_timed", |s, i| {
        black_box(s.stratum.call_sync(|| work(i))).unwrap();
    }),
    ("stratum_time_window", |s, i| {
        let permit = s.stratum_time.try_acquire().unwrap();
        let r = work(i);
        permit.success(ELAPSED);
        black_box(r).unwrap();
    }),
    ("failsafe", |s, i| {
        black_box(s.failsafe.call(|| work(i))).unwrap();
    }),
];

/// Runs `f` `iters` times on each of `threads` threads at once; returns the
/// longest thread's CPU time and the longest wall time (each thread times
/// only its own loop).
fn on_threads(
    threads: usize,
    iters: u64,
    subjects: &Subjects,
    f: fn(&Subjects, u64),
) -> (Duration, Duration) {
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let cpu = ThreadTime::now();
                    let wall = Instant::now();
                    for i in 0..iters {
                        f(subjects, i);
                    }
                    (cpu.elapsed(), wall.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((Duration::ZERO, Duration::ZERO), |(c, w), (tc, tw)| {
                (c.max(tc), w.max(tw))
            })
    })
}

fn closed_state(c: &mut Criterion) {
    let subjects = subjects();
    for threads in [1usize, 2] {
        let mut group = c.benchmark_group(format!("closed_{threads}_thread"));
        group
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1))
            .sample_size(30);
        for (name, f) in VARIANTS {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| on_threads(threads, iters, &subjects, f).0);
            });
        }
        group.finish();
    }
}

/// Median per-call nanoseconds (CPU time, wall time) of every variant on
/// `threads` threads over 21 rounds of 400k calls per thread. The variants
/// take turns within each round, so a burst of load from the machine's
/// other users falls on all of them rather than on one.
fn medians_ns(threads: usize, subjects: &Subjects) -> Vec<(f64, f64)> {
    const ROUNDS: usize = 21;
    const CALLS: u64 = 400_000;
    let mut samples = vec![(Vec::new(), Vec::new()); VARIANTS.len()];
    for _ in 0..ROUNDS {
        for ((_, f), (cpu, wall)) in VARIANTS.iter().zip(samples.iter_mut()) {
            let (c, w) = on_threads(threads, CALLS, subjects, *f);
            cpu.push(c.as_nanos() as f64 / CALLS as f64);
            wall.push(w.as_nanos() as f64 / CALLS as f64);
        }
    }
    samples
        .into_iter()
        .map(|(mut cpu, mut wall)| {
            cpu.sort_by(f64::total_cmp);
            wall.sort_by(f64::total_cmp);
            (cpu[ROUNDS / 2], wall[ROUNDS / 2])
        })
        .collect()
}

fn ratios() {
    let subjects = subjects();
    println!();
    println!(
        "closed-state per-call cost, median of 21 interleaved rounds x 400k calls per thread \
         (ns/call; CPU time, wall time in brackets)"
    );
    println!(
        "{:<22} {:>20} {:>20} {:>8}",
        "variant", "1 thread", "2 threads", "2T/1T"
    );
    let ones = medians_ns(1, &subjects);
    let twos = medians_ns(2, &subjects);
    let mut medians = Vec::new();
    for (((name, _), (one, one_wall)), (two, two_wall)) in VARIANTS.iter().zip(ones).zip(twos) {
        println!(
            "{name:<22} {:>20} {:>20} {:>8.2}",
            format!("{one:.2} [{one_wall:.2}]"),
            format!("{two:.2} [{two_wall:.2}]"),
            two / one
        );
        medians.push((*name, one, two));
    }
    let get = |n: &str| medians.iter().find(|m| m.0 == n).copied().unwrap();
    let failsafe = get("failsafe");
    let fixed = get("stratum_fixed");
    println!(
        "stratum (adaptive)/stratum_fixed ratio: 1 thread {:.3}, 2 threads {:.3}",
        get("stratum").1 / fixed.1,
        get("stratum").2 / fixed.2
    );
    for name in [
        "stratum",
        "stratum_fixed",
        "stratum_timed",
        "stratum_time_window",
    ] {
        let s = get(name);
        println!(
            "{name}/failsafe ratio: 1 thread {:.3}, 2 threads {:.3}",
            s.1 / failsafe.1,
            s.2 / failsafe.2
        );
    }
}

criterion_group!(benches, closed_state);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // binary without it, and then criterion only smoke-tests each variant.
    if std::env::args().any(|a| a == "--bench") {
        ratios();
    }
}
