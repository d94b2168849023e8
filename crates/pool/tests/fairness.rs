//! FIFO fairness: waiters get objects in the order they started waiting
//! (with the background task, the pool's hand-off queue; without it,
//! deadpool's tokio semaphore), checked end to end; and a returned object
//! handed to a waiter that is cancelled before it runs reaches the next one.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use stratum_pool::ManagedPool;

use crate::support::Counting;

#[tokio::test(flavor = "current_thread")]
async fn waiters_are_served_in_arrival_order() {
    for background in [false, true] {
        served_in_arrival_order(background).await;
    }
}

async fn served_in_arrival_order(background: bool) {
    let pool = ManagedPool::builder(Counting::default())
        .min_size(0)
        .max_size(1)
        .adaptive(false)
        .acquire_timeout(Duration::from_secs(30))
        .background(background)
        .build()
        .unwrap();
    let first = pool.get().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (p, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let lease = p.get().await.unwrap();
            order.lock().push(i);
            tokio::task::yield_now().await;
            drop(lease);
        }));
        // On one thread, the new task runs until it queues in `get`.
        while pool.status().waiting < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    drop(first);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        *order.lock(),
        (0..10).collect::<Vec<_>>(),
        "background task: {background}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_object_handed_to_a_cancelled_waiter_reaches_the_next_one() {
    let manager = Counting::default();
    let pool = ManagedPool::builder(manager.clone())
        .min_size(0)
        .max_size(1)
        .adaptive(false)
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let first = pool.get().await.unwrap();
    let held_id = first.id;
    let mut waiters = Vec::new();
    for i in 0..2 {
        let p = pool.clone();
        waiters.push(tokio::spawn(async move { p.get().await.unwrap().id }));
        while pool.status().waiting < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    // The object goes to the first waiter, which is cancelled before it
    // runs: it must pass the object on, not strand it or drop it.
    drop(first);
    waiters[0].abort();
    let second = waiters.pop().unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the second waiter was served")
        .unwrap();
    assert_eq!(got, held_id, "the same object, handed over");
    assert_eq!(manager.created.load(std::sync::atomic::Ordering::SeqCst), 1);
    let status = pool.status();
    assert_eq!((status.in_use, status.waiting), (0, 0), "{status:?}");
}
