//! Synthetic call series with known change points, run through the real
//! trend rules on a manual clock: shared by `tests/trends.rs` (the goals,
//! on fixed seeds) and `benches/trends.rs` (the table in docs/trends.md).
//!
//! Every simulated second `rate` calls are recorded at once: a latency
//! drawn from a log-normal (median 20 ms, sigma 0.5, so p99 is about
//! 64 ms) times the scenario's factor at that second, failed with the
//! scenario's error probability. The calls go into a real
//! `RollingHistogram` (the regression rule reads its p99) and a real
//! `SloTracker` (the burn-rate rules), and the engine evaluates every 5 s,
//! as a `Stratum` handle's monitor does by default.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use stratum_monitor::{
    AlertEngine, AlertEventKind, BurnRateConfig, Clock, ManualClock, PercentileConfig,
    RegressionConfig, RegressionDetector, RollingHistogram, SloTracker,
};

/// The latency model's median and log-normal sigma.
pub(crate) const MEDIAN_SECONDS: f64 = 0.020;
pub(crate) const SIGMA: f64 = 0.5;
/// The stationary error probability: 0.02 %, a fifth of a 99.9 % budget.
pub(crate) const BASE_ERRORS: f64 = 0.0002;
/// The regression rule's name in the simulation.
pub(crate) const REGRESSION: &str = "latency_regression";

/// What changes, from `Scenario::change_at` on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change {
    /// Nothing.
    None,
    /// Latency multiplied by a factor growing linearly to `factor` over `over`.
    Drift { over: Duration, factor: f64 },
    /// Latency multiplied by `factor` from then on.
    Step { factor: f64 },
    /// Latency multiplied by `factor` for `length`.
    Spike { length: Duration, factor: f64 },
    /// Error probability `rate` from then on.
    Errors { rate: f64 },
    /// Error probability `rate` for `length`.
    ErrorSpike { length: Duration, rate: f64 },
}

/// A series: stationary until `change_at`, then `change`, for `total`.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub(crate) name: String,
    pub(crate) change_at: Duration,
    pub(crate) total: Duration,
    pub(crate) change: Change,
}

impl Scenario {
    fn at(&self, t: Duration) -> (f64, f64) {
        if t < self.change_at {
            return (1.0, BASE_ERRORS);
        }
        let since = t - self.change_at;
        match self.change {
            Change::None => (1.0, BASE_ERRORS),
            Change::Drift { over, factor } => {
                let share = (since.as_secs_f64() / over.as_secs_f64()).min(1.0);
                (1.0 + (factor - 1.0) * share, BASE_ERRORS)
            }
            Change::Step { factor } => (factor, BASE_ERRORS),
            Change::Spike { length, factor } if since < length => (factor, BASE_ERRORS),
            Change::Errors { rate } => (1.0, rate),
            Change::ErrorSpike { length, rate } if since < length => (1.0, rate),
            Change::Spike { .. } | Change::ErrorSpike { .. } => (1.0, BASE_ERRORS),
        }
    }
}

/// What the rules are given.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) rate: u32,
    pub(crate) percentiles: PercentileConfig,
    pub(crate) burn: BurnRateConfig,
    pub(crate) regression: RegressionConfig,
    /// The latency objective's threshold (the series' p99 is about 64 ms).
    pub(crate) latency_threshold: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        let mut burn = BurnRateConfig::default();
        let latency_threshold = Duration::from_millis(100);
        burn.objectives[0].latency_threshold = Some(latency_threshold);
        Setup {
            rate: 50,
            percentiles: PercentileConfig::default(),
            burn,
            regression: RegressionConfig::default(),
            latency_threshold,
        }
    }
}

/// One fired event: the rule and when, since the series began.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fired {
    pub(crate) rule: String,
    pub(crate) at: Duration,
    /// For the regression rule: when it says the change began.
    pub(crate) began: Option<Duration>,
}

/// Runs `scenario` with noise `seed` and returns every fired event.
pub(crate) fn run(scenario: &Scenario, seed: u64, setup: &Setup) -> Vec<Fired> {
    let clock = ManualClock::new();
    let start = clock.instant();
    let shared: Arc<dyn stratum_monitor::Clock> = Arc::new(clock.clone());
    let hist = Arc::new(RollingHistogram::new(&setup.percentiles, Arc::clone(&shared)).unwrap());
    let slo = SloTracker::with_clock(setup.burn.clone(), Arc::clone(&shared)).unwrap();
    let calls = slo.operation("store.call").unwrap();
    let engine = AlertEngine::with_clock(Arc::clone(&shared));
    for rule in slo.rules().unwrap() {
        engine.add(rule).unwrap();
    }
    let detector = Arc::new(RegressionDetector::new(setup.regression.clone()).unwrap());
    let source = Arc::clone(&hist);
    let q = setup.regression.quantile;
    engine
        .add(
            detector
                .rule(
                    REGRESSION,
                    "store.call",
                    move || source.quantile(q),
                    setup.percentiles.window,
                    shared,
                )
                .unwrap(),
        )
        .unwrap();
    let mut rng = Rng::new(seed);
    let mut fired = Vec::new();
    let seconds = scenario.total.as_secs();
    for s in 0..seconds {
        let t = Duration::from_secs(s);
        let (factor, errors) = scenario.at(t);
        for _ in 0..setup.rate {
            let latency = MEDIAN_SECONDS * factor * (SIGMA * rng.normal()).exp();
            let latency = Duration::from_secs_f64(latency);
            hist.record(latency);
            calls.record(latency, rng.uniform() < errors);
        }
        clock.advance(Duration::from_secs(1));
        if (s + 1) % 5 == 0 {
            for e in engine.evaluate() {
                if e.kind == AlertEventKind::Fired {
                    let at = e.at - start;
                    let began = (e.rule == REGRESSION)
                        .then(|| detector.reading().and_then(|r| r.began))
                        .flatten()
                        .map(|b| b - start);
                    fired.push(Fired {
                        rule: e.rule,
                        at,
                        began,
                    });
                }
            }
        }
    }
    fired
}

/// splitmix64: small, fast, and the same numbers on every platform.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u = self.uniform().max(f64::MIN_POSITIVE);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// The rule families the tables report.
pub(crate) fn family(rule: &str) -> &'static str {
    if rule == REGRESSION {
        "regression"
    } else if rule.contains("error_burn") {
        "error burn"
    } else {
        "latency burn"
    }
}
