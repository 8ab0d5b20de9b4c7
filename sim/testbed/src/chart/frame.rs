//! What every chart shares: the canvas, the fixed layout and styles, the mesh and the legend.

use plotters::backend::SVGBackend;
use plotters::chart::ChartContext;
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::drawing::{DrawingArea, DrawingAreaErrorKind, IntoDrawingArea};
use plotters::element::{PathElement, Rectangle, Text};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{Color, IntoFont, RGBColor, TextStyle, WHITE};

use super::{ChartError, HEIGHT_PX, WIDTH_PX};

pub(super) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
pub(super) type Chart<'a, 'b, X, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;
pub(super) type PlotArea<'a, X, Y> = DrawingArea<SVGBackend<'a>, Cartesian2d<X, Y>>;

/// Series colours, in the order series are given (Tableau 10: distinct, colour-blind aware).
/// [`super::SERIES_MAX`] is its length, so no two series of a chart share a colour.
pub(super) const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0xE1, 0x57, 0x59),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xBA, 0xB0, 0xAC),
];
pub(super) const TEXT_COLOR: RGBColor = RGBColor(0x20, 0x20, 0x20);
/// Fault markers are dark grey so they never read as one of the series.
pub(super) const MARKER_COLOR: RGBColor = RGBColor(0x50, 0x50, 0x50);

/// plotters' font sizes; the SVG's `font-size` is this divided by 1.24.
const TITLE_FONT_PX: f64 = 22.0;
const LABEL_FONT_PX: f64 = 15.0;
const SMALL_FONT_PX: f64 = 13.0;
/// Fonts are named by generic family only: the SVG viewer picks the face, nothing is loaded.
const FONT_FAMILY: &str = "sans-serif";

pub(super) const LINE_WIDTH_PX: u32 = 2;
pub(super) const POINT_RADIUS_PX: i32 = 3;

const MARGIN_PX: u32 = 12;
/// Wider on the right, where the last x tick label is centred on the plot's edge.
const MARGIN_RIGHT_PX: u32 = 24;
const X_LABEL_AREA_PX: u32 = 48;
const Y_LABEL_AREA_PX: u32 = 76;
/// Tick labels per axis at most; light grid lines per labelled interval at most.
const X_LABELS_MAX: usize = 10;
const Y_LABELS_MAX: usize = 8;
const LIGHT_LINES_PER_LABEL_MAX: usize = 4;

/// The legend is a strip right of the plot, so it never hides data.
const LEGEND_WIDTH_PX: u32 = 170;
const LEGEND_TOP_PX: i32 = 56;
const LEGEND_ROW_PX: i32 = 22;
const LEGEND_SWATCH_PX: i32 = 22;
const LEGEND_GAP_PX: i32 = 6;
/// Between the wrapped lines of one legend name.
const LEGEND_LINE_PX: i32 = 17;
/// Longer names wrap onto further lines to stay inside the strip.
const LEGEND_NAME_CHARS_MAX: usize = 18;
const LEGEND_TITLE_CHARS_MAX: usize = 22;

impl From<DrawingAreaErrorKind<std::io::Error>> for ChartError {
    fn from(e: DrawingAreaErrorKind<std::io::Error>) -> ChartError {
        ChartError::Draw(e.to_string())
    }
}

pub(super) fn check_limit(what: &'static str, count: usize, max: usize) -> Result<(), ChartError> {
    if count > max {
        return Err(ChartError::TooMany { what, count, max });
    }
    Ok(())
}

/// Runs `draw` on a white `WIDTH_PX` x `HEIGHT_PX` canvas and returns the SVG document.
pub(super) fn render(
    draw: impl FnOnce(&Area<'_>) -> Result<(), ChartError>,
) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(svg)
}

/// The plot (left) and the legend strip (right).
pub(super) fn split_legend<'a>(root: &Area<'a>) -> (Area<'a>, Area<'a>) {
    root.split_horizontally(WIDTH_PX - LEGEND_WIDTH_PX)
}

fn text_style(size: f64) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&TEXT_COLOR)
}

pub(super) fn label_style() -> TextStyle<'static> {
    text_style(LABEL_FONT_PX)
}

pub(super) fn small_style() -> TextStyle<'static> {
    text_style(SMALL_FONT_PX)
}

/// A titled chart on `area` with room for tick labels and axis descriptions.
pub(super) fn build<'a, 'b, X: Ranged, Y: Ranged>(
    area: &Area<'b>,
    title: &str,
    x: X,
    y: Y,
) -> Result<Chart<'a, 'b, X, Y>, ChartError> {
    let chart = plotters::chart::ChartBuilder::on(area)
        .caption(title, text_style(TITLE_FONT_PX))
        .margin(MARGIN_PX)
        .margin_right(MARGIN_RIGHT_PX)
        .x_label_area_size(X_LABEL_AREA_PX)
        .y_label_area_size(Y_LABEL_AREA_PX)
        .build_cartesian_2d(x, y)?;
    Ok(chart)
}

/// Grid, axes, tick labels and axis descriptions. `x_grid` off suits categories.
pub(super) fn draw_mesh<X, Y>(
    chart: &mut Chart<'_, '_, X, Y>,
    x_desc: Option<&str>,
    y_desc: &str,
    x_grid: bool,
) -> Result<(), ChartError>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    mesh.x_labels(X_LABELS_MAX)
        .y_labels(Y_LABELS_MAX)
        .max_light_lines(LIGHT_LINES_PER_LABEL_MAX)
        .label_style(label_style())
        .axis_desc_style(label_style())
        .y_desc(y_desc);
    if let Some(x_desc) = x_desc {
        mesh.x_desc(x_desc);
    }
    if !x_grid {
        mesh.disable_x_mesh();
    }
    mesh.draw()?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Swatch {
    /// A short line: for line series.
    Line,
    /// A filled square: for bars.
    Block,
    /// A dashed line: for analytic bounds.
    Dashed,
}

pub(super) struct LegendEntry<'a> {
    pub name: &'a str,
    pub color: RGBColor,
    pub swatch: Swatch,
}

/// An optional title (what the entries stand for, e.g. the swept axis), then one entry per
/// row group, top to bottom in the order given. Names are wrapped, never cut, so that two
/// series whose names differ only at the end stay distinguishable; an empty name (a lone
/// series that the title and axis already name) gets no row.
pub(super) fn draw_legend(
    area: &Area<'_>,
    title: Option<&str>,
    entries: &[LegendEntry<'_>],
) -> Result<(), ChartError> {
    let title_style = label_style().pos(Pos::new(HPos::Left, VPos::Center));
    let name_style = label_style().pos(Pos::new(HPos::Left, VPos::Center));
    let x = LEGEND_GAP_PX;
    let mut y = LEGEND_TOP_PX;
    if let Some(title) = title.filter(|t| !t.is_empty()) {
        for line in wrap(title, LEGEND_TITLE_CHARS_MAX) {
            area.draw(&Text::new(line, (x, y), title_style.clone()))?;
            y += LEGEND_LINE_PX;
        }
        y += LEGEND_ROW_PX - LEGEND_LINE_PX;
    }
    for entry in entries.iter().filter(|e| !e.name.is_empty()) {
        match entry.swatch {
            Swatch::Line => area.draw(&PathElement::new(
                vec![(x, y), (x + LEGEND_SWATCH_PX, y)],
                entry.color.stroke_width(LINE_WIDTH_PX),
            ))?,
            Swatch::Block => {
                let half = LEGEND_ROW_PX / 2 - 3;
                area.draw(&Rectangle::new(
                    [(x, y - half), (x + LEGEND_SWATCH_PX, y + half)],
                    entry.color.filled(),
                ))?
            }
            Swatch::Dashed => {
                let dash = LEGEND_SWATCH_PX / 4;
                for k in [0, 2] {
                    area.draw(&PathElement::new(
                        vec![(x + k * dash, y), (x + (k + 1) * dash, y)],
                        entry.color.stroke_width(LINE_WIDTH_PX),
                    ))?;
                }
            }
        }
        let text_x = x + LEGEND_SWATCH_PX + LEGEND_GAP_PX;
        for line in wrap(entry.name, LEGEND_NAME_CHARS_MAX) {
            area.draw(&Text::new(line, (text_x, y), name_style.clone()))?;
            y += LEGEND_LINE_PX;
        }
        y += LEGEND_ROW_PX - LEGEND_LINE_PX;
    }
    Ok(())
}

/// `text` in lines of at most `chars_max` characters, broken at spaces where possible (a word
/// longer than a line is split), so that nothing is lost.
pub(super) fn wrap(text: &str, chars_max: usize) -> Vec<String> {
    let chars_max = chars_max.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        let len = line.chars().count();
        if len > 0 && len + 1 + word.len() <= chars_max {
            line.push(' ');
            line.extend(word);
            continue;
        }
        if len > 0 {
            lines.push(std::mem::take(&mut line));
        }
        while word.len() > chars_max {
            let rest = word.split_off(chars_max);
            lines.push(word.into_iter().collect());
            word = rest;
        }
        line = word.into_iter().collect();
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// `text` cut to `chars_max` characters, the last one an ellipsis when anything was cut.
pub(super) fn shorten(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(chars_max.saturating_sub(1)).collect();
    short.push('…');
    short
}
