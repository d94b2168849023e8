//! [`Stratum`]: the one handle that puts the layers in front of a store.
//!
//! It owns the store, the circuit breaker shared by every database call, the
//! clock every layer reads, and the repositories (one per document type, so
//! two handles on one collection share one cache).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
#[cfg(any(feature = "breaker", feature = "monitor"))]
use std::time::Duration;

use parking_lot::Mutex;
#[cfg(feature = "breaker")]
use stratum_breaker::{Breaker, EventKind, State, TransitionReason};

#[cfg(feature = "pool")]
use crate::admission::Admission;
use crate::repository::Repository;
use crate::{
    Clock, CoarseClock, ConfigError, MemoryStore, RepositoryError, SharedClock, Store, StoreError,
    StratumConfig,
};

/// How many recent breaker transitions [`Stratum::breaker_transitions`] keeps.
#[cfg(feature = "breaker")]
const TRANSITION_LOG: usize = 256;

/// How long [`Stratum::close`] waits for cursors and sessions held
/// elsewhere before it closes the driver's client without them.
#[cfg(feature = "mongodb")]
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a [`Stratum`] could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StratumError {
    /// The configuration was refused; the error names the field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One change of the breaker's state, as the facade logged it.
#[cfg(feature = "breaker")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerTransition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// Why.
    pub reason: TransitionReason,
    /// When, on the stack's clock.
    pub at: Duration,
}

#[cfg(feature = "breaker")]
#[derive(Default)]
struct TransitionLog {
    total: u64,
    recent: std::collections::VecDeque<BreakerTransition>,
}

/// What every layer shares: the store, the breaker, the clock.
pub(crate) struct Layers {
    pub(crate) config: StratumConfig,
    pub(crate) store: Arc<dyn Store>,
    #[cfg(feature = "breaker")]
    pub(crate) breaker: Option<Breaker<SharedClock>>,
    pub(crate) clock: SharedClock,
    /// Dates on the stack's clock (anchored when the stack was built): the
    /// embedded store's TTL and the prompt cache's `expires_at` read it, so
    /// a test's `ManualClock` moves both together.
    pub(crate) wall: stratum_store::WallClock,
    #[cfg(feature = "pool")]
    pub(crate) admission: Option<Admission>,
    #[cfg(feature = "breaker")]
    transitions: Arc<Mutex<TransitionLog>>,
    /// Every cache the stack built, by unique name.
    #[cfg(feature = "cache")]
    pub(crate) caches: Arc<crate::caches::CacheRegistry>,
    /// The predictor the repositories share, when `cache.prefetch` is on.
    #[cfg(feature = "cache")]
    pub(crate) prefetch: Option<Arc<crate::repository::PrefetchHub>>,
    /// The stack's monitor, unless `monitor.enabled = false`.
    #[cfg(feature = "monitor")]
    pub(crate) monitoring: Option<Arc<crate::monitoring::Monitoring>>,
    /// The MongoDB store the handle opened (or was given as one), for the
    /// driver escape hatch.
    #[cfg(feature = "mongodb")]
    mongo: Option<crate::MongoStore>,
    /// The change-stream watchers, one per repository (see `watch.rs`).
    #[cfg(feature = "mongodb")]
    coherence: Option<crate::watch::Coherence>,
}

impl Layers {
    /// The handle's change-stream watchers, when it keeps its caches
    /// coherent (the semantic tier listens to the prompt cache's).
    #[cfg(feature = "mongodb")]
    #[cfg_attr(not(feature = "semantic"), allow(dead_code))]
    pub(crate) fn coherence(&self) -> Option<&crate::watch::Coherence> {
        self.coherence.as_ref()
    }

    /// Runs one database call through the breaker and the pool's admission:
    /// the breaker first (an open breaker fails fast, without queueing for a
    /// slot), then a slot (waiting at most `pool.acquire_timeout`; a timeout
    /// gives the breaker's permit back unrecorded: the database was not
    /// called), then the call. Timeouts, network errors and unavailability
    /// count as failures; answers such as a duplicate key or an invalid
    /// request count as successes, since the database answered.
    pub(crate) async fn call<R, F>(&self, call: F) -> Result<R, RepositoryError>
    where
        F: Future<Output = Result<R, StoreError>>,
    {
        #[cfg(feature = "monitor")]
        if let Some(monitoring) = &self.monitoring {
            // Counted and timed for the default alert rules.
            let started = self.clock.now_nanos();
            let result = self.call_unobserved(call).await;
            let elapsed = Duration::from_nanos(self.clock.now_nanos().saturating_sub(started));
            monitoring.observe(elapsed, &result);
            return result;
        }
        self.call_unobserved(call).await
    }

    async fn call_unobserved<R, F>(&self, call: F) -> Result<R, RepositoryError>
    where
        F: Future<Output = Result<R, StoreError>>,
    {
        #[cfg(not(feature = "breaker"))]
        {
            let _slot = self.admit().await?;
            call.await.map_err(RepositoryError::Store)
        }
        #[cfg(feature = "breaker")]
        self.call_through_breaker(call).await
    }

    #[cfg(feature = "breaker")]
    async fn call_through_breaker<R, F>(&self, call: F) -> Result<R, RepositoryError>
    where
        F: Future<Output = Result<R, StoreError>>,
    {
        let Some(breaker) = &self.breaker else {
            let _slot = self.admit().await?;
            return call.await.map_err(RepositoryError::Store);
        };
        let permit = breaker
            .try_acquire()
            .map_err(|refused| RepositoryError::not_permitted(&refused))?;
        let _slot = self.admit().await?;
        let started = self.clock.now_nanos();
        let result = call.await;
        let elapsed = Duration::from_nanos(self.clock.now_nanos().saturating_sub(started));
        match &result {
            Err(e) if e.is_breaker_failure() => permit.failure(elapsed),
            _ => permit.success(elapsed),
        }
        result.map_err(RepositoryError::Store)
    }
}

impl Layers {
    /// A cache for one user of the stack (a repository, the prompt cache):
    /// `config`, the `[cache]` section named for that user, on the stack's
    /// one clock; none when the section is switched off. Its name is made
    /// unique within the stack (`messages`, then `messages_2`, ...) and it
    /// is registered for `Stratum::cache_stats` and the monitor's publisher.
    #[cfg(feature = "cache")]
    pub(crate) fn cache<K, V>(
        &self,
        config: stratum_cache::CacheConfig,
    ) -> Result<Option<stratum_cache::ShardedCache<K, V>>, ConfigError>
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if !self.config.cache.enabled {
            return Ok(None);
        }
        let name = config.name.clone();
        self.caches.register(&name, |name| {
            self.in_scope(|| {
                stratum_cache::CacheBuilder::from_config(stratum_cache::CacheConfig {
                    name,
                    ..config
                })
                .clock(self.clock.clone())
                .build()
                .map(Some)
                .map_err(|e| e.within("cache"))
            })
        })
    }

    /// Runs `f` in the monitor's metrics scope (when there is a monitor):
    /// metric handles made inside land on the stack's `/metrics`.
    pub(crate) fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        #[cfg(feature = "monitor")]
        if let Some(monitoring) = &self.monitoring {
            return monitoring.scope(f);
        }
        f()
    }

    /// An admission slot, held for the call (none when the pool is off).
    #[cfg(feature = "pool")]
    async fn admit(&self) -> Result<Option<crate::admission::Slot>, RepositoryError> {
        match &self.admission {
            Some(admission) => admission.admit().await.map(Some),
            None => Ok(None),
        }
    }

    /// Without the `pool` feature there is no admission limit.
    #[cfg(not(feature = "pool"))]
    async fn admit(&self) -> Result<Option<std::convert::Infallible>, RepositoryError> {
        Ok(None)
    }
}

/// The facade's handle: a store with the breaker, the cache and the clock
/// in front of it. Cheap to clone; clones share everything.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use stratum::{Stratum, StratumConfig};
/// use stratum::models::{Conversation, Document};
///
/// let stratum = Stratum::builder(StratumConfig::default()).build()?; // embedded store
/// let conversations = stratum.repository::<Conversation>()?;
/// let c = Conversation::new("gpt-4o", stratum::bson::DateTime::now());
/// conversations.insert(&c).await?;
/// let read = conversations.get(&c.id).await?;
/// assert_eq!(read.value.unwrap().model, "gpt-4o");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Stratum {
    pub(crate) layers: Arc<Layers>,
    /// One value per type: the repositories, the prompt cache.
    shared: Arc<Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>>,
}

impl std::fmt::Debug for Stratum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("Stratum");
        f.field("backend", &self.layers.store.backend());
        #[cfg(feature = "breaker")]
        f.field("breaker", &self.layers.breaker.as_ref().map(|b| b.state()));
        f.field("cache", &self.cache_enabled());
        f.finish()
    }
}

impl Stratum {
    /// A builder over `config` (already merged and validated, e.g. by
    /// [`StratumConfig::builder`]).
    pub fn builder(config: StratumConfig) -> StratumBuilder {
        StratumBuilder {
            config,
            store: None,
            clock: None,
            #[cfg(feature = "monitor")]
            monitoring: None,
            #[cfg(feature = "pool")]
            admission: None,
            #[cfg(feature = "mongodb")]
            mongo: None,
        }
    }

    /// Whether reads go through the cache: the `cache` feature is compiled
    /// in and `cache.enabled` is set.
    pub fn cache_enabled(&self) -> bool {
        cfg!(feature = "cache") && self.layers.config.cache.enabled
    }

    /// The store under the layers (calls on it bypass them).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.layers.store
    }

    /// The breaker around the store, unless `breaker.enabled = false`.
    #[cfg(feature = "breaker")]
    pub fn breaker(&self) -> Option<&Breaker<SharedClock>> {
        self.layers.breaker.as_ref()
    }

    /// The admission pool's accounting now (size, idle, in use, waiting,
    /// limit; over MongoDB also the driver's connections from CMAP events),
    /// unless `pool.enabled = false`.
    #[cfg(feature = "pool")]
    pub fn pool_status(&self) -> Option<stratum_pool::Status> {
        self.layers.admission.as_ref().map(Admission::status)
    }

    /// The adaptive concurrency limit's state (the limit, the no-load
    /// latency, calls in flight and waiting, queue time, rejections by
    /// cause), unless `pool.enabled = false`.
    #[cfg(feature = "pool")]
    pub fn limit_status(&self) -> Option<stratum_pool::LimitStatus> {
        self.layers.admission.as_ref().map(Admission::limit)
    }

    /// The admission pool's event totals (acquire timeouts, ...).
    #[cfg(feature = "pool")]
    pub fn pool_stats(&self) -> Option<stratum_pool::PoolStats> {
        self.layers.admission.as_ref().map(Admission::stats)
    }

    /// The configuration in force.
    pub fn config(&self) -> &StratumConfig {
        &self.layers.config
    }

    /// The clock every layer reads.
    pub fn clock(&self) -> &SharedClock {
        &self.layers.clock
    }

    /// How many times the breaker changed state, and the most recent changes
    /// (up to 256), oldest first.
    #[cfg(feature = "breaker")]
    pub fn breaker_transitions(&self) -> (u64, Vec<BreakerTransition>) {
        let log = self.layers.transitions.lock();
        (log.total, log.recent.iter().copied().collect())
    }

    /// The repository of `T`: the same one (and the same cache) on every call.
    ///
    /// Fails only when the cache refuses `T::COLLECTION` as its name.
    pub fn repository<T: stratum_models::Document>(&self) -> Result<Repository<T>, ConfigError> {
        let repository = self.shared(|| Repository::new(Arc::clone(&self.layers)))?;
        #[cfg(feature = "mongodb")]
        if let Some(coherence) = &self.layers.coherence {
            coherence.watch(&repository);
        }
        Ok(repository)
    }

    /// Whether this handle keeps its caches coherent with other processes'
    /// writes through change streams, and each watcher's state (see
    /// [`watch`](crate::watch)).
    #[cfg(feature = "mongodb")]
    pub fn coherence(&self) -> crate::watch::CoherenceState {
        match &self.layers.coherence {
            Some(coherence) => coherence.state(),
            None => crate::watch::CoherenceState {
                support: crate::watch::Support::Off,
                watchers: Vec::new(),
            },
        }
    }

    /// Drops every change-stream watcher's stream and reopens it from the
    /// last event applied, after the follower's retry pause (2 s), exactly
    /// as after a network failure: meanwhile the repositories read through
    /// to the database, and writes made in between are still applied. For
    /// an operator who moved the application to another server, and for
    /// tests of the outage path.
    #[cfg(feature = "mongodb")]
    pub fn reconnect_watchers(&self) {
        if let Some(coherence) = &self.layers.coherence {
            coherence.reconnect();
        }
    }

    /// The driver's client under the store, for what the [`Store`] does not
    /// cover (transactions, aggregations, administration commands); `None`
    /// over the embedded store, or over a store given to
    /// [`StratumBuilder::store`] (use [`StratumBuilder::mongo`]).
    ///
    /// Calls on it bypass every layer: no circuit breaker (failures do not
    /// open it, an open breaker does not stop them), no admission slot (they
    /// are not limited by `pool.max_size`, though they share the driver's
    /// connection pool), no operation deadline, no metrics, and no cache: a
    /// write through it leaves this process's cached copies as they were
    /// until the change stream drops them (or, without change streams,
    /// until their TTL).
    ///
    /// ```no_run
    /// # async fn demo(stratum: stratum::Stratum) -> Result<(), Box<dyn std::error::Error>> {
    /// use stratum::bson::doc;
    ///
    /// if let Some(db) = stratum.mongo_database() {
    ///     let stats = db.run_command(doc! { "dbStats": 1 }).await?;
    ///     println!("{stats}");
    /// }
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "mongodb")]
    pub fn mongo_client(&self) -> Option<&mongodb::Client> {
        self.layers.mongo.as_ref().map(crate::MongoStore::client)
    }

    /// The driver's database handle of `mongodb.database`, with the caveats
    /// of [`mongo_client`](Self::mongo_client): no breaker, no admission, no
    /// deadline, no metrics, no cache.
    #[cfg(feature = "mongodb")]
    pub fn mongo_database(&self) -> Option<&mongodb::Database> {
        self.layers.mongo.as_ref().map(crate::MongoStore::database)
    }

    /// Stops the handle's background work and waits for it: the
    /// change-stream watchers (the repositories fall back to their TTL),
    /// then the monitor's listener, resource sampler and alert evaluation
    /// (after a last evaluation and cache publication), and waits for the
    /// alert webhook to post what it still holds. The stack's data calls
    /// keep working; calling it twice is harmless.
    pub async fn shutdown(&self) {
        self.shutdown_coherence().await;
        #[cfg(feature = "monitor")]
        self.shutdown_monitoring().await;
    }

    /// Stops the handle for good: [`shutdown`](Self::shutdown), then closes
    /// the driver's client when the stack runs on MongoDB (ends its server
    /// sessions and stops its connection pools, waiting at most 5 s for
    /// cursors still open elsewhere, then closing without them).
    ///
    /// Call it last, before `main` returns: a driver client dropped without
    /// being closed ends its sessions from a task spawned in its `Drop`, and
    /// when that runs while the runtime is tearing down, the driver's
    /// connection pool may already be gone and the task panics (mongodb
    /// 3.9.1, `connection_requester.rs`; the example service's test caught
    /// it). Afterwards every clone of this handle, and every repository or
    /// prompt cache made from it, fails its database calls with a store
    /// error; on the embedded store nothing is closed.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// use stratum::{Stratum, StratumConfig};
    ///
    /// let stratum = Stratum::builder(StratumConfig::default()).build()?;
    /// // ... serve ...
    /// stratum.close().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn close(self) {
        self.shutdown().await;
        #[cfg(feature = "mongodb")]
        if let Some(client) = self.mongo_client().cloned() {
            let graceful = tokio::time::timeout(CLOSE_GRACE, client.clone().shutdown());
            if graceful.await.is_err() {
                tracing::warn!(
                    grace = ?CLOSE_GRACE,
                    "cursors or sessions still open; closing the driver's client without them"
                );
                client.shutdown().immediate(true).await;
            }
        }
    }

    /// The change-stream part of [`shutdown`](Self::shutdown).
    pub(crate) async fn shutdown_coherence(&self) {
        #[cfg(feature = "mongodb")]
        if let Some(coherence) = &self.layers.coherence {
            coherence.shutdown().await;
        }
    }

    /// The one value of type `V` this stack holds, made by `make` on first
    /// use. `make` runs without the lock held (it may ask for other shared
    /// values); if two callers race, the first stored value wins.
    pub(crate) fn shared<V, E>(&self, make: impl FnOnce() -> Result<V, E>) -> Result<V, E>
    where
        V: Clone + Send + Sync + 'static,
    {
        let existing = |map: &HashMap<TypeId, Box<dyn Any + Send + Sync>>| {
            map.get(&TypeId::of::<V>())
                .and_then(|v| v.downcast_ref::<V>())
                .cloned()
        };
        if let Some(v) = existing(&self.shared.lock()) {
            return Ok(v);
        }
        // Repositories and the prompt cache register metric handles.
        let made = self.layers.in_scope(make)?;
        let mut map = self.shared.lock();
        if let Some(v) = existing(&map) {
            return Ok(v);
        }
        map.insert(TypeId::of::<V>(), Box::new(made.clone()));
        Ok(made)
    }
}

/// Builds a [`Stratum`]: the configuration, and optionally a store and a clock.
pub struct StratumBuilder {
    config: StratumConfig,
    store: Option<Arc<dyn Store>>,
    clock: Option<SharedClock>,
    /// Made before anything that registers metrics (the pool, the store).
    #[cfg(feature = "monitor")]
    monitoring: Option<Option<Arc<crate::monitoring::Monitoring>>>,
    #[cfg(feature = "pool")]
    admission: Option<Admission>,
    #[cfg(feature = "mongodb")]
    mongo: Option<crate::MongoStore>,
}

impl std::fmt::Debug for StratumBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StratumBuilder")
            .field("config", &self.config)
            .field("store", &self.store.as_ref().map(|s| s.backend()))
            .finish()
    }
}

impl StratumBuilder {
    /// Uses this store instead of the one the configuration selects (a
    /// fault-injecting wrapper, a store shared with other code).
    pub fn store(mut self, store: Arc<dyn Store>) -> StratumBuilder {
        self.store = Some(store);
        self
    }

    /// Uses this MongoDB store, like [`store`](Self::store), and knows it
    /// as MongoDB: change-stream coherence (`mongodb.change_streams`) and
    /// the driver escape hatch ([`Stratum::mongo_database`]) work over it.
    #[cfg(feature = "mongodb")]
    pub fn mongo(mut self, store: crate::MongoStore) -> StratumBuilder {
        self.store = Some(Arc::new(store.clone()));
        self.mongo = Some(store);
        self
    }

    /// Uses this clock for every layer instead of the default
    /// [`CoarseClock`] (tests: a [`ManualClock`](crate::ManualClock), whose
    /// clones move together).
    pub fn clock(mut self, clock: impl Clock) -> StratumBuilder {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Opens the store the configuration selects (unless one was given) and
    /// builds the stack. Over MongoDB with the pool enabled, the pool owns
    /// the driver's client: its admission slots and the driver's connection
    /// pool are sized from the `pool` section, and the driver's connection
    /// events are counted (`Stratum::pool_status`).
    ///
    /// With the `monitor` feature and `monitor.enabled` (the defaults) it
    /// also starts the stack's monitor: `/metrics` and `/health/*` on
    /// `monitor.listen` (`Stratum::metrics_addr`), the resource sampler,
    /// the default alert rules and the cache statistics publisher, owned by
    /// the handle until `Stratum::shutdown` (docs/stratum.md, "Monitoring").
    pub async fn open(self) -> Result<Stratum, StratumError> {
        self.open_wrapped(|store| store).await
    }

    /// Like [`open`](Self::open), with the opened store passed through
    /// `wrap` first (a fault injector, a recording wrapper).
    pub async fn open_wrapped(
        mut self,
        wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>,
    ) -> Result<Stratum, StratumError> {
        self.config.validate()?;
        #[cfg_attr(not(feature = "mongodb"), allow(unused_variables))]
        let scope = self.metrics_scope()?;
        let store = match self.store.take() {
            Some(store) => store,
            #[cfg(all(feature = "mongodb", feature = "pool"))]
            None if self.config.uses_mongodb() && self.config.pool.enabled => {
                let options = crate::MongoStore::client_options(&self.config.mongodb).await?;
                // The pool's objects are the driver's connections here, so
                // `mongodb.connect_timeout` bounds creating one.
                let mut pool_config = self.config.pool.settings.clone();
                pool_config.create_timeout = self.config.mongodb.connect_timeout;
                let pool = scope
                    .enter(|| stratum_pool::MongoPool::with_options(options, pool_config, 2, false))
                    .map_err(crate::admission::build_error)?;
                let client = {
                    use stratum_pool::Pool;
                    let slot = pool.get().await.map_err(|e| StoreError::Unavailable {
                        message: stratum_store::uri::scrub(&e.to_string()),
                    })?;
                    (*slot).clone()
                };
                let settings = &self.config.pool.settings;
                self.admission = Some(scope.enter(|| Admission::mongo(pool, settings)));
                let store = scope.enter(|| {
                    crate::MongoStore::from_client(client, &self.config.mongodb, &self.config.store)
                });
                self.mongo = Some(store.clone());
                Arc::new(store)
            }
            #[cfg(feature = "mongodb")]
            None if self.config.uses_mongodb() => {
                // `MongoStore::connect`, with the store's metric handles
                // made in the monitor's scope.
                let options = crate::MongoStore::client_options(&self.config.mongodb).await?;
                let client = mongodb::Client::with_options(options).map_err(|e| {
                    StoreError::Unavailable {
                        message: stratum_store::uri::scrub(&e.to_string()),
                    }
                })?;
                let store = scope.enter(|| {
                    crate::MongoStore::from_client(client, &self.config.mongodb, &self.config.store)
                });
                self.mongo = Some(store.clone());
                Arc::new(store)
            }
            None => stratum_store::open(&self.config.mongodb, &self.config.store).await?,
        };
        self.store = Some(wrap(store));
        self.build()
    }

    /// Builds the stack over the given store, or the embedded store when
    /// none was given and the configuration does not select MongoDB (use
    /// [`open`](Self::open) for that).
    ///
    /// With the pool or the monitor enabled (the defaults) this must run
    /// inside a tokio runtime with I/O and timers enabled (`enable_all`):
    /// the pool's maintenance task and acquire timeout, and the monitor's
    /// listener and background work (started here, as by `open`), need
    /// them.
    pub fn build(mut self) -> Result<Stratum, StratumError> {
        self.config.validate()?;
        #[cfg_attr(
            not(any(feature = "breaker", feature = "pool")),
            allow(unused_variables)
        )]
        let scope = self.metrics_scope()?;
        #[cfg(feature = "monitor")]
        let monitoring = self.monitoring.take().flatten();
        let clock = self.stack_clock();
        let wall = stratum_store::WallClock::new(clock.clone());
        let store =
            match self.store.take() {
                Some(store) => store,
                None if !self.config.uses_mongodb() => Arc::new(scope.enter(|| {
                    MemoryStore::from_config(&self.config.store).with_clock(wall.clone())
                })),
                None => {
                    return Err(ConfigError::invalid(
                        "mongodb.uri",
                        "the configuration selects MongoDB: build with `open().await`",
                    )
                    .into());
                }
            };

        #[cfg(feature = "mongodb")]
        let coherence = self.mongo.clone().and_then(|store| {
            crate::watch::Coherence::new(store, self.config.mongodb.change_streams)
        });
        #[cfg(feature = "pool")]
        let admission = match self.admission {
            Some(admission) => Some(admission),
            None if self.config.pool.enabled => {
                Some(scope.enter(|| Admission::slots(&self.config.pool))?)
            }
            None => None,
        };
        #[cfg(feature = "breaker")]
        let transitions = Arc::new(Mutex::new(TransitionLog::default()));
        #[cfg(feature = "breaker")]
        let breaker = if self.config.breaker.enabled {
            let config = self.config.breaker.settings.clone();
            let log = Arc::clone(&transitions);
            let log_clock = clock.clone();
            let breaker = scope
                .enter(|| {
                    Breaker::builder(config.name.clone())
                        .config(config)
                        .clock(clock.clone())
                        .on_event(move |event| {
                            if let EventKind::Transition { from, to, reason } = event.kind {
                                let mut log = log.lock();
                                log.total += 1;
                                if log.recent.len() == TRANSITION_LOG {
                                    log.recent.pop_front();
                                }
                                log.recent.push_back(BreakerTransition {
                                    from,
                                    to,
                                    reason,
                                    at: log_clock.now(),
                                });
                            }
                        })
                        .build()
                })
                .map_err(|e| e.within("breaker"))?;
            Some(breaker)
        } else {
            None
        };
        #[cfg(feature = "cache")]
        let prefetch = if self.config.cache.enabled {
            // In the scope: the hub's counter lands on the stack's metrics.
            scope.enter(|| {
                crate::repository::PrefetchHub::new(&self.config.cache.settings.prefetch)
            })?
        } else {
            None
        };
        let stratum = Stratum {
            layers: Arc::new(Layers {
                config: self.config,
                store,
                #[cfg(feature = "breaker")]
                breaker,
                clock,
                wall,
                #[cfg(feature = "pool")]
                admission,
                #[cfg(feature = "breaker")]
                transitions,
                #[cfg(feature = "cache")]
                caches: Arc::default(),
                #[cfg(feature = "cache")]
                prefetch,
                #[cfg(feature = "monitor")]
                monitoring,
                #[cfg(feature = "mongodb")]
                mongo: self.mongo,
                #[cfg(feature = "mongodb")]
                coherence,
            }),
            shared: Arc::new(Mutex::new(HashMap::new())),
        };
        #[cfg(feature = "monitor")]
        stratum.start_monitoring()?;
        Ok(stratum)
    }

    /// The clock of every layer: the one given, else a [`CoarseClock`].
    fn stack_clock(&mut self) -> SharedClock {
        self.clock
            .get_or_insert_with(|| Arc::new(CoarseClock::new()))
            .clone()
    }

    /// The scope every layer registers its metric handles in: the stack's
    /// monitor's (made here, once), or the process-wide recorder without one.
    fn metrics_scope(&mut self) -> Result<stratum_core::metrics::MetricsScope, ConfigError> {
        #[cfg(feature = "monitor")]
        {
            if self.monitoring.is_none() {
                let clock = self.stack_clock();
                self.monitoring = Some(crate::monitoring::Monitoring::new(&self.config, &clock)?);
            }
            if let Some(Some(monitoring)) = &self.monitoring {
                return Ok(monitoring.monitor().metrics_scope().clone());
            }
        }
        Ok(stratum_core::metrics::MetricsScope::global())
    }
}
