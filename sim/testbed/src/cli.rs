//! The `fathom` commands that need no production build: run, explore, check.

use std::path::{Path, PathBuf};

use fathom_history::{self as history, EventType, HistoryWriter, Op};

use crate::experiment::{self, index, Experiment};
use crate::explore;
use crate::harness::Harness;
use crate::run::{self, RunOutcome};
use crate::scenario::write::ScenarioText;
use crate::scenario::Scenario;

pub use fathom_history::command::{EXIT_BAD_INPUT, EXIT_OK, EXIT_VIOLATED};

/// Warnings only. Under madsim also no spans of madsim's own: it opens an error-level span
/// per node and enters it on every poll of every task, about 4 % of a run's time when nothing
/// is logged (`FATHOM_LOG` brings them back, for logs that name the node).
#[cfg(madsim)]
const DEFAULT_LOG_FILTER: &str = "warn,madsim=off";
#[cfg(not(madsim))]
const DEFAULT_LOG_FILTER: &str = "warn";

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FATHOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn load(path: &Path) -> Result<Scenario, u8> {
    Scenario::load(path).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_BAD_INPUT
    })
}

/// `fathom run`.
pub fn run(path: &Path, seed: Option<u64>, out: Option<&Path>, harness: Harness) -> u8 {
    if let Some(reason) = crate::harness::unavailable_reason(harness) {
        eprintln!("error: --harness {}: {reason}", harness.name());
        return EXIT_BAD_INPUT;
    }
    let scenario = match load(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let seed = seed.unwrap_or(scenario.seed);
    let outcome = match run::run_on(harness, &scenario, seed, run::RunLimits::default()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: seed {seed}: {e}");
            return EXIT_VIOLATED;
        }
    };
    let dir = out.map(Path::to_path_buf).unwrap_or_else(|| {
        PathBuf::from("target/fathom")
            .join(&scenario.name)
            .join(seed.to_string())
    });
    if let Some((_, description)) = &outcome.drawn {
        println!("swarm      seed {seed} drew:");
        for line in description {
            println!("  {line}");
        }
    }
    let written = write_outputs(&dir, &outcome)
        .and_then(|()| write_scenario(path, &dir, seed, outcome.drawn.as_ref()));
    if let Err(e) = written {
        eprintln!("error: cannot write to {}: {e}", dir.display());
        return EXIT_BAD_INPUT;
    }
    print!("{}", outcome.summary.table());
    println!(
        "wrote      {}/{{scenario.toml,history.jsonl,journal.jsonl,summary.json,report.md,*.svg}}",
        dir.display()
    );
    if outcome.violations.is_empty() {
        println!("result     PASS: every [expect] bound holds");
        EXIT_OK
    } else {
        println!("result     FAIL");
        for v in &outcome.violations {
            println!("  {v}");
        }
        EXIT_VIOLATED
    }
}

pub fn write_outputs(dir: &Path, outcome: &RunOutcome) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = std::fs::File::create(dir.join("history.jsonl"))?;
    let mut writer = HistoryWriter::new(std::io::BufWriter::new(file));
    for e in &outcome.events {
        writer
            .write(e)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    writer
        .flush()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut journal = String::new();
    for a in &outcome.attempts {
        journal.push_str(&serde_json::to_string(a)?);
        journal.push('\n');
    }
    std::fs::write(dir.join("journal.jsonl"), journal)?;
    let mut summary = serde_json::to_string_pretty(&outcome.summary)?;
    summary.push('\n');
    std::fs::write(dir.join("summary.json"), summary)?;
    crate::report::write(dir, &outcome.summary)
}

/// Writes the scenario the run ran as `scenario.toml`, with `seed` set: the file itself, or
/// the `[swarm]` draw. `fathom run DIR/scenario.toml` replays the run, and `fathom shrink`
/// starts from it.
fn write_scenario(
    path: &Path,
    dir: &Path,
    seed: u64,
    drawn: Option<&(String, Vec<String>)>,
) -> std::io::Result<()> {
    let text = match drawn {
        Some((text, _)) => text.clone(),
        None => {
            let source = std::fs::read_to_string(path)?;
            let mut text = ScenarioText::parse(&source, &path.display().to_string())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            text.set("seed", seed as i64);
            text.text()
        }
    };
    std::fs::write(dir.join("scenario.toml"), text)
}

/// Parses `A..B` into a half-open range.
pub fn parse_seeds(s: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("--seeds: expected A..B, got `{s}`"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("--seeds: `{a}` is not a seed"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("--seeds: `{b}` is not a seed"))?;
    if b <= a {
        return Err(format!("--seeds: the range {a}..{b} is empty"));
    }
    Ok(a..b)
}

pub use crate::explore::ExploreOptions;

/// `fathom explore`: the seeds of `seeds` in `shard` (every seed without one); prints each
/// finding with its replay command, and with `result` writes the result as JSON.
pub fn explore(
    path: &Path,
    seeds: &str,
    shard: Option<&str>,
    result_file: Option<&Path>,
    options: &ExploreOptions,
) -> u8 {
    let scenario = match load(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let parsed = parse_seeds(seeds).and_then(|range| {
        let shard = shard.map_or(Ok(explore::Shard::ALL), explore::Shard::parse)?;
        Ok((range, shard))
    });
    let (range, shard) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let bar = indicatif::ProgressBar::new(shard.len(range.clone()));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seeds  {elapsed_precise}  {msg}",
        )
        .expect("a valid template"),
    );
    let on_seed = |found: usize| {
        if found > 0 {
            bar.set_message(format!("{found} found"));
        }
        bar.inc(1);
    };
    let result = explore::explore(&scenario, path, range, shard, options, &on_seed);
    bar.finish();
    print!("{}", result.text());
    if let Some(file) = result_file {
        if let Err(e) = write_json(file, &result) {
            eprintln!("error: cannot write {}: {e}", file.display());
            return EXIT_BAD_INPUT;
        }
        println!("wrote      {}", file.display());
    }
    if result.findings() == 0 {
        EXIT_OK
    } else {
        EXIT_VIOLATED
    }
}

fn write_json<T: serde::Serialize>(file: &Path, value: &T) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(file, text)
}

/// `fathom explore-merge`: combines the result files of an exploration's shards, prints the
/// combined report (and writes it as JSON with `result`). Exits 2 when the files do not belong
/// together or shards are missing, else as `explore` would have.
pub fn explore_merge(files: &[PathBuf], result_file: Option<&Path>) -> u8 {
    let mut results = Vec::new();
    for file in files {
        let read = std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()));
        match read {
            Ok(r) => results.push((file.display().to_string(), r)),
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                return EXIT_BAD_INPUT;
            }
        }
    }
    let merged = match explore::merge(&results) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    print!("{}", merged.result.text());
    if let Some(file) = result_file {
        if let Err(e) = write_json(file, &merged.result) {
            eprintln!("error: cannot write {}: {e}", file.display());
            return EXIT_BAD_INPUT;
        }
        println!("wrote      {}", file.display());
    }
    if !merged.missing.is_empty() {
        let missing: Vec<String> = merged
            .missing
            .iter()
            .map(|s| format!("{}/{}", s.index, s.count))
            .collect();
        println!("incomplete: shards {} missing", missing.join(", "));
        return EXIT_BAD_INPUT;
    }
    if merged.result.findings() == 0 {
        EXIT_OK
    } else {
        EXIT_VIOLATED
    }
}

/// What `fathom bench-sim` runs without `--scenario`: issue 11's standard scenario and the
/// quickstart.
pub const BENCH_SCENARIOS: [&str; 2] = ["scenarios/standard.toml", "scenarios/quickstart.toml"];

/// What `fathom bench-sim` runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Scenario files, each run once.
    pub scenarios: Vec<PathBuf>,
    /// The seed of every run (default: each scenario's own).
    pub seed: Option<u64>,
    /// Seeds of an exploration of `explore_scenario` to time, with `jobs` threads.
    pub explore_seeds: Option<u64>,
    pub explore_scenario: PathBuf,
    pub jobs: usize,
    /// A `fathom` binary of the other harness's build, run with the same options after this
    /// one's runs so both appear in one table.
    pub also: Option<PathBuf>,
    /// Print the figures as JSON ([`crate::bench::BenchReport`]) instead of the table.
    pub json: bool,
}

impl BenchOptions {
    /// The arguments that make another `fathom` binary measure what this one does.
    fn args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec!["bench-sim".into(), "--json".into()];
        for s in &self.scenarios {
            args.extend(["--scenario".into(), s.clone().into_os_string()]);
        }
        if let Some(seed) = self.seed {
            args.extend(["--seed".into(), seed.to_string().into()]);
        }
        if let Some(n) = self.explore_seeds {
            args.extend(["--explore-seeds".into(), n.to_string().into()]);
            args.extend([
                "--explore-scenario".into(),
                self.explore_scenario.clone().into_os_string(),
            ]);
        }
        args.extend(["--jobs".into(), self.jobs.to_string().into()]);
        args
    }
}

/// `fathom bench-sim`: runs each scenario once and prints how fast the simulator ran it, then
/// optionally times an exploration.
pub fn bench_sim(options: &BenchOptions) -> u8 {
    let mut report = match measure_here(options) {
        Ok(r) => r,
        Err(code) => return code,
    };
    // The other build's failure still leaves this one's figures worth printing.
    let mut other_failed = None;
    if let Some(binary) = &options.also {
        match measure_with(binary, options) {
            Ok(other) => {
                report.runs.extend(other.runs);
                report.explored.extend(other.explored);
            }
            Err(e) => other_failed = Some((binary, e)),
        }
    }
    if options.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_BAD_INPUT;
            }
        }
    } else {
        print!("{}", crate::bench::table(&report));
    }
    match other_failed {
        Some((binary, e)) => {
            eprintln!("error: --also {}: {e}", binary.display());
            e.exit_code()
        }
        None if report.failed() => EXIT_VIOLATED,
        None => EXIT_OK,
    }
}

/// Why another build gave no figures.
#[derive(Debug, thiserror::Error)]
enum OtherBuild {
    /// It ran, and a run failed before it could be measured (its exit 1, nothing printed).
    #[error("a run failed (its error is above)")]
    RunFailed,
    #[error("{0}")]
    Unusable(String),
}

impl OtherBuild {
    fn exit_code(&self) -> u8 {
        match self {
            OtherBuild::RunFailed => EXIT_VIOLATED,
            OtherBuild::Unusable(_) => EXIT_BAD_INPUT,
        }
    }
}

/// This binary's runs and exploration.
fn measure_here(options: &BenchOptions) -> Result<crate::bench::BenchReport, u8> {
    let mut report = crate::bench::BenchReport::default();
    for path in &options.scenarios {
        let scenario = load(path)?;
        let seed = options.seed.unwrap_or(scenario.seed);
        match crate::bench::measure(&scenario, seed) {
            Ok(m) => report.runs.push(m),
            Err(e) => {
                eprintln!("error: {} seed {seed}: {e}", path.display());
                return Err(EXIT_VIOLATED);
            }
        }
    }
    if let Some(seeds) = options.explore_seeds {
        let scenario = load(&options.explore_scenario)?;
        report.explored.push(crate::bench::measure_explore(
            &scenario,
            &options.explore_scenario,
            seeds,
            options.jobs,
        ));
    }
    Ok(report)
}

/// Another build's figures: runs `binary bench-sim --json` with the same options. It runs
/// after this binary's own measurements, never beside them, so neither slows the other. The
/// two builds must come from the same commit: the figures' JSON admits no unknown field.
fn measure_with(
    binary: &Path,
    options: &BenchOptions,
) -> Result<crate::bench::BenchReport, OtherBuild> {
    let output = std::process::Command::new(binary)
        .args(options.args())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| OtherBuild::Unusable(e.to_string()))?;
    // Exit 1 is a run that failed its bounds, whose figures still come, marked FAIL; or,
    // with nothing printed, a run that failed outright.
    match output.status.code() {
        Some(1) if output.stdout.is_empty() => return Err(OtherBuild::RunFailed),
        Some(0 | 1) => {}
        _ => {
            let status = output.status;
            return Err(OtherBuild::Unusable(format!("exited with {status}")));
        }
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| OtherBuild::Unusable(format!("its figures (built from another commit?): {e}")))
}

/// `fathom shrink`: shrinks a violating run's fault schedule, writes `RUN_DIR/shrunk.toml`
/// and prints it.
pub fn shrink(dir: &Path, seed_wall: std::time::Duration) -> u8 {
    let limits = run::RunLimits {
        wall: Some(seed_wall),
    };
    let shrunk = match crate::shrink::shrink(dir, limits) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let out = dir.join("shrunk.toml");
    if let Err(e) = std::fs::write(&out, &shrunk.text) {
        eprintln!("error: cannot write {}: {e}", out.display());
        return EXIT_BAD_INPUT;
    }
    print!("{}", shrunk.text);
    println!(
        "shrunk     {} faults to {} and disk fault models {} to {} in {} runs; seed {} still \
         violates `{}`",
        shrunk.faults_before,
        shrunk.faults.len(),
        crate::shrink::names_or_none(&shrunk.disk_models_before),
        crate::shrink::names_or_none(&shrunk.disk_models),
        shrunk.runs,
        shrunk.seed,
        shrunk.key
    );
    println!("wrote      {}", out.display());
    println!("replay     cargo run --release -- run {}", out.display());
    EXIT_OK
}

/// `fathom experiment`: runs one experiment and writes `<reports>/<id>/`, then refreshes the
/// claims index from every experiment's results.
pub fn experiment(path: &Path, reports: &Path, jobs: Option<usize>) -> u8 {
    let e = match Experiment::load(path) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_BAD_INPUT;
        }
    };
    match run_experiment(&e, reports, jobs).and_then(|_| index::write(reports)) {
        Ok(_) => EXIT_OK,
        Err(err) => {
            eprintln!("error: {err}");
            EXIT_VIOLATED
        }
    }
}

/// `fathom report`: every experiment in `experiments`, then the index.
pub fn report(experiments: &Path, reports: &Path, jobs: Option<usize>) -> u8 {
    let files = match experiment::files_in(experiments) {
        Ok(f) => f,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_BAD_INPUT;
        }
    };
    let mut loaded = Vec::new();
    for f in &files {
        match Experiment::load(f) {
            Ok(e) => loaded.push(e),
            Err(err) => {
                eprintln!("error: {err}");
                return EXIT_BAD_INPUT;
            }
        }
    }
    for e in &loaded {
        if let Err(err) = run_experiment(e, reports, jobs) {
            eprintln!("error: {err}");
            return EXIT_VIOLATED;
        }
    }
    match index::write(reports) {
        Ok(entries) => {
            for c in entries {
                println!("{:<3} {:<12} {}", c.id, c.verdict, c.experiment);
            }
            EXIT_OK
        }
        Err(err) => {
            eprintln!("error: {err}");
            EXIT_VIOLATED
        }
    }
}

/// Runs `e` with a progress bar and writes its folder; prints its verdict.
pub fn run_experiment(
    e: &Experiment,
    reports: &Path,
    jobs: Option<usize>,
) -> Result<(), experiment::ExperimentError> {
    let jobs = jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let runs = (e.points().len() * e.seeds.len()) as u64;
    let bar = indicatif::ProgressBar::new(runs);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:<24} {bar:30} {pos}/{len} runs  {elapsed}",
        )
        .expect("a valid template"),
    );
    bar.set_prefix(e.id.clone());
    let results = experiment::runner::run_all(e, jobs, &|| bar.inc(1))?;
    bar.finish_and_clear();
    let judgement = experiment::verdict::judge(e, &results);
    experiment::render::write(&reports.join(&e.id), e, &results, &judgement)?;
    println!("{:<24} {}: {}", e.id, e.claim, judgement.verdict_text());
    Ok(())
}

/// `fathom trace`: one message's life in a run directory, from `history.jsonl` and
/// `journal.jsonl`: its send, every attempt with its broker and error, its fate, and every
/// delivery.
pub fn trace(dir: &Path, id: &str) -> u8 {
    match trace_lines(dir, id) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_BAD_INPUT
        }
    }
}

/// The lines `fathom trace` prints: the message's send, attempts and deliveries in time order,
/// then its fate.
pub fn trace_lines(dir: &Path, id: &str) -> Result<Vec<String>, String> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let events = history::read_jsonl(&read("history.jsonl")?).map_err(|e| e.to_string())?;
    let attempts = attempts_of(&read("journal.jsonl")?, id)?;
    let mut timeline = Timeline::default();
    for e in &events {
        match &e.op {
            Op::Send { id: i, .. } if i == id => timeline.send(e),
            Op::Poll { .. } if e.kind == EventType::Ok => timeline.deliveries(e, id),
            _ => {}
        }
    }
    for a in &attempts {
        timeline.attempt(a);
    }
    if timeline.entries.is_empty() {
        return Err(format!("no message {id:?} in {}", dir.display()));
    }
    Ok(timeline.lines(id, attempts.len()))
}

/// The journal's attempts that carried message `id`.
fn attempts_of(
    journal: &str,
    id: &str,
) -> Result<Vec<fathom_workload::trace::AttemptRecord>, String> {
    let mut attempts = Vec::new();
    for (n, line) in journal.lines().enumerate() {
        let a: fathom_workload::trace::AttemptRecord =
            serde_json::from_str(line).map_err(|e| format!("journal.jsonl line {}: {e}", n + 1))?;
        if a.ids.iter().any(|i| i == id) {
            attempts.push(a);
        }
    }
    Ok(attempts)
}

/// One message's events as `fathom trace` prints them.
#[derive(Default)]
struct Timeline {
    /// (time, order among events at the same time: send 0, attempt 1, delivery 2, line).
    entries: Vec<(u64, usize, String)>,
    fate: Option<String>,
    /// The processes that received it, once per delivery.
    deliveries: Vec<String>,
}

const ORDER_SEND: usize = 0;
const ORDER_ATTEMPT: usize = 1;
const ORDER_DELIVERY: usize = 2;

fn ms(ns: u64) -> String {
    format!("{:>12.3} ms", ns as f64 / 1e6)
}

impl Timeline {
    /// A send event of the message: its invocation or its outcome, which is its fate.
    fn send(&mut self, e: &history::Event) {
        let Op::Send {
            topic,
            partition,
            offset,
            error,
            ..
        } = &e.op
        else {
            return;
        };
        let error = error.clone().unwrap_or_default();
        let what = match (e.kind, offset) {
            (EventType::Invoke, _) => format!("send invoked for {topic}/{partition}"),
            (EventType::Ok, Some(o)) => {
                self.fate = Some(format!("acknowledged at {topic}/{partition} offset {o}"));
                format!("acknowledged at offset {o}")
            }
            (EventType::Fail, _) => {
                self.fate = Some(format!("failed for certain: {error}"));
                format!("failed: {error}")
            }
            _ => {
                self.fate = Some(format!("unknown: {error}"));
                format!("outcome unknown: {error}")
            }
        };
        let line = format!("{}  {:<12} {what}", ms(e.time_ns), e.process);
        self.entries.push((e.time_ns, ORDER_SEND, line));
    }

    /// Every record of message `id` in a successful poll.
    fn deliveries(&mut self, e: &history::Event, id: &str) {
        let Op::Poll {
            topic,
            partition,
            records,
        } = &e.op
        else {
            return;
        };
        for (offset, _) in records.iter().filter(|(_, i)| i == id) {
            self.deliveries.push(e.process.clone());
            let line = format!(
                "{}  {:<12} delivered from {topic}/{partition} offset {offset}",
                ms(e.time_ns),
                e.process
            );
            self.entries.push((e.time_ns, ORDER_DELIVERY, line));
        }
    }

    fn attempt(&mut self, a: &fathom_workload::trace::AttemptRecord) {
        let outcome = match (&a.offset, &a.error) {
            (Some(base), _) => format!("ok, batch at base offset {base}"),
            (None, Some(err)) => format!("error: {err}"),
            (None, None) => "no outcome".to_string(),
        };
        let line = format!(
            "{}  {:<12} attempt {} to broker-{} ({} messages in the batch); {} after {:.3} ms",
            ms(a.sent_ns),
            a.process,
            a.attempt,
            a.broker,
            a.ids.len(),
            outcome,
            a.resolved_ns.saturating_sub(a.sent_ns) as f64 / 1e6
        );
        self.entries.push((a.sent_ns, ORDER_ATTEMPT, line));
    }

    fn lines(mut self, id: &str, attempts: usize) -> Vec<String> {
        self.entries.sort();
        let mut lines = vec![format!("message {id}")];
        lines.extend(self.entries.into_iter().map(|(_, _, l)| l));
        let delivered_by = if self.deliveries.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.deliveries.join(", "))
        };
        lines.push(format!(
            "fate: {}; {attempts} attempt(s); delivered {} time(s){delivered_by}",
            self.fate.unwrap_or_else(|| "never resolved".into()),
            self.deliveries.len(),
        ));
        lines
    }
}
