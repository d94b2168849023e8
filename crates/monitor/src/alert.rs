//! Alert rules: a threshold on any tracked figure, held for a duration, with
//! hysteresis on the way back, evaluated on an injectable clock.
//!
//! A rule moves `Ok -> Pending -> Firing -> Resolving -> Ok`:
//! - it becomes **pending** when the figure breaches the fire threshold, and
//!   **fires** once it has breached on every evaluation for `for_duration`;
//! - a firing rule starts **resolving** only when the figure has crossed the
//!   separate resolve threshold (the hysteresis band lies between the two),
//!   and resolves once it stayed clear for `resolve_for`.
//!
//! A figure hovering at the fire threshold therefore fires at most once, and
//! does not resolve until it has clearly and durably recovered: no storms.
//! A figure that cannot be read (`None`, e.g. no samples in the window)
//! resets a pending rule and leaves a firing one firing.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, MonitorError, validate_name};
use crate::percentiles::LatencyTracker;

/// What a rule watches.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use stratum_monitor::{Figure, LatencyTracker, PercentileConfig};
///
/// let tracker = Arc::new(LatencyTracker::new(PercentileConfig::default()).unwrap());
/// let p99 = Figure::quantile(tracker.clone(), "find", 0.99);
/// assert_eq!(p99.read(), None); // no samples yet
/// tracker.record("find", Duration::from_millis(20));
/// assert!((p99.read().unwrap() - 0.020).abs() < 0.0001); // seconds
///
/// let ratio = Figure::custom(|| Some(0.93));
/// assert_eq!(ratio.read(), Some(0.93));
/// ```
#[derive(Clone)]
pub enum Figure {
    /// Any figure a closure can compute (a hit ratio, a queue depth);
    /// `None` when it cannot be read now.
    Custom(Arc<dyn Fn() -> Option<f64> + Send + Sync>),
    /// A latency quantile of a tracked operation, in seconds.
    Quantile {
        /// The tracker holding the operation.
        tracker: Arc<LatencyTracker>,
        /// The operation name.
        operation: String,
        /// The quantile in `[0, 1]`, e.g. `0.99`.
        quantile: f64,
    },
}

impl Figure {
    /// A figure computed by `f`.
    pub fn custom(f: impl Fn() -> Option<f64> + Send + Sync + 'static) -> Self {
        Figure::Custom(Arc::new(f))
    }

    /// The `quantile` latency of `operation` in seconds.
    pub fn quantile(tracker: Arc<LatencyTracker>, operation: &str, quantile: f64) -> Self {
        Figure::Quantile {
            tracker,
            operation: operation.to_owned(),
            quantile,
        }
    }

    /// Reads the figure now.
    pub fn read(&self) -> Option<f64> {
        match self {
            Figure::Custom(f) => f().filter(|v| v.is_finite()),
            Figure::Quantile {
                tracker,
                operation,
                quantile,
            } => tracker
                .quantile(operation, *quantile)
                .map(|d| d.as_secs_f64()),
        }
    }
}

impl fmt::Debug for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Figure::Custom(_) => f.write_str("Custom(..)"),
            Figure::Quantile {
                operation,
                quantile,
                ..
            } => f
                .debug_struct("Quantile")
                .field("operation", operation)
                .field("quantile", quantile)
                .finish_non_exhaustive(),
        }
    }
}

/// Which side of the threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Fires when the figure rises above the threshold (latency, errors).
    Above,
    /// Fires when the figure falls below the threshold (hit ratio, free slots).
    Below,
}

/// A validated alert rule. Build it with [`AlertRule::above`] or
/// [`AlertRule::below`].
///
/// ```
/// use std::time::Duration;
/// use stratum_monitor::{AlertRule, Figure};
///
/// // Cache hit ratio below 0.80 for 5 minutes; resolves above 0.85 held 2 minutes.
/// let rule = AlertRule::below("cache_hit_ratio_low", Figure::custom(|| Some(0.9)), 0.80)
///     .resolve_at(0.85)
///     .for_duration(Duration::from_secs(300))
///     .resolve_for(Duration::from_secs(120))
///     .build()
///     .unwrap();
/// assert_eq!(rule.name(), "cache_hit_ratio_low");
/// ```
#[derive(Debug, Clone)]
pub struct AlertRule {
    name: String,
    figure: Figure,
    direction: Direction,
    fire_at: f64,
    resolve_at: f64,
    for_duration: Duration,
    resolve_for: Duration,
    details: Option<Details>,
}

/// What a rule adds to its events ([`AlertRuleBuilder::details`]).
#[derive(Clone)]
struct Details(Arc<dyn Fn() -> Vec<(&'static str, f64)> + Send + Sync>);

impl fmt::Debug for Details {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Details(..)")
    }
}

impl AlertRule {
    /// A rule firing when `figure > threshold`.
    pub fn above(name: &str, figure: Figure, threshold: f64) -> AlertRuleBuilder {
        AlertRuleBuilder::new(name, figure, Direction::Above, threshold)
    }

    /// A rule firing when `figure < threshold`.
    pub fn below(name: &str, figure: Figure, threshold: f64) -> AlertRuleBuilder {
        AlertRuleBuilder::new(name, figure, Direction::Below, threshold)
    }

    /// The rule's name (a metric label: `[a-z0-9_.-]{1,64}`).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn breaches(&self, v: f64) -> bool {
        match self.direction {
            Direction::Above => v > self.fire_at,
            Direction::Below => v < self.fire_at,
        }
    }

    fn clear(&self, v: f64) -> bool {
        match self.direction {
            Direction::Above => v <= self.resolve_at && !self.breaches(v),
            Direction::Below => v >= self.resolve_at && !self.breaches(v),
        }
    }
}

/// Builds an [`AlertRule`]; `build` validates it.
#[derive(Debug, Clone)]
#[must_use]
pub struct AlertRuleBuilder {
    rule: AlertRule,
}

impl AlertRuleBuilder {
    fn new(name: &str, figure: Figure, direction: Direction, threshold: f64) -> Self {
        Self {
            rule: AlertRule {
                name: name.to_owned(),
                figure,
                direction,
                fire_at: threshold,
                resolve_at: threshold,
                for_duration: Duration::ZERO,
                resolve_for: Duration::ZERO,
                details: None,
            },
        }
    }

    /// Named figures read when the rule fires or resolves and carried in
    /// [`AlertEvent::details`], the `tracing` event and the webhook's
    /// annotations: what an operator needs besides the value, such as a
    /// regression's baseline.
    ///
    /// ```
    /// use stratum_monitor::{AlertEngine, AlertRule, Figure};
    ///
    /// let engine = AlertEngine::default();
    /// engine.add(AlertRule::above("x", Figure::custom(|| Some(2.0)), 1.0)
    ///     .details(|| vec![("baseline_seconds", 0.01)])
    ///     .build().unwrap()).unwrap();
    /// let events = engine.evaluate();
    /// assert_eq!(events[0].details, [("baseline_seconds", 0.01)]);
    /// ```
    pub fn details(
        mut self,
        f: impl Fn() -> Vec<(&'static str, f64)> + Send + Sync + 'static,
    ) -> Self {
        self.rule.details = Some(Details(Arc::new(f)));
        self
    }

    /// The resolve threshold (default: the fire threshold). For an `above`
    /// rule it must not exceed the fire threshold, for `below` not be lower.
    pub fn resolve_at(mut self, threshold: f64) -> Self {
        self.rule.resolve_at = threshold;
        self
    }

    /// How long the figure must breach before the rule fires (default 0).
    pub fn for_duration(mut self, held: Duration) -> Self {
        self.rule.for_duration = held;
        self
    }

    /// How long the figure must stay clear before the rule resolves (default 0).
    pub fn resolve_for(mut self, held: Duration) -> Self {
        self.rule.resolve_for = held;
        self
    }

    /// Validates the rule.
    pub fn build(self) -> Result<AlertRule, ConfigError> {
        let r = self.rule;
        if validate_name(&r.name).is_err() {
            return Err(ConfigError::invalid(
                "name",
                "must be 1-64 characters from [a-z0-9_.-]",
            ));
        }
        if !r.fire_at.is_finite() {
            return Err(ConfigError::invalid("threshold", "must be finite"));
        }
        if !r.resolve_at.is_finite() {
            return Err(ConfigError::invalid("resolve_at", "must be finite"));
        }
        match r.direction {
            Direction::Above if r.resolve_at > r.fire_at => {
                return Err(ConfigError::invalid(
                    "resolve_at",
                    "must be <= the fire threshold for an `above` rule",
                ));
            }
            Direction::Below if r.resolve_at < r.fire_at => {
                return Err(ConfigError::invalid(
                    "resolve_at",
                    "must be >= the fire threshold for a `below` rule",
                ));
            }
            _ => {}
        }
        if let Figure::Quantile { quantile, .. } = &r.figure
            && !(0.0..=1.0).contains(quantile)
        {
            return Err(ConfigError::invalid("quantile", "must be in [0, 1]"));
        }
        Ok(r)
    }
}

/// Fired or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertEventKind {
    /// The figure breached for `for_duration`.
    Fired,
    /// The figure stayed clear for `resolve_for`.
    Resolved,
}

impl AlertEventKind {
    fn label(self) -> &'static str {
        match self {
            AlertEventKind::Fired => "fired",
            AlertEventKind::Resolved => "resolved",
        }
    }
}

/// A rule changed between firing and not.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// The rule's name.
    pub rule: String,
    /// What happened.
    pub kind: AlertEventKind,
    /// The figure at that evaluation.
    pub value: f64,
    /// When (per the engine's clock).
    pub at: Instant,
    /// The rule's named figures at that evaluation
    /// ([`AlertRuleBuilder::details`]); empty for most rules.
    pub details: Vec<(&'static str, f64)>,
}

/// A rule's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// Not breaching.
    Ok,
    /// Breaching since the instant, not yet for long enough.
    Pending(Instant),
    /// Firing.
    Firing,
    /// Firing, clear since the instant, not yet for long enough.
    Resolving(Instant),
}

impl AlertState {
    /// Whether an operator is being told about it.
    pub fn is_firing(self) -> bool {
        matches!(self, AlertState::Firing | AlertState::Resolving(_))
    }
}

/// The state machine of one rule, on its own: feed it `(now, value)`.
/// [`AlertEngine`] drives one per rule.
fn step(
    rule: &AlertRule,
    state: AlertState,
    now: Instant,
    value: Option<f64>,
) -> (AlertState, Option<AlertEventKind>) {
    let held = |since: Instant, d: Duration| now.saturating_duration_since(since) >= d;
    match (state, value) {
        (AlertState::Ok | AlertState::Pending(_), None) => (AlertState::Ok, None),
        (AlertState::Firing | AlertState::Resolving(_), None) => (state, None),
        (AlertState::Ok, Some(v)) if rule.breaches(v) => {
            if rule.for_duration.is_zero() {
                (AlertState::Firing, Some(AlertEventKind::Fired))
            } else {
                (AlertState::Pending(now), None)
            }
        }
        (AlertState::Ok, Some(_)) => (AlertState::Ok, None),
        (AlertState::Pending(since), Some(v)) if rule.breaches(v) => {
            if held(since, rule.for_duration) {
                (AlertState::Firing, Some(AlertEventKind::Fired))
            } else {
                (state, None)
            }
        }
        (AlertState::Pending(_), Some(_)) => (AlertState::Ok, None),
        (AlertState::Firing, Some(v)) if rule.clear(v) => {
            if rule.resolve_for.is_zero() {
                (AlertState::Ok, Some(AlertEventKind::Resolved))
            } else {
                (AlertState::Resolving(now), None)
            }
        }
        (AlertState::Firing, Some(_)) => (AlertState::Firing, None),
        (AlertState::Resolving(since), Some(v)) if rule.clear(v) => {
            if held(since, rule.resolve_for) {
                (AlertState::Ok, Some(AlertEventKind::Resolved))
            } else {
                (state, None)
            }
        }
        (AlertState::Resolving(_), Some(_)) => (AlertState::Firing, None),
    }
}

type Callback = Arc<dyn Fn(&AlertEvent) + Send + Sync>;

/// Evaluates rules on a clock and reports fired/resolved events through a
/// callback, a `tracing` event (warn when fired, info when resolved) and the
/// `stratum_monitor_alert_*` metrics.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
/// use stratum_monitor::{AlertEngine, AlertEventKind, AlertRule, Figure, ManualClock};
///
/// let p99_ms = Arc::new(AtomicU64::new(300));
/// let figure = { let p = p99_ms.clone(); Figure::custom(move || Some(p.load(Ordering::SeqCst) as f64)) };
/// let clock = ManualClock::new();
/// let engine = AlertEngine::with_clock(Arc::new(clock.clone()));
/// engine.add(AlertRule::above("p99_high", figure, 250.0)
///     .resolve_at(200.0)
///     .for_duration(Duration::from_secs(30))
///     .build().unwrap()).unwrap();
///
/// assert!(engine.evaluate().is_empty()); // pending
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(engine.evaluate()[0].kind, AlertEventKind::Fired);
/// p99_ms.store(220, Ordering::SeqCst);   // inside the band: still firing
/// assert!(engine.evaluate().is_empty());
/// p99_ms.store(150, Ordering::SeqCst);
/// assert_eq!(engine.evaluate()[0].kind, AlertEventKind::Resolved);
/// ```
pub struct AlertEngine {
    clock: Arc<dyn Clock>,
    rules: Mutex<Vec<(AlertRule, AlertState)>>,
    callbacks: Mutex<Vec<Callback>>,
}

impl fmt::Debug for AlertEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertEngine")
            .field("rules", &self.rules.lock().len())
            .finish_non_exhaustive()
    }
}

impl Default for AlertEngine {
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }
}

impl AlertEngine {
    /// An engine without rules, reading time from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            rules: Mutex::new(Vec::new()),
            callbacks: Mutex::new(Vec::new()),
        }
    }

    /// Adds a rule (names are unique).
    pub fn add(&self, rule: AlertRule) -> Result<(), MonitorError> {
        let mut rules = self.rules.lock();
        if rules.iter().any(|(r, _)| r.name == rule.name) {
            return Err(MonitorError::Duplicate { name: rule.name });
        }
        rules.push((rule, AlertState::Ok));
        Ok(())
    }

    /// Calls `f` for every fired/resolved event (from the evaluating thread;
    /// keep it short).
    pub fn on_event(&self, f: impl Fn(&AlertEvent) + Send + Sync + 'static) {
        self.callbacks.lock().push(Arc::new(f));
    }

    /// The state of the rule named `name`.
    pub fn state(&self, name: &str) -> Option<AlertState> {
        self.rules
            .lock()
            .iter()
            .find(|(r, _)| r.name == name)
            .map(|(_, s)| *s)
    }

    /// Names of the rules now firing.
    pub fn firing(&self) -> Vec<String> {
        self.rules
            .lock()
            .iter()
            .filter(|(_, s)| s.is_firing())
            .map(|(r, _)| r.name.clone())
            .collect()
    }

    /// Evaluates every rule once at the clock's now and returns the events.
    pub fn evaluate(&self) -> Vec<AlertEvent> {
        let now = self.clock.instant();
        // Read figures outside the rules lock: a figure may take its own locks.
        let figures: Vec<(String, Figure, Option<Details>)> = self
            .rules
            .lock()
            .iter()
            .map(|(r, _)| (r.name.clone(), r.figure.clone(), r.details.clone()))
            .collect();
        let details: Vec<Option<Details>> = figures.iter().map(|f| f.2.clone()).collect();
        let values: Vec<(String, Option<f64>)> = figures
            .into_iter()
            .map(|(name, f, _)| (name, f.read()))
            .collect();
        let mut events = Vec::new();
        {
            let mut rules = self.rules.lock();
            for ((name, value), details) in values.into_iter().zip(details) {
                let Some((rule, state)) = rules.iter_mut().find(|(r, _)| r.name == name) else {
                    continue;
                };
                let (next, event) = step(rule, *state, now, value);
                *state = next;
                metrics::gauge!("stratum_monitor_alert_firing", "alert" => name.clone())
                    .set(if next.is_firing() { 1.0 } else { 0.0 });
                if let (Some(kind), Some(value)) = (event, value) {
                    events.push(AlertEvent {
                        rule: name,
                        kind,
                        value,
                        at: now,
                        // Read under the rules lock: a details closure only
                        // reads its own state, never the engine.
                        details: details.map(|d| (d.0)()).unwrap_or_default(),
                    });
                }
            }
        }
        if !events.is_empty() {
            let callbacks: Vec<Callback> = self.callbacks.lock().clone();
            for event in &events {
                metrics::counter!(
                    "stratum_monitor_alert_events_total",
                    "alert" => event.rule.clone(),
                    "event" => event.kind.label()
                )
                .increment(1);
                match event.kind {
                    AlertEventKind::Fired => {
                        tracing::warn!(alert = %event.rule, value = event.value, details = ?event.details, "alert fired");
                    }
                    AlertEventKind::Resolved => {
                        tracing::info!(alert = %event.rule, value = event.value, "alert resolved");
                    }
                }
                for cb in &callbacks {
                    cb(event);
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::PercentileConfig;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A figure the test sets by hand.
    fn knob() -> (Arc<AtomicU64>, Figure) {
        let cell = Arc::new(AtomicU64::new(0f64.to_bits()));
        let read = Arc::clone(&cell);
        (
            cell,
            Figure::custom(move || Some(f64::from_bits(read.load(Ordering::SeqCst)))),
        )
    }

    fn set(cell: &AtomicU64, v: f64) {
        cell.store(v.to_bits(), Ordering::SeqCst);
    }

    fn kinds(events: &[AlertEvent]) -> Vec<AlertEventKind> {
        events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn hovering_at_the_threshold_fires_once_and_does_not_flap() {
        let clock = ManualClock::new();
        let engine = AlertEngine::with_clock(Arc::new(clock.clone()));
        let (cell, figure) = knob();
        engine
            .add(
                AlertRule::above("p99_high", figure, 0.250)
                    .resolve_at(0.200)
                    .for_duration(Duration::from_secs(30))
                    .resolve_for(Duration::from_secs(60))
                    .build()
                    .unwrap(),
            )
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        engine.on_event(move |e| sink.lock().push(e.kind));

        // Breach for 20 s, dip under for one evaluation: pending restarts.
        set(&cell, 0.260);
        for _ in 0..5 {
            assert!(engine.evaluate().is_empty());
            clock.advance(Duration::from_secs(5));
        }
        set(&cell, 0.240);
        assert!(engine.evaluate().is_empty());
        assert_eq!(engine.state("p99_high"), Some(AlertState::Ok));

        // Now hover around 0.25 (0.251 / 0.249) for ten minutes, every 5 s.
        let mut events = Vec::new();
        for i in 0..120 {
            set(&cell, if i % 2 == 0 { 0.251 } else { 0.249 });
            events.extend(engine.evaluate());
            clock.advance(Duration::from_secs(5));
        }
        // Hovering never holds the breach for 30 s: no event at all.
        assert!(events.is_empty(), "{events:?}");

        // Held above for 30 s: fires exactly once.
        set(&cell, 0.300);
        for _ in 0..7 {
            events.extend(engine.evaluate());
            clock.advance(Duration::from_secs(5));
        }
        assert_eq!(kinds(&events), [AlertEventKind::Fired]);

        // Oscillating across the fire threshold inside the band: still firing, no event.
        for i in 0..120 {
            set(&cell, if i % 2 == 0 { 0.260 } else { 0.210 });
            events.extend(engine.evaluate());
            clock.advance(Duration::from_secs(5));
        }
        assert_eq!(events.len(), 1);
        assert!(engine.state("p99_high").unwrap().is_firing());

        // Clear for 55 s then one bad reading: resolve timer restarts.
        set(&cell, 0.100);
        for _ in 0..12 {
            events.extend(engine.evaluate());
            clock.advance(Duration::from_secs(5));
        }
        set(&cell, 0.230);
        events.extend(engine.evaluate());
        assert_eq!(engine.state("p99_high"), Some(AlertState::Firing));
        set(&cell, 0.100);
        for _ in 0..13 {
            events.extend(engine.evaluate());
            clock.advance(Duration::from_secs(5));
        }
        assert_eq!(
            kinds(&events),
            [AlertEventKind::Fired, AlertEventKind::Resolved]
        );
        assert_eq!(
            *seen.lock(),
            [AlertEventKind::Fired, AlertEventKind::Resolved]
        );
        assert!(engine.firing().is_empty());
    }

    #[test]
    fn below_rule_on_a_ratio() {
        let clock = ManualClock::new();
        let engine = AlertEngine::with_clock(Arc::new(clock.clone()));
        let (cell, figure) = knob();
        engine
            .add(
                AlertRule::below("hit_ratio_low", figure, 0.8)
                    .resolve_at(0.85)
                    .build()
                    .unwrap(),
            )
            .unwrap();
        set(&cell, 0.9);
        assert!(engine.evaluate().is_empty());
        set(&cell, 0.7);
        assert_eq!(kinds(&engine.evaluate()), [AlertEventKind::Fired]);
        set(&cell, 0.83);
        assert!(engine.evaluate().is_empty());
        set(&cell, 0.86);
        assert_eq!(kinds(&engine.evaluate()), [AlertEventKind::Resolved]);
    }

    #[test]
    fn quantile_figure_reads_the_tracker_in_seconds() {
        let clock = ManualClock::new();
        let tracker = Arc::new(
            LatencyTracker::with_clock(PercentileConfig::default(), Arc::new(clock.clone()))
                .unwrap(),
        );
        let engine = AlertEngine::with_clock(Arc::new(clock.clone()));
        engine
            .add(
                AlertRule::above(
                    "find_p99",
                    Figure::quantile(Arc::clone(&tracker), "find", 0.99),
                    0.1,
                )
                .for_duration(Duration::from_secs(10))
                .build()
                .unwrap(),
            )
            .unwrap();
        // No samples yet: the figure is None, nothing happens.
        assert!(engine.evaluate().is_empty());
        for _ in 0..100 {
            tracker.record("find", Duration::from_millis(150));
        }
        assert!(engine.evaluate().is_empty());
        clock.advance(Duration::from_secs(10));
        let events = engine.evaluate();
        assert_eq!(kinds(&events), [AlertEventKind::Fired]);
        assert!((events[0].value - 0.150).abs() < 0.001);
        // The window empties: a firing rule keeps firing on missing data.
        clock.advance(Duration::from_secs(120));
        assert!(engine.evaluate().is_empty());
        assert!(engine.state("find_p99").unwrap().is_firing());
    }

    #[test]
    fn rule_validation_names_the_field() {
        let f = || Figure::custom(|| None);
        assert_eq!(
            AlertRule::above("x", f(), 1.0)
                .resolve_at(2.0)
                .build()
                .unwrap_err()
                .field(),
            "resolve_at"
        );
        assert_eq!(
            AlertRule::below("x", f(), 1.0)
                .resolve_at(0.5)
                .build()
                .unwrap_err()
                .field(),
            "resolve_at"
        );
        assert_eq!(
            AlertRule::above("x", f(), f64::NAN)
                .build()
                .unwrap_err()
                .field(),
            "threshold"
        );
        assert_eq!(
            AlertRule::above("Bad Name", f(), 1.0)
                .build()
                .unwrap_err()
                .field(),
            "name"
        );
        let tracker = Arc::new(LatencyTracker::new(PercentileConfig::default()).unwrap());
        assert_eq!(
            AlertRule::above("x", Figure::quantile(tracker, "op", 1.5), 1.0)
                .build()
                .unwrap_err()
                .field(),
            "quantile"
        );
        let engine = AlertEngine::default();
        engine
            .add(AlertRule::above("x", f(), 1.0).build().unwrap())
            .unwrap();
        assert!(matches!(
            engine.add(AlertRule::above("x", f(), 1.0).build().unwrap()),
            Err(MonitorError::Duplicate { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Against the definition, for any series of (advance, value):
        /// events alternate Fired/Resolved starting with Fired; a Fired event
        /// comes only after every evaluation in the last `for` breached; a
        /// Resolved one only after every evaluation in the last `resolve_for`
        /// was clear.
        #[test]
        fn events_follow_the_definition(
            for_s in 0u64..30,
            resolve_for_s in 0u64..30,
            band in 0.0f64..0.5,
            series in proptest::collection::vec((1u64..10, 0.0f64..2.0), 1..200),
        ) {
            let fire_at = 1.0;
            let resolve_at = fire_at - band;
            let clock = ManualClock::new();
            let engine = AlertEngine::with_clock(Arc::new(clock.clone()));
            let (cell, figure) = knob();
            engine.add(AlertRule::above("r", figure, fire_at)
                .resolve_at(resolve_at)
                .for_duration(Duration::from_secs(for_s))
                .resolve_for(Duration::from_secs(resolve_for_s))
                .build().unwrap()).unwrap();
            let mut history: Vec<(u64, f64)> = Vec::new();
            let mut t = 0u64;
            let mut firing = false;
            for (advance, v) in series {
                clock.advance(Duration::from_secs(advance));
                t += advance;
                set(&cell, v);
                history.push((t, v));
                for e in engine.evaluate() {
                    match e.kind {
                        AlertEventKind::Fired => {
                            prop_assert!(!firing);
                            firing = true;
                            // The breaching run that ends now lasted >= for.
                            let start = history.iter().rev().take_while(|(_, x)| *x > fire_at).last().unwrap().0;
                            prop_assert!(t - start >= for_s);
                        }
                        AlertEventKind::Resolved => {
                            prop_assert!(firing);
                            firing = false;
                            let start = history.iter().rev().take_while(|(_, x)| *x <= resolve_at).last().unwrap().0;
                            prop_assert!(t - start >= resolve_for_s);
                        }
                    }
                }
                prop_assert_eq!(engine.state("r").unwrap().is_firing(), firing);
            }
        }
    }
}
