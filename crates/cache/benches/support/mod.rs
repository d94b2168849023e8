//! Shared bench helpers: a Zipf trace generator and a median helper.

#![allow(dead_code)]

pub(crate) mod sim;
pub(crate) mod traces;

use rand::{Rng, SeedableRng, rngs::StdRng};

/// `len` keys drawn from Zipf(`s`) over `0..n` (key 0 the most popular),
/// then scrambled so popularity is not correlated with key order.
pub(crate) fn zipf_trace(n: u64, s: f64, len: usize, seed: u64) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(n as usize);
    let mut acc = 0.0;
    for k in 1..=n {
        acc += 1.0 / (k as f64).powf(s);
        cdf.push(acc);
    }
    let total = acc;
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| {
            let u = rng.random::<f64>() * total;
            let rank = cdf.partition_point(|&c| c < u) as u64;
            rank.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16
        })
        .collect()
}

/// The median of `xs` (sorted in place).
pub(crate) fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}
