//! Shared bench helpers: a Zipf trace generator and a median helper.

#![allow(dead_code)]

pub(crate) mod sim;
pub(crate) mod traces;

use rand::{SeedableRng, rngs::StdRng};
use rand_distr::Distribution;

/// `len` keys drawn from Zipf(`s`) over `0..n` (key 0 the most popular),
/// then scrambled so popularity is not correlated with key order. The draws
/// are `rand_distr::Zipf`'s, the workspace's one Zipf sampler (the CLI's
/// workloads use it too).
pub(crate) fn zipf_trace(n: u64, s: f64, len: usize, seed: u64) -> Vec<u64> {
    let zipf = rand_distr::Zipf::new(n as f64, s).expect("a bench's Zipf parameters are valid");
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| {
            // Whole numbers in [1, n]: rank 0 is the most popular.
            let rank = zipf.sample(&mut rng) as u64 - 1;
            rank.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16
        })
        .collect()
}

/// The median of `xs` (sorted in place).
pub(crate) fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}
