//! Change-stream invalidation between processes (feature `mongodb`): the
//! repository subscribes to the store's change-stream follower
//! ([`MongoStore::follow`]) and drops the cached entry of each changed id.
//!
//! A process that caches documents does not see other processes' writes
//! until its entries expire. Where the server supports change streams (a
//! replica set or a sharded cluster), [`Repository::watch`] drops the cached
//! entry of every document another process (or this one) inserts, updates,
//! replaces or deletes. Where it does not (a standalone server), the
//! follower retries every few seconds and the documented fallback is the
//! TTL. Resume tokens, retries and scrubbed logs are the store's
//! (`stratum_store::follow`); this module only applies what it hands over.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use stratum_models::Document;
use stratum_store::{Change, ChangeFollower, MongoStore};

use crate::repository::Invalidation;
use crate::{Repository, StoreError};

/// What the watcher has done so far (the follower's state).
pub use stratum_store::FollowState as WatchState;

/// A running change-stream watcher; dropping it stops it.
#[derive(Debug)]
#[must_use = "dropping the watcher stops it"]
pub struct ChangeWatcher {
    follower: ChangeFollower,
    invalidations: Arc<AtomicU64>,
}

impl ChangeWatcher {
    /// Waits until the change stream is open (writes made from then on are
    /// seen), or the watcher stopped.
    pub async fn opened(&mut self) {
        self.follower.opened().await;
    }

    /// Waits until the change stream is closed (after a failure or
    /// [`reconnect`](Self::reconnect)), or the watcher stopped.
    pub async fn closed(&mut self) {
        self.follower.closed().await;
    }

    /// Waits until at least `events` change events were applied.
    pub async fn applied(&mut self, events: u64) {
        self.follower.applied(events).await;
    }

    /// What the watcher has done so far.
    pub fn state(&self) -> WatchState {
        self.follower.state()
    }

    /// Cache entries dropped because of change events so far.
    pub fn invalidations(&self) -> u64 {
        self.invalidations.load(Ordering::Relaxed)
    }

    /// Drops the current stream and reopens it from the last event applied,
    /// exactly as after a network failure: events written in between are
    /// still applied.
    pub fn reconnect(&self) {
        self.follower.reconnect();
    }
}

impl<T: Document> Repository<T> {
    /// Follows `store`'s change stream of `T::COLLECTION` and drops the
    /// cached entry of every document written anywhere (this process's own
    /// writes too, which costs one extra load after each); a dropped or
    /// renamed collection, or a stream that cannot resume, drops the whole
    /// cache. The stream goes to the server directly, not through the
    /// breaker: it is one long-lived cursor, not a call. Needs a tokio
    /// runtime.
    pub fn watch(&self, store: &MongoStore) -> Result<ChangeWatcher, StoreError> {
        let repository = self.clone();
        let invalidations = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&invalidations);
        let follower = store.follow(T::COLLECTION, move |change| match change {
            Change::Document(id) => {
                repository.invalidate_from(&id, Invalidation::ChangeStream);
                counted.fetch_add(1, Ordering::Relaxed);
            }
            _ => repository.invalidate_everything(),
        })?;
        Ok(ChangeWatcher {
            follower,
            invalidations,
        })
    }
}
