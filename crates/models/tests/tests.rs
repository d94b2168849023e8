//! stratum-models integration tests, one binary, one module per concern.

// Helpers outside `#[test]` functions fail the test the same way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// BSON round trips of every model (proptest).
mod roundtrip;
// Prompt-cache keys fuzzed against a reference normalization (proptest).
mod cache_key;
// Validation before the database: typed errors, never a panic.
mod validation;
// Against the real test server: indexes, duplicate keys, refused writes, lookups.
#[cfg(feature = "mongodb")]
mod mongo;
// Against the real test server: TTL expiry (slow: waits for the 60 s sweep).
#[cfg(feature = "mongodb")]
mod ttl;

mod support;
