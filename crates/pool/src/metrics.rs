//! Metric names and the pre-registered handles the pool reports through.
//!
//! Handles are registered once per pool (labels built once), so the hot path
//! of `get` only touches an already-resolved counter or histogram.

use metrics::{Counter, Gauge, Histogram, Unit};

/// Gauge: live objects (idle + in use). Label `pool`.
pub const POOL_SIZE: &str = "stratum_pool_size";
/// Gauge: idle objects. Label `pool`.
pub const POOL_IDLE: &str = "stratum_pool_idle";
/// Gauge: objects handed out. Label `pool`.
pub const POOL_IN_USE: &str = "stratum_pool_in_use";
/// Gauge: tasks waiting in `get`. Label `pool`.
pub const POOL_WAITERS: &str = "stratum_pool_waiters";
/// Gauge: the current limit on live objects. Label `pool`.
pub const POOL_LIMIT: &str = "stratum_pool_limit";
/// Histogram, seconds: how long a successful `get` took. Label `pool`.
pub const POOL_ACQUIRE_DURATION: &str = "stratum_pool_acquire_duration_seconds";
/// Counter: `get` calls that timed out. Labels `pool`, `step` (`wait`, `create`, `recycle`).
pub const POOL_TIMEOUTS: &str = "stratum_pool_timeouts_total";
/// Counter: objects created. Label `pool`.
pub const POOL_CREATED: &str = "stratum_pool_created_total";
/// Counter: objects handed out again after a return. Label `pool`.
pub const POOL_RECYCLED: &str = "stratum_pool_recycled_total";
/// Counter: objects retired. Labels `pool`, `cause` (see [`crate::RetireCause`]).
pub const POOL_RETIRED: &str = "stratum_pool_retired_total";
/// Counter: leases held longer than the leak-detection threshold. Label `pool`.
pub const POOL_LEAKS: &str = "stratum_pool_leaks_total";
/// Counter: limit changes. Labels `pool`, `direction` (`up`, `down`).
pub const POOL_RESIZES: &str = "stratum_pool_resizes_total";

/// Gauge: the adaptive concurrency limit now. Label `pool`.
pub const LIMIT: &str = "stratum_pool_concurrency_limit";
/// Gauge, seconds: the measured no-load latency the limit compares against.
/// Label `pool`.
pub const LIMIT_NO_LOAD_LATENCY: &str = "stratum_pool_no_load_latency_seconds";
/// Gauge, calls per second: the goodput (completed calls per second) of the
/// last window the limit judged; its hill climber follows this over the
/// window's mean latency (power). Label `pool`.
pub const LIMIT_GOODPUT: &str = "stratum_pool_goodput";
/// Histogram, seconds: how long admitted callers waited for a slot under
/// the limit (callers admitted at once are not recorded). Label `pool`.
pub const LIMIT_QUEUE_DELAY: &str = "stratum_pool_queue_delay_seconds";
/// Counter: callers turned away by the limit. Labels `pool`, `cause`
/// (`standing_queue`, `queue_timeout`).
pub const LIMIT_REJECTIONS: &str = "stratum_pool_rejections_total";

/// Gauge: MongoDB driver connections open. Label `pool`.
pub const MONGO_CONNECTIONS_OPEN: &str = "stratum_mongo_connections_open";
/// Gauge: MongoDB driver connections checked out. Label `pool`.
pub const MONGO_CONNECTIONS_IN_USE: &str = "stratum_mongo_connections_in_use";
/// Counter: MongoDB driver connections created. Label `pool`.
pub const MONGO_CONNECTIONS_CREATED: &str = "stratum_mongo_connections_created_total";
/// Counter: MongoDB driver connections closed. Labels `pool`, `reason`
/// (`idle`, `stale`, `error`, `dropped`, `pool_closed`, `other`).
pub const MONGO_CONNECTIONS_CLOSED: &str = "stratum_mongo_connections_closed_total";
/// Counter: MongoDB driver checkouts that failed. Labels `pool`, `reason`
/// (`timeout`, `connection_error`, `other`).
pub const MONGO_CONNECTIONS_CHECKOUT_FAILURES: &str =
    "stratum_mongo_connections_checkout_failures_total";
/// Histogram, seconds: how long the driver took to check a connection out.
/// Label `pool`.
pub const MONGO_CONNECTIONS_CHECKOUT_DURATION: &str =
    "stratum_mongo_connections_checkout_duration_seconds";

/// Registers descriptions and units of every metric above with the
/// installed recorder. Optional: call it once after installing a recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        POOL_SIZE,
        Unit::Count,
        "Live pooled objects (idle + in use)."
    );
    describe_gauge!(POOL_IDLE, Unit::Count, "Idle pooled objects.");
    describe_gauge!(POOL_IN_USE, Unit::Count, "Pooled objects handed out.");
    describe_gauge!(
        POOL_WAITERS,
        Unit::Count,
        "Tasks waiting for a pooled object."
    );
    describe_gauge!(
        POOL_LIMIT,
        Unit::Count,
        "Current limit on live pooled objects."
    );
    describe_histogram!(
        POOL_ACQUIRE_DURATION,
        Unit::Seconds,
        "Time to get a pooled object."
    );
    describe_gauge!(LIMIT, Unit::Count, "Adaptive concurrency limit.");
    describe_gauge!(
        LIMIT_NO_LOAD_LATENCY,
        Unit::Seconds,
        "Measured no-load latency of the calls under the limit."
    );
    describe_gauge!(
        LIMIT_GOODPUT,
        Unit::CountPerSecond,
        "Calls completed per second in the last window the concurrency limit judged."
    );
    describe_histogram!(
        LIMIT_QUEUE_DELAY,
        Unit::Seconds,
        "Time admitted callers waited under the concurrency limit."
    );
    describe_counter!(
        LIMIT_REJECTIONS,
        Unit::Count,
        "Callers turned away by the concurrency limit, by cause."
    );
    describe_counter!(POOL_TIMEOUTS, Unit::Count, "Pool gets that timed out.");
    describe_counter!(POOL_CREATED, Unit::Count, "Pooled objects created.");
    describe_counter!(
        POOL_RECYCLED,
        Unit::Count,
        "Pooled objects handed out again."
    );
    describe_counter!(
        POOL_RETIRED,
        Unit::Count,
        "Pooled objects retired, by cause."
    );
    describe_counter!(
        POOL_LEAKS,
        Unit::Count,
        "Leases held past the leak threshold."
    );
    describe_counter!(
        POOL_RESIZES,
        Unit::Count,
        "Pool limit changes, by direction."
    );
    describe_gauge!(
        MONGO_CONNECTIONS_OPEN,
        Unit::Count,
        "MongoDB driver connections open."
    );
    describe_gauge!(
        MONGO_CONNECTIONS_IN_USE,
        Unit::Count,
        "MongoDB driver connections checked out."
    );
    describe_counter!(
        MONGO_CONNECTIONS_CREATED,
        Unit::Count,
        "MongoDB driver connections created."
    );
    describe_counter!(
        MONGO_CONNECTIONS_CLOSED,
        Unit::Count,
        "MongoDB driver connections closed, by reason."
    );
    describe_counter!(
        MONGO_CONNECTIONS_CHECKOUT_FAILURES,
        Unit::Count,
        "MongoDB driver connection checkouts that failed, by reason."
    );
    describe_histogram!(
        MONGO_CONNECTIONS_CHECKOUT_DURATION,
        Unit::Seconds,
        "Time the MongoDB driver took to check out a connection."
    );
}

/// Why an object left the pool; the `cause` label of [`POOL_RETIRED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetireCause {
    /// Idle longer than `idle_timeout`.
    IdleTimeout,
    /// Older than `max_lifetime`.
    MaxLifetime,
    /// Failed (or timed out) its health check on checkout.
    HealthCheck,
    /// Removed because the limit went down.
    Shrink,
    /// Removed because the pool closed.
    Closed,
    /// Discarded by the holder of its lease.
    Discarded,
}

impl RetireCause {
    pub(crate) const ALL: [RetireCause; 6] = [
        RetireCause::IdleTimeout,
        RetireCause::MaxLifetime,
        RetireCause::HealthCheck,
        RetireCause::Shrink,
        RetireCause::Closed,
        RetireCause::Discarded,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RetireCause::IdleTimeout => "idle_timeout",
            RetireCause::MaxLifetime => "max_lifetime",
            RetireCause::HealthCheck => "health_check",
            RetireCause::Shrink => "shrink",
            RetireCause::Closed => "closed",
            RetireCause::Discarded => "discarded",
        }
    }

    fn index(self) -> usize {
        match self {
            RetireCause::IdleTimeout => 0,
            RetireCause::MaxLifetime => 1,
            RetireCause::HealthCheck => 2,
            RetireCause::Shrink => 3,
            RetireCause::Closed => 4,
            RetireCause::Discarded => 5,
        }
    }
}

/// One pool's resolved metric handles.
pub(crate) struct PoolMetrics {
    pub(crate) size: Gauge,
    pub(crate) idle: Gauge,
    pub(crate) in_use: Gauge,
    pub(crate) waiters: Gauge,
    pub(crate) limit: Gauge,
    pub(crate) acquire: Histogram,
    pub(crate) timeouts: [Counter; 3],
    pub(crate) created: Counter,
    pub(crate) recycled: Counter,
    retired: [Counter; 6],
    pub(crate) leaks: Counter,
    pub(crate) resized_up: Counter,
    pub(crate) resized_down: Counter,
}

impl PoolMetrics {
    pub(crate) fn new(pool: &str) -> PoolMetrics {
        let label = || [("pool", pool.to_owned())];
        let timeout = |step: &'static str| metrics::counter!(POOL_TIMEOUTS, "pool" => pool.to_owned(), "step" => step);
        PoolMetrics {
            size: metrics::gauge!(POOL_SIZE, &label()),
            idle: metrics::gauge!(POOL_IDLE, &label()),
            in_use: metrics::gauge!(POOL_IN_USE, &label()),
            waiters: metrics::gauge!(POOL_WAITERS, &label()),
            limit: metrics::gauge!(POOL_LIMIT, &label()),
            acquire: metrics::histogram!(POOL_ACQUIRE_DURATION, &label()),
            timeouts: [timeout("wait"), timeout("create"), timeout("recycle")],
            created: metrics::counter!(POOL_CREATED, &label()),
            recycled: metrics::counter!(POOL_RECYCLED, &label()),
            retired: RetireCause::ALL.map(|cause| {
                metrics::counter!(POOL_RETIRED, "pool" => pool.to_owned(), "cause" => cause.as_str())
            }),
            leaks: metrics::counter!(POOL_LEAKS, &label()),
            resized_up: metrics::counter!(POOL_RESIZES, "pool" => pool.to_owned(), "direction" => "up"),
            resized_down: metrics::counter!(POOL_RESIZES, "pool" => pool.to_owned(), "direction" => "down"),
        }
    }

    pub(crate) fn retired(&self, cause: RetireCause) -> &Counter {
        &self.retired[cause.index()]
    }
}
