//! Names of the things a cluster is made of.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A broker's id, as given in the cluster config.
pub type NodeId = u32;

/// A partition of a topic.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// The partition's directory under a broker's data dir (`orders-0`): its log segments and
    /// replication's hard state live there.
    pub fn dir(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

impl fmt::Debug for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The internal topic that stores committed consumer offsets, replicated like any other.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
