//! The report `stratum load` prints: the run's setup, the shared figures
//! (driver and stack), where reads were answered from, the peak memory,
//! and the verification with its verdict.

use std::fmt;

use super::verify::Verdict;
use crate::report::{RunFigures, StackFigures};

/// What a load run measured, and the verdict.
#[derive(Debug)]
pub struct LoadReport {
    /// The run's setup, one line each (server, configuration, workload).
    pub(super) setup: Vec<String>,
    /// Whether a read older than an acknowledged update fails the run.
    pub(super) strict_reads: bool,
    pub(super) run: RunFigures,
    pub(super) stack: StackFigures,
    /// Reads served from the cache, the database, stale.
    pub(super) origins: [u64; 3],
    pub(super) stale_violations: u64,
    pub(super) stale_example: Option<String>,
    pub(super) peak_rss_kib: Option<u64>,
    pub(super) verdict: Verdict,
}

impl LoadReport {
    /// Whether the run passes: every acknowledged write is in the database,
    /// nothing else is, and (with `--strict-reads`) no read went back
    /// behind an acknowledged update.
    pub fn passed(&self) -> bool {
        self.verdict.passed() && (!self.strict_reads || self.stale_violations == 0)
    }

    /// What the driver measured.
    pub fn figures(&self) -> &RunFigures {
        &self.run
    }

    /// The stack's layers at the end.
    pub fn stack(&self) -> &StackFigures {
        &self.stack
    }

    /// Successful database calls per second: reads loaded from the
    /// database and successful writes (every write is one). Where the
    /// callers and the database share the cores, a limit that refuses
    /// database calls can raise the successful operations per second (the
    /// cache hits get the cores) while it lowers this.
    pub fn database_throughput(&self) -> f64 {
        let writes: u64 = self
            .run
            .operations
            .iter()
            .filter(|o| o.name != super::workload::READ)
            .map(|o| o.ok)
            .sum();
        self.run.per_second(self.origins[1] + writes)
    }

    /// The run in one line of `key=value` pairs (the report's last line;
    /// `cargo xtask load --sweep` reads it): successful operations per
    /// second, successful database calls per second, the worst operation's
    /// p99 of successful calls, the `overloaded` refusals, stale reads, the
    /// limit's range, and the verdict.
    pub fn summary(&self) -> String {
        let worst_p99 = self
            .run
            .operations
            .iter()
            .filter_map(|o| o.latency.as_ref().map(|l| l.p99))
            .max()
            .unwrap_or_default();
        let pool = self.stack.pool.as_ref();
        let range = pool
            .and_then(|p| p.limit_range)
            .map_or_else(|| "-".to_owned(), |(lo, hi)| format!("{lo}-{hi}"));
        format!(
            "summary: ok_per_s={:.0} db_ok_per_s={:.0} worst_p99_ms={:.1} overloaded={} stale={} limit_range={range} limit_end={} passed={}",
            self.run.successful_throughput(),
            self.database_throughput(),
            worst_p99.as_secs_f64() * 1e3,
            self.run.errors_of_kind("overloaded"),
            self.origins[2],
            pool.and_then(|p| p.limit.map(|l| l.limit))
                .map_or_else(|| "-".to_owned(), |l| l.to_string()),
            self.passed()
        )
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.setup {
            writeln!(f, "{line}")?;
        }
        write!(f, "{}", self.run)?;
        let [cache, store, stale] = self.origins;
        let reads = (cache + store + stale).max(1);
        writeln!(
            f,
            "reads:        {:.1} % answered by the cache (a hit, or another task's load joined), {:.1} % loaded from the database, {} stale",
            100.0 * cache as f64 / reads as f64,
            100.0 * store as f64 / reads as f64,
            stale
        )?;
        write!(f, "{}", self.stack)?;
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
        )?;
        writeln!(f, "{}", self.summary())
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
}
