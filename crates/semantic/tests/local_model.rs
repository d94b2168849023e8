//! The local all-MiniLM-L6-v2 embedder (feature `local-model`): shape, unit
//! length, determinism, batch = one by one, and sentence-transformers' known
//! property that paraphrases are closer than unrelated sentences.
//!
//! Needs the weights (`cargo xtask fetch-model`); without them each test says
//! so and passes, unless `STRATUM_REQUIRE_MODEL=1`, where it fails.
#![cfg(feature = "local-model")]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use stratum_semantic::{LocalEmbedder, MINILM_DIMENSIONS, default_model_dir, dot};

fn model() -> Option<&'static LocalEmbedder> {
    static MODEL: OnceLock<Option<LocalEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = default_model_dir().unwrap();
            if !dir.join("model.safetensors").is_file() {
                assert!(
                    std::env::var_os("STRATUM_REQUIRE_MODEL").is_none(),
                    "no model in {}: run `cargo xtask fetch-model`",
                    dir.display()
                );
                eprintln!(
                    "skipped: no model in {} (`cargo xtask fetch-model`)",
                    dir.display()
                );
                return None;
            }
            Some(LocalEmbedder::from_dir(&dir).unwrap())
        })
        .as_ref()
}

#[test]
fn vectors_are_unit_length_and_deterministic() {
    let Some(m) = model() else { return };
    let texts = [
        "How do I reset my password?",
        "short",
        "A much longer sentence about the weather in Paris in spring.",
    ];
    let batch = m.embed_sync(&texts).unwrap();
    assert_eq!(batch.len(), 3);
    for (text, v) in texts.iter().zip(&batch) {
        assert_eq!(v.len(), MINILM_DIMENSIONS);
        assert!((dot(v, v) - 1.0).abs() < 1e-4);
        // Padding in a batch must not change a text's vector.
        let alone = &m.embed_sync(&[text]).unwrap()[0];
        assert!(dot(v, alone) > 0.9999, "{text}: {}", dot(v, alone));
    }
}

#[test]
fn paraphrases_are_closer_than_unrelated_sentences() {
    let Some(m) = model() else { return };
    let pairs = [
        (
            "What is the capital of Canada?",
            "Which city is Canada's capital?",
            "How do I bake sourdough bread?",
        ),
        (
            "How can I lose weight quickly?",
            "What is the fastest way to lose weight?",
            "Who wrote the novel War and Peace?",
        ),
        (
            "A man is playing a guitar.",
            "A person plays the guitar.",
            "The stock market fell sharply today.",
        ),
    ];
    for (a, paraphrase, unrelated) in pairs {
        let v = m.embed_sync(&[a, paraphrase, unrelated]).unwrap();
        let close = dot(&v[0], &v[1]);
        let far = dot(&v[0], &v[2]);
        assert!(
            close > 0.6 && far < 0.3 && close > far + 0.4,
            "{a}: paraphrase {close}, unrelated {far}"
        );
    }
}

/// Against an independent forward pass in numpy (tests/data/minilm_reference.py,
/// no torch: safetensors, the Python tokenizers and numpy), which wrote
/// tests/data/minilm_reference.json: the same BERT, pooling and normalisation
/// give the same vectors to float rounding.
#[test]
fn matches_an_independent_numpy_forward_pass() {
    let Some(m) = model() else { return };
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("data/minilm_reference.json")).unwrap();
    let texts: Vec<&str> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let got = m.embed_sync(&texts).unwrap();
    for ((text, want), got) in texts
        .iter()
        .zip(reference["vectors"].as_array().unwrap())
        .zip(&got)
    {
        let want: Vec<f32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let worst = want
            .iter()
            .zip(got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{text}: largest difference {worst}");
    }
}

#[test]
fn missing_files_are_a_model_error() {
    let dir = std::env::temp_dir().join("stratum-semantic-no-model");
    let _ = std::fs::create_dir_all(&dir);
    let error = LocalEmbedder::from_dir(&dir).unwrap_err();
    assert!(format!("{error}").contains("config.json"), "{error}");
}
