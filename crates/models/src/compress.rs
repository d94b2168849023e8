//! Context compression to a token budget.
//!
//! The steps, in order (each one only ever removes tokens):
//!
//! 1. **Collapse whitespace**: runs of spaces and tabs become one space, runs
//!    of blank lines one blank line, ends are trimmed.
//! 2. **Drop duplicates**: a message whose normalized text equals, or whose
//!    word-shingle Jaccard similarity reaches the threshold of, a *later*
//!    message of the same role is dropped (the latest copy stays, next to the
//!    turns that follow it). Short messages ("ok", "yes") are never deduplicated.
//! 3. **Cap oversized messages** at `max_message_tokens`, cut at a token boundary.
//! 4. **Keep the instructions**: every `system`/`developer` message is kept;
//!    when they alone exceed the budget they are truncated.
//! 5. **Keep the most recent turns** that fit, newest first, as one contiguous
//!    run; the newest message is truncated rather than dropped when it alone
//!    does not fit.
//! 6. **Summary slot**: with a [`Summarizer`], the dropped turns are summarized
//!    into one `system` message in their place, within `summary_tokens`, and
//!    only when it is smaller than what it replaces.
//!
//! The result never exceeds the budget (counted with the chat format's
//! framing), keeps the original order, and comes with a [`CompressionReport`].

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::tokens::{REPLY_PRIMING_TOKENS, TOKENS_PER_MESSAGE, TOKENS_PER_NAME};
use crate::validate;
use crate::{
    ChatMessage, CompressError, ConfigError, Encoding, Role, TokenCounter, ValidationError,
};

/// How to compress. Plain data with serde; [`CompressionConfig::builder`] or
/// deserialization validate every field.
///
/// ```
/// use stratum_models::CompressionConfig;
///
/// let config: CompressionConfig = serde_json::from_str(r#"{ "budget_tokens": 4000 }"#)?;
/// assert_eq!(config.near_duplicate_threshold, 0.9);
/// let bad = serde_json::from_str::<CompressionConfig>(r#"{ "near_duplicate_threshold": 1.5 }"#);
/// assert!(bad.unwrap_err().to_string().contains("near_duplicate_threshold"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawCompressionConfig")]
pub struct CompressionConfig {
    /// The most tokens the compressed request may cost, framing included. Default 4096.
    pub budget_tokens: usize,
    /// The encoding tokens are counted in. Default `o200k_base`.
    pub encoding: Encoding,
    /// Collapse runs of whitespace. Default `true`.
    pub collapse_whitespace: bool,
    /// Drop exact and near duplicates. Default `true`.
    pub dedupe: bool,
    /// Jaccard similarity of word shingles at or above which two messages are
    /// duplicates, in (0, 1]. Default 0.9.
    pub near_duplicate_threshold: f64,
    /// Words per shingle, at least 1. Default 3.
    pub shingle_words: usize,
    /// Messages with fewer words are never deduplicated ("ok", "yes, go on"). Default 4.
    pub dedupe_min_words: usize,
    /// Truncate any single message to this many content tokens. Default none.
    pub max_message_tokens: Option<usize>,
    /// Content tokens reserved for the summary when a summarizer is given. Default 256.
    pub summary_tokens: usize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            budget_tokens: 4096,
            encoding: Encoding::O200kBase,
            collapse_whitespace: true,
            dedupe: true,
            near_duplicate_threshold: 0.9,
            shingle_words: 3,
            dedupe_min_words: 4,
            max_message_tokens: None,
            summary_tokens: 256,
        }
    }
}

/// The unvalidated shape serde reads; `try_from` turns it into a config or a [`ConfigError`].
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawCompressionConfig {
    budget_tokens: usize,
    encoding: Encoding,
    collapse_whitespace: bool,
    dedupe: bool,
    near_duplicate_threshold: f64,
    shingle_words: usize,
    dedupe_min_words: usize,
    max_message_tokens: Option<usize>,
    summary_tokens: usize,
}

impl Default for RawCompressionConfig {
    fn default() -> Self {
        let d = CompressionConfig::default();
        RawCompressionConfig {
            budget_tokens: d.budget_tokens,
            encoding: d.encoding,
            collapse_whitespace: d.collapse_whitespace,
            dedupe: d.dedupe,
            near_duplicate_threshold: d.near_duplicate_threshold,
            shingle_words: d.shingle_words,
            dedupe_min_words: d.dedupe_min_words,
            max_message_tokens: d.max_message_tokens,
            summary_tokens: d.summary_tokens,
        }
    }
}

impl TryFrom<RawCompressionConfig> for CompressionConfig {
    type Error = ConfigError;

    fn try_from(raw: RawCompressionConfig) -> Result<Self, ConfigError> {
        CompressionConfig {
            budget_tokens: raw.budget_tokens,
            encoding: raw.encoding,
            collapse_whitespace: raw.collapse_whitespace,
            dedupe: raw.dedupe,
            near_duplicate_threshold: raw.near_duplicate_threshold,
            shingle_words: raw.shingle_words,
            dedupe_min_words: raw.dedupe_min_words,
            max_message_tokens: raw.max_message_tokens,
            summary_tokens: raw.summary_tokens,
        }
        .validated()
    }
}

impl CompressionConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> CompressionConfigBuilder {
        CompressionConfigBuilder {
            config: CompressionConfig::default(),
        }
    }

    /// Checks every field; the first invalid one is named in the error.
    pub fn validated(self) -> Result<Self, ConfigError> {
        if self.budget_tokens == 0 {
            return Err(ConfigError::invalid("budget_tokens", "must be at least 1"));
        }
        let t = self.near_duplicate_threshold;
        if !(t > 0.0 && t <= 1.0) {
            return Err(ConfigError::invalid(
                "near_duplicate_threshold",
                "must be in (0, 1]",
            ));
        }
        if self.shingle_words == 0 {
            return Err(ConfigError::invalid("shingle_words", "must be at least 1"));
        }
        if self.max_message_tokens == Some(0) {
            return Err(ConfigError::invalid(
                "max_message_tokens",
                "must be at least 1 when set",
            ));
        }
        Ok(self)
    }
}

/// Builds a [`CompressionConfig`]; `build` validates.
///
/// ```
/// use stratum_models::CompressionConfig;
///
/// let config = CompressionConfig::builder().budget_tokens(4000).max_message_tokens(1000).build()?;
/// assert_eq!(config.budget_tokens, 4000);
/// # Ok::<(), stratum_models::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CompressionConfigBuilder {
    config: CompressionConfig,
}

impl CompressionConfigBuilder {
    /// See [`CompressionConfig::budget_tokens`].
    pub fn budget_tokens(mut self, tokens: usize) -> Self {
        self.config.budget_tokens = tokens;
        self
    }
    /// See [`CompressionConfig::encoding`].
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.config.encoding = encoding;
        self
    }
    /// See [`CompressionConfig::collapse_whitespace`].
    pub fn collapse_whitespace(mut self, on: bool) -> Self {
        self.config.collapse_whitespace = on;
        self
    }
    /// See [`CompressionConfig::dedupe`].
    pub fn dedupe(mut self, on: bool) -> Self {
        self.config.dedupe = on;
        self
    }
    /// See [`CompressionConfig::near_duplicate_threshold`].
    pub fn near_duplicate_threshold(mut self, threshold: f64) -> Self {
        self.config.near_duplicate_threshold = threshold;
        self
    }
    /// See [`CompressionConfig::shingle_words`].
    pub fn shingle_words(mut self, words: usize) -> Self {
        self.config.shingle_words = words;
        self
    }
    /// See [`CompressionConfig::dedupe_min_words`].
    pub fn dedupe_min_words(mut self, words: usize) -> Self {
        self.config.dedupe_min_words = words;
        self
    }
    /// See [`CompressionConfig::max_message_tokens`].
    pub fn max_message_tokens(mut self, tokens: usize) -> Self {
        self.config.max_message_tokens = Some(tokens);
        self
    }
    /// See [`CompressionConfig::summary_tokens`].
    pub fn summary_tokens(mut self, tokens: usize) -> Self {
        self.config.summary_tokens = tokens;
        self
    }
    /// Validates and returns the config.
    pub fn build(self) -> Result<CompressionConfig, ConfigError> {
        self.config.validated()
    }
}

/// Turns dropped turns into a short text. The caller supplies it (often an LLM
/// call made ahead of time); [`ExtractiveSummarizer`] is a deterministic one.
pub trait Summarizer {
    /// Summarizes `dropped` (oldest first) in about `max_tokens` tokens; longer
    /// output is truncated at a token boundary.
    fn summarize(
        &self,
        dropped: &[ChatMessage],
        max_tokens: usize,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>>;
}

/// A summarizer that needs no model: the first sentence of each dropped turn,
/// prefixed with its role, under an "Earlier in the conversation" heading.
///
/// ```
/// use stratum_models::{ChatMessage, ExtractiveSummarizer, Summarizer};
///
/// let s = ExtractiveSummarizer::default()
///     .summarize(&[ChatMessage::user("I live in Lyon. I like trains.")], 50)
///     .unwrap();
/// assert_eq!(s, "Earlier in the conversation:\n- user: I live in Lyon.");
/// ```
#[derive(Debug, Clone, Default)]
pub struct ExtractiveSummarizer;

impl Summarizer for ExtractiveSummarizer {
    fn summarize(
        &self,
        dropped: &[ChatMessage],
        _max_tokens: usize,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let mut out = String::from("Earlier in the conversation:");
        for m in dropped {
            let text = m.content.trim();
            let end = text
                .char_indices()
                .find(|&(_, c)| matches!(c, '.' | '?' | '!' | '\n'))
                .map_or(text.len(), |(i, c)| i + c.len_utf8());
            let sentence = text[..end].trim();
            if !sentence.is_empty() {
                out.push_str("\n- ");
                out.push_str(m.role.as_str());
                out.push_str(": ");
                out.push_str(sentence);
            }
        }
        Ok(out)
    }
}

impl<F> Summarizer for F
where
    F: Fn(&[ChatMessage], usize) -> Result<String, Box<dyn std::error::Error + Send + Sync>>,
{
    fn summarize(
        &self,
        dropped: &[ChatMessage],
        max_tokens: usize,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        self(dropped, max_tokens)
    }
}

/// What compression did, in the terms LLMLingua reports.
///
/// `ratio` is `tokens_before / tokens_after` (a 4x compression is 4.0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CompressionReport {
    /// Tokens of the original request, framing included.
    pub tokens_before: i64,
    /// Tokens of the compressed request, framing included.
    pub tokens_after: i64,
    /// `tokens_before / tokens_after`.
    pub ratio: f64,
    /// `tokens_before - tokens_after`, never below 0.
    pub tokens_saved: i64,
    /// Messages in.
    pub messages_before: i64,
    /// Messages out (the summary included).
    pub messages_after: i64,
    /// Messages dropped as exact or near duplicates.
    pub duplicates_dropped: i64,
    /// Messages dropped for the budget.
    pub budget_dropped: i64,
    /// Messages truncated (cap or budget).
    pub truncated: i64,
    /// Whether a summary message was inserted.
    pub summarized: bool,
}

impl CompressionReport {
    fn new(tokens_before: usize, tokens_after: usize) -> Self {
        let before = i64::try_from(tokens_before).unwrap_or(i64::MAX);
        let after = i64::try_from(tokens_after).unwrap_or(i64::MAX);
        CompressionReport {
            tokens_before: before,
            tokens_after: after,
            ratio: ratio(before, after),
            tokens_saved: before.saturating_sub(after).max(0),
            messages_before: 0,
            messages_after: 0,
            duplicates_dropped: 0,
            budget_dropped: 0,
            truncated: 0,
            summarized: false,
        }
    }

    /// Checks the counts and that `ratio` and `tokens_saved` agree with them.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate::token_count("report.tokens_before", self.tokens_before)?;
        validate::token_count("report.tokens_after", self.tokens_after)?;
        let saved = self.tokens_before.saturating_sub(self.tokens_after).max(0);
        if self.tokens_saved != saved {
            return Err(ValidationError::Invalid {
                field: "report.tokens_saved".into(),
                reason: "must equal max(tokens_before - tokens_after, 0)".into(),
            });
        }
        let expected = ratio(self.tokens_before, self.tokens_after);
        if !self.ratio.is_finite() || (self.ratio - expected).abs() > 1e-9 * expected.max(1.0) {
            return Err(ValidationError::Invalid {
                field: "report.ratio".into(),
                reason: "must equal tokens_before / tokens_after".into(),
            });
        }
        for (field, v) in [
            ("report.messages_before", self.messages_before),
            ("report.messages_after", self.messages_after),
            ("report.duplicates_dropped", self.duplicates_dropped),
            ("report.budget_dropped", self.budget_dropped),
            ("report.truncated", self.truncated),
        ] {
            validate::in_range(field, v, 0, i64::from(u32::MAX))?;
        }
        Ok(())
    }
}

fn ratio(before: i64, after: i64) -> f64 {
    if after <= 0 {
        1.0
    } else {
        before as f64 / after as f64
    }
}

/// A compressed request: the messages to send, where each came from, and the report.
#[derive(Debug, Clone, PartialEq)]
pub struct CompressedContext {
    /// The messages, in their original order.
    pub messages: Vec<ChatMessage>,
    /// For each output message, its index in the input; `None` for the summary.
    pub origins: Vec<Option<usize>>,
    /// What compression did.
    pub report: CompressionReport,
}

/// Compresses chat requests to a token budget.
///
/// ```
/// use stratum_models::{ChatMessage, CompressionConfig, ContextCompressor};
///
/// let compressor = ContextCompressor::new(CompressionConfig::builder().budget_tokens(60).build()?)?;
/// let mut chat = vec![ChatMessage::system("You are terse.")];
/// for i in 0..20 {
///     chat.push(ChatMessage::user(format!("Question number {i}: what   is {i} squared?")));
///     chat.push(ChatMessage::assistant(format!("{}", i * i)));
/// }
/// let out = compressor.compress(&chat)?;
/// assert!(out.report.tokens_after <= 60);
/// assert_eq!(out.messages[0], chat[0]); // the system message stays
/// assert_eq!(out.messages.last(), chat.last()); // and so does the latest turn
/// assert_eq!(out.report.tokens_saved, out.report.tokens_before - out.report.tokens_after);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ContextCompressor {
    config: CompressionConfig,
    counter: TokenCounter,
}

/// A message on its way through the steps, with its content's token count
/// once known.
struct Slot {
    origin: usize,
    message: ChatMessage,
    truncated: bool,
    content_tokens: Option<usize>,
}

impl Slot {
    fn content_tokens(&mut self, counter: TokenCounter) -> usize {
        *self
            .content_tokens
            .get_or_insert_with(|| counter.count(&self.message.content))
    }

    /// What the message costs in the request, framing included.
    fn cost(&mut self, counter: TokenCounter) -> usize {
        framing(counter, &self.message) + self.content_tokens(counter)
    }
}

impl ContextCompressor {
    /// A compressor for a validated config; builds (or reuses) the encoding's tables.
    pub fn new(config: CompressionConfig) -> Result<Self, crate::TokenizerError> {
        let counter = TokenCounter::new(config.encoding)?;
        Ok(ContextCompressor { config, counter })
    }

    /// The configuration.
    pub fn config(&self) -> &CompressionConfig {
        &self.config
    }

    /// The token counter it uses.
    pub fn counter(&self) -> TokenCounter {
        self.counter
    }

    /// Compresses without a summary.
    pub fn compress(&self, messages: &[ChatMessage]) -> Result<CompressedContext, CompressError> {
        self.run(messages, None)
    }

    /// Compresses, filling the summary slot with `summarizer` when turns are dropped.
    pub fn compress_with(
        &self,
        messages: &[ChatMessage],
        summarizer: &dyn Summarizer,
    ) -> Result<CompressedContext, CompressError> {
        self.run(messages, Some(summarizer))
    }

    fn run(
        &self,
        messages: &[ChatMessage],
        summarizer: Option<&dyn Summarizer>,
    ) -> Result<CompressedContext, CompressError> {
        let c = &self.config;
        let counter = self.counter;
        let budget = c.budget_tokens;
        // Each content is tokenized at most twice (original, and collapsed or
        // truncated when it changed and is still needed): the counts are
        // cached in the slots, and turns older than the kept run are never
        // recounted.
        let original: Vec<usize> = messages.iter().map(|m| counter.count(&m.content)).collect();
        let tokens_before = REPLY_PRIMING_TOKENS
            + messages
                .iter()
                .zip(&original)
                .map(|(m, n)| framing(counter, m) + n)
                .sum::<usize>();

        // 1. Whitespace.
        let mut slots: Vec<Slot> = messages
            .iter()
            .enumerate()
            .map(|(origin, m)| {
                let mut message = m.clone();
                let mut content_tokens = Some(original[origin]);
                if c.collapse_whitespace
                    && let Cow::Owned(s) = collapse_whitespace(&m.content)
                {
                    message.content = s;
                    content_tokens = None;
                }
                Slot {
                    origin,
                    message,
                    truncated: false,
                    content_tokens,
                }
            })
            .collect();

        // 2. Duplicates.
        let before_dedupe = slots.len();
        if c.dedupe {
            slots = self.dedupe(slots);
        }
        let duplicates_dropped = before_dedupe - slots.len();

        // 3. Per-message cap (instructions are only cut for the budget).
        if let Some(cap) = c.max_message_tokens {
            for slot in slots
                .iter_mut()
                .filter(|s| !s.message.role.is_instruction())
            {
                if slot.content_tokens.is_none_or(|n| n > cap) {
                    truncate_slot(counter, slot, cap);
                }
            }
        }

        // 4. Instructions: framing first, then their content while it fits.
        let (instructions, turns): (Vec<Slot>, Vec<Slot>) = slots
            .into_iter()
            .partition(|s| s.message.role.is_instruction());
        let minimum = REPLY_PRIMING_TOKENS
            + instructions
                .iter()
                .map(|s| framing(counter, &s.message))
                .sum::<usize>();
        if minimum > budget {
            return Err(CompressError::BudgetTooSmall { budget, minimum });
        }
        let mut spare = budget - minimum;
        let mut instructions = instructions;
        for slot in &mut instructions {
            if slot.content_tokens(counter) > spare {
                truncate_slot(counter, slot, spare);
            }
            spare -= slot.content_tokens(counter);
        }

        // 5 and 6. Recent turns, reserving room for a summary if one may be needed.
        let mut turns = turns;
        let mut turns_cost = 0;
        // Newest first, stopping as soon as they overflow: exactly the counts
        // the selection needs next.
        let overflows = turns.iter_mut().rev().any(|s| {
            turns_cost += s.cost(counter);
            turns_cost > spare
        });
        let summary_framing = TOKENS_PER_MESSAGE + counter.count(Role::System.as_str());
        let reserve = match summarizer {
            Some(_) if overflows && c.summary_tokens > 0 => {
                (summary_framing + c.summary_tokens).min(spare)
            }
            _ => 0,
        };
        let (mut kept, mut dropped) = select_recent(counter, turns, spare - reserve);
        // The kept turns fit in `spare - reserve`, so this cannot underflow.
        let spare = spare - kept.iter_mut().map(|s| s.cost(counter)).sum::<usize>();
        let budget_dropped = dropped.len();

        let mut summary = None;
        if let (Some(summarizer), false) = (summarizer, dropped.is_empty()) {
            let room = spare
                .min(summary_framing + c.summary_tokens)
                .saturating_sub(summary_framing);
            if room > 0 {
                let dropped_messages: Vec<ChatMessage> =
                    dropped.iter().map(|s| s.message.clone()).collect();
                let text = summarizer
                    .summarize(&dropped_messages, room)
                    .map_err(CompressError::Summarizer)?;
                let text = collapse_whitespace(&text);
                let text = counter.truncate(&text, room).into_owned();
                let message = ChatMessage::system(text);
                let cost = counter.count_message(&message);
                // Worth it only when smaller than what it replaces (counted lazily).
                let mut dropped_cost = 0;
                let smaller = dropped.iter_mut().any(|s| {
                    dropped_cost += s.cost(counter);
                    dropped_cost > cost
                });
                if !message.content.is_empty() && smaller && cost <= spare {
                    summary = Some((message, cost));
                }
            }
        }

        // Reassemble in the original order; the summary takes the place of the
        // turns it replaces, right before the first kept turn.
        let truncated = instructions
            .iter()
            .chain(&kept)
            .filter(|s| s.truncated)
            .count();
        let mut out: Vec<Slot> = instructions.into_iter().chain(kept).collect();
        out.sort_by_key(|s| s.origin);
        let mut tokens_after = REPLY_PRIMING_TOKENS
            + summary.as_ref().map_or(0, |(_, cost)| *cost)
            + out.iter_mut().map(|s| s.cost(counter)).sum::<usize>();
        let mut summary = summary.map(|(message, _)| message);
        let summary_at = dropped.iter().map(|s| s.origin).max();
        let mut messages_out = Vec::with_capacity(out.len() + 1);
        let mut origins = Vec::with_capacity(out.len() + 1);
        for slot in out {
            if summary_at.is_some_and(|at| slot.origin > at)
                && let Some(s) = summary.take()
            {
                messages_out.push(s);
                origins.push(None);
            }
            messages_out.push(slot.message);
            origins.push(Some(slot.origin));
        }
        if let Some(s) = summary.take() {
            messages_out.push(s);
            origins.push(None);
        }

        if tokens_after > budget {
            // Unreachable by construction: every step keeps the sum within the
            // budget (the proptest checks it). Should a tokenizer ever disagree
            // with itself, drop the oldest turns rather than return an overrun.
            tracing::error!(tokens_after, budget, "compression overran its budget");
            while counter.count_chat(&messages_out) > budget {
                // A turn or the summary; never one of the caller's instructions.
                let oldest_turn = (0..messages_out.len())
                    .find(|&i| origins[i].is_none() || !messages_out[i].role.is_instruction());
                let Some(at) = oldest_turn else { break };
                messages_out.remove(at);
                origins.remove(at);
            }
            tokens_after = counter.count_chat(&messages_out);
        }
        let mut report = CompressionReport::new(tokens_before, tokens_after);
        report.messages_before = messages.len() as i64;
        report.messages_after = messages_out.len() as i64;
        report.duplicates_dropped = duplicates_dropped as i64;
        report.budget_dropped = budget_dropped as i64;
        report.truncated = truncated as i64;
        report.summarized = origins.iter().any(Option::is_none);
        crate::telemetry::compressed(report.tokens_saved.max(0) as usize);
        Ok(CompressedContext {
            messages: messages_out,
            origins,
            report,
        })
    }

    /// Drops every non-instruction message that duplicates a later one of the same role.
    fn dedupe(&self, slots: Vec<Slot>) -> Vec<Slot> {
        let c = &self.config;
        let mut seen_exact: HashSet<(String, u64)> = HashSet::new();
        let mut seen_shingles: Vec<(Role, Vec<u64>)> = Vec::new();
        let mut keep = vec![true; slots.len()];
        for (i, slot) in slots.iter().enumerate().rev() {
            let m = &slot.message;
            if m.role.is_instruction() {
                continue;
            }
            let words = normalized_words(&m.content);
            if words.len() < c.dedupe_min_words {
                continue;
            }
            let exact = (m.role.as_str().to_owned(), hash_words(&words));
            let shingles = shingles(&words, c.shingle_words);
            let near = seen_shingles.iter().any(|(role, s)| {
                *role == m.role && jaccard(s, &shingles) >= c.near_duplicate_threshold
            });
            if seen_exact.contains(&exact) || near {
                keep[i] = false;
                continue;
            }
            seen_exact.insert(exact);
            seen_shingles.push((m.role.clone(), shingles));
        }
        slots
            .into_iter()
            .zip(keep)
            .filter_map(|(s, k)| k.then_some(s))
            .collect()
    }
}

/// The newest turns that fit in `room`, as one contiguous run; the newest is
/// truncated when it alone is too big. Returns (kept, dropped), both oldest first.
fn select_recent(
    counter: TokenCounter,
    turns: Vec<Slot>,
    mut room: usize,
) -> (Vec<Slot>, Vec<Slot>) {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    let mut full = false;
    for mut slot in turns.into_iter().rev() {
        if full {
            dropped.push(slot);
            continue;
        }
        let cost = slot.cost(counter);
        if cost <= room {
            room -= cost;
            kept.push(slot);
            continue;
        }
        full = true;
        let frame = framing(counter, &slot.message);
        if kept.is_empty() && frame < room {
            truncate_slot(counter, &mut slot, room - frame);
            room -= slot.cost(counter);
            kept.push(slot);
        } else {
            dropped.push(slot);
        }
    }
    kept.reverse();
    dropped.reverse();
    (kept, dropped)
}

/// Tokens a message costs besides its content.
fn framing(counter: TokenCounter, m: &ChatMessage) -> usize {
    TOKENS_PER_MESSAGE
        + counter.count(m.role.as_str())
        + m.name
            .as_deref()
            .map_or(0, |n| counter.count(n) + TOKENS_PER_NAME)
}

fn truncate_slot(counter: TokenCounter, slot: &mut Slot, max_tokens: usize) {
    if let Cow::Owned(cut) = counter.truncate(&slot.message.content, max_tokens) {
        slot.message.content = cut;
        slot.truncated = true;
        slot.content_tokens = None;
    }
}

/// Runs of spaces/tabs become one space, runs of blank lines one blank line,
/// spaces around line breaks and at both ends go. Borrowed when nothing changes.
///
/// ```
/// use stratum_models::compress::collapse_whitespace;
///
/// assert_eq!(collapse_whitespace("  a \t b\n\n\n\nc  "), "a b\n\nc");
/// assert_eq!(collapse_whitespace("already tidy"), "already tidy");
/// ```
pub fn collapse_whitespace(text: &str) -> Cow<'_, str> {
    let mut out = String::with_capacity(text.len());
    let mut blank_before = false;
    for line in text.trim().split('\n') {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_none() {
            blank_before = true;
            continue;
        }
        if !out.is_empty() {
            // Keep at most one blank line between paragraphs.
            out.push_str(if blank_before { "\n\n" } else { "\n" });
        }
        blank_before = false;
        for (i, word) in words.enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    }
}

/// Lowercased alphanumeric words: the text two near-duplicates share.
fn normalized_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn hash_words(words: &[String]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    words.hash(&mut h);
    h.finish()
}

/// Hashes of every run of `k` words (the whole text when shorter), sorted and unique.
fn shingles(words: &[String], k: usize) -> Vec<u64> {
    let mut out: Vec<u64> = if words.len() <= k {
        vec![hash_words(words)]
    } else {
        words.windows(k).map(hash_words).collect()
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// |A ∩ B| / |A ∪ B| over sorted unique slices.
fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - both;
    if union == 0 {
        1.0
    } else {
        both as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn compressor(budget: usize) -> ContextCompressor {
        ContextCompressor::new(
            CompressionConfig::builder()
                .budget_tokens(budget)
                .build()
                .unwrap(),
        )
        .unwrap()
    }

    fn minimum(counter: TokenCounter, messages: &[ChatMessage]) -> usize {
        REPLY_PRIMING_TOKENS
            + messages
                .iter()
                .filter(|m| m.role.is_instruction())
                .map(|m| framing(counter, m))
                .sum::<usize>()
    }

    /// Checks every promise against a recount; `collapse` says whether contents were collapsed.
    fn check(
        input: &[ChatMessage],
        out: &CompressedContext,
        budget: usize,
        collapse: bool,
    ) -> Result<(), TestCaseError> {
        let counter = TokenCounter::new(Encoding::O200kBase).unwrap();
        let after = counter.count_chat(&out.messages);
        prop_assert!(after <= budget, "{after} > {budget}");
        prop_assert_eq!(out.report.tokens_after, after as i64);
        prop_assert_eq!(out.report.tokens_before, counter.count_chat(input) as i64);
        prop_assert_eq!(
            out.report.tokens_saved,
            (out.report.tokens_before - out.report.tokens_after).max(0)
        );
        prop_assert!(
            (out.report.ratio - out.report.tokens_before as f64 / after as f64).abs() < 1e-9
        );
        prop_assert_eq!(out.report.messages_after, out.messages.len() as i64);
        prop_assert!(out.report.validate().is_ok());
        prop_assert_eq!(out.origins.len(), out.messages.len());
        // Order kept: origins strictly increase.
        let origins: Vec<usize> = out.origins.iter().flatten().copied().collect();
        prop_assert!(origins.windows(2).all(|w| w[0] < w[1]), "{origins:?}");
        // Every instruction kept.
        for (i, m) in input.iter().enumerate() {
            if m.role.is_instruction() {
                prop_assert!(origins.contains(&i), "system message {i} dropped");
            }
        }
        // Each kept message is a prefix of its (collapsed) original, same role.
        for (m, origin) in out.messages.iter().zip(&out.origins) {
            if let Some(o) = origin {
                let original = &input[*o];
                prop_assert_eq!(&m.role, &original.role);
                let base = if collapse {
                    collapse_whitespace(&original.content)
                } else {
                    Cow::Borrowed(original.content.as_str())
                };
                prop_assert!(
                    base.starts_with(m.content.as_str()),
                    "{:?} is not a prefix of {:?}",
                    m.content,
                    base
                );
            }
        }
        Ok(())
    }

    const WORDS: [&str; 12] = [
        "the", "model", "cache", "token", "Paris", "budget", "is", "a", "of", "日本", "🎉", "data",
    ];

    fn content() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            (
                0usize..WORDS.len(),
                prop_oneof![
                    Just(" "),
                    Just("  "),
                    Just("\n"),
                    Just("\n\n\n"),
                    Just("\t")
                ],
            ),
            0..40,
        )
        .prop_map(|ws| {
            ws.into_iter()
                .map(|(w, sep)| format!("{}{sep}", WORDS[w]))
                .collect()
        })
    }

    fn conversation() -> impl Strategy<Value = Vec<ChatMessage>> {
        (
            proptest::option::of(content()),
            proptest::collection::vec((0u8..5, content()), 0..30),
        )
            .prop_map(|(system, turns)| {
                let mut out: Vec<ChatMessage> =
                    system.into_iter().map(ChatMessage::system).collect();
                let mut last = String::new();
                for (kind, text) in turns {
                    match kind {
                        0 => out.push(ChatMessage::user(text.clone())),
                        1 => out.push(ChatMessage::assistant(text.clone())),
                        2 => out.push(ChatMessage::user(last.clone())), // an exact repeat
                        3 => out.push(ChatMessage::new(Role::Developer, text.clone())),
                        _ => out.push(ChatMessage::user(text.clone()).with_name("ann")),
                    }
                    last = text;
                }
                out
            })
    }

    fn failing(
        _: &[ChatMessage],
        _: usize,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        Err("model unavailable".into())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn compression_keeps_every_promise(
            input in conversation(),
            budget in 1usize..1_500,
            collapse in any::<bool>(),
            dedupe in any::<bool>(),
            cap in proptest::option::of(1usize..80),
            summarize in any::<bool>(),
        ) {
            let mut builder = CompressionConfig::builder()
                .budget_tokens(budget)
                .collapse_whitespace(collapse)
                .dedupe(dedupe)
                .summary_tokens(40);
            if let Some(cap) = cap {
                builder = builder.max_message_tokens(cap);
            }
            let compressor = ContextCompressor::new(builder.build().unwrap()).unwrap();
            let result = if summarize {
                compressor.compress_with(&input, &ExtractiveSummarizer)
            } else {
                compressor.compress(&input)
            };
            let floor = minimum(compressor.counter(), &input);
            match result {
                Ok(out) => {
                    prop_assert!(budget >= floor);
                    check(&input, &out, budget, collapse)?;
                    prop_assert!(summarize || !out.report.summarized);
                }
                Err(CompressError::BudgetTooSmall { budget: b, minimum }) => {
                    prop_assert_eq!(b, budget);
                    prop_assert_eq!(minimum, floor);
                    prop_assert!(budget < floor);
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }

    #[test]
    fn exact_duplicates_keep_the_latest_copy() {
        let q = "What is the capital of France please?";
        let input = vec![
            ChatMessage::system("Be brief."),
            ChatMessage::user(q),
            ChatMessage::assistant("Paris."),
            ChatMessage::user(q),
        ];
        let out = compressor(4096).compress(&input).unwrap();
        assert_eq!(out.origins, vec![Some(0), Some(2), Some(3)]);
        assert_eq!(out.report.duplicates_dropped, 1);
    }

    #[test]
    fn near_duplicates_are_dropped_short_replies_are_not() {
        let input = vec![
            ChatMessage::user("Please summarise the quarterly report for the finance team today."),
            ChatMessage::assistant("ok"),
            ChatMessage::user("please summarise the quarterly report for the finance team, today!"),
            ChatMessage::assistant("ok"),
        ];
        let out = compressor(4096).compress(&input).unwrap();
        assert_eq!(out.origins, vec![Some(1), Some(2), Some(3)]);
        // Below the threshold: kept.
        let other = vec![
            ChatMessage::user("Please summarise the quarterly report for the finance team today."),
            ChatMessage::user("Please summarise the yearly report for the legal team tomorrow."),
        ];
        assert_eq!(compressor(4096).compress(&other).unwrap().messages.len(), 2);
    }

    #[test]
    fn whitespace_runs_collapse_but_inner_text_survives() {
        let out = compressor(4096)
            .compress(&[ChatMessage::user("  a\t\t b  \n\n\n\n c ")])
            .unwrap();
        assert_eq!(out.messages[0].content, "a b\n\nc");
    }

    #[test]
    fn the_newest_turn_is_truncated_rather_than_dropped() {
        let long = "word ".repeat(2_000);
        let input = vec![
            ChatMessage::system("Be brief."),
            ChatMessage::user("older"),
            ChatMessage::user(long.clone()),
        ];
        let out = compressor(100).compress(&input).unwrap();
        assert_eq!(out.origins, vec![Some(0), Some(2)]);
        assert!(long.starts_with(&out.messages[1].content) && !out.messages[1].content.is_empty());
        assert_eq!(out.report.truncated, 1);
        assert_eq!(out.report.budget_dropped, 1);
        assert_eq!(out.report.tokens_after, 100);
    }

    #[test]
    fn an_oversized_system_message_is_cut_to_fit() {
        let input = vec![
            ChatMessage::system("rule ".repeat(500)),
            ChatMessage::user("hi"),
        ];
        let out = compressor(50).compress(&input).unwrap();
        assert_eq!(out.origins[0], Some(0));
        assert!(out.report.tokens_after <= 50);
    }

    #[test]
    fn too_small_a_budget_is_a_typed_error() {
        let err = compressor(5)
            .compress(&[ChatMessage::system("x")])
            .unwrap_err();
        assert!(
            matches!(
                err,
                CompressError::BudgetTooSmall {
                    budget: 5,
                    minimum: 7
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn the_summary_takes_the_place_of_dropped_turns() {
        let mut input = vec![ChatMessage::system("Be brief.")];
        for i in 0..30 {
            input.push(ChatMessage::user(format!(
                "Turn {i} talks about topic {i}. It goes on and on about it at length."
            )));
        }
        let out = compressor(200)
            .compress_with(&input, &ExtractiveSummarizer)
            .unwrap();
        assert!(out.report.summarized);
        let at = out.origins.iter().position(Option::is_none).unwrap();
        assert_eq!(
            at, 1,
            "right after the system message, before the kept turns"
        );
        assert!(
            out.messages[at]
                .content
                .starts_with("Earlier in the conversation:")
        );
        assert!(out.report.tokens_after <= 200);
        // Nothing dropped, no summary.
        let small = compressor(4096)
            .compress_with(&input[..3], &ExtractiveSummarizer)
            .unwrap();
        assert!(!small.report.summarized);
    }

    #[test]
    fn a_failing_summarizer_is_reported() {
        let input: Vec<ChatMessage> = (0..40)
            .map(|i| ChatMessage::user(format!("message {i} with some padding words")))
            .collect();
        let err = compressor(60).compress_with(&input, &failing).unwrap_err();
        assert!(matches!(err, CompressError::Summarizer(_)));
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = CompressionConfig::builder()
            .near_duplicate_threshold(0.0)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "near_duplicate_threshold");
        let e = CompressionConfig::builder()
            .shingle_words(0)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "shingle_words");
        let e = CompressionConfig::builder()
            .max_message_tokens(0)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "max_message_tokens");
        assert!(serde_json::from_str::<CompressionConfig>(r#"{"budget_tokns": 5}"#).is_err());
    }

    #[test]
    fn jaccard_of_sorted_sets() {
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(jaccard(&[], &[]), 1.0);
    }
}
