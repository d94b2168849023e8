//! [`FaultyStore`]: a store wrapper that injects latency and errors, to show
//! (and test) the breaker opening, stale reads and recovery.
//!
//! The faults come from a seeded generator, so a run is repeatable; the plan
//! can be changed while the store is in use (a demo turns faults on for a
//! phase, then off to show the recovery).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bson::{Bson, Document, RawDocumentBuf};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Filter, GroupRow, Grouping, IndexSpec, Query, Store, StoreError, Update};

/// What to inject into each call.
///
/// ```
/// use std::time::Duration;
/// use stratum_store::FaultPlan;
///
/// let plan = FaultPlan { error_rate: 0.5, latency: Duration::from_millis(20), ..FaultPlan::none() };
/// assert!(plan.is_active());
/// assert!(!FaultPlan::none().is_active());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    /// The share of calls, in [0, 1], that fail with
    /// [`StoreError::Unavailable`] (as a dead server would).
    pub error_rate: f64,
    /// Latency added to every call before it runs.
    pub latency: Duration,
    /// The share of calls, in [0, 1], that get `slow_latency` instead.
    pub slow_rate: f64,
    /// The latency of a slow call.
    pub slow_latency: Duration,
}

impl FaultPlan {
    /// No faults: every call goes straight to the inner store.
    pub const fn none() -> FaultPlan {
        FaultPlan {
            error_rate: 0.0,
            latency: Duration::ZERO,
            slow_rate: 0.0,
            slow_latency: Duration::ZERO,
        }
    }

    /// Every call fails.
    pub const fn outage() -> FaultPlan {
        FaultPlan {
            error_rate: 1.0,
            ..FaultPlan::none()
        }
    }

    /// Whether the plan injects anything.
    pub fn is_active(&self) -> bool {
        self.error_rate > 0.0 || !self.latency.is_zero() || self.slow_rate > 0.0
    }
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan::none()
    }
}

struct State {
    plan: FaultPlan,
    rng: StdRng,
}

/// Wraps a store and injects faults according to a [`FaultPlan`].
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// use stratum_store::bson::doc;
/// use stratum_store::{FaultPlan, FaultyStore, MemoryStore, Store};
///
/// let store = FaultyStore::new(MemoryStore::new(), 42);
/// store.insert("notes", doc! { "_id": 1 }).await?;
/// store.set_plan(FaultPlan::outage());
/// assert!(store.get("notes", &1.into()).await.unwrap_err().is_breaker_failure());
/// store.set_plan(FaultPlan::none());
/// assert!(store.get("notes", &1.into()).await?.is_some());
/// assert_eq!(store.injected_errors(), 1);
/// # Ok::<(), stratum_store::StoreError>(())
/// # }).unwrap();
/// ```
pub struct FaultyStore<S> {
    inner: S,
    state: Arc<Mutex<State>>,
    injected: AtomicU64,
}

impl<S> std::fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyStore")
            .field("plan", &self.state.lock().plan)
            .field("injected_errors", &self.injected.load(Ordering::Relaxed))
            .finish()
    }
}

impl<S: Store> FaultyStore<S> {
    /// Wraps `inner` with no faults planned; `seed` makes the faults repeatable.
    pub fn new(inner: S, seed: u64) -> FaultyStore<S> {
        FaultyStore {
            inner,
            state: Arc::new(Mutex::new(State {
                plan: FaultPlan::none(),
                rng: StdRng::seed_from_u64(seed),
            })),
            injected: AtomicU64::new(0),
        }
    }

    /// Replaces the plan; calls already waiting keep theirs.
    pub fn set_plan(&self, plan: FaultPlan) {
        self.state.lock().plan = plan;
    }

    /// The plan in force.
    pub fn plan(&self) -> FaultPlan {
        self.state.lock().plan
    }

    /// How many errors were injected so far.
    pub fn injected_errors(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Draws this call's fault: a delay, and whether it fails.
    async fn fault(&self, operation: &'static str) -> Result<(), StoreError> {
        let (delay, fail) = {
            let mut state = self.state.lock();
            let plan = state.plan;
            if !plan.is_active() {
                return Ok(());
            }
            let slow = plan.slow_rate > 0.0 && state.rng.random_bool(plan.slow_rate.min(1.0));
            let fail = plan.error_rate > 0.0 && state.rng.random_bool(plan.error_rate.min(1.0));
            let delay = if slow {
                plan.slow_latency
            } else {
                plan.latency
            };
            (delay, fail)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if fail {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Unavailable {
                message: format!("injected fault in `{operation}`"),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Store> Store for FaultyStore<S> {
    async fn get(&self, collection: &str, id: &Bson) -> Result<Option<Document>, StoreError> {
        self.fault("get").await?;
        self.inner.get(collection, id).await
    }

    // The encoded paths are forwarded too, so a wrapped `MongoStore` keeps
    // decoding and encoding once (the trait's defaults would go through a
    // `Document` and back).
    async fn get_raw(
        &self,
        collection: &str,
        id: &Bson,
    ) -> Result<Option<RawDocumentBuf>, StoreError> {
        self.fault("get").await?;
        self.inner.get_raw(collection, id).await
    }

    async fn insert_raw(
        &self,
        collection: &str,
        document: RawDocumentBuf,
    ) -> Result<Bson, StoreError> {
        self.fault("insert").await?;
        self.inner.insert_raw(collection, document).await
    }

    async fn find(&self, collection: &str, query: &Query) -> Result<Vec<Document>, StoreError> {
        self.fault("find").await?;
        self.inner.find(collection, query).await
    }

    async fn insert(&self, collection: &str, document: Document) -> Result<Bson, StoreError> {
        self.fault("insert").await?;
        self.inner.insert(collection, document).await
    }

    async fn update(
        &self,
        collection: &str,
        id: &Bson,
        update: &Update,
    ) -> Result<Document, StoreError> {
        self.fault("update").await?;
        self.inner.update(collection, id, update).await
    }

    async fn upsert(
        &self,
        collection: &str,
        id: &Bson,
        update: &Update,
    ) -> Result<Document, StoreError> {
        self.fault("upsert").await?;
        self.inner.upsert(collection, id, update).await
    }

    async fn delete(&self, collection: &str, id: &Bson) -> Result<bool, StoreError> {
        self.fault("delete").await?;
        self.inner.delete(collection, id).await
    }

    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        self.fault("count").await?;
        self.inner.count(collection, filter).await
    }

    async fn ensure_index(&self, collection: &str, index: &IndexSpec) -> Result<(), StoreError> {
        self.fault("ensure_index").await?;
        self.inner.ensure_index(collection, index).await
    }

    async fn indexes(&self, collection: &str) -> Result<Vec<IndexSpec>, StoreError> {
        self.fault("indexes").await?;
        self.inner.indexes(collection).await
    }

    async fn group(
        &self,
        collection: &str,
        grouping: &Grouping,
    ) -> Result<Vec<GroupRow>, StoreError> {
        self.fault("group").await?;
        self.inner.group(collection, grouping).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.fault("ping").await?;
        self.inner.ping().await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}
