//! SVG charts for Fathom's reports, deterministic byte for byte.
//!
//! Reports are committed to git and must regenerate identically on any machine, so each chart is
//! a pure function of its arguments: the same data gives the same SVG string everywhere. Nothing
//! here reads a clock, the environment, a random source, a font file or a `HashMap`.
//!
//! How that holds:
//! - plotters is built with only its `svg_backend` feature. Without `ttf` or `ab_glyph` it lays
//!   text out with a fixed estimate per byte and loads no font; the SVG names the generic family
//!   `sans-serif` and the viewer draws the glyphs. (Text sizes in the picture may therefore vary a
//!   little between viewers; the file does not.)
//! - Axes, ticks and tick labels come from the `axis` module, not from plotters' numeric axes, which place
//!   ticks with the platform's libm and could print `1000` on one machine and
//!   `999.9999999999999` on another.
//! - Colours come from a fixed palette, assigned in the order series are given; every element is
//!   drawn in input order.
//!
//! What the caller should know:
//! - Every chart is [`WIDTH_PX`] x [`HEIGHT_PX`]; inputs beyond the named limits
//!   ([`SERIES_MAX`], [`POINTS_PER_SERIES_MAX`], [`BUCKETS_MAX`], [`MARKERS_MAX`],
//!   [`CATEGORIES_MAX`]) are refused with [`ChartError::TooMany`]; downsample first.
//! - Values that cannot be placed are skipped, never drawn as garbage: NaN, infinities, values
//!   beyond ±[`VALUE_ABS_MAX`], and on a log axis anything below [`LOG_VALUE_MIN`]. A line breaks where a
//!   point was skipped. Empty input still gives a chart, with a default axis range.
//! - Legend names and marker labels longer than the legend strip are cut with an ellipsis.

mod axis;
mod frame;
#[cfg(test)]
mod tests;

use plotters::coord::ranged1d::Ranged;
use plotters::element::{Circle, EmptyElement, PathElement, Rectangle, Text};
use plotters::style::{Color, RGBColor, WHITE};
use thiserror::Error;

pub use axis::{LOG_VALUE_MIN, VALUE_ABS_MAX};

use axis::{Axis, CategoryAxis, Extent, Scale};
use frame::{LegendEntry, Swatch, LINE_WIDTH_PX, MARKER_COLOR, PALETTE, POINT_RADIUS_PX};

pub const WIDTH_PX: u32 = 800;
pub const HEIGHT_PX: u32 = 400;

/// Series (or parts) in one chart: one palette colour each.
pub const SERIES_MAX: usize = frame::PALETTE.len();
/// Each point is a coordinate pair in the SVG; a series that needs more should be downsampled.
pub const POINTS_PER_SERIES_MAX: usize = 10_000;
pub const BUCKETS_MAX: usize = 1_000;
pub const MARKERS_MAX: usize = 32;
pub const CATEGORIES_MAX: usize = 32;

/// A histogram's log x axis starts this many times below a bucket's `high` when the lowest
/// bucket starts at zero (zero has no place on a log axis).
const LOG_FLOOR_FACTOR: f64 = 10.0;
/// Headroom above the tallest bar, so that it does not touch the frame.
const BAR_HEADROOM: f64 = 1.05;
/// A count axis reaches at least this high, so that small counts get whole-number ticks.
const COUNT_AXIS_MIN: f64 = 5.0;
/// A stacked bar fills this share of its category's slot.
const BAR_WIDTH_FRACTION: f64 = 0.6;
/// Half the width of an error bar's caps.
const CAP_HALF_PX: i32 = 5;
/// Marker labels sit right of their line, staggered over this many rows so neighbours overlap
/// less.
const MARKER_LABEL_ROWS: usize = 3;
const MARKER_LABEL_OFFSET_PX: i32 = 4;
const MARKER_LABEL_ROW_PX: i32 = 16;
const MARKER_LABEL_CHARS_MAX: usize = 24;
/// Wider than the grid's lines, so a marker never reads as one.
const MARKER_WIDTH_PX: u32 = 2;
/// With markers, the y axis grows by this share of its span, so their labels sit above the data.
const MARKER_HEADROOM_FRACTION: f64 = 0.25;

/// One histogram bucket: `count` values fell in `low..high` (in the unit of the x label).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub low: f64,
    pub high: f64,
    pub count: u64,
}

/// A named line over time: `(seconds, value)` points, drawn in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// An event on a time series, e.g. a fault injection: a vertical line at `at_s` seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub at_s: f64,
    pub label: String,
}

/// A named line through a parameter sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSeries {
    pub name: String,
    pub points: Vec<SweepPoint>,
}

/// The spread of one measurement over seeds at parameter value `x`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepPoint {
    pub x: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// One layer of a stacked bar chart: its value in each category, in category order.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub name: String,
    pub values: Vec<f64>,
}

#[derive(Debug, Error)]
pub enum ChartError {
    #[error("too many {what}: {count}, the limit is {max}")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("drawing the chart failed: {0}")]
    Draw(String),
}

/// A latency histogram: one bar per bucket over a log x axis, counts on a linear y axis.
///
/// The x axis is logarithmic because latencies span decades and their tail is what matters;
/// log-spaced buckets come out equally wide. It spans all valid buckets, empty ones included, so
/// that charts with the same bucket layout line up. A bucket starting at or below zero is drawn
/// from the axis start; buckets with `high <= low`, `high <= 0` or non-finite bounds are skipped.
pub fn histogram(title: &str, x_label: &str, buckets: &[Bucket]) -> Result<String, ChartError> {
    frame::check_limit("buckets", buckets.len(), BUCKETS_MAX)?;
    let valid = |b: &&Bucket| {
        Scale::Linear.accepts(b.low) && Scale::Log10.accepts(b.high) && b.low < b.high
    };
    let mut x = Extent::new(Scale::Log10);
    let mut count_max = 0;
    for bucket in buckets.iter().filter(valid) {
        if !x.add(bucket.low) {
            x.add(bucket.high / LOG_FLOOR_FACTOR);
        }
        x.add(bucket.high);
        count_max = count_max.max(bucket.count);
    }
    let x_axis = x.tight();
    let y_top = (count_max as f64 * BAR_HEADROOM).max(COUNT_AXIS_MIN);
    let y_axis = Axis::new(Scale::Linear, 0.0, y_top);

    frame::render(|root| {
        let mut chart = frame::build(root, title, x_axis, y_axis)?;
        frame::draw_mesh(&mut chart, Some(x_label), "count", true)?;
        let area = chart.plotting_area();
        for bucket in buckets.iter().filter(valid).filter(|b| b.count > 0) {
            let corners = [
                (x_axis.clamp(bucket.low), bucket.count as f64),
                (bucket.high, 0.0),
            ];
            area.draw(&Rectangle::new(corners, PALETTE[0].filled()))?;
            area.draw(&Rectangle::new(corners, WHITE.stroke_width(1)))?;
        }
        Ok(())
    })
}

/// Lines over time (x in seconds) with vertical markers, e.g. where faults were injected.
///
/// The x axis spans the points and the markers; the y axis spans the points with a margin, and
/// room above them for the marker labels.
pub fn time_series(
    title: &str,
    y_label: &str,
    series: &[Series],
    markers: &[Marker],
) -> Result<String, ChartError> {
    frame::check_limit("series", series.len(), SERIES_MAX)?;
    for s in series {
        frame::check_limit("points in a series", s.points.len(), POINTS_PER_SERIES_MAX)?;
    }
    frame::check_limit("markers", markers.len(), MARKERS_MAX)?;
    let placeable = |&(t, v): &(f64, f64)| Scale::Linear.accepts(t) && Scale::Linear.accepts(v);
    let mut x = Extent::new(Scale::Linear);
    let mut y = Extent::new(Scale::Linear);
    for &(t, v) in series
        .iter()
        .flat_map(|s| &s.points)
        .filter(|p| placeable(p))
    {
        x.add(t);
        y.add(v);
    }
    let mut any_marker = false;
    for marker in markers {
        any_marker |= x.add(marker.at_s);
    }
    let (x_axis, mut y_axis) = (x.tight(), y.padded());
    if any_marker {
        y_axis = y_axis.raised(MARKER_HEADROOM_FRACTION);
    }

    frame::render(|root| {
        let (plot, legend) = frame::split_legend(root);
        let mut chart = frame::build(&plot, title, x_axis, y_axis)?;
        frame::draw_mesh(&mut chart, Some("time (s)"), y_label, true)?;
        let area = chart.plotting_area();
        for (s, color) in series.iter().zip(PALETTE) {
            for run in runs(&s.points, placeable) {
                draw_line(area, &run, color)?;
            }
        }
        let label_style = frame::small_style();
        for (i, marker) in markers.iter().enumerate() {
            if !Scale::Linear.accepts(marker.at_s) {
                continue;
            }
            let line = vec![(marker.at_s, y_axis.lo()), (marker.at_s, y_axis.hi())];
            area.draw(&PathElement::new(
                line,
                MARKER_COLOR.stroke_width(MARKER_WIDTH_PX),
            ))?;
            let row = (i % MARKER_LABEL_ROWS) as i32;
            let offset = (
                MARKER_LABEL_OFFSET_PX,
                MARKER_LABEL_OFFSET_PX + row * MARKER_LABEL_ROW_PX,
            );
            let label = frame::shorten(&marker.label, MARKER_LABEL_CHARS_MAX);
            area.draw(
                &(EmptyElement::at((marker.at_s, y_axis.hi()))
                    + Text::new(label, offset, label_style.clone())),
            )?;
        }
        let entries: Vec<LegendEntry<'_>> = series
            .iter()
            .zip(PALETTE)
            .map(|(s, color)| LegendEntry {
                name: &s.name,
                color,
                swatch: Swatch::Line,
            })
            .collect();
        frame::draw_legend(&legend, &entries)
    })
}

/// A parameter sweep: per series, a line through the medians with min–max bars (the spread over
/// seeds). Points are joined in increasing `x`. A point is skipped if its `x` or `median` cannot
/// be placed; a `min` or `max` that cannot be placed shortens its bar to the median.
pub fn sweep(
    title: &str,
    x_label: &str,
    y_label: &str,
    log_x: bool,
    log_y: bool,
    series: &[SweepSeries],
) -> Result<String, ChartError> {
    frame::check_limit("series", series.len(), SERIES_MAX)?;
    for s in series {
        frame::check_limit("points in a series", s.points.len(), POINTS_PER_SERIES_MAX)?;
    }
    let (x_scale, y_scale) = (Scale::from_log(log_x), Scale::from_log(log_y));
    let placeable = |p: &SweepPoint| x_scale.accepts(p.x) && y_scale.accepts(p.median);
    // The bar around a placeable point: from the lower of min and median to the higher of max
    // and median.
    let spread = |p: &SweepPoint| {
        let low = if y_scale.accepts(p.min) {
            p.min.min(p.median)
        } else {
            p.median
        };
        let high = if y_scale.accepts(p.max) {
            p.max.max(p.median)
        } else {
            p.median
        };
        (low, high)
    };
    let mut x = Extent::new(x_scale);
    let mut y = Extent::new(y_scale);
    for point in series
        .iter()
        .flat_map(|s| &s.points)
        .filter(|p| placeable(p))
    {
        let (low, high) = spread(point);
        x.add(point.x);
        y.add(low);
        y.add(high);
    }
    let (x_axis, y_axis) = (x.padded(), y.padded());

    frame::render(|root| {
        let (plot, legend) = frame::split_legend(root);
        let mut chart = frame::build(&plot, title, x_axis, y_axis)?;
        frame::draw_mesh(&mut chart, Some(x_label), y_label, true)?;
        let area = chart.plotting_area();
        for (s, color) in series.iter().zip(PALETTE) {
            let mut points: Vec<SweepPoint> =
                s.points.iter().copied().filter(|p| placeable(p)).collect();
            points.sort_by(|a, b| a.x.total_cmp(&b.x));
            let medians: Vec<(f64, f64)> = points.iter().map(|p| (p.x, p.median)).collect();
            draw_line(area, &medians, color)?;
            for point in &points {
                let (low, high) = spread(point);
                if low < high {
                    draw_error_bar(area, point.x, low, high, color)?;
                }
                area.draw(&Circle::new(
                    (point.x, point.median),
                    POINT_RADIUS_PX,
                    color.filled(),
                ))?;
            }
        }
        let entries: Vec<LegendEntry<'_>> = series
            .iter()
            .zip(PALETTE)
            .map(|(s, color)| LegendEntry {
                name: &s.name,
                color,
                swatch: Swatch::Line,
            })
            .collect();
        frame::draw_legend(&legend, &entries)
    })
}

/// One stacked bar per category, e.g. end-to-end latency split into client wait, network, broker
/// append, replication and consumer fetch. `parts[0]` is the bottom layer; the legend lists the
/// layers top to bottom, as they appear. A missing, negative or unplaceable value counts as zero;
/// values beyond `categories.len()` are ignored.
pub fn stacked_bars(
    title: &str,
    y_label: &str,
    categories: &[String],
    parts: &[Part],
) -> Result<String, ChartError> {
    frame::check_limit("categories", categories.len(), CATEGORIES_MAX)?;
    frame::check_limit("parts", parts.len(), SERIES_MAX)?;
    let value = |part: &Part, category: usize| {
        let v = part.values.get(category).copied().unwrap_or(0.0);
        if Scale::Linear.accepts(v) && v > 0.0 {
            v
        } else {
            0.0
        }
    };
    let total_max = (0..categories.len())
        .map(|c| parts.iter().map(|p| value(p, c)).sum::<f64>())
        .fold(0.0, f64::max);
    let y_top = if total_max > 0.0 {
        total_max * BAR_HEADROOM
    } else {
        1.0
    };
    let y_axis = Axis::new(Scale::Linear, 0.0, y_top);

    frame::render(|root| {
        let (plot, legend) = frame::split_legend(root);
        let mut chart = frame::build(&plot, title, CategoryAxis::new(categories), y_axis)?;
        frame::draw_mesh(&mut chart, None, y_label, false)?;
        let area = chart.plotting_area();
        let half_width = BAR_WIDTH_FRACTION / 2.0;
        for category in 0..categories.len() {
            let center = category as f64;
            let mut base = 0.0;
            for (part, color) in parts.iter().zip(PALETTE) {
                let v = value(part, category);
                if v > 0.0 {
                    let corners = [(center - half_width, base + v), (center + half_width, base)];
                    area.draw(&Rectangle::new(corners, color.filled()))?;
                    base += v;
                }
            }
        }
        let entries: Vec<LegendEntry<'_>> = parts
            .iter()
            .zip(PALETTE)
            .rev()
            .map(|(p, color)| LegendEntry {
                name: &p.name,
                color,
                swatch: Swatch::Block,
            })
            .collect();
        frame::draw_legend(&legend, &entries)
    })
}

/// Maximal runs of consecutive points that `keep` accepts: a line breaks where data is missing.
fn runs(points: &[(f64, f64)], keep: impl Fn(&(f64, f64)) -> bool) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![];
    let mut run = vec![];
    for point in points {
        if keep(point) {
            run.push(*point);
        } else if !run.is_empty() {
            runs.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// A polyline, or a dot when there is a single point (a one-point path would be invisible).
fn draw_line<X, Y>(
    area: &frame::PlotArea<'_, X, Y>,
    points: &[(f64, f64)],
    color: RGBColor,
) -> Result<(), ChartError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    match points {
        [] => {}
        [point] => area.draw(&Circle::new(*point, POINT_RADIUS_PX, color.filled()))?,
        _ => area.draw(&PathElement::new(
            points.to_vec(),
            color.stroke_width(LINE_WIDTH_PX),
        ))?,
    }
    Ok(())
}

/// A vertical bar from `low` to `high` at `x`, with caps.
fn draw_error_bar<X, Y>(
    area: &frame::PlotArea<'_, X, Y>,
    x: f64,
    low: f64,
    high: f64,
    color: RGBColor,
) -> Result<(), ChartError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let style = color.stroke_width(1);
    area.draw(&PathElement::new(vec![(x, low), (x, high)], style))?;
    for end in [low, high] {
        let cap = PathElement::new(vec![(-CAP_HALF_PX, 0), (CAP_HALF_PX, 0)], style);
        area.draw(&(EmptyElement::at((x, end)) + cap))?;
    }
    Ok(())
}
