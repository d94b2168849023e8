//! Compressing a 100-message conversation to a 4k-token budget (o200k_base).
//!
//! The peer is what a user would otherwise write (LangChain's `trim_messages`
//! with `strategy="last"`, `include_system=True`): keep the system message and
//! the newest messages that fit, counted per message with tiktoken-rs. Stratum
//! does more (whitespace, duplicates, truncation at a token boundary), so the
//! printed figures include the tokens each keeps.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use stratum_models::{ChatMessage, CompressionConfig, ContextCompressor, TokenCounter};

const BUDGET: usize = 4_096;

/// A system prompt and 99 turns of 40-250 words, with whitespace runs and
/// every seventh user turn a repeat of an earlier one.
fn conversation() -> Vec<ChatMessage> {
    let words = [
        "please",
        "summarise",
        "the",
        "report",
        "for",
        "Q3",
        "revenue",
        "grew",
        "by",
        "12%",
        "while",
        "costs",
        "fell;",
        "the",
        "team",
        "shipped",
        "three",
        "features",
        "and",
        "fixed",
        "bugs",
        "in",
        "the",
        "cache",
        "layer",
        "latency",
        "p99",
        "dropped",
        "to",
        "40ms",
    ];
    let mut state = 0x9e37_79b9_u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut out = vec![ChatMessage::system(
        "You are a meticulous financial analyst. Answer with numbers and cite the report section.",
    )];
    let mut users: Vec<String> = Vec::new();
    for i in 0..99 {
        let len = 40 + (next() % 210) as usize;
        let mut text = String::new();
        for j in 0..len {
            text.push_str(words[next() as usize % words.len()]);
            text.push_str(if j % 17 == 16 {
                "\n\n\n"
            } else if j % 5 == 4 {
                "   "
            } else {
                " "
            });
        }
        if i % 2 == 0 {
            if i % 14 == 0 && !users.is_empty() {
                text = users[users.len() / 2].clone();
            }
            users.push(text.clone());
            out.push(ChatMessage::user(text));
        } else {
            out.push(ChatMessage::assistant(text));
        }
    }
    out
}

/// The peer: system message plus the newest messages that fit, counted with tiktoken-rs.
fn trim_last(messages: &[ChatMessage], budget: usize) -> Vec<ChatMessage> {
    let bpe = tiktoken_rs::o200k_base_singleton();
    let cost = |m: &ChatMessage| {
        3 + bpe.encode_ordinary(m.role.as_str()).len() + bpe.encode_ordinary(&m.content).len()
    };
    let mut room = budget - 3;
    let mut out = Vec::new();
    if let Some(system) = messages.first().filter(|m| m.role.as_str() == "system") {
        room -= cost(system);
        out.push(system.clone());
    }
    let mut tail = Vec::new();
    for m in messages.iter().skip(out.len()).rev() {
        let c = cost(m);
        if c > room {
            break;
        }
        room -= c;
        tail.push(m.clone());
    }
    tail.reverse();
    out.extend(tail);
    out
}

fn median_of<F: FnMut()>(mut f: F) -> Duration {
    for _ in 0..3 {
        f();
    }
    let mut samples: Vec<Duration> = (0..31)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn bench(c: &mut Criterion) {
    let chat = conversation();
    assert_eq!(chat.len(), 100);
    let compressor = ContextCompressor::new(
        CompressionConfig::builder()
            .budget_tokens(BUDGET)
            .build()
            .unwrap(),
    )
    .unwrap();
    let counter = TokenCounter::new(compressor.config().encoding).unwrap();

    let mut group = c.benchmark_group("compress/100 messages to 4096");
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    group.bench_function("stratum", |b| {
        b.iter(|| compressor.compress(black_box(&chat)).unwrap())
    });
    group.bench_function("trim_messages (last)", |b| {
        b.iter(|| trim_last(black_box(&chat), BUDGET))
    });
    group.finish();

    let ours = median_of(|| {
        black_box(compressor.compress(black_box(&chat)).unwrap());
    });
    let peer = median_of(|| {
        black_box(trim_last(black_box(&chat), BUDGET));
    });
    let out = compressor.compress(&chat).unwrap();
    let trimmed = trim_last(&chat, BUDGET);
    let r = out.report;
    println!(
        "100 messages, {} tokens -> budget {BUDGET}: stratum {ours:?} ({} tokens, {} messages, ratio {:.2}, {} duplicates dropped, {} truncated); trim_messages {peer:?} ({} tokens, {} messages); stratum/peer time ratio {:.2}",
        r.tokens_before,
        r.tokens_after,
        r.messages_after,
        r.ratio,
        r.duplicates_dropped,
        r.truncated,
        counter.count_chat(&trimmed),
        trimmed.len(),
        ours.as_secs_f64() / peer.as_secs_f64(),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
