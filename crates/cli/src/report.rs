//! The part of the report `stratum demo` and `stratum load` share: what the
//! driver measured (throughput, latency percentiles per operation, errors by
//! kind) and the state of the stack's layers at the end (cache, pool,
//! breaker). Each command prints these between its own sections.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use stratum::monitor::Percentiles;
use stratum::{BreakerTransition, Stratum};

/// The percentiles of a histogram of microseconds; `None` when empty.
/// (The monitor's type: one shape for "p50 to max of some calls" in the
/// workspace.)
pub(crate) fn percentiles(h: &Histogram<u32>) -> Option<Percentiles> {
    if h.is_empty() {
        return None;
    }
    let at = |q: f64| Duration::from_micros(h.value_at_quantile(q));
    Some(Percentiles {
        count: h.len(),
        p50: at(0.5),
        p95: at(0.95),
        p99: at(0.99),
        p999: at(0.999),
        max: Duration::from_micros(h.max()),
    })
}

/// One operation's figures.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OperationFigures {
    /// The operation's name (`prompt.lookup`, `read by id`...).
    pub name: &'static str,
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed (the breaker's refusals included).
    pub errors: u64,
    /// Latency of the calls that succeeded; `None` when none did.
    pub latency: Option<Percentiles>,
}

/// One kind of error of one operation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ErrorFigures {
    /// The operation that failed.
    pub operation: &'static str,
    /// The error's kind (`timeout`, `not_permitted`...).
    pub kind: &'static str,
    /// How many times.
    pub count: u64,
    /// The first message seen.
    pub example: String,
}

/// What the driver measured.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunFigures {
    /// Concurrent tasks.
    pub tasks: usize,
    /// From the start to the last task's end (the calls in flight at the
    /// deadline included).
    pub elapsed: Duration,
    /// How long the tasks started new operations.
    pub issuing: Duration,
    /// Per operation, in the workload's order.
    pub operations: Vec<OperationFigures>,
    /// Latency of the failed calls of every operation together.
    pub failed_latency: Option<Percentiles>,
    /// Errors by operation and kind.
    pub errors: Vec<ErrorFigures>,
}

impl RunFigures {
    /// Operations completed, failed ones included.
    pub fn completed(&self) -> u64 {
        self.operations.iter().map(|o| o.ok + o.errors).sum()
    }

    /// Operations that succeeded.
    pub fn succeeded(&self) -> u64 {
        self.operations.iter().map(|o| o.ok).sum()
    }

    /// Operations per second over the run (failed ones too).
    pub fn throughput(&self) -> f64 {
        self.per_second(self.completed())
    }

    /// Successful operations per second over the run.
    pub fn successful_throughput(&self) -> f64 {
        self.per_second(self.succeeded())
    }

    /// `count` events over the run, per second.
    pub fn per_second(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Errors of this kind, every operation together.
    pub fn errors_of_kind(&self, kind: &str) -> u64 {
        self.errors
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.count)
            .sum()
    }

    /// Calls of `operation` that succeeded.
    pub fn ok(&self, operation: &str) -> u64 {
        self.operations
            .iter()
            .filter(|o| o.name == operation)
            .map(|o| o.ok)
            .sum()
    }
}

/// What each error kind means, for the reader of the report.
pub(crate) fn describe(kind: &str) -> &'static str {
    match kind {
        "overloaded" => {
            "overloaded: not admitted within the concurrency limit's bounded wait (pool.limit.queue_interval, or queue_delay_target at a standing queue), or no pool slot within pool.acquire_timeout (database not called)"
        }
        "not_permitted" => "circuit breaker open: refused without calling the database",
        "timeout" => {
            "timeout: no answer within mongodb.operation_timeout (a write's outcome is unknown)"
        }
        "network" => "network error mid-operation",
        "unavailable" => "database unavailable (server selection failed)",
        "not_primary" => {
            "not the primary now (a step-down or an election; retryable; the breaker does not count it)"
        }
        "not_authorized" => {
            "the server refuses the operation to this user (13 Unauthorized; final; the breaker does not count it)"
        }
        "backend" => "server error",
        "duplicate_key" => "duplicate key",
        "not_found" => "no such document",
        "invalid_document" => "document failed validation or decoding",
        "compress" => "the token budget cannot hold the conversation's system messages",
        "config" => "a configuration was refused",
        "tokenizer" => "the tokenizer's tables could not be built",
        _ => "other",
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.2}", d.as_secs_f64() * 1e3),
    )
}

fn row(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    ok: &str,
    errors: u64,
    l: Option<&Percentiles>,
) -> fmt::Result {
    writeln!(
        f,
        "{name:<22} {ok:>10} {errors:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        ms(l.map(|l| l.p50)),
        ms(l.map(|l| l.p95)),
        ms(l.map(|l| l.p99)),
        ms(l.map(|l| l.p999)),
        ms(l.map(|l| l.max)),
    )
}

impl fmt::Display for RunFigures {
    /// Elapsed time, throughput, the latency table and the errors by kind.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let completed = self.completed();
        writeln!(
            f,
            "elapsed:      {:.1} s ({:.1} s issuing operations, then the calls in flight finishing)",
            self.elapsed.as_secs_f64(),
            self.issuing.as_secs_f64()
        )?;
        writeln!(
            f,
            "throughput:   {:.0} operations/s completed, {:.0}/s succeeded ({completed} operations by {} tasks, {} failed)",
            self.throughput(),
            self.successful_throughput(),
            self.tasks,
            completed - self.succeeded()
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<22} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "operation", "ok", "errors", "p50 ms", "p95 ms", "p99 ms", "p999 ms", "max ms"
        )?;
        for o in &self.operations {
            row(f, o.name, &o.ok.to_string(), o.errors, o.latency.as_ref())?;
        }
        let failed = completed - self.succeeded();
        row(
            f,
            "(failed calls)",
            "-",
            failed,
            self.failed_latency.as_ref(),
        )?;
        writeln!(f, "(latency of succeeded calls, admission wait included)")?;
        writeln!(f)?;
        if self.errors.is_empty() {
            return writeln!(f, "errors:       none");
        }
        writeln!(f, "errors by kind:")?;
        for e in &self.errors {
            writeln!(
                f,
                "  {:<22} {:<16} {:>9}  {}; e.g. \"{}\"",
                e.operation,
                e.kind,
                e.count,
                describe(e.kind),
                e.example
            )?;
        }
        Ok(())
    }
}

/// Where the stack stood before a run, so its figures cover the run only.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    /// The stack clock's reading.
    at: Duration,
    /// Breaker transitions so far.
    transitions: u64,
}

impl Mark {
    pub(crate) fn now(stratum: &Stratum) -> Mark {
        Mark {
            at: stratum.clock().now(),
            transitions: stratum.breaker_transitions().0,
        }
    }
}

/// The repository cache the workload reads through.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheFigures {
    /// What it caches (`conversation headers`, `load_documents`).
    pub what: &'static str,
    /// Its counters at the end.
    pub stats: stratum::cache::CacheStats,
}

/// The admission pool at the end.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolFigures {
    /// Its accounting at the end.
    pub status: stratum::pool::Status,
    /// Its event totals.
    pub stats: stratum::pool::PoolStats,
    /// The most callers seen waiting for admission (sampled every 100 ms).
    pub peak_waiting: usize,
    /// The concurrency limit at the end (limit, no-load latency, queue,
    /// rejections by cause).
    pub limit: Option<stratum::pool::LimitStatus>,
    /// The lowest and highest limit seen (sampled every 100 ms).
    pub limit_range: Option<(usize, usize)>,
}

/// The breaker over the run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BreakerFigures {
    /// Its state at the end.
    pub state: &'static str,
    /// State changes during the run.
    pub transition_count: u64,
    /// The most recent of them (up to 256), with their time since the start.
    pub transitions: Vec<(Duration, BreakerTransition)>,
    /// Calls it refused (the database was not called).
    pub refused: u64,
}

/// The stack's layers at the end of a run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StackFigures {
    /// `memory` or `mongodb`.
    pub backend: &'static str,
    /// `None` when the cache is off.
    pub cache: Option<CacheFigures>,
    /// `None` when the pool is off.
    pub pool: Option<PoolFigures>,
    /// `None` when the breaker is off.
    pub breaker: Option<BreakerFigures>,
}

impl StackFigures {
    /// The layers' figures now, the breaker's since `mark`.
    pub(crate) fn collect(
        stratum: &Stratum,
        mark: Mark,
        cache: Option<CacheFigures>,
        (peak_waiting, limit_range): (usize, Option<(usize, usize)>),
        run: &RunFigures,
    ) -> StackFigures {
        let (total, recent) = stratum.breaker_transitions();
        StackFigures {
            backend: stratum.store().backend(),
            cache,
            pool: stratum.pool_status().map(|status| PoolFigures {
                status,
                stats: stratum.pool_stats().unwrap_or_default(),
                peak_waiting,
                limit: stratum.limit_status(),
                limit_range,
            }),
            breaker: stratum.breaker().map(|b| BreakerFigures {
                state: b.state().as_str(),
                transition_count: total.saturating_sub(mark.transitions),
                transitions: recent
                    .into_iter()
                    .filter(|t| t.at >= mark.at)
                    .map(|t| (t.at - mark.at, t))
                    .collect(),
                refused: run.errors_of_kind("not_permitted"),
            }),
        }
    }
}

impl fmt::Display for StackFigures {
    /// One line each for the cache, the pool and the breaker.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cache {
            Some(CacheFigures { what, stats: c }) => writeln!(
                f,
                "cache:        {what}: hit ratio {:.1} % ({} hits, {} misses; {} loads, {} evicted for size)",
                100.0 * c.hit_ratio(),
                c.hits,
                c.misses,
                c.loads_ok + c.loads_err,
                c.evicted_size
            )
            .and_then(|()| {
                // Precision is read over judged (read or left unread): with
                // none judged yet "0.0 %" would read as every guess wrong.
                let precision = if c.prefetch_read + c.prefetch_unread == 0 {
                    "none judged yet".to_owned()
                } else {
                    format!("{:.1} %", 100.0 * c.prefetch_precision())
                };
                writeln!(
                    f,
                    "prefetch:     {what}: {} keys prefetched, {} read before eviction (misses avoided), {} left unread (extra database reads); precision {precision}",
                    c.prefetch_issued,
                    c.prefetch_read,
                    c.prefetch_unread,
                )
            })?,
            None => writeln!(f, "cache:        off (cache.enabled = false)")?,
        }
        match &self.pool {
            Some(PoolFigures {
                status: s,
                stats,
                peak_waiting,
                limit,
                limit_range,
            }) => {
                write!(
                    f,
                    "pool:         {} admission slots (limit {}), {} in use and {} waiting at the end, at most {peak_waiting} seen waiting; {} created, {} acquire timeouts",
                    s.size, s.limit, s.in_use, s.waiting, stats.created, stats.timeouts
                )?;
                if let Some(c) = &s.connections {
                    write!(
                        f,
                        "; driver connections: {} open, {} created, {} closed, {} checkouts, {} checkout failures",
                        c.open, c.created, c.closed, c.checked_out, c.checkout_failures
                    )?;
                }
                writeln!(f)?;
                if let Some(l) = limit {
                    writeln!(f, "{}", limit_line(l, *limit_range))?;
                }
            }
            None => writeln!(f, "pool:         off (pool.enabled = false)")?,
        }
        match &self.breaker {
            Some(b) => writeln!(
                f,
                "breaker:      {} at the end, {} transitions during the run; {} calls refused",
                b.state, b.transition_count, b.refused
            ),
            None => writeln!(f, "breaker:      off (breaker.enabled = false)"),
        }
    }
}

/// The concurrency limit's report line.
fn limit_line(l: &stratum::pool::LimitStatus, range: Option<(usize, usize)>) -> String {
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let mean_wait = Duration::from_nanos(l.queue_nanos.checked_div(l.queued).unwrap_or(0));
    format!(
        "limit:        concurrency limit {} at the end{}, no-load latency {}; {} admitted, {} after a wait (mean {}); refused: {} at a standing queue, {} after the whole queue interval",
        l.limit,
        range.map_or_else(String::new, |(lo, hi)| format!(
            " ({lo} to {hi} during the run)"
        )),
        l.no_load_latency
            .map_or_else(|| "not measured".to_owned(), ms),
        l.admitted,
        l.queued,
        ms(mean_wait),
        l.rejected_standing_queue,
        l.rejected_queue_timeout
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_the_stack_names_is_described() {
        for kind in [
            "overloaded",
            "not_permitted",
            "timeout",
            "network",
            "unavailable",
            "not_primary",
            "not_authorized",
            "backend",
            "duplicate_key",
            "invalid_document",
            "compress",
            "config",
            "tokenizer",
        ] {
            assert_ne!(describe(kind), "other", "{kind}");
        }
    }

    #[test]
    fn the_limit_line_names_each_figure() {
        let mut l = stratum::pool::LimitStatus::default();
        l.limit = 37;
        l.no_load_latency = Some(Duration::from_micros(420));
        l.admitted = 1000;
        l.queued = 4;
        l.queue_nanos = 8_000_000;
        l.rejected_standing_queue = 11;
        l.rejected_queue_timeout = 3;
        let line = limit_line(&l, Some((4, 61)));
        assert_eq!(
            line,
            "limit:        concurrency limit 37 at the end (4 to 61 during the run), no-load latency 0.42 ms; \
             1000 admitted, 4 after a wait (mean 2.00 ms); refused: 11 at a standing queue, 3 after the whole queue interval"
        );
        l.no_load_latency = None;
        assert!(limit_line(&l, None).contains("limit 37 at the end, no-load latency not measured"));
    }

    /// The prefetch line gives a precision only once a prefetched entry was
    /// read or left unread: "0.0 %" with none judged read as every guess
    /// wrong.
    #[test]
    fn the_prefetch_line_gives_no_precision_before_any_is_judged() {
        let mut stats = stratum::cache::CacheStats::default();
        let line = |stats: &stratum::cache::CacheStats| {
            let figures = StackFigures {
                backend: "memory",
                cache: Some(CacheFigures {
                    what: "conversation headers",
                    stats: *stats,
                }),
                pool: None,
                breaker: None,
            };
            figures
                .to_string()
                .lines()
                .find(|l| l.starts_with("prefetch:"))
                .unwrap()
                .to_owned()
        };
        assert!(
            line(&stats).ends_with("precision none judged yet"),
            "{}",
            line(&stats)
        );
        stats.prefetch_issued = 10;
        stats.prefetch_read = 3;
        stats.prefetch_unread = 1;
        assert!(
            line(&stats).ends_with("precision 75.0 %"),
            "{}",
            line(&stats)
        );
    }

    #[test]
    fn percentiles_are_read_in_microseconds() {
        let mut h = Histogram::<u32>::new_with_bounds(1, 600_000_000, 3).unwrap();
        assert_eq!(percentiles(&h), None);
        for micros in 1..=1_000 {
            h.record(micros).unwrap();
        }
        let l = percentiles(&h).unwrap();
        assert_eq!(l.count, 1_000);
        assert_eq!(l.p50, Duration::from_micros(500));
        assert_eq!(l.p99, Duration::from_micros(990));
        assert_eq!(l.max, Duration::from_micros(1_000));
    }

    fn figures() -> RunFigures {
        let latency = Percentiles {
            count: 3,
            p50: Duration::from_micros(1_500),
            p95: Duration::from_millis(2),
            p99: Duration::from_millis(3),
            p999: Duration::from_millis(4),
            max: Duration::from_millis(5),
        };
        RunFigures {
            tasks: 2,
            elapsed: Duration::from_secs(1),
            issuing: Duration::from_secs(1),
            operations: vec![
                OperationFigures {
                    name: "read",
                    ok: 3,
                    errors: 2,
                    latency: Some(latency),
                },
                OperationFigures {
                    name: "write",
                    ok: 0,
                    errors: 1,
                    latency: None,
                },
            ],
            failed_latency: Some(latency),
            errors: vec![
                ErrorFigures {
                    operation: "read",
                    kind: "not_permitted",
                    count: 2,
                    example: "open".into(),
                },
                ErrorFigures {
                    operation: "write",
                    kind: "timeout",
                    count: 1,
                    example: "5s".into(),
                },
            ],
        }
    }

    #[test]
    fn the_table_shows_every_operation_and_every_error_kind() {
        let f = figures();
        assert_eq!((f.completed(), f.succeeded()), (6, 3));
        assert_eq!(f.throughput(), 6.0);
        assert_eq!(f.errors_of_kind("not_permitted"), 2);
        assert_eq!(f.ok("read"), 3);
        let text = f.to_string();
        assert!(
            text.contains("throughput:   6 operations/s completed, 3/s succeeded (6 operations by 2 tasks, 3 failed)"),
            "{text}"
        );
        let read = text.lines().find(|l| l.starts_with("read ")).unwrap();
        assert_eq!(
            read.split_whitespace().collect::<Vec<_>>(),
            ["read", "3", "2", "1.50", "2.00", "3.00", "4.00", "5.00"]
        );
        let write = text.lines().find(|l| l.starts_with("write ")).unwrap();
        assert!(
            write.ends_with("-         -         -         -         -"),
            "{text}"
        );
        assert!(text.contains("(failed calls)"), "{text}");
        assert!(
            text.contains(
                "circuit breaker open: refused without calling the database; e.g. \"open\""
            ),
            "{text}"
        );
    }
}
