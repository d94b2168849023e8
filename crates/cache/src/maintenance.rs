//! The optional background task: reclaims expired entries and publishes
//! metrics on a fixed interval (feature `tokio`).

use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::cache::ShardedCache;

/// Stops the background maintenance task when dropped.
#[derive(Debug)]
#[must_use = "dropping the handle stops the maintenance task"]
pub struct MaintenanceHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MaintenanceHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<K, V> ShardedCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Spawns a tokio task that every `interval` reclaims expired entries
    /// ([`ShardedCache::run_pending_tasks`]) and publishes metrics
    /// ([`ShardedCache::publish_metrics`]). It holds only a weak reference:
    /// it ends when the cache is dropped or the handle is.
    ///
    /// Must be called inside a tokio runtime.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// use stratum_cache::CacheBuilder;
    /// use std::time::Duration;
    ///
    /// let cache = CacheBuilder::<u32, u32>::new(100).build().unwrap();
    /// let _maintenance = cache.spawn_maintenance(Duration::from_secs(1));
    /// # });
    /// ```
    pub fn spawn_maintenance(&self, interval: Duration) -> MaintenanceHandle {
        let weak: Weak<_> = Arc::downgrade(self.inner());
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                inner.run_pending_tasks();
                inner.publish_metrics();
            }
        });
        MaintenanceHandle { task }
    }
}
