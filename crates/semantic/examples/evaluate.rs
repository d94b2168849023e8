//! `cargo xtask semantic`: the semantic cache measured on a labelled
//! paraphrase set: hit and wrong-hit rates on the held-out half (fixed
//! thresholds against learned ones), embedding and lookup latency, memory
//! per entry; the tables replace the generated section of docs/semantic.md.
//!
//! The set: the same Bible verse in two public-domain English translations
//! (King James Version, World English Bible; Debian's `sword-text-kjv` and
//! `sword-text-web`) is a paraphrase; other verses are not; and mechanical
//! edits of a verse (a negation added or removed, a number or a name
//! changed) are hard negatives. docs/semantic.md says why and how.

// An evaluation program: printing is its job, and a failure ends it with a
// message.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss
)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stratum_semantic::{
    EntryId, ExactIndex, FlatBinaryIndex, HitPolicy, IndexConfig, IndexSettings, LocalEmbedder,
    Lookup, NearestNeighbours, Neighbour, Quantization, Scope, SemanticCache, SemanticCacheConfig,
    ThresholdConfig, VectorIndex, default_model_dir, dot, normalize,
};

/// Per split: verses whose WEB text is cached and whose KJV text is asked.
const MATCHED: usize = 600;
/// Per split: verses asked (KJV) whose paraphrase is not cached.
const NOVEL: usize = 600;
/// Per split: verses cached (WEB) and never asked, to crowd the index.
const DISTRACTORS: usize = 1_400;
/// Per split: at most this many hard negatives.
const HARD: usize = 600;
/// Verses embedded for the index measurement on real embeddings (the
/// first of the aligned pairs; embedding all 21,624 would take minutes more
/// on this machine).
const REAL: usize = 10_000;
/// The fixed thresholds (GPTCache's style) and target error rates.
const FIXED: [f32; 3] = [0.7, 0.8, 0.9];
const TARGETS: [f64; 3] = [0.01, 0.02, 0.05];

/// The value after `flag` on the command line.
fn flag_value(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Only the cost part (lookup latency, the index settings, memory), no
    // quality, nothing written: minutes, for trying index settings.
    let cost_only = std::env::args().any(|a| a == "--cost-only");
    let sword = PathBuf::from(
        std::env::var_os("STRATUM_SWORD_DIR")
            .expect("STRATUM_SWORD_DIR (run through `cargo xtask semantic`)"),
    );
    let model_dir = default_model_dir().expect("no model folder: set STRATUM_MODEL_DIR");
    let embedder =
        LocalEmbedder::from_dir(&model_dir).expect("load the model (`cargo xtask fetch-model`)");

    let pairs = aligned_pairs(&sword);
    println!("{} aligned, unique verse pairs", pairs.len());
    let mut out = String::new();
    let mut quality = None;
    if !cost_only {
        let (tune, held) = splits(&pairs);
        println!("embedding the two splits ...");
        let started = Instant::now();
        let tune = embed_split(&embedder, &tune);
        let held = embed_split(&embedder, &held);
        println!("embedded in {:.1} s", started.elapsed().as_secs_f64());

        write_demo_set(&tune, &held);
        if std::env::args().any(|a| a == "--demo-set-only") {
            return;
        }
        report_quality(&mut out, &tune, &held);
        report_embedding(&mut out, &embedder, &held.split);
        quality = Some((tune.split, held.split));
    }
    let real_limit = flag_value("--real")
        .map(|n| n.parse().expect("--real N"))
        .unwrap_or(if quick { 4_000 } else { REAL });
    let mut sets: Vec<LookupSet> = Vec::new();
    if real_limit > 0 {
        // The real set first: it is measured while the process's heap is
        // fresh (a set filled after another's cache was freed reuses its
        // memory, so its resident-set growth reads low).
        let real = real_data(&embedder, &pairs, real_limit);
        sets.push((format!("{} verses", real.0.len()), real.0, real.1));
    }
    let sizes: Vec<usize> = match flag_value("--sizes") {
        Some(list) => list
            .split(',')
            .map(|n| n.parse().expect("--sizes N,N"))
            .collect(),
        None if quick => vec![10_000],
        None => vec![10_000, 100_000],
    };
    sets.extend(sizes.iter().map(|&n| {
        let (vectors, queries) = lookup_data(n);
        (format!("{n} random"), vectors, queries)
    }));
    let graphs = flag_value("--graphs").map_or_else(default_graphs, |g| parse_graphs(&g));
    report_lookup(&mut out, &sets);
    // The largest random set, then the real one.
    let mut measured: Vec<&LookupSet> = sets.iter().rev().take(1).collect();
    if real_limit > 0 && sets.len() > 1 {
        measured.push(&sets[0]);
    }
    for (name, vectors, queries) in measured {
        report_index_settings(&mut out, name, vectors, queries, &graphs);
    }
    let _ = writeln!(
        out,
        "The index alone (`NearestNeighbours::search`, k = 1, 2,000 queries as above); a graph is its storage, degree M \
         (usearch's `connectivity`) and breadth when adding (`expansion_add`); breadth is usearch's \
         `expansion_search`; \"graph\" reports the similarity the quantized graph computed, \"rescored n\" \
         reads the graph's best n candidates and ranks and reports them by the exact cosine of their f32 \
         vectors kept beside the graph (`IndexSettings::rescore`); b1 stores each dimension's sign and ranks by \
         Hamming distance, always rescored; flat one-bit is `FlatBinaryIndex`, no graph: every entry's sign bits \
         scanned, the n of smallest Hamming distance rescored exactly; the similarity error is the largest difference between the \
         similarity reported and the exact cosine of the entry returned; insert is the mean time of one add \
         while the graph filled; memory is `memory_bytes()` over the entries (graph, vectors, maps; the \
         rescored rows include the f32 copies, 1,536 B per entry, which the graph rows leave out).\n"
    );
    println!("\n{out}");
    match quality {
        Some((tune, held)) => write_docs(&out, pairs.len(), &held, &tune),
        None => println!("(--cost-only: docs/semantic.md left as it is)"),
    }
}

// ---------------------------------------------------------------- the data

/// One verse in both translations.
#[derive(Debug, Clone)]
struct Pair {
    reference: String,
    kjv: String,
    web: String,
}

/// Reads a SWORD zText module's testament: (chapter osisID, verse position
/// in the chapter, cleaned text) for every verse slot.
fn read_ztext(dir: &Path, testament: &str) -> Vec<(String, usize, String)> {
    let read = |ext: &str| std::fs::read(dir.join(format!("{testament}.{ext}"))).unwrap();
    let (bzs, bzv, bzz) = (read("bzs"), read("bzv"), read("bzz"));
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
    let mut blocks: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut chapter: Option<String> = None;
    let mut position = 0;
    let mut out = Vec::new();
    for i in 0..bzv.len() / 10 {
        let (block, offset) = (u32_at(&bzv, i * 10), u32_at(&bzv, i * 10 + 4));
        let size = usize::from(u16::from_le_bytes([bzv[i * 10 + 8], bzv[i * 10 + 9]]));
        let raw = if size == 0 {
            String::new()
        } else {
            let text = blocks.entry(block).or_insert_with(|| {
                let (start, len) = (u32_at(&bzs, block * 12), u32_at(&bzs, block * 12 + 4));
                let mut text = Vec::new();
                flate2::read::ZlibDecoder::new(&bzz[start..start + len])
                    .read_to_end(&mut text)
                    .unwrap();
                text
            });
            String::from_utf8_lossy(&text[offset..offset + size]).into_owned()
        };
        // A chapter's heading slot holds its start marker; verse slots follow.
        if let Some(at) = raw.find("<chapter").filter(|_| raw.contains("sID=")) {
            let id = raw[at..]
                .split("osisID=\"")
                .nth(1)
                .and_then(|r| r.split('"').next());
            chapter = id.map(str::to_owned);
            position = 0;
            continue;
        }
        if let Some(c) = &chapter {
            position += 1;
            out.push((c.clone(), position, clean(&raw)));
        }
    }
    out
}

/// Drops notes, titles and markup; collapses white space.
fn clean(raw: &str) -> String {
    let mut text = String::new();
    let mut rest = raw;
    while let Some(at) = rest.find('<') {
        text.push_str(&rest[..at]);
        rest = &rest[at..];
        let skip_to = ["note", "title"]
            .iter()
            .find(|t| rest[1..].starts_with(**t) && !rest.starts_with(&format!("<{t}/")))
            .and_then(|t| rest.find(&format!("</{t}>")).map(|e| e + t.len() + 3));
        let end = skip_to.unwrap_or_else(|| rest.find('>').map_or(rest.len(), |e| e + 1));
        text.push(' ');
        rest = &rest[end..];
    }
    text.push_str(rest);
    let text = text.replace('¶', " ");
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .join(" ")
        .replace(" ,", ",")
        .replace(" .", ".")
        .replace(" ;", ";")
        .replace(" :", ":")
}

/// Verses present in both translations, in chapters whose verse counts agree
/// (the modules use different versifications), at least six words long, and
/// whose text is unique in both (a repeated verse would make a "wrong" hit
/// right).
fn aligned_pairs(sword: &Path) -> Vec<Pair> {
    let load = |module: &str| {
        let mut all = read_ztext(&sword.join(module), "ot");
        all.extend(read_ztext(&sword.join(module), "nt"));
        all
    };
    let (kjv, web) = (load("engKJV2006eb"), load("engWEB2015eb"));
    let count = |v: &[(String, usize, String)]| {
        let mut c: HashMap<String, usize> = HashMap::new();
        v.iter()
            .for_each(|(ch, _, _)| *c.entry(ch.clone()).or_default() += 1);
        c
    };
    let (kjv_count, web_count) = (count(&kjv), count(&web));
    let web: HashMap<(String, usize), String> =
        web.into_iter().map(|(c, p, t)| ((c, p), t)).collect();
    let mut pairs: Vec<Pair> = kjv
        .into_iter()
        .filter(|(c, _, _)| kjv_count.get(c) == web_count.get(c))
        .filter_map(|(c, p, k)| {
            let w = web.get(&(c.clone(), p))?.clone();
            (k.split_whitespace().count() >= 6 && w.split_whitespace().count() >= 6).then(|| Pair {
                reference: format!("{c}:{p}"),
                kjv: k,
                web: w,
            })
        })
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for p in &pairs {
        *seen.entry(p.kjv.to_lowercase()).or_default() += 1;
        *seen.entry(p.web.to_lowercase()).or_default() += 1;
    }
    pairs.retain(|p| seen[&p.kjv.to_lowercase()] == 1 && seen[&p.web.to_lowercase()] == 1);
    pairs
}

/// SplitMix64: a fixed, dependency-free shuffle.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

/// FNV-1a of the verse reference: which half a verse belongs to depends on
/// nothing but its reference.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a query is, and so which answer is right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Its paraphrase is cached: only that entry answers it right.
    Matched(usize),
    /// Nothing cached answers it.
    Novel,
    /// An edit of a matched query: nothing cached answers it (the original's
    /// entry least of all).
    Hard(&'static str),
}

/// One half: cached texts (WEB) and queries (KJV, and the hard negatives).
struct Split {
    entries: Vec<String>,
    queries: Vec<(String, Kind)>,
}

fn splits(pairs: &[Pair]) -> (Split, Split) {
    let make = |held: bool, seed: u64| {
        let mut mine: Vec<&Pair> = pairs
            .iter()
            .filter(|p| (fnv(&p.reference) & 1 == 1) == held)
            .collect();
        SplitMix(seed).shuffle(&mut mine);
        assert!(
            mine.len() >= MATCHED + NOVEL + DISTRACTORS,
            "only {} verses",
            mine.len()
        );
        let (matched, rest) = mine.split_at(MATCHED);
        let (novel, rest) = rest.split_at(NOVEL);
        let distractors = &rest[..DISTRACTORS];
        let mut entries: Vec<String> = matched.iter().map(|p| p.web.clone()).collect();
        entries.extend(distractors.iter().map(|p| p.web.clone()));
        let mut queries: Vec<(String, Kind)> = matched
            .iter()
            .enumerate()
            .map(|(i, p)| (p.kjv.clone(), Kind::Matched(i)))
            .collect();
        queries.extend(novel.iter().map(|p| (p.kjv.clone(), Kind::Novel)));
        let hard: Vec<(String, Kind)> = matched
            .iter()
            .flat_map(|p| {
                hard_negatives(&p.kjv)
                    .into_iter()
                    .map(|(t, k)| (t, Kind::Hard(k)))
            })
            .take(HARD)
            .collect();
        queries.extend(hard);
        SplitMix(seed ^ 0xABCD).shuffle(&mut queries);
        Split { entries, queries }
    };
    (make(false, 18), make(true, 1_018))
}

const AUXILIARIES: [&str; 14] = [
    "is", "was", "shall", "will", "hath", "are", "were", "can", "did", "do", "should", "would",
    "may", "have",
];
const NUMBERS: [(&str, &str); 24] = [
    ("one", "two"),
    ("two", "three"),
    ("three", "four"),
    ("four", "five"),
    ("five", "six"),
    ("six", "seven"),
    ("seven", "eight"),
    ("eight", "nine"),
    ("nine", "ten"),
    ("ten", "twelve"),
    ("twelve", "ten"),
    ("twenty", "thirty"),
    ("thirty", "forty"),
    ("forty", "fifty"),
    ("fifty", "sixty"),
    ("hundred", "thousand"),
    ("thousand", "hundred"),
    ("first", "second"),
    ("second", "third"),
    ("third", "fourth"),
    ("fourth", "fifth"),
    ("fifth", "sixth"),
    ("sixth", "seventh"),
    ("seventh", "eighth"),
];
const NAMES: [&str; 20] = [
    "Moses",
    "Aaron",
    "David",
    "Saul",
    "Jesus",
    "Paul",
    "Peter",
    "John",
    "Abraham",
    "Isaac",
    "Jacob",
    "Joseph",
    "Solomon",
    "Israel",
    "Judah",
    "Egypt",
    "Jerusalem",
    "Babylon",
    "Samuel",
    "Elijah",
];

/// Mechanical edits of `text` that change its meaning: negation added or
/// removed at the first auxiliary verb, the first number word changed, the
/// first of a list of frequent names swapped for the next one.
fn hard_negatives(text: &str) -> Vec<(String, &'static str)> {
    let words: Vec<&str> = text.split(' ').collect();
    let bare = |w: &str| {
        w.trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase()
    };
    let mut out = Vec::new();
    if let Some(i) = words
        .iter()
        .position(|w| AUXILIARIES.contains(&bare(w).as_str()))
    {
        let mut edited: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        if words.get(i + 1).is_some_and(|w| bare(w) == "not") {
            edited.remove(i + 1);
        } else {
            edited.insert(i + 1, "not".to_owned());
        }
        out.push((edited.join(" "), "negation"));
    }
    let replace_first = |pick: &dyn Fn(&str) -> Option<String>| {
        let i = words.iter().position(|w| pick(w).is_some())?;
        let mut edited: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        edited[i] = pick(words[i])?;
        Some(edited.join(" "))
    };
    let number = |w: &str| {
        let b = bare(w);
        let (_, to) = NUMBERS.iter().find(|(from, _)| *from == b)?;
        let to = if w.starts_with(char::is_uppercase) {
            capitalise(to)
        } else {
            (*to).to_owned()
        };
        Some(w.replacen(w.trim_matches(|c: char| !c.is_alphanumeric()), &to, 1))
    };
    if let Some(t) = replace_first(&number) {
        out.push((t, "number"));
    }
    let name = |w: &str| {
        let b = w.trim_matches(|c: char| !c.is_alphanumeric());
        let i = NAMES.iter().position(|n| *n == b)?;
        Some(w.replacen(b, NAMES[(i + 1) % NAMES.len()], 1))
    };
    if let Some(t) = replace_first(&name) {
        out.push((t, "name"));
    }
    out
}

fn capitalise(word: &str) -> String {
    let mut c = word.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// A split with its vectors.
struct Embedded {
    split: Split,
    entries: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
}

/// Embeds in batches of texts of similar length (sorted), so little time
/// goes into padding; answers in the given order.
fn embed_all(embedder: &LocalEmbedder, texts: &[&str]) -> Vec<Vec<f32>> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let mut vectors = vec![Vec::new(); texts.len()];
    for batch in order.chunks(32) {
        let batch_texts: Vec<&str> = batch.iter().map(|&i| texts[i]).collect();
        for (&i, v) in batch.iter().zip(embedder.embed_sync(&batch_texts).unwrap()) {
            vectors[i] = v;
        }
    }
    vectors
}

fn embed_split(embedder: &LocalEmbedder, split: &Split) -> Embedded {
    let entries: Vec<&str> = split.entries.iter().map(String::as_str).collect();
    let queries: Vec<&str> = split.queries.iter().map(|(q, _)| q.as_str()).collect();
    let split = Split {
        entries: split.entries.clone(),
        queries: split.queries.clone(),
    };
    Embedded {
        entries: embed_all(embedder, &entries),
        queries: embed_all(embedder, &queries),
        split,
    }
}

// ------------------------------------------------------------ the demo set

/// Where `stratum demo`'s semantic phase reads its prompts from.
const DEMO_SET: &str = "crates/cli/src/demo/semantic_set.tsv";
/// Cached verses whose paraphrase is asked, hard negatives and novel
/// questions asked, and cached verses nobody asks, in the demo.
const DEMO_EACH: usize = 30;

/// Writes the demo's prompts, a fixed sample of the held-out half (the
/// first matched, hard and novel queries in its shuffled order, and the
/// first distractors), and the tuning half's labelled lookups, which the
/// demo calibrates with as this evaluation does.
fn write_demo_set(tune: &Embedded, held: &Embedded) {
    let (_, calibration) = run(tune, HitPolicy::Fixed { similarity: 1.0 }, &[], false);
    let clean = |t: &str| t.replace(['\t', '\n'], " ");
    let mut out = String::from(
        "# stratum demo's semantic phase: written by `cargo xtask semantic`; do not edit by hand.\n\
         # Public-domain Bible text (Debian sword-text-web and sword-text-kjv), the held-out half of\n\
         # docs/semantic.md's evaluation. Lines: `cal<TAB>similarity<TAB>right` (the tuning half's\n\
         # labelled lookups), `pair<TAB>cached (WEB)<TAB>asked (KJV, the same verse)`,\n\
         # `hard<TAB><TAB>asked (an edited KJV verse of a cached one)`, `novel<TAB><TAB>asked (nothing\n\
         # cached)`, `crowd<TAB>cached (WEB, never asked)`.\n",
    );
    for (similarity, right) in &calibration {
        out.push_str(&format!("cal\t{similarity:.4}\t{}\n", u8::from(*right)));
    }
    let take = |pick: &dyn Fn(&Kind) -> bool| {
        held.split
            .queries
            .iter()
            .filter(|(_, k)| pick(k))
            .take(DEMO_EACH)
            .cloned()
            .collect::<Vec<_>>()
    };
    for (asked, kind) in take(&|k| matches!(k, Kind::Matched(_))) {
        if let Kind::Matched(i) = kind {
            out.push_str(&format!(
                "pair\t{}\t{}\n",
                clean(&held.split.entries[i]),
                clean(&asked)
            ));
        }
    }
    for (asked, _) in take(&|k| matches!(k, Kind::Hard(_))) {
        out.push_str(&format!("hard\t\t{}\n", clean(&asked)));
    }
    for (asked, _) in take(&|k| matches!(k, Kind::Novel)) {
        out.push_str(&format!("novel\t\t{}\n", clean(&asked)));
    }
    for cached in held.split.entries[MATCHED..].iter().take(DEMO_EACH) {
        out.push_str(&format!("crowd\t{}\n", clean(cached)));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::write(root.join(DEMO_SET), out).expect("write the demo set");
    println!("wrote {DEMO_SET}");
}

// ------------------------------------------------------------- the quality

/// What a run over a split's queries counted.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    queries: usize,
    hits: usize,
    wrong: usize,
    answerable: usize,
    right: usize,
    hard: usize,
    hard_hits: usize,
}

impl Tally {
    fn rate(n: usize, of: usize) -> f64 {
        if of == 0 { 0.0 } else { n as f64 / of as f64 }
    }
}

/// Fills a cache with the split's entries and asks every query once, in
/// order; with `feedback`, every wrong answer is reported (`report_wrong`),
/// as an application that notices would.
fn run(
    data: &Embedded,
    policy: HitPolicy,
    calibration: &[(f32, bool)],
    feedback: bool,
) -> (Tally, Vec<(f32, bool)>) {
    let cache = SemanticCache::new(SemanticCacheConfig::new(384, 1_000_000, policy)).unwrap();
    cache.calibrate(calibration.iter().copied()).unwrap();
    let scope = Scope::model("evaluation").digest();
    let ids: Vec<EntryId> = data
        .entries
        .iter()
        .map(|v| cache.insert(scope, v.clone(), ()).unwrap())
        .collect();
    let mut tally = Tally::default();
    let mut observations = Vec::new();
    for ((_, kind), vector) in data.split.queries.iter().zip(&data.queries) {
        tally.queries += 1;
        let right_entry = match kind {
            Kind::Matched(i) => Some(ids[*i]),
            Kind::Novel | Kind::Hard(_) => None,
        };
        tally.answerable += usize::from(right_entry.is_some());
        tally.hard += usize::from(matches!(kind, Kind::Hard(_)));
        let (nearest, hit) = match cache.lookup(scope, vector).unwrap() {
            Lookup::Hit { nearest, .. } => (Some(nearest), true),
            Lookup::Miss(nearest) => (nearest, false),
        };
        let Some(nearest) = nearest else { continue };
        let correct = right_entry == Some(nearest.entry);
        observations.push((nearest.similarity, correct));
        if hit {
            tally.hits += 1;
            tally.hard_hits += usize::from(matches!(kind, Kind::Hard(_)));
            if correct {
                tally.right += 1;
            } else {
                tally.wrong += 1;
                if feedback {
                    cache
                        .report_wrong(nearest.entry, nearest.similarity)
                        .unwrap();
                }
            }
        }
    }
    (tally, observations)
}

fn report_quality(out: &mut String, tune: &Embedded, held: &Embedded) {
    // The tuning half's labelled lookups calibrate the learned thresholds;
    // the held-out half is only ever measured.
    let (_, calibration) = run(tune, HitPolicy::Fixed { similarity: 1.0 }, &[], false);
    let mut rows: Vec<(String, Tally)> = Vec::new();
    for t in FIXED {
        let (tally, _) = run(held, HitPolicy::Fixed { similarity: t }, &[], false);
        rows.push((format!("fixed {t:.1}"), tally));
    }
    for target in TARGETS {
        let policy = HitPolicy::Learned(ThresholdConfig::with_target_error(target));
        let (tally, _) = run(held, policy, &calibration, false);
        let at = threshold_text(learned_threshold(policy, &calibration));
        rows.push((
            format!("learned, target {:.0} % (threshold {at})", target * 100.0),
            tally,
        ));
        if (target - 0.02).abs() < 1e-9 {
            let (tally, _) = run(held, policy, &calibration, true);
            rows.push((
                "learned, target 2 %, wrong answers reported".to_owned(),
                tally,
            ));
        }
    }
    let held_counts = {
        let s = &held.split;
        let matched = s
            .queries
            .iter()
            .filter(|(_, k)| matches!(k, Kind::Matched(_)))
            .count();
        let hard = s
            .queries
            .iter()
            .filter(|(_, k)| matches!(k, Kind::Hard(_)))
            .count();
        (s.entries.len(), s.queries.len(), matched, hard)
    };
    let _ = writeln!(
        out,
        "Held-out half: {} cached entries, {} lookups ({} with their paraphrase cached, {} hard negatives, \
         the rest with nothing to find); calibration: the {} labelled lookups of the other half.\n",
        held_counts.0,
        held_counts.1,
        held_counts.2,
        held_counts.3,
        calibration.len()
    );
    let _ = writeln!(
        out,
        "| policy | hit rate | wrong-hit rate | right answers found | hits that were wrong | hard negatives answered |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, t) in &rows {
        let _ = writeln!(
            out,
            "| {name} | {:.1} % | {:.2} % | {:.1} % | {:.1} % | {:.1} % |",
            100.0 * Tally::rate(t.hits, t.queries),
            100.0 * Tally::rate(t.wrong, t.queries),
            100.0 * Tally::rate(t.right, t.answerable),
            100.0 * Tally::rate(t.wrong, t.hits),
            100.0 * Tally::rate(t.hard_hits, t.hard),
        );
    }
    // The goal, checked on these figures.
    let best_fixed = rows
        .iter()
        .filter(|(n, t)| n.starts_with("fixed") && Tally::rate(t.wrong, t.queries) <= 0.02)
        .map(|(n, t)| (n.clone(), Tally::rate(t.hits, t.queries)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let learned2 = rows
        .iter()
        .find(|(n, _)| n.starts_with("learned, target 2 % ("))
        .map(|(_, t)| *t)
        .unwrap();
    let (wrong2, hit2) = (
        Tally::rate(learned2.wrong, learned2.queries),
        Tally::rate(learned2.hits, learned2.queries),
    );
    let verdict = match &best_fixed {
        Some((name, hits)) => format!(
            "best fixed threshold with wrong-hit rate <= 2 %: {name}, hit rate {:.1} %; learned at 2 %: wrong-hit \
             rate {:.2} % ({}), hit rate {:.1} % ({})",
            100.0 * hits,
            100.0 * wrong2,
            if wrong2 <= 0.02 { "met" } else { "NOT met" },
            100.0 * hit2,
            if hit2 >= *hits {
                "at least the fixed one's"
            } else {
                "BELOW the fixed one's"
            }
        ),
        None => format!(
            "no fixed threshold keeps the wrong-hit rate <= 2 %; learned at 2 %: wrong-hit rate {:.2} % ({}), hit \
             rate {:.1} %",
            100.0 * wrong2,
            if wrong2 <= 0.02 { "met" } else { "NOT met" },
            100.0 * hit2
        ),
    };
    let _ = writeln!(out, "\nGoal check: {verdict}.\n");
    report_sample_size(out, held, &calibration);
}

/// The cache-wide threshold `policy` learns from `calibration`.
fn learned_threshold(policy: HitPolicy, calibration: &[(f32, bool)]) -> Option<f32> {
    let cache = SemanticCache::<()>::new(SemanticCacheConfig::new(384, 1, policy)).unwrap();
    cache.calibrate(calibration.iter().copied()).unwrap();
    cache.stats().learned_threshold
}

fn threshold_text(threshold: Option<f32>) -> String {
    threshold.map_or("never".to_owned(), |t| format!("{t:.3}"))
}

/// Calibration sizes of the sample-size table (the last is all of it).
const SAMPLE_SIZES: [usize; 4] = [150, 300, 600, 1_200];

/// How much of the hit rate the bound's confidence costs, and how that cost
/// shrinks with labels: the 2 % target learned from the first `n` of the
/// tuning half's labelled lookups (they are in shuffled order, so each is a
/// random sample), measured on the held-out half; and the one threshold that
/// answers most held-out lookups within 2 % when chosen by looking at them
/// (a ceiling for any single threshold, not a policy).
fn report_sample_size(out: &mut String, held: &Embedded, calibration: &[(f32, bool)]) {
    let target = 0.02;
    let policy = HitPolicy::Learned(ThresholdConfig::with_target_error(target));
    let _ = writeln!(
        out,
        "| target 2 %, calibrated with | learned threshold | hit rate | wrong-hit rate |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    let sizes = SAMPLE_SIZES
        .iter()
        .copied()
        .filter(|&n| n < calibration.len())
        .chain([calibration.len()]);
    for n in sizes {
        let sample = &calibration[..n];
        let (t, _) = run(held, policy, sample, false);
        let _ = writeln!(
            out,
            "| {n} labelled lookups | {} | {:.1} % | {:.2} % |",
            threshold_text(learned_threshold(policy, sample)),
            100.0 * Tally::rate(t.hits, t.queries),
            100.0 * Tally::rate(t.wrong, t.queries),
        );
    }
    // Every held-out lookup's nearest similarity and label (a fixed 1.0
    // answers nothing, so nothing is tightened or reordered).
    let (all, observed) = run(held, HitPolicy::Fixed { similarity: 1.0 }, &[], false);
    let best = (0..=400u16)
        .map(|k| 1.0 - f32::from(k) * 0.005)
        .map(|t| {
            let hits = observed.iter().filter(|(s, _)| *s >= t).count();
            let wrong = observed.iter().filter(|(s, c)| *s >= t && !c).count();
            (t, hits, wrong)
        })
        .filter(|&(_, _, wrong)| Tally::rate(wrong, all.queries) <= target)
        .max_by_key(|&(_, hits, _)| hits);
    if let Some((t, hits, wrong)) = best {
        let _ = writeln!(
            out,
            "| hindsight: the held-out half's own best (not a policy) | {t:.3} | {:.1} % | {:.2} % |",
            100.0 * Tally::rate(hits, all.queries),
            100.0 * Tally::rate(wrong, all.queries),
        );
    }
    let _ = writeln!(out);
}

// ------------------------------------------------------------------- cost

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn report_embedding(out: &mut String, embedder: &LocalEmbedder, held: &Split) {
    let prompts: Vec<&str> = held
        .queries
        .iter()
        .take(200)
        .map(|(q, _)| q.as_str())
        .collect();
    embedder.embed_sync(&prompts[..8]).unwrap();
    let mut times: Vec<Duration> = prompts
        .iter()
        .map(|p| {
            let started = Instant::now();
            embedder.embed_sync(&[p]).unwrap();
            started.elapsed()
        })
        .collect();
    times.sort();
    let words = prompts
        .iter()
        .map(|p| p.split_whitespace().count())
        .sum::<usize>() as f64
        / prompts.len() as f64;
    let _ = writeln!(
        out,
        "Embedding one prompt with the local model (release build, one thread of this 2-core machine, {} held-out \
         verses of {words:.0} words on average): p50 {}, p99 {}.\n",
        prompts.len(),
        micros(percentile(&times, 0.5)),
        micros(percentile(&times, 0.99)),
    );
}

/// `n` random 384-dimension unit vectors and 2,000 queries, each a stored
/// vector plus noise (so each has a near neighbour, like a paraphrase).
fn lookup_data(n: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut rng = SplitMix(7);
    let mut gaussian = move || {
        // Box-Muller from two uniforms.
        let u = ((rng.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let v = ((rng.next() >> 11) as f64) / (1u64 << 53) as f64;
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    };
    let vectors: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            let mut v: Vec<f32> = (0..384).map(|_| gaussian()).collect();
            normalize(&mut v).unwrap();
            v
        })
        .collect();
    let queries: Vec<Vec<f32>> = (0..2_000)
        .map(|i| {
            let base = &vectors[(i * 7_919) % n];
            let mut q: Vec<f32> = base.iter().map(|x| x + 0.03 * gaussian()).collect();
            normalize(&mut q).unwrap();
            q
        })
        .collect();
    (vectors, queries)
}

/// Real embeddings: the World English Bible text of up to `limit` aligned
/// verses as entries, and the King James text of 2,000 of them, evenly
/// spread, as queries (each has its paraphrase cached).
fn real_data(
    embedder: &LocalEmbedder,
    pairs: &[Pair],
    limit: usize,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let pairs = &pairs[..pairs.len().min(limit)];
    let started = Instant::now();
    let entries: Vec<&str> = pairs.iter().map(|p| p.web.as_str()).collect();
    let step = (pairs.len() / 2_000).max(1);
    let queries: Vec<&str> = pairs
        .iter()
        .step_by(step)
        .take(2_000)
        .map(|p| p.kjv.as_str())
        .collect();
    let data = (embed_all(embedder, &entries), embed_all(embedder, &queries));
    println!(
        "{} verses and {} queries embedded in {:.1} s",
        entries.len(),
        queries.len(),
        started.elapsed().as_secs_f64()
    );
    data
}

/// One graph the index measurement builds, and the searches it times on
/// it: every rescoring with every breadth.
struct Graph {
    /// `None`: the flat one-bit index (no graph; M, breadths ignored).
    quantization: Option<Quantization>,
    connectivity: usize,
    expansion_add: usize,
    rescores: Vec<usize>,
    breadths: Vec<usize>,
}

/// The graphs measured when `--graphs` does not say: each storage at
/// usearch's default shape (M 16, breadth 128 when adding).
fn default_graphs() -> Vec<Graph> {
    parse_graphs("f32/16/128/0/64,128,256;f16/16/128/0,8/64,128,256;i8/16/128/0,8/64,128,256")
}

/// `kind/M/expansion_add/rescores/breadths;...`, lists comma-separated,
/// kind one of f32, f16, i8, b1 (graphs) or flat (`FlatBinaryIndex`, which
/// reads only the rescores): e.g. `b1/32/256/32,64/64,128;flat/0/0/32,64/0`.
fn parse_graphs(spec: &str) -> Vec<Graph> {
    let list = |l: &str| -> Vec<usize> {
        l.split(',')
            .map(|n| n.parse().expect("a number in --graphs"))
            .collect()
    };
    spec.split(';')
        .map(|g| {
            let f: Vec<&str> = g.split('/').collect();
            assert_eq!(
                f.len(),
                5,
                "--graphs kind/M/expansion_add/rescores/breadths: {g}"
            );
            Graph {
                quantization: match f[0] {
                    "f32" => Some(Quantization::F32),
                    "f16" => Some(Quantization::F16),
                    "i8" => Some(Quantization::I8),
                    "b1" => Some(Quantization::B1),
                    "flat" => None,
                    other => panic!("--graphs: unknown storage {other}"),
                },
                connectivity: f[1].parse().expect("M"),
                expansion_add: f[2].parse().expect("expansion_add"),
                rescores: list(f[3]),
                breadths: list(f[4]),
            }
        })
        .collect()
}

/// The index alone over `vectors` with each graph, rescoring and search
/// breadth: search latency, recall@1 against brute force, the largest
/// error of the reported similarity, insert time and memory per entry.
fn report_index_settings(
    out: &mut String,
    name: &str,
    vectors: &[Vec<f32>],
    queries: &[Vec<f32>],
    graphs: &[Graph],
) {
    let n = vectors.len();
    let mut exact = ExactIndex::new(384);
    for (i, v) in vectors.iter().enumerate() {
        exact.add(i as u64, v).unwrap();
    }
    let truth: Vec<Neighbour> = queries
        .iter()
        .map(|q| exact.search(q, 1).unwrap()[0])
        .collect();
    let _ = writeln!(
        out,
        "\n| index over {name} | search p50 | p99 | recall@1 | largest similarity error | insert | memory per entry |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for graph in graphs {
        let Some(quantization) = graph.quantization else {
            report_flat(out, name, vectors, queries, &truth, &graph.rescores);
            continue;
        };
        let storage = format!("{quantization:?}").to_lowercase();
        let rescore_max = graph.rescores.iter().copied().max().unwrap_or(0);
        let settings = IndexSettings::new(quantization, 64)
            .rescored(rescore_max.max(1))
            .graph(graph.connectivity, graph.expansion_add);
        let mut index = VectorIndex::with_settings(384, settings).unwrap();
        let started = Instant::now();
        for (i, v) in vectors.iter().enumerate() {
            index.add(i as u64, v).unwrap();
        }
        let insert = started.elapsed() / n as u32;
        println!(
            "{storage} M {} add {}: {n} vectors of {name}, {} each; distance kernel: {}",
            graph.connectivity,
            graph.expansion_add,
            micros(insert),
            index.hardware_acceleration()
        );
        for &rescore in &graph.rescores {
            index.set_rescore(rescore);
            for &breadth in &graph.breadths {
                index.set_expansion_search(breadth);
                let searched = time_searches(&index, vectors, queries, &truth);
                let memory = if rescore == 0 {
                    index.memory_bytes() - index.exact_bytes()
                } else {
                    index.memory_bytes()
                };
                let how = match (quantization, rescore) {
                    (Quantization::F32, _) => String::new(),
                    (_, 0) => ", graph".to_owned(),
                    (_, r) => format!(", rescored {r}"),
                };
                let label = format!(
                    "{storage} M {} add {}{how}, breadth {breadth}",
                    graph.connectivity, graph.expansion_add
                );
                index_row(out, &label, &searched, insert, memory, n);
            }
        }
    }
}

/// One setting's searches: sorted latencies, hits of the exact nearest,
/// the largest error of the reported similarity.
struct Searched {
    times: Vec<Duration>,
    found: usize,
    error: f32,
}

fn time_searches(
    index: &dyn NearestNeighbours,
    vectors: &[Vec<f32>],
    queries: &[Vec<f32>],
    truth: &[Neighbour],
) -> Searched {
    let mut times = Vec::with_capacity(queries.len());
    let mut found = 0;
    let mut error = 0f32;
    for (q, t) in queries.iter().zip(truth) {
        let started = Instant::now();
        let got = index.search(q, 1).unwrap();
        times.push(started.elapsed());
        if let Some(g) = got.first() {
            found += usize::from(g.key == t.key);
            error = error.max((g.similarity - dot(q, &vectors[g.key as usize])).abs());
        }
    }
    times.sort();
    Searched {
        times,
        found,
        error,
    }
}

fn index_row(
    out: &mut String,
    label: &str,
    searched: &Searched,
    insert: Duration,
    memory: usize,
    n: usize,
) {
    let row = format!(
        "| {label} | {} | {} | {:.1} % | {:.4} | {} | {:.0} B |",
        micros(percentile(&searched.times, 0.5)),
        micros(percentile(&searched.times, 0.99)),
        100.0 * searched.found as f64 / searched.times.len() as f64,
        searched.error,
        micros(insert),
        memory as f64 / n as f64,
    );
    println!("{row}");
    let _ = writeln!(out, "{row}");
}

/// The flat one-bit index over `vectors` with each rescoring: one row each.
fn report_flat(
    out: &mut String,
    name: &str,
    vectors: &[Vec<f32>],
    queries: &[Vec<f32>],
    truth: &[Neighbour],
    rescores: &[usize],
) {
    let n = vectors.len();
    let mut index = FlatBinaryIndex::new(384, 1).unwrap();
    let started = Instant::now();
    for (i, v) in vectors.iter().enumerate() {
        index.add(i as u64, v).unwrap();
    }
    let insert = started.elapsed() / n as u32;
    println!("flat: {n} vectors of {name}, {} each", micros(insert));
    for &rescore in rescores {
        index.set_rescore(rescore);
        let searched = time_searches(&index, vectors, queries, truth);
        let label = format!("flat one-bit, rescored {}", index.rescore());
        index_row(out, &label, &searched, insert, index.memory_bytes(), n);
    }
}

/// A set the lookup is timed on: its name, the stored vectors and the
/// queries asked of them.
type LookupSet = (String, Vec<Vec<f32>>, Vec<Vec<f32>>);

/// Times `SemanticCache::lookup` on each set, against brute force.
fn report_lookup(out: &mut String, sets: &[LookupSet]) {
    let _ = writeln!(
        out,
        "| entries | index | cache lookup p50 | p99 | p99 on a CPU | lookups kept off a CPU > 1 ms | recall@1 | brute force p50 | p99 | insert | insert p99 | memory per entry | index memory per entry |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    // The default index, then HNSW at its default settings for comparison.
    let indexes = [
        ("flat one-bit (default)", IndexConfig::default()),
        ("HNSW i8", IndexConfig::Hnsw(IndexSettings::default())),
    ];
    // `--lookup-indexes flat` or `hnsw` times one of them only.
    let only = flag_value("--lookup-indexes");
    let indexes: Vec<_> = indexes
        .into_iter()
        .filter(|(name, _)| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|w| name.to_lowercase().contains(w)))
        })
        .collect();
    for ((name, vectors, queries), (index_name, index)) in sets
        .iter()
        .flat_map(|set| indexes.iter().map(move |i| (set, i)))
    {
        let n = vectors.len();
        let rss_before = resident_bytes();
        let cache = SemanticCache::new(
            SemanticCacheConfig::new(384, n, HitPolicy::Fixed { similarity: 0.9 })
                .with_index(*index),
        )
        .unwrap();
        let scope = Scope::model("latency").digest();
        let mut inserts = Vec::with_capacity(n);
        let started = Instant::now();
        for v in vectors {
            let one = Instant::now();
            cache.insert(scope, v.clone(), ()).unwrap();
            inserts.push(one.elapsed());
        }
        let build = started.elapsed();
        inserts.sort();
        let per_entry = resident_bytes().saturating_sub(rss_before) as f64 / n as f64;
        let mut exact = ExactIndex::new(384);
        for (i, v) in vectors.iter().enumerate() {
            exact.add(i as u64, v).unwrap();
        }
        // Each call's wall time, and the scheduler's account of it: time on
        // a CPU and time runnable but waiting for one.
        let time = |f: &mut dyn FnMut(&[f32])| {
            let mut wall = Vec::with_capacity(queries.len());
            let mut on_cpu = Vec::with_capacity(queries.len());
            let mut waited = Vec::with_capacity(queries.len());
            for q in queries {
                let before = sched_times();
                let started = Instant::now();
                f(q);
                wall.push(started.elapsed());
                let after = sched_times();
                on_cpu.push(after.0.saturating_sub(before.0));
                waited.push(after.1.saturating_sub(before.1));
            }
            wall.sort();
            on_cpu.sort();
            (wall, on_cpu, waited)
        };
        let (cache_times, cache_cpu, cache_waited) = time(&mut |q| {
            cache.lookup(scope, q).unwrap();
        });
        let (exact_times, _, _) = time(&mut |q| {
            exact.search(q, 1).unwrap();
        });
        // Entry ids are given in insertion order from 0, as the exact index's keys.
        let nearest = |q: &[f32]| match cache.lookup(scope, q).unwrap() {
            Lookup::Hit { nearest, .. } | Lookup::Miss(Some(nearest)) => Some(nearest.entry.0),
            Lookup::Miss(None) => None,
        };
        let found = queries
            .iter()
            .filter(|q| nearest(q) == exact.search(q, 1).unwrap().first().map(|n| n.key))
            .count();
        println!(
            "{name}, {index_name}: {n} entries inserted in {:.1} s",
            build.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "| {name} | {index_name} | {} | {} | {} | {} | {:.1} % | {} | {} | {} | {} | {:.0} B | {:.0} B |",
            micros(percentile(&cache_times, 0.5)),
            micros(percentile(&cache_times, 0.99)),
            micros(percentile(&cache_cpu, 0.99)),
            cache_waited
                .iter()
                .filter(|w| **w > Duration::from_millis(1))
                .count(),
            100.0 * found as f64 / queries.len() as f64,
            micros(percentile(&exact_times, 0.5)),
            micros(percentile(&exact_times, 0.99)),
            micros(build / n as u32),
            micros(percentile(&inserts, 0.99)),
            per_entry,
            cache.index_memory_bytes() as f64 / n as f64,
        );
    }
    let _ = writeln!(
        out,
        "\nLookups: 2,000 per set; random: each a stored random 384-dimension unit vector plus noise (cosine \
         about 0.86 to it), the hardest case for a graph index; verses: the World English Bible text of the first \
         aligned verses (Genesis on) embedded by the local model, asked by the King James text of 2,000 of them. Cache lookup is \
         `SemanticCache::lookup` (normalisation, lock, search, exact rescoring, decision) with the default \
         index (`FlatBinaryIndex`, 256 candidates rescored) and with HNSW at its default settings (i8, M 16, \
         breadth 256, 8 rescored); \"on a CPU\" is the part of each lookup the scheduler ran this thread \
         (/proc/thread-self/schedstat), and the lookups kept off a CPU are those that waited more than 1 ms, \
         runnable, for one (other processes on this shared machine): a wall-clock p99 far above the on-CPU \
         p99 is the machine's load, not the lookup; insert is the mean `SemanticCache::insert` (the write lock is held for all of it) and its p99; memory is the growth of the process's resident set while the cache filled, over the entries \
         (vectors, graph, bookkeeping; values are `()`; a set filled after another's cache was freed reuses that \
         memory and reads low); index memory is `SemanticCache::index_memory_bytes` (graph, exact vectors, maps) \
         over the entries."
    );
}

/// This thread's time on a CPU and time runnable but waiting for one, from
/// the scheduler's statistics (/proc/thread-self/schedstat; zeros
/// elsewhere).
fn sched_times() -> (Duration, Duration) {
    let Ok(text) = std::fs::read_to_string("/proc/thread-self/schedstat") else {
        return (Duration::ZERO, Duration::ZERO);
    };
    let mut fields = text
        .split_whitespace()
        .map(|f| Duration::from_nanos(f.parse().unwrap_or(0)));
    (
        fields.next().unwrap_or_default(),
        fields.next().unwrap_or_default(),
    )
}

/// The process's resident set in bytes, from /proc (0 elsewhere).
fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<usize>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

// ------------------------------------------------------------------- docs

const BEGIN: &str = "<!-- BEGIN GENERATED by `cargo xtask semantic`; do not edit by hand -->";
const END: &str = "<!-- END GENERATED -->";

fn write_docs(body: &str, pairs: usize, held: &Split, tune: &Split) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/semantic.md");
    let page = std::fs::read_to_string(&path).expect("docs/semantic.md");
    let (Some(start), Some(end)) = (page.find(BEGIN), page.find(END)) else {
        panic!("docs/semantic.md has no generated section markers");
    };
    let section = format!(
        "{BEGIN}\n\n{pairs} aligned verse pairs with unique text; {} + {} lookups in the tuning and held-out \
         halves.\n\n{body}\n{END}",
        tune.queries.len(),
        held.queries.len()
    );
    let page = format!("{}{section}{}", &page[..start], &page[end + END.len()..]);
    std::fs::write(&path, page).unwrap();
    println!("wrote {}", path.display());
}
