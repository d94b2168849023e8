//! Change-stream invalidation between processes (feature `mongodb`).
//!
//! A process that caches documents does not see other processes' writes
//! until its entries expire. Where the server supports change streams (a
//! replica set or a sharded cluster), [`Repository::watch`] follows the
//! collection's change stream and drops the cached entry of every document
//! another process (or this one) inserts, updates, replaces or deletes.
//! Where it does not (a standalone server), the watcher logs the refusal,
//! retries every few seconds, and the documented fallback is the TTL.
//! A stream that breaks is reopened from the resume token of the last event
//! applied, so writes made while it was down are not missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use mongodb::Database;
use mongodb::change_stream::event::{OperationType, ResumeToken};
use mongodb::error::ErrorKind;
use stratum_models::Document;
use tokio::sync::Notify;

use crate::Repository;

/// How long the watcher waits before reopening a failed change stream.
const RETRY: Duration = Duration::from_secs(2);

/// Server codes meaning a resume token cannot be used any more: the events
/// after it are gone (ChangeStreamHistoryLost, ChangeStreamFatalError) or it
/// is not a token (InvalidResumeToken).
const TOKEN_UNUSABLE: &[i32] = &[260, 280, 286];

/// A running change-stream watcher; dropping it stops it.
#[derive(Debug)]
pub struct ChangeWatcher {
    task: tokio::task::JoinHandle<()>,
    state: tokio::sync::watch::Receiver<WatchState>,
    invalidations: Arc<AtomicU64>,
    reconnect: Arc<Notify>,
}

/// What the watcher has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchState {
    /// Whether the change stream is open.
    pub open: bool,
    /// Change events applied to the cache.
    pub events: u64,
    /// Times the stream was reopened from the last event's resume token
    /// (after a failure), so the events in between were not lost.
    pub resumes: u64,
    /// Times the stream had to start afresh because its resume token was no
    /// longer usable; each time the whole cache was dropped.
    pub restarts: u64,
}

impl ChangeWatcher {
    /// Waits until the change stream is open (writes made from then on are
    /// seen), or the watcher stopped.
    pub async fn opened(&mut self) {
        let _ = self.state.wait_for(|s| s.open).await;
    }

    /// Waits until the change stream is closed (after a failure or
    /// [`reconnect`](Self::reconnect)), or the watcher stopped.
    pub async fn closed(&mut self) {
        let _ = self.state.wait_for(|s| !s.open).await;
    }

    /// Waits until at least `events` change events were applied.
    pub async fn applied(&mut self, events: u64) {
        let _ = self.state.wait_for(|s| s.events >= events).await;
    }

    /// What the watcher has done so far.
    pub fn state(&self) -> WatchState {
        *self.state.borrow()
    }

    /// Cache entries dropped because of change events so far.
    pub fn invalidations(&self) -> u64 {
        self.invalidations.load(Ordering::Relaxed)
    }

    /// Drops the current stream and, after the usual retry pause, reopens it
    /// from the last event seen, exactly as after a network failure (for
    /// tests and for an operator who moved the application to another
    /// server): events written in between are still applied.
    pub fn reconnect(&self) {
        self.reconnect.notify_one();
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
    ///
    /// When the stream breaks (a network error, a failover, a server
    /// restart), the watcher reopens it with `resume_after` and the token of
    /// the last event it saw, so writes made while it was down still
    /// invalidate. If the server cannot resume from that token (its history
    /// is gone), the watcher drops the whole cache and starts afresh.
    pub fn watch(&self, db: &Database) -> ChangeWatcher {
        let collection = db.collection::<bson::Document>(T::COLLECTION);
        let repository = self.clone();
        let (send, state) = tokio::sync::watch::channel(WatchState::default());
        let invalidations = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&invalidations);
        let reconnect = Arc::new(Notify::new());
        let asked = Arc::clone(&reconnect);
        let task = tokio::spawn(async move {
            let mut token: Option<ResumeToken> = None;
            loop {
                let resuming = token.is_some();
                let mut open = collection.watch();
                if let Some(token) = token.clone() {
                    open = open.resume_after(token);
                }
                match open.await {
                    Ok(mut stream) => {
                        send.send_modify(|s| {
                            s.open = true;
                            s.resumes += u64::from(resuming);
                        });
                        loop {
                            let next = tokio::select! {
                                next = stream.next() => next,
                                () = asked.notified() => break,
                            };
                            let event = match next {
                                Some(Ok(event)) => event,
                                Some(Err(e)) => {
                                    tracing::warn!(collection = T::COLLECTION, error = %stratum_store::uri::scrub(&e.to_string()), "change stream failed; resuming");
                                    break;
                                }
                                None => break,
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
                                        repository.invalidate_from(
                                            id,
                                            crate::repository::Invalidation::ChangeStream,
                                        );
                                        counted.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                            // Applied: resuming from here loses nothing.
                            token = Some(event.id);
                            send.send_modify(|s| s.events += 1);
                        }
                        // Only the last applied event's token is kept: the
                        // driver's `resume_token()` may not be read after a
                        // `next()` was cancelled (driver 3.9 panics), and a
                        // post-batch token would only save replaying events
                        // that are already applied.
                        send.send_modify(|s| s.open = false);
                    }
                    Err(e) if resuming && token_unusable(&e) => {
                        tracing::warn!(
                            collection = T::COLLECTION,
                            error = %stratum_store::uri::scrub(&e.to_string()),
                            "the change stream cannot resume; dropping the cache and starting afresh"
                        );
                        repository.invalidate_everything();
                        token = None;
                        send.send_modify(|s| s.restarts += 1);
                        continue;
                    }
                    Err(e) => tracing::warn!(
                        collection = T::COLLECTION,
                        error = %stratum_store::uri::scrub(&e.to_string()),
                        "no change stream (a standalone server, or unreachable); cached entries expire by TTL"
                    ),
                }
                tokio::time::sleep(RETRY).await;
            }
        });
        ChangeWatcher {
            task,
            state,
            invalidations,
            reconnect,
        }
    }
}

/// Whether the server refused the resume token itself (rather than being
/// unreachable, when the token stays good for the next attempt).
fn token_unusable(error: &mongodb::error::Error) -> bool {
    matches!(error.kind.as_ref(), ErrorKind::Command(e) if TOKEN_UNUSABLE.contains(&e.code))
}
