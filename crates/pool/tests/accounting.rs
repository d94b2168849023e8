//! The accounting model: under random sequences of get, drop, discard,
//! resize and clock advances (with maintenance passes), the pool never has
//! more live resources than `max_size`, a get succeeds exactly when fewer
//! leases than the limit are out, and the status always adds up. Each case
//! runs twice: without the background task (callers wait in deadpool) and
//! with it (the sweeper, the hand-off queue and the ready stack that
//! returning leases park on).

use std::sync::atomic::Ordering;
use std::time::Duration;

use proptest::prelude::*;
use stratum_pool::{ManagedPool, ManualClock, PoolError};

use crate::support::Counting;

#[derive(Debug, Clone)]
enum Op {
    Get,
    Drop(usize),
    Discard(usize),
    Resize(usize),
    Advance(u64),
    FailChecks(bool),
}

fn op(max: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Get),
        3 => (0usize..16).prop_map(Op::Drop),
        1 => (0usize..16).prop_map(Op::Discard),
        2 => (0usize..max + 3).prop_map(Op::Resize),
        2 => (0u64..90_000).prop_map(Op::Advance),
        1 => any::<bool>().prop_map(Op::FailChecks),
    ]
}

fn case() -> impl Strategy<Value = (usize, usize, Vec<Op>, bool)> {
    (1usize..8)
        .prop_flat_map(|max| (Just(max), 0..=max))
        .prop_flat_map(|(max, min)| {
            (
                Just(max),
                Just(min),
                proptest::collection::vec(op(max), 1..60),
                any::<bool>(),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn accounting_matches_the_model((max, min, ops, background) in case()) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let manager = Counting::default();
            let clock = ManualClock::new();
            let pool = ManagedPool::builder(manager.clone())
                .min_size(min)
                .max_size(max)
                .adaptive(false)
                .acquire_timeout(Duration::from_millis(50))
                .idle_timeout(Some(Duration::from_secs(60)))
                .max_lifetime(Some(Duration::from_secs(300)))
                .validation_skip_window(Duration::from_secs(1))
                .clock(clock.clone())
                .background(background)
                .build()
                .unwrap();
            let mut limit = max;
            let mut held = Vec::new();
            for op in ops {
                match op {
                    Op::Get => {
                        let got = pool.get().await;
                        if held.len() < limit {
                            held.push(got.expect("a get under the limit succeeds"));
                        } else {
                            assert!(matches!(got, Err(PoolError::Timeout(_))), "a get at the limit times out");
                        }
                    }
                    Op::Drop(i) if !held.is_empty() => {
                    drop(held.remove(i % held.len()));
                    // A returned object is reused as long as it is fresh
                    // (parked, or in deadpool), never checked, never lost.
                    if held.len() < limit {
                        let fresh = pool.get().await.expect("a returned object is there");
                        assert_eq!(pool.status().in_use, held.len() + 1);
                        drop(fresh);
                    }
                }
                    Op::Discard(i) if !held.is_empty() => held.remove(i % held.len()).discard(),
                    Op::Resize(n) => {
                        limit = n.clamp(min.max(1), max);
                        assert_eq!(pool.resize(n), limit);
                    }
                    Op::Advance(ms) => {
                        clock.advance(Duration::from_millis(ms));
                        pool.run_maintenance().await;
                    }
                    Op::FailChecks(fail) => manager.fail_checks.store(fail, Ordering::SeqCst),
                    Op::Drop(_) | Op::Discard(_) => {}
                }
                let status = pool.status();
                assert!(manager.live() <= max, "live {} > max {max}", manager.live());
                assert_eq!(status.size, manager.live(), "{status:?}");
                assert_eq!(status.in_use, held.len(), "{status:?}");
                assert_eq!(status.idle + status.in_use, status.size);
                assert_eq!(status.limit, limit);
                assert_eq!(status.waiting, 0);
            }
            // Every lease comes back: nothing in use, all live objects idle.
            held.clear();
            manager.fail_checks.store(false, Ordering::SeqCst);
            pool.run_maintenance().await;
            let status = pool.status();
            assert_eq!(status.in_use, 0);
            assert_eq!(status.idle, status.size);
            assert_eq!(status.size, manager.live());
            assert!(status.size >= min.min(limit) && status.size <= limit, "{status:?}");
            // And the whole limit can be leased again.
            let mut again = Vec::new();
            for _ in 0..limit {
                again.push(pool.get().await.expect("the pool is whole"));
            }
            assert!(pool.get().await.is_err());
            let stats = pool.stats();
            assert_eq!(stats.created - stats.retired(), manager.live() as u64);
        });
    }
}

/// deadpool's own shrink keeps permits when fewer objects than the new limit
/// are live, so shrink-then-grow could overshoot `max_size`; reservations
/// prevent that.
#[tokio::test(start_paused = true)]
async fn shrink_then_grow_never_overshoots_the_maximum() {
    let manager = Counting::default();
    let pool = ManagedPool::builder(manager.clone())
        .min_size(0)
        .max_size(8)
        .adaptive(false)
        .acquire_timeout(Duration::from_millis(10))
        .background(false)
        .build()
        .unwrap();
    let three: Vec<_> = [(); 3].iter().map(|_| pool.get()).collect();
    let mut held = Vec::new();
    for get in three {
        held.push(get.await.unwrap());
    }
    assert_eq!(pool.resize(4), 4);
    assert_eq!(pool.resize(8), 8);
    while let Ok(lease) = pool.get().await {
        held.push(lease);
    }
    assert_eq!(held.len(), 8);
    assert_eq!(manager.live(), 8);
}
