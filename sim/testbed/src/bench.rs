//! The simulator's speed, measured: `fathom bench-sim` runs scenarios and an exploration and
//! reports simulated seconds per CPU second, events per CPU second and wall time. A benchmark,
//! never a timed test: the figures depend on the machine and what else runs on it.
//!
//! It calls the same run entry point as `fathom run` ([`run::run`]), so whatever harness that
//! runs is what is measured. The other harness is another build of the binary; `bench-sim
//! --also BINARY` runs that build after this one's runs, takes its figures as JSON
//! ([`BenchReport`]) and prints both in one table.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::explore::{self, ExploreOptions, Shard};
use crate::harness::Harness;
use crate::run::{self, RunError};
use crate::scenario::Scenario;

/// What one `bench-sim` process measured, as `bench-sim --json` prints it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchReport {
    pub runs: Vec<Measurement>,
    pub explored: Vec<ExploreMeasurement>,
}

impl BenchReport {
    /// A run failed its bounds, or an exploration found something.
    pub fn failed(&self) -> bool {
        self.runs.iter().any(|m| !m.passed) || self.explored.iter().any(|e| e.findings > 0)
    }
}

/// One scenario run, timed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    /// The harness's name ([`Harness::name`]).
    pub harness: String,
    pub scenario: String,
    pub seed: u64,
    pub simulated_s: f64,
    /// CPU time of this process (user and system) during the run.
    pub cpu_s: f64,
    pub wall_s: f64,
    /// Frames delivered to the processes' state machines
    /// ([`fathom_driver::stats::frames_delivered`], the one definition of an event).
    pub events: u64,
    /// The run kept its `[expect]` bounds (a benchmark of a broken run would mislead).
    pub passed: bool,
}

impl Measurement {
    /// Simulated seconds per CPU second: how many times faster than real time, on one core.
    pub fn speed(&self) -> f64 {
        self.simulated_s / self.cpu_s.max(f64::MIN_POSITIVE)
    }

    pub fn events_per_cpu_s(&self) -> f64 {
        self.events as f64 / self.cpu_s.max(f64::MIN_POSITIVE)
    }
}

/// Runs `scenario` at `seed` and measures it.
pub fn measure(scenario: &Scenario, seed: u64) -> Result<Measurement, RunError> {
    let events_before = fathom_driver::stats::frames_delivered();
    let cpu_before = process_cpu_time();
    let wall_before = Instant::now();
    let outcome = run::run(scenario, seed)?;
    let wall = wall_before.elapsed();
    let cpu = process_cpu_time().saturating_sub(cpu_before);
    Ok(Measurement {
        harness: Harness::BUILT.name().into(),
        scenario: scenario.name.clone(),
        seed,
        simulated_s: outcome.summary.simulated_s,
        cpu_s: cpu.as_secs_f64(),
        wall_s: wall.as_secs_f64(),
        events: fathom_driver::stats::frames_delivered().wrapping_sub(events_before),
        passed: outcome.violations.is_empty(),
    })
}

/// An exploration of `seeds` seeds (from seed 1), timed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExploreMeasurement {
    pub harness: String,
    pub scenario: String,
    pub seeds: u64,
    pub jobs: usize,
    pub wall_s: f64,
    pub cpu_s: f64,
    /// Seeds that violated, ran over time or failed.
    pub findings: usize,
}

impl ExploreMeasurement {
    pub fn seeds_per_hour(&self) -> f64 {
        self.seeds as f64 * 3600.0 / self.wall_s.max(f64::MIN_POSITIVE)
    }

    /// Seeds per hour of one core's CPU time: what `jobs` idle cores would give `jobs` times
    /// over, whatever else shared the machine during the measurement.
    pub fn seeds_per_cpu_hour(&self) -> f64 {
        self.seeds as f64 * 3600.0 / self.cpu_s.max(f64::MIN_POSITIVE)
    }
}

/// Explores seeds `1..=seeds` of `scenario` on `jobs` threads, as `fathom explore` does.
pub fn measure_explore(
    scenario: &Scenario,
    file: &Path,
    seeds: u64,
    jobs: usize,
) -> ExploreMeasurement {
    let options = ExploreOptions {
        jobs: Some(jobs),
        stop_after: None,
        seed_wall: Duration::from_secs_f64(explore::SEED_WALL_DEFAULT_S),
    };
    let cpu_before = process_cpu_time();
    let wall_before = Instant::now();
    let range = 1..seeds.saturating_add(1);
    let result = explore::explore(scenario, file, range, Shard::ALL, &options, &|_| {});
    ExploreMeasurement {
        harness: Harness::BUILT.name().into(),
        scenario: scenario.name.clone(),
        seeds,
        jobs,
        wall_s: wall_before.elapsed().as_secs_f64(),
        cpu_s: process_cpu_time().saturating_sub(cpu_before).as_secs_f64(),
        findings: result.findings(),
    }
}

/// The table `fathom bench-sim` prints: one line per run, then one per exploration.
pub fn table(report: &BenchReport) -> String {
    let mut out = format!(
        "{:<8} {:<14} {:>6} {:>11} {:>8} {:>11} {:>10} {:>16} {:>8}  {}\n",
        "harness",
        "scenario",
        "seed",
        "simulated_s",
        "cpu_s",
        "sim_per_cpu",
        "events",
        "events_per_cpu_s",
        "wall_s",
        "result"
    );
    for m in &report.runs {
        out.push_str(&format!(
            "{:<8} {:<14} {:>6} {:>11.3} {:>8.3} {:>10.1}x {:>10} {:>16.0} {:>8.3}  {}\n",
            m.harness,
            m.scenario,
            m.seed,
            m.simulated_s,
            m.cpu_s,
            m.speed(),
            m.events,
            m.events_per_cpu_s(),
            m.wall_s,
            if m.passed { "PASS" } else { "FAIL" }
        ));
    }
    for e in &report.explored {
        out.push_str(&format!(
            "{}: explore {} seeds 1..={} with --jobs {}: {:.3} s wall, {:.3} CPU s, {:.0} seeds \
             per hour ({:.0} per CPU hour), {} findings\n",
            e.harness,
            e.scenario,
            e.seeds,
            e.jobs,
            e.wall_s,
            e.cpu_s,
            e.seeds_per_hour(),
            e.seeds_per_cpu_hour(),
            e.findings
        ));
    }
    out
}

/// CPU time this process has used, user and system, on every thread.
#[cfg(unix)]
pub fn process_cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `rusage` through the pointer, which points to memory of that
    // type that we own; RUSAGE_SELF is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: the call succeeded, so it initialised the struct (and zeroed is valid anyway:
    // every field is an integer).
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Without getrusage, CPU time is not measured (reported as zero).
#[cfg(not(unix))]
pub fn process_cpu_time() -> Duration {
    Duration::ZERO
}
