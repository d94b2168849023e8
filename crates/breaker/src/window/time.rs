//! The time-based window: one bucket per second for the last `seconds`
//! seconds, with running totals in atomics.
//!
//! Recording adds to the current second's bucket and to the totals, lock-free.
//! When the clock enters a new second, one caller takes a lock to retire the
//! buckets that left the window (subtracting them from the totals) before
//! anyone writes into the reused bucket: at most once per second per breaker.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::{Code, Counts};
use crossbeam_utils::CachePadded;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Failures in the low 32 bits, slow calls in the high 32, both signed (see
/// `packed.rs` for why signed fields make wrapping sums exact).
const ONE_FAILURE: i64 = 1;
const ONE_SLOW: i64 = 1 << 32;

#[derive(Debug, Default)]
struct Bucket {
    calls: AtomicI64,
    bad: AtomicI64,
}

#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
    calls: CachePadded<AtomicI64>,
    bad: CachePadded<AtomicI64>,
    /// The latest second whose bucket has been retired for reuse; buckets of
    /// seconds up to this one may be written.
    rolled_to: AtomicU64,
    roll: Mutex<()>,
    seconds: u64,
}

impl TimeWindow {
    /// A window of `seconds` one-second buckets (validated to 1..=3600 by
    /// the configuration; 0 is treated as 1).
    pub(crate) fn new(seconds: u64) -> Self {
        let seconds = seconds.max(1);
        Self {
            buckets: (0..seconds).map(|_| Bucket::default()).collect(),
            calls: CachePadded::new(AtomicI64::new(0)),
            bad: CachePadded::new(AtomicI64::new(0)),
            rolled_to: AtomicU64::new(0),
            roll: Mutex::new(()),
            seconds,
        }
    }

    #[inline]
    pub(crate) fn record(&self, code: Code, now: u64) -> Option<Counts> {
        let sec = now / NANOS_PER_SEC;
        self.roll(sec);
        if sec.saturating_add(self.seconds) <= self.rolled_to.load(Ordering::Acquire) {
            // The call finished longer ago than the window reaches (a clock
            // reading taken before a long stall): it no longer counts.
            return None;
        }
        let bad = if code.is_failure() { ONE_FAILURE } else { 0 }
            + if code.is_slow() { ONE_SLOW } else { 0 };
        let bucket = self.bucket(sec)?;
        bucket.calls.fetch_add(1, Ordering::AcqRel);
        bucket.bad.fetch_add(bad, Ordering::AcqRel);
        let calls = self.calls.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        let bad = self.bad.fetch_add(bad, Ordering::AcqRel).wrapping_add(bad);
        Some(decode(calls, bad))
    }

    pub(crate) fn counts(&self, now: u64) -> Counts {
        self.roll(now / NANOS_PER_SEC);
        decode(
            self.calls.load(Ordering::Acquire),
            self.bad.load(Ordering::Acquire),
        )
    }

    pub(crate) fn clear(&self, now: u64) {
        let sec = now / NANOS_PER_SEC;
        let _guard = self
            .roll
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for bucket in self.buckets.iter() {
            self.retire(bucket);
        }
        self.rolled_to.fetch_max(sec, Ordering::AcqRel);
    }

    /// Retires the buckets of seconds that left the window by `sec`.
    #[inline]
    fn roll(&self, sec: u64) {
        if self.rolled_to.load(Ordering::Acquire) >= sec {
            return;
        }
        // Only the lock's holder touches buckets being retired; a poisoned
        // lock guards no data of its own, so its guard is still good.
        let _guard = self
            .roll
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let from = self.rolled_to.load(Ordering::Acquire);
        if from >= sec {
            return;
        }
        // The buckets about to be reused for seconds from+1..=sec; at most
        // one full turn of the ring.
        let first = from
            .saturating_add(1)
            .max(sec.saturating_sub(self.seconds - 1));
        for s in first..=sec {
            if let Some(bucket) = self.bucket(s) {
                self.retire(bucket);
            }
        }
        self.rolled_to.store(sec, Ordering::Release);
    }

    fn retire(&self, bucket: &Bucket) {
        let calls = bucket.calls.swap(0, Ordering::AcqRel);
        let bad = bucket.bad.swap(0, Ordering::AcqRel);
        self.calls.fetch_sub(calls, Ordering::AcqRel);
        self.bad.fetch_sub(bad, Ordering::AcqRel);
    }

    fn bucket(&self, sec: u64) -> Option<&Bucket> {
        self.buckets.get(usize::try_from(sec % self.seconds).ok()?)
    }
}

fn decode(calls: i64, bad: i64) -> Counts {
    let bits = bad as u64;
    let failures = i64::from(bits as u32 as i32);
    let slow = i64::from((bits.wrapping_sub(failures as u64) >> 32) as u32 as i32);
    Counts::from_signed(calls, failures, slow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = NANOS_PER_SEC;

    #[test]
    fn buckets_leave_the_window_after_its_length() {
        let w = TimeWindow::new(3);
        w.record(Code::new(true, false), 0);
        w.record(Code::new(false, true), SEC + 5);
        assert_eq!(
            w.counts(2 * SEC),
            Counts {
                calls: 2,
                failures: 1,
                slow: 1
            }
        );
        // At second 3 the window is seconds 1..=3: the failure at 0 is gone.
        assert_eq!(
            w.counts(3 * SEC),
            Counts {
                calls: 1,
                failures: 0,
                slow: 1
            }
        );
        assert_eq!(w.counts(100 * SEC), Counts::default());
    }

    #[test]
    fn decode_handles_negative_fields() {
        assert_eq!(
            decode(3, -ONE_FAILURE + 2 * ONE_SLOW),
            Counts {
                calls: 3,
                failures: 0,
                slow: 2
            }
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Against a plain list of (second, outcome), filtered by time.
        #[test]
        fn matches_a_list_filtered_by_second(
            seconds in 1u64..6,
            steps in proptest::collection::vec((0u64..2_500_000_000, any::<bool>(), any::<bool>()), 0..60),
        ) {
            let w = TimeWindow::new(seconds);
            let mut model: Vec<(u64, bool, bool)> = Vec::new();
            let mut now = 0u64;
            for (advance, failure, slow) in steps {
                now += advance;
                let got = w.record(Code::new(failure, slow), now);
                model.push((now / SEC, failure, slow));
                let sec = now / SEC;
                let live: Vec<_> = model.iter().filter(|m| m.0 + seconds > sec).collect();
                let expected = Counts {
                    calls: live.len() as u64,
                    failures: live.iter().filter(|m| m.1).count() as u64,
                    slow: live.iter().filter(|m| m.2).count() as u64,
                };
                prop_assert_eq!(got, Some(expected));
                prop_assert_eq!(w.counts(now), expected);
            }
        }
    }
}
