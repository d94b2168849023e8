//! One shard's storage: a slab of entries, an index by hash, and the
//! eviction policy's intrusive lists (exact LRU, or S3-FIFO's small and main
//! FIFO queues plus a ghost queue of recently evicted hashes).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use hashbrown::HashTable;

use crate::config::Policy;
use crate::stats::RemovalCause;

/// The "no link" index.
const NIL: u32 = u32::MAX;
/// S3-FIFO's access counter saturates here (two bits, as in the paper).
const MAX_FREQ: u8 = 3;
/// S3-FIFO's small queue share of a shard's capacity, and the ghost
/// queue's length as a share of the resident entries. The paper uses 10 %
/// and 90 %; on our Zipf 0.99 (cache = 1 % of keys) trace 3 % / 25 % scored
/// 59.5 % hits against 58.4 % (quick_cache: 59.2 %), and the scan trace was
/// unchanged (docs/cache.md has the sweep).
const SMALL_PERCENT: u64 = 3;
const GHOST_PERCENT: usize = 25;
/// Which list an entry sits on. LRU uses only `SMALL` (as its one list).
const SMALL: usize = 0;
const MAIN: usize = 1;

/// A removed entry, handed back so the caller can notify the listener and
/// drop the value outside the shard lock.
pub(crate) type Removed<K, V> = (K, V, RemovalCause);

/// The entries one operation removed. Most writes remove at most one, which
/// is stored inline: the write path does not allocate for it.
pub(crate) struct Removals<K, V> {
    first: Option<Removed<K, V>>,
    rest: Vec<Removed<K, V>>,
}

impl<K, V> Default for Removals<K, V> {
    fn default() -> Self {
        Self {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<K, V> Removals<K, V> {
    pub(crate) fn push(&mut self, r: Removed<K, V>) {
        if self.first.is_none() {
            self.first = Some(r);
        } else {
            self.rest.push(r);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn into_iter(self) -> impl Iterator<Item = Removed<K, V>> {
        self.first.into_iter().chain(self.rest)
    }
}

/// Expiry settings a shard needs to judge an entry, in clock ticks (ns).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Time-to-idle, if configured.
    pub(crate) tti: Option<u64>,
    /// How long an expired value is kept for stale-if-error (0 if off).
    pub(crate) max_stale: u64,
    /// Whether refresh-ahead is configured (reads then check `refresh_at`).
    pub(crate) refresh: bool,
}

/// Everything the hit path and the write path (insert, eviction, list
/// moves) need sits in the entry, so a miss, which inserts one entry and
/// evicts another, touches each of them and no side array.
pub(crate) struct Entry<K, V> {
    key: K,
    value: V,
    /// The key's hash: finds the table slot on removal, and is what the
    /// S3-FIFO ghost remembers of an evicted entry.
    hash: u64,
    /// TTL deadline (cache TTL or per-entry TTL), `u64::MAX` for none.
    expires_at: u64,
    /// Last read or write, for time-to-idle.
    last_access: AtomicU64,
    weight: u32,
    prev: u32,
    next: u32,
    /// S3-FIFO access counter; written only when it changes, so hot keys
    /// that are already saturated cost readers no shared write.
    freq: AtomicU8,
    list: Queue,
}

/// Which queue an entry is on (an enum, so `Option<Entry>` needs no tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Small,
    Main,
}

impl Queue {
    fn of(list: usize) -> Self {
        if list == MAIN {
            Self::Main
        } else {
            Self::Small
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Small => SMALL,
            Self::Main => MAIN,
        }
    }
}

impl<K, V> Entry<K, V> {
    /// The tick at which this entry stops being served.
    fn expired_at(&self, timing: Timing) -> u64 {
        match timing.tti {
            Some(tti) => self
                .expires_at
                .min(self.last_access.load(Ordering::Relaxed).saturating_add(tti)),
            None => self.expires_at,
        }
    }

    fn is_live(&self, now: u64, timing: Timing) -> bool {
        now < self.expired_at(timing)
    }

    /// Expired and past any stale-if-error grace: safe to reclaim.
    fn is_dead(&self, now: u64, timing: Timing) -> bool {
        now >= self.expired_at(timing).saturating_add(timing.max_stale)
    }
}

/// What a lookup found.
pub(crate) enum Lookup<V> {
    /// A live value; `refresh` is true when it is past its refresh-ahead point.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Hit { value: V, refresh: bool },
    /// Expired but within the stale-if-error grace (only when asked for).
    Stale(V),
    /// Nothing servable.
    Miss,
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    weight: u64,
    len: usize,
}

impl List {
    const EMPTY: Self = Self {
        head: NIL,
        tail: NIL,
        weight: 0,
        len: 0,
    };
}

/// What the shard stores for one insert.
pub(crate) struct NewEntry<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    pub(crate) hash: u64,
    pub(crate) weight: u32,
    pub(crate) expires_at: u64,
    pub(crate) refresh_at: u64,
}

pub(crate) struct ShardData<K, V> {
    table: HashTable<u32>,
    slab: Vec<Option<Entry<K, V>>>,
    /// Per slab slot: when a read should trigger a refresh-ahead reload
    /// (`u64::MAX` for never). Kept only when refresh-ahead is configured,
    /// so other caches neither store nor write it.
    refresh_at: Vec<u64>,
    track_refresh: bool,
    free: Vec<u32>,
    lists: [List; 2],
    weight: u64,
    capacity: u64,
    /// S3-FIFO's small-queue share of the capacity ([`SMALL_PERCENT`]).
    small_target: u64,
    policy: Policy,
    /// S3-FIFO ghost: hashes of entries recently evicted from the small
    /// queue, direct-mapped (slot = hash & mask; a newer hash overwrites an
    /// older one), so a check or a record is one memory access.
    ghost: Vec<u64>,
    /// Where the amortized expiry sweep resumes.
    cursor: usize,
    /// A lower bound on the tick at which any stored entry becomes dead:
    /// while `now` is below it, the sweep has nothing to find and is
    /// skipped (with a long TTL, writes then pay nothing for expiry).
    earliest_dead: u64,
    /// The minimum dead tick seen in the current sweep pass (examined
    /// entries and entries written during the pass); becomes
    /// `earliest_dead` when the pass wraps around.
    pass_min: u64,
}

impl<K: Eq, V: Clone> ShardData<K, V> {
    pub(crate) fn new(capacity: u64, policy: Policy, timing: Timing) -> Self {
        Self {
            table: HashTable::new(),
            slab: Vec::new(),
            refresh_at: Vec::new(),
            track_refresh: timing.refresh,
            free: Vec::new(),
            lists: [List::EMPTY; 2],
            weight: 0,
            capacity,
            small_target: (capacity / 100 * SMALL_PERCENT).max(1),
            policy,
            ghost: vec![0; 8],
            cursor: 0,
            earliest_dead: u64::MAX,
            pass_min: u64::MAX,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Slab slots, occupied or free: what a full sweep examines.
    pub(crate) fn slots(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    fn entry(&self, idx: u32) -> Option<&Entry<K, V>> {
        self.slab.get(idx as usize).and_then(Option::as_ref)
    }

    fn entry_mut(&mut self, idx: u32) -> Option<&mut Entry<K, V>> {
        self.slab.get_mut(idx as usize).and_then(Option::as_mut)
    }

    /// Whether a read of `idx` at `now` is past its refresh-ahead point.
    fn refresh_due(&self, idx: u32, now: u64) -> bool {
        self.refresh_at
            .get(idx as usize)
            .is_some_and(|&at| now >= at)
    }

    fn set_refresh_at(&mut self, idx: u32, at: u64) {
        if !self.track_refresh {
            return;
        }
        let i = idx as usize;
        if self.refresh_at.len() <= i {
            self.refresh_at.resize(i + 1, u64::MAX);
        }
        if let Some(slot) = self.refresh_at.get_mut(i) {
            *slot = at;
        }
    }

    #[inline]
    fn find(&self, hash: u64, key: &K) -> Option<u32> {
        let slab = &self.slab;
        self.table
            .find(hash, |&i| {
                slab.get(i as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|e| e.key == *key)
            })
            .copied()
    }

    /// A lookup that needs only shared access: S3-FIFO's read path. Marks the
    /// entry as accessed (freq, and last access when TTI is on).
    #[inline]
    pub(crate) fn lookup_shared(
        &self,
        hash: u64,
        key: &K,
        now: u64,
        timing: Timing,
        want_stale: bool,
    ) -> Lookup<V> {
        let Some(idx) = self.find(hash, key) else {
            return Lookup::Miss;
        };
        let Some(e) = self.entry(idx) else {
            return Lookup::Miss;
        };
        if e.is_live(now, timing) {
            let f = e.freq.load(Ordering::Relaxed);
            if f < MAX_FREQ {
                e.freq.store(f + 1, Ordering::Relaxed);
            }
            if timing.tti.is_some() {
                e.last_access.store(now, Ordering::Relaxed);
            }
            Lookup::Hit {
                value: e.value.clone(),
                refresh: timing.refresh && self.refresh_due(idx, now),
            }
        } else if want_stale && !e.is_dead(now, timing) {
            Lookup::Stale(e.value.clone())
        } else {
            Lookup::Miss
        }
    }

    /// `Some(live)` if `key` is stored, without touching or counting it.
    pub(crate) fn lookup_shared_peek(
        &self,
        hash: u64,
        key: &K,
        now: u64,
        timing: Timing,
    ) -> Option<bool> {
        let e = self.find(hash, key).and_then(|i| self.entry(i))?;
        Some(e.is_live(now, timing))
    }

    /// A lookup with exclusive access: the exact-LRU read path, which moves
    /// the entry to the front, and reclaims it on the spot if it is dead.
    pub(crate) fn lookup_exclusive(
        &mut self,
        hash: u64,
        key: &K,
        now: u64,
        timing: Timing,
        want_stale: bool,
        out: &mut Removals<K, V>,
    ) -> Lookup<V> {
        let Some(idx) = self.find(hash, key) else {
            return Lookup::Miss;
        };
        let Some(e) = self.entry(idx) else {
            return Lookup::Miss;
        };
        if e.is_live(now, timing) {
            let value = e.value.clone();
            let refresh = timing.refresh && self.refresh_due(idx, now);
            e.last_access.store(now, Ordering::Relaxed);
            if self.policy == Policy::Lru {
                if self.lists[SMALL].head != idx {
                    self.unlink(idx);
                    self.push_head(idx, SMALL);
                }
            } else {
                let f = e.freq.load(Ordering::Relaxed);
                e.freq.store((f + 1).min(MAX_FREQ), Ordering::Relaxed);
            }
            Lookup::Hit { value, refresh }
        } else if !e.is_dead(now, timing) {
            if want_stale {
                Lookup::Stale(e.value.clone())
            } else {
                Lookup::Miss
            }
        } else {
            if let Some(r) = self.remove_idx(idx, RemovalCause::Expired) {
                out.push(r);
            }
            Lookup::Miss
        }
    }

    /// Inserts or replaces; evicts as needed so `weight <= capacity` holds on
    /// return. An entry heavier than the whole shard is not stored (it is
    /// reported as a `Size` eviction) and any older value for the key goes.
    pub(crate) fn insert(
        &mut self,
        new: NewEntry<K, V>,
        now: u64,
        timing: Timing,
        out: &mut Removals<K, V>,
    ) {
        let existing = self.find(new.hash, &new.key);
        // The new value's earliest possible death (TTI can only push it later).
        let dead_at = new
            .expires_at
            .min(timing.tti.map_or(u64::MAX, |tti| now.saturating_add(tti)))
            .saturating_add(timing.max_stale);
        self.earliest_dead = self.earliest_dead.min(dead_at);
        self.pass_min = self.pass_min.min(dead_at);
        if u64::from(new.weight) > self.capacity {
            if let Some(idx) = existing
                && let Some(r) = self.remove_idx(idx, RemovalCause::Replaced)
            {
                out.push(r);
            }
            out.push((new.key, new.value, RemovalCause::Size));
            return;
        }
        let idx = if let Some(idx) = existing {
            let policy = self.policy;
            let Some(e) = self.entry_mut(idx) else {
                return;
            };
            let cause = if e.is_live(now, timing) {
                RemovalCause::Replaced
            } else {
                RemovalCause::Expired
            };
            let old_value = std::mem::replace(&mut e.value, new.value);
            e.expires_at = new.expires_at;
            e.last_access.store(now, Ordering::Relaxed);
            let list = e.list.index();
            let old_weight = std::mem::replace(&mut e.weight, new.weight);
            self.set_refresh_at(idx, new.refresh_at);
            out.push((new.key, old_value, cause));
            if let Some(l) = self.lists.get_mut(list) {
                l.weight = l.weight - u64::from(old_weight) + u64::from(new.weight);
            }
            self.weight = self.weight - u64::from(old_weight) + u64::from(new.weight);
            if policy == Policy::Lru {
                self.unlink(idx);
                self.push_head(idx, SMALL);
            }
            idx
        } else {
            let list = match self.policy {
                Policy::Lru => SMALL,
                Policy::S3Fifo => {
                    if self.ghost_take(new.hash) {
                        MAIN
                    } else {
                        SMALL
                    }
                }
            };
            let entry = Entry {
                key: new.key,
                value: new.value,
                hash: new.hash,
                expires_at: new.expires_at,
                last_access: AtomicU64::new(now),
                weight: new.weight,
                prev: NIL,
                next: NIL,
                freq: AtomicU8::new(0),
                list: Queue::of(list),
            };
            let idx = match self.free.pop() {
                Some(i) => {
                    if let Some(slot) = self.slab.get_mut(i as usize) {
                        *slot = Some(entry);
                    }
                    i
                }
                None => {
                    self.slab.push(Some(entry));
                    u32::try_from(self.slab.len() - 1).unwrap_or(NIL)
                }
            };
            self.set_refresh_at(idx, new.refresh_at);
            let slab = &self.slab;
            self.table.insert_unique(new.hash, idx, |&i| {
                slab.get(i as usize)
                    .and_then(Option::as_ref)
                    .map_or(0, |e| e.hash)
            });
            self.weight += u64::from(new.weight);
            self.push_head(idx, list);
            idx
        };
        while self.weight > self.capacity {
            if !self.evict_one(now, timing, idx, out) {
                break;
            }
        }
    }

    /// Removes the entry for `key`, if any (live or not).
    pub(crate) fn remove(
        &mut self,
        hash: u64,
        key: &K,
        cause: RemovalCause,
    ) -> Option<Removed<K, V>> {
        let idx = self.find(hash, key)?;
        self.remove_idx(idx, cause)
    }

    /// Removes everything.
    pub(crate) fn clear(&mut self, out: &mut Removals<K, V>) {
        self.refresh_at.clear();
        for e in self.slab.drain(..).flatten() {
            out.push((e.key, e.value, RemovalCause::Explicit));
        }
        self.table.clear();
        self.free.clear();
        self.lists = [List::EMPTY; 2];
        self.weight = 0;
        self.cursor = 0;
        self.earliest_dead = u64::MAX;
        self.pass_min = u64::MAX;
        self.ghost.fill(0);
    }

    /// Examines up to `budget` slots from where the last sweep stopped and
    /// reclaims dead entries: the amortized expiry that runs on every write.
    pub(crate) fn sweep(
        &mut self,
        budget: usize,
        now: u64,
        timing: Timing,
        out: &mut Removals<K, V>,
    ) {
        let n = self.slab.len();
        if n == 0 || now < self.earliest_dead {
            return;
        }
        for _ in 0..budget.min(n) {
            if self.cursor >= n {
                self.cursor = 0;
                self.earliest_dead = self.pass_min;
                self.pass_min = u64::MAX;
            }
            let idx = self.cursor;
            self.cursor += 1;
            let Some(e) = self.slab.get(idx).and_then(Option::as_ref) else {
                continue;
            };
            if e.is_dead(now, timing) {
                if let Some(r) = self.remove_idx(idx as u32, RemovalCause::Expired) {
                    out.push(r);
                }
            } else {
                let dead_at = e.expired_at(timing).saturating_add(timing.max_stale);
                self.pass_min = self.pass_min.min(dead_at);
            }
        }
    }

    /// Keys from least to most recently used (LRU), or in eviction-queue
    /// order (S3-FIFO: small queue then main queue, oldest first).
    pub(crate) fn keys_in_eviction_order(&self) -> Vec<&K> {
        let mut keys = Vec::with_capacity(self.len());
        for list in &self.lists {
            let mut cur = list.tail;
            for _ in 0..list.len {
                let Some(e) = self.entry(cur) else { break };
                keys.push(&e.key);
                cur = e.prev;
            }
        }
        keys
    }

    /// Evicts one entry chosen by the policy. `protect` (the entry just
    /// written) is only taken when nothing else is left.
    fn evict_one(
        &mut self,
        now: u64,
        timing: Timing,
        protect: u32,
        out: &mut Removals<K, V>,
    ) -> bool {
        let victim = match self.policy {
            Policy::Lru => self.lists[SMALL].tail,
            Policy::S3Fifo => self.s3_victim(protect),
        };
        if victim == NIL {
            return false;
        }
        let cause = match self.entry(victim) {
            Some(e) if !e.is_live(now, timing) => RemovalCause::Expired,
            _ => RemovalCause::Size,
        };
        if self.policy == Policy::S3Fifo
            && let Some(e) = self.entry(victim)
            && e.list == Queue::Small
        {
            let hash = e.hash;
            self.ghost_push(hash);
        }
        match self.remove_idx(victim, cause) {
            Some(r) => {
                out.push(r);
                true
            }
            None => false,
        }
    }

    /// S3-FIFO: take from the small queue while it is over its share (an
    /// entry read since insertion is promoted to main instead), otherwise
    /// from main (an entry read since its last pass gets another round).
    /// `protect` is rotated past; if it is alone in the chosen queue the
    /// other queue is used.
    fn s3_victim(&mut self, protect: u32) -> u32 {
        let mut force: Option<usize> = None;
        // Every iteration moves an entry small -> main, lowers a main
        // entry's counter, or rotates `protect` once per queue: bounded.
        loop {
            let (small, main) = (self.lists[SMALL], self.lists[MAIN]);
            let list = match force {
                Some(l) => l,
                None if small.tail != NIL
                    && (small.weight > self.small_target || main.tail == NIL) =>
                {
                    SMALL
                }
                None if main.tail != NIL => MAIN,
                None => return NIL,
            };
            let Some(l) = self.lists.get(list).copied() else {
                return NIL;
            };
            let tail = l.tail;
            if tail == NIL {
                return NIL;
            }
            if tail == protect {
                if l.len > 1 {
                    self.rotate(list);
                    continue;
                }
                let other = 1 - list;
                if force.is_some() || self.lists[other].tail == NIL {
                    return NIL;
                }
                force = Some(other);
                continue;
            }
            let Some(e) = self.entry(tail) else {
                return NIL;
            };
            let f = e.freq.load(Ordering::Relaxed);
            if f == 0 {
                return tail;
            }
            if list == SMALL {
                // Read since insertion: promote to main with a clean counter.
                e.freq.store(0, Ordering::Relaxed);
                self.unlink(tail);
                self.push_head(tail, MAIN);
            } else {
                // One more round, one count fewer. The list is circular, so
                // moving the tail to the head writes no entry.
                e.freq.store(f - 1, Ordering::Relaxed);
                self.rotate(MAIN);
            }
        }
    }

    fn ghost_push(&mut self, hash: u64) {
        // Grow with the resident set (never shrink): GHOST_PERCENT of the
        // entries, rounded up to a power of two; old hashes are kept.
        let want = (self.len() * GHOST_PERCENT / 100).next_power_of_two();
        if want > self.ghost.len() {
            let mut grown = vec![0; want];
            for &h in self.ghost.iter().filter(|&&h| h != 0) {
                if let Some(slot) = grown.get_mut(Self::ghost_slot(h, want)) {
                    *slot = h;
                }
            }
            self.ghost = grown;
        }
        let i = Self::ghost_slot(hash, self.ghost.len());
        if let Some(slot) = self.ghost.get_mut(i) {
            *slot = hash | 1;
        }
    }

    fn ghost_slot(hash: u64, len: usize) -> usize {
        (hash as usize) & (len - 1)
    }

    /// True (and forgets it) if `hash` was recently evicted from small.
    /// Hashes are stored with the low bit set, so 0 means empty; the slot
    /// index uses the low bits too, so two hashes that share a slot and
    /// differ only in bit 0 are told apart by the index, not the value.
    fn ghost_take(&mut self, hash: u64) -> bool {
        let i = Self::ghost_slot(hash, self.ghost.len());
        match self.ghost.get_mut(i) {
            Some(slot) if *slot == hash | 1 => {
                *slot = 0;
                true
            }
            _ => false,
        }
    }

    fn remove_idx(&mut self, idx: u32, cause: RemovalCause) -> Option<Removed<K, V>> {
        let (hash, weight) = self.entry(idx).map(|e| (e.hash, e.weight))?;
        self.unlink(idx);
        if let Ok(found) = self.table.find_entry(hash, |&i| i == idx) {
            found.remove();
        }
        let e = self.slab.get_mut(idx as usize)?.take()?;
        self.free.push(idx);
        self.weight -= u64::from(weight);
        Some((e.key, e.value, cause))
    }

    // The lists are circular (head.prev == tail, tail.next == head), so
    // giving the tail another round is `rotate`: two index writes in the
    // list header and no write to any entry.

    fn unlink(&mut self, idx: u32) {
        let Some(e) = self.entry(idx) else { return };
        let (prev, next, list, weight) = (e.prev, e.next, e.list.index(), e.weight);
        let Some(l) = self.lists.get(list).copied() else {
            return;
        };
        if l.len <= 1 {
            if let Some(l) = self.lists.get_mut(list) {
                *l = List::EMPTY;
            }
        } else {
            if let Some(p) = self.entry_mut(prev) {
                p.next = next;
            }
            if let Some(n) = self.entry_mut(next) {
                n.prev = prev;
            }
            if let Some(l) = self.lists.get_mut(list) {
                if l.head == idx {
                    l.head = next;
                }
                if l.tail == idx {
                    l.tail = prev;
                }
                l.weight -= u64::from(weight);
                l.len -= 1;
            }
        }
        if let Some(e) = self.entry_mut(idx) {
            e.prev = NIL;
            e.next = NIL;
        }
    }

    fn push_head(&mut self, idx: u32, list: usize) {
        let Some(l) = self.lists.get(list).copied() else {
            return;
        };
        let Some(e) = self.entry_mut(idx) else { return };
        let weight = e.weight;
        e.list = Queue::of(list);
        if l.len == 0 {
            e.prev = idx;
            e.next = idx;
            if let Some(l) = self.lists.get_mut(list) {
                *l = List {
                    head: idx,
                    tail: idx,
                    weight: u64::from(weight),
                    len: 1,
                };
            }
            return;
        }
        e.prev = l.tail;
        e.next = l.head;
        if let Some(h) = self.entry_mut(l.head) {
            h.prev = idx;
        }
        if let Some(t) = self.entry_mut(l.tail) {
            t.next = idx;
        }
        if let Some(l) = self.lists.get_mut(list) {
            l.head = idx;
            l.weight += u64::from(weight);
            l.len += 1;
        }
    }

    /// Moves the tail to the head (the tail's predecessor becomes the tail).
    fn rotate(&mut self, list: usize) {
        let Some(l) = self.lists.get(list).copied() else {
            return;
        };
        if l.len <= 1 {
            return;
        }
        let Some(prev) = self.entry(l.tail).map(|e| e.prev) else {
            return;
        };
        if let Some(l) = self.lists.get_mut(list) {
            l.head = l.tail;
            l.tail = prev;
        }
    }
}
