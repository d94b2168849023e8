//! Concurrency: single-flight exactly-once (sync and async), errors reaching
//! every waiter, cancelled leaders and waiters, and a multi-thread stress
//! test whose books must balance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use stratum_cache::{Cache, CacheBuilder, Policy, RemovalCause, ShardedCache};
use tokio::sync::Semaphore;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Lets every spawned task run until it blocks (current-thread runtime:
/// tasks are polled in spawn order, so this is deterministic).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn async_single_flight_runs_the_loader_once() {
    current_thread().block_on(async {
        let cache: ShardedCache<u32, u64> = CacheBuilder::new(100).build().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (cache, runs, gate) = (cache.clone(), Arc::clone(&runs), Arc::clone(&gate));
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load_async(7, |k| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _permit = gate.acquire().await.unwrap();
                        Ok::<_, String>(u64::from(k) * 10)
                    })
                    .await
            }));
        }
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "only the leader is loading");
        gate.add_permits(1);
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 70);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let stats = cache.stats();
        assert_eq!((stats.loads_ok, stats.misses, stats.hits), (1, 100, 0));
    });
}

#[test]
fn async_single_flight_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let cache: ShardedCache<u32, u64> = CacheBuilder::new(1_000).build().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..400u32 {
            let (cache, runs) = (cache.clone(), Arc::clone(&runs));
            tasks.push(tokio::spawn(async move {
                let key = i % 4;
                cache
                    .get_or_load_async(key, |k| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, String>(u64::from(k))
                    })
                    .await
                    .map(|v| (key, v))
            }));
        }
        for t in tasks {
            let (k, v) = t.await.unwrap().unwrap();
            assert_eq!(u64::from(k), v);
        }
        // Exactly once per key, whatever the interleaving: later callers hit.
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        let s = cache.stats();
        assert_eq!(s.hits + s.misses, 400);
        assert_eq!(s.loads_ok, 4);
    });
}

#[test]
fn an_error_reaches_every_waiter() {
    current_thread().block_on(async {
        let cache: ShardedCache<u32, u64> = CacheBuilder::new(100).build().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, runs, gate) = (cache.clone(), Arc::clone(&runs), Arc::clone(&gate));
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load_async(1, |_| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _permit = gate.acquire().await.unwrap();
                        Err::<u64, _>("database down".to_owned())
                    })
                    .await
            }));
        }
        settle().await;
        gate.add_permits(1);
        let mut errors = Vec::new();
        for t in tasks {
            errors.push(t.await.unwrap().unwrap_err());
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(
            errors
                .iter()
                .all(|e| Arc::ptr_eq(e, &errors[0]) && **e == "database down")
        );
        assert_eq!(cache.stats().loads_err, 1);
        assert!(!cache.contains_key(&1));
    });
}

#[test]
fn a_cancelled_leader_hands_the_load_to_a_waiter() {
    current_thread().block_on(async {
        let cache: ShardedCache<u32, u64> = CacheBuilder::new(100).build().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let spawn = |value: u64| {
            let (cache, runs, gate) = (cache.clone(), Arc::clone(&runs), Arc::clone(&gate));
            tokio::spawn(async move {
                cache
                    .get_or_load_async(1, |_| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _permit = gate.acquire().await.unwrap();
                        Ok::<_, String>(value)
                    })
                    .await
            })
        };
        let leader = spawn(1);
        let cancelled_waiter = spawn(2);
        let waiters: Vec<_> = (3..13).map(spawn).collect();
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        leader.abort();
        cancelled_waiter.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        assert!(cancelled_waiter.await.unwrap_err().is_cancelled());
        settle().await;
        // One waiter took over; the key is not stuck.
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        gate.add_permits(1);
        let mut values = HashSet::new();
        for w in waiters {
            values.insert(w.await.unwrap().unwrap());
        }
        assert_eq!(values.len(), 1, "every waiter got the new leader's value");
        assert_eq!(cache.get(&1), values.into_iter().next());
    });
}

#[test]
fn a_dropped_waiter_future_never_blocks_the_others() {
    current_thread().block_on(async {
        let cache: ShardedCache<u32, u64> = CacheBuilder::new(100).build().unwrap();
        let gate = Arc::new(Semaphore::new(0));
        let g = Arc::clone(&gate);
        let c = cache.clone();
        let leader = tokio::spawn(async move {
            c.get_or_load_async(5, |_| async move {
                let _p = g.acquire().await.unwrap();
                Ok::<_, String>(50)
            })
            .await
        });
        settle().await;
        // A waiter polled once, then dropped (e.g. a timed-out request).
        let waiter = cache.get_or_load_async(5, |_| async { Ok::<_, String>(0) });
        let mut waiter = Box::pin(waiter);
        let polled = futures_poll_once(waiter.as_mut()).await;
        assert!(polled.is_none());
        drop(waiter);
        gate.add_permits(1);
        assert_eq!(leader.await.unwrap().unwrap(), 50);
        assert_eq!(cache.get(&5), Some(50));
    });
}

/// Polls a future once, returning its output if it was ready.
async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut f).poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

#[test]
fn sync_single_flight_across_threads() {
    let cache: ShardedCache<u32, u64> = CacheBuilder::new(100).build().unwrap();
    let runs = AtomicUsize::new(0);
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                barrier.wait();
                let v = cache
                    .get_or_load(3, |_| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        std::thread::yield_now();
                        Ok::<_, String>(30)
                    })
                    .unwrap();
                assert_eq!(v, 30);
            });
        }
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn a_panicking_sync_loader_does_not_leave_the_key_stuck() {
    let cache: ShardedCache<u32, u64> = CacheBuilder::new(100).build().unwrap();
    let c = cache.clone();
    let panicked = std::thread::spawn(move || {
        c.get_or_load(9, |_| -> Result<u64, String> { panic!("loader bug") })
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(cache.get_or_load(9, |_| Ok::<_, String>(90)).unwrap(), 90);
}

/// Threads insert, read, remove and load over overlapping keys. Afterwards
/// every value ever inserted is either still stored or was reported removed
/// exactly once; no key is stored twice; hits + misses = lookups.
#[test]
fn stress_books_balance() {
    for policy in [Policy::S3Fifo, Policy::Lru] {
        let removed = Arc::new(AtomicU64::new(0));
        let by_listener = Arc::clone(&removed);
        let cache: ShardedCache<u32, u64> = CacheBuilder::new(256)
            .policy(policy)
            .shards(4)
            .eviction_listener(move |_, _, _| {
                by_listener.fetch_add(1, Ordering::Relaxed);
            })
            .build()
            .unwrap();
        let inserted = AtomicU64::new(0);
        let lookups = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (cache, inserted, lookups) = (&cache, &inserted, &lookups);
                s.spawn(move || {
                    let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for i in 0..20_000u64 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = (x % 1_000) as u32;
                        match i % 10 {
                            0..=5 => {
                                lookups.fetch_add(1, Ordering::Relaxed);
                                if let Some(v) = cache.get(&key) {
                                    assert_eq!(v % 1_000, u64::from(key));
                                }
                            }
                            6 | 7 => {
                                inserted.fetch_add(1, Ordering::Relaxed);
                                cache.insert(key, u64::from(key) + 1_000 * i);
                            }
                            8 => {
                                cache.remove(&key);
                            }
                            _ => {
                                lookups.fetch_add(1, Ordering::Relaxed);
                                let mut loaded = false;
                                let v = cache
                                    .get_or_load(key, |k| {
                                        loaded = true;
                                        Ok::<_, String>(u64::from(*k))
                                    })
                                    .unwrap();
                                if loaded {
                                    inserted.fetch_add(1, Ordering::Relaxed);
                                }
                                assert_eq!(v % 1_000, u64::from(key));
                            }
                        }
                    }
                });
            }
        });
        let stats = cache.stats();
        assert_eq!(stats.hits + stats.misses, lookups.load(Ordering::Relaxed));
        assert_eq!(stats.evictions(), removed.load(Ordering::Relaxed));
        assert!(cache.weighted_size() <= cache.capacity());
        let mut keys = HashSet::new();
        for shard in 0..4 {
            for k in cache.eviction_order(shard) {
                assert!(keys.insert(k), "key {k} stored twice");
            }
        }
        assert_eq!(keys.len(), cache.len());
        assert_eq!(
            inserted.load(Ordering::Relaxed),
            cache.len() as u64 + removed.load(Ordering::Relaxed),
            "{policy:?}: a value was lost or duplicated"
        );
        cache.invalidate_all();
        assert_eq!(
            inserted.load(Ordering::Relaxed),
            removed.load(Ordering::Relaxed)
        );
        assert_eq!(
            stats.evicted_size + stats.evicted_explicit + stats.evicted_replaced,
            stats.evictions()
        );
        let _ = RemovalCause::Size;
    }
}

/// The listener runs outside every lock: it may call back into the cache,
/// even into a single-flight load of a key in the same shard.
#[test]
fn a_listener_may_call_back_into_the_cache() {
    for policy in [Policy::Lru, Policy::S3Fifo] {
        let slot: Arc<std::sync::OnceLock<ShardedCache<u32, u64>>> = Arc::default();
        let from_listener = Arc::clone(&slot);
        let cache: ShardedCache<u32, u64> = CacheBuilder::new(2)
            .policy(policy)
            .shards(1)
            .eviction_listener(move |k, _, _| {
                if let Some(c) = from_listener.get().filter(|_| *k < 1_000) {
                    let _ = c.get(k);
                    let _ = c.get_or_load(1_000 + *k, |_| Ok::<_, String>(0));
                }
            })
            .build()
            .unwrap();
        slot.set(cache.clone()).unwrap();
        for k in 0..20 {
            cache
                .get_or_load(k, |k| Ok::<_, String>(u64::from(*k)))
                .unwrap();
        }
        cache.invalidate_all();
        assert!(cache.stats().evictions() >= 20);
    }
}
