//! The count-based window: the outcomes of the last `size` calls in a ring
//! of one-byte atomic slots, with the running totals packed in one atomic.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use super::{Code, Counts};
use crate::padded::CachePadded;

#[derive(Debug)]
pub(crate) struct CountWindow {
    /// How many records ever claimed a slot; `head % size` is the next slot.
    /// On its own cache line: every record writes it.
    head: CachePadded<AtomicU64>,
    /// The packed totals of the slots (see `packed.rs`).
    totals: CachePadded<AtomicU64>,
    slots: Box<[AtomicU8]>,
    size: u64,
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
        }
    }

    /// Records `code` in the next slot, evicting the oldest outcome. Returns
    /// the totals after it, or `None` when they did not change (the evicted
    /// outcome was the same kind, the common case in a healthy steady state:
    /// then no shared word but the head is written).
    #[inline]
    pub(crate) fn record(&self, code: Code) -> Option<Counts> {
        let at = self.head.fetch_add(1, Ordering::Relaxed) % self.size;
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
