//! The workload: the document type, the popularity skew, and the tasks that
//! read, insert and update through the facade while recording what happened.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use stratum::models::{Document, ValidationError};
use stratum::{Origin, Repository, RepositoryError, Update};

/// One document of the load collection: an id the program chooses, a
/// version every acknowledged update increments, and a payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoadDoc {
    #[serde(rename = "_id")]
    pub(crate) id: i64,
    /// 0 when inserted; `$inc`-ed by 1 by every update.
    pub(crate) version: i64,
    pub(crate) payload: String,
    pub(crate) schema_version: i32,
}

impl LoadDoc {
    pub(crate) fn new(id: i64, payload: &str) -> LoadDoc {
        LoadDoc {
            id,
            version: 0,
            payload: payload.to_owned(),
            schema_version: Self::SCHEMA_VERSION,
        }
    }
}

impl Document for LoadDoc {
    const COLLECTION: &'static str = "load_documents";
    const SCHEMA_VERSION: i32 = 1;
    type Id = i64;

    fn id(&self) -> &i64 {
        &self.id
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.version < 0 {
            return Err(ValidationError::OutOfRange {
                field: "version".into(),
                value: self.version,
                min: 0,
                max: i64::MAX,
            });
        }
        Ok(())
    }
}

/// Samples ranks `0..n` with probability proportional to `1 / (rank + 1)^s`:
/// a few documents are hot, most are cold, so the cache has work to do.
pub(crate) struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub(crate) fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=n.max(1))
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    pub(crate) fn sample(&self, rng: &mut impl Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

/// The three operations, as the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    Read,
    Insert,
    Update,
}

impl Op {
    pub(crate) const ALL: [Op; 3] = [Op::Read, Op::Insert, Op::Update];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Read => "read by id",
            Op::Insert => "insert",
            Op::Update => "update",
        }
    }
}

/// Latency histograms are sharded by task so 10,000 tasks do not queue on one lock.
const SHARDS: usize = 16;
/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
const HIGHEST_MICROS: u64 = 600_000_000;

// The bounds are constants within hdrhistogram's rules (low >= 1,
// high >= 2 * low, at most 5 digits), so construction cannot fail.
#[allow(clippy::expect_used)]
pub(crate) fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("valid histogram bounds")
}

/// Latencies of one kind of outcome, sharded.
pub(crate) struct Latencies {
    shards: Vec<Mutex<Histogram<u32>>>,
}

impl Latencies {
    fn new() -> Latencies {
        Latencies {
            shards: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
        }
    }

    fn record(&self, shard: usize, elapsed: Duration) {
        let micros = (elapsed.as_micros() as u64).clamp(1, HIGHEST_MICROS);
        if let Ok(mut h) = self.shards[shard % SHARDS].lock() {
            let _ = h.record(micros);
        }
    }

    /// All shards added together.
    pub(crate) fn merged(&self) -> Histogram<u32> {
        let mut all = histogram();
        for shard in &self.shards {
            if let Ok(h) = shard.lock() {
                let _ = all.add(&*h);
            }
        }
        all
    }
}

/// What the writes to one preloaded document were told.
#[derive(Default)]
pub(crate) struct DocWrites {
    /// Updates acknowledged (each incremented `version` by one).
    pub(crate) acked: AtomicU64,
    /// Updates that failed after reaching the database (timeout, network):
    /// they may or may not have been applied.
    pub(crate) unknown: AtomicU64,
    /// The highest version an acknowledged update returned.
    pub(crate) max_version: AtomicI64,
}

/// One error kind's count and the first message seen.
#[derive(Debug, Clone)]
pub(crate) struct ErrorTally {
    pub(crate) count: u64,
    pub(crate) example: String,
}

/// Everything the tasks record, shared by all of them.
pub(crate) struct Tally {
    pub(crate) ok: [AtomicU64; 3],
    pub(crate) ok_latency: [Latencies; 3],
    pub(crate) failed_latency: Latencies,
    pub(crate) errors: Mutex<std::collections::BTreeMap<(Op, &'static str), ErrorTally>>,
    /// Reads by where they were served from: cache, store, stale.
    pub(crate) origins: [AtomicU64; 3],
    /// Reads (not declared stale) that returned a version older than one
    /// acknowledged before the read began, or no document at all.
    pub(crate) stale_violations: AtomicU64,
    pub(crate) stale_example: Mutex<Option<String>>,
    /// Inserts that may or may not have been applied.
    pub(crate) unknown_inserts: Mutex<Vec<i64>>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            ok: Default::default(),
            ok_latency: [Latencies::new(), Latencies::new(), Latencies::new()],
            failed_latency: Latencies::new(),
            errors: Mutex::new(Default::default()),
            origins: Default::default(),
            stale_violations: AtomicU64::new(0),
            stale_example: Mutex::new(None),
            unknown_inserts: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn completed(&self) -> u64 {
        let ok: u64 = self.ok.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        ok + self.failed()
    }

    pub(crate) fn failed(&self) -> u64 {
        self.errors
            .lock()
            .map(|e| e.values().map(|t| t.count).sum())
            .unwrap_or(0)
    }

    fn succeeded(&self, op: Op, shard: usize, started: Instant) {
        self.ok[op as usize].fetch_add(1, Ordering::Relaxed);
        self.ok_latency[op as usize].record(shard, started.elapsed());
    }

    fn failed_with(&self, op: Op, shard: usize, started: Instant, error: &RepositoryError) {
        self.failed_latency.record(shard, started.elapsed());
        if let Ok(mut errors) = self.errors.lock() {
            errors
                .entry((op, error.kind()))
                .or_insert_with(|| ErrorTally {
                    count: 0,
                    example: error.to_string(),
                })
                .count += 1;
        }
    }
}

/// Whether a failed write may have been applied: it reached the database
/// and the answer was lost (a timeout, a dropped connection). A breaker
/// refusal or an admission timeout never called the database.
pub(crate) fn may_have_written(error: &RepositoryError) -> bool {
    matches!(error, RepositoryError::Store(e) if e.is_breaker_failure())
}

/// How the tasks behave.
#[derive(Debug, Clone)]
pub(crate) struct Mix {
    /// Share of operations that are reads by id.
    pub(crate) read_ratio: f64,
    /// Share of writes that are inserts (the rest are updates).
    pub(crate) insert_share: f64,
    /// Each task pauses a random time in `0..2 * think_time` between operations.
    pub(crate) think_time: Duration,
}

/// The state the tasks share.
pub(crate) struct Workload {
    repo: Repository<LoadDoc>,
    zipf: Zipf,
    mix: Mix,
    payload: String,
    next_id: AtomicI64,
    /// Indexed by the preloaded document's id.
    pub(crate) writes: Vec<DocWrites>,
    pub(crate) tally: Tally,
}

impl Workload {
    /// `documents` preloaded documents with ids `0..documents`; inserts take
    /// ids from `documents` upwards.
    pub(crate) fn new(
        repo: Repository<LoadDoc>,
        documents: usize,
        zipf_exponent: f64,
        mix: Mix,
        payload: String,
    ) -> Workload {
        Workload {
            repo,
            zipf: Zipf::new(documents, zipf_exponent),
            mix,
            payload,
            next_id: AtomicI64::new(documents as i64),
            writes: (0..documents).map(|_| DocWrites::default()).collect(),
            tally: Tally::new(),
        }
    }

    pub(crate) fn repo(&self) -> &Repository<LoadDoc> {
        &self.repo
    }

    /// One task: operations until `deadline`; returns the ids of its
    /// acknowledged inserts.
    pub(crate) async fn task(
        self: Arc<Self>,
        index: usize,
        seed: u64,
        deadline: Instant,
    ) -> Vec<i64> {
        let mut rng =
            StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut inserted = Vec::new();
        while Instant::now() < deadline {
            if rng.random::<f64>() < self.mix.read_ratio {
                self.read(&mut rng, index).await;
            } else if rng.random::<f64>() < self.mix.insert_share {
                if let Some(id) = self.insert(index).await {
                    inserted.push(id);
                }
            } else {
                self.update(&mut rng, index).await;
            }
            if self.mix.think_time.is_zero() {
                // A cache hit never yields by itself: let the other tasks run.
                tokio::task::yield_now().await;
            } else {
                let pause = self.mix.think_time.mul_f64(2.0 * rng.random::<f64>());
                tokio::time::sleep(pause).await;
            }
        }
        inserted
    }

    async fn read(&self, rng: &mut StdRng, shard: usize) {
        let id = self.zipf.sample(rng);
        // Every update acknowledged before this read began must be visible.
        let floor = self.writes[id].max_version.load(Ordering::Acquire);
        let started = Instant::now();
        match self.repo.get(&(id as i64)).await {
            Ok(read) => {
                self.tally.succeeded(Op::Read, shard, started);
                let origin = match read.origin {
                    Origin::Cache => 0,
                    Origin::Store => 1,
                    Origin::Stale { .. } => 2,
                };
                self.tally.origins[origin].fetch_add(1, Ordering::Relaxed);
                let seen = read.value.as_ref().map(|d| d.version);
                if !read.is_stale() && seen.is_none_or(|v| v < floor) {
                    self.tally.stale_violations.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut example) = self.tally.stale_example.lock() {
                        example.get_or_insert_with(|| {
                            format!(
                                "document {id}: read version {seen:?} ({:?}) after version {floor} was acknowledged",
                                read.origin
                            )
                        });
                    }
                }
            }
            Err(e) => self.tally.failed_with(Op::Read, shard, started, &e),
        }
    }

    async fn insert(&self, shard: usize) -> Option<i64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let doc = LoadDoc::new(id, &self.payload);
        let started = Instant::now();
        match self.repo.insert(&doc).await {
            Ok(()) => {
                self.tally.succeeded(Op::Insert, shard, started);
                Some(id)
            }
            Err(e) => {
                self.tally.failed_with(Op::Insert, shard, started, &e);
                if may_have_written(&e)
                    && let Ok(mut unknown) = self.tally.unknown_inserts.lock()
                {
                    unknown.push(id);
                }
                None
            }
        }
    }

    async fn update(&self, rng: &mut StdRng, shard: usize) {
        let id = self.zipf.sample(rng);
        let update = Update::new().inc("version", 1i64);
        let started = Instant::now();
        let writes = &self.writes[id];
        match self.repo.update(&(id as i64), &update).await {
            Ok(doc) => {
                self.tally.succeeded(Op::Update, shard, started);
                writes.acked.fetch_add(1, Ordering::Relaxed);
                writes.max_version.fetch_max(doc.version, Ordering::AcqRel);
            }
            Err(e) => {
                self.tally.failed_with(Op::Update, shard, started, &e);
                if may_have_written(&e) {
                    writes.unknown.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks_and_stays_in_range() {
        let zipf = Zipf::new(1_000, 1.0);
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0u32; 1_000];
        for _ in 0..100_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        // Rank 0 has probability 1 / H(1000) = 13.4 %; rank 999 about 0.013 %.
        assert!((12_000..15_000).contains(&counts[0]), "{}", counts[0]);
        assert!(counts[0] > 5 * counts[9]);
        let top_100: u32 = counts[..100].iter().sum();
        assert!(top_100 > 60_000, "{top_100}");
    }

    #[test]
    fn zipf_of_zero_exponent_is_uniform() {
        let zipf = Zipf::new(10, 0.0);
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = [0u32; 10];
        for _ in 0..50_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (4_500..5_500).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn only_errors_that_reached_the_database_may_have_written() {
        use stratum::StoreError;
        let timeout = RepositoryError::Store(StoreError::Timeout {
            message: "5s".into(),
        });
        let overloaded = RepositoryError::Overloaded {
            message: "2s".into(),
        };
        let refused = RepositoryError::NotPermitted {
            state: "open",
            retry_after: None,
        };
        let duplicate = RepositoryError::Store(StoreError::DuplicateKey {
            collection: "c".into(),
            message: "_id".into(),
        });
        assert!(may_have_written(&timeout));
        assert!(!may_have_written(&overloaded));
        assert!(!may_have_written(&refused));
        assert!(!may_have_written(&duplicate));
    }

    #[test]
    fn latencies_merge_across_shards() {
        let latencies = Latencies::new();
        for shard in 0..40 {
            latencies.record(shard, Duration::from_millis(shard as u64 + 1));
        }
        let all = latencies.merged();
        assert_eq!(all.len(), 40);
        assert!(all.max() >= 39_900);
    }
}
