//! Hit ratio (not timed): stratum's S3-FIFO and exact LRU against moka and
//! quick_cache on a Zipf 0.99 trace (cache = 1 % of keys) and on a hot set
//! interrupted by scans of cold keys. Prints a table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use stratum_cache::{Cache, CacheBuilder, Policy};

/// Replays `trace` as get, then insert on a miss; returns the hit ratio.
fn replay(trace: &[u64], mut get_or_insert: impl FnMut(u64) -> bool) -> f64 {
    let hits = trace.iter().filter(|&&k| get_or_insert(k)).count();
    hits as f64 / trace.len() as f64
}

fn run(name: &str, trace: &[u64], capacity: u64) {
    let stratum = |policy, shards: Option<usize>| {
        let mut b = CacheBuilder::<u64, u64>::new(capacity).policy(policy);
        if let Some(s) = shards {
            b = b.shards(s);
        }
        let c = b.build().unwrap();
        replay(trace, |k| {
            c.get(&k).is_some() || {
                c.insert(k, k);
                false
            }
        })
    };
    let moka = {
        let c = moka::sync::Cache::<u64, u64>::new(capacity);
        replay(trace, |k| {
            c.get(&k).is_some() || {
                c.insert(k, k);
                false
            }
        })
    };
    let quick = {
        let c = quick_cache::sync::Cache::<u64, u64>::new(capacity as usize);
        replay(trace, |k| {
            c.get(&k).is_some() || {
                c.insert(k, k);
                false
            }
        })
    };
    let s3 = stratum(Policy::S3Fifo, None);
    let s3_one = stratum(Policy::S3Fifo, Some(1));
    let lru = stratum(Policy::Lru, None);
    let lru_one = stratum(Policy::Lru, Some(1));
    println!("\n{name} (capacity {capacity}, {} requests)", trace.len());
    println!("| cache | hit ratio |");
    println!("|---|---|");
    for (label, r) in [
        ("stratum S3-FIFO (default shards)", s3),
        ("stratum S3-FIFO (1 shard)", s3_one),
        ("stratum exact LRU (default shards)", lru),
        ("stratum exact LRU (1 shard)", lru_one),
        ("moka 0.12 sync", moka),
        ("quick_cache 0.7 sync", quick),
    ] {
        println!("| {label} | {:.2} % |", r * 100.0);
    }
    let best_peer = moka.max(quick);
    println!("stratum S3-FIFO / best peer ratio: {:.3}", s3 / best_peer);
}

fn main() {
    // Zipf 0.99 over 100 000 keys, cache = 1 % of keys.
    let zipf = support::zipf_trace(100_000, 0.99, 2_000_000, 7);
    run("Zipf 0.99, 100k keys", &zipf, 1_000);

    // A hot set of 800 keys (Zipf 0.8 among themselves) read 20 000 times,
    // then a one-off scan of 5 000 cold keys; 20 rounds. Cache: 1 000.
    let hot = support::zipf_trace(800, 0.8, 20 * 20_000, 11);
    let mut trace = Vec::with_capacity(20 * 25_000);
    let mut cold = 1u64 << 40;
    for round in hot.chunks(20_000) {
        trace.extend_from_slice(round);
        for _ in 0..5_000 {
            trace.push(cold);
            cold += 1;
        }
    }
    run("hot set + cold scans", &trace, 1_000);
}
