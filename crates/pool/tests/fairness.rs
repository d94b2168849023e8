//! FIFO fairness: waiters get objects in the order they started waiting
//! (deadpool's tokio semaphore queues them; this checks it end to end).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use stratum_pool::ManagedPool;

use crate::support::Counting;

#[tokio::test(flavor = "current_thread")]
async fn waiters_are_served_in_arrival_order() {
    let pool = ManagedPool::builder(Counting::default())
        .min_size(0)
        .max_size(1)
        .adaptive(false)
        .acquire_timeout(Duration::from_secs(30))
        .background(false)
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
    assert_eq!(*order.lock(), (0..10).collect::<Vec<_>>());
}
