//! LLM helpers over the repositories: a provider call cached by its request
//! ([`PromptCache`]), and conversations appended to and read back compressed
//! to a token budget ([`Conversations`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use bson::DateTime;
use bson::oid::ObjectId;
#[cfg(feature = "cache")]
use stratum_cache::ShardedCache;
use stratum_models::{
    CacheKey, CacheKeyRequest, CachedResponse, ChatMessage, CompressedContext, CompressionConfig,
    ContextCompressor, Conversation, Encoding, Message, ResponseCacheEntry, TokenCounter,
    TokenUsage, ValidationError,
};

use crate::{
    ConfigError, Filter, Order, Query, Repository, RepositoryError, StoreError, Stratum, Update,
};

/// Counter: prompt-cache answers by `source` (`memory`, `store`, `provider`).
pub const PROMPT_ANSWERS: &str = "stratum_llm_prompt_answers_total";
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
    /// The provider, called by this request.
    Provider,
}

/// An answer from [`PromptCache::get_or_compute`].
#[derive(Debug, Clone)]
pub struct PromptAnswer {
    /// The cached (or new) response entry.
    pub entry: Arc<ResponseCacheEntry>,
    /// Where it came from.
    pub source: AnswerSource,
}

impl PromptAnswer {
    /// `Hit` unless this request called the provider.
    pub fn outcome(&self) -> stratum_models::CacheOutcome {
        match self.source {
            AnswerSource::Provider => stratum_models::CacheOutcome::Miss,
            AnswerSource::Memory | AnswerSource::Store => stratum_models::CacheOutcome::Hit,
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
/// When the store cannot be read (breaker open, database down) the provider
/// is asked, and when it cannot be written the answer is still returned:
/// the cache saves money, it must not cost availability.
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
    ttl: Option<std::time::Duration>,
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
            .finish()
    }
}

const FROM_MEMORY: u8 = 0;
const FROM_STORE: u8 = 1;
const FROM_PROVIDER: u8 = 2;

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
        Ok(PromptCache {
            responses: stratum.repository()?,
            #[cfg(feature = "cache")]
            memo,
            ttl: None,
        })
    }

    /// Stored entries expire `ttl` after they are written (the collection's
    /// TTL index deletes them; an expired entry is never served meanwhile).
    pub fn with_store_ttl(mut self, ttl: std::time::Duration) -> PromptCache {
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
        let key = CacheKey::compute(request).map_err(|e| Arc::new(PromptError::Invalid(e)))?;
        let source = AtomicU8::new(FROM_MEMORY);
        let load = |key: String| self.load(key, request, compute, &source);
        #[cfg(feature = "cache")]
        let entry = match &self.memo {
            Some(memo) => memo.get_or_load_async(key.into_string(), load).await?,
            None => load(key.into_string()).await.map_err(Arc::new)?,
        };
        // Without the cache there is no memory tier and no single-flight:
        // identical requests in flight each look in the store.
        #[cfg(not(feature = "cache"))]
        let entry = load(key.into_string()).await.map_err(Arc::new)?;
        let source = match source.load(Ordering::Relaxed) {
            FROM_STORE => AnswerSource::Store,
            FROM_PROVIDER => AnswerSource::Provider,
            _ => AnswerSource::Memory,
        };
        let label = match source {
            AnswerSource::Memory => "memory",
            AnswerSource::Store => "store",
            AnswerSource::Provider => "provider",
        };
        self.responses
            .in_scope(|| metrics::counter!(PROMPT_ANSWERS, "source" => label).increment(1));
        Ok(PromptAnswer { entry, source })
    }

    async fn load<E, F, Fut>(
        &self,
        key: String,
        request: &CacheKeyRequest<'_>,
        compute: F,
        source: &AtomicU8,
    ) -> Result<Arc<ResponseCacheEntry>, PromptError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Completion, E>>,
    {
        let lookup = Query::new(Filter::eq("cache_key", key.as_str())).limit(1);
        match self.responses.find(&lookup).await {
            Ok(found) => {
                if let Some(entry) = found.into_iter().find(|e| !e.is_expired(DateTime::now())) {
                    source.store(FROM_STORE, Ordering::Relaxed);
                    return Ok(Arc::new(entry));
                }
            }
            Err(e) => tracing::debug!(
                kind = e.kind(),
                "the response cache cannot be read; asking the provider"
            ),
        }
        let completion = compute().await.map_err(PromptError::Provider)?;
        source.store(FROM_PROVIDER, Ordering::Relaxed);
        let mut entry = ResponseCacheEntry::new(
            request,
            completion.response,
            completion.usage,
            DateTime::now(),
        )?
        .with_cost(completion.cost_usd);
        if let Some(ttl) = self.ttl {
            entry = entry.with_ttl(ttl);
        }
        match self.responses.insert(&entry).await {
            // Another process cached the same request first: both answers
            // are valid; keep ours.
            Ok(()) | Err(RepositoryError::Store(StoreError::DuplicateKey { .. })) => {}
            Err(e) => {
                self.responses
                    .in_scope(|| metrics::counter!(PROMPT_NOT_STORED).increment(1));
                tracing::debug!(kind = e.kind(), "a provider answer could not be stored");
            }
        }
        Ok(Arc::new(entry))
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

impl Stratum {
    /// The prompt cache (the same one, and the same in-process cache, on
    /// every call).
    pub fn prompt_cache(&self) -> Result<PromptCache, ConfigError> {
        self.shared(|| PromptCache::new(self))
    }

    /// The conversations helper.
    pub fn conversations(&self) -> Result<Conversations, ConversationError> {
        Conversations::new(self)
    }
}
