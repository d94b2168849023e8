//! The repository's metrics: handles registered once per collection, so an
//! operation touches no key lookup on its way.

use std::time::Duration;

use metrics::Counter;

use super::RepositoryError;
use stratum_core::label_enum;
use stratum_core::metrics::OperationMetrics;

/// Counter: operations by collection, operation and outcome.
pub(crate) const OPERATIONS: &str = "stratum_repository_operations_total";
/// Histogram (seconds): operation duration by collection and operation.
pub(crate) const DURATION: &str = "stratum_repository_operation_duration_seconds";
/// Counter: reads by id by collection and source (`cache`, `store`, `stale`).
pub(crate) const READS: &str = "stratum_repository_reads_total";
/// Counter: cache entries dropped, by collection and cause (`write`, `race`,
/// `change_stream`).
pub(crate) const INVALIDATIONS: &str = "stratum_repository_invalidations_total";

label_enum! {
    /// The operations a repository reports.
    pub(crate) enum Op {
        Get => "get",
        Find => "find",
        Insert => "insert",
        Update => "update",
        Upsert => "upsert",
        Delete => "delete",
        Count => "count",
        EnsureIndex => "ensure_index",
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
    operations: OperationMetrics<{ Op::ALL.len() }>,
    reads: [Counter; 3],
    /// By cause, in the order of [`Invalidation::ALL`].
    invalidations: [Counter; Invalidation::ALL.len()],
}

label_enum! {
    /// Why a cache entry was dropped (the `cause` label).
    pub(crate) enum Invalidation {
        /// A write through this repository.
        Write => "write",
        /// A load that overlapped a write.
        Race => "race",
        /// A change event from another process.
        ChangeStream => "change_stream",
    }
}

impl RepositoryMetrics {
    pub(crate) fn new(collection: &'static str) -> RepositoryMetrics {
        RepositoryMetrics {
            operations: OperationMetrics::new(
                OPERATIONS,
                DURATION,
                ("collection", collection),
                Op::ALL.map(Op::as_str),
            ),
            reads: ["cache", "store", "stale"]
                .map(|source| metrics::counter!(READS, "collection" => collection, "source" => source)),
            invalidations: Invalidation::ALL.map(|cause| {
                metrics::counter!(INVALIDATIONS, "collection" => collection, "cause" => cause.as_str())
            }),
        }
    }

    pub(crate) fn finished<R>(
        &self,
        op: Op,
        elapsed: Duration,
        result: &Result<R, RepositoryError>,
    ) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err(e) => Err(e.kind()),
        };
        self.operations.finished(op as usize, elapsed, outcome);
    }

    pub(crate) fn read(&self, source: Source) {
        self.reads[source as usize].increment(1);
    }

    pub(crate) fn invalidated(&self, cause: Invalidation) {
        self.invalidations[cause as usize].increment(1);
    }
}
