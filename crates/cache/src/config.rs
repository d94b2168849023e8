//! Configuration: plain serde data ([`CacheConfig`]), and the builder that
//! validates it and adds the parts that are code (weigher, listener, clock).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cache::ShardedCache;
use crate::clock::Clock;
use crate::error::ConfigError;
use crate::predict::PrefetchConfig;
use crate::stats::RemovalCause;

/// Which entry goes when the cache is full.
///
/// ```
/// use stratum_cache::{Cache, CacheBuilder, Policy};
///
/// // Exact LRU over one shard: the least recently used entry goes first.
/// let lru = CacheBuilder::new(2).policy(Policy::Lru).shards(1).build().unwrap();
/// lru.insert(1, "a");
/// lru.insert(2, "b");
/// lru.get(&1);
/// lru.insert(3, "c");
/// assert_eq!(lru.eviction_order(0), vec![1, 3]); // next victim first
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Exact least-recently-used: a single-threaded sequence of operations
    /// evicts exactly what a textbook LRU would. Every read takes its
    /// shard's lock exclusively to move the entry to the front.
    Lru,
    /// S3-FIFO (Yang et al., SOSP 2023): a small FIFO for new entries (its
    /// share adapts to the workload by default, see [`SmallQueue`]), a main
    /// FIFO with a 2-bit access counter and reinsertion, and a ghost queue.
    /// Scan resistant, keeps part of a loop larger than the cache, and
    /// reads take the shard lock shared (they only bump an access counter).
    /// The default: over the eight shared LIRS traces its mean hit ratio
    /// is above moka's and quick_cache's and 10 points above LRU's, and
    /// reads do not serialize (see docs/cache.md).
    #[default]
    S3Fifo,
}

/// How [`Policy::S3Fifo`] sizes its small queue, the FIFO new entries
/// enter (what is read there moves on to the main queue; what is not
/// leaves, remembered by the ghost).
///
/// ```
/// use stratum_cache::{CacheBuilder, SmallQueue};
///
/// let fixed = CacheBuilder::<u64, u64>::new(1_000)
///     .small_queue(SmallQueue::Fixed(10))
///     .build()
///     .unwrap();
/// # drop(fixed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmallQueue {
    /// Starts at 1 % of each shard's capacity and follows the workload:
    /// every other sample of lookups (4 x the capacity, at least 8 192)
    /// the share moves toward a higher hit ratio (hill climbing, first
    /// steps of 8 %, 0.5 % to 80 %; the sample after a move only lets the
    /// queues settle, and a change within the sampling noise holds the
    /// share). The default: on the shared traces it is the only share
    /// that met every row's goals, with the highest mean
    /// (docs/cache.md).
    #[default]
    Adaptive,
    /// A fixed share, in percent of each shard's capacity (1 to 90).
    Fixed(u8),
}

/// What [`Policy::S3Fifo`] lets into its main queue.
///
/// ```
/// use stratum_cache::{Admission, CacheBuilder};
///
/// let cache = CacheBuilder::<u64, u64>::new(1_000)
///     .admission(Admission::Frequency)
///     .build()
///     .unwrap();
/// # drop(cache);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Admission {
    /// S3-FIFO's own rule: entries read while in the small queue, and
    /// returning keys the ghost remembers. The default.
    #[default]
    Ghost,
    /// Also TinyLFU's filter: an unread entry leaving the small queue
    /// replaces main's next victim when a frequency sketch saw it more
    /// than once more often. Over the shared traces it raises the mean
    /// hit ratio by 0.3 points (1.7 on multi2 at 5 %) and meets every
    /// row's goals in the hit-ratio bench, where the default misses two;
    /// but every miss then updates the sketch: the get-heavy bench ran
    /// 1.04-1.20x slower than with the default on 1 thread and
    /// 1.00-1.14x on 2 (measured); the sketch takes 8-16 bytes per entry
    /// once the cache is full (8.3 in the memory bench's churned fill,
    /// docs/benchmarks.md), at least 8 KB a shard (docs/cache-tuning.md).
    Frequency,
}

/// The serializable part of a cache's configuration. Durations use
/// humantime strings (`"30s"`, `"5m"`).
///
/// ```
/// use stratum_cache::{CacheConfig, Policy};
///
/// let config: CacheConfig = serde_json::from_str(
///     r#"{ "name": "documents", "max_capacity": 1000, "time_to_live": "5m",
///          "refresh_after": 0.8, "max_stale": "1m" }"#,
/// ).unwrap();
/// assert_eq!(config.policy, Policy::S3Fifo);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// The `cache` label on every metric. Keep it a fixed, low-cardinality
    /// name (never user input). Default `"default"`.
    pub name: String,
    /// Capacity in entries, or in weight units when a weigher is set.
    /// Default 10 000.
    pub max_capacity: u64,
    /// The eviction policy. Default [`Policy::S3Fifo`].
    pub policy: Policy,
    /// S3-FIFO's small-queue sizing. Default [`SmallQueue::Adaptive`].
    pub small_queue: SmallQueue,
    /// What S3-FIFO lets into its main queue. Default [`Admission::Ghost`].
    pub admission: Admission,
    /// Number of shards, a power of two; `None` (default) picks one from the
    /// CPU count and the capacity. The capacity is split evenly between
    /// shards, so use 1 when an exact global eviction order matters.
    pub shards: Option<usize>,
    /// Time-to-live after each write. Default none.
    #[serde(with = "stratum_core::optional_duration")]
    pub time_to_live: Option<Duration>,
    /// Time-to-idle after each read or write. Default none.
    #[serde(with = "stratum_core::optional_duration")]
    pub time_to_idle: Option<Duration>,
    /// Refresh-ahead: a read after this fraction of an entry's TTL has
    /// passed triggers a background reload (in `LoadingCache`). In (0, 1).
    /// Default none.
    pub refresh_after: Option<f64>,
    /// Stale-if-error: how long after expiry a value may still be served
    /// when the loader fails. Default none (expired values are never served).
    #[serde(with = "stratum_core::optional_duration")]
    pub max_stale: Option<Duration>,
    /// Predictive pre-loading ([`PrefetchConfig`]): read by whoever drives
    /// prefetches (a Stratum repository builds its [`crate::Predictor`]
    /// and loader from it); the cache itself only stores what a prefetch
    /// loads, in its probationary queue.
    pub prefetch: PrefetchConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            max_capacity: 10_000,
            policy: Policy::default(),
            small_queue: SmallQueue::default(),
            admission: Admission::default(),
            shards: None,
            time_to_live: None,
            time_to_idle: None,
            refresh_after: None,
            max_stale: None,
            prefetch: PrefetchConfig::default(),
        }
    }
}

impl CacheConfig {
    /// Checks every field; the error names the first field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::invalid("name", "must not be empty"));
        }
        if self.max_capacity == 0 {
            return Err(ConfigError::invalid("max_capacity", "must be at least 1"));
        }
        if let SmallQueue::Fixed(p) = self.small_queue
            && !(1..=90).contains(&p)
        {
            return Err(ConfigError::invalid(
                "small_queue",
                "must be in [1, 90] percent",
            ));
        }
        if let Some(shards) = self.shards {
            if shards == 0 || !shards.is_power_of_two() || shards > 1 << 16 {
                return Err(ConfigError::invalid(
                    "shards",
                    "must be a power of two in [1, 65536]",
                ));
            }
            if shards as u64 > self.max_capacity {
                return Err(ConfigError::invalid(
                    "shards",
                    "must not exceed max_capacity",
                ));
            }
        }
        for (field, d) in [
            ("time_to_live", self.time_to_live),
            ("time_to_idle", self.time_to_idle),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::invalid(field, "must be greater than zero"));
            }
        }
        if let Some(f) = self.refresh_after {
            if !(f > 0.0 && f < 1.0) {
                return Err(ConfigError::invalid("refresh_after", "must be in (0, 1)"));
            }
            if self.time_to_live.is_none() {
                return Err(ConfigError::invalid("refresh_after", "needs time_to_live"));
            }
        }
        if self.max_stale.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::invalid(
                "max_stale",
                "must be greater than zero",
            ));
        }
        self.prefetch.validate().map_err(|e| e.within("prefetch"))?;
        Ok(())
    }

    /// The shard count to use: the configured one, or
    /// [`SHARDS_PER_CPU`] x CPUs rounded up to a power of two (at most
    /// 64), halved until each shard holds at least [`MIN_PER_SHARD`]
    /// units ([`LARGE_MIN_PER_SHARD`] in a cache of [`LARGE_CACHE`] or
    /// more).
    pub(crate) fn shard_count(&self) -> usize {
        if let Some(s) = self.shards {
            return s;
        }
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        default_shards(cpus, self.max_capacity)
    }
}

/// Default shards per CPU, up to the cap of 64 (so from 2 CPUs up, 64).
/// A write holds its shard exclusively for the insert and the eviction it
/// causes (S3-FIFO's queue moves, the ghost, the expiry bookkeeping),
/// longer than quick_cache's (which has 4 per CPU), and a read of that
/// shard waits for it; every read also passes its shard's lock word
/// between the cores that read the shard's hot keys. At 2 threads on 2
/// cores (`benches/throughput.rs`, medians of interleaved runs,
/// docs/cache-tuning.md): capacity 10 000, 16 shards (as many as 512 a shard
/// allow) made 1.08x quick_cache's throughput against 0.98x at 8 (64 now,
/// see [`LARGE_CACHE`]); the
/// second shape (capacity 50 000, 95 % gets), 64 shards 1.115x against
/// 1.03x at 32 and 0.985x at 16, for 0.805x against 0.855x on 1 thread
/// and 1.7 more bytes an entry in a fill of 1 M entries (44.7-45.0
/// against 43.0-43.2; quick_cache 51.2-51.4).
const SHARDS_PER_CPU: usize = 32;

/// The smallest share of the capacity a default shard count leaves each
/// shard. Below a few hundred entries a shard's queues are too short for
/// S3-FIFO (at 8 shards of 38 entries cpp scored 47 % hits, against 58 %
/// on one shard), so small caches get fewer shards. 512 is the smallest
/// that moved no row of the hit-ratio bench by more than 0.07 points
/// against 1 024; at 256 multi2 at 25 % fell below its goal
/// (docs/cache-tuning.md).
const MIN_PER_SHARD: u64 = 512;

/// From this capacity up, the floor is [`LARGE_MIN_PER_SHARD`]: the
/// capacity at which 64 shards of that floor fit. [`MIN_PER_SHARD`]
/// guards the hit ratio where the shared traces measure it, and their rows
/// (5-25 % of their keys) are all smaller than this (the largest, 2_pools
/// at 25 %, holds 2 484). In larger caches the contention more shards
/// relieve shows and the hit-ratio cost does not: at capacity 10 000 on 2
/// CPUs, 64 shards instead of 16 took the throughput bench's first shape
/// from 0.93 to 1.03 of quick_cache on 2 threads with the count forced,
/// and from 0.925 to 1.00 in 18 pairs of the builds (1 thread: 0.75 to
/// 0.78); eight scaled-up synthetic rows at 10 000 and 20 000 entries
/// (loops, scans, Zipf 0.8 and 0.99) moved by -0.39 to +0.24 points,
/// their mean from 59.28 to 59.24 (docs/cache-tuning.md, "Shards of 128
/// from 8 192 up").
const LARGE_CACHE: u64 = 8_192;
/// The fewest units a default shard holds in a cache of [`LARGE_CACHE`]
/// units or more.
const LARGE_MIN_PER_SHARD: u64 = 128;

/// [`CacheConfig::shard_count`]'s default for `cpus` CPUs.
fn default_shards(cpus: usize, capacity: u64) -> usize {
    let floor = if capacity >= LARGE_CACHE {
        LARGE_MIN_PER_SHARD
    } else {
        MIN_PER_SHARD
    };
    let mut shards = cpus
        .saturating_mul(SHARDS_PER_CPU)
        .checked_next_power_of_two()
        .unwrap_or(64)
        .min(64);
    while shards > 1 && capacity / (shards as u64) < floor {
        shards /= 2;
    }
    shards
}

/// Computes an entry's weight (for a byte budget: its size in bytes).
pub type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;
/// Told about every entry that leaves the cache, and why. Called outside
/// the shard lock, on the thread that caused the removal.
pub type EvictionListener<K, V> = Arc<dyn Fn(&K, &V, RemovalCause) + Send + Sync>;

/// Builds a [`ShardedCache`]: the [`CacheConfig`] plus a weigher, an
/// eviction listener and a clock.
///
/// ```
/// use stratum_cache::{Cache, CacheBuilder, Policy};
/// use std::time::Duration;
///
/// let cache = CacheBuilder::<String, Vec<u8>>::new(1 << 20) // a 1 MiB budget
///     .name("blobs")
///     .policy(Policy::S3Fifo)
///     .weigher(|k, v| (k.len() + v.len()) as u32)
///     .time_to_live(Duration::from_secs(60))
///     .build()
///     .unwrap();
/// cache.insert("a".into(), vec![0; 100]);
/// assert_eq!(cache.weighted_size(), 101);
/// ```
pub struct CacheBuilder<K, V> {
    pub(crate) config: CacheConfig,
    pub(crate) weigher: Option<Weigher<K, V>>,
    pub(crate) listener: Option<EvictionListener<K, V>>,
    /// A custom clock; `None` is the default [`crate::CoarseClock`], which the
    /// cache reads without a virtual call.
    pub(crate) clock: Option<Arc<dyn Clock>>,
    /// A fixed seed for the key hasher; `None`: random per cache.
    pub(crate) hash_seed: Option<u64>,
}

impl<K, V> fmt::Debug for CacheBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("config", &self.config)
            .field("weigher", &self.weigher.is_some())
            .field("listener", &self.listener.is_some())
            .field(
                "clock",
                &self.clock.as_ref().map_or("CoarseClock", |_| "custom"),
            )
            .field("hash_seed", &self.hash_seed.is_some())
            .finish()
    }
}

impl<K, V> CacheBuilder<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder for a cache of `max_capacity` entries (or weight units).
    pub fn new(max_capacity: u64) -> Self {
        Self::from_config(CacheConfig {
            max_capacity,
            ..CacheConfig::default()
        })
    }

    /// A builder starting from a deserialized configuration.
    pub fn from_config(config: CacheConfig) -> Self {
        Self {
            config,
            weigher: None,
            listener: None,
            clock: None,
            hash_seed: None,
        }
    }

    /// Sets the metrics label (see [`CacheConfig::name`]).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets the eviction policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.config.policy = policy;
        self
    }

    /// Sets S3-FIFO's small-queue sizing (see [`SmallQueue`]).
    pub fn small_queue(mut self, small_queue: SmallQueue) -> Self {
        self.config.small_queue = small_queue;
        self
    }

    /// Sets what S3-FIFO lets into its main queue (see [`Admission`]).
    pub fn admission(mut self, admission: Admission) -> Self {
        self.config.admission = admission;
        self
    }

    /// Sets the shard count (a power of two).
    pub fn shards(mut self, shards: usize) -> Self {
        self.config.shards = Some(shards);
        self
    }

    /// Sets the time-to-live.
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.config.time_to_live = Some(ttl);
        self
    }

    /// Sets the time-to-idle.
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.config.time_to_idle = Some(tti);
        self
    }

    /// Sets the refresh-ahead fraction of the TTL.
    pub fn refresh_after(mut self, fraction: f64) -> Self {
        self.config.refresh_after = Some(fraction);
        self
    }

    /// Sets the stale-if-error window.
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.config.max_stale = Some(max_stale);
        self
    }

    /// Weighs entries; `max_capacity` then bounds the total weight.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Calls `listener` for every entry that leaves the cache.
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(&K, &V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Uses `clock` for every expiry decision: [`crate::CoarseClock`] by
    /// default, [`crate::SystemClock`] for exact time, a
    /// [`crate::ManualClock`] in tests.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Fixes the seed of the key hasher, so that one sequence of
    /// operations evicts the same entries in every run and process (the
    /// hit-ratio bench uses it; without it, which keys share a ghost
    /// bucket, a sketch counter or a shard changes from run to run).
    /// By default every cache draws a random seed: keep that for keys an
    /// adversary can choose, who could otherwise aim them at one bucket.
    ///
    /// ```
    /// use stratum_cache::{Cache, CacheBuilder};
    ///
    /// let run = || {
    ///     let cache = CacheBuilder::<u64, u64>::new(100).hash_seed(7).build().unwrap();
    ///     let mut hits = 0;
    ///     for i in 0..10_000u64 {
    ///         let k = (i * i) % 557;
    ///         if cache.get(&k).is_some() { hits += 1 } else { cache.insert(k, k) }
    ///     }
    ///     hits
    /// };
    /// assert_eq!(run(), run());
    /// ```
    pub fn hash_seed(mut self, seed: u64) -> Self {
        self.hash_seed = Some(seed);
        self
    }

    /// Validates the configuration and builds the cache.
    pub fn build(self) -> Result<ShardedCache<K, V>, ConfigError> {
        self.config.validate()?;
        Ok(ShardedCache::from_builder(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_shards_follow_cpus_and_keep_shards_above_their_floor() {
        // 32 per CPU (at most 64) while every shard keeps 512 entries or
        // more, or 128 from a capacity of 8 192.
        assert_eq!(default_shards(1, 1_000_000), 32);
        assert_eq!(default_shards(2, 1_000_000), 64);
        assert_eq!(default_shards(2, 50_000), 64);
        assert_eq!(default_shards(2, 10_000), 64);
        assert_eq!(default_shards(2, 8_192), 64);
        assert_eq!(default_shards(1, 8_192), 32);
        assert_eq!(default_shards(3, 1_000_000), 64);
        // Halved until the shards are large enough.
        assert_eq!(default_shards(2, 8_191), 8);
        assert_eq!(default_shards(2, 5_000), 8);
        assert_eq!(default_shards(2, 1_024), 2);
        assert_eq!(default_shards(2, 1_023), 1);
        assert_eq!(default_shards(2, 50), 1);
        // At most 64, whatever the CPU count.
        assert_eq!(default_shards(16, u64::MAX), 64);
        assert_eq!(default_shards(usize::MAX, u64::MAX), 64);
    }
}
