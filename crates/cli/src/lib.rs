//! The `stratum` command's library half: the demo workload and its report,
//! so the binary and the tests drive the same code.
//!
//! This crate is the only one in the workspace that depends on clap and
//! indicatif; the `stratum` library a service links has neither.
#![deny(missing_docs)]

pub mod demo;
