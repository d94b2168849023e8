//! Change-stream invalidation between processes (feature `mongodb`).
//!
//! A process that caches documents does not see other processes' writes
//! until its entries expire. Where the server supports change streams (a
//! replica set or a sharded cluster), [`Repository::watch`] follows the
//! collection's change stream and drops the cached entry of every document
//! another process (or this one) inserts, updates, replaces or deletes.
//! Where it does not (a standalone server), the watcher logs the refusal,
//! retries every few seconds, and the documented fallback is the TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use mongodb::Database;
use mongodb::change_stream::event::OperationType;
use stratum_models::Document;

use crate::Repository;

/// How long the watcher waits before reopening a failed change stream.
const RETRY: Duration = Duration::from_secs(2);

/// A running change-stream watcher; dropping it stops it.
#[derive(Debug)]
pub struct ChangeWatcher {
    task: tokio::task::JoinHandle<()>,
    state: tokio::sync::watch::Receiver<WatchState>,
    invalidations: Arc<AtomicU64>,
}

/// What the watcher has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchState {
    /// Whether the change stream is open.
    pub open: bool,
    /// Change events applied to the cache.
    pub events: u64,
}

impl ChangeWatcher {
    /// Waits until the change stream is open (writes made from then on are
    /// seen), or the watcher stopped.
    pub async fn opened(&mut self) {
        let _ = self.state.wait_for(|s| s.open).await;
    }

    /// Waits until at least `events` change events were applied.
    pub async fn applied(&mut self, events: u64) {
        let _ = self.state.wait_for(|s| s.events >= events).await;
    }

    /// Cache entries dropped because of change events so far.
    pub fn invalidations(&self) -> u64 {
        self.invalidations.load(Ordering::Relaxed)
    }
}

impl Drop for ChangeWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T: Document> Repository<T> {
    /// Follows `db`'s change stream for `T::COLLECTION` and drops the cached
    /// entry of every document written anywhere (this process's own writes
    /// too, which costs one extra load after each). The stream goes to the
    /// server directly, not through the breaker: it is one long-lived cursor,
    /// not a call. Needs a tokio runtime.
    pub fn watch(&self, db: &Database) -> ChangeWatcher {
        let collection = db.collection::<bson::Document>(T::COLLECTION);
        let repository = self.clone();
        let (send, state) = tokio::sync::watch::channel(WatchState::default());
        let invalidations = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&invalidations);
        let task = tokio::spawn(async move {
            loop {
                match collection.watch().await {
                    Ok(mut stream) => {
                        send.send_modify(|s| s.open = true);
                        while let Some(event) = stream.next().await {
                            let event = match event {
                                Ok(event) => event,
                                Err(e) => {
                                    tracing::warn!(collection = T::COLLECTION, error = %crate::uri::scrub(&e.to_string()), "change stream failed; reopening");
                                    break;
                                }
                            };
                            match event.operation_type {
                                OperationType::Drop
                                | OperationType::DropDatabase
                                | OperationType::Rename
                                | OperationType::Invalidate => repository.invalidate_everything(),
                                _ => {
                                    if let Some(id) =
                                        event.document_key.as_ref().and_then(|k| k.get("_id"))
                                    {
                                        repository.invalidate_from(id, "change_stream");
                                        counted.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                            send.send_modify(|s| s.events += 1);
                        }
                        send.send_modify(|s| s.open = false);
                    }
                    Err(e) => tracing::warn!(
                        collection = T::COLLECTION,
                        error = %crate::uri::scrub(&e.to_string()),
                        "no change stream (a standalone server?); cached entries expire by TTL"
                    ),
                }
                tokio::time::sleep(RETRY).await;
            }
        });
        ChangeWatcher {
            task,
            state,
            invalidations,
        }
    }
}
