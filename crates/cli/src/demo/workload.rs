//! The demo's workload: the data it seeds and what each worker does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bson::DateTime;
use bson::oid::ObjectId;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stratum::models::{
    CacheKeyRequest, CacheOutcome, CachedResponse, ChatMessage, Conversation, EfficiencyTracker,
    Encoding, ModelPrice, PriceTable, RequestParams, TokenCounter, TokenUsage, UsageRecord,
};
use stratum::monitor::LatencyTracker;

use stratum::llm::{Completion, Conversations, PromptCache};
use stratum::{Repository, Stratum};

pub(crate) const PROVIDER: &str = "openai";
pub(crate) const MODEL: &str = "gpt-4o";
/// Distinct prompts, drawn with Zipf(1.0) popularity.
const PROMPTS: usize = 1_000;
const ZIPF_EXPONENT: f64 = 1.0;
/// Conversations seeded before the run.
const CONVERSATIONS: usize = 100;
/// The token budget a context is compressed to.
const CONTEXT_BUDGET: usize = 1_024;

/// The operations the report lists, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Prompt,
    UsageWrite,
    Append,
    Context,
    Header,
}

impl Op {
    pub(crate) const ALL: [Op; 5] = [
        Op::Prompt,
        Op::UsageWrite,
        Op::Append,
        Op::Context,
        Op::Header,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Prompt => "prompt.lookup",
            Op::UsageWrite => "usage.write",
            Op::Append => "conversation.append",
            Op::Context => "conversation.context",
            Op::Header => "conversation.get",
        }
    }
}

/// Counts the workers share.
#[derive(Default)]
pub(crate) struct Figures {
    pub(crate) ok: [AtomicU64; 5],
    pub(crate) errors: [AtomicU64; 5],
    pub(crate) refused: AtomicU64,
    pub(crate) stale_reads: AtomicU64,
    pub(crate) provider_calls: AtomicU64,
}

impl Figures {
    pub(crate) fn total(&self) -> u64 {
        self.ok
            .iter()
            .chain(self.errors.iter())
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Samples ranks 0..n with probability proportional to 1 / (rank + 1)^s.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut impl Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

struct Prompt {
    text: String,
    answer: String,
    tokens_in: i64,
    tokens_out: i64,
}

pub(crate) struct Workload {
    stratum: Stratum,
    prompts: PromptCache,
    chats: Conversations,
    usage: Repository<UsageRecord>,
    conversations: Vec<ObjectId>,
    catalogue: Vec<Prompt>,
    zipf: Zipf,
    prices: PriceTable,
    efficiency: Mutex<EfficiencyTracker>,
}

impl Workload {
    pub(crate) async fn prepare(stratum: &Stratum, seed: u64) -> Result<Workload, String> {
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
        Ok(Workload {
            stratum: stratum.clone(),
            prompts,
            chats,
            usage,
            conversations,
            catalogue,
            zipf: Zipf::new(PROMPTS, ZIPF_EXPONENT),
            prices,
            efficiency: Mutex::new(EfficiencyTracker::new()),
        })
    }

    pub(crate) fn usage(&self) -> &Repository<UsageRecord> {
        &self.usage
    }

    pub(crate) fn chats(&self) -> &Conversations {
        &self.chats
    }

    pub(crate) fn efficiency(&self) -> stratum::models::EfficiencyReport {
        self.efficiency.lock().report(&self.prices)
    }

    /// Runs `concurrency` workers until `deadline`.
    pub(crate) async fn run(
        &self,
        concurrency: usize,
        deadline: Instant,
        progress: bool,
        latency: &Arc<LatencyTracker>,
    ) -> Figures {
        let figures = Figures::default();
        let bar = progress.then(|| progress_bar(deadline));
        let workers = (0..concurrency).map(|w| {
            let mut rng = StdRng::seed_from_u64(w as u64 ^ 0x5eed_0000);
            let figures = &figures;
            async move {
                while Instant::now() < deadline {
                    self.step(&mut rng, figures, latency).await;
                    // Let other tasks (the metrics listener, the progress bar)
                    // run even when the embedded store never yields.
                    tokio::task::yield_now().await;
                }
            }
        });
        let ticker = async {
            if let Some(bar) = &bar {
                let started = Instant::now();
                while Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let state = self.stratum.breaker().map_or("off", |b| b.state().as_str());
                    bar.set_position(started.elapsed().as_millis() as u64);
                    bar.set_message(format!(
                        "{} ops, breaker {state}, {} stale reads",
                        figures.total(),
                        figures.stale_reads.load(Ordering::Relaxed)
                    ));
                }
                bar.finish_and_clear();
            }
        };
        futures::join!(futures::future::join_all(workers), ticker);
        figures
    }

    async fn step(&self, rng: &mut StdRng, figures: &Figures, latency: &LatencyTracker) {
        let pick: f64 = rng.random();
        let conversation = self.conversations[rng.random_range(0..self.conversations.len())];
        let started = Instant::now();
        let (op, ok) = if pick < 0.40 {
            (Op::Prompt, self.prompt(rng, figures, latency).await)
        } else if pick < 0.65 {
            (Op::Append, self.append(rng, &conversation, figures).await)
        } else if pick < 0.80 {
            (Op::Context, self.context(&conversation, figures).await)
        } else {
            (Op::Header, self.header(&conversation, figures).await)
        };
        let i = op as usize;
        if ok {
            figures.ok[i].fetch_add(1, Ordering::Relaxed);
        } else {
            figures.errors[i].fetch_add(1, Ordering::Relaxed);
        }
        latency.record(op.name(), started.elapsed());
    }

    async fn prompt(&self, rng: &mut StdRng, figures: &Figures, latency: &LatencyTracker) -> bool {
        let prompt = &self.catalogue[self.zipf.sample(rng)];
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
        let started = Instant::now();
        let answer = self
            .prompts
            .get_or_compute(&request, || async move {
                // The simulated provider: a network round trip and generation.
                tokio::time::sleep(provider_latency).await;
                figures.provider_calls.fetch_add(1, Ordering::Relaxed);
                Ok::<_, std::convert::Infallible>(Completion {
                    response: CachedResponse::text(prompt.answer.as_str()),
                    usage: TokenUsage::new(prompt.tokens_in, prompt.tokens_out),
                    cost_usd: price.map_or(0.0, |p| p.cost(prompt.tokens_in, prompt.tokens_out)),
                })
            })
            .await;
        let Ok(answer) = answer else {
            return false;
        };
        let outcome = answer.outcome();
        let record = UsageRecord::new(PROVIDER, MODEL, outcome, DateTime::now())
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
        self.efficiency.lock().record(&record);
        let write = Instant::now();
        let stored = self.usage.insert(&record).await;
        latency.record(Op::UsageWrite.name(), write.elapsed());
        self.count(figures, Op::UsageWrite, &stored);
        true
    }

    async fn append(&self, rng: &mut StdRng, conversation: &ObjectId, figures: &Figures) -> bool {
        let n: u32 = rng.random_range(0..10_000);
        let user = ChatMessage::user(format!(
            "Follow-up {n}: can you expand on the previous answer with an example?"
        ));
        let reply = ChatMessage::assistant(format!(
            "Sure. Example {n}: start small, measure, then change one thing at a time."
        ));
        let first = self.chats.append(conversation, user).await;
        let result = match first {
            Ok(_) => self.chats.append(conversation, reply).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(stratum::llm::ConversationError::Repository(
            stratum::RepositoryError::NotPermitted { .. },
        )) = &result
        {
            figures.refused.fetch_add(1, Ordering::Relaxed);
        }
        result.is_ok()
    }

    async fn context(&self, conversation: &ObjectId, figures: &Figures) -> bool {
        match self.chats.context(conversation, CONTEXT_BUDGET).await {
            Ok(context) => {
                self.efficiency
                    .lock()
                    .record_compression(PROVIDER, MODEL, &context.report);
                true
            }
            Err(stratum::llm::ConversationError::Repository(
                stratum::RepositoryError::NotPermitted { .. },
            )) => {
                figures.refused.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(_) => false,
        }
    }

    async fn header(&self, conversation: &ObjectId, figures: &Figures) -> bool {
        match self.chats.headers().get(conversation).await {
            Ok(read) => {
                if read.is_stale() {
                    figures.stale_reads.fetch_add(1, Ordering::Relaxed);
                }
                true
            }
            Err(stratum::RepositoryError::NotPermitted { .. }) => {
                figures.refused.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(_) => false,
        }
    }

    fn count<R>(&self, figures: &Figures, op: Op, result: &Result<R, stratum::RepositoryError>) {
        let i = op as usize;
        match result {
            Ok(_) => figures.ok[i].fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                if matches!(e, stratum::RepositoryError::NotPermitted { .. }) {
                    figures.refused.fetch_add(1, Ordering::Relaxed);
                }
                figures.errors[i].fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

fn progress_bar(deadline: Instant) -> indicatif::ProgressBar {
    let total = deadline.saturating_duration_since(Instant::now());
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} [{bar:32}] {elapsed_precise} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
