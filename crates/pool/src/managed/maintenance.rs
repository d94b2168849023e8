//! The maintenance pass: keep `min_size` warm, reap idle and expired
//! objects, report leaks, run the adaptive controller, update gauges.

use std::sync::atomic::Ordering;
use std::time::Duration;

use deadpool::managed::Timeouts;

use super::ManagedPool;
use crate::Manager;
use crate::adaptive::{self, Decision, Observation, Sizing};
use crate::metrics::RetireCause;

impl<M: Manager> ManagedPool<M> {
    /// One maintenance pass, at the clock's current time. The background task
    /// runs it every `maintenance_interval`; tests call it after moving a
    /// [`crate::ManualClock`].
    pub async fn run_maintenance(&self) {
        if self.is_closed() {
            return;
        }
        // Reaping sees only deadpool's idle objects: parked ones that went
        // stale go back there first (fresh ones were used moments ago).
        self.send_back_stale(self.inner.shared.now_nanos());
        self.reap();
        self.report_leaks();
        self.adapt();
        self.collect_debt();
        self.keep_warm().await;
        self.update_gauges();
    }

    /// Retires expired objects (always: replacements are created) and idle
    /// ones (never leaving fewer than `min_size`).
    fn reap(&self) {
        let shared = &self.inner.shared;
        let config = &shared.config;
        if config.idle_timeout.is_none() && config.max_lifetime.is_none() {
            return;
        }
        let now = shared.now_nanos();
        let mut remaining = self.status().size;
        let min = config.min_size;
        let removed = self.inner.pool.retain(|pooled, _| {
            if pooled.resource.is_none() {
                return true;
            }
            let reap = pooled.expired(now) || (remaining > min && pooled.idle_expired(now));
            if reap {
                remaining = remaining.saturating_sub(1);
            }
            !reap
        });
        for pooled in removed.removed {
            pooled.set_retire(Some(if pooled.expired(now) {
                RetireCause::MaxLifetime
            } else {
                RetireCause::IdleTimeout
            }));
            drop(pooled);
        }
    }

    fn report_leaks(&self) {
        let shared = &self.inner.shared;
        let Some(threshold) = shared.config.leak_detection_threshold else {
            return;
        };
        for leak in shared.leaks.scan(shared.now_nanos(), threshold) {
            tracing::warn!(
                pool = %shared.config.name,
                held_ms = leak.held.as_millis() as u64,
                location = %leak.location,
                "lease held longer than the leak-detection threshold; possible leak"
            );
            shared.metrics.leaks.increment(1);
            shared.counts.leaks.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn adapt(&self) {
        let shared = &self.inner.shared;
        let config = &shared.config;
        if !config.adaptive.enabled {
            return;
        }
        let status = self.status();
        let obs = Observation {
            limit: status.limit,
            size: status.size,
            idle: status.idle,
            waiting: status.waiting,
            acquires: shared.acquires.swap(0, Ordering::Relaxed),
            slow_acquires: shared.slow_acquires.swap(0, Ordering::Relaxed),
        };
        let sizing = Sizing {
            min: config.min_size,
            max: config.max_size,
            target_acquire_latency: config.adaptive.target_acquire_latency,
            shrink_after: config.adaptive.shrink_after,
            cooldown: config.adaptive.cooldown,
        };
        let now = shared.clock.instant();
        let decision = adaptive::decide(&sizing, &mut shared.controller.lock(), &obs, now);
        match decision {
            Decision::Hold => {}
            Decision::Grow { to } | Decision::Shrink { to } => {
                self.set_limit(to, "adaptive");
            }
        }
    }

    /// Creates objects until `min_size` are alive (bounded by the limit),
    /// taking only free permits so waiting callers keep their turn.
    async fn keep_warm(&self) {
        let shared = &self.inner.shared;
        let config = &shared.config;
        let timeouts = Timeouts {
            wait: Some(Duration::ZERO),
            create: Some(config.create_timeout),
            recycle: Some(config.recycle_timeout),
        };
        let mut held = Vec::new();
        while self.status().size < config.min_size && held.len() < config.max_size {
            match self.inner.pool.timeout_get(&timeouts).await {
                Ok(object) => held.push(object),
                Err(err) => {
                    if !matches!(err, deadpool::managed::PoolError::Timeout(_)) {
                        tracing::warn!(pool = %config.name, "could not create an object to keep the minimum warm");
                    }
                    break;
                }
            }
        }
        drop(held);
    }

    fn update_gauges(&self) {
        let status = self.status();
        let metrics = &self.inner.shared.metrics;
        metrics.size.set(status.size as f64);
        metrics.idle.set(status.idle as f64);
        metrics.in_use.set(status.in_use as f64);
        metrics.waiters.set(status.waiting as f64);
        metrics.limit.set(status.limit as f64);
    }
}
