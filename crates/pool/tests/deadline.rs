//! The acquire timeout kept by the pool's sweeper task (no timer per
//! waiter): a waiter gives up within `[15/16, 1]` of the timeout, one served
//! before then keeps its lease, and the sweeper ends with the pool. Timing
//! is tokio's paused (virtual) clock, never the wall clock.

use std::time::Duration;

use stratum_pool::{ManagedPool, PoolError};
use tokio::time::Instant;

use crate::support::Counting;

const TIMEOUT: Duration = Duration::from_millis(160);

fn pool(manager: &Counting) -> ManagedPool<Counting> {
    ManagedPool::builder(manager.clone())
        .min_size(0)
        .max_size(1)
        .adaptive(false)
        .acquire_timeout(TIMEOUT)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_waiter_times_out_within_the_acquire_timeout_never_after() {
    let manager = Counting::default();
    let pool = pool(&manager);
    let held = pool.get().await.unwrap();
    for _ in 0..3 {
        let start = Instant::now();
        let got = pool.get().await;
        let waited = start.elapsed();
        assert!(
            matches!(got, Err(PoolError::Timeout(_))),
            "the only object is out"
        );
        assert!(
            waited <= TIMEOUT,
            "waited {waited:?}, more than the timeout"
        );
        assert!(
            waited >= TIMEOUT / 16 * 15,
            "waited {waited:?}, under 15/16 of it"
        );
    }
    assert_eq!(pool.stats().timeouts, 3);
    drop(held);
    assert!(pool.get().await.is_ok());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_waiter_served_across_ticks_keeps_its_lease() {
    let manager = Counting::default();
    let pool = pool(&manager);
    let held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|lease| lease.id) }
    });
    // Several sweeper ticks pass (a tick is TIMEOUT / 16 = 10 ms) before
    // the object comes back.
    tokio::time::sleep(TIMEOUT / 2).await;
    let id = held.id;
    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), id);
    assert_eq!(pool.stats().timeouts, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_sweeper_ends_with_the_pool() {
    let manager = Counting::default();
    let pool = pool(&manager);
    let held = pool.get().await.unwrap();
    assert!(pool.get().await.is_err());
    drop(held);
    drop(pool);
    // The maintenance task notices at its next tick (1 s), the sweeper at once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let alive = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert_eq!(alive, 0, "no background task outlives the pool");
}

/// Creates take 300 ms (of tokio's paused clock).
struct Slow;

impl stratum_pool::Manager for Slow {
    type Resource = u32;
    type Error = crate::support::Refused;
    async fn create(&self) -> Result<u32, crate::support::Refused> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(1)
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_acquire_timeout_bounds_the_wait_for_a_slot_not_the_create() {
    let pool = ManagedPool::builder(Slow)
        .min_size(0)
        .max_size(1)
        .adaptive(false)
        .acquire_timeout(TIMEOUT)
        .create_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    // A free slot, then a 300 ms create: longer than the 160 ms acquire
    // timeout, inside the 1 s create timeout.
    let lease = pool.get().await.unwrap();
    assert_eq!(*lease, 1);
    assert_eq!(pool.stats().timeouts, 0);
}

/// Every way an object comes back (parked on the ready stack, handed to a
/// waiter, returned to deadpool with a zero skip window, discarded) wakes
/// whoever waits for it: sixteen tasks on two objects never wait for a
/// sweeper tick, i.e. the paused clock never has to move.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn no_waiter_needs_a_sweeper_tick_to_be_served() {
    for skip_window in [Duration::from_millis(500), Duration::ZERO] {
        let manager = Counting::default();
        let pool = ManagedPool::builder(manager.clone())
            .min_size(0)
            .max_size(2)
            .adaptive(false)
            .acquire_timeout(Duration::from_secs(60))
            .validation_skip_window(skip_window)
            .build()
            .unwrap();
        let start = Instant::now();
        let tasks: Vec<_> = (0..16)
            .map(|task| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for round in 0..50 {
                        let lease = pool.get().await.unwrap();
                        tokio::task::yield_now().await;
                        if (task + round) % 7 == 0 {
                            lease.discard();
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "a waiter waited for the sweeper (skip window {skip_window:?})"
        );
        assert!(manager.live() <= 2);
    }
}
