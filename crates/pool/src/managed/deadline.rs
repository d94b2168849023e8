//! The acquire timeout without a timer per waiting caller: one sweeper task
//! per pool ticks `SLICES` times per `acquire_timeout` while callers wait,
//! and a caller still queued for a slot (see `handoff.rs`) is taken out and
//! told it timed out once it has seen `SLICES` ticks. A caller served at
//! once never queues at all. On every tick the sweeper also wakes the oldest
//! caller to try deadpool again (a backstop: see `handoff.rs` on races).
//!
//! A tokio timer per waiter costs a clock read, a timer-wheel insertion and
//! a removal on every wait; at 64 tasks on a pool of 16 nearly every `get`
//! waits, so that was a large share of the cycle. Time comes from the
//! sweeper's tokio sleep, so tokio's paused test clock drives it too. The
//! price is precision: a wait for a slot ends between `(SLICES - 1) /
//! SLICES` of the timeout and the timeout, never later (bar scheduling
//! delays). Pools without a background task keep deadpool's timer.
//!
//! stratum-store's per-call deadline (`crates/store/src/deadline.rs`) ticks
//! an epoch the same way but is another mechanism: its calls wait on the
//! tick and judge their own deadlines, where this sweeper takes expired
//! callers out of the hand-off queue and retries the oldest. They share no
//! code: a common version would bring tokio into stratum-core and a hook
//! into this hot path.

use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::object::Shared;

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

    /// Ticks so far (a queued caller notes the epoch it queued in).
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Wakes the sweeper (the first caller queued).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
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
            let epoch = strong.deadlines.epoch.fetch_add(1, Ordering::AcqRel) + 1;
            strong.handoff.expire(epoch, SLICES);
            strong.handoff.retry_oldest();
        }
    });
}

impl Deadlines {
    /// Marks the sweeper as started (call before spawning it).
    pub(crate) fn start(&self) {
        self.running.store(true, Ordering::Release);
    }
}
