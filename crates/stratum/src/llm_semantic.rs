//! The prompt cache's semantic tier: a request's last user turn embedded and
//! looked up among cached responses of the same scope (provider and model,
//! parameters, system prompt and earlier turns, tools, tenant), the vectors
//! stored with the responses in the store and the index rebuilt from them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, DateTime, doc};
use parking_lot::Mutex;
use stratum_models::{CacheKeyRequest, CachedResponse, Document, ResponseCacheEntry, Role};
use stratum_semantic::{
    Embedder, EntryId, Lookup, Nearest, Scope, ScopeDigest, SemanticCache, SemanticCacheConfig,
    SemanticStats, TierConfig,
};
use tokio::sync::OnceCell;

use crate::llm::{
    SEMANTIC_EMBED_DURATION, SEMANTIC_EMBED_FAILURES, SEMANTIC_ENTRIES, SEMANTIC_ERROR_RATE,
    SEMANTIC_LABELS, SEMANTIC_LOOKUP_DURATION, SEMANTIC_LOOKUPS, SEMANTIC_WRONG_REPORTS,
    SemanticMatch,
};
use crate::stack::Layers;
use crate::{ConfigError, Filter, Order, Query, Update};

/// The field of a response cache document that holds its scope digest and
/// vector.
pub(crate) const FIELD: &str = "semantic";
/// The field naming the vector's space (the store takes no dotted paths in
/// a filter, so it sits beside [`FIELD`]).
pub(crate) const SPACE_FIELD: &str = "semantic_space";

/// How many expired nearest entries one lookup drops before it gives up.
const EXPIRED_RETRIES: usize = 4;

/// What one request's lookup found.
pub(crate) enum Found {
    /// A cached response of the same scope answers.
    Hit {
        entry: Arc<ResponseCacheEntry>,
        matched: SemanticMatch,
    },
    /// Nothing answers; the probe is kept to add the provider's answer.
    Miss(Probe),
}

/// A request's scope and vector, and the nearest entry that did not answer.
pub(crate) struct Probe {
    scope: ScopeDigest,
    vector: Vec<f32>,
    nearest: Option<(Nearest, Arc<ResponseCacheEntry>)>,
}

/// The semantic tier of one prompt cache.
pub(crate) struct Tier {
    cache: SemanticCache<Arc<ResponseCacheEntry>>,
    embedder: Arc<dyn Embedder>,
    /// The embedder's vector space: only vectors stored under it are loaded.
    space: String,
    label_misses: bool,
    /// Cache key -> entry, so a replaced or expired response drops its vector.
    keys: Mutex<HashMap<String, EntryId>>,
    /// Set once the index has been rebuilt from the store.
    loaded: OnceCell<()>,
    layers: Arc<Layers>,
}

impl std::fmt::Debug for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tier")
            .field("space", &self.space)
            .field("entries", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// The scope of `request` for `tenant` and the text to embed: the last
/// message, when it is the user's. Everything else must match exactly, so
/// the earlier turns go into the scope with the system prompt.
fn scope_and_text<'r>(
    request: &'r CacheKeyRequest<'_>,
    tenant: &str,
) -> Option<(ScopeDigest, &'r str)> {
    let (last, before) = request.messages.split_last()?;
    let text = last.content.trim();
    if last.role != Role::User || text.is_empty() {
        return None;
    }
    let mut params = request.params.clone();
    let system = params.system.take();
    let tools = std::mem::take(&mut params.tools);
    let tool_choice = params.tool_choice.take();
    let model = format!("{}\n{}", request.provider.trim(), request.model.trim());
    // Serialising plain data (strings, numbers, JSON values) cannot fail; a
    // failure would only make the scope coarser, so it is refused instead.
    let parameters = serde_json::to_string(&params).ok()?;
    let system_prompt = serde_json::to_string(&(system, before)).ok()?;
    let tools = serde_json::to_string(&(tools, tool_choice)).ok()?;
    let scope = Scope::model(&model)
        .parameters(&parameters)
        .system_prompt(&system_prompt)
        .tools(&tools)
        .tenant(tenant)
        .digest();
    Some((scope, text))
}

fn vector_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn vector_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn binary(bytes: Vec<u8>) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    })
}

impl Tier {
    /// Builds the embedder (loading a local model) and an empty index; the
    /// index is filled from the store on first use.
    pub(crate) fn new(config: &TierConfig, layers: Arc<Layers>) -> Result<Tier, ConfigError> {
        let embedder = config.embedder.build().map_err(|e| e.within("embedder"))?;
        let cache = SemanticCache::new(SemanticCacheConfig::new(
            embedder.dimensions(),
            config.capacity,
            config.policy,
        ))
        .map_err(|e| ConfigError::invalid("", e.to_string()))?;
        Ok(Tier {
            cache,
            embedder,
            space: config.embedder.space(),
            label_misses: config.label_misses,
            keys: Mutex::new(HashMap::new()),
            loaded: OnceCell::new(),
            layers,
        })
    }

    fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        self.layers.in_scope(f)
    }

    async fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        if !self.embedder.runs_on_cpu() {
            return self.embedder.embed(text).await.map_err(|e| e.to_string());
        }
        // A local model computes for tens of milliseconds: off the runtime's
        // workers, on a thread where blocking is allowed.
        let embedder = Arc::clone(&self.embedder);
        let text = text.to_owned();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || handle.block_on(embedder.embed(&text)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Fills the index from the vectors stored with unexpired responses
    /// (the newest `capacity`), once; a failed read is retried on the next
    /// request.
    pub(crate) async fn ensure_loaded(&self, now: DateTime) {
        let result = self
            .loaded
            .get_or_try_init(|| async {
                let query = Query::new(Filter::eq(SPACE_FIELD, self.space.as_str()))
                    .sort("created_at", Order::Descending)
                    .limit(u64::try_from(self.cache.config().capacity).unwrap_or(u64::MAX));
                let documents = self
                    .layers
                    .call(
                        self.layers
                            .store
                            .find(ResponseCacheEntry::COLLECTION, &query),
                    )
                    .await?;
                // Oldest first, so the newest are the most recently used.
                for document in documents.into_iter().rev() {
                    self.load_one(&document, now);
                }
                self.in_scope(|| {
                    metrics::gauge!(SEMANTIC_ENTRIES).set(self.cache.len() as f64);
                });
                Ok::<(), crate::RepositoryError>(())
            })
            .await;
        if let Err(e) = result {
            tracing::debug!(
                kind = e.kind(),
                "the semantic index cannot be rebuilt yet; retried on the next request"
            );
        }
    }

    fn load_one(&self, document: &bson::Document, now: DateTime) {
        let Ok(stored) = document.get_document(FIELD) else {
            return;
        };
        let (Ok(scope), Ok(vector)) = (
            stored.get_binary_generic("scope"),
            stored.get_binary_generic("vector"),
        ) else {
            return;
        };
        let Ok(scope) = <[u8; 32]>::try_from(scope.as_slice()) else {
            return;
        };
        let Ok(entry) = bson::from_document::<ResponseCacheEntry>(document.clone()) else {
            return;
        };
        if entry.is_expired(now) {
            return;
        }
        self.add(
            ScopeDigest(scope),
            vector_from_bytes(vector),
            Arc::new(entry),
        );
    }

    /// Adds `entry` at `vector`, replacing the vector of an earlier response
    /// to the same request.
    fn add(&self, scope: ScopeDigest, vector: Vec<f32>, entry: Arc<ResponseCacheEntry>) {
        let key = entry.cache_key.as_str().to_owned();
        let mut keys = self.keys.lock();
        if let Some(old) = keys.remove(&key) {
            let _ = self.cache.remove(old);
        }
        match self.cache.insert(scope, vector, entry) {
            Ok(id) => {
                keys.insert(key, id);
            }
            Err(e) => tracing::debug!(error = %e, "a vector was refused by the semantic index"),
        }
        // Entries evicted for capacity leave their keys behind: sweep them
        // when they could outnumber the live ones.
        if keys.len() > 2 * self.cache.config().capacity {
            keys.retain(|_, id| self.cache.contains(*id));
        }
    }

    /// Drops the vector of `entry` (expired, or replaced).
    fn drop_entry(&self, id: EntryId, entry: &ResponseCacheEntry) {
        let _ = self.cache.remove(id);
        let mut keys = self.keys.lock();
        if keys.get(entry.cache_key.as_str()) == Some(&id) {
            keys.remove(entry.cache_key.as_str());
        }
    }

    /// Embeds the request's last user turn and looks it up in its scope.
    /// `None` when the request has no user turn last, or the embedder
    /// failed (the caller asks the provider).
    pub(crate) async fn find(
        &self,
        request: &CacheKeyRequest<'_>,
        tenant: &str,
        now: DateTime,
    ) -> Option<Found> {
        let (scope, text) = scope_and_text(request, tenant)?;
        let started = Instant::now();
        let vector = match self.embed(text).await {
            Ok(v) => v,
            Err(error) => {
                self.in_scope(|| metrics::counter!(SEMANTIC_EMBED_FAILURES).increment(1));
                tracing::debug!(%error, "the embedder failed; asking the provider");
                return None;
            }
        };
        let embedded = started.elapsed();
        self.in_scope(|| metrics::histogram!(SEMANTIC_EMBED_DURATION).record(embedded));
        for _ in 0..EXPIRED_RETRIES {
            let started = Instant::now();
            let lookup = self.cache.lookup(scope, &vector);
            let elapsed = started.elapsed();
            self.in_scope(|| metrics::histogram!(SEMANTIC_LOOKUP_DURATION).record(elapsed));
            let (nearest, value) = match lookup {
                Ok(Lookup::Hit { nearest, value }) => (Some(nearest), Some(value)),
                Ok(Lookup::Miss(nearest)) => (nearest, None),
                Err(e) => {
                    tracing::debug!(error = %e, "the semantic lookup failed");
                    return None;
                }
            };
            let nearest_entry = match (nearest, &value) {
                (_, Some(v)) => Some(Arc::clone(v)),
                (Some(n), None) => self.cache.get(n.entry),
                (None, None) => None,
            };
            // An expired response is never served, nor compared with: its
            // vector goes, and the next nearest is looked at.
            if let (Some(n), Some(e)) = (nearest, &nearest_entry)
                && e.is_expired(now)
            {
                self.drop_entry(n.entry, e);
                self.in_scope(|| metrics::gauge!(SEMANTIC_ENTRIES).set(self.cache.len() as f64));
                continue;
            }
            if let (Some(n), Some(entry)) = (nearest, value) {
                self.in_scope(|| {
                    metrics::counter!(SEMANTIC_LOOKUPS, "outcome" => "hit").increment(1);
                });
                return Some(Found::Hit {
                    entry,
                    matched: SemanticMatch {
                        similarity: n.similarity,
                        entry: n.entry.0,
                    },
                });
            }
            self.in_scope(|| metrics::counter!(SEMANTIC_LOOKUPS, "outcome" => "miss").increment(1));
            return Some(Found::Miss(Probe {
                scope,
                vector,
                nearest: nearest.zip(nearest_entry),
            }));
        }
        self.in_scope(|| metrics::counter!(SEMANTIC_LOOKUPS, "outcome" => "miss").increment(1));
        Some(Found::Miss(Probe {
            scope,
            vector,
            nearest: None,
        }))
    }

    /// After the provider answered a miss: labels the lookup against its
    /// nearest entry (when `label_misses`), adds the answer to the index and
    /// returns what to store with the response (`$set` of [`FIELD`] and
    /// [`SPACE_FIELD`]).
    pub(crate) fn insert(&self, probe: Probe, entry: &Arc<ResponseCacheEntry>) -> Update {
        if self.label_misses
            && let Some((nearest, cached)) = &probe.nearest
        {
            let right = same_answer(&cached.response, &entry.response);
            let label = if right { "right" } else { "wrong" };
            if self
                .cache
                .observe(nearest.entry, nearest.similarity, right)
                .is_ok()
            {
                self.in_scope(|| {
                    metrics::counter!(SEMANTIC_LABELS, "label" => label).increment(1);
                });
                self.publish_error_rate();
            }
        }
        let stored = Update::new().set(SPACE_FIELD, self.space.as_str()).set(
            FIELD,
            doc! {
                "scope": binary(probe.scope.0.to_vec()),
                "vector": binary(vector_bytes(&probe.vector)),
            },
        );
        self.add(probe.scope, probe.vector, Arc::clone(entry));
        self.in_scope(|| metrics::gauge!(SEMANTIC_ENTRIES).set(self.cache.len() as f64));
        stored
    }

    fn publish_error_rate(&self) {
        if let Some(rate) = self.cache.stats().estimated_error_rate {
            self.in_scope(|| metrics::gauge!(SEMANTIC_ERROR_RATE).set(rate));
        }
    }

    /// The application found a semantic answer wrong: the entry tightens.
    pub(crate) fn report_wrong(&self, matched: &SemanticMatch) -> bool {
        let ok = self
            .cache
            .report_wrong(EntryId(matched.entry), matched.similarity)
            .is_ok();
        if ok {
            self.in_scope(|| metrics::counter!(SEMANTIC_WRONG_REPORTS).increment(1));
            self.publish_error_rate();
        }
        ok
    }

    /// Labelled observations for the cache-wide threshold.
    pub(crate) fn calibrate(
        &self,
        observations: impl IntoIterator<Item = (f32, bool)>,
    ) -> Result<(), stratum_semantic::CacheError> {
        self.cache.calibrate(observations)?;
        self.publish_error_rate();
        Ok(())
    }

    pub(crate) fn stats(&self) -> SemanticStats {
        self.cache.stats()
    }
}

/// Whether two responses say the same: text equal up to surrounding
/// whitespace, and the same tool calls.
fn same_answer(a: &CachedResponse, b: &CachedResponse) -> bool {
    a.content.trim() == b.content.trim() && a.tool_calls == b.tool_calls
}

#[cfg(test)]
mod tests {
    use stratum_models::{ChatMessage, RequestParams};

    use super::*;

    fn digest(messages: &[ChatMessage], params: &RequestParams, tenant: &str) -> ScopeDigest {
        let request = CacheKeyRequest {
            provider: "openai",
            model: "gpt-4o",
            messages,
            params,
        };
        #[allow(clippy::expect_used)] // every request here ends with a user turn
        scope_and_text(&request, tenant).expect("a user turn").0
    }

    #[test]
    fn the_scope_holds_everything_but_the_last_user_turn() {
        let params = RequestParams::default();
        let ask = |q: &str| vec![ChatMessage::system("Be brief."), ChatMessage::user(q)];
        let base = digest(&ask("What is the capital of Peru?"), &params, "a");
        // Another question in the same scope: the same partition.
        assert_eq!(base, digest(&ask("Peru's capital?"), &params, "a"));
        // Another tenant, temperature, system prompt or earlier turn: not.
        assert_ne!(base, digest(&ask("Peru's capital?"), &params, "b"));
        let hot = RequestParams {
            temperature: Some(0.7),
            ..RequestParams::default()
        };
        assert_ne!(base, digest(&ask("Peru's capital?"), &hot, "a"));
        let other_system = vec![ChatMessage::system("Be wordy."), ChatMessage::user("x")];
        assert_ne!(base, digest(&other_system, &params, "a"));
        let longer = vec![
            ChatMessage::system("Be brief."),
            ChatMessage::user("Hi"),
            ChatMessage::assistant("Hello"),
            ChatMessage::user("Peru's capital?"),
        ];
        assert_ne!(base, digest(&longer, &params, "a"));
    }

    #[test]
    fn only_a_last_user_turn_is_looked_up() {
        let params = RequestParams::default();
        let request = |messages| CacheKeyRequest {
            provider: "openai",
            model: "gpt-4o",
            messages,
            params: &params,
        };
        let prefill = [ChatMessage::user("Hi"), ChatMessage::assistant("The")];
        assert!(scope_and_text(&request(&prefill), "").is_none());
        let blank = [ChatMessage::user("  ")];
        assert!(scope_and_text(&request(&blank), "").is_none());
        let text = [ChatMessage::user("  Hi there ")];
        assert_eq!(
            scope_and_text(&request(&text), "").map(|s| s.1),
            Some("Hi there")
        );
    }

    #[test]
    fn vectors_round_trip_through_bytes() {
        let v = vec![0.25f32, -1.5, 3.0e-8, f32::MAX];
        assert_eq!(vector_from_bytes(&vector_bytes(&v)), v);
    }
}
