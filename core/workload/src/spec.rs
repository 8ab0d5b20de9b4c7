//! What a workload asks of its clients: the `[[producers]]` and `[[consumers]]` tables of a
//! scenario and the production commands' options, read by serde and run by [`crate::clients`].

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use fathom_queue::client::{ConsumerConfig, Delivery, ProducerConfig, ShareConsumerConfig};
use fathom_queue::group::assignor::Assignor;
use fathom_queue::group::classic::RebalanceKind;
use fathom_queue::group::member::{MemberConfig, MemberProtocol, REBALANCE_INTERVAL_MS_DEFAULT};
pub use fathom_queue::log::batch::Compression;
use fathom_queue::share::{ShareMode, ShareSettings};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// The host name of instance `instance` (from 0) of the producer or consumer named `base`.
pub fn process_name(base: &str, instance: u32) -> String {
    format!("{base}-{instance}")
}

/// The host name of a consumer instance after it has been restarted `restarts` times: a restart
/// is a new process with a new client identity, so the history can tell incarnations apart.
/// With `restarts == 0` this is [`process_name`].
pub fn restarted_process_name(base: &str, instance: u32, restarts: u32) -> String {
    if restarts == 0 {
        process_name(base, instance)
    } else {
        format!("{base}-{instance}-r{restarts}")
    }
}

pub use fathom_queue::time::MillisRange;

/// How a producer instance waits for its sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProducerMode {
    /// One send at a time: wait for its outcome before the next.
    #[default]
    Sync,
    /// Sends are pipelined up to `in_flight_max`; outcomes arrive later.
    Async,
    /// Send and never look at the outcome.
    FireAndForget,
}

impl ProducerMode {
    /// Every mode.
    pub const ALL: [ProducerMode; 3] = [
        ProducerMode::Sync,
        ProducerMode::Async,
        ProducerMode::FireAndForget,
    ];

    /// The name scenarios and the CLI write (serde's `snake_case` spelling).
    pub const fn name(self) -> &'static str {
        match self {
            ProducerMode::Sync => "sync",
            ProducerMode::Async => "async",
            ProducerMode::FireAndForget => "fire_and_forget",
        }
    }
}

impl fmt::Display for ProducerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for ProducerMode {
    type Err = String;

    fn from_str(s: &str) -> Result<ProducerMode, String> {
        ProducerMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!(r#"expected one of "sync", "async", "fire_and_forget", got "{s}""#)
            })
    }
}

/// How a producer picks the partition of a message: the workload itself (`round_robin`,
/// `random`, drawn from the process's seed) or the producer's own partitioner
/// ([`fathom_queue::client::Partitioner`]: `key_hash`, `sticky`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioner {
    /// Partitions in turn, from a seeded start; chosen by the workload.
    #[default]
    RoundRobin,
    /// Uniform, from the run's seed; chosen by the workload.
    Random,
    /// The producer's key-hash partitioner, with the message id as the key.
    KeyHash,
    /// The producer's sticky partitioner: one partition until its batch closes.
    Sticky,
}

/// When a consumer commits its offsets, relative to processing a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitMode {
    /// At-least-once: a crash between processing and committing re-delivers.
    #[default]
    AfterProcess,
    /// At-most-once: a crash between committing and processing skips messages.
    BeforeProcess,
    /// Never commit; a restarted consumer starts from the beginning.
    Never,
    /// Kafka's `enable.auto.commit`: every `commit_interval_ms`, commit the positions of the
    /// records `poll` has returned, processed or not.
    Auto,
}

/// How records reach a consumer (`consumers[i].delivery`, claim C1); the settings each model
/// reads are `poll_interval_ms` (pull), `max_wait_ms` and `min_bytes` (long poll) and
/// `push_credits` (push).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryModel {
    /// Fetch without waiting; after an empty answer, fetch again after `poll_interval_ms`.
    Pull,
    /// Kafka's fetch, held by the broker until `min_bytes` or `max_wait_ms`.
    #[default]
    LongPoll,
    /// Subscribe once; the leader pushes committed batches within `push_credits`.
    Push,
}

impl DeliveryModel {
    pub const ALL: [DeliveryModel; 3] = [
        DeliveryModel::Pull,
        DeliveryModel::LongPoll,
        DeliveryModel::Push,
    ];

    /// The scenario's spelling (serde's `snake_case` of the variant).
    pub const fn name(self) -> &'static str {
        match self {
            DeliveryModel::Pull => "pull",
            DeliveryModel::LongPoll => "long_poll",
            DeliveryModel::Push => "push",
        }
    }
}

/// Pull's wait after an empty fetch, by default.
pub const POLL_INTERVAL_MS_DEFAULT: u64 = 100;
/// Push's credit window, by default: Pulsar's receiver queue of 1000 messages.
pub const PUSH_CREDITS_DEFAULT: u32 = 1_000;

/// What a membership fault does to one group consumer instance (issue 8), at a time of the
/// run. Built from the scenario's `[[faults]]` by the simulator, applied by the process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemberAction {
    /// A clean shutdown: finish the batch, commit what was processed, leave the group (a
    /// static member does not, KIP-345), and stop for good.
    Leave,
    /// Die at once, mid-batch if busy, without leaving; a new process after `restart_after`.
    Crash { restart_after: Option<Duration> },
    /// Stop everything (heartbeats, polling) for this long between two poll results, then
    /// carry on: a stall of the poll loop. Past its session the member comes back a zombie;
    /// past `max_poll_interval_ms` too, its next poll finds it has left the group (KIP-62).
    Pause(Duration),
    /// A clean shutdown followed at once by a new process (a rolling restart's step).
    Restart,
}

/// What a `[[consumers]]` table's instances are (`consumers[i].kind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerKind {
    /// Whole partitions per consumer, in order: manual assignment or a consumer group.
    #[default]
    Stream,
    /// A share group (KIP-932): every member reads every partition, record by record, and
    /// acknowledges each (claim C3).
    Share,
    /// A share group that keeps each ordering key's order (Pulsar Key_Shared): one member at a
    /// time per key (see [`fathom_queue::share::ShareMode::KeyShared`]).
    KeyShared,
}

impl ConsumerKind {
    /// Whether the instances are members of a share group (either mode).
    pub fn is_share(self) -> bool {
        self.share_mode().is_some()
    }

    /// The share group's mode; `None` for a stream consumer.
    pub fn share_mode(self) -> Option<ShareMode> {
        match self {
            ConsumerKind::Stream => None,
            ConsumerKind::Share => Some(ShareMode::Shared),
            ConsumerKind::KeyShared => Some(ShareMode::KeyShared),
        }
    }
}

/// Records one share fetch may acquire, by default (KIP-932's `max.poll.records` alike).
pub const SHARE_MAX_RECORDS_DEFAULT: u32 = 100;

/// How a consumer's partitions are decided (`consumers[i].protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerProtocol {
    /// Direct assignment (Flink): `partitions` split over the instances, no group membership.
    #[default]
    Manual,
    /// Kafka's classic protocol, eager: every member revokes everything on any change.
    Eager,
    /// KIP-429 incremental cooperative rebalancing.
    Cooperative,
    /// KIP-345 static membership (classic, eager), with an instance id per instance.
    Static,
    /// KIP-848's broker-side assignment (RocketMQ 5's server-side rebalance alike).
    Broker,
    /// RocketMQ 4's client-side rebalance every `rebalance_interval_ms`.
    ClientPeriodic,
}

impl ConsumerProtocol {
    /// The scenario's spelling (serde's `snake_case` of the variant).
    pub const fn name(self) -> &'static str {
        match self {
            ConsumerProtocol::Manual => "manual",
            ConsumerProtocol::Eager => "eager",
            ConsumerProtocol::Cooperative => "cooperative",
            ConsumerProtocol::Static => "static",
            ConsumerProtocol::Broker => "broker",
            ConsumerProtocol::ClientPeriodic => "client_periodic",
        }
    }

    pub fn is_group(self) -> bool {
        self != ConsumerProtocol::Manual
    }

    /// Whether a member may carry an instance id (KIP-345, also under KIP-848).
    pub fn takes_instance_id(self) -> bool {
        matches!(self, ConsumerProtocol::Static | ConsumerProtocol::Broker)
    }
}

/// One `[[producers]]` table: `instances` identical processes named `{name}-0`, `{name}-1`, ...
///
/// The table holds two kinds of field side by side: the workload's own, below, and the
/// producer state machine's settings, which are [`ProducerConfig`]'s fields under their own
/// names and defaults (`acks`, `linger_ms`, `in_flight_max`, ...). serde reads the first kind
/// into this struct and the second into [`ProducerSpec::client`] from the same table (the
/// simulator's scenario loader does both and refuses a key that neither knows).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ProducerSpec {
    pub name: String,
    pub instances: NonZeroU32,
    pub topic: String,
    pub mode: ProducerMode,
    /// Sends started per second per instance: an upper bound, a sync producer also waits for
    /// each outcome.
    pub rate_per_s: f64,
    /// Messages per instance; the instance stops after these or at the end of `duration_s`.
    pub messages: NonZeroU64,
    pub message_bytes: NonZeroU32,
    pub partitioner: Partitioner,
    /// How long `send` blocks on a full buffer before it fails (Kafka's `max.block.ms`).
    pub max_block_ms: u64,
    /// Open a new connection for every send and close it after the outcome (sync mode only):
    /// what a client without long-lived connections pays (claim P1).
    pub connect_per_send: bool,
    /// The share of messages (0 ..= 1) sent to partition [`HOT_KEY_PARTITION`], one hot key
    /// (claim C3's skew); the rest go where `partitioner` says. Spread evenly over the
    /// messages, without drawing from the seed: 0 leaves the workload as it was.
    pub hot_key_share: f64,
    /// Distinct ordering keys the producer's messages carry, in turn (message `n` has key
    /// `k{n % ordering_keys}`; a hot message, `hot`): what a `key_shared` group orders by. 0
    /// (the default) gives none: each message is its own key. At most
    /// [`fathom_queue::share::ORDERING_KEYS_MAX`]. See [`ProducerSpec::message_id`].
    pub ordering_keys: u32,
    /// The producer's own settings, from the same table.
    #[serde(skip)]
    pub client: ProducerConfig,
}

/// The partition a producer's hot key (`hot_key_share`) lands on.
pub const HOT_KEY_PARTITION: u32 = 0;

impl Default for ProducerSpec {
    /// Defaults for the optional fields; `name` and `topic` are required (checked by validation).
    /// The producer's settings take [`ProducerConfig::default`], the one set of client defaults.
    fn default() -> Self {
        ProducerSpec {
            name: String::new(),
            instances: NonZeroU32::MIN,
            topic: String::new(),
            mode: ProducerMode::default(),
            rate_per_s: 100.0,
            messages: NonZeroU64::new(1000).expect("not zero"),
            message_bytes: NonZeroU32::new(100).expect("not zero"),
            partitioner: Partitioner::default(),
            max_block_ms: 60_000,
            connect_per_send: false,
            hot_key_share: 0.0,
            ordering_keys: 0,
            client: ProducerConfig::default(),
        }
    }
}

impl ProducerSpec {
    /// The id (and record key) of message `n` of process `process`: `{process}-{n}`, behind its
    /// ordering key and a `/` when the producer has ordering keys
    /// ([`fathom_queue::share::ordering_key`] reads it back).
    pub fn message_id(&self, process: &str, n: u64, hot: bool) -> String {
        match (self.ordering_keys, hot) {
            (0, _) => format!("{process}-{n}"),
            (_, true) => format!("hot/{process}-{n}"),
            (keys, false) => format!("k{}/{process}-{n}", n % u64::from(keys)),
        }
    }
}

/// The process part of a message id (`k3/p-0-17` and `p-0-17` are both `p-0`'s).
pub fn id_process(id: &str) -> Option<&str> {
    let unkeyed = id.split_once('/').map_or(id, |(_, rest)| rest);
    unkeyed.rsplit_once('-').map(|(process, _)| process)
}

impl Partitioner {
    /// The producer's partitioner to configure: the one named, or key hash (unused, as the
    /// workload names every partition) when the workload picks.
    pub fn producer_partitioner(self) -> fathom_queue::client::Partitioner {
        match self {
            Partitioner::Sticky => fathom_queue::client::Partitioner::Sticky,
            Partitioner::KeyHash | Partitioner::RoundRobin | Partitioner::Random => {
                fathom_queue::client::Partitioner::KeyHash
            }
        }
    }
}

impl ProducerSpec {
    /// The producer state machine's configuration for this table: its settings, with the
    /// attempt journal on and the partitioner the workload's choice implies.
    pub fn producer_config(&self) -> ProducerConfig {
        ProducerConfig {
            attempt_events: true,
            partitioner: self.partitioner.producer_partitioner(),
            ..self.client.clone()
        }
    }

    /// Host names of the instances, in instance order.
    pub fn process_names(&self) -> Vec<String> {
        (0..self.instances.get())
            .map(|i| process_name(&self.name, i))
            .collect()
    }
}

/// Which partitions of its topic a consumer spec reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PartitionSelection {
    #[default]
    All,
    List(Vec<u32>),
}

impl<'de> Deserialize<'de> for PartitionSelection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SelectionVisitor;
        impl<'de> Visitor<'de> for SelectionVisitor {
            type Value = PartitionSelection;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""all" or a list of partition indexes such as [0, 2]"#)
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<PartitionSelection, E> {
                if s == "all" {
                    Ok(PartitionSelection::All)
                } else {
                    Err(E::custom(format!(
                        r#"expected "all" or a list of partition indexes such as [0, 2], got "{s}""#
                    )))
                }
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut list = Vec::new();
                while let Some(p) = seq.next_element::<u32>()? {
                    list.push(p);
                }
                Ok(PartitionSelection::List(list))
            }
        }
        deserializer.deserialize_any(SelectionVisitor)
    }
}

/// One `[[consumers]]` table: `instances` processes in one group that split the selected
/// partitions between them.
///
/// As a `[[producers]]` table, it holds the workload's fields (below) beside the consumer's
/// settings ([`ConsumerConfig`]'s fields, read into [`ConsumerSpec::client`]) and a share
/// group's ([`ShareSettings`], into [`ConsumerSpec::share`]); the scenario loader reads all
/// three from the table and refuses a key that none knows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ConsumerSpec {
    pub name: String,
    pub instances: NonZeroU32,
    pub topic: String,
    /// Split round-robin over the instances: instance `i` reads the `k`-th selected partition
    /// when `k % instances == i`. See [`ConsumerSpec::assignment`].
    pub partitions: PartitionSelection,
    /// Consumer group whose committed offsets a (re)started instance resumes from.
    pub group: String,
    pub commit: CommitMode,
    pub commit_interval_ms: u64,
    /// Simulated processing time per message.
    pub process_ms: u64,
    /// Times at which every instance is stopped and a new process (see
    /// [`restarted_process_name`]) resumes from the committed offsets. Strictly increasing.
    pub restart_at_s: Vec<f64>,
    /// Who decides the partitions: `manual` (the default, `partitions` split by instance) or a
    /// group protocol, under which the group's coordinator assigns.
    pub protocol: ConsumerProtocol,
    /// The partition assignor of a group protocol (the broker's under `broker`).
    pub assignor: Assignor,
    /// KIP-345: instance `i` joins as `{instance_id}-{i}` (static, broker); `static` without
    /// one uses the process base name.
    pub instance_id: Option<String>,
    pub session_timeout_ms: u32,
    pub heartbeat_interval_ms: u32,
    /// Also the rebalance timeout, as in Kafka.
    pub max_poll_interval_ms: u32,
    /// `client_periodic` only: how often each member recomputes its share.
    pub rebalance_interval_ms: u32,
    /// Processing time per message of each instance, overriding `process_ms` (one slow member).
    pub instance_process_ms: Vec<u64>,
    /// How records reach the consumer: `pull`, `long_poll` (the default) or `push`.
    pub delivery: DeliveryModel,
    /// `pull`: the wait before fetching again after an empty answer.
    pub poll_interval_ms: u64,
    /// `push`: records pushed and not yet taken by the application; 0 is no flow control.
    pub push_credits: u32,
    /// `stream` (the default), `share` or `key_shared`; the fields below are the share group's
    /// (either kind).
    pub kind: ConsumerKind,
    /// `share`: records one fetch may acquire.
    pub max_records: u32,
    /// `share`: ids the application cannot process: it releases them (a failed attempt) until
    /// their last delivery attempt, then rejects them (a poison message).
    pub poison_ids: Vec<String>,
    /// `share`: where a member copies a record (acks=all, before rejecting it) that it rejects
    /// (Pulsar's and RocketMQ's dead-letter queue); none: a rejected record is only archived.
    pub dead_letter_topic: Option<String>,
    /// The consumer's own settings (`max_wait_ms`, `min_bytes`, `max_bytes`,
    /// `receive_buffer_bytes_max`, `request_timeout_ms`, ...), from the same table.
    #[serde(skip)]
    pub client: ConsumerConfig,
    /// `share`: the share group's settings (`acquisition_lock_ms`, `delivery_attempts_max`,
    /// `record_locks_max`), from the same table.
    #[serde(skip)]
    pub share: ShareSettings,
}

impl Default for ConsumerSpec {
    /// Defaults for the optional fields; `name`, `topic` and `group` are required. The fetch
    /// settings take [`ConsumerConfig::default`], the one set of client defaults.
    fn default() -> Self {
        let client = ConsumerConfig::default();
        let member = MemberConfig::default();
        ConsumerSpec {
            name: String::new(),
            instances: NonZeroU32::MIN,
            topic: String::new(),
            partitions: PartitionSelection::All,
            group: String::new(),
            commit: CommitMode::default(),
            commit_interval_ms: 100,
            process_ms: 0,
            restart_at_s: Vec::new(),
            protocol: ConsumerProtocol::default(),
            assignor: member.assignor,
            instance_id: None,
            session_timeout_ms: member.session_timeout_ms,
            heartbeat_interval_ms: member.heartbeat_interval_ms,
            max_poll_interval_ms: member.max_poll_interval_ms,
            rebalance_interval_ms: REBALANCE_INTERVAL_MS_DEFAULT,
            instance_process_ms: Vec::new(),
            delivery: DeliveryModel::default(),
            poll_interval_ms: POLL_INTERVAL_MS_DEFAULT,
            push_credits: PUSH_CREDITS_DEFAULT,
            kind: ConsumerKind::default(),
            max_records: SHARE_MAX_RECORDS_DEFAULT,
            poison_ids: Vec::new(),
            dead_letter_topic: None,
            client,
            share: ShareSettings::default(),
        }
    }
}

impl ConsumerSpec {
    /// Whether the instances are members of some group, stream or share: what membership
    /// faults (leave, crash, pause, restart) and the swarm's consumer kinds act on. A manual
    /// stream consumer has no membership to lose.
    pub fn has_membership(&self) -> bool {
        self.protocol.is_group() || self.kind.is_share()
    }

    /// The consumer state machine's configuration for this table: its settings, with the
    /// group and the delivery model the workload's fields name.
    pub fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            group: self.group.clone(),
            delivery: self.delivery(),
            ..self.client.clone()
        }
    }

    /// A share member's configuration, for the process named `member`: the consumer's fetch
    /// settings, timeouts and backoffs, and the share group's settings.
    pub fn share_config(&self, member: &str) -> ShareConsumerConfig {
        let client = &self.client;
        ShareConsumerConfig {
            group: self.group.clone(),
            member: member.to_string(),
            topic: self.topic.clone(),
            settings: self.share,
            mode: self.kind.share_mode().unwrap_or_default(),
            max_records: self.max_records,
            max_wait_ms: client.max_wait_ms,
            max_bytes: client.max_bytes.get(),
            request_timeout_ms: client.request_timeout_ms,
            retry_backoff_ms: client.retry_backoff_ms,
            metadata_refresh_backoff_ms: client.metadata_refresh_backoff_ms,
            // As Kafka's share consumer: the next fetch after one poll's records are done.
            held_records_max: self.max_records as usize,
        }
    }

    /// The consumer state machine's delivery model with the settings it reads.
    pub fn delivery(&self) -> Delivery {
        match self.delivery {
            DeliveryModel::Pull => Delivery::Pull {
                poll_interval_ms: self.poll_interval_ms,
            },
            DeliveryModel::LongPoll => Delivery::LongPoll,
            DeliveryModel::Push => Delivery::Push {
                credits: self.push_credits,
            },
        }
    }

    /// The group member's configuration of instance `instance`, or `None` under manual
    /// assignment. The group itself is the consumer's ([`ConsumerSpec::consumer_config`]).
    pub fn member_config(&self, instance: u32) -> Option<MemberConfig> {
        let protocol = match self.protocol {
            ConsumerProtocol::Manual => return None,
            ConsumerProtocol::Eager | ConsumerProtocol::Static => {
                MemberProtocol::Classic(RebalanceKind::Eager)
            }
            ConsumerProtocol::Cooperative => MemberProtocol::Classic(RebalanceKind::Cooperative),
            ConsumerProtocol::Broker => MemberProtocol::Consumer,
            ConsumerProtocol::ClientPeriodic => MemberProtocol::ClientPeriodic {
                rebalance_interval_ms: self.rebalance_interval_ms,
            },
        };
        let instance_id = match (&self.instance_id, self.protocol) {
            (Some(id), _) => Some(process_name(id, instance)),
            (None, ConsumerProtocol::Static) => Some(process_name(&self.name, instance)),
            (None, _) => None,
        };
        Some(MemberConfig {
            group: self.group.clone(),
            protocol,
            assignor: self.assignor,
            instance_id,
            topics: [self.topic.clone()].into(),
            session_timeout_ms: self.session_timeout_ms,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            max_poll_interval_ms: self.max_poll_interval_ms,
            ..MemberConfig::default()
        })
    }

    /// Processing time per message of instance `instance`.
    pub fn process_ms_of(&self, instance: u32) -> u64 {
        self.instance_process_ms
            .get(instance as usize)
            .copied()
            .unwrap_or(self.process_ms)
    }

    /// The partitions this spec selects from a topic with `topic_partitions` partitions.
    pub fn selected_partitions(&self, topic_partitions: u32) -> Vec<u32> {
        match &self.partitions {
            PartitionSelection::All => (0..topic_partitions).collect(),
            PartitionSelection::List(list) => list.clone(),
        }
    }

    /// The partitions instance `instance` reads, from a topic with `topic_partitions` partitions.
    pub fn assignment(&self, instance: u32, topic_partitions: u32) -> Vec<u32> {
        let instances = self.instances.get() as usize;
        self.selected_partitions(topic_partitions)
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % instances == instance as usize)
            .map(|(_, p)| p)
            .collect()
    }

    /// Host names of instance `instance` over its life: the first process, then one per
    /// `restart_at_s` entry.
    pub fn incarnation_names(&self, instance: u32) -> Vec<String> {
        (0..=self.restart_at_s.len() as u32)
            .map(|r| restarted_process_name(&self.name, instance, r))
            .collect()
    }

    /// Host names of every process this spec ever starts.
    pub fn process_names(&self) -> Vec<String> {
        (0..self.instances.get())
            .flat_map(|i| self.incarnation_names(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9: a producer with ordering keys puts the key in front of the id, a hot message
    /// under the one key `hot`; the process is found behind either.
    #[test]
    fn message_ids_carry_their_ordering_key_and_their_process() {
        let mut p = ProducerSpec {
            ordering_keys: 3,
            ..ProducerSpec::default()
        };
        assert_eq!(p.message_id("p-0", 7, false), "k1/p-0-7");
        assert_eq!(p.message_id("p-0", 8, true), "hot/p-0-8");
        assert_eq!(id_process("k1/p-0-7"), Some("p-0"));
        p.ordering_keys = 0;
        assert_eq!(p.message_id("p-0", 7, true), "p-0-7");
        assert_eq!(id_process("p-0-7"), Some("p-0"));
    }

    /// One set of client defaults: a table that sets nothing configures the state machines
    /// exactly as their own `Default` does (the producer with its attempt journal on).
    #[test]
    fn empty_tables_configure_the_clients_with_their_defaults() {
        assert_eq!(
            ProducerSpec::default().producer_config(),
            ProducerConfig {
                attempt_events: true,
                ..ProducerConfig::default()
            }
        );
        let consumer = ConsumerSpec {
            group: "g".into(),
            ..ConsumerSpec::default()
        };
        assert_eq!(
            consumer.consumer_config(),
            ConsumerConfig {
                group: "g".into(),
                ..ConsumerConfig::default()
            }
        );
    }
}
