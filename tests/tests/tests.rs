//! Cross-crate integration tests, one binary (as ripgrep does): each module is
//! one concern and talks to the real test server over TCP.

// The canary: the official driver against the test server, proving the plumbing.
mod canary;

// The circuit breaker guarding real driver calls (stratum-breaker).
mod breaker_mongodb;

// Fault drills: each starts its own server process and kills, freezes or
// slows it while the facade is in use.
mod chaos;

// The fault-injecting TCP proxy (stratum_tests::proxy) against the real server:
// each fault does what it says, and surfaces as its typed kind through the stack.
mod proxy;

// A primary step-down through the stack: writes fail as `not_primary`, reads
// are served, the breaker stays closed.
mod step_down;

// Server-returned errors from the PyPI build's fail points (`failCommand`):
// a refused write is typed and final, and the breaker does not count it.
mod fail_points;
