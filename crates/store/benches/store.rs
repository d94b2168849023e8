//! `MongoStore` against the raw `mongodb` driver on the same server, in the
//! same run (get by id and insert of ~1 KB documents), and `MemoryStore` get
//! against a plain locked `HashMap` clone.
//!
//! Run: `STRATUM_TEST_MONGODB_URI=$(cargo xtask test-server start) cargo bench -p stratum --bench store`.
//! Without the variable the MongoDB half is skipped with a message. After the
//! criterion groups, an interleaved loop times both sides alternately and
//! prints medians, p99s and the stratum/raw ratios.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use parking_lot::RwLock;
use stratum_store::bson::{Bson, Document, doc};
use stratum_store::{MemoryStore, Store};
use tokio::runtime::Runtime;

const DOCS: i32 = 1_000;
const COLLECTION: &str = "bench_docs";
/// Iterations per side in the interleaved ratio loop.
const PAIRS: usize = 3_000;

fn payload(i: i32) -> Document {
    // About 1 KB, like a short conversation turn.
    doc! { "_id": i, "role": "assistant", "tokens": i * 3, "text": "x".repeat(960) }
}

fn fresh(i: usize) -> Document {
    doc! { "role": "user", "n": i as i64, "text": "y".repeat(960) }
}

fn configure() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Median and p99 of each side, and the ratio of medians.
fn report(name: &str, mut ours: Vec<Duration>, mut peer: Vec<Duration>, peer_name: &str) {
    ours.sort();
    peer.sort();
    let (m_ours, m_peer) = (percentile(&ours, 0.5), percentile(&peer, 0.5));
    println!(
        "{name}: stratum median {:?} p99 {:?} | {peer_name} median {:?} p99 {:?} | stratum/{peer_name} ratio {:.3}",
        m_ours,
        percentile(&ours, 0.99),
        m_peer,
        percentile(&peer, 0.99),
        m_ours.as_secs_f64() / m_peer.as_secs_f64()
    );
}

fn memory(c: &mut Criterion, rt: &Runtime) {
    let store = MemoryStore::new();
    let map: RwLock<HashMap<i32, Document>> = RwLock::new(HashMap::new());
    rt.block_on(async {
        for i in 0..DOCS {
            store.insert(COLLECTION, payload(i)).await.unwrap();
            map.write().insert(i, payload(i));
        }
    });
    let mut group = c.benchmark_group("memory_get");
    let mut i = 0;
    group.bench_function("stratum_memory_store", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % DOCS;
            let store = &store;
            async move { black_box(store.get(COLLECTION, &Bson::Int32(i)).await.unwrap()) }
        })
    });
    group.bench_function("rwlock_hashmap_clone", |b| {
        b.iter(|| {
            i = (i + 1) % DOCS;
            black_box(map.read().get(&i).cloned())
        })
    });
    group.finish();

    let (mut ours, mut peer) = (Vec::with_capacity(PAIRS), Vec::with_capacity(PAIRS));
    rt.block_on(async {
        for n in 0..PAIRS {
            let id = (n as i32) % DOCS;
            let t = Instant::now();
            black_box(store.get(COLLECTION, &Bson::Int32(id)).await.unwrap());
            ours.push(t.elapsed());
            let t = Instant::now();
            black_box(map.read().get(&id).cloned());
            peer.push(t.elapsed());
        }
    });
    report("memory get", ours, peer, "hashmap");
}

fn mongo(c: &mut Criterion, rt: &Runtime) {
    let Ok(uri) = std::env::var("STRATUM_TEST_MONGODB_URI") else {
        println!(
            "SKIPPED MongoStore vs raw driver: STRATUM_TEST_MONGODB_URI is not set \
             (start a server with `cargo xtask test-server start`)"
        );
        return;
    };
    let name = format!("stratum_bench_{}", std::process::id());
    let (raw, store) = rt.block_on(async {
        let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
        let db = client.database(&name);
        db.drop().await.unwrap();
        let raw = db.collection::<Document>(COLLECTION);
        raw.insert_many((0..DOCS).map(payload)).await.unwrap();
        (raw, stratum_store::MongoStore::new(db))
    });

    let mut group = c.benchmark_group("mongo_get_by_id");
    let mut i = 0;
    group.bench_function("stratum_mongo_store", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % DOCS;
            let store = &store;
            async move { black_box(store.get(COLLECTION, &Bson::Int32(i)).await.unwrap()) }
        })
    });
    group.bench_function("raw_driver", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % DOCS;
            let raw = &raw;
            async move { black_box(raw.find_one(doc! { "_id": i }).await.unwrap()) }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("mongo_insert");
    let mut n = 0;
    group.bench_function("stratum_mongo_store", |b| {
        b.to_async(rt).iter(|| {
            n += 1;
            let store = &store;
            async move { black_box(store.insert(COLLECTION, fresh(n)).await.unwrap()) }
        })
    });
    group.bench_function("raw_driver", |b| {
        b.to_async(rt).iter(|| {
            n += 1;
            let raw = &raw;
            async move { black_box(raw.insert_one(fresh(n)).await.unwrap()) }
        })
    });
    group.finish();

    // Interleaved, alternating which side goes first, so drift in the server
    // (its cache, its log) hits both sides alike.
    rt.block_on(async {
        let (mut ours, mut peer) = (Vec::with_capacity(PAIRS), Vec::with_capacity(PAIRS));
        for k in 0..PAIRS {
            let id = (k as i32 * 7) % DOCS;
            for side in [k % 2, 1 - k % 2] {
                let t = Instant::now();
                if side == 0 {
                    black_box(store.get(COLLECTION, &Bson::Int32(id)).await.unwrap());
                    ours.push(t.elapsed());
                } else {
                    black_box(raw.find_one(doc! { "_id": id }).await.unwrap());
                    peer.push(t.elapsed());
                }
            }
        }
        report("mongo get by id", ours, peer, "raw");

        let (mut ours, mut peer) = (Vec::with_capacity(PAIRS), Vec::with_capacity(PAIRS));
        for k in 0..PAIRS {
            for side in [k % 2, 1 - k % 2] {
                let t = Instant::now();
                if side == 0 {
                    black_box(store.insert(COLLECTION, fresh(k)).await.unwrap());
                    ours.push(t.elapsed());
                } else {
                    black_box(raw.insert_one(fresh(k)).await.unwrap());
                    peer.push(t.elapsed());
                }
            }
        }
        report("mongo insert", ours, peer, "raw");
        raw.client().database(&name).drop().await.unwrap();
    });
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    memory(c, &rt);
    mongo(c, &rt);
}

criterion_group! {
    name = store;
    config = configure();
    targets = benches
}
criterion_main!(store);
