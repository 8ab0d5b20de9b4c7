//! What the driver counts of the work it does, for benchmarks (`fathom bench-sim`). Counting
//! changes nothing the state machines see, so it is the same in every home and harness.
//!
//! The counters are per thread: a simulation runs every host on the thread that runs it, so a
//! benchmark reads the counter before and after a run, and runs on other threads (`explore`'s
//! jobs) do not mix in.

use std::cell::Cell;

thread_local! {
    static FRAMES_DELIVERED: Cell<u64> = const { Cell::new(0) };
}

/// One frame was decoded from a connection, to be handed to its state machine.
pub(crate) fn frame_delivered() {
    FRAMES_DELIVERED.with(|c| c.set(c.get().wrapping_add(1)));
}

/// Frames decoded on this thread since it started, by every process's connections (broker
/// and client, requests, responses, replication and pings alike): the one definition of an
/// *event* in `fathom bench-sim`'s events per second.
pub fn frames_delivered() -> u64 {
    FRAMES_DELIVERED.with(Cell::get)
}

/// Counts `frames` delivered on another thread as delivered on this one: for a harness that
/// runs each simulation on a thread of its own (madsim) and reports to the thread that asked.
pub fn add_frames_delivered(frames: u64) {
    FRAMES_DELIVERED.with(|c| c.set(c.get().wrapping_add(frames)));
}
