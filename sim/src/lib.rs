//! The Fathom simulator: builds a turmoil simulation from a scenario, runs the workload and the
//! fault schedule, records the history and judges it.
//!
//! - [`scenario`]: the scenario file format.
//! - [`run`]: one seeded run; [`faults`] applies the schedule; [`workload`] holds the client
//!   processes; [`io`] plugs turmoil's network and disk into the core's driver.
//! - [`trace`], [`summary`]: what a run records and reports; [`chart`]: deterministic SVG charts
//!   for reports.
//! - [`cli`]: the `fathom` commands; [`production`] (feature `production`): the real broker.

pub mod chart;
pub mod cli;
pub mod experiment;
pub mod faults;
pub mod io;
pub mod metrics;
#[cfg(feature = "production")]
pub mod production;
pub mod report;
pub mod resources;
pub mod run;
pub mod scenario;
pub mod summary;
pub mod trace;
pub mod workload;
