//! Scenario files: one TOML file names a cluster, its network and disks, a workload, a fault
//! schedule and the bounds a run must stay within.
//!
//! Loading a scenario happens in two steps. serde reads the text into plain types with
//! `deny_unknown_fields` everywhere, so a misspelt field is an error rather than a silently
//! ignored setting. Then [`validate`] checks what serde cannot: that names refer to declared
//! things, ranges are ordered, times fall inside the run, and it turns the flat `[[faults]]`
//! tables into the typed [`FaultKind`]. Every error names the dotted path of the field (e.g.
//! `producers[0].acks`) and its line and column, found through [`source_map`] (toml_edit spans).
//!
//! The simulator owns everything dynamic: it resolves [`Target`]s at fault time, names processes
//! with [`process_name`], and judges a run with [`Expect::violations`].

mod source_map;
mod validate;
pub mod write;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use crate::resources::ResourceSpec;
use fathom_history::{Anomaly, CheckReport};
use fathom_queue::config::{
    BrokerAddr, ClusterConfig, FsyncPolicy, LogConfig, ReplicationConfig, ShareConfig, TopicConfig,
};
use fathom_queue::ids::NodeId;
pub use fathom_queue::protocol::Acks;
pub use fathom_workload::spec::{
    process_name, restarted_process_name, CommitMode, Compression, ConsumerSpec, MemberAction,
    MillisRange, PartitionSelection, Partitioner, ProducerMode, ProducerSpec,
};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::metrics::DeliveryMetrics;
use crate::violation::Violation;

/// The port every broker listens on, under simulation and in production.
pub const BROKER_PORT: u16 = 9092;

/// The turmoil host name of broker `id`.
pub fn broker_host(id: NodeId) -> String {
    format!("broker-{id}")
}

/// Whether `name` is a broker's host name (`broker-<id>`).
pub fn is_broker_host(name: &str) -> bool {
    name.strip_prefix("broker-")
        .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
}

/// The `host:port` address of broker `id`, as put into the [`ClusterConfig`].
pub fn broker_addr(id: NodeId) -> String {
    format!("{}:{BROKER_PORT}", broker_host(id))
}

/// A whole scenario, parsed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// What the scenario shows and which claim or anomaly it probes.
    pub description: String,
    /// The seed used when `fathom run` is not given `--seed`.
    pub seed: u64,
    /// Length of the workload phase in simulated seconds; producers stop sending at its end.
    pub duration_s: f64,
    /// Length of the final phase: every fault is healed (crashed brokers restart, links repair),
    /// the cluster gets this long to recover, then the final read happens.
    pub settle_s: f64,
    /// Liveness bound: within this many simulated seconds of the final heal every data partition
    /// has a leader on a running broker, and the final read delivers every partition within this
    /// long of its start; otherwise the run is `unavailable`.
    pub liveness_s: f64,
    /// turmoil's tick.
    pub tick_ms: u64,
    pub cluster: ClusterSpec,
    pub network: NetworkSpec,
    pub disk: DiskSpec,
    /// The hardware's costs; `None` makes the network, CPUs and disks free.
    pub resources: Option<ResourceSpec>,
    pub producers: Vec<ProducerSpec>,
    pub consumers: Vec<ConsumerSpec>,
    /// In file order; the simulator applies them by `at_s`.
    pub faults: Vec<Fault>,
    pub expect: Expect,
    /// `[swarm]`: each seed draws faults, disk faults and workload knobs on top of the file's
    /// (see [`crate::swarm`]); `None` runs the file as written.
    pub swarm: Option<crate::swarm::Swarm>,
}

/// The cluster section: brokers are named by count, everything else is the core config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Brokers `broker-1` ..= `broker-{brokers}`.
    pub brokers: u32,
    #[serde(default = "default_offsets_partitions")]
    pub offsets_partitions: u32,
    #[serde(default)]
    pub topics: Vec<TopicConfig>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub replication: ReplicationConfig,
    /// `[cluster.share]`: the share-partition leaders' policy (see [`ShareConfig`]).
    #[serde(default)]
    pub share: ShareConfig,
}

fn default_offsets_partitions() -> u32 {
    1
}

impl ClusterSpec {
    /// The core's view of this cluster: brokers `1..=n` at `broker-{id}:9092`.
    pub fn to_config(&self) -> ClusterConfig {
        ClusterConfig {
            brokers: (1..=self.brokers)
                .map(|id| BrokerAddr {
                    id,
                    addr: broker_addr(id),
                })
                .collect(),
            topics: self.topics.clone(),
            log: self.log.clone(),
            replication: self.replication.clone(),
            share: self.share.clone(),
            offsets_partitions: self.offsets_partitions,
        }
    }
}

/// Network behaviour of every link, before any fault changes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSpec {
    /// One-way message latency, drawn between min and max.
    pub latency_ms: MillisRange,
    /// turmoil's fail rate: the probability that a link breaks on a send. turmoil's TCP has no
    /// retransmission, so a broken link breaks the connections over it.
    pub loss: f64,
    /// turmoil's repair rate: the probability that a broken link repairs on a step.
    pub repair: f64,
    /// Availability zones. Links within a zone, and links of hosts in no zone, take
    /// `latency_ms`; links between two zones take `cross_zone_latency_ms`.
    pub zones: Vec<Zone>,
    pub cross_zone_latency_ms: MillisRange,
}

/// A named group of hosts that share a low-latency network.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    /// Broker hosts (`broker-1`), client process base names (`p`, meaning every instance and
    /// incarnation) or process names (`p-0`).
    pub hosts: Vec<String>,
}

impl NetworkSpec {
    /// The zone of a turmoil host, if it is in one.
    pub fn zone_of(&self, host: &str) -> Option<&str> {
        self.zones
            .iter()
            .find(|z| {
                z.hosts
                    .iter()
                    .any(|h| host == h || host.starts_with(&format!("{h}-")) && !is_broker_host(h))
            })
            .map(|z| z.name.as_str())
    }

    /// The one-way latency of the link between hosts `a` and `b` before any fault.
    pub fn link_latency(&self, a: &str, b: &str) -> MillisRange {
        match (self.zone_of(a), self.zone_of(b)) {
            (Some(x), Some(y)) if x != y => self.cross_zone_latency_ms,
            _ => self.latency_ms,
        }
    }
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            latency_ms: MillisRange {
                min_ms: 1,
                max_ms: 5,
            },
            loss: 0.0,
            repair: 1.0,
            zones: Vec::new(),
            // Between availability zones of one cloud region, about a millisecond each way.
            cross_zone_latency_ms: MillisRange {
                min_ms: 1,
                max_ms: 2,
            },
        }
    }
}

/// The range, in µs, from which a seed draws a broker's mean sync time when a scenario without
/// `[resources]` does not set `disk.fsync_us`: about a local NVMe disk's fsync to a network
/// volume's under load.
pub const FSYNC_US_DRAWN: (u64, u64) = (100, 20_000);

/// A broker's mean sync time without a resource model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FsyncMean {
    /// The scenario's `disk.fsync_us`.
    Fixed(Duration),
    /// Drawn per broker from the seed, log-uniformly in `[min, max]`.
    Drawn { min: Duration, max: Duration },
}

/// turmoil's unstable-fs fault model; every fault is off by default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskSpec {
    /// Bytes per block for torn writes: on a crash, each unsynced write survives as a random
    /// prefix of whole blocks. 0 = writes are atomic.
    pub block_size: u64,
    /// Probability that a read or write fails with EIO.
    pub io_error_probability: f64,
    /// Probability that a read silently returns corrupted bytes.
    pub corruption_probability: f64,
    /// Disk size per broker; writes beyond it fail with ENOSPC. 0 = unlimited.
    pub capacity_bytes: u64,
    /// Probability that a write becomes durable without an fsync.
    pub sync_probability: f64,
    /// The operating system writes dirty pages back this often even when the application never
    /// calls fsync. Linux wakes its flusher every 5 s and writes pages dirty for over 30 s; the
    /// default of 1 s keeps turmoil's pending-write model fast (its cost grows with the square
    /// of unsynced writes) and narrows the window in which an unsynced write can be lost.
    /// 0 = never.
    pub os_writeback_ms: u64,
    /// Without `[resources]`, each broker's mean sync time: each sync draws uniformly from
    /// `[fsync_us / 2, 3 * fsync_us / 2]` with the run's seed, and its bytes become durable only
    /// when it completes, so a crash can always land inside a sync. Absent, the seed draws each
    /// broker's mean log-uniformly from [`FSYNC_US_DRAWN`] (a local NVMe disk to a congested
    /// network volume), so exploring seeds explores disks slower than the network round trip,
    /// where an acknowledgement sent before the sync completes can be lost. 0 makes a sync
    /// durable the moment it is issued. With `[resources]`, `resources.disk_fsync_us` and the
    /// writeback queue decide instead.
    pub fsync_us: Option<u64>,
}

impl Default for DiskSpec {
    fn default() -> Self {
        DiskSpec {
            block_size: 0,
            io_error_probability: 0.0,
            corruption_probability: 0.0,
            capacity_bytes: 0,
            sync_probability: 0.0,
            os_writeback_ms: 1_000,
            fsync_us: None,
        }
    }
}

impl DiskSpec {
    /// The torn-write block size, if torn writes are on.
    pub fn torn_write_block_size(&self) -> Option<u64> {
        (self.block_size > 0).then_some(self.block_size)
    }

    /// The mean sync time without `[resources]` (see [`DiskSpec::fsync_us`]).
    pub fn unmetered_fsync(&self) -> FsyncMean {
        match self.fsync_us {
            Some(us) => FsyncMean::Fixed(Duration::from_micros(us)),
            None => FsyncMean::Drawn {
                min: Duration::from_micros(FSYNC_US_DRAWN.0),
                max: Duration::from_micros(FSYNC_US_DRAWN.1),
            },
        }
    }

    /// The disk capacity, if limited.
    pub fn capacity(&self) -> Option<u64> {
        (self.capacity_bytes > 0).then_some(self.capacity_bytes)
    }
}

/// Which broker a fault hits; resolved by the simulator when the fault fires.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub enum Target {
    /// `"broker-2"`.
    Broker(NodeId),
    /// `"leader:orders/0"`: whichever broker leads the partition at fault time.
    LeaderOf { topic: String, partition: u32 },
    /// `"random"`: a broker drawn from the run's seed.
    Random,
    /// `"coordinator:g1"`: whichever broker leads the group's offsets partition at fault time,
    /// the group's coordinator.
    CoordinatorOf { group: String },
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        if s == "random" {
            return Ok(Target::Random);
        }
        if let Some(id) = s.strip_prefix("broker-") {
            return id
                .parse()
                .map(Target::Broker)
                .map_err(|_| format!(r#"expected a broker such as "broker-1", got "{s}""#));
        }
        if let Some(rest) = s.strip_prefix("leader:") {
            let parsed = rest
                .rsplit_once('/')
                .and_then(|(topic, p)| Some((topic, p.parse::<u32>().ok()?)))
                .filter(|(topic, _)| !topic.is_empty());
            return parsed
                .map(|(topic, partition)| Target::LeaderOf {
                    topic: topic.to_string(),
                    partition,
                })
                .ok_or_else(|| {
                    format!(r#"expected "leader:<topic>/<partition>" such as "leader:orders/0", got "{s}""#)
                });
        }
        if let Some(group) = s.strip_prefix("coordinator:").filter(|g| !g.is_empty()) {
            return Ok(Target::CoordinatorOf {
                group: group.to_string(),
            });
        }
        Err(format!(
            r#"expected "broker-<id>", "leader:<topic>/<partition>", "coordinator:<group>" or "random", got "{s}""#
        ))
    }
}

impl TryFrom<String> for Target {
    type Error = String;

    fn try_from(s: String) -> Result<Target, String> {
        s.parse()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Broker(id) => write!(f, "{}", broker_host(*id)),
            Target::LeaderOf { topic, partition } => write!(f, "leader:{topic}/{partition}"),
            Target::Random => f.write_str("random"),
            Target::CoordinatorOf { group } => write!(f, "coordinator:{group}"),
        }
    }
}

/// One entry of a host set in a network fault (`groups`, `between`, `from`, `to`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub enum Member {
    /// A broker target, resolved at fault time.
    Broker(Target),
    /// A client process by host name, such as `"p-0"` or `"c-1-r1"`.
    Client(String),
    /// `"brokers"`: every broker. In `partition` groups: every broker not named in another group.
    AllBrokers,
    /// `"clients"`: every client process. In `partition` groups: every client not named in
    /// another group.
    AllClients,
}

impl FromStr for Member {
    type Err = String;

    fn from_str(s: &str) -> Result<Member, String> {
        match s {
            "brokers" => Ok(Member::AllBrokers),
            "clients" => Ok(Member::AllClients),
            _ if s == "random" || s.starts_with("broker-") || s.starts_with("leader:") => {
                s.parse().map(Member::Broker)
            }
            _ if is_valid_process_name(s) => Ok(Member::Client(s.to_string())),
            _ => Err(format!(
                r#"expected "broker-<id>", "leader:<topic>/<partition>", "random", "brokers", "clients" or a client process name, got "{s}""#
            )),
        }
    }
}

impl TryFrom<String> for Member {
    type Error = String;

    fn try_from(s: String) -> Result<Member, String> {
        s.parse()
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::Broker(target) => target.fmt(f),
            Member::Client(name) => f.write_str(name),
            Member::AllBrokers => f.write_str("brokers"),
            Member::AllClients => f.write_str("clients"),
        }
    }
}

/// Host names double as turmoil host names and appear in reports: keep them plain.
fn is_valid_process_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// One entry of the fault schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// When the fault starts, in simulated seconds from the start of the run.
    pub at_s: f64,
    /// When it is undone (the broker restarts, the links heal, held messages are released, the
    /// loss or latency is restored), as an absolute time. It comes from `restart_after_s`,
    /// `heal_after_s` or `release_after_s` (relative to `at_s`) or from `until_s`. `None`: the
    /// fault lasts until the settle phase heals everything.
    pub until_s: Option<f64>,
    pub kind: FaultKind,
}

impl Fault {
    pub fn at(&self) -> Duration {
        Duration::from_secs_f64(self.at_s)
    }

    pub fn until(&self) -> Option<Duration> {
        self.until_s.map(Duration::from_secs_f64)
    }
}

/// The membership faults of one `[[consumers]]` table, per instance (see
/// [`Scenario::membership_plan`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MembershipPlan {
    /// Start times of the instances `join` adds, numbered on from `instances`.
    pub joins: Vec<Duration>,
    /// Each instance's actions, in time order.
    pub actions: BTreeMap<u32, Vec<(Duration, MemberAction)>>,
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// `kind = "crash"`: crash one broker (unsynced writes are lost; torn if `disk.block_size`).
    Crash { target: Target },
    /// `kind = "power_loss"`: crash every broker at once.
    PowerLoss,
    /// `kind = "partition"`: cut every link between hosts of different groups, both ways.
    Partition { groups: Vec<Vec<Member>> },
    /// `kind = "partition_oneway"`: drop messages from hosts in `from` to hosts in `to`.
    PartitionOneway { from: Vec<Member>, to: Vec<Member> },
    /// `kind = "hold"`: hold (delay, not lose) messages between the two sets until release.
    Hold { between: [Vec<Member>; 2] },
    /// `kind = "loss"`: set the link fail rate between the two sets.
    Loss {
        between: [Vec<Member>; 2],
        rate: f64,
    },
    /// `kind = "latency"`: set the link latency between the two sets.
    Latency {
        between: [Vec<Member>; 2],
        latency_ms: MillisRange,
    },
    /// `kind = "heal"`: undo every network fault and restart every crashed broker.
    Heal,
    /// `kind = "join"`: one more instance of the group consumer `consumer` starts (issue 8).
    Join { consumer: String },
    /// `kind = "leave"`: the consumer instance `process` shuts down cleanly (commits what it
    /// processed, leaves the group) and does not come back.
    Leave { process: String },
    /// `kind = "consumer_crash"`: the instance `process` dies without leaving (its session must
    /// expire); with `restart_after_s`, a new process of it starts then.
    ConsumerCrash { process: String },
    /// `kind = "pause"`: the instance `process` stops for `pause_s` (a GC stall or a stuck
    /// handler): no heartbeat, no processing; it comes back a zombie if it outlived its session.
    Pause { process: String, pause_s: f64 },
    /// `kind = "rolling_restart"`: every instance of `consumer` restarts cleanly in turn,
    /// `gap_s` apart, the first at `at_s`.
    RollingRestart { consumer: String, gap_s: f64 },
    /// `kind = "clock"`: the broker's clock runs at `clock_rate` times true speed (timeouts,
    /// leases and timestamps with it) until `until_s`, and first leaps forward `jump_s`.
    Clock {
        target: Target,
        clock_rate: f64,
        jump_s: f64,
    },
    /// `kind = "disk_full"`: the broker's disk has no free space until `until_s` (another tenant
    /// filled it): every append fails with ENOSPC, the broker stops on it and its supervisor
    /// restarts it (see `StorageSupervisor`), and it stops again until the space is back.
    DiskFull { target: Target },
    /// `kind = "disk_eio"`: until `until_s`, each operation on the broker's disk (a load,
    /// append, sync, truncation or removal) fails with EIO with probability `rate` (a failing
    /// controller or a flaky cable); the broker stops on it and is restarted, as for any
    /// storage failure. The run-long model is `disk.io_error_probability`.
    DiskEio { target: Target, rate: f64 },
}

impl FaultKind {
    /// The `kind` of the file.
    pub fn tag(&self) -> FaultTag {
        match self {
            FaultKind::Crash { .. } => FaultTag::Crash,
            FaultKind::PowerLoss => FaultTag::PowerLoss,
            FaultKind::Partition { .. } => FaultTag::Partition,
            FaultKind::PartitionOneway { .. } => FaultTag::PartitionOneway,
            FaultKind::Hold { .. } => FaultTag::Hold,
            FaultKind::Loss { .. } => FaultTag::Loss,
            FaultKind::Latency { .. } => FaultTag::Latency,
            FaultKind::Heal => FaultTag::Heal,
            FaultKind::Join { .. } => FaultTag::Join,
            FaultKind::Leave { .. } => FaultTag::Leave,
            FaultKind::ConsumerCrash { .. } => FaultTag::ConsumerCrash,
            FaultKind::Pause { .. } => FaultTag::Pause,
            FaultKind::RollingRestart { .. } => FaultTag::RollingRestart,
            FaultKind::Clock { .. } => FaultTag::Clock,
            FaultKind::DiskFull { .. } => FaultTag::DiskFull,
            FaultKind::DiskEio { .. } => FaultTag::DiskEio,
        }
    }
}

/// The `kind` of a `[[faults]]` table, without its fields: what serde reads, what validation
/// dispatches on and what the fault log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTag {
    Crash,
    PowerLoss,
    Partition,
    PartitionOneway,
    Hold,
    Loss,
    Latency,
    Heal,
    Join,
    Leave,
    ConsumerCrash,
    Pause,
    RollingRestart,
    Clock,
    DiskFull,
    DiskEio,
}

impl FaultTag {
    /// Every kind, in declaration order.
    pub const ALL: [FaultTag; 16] = [
        FaultTag::Crash,
        FaultTag::PowerLoss,
        FaultTag::Partition,
        FaultTag::PartitionOneway,
        FaultTag::Hold,
        FaultTag::Loss,
        FaultTag::Latency,
        FaultTag::Heal,
        FaultTag::Join,
        FaultTag::Leave,
        FaultTag::ConsumerCrash,
        FaultTag::Pause,
        FaultTag::RollingRestart,
        FaultTag::Clock,
        FaultTag::DiskFull,
        FaultTag::DiskEio,
    ];

    /// A membership fault of a consumer group (issue 8), applied by the consumer process.
    pub const fn is_membership(self) -> bool {
        matches!(
            self,
            FaultTag::Join
                | FaultTag::Leave
                | FaultTag::ConsumerCrash
                | FaultTag::Pause
                | FaultTag::RollingRestart
        )
    }

    /// The `kind` string of the file (serde's `snake_case` spelling of the variant).
    pub const fn name(self) -> &'static str {
        match self {
            FaultTag::Crash => "crash",
            FaultTag::PowerLoss => "power_loss",
            FaultTag::Partition => "partition",
            FaultTag::PartitionOneway => "partition_oneway",
            FaultTag::Hold => "hold",
            FaultTag::Loss => "loss",
            FaultTag::Latency => "latency",
            FaultTag::Heal => "heal",
            FaultTag::Join => "join",
            FaultTag::Leave => "leave",
            FaultTag::ConsumerCrash => "consumer_crash",
            FaultTag::Pause => "pause",
            FaultTag::RollingRestart => "rolling_restart",
            FaultTag::Clock => "clock",
            FaultTag::DiskFull => "disk_full",
            FaultTag::DiskEio => "disk_eio",
        }
    }

    /// The optional fields this kind takes, besides `at_s` and `kind`.
    pub const fn fields(self) -> &'static [&'static str] {
        match self {
            FaultTag::Crash => &["target", "restart_after_s"],
            FaultTag::PowerLoss => &["restart_after_s"],
            FaultTag::Partition => &["groups", "heal_after_s"],
            FaultTag::PartitionOneway => &["from", "to", "heal_after_s"],
            FaultTag::Hold => &["between", "release_after_s"],
            FaultTag::Loss => &["between", "rate", "until_s"],
            FaultTag::Latency => &["between", "latency_ms", "until_s"],
            FaultTag::Heal => &[],
            FaultTag::Join => &["consumer"],
            FaultTag::Leave => &["process"],
            FaultTag::ConsumerCrash => &["process", "restart_after_s"],
            FaultTag::Pause => &["process", "pause_s"],
            FaultTag::RollingRestart => &["consumer", "gap_s"],
            FaultTag::Clock => &["target", "clock_rate", "jump_s", "until_s"],
            FaultTag::DiskFull => &["target", "until_s"],
            FaultTag::DiskEio => &["target", "rate", "until_s"],
        }
    }
}

impl fmt::Display for FaultTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Bounds a run must stay within: upper bounds on anomaly counts and lower bounds on progress,
/// so that a run which does nothing fails. An absent bound is not checked.
///
/// In the file, the anomaly bounds are keys named after the classes (`lost = 0`), beside
/// `unknown_in_log` (an upper bound on sends that ended unknown although their record was read),
/// `acked_min`, `read_min`, `push_overflows_min` (claim C1: a slow consumer of unbounded
/// push must be flooded), `rejected_min` (share groups: poison messages must be rejected) and
/// `out_of_order_per_key` (`key_shared` groups: an upper bound on first deliveries behind a
/// later one of their ordering key); any other key is an error that names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// At most this many of each bounded anomaly class.
    pub anomalies: BTreeMap<Anomaly, u64>,
    /// At most this many sends ended unknown although their record was read.
    pub unknown_in_log: Option<u64>,
    /// At least this many sends acknowledged.
    pub acked_min: Option<u64>,
    /// At least this many distinct messages read.
    pub read_min: Option<u64>,
    /// At least this many push subscriptions dropped on a receive-buffer overflow.
    pub push_overflows_min: Option<u64>,
    /// At least this many records rejected by share groups (archived: poison messages).
    pub rejected_min: Option<u64>,
    /// At most this many first deliveries per ordering key out of order, over the `key_shared`
    /// groups (see [`fathom_history::shares::ShareStats::out_of_order_per_key`]): the order they
    /// promise. A plain share group's count is a cost it reports, not judged here.
    pub out_of_order_per_key: Option<u64>,
    /// The groups of the scenario's `key_shared` consumers, which `out_of_order_per_key`
    /// judges; not in the file: the loader fills it from `[[consumers]]`.
    pub key_shared_groups: BTreeSet<String>,
}

impl Expect {
    /// The upper bound on anomaly class `class`, if any.
    pub fn bound(&self, class: Anomaly) -> Option<u64> {
        self.anomalies.get(&class).copied()
    }

    /// The bounded anomaly classes with their bounds, in [`Anomaly::ALL`] order.
    pub fn bounds(&self) -> Vec<(Anomaly, u64)> {
        self.anomalies.iter().map(|(&a, &b)| (a, b)).collect()
    }

    /// Violations of these bounds by a checked history; empty means the run passes them.
    pub fn violations(&self, report: &CheckReport) -> Vec<Violation> {
        let mut out = Vec::new();
        for (class, bound) in self.bounds() {
            // A bound on a group or share class needs that consumption to judge: never a
            // silent zero.
            if !report.anomalies.is_judged(class) {
                out.push(Violation::Unjudged { class });
                continue;
            }
            let count = report.anomalies[class];
            if count > bound {
                out.push(Violation::Anomaly {
                    class,
                    count,
                    bound,
                });
            }
        }
        let count = report.unknown_in_log;
        if let Some(bound) = self.unknown_in_log.filter(|&b| count > b) {
            out.push(Violation::UnknownInLog { count, bound });
        }
        if let Some(min) = self.acked_min.filter(|&m| report.acked < m) {
            out.push(Violation::AckedMin {
                acked: report.acked,
                min,
            });
        }
        if let Some(min) = self.read_min.filter(|&m| report.read < m) {
            out.push(Violation::ReadMin {
                read: report.read,
                min,
            });
        }
        let rejected = report.shares.values().map(|g| g.rejected).sum();
        if let Some(min) = self.rejected_min.filter(|&m| rejected < m) {
            out.push(Violation::RejectedMin { rejected, min });
        }
        // The loader refuses this bound in a scenario without a key_shared group (see
        // validate.rs), so a zero here was measured.
        if let Some(bound) = self.out_of_order_per_key {
            let count = report
                .shares
                .iter()
                .filter(|(group, _)| self.key_shared_groups.contains(*group))
                .map(|(_, g)| g.out_of_order_per_key)
                .sum();
            if count > bound {
                out.push(Violation::OutOfOrderPerKey { count, bound });
            }
        }
        out
    }

    /// Violations of the delivery bounds by a run's delivery metrics.
    pub fn delivery_violations(&self, delivery: &DeliveryMetrics) -> Vec<Violation> {
        let overflows = delivery.push_overflows;
        self.push_overflows_min
            .filter(|&min| overflows < min)
            .map(|min| Violation::PushOverflowsMin { overflows, min })
            .into_iter()
            .collect()
    }
}

/// The keys of an `[expect]` table: one per anomaly class, then the fate and progress bounds.
const EXPECT_FIELDS: [&str; Anomaly::ALL.len() + 6] = {
    let mut fields = [""; Anomaly::ALL.len() + 6];
    let mut i = 0;
    while i < Anomaly::ALL.len() {
        fields[i] = Anomaly::ALL[i].name();
        i += 1;
    }
    fields[i] = "unknown_in_log";
    fields[i + 1] = "acked_min";
    fields[i + 2] = "read_min";
    fields[i + 3] = "push_overflows_min";
    fields[i + 4] = "rejected_min";
    fields[i + 5] = "out_of_order_per_key";
    fields
};

/// One key of an `[expect]` table. An unknown key fails while the key itself is read, so the
/// error points at the key.
enum ExpectKey {
    Anomaly(Anomaly),
    UnknownInLog,
    AckedMin,
    ReadMin,
    PushOverflowsMin,
    RejectedMin,
    OutOfOrderPerKey,
}

impl<'de> Deserialize<'de> for ExpectKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ExpectKey, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = ExpectKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an anomaly class, unknown_in_log, acked_min, read_min, push_overflows_min, \
                     rejected_min or out_of_order_per_key",
                )
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<ExpectKey, E> {
                match key {
                    "unknown_in_log" => Ok(ExpectKey::UnknownInLog),
                    "acked_min" => Ok(ExpectKey::AckedMin),
                    "read_min" => Ok(ExpectKey::ReadMin),
                    "push_overflows_min" => Ok(ExpectKey::PushOverflowsMin),
                    "rejected_min" => Ok(ExpectKey::RejectedMin),
                    "out_of_order_per_key" => Ok(ExpectKey::OutOfOrderPerKey),
                    _ => Anomaly::from_name(key)
                        .map(ExpectKey::Anomaly)
                        .ok_or_else(|| E::unknown_field(key, &EXPECT_FIELDS)),
                }
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Expect, D::Error> {
        struct ExpectVisitor;
        impl<'de> Visitor<'de> for ExpectVisitor {
            type Value = Expect;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an [expect] table")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Expect, A::Error> {
                let mut expect = Expect::default();
                while let Some(key) = map.next_key::<ExpectKey>()? {
                    let value: u64 = map.next_value()?;
                    let (slot, name) = match key {
                        ExpectKey::Anomaly(class) => {
                            (expect.anomalies.insert(class, value), class.name())
                        }
                        ExpectKey::UnknownInLog => {
                            (expect.unknown_in_log.replace(value), "unknown_in_log")
                        }
                        ExpectKey::AckedMin => (expect.acked_min.replace(value), "acked_min"),
                        ExpectKey::ReadMin => (expect.read_min.replace(value), "read_min"),
                        ExpectKey::PushOverflowsMin => (
                            expect.push_overflows_min.replace(value),
                            "push_overflows_min",
                        ),
                        ExpectKey::RejectedMin => {
                            (expect.rejected_min.replace(value), "rejected_min")
                        }
                        ExpectKey::OutOfOrderPerKey => (
                            expect.out_of_order_per_key.replace(value),
                            "out_of_order_per_key",
                        ),
                    };
                    if slot.is_some() {
                        return Err(de::Error::duplicate_field(name));
                    }
                }
                Ok(expect)
            }
        }
        deserializer.deserialize_map(ExpectVisitor)
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Bad TOML, a bad field, or a semantic problem; displayed as
    /// `scenarios/bad.toml:12:9: producers[0].acks: expected one of "0", "1", "all", got "2"`.
    #[error("{source_name}:{line}:{column}: {}{message}", field_prefix(field))]
    Invalid {
        source_name: String,
        /// 1-based.
        line: usize,
        /// 1-based, in characters.
        column: usize,
        /// Dotted path such as `producers[0].acks`; empty when no field can be named.
        field: String,
        message: String,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

impl Scenario {
    /// Parses and validates a scenario; `source_name` (usually the file path) prefixes errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Scenario, ScenarioError> {
        validate::parse(text, source_name)
    }

    /// Reads, parses and validates the scenario file at `path`.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::from_toml_str(&text, &path.display().to_string())
    }

    /// The cluster as the brokers and clients see it: brokers `1..=n` at `broker-{id}:9092`.
    pub fn cluster_config(&self) -> ClusterConfig {
        self.cluster.to_config()
    }

    /// Host names of the brokers, `broker-1` first.
    pub fn broker_hosts(&self) -> Vec<String> {
        (1..=self.cluster.brokers).map(broker_host).collect()
    }

    /// Host names of every client process the run starts, producers first.
    pub fn client_processes(&self) -> Vec<String> {
        let producers = self.producers.iter().flat_map(ProducerSpec::process_names);
        let consumers = self.consumers.iter().flat_map(ConsumerSpec::process_names);
        producers.chain(consumers).collect()
    }

    /// What the membership faults do to the instances of `consumers[index]`: when each extra
    /// instance (a `join`) starts, and each instance's actions in time order. Rolling restarts
    /// restart instance `i` at `at_s + i * gap_s`.
    pub fn membership_plan(&self, index: usize) -> MembershipPlan {
        let mut plan = MembershipPlan::default();
        let Some(spec) = self.consumers.get(index) else {
            return plan;
        };
        let instance_of = |process: &str| {
            let (base, i) = process.rsplit_once('-')?;
            (base == spec.name).then(|| i.parse::<u32>().ok())?
        };
        for f in &self.faults {
            let at = f.at();
            let mut act = |i: u32, at: Duration, a: MemberAction| {
                plan.actions.entry(i).or_default().push((at, a));
            };
            match &f.kind {
                FaultKind::Join { consumer } if *consumer == spec.name => plan.joins.push(at),
                FaultKind::Leave { process } => {
                    if let Some(i) = instance_of(process) {
                        act(i, at, MemberAction::Leave);
                    }
                }
                FaultKind::ConsumerCrash { process } => {
                    if let Some(i) = instance_of(process) {
                        let restart_after = f.until().map(|u| u.saturating_sub(at));
                        act(i, at, MemberAction::Crash { restart_after });
                    }
                }
                FaultKind::Pause { process, pause_s } => {
                    if let Some(i) = instance_of(process) {
                        act(
                            i,
                            at,
                            MemberAction::Pause(Duration::from_secs_f64(*pause_s)),
                        );
                    }
                }
                FaultKind::RollingRestart { consumer, gap_s } if *consumer == spec.name => {
                    for i in 0..spec.instances.get() {
                        let step = Duration::from_secs_f64(gap_s * f64::from(i));
                        act(i, at + step, MemberAction::Restart);
                    }
                }
                _ => {}
            }
        }
        for actions in plan.actions.values_mut() {
            actions.sort_by_key(|(at, _)| *at);
        }
        plan
    }

    /// Partition count of a declared topic.
    pub fn topic_partitions(&self, topic: &str) -> Option<u32> {
        self.cluster
            .topics
            .iter()
            .find(|t| t.name == topic)
            .map(|t| t.partitions)
    }

    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.cluster.log.fsync
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s)
    }

    pub fn settle(&self) -> Duration {
        Duration::from_secs_f64(self.settle_s)
    }

    pub fn liveness(&self) -> Duration {
        Duration::from_secs_f64(self.liveness_s)
    }

    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }
}
