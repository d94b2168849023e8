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
//! Races, and why none strands a waiter: a caller that finds no permit
//! queues and then looks at the ready stack and deadpool once more, so an
//! object parked or returned before the caller queued is found. A lease
//! parks on the ready stack only if nobody queues, read under the stack's
//! lock, so it and a queuing caller always see each other (see `ready.rs`).
//! Where an object goes back to deadpool instead (a zero skip window, a
//! hand-off every waiter left, a discard), the return and the caller's
//! joining are each followed by a `SeqCst` fence before the other's side is
//! read (`Shared::permit_freed`, `get_queued`): either the caller's retry
//! finds the permit, or the return sees the caller and wakes the oldest to
//! retry. The sweeper also wakes the oldest caller on every tick, a
//! backstop no known path needs.

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
    ///
    /// Searched from both ends at once: a caller that leaves after its own
    /// retry found a permit sits near the back, one cancelled after a long
    /// wait near the front, so neither costs a walk past thousands of
    /// others under the lock.
    pub(crate) fn remove(&self, waiter: &Arc<dyn Waiting>) -> bool {
        let mut waiters = self.waiters.lock();
        let len = waiters.len();
        let is = |i: usize| waiters.get(i).is_some_and(|w| Arc::ptr_eq(w, waiter));
        let Some(at) = (0..len.div_ceil(2))
            .flat_map(|i| [i, len - 1 - i])
            .find(|&i| is(i))
        else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A queued caller that records what it was told.
    struct Probe {
        id: u64,
        born: u64,
        told: Mutex<Option<Signal>>,
    }

    impl Probe {
        fn new(id: u64, born: u64) -> Arc<Probe> {
            Arc::new(Probe {
                id,
                born,
                told: Mutex::new(None),
            })
        }
    }

    impl Waiting for Probe {
        fn born(&self) -> u64 {
            self.born
        }
        fn signal(&self, signal: Signal) -> bool {
            let mut told = self.told.lock();
            if told.is_some() {
                return false;
            }
            *told = Some(signal);
            true
        }
        fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
            self
        }
    }

    fn ids(queue: &Queue) -> Vec<u64> {
        queue
            .waiters
            .lock()
            .iter()
            .map(|w| {
                let any = Arc::clone(w).into_any();
                any.downcast::<Probe>().map(|p| p.id).unwrap_or(u64::MAX)
            })
            .collect()
    }

    #[derive(Debug, Clone)]
    enum Op {
        PushBack,
        PushFront,
        Remove(usize),
        Pop,
        RetryOldest,
        Expire(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::PushBack),
            1 => Just(Op::PushFront),
            2 => (0usize..40).prop_map(Op::Remove),
            1 => Just(Op::Pop),
            1 => Just(Op::RetryOldest),
            1 => (0u64..40).prop_map(Op::Expire),
        ]
    }

    proptest! {
        /// Against a `VecDeque` of ids: the queue keeps the same order,
        /// `len` always equals the number queued, every caller taken out by
        /// `retry_oldest`, `expire` or `close` is told exactly once, and
        /// `expire` takes out exactly the callers born `slices` ticks ago.
        #[test]
        fn the_queue_matches_a_model(ops in prop::collection::vec(op(), 1..120)) {
            const SLICES: u64 = 16;
            let queue = Queue::default();
            let mut model: VecDeque<Arc<Probe>> = VecDeque::new();
            let mut next = 0u64;
            for op in ops {
                match op {
                    Op::PushBack | Op::PushFront => {
                        // Born epochs grow with ids, as in the pool.
                        let probe = Probe::new(next, next / 3);
                        next += 1;
                        let first = matches!(op, Op::PushFront);
                        queue.push(Arc::clone(&probe) as Arc<dyn Waiting>, first);
                        if first { model.push_front(probe) } else { model.push_back(probe) }
                    }
                    Op::Remove(k) => {
                        if model.is_empty() { continue; }
                        let probe = model.remove(k % model.len()).unwrap();
                        prop_assert!(queue.remove(&(Arc::clone(&probe) as Arc<dyn Waiting>)));
                        prop_assert!(!queue.remove(&(probe as Arc<dyn Waiting>)));
                    }
                    Op::Pop => {
                        let got = queue.pop().map(|w| w.into_any().downcast::<Probe>().unwrap().id);
                        prop_assert_eq!(got, model.pop_front().map(|p| p.id));
                    }
                    Op::RetryOldest => {
                        if let Some(probe) = model.pop_front() {
                            queue.retry_oldest();
                            prop_assert_eq!(*probe.told.lock(), Some(Signal::Retry));
                        }
                    }
                    Op::Expire(now) => {
                        let (gone, kept): (Vec<_>, Vec<_>) = model
                            .drain(..)
                            .partition(|p| now.wrapping_sub(p.born) >= SLICES);
                        model = kept.into();
                        queue.expire(now, SLICES);
                        for probe in gone {
                            prop_assert_eq!(*probe.told.lock(), Some(Signal::TimedOut));
                        }
                    }
                }
                prop_assert_eq!(queue.len(), model.len());
                prop_assert_eq!(ids(&queue), model.iter().map(|p| p.id).collect::<Vec<_>>());
                for probe in &model {
                    prop_assert_eq!(*probe.told.lock(), None, "a queued caller was told");
                }
            }
            queue.close();
            prop_assert_eq!(queue.len(), 0);
            for probe in &model {
                prop_assert_eq!(*probe.told.lock(), Some(Signal::Closed));
            }
        }
    }
}
