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
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;

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

/// How a bounded wait ended.
pub(crate) enum Bounded<T> {
    /// The wait completed; `queued_at` is when it started waiting for a
    /// slot ([`Shared::now_nanos`]), `None` if one was free at once.
    Ready { output: T, queued_at: Option<u64> },
    /// No slot within the acquire timeout.
    TimedOut,
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

    /// Runs `get` (deadpool's unbounded `timeout_get`). A slot free at once
    /// costs nothing more; a caller that has to wait joins `queued` (timed
    /// from then with `clock`) and gives up once `SLICES` ticks pass while
    /// it still waits for a slot.
    pub(crate) async fn bounded<F: Future>(
        &self,
        shared: &Shared,
        get: impl FnOnce() -> F,
    ) -> Bounded<F::Output> {
        // `get` is made here rather than passed in as a future: a future
        // argument is stored once per layer of async fn.
        let mut get = pin!(get());
        // Not registered until polled, so a caller served at once never
        // touches the `Notify`.
        let mut tick = pin!(self.tick.notified());
        let mut waiting: Option<(Queued<'_>, u64, u64)> = None;
        let mut has_slot = false;
        poll_fn(|cx| {
            let outer = SLOT_TAKEN.replace(false);
            let polled = get.as_mut().poll(cx);
            has_slot |= SLOT_TAKEN.replace(outer);
            if let Poll::Ready(output) = polled {
                let queued_at = waiting.as_ref().map(|w| w.2);
                return Poll::Ready(Bounded::Ready { output, queued_at });
            }
            if has_slot {
                // Creating or checking: bounded by their own timeouts.
                return Poll::Pending;
            }
            let born = match &waiting {
                Some((_, born, _)) => *born,
                None => {
                    let (entered, before) = Queued::enter(&shared.queued);
                    if before == 0 {
                        self.wake.notify_one();
                    }
                    // A fresh `Notified`, taken before reading the epoch, so
                    // no tick between the two is missed.
                    tick.set(self.tick.notified());
                    let born = self.epoch.load(Ordering::Acquire);
                    waiting = Some((entered, born, shared.now_nanos()));
                    born
                }
            };
            loop {
                if self.epoch.load(Ordering::Acquire).wrapping_sub(born) >= SLICES {
                    return Poll::Ready(Bounded::TimedOut);
                }
                match tick.as_mut().poll(cx) {
                    Poll::Ready(()) => tick.set(self.tick.notified()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await
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
