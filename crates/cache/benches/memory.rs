//! Memory per entry (not timed): each cache is filled with 1 000 000
//! `u64 -> u64` entries in a fresh child process, and the growth of the
//! process's resident set (VmRSS) is divided by the entry count. The 16
//! bytes of key and value are subtracted to give the overhead per entry.
//! Three more cases fill each cache with 3 x as many distinct keys first, so
//! the ghost queues (ours and quick_cache's) are as full as they get, and
//! with `Admission::Frequency` our frequency sketch is allocated.
//! (The workspace forbids `unsafe`, so a counting global allocator is out;
//! RSS in a fresh process at this size is accurate to well under 1 %.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::process::Command;
use std::time::Duration;

use stratum_cache::{Admission, Cache, CacheBuilder, Policy};

const ENTRIES: u64 = 1_000_000;
const PAYLOAD: f64 = 16.0;
const CASES: [&str; 8] = [
    "stratum-s3fifo",
    "stratum-lru",
    "moka",
    "quick_cache",
    "std-hashmap",
    "stratum-s3fifo-churned",
    "quick_cache-churned",
    "stratum-s3fifo-tinylfu-churned",
];

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Fills one cache and prints the RSS growth in bytes.
fn measure(case: &str) {
    let before = rss_bytes();
    let mut stored = ENTRIES;
    let keep: Box<dyn std::any::Any> = match case {
        // After 3 x ENTRIES distinct keys: the ghost (ours and
        // quick_cache's) is as full as it gets.
        "stratum-s3fifo-churned" | "stratum-s3fifo-tinylfu-churned" => {
            let admission = if case == "stratum-s3fifo-churned" {
                Admission::Ghost
            } else {
                // Its frequency sketch is allocated once the cache is full.
                Admission::Frequency
            };
            let c = CacheBuilder::<u64, u64>::new(ENTRIES)
                .admission(admission)
                .time_to_live(Duration::from_secs(3_600))
                .build()
                .unwrap();
            for k in 0..3 * ENTRIES {
                c.insert(k, k);
            }
            stored = c.len() as u64;
            Box::new(c)
        }
        "quick_cache-churned" => {
            let c = quick_cache::sync::Cache::<u64, u64>::new(ENTRIES as usize);
            for k in 0..3 * ENTRIES {
                c.insert(k, k);
            }
            stored = c.len() as u64;
            Box::new(c)
        }
        "stratum-s3fifo" | "stratum-lru" => {
            let policy = if case == "stratum-lru" {
                Policy::Lru
            } else {
                Policy::S3Fifo
            };
            let c = CacheBuilder::<u64, u64>::new(ENTRIES)
                .policy(policy)
                .time_to_live(Duration::from_secs(3_600))
                .build()
                .unwrap();
            for k in 0..ENTRIES {
                c.insert(k, k);
            }
            // The capacity is split evenly between shards, so a shard that
            // receives more than its share evicts: count what is stored.
            stored = c.len() as u64;
            Box::new(c)
        }
        "moka" => {
            let c = moka::sync::Cache::<u64, u64>::new(ENTRIES);
            for k in 0..ENTRIES {
                c.insert(k, k);
            }
            c.run_pending_tasks();
            stored = c.entry_count();
            Box::new(c)
        }
        "quick_cache" => {
            let c = quick_cache::sync::Cache::<u64, u64>::new(ENTRIES as usize);
            for k in 0..ENTRIES {
                c.insert(k, k);
            }
            stored = c.len() as u64;
            Box::new(c)
        }
        _ => {
            let mut c = std::collections::HashMap::<u64, u64>::new();
            for k in 0..ENTRIES {
                c.insert(k, k);
            }
            Box::new(c)
        }
    };
    let after = rss_bytes();
    black_box(&keep);
    println!("{} {stored}", after.saturating_sub(before));
}

fn main() {
    if let Ok(case) = std::env::var("STRATUM_MEMORY_CASE") {
        measure(&case);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    println!("\nmemory for {ENTRIES} u64 -> u64 entries (RSS growth in a fresh process)");
    println!("| cache | entries stored | bytes/entry | overhead bytes/entry |");
    println!("|---|---|---|---|");
    let mut per_entry = Vec::new();
    for case in CASES {
        let out = Command::new(&exe)
            .env("STRATUM_MEMORY_CASE", case)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().unwrap());
        let (bytes, stored) = (fields.next().unwrap(), fields.next().unwrap());
        let each = bytes / stored;
        println!("| {case} | {stored} | {each:.1} | {:.1} |", each - PAYLOAD);
        per_entry.push(each);
    }
    println!(
        "stratum-s3fifo / moka bytes per entry: {:.2}; stratum-s3fifo / quick_cache: {:.2}; after churn (ghosts full): {:.2}",
        per_entry[0] / per_entry[2],
        per_entry[0] / per_entry[3],
        per_entry[5] / per_entry[6]
    );
}
