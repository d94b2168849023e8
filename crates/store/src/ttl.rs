//! Expiry by date: [`WallClock`], the calendar time on an injectable
//! [`Clock`], and the TTL-index rule both the embedded store and the prompt
//! cache apply (when a document's date plus `expireAfterSeconds` has passed).

use std::sync::Arc;
use std::time::Duration;

use bson::{Bson, DateTime, Document};
use stratum_core::clock::{Clock, SharedClock, SystemClock};

use crate::IndexSpec;

/// Calendar time (a BSON [`DateTime`]) read from a monotonic [`Clock`]: the
/// date it was anchored at plus how far the clock has moved since.
///
/// Expiry compares stored dates with "now"; reading now through a `Clock`
/// lets a test move it with a `ManualClock` instead of sleeping. Clones
/// share the clock and the anchor.
///
/// ```
/// use std::time::Duration;
/// use stratum_core::clock::ManualClock;
/// use stratum_store::WallClock;
/// use stratum_store::bson::DateTime;
///
/// let manual = ManualClock::new();
/// let start = DateTime::from_millis(1_700_000_000_000);
/// let wall = WallClock::starting_at(manual.clone(), start);
/// manual.advance(Duration::from_secs(90));
/// assert_eq!(wall.now().timestamp_millis(), 1_700_000_090_000);
/// ```
#[derive(Clone, Debug)]
pub struct WallClock {
    clock: SharedClock,
    anchor_ms: i64,
    anchor_nanos: u64,
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock::system()
    }
}

impl WallClock {
    /// The system's time ([`SystemClock`], anchored at [`DateTime::now`]).
    pub fn system() -> WallClock {
        WallClock::new(SystemClock::new())
    }

    /// `clock`, anchored at the real date now.
    pub fn new(clock: impl Clock) -> WallClock {
        WallClock::starting_at(clock, DateTime::now())
    }

    /// `clock`, reading `at` at its current reading: fully deterministic
    /// under a `ManualClock`.
    pub fn starting_at(clock: impl Clock, at: DateTime) -> WallClock {
        let clock: SharedClock = Arc::new(clock);
        let anchor_nanos = clock.now_nanos();
        WallClock {
            clock,
            anchor_ms: at.timestamp_millis(),
            anchor_nanos,
        }
    }

    /// The date now: the anchor plus the clock's advance since (whole
    /// milliseconds, the unit of a BSON date; saturating).
    pub fn now(&self) -> DateTime {
        let moved = self.clock.now_nanos().saturating_sub(self.anchor_nanos) / 1_000_000;
        let moved = i64::try_from(moved).unwrap_or(i64::MAX);
        DateTime::from_millis(self.anchor_ms.saturating_add(moved))
    }
}

/// When `doc` expires under the TTL index `index`, in milliseconds since
/// the epoch, with MongoDB's rule: the date in the index's field plus
/// `expireAfterSeconds`; for an array, its earliest date; `None` when the
/// field holds no date (such a document never expires) or the index has no TTL.
pub(crate) fn expiry_millis(index: &IndexSpec, doc: &Document) -> Option<i64> {
    let after = index.expire_after?;
    let (field, _) = index.keys.first()?;
    let date = match doc.get(field.as_ref())? {
        Bson::DateTime(at) => at.timestamp_millis(),
        Bson::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                Bson::DateTime(at) => Some(at.timestamp_millis()),
                _ => None,
            })
            .min()?,
        _ => return None,
    };
    Some(date.saturating_add(after_millis(after)))
}

fn after_millis(after: Duration) -> i64 {
    i64::try_from(after.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use bson::doc;
    use stratum_core::clock::ManualClock;

    use super::*;

    #[test]
    fn the_earliest_date_of_an_array_counts_and_non_dates_never_expire() {
        let index = IndexSpec::ttl("t", "at", Duration::from_secs(10));
        let at = |ms| Bson::DateTime(DateTime::from_millis(ms));
        assert_eq!(
            expiry_millis(&index, &doc! { "at": at(1_000) }),
            Some(11_000)
        );
        assert_eq!(
            expiry_millis(&index, &doc! { "at": [at(5_000), "x", at(2_000)] }),
            Some(12_000)
        );
        assert_eq!(expiry_millis(&index, &doc! { "at": "2024-01-01" }), None);
        assert_eq!(expiry_millis(&index, &doc! { "other": at(1) }), None);
        let plain = IndexSpec::ascending("p", ["at"]);
        assert_eq!(expiry_millis(&plain, &doc! { "at": at(1) }), None);
    }

    #[test]
    fn the_wall_clock_follows_its_clock() {
        let manual = ManualClock::new();
        manual.advance(Duration::from_secs(5));
        let wall = WallClock::starting_at(manual.clone(), DateTime::from_millis(1_000));
        assert_eq!(wall.now().timestamp_millis(), 1_000);
        manual.advance(Duration::from_millis(2_500));
        assert_eq!(wall.now().timestamp_millis(), 3_500);
    }
}
