//! Group requests and their answers, as they travel inside the protocol's `Request` and
//! `Response` (one variant each there, so the group protocol grows here).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::assignor::{Assignment, MemberId};
use super::classic::{JoinOk, JoinRequest};
use super::consumer::{Heartbeat, HeartbeatOk};
use super::GroupError;
use crate::ids::TopicPartition;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRequest {
    /// Classic protocol: join (or rejoin) the group.
    Join(JoinRequest),
    /// Classic protocol: the leader's carries the assignment.
    Sync {
        group: String,
        member_id: MemberId,
        generation: u32,
        assignment: Option<Assignment>,
    },
    /// Classic protocol: keep the session alive, learn of a rebalance.
    Heartbeat {
        group: String,
        member_id: MemberId,
        generation: u32,
    },
    /// Either protocol: leave at once (a clean shutdown of a dynamic member).
    Leave { group: String, member_id: MemberId },
    /// Broker-side protocol (KIP-848).
    ConsumerHeartbeat(Heartbeat),
    /// Client-side periodic rebalance (RocketMQ 4): stay registered, learn who else is.
    Register {
        group: String,
        member_id: MemberId,
        session_timeout_ms: u32,
    },
}

impl GroupRequest {
    pub fn group(&self) -> &str {
        match self {
            GroupRequest::Join(j) => &j.group,
            GroupRequest::ConsumerHeartbeat(h) => &h.group,
            GroupRequest::Sync { group, .. }
            | GroupRequest::Heartbeat { group, .. }
            | GroupRequest::Leave { group, .. }
            | GroupRequest::Register { group, .. } => group,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupResponse {
    Join(Result<JoinOk, GroupError>),
    Sync(Result<BTreeSet<TopicPartition>, GroupError>),
    Heartbeat(Result<(), GroupError>),
    Leave(Result<(), GroupError>),
    ConsumerHeartbeat(Result<HeartbeatOk, GroupError>),
    /// The group's live members, sorted.
    Members(Result<Vec<MemberId>, GroupError>),
}
