//! Admission: at most as many database calls in flight as the adaptive
//! concurrency limit allows (stratum-pool's `ConcurrencyLimit`, between
//! `pool.limit.min` and `pool.max_size`, following the database's latency),
//! then a pool slot (there is always one: the pool is sized to the limit's
//! maximum, so the limit, not the pool or the driver, decides). A caller
//! that finds the limit reached waits at most `pool.limit.queue_interval`
//! (`pool.limit.queue_delay_target` when the queue is standing) and then
//! fails `Overloaded`; reads then fall back on a stale cached copy like
//! with an open breaker. A freed slot goes to the longest waiter while it
//! has waited at most the target, else to the newest (adaptive LIFO), so
//! under overload the calls that succeed are not the ones that waited
//! longest. With `pool.limit.enabled = false` the limit stays
//! at `pool.max_size`, with the same bounded wait. Configured by the pool's
//! own `PoolConfig`: the `[pool]` section.
//!
//! Over MongoDB the slots are the pool crate's `MongoPool`: the driver's own
//! connection pool is sized from the same settings (so an admitted call
//! never queues inside the driver) and its CMAP events are counted. Over any
//! other store the slots are a plain `ManagedPool` of unit slots.

#[cfg(feature = "mongodb")]
use stratum_pool::Pool;
use stratum_pool::{
    ConcurrencyLimit, Lease, LimitPermit, LimitStatus, ManagedPool, Manager, PoolError, PoolStats,
    Status,
};

pub use crate::config::POOL_NAME;
use crate::config::{PoolSettings, Section};
use crate::{ConfigError, RepositoryError};

/// Makes admission slots for a store that has no pool of its own.
#[derive(Debug)]
pub struct Slots;

/// Creating a unit slot cannot fail.
#[derive(Debug, thiserror::Error)]
#[error("unreachable: a slot is a unit")]
pub struct NoError;

impl Manager for Slots {
    type Resource = ();
    type Error = NoError;

    async fn create(&self) -> Result<(), NoError> {
        Ok(())
    }
}

/// A pool that could not be built, as a configuration error naming the
/// `pool` section (credentials masked: the driver may quote its URI).
pub(crate) fn build_error(e: stratum_pool::BuildError) -> ConfigError {
    match e {
        stratum_pool::BuildError::Config(e) => e.within("pool"),
        other => ConfigError::invalid("pool", stratum_store::uri::scrub(&other.to_string())),
    }
}

/// The admission pool in front of the store.
#[derive(Clone)]
pub(crate) enum Backend {
    Slots(ManagedPool<Slots>),
    #[cfg(feature = "mongodb")]
    Mongo(stratum_pool::MongoPool),
}

/// The limit, then the pool.
#[derive(Clone)]
pub(crate) struct Admission {
    limit: ConcurrencyLimit,
    pool: Backend,
}

/// A held slot; dropping it frees the pool slot, then ends the call for
/// the limit (its latency is a sample).
pub(crate) struct Slot {
    #[allow(dead_code)]
    slot: PoolSlot,
    #[allow(dead_code)]
    permit: LimitPermit,
}

enum PoolSlot {
    Slots(#[allow(dead_code)] Lease<Slots>),
    #[cfg(feature = "mongodb")]
    Mongo(#[allow(dead_code)] stratum_pool::MongoLease),
}

fn overloaded<E: std::fmt::Display>(e: PoolError<E>) -> RepositoryError {
    RepositoryError::Overloaded {
        message: e.to_string(),
    }
}

impl Admission {
    /// The limit over `pool`, configured by the `pool` section. It times
    /// calls on the system clock, not the stack's: the stack's default
    /// clock ticks every millisecond, coarser than a database call on a
    /// local network, and the no-load latency must resolve those.
    fn over(pool: Backend, settings: &PoolSettings) -> Admission {
        let limit = ConcurrencyLimit::new(settings, std::sync::Arc::new(stratum_pool::SystemClock));
        Admission { limit, pool }
    }

    /// Unit slots sized by the `pool` section, the pool's own configuration.
    pub(crate) fn slots(section: &Section<PoolSettings>) -> Result<Admission, ConfigError> {
        let pool = ManagedPool::builder(Slots)
            .config(section.settings.clone())
            .build()
            .map_err(build_error)?;
        Ok(Admission::over(Backend::Slots(pool), &section.settings))
    }

    /// The driver's pool (sized from the same section) under the limit.
    #[cfg(feature = "mongodb")]
    pub(crate) fn mongo(pool: stratum_pool::MongoPool, settings: &PoolSettings) -> Admission {
        Admission::over(Backend::Mongo(pool), settings)
    }

    /// Waits (bounded) for the limit, then for a pool slot (at most the
    /// acquire timeout; the pool is sized to the limit's maximum, so this
    /// wait is rare).
    pub(crate) async fn admit(&self) -> Result<Slot, RepositoryError> {
        let permit = self
            .limit
            .acquire()
            .await
            .map_err(|e| RepositoryError::Overloaded {
                message: e.to_string(),
            })?;
        let slot = match &self.pool {
            Backend::Slots(pool) => pool.get().await.map(PoolSlot::Slots).map_err(overloaded)?,
            #[cfg(feature = "mongodb")]
            Backend::Mongo(pool) => pool.get().await.map(PoolSlot::Mongo).map_err(overloaded)?,
        };
        Ok(Slot { slot, permit })
    }

    pub(crate) fn status(&self) -> Status {
        match &self.pool {
            Backend::Slots(pool) => pool.status(),
            #[cfg(feature = "mongodb")]
            Backend::Mongo(pool) => pool.status(),
        }
    }

    pub(crate) fn stats(&self) -> PoolStats {
        match &self.pool {
            Backend::Slots(pool) => pool.stats(),
            #[cfg(feature = "mongodb")]
            Backend::Mongo(pool) => pool.stats(),
        }
    }

    pub(crate) fn limit(&self) -> LimitStatus {
        self.limit.status()
    }
}
