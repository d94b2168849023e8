//! Readiness: the facade's contributors to stratum-monitor's health registry.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "breaker")]
use stratum_breaker::State;
use stratum_monitor::{CheckKind, Health, HealthRegistry, MonitorError};

use crate::Stratum;

/// The readiness check of the breaker.
pub const BREAKER_CHECK: &str = "breaker.store";
/// The readiness check that pings the database.
pub const DATABASE_CHECK: &str = "database";
/// The readiness check of the admission pool.
pub const POOL_CHECK: &str = "pool.store";
/// The liveness check of the process itself, registered by every
/// [`Monitor`](stratum_monitor::Monitor) (not by `register_health`).
pub use stratum_monitor::PROCESS_CHECK;

/// A ping slower than this makes the database check `DEGRADED`.
const SLOW_PING: Duration = Duration::from_millis(500);

impl Stratum {
    /// Registers the stack with `registry`:
    ///
    /// - `breaker.store` (readiness, when the breaker is enabled): `UP` while
    ///   closed, `DEGRADED` while half-open (probing), `DOWN` while open;
    /// - `pool.store` (readiness, when the pool is enabled): `DEGRADED` while
    ///   every slot is in use and callers wait for one (saturated), `UP`
    ///   otherwise; it reads the pool's counters, never blocks;
    /// - `database` (readiness): pings the store directly (not through the
    ///   breaker, so the answer is the database's own), `DEGRADED` over
    ///   500 ms, `DOWN` on an error (the reason names the error's kind only:
    ///   reasons are served over HTTP);
    ///
    /// Liveness never checks a dependency, so an outage does not restart the
    /// process: the one liveness check, `process`, is the monitor's own.
    /// The stack's own monitor (`Stratum::monitor`) has these checks
    /// registered at build; this is for another registry.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// use std::time::Duration;
    /// use stratum::monitor::{CheckKind, HealthRegistry, Status};
    /// use stratum::{Stratum, StratumConfig};
    ///
    /// let mut config = StratumConfig::default();
    /// config.monitor.enabled = false; // registered by hand here
    /// let stratum = Stratum::builder(config).build()?;
    /// let health = HealthRegistry::new(Duration::from_secs(1));
    /// stratum.register_health(&health)?;
    /// assert_eq!(health.report(CheckKind::Readiness).await.status, Status::Up);
    /// # #[cfg(feature = "breaker")] { // (with the breaker built in)
    /// stratum.breaker().unwrap().force_open();
    /// assert_eq!(health.report(CheckKind::Readiness).await.status, Status::Down);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn register_health(&self, registry: &HealthRegistry) -> Result<(), MonitorError> {
        #[cfg(feature = "breaker")]
        if let Some(breaker) = self.breaker().cloned() {
            registry.register_fn(BREAKER_CHECK, CheckKind::Readiness, move || {
                match breaker.state() {
                    State::Closed | State::Disabled | State::MetricsOnly => Health::up(),
                    State::HalfOpen => Health::degraded("circuit breaker half-open: probing"),
                    State::Open | State::ForcedOpen => Health::down("circuit breaker open"),
                }
            })?;
        }
        // The checks hold the parts they read, never the handle: the
        // stack's own monitor lives inside it.
        #[cfg(feature = "pool")]
        if let Some(admission) = self.layers.admission.clone() {
            registry.register_fn(POOL_CHECK, CheckKind::Readiness, move || {
                let s = admission.status();
                if s.waiting > 0 && s.in_use >= s.limit {
                    Health::degraded(format!(
                        "pool saturated: {} in use of {}, {} waiting",
                        s.in_use, s.limit, s.waiting
                    ))
                } else {
                    Health::up()
                }
            })?;
        }
        let store = Arc::clone(self.store());
        registry.register_async(DATABASE_CHECK, CheckKind::Readiness, move || {
            let store = Arc::clone(&store);
            async move {
                let started = Instant::now();
                match store.ping().await {
                    Ok(()) if started.elapsed() > SLOW_PING => {
                        Health::degraded(format!("ping took {} ms", started.elapsed().as_millis()))
                    }
                    Ok(()) => Health::up(),
                    Err(e) => Health::down(format!("ping failed: {}", e.kind())),
                }
            }
        })?;
        Ok(())
    }
}
