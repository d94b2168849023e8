//! `SemanticCache` against a plain model (a list with last-use times):
//! scope isolation, least-recently-used eviction, the fixed-threshold
//! decision, and `report_wrong`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use stratum_semantic::{
    CacheError, EntryId, HitPolicy, Lookup, Scope, ScopeDigest, SemanticCache, SemanticCacheConfig,
    ThresholdConfig, dot, normalize,
};

const DIMS: usize = 8;
const CAPACITY: usize = 6;
const THRESHOLD: f32 = 0.8;

fn scope(i: u8) -> ScopeDigest {
    // Scopes that differ in one field each: tenant, model, parameters.
    match i {
        0 => Scope::model("m").tenant("a").digest(),
        1 => Scope::model("m").tenant("b").digest(),
        2 => Scope::model("n").tenant("a").digest(),
        _ => Scope::model("m").tenant("a").parameters("t=1").digest(),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, Vec<f32>),
    Lookup(u8, Vec<f32>),
    Remove(usize),
}

fn unit() -> impl Strategy<Value = Vec<f32>> {
    // Coarse coordinates, so near-duplicates and exact repeats are common.
    prop::collection::vec(-2i8..=2, DIMS).prop_filter_map("no direction", |c| {
        let mut v: Vec<f32> = c.into_iter().map(f32::from).collect();
        normalize(&mut v).ok()?;
        Some(v)
    })
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (0u8..4, unit()).prop_map(|(s, v)| Op::Insert(s, v)),
        3 => (0u8..4, unit()).prop_map(|(s, v)| Op::Lookup(s, v)),
        1 => (0usize..64).prop_map(Op::Remove),
    ];
    prop::collection::vec(op, 1..120)
}

struct ModelEntry {
    id: EntryId,
    scope: u8,
    vector: Vec<f32>,
    last_used: u64,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn cache_matches_the_model(ops in ops()) {
        let cache = SemanticCache::new(SemanticCacheConfig::new(
            DIMS, CAPACITY, HitPolicy::Fixed { similarity: THRESHOLD },
        )).unwrap();
        let mut model: Vec<ModelEntry> = Vec::new();
        let mut ids: Vec<EntryId> = Vec::new();
        let mut now = 0u64;
        for op in ops {
            now += 1;
            match op {
                Op::Insert(s, v) => {
                    // The value says where it was put, so a crossed scope shows.
                    let id = cache.insert(scope(s), v.clone(), (s, v.clone())).unwrap();
                    ids.push(id);
                    model.push(ModelEntry { id, scope: s, vector: v, last_used: now });
                    if model.len() > CAPACITY {
                        let oldest = model.iter().enumerate().min_by_key(|(_, e)| e.last_used).unwrap().0;
                        model.remove(oldest);
                    }
                }
                Op::Remove(i) => {
                    let Some(&id) = ids.get(i) else { continue };
                    let present = model.iter().position(|e| e.id == id);
                    prop_assert_eq!(cache.remove(id).unwrap(), present.is_some());
                    if let Some(p) = present { model.remove(p); }
                }
                Op::Lookup(s, q) => {
                    let best = model
                        .iter_mut()
                        .filter(|e| e.scope == s)
                        .map(|e| (dot(&q, &e.vector), e))
                        .max_by(|a, b| a.0.total_cmp(&b.0));
                    let got = cache.lookup(scope(s), &q).unwrap();
                    match (best, got) {
                        (None, Lookup::Miss(None)) => {}
                        (Some((sim, e)), Lookup::Hit { nearest, value }) => {
                            prop_assert!(sim >= THRESHOLD - 1e-5, "hit at {}", sim);
                            prop_assert!((nearest.similarity - sim).abs() < 1e-4);
                            prop_assert_eq!(value.0, s, "answered from another scope");
                            // Ties: bump the entry the cache chose.
                            let chosen = nearest.entry;
                            if chosen == e.id { e.last_used = now; } else {
                                let other = model.iter_mut().find(|m| m.id == chosen);
                                prop_assert!(other.is_some(), "hit on an evicted entry");
                                other.unwrap().last_used = now;
                            }
                        }
                        (Some((sim, _)), Lookup::Miss(Some(nearest))) => {
                            prop_assert!(sim < THRESHOLD + 1e-5, "missed at {}", sim);
                            prop_assert!((nearest.similarity - sim).abs() < 1e-4);
                        }
                        (best, got) => prop_assert!(false, "model {:?}, cache {:?}", best.map(|b| b.0), got),
                    }
                }
            }
            prop_assert_eq!(cache.len(), model.len());
            prop_assert!(cache.len() <= CAPACITY);
        }
    }
}

#[test]
fn report_wrong_tightens_only_that_entry() {
    let cache = SemanticCache::new(SemanticCacheConfig::new(
        2,
        10,
        HitPolicy::Fixed { similarity: 0.5 },
    ))
    .unwrap();
    let s = Scope::model("m").digest();
    let a = cache.insert(s, vec![1.0, 0.0], "a").unwrap();
    let b = cache.insert(s, vec![-1.0, 0.0], "b").unwrap();
    let Lookup::Hit { nearest, .. } = cache.lookup(s, &[1.0, 0.5]).unwrap() else {
        panic!()
    };
    assert_eq!(nearest.entry, a);
    cache.report_wrong(a, nearest.similarity).unwrap();
    // That lookup and anything less similar now miss; a closer one still hits.
    assert!(matches!(
        cache.lookup(s, &[1.0, 0.5]).unwrap(),
        Lookup::Miss(Some(_))
    ));
    assert!(matches!(
        cache.lookup(s, &[1.0, 0.6]).unwrap(),
        Lookup::Miss(Some(_))
    ));
    assert!(matches!(
        cache.lookup(s, &[1.0, 0.1]).unwrap(),
        Lookup::Hit { .. }
    ));
    // The other entry is untouched.
    let Lookup::Hit { nearest, .. } = cache.lookup(s, &[-1.0, 0.5]).unwrap() else {
        panic!()
    };
    assert_eq!(nearest.entry, b);
    assert_eq!(cache.stats().wrong_reported, 1);
}

/// A tightened entry's labels, restored into a new cache (a restart), keep
/// it tightened; `clear` empties the index but keeps the learned
/// cache-wide threshold.
#[test]
fn restored_labels_keep_an_entry_tightened() {
    let config = SemanticCacheConfig::new(2, 10, HitPolicy::Fixed { similarity: 0.5 });
    let before = SemanticCache::new(config).unwrap();
    let s = Scope::model("m").digest();
    let a = before.insert(s, vec![1.0, 0.0], "a").unwrap();
    let Lookup::Hit { nearest, .. } = before.lookup(s, &[1.0, 0.5]).unwrap() else {
        panic!()
    };
    before.report_wrong(a, nearest.similarity).unwrap();
    let labels = before.labels(a).unwrap();
    assert_eq!(labels.floor, Some(nearest.similarity));

    let after = SemanticCache::new(config).unwrap();
    let a2 = after.insert(s, vec![1.0, 0.0], "a").unwrap();
    assert!(matches!(
        after.lookup(s, &[1.0, 0.5]).unwrap(),
        Lookup::Hit { .. }
    ));
    assert!(after.restore(a2, &labels).unwrap());
    assert!(matches!(
        after.lookup(s, &[1.0, 0.5]).unwrap(),
        Lookup::Miss(Some(_))
    ));
    assert_eq!(after.labels(a2), Some(labels.clone()));
    // An entry not held: nothing restored.
    after.remove(a2).unwrap();
    assert!(!after.restore(a2, &labels).unwrap());
    assert!(after.labels(a2).is_none());

    let learning = SemanticCache::new(SemanticCacheConfig::new(
        2,
        10,
        HitPolicy::Learned(ThresholdConfig::default()),
    ))
    .unwrap();
    learning.insert(s, vec![1.0, 0.0], "a").unwrap();
    learning
        .calibrate((0..2_000).map(|i| (i as f32 / 2_000.0, i > 1_000)))
        .unwrap();
    let learned = learning.stats().learned_threshold;
    assert!(learned.is_some());
    learning.clear();
    assert!(learning.is_empty());
    assert_eq!(learning.lookup(s, &[1.0, 0.0]).unwrap(), Lookup::Miss(None));
    assert_eq!(learning.stats().learned_threshold, learned);
}

#[test]
fn learned_policy_answers_nothing_until_calibrated_then_meets_its_target() {
    let cache = SemanticCache::new(SemanticCacheConfig::new(
        2,
        10,
        HitPolicy::Learned(ThresholdConfig::with_target_error(0.05)),
    ))
    .unwrap();
    let s = Scope::model("m").digest();
    let a = cache.insert(s, vec![1.0, 0.0], "a").unwrap();
    assert!(matches!(
        cache.lookup(s, &[1.0, 0.2]).unwrap(),
        Lookup::Miss(Some(_))
    ));
    // Right above 0.9, wrong below: the learned threshold lands near 0.9.
    cache
        .calibrate((0..4_000).map(|i| {
            let sim = i as f32 / 4_000.0;
            (sim, sim >= 0.9)
        }))
        .unwrap();
    let stats = cache.stats();
    let t = stats.learned_threshold.unwrap();
    assert!((0.85..=0.91).contains(&t), "{t}");
    assert!(stats.estimated_error_rate.unwrap() <= 0.05);
    assert!(matches!(
        cache.lookup(s, &[1.0, 0.2]).unwrap(),
        Lookup::Hit { .. }
    ));
    assert!(matches!(
        cache.lookup(s, &[1.0, 1.0]).unwrap(),
        Lookup::Miss(Some(_))
    ));
    // Observations of one entry feed the shared threshold too.
    cache.observe(a, 0.99, true).unwrap();
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn bad_input_is_a_typed_error() {
    let cache =
        SemanticCache::<()>::new(SemanticCacheConfig::new(3, 10, HitPolicy::default())).unwrap();
    let s = Scope::model("m").digest();
    assert!(matches!(
        cache.insert(s, vec![1.0], ()),
        Err(CacheError::Dimensions {
            expected: 3,
            got: 1
        })
    ));
    assert!(matches!(
        cache.insert(s, vec![0.0; 3], ()),
        Err(CacheError::Degenerate)
    ));
    assert!(matches!(
        cache.lookup(s, &[f32::NAN, 0.0, 0.0]),
        Err(CacheError::Degenerate)
    ));
    assert!(matches!(
        cache.report_wrong(EntryId(0), 1.5),
        Err(CacheError::Similarity(_))
    ));
    for config in [
        SemanticCacheConfig::new(0, 10, HitPolicy::default()),
        SemanticCacheConfig::new(3, 0, HitPolicy::default()),
        SemanticCacheConfig::new(3, 10, HitPolicy::Fixed { similarity: 2.0 }),
        SemanticCacheConfig::new(
            3,
            10,
            HitPolicy::Learned(ThresholdConfig::with_target_error(0.0)),
        ),
    ] {
        assert!(
            matches!(SemanticCache::<()>::new(config), Err(CacheError::Config(_))),
            "{config:?}"
        );
    }
}

#[test]
fn scope_digest_separates_fields() {
    let a = Scope::model("ab").parameters("c").digest();
    let b = Scope::model("a").parameters("bc").digest();
    assert_ne!(a, b);
    assert_ne!(
        Scope::model("m").tenant("x").digest(),
        Scope::model("m").tools("x").digest()
    );
    assert_eq!(
        Scope::model("m").tenant("x").digest(),
        Scope::model("m").tenant("x").digest()
    );
}
