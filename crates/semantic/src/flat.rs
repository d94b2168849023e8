//! `FlatBinaryIndex`: every vector's sign bits in one contiguous array,
//! scanned whole by Hamming distance; the nearest candidates are rescored
//! with their exact f32 vectors.
//!
//! No graph: a search reads `dimensions / 8` bytes per entry (48 for 384
//! dimensions), an insert appends, a removal swaps the last entry into the
//! freed slot. Nothing is approximate but the candidate list: whenever the
//! exact nearest is among the `rescore` entries of smallest Hamming distance
//! it is found, and its similarity is the exact cosine.

use std::collections::{BinaryHeap, HashMap};

use crate::CacheError;
use crate::embed::dot;
use crate::index::{NearestNeighbours, Neighbour, check};

/// Bits per word of the sign array.
const WORD_BITS: usize = 64;

/// Entries whose distances are computed in one pass before the candidate
/// list sees them: a pass without branches the compiler can vectorise.
const BLOCK: usize = 256;

/// The candidates rescored by default, chosen by measurement
/// (docs/semantic.md, "Why these pieces").
pub const DEFAULT_FLAT_RESCORE: usize = 256;

/// A flat one-bit index with exact rescoring: a search computes the Hamming
/// distance between the query's signs and every entry's, keeps the
/// `rescore` smallest, and ranks those by the exact cosine of their f32
/// vectors.
///
/// ```
/// use stratum_semantic::{FlatBinaryIndex, NearestNeighbours};
///
/// let mut index = FlatBinaryIndex::new(3, 8)?;
/// index.add(1, &[1.0, 0.0, 0.0])?;
/// index.add(2, &[0.0, 1.0, 0.0])?;
/// let best = index.search(&[0.9, 0.1, 0.0], 1)?;
/// assert_eq!(best[0].key, 1);
/// assert!(index.remove(1)?);
/// assert_eq!(index.search(&[0.9, 0.1, 0.0], 1)?[0].key, 2);
/// # Ok::<(), stratum_semantic::CacheError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FlatBinaryIndex {
    dimensions: usize,
    /// Words of sign bits per entry.
    words: usize,
    /// Candidates rescored exactly (at least 1).
    rescore: usize,
    /// Every entry's sign bits, `words` per entry, in slot order.
    bits: Vec<u64>,
    /// Every entry's exact vector, `dimensions` per entry, in slot order.
    vectors: Vec<f32>,
    /// Every slot's key.
    keys: Vec<u64>,
    /// Each key's slot.
    positions: HashMap<u64, usize>,
}

impl FlatBinaryIndex {
    /// An empty index for vectors of `dimensions` (at least 1), rescoring
    /// the `rescore` (at least 1) entries of smallest Hamming distance.
    pub fn new(dimensions: usize, rescore: usize) -> Result<FlatBinaryIndex, CacheError> {
        if dimensions == 0 {
            return Err(
                stratum_core::ConfigError::invalid("dimensions", "must be at least 1").into(),
            );
        }
        if rescore == 0 {
            return Err(stratum_core::ConfigError::invalid(
                "rescore",
                "must be at least 1 (sign bits only rank)",
            )
            .into());
        }
        Ok(FlatBinaryIndex {
            dimensions,
            words: dimensions.div_ceil(WORD_BITS),
            rescore,
            bits: Vec::new(),
            vectors: Vec::new(),
            keys: Vec::new(),
            positions: HashMap::new(),
        })
    }

    /// How many candidates a search rescores.
    #[must_use]
    pub fn rescore(&self) -> usize {
        self.rescore
    }

    /// Changes how many candidates a search rescores (at least 1).
    pub fn set_rescore(&mut self, rescore: usize) {
        self.rescore = rescore.max(1);
    }

    /// The `k` candidates (slots) of smallest Hamming distance to `query`'s
    /// sign bits, in no particular order.
    fn candidates(&self, query: &[u64], k: usize) -> Vec<usize> {
        // A max-heap of (distance, slot): its top is the worst kept.
        let mut kept: BinaryHeap<(u32, usize)> = BinaryHeap::with_capacity(k + 1);
        let mut distances = [0u32; BLOCK];
        let block_words = BLOCK * self.words;
        for (block, bits) in self.bits.chunks(block_words).enumerate() {
            let n = bits.len() / self.words;
            hamming_block(bits, query, self.words, &mut distances);
            let first = block * BLOCK;
            for (i, &d) in distances.iter().take(n).enumerate() {
                if kept.len() < k {
                    kept.push((d, first + i));
                } else if kept.peek().is_some_and(|&(worst, _)| d < worst) {
                    kept.pop();
                    kept.push((d, first + i));
                }
            }
        }
        kept.into_iter().map(|(_, slot)| slot).collect()
    }

    fn vector(&self, slot: usize) -> Option<&[f32]> {
        let start = slot.checked_mul(self.dimensions)?;
        self.vectors.get(start..start + self.dimensions)
    }

    fn bits_of(&mut self, slot: usize) -> Option<&mut [u64]> {
        let start = slot.checked_mul(self.words)?;
        self.bits.get_mut(start..start + self.words)
    }

    fn vector_of(&mut self, slot: usize) -> Option<&mut [f32]> {
        let start = slot.checked_mul(self.dimensions)?;
        self.vectors.get_mut(start..start + self.dimensions)
    }
}

/// The signs of `vector` (positive is 1), 64 to a word, dimension `i` in bit
/// `i % 64` of word `i / 64`; bits past the last dimension are 0 in every
/// entry, so they add nothing to a distance.
fn sign_words(vector: &[f32], out: &mut [u64]) {
    for (word, chunk) in out.iter_mut().zip(vector.chunks(WORD_BITS)) {
        *word = chunk
            .iter()
            .enumerate()
            .fold(0u64, |w, (i, &x)| w | (u64::from(x > 0.0) << i));
    }
}

/// The Hamming distance between `query` and each of the entries in `bits`
/// (`words` each), into `out` in order.
fn hamming_block(bits: &[u64], query: &[u64], words: usize, out: &mut [u32; BLOCK]) {
    // 384 dimensions (all-MiniLM-L6-v2's) is the common case: a fixed word
    // count unrolls the inner loop.
    match words {
        6 => hamming_fixed::<6>(bits, query, out),
        12 => hamming_fixed::<12>(bits, query, out),
        _ => {
            for (d, entry) in out.iter_mut().zip(bits.chunks_exact(words)) {
                *d = entry
                    .iter()
                    .zip(query)
                    .map(|(a, b)| (a ^ b).count_ones())
                    .sum();
            }
        }
    }
}

fn hamming_fixed<const W: usize>(bits: &[u64], query: &[u64], out: &mut [u32; BLOCK]) {
    let Ok(query) = <&[u64; W]>::try_from(query) else {
        return;
    };
    let (entries, _) = bits.as_chunks::<W>();
    for (d, entry) in out.iter_mut().zip(entries) {
        *d = entry
            .iter()
            .zip(query)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
    }
}

impl NearestNeighbours for FlatBinaryIndex {
    fn add(&mut self, key: u64, vector: &[f32]) -> Result<(), CacheError> {
        check(self.dimensions, vector)?;
        let slot = match self.positions.get(&key) {
            Some(&slot) => slot,
            None => {
                let slot = self.keys.len();
                self.keys.push(key);
                self.bits.resize(self.bits.len() + self.words, 0);
                self.vectors
                    .resize(self.vectors.len() + self.dimensions, 0.0);
                self.positions.insert(key, slot);
                slot
            }
        };
        if let Some(bits) = self.bits_of(slot) {
            sign_words(vector, bits);
        }
        if let Some(exact) = self.vector_of(slot) {
            exact.copy_from_slice(vector);
        }
        Ok(())
    }

    fn remove(&mut self, key: u64) -> Result<bool, CacheError> {
        let Some(slot) = self.positions.remove(&key) else {
            return Ok(false);
        };
        // Swap-remove: the last entry takes the freed slot.
        let last = self.keys.len().saturating_sub(1);
        if slot != last {
            let (w, d) = (self.words, self.dimensions);
            self.bits.copy_within(last * w..(last + 1) * w, slot * w);
            self.vectors.copy_within(last * d..(last + 1) * d, slot * d);
            self.keys.swap(slot, last);
            if let Some(&moved) = self.keys.get(slot) {
                self.positions.insert(moved, slot);
            }
        }
        self.keys.truncate(last);
        self.bits.truncate(last * self.words);
        self.vectors.truncate(last * self.dimensions);
        Ok(true)
    }

    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>, CacheError> {
        check(self.dimensions, query)?;
        if k == 0 || self.keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut bits = vec![0u64; self.words];
        sign_words(query, &mut bits);
        let mut found: Vec<Neighbour> = self
            .candidates(&bits, k.max(self.rescore))
            .into_iter()
            .filter_map(|slot| {
                Some(Neighbour {
                    key: *self.keys.get(slot)?,
                    similarity: dot(query, self.vector(slot)?).clamp(-1.0, 1.0),
                })
            })
            .collect();
        found.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        found.truncate(k);
        Ok(found)
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn memory_bytes(&self) -> usize {
        // The map: a key and a slot (16 bytes) plus about one control byte
        // per slot.
        self.bits.capacity() * 8
            + self.vectors.capacity() * 4
            + self.keys.capacity() * 8
            + self.positions.capacity() * 17
    }
}
