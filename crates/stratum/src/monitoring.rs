//! The handle's monitoring (feature `monitor`, section `[monitor]`): the
//! stack's own [`Monitor`], built before any layer so every layer's metric
//! handles bind to its recorder, and what [`StratumBuilder::open`](crate::StratumBuilder::open) starts with it:
//! the listener, the resource sampler, alert evaluation with the default
//! rules, the health checks and the cache statistics publisher.
//!
//! **Why a scope and not the global recorder:** handles bind to the recorder
//! current when they are made. Building every layer inside the monitor's
//! [`MetricsScope`](stratum_monitor::MetricsScope) puts the stack's series
//! on its own `/metrics` whether or not (and whenever) a global recorder is
//! installed, and two stacks in one process keep their series apart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use stratum_monitor::{
    AlertEvent, AlertRule, CallWindow, Figure, Monitor, MonitorTasks, RegressionDetector,
    RollingHistogram,
};

use crate::{ConfigError, RepositoryError, SharedClock, Stratum, StratumConfig};

/// The operation name of database calls in the latency tracker (what the
/// `latency_p99` rule reads).
pub const CALL_OPERATION: &str = "store.call";

/// Default rule names: the `alert` label and the webhook's `alertname`.
pub mod rules {
    /// The store's breaker is not closed.
    pub const BREAKER_OPEN: &str = "breaker_open";
    /// Admission slots in use over the limit is above the threshold.
    pub const ADMISSION_SATURATED: &str = "admission_saturated";
    /// Failed database calls over all calls is above the threshold.
    pub const ERROR_RATIO: &str = "error_ratio";
    /// The p99 of database calls is above the objective.
    pub const LATENCY_P99: &str = "latency_p99";
    /// The p99 of database calls rose over its learned baseline.
    pub const LATENCY_REGRESSION: &str = "latency_regression";
    /// The burn-rate rules are named `<operation>.<error|latency>_burn_<long
    /// window>` after `[monitor.alerts.burn_rate]`; with the defaults, this
    /// one pages when database calls spend 2 % of a 30-day error budget in
    /// 1 h (confirmed over 5 min).
    pub const ERROR_BURN_1H: &str = "store.call.error_burn_1h";
}

/// Database calls through the stack, for the `error_ratio` rule.
#[derive(Debug, Default)]
pub(crate) struct CallCounts {
    total: AtomicU64,
    failed: AtomicU64,
}

/// The stack's monitor and what runs with it.
pub(crate) struct Monitoring {
    monitor: Monitor,
    running: Mutex<Option<MonitorTasks>>,
    addr: Mutex<Option<SocketAddr>>,
    calls: Arc<CallCounts>,
    latency: Arc<RollingHistogram>,
    /// The burn-rate window of database calls, when an objective names them.
    slo: Option<Arc<CallWindow>>,
}

impl std::fmt::Debug for Monitoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitoring")
            .field("addr", &*self.addr.lock())
            .finish_non_exhaustive()
    }
}

impl Monitoring {
    /// The monitor of `config`'s `[monitor]` section on the stack's clock,
    /// or none when the section is switched off.
    pub(crate) fn new(
        config: &StratumConfig,
        clock: &SharedClock,
    ) -> Result<Option<Arc<Monitoring>>, ConfigError> {
        if !config.monitor.enabled {
            return Ok(None);
        }
        let monitor = Monitor::builder(config.monitor.settings.clone())
            .clock(Arc::clone(clock))
            .build()
            .map_err(|e| e.within("monitor"))?;
        let latency = monitor
            .latency()
            .operation(CALL_OPERATION)
            .map_err(|e| ConfigError::invalid("monitor.percentiles", e.to_string()))?;
        let slo = monitor.slo().operation(CALL_OPERATION);
        Ok(Some(Arc::new(Monitoring {
            monitor,
            running: Mutex::new(None),
            addr: Mutex::new(None),
            calls: Arc::new(CallCounts::default()),
            latency,
            slo,
        })))
    }

    pub(crate) fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// Runs `f` in the monitor's metrics scope: handles made there land on
    /// the stack's `/metrics`.
    pub(crate) fn scope<T>(&self, f: impl FnOnce() -> T) -> T {
        self.monitor.in_scope(f)
    }

    /// Counts one database call and records its latency.
    pub(crate) fn observe<R>(&self, elapsed: Duration, result: &Result<R, RepositoryError>) {
        self.calls.total.fetch_add(1, Ordering::Relaxed);
        let failed = matches!(result, Err(e) if e.is_unavailable());
        if failed {
            self.calls.failed.fetch_add(1, Ordering::Relaxed);
        }
        // Every call spends the error budget alike, refused ones included:
        // the caller saw a failure whatever refused it.
        if let Some(slo) = &self.slo {
            slo.record(elapsed, failed);
        }
        // Calls refused before the database (breaker, admission) took no
        // database time: they would only pull the percentile down.
        if !matches!(
            result,
            Err(RepositoryError::NotPermitted { .. } | RepositoryError::Overloaded { .. })
        ) {
            self.latency.record(elapsed);
        }
    }
}

impl Stratum {
    /// Registers the health checks and default rules, the cache publisher,
    /// and starts the listener and background work. Runs once, at build.
    pub(crate) fn start_monitoring(&self) -> Result<(), ConfigError> {
        let Some(monitoring) = self.layers.monitoring.as_ref() else {
            return Ok(());
        };
        let monitor = &monitoring.monitor;
        let refused =
            |e: stratum_monitor::MonitorError| ConfigError::invalid("monitor", e.to_string());
        self.register_health(monitor.health()).map_err(refused)?;
        self.register_default_rules(monitoring)
            .map_err(|e| e.within("monitor.alerts"))?;
        #[cfg(feature = "cache")]
        {
            let caches = Arc::clone(&self.layers.caches);
            monitor.add_collector(move || caches.publish());
        }
        let tasks = if !monitor.config().serve {
            monitor.spawn_background()
        } else {
            match monitor.spawn() {
                Ok(running) => {
                    *monitoring.addr.lock() = Some(running.local_addr());
                    running.into_tasks()
                }
                // Monitoring must not cost availability: the stack works
                // without its endpoint (`metrics_addr()` says it is not
                // served); the sampler and the alerts still run.
                Err(error) => {
                    tracing::error!(%error, "monitor: /metrics and /health are not served");
                    monitor.spawn_background()
                }
            }
        };
        *monitoring.running.lock() = Some(tasks);
        Ok(())
    }

    fn register_default_rules(&self, monitoring: &Monitoring) -> Result<(), ConfigError> {
        let alerts = &self.config().monitor.settings.alerts;
        let engine = monitoring.monitor.alerts();
        let add = |rule: AlertRule| {
            engine
                .add(rule)
                .map_err(|e| ConfigError::invalid("rules", e.to_string()))
        };
        #[cfg(feature = "breaker")]
        if alerts.breaker_open.enabled
            && let Some(breaker) = self.breaker().cloned()
        {
            use stratum_breaker::State;
            let open = Figure::custom(move || {
                Some(match breaker.state() {
                    State::Open | State::ForcedOpen | State::HalfOpen => 1.0,
                    State::Closed | State::Disabled | State::MetricsOnly => 0.0,
                })
            });
            let rule = &alerts.breaker_open;
            add(AlertRule::above(rules::BREAKER_OPEN, open, 0.5)
                .resolve_at(0.5)
                .for_duration(rule.for_duration)
                .resolve_for(rule.resolve_for)
                .build()
                .map_err(|e| e.within("breaker_open"))?)?;
        }
        #[cfg(feature = "pool")]
        if alerts.admission_saturated.enabled
            && let Some(admission) = self.layers.admission.clone()
        {
            let saturation = Figure::custom(move || {
                // Calls in flight against the concurrency limit (the pool
                // is sized to the limit's ceiling, so it rarely fills).
                let l = admission.limit();
                (l.limit > 0).then(|| (l.in_flight as f64 / l.limit as f64).min(1.0))
            });
            let rule = &alerts.admission_saturated;
            add(
                AlertRule::above(rules::ADMISSION_SATURATED, saturation, rule.threshold)
                    .resolve_at(rule.resolve_at)
                    .for_duration(rule.for_duration)
                    .resolve_for(rule.resolve_for)
                    .build()
                    .map_err(|e| e.within("admission_saturated"))?,
            )?;
        }
        if alerts.error_ratio.enabled {
            let calls = Arc::clone(&monitoring.calls);
            let last = Mutex::new((0u64, 0u64));
            // Over the calls since the previous evaluation; no call since:
            // no figure (a firing rule keeps firing, a pending one resets).
            let ratio = Figure::custom(move || {
                let now = (
                    calls.total.load(Ordering::Relaxed),
                    calls.failed.load(Ordering::Relaxed),
                );
                let before = std::mem::replace(&mut *last.lock(), now);
                let total = now.0.saturating_sub(before.0);
                let failed = now.1.saturating_sub(before.1);
                (total > 0).then(|| failed as f64 / total as f64)
            });
            let rule = &alerts.error_ratio;
            add(AlertRule::above(rules::ERROR_RATIO, ratio, rule.threshold)
                .resolve_at(rule.resolve_at)
                .for_duration(rule.for_duration)
                .resolve_for(rule.resolve_for)
                .build()
                .map_err(|e| e.within("error_ratio"))?)?;
        }
        if alerts.latency_p99.enabled {
            let latency = Arc::clone(&monitoring.latency);
            let p99 = Figure::custom(move || latency.quantile(0.99).map(|d| d.as_secs_f64()));
            let rule = &alerts.latency_p99;
            add(
                AlertRule::above(rules::LATENCY_P99, p99, rule.objective.as_secs_f64())
                    .resolve_at(rule.resolve_at.as_secs_f64())
                    .for_duration(rule.for_duration)
                    .resolve_for(rule.resolve_for)
                    .build()
                    .map_err(|e| e.within("latency_p99"))?,
            )?;
        }
        if alerts.burn_rate.enabled {
            for rule in monitoring
                .monitor
                .slo()
                .rules()
                .map_err(|e| e.within("burn_rate"))?
            {
                add(rule)?;
            }
        }
        if alerts.latency_regression.enabled {
            let config = &alerts.latency_regression;
            let detector = Arc::new(
                RegressionDetector::new(config.clone())
                    .map_err(|e| e.within("latency_regression"))?,
            );
            let latency = Arc::clone(&monitoring.latency);
            let quantile = config.quantile;
            add(detector
                .rule(
                    rules::LATENCY_REGRESSION,
                    CALL_OPERATION,
                    move || latency.quantile(quantile),
                    monitoring.monitor.config().percentiles.window,
                    Arc::clone(monitoring.monitor.clock()),
                )
                .map_err(|e| e.within("latency_regression"))?)?;
        }
        Ok(())
    }

    /// The stack's monitor (`[monitor]` enabled, the default): its recorder
    /// holds every layer's series, its health registry the stack's checks,
    /// its alert engine the default rules. `None` when switched off.
    ///
    /// Your own `metrics!` calls reach it through
    /// [`Monitor::install_global`] (once per process) or
    /// [`Monitor::in_scope`]; its [`Monitor::router`] serves `/metrics` and
    /// `/health/*` from a server you already run.
    pub fn monitor(&self) -> Option<&Monitor> {
        self.layers.monitoring.as_deref().map(Monitoring::monitor)
    }

    /// Where the monitor's listener is bound (`monitor.listen`; port 0 picks
    /// a free one), or `None`: monitoring switched off, `monitor.serve =
    /// false` (mount `monitor().unwrap().router()` yourself), the handle
    /// shut down, or the address could not be bound (logged at error level;
    /// the stack, the sampler and the alerts work without it).
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// use stratum::{Stratum, StratumConfig};
    ///
    /// let mut config = StratumConfig::default();
    /// config.monitor.listen = "127.0.0.1:0".parse()?;
    /// let stratum = Stratum::builder(config).build()?;
    /// let addr = stratum.metrics_addr().expect("served");
    /// assert!(addr.ip().is_loopback() && addr.port() != 0);
    /// let text = stratum.monitor().unwrap().render();
    /// # #[cfg(feature = "breaker")] // (the breaker's series, when built in)
    /// assert!(text.contains("stratum_breaker_state"));
    /// stratum.shutdown().await;
    /// assert_eq!(stratum.metrics_addr(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.layers.monitoring.as_ref().and_then(|m| *m.addr.lock())
    }

    /// Calls `f` for every fired and resolved alert event, on the thread
    /// that evaluates the rules (keep it short; hand work to a channel).
    pub fn on_alert(&self, f: impl Fn(&AlertEvent) + Send + Sync + 'static) {
        if let Some(monitor) = self.monitor() {
            monitor.alerts().on_event(f);
        }
    }

    /// The monitoring part of [`shutdown`](Self::shutdown): the listener,
    /// the resource sampler and alert evaluation (after a last evaluation
    /// and cache publication), then the webhook's flush.
    pub(crate) async fn shutdown_monitoring(&self) {
        if let Some(monitoring) = &self.layers.monitoring {
            let running = monitoring.running.lock().take();
            *monitoring.addr.lock() = None;
            if let Some(running) = running {
                running.shutdown().await;
            }
        }
    }
}
