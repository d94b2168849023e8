//! One time source per process: after building every layer on its default
//! clock (a stack with its cache and breaker, a pool, a bare cache, a
//! breaker, a monitor), exactly one clock ticker thread exists.
//!
//! Its own test binary, so the count is this process's threads alone.
#![cfg(all(
    target_os = "linux",
    feature = "breaker",
    feature = "cache",
    feature = "pool",
    feature = "monitor"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;

use stratum::cache::CacheBuilder;
use stratum::models::Conversation;
use stratum::pool::{ManagedPool, Manager};
use stratum::{Clock, MemoryStore, Stratum, StratumConfig};
use stratum_core::clock::COARSE_THREAD_NAME;

struct Unit;

impl Manager for Unit {
    type Resource = ();
    type Error = Infallible;
    async fn create(&self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// The names of this process's threads that Stratum started (the kernel
/// keeps 15 bytes of a name: the old tickers showed as `stratum-pool-cl`
/// and `stratum-cache-c`).
fn clock_threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .filter(|name| name.starts_with("stratum"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_layer_shares_one_ticker_thread() {
    let stratum = Stratum::builder(StratumConfig::default())
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let repo = stratum.repository::<Conversation>().unwrap();
    let pools: Vec<_> = (0..3)
        .map(|_| {
            ManagedPool::builder(Unit)
                .min_size(0)
                .max_size(2)
                .build()
                .unwrap()
        })
        .collect();
    for pool in &pools {
        drop(pool.get().await.unwrap());
    }
    let caches: Vec<_> = (0..3)
        .map(|_| CacheBuilder::<u32, u32>::new(16).build().unwrap())
        .collect();
    let breaker = stratum::breaker::Breaker::builder("b").build().unwrap();
    assert_eq!(breaker.call_sync(|| Ok::<_, ()>(1)).unwrap(), 1);
    let monitor = stratum::monitor::Monitor::new(Default::default()).unwrap();
    // The stack reads the same kind of clock as every layer: it moves.
    let before = stratum.clock().now();
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert!(stratum.clock().now() > before);

    assert_eq!(
        clock_threads(),
        [COARSE_THREAD_NAME],
        "one ticker thread for the whole process"
    );
    drop((repo, pools, caches, monitor));
}
