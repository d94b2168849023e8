//! The count-based window: the outcomes of the last `size` calls in a ring
//! of one-byte atomic slots, with the running totals packed in one atomic.
//!
//! Positions in the ring are handed out by one shared counter, the head. So
//! that threads do not fight over the head's cache line on every call, each
//! thread claims a small run of consecutive positions at once (one
//! `fetch_add` per run) and fills them itself; the run is remembered in a
//! thread-local cache. From one thread this is exactly "the last `size`
//! calls" (its runs are contiguous). Under concurrency a position claimed but
//! not yet filled still holds the outcome from one lap earlier, so the window
//! is the last `size` calls give or take a few runs; the totals are always
//! exactly the sum of the slots.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use super::{Code, Counts};
use crossbeam_utils::CachePadded;

/// Identifies a window in the thread-local run cache; never reused, so a
/// new window can never pick up a dropped one's run.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The most positions one run holds.
const MAX_RUN: u64 = 64;

/// A run of positions `next..end` claimed by this thread for window `window`.
#[derive(Debug, Clone, Copy)]
struct Run {
    window: u64,
    next: u64,
    end: u64,
}

/// How many windows one thread keeps a run for at a time (direct-mapped by
/// id): a thread alternating between more windows than this only claims
/// runs more often.
const WAYS: usize = 4;

thread_local! {
    static RUNS: [Cell<Run>; WAYS] = const {
        [const { Cell::new(Run { window: 0, next: 0, end: 0 }) }; WAYS]
    };
}

#[derive(Debug)]
pub(crate) struct CountWindow {
    /// How many records ever claimed a slot; `head % size` is the next slot.
    /// On its own cache line: every record writes it.
    head: CachePadded<AtomicU64>,
    /// The packed totals of the slots (see `packed.rs`).
    totals: CachePadded<AtomicU64>,
    slots: Box<[AtomicU8]>,
    size: u64,
    id: u64,
    /// Positions per run: a sixteenth of the window (1 to 64), so the
    /// positions held by runs stay a small part of the window.
    run: u64,
}

impl CountWindow {
    /// A window of `size` slots; `size` is validated to 1..=2^20-1 by the
    /// configuration, and a zero here still makes a usable one-slot window.
    pub(crate) fn new(size: u32) -> Self {
        let size = size.max(1);
        Self {
            head: CachePadded::new(AtomicU64::new(0)),
            totals: CachePadded::new(AtomicU64::new(0)),
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            size: u64::from(size),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            run: (u64::from(size) / 16).clamp(1, MAX_RUN),
        }
    }

    /// The next position for this thread to fill.
    #[inline]
    fn claim(&self) -> u64 {
        if self.run == 1 {
            return self.head.fetch_add(1, Ordering::Relaxed);
        }
        RUNS.try_with(|runs| {
            let Some(cell) = runs.get((self.id % WAYS as u64) as usize) else {
                return self.head.fetch_add(1, Ordering::Relaxed);
            };
            let mut run = cell.get();
            if run.window != self.id || run.next >= run.end {
                let start = self.head.fetch_add(self.run, Ordering::Relaxed);
                run = Run {
                    window: self.id,
                    next: start,
                    end: start + self.run,
                };
            }
            let at = run.next;
            run.next += 1;
            cell.set(run);
            at
        })
        // The thread is exiting and its locals are gone: claim one position.
        .unwrap_or_else(|_| self.head.fetch_add(1, Ordering::Relaxed))
    }

    /// Records `code` in the next slot, evicting the oldest outcome. Returns
    /// the totals after it, or `None` when they did not change (the evicted
    /// outcome was the same kind, the common case in a healthy steady state:
    /// then no shared word is written but the head, once per run).
    #[inline]
    pub(crate) fn record(&self, code: Code) -> Option<Counts> {
        let at = self.claim() % self.size;
        let slot = self.slots.get(usize::try_from(at).ok()?)?;
        // Reading first keeps the slot's cache line shared between cores
        // when nothing changes.
        if slot.load(Ordering::Relaxed) == code.0 {
            return None;
        }
        let old = Code(slot.swap(code.0, Ordering::AcqRel));
        if old == code {
            return None;
        }
        // The swap tells exactly what left the slot, so the totals always
        // equal the sum of the slots once every writer is done.
        let delta = code.packed().wrapping_sub(old.packed());
        let before = self.totals.fetch_add(delta, Ordering::AcqRel);
        Some(Counts::unpack(before.wrapping_add(delta)))
    }

    pub(crate) fn counts(&self) -> Counts {
        Counts::unpack(self.totals.load(Ordering::Acquire))
    }

    /// Empties every slot, taking each one's contribution out of the totals.
    pub(crate) fn clear(&self) {
        for slot in self.slots.iter() {
            let old = Code(slot.swap(Code::EMPTY.0, Ordering::AcqRel));
            if old != Code::EMPTY {
                self.totals.fetch_sub(old.packed(), Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn evicts_the_oldest_and_skips_unchanged_totals() {
        let w = CountWindow::new(2);
        let ok = Code::new(false, false);
        let bad = Code::new(true, false);
        assert_eq!(w.record(bad).map(|c| c.failures), Some(1));
        assert_eq!(w.record(ok).map(|c| (c.calls, c.failures)), Some((2, 1)));
        // Slot 0 held a failure: evicting it changes the totals.
        assert_eq!(w.record(ok).map(|c| (c.calls, c.failures)), Some((2, 0)));
        // Slot 1 held a success: nothing changes.
        assert_eq!(w.record(ok), None);
        w.clear();
        assert_eq!(w.counts(), Counts::default());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Against a plain vector of the last `size` outcomes.
        #[test]
        fn matches_a_vector_of_the_last_n(
            size in 1u32..20,
            outcomes in proptest::collection::vec((any::<bool>(), any::<bool>()), 0..100),
        ) {
            let w = CountWindow::new(size);
            let mut model: Vec<(bool, bool)> = Vec::new();
            for (failure, slow) in outcomes {
                w.record(Code::new(failure, slow));
                model.push((failure, slow));
                let start = model.len().saturating_sub(size as usize);
                let last = &model[start..];
                let expected = Counts {
                    calls: last.len() as u64,
                    failures: last.iter().filter(|o| o.0).count() as u64,
                    slow: last.iter().filter(|o| o.1).count() as u64,
                };
                prop_assert_eq!(w.counts(), expected);
            }
        }
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;

    #[test]
    fn one_thread_fills_runs_in_order_across_interleaved_windows() {
        // Runs of 4 (64 / 16); three windows used in turn by one thread must
        // each still see exactly their last 64 calls.
        let windows: Vec<CountWindow> = (0..3).map(|_| CountWindow::new(64)).collect();
        for i in 0..1_000u32 {
            for (w, window) in windows.iter().enumerate() {
                let failure = (i as usize + w).is_multiple_of(3);
                window.record(Code::new(failure, false));
            }
        }
        for (w, window) in windows.iter().enumerate() {
            let expected = (1_000 - 64..1_000u32)
                .filter(|i| (*i as usize + w).is_multiple_of(3))
                .count() as u64;
            assert_eq!(window.counts().calls, 64);
            assert_eq!(window.counts().failures, expected, "window {w}");
        }
    }
}
