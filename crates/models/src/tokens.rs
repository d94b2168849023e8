//! Exact token counting with `tiktoken-rs`: the cl100k_base and o200k_base
//! encodings, built once per process and shared, plus the chat format's
//! per-message overhead.

use std::borrow::Cow;
use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use crate::{ChatMessage, TokenizerError};

/// Tokens the chat format adds around every message (`<|start|>{role}\n ... <|end|>`),
/// as OpenAI's cookbook specifies for every current chat model.
pub const TOKENS_PER_MESSAGE: usize = 3;
/// Extra token when a message carries a `name`.
pub const TOKENS_PER_NAME: usize = 1;
/// Tokens that prime the reply (`<|start|>assistant<|message|>`), counted once per request.
pub const REPLY_PRIMING_TOKENS: usize = 3;

/// Inputs at least this long are counted on tokio's blocking pool by
/// [`TokenCounter::count_async`]; shorter ones cost less than the hand-off
/// (about 4 ms per 10k tokens, so 16 KiB is well under a millisecond).
pub const ASYNC_INLINE_LIMIT_BYTES: usize = 16 * 1024;

/// A BPE encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Encoding {
    /// GPT-4, GPT-3.5-turbo, text-embedding-3.
    Cl100kBase,
    /// GPT-4o, GPT-4.1, GPT-5 and the o-series.
    O200kBase,
}

impl Encoding {
    /// The encoding's name as tiktoken spells it.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
        }
    }

    /// The encoding an OpenAI model uses, by name prefix; `None` when unknown.
    ///
    /// ```
    /// use stratum_models::Encoding;
    ///
    /// assert_eq!(Encoding::for_model("gpt-4o-mini"), Some(Encoding::O200kBase));
    /// assert_eq!(Encoding::for_model("gpt-4-0613"), Some(Encoding::Cl100kBase));
    /// assert_eq!(Encoding::for_model("claude-3"), None);
    /// ```
    pub fn for_model(model: &str) -> Option<Encoding> {
        let model = model.trim().to_ascii_lowercase();
        // o200k first: "gpt-4o" and "gpt-4.1" also start with "gpt-4".
        const O200K: [&str; 7] = ["gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4"];
        const CL100K: [&str; 4] = ["gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada"];
        if O200K.iter().any(|p| model.starts_with(p)) {
            Some(Encoding::O200kBase)
        } else if CL100K.iter().any(|p| model.starts_with(p)) {
            Some(Encoding::Cl100kBase)
        } else {
            None
        }
    }
}

type Built = Result<CoreBPE, TokenizerError>;

/// Builds an encoding's BPE tables the first time it is asked for; every later
/// call shares them (a rebuild costs 300-500 ms, tiktoken-rs #81).
fn shared_bpe(encoding: Encoding) -> Result<&'static CoreBPE, TokenizerError> {
    static CL100K: OnceLock<Built> = OnceLock::new();
    static O200K: OnceLock<Built> = OnceLock::new();
    let (cell, build): (&OnceLock<Built>, fn() -> anyhow_free::Result) = match encoding {
        Encoding::Cl100kBase => (&CL100K, anyhow_free::cl100k),
        Encoding::O200kBase => (&O200K, anyhow_free::o200k),
    };
    let built = cell.get_or_init(|| {
        let started = std::time::Instant::now();
        let bpe = build().map_err(|reason| TokenizerError::Build {
            encoding: encoding.name(),
            reason,
        });
        tracing::debug!(
            encoding = encoding.name(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "built tokenizer"
        );
        bpe
    });
    built.as_ref().map_err(Clone::clone)
}

/// Wraps the tiktoken-rs constructors so their error type stays private.
mod anyhow_free {
    pub(super) type Result = std::result::Result<tiktoken_rs::CoreBPE, String>;

    pub(super) fn cl100k() -> Result {
        tiktoken_rs::cl100k_base().map_err(|e| e.to_string())
    }

    pub(super) fn o200k() -> Result {
        tiktoken_rs::o200k_base().map_err(|e| e.to_string())
    }
}

/// Counts tokens with one encoding. Cheap to copy: it holds a reference to the
/// process-wide tables.
///
/// ```
/// use stratum_models::{ChatMessage, Encoding, TokenCounter};
///
/// let counter = TokenCounter::new(Encoding::Cl100kBase)?;
/// assert_eq!(counter.count("hello world"), 2);
/// assert_eq!(counter.count("Be brief."), 3);
/// // Per message: 3 of framing + the role ("system", "user": 1 each) + the
/// // content; then 3 to prime the reply.
/// let chat = [ChatMessage::system("Be brief."), ChatMessage::user("hello world")];
/// assert_eq!(counter.count_chat(&chat), (3 + 1 + 3) + (3 + 1 + 2) + 3);
/// # Ok::<(), stratum_models::TokenizerError>(())
/// ```
#[derive(Clone, Copy)]
pub struct TokenCounter {
    encoding: Encoding,
    bpe: &'static CoreBPE,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCounter")
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl TokenCounter {
    /// A counter for `encoding`; the first call per encoding builds its tables.
    pub fn new(encoding: Encoding) -> Result<TokenCounter, TokenizerError> {
        Ok(TokenCounter {
            encoding,
            bpe: shared_bpe(encoding)?,
        })
    }

    /// The encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Tokens in `text`. Special-token text such as `<|endoftext|>` counts as
    /// ordinary text, as the chat APIs treat user content.
    pub fn count(&self, text: &str) -> usize {
        self.bpe.count_ordinary(text)
    }

    /// The token ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    /// Tokens one message costs in a chat request, framing included.
    pub fn count_message(&self, message: &ChatMessage) -> usize {
        let mut tokens =
            TOKENS_PER_MESSAGE + self.count(message.role.as_str()) + self.count(&message.content);
        if let Some(name) = &message.name {
            tokens += self.count(name) + TOKENS_PER_NAME;
        }
        tokens
    }

    /// Tokens a whole chat request costs: every message plus the reply priming.
    pub fn count_chat(&self, messages: &[ChatMessage]) -> usize {
        messages
            .iter()
            .map(|m| self.count_message(m))
            .sum::<usize>()
            + REPLY_PRIMING_TOKENS
    }

    /// The longest prefix of `text` that is at most `max_tokens` tokens, cut at
    /// a token boundary (and a char boundary: a token may hold part of a
    /// UTF-8 sequence). Borrowed when `text` already fits.
    ///
    /// ```
    /// use stratum_models::{Encoding, TokenCounter};
    ///
    /// let counter = TokenCounter::new(Encoding::O200kBase)?;
    /// let cut = counter.truncate("one two three four five", 2);
    /// assert_eq!(cut, "one two");
    /// # Ok::<(), stratum_models::TokenizerError>(())
    /// ```
    pub fn truncate<'a>(&self, text: &'a str, max_tokens: usize) -> Cow<'a, str> {
        let tokens = self.encode(text);
        if tokens.len() <= max_tokens {
            return Cow::Borrowed(text);
        }
        let mut keep = max_tokens;
        // Re-encoding a decoded prefix can merge differently at the cut; each
        // round removes at least one token, so this ends.
        while keep > 0 {
            let prefix = self.decode_prefix(&tokens[..keep]);
            let recount = self.count(&prefix);
            if recount <= max_tokens {
                return Cow::Owned(prefix);
            }
            keep = keep.saturating_sub((recount - max_tokens).max(1));
        }
        Cow::Owned(String::new())
    }

    /// Decodes tokens that came from `encode` and cuts any partial UTF-8 sequence at the end.
    fn decode_prefix(&self, tokens: &[u32]) -> String {
        // Tokens from our own `encode` are always in the table; an unknown one
        // would only shorten the prefix.
        let bytes = self.bpe.decode_bytes(tokens).unwrap_or_default();
        match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let mut bytes = e.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).unwrap_or_default()
            }
        }
    }

    /// Counts `text` without blocking an async runtime: inputs of at least
    /// [`ASYNC_INLINE_LIMIT_BYTES`] run on tokio's blocking pool.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), stratum_models::TokenizerError> {
    /// use stratum_models::{Encoding, TokenCounter};
    ///
    /// let counter = TokenCounter::new(Encoding::Cl100kBase)?;
    /// let long = "lorem ipsum ".repeat(10_000);
    /// assert_eq!(counter.count_async(long.clone()).await?, counter.count(&long));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn count_async(&self, text: impl Into<String>) -> Result<usize, TokenizerError> {
        let text = text.into();
        if text.len() < ASYNC_INLINE_LIMIT_BYTES {
            return Ok(self.count(&text));
        }
        let counter = *self;
        tokio::task::spawn_blocking(move || counter.count(&text))
            .await
            .map_err(|e| TokenizerError::Join {
                reason: e.to_string(),
            })
    }

    /// As [`TokenCounter::count_chat`], on the blocking pool when the request is large.
    #[cfg(feature = "tokio")]
    pub async fn count_chat_async(
        &self,
        messages: Vec<ChatMessage>,
    ) -> Result<usize, TokenizerError> {
        let bytes: usize = messages.iter().map(|m| m.content.len()).sum();
        if bytes < ASYNC_INLINE_LIMIT_BYTES {
            return Ok(self.count_chat(&messages));
        }
        let counter = *self;
        tokio::task::spawn_blocking(move || counter.count_chat(&messages))
            .await
            .map_err(|e| TokenizerError::Join {
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counters() -> [TokenCounter; 2] {
        [
            TokenCounter::new(Encoding::Cl100kBase).unwrap(),
            TokenCounter::new(Encoding::O200kBase).unwrap(),
        ]
    }

    #[test]
    fn tables_are_built_once_and_shared() {
        let a = TokenCounter::new(Encoding::O200kBase).unwrap();
        let b = TokenCounter::new(Encoding::O200kBase).unwrap();
        assert!(std::ptr::eq(a.bpe, b.bpe));
    }

    #[test]
    fn chat_count_matches_tiktoken_rs_reference() {
        // tiktoken-rs implements the cookbook's num_tokens_from_messages; ours must agree.
        let messages = vec![
            ChatMessage::system("You are a helpful assistant."),
            ChatMessage::user("What is the capital of France?").with_name("alice"),
            ChatMessage::assistant("Paris. It has been the capital since 987."),
        ];
        let theirs: Vec<tiktoken_rs::ChatCompletionRequestMessage> = messages
            .iter()
            .map(|m| tiktoken_rs::ChatCompletionRequestMessage {
                role: m.role.as_str().to_owned(),
                content: Some(m.content.clone()),
                name: m.name.clone(),
                ..Default::default()
            })
            .collect();
        for (model, encoding) in [
            ("gpt-4", Encoding::Cl100kBase),
            ("gpt-4o", Encoding::O200kBase),
        ] {
            let expected = tiktoken_rs::num_tokens_from_messages(model, &theirs).unwrap();
            let ours = TokenCounter::new(encoding).unwrap().count_chat(&messages);
            assert_eq!(ours, expected, "{model}");
        }
    }

    #[test]
    fn special_token_text_is_counted_as_text() {
        for c in counters() {
            assert!(c.count("<|endoftext|>") > 1);
        }
    }

    #[test]
    fn truncate_cuts_multibyte_text_on_a_char_boundary() {
        let text = "日本語のテキストと絵文字🎉🎉🎉を含む文章です。".repeat(4);
        for c in counters() {
            for max in 0..20 {
                let cut = c.truncate(&text, max);
                assert!(c.count(&cut) <= max);
                assert!(text.starts_with(cut.as_ref()));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn truncate_never_exceeds_and_is_a_prefix(text in "\\PC{0,200}", max in 0usize..60) {
            for c in counters() {
                let cut = c.truncate(&text, max);
                prop_assert!(c.count(&cut) <= max);
                prop_assert!(text.starts_with(cut.as_ref()));
                if c.count(&text) <= max {
                    prop_assert_eq!(cut.as_ref(), text.as_str());
                }
            }
        }

        #[test]
        fn counting_is_additive_over_messages(contents in proptest::collection::vec("\\PC{0,40}", 0..6)) {
            for c in counters() {
                let messages: Vec<ChatMessage> = contents.iter().map(ChatMessage::user).collect();
                let sum: usize = messages.iter().map(|m| c.count_message(m)).sum();
                prop_assert_eq!(c.count_chat(&messages), sum + REPLY_PRIMING_TOKENS);
            }
        }
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn async_count_agrees_on_both_paths() {
        let c = TokenCounter::new(Encoding::Cl100kBase).unwrap();
        let short = "a short text";
        let long = "a much longer text, ".repeat(2_000);
        assert!(long.len() >= ASYNC_INLINE_LIMIT_BYTES);
        assert_eq!(c.count_async(short).await.unwrap(), c.count(short));
        assert_eq!(c.count_async(long.clone()).await.unwrap(), c.count(&long));
        let chat = vec![ChatMessage::user(long)];
        assert_eq!(
            c.count_chat_async(chat.clone()).await.unwrap(),
            c.count_chat(&chat)
        );
    }
}
