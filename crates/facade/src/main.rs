//! The `stratum` command.
//!
//! `stratum check` connects to a MongoDB server and reports connectivity, the
//! server's version and its topology. (`stratum demo` arrives once the layers
//! are wired into the facade.)

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
    /// Connect to a MongoDB server and report connectivity, version and topology.
    Check(CheckArgs),
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
    let result = match cli.command {
        Command::Check(args) => runtime.block_on(check(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("stratum: {message}");
            ExitCode::FAILURE
        }
    }
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
            c.mongodb.operation_timeout = timeout;
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
    Ok(())
}
