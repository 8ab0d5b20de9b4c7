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
//! - Legend names wrap onto further lines, never cut; marker labels longer than
//!   `MARKER_LABEL_CHARS_MAX` are cut with an ellipsis. An empty series name gets no legend row.
//! - [`Extras`] adds to the `*_with` functions what a reader needs beyond the data: a legend
//!   title naming what the series stand for, analytic [`Bound`]s drawn as dashed reference lines,
//!   and whether a linear y axis may start above zero (by default it starts at zero).

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
/// Bound lines in one chart.
pub const BOUNDS_MAX: usize = 4;

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
/// Dashes of a bound line: this many pixels on, as many off.
const DASH_PX: i32 = 6;
/// A bar of zero is drawn this many pixels high, so that it reads as measured, not missing.
const ZERO_BAR_PX: i32 = 2;
/// A time series' x axis title unless [`Extras::x_label`] names another.
const TIME_LABEL: &str = "time (s)";
/// Bound lines are dark, in a colour no series uses.
const BOUND_COLOR: RGBColor = RGBColor(0x30, 0x30, 0x30);
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

/// One bar of a bar chart: the median over seeds with its min–max whisker.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub category: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// An analytic bound a claim rests on (1 / round trip, window × batch ÷ round trip, NIC
/// capacity, offered load), drawn as a dashed line and named in the legend.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    pub label: String,
    pub line: BoundLine,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BoundLine {
    /// `y = value` across the whole x axis.
    Horizontal(f64),
    /// Through `(x, y)` points, joined in the order given (e.g. a bound that depends on x).
    Through(Vec<(f64, f64)>),
}

impl Bound {
    pub fn horizontal(label: impl Into<String>, y: f64) -> Bound {
        Bound {
            label: label.into(),
            line: BoundLine::Horizontal(y),
        }
    }

    pub fn through(label: impl Into<String>, points: Vec<(f64, f64)>) -> Bound {
        Bound {
            label: label.into(),
            line: BoundLine::Through(points),
        }
    }

    fn values(&self) -> Vec<(Option<f64>, f64)> {
        match &self.line {
            BoundLine::Horizontal(y) => vec![(None, *y)],
            BoundLine::Through(points) => points.iter().map(|&(x, y)| (Some(x), y)).collect(),
        }
    }
}

/// What a chart shows besides its data. `Extras::default()` is what the plain functions draw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// A title over the legend naming what the series stand for, e.g. the swept axis
    /// (`"broker cores"`).
    pub legend_title: Option<String>,
    /// Analytic bounds, at most [`BOUNDS_MAX`].
    pub bounds: Vec<Bound>,
    /// Let a linear y axis fit the data instead of starting at zero; a chart that sets this
    /// should say so in its title.
    pub y_from_data: bool,
    /// The x axis title of a time series, instead of `time (s)`.
    pub x_label: Option<String>,
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
/// The x axis spans the points and the markers; the y axis spans zero to the points with a
/// margin, and room above them for the marker labels.
pub fn time_series(
    title: &str,
    y_label: &str,
    series: &[Series],
    markers: &[Marker],
) -> Result<String, ChartError> {
    time_series_with(title, y_label, series, markers, &Extras::default())
}

/// [`time_series`] with a legend title, bounds and the y axis choice of `extras`.
pub fn time_series_with(
    title: &str,
    y_label: &str,
    series: &[Series],
    markers: &[Marker],
    extras: &Extras,
) -> Result<String, ChartError> {
    frame::check_limit("series", series.len(), SERIES_MAX)?;
    for s in series {
        frame::check_limit("points in a series", s.points.len(), POINTS_PER_SERIES_MAX)?;
    }
    frame::check_limit("markers", markers.len(), MARKERS_MAX)?;
    check_bounds(extras)?;
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
    add_bounds(&mut None, &mut y, extras);
    let (x_axis, mut y_axis) = (x.tight(), y_axis(y, extras));
    if any_marker {
        y_axis = y_axis.raised(MARKER_HEADROOM_FRACTION);
    }

    frame::render(|root| {
        let (plot, legend) = frame::split_legend(root);
        let mut chart = frame::build(&plot, title, x_axis, y_axis)?;
        let x_label = extras.x_label.as_deref().unwrap_or(TIME_LABEL);
        frame::draw_mesh(&mut chart, Some(x_label), y_label, true)?;
        let area = chart.plotting_area();
        for (s, color) in series.iter().zip(PALETTE) {
            for run in runs(&s.points, placeable) {
                draw_line(area, &run, color)?;
            }
        }
        draw_bounds(area, x_axis, extras, |p| placeable(p))?;
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
        let entries = legend_entries(series.iter().map(|s| s.name.as_str()), Swatch::Line, extras);
        frame::draw_legend(&legend, extras.legend_title.as_deref(), &entries)
    })
}

/// A parameter sweep: per series, a line through the medians with min–max bars (the spread over
/// seeds). Points are joined in increasing `x`. A point is skipped if its `x` or `median` cannot
/// be placed; a `min` or `max` that cannot be placed shortens its bar to the median. A linear y
/// axis starts at zero.
pub fn sweep(
    title: &str,
    x_label: &str,
    y_label: &str,
    log_x: bool,
    log_y: bool,
    series: &[SweepSeries],
) -> Result<String, ChartError> {
    sweep_with(
        title,
        x_label,
        y_label,
        log_x,
        log_y,
        series,
        &Extras::default(),
    )
}

/// [`sweep`] with a legend title, bounds and the y axis choice of `extras`.
pub fn sweep_with(
    title: &str,
    x_label: &str,
    y_label: &str,
    log_x: bool,
    log_y: bool,
    series: &[SweepSeries],
    extras: &Extras,
) -> Result<String, ChartError> {
    frame::check_limit("series", series.len(), SERIES_MAX)?;
    for s in series {
        frame::check_limit("points in a series", s.points.len(), POINTS_PER_SERIES_MAX)?;
    }
    check_bounds(extras)?;
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
    add_bounds(&mut Some(&mut x), &mut y, extras);
    let (x_axis, y_axis) = (x.padded(), y_axis(y, extras));

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
        draw_bounds(area, x_axis, extras, |&(x, y)| {
            x_scale.accepts(x) && y_scale.accepts(y)
        })?;
        let entries = legend_entries(series.iter().map(|s| s.name.as_str()), Swatch::Line, extras);
        frame::draw_legend(&legend, extras.legend_title.as_deref(), &entries)
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
    stacked_bars_with(title, None, y_label, categories, parts, &Extras::default())
}

/// [`stacked_bars`] with an x-axis title (what the categories are) and a legend title.
pub fn stacked_bars_with(
    title: &str,
    x_label: Option<&str>,
    y_label: &str,
    categories: &[String],
    parts: &[Part],
    extras: &Extras,
) -> Result<String, ChartError> {
    frame::check_limit("categories", categories.len(), CATEGORIES_MAX)?;
    frame::check_limit("parts", parts.len(), SERIES_MAX)?;
    check_bounds(extras)?;
    let value = |part: &Part, category: usize| {
        let v = part.values.get(category).copied().unwrap_or(0.0);
        if Scale::Linear.accepts(v) && v > 0.0 {
            v
        } else {
            0.0
        }
    };
    let mut y = Extent::new(Scale::Linear);
    y.add(0.0);
    for c in 0..categories.len() {
        y.add(parts.iter().map(|p| value(p, c)).sum::<f64>());
    }
    add_bounds(&mut None, &mut y, extras);
    let y_axis = bar_axis(y);

    frame::render(|root| {
        let (plot, legend) = frame::split_legend(root);
        let mut chart = frame::build(&plot, title, CategoryAxis::new(categories), y_axis)?;
        frame::draw_mesh(&mut chart, x_label, y_label, false)?;
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
            if base == 0.0 {
                draw_zero_bar(area, center, half_width, PALETTE[0])?;
            }
        }
        let x_span = CategoryAxis::new(categories);
        draw_bounds(area, x_span, extras, |&(x, y)| {
            Scale::Linear.accepts(x) && Scale::Linear.accepts(y)
        })?;
        let entries: Vec<LegendEntry<'_>> = parts
            .iter()
            .zip(PALETTE)
            .rev()
            .map(|(p, color)| LegendEntry {
                name: &p.name,
                color,
                swatch: Swatch::Block,
            })
            .chain(bound_entries(extras))
            .collect();
        frame::draw_legend(&legend, extras.legend_title.as_deref(), &entries)
    })
}

/// One bar per category at the median over seeds, with a min–max whisker; a bar of zero is
/// drawn as a thin line on the axis so that it reads as measured. The y axis starts at zero;
/// bars below zero are drawn as zero.
pub fn bars(
    title: &str,
    x_label: &str,
    y_label: &str,
    bars: &[Bar],
    extras: &Extras,
) -> Result<String, ChartError> {
    frame::check_limit("categories", bars.len(), CATEGORIES_MAX)?;
    check_bounds(extras)?;
    let placed = |v: f64| Scale::Linear.accepts(v).then_some(v.max(0.0));
    let mut y = Extent::new(Scale::Linear);
    y.add(0.0);
    for b in bars {
        for v in [b.median, b.min, b.max].into_iter().filter_map(placed) {
            y.add(v);
        }
    }
    add_bounds(&mut None, &mut y, extras);
    let y_axis = bar_axis(y);
    let categories: Vec<String> = bars.iter().map(|b| b.category.clone()).collect();

    frame::render(|root| {
        let (plot, legend) = frame::split_legend(root);
        let x_axis = CategoryAxis::new(&categories);
        let mut chart = frame::build(&plot, title, x_axis, y_axis)?;
        frame::draw_mesh(&mut chart, Some(x_label), y_label, false)?;
        let area = chart.plotting_area();
        let half_width = BAR_WIDTH_FRACTION / 2.0;
        let color = PALETTE[0];
        for (i, bar) in bars.iter().enumerate() {
            let center = i as f64;
            let Some(median) = placed(bar.median) else {
                continue;
            };
            if median > 0.0 {
                let corners = [(center - half_width, median), (center + half_width, 0.0)];
                area.draw(&Rectangle::new(corners, color.filled()))?;
            } else {
                draw_zero_bar(area, center, half_width, color)?;
            }
            let low = placed(bar.min).unwrap_or(median).min(median);
            let high = placed(bar.max).unwrap_or(median).max(median);
            if low < high {
                draw_error_bar(area, center, low, high, BOUND_COLOR)?;
            }
        }
        draw_bounds(area, x_axis, extras, |&(x, y)| {
            Scale::Linear.accepts(x) && Scale::Linear.accepts(y)
        })?;
        let entries: Vec<LegendEntry<'_>> = bound_entries(extras).collect();
        frame::draw_legend(&legend, extras.legend_title.as_deref(), &entries)
    })
}

fn check_bounds(extras: &Extras) -> Result<(), ChartError> {
    frame::check_limit("bounds", extras.bounds.len(), BOUNDS_MAX)?;
    for b in &extras.bounds {
        if let BoundLine::Through(points) = &b.line {
            frame::check_limit("points in a bound", points.len(), POINTS_PER_SERIES_MAX)?;
        }
    }
    Ok(())
}

/// Widens the extents so that every bound is in view (`x` only for bounds through points).
fn add_bounds(x: &mut Option<&mut Extent>, y: &mut Extent, extras: &Extras) {
    for bound in &extras.bounds {
        for (bx, by) in bound.values() {
            match (bx, x.as_deref_mut()) {
                (Some(bx), Some(x)) => {
                    if x.add(bx) {
                        y.add(by);
                    }
                }
                _ => {
                    y.add(by);
                }
            }
        }
    }
}

/// The y axis of a line chart: from zero (or the lowest value, if below zero) to the data with
/// a margin, unless `extras` lets it fit the data; a log axis always fits the data.
fn y_axis(mut y: Extent, extras: &Extras) -> Axis {
    if extras.y_from_data || y.scale() == Scale::Log10 {
        return y.padded();
    }
    y.add(0.0);
    y.padded_from_zero()
}

/// A bar chart's y axis: from zero to the tallest value with headroom.
fn bar_axis(y: Extent) -> Axis {
    let top = y.max().unwrap_or(0.0);
    let top = if top > 0.0 { top * BAR_HEADROOM } else { 1.0 };
    Axis::new(Scale::Linear, y.min().unwrap_or(0.0).min(0.0), top)
}

fn legend_entries<'a>(
    names: impl Iterator<Item = &'a str>,
    swatch: Swatch,
    extras: &'a Extras,
) -> Vec<LegendEntry<'a>> {
    names
        .zip(PALETTE)
        .map(|(name, color)| LegendEntry {
            name,
            color,
            swatch,
        })
        .chain(bound_entries(extras))
        .collect()
}

fn bound_entries(extras: &Extras) -> impl Iterator<Item = LegendEntry<'_>> {
    extras.bounds.iter().map(|b| LegendEntry {
        name: &b.label,
        color: BOUND_COLOR,
        swatch: Swatch::Dashed,
    })
}

/// Each bound as a dashed line: a horizontal one across `x_axis`, one through points through
/// those `keep` accepts.
fn draw_bounds<X, Y>(
    area: &frame::PlotArea<'_, X, Y>,
    x_axis: X,
    extras: &Extras,
    keep: impl Fn(&(f64, f64)) -> bool,
) -> Result<(), ChartError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let span = x_axis.range();
    for bound in &extras.bounds {
        let points = match &bound.line {
            BoundLine::Horizontal(y) => vec![(span.start, *y), (span.end, *y)],
            BoundLine::Through(points) => points.clone(),
        };
        for run in runs(&points, &keep) {
            draw_dashed(area, &run)?;
        }
    }
    Ok(())
}

/// A dashed polyline. Dashes are laid out in whole pixels with integer arithmetic, so that
/// the SVG is the same on every platform (plotters' own dashes use libm's `hypot`).
fn draw_dashed<X, Y>(
    area: &frame::PlotArea<'_, X, Y>,
    points: &[(f64, f64)],
) -> Result<(), ChartError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let style = BOUND_COLOR.stroke_width(LINE_WIDTH_PX);
    for pair in points.windows(2) {
        let (a, b) = (area.map_coordinate(&pair[0]), area.map_coordinate(&pair[1]));
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        // The Chebyshev length: no square root needed, and dashes stay about DASH_PX long.
        let pieces = (dx.abs().max(dy.abs()) / DASH_PX).max(1);
        for k in (0..pieces).step_by(2) {
            let from = (dx * k / pieces, dy * k / pieces);
            let to = (dx * (k + 1) / pieces, dy * (k + 1) / pieces);
            area.draw(&(EmptyElement::at(pair[0]) + PathElement::new(vec![from, to], style)))?;
        }
    }
    Ok(())
}

/// A bar of zero: a thin block on the axis, as wide as a bar.
fn draw_zero_bar<X, Y>(
    area: &frame::PlotArea<'_, X, Y>,
    center: f64,
    half_width: f64,
    color: RGBColor,
) -> Result<(), ChartError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let left = area.map_coordinate(&(center - half_width, 0.0));
    let right = area.map_coordinate(&(center + half_width, 0.0));
    let block = Rectangle::new([(0, -ZERO_BAR_PX), (right.0 - left.0, 0)], color.filled());
    area.draw(&(EmptyElement::at((center - half_width, 0.0)) + block))?;
    Ok(())
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
