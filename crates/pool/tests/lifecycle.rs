//! Idle and lifetime reaping (with jitter, never below the minimum), the
//! health-check skip window, and leak detection, all on a manual clock.
//! Each runs without the background task (objects come back to deadpool)
//! and with it (objects come back to the ready stack in front of deadpool).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;
use stratum_pool::{Builder, ManagedPool, ManualClock, jitter_fraction};

use crate::support::{Counting, lease_and_return};

fn builder(manager: &Counting, clock: &ManualClock, background: bool) -> Builder<Counting> {
    ManagedPool::builder(manager.clone())
        .min_size(2)
        .max_size(10)
        .adaptive(false)
        .jitter(0.0)
        .clock(clock.clone())
        .background(background)
}

#[tokio::test(start_paused = true)]
async fn idle_objects_are_reaped_but_never_below_the_minimum() {
    for background in [false, true] {
        idle_objects_are_reaped_but_never_below_the_minimum_with(background).await;
    }
}

async fn idle_objects_are_reaped_but_never_below_the_minimum_with(background: bool) {
    let (manager, clock) = (Counting::default(), ManualClock::new());
    let pool = builder(&manager, &clock, background)
        .idle_timeout(Some(Duration::from_secs(60)))
        .max_lifetime(None)
        .build()
        .unwrap();
    lease_and_return(&pool, 6).await;
    assert_eq!(pool.status().size, 6);
    clock.advance(Duration::from_secs(59));
    pool.run_maintenance().await;
    assert_eq!(pool.status().size, 6, "not idle long enough yet");
    clock.advance(Duration::from_secs(1));
    pool.run_maintenance().await;
    assert_eq!(pool.status().size, 2, "reaped down to min_size");
    assert_eq!(pool.stats().retired_idle_timeout, 4);
    clock.advance(Duration::from_secs(3600));
    pool.run_maintenance().await;
    assert_eq!(pool.status().size, 2, "never below min_size");
    assert_eq!(manager.live(), 2);
}

#[tokio::test(start_paused = true)]
async fn expired_objects_are_replaced_and_jitter_spreads_expiry() {
    for background in [false, true] {
        expired_objects_are_replaced_and_jitter_spreads_expiry_with(background).await;
    }
}

async fn expired_objects_are_replaced_and_jitter_spreads_expiry_with(background: bool) {
    let (manager, clock) = (Counting::default(), ManualClock::new());
    let pool = builder(&manager, &clock, background)
        .jitter(0.1)
        .idle_timeout(None)
        .max_lifetime(Some(Duration::from_secs(100)))
        .build()
        .unwrap();
    pool.run_maintenance().await; // warms min_size
    assert_eq!(pool.status().size, 2);
    assert_eq!(pool.stats().created, 2);
    // Jitter shortens lifetimes by up to 10 %: nothing expires before 90 s...
    clock.advance(Duration::from_secs(89));
    pool.run_maintenance().await;
    assert_eq!(pool.stats().retired_max_lifetime, 0);
    // ...and everything has by 100 s, replaced to keep min_size warm.
    clock.advance(Duration::from_secs(11));
    pool.run_maintenance().await;
    assert_eq!(pool.stats().retired_max_lifetime, 2);
    assert_eq!(pool.stats().created, 4);
    assert_eq!(pool.status().size, 2);
}

#[test]
fn jitter_fractions_are_bounded_and_spread() {
    let fractions: Vec<f64> = (0..1000).map(|id| jitter_fraction(42, id, 0.025)).collect();
    assert!(fractions.iter().all(|f| (0.0..0.025).contains(f)));
    let below_half = fractions.iter().filter(|f| **f < 0.0125).count();
    assert!(
        (400..600).contains(&below_half),
        "{below_half} of 1000 below the median"
    );
    assert_eq!(jitter_fraction(42, 7, 0.025), jitter_fraction(42, 7, 0.025));
    assert_eq!(jitter_fraction(42, 7, 0.0), 0.0);
}

#[tokio::test(start_paused = true)]
async fn health_check_is_skipped_inside_the_window_and_retires_failures() {
    for background in [false, true] {
        health_check_is_skipped_inside_the_window_and_retires_failures_with(background).await;
    }
}

async fn health_check_is_skipped_inside_the_window_and_retires_failures_with(background: bool) {
    let (manager, clock) = (Counting::default(), ManualClock::new());
    let pool = builder(&manager, &clock, background)
        .min_size(0)
        .validation_skip_window(Duration::from_millis(500))
        .build()
        .unwrap();
    let first_id = pool.get().await.unwrap().id;
    let again = pool.get().await.unwrap();
    assert_eq!(
        (again.id, manager.checks()),
        (first_id, 0),
        "returned just now: no check"
    );
    drop(again);
    clock.advance(Duration::from_secs(1));
    drop(pool.get().await.unwrap());
    assert_eq!(manager.checks(), 1, "idle past the window: checked");
    manager.fail_checks.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(1));
    let replaced = pool.get().await.unwrap();
    assert_ne!(replaced.id, first_id, "the unhealthy object was replaced");
    assert_eq!(pool.stats().retired_health_check, 1);
    assert_eq!(manager.live(), 1);
}

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_lease_held_too_long_is_reported_once_with_where_it_was_taken() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (manager, clock) = (Counting::default(), ManualClock::new());
    let pool = builder(&manager, &clock, false)
        .leak_detection_threshold(Some(Duration::from_secs(5)))
        .build()
        .unwrap();
    let line = line!() + 1;
    let leaked = pool.get().await.unwrap();
    clock.advance(Duration::from_secs(4));
    pool.run_maintenance().await;
    assert_eq!(pool.stats().leaks, 0);
    clock.advance(Duration::from_secs(2));
    pool.run_maintenance().await;
    pool.run_maintenance().await;
    assert_eq!(pool.stats().leaks, 1, "reported once");
    let text = String::from_utf8(logs.0.lock().clone()).unwrap();
    let place = format!("lifecycle.rs:{line}");
    assert!(
        text.contains("possible leak") && text.contains(&place),
        "{text}"
    );
    drop(leaked);
    let text = String::from_utf8(logs.0.lock().clone()).unwrap();
    assert!(text.contains("came back"), "{text}");
}
