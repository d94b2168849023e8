//! Hand-off: callers that find no free slot queue here (FIFO), and a
//! returning lease gives its object, with the deadpool permit it holds,
//! straight to the oldest of them, as HikariCP's `ConcurrentBag` hands a
//! returned connection to a waiting thread.
//!
//! Waiting inside deadpool instead (its semaphore queue) cost every waiting
//! `get` a second registration to bound the wait (the sweeper's `Notify`),
//! and every served waiter deadpool's return, semaphore hand-over, slot
//! queue and recycle hooks: at 64 tasks on 16 slots, where nearly every
//! `get` waits, that made a cycle about 725 instructions longer than bare
//! deadpool's (see docs/pool.md). Here a waiter registers once, and the
//! sweeper that bounds its wait scans this queue.
//!
//! Races, and why none strands a waiter for long: a caller that finds no
//! permit queues and then tries deadpool once more, so a lease that came
//! back to deadpool before the caller queued is found. A lease that saw an
//! empty queue just before a caller queued, and returns to deadpool just
//! after that caller's second try, leaves a permit free with a caller
//! waiting: the next lease that comes back hands its object to the caller,
//! and the sweeper wakes the oldest caller to try again on every tick
//! (`acquire_timeout / 16`), whichever comes first.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use deadpool::managed::Object;
use parking_lot::Mutex;

use super::object::Adapter;
use crate::Manager;

/// What a queued caller is told when it is not handed an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// A permit may be free in deadpool: try a zero-wait checkout again.
    Retry,
    /// It saw `SLICES` sweeper ticks in the queue.
    TimedOut,
    /// The pool closed.
    Closed,
}

/// A queued caller as the (type-erased) queue sees it.
pub(crate) trait Waiting: Send + Sync {
    /// The sweeper epoch it first queued in.
    fn born(&self) -> u64;
    /// Tells it `signal`, unless it already has an answer or left; returns
    /// whether it was told.
    fn signal(&self, signal: Signal) -> bool;
    /// For the hand-off, which knows the pool's manager type.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// The callers waiting for a slot, oldest first.
#[derive(Default)]
pub(crate) struct Queue {
    waiters: Mutex<VecDeque<Arc<dyn Waiting>>>,
    /// `waiters.len()`, readable without the lock.
    len: AtomicUsize,
}

impl Queue {
    /// How many callers are queued.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Queues `waiter` last, or first when it is re-queued after a retry
    /// (it keeps its place as the oldest).
    pub(crate) fn push(&self, waiter: Arc<dyn Waiting>, first: bool) {
        let mut waiters = self.waiters.lock();
        if first {
            waiters.push_front(waiter);
        } else {
            waiters.push_back(waiter);
        }
        self.len.store(waiters.len(), Ordering::Release);
    }

    /// Takes `waiter` out if it is still queued; returns whether it was.
    pub(crate) fn remove(&self, waiter: &Arc<dyn Waiting>) -> bool {
        let mut waiters = self.waiters.lock();
        let Some(at) = waiters.iter().position(|w| Arc::ptr_eq(w, waiter)) else {
            return false;
        };
        waiters.remove(at);
        self.len.store(waiters.len(), Ordering::Release);
        true
    }

    /// Takes the oldest caller out.
    pub(crate) fn pop(&self) -> Option<Arc<dyn Waiting>> {
        let mut waiters = self.waiters.lock();
        let first = waiters.pop_front();
        self.len.store(waiters.len(), Ordering::Release);
        first
    }

    /// Takes out and tells the oldest caller still waiting to try deadpool
    /// again (it re-queues first if there is still no permit).
    pub(crate) fn retry_oldest(&self) {
        while let Some(waiter) = self.pop() {
            if waiter.signal(Signal::Retry) {
                return;
            }
        }
    }

    /// Takes out and tells every caller that has seen `slices` ticks since
    /// it queued (epoch `now`) that it timed out.
    pub(crate) fn expire(&self, now: u64, slices: u64) {
        let mut expired = Vec::new();
        {
            let mut waiters = self.waiters.lock();
            waiters.retain(|w| {
                let keep = now.wrapping_sub(w.born()) < slices;
                if !keep {
                    expired.push(Arc::clone(w));
                }
                keep
            });
            self.len.store(waiters.len(), Ordering::Release);
        }
        for waiter in expired {
            waiter.signal(Signal::TimedOut);
        }
    }

    /// Takes out and tells every caller that the pool closed.
    pub(crate) fn close(&self) {
        let waiters = {
            let mut waiters = self.waiters.lock();
            self.len.store(0, Ordering::Release);
            std::mem::take(&mut *waiters)
        };
        for waiter in waiters {
            waiter.signal(Signal::Closed);
        }
    }
}

/// What a caller gets while queued.
pub(crate) enum Answer<M: Manager> {
    /// A returning lease's object (and its permit).
    Object(Object<Adapter<M>>),
    Signal(Signal),
}

/// One queued caller of a pool of `M`.
pub(crate) struct Waiter<M: Manager> {
    born: u64,
    slot: Mutex<Slot<M>>,
}

struct Slot<M: Manager> {
    waker: Option<Waker>,
    answer: Option<Answer<M>>,
    /// Set when the caller stopped waiting (served another way, or
    /// cancelled): nothing more may be handed to it.
    left: bool,
}

impl<M: Manager> Waiter<M> {
    pub(crate) fn new(born: u64) -> Waiter<M> {
        Waiter {
            born,
            slot: Mutex::new(Slot {
                waker: None,
                answer: None,
                left: false,
            }),
        }
    }

    /// Hands `object` to this caller; gives it back if the caller already
    /// has an answer or left.
    pub(crate) fn offer(&self, object: Object<Adapter<M>>) -> Result<(), Object<Adapter<M>>> {
        let waker = {
            let mut slot = self.slot.lock();
            if slot.left || slot.answer.is_some() {
                return Err(object);
            }
            slot.answer = Some(Answer::Object(object));
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// The answer, once there is one.
    pub(crate) fn poll_answer(&self, cx: &mut Context<'_>) -> Poll<Answer<M>> {
        let mut slot = self.slot.lock();
        if let Some(answer) = slot.answer.take() {
            return Poll::Ready(answer);
        }
        match &slot.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Stops waiting; returns an object handed over meanwhile, which the
    /// caller must pass on.
    pub(crate) fn leave(&self) -> Option<Object<Adapter<M>>> {
        let mut slot = self.slot.lock();
        slot.left = true;
        slot.waker = None;
        match slot.answer.take() {
            Some(Answer::Object(object)) => Some(object),
            _ => None,
        }
    }
}

impl<M: Manager> Waiting for Waiter<M> {
    fn born(&self) -> u64 {
        self.born
    }

    fn signal(&self, signal: Signal) -> bool {
        let waker = {
            let mut slot = self.slot.lock();
            if slot.left || slot.answer.is_some() {
                return false;
            }
            slot.answer = Some(Answer::Signal(signal));
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
