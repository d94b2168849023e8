//! A point-in-time view of a pool: how many objects, how many idle, in use,
//! waited for, and the current limit.

/// A snapshot of a pool's accounting.
///
/// `idle + in_use == size` always holds and `size <= max` always holds;
/// after a shrink, `size` may sit above `limit` until leases come back.
///
/// ```
/// use stratum_pool::{ManagedPool, Pool, Manager};
/// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
/// # struct Numbers;
/// # impl Manager for Numbers {
/// #     type Resource = u32; type Error = Never;
/// #     async fn create(&self) -> Result<u32, Never> { Ok(7) }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = ManagedPool::builder(Numbers).min_size(0).max_size(4).build().unwrap();
/// let lease = pool.get().await.unwrap();
/// let status = pool.status();
/// assert_eq!((status.size, status.in_use, status.idle), (1, 1, 0));
/// drop(lease);
/// assert_eq!(pool.status().idle, 1);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Status {
    /// Live objects: idle plus in use.
    pub size: usize,
    /// Objects sitting in the pool, ready to hand out.
    pub idle: usize,
    /// Objects handed out (or being prepared for a caller).
    pub in_use: usize,
    /// Tasks inside `get` that do not hold an object yet.
    pub waiting: usize,
    /// The current limit on live objects (moved by resizing; 0 once closed).
    pub limit: usize,
    /// The configured floor of the limit.
    pub min: usize,
    /// The configured ceiling of the limit.
    pub max: usize,
    /// The backend's own connections, when the backend reports them (the
    /// MongoDB driver's pool, through its CMAP events); `None` otherwise.
    pub connections: Option<ConnectionStatus>,
}

/// The backend's real connections, as its own connection pool reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ConnectionStatus {
    /// Connections open now (created and not yet closed).
    pub open: u64,
    /// Connections checked out of the driver's pool now.
    pub in_use: u64,
    /// Connections open and idle in the driver's pool now.
    pub idle: u64,
    /// Connections created since start.
    pub created: u64,
    /// Connections closed since start, for any reason.
    pub closed: u64,
    /// Connections closed since start because they sat idle too long.
    pub closed_idle: u64,
    /// Checkouts that failed since start (timeout or connection error).
    pub checkout_failures: u64,
    /// Successful checkouts since start.
    pub checked_out: u64,
}

/// Running totals of a pool's events since it was built, readable without a
/// metrics recorder (the same events also go to the `metrics` facade).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Objects created.
    pub created: u64,
    /// Objects retired for sitting idle past the idle timeout.
    pub retired_idle_timeout: u64,
    /// Objects retired for passing their maximum lifetime.
    pub retired_max_lifetime: u64,
    /// Objects retired for failing their health check.
    pub retired_health_check: u64,
    /// Objects retired because the limit went down.
    pub retired_shrink: u64,
    /// Objects retired because the pool closed.
    pub retired_closed: u64,
    /// Objects discarded by their lease holder.
    pub retired_discarded: u64,
    /// Leases reported as held past the leak threshold.
    pub leaks: u64,
    /// `get` calls that timed out.
    pub timeouts: u64,
    /// Times the limit went up.
    pub resized_up: u64,
    /// Times the limit went down.
    pub resized_down: u64,
}

impl PoolStats {
    /// Objects retired for any cause.
    pub fn retired(&self) -> u64 {
        self.retired_idle_timeout
            + self.retired_max_lifetime
            + self.retired_health_check
            + self.retired_shrink
            + self.retired_closed
            + self.retired_discarded
    }
}
