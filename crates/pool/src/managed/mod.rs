//! [`ManagedPool`]: the generic pool on deadpool, for any [`Manager`].
//!
//! deadpool supplies the permits, the object queue, create and recycle; this
//! module adds what it lacks: acquire, create and recycle timeouts by
//! default, a FIFO queue of waiting callers served by hand-off
//! (`handoff.rs`), a stack of just-returned objects a `get` takes without
//! going through deadpool (`ready.rs`), a health check skipped inside the
//! validation window, idle
//! and lifetime reaping with jitter that never goes below `min_size`, leak
//! detection, an adaptive limit enforced with reservations, metrics, close
//! and drain.

mod deadline;
use self::deadline::Queued;
mod handoff;
use self::handoff::{Answer, Signal, Waiter};
mod leak;
mod lease;
mod maintenance;
pub(crate) mod object;
mod ready;

use std::future::{Future, poll_fn};
use std::panic::Location;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use deadpool::managed::{Object, Timeouts};
use parking_lot::Mutex;
use tokio::sync::Notify;

pub use lease::Lease;

/// deadpool's error for this pool's adapter.
type DpError<M> = deadpool::managed::PoolError<<M as Manager>::Error>;
pub use object::jitter_fraction;

use self::leak::LeakRegistry;
use self::object::{Adapter, Counts, Shared, reserving};
use crate::adaptive::ControllerState;
use crate::clock::{Clock, CoarseClock, SharedClock};
use crate::config::PoolConfig;
use crate::error::{BuildError, PoolError, TimeoutKind};
use crate::metrics::{PoolMetrics, RetireCause};
use crate::{Manager, Pool, PoolStats, Status};

/// A bounded, adaptive, health-checked pool of `M::Resource` on deadpool.
///
/// Cheap to clone (clones share the pool). See the crate docs for a guide.
///
/// ```
/// use stratum_pool::{ManagedPool, Manager, Pool, PoolError};
/// use std::time::Duration;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("never")]
/// struct Never;
///
/// struct Conns;
/// impl Manager for Conns {
///     type Resource = String;
///     type Error = Never;
///     async fn create(&self) -> Result<String, Never> { Ok("conn".into()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = ManagedPool::builder(Conns)
///     .name("example")
///     .min_size(0)
///     .max_size(1)
///     .acquire_timeout(Duration::from_millis(20))
///     .build()
///     .unwrap();
/// let held = pool.get().await.unwrap();
/// // The only object is out: the next get waits 20 ms, then times out.
/// assert!(matches!(pool.get().await, Err(PoolError::Timeout(_))));
/// drop(held);
/// assert_eq!(pool.get().await.unwrap().as_str(), "conn");
/// # }
/// ```
pub struct ManagedPool<M: Manager> {
    inner: Arc<Inner<M>>,
}

impl<M: Manager> Clone for ManagedPool<M> {
    fn clone(&self) -> Self {
        ManagedPool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Manager> std::fmt::Debug for ManagedPool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedPool")
            .field("name", &self.inner.shared.config.name)
            .field("status", &self.status())
            .finish()
    }
}

struct Inner<M: Manager> {
    pool: deadpool::managed::Pool<Adapter<M>>,
    shared: Arc<Shared>,
    /// The current limit; the lock also serialises resizes.
    limit: Mutex<usize>,
    /// deadpool timeouts for the fast path (take a free permit or fail)...
    now_only: Timeouts,
    /// ...and for a caller that has to wait, with a timer (no sweeper).
    waiting: Timeouts,
}

impl<M: Manager> Drop for Inner<M> {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.deadlines.stop();
    }
}

/// Builds a [`ManagedPool`]; every setter mirrors a [`PoolConfig`] field.
///
/// ```
/// use stratum_pool::{ManagedPool, Manager, ManualClock};
/// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
/// # struct M;
/// # impl Manager for M { type Resource = (); type Error = Never;
/// #     async fn create(&self) -> Result<(), Never> { Ok(()) } }
/// let err = ManagedPool::builder(M).min_size(5).max_size(2).build().unwrap_err();
/// assert!(err.to_string().contains("min_size"));
///
/// // Without a runtime: no background task, maintenance is driven by hand.
/// let pool = ManagedPool::builder(M)
///     .clock(ManualClock::new())
///     .background(false)
///     .build()
///     .unwrap();
/// assert_eq!(pool.status().limit, 10);
/// ```
pub struct Builder<M: Manager> {
    manager: M,
    config: PoolConfig,
    clock: SharedClock,
    /// Set when `clock` is the [`CoarseClock`], whose readings the hot path
    /// takes as plain integers (see [`Shared::now_nanos`]).
    coarse: Option<CoarseClock>,
    background: bool,
}

macro_rules! setter {
    ($(#[$doc:meta] $name:ident: $ty:ty),* $(,)?) => {$(
        #[$doc]
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    )*};
}

impl<M: Manager> Builder<M> {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: PoolConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the pool's name (the `pool` metric label).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    setter! {
        /// See [`PoolConfig::min_size`].
        min_size: usize,
        /// See [`PoolConfig::max_size`].
        max_size: usize,
        /// See [`PoolConfig::acquire_timeout`].
        acquire_timeout: Duration,
        /// See [`PoolConfig::create_timeout`].
        create_timeout: Duration,
        /// See [`PoolConfig::recycle_timeout`].
        recycle_timeout: Duration,
        /// See [`PoolConfig::idle_timeout`].
        idle_timeout: Option<Duration>,
        /// See [`PoolConfig::max_lifetime`].
        max_lifetime: Option<Duration>,
        /// See [`PoolConfig::jitter`].
        jitter: f64,
        /// See [`PoolConfig::validation_skip_window`].
        validation_skip_window: Duration,
        /// See [`PoolConfig::leak_detection_threshold`].
        leak_detection_threshold: Option<Duration>,
        /// See [`PoolConfig::maintenance_interval`].
        maintenance_interval: Duration,
    }

    /// Turns adaptive sizing on or off (see [`crate::AdaptiveConfig`]).
    pub fn adaptive(mut self, enabled: bool) -> Self {
        self.config.adaptive.enabled = enabled;
        self
    }

    /// The clock for every timing decision. Default: [`CoarseClock`]
    /// (millisecond resolution, no clock read on the hot path).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.coarse = (&clock as &dyn std::any::Any)
            .downcast_ref::<CoarseClock>()
            .copied();
        self.clock = Arc::new(clock);
        self
    }

    /// Whether a background task runs [`ManagedPool::run_maintenance`] every
    /// `maintenance_interval` (needs a tokio runtime). Default: true.
    pub fn background(mut self, enabled: bool) -> Self {
        self.background = enabled;
        self
    }

    /// Validates the configuration and builds the pool.
    pub fn build(self) -> Result<ManagedPool<M>, BuildError> {
        self.config.validate()?;
        let runtime = if self.background {
            Some(tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?)
        } else {
            None
        };
        let config = self.config;
        let initial = config.initial_limit();
        let shared = Arc::new(Shared {
            metrics: PoolMetrics::new(&config.name),
            leaks: LeakRegistry::default(),
            closing: AtomicBool::new(false),
            returned: Notify::new(),
            debt: AtomicUsize::new(0),
            queued: CachePadded::default(),
            deadlines: CachePadded::default(),
            handoff: CachePadded::default(),
            reserved: AtomicUsize::new(0),
            acquires: AtomicU64::new(0),
            slow_acquires: AtomicU64::new(0),
            slow_threshold: object::nanos(config.adaptive.target_acquire_latency),
            skip_window: object::nanos(config.validation_skip_window),
            keep_ready: runtime.is_some() && !config.validation_skip_window.is_zero(),
            coarse: self.coarse.is_some(),
            controller: Mutex::new(ControllerState::default()),
            jitter_seed: seed(),
            next_id: AtomicU64::new(0),
            counts: Counts::default(),
            clock: self.clock,
            config,
        });
        let config = &shared.config;
        let adapter = Adapter {
            manager: self.manager,
            shared: Arc::clone(&shared),
            reservations: Mutex::new(Vec::new()),
            ready: ready::ReadyStack::default(),
        };
        // deadpool's own max stays at `max_size` for the pool's whole life:
        // the adaptive limit is enforced with reservations instead.
        let pool = deadpool::managed::Pool::builder(adapter)
            .max_size(config.max_size)
            .queue_mode(deadpool::managed::QueueMode::Lifo)
            .runtime(deadpool::Runtime::Tokio1)
            // The recycle timeout is applied around the health check itself,
            // so a checkout that skips the check arms no timer.
            .timeouts(Timeouts {
                wait: Some(config.acquire_timeout),
                create: Some(config.create_timeout),
                recycle: None,
            })
            .build()
            .map_err(|_| BuildError::NoRuntime)?;
        let interval = config.maintenance_interval;
        let managed = ManagedPool {
            inner: Arc::new(Inner {
                pool,
                limit: Mutex::new(config.max_size),
                now_only: Timeouts {
                    wait: Some(Duration::ZERO),
                    create: Some(config.create_timeout),
                    recycle: None,
                },
                waiting: Timeouts {
                    wait: Some(config.acquire_timeout),
                    create: Some(config.create_timeout),
                    recycle: None,
                },
                shared,
            }),
        };
        managed.set_limit(initial, "initial");
        managed.inner.shared.metrics.limit.set(initial as f64);
        if let Some(runtime) = runtime {
            let shared = &managed.inner.shared;
            shared.deadlines.start();
            deadline::spawn(
                &runtime,
                Arc::downgrade(shared),
                shared.config.acquire_timeout,
            );
            let weak = Arc::downgrade(&managed.inner);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { break };
                    let pool = ManagedPool { inner };
                    if pool.is_closed() {
                        break;
                    }
                    pool.run_maintenance().await;
                }
            });
        }
        Ok(managed)
    }
}

/// A per-pool seed for jitter, so two pools do not expire in lockstep.
fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Polls `future` once; `None` if it is not ready. For deadpool calls that
/// cannot wait (zero wait timeout, no create or recycle timeout, reservation
/// mode), so resizing needs no runtime.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

impl<M: Manager> ManagedPool<M> {
    /// Starts building a pool around `manager`, with [`PoolConfig::default`].
    pub fn builder(manager: M) -> Builder<M> {
        let coarse = CoarseClock::new();
        Builder {
            manager,
            config: PoolConfig::default(),
            clock: Arc::new(coarse),
            coarse: Some(coarse),
            background: true,
        }
    }

    /// The configuration the pool was built with.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.shared.config
    }

    /// The user's manager.
    pub fn manager(&self) -> &M {
        &self.inner.pool.manager().manager
    }

    /// Running totals of created, retired (by cause), leaked, timed-out and
    /// resized events.
    pub fn stats(&self) -> PoolStats {
        self.inner.shared.stats()
    }

    /// Gets a lease: waits at most `acquire_timeout` for a slot (FIFO among
    /// waiters), then reuses an idle object (health-checked unless it came
    /// back within `validation_skip_window`) or creates one.
    #[track_caller]
    pub fn get(&self) -> impl Future<Output = Result<Lease<M>, PoolError<M::Error>>> + Send + '_ {
        let location = Location::caller();
        async move {
            let shared = &self.inner.shared;
            let got = if shared.deadlines.running() {
                self.get_queued().await
            } else {
                // Boxed: only pools without a background task take this
                // path; inline, it would double every `get` future's size.
                Box::pin(self.get_with_timer()).await
            };
            match got {
                Ok((object, waited)) => {
                    shared.metrics.acquire.record(waited as f64 * 1e-9);
                    // Only the adaptive controller reads these: without it,
                    // spare every caller two writes to shared cache lines.
                    if shared.config.adaptive.enabled {
                        shared.acquires.fetch_add(1, Ordering::Relaxed);
                        if waited > shared.slow_threshold {
                            shared.slow_acquires.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if object.tracked() {
                        object.checkout(location);
                    }
                    Ok(Lease::new(object))
                }
                Err(err) => {
                    let err = PoolError::from_deadpool(err);
                    if let PoolError::Timeout(kind) = &err {
                        let step = match kind {
                            TimeoutKind::Wait => 0,
                            TimeoutKind::Create => 1,
                            TimeoutKind::Recycle => 2,
                        };
                        shared.metrics.timeouts[step].increment(1);
                        shared.counts.timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err)
                }
            }
        }
    }

    /// `get` with the sweeper: a parked object from the ready stack, or a
    /// free permit at once (deadpool's zero-wait checkout, which creates or
    /// health-checks as needed), else a place in
    /// the hand-off queue until a returning lease hands this caller its
    /// object, the sweeper says the wait is over, or a retry finds a permit.
    /// Returns the object and how long the caller waited, in nanoseconds.
    async fn get_queued(&self) -> Result<(Object<Adapter<M>>, u64), DpError<M>> {
        let shared = &self.inner.shared;
        let free_at_once = |object: Object<Adapter<M>>| {
            // The acquire time is what create or the health check took.
            let (_, took) = object.prepared();
            (object, took)
        };
        if shared.handoff.len() == 0 {
            if let Some(object) = self.take_ready(false) {
                return Ok((object, 0));
            }
            match self.inner.pool.timeout_get(&self.inner.now_only).await {
                Err(deadpool::managed::PoolError::Timeout(
                    deadpool::managed::TimeoutType::Wait,
                )) => {}
                other => return other.map(free_at_once),
            }
        }
        let started = shared.now_nanos();
        let (_queued, before) = Queued::enter(&shared.queued);
        if before == 0 {
            shared.deadlines.wake();
        }
        let waiter = Arc::new(Waiter::<M>::new(shared.deadlines.epoch()));
        let mut place = Place {
            queue: &shared.handoff,
            waiter: &waiter,
            queued: false,
        };
        let mut first = false;
        loop {
            place.join(first);
            // See `Shared::permit_freed`.
            std::sync::atomic::fence(Ordering::SeqCst);
            // A lease may have parked its object, or gone back to deadpool,
            // just before this caller queued: look once more. (The stack is
            // looked at under its lock, which makes the first of these
            // race-free: see `ready.rs`.)
            if let Some(object) = self.take_ready(true) {
                place.leave();
                return Ok((object, shared.now_nanos().saturating_sub(started)));
            }
            match self.inner.pool.timeout_get(&self.inner.now_only).await {
                Err(deadpool::managed::PoolError::Timeout(
                    deadpool::managed::TimeoutType::Wait,
                )) => {}
                other => {
                    place.leave();
                    return other.map(|object| {
                        let (ready, _) = object.prepared();
                        (object, ready.saturating_sub(started))
                    });
                }
            }
            match poll_fn(|cx| waiter.poll_answer(cx)).await {
                Answer::Object(object) => {
                    place.queued = false;
                    let now = shared.now_nanos();
                    match self.reuse(object, now) {
                        Some(object) => return Ok((object, now.saturating_sub(started))),
                        // Past its lifetime and retired: try again, still
                        // first (its permit went back to deadpool).
                        None => {
                            first = true;
                            continue;
                        }
                    }
                }
                Answer::Signal(Signal::Retry) => {
                    place.queued = false;
                    first = true;
                }
                Answer::Signal(Signal::TimedOut) => {
                    place.queued = false;
                    return Err(deadpool::managed::PoolError::Timeout(
                        deadpool::managed::TimeoutType::Wait,
                    ));
                }
                Answer::Signal(Signal::Closed) => {
                    place.queued = false;
                    return Err(deadpool::managed::PoolError::Closed);
                }
            }
        }
    }

    /// `get` without a sweeper (no background task): a free permit is taken
    /// without arming a timer (tokio's semaphore hands released permits
    /// straight to queued waiters, so a free permit means nobody is queued
    /// and FIFO order holds); only a caller that must wait arms deadpool's
    /// wait timer and is timed end to end.
    async fn get_with_timer(&self) -> Result<(Object<Adapter<M>>, u64), DpError<M>> {
        let shared = &self.inner.shared;
        // While others queue, the fast attempt would fail anyway: go
        // straight to the queue.
        let fast = if shared.queued.load(Ordering::Relaxed) == 0 {
            Some(self.inner.pool.timeout_get(&self.inner.now_only).await)
        } else {
            None
        };
        match fast {
            None
            | Some(Err(deadpool::managed::PoolError::Timeout(
                deadpool::managed::TimeoutType::Wait,
            ))) => {
                let (_queued, _) = Queued::enter(&shared.queued);
                let start = shared.now_nanos();
                self.inner
                    .pool
                    .timeout_get(&self.inner.waiting)
                    .await
                    .map(|object| {
                        let (ready, _) = object.prepared();
                        (object, ready.saturating_sub(start))
                    })
            }
            Some(other) => other.map(|object| {
                let (_, took) = object.prepared();
                (object, took)
            }),
        }
    }

    /// A parked object from the ready stack (`ready.rs`), if one is fresh:
    /// expired ones are retired on the way, and a stale one goes back to
    /// deadpool, with every other stale one, for a checkout there to
    /// health-check it. A queued caller passes `queued`: it must look under
    /// the stack's lock, not at the lock-free length, which a lease parking
    /// right now (having seen no queue) may not have updated yet.
    fn take_ready(&self, queued: bool) -> Option<Object<Adapter<M>>> {
        let ready = &self.inner.pool.manager().ready;
        let shared = &self.inner.shared;
        if !shared.keep_ready || (!queued && ready.len() == 0) {
            return None;
        }
        let mut freed = false;
        let taken = loop {
            let Some(object) = ready.pop() else {
                break None;
            };
            let now = shared.now_nanos();
            if object.idle_for(now) >= shared.skip_window {
                drop(object);
                self.send_back_stale(now);
                freed = true;
                break None;
            }
            match self.reuse(object, now) {
                Some(object) => break Some(object),
                None => freed = true,
            }
        };
        if freed {
            shared.permit_freed();
        }
        taken
    }

    /// Takes `object`, which skipped deadpool's checkout (handed over, or
    /// popped from the ready stack) and came back inside the skip window,
    /// as deadpool's recycle hook would at `now`: retired if past its
    /// lifetime (its permit goes back to deadpool; `None`), else marked
    /// prepared and counted as recycled.
    #[inline]
    fn reuse(&self, mut object: Object<Adapter<M>>, now: u64) -> Option<Object<Adapter<M>>> {
        if object.expired(now) {
            object.retire_resource(RetireCause::MaxLifetime);
            drop(Object::take(object));
            return None;
        }
        object.mark_prepared(now, 0);
        self.inner.shared.metrics.recycled.increment(1);
        Some(object)
    }

    /// Sends the parked objects back inside the skip window no longer at
    /// `now` to deadpool, whose checkout health-checks them.
    fn send_back_stale(&self, now: u64) {
        let skip_window = self.inner.shared.skip_window;
        self.send_back_ready(|o| o.idle_for(now) >= skip_window);
    }

    /// Sends the parked objects `which` picks back to deadpool (see
    /// `ready.rs`), waking a queued caller for their permits.
    fn send_back_ready(&self, which: impl FnMut(&Object<Adapter<M>>) -> bool) {
        let sent = self.inner.pool.manager().ready.take_if(which);
        if sent.is_empty() {
            return;
        }
        drop(sent);
        self.inner.shared.permit_freed();
    }

    /// The pool's accounting right now.
    pub fn status(&self) -> Status {
        let dp = self.inner.pool.status();
        let shared = &self.inner.shared;
        let reserved = shared.reserved.load(Ordering::Acquire).min(dp.size);
        let size = dp.size - reserved;
        // Parked objects are idle, though deadpool counts them as out.
        let idle = (dp.available + self.inner.pool.manager().ready.len()).min(size);
        Status {
            size,
            idle,
            in_use: size - idle,
            // Callers wait in deadpool only without the sweeper.
            waiting: dp.waiting + shared.handoff.len(),
            limit: if self.is_closed() {
                0
            } else {
                *self.inner.limit.lock()
            },
            min: shared.config.min_size,
            max: shared.config.max_size,
            connections: None,
        }
    }

    /// Sets the limit, clamped to `[max(min_size, 1), max_size]`; returns the
    /// limit applied. Logged and counted when it changes.
    pub fn resize(&self, limit: usize) -> usize {
        self.set_limit(limit, "manual")
    }

    fn set_limit(&self, wanted: usize, why: &'static str) -> usize {
        let shared = &self.inner.shared;
        let config = &shared.config;
        let to = wanted.clamp(config.min_size.max(1).min(config.max_size), config.max_size);
        let mut limit = self.inner.limit.lock();
        let from = *limit;
        if to == from || self.is_closed() {
            return from;
        }
        *limit = to;
        if to < from {
            shared.debt.fetch_add(from - to, Ordering::AcqRel);
            self.collect_debt();
        } else {
            let mut grow = to - from;
            // Cancel debt not yet collected before giving permits back.
            let cancelled = shared
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    Some(d - d.min(grow))
                })
                .map_or(0, |d| d.min(grow));
            grow -= cancelled;
            let released: Vec<Object<Adapter<M>>> = {
                let mut reservations = self.inner.pool.manager().reservations.lock();
                let keep = reservations.len().saturating_sub(grow);
                reservations.split_off(keep)
            };
            shared.reserved.fetch_sub(released.len(), Ordering::AcqRel);
            for reservation in released {
                // Detaching a reservation frees its deadpool permit: a
                // queued caller can take it.
                drop(Object::take(reservation));
                shared.permit_freed();
            }
        }
        shared.metrics.limit.set(to as f64);
        if why != "initial" {
            if to > from {
                shared.metrics.resized_up.increment(1);
                shared.counts.resized_up.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.metrics.resized_down.increment(1);
                shared.counts.resized_down.fetch_add(1, Ordering::Relaxed);
            }
            tracing::info!(pool = %config.name, from, to, why, "pool limit changed");
        }
        to
    }

    /// Turns outstanding debt into reservations using free permits, without
    /// waiting: each takes a free permit (and retires the idle object it
    /// came with, if any).
    fn collect_debt(&self) {
        let shared = &self.inner.shared;
        if shared.debt.load(Ordering::Acquire) == 0 {
            return;
        }
        // Parked objects hold permits: back to deadpool, to be taken here.
        self.send_back_ready(|_| true);
        let now_only = Timeouts {
            wait: Some(Duration::ZERO),
            create: None,
            recycle: None,
        };
        while shared
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok()
        {
            let got = reserving(|| poll_once(self.inner.pool.timeout_get(&now_only)));
            match got {
                Some(Ok(mut object)) => {
                    object.retire_resource(RetireCause::Shrink);
                    shared.reserved.fetch_add(1, Ordering::AcqRel);
                    self.inner.pool.manager().reservations.lock().push(object);
                }
                _ => {
                    // No free permit now: a returning lease will pay it.
                    shared.debt.fetch_add(1, Ordering::AcqRel);
                    break;
                }
            }
        }
    }

    /// Whether the pool is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.pool.is_closed()
    }

    /// Closes the pool: waiting and future `get`s fail with
    /// [`PoolError::Closed`], idle objects are retired now and leased ones
    /// when they come back.
    pub fn close(&self) {
        let shared = &self.inner.shared;
        shared.closing.store(true, Ordering::Relaxed);
        self.inner.pool.close();
        shared.debt.store(0, Ordering::Relaxed);
        let reservations = std::mem::take(&mut *self.inner.pool.manager().reservations.lock());
        shared
            .reserved
            .fetch_sub(reservations.len(), Ordering::AcqRel);
        drop(reservations);
        // After `closing` is set nothing parks (`ReadyStack::park`).
        self.send_back_ready(|_| true);
        shared.handoff.close();
        shared.returned.notify_waiters();
    }

    /// Closes the pool and waits up to `timeout` for every lease to come
    /// back; returns whether all did.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.close();
        let drained = async {
            loop {
                let notified = self.inner.shared.returned.notified();
                let mut notified = pin!(notified);
                notified.as_mut().enable();
                if self.status().size == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, drained).await.is_ok()
    }
}

impl<M: Manager> Pool for ManagedPool<M> {
    type Lease = Lease<M>;
    type Error = PoolError<M::Error>;

    #[track_caller]
    fn get(&self) -> impl Future<Output = Result<Lease<M>, PoolError<M::Error>>> + Send {
        ManagedPool::get(self)
    }

    fn status(&self) -> Status {
        ManagedPool::status(self)
    }

    fn resize(&self, limit: usize) -> usize {
        ManagedPool::resize(self, limit)
    }
}

/// A caller's place in the hand-off queue. Leaving (served another way,
/// failed, or cancelled) takes it out and passes on an object that was
/// handed to it meanwhile.
struct Place<'a, M: Manager> {
    queue: &'a handoff::Queue,
    waiter: &'a Arc<Waiter<M>>,
    /// Whether the waiter is (or may still be) in the queue.
    queued: bool,
}

impl<M: Manager> Place<'_, M> {
    fn join(&mut self, first: bool) {
        self.queue
            .push(Arc::clone(self.waiter) as Arc<dyn handoff::Waiting>, first);
        self.queued = true;
    }

    fn leave(&mut self) {
        if self.queued {
            let waiter: Arc<dyn handoff::Waiting> = Arc::clone(self.waiter) as _;
            self.queue.remove(&waiter);
            self.queued = false;
        }
        if let Some(object) = self.waiter.leave() {
            // Handed over while this caller was served another way: pass it
            // on as a returning lease would.
            drop(Lease::new(object));
        }
    }
}

impl<M: Manager> Drop for Place<'_, M> {
    fn drop(&mut self) {
        self.leave();
    }
}
