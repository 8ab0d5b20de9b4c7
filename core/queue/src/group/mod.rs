//! Consumer groups: membership, generations and who reads which partition.
//!
//! - [`assignor`]: the pure partition assignors (range, round robin, sticky) and KIP-429's
//!   cooperative withholding rule.
//! - [`classic`]: the coordinator of Kafka's classic protocol (join, sync, heartbeat, leave;
//!   eager and cooperative rebalances; static membership), persisting every generation and
//!   assignment to the group's offsets partition before anyone sees it.
//! - [`consumer`]: the coordinator of the broker-side protocol (KIP-848): no join barrier, the
//!   coordinator computes the target assignment and each member reconciles by heartbeat.
//! - [`periodic`]: RocketMQ 4's client-side rebalance (the broker keeps only the member list).
//! - [`coordinator`]: all three behind one front the broker holds per offsets partition it leads.
//! - [`member`]: the consumer's side, for both protocols; [`wire`]: the requests and answers.
//!
//! A group's coordinator is the leader of its offsets partition, where commits live too; its
//! persisted state is a [`classic::GroupSnapshot`] record there, rebuilt by replay like the
//! committed offsets (see [`record`]).

pub mod assignor;
pub mod classic;
pub mod consumer;
pub mod coordinator;
pub mod member;
pub mod periodic;
pub mod record;
pub mod wire;

use serde::{Deserialize, Serialize};

/// Why the coordinator refused a group request; each has its own code on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum GroupError {
    /// This broker does not coordinate the group (it does not lead its offsets partition, or
    /// lost the lead before the request's effect committed).
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    #[error("unknown member (its session ended, or it left)")]
    UnknownMemberId,
    /// A request from an older (or newer) generation than the group's: a zombie's commit.
    #[error("the member's generation is not the group's")]
    IllegalGeneration,
    #[error("the group is rebalancing: rejoin")]
    RebalanceInProgress,
    /// KIP-345: another process has taken this static member's instance id.
    #[error("a newer member holds this instance id")]
    FencedInstanceId,
    #[error("the group has as many members as it may")]
    GroupFull,
    #[error("the coordinator holds as many groups as it may")]
    GroupsFull,
    /// The join names another rebalance protocol or assignor than the group's members use.
    #[error("the join's protocol or assignor differs from the group's")]
    InconsistentProtocol,
    #[error("session timeout outside the coordinator's allowed range")]
    InvalidSessionTimeout,
    /// A commit for a partition that is not the member's in its generation.
    #[error("the partition is not assigned to this member")]
    PartitionNotAssigned,
    /// Empty, longer than [`GROUP_NAME_BYTES_MAX`], or containing a byte the offsets records'
    /// keys reserve (`\0`, or [`record::SNAPSHOT_KEY_PREFIX`] first).
    #[error("invalid group name")]
    InvalidGroupName,
}

impl GroupError {
    /// Worth sending again unchanged, perhaps to another broker: only a coordinator that moved
    /// or a rebalance that ends. The others need the member to rejoin, or are final.
    pub fn is_retriable(&self) -> bool {
        matches!(self, GroupError::NotCoordinator)
    }
}

/// Longest group name a broker accepts (Kafka has none; a name is a key of every commit).
pub const GROUP_NAME_BYTES_MAX: usize = 249;

/// Whether `name` may name a group: see [`GroupError::InvalidGroupName`].
pub fn check_group_name(name: &str) -> Result<(), GroupError> {
    let reserved = name.as_bytes().first() == Some(&record::SNAPSHOT_KEY_PREFIX);
    let ok =
        !name.is_empty() && name.len() <= GROUP_NAME_BYTES_MAX && !reserved && !name.contains('\0');
    ok.then_some(()).ok_or(GroupError::InvalidGroupName)
}

/// The fence for a commit that names no member: allowed only while the group has no members,
/// which is what manual assignment looks like (Kafka's "simple consumer" commits).
pub(crate) fn commit_without_member(group_has_members: bool) -> Result<(), GroupError> {
    match group_has_members {
        true => Err(GroupError::UnknownMemberId),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests;
