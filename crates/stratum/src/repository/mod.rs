//! [`Repository<T>`]: typed documents through the cache and the breaker.
//!
//! Reads by id go through a read-through cache (one per collection, from
//! stratum-cache): concurrent misses for one id cost one database call. Every
//! database call goes through the circuit breaker. When the database fails or
//! the breaker is open, an entry that expired less than `cache.max_stale`
//! ago is served instead of the error, and the [`Read`] says it is stale.
//!
//! Writes keep the cache honest: `update` and `upsert` put the document as
//! it is afterwards into the cache; `insert` and `delete` remove the id's
//! entry. A load that raced with a write to the same id (it may have read
//! the old document) is dropped from the cache after it finished, so an
//! old document never replaces a newer one.
//!
//! Other processes' writes reach the cache through the handle's change
//! stream watcher ([`crate::watch`]): while it is registered but its stream
//! is not open (starting, or resuming after a failure), a cached entry is
//! not trusted as fresh: every read goes to the database, and a cached copy
//! is served, marked stale, only when the database cannot be asked.

mod error;
mod metrics;
#[cfg(feature = "cache")]
mod prefetch;

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bson::Bson;
#[cfg(feature = "cache")]
use stratum_cache::{Cache, ShardedCache};
use stratum_models::Document;
use tracing::Instrument;

pub use self::error::RepositoryError;
pub(crate) use self::metrics::Invalidation;
use self::metrics::{Op, RepositoryMetrics, Source};
#[cfg(feature = "cache")]
pub(crate) use self::prefetch::Hub as PrefetchHub;
use crate::stack::Layers;
use crate::{ConfigError, Filter, Query, Update};

/// Write-generation stripes: a load notes its id's stripe when its database
/// call starts and checks it after the cache stored the result; a write to
/// any id of the same stripe drops the load's result.
///
/// Many, so a write to one id rarely discards a load of another: under
/// `cargo xtask load`, 64 stripes let about 1,600 writes/s discard nearly
/// every load, and in the SIGKILL drill a cached document lost the stale copy
/// an outage would serve about once in twenty runs. 4,096 stripes cost 32 KiB
/// per repository.
const STRIPES: usize = 4096;

/// Where a read's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The cache, within the TTL (or a load another caller was making).
    Cache,
    /// The database, by this call.
    Store,
    /// The cache, past the TTL: the database failed or the breaker refused,
    /// and the entry was within `cache.max_stale` of its expiry.
    Stale {
        /// How old the value is (since it was read from the database).
        age: Duration,
    },
}

/// A read by id: the document (or `None` when there is none) and where it
/// came from.
#[derive(Debug, Clone)]
pub struct Read<T> {
    /// The document, if the id exists.
    pub value: Option<Arc<T>>,
    /// Where it came from.
    pub origin: Origin,
}

impl<T> Read<T> {
    /// Whether the value is older than the cache's TTL (served because the
    /// database could not be asked).
    pub fn is_stale(&self) -> bool {
        matches!(self.origin, Origin::Stale { .. })
    }
}

/// A cached read: the document, or its absence, and when it was read.
struct Entry<T> {
    doc: Option<Arc<T>>,
    loaded_at: Duration,
}

impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Entry {
            doc: self.doc.clone(),
            loaded_at: self.loaded_at,
        }
    }
}

/// The document cache of a repository (none without the `cache` feature).
#[cfg(feature = "cache")]
type DocCache<T> = ShardedCache<Vec<u8>, Entry<T>>;
#[cfg(not(feature = "cache"))]
type DocCache<T> = NoCache<T>;

/// Stands in for the cache when it is compiled out: it cannot be made, so
/// `Option<NoCache<T>>` is always `None` and every cache branch is dead.
#[cfg(not(feature = "cache"))]
enum NoCache<T> {
    #[allow(dead_code)]
    Never(std::convert::Infallible, PhantomData<fn() -> T>),
}

#[cfg(not(feature = "cache"))]
impl<T> NoCache<T> {
    fn never(&self) -> ! {
        match self {
            NoCache::Never(never, _) => match *never {},
        }
    }

    fn insert(&self, _key: Vec<u8>, _entry: Entry<T>) {
        self.never()
    }

    fn remove(&self, _key: &[u8]) {
        self.never()
    }

    fn invalidate_all(&self) {
        self.never()
    }
}

struct Inner<T> {
    layers: Arc<Layers>,
    cache: Option<DocCache<T>>,
    #[cfg(feature = "cache")]
    ttl: Duration,
    generations: Box<[AtomicU64]>,
    /// Per stripe: a write's check of its generation, its cache change and
    /// its bump happen as one step, so two writes to one id cannot put
    /// their versions into the cache in the wrong order.
    write_order: Box<[parking_lot::Mutex<()>]>,
    metrics: RepositoryMetrics,
    /// Whether cached entries may be served as fresh ([`Trust`]).
    trust: AtomicU8,
    /// Predictive pre-loading (`cache.prefetch`), when on and cached.
    #[cfg(feature = "cache")]
    prefetch: Option<prefetch::Prefetcher>,
    _type: PhantomData<fn() -> T>,
}

/// Whether a repository's cached entries may be served as fresh, as its
/// change-stream watcher says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "mongodb"), allow(dead_code))]
pub(crate) enum Trust {
    /// No watcher: an entry is fresh within the TTL.
    Ttl = 0,
    /// A watcher whose stream is open: every change elsewhere drops the
    /// entry it changed, so an entry is fresh within the TTL.
    Watched = 1,
    /// A watcher whose stream is not open (yet, or any more): changes made
    /// elsewhere may not have dropped their entries, so every read goes to
    /// the database and a cached copy is only a stale fallback.
    Unwatched = 2,
}

/// Typed documents of one collection, through the cache and the breaker.
///
/// Get one from [`Stratum::repository`](crate::Stratum::repository); clones
/// share the cache.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use stratum::{Origin, Stratum, StratumConfig, Update};
/// use stratum::models::Conversation;
///
/// let stratum = Stratum::builder(StratumConfig::default()).build()?;
/// let repo = stratum.repository::<Conversation>()?;
/// let c = Conversation::new("gpt-4o", stratum::bson::DateTime::now());
/// repo.insert(&c).await?;
///
/// assert_eq!(repo.get(&c.id).await?.origin, Origin::Store); // a miss, loaded
/// # #[cfg(feature = "cache")] // (without the cache, from the store)
/// assert_eq!(repo.get(&c.id).await?.origin, Origin::Cache); // then a hit
///
/// // An update refreshes the cached document.
/// repo.update(&c.id, &Update::new().set("title", "Trip to Lisbon")).await?;
/// let read = repo.get(&c.id).await?;
/// # #[cfg(feature = "cache")] // (without the cache, from the store)
/// assert_eq!(read.origin, Origin::Cache);
/// assert_eq!(read.value.unwrap().title.as_deref(), Some("Trip to Lisbon"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Repository<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Repository<T> {
    fn clone(&self) -> Self {
        Repository {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Document> std::fmt::Debug for Repository<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("collection", &T::COLLECTION)
            .field("cached", &self.inner.cache.is_some())
            .finish()
    }
}

impl<T: Document> Repository<T> {
    /// Runs `f` in the stack's metrics scope, for the dynamic series of
    /// code that has no handles (the models' validation and compression
    /// counters, the prompt cache's answers).
    pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        self.inner.layers.in_scope(f)
    }

    pub(crate) fn new(layers: Arc<Layers>) -> Result<Repository<T>, ConfigError> {
        #[cfg(feature = "cache")]
        let section = &layers.config.cache;
        #[cfg(not(feature = "cache"))]
        let cache = None;
        #[cfg(feature = "cache")]
        let cache = layers.cache(section.named(T::COLLECTION))?;
        #[cfg(feature = "cache")]
        let prefetch = match &cache {
            Some(_) => prefetch::Prefetcher::new(layers.prefetch.as_ref(), T::COLLECTION),
            None => None,
        };
        let repository = Repository {
            inner: Arc::new(Inner {
                #[cfg(feature = "cache")]
                // No TTL: an entry never goes stale.
                ttl: section.time_to_live.unwrap_or(Duration::MAX),
                cache,
                generations: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
                write_order: (0..STRIPES).map(|_| parking_lot::Mutex::new(())).collect(),
                metrics: RepositoryMetrics::new(T::COLLECTION),
                trust: AtomicU8::new(Trust::Ttl as u8),
                #[cfg(feature = "cache")]
                prefetch,
                layers,
                _type: PhantomData,
            }),
        };
        // The handle's predictor offers this collection's ids to it.
        #[cfg(feature = "cache")]
        if let Some(p) = &repository.inner.prefetch {
            let target: Weak<Inner<T>> = Arc::downgrade(&repository.inner);
            p.hub.register(T::COLLECTION, target);
        }
        Ok(repository)
    }

    /// The collection's name.
    pub fn collection(&self) -> &'static str {
        T::COLLECTION
    }

    /// The cache's statistics (hits, misses, loads, stale serves), when the
    /// cache is enabled.
    #[cfg(feature = "cache")]
    pub fn cache_stats(&self) -> Option<stratum_cache::CacheStats> {
        self.inner.cache.as_ref().map(ShardedCache::stats)
    }

    /// Exports the cache's statistics to the `metrics` recorder (run it
    /// periodically, or use the cache's own maintenance task).
    #[cfg(feature = "cache")]
    pub fn publish_cache_metrics(&self) {
        if let Some(cache) = &self.inner.cache {
            cache.publish_metrics();
        }
    }

    /// The document with this id: from the cache when fresh, else from the
    /// database (one call however many callers miss at once), else, when
    /// the database fails or the breaker is open, a stale copy within
    /// `cache.max_stale`.
    pub async fn get(&self, id: &T::Id) -> Result<Read<T>, RepositoryError> {
        self.observe(Op::Get, async {
            let id = to_bson(id)?;
            // Noted before the read, so that a miss's drain (woken as its
            // database call starts) sees it and loads its successors while
            // the read waits for its own document.
            #[cfg(feature = "cache")]
            if let Some(p) = &self.inner.prefetch {
                p.note(&id);
            }
            let read = self.read(&id).await?;
            #[cfg(feature = "cache")]
            if let (Some(p), Origin::Cache) = (&self.inner.prefetch, read.origin) {
                p.hit(&id);
            }
            self.inner.metrics.read(match read.origin {
                Origin::Cache => Source::Cache,
                Origin::Store => Source::Store,
                Origin::Stale { .. } => Source::Stale,
            });
            if let Origin::Stale { age } = read.origin {
                tracing::info!(
                    collection = T::COLLECTION,
                    age_ms = age.as_millis() as u64,
                    "served a stale document: the database could not be asked"
                );
            }
            Ok(read)
        })
        .await
    }

    async fn read(&self, id: &Bson) -> Result<Read<T>, RepositoryError> {
        #[cfg(feature = "cache")]
        if let Some(cache) = &self.inner.cache {
            return self.read_through(cache, id).await;
        }
        let entry = self.load(id, None).await?;
        Ok(Read {
            value: entry.doc,
            origin: Origin::Store,
        })
    }

    #[cfg(feature = "cache")]
    async fn read_through(
        &self,
        cache: &DocCache<T>,
        id: &Bson,
    ) -> Result<Read<T>, RepositoryError> {
        if self.inner.trust.load(Ordering::Acquire) == Trust::Unwatched as u8 {
            // Boxed, as `load` is: the rare path's state stays off every
            // read's future.
            return Box::pin(self.read_unwatched(cache, id)).await;
        }
        self.read_cached(cache, id, false).await
    }

    /// A read while the change stream is down: from the database (the
    /// result is cached for when the stream is back), or, when the database
    /// cannot be asked, the cached path with a hit reported as stale.
    ///
    /// On a failure the cached path may ask the database once more (for an
    /// id with no fresh entry): a second failed call, or a fast refusal once
    /// the breaker is open.
    #[cfg(feature = "cache")]
    async fn read_unwatched(
        &self,
        cache: &DocCache<T>,
        id: &Bson,
    ) -> Result<Read<T>, RepositoryError> {
        let inner = &*self.inner;
        let key = stratum_store::id_key(id);
        let stripe = stripe(&key);
        let generation = AtomicU64::new(0);
        match self.load(id, Some((stripe, &generation))).await {
            Ok(entry) => {
                let _order = inner.write_order[stripe].lock();
                if inner.generations[stripe].load(Ordering::Acquire)
                    == generation.load(Ordering::Acquire)
                {
                    cache.insert(key, entry.clone());
                }
                Ok(Read {
                    value: entry.doc,
                    origin: Origin::Store,
                })
            }
            Err(e) if e.is_unavailable() => self.read_cached(cache, id, true).await,
            Err(e) => Err(e),
        }
    }

    /// The read-through path; with `fallback` (the database just failed
    /// while the stream is down) a cached value is served as stale whatever
    /// its age.
    #[cfg(feature = "cache")]
    async fn read_cached(
        &self,
        cache: &DocCache<T>,
        id: &Bson,
        fallback: bool,
    ) -> Result<Read<T>, RepositoryError> {
        let inner = &*self.inner;
        let key = stratum_store::id_key(id);
        let stripe = stripe(&key);
        let generation = AtomicU64::new(0);
        let loaded_here = std::sync::atomic::AtomicBool::new(false);
        let result = cache
            .get_or_load_async(key.clone(), |_| async {
                let entry = self.load(id, Some((stripe, &generation))).await;
                loaded_here.store(entry.is_ok(), Ordering::Relaxed);
                entry
            })
            .await;
        let entry = result.map_err(|e| (*e).clone())?;
        if loaded_here.load(Ordering::Relaxed) {
            if inner.generations[stripe].load(Ordering::Acquire)
                != generation.load(Ordering::Acquire)
            {
                // A write to this id finished while we were loading: what we
                // read may predate it, so it must not stay cached.
                cache.remove(&key);
                inner.metrics.invalidated(Invalidation::Race);
            }
            return Ok(Read {
                value: entry.doc,
                origin: Origin::Store,
            });
        }
        let age = inner.layers.clock.now().saturating_sub(entry.loaded_at);
        let origin = if age >= inner.ttl || fallback {
            Origin::Stale { age }
        } else {
            Origin::Cache
        };
        Ok(Read {
            value: entry.doc,
            origin,
        })
    }

    /// Reads the document through the layers. With a cache, `generation` is
    /// the id's stripe (the caller has it already) and the slot that
    /// receives the stripe's write generation as the database call starts
    /// (after the breaker and the admission wait, so time spent queueing is
    /// not a window in which a write can discard the load); without one
    /// there is nothing a write could make stale, so no key is encoded.
    ///
    /// Boxed: the call's future (breaker, admission, the driver's call) is
    /// most of a read's state, and unboxed every read carried it, a hit
    /// included: `Repository::get`'s future was 7 000 bytes, moved a few
    /// times per read, and `memmove` took 23 % of a cached read's CPU
    /// (`perf`, the prefetch bench's hot path line). A miss pays one
    /// allocation instead.
    fn load<'a>(
        &'a self,
        id: &'a Bson,
        generation: Option<(usize, &'a AtomicU64)>,
    ) -> Pin<Box<impl Future<Output = Result<Entry<T>, RepositoryError>> + 'a>> {
        Box::pin(self.load_unboxed(id, generation))
    }

    async fn load_unboxed(
        &self,
        id: &Bson,
        generation: Option<(usize, &AtomicU64)>,
    ) -> Result<Entry<T>, RepositoryError> {
        let layers = &self.inner.layers;
        // The read's likely successors, led before the drain the call wakes
        // could offer them to a prefetch of their own.
        #[cfg(feature = "cache")]
        let led = self.lead_successors(id);
        #[cfg(feature = "cache")]
        if let Some(prefetch) = &self.inner.prefetch {
            prefetch.demand_call(id);
        }
        #[cfg(feature = "cache")]
        if let Some(led) = led
            && let Some(entry) = self.load_joined(id, generation, led).await?
        {
            return Ok(entry);
        }
        let found = layers
            .call(async {
                if let Some((stripe, slot)) = generation {
                    let now = self.inner.generations[stripe].load(Ordering::Acquire);
                    slot.store(now, Ordering::Release);
                }
                layers.store.get_raw(T::COLLECTION, id).await
            })
            .await?;
        let doc = match found {
            Some(raw) => Some(Arc::new(decode::<T>(&raw)?)),
            None => None,
        };
        Ok(Entry {
            doc,
            loaded_at: layers.clock.now(),
        })
    }

    /// The prefetch statistics: (read calls, prefetch calls) so far, when
    /// prefetching is on (the entries' fate is in [`Self::cache_stats`]).
    #[cfg(feature = "cache")]
    pub fn prefetch_calls(&self) -> Option<(u64, u64)> {
        self.inner
            .prefetch
            .as_ref()
            .map(prefetch::Prefetcher::calls)
    }

    /// Records the reads buffered for the predictor now and starts the
    /// prefetches they call for. A drain task does this by itself when a
    /// read misses and every 16 reads of a caller (a read of a key that
    /// had likely successors at the last drain proposes them at once);
    /// tests and benchmarks call this to settle it.
    #[cfg(feature = "cache")]
    pub fn drain_predictions(&self) {
        if let Some(p) = &self.inner.prefetch {
            p.hub.drain();
        }
    }

    /// The predictor's offer: starts loading those of `ids` not cached and
    /// not being loaded, when a prefetch is permitted (their flights
    /// registered now, so a read of one that comes before the load
    /// finishes waits for it); returns whether any was not cached.
    #[cfg(feature = "cache")]
    fn offer(&self, ids: Vec<prefetch::Id>) -> bool {
        let inner = &*self.inner;
        let (Some(p), Some(cache)) = (&inner.prefetch, &inner.cache) else {
            return false;
        };
        let missing: Vec<prefetch::Id> = ids
            .into_iter()
            .filter(|i| !cache.contains_key(&i.key))
            .collect();
        // Entries loaded while the change stream is down would not be trusted.
        if missing.is_empty() || inner.trust.load(Ordering::Acquire) == Trust::Unwatched as u8 {
            return !missing.is_empty();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return true;
        };
        let Ok(permit) = p.permit(&inner.layers) else {
            return true;
        };
        let batch = cache.begin_prefetch(missing.iter().map(|m| m.key.clone()));
        if batch.is_empty() {
            p.uncount();
            return true;
        }
        let led = prefetch::Led::new(batch, &missing);
        let repo = self.clone();
        runtime.spawn(async move {
            let ok = repo.prefetch(led).await;
            if let Some(p) = &repo.inner.prefetch {
                p.finished(ok);
            }
            drop(permit);
        });
        true
    }

    /// The likely successors of a missed read of `id` that the read may
    /// ask for in its own call: in this collection, neither cached nor
    /// being loaded, and only while entries are trusted (the change stream
    /// open, or none) and the breaker is closed; their loads are led from
    /// now on, so readers of them wait for this call.
    #[cfg(feature = "cache")]
    fn lead_successors(&self, id: &Bson) -> Option<prefetch::Led<T>> {
        let inner = &*self.inner;
        let (p, cache) = (inner.prefetch.as_ref()?, inner.cache.as_ref()?);
        if inner.trust.load(Ordering::Acquire) == Trust::Unwatched as u8 {
            return None;
        }
        let ids = p.joining(&inner.layers, id, |i| !cache.contains_key(&i.key));
        if ids.is_empty() {
            return None;
        }
        let batch = cache.begin_prefetch(ids.iter().map(|i| i.key.clone()));
        (!batch.is_empty()).then(|| prefetch::Led::new(batch, &ids))
    }

    /// A missed read that asks for its likely successors too, in one
    /// `_id: {$in: [id, ...]}` query through the breaker and admission:
    /// no call and no admission slot of their own. The successors are
    /// stored as prefetched entries. `None` when the answer lacks the
    /// document asked for (absent, or stored under an id that compares
    /// equal but encodes differently, as an `Int32` and an `Int64` do):
    /// the caller then asks for it alone, as a read without prediction
    /// would.
    #[cfg(feature = "cache")]
    async fn load_joined(
        &self,
        id: &Bson,
        generation: Option<(usize, &AtomicU64)>,
        led: prefetch::Led<T>,
    ) -> Result<Option<Entry<T>>, RepositoryError> {
        let inner = &*self.inner;
        let layers = &inner.layers;
        let wanted: Vec<Bson> = std::iter::once(id.clone()).chain(led.ids()).collect();
        let docs = layers
            .call(async {
                if let Some((stripe, slot)) = generation {
                    let now = inner.generations[stripe].load(Ordering::Acquire);
                    slot.store(now, Ordering::Release);
                }
                led.note(&inner.generations);
                let query = Query::new(Filter::is_in("_id", wanted));
                layers.store.find(T::COLLECTION, &query).await
            })
            .await?;
        if let Some(p) = &inner.prefetch {
            p.joined(led.len());
        }
        let key = stratum_store::id_key(id);
        let (own, others): (Vec<bson::Document>, Vec<bson::Document>) =
            docs.into_iter().partition(|d| {
                d.get("_id")
                    .is_some_and(|i| stratum_store::id_key(i) == key)
            });
        let loaded_at = layers.clock.now();
        led.store(inner, prefetch::decoded(others), loaded_at);
        match own.into_iter().next() {
            Some(doc) => Ok(Some(Entry {
                doc: Some(Arc::new(T::from_bson_checked(doc)?)),
                loaded_at,
            })),
            None => Ok(None),
        }
    }

    /// Loads a prefetch's ids in one `_id: {$in: [...]}` query through the
    /// breaker and admission, like a read.
    #[cfg(feature = "cache")]
    async fn prefetch(&self, led: prefetch::Led<T>) -> bool {
        let inner = &*self.inner;
        let layers = &inner.layers;
        let docs = layers
            .call(async {
                led.note(&inner.generations);
                let query = Query::new(Filter::is_in("_id", led.ids().collect::<Vec<_>>()));
                layers.store.find(T::COLLECTION, &query).await
            })
            .await;
        let Ok(docs) = docs else {
            // The loads are abandoned: their waiters load for themselves.
            return false;
        };
        led.store(inner, prefetch::decoded(docs), layers.clock.now());
        true
    }

    /// Stores a new document (validated by its type first); the id's cache
    /// entry (a cached absence, say) is dropped.
    pub async fn insert(&self, doc: &T) -> Result<(), RepositoryError> {
        self.observe(Op::Insert, async {
            // Validated, encoded and size-checked once; the store checks the
            // field names on these bytes and sends them as they are.
            // (In the stack's metrics scope: a refusal is counted there.)
            let encoded = self.in_scope(|| doc.to_raw_checked())?;
            let id = to_bson(doc.id())?;
            let layers = &self.inner.layers;
            let result = layers
                .call(layers.store.insert_raw(T::COLLECTION, encoded))
                .await;
            self.after_write(&result, |id| self.invalidate(id), Some(&id));
            result.map(|_| ())
        })
        .await
    }

    /// Applies `update` to the document with this id and returns it as it is
    /// afterwards; the cache then holds that version.
    pub async fn update(&self, id: &T::Id, update: &Update) -> Result<Arc<T>, RepositoryError> {
        self.modify(id, update, false).await
    }

    /// Like [`update`](Self::update), creating `{_id: id}` first when there
    /// is no such document. The result must decode as `T`, so the update
    /// must set every required field when it creates the document.
    pub async fn upsert(&self, id: &T::Id, update: &Update) -> Result<Arc<T>, RepositoryError> {
        self.modify(id, update, true).await
    }

    /// An update, or with `create` an upsert: notes the id's write
    /// generation as the database call starts, then puts the version the
    /// store returned into the cache unless another write overtook it.
    async fn modify(
        &self,
        id: &T::Id,
        update: &Update,
        create: bool,
    ) -> Result<Arc<T>, RepositoryError> {
        let op = if create { Op::Upsert } else { Op::Update };
        self.observe(op, async {
            let id = to_bson(id)?;
            let before = AtomicU64::new(0);
            let layers = &self.inner.layers;
            let result = layers
                .call(async {
                    before.store(self.generation(&id), Ordering::Release);
                    if create {
                        layers.store.upsert(T::COLLECTION, &id, update).await
                    } else {
                        layers.store.update(T::COLLECTION, &id, update).await
                    }
                })
                .await;
            self.refresh(&id, before.load(Ordering::Acquire), result)
        })
        .await
    }

    /// Removes the document with this id; `false` when there was none.
    pub async fn delete(&self, id: &T::Id) -> Result<bool, RepositoryError> {
        self.observe(Op::Delete, async {
            let id = to_bson(id)?;
            let layers = &self.inner.layers;
            let result = layers.call(layers.store.delete(T::COLLECTION, &id)).await;
            self.after_write(&result, |id| self.invalidate(id), Some(&id));
            result
        })
        .await
    }

    /// The documents `query` selects (not cached: a query's answer changes
    /// with every write to the collection).
    pub async fn find(&self, query: &Query) -> Result<Vec<T>, RepositoryError> {
        self.observe(Op::Find, async {
            let layers = &self.inner.layers;
            let docs = layers.call(layers.store.find(T::COLLECTION, query)).await?;
            docs.into_iter()
                .map(|d| T::from_bson_checked(d).map_err(RepositoryError::from))
                .collect()
        })
        .await
    }

    /// How many documents `filter` matches.
    pub async fn count(&self, filter: &Filter) -> Result<u64, RepositoryError> {
        self.observe(Op::Count, async {
            let layers = &self.inner.layers;
            layers.call(layers.store.count(T::COLLECTION, filter)).await
        })
        .await
    }

    /// Declares `T`'s indexes on the store as `T` declares them: names,
    /// uniqueness and TTLs (over MongoDB a TTL index, which the server's
    /// sweep uses to delete expired documents). Idempotent; an index of the
    /// same name or keys with another definition is refused
    /// ([`StoreError::Validation`](crate::StoreError::Validation)).
    pub async fn ensure_indexes(&self) -> Result<(), RepositoryError> {
        self.observe(Op::EnsureIndex, async {
            let layers = &self.inner.layers;
            for index in T::indexes() {
                layers
                    .call(layers.store.ensure_index(T::COLLECTION, &index))
                    .await?;
            }
            Ok(())
        })
        .await
    }

    /// Drops the cached entry of this id (another process wrote it, say).
    pub fn invalidate_id(&self, id: &T::Id) -> Result<(), RepositoryError> {
        let id = to_bson(id)?;
        self.invalidate(&id);
        Ok(())
    }

    /// The write generation of the id's stripe now (taken as a database call starts).
    fn generation(&self, id: &Bson) -> u64 {
        self.inner.generations[stripe(&stratum_store::id_key(id))].load(Ordering::Acquire)
    }

    /// Puts the version a write returned into the cache, unless another
    /// write to the same stripe finished while this one was in flight
    /// (generation no longer `before`): that one's version may be newer, so
    /// the entry is dropped instead and the next read loads it.
    fn refresh(
        &self,
        id: &Bson,
        before: u64,
        result: Result<bson::Document, RepositoryError>,
    ) -> Result<Arc<T>, RepositoryError> {
        if result.is_err() {
            self.after_write(&result, |id| self.invalidate(id), Some(id));
        }
        let doc = result?;
        match T::from_bson_checked(doc) {
            Ok(value) => {
                let value = Arc::new(value);
                if let Some(cache) = &self.inner.cache {
                    let key = stratum_store::id_key(id);
                    let stripe = stripe(&key);
                    let _order = self.inner.write_order[stripe].lock();
                    if self.inner.generations[stripe].load(Ordering::Acquire) == before {
                        cache.insert(
                            key.clone(),
                            Entry {
                                doc: Some(Arc::clone(&value)),
                                loaded_at: self.inner.layers.clock.now(),
                            },
                        );
                    } else {
                        cache.remove(&key);
                        self.inner.metrics.invalidated(Invalidation::Race);
                    }
                    self.bump(&key);
                }
                Ok(value)
            }
            // The write happened but the result is not a valid `T`: the
            // cache must not keep the old version.
            Err(e) => {
                self.invalidate(id);
                Err(e.into())
            }
        }
    }

    /// Drops the id's entry when the write may have changed the document:
    /// it succeeded, or failed in a way whose outcome is unknown (a timeout,
    /// a dropped connection after the request was sent, a not-primary answer
    /// to the driver's retry of a first attempt whose answer was lost).
    fn after_write<R>(
        &self,
        result: &Result<R, RepositoryError>,
        invalidate: impl FnOnce(&Bson),
        id: Option<&Bson>,
    ) {
        let may_have_written = match result {
            Ok(_) => true,
            Err(RepositoryError::Store(e)) => e.is_unavailable(),
            Err(_) => false,
        };
        if let (true, Some(id)) = (may_have_written, id) {
            invalidate(id);
        }
    }

    fn invalidate(&self, id: &Bson) {
        self.invalidate_from(id, Invalidation::Write);
    }

    /// Drops the id's entry; `cause` is the metric label.
    pub(crate) fn invalidate_from(&self, id: &Bson, cause: Invalidation) {
        if let Some(cache) = &self.inner.cache {
            let key = stratum_store::id_key(id);
            let _order = self.inner.write_order[stripe(&key)].lock();
            cache.remove(&key);
            self.bump(&key);
            self.inner.metrics.invalidated(cause);
        }
    }

    /// Drops every entry (the collection was dropped or renamed elsewhere).
    #[cfg_attr(not(feature = "mongodb"), allow(dead_code))]
    pub(crate) fn invalidate_everything(&self) {
        if let Some(cache) = &self.inner.cache {
            cache.invalidate_all();
            for generation in self.inner.generations.iter() {
                generation.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Sets whether cached entries may be served as fresh (the watcher's
    /// stream state).
    #[cfg_attr(not(feature = "mongodb"), allow(dead_code))]
    pub(crate) fn set_trust(&self, trust: Trust) {
        self.inner.trust.store(trust as u8, Ordering::Release);
    }

    /// A handle that does not keep the repository alive (a watcher's
    /// callback holds one, so the handle owning the watcher can be dropped).
    #[cfg_attr(not(feature = "mongodb"), allow(dead_code))]
    pub(crate) fn downgrade(&self) -> WeakRepository<T> {
        WeakRepository(Arc::downgrade(&self.inner))
    }

    fn bump(&self, key: &[u8]) {
        self.inner.generations[stripe(key)].fetch_add(1, Ordering::AcqRel);
    }

    /// Times the operation, counts its outcome and runs it in a span.
    async fn observe<R>(
        &self,
        op: Op,
        work: impl Future<Output = Result<R, RepositoryError>>,
    ) -> Result<R, RepositoryError> {
        let span = tracing::debug_span!(
            "stratum.repository",
            collection = T::COLLECTION,
            operation = op.as_str()
        );
        let started = Instant::now();
        let result = work.instrument(span).await;
        self.inner.metrics.finished(op, started.elapsed(), &result);
        if let Err(e) = &result {
            tracing::debug!(
                collection = T::COLLECTION,
                operation = op.as_str(),
                kind = e.kind(),
                error = %e,
                "repository operation failed"
            );
        }
        result
    }
}

#[cfg(feature = "cache")]
impl<T: Document> prefetch::Target for Inner<T> {
    fn has(&self, id: &prefetch::Id) -> bool {
        self.cache.as_ref().is_some_and(|c| c.contains_key(&id.key))
    }

    fn offer(self: Arc<Self>, ids: Vec<prefetch::Id>) -> bool {
        Repository { inner: self }.offer(ids)
    }
}

/// A [`Repository`] that does not keep it alive.
#[cfg_attr(not(feature = "mongodb"), allow(dead_code))]
pub(crate) struct WeakRepository<T>(Weak<Inner<T>>);

#[cfg_attr(not(feature = "mongodb"), allow(dead_code))]
impl<T> WeakRepository<T> {
    /// The repository, unless every handle to it was dropped.
    pub(crate) fn upgrade(&self) -> Option<Repository<T>> {
        self.0.upgrade().map(|inner| Repository { inner })
    }
}

/// Decodes a stored document straight from its bytes (as the driver decodes
/// into a typed collection) and checks the type's rules, like
/// `Document::from_bson_checked`.
fn decode<T: Document>(raw: &bson::RawDocument) -> Result<T, stratum_models::ValidationError> {
    let value: T = bson::from_slice(raw.as_bytes()).map_err(|e| {
        stratum_models::ValidationError::Malformed {
            reason: e.to_string(),
        }
    })?;
    value.validate()?;
    Ok(value)
}

fn to_bson<I: serde::Serialize>(id: &I) -> Result<Bson, RepositoryError> {
    bson::to_bson(id).map_err(|e| {
        RepositoryError::Invalid(stratum_models::ValidationError::Unencodable {
            reason: format!("the id does not encode as BSON: {e}"),
        })
    })
}

fn stripe(key: &[u8]) -> usize {
    // FNV-1a: cheap, and spreads ids that differ in their last bytes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % STRIPES as u64) as usize
}
