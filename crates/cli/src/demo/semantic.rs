//! The demo's semantic phase: verses cached, then asked again in another
//! translation (true paraphrases), edited to mean something else (hard
//! negatives) or never cached (novel), through a prompt cache with the
//! semantic tier on; the demo knows which answers are right.
//!
//! The prompts are a fixed sample of the held-out half of
//! `docs/semantic.md`'s evaluation (public-domain Bible text), written to
//! `semantic_set.tsv` by `cargo xtask semantic`, with the tuning half's
//! labelled lookups the tier calibrates with.

use std::fmt;
use std::time::Duration;
#[cfg(feature = "semantic")]
use std::time::Instant;

use stratum::StratumConfig;

/// What the semantic phase measured, or why it did not run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SemanticPhase {
    /// No embedder: the one-line reason (the feature is off, the model is
    /// not fetched, the store could not be opened).
    Skipped(String),
    /// The figures.
    Ran(SemanticFigures),
}

/// The semantic phase's counts.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SemanticFigures {
    /// Verses cached (the provider asked once each).
    pub cached: usize,
    /// Cached verses asked again word for word.
    pub exact_asked: usize,
    /// Of those, answered by the exact tiers.
    pub exact_hits: usize,
    /// Paraphrases asked (the same verse, the other translation).
    pub paraphrases: usize,
    /// Hard negatives asked (a cached verse's paraphrase edited: a negation,
    /// a number or a name changed).
    pub hard: usize,
    /// Verses asked with nothing cached.
    pub novel: usize,
    /// Semantic answers.
    pub semantic_hits: usize,
    /// Of those, the right verse's answer.
    pub right_hits: usize,
    /// Of those, wrong (another verse's answer); each reported with
    /// `PromptCache::report_wrong`.
    pub wrong_hits: usize,
    /// The learned threshold after calibration.
    pub threshold: Option<f32>,
    /// The target error rate.
    pub target_error: Option<f64>,
    /// How long the phase took (embedding included).
    pub elapsed: Duration,
}

impl SemanticFigures {
    /// Wrong answers over the questions looked up by meaning (paraphrases,
    /// hard negatives and novel): the rate the learned threshold bounds.
    pub fn wrong_hit_rate(&self) -> f64 {
        let lookups = self.paraphrases + self.hard + self.novel;
        if lookups == 0 {
            0.0
        } else {
            self.wrong_hits as f64 / lookups as f64
        }
    }
}

impl fmt::Display for SemanticPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SemanticPhase::Skipped(reason) => {
                writeln!(f, "semantic:     skipped: {reason}")
            }
            SemanticPhase::Ran(s) => {
                let threshold = match (s.threshold, s.target_error) {
                    (Some(t), Some(target)) => {
                        format!(
                            "learned threshold {t:.3} for a {:.0} % target",
                            target * 100.0
                        )
                    }
                    (None, Some(target)) => {
                        format!("no threshold learned for a {:.0} % target", target * 100.0)
                    }
                    _ => "a fixed threshold".to_owned(),
                };
                writeln!(
                    f,
                    "semantic:     {} verses cached ({threshold}), {:.1} s; {} of {} asked again word for word were exact hits",
                    s.cached,
                    s.elapsed.as_secs_f64(),
                    s.exact_hits,
                    s.exact_asked,
                )?;
                writeln!(
                    f,
                    "              {} paraphrases, {} hard negatives, {} novel: {} semantic hits ({} right, {} wrong: {:.1} % of the {} looked up by meaning)",
                    s.paraphrases,
                    s.hard,
                    s.novel,
                    s.semantic_hits,
                    s.right_hits,
                    s.wrong_hits,
                    s.wrong_hit_rate() * 100.0,
                    s.paraphrases + s.hard + s.novel,
                )
            }
        }
    }
}

/// The prompts of the phase, parsed from `semantic_set.tsv` (read by the
/// phase, which only the `semantic` feature has; the test reads it always).
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "semantic"), allow(dead_code))]
struct DemoSet {
    calibration: Vec<(f32, bool)>,
    /// (cached, asked) of the same verse.
    pairs: Vec<(String, String)>,
    hard: Vec<String>,
    novel: Vec<String>,
    crowd: Vec<String>,
}

#[cfg_attr(not(feature = "semantic"), allow(dead_code))]
const SET: &str = include_str!("semantic_set.tsv");

#[cfg_attr(not(feature = "semantic"), allow(dead_code))]
fn parse(text: &str) -> Result<DemoSet, String> {
    let mut set = DemoSet::default();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let bad = || format!("semantic_set.tsv line {}: {line:?}", n + 1);
        match fields.as_slice() {
            ["cal", similarity, right] => set
                .calibration
                .push((similarity.parse().map_err(|_| bad())?, *right == "1")),
            ["pair", cached, asked] => set.pairs.push(((*cached).into(), (*asked).into())),
            ["hard", "", asked] => set.hard.push((*asked).into()),
            ["novel", "", asked] => set.novel.push((*asked).into()),
            ["crowd", cached] => set.crowd.push((*cached).into()),
            _ => return Err(bad()),
        }
    }
    Ok(set)
}

/// Runs the phase on a handle of its own over `config`'s store (the
/// monitor off, the semantic tier on with the configured embedder, the
/// local model by default).
#[cfg(feature = "semantic")]
pub(crate) async fn run(config: &StratumConfig, run_tag: u32) -> SemanticPhase {
    match phase(config, run_tag).await {
        Ok(figures) => SemanticPhase::Ran(figures),
        Err(reason) => SemanticPhase::Skipped(reason),
    }
}

/// Without the `semantic` feature there is no embedder.
#[cfg(not(feature = "semantic"))]
pub(crate) async fn run(_config: &StratumConfig, _run_tag: u32) -> SemanticPhase {
    SemanticPhase::Skipped("this build has no `semantic` feature".into())
}

#[cfg(feature = "semantic")]
async fn phase(config: &StratumConfig, run_tag: u32) -> Result<SemanticFigures, String> {
    use stratum::Stratum;
    use stratum::llm::{AnswerSource, Completion};
    use stratum::models::{
        CacheKeyRequest, CachedResponse, ChatMessage, RequestParams, TokenUsage,
    };
    use stratum::semantic::HitPolicy;

    let set = parse(SET)?;
    let started = Instant::now();
    let mut config = config.clone();
    config.monitor.enabled = false;
    config.llm.semantic.enabled = true;
    let stratum = Stratum::builder(config)
        .open()
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?;
    // The reason is one line: the model folder and how to fetch it.
    let prompts = stratum
        .prompt_cache()
        .map_err(|e| format!("no embedder ({e})"))?
        .with_tenant("stratum-demo");
    prompts
        .calibrate(set.calibration.iter().copied())
        .await
        .map_err(|e| e.to_string())?;
    let stats = prompts.semantic_stats().unwrap_or_default();
    let target_error = match stratum.config().llm.semantic.policy {
        HitPolicy::Learned(t) => Some(t.target_error),
        _ => None,
    };
    // The run's tag in the system prompt keeps runs apart in a shared
    // database: every run starts cold, in exact keys and in scope.
    let system = format!("Quote the verse. (stratum demo run {run_tag:08x})");
    let params = RequestParams::default();
    let ask = |text: String, answer: String| {
        let (prompts, system, params) = (&prompts, &system, &params);
        async move {
            let messages = [
                ChatMessage::system(system.as_str()),
                ChatMessage::user(text),
            ];
            let request = CacheKeyRequest {
                provider: "demo",
                model: "verse-quoter",
                messages: &messages,
                params,
            };
            prompts
                .get_or_compute(&request, || async {
                    Ok::<_, std::convert::Infallible>(Completion {
                        response: CachedResponse::text(answer),
                        usage: TokenUsage::new(40, 40),
                        cost_usd: 0.0001,
                    })
                })
                .await
                .map_err(|e| e.to_string())
        }
    };
    let mut figures = SemanticFigures {
        threshold: stats.learned_threshold,
        target_error,
        ..SemanticFigures::default()
    };
    // The provider's answer names the verse: the demo's ground truth.
    for (i, (cached, _)) in set.pairs.iter().enumerate() {
        ask(cached.clone(), format!("verse {i}")).await?;
        figures.cached += 1;
    }
    for (i, cached) in set.crowd.iter().enumerate() {
        ask(cached.clone(), format!("crowd {i}")).await?;
        figures.cached += 1;
    }
    for (i, (cached, _)) in set.pairs.iter().enumerate().step_by(3) {
        let answer = ask(cached.clone(), format!("verse {i}")).await?;
        figures.exact_asked += 1;
        figures.exact_hits += usize::from(matches!(
            answer.source,
            AnswerSource::Memory | AnswerSource::Store
        ));
    }
    // Interleaved, so the tier's labels and reports act through the run.
    let rounds = set.pairs.len().max(set.hard.len()).max(set.novel.len());
    for k in 0..rounds {
        let mut asked: Vec<(String, Option<usize>, String)> = Vec::new();
        if let Some((_, paraphrase)) = set.pairs.get(k) {
            figures.paraphrases += 1;
            // A paraphrase's fresh answer is its verse's: the provider says
            // the same, so a miss is labelled right.
            asked.push((paraphrase.clone(), Some(k), format!("verse {k}")));
        }
        if let Some(hard) = set.hard.get(k) {
            figures.hard += 1;
            asked.push((hard.clone(), None, format!("edited {k}")));
        }
        if let Some(novel) = set.novel.get(k) {
            figures.novel += 1;
            asked.push((novel.clone(), None, format!("novel {k}")));
        }
        for (text, verse, fresh) in asked {
            let answer = ask(text, fresh).await?;
            if answer.source != AnswerSource::Semantic {
                continue;
            }
            figures.semantic_hits += 1;
            let right =
                verse.is_some_and(|i| answer.entry.response.content == format!("verse {i}"));
            if right {
                figures.right_hits += 1;
            } else {
                figures.wrong_hits += 1;
                prompts.report_wrong(&answer).await;
            }
        }
    }
    figures.elapsed = started.elapsed();
    stratum.shutdown().await;
    Ok(figures)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_set_parses_and_has_every_kind() {
        let set = parse(SET).unwrap();
        assert!(set.calibration.len() > 1_000);
        assert!(set.calibration.iter().any(|c| c.1) && set.calibration.iter().any(|c| !c.1));
        for n in [
            set.pairs.len(),
            set.hard.len(),
            set.novel.len(),
            set.crowd.len(),
        ] {
            assert!(n >= 20, "{n}");
        }
        assert!(parse("pair\tonly one field\n").is_err());
    }
}
