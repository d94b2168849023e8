//! stratum-models integration tests, one binary, one module per concern.

// Helpers outside `#[test]` functions fail the test the same way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// BSON round trips of every model (proptest).
mod roundtrip;
// Prompt-cache keys fuzzed against a reference normalization (proptest).
mod cache_key;
// Validation before the database: typed errors, never a panic.
mod validation;
// (The tests against the real server moved with the database code: see
// crates/stratum/tests/repository.rs, `models_on_the_server`.)

mod support;
