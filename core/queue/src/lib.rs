//! Fathom's queue: the broker, replication, log and client state machines, with no I/O.
//!
//! Nothing in this crate opens a socket or a file, reads a clock, spawns a thread or draws
//! unseeded randomness; it depends on no async runtime or I/O crate, so Cargo keeps it that way.
//! The async shell that runs these machines is `fathom-driver`; the history format and checker
//! are `fathom-history`. Each state machine takes its inputs through `handle_*`
//! calls that carry the current [`time::Instant`], and hands its outputs (messages to send,
//! storage operations, timers, client results) to whoever drives it through `poll_*` calls. The
//! same state machines therefore run under the turmoil simulator, under real tokio networking,
//! and under any other checker that can call a function.

pub mod broker;
pub mod client;
pub mod config;
pub mod group;
pub mod ids;
pub mod log;
pub mod protocol;
pub mod replication;
pub mod rng;
pub mod share;
#[cfg(test)]
pub mod testkit;
pub mod time;
