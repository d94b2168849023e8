//! The demo's report: what it measured, printed at the end.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use stratum::monitor::LatencyTracker;

use super::workload::{Figures, Op, Workload};
use stratum::{BreakerTransition, Stratum};

/// One operation's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationFigures {
    /// The operation's name (`prompt.lookup`, `conversation.append`...).
    pub name: &'static str,
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed (the breaker's refusals included).
    pub errors: u64,
    /// Median latency (over the monitor's last 60 s window).
    pub p50: Option<Duration>,
    /// 95th percentile.
    pub p95: Option<Duration>,
    /// 99th percentile.
    pub p99: Option<Duration>,
}

/// What a demo run measured.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DemoReport {
    /// `memory` or `mongodb`.
    pub backend: &'static str,
    /// Concurrent workers.
    pub concurrency: usize,
    /// How long the workload ran.
    pub elapsed: Duration,
    /// Per operation, in a fixed order.
    pub operations: Vec<OperationFigures>,
    /// Document cache (conversation headers) hits and misses.
    pub document_cache: (u64, u64),
    /// Stale documents served while the database could not be asked.
    pub stale_reads: u64,
    /// Calls the breaker refused (the database was not called).
    pub refused: u64,
    /// Provider calls made (prompt-cache misses).
    pub provider_calls: u64,
    /// Prompt-cache and compression figures (stratum-models).
    pub efficiency: stratum::models::EfficiencyReport,
    /// Breaker state changes during the run, with their time since its start.
    pub transitions: Vec<(Duration, BreakerTransition)>,
    /// The breaker's state at the end (`off` when disabled).
    pub breaker_state: &'static str,
    /// Errors the fault injector produced.
    pub injected_errors: u64,
    /// Whether faults were injected.
    pub inject_faults: bool,
    /// Documents written: messages and usage records.
    pub documents_written: u64,
    /// Where `/metrics` and `/health/*` were served.
    pub served: Option<SocketAddr>,
    /// The admission pool's figures; `None` when the pool is off.
    pub pool: Option<String>,
}

pub(super) struct Inputs<'a> {
    pub(super) stratum: &'a Stratum,
    pub(super) workload: &'a Workload,
    pub(super) figures: Figures,
    pub(super) latency: &'a LatencyTracker,
    pub(super) elapsed: Duration,
    pub(super) concurrency: usize,
    pub(super) injected_errors: u64,
    pub(super) inject_faults: bool,
    pub(super) served: Option<SocketAddr>,
    pub(super) started_at: Duration,
}

impl DemoReport {
    pub(super) fn collect(inputs: Inputs<'_>) -> DemoReport {
        let Inputs {
            stratum,
            workload,
            figures,
            latency,
            elapsed,
            concurrency,
            injected_errors,
            inject_faults,
            served,
            started_at,
        } = inputs;
        let operations = Op::ALL
            .iter()
            .map(|&op| {
                let p = latency.percentiles(op.name());
                OperationFigures {
                    name: op.name(),
                    ok: figures.ok[op as usize].load(Ordering::Relaxed),
                    errors: figures.errors[op as usize].load(Ordering::Relaxed),
                    p50: p.map(|p| p.p50),
                    p95: p.map(|p| p.p95),
                    p99: p.map(|p| p.p99),
                }
            })
            .collect::<Vec<_>>();
        let headers = workload.chats().headers().cache_stats();
        let (_, recent) = stratum.breaker_transitions();
        let transitions = recent
            .into_iter()
            .filter(|t| t.at >= started_at)
            .map(|t| (t.at - started_at, t))
            .collect();
        let written = operations
            .iter()
            .filter(|o| o.name == Op::UsageWrite.name())
            .map(|o| o.ok)
            .sum::<u64>()
            + 2 * figures.ok[Op::Append as usize].load(Ordering::Relaxed);
        workload.usage().publish_cache_metrics();
        DemoReport {
            backend: stratum.store().backend(),
            concurrency,
            elapsed,
            operations,
            document_cache: headers.map_or((0, 0), |s| (s.hits, s.misses)),
            stale_reads: figures.stale_reads.load(Ordering::Relaxed),
            refused: figures.refused.load(Ordering::Relaxed),
            provider_calls: figures.provider_calls.load(Ordering::Relaxed),
            efficiency: workload.efficiency(),
            transitions,
            breaker_state: stratum.breaker().map_or("off", |b| b.state().as_str()),
            injected_errors,
            inject_faults,
            documents_written: written,
            served,
            pool: pool_line(stratum),
        }
    }

    /// Operations per second over the run (every operation, failed ones too).
    pub fn throughput(&self) -> f64 {
        let total: u64 = self.operations.iter().map(|o| o.ok + o.errors).sum();
        total as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Successful operations per second over the run.
    pub fn successful_throughput(&self) -> f64 {
        let ok: u64 = self.operations.iter().map(|o| o.ok).sum();
        ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The document cache's hit ratio.
    pub fn document_hit_ratio(&self) -> f64 {
        let (hits, misses) = self.document_cache;
        if hits + misses == 0 {
            0.0
        } else {
            hits as f64 / (hits + misses) as f64
        }
    }
}

fn pool_line(stratum: &Stratum) -> Option<String> {
    let status = stratum.pool_status()?;
    let stats = stratum.pool_stats().unwrap_or_default();
    let mut line = format!(
        "{} admission slots (limit {}), {} in use and {} waiting at the end; {} created, {} acquire timeouts",
        status.size, status.limit, status.in_use, status.waiting, stats.created, stats.timeouts
    );
    if let Some(c) = status.connections {
        line.push_str(&format!(
            "; driver connections: {} open, {} created, {} closed, {} checkouts, {} checkout failures",
            c.open, c.created, c.closed, c.checked_out, c.checkout_failures
        ));
    }
    Some(line)
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.2}", d.as_secs_f64() * 1e3),
    )
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "stratum demo: {} store, {} workers, {:.1} s{}",
            self.backend,
            self.concurrency,
            self.elapsed.as_secs_f64(),
            if self.inject_faults {
                ", faults injected from 30 % to 60 % of the run"
            } else {
                ""
            }
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "throughput:   {:.0} operations/s ({:.0}/s succeeded; each usage write counted apart from its prompt lookup)",
            self.throughput(),
            self.successful_throughput()
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<22} {:>9} {:>7} {:>9} {:>9} {:>9}",
            "operation", "ok", "errors", "p50 ms", "p95 ms", "p99 ms"
        )?;
        for o in &self.operations {
            writeln!(
                f,
                "{:<22} {:>9} {:>7} {:>9} {:>9} {:>9}",
                o.name,
                o.ok,
                o.errors,
                ms(o.p50),
                ms(o.p95),
                ms(o.p99)
            )?;
        }
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
        let (hits, misses) = self.document_cache;
        writeln!(
            f,
            "documents:    cache {:.1} % hits ({hits} hits, {misses} misses), {} stale reads served, {} documents written",
            self.document_hit_ratio() * 100.0,
            self.stale_reads,
            self.documents_written
        )?;
        write!(
            f,
            "breaker:      {} transitions, now {}; {} calls refused",
            self.transitions.len(),
            self.breaker_state,
            self.refused
        )?;
        if self.inject_faults {
            write!(f, "; {} faults injected", self.injected_errors)?;
        }
        writeln!(f)?;
        for (at, t) in &self.transitions {
            writeln!(
                f,
                "              {:>6.2} s  {} -> {} ({})",
                at.as_secs_f64(),
                t.from,
                t.to,
                t.reason
            )?;
        }
        match &self.pool {
            Some(pool) => writeln!(f, "pool:         {pool}")?,
            None => writeln!(f, "pool:         off (pool.enabled = false)")?,
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
