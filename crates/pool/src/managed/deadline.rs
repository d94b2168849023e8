//! The acquire timeout without a timer per waiting caller: one sweeper task
//! per pool ticks `SLICES` times per `acquire_timeout` while callers wait,
//! and a caller gives up once it has seen `SLICES` ticks.
//!
//! A tokio timer per waiter costs a clock read, a timer-wheel insertion and
//! a removal on every wait; at 64 tasks on a pool of 16 nearly every `get`
//! waits, so that was a large share of the cycle. A waiter here registers
//! with one `Notify` instead, and no clock is read. The price is precision:
//! a wait ends between `(SLICES - 1) / SLICES` of the timeout and the
//! timeout, never later (bar scheduling delays).

use std::future::Future;
use std::pin::pin;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::object::Shared;

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
    pub(crate) fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// A caller joined the queue; `before` is the queue length it found.
    pub(crate) fn queued(&self, before: usize) {
        if before == 0 {
            self.wake.notify_one();
        }
    }

    /// Stops the sweeper (the pool closed or went away).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Runs `wait` until it completes or the acquire timeout's `SLICES`
    /// ticks have passed (`None`).
    pub(crate) async fn bounded<F: Future>(&self, wait: F) -> Option<F::Output> {
        let born = self.epoch.load(Ordering::Acquire);
        let mut wait = pin!(wait);
        loop {
            // Created before the epoch check, so a tick between the check
            // and the first poll is not missed.
            let tick = self.tick.notified();
            if self.epoch.load(Ordering::Acquire).wrapping_sub(born) >= SLICES {
                return None;
            }
            tokio::select! {
                biased;
                output = &mut wait => return Some(output),
                () = tick => {}
            }
        }
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
