//! Predictive pre-loading for the repositories of one `Stratum` handle:
//! a read by id is pushed into a [`ReadBuffer`] (the read path's whole
//! cost), a drain task records the buffered reads in one [`Predictor`]
//! over every collection (key = collection + id, so a conversation's
//! header predicts its messages in another collection) and offers each
//! proposal to the repository of its collection, which loads what it
//! lacks in one `_id: {$in: [...]}` query, through the same breaker and
//! admission as any read, within a share of its read calls, and never
//! while the breaker is not closed or callers wait for admission
//! (docs/prefetch.md).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bson::Bson;
use metrics::Counter;
use stratum_cache::{Predictor, PrefetchConfig, ReadBuffer};

use crate::ConfigError;
use crate::stack::Layers;

/// Counter: prefetch calls by collection and outcome (`ok`, `error`).
pub(crate) const CALLS: &str = "stratum_repository_prefetch_calls_total";
/// Counter: prefetches not made, by collection and reason (`breaker`,
/// `admission`, `share`, `in_flight`).
pub(crate) const SKIPPED: &str = "stratum_repository_prefetch_skipped_total";

/// A tracked id: its collection and cache key (hashed and compared) and
/// the id itself (what the query asks for).
#[derive(Debug, Clone)]
pub(crate) struct Id {
    pub(crate) collection: &'static str,
    pub(crate) key: Vec<u8>,
    pub(crate) id: Bson,
}

impl Id {
    pub(crate) fn new(collection: &'static str, id: Bson) -> Id {
        Id {
            collection,
            key: stratum_store::id_key(&id),
            id,
        }
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

/// The hint slot of a read: from the id as it is, without encoding the
/// cache key (which allocates) for the common id types.
fn hint_hash(collection: &'static str, id: &Bson) -> u64 {
    let mut h = Fx::default();
    h.write(collection.as_bytes());
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

/// The prediction state of one `Stratum` handle, shared by its
/// repositories.
pub(crate) struct Hub {
    predictor: Predictor<Id>,
    /// Reads, and misses (`true`: a read's database call started).
    buffer: ReadBuffer<(&'static str, Bson, bool)>,
    hints: Box<[AtomicU64]>,
    /// A drain task is scheduled or running.
    scheduled: AtomicBool,
    /// A drain was asked for since the running one began.
    wanted: AtomicBool,
    targets: parking_lot::Mutex<Vec<(&'static str, Weak<dyn Target>)>>,
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

    /// The read path's part: buffers a read of `id` in `collection`
    /// (waking the drain when the caller's stripe is due) and, when the key
    /// had likely successors at the last drain, offers them now: the
    /// caller's next read may come before a drain task gets to run (a hit
    /// does not yield), so a key worth a proposal gets it on the read path.
    pub(crate) fn note(self: &Arc<Self>, collection: &'static str, id: &Bson) {
        if self.buffer.push(context(), (collection, id.clone(), false)) {
            self.wake();
        }
        let hash = hint_hash(collection, id);
        if self.hinted(hash) && !self.offer_successors(&Id::new(collection, id.clone())) {
            self.set_hint(hash, false);
        }
    }

    /// A read of `id` missed and its database call starts: noted (its
    /// predecessors that predicted it get their hints back) and the drain
    /// woken, so its successors load while it waits.
    pub(crate) fn missed(self: &Arc<Self>, collection: &'static str, id: &Bson) {
        self.buffer.push(context(), (collection, id.clone(), true));
        self.wake();
    }

    /// Offers the likely successors of `key` to the repositories of their
    /// collections; returns whether any was not cached.
    fn offer_successors(&self, key: &Id) -> bool {
        let mut next = self.predictor.propose(key);
        let mut lacking = false;
        while let Some(first) = next.first() {
            let collection = first.collection;
            let (ids, rest): (Vec<Id>, Vec<Id>) =
                next.into_iter().partition(|i| i.collection == collection);
            next = rest;
            if let Some(target) = self.target(collection) {
                lacking |= target.offer(ids);
            }
        }
        lacking
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
            if on {
                word.fetch_or(bit, Ordering::Relaxed);
            } else {
                word.fetch_and(!bit, Ordering::Relaxed);
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
        // Each context's latest read in this batch.
        let mut latest: Vec<(u64, Id)> = Vec::new();
        self.buffer.drain(|context, (collection, id, missed)| {
            let key = Id::new(collection, id);
            if missed {
                // The read was recorded when it was noted (its stripe keeps
                // the order); the keys in the caller's window that
                // predicted it lacked a successor after all.
                self.predictor.predictors(context, &key, |prev| {
                    self.set_hint(hint_hash(prev.collection, &prev.id), true);
                });
            } else {
                self.predictor.record_gains(context, &key, |gained| {
                    self.set_hint(hint_hash(gained.collection, &gained.id), true);
                });
            }
            match latest.iter_mut().find(|(c, _)| *c == context) {
                Some(slot) => slot.1 = key,
                None => latest.push((context, key)),
            }
        });
        for (_, key) in &latest {
            self.offer_successors(key);
        }
    }
}

/// The flow a read belongs to: the tokio task running it (one caller's
/// sequence of reads), else the thread.
pub(crate) fn context() -> u64 {
    let mut hasher = Fx::default();
    match tokio::task::try_id() {
        Some(id) => id.hash(&mut hasher),
        None => std::thread::current().id().hash(&mut hasher),
    }
    hasher.finish()
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
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Database calls by reads by id (the demand), and by prefetches.
    demand_calls: AtomicU64,
    prefetch_calls: AtomicU64,
    calls: [Counter; 2],
    skipped: [Counter; 4],
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
            demand_calls: AtomicU64::new(0),
            prefetch_calls: AtomicU64::new(0),
            calls: ["ok", "error"]
                .map(|r| metrics::counter!(CALLS, "collection" => collection, "result" => r)),
            skipped: Skip::ALL.map(
                |s| metrics::counter!(SKIPPED, "collection" => collection, "reason" => s.as_str()),
            ),
        })
    }

    /// A read by id is about to call the database: counted, and the drain
    /// woken so the read's successors load while it waits for its own.
    pub(crate) fn demand_call(&self, collection: &'static str, id: &Bson) {
        self.demand_calls.fetch_add(1, Ordering::Relaxed);
        self.hub.missed(collection, id);
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
        #[cfg(feature = "breaker")]
        if let Some(breaker) = &layers.breaker
            && breaker.state() != stratum_breaker::State::Closed
        {
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
                    "messages",
                    &Bson::ObjectId(bson::oid::ObjectId::from_bytes(bytes)),
                );
                ((h >> 6) % HINT_WORDS as u64, h & 63)
            })
            .collect();
        assert!(slots.len() >= 60, "{} slots for 64 ids", slots.len());
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
