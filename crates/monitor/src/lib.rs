//! Stratum's monitor: what turns every layer's `metrics` calls into something
//! an operator can scrape, read, and be woken by.
//!
//! The other layers only call the [`metrics`] facade (`stratum_<layer>_*`
//! names, bounded labels); none of them depends on this crate. This crate:
//!
//! - **exports** them in the Prometheus text format: a
//!   `metrics-exporter-prometheus` recorder with explicit buckets for every
//!   `*_seconds` histogram, upkeep always running (buffered histogram samples
//!   are drained, so memory stays bounded), and an idle timeout so stale
//!   series disappear;
//! - keeps **latency percentiles in process** ([`LatencyTracker`],
//!   [`RollingHistogram`]): p50/p95/p99/p999 per operation over a rolling
//!   window of HDR histograms, readable from code;
//! - answers **health** ([`HealthRegistry`]): named liveness and readiness
//!   checks, the worst contributor wins, JSON with each contributor, HTTP 200
//!   or 503;
//! - **samples process resources** ([`ProcSelf`]): resident memory, CPU time
//!   and open descriptors as gauges;
//! - evaluates **alert rules** ([`AlertEngine`], [`AlertRule`]): a threshold
//!   held for a duration, with hysteresis, through a callback and `tracing`;
//! - watches **trends**: error-budget burn rates per operation over a long
//!   and a short window ([`SloTracker`], [`BurnRateConfig`]), and latency
//!   regressions against a learned baseline ([`RegressionDetector`]), both
//!   as alert rules.
//!
//! [`Monitor`] ties them together and [`Monitor::start`] serves `/metrics`,
//! `/health/live` and `/health/ready` on one listener, on 127.0.0.1 unless
//! [`MonitorConfig::allow_non_loopback`] says otherwise. Time goes through a
//! [`Clock`] so windows and alert durations are testable without sleeping.
//!
//! ```
//! use std::time::Duration;
//! use stratum_monitor::{AlertRule, CheckKind, Figure, Health, Monitor, MonitorConfig};
//!
//! let monitor = Monitor::new(MonitorConfig::default()).unwrap();
//! // In `main`: monitor.install_global()?; then `monitor.start().await?`.
//!
//! // Readiness contributor (the facade registers the breaker, pool and database).
//! monitor.health().register_fn("breaker.mongodb", CheckKind::Readiness, Health::up).unwrap();
//!
//! // Percentiles from code.
//! for ms in [3, 4, 5, 40] {
//!     monitor.latency().record("repository.find", Duration::from_millis(ms));
//! }
//! let p = monitor.latency().percentiles("repository.find").unwrap();
//! assert!(p.p99 >= Duration::from_millis(39));
//!
//! // Page someone when p99 stays above 250 ms for a minute.
//! let p99 = Figure::quantile(monitor.latency().clone(), "repository.find", 0.99);
//! monitor.alerts().add(
//!     AlertRule::above("find_p99_high", p99, 0.250)
//!         .resolve_at(0.200)
//!         .for_duration(Duration::from_secs(60))
//!         .build()
//!         .unwrap(),
//! ).unwrap();
//! assert!(monitor.evaluate_alerts().is_empty());
//! ```
#![deny(missing_docs)]

mod alert;
mod clock;
mod config;
mod error;
mod health;
mod monitor;
mod percentiles;
mod regression;
mod resources;
mod server;
mod slo;
mod webhook;

pub use alert::{
    AlertEngine, AlertEvent, AlertEventKind, AlertRule, AlertRuleBuilder, AlertState, Direction,
    Figure,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    AlertsConfig, BurnRateConfig, BurnWindow, DEFAULT_LISTEN, DEFAULT_SECONDS_BUCKETS,
    LatencyRuleConfig, MonitorConfig, MonitorConfigBuilder, PercentileConfig, RatioRuleConfig,
    RegressionConfig, SloObjective, StateRuleConfig, WebhookConfig,
};
pub use error::{ConfigError, MonitorError};
pub use health::{CheckKind, Health, HealthCheck, HealthRegistry, HealthReport, Status};
pub use monitor::{Monitor, MonitorBuilder, PROCESS_CHECK};
pub use percentiles::{LatencyTracker, Percentiles, RollingHistogram};
pub use regression::{RegressionDetector, RegressionReading};
pub use resources::{ProcSelf, ResourceSample, ResourceSource};
pub use server::{MonitorTasks, RunningMonitor};
pub use slo::{CallWindow, Counts, Sli, SloTracker};
pub use stratum_core::metrics::MetricsScope;
