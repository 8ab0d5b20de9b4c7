//! The report of one run: `report.md` with its SVG charts, written next to `summary.json`.
//!
//! Everything comes from the [`Summary`] (simulated time only), so a run's report is as
//! reproducible as its history.

use std::fmt::Write as _;
use std::path::Path;

use crate::chart::{self, Bucket, Marker, Part, Series};
use crate::experiment::render::num;
use crate::metrics::Metrics;
use crate::summary::Summary;

/// Partitions drawn in the lag chart; more would not be legible.
const LAG_SERIES_MAX: usize = chart::SERIES_MAX;

/// Writes `report.md` and its charts into `dir`.
pub fn write(dir: &Path, summary: &Summary) -> std::io::Result<()> {
    let m = &summary.metrics;
    let charts = [
        ("latency-produce.svg", produce_histogram(m)),
        ("latency-end-to-end.svg", end_to_end_histogram(m)),
        ("throughput.svg", throughput(m)),
        ("lag.svg", lag(m)),
        ("breakdown.svg", breakdown(m)),
    ];
    let mut written = Vec::new();
    for (file, svg) in charts {
        match svg {
            Ok(svg) => {
                std::fs::write(dir.join(file), svg)?;
                written.push(file);
            }
            Err(e) => tracing::warn!(file, error = %e, "chart left out"),
        }
    }
    std::fs::write(dir.join("report.md"), markdown(summary, &written))
}

fn markdown(s: &Summary, charts: &[&str]) -> String {
    let m = &s.metrics;
    let mut out = String::new();
    let _ = writeln!(out, "# Run report: {} (seed {})\n", s.scenario, s.seed);
    let _ = writeln!(
        out,
        "Simulated {} s; trace hash `{}`. Replay: `fathom run <scenario> --seed {}`.\n",
        num(s.simulated_s),
        s.trace_hash,
        s.seed
    );
    let _ = writeln!(out, "## Messages\n");
    let _ = writeln!(out, "| sent | acked | failed | unknown | read |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} |\n",
        s.sent, s.acked, s.failed, s.unknown, s.read
    );
    let _ = writeln!(out, "## Anomalies\n");
    let _ = writeln!(out, "| class | count |");
    let _ = writeln!(out, "|---|---|");
    for (name, count) in s.anomalies.iter() {
        let _ = writeln!(out, "| {name} | {count} |");
    }
    for (class, examples) in &s.examples {
        for e in examples.iter().take(3) {
            let _ = writeln!(out, "\n- e.g. {class}: {e}");
        }
    }
    let t = &m.throughput;
    let _ = writeln!(out, "\n## Throughput\n");
    let _ = writeln!(
        out,
        "Over {}–{} s: {} sends/s, {} acks/s ({} MB/s), {} first deliveries/s ({} MB/s).\n",
        num(t.window_s[0]),
        num(t.window_s[1]),
        num(t.sent_per_s),
        num(t.acked_per_s),
        num(t.acked_mbyte_s),
        num(t.consumed_per_s),
        num(t.consumed_mbyte_s)
    );
    let l = &s.latency_ms;
    let _ = writeln!(out, "## Latency (ms)\n");
    let _ = writeln!(out, "| | count | p50 | p99 | max |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (name, p) in [
        ("send to ack", &l.produce),
        ("send to delivery", &l.end_to_end),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} |",
            p.count,
            num(p.p50),
            num(p.p99),
            num(p.max)
        );
    }
    let b = &m.breakdown;
    if b.messages > 0 {
        let _ = writeln!(
            out,
            "\n## End-to-end latency by part (claim E1)\n\n{} messages sent after the warm-up, \
             mean {} ms:\n",
            b.messages,
            num(b.total_mean_ms)
        );
        let _ = writeln!(out, "| part | mean | p50 | p99 |");
        let _ = writeln!(out, "|---|---|---|---|");
        for p in &b.parts {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                p.name,
                num(p.mean_ms),
                num(p.p50_ms),
                num(p.p99_ms)
            );
        }
    }
    let _ = writeln!(out, "\n## Faults\n");
    if s.faults.is_empty() {
        let _ = writeln!(out, "None.");
    }
    for f in &s.faults {
        let _ = writeln!(out, "- {} ms: {} — {}", f.at_ms, f.kind, f.detail);
    }
    if !charts.is_empty() {
        let _ = writeln!(out, "\n## Charts\n");
        for c in charts {
            let _ = writeln!(out, "![{c}]({c})\n");
        }
    }
    out
}

fn buckets(b: &[crate::metrics::Bucket]) -> Vec<Bucket> {
    b.iter()
        .map(|b| Bucket {
            low: b.low_ms,
            high: b.high_ms,
            count: b.count,
        })
        .collect()
}

fn produce_histogram(m: &Metrics) -> Result<String, chart::ChartError> {
    chart::histogram(
        "Send to acknowledgement",
        "latency (ms)",
        &buckets(&m.produce_histogram),
    )
}

fn end_to_end_histogram(m: &Metrics) -> Result<String, chart::ChartError> {
    chart::histogram(
        "Send to first delivery",
        "latency (ms)",
        &buckets(&m.end_to_end_histogram),
    )
}

fn markers(m: &Metrics) -> Vec<Marker> {
    m.markers
        .iter()
        .take(chart::MARKERS_MAX)
        .map(|k| Marker {
            at_s: k.at_s,
            label: k.label.clone(),
        })
        .collect()
}

fn throughput(m: &Metrics) -> Result<String, chart::ChartError> {
    let line = |name: &str, f: fn(&crate::metrics::Second) -> u64| Series {
        name: name.to_string(),
        points: m
            .series
            .iter()
            .map(|s| (s.t_s as f64 + 0.5, f(s) as f64))
            .collect(),
    };
    chart::time_series(
        "Messages per simulated second",
        "messages / s",
        &[
            line("sent", |s| s.sent),
            line("acknowledged", |s| s.acked),
            line("consumed", |s| s.consumed),
        ],
        &markers(m),
    )
}

fn lag(m: &Metrics) -> Result<String, chart::ChartError> {
    let partitions: Vec<&String> = m
        .series
        .first()
        .map(|s| s.lag.keys().take(LAG_SERIES_MAX).collect())
        .unwrap_or_default();
    let series: Vec<Series> = partitions
        .into_iter()
        .map(|p| Series {
            name: p.clone(),
            points: m
                .series
                .iter()
                .map(|s| {
                    (
                        s.t_s as f64 + 1.0,
                        s.lag.get(p).copied().unwrap_or(0) as f64,
                    )
                })
                .collect(),
        })
        .collect();
    chart::time_series(
        "Consumer lag per partition (end of each second)",
        "messages behind",
        &series,
        &markers(m),
    )
}

fn breakdown(m: &Metrics) -> Result<String, chart::ChartError> {
    let parts: Vec<Part> = m
        .breakdown
        .parts
        .iter()
        .map(|p| Part {
            name: p.name.clone(),
            values: vec![p.mean_ms],
        })
        .collect();
    chart::stacked_bars(
        "End-to-end latency by part",
        "ms",
        &["mean over messages".to_string()],
        &parts,
    )
}
