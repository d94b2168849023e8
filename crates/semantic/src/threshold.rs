//! Deciding a hit with a bound: thresholds learned from labelled
//! observations so that the rate of wrong answers stays under a target.
//!
//! The method is Learn-then-Test with fixed-sequence testing (Angelopoulos
//! et al., 2021) over a fixed grid of thresholds, applied per cache and per
//! entry in the spirit of vCache (arXiv 2502.03771): each observation is the
//! similarity of a lookup's nearest entry and whether that entry's answer was
//! right for it. The risk of a threshold `t` is the share of lookups that
//! would have been answered wrongly, `P(similarity >= t and wrong)`. Going
//! down the grid from 1.0, each threshold is tested against the null
//! hypothesis "risk > target" with an exact binomial p-value; the walk stops
//! at the first threshold the test cannot reject, and the last rejected one
//! is learned. If the observations are exchangeable with future lookups, the
//! learned threshold's risk is at most the target with probability at least
//! `confidence` (the fixed sequence needs no multiple-testing correction
//! because risk only grows as the threshold falls).

use serde::{Deserialize, Serialize};
use stratum_core::ConfigError;

/// The grid step: thresholds 1.000, 0.995, ..., -1.0.
const STEP: f32 = 0.005;
/// Number of grid thresholds.
const GRID: usize = 401;

/// Settings of the learned thresholds: plain data, serde.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ThresholdConfig {
    /// The share of lookups that may be answered wrongly, in (0, 1).
    /// Default 0.02.
    #[serde(default = "default_target_error")]
    pub target_error: f64,
    /// The probability that the learned threshold meets the target, in
    /// (0, 1). Default 0.95.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// How many observations each entry keeps (the latest). Default 256.
    #[serde(default = "default_entry_observations")]
    pub entry_observations: usize,
}

fn default_target_error() -> f64 {
    0.02
}
fn default_confidence() -> f64 {
    0.95
}
fn default_entry_observations() -> usize {
    256
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        ThresholdConfig {
            target_error: default_target_error(),
            confidence: default_confidence(),
            entry_observations: default_entry_observations(),
        }
    }
}

impl ThresholdConfig {
    /// The default settings with another target error rate.
    #[must_use]
    pub fn with_target_error(target_error: f64) -> Self {
        ThresholdConfig {
            target_error,
            ..ThresholdConfig::default()
        }
    }

    /// Refuses a target or confidence outside (0, 1).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.target_error > 0.0 && self.target_error < 1.0) {
            return Err(ConfigError::invalid("target_error", "must be in (0, 1)"));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(ConfigError::invalid("confidence", "must be in (0, 1)"));
        }
        Ok(())
    }
}

/// The grid slot of similarity `s`: slot `i` holds similarities in
/// `[1 - (i + 1) * STEP, 1 - i * STEP)`, slot 0 also 1.0 itself. A decision
/// compares slots, never floats, so the test and the decision agree at the
/// slot edges.
fn slot(similarity: f32) -> usize {
    let from_top = ((1.0 - similarity.clamp(-1.0, 1.0)) / STEP).floor();
    // In [0, 400] after the clamp; the cast cannot wrap.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = from_top as usize;
    i.min(GRID - 1)
}

/// A learned threshold: a point of the grid 0.995, 0.990, ..., -1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Threshold(usize);

impl Threshold {
    /// The threshold as a similarity: a lookup at least this similar (to
    /// the grid's 0.005 resolution) is answered.
    #[must_use]
    pub fn similarity(self) -> f32 {
        #[allow(clippy::cast_precision_loss)]
        let t = 1.0 - (self.0 + 1) as f32 * STEP;
        t
    }

    /// Whether a lookup at `similarity` passes this threshold.
    #[must_use]
    pub fn accepts(self, similarity: f32) -> bool {
        slot(similarity) <= self.0
    }
}

/// `P(X <= wrong)` for `X ~ Binomial(n, p)`, summed in log space so large `n`
/// does not underflow.
#[must_use]
pub fn binomial_cdf(wrong: u64, n: u64, p: f64) -> f64 {
    if wrong >= n {
        return 1.0;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    #[allow(clippy::cast_precision_loss)]
    let mut log_term = n as f64 * lq;
    let mut log_sum = log_term;
    for k in 0..wrong {
        #[allow(clippy::cast_precision_loss)]
        let (nk, k1) = ((n - k) as f64, (k + 1) as f64);
        log_term += (nk / k1).ln() + lp - lq;
        let (hi, lo) = if log_sum > log_term {
            (log_sum, log_term)
        } else {
            (log_term, log_sum)
        };
        log_sum = hi + (lo - hi).exp().ln_1p();
    }
    log_sum.exp().min(1.0)
}

/// Bytes per grid slot in [`Observations::to_bytes`].
pub const COUNT_BYTES: usize = 18;

/// Labelled observations counted per grid slot: `(correct, wrong)`.
#[derive(Debug, Clone)]
pub struct Observations {
    counts: Vec<[u64; 2]>,
    total: u64,
}

impl Default for Observations {
    fn default() -> Self {
        Observations {
            counts: vec![[0, 0]; GRID],
            total: 0,
        }
    }
}

impl Observations {
    /// Records that a lookup whose nearest entry had `similarity` would have
    /// been answered `correct`ly (or not) by that entry.
    pub fn record(&mut self, similarity: f32, correct: bool) {
        if let Some(c) = self.counts.get_mut(slot(similarity)) {
            c[usize::from(!correct)] += 1;
            self.total += 1;
        }
    }

    /// Observations recorded.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether none is recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Observations of labelled lookups (`(similarity, right)`); refuses a
    /// similarity outside [-1, 1] or NaN, recording none then.
    pub fn from_labels(
        labels: impl IntoIterator<Item = (f32, bool)>,
    ) -> Result<Observations, crate::CacheError> {
        let mut observations = Observations::default();
        for (similarity, correct) in labels {
            if !(-1.0..=1.0).contains(&similarity) {
                return Err(crate::CacheError::Similarity(similarity));
            }
            observations.record(similarity, correct);
        }
        Ok(observations)
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Observations) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            mine[0] = mine[0].saturating_add(theirs[0]);
            mine[1] = mine[1].saturating_add(theirs[1]);
        }
        self.total = self.total.saturating_add(other.total);
    }

    /// The counts as bytes, to store: for each grid slot holding any,
    /// [`COUNT_BYTES`] bytes (the slot as a little-endian `u16`, then the
    /// right and the wrong count as little-endian `u64`s). At most 401
    /// slots, so at most 7,218 bytes however many labels were counted;
    /// what is kept is what a threshold is learned from (the similarity to
    /// the grid's 0.005).
    ///
    /// ```
    /// use stratum_semantic::ThresholdConfig;
    /// use stratum_semantic::threshold::Observations;
    ///
    /// let labels = (0..2_000).map(|i| (i as f32 / 2_000.0, i > 1_200));
    /// let counted = Observations::from_labels(labels)?;
    /// let bytes = counted.to_bytes();
    /// assert!(bytes.len() <= 401 * 18);
    /// let back = Observations::from_bytes(&bytes)?;
    /// assert_eq!(back.len(), 2_000);
    /// let config = ThresholdConfig::with_target_error(0.05);
    /// assert_eq!(back.learned(&config), counted.learned(&config));
    /// assert!(Observations::from_bytes(&bytes[1..]).is_err());
    /// # Ok::<(), stratum_semantic::CacheError>(())
    /// ```
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (slot, c) in self.counts.iter().enumerate() {
            if c[0] == 0 && c[1] == 0 {
                continue;
            }
            // Below GRID (401): fits a u16.
            #[allow(clippy::cast_possible_truncation)]
            out.extend_from_slice(&(slot as u16).to_le_bytes());
            out.extend_from_slice(&c[0].to_le_bytes());
            out.extend_from_slice(&c[1].to_le_bytes());
        }
        out
    }

    /// Counts from [`to_bytes`](Self::to_bytes); refuses a length that is
    /// not a whole number of records and a slot beyond the grid.
    pub fn from_bytes(bytes: &[u8]) -> Result<Observations, crate::CacheError> {
        if !bytes.len().is_multiple_of(COUNT_BYTES) {
            return Err(crate::CacheError::Labels(format!(
                "{} bytes is not a whole number of {COUNT_BYTES}-byte counts",
                bytes.len()
            )));
        }
        let mut observations = Observations::default();
        for record in bytes.chunks_exact(COUNT_BYTES) {
            let slot = usize::from(u16::from_le_bytes([record[0], record[1]]));
            let count = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&record[at..at + 8]);
                u64::from_le_bytes(b)
            };
            let (right, wrong) = (count(2), count(10));
            let Some(c) = observations.counts.get_mut(slot) else {
                return Err(crate::CacheError::Labels(format!(
                    "slot {slot} is beyond the grid's {GRID}"
                )));
            };
            c[0] = c[0].saturating_add(right);
            c[1] = c[1].saturating_add(wrong);
            observations.total = observations
                .total
                .saturating_add(right)
                .saturating_add(wrong);
        }
        Ok(observations)
    }

    /// The lowest grid threshold whose risk is shown to be at most
    /// `config.target_error` (see the module docs), or `None` when even 1.0
    /// is not (too few observations).
    #[must_use]
    pub fn learned(&self, config: &ThresholdConfig) -> Option<Threshold> {
        let alpha = 1.0 - config.confidence;
        let mut wrong = 0;
        let mut learned = None;
        for (i, c) in self.counts.iter().enumerate() {
            wrong += c[1];
            if binomial_cdf(wrong, self.total, config.target_error) > alpha {
                break;
            }
            learned = Some(Threshold(i));
        }
        learned
    }

    /// The share of all observations that `threshold` would have answered
    /// wrongly: the empirical risk.
    #[must_use]
    pub fn empirical_risk(&self, threshold: Threshold) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let wrong: u64 = self.counts.iter().take(threshold.0 + 1).map(|c| c[1]).sum();
        #[allow(clippy::cast_precision_loss)]
        let risk = wrong as f64 / self.total as f64;
        risk
    }
}

/// What one entry has learned, as plain data: its labelled lookups (oldest
/// first) and the floor reported wrong answers raised. A host stores it
/// with the entry and hands it back after a restart
/// ([`SemanticCache::labels`](crate::SemanticCache::labels),
/// [`SemanticCache::restore`](crate::SemanticCache::restore)), so what an
/// entry learned outlives the process.
///
/// ```
/// use stratum_semantic::threshold::EntryLabels;
///
/// let labels = EntryLabels::new(vec![(0.91, true), (0.88, false)], Some(0.88))?;
/// let bytes = labels.observations_to_bytes();
/// assert_eq!(bytes.len(), 2 * 5);
/// assert_eq!(EntryLabels::from_bytes(&bytes, Some(0.88))?, labels);
/// assert!(EntryLabels::from_bytes(&bytes[..7], None).is_err());
/// # Ok::<(), stratum_semantic::CacheError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct EntryLabels {
    /// Labelled lookups of the entry, oldest first: the nearest similarity
    /// and whether the entry's answer was right.
    pub observations: Vec<(f32, bool)>,
    /// A reported wrong answer's similarity: the entry answers only lookups
    /// strictly more similar (`None`: none reported).
    pub floor: Option<f32>,
}

/// Bytes per observation in [`EntryLabels::observations_to_bytes`]: the
/// similarity (`f32`, little-endian) and the label (0 wrong, 1 right).
const LABEL_BYTES: usize = 5;

impl EntryLabels {
    /// Labels from observations and a floor; refuses a similarity outside
    /// [-1, 1] or NaN.
    pub fn new(
        observations: Vec<(f32, bool)>,
        floor: Option<f32>,
    ) -> Result<EntryLabels, crate::CacheError> {
        for s in observations.iter().map(|o| o.0).chain(floor) {
            if !(-1.0..=1.0).contains(&s) {
                return Err(crate::CacheError::Similarity(s));
            }
        }
        Ok(EntryLabels {
            observations,
            floor,
        })
    }

    /// Whether nothing was learned.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.observations.is_empty() && self.floor.is_none()
    }

    /// The observations as bytes: five per observation (the similarity as a
    /// little-endian `f32`, then 1 for right, 0 for wrong).
    #[must_use]
    pub fn observations_to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.observations.len() * LABEL_BYTES);
        for &(s, right) in &self.observations {
            out.extend_from_slice(&s.to_le_bytes());
            out.push(u8::from(right));
        }
        out
    }

    /// Labels from [`observations_to_bytes`](Self::observations_to_bytes)
    /// and a floor; refuses a length that is not a multiple of five, a
    /// label byte other than 0 or 1, and a similarity outside [-1, 1].
    pub fn from_bytes(bytes: &[u8], floor: Option<f32>) -> Result<EntryLabels, crate::CacheError> {
        if !bytes.len().is_multiple_of(LABEL_BYTES) {
            return Err(crate::CacheError::Labels(format!(
                "{} bytes is not a whole number of {LABEL_BYTES}-byte observations",
                bytes.len()
            )));
        }
        let mut observations = Vec::with_capacity(bytes.len() / LABEL_BYTES);
        for chunk in bytes.chunks_exact(LABEL_BYTES) {
            let s = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let right = match chunk[4] {
                0 => false,
                1 => true,
                other => {
                    return Err(crate::CacheError::Labels(format!(
                        "label byte {other} is neither 0 (wrong) nor 1 (right)"
                    )));
                }
            };
            observations.push((s, right));
        }
        EntryLabels::new(observations, floor)
    }
}

/// One entry's learned state: its own observations (the latest
/// `entry_observations`), its learned threshold, and the floor that
/// [`report_wrong`](EntryThreshold::report_wrong) raised.
#[derive(Debug, Clone, Default)]
pub struct EntryThreshold {
    recent: std::collections::VecDeque<(f32, bool)>,
    learned: Option<Threshold>,
    floor: Option<f32>,
}

impl EntryThreshold {
    /// The state `labels` describe: its latest `entry_observations`
    /// observations, the threshold they show, its floor.
    #[must_use]
    pub fn from_labels(labels: &EntryLabels, config: &ThresholdConfig) -> EntryThreshold {
        let keep = config.entry_observations.max(1);
        let skip = labels.observations.len().saturating_sub(keep);
        let mut entry = EntryThreshold {
            recent: labels.observations[skip..].iter().copied().collect(),
            learned: None,
            floor: labels.floor,
        };
        entry.relearn(config);
        entry
    }

    /// The entry's state as plain data.
    #[must_use]
    pub fn labels(&self) -> EntryLabels {
        EntryLabels {
            observations: self.recent.iter().copied().collect(),
            floor: self.floor,
        }
    }

    /// Records a labelled lookup of this entry and re-learns its threshold.
    pub fn record(&mut self, similarity: f32, correct: bool, config: &ThresholdConfig) {
        if self.recent.len() >= config.entry_observations.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back((similarity, correct));
        self.relearn(config);
    }

    fn relearn(&mut self, config: &ThresholdConfig) {
        let mut observations = Observations::default();
        for &(s, c) in &self.recent {
            observations.record(s, c);
        }
        self.learned = observations.learned(config);
    }

    /// Records a wrong answer at `similarity` and tightens the entry: from
    /// now on it answers only lookups strictly more similar than that.
    pub fn report_wrong(&mut self, similarity: f32, config: &ThresholdConfig) {
        self.record(similarity, false, config);
        self.floor = Some(self.floor.map_or(similarity, |f| f.max(similarity)));
    }

    /// Whether a lookup at `similarity` is answered by this entry, given the
    /// cache-wide learned threshold `shared` (`None`: not learned yet).
    ///
    /// The entry's own threshold, once its observations show one, takes
    /// precedence over the shared one; a reported wrong answer always
    /// excludes every similarity up to it.
    #[must_use]
    pub fn accepts(&self, similarity: f32, shared: Option<Threshold>) -> bool {
        let Some(threshold) = self.learned.or(shared) else {
            return false;
        };
        threshold.accepts(similarity) && self.above_floor(similarity)
    }

    /// Whether a lookup at `similarity` is answered under a fixed threshold
    /// (the entry's own observations are not used; a reported wrong answer
    /// still excludes every similarity up to it).
    #[must_use]
    pub fn accepts_fixed(&self, similarity: f32, fixed: f32) -> bool {
        similarity >= fixed && self.above_floor(similarity)
    }

    fn above_floor(&self, similarity: f32) -> bool {
        self.floor.is_none_or(|f| similarity > f)
    }

    /// The entry's own learned threshold, if its observations show one.
    #[must_use]
    pub fn learned(&self) -> Option<Threshold> {
        self.learned
    }
}
