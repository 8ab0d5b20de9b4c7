//! `summary.json` and the table `fathom run` prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use fathom_history::{Anomalies, CheckReport, Event};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::fault_log::AppliedFault;
use crate::messages::{Life, Messages, ProcessIx};
use crate::metrics::Metrics;
use crate::scenario::Scenario;
use fathom_workload::trace::Trace;

/// Latency percentiles in simulated milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    /// The 99.9th percentile.
    pub p999: f64,
    pub max: f64,
}

/// Latencies of the messages sent in the measured window: steady state, without the first
/// leader election (whose backlog makes the whole run's tail) or the settle phase. What reports
/// and experiments quote.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SteadyLatencies {
    /// The window the messages were sent in, simulated seconds (the throughput window).
    pub sent_in_s: [f64; 2],
    pub produce: Percentiles,
    pub end_to_end: Percentiles,
}

/// What log recovery found when brokers restarted: the evidence that torn writes and
/// corruption reached the code that must survive them.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Recoveries {
    /// Partition logs whose recovery found a damaged tail or a bad segment, over every broker
    /// start.
    pub damaged_logs: u64,
    /// Bytes those recoveries cut off.
    pub truncated_bytes: u64,
    /// Of the damaged logs, those whose damage a torn write cannot explain (so the replica
    /// waited to be repaired from a leader before voting again).
    pub corrupt_logs: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    /// Whole run: from a send's invocation to its acknowledgement.
    pub produce: Percentiles,
    /// Whole run: from a send's invocation to its first delivery, a consumer's poll or a share
    /// member's acquisition (not the final read).
    pub end_to_end: Percentiles,
    /// The same two over the messages sent in the measured window.
    pub steady: SteadyLatencies,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    pub trace_hash: String,
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub unknown: u64,
    /// Of the unknown sends, those whose record a poll read.
    pub unknown_in_log: u64,
    pub read: u64,
    pub anomalies: Anomalies,
    pub examples: BTreeMap<String, Vec<String>>,
    /// Simulated milliseconds.
    pub latency_ms: Latencies,
    pub faults: Vec<AppliedFault>,
    pub final_read_incomplete: Vec<String>,
    pub simulated_s: f64,
    pub recoveries: Recoveries,
    /// Per share group: deliveries, redeliveries, acknowledgements, out-of-order deliveries.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub shares: BTreeMap<String, fathom_history::ShareStats>,
    /// Throughput, histograms, the end-to-end breakdown and time series.
    pub metrics: Metrics,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        scenario: &Scenario,
        seed: u64,
        trace: &Trace,
        events: &[Event],
        messages: &Messages<'_>,
        report: &CheckReport,
        faults: Vec<AppliedFault>,
        final_read_incomplete: Vec<String>,
        recoveries: Recoveries,
        metrics: Metrics,
    ) -> Summary {
        let latency_ms = latencies(messages, metrics.window_ns);
        Summary {
            scenario: scenario.name.clone(),
            seed,
            trace_hash: trace.hash(),
            sent: report.sent,
            acked: report.acked,
            failed: report.failed,
            unknown: report.unknown,
            unknown_in_log: report.unknown_in_log,
            read: report.read,
            anomalies: report.anomalies.clone(),
            examples: report.examples.clone(),
            latency_ms,
            faults,
            final_read_incomplete,
            simulated_s: events.last().map(|e| e.time_ns as f64 / 1e9).unwrap_or(0.0),
            recoveries,
            shares: report.shares.clone(),
            metrics,
        }
    }

    /// The short table `fathom run` prints.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "scenario   {} (seed {})", self.scenario, self.seed);
        let _ = writeln!(
            s,
            "messages   sent {}  acked {}  failed {}  unknown {}  read {}",
            self.sent, self.acked, self.failed, self.unknown, self.read
        );
        let _ = writeln!(s, "anomalies");
        for (name, count) in self.anomalies.iter() {
            let mark = if count > 0 { "  <--" } else { "" };
            let _ = writeln!(s, "  {name:<22} {count:>8}{mark}");
        }
        let l = &self.latency_ms;
        let rows = [
            ("produce", "steady", &l.steady.produce),
            ("", "whole run", &l.produce),
            ("end-to-end", "steady", &l.steady.end_to_end),
            ("", "whole run", &l.end_to_end),
        ];
        for (i, (name, span, p)) in rows.into_iter().enumerate() {
            let head = if i == 0 { "latency" } else { "" };
            let _ = writeln!(
                s,
                "{head:<10} {name:<11} {span:<10} p50 {:>9.3} ms  p99 {:>9.3} ms  p99.9 {:>9.3} ms  max {:>9.3} ms",
                p.p50, p.p99, p.p999, p.max
            );
        }
        let t = &self.metrics.throughput;
        let _ = writeln!(
            s,
            "throughput sent {:.1}/s  acked {:.1}/s ({:.3} MB/s)  consumed {:.1}/s  over {:.1}-{:.1} s",
            t.sent_per_s, t.acked_per_s, t.acked_mbyte_s, t.consumed_per_s, t.window_s[0], t.window_s[1]
        );
        for (group, g) in &self.shares {
            let _ = writeln!(
                s,
                "share      {group}: delivered {}  redelivered {}  accepted {}  rejected {} (dead-lettered {})  refused {}  unknown {}  out of order {} (per key {})",
                g.delivered, g.redeliveries, g.accepted, g.rejected, g.dead_lettered, g.refused_acks, g.unknown_acks, g.out_of_order, g.out_of_order_per_key
            );
        }
        let r = &self.recoveries;
        if r.damaged_logs > 0 {
            let _ = writeln!(
                s,
                "recovery   {} damaged logs ({} by corruption) cut back by {} bytes in all",
                r.damaged_logs, r.corrupt_logs, r.truncated_bytes
            );
        }
        let b = &self.metrics.breakdown;
        if b.messages > 0 {
            let _ = writeln!(
                s,
                "end-to-end {} messages, mean {:.3} ms =",
                b.messages, b.total_mean_ms
            );
            for p in &b.parts {
                let _ = writeln!(
                    s,
                    "  {:<24} mean {:>9.3} ms  p50 {:>9.3} ms  p99 {:>9.3} ms",
                    p.name, p.mean_ms, p.p50_ms, p.p99_ms
                );
            }
        }
        let u = &self.metrics.utilisation;
        if !u.hosts.is_empty() {
            let _ = writeln!(
                s,
                "busy       over {:.1}-{:.1} s, busy share (peak wait ms){}",
                u.window_s[0],
                u.window_s[1],
                u.leader
                    .as_deref()
                    .map(|l| format!("; {l} led the first partition"))
                    .unwrap_or_default()
            );
            for (host, h) in &u.hosts {
                let load =
                    |l: &crate::resources::Load| format!("{:.3} ({:.1})", l.busy, l.wait_max_ms);
                let mut line = format!(
                    "  {host:<16} cpu {}  tx {}  rx {}",
                    load(&h.cpu),
                    load(&h.nic_tx),
                    load(&h.nic_rx)
                );
                if let (Some(w), Some(f)) = (&h.disk_writeback, &h.disk_fsync) {
                    line += &format!("  writeback {}  fsync {}", load(w), load(f));
                }
                let _ = writeln!(s, "{line}");
            }
        }
        for (name, g) in &self.metrics.groups {
            let _ = writeln!(
                s,
                "group      {name}: rebalances {}  paused {:.1} ms over {} partitions  stop-the-world {:.1} ms  commit lag {}",
                g.rebalances,
                g.paused_ms_total,
                g.paused_ms.len(),
                g.stop_the_world_ms,
                g.commit_lag
            );
            let _ = writeln!(
                s,
                "             started at {:.3} s; end-to-end after it p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
                g.started_s, g.end_to_end_ms.p50, g.end_to_end_ms.p99, g.end_to_end_ms.max
            );
            let worst = g.paused_ms.iter().max_by(|a, b| a.1.total_cmp(b.1));
            if let Some((partition, paused)) = worst.filter(|(_, p)| **p > 0.0) {
                let _ = writeln!(s, "             longest paused: {partition} {paused:.1} ms");
            }
        }
        let _ = writeln!(s, "faults     {} applied", self.faults.len());
        for f in &self.faults {
            let _ = writeln!(s, "  {:>8} ms  {:<16} {}", f.at_ms, f.kind, f.detail);
        }
        if !self.final_read_incomplete.is_empty() {
            let _ = writeln!(
                s,
                "final read incomplete on {}",
                self.final_read_incomplete.join(", ")
            );
        }
        let _ = writeln!(s, "simulated  {:.3} s", self.simulated_s);
        let _ = writeln!(s, "trace hash {}", self.trace_hash);
        s
    }
}

/// Send-to-ack and send-to-first-delivery latency over the whole run, and over the messages
/// sent in `window_ns`.
fn latencies(messages: &Messages<'_>, window_ns: [u64; 2]) -> Latencies {
    let steady = |sent: u64| sent >= window_ns[0] && sent < window_ns[1];
    let [mut produce, mut end_to_end, mut steady_produce, mut steady_end_to_end] =
        [(); 4].map(|()| histogram());
    for &(sent, acked) in messages.acks() {
        let us = micros(acked.saturating_sub(sent));
        let _ = produce.record(us);
        if steady(sent) {
            let _ = steady_produce.record(us);
        }
    }
    for (sent, ns) in messages.lives().iter().filter_map(Life::end_to_end) {
        let us = micros(ns);
        let _ = end_to_end.record(us);
        if steady(sent) {
            let _ = steady_end_to_end.record(us);
        }
    }
    Latencies {
        produce: percentiles(&produce),
        end_to_end: percentiles(&end_to_end),
        steady: SteadyLatencies {
            sent_in_s: window_ns.map(|t| t as f64 / 1e9),
            produce: percentiles(&steady_produce),
            end_to_end: percentiles(&steady_end_to_end),
        },
    }
}

/// Send-to-first-delivery percentiles of the messages sent in `[from, to)` ns, each at its
/// first delivery to a consumer process that `within` accepts.
pub fn end_to_end_sent_in(
    messages: &Messages<'_>,
    from: u64,
    to: u64,
    within: impl Fn(ProcessIx) -> bool,
) -> Percentiles {
    let mut h = histogram();
    for life in messages.lives() {
        let Some(first) = life.delivered_to(&within) else {
            continue;
        };
        if let Some(sent) = life.sent_before(first.at, |t| (from..to).contains(&t)) {
            let _ = h.record(micros(first.ns.saturating_sub(sent)));
        }
    }
    percentiles(&h)
}

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

fn micros(ns: u64) -> u64 {
    (ns / 1_000).max(1)
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1_000.0;
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}
