//! Runs every point × seed of an experiment on a pool of threads and collects a flat set of
//! numbers per run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::metric::{Judged, Metric};
use super::stats::{self, Proportion};
use super::{ChartKind, Experiment, ExperimentError, Point};
use crate::consumption::{backlog_over_time, GroupBacklog};
use crate::metrics::round3;
use crate::run::{self, RunOutcome};

/// One run's numbers.
pub type Numbers = BTreeMap<Metric, f64>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedResult {
    pub seed: u64,
    pub trace_hash: String,
    pub numbers: Numbers,
    /// Backlog per consumer instance over time: kept for the experiment's first seed when it
    /// draws a `backlog_over_time` chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_over_time: Option<Vec<GroupBacklog>>,
}

/// One metric over the seeds of a point.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Deserialize)]
pub struct Spread {
    pub median: f64,
    /// The 95% interval of the median ([`stats::median_interval`]); absent below 6 seeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    pub min: f64,
    pub max: f64,
    /// For a [`Judged::WorstSeed`] metric: the seeds where it was above zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds_above_zero: Option<Proportion>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PointResult {
    pub labels: BTreeMap<String, String>,
    #[serde(skip)]
    pub point: Point,
    pub spread: BTreeMap<Metric, Spread>,
    pub seeds: Vec<SeedResult>,
}

impl PointResult {
    /// The backlog over time of the first seed that kept it.
    pub fn backlog_over_time(&self) -> Option<(u64, &[GroupBacklog])> {
        self.seeds
            .iter()
            .find_map(|s| Some((s.seed, s.backlog_over_time.as_deref()?)))
    }

    /// `metric` over the seeds; `None` if no run measured it.
    pub fn spread(&self, metric: Metric) -> Option<&Spread> {
        self.spread.get(&metric)
    }

    pub fn label(&self, axis: &str) -> &str {
        self.labels.get(axis).map(String::as_str).unwrap_or("")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub id: String,
    pub claim: String,
    pub axes: Vec<String>,
    pub points: Vec<PointResult>,
}

impl Results {
    /// The point whose label on each named axis matches.
    pub fn at<'a>(
        &self,
        labels: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Option<&PointResult> {
        self.points
            .iter()
            .find(|p| labels.clone().into_iter().all(|(a, l)| p.label(a) == l))
    }
}

/// Runs the whole experiment with `threads` workers, calling `progress` after each run.
pub fn run_all(
    e: &Experiment,
    threads: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<Results, ExperimentError> {
    let points = e.points();
    let scenarios = points
        .iter()
        .map(|p| e.scenario_at(p))
        .collect::<Result<Vec<_>, _>>()?;
    let used = e.metrics_used();
    let charts_backlog = e
        .charts
        .iter()
        .any(|c| c.kind == ChartKind::BacklogOverTime);
    let backlog_seed = e.seeds.first().copied().filter(|_| charts_backlog);
    let jobs: Vec<(usize, u64)> = (0..points.len())
        .flat_map(|p| e.seeds.iter().map(move |&s| (p, s)))
        .collect();
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<Result<SeedResult, String>>>> = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(p, seed)) = jobs.get(j) else { break };
                let result = run::run(&scenarios[p], seed)
                    .map(|o| SeedResult {
                        seed,
                        trace_hash: o.summary.trace_hash.clone(),
                        numbers: numbers(&o, &used),
                        backlog_over_time: (backlog_seed == Some(seed))
                            .then(|| backlog_over_time(&o.events)),
                    })
                    .map_err(|err| format!("point {}, seed {seed}: {err}", points[p].name()));
                out.lock().expect("no worker panics holding it")[j] = Some(result);
                progress();
            });
        }
    });
    let out = out.into_inner().expect("no worker panicked");
    let mut per_point: Vec<Vec<SeedResult>> = vec![Vec::new(); points.len()];
    for ((p, _), r) in jobs.iter().zip(out) {
        let r = r
            .expect("every job ran")
            .map_err(|message| ExperimentError::Invalid {
                path: e.source.clone(),
                message,
            })?;
        per_point[*p].push(r);
    }
    let axes: Vec<String> = e.axes.iter().map(|a| a.name.clone()).collect();
    let points = points
        .into_iter()
        .zip(per_point)
        .map(|(point, seeds)| PointResult {
            labels: axes.iter().cloned().zip(point.labels.clone()).collect(),
            point,
            spread: spread(&seeds),
            seeds,
        })
        .collect();
    Ok(Results {
        id: e.id.clone(),
        claim: e.claim.clone(),
        axes,
        points,
    })
}

fn spread(seeds: &[SeedResult]) -> BTreeMap<Metric, Spread> {
    let mut out = BTreeMap::new();
    for metric in Metric::all() {
        let mut v: Vec<f64> = seeds
            .iter()
            .filter_map(|s| s.numbers.get(&metric).copied())
            .collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let seeds_above_zero = (metric.judged() == Judged::WorstSeed).then(|| {
            let k = v.iter().filter(|x| **x > 0.0).count();
            Proportion::new(k as u64, v.len() as u64)
        });
        out.insert(
            metric,
            Spread {
                median: round3(stats::median(&v)),
                interval: stats::median_interval(&v),
                min: v[0],
                max: v[v.len() - 1],
                seeds_above_zero,
            },
        );
    }
    out
}

/// The numbers of one run: each metric of `used` it measured. Only what the experiment uses
/// is kept, so that a metric added to the table later leaves committed results as they are.
pub fn numbers(o: &RunOutcome, used: &BTreeSet<Metric>) -> Numbers {
    used.iter()
        .filter_map(|&m| m.value(o).map(|v| (m, round3(v))))
        .collect()
}
