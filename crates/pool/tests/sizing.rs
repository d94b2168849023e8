//! The adaptive limit inside a real pool (grows for waiters, shrinks after
//! a calm spell, stays in [min, max]), and close and drain.

use std::time::Duration;

use stratum_pool::{ManagedPool, ManualClock, PoolError};

use crate::support::Counting;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_limit_grows_for_waiters_and_shrinks_when_calm() {
    let (manager, clock) = (Counting::default(), ManualClock::new());
    let pool = ManagedPool::builder(manager.clone())
        .min_size(2)
        .max_size(20)
        .acquire_timeout(Duration::from_secs(3600))
        .clock(clock.clone())
        .background(false)
        .build()
        .unwrap();
    assert_eq!(pool.status().limit, 2, "starts at min_size");
    let held = vec![pool.get().await.unwrap(), pool.get().await.unwrap()];
    let mut waiters = Vec::new();
    for i in 0..3 {
        let p = pool.clone();
        waiters.push(tokio::spawn(async move { p.get().await.map(drop) }));
        while pool.status().waiting < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    pool.run_maintenance().await;
    assert_eq!(
        pool.status().limit,
        4,
        "grew for the waiters, at most doubling"
    );
    // Two waiters get new objects; the third reuses one they hand back.
    for waiter in waiters {
        waiter.await.unwrap().unwrap();
    }
    assert_eq!(pool.stats().resized_up, 1);
    drop(held);
    // Calm: idle objects, nobody waiting. Shrinks only after `shrink_after`
    // (30 s), then step by step, never below min_size.
    for _ in 0..200 {
        clock.advance(Duration::from_secs(5));
        pool.run_maintenance().await;
        assert!(pool.status().limit >= 2);
    }
    assert_eq!(pool.status().limit, 2);
    assert!(pool.stats().resized_down >= 1);
    assert!(manager.live() <= 5);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn drain_waits_for_leases_and_close_refuses_new_gets() {
    let manager = Counting::default();
    let pool = ManagedPool::builder(manager.clone())
        .min_size(0)
        .max_size(4)
        .adaptive(false)
        .background(false)
        .build()
        .unwrap();
    let lease = pool.get().await.unwrap();
    let idle = pool.get().await.unwrap();
    drop(idle);
    // A lease still out: drain gives up at its timeout.
    assert!(!pool.drain(Duration::from_millis(100)).await);
    assert!(matches!(pool.get().await, Err(PoolError::Closed)));
    assert_eq!(manager.live(), 1, "the idle object was retired at close");
    let returner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(lease);
    });
    assert!(pool.drain(Duration::from_secs(5)).await);
    returner.await.unwrap();
    assert_eq!(manager.live(), 0);
    assert_eq!(pool.stats().retired_closed, 2);
}
