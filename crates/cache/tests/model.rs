//! Property tests against reference models: exact LRU order, expiry with a
//! manual clock, and the weight bound after every operation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use stratum_cache::{
    Admission, Cache, CacheBuilder, ManualClock, Policy, RemovalCause, ShardedCache, SmallQueue,
};

type Log = Arc<Mutex<Vec<(u8, u32, RemovalCause)>>>;

fn logged_cache(builder: CacheBuilder<u8, u32>) -> (ShardedCache<u8, u32>, Log) {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let cache = builder
        .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((*k, *v, cause)))
        .build()
        .unwrap();
    (cache, log)
}

#[derive(Debug, Clone)]
enum LruOp {
    Insert(u8, u32),
    Get(u8),
    Remove(u8),
}

fn lru_op() -> impl Strategy<Value = LruOp> {
    prop_oneof![
        4 => (0u8..16, any::<u32>()).prop_map(|(k, v)| LruOp::Insert(k, v)),
        4 => (0u8..16).prop_map(LruOp::Get),
        1 => (0u8..16).prop_map(LruOp::Remove),
    ]
}

/// The reference: a deque, least recently used at the front.
#[derive(Default)]
struct RefLru {
    items: VecDeque<(u8, u32)>,
    cap: usize,
}

impl RefLru {
    fn take(&mut self, k: u8) -> Option<u32> {
        let pos = self.items.iter().position(|(key, _)| *key == k)?;
        self.items.remove(pos).map(|(_, v)| v)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// For any op sequence, exact LRU returns, evicts (key, value, cause, in
    /// order) and orders its entries exactly like the reference deque.
    #[test]
    fn lru_matches_reference(cap in 1u64..8, ops in prop::collection::vec(lru_op(), 1..200)) {
        let (cache, log) = logged_cache(CacheBuilder::new(cap).policy(Policy::Lru).shards(1));
        let mut model = RefLru { cap: cap as usize, ..RefLru::default() };
        let mut expected_log = Vec::new();
        for op in ops {
            match op {
                LruOp::Insert(k, v) => {
                    cache.insert(k, v);
                    if let Some(old) = model.take(k) {
                        expected_log.push((k, old, RemovalCause::Replaced));
                    }
                    model.items.push_back((k, v));
                    while model.items.len() > model.cap {
                        let (ek, ev) = model.items.pop_front().unwrap();
                        expected_log.push((ek, ev, RemovalCause::Size));
                    }
                }
                LruOp::Get(k) => {
                    let got = cache.get(&k);
                    let want = model.take(k);
                    if let Some(v) = want {
                        model.items.push_back((k, v));
                    }
                    prop_assert_eq!(got, want);
                }
                LruOp::Remove(k) => {
                    let got = cache.remove(&k);
                    let want = model.take(k);
                    if let Some(v) = want {
                        expected_log.push((k, v, RemovalCause::Explicit));
                    }
                    prop_assert_eq!(got, want);
                }
            }
            let order: Vec<u8> = model.items.iter().map(|(k, _)| *k).collect();
            prop_assert_eq!(cache.eviction_order(0), order);
            prop_assert_eq!(&*log.lock().unwrap(), &expected_log);
        }
    }
}

#[derive(Debug, Clone)]
enum ExpiryOp {
    Insert(u8, u32),
    InsertTtl(u8, u32, u64),
    Get(u8),
    Remove(u8),
    Advance(u64),
    Reap,
}

fn expiry_op() -> impl Strategy<Value = ExpiryOp> {
    prop_oneof![
        3 => (0u8..12, any::<u32>()).prop_map(|(k, v)| ExpiryOp::Insert(k, v)),
        2 => (0u8..12, any::<u32>(), 1u64..8).prop_map(|(k, v, t)| ExpiryOp::InsertTtl(k, v, t)),
        4 => (0u8..12).prop_map(ExpiryOp::Get),
        1 => (0u8..12).prop_map(ExpiryOp::Remove),
        3 => (0u64..4).prop_map(ExpiryOp::Advance),
        1 => Just(ExpiryOp::Reap),
    ]
}

/// Reference expiry: value, TTL deadline, last access (seconds).
struct RefEntry {
    value: u32,
    expires_at: u64,
    last_access: u64,
}

fn live(e: &RefEntry, now: u64, tti: Option<u64>) -> bool {
    now < e.expires_at && tti.is_none_or(|tti| now < e.last_access + tti)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// TTL, TTI and per-entry TTL match the reference under a manual clock,
    /// for both policies and several shard counts; an expired entry is never
    /// returned, and a full sweep leaves exactly the live entries.
    #[test]
    fn expiry_matches_reference(
        lru in any::<bool>(),
        shards in prop::sample::select(vec![1usize, 2, 4]),
        ttl in 1u64..6,
        tti in prop::option::of(1u64..4),
        ops in prop::collection::vec(expiry_op(), 1..150),
    ) {
        let clock = ManualClock::new();
        let mut b = CacheBuilder::<u8, u32>::new(1_000)
            .policy(if lru { Policy::Lru } else { Policy::S3Fifo })
            .shards(shards)
            .time_to_live(Duration::from_secs(ttl))
            .clock(clock.clone());
        if let Some(tti) = tti {
            b = b.time_to_idle(Duration::from_secs(tti));
        }
        let (cache, log) = logged_cache(b);
        let mut model: HashMap<u8, RefEntry> = HashMap::new();
        let mut now = 0u64;
        for op in ops {
            match op {
                ExpiryOp::Insert(k, v) => {
                    cache.insert(k, v);
                    model.insert(k, RefEntry { value: v, expires_at: now + ttl, last_access: now });
                }
                ExpiryOp::InsertTtl(k, v, t) => {
                    cache.insert_with_ttl(k, v, Duration::from_secs(t));
                    model.insert(k, RefEntry { value: v, expires_at: now + t, last_access: now });
                }
                ExpiryOp::Get(k) => {
                    let want = match model.get_mut(&k) {
                        Some(e) if live(e, now, tti) => {
                            e.last_access = now;
                            Some(e.value)
                        }
                        _ => None,
                    };
                    prop_assert_eq!(cache.get(&k), want);
                }
                ExpiryOp::Remove(k) => {
                    let want = model.remove(&k).filter(|e| live(e, now, tti)).map(|e| e.value);
                    prop_assert_eq!(cache.remove(&k), want);
                }
                ExpiryOp::Advance(s) => {
                    clock.advance(Duration::from_secs(s));
                    now += s;
                }
                ExpiryOp::Reap => {
                    cache.run_pending_tasks();
                    model.retain(|_, e| live(e, now, tti));
                    prop_assert_eq!(cache.len(), model.len());
                }
            }
            for (k, e) in &model {
                prop_assert_eq!(cache.contains_key(k), live(e, now, tti));
            }
        }
        // Nothing was evicted for size; every removal is accounted for.
        prop_assert!(log.lock().unwrap().iter().all(|(_, _, c)| *c != RemovalCause::Size));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Weighted: after every insert the total weight is within the bound, the
    /// entry just written is present (unless heavier than a shard), and the
    /// books balance (weights of listed keys = weighted size).
    #[test]
    fn weight_bound_holds(
        lru in any::<bool>(),
        shards in prop::sample::select(vec![1usize, 2, 4]),
        cap in 50u64..400,
        ops in prop::collection::vec((0u8..64, 1u32..80, any::<bool>()), 1..300),
    ) {
        let weights: Arc<Mutex<HashMap<u8, u32>>> = Arc::default();
        let cache = CacheBuilder::<u8, u32>::new(cap)
            .policy(if lru { Policy::Lru } else { Policy::S3Fifo })
            .shards(shards)
            .weigher(|_, v| *v)
            .build()
            .unwrap();
        let per_shard = cap / shards as u64;
        for (k, w, read) in ops {
            if read {
                let _ = cache.get(&k);
                continue;
            }
            cache.insert(k, w);
            weights.lock().unwrap().insert(k, w);
            prop_assert!(cache.weighted_size() <= cache.capacity());
            prop_assert!(cache.capacity() <= cap);
            prop_assert_eq!(cache.contains_key(&k), u64::from(w) <= per_shard);
            let total: u64 = (0..shards)
                .flat_map(|s| cache.eviction_order(s))
                .map(|k| u64::from(cache.get(&k).unwrap()))
                .sum();
            prop_assert_eq!(total, cache.weighted_size());
        }
    }
}

#[derive(Debug, Clone)]
enum S3Op {
    Insert(u8, u32),
    Get(u8),
    Remove(u8),
}

fn s3_op() -> impl Strategy<Value = S3Op> {
    prop_oneof![
        4 => (0u8..64, any::<u32>()).prop_map(|(k, v)| S3Op::Insert(k, v)),
        6 => (0u8..64).prop_map(S3Op::Get),
        1 => (0u8..64).prop_map(S3Op::Remove),
    ]
}

fn small_queue() -> impl Strategy<Value = SmallQueue> {
    prop_oneof![
        Just(SmallQueue::Adaptive),
        (1u8..=90).prop_map(SmallQueue::Fixed),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// S3-FIFO with any small-queue sizing (fixed shares, or adaptive with
    /// enough lookups for the share to move) and either admission rule
    /// (the sketch's admissions move entries between queues and pick
    /// victims in main): after every operation the
    /// cache holds exactly what was inserted less what the listener was
    /// told left, every value is the latest written, and the entry count
    /// stays within the capacity.
    #[test]
    fn s3fifo_matches_its_books(
        cap in 1u64..40,
        shards in prop::sample::select(vec![1usize, 2]),
        sq in small_queue(),
        admission in prop::sample::select(vec![Admission::Ghost, Admission::Frequency]),
        ops in prop::collection::vec(s3_op(), 1..3_000),
    ) {
        let shards = shards.min(cap as usize);
        let (cache, log) = logged_cache(
            CacheBuilder::new(cap).shards(shards).small_queue(sq).admission(admission),
        );
        let mut model: HashMap<u8, u32> = HashMap::new();
        for op in ops {
            match op {
                S3Op::Insert(k, v) => {
                    cache.insert(k, v);
                    model.insert(k, v);
                }
                S3Op::Get(k) => {
                    let got = cache.get(&k);
                    if let Some(v) = got {
                        prop_assert_eq!(model.get(&k), Some(&v));
                    }
                }
                S3Op::Remove(k) => {
                    let removed = cache.remove(&k);
                    prop_assert_eq!(removed, model.get(&k).copied());
                }
            }
            for (k, v, cause) in log.lock().unwrap().drain(..) {
                match cause {
                    RemovalCause::Replaced => {}
                    RemovalCause::Explicit => {
                        prop_assert_eq!(model.remove(&k), Some(v));
                    }
                    other => {
                        prop_assert_eq!(other, RemovalCause::Size);
                        prop_assert_eq!(model.remove(&k), Some(v));
                    }
                }
            }
            prop_assert_eq!(cache.len(), model.len());
            prop_assert!(cache.len() as u64 <= cache.capacity());
            prop_assert!(cache.capacity() <= cap);
        }
        for (k, v) in &model {
            prop_assert_eq!(cache.get(k), Some(*v));
        }
    }
}

/// Replays `passes` passes over keys `0..n`, read-through; the hit ratio.
fn loop_hit_ratio(cache: &impl Cache<u32, u32>, n: u32, passes: u32) -> f64 {
    let mut hits = 0;
    for _ in 0..passes {
        for k in 0..n {
            if cache.get(&k).is_some() {
                hits += 1;
            } else {
                cache.insert(k, k);
            }
        }
    }
    f64::from(hits) / f64::from(n * passes)
}

/// A loop ten times the cache: LRU (and a plain S3-FIFO, whose small queue
/// never sees a key twice and whose ghost is too short to remember it)
/// hits nothing; ours keeps a fixed part of the loop in main, so nearly
/// the capacity's share of the loop hits (the optimum is 10 %). A
/// regression to LRU-like behaviour fails this.
#[test]
fn s3fifo_keeps_part_of_a_loop_larger_than_the_cache() {
    for sq in [
        SmallQueue::default(),
        SmallQueue::Adaptive,
        SmallQueue::Fixed(10),
    ] {
        // Seeded: the ghost's buckets and the sketch's collisions move the
        // ratio a little (0.087-0.10 over seeds 0..200), so a random seed
        // could, rarely, land below the bound.
        for (admission, seed) in [Admission::Ghost, Admission::Frequency]
            .into_iter()
            .flat_map(|a| (0..4).map(move |seed| (a, seed)))
        {
            let cache = CacheBuilder::new(100)
                .small_queue(sq)
                .admission(admission)
                .hash_seed(seed)
                .build()
                .unwrap();
            let ratio = loop_hit_ratio(&cache, 1_000, 50);
            assert!(
                ratio >= 0.085,
                "{sq:?}, {admission:?}, seed {seed}: {ratio}"
            );
        }
    }
    let lru = CacheBuilder::new(100).policy(Policy::Lru).build().unwrap();
    assert_eq!(loop_hit_ratio(&lru, 1_000, 50), 0.0);
}

/// An entry leaving the small queue moves to main only after two reads
/// there (read once, it leaves for the ghost), and keeps the reads beyond
/// the second as rounds in main, so main evicts an entry promoted after
/// two reads before one promoted earlier after three (libCacheSim clears
/// the counter: the earlier would go first). Capacity 4, a small queue of
/// 1 entry, one shard. An insert stores the key, then makes room;
/// `eviction_order` lists small, then main, oldest first.
#[test]
fn s3fifo_promotes_after_two_reads_and_keeps_the_rest() {
    let cache = CacheBuilder::<&str, u32>::new(4)
        .small_queue(SmallQueue::Fixed(25))
        .shards(1)
        .hash_seed(7)
        .build()
        .unwrap();
    let order = || cache.eviction_order(0);
    for k in ["m1", "m2", "m3", "gone"] {
        cache.insert(k, 0);
    }
    // Main fills first: m1-m3 move there unread; "gone" leaves.
    cache.insert("once", 0);
    assert_eq!(order(), ["once", "m1", "m2", "m3"]);
    assert!(cache.get(&"once").is_some());
    // Read once, "once" leaves (with one read enough, it would move to
    // main, and main would evict m1).
    cache.insert("twice", 0);
    assert_eq!(order(), ["twice", "m1", "m2", "m3"]);
    // Each key below is read, then the next insert moves it to main,
    // which evicts its oldest entry.
    for (key, reads, next, after) in [
        ("twice", 2, "x", ["x", "m2", "m3", "twice"]),
        ("x", 3, "y", ["y", "m3", "twice", "x"]),
        ("y", 2, "z", ["z", "twice", "x", "y"]),
        ("z", 2, "w", ["w", "x", "y", "z"]),
        // "x" has a round left from its third read, "y" none.
        ("w", 2, "v", ["v", "z", "w", "x"]),
    ] {
        for _ in 0..reads {
            assert!(cache.get(&key).is_some());
        }
        cache.insert(next, 0);
        assert_eq!(order(), after, "after {key} moved to main");
    }
}

/// A scan of cold keys does not flush S3-FIFO's hot set (it flushes LRU's).
#[test]
fn s3fifo_resists_a_scan() {
    let hot_hits = |policy| {
        let cache = CacheBuilder::<u32, u32>::new(100)
            .policy(policy)
            .shards(1)
            .build()
            .unwrap();
        for _ in 0..3 {
            for k in 0..50 {
                if cache.get(&k).is_none() {
                    cache.insert(k, k);
                }
            }
        }
        for k in 1_000..1_500 {
            cache.insert(k, k);
        }
        (0..50).filter(|k| cache.get(k).is_some()).count()
    };
    assert_eq!(hot_hits(Policy::S3Fifo), 50);
    assert_eq!(hot_hits(Policy::Lru), 0);
}

/// Read-through over a skewed, shifting key stream (ghost hits and main
/// rotations depend on the hashes); the final eviction order.
fn order_after_replay(seed: Option<u64>) -> Vec<u32> {
    let mut b = CacheBuilder::<u32, u32>::new(200).shards(1);
    if let Some(seed) = seed {
        b = b.hash_seed(seed);
    }
    let cache = b.build().unwrap();
    let mut x = 1u32;
    for i in 0..20_000u32 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        // Skewed: a product of two uniform draws, over a window that moves.
        let k = (x % 1_000) * ((x >> 10) % 1_000) / 1_000 + i / 100;
        if cache.get(&k).is_none() {
            cache.insert(k, k);
        }
    }
    cache.eviction_order(0)
}

/// With a fixed hash seed one sequence of operations leaves the same cache
/// in every run; two seeds leave different ones (so the test would see a
/// seed that is ignored: the ghost's buckets hang on the hashes).
#[test]
fn a_fixed_hash_seed_makes_eviction_reproducible() {
    assert_eq!(order_after_replay(Some(1)), order_after_replay(Some(1)));
    assert_ne!(order_after_replay(Some(1)), order_after_replay(Some(2)));
}

/// Hot keys that come back only after more cold keys than the cache holds:
/// S3-FIFO alone evicts them unread from the small queue every time (and
/// the ghost has forgotten them by their return), while main stays full of
/// cold keys that were never read; with the frequency sketch's admission
/// they replace those. Fails if `Admission::Frequency` admits nothing.
#[test]
fn frequency_admission_lets_keys_that_return_often_replace_mains_victims() {
    let hot_hits = |admission, seed| {
        let cache = CacheBuilder::<u32, u32>::new(100)
            .shards(1)
            .small_queue(SmallQueue::Fixed(10))
            .admission(admission)
            .hash_seed(seed)
            .build()
            .unwrap();
        // Fill main with cold keys read once.
        for k in 10_000..10_200 {
            cache.insert(k, k);
        }
        let mut cold = 20_000;
        let mut hot_hits = 0;
        for round in 0..20 {
            for hot in 0..60 {
                let hit = cache.get(&hot).is_some();
                if !hit {
                    cache.insert(hot, hot);
                }
                if round >= 15 && hit {
                    hot_hits += 1;
                }
                for _ in 0..5 {
                    cache.insert(cold, cold);
                    cold += 1;
                }
            }
        }
        hot_hits
    };
    // The last 5 rounds: 300 reads of hot keys. Seeded, so the ghost's
    // buckets and the sketch's collisions are the same in every run (over
    // these seeds: 300 hits with the filter; 57-118 without, from the
    // ghost alone, which starts at twice the resident entries and
    // remembers some of the hot keys across a round's 300 cold ones).
    for seed in 0..32 {
        let with = hot_hits(Admission::Frequency, seed);
        let without = hot_hits(Admission::Ghost, seed);
        assert!(with >= 200, "seed {seed}: {with} of 300");
        assert!(without <= 150, "seed {seed}: {without} of 300");
    }
}
