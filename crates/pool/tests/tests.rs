//! stratum-pool's integration tests, one binary, a module per concern.
// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Helpers: a manager that counts its live resources.
mod support;
// The accounting model: random get/drop/discard/resize/clock sequences.
mod accounting;
// 64 tasks on a pool of 4: no deadlock, every task a lease or a timeout.
mod exhaustion;
// Waiters are served in arrival order.
mod fairness;
// Idle and lifetime reaping, the health-check skip window, leak detection.
mod lifecycle;
// The adaptive limit inside a real pool; close and drain.
mod sizing;
// MongoDB admission and CMAP events against the real test server.
#[cfg(feature = "mongodb")]
mod mongo;
