//! `stratum load`: thousands of concurrent tasks reading and writing through
//! the stack against a MongoDB server, a report, and a check that every
//! acknowledged write is in the database.
//!
//! Run it with `cargo xtask load` (which starts a test server and builds
//! the `stratum` binary optimised) or directly with `--mongodb-uri`. Each
//! task loops until the duration is over: a read by id (ids drawn with a
//! Zipf-skewed popularity, so the cache matters), an insert of a new
//! document, or an update (`$inc` of the document's version), all through a
//! `Repository<LoadDoc>` over `MongoStore` with the cache, the breaker and
//! the admission pool configured as by default (`STRATUM_*` variables and
//! the flags below change them).
//!
//! At the end it prints the driver's figures (throughput, p50 to max per
//! operation, errors by kind), where reads were answered from, the cache,
//! the pool and the breaker, the peak resident memory, and the
//! verification: every document read back with the raw driver, every
//! acknowledged insert present, every document's version at least its
//! acknowledged updates, and no write nobody made; [`LoadReport::passed`]
//! is false when any of that fails. Reads are checked too: those that
//! returned a version older than one acknowledged before they began are
//! counted (and fail the run with `--strict-reads`).
//!
//! With `--fleet-dir` the process is one of many over one database
//! (`cargo xtask fleet`): see [`fleet`].

pub mod fleet;
mod report;
mod verify;
mod workload;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};
use stratum::{Stratum, StratumConfig};

use self::verify::Expected;
use self::workload::{LoadDoc, LoadWorkload, Mix};
use crate::driver::{self, Plan, Progress};
use crate::popularity::Popularity;
use crate::report::{CacheFigures, Mark, StackFigures};

pub use self::report::LoadReport;

/// The flags of `stratum load`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct LoadArgs {
    /// The server (its password is never printed).
    #[arg(
        long,
        value_name = "URI",
        env = "STRATUM_TEST_MONGODB_URI",
        hide_env_values = true
    )]
    pub mongodb_uri: String,
    /// Concurrent tokio tasks, each a closed loop of operations.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub tasks: usize,
    /// How long the tasks issue operations.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Share of operations that are reads by id, in [0, 1].
    #[arg(long, value_name = "RATIO", default_value_t = 0.9)]
    pub read_ratio: f64,
    /// Share of writes that are inserts (the rest are updates), in [0, 1].
    #[arg(long, value_name = "RATIO", default_value_t = 0.5)]
    pub insert_share: f64,
    /// Documents stored before the run; reads and updates pick among them.
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    pub documents: usize,
    /// The Zipf exponent of the documents' popularity (0: uniform).
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    pub zipf: f64,
    /// Payload bytes per document.
    #[arg(long, value_name = "BYTES", default_value_t = 512)]
    pub payload_bytes: usize,
    /// Mean pause between a task's operations (0: back to back).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub think_time: Duration,
    /// `pool.max_size`: the most database calls in flight (the adaptive
    /// limit's ceiling) and driver connections.
    #[arg(long, value_name = "N")]
    pub pool_size: Option<u32>,
    /// `pool.limit.enabled = false`: a fixed limit of `pool.max_size` calls
    /// in flight instead of the adaptive one (for comparing the two).
    #[arg(long)]
    pub fixed_limit: bool,
    /// `pool.acquire_timeout`: the longest a call waits for an admission slot.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub acquire_timeout: Option<Duration>,
    /// `mongodb.operation_timeout`: the longest one database call may take.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub operation_timeout: Option<Duration>,
    /// `cache.max_entries`: documents the cache holds.
    #[arg(long, value_name = "N")]
    pub cache_entries: Option<u64>,
    /// The seed of every random choice.
    #[arg(long, value_name = "N", default_value_t = 42)]
    pub seed: u64,
    /// Also fail when a read returned a version older than one acknowledged
    /// before the read began (by default such reads are counted and shown).
    #[arg(long)]
    pub strict_reads: bool,
    /// Keep the run's database instead of dropping it at the end.
    #[arg(long)]
    pub keep: bool,
    /// Delete this many acknowledged inserts behind the facade's back before
    /// verifying (shows that the verification catches a lost write).
    #[arg(long, value_name = "N", default_value_t = 0, hide = true)]
    pub sabotage: usize,
    /// Run as one process of a fleet (`cargo xtask fleet`): share
    /// `--database` with the others, probe the hot documents, and write what
    /// this process was told into DIR/process-INDEX.txt for the fleet's
    /// verifier instead of verifying (the database is kept).
    #[arg(long, value_name = "DIR", requires = "database")]
    pub fleet_dir: Option<std::path::PathBuf>,
    /// This process's index in the fleet (its insert ids and random seed).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fleet_index: u32,
    /// The database (by default a fresh one, dropped at the end).
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
    /// In a fleet: the hottest documents (ids 0..N) this process reads every
    /// millisecond to measure how long other processes' writes take to
    /// reach it.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub probe_documents: usize,
}

fn check_args(args: &LoadArgs) -> Result<(), String> {
    let ratio = |name: &str, v: f64| {
        if (0.0..=1.0).contains(&v) {
            Ok(())
        } else {
            Err(format!("--{name} must be in [0, 1], got {v}"))
        }
    };
    ratio("read-ratio", args.read_ratio)?;
    ratio("insert-share", args.insert_share)?;
    if args.tasks == 0 || args.documents == 0 {
        return Err("--tasks and --documents must be at least 1".into());
    }
    if !(0.0..=10.0).contains(&args.zipf) {
        return Err(format!("--zipf must be in [0, 10], got {}", args.zipf));
    }
    Ok(())
}

fn config(args: &LoadArgs, database: &str) -> Result<StratumConfig, String> {
    let (pool_size, acquire, operation, entries) = (
        args.pool_size,
        args.acquire_timeout,
        args.operation_timeout,
        args.cache_entries,
    );
    let database = database.to_owned();
    let fixed = args.fixed_limit;
    StratumConfig::builder()
        .env()
        .mongodb_uri(&args.mongodb_uri)
        .configure(move |c| {
            c.mongodb.database = database;
            c.mongodb.app_name = "stratum load".into();
            c.monitor.enabled = false;
            if let Some(n) = pool_size {
                c.pool.max_size = n as usize;
            }
            if fixed {
                c.pool.limit.enabled = false;
            }
            if let Some(d) = acquire {
                c.pool.acquire_timeout = d;
            }
            if let Some(d) = operation {
                c.mongodb.operation_timeout = d;
            }
            if let Some(n) = entries {
                c.cache.max_capacity = n;
            }
        })
        .build()
        .map_err(|e| format!("configuration: {e}"))
}

fn setup_lines(args: &LoadArgs, config: &StratumConfig) -> Vec<String> {
    let c = config;
    let uri = c
        .mongodb
        .uri
        .as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string);
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let mut lines = vec![
        format!(
            "stratum load: {} tasks for {} against {uri} (database {})",
            args.tasks,
            d(args.duration),
            c.mongodb.database
        ),
        format!(
            "workload:     {} documents of {} payload bytes, Zipf {} popularity; {:.0} % reads by id, writes {:.0} % inserts / {:.0} % updates ($inc); think time {}",
            args.documents,
            args.payload_bytes,
            args.zipf,
            100.0 * args.read_ratio,
            100.0 * args.insert_share,
            100.0 * (1.0 - args.insert_share),
            d(args.think_time)
        ),
        format!(
            "config:       pool {} (max_size {}, acquire_timeout {}; concurrency limit {}); operation_timeout {}; cache {} (max_capacity {}, time_to_live {}); breaker {} (window {:?}, minimum {}, failure rate {} %, wait_in_open {:?})",
            if c.pool.enabled { "on" } else { "off" },
            c.pool.max_size,
            d(c.pool.acquire_timeout),
            if c.pool.limit.enabled {
                format!(
                    "adaptive from {} between {} and max_size, tolerance {}, queue {}/{}",
                    c.pool.limit.initial,
                    c.pool.limit.min,
                    c.pool.limit.tolerance,
                    d(c.pool.limit.queue_delay_target),
                    d(c.pool.limit.queue_interval)
                )
            } else {
                format!(
                    "fixed at max_size, queue {}/{}",
                    d(c.pool.limit.queue_delay_target),
                    d(c.pool.limit.queue_interval)
                )
            },
            d(c.mongodb.operation_timeout),
            if c.cache.enabled { "on" } else { "off" },
            c.cache.max_capacity,
            c.cache.time_to_live.map_or_else(|| "off".to_owned(), d),
            if c.breaker.enabled { "on" } else { "off" },
            c.breaker.sliding_window,
            c.breaker.minimum_number_of_calls,
            c.breaker.failure_rate_threshold,
            c.breaker.wait_in_open
        ),
        format!(
            "machine:      {} cores, load average {} at the start",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_average()
        ),
    ];
    if let Some(dir) = &args.fleet_dir {
        lines.push(format!(
            "fleet:        process {}, probing documents 0..{}; its writes go to {} for the fleet's verifier (the verification below is left to it)",
            args.fleet_index,
            args.probe_documents,
            fleet::ProcessOutcome::path(dir, args.fleet_index).display()
        ));
    }
    lines
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// Whether a failed `insert_many` only met documents already there.
fn only_duplicates(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, InsertManyError};
    matches!(
        error.kind.as_ref(),
        ErrorKind::InsertMany(InsertManyError {
            write_errors: Some(errors),
            write_concern_error: None,
            ..
        }) if errors.iter().all(|e| e.code == 11000)
    )
}

/// Why a load run could not be made (as opposed to a run whose
/// verification failed, which is a [`LoadReport`] that did not pass).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(String);

/// Runs the load: preloads, drives the tasks, verifies, and drops the run's
/// database (unless `keep`).
pub async fn run(args: LoadArgs) -> Result<LoadReport, LoadError> {
    check_args(&args).map_err(LoadError)?;
    run_checked(args).await.map_err(LoadError)
}

async fn run_checked(args: LoadArgs) -> Result<LoadReport, String> {
    let database = args.database.clone().unwrap_or_else(|| {
        format!(
            "load_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        )
    });
    let config = config(&args, &database)?;
    let setup = setup_lines(&args, &config);
    for line in &setup {
        eprintln!("{line}");
    }

    // The raw driver, around the facade: preloading and verification.
    let client = mongodb::Client::with_uri_str(&args.mongodb_uri)
        .await
        .map_err(|e| {
            format!(
                "connecting the raw driver: {}",
                stratum_store::uri::scrub(&e.to_string())
            )
        })?;
    let db = client.database(&database);
    let raw = db.collection::<Document>(<LoadDoc as stratum::models::Document>::COLLECTION);
    let payload = "x".repeat(args.payload_bytes);
    let result = drive(&args, config, &raw, payload).await;
    if !args.keep && args.fleet_dir.is_none() && args.database.is_none() {
        let _ = db.drop().await;
    }
    let mut report = result?;
    report.setup = setup;
    report.strict_reads = args.strict_reads;
    Ok(report)
}

/// Preloads, runs the tasks, collects the figures and verifies.
async fn drive(
    args: &LoadArgs,
    config: StratumConfig,
    raw: &mongodb::Collection<Document>,
    payload: String,
) -> Result<LoadReport, String> {
    let preload = Instant::now();
    for chunk in (0..args.documents as i64).collect::<Vec<_>>().chunks(1_000) {
        let docs = chunk.iter().map(|&id| {
            doc! { "_id": id, "version": 0i64, "payload": &payload, "schema_version": 1 }
        });
        match raw
            .insert_many(docs)
            .ordered(args.fleet_dir.is_none())
            .await
        {
            Ok(_) => {}
            // A fleet process preloads what no other process has yet.
            Err(e) if args.fleet_dir.is_some() && only_duplicates(&e) => {}
            Err(e) => {
                return Err(format!(
                    "preloading: {}",
                    stratum_store::uri::scrub(&e.to_string())
                ));
            }
        }
    }
    eprintln!(
        "preloaded {} documents in {:.1} s",
        args.documents,
        preload.elapsed().as_secs_f64()
    );

    let stratum = Stratum::builder(config)
        .open()
        .await
        .map_err(|e| format!("opening the stack: {e}"))?;
    let repo = stratum
        .repository::<LoadDoc>()
        .map_err(|e| format!("the repository: {e}"))?;
    let mix = Mix {
        read_ratio: args.read_ratio,
        insert_share: args.insert_share,
        think_time: args.think_time,
    };
    let popularity = Popularity::new(args.documents, args.zipf)
        .map_err(|e| format!("--documents and --zipf: {e}"))?;
    let workload = LoadWorkload::new(
        repo.clone(),
        args.documents,
        popularity,
        mix,
        payload,
        args.seed.wrapping_add(u64::from(args.fleet_index)),
    );
    let workload = Arc::new(match &args.fleet_dir {
        Some(_) => workload.in_fleet(
            fleet::first_insert_id(args.documents, args.fleet_index),
            fleet::FleetLog::new(args.probe_documents.min(args.documents)),
        ),
        None => workload,
    });
    // A fleet process measures coherence: it starts once its change
    // streams are open, probing the hot documents all along.
    let probe = match &args.fleet_dir {
        Some(dir) => {
            fleet::streams_open(&stratum).await?;
            let stop = Arc::new(tokio::sync::Notify::new());
            let task = tokio::spawn(fleet::probe(
                repo,
                args.probe_documents.min(args.documents),
                Arc::clone(&stop),
            ));
            let ready = dir.join(format!("ready-{}", args.fleet_index));
            std::fs::write(&ready, b"")
                .map_err(|e| format!("cannot write {}: {e}", ready.display()))?;
            Some((stop, task))
        }
        None => None,
    };

    let mark = Mark::now(&stratum);
    let plan = Plan {
        tasks: args.tasks,
        duration: args.duration,
        progress: Progress::Lines,
    };
    let driven = driver::drive(&stratum, Arc::clone(&workload), plan).await?;
    let probed = match probe {
        Some((stop, task)) => {
            stop.notify_one();
            Some(task.await.map_err(|e| format!("the probe: {e}"))?)
        }
        None => None,
    };
    let tally = &workload.tally;
    let expected = Expected {
        inserted: driven.tasks.into_iter().flat_map(|t| t.inserted).collect(),
        unknown_inserts: tally.unknown_inserts.lock().clone(),
        updates: workload
            .writes
            .iter()
            .map(|w| {
                (
                    w.acked.load(Ordering::Relaxed),
                    w.unknown.load(Ordering::Relaxed),
                    w.max_version.load(Ordering::Relaxed),
                )
            })
            .collect(),
    };
    for id in expected.inserted.iter().take(args.sabotage) {
        let _ = raw.delete_one(doc! { "_id": id }).await;
    }
    let verdict = match (&args.fleet_dir, &workload.fleet) {
        (Some(dir), Some(log)) => {
            fleet::write(
                dir,
                fleet::Finished {
                    index: args.fleet_index,
                    expected,
                    log,
                    probe: probed.unwrap_or_default(),
                    run: &driven.figures,
                    stratum: &stratum,
                    bound: stratum.config().pool.acquire_timeout
                        + stratum.config().mongodb.operation_timeout,
                },
            )
            .await?;
            // The fleet's verifier checks every process's writes together.
            verify::Verdict::default()
        }
        _ => {
            let found = verify::read_back(raw).await?;
            verify::check(&expected, &found)
        }
    };
    let cache = workload.repo().cache_stats().map(|stats| CacheFigures {
        what: <LoadDoc as stratum::models::Document>::COLLECTION,
        stats,
    });
    let stack = StackFigures::collect(
        &stratum,
        mark,
        cache,
        (driven.peak_waiting, driven.limit_range),
        &driven.figures,
    );
    Ok(LoadReport {
        setup: Vec::new(),
        strict_reads: false,
        run: driven.figures,
        stack,
        origins: tally.origins.each_ref().map(|c| c.load(Ordering::Relaxed)),
        stale_violations: tally.stale_violations.load(Ordering::Relaxed),
        stale_example: tally.stale_example.lock().clone(),
        peak_rss_kib: report::peak_rss_kib(),
        verdict,
    })
}
