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
use stratum::llm::{AnswerSource, Completion, Conversations, PromptCache};
use stratum::models::{
    CacheKeyRequest, CachedResponse, ChatMessage, Conversation, EfficiencyTracker, Encoding,
    ModelPrice, PriceTable, RequestParams, ResponseCacheEntry, TokenCounter, TokenUsage,
    UsageRecord,
};
use stratum::monitor::Monitor;
use stratum::{Filter, Query, Repository, Stratum, StratumConfig};

const PROVIDER: &str = "openai";
const MODEL: &str = "gpt-4o";
const PRICE: ModelPrice = ModelPrice {
    input_per_million_usd: 2.5,
    output_per_million_usd: 10.0,
};
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
    usage: Repository<UsageRecord>,
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

        // A hit records the tokens it saved and costs nothing; a miss what it spent.
        let spent = if answer.source == AnswerSource::Provider {
            entry.cost_usd
        } else {
            0.0
        };
        let mut record = UsageRecord::new(PROVIDER, MODEL, answer.outcome(), DateTime::now())
            .with_tokens(entry.usage.prompt_tokens, entry.usage.completion_tokens)
            .with_latency(started.elapsed())
            .with_cost(spent);
        record.conversation_id = Some(conversation.id);
        // LEAD (usage per user): set the record's user and tenant here once
        // `UsageRecord` carries them.
        self.usage.insert(&record).await?;
        Ok(answer.source)
    }

    /// Tokens, spend and savings of one user's calls.
    async fn usage_of(&self, user: &str) -> Result<EfficiencyTracker, Box<dyn Error>> {
        // LEAD (usage per user): replace this client-side walk (the user's
        // conversations, then their records) with the store's aggregation.
        let conversations = self
            .chats
            .headers()
            .find(&Query::new(Filter::eq("user_id", user)))
            .await?;
        let ids = conversations.iter().map(|c| c.id);
        let records = self
            .usage
            .find(&Query::new(Filter::is_in("conversation_id", ids)))
            .await?;
        let mut tracker = EfficiencyTracker::new();
        records.iter().for_each(|r| tracker.record(r));
        Ok(tracker)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Defaults, then `STRATUM_*` variables (docs/configuration.md).
    let config = StratumConfig::builder().env().build()?;

    // LEAD (monitoring): wired by hand today; once `Stratum::open` starts
    // the monitor of the `[monitor]` section, these lines go. The recorder
    // goes in before the stack is built, so every layer's metrics land in it.
    let monitor = Monitor::new(config.monitor.settings.clone())?;
    monitor.install_global()?;
    let served = monitor.start().await?;
    let stratum = Stratum::builder(config).open().await?;
    stratum.register_health(monitor.health())?;

    let service = ChatService {
        prompts: stratum.prompt_cache()?,
        chats: stratum.conversations()?,
        usage: stratum.repository()?,
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
    service.usage.ensure_indexes().await?;
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

    // Usage per user: spend for provider calls, savings for cache hits.
    let prices = PriceTable::new().with_model(MODEL, PRICE)?;
    for user in ["alice", "bob"] {
        let r = service.usage_of(user).await?.report(&prices);
        println!(
            "usage {user}: {} requests, {} hits, {} misses, spent ${:.6}, saved ${:.6} ({} tokens)",
            r.requests, r.hits, r.misses, r.cost_spent_usd, r.cost_saved_usd, r.tokens_saved
        );
    }

    println!("provider calls: {}", service.provider.calls());

    // LEAD (monitoring): the handle publishes cache statistics itself once
    // it owns the monitor; today they are exported on demand.
    service.chats.headers().publish_cache_metrics();
    let addr = served.local_addr();
    println!("serving http://{addr}/metrics and http://{addr}/health/ready; press Enter to stop");
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await??;
    served.shutdown().await;
    Ok(())
}
