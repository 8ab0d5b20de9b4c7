//! Exploring seeds: run a range of seeds (or one shard of it) on a few threads and gather what
//! they found into an [`ExploreResult`], which `fathom explore --result` writes as JSON and
//! `fathom explore-merge` combines across shards run on other machines.
//!
//! A shard is a disjoint slice of the seed range: seed `s` belongs to shard `s mod N`, so the N
//! shards of a range cover it exactly once whatever its start, and each gets every N-th seed
//! (slow seeds spread evenly rather than falling into one contiguous slice).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::run::{self, RunError, RunLimits};
use crate::scenario::Scenario;

/// Real seconds one explored seed may take unless `--seed-timeout-s` says otherwise.
pub const SEED_WALL_DEFAULT_S: f64 = 600.0;

/// The most shards a range may be split into: a bound on the result files a merge reads.
pub const SHARDS_MAX: u64 = 1_000_000;

/// The `I`-th of `N` disjoint slices of a seed range: the seeds `s` with `s mod N == I`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole range as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` with `N` in `1..=SHARDS_MAX` and `I` in `0..N`.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("--shard: expected I/N (e.g. 0/4), got `{s}`"))?;
        let number = |t: &str| {
            t.trim()
                .parse::<u64>()
                .map_err(|_| format!("--shard: `{t}` is not a whole number"))
        };
        let (index, count) = (number(i)?, number(n)?);
        if count == 0 || count > SHARDS_MAX {
            return Err(format!(
                "--shard: the number of shards must be 1 to {SHARDS_MAX}, got {count}"
            ));
        }
        if index >= count {
            return Err(format!(
                "--shard: the index counts from 0 and must be below {count}, got {index}"
            ));
        }
        Ok(Shard { index, count })
    }

    pub fn contains(&self, seed: u64) -> bool {
        seed % self.count == self.index
    }

    /// The first seed of `range` in this shard (possibly past its end).
    fn first(self, range: &Range<u64>) -> u64 {
        let offset = (self.index + self.count - range.start % self.count) % self.count;
        range.start.saturating_add(offset)
    }

    /// The seeds of `range` in this shard, in order.
    pub fn seeds(self, range: Range<u64>) -> impl Iterator<Item = u64> {
        let first = self.first(&range);
        (first..range.end).step_by(usize::try_from(self.count).unwrap_or(usize::MAX))
    }

    /// How many seeds of `range` are in this shard.
    pub fn len(self, range: Range<u64>) -> u64 {
        let first = self.first(&range);
        if first >= range.end {
            0
        } else {
            (range.end - first - 1) / self.count + 1
        }
    }

    /// Whether this shard has no seed of `range`.
    pub fn is_empty(self, range: Range<u64>) -> bool {
        self.seeds(range).next().is_none()
    }
}

/// A half-open seed range as the result file holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedRange {
    pub start: u64,
    pub end: u64,
}

/// A seed that broke bounds: which, how, and the command that replays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolatingSeed {
    pub seed: u64,
    /// The bounds or properties broken (`lost`, `unavailable`, ...).
    pub bounds: Vec<String>,
    /// Each violation in words.
    pub violations: Vec<String>,
    pub replay: String,
}

/// A seed that did not finish: over its wall-time limit, or the simulation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnfinishedSeed {
    pub seed: u64,
    pub error: String,
    pub replay: String,
}

/// What an exploration of one shard found: the machine-readable result file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExploreResult {
    pub scenario: String,
    /// The scenario file as given on the command line, for the replay commands.
    pub scenario_file: String,
    pub seeds: SeedRange,
    pub shard: Shard,
    /// Seeds started (violating, over time and failed ones included), and seeds of the shard
    /// not run because `--stop-after` stopped the exploration.
    pub seeds_run: u64,
    pub seeds_not_run: u64,
    pub violating: Vec<ViolatingSeed>,
    pub timed_out: Vec<UnfinishedSeed>,
    pub failed: Vec<UnfinishedSeed>,
    /// Every anomaly class's count summed over the seeds that finished (the group classes over
    /// those with group processing).
    pub anomalies: BTreeMap<String, u64>,
}

/// How an exploration runs its seeds.
#[derive(Debug, Clone)]
pub struct ExploreOptions {
    /// Seeds run at once (default: the number of cores).
    pub jobs: Option<usize>,
    /// Stop once this many seeds violated a bound.
    pub stop_after: Option<u64>,
    /// Real time one seed may take; a seed over it is listed and the exploration goes on.
    pub seed_wall: std::time::Duration,
}

/// What one seed found, before it joins the result.
enum Finding {
    Passed,
    Violated(Vec<crate::violation::Violation>),
    OverWallTime(String),
    Failed(String),
}

/// The command that replays `seed` of the scenario file `file`.
pub fn replay_command(file: &str, seed: u64) -> String {
    format!("cargo run --release -- run {file} --seed {seed}")
}

/// Runs the seeds of `range` in `shard` on `options.jobs` threads; `on_seed(found)` is called
/// after each seed with the number of findings so far (for a progress bar).
pub fn explore(
    scenario: &Scenario,
    file: &Path,
    range: Range<u64>,
    shard: Shard,
    options: &ExploreOptions,
    on_seed: &dyn Fn(usize),
) -> ExploreResult {
    let runner: Arc<Runner> = Arc::new(run::run_with_limits);
    let found = explore_with(runner, scenario, range.clone(), shard, options, on_seed);
    let file = file.display().to_string();
    let mut result = ExploreResult {
        scenario: scenario.name.clone(),
        scenario_file: file.clone(),
        seeds: SeedRange {
            start: range.start,
            end: range.end,
        },
        shard,
        seeds_run: 0,
        seeds_not_run: shard.len(range) - found.len() as u64,
        violating: Vec::new(),
        timed_out: Vec::new(),
        failed: Vec::new(),
        anomalies: BTreeMap::new(),
    };
    for (seed, finding, anomalies) in found {
        result.add(&file, seed, finding, anomalies);
    }
    result
}

/// How one seed is run: [`run::run_with_limits`], or a stand-in in tests.
type Runner = dyn Fn(&Scenario, u64, RunLimits) -> Result<run::RunOutcome, RunError> + Send + Sync;

type Found = (u64, Finding, Option<fathom_history::Anomalies>);

/// What a worker thread tells the explorer.
enum Report {
    Seed(Found),
    /// No seed left (or the exploration stopped): the worker has ended.
    Exit,
}

/// The seeds, the workers' current seeds and the stop flag, shared by the explorer and its
/// workers.
struct Pool {
    scenario: Scenario,
    runner: Arc<Runner>,
    limits: RunLimits,
    seeds: Mutex<Box<dyn Iterator<Item = u64> + Send>>,
    /// Per worker, the seed it runs and since when. The explorer removes a worker that has
    /// not returned long past the wall-time limit (it gave up on it); the worker, when it
    /// returns, finds itself removed and ends without reporting.
    busy: Mutex<BTreeMap<u64, (u64, Instant)>>,
    stop: AtomicBool,
    /// Violating seeds so far, and how many stop the exploration (`--stop-after`). A worker
    /// counts its own violation before it takes another seed, so that with one job no seed
    /// starts after the last one allowed; seeds already running on other workers finish.
    violating: AtomicU64,
    stop_after: u64,
}

/// Past the wall-time limit, how long a seed may still take before the explorer gives up on
/// its thread: a quarter of the limit, within [`STUCK_GRACE_MIN`]..=[`STUCK_GRACE_MAX`]. The
/// run loop checks the limit every so many simulation steps; a seed still running this long
/// after it is caught in one step that never returns (an endless loop in the core or the
/// harness).
fn stuck_after(wall: Duration) -> Duration {
    wall.saturating_add((wall / 4).clamp(STUCK_GRACE_MIN, STUCK_GRACE_MAX))
}

/// The least [`stuck_after`] adds to the wall-time limit: more than the run loop's checks are
/// apart on a loaded machine.
const STUCK_GRACE_MIN: Duration = Duration::from_secs(2);
/// The most [`stuck_after`] adds to the wall-time limit.
const STUCK_GRACE_MAX: Duration = Duration::from_secs(30);

/// How often the explorer looks for stuck seeds while it waits for results.
const STUCK_CHECK_EVERY: Duration = Duration::from_millis(200);

impl Pool {
    fn spawn_worker(pool: &Arc<Pool>, id: u64, reports: mpsc::Sender<Report>) {
        let pool = Arc::clone(pool);
        std::thread::spawn(move || pool.work(id, &reports));
    }

    /// Runs seeds until none is left, the exploration stops, or the explorer gave up on this
    /// worker.
    fn work(&self, id: u64, reports: &mpsc::Sender<Report>) {
        loop {
            let next = if self.stop.load(Ordering::Relaxed) {
                None
            } else {
                self.seeds.lock().map(|mut it| it.next()).unwrap_or(None)
            };
            let Some(seed) = next else {
                let _ = reports.send(Report::Exit);
                return;
            };
            self.lock_busy().insert(id, (seed, Instant::now()));
            let found = self.run_seed(seed);
            if self.lock_busy().remove(&id).is_none() {
                return; // given up on: its seed is already reported as stuck
            }
            if matches!(found.1, Finding::Violated(_))
                && self.violating.fetch_add(1, Ordering::Relaxed) + 1 >= self.stop_after
            {
                self.stop.store(true, Ordering::Relaxed);
            }
            if reports.send(Report::Seed(found)).is_err() {
                return;
            }
        }
    }

    /// One seed's finding; a panic in the run is a failure to run, not a stuck seed.
    fn run_seed(&self, seed: u64) -> Found {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (self.runner)(&self.scenario, seed, self.limits)
        }));
        let Ok(run) = run else {
            let why = "the run panicked (replay it for the message)".to_string();
            return (seed, Finding::Failed(why), None);
        };
        match run {
            Ok(o) if o.violations.is_empty() => (seed, Finding::Passed, Some(o.report.anomalies)),
            Ok(o) => (
                seed,
                Finding::Violated(o.violations),
                Some(o.report.anomalies),
            ),
            Err(e @ RunError::WallTime { .. }) => {
                (seed, Finding::OverWallTime(e.to_string()), None)
            }
            Err(e) => (seed, Finding::Failed(e.to_string()), None),
        }
    }

    fn lock_busy(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (u64, Instant)>> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the workers whose seed has run past `stuck_after` and returns their seeds.
    fn give_up_on_stuck(&self, limit: Duration) -> Vec<u64> {
        let mut busy = self.lock_busy();
        let stuck: Vec<u64> = busy
            .iter()
            .filter(|(_, (_, since))| since.elapsed() > limit)
            .map(|(&id, _)| id)
            .collect();
        stuck
            .into_iter()
            .filter_map(|id| busy.remove(&id))
            .map(|(seed, _)| seed)
            .collect()
    }
}

/// Runs the seeds on `options.jobs` worker threads and gathers their findings, sorted by
/// seed. A worker whose seed never returns from a simulation step is given up on past
/// [`stuck_after`]: its seed is reported over the wall-time limit and a new worker takes its
/// place. The stuck thread is left behind, still taking a core, and ends with the process (a
/// `bench-sim` measuring after such a seed counts its CPU too).
fn explore_with(
    runner: Arc<Runner>,
    scenario: &Scenario,
    range: Range<u64>,
    shard: Shard,
    options: &ExploreOptions,
    on_seed: &dyn Fn(usize),
) -> Vec<Found> {
    let jobs = options
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let pool = Arc::new(Pool {
        scenario: scenario.clone(),
        runner,
        limits: RunLimits {
            wall: Some(options.seed_wall),
        },
        seeds: Mutex::new(Box::new(shard.seeds(range))),
        busy: Mutex::new(BTreeMap::new()),
        stop: AtomicBool::new(options.stop_after == Some(0)),
        violating: AtomicU64::new(0),
        stop_after: options.stop_after.unwrap_or(u64::MAX),
    });
    let stuck_limit = stuck_after(options.seed_wall);
    let (tx, rx) = mpsc::channel();
    let mut workers = 0u64;
    for _ in 0..jobs {
        Pool::spawn_worker(&pool, workers, tx.clone());
        workers += 1;
    }
    let mut live = jobs;
    let mut found: Vec<Found> = Vec::new();
    let report = |found: &mut Vec<Found>, f: Found| {
        found.push(f);
        on_seed(
            found
                .iter()
                .filter(|f| !matches!(f.1, Finding::Passed))
                .count(),
        );
    };
    while live > 0 {
        match rx.recv_timeout(STUCK_CHECK_EVERY) {
            Ok(Report::Seed(f)) => report(&mut found, f),
            Ok(Report::Exit) => live -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        for seed in pool.give_up_on_stuck(stuck_limit) {
            // The same words whatever the machine's speed, so result files compare.
            let why = format!(
                "over the wall-time limit of {} s: still in one simulation step after {} s \
                 (a loop that never returns to the simulator; replay it under a debugger)",
                options.seed_wall.as_secs_f64(),
                stuck_limit.as_secs_f64()
            );
            report(&mut found, (seed, Finding::OverWallTime(why), None));
            Pool::spawn_worker(&pool, workers, tx.clone());
            workers += 1;
        }
    }
    found.sort_by_key(|(seed, _, _)| *seed);
    found
}

impl ExploreResult {
    fn add(
        &mut self,
        file: &str,
        seed: u64,
        finding: Finding,
        anomalies: Option<fathom_history::Anomalies>,
    ) {
        let replay = replay_command(file, seed);
        self.seeds_run += 1;
        match finding {
            Finding::Passed => {}
            Finding::Violated(v) => self.violating.push(ViolatingSeed {
                seed,
                bounds: v.iter().map(|v| v.key().to_string()).collect(),
                violations: v.iter().map(ToString::to_string).collect(),
                replay,
            }),
            Finding::OverWallTime(error) => self.timed_out.push(UnfinishedSeed {
                seed,
                error,
                replay,
            }),
            Finding::Failed(error) => self.failed.push(UnfinishedSeed {
                seed,
                error,
                replay,
            }),
        }
        if let Some(anomalies) = anomalies {
            for (class, count) in anomalies.iter() {
                *self.anomalies.entry(class.name().to_string()).or_default() += count;
            }
        }
    }

    /// Seeds that violated, ran over time or failed.
    pub fn findings(&self) -> usize {
        self.violating.len() + self.timed_out.len() + self.failed.len()
    }

    /// The report `fathom explore` prints: each finding in seed order with its replay command,
    /// then a count line and the anomaly totals.
    pub fn text(&self) -> String {
        let mut lines: Vec<(u64, String, &str)> = Vec::new();
        for v in &self.violating {
            lines.push((v.seed, v.violations.join("; "), &v.replay));
        }
        for u in self.timed_out.iter().chain(&self.failed) {
            lines.push((u.seed, u.error.clone(), &u.replay));
        }
        lines.sort_by_key(|(seed, _, _)| *seed);
        let mut out = String::new();
        for (seed, why, replay) in lines {
            out.push_str(&format!("seed {seed}: {why}\n  replay: {replay}\n"));
        }
        let stopped = if self.seeds_not_run > 0 {
            format!("; stopped early, {} seeds not run", self.seeds_not_run)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{} of {} seeds violated the bounds of {}; {} over the wall-time limit; {} failed \
             to run{stopped}\n",
            self.violating.len(),
            self.seeds_run,
            self.scenario,
            self.timed_out.len(),
            self.failed.len(),
        ));
        let totals: Vec<String> = self
            .anomalies
            .iter()
            .map(|(class, n)| format!("{class} {n}"))
            .collect();
        if !totals.is_empty() {
            out.push_str(&format!(
                "anomalies summed over seeds: {}\n",
                totals.join(", ")
            ));
        }
        out
    }
}

/// Why result files cannot be merged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MergeError {
    #[error("no result files to merge")]
    Empty,
    #[error(
        "{file} is of {found}, the others of {expected}: shards of one exploration must share \
         scenario, seed range and shard count"
    )]
    Mismatch {
        file: String,
        found: String,
        expected: String,
    },
    #[error("{file} and {other} are both shard {index}/{count}: shards overlap")]
    Overlap {
        file: String,
        other: String,
        index: u64,
        count: u64,
    },
}

/// Shards combined: one result for the whole range, and the shards that were not given.
#[derive(Debug)]
pub struct Merged {
    pub result: ExploreResult,
    pub missing: Vec<Shard>,
}

/// Combines the results of shards of one exploration (`(file name, result)` pairs) into the
/// result of the whole range, as one unsharded exploration would have written it. Refuses
/// results of different scenarios, ranges or shard counts, and two results of one shard.
pub fn merge(results: &[(String, ExploreResult)]) -> Result<Merged, MergeError> {
    let (first_file, first) = results.first().ok_or(MergeError::Empty)?;
    let identity = |r: &ExploreResult| {
        format!(
            "scenario {} seeds {}..{} in {} shards",
            r.scenario, r.seeds.start, r.seeds.end, r.shard.count
        )
    };
    let mut by_index: BTreeMap<u64, &str> = BTreeMap::new();
    for (file, r) in results {
        if identity(r) != identity(first) {
            return Err(MergeError::Mismatch {
                file: file.clone(),
                found: identity(r),
                expected: format!("{} (as {first_file})", identity(first)),
            });
        }
        if let Some(other) = by_index.insert(r.shard.index, file) {
            return Err(MergeError::Overlap {
                file: file.clone(),
                other: other.to_string(),
                index: r.shard.index,
                count: r.shard.count,
            });
        }
    }
    let mut merged = ExploreResult {
        shard: Shard::ALL,
        seeds_run: 0,
        seeds_not_run: 0,
        violating: Vec::new(),
        timed_out: Vec::new(),
        failed: Vec::new(),
        anomalies: BTreeMap::new(),
        ..first.clone()
    };
    for (_, r) in results {
        merged.seeds_run += r.seeds_run;
        merged.seeds_not_run += r.seeds_not_run;
        merged.violating.extend(r.violating.iter().cloned());
        merged.timed_out.extend(r.timed_out.iter().cloned());
        merged.failed.extend(r.failed.iter().cloned());
        for (class, n) in &r.anomalies {
            *merged.anomalies.entry(class.clone()).or_default() += n;
        }
    }
    merged.violating.sort_by_key(|v| v.seed);
    merged.timed_out.sort_by_key(|u| u.seed);
    merged.failed.sort_by_key(|u| u.seed);
    let range = first.seeds.start..first.seeds.end;
    let missing: Vec<Shard> = (0..first.shard.count)
        .filter(|i| !by_index.contains_key(i))
        .map(|index| Shard {
            index,
            count: first.shard.count,
        })
        .collect();
    merged.seeds_not_run += missing.iter().map(|s| s.len(range.clone())).sum::<u64>();
    Ok(Merged {
        result: merged,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_a_range_into_disjoint_slices_that_cover_it() {
        for range in [0..10, 1..101, 7..8, 5..6] {
            let mut all: Vec<u64> = (0..4)
                .flat_map(|i| Shard { index: i, count: 4 }.seeds(range.clone()))
                .collect();
            all.sort();
            assert_eq!(all, range.clone().collect::<Vec<_>>(), "{range:?}");
        }
        let shard = Shard { index: 1, count: 4 };
        assert_eq!(shard.seeds(1..12).collect::<Vec<_>>(), [1, 5, 9]);
        assert!(shard.seeds(1..12).all(|s| shard.contains(s)));
        assert_eq!(Shard { index: 0, count: 4 }.len(1..4), 0);
        assert_eq!(Shard::ALL.len(3..9), 6);
        for range in [0..10, 1..101, 7..8, 5..6, 3..3] {
            for index in 0..4 {
                let shard = Shard { index, count: 4 };
                assert_eq!(
                    shard.len(range.clone()),
                    shard.seeds(range.clone()).count() as u64
                );
            }
        }
    }

    #[test]
    fn a_seed_stuck_inside_one_step_is_given_up_on_and_the_others_still_run() {
        let scenario = Scenario::load(
            &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../scenarios/quickstart.toml"),
        )
        .unwrap();
        // Seed 3 never returns, as a loop inside one step would not: the run loop's own
        // wall-time check cannot fire there. Seed 5 panics; the others fail at once.
        let runner: Arc<Runner> = Arc::new(|_: &Scenario, seed: u64, _: RunLimits| {
            match seed {
                3 => std::thread::sleep(Duration::from_secs(3600)),
                5 => panic!("seed 5 panics"),
                _ => {}
            }
            Err(RunError::Sim(format!("seed {seed} ran")))
        });
        let options = ExploreOptions {
            jobs: Some(2),
            stop_after: None,
            seed_wall: Duration::from_millis(100),
        };
        let found = explore_with(runner, &scenario, 1..9, Shard::ALL, &options, &|_| {});
        let seeds: Vec<u64> = found.iter().map(|f| f.0).collect();
        assert_eq!(seeds, (1..9).collect::<Vec<_>>(), "every seed once");
        for (seed, finding, _) in &found {
            match finding {
                Finding::OverWallTime(why) => {
                    assert_eq!(*seed, 3);
                    assert!(why.contains("still in one simulation step"), "{why}");
                }
                Finding::Failed(why) if *seed == 5 => assert!(why.contains("panicked"), "{why}"),
                Finding::Failed(why) => {
                    assert_eq!(why, &format!("the simulation failed: seed {seed} ran"))
                }
                _ => panic!("seed {seed}: unexpected finding"),
            }
        }
        assert!(found
            .iter()
            .any(|f| matches!(f.1, Finding::OverWallTime(_))));

        let none = ExploreOptions {
            stop_after: Some(0),
            ..options
        };
        let never: Arc<Runner> = Arc::new(|_: &Scenario, seed: u64, _: RunLimits| {
            panic!("--stop-after 0 ran seed {seed}")
        });
        let found = explore_with(never, &scenario, 1..9, Shard::ALL, &none, &|_| {});
        assert!(found.is_empty(), "--stop-after 0 runs nothing");
    }

    #[test]
    fn a_bad_shard_is_refused_with_the_reason() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        for (bad, why) in [
            ("4/4", "below 4"),
            ("0/0", "1 to"),
            ("1", "expected I/N"),
            ("a/4", "not a whole number"),
            ("-1/4", "not a whole number"),
            ("0/1000001", "1 to"),
        ] {
            let err = Shard::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    fn result(index: u64, count: u64, violating: &[u64]) -> ExploreResult {
        let shard = Shard { index, count };
        let seeds: Vec<u64> = shard.seeds(1..9).collect();
        ExploreResult {
            scenario: "s".into(),
            scenario_file: "s.toml".into(),
            seeds: SeedRange { start: 1, end: 9 },
            shard,
            seeds_run: seeds.len() as u64,
            seeds_not_run: 0,
            violating: violating
                .iter()
                .map(|&seed| ViolatingSeed {
                    seed,
                    bounds: vec!["lost".into()],
                    violations: vec!["lost: 1 found, at most 0 allowed".into()],
                    replay: replay_command("s.toml", seed),
                })
                .collect(),
            timed_out: Vec::new(),
            failed: Vec::new(),
            anomalies: BTreeMap::from([("lost".to_string(), violating.len() as u64)]),
        }
    }

    #[test]
    fn merged_shards_equal_the_unsharded_result_and_name_the_missing() {
        let whole = result(0, 1, &[2, 3, 6]);
        let shards = [result(0, 2, &[2, 6]), result(1, 2, &[3])];
        let named = |rs: &[ExploreResult]| -> Vec<(String, ExploreResult)> {
            rs.iter()
                .map(|r| (format!("shard-{}.json", r.shard.index), r.clone()))
                .collect()
        };
        let merged = merge(&named(&[shards[1].clone(), shards[0].clone()])).unwrap();
        assert!(merged.missing.is_empty());
        assert_eq!(merged.result, whole);

        let partial = merge(&named(&shards[..1])).unwrap();
        assert_eq!(partial.missing, [Shard { index: 1, count: 2 }]);
        assert_eq!(partial.result.seeds_not_run, 4);
    }

    #[test]
    fn overlapping_or_foreign_shards_are_refused() {
        let a = ("a.json".to_string(), result(0, 2, &[]));
        let b = ("b.json".to_string(), result(0, 2, &[]));
        assert!(matches!(
            merge(&[a.clone(), b]),
            Err(MergeError::Overlap { index: 0, .. })
        ));
        let other_split = ("c.json".to_string(), result(0, 3, &[]));
        assert!(matches!(
            merge(&[a.clone(), other_split]),
            Err(MergeError::Mismatch { .. })
        ));
        let mut other_range = result(1, 2, &[]);
        other_range.seeds.end = 100;
        assert!(matches!(
            merge(&[a, ("d.json".into(), other_range)]),
            Err(MergeError::Mismatch { .. })
        ));
        assert_eq!(merge(&[]).unwrap_err(), MergeError::Empty);
    }
}
