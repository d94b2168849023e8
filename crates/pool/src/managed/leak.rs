//! Leak detection: each object carries a stamp of when and where it was last
//! checked out; the maintenance pass reports stamps older than the threshold.

use std::panic::Location;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::object::Meta;

// The stamp lives in the object's bookkeeping ([`Meta`]), on the cache line
// a checkout and a return write anyway: atomics for the time and the
// reported flag, so a return takes no lock, and a checkout takes one only
// when its location differs from the last (a `&Location` cannot be stored
// in an atomic without `unsafe`). A scan that races with a return and a new
// checkout may pair one checkout's time with the next one's location; leak
// reports are diagnostics, and a lease is still reported at most once per
// checkout.
impl Meta {
    fn location(&self) -> Option<&'static Location<'static>> {
        *self.location.lock()
    }

    /// Stamps a checkout from `location`, at the time the checkout was
    /// prepared (see [`Meta::prepared`]).
    #[inline]
    pub(crate) fn checkout(&self, location: &'static Location<'static>) {
        let addr = std::ptr::from_ref(location).addr();
        if self.location_addr.load(Ordering::Relaxed) != addr {
            *self.location.lock() = Some(location);
            self.location_addr.store(addr, Ordering::Relaxed);
        }
        self.reported.store(false, Ordering::Relaxed);
        let (at, _) = self.prepared();
        self.leased_since
            .store(at.saturating_add(1), Ordering::Release);
    }

    /// Clears the stamp; returns how long a lease that was reported as a
    /// leak was held, so the return can be logged too.
    #[inline]
    pub(crate) fn release(&self, now: u64) -> Option<(Duration, &'static Location<'static>)> {
        // Plain load and store on the common path: a reported lease is
        // rare, and a locked swap on every return cost about 2 % of the
        // 64-task cycle. A lease reported while it comes back may miss its
        // "came back" log line; the report itself stands.
        if self.reported.load(Ordering::Acquire) && self.reported.swap(false, Ordering::AcqRel) {
            let since = self.leased_since.swap(0, Ordering::AcqRel);
            let held = self.leased_at(since).map_or(Duration::ZERO, |s| {
                Duration::from_nanos(now.saturating_sub(s))
            });
            return self.location().map(|l| (held, l));
        }
        self.leased_since.store(0, Ordering::Release);
        None
    }

    /// When the lease stamped `since` was taken; `None` while idle.
    #[inline]
    fn leased_at(&self, since: u64) -> Option<u64> {
        since.checked_sub(1)
    }
}

/// A leak found by a scan.
pub(crate) struct Leak {
    pub(crate) held: Duration,
    pub(crate) location: &'static Location<'static>,
}

/// Every live object's stamp, held weakly: an object's stamp goes away with it.
#[derive(Default)]
pub(crate) struct LeakRegistry {
    stamps: Mutex<Vec<Weak<Meta>>>,
}

impl LeakRegistry {
    /// Tracks a new object.
    pub(crate) fn register(&self, meta: &Arc<Meta>) {
        self.stamps.lock().push(Arc::downgrade(meta));
    }

    /// Leases held at least `threshold` and not reported yet; marks them reported.
    /// `now` in nanoseconds from the pool's origin.
    pub(crate) fn scan(&self, now: u64, threshold: Duration) -> Vec<Leak> {
        let mut found = Vec::new();
        let mut stamps = self.stamps.lock();
        stamps.retain(|weak| {
            let Some(stamp) = weak.upgrade() else {
                return false;
            };
            let since = stamp.leased_at(stamp.leased_since.load(Ordering::Acquire));
            if let Some(since) = since {
                let held = Duration::from_nanos(now.saturating_sub(since));
                if held >= threshold
                    && let Some(location) = stamp.location()
                    && !stamp.reported.swap(true, Ordering::AcqRel)
                {
                    found.push(Leak { held, location });
                }
            }
            true
        });
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clock, ManagedPool, Manager, ManualClock};

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;

    struct Unit;
    impl Manager for Unit {
        type Resource = ();
        type Error = Never;
        async fn create(&self) -> Result<(), Never> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_lease_is_reported_once_and_its_return_is_noticed() {
        let clock = ManualClock::new();
        let pool = ManagedPool::builder(Unit)
            .clock(clock.clone())
            .background(false)
            .min_size(0)
            .max_size(1)
            .leak_detection_threshold(Some(Duration::from_secs(2)))
            .build()
            .unwrap();
        let shared = &pool.inner.shared;
        let registry = &shared.leaks;
        let t0 = clock.now();
        let at = |secs| stratum_core::clock::duration_nanos(t0 + Duration::from_secs(secs));
        let lease = pool.get().await.unwrap();
        assert!(registry.scan(at(1), Duration::from_secs(2)).is_empty());
        let leaks = registry.scan(at(3), Duration::from_secs(2));
        assert_eq!(leaks.len(), 1);
        assert_eq!(leaks[0].held, Duration::from_secs(3));
        assert_eq!(leaks[0].location.file(), file!());
        assert!(registry.scan(at(9), Duration::from_secs(2)).is_empty());
        let returned = lease.meta().release(at(10));
        assert_eq!(returned.map(|r| r.0), Some(Duration::from_secs(10)));
        // Released: not a lease any more, and not reported again.
        assert!(lease.meta().release(at(0)).is_none());
        assert!(registry.scan(at(0), Duration::ZERO).is_empty());
        lease.discard();
        assert!(registry.scan(at(0), Duration::ZERO).is_empty());
        assert!(registry.stamps.lock().is_empty());
    }
}
