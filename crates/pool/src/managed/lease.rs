//! The lease `get` hands out: derefs to the resource, gives it back on drop.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;

use deadpool::managed::Object;

use super::handoff::Waiter;
#[cfg(test)]
use super::object::Meta;
use super::object::{Adapter, Pooled};
use crate::Manager;
use crate::metrics::RetireCause;

/// A pooled resource on loan. Dropping it returns the resource to the pool;
/// [`Lease::discard`] retires it instead.
///
/// ```
/// use stratum_pool::{ManagedPool, Manager, Pool};
/// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
/// struct Counter;
/// impl Manager for Counter {
///     type Resource = Vec<u32>;
///     type Error = Never;
///     async fn create(&self) -> Result<Vec<u32>, Never> { Ok(Vec::new()) }
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = ManagedPool::builder(Counter).min_size(0).max_size(1).build().unwrap();
/// let mut lease = pool.get().await.unwrap();
/// lease.push(1); // DerefMut to the resource
/// drop(lease);
/// assert_eq!(*pool.get().await.unwrap(), vec![1]); // the same object came back
/// # }
/// ```
pub struct Lease<M: Manager> {
    /// `None` only inside `discard` and `drop`, which both consume the lease.
    object: Option<Object<Adapter<M>>>,
}

impl<M: Manager> Lease<M> {
    pub(crate) fn new(object: Object<Adapter<M>>) -> Lease<M> {
        Lease {
            object: Some(object),
        }
    }

    fn pooled(&self) -> &Pooled<M::Resource> {
        #[allow(clippy::expect_used)]
        // `object` is `Some` from `new` until `discard`/`drop` consume the lease.
        self.object.as_ref().expect("a live lease holds its object")
    }

    /// The object's bookkeeping.
    #[cfg(test)]
    pub(super) fn meta(&self) -> &Meta {
        self.pooled()
    }

    fn pooled_mut(&mut self) -> &mut Pooled<M::Resource> {
        #[allow(clippy::expect_used)]
        // `object` is `Some` from `new` until `discard`/`drop` consume the lease.
        self.object.as_mut().expect("a live lease holds its object")
    }

    /// Retires the resource instead of returning it (it is broken, say); the
    /// pool creates a replacement when needed.
    pub fn discard(mut self) {
        if let Some(object) = self.object.take() {
            object.set_retire(Some(RetireCause::Discarded));
            if object.tracked() {
                object.release(object.shared.now_nanos());
            }
            match keep_as_reservation(object, RetireCause::Discarded) {
                Ok(()) => {}
                Err(object) => {
                    let shared = std::sync::Arc::clone(&object.shared);
                    // Its permit goes back to deadpool: a queued caller can
                    // create a replacement with it.
                    drop(Object::take(object));
                    shared.permit_freed();
                }
            }
        }
    }
}

/// While the limit is below the permits handed out (a shrink happened with
/// leases out), a returning lease keeps its permit as a reservation: its
/// resource is retired for `cause` and the object is not returned.
fn keep_as_reservation<M: Manager>(
    mut object: Object<Adapter<M>>,
    cause: RetireCause,
) -> Result<(), Object<Adapter<M>>> {
    let debt = &object.shared.debt;
    if debt.load(Ordering::Relaxed) == 0
        || debt
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |d| d.checked_sub(1))
            .is_err()
    {
        return Err(object);
    }
    let Some(pool) = Object::pool(&object) else {
        object.shared.debt.fetch_add(1, Ordering::AcqRel);
        return Err(object);
    };
    object.retire_resource(cause);
    object.set_retire(None);
    object.shared.reserved.fetch_add(1, Ordering::AcqRel);
    pool.manager().reservations.lock().push(object);
    Ok(())
}

impl<M: Manager> Deref for Lease<M> {
    type Target = M::Resource;

    fn deref(&self) -> &M::Resource {
        #[allow(clippy::expect_used)]
        // Only reservations lack a resource, and they are never leased.
        self.pooled()
            .resource
            .as_ref()
            .expect("a leased object holds a resource")
    }
}

impl<M: Manager> DerefMut for Lease<M> {
    fn deref_mut(&mut self) -> &mut M::Resource {
        #[allow(clippy::expect_used)]
        // Only reservations lack a resource, and they are never leased.
        self.pooled_mut()
            .resource
            .as_mut()
            .expect("a leased object holds a resource")
    }
}

impl<M: Manager> fmt::Debug for Lease<M>
where
    M::Resource: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("resource", &self.pooled().resource)
            .finish()
    }
}

impl<M: Manager> Lease<M> {
    /// Gives the object to the oldest queued caller that takes it; if none
    /// does, it stays in the lease and goes back to deadpool with it.
    fn hand_over(&mut self) {
        loop {
            let waiter = match self.object.as_ref() {
                Some(object) => object.shared.handoff.pop(),
                None => return,
            };
            let Some(waiter) = waiter else {
                return;
            };
            // Every caller in a pool's queue is a `Waiter` of that pool's `M`.
            let Ok(waiter) = waiter.into_any().downcast::<Waiter<M>>() else {
                continue;
            };
            let Some(object) = self.object.take() else {
                return;
            };
            match waiter.offer(object) {
                Ok(()) => return,
                Err(back) => self.object = Some(back),
            }
        }
    }
}

impl<M: Manager> Drop for Lease<M> {
    fn drop(&mut self) {
        let Some(object) = self.object.as_ref() else {
            return;
        };
        // Borrow the shared state through the object: cloning its `Arc` on
        // every return would make all tasks contend on one reference count.
        let shared = &object.shared;
        let now = shared.now_nanos();
        object.mark_returned(now);
        if object.tracked()
            && let Some((held, location)) = object.release(now)
        {
            tracing::info!(pool = %shared.config.name, held_ms = held.as_millis() as u64,
                %location, "a lease reported as leaked came back");
        }
        if shared.debt.load(Ordering::Relaxed) != 0 || shared.closing.load(Ordering::Relaxed) {
            let Some(object) = self.object.take() else {
                return;
            };
            // The limit went down while this lease was out: keep its permit
            // (or, the pool closing, give the object back to be retired).
            if let Err(object) = keep_as_reservation(object, RetireCause::Shrink) {
                give_back(object);
            }
            return;
        }
        if !shared.keep_ready {
            if shared.deadlines.running() {
                // A health check on every checkout (a zero skip window): the
                // object goes back to deadpool, where a queued caller takes
                // its permit.
                if let Some(object) = self.object.take() {
                    give_back(object);
                }
            }
            // No sweeper: callers wait inside deadpool, whose return hands
            // them the permit, so the field's own drop does it, without
            // moving the object out first.
            return;
        }
        if shared.handoff.len() == 0 {
            // The common case: nobody queues, so the object waits on the
            // ready stack for the next `get`.
            let Some(object) = self.object.take() else {
                return;
            };
            match park(object) {
                Ok(()) => return,
                // The pool closes meanwhile (`drain` waits to hear of it).
                Err(object) if object.shared.closing.load(Ordering::Relaxed) => {
                    give_back(object);
                    return;
                }
                // A caller queued meanwhile.
                Err(object) => self.object = Some(object),
            }
        }
        // Callers queue: the oldest gets the object (it came back just now,
        // so it is inside the health check's skip window).
        self.hand_over();
        // All of them left meanwhile: back to deadpool.
        if let Some(object) = self.object.take() {
            give_back(object);
        }
    }
}

/// Parks `object` on its pool's ready stack (see `ready.rs`); gives it back
/// if the pool is gone or would not take it.
fn park<M: Manager>(object: Object<Adapter<M>>) -> Result<(), Object<Adapter<M>>> {
    let Some(pool) = Object::pool(&object) else {
        return Err(object);
    };
    let adapter = pool.manager();
    adapter.ready.park(object, &adapter.shared)
}

/// Returns `object` (and its permit) to deadpool, then wakes whoever can
/// use the permit.
fn give_back<M: Manager>(object: Object<Adapter<M>>) {
    let shared = std::sync::Arc::clone(&object.shared);
    drop(object);
    shared.permit_freed();
}
