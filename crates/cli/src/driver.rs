//! The one workload driver of `stratum demo` and `stratum load`: N tokio
//! tasks in closed loops until a deadline, every operation's latency in an
//! HDR histogram, failures tallied by kind, progress shown meanwhile.
//!
//! A workload says what one step of a task does ([`Workload::step`]) and
//! times its operations through the [`Recorder`] it is handed; the driver
//! owns the tasks, the clock, the figures and the display.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::StdRng;
use stratum::{RepositoryError, Stratum};

use crate::report::{self, ErrorFigures, OperationFigures, RunFigures};

/// What the driver runs.
pub(crate) trait Workload: Send + Sync + 'static {
    /// One task's own state (its random generator, what it remembers),
    /// handed back when the run is over.
    type Task: Send + 'static;

    /// The operations' names in the report's order; [`Recorder::time`]
    /// takes an index into it.
    const OPERATIONS: &'static [&'static str];

    /// The state task `index` starts with.
    fn task(&self, index: usize) -> Self::Task;

    /// One step of a task: one or more operations, each timed through `record`.
    fn step(&self, task: &mut Self::Task, record: &Recorder<'_>)
    -> impl Future<Output = ()> + Send;

    /// How long the task pauses before its next step (zero: it only yields).
    fn pause(&self, _task: &mut Self::Task) -> Duration {
        Duration::ZERO
    }

    /// A few words on the workload's own state for the progress display
    /// (after the operations, the pool and the breaker), starting with `, `.
    fn status(&self) -> String {
        String::new()
    }
}

/// An error the driver can tally: a fixed kind and a message.
pub(crate) trait Failure: fmt::Display {
    /// A short, fixed name (`timeout`, `not_permitted`...).
    fn kind(&self) -> &'static str;
}

impl Failure for RepositoryError {
    fn kind(&self) -> &'static str {
        RepositoryError::kind(self)
    }
}

/// The generator of task `index`: every task its own stream, all of them
/// fixed by the run's seed.
pub(crate) fn task_rng(seed: u64, index: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// How progress is shown on stderr while the tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Nothing.
    Off,
    /// An indicatif bar, redrawn every 200 ms (a terminal).
    Bar,
    /// A line every 5 s (logs, CI).
    Lines,
}

/// How many tasks, for how long, shown how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) tasks: usize,
    pub(crate) duration: Duration,
    pub(crate) progress: Progress,
}

/// What a run gives back.
pub(crate) struct Driven<T> {
    /// The figures the report shows.
    pub(crate) figures: RunFigures,
    /// Each task's final state, in task order.
    pub(crate) tasks: Vec<T>,
    /// The most callers seen waiting for admission (sampled every 100 ms).
    pub(crate) peak_waiting: usize,
    /// The lowest and highest concurrency limit seen (sampled every 100 ms).
    pub(crate) limit_range: Option<(usize, usize)>,
}

/// Runs `plan.tasks` tasks of `workload` until `plan.duration` is over,
/// then waits for the calls in flight. Fails only when a task panicked.
pub(crate) async fn drive<W: Workload>(
    stratum: &Stratum,
    workload: Arc<W>,
    plan: Plan,
) -> Result<Driven<W::Task>, String> {
    let tasks = plan.tasks.max(1);
    let figures = Arc::new(Figures::new(W::OPERATIONS.len()));
    let started = Instant::now();
    let deadline = started + plan.duration;
    let handles: Vec<_> = (0..tasks)
        .map(|index| {
            let workload = Arc::clone(&workload);
            let figures = Arc::clone(&figures);
            tokio::spawn(async move {
                let mut task = workload.task(index);
                let record = Recorder {
                    figures: &figures,
                    shard: index,
                };
                while Instant::now() < deadline {
                    workload.step(&mut task, &record).await;
                    let pause = workload.pause(&mut task);
                    if pause.is_zero() {
                        // A cache hit or the embedded store never yields by
                        // itself: let the other tasks (and the metrics
                        // listener) run.
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(pause).await;
                    }
                }
                task
            })
        })
        .collect();
    let peak_waiting = Arc::new(AtomicUsize::new(0));
    let limit_low = Arc::new(AtomicUsize::new(usize::MAX));
    let limit_high = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch(Watch {
        stratum: stratum.clone(),
        workload: Arc::clone(&workload),
        figures: Arc::clone(&figures),
        started,
        deadline,
        progress: plan.progress,
        peak_waiting: Arc::clone(&peak_waiting),
        limit_range: (Arc::clone(&limit_low), Arc::clone(&limit_high)),
        stopped,
    }));
    let mut states = Vec::with_capacity(tasks);
    let mut failure = None;
    for handle in handles {
        match handle.await {
            Ok(state) => states.push(state),
            Err(e) => failure = failure.or(Some(format!("a task failed: {e}"))),
        }
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    let _ = watcher.await;
    if let Some(failure) = failure {
        return Err(failure);
    }
    Ok(Driven {
        figures: figures.summary(W::OPERATIONS, tasks, elapsed, plan.duration.min(elapsed)),
        tasks: states,
        peak_waiting: peak_waiting.load(Ordering::Relaxed),
        limit_range: match (
            limit_low.load(Ordering::Relaxed),
            limit_high.load(Ordering::Relaxed),
        ) {
            (usize::MAX, _) => None,
            range => Some(range),
        },
    })
}

/// A task's handle on the figures.
pub(crate) struct Recorder<'a> {
    figures: &'a Figures,
    shard: usize,
}

impl Recorder<'_> {
    /// Runs `call` as operation `op` (an index into
    /// [`Workload::OPERATIONS`]), records its latency and outcome, and
    /// returns its result.
    pub(crate) async fn time<T, E: Failure>(
        &self,
        op: impl Into<usize>,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let result = call.await;
        self.record(op.into(), started.elapsed(), result.as_ref().err());
        result
    }

    fn record<E: Failure>(&self, op: usize, elapsed: Duration, error: Option<&E>) {
        let f = self.figures;
        match error {
            None => {
                f.ok[op].fetch_add(1, Ordering::Relaxed);
                f.ok_latency[op].record(self.shard, elapsed);
            }
            Some(e) => {
                f.failed.fetch_add(1, Ordering::Relaxed);
                f.failed_latency.record(self.shard, elapsed);
                f.errors
                    .lock()
                    .entry((op, e.kind()))
                    .or_insert_with(|| ErrorTally {
                        count: 0,
                        example: e.to_string(),
                    })
                    .count += 1;
            }
        }
    }
}

/// Latency histograms are sharded by task so 10,000 tasks do not queue on one lock.
const SHARDS: usize = 16;
/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
const HIGHEST_MICROS: u64 = 600_000_000;

// The bounds are constants within hdrhistogram's rules (low >= 1,
// high >= 2 * low, at most 5 digits), so construction cannot fail.
#[allow(clippy::expect_used)]
fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("valid histogram bounds")
}

/// Latencies of one kind of outcome, sharded.
struct Latencies {
    shards: Vec<Mutex<Histogram<u32>>>,
}

impl Latencies {
    fn new() -> Latencies {
        Latencies {
            shards: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
        }
    }

    fn record(&self, shard: usize, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(HIGHEST_MICROS)
            .clamp(1, HIGHEST_MICROS);
        // In bounds by the clamp: recording cannot fail.
        let _ = self.shards[shard % SHARDS].lock().record(micros);
    }

    /// All shards added together.
    fn merged(&self) -> Histogram<u32> {
        let mut all = histogram();
        for shard in &self.shards {
            // Same bounds on both sides: adding cannot fail.
            let _ = all.add(&*shard.lock());
        }
        all
    }
}

/// The error kind's count and the first message seen.
struct ErrorTally {
    count: u64,
    example: String,
}

/// Everything the tasks record, shared by all of them.
struct Figures {
    ok: Vec<AtomicU64>,
    ok_latency: Vec<Latencies>,
    failed: AtomicU64,
    failed_latency: Latencies,
    /// By operation index and error kind.
    errors: Mutex<BTreeMap<(usize, &'static str), ErrorTally>>,
}

impl Figures {
    fn new(operations: usize) -> Figures {
        Figures {
            ok: (0..operations).map(|_| AtomicU64::new(0)).collect(),
            ok_latency: (0..operations).map(|_| Latencies::new()).collect(),
            failed: AtomicU64::new(0),
            failed_latency: Latencies::new(),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    fn completed(&self) -> u64 {
        let ok: u64 = self.ok.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        ok + self.failed.load(Ordering::Relaxed)
    }

    fn summary(
        &self,
        names: &'static [&'static str],
        tasks: usize,
        elapsed: Duration,
        issuing: Duration,
    ) -> RunFigures {
        let errors = self.errors.lock();
        let operations = names
            .iter()
            .enumerate()
            .map(|(i, &name)| OperationFigures {
                name,
                ok: self.ok[i].load(Ordering::Relaxed),
                errors: errors
                    .iter()
                    .filter(|((op, _), _)| *op == i)
                    .map(|(_, t)| t.count)
                    .sum(),
                latency: report::percentiles(&self.ok_latency[i].merged()),
            })
            .collect();
        RunFigures {
            tasks,
            elapsed,
            issuing,
            operations,
            failed_latency: report::percentiles(&self.failed_latency.merged()),
            errors: errors
                .iter()
                .map(|(&(op, kind), t)| ErrorFigures {
                    operation: names[op],
                    kind,
                    count: t.count,
                    example: t.example.clone(),
                })
                .collect(),
        }
    }
}

/// What the watcher needs.
struct Watch<W> {
    stratum: Stratum,
    workload: Arc<W>,
    figures: Arc<Figures>,
    started: Instant,
    deadline: Instant,
    progress: Progress,
    peak_waiting: Arc<AtomicUsize>,
    limit_range: (Arc<AtomicUsize>, Arc<AtomicUsize>),
    stopped: tokio::sync::oneshot::Receiver<()>,
}

/// Samples the admission queue (the concurrency limit's and the pool's)
/// every 100 ms into `peak_waiting`, and the limit into `limit_range`, and
/// shows progress, until told to stop.
async fn watch<W: Workload>(mut w: Watch<W>) {
    let bar = (w.progress == Progress::Bar).then(|| progress_bar(w.deadline));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = &mut w.stopped => break,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        ticks += 1;
        let status = w.stratum.pool_status();
        let limit = w.stratum.limit_status();
        let waiting =
            status.as_ref().map_or(0, |s| s.waiting) + limit.as_ref().map_or(0, |l| l.waiting);
        w.peak_waiting.fetch_max(waiting, Ordering::Relaxed);
        if let Some(l) = &limit {
            w.limit_range.0.fetch_min(l.limit, Ordering::Relaxed);
            w.limit_range.1.fetch_max(l.limit, Ordering::Relaxed);
        }
        let line = || {
            format!(
                "{} operations, {} failed; admission: {} in flight (limit {}), {waiting} waiting; breaker {}{}",
                w.figures.completed(),
                w.figures.failed.load(Ordering::Relaxed),
                status.as_ref().map_or(0, |s| s.in_use),
                limit.as_ref().map_or(0, |l| l.limit),
                w.stratum.breaker().map_or("off", |b| b.state().as_str()),
                w.workload.status()
            )
        };
        match (&bar, w.progress) {
            (Some(bar), _) if ticks.is_multiple_of(2) => {
                bar.set_position(w.started.elapsed().as_millis() as u64);
                bar.set_message(line());
            }
            (_, Progress::Lines) if ticks.is_multiple_of(50) => {
                eprintln!("[{:>5.1} s] {}", w.started.elapsed().as_secs_f64(), line());
            }
            _ => {}
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn progress_bar(deadline: Instant) -> indicatif::ProgressBar {
    let total = deadline.saturating_duration_since(Instant::now());
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} [{bar:32}] {elapsed_precise} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn latencies_merge_across_shards() {
        let latencies = Latencies::new();
        for shard in 0..40 {
            latencies.record(shard, Duration::from_millis(shard as u64 + 1));
        }
        let all = latencies.merged();
        assert_eq!(all.len(), 40);
        assert!(all.max() >= 39_900);
    }

    /// Every step is one operation, every third one fails, so what the driver reports can be checked against what
    /// the tasks did.
    struct Counting {
        steps: AtomicU64,
    }

    #[derive(Debug)]
    struct Odd;

    impl fmt::Display for Odd {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("every third call fails")
        }
    }

    impl Failure for Odd {
        fn kind(&self) -> &'static str {
            "odd"
        }
    }

    impl Workload for Counting {
        type Task = (StdRng, u64);
        const OPERATIONS: &'static [&'static str] = &["first", "second"];

        fn task(&self, index: usize) -> Self::Task {
            (task_rng(1, index), 0)
        }

        async fn step(&self, task: &mut Self::Task, record: &Recorder<'_>) {
            let n = self.steps.fetch_add(1, Ordering::Relaxed);
            task.1 += 1;
            let op = usize::from(task.0.random::<bool>());
            let _ = record
                .time(op, async {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    if n % 3 == 2 { Err(Odd) } else { Ok(()) }
                })
                .await;
        }
    }

    #[test]
    fn every_step_of_every_task_is_counted_once() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let workload = Arc::new(Counting {
            steps: AtomicU64::new(0),
        });
        let plan = Plan {
            tasks: 8,
            duration: Duration::from_millis(200),
            progress: Progress::Off,
        };
        let driven = runtime
            .block_on(async {
                let stratum = Stratum::builder(stratum::StratumConfig::default())
                    .build()
                    .unwrap();
                drive(&stratum, Arc::clone(&workload), plan).await
            })
            .unwrap();
        let steps = workload.steps.load(Ordering::Relaxed);
        let f = &driven.figures;
        assert_eq!(driven.tasks.len(), 8);
        // Each task's own count adds up to the steps made.
        assert_eq!(driven.tasks.iter().map(|t| t.1).sum::<u64>(), steps);
        assert_eq!(f.completed(), steps);
        assert_eq!(f.operations.len(), 2);
        assert!(f.operations.iter().all(|o| o.ok > 0), "{f:?}");
        let failed: u64 = f.errors.iter().map(|e| e.count).sum();
        assert_eq!(failed, steps / 3);
        assert_eq!(f.completed() - f.succeeded(), failed);
        assert!(f.errors.iter().all(|e| e.kind == "odd"));
        assert_eq!(f.failed_latency.map(|l| l.count), Some(failed), "{f:?}");
        // Every latency was at least the 200 µs each call slept.
        for o in &f.operations {
            let latency = o.latency.unwrap();
            assert_eq!(latency.count, o.ok);
            assert!(latency.p50 >= Duration::from_micros(200), "{latency:?}");
        }
        assert!(f.elapsed >= Duration::from_millis(200));
        assert_eq!(f.issuing, Duration::from_millis(200));
    }
}
