//! Reads and writes through the `Repository` (breaker, cache, metrics, span)
//! against what a user would write without it, in the same run:
//!
//! - a cached read (`Repository::get`, a hit) against an uncached one
//!   (`Store::get` + decoding into the type), on the embedded store;
//! - on the test server: a cached read, an uncached read (the repository with
//!   `cache.enabled = false`, so breaker + metrics + span + decoding) and an
//!   insert through the repository, each against the raw `mongodb` driver
//!   (`Collection<Conversation>::find_one` / `insert_one`); and, to show
//!   where an uncached read's overhead goes, the repository with the breaker
//!   and the pool off and `Store::get_raw` + decoding alone.
//!
//! The repository runs with its defaults: breaker and admission pool on.
//!
//! Run: `STRATUM_TEST_MONGODB_URI=$(cargo xtask test-server start) cargo bench -p stratum --bench repository`.
//! Without the variable the MongoDB half is skipped. After the criterion
//! groups an interleaved loop (alternating which side goes first) prints
//! medians, p99s and the ratios. No metrics recorder is installed, as in a
//! program that does not export metrics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use stratum::bson::{Bson, DateTime};
use stratum::models::{Conversation, Document};
use stratum::{MemoryStore, Repository, Store, Stratum, StratumConfig};
use tokio::runtime::Runtime;

const DOCS: usize = 1_000;
const PAIRS: usize = 3_000;

fn configure() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
}

fn conversation(i: usize) -> Conversation {
    let mut c = Conversation::new("gpt-4o", DateTime::from_millis(1_700_000_000_000))
        .with_user(format!("user-{i}"));
    c.title = Some("x".repeat(600));
    c
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut ours: Vec<Duration>, mut peer: Vec<Duration>, peer_name: &str) {
    ours.sort();
    peer.sort();
    let (m_ours, m_peer) = (percentile(&ours, 0.5), percentile(&peer, 0.5));
    println!(
        "{name}: stratum median {m_ours:?} p99 {:?} | {peer_name} median {m_peer:?} p99 {:?} | stratum/{peer_name} ratio {:.3}",
        percentile(&ours, 0.99),
        percentile(&peer, 0.99),
        m_ours.as_secs_f64() / m_peer.as_secs_f64()
    );
}

/// Times `ours` and `peer` alternately, `PAIRS` calls each.
fn interleave<A, B>(rt: &Runtime, mut ours: A, mut peer: B) -> (Vec<Duration>, Vec<Duration>)
where
    A: AsyncFnMut(usize),
    B: AsyncFnMut(usize),
{
    let (mut a, mut b) = (Vec::with_capacity(PAIRS), Vec::with_capacity(PAIRS));
    rt.block_on(async {
        for i in 0..PAIRS {
            let k = i % DOCS;
            if i % 2 == 0 {
                let t = Instant::now();
                ours(k).await;
                a.push(t.elapsed());
                let t = Instant::now();
                peer(k).await;
                b.push(t.elapsed());
            } else {
                let t = Instant::now();
                peer(k).await;
                b.push(t.elapsed());
                let t = Instant::now();
                ours(k).await;
                a.push(t.elapsed());
            }
        }
    });
    (a, b)
}

fn stack(rt: &Runtime, store: Arc<dyn Store>, cache: bool) -> Repository<Conversation> {
    stack_with(rt, store, |config| config.cache.enabled = cache)
}

fn stack_with(
    rt: &Runtime,
    store: Arc<dyn Store>,
    configure: impl FnOnce(&mut StratumConfig),
) -> Repository<Conversation> {
    // The pool's maintenance task needs the runtime.
    let _inside = rt.enter();
    let mut config = StratumConfig::default();
    configure(&mut config);
    config.cache.time_to_live = Some(Duration::from_secs(3600));
    let stratum = Stratum::builder(config).store(store).build().unwrap();
    stratum.repository().unwrap()
}

fn memory(c: &mut Criterion, rt: &Runtime) {
    let store = Arc::new(MemoryStore::new());
    let repo = stack(rt, store.clone(), true);
    let docs: Vec<Conversation> = (0..DOCS).map(conversation).collect();
    rt.block_on(async {
        for d in &docs {
            repo.insert(d).await.unwrap();
            repo.get(&d.id).await.unwrap(); // warm the cache
        }
    });
    let ids: Vec<Bson> = docs.iter().map(|d| Bson::ObjectId(d.id)).collect();
    let mut group = c.benchmark_group("memory_read");
    let mut i = 0;
    group.bench_function("repository_cached_get", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % DOCS;
            let (repo, id) = (&repo, docs[i].id);
            async move { black_box(repo.get(&id).await.unwrap()) }
        })
    });
    group.bench_function("store_get_and_decode", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % DOCS;
            let (store, id) = (&store, &ids[i]);
            async move {
                let doc = store
                    .get(Conversation::COLLECTION, id)
                    .await
                    .unwrap()
                    .unwrap();
                black_box(Conversation::from_bson_checked(doc).unwrap())
            }
        })
    });
    group.finish();
    let (ours, peer) = interleave(
        rt,
        async |k| {
            black_box(repo.get(&docs[k].id).await.unwrap());
        },
        async |k| {
            let doc = store
                .get(Conversation::COLLECTION, &ids[k])
                .await
                .unwrap()
                .unwrap();
            black_box(Conversation::from_bson_checked(doc).unwrap());
        },
    );
    report(
        "memory cached get vs store get + decode",
        ours,
        peer,
        "uncached",
    );
}

/// Times `ours` against the raw driver's typed `find_one({_id})` of the
/// same document (`interleave`), and prints the comparison.
#[cfg(feature = "mongodb")]
fn raw_get_vs(
    (rt, raw, docs): (
        &Runtime,
        &mongodb::Collection<Conversation>,
        &[Conversation],
    ),
    name: &str,
    ours: impl AsyncFnMut(usize),
) {
    let (ours, peer) = interleave(rt, ours, async |k| {
        black_box(
            raw.find_one(stratum::bson::doc! { "_id": docs[k].id })
                .await
                .unwrap(),
        );
    });
    report(name, ours, peer, "raw");
}

/// Times `ours` against the raw driver's typed `insert_one` of a new
/// document, and prints the comparison.
#[cfg(feature = "mongodb")]
fn raw_insert_vs(
    (rt, raw): (&Runtime, &mongodb::Collection<Conversation>),
    name: &str,
    ours: impl AsyncFnMut(usize),
) {
    let (ours, peer) = interleave(rt, ours, async |_| {
        raw.insert_one(conversation(0)).await.unwrap();
    });
    report(name, ours, peer, "raw");
}

#[cfg(feature = "mongodb")]
fn mongo(c: &mut Criterion, rt: &Runtime) {
    use stratum::MongoStore;
    use stratum::bson::doc;

    let Ok(uri) = std::env::var("STRATUM_TEST_MONGODB_URI") else {
        println!("STRATUM_TEST_MONGODB_URI is not set: the MongoDB half is skipped");
        return;
    };
    let (client, db) = rt.block_on(async {
        let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
        let db = client.database(&format!("bench_repository_{}", std::process::id()));
        (client, db)
    });
    let raw = db.collection::<Conversation>(Conversation::COLLECTION);
    let store: Arc<dyn Store> = Arc::new(MongoStore::new(db.clone()));
    let cached = stack(rt, Arc::clone(&store), true);
    let uncached = stack(rt, Arc::clone(&store), false);
    let docs: Vec<Conversation> = (0..DOCS).map(conversation).collect();
    rt.block_on(async {
        for d in &docs {
            cached.insert(d).await.unwrap();
            cached.get(&d.id).await.unwrap();
        }
    });

    let mut group = c.benchmark_group("mongodb");
    let mut i = 0;
    group.bench_function("repository_cached_get", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % DOCS;
            let (repo, id) = (&cached, docs[i].id);
            async move { black_box(repo.get(&id).await.unwrap()) }
        })
    });
    group.bench_function("repository_uncached_get", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % DOCS;
            let (repo, id) = (&uncached, docs[i].id);
            async move { black_box(repo.get(&id).await.unwrap()) }
        })
    });
    group.bench_function("raw_driver_find_one", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % DOCS;
            let (raw, id) = (&raw, docs[i].id);
            async move { black_box(raw.find_one(doc! { "_id": id }).await.unwrap()) }
        })
    });
    group.finish();

    raw_get_vs(
        (rt, &raw, &docs),
        "mongodb uncached get vs raw driver",
        async |k| {
            black_box(uncached.get(&docs[k].id).await.unwrap());
        },
    );

    // Where the uncached read's overhead goes: the repository with the
    // breaker and the pool off, and the store alone (bytes decoded once).
    let bare = stack_with(rt, Arc::clone(&store), |config| {
        config.cache.enabled = false;
        config.breaker.enabled = false;
        config.pool.enabled = false;
    });
    raw_get_vs(
        (rt, &raw, &docs),
        "mongodb uncached get, breaker and pool off, vs raw driver",
        async |k| {
            black_box(bare.get(&docs[k].id).await.unwrap());
        },
    );
    raw_get_vs(
        (rt, &raw, &docs),
        "mongodb Store::get_raw + decode vs raw driver",
        async |k| {
            let id = Bson::ObjectId(docs[k].id);
            let bytes = store
                .get_raw(Conversation::COLLECTION, &id)
                .await
                .unwrap()
                .unwrap();
            black_box(stratum::bson::from_slice::<Conversation>(bytes.as_bytes()).unwrap());
        },
    );
    raw_get_vs(
        (rt, &raw, &docs),
        "mongodb cached get vs raw driver",
        async |k| {
            black_box(cached.get(&docs[k].id).await.unwrap());
        },
    );
    raw_insert_vs((rt, &raw), "mongodb insert vs raw driver", async |_| {
        cached.insert(&conversation(0)).await.unwrap();
    });
    // Where the insert's overhead goes, as for reads above.
    raw_insert_vs(
        (rt, &raw),
        "mongodb insert, cache, breaker and pool off, vs raw driver",
        async |_| {
            bare.insert(&conversation(0)).await.unwrap();
        },
    );
    raw_insert_vs(
        (rt, &raw),
        "mongodb Store::insert_raw of the checked encoding vs raw driver",
        async |_| {
            let encoded = conversation(0).to_raw_checked().unwrap();
            store
                .insert_raw(Conversation::COLLECTION, encoded)
                .await
                .unwrap();
        },
    );
    rt.block_on(async {
        db.drop().await.unwrap();
        drop(client);
    });
}

fn benches(c: &mut Criterion) {
    // `STRATUM_BENCH_RECORDER=1`: with the Prometheus recorder a program
    // serving `/metrics` has (no listener), so metric updates cost what they
    // cost in production; without it every update is a no-op.
    if std::env::var_os("STRATUM_BENCH_RECORDER").is_some_and(|v| v == "1") {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("no other recorder is installed in this bench");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    memory(c, &rt);
    #[cfg(feature = "mongodb")]
    mongo(c, &rt);
}

criterion_group! { name = group; config = configure(); targets = benches }
criterion_main!(group);
