//! Predictive pre-loading: an online model of which keys follow which
//! ([`Predictor`]), and the cache's side of a prefetch ([`Prefetch`]):
//! guesses enter S3-FIFO's probationary queue, flagged, so a wrong one
//! leaves before any entry that was read twice, and every guess is judged
//! (read before it left, or not) in [`CacheStats`].
//!
//! # The model
//!
//! Reads arrive with a *context* (a caller's task, say): a small window of
//! each context's last reads is kept, and a read of `B` credits `B` as a
//! successor of every distinct key in that window (once per occurrence of
//! the predecessor). Each tracked key keeps at most
//! [`PrefetchConfig::successors`] successors with counts and how closely
//! each followed (the fewest reads between; a new successor of a full
//! table replaces the weakest one only if that was seen once, so frequent
//! successors stay) and its own read count; counts and reads are halved
//! when the read count reaches [`HALVE_AT`], so old habits fade. The
//! estimated probability that `B` follows a read of `A` is
//! `count(A -> B) / reads(A)`; [`Predictor::propose`] returns the
//! successors at or above [`PrefetchConfig::threshold`] once `A` was read
//! [`PrefetchConfig::min_reads`] times and, before that, those among them
//! that came within [`PrefetchConfig::early_window`] reads of `A`: after
//! one occurrence a context's next reads are what belongs with `A` and,
//! further on, whatever the caller turned to next. Early proposals are
//! made while the reads confirm them (an early gate: a quarter of the
//! early guesses of the last judgement were read again soon after).
//!
//! Tracked keys are bounded ([`PrefetchConfig::max_tracked_keys`]); a new
//! key replaces one chosen by CLOCK (a key read since the hand last passed
//! gets another round). [`Predictor::bytes_per_key`] states the bytes one
//! tracked key costs and [`Predictor::memory_bytes`] counts them.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::cache::{Lead, ShardedCache};
use crate::error::ConfigError;
use crate::stats::{CacheStats, Counter};

/// A key's read count (and its successors' counts) are halved when it
/// reaches this: estimates follow about the last 32 to 64 reads.
pub const HALVE_AT: u32 = 64;
/// The longest context window [`PrefetchConfig::window`] may ask for.
pub const MAX_WINDOW: usize = 8;
/// The most successors per key [`PrefetchConfig::successors`] may ask for.
pub const MAX_SUCCESSORS: usize = 16;
/// Early guesses the early gate judges at a time (see
/// [`Predictor::early_open`]).
pub const GATE_EPOCH: u32 = 256;
/// The share of early guesses the reads must confirm for the early gate
/// ([`Predictor::early_open`]) to stay open. Per judgement of 256
/// guesses, the tuning workload's groups confirmed 0.38 to 0.70 (over the
/// test server; its prefetches' precision was 88 to 93 %: a guess read
/// later than the window still counts there), and the Zipf control's
/// uncorrelated reads 0.02 to 0.07 (docs/prefetch.md): a quarter is far
/// from both.
pub const GATE_SHARE: f64 = 0.25;
/// Context slots (a context is hashed to one; two contexts sharing a slot
/// only add noise to each other's windows).
const CONTEXTS: usize = 256;

/// Predictive pre-loading (`[cache.prefetch]` in Stratum). The cache
/// crate's [`Predictor`] reads the model's knobs; the loader (a Stratum
/// repository) reads the call limits.
///
/// ```
/// use stratum_cache::PrefetchConfig;
///
/// let config: PrefetchConfig = serde_json::from_str(r#"{ "enabled": true, "threshold": 0.7 }"#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.successors, 8);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PrefetchConfig {
    /// Learn co-access patterns and prefetch. Default `true`: where reads
    /// come in recurring groups it removes about a third of the misses,
    /// and where they do not it proposes nothing and costs the read path
    /// a few percent at most (docs/prefetch.md has the measurements).
    /// `false` (`STRATUM_CACHE_PREFETCH_ENABLED=false`) turns it off: no
    /// model, no read buffer, no drain task.
    pub enabled: bool,
    /// Keys whose successors are tracked, at most (about
    /// [`Predictor::bytes_per_key`] bytes each, ~250 for an ObjectId in
    /// Stratum, whose handle has one model: about 8 MB at the default).
    /// The state grows with the distinct keys read. Default 32 768.
    pub max_tracked_keys: usize,
    /// Successors kept per tracked key (1 to [`MAX_SUCCESSORS`]). Default 8.
    pub successors: usize,
    /// How many of a context's previous reads a read is credited after
    /// (1 to [`MAX_WINDOW`]). Default 8: a conversation's header then
    /// predicts its last messages in one batch.
    pub window: usize,
    /// The estimated probability a successor must reach to be prefetched,
    /// in (0, 1]. Default 0.6.
    pub threshold: f64,
    /// Reads of a key before all its likely successors are proposed (at
    /// least 1). Default 2.
    pub min_reads: u32,
    /// Before that, the successors that came within this many reads of
    /// the key's one occurrence are proposed (0 to `window`), while the
    /// reads confirm such early guesses (see the module documentation's
    /// early gate). Default 2: a group is prefetched from its second
    /// occurrence on instead of its third; 0 turns early proposals off.
    pub early_window: usize,
    /// Keys one prefetch asks the database for, at most (one batched
    /// query; at least 1). Default 16.
    pub max_batch: usize,
    /// Prefetch calls in flight at once per repository, at most (at least
    /// 1); a prefetch finding none free is skipped. Default 16.
    pub max_in_flight: usize,
    /// The share of a repository's database calls prefetches may make, in
    /// [0, 1]. Default 0.5 (a prefetch replaces several read calls; the
    /// correlated workload made 0.17 prefetch calls per read call).
    pub max_share: f64,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        PrefetchConfig {
            enabled: true,
            max_tracked_keys: 32_768,
            successors: 8,
            window: 8,
            threshold: 0.6,
            min_reads: 2,
            early_window: 2,
            max_batch: 16,
            max_in_flight: 16,
            max_share: 0.5,
        }
    }
}

impl PrefetchConfig {
    /// Checks every knob; the error names the field.
    ///
    /// ```
    /// let mut bad = stratum_cache::PrefetchConfig::default();
    /// bad.threshold = 0.0;
    /// assert_eq!(bad.validate().unwrap_err().field(), "threshold");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_tracked_keys == 0 {
            return Err(ConfigError::invalid(
                "max_tracked_keys",
                "must be at least 1",
            ));
        }
        if !(1..=MAX_SUCCESSORS).contains(&self.successors) {
            return Err(ConfigError::invalid("successors", "must be in [1, 16]"));
        }
        if !(1..=MAX_WINDOW).contains(&self.window) {
            return Err(ConfigError::invalid("window", "must be in [1, 8]"));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(ConfigError::invalid("threshold", "must be in (0, 1]"));
        }
        if self.min_reads == 0 {
            return Err(ConfigError::invalid("min_reads", "must be at least 1"));
        }
        if self.early_window > self.window {
            return Err(ConfigError::invalid(
                "early_window",
                "must be at most `window`",
            ));
        }
        if self.max_batch == 0 {
            return Err(ConfigError::invalid("max_batch", "must be at least 1"));
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::invalid("max_in_flight", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.max_share) {
            return Err(ConfigError::invalid("max_share", "must be in [0, 1]"));
        }
        Ok(())
    }
}

/// One successor of a tracked key: its hash (the key itself is found
/// through its own node), how often it followed, and how closely (the
/// fewest reads of the context from the key to it; it fits in the
/// padding, so a successor still costs 16 bytes).
#[derive(Debug, Clone, Copy)]
struct Succ {
    hash: u64,
    count: u32,
    near: u8,
}

struct Node<K> {
    key: K,
    hash: u64,
    /// Reads of this key (halved with the counts).
    reads: u32,
    /// Read since the CLOCK hand last passed.
    referenced: bool,
    /// At most `successors`, allocated to exactly that on first use.
    succ: Vec<Succ>,
}

impl<K> Node<K> {
    /// Credits `hash` as a successor that came `near` reads after this
    /// key (at most `config.successors` slots). Returns whether this
    /// confirms an early proposal: `hash` came within `early_window` reads
    /// of the key's earlier occurrence, and the key, read fewer than
    /// `min_reads` times then, was read again since (see [`EarlyGate`]).
    fn credit(&mut self, hash: u64, near: u8, config: &PrefetchConfig) -> bool {
        let reads = self.reads;
        if let Some(s) = self.succ.iter_mut().find(|s| s.hash == hash) {
            let confirms = (2..=config.min_reads).contains(&reads)
                && usize::from(s.near) <= config.early_window;
            s.count = (s.count + 1).min(reads);
            s.near = s.near.min(near);
            return confirms;
        }
        let max = config.successors;
        let fresh = Succ {
            hash,
            count: 1,
            near,
        };
        if self.succ.len() < max {
            if self.succ.capacity() == 0 {
                self.succ.reserve_exact(max);
            }
            self.succ.push(fresh);
            return false;
        }
        // Full: the newcomer takes the weakest slot only if that one was
        // seen once (since the last halving); otherwise it is dropped. A
        // frequent successor is never worn down by noise (lowering every
        // count per newcomer, as Misra-Gries does, cost the correlated
        // workload all its prefetches with an 8-read window), and halving
        // weakens stale slots so new habits get in.
        if let Some(weakest) = self.succ.iter_mut().min_by_key(|s| s.count)
            && weakest.count <= 1
        {
            *weakest = fresh;
        }
        false
    }

    /// Whether a read of this key would propose `s`: its estimated
    /// probability `count / reads` reaches the threshold and, while the
    /// key was read fewer than `min_reads` times (one occurrence is thin
    /// evidence: whatever the caller read next counts), it came within
    /// `early` reads of the key (`early_window` while the
    /// [`EarlyGate`] is open, else 0).
    fn likely(&self, s: &Succ, config: &PrefetchConfig, early: usize) -> bool {
        f64::from(s.count) >= config.threshold * f64::from(self.reads)
            && (self.reads >= config.min_reads || (self.reads > 0 && usize::from(s.near) <= early))
    }

    /// Whether a read of this key would propose a successor.
    fn proposes(&self, config: &PrefetchConfig, early: usize) -> bool {
        self.succ.iter().any(|s| self.likely(s, config, early))
    }

    /// Whether this key was read `min_reads` times and would propose a
    /// successor.
    fn established(&self, config: &PrefetchConfig) -> bool {
        self.reads >= config.min_reads && self.proposes(config, 0)
    }

    /// How many successors a read of this key now would propose early,
    /// were the gate open: the guesses its next reads confirm or not.
    fn early_proposals(&self, config: &PrefetchConfig) -> u32 {
        if self.reads >= config.min_reads {
            return 0;
        }
        let early = self
            .succ
            .iter()
            .filter(|s| self.likely(s, config, config.early_window))
            .count();
        u32::try_from(early).unwrap_or(u32::MAX)
    }

    fn read(&mut self) {
        self.referenced = true;
        self.reads += 1;
        if self.reads >= HALVE_AT {
            self.reads /= 2;
            for s in &mut self.succ {
                s.count /= 2;
            }
            self.succ.retain(|s| s.count > 0);
        }
    }
}

/// One shard of tracked keys: nodes in a slab, an index by hash, a CLOCK hand.
struct Table<K> {
    index: HashTable<u32>,
    nodes: Vec<Node<K>>,
    hand: usize,
    cap: usize,
}

impl<K: Clone> Table<K> {
    fn find(&self, hash: u64) -> Option<usize> {
        let nodes = &self.nodes;
        self.index
            .find(hash, |&i| {
                nodes.get(i as usize).is_some_and(|n| n.hash == hash)
            })
            .map(|&i| i as usize)
    }

    fn node_mut(&mut self, hash: u64) -> Option<&mut Node<K>> {
        let i = self.find(hash)?;
        self.nodes.get_mut(i)
    }

    /// The node of `key`, made (replacing CLOCK's victim when full).
    fn get_or_insert(&mut self, hash: u64, key: &K) -> Option<&mut Node<K>> {
        if let Some(i) = self.find(hash) {
            return self.nodes.get_mut(i);
        }
        let node = Node {
            key: key.clone(),
            hash,
            reads: 0,
            referenced: false,
            succ: Vec::new(),
        };
        let i = if self.nodes.len() < self.cap {
            if self.nodes.len() == self.nodes.capacity() {
                // Grow by doubling, never past the cap: the memory bound
                // counts capacity, not length.
                let more = self.nodes.len().max(16).min(self.cap - self.nodes.len());
                self.nodes.reserve_exact(more);
            }
            self.nodes.push(node);
            self.nodes.len() - 1
        } else {
            let victim = self.victim()?;
            let old = std::mem::replace(self.nodes.get_mut(victim)?, node);
            if let Ok(found) = self.index.find_entry(old.hash, |&i| i as usize == victim) {
                found.remove();
            }
            victim
        };
        let nodes = &self.nodes;
        self.index.insert_unique(hash, i as u32, |&j| {
            nodes.get(j as usize).map_or(0, |n| n.hash)
        });
        self.nodes.get_mut(i)
    }

    /// CLOCK: the first node the hand finds unreferenced (each pass clears
    /// the bits it passes, so at most two rounds).
    fn victim(&mut self) -> Option<usize> {
        let n = self.nodes.len();
        for _ in 0..2 * n {
            let i = self.hand % n.max(1);
            self.hand = (i + 1) % n.max(1);
            let node = self.nodes.get_mut(i)?;
            if node.referenced {
                node.referenced = false;
            } else {
                return Some(i);
            }
        }
        None
    }

    fn bytes(&self) -> usize {
        self.nodes.capacity() * size_of::<Node<K>>()
            + self
                .nodes
                .iter()
                .map(|n| n.succ.capacity() * size_of::<Succ>())
                .sum::<usize>()
            + index_bytes(self.index.capacity())
    }
}

/// What hashbrown allocates for `capacity` `u32` slots: buckets (a power
/// of two holding the capacity at 7/8 load) of four bytes and a control
/// byte each, plus a group of control bytes.
fn index_bytes(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = (capacity * 8 / 7).next_power_of_two().max(4);
    buckets * (size_of::<u32>() + 1) + 16
}

/// A context's last reads (hashes), newest last.
#[derive(Default, Clone, Copy)]
struct Window {
    hashes: [u64; MAX_WINDOW],
    len: usize,
}

impl Window {
    /// Pushes `hash` (dropping the oldest when full of `max`) and returns
    /// the distinct keys to credit, each with how many reads back it was
    /// last read: those read after `hash`'s last occurrence in the window
    /// (earlier ones credited it then).
    fn push(&mut self, hash: u64, max: usize, out: &mut [(u64, u8); MAX_WINDOW]) -> usize {
        let len = self.len.min(MAX_WINDOW);
        let window = self.hashes.get(..len).unwrap_or(&[]);
        let start = window.iter().rposition(|&h| h == hash).map_or(0, |p| p + 1);
        let mut n = 0;
        // Newest first, so a key in the window twice gets its nearest read.
        for (back, &h) in window.get(start..).unwrap_or(&[]).iter().rev().enumerate() {
            if !out
                .get(..n)
                .unwrap_or(&[])
                .iter()
                .any(|(seen, _)| *seen == h)
                && let Some(slot) = out.get_mut(n)
            {
                *slot = (h, u8::try_from(back + 1).unwrap_or(u8::MAX));
                n += 1;
            }
        }
        let max = max.clamp(1, MAX_WINDOW);
        if len >= max {
            self.hashes.copy_within(len + 1 - max..len, 0);
            self.len = max - 1;
        }
        if let Some(slot) = self.hashes.get_mut(self.len) {
            *slot = hash;
            self.len += 1;
        }
        n
    }
}

/// Whether early proposals are made (with `early_window` > 0).
///
/// One occurrence of a key is as often a group's start as a one-off: on
/// uncorrelated reads a tail key's second read proposed whatever followed
/// its first, and hardly any of it was read (docs/prefetch.md). So the
/// early rule is judged on what the reads show: a *guess* is a successor
/// a key's early read would propose (whether or not the gate let it), and
/// it is *confirmed* when the caller reads it again within the window
/// after that read. Every [`GATE_EPOCH`] guesses the gate opens if the
/// confirmed share reached [`GATE_SHARE`], and closes otherwise. The
/// judgement does not depend on the proposals being made, so a closed gate
/// reopens when the reads change, without probing. It starts open.
#[derive(Debug)]
struct EarlyGate {
    open: std::sync::atomic::AtomicBool,
    /// Guesses and confirmations since the last judgement.
    tally: Mutex<(u32, u32)>,
    /// Guesses per judgement ([`GATE_EPOCH`]; fewer in tests).
    epoch: u32,
}

impl EarlyGate {
    fn new(epoch: u32) -> EarlyGate {
        EarlyGate {
            open: std::sync::atomic::AtomicBool::new(true),
            tally: Mutex::new((0, 0)),
            epoch,
        }
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Adds one read's guesses and confirmations; judges when an epoch's
    /// guesses are in.
    fn add(&self, guesses: u32, confirmed: u32) {
        if guesses == 0 && confirmed == 0 {
            return;
        }
        let mut tally = self.tally.lock();
        tally.0 = tally.0.saturating_add(guesses);
        tally.1 = tally.1.saturating_add(confirmed);
        if tally.0 >= self.epoch {
            let open = f64::from(tally.1) >= GATE_SHARE * f64::from(tally.0);
            self.open.store(open, Ordering::Relaxed);
            *tally = (0, 0);
        }
    }
}

/// The online co-access model: see the module documentation.
///
/// ```
/// use stratum_cache::{Predictor, PrefetchConfig};
///
/// let p = Predictor::new(&PrefetchConfig::default()).unwrap(); // min_reads = 2
/// for _ in 0..3 {
///     p.record(1, &"conversation");
///     p.record(1, &"summary");
///     p.record(1, &"settings");
/// }
/// let mut next = p.propose(&"conversation");
/// next.sort();
/// assert_eq!(next, ["settings", "summary"]);
/// ```
pub struct Predictor<K> {
    tables: Box<[Mutex<Table<K>>]>,
    contexts: Box<[Mutex<Window>]>,
    hasher: foldhash::fast::FixedState,
    gate: EarlyGate,
    config: PrefetchConfig,
}

impl<K> std::fmt::Debug for Predictor<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor")
            .field("max_tracked_keys", &self.config.max_tracked_keys)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> Predictor<K> {
    /// A model configured by `config` (validated).
    pub fn new(config: &PrefetchConfig) -> Result<Predictor<K>, ConfigError> {
        config.validate()?;
        // About 1 024 keys a shard, at most 16 shards (a read locks its
        // own shard and its window's predecessors', one at a time).
        let shards = (config.max_tracked_keys / 1024)
            .clamp(1, 16)
            .next_power_of_two();
        let cap = (config.max_tracked_keys / shards).max(1);
        Ok(Predictor {
            tables: (0..shards)
                .map(|_| {
                    Mutex::new(Table {
                        index: HashTable::new(),
                        nodes: Vec::new(),
                        hand: 0,
                        cap,
                    })
                })
                .collect(),
            contexts: (0..CONTEXTS)
                .map(|_| Mutex::new(Window::default()))
                .collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x005e_ed0f_c0ac_ce55),
            gate: EarlyGate::new(GATE_EPOCH),
            config: config.clone(),
        })
    }

    fn table(&self, hash: u64) -> &Mutex<Table<K>> {
        let i = (hash >> 48) as usize & (self.tables.len() - 1);
        match self.tables.get(i) {
            Some(t) => t,
            None => &self.tables[0],
        }
    }

    /// Notes a read of `key` by `context` (any stable number for one flow
    /// of reads: a task id, a session): the key's read count, and `key` as
    /// a successor of the context's recent reads.
    pub fn record(&self, context: u64, key: &K) {
        self.record_gains(context, key, |_| {});
    }

    /// [`Predictor::record`], calling `gained` with every key read
    /// `min_reads` times that had no successor to propose before this read
    /// and has one now (the read key reaching `min_reads`, or a
    /// predecessor's successor reaching the threshold): what a caller
    /// caching "worth a proposal" per key needs. A key read once with
    /// successors in its early window is not reported: one read is as
    /// often a one-off as a group's start, and reporting every such key
    /// would flag most keys of uncorrelated reads; its early successors
    /// are asked for when it is read next ([`Predictor::propose`]).
    pub fn record_gains(&self, context: u64, key: &K, mut gained: impl FnMut(&K)) {
        let config = &self.config;
        let hash = self.hasher.hash_one(key);
        let mut preds = [(0u64, 0u8); MAX_WINDOW];
        let n = {
            let slot = (self.hasher.hash_one(context) as usize) % CONTEXTS;
            match self.contexts.get(slot) {
                Some(w) => w.lock().push(hash, self.config.window, &mut preds),
                None => 0,
            }
        };
        let judged = config.early_window > 0;
        let (mut guesses, mut confirmed) = (0, 0);
        if let Some(node) = self.table(hash).lock().get_or_insert(hash, key) {
            if judged {
                guesses = node.early_proposals(config);
            }
            let before = node.established(config);
            node.read();
            if !before && node.established(config) {
                gained(&node.key);
            }
        }
        for &(p, near) in preds.get(..n).unwrap_or(&[]) {
            if let Some(node) = self.table(p).lock().node_mut(p) {
                let before = node.established(config);
                confirmed += u32::from(node.credit(hash, near, config));
                if !before && node.established(config) {
                    gained(&node.key);
                }
            }
        }
        if judged {
            self.gate.add(guesses, confirmed);
        }
    }

    /// The early window proposals use now: `early_window` while the
    /// [`EarlyGate`] is open, else 0.
    fn early(&self) -> usize {
        if self.gate.is_open() {
            self.config.early_window
        } else {
            0
        }
    }

    /// Whether early proposals are made now: `early_window` is set and
    /// the early guesses of the last judgement were confirmed often
    /// enough (see the module documentation).
    pub fn early_open(&self) -> bool {
        self.early() > 0
    }

    /// The successors of `key` whose estimated probability reaches the
    /// threshold (most likely first, at most `max_batch`); until `key` was
    /// read `min_reads` times, only those within `early_window` reads of it.
    pub fn propose(&self, key: &K) -> Vec<K> {
        self.propose_where(key, |_| true)
    }

    /// [`Predictor::propose`], keeping only the successors `keep` accepts
    /// (those not cached, say): the others are never cloned.
    pub fn propose_where(&self, key: &K, mut keep: impl FnMut(&K) -> bool) -> Vec<K> {
        let hash = self.hasher.hash_one(key);
        // On the stack: a proposal whose successors are all kept out (all
        // cached, the common case of a hot key) allocates nothing.
        let mut likely = [Succ {
            hash: 0,
            count: 0,
            near: 0,
        }; MAX_SUCCESSORS];
        let mut n = 0;
        let early = self.early();
        {
            let mut table = self.table(hash).lock();
            let Some(node) = table.node_mut(hash) else {
                return Vec::new();
            };
            for s in node
                .succ
                .iter()
                .filter(|s| node.likely(s, &self.config, early))
            {
                if let Some(slot) = likely.get_mut(n) {
                    *slot = *s;
                    n += 1;
                }
            }
        }
        let likely = likely.get_mut(..n).unwrap_or(&mut []);
        likely.sort_by_key(|s| std::cmp::Reverse(s.count));
        likely
            .iter()
            .take(self.config.max_batch)
            .filter_map(|s| {
                let table = self.table(s.hash).lock();
                let i = table.find(s.hash)?;
                table
                    .nodes
                    .get(i)
                    .filter(|n| keep(&n.key))
                    .map(|n| n.key.clone())
            })
            .collect()
    }

    /// Whether a read of `key` would propose anything now (without cloning
    /// a key): the check a caller makes to decide whether a read of `key`
    /// is worth a proposal.
    pub fn has_proposals(&self, key: &K) -> bool {
        let hash = self.hasher.hash_one(key);
        let mut table = self.table(hash).lock();
        table
            .node_mut(hash)
            .is_some_and(|n| n.proposes(&self.config, self.early()))
    }

    /// Whether `next` is among the successors a read of `key` would
    /// propose now.
    pub fn predicts(&self, key: &K, next: &K) -> bool {
        let (hash, next) = (self.hasher.hash_one(key), self.hasher.hash_one(next));
        let mut table = self.table(hash).lock();
        let early = self.early();
        table.node_mut(hash).is_some_and(|node| {
            node.succ
                .iter()
                .any(|s| s.hash == next && node.likely(s, &self.config, early))
        })
    }

    /// Calls `f` with each key in `context`'s window (its latest reads,
    /// `next` itself left out) read `min_reads` times whose proposal
    /// includes `next`: after a read of `next` missed, the keys that
    /// predicted it. A key read once is left out, as in
    /// [`Predictor::record_gains`]: a caller arming a per-key check on
    /// every read of such keys would pay it on most hits of uncorrelated
    /// reads.
    pub fn predictors(&self, context: u64, next: &K, mut f: impl FnMut(&K)) {
        let hash = self.hasher.hash_one(next);
        let window = {
            let slot = (self.hasher.hash_one(context) as usize) % CONTEXTS;
            match self.contexts.get(slot) {
                Some(w) => *w.lock(),
                None => return,
            }
        };
        let len = window.len.min(MAX_WINDOW);
        let hashes = window.hashes.get(..len).unwrap_or(&[]);
        for (i, &p) in hashes.iter().enumerate() {
            // Each key once, however often it is in the window.
            if p == hash || hashes.get(..i).is_some_and(|seen| seen.contains(&p)) {
                continue;
            }
            let mut table = self.table(p).lock();
            if let Some(node) = table.node_mut(p)
                && node
                    .succ
                    .iter()
                    .any(|s| s.hash == hash && node.likely(s, &self.config, 0))
            {
                f(&node.key);
            }
        }
    }

    /// The configuration the model was made with.
    pub fn config(&self) -> &PrefetchConfig {
        &self.config
    }

    /// Keys tracked now (at most `max_tracked_keys`).
    pub fn tracked_keys(&self) -> usize {
        self.tables.iter().map(|t| t.lock().nodes.len()).sum()
    }

    /// The bound on tracked keys (`max_tracked_keys` rounded down to a
    /// multiple of the shard count).
    pub fn capacity(&self) -> usize {
        self.tables.iter().map(|t| t.lock().cap).sum()
    }

    /// Bytes one tracked key costs at most, besides what `K` owns on the
    /// heap: its node (the key inline, its hash, counts), a full successor
    /// table (16 bytes a successor) and its index slots: a four-byte slot
    /// and a control byte per bucket, at most four buckets per 7/8 of a
    /// key (a power of two of buckets, and the index may double once
    /// more to clear the tombstones replaced keys leave).
    pub fn bytes_per_key(&self) -> usize {
        size_of::<Node<K>>()
            + self.config.successors * size_of::<Succ>()
            + (4 * (size_of::<u32>() + 1) * 8).div_ceil(7)
    }

    /// Bytes that do not grow with the keys: the context windows and the
    /// shards' headers and index slack.
    pub fn fixed_bytes(&self) -> usize {
        CONTEXTS * size_of::<Mutex<Window>>()
            + self.tables.len() * (size_of::<Mutex<Table<K>>>() + 64)
    }

    /// The model's state in bytes now (besides what keys own on the
    /// heap): never more than `capacity() * bytes_per_key() + fixed_bytes()`.
    pub fn memory_bytes(&self) -> usize {
        CONTEXTS * size_of::<Mutex<Window>>()
            + self
                .tables
                .iter()
                .map(|t| size_of::<Mutex<Table<K>>>() + t.lock().bytes())
                .sum::<usize>()
    }
}

/// Reads a [`ReadBuffer`] stripe holds before it asks to be drained.
pub const DRAIN_AT: usize = 16;
/// Reads a [`ReadBuffer`] stripe holds at most; a read pushed to a full
/// stripe is dropped (counted in [`ReadBuffer::dropped`]).
pub const STRIPE_CAPACITY: usize = 64;

/// Reads waiting to be recorded in a [`Predictor`], so that a read pays a
/// push and the model's update runs elsewhere (a drain task). Striped by
/// context (a context's reads stay in order in one stripe), bounded and
/// lossy when full, as Caffeine's read buffer is: the model is a
/// statistic, and a dropped read costs it one observation, while an
/// unbounded buffer would cost memory when the drain falls behind.
///
/// ```
/// use stratum_cache::ReadBuffer;
///
/// let buffer = ReadBuffer::new();
/// assert!(!buffer.push(1, "a")); // not yet due
/// buffer.push(2, "x");
/// buffer.push(1, "b");
/// let mut seen = Vec::new();
/// buffer.drain(|context, read| seen.push((context, read)));
/// seen.sort_by_key(|(c, _)| *c); // contexts in any order, each in order
/// assert_eq!(seen, [(1, "a"), (1, "b"), (2, "x")]);
/// assert_eq!(buffer.pending(), 0);
/// ```
pub struct ReadBuffer<T> {
    // No shared counter: one atomic every push touched (a pending count,
    // the drops of full stripes) would bounce its cache line between the
    // cores.
    // Each stripe alone on its cache lines: two threads pushing to
    // neighbouring stripes would otherwise share a line.
    stripes: Box<[CachePadded<Mutex<Stripe<T>>>]>,
}

/// One stripe of a [`ReadBuffer`]: (context, read) pairs in push order,
/// and the reads it dropped when full.
struct Stripe<T> {
    reads: Vec<(u64, T)>,
    dropped: u64,
}

impl<T> Stripe<T> {
    /// Keeps the read unless full (then counts it dropped); returns
    /// whether the stripe is due for a drain.
    fn push(&mut self, context: u64, read: T) -> bool {
        if self.reads.len() >= STRIPE_CAPACITY {
            self.dropped += 1;
            return true;
        }
        if self.reads.capacity() == 0 {
            self.reads.reserve_exact(STRIPE_CAPACITY);
        }
        self.reads.push((context, read));
        self.reads.len() >= DRAIN_AT
    }
}

impl<T> std::fmt::Debug for ReadBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBuffer")
            .field("pending", &self.pending())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl<T> Default for ReadBuffer<T> {
    fn default() -> Self {
        ReadBuffer::new()
    }
}

impl<T> ReadBuffer<T> {
    /// Stripes: a context is hashed to one, so callers on different
    /// threads rarely share a lock.
    const STRIPES: usize = 16;

    /// An empty buffer of 16 stripes of [`STRIPE_CAPACITY`] reads.
    pub fn new() -> ReadBuffer<T> {
        ReadBuffer {
            stripes: (0..Self::STRIPES)
                .map(|_| {
                    CachePadded::new(Mutex::new(Stripe {
                        reads: Vec::new(),
                        dropped: 0,
                    }))
                })
                .collect(),
        }
    }

    /// Buffers a read by `context`; returns whether its stripe now holds
    /// [`DRAIN_AT`] reads or more (time to drain). A full stripe drops the
    /// read.
    pub fn push(&self, context: u64, read: T) -> bool {
        match self.stripes.get(Self::stripe_of(context)) {
            Some(stripe) => stripe.lock().push(context, read),
            None => false,
        }
    }

    /// Buffers a batch of reads (a thread's, say) as [`ReadBuffer::push`]
    /// would one by one, locking a stripe once per run of reads that share
    /// it (a batch of one caller's reads: once); returns whether a stripe
    /// it pushed to is due, and whether one was full (a read dropped).
    ///
    /// ```
    /// use stratum_cache::ReadBuffer;
    ///
    /// let buffer = ReadBuffer::new();
    /// assert_eq!(buffer.push_all([(1, "a"), (1, "b"), (2, "x")]), (false, false));
    /// assert_eq!(buffer.pending(), 3);
    /// ```
    pub fn push_all(&self, reads: impl IntoIterator<Item = (u64, T)>) -> (bool, bool) {
        let (mut due, mut full) = (false, false);
        let mut held: Option<(usize, parking_lot::MutexGuard<'_, Stripe<T>>)> = None;
        for (context, read) in reads {
            let i = Self::stripe_of(context);
            let stripe = match &mut held {
                Some((j, stripe)) if *j == i => stripe,
                _ => {
                    held = None;
                    let Some(stripe) = self.stripes.get(i) else {
                        continue;
                    };
                    &mut held.insert((i, stripe.lock())).1
                }
            };
            full |= stripe.reads.len() >= STRIPE_CAPACITY;
            due |= stripe.push(context, read);
        }
        (due, full)
    }

    /// The stripe of `context`: Fibonacci hashing, the top bits of the
    /// product.
    fn stripe_of(context: u64) -> usize {
        (context.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % Self::STRIPES
    }

    /// Hands every buffered read to `f`, each context's in the order they
    /// were pushed; returns how many. Each stripe is locked only to take
    /// its reads, so pushes go on while `f` runs.
    pub fn drain(&self, mut f: impl FnMut(u64, T)) -> usize {
        let mut n = 0;
        for stripe in self.stripes.iter() {
            let reads = {
                let mut stripe = stripe.lock();
                if stripe.reads.is_empty() {
                    continue;
                }
                std::mem::replace(&mut stripe.reads, Vec::with_capacity(STRIPE_CAPACITY))
            };
            n += reads.len();
            for (context, read) in reads {
                f(context, read);
            }
        }
        n
    }

    /// Reads buffered now (each stripe counted under its lock, so
    /// approximate while pushes and drains run).
    pub fn pending(&self) -> usize {
        self.stripes.iter().map(|s| s.lock().reads.len()).sum()
    }

    /// Reads dropped so far because their stripe was full.
    pub fn dropped(&self) -> u64 {
        self.stripes.iter().map(|s| s.lock().dropped).sum()
    }

    /// Bytes the buffer holds at most besides what reads own on the heap.
    pub fn max_bytes(&self) -> usize {
        Self::STRIPES
            * (size_of::<CachePadded<Mutex<Stripe<T>>>>() + STRIPE_CAPACITY * size_of::<(u64, T)>())
    }
}

/// Prefetch counters a shard keeps (its entries carry the flag).
#[derive(Debug, Default)]
pub(crate) struct PrefetchCounts {
    inserted: AtomicU64,
    read: AtomicU64,
    unread: AtomicU64,
}

impl PrefetchCounts {
    pub(crate) fn inserted(&self) {
        self.inserted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) {
        self.read.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unread(&self) {
        self.unread.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_to(&self, stats: &mut CacheStats) {
        stats.prefetch_inserted += self.inserted.load(Ordering::Relaxed);
        stats.prefetch_read += self.read.load(Ordering::Relaxed);
        stats.prefetch_unread += self.unread.load(Ordering::Relaxed);
    }
}

/// `stratum_cache_prefetches_total{cache, outcome}` (docs/metrics.md).
pub(crate) const PREFETCHES: &str = "stratum_cache_prefetches_total";

/// Sends the prefetch counters with the cache's other series.
pub(crate) fn publish_metrics(name: &str, s: &CacheStats) {
    for (outcome, v) in [
        ("issued", s.prefetch_issued),
        ("inserted", s.prefetch_inserted),
        ("read", s.prefetch_read),
        ("unread", s.prefetch_unread),
    ] {
        metrics::counter!(PREFETCHES, "cache" => name.to_owned(), "outcome" => outcome).absolute(v);
    }
}

/// A prefetch under way: the keys it leads loads of. Readers of those
/// keys wait for it (single-flight) instead of asking the database again.
/// Dropping it unfinished abandons the loads (the waiters load themselves).
#[must_use = "a prefetch dropped unfinished loads nothing"]
pub struct Prefetch<K, V> {
    cache: ShardedCache<K, V>,
    leads: Vec<Lead<K, V>>,
}

impl<K, V> std::fmt::Debug for Prefetch<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetch")
            .field("keys", &self.leads.len())
            .finish()
    }
}

impl<K, V> Prefetch<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The keys this prefetch loads.
    pub fn keys(&self) -> Vec<K> {
        self.leads.iter().map(|l| l.key().clone()).collect()
    }

    /// Whether there is nothing to load.
    pub fn is_empty(&self) -> bool {
        self.leads.is_empty()
    }

    /// Loads the keys with one call of `load` (which returns the pairs it
    /// found; a key it leaves out is not stored) and stores each value as
    /// a prefetched entry; returns the keys stored. On an error nothing is
    /// stored and the waiters load for themselves.
    pub async fn load<E, F, Fut>(self, load: F) -> Result<Vec<K>, E>
    where
        F: FnOnce(Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<(K, V)>, E>>,
    {
        let keys = self.keys();
        let found = load(keys).await?;
        Ok(self.store(found))
    }

    /// [`Prefetch::load`] with a blocking loader.
    pub fn load_sync<E>(
        self,
        load: impl FnOnce(Vec<K>) -> Result<Vec<(K, V)>, E>,
    ) -> Result<Vec<K>, E> {
        let found = load(self.keys())?;
        Ok(self.store(found))
    }

    fn store(self, found: Vec<(K, V)>) -> Vec<K> {
        let mut found: HashMap<K, V> = found.into_iter().collect();
        let inner = self.cache.inner();
        let mut stored = Vec::with_capacity(found.len());
        for lead in self.leads {
            match found.remove(lead.key()) {
                Some(v) => {
                    inner.store(lead.key().clone(), v.clone(), None, true);
                    stored.push(lead.key().clone());
                    lead.finish(Ok(v));
                }
                None => drop(lead),
            }
        }
        stored
    }
}

impl<K, V> ShardedCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Starts a prefetch of `keys`: each key not cached and not being
    /// loaded is led by the returned [`Prefetch`] (so a reader arriving now
    /// waits for it), and counted as issued. Finish it with
    /// [`Prefetch::load`]; what it stores enters the probationary queue
    /// (S3-FIFO's small queue) flagged, never replaces a stored value, and
    /// is counted in [`CacheStats::prefetch_read`] when read before it
    /// leaves, else in [`CacheStats::prefetch_unread`].
    ///
    /// ```
    /// use stratum_cache::{Cache, CacheBuilder};
    ///
    /// let cache = CacheBuilder::<u32, String>::new(100).build().unwrap();
    /// cache.insert(1, "cached".into());
    /// let prefetch = cache.begin_prefetch([1, 2, 3]);
    /// assert_eq!(prefetch.keys(), [2, 3]); // 1 is cached
    /// let stored = prefetch
    ///     .load_sync(|keys| Ok::<_, ()>(keys.into_iter().map(|k| (k, format!("doc {k}"))).collect()))
    ///     .unwrap();
    /// assert_eq!(stored, [2, 3]);
    /// assert_eq!(cache.get(&2).as_deref(), Some("doc 2"));
    /// let stats = cache.stats();
    /// assert_eq!((stats.prefetch_issued, stats.prefetch_inserted, stats.prefetch_read), (2, 2, 1));
    /// ```
    pub fn begin_prefetch(&self, keys: impl IntoIterator<Item = K>) -> Prefetch<K, V> {
        let inner = self.inner();
        let mut leads = Vec::new();
        for key in keys {
            if self.contains_key(&key) || leads.iter().any(|l: &Lead<K, V>| l.key() == &key) {
                continue;
            }
            if let Some(lead) = inner.try_lead(&key) {
                leads.push(lead);
            }
        }
        inner.stats.add(Counter::PrefetchIssued, leads.len() as u64);
        Prefetch {
            cache: self.clone(),
            leads,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(max: usize) -> PrefetchConfig {
        PrefetchConfig {
            max_tracked_keys: max,
            successors: 4,
            min_reads: 2,
            ..Default::default()
        }
    }

    proptest! {
        /// Whatever the reads: the keys tracked are exactly the distinct
        /// keys read, up to the cap (one shard below 1 024 keys), never
        /// more than the cap with many shards, every successor table stays
        /// within its size, and the state's bytes stay within
        /// `capacity * bytes_per_key + fixed_bytes`.
        #[test]
        fn memory_stays_within_the_stated_bound(
            cap in 1usize..64,
            reads in proptest::collection::vec((0u64..4, 0u32..200), 0..600),
        ) {
            let p = Predictor::<u32>::new(&config(cap)).unwrap();
            let mut seen = std::collections::HashSet::new();
            for (ctx, key) in &reads {
                p.record(*ctx, key);
                seen.insert(*key);
                prop_assert_eq!(p.tracked_keys(), seen.len().min(cap));
                let index: Vec<usize> = p.tables.iter().map(|t| t.lock().index.capacity()).collect();
                prop_assert!(
                    p.memory_bytes() <= p.capacity() * p.bytes_per_key() + p.fixed_bytes(),
                    "{} > {} * {} + {}, index {:?}",
                    p.memory_bytes(), p.capacity(), p.bytes_per_key(), p.fixed_bytes(), index
                );
            }
            for t in p.tables.iter() {
                for n in &t.lock().nodes {
                    prop_assert!(n.succ.len() <= 4 && n.succ.capacity() <= 4);
                    prop_assert!(n.reads < HALVE_AT);
                    prop_assert!(n.succ.iter().all(|s| s.count <= n.reads));
                }
            }
        }

        /// Against a model (the rules of the module documentation over
        /// plain maps, keys few enough that no successor table fills):
        /// after every read of one context, each key proposes exactly the
        /// successors whose `count / reads` reaches the threshold, all of
        /// them once it was read `min_reads` times and, before, those
        /// that came within `early_window` reads of it while the early
        /// gate is open; the gate opens and closes on the confirmed share
        /// of the early guesses, judged every `epoch` guesses.
        #[test]
        fn proposals_follow_the_counts_and_the_early_window(
            window in 1usize..=MAX_WINDOW,
            early in 0usize..=MAX_WINDOW,
            min_reads in 1u32..4,
            threshold in prop_oneof![Just(0.3), Just(0.6), Just(1.0)],
            epoch in 1u32..24,
            keys in proptest::collection::vec(0u32..6, 0..300),
        ) {
            let config = PrefetchConfig {
                successors: MAX_SUCCESSORS,
                window,
                early_window: early.min(window),
                min_reads,
                threshold,
                ..config(1_000)
            };
            let mut p = Predictor::<u32>::new(&config).unwrap();
            p.gate = EarlyGate::new(epoch);
            let early = config.early_window;
            // key -> (reads, successor -> (count, nearest))
            type Model = HashMap<u32, (u32, HashMap<u32, (u32, usize)>)>;
            let mut model = Model::new();
            let mut recent: Vec<u32> = Vec::new();
            // The gate: open, and (guesses, confirmed) since its last judgement.
            let (mut open, mut tally) = (true, (0u32, 0u32));
            for &k in &keys {
                p.record(0, &k);
                let mut guesses = 0;
                if let Some((reads, succ)) = model.get(&k)
                    && *reads > 0
                    && *reads < min_reads
                {
                    guesses = succ
                        .values()
                        .filter(|(count, near)| {
                            f64::from(*count) >= threshold * f64::from(*reads) && *near <= early
                        })
                        .count() as u32;
                }
                let mut confirmed = 0;
                let start = recent.iter().rposition(|&r| r == k).map_or(0, |i| i + 1);
                let mut preds: Vec<(u32, usize)> = Vec::new();
                for (back, &r) in recent[start..].iter().rev().enumerate() {
                    if !preds.iter().any(|(q, _)| *q == r) {
                        preds.push((r, back + 1));
                    }
                }
                let (reads, succ) = model.entry(k).or_default();
                *reads += 1;
                if *reads >= HALVE_AT {
                    *reads /= 2;
                    succ.values_mut().for_each(|(c, _)| *c /= 2);
                    succ.retain(|_, (c, _)| *c > 0);
                }
                for (q, back) in preds {
                    let (reads, succ) = model.get_mut(&q).unwrap();
                    if let Some((_, near)) = succ.get(&k)
                        && (2..=min_reads).contains(reads)
                        && *near <= early
                    {
                        confirmed += 1;
                    }
                    let e = succ.entry(k).or_insert((0, usize::MAX));
                    e.0 = (e.0 + 1).min(*reads);
                    e.1 = e.1.min(back);
                }
                recent.push(k);
                if recent.len() > window {
                    recent.remove(0);
                }
                if early > 0 && (guesses, confirmed) != (0, 0) {
                    tally = (tally.0 + guesses, tally.1 + confirmed);
                    if tally.0 >= epoch {
                        open = f64::from(tally.1) >= GATE_SHARE * f64::from(tally.0);
                        tally = (0, 0);
                    }
                }
                prop_assert_eq!(p.early_open(), open && early > 0);
                let early_now = if open { early } else { 0 };
                for (key, (reads, succ)) in &model {
                    let mut want: Vec<u32> = succ
                        .iter()
                        .filter(|(_, (count, near))| {
                            f64::from(*count) >= threshold * f64::from(*reads)
                                && (*reads >= min_reads || *near <= early_now)
                        })
                        .map(|(s, _)| *s)
                        .collect();
                    want.sort_unstable();
                    let mut got = p.propose(key);
                    got.sort_unstable();
                    prop_assert_eq!(&got, &want, "key {}", key);
                    prop_assert_eq!(p.has_proposals(key), !want.is_empty());
                }
            }
        }

        #[test]
        fn many_shards_never_exceed_the_cap(
            keys in proptest::collection::vec(0u32..100_000, 0..3_000),
        ) {
            let p = Predictor::<u32>::new(&config(2_048)).unwrap();
            for k in &keys {
                p.record(0, k);
            }
            prop_assert!(p.tracked_keys() <= 2_048);
            prop_assert!(p.memory_bytes() <= p.capacity() * p.bytes_per_key() + p.fixed_bytes());
        }
    }

    proptest! {
        /// Against a model (a queue per stripe): every read pushed to a
        /// stripe with room is drained once, each context's in push
        /// order; a read pushed to a full stripe is dropped and counted;
        /// `push` says due exactly when its stripe holds `DRAIN_AT` or more,
        /// and `push_all` of a batch when any of its reads' pushes would.
        #[test]
        fn the_read_buffer_keeps_each_contexts_order_and_drops_when_full(
            ops in proptest::collection::vec(
                prop_oneof![
                    9 => (0u64..40).prop_map(|c| Some(vec![c])),
                    3 => proptest::collection::vec(0u64..40, 0..24).prop_map(Some),
                    1 => Just(None),
                ],
                0..400,
            ),
        ) {
            let buffer = ReadBuffer::<u32>::new();
            let stripe = |c: u64| (c.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % 16;
            let mut model: Vec<Vec<(u64, u32)>> = vec![Vec::new(); 16];
            let mut dropped = 0u64;
            let mut n = 0u32;
            for op in ops {
                match op {
                    Some(contexts) => {
                        let mut batch = Vec::new();
                        let mut want_due = false;
                        let dropped_before = dropped;
                        for context in contexts {
                            n += 1;
                            batch.push((context, n));
                            let queue = &mut model[stripe(context)];
                            if queue.len() >= STRIPE_CAPACITY {
                                dropped += 1;
                                want_due = true;
                            } else {
                                queue.push((context, n));
                                want_due |= queue.len() >= DRAIN_AT;
                            }
                        }
                        let due = match batch.as_slice() {
                            &[(context, read)] => buffer.push(context, read),
                            _ => {
                                let (due, full) = buffer.push_all(batch);
                                prop_assert_eq!(full, dropped > dropped_before);
                                due
                            }
                        };
                        prop_assert_eq!(due, want_due);
                    }
                    None => {
                        let mut got = Vec::new();
                        let count = buffer.drain(|c, r| got.push((c, r)));
                        let want: Vec<(u64, u32)> = model.iter_mut().flat_map(std::mem::take).collect();
                        prop_assert_eq!(count, want.len());
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(buffer.pending(), model.iter().map(Vec::len).sum::<usize>());
                prop_assert_eq!(buffer.dropped(), dropped);
            }
        }
    }

    #[test]
    fn has_proposals_and_predicts_say_what_propose_would() {
        let p = Predictor::<u32>::new(&config(1_000)).unwrap();
        assert!(!p.has_proposals(&1));
        for _ in 0..2 {
            p.record(0, &1);
            p.record(0, &2);
        }
        assert!(p.has_proposals(&1));
        assert!(p.predicts(&1, &2) && !p.predicts(&2, &1) && !p.predicts(&1, &3));
        let mut found = Vec::new();
        p.predictors(0, &2, |k| found.push(*k));
        assert_eq!(found, [1]);
        p.predictors(7, &2, |k| found.push(*k));
        assert_eq!(found, [1], "another context's window is empty");
        assert!(!p.has_proposals(&2), "{:?}", p.propose(&2));
        assert_eq!(p.has_proposals(&1), !p.propose(&1).is_empty());
        // A key read once proposes what came right after it (the early
        // window) but is no predictor of a miss: it arms no hint.
        p.record(0, &3);
        p.record(0, &4);
        assert!(p.predicts(&3, &4));
        let mut predictors = Vec::new();
        p.predictors(0, &4, |k| predictors.push(*k));
        assert!(predictors.is_empty(), "{predictors:?}");
    }

    /// `record_gains` reports each key when it starts to have a proposal
    /// (`1` when `2` follows it the second time, `2` when `1` follows it
    /// the second time: a cycle), and only then.
    #[test]
    fn record_gains_reports_the_keys_that_start_proposing() {
        let p = Predictor::<u32>::new(&PrefetchConfig {
            early_window: 0,
            ..config(1_000)
        })
        .unwrap();
        let mut gained = Vec::new();
        for _ in 0..3 {
            p.record_gains(0, &1, |k| gained.push(*k));
            p.record_gains(0, &2, |k| gained.push(*k));
        }
        assert_eq!(gained, [1, 2]);
        // A key read once proposes its early successors but is not
        // reported: the same reads report the same keys.
        let p = Predictor::<u32>::new(&PrefetchConfig {
            early_window: 2,
            ..config(1_000)
        })
        .unwrap();
        let mut gained = Vec::new();
        for round in 0..3 {
            p.record_gains(0, &1, |k| gained.push(*k));
            p.record_gains(0, &2, |k| gained.push(*k));
            if round == 0 {
                assert!(p.has_proposals(&1) && gained.is_empty());
            }
        }
        assert_eq!(gained, [1, 2]);
    }

    #[test]
    fn a_recurring_group_is_proposed_and_noise_is_not() {
        let p = Predictor::<u32>::new(&config(1_000)).unwrap();
        let mut rng = 12345u64;
        for round in 0..20 {
            p.record(round, &1);
            p.record(round, &2);
            p.record(round, &3);
            // Noise: a random key after the group.
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
            p.record(round, &(100 + (rng >> 40) as u32 % 500));
        }
        let mut next = p.propose(&1);
        next.sort();
        assert_eq!(next, [2, 3]);
        assert!(p.propose(&3).is_empty(), "{:?}", p.propose(&3));
    }

    #[test]
    fn a_key_read_too_rarely_proposes_nothing() {
        let p = Predictor::<u32>::new(&PrefetchConfig {
            early_window: 0,
            ..config(1_000)
        })
        .unwrap();
        p.record(0, &1);
        p.record(0, &2);
        assert!(p.propose(&1).is_empty());
        p.record(0, &1);
        p.record(0, &2);
        assert_eq!(p.propose(&1), [2]);
    }

    #[test]
    fn a_key_read_once_proposes_only_what_came_right_after_it() {
        let p = Predictor::<u32>::new(&PrefetchConfig {
            early_window: 2,
            ..config(1_000)
        })
        .unwrap();
        // 5 comes twice after 1; its nearest read counts (1 back).
        for k in [1, 5, 2, 3, 4, 5] {
            p.record(0, &k);
        }
        let mut early = p.propose(&1);
        early.sort_unstable();
        assert_eq!(early, [2, 5]);
        assert!(p.predicts(&1, &5) && !p.predicts(&1, &3));
        // A second read makes the estimate count / reads for every
        // successor in the window: none followed twice yet.
        p.record(0, &1);
        assert!(p.propose(&1).is_empty());
        for k in [5, 2, 3, 4] {
            p.record(0, &k);
        }
        let mut all = p.propose(&1);
        all.sort_unstable();
        assert_eq!(all, [2, 3, 4, 5]);
    }

    #[test]
    fn the_early_gate_closes_on_noise_and_reopens_on_groups() {
        let p = Predictor::<u32>::new(&PrefetchConfig {
            early_window: 2,
            ..config(100_000)
        })
        .unwrap();
        assert!(p.early_open());
        // Uncorrelated reads over 2 000 keys: a key's second read would
        // propose what followed its first, which hardly ever recurs.
        let mut x = 1u64;
        let mut next = || {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 33) as u32 % 2_000
        };
        for _ in 0..20_000 {
            p.record(0, &next());
        }
        assert!(!p.early_open());
        // Closed: a key read once proposes nothing.
        for k in [1_000_001, 1_000_002, 1_000_003] {
            p.record(0, &k);
        }
        assert!(p.propose(&1_000_001).is_empty());
        // Groups read twice in a row: each second read's guesses are
        // confirmed, and the gate opens again (without proposing anything
        // while closed).
        for g in 0..200u32 {
            let group = [
                10_000 + 4 * g,
                10_001 + 4 * g,
                10_002 + 4 * g,
                10_003 + 4 * g,
            ];
            for k in group.iter().chain(&group) {
                p.record(0, k);
            }
        }
        assert!(p.early_open());
        for k in [2_000_001, 2_000_002, 2_000_003] {
            p.record(0, &k);
        }
        assert_eq!(p.propose(&2_000_001), [2_000_002, 2_000_003]);
    }

    #[test]
    fn contexts_do_not_mix() {
        let p = Predictor::<u32>::new(&config(1_000)).unwrap();
        for _ in 0..5 {
            p.record(1, &1);
            p.record(2, &10);
            p.record(1, &2);
            p.record(2, &20);
        }
        assert_eq!(p.propose(&1), [2]);
        assert_eq!(p.propose(&10), [20]);
    }

    fn identity(keys: Vec<u32>) -> Result<Vec<(u32, u32)>, ()> {
        Ok(keys.into_iter().map(|k| (k, k)).collect())
    }

    /// A guess the ghost remembers still enters the small queue (a plain
    /// insert of it would go to main), so unread it leaves before any
    /// entry of main, and is counted unread.
    #[test]
    fn a_wrong_guess_leaves_before_main_and_is_counted() {
        use crate::{Cache, CacheBuilder, SmallQueue};
        let cache = CacheBuilder::<u32, u32>::new(10)
            .shards(1)
            .small_queue(SmallQueue::Fixed(20))
            .build()
            .unwrap();
        for k in 0..8 {
            cache.insert(k, k);
            cache.get(&k);
        }
        for k in 100..120 {
            cache.insert(k, k); // promotes 0..8 to main; 100.. pass through the ghost
        }
        let prefetch = cache.begin_prefetch([100, 3]);
        assert_eq!(prefetch.keys(), [100], "3 is cached");
        assert_eq!(prefetch.load_sync(identity).unwrap(), [100]);
        for k in 200..203 {
            cache.insert(k, k);
        }
        assert!(!cache.contains_key(&100));
        assert!((0..8).all(|k| cache.contains_key(&k)));
        let s = cache.stats();
        assert_eq!(
            (
                s.prefetch_issued,
                s.prefetch_inserted,
                s.prefetch_read,
                s.prefetch_unread
            ),
            (1, 1, 0, 1)
        );
    }

    /// The first read of a prefetched entry counts once; a prefetch never
    /// replaces a stored value.
    #[test]
    fn reads_of_guesses_are_counted_once() {
        use crate::{Cache, CacheBuilder};
        let cache = CacheBuilder::<u32, u32>::new(100).build().unwrap();
        let prefetch = cache.begin_prefetch([1, 2]);
        cache.insert(2, 20); // a demand load finished first
        prefetch.load_sync(identity).unwrap();
        assert_eq!(cache.get(&2), Some(20));
        assert_eq!(cache.get(&1), Some(1));
        assert_eq!(cache.get(&1), Some(1));
        let s = cache.stats();
        assert_eq!(
            (s.prefetch_inserted, s.prefetch_read, s.prefetch_unread),
            (1, 1, 0)
        );
        assert_eq!(s.prefetch_precision(), 1.0);
    }

    /// A reader arriving while a prefetch loads waits for it (no second
    /// load) and the entry counts as read.
    #[test]
    fn a_reader_waits_for_the_prefetch() {
        use crate::{Cache, CacheBuilder};
        let cache = CacheBuilder::<u32, u32>::new(100).build().unwrap();
        let prefetch = cache.begin_prefetch([5]);
        let reader = {
            let cache = cache.clone();
            std::thread::spawn(move || cache.get_or_load(5, |_| Err::<u32, ()>(())).unwrap())
        };
        // The reader parks on the flight (its own loader would fail).
        std::thread::sleep(std::time::Duration::from_millis(50));
        prefetch.load_sync(identity).unwrap();
        assert_eq!(reader.join().unwrap(), 5);
        assert_eq!(cache.stats().prefetch_read, 1);
    }

    #[test]
    fn bad_knobs_name_their_field() {
        for (c, field) in [
            (
                PrefetchConfig {
                    successors: 17,
                    ..Default::default()
                },
                "successors",
            ),
            (
                PrefetchConfig {
                    window: 0,
                    ..Default::default()
                },
                "window",
            ),
            (
                PrefetchConfig {
                    max_share: 1.5,
                    ..Default::default()
                },
                "max_share",
            ),
            (
                PrefetchConfig {
                    max_in_flight: 0,
                    ..Default::default()
                },
                "max_in_flight",
            ),
            (
                PrefetchConfig {
                    max_tracked_keys: 0,
                    ..Default::default()
                },
                "max_tracked_keys",
            ),
        ] {
            assert_eq!(c.validate().unwrap_err().field(), field);
        }
    }
}
