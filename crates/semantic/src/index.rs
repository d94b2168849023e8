//! Nearest-neighbour search over unit vectors: `IndexConfig` (which index a
//! cache keeps), `VectorIndex` (HNSW, usearch) and `ExactIndex` (brute
//! force, the reference the tests compare with); the default index,
//! `FlatBinaryIndex`, is in `flat.rs`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind, b1x8};

use crate::CacheError;
use crate::embed::dot;

/// One search result: the key given to `add` and its cosine similarity with
/// the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// The key the vector was added under.
    pub key: u64,
    /// Cosine similarity in [-1, 1] (1 is the same direction).
    pub similarity: f32,
}

/// What every index offers; the cache holds the one its [`IndexConfig`]
/// names ([`FlatBinaryIndex`](crate::FlatBinaryIndex) or [`VectorIndex`]),
/// the tests and the measurement compare them with an [`ExactIndex`].
pub trait NearestNeighbours {
    /// Adds (or replaces) `vector` under `key`. The vector must be unit length.
    fn add(&mut self, key: u64, vector: &[f32]) -> Result<(), CacheError>;
    /// Removes `key`; `false` if it was not there.
    fn remove(&mut self, key: u64) -> Result<bool, CacheError>;
    /// The `k` most similar vectors, most similar first.
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>, CacheError>;
    /// How many vectors are held.
    fn len(&self) -> usize;
    /// Whether no vector is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes held for the vectors and the search structure.
    fn memory_bytes(&self) -> usize;
}

pub(crate) fn check(dimensions: usize, vector: &[f32]) -> Result<(), CacheError> {
    if vector.len() != dimensions {
        return Err(CacheError::Dimensions {
            expected: dimensions,
            got: vector.len(),
        });
    }
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(CacheError::Degenerate);
    }
    Ok(())
}

/// An approximate (HNSW) index: usearch, f32 vectors, cosine metric, with
/// removal, so the cache's eviction removes vectors too.
///
/// Removal does not use usearch's own: it frees the node's slot for the next
/// add, which reconnects a new vector into the old node's place while other
/// nodes keep links chosen for the old one, and searches then miss their
/// nearest neighbour (the property test found a 20-entry index returning the
/// fourth best after three replacements; usearch's `compact` aborted with a
/// double free). Instead a removed vector stays in the graph as a tombstone:
/// searches walk through it and filter it out of the results, and the graph
/// is rebuilt from the live vectors once tombstones outnumber them, so a
/// removal costs amortised O(log n) graph inserts and the graph is never more
/// than half tombstones.
pub struct VectorIndex {
    index: Index,
    options: IndexOptions,
    /// Candidates rescored with their exact vectors (0: the graph's
    /// similarities are reported as they are).
    rescore: usize,
    /// Whether exact vectors are kept (a quantized graph built with
    /// rescoring).
    keep_exact: bool,
    /// The exact (f32) vector of every graph id, tombstones included, when
    /// the graph stores them quantized and `rescore` is on: `dimensions`
    /// floats per id, in id order (ids are dense from 0 in each graph).
    exact: Vec<f32>,
    /// The caller's key to the graph's id of its live vector. Ids are never
    /// reused, so a replaced vector's tombstone cannot be mistaken for it.
    ids: HashMap<u64, u64>,
    /// The graph's id of each live vector to the caller's key.
    keys: HashMap<u64, u64>,
    next_id: u64,
    tombstones: usize,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("dimensions", &self.options.dimensions)
            .field("len", &self.ids.len())
            .field("tombstones", &self.tombstones)
            .field("rescore", &self.rescore)
            .finish()
    }
}

/// How the graph stores its vectors. In a file: `"f32"`, `"f16"`, `"i8"`
/// or `"b1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Quantization {
    /// 32-bit floats: exact similarities.
    F32,
    /// 16-bit floats: half the memory, similarities within about 1e-3.
    F16,
    /// 8-bit integers: a quarter of the memory, coarser similarities.
    I8,
    /// One bit per dimension (its sign), compared by Hamming distance: a
    /// thirty-second of the memory and the cheapest comparison, but only
    /// a ranking of candidates, so it needs exact rescoring (`rescore` of
    /// at least 1).
    B1,
}

/// The graph's shape, storage, search breadth and exact rescoring; plain
/// serde data, every field optional in a file.
///
/// The default, chosen by measurement (docs/semantic.md, "Measured"): i8
/// storage searched at breadth 256, its best 8 candidates rescored with
/// their exact f32 vectors, so every similarity a search reports (and the
/// hit decision and the learned thresholds use) is the exact cosine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct IndexSettings {
    /// How the graph stores vectors. Default `I8`.
    pub quantization: Quantization,
    /// Candidates a search keeps (usearch's `expansion_search`, HNSW's
    /// `ef`): wider finds the true nearest more often and takes longer.
    /// Default 256.
    pub expansion_search: usize,
    /// How many of the graph's best candidates are rescored with their
    /// exact f32 vectors, kept beside a quantized graph (`dimensions` x 4
    /// bytes per entry more). 0 keeps no copies and reports the graph's
    /// (quantized) similarities. Ignored for `F32` storage, whose
    /// similarities are exact already. Default 8.
    pub rescore: usize,
    /// The graph's degree (usearch's `connectivity`, HNSW's `M`): more
    /// links per node find the nearest in fewer steps, each step costing
    /// more. Default 16.
    pub connectivity: usize,
    /// Candidates kept while linking a new vector (usearch's
    /// `expansion_add`): a better graph for a slower insert. Default 128.
    pub expansion_add: usize,
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            quantization: Quantization::I8,
            expansion_search: 256,
            rescore: 8,
            connectivity: 16,
            expansion_add: 128,
        }
    }
}

impl IndexSettings {
    /// Another storage and breadth, without rescoring (the graph's own
    /// similarities), and the default graph shape.
    #[must_use]
    pub fn new(quantization: Quantization, expansion_search: usize) -> Self {
        IndexSettings {
            quantization,
            expansion_search,
            rescore: 0,
            ..IndexSettings::default()
        }
    }

    /// These settings with the best `rescore` candidates rescored exactly.
    #[must_use]
    pub fn rescored(self, rescore: usize) -> Self {
        IndexSettings { rescore, ..self }
    }

    /// These settings with another graph degree and breadth when adding.
    #[must_use]
    pub fn graph(self, connectivity: usize, expansion_add: usize) -> Self {
        IndexSettings {
            connectivity,
            expansion_add,
            ..self
        }
    }

    /// Whether exact vectors are kept beside the graph.
    fn keeps_exact(&self) -> bool {
        self.rescore > 0 && self.quantization != Quantization::F32
    }

    /// Refuses a zero breadth, a degree below 2, and one-bit storage
    /// without rescoring.
    pub fn validate(&self) -> Result<(), stratum_core::ConfigError> {
        use stratum_core::ConfigError;
        if self.expansion_search == 0 {
            return Err(ConfigError::invalid(
                "expansion_search",
                "must be at least 1",
            ));
        }
        if self.expansion_add == 0 {
            return Err(ConfigError::invalid("expansion_add", "must be at least 1"));
        }
        if self.connectivity < 2 {
            return Err(ConfigError::invalid("connectivity", "must be at least 2"));
        }
        if self.quantization == Quantization::B1 && self.rescore == 0 {
            return Err(ConfigError::invalid(
                "rescore",
                "must be at least 1 with one-bit storage (the graph only ranks)",
            ));
        }
        Ok(())
    }
}

/// Which index a [`SemanticCache`](crate::SemanticCache) keeps per scope.
/// In a file it is one table chosen by `type`.
///
/// ```
/// use stratum_semantic::{IndexConfig, IndexSettings, Quantization};
///
/// let flat: IndexConfig = toml::from_str("type = \"flat_binary\"\nrescore = 128\n").unwrap();
/// assert_eq!(flat, IndexConfig::FlatBinary { rescore: 128 });
/// let hnsw: IndexConfig = toml::from_str("type = \"hnsw\"\nquantization = \"b1\"\nrescore = 64\n").unwrap();
/// let IndexConfig::Hnsw(settings) = hnsw else { panic!("hnsw") };
/// assert_eq!(settings.quantization, Quantization::B1);
/// assert_eq!(settings.connectivity, IndexSettings::default().connectivity);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum IndexConfig {
    /// [`FlatBinaryIndex`](crate::FlatBinaryIndex): every entry's sign bits
    /// scanned by Hamming distance, the `rescore` nearest rescored exactly.
    /// The default (docs/semantic.md, "Why these pieces").
    FlatBinary {
        /// Candidates rescored with their exact vectors (at least 1).
        /// Default 256.
        #[serde(default = "default_flat_rescore")]
        rescore: usize,
    },
    /// [`VectorIndex`]: usearch's HNSW graph with these settings.
    Hnsw(IndexSettings),
}

fn default_flat_rescore() -> usize {
    crate::flat::DEFAULT_FLAT_RESCORE
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig::FlatBinary {
            rescore: default_flat_rescore(),
        }
    }
}

impl IndexConfig {
    /// Refuses settings an index would refuse (a zero rescore, see
    /// [`IndexSettings::validate`]).
    pub fn validate(&self) -> Result<(), stratum_core::ConfigError> {
        match self {
            IndexConfig::FlatBinary { rescore: 0 } => Err(stratum_core::ConfigError::invalid(
                "rescore",
                "must be at least 1 (sign bits only rank)",
            )),
            IndexConfig::FlatBinary { .. } => Ok(()),
            IndexConfig::Hnsw(settings) => settings.validate(),
        }
    }

    /// An empty index of this kind for vectors of `dimensions`.
    pub fn build(
        &self,
        dimensions: usize,
    ) -> Result<Box<dyn NearestNeighbours + Send + Sync>, CacheError> {
        Ok(match *self {
            IndexConfig::FlatBinary { rescore } => {
                Box::new(crate::FlatBinaryIndex::new(dimensions, rescore)?)
            }
            IndexConfig::Hnsw(settings) => {
                Box::new(VectorIndex::with_settings(dimensions, settings)?)
            }
        })
    }
}

/// The signs of `vector`, packed eight to a byte (the first dimension of
/// each eight in the lowest bit, as usearch's `BitAddressable` numbers them;
/// the Hamming distance does not depend on the order).
fn sign_bits(vector: &[f32], bits: &mut Vec<b1x8>) {
    bits.clear();
    bits.extend(vector.chunks(8).map(|chunk| {
        let mut byte = 0u8;
        for (i, &x) in chunk.iter().enumerate() {
            if x > 0.0 {
                byte |= 1 << i;
            }
        }
        b1x8(byte)
    }));
}

/// Below this many tombstones the graph is not rebuilt, so a small index is
/// not rebuilt on every other removal.
const REBUILD_MIN_TOMBSTONES: usize = 64;

fn index_error(e: impl std::fmt::Display) -> CacheError {
    CacheError::Index(e.to_string())
}

impl VectorIndex {
    /// An empty index for vectors of `dimensions` (at least 1), with the
    /// default [`IndexSettings`].
    pub fn new(dimensions: usize) -> Result<VectorIndex, CacheError> {
        VectorIndex::with_settings(dimensions, IndexSettings::default())
    }

    /// An empty index for vectors of `dimensions` (at least 1) stored and
    /// searched as `settings` say (a breadth of at least 1).
    pub fn with_settings(
        dimensions: usize,
        settings: IndexSettings,
    ) -> Result<VectorIndex, CacheError> {
        if dimensions == 0 {
            return Err(
                stratum_core::ConfigError::invalid("dimensions", "must be at least 1").into(),
            );
        }
        settings.validate()?;
        let options = IndexOptions {
            dimensions,
            metric: if settings.quantization == Quantization::B1 {
                MetricKind::Hamming
            } else {
                MetricKind::Cos
            },
            quantization: match settings.quantization {
                Quantization::F32 => ScalarKind::F32,
                Quantization::F16 => ScalarKind::F16,
                Quantization::I8 => ScalarKind::I8,
                Quantization::B1 => ScalarKind::B1,
            },
            connectivity: settings.connectivity,
            expansion_add: settings.expansion_add,
            expansion_search: settings.expansion_search,
            multi: false,
        };
        let index = Index::new(&options).map_err(index_error)?;
        Ok(VectorIndex {
            index,
            options,
            rescore: if settings.keeps_exact() {
                settings.rescore
            } else {
                0
            },
            keep_exact: settings.keeps_exact(),
            exact: Vec::new(),
            ids: HashMap::new(),
            keys: HashMap::new(),
            next_id: 0,
            tombstones: 0,
        })
    }

    /// Changes how many candidates a search keeps (at least 1); kept across
    /// rebuilds.
    pub fn set_expansion_search(&mut self, expansion_search: usize) {
        let n = expansion_search.max(1);
        self.index.change_expansion_search(n);
        self.options.expansion_search = n;
    }

    /// Changes how many candidates are rescored exactly (kept across
    /// rebuilds). Only an index built with rescoring keeps the exact
    /// vectors, so on one built without it this changes nothing; 0 turns
    /// rescoring off (the copies stay, and are still added), except on
    /// one-bit storage, which rescores at least 1.
    pub fn set_rescore(&mut self, rescore: usize) {
        if self.keep_exact {
            // One-bit storage only ranks: it is always rescored.
            self.rescore = if Self::one_bit(&self.options) {
                rescore.max(1)
            } else {
                rescore
            };
        }
    }

    /// Bytes of the exact vectors kept beside a quantized graph (part of
    /// [`NearestNeighbours::memory_bytes`]).
    pub fn exact_bytes(&self) -> usize {
        self.exact.capacity() * 4
    }

    /// The exact vector stored under graph id `id`.
    fn exact_vector(&self, id: u64) -> Option<&[f32]> {
        let d = self.options.dimensions;
        let start = usize::try_from(id).ok()?.checked_mul(d)?;
        self.exact.get(start..start + d)
    }

    /// The SIMD instruction set usearch chose for this index's distance
    /// (e.g. "haswell"; "serial" when none was compiled in or fits the CPU).
    #[must_use]
    pub fn hardware_acceleration(&self) -> String {
        self.index.hardware_acceleration()
    }

    /// Removed vectors still in the graph (rebuilt away once they outnumber
    /// the live ones).
    pub fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// Whether the graph holds sign bits (compared by Hamming distance).
    fn one_bit(options: &IndexOptions) -> bool {
        options.quantization == ScalarKind::B1
    }

    fn insert(
        index: &Index,
        options: &IndexOptions,
        id: u64,
        vector: &[f32],
    ) -> Result<(), CacheError> {
        // usearch refuses an add beyond its reserved capacity: grow by
        // doubling so adds stay amortised O(1) in allocations.
        if index.size() >= index.capacity() {
            let capacity = (index.capacity() * 2).max(64);
            index.reserve(capacity).map_err(index_error)?;
        }
        if Self::one_bit(options) {
            let mut bits = Vec::new();
            sign_bits(vector, &mut bits);
            index.add(id, &bits)
        } else {
            index.add(id, vector)
        }
        .map_err(index_error)
    }

    fn bury(&mut self, id: u64) -> Result<(), CacheError> {
        self.keys.remove(&id);
        self.tombstones += 1;
        if self.tombstones >= REBUILD_MIN_TOMBSTONES && self.tombstones > self.ids.len() {
            self.rebuild()?;
        }
        Ok(())
    }

    /// A fresh graph of the live vectors: the exact copies when kept, else
    /// read back from the old graph.
    fn rebuild(&mut self) -> Result<(), CacheError> {
        let index = Index::new(&self.options).map_err(index_error)?;
        index.reserve(self.ids.len().max(64)).map_err(index_error)?;
        let keeps_exact = self.keep_exact;
        let mut exact = Vec::with_capacity(if keeps_exact {
            self.ids.len() * self.options.dimensions
        } else {
            0
        });
        let mut vector = vec![0f32; self.options.dimensions];
        let mut ids = HashMap::with_capacity(self.ids.len());
        let mut keys = HashMap::with_capacity(self.ids.len());
        let mut next_id = 0;
        for (&key, &old) in &self.ids {
            if let Some(v) = self.exact_vector(old) {
                vector.copy_from_slice(v);
            } else {
                let got = self.index.get(old, &mut vector).map_err(index_error)?;
                if got == 0 {
                    return Err(CacheError::Index(format!(
                        "vector {old} missing from the graph"
                    )));
                }
            }
            Self::insert(&index, &self.options, next_id, &vector)?;
            if keeps_exact {
                exact.extend_from_slice(&vector);
            }
            ids.insert(key, next_id);
            keys.insert(next_id, key);
            next_id += 1;
        }
        *self = VectorIndex {
            index,
            options: self.options.clone(),
            rescore: self.rescore,
            keep_exact: keeps_exact,
            exact,
            ids,
            keys,
            next_id,
            tombstones: 0,
        };
        Ok(())
    }
}

impl NearestNeighbours for VectorIndex {
    fn add(&mut self, key: u64, vector: &[f32]) -> Result<(), CacheError> {
        check(self.options.dimensions, vector)?;
        let id = self.next_id;
        Self::insert(&self.index, &self.options, id, vector)?;
        if self.keep_exact {
            self.exact.extend_from_slice(vector);
        }
        self.next_id += 1;
        self.keys.insert(id, key);
        if let Some(old) = self.ids.insert(key, id) {
            self.bury(old)?;
        }
        Ok(())
    }

    fn remove(&mut self, key: u64) -> Result<bool, CacheError> {
        match self.ids.remove(&key) {
            Some(id) => {
                self.bury(id)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>, CacheError> {
        check(self.options.dimensions, query)?;
        if k == 0 || self.ids.is_empty() {
            return Ok(Vec::new());
        }
        let candidates = k.max(self.rescore);
        let live = |id| self.keys.contains_key(&id);
        let matches = if Self::one_bit(&self.options) {
            let mut bits = Vec::new();
            sign_bits(query, &mut bits);
            if self.tombstones == 0 {
                self.index.search(&bits, candidates)
            } else {
                self.index.filtered_search(&bits, candidates, live)
            }
        } else if self.tombstones == 0 {
            self.index.search(query, candidates)
        } else {
            self.index.filtered_search(query, candidates, live)
        }
        .map_err(index_error)?;
        let mut found: Vec<Neighbour> = matches
            .keys
            .iter()
            .zip(&matches.distances)
            .filter_map(|(id, &distance)| {
                let similarity = if self.rescore > 0 {
                    // The exact cosine: the decision and the learned
                    // thresholds never see the quantized one.
                    dot(query, self.exact_vector(*id)?)
                } else {
                    // usearch's cosine distance is 1 - cosine.
                    1.0 - distance
                };
                Some(Neighbour {
                    key: *self.keys.get(id)?,
                    similarity: similarity.clamp(-1.0, 1.0),
                })
            })
            .collect();
        if self.rescore > 0 {
            found.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        }
        found.truncate(k);
        Ok(found)
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn memory_bytes(&self) -> usize {
        // The two maps: a key and an id (16 bytes) plus about one control
        // byte per slot at hashbrown's 7/8 load, in each.
        let maps = 2 * self.ids.capacity().max(self.keys.capacity()) * 17;
        self.index.memory_usage() + maps + self.exact_bytes()
    }
}

/// Brute force: every vector compared with the query. Exact, O(n·d) a
/// search; the reference the property tests and the measurement use.
#[derive(Debug, Clone)]
pub struct ExactIndex {
    dimensions: usize,
    keys: Vec<u64>,
    vectors: Vec<f32>,
    positions: HashMap<u64, usize>,
}

impl ExactIndex {
    /// An empty index for vectors of `dimensions`.
    #[must_use]
    pub fn new(dimensions: usize) -> ExactIndex {
        ExactIndex {
            dimensions,
            keys: Vec::new(),
            vectors: Vec::new(),
            positions: HashMap::new(),
        }
    }
}

impl NearestNeighbours for ExactIndex {
    fn add(&mut self, key: u64, vector: &[f32]) -> Result<(), CacheError> {
        check(self.dimensions, vector)?;
        self.remove(key)?;
        self.positions.insert(key, self.keys.len());
        self.keys.push(key);
        self.vectors.extend_from_slice(vector);
        Ok(())
    }

    fn remove(&mut self, key: u64) -> Result<bool, CacheError> {
        let Some(position) = self.positions.remove(&key) else {
            return Ok(false);
        };
        // Swap-remove: the last vector takes the freed slot.
        let last = self.keys.len() - 1;
        let d = self.dimensions;
        if position != last {
            self.vectors
                .copy_within(last * d..(last + 1) * d, position * d);
            self.keys[position] = self.keys[last];
            self.positions.insert(self.keys[position], position);
        }
        self.keys.pop();
        self.vectors.truncate(last * d);
        Ok(true)
    }

    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>, CacheError> {
        check(self.dimensions, query)?;
        let mut all: Vec<Neighbour> = self
            .keys
            .iter()
            .zip(self.vectors.chunks_exact(self.dimensions.max(1)))
            .map(|(&key, v)| Neighbour {
                key,
                similarity: dot(query, v).clamp(-1.0, 1.0),
            })
            .collect();
        let k = k.min(all.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        all.select_nth_unstable_by(k - 1, |a, b| b.similarity.total_cmp(&a.similarity));
        all.truncate(k);
        all.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        Ok(all)
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn memory_bytes(&self) -> usize {
        self.vectors.capacity() * 4
            + self.keys.capacity() * 8
            + self.positions.capacity() * (8 + 8 + 8)
    }
}
