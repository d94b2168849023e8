//! The prompt cache's semantic tier: a request's last user turn embedded and
//! looked up among cached responses of the same scope (provider and model,
//! parameters, system prompt and earlier turns, tools, tenant), the vectors
//! and what each entry learned stored with the responses in the store, the
//! index rebuilt from them, and kept in step with other processes' writes
//! through the handle's change stream.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bson::oid::ObjectId;
use bson::spec::BinarySubtype;
use bson::{Binary, Bson, DateTime, doc};
use parking_lot::Mutex;
use stratum_models::{CacheKeyRequest, CachedResponse, Document, ResponseCacheEntry, Role};
use stratum_semantic::threshold::{EntryLabels, Observations};
use stratum_semantic::{
    Embedder, EntryId, Lookup, Nearest, Scope, ScopeDigest, SemanticCache, SemanticCacheConfig,
    SemanticStats, TierConfig,
};

use crate::llm::{
    SEMANTIC_EMBED_DURATION, SEMANTIC_EMBED_FAILURES, SEMANTIC_ENTRIES, SEMANTIC_ERROR_RATE,
    SEMANTIC_LABELS, SEMANTIC_LOOKUP_DURATION, SEMANTIC_LOOKUPS, SEMANTIC_WRONG_REPORTS,
    SemanticMatch,
};
use crate::stack::Layers;
use crate::{ConfigError, Filter, Order, Query, RepositoryError, Update};

/// The field of a response cache document that holds its scope digest and
/// vector.
pub(crate) const FIELD: &str = "semantic";
/// The field naming the vector's space (the store takes no dotted paths in
/// a filter, so it sits beside [`FIELD`]; the `semantic_space_created_at`
/// index of `ResponseCacheEntry` serves the rebuild's query on it).
pub(crate) const SPACE_FIELD: &str = "semantic_space";
/// The field holding what the entry learned: `{observations: <binary, five
/// bytes each>, floor: <double or null>}` (`EntryLabels`). Beside
/// [`FIELD`] so a label is written without rewriting the vector.
pub(crate) const LABELS_FIELD: &str = "semantic_labels";

/// The collection holding the labels of `PromptCache::calibrate`: one
/// document per distinct labelled set and vector space, `{_id: <the set's
/// digest, hex>, space, observations: <binary: the counts per grid slot,
/// `Observations::to_bytes`>, labels: <how many>}`. Read back by the first
/// rebuild, so a restart keeps the calibration; calibrating again with the
/// same set adds nothing (its digest is known).
pub(crate) const CALIBRATIONS: &str = "llm_semantic_calibrations";

/// Changed responses remembered for the next lookup; beyond, the index is
/// rebuilt instead.
#[cfg(feature = "mongodb")]
const MAX_PENDING: usize = 65_536;
/// Changed responses read by one query.
const READ_BATCH: usize = 1_000;

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

/// Which index entry holds each stored response, by cache key (a new
/// answer to the same request replaces the old one's vector) and by
/// document id (a change event names only the id).
#[derive(Default)]
struct Held {
    by_key: HashMap<String, EntryId>,
    by_document: HashMap<ObjectId, EntryId>,
}

/// Changes of the response collection heard on the change stream, not yet
/// applied to the index (applied on the next semantic lookup).
#[derive(Default)]
struct Pending {
    documents: HashSet<ObjectId>,
    /// Anything may have changed: the index is rebuilt.
    everything: bool,
}

/// The semantic tier of one prompt cache.
pub(crate) struct Tier {
    cache: SemanticCache<Arc<ResponseCacheEntry>>,
    embedder: Arc<dyn Embedder>,
    /// The embedder's vector space: only vectors stored under it are loaded.
    space: String,
    label_misses: bool,
    held: Mutex<Held>,
    /// Whether the index has been rebuilt from the store.
    loaded: AtomicBool,
    /// Held while the index is rebuilt or catches up, so one request does it.
    syncing: tokio::sync::Mutex<()>,
    /// Filled by the change-stream listener.
    pending: Arc<Mutex<Pending>>,
    /// The digests of the calibrations counted in the cache-wide threshold
    /// (given to `calibrate` or read back from [`CALIBRATIONS`]), so none
    /// is counted twice.
    calibrations: Mutex<HashSet<String>>,
    /// The index was rebuilt before the change stream was open: writes
    /// between the rebuild's read and the stream's opening were not heard,
    /// so it is rebuilt again once the stream is open.
    rebuild_when_open: AtomicBool,
    /// Kept alive here: the handle's coherence holds it weakly.
    #[cfg(feature = "mongodb")]
    _listener: Option<Arc<crate::watch::Listener>>,
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

/// `labels` as stored in [`LABELS_FIELD`].
fn labels_to_bson(labels: &EntryLabels) -> Bson {
    Bson::Document(doc! {
        "observations": binary(labels.observations_to_bytes()),
        "floor": labels.floor.map_or(Bson::Null, |f| Bson::Double(f64::from(f))),
    })
}

/// The labels stored in `document`'s [`LABELS_FIELD`]; `None` when there
/// are none or they cannot be read (then the entry starts afresh).
fn labels_from(document: &bson::Document) -> Option<EntryLabels> {
    let stored = document.get_document(LABELS_FIELD).ok()?;
    let observations = stored.get_binary_generic("observations").ok()?;
    // Stored from an f32, so narrowing it back is exact.
    #[allow(clippy::cast_possible_truncation)]
    let floor = stored.get_f64("floor").ok().map(|f| f as f32);
    match EntryLabels::from_bytes(observations, floor) {
        Ok(labels) => Some(labels),
        Err(e) => {
            tracing::debug!(error = %e, "an entry's stored labels were not read");
            None
        }
    }
}

/// What a stored response document holds for the tier.
struct Stored {
    entry: ResponseCacheEntry,
    /// Its scope and vector, when stored under this tier's space.
    vector: Option<(ScopeDigest, Vec<f32>)>,
    labels: Option<EntryLabels>,
}

impl Tier {
    /// Builds the embedder (loading a local model) and an empty index; the
    /// index is filled from the store on first use.
    pub(crate) fn new(config: &TierConfig, layers: Arc<Layers>) -> Result<Tier, ConfigError> {
        let embedder = config.embedder.build().map_err(|e| e.within("embedder"))?;
        let cache = SemanticCache::new(
            SemanticCacheConfig::new(embedder.dimensions(), config.capacity, config.policy)
                .with_index(config.index),
        )
        .map_err(|e| ConfigError::invalid("", e.to_string()))?;
        let pending = Arc::new(Mutex::new(Pending::default()));
        #[cfg(feature = "mongodb")]
        let listener = layers.coherence().map(|coherence| {
            let heard = Arc::clone(&pending);
            let listener: Arc<crate::watch::Listener> = Arc::new(move |change| {
                let mut pending = heard.lock();
                match change {
                    // Too many to read one by one (no lookup for a long
                    // while): a rebuild reads them all at once instead.
                    stratum_store::Change::Document(Bson::ObjectId(_))
                        if pending.documents.len() >= MAX_PENDING =>
                    {
                        pending.documents.clear();
                        pending.everything = true;
                    }
                    stratum_store::Change::Document(Bson::ObjectId(id)) => {
                        if !pending.everything {
                            pending.documents.insert(*id);
                        }
                    }
                    // Not a response's id: nothing of the tier's.
                    stratum_store::Change::Document(_) => {}
                    _ => pending.everything = true,
                }
            });
            coherence.listen(ResponseCacheEntry::COLLECTION, &listener);
            listener
        });
        Ok(Tier {
            cache,
            embedder,
            space: config.embedder.space(),
            label_misses: config.label_misses,
            held: Mutex::new(Held::default()),
            loaded: AtomicBool::new(false),
            syncing: tokio::sync::Mutex::new(()),
            pending,
            calibrations: Mutex::new(HashSet::new()),
            rebuild_when_open: AtomicBool::new(false),
            #[cfg(feature = "mongodb")]
            _listener: listener,
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

    /// Whether the handle's change stream of the response collection is
    /// open (`None`: the handle has no change-stream coherence).
    fn stream_open(&self) -> Option<bool> {
        #[cfg(feature = "mongodb")]
        if let Some(coherence) = self.layers.coherence() {
            return Some(coherence.is_open(ResponseCacheEntry::COLLECTION));
        }
        None
    }

    /// Fills the index from the vectors stored with unexpired responses
    /// (the newest `capacity`) and restores what each entry learned, once;
    /// a failed read is retried on the next request.
    pub(crate) async fn ensure_loaded(&self, now: DateTime) {
        if self.loaded.load(Ordering::Acquire) {
            return;
        }
        let _syncing = self.syncing.lock().await;
        if self.loaded.load(Ordering::Acquire) {
            return;
        }
        self.rebuild(now, true).await;
    }

    /// Reads every stored vector of this space into an empty index. The
    /// first time, the labels read also feed the cache-wide threshold (the
    /// observations this process learned from before a restart); a later
    /// rebuild (after the change stream lost events) only restores each
    /// entry's own.
    async fn rebuild(&self, now: DateTime, first: bool) {
        if first && !self.restore_calibrations().await {
            return;
        }
        let open_before = self.stream_open();
        // The read below sees every change heard so far.
        *self.pending.lock() = Pending::default();
        let query = Query::new(Filter::eq(SPACE_FIELD, self.space.as_str()))
            .sort("created_at", Order::Descending)
            .limit(u64::try_from(self.cache.config().capacity).unwrap_or(u64::MAX));
        let result = self
            .layers
            .call(
                self.layers
                    .store
                    .find(ResponseCacheEntry::COLLECTION, &query),
            )
            .await;
        let documents = match result {
            Ok(documents) => documents,
            Err(e) => {
                tracing::debug!(
                    kind = e.kind(),
                    "the semantic index cannot be rebuilt yet; retried on the next request"
                );
                if !first {
                    self.pending.lock().everything = true;
                }
                return;
            }
        };
        if !first {
            self.cache.clear();
            *self.held.lock() = Held::default();
        }
        let mut learned = Vec::new();
        // Oldest first, so the newest are the most recently used.
        for document in documents.iter().rev() {
            if let Some(labels) = self.apply(document, now)
                && first
            {
                learned.extend(labels.observations);
            }
        }
        if !learned.is_empty() {
            let _ = self.cache.calibrate(learned);
            self.publish_error_rate();
        }
        self.rebuild_when_open
            .store(open_before == Some(false), Ordering::Release);
        self.loaded.store(true, Ordering::Release);
        self.publish_entries();
    }

    /// Applies the changes the change stream reported since the last call:
    /// responses written elsewhere join the index with what they learned,
    /// deleted or replaced ones leave it. One request does it at a time; a
    /// concurrent one goes on without waiting.
    async fn catch_up(&self, now: DateTime) {
        let rebuild_due =
            self.rebuild_when_open.load(Ordering::Acquire) && self.stream_open() == Some(true);
        {
            let pending = self.pending.lock();
            if !rebuild_due && !pending.everything && pending.documents.is_empty() {
                return;
            }
        }
        let Ok(_syncing) = self.syncing.try_lock() else {
            return;
        };
        let everything = std::mem::take(&mut self.pending.lock().everything);
        if rebuild_due || everything {
            self.rebuild(now, false).await;
            return;
        }
        let ids: Vec<ObjectId> = std::mem::take(&mut self.pending.lock().documents)
            .into_iter()
            .collect();
        for (i, batch) in ids.chunks(READ_BATCH).enumerate() {
            let query = Query::new(Filter::is_in("_id", batch.iter().copied()))
                .limit(u64::try_from(batch.len()).unwrap_or(u64::MAX));
            let found = match self
                .layers
                .call(
                    self.layers
                        .store
                        .find(ResponseCacheEntry::COLLECTION, &query),
                )
                .await
            {
                Ok(found) => found,
                Err(e) => {
                    tracing::debug!(kind = e.kind(), "changed responses cannot be read yet");
                    let unread = ids.iter().skip(i * READ_BATCH).copied();
                    self.pending.lock().documents.extend(unread);
                    break;
                }
            };
            let mut gone: HashSet<ObjectId> = batch.iter().copied().collect();
            for document in &found {
                if let Ok(id) = document.get_object_id("_id") {
                    gone.remove(&id);
                }
                self.apply(document, now);
            }
            for id in gone {
                self.drop_document(&id);
            }
        }
        self.publish_entries();
    }

    fn read(&self, document: &bson::Document) -> Option<Stored> {
        let entry = bson::from_document::<ResponseCacheEntry>(document.clone()).ok()?;
        let vector = (|| {
            if document.get_str(SPACE_FIELD).ok()? != self.space {
                return None;
            }
            let stored = document.get_document(FIELD).ok()?;
            let scope = stored.get_binary_generic("scope").ok()?;
            let scope = <[u8; 32]>::try_from(scope.as_slice()).ok()?;
            let vector = stored.get_binary_generic("vector").ok()?;
            Some((ScopeDigest(scope), vector_from_bytes(vector)))
        })();
        Some(Stored {
            entry,
            vector,
            labels: labels_from(document),
        })
    }

    /// Brings the index in line with one stored response: added (with what
    /// it learned) when it has a vector of this space and is not held yet,
    /// its labels restored when it is, dropped when it expired or was
    /// replaced by a response without a vector yet. Returns the labels read.
    fn apply(&self, document: &bson::Document, now: DateTime) -> Option<EntryLabels> {
        let Stored {
            entry,
            vector,
            labels,
        } = self.read(document)?;
        let held = self.held.lock().by_document.get(&entry.id).copied();
        let same = held.and_then(|id| {
            let value = self.cache.get(id)?;
            (value.cache_key == entry.cache_key && value.created_at == entry.created_at)
                .then_some(id)
        });
        let expired = entry.is_expired(now);
        let document_id = entry.id;
        let id = match (same, vector) {
            _ if expired => None,
            (Some(id), _) => Some(id),
            (None, Some((scope, vector))) => self.add(scope, vector, Arc::new(entry)),
            // Replaced by a response whose vector is not written yet (its
            // own event follows), or stored without one.
            (None, None) => None,
        };
        let Some(id) = id else {
            if held.is_some() {
                self.drop_document(&document_id);
            }
            return None;
        };
        if let Some(labels) = &labels {
            let _ = self.cache.restore(id, labels);
        }
        labels
    }

    /// Adds `entry` at `vector`, replacing the vector of an earlier response
    /// to the same request.
    fn add(
        &self,
        scope: ScopeDigest,
        vector: Vec<f32>,
        entry: Arc<ResponseCacheEntry>,
    ) -> Option<EntryId> {
        let key = entry.cache_key.as_str().to_owned();
        let document = entry.id;
        let mut held = self.held.lock();
        let old = [held.by_key.remove(&key), held.by_document.remove(&document)];
        for old in old.into_iter().flatten() {
            let _ = self.cache.remove(old);
        }
        let added = match self.cache.insert(scope, vector, entry) {
            Ok(id) => {
                held.by_key.insert(key, id);
                held.by_document.insert(document, id);
                Some(id)
            }
            Err(e) => {
                tracing::debug!(error = %e, "a vector was refused by the semantic index");
                None
            }
        };
        // Entries evicted for capacity leave their ids behind: sweep them
        // when they could outnumber the live ones.
        if held.by_key.len() > 2 * self.cache.config().capacity {
            held.by_key.retain(|_, id| self.cache.contains(*id));
            held.by_document.retain(|_, id| self.cache.contains(*id));
        }
        added
    }

    /// Drops the vector of the response stored as `document` (deleted,
    /// expired or replaced).
    fn drop_document(&self, document: &ObjectId) {
        let mut held = self.held.lock();
        let Some(id) = held.by_document.remove(document) else {
            return;
        };
        if let Some(response) = self.cache.get(id)
            && held.by_key.get(response.cache_key.as_str()) == Some(&id)
        {
            held.by_key.remove(response.cache_key.as_str());
        }
        let _ = self.cache.remove(id);
    }

    fn publish_entries(&self) {
        self.in_scope(|| metrics::gauge!(SEMANTIC_ENTRIES).set(self.cache.len() as f64));
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
        self.catch_up(now).await;
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
            if let (Some(_), Some(e)) = (nearest, &nearest_entry)
                && e.is_expired(now)
            {
                self.drop_document(&e.id);
                self.publish_entries();
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
    /// nearest entry (when `label_misses`, storing that entry's labels),
    /// adds the answer to the index and returns what to store with the
    /// response (`$set` of [`FIELD`] and [`SPACE_FIELD`], `$unset` of the
    /// labels an expired response replaced at the same id had learned).
    pub(crate) async fn insert(&self, probe: Probe, entry: &Arc<ResponseCacheEntry>) -> Update {
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
                self.store_labels(nearest.entry).await;
            }
        }
        let stored = Update::new()
            .set(SPACE_FIELD, self.space.as_str())
            .set(
                FIELD,
                doc! {
                    "scope": binary(probe.scope.0.to_vec()),
                    "vector": binary(vector_bytes(&probe.vector)),
                },
            )
            .unset(LABELS_FIELD);
        self.add(probe.scope, probe.vector, Arc::clone(entry));
        self.publish_entries();
        stored
    }

    /// Writes what `entry` has learned into its response's document, so a
    /// restart (or another process) starts from it. Best effort: a failed
    /// write leaves this process's copy.
    async fn store_labels(&self, entry: EntryId) {
        let (Some(labels), Some(response)) = (self.cache.labels(entry), self.cache.get(entry))
        else {
            return;
        };
        let update = Update::new().set(LABELS_FIELD, labels_to_bson(&labels));
        let id = Bson::ObjectId(response.id);
        let result: Result<_, RepositoryError> = self
            .layers
            .call(
                self.layers
                    .store
                    .update(ResponseCacheEntry::COLLECTION, &id, &update),
            )
            .await;
        if let Err(e) = result {
            tracing::debug!(kind = e.kind(), "an entry's labels could not be stored");
        }
    }

    fn publish_error_rate(&self) {
        if let Some(rate) = self.cache.stats().estimated_error_rate {
            self.in_scope(|| metrics::gauge!(SEMANTIC_ERROR_RATE).set(rate));
        }
    }

    /// The application found a semantic answer wrong: the entry tightens,
    /// and its labels are stored with it.
    pub(crate) async fn report_wrong(&self, matched: &SemanticMatch) -> bool {
        let entry = EntryId(matched.entry);
        let ok = self.cache.report_wrong(entry, matched.similarity).is_ok();
        if ok {
            self.in_scope(|| metrics::counter!(SEMANTIC_WRONG_REPORTS).increment(1));
            self.publish_error_rate();
            self.store_labels(entry).await;
        }
        ok
    }

    /// Labelled observations for the cache-wide threshold, stored in
    /// [`CALIBRATIONS`] (best effort: a failed write leaves this process's
    /// count). A set counted already, here or before a restart, adds
    /// nothing.
    pub(crate) async fn calibrate(
        &self,
        observations: impl IntoIterator<Item = (f32, bool)>,
    ) -> Result<(), stratum_semantic::CacheError> {
        let counted = Observations::from_labels(observations)?;
        if counted.is_empty() {
            return Ok(());
        }
        let bytes = counted.to_bytes();
        let id = calibration_id(&self.space, &bytes);
        if !self.calibrations.lock().insert(id.clone()) {
            return Ok(());
        }
        self.cache.calibrate_with(&counted);
        self.publish_error_rate();
        let document = doc! {
            "_id": id,
            "space": self.space.as_str(),
            "observations": binary(bytes),
            "labels": i64::try_from(counted.len()).unwrap_or(i64::MAX),
        };
        let result: Result<_, RepositoryError> = self
            .layers
            .call(self.layers.store.insert(CALIBRATIONS, document))
            .await;
        match result {
            // Stored by an earlier run or another process: the same set.
            Ok(_) | Err(RepositoryError::Store(stratum_store::StoreError::DuplicateKey { .. })) => {
            }
            Err(e) => tracing::debug!(kind = e.kind(), "a calibration could not be stored"),
        }
        Ok(())
    }

    /// Counts the stored calibrations of this space not counted yet;
    /// `false` when they cannot be read (the rebuild is retried on the next
    /// request).
    async fn restore_calibrations(&self) -> bool {
        let query = Query::new(Filter::eq("space", self.space.as_str()));
        let result = self
            .layers
            .call(self.layers.store.find(CALIBRATIONS, &query))
            .await;
        let documents = match result {
            Ok(documents) => documents,
            Err(e) => {
                tracing::debug!(
                    kind = e.kind(),
                    "the stored calibrations cannot be read yet; retried on the next request"
                );
                return false;
            }
        };
        for document in documents {
            let (Ok(id), Ok(bytes)) = (
                document.get_str("_id"),
                document.get_binary_generic("observations"),
            ) else {
                continue;
            };
            let counted = match Observations::from_bytes(bytes) {
                Ok(counted) => counted,
                Err(e) => {
                    tracing::debug!(error = %e, "a stored calibration was not read");
                    continue;
                }
            };
            if self.calibrations.lock().insert(id.to_owned()) {
                self.cache.calibrate_with(&counted);
            }
        }
        self.publish_error_rate();
        true
    }

    pub(crate) fn stats(&self) -> SemanticStats {
        self.cache.stats()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A calibration's id: the SHA-256 (a scope digest's tagged fields) of its
/// vector space and counts, in hex.
fn calibration_id(space: &str, counts: &[u8]) -> String {
    hex(&Scope::model(space).parameters(&hex(counts)).digest().0)
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
