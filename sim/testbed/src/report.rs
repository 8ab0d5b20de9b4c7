//! The report of one run: `report.md` with its SVG charts, written next to `summary.json`.
//!
//! Everything comes from the [`Summary`] (simulated time only), so a run's report is as
//! reproducible as its history.

use std::fmt::Write as _;
use std::path::Path;

use crate::chart::{self, Bound, Bucket, Extras, Marker, Part, Series};
use crate::experiment::render::num;
use crate::metrics::Metrics;
use crate::resources::{Load, Utilisation};
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
    latency_table(&mut out, s);
    utilisation_table(&mut out, &m.utilisation);
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

/// Steady-state latency first (what a reader should quote), then the whole run.
fn latency_table(out: &mut String, s: &Summary) {
    let l = &s.latency_ms;
    let _ = writeln!(out, "## Latency (ms)\n");
    let _ = writeln!(
        out,
        "Steady state: messages sent in {}–{} s, after the first election's backlog. The whole \
         run includes the election and the settle phase.\n",
        num(l.steady.sent_in_s[0]),
        num(l.steady.sent_in_s[1])
    );
    let _ = writeln!(out, "| | span | count | p50 | p99 | p99.9 | max |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for (name, span, p) in [
        ("send to ack", "steady", &l.steady.produce),
        ("send to ack", "whole run", &l.produce),
        ("send to delivery", "steady", &l.steady.end_to_end),
        ("send to delivery", "whole run", &l.end_to_end),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {span} | {} | {} | {} | {} | {} |",
            p.count,
            num(p.p50),
            num(p.p99),
            num(p.p999),
            num(p.max)
        );
    }
}

/// Busy share and peak queue wait of every host's resources, when the run modelled them.
fn utilisation_table(out: &mut String, u: &Utilisation) {
    if u.hosts.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## Utilisation\n");
    let _ = writeln!(
        out,
        "Share of {}–{} s each resource was busy (cores: the mean over cores), with the longest \
         wait for it in ms.{}\n",
        num(u.window_s[0]),
        num(u.window_s[1]),
        u.leader
            .as_deref()
            .map(|l| format!(" {l} led the first partition for most of it."))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "| host | cores | CPU | NIC transmit | NIC receive | disk writeback | disk fsync |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let cell = |l: Option<&Load>| match l {
        Some(l) => format!("{} ({} ms)", num(l.busy), num(l.wait_max_ms)),
        None => "-".to_string(),
    };
    for (host, h) in &u.hosts {
        let _ = writeln!(
            out,
            "| {host} | {} | {} | {} | {} | {} | {} |",
            h.cores,
            cell(Some(&h.cpu)),
            cell(Some(&h.nic_tx)),
            cell(Some(&h.nic_rx)),
            cell(h.disk_writeback.as_ref()),
            cell(h.disk_fsync.as_ref())
        );
    }
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

/// Fault markers, then as many rebalance markers as fit, in time order.
fn markers(m: &Metrics) -> Vec<Marker> {
    let faults = m.markers.iter().map(|k| Marker {
        at_s: k.at_s,
        label: k.label.clone(),
    });
    let rebalances = m.groups.iter().flat_map(|(group, g)| {
        g.rebalance_at_s.iter().map(move |&at_s| Marker {
            at_s,
            label: format!("rebalance {group}"),
        })
    });
    let mut all: Vec<Marker> = faults.chain(rebalances).take(chart::MARKERS_MAX).collect();
    all.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    all
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
    let offered = m.throughput.offered_per_s;
    let extras = Extras {
        bounds: (offered > 0.0)
            .then(|| Bound::horizontal("offered load", offered))
            .into_iter()
            .collect(),
        ..Extras::default()
    };
    chart::time_series_with(
        "Messages per simulated second",
        "messages / s",
        &[
            line("sent", |s| s.sent),
            line("acknowledged", |s| s.acked),
            line("consumed", |s| s.consumed),
        ],
        &markers(m),
        &extras,
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
    chart::time_series_with(
        "Consumer lag per partition (end of each second)",
        "messages behind",
        &series,
        &markers(m),
        &Extras {
            legend_title: Some("partition".into()),
            ..Extras::default()
        },
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
    chart::stacked_bars_with(
        "End-to-end latency by part",
        Some("messages sent in the measured window"),
        "ms",
        &["mean over messages".to_string()],
        &parts,
        &Extras {
            legend_title: Some("part of the path".into()),
            ..Extras::default()
        },
    )
}
