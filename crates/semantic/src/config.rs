//! `TierConfig`: the settings of a semantic tier in front of an exact cache
//! (which embedder, how a hit is decided, how many entries), plain serde data
//! that a host's configuration file embeds as one section.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stratum_core::ConfigError;

use crate::{EmbedError, Embedder, HitPolicy, HttpEmbedder, HttpEmbedderConfig, IndexConfig};

/// Which [`Embedder`] turns a request's text into a vector. In a file it is
/// one table chosen by `type`.
///
/// ```
/// use stratum_semantic::EmbedderConfig;
///
/// let local: EmbedderConfig = toml::from_str("type = \"local\"\n").unwrap();
/// assert_eq!(local, EmbedderConfig::Local { model_dir: None });
/// let http: EmbedderConfig = toml::from_str(
///     "type = \"http\"\nurl = \"http://127.0.0.1:8080/v1/embeddings\"\nmodel = \"m\"\ndimensions = 384\napi_key = \"sk-secret\"\n",
/// ).unwrap();
/// assert!(!format!("{http:?}").contains("sk-secret"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum EmbedderConfig {
    /// all-MiniLM-L6-v2 on the CPU (the `local-model` cargo feature; without
    /// it, building the embedder is refused with a [`ConfigError`]).
    Local {
        /// The folder holding `model.safetensors`, `config.json` and
        /// `tokenizer.json`. Default: where `cargo xtask fetch-model` puts it
        /// (`default_model_dir()`, `$STRATUM_MODEL_DIR` first).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model_dir: Option<PathBuf>,
    },
    /// An OpenAI-compatible `/v1/embeddings` endpoint ([`HttpEmbedder`]).
    Http(HttpEmbedderConfig),
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        EmbedderConfig::Local { model_dir: None }
    }
}

impl EmbedderConfig {
    /// Checks what can be checked without loading a model or reaching an
    /// endpoint: the URL, the dimensions and the timeout of `http`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            EmbedderConfig::Local { .. } => Ok(()),
            EmbedderConfig::Http(http) => match HttpEmbedder::new(http.clone()) {
                Ok(_) => Ok(()),
                Err(EmbedError::Config(e)) => Err(e),
                Err(e) => Err(ConfigError::invalid("", e.to_string())),
            },
        }
    }

    /// A name for the embedder's vector space: vectors stored under another
    /// name (another model, another length) are never compared with this
    /// embedder's. Holds no key and no URL.
    #[must_use]
    pub fn space(&self) -> String {
        match self {
            EmbedderConfig::Local { .. } => {
                format!("local:all-minilm-l6-v2:{}", LOCAL_DIMENSIONS)
            }
            EmbedderConfig::Http(http) => format!("http:{}:{}", http.model, http.dimensions),
        }
    }

    /// Builds the embedder: loads the local model (a [`ConfigError`] on
    /// `model_dir` when it is missing or the `local-model` feature is off),
    /// or checks the endpoint's settings.
    pub fn build(&self) -> Result<Arc<dyn Embedder>, ConfigError> {
        match self {
            EmbedderConfig::Http(http) => match HttpEmbedder::new(http.clone()) {
                Ok(e) => Ok(Arc::new(e)),
                Err(EmbedError::Config(e)) => Err(e),
                Err(e) => Err(ConfigError::invalid("", e.to_string())),
            },
            EmbedderConfig::Local { model_dir } => build_local(model_dir.as_ref()),
        }
    }
}

/// The local model's vector length (also without the feature, so the space
/// name does not depend on it).
const LOCAL_DIMENSIONS: usize = 384;

#[cfg(feature = "local-model")]
fn build_local(model_dir: Option<&PathBuf>) -> Result<Arc<dyn Embedder>, ConfigError> {
    let dir = model_dir
        .cloned()
        .or_else(crate::default_model_dir)
        .ok_or_else(|| {
            ConfigError::invalid(
                "model_dir",
                "is not set and no cache folder is known (HOME, XDG_CACHE_HOME and \
                 STRATUM_CACHE_DIR are all unset)",
            )
        })?;
    crate::LocalEmbedder::from_dir(&dir)
        .map(|e| Arc::new(e) as Arc<dyn Embedder>)
        .map_err(|e| {
            ConfigError::invalid(
                "model_dir",
                format!(
                    "{}: {e} (fetch it with `cargo xtask fetch-model`)",
                    dir.display()
                ),
            )
        })
}

#[cfg(not(feature = "local-model"))]
fn build_local(_model_dir: Option<&PathBuf>) -> Result<Arc<dyn Embedder>, ConfigError> {
    Err(ConfigError::invalid(
        "type",
        "`local` needs the `local-model` cargo feature of stratum-semantic \
         (`semantic-local` of stratum), which this build lacks",
    ))
}

/// A semantic tier's settings: the embedder, the hit policy and the most
/// entries held.
///
/// ```
/// use stratum_semantic::{HitPolicy, TierConfig};
///
/// let config: TierConfig = toml::from_str(
///     "capacity = 5000\npolicy = { type = \"learned\", target_error = 0.01 }\nembedder = { type = \"local\" }\n",
/// ).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.capacity, 5000);
/// assert!(matches!(config.policy, HitPolicy::Learned(t) if t.target_error == 0.01));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TierConfig {
    /// The embedder. Default `{ type = "local" }`.
    #[serde(default)]
    pub embedder: EmbedderConfig,
    /// How a hit is decided. Default `{ type = "learned", target_error =
    /// 0.02, confidence = 0.95, entry_observations = 256 }`: nothing is
    /// answered until labelled lookups show a threshold meeting the target.
    #[serde(default)]
    pub policy: HitPolicy,
    /// The most entries held in memory, over all scopes; the least recently
    /// used is evicted beyond it. Default 100,000.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// Whether a miss whose scope has a nearest entry is labelled once the
    /// provider has answered it: right when the fresh response equals the
    /// nearest entry's, else wrong (a different wording of the same answer
    /// counts as wrong, so the labels err towards answering less). Default
    /// `true`.
    #[serde(default = "default_label_misses")]
    pub label_misses: bool,
    /// The nearest-neighbour index each scope keeps. Default `{ type =
    /// "flat_binary", rescore = 256 }` (every entry's sign bits scanned, the
    /// 256 nearest rescored exactly); `{ type = "hnsw" }` is usearch's graph
    /// (docs/semantic.md, "Why these pieces").
    #[serde(default)]
    pub index: IndexConfig,
}

fn default_capacity() -> usize {
    100_000
}
fn default_label_misses() -> bool {
    true
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            embedder: EmbedderConfig::default(),
            policy: HitPolicy::default(),
            capacity: default_capacity(),
            label_misses: default_label_misses(),
            index: IndexConfig::default(),
        }
    }
}

impl TierConfig {
    /// Refuses a zero capacity, an invalid policy, index or embedder.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.embedder.validate().map_err(|e| e.within("embedder"))?;
        crate::SemanticCacheConfig::new(1, self.capacity, self.policy)
            .with_index(self.index)
            .validate()
    }
}
