//! Everything an experiment can tabulate, chart or judge: one [`Metric`] per number taken from
//! a run.
//!
//! Experiment files name metrics as strings (`acked_per_s`); they become [`Metric`] values when
//! the file is read, so a misspelt name is an error at load time and never a silent zero. A new
//! metric is one line in the table below: variant, name, how it is judged, description, and how
//! to read it from a run.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::groups::GroupFigures;
use crate::metrics::{
    DeliveryMetrics, PART_BROKER_APPEND, PART_CLIENT_AND_NETWORK, PART_CLIENT_WAIT, PART_CONSUMER,
    PART_NETWORK, PART_REPLICATION,
};
use crate::resources::Utilisation;
use crate::run::RunOutcome;
use crate::summary::{Percentiles, SteadyLatencies};
use fathom_history::Anomaly;

/// How a metric is judged over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// A measurement: the median over seeds, with its interval.
    Median,
    /// A count of something that must not happen (a lost message, a duplicate): one seed
    /// with it is enough, so rules judge the worst seed, and tables show the maximum and the
    /// share of seeds where it happened.
    WorstSeed,
}

macro_rules! measures {
    ($($variant:ident $name:literal $judged:ident $doc:literal => |$o:ident| $value:expr;)*) => {
        /// A number measured in every run, other than an anomaly count.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Measure {
            $(#[doc = $doc] $variant,)*
        }

        impl Measure {
            /// Every measure, in table order.
            pub const ALL: &'static [Measure] = &[$(Measure::$variant,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Measure::$variant => $name,)*
                }
            }

            pub fn describe(self) -> &'static str {
                match self {
                    $(Measure::$variant => $doc,)*
                }
            }

            pub fn judged(self) -> Judged {
                match self {
                    $(Measure::$variant => Judged::$judged,)*
                }
            }

            /// Its value in one run; `None` when the run did not measure it.
            pub fn value(self, run: &RunOutcome) -> Option<f64> {
                match self {
                    $(Measure::$variant => {
                        let $o = Run(run);
                        Reading::reading($value)
                    })*
                }
            }
        }
    };
}

// Latency percentiles are steady state (messages sent in the measured window, without the
// first election); the whole-run figures stay in summary.json under `latency_ms.produce` and
// `latency_ms.end_to_end`. Utilisation is over the same window; `None` without a resource model.
measures! {
    Sent "sent" Median "messages given to send" => |r| r.0.summary.sent;
    Acked "acked" Median "sends acknowledged" => |r| r.0.summary.acked;
    Failed "failed" Median "sends that failed for certain" => |r| r.0.summary.failed;
    Unknown "unknown" Median "sends with an unknown outcome" => |r| r.0.summary.unknown;
    Read "read" Median "distinct messages read by the final read" => |r| r.0.summary.read;
    Unread "unread" Median "sent messages no consumer or final read ever saw" => |r| r.unread();
    FateUnrecorded "fate_unrecorded" WorstSeed "sent messages with no recorded fate (sent - acked - failed - unknown)" => |r| r.fate_unrecorded();
    OfferedPerS "offered_per_s" Median "sends per simulated second the workload asked for" => |r| r.0.summary.metrics.throughput.offered_per_s;
    SentPerS "sent_per_s" Median "sends per simulated second" => |r| r.0.summary.metrics.throughput.sent_per_s;
    AckedPerS "acked_per_s" Median "acknowledgements per simulated second" => |r| r.0.summary.metrics.throughput.acked_per_s;
    ConsumedPerS "consumed_per_s" Median "first deliveries per simulated second" => |r| r.0.summary.metrics.throughput.consumed_per_s;
    AckedMbyteS "acked_mbyte_s" Median "acknowledged payload MB/s" => |r| r.0.summary.metrics.throughput.acked_mbyte_s;
    ProduceP50Ms "produce_p50_ms" Median "send-to-ack latency, median, steady state" => |r| r.steady(|l| &l.produce, |p| p.p50);
    ProduceP99Ms "produce_p99_ms" Median "send-to-ack latency, 99th percentile, steady state" => |r| r.steady(|l| &l.produce, |p| p.p99);
    ProduceP999Ms "produce_p999_ms" Median "send-to-ack latency, 99.9th percentile, steady state" => |r| r.steady(|l| &l.produce, |p| p.p999);
    E2eP50Ms "e2e_p50_ms" Median "send-to-delivery latency, median, steady state" => |r| r.steady(|l| &l.end_to_end, |p| p.p50);
    E2eP99Ms "e2e_p99_ms" Median "send-to-delivery latency, 99th percentile, steady state" => |r| r.steady(|l| &l.end_to_end, |p| p.p99);
    E2eP999Ms "e2e_p999_ms" Median "send-to-delivery latency, 99.9th percentile, steady state" => |r| r.steady(|l| &l.end_to_end, |p| p.p999);
    LeaderCpuBusy "leader_cpu_busy" Median "busy share of the leader's cores over the window (1: saturated)" => |r| r.util().and_then(|u| u.leader_cpu_busy());
    MaxBrokerCpuBusy "max_broker_cpu_busy" Median "busy share of the busiest broker's cores" => |r| r.util().and_then(|u| u.max_broker_cpu_busy());
    MaxBrokerCpuWaitMs "max_broker_cpu_wait_ms" Median "longest wait for a broker core, ms" => |r| r.util().and_then(|u| u.max_broker_cpu_wait_ms());
    MaxBrokerNicTxBusy "max_broker_nic_tx_busy" Median "busy share of the busiest broker NIC, transmit" => |r| r.util().and_then(|u| u.max_broker_nic_tx_busy());
    MaxBrokerNicRxBusy "max_broker_nic_rx_busy" Median "busy share of the busiest broker NIC, receive" => |r| r.util().and_then(|u| u.max_broker_nic_rx_busy());
    MaxDiskBusy "max_disk_busy" Median "busy share of the busiest broker disk (writeback plus flush)" => |r| r.util().and_then(|u| u.max_disk_busy());
    MaxFsyncWaitMs "max_fsync_wait_ms" Median "longest wait of an fsync on any broker, ms" => |r| r.util().and_then(|u| u.max_fsync_wait_ms());
    MaxClientCpuBusy "max_client_cpu_busy" Median "busy share of the busiest client's cores" => |r| r.util().and_then(|u| u.max_client_cpu_busy());
    MaxClientNicTxBusy "max_client_nic_tx_busy" Median "busy share of the busiest client NIC, transmit" => |r| r.util().and_then(|u| u.max_client_nic_tx_busy());
    E1Messages "e1_messages" Median "messages with every part timed" => |r| r.0.summary.metrics.breakdown.messages;
    E1TotalMs "e1_total_ms" Median "mean end-to-end latency of the timed messages" => |r| r.0.summary.metrics.breakdown.total_mean_ms;
    E1ClientWaitMs "e1_client_wait_ms" Median "mean time in the producer before the first transmit" => |r| r.part(PART_CLIENT_WAIT);
    E1NetworkMs "e1_network_ms" Median "mean time from transmit to the leader's NIC" => |r| r.part(PART_NETWORK);
    E1ClientAndNetworkMs "e1_client_and_network_ms" Median "mean time from send to the leader's NIC (when the first transmit was not seen)" => |r| r.part(PART_CLIENT_AND_NETWORK);
    E1BrokerAppendMs "e1_broker_append_ms" Median "mean time from the leader's NIC to the append" => |r| r.part(PART_BROKER_APPEND);
    E1ReplicationMs "e1_replication_ms" Median "mean time from the append to the commit" => |r| r.part(PART_REPLICATION);
    E1ConsumerMs "e1_consumer_ms" Median "mean time from the commit to the delivery" => |r| r.part(PART_CONSUMER);
    E1PartsGapMs "e1_parts_gap_ms" WorstSeed "how far the parts' sum is from the total, beyond rounding (0: they add up)" => |r| r.parts_gap();
    LeaderChanges "leader_changes" Median "leader elections won" => |r| r.0.summary.metrics.series.iter().map(|s| s.leader_changes).sum::<u64>();
    Attempts "attempts" Median "produce attempts in the send journal" => |r| r.0.attempts.len();
    Rebalances "rebalances" Median "consumer-group rebalances after the start-up join (generations; member-level under client_periodic)" => |r| r.groups(|g| g.rebalances as f64);
    PausedMs "paused_ms" Median "ms a partition had no live owner, summed over partitions" => |r| r.groups(|g| g.paused_ms_total);
    PausedMsMax "paused_ms_max" Median "ms the most-paused partition had no live owner" => |r| r.groups_max(|g| g.paused_ms.values().copied().fold(0.0, f64::max));
    StopTheWorldMs "stop_the_world_ms" Median "ms no partition of the group had a live owner (stop the world)" => |r| r.groups(|g| g.stop_the_world_ms);
    GroupE2eP99Ms "group_e2e_p99_ms" Median "send-to-delivery latency, 99th percentile, of messages sent after the consumer group's start-up join, each at its first delivery to a member of the group (worst group)" => |r| r.groups_max(|g| g.end_to_end_ms.p99);
    CommitLag "commit_lag" Median "acknowledged records past the group's last commit when the workload ends (read again, or for the first time, by a restart)" => |r| r.groups(|g| g.commit_lag as f64);
    DeliveryP50Ms "delivery_p50_ms" Median "commit (stored on a quorum) to first delivery to the application, median, steady state" => |r| r.delivery_latency(|d| d.latency_p50_ms);
    DeliveryP99Ms "delivery_p99_ms" Median "commit to first delivery to the application, 99th percentile, steady state" => |r| r.delivery_latency(|d| d.latency_p99_ms);
    ConsumerDeliveryP50MsMin "consumer_delivery_p50_ms_min" Median "store-to-delivery latency, median, of the best-served consumer process (each message counted at its first delivery to it)" => |r| r.consumer_latencies().reduce(f64::min);
    ConsumerDeliveryP50MsMax "consumer_delivery_p50_ms_max" Median "store-to-delivery latency, median, of the worst-served consumer process (each message counted at its first delivery to it)" => |r| r.consumer_latencies().reduce(f64::max);
    IdleFetchesPerS "idle_fetches_per_s" Median "fetch answers without a new record per second of the workload phase, all consumers" => |r| r.0.summary.metrics.delivery.idle_fetches_per_s;
    FetchesPerS "fetches_per_s" Median "fetch answers per second of the workload phase, all consumers" => |r| r.fetches_per_s();
    ReceiveBufferPeakBytes "receive_buffer_peak_bytes" Median "the fullest any consumer's receive buffer got, bytes of keys and values" => |r| r.0.summary.metrics.delivery.receive_buffer_peak_bytes;
    PushOverflows "push_overflows" Median "push subscriptions dropped and renewed because the receive buffer would overflow (disconnects)" => |r| r.0.summary.metrics.delivery.push_overflows;
    PushDiscardedBytes "push_discarded_bytes" Median "bytes of pushed records thrown away on overflows, to be pushed again" => |r| r.0.summary.metrics.delivery.push_discarded_bytes;
    PushSubscriptionsPeak "push_subscriptions_peak" Median "the most push subscriptions the brokers held at once" => |r| r.0.summary.metrics.delivery.push_subscriptions_peak;
    PushStateBytesPeak "push_state_bytes_peak" Median "the most memory the brokers held for push subscriptions, bytes" => |r| r.0.summary.metrics.delivery.push_state_bytes_peak;
    BacklogMax "backlog_max" Median "records stored and not yet consumed, summed over partitions, most at a second's end in the window" => |r| r.0.summary.metrics.delivery.backlog_max;
    BacklogAtEnd "backlog_at_end" Median "records stored and not yet consumed when the workload phase ended" => |r| r.0.summary.metrics.delivery.backlog_at_end;
    DrainS "drain_s" Median "s after the workload ended until every acknowledged message was processed once (absent if some never were)" => |r| r.consumption().drain_s;
    MemberShareMin "member_share_min" Median "smallest share of the processed messages one consumer instance processed (1/instances when even)" => |r| r.consumption().member_share_min;
    MemberShareMax "member_share_max" Median "largest share of the processed messages one consumer instance processed (1/instances when even)" => |r| r.consumption().member_share_max;
    ProcessingOutOfOrder "processing_out_of_order" Median "first processings of a record below one already processed from its partition" => |r| r.consumption().out_of_order;
    ProcessingOutOfOrderPerKey "processing_out_of_order_per_key" Median "first processings of a record below one already processed from its partition with the same ordering key" => |r| r.consumption().out_of_order_per_key;
    ProcessingBacklogMax "processing_backlog_max" Median "acknowledged messages not yet processed, most at any second's end" => |r| r.consumption().backlog_max;
    ShareStateBytesPeak "share_state_bytes_peak" Median "the most memory the brokers held for share state (records in flight, holders' names, groups), bytes" => |r| r.0.summary.metrics.delivery.share_state_bytes_peak;
    ShareRecordsPeak "share_records_peak" Median "the most share records (available or acquired) the brokers held at once: the state a share group costs them" => |r| r.0.summary.metrics.delivery.share_records_peak;
    OutOfOrderPerKey "out_of_order_per_key" WorstSeed "first deliveries by share groups of a record below one already first delivered from its partition with the same ordering key (must be 0 under key_shared)" => |r| r.0.summary.shares.values().map(|g| g.out_of_order_per_key).sum::<u64>();
    ShareRedeliveries "share_redeliveries" Median "records share groups acquired again (lock expired, released)" => |r| r.0.summary.shares.values().map(|g| g.redeliveries).sum::<u64>();
    ShareRefusedAcks "share_refused_acks" Median "accepts and rejects of share group members the leader refused (lock expired, released by a failover, or not held): processing thrown away" => |r| r.0.summary.shares.values().map(|g| g.refused_acks).sum::<u64>();
}

/// A number taken from every run: an anomaly count (the checker's classes, one [`Anomaly`]
/// each, judged on the worst seed) or one of the [`Measure`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    Anomaly(Anomaly),
    Measure(Measure),
}

impl Metric {
    /// Every metric: the anomaly classes in their fixed order, then the measures.
    pub fn all() -> impl Iterator<Item = Metric> {
        let anomalies = Anomaly::ALL.into_iter().map(Metric::Anomaly);
        anomalies.chain(Measure::ALL.iter().copied().map(Metric::Measure))
    }

    /// The name experiment files and `results.json` use.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Anomaly(a) => a.name(),
            Metric::Measure(m) => m.name(),
        }
    }

    /// What it measures, for a report's column list.
    pub fn describe(self) -> &'static str {
        match self {
            Metric::Anomaly(a) => a.describe(),
            Metric::Measure(m) => m.describe(),
        }
    }

    pub fn judged(self) -> Judged {
        match self {
            Metric::Anomaly(_) => Judged::WorstSeed,
            Metric::Measure(m) => m.judged(),
        }
    }

    /// Its value in one run; `None` when the run did not measure it.
    pub fn value(self, run: &RunOutcome) -> Option<f64> {
        match self {
            Metric::Anomaly(a) => run.summary.anomalies.get(a.name()).map(|n| n as f64),
            Metric::Measure(m) => m.value(run),
        }
    }
}

/// The end-to-end parts in path order, each with its metric: what a breakdown chart stacks.
pub const BREAKDOWN: [(&str, Metric); 5] = [
    (PART_CLIENT_WAIT, Metric::Measure(Measure::E1ClientWaitMs)),
    (PART_NETWORK, Metric::Measure(Measure::E1NetworkMs)),
    (
        PART_BROKER_APPEND,
        Metric::Measure(Measure::E1BrokerAppendMs),
    ),
    (PART_REPLICATION, Metric::Measure(Measure::E1ReplicationMs)),
    (PART_CONSUMER, Metric::Measure(Measure::E1ConsumerMs)),
];

impl Metric {
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::all().find(|m| m.name() == name)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Metric, D::Error> {
        let name = String::deserialize(d)?;
        Metric::from_name(&name).ok_or_else(|| {
            let known: Vec<&str> = Metric::all().map(Metric::name).collect();
            serde::de::Error::custom(format!(
                "unknown metric {name:?}; the metrics are {}",
                known.join(", ")
            ))
        })
    }
}

/// A run, as the metric table reads it.
struct Run<'a>(&'a RunOutcome);

impl Run<'_> {
    fn part(&self, name: &str) -> Option<f64> {
        let parts = &self.0.summary.metrics.breakdown.parts;
        parts.iter().find(|p| p.name == name).map(|p| p.mean_ms)
    }

    /// Sent messages that no poll (consumer or final read) returned.
    fn unread(&self) -> u64 {
        use fathom_history::{EventType, Op};
        use std::collections::BTreeSet;
        let mut sent: BTreeSet<&str> = BTreeSet::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for e in &self.0.events {
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

    /// A steady-state percentile; `None` when no message was sent in the measured window.
    fn steady(
        &self,
        which: impl Fn(&SteadyLatencies) -> &Percentiles,
        pick: impl Fn(&Percentiles) -> f64,
    ) -> Option<f64> {
        let p = which(&self.0.summary.latency_ms.steady);
        (p.count > 0).then(|| pick(p))
    }

    /// Each consumer process's own median store-to-delivery latency, where it has one.
    fn consumer_latencies(&self) -> impl Iterator<Item = f64> + '_ {
        let consumers = self.0.summary.metrics.delivery.consumers.values();
        consumers.filter_map(|c| c.latency_p50_ms)
    }

    /// How the consumers shared the work, from the history (claim C3).
    fn consumption(&self) -> crate::consumption::Consumption {
        let end_s = self.0.summary.metrics.throughput.window_s[1];
        crate::consumption::consumption(&self.0.events, end_s)
    }

    /// A group figure summed over the run's consumer groups; `None` without a group.
    fn groups(&self, figure: impl Fn(&GroupFigures) -> f64) -> Option<f64> {
        let groups = &self.0.summary.metrics.groups;
        (!groups.is_empty()).then(|| groups.values().map(figure).sum())
    }

    /// A group figure's largest value over the run's consumer groups; `None` without a group.
    fn groups_max(&self, figure: impl Fn(&GroupFigures) -> f64) -> Option<f64> {
        let groups = &self.0.summary.metrics.groups;
        groups.values().map(figure).reduce(f64::max)
    }

    fn util(&self) -> Option<&Utilisation> {
        let u = &self.0.summary.metrics.utilisation;
        (!u.hosts.is_empty()).then_some(u)
    }

    /// A delivery latency percentile; `None` when no message sent in the window was delivered.
    fn delivery_latency(&self, pick: impl Fn(&DeliveryMetrics) -> f64) -> Option<f64> {
        let d = &self.0.summary.metrics.delivery;
        (d.messages > 0).then(|| pick(d))
    }

    fn fetches_per_s(&self) -> Option<f64> {
        let duration_s = self.0.summary.metrics.throughput.window_s[1];
        let fetches = self.0.summary.metrics.delivery.fetches as f64;
        (duration_s > 0.0).then(|| fetches / duration_s)
    }

    fn fate_unrecorded(&self) -> u64 {
        let s = &self.0.summary;
        s.sent.saturating_sub(s.acked + s.failed + s.unknown)
    }

    /// The parts are means rounded to the microsecond each: within 10 µs plus 0.1% of the
    /// total they add up.
    fn parts_gap(&self) -> Option<f64> {
        let b = &self.0.summary.metrics.breakdown;
        if b.messages == 0 {
            return None;
        }
        let sum: f64 = b.parts.iter().map(|p| p.mean_ms).sum();
        let rounding = 0.01 + 0.001 * b.total_mean_ms;
        Some(((sum - b.total_mean_ms).abs() - rounding).max(0.0))
    }
}

/// What a metric's reader may hand back; every form becomes an optional `f64`.
trait Reading {
    fn reading(self) -> Option<f64>;
}

impl Reading for u64 {
    fn reading(self) -> Option<f64> {
        Some(self as f64)
    }
}

impl Reading for usize {
    fn reading(self) -> Option<f64> {
        Some(self as f64)
    }
}

impl Reading for f64 {
    fn reading(self) -> Option<f64> {
        Some(self)
    }
}

impl Reading for Option<f64> {
    fn reading(self) -> Option<f64> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_found_by_its_name_and_names_are_unique() {
        for m in Metric::all() {
            assert_eq!(Metric::from_name(m.name()), Some(m));
            assert!(!m.describe().is_empty());
        }
        let mut names: Vec<&str> = Metric::all().map(Metric::name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Metric::all().count());
    }

    #[test]
    fn an_unknown_metric_name_is_an_error_not_a_zero() {
        let err = serde_json::from_str::<Metric>("\"lsot\"").unwrap_err();
        assert!(err.to_string().contains("unknown metric \"lsot\""), "{err}");
    }

    #[test]
    fn every_anomaly_class_is_a_worst_seed_metric() {
        for class in Anomaly::ALL {
            let m = Metric::from_name(class.name()).unwrap_or_else(|| panic!("no metric {class}"));
            assert_eq!(m, Metric::Anomaly(class));
            assert_eq!(m.judged(), Judged::WorstSeed, "{class}");
        }
    }
}
