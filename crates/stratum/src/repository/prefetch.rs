//! Predictive pre-loading for the repositories of one `Stratum` handle:
//! a read by id is pushed into a [`ReadBuffer`] (the read path's whole
//! cost), a drain task records the buffered reads in one [`Predictor`]
//! over every collection (key = collection + id, so a conversation's
//! header predicts its messages in another collection) and offers each
//! proposal to the repository of its collection, which loads what it
//! lacks in one `_id: {$in: [...]}` query, through the same breaker and
//! admission as any read, within a share of its read calls, and never
//! while the breaker is not closed or callers wait for admission. A read
//! that misses asks for its likely successors in its own collection in
//! its own query instead (`Led`: no call or admission slot of their
//! own, still only while the breaker is closed) (docs/prefetch.md).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bson::Bson;
use crossbeam_utils::CachePadded;
use metrics::Counter;
use stratum_cache::{Cache, Predictor, PrefetchConfig, ReadBuffer};

use stratum_models::Document;

use super::{Entry, Inner, Invalidation, stripe};
use crate::ConfigError;
use crate::stack::Layers;

/// Counter: prefetch calls by collection and outcome (`ok`, `error`).
pub(crate) const CALLS: &str = "stratum_repository_prefetch_calls_total";
/// Counter: ids loaded in a missed read's own database call (the read
/// asks `_id: {$in: [id, successors...]}`), by collection.
pub(crate) const JOINED: &str = "stratum_repository_prefetch_joined_total";
/// Counter: prefetches not made, by collection and reason (`breaker`,
/// `admission`, `share`, `in_flight`).
pub(crate) const SKIPPED: &str = "stratum_repository_prefetch_skipped_total";

/// A tracked id: its collection and cache key (hashed and compared) and
/// the id itself (what the query asks for), held inline for the common
/// id types (16 bytes instead of a `Bson`'s 112: every tracked key keeps
/// one).
#[derive(Debug, Clone)]
pub(crate) struct Id {
    pub(crate) collection: &'static str,
    pub(crate) key: Vec<u8>,
    pub(crate) id: Held,
}

impl Id {
    pub(crate) fn new(collection: &'static str, id: Bson) -> Id {
        Id {
            collection,
            key: stratum_store::id_key(&id),
            id: Held::from_bson(id),
        }
    }

    /// The id as the query asks for it.
    pub(crate) fn bson(&self) -> Bson {
        self.id.clone().into_bson()
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.collection == other.collection
    }
}

impl Eq for Id {}

impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.collection.hash(state);
        self.key.hash(state);
    }
}

/// A small multiply-rotate hasher (FxHash's step) for the read path's two
/// hashes: the caller's context and a read's hint slot. Not DoS-resistant,
/// which neither needs: a collision costs a shared window or a spare drain.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word.get_mut(..chunk.len())
                .into_iter()
                .for_each(|w| w.copy_from_slice(chunk));
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    /// With MurmurHash3's finalizer: FxHash's low bits depend only on the
    /// input's low bits, so ObjectIds differing in their counter byte
    /// shared every hint bit without it.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

/// A collection's part of its reads' hint hashes ([`hint_hash`]'s
/// `seed`): computed once per repository, not per read.
pub(crate) fn seed(collection: &str) -> u64 {
    let mut h = Fx::default();
    h.write(collection.as_bytes());
    h.0
}

/// The hint slot of a read of `id` in the collection of `seed`: from the
/// id as it is, without encoding the cache key (which allocates) for the
/// common id types.
fn hint_hash(seed: u64, id: &Bson) -> u64 {
    let mut h = Fx(seed);
    match id {
        Bson::ObjectId(oid) => h.write(&oid.bytes()),
        Bson::Int64(n) => h.write_u64(*n as u64),
        Bson::Int32(n) => h.write_u64(i64::from(*n) as u64),
        Bson::String(s) => h.write(s.as_bytes()),
        other => h.write(&stratum_store::id_key(other)),
    }
    h.finish()
}

/// The repository side of a prefetch: a repository offered the ids the
/// predictor expects next in its collection.
pub(crate) trait Target: Send + Sync {
    /// Whether the repository has `id` cached: a proposal leaves such
    /// successors out before cloning them.
    fn has(&self, id: &Id) -> bool;

    /// Starts loading those of `ids` the repository neither has cached nor
    /// is loading, if a prefetch is permitted now; returns whether any of
    /// them was not cached.
    fn offer(self: Arc<Self>, ids: Vec<Id>) -> bool;
}

/// Hint bits (one per slot of a read's hash): whether a read of the key
/// should propose its successors at once (other reads wait for a drain).
/// Set when the key gains likely successors and when one of them missed
/// after it; cleared when a proposal finds them all cached. So a key whose
/// likely successors are merely hot (the top keys of a Zipf trace follow
/// everything) costs one check, not one per read.
const HINT_WORDS: usize = 1_024;

/// Reads a thread gathers before it hands them to the read buffer: the
/// buffer's lock is taken once per batch instead of once per read (a
/// batch is handed over sooner when a read misses, and a drain takes its
/// own thread's). A thread that stops reading keeps at most `BATCH - 1`
/// reads the model never sees; a task that moves to another thread may
/// have its reads recorded slightly out of order (noise in a statistic).
pub(crate) const BATCH: usize = 16;

/// Reads a thread skips (while the drain is behind) before it adds their
/// count to the hub's: one counter both cores wrote every [`BATCH`]
/// skipped reads moved its cache line between them that often (the hot
/// path line, docs/prefetch.md). A thread that stops reading leaves at
/// most `SKIP_BATCH - 1` uncounted (a drain takes its own thread's).
pub(crate) const SKIP_BATCH: u64 = 256;

/// Reads (recorded, or lost while the drain was behind) over which the hub
/// judges whether its proposals find documents to load (see
/// [`Hub::judge`]).
pub(crate) const EPOCH: u64 = 4_096;
/// Epochs of a new hub in which recording never backs off.
pub(crate) const WARM_EPOCHS: u32 = 4;
/// Whether `useful` proposals finding a document to load among `reads`
/// recorded reads are the rate recording is kept for (1 in 1 024): what
/// [`Hub::judge`] backs off below and [`Hub::useful`] resets at.
fn useful_enough(useful: u64, reads: u64) -> bool {
    useful.saturating_mul(1_024) >= reads
}

/// Recording backs off to 1 context in `2^MAX_SHIFT` at most.
pub(crate) const MAX_SHIFT: u32 = 6;

/// Counter: reads the predictor's read buffer dropped because a stripe was
/// full (the drain fell behind); the model misses those observations.
pub(crate) const DROPPED: &str = "stratum_repository_prefetch_reads_dropped_total";

/// Gauge: 1 while a key read once proposes its early successors (the
/// predictor's early gate is open and `early_window` is set), else 0.
pub(crate) const EARLY: &str = "stratum_repository_prefetch_early_open";

/// A read as the buffer holds it: its collection, its id, and whether it
/// missed (`true`: a read's database call started).
type Read = (&'static str, Held, bool);

/// An id as the read buffer holds it: the common id types inline, so a
/// read moves 16 bytes instead of a `Bson` (112) through the thread's
/// batch, the buffer and the drain, and allocates nothing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Held {
    Int64(i64),
    Int32(i32),
    ObjectId([u8; 12]),
    Other(Box<Bson>),
}

impl Held {
    /// A borrowed id: cloning the common types copies 16 bytes or less.
    fn of(id: &Bson) -> Held {
        Held::from_bson(id.clone())
    }

    fn from_bson(id: Bson) -> Held {
        match id {
            Bson::Int64(n) => Held::Int64(n),
            Bson::Int32(n) => Held::Int32(n),
            Bson::ObjectId(oid) => Held::ObjectId(oid.bytes()),
            other => Held::Other(Box::new(other)),
        }
    }

    fn into_bson(self) -> Bson {
        match self {
            Held::Int64(n) => Bson::Int64(n),
            Held::Int32(n) => Bson::Int32(n),
            Held::ObjectId(b) => Bson::ObjectId(bson::oid::ObjectId::from_bytes(b)),
            Held::Other(b) => *b,
        }
    }
}

/// One thread's batch of reads (of one hub, which the batch does not keep
/// alive), and the reads it skipped while the hub was behind.
struct Local {
    hub: Weak<Hub>,
    reads: Vec<(u64, Read)>,
    skipped: u64,
}

impl Local {
    /// Makes the batch `hub`'s: the previous hub's batch is handed to it
    /// first (a batch holds one hub's reads).
    fn switch_to(&mut self, hub: &Arc<Hub>) {
        if std::ptr::eq(self.hub.as_ptr(), Arc::as_ptr(hub)) {
            return;
        }
        if let Some(previous) = self.hub.upgrade()
            && previous.hand_over(self)
        {
            previous.wake();
        }
        self.reads.clear();
        self.skipped = 0;
        self.hub = Arc::downgrade(hub);
    }
}

thread_local! {
    static LOCAL: std::cell::RefCell<Local> = const {
        std::cell::RefCell::new(Local { hub: Weak::new(), reads: Vec::new(), skipped: 0 })
    };
}

/// The prediction state of one `Stratum` handle, shared by its
/// repositories.
pub(crate) struct Hub {
    predictor: Predictor<Id>,
    buffer: ReadBuffer<Read>,
    hints: Box<[AtomicU64]>,
    /// What every read loads, alone on its cache lines: a counter the
    /// threads write beside them made each read wait for the line (the
    /// hot path line, docs/prefetch.md).
    flags: CachePadded<Flags>,
    /// Reads skipped while behind (handed over by the threads in batches).
    skipped: AtomicU64,
    /// Reads dropped and skipped as of the last drain.
    lost: AtomicU64,
    /// Reads recorded in this epoch, and proposals that found a document
    /// to load.
    epoch: AtomicU64,
    lacking: AtomicU64,
    /// Epochs judged so far.
    epochs: AtomicU32,
    /// [`DROPPED`], set from the buffer's count at each drain.
    dropped_metric: Counter,
    /// [`EARLY`], set at each drain.
    early_metric: metrics::Gauge,
    /// A drain task is scheduled or running.
    scheduled: AtomicBool,
    /// A drain was asked for since the running one began.
    wanted: AtomicBool,
    targets: parking_lot::Mutex<Vec<(&'static str, Weak<dyn Target>)>>,
}

/// The hub's state every read loads and few write.
#[derive(Default)]
struct Flags {
    /// Hint bits set: a read checks its own only when some are.
    armed: AtomicU64,
    /// A stripe was full since the last drain: reads are counted, not
    /// recorded, until the drain catches up (Caffeine drops reads when its
    /// buffer is full too; this drops them before any work).
    behind: AtomicBool,
    /// Contexts recorded: those whose hash's low `shift` bits are 0.
    shift: AtomicU32,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("predictor", &self.predictor)
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// The hub `config` asks for, or none when prefetching is off.
    pub(crate) fn new(config: &PrefetchConfig) -> Result<Option<Arc<Hub>>, ConfigError> {
        if !config.enabled {
            return Ok(None);
        }
        let predictor = Predictor::new(config).map_err(|e| e.within("prefetch").within("cache"))?;
        Ok(Some(Arc::new(Hub {
            predictor,
            buffer: ReadBuffer::new(),
            hints: (0..HINT_WORDS).map(|_| AtomicU64::new(0)).collect(),
            flags: CachePadded::new(Flags::default()),
            skipped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            lacking: AtomicU64::new(0),
            epochs: AtomicU32::new(0),
            dropped_metric: metrics::counter!(DROPPED),
            early_metric: metrics::gauge!(EARLY),
            scheduled: AtomicBool::new(false),
            wanted: AtomicBool::new(false),
            targets: parking_lot::Mutex::new(Vec::new()),
        })))
    }

    /// Offers `collection`'s proposals to `target` from now on (the first
    /// live registration of a collection wins).
    pub(crate) fn register(&self, collection: &'static str, target: Weak<dyn Target>) {
        let mut targets = self.targets.lock();
        targets.retain(|(_, t)| t.strong_count() > 0);
        targets.push((collection, target));
    }

    fn target(&self, collection: &str) -> Option<Arc<dyn Target>> {
        self.targets
            .lock()
            .iter()
            .filter(|(c, _)| *c == collection)
            .find_map(|(_, t)| t.upgrade())
    }

    /// The read path's part: batches a read of `id` in `collection` on
    /// this thread (handing the batch to the read buffer, and waking the
    /// drain when a stripe is due, every [`BATCH`] reads).
    // Inlined, the rest out of line: a dormant hub's check is a few
    // instructions in the read's own frame, not a call whose frame the
    // recording path makes large (`perf` of the hot path line put half of
    // the dormant check's samples in that frame's pushes and pops).
    #[inline]
    pub(crate) fn note(self: &Arc<Self>, collection: &'static str, id: &Bson) {
        let context = context();
        // Sampled first: a context recording backed off from costs this
        // check and nothing else.
        if self.sampled(context) {
            self.record(context, collection, id);
        }
    }

    /// [`Hub::note`]'s part for a sampled context.
    #[inline(never)]
    fn record(self: &Arc<Self>, context: u64, collection: &'static str, id: &Bson) {
        if self.flags.behind.load(Ordering::Relaxed) {
            // The drain is behind (a stripe was full): this read would
            // most likely be dropped, so it is only counted, per thread.
            self.skip();
        } else if self.batch(context, (collection, Held::of(id), false), false) {
            self.wake();
        }
    }

    /// A read of `id` was a hit: when the key had likely successors at the
    /// last drain, offers them now (the caller's next read may come before
    /// a drain task gets to run: a hit does not yield). A miss does not
    /// come here: its own call asks for the successors in its collection,
    /// and the drain it wakes offers the rest.
    #[inline]
    pub(crate) fn hit(self: &Arc<Self>, collection: &'static str, seed: u64, id: &Bson) {
        // No hint armed (the common state of uncorrelated reads): no hash,
        // and no call (as in `note`).
        if self.flags.armed.load(Ordering::Relaxed) != 0 {
            self.hit_armed(collection, seed, id);
        }
    }

    /// [`Hub::hit`]'s part while some hint is armed.
    #[inline(never)]
    fn hit_armed(self: &Arc<Self>, collection: &'static str, seed: u64, id: &Bson) {
        let hash = hint_hash(seed, id);
        if self.hinted(hash) {
            if self.offer_successors(&Id::new(collection, id.clone())) {
                self.useful();
            } else {
                self.set_hint(hash, false);
            }
        }
    }

    /// Whether `context`'s reads are recorded: all while proposals find
    /// documents to load; 1 context in `2^shift` while they find none.
    #[inline]
    fn sampled(&self, context: u64) -> bool {
        let shift = self.flags.shift.load(Ordering::Relaxed);
        context & ((1u64 << shift) - 1) == 0
    }

    /// A proposal found a document to load: once this epoch's proposals
    /// found documents at the rate [`Hub::judge`] keeps recording for (1
    /// in 1 024 of an epoch's reads: 4), every context is recorded again
    /// from now on, without waiting for the epoch's end. One such
    /// proposal is not a pattern: on uncorrelated reads of cached keys an
    /// occasional successor missing from the cache kept recording at
    /// every context (the hot path line, docs/prefetch.md).
    fn useful(&self) {
        let lacking = self.lacking.fetch_add(1, Ordering::Relaxed) + 1;
        if useful_enough(lacking, EPOCH) && self.flags.shift.load(Ordering::Relaxed) != 0 {
            self.flags.shift.store(0, Ordering::Relaxed);
        }
    }

    /// Ends a drain of `reads` reads (recorded, or lost while the drain was
    /// behind): each [`EPOCH`] of them is an epoch judged at once, the
    /// first [`WARM_EPOCHS`] never (a new model proposes little: the
    /// correlated workload lost a point of its miss ratio backing off
    /// then). If fewer than 1 in 1 024 of the reads judged led to a
    /// proposal finding a document to load, one context in twice fewer is
    /// recorded per epoch (down to 1 in 2^[`MAX_SHIFT`]) and the hints are
    /// cleared. A drain that comes after many epochs' reads (callers that
    /// do not yield let it run rarely) judges them all, not one.
    fn judge(&self, reads: u64) {
        let total = self.epoch.fetch_add(reads, Ordering::Relaxed) + reads;
        if total < EPOCH {
            return;
        }
        self.epoch.store(0, Ordering::Relaxed);
        let lacking = self.lacking.swap(0, Ordering::Relaxed);
        let ended = u32::try_from(total / EPOCH).unwrap_or(u32::MAX);
        let before = self.epochs.load(Ordering::Relaxed);
        let after = before.saturating_add(ended);
        self.epochs.store(after, Ordering::Relaxed);
        let judged = after.saturating_sub(before.max(WARM_EPOCHS));
        if judged > 0 && !useful_enough(lacking, total) {
            self.clear_hints();
            let shift = self.flags.shift.load(Ordering::Relaxed);
            let backed = shift.saturating_add(judged).min(MAX_SHIFT);
            if backed != shift {
                self.flags.shift.store(backed, Ordering::Relaxed);
            }
        }
    }

    /// A read of `id` missed and its database call starts: noted after the
    /// thread's batch (its predecessors that predicted it get their hints
    /// back) and the drain woken, so its successors load while it waits.
    pub(crate) fn missed(self: &Arc<Self>, collection: &'static str, id: &Bson) {
        self.batch(context(), (collection, Held::of(id), true), true);
        self.wake();
    }

    /// Adds `read` to this thread's batch and hands the batch to the read
    /// buffer when it holds [`BATCH`] reads or `flush` asks; returns
    /// whether a stripe is due. A read of another handle's hub first hands
    /// over the batch of the previous one (a batch holds one hub's reads).
    fn batch(self: &Arc<Self>, context: u64, read: Read, flush: bool) -> bool {
        let mut read = Some(read);
        let due = LOCAL
            .try_with(|cell| {
                let Ok(mut local) = cell.try_borrow_mut() else {
                    return false;
                };
                let mut due = false;
                local.switch_to(self);
                if let Some(read) = read.take() {
                    local.reads.push((context, read));
                }
                if flush || local.reads.len() >= BATCH {
                    due |= self.hand_over(&mut local);
                }
                due
            })
            .unwrap_or(false);
        // Outside the thread-local (being torn down, or borrowed): directly.
        match read {
            Some(read) => self.buffer.push(context, read) || due,
            None => due,
        }
    }

    /// Hands `local`'s batch (of this hub) to the read buffer, and its
    /// count of reads skipped; returns whether a stripe is due. A full
    /// stripe marks the hub behind until the next drain.
    fn hand_over(&self, local: &mut Local) -> bool {
        let (due, full) = self.buffer.push_all(local.reads.drain(..));
        // Stored only when it changes: every read loads this line.
        if full && !self.flags.behind.load(Ordering::Relaxed) {
            self.flags.behind.store(true, Ordering::Relaxed);
        }
        if local.skipped > 0 {
            self.skipped
                .fetch_add(std::mem::take(&mut local.skipped), Ordering::Relaxed);
        }
        due
    }

    /// Counts a read not recorded while the hub is behind (in the thread's
    /// batch, handed over every [`SKIP_BATCH`]).
    fn skip(self: &Arc<Self>) {
        let _ = LOCAL.try_with(|cell| {
            if let Ok(mut local) = cell.try_borrow_mut() {
                local.switch_to(self);
                local.skipped += 1;
                if local.skipped >= SKIP_BATCH {
                    self.hand_over(&mut local);
                }
            }
        });
    }

    /// Hands this thread's batch of this hub's reads to the read buffer.
    fn flush_local(&self) {
        let _ = LOCAL.try_with(|cell| {
            if let Ok(mut local) = cell.try_borrow_mut()
                && std::ptr::eq(local.hub.as_ptr(), self)
            {
                self.hand_over(&mut local);
            }
        });
    }

    /// Offers the likely successors of `key` that are not cached to the
    /// repositories of their collections; returns whether any was not
    /// cached. The cached ones are left out under the predictor's lock,
    /// before any is cloned, so a proposal that finds every successor
    /// cached (a hot key's, the common case) clones and allocates nothing.
    fn offer_successors(&self, key: &Id) -> bool {
        // Each collection's repository, looked up once per proposal.
        let mut targets: Vec<(&'static str, Option<Arc<dyn Target>>)> = Vec::new();
        let lacks = |id: &Id| {
            let i = match targets.iter().position(|(c, _)| *c == id.collection) {
                Some(i) => i,
                None => {
                    targets.push((id.collection, self.target(id.collection)));
                    targets.len() - 1
                }
            };
            targets
                .get(i)
                .and_then(|(_, t)| t.as_ref())
                .is_some_and(|t| !t.has(id))
        };
        let mut next = self.predictor.propose_where(key, lacks);
        let mut lacking = false;
        while let Some(first) = next.first() {
            let collection = first.collection;
            let (ids, rest): (Vec<Id>, Vec<Id>) =
                next.into_iter().partition(|i| i.collection == collection);
            next = rest;
            let target = targets
                .iter()
                .find(|(c, _)| *c == collection)
                .and_then(|(_, t)| t.clone());
            if let Some(target) = target {
                lacking |= target.offer(ids);
            }
        }
        lacking
    }

    /// The likely successors of `id` in its own `collection` that `keep`
    /// accepts (those not cached): what a missed read of `id` asks for in
    /// its own call.
    fn successors_in(
        &self,
        collection: &'static str,
        id: &Bson,
        mut keep: impl FnMut(&Id) -> bool,
    ) -> Vec<Id> {
        self.predictor
            .propose_where(&Id::new(collection, id.clone()), |s| {
                s.collection == collection && keep(s)
            })
    }

    fn hint_slot(&self, hash: u64) -> (&AtomicU64, u64) {
        let bit = 1u64 << (hash & 63);
        let word = (hash >> 6) as usize % HINT_WORDS;
        match self.hints.get(word) {
            Some(w) => (w, bit),
            None => (&self.hints[0], bit),
        }
    }

    fn hinted(&self, hash: u64) -> bool {
        let (word, bit) = self.hint_slot(hash);
        word.load(Ordering::Relaxed) & bit != 0
    }

    fn set_hint(&self, hash: u64, on: bool) {
        let (word, bit) = self.hint_slot(hash);
        if (word.load(Ordering::Relaxed) & bit != 0) != on {
            // `armed` counts the bits this call flipped, so it is the
            // number of bits set (a race of two calls flips a bit once).
            if on {
                if word.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
                    self.flags.armed.fetch_add(1, Ordering::Relaxed);
                }
            } else if word.fetch_and(!bit, Ordering::Relaxed) & bit != 0 {
                self.flags.armed.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Clears every hint: after an epoch whose proposals found (almost)
    /// nothing to load, a hit's proposal would find nothing either, and a
    /// hint left set (a key read rarely after it was set) made every hit
    /// hash its id (the yielding hot path line, docs/prefetch.md).
    fn clear_hints(&self) {
        for word in self.hints.iter() {
            if word.load(Ordering::Relaxed) != 0 {
                let cleared = word.swap(0, Ordering::Relaxed).count_ones();
                self.flags
                    .armed
                    .fetch_sub(u64::from(cleared), Ordering::Relaxed);
            }
        }
    }

    /// Asks for a drain: a task is spawned unless one is scheduled (the
    /// running one then drains again); outside a runtime, drains here.
    pub(crate) fn wake(self: &Arc<Self>) {
        // Asked already and not yet served: nothing to write. (Every push
        // to a full stripe asks; a store each time would bounce the flag's
        // cache line between the cores while the drain waits to run.)
        if self.wanted.load(Ordering::Relaxed) && self.scheduled.load(Ordering::Relaxed) {
            return;
        }
        self.wanted.store(true, Ordering::SeqCst);
        if self.scheduled.load(Ordering::Relaxed) || self.scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let hub = Arc::clone(self);
                drop(runtime.spawn(async move { hub.run() }));
            }
            Err(_) => self.run(),
        }
    }

    /// Drains until no drain was asked for meanwhile.
    fn run(&self) {
        loop {
            self.wanted.store(false, Ordering::SeqCst);
            self.drain();
            self.scheduled.store(false, Ordering::SeqCst);
            if !self.wanted.load(Ordering::SeqCst) || self.scheduled.swap(true, Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Records the buffered reads, sets the hints of keys that gained
    /// likely successors or predicted a read that missed, and offers the
    /// successors of each context's latest read to their repositories.
    pub(crate) fn drain(&self) {
        self.flush_local();
        if self.flags.behind.load(Ordering::Relaxed) {
            self.flags.behind.store(false, Ordering::Relaxed);
        }
        let lost = self.buffer.dropped() + self.skipped.load(Ordering::Relaxed);
        self.dropped_metric.absolute(lost);
        let newly_lost = lost.saturating_sub(self.lost.swap(lost, Ordering::Relaxed));
        // Each context's latest read in this batch.
        let mut latest: Vec<(u64, Id)> = Vec::new();
        let mut recorded = 0;
        self.buffer.drain(|context, (collection, id, missed)| {
            let key = Id::new(collection, id.into_bson());
            if missed {
                // The read was recorded when it was noted (its stripe keeps
                // the order); the keys in the caller's window that
                // predicted it lacked a successor after all.
                self.predictor.predictors(context, &key, |prev| {
                    self.set_hint(hint_hash(seed(prev.collection), &prev.bson()), true);
                });
            } else {
                recorded += 1;
                self.predictor.record_gains(context, &key, |gained| {
                    self.set_hint(hint_hash(seed(gained.collection), &gained.bson()), true);
                });
            }
            match latest.iter_mut().find(|(c, _)| *c == context) {
                Some(slot) => slot.1 = key,
                None => latest.push((context, key)),
            }
        });
        for (_, key) in &latest {
            if self.offer_successors(key) {
                self.useful();
            }
        }
        // Reads lost while the drain was behind count toward the epoch as
        // recorded ones do: judged by the recorded reads alone, a model
        // whose drain cannot keep up (callers that never yield) stayed in
        // its warm epochs, recording every read it could (the hot path
        // line, docs/prefetch.md).
        self.judge(recorded + newly_lost);
        self.early_metric.set(if self.predictor.early_open() {
            1.0
        } else {
            0.0
        });
    }
}

/// The flow a read belongs to: the tokio task running it (one caller's
/// sequence of reads), else the thread.
#[inline]
pub(crate) fn context() -> u64 {
    let mut hasher = Fx::default();
    match tokio::task::try_id() {
        Some(id) => id.hash(&mut hasher),
        None => std::thread::current().id().hash(&mut hasher),
    }
    hasher.finish()
}

/// Whether the handle's breaker (if any) is closed: prefetching stops
/// otherwise.
#[cfg_attr(not(feature = "breaker"), allow(unused_variables))]
fn breaker_closed(layers: &Layers) -> bool {
    #[cfg(feature = "breaker")]
    if let Some(breaker) = &layers.breaker {
        return breaker.state() == stratum_breaker::State::Closed;
    }
    true
}

/// Why a prefetch was not made (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The breaker is open or half-open.
    Breaker,
    /// Callers are waiting for admission, or no slot of the concurrency
    /// limit is free.
    Admission,
    /// Prefetches already made their share of the read calls.
    Share,
    /// `max_in_flight` prefetches are under way.
    InFlight,
}

impl Skip {
    const ALL: [Skip; 4] = [Skip::Breaker, Skip::Admission, Skip::Share, Skip::InFlight];

    fn as_str(self) -> &'static str {
        match self {
            Skip::Breaker => "breaker",
            Skip::Admission => "admission",
            Skip::Share => "share",
            Skip::InFlight => "in_flight",
        }
    }
}

/// The prefetch state of one repository.
pub(crate) struct Prefetcher {
    /// The handle's predictor and read buffer, shared by its repositories.
    pub(crate) hub: Arc<Hub>,
    pub(crate) config: PrefetchConfig,
    collection: &'static str,
    /// The collection's part of its reads' hint hashes.
    seed: u64,
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Database calls by reads by id (the demand), and by prefetches.
    demand_calls: AtomicU64,
    prefetch_calls: AtomicU64,
    calls: [Counter; 2],
    skipped: [Counter; 4],
    joined: Counter,
}

impl Prefetcher {
    /// The prefetcher of `collection`, when the handle has a hub.
    pub(crate) fn new(hub: Option<&Arc<Hub>>, collection: &'static str) -> Option<Prefetcher> {
        let hub = Arc::clone(hub?);
        let config = hub.predictor.config().clone();
        Some(Prefetcher {
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight)),
            config,
            hub,
            collection,
            seed: seed(collection),
            demand_calls: AtomicU64::new(0),
            prefetch_calls: AtomicU64::new(0),
            calls: ["ok", "error"]
                .map(|r| metrics::counter!(CALLS, "collection" => collection, "result" => r)),
            skipped: Skip::ALL.map(
                |s| metrics::counter!(SKIPPED, "collection" => collection, "reason" => s.as_str()),
            ),
            joined: metrics::counter!(JOINED, "collection" => collection),
        })
    }

    /// The likely successors of `id` (in this collection, not cached by
    /// `keep`'s judgement) that a missed read of `id` may ask for in its
    /// own database call: none unless the breaker is closed (a half-open
    /// breaker's probe asks for what its caller asked, no more). Such a
    /// load takes no admission slot and makes no call of its own, so
    /// neither the admission rule nor the share of calls applies to it;
    /// the documents it reads are counted as prefetched ones are.
    pub(crate) fn joining(
        &self,
        layers: &Layers,
        id: &Bson,
        keep: impl FnMut(&Id) -> bool,
    ) -> Vec<Id> {
        if !breaker_closed(layers) {
            return Vec::new();
        }
        self.hub.successors_in(self.collection, id, keep)
    }

    /// Counts `n` ids loaded in a read's own call.
    pub(crate) fn joined(&self, n: usize) {
        self.joined.increment(n as u64);
    }

    /// A read by id of this collection (see [`Hub::note`]).
    #[inline]
    pub(crate) fn note(&self, id: &Bson) {
        self.hub.note(self.collection, id);
    }

    /// A read by id of this collection was a hit (see [`Hub::hit`]).
    #[inline]
    pub(crate) fn hit(&self, id: &Bson) {
        self.hub.hit(self.collection, self.seed, id);
    }

    /// A read by id is about to call the database: counted, and the drain
    /// woken so the read's successors load while it waits for its own.
    pub(crate) fn demand_call(&self, id: &Bson) {
        self.demand_calls.fetch_add(1, Ordering::Relaxed);
        self.hub.missed(self.collection, id);
    }

    /// The calls so far: (demand, prefetch).
    pub(crate) fn calls(&self) -> (u64, u64) {
        (
            self.demand_calls.load(Ordering::Relaxed),
            self.prefetch_calls.load(Ordering::Relaxed),
        )
    }

    /// Whether a prefetch may start now, and a permit for it: the breaker
    /// closed, nobody waiting for admission and a slot of the concurrency
    /// limit free, prefetches within their share
    /// of the calls (counting this one), a slot under `max_in_flight`.
    /// The call is counted when the permit is given.
    // Without the breaker and pool features there is nothing in `layers`
    // to consult.
    #[cfg_attr(
        not(any(feature = "breaker", feature = "pool")),
        allow(unused_variables)
    )]
    pub(crate) fn permit(
        &self,
        layers: &Layers,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Skip> {
        let refused = |skip: Skip| {
            self.skipped[skip as usize].increment(1);
            skip
        };
        if !breaker_closed(layers) {
            return Err(refused(Skip::Breaker));
        }
        #[cfg(feature = "pool")]
        if let Some(admission) = &layers.admission {
            let limit = admission.limit();
            // A prefetch that would wait for a slot would also delay every
            // read queued behind it: it is skipped, like one that finds
            // callers waiting.
            if limit.waiting > 0 || limit.in_flight >= limit.limit || admission.status().waiting > 0
            {
                return Err(refused(Skip::Admission));
            }
        }
        let (demand, prefetch) = self.calls();
        if (prefetch + 1) as f64 > self.config.max_share * (demand + prefetch + 1) as f64 {
            return Err(refused(Skip::Share));
        }
        let permit = Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| refused(Skip::InFlight))?;
        self.prefetch_calls.fetch_add(1, Ordering::Relaxed);
        Ok(permit)
    }

    /// A permitted prefetch found nothing to load: its call is not made.
    pub(crate) fn uncount(&self) {
        self.prefetch_calls.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a prefetch call's outcome.
    pub(crate) fn finished(&self, ok: bool) {
        self.calls[usize::from(!ok)].increment(1);
    }
}

/// The loads a prefetch leads (its keys, in the order of
/// [`stratum_cache::Prefetch::keys`], and their ids), and the write
/// generation of each one's stripe noted as the database call that reads
/// them starts: a document is stored only if no write to its stripe
/// finished meanwhile, and dropped again if one finishes while it is
/// being stored (as a read's own result would be).
pub(super) struct Led<T> {
    batch: stratum_cache::Prefetch<Vec<u8>, Entry<T>>,
    keys: Vec<Vec<u8>>,
    ids: Vec<Bson>,
    noted: Vec<AtomicU64>,
}

impl<T: Document> Led<T> {
    /// The loads `batch` leads, of the ids among `ids` it kept.
    pub(super) fn new(batch: stratum_cache::Prefetch<Vec<u8>, Entry<T>>, ids: &[Id]) -> Led<T> {
        let keys = batch.keys();
        let ids = keys
            .iter()
            .filter_map(|k| ids.iter().find(|i| &i.key == k).map(Id::bson))
            .collect();
        let noted = keys.iter().map(|_| AtomicU64::new(0)).collect();
        Led {
            batch,
            keys,
            ids,
            noted,
        }
    }

    /// The ids to ask the database for.
    pub(super) fn ids(&self) -> impl Iterator<Item = Bson> + '_ {
        self.ids.iter().cloned()
    }

    /// How many loads it leads.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Notes each key's write generation: call it as the database call
    /// starts (after the breaker and the admission wait).
    pub(super) fn note(&self, generations: &[AtomicU64]) {
        for (k, slot) in self.keys.iter().zip(&self.noted) {
            let now = generations[stripe(k)].load(Ordering::Acquire);
            slot.store(now, Ordering::Release);
        }
    }

    /// Stores what the call `found` (by key; a key it lacks is stored as
    /// an absence), loaded at `loaded_at`, for the keys no write touched
    /// since [`Led::note`].
    pub(super) fn store(
        self,
        inner: &Inner<T>,
        mut found: HashMap<Vec<u8>, Arc<T>>,
        loaded_at: std::time::Duration,
    ) {
        let Led {
            batch, keys, noted, ..
        } = self;
        let unchanged = |k: &Vec<u8>, slot: &AtomicU64| {
            inner.generations[stripe(k)].load(Ordering::Acquire) == slot.load(Ordering::Acquire)
        };
        let entries: Vec<(Vec<u8>, Entry<T>)> = keys
            .iter()
            .zip(&noted)
            .filter(|(k, slot)| unchanged(k, slot))
            .map(|(k, _)| {
                let doc = found.remove(k);
                (k.clone(), Entry { doc, loaded_at })
            })
            .collect();
        let Ok(stored) = batch.load_sync(|_| Ok::<_, std::convert::Infallible>(entries));
        let Some(cache) = &inner.cache else {
            return;
        };
        for k in stored {
            let Some(i) = keys.iter().position(|x| x == &k) else {
                continue;
            };
            if noted.get(i).is_some_and(|slot| !unchanged(&k, slot)) {
                cache.remove(&k);
                inner.metrics.invalidated(Invalidation::Race);
            }
        }
    }
}

/// The documents of a batched query that decode as `T`, by cache key (one
/// that does not decode is left to the read that asks for it: it reports
/// the error).
pub(super) fn decoded<T: Document>(docs: Vec<bson::Document>) -> HashMap<Vec<u8>, Arc<T>> {
    docs.into_iter()
        .filter_map(|doc| {
            let key = stratum_store::id_key(doc.get("_id")?);
            let value = T::from_bson_checked(doc).ok()?;
            Some((key, Arc::new(value)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ObjectIds made one after another differ in a few low bytes: each
    /// gets a hint bit of its own (FxHash's raw low bits gave 64 such ids
    /// one slot).
    #[test]
    fn consecutive_object_ids_get_their_own_hint_bits() {
        let base = bson::oid::ObjectId::new().bytes();
        let slots: std::collections::HashSet<(u64, u64)> = (0..64u8)
            .map(|i| {
                let mut bytes = base;
                bytes[11] = i;
                let h = hint_hash(
                    seed("messages"),
                    &Bson::ObjectId(bson::oid::ObjectId::from_bytes(bytes)),
                );
                ((h >> 6) % HINT_WORDS as u64, h & 63)
            })
            .collect();
        assert!(slots.len() >= 60, "{} slots for 64 ids", slots.len());
    }

    /// Reads a stripe of the read buffer holds.
    const STRIPE: usize = stratum_cache::STRIPE_CAPACITY;

    fn hub() -> Arc<Hub> {
        let mut config = PrefetchConfig::default();
        config.enabled = true;
        Hub::new(&config).unwrap().unwrap()
    }

    /// A thread hands its reads to the buffer 16 at a time (one lock per
    /// batch), at once when a read misses, and to the right hub when it
    /// reads another handle's; a drain takes its own thread's batch.
    /// (Outside a runtime a due buffer is drained at once, here.)
    #[test]
    fn reads_reach_the_buffer_in_batches() {
        let (a, b) = (hub(), hub());
        for i in 0..BATCH as i64 - 1 {
            a.note("chunks", &Bson::Int64(i));
        }
        assert_eq!(a.buffer.pending(), 0, "still this thread's batch");
        assert_eq!(a.predictor.tracked_keys(), 0);
        a.note("chunks", &Bson::Int64(99));
        assert_eq!(a.predictor.tracked_keys(), BATCH, "handed over and due");
        a.note("chunks", &Bson::Int64(1));
        a.note("chunks", &Bson::Int64(100));
        b.note("chunks", &Bson::Int64(1));
        assert_eq!(a.buffer.pending(), 2, "a read of b hands a's batch to a");
        assert_eq!(b.buffer.pending(), 0);
        b.missed("chunks", &Bson::Int64(2));
        assert_eq!(b.predictor.tracked_keys(), 1, "a miss hands the batch over");
        a.note("chunks", &Bson::Int64(101));
        a.drain();
        assert_eq!(a.buffer.pending(), 0);
        assert_eq!(a.predictor.tracked_keys(), BATCH + 2, "and so does a drain");
    }

    /// After the warm epochs, recording backs off one step per epoch in
    /// which proposals found nothing to load (1 context in 2, 4, ... 64),
    /// returns to every context at once when one does, and an epoch with
    /// at least 1 useful proposal in 1 024 reads keeps it there.
    #[test]
    fn recording_backs_off_while_proposals_find_nothing_to_load() {
        let hub = hub();
        for _ in 0..WARM_EPOCHS {
            hub.judge(EPOCH);
        }
        assert!((0..64).all(|c| hub.sampled(c)), "warm");
        hub.judge(EPOCH - 1);
        assert_eq!(
            hub.flags.shift.load(Ordering::Relaxed),
            0,
            "an epoch is not over"
        );
        hub.judge(1);
        assert_eq!(hub.flags.shift.load(Ordering::Relaxed), 1);
        assert_eq!((0..64).filter(|&c| hub.sampled(c)).count(), 32);
        for _ in 0..10 {
            hub.judge(EPOCH);
        }
        assert_eq!(hub.flags.shift.load(Ordering::Relaxed), MAX_SHIFT);
        assert_eq!((0..640).filter(|&c| hub.sampled(c)).count(), 10);
        for _ in 0..EPOCH / 1_024 - 1 {
            hub.useful();
        }
        assert_eq!(
            hub.flags.shift.load(Ordering::Relaxed),
            MAX_SHIFT,
            "3 useful"
        );
        hub.useful();
        assert!((0..64).all(|c| hub.sampled(c)), "4 useful");
        hub.judge(EPOCH);
        assert_eq!(
            hub.flags.shift.load(Ordering::Relaxed),
            0,
            "4 useful in 4 096"
        );
        // One drain after three epochs' reads judges three epochs.
        hub.judge(3 * EPOCH + 5);
        assert_eq!(
            hub.flags.shift.load(Ordering::Relaxed),
            3,
            "three epochs at once"
        );
        hub.flags.shift.store(0, Ordering::Relaxed);
        // A context left out of the sample reaches neither the batch nor
        // the buffer.
        hub.flags.shift.store(MAX_SHIFT, Ordering::Relaxed);
        let out = !hub.sampled(context());
        for i in 0..2 * BATCH as i64 {
            hub.note("chunks", &Bson::Int64(i));
        }
        hub.drain();
        assert_eq!(hub.predictor.tracked_keys() == 0, out);
    }

    /// Reads lost while the drain is behind count toward the epochs: a hub
    /// whose drain never keeps up still ends its warm epochs and backs off
    /// (judged by recorded reads alone it recorded every read it could for
    /// good), and a context left out of the sample is not even counted.
    #[test]
    fn reads_lost_while_behind_count_toward_the_epochs() {
        let hub = hub();
        hub.flags.behind.store(true, Ordering::Relaxed);
        for i in 0..(i64::from(WARM_EPOCHS) + 2) * EPOCH as i64 {
            hub.note("chunks", &Bson::Int64(i));
        }
        hub.drain();
        assert_eq!(hub.predictor.tracked_keys(), 0, "nothing recorded");
        assert_eq!(
            hub.flags.shift.load(Ordering::Relaxed),
            2,
            "two epochs judged"
        );
        // Backed off: while behind, a context out of the sample is not
        // counted (it costs the sampling check alone).
        hub.flags.shift.store(MAX_SHIFT, Ordering::Relaxed);
        hub.flags.behind.store(true, Ordering::Relaxed);
        let before = hub.skipped.load(Ordering::Relaxed);
        let out = !hub.sampled(context());
        for i in 0..SKIP_BATCH as i64 {
            hub.note("chunks", &Bson::Int64(i));
        }
        hub.flush_local();
        let counted = hub.skipped.load(Ordering::Relaxed) - before;
        assert_eq!(counted, if out { 0 } else { SKIP_BATCH });
    }

    /// An epoch judged useless clears the hints: a hit then skips its
    /// hint check (`armed` is 0) instead of hashing its id.
    #[test]
    fn backing_off_clears_the_hints() {
        let hub = hub();
        for hash in [1u64, 2, 64 * 3 + 1] {
            hub.set_hint(hash, true);
        }
        for _ in 0..WARM_EPOCHS {
            hub.judge(EPOCH);
        }
        assert_eq!(hub.flags.armed.load(Ordering::Relaxed), 3, "warm: kept");
        hub.judge(EPOCH);
        assert_eq!(hub.flags.armed.load(Ordering::Relaxed), 0);
        assert!(!hub.hinted(1) && !hub.hinted(64 * 3 + 1));
    }

    /// `armed` is the number of hint bits set, however often a bit is set
    /// or cleared: a read skips its hint check only when it is 0.
    #[test]
    fn armed_counts_the_hint_bits_set() {
        let hub = hub();
        for hash in [1u64, 2, 1, 64 * 3 + 1] {
            hub.set_hint(hash, true);
        }
        assert_eq!(hub.flags.armed.load(Ordering::Relaxed), 3);
        for hash in [1u64, 1, 5] {
            hub.set_hint(hash, false);
        }
        assert_eq!(hub.flags.armed.load(Ordering::Relaxed), 2);
        assert!(hub.hinted(2) && !hub.hinted(1));
    }

    /// The values recorded for the dropped reads' counter.
    fn dropped(
        snapshotter: &metrics_util::debugging::Snapshotter,
    ) -> Vec<metrics_util::debugging::DebugValue> {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == DROPPED)
            .map(|(.., value)| value)
            .collect()
    }

    /// A drain publishes the reads the buffer dropped
    /// (`stratum_repository_prefetch_reads_dropped_total`): 70 reads of one context
    /// into a stripe of 64 drop 6.
    #[test]
    fn a_drain_publishes_the_reads_dropped() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let hub = hub();
            for i in 0..70 {
                hub.buffer.push(1, ("chunks", Held::Int64(i), false));
            }
            hub.drain();
        });
        let dropped = dropped(&snapshotter);
        assert_eq!(
            dropped,
            [metrics_util::debugging::DebugValue::Counter(6)],
            "the stripe holds 64"
        );
    }

    /// Once a stripe is full the hub is behind: reads are counted, not
    /// batched, until a drain; the metric counts both the reads the
    /// buffer dropped and those skipped.
    #[test]
    fn reads_are_skipped_while_the_drain_is_behind() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            // In a runtime a due buffer wakes a drain task, which does not
            // run while this never yields.
            rt.block_on(async {
                let hub = hub();
                let read = |i: i64| hub.note("chunks", &Bson::Int64(i));
                (0..80).for_each(read);
                assert_eq!(hub.buffer.pending(), STRIPE);
                assert_eq!(hub.buffer.dropped(), 16);
                assert!(hub.flags.behind.load(Ordering::Relaxed));
                (80..112).for_each(read);
                assert_eq!(hub.buffer.dropped(), 16, "skipped, not pushed");
                // Counted in the thread's batch, handed over every
                // SKIP_BATCH reads or at a drain.
                assert_eq!(hub.skipped.load(Ordering::Relaxed), 0);
                hub.drain();
                assert_eq!(hub.skipped.load(Ordering::Relaxed), 32);
                assert!(!hub.flags.behind.load(Ordering::Relaxed));
                assert_eq!(hub.predictor.tracked_keys(), STRIPE);
                (200..216).for_each(read);
                assert_eq!(hub.buffer.pending(), 16, "recorded again");
            });
        });
        let dropped = dropped(&snapshotter);
        assert_eq!(dropped, [metrics_util::debugging::DebugValue::Counter(48)]);
    }

    /// Every id type comes back from the buffer as it went in (the
    /// inline ones and the rest), and the inline ones are 16 bytes.
    #[test]
    fn held_ids_round_trip() {
        for id in [
            Bson::Int64(-7),
            Bson::Int32(i32::MAX),
            Bson::ObjectId(bson::oid::ObjectId::new()),
            Bson::String("conversation-1".into()),
            Bson::Double(1.5),
        ] {
            assert_eq!(Held::of(&id).into_bson(), id);
        }
        assert!(matches!(Held::of(&Bson::Int32(1)), Held::Int32(1)));
        assert_eq!(size_of::<Held>(), 16);
    }

    /// A repository that says every id is cached, or none, and counts
    /// the ids offered to it.
    struct Fake {
        cached: AtomicBool,
        offered: AtomicU64,
    }

    impl Target for Fake {
        fn has(&self, _: &Id) -> bool {
            self.cached.load(Ordering::Relaxed)
        }

        fn offer(self: Arc<Self>, ids: Vec<Id>) -> bool {
            self.offered.fetch_add(ids.len() as u64, Ordering::Relaxed);
            true
        }
    }

    /// A hub whose "chunks" repository is a [`Fake`] (everything cached or
    /// nothing); the third value keeps the registration alive.
    fn hub_with_fake(cached: bool) -> (Arc<Hub>, Arc<Fake>, Arc<dyn Target>) {
        let hub = hub();
        let fake = Arc::new(Fake {
            cached: AtomicBool::new(cached),
            offered: AtomicU64::new(0),
        });
        let target: Arc<dyn Target> = fake.clone();
        hub.register("chunks", Arc::downgrade(&target));
        (hub, fake, target)
    }

    /// A proposal leaves out the successors already cached before cloning
    /// them: when all are, nothing is offered (it used to clone them all
    /// and offer them, for the repository to find them cached).
    #[test]
    fn a_proposal_offers_only_the_successors_not_cached() {
        let (hub, fake, _target) = hub_with_fake(true);
        let id = |i: i64| Id::new("chunks", Bson::Int64(i));
        for _ in 0..3 {
            for i in 0..4 {
                hub.predictor.record(1, &id(i));
            }
        }
        assert!(!hub.offer_successors(&id(0)), "all cached");
        assert_eq!(fake.offered.load(Ordering::Relaxed), 0);
        fake.cached.store(false, Ordering::Relaxed);
        assert!(hub.offer_successors(&id(0)));
        assert_eq!(fake.offered.load(Ordering::Relaxed), 3, "1, 2 and 3");
    }

    /// A dormant hub (backed off to 1 context in 64, no hint armed) wakes
    /// when the reads turn correlated: the few sampled callers teach the
    /// model the groups, a hit of a group's first key then proposes the
    /// rest, which are not cached, and 4 such proposals record every
    /// context again. Fails if a hit ignored the hints re-armed while
    /// dormant, or if useful proposals no longer reset the sample.
    #[test]
    fn a_dormant_hub_records_every_context_again_when_reads_turn_correlated() {
        let (hub, fake, _target) = hub_with_fake(false);
        for _ in 0..WARM_EPOCHS + MAX_SHIFT {
            hub.judge(EPOCH);
        }
        assert_eq!(hub.flags.shift.load(Ordering::Relaxed), MAX_SHIFT);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let seed = seed("chunks");
        // Callers, each a task (a context of its own), each reading one of
        // 8 groups of 4 ids, every read a hit.
        let mut callers = 0;
        while hub.flags.shift.load(Ordering::Relaxed) != 0 && callers < 4_096 {
            let (hub, group) = (Arc::clone(&hub), callers % 8);
            rt.block_on(async move {
                tokio::spawn(async move {
                    for i in 0..4 {
                        let id = Bson::Int64(group * 4 + i);
                        hub.note("chunks", &id);
                        hub.hit("chunks", seed, &id);
                    }
                    hub.flush_local();
                    hub.drain();
                })
                .await
                .unwrap();
            });
            callers += 1;
        }
        assert_eq!(
            hub.flags.shift.load(Ordering::Relaxed),
            0,
            "{callers} callers"
        );
        assert!(fake.offered.load(Ordering::Relaxed) > 0);
        println!("every context recorded again after {callers} callers");
    }

    /// What a tracked ObjectId costs: the predictor's stated bytes per key
    /// plus the key bytes on the heap, within the bound once full.
    #[test]
    fn a_tracked_object_id_costs_what_the_docs_say() {
        let mut config = PrefetchConfig::default();
        config.max_tracked_keys = 2_048;
        let p = Predictor::<Id>::new(&config).unwrap();
        for i in 0..4_096u32 {
            let mut bytes = [0u8; 12];
            bytes[8..].copy_from_slice(&i.to_be_bytes());
            let id = Bson::ObjectId(bson::oid::ObjectId::from_bytes(bytes));
            let key = Id::new("conversations", id);
            p.record(u64::from(i % 16), &key);
        }
        assert_eq!(p.tracked_keys(), 2_048);
        assert!(p.memory_bytes() <= p.capacity() * p.bytes_per_key() + p.fixed_bytes());
        let key_heap = stratum_store::id_key(&Bson::ObjectId(bson::oid::ObjectId::new())).len();
        // docs/prefetch.md quotes these two figures.
        println!(
            "bytes per tracked ObjectId: {} + {key_heap} key bytes on the heap; Id is {} bytes",
            p.bytes_per_key(),
            size_of::<Id>()
        );
        assert_eq!(key_heap, 13);
    }
}
