//! The acquire timeout without a timer per waiting caller: one sweeper task
//! per pool ticks `SLICES` times per `acquire_timeout` while callers wait,
//! and a caller still waiting for a slot gives up once it has seen `SLICES`
//! ticks. A caller served at once never joins the queue at all.
//!
//! A tokio timer per waiter costs a clock read, a timer-wheel insertion and
//! a removal on every wait; at 64 tasks on a pool of 16 nearly every `get`
//! waits, so that was a large share of the cycle. A waiter here registers
//! with one `Notify` instead, and no clock is read (time comes from the
//! sweeper's tokio sleep, so tokio's paused test clock drives it too). The
//! price is precision: a wait for a slot ends between `(SLICES - 1) /
//! SLICES` of the timeout and the timeout, never later (bar scheduling
//! delays). Pools without a background task keep deadpool's timer.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use deadpool::managed::{PoolError, TimeoutType};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use super::object::Shared;

thread_local! {
    /// Set by the adapter when deadpool hands a `get` a slot (it calls
    /// create or recycle, inside the poll of that `get`). A bounded `get`
    /// clears it around each poll of deadpool's future (saving and restoring
    /// the previous value, for a `check` that itself uses a pool) and reads
    /// it after: from then on the acquire timeout no longer applies, since
    /// it bounds only the wait for a slot (as deadpool's wait timeout does);
    /// create and check have their own timeouts. A plain thread-local, not
    /// a tokio task-local: a task-local scope cost 7 % of the 64-task cycle.
    static SLOT_TAKEN: Cell<bool> = const { Cell::new(false) };
}

/// Called by the adapter when deadpool hands it a slot (create or recycle).
#[inline]
pub(crate) fn slot_taken() {
    SLOT_TAKEN.with(|taken| taken.set(true));
}

/// Counts a caller in the waiting path for as long as it is there, also
/// when its `get` is cancelled.
pub(crate) struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    /// Joins; also returns how many were queued before.
    #[inline]
    pub(crate) fn enter(count: &'a AtomicUsize) -> (Queued<'a>, usize) {
        let before = count.fetch_add(1, Ordering::AcqRel);
        (Queued(count), before)
    }
}

impl Drop for Queued<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Ticks per acquire timeout.
pub(crate) const SLICES: u64 = 16;

/// The sweeper's state, shared with the waiters.
#[derive(Default)]
pub(crate) struct Deadlines {
    /// Ticks so far.
    epoch: AtomicU64,
    /// Woken on every tick.
    tick: Notify,
    /// Wakes the sweeper when the first caller queues, or the pool goes.
    wake: Notify,
    /// Set when the sweeper runs; without it waiters fall back to a timer.
    running: AtomicBool,
    stop: AtomicBool,
}

impl Deadlines {
    /// Whether a sweeper serves this pool.
    #[inline]
    pub(crate) fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Stops the sweeper (the pool closed or went away).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Polls `get` (deadpool's unbounded `timeout_get`) bounded by the
    /// acquire timeout, for `get`'s `poll_fn`: a slot free at once costs
    /// nothing more; a caller that has to wait joins `queued` (timed from
    /// then) and gives up, with deadpool's wait-timeout error, once
    /// `SLICES` ticks pass while it still waits for a slot.
    ///
    /// A function polled from `get`'s own future rather than an async fn
    /// of its own: one layer of future less, so deadpool's object is moved
    /// once less on the way out.
    pub(crate) fn poll_bounded<'a, T, E>(
        &'a self,
        shared: &'a Shared,
        wait: &mut Wait<'a>,
        mut tick: Pin<&mut Option<Notified<'a>>>,
        get: Pin<&mut impl Future<Output = Result<T, PoolError<E>>>>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<T, PoolError<E>>> {
        let outer = SLOT_TAKEN.replace(false);
        let polled = get.poll(cx);
        wait.has_slot |= SLOT_TAKEN.replace(outer);
        if polled.is_ready() || wait.has_slot {
            // Done, or creating or checking: bounded by their own timeouts.
            return polled;
        }
        let born = match &wait.queued {
            Some((_, born, _)) => *born,
            None => {
                let (entered, before) = Queued::enter(&shared.queued);
                if before == 0 {
                    self.wake.notify_one();
                }
                // The `Notified` is taken before reading the epoch, so no
                // tick between the two is missed.
                tick.set(Some(self.tick.notified()));
                let born = self.epoch.load(Ordering::Acquire);
                wait.queued = Some((entered, born, shared.now_nanos()));
                born
            }
        };
        loop {
            if self.epoch.load(Ordering::Acquire).wrapping_sub(born) >= SLICES {
                return Poll::Ready(Err(PoolError::Timeout(TimeoutType::Wait)));
            }
            let Some(notified) = tick.as_mut().as_pin_mut() else {
                return Poll::Pending;
            };
            match notified.poll(cx) {
                Poll::Ready(()) => tick.set(Some(self.tick.notified())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// One caller's wait for a slot (see [`Deadlines::poll_bounded`]).
#[derive(Default)]
pub(crate) struct Wait<'a> {
    /// Its place in the queue, the epoch it started waiting in, and when
    /// ([`Shared::now_nanos`]); `None` while it has not had to wait.
    queued: Option<(Queued<'a>, u64, u64)>,
    /// Set once deadpool handed it a slot: the acquire timeout no longer
    /// applies.
    has_slot: bool,
}

impl Wait<'_> {
    /// When it started waiting for a slot; `None` if one was free at once.
    pub(crate) fn queued_at(&self) -> Option<u64> {
        self.queued.as_ref().map(|q| q.2)
    }
}

/// Starts the sweeper on `runtime`: it ticks every `acquire_timeout /
/// SLICES` while anyone is queued, sleeps otherwise, and ends with the pool.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    shared: Weak<Shared>,
    acquire_timeout: Duration,
) {
    let period = (acquire_timeout / SLICES as u32).max(Duration::from_micros(100));
    runtime.spawn(async move {
        loop {
            let Some(strong) = shared.upgrade() else {
                break;
            };
            let deadlines = &strong.deadlines;
            if deadlines.stop.load(Ordering::Acquire) {
                break;
            }
            if strong.queued.load(Ordering::Acquire) == 0 {
                let woken = deadlines.wake.notified();
                woken.await;
                continue;
            }
            drop(strong);
            tokio::time::sleep(period).await;
            let Some(strong) = shared.upgrade() else {
                break;
            };
            strong.deadlines.epoch.fetch_add(1, Ordering::AcqRel);
            strong.deadlines.tick.notify_waiters();
        }
    });
}

impl Deadlines {
    /// Marks the sweeper as started (call before spawning it).
    pub(crate) fn start(&self) {
        self.running.store(true, Ordering::Release);
    }
}
