//! The workloads' one Zipf sampler: which prompt or document a task picks.
//!
//! A thin adapter over `rand_distr::Zipf` (rejection-inversion sampling,
//! constant time and memory per draw) from its `1..=n` floats to the ranks
//! `0..n` the workloads index with.

use rand::Rng;
use rand_distr::Distribution;

/// Ranks `0..n`, rank `k` drawn with probability proportional to
/// `1 / (k + 1)^s`: a few items are hot, most are cold (`s = 0`: uniform).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Popularity {
    zipf: rand_distr::Zipf<f64>,
    n: usize,
}

impl Popularity {
    /// Fails when `n` is 0 or `s` is negative or NaN.
    pub(crate) fn new(n: usize, s: f64) -> Result<Popularity, rand_distr::ZipfError> {
        Ok(Popularity {
            zipf: rand_distr::Zipf::new(n as f64, s)?,
            n,
        })
    }

    /// One rank in `0..n`.
    pub(crate) fn sample(&self, rng: &mut impl Rng) -> usize {
        // The distribution yields whole numbers in [1, n]; the clamp only
        // guards the float-to-integer conversion at the edges.
        let rank = self.zipf.sample(rng) as usize;
        rank.clamp(1, self.n) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn counts(n: usize, s: f64, draws: usize) -> Vec<u32> {
        let popularity = Popularity::new(n, s).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0u32; n];
        for _ in 0..draws {
            counts[popularity.sample(&mut rng)] += 1;
        }
        counts
    }

    #[test]
    fn low_ranks_are_preferred_and_every_rank_stays_in_range() {
        let counts = counts(1_000, 1.0, 100_000);
        // Rank 0 has probability 1 / H(1000) = 13.4 %, rank 9 a tenth of
        // that, rank 999 about 0.013 %; the top 100 hold 69.6 %.
        assert!((12_500..14_500).contains(&counts[0]), "{}", counts[0]);
        assert!((900..1_800).contains(&counts[9]), "{}", counts[9]);
        let top_100: u32 = counts[..100].iter().sum();
        assert!((67_000..72_000).contains(&top_100), "{top_100}");
        assert!(counts[999] < 60, "{}", counts[999]);
    }

    #[test]
    fn a_zero_exponent_is_uniform_over_every_rank() {
        let counts = counts(10, 0.0, 50_000);
        assert!(
            counts.iter().all(|&c| (4_500..5_500).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn one_item_is_always_rank_zero() {
        assert!(counts(1, 1.0, 1_000) == vec![1_000]);
    }

    #[test]
    fn no_items_or_a_negative_exponent_are_refused() {
        assert!(Popularity::new(0, 1.0).is_err());
        assert!(Popularity::new(10, -0.5).is_err());
        assert!(Popularity::new(10, f64::NAN).is_err());
    }
}
