//! Admission: at most `pool.max_size` database calls in flight, waiting at
//! most `pool.acquire_timeout` for a slot (stratum-pool, configured by its
//! own `PoolConfig`: the `[pool]` section).
//!
//! Over MongoDB the slots are the pool crate's `MongoPool`: the driver's own
//! connection pool is sized from the same settings (so an admitted call
//! never queues inside the driver) and its CMAP events are counted. Over any
//! other store the slots are a plain `ManagedPool` of unit slots.

#[cfg(feature = "mongodb")]
use stratum_pool::Pool;
use stratum_pool::{Lease, ManagedPool, Manager, PoolError, PoolStats, Status};

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
pub(crate) enum Admission {
    Slots(ManagedPool<Slots>),
    #[cfg(feature = "mongodb")]
    Mongo(stratum_pool::MongoPool),
}

/// A held slot; dropping it frees the slot.
pub(crate) enum Slot {
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
    /// Unit slots sized by the `pool` section, the pool's own configuration.
    pub(crate) fn slots(section: &Section<PoolSettings>) -> Result<Admission, ConfigError> {
        let pool = ManagedPool::builder(Slots)
            .config(section.settings.clone())
            .build()
            .map_err(build_error)?;
        Ok(Admission::Slots(pool))
    }

    /// Waits for a slot, at most the acquire timeout.
    pub(crate) async fn admit(&self) -> Result<Slot, RepositoryError> {
        match self {
            Admission::Slots(pool) => pool.get().await.map(Slot::Slots).map_err(overloaded),
            #[cfg(feature = "mongodb")]
            Admission::Mongo(pool) => pool.get().await.map(Slot::Mongo).map_err(overloaded),
        }
    }

    pub(crate) fn status(&self) -> Status {
        match self {
            Admission::Slots(pool) => pool.status(),
            #[cfg(feature = "mongodb")]
            Admission::Mongo(pool) => pool.status(),
        }
    }

    pub(crate) fn stats(&self) -> PoolStats {
        match self {
            Admission::Slots(pool) => pool.stats(),
            #[cfg(feature = "mongodb")]
            Admission::Mongo(pool) => pool.stats(),
        }
    }
}
