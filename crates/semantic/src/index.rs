//! Nearest-neighbour search over unit vectors: `VectorIndex` (HNSW, usearch)
//! and `ExactIndex` (brute force, the reference the tests compare with).

use std::collections::HashMap;

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

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

/// What both indexes offer; the cache holds a [`VectorIndex`], the tests and
/// the measurement compare it with an [`ExactIndex`].
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

fn check(dimensions: usize, vector: &[f32]) -> Result<(), CacheError> {
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
pub struct VectorIndex {
    index: Index,
    dimensions: usize,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("dimensions", &self.dimensions)
            .field("len", &self.index.size())
            .finish()
    }
}

/// usearch's graph degree and its breadth when adding and searching: its own
/// defaults (16, 128, 64); docs/semantic.md has the recall and latency they
/// give at 10,000 and 100,000 entries.
const CONNECTIVITY: usize = 16;
const EXPANSION_ADD: usize = 128;
const EXPANSION_SEARCH: usize = 64;

impl VectorIndex {
    /// An empty index for vectors of `dimensions` (at least 1).
    pub fn new(dimensions: usize) -> Result<VectorIndex, CacheError> {
        if dimensions == 0 {
            return Err(
                stratum_core::ConfigError::invalid("dimensions", "must be at least 1").into(),
            );
        }
        let options = IndexOptions {
            dimensions,
            metric: MetricKind::Cos,
            quantization: ScalarKind::F32,
            connectivity: CONNECTIVITY,
            expansion_add: EXPANSION_ADD,
            expansion_search: EXPANSION_SEARCH,
            multi: false,
        };
        let index = Index::new(&options).map_err(|e| CacheError::Index(e.to_string()))?;
        Ok(VectorIndex { index, dimensions })
    }
}

impl NearestNeighbours for VectorIndex {
    fn add(&mut self, key: u64, vector: &[f32]) -> Result<(), CacheError> {
        check(self.dimensions, vector)?;
        if self.index.contains(key) {
            self.index
                .remove(key)
                .map_err(|e| CacheError::Index(e.to_string()))?;
        }
        // usearch refuses an add beyond its reserved capacity: grow by
        // doubling so adds stay amortised O(1) in allocations.
        if self.index.size() >= self.index.capacity() {
            let capacity = (self.index.capacity() * 2).max(64);
            self.index
                .reserve(capacity)
                .map_err(|e| CacheError::Index(e.to_string()))?;
        }
        self.index
            .add(key, vector)
            .map_err(|e| CacheError::Index(e.to_string()))
    }

    fn remove(&mut self, key: u64) -> Result<bool, CacheError> {
        let removed = self
            .index
            .remove(key)
            .map_err(|e| CacheError::Index(e.to_string()))?;
        Ok(removed > 0)
    }

    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>, CacheError> {
        check(self.dimensions, query)?;
        if k == 0 || self.index.size() == 0 {
            return Ok(Vec::new());
        }
        let matches = self
            .index
            .search(query, k)
            .map_err(|e| CacheError::Index(e.to_string()))?;
        Ok(matches
            .keys
            .iter()
            .zip(&matches.distances)
            .map(|(&key, &distance)| Neighbour {
                key,
                // usearch's cosine distance is 1 - cosine.
                similarity: (1.0 - distance).clamp(-1.0, 1.0),
            })
            .collect())
    }

    fn len(&self) -> usize {
        self.index.size()
    }

    fn memory_bytes(&self) -> usize {
        self.index.memory_usage()
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
