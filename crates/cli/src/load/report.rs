//! The report printed at the end of a run.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::verify::Verdict;
use crate::workload::{ErrorTally, Op, Workload};

/// One line of the latency table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) name: &'static str,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) latency: Histogram<u32>,
}

/// What a run measured, and the verdict.
#[derive(Debug)]
pub(crate) struct Report {
    /// The run's setup, one line each (server, configuration, workload).
    pub(crate) setup: Vec<String>,
    /// Whether a read older than an acknowledged update fails the run.
    pub(crate) strict_reads: bool,
    pub(crate) elapsed: Duration,
    pub(crate) issuing: Duration,
    pub(crate) rows: Vec<Row>,
    /// Failed calls of every operation together.
    pub(crate) failed: Histogram<u32>,
    pub(crate) errors: Vec<((Op, &'static str), ErrorTally)>,
    /// Reads served from the cache, the database, stale.
    pub(crate) origins: [u64; 3],
    pub(crate) cache: Option<stratum::cache::CacheStats>,
    pub(crate) stale_violations: u64,
    pub(crate) stale_example: Option<String>,
    pub(crate) pool: Option<String>,
    pub(crate) peak_waiting: usize,
    pub(crate) breaker: String,
    pub(crate) peak_rss_kib: Option<u64>,
    pub(crate) verdict: Verdict,
}

impl Report {
    pub(crate) fn rows(workload: &Workload) -> Vec<Row> {
        let errors = workload
            .tally
            .errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        Op::ALL
            .iter()
            .map(|&op| Row {
                name: op.name(),
                ok: workload.tally.ok[op as usize].load(Ordering::Relaxed),
                errors: errors
                    .iter()
                    .filter(|((o, _), _)| *o == op)
                    .map(|(_, t)| t.count)
                    .sum(),
                latency: workload.tally.ok_latency[op as usize].merged(),
            })
            .collect()
    }

    pub(crate) fn completed(&self) -> u64 {
        self.rows.iter().map(|r| r.ok + r.errors).sum()
    }

    pub(crate) fn succeeded(&self) -> u64 {
        self.rows.iter().map(|r| r.ok).sum()
    }

    /// Whether the run passes: every acknowledged write is in the database,
    /// nothing else is, and (with `strict_reads`) no read went back behind an
    /// acknowledged update.
    pub(crate) fn passed(&self) -> bool {
        self.verdict.passed() && (!self.strict_reads || self.stale_violations == 0)
    }
}

/// What each error kind means, for the reader of the report.
pub(crate) fn describe(kind: &str) -> &'static str {
    match kind {
        "overloaded" => {
            "pool exhausted: no admission slot within pool.acquire_timeout (database not called)"
        }
        "not_permitted" => "circuit breaker open: refused without calling the database",
        "timeout" => {
            "timeout: no answer within mongodb.operation_timeout (a write's outcome is unknown)"
        }
        "network" => "network error mid-operation",
        "unavailable" => "database unavailable (server selection failed)",
        "backend" => "server error",
        "duplicate_key" => "duplicate key",
        "not_found" => "no such document",
        "invalid_document" => "document failed validation or decoding",
        _ => "other",
    }
}

fn ms(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1e3)
}

fn percentiles(h: &Histogram<u32>) -> [String; 4] {
    if h.is_empty() {
        return ["-".into(), "-".into(), "-".into(), "-".into()];
    }
    [
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
    ]
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.setup {
            writeln!(f, "{line}")?;
        }
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "elapsed:      {:.1} s ({:.1} s issuing operations, then the calls in flight finishing)",
            secs,
            self.issuing.as_secs_f64()
        )?;
        writeln!(
            f,
            "throughput:   {:.0} operations/s completed, {:.0}/s succeeded ({} operations, {} failed)",
            self.completed() as f64 / secs,
            self.succeeded() as f64 / secs,
            self.completed(),
            self.completed() - self.succeeded()
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<20} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "operation", "ok", "errors", "p50 ms", "p99 ms", "p999 ms", "max ms"
        )?;
        for row in &self.rows {
            let [p50, p99, p999, max] = percentiles(&row.latency);
            writeln!(
                f,
                "{:<20} {:>10} {:>9} {p50:>9} {p99:>9} {p999:>9} {max:>9}",
                row.name, row.ok, row.errors
            )?;
        }
        let [p50, p99, p999, max] = percentiles(&self.failed);
        writeln!(
            f,
            "{:<20} {:>10} {:>9} {p50:>9} {p99:>9} {p999:>9} {max:>9}",
            "(failed calls)",
            "-",
            self.failed.len()
        )?;
        writeln!(f, "(latency of succeeded calls, admission wait included)")?;
        writeln!(f)?;
        if self.errors.is_empty() {
            writeln!(f, "errors:       none")?;
        } else {
            writeln!(f, "errors by kind:")?;
            for ((op, kind), tally) in &self.errors {
                writeln!(
                    f,
                    "  {:<10} {:<14} {:>9}  {}; e.g. \"{}\"",
                    op.name(),
                    kind,
                    tally.count,
                    describe(kind),
                    tally.example
                )?;
            }
        }
        let [cache, store, stale] = self.origins;
        let reads = (cache + store + stale).max(1);
        writeln!(
            f,
            "reads:        {:.1} % answered by the cache (a hit, or another task's load joined), {:.1} % loaded from the database, {} stale",
            100.0 * cache as f64 / reads as f64,
            100.0 * store as f64 / reads as f64,
            stale
        )?;
        if let Some(c) = &self.cache {
            writeln!(
                f,
                "cache:        hit ratio {:.1} % ({} hits, {} misses; {} loads, {} evicted for size)",
                100.0 * c.hit_ratio(),
                c.hits,
                c.misses,
                c.loads_ok + c.loads_err,
                c.evicted_size
            )?;
        }
        if let Some(pool) = &self.pool {
            writeln!(
                f,
                "pool:         {pool}; at most {} tasks seen waiting",
                self.peak_waiting
            )?;
        }
        writeln!(f, "breaker:      {}", self.breaker)?;
        match self.peak_rss_kib {
            Some(kib) => writeln!(
                f,
                "memory:       peak resident {:.1} MiB (VmHWM of this process)",
                kib as f64 / 1024.0
            )?,
            None => writeln!(
                f,
                "memory:       peak resident unknown (no /proc/self/status)"
            )?,
        }
        writeln!(f)?;
        write!(f, "{}", self.verdict)?;
        writeln!(
            f,
            "  reads older than an acknowledged update: {}{}{}",
            self.stale_violations,
            if self.strict_reads {
                ""
            } else {
                " (counted, not failing; --strict-reads fails on them)"
            },
            self.stale_example
                .as_deref()
                .map(|e| format!(" (e.g. {e})"))
                .unwrap_or_default()
        )?;
        writeln!(
            f,
            "result:       {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// The peak resident set size of this process, in KiB (`VmHWM`).
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status = "Name:\tx\nVmPeak:\t  2000 kB\nVmHWM:\t   1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(1234));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
        assert!(peak_rss_kib().is_some_and(|k| k > 0));
    }

    #[test]
    fn every_error_kind_the_facade_names_is_described() {
        for kind in [
            "overloaded",
            "not_permitted",
            "timeout",
            "network",
            "unavailable",
            "backend",
            "duplicate_key",
            "invalid_document",
        ] {
            assert_ne!(describe(kind), "other", "{kind}");
        }
    }
}
