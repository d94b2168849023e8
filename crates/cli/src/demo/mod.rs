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
//!
//! With `semantic`, a phase after the workload asks paraphrased prompts
//! through a prompt cache with the semantic tier on (its own handle over
//! the same store) and reports exact hits, semantic hits and wrong hits
//! (`semantic.rs`); without an embedder it says so in one line.

mod report;
mod semantic;
mod workload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use stratum::monitor::AlertEventKind;
use stratum::{Filter, Store, Stratum, StratumConfig};
use stratum_store::{FaultPlan, FaultyStore};

use crate::driver::{self, Plan, Progress};
use crate::report::{CacheFigures, Mark, StackFigures};

pub use self::report::{AlertRecord, CacheLine, DemoReport};
pub use self::semantic::{SemanticFigures, SemanticPhase};

/// The collections the workload writes to (messages and usage records).
const WRITTEN: [&str; 2] = ["messages", "usage_records"];

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The stack's configuration (the store it selects is used: the
    /// embedded one unless a MongoDB URI is set; its `[monitor]` section
    /// says what the stack serves and which alerts it evaluates).
    pub config: StratumConfig,
    /// Concurrent workers. Default 16.
    pub concurrency: usize,
    /// How long the workload runs. Default 10 s.
    pub duration: Duration,
    /// Inject faults into the store in the middle third of the run.
    pub inject_faults: bool,
    /// The seed of every random choice (prompts, operations, faults).
    pub seed: u64,
    /// Where `/metrics` and `/health/*` are served (`monitor.listen`);
    /// `None` keeps the configuration's. Default 127.0.0.1:0 (a free port).
    pub listen: Option<SocketAddr>,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
    /// Print `metrics and health on http://ADDR` on stderr once the stack
    /// serves them (the bound address, also with port 0).
    pub announce: bool,
    /// Run the semantic phase after the workload (the `semantic` feature
    /// and the local model, `cargo xtask fetch-model`; else one line says
    /// why not). Default `false`; `stratum demo` turns it on.
    pub semantic: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            config: StratumConfig::default(),
            concurrency: 16,
            duration: Duration::from_secs(10),
            inject_faults: false,
            seed: 42,
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            progress: false,
            announce: false,
            semantic: false,
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
    /// A worker panicked.
    #[error("{0}")]
    Worker(String),
}

/// Runs the demo and returns its report.
///
/// The stack is opened as a library user opens it: its monitor (the
/// `[monitor]` section) serves `/metrics` and `/health/*`, publishes every
/// cache's statistics and evaluates the default alert rules; the demo only
/// listens to the alerts (`Stratum::on_alert`) and shuts the stack down at
/// the end.
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
    let mut config = options.config.clone();
    if let Some(listen) = options.listen {
        config.monitor.listen = listen;
    }
    let faulty = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&faulty);
    let stratum = Stratum::builder(config)
        .open_wrapped(move |store| {
            let wrapped = Arc::new(FaultyStore::new(store, options.seed));
            *slot.lock() = Some(Arc::clone(&wrapped));
            wrapped
        })
        .await?;
    let faulty = faulty.lock().take().ok_or_else(|| {
        DemoError::Setup("the store was not opened through the fault injector".into())
    })?;
    let served = stratum.metrics_addr();
    if options.announce
        && let Some(addr) = served
    {
        eprintln!("stratum demo: metrics and health on http://{addr}");
    }
    let workload = workload::DemoWorkload::prepare(&stratum, options.seed)
        .await
        .map_err(DemoError::Setup)?;
    let workload = Arc::new(workload);
    let stored_before = stored(&stratum).await?;

    // Alert times are counted from here, as the breaker's transitions are.
    let started = Instant::now();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    {
        let alerts = Arc::clone(&alerts);
        stratum.on_alert(move |event| {
            alerts.lock().push(AlertRecord {
                rule: event.rule.clone(),
                fired: event.kind == AlertEventKind::Fired,
                at: started.elapsed(),
                value: event.value,
                details: event.details.clone(),
            });
        });
    }

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
        faulty.set_plan(FaultPlan::none());
    }
    let driven = driven.map_err(DemoError::Worker)?;
    let run = driven.figures;
    settle_alerts(&stratum).await;
    let stored_after = stored(&stratum).await?;
    let caches = stratum
        .cache_stats()
        .into_iter()
        .map(|(name, stats)| CacheLine { name, stats })
        .collect();
    let cache = workload
        .chats()
        .headers()
        .cache_stats()
        .map(|stats| CacheFigures {
            what: "conversation headers",
            stats,
        });
    let stack = StackFigures::collect(
        &stratum,
        mark,
        cache,
        (driven.peak_waiting, driven.limit_range),
        &run,
    );
    let counts = &workload.counts;
    // Stops the listener, the sampler and alert evaluation; the webhook
    // posts what it still holds.
    stratum.shutdown().await;
    let alerts = alerts.lock().clone();
    let semantic = match options.semantic {
        true => Some(semantic::run(&options.config, run_tag()).await),
        false => None,
    };
    Ok(DemoReport {
        stale_reads: counts.stale_reads.load(Ordering::Relaxed),
        provider_calls: counts.provider_calls.load(Ordering::Relaxed),
        efficiency: workload.efficiency(),
        injected_errors: faulty.injected_errors(),
        inject_faults: options.inject_faults,
        documents_written: counts.documents_written.load(Ordering::Relaxed),
        documents_stored: stored_after.saturating_sub(stored_before),
        served,
        caches,
        alerts,
        run,
        stack,
        semantic,
    })
}

/// A tag that differs between runs (the clock's nanoseconds).
fn run_tag() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32)
}

/// Documents in the collections the workload writes, read from the store
/// directly (past the breaker and the fault injector's plan, now off).
async fn stored(stratum: &Stratum) -> Result<u64, DemoError> {
    let mut total = 0;
    for collection in WRITTEN {
        total += stratum
            .store()
            .count(collection, &Filter::all())
            .await
            .map_err(|e| DemoError::Setup(format!("cannot count {collection}: {e}")))?;
    }
    Ok(total)
}

/// After the workload: gives a firing `breaker_open` alert the time its
/// `resolve_for` asks (plus two evaluations) to resolve, so the report
/// shows the recovery. Other rules need traffic to resolve; they are left
/// as they are.
async fn settle_alerts(stratum: &Stratum) {
    let Some(monitor) = stratum.monitor() else {
        return;
    };
    let settings = &stratum.config().monitor.settings;
    let wait = settings.alerts.breaker_open.resolve_for + settings.alert_interval * 2;
    let deadline = Instant::now() + wait;
    let rule = stratum::monitoring::rules::BREAKER_OPEN.to_owned();
    while monitor.alerts().firing().contains(&rule) && Instant::now() < deadline {
        tokio::time::sleep(settings.alert_interval.min(Duration::from_millis(100))).await;
    }
}
