//! Runs every point × seed of an experiment on a pool of threads and collects a flat set of
//! numbers per run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use fathom_history::{EventType, Op};
use serde::{Deserialize, Serialize};

use super::{Experiment, ExperimentError, Point};
use crate::metrics::round3;
use crate::run::{self, RunOutcome};

/// The numbers taken from every run, by name; what tables, charts and verdicts refer to.
pub const METRICS: &[(&str, &str)] = &[
    ("sent", "messages given to send"),
    ("acked", "sends acknowledged"),
    ("failed", "sends that failed for certain"),
    ("unknown", "sends with an unknown outcome"),
    ("read", "distinct messages read by the final read"),
    ("unread", "sent messages no consumer or final read ever saw"),
    ("lost", "acknowledged messages missing from the final read"),
    ("duplicate", "messages stored more than once"),
    (
        "inconsistent_offsets",
        "acknowledged offsets holding other messages",
    ),
    (
        "nonmonotonic_send",
        "acknowledgements out of send order (reordering)",
    ),
    ("poll_skip", "polls that skipped offsets"),
    ("nonmonotonic_poll", "polls that went backwards"),
    (
        "aborted_read",
        "reads of never-acknowledged, later-lost data",
    ),
    (
        "replica_divergence",
        "replicas that disagree below the high watermark",
    ),
    ("sent_per_s", "sends per simulated second"),
    ("acked_per_s", "acknowledgements per simulated second"),
    ("consumed_per_s", "first deliveries per simulated second"),
    ("acked_mbyte_s", "acknowledged payload MB/s"),
    ("produce_p50_ms", "send-to-ack latency, median"),
    ("produce_p99_ms", "send-to-ack latency, 99th percentile"),
    ("e2e_p50_ms", "send-to-delivery latency, median"),
    ("e2e_p99_ms", "send-to-delivery latency, 99th percentile"),
    ("e1_messages", "messages with every part timed"),
    (
        "e1_total_ms",
        "mean end-to-end latency of the timed messages",
    ),
    (
        "e1_client_wait_ms",
        "mean time in the producer before the first transmit",
    ),
    (
        "e1_network_ms",
        "mean time from transmit to the leader's NIC",
    ),
    (
        "e1_client_and_network_ms",
        "mean time from send to the leader's NIC",
    ),
    (
        "e1_broker_append_ms",
        "mean time from the leader's NIC to the append",
    ),
    (
        "e1_replication_ms",
        "mean time from the append to the commit",
    ),
    (
        "e1_consumer_ms",
        "mean time from the commit to the delivery",
    ),
    ("leader_changes", "leader elections won"),
    ("attempts", "produce attempts in the send journal"),
];

pub fn is_metric(name: &str) -> bool {
    METRICS.iter().any(|(n, _)| *n == name)
}

pub fn describe(name: &str) -> &'static str {
    METRICS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
        .unwrap_or("")
}

/// One run's numbers.
pub type Numbers = BTreeMap<String, f64>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedResult {
    pub seed: u64,
    pub trace_hash: String,
    pub numbers: Numbers,
}

/// Median, minimum and maximum over seeds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PointResult {
    pub labels: BTreeMap<String, String>,
    #[serde(skip)]
    pub point: Point,
    pub spread: BTreeMap<String, Spread>,
    pub seeds: Vec<SeedResult>,
}

impl PointResult {
    pub fn median(&self, metric: &str) -> f64 {
        self.spread.get(metric).map(|s| s.median).unwrap_or(0.0)
    }

    pub fn spread(&self, metric: &str) -> Spread {
        self.spread.get(metric).copied().unwrap_or(Spread {
            median: 0.0,
            min: 0.0,
            max: 0.0,
        })
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
    pub fn at(&self, labels: &[(&str, &str)]) -> Option<&PointResult> {
        self.points
            .iter()
            .find(|p| labels.iter().all(|(a, l)| p.label(a) == *l))
    }

    /// The median of `metric` at the point with `labels`; 0 if there is none.
    pub fn median(&self, labels: &[(&str, &str)], metric: &str) -> f64 {
        self.at(labels).map(|p| p.median(metric)).unwrap_or(0.0)
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
                        numbers: numbers(&o),
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

fn spread(seeds: &[SeedResult]) -> BTreeMap<String, Spread> {
    let mut out = BTreeMap::new();
    for (name, _) in METRICS {
        let mut v: Vec<f64> = seeds
            .iter()
            .filter_map(|s| s.numbers.get(*name).copied())
            .collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        out.insert(
            name.to_string(),
            Spread {
                median: round3(median),
                min: v[0],
                max: v[v.len() - 1],
            },
        );
    }
    out
}

/// The flat numbers of one run.
pub fn numbers(o: &RunOutcome) -> Numbers {
    let s = &o.summary;
    let m = &s.metrics;
    let mut n = Numbers::new();
    let mut put = |k: &str, v: f64| {
        n.insert(k.to_string(), round3(v));
    };
    put("sent", s.sent as f64);
    put("acked", s.acked as f64);
    put("failed", s.failed as f64);
    put("unknown", s.unknown as f64);
    put("read", s.read as f64);
    for (name, count) in s.anomalies.iter() {
        put(name.name(), count as f64);
    }
    put("sent_per_s", m.throughput.sent_per_s);
    put("acked_per_s", m.throughput.acked_per_s);
    put("consumed_per_s", m.throughput.consumed_per_s);
    put("acked_mbyte_s", m.throughput.acked_mbyte_s);
    put("produce_p50_ms", s.latency_ms.produce.p50);
    put("produce_p99_ms", s.latency_ms.produce.p99);
    put("e2e_p50_ms", s.latency_ms.end_to_end.p50);
    put("e2e_p99_ms", s.latency_ms.end_to_end.p99);
    put("e1_messages", m.breakdown.messages as f64);
    put("e1_total_ms", m.breakdown.total_mean_ms);
    for p in &m.breakdown.parts {
        let key = crate::metrics::PARTS
            .iter()
            .find(|(name, _)| *name == p.name)
            .map(|(_, key)| *key)
            .unwrap_or("e1_client_and_network_ms");
        put(key, p.mean_ms);
    }
    put(
        "leader_changes",
        m.series.iter().map(|s| s.leader_changes).sum::<u64>() as f64,
    );
    put("unread", unread(o) as f64);
    put("attempts", o.attempts.len() as f64);
    n
}

/// Sent messages that no poll (consumer or final read) returned.
fn unread(o: &RunOutcome) -> u64 {
    let mut sent: BTreeSet<&str> = BTreeSet::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for e in &o.events {
        match (&e.op, e.kind) {
            (Op::Send { id, .. }, EventType::Invoke) => {
                sent.insert(id);
            }
            (Op::Poll { records, .. }, EventType::Ok) => {
                seen.extend(records.iter().map(|(_, id)| id.as_str()));
            }
            _ => {}
        }
    }
    sent.difference(&seen).count() as u64
}
