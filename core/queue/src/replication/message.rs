//! Messages between the replicas of one partition.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::{NodeId, TopicPartition};

/// A replication message with its routing: which partition's group, from whom, to whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaftEnvelope {
    pub partition: TopicPartition,
    pub from: NodeId,
    pub to: NodeId,
    pub msg: RaftMessage,
}

/// Log positions are end offsets: "the log up to offset `end`", which always falls on a batch
/// boundary. `(end, epoch)` names the last batch of a prefix, as (index, term) does in Raft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RaftMessage {
    /// A (pre-)vote request. A pre-vote asks "would you vote for me at `term`?" without anyone
    /// changing term, so a replica cut off from the group cannot disrupt it on its return.
    Vote {
        term: u64,
        pre_vote: bool,
        last_end: u64,
        last_epoch: u64,
    },
    VoteResponse {
        term: u64,
        pre_vote: bool,
        granted: bool,
    },
    /// Batches that follow the prefix `(prev_end, prev_epoch)`; empty as a heartbeat.
    Append {
        term: u64,
        prev_end: u64,
        prev_epoch: u64,
        batches: Vec<Bytes>,
        /// The leader's high watermark.
        commit: u64,
    },
    AppendResponse {
        term: u64,
        success: bool,
        /// On success, the follower's log end, which matches the leader's log up to there. On
        /// failure, a batch boundary at or below which the leader should try again.
        end: u64,
        /// How much of the log counts toward the commit quorum: the fsynced end under the
        /// `every_batch` policy, the written end otherwise.
        quorum_end: u64,
        /// Sent because an fsync finished, not in answer to an append: it frees no slot in
        /// the leader's in-flight window.
        after_sync: bool,
    },
}

impl RaftMessage {
    pub fn term(&self) -> u64 {
        match *self {
            RaftMessage::Vote { term, .. }
            | RaftMessage::VoteResponse { term, .. }
            | RaftMessage::Append { term, .. }
            | RaftMessage::AppendResponse { term, .. } => term,
        }
    }
}
