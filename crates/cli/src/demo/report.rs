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
    /// Documents the workers stored: messages and usage records whose
    /// insert succeeded.
    pub documents_written: u64,
    /// Documents the store holds in those collections now, less those it
    /// held before the workers started (equal to `documents_written` when
    /// no other program writes there).
    pub documents_stored: u64,
    /// Where `/metrics` and `/health/*` were served.
    pub served: Option<SocketAddr>,
    /// Every cache of the stack at the end, as `/metrics` names them.
    pub caches: Vec<CacheLine>,
    /// The alert events of the run (the default rules of `[monitor.alerts]`).
    pub alerts: Vec<AlertRecord>,
    /// The semantic phase (`DemoOptions::semantic`), or why it was skipped.
    pub semantic: Option<super::SemanticPhase>,
}

/// One cache of the stack at the end of the run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheLine {
    /// The `cache` label of its series.
    pub name: String,
    /// Its counters.
    pub stats: stratum::cache::CacheStats,
}

/// One alert event of the run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AlertRecord {
    /// The rule (`breaker_open`, `error_ratio`, ...).
    pub rule: String,
    /// Fired (`true`) or resolved.
    pub fired: bool,
    /// When, since the stack was opened.
    pub at: Duration,
    /// The rule's figure at that evaluation.
    pub value: f64,
    /// The rule's named figures (a burn-rate rule's two burn rates and
    /// threshold, a regression's baseline and level); often empty.
    pub details: Vec<(&'static str, f64)>,
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
            "documents:    {} stale reads served, {} documents written ({} more in the store)",
            self.stale_reads, self.documents_written, self.documents_stored
        )?;
        for c in &self.caches {
            let s = &c.stats;
            writeln!(
                f,
                "cache {:<20} {} lookups = {} hits + {} misses; {} loads, {} evictions",
                format!("{}:", c.name),
                s.hits + s.misses,
                s.hits,
                s.misses,
                s.loads(),
                s.evictions()
            )?;
        }
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
        if self.alerts.is_empty() {
            writeln!(f, "alerts:       none")?;
        }
        for a in &self.alerts {
            write!(
                f,
                "alert:        {} {} at {:.2} s (value {:.4}",
                a.rule,
                if a.fired { "fired" } else { "resolved" },
                a.at.as_secs_f64(),
                a.value
            )?;
            for (name, value) in &a.details {
                write!(f, ", {name} {value:.4}")?;
            }
            writeln!(f, ")")?;
        }
        if let Some(semantic) = &self.semantic {
            write!(f, "{semantic}")?;
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
