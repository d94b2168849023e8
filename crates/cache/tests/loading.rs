//! The loading cache (refresh-ahead, stale-if-error, warm-up), background
//! maintenance, metrics export and configuration validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use stratum_cache::{
    AsyncLoader, Cache, CacheBuilder, CacheConfig, LoadingCache, ManualClock, Policy, ShardedCache,
    SmallQueue,
};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// A loader that returns `key * 100 + version`, counts its runs, can be made
/// to fail, and tracks how many loads run at once.
#[derive(Default)]
struct Versioned {
    runs: AtomicUsize,
    failing: AtomicBool,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl AsyncLoader<u64, u64> for Versioned {
    type Error = String;
    async fn load(&self, key: u64) -> Result<u64, String> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::task::yield_now().await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let run = self.runs.fetch_add(1, Ordering::SeqCst) as u64;
        if self.failing.load(Ordering::SeqCst) {
            Err("database down".into())
        } else {
            Ok(key * 100 + run)
        }
    }
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn refresh_ahead_reloads_in_the_background_and_a_hot_key_never_misses() {
    current_thread().block_on(async {
        let clock = ManualClock::new();
        let cache = CacheBuilder::new(100)
            .time_to_live(Duration::from_secs(10))
            .refresh_after(0.5)
            .clock(clock.clone())
            .build()
            .unwrap();
        let loader = Arc::new(Versioned::default());
        let docs = LoadingCache::new(cache, Arc::clone(&loader));
        assert_eq!(docs.get(1).await.unwrap(), 100);
        clock.advance(Duration::from_secs(4));
        assert_eq!(
            docs.get(1).await.unwrap(),
            100,
            "before the refresh point: no reload"
        );
        settle().await;
        assert_eq!(loader.runs.load(Ordering::SeqCst), 1);
        // Every 6 s (past the refresh point, before expiry) the key is read:
        // it is served from cache and refreshed in the background.
        for round in 1..=5u64 {
            // Round 1 reads at 6 s (refresh point 5 s, expiry 10 s); each
            // refreshed entry is then read 6 s after it was written.
            clock.advance(Duration::from_secs(if round == 1 { 2 } else { 6 }));
            let served = docs.get(1).await.unwrap();
            assert_eq!(served, 100 + round - 1, "the current value is served");
            assert_eq!(docs.get(1).await.unwrap(), served, "one refresh at a time");
            settle().await;
            assert_eq!(docs.cache().get(&1), Some(100 + round), "refreshed");
        }
        let stats = docs.cache().stats();
        assert_eq!(stats.misses, 1, "only the first read missed");
        assert_eq!(stats.refreshes, 5);
        assert_eq!(stats.evicted_replaced, 5);
    });
}

#[test]
fn stale_if_error_serves_up_to_max_stale_and_counts() {
    current_thread().block_on(async {
        let clock = ManualClock::new();
        let cache = CacheBuilder::new(100)
            .time_to_live(Duration::from_secs(10))
            .max_stale(Duration::from_secs(30))
            .clock(clock.clone())
            .build()
            .unwrap();
        let loader = Arc::new(Versioned::default());
        let docs = LoadingCache::new(cache, Arc::clone(&loader));
        assert_eq!(docs.get(2).await.unwrap(), 200);
        loader.failing.store(true, Ordering::SeqCst);
        clock.advance(Duration::from_secs(15));
        assert_eq!(docs.cache().get(&2), None, "expired values are never a hit");
        assert_eq!(
            docs.get(2).await.unwrap(),
            200,
            "stale value served on error"
        );
        clock.advance(Duration::from_secs(24)); // 39 s: 29 s past expiry
        assert_eq!(docs.get(2).await.unwrap(), 200);
        clock.advance(Duration::from_secs(2)); // 41 s: past max_stale
        assert_eq!(*docs.get(2).await.unwrap_err(), "database down");
        let stats = docs.cache().stats();
        assert_eq!((stats.stale_serves, stats.loads_err), (2, 3));
        // Without max_stale the error surfaces at once.
        let plain = CacheBuilder::new(10)
            .time_to_live(Duration::from_secs(1))
            .clock(clock.clone())
            .build()
            .unwrap();
        let plain = LoadingCache::new(plain, Arc::clone(&loader));
        assert!(plain.get(3).await.is_err());
    });
}

#[test]
fn warm_up_loads_every_key_with_bounded_concurrency() {
    current_thread().block_on(async {
        let loader = Arc::new(Versioned::default());
        let docs = LoadingCache::new(
            CacheBuilder::new(1_000).build().unwrap(),
            Arc::clone(&loader),
        );
        let report = docs.warm_up(0..100, 4).await;
        assert_eq!((report.loaded, report.failed), (100, 0));
        assert_eq!(loader.runs.load(Ordering::SeqCst), 100);
        let max = loader.max_in_flight.load(Ordering::SeqCst);
        assert!((1..=4).contains(&max), "max concurrent loads {max}");
        assert!((0..100).all(|k| docs.cache().contains_key(&k)));
        loader.failing.store(true, Ordering::SeqCst);
        let report = docs.warm_up(100..110, 3).await;
        assert_eq!((report.loaded, report.failed), (0, 10));
    });
}

#[test]
fn background_maintenance_reclaims_expired_entries() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let clock = ManualClock::new();
        let cache: ShardedCache<u32, u32> = CacheBuilder::new(100)
            .time_to_live(Duration::from_secs(5))
            .clock(clock.clone())
            .build()
            .unwrap();
        for k in 0..50 {
            cache.insert(k, k);
        }
        let _task = cache.spawn_maintenance(Duration::from_secs(1));
        clock.advance(Duration::from_secs(6));
        assert_eq!(cache.len(), 50, "nothing reclaimed before the task runs");
        // Paused tokio time: sleeping advances virtual time, no wall clock.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.stats().evicted_expired, 50);
    });
}

#[test]
fn writes_reclaim_expired_entries_without_maintenance() {
    let clock = ManualClock::new();
    let cache: ShardedCache<u32, u32> = CacheBuilder::new(10_000)
        .shards(1)
        .time_to_live(Duration::from_secs(5))
        .clock(clock.clone())
        .build()
        .unwrap();
    for k in 0..100 {
        cache.insert(k, k);
    }
    clock.advance(Duration::from_secs(6));
    for k in 1_000..1_100 {
        cache.insert(k, k);
    }
    assert!(
        cache.len() <= 100 + 1,
        "the old generation was swept by writes: {}",
        cache.len()
    );
}

#[test]
fn metrics_are_exported_with_the_cache_label() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        // Built in the recorder's scope: the load-duration histogram is a
        // handle registered at build, as every layer's handles are.
        let cache: ShardedCache<u32, u32> = CacheBuilder::new(2)
            .name("documents")
            .shards(1)
            .build()
            .unwrap();
        cache.insert(1, 1);
        cache.get(&1);
        cache.get(&2);
        cache.insert(2, 2);
        cache.insert(3, 3);
        cache.get_or_load(4, |_| Err::<u32, _>("down")).unwrap_err();
        cache.publish_metrics();
    });
    // One snapshot: the debugging recorder drains counters when read.
    let snapshot = snapshotter.snapshot().into_vec();
    let find = |name: &str, extra: Option<(&str, &str)>| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                let k = key.key();
                k.name() == name
                    && k.labels()
                        .any(|l| l.key() == "cache" && l.value() == "documents")
                    && extra
                        .is_none_or(|(lk, lv)| k.labels().any(|l| l.key() == lk && l.value() == lv))
            })
            .map(|(_, _, _, v)| v)
    };
    assert_eq!(
        find("stratum_cache_hits_total", None),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        find("stratum_cache_misses_total", None),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        find("stratum_cache_loads_total", Some(("result", "error"))),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        find("stratum_cache_evictions_total", Some(("cause", "size"))),
        Some(&DebugValue::Counter(1))
    );
    assert!(
        matches!(find("stratum_cache_entries", None), Some(DebugValue::Gauge(g)) if g.into_inner() == 2.0)
    );
    assert!(
        matches!(find("stratum_cache_load_duration_seconds", None), Some(DebugValue::Histogram(h)) if h.len() == 1)
    );
}

#[test]
fn config_validation_names_the_field() {
    let err = |c: CacheConfig| c.validate().unwrap_err().field().to_owned();
    let base = CacheConfig::default();
    assert_eq!(
        err(CacheConfig {
            max_capacity: 0,
            ..base.clone()
        }),
        "max_capacity"
    );
    assert_eq!(
        err(CacheConfig {
            shards: Some(3),
            ..base.clone()
        }),
        "shards"
    );
    for p in [0, 91] {
        assert_eq!(
            err(CacheConfig {
                small_queue: SmallQueue::Fixed(p),
                ..base.clone()
            }),
            "small_queue"
        );
    }
    assert_eq!(
        err(CacheConfig {
            name: String::new(),
            ..base.clone()
        }),
        "name"
    );
    assert_eq!(
        err(CacheConfig {
            time_to_live: Some(Duration::ZERO),
            ..base.clone()
        }),
        "time_to_live"
    );
    assert_eq!(
        err(CacheConfig {
            time_to_idle: Some(Duration::ZERO),
            ..base.clone()
        }),
        "time_to_idle"
    );
    assert_eq!(
        err(CacheConfig {
            refresh_after: Some(0.5),
            ..base.clone()
        }),
        "refresh_after"
    );
    assert_eq!(
        err(CacheConfig {
            refresh_after: Some(1.5),
            time_to_live: Some(Duration::from_secs(1)),
            ..base.clone()
        }),
        "refresh_after"
    );
    assert_eq!(
        err(CacheConfig {
            max_stale: Some(Duration::ZERO),
            ..base.clone()
        }),
        "max_stale"
    );
    let e = CacheBuilder::<u8, u8>::new(10)
        .shards(3)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("shards"), "{e}");
}

#[test]
fn config_round_trips_through_serde_with_humantime() {
    let json = r#"{"name":"docs","max_capacity":500,"policy":"lru","shards":2,
        "time_to_live":"5m","time_to_idle":"30s","refresh_after":0.75,"max_stale":"1h"}"#;
    let config: CacheConfig = serde_json::from_str(json).unwrap();
    assert_eq!(config.policy, Policy::Lru);
    assert_eq!(config.time_to_live, Some(Duration::from_secs(300)));
    assert_eq!(config.max_stale, Some(Duration::from_secs(3600)));
    assert_eq!(config.small_queue, SmallQueue::Adaptive, "the default");
    let fixed: CacheConfig = serde_json::from_str(r#"{"small_queue":{"fixed":10}}"#).unwrap();
    assert_eq!(fixed.small_queue, SmallQueue::Fixed(10));
    let back: CacheConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(back, config);
    assert!(
        serde_json::from_str::<CacheConfig>(r#"{"max_capacty":1}"#).is_err(),
        "typos are rejected"
    );
    let cache = CacheBuilder::<u8, u8>::from_config(config).build().unwrap();
    assert_eq!(cache.name(), "docs");
    cache.insert(1, 1);
    assert_eq!(cache.get(&1), Some(1));
}
