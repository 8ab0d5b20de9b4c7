//! `fathom shrink`: from a violating run to a smaller fault schedule that still breaks the same
//! bound (Zeller and Hildebrandt, "Simplifying and Isolating Failure-Inducing Input", 2002).
//!
//! It starts from the run folder's `scenario.toml` (the scenario as run, `[swarm]` draws
//! included, with its seed), drops the faults that start after the violation no longer needs
//! them (a prefix in time), delta-debugs the `[[faults]]` list, then shortens each remaining
//! fault and rounds its start, and last switches off each `[disk]` fault model that the
//! violation does not need (a storage failure restarts a broker, so an EIO model is a fault
//! schedule of its own, and a schedule of zero faults may still need it). Every candidate is
//! written as scenario text and parsed back before it runs, so the result is exactly what
//! `fathom run` on the written file does.

use std::path::{Path, PathBuf};

use crate::run::{self, RunError, RunLimits};
use crate::scenario::write::ScenarioText;
use crate::scenario::{Fault, Scenario, ScenarioError};

/// How many times one fault's duration is halved at most.
const HALVINGS_MAX: u32 = 4;
/// Runs one shrink may spend; past it the smallest schedule so far is the answer.
pub const RUNS_MAX: usize = 200;
/// The `[disk]` keys that switch a fault model on (see [`crate::scenario::DiskSpec`]), tried
/// off one at a time; the others (sync time, writeback) shape the disk without faulting it.
pub const DISK_FAULT_KEYS: [&str; 4] = [
    "block_size",
    "io_error_probability",
    "corruption_probability",
    "capacity_bytes",
];

#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("seed {seed}: {source}")]
    Run { seed: u64, source: RunError },
    #[error("{} violates no bound at seed {seed}: nothing to shrink", path.display())]
    NoViolation { path: PathBuf, seed: u64 },
}

/// What a shrink found.
pub struct Shrunk {
    /// The bound still violated (a [`crate::violation::Violation::key`]).
    pub key: &'static str,
    pub seed: u64,
    pub faults_before: usize,
    pub faults: Vec<Fault>,
    /// The `[disk]` fault models still on (of [`DISK_FAULT_KEYS`]), before and after.
    pub disk_models_before: Vec<&'static str>,
    pub disk_models: Vec<&'static str>,
    /// The shrunk scenario file.
    pub text: String,
    pub runs: usize,
}

/// Shrinks the run in `dir`; `wall` limits each candidate run.
pub fn shrink(dir: &Path, limits: RunLimits) -> Result<Shrunk, ShrinkError> {
    let path = dir.join("scenario.toml");
    let source = std::fs::read_to_string(&path).map_err(|source| ShrinkError::Io {
        path: path.clone(),
        source,
    })?;
    let name = path.display().to_string();
    let scenario = Scenario::from_toml_str(&source, &name)?;
    let seed = scenario.seed;
    let first = run::run_with_limits(&scenario, seed, limits)
        .map_err(|source| ShrinkError::Run { seed, source })?;
    let key = first
        .violations
        .first()
        .map(|v| v.key())
        .ok_or(ShrinkError::NoViolation { path, seed })?;
    let mut search = Search {
        source: &source,
        name: &name,
        seed,
        key,
        limits,
        runs: 1,
        disk_off: Vec::new(),
    };
    let disk_models_before = disk_models_on(&scenario);
    let faults = search.prefix(scenario.faults.clone())?;
    let faults = search.faults(faults)?;
    let faults = search.timings(faults)?;
    search.disk_models(&faults, &disk_models_before)?;
    let disk_models: Vec<&'static str> = disk_models_before
        .iter()
        .copied()
        .filter(|k| !search.disk_off.contains(k))
        .collect();
    let mut text = search.text(&faults)?;
    text.prepend_comment(&format!(
        "# Shrunk by `fathom shrink` from {} to {} faults (disk fault models on: {}): seed {seed} \
         still violates `{key}`.\n",
        scenario.faults.len(),
        faults.len(),
        names_or_none(&disk_models)
    ));
    Ok(Shrunk {
        key,
        seed,
        faults_before: scenario.faults.len(),
        faults,
        disk_models_before,
        disk_models,
        text: text.text(),
        runs: search.runs,
    })
}

struct Search<'a> {
    source: &'a str,
    name: &'a str,
    seed: u64,
    key: &'static str,
    limits: RunLimits,
    runs: usize,
    /// `[disk]` fault models switched off so far.
    disk_off: Vec<&'static str>,
}

/// The disk fault models `scenario` switches on, in [`DISK_FAULT_KEYS`] order.
fn disk_models_on(scenario: &Scenario) -> Vec<&'static str> {
    let d = &scenario.disk;
    let on = [
        d.block_size > 0,
        d.io_error_probability > 0.0,
        d.corruption_probability > 0.0,
        d.capacity_bytes > 0,
    ];
    DISK_FAULT_KEYS
        .iter()
        .zip(on)
        .filter(|&(_, on)| on)
        .map(|(k, _)| *k)
        .collect()
}

/// `a, b` or `none`.
pub fn names_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

impl Search<'_> {
    fn text(&self, faults: &[Fault]) -> Result<ScenarioText, ScenarioError> {
        let mut text = ScenarioText::parse(self.source, self.name)?;
        text.set_faults(faults);
        for key in &self.disk_off {
            text.remove_path(&format!("disk.{key}"));
        }
        Ok(text)
    }

    /// Whether the scenario with `faults` still violates the bound. A candidate over the wall
    /// time or out of the run budget counts as not violating.
    fn violates(&mut self, faults: &[Fault]) -> Result<bool, ShrinkError> {
        if self.runs >= RUNS_MAX {
            return Ok(false);
        }
        self.runs += 1;
        let scenario = Scenario::from_toml_str(&self.text(faults)?.text(), self.name)?;
        match run::run_with_limits(&scenario, self.seed, self.limits) {
            Ok(o) => Ok(o.violations.iter().any(|v| v.key() == self.key)),
            Err(RunError::WallTime { .. }) => Ok(false),
            Err(source) => Err(ShrinkError::Run {
                seed: self.seed,
                source,
            }),
        }
    }

    /// The faults that start up to the earliest time the violation still needs. A run is
    /// deterministic, so faults that start after the bug has struck cannot matter to it, yet
    /// ddmin would spend runs on them, and taking one of them away with its neighbours
    /// changes the timing of the rest. Binary search over the distinct start times (it
    /// assumes a longer prefix violates whenever a shorter one does; where it does not, the
    /// answer is still a violating prefix).
    fn prefix(&mut self, faults: Vec<Fault>) -> Result<Vec<Fault>, ShrinkError> {
        let mut starts: Vec<f64> = faults.iter().map(|f| f.at_s).collect();
        starts.sort_by(f64::total_cmp);
        starts.dedup();
        let up_to =
            |t: f64| -> Vec<Fault> { faults.iter().filter(|f| f.at_s <= t).cloned().collect() };
        // Invariant: the prefix up to starts[hi] violates (the whole schedule does).
        let (mut lo, mut hi) = (0usize, starts.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.violates(&up_to(starts[mid]))? {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(match starts.get(hi) {
            Some(&t) => up_to(t),
            None => faults,
        })
    }

    /// ddmin over the fault list: try each chunk alone, then each complement, refining the
    /// chunks until no single fault can go.
    fn faults(&mut self, mut faults: Vec<Fault>) -> Result<Vec<Fault>, ShrinkError> {
        let mut n = 2usize;
        while faults.len() >= 2 {
            let chunks = chunk(&faults, n);
            let mut reduced = false;
            for c in &chunks {
                if self.violates(c)? {
                    faults = c.clone();
                    n = 2;
                    reduced = true;
                    break;
                }
            }
            if !reduced {
                for i in 0..chunks.len() {
                    let rest: Vec<Fault> = chunks
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .flat_map(|(_, c)| c.iter().cloned())
                        .collect();
                    if self.violates(&rest)? {
                        faults = rest;
                        n = (n - 1).max(2);
                        reduced = true;
                        break;
                    }
                }
            }
            if !reduced {
                if n >= faults.len() {
                    break;
                }
                n = (n * 2).min(faults.len());
            }
        }
        if faults.len() == 1 && self.violates(&[])? {
            faults.clear();
        }
        Ok(faults)
    }

    /// Switches off each disk fault model of `on` that the violation does not need.
    fn disk_models(&mut self, faults: &[Fault], on: &[&'static str]) -> Result<(), ShrinkError> {
        for &key in on {
            self.disk_off.push(key);
            if !self.violates(faults)? {
                self.disk_off.pop();
            }
        }
        Ok(())
    }

    /// Shorter faults, then starts rounded to a tenth of a second.
    fn timings(&mut self, mut faults: Vec<Fault>) -> Result<Vec<Fault>, ShrinkError> {
        for i in 0..faults.len() {
            for _ in 0..HALVINGS_MAX {
                let Some(until) = faults[i].until_s else {
                    break;
                };
                let mut shorter = faults.clone();
                let at = faults[i].at_s;
                shorter[i].until_s = Some(at + ((until - at) / 2.0 * 1e3).round() / 1e3);
                if shorter[i].until_s == faults[i].until_s || !self.violates(&shorter)? {
                    break;
                }
                faults = shorter;
            }
            let rounded = (faults[i].at_s * 10.0).round() / 10.0;
            if rounded != faults[i].at_s && faults[i].until_s.is_none_or(|u| u > rounded) {
                let mut moved = faults.clone();
                moved[i].at_s = rounded;
                if self.violates(&moved)? {
                    faults = moved;
                }
            }
        }
        Ok(faults)
    }
}

/// `faults` in `n` nearly equal consecutive chunks.
fn chunk(faults: &[Fault], n: usize) -> Vec<Vec<Fault>> {
    let n = n.min(faults.len()).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..n {
        let end = start + (faults.len() - start) / (n - i);
        out.push(faults[start..end].to_vec());
        start = end;
    }
    out
}
