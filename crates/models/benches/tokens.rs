//! Token counting throughput (tokens/s) for cl100k_base and o200k_base:
//! stratum's shared `TokenCounter` against tiktoken-rs used directly (its
//! singleton), plus the chat-format count against
//! `tiktoken_rs::num_tokens_from_messages`. Prints the medians and the
//! stratum/peer ratio.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stratum_models::{ChatMessage, Encoding, TokenCounter};

/// About 10k tokens of mixed prose, numbers, code and non-ASCII text.
fn corpus() -> String {
    let words = [
        "the",
        "model",
        "returned",
        "a",
        "response",
        "in",
        "1.25",
        "seconds;",
        "cache",
        "hit",
        "ratio",
        "was",
        "0.73",
        "fn",
        "main()",
        "{",
        "println!(\"{}\",",
        "x);",
        "}",
        "Größe",
        "naïve",
        "東京",
        "emoji🎉",
        "user:",
        "assistant:",
        "tokens",
        "budget",
        "context",
    ];
    let mut text = String::new();
    let mut state = 0x2545_f491_u32;
    while text.len() < 40_000 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        text.push_str(words[state as usize % words.len()]);
        text.push(if state.is_multiple_of(11) { '\n' } else { ' ' });
    }
    text
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<F: FnMut()>(mut f: F) -> Duration {
    for _ in 0..3 {
        f();
    }
    median(
        (0..31)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn bench(c: &mut Criterion) {
    let text = corpus();
    let chat: Vec<ChatMessage> = text
        .split('\n')
        .enumerate()
        .map(|(i, line)| {
            if i % 2 == 0 {
                ChatMessage::user(line)
            } else {
                ChatMessage::assistant(line)
            }
        })
        .collect();
    let theirs: Vec<tiktoken_rs::ChatCompletionRequestMessage> = chat
        .iter()
        .map(|m| tiktoken_rs::ChatCompletionRequestMessage {
            role: m.role.as_str().to_owned(),
            content: Some(m.content.clone()),
            ..Default::default()
        })
        .collect();

    for (encoding, peer, model) in [
        (
            Encoding::Cl100kBase,
            tiktoken_rs::cl100k_base_singleton(),
            "gpt-4",
        ),
        (
            Encoding::O200kBase,
            tiktoken_rs::o200k_base_singleton(),
            "gpt-4o",
        ),
    ] {
        let counter = TokenCounter::new(encoding).unwrap();
        let tokens = counter.count(&text) as u64;
        assert_eq!(tokens as usize, peer.encode_ordinary(&text).len());
        assert_eq!(
            counter.count_chat(&chat),
            tiktoken_rs::num_tokens_from_messages(model, &theirs).unwrap()
        );

        let mut group = c.benchmark_group(format!("count/{}", encoding.name()));
        group
            .measurement_time(Duration::from_secs(3))
            .sample_size(30);
        group.throughput(Throughput::Elements(tokens));
        group.bench_function("stratum", |b| b.iter(|| counter.count(black_box(&text))));
        group.bench_function("tiktoken-rs", |b| {
            b.iter(|| peer.encode_ordinary(black_box(&text)).len())
        });
        group.bench_function("stratum chat", |b| {
            b.iter(|| counter.count_chat(black_box(&chat)))
        });
        group.bench_function("tiktoken-rs chat", |b| {
            b.iter(|| tiktoken_rs::num_tokens_from_messages(model, black_box(&theirs)).unwrap())
        });
        group.finish();

        let ours = time(|| {
            black_box(counter.count(black_box(&text)));
        });
        let theirs_plain = time(|| {
            black_box(peer.encode_ordinary(black_box(&text)).len());
        });
        let ours_chat = time(|| {
            black_box(counter.count_chat(black_box(&chat)));
        });
        let theirs_chat = time(|| {
            black_box(tiktoken_rs::num_tokens_from_messages(model, black_box(&theirs)).unwrap());
        });
        let rate = |d: Duration| tokens as f64 / d.as_secs_f64() / 1e6;
        println!(
            "{}: {tokens} tokens, {} messages | text: stratum {:?} ({:.2} M tokens/s), tiktoken-rs {:?} ({:.2} M tokens/s), stratum/peer time ratio {:.3} | chat: stratum {:?}, tiktoken-rs num_tokens_from_messages {:?}, ratio {:.3}",
            encoding.name(),
            chat.len(),
            ours,
            rate(ours),
            theirs_plain,
            rate(theirs_plain),
            ours.as_secs_f64() / theirs_plain.as_secs_f64(),
            ours_chat,
            theirs_chat,
            ours_chat.as_secs_f64() / theirs_chat.as_secs_f64(),
        );
    }

    // The cost a shared encoder avoids (tiktoken-rs #81): building the tables per call.
    let build = time(|| {
        black_box(tiktoken_rs::cl100k_base().unwrap());
    });
    let shared = time(|| {
        black_box(TokenCounter::new(Encoding::Cl100kBase).unwrap());
    });
    println!("cl100k_base table build per call: {build:?}; shared TokenCounter::new: {shared:?}");
}

criterion_group!(benches, bench);
criterion_main!(benches);
