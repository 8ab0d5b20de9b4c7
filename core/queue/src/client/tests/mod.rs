//! Tests that drive the real client state machines over a virtual clock.
//!
//! [`real_cluster`] runs them against the real brokers of [`crate::testkit`]. [`harness`] holds a
//! fake broker (answers from a map of stamped batches) and `Net`, which carries transmits to it
//! and answers back, with per-request fates (drop, delay, canned reply, disconnect) chosen by the
//! test: for brokers that must misbehave on cue (see its docs). Each other file checks one
//! behaviour; [`groups`] runs several consumers of one group against the real brokers.

mod consumer;
mod groups;
mod harness;
mod idempotence;
mod journal;
mod lanes;
mod metadata;
mod partitioner;
mod producer;
mod real_cluster;
