//! Against the real test server: MongoDB admission slots, and the driver's
//! real connections seen through CMAP events, opening under load and
//! closing after the idle time.

use std::time::Duration;

use mongodb::bson::{Document, doc};
use stratum_pool::{AdaptiveConfig, MongoPool, Pool, PoolConfig};
use stratum_tests::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmap_status_shows_connections_open_under_load_and_close_when_idle() {
    let db = TestDb::new("pool_cmap").await;
    let config = PoolConfig {
        name: "cmap_test".into(),
        min_size: 0,
        max_size: 8,
        idle_timeout: Some(Duration::from_secs(1)),
        acquire_timeout: Duration::from_secs(20),
        adaptive: AdaptiveConfig {
            enabled: false,
            ..AdaptiveConfig::default()
        },
        ..PoolConfig::default()
    };
    let pool = MongoPool::with_options(stratum_tests::client_options().await, config, 2, true)
        .expect("valid settings");
    let name = db.name().to_owned();

    // Load: 32 tasks through 8 admission slots.
    let mut tasks = Vec::new();
    for t in 0..32 {
        let (pool, name) = (pool.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let client = pool.get().await.expect("an admission slot");
                client
                    .database(&name)
                    .collection::<Document>("load")
                    .insert_one(doc! { "t": t, "i": i })
                    .await
                    .expect("insert");
            }
        }));
    }
    let mut peak_open = 0;
    while !tasks.iter().all(|t| t.is_finished()) {
        let status = pool.status();
        assert!(status.in_use <= 8 && status.size <= 8, "{status:?}");
        peak_open = peak_open.max(status.connections.unwrap().open);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    let count = db
        .db()
        .collection::<Document>("load")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(count, 320);

    let after_load = pool.connections();
    assert!(
        after_load.created >= 2,
        "real connections opened under load: {after_load:?}"
    );
    assert!(
        peak_open >= 1 && after_load.open <= 8,
        "{after_load:?}, peak {peak_open}"
    );
    assert!(after_load.checked_out >= 320, "{after_load:?}");

    // Idle past max idle time (1 s): the driver closes them. Bounded wait,
    // no timing assertion beyond "eventually".
    let mut closed = after_load;
    for _ in 0..300 {
        closed = pool.connections();
        if closed.open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        closed.open, 0,
        "idle connections closed within 30 s: {closed:?}"
    );
    assert!(closed.closed_idle >= 2, "{closed:?}");
    assert_eq!(pool.status().in_use, 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_is_bounded_and_times_out_visibly() {
    let config = PoolConfig {
        name: "admission_test".into(),
        min_size: 1,
        max_size: 2,
        acquire_timeout: Duration::from_millis(50),
        adaptive: AdaptiveConfig {
            enabled: false,
            ..AdaptiveConfig::default()
        },
        ..PoolConfig::default()
    };
    let pool = MongoPool::with_options(stratum_tests::client_options().await, config, 2, true)
        .expect("valid settings");
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    a.database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .unwrap();
    let third = pool.get().await;
    assert!(
        third.as_ref().is_err_and(|e| e.is_timeout()),
        "{:?}",
        third.err()
    );
    assert_eq!(pool.stats().timeouts, 1);
    drop((a, b));
    assert!(pool.drain(Duration::from_secs(5)).await);
}
