//! The repository's metrics: handles registered once per collection, so an
//! operation touches no key lookup on its way.

use std::time::Duration;

use metrics::{Counter, Histogram};

use super::RepositoryError;

/// Counter: operations by collection, operation and outcome.
pub(crate) const OPERATIONS: &str = "stratum_repository_operations_total";
/// Histogram (seconds): operation duration by collection and operation.
pub(crate) const DURATION: &str = "stratum_repository_operation_duration_seconds";
/// Counter: reads by id by collection and source (`cache`, `store`, `stale`).
pub(crate) const READS: &str = "stratum_repository_reads_total";
/// Counter: cache entries dropped, by collection and cause (`write`, `race`).
pub(crate) const INVALIDATIONS: &str = "stratum_repository_invalidations_total";

/// The operations a repository reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Find,
    Insert,
    Update,
    Upsert,
    Delete,
    Count,
    EnsureIndex,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::Get,
        Op::Find,
        Op::Insert,
        Op::Update,
        Op::Upsert,
        Op::Delete,
        Op::Count,
        Op::EnsureIndex,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Find => "find",
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Upsert => "upsert",
            Op::Delete => "delete",
            Op::Count => "count",
            Op::EnsureIndex => "ensure_index",
        }
    }
}

/// Where a read by id was served from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    Cache,
    Store,
    Stale,
}

pub(crate) struct RepositoryMetrics {
    collection: &'static str,
    ok: [Counter; 8],
    duration: [Histogram; 8],
    reads: [Counter; 3],
}

impl RepositoryMetrics {
    pub(crate) fn new(collection: &'static str) -> RepositoryMetrics {
        RepositoryMetrics {
            collection,
            ok: Op::ALL.map(|op| {
                metrics::counter!(OPERATIONS, "collection" => collection, "operation" => op.as_str(), "outcome" => "ok")
            }),
            duration: Op::ALL.map(|op| {
                metrics::histogram!(DURATION, "collection" => collection, "operation" => op.as_str())
            }),
            reads: ["cache", "store", "stale"]
                .map(|source| metrics::counter!(READS, "collection" => collection, "source" => source)),
        }
    }

    pub(crate) fn finished<R>(
        &self,
        op: Op,
        elapsed: Duration,
        result: &Result<R, RepositoryError>,
    ) {
        let i = op as usize;
        self.duration[i].record(elapsed.as_secs_f64());
        match result {
            Ok(_) => self.ok[i].increment(1),
            Err(e) => metrics::counter!(
                OPERATIONS,
                "collection" => self.collection,
                "operation" => op.as_str(),
                "outcome" => e.kind()
            )
            .increment(1),
        }
    }

    pub(crate) fn read(&self, source: Source) {
        self.reads[source as usize].increment(1);
    }

    pub(crate) fn invalidated(&self, cause: &'static str) {
        metrics::counter!(INVALIDATIONS, "collection" => self.collection, "cause" => cause)
            .increment(1);
    }
}
