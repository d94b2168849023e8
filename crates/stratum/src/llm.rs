//! LLM helpers over the repositories: a provider call cached by its request
//! ([`PromptCache`]), conversations appended to and read back compressed
//! to a token budget ([`Conversations`]), and usage recorded and reported
//! per user per day ([`Usage`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bson::DateTime;
use bson::oid::ObjectId;
use parking_lot::Mutex;
#[cfg(feature = "cache")]
use stratum_cache::{Cache, ShardedCache};
use stratum_models::{
    CacheKey, CacheKeyRequest, CacheOutcome, CachedResponse, ChatMessage, CompressedContext,
    CompressionConfig, ContextCompressor, Conversation, Document, Encoding, Message,
    ResponseCacheEntry, TokenCounter, TokenUsage, UsageRecord, ValidationError,
};
use stratum_store::{GroupRow, Grouping, WallClock};

use crate::stack::Layers;
use crate::{
    ConfigError, Filter, Order, Query, Repository, RepositoryError, StoreError, Stratum, Update,
};

/// Counter: prompt-cache answers by `source` (`memory`, `store`,
/// `semantic`, `provider`).
pub const PROMPT_ANSWERS: &str = "stratum_llm_prompt_answers_total";
/// Counter: semantic-tier lookups (exact misses with a user turn last) by
/// `outcome` (`hit`, `miss`).
pub const SEMANTIC_LOOKUPS: &str = "stratum_llm_semantic_lookups_total";
/// Counter: semantic misses labelled against their nearest entry once the
/// provider answered, by `label` (`right`, `wrong`).
pub const SEMANTIC_LABELS: &str = "stratum_llm_semantic_labels_total";
/// Counter: semantic answers the application reported wrong
/// ([`PromptCache::report_wrong`]).
pub const SEMANTIC_WRONG_REPORTS: &str = "stratum_llm_semantic_wrong_reports_total";
/// Gauge: the share of labelled lookups the cache-wide learned threshold
/// would have answered wrongly (set once a threshold is learned).
pub const SEMANTIC_ERROR_RATE: &str = "stratum_llm_semantic_estimated_error_ratio";
/// Histogram: one nearest-neighbour lookup (index search and decision).
pub const SEMANTIC_LOOKUP_DURATION: &str = "stratum_llm_semantic_lookup_duration_seconds";
/// Histogram: embedding one request's last user turn.
pub const SEMANTIC_EMBED_DURATION: &str = "stratum_llm_semantic_embed_duration_seconds";
/// Counter: requests whose text the embedder could not embed (the provider
/// was asked).
pub const SEMANTIC_EMBED_FAILURES: &str = "stratum_llm_semantic_embed_failures_total";
/// Gauge: entries in the semantic index.
pub const SEMANTIC_ENTRIES: &str = "stratum_llm_semantic_entries";
/// Counter: provider answers that could not be written to the store (they
/// were still returned).
pub const PROMPT_NOT_STORED: &str = "stratum_llm_prompt_not_stored_total";

/// What a provider call returned, for [`PromptCache::get_or_compute`].
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The response.
    pub response: CachedResponse,
    /// The tokens it cost.
    pub usage: TokenUsage,
    /// What it cost, in US dollars.
    pub cost_usd: f64,
}

/// Where a prompt's answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSource {
    /// This process's cache (or an identical call in flight at the same time).
    Memory,
    /// The response cache collection in the store.
    Store,
    /// The semantic tier: the cached response of another request of the
    /// same scope whose last user turn means the same (see
    /// [`PromptAnswer::semantic`]).
    Semantic,
    /// The provider, called by this request.
    Provider,
}

/// How a semantic answer matched: what [`PromptCache::report_wrong`]
/// needs to tighten the entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SemanticMatch {
    /// The cosine similarity of the request's last user turn with the
    /// cached request's.
    pub similarity: f32,
    /// The entry in the semantic index.
    #[cfg_attr(not(feature = "semantic"), allow(dead_code))]
    pub(crate) entry: u64,
}

/// An answer from [`PromptCache::get_or_compute`].
#[derive(Debug, Clone)]
pub struct PromptAnswer {
    /// The cached (or new) response entry.
    pub entry: Arc<ResponseCacheEntry>,
    /// Where it came from.
    pub source: AnswerSource,
    /// For a [`AnswerSource::Semantic`] answer, how it matched (`None` for
    /// the others, and for a semantic answer shared with an identical
    /// request in flight at the same time).
    pub semantic: Option<SemanticMatch>,
}

impl PromptAnswer {
    /// `Hit` unless this request called the provider.
    pub fn outcome(&self) -> CacheOutcome {
        match self.source {
            AnswerSource::Provider => CacheOutcome::Miss,
            AnswerSource::Memory | AnswerSource::Store | AnswerSource::Semantic => {
                CacheOutcome::Hit
            }
        }
    }

    /// The usage record of this answer for `tenant`'s `user` at `now`,
    /// counted the way a report must count it: a miss spent the entry's
    /// tokens and cost; a hit spent nothing and saved them (its tokens are
    /// the tokens saved, `saved_usd` the cost saved).
    pub fn usage_record(
        &self,
        tenant: impl Into<String>,
        user: impl Into<String>,
        latency: Duration,
        now: DateTime,
    ) -> UsageRecord {
        let entry = &self.entry;
        let record = UsageRecord::new(&entry.provider, &entry.model, self.outcome(), now)
            .with_caller(tenant, user)
            .with_tokens(entry.usage.prompt_tokens, entry.usage.completion_tokens)
            .with_latency(latency);
        match self.outcome() {
            CacheOutcome::Hit => record.with_saved(entry.cost_usd),
            CacheOutcome::Miss | CacheOutcome::Bypass => record.with_cost(entry.cost_usd),
        }
    }
}

/// Why [`PromptCache::get_or_compute`] has no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromptError<E> {
    /// The request has no cache key (a NaN parameter), or the provider's
    /// answer is not a valid entry.
    #[error("invalid prompt: {0}")]
    Invalid(#[from] ValidationError),
    /// The provider failed.
    #[error("the provider failed: {0}")]
    Provider(E),
}

/// Provider calls cached by request: in this process (single-flight: a
/// burst of identical prompts costs one provider call) and in the store's
/// `llm_response_cache` collection (shared by every process).
///
/// With [`with_store_ttl`](PromptCache::with_store_ttl), an entry is never
/// served past its `expires_at` from either tier (read on the stack's
/// clock), and the first request after it expires asks the provider once
/// and replaces the stored entry in place, so later requests, in this
/// process or another, are hits again.
///
/// When the store cannot be read (breaker open, database down) the provider
/// is asked, and when it cannot be written the answer is still returned:
/// the cache saves money, it must not cost availability.
///
/// # The semantic tier
///
/// With `[llm.semantic] enabled = true` and the `semantic` cargo feature,
/// an exact miss (memory, then store) whose last message is the user's is
/// looked up by meaning before the provider is asked: that turn is embedded
/// and compared with the cached requests of the same *scope* (provider and
/// model, parameters, system prompt and every earlier turn, tools, and the
/// tenant of [`with_tenant`](PromptCache::with_tenant)); the nearest one
/// answers when the hit policy accepts its similarity (by default a
/// threshold learned to a 2 % error rate, see `docs/semantic.md`). The
/// answer is marked [`AnswerSource::Semantic`] with its
/// [`SemanticMatch`]; [`report_wrong`](PromptCache::report_wrong) tightens
/// the entry that gave it. The provider's answer to a miss is stored with
/// its vector (the `semantic` field of its document), and what each entry
/// learned (labels, the floor of a reported wrong answer) in its
/// `semantic_labels` field; the index is rebuilt from them on the first
/// request after start. Over MongoDB with change streams, other processes'
/// answers join the index (and deleted ones leave it) on the next semantic
/// lookup after their change event. An expired response's vector is
/// dropped when a lookup meets it.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use stratum::llm::{AnswerSource, Completion};
/// use stratum::models::{CacheKeyRequest, CachedResponse, ChatMessage, RequestParams, TokenUsage};
/// use stratum::{Stratum, StratumConfig};
///
/// let stratum = Stratum::builder(StratumConfig::default()).build()?;
/// let prompts = stratum.prompt_cache()?;
/// let messages = [ChatMessage::user("What is the capital of Peru?")];
/// let params = RequestParams::default();
/// let request = CacheKeyRequest { provider: "openai", model: "gpt-4o", messages: &messages, params: &params };
/// let ask = || async {
///     Ok::<_, std::io::Error>(Completion {
///         response: CachedResponse::text("Lima."),
///         usage: TokenUsage::new(14, 2),
///         cost_usd: 0.000055,
///     })
/// };
/// let first = prompts.get_or_compute(&request, ask).await.unwrap();
/// assert_eq!(first.source, AnswerSource::Provider);
/// let second = prompts.get_or_compute(&request, ask).await.unwrap();
/// # #[cfg(feature = "cache")] // (without the cache, from the store)
/// assert_eq!(second.source, AnswerSource::Memory);
/// assert_eq!(second.entry.response.content, "Lima.");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct PromptCache {
    responses: Repository<ResponseCacheEntry>,
    /// The in-memory tier, with its single-flight (feature `cache`).
    #[cfg(feature = "cache")]
    memo: Option<ShardedCache<String, Arc<ResponseCacheEntry>>>,
    ttl: Option<Duration>,
    /// The stack's clock as dates: what `expires_at` is compared with.
    clock: WallClock,
    /// The semantic tier (`[llm.semantic] enabled`).
    #[cfg(feature = "semantic")]
    semantic: Option<Arc<crate::llm_semantic::Tier>>,
    /// The tenant semantic lookups are confined to.
    tenant: Arc<str>,
}

impl std::fmt::Debug for PromptCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        #[cfg(feature = "cache")]
        let memo = self.memo.is_some();
        #[cfg(not(feature = "cache"))]
        let memo = false;
        f.debug_struct("PromptCache")
            .field("memo", &memo)
            .field("ttl", &self.ttl)
            .field("semantic", &self.semantic_enabled())
            .finish()
    }
}

const FROM_MEMORY: u8 = 0;
const FROM_STORE: u8 = 1;
const FROM_PROVIDER: u8 = 2;
#[cfg(feature = "semantic")]
const FROM_SEMANTIC: u8 = 3;

impl PromptCache {
    pub(crate) fn new(stratum: &Stratum) -> Result<PromptCache, ConfigError> {
        #[cfg(feature = "cache")]
        let section = &stratum.config().cache;
        #[cfg(feature = "cache")]
        let memo = {
            let mut config = section.named("llm_prompts");
            // A provider's answer is not data that goes stale under a write;
            // serving an old one when the provider fails is the caller's call.
            config.max_stale = None;
            stratum.layers.cache(config)?
        };
        let semantic = &stratum.config().llm.semantic;
        #[cfg(feature = "semantic")]
        let semantic = match semantic.enabled {
            true => Some(Arc::new(
                crate::llm_semantic::Tier::new(semantic, Arc::clone(&stratum.layers))
                    .map_err(|e| e.within("llm.semantic"))?,
            )),
            false => None,
        };
        #[cfg(not(feature = "semantic"))]
        if semantic.enabled {
            tracing::warn!(
                "`llm.semantic.enabled` is set but this build has no `semantic` feature; \
                 the prompt cache matches exact requests only"
            );
        }
        Ok(PromptCache {
            responses: stratum.repository()?,
            #[cfg(feature = "cache")]
            memo,
            ttl: None,
            clock: stratum.layers.wall.clone(),
            #[cfg(feature = "semantic")]
            semantic,
            tenant: Arc::from(""),
        })
    }

    /// A copy whose semantic lookups see only entries written under
    /// `tenant` (sharing every tier with the original). The exact tiers
    /// are not partitioned: an identical request is the same request.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl AsRef<str>) -> PromptCache {
        self.tenant = Arc::from(tenant.as_ref());
        self
    }

    /// Whether the semantic tier is on (`[llm.semantic] enabled` in a build
    /// with the `semantic` feature).
    pub fn semantic_enabled(&self) -> bool {
        #[cfg(feature = "semantic")]
        return self.semantic.is_some();
        #[cfg(not(feature = "semantic"))]
        false
    }

    /// The application found `answer` wrong: if it was a semantic answer,
    /// its entry answers only requests strictly more similar from now on,
    /// and the observation feeds the learned thresholds; the entry's labels
    /// are written into its document (best effort: a failed write leaves
    /// this process's copy), so a restart or another process keeps the
    /// tightening. `false` when there
    /// was nothing to tighten (not a semantic answer, or one shared with an
    /// identical request in flight).
    pub async fn report_wrong(&self, answer: &PromptAnswer) -> bool {
        #[cfg(feature = "semantic")]
        if let (Some(tier), Some(matched)) = (&self.semantic, &answer.semantic) {
            return tier.report_wrong(matched).await;
        }
        #[cfg(not(feature = "semantic"))]
        let _ = answer;
        false
    }

    /// Labelled observations for the semantic tier's cache-wide threshold:
    /// `(similarity, right)` pairs from a labelled set. They are stored (as
    /// counts per 0.005 of similarity, in `llm_semantic_calibrations`) and
    /// read back when a handle's tier first loads, so a restart keeps the
    /// calibration; the same set given again, in this process or after a
    /// restart, is counted once. Refuses a similarity outside [-1, 1],
    /// counting none. Nothing to do without the tier.
    #[cfg(feature = "semantic")]
    pub async fn calibrate(
        &self,
        observations: impl IntoIterator<Item = (f32, bool)>,
    ) -> Result<(), stratum_semantic::CacheError> {
        match &self.semantic {
            Some(tier) => tier.calibrate(observations).await,
            None => Ok(()),
        }
    }

    /// The semantic tier's counters and learned threshold (`None` when it
    /// is off).
    #[cfg(feature = "semantic")]
    pub fn semantic_stats(&self) -> Option<stratum_semantic::SemanticStats> {
        self.semantic.as_ref().map(|tier| tier.stats())
    }

    /// Entries written from now on expire `ttl` after they are written (their
    /// `expires_at`). An expired entry is never served, from memory or
    /// from the store; the collection's TTL index
    /// (`Repository::<ResponseCacheEntry>::ensure_indexes`) lets the store
    /// delete it, and the next request replaces it in any case.
    ///
    /// The cache is shared by the handle (`Stratum::prompt_cache` returns
    /// the same one each time); this returns a copy with the TTL, sharing
    /// the same memory tier.
    #[must_use]
    pub fn with_store_ttl(mut self, ttl: Duration) -> PromptCache {
        self.ttl = Some(ttl);
        self
    }

    /// The answer to `request`: from memory, else from the store, else from
    /// `compute` (the provider call), which is then cached in both. Identical
    /// requests in flight at once share one call of `compute`; a provider
    /// error reaches each of them.
    pub async fn get_or_compute<E, F, Fut>(
        &self,
        request: &CacheKeyRequest<'_>,
        compute: F,
    ) -> Result<PromptAnswer, Arc<PromptError<E>>>
    where
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Completion, E>>,
    {
        let key = CacheKey::compute(request)
            .map_err(|e| Arc::new(PromptError::Invalid(e)))?
            .into_string();
        #[cfg(feature = "semantic")]
        if let Some(tier) = &self.semantic {
            tier.ensure_loaded(self.clock.now()).await;
        }
        let source = AtomicU8::new(FROM_MEMORY);
        // Taken by the one load that calls the provider.
        let compute = Mutex::new(Some(compute));
        // How this request's load matched, if the semantic tier answered.
        let matched = Mutex::new(None);
        let load = |key: String| self.load(key, request, &compute, &source, &matched);
        #[cfg(feature = "cache")]
        let entry = match &self.memo {
            Some(memo) => {
                let entry = self.memory_answer(memo, key.clone(), load, &source).await?;
                // Another request's response is never kept under this
                // request's key: the next paraphrase is looked up again (and
                // a report of a wrong answer reaches every later one).
                if entry.cache_key.as_str() != key
                    && let Some(removed) = memo.remove(&key)
                    && !Arc::ptr_eq(&removed, &entry)
                {
                    memo.insert(key.clone(), removed);
                }
                entry
            }
            None => load(key.clone()).await.map_err(Arc::new)?,
        };
        // Without the cache there is no memory tier and no single-flight:
        // identical requests in flight each look in the store.
        #[cfg(not(feature = "cache"))]
        let entry = load(key.clone()).await.map_err(Arc::new)?;
        let source = match source.load(Ordering::Relaxed) {
            FROM_STORE => AnswerSource::Store,
            FROM_PROVIDER => AnswerSource::Provider,
            // An answer keyed by another request came from the semantic
            // tier, also when it was shared with a request in flight.
            _ if entry.cache_key.as_str() != key => AnswerSource::Semantic,
            _ => AnswerSource::Memory,
        };
        let label = match source {
            AnswerSource::Memory => "memory",
            AnswerSource::Store => "store",
            AnswerSource::Semantic => "semantic",
            AnswerSource::Provider => "provider",
        };
        self.responses
            .in_scope(|| metrics::counter!(PROMPT_ANSWERS, "source" => label).increment(1));
        let semantic = match source {
            AnswerSource::Semantic => matched.into_inner(),
            _ => None,
        };
        Ok(PromptAnswer {
            entry,
            source,
            semantic,
        })
    }

    /// The memory tier's answer, never one past its `expires_at`: an
    /// expired entry is dropped and loaded again through the same
    /// single-flight (so a burst after expiry still costs one provider
    /// call); should it expire yet again before it is served (a clock
    /// moved by hand), the store is asked directly.
    #[cfg(feature = "cache")]
    async fn memory_answer<E, L, Fut>(
        &self,
        memo: &ShardedCache<String, Arc<ResponseCacheEntry>>,
        key: String,
        load: L,
        source: &AtomicU8,
    ) -> Result<Arc<ResponseCacheEntry>, Arc<PromptError<E>>>
    where
        E: Send + Sync + 'static,
        L: Fn(String) -> Fut,
        Fut: Future<Output = Result<Arc<ResponseCacheEntry>, PromptError<E>>>,
    {
        for _ in 0..2 {
            let entry = memo.get_or_load_async(key.clone(), &load).await?;
            // Loaded by this request (fresh from the store or the
            // provider), or still valid: served.
            if source.load(Ordering::Relaxed) != FROM_MEMORY || !entry.is_expired(self.clock.now())
            {
                return Ok(entry);
            }
            // Drop it, unless a fresh one replaced it meanwhile: that one
            // goes back.
            if let Some(removed) = memo.remove(&key)
                && !Arc::ptr_eq(&removed, &entry)
            {
                memo.insert(key.clone(), removed);
            }
        }
        let entry = load(key.clone()).await.map_err(Arc::new)?;
        memo.insert(key, Arc::clone(&entry));
        Ok(entry)
    }

    async fn load<E, F, Fut>(
        &self,
        key: String,
        request: &CacheKeyRequest<'_>,
        compute: &Mutex<Option<F>>,
        source: &AtomicU8,
        matched: &Mutex<Option<SemanticMatch>>,
    ) -> Result<Arc<ResponseCacheEntry>, PromptError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Completion, E>>,
    {
        let lookup = Query::new(Filter::eq("cache_key", key.as_str())).limit(1);
        // The stored entry past its `expires_at`, which the fresh answer replaces.
        let mut expired = None;
        match self.responses.find(&lookup).await {
            Ok(found) => {
                let now = self.clock.now();
                for entry in found {
                    if !entry.is_expired(now) {
                        source.store(FROM_STORE, Ordering::Relaxed);
                        return Ok(Arc::new(entry));
                    }
                    expired = Some(entry.id);
                }
            }
            Err(e) => tracing::debug!(
                kind = e.kind(),
                "the response cache cannot be read; asking the provider"
            ),
        }
        // No exact answer: the semantic tier, before the provider.
        #[cfg(feature = "semantic")]
        let probe = match &self.semantic {
            Some(tier) => match tier.find(request, &self.tenant, self.clock.now()).await {
                Some(crate::llm_semantic::Found::Hit { entry, matched: m }) => {
                    *matched.lock() = Some(m);
                    source.store(FROM_SEMANTIC, Ordering::Relaxed);
                    return Ok(entry);
                }
                Some(crate::llm_semantic::Found::Miss(probe)) => Some((tier, probe)),
                None => None,
            },
            None => None,
        };
        #[cfg(not(feature = "semantic"))]
        let _ = matched;
        // A request loads at most once (a second load only follows a
        // memory answer, which did not load), so the provider call is
        // there; if it were not, the request would be refused, not retried.
        let Some(compute) = compute.lock().take() else {
            return Err(PromptError::Invalid(ValidationError::Invalid {
                field: "request".into(),
                reason: "was loaded twice".into(),
            }));
        };
        let completion = compute().await.map_err(PromptError::Provider)?;
        source.store(FROM_PROVIDER, Ordering::Relaxed);
        let mut entry = ResponseCacheEntry::new(
            request,
            completion.response,
            completion.usage,
            self.clock.now(),
        )?
        .with_cost(completion.cost_usd);
        if let Some(ttl) = self.ttl {
            entry = entry.with_ttl(ttl);
        }
        let stored = match expired {
            Some(id) => self.replace(id, &mut entry).await,
            None => self.responses.insert(&entry).await,
        };
        let stored = match stored {
            Ok(()) => true,
            // Another process cached the same request first: both answers
            // are valid; keep ours.
            Err(RepositoryError::Store(StoreError::DuplicateKey { .. })) => false,
            Err(e) => {
                self.responses
                    .in_scope(|| metrics::counter!(PROMPT_NOT_STORED).increment(1));
                tracing::debug!(kind = e.kind(), "a provider answer could not be stored");
                false
            }
        };
        let entry = Arc::new(entry);
        #[cfg(feature = "semantic")]
        if let Some((tier, probe)) = probe {
            let vector = tier.insert(probe, &entry).await;
            // Stored with the response, so every process's index is rebuilt
            // with it; should the write fail, this process still has it.
            if stored && let Err(e) = self.responses.update(&entry.id, &vector).await {
                tracing::debug!(kind = e.kind(), "a response's vector could not be stored");
            }
        }
        #[cfg(not(feature = "semantic"))]
        let _ = stored;
        Ok(entry)
    }

    /// Writes `entry` over the expired stored entry `id` (same `_id`, so
    /// the unique `cache_key` is never held twice), or inserts it when the
    /// store has deleted the old one meanwhile (its TTL sweep).
    async fn replace(
        &self,
        id: ObjectId,
        entry: &mut ResponseCacheEntry,
    ) -> Result<(), RepositoryError> {
        entry.id = id;
        let fields = entry.to_bson_checked()?;
        let mut update = Update::new();
        for (field, value) in fields {
            if field != "_id" {
                update = update.set(field, value);
            }
        }
        if entry.expires_at.is_none() {
            update = update.unset("expires_at");
        }
        match self.responses.update(&id, &update).await {
            Err(RepositoryError::Store(StoreError::NotFound { .. })) => {
                self.responses.insert(entry).await
            }
            other => other.map(|_| ()),
        }
    }
}

/// Why a conversation operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConversationError {
    /// The repository failed (the conversation does not exist:
    /// `Store(NotFound)`).
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// The token budget cannot hold even the system messages.
    #[error(transparent)]
    Compress(#[from] stratum_models::CompressError),
    /// A configuration was refused: the compression settings, or the
    /// stack's configuration for a repository's cache (one error type since
    /// every crate shares stratum-core's).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tokenizer's tables could not be built.
    #[error(transparent)]
    Tokenizer(#[from] stratum_models::TokenizerError),
}

/// Conversations: a header per conversation and a document per message
/// (`conversations` and `messages` collections).
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use stratum::models::{ChatMessage, Conversation};
/// use stratum::{Stratum, StratumConfig};
///
/// let stratum = Stratum::builder(StratumConfig::default()).build()?;
/// let chats = stratum.conversations()?;
/// let c = Conversation::new("gpt-4o", stratum::bson::DateTime::now());
/// chats.start(&c).await?;
/// chats.append(&c.id, ChatMessage::system("Answer in one word.")).await?;
/// for i in 0..50 {
///     chats.append(&c.id, ChatMessage::user(format!("Question {i}: is {i} even? Think it over at length."))).await?;
///     chats.append(&c.id, ChatMessage::assistant(if i % 2 == 0 { "Yes" } else { "No" })).await?;
/// }
/// let context = chats.context(&c.id, 200).await?;
/// assert!(context.report.tokens_after <= 200);
/// assert_eq!(context.messages[0].content, "Answer in one word.");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Conversations {
    headers: Repository<Conversation>,
    messages: Repository<Message>,
    counter: TokenCounter,
}

impl Conversations {
    pub(crate) fn new(stratum: &Stratum) -> Result<Conversations, ConversationError> {
        Ok(Conversations {
            headers: stratum.repository()?,
            messages: stratum.repository()?,
            counter: TokenCounter::new(Encoding::O200kBase)?,
        })
    }

    /// The headers' repository.
    pub fn headers(&self) -> &Repository<Conversation> {
        &self.headers
    }

    /// The messages' repository.
    pub fn messages(&self) -> &Repository<Message> {
        &self.messages
    }

    /// Stores a new conversation's header.
    pub async fn start(&self, conversation: &Conversation) -> Result<(), ConversationError> {
        Ok(self.headers.insert(conversation).await?)
    }

    /// Appends a message: the header's counters move first (which allocates
    /// the message's `seq` atomically), then the message is stored. If the
    /// second step fails, that `seq` stays unused: readers sort by `seq`, so
    /// a gap is harmless, and the unique `(conversation_id, seq)` index
    /// means a retry can never store a turn twice under one `seq`.
    pub async fn append(
        &self,
        conversation: &ObjectId,
        message: ChatMessage,
    ) -> Result<Message, ConversationError> {
        let tokens = i64::try_from(self.counter.count(&message.content)).unwrap_or(i64::MAX);
        let now = DateTime::now();
        let header = self
            .headers
            .update(
                conversation,
                &Update::new()
                    .inc("message_count", 1i64)
                    .inc("total_tokens", tokens)
                    .set("updated_at", now),
            )
            .await?;
        let mut stored = Message::new(
            *conversation,
            header.message_count - 1,
            message.role,
            message.content,
            tokens,
            now,
        );
        stored.name = message.name;
        self.messages.insert(&stored).await?;
        Ok(stored)
    }

    /// Every message of the conversation, oldest first.
    pub async fn history(
        &self,
        conversation: &ObjectId,
    ) -> Result<Vec<Message>, ConversationError> {
        let query =
            Query::new(Filter::eq("conversation_id", *conversation)).sort("seq", Order::Ascending);
        Ok(self.messages.find(&query).await?)
    }

    /// The conversation as a provider should see it, compressed to
    /// `budget_tokens` (stratum-models' `ContextCompressor`: system messages
    /// kept, duplicates dropped, the newest turns that fit).
    pub async fn context(
        &self,
        conversation: &ObjectId,
        budget_tokens: usize,
    ) -> Result<CompressedContext, ConversationError> {
        let history: Vec<ChatMessage> = self
            .history(conversation)
            .await?
            .iter()
            .map(Message::to_chat)
            .collect();
        let config = CompressionConfig::builder()
            .budget_tokens(budget_tokens)
            .encoding(self.counter.encoding())
            .build()?;
        // The compression counters go to the stack's metrics scope.
        let compressor = ContextCompressor::new(config)?;
        Ok(self.headers.in_scope(|| compressor.compress(&history))?)
    }
}

/// Tokens and dollars, spent or saved.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tokens {
    /// Prompt tokens.
    pub tokens_in: i64,
    /// Completion tokens.
    pub tokens_out: i64,
    /// US dollars.
    pub cost_usd: f64,
}

/// One user's usage on one day (UTC), from [`Usage::per_user_per_day`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UserDay {
    /// The tenant.
    pub tenant: String,
    /// The user.
    pub user: String,
    /// The day, as its 00:00 UTC.
    pub day: DateTime,
    /// Calls recorded (hits, misses and bypasses).
    pub calls: u64,
    /// Of those, answered by the cache.
    pub cache_hits: u64,
    /// What the calls spent: the tokens and cost of misses and bypasses,
    /// plus whatever hits themselves cost (normally nothing).
    pub spent: Tokens,
    /// What cache hits saved: the tokens and cost of the calls whose
    /// answers they replayed. Never counted in `spent`.
    pub saved: Tokens,
}

/// Usage records (`usage_records`) and the report over them: tokens, cost
/// and savings per user per day, in one grouping the store runs (an
/// aggregation pipeline on MongoDB).
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use std::time::Duration;
/// use stratum::bson::DateTime;
/// use stratum::llm::{AnswerSource, Completion};
/// use stratum::models::{CacheKeyRequest, CachedResponse, ChatMessage, RequestParams, TokenUsage};
/// use stratum::{Filter, Stratum, StratumConfig};
///
/// let stratum = Stratum::builder(StratumConfig::default()).build()?;
/// let (prompts, usage) = (stratum.prompt_cache()?, stratum.usage()?);
/// let messages = [ChatMessage::user("What is the capital of Peru?")];
/// let params = RequestParams::default();
/// let request = CacheKeyRequest { provider: "openai", model: "gpt-4o", messages: &messages, params: &params };
/// let ask = || async {
///     Ok::<_, std::io::Error>(Completion {
///         response: CachedResponse::text("Lima."),
///         usage: TokenUsage::new(14, 2),
///         cost_usd: 0.5,
///     })
/// };
/// for user in ["ann", "ann", "bob"] {
///     let answer = prompts.get_or_compute(&request, ask).await.unwrap();
///     usage.record(&answer.usage_record("acme", user, Duration::from_millis(5), DateTime::now())).await?;
/// }
/// let report = usage.per_user_per_day(Filter::eq("tenant", "acme")).await?;
/// let (ann, bob) = (&report[0], &report[1]);
/// assert_eq!((ann.user.as_str(), ann.calls, ann.cache_hits), ("ann", 2, 1));
/// assert_eq!((ann.spent.tokens_in, ann.spent.cost_usd), (14, 0.5)); // the miss
/// assert_eq!((ann.saved.tokens_in, ann.saved.cost_usd), (14, 0.5)); // the hit
/// assert_eq!((bob.spent.cost_usd, bob.saved.cost_usd), (0.0, 0.5));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Usage {
    records: Repository<UsageRecord>,
    layers: Arc<Layers>,
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usage")
            .field("records", &self.records)
            .finish()
    }
}

impl Usage {
    /// The records' repository.
    pub fn records(&self) -> &Repository<UsageRecord> {
        &self.records
    }

    /// Stores one record (validated first: a record names its caller).
    pub async fn record(&self, record: &UsageRecord) -> Result<(), RepositoryError> {
        self.records.insert(record).await
    }

    /// Tokens, cost and savings per tenant, user and UTC day of the records
    /// `filter` selects (a tenant, a time range: `Filter::gte("timestamp",
    /// since)`), sorted by tenant, user and day. A cache hit's tokens and
    /// `saved_usd` count as saved, never as spent.
    pub async fn per_user_per_day(&self, filter: Filter) -> Result<Vec<UserDay>, RepositoryError> {
        let grouping = Grouping::new(filter)
            .by("tenant")
            .by("user")
            .by_day("timestamp")
            .by("cache")
            .sum("tokens_in")
            .sum("tokens_out")
            .sum("cost_usd")
            .sum("saved_usd");
        let rows = self
            .layers
            .call(self.layers.store.group(UsageRecord::COLLECTION, &grouping))
            .await?;
        let mut days: Vec<UserDay> = Vec::new();
        // Rows come sorted by (tenant, user, day, cache): one user-day's
        // rows are adjacent.
        for row in &rows {
            let text = |field| row.key.get_str(field).unwrap_or_default().to_owned();
            let (tenant, user) = (text("tenant"), text("user"));
            let day = row
                .key
                .get_datetime("timestamp")
                .copied()
                .unwrap_or(DateTime::MIN);
            let same = days
                .last()
                .is_some_and(|d| d.tenant == tenant && d.user == user && d.day == day);
            if !same {
                days.push(UserDay {
                    tenant,
                    user,
                    day,
                    calls: 0,
                    cache_hits: 0,
                    spent: Tokens::default(),
                    saved: Tokens::default(),
                });
            }
            if let Some(current) = days.last_mut() {
                add_row(current, row);
            }
        }
        Ok(days)
    }
}

/// Adds one (user, day, cache outcome) row to its user-day.
fn add_row(day: &mut UserDay, row: &GroupRow) {
    let hit = row.key.get_str("cache") == Ok("hit");
    day.calls += row.count;
    let tokens = Tokens {
        tokens_in: row.sum_i64("tokens_in"),
        tokens_out: row.sum_i64("tokens_out"),
        cost_usd: 0.0,
    };
    // What a hit itself cost (normally 0) is spent; its tokens are saved.
    day.spent.cost_usd += row.sum_f64("cost_usd");
    let bucket = if hit {
        day.cache_hits += row.count;
        day.saved.cost_usd += row.sum_f64("saved_usd");
        &mut day.saved
    } else {
        &mut day.spent
    };
    bucket.tokens_in += tokens.tokens_in;
    bucket.tokens_out += tokens.tokens_out;
}

impl Stratum {
    /// The prompt cache (the same one, and the same in-process cache, on
    /// every call).
    pub fn prompt_cache(&self) -> Result<PromptCache, ConfigError> {
        self.shared(|| PromptCache::new(self))
    }

    /// The usage records and their report.
    pub fn usage(&self) -> Result<Usage, ConfigError> {
        Ok(Usage {
            records: self.repository()?,
            layers: Arc::clone(&self.layers),
        })
    }

    /// The conversations helper.
    pub fn conversations(&self) -> Result<Conversations, ConversationError> {
        Conversations::new(self)
    }
}
