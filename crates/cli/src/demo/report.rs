//! The demo's report: the shared figures (driver and stack) between the
//! demo's own sections: tokens and dollars saved, documents, the breaker's
//! transitions, the faults injected.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::report::{RunFigures, StackFigures};

/// What a demo run measured.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DemoReport {
    /// What the driver measured: throughput, latency per operation, errors.
    pub run: RunFigures,
    /// The stack at the end: backend, the conversation headers' cache, the
    /// pool, the breaker and its transitions.
    pub stack: StackFigures,
    /// Stale documents served while the database could not be asked.
    pub stale_reads: u64,
    /// Provider calls made (prompt-cache misses).
    pub provider_calls: u64,
    /// Prompt-cache and compression figures (stratum-models).
    pub efficiency: stratum::models::EfficiencyReport,
    /// Errors the fault injector produced.
    pub injected_errors: u64,
    /// Whether faults were injected.
    pub inject_faults: bool,
    /// Documents written: messages and usage records.
    pub documents_written: u64,
    /// Where `/metrics` and `/health/*` were served.
    pub served: Option<SocketAddr>,
}

impl DemoReport {
    /// Operations per second over the run (every operation, failed ones too).
    pub fn throughput(&self) -> f64 {
        self.run.throughput()
    }

    /// `memory` or `mongodb`.
    pub fn backend(&self) -> &'static str {
        self.stack.backend
    }

    /// How long the workload ran.
    pub fn elapsed(&self) -> Duration {
        self.run.elapsed
    }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "stratum demo: {} store, {} workers, {:.1} s{}",
            self.stack.backend,
            self.run.tasks,
            self.run.elapsed.as_secs_f64(),
            if self.inject_faults {
                ", faults injected from 30 % to 60 % of the run"
            } else {
                ""
            }
        )?;
        writeln!(f)?;
        write!(f, "{}", self.run)?;
        writeln!(f)?;
        let e = &self.efficiency;
        writeln!(
            f,
            "prompt cache: {:.1} % hits ({} hits, {} misses; {} provider calls)",
            e.hit_ratio * 100.0,
            e.hits,
            e.misses,
            self.provider_calls
        )?;
        writeln!(
            f,
            "saved:        {} tokens by the prompt cache, {} prompt tokens by context compression, ${:.4} at the model's prices (spent ${:.4}); provider latency saved {:.1} s",
            e.tokens_saved,
            e.compression_tokens_saved,
            e.cost_saved_usd,
            e.cost_spent_usd,
            e.latency_saved.as_secs_f64()
        )?;
        writeln!(
            f,
            "documents:    {} stale reads served, {} documents written",
            self.stale_reads, self.documents_written
        )?;
        write!(f, "{}", self.stack)?;
        if let Some(breaker) = &self.stack.breaker {
            for (at, t) in &breaker.transitions {
                writeln!(
                    f,
                    "              {:>6.2} s  {} -> {} ({})",
                    at.as_secs_f64(),
                    t.from,
                    t.to,
                    t.reason
                )?;
            }
        }
        if self.inject_faults {
            writeln!(
                f,
                "faults:       {} store errors injected (60 % of calls from 30 % to 60 % of the run)",
                self.injected_errors
            )?;
        }
        if let Some(addr) = self.served {
            writeln!(
                f,
                "served:       http://{addr}/metrics, /health/live, /health/ready (during the run)"
            )?;
        }
        Ok(())
    }
}
