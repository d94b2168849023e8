//! Half-open's probe accounting in one atomic word, so that exactly the
//! permitted number of probes is admitted under any concurrency and their
//! outcomes are counted against the half-open period that admitted them.
//!
//! Layout, high to low: 16-bit epoch tag | admitted | recorded | failures |
//! slow, 12 bits each (hence at most 4095 permitted probes). Every change is
//! a compare-and-swap that first checks the tag, so a probe admitted in an
//! earlier half-open period can neither take nor fill a slot of this one.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

const FIELD: u32 = 12;
const MASK: u64 = (1 << FIELD) - 1;
const SLOW_SHIFT: u32 = 0;
const FAILURES_SHIFT: u32 = FIELD;
const RECORDED_SHIFT: u32 = 2 * FIELD;
const ADMITTED_SHIFT: u32 = 3 * FIELD;
const TAG_SHIFT: u32 = 4 * FIELD;

/// What an admission attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A probe slot is now taken by the caller.
    Admitted,
    /// Every probe slot of this period is taken.
    Full,
    /// The word belongs to another half-open period: the state moved on.
    Stale,
}

/// The probe counts of one half-open period after a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeCounts {
    pub(crate) recorded: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Probes {
    word: CachePadded<AtomicU64>,
}

fn tag(epoch: u64) -> u64 {
    epoch & 0xFFFF
}

fn field(word: u64, shift: u32) -> u64 {
    (word >> shift) & MASK
}

impl Probes {
    /// Starts the half-open period of `epoch` with no probe admitted. Called
    /// under the transition lock, before the state word announces half-open.
    pub(crate) fn reset(&self, epoch: u64) {
        self.word.store(tag(epoch) << TAG_SHIFT, Ordering::Release);
    }

    /// Takes one of `limit` probe slots of `epoch`'s period, if one is free.
    pub(crate) fn admit(&self, epoch: u64, limit: u32) -> Admission {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if current >> TAG_SHIFT != tag(epoch) {
                return Admission::Stale;
            }
            if field(current, ADMITTED_SHIFT) >= u64::from(limit).min(MASK) {
                return Admission::Full;
            }
            match self.word.compare_exchange_weak(
                current,
                current + (1 << ADMITTED_SHIFT),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Admission::Admitted,
                Err(seen) => current = seen,
            }
        }
    }

    /// Gives a probe slot back (the call was ignored or never finished).
    pub(crate) fn release(&self, epoch: u64) {
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                let admitted = field(w, ADMITTED_SHIFT);
                (w >> TAG_SHIFT == tag(epoch) && admitted > field(w, RECORDED_SHIFT))
                    .then(|| w - (1 << ADMITTED_SHIFT))
            });
    }

    /// Counts a probe's outcome in `epoch`'s period; returns the counts after
    /// it, or `None` when the period is over.
    pub(crate) fn record(&self, epoch: u64, failure: bool, slow: bool) -> Option<ProbeCounts> {
        let delta = (1 << RECORDED_SHIFT)
            + (u64::from(failure) << FAILURES_SHIFT)
            + (u64::from(slow) << SLOW_SHIFT);
        let before = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                // Every record holds an admitted slot, so recorded stays
                // below admitted <= 4095 and no field overflows.
                (w >> TAG_SHIFT == tag(epoch)
                    && field(w, RECORDED_SHIFT) < field(w, ADMITTED_SHIFT))
                .then(|| w + delta)
            })
            .ok()?;
        let after = before + delta;
        Some(ProbeCounts {
            recorded: field(after, RECORDED_SHIFT),
            failures: field(after, FAILURES_SHIFT),
            slow: field(after, SLOW_SHIFT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_counts_outcomes() {
        let p = Probes::default();
        p.reset(7);
        assert_eq!(p.admit(7, 2), Admission::Admitted);
        assert_eq!(p.admit(7, 2), Admission::Admitted);
        assert_eq!(p.admit(7, 2), Admission::Full);
        p.release(7);
        assert_eq!(p.admit(7, 2), Admission::Admitted);
        let first = p.record(7, true, false).unwrap();
        assert_eq!((first.recorded, first.failures, first.slow), (1, 1, 0));
        let second = p.record(7, false, true).unwrap();
        assert_eq!((second.recorded, second.failures, second.slow), (2, 1, 1));
        // No slot is outstanding: a third record has no permit behind it.
        assert_eq!(p.record(7, false, false), None);
    }

    #[test]
    fn another_period_is_stale() {
        let p = Probes::default();
        p.reset(1);
        assert_eq!(p.admit(1, 1), Admission::Admitted);
        p.reset(2);
        assert_eq!(p.admit(1, 1), Admission::Stale);
        assert_eq!(p.record(1, false, false), None);
        p.release(1);
        assert_eq!(p.admit(2, 1), Admission::Admitted);
        assert_eq!(p.admit(2, 1), Admission::Full);
    }
}
