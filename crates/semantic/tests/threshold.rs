//! The learned thresholds: the binomial test, monotonicity, the error bound
//! on simulated data with a known risk, and `report_wrong`'s tightening.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use stratum_semantic::ThresholdConfig;
use stratum_semantic::threshold::{EntryLabels, EntryThreshold, Observations, binomial_cdf};

/// A learned threshold as a similarity; "never" is above every similarity.
fn level(obs: &Observations, config: &ThresholdConfig) -> f32 {
    obs.learned(config)
        .map_or(f32::INFINITY, |t| t.similarity())
}

fn observations() -> impl Strategy<Value = Vec<(f32, bool)>> {
    prop::collection::vec((-1.0f32..=1.0, prop::bool::weighted(0.9)), 0..600)
}

proptest! {
    /// The log-space sum equals the plain sum of the probability mass.
    #[test]
    fn binomial_cdf_is_the_sum_of_the_pmf(n in 1u64..150, p in 0.001f64..0.5, w in 0u64..150) {
        let w = w.min(n);
        let mut pmf = (1.0 - p).powi(n as i32);
        let mut cdf = pmf;
        for k in 0..w {
            pmf *= (n - k) as f64 / (k + 1) as f64 * p / (1.0 - p);
            cdf += pmf;
        }
        prop_assert!((binomial_cdf(w, n, p) - cdf.min(1.0)).abs() < 1e-9, "{} vs {}", binomial_cdf(w, n, p), cdf);
    }

    /// A correct observation only adds evidence: the threshold never rises.
    #[test]
    fn a_correct_observation_never_raises_the_threshold(obs in observations(), s in -1.0f32..=1.0) {
        let config = ThresholdConfig::default();
        let mut o = Observations::default();
        for &(s, c) in &obs { o.record(s, c); }
        let before = level(&o, &config);
        o.record(s, true);
        prop_assert!(level(&o, &config) <= before);
    }

    /// At the learned threshold the observed share of wrong answers is within
    /// the target (a necessary condition of the test rejecting).
    #[test]
    fn learned_threshold_meets_the_target_on_its_observations(obs in observations(), target in 0.01f64..0.2) {
        let config = ThresholdConfig::with_target_error(target);
        let mut o = Observations::default();
        for &(s, c) in &obs { o.record(s, c); }
        if let Some(t) = o.learned(&config) {
            prop_assert!(o.empirical_risk(t) <= target, "{} > {}", o.empirical_risk(t), target);
        }
    }

    /// After a wrong answer at `s` is reported, the entry answers no lookup at
    /// or below `s`, whatever the shared threshold says.
    #[test]
    fn report_wrong_excludes_everything_up_to_it(
        obs in observations(),
        wrong in -1.0f32..=1.0,
        probe in -1.0f32..=1.0,
    ) {
        let config = ThresholdConfig::default();
        let mut entry = EntryThreshold::default();
        for &(s, c) in obs.iter().take(50) { entry.record(s, c, &config); }
        let mut loose = Observations::default();
        (0..5_000).for_each(|_| loose.record(1.0, true));
        (0..5_000).for_each(|_| loose.record(-1.0, true));
        let shared = loose.learned(&config);
        prop_assert!(shared.is_some());
        entry.report_wrong(wrong, &config);
        if probe <= wrong {
            prop_assert!(!entry.accepts(probe, shared));
            prop_assert!(!entry.accepts_fixed(probe, -1.0));
        }
    }
}

proptest! {
    /// What an entry learned, stored as bytes and restored, decides every
    /// lookup as the entry did (with or without a shared threshold), and
    /// keeps only the latest `entry_observations`.
    #[test]
    fn restored_labels_decide_as_the_entry_did(
        obs in prop::collection::vec((0.8f32..=1.0, prop::bool::weighted(0.97)), 0..400),
        wrong in proptest::option::of(0.8f32..=1.0),
        probes in prop::collection::vec(0.7f32..=1.0, 20),
    ) {
        let mut config = ThresholdConfig::default();
        config.entry_observations = 300;
        let mut entry = EntryThreshold::default();
        for &(s, c) in &obs { entry.record(s, c, &config); }
        if let Some(w) = wrong { entry.report_wrong(w, &config); }
        let labels = entry.labels();
        let bytes = labels.observations_to_bytes();
        let read = EntryLabels::from_bytes(&bytes, labels.floor).unwrap();
        prop_assert_eq!(&read, &labels);
        prop_assert!(read.observations.len() <= 300);
        let restored = EntryThreshold::from_labels(&read, &config);
        prop_assert_eq!(restored.learned(), entry.learned());
        let mut loose = Observations::default();
        (0..5_000).for_each(|_| loose.record(0.75, true));
        for shared in [None, loose.learned(&config)] {
            for &p in &probes {
                prop_assert_eq!(restored.accepts(p, shared), entry.accepts(p, shared));
                prop_assert_eq!(restored.accepts_fixed(p, 0.8), entry.accepts_fixed(p, 0.8));
            }
        }
    }
}

/// Stored labels that cannot be read are a typed error, never a panic.
#[test]
fn unreadable_labels_are_refused() {
    assert!(
        EntryLabels::from_bytes(&[0, 0, 128, 63], None).is_err(),
        "four bytes"
    );
    let mut two = 0.5f32.to_le_bytes().to_vec();
    two.push(2);
    assert!(EntryLabels::from_bytes(&two, None).is_err(), "label byte 2");
    let mut outside = 1.5f32.to_le_bytes().to_vec();
    outside.push(1);
    assert!(
        EntryLabels::from_bytes(&outside, None).is_err(),
        "similarity 1.5"
    );
    assert!(
        EntryLabels::from_bytes(&[], Some(f32::NAN)).is_err(),
        "NaN floor"
    );
    assert!(EntryLabels::from_bytes(&[], None).unwrap().is_empty());
}

#[test]
fn no_observations_learn_nothing() {
    let config = ThresholdConfig::default();
    assert!(Observations::default().learned(&config).is_none());
    // 100 correct observations at 1.0 cannot show 2 % at 95 % confidence
    // (0.98^100 = 0.13 > 0.05); 200 can (0.98^200 = 0.018).
    let mut o = Observations::default();
    (0..100).for_each(|_| o.record(1.0, true));
    assert!(o.learned(&config).is_none());
    (0..100).for_each(|_| o.record(1.0, true));
    assert!(o.learned(&config).is_some());
}

/// A small deterministic generator, so the simulation needs no seed crate.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The guarantee on data with a known risk: similarity uniform in [0, 1],
/// wrong with probability `0.6 (1 - s)`, so the true risk of threshold `t`
/// is `∫_t^1 0.6 (1 - s) ds = 0.3 (1 - t)²`. Over 300 calibrations of 1,000
/// observations, the learned threshold's true risk exceeds the 2 % target in
/// at most 5 % of them (the confidence), with slack for the 300 draws.
/// A plug-in threshold (observed risk <= target, no test) fails about half
/// the time, so this test fails if the test is dropped.
#[test]
fn the_bound_holds_on_simulated_data() {
    let config = ThresholdConfig::with_target_error(0.02);
    let mut rng = SplitMix(7);
    let trials = 300;
    let mut violations = 0;
    let mut learned_any = 0;
    for _ in 0..trials {
        let mut o = Observations::default();
        for _ in 0..1_000 {
            let s = rng.next();
            let wrong = rng.next() < 0.6 * (1.0 - s);
            o.record(s as f32, !wrong);
        }
        if let Some(t) = o.learned(&config) {
            learned_any += 1;
            let t = f64::from(t.similarity());
            if 0.3 * (1.0 - t).powi(2) > 0.02 {
                violations += 1;
            }
        }
    }
    assert!(
        learned_any > trials * 9 / 10,
        "learned only {learned_any} of {trials}"
    );
    assert!(
        violations <= trials * 8 / 100,
        "{violations} of {trials} calibrations broke the bound"
    );
}
