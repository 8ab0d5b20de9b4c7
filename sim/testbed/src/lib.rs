//! The Fathom simulator: builds a turmoil simulation from a scenario, runs the workload and the
//! fault schedule, records the history and judges it.
//!
//! - [`scenario`]: the scenario file format.
//! - [`run`]: one seeded run; [`faults`] applies the schedule (what it did: [`fault_log`]);
//!   [`view`]: what brokers share with both; [`io`] plugs turmoil's network
//!   and disk into the driver (`fathom-driver`), and [`disk_faults`] puts the `disk_full` and `disk_eio`
//!   faults in front of either harness's disk; the client processes are `fathom-workload`'s.
//! - [`harness`]: turmoil or madsim; [`madsim_run`] (built with `--cfg madsim`) runs the same
//!   driver and workload on madsim, with [`model_disk`] for its disk.
//! - [`explore`]: many seeds on a few threads, shards of a seed range and their merge;
//!   [`bench`]: the simulator's speed (`fathom bench-sim`).
//! - [`shrink`]: delta debugging of a violating run's fault schedule.
//! - [`swarm`]: per-seed draws of fault kinds, rates, timings and workload knobs.
//! - [`violation`]: why a run fails; [`liveness`]: the bound on recovery after the final heal.
//! - [`summary`], [`metrics`], [`report`]: what a run reports; [`groups`] and [`consumption`]:
//!   how consumer and share groups shared the work; [`chart`]: deterministic SVG
//!   charts for reports; [`experiment`]: sweeps, verdicts and the claims index.
//! - [`cli`]: the simulator's `fathom` commands (the binary is the `fathom` crate in `sim/cli`).

pub mod bench;
pub mod chart;
pub mod cli;
pub mod consumption;
pub mod disk_faults;
pub mod experiment;
pub mod explore;
pub mod fault_log;
pub mod faults;
pub mod groups;
pub mod harness;
pub mod io;
pub mod liveness;
#[cfg(madsim)]
pub mod madsim_net;
#[cfg(madsim)]
pub mod madsim_run;
pub mod messages;
pub mod metrics;
pub mod model_disk;
pub mod report;
pub mod resources;
pub mod run;
pub mod scenario;
pub mod shrink;
pub mod summary;
pub mod swarm;
pub mod view;
pub mod violation;
