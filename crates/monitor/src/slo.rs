//! Service-level objectives and error-budget burn-rate rules: calls counted
//! per operation in a ring of time buckets, read as burn rates over a long
//! and a short window (the Google SRE Workbook's multiwindow,
//! multi-burn-rate alerts).
//!
//! Why buckets and not every call: a 6 h window at thousands of calls a
//! second would hold millions of timestamps; 360 one-minute buckets of
//! three counters hold the same answer to the minute in 8.6 KB.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::alert::{AlertRule, Figure};
use crate::clock::{Clock, SystemClock};
use crate::config::{BurnRateConfig, BurnWindow, SloObjective};
use crate::error::ConfigError;

/// Calls counted over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every call.
    pub calls: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Calls slower than the operation's latency threshold.
    pub slow: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.calls += other.calls;
        self.failed += other.failed;
        self.slow += other.slow;
    }
}

/// Calls of one operation in a ring of `bucket`-wide time buckets.
///
/// A call lands in bucket `floor((t - origin) / bucket)`; a window of `n`
/// buckets is the current bucket and the `n - 1` before it, so it covers
/// between `(n - 1) * bucket` and `n * bucket` of history. Memory is fixed
/// at construction (24 bytes per bucket).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use stratum_monitor::{CallWindow, ManualClock};
///
/// let clock = ManualClock::new();
/// let w = CallWindow::new(Duration::from_secs(60), 60, Some(Duration::from_millis(100)), Arc::new(clock.clone())).unwrap();
/// w.record(Duration::from_millis(20), false);
/// w.record(Duration::from_millis(250), true);
/// let c = w.counts(5);
/// assert_eq!((c.calls, c.failed, c.slow), (2, 1, 1));
/// clock.advance(Duration::from_secs(300)); // five buckets later
/// assert_eq!(w.counts(5).calls, 0);
/// assert_eq!(w.counts(6).calls, 2);
/// ```
pub struct CallWindow {
    bucket_nanos: u128,
    slow_above: Option<Duration>,
    clock: Arc<dyn Clock>,
    origin: Instant,
    ring: Mutex<Ring>,
}

impl fmt::Debug for CallWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallWindow")
            .field("bucket_nanos", &self.bucket_nanos)
            .field("buckets", &self.ring.lock().slots.len())
            .field("slow_above", &self.slow_above)
            .finish_non_exhaustive()
    }
}

struct Ring {
    slots: Vec<Counts>,
    /// The absolute index of the newest bucket written or read.
    head: u64,
}

impl Ring {
    /// Moves the head to `index`, clearing the buckets it passes.
    fn advance(&mut self, index: u64) {
        if index <= self.head {
            return;
        }
        let len = self.slots.len() as u64;
        let gap = (index - self.head).min(len);
        for i in 1..=gap {
            let slot = ((self.head + i) % len) as usize;
            self.slots[slot] = Counts::default();
        }
        self.head = index;
    }
}

impl CallWindow {
    /// A ring of `buckets` buckets of width `bucket`, calls slower than
    /// `slow_above` counted as slow.
    pub fn new(
        bucket: Duration,
        buckets: usize,
        slow_above: Option<Duration>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        if bucket.is_zero() {
            return Err(ConfigError::invalid("bucket", "must be greater than zero"));
        }
        if !(1..=86_400).contains(&buckets) {
            return Err(ConfigError::invalid("buckets", "must be in 1..=86400"));
        }
        let origin = clock.instant();
        Ok(CallWindow {
            bucket_nanos: bucket.as_nanos(),
            slow_above,
            clock,
            origin,
            ring: Mutex::new(Ring {
                slots: vec![Counts::default(); buckets],
                head: 0,
            }),
        })
    }

    fn index(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since / self.bucket_nanos).unwrap_or(u64::MAX)
    }

    /// Counts one call that took `latency` and `failed` or not.
    pub fn record(&self, latency: Duration, failed: bool) {
        let slow = self.slow_above.is_some_and(|t| latency > t);
        let index = self.index(self.clock.instant());
        let mut ring = self.ring.lock();
        ring.advance(index);
        let len = ring.slots.len() as u64;
        // A call timed just before another thread moved the head on still
        // belongs to its bucket while the ring holds it.
        if ring.head - index < len {
            let slot = &mut ring.slots[(index % len) as usize];
            slot.calls += 1;
            slot.failed += u64::from(failed);
            slot.slow += u64::from(slow);
        }
    }

    /// The calls in the current bucket and the `buckets - 1` before it (at
    /// most the ring's length).
    pub fn counts(&self, buckets: usize) -> Counts {
        let index = self.index(self.clock.instant());
        let mut ring = self.ring.lock();
        ring.advance(index);
        let len = ring.slots.len() as u64;
        let n = (buckets as u64).min(len).min(index + 1);
        let mut total = Counts::default();
        for i in 0..n {
            total.add(ring.slots[((index - i) % len) as usize]);
        }
        total
    }
}

/// The kind of bad call an objective counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sli {
    /// Failed calls against the availability objective.
    Errors,
    /// Calls slower than the threshold against the latency objective.
    Latency,
}

impl Sli {
    /// The `sli` metric label and the rule name part.
    pub fn label(self) -> &'static str {
        match self {
            Sli::Errors => "error",
            Sli::Latency => "latency",
        }
    }
}

/// Per-operation call windows for the objectives of a [`BurnRateConfig`],
/// and the burn-rate alert rules on them.
///
/// Only operations with an objective are tracked (at most 16), so memory
/// and the `operation` label stay bounded.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use stratum_monitor::{AlertEngine, BurnRateConfig, ManualClock, SloTracker};
///
/// let clock = ManualClock::new();
/// let slo = SloTracker::with_clock(BurnRateConfig::default(), Arc::new(clock.clone())).unwrap();
/// let engine = AlertEngine::with_clock(Arc::new(clock.clone()));
/// for rule in slo.rules().unwrap() {
///     engine.add(rule).unwrap();
/// }
/// let calls = |seconds: u32, failing_every: usize| {
///     for _ in 0..seconds {
///         for i in 0..20 {
///             slo.record("store.call", Duration::from_millis(5), failing_every > 0 && i % failing_every == 0);
///         }
///         clock.advance(Duration::from_secs(1));
///     }
/// };
/// calls(6 * 3600, 0); // six healthy hours
/// // Then 5 % of calls fail: 50x the 0.1 % budget. After 10 minutes the
/// // hour's window burns at 50 * 10/60 = 8.3x: not yet 14.4x ...
/// calls(600, 20);
/// assert!(engine.evaluate().is_empty());
/// // ... after 20 minutes at 16.7x: 2 % of a 30-day budget spent in 1 h.
/// calls(600, 20);
/// let fired: Vec<_> = engine.evaluate().into_iter().map(|e| e.rule).collect();
/// assert_eq!(fired, ["store.call.error_burn_1h"]);
/// ```
pub struct SloTracker {
    config: BurnRateConfig,
    windows: HashMap<String, (SloObjective, Arc<CallWindow>)>,
}

impl fmt::Debug for SloTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SloTracker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SloTracker {
    /// A tracker on the system clock.
    pub fn new(config: BurnRateConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A tracker on `clock`.
    pub fn with_clock(config: BurnRateConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        config.validate()?;
        let buckets = config.buckets();
        let mut windows = HashMap::new();
        for objective in &config.objectives {
            let window = CallWindow::new(
                config.bucket,
                buckets,
                objective.latency_threshold,
                Arc::clone(&clock),
            )?;
            windows.insert(
                objective.operation.clone(),
                (objective.clone(), Arc::new(window)),
            );
        }
        Ok(SloTracker { config, windows })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &BurnRateConfig {
        &self.config
    }

    /// The window of `operation`, when it has an objective. Keep it on a
    /// hot path to skip the name lookup.
    pub fn operation(&self, operation: &str) -> Option<Arc<CallWindow>> {
        self.windows.get(operation).map(|(_, w)| Arc::clone(w))
    }

    /// Counts one call of `operation` (ignored when it has no objective).
    pub fn record(&self, operation: &str, latency: Duration, failed: bool) {
        if let Some((_, w)) = self.windows.get(operation) {
            w.record(latency, failed);
        }
    }

    /// The burn rate of `operation`'s `sli` over the last `window` (in
    /// buckets, rounded up), or `None`: no such objective, or fewer
    /// than `min_calls` calls in it.
    pub fn burn_rate(&self, operation: &str, sli: Sli, window: Duration) -> Option<f64> {
        let (objective, w) = self.windows.get(operation)?;
        burn(&self.config, objective, w, sli, window)
    }

    /// One rule per objective, kind of bad call and window pair, named
    /// `<operation>.<error|latency>_burn_<long>` (e.g.
    /// `store.call.error_burn_1h`). Its figure is the smaller of the two
    /// burn rates (both must be high), its threshold the pair's; each read
    /// sets `stratum_monitor_slo_burn_rate` for both windows. Events carry
    /// `burn_rate_long`, `burn_rate_short` and `threshold`.
    pub fn rules(&self) -> Result<Vec<AlertRule>, ConfigError> {
        let mut rules = Vec::new();
        let mut objectives: Vec<&(SloObjective, Arc<CallWindow>)> = self.windows.values().collect();
        objectives.sort_by(|a, b| a.0.operation.cmp(&b.0.operation));
        for (objective, window) in objectives {
            for sli in [Sli::Errors, Sli::Latency] {
                let wanted = match sli {
                    Sli::Errors => objective.availability.is_some(),
                    Sli::Latency => objective.latency_threshold.is_some(),
                };
                if !wanted {
                    continue;
                }
                for pair in &self.config.windows {
                    rules.push(self.rule(objective, window, sli, pair)?);
                }
            }
        }
        Ok(rules)
    }

    fn rule(
        &self,
        objective: &SloObjective,
        window: &Arc<CallWindow>,
        sli: Sli,
        pair: &BurnWindow,
    ) -> Result<AlertRule, ConfigError> {
        let threshold = self.config.threshold(pair);
        let long = humantime::format_duration(pair.long).to_string();
        let short = humantime::format_duration(pair.short).to_string();
        let name = format!("{}.{}_burn_{long}", objective.operation, sli.label());
        let read = {
            let config = self.config.clone();
            let objective = objective.clone();
            let window = Arc::clone(window);
            let pair = pair.clone();
            move || {
                let rate = |d: Duration| burn(&config, &objective, &window, sli, d);
                (rate(pair.long), rate(pair.short))
            }
        };
        let read = Arc::new(read);
        let figure = {
            let read = Arc::clone(&read);
            let operation = objective.operation.clone();
            Figure::custom(move || {
                let (l, s) = read();
                for (label, value) in [(&long, l), (&short, s)] {
                    metrics::gauge!(
                        "stratum_monitor_slo_burn_rate",
                        "operation" => operation.clone(),
                        "sli" => sli.label(),
                        "window" => label.clone()
                    )
                    .set(value.unwrap_or(0.0));
                }
                Some(l?.min(s?))
            })
        };
        AlertRule::above(&name, figure, threshold)
            .for_duration(self.config.for_duration)
            .resolve_for(self.config.resolve_for)
            .details(move || {
                let (l, s) = read();
                vec![
                    ("burn_rate_long", l.unwrap_or(0.0)),
                    ("burn_rate_short", s.unwrap_or(0.0)),
                    ("threshold", threshold),
                ]
            })
            .build()
            .map_err(|e| e.within(&name))
    }
}

/// The bad share over `window` divided by the objective's budget.
fn burn(
    config: &BurnRateConfig,
    objective: &SloObjective,
    w: &CallWindow,
    sli: Sli,
    window: Duration,
) -> Option<f64> {
    let c = w.counts(config.buckets_of(window).max(1));
    if c.calls == 0 || c.calls < config.min_calls {
        return None;
    }
    let (bad, target) = match sli {
        Sli::Errors => (c.failed, objective.availability?),
        Sli::Latency => {
            objective.latency_threshold?;
            (c.slow, objective.latency_target)
        }
    };
    Some(bad as f64 / c.calls as f64 / (1.0 - target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Against a list of every call: the counts over `n` buckets are
        /// the calls whose bucket index lies in `(now - n, now]`, whatever
        /// the gaps between calls (including gaps longer than the ring).
        #[test]
        fn window_counts_match_a_list_of_every_call(
            len in 1usize..12,
            steps in proptest::collection::vec((0u64..200, 0u64..3, any::<bool>(), any::<bool>(), 1usize..15), 1..150),
        ) {
            let clock = ManualClock::new();
            let width = Duration::from_secs(10);
            let w = CallWindow::new(width, len, Some(Duration::from_millis(100)), Arc::new(clock.clone())).unwrap();
            let mut calls: Vec<(u64, bool, bool)> = Vec::new();
            let mut t = 0u64; // seconds since the origin
            for (advance, n_calls, failed, slow, read) in steps {
                clock.advance(Duration::from_secs(advance));
                t += advance;
                for _ in 0..n_calls {
                    let latency = if slow { 150 } else { 50 };
                    w.record(Duration::from_millis(latency), failed);
                    calls.push((t / 10, failed, slow));
                }
                let now = t / 10;
                let n = read.min(len) as u64;
                let inside: Vec<_> = calls.iter().filter(|(b, _, _)| *b + n > now && *b <= now).collect();
                let expected = Counts {
                    calls: inside.len() as u64,
                    failed: inside.iter().filter(|c| c.1).count() as u64,
                    slow: inside.iter().filter(|c| c.2).count() as u64,
                };
                prop_assert_eq!(w.counts(read), expected);
            }
        }
    }

    #[test]
    fn default_rules_are_named_by_operation_kind_and_window() {
        let slo = SloTracker::new(BurnRateConfig::default()).unwrap();
        let names: Vec<String> = slo
            .rules()
            .unwrap()
            .iter()
            .map(|r| r.name().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "store.call.error_burn_1h",
                "store.call.error_burn_6h",
                "store.call.latency_burn_1h",
                "store.call.latency_burn_6h"
            ]
        );
    }

    #[test]
    fn burn_rate_is_the_bad_share_over_the_budget() {
        let clock = ManualClock::new();
        let slo =
            SloTracker::with_clock(BurnRateConfig::default(), Arc::new(clock.clone())).unwrap();
        // 1000 calls: 10 failed (1 %: 10x the 0.1 % budget), 30 slower than
        // 500 ms (3 %: 3x the 1 % budget).
        for i in 0..1000 {
            let latency = if i % 100 < 3 { 600 } else { 20 };
            slo.record("store.call", Duration::from_millis(latency), i % 100 == 50);
        }
        let five = Duration::from_secs(300);
        let errors = slo.burn_rate("store.call", Sli::Errors, five).unwrap();
        let latency = slo.burn_rate("store.call", Sli::Latency, five).unwrap();
        assert!((errors - 10.0).abs() < 1e-9, "{errors}");
        assert!((latency - 3.0).abs() < 1e-9, "{latency}");
        // Operations without an objective are not tracked.
        slo.record("other", Duration::from_millis(1), true);
        assert_eq!(slo.burn_rate("other", Sli::Errors, five), None);
    }

    #[test]
    fn too_few_calls_give_no_figure() {
        let clock = ManualClock::new();
        let slo =
            SloTracker::with_clock(BurnRateConfig::default(), Arc::new(clock.clone())).unwrap();
        for _ in 0..19 {
            slo.record("store.call", Duration::from_millis(1), true);
        }
        assert_eq!(
            slo.burn_rate("store.call", Sli::Errors, Duration::from_secs(300)),
            None
        );
        slo.record("store.call", Duration::from_millis(1), true);
        assert!(
            slo.burn_rate("store.call", Sli::Errors, Duration::from_secs(300))
                .is_some()
        );
    }

    #[test]
    fn validation_names_the_field() {
        let field = |c: BurnRateConfig| c.validate().unwrap_err().field().to_owned();
        let base = BurnRateConfig::default();
        let mut c = base.clone();
        c.windows[0].short = Duration::from_secs(30);
        assert_eq!(field(c), "windows.short");
        let mut c = base.clone();
        c.windows[0].short = Duration::from_secs(7200);
        assert_eq!(field(c), "windows.short");
        let mut c = base.clone();
        c.windows[0].budget_share = 0.0;
        assert_eq!(field(c), "windows.budget_share");
        let mut c = base.clone();
        c.objectives[0].availability = Some(1.0);
        assert_eq!(field(c), "objectives.availability");
        let mut c = base.clone();
        c.objectives.push(c.objectives[0].clone());
        assert_eq!(field(c), "objectives.operation");
        let mut c = base.clone();
        c.objectives[0].operation = "Bad Name".into();
        assert_eq!(field(c), "objectives.operation");
        let mut c = base;
        c.objectives[0].latency_target = 1.5;
        assert_eq!(field(c), "objectives.latency_target");
    }
}
