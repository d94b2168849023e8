//! Exhaustion: 64 tasks on a pool of 4 with a short acquire timeout. No
//! deadlock, every task either gets a lease or a timeout error, and the pool
//! is whole afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stratum_pool::{ManagedPool, PoolError};

use crate::support::Counting;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_on_four_objects() {
    let manager = Counting::default();
    let pool = ManagedPool::builder(manager.clone())
        .min_size(0)
        .max_size(4)
        .adaptive(false)
        .acquire_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let leased = Arc::new(AtomicUsize::new(0));
    let timed_out = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (pool, leased, timed_out) = (pool.clone(), leased.clone(), timed_out.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..8 {
                match pool.get().await {
                    Ok(lease) => {
                        leased.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        drop(lease);
                    }
                    Err(PoolError::Timeout(_)) => {
                        timed_out.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(other) => panic!("only a lease or a timeout is acceptable, got {other}"),
                }
            }
        }));
    }
    // A liveness bound, not a timing assertion: a deadlock never finishes.
    let all = async {
        for task in tasks {
            task.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("no deadlock: every task finished");
    let (ok, timeouts) = (
        leased.load(Ordering::SeqCst),
        timed_out.load(Ordering::SeqCst),
    );
    assert_eq!(ok + timeouts, 64 * 8);
    assert!(ok >= 4, "some tasks got a lease ({ok})");
    assert_eq!(pool.stats().timeouts, timeouts as u64);
    // Whole afterwards: nothing out, nothing waiting, never above 4, and
    // all four objects can be leased at once.
    let status = pool.status();
    assert_eq!((status.in_use, status.waiting), (0, 0), "{status:?}");
    assert!(
        status.size <= 4 && status.size == manager.live(),
        "{status:?}"
    );
    let mut all_four = Vec::new();
    for _ in 0..4 {
        all_four.push(pool.get().await.unwrap());
    }
    assert_eq!(manager.live(), 4);
}

/// A return racing a caller that joins the queue must still reach it. Two
/// threads, released together by a spinning barrier, thousands of times: one
/// returns the only object while the other asks for it; with a health check
/// on every checkout (a zero skip window) every return goes back through
/// deadpool. A missed wake-up would leave the permit free with the caller
/// queued until the sweeper's next tick, 225 s away with the hour-long
/// acquire timeout; the 60 s guard only turns such a hang into a failure.
#[test]
fn a_return_racing_a_caller_joining_the_queue_always_reaches_it() {
    // Without a skip window the object goes back through deadpool; with
    // one it is parked on the ready stack or handed over.
    for skip_window in [Duration::ZERO, Duration::from_millis(500)] {
        return_races_a_caller(skip_window);
    }
}

fn return_races_a_caller(skip_window: Duration) {
    const EPISODES: usize = 20_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let manager = Counting::default();
    let pool = runtime.block_on(async {
        ManagedPool::builder(manager.clone())
            .min_size(0)
            .max_size(1)
            .adaptive(false)
            .validation_skip_window(skip_window)
            .acquire_timeout(Duration::from_secs(3600))
            .build()
            .unwrap()
    });
    // Each side adds one per episode and spins until the other has too.
    let arrived = Arc::new(AtomicUsize::new(0));
    let (done, episode_done) = std::sync::mpsc::channel();
    let caller = {
        let (pool, arrived, handle) = (pool.clone(), arrived.clone(), runtime.handle().clone());
        std::thread::spawn(move || {
            for episode in 0..EPISODES {
                arrived.fetch_add(1, Ordering::SeqCst);
                while arrived.load(Ordering::SeqCst) < 2 * (episode + 1) {
                    std::hint::spin_loop();
                }
                drop(handle.block_on(pool.get()).unwrap());
                if done.send(()).is_err() {
                    return;
                }
            }
        })
    };
    for episode in 0..EPISODES {
        let lease = runtime.block_on(pool.get()).unwrap();
        arrived.fetch_add(1, Ordering::SeqCst);
        while arrived.load(Ordering::SeqCst) < 2 * (episode + 1) {
            std::hint::spin_loop();
        }
        drop(lease);
        episode_done
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "a caller was left queued beside a free object (skip window {skip_window:?})"
                )
            });
    }
    caller.join().unwrap();
    assert_eq!(manager.live(), 1);
}
