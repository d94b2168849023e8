//! The ready stack: objects that came back inside the health check's skip
//! window, kept with their deadpool permit so the next `get` takes one with
//! a lock and a pop instead of a round trip through deadpool, as HikariCP
//! keeps a thread's recently used connections in front of its shared bag.
//!
//! A round trip through deadpool costs a return (its user count, its slot
//! queue's lock, its semaphore's lock and permits, a weak-to-strong upgrade
//! of the pool) and a checkout (the semaphore, the slot queue, a weak
//! reference, a clock read for its metrics, the recycle hook): when a task
//! gets, holds across one await and returns, as a service does, that was
//! most of what the pool added to the cycle. Here a return is an upgrade, a
//! lock and a push; a checkout a lock and a pop.
//!
//! What stays with deadpool: creating objects, the health check (a stale
//! object, or one popped stale, goes back to deadpool, whose checkout runs
//! it), idle and lifetime reaping (maintenance first sends back what went
//! stale here), shrinking (debt collection sends everything back first) and
//! closing (everything goes back, and nothing is parked after).
//!
//! Why a parked object never strands a queued caller: a lease parks only
//! under the stack's lock and only if, read under that lock, nobody queues
//! for a slot (else it hands its object over); a caller that queued looks at
//! the stack under the same lock after joining the queue (never at the
//! lock-free length alone: a lease that saw no queue may be parking right
//! now). Whichever takes the lock second sees the other: the caller sees
//! the object, or the lease sees the caller.

use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool::managed::Object;
use parking_lot::Mutex;

use super::object::{Adapter, Shared};
use crate::Manager;

/// Objects back inside the skip window, newest last, each holding its
/// deadpool permit.
pub(crate) struct ReadyStack<M: Manager> {
    objects: Mutex<Vec<Object<Adapter<M>>>>,
    /// `objects.len()`, readable without the lock (for `status` and for a
    /// checkout to skip an empty stack).
    len: AtomicUsize,
}

impl<M: Manager> Default for ReadyStack<M> {
    fn default() -> Self {
        ReadyStack {
            objects: Mutex::new(Vec::new()),
            len: AtomicUsize::new(0),
        }
    }
}

impl<M: Manager> ReadyStack<M> {
    /// How many objects are parked (a relaxed reading).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Parks `object` unless the pool is closing or a caller queues for a
    /// slot (both read under the lock, see the module docs); gives it back
    /// otherwise.
    pub(crate) fn park(
        &self,
        object: Object<Adapter<M>>,
        shared: &Shared,
    ) -> Result<(), Object<Adapter<M>>> {
        let mut objects = self.objects.lock();
        if shared.closing.load(Ordering::Relaxed) || shared.handoff.len() != 0 {
            return Err(object);
        }
        objects.push(object);
        self.len.store(objects.len(), Ordering::Relaxed);
        Ok(())
    }

    /// Takes the newest parked object.
    #[inline]
    pub(crate) fn pop(&self) -> Option<Object<Adapter<M>>> {
        let mut objects = self.objects.lock();
        let object = objects.pop();
        self.len.store(objects.len(), Ordering::Relaxed);
        object
    }

    /// Takes out the objects `stale` picks (all of them for `|_| true`),
    /// for the caller to drop outside the lock (each goes back to deadpool).
    pub(crate) fn take_if(
        &self,
        mut stale: impl FnMut(&Object<Adapter<M>>) -> bool,
    ) -> Vec<Object<Adapter<M>>> {
        let mut objects = self.objects.lock();
        if objects.is_empty() {
            return Vec::new();
        }
        let taken = objects.extract_if(.., |o| stale(o)).collect();
        self.len.store(objects.len(), Ordering::Relaxed);
        taken
    }
}
