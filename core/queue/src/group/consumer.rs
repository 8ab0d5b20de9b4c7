//! The coordinator of the broker-side protocol: KIP-848's consumer group protocol (Kafka 4),
//! which RocketMQ 5's server-side rebalance (RIP-19) resembles.
//!
//! There is no join phase and no group-wide barrier. Members only heartbeat; the coordinator
//! owns the assignment. Any change to the membership or to a subscription bumps the *group
//! epoch* and recomputes the *target assignment* with the server-side assignor. Each member
//! then reconciles on its own, heartbeat by heartbeat:
//!
//! 1. partitions it holds that its target no longer has are taken from it (it must stop
//!    fetching them, commit, and report them gone in its next heartbeat's `owned`);
//! 2. once it holds nothing outside its target, its *member epoch* becomes the target's epoch
//!    and it receives every target partition that no other member still holds.
//!
//! A partition therefore never has two owners at once, and members that do not move keep
//! fetching throughout. Commits are fenced by member epoch: a commit must carry the member's
//! current epoch and name a partition it holds. A member that misses its session is dropped;
//! one that does not give up a revoked partition within its rebalance timeout is dropped too.
//!
//! Calling contract as [`super::classic`]: inputs [`heartbeat`](ConsumerCoordinator::heartbeat)
//! and [`handle_timeout`](ConsumerCoordinator::handle_timeout), [`load`](ConsumerCoordinator::load)
//! on becoming coordinator; outputs [`poll_output`](ConsumerCoordinator::poll_output), where a
//! reply that carries a change waits behind the persisted snapshot.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::assignor::{Assignor, MemberId, MemberSubscription};
use super::classic::GroupLimits;
use super::GroupError;
use crate::ids::TopicPartition;
use crate::time::Instant;

/// KIP-848's member epoch that asks to join.
pub const JOIN_EPOCH: u32 = 0;

/// A ConsumerGroupHeartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub group: String,
    pub member_id: MemberId,
    /// [`JOIN_EPOCH`] to join; otherwise the epoch the last reply gave.
    pub member_epoch: u32,
    pub instance_id: Option<String>,
    pub assignor: Assignor,
    pub topics: BTreeSet<String>,
    /// What the member still holds: how it reports that it has let revoked partitions go.
    pub owned: BTreeSet<TopicPartition>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatOk {
    pub member_epoch: u32,
    /// What the member may hold now: fetch these, stop fetching anything else.
    pub assignment: BTreeSet<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<R> {
    Reply(R, Result<HeartbeatOk, GroupError>),
    /// Append `snapshot` to the group's offsets partition; send `replies` once it commits.
    Persist {
        snapshot: ConsumerGroupSnapshot,
        replies: Vec<(R, Result<HeartbeatOk, GroupError>)>,
    },
}

/// What survives a coordinator failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroupSnapshot {
    pub group: String,
    pub group_epoch: u32,
    pub assignor: Assignor,
    pub members: BTreeMap<MemberId, PersistedConsumer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedConsumer {
    pub instance_id: Option<String>,
    pub topics: BTreeSet<String>,
    pub epoch: u32,
    /// What the coordinator has given the member and not yet taken back.
    pub assigned: BTreeSet<TopicPartition>,
    /// Taken back, but the member has not yet reported letting them go: nobody else gets them.
    pub revoking: BTreeSet<TopicPartition>,
    pub target: BTreeSet<TopicPartition>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
}

#[derive(Debug)]
struct Member {
    p: PersistedConsumer,
    expires: Instant,
    /// Set while the member holds partitions outside its target: it must let them go by then.
    revoke_by: Option<Instant>,
}

#[derive(Debug)]
struct Group {
    epoch: u32,
    assignor: Assignor,
    members: BTreeMap<MemberId, Member>,
}

pub struct ConsumerCoordinator<R> {
    limits: GroupLimits,
    /// Partition counts of the topics members may subscribe to.
    topics: BTreeMap<String, u32>,
    groups: BTreeMap<String, Group>,
    out: VecDeque<Output<R>>,
}

impl<R> ConsumerCoordinator<R> {
    pub fn new(limits: GroupLimits, topics: BTreeMap<String, u32>) -> Self {
        ConsumerCoordinator {
            limits,
            topics,
            groups: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// Rebuilds the groups from their last snapshots; every session restarts now.
    pub fn load(
        &mut self,
        now: Instant,
        snapshots: impl IntoIterator<Item = ConsumerGroupSnapshot>,
    ) {
        for s in snapshots {
            let members = s
                .members
                .into_iter()
                .map(|(id, p)| {
                    let expires = now + ms(p.session_timeout_ms);
                    let revoke_by =
                        (!p.revoking.is_empty()).then(|| now + ms(p.rebalance_timeout_ms));
                    (
                        id,
                        Member {
                            p,
                            expires,
                            revoke_by,
                        },
                    )
                })
                .collect();
            let group = Group {
                epoch: s.group_epoch,
                assignor: s.assignor,
                members,
            };
            self.groups.insert(s.group, group);
        }
    }

    pub fn heartbeat(&mut self, now: Instant, hb: Heartbeat, reply: R) {
        match self.step(now, &hb) {
            Err(e) => self.out.push_back(Output::Reply(reply, Err(e))),
            Ok(changed) => {
                let Some(group) = self.groups.get(&hb.group) else {
                    return;
                };
                let ok = group.members.get(&hb.member_id).map(|m| HeartbeatOk {
                    member_epoch: m.p.epoch,
                    assignment: m.p.assigned.clone(),
                });
                let result = ok.ok_or(GroupError::UnknownMemberId);
                if changed {
                    let snapshot = group.snapshot(&hb.group);
                    let replies = vec![(reply, result)];
                    self.out.push_back(Output::Persist { snapshot, replies });
                } else {
                    self.out.push_back(Output::Reply(reply, result));
                }
            }
        }
    }

    /// Applies one heartbeat; returns whether the group's persisted state changed.
    fn step(&mut self, now: Instant, hb: &Heartbeat) -> Result<bool, GroupError> {
        self.admit(hb)?;
        let group = self
            .groups
            .entry(hb.group.clone())
            .or_insert_with(|| Group {
                epoch: 0,
                assignor: hb.assignor,
                members: BTreeMap::new(),
            });
        let mut changed = false;
        if hb.member_epoch == JOIN_EPOCH {
            match group.join(now, hb) {
                Joined::Known => {}
                Joined::Returning => changed = true,
                Joined::New => {
                    changed = true;
                    group.retarget(&self.topics);
                }
            }
        }
        let member = group
            .members
            .get_mut(&hb.member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        if hb.member_epoch != JOIN_EPOCH && hb.member_epoch != member.p.epoch {
            return Err(GroupError::IllegalGeneration);
        }
        member.expires = now + ms(member.p.session_timeout_ms);
        if member.p.topics != hb.topics {
            member.p.topics = hb.topics.clone();
            changed = true;
            group.retarget(&self.topics);
        }
        changed |= group.reconcile(now, &hb.member_id, &hb.owned);
        Ok(changed)
    }

    fn admit(&self, hb: &Heartbeat) -> Result<(), GroupError> {
        let session = ms(hb.session_timeout_ms);
        if session < self.limits.session_timeout_min || session > self.limits.session_timeout_max {
            return Err(GroupError::InvalidSessionTimeout);
        }
        let Some(group) = self.groups.get(&hb.group) else {
            return match self.groups.len() >= self.limits.groups_max {
                true => Err(GroupError::GroupsFull),
                false => Ok(()),
            };
        };
        if !group.members.is_empty() && group.assignor != hb.assignor {
            return Err(GroupError::InconsistentProtocol);
        }
        let joining = hb.member_epoch == JOIN_EPOCH && !group.members.contains_key(&hb.member_id);
        if joining && group.members.len() >= self.limits.members_per_group_max {
            return Err(GroupError::GroupFull);
        }
        Ok(())
    }

    /// A clean leave (KIP-848's epoch -1): the member's partitions go back to the others.
    pub fn leave(&mut self, now: Instant, name: &str, member: &str) -> Result<(), GroupError> {
        let group = self
            .groups
            .get_mut(name)
            .ok_or(GroupError::UnknownMemberId)?;
        group
            .members
            .remove(member)
            .ok_or(GroupError::UnknownMemberId)?;
        self.membership_changed(now, name);
        Ok(())
    }

    /// The commit fence: the member's current epoch, a partition it holds.
    pub fn check_commit(
        &self,
        name: &str,
        member: Option<(&str, u32)>,
        partition: &TopicPartition,
    ) -> Result<(), GroupError> {
        let group = self.groups.get(name);
        let Some((member, epoch)) = member else {
            return super::commit_without_member(group.is_some_and(|g| !g.members.is_empty()));
        };
        let m = group
            .and_then(|g| g.members.get(member))
            .ok_or(GroupError::UnknownMemberId)?;
        if epoch != m.p.epoch {
            return Err(GroupError::IllegalGeneration);
        }
        // A partition being revoked is still the member's until it reports it gone: that is
        // when it commits what it processed.
        if !m.p.assigned.contains(partition) && !m.p.revoking.contains(partition) {
            return Err(GroupError::PartitionNotAssigned);
        }
        Ok(())
    }

    /// Drops members whose session ended or who held a revoked partition past their
    /// rebalance timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            let Some(group) = self.groups.get_mut(&name) else {
                continue;
            };
            let before = group.members.len();
            group
                .members
                .retain(|_, m| m.expires > now && m.revoke_by.is_none_or(|t| t > now));
            if group.members.len() != before {
                self.membership_changed(now, &name);
            }
        }
    }

    fn membership_changed(&mut self, _now: Instant, name: &str) {
        let Some(group) = self.groups.get_mut(name) else {
            return;
        };
        group.retarget(&self.topics);
        let snapshot = group.snapshot(name);
        self.out.push_back(Output::Persist {
            snapshot,
            replies: Vec::new(),
        });
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.groups
            .values()
            .flat_map(|g| g.members.values())
            .flat_map(|m| std::iter::once(m.expires).chain(m.revoke_by))
            .min()
    }

    pub fn poll_output(&mut self) -> Option<Output<R>> {
        self.out.pop_front()
    }

    /// A member's epoch and what it holds, for tests and metrics.
    pub fn member_state(
        &self,
        name: &str,
        member: &str,
    ) -> Option<(u32, BTreeSet<TopicPartition>)> {
        let m = self.groups.get(name)?.members.get(member)?;
        Some((m.p.epoch, m.p.assigned.clone()))
    }
}

/// What a join heartbeat turned out to be.
enum Joined {
    /// A member already in the group (a retried join).
    Known,
    /// A static member back under a new member id: same place, no new target.
    Returning,
    New,
}

impl Group {
    /// Adds (or, for a static member coming back under a new id, replaces) a member.
    fn join(&mut self, now: Instant, hb: &Heartbeat) -> Joined {
        if self.members.contains_key(&hb.member_id) {
            return Joined::Known;
        }
        let returning = hb.instance_id.as_ref().and_then(|i| {
            let id = self
                .members
                .iter()
                .find(|(_, m)| m.p.instance_id.as_ref() == Some(i))
                .map(|(id, _)| id.clone())?;
            self.members.remove(&id)
        });
        let (member, joined) = match returning {
            // KIP-345 under KIP-848: the instance keeps its assignment and epoch.
            Some(mut m) => {
                m.expires = now + ms(hb.session_timeout_ms);
                (m, Joined::Returning)
            }
            None => (
                Member {
                    p: PersistedConsumer {
                        instance_id: hb.instance_id.clone(),
                        topics: hb.topics.clone(),
                        epoch: 0,
                        assigned: BTreeSet::new(),
                        revoking: BTreeSet::new(),
                        target: BTreeSet::new(),
                        session_timeout_ms: hb.session_timeout_ms,
                        rebalance_timeout_ms: hb.rebalance_timeout_ms,
                    },
                    expires: now + ms(hb.session_timeout_ms),
                    revoke_by: None,
                },
                Joined::New,
            ),
        };
        self.members.insert(hb.member_id.clone(), member);
        joined
    }

    /// Recomputes every member's target from the members and what they hold now.
    fn retarget(&mut self, topics: &BTreeMap<String, u32>) {
        self.epoch = self.epoch.wrapping_add(1);
        let subs: BTreeMap<MemberId, MemberSubscription> = self
            .members
            .iter()
            .map(|(id, m)| {
                let sub = MemberSubscription {
                    topics: m.p.topics.clone(),
                    owned: m.p.assigned.clone(),
                };
                (id.clone(), sub)
            })
            .collect();
        let known: BTreeMap<String, u32> = topics
            .iter()
            .filter(|(t, _)| subs.values().any(|s| s.topics.contains(*t)))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        let target = self.assignor.assign(&subs, &known);
        for (id, m) in self.members.iter_mut() {
            m.p.target = target.get(id).cloned().unwrap_or_default();
        }
    }

    /// One reconciliation step of `id`, given what it reports it still owns: take back what
    /// left its target; once it has let all of that go, move it to the group's epoch and give
    /// it every target partition nobody else holds or is still letting go.
    fn reconcile(&mut self, now: Instant, id: &str, owned: &BTreeSet<TopicPartition>) -> bool {
        let held_elsewhere: BTreeSet<TopicPartition> = self
            .members
            .iter()
            .filter(|(other, _)| other.as_str() != id)
            .flat_map(|(_, m)| m.p.assigned.iter().chain(&m.p.revoking).cloned())
            .collect();
        let epoch = self.epoch;
        let Some(m) = self.members.get_mut(id) else {
            return false;
        };
        let before = m.p.clone();
        m.p.revoking.retain(|p| owned.contains(p));
        let revoked: Vec<TopicPartition> = m.p.assigned.difference(&m.p.target).cloned().collect();
        for p in revoked {
            m.p.assigned.remove(&p);
            if owned.contains(&p) {
                m.p.revoking.insert(p);
            }
        }
        if m.p.revoking.is_empty() {
            m.revoke_by = None;
            m.p.epoch = epoch;
            let free: Vec<TopicPartition> =
                m.p.target
                    .iter()
                    .filter(|p| !held_elsewhere.contains(*p))
                    .cloned()
                    .collect();
            m.p.assigned.extend(free);
        } else {
            m.revoke_by
                .get_or_insert(now + ms(m.p.rebalance_timeout_ms));
        }
        m.p != before
    }

    fn snapshot(&self, name: &str) -> ConsumerGroupSnapshot {
        ConsumerGroupSnapshot {
            group: name.to_string(),
            group_epoch: self.epoch,
            assignor: self.assignor,
            members: self
                .members
                .iter()
                .map(|(id, m)| (id.clone(), m.p.clone()))
                .collect(),
        }
    }
}

fn ms(v: u32) -> Duration {
    Duration::from_millis(v.into())
}
