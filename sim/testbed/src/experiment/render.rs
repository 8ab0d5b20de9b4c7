//! Writes an experiment's report folder: `README.md`, `results.json` and the SVG charts.
//!
//! Everything written is a function of the results: no dates, durations or host names, and
//! numbers go through [`num`], so regenerating gives the same bytes.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::claims::Judgement;
use super::runner::{describe, PointResult, Results};
use super::{ChartKind, ChartSpec, Experiment, ExperimentError};
use crate::chart::{self, Part, SweepPoint, SweepSeries};

/// What `results.json` holds.
#[derive(Serialize)]
struct ResultsFile<'a> {
    id: &'a str,
    claim: &'a str,
    title: &'a str,
    judgement: &'a Judgement,
    seeds: &'a [u64],
    axes: &'a [String],
    points: &'a [super::runner::PointResult],
}

/// A number as reports print it: a few significant digits, no trailing noise.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    if a == 0.0 || a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
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
        let svg = chart_svg(e, results, c).map_err(|message| ExperimentError::Invalid {
            path: e.source.clone(),
            message,
        })?;
        std::fs::write(dir.join(&c.file), svg).map_err(io)?;
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
        let _ = writeln!(
            s,
            "- Swept **{}** (`{}`): {}",
            a.name,
            a.params.join("`, `"),
            labels.join(", ")
        );
    }
    let seeds: Vec<String> = e.seeds.iter().map(u64::to_string).collect();
    let _ = writeln!(
        s,
        "- Seeds: {} ({} runs); cells are the median over seeds with the range in brackets.",
        seeds.join(", "),
        e.points().len() * e.seeds.len()
    );
    let _ = writeln!(
        s,
        "- Regenerate: `fathom experiment scenarios/experiments/{}.toml` (all reports: `fathom report`).\n",
        e.id
    );

    let _ = writeln!(s, "## Results\n");
    let mut header: Vec<String> = results.axes.clone();
    header.extend(e.columns.iter().cloned());
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(header.len()));
    for p in &results.points {
        let mut row: Vec<String> = results
            .axes
            .iter()
            .map(|a| p.label(a).to_string())
            .collect();
        for c in &e.columns {
            let sp = p.spread(c);
            if sp.min == sp.max {
                row.push(num(sp.median));
            } else {
                row.push(format!(
                    "{} [{}–{}]",
                    num(sp.median),
                    num(sp.min),
                    num(sp.max)
                ));
            }
        }
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
    let _ = writeln!(s, "\nColumns:\n");
    for c in &e.columns {
        let _ = writeln!(s, "- `{c}`: {}", describe(c));
    }
    let _ = writeln!(s);
    if !e.charts.is_empty() {
        let _ = writeln!(s, "## Charts\n");
        for c in &e.charts {
            let _ = writeln!(s, "![{}]({})\n", c.title, c.file);
        }
    }
    let _ = writeln!(s, "## Verdict: **{}**\n", j.verdict_text());
    let _ = writeln!(s, "{}\n", j.finding.trim());
    if !j.numbers.is_empty() {
        let _ = writeln!(s, "Key numbers:\n");
        for (k, v) in &j.numbers {
            let _ = writeln!(s, "- {k}: {}", num(*v));
        }
        let _ = writeln!(s);
    }
    s
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
    let drawn = match c.kind {
        ChartKind::Sweep => return sweep_svg(e, results, c),
        ChartKind::Bars => chart::stacked_bars(
            &c.title,
            &c.y_label,
            &categories,
            &[Part {
                name: c.metric.clone(),
                values: points.iter().map(|p| p.median(&c.metric)).collect(),
            }],
        ),
        ChartKind::Breakdown => {
            let parts: Vec<Part> = crate::metrics::PARTS
                .iter()
                .map(|(name, metric)| Part {
                    name: name.to_string(),
                    values: points.iter().map(|p| p.median(metric)).collect(),
                })
                .collect();
            chart::stacked_bars(&c.title, &c.y_label, &categories, &parts)
        }
    };
    drawn.map_err(|e| format!("chart {}: {e}", c.file))
}

/// A sweep chart: `metric` against the numeric `x_axis`, one series per value of the other
/// axis, with the spread over seeds as error bars.
fn sweep_svg(e: &Experiment, results: &Results, c: &ChartSpec) -> Result<String, String> {
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
            let sp = p.spread(&c.metric);
            points.push(SweepPoint {
                x,
                median: sp.median,
                min: sp.min,
                max: sp.max,
            });
        }
        let name = match (&label, other) {
            (Some(l), Some(_)) => l.clone(),
            _ => c.metric.clone(),
        };
        series.push(SweepSeries { name, points });
    }
    chart::sweep(&c.title, &c.x_axis, &c.y_label, c.log_x, c.log_y, &series)
        .map_err(|e| format!("chart {}: {e}", c.file))
}
