//! The ready stack in front of deadpool (with the background task, a lease
//! that comes back while nobody queues parks its object there): reuse
//! without a health check inside the skip window, and every way out of it
//! (stale, expired, shrink, close, the pool dropped) on a manual clock.

use std::time::Duration;

use stratum_pool::{Builder, ManagedPool, ManualClock};

use crate::support::{Counting, lease_and_return};

fn builder(manager: &Counting, clock: &ManualClock) -> Builder<Counting> {
    ManagedPool::builder(manager.clone())
        .min_size(0)
        .max_size(4)
        .adaptive(false)
        .jitter(0.0)
        .validation_skip_window(Duration::from_millis(500))
        .clock(clock.clone())
        .background(true)
}

#[tokio::test(start_paused = true)]
async fn parked_objects_are_idle_and_reused_newest_first_without_a_check() {
    let (manager, clock) = (Counting::default(), ManualClock::new());
    let pool = builder(&manager, &clock).build().unwrap();
    let ids = lease_and_return(&pool, 3).await;
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.in_use),
        (3, 3, 0),
        "{status:?}"
    );
    let again = pool.get().await.unwrap();
    assert_eq!(again.id, ids[2], "the last one back is the first out");
    assert_eq!(manager.checks(), 0, "back inside the skip window: no check");
    let status = pool.status();
    assert_eq!((status.idle, status.in_use), (2, 1), "{status:?}");
    assert_eq!(manager.created.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_stale_parked_object_is_checked_and_a_failing_one_replaced() {
    let (manager, clock) = (Counting::default(), ManualClock::new());
    let pool = builder(&manager, &clock).build().unwrap();
    let ids = lease_and_return(&pool, 2).await;
    clock.advance(Duration::from_secs(1));
    let checked = pool.get().await.unwrap();
    assert!(ids.contains(&checked.id));
    assert!(manager.checks() >= 1, "idle past the window: checked");
    drop(checked);
    manager
        .fail_checks
        .store(true, std::sync::atomic::Ordering::SeqCst);
    clock.advance(Duration::from_secs(1));
    let fresh = pool.get().await.unwrap();
    assert!(
        !ids.contains(&fresh.id),
        "both failed their check: a new one"
    );
    assert_eq!(pool.stats().retired_health_check, 2);
    assert_eq!(manager.live(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_expired_parked_object_is_retired_at_checkout_and_replaced() {
    let (manager, clock) = (Counting::default(), ManualClock::new());
    // A skip window longer than the lifetime: the object is still fresh
    // when it expires, so only the lifetime check can stop it.
    let pool = builder(&manager, &clock)
        .validation_skip_window(Duration::from_secs(600))
        .max_lifetime(Some(Duration::from_secs(100)))
        .idle_timeout(None)
        .build()
        .unwrap();
    let ids = lease_and_return(&pool, 1).await;
    clock.advance(Duration::from_secs(101));
    let replaced = pool.get().await.unwrap();
    assert_ne!(replaced.id, ids[0]);
    assert_eq!(pool.stats().retired_max_lifetime, 1);
    assert_eq!(manager.live(), 1);
}

#[tokio::test(start_paused = true)]
async fn maintenance_reaps_parked_objects_idle_too_long() {
    let (manager, clock) = (Counting::default(), ManualClock::new());
    let pool = builder(&manager, &clock)
        .min_size(1)
        .idle_timeout(Some(Duration::from_secs(60)))
        .build()
        .unwrap();
    lease_and_return(&pool, 4).await;
    assert_eq!(pool.status().idle, 4);
    clock.advance(Duration::from_secs(61));
    pool.run_maintenance().await;
    assert_eq!(pool.status().size, 1, "reaped down to min_size");
    assert_eq!(pool.stats().retired_idle_timeout, 3);
    assert_eq!(manager.live(), 1);
}

#[tokio::test(start_paused = true)]
async fn shrinking_retires_parked_objects() {
    let (manager, clock) = (Counting::default(), ManualClock::new());
    let pool = builder(&manager, &clock).build().unwrap();
    lease_and_return(&pool, 4).await;
    assert_eq!(pool.resize(2), 2);
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.limit),
        (2, 2, 2),
        "{status:?}"
    );
    assert_eq!(manager.live(), 2);
    assert_eq!(pool.stats().retired_shrink, 2);
}

#[tokio::test(start_paused = true)]
async fn close_and_drop_retire_parked_objects() {
    let (manager, clock) = (Counting::default(), ManualClock::new());
    let pool = builder(&manager, &clock).build().unwrap();
    lease_and_return(&pool, 3).await;
    assert!(pool.drain(Duration::from_secs(1)).await, "nothing is out");
    assert_eq!(manager.live(), 0);
    assert_eq!(pool.stats().retired_closed, 3);

    let manager = Counting::default();
    let pool = builder(&manager, &clock).build().unwrap();
    lease_and_return(&pool, 3).await;
    drop(pool);
    assert_eq!(manager.live(), 0, "parked objects go with the pool");
}
