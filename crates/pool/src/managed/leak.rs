//! Leak detection: each object carries a stamp of when and where it was last
//! checked out; the maintenance pass reports stamps older than the threshold.

use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// When and where an object was checked out, if it is.
///
/// Atomics for the time and the reported flag, so a return takes no lock,
/// and a checkout takes one only when its location differs from the last
/// (a `&Location` cannot be stored in an atomic without `unsafe`). A
/// scan that races with a return and a new checkout may pair one
/// checkout's time with the next one's location; leak reports are
/// diagnostics, and a lease is still reported at most once per checkout.
pub(crate) struct LeaseStamp {
    /// The clock reading times are measured from (the object's creation).
    origin: Instant,
    /// Nanoseconds from `origin` to the checkout, plus one; 0 when idle.
    since: AtomicU64,
    /// Where the last checkout happened (kept after the return).
    location: Mutex<Option<&'static Location<'static>>>,
    /// `location`'s address, compared (never dereferenced) so a checkout
    /// from the same place as the last one takes no lock.
    location_addr: AtomicUsize,
    reported: AtomicBool,
}

impl LeaseStamp {
    fn new(origin: Instant) -> LeaseStamp {
        LeaseStamp {
            origin,
            since: AtomicU64::new(0),
            location: Mutex::new(None),
            location_addr: AtomicUsize::new(0),
            reported: AtomicBool::new(false),
        }
    }

    fn encode(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos)
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn decode(&self, since: u64) -> Option<Instant> {
        let nanos = since.checked_sub(1)?;
        self.origin.checked_add(Duration::from_nanos(nanos))
    }

    fn location(&self) -> Option<&'static Location<'static>> {
        *self.location.lock()
    }

    pub(crate) fn checkout(&self, now: Instant, location: &'static Location<'static>) {
        let addr = std::ptr::from_ref(location).addr();
        if self.location_addr.load(Ordering::Relaxed) != addr {
            *self.location.lock() = Some(location);
            self.location_addr.store(addr, Ordering::Relaxed);
        }
        self.reported.store(false, Ordering::Relaxed);
        self.since.store(self.encode(now), Ordering::Release);
    }

    /// Clears the stamp; returns how long a lease that was reported as a
    /// leak was held, so the return can be logged too.
    pub(crate) fn release(&self, now: Instant) -> Option<(Duration, &'static Location<'static>)> {
        let since = self.since.swap(0, Ordering::AcqRel);
        if self.reported.swap(false, Ordering::AcqRel) {
            let held = self
                .decode(since)
                .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
            return self.location().map(|l| (held, l));
        }
        None
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
    stamps: Mutex<Vec<Weak<LeaseStamp>>>,
}

impl LeakRegistry {
    /// A stamp for a new object; `now` is its creation time.
    pub(crate) fn register(&self, now: Instant) -> Arc<LeaseStamp> {
        let stamp = Arc::new(LeaseStamp::new(now));
        self.stamps.lock().push(Arc::downgrade(&stamp));
        stamp
    }

    /// Leases held at least `threshold` and not reported yet; marks them reported.
    pub(crate) fn scan(&self, now: Instant, threshold: Duration) -> Vec<Leak> {
        let mut found = Vec::new();
        let mut stamps = self.stamps.lock();
        stamps.retain(|weak| {
            let Some(stamp) = weak.upgrade() else {
                return false;
            };
            let since = stamp.decode(stamp.since.load(Ordering::Acquire));
            if let Some(since) = since {
                let held = now.saturating_duration_since(since);
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

    #[test]
    fn a_lease_is_reported_once_and_its_return_is_noticed() {
        let registry = LeakRegistry::default();
        let t0 = Instant::now();
        let stamp = registry.register(t0);
        stamp.checkout(t0, Location::caller());
        assert!(
            registry
                .scan(t0 + Duration::from_secs(1), Duration::from_secs(2))
                .is_empty()
        );
        let leaks = registry.scan(t0 + Duration::from_secs(3), Duration::from_secs(2));
        assert_eq!(leaks.len(), 1);
        assert_eq!(leaks[0].held, Duration::from_secs(3));
        assert_eq!(leaks[0].location.file(), file!());
        assert!(
            registry
                .scan(t0 + Duration::from_secs(9), Duration::from_secs(2))
                .is_empty()
        );
        let returned = stamp.release(t0 + Duration::from_secs(10));
        assert_eq!(returned.map(|r| r.0), Some(Duration::from_secs(10)));
        drop(stamp);
        assert!(registry.scan(t0, Duration::ZERO).is_empty());
        assert!(registry.stamps.lock().is_empty());
    }
}
