//! The admission queue of [`ConcurrencyLimit`](crate::ConcurrencyLimit):
//! who gets a freed slot. First come, first served while the queue is
//! short; newest first (adaptive LIFO, Facebook's "Fail at Scale") once the
//! oldest waiter has waited longer than the queue delay target.
//!
//! Why: with a bounded wait and first-come order, the waiter that gets a
//! freed slot under sustained overload is the one that has waited longest,
//! so the calls that succeed are those that waited almost the whole bound
//! (a p99 of the bound plus the call). Newest first serves the callers
//! that have barely waited and lets the old ones run out their bound: the
//! same throughput, the same number refused, and the refused are the ones
//! whose answer was already late.
//!
//! A waiter that gives up stays in the queue, marked gone, until it reaches
//! an end (each entry is pushed and popped once, so the upkeep is constant
//! per caller); the front is trimmed of gone entries on every pop, and
//! every entry is gone within the longest wait.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;

/// Still waiting.
const WAITING: u8 = 0;
/// A slot was handed over: the in-flight count already includes it.
const GRANTED: u8 = 1;
/// Gave up (its wait ran out, or it took a slot by itself).
const GONE: u8 = 2;

/// One caller waiting for a slot.
#[derive(Debug)]
pub(crate) struct Waiter {
    /// When it arrived, on the limit's clock.
    arrived: u64,
    state: AtomicU8,
    /// Woken once, when a slot is handed over.
    pub(crate) granted: Notify,
}

impl Waiter {
    pub(crate) fn new(arrived: u64) -> Arc<Waiter> {
        Arc::new(Waiter {
            arrived,
            state: AtomicU8::new(WAITING),
            granted: Notify::new(),
        })
    }

    /// Gives up waiting. False when a slot was handed over first: the
    /// caller then holds it.
    pub(crate) fn give_up(&self) -> bool {
        self.state
            .compare_exchange(WAITING, GONE, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    fn grant(&self) -> bool {
        self.state
            .compare_exchange(WAITING, GRANTED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    fn waiting(&self) -> bool {
        self.state.load(Ordering::SeqCst) == WAITING
    }
}

/// The waiters in arrival order (gone ones included until trimmed).
#[derive(Debug, Default)]
pub(crate) struct Queue {
    entries: VecDeque<Arc<Waiter>>,
}

impl Queue {
    pub(crate) fn push(&mut self, waiter: Arc<Waiter>) {
        self.entries.push_back(waiter);
    }

    /// Hands a slot to the waiter whose turn it is at `now`: the oldest
    /// while it has waited at most `target` nanoseconds, else the newest.
    /// `None` when nobody is waiting.
    pub(crate) fn grant(&mut self, now: u64, target: u64) -> Option<Arc<Waiter>> {
        loop {
            while self.entries.front().is_some_and(|w| !w.waiting()) {
                self.entries.pop_front();
            }
            let oldest = self.entries.front()?;
            let fifo = now.saturating_sub(oldest.arrived) <= target;
            let next = if fifo {
                self.entries.pop_front()
            } else {
                self.entries.pop_back()
            };
            // A waiter may give up between the look and the grant: then
            // the next one's turn.
            if let Some(w) = next
                && w.grant()
            {
                return Some(w);
            }
        }
    }

    /// Entries held, gone ones included.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_come_while_short_newest_first_once_standing() {
        let mut q = Queue::default();
        let (a, b, c) = (Waiter::new(0), Waiter::new(1), Waiter::new(2));
        for w in [&a, &b, &c] {
            q.push(Arc::clone(w));
        }
        // At 4 the oldest has waited 4 <= 5: first come.
        assert!(Arc::ptr_eq(&q.grant(4, 5).unwrap(), &a));
        // At 10 the oldest (b) has waited 9 > 5: newest first.
        assert!(Arc::ptr_eq(&q.grant(10, 5).unwrap(), &c));
        // b gives up: nobody is left, and the gone entry is dropped.
        assert!(b.give_up());
        assert!(q.grant(11, 5).is_none());
        assert_eq!(q.len(), 0);
        // A granted waiter cannot give up: it holds the slot.
        assert!(!a.give_up());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Arrive,
        GiveUp(usize),
        Grant,
        Tick(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Arrive),
            2 => (0usize..64).prop_map(Op::GiveUp),
            3 => Just(Op::Grant),
            2 => (0u64..8).prop_map(Op::Tick),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Against a model (a plain list of the live waiters in arrival
        /// order): a grant goes to the oldest live waiter while it has
        /// waited at most the target, else to the newest; gone waiters are
        /// never granted; each waiter is granted at most once; the queue
        /// holds no more entries than arrivals not yet popped.
        #[test]
        fn grants_follow_the_model(ops in proptest::collection::vec(op(), 1..200)) {
            const TARGET: u64 = 5;
            let mut q = Queue::default();
            let mut all: Vec<Arc<Waiter>> = Vec::new();
            let mut live: Vec<usize> = Vec::new();
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Arrive => {
                        let w = Waiter::new(now);
                        q.push(Arc::clone(&w));
                        live.push(all.len());
                        all.push(w);
                    }
                    Op::GiveUp(i) => {
                        if let Some(i) = (!all.is_empty()).then(|| i % all.len()) {
                            let was_live = live.contains(&i);
                            prop_assert_eq!(all[i].give_up(), was_live);
                            live.retain(|&l| l != i);
                        }
                    }
                    Op::Grant => {
                        let expected = live.first().map(|&oldest| {
                            if now - all[oldest].arrived <= TARGET { oldest } else { *live.last().unwrap() }
                        });
                        let got = q.grant(now, TARGET)
                            .map(|w| all.iter().position(|a| Arc::ptr_eq(a, &w)).unwrap());
                        prop_assert_eq!(got, expected);
                        if let Some(g) = got {
                            live.retain(|&l| l != g);
                            prop_assert!(!all[g].give_up(), "a granted waiter gave up");
                        }
                    }
                    Op::Tick(t) => now += t,
                }
                prop_assert!(q.len() <= all.len());
            }
        }
    }
}
