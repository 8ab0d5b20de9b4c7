//! Fathom's core: the broker, replication, log and client state machines, with no I/O.
//!
//! Nothing in this crate outside [`driver`] opens a socket or a file, reads a clock, spawns a
//! thread or draws unseeded randomness. Each state machine takes its inputs through `handle_*`
//! calls that carry the current [`time::Instant`], and hands its outputs (messages to send,
//! storage operations, timers, client results) to whoever drives it through `poll_*` calls. The
//! same state machines therefore run under the turmoil simulator, under real tokio networking,
//! and under any other checker that can call a function.

pub mod broker;
pub mod client;
pub mod config;
pub mod driver;
pub mod history;
pub mod ids;
pub mod log;
pub mod protocol;
pub mod replication;
pub mod rng;
#[cfg(test)]
pub mod testkit;
pub mod time;
