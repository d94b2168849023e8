//! TinyLFU's frequency history for S3-FIFO's admission to the main queue:
//! a count-min sketch of how often keys were seen (inserted, or found read
//! when the eviction hand passed them).
//!
//! As in Caffeine: 4-bit counters, 16 to a 64-bit word, one word per entry
//! the shard holds when full (rounded up to a power of two: 8 to 16 bytes
//! per entry), and the four counters of a key (one per row) in one 64-byte
//! block of 8 words, so a count touches one cache line: row `r` uses word
//! `2r` or `2r + 1` of the block (no two rows share a word) and one of
//! its 16 counters. A key's four counters in one word cost about 9 fewer
//! instructions an operation but, over ten hasher seeds, lost a row of
//! the hit-ratio bench that this layout meets (docs/cache-tuning.md).
//! Conservative update: a count raises only the key's counters at its
//! minimum, so collisions inflate estimates less. After 10 counts per
//! entry every counter is halved, so the history follows a changing
//! workload. The sketch is written only under the shard's write lock
//! (readers never touch it), and allocated when the shard first evicts:
//! a cache that never fills holds none.

/// Words per block (a 64-byte cache line).
const BLOCK: usize = 8;
/// A shard's table has at least this many words (8 KB), however few
/// entries the shard holds: in small shards (the trace rows at 5 % hold
/// 50-500 entries) a table of one word an entry made the loop keys'
/// counts collide with the hot keys', and loop at 5 % fell from 4.81 to
/// 4.34 % hits. With it (and the filtered ghost's steps in `shard.rs`)
/// the filter meets every row of the hit-ratio bench (docs/cache-tuning.md).
pub(crate) const MIN_WORDS: usize = 1_024;
/// A counter saturates here (4 bits).
const MAX: u64 = 15;
/// Counts between two halvings, per entry (Caffeine's sample).
const SAMPLE_PER_CAPACITY: u64 = 10;

pub(crate) struct Sketch {
    /// Blocks of [`BLOCK`] words, a power of two of them once allocated
    /// (empty while off).
    table: Vec<[u64; BLOCK]>,
    /// Counts between two halvings.
    sample: u64,
    /// Counts since the last halving (halved with the counters).
    additions: u64,
    /// Halvings so far (wrapping): an estimate taken at one epoch is worth
    /// half as much at the next. Only small-queue entries are aged, and
    /// they leave after far fewer than 256 halvings (one per 10 counts per
    /// entry), so the wrap is never reached.
    epoch: u8,
}

/// Where a key's four counters are: its block, and per row the word in
/// the block (row `r` uses word `2r` or `2r + 1`, so no two rows share a
/// word) and the counter's shift in it.
struct Slots {
    block: usize,
    word: [usize; 4],
    shift: [u32; 4],
}

impl Slots {
    #[inline]
    fn of(hash: u64) -> Self {
        // A multiply spreads the hash (the shard index came from bits
        // 40.. and the ghost's fingerprint from the low 32).
        let h = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // 5 bits a row: which of the row's two words, and which of its 16
        // counters.
        let bits = |row: usize| (h >> (row * 5)) as usize;
        Self {
            block: (h >> 32) as usize,
            word: std::array::from_fn(|row| row * 2 + (bits(row) & 1)),
            shift: std::array::from_fn(|row| (((bits(row) >> 1) & 15) * 4) as u32),
        }
    }

    /// The four counters' values in `block`.
    #[inline]
    fn values(&self, block: &[u64; BLOCK]) -> [u64; 4] {
        std::array::from_fn(|row| (block[self.word[row] & (BLOCK - 1)] >> self.shift[row]) & MAX)
    }
}

/// The smallest of a key's four counters: its estimate.
#[inline]
fn min4(v: [u64; 4]) -> u64 {
    v[0].min(v[1]).min(v[2].min(v[3]))
}

impl Sketch {
    /// A sketch not yet allocated.
    pub(crate) fn new() -> Self {
        Self {
            table: Vec::new(),
            sample: 0,
            additions: 0,
            epoch: 0,
        }
    }

    /// Whether the table is allocated (counts are kept).
    pub(crate) fn is_on(&self) -> bool {
        !self.table.is_empty()
    }

    /// Allocates the table for a shard that holds `entries` entries when
    /// full (its capacity, or with a weigher the entries that filled it):
    /// counts are kept from now on.
    #[inline]
    pub(crate) fn start(&mut self, entries: usize) {
        if !self.is_on() {
            self.allocate(entries);
        }
    }

    /// [`Self::start`]'s allocation, out of line: the check runs on every
    /// eviction, the allocation once.
    #[cold]
    fn allocate(&mut self, entries: usize) {
        let words = entries
            .max(MIN_WORDS)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX / 2 + 1);
        self.table = vec![[0; BLOCK]; words / BLOCK];
        self.sample = (entries.max(1) as u64).saturating_mul(SAMPLE_PER_CAPACITY);
        self.additions = 0;
    }

    /// The key's block index: its block bits masked by the table's size
    /// (a power of two; while off the mask is all ones and no block is
    /// found).
    #[inline]
    fn index(&self, slots: &Slots) -> usize {
        slots.block & self.table.len().wrapping_sub(1)
    }

    /// How often `hash` was counted since its counters were last halved
    /// (never less than the true count, saturating at 15; 0 while off).
    pub(crate) fn estimate(&self, hash: u64) -> u64 {
        let slots = Slots::of(hash);
        self.table
            .get(self.index(&slots))
            .map_or(0, |block| min4(slots.values(block)))
    }

    /// Counts one occurrence of `hash` (nothing while off) and returns its
    /// estimate after the count: what [`Self::estimate`] would return now,
    /// without reading the block a second time.
    pub(crate) fn count(&mut self, hash: u64) -> u64 {
        let slots = Slots::of(hash);
        let i = self.index(&slots);
        let Some(block) = self.table.get_mut(i) else {
            return 0;
        };
        let values = slots.values(block);
        let min = min4(values);
        if min < MAX {
            // Conservative update: only the counters at the minimum rise.
            for row in 0..4 {
                block[slots.word[row] & (BLOCK - 1)] +=
                    u64::from(values[row] == min) << slots.shift[row];
            }
        }
        self.additions += 1;
        if self.additions >= self.sample {
            self.halve();
            return self.estimate(hash);
        }
        (min + 1).min(MAX)
    }

    /// Halves every counter (ages the history).
    fn halve(&mut self) {
        for w in self.table.iter_mut().flatten() {
            *w = (*w >> 1) & 0x7777_7777_7777_7777;
        }
        self.additions /= 2;
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// The number of halvings so far (wrapping).
    pub(crate) fn epoch(&self) -> u8 {
        self.epoch
    }

    /// An estimate taken at `epoch`, aged by the halvings since: what it
    /// would be now if no other count had touched its counters.
    pub(crate) fn aged(&self, estimate: u8, epoch: u8) -> u64 {
        u64::from(estimate)
            .checked_shr(u32::from(self.epoch.wrapping_sub(epoch)))
            .unwrap_or(0)
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::new();
    }

    /// Bytes allocated (for tests).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.table.len() * BLOCK * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Spreads small key numbers over the hash space, as the cache's hasher does.
    fn h(k: u64) -> u64 {
        k.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_left(29) ^ 0x5555
    }

    /// The model: exact counts, saturating at 15, halved on the same schedule.
    struct Model {
        counts: std::collections::HashMap<u64, u64>,
        additions: u64,
        sample: u64,
    }

    impl Model {
        fn count(&mut self, k: u64) {
            let c = self.counts.entry(k).or_insert(0);
            *c = (*c + 1).min(MAX);
            self.additions += 1;
            if self.additions >= self.sample {
                for c in self.counts.values_mut() {
                    *c /= 2;
                }
                self.additions /= 2;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// After every count, no key's estimate is below its (saturated,
        /// halved) true count: a count-min sketch never underestimates.
        #[test]
        fn never_underestimates(
            capacity in 1usize..300,
            keys in proptest::collection::vec(0u64..200, 1..1_500),
        ) {
            let mut s = Sketch::new();
            s.start(capacity);
            let mut m = Model { counts: Default::default(), additions: 0, sample: s.sample };
            for k in keys {
                let returned = s.count(h(k));
                prop_assert_eq!(returned, s.estimate(h(k)));
                m.count(k);
                for (&k, &c) in &m.counts {
                    prop_assert!(s.estimate(h(k)) >= c, "key {k}: {} < {c}", s.estimate(h(k)));
                }
            }
        }

        /// A key alone in the sketch is counted exactly: saturation at 15
        /// and the halving every 10 counts per entry.
        #[test]
        fn one_key_is_counted_exactly(capacity in 1usize..200, n in 0usize..5_000, k in any::<u64>()) {
            let mut s = Sketch::new();
            s.start(capacity);
            let mut m = Model { counts: Default::default(), additions: 0, sample: s.sample };
            // The first count's estimate, aged by the halvings since, is
            // what the model's first count became.
            let (mut first, mut halvings) = (None, 0);
            for _ in 0..n {
                let before = m.additions;
                s.count(k);
                m.count(k);
                prop_assert_eq!(s.estimate(k), m.counts[&k]);
                if m.additions < before {
                    halvings += 1;
                }
                let (e, epoch) = *first.get_or_insert((s.estimate(k) as u8, s.epoch()));
                // The epoch wraps after 256 halvings (a small-queue entry,
                // the only one aged, leaves long before).
                if halvings < 256 {
                    prop_assert_eq!(s.aged(e, epoch), u64::from(e) >> halvings.min(63));
                }
            }
        }
    }

    /// A key's four counters are independent picks within its block (one
    /// of 32 per row), so a key never counted rarely finds all four raised
    /// by others: with 200 keys in 128 blocks, 0 of these 10 000. With
    /// every row taking the same hash bits, keys sharing a block share
    /// all four counters 1 time in 32, and about 500 of 10 000 read as
    /// seen.
    #[test]
    fn fresh_keys_rarely_share_all_four_counters() {
        let mut s = Sketch::new();
        s.start(1_000);
        for _ in 0..3 {
            for k in 0..200 {
                s.count(h(k));
            }
        }
        let inflated = (10_000..20_000).filter(|&k| s.estimate(h(k)) > 0).count();
        assert!(inflated < 100, "{inflated} of 10 000 fresh keys inflated");
    }

    #[test]
    fn allocated_on_start_only() {
        let mut s = Sketch::new();
        s.count(h(1));
        assert_eq!(s.bytes(), 0);
        assert_eq!(s.estimate(h(1)), 0);
        s.start(1_000);
        // One 8-byte word per entry, rounded up to a power of two.
        assert_eq!(s.bytes(), 1_024 * 8);
        s.clear();
        s.start(2_000);
        assert_eq!(s.bytes(), 2_048 * 8);
        // At least MIN_WORDS, however small the shard.
        s.clear();
        s.start(10);
        assert_eq!(s.bytes(), MIN_WORDS * 8);
        s.count(h(1));
        assert_eq!(s.estimate(h(1)), 1);
        s.clear();
        assert_eq!(s.bytes(), 0);
    }
}
