//! `SemanticCache`: entries partitioned by scope digest, a nearest-neighbour
//! index per partition, bounded size with least-recently-used eviction, and
//! a hit decided by a fixed or a learned threshold.

use std::collections::{BTreeMap, HashMap};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use stratum_core::ConfigError;

use crate::embed::normalize;
use crate::index::{IndexConfig, NearestNeighbours};
use crate::threshold::{EntryLabels, EntryThreshold, Observations, Threshold, ThresholdConfig};
use crate::{CacheError, ScopeDigest};

/// How a lookup's nearest entry is judged close enough to answer.
///
/// In a file it is one table chosen by `type`:
/// `{ type = "learned", target_error = 0.02 }` or
/// `{ type = "fixed", similarity = 0.9 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum HitPolicy {
    /// A fixed cosine similarity, GPTCache's style: a nearest entry at least
    /// this similar answers. No error bound.
    Fixed {
        /// The similarity, in [-1, 1].
        similarity: f32,
    },
    /// Thresholds learned from labelled observations to a target error rate
    /// (see [`ThresholdConfig`] and the `threshold` module). Until enough
    /// observations show a threshold, the semantic tier answers nothing.
    Learned(ThresholdConfig),
}

impl Default for HitPolicy {
    fn default() -> Self {
        HitPolicy::Learned(ThresholdConfig::default())
    }
}

/// Settings of a [`SemanticCache`]: plain data, serde.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SemanticCacheConfig {
    /// The vectors' length (the embedder's dimensions). Default 384
    /// (all-MiniLM-L6-v2).
    #[serde(default = "default_dimensions")]
    pub dimensions: usize,
    /// The most entries held, over all scopes; the least recently used is
    /// evicted beyond it. Default 100,000.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// How a hit is decided. Default learned, 2 % target error.
    #[serde(default)]
    pub policy: HitPolicy,
    /// The index each scope keeps. Default `{ type = "flat_binary",
    /// rescore = 256 }`.
    #[serde(default)]
    pub index: IndexConfig,
}

fn default_dimensions() -> usize {
    384
}
fn default_capacity() -> usize {
    100_000
}

impl Default for SemanticCacheConfig {
    fn default() -> Self {
        SemanticCacheConfig {
            dimensions: default_dimensions(),
            capacity: default_capacity(),
            policy: HitPolicy::default(),
            index: IndexConfig::default(),
        }
    }
}

impl SemanticCacheConfig {
    /// The defaults with `dimensions`, `capacity` and `policy`.
    #[must_use]
    pub fn new(dimensions: usize, capacity: usize, policy: HitPolicy) -> Self {
        SemanticCacheConfig {
            dimensions,
            capacity,
            policy,
            index: IndexConfig::default(),
        }
    }

    /// These settings with another index.
    #[must_use]
    pub fn with_index(self, index: IndexConfig) -> Self {
        SemanticCacheConfig { index, ..self }
    }

    /// Refuses zero dimensions or capacity and an invalid policy or index.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.index.validate().map_err(|e| e.within("index"))?;
        if self.dimensions == 0 {
            return Err(ConfigError::invalid("dimensions", "must be at least 1"));
        }
        if self.capacity == 0 {
            return Err(ConfigError::invalid("capacity", "must be at least 1"));
        }
        match self.policy {
            HitPolicy::Fixed { similarity } if !(-1.0..=1.0).contains(&similarity) => Err(
                ConfigError::invalid("policy.similarity", "must be in [-1, 1]"),
            ),
            HitPolicy::Learned(t) => t.validate().map_err(|e| e.within("policy")),
            HitPolicy::Fixed { .. } => Ok(()),
        }
    }
}

/// An entry's identity, never reused within one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(pub u64);

/// A lookup's nearest entry in its scope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nearest {
    /// The entry.
    pub entry: EntryId,
    /// Its cosine similarity with the lookup.
    pub similarity: f32,
}

/// The answer of [`SemanticCache::lookup`].
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<V> {
    /// The nearest entry answers: its value, and which entry it was (for
    /// [`SemanticCache::report_wrong`]).
    Hit {
        /// The entry and similarity.
        nearest: Nearest,
        /// The cached value.
        value: V,
    },
    /// No entry answers; the nearest one, if the scope has any, so the caller
    /// can label the lookup later ([`SemanticCache::observe`]).
    Miss(Option<Nearest>),
}

/// Counters of a [`SemanticCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct SemanticStats {
    /// Lookups answered.
    pub hits: u64,
    /// Lookups not answered.
    pub misses: u64,
    /// Wrong answers reported.
    pub wrong_reported: u64,
    /// Entries evicted for capacity.
    pub evicted: u64,
    /// Entries held.
    pub entries: usize,
    /// The cache-wide learned threshold as a similarity (`None`: not learned
    /// yet, or a fixed policy).
    pub learned_threshold: Option<f32>,
    /// The share of labelled observations the cache-wide learned threshold
    /// would have answered wrongly (`None` without one).
    pub estimated_error_rate: Option<f64>,
}

struct Entry<V> {
    scope: ScopeDigest,
    value: V,
    last_used: u64,
    threshold: EntryThreshold,
}

struct Inner<V> {
    partitions: HashMap<ScopeDigest, Box<dyn NearestNeighbours + Send + Sync>>,
    entries: HashMap<u64, Entry<V>>,
    /// Last-use tick -> entry: the first is the least recently used.
    recency: BTreeMap<u64, u64>,
    tick: u64,
    next_id: u64,
    shared: Observations,
    shared_threshold: Option<Threshold>,
    stats: SemanticStats,
}

/// The semantic tier: a bounded map from (scope, vector) to a value, where a
/// lookup is answered by the nearest entry of the same scope when the hit
/// policy accepts its similarity.
///
/// ```
/// use stratum_semantic::{HitPolicy, Lookup, Scope, SemanticCache, SemanticCacheConfig};
///
/// let cache = SemanticCache::new(SemanticCacheConfig::new(
///     3,
///     1_000,
///     HitPolicy::Fixed { similarity: 0.9 },
/// ))?;
/// let tenant_a = Scope::model("gpt-x").tenant("a").digest();
/// let tenant_b = Scope::model("gpt-x").tenant("b").digest();
/// let id = cache.insert(tenant_a, vec![1.0, 0.0, 0.0], "Ottawa")?;
///
/// // Close enough in the same scope: answered.
/// let Lookup::Hit { value, nearest } = cache.lookup(tenant_a, &[0.99, 0.1, 0.0])? else {
///     panic!("expected a hit");
/// };
/// assert_eq!((value, nearest.entry), ("Ottawa", id));
/// // Another tenant never sees it.
/// assert_eq!(cache.lookup(tenant_b, &[1.0, 0.0, 0.0])?, Lookup::Miss(None));
///
/// // The application says that answer was wrong: the entry tightens.
/// cache.report_wrong(id, nearest.similarity)?;
/// assert!(matches!(cache.lookup(tenant_a, &[0.99, 0.1, 0.0])?, Lookup::Miss(Some(_))));
/// # Ok::<(), stratum_semantic::CacheError>(())
/// ```
pub struct SemanticCache<V> {
    config: SemanticCacheConfig,
    inner: RwLock<Inner<V>>,
}

impl<V> std::fmt::Debug for SemanticCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemanticCache")
            .field("config", &self.config)
            .field("entries", &self.inner.read().entries.len())
            .finish()
    }
}

impl<V: Clone> SemanticCache<V> {
    /// An empty cache; refuses an invalid configuration.
    pub fn new(config: SemanticCacheConfig) -> Result<SemanticCache<V>, CacheError> {
        config.validate()?;
        Ok(SemanticCache {
            config,
            inner: RwLock::new(Inner {
                partitions: HashMap::new(),
                entries: HashMap::new(),
                recency: BTreeMap::new(),
                tick: 0,
                next_id: 0,
                shared: Observations::default(),
                shared_threshold: None,
                stats: SemanticStats::default(),
            }),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SemanticCacheConfig {
        &self.config
    }

    fn unit(&self, vector: &[f32]) -> Result<Vec<f32>, CacheError> {
        if vector.len() != self.config.dimensions {
            return Err(CacheError::Dimensions {
                expected: self.config.dimensions,
                got: vector.len(),
            });
        }
        let mut v = vector.to_vec();
        normalize(&mut v).map_err(|_| CacheError::Degenerate)?;
        Ok(v)
    }

    /// Adds `value` under `scope` at `vector` (any length-`dimensions`
    /// vector with a direction; it is normalised). Evicts the least recently
    /// used entry when the cache is full.
    pub fn insert(
        &self,
        scope: ScopeDigest,
        vector: Vec<f32>,
        value: V,
    ) -> Result<EntryId, CacheError> {
        let v = self.unit(&vector)?;
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let id = inner.next_id;
        let partition = match inner.partitions.entry(scope) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(self.config.index.build(self.config.dimensions)?)
            }
        };
        partition.add(id, &v)?;
        inner.next_id += 1;
        inner.tick += 1;
        inner.recency.insert(inner.tick, id);
        inner.entries.insert(
            id,
            Entry {
                scope,
                value,
                last_used: inner.tick,
                threshold: EntryThreshold::default(),
            },
        );
        while inner.entries.len() > self.config.capacity {
            let Some((_, oldest)) = inner.recency.pop_first() else {
                break;
            };
            Self::remove_entry(inner, oldest)?;
            inner.stats.evicted += 1;
        }
        Ok(EntryId(id))
    }

    fn remove_entry(inner: &mut Inner<V>, id: u64) -> Result<bool, CacheError> {
        let Some(entry) = inner.entries.remove(&id) else {
            return Ok(false);
        };
        inner.recency.remove(&entry.last_used);
        if let Some(partition) = inner.partitions.get_mut(&entry.scope) {
            partition.remove(id)?;
            if partition.is_empty() {
                inner.partitions.remove(&entry.scope);
            }
        }
        Ok(true)
    }

    /// Removes an entry (when its response is invalidated); `false` if it
    /// was not there.
    pub fn remove(&self, entry: EntryId) -> Result<bool, CacheError> {
        Self::remove_entry(&mut self.inner.write(), entry.0)
    }

    /// Looks for the nearest entry of `scope` and asks the hit policy whether
    /// it answers. A hit marks the entry as recently used.
    pub fn lookup(&self, scope: ScopeDigest, vector: &[f32]) -> Result<Lookup<V>, CacheError> {
        let q = self.unit(vector)?;
        let (nearest, value) = {
            let inner = self.inner.read();
            let Some(partition) = inner.partitions.get(&scope) else {
                drop(inner);
                self.inner.write().stats.misses += 1;
                return Ok(Lookup::Miss(None));
            };
            let found = partition.search(&q, 1)?.into_iter().next();
            let Some((n, entry)) = found.and_then(|n| inner.entries.get(&n.key).map(|e| (n, e)))
            else {
                drop(inner);
                self.inner.write().stats.misses += 1;
                return Ok(Lookup::Miss(None));
            };
            let nearest = Nearest {
                entry: EntryId(n.key),
                similarity: n.similarity,
            };
            let accepted = match self.config.policy {
                HitPolicy::Fixed { similarity } => {
                    entry.threshold.accepts_fixed(n.similarity, similarity)
                }
                HitPolicy::Learned(_) => entry
                    .threshold
                    .accepts(n.similarity, inner.shared_threshold),
            };
            (nearest, accepted.then(|| entry.value.clone()))
        };
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let Some(value) = value else {
            inner.stats.misses += 1;
            return Ok(Lookup::Miss(Some(nearest)));
        };
        inner.stats.hits += 1;
        if let Some(entry) = inner.entries.get_mut(&nearest.entry.0) {
            inner.recency.remove(&entry.last_used);
            inner.tick += 1;
            entry.last_used = inner.tick;
            inner.recency.insert(inner.tick, nearest.entry.0);
        }
        Ok(Lookup::Hit { nearest, value })
    }

    fn check_similarity(similarity: f32) -> Result<(), CacheError> {
        if (-1.0..=1.0).contains(&similarity) {
            Ok(())
        } else {
            Err(CacheError::Similarity(similarity))
        }
    }

    fn threshold_config(&self) -> ThresholdConfig {
        match self.config.policy {
            HitPolicy::Learned(t) => t,
            HitPolicy::Fixed { .. } => ThresholdConfig::default(),
        }
    }

    /// Records a labelled lookup: the nearest entry was `entry` at
    /// `similarity`, and its value would (`correct`) or would not have been
    /// the right answer. Feeds the entry's and the cache-wide thresholds.
    /// An unknown (evicted) entry still feeds the cache-wide one.
    pub fn observe(
        &self,
        entry: EntryId,
        similarity: f32,
        correct: bool,
    ) -> Result<(), CacheError> {
        Self::check_similarity(similarity)?;
        let config = self.threshold_config();
        let mut inner = self.inner.write();
        if let Some(e) = inner.entries.get_mut(&entry.0) {
            e.threshold.record(similarity, correct, &config);
        }
        inner.shared.record(similarity, correct);
        inner.shared_threshold = inner.shared.learned(&config);
        Ok(())
    }

    /// Records labelled observations for the cache-wide threshold only (a
    /// calibration set, or observations kept from a previous run).
    /// Refuses a similarity outside [-1, 1] (or NaN), recording none.
    pub fn calibrate(
        &self,
        observations: impl IntoIterator<Item = (f32, bool)>,
    ) -> Result<(), CacheError> {
        self.calibrate_with(&Observations::from_labels(observations)?);
        Ok(())
    }

    /// Adds counted observations (a calibration stored as
    /// [`Observations::to_bytes`] by an earlier process) to the cache-wide
    /// threshold's.
    pub fn calibrate_with(&self, observations: &Observations) {
        let config = self.threshold_config();
        let mut inner = self.inner.write();
        inner.shared.merge(observations);
        inner.shared_threshold = inner.shared.learned(&config);
    }

    /// The application found that `entry`'s answer to a lookup at
    /// `similarity` was wrong: the entry answers only lookups strictly more
    /// similar from now on, and the observation feeds the thresholds.
    pub fn report_wrong(&self, entry: EntryId, similarity: f32) -> Result<(), CacheError> {
        Self::check_similarity(similarity)?;
        let config = self.threshold_config();
        let mut inner = self.inner.write();
        if let Some(e) = inner.entries.get_mut(&entry.0) {
            e.threshold.report_wrong(similarity, &config);
        }
        inner.shared.record(similarity, false);
        inner.shared_threshold = inner.shared.learned(&config);
        inner.stats.wrong_reported += 1;
        Ok(())
    }

    /// What `entry` has learned (its labelled lookups and floor), to store
    /// with it; `None` if it is not held.
    #[must_use]
    pub fn labels(&self, entry: EntryId) -> Option<EntryLabels> {
        self.inner
            .read()
            .entries
            .get(&entry.0)
            .map(|e| e.threshold.labels())
    }

    /// Replaces what `entry` has learned with `labels` (stored with it by an
    /// earlier process, or by another one): its threshold is learned again
    /// from them and its floor set. The cache-wide threshold is not fed
    /// (`calibrate` does that). `false` if the entry is not held.
    pub fn restore(&self, entry: EntryId, labels: &EntryLabels) -> Result<bool, CacheError> {
        for s in labels.observations.iter().map(|o| o.0).chain(labels.floor) {
            Self::check_similarity(s)?;
        }
        let config = self.threshold_config();
        let mut inner = self.inner.write();
        let Some(e) = inner.entries.get_mut(&entry.0) else {
            return Ok(false);
        };
        e.threshold = EntryThreshold::from_labels(labels, &config);
        Ok(true)
    }

    /// Removes every entry (the cache-wide observations and counters stay).
    pub fn clear(&self) {
        let mut inner = self.inner.write();
        inner.entries.clear();
        inner.partitions.clear();
        inner.recency.clear();
    }

    /// The value of `entry`, if it is still held (no use is recorded).
    #[must_use]
    pub fn get(&self, entry: EntryId) -> Option<V> {
        self.inner
            .read()
            .entries
            .get(&entry.0)
            .map(|e| e.value.clone())
    }

    /// Whether `entry` is still held (not evicted or removed).
    #[must_use]
    pub fn contains(&self, entry: EntryId) -> bool {
        self.inner.read().entries.contains_key(&entry.0)
    }

    /// Entries held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.read().entries.len()
    }

    /// Whether no entry is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the vector indexes (the values are the caller's).
    #[must_use]
    pub fn index_memory_bytes(&self) -> usize {
        self.inner
            .read()
            .partitions
            .values()
            .map(|p| p.memory_bytes())
            .sum()
    }

    /// The counters and the learned threshold.
    #[must_use]
    pub fn stats(&self) -> SemanticStats {
        let inner = self.inner.read();
        let learned = match self.config.policy {
            HitPolicy::Learned(_) => inner.shared_threshold,
            HitPolicy::Fixed { .. } => None,
        };
        SemanticStats {
            entries: inner.entries.len(),
            learned_threshold: learned.map(Threshold::similarity),
            estimated_error_rate: learned.map(|t| inner.shared.empirical_risk(t)),
            ..inner.stats
        }
    }
}
