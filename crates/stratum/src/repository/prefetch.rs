//! A repository's predictive pre-loading: after a read by id, the ids the
//! cache's [`Predictor`] expects next are loaded in one `_id: {$in: [...]}`
//! query, through the same breaker and admission as any read, within a
//! share of the repository's read calls, and never while the breaker is
//! not closed or callers wait for admission (docs/prefetch.md).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bson::Bson;
use metrics::Counter;
use stratum_cache::{Predictor, PrefetchConfig};

use crate::ConfigError;
use crate::stack::Layers;

/// Counter: prefetch calls by collection and outcome (`ok`, `error`).
pub(crate) const CALLS: &str = "stratum_repository_prefetch_calls_total";
/// Counter: prefetches not made, by collection and reason (`breaker`,
/// `admission`, `share`, `in_flight`).
pub(crate) const SKIPPED: &str = "stratum_repository_prefetch_skipped_total";

/// A tracked id: the cache key (hashed and compared) and the id itself
/// (what the query asks for).
#[derive(Debug, Clone)]
pub(crate) struct Id {
    pub(crate) key: Vec<u8>,
    pub(crate) id: Bson,
}

impl PartialEq for Id {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Id {}

impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

/// Why a prefetch was not made (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The breaker is open or half-open.
    Breaker,
    /// Callers are waiting for admission.
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
    pub(crate) predictor: Predictor<Id>,
    pub(crate) config: PrefetchConfig,
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Database calls by reads by id (the demand), and by prefetches.
    demand_calls: AtomicU64,
    prefetch_calls: AtomicU64,
    calls: [Counter; 2],
    skipped: [Counter; 4],
}

impl Prefetcher {
    /// The prefetcher `config` asks for, or none when it is off.
    pub(crate) fn new(
        config: &PrefetchConfig,
        collection: &'static str,
    ) -> Result<Option<Prefetcher>, ConfigError> {
        if !config.enabled {
            return Ok(None);
        }
        let predictor = Predictor::new(config).map_err(|e| e.within("prefetch").within("cache"))?;
        Ok(Some(Prefetcher {
            predictor,
            config: config.clone(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight)),
            demand_calls: AtomicU64::new(0),
            prefetch_calls: AtomicU64::new(0),
            calls: ["ok", "error"]
                .map(|r| metrics::counter!(CALLS, "collection" => collection, "result" => r)),
            skipped: Skip::ALL.map(
                |s| metrics::counter!(SKIPPED, "collection" => collection, "reason" => s.as_str()),
            ),
        }))
    }

    /// A read by id is about to call the database.
    pub(crate) fn demand_call(&self) {
        self.demand_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The calls so far: (demand, prefetch).
    pub(crate) fn calls(&self) -> (u64, u64) {
        (
            self.demand_calls.load(Ordering::Relaxed),
            self.prefetch_calls.load(Ordering::Relaxed),
        )
    }

    /// The flow a read belongs to: the tokio task running it (one caller's
    /// sequence of reads), else the thread.
    pub(crate) fn context() -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        match tokio::task::try_id() {
            Some(id) => id.hash(&mut hasher),
            None => std::thread::current().id().hash(&mut hasher),
        }
        hasher.finish()
    }

    /// Whether a prefetch may start now, and a permit for it: the breaker
    /// closed, nobody waiting for admission, prefetches within their share
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
        if let Some(admission) = &layers.admission
            && (admission.limit().waiting > 0 || admission.status().waiting > 0)
        {
            return Err(refused(Skip::Admission));
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
            let key = Id {
                key: stratum_store::id_key(&id),
                id,
            };
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
