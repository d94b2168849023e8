//! The `stratum` command's library half: the workloads of `stratum demo`
//! and `stratum load`, the one driver that runs them, and their reports,
//! so the binary and the tests drive the same code.
//!
//! - [`demo`]: an LLM-application workload on the embedded store or MongoDB;
//! - [`load`]: thousands of tasks against MongoDB, then every acknowledged
//!   write read back;
//! - [`coherence`]: two processes over one server, and how long a write in
//!   one takes to reach the other's reads;
//! - [`report`]: the figures both print (throughput, latency percentiles per
//!   operation, errors by kind, the cache, the pool, the breaker).
//!
//! This crate is the only one in the workspace that depends on clap and
//! indicatif; the `stratum` library a service links has neither.
#![deny(missing_docs)]

pub mod coherence;
pub mod demo;
mod driver;
pub mod load;
mod popularity;
pub mod report;
