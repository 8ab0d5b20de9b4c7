//! Tests that drive the real client state machines against a fake cluster over a virtual clock.
//!
//! [`harness`] holds the fake broker (answers from a map of stamped batches) and [`Net`], which
//! carries transmits to it and answers back, with per-request fates (drop, delay, canned reply,
//! disconnect) chosen by the test. Each other file checks one behaviour.

mod consumer;
mod harness;
mod idempotence;
mod journal;
mod lanes;
mod metadata;
mod partitioner;
mod producer;
