//! The demo's workload: the data it seeds and what each worker does.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bson::DateTime;
use bson::oid::ObjectId;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stratum::llm::{Completion, ConversationError, Conversations, PromptCache, PromptError};
use stratum::models::{
    CacheKeyRequest, CacheOutcome, CachedResponse, ChatMessage, Conversation, EfficiencyTracker,
    Encoding, ModelPrice, PriceTable, RequestParams, TokenCounter, TokenUsage, UsageRecord,
};
use stratum::{Repository, Stratum};

use crate::driver::{self, Failure, Recorder};
use crate::popularity::Popularity;

pub(crate) const PROVIDER: &str = "openai";
pub(crate) const MODEL: &str = "gpt-4o";
/// Distinct prompts, drawn with Zipf(1.0) popularity.
const PROMPTS: usize = 1_000;
const ZIPF_EXPONENT: f64 = 1.0;
/// Conversations seeded before the run.
const CONVERSATIONS: usize = 100;
/// The token budget a context is compressed to.
const CONTEXT_BUDGET: usize = 1_024;

/// The operations the report lists, in [`driver::Workload::OPERATIONS`]'s order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Prompt,
    UsageWrite,
    Append,
    Context,
    Header,
}

impl From<Op> for usize {
    fn from(op: Op) -> usize {
        op as usize
    }
}

/// What the demo counts beyond the driver's figures.
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) stale_reads: AtomicU64,
    pub(crate) provider_calls: AtomicU64,
    /// Documents the workers stored (each usage record and message whose
    /// insert succeeded).
    pub(crate) documents_written: AtomicU64,
}

// The stack has no kind for these errors (RepositoryError has): named here.
impl Failure for ConversationError {
    fn kind(&self) -> &'static str {
        match self {
            ConversationError::Repository(e) => e.kind(),
            ConversationError::Compress(_) => "compress",
            ConversationError::Config(_) => "config",
            ConversationError::Tokenizer(_) => "tokenizer",
            _ => "other",
        }
    }
}

impl Failure for Arc<PromptError<Infallible>> {
    fn kind(&self) -> &'static str {
        match &**self {
            PromptError::Invalid(_) => "invalid_document",
            _ => "other",
        }
    }
}

struct Prompt {
    text: String,
    answer: String,
    tokens_in: i64,
    tokens_out: i64,
}

pub(crate) struct DemoWorkload {
    prompts: PromptCache,
    chats: Conversations,
    usage: Repository<UsageRecord>,
    conversations: Vec<ObjectId>,
    catalogue: Vec<Prompt>,
    popularity: Popularity,
    prices: PriceTable,
    efficiency: Mutex<EfficiencyTracker>,
    seed: u64,
    pub(crate) counts: Counts,
}

impl DemoWorkload {
    pub(crate) async fn prepare(stratum: &Stratum, seed: u64) -> Result<DemoWorkload, String> {
        let counter = TokenCounter::new(Encoding::O200kBase).map_err(|e| e.to_string())?;
        let prompts = stratum.prompt_cache().map_err(|e| e.to_string())?;
        let chats = stratum.conversations().map_err(|e| e.to_string())?;
        let usage = stratum
            .repository::<UsageRecord>()
            .map_err(|e| e.to_string())?;
        chats
            .headers()
            .ensure_indexes()
            .await
            .map_err(|e| e.to_string())?;
        chats
            .messages()
            .ensure_indexes()
            .await
            .map_err(|e| e.to_string())?;
        usage.ensure_indexes().await.map_err(|e| e.to_string())?;
        stratum
            .repository::<stratum::models::ResponseCacheEntry>()
            .map_err(|e| e.to_string())?
            .ensure_indexes()
            .await
            .map_err(|e| e.to_string())?;

        let mut rng = StdRng::seed_from_u64(seed);
        // The run's own tag keeps prompts of different runs apart in a
        // shared database, so every run starts with a cold response cache
        // (the seed alone would give every run with it the same prompts).
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
        let run: u32 = rng.random::<u32>() ^ started;
        let catalogue = (0..PROMPTS)
            .map(|k| {
                let text = format!(
                    "[run {run:08x}] Explain topic #{k} to a new engineer: what it is, why it matters, and one pitfall."
                );
                let words = 40 + (k * 7) % 80;
                let answer = (0..words)
                    .map(|w| format!("point{}", (k + w) % 97))
                    .collect::<Vec<_>>()
                    .join(" ");
                let tokens_in = counter.count(&text) as i64 + 8;
                let tokens_out = counter.count(&answer) as i64;
                Prompt {
                    text,
                    answer,
                    tokens_in,
                    tokens_out,
                }
            })
            .collect();

        let mut conversations = Vec::with_capacity(CONVERSATIONS);
        for c in 0..CONVERSATIONS {
            let conversation =
                Conversation::new(MODEL, DateTime::now()).with_user(format!("user-{}", c % 37));
            chats
                .start(&conversation)
                .await
                .map_err(|e| e.to_string())?;
            chats
                .append(
                    &conversation.id,
                    ChatMessage::system("You are a concise assistant for an engineering team."),
                )
                .await
                .map_err(|e| e.to_string())?;
            conversations.push(conversation.id);
        }
        let prices = PriceTable::new()
            .with_model(
                MODEL,
                ModelPrice {
                    input_per_million_usd: 2.5,
                    output_per_million_usd: 10.0,
                },
            )
            .map_err(|e| e.to_string())?;
        Ok(DemoWorkload {
            prompts,
            chats,
            usage,
            conversations,
            catalogue,
            popularity: Popularity::new(PROMPTS, ZIPF_EXPONENT).map_err(|e| e.to_string())?,
            prices,
            efficiency: Mutex::new(EfficiencyTracker::new()),
            seed,
            counts: Counts::default(),
        })
    }

    pub(crate) fn chats(&self) -> &Conversations {
        &self.chats
    }

    pub(crate) fn efficiency(&self) -> stratum::models::EfficiencyReport {
        self.efficiency.lock().report(&self.prices)
    }

    /// A prompt looked up (a miss calls the provider), then its usage record written.
    async fn prompt(&self, rng: &mut StdRng, record: &Recorder<'_>) {
        let prompt = &self.catalogue[self.popularity.sample(rng)];
        let provider_latency = Duration::from_millis(rng.random_range(5..15));
        let messages = [
            ChatMessage::system("You are a concise assistant for an engineering team."),
            ChatMessage::user(prompt.text.as_str()),
        ];
        let params = RequestParams {
            temperature: Some(0.0),
            max_tokens: Some(512),
            ..RequestParams::default()
        };
        let request = CacheKeyRequest {
            provider: PROVIDER,
            model: MODEL,
            messages: &messages,
            params: &params,
        };
        let price = self.prices.price(MODEL);
        let provider_calls = &self.counts.provider_calls;
        let started = Instant::now();
        let lookup = self.prompts.get_or_compute(&request, || async move {
            // The simulated provider: a network round trip and generation.
            tokio::time::sleep(provider_latency).await;
            provider_calls.fetch_add(1, Ordering::Relaxed);
            Ok::<_, Infallible>(Completion {
                response: CachedResponse::text(prompt.answer.as_str()),
                usage: TokenUsage::new(prompt.tokens_in, prompt.tokens_out),
                cost_usd: price.map_or(0.0, |p| p.cost(prompt.tokens_in, prompt.tokens_out)),
            })
        });
        let Ok(answer) = record.time(Op::Prompt, lookup).await else {
            return;
        };
        let outcome = answer.outcome();
        let usage = UsageRecord::new(PROVIDER, MODEL, outcome, DateTime::now())
            .with_caller("demo", "demo-user")
            .with_tokens(
                answer.entry.usage.prompt_tokens,
                answer.entry.usage.completion_tokens,
            )
            .with_latency(started.elapsed())
            .with_cost(if outcome == CacheOutcome::Miss {
                answer.entry.cost_usd
            } else {
                0.0
            });
        self.efficiency.lock().record(&usage);
        if record
            .time(Op::UsageWrite, self.usage.insert(&usage))
            .await
            .is_ok()
        {
            self.wrote();
        }
    }

    /// A user turn and its reply appended to a conversation.
    async fn append(&self, rng: &mut StdRng, conversation: &ObjectId, record: &Recorder<'_>) {
        let n: u32 = rng.random_range(0..10_000);
        let user = ChatMessage::user(format!(
            "Follow-up {n}: can you expand on the previous answer with an example?"
        ));
        let reply = ChatMessage::assistant(format!(
            "Sure. Example {n}: start small, measure, then change one thing at a time."
        ));
        let turn = async {
            self.chats.append(conversation, user).await?;
            self.wrote();
            self.chats.append(conversation, reply).await?;
            self.wrote();
            Ok::<_, ConversationError>(())
        };
        let _ = record.time(Op::Append, turn).await;
    }

    fn wrote(&self) {
        self.counts
            .documents_written
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A conversation's history compressed to the token budget.
    async fn context(&self, conversation: &ObjectId, record: &Recorder<'_>) {
        let context = self.chats.context(conversation, CONTEXT_BUDGET);
        if let Ok(context) = record.time(Op::Context, context).await {
            self.efficiency
                .lock()
                .record_compression(PROVIDER, MODEL, &context.report);
        }
    }

    /// A conversation's header read by id (the read-through cache).
    async fn header(&self, conversation: &ObjectId, record: &Recorder<'_>) {
        let read = self.chats.headers().get(conversation);
        if let Ok(read) = record.time(Op::Header, read).await
            && read.is_stale()
        {
            self.counts.stale_reads.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl driver::Workload for DemoWorkload {
    type Task = StdRng;
    const OPERATIONS: &'static [&'static str] = &[
        "prompt.lookup",
        "usage.write",
        "conversation.append",
        "conversation.context",
        "conversation.get",
    ];

    fn task(&self, index: usize) -> StdRng {
        driver::task_rng(self.seed, index)
    }

    async fn step(&self, rng: &mut StdRng, record: &Recorder<'_>) {
        let pick: f64 = rng.random();
        let conversation = self.conversations[rng.random_range(0..self.conversations.len())];
        if pick < 0.40 {
            self.prompt(rng, record).await;
        } else if pick < 0.65 {
            self.append(rng, &conversation, record).await;
        } else if pick < 0.80 {
            self.context(&conversation, record).await;
        } else {
            self.header(&conversation, record).await;
        }
    }

    fn status(&self) -> String {
        format!(
            ", {} stale reads",
            self.counts.stale_reads.load(Ordering::Relaxed)
        )
    }
}
