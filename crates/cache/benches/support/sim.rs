//! Yardsticks computed by the bench, independent of the cache under test:
//! the reference S3-FIFO (libCacheSim's), an exact LRU, and Belady's
//! optimum. Each replays a trace read-through (a miss inserts) and returns
//! the hits.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};

/// S3-FIFO as libCacheSim (the authors' simulator, `S3FIFO.c`) runs it at
/// its defaults, written for obviousness, not speed. This is the
/// reference a user checks against (the `libcachesim` Python package
/// prints the same hits on every shared trace and size; see "Two reads
/// to promote; the reference is libCacheSim's" in docs/cache-tuning.md):
/// * a small FIFO of 10 % of the capacity (rounded down), a main FIFO of
///   the rest, and a ghost FIFO of keys of 90 % (rounded down);
/// * a hit adds one to the key's counter (not capped);
/// * a miss found in the ghost goes to main; any other miss goes to small,
///   except while the cache fills for the first time: once small is full
///   and nothing was evicted yet, misses go to main;
/// * room is made from main when main is over its share or small is
///   empty, else from small;
/// * small's oldest entry moves to main (counter cleared) if it was read
///   at least twice since insertion, else its key goes to the ghost and
///   it is evicted;
/// * main's oldest entry read since its last pass gets another round with
///   min(counter, 3) - 1, else it is evicted.
pub(crate) fn reference_s3fifo(trace: &[u64], capacity: usize) -> u64 {
    const MOVE_TO_MAIN: u32 = 2;
    let small_cap = capacity / 10;
    let main_cap = capacity - small_cap;
    let ghost_cap = capacity * 9 / 10;
    if small_cap == 0 {
        // libCacheSim admits nothing then (an entry must be smaller than
        // the small queue).
        return 0;
    }
    let mut freq: HashMap<u64, u32> = HashMap::new();
    let mut small: VecDeque<u64> = VecDeque::new();
    let mut main: VecDeque<u64> = VecDeque::new();
    let mut ghost: VecDeque<u64> = VecDeque::new();
    let mut in_ghost: HashSet<u64> = HashSet::new();
    let mut has_evicted = false;
    let mut hits = 0;
    for &k in trace {
        if let Some(f) = freq.get_mut(&k) {
            *f += 1;
            hits += 1;
            continue;
        }
        let ghost_hit = in_ghost.remove(&k);
        if ghost_hit {
            ghost.retain(|&g| g != k);
        }
        while small.len() + main.len() >= capacity {
            has_evicted = true;
            if main.len() > main_cap || small.is_empty() {
                while let Some(t) = main.pop_front() {
                    let f = freq.get(&t).copied().unwrap_or(0);
                    if f >= 1 {
                        freq.insert(t, f.min(3) - 1);
                        main.push_back(t);
                    } else {
                        freq.remove(&t);
                        break;
                    }
                }
            } else {
                while let Some(t) = small.pop_front() {
                    if freq.get(&t).copied().unwrap_or(0) >= MOVE_TO_MAIN {
                        freq.insert(t, 0);
                        main.push_back(t);
                    } else {
                        freq.remove(&t);
                        if ghost.len() >= ghost_cap
                            && let Some(g) = ghost.pop_front()
                        {
                            in_ghost.remove(&g);
                        }
                        if ghost_cap > 0 {
                            ghost.push_back(t);
                            in_ghost.insert(t);
                        }
                        break;
                    }
                }
            }
        }
        freq.insert(k, 0);
        if ghost_hit || (!has_evicted && small.len() >= small_cap) {
            main.push_back(k);
        } else {
            small.push_back(k);
        }
    }
    hits
}

/// Exact LRU: last use per key, and keys ordered by last use.
pub(crate) fn lru(trace: &[u64], capacity: usize) -> u64 {
    let mut last: HashMap<u64, usize> = HashMap::new();
    let mut order: BTreeMap<usize, u64> = BTreeMap::new();
    let mut hits = 0;
    for (t, &k) in trace.iter().enumerate() {
        if let Some(prev) = last.insert(k, t) {
            order.remove(&prev);
            hits += 1;
        } else if order.len() >= capacity
            && let Some((_, victim)) = order.pop_first()
        {
            last.remove(&victim);
        }
        order.insert(t, k);
    }
    hits
}

/// Belady's optimum (MIN, with bypass): on a miss, of the resident keys and
/// the new one, the one used again furthest in the future goes. The upper
/// bound of any policy that sees the same requests.
pub(crate) fn belady(trace: &[u64], capacity: usize) -> u64 {
    // next[i]: the index of the next request for trace[i] (usize::MAX: none).
    let mut next = vec![usize::MAX; trace.len()];
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (i, &k) in trace.iter().enumerate().rev() {
        if let Some(&j) = seen.get(&k) {
            next[i] = j;
        }
        seen.insert(k, i);
    }
    // Resident keys with their next use; a max-heap of (next use, key),
    // entries made stale by a later use skipped when popped.
    let mut resident: HashMap<u64, usize> = HashMap::new();
    let mut heap: BinaryHeap<(usize, u64)> = BinaryHeap::new();
    let mut hits = 0;
    for (i, &k) in trace.iter().enumerate() {
        let n = next[i];
        if resident.contains_key(&k) {
            hits += 1;
        } else if resident.len() >= capacity {
            // Drop the furthest of the residents, unless k itself is further.
            while let Some(&(far, victim)) = heap.peek() {
                if resident.get(&victim) != Some(&far) {
                    heap.pop();
                    continue;
                }
                break;
            }
            match heap.peek() {
                Some(&(far, victim)) if far > n => {
                    heap.pop();
                    resident.remove(&victim);
                }
                _ => continue, // bypass: k is needed later than all of them
            }
        }
        resident.insert(k, n);
        heap.push((n, k));
    }
    hits
}
