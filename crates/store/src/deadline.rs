//! The store's per-call deadline without a timer per call: one ticker task
//! per store ticks `SLICES` times per `operation_timeout` while calls are in
//! flight, and a call still pending once it has seen `SLICES` ticks gives
//! up. The ticker sleeps while nothing is in flight.
//!
//! `tokio::time::timeout` around every driver call registered a timer-wheel
//! entry on the first poll, polled it on every wake-up and removed it at the
//! end: about 1,500 instructions per call, measured with callgrind on the
//! repository bench (a third of what the store adds to the driver's own
//! work). A call here joins one `Notify` instead (a lock and a waker clone,
//! and the lock again on the way out). The price is precision: a call times
//! out between `(SLICES - 1) / SLICES` of the timeout and the timeout, never
//! later (bar scheduling delays).
//!
//! stratum-pool bounds its acquire wait with the same idea (an epoch ticked
//! `SLICES` times per timeout), but not the same mechanism, so the two stay
//! apart: here every pending call waits on the tick and judges its own
//! deadline (a broadcast), and the ticker starts lazily on whatever runtime
//! the call runs on and restarts on a new one; the pool's sweeper instead
//! expires callers from its FIFO hand-off queue itself and wakes the oldest
//! to retry (queue management, on the runtime the pool was built on, with
//! the waiter count on the pool's own padded cache line). A shared version
//! would need tokio in stratum-core, which knows no async runtime, and a hook
//! on the pool's hot path. Both tick on tokio's time, not on
//! `stratum_core::Clock`: tokio's paused test clock drives them.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;

/// Ticks per timeout.
const SLICES: u64 = 16;

/// The ticker's state, shared by the calls and the ticker task.
#[derive(Default)]
struct State {
    /// Ticks so far.
    epoch: AtomicU64,
    /// Woken on every tick.
    tick: Notify,
    /// Calls in flight; the ticker sleeps while there are none.
    in_flight: AtomicUsize,
    /// Wakes the ticker when the first call starts, or when the store goes.
    wake: Notify,
    /// Whether a ticker task is alive (it clears this when it ends, also
    /// when its runtime shuts down and drops it).
    running: AtomicBool,
    stop: AtomicBool,
}

/// Deadlines for one store's calls. Dropping it ends the ticker.
pub(crate) struct Deadlines {
    state: Arc<State>,
    timeout: Duration,
    /// `timeout / SLICES`: the ticker's period.
    period: Duration,
}

impl std::fmt::Debug for Deadlines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadlines")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Drop for Deadlines {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        self.state.wake.notify_one();
    }
}

impl Deadlines {
    /// Deadlines of `timeout`; the ticker starts with the first call.
    pub(crate) fn new(timeout: Duration) -> Deadlines {
        Deadlines {
            state: Arc::default(),
            timeout,
            period: (timeout / SLICES as u32).max(Duration::from_micros(100)),
        }
    }

    /// The timeout these deadlines keep.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `call` until it finishes (`Some`) or its deadline passes
    /// (`None`, and `call` is dropped). Outside a tokio runtime, a plain
    /// timer (the ticker needs one to run on).
    pub(crate) async fn bound<F: Future>(&self, call: F) -> Option<F::Output> {
        if !self.ticker_alive() {
            return tokio::time::timeout(self.timeout, call).await.ok();
        }
        let state = &*self.state;
        let _in_flight = InFlight::enter(state);
        let born = state.epoch.load(Ordering::Acquire);
        let mut call = pin!(call);
        // Made only when the call has to wait, and before the epoch is read
        // again, so no tick in between is missed.
        let mut tick = pin!(None);
        poll_fn(|cx| {
            if let Poll::Ready(output) = call.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            loop {
                if tick.is_none() {
                    tick.set(Some(state.tick.notified()));
                }
                if state.epoch.load(Ordering::Acquire).wrapping_sub(born) >= SLICES {
                    return Poll::Ready(None);
                }
                let Some(notified) = tick.as_mut().as_pin_mut() else {
                    return Poll::Pending;
                };
                match notified.poll(cx) {
                    // A tick: look at the epoch again, with a new `Notified`.
                    Poll::Ready(()) => tick.set(None),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await
    }

    /// Whether a ticker serves this store, starting one on the current
    /// runtime if none does; false outside a runtime.
    fn ticker_alive(&self) -> bool {
        let state = &self.state;
        if state.running.load(Ordering::Acquire) {
            return true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        if state
            .running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            runtime.spawn(tick(Arc::downgrade(state), self.period));
        }
        true
    }
}

/// Counts a call as in flight for as long as it runs, also when it is
/// cancelled; the first one wakes the ticker.
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> InFlight<'a> {
        if state.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            state.wake.notify_one();
        }
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Clears `running` when the ticker ends, however it ends (a runtime that
/// shuts down drops its tasks), so the next call starts a new one.
struct Running(Weak<State>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(state) = self.0.upgrade() {
            state.running.store(false, Ordering::Release);
        }
    }
}

/// The ticker: every `period` while calls are in flight, bumps the epoch and
/// wakes the waiting calls; idle otherwise; ends with the store.
async fn tick(state: Weak<State>, period: Duration) {
    let _running = Running(state.clone());
    loop {
        let Some(strong) = state.upgrade() else {
            return;
        };
        if strong.stop.load(Ordering::Acquire) {
            return;
        }
        if strong.in_flight.load(Ordering::Acquire) == 0 {
            // `notify_one` stores a permit when nobody waits yet, so a call
            // that starts between the check and the await is not missed.
            strong.wake.notified().await;
            continue;
        }
        drop(strong);
        tokio::time::sleep(period).await;
        let Some(strong) = state.upgrade() else {
            return;
        };
        strong.epoch.fetch_add(1, Ordering::AcqRel);
        strong.tick.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::time::Instant;

    /// Deadlines whose epoch the test moves by hand (no ticker task).
    fn manual(timeout: Duration) -> Deadlines {
        let deadlines = Deadlines::new(timeout);
        deadlines.state.running.store(true, Ordering::Release);
        deadlines
    }

    fn tick_by_hand(deadlines: &Deadlines, ticks: u64) {
        for _ in 0..ticks {
            deadlines.state.epoch.fetch_add(1, Ordering::AcqRel);
            deadlines.state.tick.notify_waiters();
        }
    }

    #[test]
    fn a_pending_call_gives_up_on_the_sixteenth_tick_and_not_before() {
        let deadlines = manual(Duration::from_secs(1));
        let mut call = Box::pin(deadlines.bound(std::future::pending::<()>()));
        assert!(call.as_mut().now_or_never().is_none());
        tick_by_hand(&deadlines, SLICES - 1);
        assert!(
            call.as_mut().now_or_never().is_none(),
            "15 ticks are not enough"
        );
        assert_eq!(deadlines.state.in_flight.load(Ordering::Acquire), 1);
        tick_by_hand(&deadlines, 1);
        assert_eq!(call.as_mut().now_or_never(), Some(None));
        assert_eq!(deadlines.state.in_flight.load(Ordering::Acquire), 0);
        // A call cancelled while it waits leaves the count too.
        let mut call = Box::pin(deadlines.bound(std::future::pending::<()>()));
        assert!(call.as_mut().now_or_never().is_none());
        assert_eq!(deadlines.state.in_flight.load(Ordering::Acquire), 1);
        drop(call);
        assert_eq!(deadlines.state.in_flight.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_call_that_finishes_first_returns_its_output() {
        let deadlines = manual(Duration::from_secs(1));
        let (send, receive) = futures::channel::oneshot::channel::<u32>();
        let mut call = Box::pin(deadlines.bound(receive));
        assert!(call.as_mut().now_or_never().is_none());
        tick_by_hand(&deadlines, SLICES - 1);
        assert!(call.as_mut().now_or_never().is_none());
        send.send(7).unwrap();
        assert_eq!(call.as_mut().now_or_never(), Some(Some(Ok(7))));
        // Ticks before a call starts do not count against it.
        tick_by_hand(&deadlines, 100);
        let later = deadlines.bound(async { 8 });
        assert_eq!(later.now_or_never(), Some(Some(8)));
    }

    #[tokio::test]
    async fn the_ticker_times_a_call_out_no_earlier_than_fifteen_sixteenths() {
        let timeout = Duration::from_millis(160);
        let deadlines = Deadlines::new(timeout);
        let started = Instant::now();
        // The outer timeout only guards the test against a hang.
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            deadlines.bound(std::future::pending::<()>()),
        )
        .await
        .expect("the deadline fired");
        assert!(out.is_none());
        let took = started.elapsed();
        assert!(took >= timeout * 15 / 16, "{took:?}");
    }

    #[tokio::test]
    async fn the_ticker_idles_without_calls_and_ends_with_the_store() {
        let timeout = Duration::from_millis(160);
        let deadlines = Deadlines::new(timeout);
        assert!(deadlines.bound(async {}).await.is_some());
        let epoch = deadlines.state.epoch.load(Ordering::Acquire);
        tokio::time::sleep(timeout * 2).await;
        // At most the tick that was already under way.
        assert!(deadlines.state.epoch.load(Ordering::Acquire) <= epoch + 1);
        let weak = Arc::downgrade(&deadlines.state);
        drop(deadlines);
        for _ in 0..6_000 {
            if weak.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the ticker kept the state alive");
    }

    #[test]
    fn a_new_runtime_gets_a_new_ticker() {
        let timeout = Duration::from_millis(80);
        let deadlines = Deadlines::new(timeout);
        for _ in 0..2 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let out = rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(60),
                    deadlines.bound(std::future::pending::<()>()),
                )
                .await
            });
            assert_eq!(out.ok(), Some(None), "timed out on this runtime too");
            drop(rt);
        }
    }

    #[test]
    fn outside_a_runtime_no_ticker_is_started() {
        let deadlines = Deadlines::new(Duration::from_secs(1));
        assert!(!deadlines.ticker_alive());
    }
}
