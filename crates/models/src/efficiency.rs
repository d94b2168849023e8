//! Efficiency figures: cache hit ratio, tokens, dollars and latency saved, from
//! usage records and a configurable per-model price table.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{CacheOutcome, CompressionReport, ConfigError, UsageRecord};

/// A model's list price in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// Price of a million prompt tokens.
    pub input_per_million_usd: f64,
    /// Price of a million completion tokens.
    pub output_per_million_usd: f64,
}

impl ModelPrice {
    /// What `tokens_in` prompt and `tokens_out` completion tokens cost.
    ///
    /// ```
    /// use stratum_models::ModelPrice;
    ///
    /// let p = ModelPrice { input_per_million_usd: 2.5, output_per_million_usd: 10.0 };
    /// assert!((p.cost(1_000_000, 100_000) - 3.5).abs() < 1e-12);
    /// ```
    pub fn cost(&self, tokens_in: i64, tokens_out: i64) -> f64 {
        (tokens_in.max(0) as f64 * self.input_per_million_usd
            + tokens_out.max(0) as f64 * self.output_per_million_usd)
            / 1_000_000.0
    }
}

/// Prices per model, with an optional fallback. Model names match
/// case-insensitively, by exact name first and then by the longest listed
/// prefix (`gpt-4o` prices `gpt-4o-2024-08-06`). Validated on construction and
/// on deserialization.
///
/// ```
/// use stratum_models::PriceTable;
///
/// let table: PriceTable = toml_like(r#"{
///     "models": { "gpt-4o": { "input_per_million_usd": 2.5, "output_per_million_usd": 10.0 } }
/// }"#);
/// assert!(table.price("GPT-4o-2024-08-06").is_some());
/// assert!(table.price("claude-3").is_none());
/// # fn toml_like(s: &str) -> PriceTable { serde_json::from_str(s).unwrap() }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawPriceTable")]
pub struct PriceTable {
    models: BTreeMap<String, ModelPrice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default: Option<ModelPrice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPriceTable {
    #[serde(default)]
    models: BTreeMap<String, ModelPrice>,
    #[serde(default)]
    default: Option<ModelPrice>,
}

impl TryFrom<RawPriceTable> for PriceTable {
    type Error = ConfigError;

    fn try_from(raw: RawPriceTable) -> Result<Self, ConfigError> {
        let mut table = PriceTable::default();
        for (model, price) in raw.models {
            table = table.with_model(model, price)?;
        }
        match raw.default {
            Some(price) => table.with_default(price),
            None => Ok(table),
        }
    }
}

fn check_price(field: &'static str, price: &ModelPrice) -> Result<(), ConfigError> {
    for v in [price.input_per_million_usd, price.output_per_million_usd] {
        if !v.is_finite() || v < 0.0 {
            return Err(ConfigError::invalid(
                field,
                "prices must be finite and non-negative",
            ));
        }
    }
    Ok(())
}

impl PriceTable {
    /// An empty table: nothing is priced.
    pub fn new() -> Self {
        PriceTable::default()
    }

    /// Adds or replaces a model's price.
    pub fn with_model(
        mut self,
        model: impl Into<String>,
        price: ModelPrice,
    ) -> Result<Self, ConfigError> {
        check_price("models", &price)?;
        let model = model.into().trim().to_ascii_lowercase();
        if model.is_empty() {
            return Err(ConfigError::invalid(
                "models",
                "a model name must not be empty",
            ));
        }
        self.models.insert(model, price);
        Ok(self)
    }

    /// Sets the price of models not listed.
    pub fn with_default(mut self, price: ModelPrice) -> Result<Self, ConfigError> {
        check_price("default", &price)?;
        self.default = Some(price);
        Ok(self)
    }

    /// The price of `model`, if listed (exact, then longest prefix) or defaulted.
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        let model = model.trim().to_ascii_lowercase();
        if let Some(p) = self.models.get(&model) {
            return Some(*p);
        }
        self.models
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| *p)
            .or(self.default)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct ModelTally {
    hits: u64,
    misses: u64,
    bypasses: u64,
    hit_tokens_in: i64,
    hit_tokens_out: i64,
    hit_latency_us: i128,
    miss_latency_us: i128,
    cost_spent_usd: f64,
    compression_tokens_saved: i64,
}

/// Accumulates usage records and compression reports, one at a time, in
/// memory proportional to the number of distinct models.
///
/// ```
/// use std::time::Duration;
/// use stratum_models::{CacheOutcome, EfficiencyTracker, ModelPrice, PriceTable, UsageRecord};
///
/// let prices = PriceTable::new()
///     .with_model("gpt-4o", ModelPrice { input_per_million_usd: 2.5, output_per_million_usd: 10.0 })?;
/// let now = bson::DateTime::from_millis(0);
/// let mut tracker = EfficiencyTracker::new();
/// tracker.record(&UsageRecord::new("openai", "gpt-4o", CacheOutcome::Miss, now)
///     .with_tokens(1_000, 500).with_latency(Duration::from_millis(900)).with_cost(0.0075));
/// tracker.record(&UsageRecord::new("openai", "gpt-4o", CacheOutcome::Hit, now)
///     .with_tokens(1_000, 500).with_latency(Duration::from_millis(2)));
/// let report = tracker.report(&prices);
/// assert_eq!(report.hit_ratio, 0.5);
/// assert_eq!(report.tokens_saved, 1_500);
/// assert!((report.cost_saved_usd - 0.0075).abs() < 1e-12);
/// assert_eq!(report.latency_saved, Duration::from_millis(898));
/// # Ok::<(), stratum_models::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct EfficiencyTracker {
    per_model: BTreeMap<(String, String), ModelTally>,
}

/// The figures [`EfficiencyTracker::report`] computes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EfficiencyReport {
    /// Calls seen.
    pub requests: u64,
    /// Cache hits.
    pub hits: u64,
    /// Cache misses.
    pub misses: u64,
    /// Calls that bypassed the cache.
    pub bypasses: u64,
    /// `hits / (hits + misses)`; 0 with no cacheable call.
    pub hit_ratio: f64,
    /// Tokens the hits did not spend (prompt + completion).
    pub tokens_saved: i64,
    /// Prompt tokens context compression removed.
    pub compression_tokens_saved: i64,
    /// Dollars the hits and the compression saved, at the table's prices.
    pub cost_saved_usd: f64,
    /// Dollars actually spent.
    pub cost_spent_usd: f64,
    /// Per model: hits times the mean miss latency, minus the hits' own latency (never below 0).
    #[serde(with = "humantime_serde")]
    pub latency_saved: Duration,
    /// Hits and compressions whose model has no price (not in `cost_saved_usd`).
    pub unpriced: u64,
    /// Hits of a model with no miss to compare against (not in `latency_saved`).
    pub hits_without_latency_baseline: u64,
}

impl EfficiencyTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        EfficiencyTracker::default()
    }

    fn tally(&mut self, provider: &str, model: &str) -> &mut ModelTally {
        self.per_model
            .entry((
                provider.trim().to_ascii_lowercase(),
                model.trim().to_ascii_lowercase(),
            ))
            .or_default()
    }

    /// Adds one call.
    pub fn record(&mut self, record: &UsageRecord) {
        let t = self.tally(&record.provider, &record.model);
        let latency = i128::from(record.latency_us.max(0));
        match record.cache {
            CacheOutcome::Hit => {
                t.hits += 1;
                t.hit_tokens_in = t.hit_tokens_in.saturating_add(record.tokens_in.max(0));
                t.hit_tokens_out = t.hit_tokens_out.saturating_add(record.tokens_out.max(0));
                t.hit_latency_us += latency;
            }
            CacheOutcome::Miss => {
                t.misses += 1;
                t.miss_latency_us += latency;
            }
            CacheOutcome::Bypass => t.bypasses += 1,
        }
        if record.cost_usd.is_finite() && record.cost_usd > 0.0 {
            t.cost_spent_usd += record.cost_usd;
        }
    }

    /// Adds the prompt tokens a compression removed from a request to `model`.
    pub fn record_compression(&mut self, provider: &str, model: &str, report: &CompressionReport) {
        let t = self.tally(provider, model);
        t.compression_tokens_saved = t
            .compression_tokens_saved
            .saturating_add(report.tokens_saved.max(0));
    }

    /// The figures so far, priced with `prices`.
    pub fn report(&self, prices: &PriceTable) -> EfficiencyReport {
        let mut r = EfficiencyReport::default();
        let mut latency_saved_us: i128 = 0;
        for ((_, model), t) in &self.per_model {
            r.hits += t.hits;
            r.misses += t.misses;
            r.bypasses += t.bypasses;
            r.tokens_saved = r
                .tokens_saved
                .saturating_add(t.hit_tokens_in.saturating_add(t.hit_tokens_out));
            r.compression_tokens_saved = r
                .compression_tokens_saved
                .saturating_add(t.compression_tokens_saved);
            r.cost_spent_usd += t.cost_spent_usd;
            match prices.price(model) {
                Some(p) => {
                    r.cost_saved_usd += p.cost(t.hit_tokens_in, t.hit_tokens_out)
                        + p.cost(t.compression_tokens_saved, 0);
                }
                None => {
                    r.unpriced += t.hits + u64::from(t.compression_tokens_saved > 0);
                }
            }
            if t.hits > 0 {
                if t.misses == 0 {
                    r.hits_without_latency_baseline += t.hits;
                } else {
                    let baseline = t.miss_latency_us * i128::from(t.hits) / i128::from(t.misses);
                    latency_saved_us += (baseline - t.hit_latency_us).max(0);
                }
            }
        }
        r.requests = r.hits + r.misses + r.bypasses;
        let cacheable = r.hits + r.misses;
        r.hit_ratio = if cacheable == 0 {
            0.0
        } else {
            r.hits as f64 / cacheable as f64
        };
        r.latency_saved =
            Duration::from_micros(u64::try_from(latency_saved_us).unwrap_or(u64::MAX));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn price_table() -> PriceTable {
        PriceTable::new()
            .with_model(
                "m0",
                ModelPrice {
                    input_per_million_usd: 1.0,
                    output_per_million_usd: 2.0,
                },
            )
            .unwrap()
            .with_model(
                "m1",
                ModelPrice {
                    input_per_million_usd: 5.0,
                    output_per_million_usd: 15.0,
                },
            )
            .unwrap()
    }

    fn outcome() -> impl Strategy<Value = CacheOutcome> {
        prop_oneof![
            Just(CacheOutcome::Hit),
            Just(CacheOutcome::Miss),
            Just(CacheOutcome::Bypass)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// The streaming tracker against a direct computation over the whole list.
        #[test]
        fn tracker_matches_a_batch_reference(
            calls in proptest::collection::vec((0usize..3, outcome(), 0i64..10_000, 0i64..5_000, 0i64..2_000_000), 0..60)
        ) {
            let prices = price_table();
            let now = bson::DateTime::from_millis(0);
            let records: Vec<UsageRecord> = calls.iter().map(|&(m, cache, tin, tout, lat)| {
                UsageRecord::new("p", format!("m{m}"), cache, now)
                    .with_tokens(tin, tout)
                    .with_latency(Duration::from_micros(lat as u64))
            }).collect();
            let mut tracker = EfficiencyTracker::new();
            for r in &records {
                tracker.record(r);
            }
            let report = tracker.report(&prices);

            let hits: Vec<&UsageRecord> = records.iter().filter(|r| r.cache == CacheOutcome::Hit).collect();
            let misses = records.iter().filter(|r| r.cache == CacheOutcome::Miss).count() as u64;
            prop_assert_eq!(report.hits, hits.len() as u64);
            prop_assert_eq!(report.requests, records.len() as u64);
            let expected_ratio = if hits.is_empty() && misses == 0 { 0.0 } else { hits.len() as f64 / (hits.len() as u64 + misses) as f64 };
            prop_assert!((report.hit_ratio - expected_ratio).abs() < 1e-12);
            prop_assert_eq!(report.tokens_saved, hits.iter().map(|r| r.tokens_in + r.tokens_out).sum::<i64>());
            let cost: f64 = hits.iter().filter_map(|r| prices.price(&r.model).map(|p| p.cost(r.tokens_in, r.tokens_out))).sum();
            prop_assert!((report.cost_saved_usd - cost).abs() < 1e-9);
            prop_assert_eq!(report.unpriced, hits.iter().filter(|r| r.model == "m2").count() as u64);
            // Latency: per model, hits x mean miss latency - hit latency, floored at 0.
            let mut expected_us: i128 = 0;
            for m in ["m0", "m1", "m2"] {
                let h: Vec<i128> = records.iter().filter(|r| r.model == m && r.cache == CacheOutcome::Hit).map(|r| i128::from(r.latency_us)).collect();
                let x: Vec<i128> = records.iter().filter(|r| r.model == m && r.cache == CacheOutcome::Miss).map(|r| i128::from(r.latency_us)).collect();
                if !h.is_empty() && !x.is_empty() {
                    let baseline = x.iter().sum::<i128>() * h.len() as i128 / x.len() as i128;
                    expected_us += (baseline - h.iter().sum::<i128>()).max(0);
                }
            }
            prop_assert_eq!(report.latency_saved, Duration::from_micros(expected_us as u64));
        }
    }

    #[test]
    fn longest_prefix_wins_and_default_applies() {
        let t = PriceTable::new()
            .with_model(
                "gpt-4",
                ModelPrice {
                    input_per_million_usd: 30.0,
                    output_per_million_usd: 60.0,
                },
            )
            .unwrap()
            .with_model(
                "gpt-4o",
                ModelPrice {
                    input_per_million_usd: 2.5,
                    output_per_million_usd: 10.0,
                },
            )
            .unwrap()
            .with_default(ModelPrice {
                input_per_million_usd: 1.0,
                output_per_million_usd: 1.0,
            })
            .unwrap();
        assert_eq!(t.price("gpt-4o-mini").unwrap().input_per_million_usd, 2.5);
        assert_eq!(t.price("gpt-4-turbo").unwrap().input_per_million_usd, 30.0);
        assert_eq!(t.price("other").unwrap().input_per_million_usd, 1.0);
    }

    #[test]
    fn negative_price_is_refused_naming_the_field() {
        let err = serde_json::from_str::<PriceTable>(
            r#"{"models":{"m":{"input_per_million_usd":-1,"output_per_million_usd":1}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("models"), "{err}");
        let err = PriceTable::new()
            .with_default(ModelPrice {
                input_per_million_usd: f64::NAN,
                output_per_million_usd: 0.0,
            })
            .unwrap_err();
        assert_eq!(err.field(), "default");
    }

    #[test]
    fn compression_savings_are_priced_as_input() {
        let mut tracker = EfficiencyTracker::new();
        let report = CompressionReport {
            tokens_before: 10_000,
            tokens_after: 4_000,
            ratio: 2.5,
            tokens_saved: 6_000,
            messages_before: 0,
            messages_after: 0,
            duplicates_dropped: 0,
            budget_dropped: 0,
            truncated: 0,
            summarized: false,
        };
        tracker.record_compression("p", "m1", &report);
        let r = tracker.report(&price_table());
        assert_eq!(r.compression_tokens_saved, 6_000);
        assert!((r.cost_saved_usd - 0.03).abs() < 1e-12);
    }
}
