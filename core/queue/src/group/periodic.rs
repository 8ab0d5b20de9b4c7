//! RocketMQ 4's client-side rebalance: the broker only keeps the list of a group's live
//! members; every member fetches it with its heartbeat and, every `rebalance_interval_ms`
//! (RocketMQ's default 20 s), computes its own share with an averaging allocation
//! (`AllocateMessageQueueAveragely`: queues and member ids sorted, a contiguous block each).
//!
//! Nothing coordinates the moment members switch: while their views of the membership differ,
//! a partition can be read by two members or by none. That is the behaviour claim C2 calls the
//! "before", kept here on purpose; commits are not fenced (RocketMQ does not fence them).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::assignor::{Assignor, MemberId, MemberSubscription};
use super::classic::GroupLimits;
use super::GroupError;
use crate::ids::TopicPartition;
use crate::time::Instant;

/// The broker's side: who is alive in each group.
#[derive(Debug, Default)]
pub struct MemberRegistry {
    limits: GroupLimits,
    groups: BTreeMap<String, BTreeMap<MemberId, Instant>>,
}

impl MemberRegistry {
    pub fn new(limits: GroupLimits) -> Self {
        MemberRegistry {
            limits,
            groups: BTreeMap::new(),
        }
    }

    /// A member's heartbeat: it stays alive for `session_timeout_ms`; the answer is the live
    /// membership, sorted.
    pub fn register(
        &mut self,
        now: Instant,
        group: &str,
        member: &str,
        session_timeout_ms: u32,
    ) -> Result<Vec<MemberId>, GroupError> {
        let session = Duration::from_millis(session_timeout_ms.into());
        if session < self.limits.session_timeout_min || session > self.limits.session_timeout_max {
            return Err(GroupError::InvalidSessionTimeout);
        }
        if !self.groups.contains_key(group) && self.groups.len() >= self.limits.groups_max {
            return Err(GroupError::GroupsFull);
        }
        let members = self.groups.entry(group.to_string()).or_default();
        if !members.contains_key(member) && members.len() >= self.limits.members_per_group_max {
            return Err(GroupError::GroupFull);
        }
        members.insert(member.to_string(), now + session);
        members.retain(|_, expires| *expires > now);
        Ok(members.keys().cloned().collect())
    }

    pub fn leave(&mut self, group: &str, member: &str) -> Result<(), GroupError> {
        let members = self
            .groups
            .get_mut(group)
            .ok_or(GroupError::UnknownMemberId)?;
        members
            .remove(member)
            .map(|_| ())
            .ok_or(GroupError::UnknownMemberId)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for members in self.groups.values_mut() {
            members.retain(|_, expires| *expires > now);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.groups.values().flat_map(|m| m.values().copied()).min()
    }
}

/// A member's own share of `topics` among `members` (its view of the group), by RocketMQ's
/// averaging allocation. Every member subscribes to the same topics here.
pub fn own_share(
    me: &str,
    members: &[MemberId],
    subscribed: &BTreeSet<String>,
    topics: &BTreeMap<String, u32>,
) -> BTreeSet<TopicPartition> {
    let subs: BTreeMap<MemberId, MemberSubscription> = members
        .iter()
        .map(|m| {
            let sub = MemberSubscription {
                topics: subscribed.clone(),
                owned: BTreeSet::new(),
            };
            (m.clone(), sub)
        })
        .collect();
    Assignor::Range
        .assign(&subs, topics)
        .remove(me)
        .unwrap_or_default()
}
