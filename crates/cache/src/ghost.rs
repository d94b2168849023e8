//! S3-FIFO's ghost queue: fingerprints of keys recently evicted from the
//! small queue, in 4-way buckets (16 bytes, one cache line access per check)
//! that each keep their newest four, so a fingerprint is forgotten after
//! about as many later evictions as the ghost has slots, as in a FIFO of
//! that length (a direct-mapped table forgets after a random, exponentially
//! spread, number of them).
//!
//! The ghost grows toward its target, a share of the resident entries
//! that the shard adapts, only as evictions fill it: a cache that has not
//! evicted holds no ghost memory. When the target falls below half of the
//! ghost's slots, the ghost is rebuilt at the target, each new bucket
//! keeping the newest ways of the old buckets it merges (its length is
//! what the target controls: a ghost forgets a key after about as many
//! pushes as it has slots).

/// Slots per bucket.
const WAYS: usize = 4;
/// Buckets of a new ghost.
const INITIAL_BUCKETS: usize = 4;

pub(crate) struct Ghost {
    buckets: Vec<[u32; WAYS]>,
    /// Fingerprints recorded since the last growth.
    pushed: usize,
}

impl Ghost {
    pub(crate) fn new() -> Self {
        Self {
            buckets: Vec::new(),
            pushed: 0,
        }
    }

    /// The fingerprint of a key's hash: its low 32 bits (the shard index
    /// comes from bits 40..), never 0 (an empty slot). `#[inline]`: the
    /// cache's generic code is compiled in the user's crate, where a
    /// private function of this crate without it stays a call (callgrind
    /// counted 748 598 of them in the throughput bench's profiling loop).
    #[inline]
    fn fingerprint(hash: u64) -> u32 {
        (hash as u32).max(1)
    }

    /// The bucket of `fp` among `n` (multiply-shift: no division, and the
    /// bucket is recomputable from the fingerprint when the ghost grows).
    #[inline]
    fn bucket(fp: u32, n: usize) -> usize {
        ((u64::from(fp) * n as u64) >> 32) as usize
    }

    /// Slots allocated (for tests and memory accounting).
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// Records `hash`; `target` is the number of slots the ghost may grow to.
    #[inline]
    pub(crate) fn push(&mut self, hash: u64, target: usize) {
        let want = target.div_ceil(WAYS).max(1);
        let have = self.buckets.len();
        if have == 0 || (have < want && self.pushed >= have * WAYS) {
            self.resize((have * 2).clamp(INITIAL_BUCKETS.min(want), want));
        } else if have > 2 * want && want >= INITIAL_BUCKETS {
            self.resize(want);
        }
        let fp = Self::fingerprint(hash);
        let n = self.buckets.len();
        if let Some(b) = self.buckets.get_mut(Self::bucket(fp, n)) {
            *b = [fp, b[0], b[1], b[2]];
        }
        self.pushed += 1;
    }

    /// Rebuilds the ghost with `buckets` buckets, keeping each new bucket's
    /// newest fingerprints.
    fn resize(&mut self, buckets: usize) {
        let old = std::mem::replace(&mut self.buckets, vec![[0; WAYS]; buckets]);
        // Oldest first, so each bucket ends with its newest fingerprints.
        for way in (0..WAYS).rev() {
            for b in &old {
                let fp = b[way];
                if fp != 0
                    && let Some(nb) = self.buckets.get_mut(Self::bucket(fp, buckets))
                {
                    nb.copy_within(0..WAYS - 1, 1);
                    nb[0] = fp;
                }
            }
        }
        self.pushed = 0;
    }

    /// True (and forgets it) if `hash` is recorded.
    #[inline]
    pub(crate) fn take(&mut self, hash: u64) -> bool {
        let fp = Self::fingerprint(hash);
        let n = self.buckets.len();
        let Some(b) = self.buckets.get_mut(Self::bucket(fp, n)) else {
            return false;
        };
        // The ways after the match move up one, keeping their order.
        *b = match *b {
            [x, b1, b2, b3] if x == fp => [b1, b2, b3, 0],
            [b0, x, b2, b3] if x == fp => [b0, b2, b3, 0],
            [b0, b1, x, b3] if x == fp => [b0, b1, b3, 0],
            [b0, b1, b2, x] if x == fp => [b0, b1, b2, 0],
            _ => return false,
        };
        true
    }

    pub(crate) fn clear(&mut self) {
        self.buckets = Vec::new();
        self.pushed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn remembers_recent_and_forgets_old() {
        let mut g = Ghost::new();
        for i in 0..10_000 {
            g.push(h(i), 1_000);
        }
        assert_eq!(g.slots(), 1_000);
        // The most recent few hundred are (nearly) all there; the oldest are gone.
        let recent = (9_800..10_000).filter(|&i| g.take(h(i))).count();
        let old = (0..5_000).filter(|&i| g.take(h(i))).count();
        assert!(recent >= 190, "{recent}");
        assert!(old <= 5, "{old}");
    }

    #[test]
    fn take_forgets() {
        let mut g = Ghost::new();
        g.push(h(1), 100);
        assert!(g.take(h(1)));
        assert!(!g.take(h(1)));
        assert!(!g.take(h(2)));
    }

    #[test]
    fn shrinks_to_a_falling_target_keeping_the_newest() {
        let mut g = Ghost::new();
        for i in 0..4_000 {
            g.push(h(i), 1_000);
        }
        assert_eq!(g.slots(), 1_000);
        // The target falls below half the slots: rebuilt at the target.
        g.push(h(4_000), 200);
        assert_eq!(g.slots(), 200);
        // Most of the newest survive the rebuild (each new bucket takes
        // the newest ways of the old buckets it merges, not their exact
        // order: 40 of 51 here); it now forgets after about 200 pushes.
        let recent = (3_950..=4_000).filter(|&i| g.take(h(i))).count();
        assert!(recent >= 35, "{recent}");
        for i in 4_001..4_401 {
            g.push(h(i), 200);
        }
        let forgotten = (3_950..4_001).filter(|&i| g.take(h(i))).count();
        assert_eq!(forgotten, 0);
    }

    #[test]
    fn grows_only_as_it_fills() {
        let mut g = Ghost::new();
        g.push(h(0), 1 << 20);
        assert_eq!(g.slots(), INITIAL_BUCKETS * WAYS);
        for i in 1..100 {
            g.push(h(i), 1 << 20);
        }
        assert!(g.slots() <= 256, "{}", g.slots());
        // Growth keeps what was recorded.
        assert!(g.take(h(99)));
    }
}
