//! Change-stream coherence between processes (feature `mongodb`): every
//! repository of a handle over MongoDB follows its collection's change
//! stream ([`MongoStore::follow`]) and drops the cached entry of each
//! changed id.
//!
//! A process that caches documents does not see other processes' writes
//! until its entries expire. Where the server supports change streams (a
//! replica set or a sharded cluster), a [`Stratum`](crate::Stratum) opened
//! over MongoDB starts one watcher per repository (on the repository's
//! first use) unless `mongodb.change_streams = false`: it drops the cached
//! entry of every document another process (or this one) inserts, updates,
//! replaces or deletes. Whether the server supports them is asked once per
//! handle (`hello`); on a standalone server one warning is logged and the
//! cache falls back to its TTL. While a watcher's stream is not open
//! (starting, or resuming after a failure) its repository does not trust
//! its cache: reads go to the database, and a cached copy is served (as
//! stale) only when the database cannot be asked. Resume tokens, retries,
//! metrics and scrubbed logs are the store's (`stratum_store::follow`);
//! this module only applies what it hands over.
//!
//! [`Repository::watch`] starts a watcher by hand, over any [`MongoStore`]
//! (a handle built over a store it does not know, say).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use stratum_models::Document;
use stratum_store::{Change, ChangeFollower, MongoStore};

use crate::repository::{Invalidation, Trust, WeakRepository};
use crate::{Repository, StoreError};

/// What the watcher has done so far (the follower's state).
pub use stratum_store::FollowState as WatchState;

/// How long detection waits before asking an unreachable server again, and
/// a stopped follower before another starts (the follower's own retry
/// pause).
const DETECT_RETRY: Duration = Duration::from_secs(2);

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
    ///
    /// A handle opened over MongoDB already does this for every repository
    /// (see the [module](self)); this is for a handle built over a store it
    /// does not know as MongoDB.
    pub fn watch(&self, store: &MongoStore) -> Result<ChangeWatcher, StoreError> {
        follow(self.downgrade(), store, None)
    }
}

/// A callback that hears a watched collection's changes besides its
/// repository (the prompt cache's semantic index, `llm_semantic.rs`).
pub(crate) type Listener = dyn Fn(&Change) + Send + Sync;

/// The listeners of each collection, held weakly: a listener goes when its
/// owner drops it.
type Listeners = Mutex<HashMap<&'static str, Vec<std::sync::Weak<Listener>>>>;

/// A watcher applying `store`'s changes of `T::COLLECTION` to `repository`
/// (held weakly: a watcher never keeps its repository, or the handle that
/// owns both, alive), and handing each to the collection's `listeners`.
fn follow<T: Document>(
    repository: WeakRepository<T>,
    store: &MongoStore,
    listeners: Option<Arc<Listeners>>,
) -> Result<ChangeWatcher, StoreError> {
    let invalidations = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&invalidations);
    let follower = store.follow(T::COLLECTION, move |change| {
        // Collected first, so a listener runs without the registry's lock.
        let live: Vec<Arc<Listener>> = listeners.as_ref().map_or_else(Vec::new, |listeners| {
            let mut listeners = listeners.lock();
            let list = listeners.entry(T::COLLECTION).or_default();
            list.retain(|l| l.strong_count() > 0);
            list.iter().filter_map(std::sync::Weak::upgrade).collect()
        });
        for listener in live {
            listener(&change);
        }
        notify_repository(&repository, change, &counted);
    })?;
    Ok(ChangeWatcher {
        follower,
        invalidations,
    })
}

/// Drops what `change` made stale from `repository`'s cache.
fn notify_repository<T: Document>(
    repository: &WeakRepository<T>,
    change: Change,
    counted: &AtomicU64,
) {
    let Some(repository) = repository.upgrade() else {
        return;
    };
    match change {
        Change::Document(id) => {
            repository.invalidate_from(&id, Invalidation::ChangeStream);
            counted.fetch_add(1, Ordering::Relaxed);
        }
        _ => repository.invalidate_everything(),
    }
}

/// Whether a handle keeps its caches coherent through change streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Support {
    /// Not attempted: the handle is not over MongoDB (or was not opened by
    /// it), `mongodb.change_streams = false`, or the handle was shut down.
    Off,
    /// The server has not answered yet whether it supports change streams.
    Detecting,
    /// The server supports change streams: every repository is watched.
    Supported,
    /// The server does not (a standalone server): cached entries are
    /// coherent only through their TTL.
    Unsupported,
}

/// The handle's change-stream coherence now
/// ([`Stratum::coherence`](crate::Stratum::coherence)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CoherenceState {
    /// Whether the caches are kept coherent.
    pub support: Support,
    /// Each watched collection and its watcher's state (`None` until its
    /// stream was first attempted), by collection name.
    pub watchers: Vec<(&'static str, Option<WatchState>)>,
}

impl CoherenceState {
    /// Whether every watcher's stream is open (and there is at least one).
    pub fn all_open(&self) -> bool {
        !self.watchers.is_empty() && self.watchers.iter().all(|(_, s)| s.is_some_and(|s| s.open))
    }
}

/// One watched collection: the task that owns its watcher, what the
/// watcher reports, and how to give the repository back its TTL regime.
struct Watched {
    task: tokio::task::JoinHandle<()>,
    reconnect: Arc<tokio::sync::Notify>,
    state: tokio::sync::watch::Receiver<Option<WatchState>>,
    release: Box<dyn Fn() + Send + Sync>,
}

/// The watchers of one handle (one per repository), and the one question
/// to the server whether it supports change streams.
pub(crate) struct Coherence {
    store: MongoStore,
    runtime: tokio::runtime::Handle,
    support: Arc<tokio::sync::OnceCell<bool>>,
    watchers: Mutex<HashMap<&'static str, Watched>>,
    listeners: Arc<Listeners>,
    stopped: AtomicBool,
}

impl Coherence {
    /// Coherence over `store`, when the configuration asks for it and there
    /// is a runtime to run the watchers on (a handle built outside one logs
    /// why it has none).
    pub(crate) fn new(store: MongoStore, enabled: bool) -> Option<Coherence> {
        if !enabled {
            return None;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "change streams: the handle was built outside a tokio runtime; \
                 cached documents are coherent only through their TTL"
            );
            return None;
        };
        Some(Coherence {
            store,
            runtime,
            support: Arc::new(tokio::sync::OnceCell::new()),
            watchers: Mutex::new(HashMap::new()),
            listeners: Arc::new(Mutex::new(HashMap::new())),
            stopped: AtomicBool::new(false),
        })
    }

    /// Starts watching `repository`'s collection, unless it is watched
    /// already (or the handle was shut down). Until the stream is open the
    /// repository reads through to the database.
    pub(crate) fn watch<T: Document>(&self, repository: &Repository<T>) {
        let mut watchers = self.watchers.lock();
        if self.stopped.load(Ordering::Acquire) || watchers.contains_key(T::COLLECTION) {
            return;
        }
        repository.set_trust(Trust::Unwatched);
        let (send, state) = tokio::sync::watch::channel(None);
        let weak = repository.downgrade();
        let store = self.store.clone();
        let support = Arc::clone(&self.support);
        let reconnect = Arc::new(tokio::sync::Notify::new());
        let asked = Arc::clone(&reconnect);
        let listeners = Arc::clone(&self.listeners);
        let task = self.runtime.spawn(async move {
            let supported = *support.get_or_init(|| detect(&store)).await;
            let Some(repository) = weak.upgrade() else {
                return;
            };
            if !supported {
                repository.set_trust(Trust::Ttl);
                return;
            }
            drop(repository);
            loop {
                let Some(repository) = weak.upgrade() else {
                    return;
                };
                // In the stack's metrics scope: the follower's series land on
                // the handle's `/metrics`.
                let watcher = match repository.in_scope(|| {
                    follow(repository.downgrade(), &store, Some(Arc::clone(&listeners)))
                }) {
                    Ok(watcher) => watcher,
                    Err(e) => {
                        tracing::warn!(collection = T::COLLECTION, error = %e, "change streams: cannot follow the collection; its cache is coherent only through its TTL");
                        repository.set_trust(Trust::Ttl);
                        return;
                    }
                };
                drop(repository);
                // The task owns the watcher: aborting the task drops it.
                let mut states = watcher.follower.subscribe();
                loop {
                    let now = *states.borrow_and_update();
                    let Some(repository) = weak.upgrade() else {
                        return;
                    };
                    repository.set_trust(if now.open {
                        Trust::Watched
                    } else {
                        Trust::Unwatched
                    });
                    send.send_replace(Some(now));
                    tokio::select! {
                        changed = states.changed() => if changed.is_err() {
                            break;
                        },
                        () = asked.notified() => watcher.reconnect(),
                    }
                }
                // The follower's task ended, which only a panic does: events
                // may be lost, so nothing cached is trusted, and a new
                // follower starts after the usual pause.
                tracing::error!(
                    collection = T::COLLECTION,
                    "change streams: the follower stopped; starting another"
                );
                if let Some(repository) = weak.upgrade() {
                    repository.set_trust(Trust::Unwatched);
                    repository.invalidate_everything();
                }
                tokio::time::sleep(DETECT_RETRY).await;
            }
        });
        let weak = repository.downgrade();
        let release = Box::new(move || {
            if let Some(repository) = weak.upgrade() {
                repository.set_trust(Trust::Ttl);
            }
        });
        watchers.insert(
            T::COLLECTION,
            Watched {
                task,
                reconnect,
                state,
                release,
            },
        );
    }

    /// Hands every change of `collection` to `listener` too, from now on,
    /// for as long as `listener` is alive elsewhere.
    #[cfg_attr(not(feature = "semantic"), allow(dead_code))]
    pub(crate) fn listen(&self, collection: &'static str, listener: &Arc<Listener>) {
        self.listeners
            .lock()
            .entry(collection)
            .or_default()
            .push(Arc::downgrade(listener));
    }

    /// Whether `collection`'s change stream is open now: every write made
    /// from now on reaches its listeners.
    #[cfg_attr(not(feature = "semantic"), allow(dead_code))]
    pub(crate) fn is_open(&self, collection: &str) -> bool {
        self.watchers
            .lock()
            .get(collection)
            .and_then(|w| *w.state.borrow())
            .is_some_and(|s| s.open)
    }

    /// Whether the caches are kept coherent, and each watcher's state.
    pub(crate) fn state(&self) -> CoherenceState {
        let support = if self.stopped.load(Ordering::Acquire) {
            Support::Off
        } else {
            match self.support.get() {
                None => Support::Detecting,
                Some(true) => Support::Supported,
                Some(false) => Support::Unsupported,
            }
        };
        let mut watchers: Vec<_> = self
            .watchers
            .lock()
            .iter()
            .map(|(name, w)| (*name, *w.state.borrow()))
            .collect();
        watchers.sort_by_key(|(name, _)| *name);
        CoherenceState { support, watchers }
    }

    /// Drops every watcher's stream and reopens it from its last event.
    pub(crate) fn reconnect(&self) {
        for w in self.watchers.lock().values() {
            w.reconnect.notify_one();
        }
    }

    /// Stops every watcher and waits until each has stopped; the
    /// repositories fall back to their TTL. No watcher starts afterwards.
    pub(crate) async fn shutdown(&self) {
        let watched: Vec<Watched> = {
            let mut watchers = self.watchers.lock();
            self.stopped.store(true, Ordering::Release);
            watchers.drain().map(|(_, w)| w).collect()
        };
        for w in watched {
            w.task.abort();
            // Cancelled (or finished): either way it no longer runs, and
            // its follower was dropped with it.
            let _ = w.task.await;
            (w.release)();
        }
    }
}

impl Drop for Coherence {
    fn drop(&mut self) {
        for w in self.watchers.get_mut().values() {
            w.task.abort();
        }
    }
}

/// Asks the server whether it supports change streams (a replica set or a
/// sharded cluster does), retrying while it cannot be reached; logs a
/// standalone server once.
async fn detect(store: &MongoStore) -> bool {
    let mut told = false;
    loop {
        match store.server_info().await {
            Ok(info) if info.topology == "standalone" => {
                tracing::warn!(
                    "change streams: the server is standalone and has none; cached \
                     documents see other processes' writes only after their TTL \
                     (cache.time_to_live)"
                );
                return false;
            }
            Ok(info) => {
                tracing::debug!(topology = %info.topology, "change streams: watching every repository");
                return true;
            }
            Err(e) => {
                if !told {
                    tracing::warn!(error = %e, "change streams: cannot ask the server whether it has them; retrying");
                    told = true;
                }
                tokio::time::sleep(DETECT_RETRY).await;
            }
        }
    }
}
