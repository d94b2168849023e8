//! What a pool needs to know about its resource: how to create one and how
//! to check that one is still healthy.

use std::future::Future;

/// Creates and health-checks the pooled resource (deadpool's `Manager`,
/// with the check optional).
///
/// ```
/// use stratum_pool::Manager;
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("connection refused")]
/// struct Refused;
///
/// struct Sockets { next: AtomicU32 }
///
/// impl Manager for Sockets {
///     type Resource = u32; // stands in for a connection
///     type Error = Refused;
///     async fn create(&self) -> Result<u32, Refused> {
///         Ok(self.next.fetch_add(1, Ordering::Relaxed))
///     }
///     async fn check(&self, socket: &mut u32) -> Result<(), Refused> {
///         if *socket == 13 { Err(Refused) } else { Ok(()) }
///     }
/// }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The pooled resource (a connection, a client, a buffer).
    type Resource: Send + 'static;
    /// Why creating or checking a resource fails.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Creates a new resource. Bounded by `create_timeout`.
    fn create(&self) -> impl Future<Output = Result<Self::Resource, Self::Error>> + Send;

    /// Checks a resource on checkout; an error retires it and `get` moves on
    /// to another. Skipped when the resource came back less than
    /// `validation_skip_window` ago; bounded by `recycle_timeout`. The
    /// default accepts every resource.
    fn check(
        &self,
        resource: &mut Self::Resource,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = resource;
        async { Ok(()) }
    }
}
