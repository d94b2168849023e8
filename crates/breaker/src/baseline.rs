//! The slow-call threshold: fixed, or adaptive (a multiple of a slow-moving
//! baseline of the p99 of healthy calls, kept in a log-bucketed histogram of
//! atomics and re-estimated once per `min_samples` healthy calls).
//!
//! Hot path: every record reads the threshold (one relaxed load); a healthy
//! closed-state success adds itself to one bucket and to the sample count
//! of its thread's shard (two plain loads and stores on lines other threads
//! rarely write: no lock, no locked instruction). A lock is taken only by the one call that
//! completes a round, to drain the shards and re-estimate.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::duration_nanos;
use crate::config::AdaptiveSlowCall;
use crossbeam_utils::CachePadded;

/// Sub-buckets per power of two: 2^3 = 8, so a bucket is at most 1/8 of its
/// lower edge wide and a quantile read from it is at most 12.5 % high.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Durations of 2^41 ns (about 37 minutes) and more share the last bucket.
const MAX_EXP: u32 = 40;
/// Exact buckets for 0..16 ns, then 8 per power of two up to 2^41 ns.
pub(crate) const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 2) as usize) * SUB as usize;

/// The quantile the baseline follows.
pub(crate) const QUANTILE: f64 = 0.99;

/// The weight of a new round's p99 in the baseline, after the first round
/// (which sets it outright).
///
/// Why 1/4, and why only calls at or under the threshold are learned, with
/// the defaults (multiple 3, 200 healthy calls a round, a window of 100
/// calls): a degradation beyond the multiple (say 5x) makes every call slow,
/// so none of them is learned, the baseline does not move at all, and the
/// breaker opens as soon as the window is full of them (100 calls). A
/// degradation within the multiple (say 2x) is not "slow" by definition; it
/// is learned, but slowly: the baseline moves a quarter of the way per round
/// (1.25x after 200 calls, 1.44x after 400, 90 % of the way after 8 rounds,
/// 1,600 calls), so a service that creeps 2x and then jumps another 2.5x
/// within a few hundred calls is still judged against roughly its old
/// baseline. Falling latency is followed at the same pace.
const WEIGHT: f64 = 0.25;

/// A change of the threshold is logged when it moves by this fraction or
/// more since the last logged value.
const MATERIAL: f64 = 0.10;

/// The bucket of a duration in nanoseconds.
#[inline]
pub(crate) fn bucket(nanos: u64) -> usize {
    if nanos < SUB {
        return nanos as usize;
    }
    let exp = 63 - nanos.leading_zeros();
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (nanos >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as usize) * SUB as usize + sub as usize
}

/// The exclusive upper edge of bucket `index`, in nanoseconds.
pub(crate) fn upper_edge(index: usize) -> u64 {
    let index = index.min(BUCKETS - 1) as u64;
    if index < 2 * SUB {
        return index + 1;
    }
    let exp = (index / SUB) as u32 + SUB_BITS - 1;
    let sub = index % SUB;
    (SUB + sub + 1) << (exp - SUB_BITS)
}

/// The `q` quantile (nearest rank) of the durations counted in `counts`,
/// read as the upper edge of the bucket that holds it: never below the exact
/// quantile of the same samples, and at most 1/8 (or 1 ns) above it.
/// `None` when `counts` is empty.
pub(crate) fn quantile(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // Nearest rank: the smallest rank r with r >= q * total, at least 1.
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (index, count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(upper_edge(index));
        }
    }
    None
}

/// A histogram of durations in atomic buckets.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one duration with a plain load and store, not a locked
    /// read-modify-write (about 1 ns against 5 on x86): a shard is written
    /// by its own thread, so an increment is lost only when two threads
    /// share a shard and hit the same bucket in the same nanosecond, and a
    /// count is kept twice only when a round drains it in the same instant.
    /// An estimator of a p99 over hundreds of calls does not notice either.
    #[inline]
    pub(crate) fn record(&self, nanos: u64) {
        if let Some(b) = self.buckets.get(bucket(nanos)) {
            b.store(b.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// Adds every count to `into` (same length), emptying the histogram;
    /// returns how many there were. Reads before swapping, so the empty
    /// buckets (nearly all) cost a load, not a write.
    pub(crate) fn drain_into(&self, into: &mut [u64]) -> u64 {
        let mut total = 0;
        for (slot, bucket) in into.iter_mut().zip(self.buckets.iter()) {
            if bucket.load(Ordering::Relaxed) != 0 {
                let n = bucket.swap(0, Ordering::Relaxed);
                *slot += n;
                total += n;
            }
        }
        total
    }
}

/// How many histograms the healthy calls are spread over, by thread, so two
/// threads recording the same latency do not write the same cache line.
const SHARDS: usize = 4;

/// The shard of the current thread: threads take shards in turn.
fn shard_index() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static SHARD: usize = (NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS as u64) as usize;
    }
    SHARD.try_with(|s| *s).unwrap_or(0)
}

/// One thread group's histogram and sample count, on lines of its own.
#[derive(Debug)]
struct Shard {
    samples: AtomicU64,
    histogram: Histogram,
}

/// A threshold change worth reporting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Change {
    /// The threshold after the change, in nanoseconds.
    pub(crate) nanos: u64,
    /// The last logged threshold, when the change is material.
    pub(crate) material_from: Option<u64>,
    /// The baseline p99 it was derived from, in nanoseconds.
    pub(crate) baseline: f64,
}

/// The current slow-call threshold and, when adaptive, what learns it.
#[derive(Debug)]
pub(crate) struct SlowThreshold {
    /// In nanoseconds; read by every recorded call, written once a round.
    nanos: CachePadded<AtomicU64>,
    adaptive: Option<Adaptive>,
}

#[derive(Debug)]
struct Adaptive {
    /// A round ends when one shard has learned `round` calls since the last
    /// round: from one thread exactly `round` calls, from several up to
    /// `SHARDS` times as many.
    shards: Box<[CachePadded<Shard>]>,
    round: u64,
    multiple: f64,
    floor: u64,
    cap: u64,
    estimate: Mutex<Estimate>,
}

#[derive(Debug)]
struct Estimate {
    /// The smoothed p99 of healthy calls, in nanoseconds; `None` before the
    /// first round.
    baseline: Option<f64>,
    /// The threshold last reported as a material change.
    logged: u64,
    /// Calls drained but not yet estimated from, by bucket, and how many:
    /// a round that finds fewer than `round` (another thread's round just
    /// drained them) waits for more instead of estimating from a few.
    scratch: Vec<u64>,
    pending: u64,
}

impl SlowThreshold {
    /// `fixed` is the threshold when `adaptive` is off, and the fallback
    /// until the first round when it is on.
    pub(crate) fn new(fixed: std::time::Duration, adaptive: &AdaptiveSlowCall) -> Self {
        let fixed = duration_nanos(fixed);
        Self {
            nanos: CachePadded::new(AtomicU64::new(fixed)),
            adaptive: adaptive.enabled.then(|| Adaptive {
                shards: (0..SHARDS)
                    .map(|_| {
                        CachePadded::new(Shard {
                            samples: AtomicU64::new(0),
                            histogram: Histogram::new(),
                        })
                    })
                    .collect(),
                round: u64::from(adaptive.min_samples.max(1)),
                multiple: adaptive.multiple,
                floor: duration_nanos(adaptive.floor),
                cap: duration_nanos(adaptive.cap),
                estimate: Mutex::new(Estimate {
                    baseline: None,
                    logged: fixed,
                    scratch: vec![0; BUCKETS],
                    pending: 0,
                }),
            }),
        }
    }

    /// The threshold now, in nanoseconds: a call longer than this is slow.
    #[inline]
    pub(crate) fn nanos(&self) -> u64 {
        self.nanos.load(Ordering::Relaxed)
    }

    /// Whether the threshold adapts.
    #[inline]
    pub(crate) fn is_adaptive(&self) -> bool {
        self.adaptive.is_some()
    }

    /// The smoothed p99 of healthy calls, once learned.
    pub(crate) fn baseline(&self) -> Option<f64> {
        let adaptive = self.adaptive.as_ref()?;
        lock(&adaptive.estimate).baseline
    }

    /// Learns one healthy call (a closed-state success no longer than the
    /// threshold); returns the new threshold when this call ended a round.
    #[inline]
    pub(crate) fn learn(&self, nanos: u64) -> Option<Change> {
        let adaptive = self.adaptive.as_ref()?;
        let shard = adaptive.shards.get(shard_index())?;
        shard.histogram.record(nanos);
        // A plain load and store, as in `Histogram::record`: each stored
        // count is one more than a stored count, so the count cannot pass
        // `round` without some call storing exactly `round` and ending the
        // round (two may; the second finds too few calls and waits). A
        // reset lost to a race only ends a round early, and a round that
        // drains fewer than `round` calls waits for more (`pending`).
        let n = shard.samples.load(Ordering::Relaxed) + 1;
        shard.samples.store(n, Ordering::Relaxed);
        if n != adaptive.round {
            return None;
        }
        self.end_round(adaptive)
    }

    #[cold]
    fn end_round(&self, adaptive: &Adaptive) -> Option<Change> {
        let mut estimate = lock(&adaptive.estimate);
        let Estimate {
            baseline,
            logged,
            scratch,
            pending,
        } = &mut *estimate;
        *pending += adaptive.drain(scratch);
        if *pending < adaptive.round {
            return None;
        }
        let p99 = quantile(scratch, QUANTILE);
        scratch.fill(0);
        *pending = 0;
        let p99 = p99? as f64;
        let next = match *baseline {
            None => p99,
            Some(b) => b + (p99 - b) * WEIGHT,
        };
        *baseline = Some(next);
        let raw = next * adaptive.multiple;
        // In [floor, cap] (validated floor <= cap), so the cast is exact
        // enough and cannot saturate past the cap.
        let nanos = if raw.is_finite() {
            (raw as u64).clamp(adaptive.floor, adaptive.cap)
        } else {
            adaptive.cap
        };
        self.nanos.store(nanos, Ordering::Relaxed);
        let material = (nanos as f64 - *logged as f64).abs() >= *logged as f64 * MATERIAL;
        let material_from = material.then_some(*logged);
        if material {
            *logged = nanos;
        }
        Some(Change {
            nanos,
            material_from,
            baseline: next,
        })
    }

    /// Forgets the calls of the round in progress: called when the breaker
    /// opens, since they hold the onset of the trouble. The baseline itself
    /// is kept.
    pub(crate) fn discard(&self) {
        if let Some(adaptive) = &self.adaptive {
            let mut estimate = lock(&adaptive.estimate);
            adaptive.drain(&mut estimate.scratch);
            estimate.scratch.fill(0);
            estimate.pending = 0;
        }
    }
}

impl Adaptive {
    /// Adds every shard's counts to `into`, empties them and restarts their
    /// sample counts; returns how many calls moved.
    fn drain(&self, into: &mut [u64]) -> u64 {
        let mut total = 0;
        for shard in self.shards.iter() {
            shard.samples.store(0, Ordering::Relaxed);
            total += shard.histogram.drain_into(into);
        }
        total
    }
}

/// The estimate stays consistent at every step, so a poisoned lock's data
/// is still good.
fn lock(m: &Mutex<Estimate>) -> std::sync::MutexGuard<'_, Estimate> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut last = 0;
        for n in (0..100_000u64).chain([1 << 40, (1 << 41) - 1]) {
            let b = bucket(n);
            assert!(b >= last, "bucket of {n} went back");
            assert!(n < upper_edge(b), "{n} not under its bucket's upper edge");
            last = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// The whole estimator against a model of exact quantiles: each
        /// round's exact nearest-rank p99, the same weighted average, the
        /// same clamp. Every round's estimate is in [exact, exact * 9/8 + 1],
        /// and a weighted average of values within those bounds stays within
        /// them, so the baseline does too, round after round.
        #[test]
        fn the_estimator_follows_a_model_of_exact_quantiles(
            rounds in proptest::collection::vec(
                (1_000u64..100_000_000, 1u64..20),
                1..12,
            ),
            min_samples in 10u32..60,
            multiple in 1.0f64..10.0,
            seed in any::<u64>(),
        ) {
            let config = AdaptiveSlowCall {
                enabled: true,
                multiple,
                floor: std::time::Duration::from_micros(10),
                cap: std::time::Duration::from_secs(5),
                min_samples,
            };
            let fallback = std::time::Duration::from_secs(1);
            let threshold = SlowThreshold::new(fallback, &config);
            let mut rng = crate::jitter::SplitMix64::new(seed);
            let mut model: Option<f64> = None;
            for (base, spread) in rounds {
                // One round of samples from `base` to (1 + `spread`) x it.
                let mut samples: Vec<u64> = (0..min_samples)
                    .map(|_| base + rng.next_u64() % (base * spread))
                    .collect();
                let mut ended = None;
                for s in &samples {
                    if let Some(change) = threshold.learn(*s) {
                        ended = Some(change);
                    }
                }
                prop_assert!(ended.is_some(), "a round of {} calls did not end", min_samples);
                samples.sort_unstable();
                let rank = ((QUANTILE * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
                let exact = samples[rank - 1] as f64;
                // The model's weighted average, written out (1/4 of the way).
                model = Some(match model {
                    None => exact,
                    Some(b) => b + (exact - b) / 4.0,
                });
                let m = model.unwrap_or_default();
                let b = threshold.baseline().unwrap_or_default();
                prop_assert!(b >= m && b <= m * 9.0 / 8.0 + 1.0, "baseline {} vs model {}", b, m);
                let clamp = |x: f64| (x as u64).clamp(10_000, 5_000_000_000);
                let t = threshold.nanos();
                prop_assert!(
                    t >= clamp(m * multiple) && t <= clamp((m * 9.0 / 8.0 + 1.0) * multiple) + 1,
                    "threshold {} vs model baseline {} x {}", t, m, multiple
                );
            }
        }

        /// Against the exact nearest-rank quantile of the same samples: the
        /// estimate is never below it and at most 1/8 (or 1 ns) above.
        #[test]
        fn quantile_is_within_one_bucket_of_the_exact_one(
            samples in proptest::collection::vec(
                prop_oneof![0u64..64, 1_000u64..10_000_000, 0u64..(1 << 41)],
                1..2_000,
            ),
            q in prop_oneof![Just(0.5), Just(0.9), Just(0.99), 0.01f64..1.0],
        ) {
            let histogram = Histogram::new();
            for s in &samples {
                histogram.record(*s);
            }
            let mut counts = vec![0; BUCKETS];
            prop_assert_eq!(histogram.drain_into(&mut counts), samples.len() as u64);
            let estimate = quantile(&counts, q).unwrap();
            let mut sorted = samples.clone();
            sorted.sort_unstable();
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            let exact = sorted[rank - 1];
            prop_assert!(estimate > exact, "estimate {} <= exact {}", estimate, exact);
            let bound = (exact + exact / 8).max(exact + 1);
            prop_assert!(estimate <= bound, "estimate {} > bound {} (exact {})", estimate, bound, exact);
        }
    }
}
