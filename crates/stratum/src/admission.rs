//! Admission: at most `pool.max_size` database calls in flight, waiting at
//! most `pool.acquire_timeout` for a slot (stratum-pool).
//!
//! Over MongoDB the slots are the pool crate's `MongoPool`: the driver's own
//! connection pool is sized from the same settings (so an admitted call
//! never queues inside the driver) and its CMAP events are counted. Over any
//! other store the slots are a plain `ManagedPool` of unit slots.

#[cfg(feature = "mongodb")]
use stratum_pool::Pool;
use stratum_pool::{Lease, ManagedPool, Manager, PoolError, PoolStats, Status};

use crate::config::sections::PoolConfig;
use crate::{ConfigError, RepositoryError};

/// The name of the admission pool (its `pool` metric label).
pub const POOL_NAME: &str = "store";

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

/// The pool configuration for `section`, validated by the pool itself;
/// a refusal names the facade's field. Adaptive sizing is off: the limit
/// is `pool.max_size`, the number the user chose.
///
/// ```
/// use stratum::config::sections::PoolConfig;
///
/// let section = PoolConfig { max_size: 8, ..Default::default() };
/// let config = stratum::admission::pool_config(&section).unwrap();
/// assert_eq!((config.max_size, config.name.as_str()), (8, "store"));
/// ```
pub fn pool_config(section: &PoolConfig) -> Result<stratum_pool::PoolConfig, ConfigError> {
    let config = stratum_pool::PoolConfig {
        name: POOL_NAME.to_owned(),
        min_size: section.min_idle as usize,
        max_size: section.max_size as usize,
        acquire_timeout: section.acquire_timeout,
        idle_timeout: Some(section.idle_timeout),
        max_lifetime: Some(section.max_lifetime),
        adaptive: stratum_pool::AdaptiveConfig {
            enabled: false,
            ..Default::default()
        },
        ..stratum_pool::PoolConfig::default()
    };
    config.validate().map_err(|e| {
        let field = match e.field {
            "min_size" => "pool.min_idle",
            "max_size" => "pool.max_size",
            "acquire_timeout" => "pool.acquire_timeout",
            "idle_timeout" => "pool.idle_timeout",
            "max_lifetime" => "pool.max_lifetime",
            other => other,
        };
        ConfigError::invalid(field, e.reason)
    })?;
    Ok(config)
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
    pub(crate) fn slots(section: &PoolConfig) -> Result<Admission, ConfigError> {
        let pool = ManagedPool::builder(Slots)
            .config(pool_config(section)?)
            .build()
            .map_err(|e| ConfigError::invalid("pool", e.to_string()))?;
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
