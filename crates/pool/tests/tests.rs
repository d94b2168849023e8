//! stratum-pool's integration tests, one binary, a module per concern.
// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Helpers: a manager that counts its live resources.
mod support;
// The accounting model: random get/drop/discard/resize/clock sequences.
mod accounting;
// The acquire timeout kept by the sweeper: bounds, service, shutdown.
mod deadline;
// 64 tasks on a pool of 4: no deadlock, every task a lease or a timeout.
mod exhaustion;
// Waiters are served in arrival order.
mod fairness;
// Idle and lifetime reaping, the health-check skip window, leak detection.
mod lifecycle;
// The ready stack: reuse inside the skip window, and every way out of it.
mod ready;
// The adaptive limit inside a real pool; close and drain.
mod sizing;
// MongoDB admission and CMAP events against the real test server.
#[cfg(feature = "mongodb")]
mod mongo;
