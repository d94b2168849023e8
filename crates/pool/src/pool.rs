//! The one small trait every Stratum pool implements.

use std::future::Future;

use crate::Status;

/// A bounded pool: get a lease (waiting at most the configured timeout),
/// look at its status, resize it.
///
/// A lease returns its object to the pool when dropped. Implementations:
/// [`crate::ManagedPool`] (any resource, on deadpool) and, with the `mongodb`
/// feature, `MongoPool` (admission slots for database operations).
///
/// ```
/// use stratum_pool::{ManagedPool, Manager, Pool};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("never")]
/// struct Never;
///
/// struct Buffers;
/// impl Manager for Buffers {
///     type Resource = Vec<u8>;
///     type Error = Never;
///     async fn create(&self) -> Result<Vec<u8>, Never> {
///         Ok(Vec::with_capacity(4096))
///     }
/// }
///
/// // Generic code sees only the trait.
/// async fn use_one<P: Pool>(pool: &P) -> bool {
///     pool.get().await.is_ok()
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = ManagedPool::builder(Buffers).min_size(1).max_size(8).build().unwrap();
/// assert!(use_one(&pool).await);
/// assert_eq!(pool.resize(100), 8); // clamped to [min_size, max_size]
/// # }
/// ```
pub trait Pool: Send + Sync {
    /// What `get` hands out; dropping it gives the object back.
    type Lease: Send;
    /// Why `get` can fail.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Gets a lease, waiting at most the configured acquire timeout. The
    /// caller's location is recorded for leak reports.
    #[track_caller]
    fn get(&self) -> impl Future<Output = Result<Self::Lease, Self::Error>> + Send;

    /// The pool's accounting right now.
    fn status(&self) -> Status;

    /// Sets the limit on live objects, clamped to `[min_size, max_size]`;
    /// returns the limit applied. Excess idle objects are retired at once,
    /// excess leased ones when they come back.
    fn resize(&self, limit: usize) -> usize;
}
