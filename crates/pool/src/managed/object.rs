//! What deadpool actually pools: the user's resource wrapped with its
//! timestamps and leak stamp ([`Pooled`]), made by an adapter that turns a
//! [`Manager`] into a deadpool manager.
//!
//! A `Pooled` without a resource is a *reservation*: it holds one of
//! deadpool's permits so the adaptive limit can sit below `max_size` without
//! ever resizing deadpool itself (whose shrink keeps permits it should drop,
//! letting a later grow overshoot the maximum).

use std::cell::Cell;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use deadpool::managed::{self, RecycleError, RecycleResult};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::leak::LeakRegistry;
use crate::adaptive::ControllerState;
use crate::clock::SharedClock;
use crate::config::PoolConfig;
use crate::metrics::{PoolMetrics, RetireCause};
use crate::{Manager, PoolStats};

thread_local! {
    /// Set while the pool takes a permit for a reservation: `create` then
    /// makes a placeholder instead of calling the user's manager, and
    /// `recycle` hands the object over unchecked. Reservations are taken
    /// synchronously (one poll of deadpool's `get`, see [`reserving`]), so
    /// a thread-local is enough, and cheaper to read on every checkout than
    /// a tokio task-local.
    static RESERVING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (one synchronous poll of deadpool's `get`) in reservation mode.
pub(crate) fn reserving<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the previous mode, also if `f` unwinds.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            RESERVING.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(RESERVING.with(|r| r.replace(true)));
    f()
}

/// Whether the pool is taking a permit for a reservation.
#[inline]
fn is_reserving() -> bool {
    RESERVING.with(Cell::get)
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
    /// Callers in `get`'s waiting path. This and the two below sit on
    /// cache lines of their own: every waiting caller writes them, and
    /// sharing a line with the fields every checkout and return read
    /// (config, clock, debt) made those reads miss on the other core.
    pub(crate) queued: CachePadded<AtomicUsize>,
    /// Their acquire timeout, kept by one sweeper task.
    pub(crate) deadlines: CachePadded<super::deadline::Deadlines>,
    /// Callers queued for a slot, served by hand-off (see `handoff.rs`).
    pub(crate) handoff: CachePadded<super::handoff::Queue>,
    /// Permits held by reservations (placeholders).
    pub(crate) reserved: AtomicUsize,
    pub(crate) acquires: AtomicU64,
    pub(crate) slow_acquires: AtomicU64,
    /// `adaptive.target_acquire_latency` and `validation_skip_window`,
    /// in nanoseconds.
    pub(crate) slow_threshold: u64,
    pub(crate) skip_window: u64,
    /// Whether returning leases park on the ready stack (`ready.rs`): with
    /// the sweeper (callers queue in the hand-off queue, which the stack
    /// works with) and a skip window (a parked object is reused unchecked).
    pub(crate) keep_ready: bool,
    pub(crate) controller: Mutex<ControllerState>,
    pub(crate) jitter_seed: u64,
    pub(crate) next_id: AtomicU64,
    pub(crate) counts: Counts,
    /// Whether `clock` is the [`crate::CoarseClock`], read without a
    /// virtual call (see [`Shared::now_nanos`]).
    pub(crate) coarse: bool,
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

/// Nanoseconds in `d`, saturating.
pub(crate) use stratum_core::clock::duration_nanos as nanos;

impl Shared {
    /// The clock's reading, in nanoseconds since the clock's origin: the
    /// bookkeeping keeps plain integers, so a checkout and a return do no
    /// `Instant` arithmetic. With the coarse clock, its ticker's integer
    /// itself: no virtual call.
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        if self.coarse {
            stratum_core::clock::coarse_nanos()
        } else {
            self.clock.now_nanos()
        }
    }

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

    /// A deadpool permit went back (an object returned to deadpool, or
    /// detached from it): wakes whoever can use it, `drain` while the pool
    /// closes, else the oldest queued caller, if any.
    pub(crate) fn permit_freed(&self) {
        // Pairs with the fence in `get_queued` between joining the queue
        // and retrying deadpool: of a caller queuing and this permit coming
        // back, whichever fence is second sees the other, so either the
        // caller's retry finds the permit or this finds the caller.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.closing.load(Ordering::Relaxed) {
            self.returned.notify_waiters();
        } else if self.handoff.len() != 0 {
            self.handoff.retry_oldest();
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
/// The bookkeeping sits behind one pointer: deadpool moves its objects by
/// value several times per checkout and keeps a few in every `get` future,
/// so a small `Pooled` keeps that future (and each move) small.
pub(crate) struct Pooled<T> {
    pub(crate) resource: Option<T>,
    meta: Arc<Meta>,
}

/// What the pool knows about one object, leak stamp included, in one
/// allocation: a checkout and a return write only its first cache line
/// (the fields up to `shared`), besides deadpool's own state.
///
/// Shared (an `Arc`) because the leak registry must see objects while they
/// are leased; so the fields the holder changes are relaxed atomics. Times
/// are nanoseconds from the clock's origin ([`Shared::now_nanos`]).
#[repr(C, align(64))]
pub(crate) struct Meta {
    /// When it last came back.
    returned: AtomicU64,
    /// The clock reading taken while preparing the last checkout (at create
    /// or recycle), and how long create or the health check took: `get`
    /// reuses them instead of reading the clock again.
    prepared: AtomicU64,
    prepare_time: AtomicU64,
    /// The leak stamp: when the current lease was taken, plus one; 0 while
    /// idle. Written only when leak detection is on.
    pub(super) leased_since: AtomicU64,
    /// The address of `location`, compared (never dereferenced) so a
    /// checkout from the same place as the last one takes no lock.
    pub(super) location_addr: AtomicUsize,
    pub(crate) shared: Arc<Shared>,
    /// Whether the leak scan has reported the current lease.
    pub(super) reported: AtomicBool,
    /// Whether leak detection tracks this object.
    tracked: bool,
    /// Why it is being retired, when it is: 0 for none, else 1 + the
    /// cause's index in [`RetireCause::ALL`].
    retire: AtomicU8,
    /// When its lifetime (jitter applied) ends; `u64::MAX` for never.
    expires: u64,
    /// Its idle timeout (jitter applied); `u64::MAX` for none.
    idle_timeout: u64,
    // Read rarely: when a leak is reported.
    /// Where the last checkout happened (kept after the return).
    pub(super) location: Mutex<Option<&'static Location<'static>>>,
}

impl<T> std::ops::Deref for Pooled<T> {
    type Target = Meta;
    fn deref(&self) -> &Meta {
        &self.meta
    }
}

impl Meta {
    /// Whether the object is past its lifetime at `now` (nanoseconds).
    #[inline]
    pub(crate) fn expired(&self, now: u64) -> bool {
        now >= self.expires
    }

    /// How long (nanoseconds) the object has been back in the pool at `now`.
    #[inline]
    pub(crate) fn idle_for(&self, now: u64) -> u64 {
        now.saturating_sub(self.returned.load(Ordering::Relaxed))
    }

    /// Whether the object has sat idle past its idle timeout at `now`.
    #[inline]
    pub(crate) fn idle_expired(&self, now: u64) -> bool {
        self.idle_for(now) >= self.idle_timeout
    }

    /// Records that the object came back at `now`.
    #[inline]
    pub(crate) fn mark_returned(&self, now: u64) {
        self.returned.store(now, Ordering::Relaxed);
    }

    /// Records that a checkout was prepared at `at`, having taken `took`.
    #[inline]
    pub(crate) fn mark_prepared(&self, at: u64, took: u64) {
        self.prepared.store(at, Ordering::Relaxed);
        self.prepare_time.store(took, Ordering::Relaxed);
    }

    /// When the last checkout was prepared, and how long that took.
    #[inline]
    pub(crate) fn prepared(&self) -> (u64, u64) {
        (
            self.prepared.load(Ordering::Relaxed),
            self.prepare_time.load(Ordering::Relaxed),
        )
    }

    /// Whether leak detection tracks this object.
    #[inline]
    pub(crate) fn tracked(&self) -> bool {
        self.tracked
    }

    pub(crate) fn retire(&self) -> Option<RetireCause> {
        let code = usize::from(self.retire.load(Ordering::Relaxed));
        RetireCause::ALL.get(code.checked_sub(1)?).copied()
    }

    pub(crate) fn set_retire(&self, cause: Option<RetireCause>) {
        let code = cause.map_or(0, |cause| {
            RetireCause::ALL
                .iter()
                .position(|c| *c == cause)
                .map_or(0, |i| i + 1)
        });
        self.retire
            .store(u8::try_from(code).unwrap_or(0), Ordering::Relaxed);
    }
}

impl<T> Pooled<T> {
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
                .retire()
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
    /// Objects back inside the skip window (see `ready.rs`). Here, in the
    /// manager deadpool owns, so a returning lease reaches it through its
    /// object's pool, and parked objects (which hold only a weak reference
    /// to the pool) go with the pool.
    pub(crate) ready: super::ready::ReadyStack<M>,
}

impl<M: Manager> Adapter<M> {
    fn wrap(&self, resource: Option<M::Resource>) -> Pooled<M::Resource> {
        let shared = &self.shared;
        let now = shared.now_nanos();
        let config = &shared.config;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let keep = 1.0 - jitter_fraction(shared.jitter_seed, id, config.jitter);
        let jittered = |d: Option<Duration>| d.map_or(u64::MAX, |d| nanos(d.mul_f64(keep)));
        let tracked = resource.is_some() && config.leak_detection_threshold.is_some();
        let meta = Arc::new(Meta {
            // A new object counts as just returned: the first checkout skips
            // the health check, the create having just proven it.
            returned: AtomicU64::new(now),
            prepared: AtomicU64::new(now),
            prepare_time: AtomicU64::new(0),
            leased_since: AtomicU64::new(0),
            location_addr: AtomicUsize::new(0),
            shared: Arc::clone(shared),
            reported: AtomicBool::new(false),
            tracked,
            retire: AtomicU8::new(0),
            expires: now.saturating_add(jittered(config.max_lifetime)),
            idle_timeout: jittered(config.idle_timeout),
            location: Mutex::new(None),
        });
        if tracked {
            shared.leaks.register(&meta);
        }
        Pooled { resource, meta }
    }
}

impl<M: Manager> managed::Manager for Adapter<M> {
    type Type = Pooled<M::Resource>;
    type Error = M::Error;

    async fn create(&self) -> Result<Pooled<M::Resource>, M::Error> {
        if is_reserving() {
            return Ok(self.wrap(None));
        }
        let started = self.shared.now_nanos();
        let resource = self.manager.create().await?;
        self.shared.metrics.created.increment(1);
        self.shared.counts.created.fetch_add(1, Ordering::Relaxed);
        let pooled = self.wrap(Some(resource));
        let (ready, _) = pooled.prepared();
        pooled.mark_prepared(ready, ready.saturating_sub(started));
        Ok(pooled)
    }

    async fn recycle(
        &self,
        pooled: &mut Pooled<M::Resource>,
        _: &managed::Metrics,
    ) -> RecycleResult<M::Error> {
        if is_reserving() {
            return Ok(());
        }
        let shared = &self.shared;
        let now = shared.now_nanos();
        pooled.mark_prepared(now, 0);
        if pooled.expired(now) {
            pooled.set_retire(Some(RetireCause::MaxLifetime));
            return Err(RecycleError::message("past its maximum lifetime"));
        }
        shared.metrics.recycled.increment(1);
        if pooled.idle_for(now) < shared.skip_window {
            return Ok(());
        }
        let Pooled { resource, meta } = pooled;
        let Some(resource) = resource.as_mut() else {
            return Ok(());
        };
        // Marked before the check so a check cut short by the recycle
        // timeout is still counted as a failed health check.
        meta.set_retire(Some(RetireCause::HealthCheck));
        // Boxed: a check runs only outside the skip window, and its timer
        // would otherwise sit inside every `get` future.
        let check = Box::pin(tokio::time::timeout(
            shared.config.recycle_timeout,
            self.manager.check(resource),
        ));
        match check.await {
            Ok(Ok(())) => {
                meta.set_retire(None);
                let checked = shared.now_nanos();
                meta.mark_prepared(checked, checked.saturating_sub(now));
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
