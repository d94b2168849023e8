//! The repository's metrics: handles registered once per collection, so an
//! operation touches no key lookup on its way.

use std::time::Duration;

use metrics::Counter;

use super::RepositoryError;
use crate::op_metrics::{OperationMetrics, operations};

/// Counter: operations by collection, operation and outcome.
pub(crate) const OPERATIONS: &str = "stratum_repository_operations_total";
/// Histogram (seconds): operation duration by collection and operation.
pub(crate) const DURATION: &str = "stratum_repository_operation_duration_seconds";
/// Counter: reads by id by collection and source (`cache`, `store`, `stale`).
pub(crate) const READS: &str = "stratum_repository_reads_total";
/// Counter: cache entries dropped, by collection and cause (`write`, `race`,
/// `change_stream`).
pub(crate) const INVALIDATIONS: &str = "stratum_repository_invalidations_total";

operations! {
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
    collection: &'static str,
    operations: OperationMetrics<{ Op::ALL.len() }>,
    reads: [Counter; 3],
    /// By cause, in the order of [`INVALIDATION_CAUSES`].
    invalidations: [Counter; 3],
}

/// The causes an invalidation is counted under.
const INVALIDATION_CAUSES: [&str; 3] = ["write", "race", "change_stream"];

impl RepositoryMetrics {
    pub(crate) fn new(collection: &'static str) -> RepositoryMetrics {
        RepositoryMetrics {
            collection,
            operations: OperationMetrics::new(
                OPERATIONS,
                DURATION,
                ("collection", collection),
                Op::ALL.map(Op::as_str),
            ),
            reads: ["cache", "store", "stale"]
                .map(|source| metrics::counter!(READS, "collection" => collection, "source" => source)),
            invalidations: INVALIDATION_CAUSES.map(
                |cause| metrics::counter!(INVALIDATIONS, "collection" => collection, "cause" => cause),
            ),
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

    pub(crate) fn invalidated(&self, cause: &'static str) {
        match INVALIDATION_CAUSES.iter().position(|c| *c == cause) {
            Some(i) => self.invalidations[i].increment(1),
            None => {
                metrics::counter!(INVALIDATIONS, "collection" => self.collection, "cause" => cause)
                    .increment(1)
            }
        }
    }
}
