//! Cluster configuration shared by every broker and client: who the brokers are, which topics
//! exist, and the tunables of the log and of replication.
//!
//! The same struct is read from a scenario file by the simulator and from a config file by the
//! production build, so both homes run one cluster definition.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{NodeId, TopicPartition, OFFSETS_TOPIC};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub brokers: Vec<BrokerAddr>,
    #[serde(default)]
    pub topics: Vec<TopicConfig>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub replication: ReplicationConfig,
    #[serde(default)]
    pub share: ShareConfig,
    /// Partitions of the internal offsets topic.
    #[serde(default = "default_offsets_partitions")]
    pub offsets_partitions: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerAddr {
    pub id: NodeId,
    /// `host:port`; a turmoil host name under simulation, an IP address in production.
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
}

/// When the log calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// fsync after every appended batch, before the batch counts toward the commit quorum
    /// (Redpanda's default). Acknowledged `acks=all` writes survive any minority of crashes and
    /// the power loss of all brokers.
    EveryBatch,
    /// fsync in the background every `fsync_interval_ms`; a write counts toward the quorum once
    /// it is in the page cache (Kafka's default model: durability by replication).
    Interval,
    /// Never fsync; the operating system writes back whenever it likes.
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub fsync: FsyncPolicy,
    pub fsync_interval_ms: u64,
    /// A segment rolls over once it holds this many bytes.
    pub segment_bytes_max: u64,
    /// One offset index entry per this many bytes of log. A lookup scans up to this many
    /// bytes of batch headers; the index costs 12 bytes per entry, kept in memory.
    pub index_interval_bytes: u64,
    /// Largest record batch the broker accepts.
    pub batch_bytes_max: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            fsync: FsyncPolicy::EveryBatch,
            fsync_interval_ms: 100,
            segment_bytes_max: 1 << 20,
            // A quarter of Kafka's 4096: its default assumes batches of kilobytes, and a
            // batch of one small record (a sync producer's) is about a hundred bytes, so a
            // lookup scanned some forty headers.
            index_interval_bytes: 1024,
            batch_bytes_max: 1 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// A follower that hears nothing from a leader for a random time in this range starts a
    /// (pre-)election.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// Bytes of batches in one append message to a follower.
    pub append_bytes_max: u32,
    /// Append messages in flight to one follower.
    pub append_in_flight_max: u32,
    /// A replica asks whether it could win (pre-vote, §9.6) before it raises its term and
    /// campaigns. Off, a replica that times out campaigns at once, as etcd's and raft-rs's
    /// default and Kafka's KRaft before KIP-996 do: elections stay safe, but a replica cut off
    /// and back disrupts its leader, and candidates split votes more often.
    pub pre_vote: bool,
    /// Simulation only (FoundationDB's BUGGIFY): seeded perturbations where real timing
    /// varies, so that rare schedules come up in every run rather than once in a thousand:
    /// some election timeouts land at an extreme of their range, some appends carry a single
    /// batch, and some long-poll fetches are answered only at their deadline although records
    /// wait. Every draw comes from the replica's or the broker's own generator. The production
    /// build refuses a configuration that sets it.
    pub buggify: bool,
}

/// How often a BUGGIFY point fires when [`ReplicationConfig::buggify`] is on.
pub const BUGGIFY_PROBABILITY: f64 = 0.25;

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            heartbeat_interval_ms: 50,
            append_bytes_max: 256 * 1024,
            append_in_flight_max: 8,
            pre_vote: true,
            buggify: false,
        }
    }
}

/// What a new share-partition leader does with records an earlier leader handed out
/// (issue 9's failover question; see [`crate::share`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareFailover {
    /// The acquisitions are in the log, so the new leader keeps them: each record stays with
    /// its member until its lock, restarted at the rebuild, runs out. A member that survives
    /// the failover still acknowledges what it holds; one that does not strands its records
    /// for a whole lock.
    #[default]
    KeepLocks,
    /// KIP-932's behaviour (its share-group state persists acknowledgements and delivery
    /// counts, not acquisitions): records acquired in an earlier leader's term are available
    /// again at once, the attempt of that acquisition not counted (a delivery KIP-932's new
    /// leader never learns of). Nothing waits for a lock, but a member still working on such a
    /// record has its acknowledgement refused and the record is delivered again.
    Release,
}

impl ShareFailover {
    /// The name scenario and config files use.
    pub const fn name(self) -> &'static str {
        match self {
            ShareFailover::KeepLocks => "keep_locks",
            ShareFailover::Release => "release",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShareConfig {
    pub failover: ShareFailover,
}

fn default_offsets_partitions() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the cluster has no brokers")]
    NoBrokers,
    #[error("broker id {0} appears twice")]
    DuplicateBroker(NodeId),
    #[error("topic `{0}` is declared twice")]
    DuplicateTopic(String),
    #[error("topic `{topic}`: {reason}")]
    BadTopic { topic: String, reason: String },
    #[error("replication: {0}")]
    BadReplication(String),
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.is_empty() {
            return Err(ConfigError::NoBrokers);
        }
        let mut ids = std::collections::BTreeSet::new();
        for b in &self.brokers {
            if !ids.insert(b.id) {
                return Err(ConfigError::DuplicateBroker(b.id));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for t in &self.topics {
            let bad = |reason: &str| ConfigError::BadTopic {
                topic: t.name.clone(),
                reason: reason.to_string(),
            };
            if !names.insert(t.name.as_str()) {
                return Err(ConfigError::DuplicateTopic(t.name.clone()));
            }
            if t.name.is_empty() || t.name.starts_with("__") {
                return Err(bad("names must be non-empty and not start with `__`"));
            }
            if t.partitions == 0 {
                return Err(bad("partitions must be at least 1"));
            }
            if t.replication_factor == 0 || t.replication_factor as usize > self.brokers.len() {
                return Err(bad(&format!(
                    "replication_factor must be between 1 and the number of brokers ({})",
                    self.brokers.len()
                )));
            }
        }
        let r = &self.replication;
        if r.election_timeout_min_ms == 0 || r.election_timeout_max_ms < r.election_timeout_min_ms {
            return Err(ConfigError::BadReplication(
                "need 0 < election_timeout_min_ms <= election_timeout_max_ms".into(),
            ));
        }
        if r.heartbeat_interval_ms == 0 || r.heartbeat_interval_ms >= r.election_timeout_min_ms {
            return Err(ConfigError::BadReplication(
                "heartbeat_interval_ms must be above 0 and below election_timeout_min_ms".into(),
            ));
        }
        if self.offsets_partitions == 0 {
            return Err(ConfigError::BadReplication(
                "offsets_partitions must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub fn broker_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.brokers.iter().map(|b| b.id).collect();
        ids.sort_unstable();
        ids
    }

    pub fn addr_of(&self, id: NodeId) -> Option<&str> {
        self.brokers
            .iter()
            .find(|b| b.id == id)
            .map(|b| b.addr.as_str())
    }

    /// Every partition with its replica set, in a fixed order, including the offsets topic.
    ///
    /// Placement is round-robin as Kafka's default assignor does without racks: the replicas of
    /// partition `p` of the `t`-th topic start at broker index `(t + p) mod n` and take the next
    /// `replication_factor` brokers, so leaders and replicas spread evenly.
    pub fn placement(&self) -> BTreeMap<TopicPartition, Vec<NodeId>> {
        let ids = self.broker_ids();
        let n = ids.len();
        let mut out = BTreeMap::new();
        let offsets = TopicConfig {
            name: OFFSETS_TOPIC.to_string(),
            partitions: self.offsets_partitions,
            replication_factor: (n as u32).min(3),
        };
        for (t, topic) in std::iter::once(&offsets).chain(&self.topics).enumerate() {
            for p in 0..topic.partitions {
                let start = (t + p as usize) % n;
                let replicas = (0..topic.replication_factor as usize)
                    .map(|k| ids[(start + k) % n])
                    .collect();
                out.insert(TopicPartition::new(topic.name.clone(), p), replicas);
            }
        }
        out
    }

    pub fn election_timeout_range(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.replication.election_timeout_min_ms),
            Duration::from_millis(self.replication.election_timeout_max_ms),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::cluster_config as cluster;

    #[test]
    fn placement_spreads_replicas_and_is_stable() {
        let c = cluster(
            3,
            vec![TopicConfig {
                name: "t".into(),
                partitions: 3,
                replication_factor: 2,
            }],
        );
        c.validate().unwrap();
        let p = c.placement();
        assert_eq!(p.len(), 4);
        let firsts: Vec<NodeId> = (0..3).map(|i| p[&TopicPartition::new("t", i)][0]).collect();
        assert_eq!(
            firsts,
            vec![2, 3, 1],
            "preferred leaders rotate over brokers"
        );
        for replicas in p.values() {
            let mut r = replicas.clone();
            r.dedup();
            assert_eq!(r.len(), replicas.len(), "no broker holds a partition twice");
        }
        assert_eq!(p, c.placement());
    }

    #[test]
    fn replication_factor_above_broker_count_is_rejected() {
        let c = cluster(
            2,
            vec![TopicConfig {
                name: "t".into(),
                partitions: 1,
                replication_factor: 3,
            }],
        );
        assert!(matches!(c.validate(), Err(ConfigError::BadTopic { .. })));
    }
}
