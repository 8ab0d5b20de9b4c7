//! The client processes of a workload, shared by the simulator and the production commands.
//!
//! - [`spec`]: what a producer or consumer is asked to do (a scenario's `[[producers]]` and
//!   `[[consumers]]` tables, and the production commands' options).
//! - [`clients`]: the producer, consumer and final-read processes, each driving a
//!   `fathom-queue` client state machine through the `fathom-driver` shell.
//! - [`trace`]: what those processes record (the history, the send journal, notes) and the
//!   trace hash over it. The clock is the caller's: simulated time or the wall clock.

pub mod clients;
pub mod spec;
pub mod trace;
