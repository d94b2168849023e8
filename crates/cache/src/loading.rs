//! [`LoadingCache`]: a cache bound to its loader, which adds what needs one:
//! refresh-ahead in the background and warm-up (feature `tokio`).

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Instant;

use crate::cache::ShardedCache;
use crate::shard::Lookup;
use crate::stats::Counter;

/// Loads the value for a key from the source of truth (a database, a
/// service). Implement it with `async fn`.
///
/// ```
/// use stratum_cache::AsyncLoader;
///
/// struct Squares;
///
/// impl AsyncLoader<u64, u64> for Squares {
///     type Error = std::convert::Infallible;
///     async fn load(&self, key: u64) -> Result<u64, Self::Error> {
///         Ok(key * key)
///     }
/// }
/// ```
pub trait AsyncLoader<K, V>: Send + Sync + 'static {
    /// What a failed load returns.
    type Error: Send + Sync + 'static;
    /// Loads the value for `key`.
    fn load(&self, key: K) -> impl Future<Output = Result<V, Self::Error>> + Send;
}

/// A shared loader is a loader, so a test or a caller can keep a handle.
impl<K, V, L> AsyncLoader<K, V> for Arc<L>
where
    L: AsyncLoader<K, V>,
    K: Send,
{
    type Error = L::Error;
    fn load(&self, key: K) -> impl Future<Output = Result<V, Self::Error>> + Send {
        L::load(self, key)
    }
}

/// How a warm-up went (see [`LoadingCache::warm_up`], whose example uses it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmUpReport {
    /// Keys whose value is now cached.
    pub loaded: usize,
    /// Keys whose load failed.
    pub failed: usize,
}

/// A [`ShardedCache`] with its [`AsyncLoader`].
///
/// * `get` is single-flight get-or-load, with stale-if-error when the cache
///   has `max_stale`.
/// * Refresh-ahead: with `refresh_after` set, a read of an entry past that
///   fraction of its TTL returns the current value at once and spawns one
///   background reload (single-flighted with any concurrent load of the key),
///   so a hot key is replaced before it expires and never misses.
/// * `warm_up` pre-loads keys with bounded concurrency.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use stratum_cache::{AsyncLoader, CacheBuilder, LoadingCache};
/// use std::time::Duration;
///
/// struct Db;
/// impl AsyncLoader<u64, String> for Db {
///     type Error = std::io::Error;
///     async fn load(&self, id: u64) -> Result<String, Self::Error> {
///         Ok(format!("document {id}"))
///     }
/// }
///
/// let cache = CacheBuilder::new(10_000)
///     .time_to_live(Duration::from_secs(300))
///     .refresh_after(0.8) // reload in the background after 4 minutes
///     .build()
///     .unwrap();
/// let docs = LoadingCache::new(cache, Db);
/// let report = docs.warm_up([1, 2, 3], 2).await;
/// assert_eq!(report.loaded, 3);
/// assert_eq!(docs.get(2).await.unwrap(), "document 2");
/// # });
/// ```
pub struct LoadingCache<K, V, L> {
    cache: ShardedCache<K, V>,
    loader: Arc<L>,
}

impl<K, V, L> Clone for LoadingCache<K, V, L> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            loader: Arc::clone(&self.loader),
        }
    }
}

impl<K, V, L> fmt::Debug for LoadingCache<K, V, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadingCache")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl<K, V, L> LoadingCache<K, V, L>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    L: AsyncLoader<K, V>,
{
    /// Binds `loader` to `cache`.
    pub fn new(cache: ShardedCache<K, V>, loader: L) -> Self {
        Self {
            cache,
            loader: Arc::new(loader),
        }
    }

    /// The underlying cache (for `insert`, `remove`, `stats`...).
    pub fn cache(&self) -> &ShardedCache<K, V> {
        &self.cache
    }

    /// The value for `key`: cached, or loaded once for all concurrent
    /// callers. Past the refresh point, the cached value is returned and a
    /// background reload is started.
    pub async fn get(&self, key: K) -> Result<V, Arc<L::Error>> {
        let inner = self.cache.inner();
        let hash = inner.hash(&key);
        if let Lookup::Hit { value, refresh } = inner.lookup(&key, hash, false) {
            inner.stats.add(Counter::Hits, 1);
            if refresh {
                self.spawn_refresh(&key);
            }
            return Ok(value);
        }
        let loader = &self.loader;
        inner.get_or_load_async(key, |k| loader.load(k)).await
    }

    /// Starts a background reload of `key` unless a load is already under
    /// way. Needs a tokio runtime; without one it does nothing.
    fn spawn_refresh(&self, key: &K) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(self.cache.inner());
        let Some(lead) = inner.try_lead(key) else {
            return;
        };
        let loader = Arc::clone(&self.loader);
        runtime.spawn(async move {
            let started = Instant::now();
            let result = loader.load(lead.key().clone()).await;
            if inner.complete(lead, result, started).is_ok() {
                inner.stats.add(Counter::Refreshes, 1);
            }
        });
    }

    /// Loads every key in `keys` that is not cached, at most `concurrency`
    /// loads at a time (0 is treated as 1), and waits for them all.
    pub async fn warm_up(
        &self,
        keys: impl IntoIterator<Item = K>,
        concurrency: usize,
    ) -> WarmUpReport {
        let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for key in keys {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let this = self.clone();
            tasks.spawn(async move {
                let ok = this.get(key).await.is_ok();
                drop(permit);
                ok
            });
        }
        let mut report = WarmUpReport::default();
        while let Some(done) = tasks.join_next().await {
            if matches!(done, Ok(true)) {
                report.loaded += 1;
            } else {
                report.failed += 1;
            }
        }
        report
    }
}
