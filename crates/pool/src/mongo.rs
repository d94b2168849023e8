//! MongoDB (feature `mongodb`): a pool whose leases are admission slots for
//! database operations, with the driver's own connection pool configured
//! from the same settings and made visible through its CMAP events.
//!
//! Overload then waits in Stratum, bounded by `acquire_timeout`, counted and
//! timed, instead of invisibly in the driver's wait queue: admission slots
//! never exceed the driver's `max_pool_size`, so an admitted operation finds
//! a connection (or a slot to open one) without queueing inside the driver.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge, Histogram};
use mongodb::Client;
use mongodb::bson::doc;
use mongodb::event::EventHandler;
use mongodb::event::cmap::{CmapEvent, ConnectionCheckoutFailedReason, ConnectionClosedReason};
use mongodb::options::ClientOptions;

use crate::metrics as names;
use crate::{
    BuildError, ConnectionStatus, Lease, ManagedPool, Manager, Pool, PoolConfig, PoolError,
    PoolStats, Status,
};

/// Makes admission slots: each is a clone of the shared client (cheap: the
/// client is a handle to one driver pool).
pub struct MongoSlots {
    client: Client,
    ping_on_checkout: bool,
}

impl Manager for MongoSlots {
    type Resource = Client;
    type Error = mongodb::error::Error;

    async fn create(&self) -> Result<Client, mongodb::error::Error> {
        Ok(self.client.clone())
    }

    /// With `ping_on_checkout`, a slot idle past the validation window pings
    /// the server before it admits an operation.
    async fn check(&self, client: &mut Client) -> Result<(), mongodb::error::Error> {
        if self.ping_on_checkout {
            client
                .database("admin")
                .run_command(doc! { "ping": 1 })
                .await?;
        }
        Ok(())
    }
}

/// A lease on one admission slot: derefs to the [`Client`]; run one
/// operation with it, then drop it.
pub type MongoLease = Lease<MongoSlots>;

/// Settings for [`MongoPool::connect`]: the pool's own, never the server's.
///
/// No connection string: the caller parses it into the driver's
/// [`ClientOptions`] (in Stratum, `stratum_store::MongoStore::client_options`,
/// next to the workspace's one credential redaction), so this crate neither
/// parses nor prints a URI and `Debug` has no secret to show.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongoConfig {
    /// Admission and driver pool settings: `min_size`/`max_size` become the
    /// driver's `minPoolSize`/`maxPoolSize`, `idle_timeout` its
    /// `maxIdleTimeMS`, `create_timeout` its `connectTimeoutMS`.
    pub pool: PoolConfig,
    /// The driver's `maxConnecting`: connections opened at once. Default: 2.
    pub max_connecting: u32,
    /// Ping the server when a slot idle past the validation window is
    /// checked out. Default: false (the driver checks its connections).
    pub ping_on_checkout: bool,
}

impl Default for MongoConfig {
    fn default() -> Self {
        MongoConfig {
            pool: PoolConfig::default(),
            max_connecting: 2,
            ping_on_checkout: false,
        }
    }
}

/// The driver's connection pool as its CMAP events tell it: counts and
/// latency, mirrored to the `stratum_mongo_connections_*` metrics.
pub struct ConnectionEvents {
    created: AtomicU64,
    closed: AtomicU64,
    closed_idle: AtomicU64,
    checked_out: AtomicU64,
    checked_in: AtomicU64,
    checkout_failures: AtomicU64,
    open_gauge: Gauge,
    in_use_gauge: Gauge,
    created_total: Counter,
    closed_total: [Counter; 6],
    failures_total: [Counter; 3],
    checkout_seconds: Histogram,
}

impl fmt::Debug for ConnectionEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConnectionEvents")
            .field(&self.status())
            .finish()
    }
}

const CLOSE_REASONS: [&str; 6] = ["idle", "stale", "error", "dropped", "pool_closed", "other"];
const FAILURE_REASONS: [&str; 3] = ["timeout", "connection_error", "other"];

impl ConnectionEvents {
    /// A listener reporting under the `pool` label `pool`.
    pub fn new(pool: &str) -> ConnectionEvents {
        let label = || [("pool", pool.to_owned())];
        ConnectionEvents {
            created: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            closed_idle: AtomicU64::new(0),
            checked_out: AtomicU64::new(0),
            checked_in: AtomicU64::new(0),
            checkout_failures: AtomicU64::new(0),
            open_gauge: metrics::gauge!(names::MONGO_CONNECTIONS_OPEN, &label()),
            in_use_gauge: metrics::gauge!(names::MONGO_CONNECTIONS_IN_USE, &label()),
            created_total: metrics::counter!(names::MONGO_CONNECTIONS_CREATED, &label()),
            closed_total: CLOSE_REASONS.map(|reason| {
                metrics::counter!(names::MONGO_CONNECTIONS_CLOSED, "pool" => pool.to_owned(), "reason" => reason)
            }),
            failures_total: FAILURE_REASONS.map(|reason| {
                metrics::counter!(names::MONGO_CONNECTIONS_CHECKOUT_FAILURES, "pool" => pool.to_owned(), "reason" => reason)
            }),
            checkout_seconds: metrics::histogram!(names::MONGO_CONNECTIONS_CHECKOUT_DURATION, &label()),
        }
    }

    /// The driver's connections now.
    pub fn status(&self) -> ConnectionStatus {
        let load = |a: &AtomicU64| a.load(Ordering::Acquire);
        let (created, closed) = (load(&self.created), load(&self.closed));
        let (out, back) = (load(&self.checked_out), load(&self.checked_in));
        let open = created.saturating_sub(closed);
        let in_use = out.saturating_sub(back).min(open);
        ConnectionStatus {
            open,
            in_use,
            idle: open - in_use,
            created,
            closed,
            closed_idle: load(&self.closed_idle),
            checkout_failures: load(&self.checkout_failures),
            checked_out: out,
        }
    }

    /// An event handler for `ClientOptions::cmap_event_handler`.
    pub fn handler(self: &Arc<Self>) -> EventHandler<CmapEvent> {
        let events = Arc::clone(self);
        EventHandler::callback(move |event| events.record(&event))
    }

    fn record(&self, event: &CmapEvent) {
        match event {
            CmapEvent::ConnectionCreated(_) => {
                self.created.fetch_add(1, Ordering::AcqRel);
                self.created_total.increment(1);
            }
            CmapEvent::ConnectionClosed(e) => {
                self.closed.fetch_add(1, Ordering::AcqRel);
                let reason = match e.reason {
                    ConnectionClosedReason::Idle => {
                        self.closed_idle.fetch_add(1, Ordering::AcqRel);
                        0
                    }
                    ConnectionClosedReason::Stale => 1,
                    ConnectionClosedReason::Error => 2,
                    ConnectionClosedReason::Dropped => 3,
                    ConnectionClosedReason::PoolClosed => 4,
                    _ => 5,
                };
                self.closed_total[reason].increment(1);
            }
            CmapEvent::ConnectionCheckedOut(e) => {
                self.checked_out.fetch_add(1, Ordering::AcqRel);
                self.checkout_seconds.record(e.duration.as_secs_f64());
            }
            CmapEvent::ConnectionCheckedIn(_) => {
                self.checked_in.fetch_add(1, Ordering::AcqRel);
            }
            CmapEvent::ConnectionCheckoutFailed(e) => {
                self.checkout_failures.fetch_add(1, Ordering::AcqRel);
                let reason = match e.reason {
                    ConnectionCheckoutFailedReason::Timeout => 0,
                    ConnectionCheckoutFailedReason::ConnectionError => 1,
                    _ => 2,
                };
                self.failures_total[reason].increment(1);
                self.checkout_seconds.record(e.duration.as_secs_f64());
            }
            _ => return,
        }
        let status = self.status();
        self.open_gauge.set(status.open as f64);
        self.in_use_gauge.set(status.in_use as f64);
    }
}

/// Admission slots for MongoDB operations over one driver client.
///
/// ```no_run
/// use stratum_pool::{MongoConfig, MongoPool, Pool};
/// use mongodb::bson::{doc, Document};
/// use mongodb::options::ClientOptions;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let options = ClientOptions::parse("mongodb://127.0.0.1:27017").await?;
/// let pool = MongoPool::connect(options, MongoConfig::default())?;
/// let client = pool.get().await?; // waits at most acquire_timeout
/// client.database("app").collection::<Document>("prompts").insert_one(doc! { "n": 1 }).await?;
/// drop(client); // the slot is free again
/// println!("driver connections open: {:?}", pool.status().connections.map(|c| c.open));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MongoPool {
    slots: ManagedPool<MongoSlots>,
    events: Arc<ConnectionEvents>,
}

impl fmt::Debug for MongoPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoPool")
            .field("status", &self.status())
            .finish()
    }
}

impl MongoPool {
    /// A client on `options` with `config`'s pool settings (it connects
    /// lazily, as the driver does).
    pub fn connect(options: ClientOptions, config: MongoConfig) -> Result<MongoPool, BuildError> {
        MongoPool::with_options(
            options,
            config.pool,
            config.max_connecting,
            config.ping_on_checkout,
        )
    }

    /// Builds on existing client options: the pool settings override the
    /// driver's pool options and a CMAP listener is installed.
    pub fn with_options(
        mut options: ClientOptions,
        pool: PoolConfig,
        max_connecting: u32,
        ping_on_checkout: bool,
    ) -> Result<MongoPool, BuildError> {
        pool.validate()?;
        let as_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        options.min_pool_size = Some(as_u32(pool.min_size));
        options.max_pool_size = Some(as_u32(pool.max_size));
        options.max_connecting = Some(max_connecting.max(1));
        options.max_idle_time = pool.idle_timeout;
        options.connect_timeout = Some(pool.create_timeout);
        let events = Arc::new(ConnectionEvents::new(&pool.name));
        options.cmap_event_handler = Some(events.handler());
        let client = Client::with_options(options).map_err(BuildError::Driver)?;
        let slots = ManagedPool::builder(MongoSlots {
            client,
            ping_on_checkout,
        })
        .config(pool)
        .build()?;
        Ok(MongoPool { slots, events })
    }

    /// The driver's connections, from its CMAP events.
    pub fn connections(&self) -> ConnectionStatus {
        self.events.status()
    }

    /// Event totals of the admission pool.
    pub fn stats(&self) -> PoolStats {
        self.slots.stats()
    }

    /// Closes admission and waits up to `timeout` for slots to come back.
    pub async fn drain(&self, timeout: std::time::Duration) -> bool {
        self.slots.drain(timeout).await
    }
}

impl Pool for MongoPool {
    type Lease = MongoLease;
    type Error = PoolError<mongodb::error::Error>;

    #[track_caller]
    fn get(&self) -> impl Future<Output = Result<MongoLease, Self::Error>> + Send {
        self.slots.get()
    }

    fn status(&self) -> Status {
        Status {
            connections: Some(self.events.status()),
            ..self.slots.status()
        }
    }

    fn resize(&self, limit: usize) -> usize {
        self.slots.resize(limit)
    }
}
