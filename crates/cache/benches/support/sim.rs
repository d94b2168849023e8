//! Yardsticks computed by the bench, independent of the cache under test:
//! a plain reference S3-FIFO, an exact LRU, and Belady's optimum. Each
//! replays a trace read-through (a miss inserts) and returns the hits.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};

/// S3-FIFO as the paper (Yang et al., SOSP 2023, Algorithm 1) describes it,
/// written for obviousness, not speed: a small FIFO of 10 % of the
/// capacity, a main FIFO with a 2-bit access counter and reinsertion, and a
/// ghost FIFO of keys as long as the main queue. An entry read while in
/// the small queue moves to main when it reaches the small queue's end;
/// a missed key found in the ghost goes straight to main.
pub(crate) fn reference_s3fifo(trace: &[u64], capacity: usize) -> u64 {
    let small_cap = (capacity / 10).max(1);
    let main_cap = capacity.saturating_sub(small_cap).max(1);
    let mut freq: HashMap<u64, u8> = HashMap::new();
    let mut small: VecDeque<u64> = VecDeque::new();
    let mut main: VecDeque<u64> = VecDeque::new();
    let mut ghost: VecDeque<u64> = VecDeque::new();
    let mut in_ghost: HashSet<u64> = HashSet::new();
    let mut hits = 0;
    for &k in trace {
        if let Some(f) = freq.get_mut(&k) {
            *f = (*f + 1).min(3);
            hits += 1;
            continue;
        }
        // Make room, then insert.
        while small.len() + main.len() >= capacity {
            if small.len() >= small_cap || main.is_empty() {
                // Evict from small: read entries move to main.
                while let Some(t) = small.pop_front() {
                    if freq.get(&t).copied().unwrap_or(0) > 0 {
                        freq.insert(t, 0);
                        main.push_back(t);
                    } else {
                        freq.remove(&t);
                        ghost.push_back(t);
                        in_ghost.insert(t);
                        while ghost.len() > main_cap {
                            if let Some(g) = ghost.pop_front() {
                                in_ghost.remove(&g);
                            }
                        }
                        break;
                    }
                }
            } else {
                // Evict from main: read entries get another round.
                while let Some(t) = main.pop_front() {
                    let f = freq.get(&t).copied().unwrap_or(0);
                    if f > 0 {
                        freq.insert(t, f - 1);
                        main.push_back(t);
                    } else {
                        freq.remove(&t);
                        break;
                    }
                }
            }
        }
        freq.insert(k, 0);
        if in_ghost.remove(&k) {
            ghost.retain(|&g| g != k);
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
