//! The load's workload: its document type, the operations of a task, and
//! what the tasks were told about their writes (for the verification).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use stratum::models::{Document, ValidationError};
use stratum::{Origin, Repository, RepositoryError, Update};

use super::fleet::FleetLog;
use crate::driver::{self, Recorder};
use crate::popularity::Popularity;
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

/// The three operations, as the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Insert,
    Update,
}

impl From<Op> for usize {
    fn from(op: Op) -> usize {
        op as usize
    }
}

/// What the writes to one preloaded document were told.
#[derive(Default)]
pub(crate) struct DocWrites {
    /// Updates acknowledged (each incremented `version` by one).
    pub(crate) acked: AtomicU64,
    /// Updates that failed after reaching the database (timeout, network,
    /// not primary after the driver's retry): they may or may not have
    /// been applied.
    pub(crate) unknown: AtomicU64,
    /// The highest version an acknowledged update returned.
    pub(crate) max_version: AtomicI64,
}

/// What the tasks record beyond the driver's figures.
#[derive(Default)]
pub(crate) struct Tally {
    /// Reads by where they were served from: cache, store, stale.
    pub(crate) origins: [AtomicU64; 3],
    /// Reads (not declared stale) that returned a version older than one
    /// acknowledged before the read began, or no document at all.
    pub(crate) stale_violations: AtomicU64,
    pub(crate) stale_example: Mutex<Option<String>>,
    /// Inserts that may or may not have been applied.
    pub(crate) unknown_inserts: Mutex<Vec<i64>>,
}

/// Whether a failed write may have been applied: it reached the database
/// and the answer was lost (a timeout, a dropped connection, or a
/// not-primary answer to the driver's retry of such an attempt). A breaker
/// refusal or an admission timeout never called the database.
pub(crate) fn may_have_written(error: &RepositoryError) -> bool {
    matches!(error, RepositoryError::Store(e) if e.is_unavailable())
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

/// One task's state: its generator and the ids of its acknowledged inserts.
pub(crate) struct LoadTask {
    rng: StdRng,
    pub(crate) inserted: Vec<i64>,
}

/// The state the tasks share.
pub(crate) struct LoadWorkload {
    repo: Repository<LoadDoc>,
    popularity: Popularity,
    mix: Mix,
    payload: String,
    seed: u64,
    next_id: AtomicI64,
    /// Indexed by the preloaded document's id.
    pub(crate) writes: Vec<DocWrites>,
    pub(crate) tally: Tally,
    /// As one process of a fleet: its log for the fleet's verifier.
    pub(crate) fleet: Option<FleetLog>,
}

impl LoadWorkload {
    /// `documents` preloaded documents with ids `0..documents`, picked with
    /// `popularity`; inserts take ids from `documents` upwards.
    pub(crate) fn new(
        repo: Repository<LoadDoc>,
        documents: usize,
        popularity: Popularity,
        mix: Mix,
        payload: String,
        seed: u64,
    ) -> LoadWorkload {
        LoadWorkload {
            repo,
            popularity,
            mix,
            payload,
            seed,
            next_id: AtomicI64::new(documents as i64),
            writes: (0..documents).map(|_| DocWrites::default()).collect(),
            tally: Tally::default(),
            fleet: None,
        }
    }

    /// As fleet process: inserts take ids from `first_id` upwards, and
    /// `log` records what the fleet's verifier needs.
    pub(crate) fn in_fleet(mut self, first_id: i64, log: FleetLog) -> LoadWorkload {
        self.next_id = AtomicI64::new(first_id);
        self.fleet = Some(log);
        self
    }

    fn count(&self, write: bool, ok: bool) {
        if let Some(f) = &self.fleet {
            f.count(write, ok);
        }
    }

    pub(crate) fn repo(&self) -> &Repository<LoadDoc> {
        &self.repo
    }

    async fn read(&self, rng: &mut StdRng, record: &Recorder<'_>) {
        let id = self.popularity.sample(rng);
        // Every update acknowledged before this read began must be visible.
        let floor = self.writes[id].max_version.load(Ordering::Acquire);
        let read = record.time(Op::Read, self.repo.get(&(id as i64))).await;
        self.count(false, read.is_ok());
        let Ok(read) = read else {
            return;
        };
        let origin = match read.origin {
            Origin::Cache => 0,
            Origin::Store => 1,
            Origin::Stale { .. } => 2,
        };
        self.tally.origins[origin].fetch_add(1, Ordering::Relaxed);
        let seen = read.value.as_ref().map(|d| d.version);
        if !read.is_stale() && seen.is_none_or(|v| v < floor) {
            self.tally.stale_violations.fetch_add(1, Ordering::Relaxed);
            self.tally.stale_example.lock().get_or_insert_with(|| {
                format!(
                    "document {id}: read version {seen:?} ({:?}) after version {floor} was acknowledged",
                    read.origin
                )
            });
        }
    }

    async fn insert(&self, record: &Recorder<'_>) -> Option<i64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let doc = LoadDoc::new(id, &self.payload);
        let inserted = record.time(Op::Insert, self.repo.insert(&doc)).await;
        self.count(true, inserted.is_ok());
        match inserted {
            Ok(()) => Some(id),
            Err(e) => {
                // The id is this task's alone: a duplicate key means an
                // earlier attempt of this very insert landed (the driver
                // retried it after losing the answer).
                let ours = matches!(
                    &e,
                    RepositoryError::Store(stratum::StoreError::DuplicateKey { .. })
                );
                if may_have_written(&e) || ours {
                    self.tally.unknown_inserts.lock().push(id);
                }
                None
            }
        }
    }

    async fn update(&self, rng: &mut StdRng, record: &Recorder<'_>) {
        let id = self.popularity.sample(rng);
        let update = Update::new().inc("version", 1i64);
        let writes = &self.writes[id];
        let updated = record
            .time(Op::Update, self.repo.update(&(id as i64), &update))
            .await;
        self.count(true, updated.is_ok());
        match updated {
            Ok(doc) => {
                writes.acked.fetch_add(1, Ordering::Relaxed);
                writes.max_version.fetch_max(doc.version, Ordering::AcqRel);
                if let Some(f) = &self.fleet {
                    f.acked(id, doc.version);
                }
            }
            Err(e) => {
                if may_have_written(&e) {
                    writes.unknown.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The read operation's name; the others are writes, each a database call.
pub(super) const READ: &str = "read by id";

impl driver::Workload for LoadWorkload {
    type Task = LoadTask;
    const OPERATIONS: &'static [&'static str] = &[READ, "insert", "update"];

    fn task(&self, index: usize) -> LoadTask {
        LoadTask {
            rng: driver::task_rng(self.seed, index),
            inserted: Vec::new(),
        }
    }

    async fn step(&self, task: &mut LoadTask, record: &Recorder<'_>) {
        let rng = &mut task.rng;
        if rng.random::<f64>() < self.mix.read_ratio {
            self.read(rng, record).await;
        } else if rng.random::<f64>() < self.mix.insert_share {
            if let Some(id) = self.insert(record).await {
                task.inserted.push(id);
            }
        } else {
            self.update(rng, record).await;
        }
    }

    fn pause(&self, task: &mut LoadTask) -> Duration {
        if self.mix.think_time.is_zero() {
            Duration::ZERO
        } else {
            self.mix.think_time.mul_f64(2.0 * task.rng.random::<f64>())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
