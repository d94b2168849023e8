//! `stratum demo`: a realistic LLM-application workload through the whole
//! stack, with a report at the end.
//!
//! Workers (the `concurrency`, tokio tasks run by the shared driver) loop
//! until the duration is over, each step
//! one of: a prompt looked up in the response cache (prompts drawn with a
//! Zipf-skewed popularity; a miss calls a simulated provider and is cached;
//! every call writes a usage record), a turn appended to a conversation
//! (user message and reply), a conversation's context read back compressed
//! to a token budget, a conversation's header read by id (the read-through
//! cache). `/metrics` and `/health/*` are served meanwhile.
//!
//! With `inject_faults`, the store is wrapped in a [`FaultyStore`]: healthy
//! for the first 30 % of the run, then 60 % of calls fail (plus latency)
//! until 60 %, then healthy again, so the report shows the breaker opening,
//! stale reads served and the recovery.

mod report;
mod workload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;

use stratum::StratumConfig;
use stratum_store::{FaultPlan, FaultyStore};

use crate::driver::{self, Plan, Progress};
use crate::report::{CacheFigures, Mark, StackFigures};

pub use self::report::DemoReport;

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The stack's configuration (the store it selects is used: the
    /// embedded one unless a MongoDB URI is set).
    pub config: StratumConfig,
    /// Concurrent workers. Default 16.
    pub concurrency: usize,
    /// How long the workload runs. Default 10 s.
    pub duration: Duration,
    /// Inject faults into the store in the middle third of the run.
    pub inject_faults: bool,
    /// The seed of every random choice (prompts, operations, faults).
    pub seed: u64,
    /// Where `/metrics` and `/health/*` are served; `None`: not served.
    pub listen: Option<SocketAddr>,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            config: StratumConfig::default(),
            concurrency: 16,
            duration: Duration::from_secs(10),
            inject_faults: false,
            seed: 42,
            listen: None,
            progress: false,
        }
    }
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The stack could not be built.
    #[error(transparent)]
    Stack(#[from] stratum::StratumError),
    /// The workload could not be prepared (indexes, seed data).
    #[error("cannot prepare the workload: {0}")]
    Setup(String),
    /// The monitor could not be built.
    #[error("cannot build the monitor: {0}")]
    Monitor(String),
    /// A worker panicked.
    #[error("{0}")]
    Worker(String),
}

/// Runs the demo and returns its report.
///
/// The process-wide `metrics` recorder is installed here (once per process;
/// later runs in the same process record into the first one), before the
/// stack is built, so every layer's handles bind to it.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use std::time::Duration;
/// use stratum_cli::demo::{run, DemoOptions};
///
/// let report = run(DemoOptions { duration: Duration::from_millis(300), concurrency: 4, ..Default::default() }).await?;
/// assert!(report.throughput() > 0.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub async fn run(options: DemoOptions) -> Result<DemoReport, DemoError> {
    let monitor_config = stratum::monitor::MonitorConfig {
        listen: options
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        // Every other knob of the `[monitor]` section, the monitor's own type.
        ..options.config.monitor.settings.clone()
    };
    let monitor = stratum::monitor::Monitor::new(monitor_config)
        .map_err(|e| DemoError::Monitor(e.to_string()))?;
    if monitor.install_global().is_err() {
        tracing::debug!("a metrics recorder is already installed; the demo records into it");
    }
    let running = match options.listen {
        Some(addr) if options.config.monitor.enabled => match monitor.start().await {
            Ok(running) => Some(running),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "metrics and health are not served");
                None
            }
        },
        _ => None,
    };
    let served = running.as_ref().map(|r| r.local_addr());

    let faulty = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&faulty);
    let stratum = stratum::Stratum::builder(options.config.clone())
        .open_wrapped(move |store| {
            let wrapped = Arc::new(FaultyStore::new(store, options.seed));
            *slot.lock() = Some(Arc::clone(&wrapped));
            wrapped
        })
        .await?;
    let faulty = faulty.lock().take().ok_or_else(|| {
        DemoError::Setup("the store was not opened through the fault injector".into())
    })?;
    stratum
        .register_health(monitor.health())
        .map_err(|e| DemoError::Monitor(e.to_string()))?;

    let workload = workload::DemoWorkload::prepare(&stratum, options.seed)
        .await
        .map_err(DemoError::Setup)?;
    let workload = Arc::new(workload);

    let mark = Mark::now(&stratum);
    let phases = options.inject_faults.then(|| {
        let faulty = faulty.clone();
        let duration = options.duration;
        tokio::spawn(async move {
            tokio::time::sleep(duration.mul_f64(0.3)).await;
            faulty.set_plan(FaultPlan {
                error_rate: 0.6,
                latency: Duration::from_millis(2),
                slow_rate: 0.05,
                slow_latency: Duration::from_millis(50),
            });
            tracing::info!("faults on: 60 % of store calls fail");
            tokio::time::sleep(duration.mul_f64(0.3)).await;
            faulty.set_plan(FaultPlan::none());
            tracing::info!("faults off");
        })
    });
    let plan = Plan {
        tasks: options.concurrency,
        duration: options.duration,
        progress: if options.progress {
            Progress::Bar
        } else {
            Progress::Off
        },
    };
    let driven = driver::drive(&stratum, Arc::clone(&workload), plan).await;
    if let Some(phases) = phases {
        phases.abort();
    }
    let driven = driven.map_err(DemoError::Worker)?;
    let run = driven.figures;
    workload.usage().publish_cache_metrics();
    let cache = workload
        .chats()
        .headers()
        .cache_stats()
        .map(|stats| CacheFigures {
            what: "conversation headers",
            stats,
        });
    let stack = StackFigures::collect(&stratum, mark, cache, driven.peak_waiting, &run);
    let counts = &workload.counts;
    let report = DemoReport {
        stale_reads: counts.stale_reads.load(Ordering::Relaxed),
        provider_calls: counts.provider_calls.load(Ordering::Relaxed),
        efficiency: workload.efficiency(),
        injected_errors: faulty.injected_errors(),
        inject_faults: options.inject_faults,
        documents_written: run.ok(workload::Op::UsageWrite.name())
            + 2 * run.ok(workload::Op::Append.name()),
        served,
        run,
        stack,
    };
    if let Some(running) = running {
        running.shutdown().await;
    }
    Ok(report)
}
