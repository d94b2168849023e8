//! The [`Cache`] trait and its production implementation, [`ShardedCache`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::adapt::{self, Climber};
use crate::clock::{Clock, CoarseClock, coarse_now_nanos, ticks};
use crate::config::{Admission, CacheBuilder, EvictionListener, Policy, SmallQueue, Weigher};
use crate::flight::{ErasedError, Flight, FlightTable, LeadGuard, Outcome};
use crate::shard::{Hasher, Lookup, NewEntry, Removals, ShardData, Timing};
use crate::stats::{CacheStats, Counter, StatsCells};

/// Slots examined for dead entries on every write (amortized expiry).
const SWEEP_PER_WRITE: usize = 4;

/// A key-value cache: the small trait every Stratum cache implements.
///
/// `get_or_load` is single-flight: concurrent callers for one missing key
/// run the loader once and all receive its value or its error.
///
/// ```
/// use stratum_cache::{Cache, CacheBuilder};
///
/// fn lookup(cache: &impl Cache<u64, String>, id: u64) -> String {
///     cache
///         .get_or_load(id, |id| Ok::<_, std::io::Error>(format!("doc {id}")))
///         .unwrap()
/// }
///
/// let cache = CacheBuilder::new(1_000).build().unwrap();
/// assert_eq!(lookup(&cache, 7), "doc 7");
/// assert_eq!(cache.get(&7).as_deref(), Some("doc 7"));
/// ```
pub trait Cache<K, V> {
    /// The live value for `key`, if any. Counts a hit or a miss.
    fn get(&self, key: &K) -> Option<V>;
    /// Stores `value` under the cache's time-to-live.
    fn insert(&self, key: K, value: V);
    /// Stores `value` with its own time-to-live, replacing the cache's.
    fn insert_with_ttl(&self, key: K, value: V, ttl: Duration);
    /// Removes `key`, returning its value if it was live.
    fn remove(&self, key: &K) -> Option<V>;
    /// Removes every entry.
    fn invalidate_all(&self);
    /// The live value for `key`, or loads it (once, however many callers
    /// wait) and stores it. An error reaches every waiter as the same `Arc`.
    fn get_or_load<E, F>(&self, key: K, load: F) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce(&K) -> Result<V, E>;
}

/// A shard on a cache line of its own: its entries and its flights.
#[repr(align(128))]
struct Shard<K, V> {
    data: RwLock<ShardData<K, V>>,
    flights: Mutex<HashMap<K, Arc<Flight<V>>, Hasher>>,
}

pub(crate) struct Inner<K, V> {
    shards: Box<[Shard<K, V>]>,
    shard_mask: u64,
    hasher: Hasher,
    name: Arc<str>,
    policy: Policy,
    timing: Timing,
    ttl: Option<u64>,
    refresh_after: Option<f64>,
    /// `None`: the default [`crate::CoarseClock`], read directly (no
    /// virtual call on the lookup path).
    clock: Option<Arc<dyn Clock>>,
    weigher: Option<Weigher<K, V>>,
    listener: Option<EvictionListener<K, V>>,
    pub(crate) stats: StatsCells,
    /// `stratum_cache_load_duration_seconds{cache}`, registered once when the
    /// cache is built (in the `metrics` recorder current then), so a load
    /// pays no key lookup and records where the cache's other series go.
    load_duration: metrics::Histogram,
    /// S3-FIFO with an adaptive small queue: the share and its climber.
    adaptive: Option<Adaptive>,
}

/// The adaptive small queue's cache-wide state: the current share, read by
/// every shard when it inserts, and the climber that moves it.
struct Adaptive {
    share: AtomicU32,
    climber: Mutex<Climber>,
    /// A shard offers a sample to the climber every this many inserts.
    every: u32,
}

impl Adaptive {
    /// Feeds the climber the cache's hit and miss counts (skipped if
    /// another shard is doing it).
    fn sample(&self, stats: &StatsCells) {
        if let Some(mut climber) = self.climber.try_lock() {
            let (hits, misses) = stats.hits_misses();
            if let Some(share) = climber.observe(hits, misses) {
                self.share.store(share, Ordering::Relaxed);
            }
        }
    }
}

/// The production [`Cache`]: sharded, bounded by count or weight, with
/// exact LRU or S3-FIFO eviction, TTL/TTI/per-entry expiry, single-flight
/// loads (sync and async), stale-if-error and statistics. Cloning is cheap
/// and clones share the cache.
///
/// Concurrency: a key lives in one of a power-of-two number of shards, each
/// behind a `parking_lot::RwLock`. With S3-FIFO a read takes the lock
/// shared and only bumps a saturating counter (no write once it is
/// saturated), so reads of a hot key run in parallel. With exact LRU a read
/// must move the entry to the front, so it takes its shard exclusively.
///
/// ```
/// use stratum_cache::{Cache, CacheBuilder, ManualClock, Policy};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let cache = CacheBuilder::new(2)
///     .policy(Policy::Lru)
///     .shards(1)
///     .time_to_live(Duration::from_secs(10))
///     .clock(clock.clone())
///     .build()
///     .unwrap();
/// cache.insert("a", 1);
/// cache.insert("b", 2);
/// cache.get(&"a");       // "b" is now least recently used
/// cache.insert("c", 3);  // evicts "b"
/// assert_eq!(cache.get(&"b"), None);
/// clock.advance(Duration::from_secs(10));
/// assert_eq!(cache.get(&"a"), None); // expired: never returned
/// ```
pub struct ShardedCache<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for ShardedCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> fmt::Debug for ShardedCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedCache")
            .field("name", &self.inner.name)
            .field("policy", &self.inner.policy)
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

/// What a get-or-load caller does next.
pub(crate) enum Begin<K, V> {
    Hit(V),
    Wait(Arc<Flight<V>>),
    Lead(Lead<K, V>),
}

pub(crate) type Lead<K, V> = LeadGuard<K, V>;

impl<K, V> FlightTable<K, V> for Inner<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn forget(&self, key: &K, hash: u64, flight: &Arc<Flight<V>>) {
        let mut flights = self.shard(hash).flights.lock();
        if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            flights.remove(key);
        }
    }
}

impl<K, V> Inner<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    #[inline]
    pub(crate) fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard<K, V> {
        // Bits 40.. pick the shard: hashbrown uses the low bits for the
        // bucket and the top 7 for its tag, so neither is made constant
        // within a shard.
        let i = ((hash >> 40) & self.shard_mask) as usize;
        // `shard_mask` is `len - 1`, so `get` always succeeds; the fallback
        // avoids both a panic path and a division.
        match self.shards.get(i) {
            Some(shard) => shard,
            None => &self.shards[0],
        }
    }

    #[inline]
    fn now(&self) -> u64 {
        match &self.clock {
            None => coarse_now_nanos(),
            Some(clock) => clock.now_nanos(),
        }
    }

    /// Looks `key` up without counting a hit or miss.
    #[inline]
    pub(crate) fn lookup(&self, key: &K, hash: u64, want_stale: bool) -> Lookup<V> {
        let shard = self.shard(hash);
        let now = self.now();
        match self.policy {
            Policy::S3Fifo => {
                shard
                    .data
                    .read()
                    .lookup_shared(hash, key, now, self.timing, want_stale)
            }
            Policy::Lru => {
                let mut out = Removals::default();
                let found = shard.data.write().lookup_exclusive(
                    hash,
                    key,
                    now,
                    self.timing,
                    want_stale,
                    &mut out,
                );
                self.removed(out);
                found
            }
        }
    }

    pub(crate) fn insert(&self, key: K, value: V, ttl: Option<Duration>) {
        self.store(key, value, ttl, false);
    }

    /// Stores a value; with `prefetched`, only if the key is absent, in
    /// the small queue and flagged (see `predict.rs`).
    pub(crate) fn store(&self, key: K, value: V, ttl: Option<Duration>, prefetched: bool) {
        let hash = self.hash(&key);
        let weight = self.weigher.as_ref().map_or(1, |w| w(&key, &value));
        let now = self.now();
        let ttl = ttl.map(ticks).or(self.ttl);
        let expires_at = ttl.map_or(u64::MAX, |t| now.saturating_add(t));
        let refresh_at = match (ttl, self.refresh_after) {
            (Some(t), Some(f)) => now.saturating_add((t as f64 * f) as u64),
            _ => u64::MAX,
        };
        let mut out = Removals::default();
        // The climber whose sample this write made due, if any.
        let mut sample_due: Option<&Adaptive> = None;
        {
            let mut data = self.shard(hash).data.write();
            if let Some(a) = &self.adaptive {
                let share = a.share.load(Ordering::Relaxed);
                if data.small_share() != share {
                    data.set_small_share(share);
                }
                data.since_sample += 1;
                if data.since_sample >= a.every {
                    data.since_sample = 0;
                    sample_due = Some(a);
                }
            }
            data.insert(
                NewEntry {
                    key,
                    value,
                    hash,
                    weight,
                    expires_at,
                    refresh_at,
                    prefetched,
                },
                now,
                self.timing,
                &mut out,
            );
            data.sweep(SWEEP_PER_WRITE, now, self.timing, &mut out);
        }
        // Summing the statistics' stripes reads a cache line per stripe,
        // some of them just written by other cores: done after the write
        // lock is released, so readers of this shard do not wait for it.
        if let Some(a) = sample_due {
            a.sample(&self.stats);
        }
        self.removed(out);
    }

    /// A waiter took its value from a flight: if a prefetch led it, the
    /// entry it stored counts as read.
    fn claim_prefetched(&self, key: &K, hash: u64) {
        self.shard(hash).data.read().claim_key(hash, key);
    }

    /// Counts removals and tells the listener, outside every lock.
    fn removed(&self, out: Removals<K, V>) {
        if out.is_empty() {
            return;
        }
        out.for_each(|(key, value, cause)| {
            self.stats.add(Counter::eviction(cause), 1);
            if let Some(listener) = &self.listener {
                listener(&key, &value, cause);
            }
        });
    }

    /// Finds a live value, joins the key's flight, or becomes its leader.
    pub(crate) fn begin(self: &Arc<Self>, key: &K, hash: u64) -> Begin<K, V> {
        let shard = self.shard(hash);
        let mut flights = shard.flights.lock();
        if let Some(f) = flights.get(key) {
            return Begin::Wait(Arc::clone(f));
        }
        // A leader stores its value before it unregisters, so checking again
        // under the flights lock cannot miss a load that just finished. This
        // check takes the data lock shared and removes nothing, so no
        // listener runs while the flights lock is held (a listener may call
        // back into the cache).
        let now = self.now();
        if let Lookup::Hit { value, .. } =
            shard
                .data
                .read()
                .lookup_shared(hash, key, now, self.timing, false)
        {
            return Begin::Hit(value);
        }
        let flight = Flight::new();
        flights.insert(key.clone(), Arc::clone(&flight));
        Begin::Lead(LeadGuard::new(
            Arc::clone(self) as _,
            key.clone(),
            hash,
            flight,
        ))
    }

    /// Leads a flight only if none is under way (refresh-ahead).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn try_lead(self: &Arc<Self>, key: &K) -> Option<Lead<K, V>> {
        let hash = self.hash(key);
        let mut flights = self.shard(hash).flights.lock();
        if flights.contains_key(key) {
            return None;
        }
        let flight = Flight::new();
        flights.insert(key.clone(), Arc::clone(&flight));
        Some(LeadGuard::new(
            Arc::clone(self) as _,
            key.clone(),
            hash,
            flight,
        ))
    }

    /// Records a finished load: stats, the value stored, waiters told.
    pub(crate) fn complete<E: Send + Sync + 'static>(
        &self,
        lead: Lead<K, V>,
        result: Result<V, E>,
        started: Instant,
    ) -> Result<V, Arc<E>> {
        let elapsed = started.elapsed();
        self.stats.add(Counter::LoadNanos, ticks(elapsed));
        self.load_duration.record(elapsed.as_secs_f64());
        match result {
            Ok(v) => {
                self.stats.add(Counter::LoadsOk, 1);
                self.insert(lead.key().clone(), v.clone(), None);
                lead.finish(Ok(v.clone()));
                Ok(v)
            }
            Err(e) => {
                self.stats.add(Counter::LoadsErr, 1);
                let e = Arc::new(e);
                let erased: ErasedError = Arc::clone(&e) as ErasedError;
                lead.finish(Err(erased));
                Err(e)
            }
        }
    }

    fn serve_stale<E>(&self, stale: Option<V>, err: Arc<E>) -> Result<V, Arc<E>> {
        match stale {
            Some(v) => {
                self.stats.add(Counter::StaleServes, 1);
                tracing::debug!(cache = %self.name, "loader failed; serving a stale value");
                Ok(v)
            }
            None => Err(err),
        }
    }

    /// A live value without counting: `Ok(value)`, or the stale value (if
    /// stale-if-error is on) to fall back on.
    fn probe(&self, key: &K, hash: u64) -> Result<V, Option<V>> {
        match self.lookup(key, hash, self.timing.max_stale > 0) {
            Lookup::Hit { value, .. } => Ok(value),
            Lookup::Stale(v) => Err(Some(v)),
            Lookup::Miss => Err(None),
        }
    }

    pub(crate) fn get_or_load<E, F>(self: &Arc<Self>, key: K, load: F) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce(&K) -> Result<V, E>,
    {
        let hash = self.hash(&key);
        let stale = match self.probe(&key, hash) {
            Ok(v) => {
                self.stats.add(Counter::Hits, 1);
                return Ok(v);
            }
            Err(stale) => stale,
        };
        self.stats.add(Counter::Misses, 1);
        loop {
            match self.begin(&key, hash) {
                Begin::Hit(v) => return Ok(v),
                Begin::Lead(lead) => {
                    let started = Instant::now();
                    let result = load(&key);
                    return self
                        .complete(lead, result, started)
                        .or_else(|e| self.serve_stale(stale, e));
                }
                Begin::Wait(flight) => match flight.wait() {
                    Outcome::Loaded(v) => {
                        self.claim_prefetched(&key, hash);
                        return Ok(v);
                    }
                    Outcome::Failed(e) => {
                        if let Ok(e) = e.downcast::<E>() {
                            return self.serve_stale(stale, e);
                        }
                        // The leader's loader had another error type: load
                        // ourselves on the next round.
                    }
                    Outcome::Abandoned => {}
                },
            }
        }
    }

    pub(crate) async fn get_or_load_async<E, F, Fut>(
        self: &Arc<Self>,
        key: K,
        load: F,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let hash = self.hash(&key);
        let stale = match self.probe(&key, hash) {
            Ok(v) => {
                self.stats.add(Counter::Hits, 1);
                return Ok(v);
            }
            Err(stale) => stale,
        };
        self.stats.add(Counter::Misses, 1);
        let mut load = Some(load);
        loop {
            match self.begin(&key, hash) {
                Begin::Hit(v) => return Ok(v),
                Begin::Lead(lead) => {
                    let Some(load) = load.take() else {
                        // A loader runs at most once per call, and a call
                        // leads at most once: leading returns below.
                        continue;
                    };
                    let started = Instant::now();
                    // If this future is dropped while awaiting, `lead` is
                    // dropped too and the waiters retry.
                    let result = load(key.clone()).await;
                    return self
                        .complete(lead, result, started)
                        .or_else(|e| self.serve_stale(stale, e));
                }
                Begin::Wait(flight) => match flight.wait_async().await {
                    Outcome::Loaded(v) => {
                        self.claim_prefetched(&key, hash);
                        return Ok(v);
                    }
                    Outcome::Failed(e) => {
                        if let Ok(e) = e.downcast::<E>() {
                            return self.serve_stale(stale, e);
                        }
                    }
                    Outcome::Abandoned => {}
                },
            }
        }
    }

    pub(crate) fn run_pending_tasks(&self) {
        let now = self.now();
        for shard in self.shards.iter() {
            let mut out = Removals::default();
            {
                let mut data = shard.data.write();
                let slots = data.slots();
                data.sweep(slots, now, self.timing, &mut out);
            }
            self.removed(out);
        }
    }

    /// The counters, with the prefetch counts the shards keep.
    pub(crate) fn snapshot(&self) -> CacheStats {
        let mut stats = self.stats.snapshot();
        for shard in self.shards.iter() {
            shard.data.read().prefetch.add_to(&mut stats);
        }
        stats
    }

    pub(crate) fn publish_metrics(&self) {
        let s = self.snapshot();
        crate::predict::publish_metrics(&self.name, &s);
        let name = self.name.to_string();
        metrics::counter!("stratum_cache_hits_total", "cache" => name.clone()).absolute(s.hits);
        metrics::counter!("stratum_cache_misses_total", "cache" => name.clone()).absolute(s.misses);
        metrics::counter!("stratum_cache_loads_total", "cache" => name.clone(), "result" => "ok")
            .absolute(s.loads_ok);
        metrics::counter!("stratum_cache_loads_total", "cache" => name.clone(), "result" => "error")
            .absolute(s.loads_err);
        for (cause, v) in [
            ("size", s.evicted_size),
            ("expired", s.evicted_expired),
            ("explicit", s.evicted_explicit),
            ("replaced", s.evicted_replaced),
        ] {
            metrics::counter!("stratum_cache_evictions_total", "cache" => name.clone(), "cause" => cause)
                .absolute(v);
        }
        metrics::counter!("stratum_cache_refreshes_total", "cache" => name.clone())
            .absolute(s.refreshes);
        metrics::counter!("stratum_cache_stale_serves_total", "cache" => name.clone())
            .absolute(s.stale_serves);
        let (mut len, mut weight) = (0u64, 0u64);
        for shard in self.shards.iter() {
            let d = shard.data.read();
            len += d.len() as u64;
            weight += d.weight();
        }
        metrics::gauge!("stratum_cache_entries", "cache" => name.clone()).set(len as f64);
        metrics::gauge!("stratum_cache_weighted_size", "cache" => name).set(weight as f64);
    }
}

impl<K, V> ShardedCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn from_builder(b: CacheBuilder<K, V>) -> Self {
        let n = b.config.shard_count();
        let per_shard = (b.config.max_capacity / n as u64).max(1);
        let timing = Timing {
            tti: b.config.time_to_idle.map(ticks),
            max_stale: b.config.max_stale.map_or(0, ticks),
            refresh: b.config.refresh_after.is_some(),
        };
        let hasher = b.hash_seed.map_or_else(Hasher::random, |seed| {
            Hasher::with_seed(seed, foldhash::SharedSeed::global_fixed())
        });
        let (share, adaptive) = match b.config.small_queue {
            SmallQueue::Fixed(p) => (u32::from(p) * adapt::PER_MILLE / 100, None),
            SmallQueue::Adaptive => (
                adapt::START,
                (b.config.policy == Policy::S3Fifo).then(|| Adaptive {
                    share: AtomicU32::new(adapt::START),
                    climber: Mutex::new(Climber::new(b.config.max_capacity)),
                    every: u32::try_from(per_shard / 8).unwrap_or(u32::MAX).max(16),
                }),
            ),
        };
        let shards = (0..n)
            .map(|_| {
                let mut data = ShardData::new(per_shard, b.config.policy, timing, hasher.clone());
                data.set_frequency_admission(b.config.admission == Admission::Frequency);
                data.set_small_share(share);
                Shard {
                    data: RwLock::new(data),
                    flights: Mutex::new(HashMap::with_hasher(Hasher::default())),
                }
            })
            .collect();
        let inner = Inner {
            shards,
            shard_mask: n as u64 - 1,
            hasher,
            name: Arc::from(b.config.name.as_str()),
            policy: b.config.policy,
            timing,
            ttl: b.config.time_to_live.map(ticks),
            refresh_after: b.config.refresh_after,
            clock: b.clock.or_else(|| {
                // Starts the shared ticker thread on first use.
                let _ = CoarseClock::new();
                None
            }),
            weigher: b.weigher,
            listener: b.listener,
            stats: StatsCells::new(),
            load_duration: metrics::histogram!(
                "stratum_cache_load_duration_seconds",
                "cache" => b.config.name.clone()
            ),
            adaptive,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn inner(&self) -> &Arc<Inner<K, V>> {
        &self.inner
    }

    /// The async face of [`Cache::get_or_load`]: single-flight, and waiting
    /// never blocks a runtime thread (waiters are woken, not parked). If
    /// the leading call is cancelled, a waiting call takes over the load.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use stratum_cache::CacheBuilder;
    ///
    /// let cache = CacheBuilder::<u64, String>::new(100).build().unwrap();
    /// let v = cache
    ///     .get_or_load_async(1, |id| async move { Ok::<_, std::io::Error>(format!("row {id}")) })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(v, "row 1");
    /// # });
    /// ```
    pub async fn get_or_load_async<E, F, Fut>(&self, key: K, load: F) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        self.inner.get_or_load_async(key, load).await
    }

    /// True if `key` has a live value; neither counts nor touches the entry.
    pub fn contains_key(&self, key: &K) -> bool {
        let hash = self.inner.hash(key);
        let now = self.inner.now();
        let data = self.inner.shard(hash).data.read();
        matches!(
            data.lookup_shared_peek(hash, key, now, self.inner.timing),
            Some(true)
        )
    }

    /// Entries stored, including expired ones not yet reclaimed.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.data.read().len()).sum()
    }

    /// True if nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight stored (the entry count without a weigher).
    pub fn weighted_size(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.data.read().weight())
            .sum()
    }

    /// The bound on [`ShardedCache::weighted_size`]: the capacity split
    /// evenly between shards, rounded down.
    pub fn capacity(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.data.read().capacity())
            .sum()
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> CacheStats {
        self.inner.snapshot()
    }

    /// The name used as the `cache` metrics label.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Reclaims every expired entry now. Writes already reclaim a few
    /// entries each, and the background task (`spawn_maintenance`) calls
    /// this periodically; call it yourself only for prompt reclamation.
    pub fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks();
    }

    /// Sends the current statistics to the `metrics` recorder (absolute
    /// counter values and gauges; see docs/cache.md for the names).
    pub fn publish_metrics(&self) {
        self.inner.publish_metrics();
    }

    /// Keys of one shard in eviction order, next victim first: for exact LRU
    /// least recently used first; for S3-FIFO the small then the main queue.
    /// Meant for tests and diagnostics (it clones every key).
    pub fn eviction_order(&self, shard: usize) -> Vec<K> {
        self.inner
            .shards
            .get(shard)
            .map(|s| {
                s.data
                    .read()
                    .keys_in_eviction_order()
                    .into_iter()
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl<K, V> Cache<K, V> for ShardedCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    #[inline]
    fn get(&self, key: &K) -> Option<V> {
        let inner = &*self.inner;
        let hash = inner.hash(key);
        let found = match inner.policy {
            // The shared read path, returning the value itself.
            Policy::S3Fifo => {
                let now = inner.now();
                inner
                    .shard(hash)
                    .data
                    .read()
                    .get_shared(hash, key, now, inner.timing)
            }
            Policy::Lru => match inner.lookup(key, hash, false) {
                Lookup::Hit { value, .. } => Some(value),
                _ => None,
            },
        };
        let counter = if found.is_some() {
            Counter::Hits
        } else {
            Counter::Misses
        };
        inner.stats.add(counter, 1);
        found
    }

    fn insert(&self, key: K, value: V) {
        self.inner.insert(key, value, None);
    }

    fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.inner.insert(key, value, Some(ttl));
    }

    fn remove(&self, key: &K) -> Option<V> {
        let inner = &*self.inner;
        let hash = inner.hash(key);
        let now = inner.now();
        let removed = {
            let mut data = inner.shard(hash).data.write();
            let live = data.lookup_shared_peek(hash, key, now, inner.timing) == Some(true);
            // Removing an entry that had already expired counts as expiry.
            let cause = if live {
                crate::stats::RemovalCause::Explicit
            } else {
                crate::stats::RemovalCause::Expired
            };
            data.remove(hash, key, cause).map(|r| (r, live))
        };
        let (r, live) = removed?;
        let value = r.1.clone();
        let mut out = Removals::default();
        out.push(r);
        inner.removed(out);
        live.then_some(value)
    }

    fn invalidate_all(&self) {
        for shard in self.inner.shards.iter() {
            let mut out = Removals::default();
            shard.data.write().clear(&mut out);
            self.inner.removed(out);
        }
    }

    fn get_or_load<E, F>(&self, key: K, load: F) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce(&K) -> Result<V, E>,
    {
        self.inner.get_or_load(key, load)
    }
}
