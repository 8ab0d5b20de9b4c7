//! Writes an experiment's report folder: `README.md`, `results.json` and the SVG charts.
//!
//! Everything written is a function of the results: no dates, durations or host names, and
//! numbers go through [`num`], so regenerating gives the same bytes.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

pub use super::format::num;
use super::format::percent;
use super::metric::{Judged, Metric, BREAKDOWN};
use super::runner::{PointResult, Results, Spread};
use super::stats::{self, CONFIDENCE};
use super::verdict::Judgement;
use super::{ChartKind, ChartSpec, Experiment, ExperimentError, Point};
use crate::chart::{self, Bar, Extras, Part, Series, SweepPoint, SweepSeries};
use crate::scenario::Scenario;
use fathom_workload::spec::process_name;

/// What `results.json` holds.
#[derive(Serialize)]
struct ResultsFile<'a> {
    id: &'a str,
    claim: &'a str,
    title: &'a str,
    judgement: &'a Judgement,
    seeds: &'a [u64],
    axes: &'a [String],
    points: &'a [PointResult],
}

/// Writes `dir` (the experiment's folder) from scratch.
pub fn write(
    dir: &Path,
    e: &Experiment,
    results: &Results,
    judgement: &Judgement,
) -> Result<(), ExperimentError> {
    let io = |source| ExperimentError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    // From scratch: charts of an earlier version of the experiment go.
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|x| x == "svg") {
            std::fs::remove_file(&path).map_err(io)?;
        }
    }
    for c in &e.charts {
        for (file, point) in c.files(e) {
            let svg = match &point {
                Some(point) => backlog_svg(e, results, c, point),
                None => chart_svg(e, results, c),
            };
            let svg = svg.map_err(|message| ExperimentError::Invalid {
                path: e.source.clone(),
                message,
            })?;
            std::fs::write(dir.join(file), svg).map_err(io)?;
        }
    }
    let file = ResultsFile {
        id: &e.id,
        claim: &e.claim,
        title: &e.title,
        judgement,
        seeds: &e.seeds,
        axes: &results.axes,
        points: &results.points,
    };
    let mut json = serde_json::to_string_pretty(&file).expect("results serialize");
    json.push('\n');
    std::fs::write(dir.join("results.json"), json).map_err(io)?;
    std::fs::write(dir.join("README.md"), readme(e, results, judgement)).map_err(io)?;
    Ok(())
}

fn readme(e: &Experiment, results: &Results, j: &Judgement) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}: {}\n", e.claim, e.title);
    let _ = writeln!(s, "## Question\n\n{}\n", e.question.trim());
    setup(&mut s, e);
    coverage(&mut s, j);
    table(&mut s, e, results);
    if !e.charts.is_empty() {
        let _ = writeln!(s, "## Charts\n");
        for c in &e.charts {
            for (file, point) in c.files(e) {
                let title = match point {
                    Some(p) => format!("{}: {}", c.title, p.name()),
                    None => c.title.clone(),
                };
                let _ = writeln!(s, "![{title}]({file})\n");
            }
        }
    }
    verdict(&mut s, j);
    s
}

/// The setup, and what regenerates the report: command, seeds, simulated time.
fn setup(s: &mut String, e: &Experiment) {
    let _ = writeln!(s, "## Setup\n");
    if !e.setup.trim().is_empty() {
        let _ = writeln!(s, "{}\n", e.setup.trim());
    }
    let _ = writeln!(
        s,
        "- Base scenario: `scenarios/experiments/{}`",
        e.scenario.display()
    );
    for a in &e.axes {
        let labels: Vec<String> = (0..a.values.len()).map(|i| a.label(i)).collect();
        // An axis of named settings has no parameter of its own: name what its values set.
        let mut params: Vec<&str> = a.params.iter().map(String::as_str).collect();
        for extra in &a.extra {
            params.extend(extra.keys().map(String::as_str));
        }
        let mut seen = std::collections::BTreeSet::new();
        params.retain(|p| seen.insert(*p));
        let _ = writeln!(
            s,
            "- Swept **{}** (`{}`): {}",
            a.name,
            params.join("`, `"),
            labels.join(", ")
        );
    }
    let seeds: Vec<String> = e.seeds.iter().map(u64::to_string).collect();
    let _ = writeln!(
        s,
        "- Seeds: {} ({} seeds, {} runs).",
        seeds.join(", "),
        e.seeds.len(),
        e.points().len() * e.seeds.len()
    );
    let _ = writeln!(s, "- Simulated time per run: {}.", simulated_time(e));
    let _ = writeln!(
        s,
        "- Regenerate: `cargo run --release -- experiment scenarios/experiments/{}.toml` \
         (every report: `cargo run --release -- report`); the same bytes on any machine.\n",
        e.id
    );
}

/// The workload and settle phases of every point, in simulated seconds.
fn simulated_time(e: &Experiment) -> String {
    let mut phases: Vec<(String, String)> = e
        .points()
        .iter()
        .filter_map(|p| e.scenario_at(p).ok())
        .map(|sc| (sc.duration_s.to_string(), sc.settle_s.to_string()))
        .collect();
    phases.sort();
    phases.dedup();
    let text: Vec<String> = phases
        .iter()
        .map(|(d, st)| format!("{d} s of workload, then {st} s to heal, settle and read back"))
        .collect();
    text.join("; or ")
}

fn coverage(s: &mut String, j: &Judgement) {
    let _ = writeln!(s, "## What this tests of the claim\n");
    for t in &j.coverage.tests {
        let _ = writeln!(s, "- Tested: {t}");
    }
    for t in &j.coverage.untested {
        let _ = writeln!(s, "- **Not tested**: {t}");
    }
    let _ = writeln!(s);
}

fn table(s: &mut String, e: &Experiment, results: &Results) {
    let _ = writeln!(s, "## Results\n");
    let mut header: Vec<String> = results.axes.clone();
    header.extend(e.columns.iter().map(|c| c.name().to_string()));
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(header.len()));
    for p in &results.points {
        let mut row: Vec<String> = results
            .axes
            .iter()
            .map(|a| p.label(a).to_string())
            .collect();
        row.extend(e.columns.iter().map(|&c| cell(c, p.spread(c))));
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
    let n = e.seeds.len();
    let interval = if stats::median_interval(&vec![0.0; n]).is_some() {
        format!(
            "the median over seeds, its {} interval in brackets (order statistics: holds for \
             any distribution), and the range over seeds in parentheses",
            percent(CONFIDENCE)
        )
    } else {
        format!(
            "the median over seeds with the range over seeds in parentheses; with {n} seeds no \
             {} interval of the median exists (the range covers it with probability {})",
            percent(CONFIDENCE),
            percent(stats::range_coverage(n))
        )
    };
    let _ = writeln!(s, "\nCells of a measurement are {interval}.");
    if e.columns.iter().any(|c| c.judged() == Judged::WorstSeed) {
        let _ = writeln!(
            s,
            "Cells of a safety count give the worst seed, then in how many seeds it happened, \
             with the Wilson {} interval of that share in brackets.",
            percent(CONFIDENCE)
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Columns:\n");
    for c in &e.columns {
        let _ = writeln!(s, "- `{c}`: {}", c.describe());
    }
    let _ = writeln!(s);
}

/// One table cell: `median [interval] (min–max)`, or for a safety count `worst W, k/n seeds
/// [low–high]`.
fn cell(metric: Metric, spread: Option<&Spread>) -> String {
    let Some(sp) = spread else {
        return "not measured".into();
    };
    if let (Judged::WorstSeed, Some(share)) = (metric.judged(), sp.seeds_above_zero) {
        let [lo, hi] = share.interval;
        return format!(
            "worst {}, {}/{} seeds [{}–{}]",
            num(sp.max),
            share.k,
            share.n,
            percent(lo),
            percent(hi)
        );
    }
    if num(sp.min) == num(sp.max) {
        return num(sp.median);
    }
    match sp.interval {
        Some([lo, hi]) => format!(
            "{} [{}–{}] ({}–{})",
            num(sp.median),
            num(lo),
            num(hi),
            num(sp.min),
            num(sp.max)
        ),
        None => format!("{} ({}–{})", num(sp.median), num(sp.min), num(sp.max)),
    }
}

fn verdict(s: &mut String, j: &Judgement) {
    let _ = writeln!(s, "## Verdict: **{}**\n", j.verdict_text());
    let _ = writeln!(s, "{}\n", j.finding.trim());
    if !j.rules.is_empty() {
        let _ = writeln!(s, "| rule | check | holds |");
        let _ = writeln!(s, "|---|---|---|");
        for r in &j.rules {
            let _ = writeln!(
                s,
                "| {} | `{}` | {} |",
                r.name,
                r.check,
                if r.holds { "yes" } else { "no" }
            );
        }
        let _ = writeln!(s);
    }
    for r in j.rules.iter().filter(|r| r.follows_from_model.is_some()) {
        let _ = writeln!(
            s,
            "*{}* follows from the model's own inputs, not from emergent behaviour: {}\n",
            r.name,
            r.follows_from_model.as_deref().unwrap_or_default()
        );
    }
    if !j.numbers.is_empty() {
        let _ = writeln!(s, "Key numbers (metric, statistic over seeds, point):\n");
        for (k, v) in &j.numbers {
            let _ = writeln!(s, "- {k}: {v}");
        }
        let _ = writeln!(s);
    }
}

fn chart_svg(e: &Experiment, results: &Results, c: &ChartSpec) -> Result<String, String> {
    let points: Vec<&PointResult> = results
        .points
        .iter()
        .filter(|p| c.only.as_ref().is_none_or(|o| p.label(&o.axis) == o.label))
        .collect();
    let categories: Vec<String> = points
        .iter()
        .map(|p| {
            let labels: Vec<&str> = results
                .axes
                .iter()
                .filter(|a| c.only.as_ref().is_none_or(|o| o.axis != **a))
                .map(|a| p.label(a))
                .collect();
            labels.join(", ")
        })
        .collect();
    let shown: Vec<&str> = results
        .axes
        .iter()
        .filter(|a| c.only.as_ref().is_none_or(|o| o.axis != **a))
        .map(String::as_str)
        .collect();
    let x_label = c.x_label.clone().unwrap_or_else(|| shown.join(", "));
    let bounds = c.bounds.iter().filter_map(|b| b.line(&[])).collect();
    let drawn = match c.kind {
        ChartKind::Sweep => return sweep_svg(e, results, c),
        ChartKind::BacklogOverTime => {
            return Err(format!("chart {}: one chart per point", c.file));
        }
        ChartKind::Bars => {
            let metric = c
                .metric
                .ok_or_else(|| format!("chart {}: no metric", c.file))?;
            let bars: Vec<Bar> = points
                .iter()
                .zip(&categories)
                .map(|(p, category)| bar(p, metric, category))
                .collect();
            let extras = Extras {
                bounds,
                ..Extras::default()
            };
            chart::bars(&c.title, &x_label, &c.y_label, &bars, &extras)
        }
        ChartKind::Breakdown => {
            let parts: Vec<Part> = BREAKDOWN
                .iter()
                .map(|(name, metric)| Part {
                    name: name.to_string(),
                    values: points.iter().map(|p| median(p, *metric)).collect(),
                })
                .collect();
            let extras = Extras {
                legend_title: Some("part of the path".into()),
                bounds,
                ..Extras::default()
            };
            chart::stacked_bars_with(
                &c.title,
                Some(&x_label),
                &c.y_label,
                &categories,
                &parts,
                &extras,
            )
        }
    };
    drawn.map_err(|e| format!("chart {}: {e}", c.file))
}

/// One bar: the median over seeds with its min–max whisker; a point that did not measure the
/// metric is a zero bar (the table shows it as not measured).
fn bar(p: &PointResult, metric: Metric, category: &str) -> Bar {
    let sp = p.spread(metric);
    Bar {
        category: category.to_string(),
        median: sp.map_or(0.0, |s| s.median),
        min: sp.map_or(0.0, |s| s.min),
        max: sp.map_or(0.0, |s| s.max),
    }
}

/// A sweep chart: `metric` against the numeric `x_axis`, one series per value of the other
/// axis, with the spread over seeds as error bars.
fn sweep_svg(e: &Experiment, results: &Results, c: &ChartSpec) -> Result<String, String> {
    let metric = c
        .metric
        .ok_or_else(|| format!("chart {}: no metric", c.file))?;
    let other = e.axes.iter().find(|a| a.name != c.x_axis);
    let series_labels: Vec<Option<String>> = match other {
        Some(a) => (0..a.values.len()).map(|i| Some(a.label(i))).collect(),
        None => vec![None],
    };
    let mut series = Vec::new();
    for label in series_labels {
        let mut points = Vec::new();
        for p in &results.points {
            if let (Some(l), Some(a)) = (&label, other) {
                if p.label(&a.name) != l {
                    continue;
                }
            }
            let x: f64 = p
                .label(&c.x_axis)
                .parse()
                .map_err(|_| format!("chart {}: x label is not a number", c.file))?;
            if let Some(sp) = p.spread(metric) {
                points.push(SweepPoint {
                    x,
                    median: sp.median,
                    min: sp.min,
                    max: sp.max,
                });
            }
        }
        let name = match (&label, other) {
            (Some(l), Some(_)) => l.clone(),
            _ => c.y_label.clone(),
        };
        series.push(SweepSeries { name, points });
    }
    let mut xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.x))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let extras = Extras {
        legend_title: other.map(|a| a.name.clone()),
        bounds: c.bounds.iter().filter_map(|b| b.line(&xs)).collect(),
        ..Extras::default()
    };
    chart::sweep_with(
        &c.title, &c.x_axis, &c.y_label, c.log_x, c.log_y, &series, &extras,
    )
    .map_err(|e| format!("chart {}: {e}", c.file))
}

/// The median a chart draws; a point that did not measure the metric draws nothing (zero
/// height), which the table shows as "not measured".
fn median(p: &PointResult, metric: Metric) -> f64 {
    p.spread(metric).map_or(0.0, |s| s.median)
}

/// What a backlog chart's legend says the series are.
const BACKLOG_LEGEND_TITLE: &str = "consumer, process time";
/// A backlog chart's x axis: the run's clock, not the wall's.
const BACKLOG_X_LABEL: &str = "simulated time (s)";

/// A backlog-over-time chart of one point: a line per consumer instance, named with its
/// processing time per record, and one for its group's pool.
fn backlog_svg(
    e: &Experiment,
    results: &Results,
    c: &ChartSpec,
    point: &Point,
) -> Result<String, String> {
    let fail = |what: String| format!("chart {}, point {}: {what}", c.file, point.name());
    let labels = results.axes.iter().zip(&point.labels);
    let at = results
        .at(labels.map(|(a, l)| (a.as_str(), l.as_str())))
        .ok_or_else(|| fail("no results".into()))?;
    let (seed, groups) = at
        .backlog_over_time()
        .ok_or_else(|| fail("no backlog over time was kept".into()))?;
    let scenario = e.scenario_at(point).map_err(|err| fail(err.to_string()))?;
    let mut series = Vec::new();
    for g in groups {
        for s in &g.series {
            let who = match &s.instance {
                Some(instance) => instance_label(&scenario, instance),
                None => g.kind.pool_name().to_string(),
            };
            let name = match groups.len() {
                1 => who,
                _ => format!("{}: {who}", g.group),
            };
            let points = s
                .counts
                .iter()
                .enumerate()
                .map(|(k, &n)| (k as f64 * g.step_s, n as f64))
                .collect();
            series.push(Series { name, points });
        }
    }
    let title = format!("{}: {}, seed {seed}", c.title, point.name());
    let extras = Extras {
        legend_title: Some(BACKLOG_LEGEND_TITLE.into()),
        x_label: Some(BACKLOG_X_LABEL.into()),
        ..Extras::default()
    };
    chart::time_series_with(&title, &c.y_label, &series, &[], &extras)
        .map_err(|err| fail(err.to_string()))
}

/// A consumer instance with its processing time per record: `c-0 (10 ms)`.
fn instance_label(scenario: &Scenario, instance: &str) -> String {
    let process_ms = scenario.consumers.iter().find_map(|spec| {
        (0..spec.instances.get())
            .find(|&i| process_name(&spec.name, i) == instance)
            .map(|i| spec.process_ms_of(i))
    });
    match process_ms {
        Some(ms) => format!("{instance} ({ms} ms)"),
        None => instance.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::consumption::{BacklogSeries, GroupBacklog, GroupKind};
    use crate::experiment::runner::{Numbers, SeedResult};
    use crate::experiment::verdict;

    fn c3_hot_key() -> Experiment {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scenarios/experiments/c3-hot-key.toml");
        Experiment::load(&path).unwrap()
    }

    /// Results without numbers: every point has one seed, 7, with a hand-made backlog.
    fn results(e: &Experiment) -> Results {
        let axes: Vec<String> = e.axes.iter().map(|a| a.name.clone()).collect();
        let series = |instance: Option<&str>, counts: &[u64]| BacklogSeries {
            instance: instance.map(str::to_string),
            counts: counts.to_vec(),
        };
        let backlog = GroupBacklog {
            group: "g1".into(),
            kind: GroupKind::Consumer,
            step_s: 0.5,
            series: vec![
                series(Some("c-0"), &[0, 40, 90, 10, 0]),
                series(Some("c-1"), &[0, 5, 0, 0, 0]),
                series(None, &[3, 0, 0, 0, 0]),
            ],
        };
        let points = e
            .points()
            .into_iter()
            .map(|point| PointResult {
                labels: axes.iter().cloned().zip(point.labels.clone()).collect(),
                point,
                spread: BTreeMap::new(),
                seeds: vec![SeedResult {
                    seed: 7,
                    trace_hash: String::new(),
                    numbers: Numbers::new(),
                    backlog_over_time: Some(vec![backlog.clone()]),
                }],
            })
            .collect();
        Results {
            id: e.id.clone(),
            claim: e.claim.clone(),
            axes,
            points,
        }
    }

    fn written(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(name, std::fs::read(&path).unwrap());
        }
        files
    }

    #[test]
    fn a_backlog_chart_is_one_svg_per_point_naming_each_instance_and_its_process_time() {
        let e = c3_hot_key();
        let r = results(&e);
        let j = verdict::judge(&e, &r);
        let dir = std::env::temp_dir().join(format!("fathom-backlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(&dir.join("first"), &e, &r, &j).unwrap();
        write(&dir.join("second"), &e, &r, &j).unwrap();
        let files = written(&dir.join("first"));
        assert_eq!(files, written(&dir.join("second")), "not deterministic");
        let readme = String::from_utf8(files["README.md"].clone()).unwrap();
        for point in ["group", "share"] {
            let file = format!("backlog-over-time-{point}.svg");
            let svg = String::from_utf8(files[&file].clone()).unwrap();
            for needle in [
                format!("Backlog per consumer: {point}, seed 7"),
                "c-0 (4 ms)".into(),
                "c-1 (4 ms)".into(),
                "unassigned".into(),
                "simulated time (s)".into(),
                "messages waiting".into(),
            ] {
                assert!(svg.contains(&needle), "{file} lacks {needle:?}");
            }
            assert!(
                readme.contains(&format!("]({file})")),
                "README lacks {file}"
            );
        }
        assert!(!files.contains_key("backlog-over-time.svg"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_backlog_chart_without_a_kept_backlog_is_an_error_not_an_empty_chart() {
        let e = c3_hot_key();
        let mut r = results(&e);
        for p in &mut r.points {
            p.seeds[0].backlog_over_time = None;
        }
        let c = e
            .charts
            .iter()
            .find(|c| c.kind == ChartKind::BacklogOverTime);
        let (_, point) = c.unwrap().files(&e).remove(0);
        let err = backlog_svg(&e, &r, c.unwrap(), &point.unwrap()).unwrap_err();
        assert!(err.contains("no backlog over time was kept"), "{err}");
    }
}
