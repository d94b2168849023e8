//! A small LLM chat service on Stratum: cached completions (one provider
//! call for identical requests, also when they arrive at once), a
//! conversation kept under a token budget, usage per user, and `/metrics`
//! and `/health/*` served. `STRATUM_MONGODB_URI` selects MongoDB; without it
//! the embedded store is used.
// What it prints is its output (the workspace lints `println!` in libraries).
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stratum::bson::DateTime;
use stratum::llm::{AnswerSource, Completion, Conversations, PromptCache, Usage};
use stratum::models::{
    CacheKeyRequest, CachedResponse, ChatMessage, Conversation, Encoding, ModelPrice,
    RequestParams, ResponseCacheEntry, TokenCounter, TokenUsage, UsageRecord,
};
use stratum::{Filter, Stratum, StratumConfig};

const PROVIDER: &str = "openai";
const MODEL: &str = "gpt-4o";
const PRICE: ModelPrice = ModelPrice {
    input_per_million_usd: 2.5,
    output_per_million_usd: 10.0,
};
/// The tenant every user of this service belongs to.
const TENANT: &str = "example";
const SYSTEM: &str = "You are a concise assistant.";
/// The most tokens of history sent with a question.
const BUDGET_TOKENS: usize = 300;

/// The LLM provider. This one is a deterministic function that counts its
/// calls (the example reaches no provider); a real one calls an API here.
struct Provider {
    calls: AtomicU64,
    tokens: TokenCounter,
}

impl Provider {
    async fn complete(&self, messages: &[ChatMessage]) -> Result<Completion, std::io::Error> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await; // a provider takes its time
        let question = messages.last().map_or("", |m| m.content.as_str());
        let answer = format!("An answer to \"{question}\".");
        let usage = TokenUsage::new(
            self.tokens.count_chat(messages) as i64,
            self.tokens.count(&answer) as i64,
        );
        let cost_usd = PRICE.cost(usage.prompt_tokens, usage.completion_tokens);
        Ok(Completion {
            response: CachedResponse::text(answer),
            usage,
            cost_usd,
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

struct ChatService {
    prompts: PromptCache,
    chats: Conversations,
    usage: Usage,
    provider: Provider,
}

impl ChatService {
    /// A conversation for `user`, opened with the system prompt.
    async fn start(&self, user: &str) -> Result<Conversation, Box<dyn Error>> {
        let conversation = Conversation::new(MODEL, DateTime::now()).with_user(user);
        self.chats.start(&conversation).await?;
        self.chats
            .append(&conversation.id, ChatMessage::system(SYSTEM))
            .await?;
        Ok(conversation)
    }

    /// One turn: the question is stored, the conversation compressed to the
    /// budget is what the provider sees (and the cache key), the answer and
    /// the call's usage are stored.
    async fn ask(
        &self,
        conversation: &Conversation,
        question: &str,
    ) -> Result<AnswerSource, Box<dyn Error>> {
        let started = Instant::now();
        self.chats
            .append(&conversation.id, ChatMessage::user(question))
            .await?;
        let context = self.chats.context(&conversation.id, BUDGET_TOKENS).await?;
        let params = RequestParams::default();
        let request = CacheKeyRequest {
            provider: PROVIDER,
            model: MODEL,
            messages: &context.messages,
            params: &params,
        };
        let answer = self
            .prompts
            .get_or_compute(&request, || self.provider.complete(&context.messages))
            .await?;
        let entry: &ResponseCacheEntry = &answer.entry;
        self.chats
            .append(
                &conversation.id,
                ChatMessage::assistant(entry.response.content.clone()),
            )
            .await?;

        // A hit records the tokens and cost it saved and spends nothing; a
        // miss records what it spent.
        let user = conversation.user_id.as_deref().unwrap_or("anonymous");
        let mut record = answer.usage_record(TENANT, user, started.elapsed(), DateTime::now());
        record.conversation_id = Some(conversation.id);
        self.usage.record(&record).await?;
        Ok(answer.source)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Defaults, then `STRATUM_*` variables (docs/configuration.md).
    let config = StratumConfig::builder().env().build()?;

    // Opens the store and starts what the configuration asks for: the
    // breaker, admission, caches, and the monitor serving `/metrics` and
    // `/health/*` (with the default alert rules and cache statistics).
    let stratum = Stratum::builder(config).open().await?;

    let service = ChatService {
        prompts: stratum.prompt_cache()?,
        chats: stratum.conversations()?,
        usage: stratum.usage()?,
        provider: Provider {
            calls: AtomicU64::new(0),
            tokens: TokenCounter::new(Encoding::O200kBase)?,
        },
    };
    // Unique cache keys, the cache's TTL, the lookups by user and conversation.
    stratum
        .repository::<ResponseCacheEntry>()?
        .ensure_indexes()
        .await?;
    service.chats.headers().ensure_indexes().await?;
    service.chats.messages().ensure_indexes().await?;
    stratum
        .repository::<UsageRecord>()?
        .ensure_indexes()
        .await?;
    println!("store: {}", stratum.store().backend());

    // Cached completions: the same first question from two users.
    let question = "What is the capital of Peru?";
    for user in ["alice", "bob"] {
        let source = service.ask(&service.start(user).await?, question).await?;
        println!(
            "{user} asks {question:?}: answered from {source:?}, provider calls so far {}",
            service.provider.calls()
        );
    }

    // Single-flight: eight users ask a new question at the same moment.
    let before = service.provider.calls();
    let mut askers = Vec::new();
    for i in 0..8 {
        askers.push(
            service
                .start(if i % 2 == 0 { "alice" } else { "bob" })
                .await?,
        );
    }
    let asked = askers
        .iter()
        .map(|c| service.ask(c, "How tall is Huascaran?"));
    for answer in futures::future::join_all(asked).await {
        answer?;
    }
    println!(
        "8 identical questions at once: {} provider call(s)",
        service.provider.calls() - before
    );

    // A long conversation: what the provider sees stays under the budget.
    let long = service.start("alice").await?;
    for turn in 0..20 {
        service
            .ask(
                &long,
                &format!("Tell me fact number {turn} about the Andes, in detail please."),
            )
            .await?;
    }
    let context = service.chats.context(&long.id, BUDGET_TOKENS).await?;
    let header = service.chats.headers().get(&long.id).await?; // through the cache
    println!(
        "conversation: {} messages (header read from {:?}), {} tokens stored; the context sent: {} messages, {} tokens (budget {BUDGET_TOKENS}), system prompt kept: {}",
        header.value.map_or(0, |c| c.message_count),
        header.origin,
        context.report.tokens_before,
        context.messages.len(),
        context.report.tokens_after,
        context.messages[0].content == SYSTEM,
    );

    // Usage per user and day, one grouping in the store: spend for provider
    // calls, savings for cache hits (never counted as spend). Summed over
    // the days here, so a run across midnight (UTC) still prints one line.
    let days = service
        .usage
        .per_user_per_day(Filter::eq("tenant", TENANT))
        .await?;
    for user in ["alice", "bob"] {
        let mine: Vec<_> = days.iter().filter(|d| d.user == user).collect();
        let calls: u64 = mine.iter().map(|d| d.calls).sum();
        let hits: u64 = mine.iter().map(|d| d.cache_hits).sum();
        let spent: f64 = mine.iter().map(|d| d.spent.cost_usd).sum();
        let saved: f64 = mine.iter().map(|d| d.saved.cost_usd).sum();
        let saved_tokens: i64 = mine
            .iter()
            .map(|d| d.saved.tokens_in + d.saved.tokens_out)
            .sum();
        println!(
            "usage {user}: {calls} requests, {hits} hits, {} misses, spent ${spent:.6}, saved ${saved:.6} ({saved_tokens} tokens) over {} day(s)",
            calls - hits,
            mine.len()
        );
    }

    println!("provider calls: {}", service.provider.calls());

    let addr = stratum.metrics_addr().ok_or(
        "the monitor is not serving (monitor.enabled, monitor.serve, or the port is taken)",
    )?;
    println!("serving http://{addr}/metrics and http://{addr}/health/ready; press Enter to stop");
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await??;
    // Closes the driver's client too, so nothing is left to clean up
    // while the runtime tears down.
    stratum.close().await;
    Ok(())
}
