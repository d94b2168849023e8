//! `VectorIndex` (HNSW) and `FlatBinaryIndex` (sign bits scanned, rescored)
//! against `ExactIndex` (brute force), and brute force against the plainest
//! model: a list scanned for the best dot product.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use stratum_semantic::{
    ExactIndex, FlatBinaryIndex, IndexSettings, NearestNeighbours, Quantization, VectorIndex, dot,
    normalize,
};

#[derive(Debug, Clone)]
enum Op {
    Add(u64, Vec<f32>),
    Remove(u64),
    Search(Vec<f32>),
}

const DIMS: usize = 16;

/// Deterministic unit vectors of `DIMS` from a SplitMix64 stream seeded
/// with `seed`, so the tests that use them are deterministic too.
fn unit_vectors(mut seed: u64) -> impl FnMut() -> Vec<f32> {
    move || {
        let mut v: Vec<f32> = (0..DIMS)
            .map(|_| {
                seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = seed;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                ((z ^ (z >> 31)) >> 11) as f32 / (1u64 << 53) as f32 - 0.5
            })
            .collect();
        normalize(&mut v).unwrap();
        v
    }
}

fn unit() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-1.0f32..1.0, DIMS).prop_filter_map("no direction", |mut v| {
        normalize(&mut v).ok()?;
        Some(v)
    })
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    // Few keys, so adds replace and removes hit.
    let op = prop_oneof![
        4 => (0u64..48, unit()).prop_map(|(k, v)| Op::Add(k, v)),
        1 => (0u64..48).prop_map(Op::Remove),
        2 => unit().prop_map(Op::Search),
    ];
    prop::collection::vec(op, 1..160)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Up to 48 entries, HNSW finds the exact nearest (same similarity;
    /// ties may pick either key), never returns a removed key, and holds as
    /// many vectors as brute force.
    #[test]
    fn hnsw_matches_brute_force_on_small_sets(ops in ops()) {
        let mut hnsw = VectorIndex::new(DIMS).unwrap();
        let mut exact = ExactIndex::new(DIMS);
        for op in ops {
            match op {
                Op::Add(k, v) => {
                    hnsw.add(k, &v).unwrap();
                    exact.add(k, &v).unwrap();
                }
                Op::Remove(k) => {
                    prop_assert_eq!(hnsw.remove(k).unwrap(), exact.remove(k).unwrap());
                }
                Op::Search(q) => {
                    let got = hnsw.search(&q, 1).unwrap();
                    let want = exact.search(&q, 1).unwrap();
                    prop_assert_eq!(got.len(), want.len());
                    if let (Some(g), Some(w)) = (got.first(), want.first()) {
                        prop_assert!((g.similarity - w.similarity).abs() < 1e-4, "{:?} vs {:?}", g, w);
                        // The returned key is live and has that similarity.
                        let live = exact.search(&q, exact.len()).unwrap();
                        prop_assert!(live.iter().any(|n| n.key == g.key));
                    }
                }
            }
            prop_assert_eq!(hnsw.len(), exact.len());
        }
    }

    /// Brute force returns the k best of a plain list, best first.
    #[test]
    fn brute_force_is_the_k_best(
        vectors in prop::collection::vec(unit(), 0..40),
        q in unit(),
        k in 0usize..10,
    ) {
        let mut exact = ExactIndex::new(DIMS);
        for (i, v) in vectors.iter().enumerate() {
            exact.add(i as u64, v).unwrap();
        }
        let got = exact.search(&q, k).unwrap();
        let mut model: Vec<f32> = vectors.iter().map(|v| dot(&q, v)).collect();
        model.sort_by(|a, b| b.total_cmp(a));
        model.truncate(k);
        let sims: Vec<f32> = got.iter().map(|n| n.similarity).collect();
        prop_assert_eq!(sims.len(), model.len());
        for (g, m) in sims.iter().zip(&model) {
            prop_assert!((g - m).abs() < 1e-5, "{:?} vs {:?}", sims, model);
        }
    }
}

#[test]
fn wrong_length_and_nan_are_refused() {
    let mut hnsw = VectorIndex::new(4).unwrap();
    assert!(hnsw.add(1, &[1.0, 0.0]).is_err());
    assert!(hnsw.add(1, &[f32::NAN, 0.0, 0.0, 0.0]).is_err());
    assert!(hnsw.search(&[1.0], 1).is_err());
    assert!(VectorIndex::new(0).is_err());
}

#[test]
fn grows_past_its_first_reservation() {
    let mut hnsw = VectorIndex::new(4).unwrap();
    for k in 0..1_000u64 {
        let mut v = vec![(k as f32).sin(), (k as f32).cos(), 1.0, (k % 7) as f32];
        normalize(&mut v).unwrap();
        hnsw.add(k, &v).unwrap();
    }
    assert_eq!(hnsw.len(), 1_000);
    assert!(hnsw.memory_bytes() > 1_000 * 16);
}

/// A cache replaces and evicts all the time: after every vector of a
/// 2,000-entry index has been replaced five times, the graph holds no more
/// tombstones than live vectors and finds the exact nearest neighbour as
/// often as a graph that never saw a removal.
#[test]
fn churn_keeps_tombstones_bounded_and_recall_unchanged() {
    let mut vector = unit_vectors(0x5eed);
    const N: u64 = 2_000;
    let mut churned = VectorIndex::new(DIMS).unwrap();
    let mut exact = ExactIndex::new(DIMS);
    let mut current = vec![Vec::new(); N as usize];
    let mut max_tombstones = 0;
    for round in 0..6 {
        for k in 0..N {
            let v = vector();
            churned.add(k, &v).unwrap();
            exact.add(k, &v).unwrap();
            current[k as usize] = v.clone();
            if round > 0 && k % 10 == 0 {
                // Removals too, not only replacements.
                churned.remove(k).unwrap();
                exact.remove(k).unwrap();
                churned.add(k, &v).unwrap();
                exact.add(k, &v).unwrap();
            }
            max_tombstones = max_tombstones.max(churned.tombstones());
        }
    }
    assert_eq!(churned.len(), exact.len());
    assert!(
        max_tombstones <= N as usize,
        "tombstones reached {max_tombstones} with {N} live"
    );
    // The same live vectors, added once.
    let mut fresh = VectorIndex::new(DIMS).unwrap();
    for (k, v) in current.iter().enumerate() {
        fresh.add(k as u64, v).unwrap();
    }
    let queries: Vec<Vec<f32>> = (0..300).map(|_| vector()).collect();
    let found = |index: &VectorIndex| {
        queries
            .iter()
            .filter(|q| {
                let got = index.search(q, 1).unwrap();
                let want = exact.search(q, 1).unwrap();
                (got[0].similarity - want[0].similarity).abs() < 1e-4
            })
            .count()
    };
    // The default index rescores with the exact vectors it keeps: after the
    // rebuilds the churn caused, each reported similarity is still the
    // exact cosine of the key's current vector.
    for q in &queries {
        let got = churned.search(q, 3).unwrap();
        for g in &got {
            let want = dot(q, &current[g.key as usize]);
            assert!((g.similarity - want).abs() < 1e-5, "{g:?}: exact {want}");
        }
    }
    let (churned_found, fresh_found) = (found(&churned), found(&fresh));
    assert!(
        churned_found + queries.len() / 100 >= fresh_found,
        "recall@1 after churn {churned_found}/{n}, without {fresh_found}/{n}",
        n = queries.len()
    );
}

/// Each storage finds the exact nearest of a small set and reports its
/// similarity within the storage's precision; the search breadth can change
/// and a breadth of zero is refused.
#[test]
fn every_storage_finds_the_nearest_of_a_small_set() {
    let vectors: Vec<Vec<f32>> = std::iter::repeat_with(unit_vectors(0xf16))
        .take(200)
        .collect();
    let mut exact = ExactIndex::new(DIMS);
    for (k, v) in vectors.iter().enumerate() {
        exact.add(k as u64, v).unwrap();
    }
    for (settings, tolerance) in [
        (IndexSettings::new(Quantization::F32, 32), 1e-5),
        (IndexSettings::new(Quantization::F16, 32), 5e-3),
        (IndexSettings::new(Quantization::I8, 32), 5e-2),
        // Sign bits only rank; the best 8 are rescored exactly.
        (IndexSettings::new(Quantization::B1, 32).rescored(8), 1e-5),
        // Another graph shape.
        (
            IndexSettings::new(Quantization::I8, 32).graph(32, 256),
            5e-2,
        ),
    ] {
        let quantization = settings.quantization;
        let mut hnsw = VectorIndex::with_settings(DIMS, settings).unwrap();
        for (k, v) in vectors.iter().enumerate() {
            hnsw.add(k as u64, v).unwrap();
        }
        hnsw.set_expansion_search(128);
        for (k, v) in vectors.iter().enumerate().step_by(7) {
            let got = hnsw.search(v, 1).unwrap()[0];
            let want = exact.search(v, 1).unwrap()[0];
            assert_eq!(got.key, k as u64, "{quantization:?}");
            assert!(
                (got.similarity - want.similarity).abs() <= tolerance,
                "{quantization:?}: {} vs {}",
                got.similarity,
                want.similarity
            );
        }
    }
    assert!(VectorIndex::with_settings(DIMS, IndexSettings::new(Quantization::F32, 0)).is_err());
    // Sign bits without rescoring would report no similarity at all.
    assert!(VectorIndex::with_settings(DIMS, IndexSettings::new(Quantization::B1, 32)).is_err());
    for (connectivity, expansion_add) in [(1, 128), (16, 0)] {
        let settings = IndexSettings::new(Quantization::F32, 32).graph(connectivity, expansion_add);
        assert!(VectorIndex::with_settings(DIMS, settings).is_err());
    }
}

/// A quantized graph's best candidates rescored with the exact vectors kept
/// beside it: every similarity reported is the exact cosine (the learned
/// thresholds decide on differences of 0.005), where the i8 graph's own is
/// off by more than that; and the exact nearest is found, ranked first.
#[test]
fn rescoring_reports_exact_similarities() {
    let vectors: Vec<Vec<f32>> = std::iter::repeat_with(unit_vectors(0x18))
        .take(300)
        .collect();
    let queries: Vec<Vec<f32>> = std::iter::repeat_with(unit_vectors(0x81))
        .take(100)
        .collect();
    let mut exact = ExactIndex::new(DIMS);
    let settings = IndexSettings::new(Quantization::I8, 128).rescored(8);
    let mut hnsw = VectorIndex::with_settings(DIMS, settings).unwrap();
    for (k, v) in vectors.iter().enumerate() {
        hnsw.add(k as u64, v).unwrap();
        exact.add(k as u64, v).unwrap();
    }
    assert!(hnsw.exact_bytes() >= vectors.len() * DIMS * 4);
    let largest_error = |hnsw: &VectorIndex| {
        queries
            .iter()
            .flat_map(|q| {
                let got = hnsw.search(q, 4).unwrap();
                assert_eq!(got.len(), 4);
                got.into_iter()
                    .map(|g| (g.similarity - dot(q, &vectors[g.key as usize])).abs())
                    .collect::<Vec<_>>()
            })
            .fold(0f32, f32::max)
    };
    assert!(largest_error(&hnsw) < 1e-6, "{}", largest_error(&hnsw));
    for q in &queries {
        let got = hnsw.search(q, 4).unwrap();
        assert!(got.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        assert_eq!(got[0].key, exact.search(q, 1).unwrap()[0].key);
    }
    // The graph's own similarities, for comparison: off by more than a
    // step of the thresholds' grid.
    hnsw.set_rescore(0);
    assert!(largest_error(&hnsw) > 5e-3, "{}", largest_error(&hnsw));
    // Sign bits rescored: exact too, and the nearest is found.
    let settings = IndexSettings::new(Quantization::B1, 128).rescored(16);
    let mut bits = VectorIndex::with_settings(DIMS, settings).unwrap();
    for (k, v) in vectors.iter().enumerate() {
        bits.add(k as u64, v).unwrap();
    }
    assert!(largest_error(&bits) < 1e-6, "{}", largest_error(&bits));
    // One-bit storage is never left unrescored.
    bits.set_rescore(0);
    assert!(largest_error(&bits) < 1e-6, "{}", largest_error(&bits));
    // An f32 graph keeps no copies: its similarities are exact already.
    let f32_graph =
        VectorIndex::with_settings(DIMS, IndexSettings::new(Quantization::F32, 64).rescored(8))
            .unwrap();
    assert_eq!(f32_graph.exact_bytes(), 0);
}

// ------------------------------------------------ the flat one-bit index

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// After any adds (replacements included) and removes, the flat index
    /// holds the same keys as brute force, and with at least as many
    /// candidates as live entries (48, the most keys the operations use)
    /// its answer is brute force's: the same similarities, each the exact
    /// cosine of a live key's current vector.
    #[test]
    fn flat_matches_brute_force(ops in ops(), k in 1usize..6) {
        let mut flat = FlatBinaryIndex::new(DIMS, 48).unwrap();
        let mut exact = ExactIndex::new(DIMS);
        let mut current: std::collections::HashMap<u64, Vec<f32>> = Default::default();
        for op in ops {
            match op {
                Op::Add(key, v) => {
                    flat.add(key, &v).unwrap();
                    exact.add(key, &v).unwrap();
                    current.insert(key, v);
                }
                Op::Remove(key) => {
                    prop_assert_eq!(flat.remove(key).unwrap(), exact.remove(key).unwrap());
                    current.remove(&key);
                }
                Op::Search(q) => {
                    let got = flat.search(&q, k).unwrap();
                    let want = exact.search(&q, k).unwrap();
                    prop_assert_eq!(got.len(), want.len());
                    for (g, w) in got.iter().zip(&want) {
                        prop_assert!((g.similarity - w.similarity).abs() < 1e-5, "{:?} vs {:?}", got, want);
                        // The key is live and the similarity is its vector's.
                        let v = current.get(&g.key);
                        prop_assert!(v.is_some(), "{} is not live", g.key);
                        prop_assert!((dot(&q, v.unwrap()) - g.similarity).abs() < 1e-5);
                    }
                }
            }
            prop_assert_eq!(flat.len(), exact.len());
        }
    }

    /// With fewer candidates than entries, the flat index's candidates are
    /// those of smallest Hamming distance: its best is the exact best of
    /// the `rescore` entries nearest in signs (the model: sort by sign
    /// distance, rescore that many exactly). Removals and reinserts keep
    /// every key's bits right.
    #[test]
    fn flat_rescores_the_nearest_in_signs(
        vectors in prop::collection::vec(unit(), 1..80),
        removed in prop::collection::vec(0usize..80, 0..20),
        q in unit(),
        rescore in 1usize..12,
    ) {
        let mut flat = FlatBinaryIndex::new(DIMS, rescore).unwrap();
        let mut live: Vec<(u64, Vec<f32>)> = Vec::new();
        for (i, v) in vectors.iter().enumerate() {
            flat.add(i as u64, v).unwrap();
            live.push((i as u64, v.clone()));
        }
        for r in removed {
            let key = r as u64;
            let had = live.iter().position(|(k, _)| *k == key);
            prop_assert_eq!(flat.remove(key).unwrap(), had.is_some());
            if let Some(at) = had {
                live.swap_remove(at);
            }
        }
        let got = flat.search(&q, 1).unwrap();
        prop_assert_eq!(got.len(), usize::from(!live.is_empty()));
        let Some(got) = got.first() else { return Ok(()) };
        let signs = |v: &[f32]| v.iter().map(|&x| x > 0.0).collect::<Vec<_>>();
        let qs = signs(&q);
        let distance = |v: &[f32]| signs(v).iter().zip(&qs).filter(|(a, b)| a != b).count();
        let mut by_distance: Vec<(usize, f32)> =
            live.iter().map(|(_, v)| (distance(v), dot(&q, v))).collect();
        by_distance.sort_by_key(|&(d, _)| d);
        // Entries tied with the last candidate's distance may be either in
        // or out: the best over the sure ones is a lower bound, the best
        // over the tied ones too an upper bound.
        let cut = by_distance[rescore.min(by_distance.len()) - 1].0;
        let best = |pred: &dyn Fn(usize) -> bool| {
            by_distance.iter().filter(|(d, _)| pred(*d)).map(|&(_, s)| s).fold(f32::MIN, f32::max)
        };
        let (low, high) = (best(&|d| d < cut), best(&|d| d <= cut));
        prop_assert!(got.similarity <= high + 1e-5, "{} above {}", got.similarity, high);
        prop_assert!(got.similarity >= low - 1e-5, "{} below {}", got.similarity, low);
        let v = &live.iter().find(|(k, _)| *k == got.key).unwrap().1;
        prop_assert!((dot(&q, v) - got.similarity).abs() < 1e-5);
    }
}

/// 384 and 768 dimensions (6 and 12 words of signs, the unrolled scans) and
/// 100 (the general scan, a partial word): with only 2 candidates each
/// vector is its own nearest, found first (so the scan is right in every
/// block), and after a swap-remove of the first entry the moved last entry
/// still is; a replaced key moves, it is not copied.
#[test]
fn flat_finds_each_vector_itself_at_any_width() {
    for dims in [100usize, 384, 768] {
        let mut seed = dims as u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let vectors: Vec<Vec<f32>> = (0..600)
            .map(|_| {
                let mut v: Vec<f32> = (0..dims).map(|_| next()).collect();
                normalize(&mut v).unwrap();
                v
            })
            .collect();
        let mut flat = FlatBinaryIndex::new(dims, 2).unwrap();
        for (k, v) in vectors.iter().enumerate() {
            flat.add(k as u64, v).unwrap();
        }
        let check = |flat: &FlatBinaryIndex, k: usize| {
            let got = flat.search(&vectors[k], 1).unwrap()[0];
            assert_eq!(got.key, k as u64, "{dims} dimensions");
            assert!(got.similarity > 0.9999, "{dims}: {got:?}");
        };
        for k in (0..vectors.len()).step_by(37) {
            check(&flat, k);
        }
        assert!(flat.remove(0).unwrap());
        assert!(!flat.remove(0).unwrap());
        check(&flat, vectors.len() - 1);
        assert_eq!(flat.len(), vectors.len() - 1);
        // Replacing a vector moves its key, not a second copy.
        flat.add(5, &vectors[7]).unwrap();
        assert_eq!(flat.len(), vectors.len() - 1);
        let got = flat.search(&vectors[7], 2).unwrap();
        let mut keys: Vec<u64> = got.iter().map(|n| n.key).collect();
        keys.sort_unstable();
        assert_eq!(keys, [5, 7], "{dims} dimensions");
        assert!(flat.memory_bytes() >= flat.len() * (dims * 4 + dims / 8));
    }
    assert!(FlatBinaryIndex::new(0, 8).is_err());
    assert!(FlatBinaryIndex::new(8, 0).is_err());
    let mut flat = FlatBinaryIndex::new(4, 8).unwrap();
    assert!(flat.add(1, &[1.0, 0.0]).is_err());
    assert!(flat.add(1, &[f32::NAN, 0.0, 0.0, 0.0]).is_err());
    assert!(flat.search(&[1.0], 1).is_err());
    assert!(flat.search(&[1.0, 0.0, 0.0, 0.0], 1).unwrap().is_empty());
}
