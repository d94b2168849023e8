//! Statistics: striped counters on the hot path, a plain snapshot for readers.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Why an entry left the cache, as told to the eviction listener and counted
/// in [`CacheStats`].
///
/// ```
/// use stratum_cache::{Cache, CacheBuilder, RemovalCause};
/// use std::sync::{Arc, Mutex};
///
/// let causes = Arc::new(Mutex::new(Vec::new()));
/// let log = Arc::clone(&causes);
/// let cache = CacheBuilder::new(1)
///     .eviction_listener(move |_k: &u8, _v: &u8, cause| log.lock().unwrap().push(cause))
///     .build()
///     .unwrap();
/// cache.insert(1, 1);
/// cache.insert(1, 2); // replaced
/// cache.insert(2, 2); // 1 evicted for size
/// cache.remove(&2);   // explicit
/// assert_eq!(
///     *causes.lock().unwrap(),
///     [RemovalCause::Replaced, RemovalCause::Size, RemovalCause::Explicit]
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// Evicted by the policy to keep the cache within its capacity (or the
    /// value alone was heavier than a shard's share of the capacity).
    Size,
    /// Its time-to-live or time-to-idle (plus any stale-if-error grace) ran out.
    Expired,
    /// Removed by `remove` or `invalidate_all`.
    Explicit,
    /// Overwritten by a newer value for the same key.
    Replaced,
}

impl RemovalCause {
    /// The `cause` label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Expired => "expired",
            Self::Explicit => "explicit",
            Self::Replaced => "replaced",
        }
    }
}

/// A point-in-time copy of a cache's counters.
///
/// ```
/// use stratum_cache::{Cache, CacheBuilder};
///
/// let cache = CacheBuilder::<u32, u32>::new(100).build().unwrap();
/// cache.insert(1, 10);
/// assert_eq!(cache.get(&1), Some(10));
/// assert_eq!(cache.get(&2), None);
/// let stats = cache.stats();
/// assert_eq!((stats.hits, stats.misses), (1, 1));
/// assert_eq!(stats.hit_ratio(), 0.5);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups that returned a live value.
    pub hits: u64,
    /// Lookups that found no live value.
    pub misses: u64,
    /// Loader runs that returned a value.
    pub loads_ok: u64,
    /// Loader runs that returned an error.
    pub loads_err: u64,
    /// Total time spent in loader runs, in nanoseconds.
    pub load_nanos: u64,
    /// Entries evicted to respect the capacity.
    pub evicted_size: u64,
    /// Entries removed because they expired.
    pub evicted_expired: u64,
    /// Entries removed by `remove` / `invalidate_all`.
    pub evicted_explicit: u64,
    /// Values overwritten by a newer value.
    pub evicted_replaced: u64,
    /// Background refresh-ahead reloads that completed successfully.
    pub refreshes: u64,
    /// Expired values served because the loader failed (stale-if-error).
    pub stale_serves: u64,
    /// Keys prefetches asked their loader for ([`crate::ShardedCache::begin_prefetch`]).
    pub prefetch_issued: u64,
    /// Entries a prefetch stored (the key was absent when it came back).
    pub prefetch_inserted: u64,
    /// Prefetched entries read before they left the cache (by a lookup,
    /// or by a caller that waited for the prefetch's load).
    pub prefetch_read: u64,
    /// Prefetched entries that left the cache unread.
    pub prefetch_unread: u64,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0.0 before the first lookup.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }

    /// Loads, successful or not.
    pub fn loads(&self) -> u64 {
        self.loads_ok + self.loads_err
    }

    /// The share of prefetched entries read before they left: read over
    /// read plus removed unread (entries still cached and unread are not
    /// judged yet); 0.0 before any is judged.
    pub fn prefetch_precision(&self) -> f64 {
        let judged = self.prefetch_read + self.prefetch_unread;
        if judged == 0 {
            0.0
        } else {
            self.prefetch_read as f64 / judged as f64
        }
    }

    /// Evictions of every cause.
    pub fn evictions(&self) -> u64 {
        self.evicted_size + self.evicted_expired + self.evicted_explicit + self.evicted_replaced
    }
}

/// One counter slot per statistic.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Hits = 0,
    Misses,
    LoadsOk,
    LoadsErr,
    LoadNanos,
    EvictedSize,
    EvictedExpired,
    EvictedExplicit,
    EvictedReplaced,
    Refreshes,
    StaleServes,
    PrefetchIssued,
}

const COUNTERS: usize = 12;

impl Counter {
    pub(crate) fn eviction(cause: RemovalCause) -> Self {
        match cause {
            RemovalCause::Size => Self::EvictedSize,
            RemovalCause::Expired => Self::EvictedExpired,
            RemovalCause::Explicit => Self::EvictedExplicit,
            RemovalCause::Replaced => Self::EvictedReplaced,
        }
    }
}

/// A cache line of its own, so two threads counting hits never write the
/// same line (a single shared `AtomicU64` would serialize every hit).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe([AtomicU64; COUNTERS]);

/// Counters striped by thread: increments touch only the caller's stripe,
/// a snapshot sums all stripes.
///
/// A thread whose slot is below the number of owned stripes is the only
/// writer of its stripe, so it counts with a relaxed load and store (no
/// locked read-modify-write: on the get-heavy bench that instruction was a
/// quarter of a hit's samples). Slots are unique among live threads and
/// recycled when a thread exits (the free list's mutex orders the old
/// owner's last store before the new owner's first load), so a count is
/// never lost. Threads beyond the owned stripes (or counting while their
/// thread-locals are being destroyed) share the other stripes with
/// `fetch_add`.
#[derive(Debug)]
pub(crate) struct StatsCells {
    owned: Box<[Stripe]>,
    shared: Box<[Stripe]>,
}

/// Slots handed out so far, and the slots of threads that exited.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
static FREE_SLOTS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// [`THREAD_SLOT`] before the thread's first count.
const UNSET: usize = usize::MAX - 1;
/// [`THREAD_SLOT`] once the thread gave its slot back (it is exiting):
/// beyond every owned stripe, so its last counts go to a shared one.
const GIVEN_BACK: usize = usize::MAX;

thread_local! {
    /// The thread's slot, read on every count. A `const` cell that needs
    /// no destructor, so reading it is a plain thread-local load (the
    /// slot's owner, below, has a destructor, and a thread-local with one
    /// is checked for its state on every access: about 6 instructions a
    /// count, on a hit of a few dozen).
    static THREAD_SLOT: Cell<usize> = const { Cell::new(UNSET) };
    /// Holds the slot and gives it back when the thread exits.
    static SLOT_OWNER: SlotOwner = SlotOwner::acquire();
}

/// A thread's slot, returned to [`FREE_SLOTS`] when the thread exits.
struct SlotOwner(usize);

impl SlotOwner {
    fn acquire() -> Self {
        let slot = FREE_SLOTS
            .lock()
            .pop()
            .unwrap_or_else(|| NEXT_SLOT.fetch_add(1, Ordering::Relaxed));
        let _ = THREAD_SLOT.try_with(|s| s.set(slot));
        Self(slot)
    }
}

impl Drop for SlotOwner {
    fn drop(&mut self) {
        // Counted on a shared stripe from now on: once the slot is free,
        // another thread may become its only writer.
        let _ = THREAD_SLOT.try_with(|s| s.set(GIVEN_BACK));
        FREE_SLOTS.lock().push(self.0);
    }
}

/// The calling thread's slot as last set: [`UNSET`] before its first
/// count (beyond every owned stripe, like [`GIVEN_BACK`], so the hot path
/// needs no test of its own for it; see [`StatsCells::add`]).
#[inline]
fn thread_slot() -> usize {
    THREAD_SLOT.try_with(Cell::get).unwrap_or(GIVEN_BACK)
}

/// The thread's first count: its slot's owner is made, which sets
/// [`THREAD_SLOT`]. A thread already tearing down its thread-locals gets
/// no owner (nobody would give the slot back) and counts on a shared
/// stripe.
#[cold]
#[inline(never)]
fn first_slot() -> usize {
    SLOT_OWNER.try_with(|o| o.0).unwrap_or(GIVEN_BACK)
}

impl StatsCells {
    pub(crate) fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        // Owned stripes for a few threads per CPU (a runtime's workers plus
        // callers of their own); the shared ones only take the overflow.
        Self::with_stripes((cpus * 4).max(16), cpus)
    }

    /// `owned` single-writer stripes, and `shared` ones (rounded up to a
    /// power of two) for the threads beyond them.
    fn with_stripes(owned: usize, shared: usize) -> Self {
        let stripes = |n| (0..n).map(|_| Stripe::default()).collect();
        Self {
            owned: stripes(owned),
            shared: stripes(shared.next_power_of_two()),
        }
    }

    #[inline]
    pub(crate) fn add(&self, counter: Counter, by: u64) {
        let slot = thread_slot();
        if !self.add_owned(slot, counter, by) {
            self.add_beyond_owned(slot, counter, by);
        }
    }

    /// Counts on `slot`'s owned stripe, if it is one; this thread is its
    /// only writer, so a plain load and store.
    #[inline]
    fn add_owned(&self, slot: usize, counter: Counter, by: u64) -> bool {
        let Some(cell) = self.owned.get(slot).map(|s| &s.0[counter as usize]) else {
            return false;
        };
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(by),
            Ordering::Relaxed,
        );
        true
    }

    /// [`Self::add`] for a slot beyond the owned stripes: the thread's
    /// first count (its slot is taken now), or a thread that owns none.
    #[cold]
    #[inline(never)]
    fn add_beyond_owned(&self, slot: usize, counter: Counter, by: u64) {
        let slot = if slot == UNSET { first_slot() } else { slot };
        if !self.add_owned(slot, counter, by)
            && let Some(stripe) = self.shared.get(slot & (self.shared.len() - 1))
        {
            stripe.0[counter as usize].fetch_add(by, Ordering::Relaxed);
        }
    }

    fn stripes(&self) -> impl Iterator<Item = &Stripe> {
        self.owned.iter().chain(self.shared.iter())
    }

    /// Hits and misses so far (what the adaptive small queue samples).
    pub(crate) fn hits_misses(&self) -> (u64, u64) {
        self.stripes().fold((0, 0), |(h, m), s| {
            (
                h + s.0[Counter::Hits as usize].load(Ordering::Relaxed),
                m + s.0[Counter::Misses as usize].load(Ordering::Relaxed),
            )
        })
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        let mut sum = [0u64; COUNTERS];
        for stripe in self.stripes() {
            for (total, cell) in sum.iter_mut().zip(stripe.0.iter()) {
                *total += cell.load(Ordering::Relaxed);
            }
        }
        CacheStats {
            hits: sum[Counter::Hits as usize],
            misses: sum[Counter::Misses as usize],
            loads_ok: sum[Counter::LoadsOk as usize],
            loads_err: sum[Counter::LoadsErr as usize],
            load_nanos: sum[Counter::LoadNanos as usize],
            evicted_size: sum[Counter::EvictedSize as usize],
            evicted_expired: sum[Counter::EvictedExpired as usize],
            evicted_explicit: sum[Counter::EvictedExplicit as usize],
            evicted_replaced: sum[Counter::EvictedReplaced as usize],
            refreshes: sum[Counter::Refreshes as usize],
            stale_serves: sum[Counter::StaleServes as usize],
            prefetch_issued: sum[Counter::PrefetchIssued as usize],
            // Kept by the shards (`predict::PrefetchCounts`), added by the cache.
            prefetch_inserted: 0,
            prefetch_read: 0,
            prefetch_unread: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Counter; COUNTERS] = [
        Counter::Hits,
        Counter::Misses,
        Counter::LoadsOk,
        Counter::LoadsErr,
        Counter::LoadNanos,
        Counter::EvictedSize,
        Counter::EvictedExpired,
        Counter::EvictedExplicit,
        Counter::EvictedReplaced,
        Counter::Refreshes,
        Counter::StaleServes,
        Counter::PrefetchIssued,
    ];

    fn as_array(s: &CacheStats) -> [u64; COUNTERS] {
        [
            s.hits,
            s.misses,
            s.loads_ok,
            s.loads_err,
            s.load_nanos,
            s.evicted_size,
            s.evicted_expired,
            s.evicted_explicit,
            s.evicted_replaced,
            s.refreshes,
            s.stale_serves,
            s.prefetch_issued,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any counts from any number of threads, on any split between
        /// owned and shared stripes, sum to the model's per-counter totals
        /// (a plain array), in the snapshot and in `hits_misses`.
        #[test]
        fn snapshot_matches_a_model(
            owned in 0usize..4,
            shared in 1usize..3,
            work in proptest::collection::vec(
                proptest::collection::vec((0usize..COUNTERS, 0u64..1_000), 0..100),
                1..10,
            ),
        ) {
            let cells = StatsCells::with_stripes(owned, shared);
            std::thread::scope(|s| {
                for w in &work {
                    let cells = &cells;
                    s.spawn(move || {
                        for &(c, by) in w {
                            cells.add(ALL[c], by);
                        }
                    });
                }
            });
            let mut model = [0u64; COUNTERS];
            for &(c, by) in work.iter().flatten() {
                model[c] += by;
            }
            prop_assert_eq!(as_array(&cells.snapshot()), model);
            prop_assert_eq!(
                cells.hits_misses(),
                (model[Counter::Hits as usize], model[Counter::Misses as usize])
            );
        }
    }

    /// More threads than owned stripes, in waves (so exited threads' slots
    /// are reused): no count is lost. Fails if the shared stripes are
    /// written with a plain load and store, or if a recycled slot could
    /// have two live owners.
    #[test]
    fn no_count_is_lost_with_more_threads_than_stripes() {
        // Few stripes, so most threads share one.
        let cells = StatsCells::with_stripes(4, 1);
        let threads = 16;
        const EACH: u64 = 200_000;
        // All of a wave's threads count at once.
        let start = std::sync::Barrier::new(threads);
        for _wave in 0..3 {
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        start.wait();
                        for _ in 0..EACH {
                            cells.add(Counter::Hits, 1);
                        }
                        cells.add(Counter::Misses, 2);
                    });
                }
            });
        }
        let total = 3 * threads as u64;
        assert_eq!(cells.hits_misses(), (total * EACH, total * 2));
        assert_eq!(cells.snapshot().hits, total * EACH);
    }
}
