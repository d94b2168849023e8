//! [`Monitor`]: the exporter's recorder plus the tracker, health registry,
//! alert engine and resource sampler, and the background work that keeps
//! them current (upkeep, sampling, alert evaluation).

use std::fmt;
use std::sync::Arc;

use metrics::Unit;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_util::MetricKindMask;
use parking_lot::{Mutex, RwLock};
use stratum_core::metrics::MetricsScope;

use crate::alert::AlertEngine;
use crate::clock::{Clock, SystemClock};
use crate::config::MonitorConfig;
use crate::error::{ConfigError, MonitorError};
use crate::health::{CheckKind, Health, HealthRegistry};
use crate::percentiles::LatencyTracker;
use crate::resources::{ProcSelf, ResourceSample, ResourceSource};
use crate::server::{self, MonitorTasks, RunningMonitor};
use crate::slo::SloTracker;
use crate::webhook::Webhook;

/// The liveness check every monitor registers: the process answers.
pub const PROCESS_CHECK: &str = "process";

/// Work run before every render and upkeep (publishing figures kept
/// elsewhere, such as cache statistics).
type Collector = Arc<dyn Fn() + Send + Sync>;

/// The monitor. Cheap to clone (shared state).
///
/// Building one does not touch the process-wide `metrics` recorder: call
/// [`Monitor::install_global`] once in `main` so every `metrics!` call of
/// the program lands here, or scope recording with [`Monitor::in_scope`]
/// (what a `Stratum` handle does for its layers: their series reach this
/// monitor whatever is installed globally, and whenever it was installed).
///
/// It registers the `process` liveness check itself (always `UP`: the
/// process answers), so a program registers only its dependencies.
///
/// ```
/// use stratum_monitor::{Monitor, MonitorConfig};
///
/// let monitor = Monitor::new(MonitorConfig::default()).unwrap();
/// monitor.in_scope(|| {
///     metrics::counter!("stratum_cache_hits_total", "cache" => "prompts").increment(3);
///     metrics::histogram!("stratum_cache_load_duration_seconds", "cache" => "prompts").record(0.004);
/// });
/// let text = monitor.render();
/// assert!(text.contains("stratum_cache_hits_total{cache=\"prompts\"} 3"));
/// // `_seconds` histograms are real Prometheus histograms with buckets.
/// assert!(text.contains("stratum_cache_load_duration_seconds_bucket{cache=\"prompts\",le=\"0.005\"} 1"));
/// ```
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

struct Inner {
    config: MonitorConfig,
    recorder: Arc<PrometheusRecorder>,
    scope: MetricsScope,
    collectors: RwLock<Vec<Collector>>,
    last_sample: Mutex<Option<ResourceSample>>,
    webhook: Option<Arc<Webhook>>,
    handle: PrometheusHandle,
    latency: Arc<LatencyTracker>,
    health: Arc<HealthRegistry>,
    alerts: Arc<AlertEngine>,
    slo: Arc<SloTracker>,
    clock: Arc<dyn Clock>,
    resources: Box<dyn ResourceSource>,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("config", &self.inner.config)
            .field("latency", &self.inner.latency)
            .field("health", &self.inner.health)
            .field("alerts", &self.inner.alerts)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// A monitor on the system clock reading `/proc/self`.
    pub fn new(config: MonitorConfig) -> Result<Self, ConfigError> {
        Self::builder(config).build()
    }

    /// A builder, to inject a clock or a resource source.
    pub fn builder(config: MonitorConfig) -> MonitorBuilder {
        MonitorBuilder {
            config,
            clock: Arc::new(SystemClock),
            resources: Box::new(ProcSelf::default()),
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &MonitorConfig {
        &self.inner.config
    }

    /// The Prometheus recorder; `metrics::with_local_recorder(&*rec, ..)`
    /// records into it without installing it.
    pub fn recorder(&self) -> Arc<PrometheusRecorder> {
        Arc::clone(&self.inner.recorder)
    }

    /// Runs `f` with this monitor as the `metrics` recorder of the current
    /// thread (whatever is installed globally).
    pub fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        self.inner.scope.enter(f)
    }

    /// The [`MetricsScope`] of this monitor's recorder: handles registered
    /// inside it (and the dynamic series of code that captured it) land
    /// here.
    pub fn metrics_scope(&self) -> &MetricsScope {
        &self.inner.scope
    }

    /// Runs `collect` inside this monitor's scope before every render of
    /// `/metrics` and every upkeep: the place to publish figures that live
    /// elsewhere (cache statistics, pool accounting).
    ///
    /// ```
    /// use stratum_monitor::{Monitor, MonitorConfig};
    ///
    /// let monitor = Monitor::new(MonitorConfig::default()).unwrap();
    /// monitor.add_collector(|| metrics::gauge!("stratum_cache_entries", "cache" => "x").set(7.0));
    /// assert!(monitor.render().contains("stratum_cache_entries{cache=\"x\"} 7"));
    /// ```
    pub fn add_collector(&self, collect: impl Fn() + Send + Sync + 'static) {
        self.inner.collectors.write().push(Arc::new(collect));
    }

    /// Runs every collector now (in this monitor's scope).
    pub fn collect(&self) {
        let collectors: Vec<Collector> = self.inner.collectors.read().clone();
        self.in_scope(|| collectors.iter().for_each(|c| c()));
    }

    /// Installs this monitor's recorder as the process-wide `metrics`
    /// recorder. Once per process.
    pub fn install_global(&self) -> Result<(), MonitorError> {
        metrics::set_global_recorder(Arc::clone(&self.inner.recorder))
            .map_err(|_| MonitorError::RecorderAlreadyInstalled)?;
        Ok(())
    }

    /// The Prometheus text exposition of every series (what `/metrics`
    /// serves): the collectors run first, and the process figures of the
    /// last resource sample (taken now if there is none yet) follow under
    /// the standard `process_*` names.
    pub fn render(&self) -> String {
        self.collect();
        let mut text = self.inner.handle.render();
        let sample = *self.inner.last_sample.lock();
        let sample = sample.unwrap_or_else(|| self.sample_resources());
        sample.render_prometheus(&mut text);
        text
    }

    /// Drains buffered histogram samples into their buckets and drops idle
    /// series. [`Monitor::start`] runs it every `upkeep_interval`; call it
    /// yourself only when the monitor is not started.
    pub fn run_upkeep(&self) {
        self.collect();
        self.inner.handle.run_upkeep();
    }

    /// The in-process latency tracker.
    pub fn latency(&self) -> &Arc<LatencyTracker> {
        &self.inner.latency
    }

    /// The health registry.
    pub fn health(&self) -> &Arc<HealthRegistry> {
        &self.inner.health
    }

    /// The alert engine.
    pub fn alerts(&self) -> &Arc<AlertEngine> {
        &self.inner.alerts
    }

    /// The call windows of the `[alerts.burn_rate]` objectives; its
    /// [`rules`](SloTracker::rules) are the burn-rate alert rules (a
    /// `Stratum` handle registers them).
    pub fn slo(&self) -> &Arc<SloTracker> {
        &self.inner.slo
    }

    /// The clock the monitor's windows and rules read.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Samples process resources now; `/metrics` serves the last sample.
    pub fn sample_resources(&self) -> ResourceSample {
        let sample = self.inner.resources.sample();
        *self.inner.last_sample.lock() = Some(sample);
        sample
    }

    /// The webhook the alert events go to, when one is configured.
    pub(crate) fn webhook(&self) -> Option<&Arc<Webhook>> {
        self.inner.webhook.as_ref()
    }

    /// `/metrics`, `/health/live` and `/health/ready` as an axum [`Router`]
    /// (a tower `Service`) to mount in a server the program already runs,
    /// instead of (or besides) the monitor's own listener.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use stratum_monitor::{Monitor, MonitorConfig};
    ///
    /// let monitor = Monitor::new(MonitorConfig::default()).unwrap();
    /// let app = axum::Router::new()
    ///     .route("/", axum::routing::get(|| async { "my service" }))
    ///     .merge(monitor.router());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// # drop((app, listener));
    /// // axum::serve(listener, app).await?;
    /// # });
    /// ```
    ///
    /// [`Router`]: axum::Router
    pub fn router(&self) -> axum::Router {
        server::router(self.clone())
    }

    /// Evaluates alert rules now (their metrics go to this monitor).
    pub fn evaluate_alerts(&self) -> Vec<crate::alert::AlertEvent> {
        self.in_scope(|| self.inner.alerts.evaluate())
    }

    /// Binds the listener and starts serving `/metrics`, `/health/live` and
    /// `/health/ready`, plus the background upkeep, resource sampling and
    /// alert evaluation. Must run inside a tokio runtime.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use stratum_monitor::{Monitor, MonitorConfig};
    ///
    /// let config = MonitorConfig::builder().listen("127.0.0.1:0".parse().unwrap()).build().unwrap();
    /// let running = Monitor::new(config).unwrap().start().await.unwrap();
    /// assert!(running.local_addr().ip().is_loopback());
    /// running.shutdown().await;
    /// # });
    /// ```
    pub async fn start(&self) -> Result<RunningMonitor, MonitorError> {
        self.spawn()
    }

    /// [`Monitor::start`] without awaiting: binds the listener at once
    /// (blocking for the bind only) and spawns the tasks on the current
    /// tokio runtime, for code that is not async (`Stratum::build`).
    /// Must run inside a tokio runtime with I/O and timers enabled.
    pub fn spawn(&self) -> Result<RunningMonitor, MonitorError> {
        server::spawn(self.clone())
    }

    /// The background work of [`Monitor::start`] (upkeep and collectors,
    /// resource sampling, alert evaluation, webhook delivery) without the
    /// listener: for a program that serves [`Monitor::router`] itself.
    /// Must run inside a tokio runtime with timers enabled.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use stratum_monitor::{Monitor, MonitorConfig};
    ///
    /// let monitor = Monitor::new(MonitorConfig::default()).unwrap();
    /// let tasks = monitor.spawn_background(); // nothing bound
    /// let app = axum::Router::new().merge(monitor.router());
    /// # drop(app);
    /// tasks.shutdown().await;
    /// # });
    /// ```
    pub fn spawn_background(&self) -> MonitorTasks {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        server::spawn_tasks(self.clone(), Vec::new(), stop, stopped)
    }
}

/// Builds a [`Monitor`].
#[must_use]
pub struct MonitorBuilder {
    config: MonitorConfig,
    clock: Arc<dyn Clock>,
    resources: Box<dyn ResourceSource>,
}

impl fmt::Debug for MonitorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorBuilder")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl MonitorBuilder {
    /// The clock for rolling windows and alert durations.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where resource figures come from (default `/proc/self`).
    pub fn resources(mut self, source: impl ResourceSource + 'static) -> Self {
        self.resources = Box::new(source);
        self
    }

    /// Validates the configuration and builds the recorder (not installed).
    pub fn build(self) -> Result<Monitor, ConfigError> {
        let config = self.config;
        config.validate()?;
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".to_owned()),
                &config.seconds_buckets,
            )
            .map_err(|e| ConfigError::invalid("seconds_buckets", e.to_string()))?
            .idle_timeout(MetricKindMask::ALL, config.idle_timeout)
            .upkeep_timeout(config.upkeep_interval)
            .build_recorder();
        let handle = recorder.handle();
        let recorder = Arc::new(recorder);
        let latency = Arc::new(LatencyTracker::with_clock(
            config.percentiles.clone(),
            Arc::clone(&self.clock),
        )?);
        let health = Arc::new(HealthRegistry::new(config.health_check_timeout));
        let alerts = Arc::new(AlertEngine::with_clock(Arc::clone(&self.clock)));
        let slo = Arc::new(
            SloTracker::with_clock(config.alerts.burn_rate.clone(), Arc::clone(&self.clock))
                .map_err(|e| e.within("burn_rate").within("alerts"))?,
        );
        let scope =
            MetricsScope::new(Arc::clone(&recorder) as Arc<dyn metrics::Recorder + Send + Sync>);
        // The delivery counters are handles: made in this monitor's scope.
        let webhook = scope.enter(|| Webhook::new(&config.alerts.webhook))?;
        if let Some(webhook) = &webhook {
            let webhook = Arc::clone(webhook);
            alerts.on_event(move |event| webhook.enqueue(event));
        }
        health
            .register_fn(PROCESS_CHECK, CheckKind::Liveness, Health::up)
            .map_err(|e| ConfigError::invalid("health", e.to_string()))?;
        let monitor = Monitor {
            inner: Arc::new(Inner {
                config,
                recorder,
                scope,
                collectors: RwLock::new(Vec::new()),
                last_sample: Mutex::new(None),
                webhook,
                handle,
                latency,
                health,
                alerts,
                slo,
                clock: self.clock,
                resources: self.resources,
            }),
        };
        monitor.in_scope(describe_own_metrics);
        Ok(monitor)
    }
}

/// HELP lines and units for the metrics this crate writes.
fn describe_own_metrics() {
    metrics::describe_counter!(
        "stratum_monitor_alert_deliveries_total",
        Unit::Count,
        "Alerts posted to the webhook, by result (delivered | failed | dropped)."
    );
    metrics::describe_counter!(
        "stratum_monitor_alert_delivery_retries_total",
        Unit::Count,
        "Webhook posts attempted again after a failure."
    );
    metrics::describe_gauge!(
        "stratum_monitor_health_status",
        "Health check status at its last run: 2 up, 1 degraded, 0 down."
    );
    metrics::describe_gauge!(
        "stratum_monitor_alert_firing",
        "1 while the alert rule fires."
    );
    metrics::describe_counter!(
        "stratum_monitor_alert_events_total",
        Unit::Count,
        "Alert rule transitions (event = fired | resolved)."
    );
    metrics::describe_gauge!(
        "stratum_monitor_slo_burn_rate",
        "Error-budget burn rate of an objective over a window (1 spends the budget exactly over the period)."
    );
    metrics::describe_gauge!(
        "stratum_monitor_latency_baseline_seconds",
        Unit::Seconds,
        "The latency regression detector's learned baseline of the percentile."
    );
    metrics::describe_gauge!(
        "stratum_monitor_latency_level_seconds",
        Unit::Seconds,
        "The latency regression detector's last reading of the percentile."
    );
    metrics::describe_counter!(
        "stratum_monitor_latency_dropped_total",
        Unit::Count,
        "Latency samples refused by the tracker (bad name or too many operations)."
    );
}
