//! The jitter applied to every wait in the open state, from a small
//! deterministic generator (SplitMix64) seeded per breaker.
//!
//! The contract, relied on by tests that replay waits: each opening draws one
//! `u64` from SplitMix64 (state advanced by `0x9E3779B97F4A7C15`, then the
//! standard finalizer), turns its top 53 bits into `u` in [0, 1), and waits
//! `base * (1 - jitter * u)` nanoseconds (truncated, at least 1).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::clock::duration_nanos;

/// SplitMix64: tiny, fast, and good enough to spread a fleet's probes.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A seed that differs per process and per breaker.
    pub(crate) fn random_seed(name: &str) -> u64 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write(name.as_bytes());
        hasher.finish()
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The jittered wait in nanoseconds: `base * (1 - jitter * u)`, at least 1.
pub(crate) fn jittered_nanos(base: Duration, jitter: f64, rng: &mut SplitMix64) -> u64 {
    let factor = 1.0 - jitter * rng.next_unit();
    // `as` saturates for floats out of range; the factor is in (0, 1].
    ((duration_nanos(base) as f64 * factor) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values_of_splitmix64() {
        // The first outputs for seed 1234567, as published with the algorithm.
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
    }

    #[test]
    fn jittered_waits_stay_within_the_band_and_spread() {
        let mut rng = SplitMix64::new(42);
        let base = Duration::from_secs(10);
        let waits: Vec<u64> = (0..1000)
            .map(|_| jittered_nanos(base, 0.5, &mut rng))
            .collect();
        assert!(
            waits
                .iter()
                .all(|w| (5_000_000_000..=10_000_000_000).contains(w))
        );
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 900, "jitter should spread waits");
        let mut none = SplitMix64::new(42);
        assert_eq!(jittered_nanos(base, 0.0, &mut none), 10_000_000_000);
    }
}
