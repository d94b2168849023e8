//! What deadpool actually pools: the user's resource wrapped with its
//! timestamps and leak stamp ([`Pooled`]), made by an adapter that turns a
//! [`Manager`] into a deadpool manager.
//!
//! A `Pooled` without a resource is a *reservation*: it holds one of
//! deadpool's permits so the adaptive limit can sit below `max_size` without
//! ever resizing deadpool itself (whose shrink keeps permits it should drop,
//! letting a later grow overshoot the maximum).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool::managed::{self, RecycleError, RecycleResult};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::leak::{LeakRegistry, LeaseStamp};
use crate::adaptive::ControllerState;
use crate::clock::SharedClock;
use crate::config::PoolConfig;
use crate::metrics::{PoolMetrics, RetireCause};
use crate::{Manager, PoolStats};

tokio::task_local! {
    /// Set while the pool takes a permit for a reservation: `create` then makes
    /// a placeholder instead of calling the user's manager.
    pub(crate) static RESERVING: ();
}

/// State shared by the pool, its objects and its background task.
pub(crate) struct Shared {
    pub(crate) config: PoolConfig,
    pub(crate) clock: SharedClock,
    pub(crate) metrics: PoolMetrics,
    pub(crate) leaks: LeakRegistry,
    pub(crate) closing: AtomicBool,
    /// Signalled when an object comes back while the pool is closing.
    pub(crate) returned: Notify,
    /// Permits still to take back from returning leases to reach the limit.
    pub(crate) debt: AtomicUsize,
    /// Callers in `get`'s waiting path.
    pub(crate) queued: AtomicUsize,
    /// Permits held by reservations (placeholders).
    pub(crate) reserved: AtomicUsize,
    pub(crate) acquires: AtomicU64,
    pub(crate) slow_acquires: AtomicU64,
    pub(crate) slow_threshold: Duration,
    pub(crate) controller: Mutex<ControllerState>,
    pub(crate) jitter_seed: u64,
    pub(crate) next_id: AtomicU64,
    pub(crate) counts: Counts,
}

/// Plain counters mirrored next to the metrics, so `stats()` works without
/// a metrics recorder.
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) created: AtomicU64,
    pub(crate) retired: [AtomicU64; 6],
    pub(crate) leaks: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) resized_up: AtomicU64,
    pub(crate) resized_down: AtomicU64,
}

impl Shared {
    pub(crate) fn stats(&self) -> PoolStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.counts;
        PoolStats {
            created: load(&c.created),
            retired_idle_timeout: load(&c.retired[0]),
            retired_max_lifetime: load(&c.retired[1]),
            retired_health_check: load(&c.retired[2]),
            retired_shrink: load(&c.retired[3]),
            retired_closed: load(&c.retired[4]),
            retired_discarded: load(&c.retired[5]),
            leaks: load(&c.leaks),
            timeouts: load(&c.timeouts),
            resized_up: load(&c.resized_up),
            resized_down: load(&c.resized_down),
        }
    }

    fn retired(&self, cause: RetireCause) {
        self.metrics.retired(cause).increment(1);
        let index = RetireCause::ALL
            .iter()
            .position(|c| *c == cause)
            .unwrap_or_default();
        if let Some(count) = self.counts.retired.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A pooled resource and its bookkeeping (or a reservation, without one).
///
/// The bookkeeping is boxed: deadpool moves its objects by value several
/// times per checkout and keeps a few in every `get` future, so a small
/// `Pooled` keeps that future (and each move) small.
pub(crate) struct Pooled<T> {
    pub(crate) resource: Option<T>,
    meta: Box<Meta>,
}

/// What the pool knows about one object.
pub(crate) struct Meta {
    pub(crate) created_at: Instant,
    pub(crate) returned_at: Instant,
    /// The clock reading taken while preparing the last checkout (at create
    /// or recycle), and how long create or the health check took: `get`'s
    /// fast path reuses them instead of reading the clock again.
    pub(crate) prepared_at: Instant,
    pub(crate) prepare_time: Duration,
    /// This object's idle timeout and lifetime, jitter applied.
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) lifetime: Option<Duration>,
    pub(crate) stamp: Option<Arc<LeaseStamp>>,
    /// Why it is being retired, when it is.
    pub(crate) retire: Option<RetireCause>,
    pub(crate) shared: Arc<Shared>,
}

impl<T> std::ops::Deref for Pooled<T> {
    type Target = Meta;
    fn deref(&self) -> &Meta {
        &self.meta
    }
}

impl<T> std::ops::DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
}

impl<T> Pooled<T> {
    /// Whether the object is past its lifetime at `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.lifetime
            .is_some_and(|l| now.saturating_duration_since(self.created_at) >= l)
    }

    /// Whether the object has sat idle past its idle timeout at `now`.
    pub(crate) fn idle_expired(&self, now: Instant) -> bool {
        self.idle_timeout
            .is_some_and(|t| now.saturating_duration_since(self.returned_at) >= t)
    }

    /// Drops the resource now, counting it as retired for `cause`; the
    /// `Pooled` becomes a reservation.
    pub(crate) fn retire_resource(&mut self, cause: RetireCause) {
        if let Some(resource) = self.resource.take() {
            self.shared.retired(cause);
            drop(resource);
        }
    }
}

impl<T> Drop for Pooled<T> {
    fn drop(&mut self) {
        if self.resource.is_some() {
            let cause = self
                .retire
                .unwrap_or(if self.shared.closing.load(Ordering::Relaxed) {
                    RetireCause::Closed
                } else {
                    RetireCause::Shrink
                });
            self.shared.retired(cause);
        }
    }
}

/// The fraction in `[0, jitter)` by which object `id`'s timeouts shrink: a
/// splitmix64 hash of the pool's seed and the id, so it is spread evenly,
/// differs between objects, and is reproducible.
pub fn jitter_fraction(seed: u64, id: u64, jitter: f64) -> f64 {
    let mut z = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // The top 53 bits as a uniform fraction in [0, 1).
    let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
    unit * jitter
}

/// Turns a [`Manager`] into a deadpool manager of [`Pooled`] objects.
pub(crate) struct Adapter<M: Manager> {
    pub(crate) manager: M,
    pub(crate) shared: Arc<Shared>,
    /// Reservations: deadpool objects without a resource, each holding a permit.
    pub(crate) reservations: Mutex<Vec<managed::Object<Adapter<M>>>>,
}

impl<M: Manager> Adapter<M> {
    fn wrap(&self, resource: Option<M::Resource>) -> Pooled<M::Resource> {
        let shared = &self.shared;
        let now = shared.clock.now();
        let config = &shared.config;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let keep = 1.0 - jitter_fraction(shared.jitter_seed, id, config.jitter);
        let stamp = match (&resource, config.leak_detection_threshold) {
            (Some(_), Some(_)) => Some(shared.leaks.register()),
            _ => None,
        };
        Pooled {
            resource,
            meta: Box::new(Meta {
                created_at: now,
                prepared_at: now,
                prepare_time: Duration::ZERO,
                // A new object counts as just returned: the first checkout skips
                // the health check, the create having just proven it.
                returned_at: now,
                idle_timeout: config.idle_timeout.map(|d| d.mul_f64(keep)),
                lifetime: config.max_lifetime.map(|d| d.mul_f64(keep)),
                stamp,
                retire: None,
                shared: Arc::clone(shared),
            }),
        }
    }
}

impl<M: Manager> managed::Manager for Adapter<M> {
    type Type = Pooled<M::Resource>;
    type Error = M::Error;

    async fn create(&self) -> Result<Pooled<M::Resource>, M::Error> {
        if RESERVING.try_with(|_| ()).is_ok() {
            return Ok(self.wrap(None));
        }
        let started = self.shared.clock.now();
        let resource = self.manager.create().await?;
        self.shared.metrics.created.increment(1);
        self.shared.counts.created.fetch_add(1, Ordering::Relaxed);
        let mut pooled = self.wrap(Some(resource));
        pooled.prepare_time = pooled.prepared_at.saturating_duration_since(started);
        Ok(pooled)
    }

    async fn recycle(
        &self,
        pooled: &mut Pooled<M::Resource>,
        _: &managed::Metrics,
    ) -> RecycleResult<M::Error> {
        if RESERVING.try_with(|_| ()).is_ok() {
            return Ok(());
        }
        let shared = &self.shared;
        let now = shared.clock.now();
        pooled.prepared_at = now;
        pooled.prepare_time = Duration::ZERO;
        if pooled.expired(now) {
            pooled.retire = Some(RetireCause::MaxLifetime);
            return Err(RecycleError::message("past its maximum lifetime"));
        }
        shared.metrics.recycled.increment(1);
        if now.saturating_duration_since(pooled.returned_at) < shared.config.validation_skip_window
        {
            return Ok(());
        }
        let Pooled { resource, meta } = pooled;
        let Some(resource) = resource.as_mut() else {
            return Ok(());
        };
        // Marked before the check so a check cut short by the recycle
        // timeout is still counted as a failed health check.
        meta.retire = Some(RetireCause::HealthCheck);
        // Boxed: a check runs only outside the skip window, and its timer
        // would otherwise sit inside every `get` future.
        let check = Box::pin(tokio::time::timeout(
            shared.config.recycle_timeout,
            self.manager.check(resource),
        ));
        match check.await {
            Ok(Ok(())) => {
                meta.retire = None;
                meta.prepared_at = shared.clock.now();
                meta.prepare_time = meta.prepared_at.saturating_duration_since(now);
                Ok(())
            }
            Ok(Err(err)) => {
                tracing::warn!(pool = %shared.config.name, error = %err, "pooled object failed its health check; retiring it");
                Err(RecycleError::Backend(err))
            }
            Err(_) => {
                tracing::warn!(pool = %shared.config.name, "pooled object's health check timed out; retiring it");
                Err(RecycleError::message("health check timed out"))
            }
        }
    }
}
