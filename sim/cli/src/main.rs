//! `fathom`: run scenarios in the simulator, explore seeds, check histories, and (with the
//! `production` feature) run a real broker and clients.
//!
//! Exit codes: 0 when every `[expect]` bound holds (or the history is clean), 1 when a bound is
//! violated (or the checker found anomalies), 2 on bad input.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;

#[cfg(feature = "sim")]
use fathom_sim::cli;

#[derive(Parser)]
#[command(
    name = "fathom",
    version,
    about = "Deterministic simulation testbed for a replicated message queue"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[cfg(feature = "sim")]
    /// Run one seed of a scenario and judge its history.
    Run {
        scenario: PathBuf,
        /// Overrides the scenario's default seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Where history.jsonl and summary.json go (default target/fathom/<scenario>/<seed>/).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        harness: HarnessArg,
    },
    #[cfg(feature = "sim")]
    /// Run many seeds and list the ones that violate the scenario's bounds.
    Explore {
        scenario: PathBuf,
        /// A half-open range of seeds, `A..B`.
        #[arg(long)]
        seeds: String,
        /// Seeds run at once (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Stop once this many seeds violated a bound (seeds already running finish).
        #[arg(long)]
        stop_after: Option<u64>,
        /// Real seconds one seed may run; a seed over it is listed with its replay command and
        /// the exploration goes on.
        #[arg(long, default_value_t = fathom_sim::explore::SEED_WALL_DEFAULT_S)]
        seed_timeout_s: f64,
        /// Run only shard I of N (counted from 0): the seeds s of the range with s mod N = I.
        /// The N shards, run anywhere, cover the range exactly once; see `explore-merge`.
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// Also write the result (findings with replay commands, anomaly totals) as JSON here.
        #[arg(long, value_name = "FILE")]
        result: Option<PathBuf>,
        #[command(flatten)]
        harness: HarnessArg,
    },
    #[cfg(feature = "sim")]
    /// Combine the result files of an exploration's shards (`explore --shard I/N --result
    /// FILE`) into one report; refuses files of different explorations or overlapping shards,
    /// and names the missing ones (exit 2).
    ExploreMerge {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write the combined result as JSON here.
        #[arg(long, value_name = "FILE")]
        result: Option<PathBuf>,
    },
    #[cfg(feature = "sim")]
    /// Measure the simulator's speed: run each scenario once and print simulated seconds, CPU
    /// seconds, simulated seconds per CPU second, events (frames delivered to the state
    /// machines) per CPU second and wall time; optionally time an exploration. A benchmark:
    /// the figures depend on the machine.
    BenchSim {
        /// A scenario to run (repeatable; default: scenarios/standard.toml and
        /// scenarios/quickstart.toml).
        #[arg(long)]
        scenario: Vec<PathBuf>,
        /// The seed of every run (default: each scenario's own).
        #[arg(long)]
        seed: Option<u64>,
        /// Also explore seeds 1..=N of the quickstart and print seeds per hour.
        #[arg(long, value_name = "N")]
        explore_seeds: Option<u64>,
        /// The scenario explored for --explore-seeds.
        #[arg(long, default_value = "scenarios/quickstart.toml")]
        explore_scenario: PathBuf,
        /// Threads of the exploration.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// A fathom binary built for the other harness (e.g. target/madsim/release/fathom): run
        /// it with the same options after this one and print both harnesses in one table.
        #[arg(long, value_name = "BINARY")]
        also: Option<PathBuf>,
        /// Print the figures as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        harness: HarnessArg,
    },
    #[cfg(feature = "sim")]
    /// Shrink a violating run: delta-debug the fault schedule of RUN_DIR/scenario.toml (faults,
    /// then their timings) to a smaller one that still violates the same bound; write it to
    /// RUN_DIR/shrunk.toml and print it.
    Shrink {
        run_dir: PathBuf,
        /// Real seconds one candidate run may take; a slower candidate counts as passing.
        #[arg(long, default_value_t = 600.0)]
        seed_timeout_s: f64,
        #[command(flatten)]
        harness: HarnessArg,
    },
    /// Run the checker on a history file and print the anomaly counts. Group histories
    /// (`process` lines stamped with `group`) add unprocessed (acked below the group's final
    /// commit, never processed), reprocessed (processed twice by one group) and
    /// split_ownership (two members processing one partition at overlapping times). The
    /// simulator judges more than a history shows: replica_divergence (here always 0) from the
    /// brokers' logs, and, whatever the scenario bounds, leader conflicts (two leaders in one
    /// term), `stuck` and `unavailable` (see the README).
    Check { history: PathBuf },
    #[cfg(feature = "sim")]
    /// Print one message's life in a run directory: its send, every attempt with its broker
    /// and error, its fate, and every delivery.
    Trace {
        run_dir: PathBuf,
        message_id: String,
    },
    #[cfg(feature = "sim")]
    /// Run one experiment (a scenario swept over parameters and seeds) and write its report
    /// folder, results.json and charts; refresh the claims index.
    Experiment {
        file: PathBuf,
        /// The reports folder.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        /// Runs at once (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        #[command(flatten)]
        harness: HarnessArg,
    },
    #[cfg(feature = "sim")]
    /// Regenerate every experiment's report and the claims index.
    Report {
        /// Where the experiment files are.
        #[arg(long, default_value = "scenarios/experiments")]
        experiments: PathBuf,
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        #[arg(long)]
        jobs: Option<usize>,
        #[command(flatten)]
        harness: HarnessArg,
    },
    #[cfg(feature = "production")]
    #[command(flatten)]
    Production(fathom_server::Command),
}

/// `--harness`, on every command that runs the simulator.
#[cfg(feature = "sim")]
#[derive(clap::Args, Clone, Copy)]
struct HarnessArg {
    /// The simulator. A binary runs the one it was built for (madsim: `--cfg madsim` in its own
    /// target dir, see the README) and refuses the other, saying how to build it.
    #[arg(long, value_enum, default_value_t = fathom_sim::harness::Harness::BUILT)]
    harness: fathom_sim::harness::Harness,
}

impl Command {
    /// The harness the command asked for, if it runs the simulator.
    #[cfg(feature = "sim")]
    fn harness(&self) -> Option<fathom_sim::harness::Harness> {
        match self {
            Command::Run { harness, .. }
            | Command::Explore { harness, .. }
            | Command::BenchSim { harness, .. }
            | Command::Shrink { harness, .. }
            | Command::Experiment { harness, .. }
            | Command::Report { harness, .. } => Some(harness.harness),
            _ => None,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    #[cfg(feature = "sim")]
    cli::init_tracing();
    #[cfg(feature = "sim")]
    if let Some(harness) = args.command.harness() {
        if let Some(reason) = fathom_sim::harness::unavailable_reason(harness) {
            eprintln!("error: --harness {}: {reason}", harness.name());
            return ExitCode::from(cli::EXIT_BAD_INPUT);
        }
    }
    let code = match args.command {
        #[cfg(feature = "sim")]
        Command::Run {
            scenario,
            seed,
            out,
            harness,
        } => cli::run(&scenario, seed, out.as_deref(), harness.harness),
        #[cfg(feature = "sim")]
        Command::Explore {
            scenario,
            seeds,
            jobs,
            stop_after,
            seed_timeout_s,
            shard,
            result,
            ..
        } => match std::time::Duration::try_from_secs_f64(seed_timeout_s) {
            Ok(seed_wall) if seed_timeout_s > 0.0 => {
                let options = cli::ExploreOptions {
                    jobs,
                    stop_after,
                    seed_wall,
                };
                cli::explore(
                    &scenario,
                    &seeds,
                    shard.as_deref(),
                    result.as_deref(),
                    &options,
                )
            }
            _ => {
                eprintln!("error: --seed-timeout-s: expected a positive number of seconds");
                cli::EXIT_BAD_INPUT
            }
        },
        #[cfg(feature = "sim")]
        Command::ExploreMerge { files, result } => cli::explore_merge(&files, result.as_deref()),
        #[cfg(feature = "sim")]
        Command::BenchSim {
            scenario,
            seed,
            explore_seeds,
            explore_scenario,
            jobs,
            also,
            json,
            ..
        } => {
            let scenarios = if scenario.is_empty() {
                cli::BENCH_SCENARIOS.iter().map(PathBuf::from).collect()
            } else {
                scenario
            };
            cli::bench_sim(&cli::BenchOptions {
                scenarios,
                seed,
                explore_seeds,
                explore_scenario,
                jobs: jobs.max(1),
                also,
                json,
            })
        }
        #[cfg(feature = "sim")]
        Command::Shrink {
            run_dir,
            seed_timeout_s,
            ..
        } => match std::time::Duration::try_from_secs_f64(seed_timeout_s) {
            Ok(seed_wall) if seed_timeout_s > 0.0 => cli::shrink(&run_dir, seed_wall),
            _ => {
                eprintln!("error: --seed-timeout-s: expected a positive number of seconds");
                cli::EXIT_BAD_INPUT
            }
        },
        Command::Check { history } => check::check(&history),
        #[cfg(feature = "sim")]
        Command::Trace {
            run_dir,
            message_id,
        } => cli::trace(&run_dir, &message_id),
        #[cfg(feature = "sim")]
        Command::Experiment {
            file,
            reports,
            jobs,
            ..
        } => cli::experiment(&file, &reports, jobs),
        #[cfg(feature = "sim")]
        Command::Report {
            experiments,
            reports,
            jobs,
            ..
        } => cli::report(&experiments, &reports, jobs),
        #[cfg(feature = "production")]
        Command::Production(command) => fathom_server::main(command),
    };
    ExitCode::from(code)
}
