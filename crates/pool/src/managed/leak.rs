//! Leak detection: each object carries a stamp of when and where it was last
//! checked out; the maintenance pass reports stamps older than the threshold.

use std::panic::Location;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// When and where an object was checked out, if it is.
#[derive(Default)]
pub(crate) struct LeaseStamp {
    state: Mutex<StampState>,
}

#[derive(Default)]
struct StampState {
    since: Option<Instant>,
    location: Option<&'static Location<'static>>,
    reported: bool,
}

impl LeaseStamp {
    pub(crate) fn checkout(&self, now: Instant, location: &'static Location<'static>) {
        let mut state = self.state.lock();
        state.since = Some(now);
        state.location = Some(location);
        state.reported = false;
    }

    /// Clears the stamp; returns how long a lease that was reported as a
    /// leak was held, so the return can be logged too.
    pub(crate) fn release(&self, now: Instant) -> Option<(Duration, &'static Location<'static>)> {
        let mut state = self.state.lock();
        let since = state.since.take();
        let location = state.location.take();
        if std::mem::take(&mut state.reported) {
            let held = since.map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
            return location.map(|l| (held, l));
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
    pub(crate) fn register(&self) -> Arc<LeaseStamp> {
        let stamp = Arc::new(LeaseStamp::default());
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
            let mut state = stamp.state.lock();
            if let (Some(since), Some(location)) = (state.since, state.location)
                && !state.reported
            {
                let held = now.saturating_duration_since(since);
                if held >= threshold {
                    state.reported = true;
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
        let stamp = registry.register();
        let t0 = Instant::now();
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
