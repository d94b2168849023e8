//! The sliding windows of the closed state and their running totals.
//!
//! Both windows keep running totals in atomics, so reading them is O(1), and
//! both record without a lock: a count-based record is one `fetch_add` on the
//! head plus, only when the evicted outcome differs from the new one, a swap
//! of the slot and one `fetch_add` on the packed totals. The time-based window
//! takes a lock once per second to retire the buckets that left the window.

mod count;
mod packed;
mod time;

pub(crate) use count::CountWindow;
pub(crate) use packed::{Code, Counts};
pub(crate) use time::TimeWindow;

/// The window a breaker was configured with.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// Whether recording needs the current time (only the time-based one).
    pub(crate) fn needs_time(&self) -> bool {
        matches!(self, Window::Time(_))
    }

    /// Records one outcome at `now` (nanoseconds; ignored by the count-based
    /// window). Returns the totals after it when they changed.
    #[inline]
    pub(crate) fn record(&self, code: Code, now: u64) -> Option<Counts> {
        match self {
            Window::Count(w) => w.record(code),
            Window::Time(w) => w.record(code, now),
        }
    }

    /// The current totals (retiring stale buckets first).
    pub(crate) fn counts(&self, now: u64) -> Counts {
        match self {
            Window::Count(w) => w.counts(),
            Window::Time(w) => w.counts(now),
        }
    }

    /// Empties the window.
    pub(crate) fn clear(&self, now: u64) {
        match self {
            Window::Count(w) => w.clear(),
            Window::Time(w) => w.clear(now),
        }
    }
}
