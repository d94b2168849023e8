//! Shared test helpers: a counting manager whose objects report their own
//! drops, so tests see exactly how many resources are alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use stratum_pool::{ManagedPool, Manager};

#[derive(Debug, thiserror::Error)]
#[error("the test backend refused")]
pub(crate) struct Refused;

/// Counts live resources; `fail_checks` makes every health check fail.
#[derive(Clone, Default)]
pub(crate) struct Counting {
    pub(crate) live: Arc<AtomicUsize>,
    pub(crate) created: Arc<AtomicUsize>,
    pub(crate) checks: Arc<AtomicUsize>,
    pub(crate) fail_checks: Arc<AtomicBool>,
}

pub(crate) struct Resource {
    pub(crate) id: usize,
    live: Arc<AtomicUsize>,
}

impl Drop for Resource {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Counting {
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
    pub(crate) fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }
}

impl Manager for Counting {
    type Resource = Resource;
    type Error = Refused;

    async fn create(&self) -> Result<Resource, Refused> {
        self.live.fetch_add(1, Ordering::SeqCst);
        let id = self.created.fetch_add(1, Ordering::SeqCst);
        Ok(Resource {
            id,
            live: Arc::clone(&self.live),
        })
    }

    async fn check(&self, _: &mut Resource) -> Result<(), Refused> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        if self.fail_checks.load(Ordering::SeqCst) {
            Err(Refused)
        } else {
            Ok(())
        }
    }
}

/// Leases `n` objects from `pool`, then returns them in the order they were
/// leased (the newest comes back last); their ids.
pub(crate) async fn lease_and_return(pool: &ManagedPool<Counting>, n: usize) -> Vec<usize> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.get().await.unwrap());
    }
    let ids = held.iter().map(|lease| lease.id).collect();
    for lease in held {
        drop(lease);
    }
    ids
}
