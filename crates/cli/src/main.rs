//! The `stratum` command.
//!
//! `stratum demo` drives an LLM-application workload through the whole stack
//! and reports what it measured; `stratum load` drives thousands of tasks
//! against a MongoDB server and verifies every acknowledged write;
//! `stratum check` connects to a MongoDB server and reports connectivity, the
//! server's version, its topology and whether the indexes the document types
//! declare exist; `stratum config` prints the effective configuration and
//! where each value came from.

// A command-line program: printing its report is its job.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use stratum::{MongoStore, Store, StratumConfig};

/// Stratum: a cached, protected, pooled and observed layer in front of MongoDB.
#[derive(Debug, Parser)]
#[command(name = "stratum", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an LLM-application workload (conversations, prompt-cache lookups,
    /// usage records) through cache, breaker and store, and report
    /// throughput, latency percentiles, hit ratios, savings and breaker
    /// transitions. Uses the embedded store unless a MongoDB URI is given.
    Demo(DemoArgs),
    /// Run thousands of concurrent tasks (reads by id, inserts, updates)
    /// through the stack against a MongoDB server, report, and read every
    /// acknowledged write back with the raw driver. Exit status 1 when the
    /// verification fails, 2 when the run could not be made.
    Load(stratum_cli::load::LoadArgs),
    /// Connect to a MongoDB server and report connectivity, version, topology
    /// and whether the declared indexes exist in the configured database.
    Check(CheckArgs),
    /// Measure cross-process coherence: start a reader and a writer
    /// process over one server and report how long each acknowledged write
    /// took to reach the reader's next read (p50, p99, max). Exit status 1
    /// when a write was never seen.
    Coherence(stratum_cli::coherence::CoherenceArgs),
    /// The reader half of `stratum coherence` (a child process).
    #[command(hide = true)]
    CoherenceReader(stratum_cli::coherence::ProbeTarget),
    /// The writer half of `stratum coherence` (a child process).
    #[command(hide = true)]
    CoherenceWriter(stratum_cli::coherence::WriterArgs),
    /// Print the effective configuration: every key with its value
    /// (passwords masked) and where it came from (default, the file, an
    /// environment variable).
    Config(ConfigArgs),
}

#[derive(Debug, clap::Args)]
struct ConfigArgs {
    /// A TOML configuration file (merged under the environment).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The server's connection string (else `mongodb.uri` from the file or
    /// STRATUM_MONGODB_URI). Its password is never printed.
    #[arg(long, value_name = "URI")]
    mongodb_uri: Option<String>,
    /// A TOML configuration file (merged under the environment and flags).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How long to wait for a server before giving up.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Concurrent workers.
    #[arg(long, value_name = "N", default_value_t = 16)]
    concurrency: usize,
    /// How long the workload runs.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// A MongoDB server to run against (else `mongodb.uri` from the file or
    /// STRATUM_MONGODB_URI; with none, the embedded store). Its password is
    /// never printed.
    #[arg(long, value_name = "URI")]
    mongodb_uri: Option<String>,
    /// A TOML configuration file (merged under the environment and flags).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Make the store fail 60 % of calls (and add latency) from 30 % to 60 %
    /// of the run, to show the breaker opening, stale reads and recovery.
    #[arg(long)]
    inject_faults: bool,
    /// The seed of every random choice (prompts, operations, faults).
    #[arg(long, value_name = "N", default_value_t = 42)]
    seed: u64,
    /// Where `/metrics` and `/health/*` are served during the run
    /// (else `monitor.listen`, default 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// How long a cached document is fresh (short, so the run shows expiry
    /// and stale reads; the library default is 60 s).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    cache_ttl: Duration,
    /// How long the breaker stays open before probing (library default 5 s).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    breaker_open_wait: Duration,
    /// How often the alert rules are evaluated (`monitor.alert_interval`;
    /// library default 5 s: short here, so a run shows its alerts).
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = humantime::parse_duration)]
    alert_interval: Duration,
    /// How long the breaker must stay closed before `breaker_open` resolves
    /// (`monitor.alerts.breaker_open.resolve_for`; library default 10 s).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    breaker_alert_resolve_for: Duration,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Skip the semantic phase (paraphrased prompts through the prompt
    /// cache's semantic tier, after the workload).
    #[arg(long)]
    no_semantic: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("stratum: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Check(args) => exit(runtime.block_on(check(args))),
        Command::Demo(args) => exit(runtime.block_on(demo(args))),
        Command::Load(args) => load(runtime.block_on(stratum_cli::load::run(args))),
        Command::Config(args) => exit(show_config(&args)),
        Command::Coherence(args) => coherence(&args),
        Command::CoherenceReader(target) => exit(
            runtime
                .block_on(stratum_cli::coherence::read(&target))
                .map_err(|e| e.to_string()),
        ),
        Command::CoherenceWriter(args) => exit(
            runtime
                .block_on(stratum_cli::coherence::write_role(&args))
                .map_err(|e| e.to_string()),
        ),
    }
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("stratum: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `stratum load`: the report, and an exit status that tells a failed
/// verification (1) from a run that could not be made (2).
fn load(result: Result<stratum_cli::load::LoadReport, stratum_cli::load::LoadError>) -> ExitCode {
    match result {
        Ok(report) => {
            print!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("stratum load: {e}");
            ExitCode::from(2)
        }
    }
}

/// `stratum coherence`: the reader and writer children, the delays.
fn coherence(args: &stratum_cli::coherence::CoherenceArgs) -> ExitCode {
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(e) => {
            eprintln!("stratum coherence: cannot find this program: {e}");
            return ExitCode::from(2);
        }
    };
    match stratum_cli::coherence::measure(program, args) {
        Ok(delays) => {
            println!("coherence across two processes: {delays}");
            if delays.missed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("stratum coherence: {e}");
            ExitCode::from(2)
        }
    }
}

/// `stratum config`: merges defaults, the file and the environment as every
/// other command does, and prints each key's value and source.
fn show_config(args: &ConfigArgs) -> Result<(), String> {
    let mut builder = StratumConfig::builder().env();
    if let Some(path) = &args.config {
        builder = builder.file(path);
    }
    let (_, report) = builder
        .build_explained()
        .map_err(|e| format!("configuration: {e}"))?;
    print!("{report}");
    Ok(())
}

/// `stratum demo`: builds the configuration, runs the workload, prints the report.
async fn demo(args: DemoArgs) -> Result<(), String> {
    let mut builder = StratumConfig::builder().env();
    if let Some(path) = &args.config {
        builder = builder.file(path);
    }
    if let Some(uri) = &args.mongodb_uri {
        builder = builder.mongodb_uri(uri);
    }
    let (ttl, open_wait) = (args.cache_ttl, args.breaker_open_wait);
    let (alert_interval, resolve_for) = (args.alert_interval, args.breaker_alert_resolve_for);
    let config = builder
        .configure(move |c| {
            c.cache.time_to_live = Some(ttl);
            c.breaker.wait_in_open = stratum::breaker::OpenWait::Constant { wait: open_wait };
            // A window a ten-second run can fill, so the breaker can trip.
            c.breaker.sliding_window = stratum::breaker::SlidingWindow::CountBased { size: 50 };
            c.breaker.minimum_number_of_calls = 10;
            c.monitor.alert_interval = alert_interval;
            c.monitor.alerts.breaker_open.resolve_for = resolve_for;
            if c.mongodb.database == "stratum" {
                c.mongodb.database = "stratum_demo".into();
            }
        })
        .build()
        .map_err(|e| format!("configuration: {e}"))?;
    let options = stratum_cli::demo::DemoOptions {
        config,
        concurrency: args.concurrency,
        duration: args.duration,
        inject_faults: args.inject_faults,
        seed: args.seed,
        listen: args.listen,
        progress: !args.no_progress,
        announce: true,
        semantic: !args.no_semantic,
    };
    eprintln!(
        "stratum demo: {} workers for {}",
        options.concurrency,
        humantime::format_duration(options.duration)
    );
    let report = stratum_cli::demo::run(options)
        .await
        .map_err(|e| format!("demo: {e}"))?;
    print!("{report}");
    Ok(())
}

/// `stratum check`: every message it prints carries the redacted URI only.
async fn check(args: CheckArgs) -> Result<(), String> {
    let mut builder = StratumConfig::builder().env();
    if let Some(path) = &args.config {
        builder = builder.file(path);
    }
    if let Some(uri) = &args.mongodb_uri {
        builder = builder.mongodb_uri(uri);
    }
    let timeout = args.timeout;
    let config = builder
        .configure(move |c| {
            c.mongodb.server_selection_timeout = timeout;
            c.mongodb.connect_timeout = timeout;
            // Longer than server selection, so an unreachable server is
            // reported as such (the driver's answer), not as whichever of the
            // two equal timers a loaded machine happened to fire first.
            c.mongodb.operation_timeout = timeout.saturating_mul(2);
        })
        .build()
        .map_err(|e| format!("configuration: {e}"))?;
    let Some(uri) = config.mongodb.uri.clone() else {
        return Err("no server to check: pass --mongodb-uri URI or set STRATUM_MONGODB_URI".into());
    };
    println!("server:       {uri}");
    let store = MongoStore::connect(&config.mongodb, &config.store)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let started = Instant::now();
    store
        .ping()
        .await
        .map_err(|e| format!("no answer from {uri}: {e}"))?;
    let first = started.elapsed();
    let started = Instant::now();
    store
        .ping()
        .await
        .map_err(|e| format!("no answer from {uri}: {e}"))?;
    let round_trip = started.elapsed();
    let info = store
        .server_info()
        .await
        .map_err(|e| format!("cannot read the server's description: {e}"))?;
    println!(
        "connectivity: ok (first ping {:.1} ms with connection setup, then {:.2} ms)",
        first.as_secs_f64() * 1e3,
        round_trip.as_secs_f64() * 1e3
    );
    println!("version:      {}", info.version);
    println!("topology:     {}", info.topology);
    println!("wire version: {}", info.max_wire_version);
    println!("database:     {}", config.mongodb.database);
    let indexes = stratum::indexes::check_declared(&store)
        .await
        .map_err(|e| format!("cannot list the indexes: {e}"))?;
    let present = indexes.iter().filter(|s| s.is_present()).count();
    println!(
        "indexes:      {present} of {} declared indexes present",
        indexes.len()
    );
    for status in &indexes {
        println!("  {status}");
    }
    Ok(())
}
