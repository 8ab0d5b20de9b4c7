//! A run's performance in simulated time: throughput, latency histograms, end-to-end latency
//! split into its parts (claim E1), and per-second time series with fault markers.
//!
//! The history says when each message was sent, acknowledged and first delivered. [`Probes`]
//! add what only the cluster and the producer see: when a produce request reached a broker and
//! was handled there, when each partition's high watermark moved, who led when, and when a
//! message first left its producer. Every figure is simulated time, so it is deterministic.

use std::collections::BTreeMap;

use fathom_history::{Event, EventType, IdMap, Op};
use fathom_queue::client::DeliveryStats;
use fathom_queue::ids::{NodeId, TopicPartition, OFFSETS_TOPIC};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::fault_log::AppliedFault;
use crate::groups::{group_figures, GroupFigures};
use crate::messages::{Acked, Life, Messages};
use crate::resources::{Utilisation, World};
use crate::scenario::{broker_host, Scenario};
use fathom_workload::clients::FINAL_READ_PROCESS;

/// Simulated seconds at the start of a run left out of throughput: the first leader election.
const WARMUP_S_MAX: f64 = 1.0;
/// Time series stop after this many seconds (a bound on summary.json).
const SERIES_SECONDS_MAX: usize = 3_600;

/// What the brokers and producers reported during a run.
#[derive(Debug, Default)]
pub struct Probes {
    /// Produce requests as brokers received them.
    pub produce: Vec<ProduceProbe>,
    /// Per partition, `(time, high watermark)` each time the highest known one grew.
    pub high_watermarks: BTreeMap<TopicPartition, Vec<(u64, u64)>>,
    /// `(time, partition, new leader, epoch)`.
    pub leader_changes: Vec<(u64, TopicPartition, NodeId, u64)>,
    /// When a message's batch was first handed to the network by its producer.
    pub first_transmit: IdMap<String, u64>,
    /// Per broker: push subscriptions held and the bytes of their state, as last observed.
    pub push_state: BTreeMap<NodeId, (u64, u64)>,
    /// The most push subscriptions and state bytes, summed over brokers, ever observed.
    pub push_state_peak: (u64, u64),
    /// Per broker, share records in flight (available or acquired) it holds now and the bytes
    /// of its share state; the most of each over the cluster at once.
    pub share_state: BTreeMap<NodeId, (u64, u64)>,
    pub share_records_peak: u64,
    pub share_state_bytes_peak: u64,
    /// Each consumer process's delivery counters at its end.
    pub consumers: BTreeMap<String, DeliveryStats>,
    /// The same, as they stood when the workload phase ended.
    pub consumers_in_workload: BTreeMap<String, DeliveryStats>,
}

impl Probes {
    /// Broker `id` holds `subscriptions` push subscriptions taking `bytes`; the peak over the
    /// cluster follows.
    pub fn observe_push_state(&mut self, id: NodeId, subscriptions: u64, bytes: u64) {
        self.push_state.insert(id, (subscriptions, bytes));
        let (n, b) = self
            .push_state
            .values()
            .fold((0u64, 0u64), |(n, b), &(sn, sb)| {
                (n.saturating_add(sn), b.saturating_add(sb))
            });
        self.push_state_peak = (self.push_state_peak.0.max(n), self.push_state_peak.1.max(b));
    }

    /// Broker `id` holds `records` share records in flight in `bytes` of share state; the
    /// peaks over the cluster follow.
    pub fn observe_share_state(&mut self, id: NodeId, records: u64, bytes: u64) {
        self.share_state.insert(id, (records, bytes));
        let (n, b) = self
            .share_state
            .values()
            .fold((0u64, 0u64), |(n, b), &(sn, sb)| {
                (n.saturating_add(sn), b.saturating_add(sb))
            });
        self.share_records_peak = self.share_records_peak.max(n);
        self.share_state_bytes_peak = self.share_state_bytes_peak.max(b);
    }
}

/// How records reached the consumers (claim C1): the consumer part of the latency, what
/// polling costs, what push makes consumers and brokers hold, and the backlog.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DeliveryMetrics {
    /// From the commit (the broker has stored the message on a quorum: the high watermark
    /// passed it) to its first delivery to a consumer application, over messages sent in the
    /// measured window; `messages` counts them.
    pub messages: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// Fetch answers and the empty ones among them, over the workload phase.
    pub fetches: u64,
    pub empty_fetches: u64,
    /// Empty fetch answers per second of the workload phase, over all consumers.
    pub idle_fetches_per_s: f64,
    pub pushes: u64,
    /// The fullest any consumer's receive buffer got, in bytes of keys and values.
    pub receive_buffer_peak_bytes: u64,
    /// Push subscriptions dropped by consumers whose receive buffer would overflow.
    pub push_overflows: u64,
    /// Push subscriptions ended by a broker or a closed connection.
    pub push_subscriptions_ended: u64,
    /// Bytes of pushed records thrown away on overflows (sent again later).
    pub push_discarded_bytes: u64,
    /// The most push subscriptions the brokers held at once, and the bytes of their state.
    pub push_subscriptions_peak: u64,
    pub push_state_bytes_peak: u64,
    /// The most share records (available or acquired: the state a share-partition leader
    /// keeps per record) the brokers held at once.
    #[serde(skip_serializing_if = "is_zero")]
    pub share_records_peak: u64,
    /// The most memory the brokers held for share state at once, in bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub share_state_bytes_peak: u64,
    /// Records stored but not yet consumed, summed over partitions: the most at any second's
    /// end in the measured window, and at the end of the workload phase.
    pub backlog_max: u64,
    pub backlog_at_end: u64,
    /// Each consumer process's own counters, by process name.
    pub consumers: BTreeMap<String, ConsumerDelivery>,
}

/// One consumer process's delivery counters over its whole life.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ConsumerDelivery {
    /// Store-to-delivery latency, median, of the messages sent in the measured window, each
    /// counted at its first delivery to this process; `None` when it got none of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p50_ms: Option<f64>,
    pub fetches: u64,
    pub empty_fetches: u64,
    pub pushes: u64,
    pub receive_buffer_peak_bytes: u64,
    pub push_overflows: u64,
    pub push_subscriptions_ended: u64,
}

impl From<&DeliveryStats> for ConsumerDelivery {
    fn from(s: &DeliveryStats) -> ConsumerDelivery {
        ConsumerDelivery {
            latency_p50_ms: None,
            fetches: s.fetches,
            empty_fetches: s.empty_fetches,
            pushes: s.pushes,
            receive_buffer_peak_bytes: s.buffer_bytes_peak,
            push_overflows: s.overflows,
            push_subscriptions_ended: s.subscriptions_ended,
        }
    }
}

/// One produce request at one broker. Times are simulated nanoseconds since the start.
#[derive(Debug, Clone)]
pub struct ProduceProbe {
    pub broker: NodeId,
    pub ids: Vec<String>,
    /// It came off the network (before the NIC and CPU costs of receiving it).
    pub arrived_ns: u64,
    /// The broker handled it (appended it, if it led the partition).
    pub handled_ns: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Throughput {
    /// The window the rates are taken over, in simulated seconds: from when the backlog of
    /// the first election has been acknowledged (see [`window`]) to the end of the workload
    /// phase.
    pub window_s: [f64; 2],
    /// What the producers were asked to send per second (`rate_per_s` × instances): the bound
    /// that acknowledgements cannot exceed for long.
    pub offered_per_s: f64,
    pub sent_per_s: f64,
    pub acked_per_s: f64,
    /// First deliveries to consumers (not the final read).
    pub consumed_per_s: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub acked_mbyte_s: f64,
    pub consumed_mbyte_s: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    pub low_ms: f64,
    pub high_ms: f64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PartStats {
    pub name: String,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// End-to-end latency, send to first delivery, split into consecutive parts that add up to
/// it for every message measured (claim E1). Only messages sent after the warm-up count, so
/// the first election does not swamp the means.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Breakdown {
    /// Messages with every timestamp known (acknowledged, committed and consumed).
    pub messages: u64,
    pub total_mean_ms: f64,
    pub parts: Vec<PartStats>,
}

/// The part names, in path order.
pub const PART_CLIENT_WAIT: &str = "client wait";
pub const PART_NETWORK: &str = "network to leader";
pub const PART_BROKER_APPEND: &str = "broker append";
pub const PART_REPLICATION: &str = "replication and commit";
pub const PART_CONSUMER: &str = "consumer fetch";
/// Client wait and network as one part, when the first transmit of a message was not seen.
pub const PART_CLIENT_AND_NETWORK: &str = "client wait and network";

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Second {
    /// The second's start.
    pub t_s: u64,
    pub sent: u64,
    pub acked: u64,
    pub acked_bytes: u64,
    pub consumed: u64,
    pub consumed_bytes: u64,
    pub leader_changes: u64,
    /// Per partition: high watermark minus the consumers' position at the second's end.
    pub lag: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Marker {
    pub at_s: f64,
    pub label: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Metrics {
    pub throughput: Throughput,
    /// Send to acknowledgement.
    pub produce_histogram: Vec<Bucket>,
    /// Send to first delivery.
    pub end_to_end_histogram: Vec<Bucket>,
    pub breakdown: Breakdown,
    pub series: Vec<Second>,
    pub markers: Vec<Marker>,
    /// Busy fraction and peak queue wait of every host's resources over the measured window.
    pub utilisation: Utilisation,
    /// Per consumer group: rebalances, paused partitions, stop-the-world time, commit lag
    /// (issue 8 §5). Empty when no consumer wrote an assignment.
    pub groups: BTreeMap<String, GroupFigures>,
    pub delivery: DeliveryMetrics,
    /// The measured window in simulated nanoseconds (`throughput.window_s` in seconds): steady
    /// state, after the first election's backlog, to the end of the workload phase.
    #[serde(skip)]
    pub window_ns: [u64; 2],
}

impl Metrics {
    /// Every figure of one run. `world` is the run's resource model, if it had one: its
    /// utilisation is taken over the same window as throughput.
    pub fn build(
        scenario: &Scenario,
        events: &[Event],
        messages: &Messages<'_>,
        probes: &Probes,
        faults: &[AppliedFault],
        world: Option<&World>,
    ) -> Metrics {
        let window = window(scenario, events, messages);
        let mut tally = Tally::new(scenario, window);
        tally.count(events);
        tally.count_lives(messages);
        let mut series = std::mem::take(&mut tally.series);
        count_leader_changes(&mut series, probes);
        lag(&mut series, probes, &tally.positions);
        let watermarks = Watermarks::of(probes);
        let breakdown = breakdown(messages, &watermarks, probes, window.0);
        let delivery = delivery(scenario, messages, &watermarks, &series, probes, window);
        let mut throughput = tally.throughput.per_second(window);
        throughput.offered_per_s = scenario
            .producers
            .iter()
            .map(|p| p.rate_per_s * f64::from(p.instances.get()))
            .sum();
        Metrics {
            throughput,
            produce_histogram: buckets(&tally.histograms.produce.0),
            end_to_end_histogram: buckets(&tally.histograms.end_to_end.0),
            breakdown,
            series,
            markers: markers(faults),
            utilisation: utilisation(world, probes, window),
            groups: group_figures(scenario, events, messages),
            delivery,
            window_ns: [window.0, window.1],
        }
    }
}

/// What a pass over the history and one over the messages count: per-second series,
/// throughput counts (not yet rates), latency histograms, and the consumers' positions for the
/// lag.
struct Tally {
    bytes: MessageBytes,
    window: (u64, u64),
    throughput: Throughput,
    histograms: Histograms,
    series: Vec<Second>,
    /// Per partition: (time, position after the read) of consumer polls and share acquisitions.
    positions: BTreeMap<TopicPartition, Vec<(u64, u64)>>,
}

impl Tally {
    fn new(scenario: &Scenario, window: (u64, u64)) -> Tally {
        let seconds = ((scenario.duration_s + scenario.settle_s).ceil() as usize)
            .clamp(1, SERIES_SECONDS_MAX);
        Tally {
            bytes: MessageBytes::new(scenario),
            window,
            throughput: Throughput::default(),
            histograms: Histograms::default(),
            series: (0..seconds)
                .map(|s| Second {
                    t_s: s as u64,
                    ..Second::default()
                })
                .collect(),
            positions: BTreeMap::new(),
        }
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.window.0 && t < self.window.1
    }

    /// The series entry of the second holding `t` (the last one for anything later).
    fn second(&mut self, t: u64) -> &mut Second {
        let last = self.series.len() - 1;
        &mut self.series[((t / 1_000_000_000) as usize).min(last)]
    }

    /// Sends and acknowledgements per second, and the consumers' positions.
    fn count(&mut self, events: &[Event]) {
        for e in events {
            match (&e.op, e.kind) {
                (Op::Send { .. }, EventType::Invoke) => self.on_invoke(e.time_ns),
                (
                    Op::Send {
                        id,
                        offset: Some(_),
                        ..
                    },
                    EventType::Ok,
                ) => self.on_ack(id, e.time_ns),
                (
                    Op::Poll {
                        topic,
                        partition,
                        records,
                    },
                    EventType::Ok,
                ) if e.process != FINAL_READ_PROCESS => {
                    self.on_read_position(topic, *partition, records, e.time_ns);
                }
                // A share member's acquisition is its delivery (issue 9).
                (
                    Op::Acquire {
                        topic,
                        partition,
                        records,
                        ..
                    },
                    EventType::Ok,
                ) => self.on_read_position(topic, *partition, records, e.time_ns),
                _ => {}
            }
        }
    }

    fn on_invoke(&mut self, t: u64) {
        self.second(t).sent += 1;
        if self.in_window(t) {
            self.throughput.sent_per_s += 1.0;
        }
    }

    /// A consumer read `records` of a partition: its position moved past the last.
    fn on_read_position(&mut self, topic: &str, partition: u32, records: &[(u64, String)], t: u64) {
        if let Some((last, _)) = records.last() {
            let tp = TopicPartition::new(topic.to_string(), partition);
            self.positions.entry(tp).or_default().push((t, last + 1));
        }
    }

    fn on_ack(&mut self, id: &str, t: u64) {
        let b = self.bytes.of(id);
        let s = self.second(t);
        s.acked += 1;
        s.acked_bytes += b;
        if self.in_window(t) {
            self.throughput.acked_per_s += 1.0;
            self.throughput.acked_mbyte_s += b as f64;
        }
    }

    /// Each acknowledgement's produce latency, and each message's first delivery: consumed
    /// per second and the end-to-end latency.
    fn count_lives(&mut self, messages: &Messages<'_>) {
        for &(sent, acked) in messages.acks() {
            self.histograms.produce.record(acked.saturating_sub(sent));
        }
        for life in messages.lives() {
            if let Some(first) = life.delivered() {
                self.on_first_delivery(life, first.ns);
            }
        }
    }

    fn on_first_delivery(&mut self, life: &Life<'_>, t: u64) {
        let b = self.bytes.of(life.id);
        let s = self.second(t);
        s.consumed += 1;
        s.consumed_bytes += b;
        if self.in_window(t) {
            self.throughput.consumed_per_s += 1.0;
            self.throughput.consumed_mbyte_s += b as f64;
        }
        if let Some((_, latency)) = life.end_to_end() {
            self.histograms.end_to_end.record(latency);
        }
    }
}

impl Throughput {
    /// Counts over `window` turned into rates per second (payload bytes into MB/s).
    fn per_second(self, window: (u64, u64)) -> Throughput {
        let window_s = [window.0 as f64 / 1e9, window.1 as f64 / 1e9];
        let span = (window.1.saturating_sub(window.0)) as f64 / 1e9;
        if span <= 0.0 {
            return Throughput {
                window_s,
                ..Throughput::default()
            };
        }
        Throughput {
            window_s,
            sent_per_s: self.sent_per_s / span,
            acked_per_s: self.acked_per_s / span,
            consumed_per_s: self.consumed_per_s / span,
            acked_mbyte_s: self.acked_mbyte_s / (span * 1e6),
            consumed_mbyte_s: self.consumed_mbyte_s / (span * 1e6),
            offered_per_s: self.offered_per_s,
        }
    }
}

fn count_leader_changes(series: &mut [Second], probes: &Probes) {
    let last = series.len() - 1;
    for (t, _, _, _) in &probes.leader_changes {
        series[((t / 1_000_000_000) as usize).min(last)].leader_changes += 1;
    }
}

/// Every fault as a marker, in time order.
fn markers(faults: &[AppliedFault]) -> Vec<Marker> {
    let mut markers: Vec<Marker> = faults
        .iter()
        .map(|f| Marker {
            at_s: f.at_ms as f64 / 1e3,
            label: f.kind.to_string(),
        })
        .collect();
    markers.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    markers
}

/// The resource model's utilisation over the measured window, with the broker that led the
/// first data partition for most of it. No hosts when the run modelled no resources.
fn utilisation(world: Option<&World>, probes: &Probes, window: (u64, u64)) -> Utilisation {
    Utilisation {
        window_s: [window.0 as f64 / 1e9, window.1 as f64 / 1e9],
        leader: main_leader(probes, window).map(broker_host),
        hosts: world
            .map(|w| w.utilisation(window.0..window.1))
            .unwrap_or_default(),
    }
}

/// The broker that led the first data partition (in name order) for the longest share of
/// `window`.
fn main_leader(probes: &Probes, window: (u64, u64)) -> Option<NodeId> {
    let changes: Vec<(u64, &TopicPartition, NodeId)> = probes
        .leader_changes
        .iter()
        .filter(|(_, tp, _, _)| tp.topic != OFFSETS_TOPIC)
        .map(|(t, tp, node, _)| (*t, tp, *node))
        .collect();
    let first = changes.iter().map(|(_, tp, _)| *tp).min()?;
    let mut reigns: Vec<(u64, NodeId)> = changes
        .iter()
        .filter(|(_, tp, _)| *tp == first)
        .map(|(t, _, node)| (*t, *node))
        .collect();
    reigns.sort_unstable();
    let mut led: BTreeMap<NodeId, u64> = BTreeMap::new();
    for (i, &(from, node)) in reigns.iter().enumerate() {
        let until = reigns.get(i + 1).map(|r| r.0).unwrap_or(window.1);
        let overlap = until.min(window.1).saturating_sub(from.max(window.0));
        *led.entry(node).or_default() += overlap;
    }
    // The longest reign; on a tie the lowest id.
    led.into_iter()
        .max_by_key(|&(node, ns)| (ns, std::cmp::Reverse(node)))
        .map(|(node, _)| node)
}

/// The throughput window. It ends with the workload phase and starts once the cluster has
/// caught up with the backlog of the first election, so that the backlog does not inflate the
/// rates: from the first acknowledgement, repeatedly move the start to when every message sent
/// before it had its outcome (messages sent while a backlog drains queue behind it), until that
/// stops moving the start. It starts no later than half-way through the phase (an overloaded
/// cluster never catches up, and then the rate at which it acknowledges is the figure wanted)
/// and never before the warm-up.
fn window(scenario: &Scenario, events: &[Event], messages: &Messages<'_>) -> (u64, u64) {
    /// Enough rounds for any backlog a cluster with spare capacity drains.
    const CATCH_UP_ROUNDS_MAX: usize = 16;
    let end = (scenario.duration_s * 1e9) as u64;
    let warmup = ((scenario.duration_s * 0.1).min(WARMUP_S_MAX) * 1e9) as u64;
    // (invoke time, outcome time) of every invoke with an outcome, by invoke time.
    let mut sends: Vec<(u64, u64)> = messages.outcomes().to_vec();
    sends.sort_unstable();
    let first_ack = events
        .iter()
        .find(|e| e.kind == EventType::Ok && matches!(e.op, Op::Send { .. }))
        .map(|e| e.time_ns)
        .unwrap_or(0);
    let cap = end / 2;
    let mut start = first_ack;
    for _ in 0..CATCH_UP_ROUNDS_MAX {
        let before = sends.partition_point(|(t, _)| *t < start);
        let drained = sends[..before]
            .iter()
            .map(|(_, done)| *done)
            .max()
            .unwrap_or(start);
        if drained <= start || drained >= cap {
            start = start.max(drained.min(cap));
            break;
        }
        start = drained;
    }
    (start.max(warmup).min(end), end)
}

/// Payload bytes per message, by the producer process that sent it (`<process>-<n>` ids).
struct MessageBytes(BTreeMap<String, u64>);

impl MessageBytes {
    fn new(scenario: &Scenario) -> MessageBytes {
        let mut m = BTreeMap::new();
        for p in &scenario.producers {
            for name in p.process_names() {
                m.insert(name, u64::from(p.message_bytes.get()));
            }
        }
        MessageBytes(m)
    }

    fn of(&self, id: &str) -> u64 {
        fathom_workload::spec::id_process(id)
            .and_then(|process| self.0.get(process))
            .copied()
            .unwrap_or(0)
    }
}

/// A latency histogram in microseconds.
struct Micros(Histogram<u64>);

impl Default for Micros {
    fn default() -> Self {
        Micros(Histogram::new(3).expect("3 significant digits is a valid precision"))
    }
}

impl Micros {
    fn record(&mut self, ns: u64) {
        let _ = self.0.record(ns / 1_000);
    }

    fn stats(&self, name: &str) -> PartStats {
        let ms = |us: u64| us as f64 / 1_000.0;
        let (mean, p50, p99) = if self.0.is_empty() {
            (0.0, 0, 0)
        } else {
            (
                self.0.mean() / 1_000.0,
                self.0.value_at_quantile(0.5),
                self.0.value_at_quantile(0.99),
            )
        };
        PartStats {
            name: name.to_string(),
            mean_ms: round3(mean),
            p50_ms: ms(p50),
            p99_ms: ms(p99),
        }
    }
}

#[derive(Default)]
struct Histograms {
    produce: Micros,
    end_to_end: Micros,
}

/// Rounds to thousandths, so that summaries print the same on every platform.
pub fn round3(x: f64) -> f64 {
    (x * 1_000.0).round() / 1_000.0
}

/// Log-spaced buckets (doubling from 0.1 ms) up to the largest value.
fn buckets(h: &Histogram<u64>) -> Vec<Bucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut low = 0u64;
    let mut high = 100u64;
    loop {
        let count = h.count_between(low, high - 1);
        out.push(Bucket {
            low_ms: low as f64 / 1_000.0,
            high_ms: high as f64 / 1_000.0,
            count,
        });
        if high > h.max() {
            break;
        }
        low = high;
        high *= 2;
    }
    out
}

/// Each partition's high watermark timeline, by borrowed name: looked up once per message.
struct Watermarks<'p>(BTreeMap<(&'p str, u32), &'p [(u64, u64)]>);

impl<'p> Watermarks<'p> {
    fn of(probes: &'p Probes) -> Watermarks<'p> {
        let timelines = probes.high_watermarks.iter();
        Watermarks(
            timelines
                .map(|(tp, t)| ((tp.topic.as_str(), tp.partition), t.as_slice()))
                .collect(),
        )
    }

    /// The first time the high watermark of `acked`'s partition passed its offset: when the
    /// message was stored on a quorum.
    fn committed_at(&self, acked: &Acked<'_>) -> Option<u64> {
        let timeline = self.0.get(&(acked.topic, acked.partition))?;
        let i = timeline.partition_point(|&(_, hw)| hw <= acked.offset);
        timeline.get(i).map(|&(t, _)| t)
    }
}

fn breakdown(
    messages: &Messages<'_>,
    watermarks: &Watermarks<'_>,
    probes: &Probes,
    sent_from: u64,
) -> Breakdown {
    // Every arrival of each message at a broker, in time order.
    let mut arrivals: IdMap<&str, Vec<(u64, u64)>> = IdMap::default();
    for p in &probes.produce {
        for id in &p.ids {
            arrivals
                .entry(id.as_str())
                .or_default()
                .push((p.arrived_ns, p.handled_ns));
        }
    }
    let split = !probes.first_transmit.is_empty();
    let mut parts: Vec<(&str, Micros)> = Vec::new();
    if split {
        parts.push((PART_CLIENT_WAIT, Micros::default()));
        parts.push((PART_NETWORK, Micros::default()));
    } else {
        parts.push((PART_CLIENT_AND_NETWORK, Micros::default()));
    }
    for name in [PART_BROKER_APPEND, PART_REPLICATION, PART_CONSUMER] {
        parts.push((name, Micros::default()));
    }
    let mut total = Micros::default();
    let mut messages_measured = 0;
    for life in messages.lives() {
        let (Some(sent), Some(first), Some(acked)) =
            (life.invoked_ns(), life.delivered(), life.acked)
        else {
            continue;
        };
        let got = first.ns;
        if sent < sent_from {
            continue;
        }
        let Some(committed) = watermarks.committed_at(&acked) else {
            continue;
        };
        // The attempt that was appended: the last one handled before the commit.
        let Some(&(arrived, handled)) = arrivals
            .get(life.id)
            .and_then(|a| a.iter().rev().find(|(_, h)| *h <= committed))
        else {
            continue;
        };
        let transmitted = probes.first_transmit.get(life.id).copied();
        if split && transmitted.is_none() {
            continue;
        }
        let mut marks = vec![sent];
        marks.extend(transmitted);
        marks.extend([arrived, handled, committed, got]);
        // Clamp so that the parts are consecutive even if a retry arrived before an
        // earlier-sent attempt's timestamps.
        for i in 1..marks.len() {
            marks[i] = marks[i].max(marks[i - 1]);
        }
        for (i, (_, h)) in parts.iter_mut().enumerate() {
            h.record(marks[i + 1] - marks[i]);
        }
        total.record(got.max(sent) - sent);
        messages_measured += 1;
    }
    Breakdown {
        messages: messages_measured,
        total_mean_ms: total.stats("total").mean_ms,
        parts: parts.iter().map(|(name, h)| h.stats(name)).collect(),
    }
}

/// The delivery metrics of a run: latency from the messages' lives and the high watermark
/// probes, counters from the consumers and brokers, backlog from the lag series.
fn delivery(
    scenario: &Scenario,
    messages: &Messages<'_>,
    watermarks: &Watermarks<'_>,
    series: &[Second],
    probes: &Probes,
    window: (u64, u64),
) -> DeliveryMetrics {
    // From the commit to `got`, for a message sent in the window.
    let store_to_delivery = |life: &Life<'_>, got: u64| {
        let sent = life.invoked_ns()?;
        if sent < window.0 || sent >= window.1 {
            return None;
        }
        let committed = watermarks.committed_at(life.acked.as_ref()?)?;
        Some(got.saturating_sub(committed))
    };
    let mut latency = Micros::default();
    let mut measured = 0;
    // Per consumer process (by its place in `messages.processes()`), its own latencies.
    let mut per_process: Vec<Micros> = Vec::new();
    per_process.resize_with(messages.processes().len(), Micros::default);
    for life in messages.lives() {
        let firsts = life.deliveries();
        if let Some(ns) = firsts.first().and_then(|d| store_to_delivery(life, d.ns)) {
            latency.record(ns);
            measured += 1;
        }
        for d in firsts {
            if let Some(ns) = store_to_delivery(life, d.ns) {
                per_process[d.process].record(ns);
            }
        }
    }
    let stats = latency.stats("store to delivery");
    let consumer_p50_ms = |process: &str| {
        let p = messages.processes().iter().position(|q| *q == process)?;
        let h = &per_process[p];
        (!h.0.is_empty()).then(|| h.stats("store to delivery").p50_ms)
    };
    let sum = |map: &BTreeMap<String, DeliveryStats>, f: fn(&DeliveryStats) -> u64| {
        map.values().map(f).fold(0u64, u64::saturating_add)
    };
    let workload = &probes.consumers_in_workload;
    let empty_fetches = sum(workload, |s| s.empty_fetches);
    let idle_fetches_per_s = match scenario.duration_s > 0.0 {
        true => round3(empty_fetches as f64 / scenario.duration_s),
        false => 0.0,
    };
    let backlog = |s: &Second| s.lag.values().fold(0u64, |a, &l| a.saturating_add(l));
    let in_window =
        |s: &&Second| s.t_s * 1_000_000_000 >= window.0 && (s.t_s + 1) * 1_000_000_000 <= window.1;
    let last_workload_second = (window.1 / 1_000_000_000).saturating_sub(1);
    DeliveryMetrics {
        messages: measured,
        latency_p50_ms: stats.p50_ms,
        latency_p99_ms: stats.p99_ms,
        fetches: sum(workload, |s| s.fetches),
        empty_fetches,
        idle_fetches_per_s,
        pushes: sum(&probes.consumers, |s| s.pushes),
        receive_buffer_peak_bytes: probes
            .consumers
            .values()
            .map(|s| s.buffer_bytes_peak)
            .max()
            .unwrap_or(0),
        push_overflows: sum(&probes.consumers, |s| s.overflows),
        push_subscriptions_ended: sum(&probes.consumers, |s| s.subscriptions_ended),
        push_discarded_bytes: sum(&probes.consumers, |s| s.push_discarded_bytes),
        push_subscriptions_peak: probes.push_state_peak.0,
        push_state_bytes_peak: probes.push_state_peak.1,
        share_records_peak: probes.share_records_peak,
        share_state_bytes_peak: probes.share_state_bytes_peak,
        backlog_max: series
            .iter()
            .filter(in_window)
            .map(backlog)
            .max()
            .unwrap_or(0),
        backlog_at_end: series
            .iter()
            .find(|s| s.t_s == last_workload_second)
            .map(backlog)
            .unwrap_or(0),
        consumers: probes
            .consumers
            .iter()
            .map(|(name, s)| {
                let mut c = ConsumerDelivery::from(s);
                c.latency_p50_ms = consumer_p50_ms(name);
                (name.clone(), c)
            })
            .collect(),
    }
}

/// Fills each second's consumer lag: the high watermark minus the furthest consumer position,
/// both at the second's end.
fn lag(
    series: &mut [Second],
    probes: &Probes,
    positions: &BTreeMap<TopicPartition, Vec<(u64, u64)>>,
) {
    for (tp, timeline) in &probes.high_watermarks {
        let polls = positions.get(tp).map(Vec::as_slice).unwrap_or(&[]);
        let (mut hw, mut pos) = (0u64, 0u64);
        let (mut i, mut j) = (0, 0);
        for s in series.iter_mut() {
            let end = (s.t_s + 1) * 1_000_000_000;
            while i < timeline.len() && timeline[i].0 < end {
                hw = hw.max(timeline[i].1);
                i += 1;
            }
            while j < polls.len() && polls[j].0 < end {
                pos = pos.max(polls[j].1);
                j += 1;
            }
            s.lag.insert(tp.to_string(), hw.saturating_sub(pos));
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
