//! Experiments: a base scenario, one or two swept parameters and a list of seeds, run to put one
//! claim of the source text to the test.
//!
//! An experiment file (TOML, in `scenarios/experiments/`) names its claim, the question, the
//! base scenario, the axes and the seeds. Every point of the sweep is the base scenario with the
//! axis values written into its TOML tree at dotted paths (`producers[0].mode`), then validated
//! like any scenario file. [`runner`] runs every point × seed and takes each run's
//! [`metric::Metric`]s, [`stats`] summarises them over seeds, [`verdict`] applies the
//! experiment's declared rules, [`render`] writes `reports/<id>/` (README.md, results.json, SVG
//! charts), and [`index`] writes `reports/README.md` and `reports/claims.json`.
//!
//! Everything an experiment names (metrics, axes, labels, verdict values and rules) is checked
//! when the file loads: a misspelt name is an error there, never a silent zero in a report.
//!
//! Nothing in a report depends on the wall clock or the machine: regenerating it gives the same
//! bytes.

pub mod format;
pub mod index;
pub mod metric;
pub mod render;
pub mod runner;
pub mod stats;
pub mod verdict;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::scenario::{Scenario, ScenarioError};
use metric::Metric;
use verdict::{Coverage, VerdictSpec};

/// Points in one experiment (the product of its axes); a bound on a report's run time.
pub const POINTS_MAX: usize = 64;
pub const SEEDS_MAX: usize = 64;
/// Seeds an experiment with a fault needs at least: safety is judged on the worst seed, and a
/// share of seeds needs this many for its interval to say anything (0 of 20: below 16%).
pub const FAULT_SEEDS_MIN: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}, point {point}: {source}")]
    Scenario {
        path: PathBuf,
        point: String,
        source: Box<ScenarioError>,
    },
}

/// An experiment file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// The report's folder under `reports/`.
    pub id: String,
    /// The claim of `claims.md` it tests (`P4`).
    pub claim: String,
    pub title: String,
    pub question: String,
    /// What the setup models, in a sentence or two, for the report.
    #[serde(default)]
    pub setup: String,
    /// The base scenario, relative to the experiment file.
    pub scenario: PathBuf,
    pub seeds: Vec<u64>,
    /// One or two axes.
    pub axes: Vec<Axis>,
    /// Result columns of the report's table.
    pub columns: Vec<Metric>,
    #[serde(default)]
    pub charts: Vec<ChartSpec>,
    /// What the claim predicts, in measured terms.
    pub verdict: VerdictSpec,
    /// Which parts of the claim this experiment tests.
    pub coverage: Coverage,
    /// Where the file was read from, for base-scenario paths and errors.
    #[serde(skip)]
    pub source: PathBuf,
    #[serde(skip)]
    pub base_text: String,
}

/// A swept parameter: a name and the values it takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    pub name: String,
    /// Dotted paths into the scenario (`producers[0].linger_ms`); every value is written to
    /// each of them. May be empty when `extra` says everything.
    #[serde(default)]
    pub params: Vec<String>,
    pub values: Vec<toml::Value>,
    /// How each value is shown; by default the value itself.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Extra settings per value: `extra[i]` is a table of dotted path → value for value `i`.
    #[serde(default)]
    pub extra: Vec<toml::Table>,
}

/// What a chart draws.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    /// `metric` against the numeric `x_axis`, one line per value of the other axis, with the
    /// spread over seeds as error bars.
    #[default]
    Sweep,
    /// One bar per point: the median of `metric`.
    Bars,
    /// One stacked bar per point: the mean end-to-end latency split into its parts (E1).
    Breakdown,
    /// Lines over simulated time, one per consumer instance and one for its group's pool: what
    /// each had waiting ([`crate::consumption::backlog`]), in the experiment's first seed. One
    /// chart per point, written to `{file stem}-{point}.svg`.
    BacklogOverTime,
}

impl ChartKind {
    /// Whether the chart draws a `metric` (the others know what they draw).
    pub fn takes_metric(self) -> bool {
        !matches!(self, ChartKind::Breakdown | ChartKind::BacklogOverTime)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    pub file: String,
    pub title: String,
    #[serde(default)]
    pub kind: ChartKind,
    /// The metric drawn (not for `breakdown`).
    pub metric: Option<Metric>,
    pub y_label: String,
    /// For `sweep`: the axis on the x axis (its labels must be numbers); the other axis, if
    /// any, gives the series.
    #[serde(default)]
    pub x_axis: String,
    #[serde(default)]
    pub log_x: bool,
    #[serde(default)]
    pub log_y: bool,
    /// For `bars` and `breakdown`: draw only the points with this label on this axis (the
    /// bars are then named by the other axis).
    pub only: Option<OnlyPoints>,
    /// For `bars` and `breakdown`: the x axis title; by default the names of the axes the bars
    /// stand for.
    pub x_label: Option<String>,
    /// Analytic bounds the claim rests on, drawn as dashed lines (sweeps and bars).
    #[serde(default)]
    pub bounds: Vec<BoundSpec>,
}

impl ChartSpec {
    /// The points the chart draws: those with its `only` label, or all.
    pub fn points(&self, e: &Experiment) -> Vec<Point> {
        let shown = |p: &Point| {
            self.only.as_ref().is_none_or(|o| {
                let axis = e.axes.iter().position(|a| a.name == o.axis);
                axis.is_some_and(|i| p.labels[i] == o.label)
            })
        };
        e.points().into_iter().filter(shown).collect()
    }

    /// The files the chart writes: its `file`, or for a backlog over time one per point
    /// (`backlog.svg` → `backlog-share-10-per-fetch.svg`), each with its point.
    pub fn files(&self, e: &Experiment) -> Vec<(String, Option<Point>)> {
        if self.kind != ChartKind::BacklogOverTime {
            return vec![(self.file.clone(), None)];
        }
        let stem = self.file.strip_suffix(".svg").unwrap_or(&self.file);
        self.points(e)
            .into_iter()
            .map(|p| (format!("{stem}-{}.svg", slug(&p.name())), Some(p)))
            .collect()
    }
}

/// A point's name as part of a file name: lower-case letters and digits, runs of anything
/// else one `-`.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// An analytic bound on a chart: exactly one of `y` (a horizontal line), `slope` (`y = slope ×
/// x`) and `inverse` (`y = inverse ÷ x`); the label says where the constant comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundSpec {
    pub label: String,
    pub y: Option<f64>,
    pub slope: Option<f64>,
    pub inverse: Option<f64>,
}

impl BoundSpec {
    /// The line through the chart's `xs` (a sweep's x values; unused by a horizontal line).
    pub fn line(&self, xs: &[f64]) -> Option<crate::chart::Bound> {
        use crate::chart::Bound;
        let through = |f: &dyn Fn(f64) -> f64| {
            let points = xs.iter().map(|&x| (x, f(x))).collect();
            Bound::through(self.label.clone(), points)
        };
        match (self.y, self.slope, self.inverse) {
            (Some(y), None, None) => Some(Bound::horizontal(self.label.clone(), y)),
            (None, Some(k), None) => Some(through(&|x| k * x)),
            (None, None, Some(k)) => Some(through(&|x| k / x)),
            _ => None,
        }
    }

    fn check(&self, kind: ChartKind) -> Result<(), String> {
        let set = [self.y, self.slope, self.inverse]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set != 1 {
            return Err(format!(
                "bound {:?}: give exactly one of y, slope, inverse",
                self.label
            ));
        }
        if self.y.is_none() && kind != ChartKind::Sweep {
            return Err(format!(
                "bound {:?}: only a sweep has a numeric x axis for slope or inverse",
                self.label
            ));
        }
        if [self.y, self.slope, self.inverse]
            .iter()
            .flatten()
            .any(|v| !v.is_finite())
        {
            return Err(format!("bound {:?}: not a finite number", self.label));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlyPoints {
    pub axis: String,
    pub label: String,
}

/// One point of the sweep: a label per axis.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Point {
    /// Index into each axis's values.
    pub index: Vec<usize>,
    pub labels: Vec<String>,
}

impl Point {
    pub fn name(&self) -> String {
        self.labels.join(", ")
    }
}

impl Axis {
    pub fn label(&self, i: usize) -> String {
        self.labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| value_label(&self.values[i]))
    }
}

fn value_label(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => a.iter().map(value_label).collect::<Vec<_>>().join("-"),
        other => other.to_string(),
    }
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Experiment, ExperimentError> {
        let io = |source| ExperimentError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(io)?;
        let invalid = |message: String| ExperimentError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut e: Experiment = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        e.source = path.to_path_buf();
        let base = path.parent().unwrap_or(Path::new(".")).join(&e.scenario);
        e.check().map_err(&invalid)?;
        e.base_text = std::fs::read_to_string(&base).map_err(|source| ExperimentError::Io {
            path: base.clone(),
            source,
        })?;
        e.verdict.check(&e).map_err(&invalid)?;
        // Every point must make a valid scenario.
        for p in e.points() {
            let scenario = e.scenario_at(&p)?;
            if !scenario.faults.is_empty() && e.seeds.len() < FAULT_SEEDS_MIN {
                return Err(invalid(format!(
                    "point {} injects faults: use at least {FAULT_SEEDS_MIN} seeds",
                    p.name()
                )));
            }
        }
        Ok(e)
    }

    fn check(&self) -> Result<(), String> {
        let valid_id = !self.id.is_empty()
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_id {
            return Err(format!("id {:?}: use a-z, 0-9 and '-'", self.id));
        }
        if self.axes.is_empty() || self.axes.len() > 2 {
            return Err("an experiment sweeps one or two axes".into());
        }
        if self.seeds.is_empty() || self.seeds.len() > SEEDS_MAX {
            return Err(format!("seeds: 1 ..= {SEEDS_MAX} seeds"));
        }
        for a in &self.axes {
            if a.values.is_empty() || (a.params.is_empty() && a.extra.is_empty()) {
                return Err(format!(
                    "axis {:?}: needs values, and params or extra",
                    a.name
                ));
            }
            if !a.labels.is_empty() && a.labels.len() != a.values.len() {
                return Err(format!("axis {:?}: one label per value", a.name));
            }
            if !a.extra.is_empty() && a.extra.len() != a.values.len() {
                return Err(format!("axis {:?}: one extra table per value", a.name));
            }
        }
        if self.points().len() > POINTS_MAX {
            return Err(format!("more than {POINTS_MAX} points"));
        }
        if self.coverage.tests.is_empty() {
            return Err("coverage.tests: name the parts of the claim this experiment tests".into());
        }
        for c in &self.charts {
            if c.kind.takes_metric() != c.metric.is_some() {
                return Err(format!(
                    "chart {:?}: a breakdown and a backlog over time take no metric, every \
                     other chart one",
                    c.file
                ));
            }
            if c.kind == ChartKind::BacklogOverTime && !c.bounds.is_empty() {
                return Err(format!(
                    "chart {:?}: a backlog over time has no bounds",
                    c.file
                ));
            }
            for b in &c.bounds {
                b.check(c.kind)
                    .map_err(|e| format!("chart {:?}: {e}", c.file))?;
            }
            if let Some(only) = &c.only {
                let known = self.axes.iter().any(|a| {
                    a.name == only.axis && (0..a.values.len()).any(|i| a.label(i) == only.label)
                });
                if !known {
                    return Err(format!(
                        "chart {:?}: no point has {:?} = {:?}",
                        c.file, only.axis, only.label
                    ));
                }
            }
            if c.kind == ChartKind::Sweep {
                let Some(axis) = self.axes.iter().find(|a| a.name == c.x_axis) else {
                    return Err(format!("chart {:?}: no axis {:?}", c.file, c.x_axis));
                };
                for i in 0..axis.values.len() {
                    if axis.label(i).parse::<f64>().is_err() {
                        return Err(format!(
                            "chart {:?}: axis {:?} label {:?} is not a number",
                            c.file,
                            axis.name,
                            axis.label(i)
                        ));
                    }
                }
            }
            if !c.file.ends_with(".svg") || c.file.contains('/') {
                return Err(format!(
                    "chart file {:?}: a plain name ending in .svg",
                    c.file
                ));
            }
        }
        let mut files = BTreeSet::new();
        for (file, _) in self.charts.iter().flat_map(|c| c.files(self)) {
            if !files.insert(file.clone()) {
                return Err(format!("chart file {file:?} is written twice"));
            }
        }
        Ok(())
    }

    /// Every point, first axis slowest.
    pub fn points(&self) -> Vec<Point> {
        let mut points = vec![Point {
            index: vec![],
            labels: vec![],
        }];
        for axis in &self.axes {
            let mut next = Vec::new();
            for p in &points {
                for i in 0..axis.values.len() {
                    let mut q = p.clone();
                    q.index.push(i);
                    q.labels.push(axis.label(i));
                    next.push(q);
                }
            }
            points = next;
        }
        points
    }

    /// Every metric the experiment tabulates, charts or judges: what its results keep.
    pub fn metrics_used(&self) -> BTreeSet<Metric> {
        let mut used: BTreeSet<Metric> = self.columns.iter().copied().collect();
        for c in &self.charts {
            used.extend(c.metric);
            if c.kind == ChartKind::Breakdown {
                used.extend(metric::BREAKDOWN.iter().map(|(_, m)| *m));
            }
        }
        used.extend(self.verdict.values.values().filter_map(|v| v.metric));
        used
    }

    /// The scenario at `point`.
    pub fn scenario_at(&self, point: &Point) -> Result<Scenario, ExperimentError> {
        let mut tree: toml::Table =
            toml::from_str(&self.base_text).map_err(|e| ExperimentError::Invalid {
                path: self.scenario.clone(),
                message: e.to_string(),
            })?;
        let bad = |message: String| ExperimentError::Invalid {
            path: self.source.clone(),
            message,
        };
        for (axis, &i) in self.axes.iter().zip(&point.index) {
            for param in &axis.params {
                set(&mut tree, param, axis.values[i].clone()).map_err(bad)?;
            }
            if let Some(extra) = axis.extra.get(i) {
                for (param, value) in extra {
                    set(&mut tree, param, value.clone()).map_err(bad)?;
                }
            }
        }
        let text = toml::to_string(&tree).map_err(|e| bad(e.to_string()))?;
        let name = format!("{} [{}]", self.scenario.display(), point.name());
        Scenario::from_toml_str(&text, &name).map_err(|source| ExperimentError::Scenario {
            path: self.source.clone(),
            point: point.name(),
            source: Box::new(source),
        })
    }
}

/// The steps of a dotted path (`a.b[2].c`): each key with its array index, if any.
fn steps(path: &str) -> Result<Vec<(&str, Option<usize>)>, String> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((key, rest)) => {
                let i = rest
                    .strip_suffix(']')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| format!("{path}: bad index in {part:?}"))?;
                (key, Some(i))
            }
            None => (part, None),
        };
        if key.is_empty() {
            return Err(format!("{path}: empty key"));
        }
        steps.push((key, index));
    }
    Ok(steps)
}

/// Writes `value` at a dotted path (`a.b[2].c`) into `tree`, creating tables on the way.
pub fn set(tree: &mut toml::Table, path: &str, value: toml::Value) -> Result<(), String> {
    let steps = steps(path)?;
    let (last, walk) = steps.split_last().ok_or_else(|| format!("{path}: empty"))?;
    let mut table = tree;
    for (key, index) in walk {
        let entry = table
            .entry(key.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let next = match (entry, index) {
            (toml::Value::Table(t), None) => t,
            (toml::Value::Array(a), Some(i)) => match a.get_mut(*i) {
                Some(toml::Value::Table(t)) => t,
                _ => return Err(format!("{path}: {key}[{i}] is not a table")),
            },
            _ => return Err(format!("{path}: {key} is not a table")),
        };
        table = next;
    }
    match last.1 {
        None => {
            table.insert(last.0.to_string(), value);
        }
        Some(i) => match table.get_mut(last.0) {
            Some(toml::Value::Array(a)) if i < a.len() => a[i] = value,
            _ => return Err(format!("{path}: no element {i} in {}", last.0)),
        },
    }
    Ok(())
}

/// The value at a dotted path (`a.b[2].c`) in `tree`.
pub fn get<'a>(tree: &'a toml::Table, path: &str) -> Result<&'a toml::Value, String> {
    let mut at: Option<&toml::Value> = None;
    for (key, index) in steps(path)? {
        let table = match at {
            None => tree,
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(format!("{path}: {key} is inside a value, not a table")),
        };
        let v = table
            .get(key)
            .ok_or_else(|| format!("{path}: no {key:?} in the scenario"))?;
        at = Some(match index {
            None => v,
            Some(i) => v
                .as_array()
                .and_then(|a| a.get(i))
                .ok_or_else(|| format!("{path}: no element {i} in {key}"))?,
        });
    }
    at.ok_or_else(|| format!("{path}: empty"))
}

/// Every experiment file in `dir`, by file name.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>, ExperimentError> {
    let io = |source| ExperimentError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads c3-hot-key with `from` replaced by `to`, from a copy next to its base scenario.
    fn c3_hot_key_edited(test: &str, from: &str, to: &str) -> Result<Experiment, String> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/experiments");
        let text = std::fs::read_to_string(repo.join("c3-hot-key.toml")).unwrap();
        assert!(text.contains(from), "c3-hot-key.toml has no {from:?}");
        let dir = std::env::temp_dir().join(format!("fathom-{test}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("base")).unwrap();
        let base = "base/consumers.toml";
        std::fs::copy(repo.join(base), dir.join(base)).unwrap();
        let path = dir.join("c3-hot-key.toml");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let loaded = Experiment::load(&path).map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        loaded
    }

    #[test]
    fn a_backlog_chart_writes_one_file_per_point_and_takes_no_metric() {
        let e = c3_hot_key_edited("backlog-files", "", "").unwrap();
        let chart = e
            .charts
            .iter()
            .find(|c| c.kind == ChartKind::BacklogOverTime);
        let files: Vec<String> = chart.unwrap().files(&e).into_iter().map(|f| f.0).collect();
        assert_eq!(
            files,
            [
                "backlog-over-time-group.svg",
                "backlog-over-time-share.svg",
                "backlog-over-time-key-shared.svg"
            ]
        );
        assert_eq!(slug("share, 10 per fetch"), "share-10-per-fetch");
        let with_metric = c3_hot_key_edited(
            "backlog-metric",
            "kind = \"backlog_over_time\"",
            "kind = \"backlog_over_time\"\nmetric = \"drain_s\"",
        );
        let err = with_metric.unwrap_err();
        assert!(err.contains("take no metric"), "{err}");
        let clash = c3_hot_key_edited(
            "backlog-clash",
            "file = \"drain.svg\"",
            "file = \"backlog-over-time-share.svg\"",
        );
        let err = clash.unwrap_err();
        assert!(err.contains("is written twice"), "{err}");
    }

    #[test]
    fn set_writes_nested_paths_and_array_elements() {
        let mut t: toml::Table =
            toml::from_str("[[producers]]\nmode = \"sync\"\n[network]\nloss = 0.0\n").unwrap();
        set(&mut t, "producers[0].mode", "async".into()).unwrap();
        set(&mut t, "resources.tls", true.into()).unwrap();
        set(
            &mut t,
            "network.latency_ms",
            toml::Value::Array(vec![1.into(), 2.into()]),
        )
        .unwrap();
        let text = toml::to_string(&t).unwrap();
        assert!(text.contains("mode = \"async\""), "{text}");
        assert!(text.contains("tls = true"), "{text}");
        assert!(set(&mut t, "producers[3].mode", "x".into()).is_err());
        assert!(set(&mut t, "network.loss[0]", 1.into()).is_err());
        assert_eq!(
            get(&t, "producers[0].mode").unwrap().as_str(),
            Some("async")
        );
        assert_eq!(get(&t, "resources.tls").unwrap().as_bool(), Some(true));
        assert!(get(&t, "producers[1].mode").is_err());
        assert!(get(&t, "network.speed").is_err());
    }
}
