//! The group coordinator for Kafka's classic protocol: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup (KIP-62 timeouts, KIP-345 static membership, KIP-429 cooperative rebalancing).
//!
//! One [`ClassicCoordinator`] holds every group whose offsets partition this broker leads. It
//! is sans-IO and generic over `R`, the caller's handle for a request waiting on a reply (the
//! broker's connection and correlation id). Calling contract:
//!
//! - Inputs: [`join`](ClassicCoordinator::join), [`sync`](ClassicCoordinator::sync),
//!   [`heartbeat`](ClassicCoordinator::heartbeat), [`leave`](ClassicCoordinator::leave),
//!   [`handle_timeout`](ClassicCoordinator::handle_timeout); [`load`](ClassicCoordinator::load)
//!   once, with the replayed snapshots, when this broker becomes the coordinator.
//! - Outputs: drain [`poll_output`](ClassicCoordinator::poll_output) after every input. An
//!   [`Output::Persist`] carries a snapshot of one group for the caller to append to the group's
//!   offsets partition, and the replies that may only leave once it has committed (a member
//!   must never see a generation or an assignment that a coordinator failover could forget).
//!   If the append fails, the caller answers those replies with
//!   [`GroupError::NotCoordinator`] and drops this coordinator's state for the partition.
//! - Timers: [`poll_timeout`](ClassicCoordinator::poll_timeout).
//!
//! A rebalance, as in Kafka's `GroupCoordinator`: a membership change moves the group to
//! `Joining`; every member learns of it from its next heartbeat (`RebalanceInProgress`) and
//! rejoins, under the eager protocol after revoking (and committing) everything it holds, under
//! the cooperative one keeping what it holds. When every member has rejoined, or the rebalance
//! timeout passes and the stragglers are dropped, the generation is bumped and persisted, and
//! the join replies go out; the leader's reply lists every member's subscription. The leader
//! computes the assignment (with [`super::assignor`]) and sends it in its SyncGroup; the
//! coordinator persists it and answers every member's SyncGroup with its share. Each
//! generation number is persisted before anyone sees it, so a failover in the middle of a
//! rebalance cannot hand one number to two different memberships.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::assignor::{Assignment, Assignor, MemberId, MemberSubscription};
use super::GroupError;
use crate::ids::TopicPartition;
use crate::time::Instant;

/// How members give up partitions in a rebalance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebalanceKind {
    /// Every member revokes everything before it rejoins: stop-the-world.
    #[default]
    Eager,
    /// KIP-429: members keep what stays theirs; moving partitions are revoked, then assigned
    /// in a follow-up rebalance.
    Cooperative,
}

/// Every table the coordinator keeps is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Groups one coordinator holds (Kafka has no such limit; a broker's memory does).
    pub groups_max: usize,
    /// Kafka's `group.max.size` (default unlimited); a join beyond it is refused.
    pub members_per_group_max: usize,
    /// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms`.
    pub session_timeout_min: Duration,
    pub session_timeout_max: Duration,
    /// Kafka's `group.initial.rebalance.delay.ms` (default 3 s): the first rebalance of an
    /// empty group waits this long for more members, so a group starting together does not
    /// rebalance once per arriving member.
    pub initial_rebalance_delay: Duration,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            groups_max: 1024,
            members_per_group_max: 256,
            session_timeout_min: Duration::from_millis(100),
            session_timeout_max: Duration::from_secs(30 * 60),
            initial_rebalance_delay: Duration::from_secs(3),
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub group: String,
    /// Chosen by the client (as KIP-848 does), so a retried join names the same member.
    pub member_id: MemberId,
    /// KIP-345: a static member's stable identity across restarts.
    pub instance_id: Option<String>,
    pub kind: RebalanceKind,
    pub assignor: Assignor,
    pub subscription: MemberSubscription,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinOk {
    pub generation: u32,
    pub leader: MemberId,
    pub assignor: Assignor,
    /// Every member's subscription, for the leader only (empty for the others).
    pub members: BTreeMap<MemberId, MemberSubscription>,
}

/// A reply to a request that waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Join(Result<JoinOk, GroupError>),
    Sync(Result<BTreeSet<TopicPartition>, GroupError>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<R> {
    Reply(R, Reply),
    /// Append `snapshot` to the group's offsets partition; send `replies` once it commits.
    Persist {
        snapshot: GroupSnapshot,
        replies: Vec<(R, Reply)>,
    },
}

/// What survives a coordinator failover: the group as of its last persisted change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    pub group: String,
    pub generation: u32,
    pub kind: RebalanceKind,
    pub assignor: Assignor,
    pub leader: Option<MemberId>,
    pub members: BTreeMap<MemberId, PersistedMember>,
    /// `Some` once the generation's assignment is known.
    pub assignment: Option<Assignment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedMember {
    pub instance_id: Option<String>,
    pub subscription: MemberSubscription,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Empty,
    /// Waiting for every member to rejoin, until `deadline`; while `not_before` is set (the
    /// initial rebalance delay of an empty group) not before it.
    Joining {
        not_before: Option<Instant>,
        deadline: Instant,
    },
    /// Waiting for the leader's assignment, until `deadline`.
    Syncing {
        deadline: Instant,
    },
    Stable,
}

#[derive(Debug)]
struct Member {
    persisted: PersistedMember,
    /// The session ends unless a heartbeat, join or sync comes first.
    expires: Instant,
    /// Rejoined in the current `Joining` phase.
    joined: bool,
}

#[derive(Debug)]
struct Group<R> {
    generation: u32,
    kind: RebalanceKind,
    assignor: Assignor,
    phase: Phase,
    leader: Option<MemberId>,
    members: BTreeMap<MemberId, Member>,
    assignment: Option<Assignment>,
    pending_joins: BTreeMap<MemberId, R>,
    pending_syncs: BTreeMap<MemberId, R>,
}

pub struct ClassicCoordinator<R> {
    limits: GroupLimits,
    groups: BTreeMap<String, Group<R>>,
    out: VecDeque<Output<R>>,
}

impl<R> ClassicCoordinator<R> {
    pub fn new(limits: GroupLimits) -> Self {
        ClassicCoordinator {
            limits,
            groups: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// Rebuilds the groups from their last persisted snapshots. A group whose generation has
    /// its assignment resumes `Stable`, every session restarting now (as Kafka does on load);
    /// one that was mid-rebalance starts a new rebalance, so its next generation is new.
    pub fn load(&mut self, now: Instant, snapshots: impl IntoIterator<Item = GroupSnapshot>) {
        for s in snapshots {
            let members: BTreeMap<MemberId, Member> = s
                .members
                .into_iter()
                .map(|(id, p)| {
                    let expires = now + Duration::from_millis(p.session_timeout_ms.into());
                    let m = Member {
                        persisted: p,
                        expires,
                        joined: false,
                    };
                    (id, m)
                })
                .collect();
            let mut group = Group {
                generation: s.generation,
                kind: s.kind,
                assignor: s.assignor,
                phase: Phase::Stable,
                leader: s.leader,
                members,
                assignment: s.assignment,
                pending_joins: BTreeMap::new(),
                pending_syncs: BTreeMap::new(),
            };
            if group.members.is_empty() {
                group.phase = Phase::Empty;
            } else if group.assignment.is_none() {
                group.start_rebalance(now);
            }
            self.groups.insert(s.group, group);
        }
    }

    pub fn join(&mut self, now: Instant, req: JoinRequest, reply: R) {
        if let Err(e) = self.admit(&req) {
            self.out
                .push_back(Output::Reply(reply, Reply::Join(Err(e))));
            return;
        }
        let group = self
            .groups
            .entry(req.group.clone())
            .or_insert_with(|| Group {
                generation: 0,
                kind: req.kind,
                assignor: req.assignor,
                phase: Phase::Empty,
                leader: None,
                members: BTreeMap::new(),
                assignment: None,
                pending_joins: BTreeMap::new(),
                pending_syncs: BTreeMap::new(),
            });
        if let Some(ok) = group.rejoin_unchanged(now, &req) {
            self.out
                .push_back(Output::Reply(reply, Reply::Join(Ok(ok))));
            return;
        }
        if let Some(old) = group.static_member(&req) {
            return self.rejoin_static(now, req, old, reply);
        }
        let session = Duration::from_millis(req.session_timeout_ms.into());
        let member = Member {
            persisted: PersistedMember {
                instance_id: req.instance_id.clone(),
                subscription: req.subscription,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
            },
            expires: now + session,
            joined: true,
        };
        group.members.insert(req.member_id.clone(), member);
        group.pending_joins.insert(req.member_id, reply);
        match group.phase {
            Phase::Joining { .. } => {}
            Phase::Empty => group.start_rebalance_after(now, self.limits.initial_rebalance_delay),
            Phase::Syncing { .. } | Phase::Stable => group.start_rebalance(now),
        }
        self.try_complete_join(now, &req.group);
    }

    /// Checks a join against the limits and the group's protocol before it changes anything.
    fn admit(&self, req: &JoinRequest) -> Result<(), GroupError> {
        let session = Duration::from_millis(req.session_timeout_ms.into());
        if session < self.limits.session_timeout_min || session > self.limits.session_timeout_max {
            return Err(GroupError::InvalidSessionTimeout);
        }
        let Some(group) = self.groups.get(&req.group) else {
            return if self.groups.len() >= self.limits.groups_max {
                Err(GroupError::GroupsFull)
            } else {
                Ok(())
            };
        };
        if !group.members.is_empty() && (group.kind, group.assignor) != (req.kind, req.assignor) {
            return Err(GroupError::InconsistentProtocol);
        }
        let known =
            group.members.contains_key(&req.member_id) || group.static_member(req).is_some();
        if !known && group.members.len() >= self.limits.members_per_group_max {
            return Err(GroupError::GroupFull);
        }
        Ok(())
    }

    /// KIP-345: a static member that comes back (under a new member id) within its session
    /// takes its old place: the old id is fenced, the assignment stays, and no rebalance runs.
    fn rejoin_static(&mut self, now: Instant, req: JoinRequest, old: MemberId, reply: R) {
        let Some(group) = self.groups.get_mut(&req.group) else {
            return;
        };
        let Some(mut member) = group.members.remove(&old) else {
            return;
        };
        member.expires = now + Duration::from_millis(req.session_timeout_ms.into());
        member.persisted.session_timeout_ms = req.session_timeout_ms;
        group.members.insert(req.member_id.clone(), member);
        if group.leader.as_ref() == Some(&old) {
            group.leader = Some(req.member_id.clone());
        }
        if let Some(a) = group.assignment.as_mut() {
            if let Some(set) = a.remove(&old) {
                a.insert(req.member_id.clone(), set);
            }
        }
        if let Some(r) = group.pending_joins.remove(&old) {
            self.out.push_back(Output::Reply(
                r,
                Reply::Join(Err(GroupError::FencedInstanceId)),
            ));
        }
        if !matches!(group.phase, Phase::Stable) {
            // Mid-rebalance it simply joins under its new id.
            group.pending_joins.insert(req.member_id.clone(), reply);
            if let Some(m) = group.members.get_mut(&req.member_id) {
                m.joined = true;
            }
            return self.try_complete_join(now, &req.group);
        }
        let ok = JoinOk {
            generation: group.generation,
            leader: group.leader.clone().unwrap_or_default(),
            assignor: group.assignor,
            members: BTreeMap::new(),
        };
        let snapshot = group.snapshot(&req.group);
        self.out.push_back(Output::Persist {
            snapshot,
            replies: vec![(reply, Reply::Join(Ok(ok)))],
        });
    }

    /// Ends the join phase once every member has rejoined.
    fn try_complete_join(&mut self, now: Instant, name: &str) {
        let Some(group) = self.groups.get_mut(name) else {
            return;
        };
        let Phase::Joining { not_before, .. } = group.phase else {
            return;
        };
        if not_before.is_some() || !group.members.values().all(|m| m.joined) {
            return;
        }
        self.complete_join(now, name);
    }

    /// Ends the join phase with whoever has rejoined (all, or those in time for the deadline):
    /// stragglers are dropped, the generation is bumped and persisted, and every pending join
    /// is answered once it has committed. The sync phase gets a rebalance timeout of its own.
    fn complete_join(&mut self, now: Instant, name: &str) {
        let Some(group) = self.groups.get_mut(name) else {
            return;
        };
        group.members.retain(|_, m| m.joined);
        for m in group.members.values_mut() {
            m.expires = now + Duration::from_millis(m.persisted.session_timeout_ms.into());
        }
        group.generation = group.generation.wrapping_add(1);
        group.assignment = None;
        if group.members.is_empty() {
            group.phase = Phase::Empty;
            group.leader = None;
            let snapshot = group.snapshot(name);
            self.out.push_back(Output::Persist {
                snapshot,
                replies: Vec::new(),
            });
            return;
        }
        if !group
            .leader
            .as_ref()
            .is_some_and(|l| group.members.contains_key(l))
        {
            group.leader = group.members.keys().next().cloned();
        }
        let leader = group.leader.clone().unwrap_or_default();
        let deadline = group.rebalance_deadline_from(now);
        group.phase = Phase::Syncing { deadline };
        let everyone: BTreeMap<MemberId, MemberSubscription> = group
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.persisted.subscription.clone()))
            .collect();
        let replies = std::mem::take(&mut group.pending_joins)
            .into_iter()
            .map(|(id, r)| {
                let members = if id == leader {
                    everyone.clone()
                } else {
                    BTreeMap::new()
                };
                let ok = JoinOk {
                    generation: group.generation,
                    leader: leader.clone(),
                    assignor: group.assignor,
                    members,
                };
                (r, Reply::Join(Ok(ok)))
            })
            .collect();
        let snapshot = group.snapshot(name);
        self.out.push_back(Output::Persist { snapshot, replies });
    }

    /// A SyncGroup: the leader's carries the assignment; everyone's waits for it.
    pub fn sync(
        &mut self,
        now: Instant,
        name: &str,
        member: &str,
        generation: u32,
        assignment: Option<Assignment>,
        reply: R,
    ) {
        let result = self.check_member(now, name, member, generation);
        let Some(group) = self.groups.get_mut(name).filter(|_| result.is_ok()) else {
            let e = result.err().unwrap_or(GroupError::UnknownMemberId);
            self.out
                .push_back(Output::Reply(reply, Reply::Sync(Err(e))));
            return;
        };
        match group.phase {
            Phase::Empty | Phase::Joining { .. } => {
                let e = GroupError::RebalanceInProgress;
                self.out
                    .push_back(Output::Reply(reply, Reply::Sync(Err(e))));
            }
            Phase::Stable => {
                let share = group.share(member);
                self.out
                    .push_back(Output::Reply(reply, Reply::Sync(Ok(share))));
            }
            Phase::Syncing { .. } => {
                group.pending_syncs.insert(member.to_string(), reply);
                if group.leader.as_deref() == Some(member) {
                    if let Some(a) = assignment {
                        self.complete_sync(name, a);
                    }
                }
            }
        }
    }

    /// The leader's assignment arrived: keep only members and partitions that exist, persist
    /// it, then answer every waiting SyncGroup with its share.
    fn complete_sync(&mut self, name: &str, mut assignment: Assignment) {
        let Some(group) = self.groups.get_mut(name) else {
            return;
        };
        assignment.retain(|m, _| group.members.contains_key(m));
        for m in group.members.keys() {
            assignment.entry(m.clone()).or_default();
        }
        group.assignment = Some(assignment);
        group.phase = Phase::Stable;
        let replies = std::mem::take(&mut group.pending_syncs)
            .into_iter()
            .map(|(id, r)| (r, Reply::Sync(Ok(group.share(&id)))))
            .collect();
        let snapshot = group.snapshot(name);
        self.out.push_back(Output::Persist { snapshot, replies });
    }

    /// A heartbeat keeps the session alive; `RebalanceInProgress` tells the member to rejoin.
    pub fn heartbeat(
        &mut self,
        now: Instant,
        name: &str,
        member: &str,
        generation: u32,
    ) -> Result<(), GroupError> {
        let group = self
            .groups
            .get_mut(name)
            .ok_or(GroupError::UnknownMemberId)?;
        let m = group
            .members
            .get_mut(member)
            .ok_or(GroupError::UnknownMemberId)?;
        m.expires = now + Duration::from_millis(m.persisted.session_timeout_ms.into());
        match group.phase {
            Phase::Joining { .. } => Err(GroupError::RebalanceInProgress),
            _ if generation != group.generation => Err(GroupError::IllegalGeneration),
            _ => Ok(()),
        }
    }

    /// A clean leave: the member goes at once and the others rebalance.
    pub fn leave(&mut self, now: Instant, name: &str, member: &str) -> Result<(), GroupError> {
        let group = self
            .groups
            .get_mut(name)
            .ok_or(GroupError::UnknownMemberId)?;
        group
            .members
            .remove(member)
            .ok_or(GroupError::UnknownMemberId)?;
        group.pending_joins.remove(member);
        group.pending_syncs.remove(member);
        self.membership_changed(now, name);
        Ok(())
    }

    /// Whether `member` of generation `generation` may commit an offset of `partition`: the
    /// fence that stops a zombie (a member whose session ended while it was paused) from
    /// overwriting the offsets of the partition's new owner. A commit without a member is
    /// allowed only for a group with no members (manual assignment).
    pub fn check_commit(
        &self,
        name: &str,
        member: Option<(&str, u32)>,
        partition: &TopicPartition,
    ) -> Result<(), GroupError> {
        let group = self.groups.get(name);
        let Some((member, generation)) = member else {
            return super::commit_without_member(group.is_some_and(|g| !g.members.is_empty()));
        };
        let group = group.ok_or(GroupError::UnknownMemberId)?;
        if !group.members.contains_key(member) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if matches!(group.phase, Phase::Syncing { .. }) {
            return Err(GroupError::RebalanceInProgress);
        }
        if !group.share(member).contains(partition) {
            return Err(GroupError::PartitionNotAssigned);
        }
        Ok(())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            self.expire_sessions(now, &name);
            self.expire_phase(now, &name);
        }
    }

    /// Members whose session ended leave; a member waiting in a join is exempt while the join
    /// phase lasts (its request is its sign of life).
    fn expire_sessions(&mut self, now: Instant, name: &str) {
        let Some(group) = self.groups.get_mut(name) else {
            return;
        };
        let before = group.members.len();
        let pending = &group.pending_joins;
        group
            .members
            .retain(|id, m| m.expires > now || pending.contains_key(id));
        if group.members.len() != before {
            group
                .pending_syncs
                .retain(|id, _| group.members.contains_key(id));
            self.membership_changed(now, name);
        }
    }

    fn expire_phase(&mut self, now: Instant, name: &str) {
        let Some(group) = self.groups.get_mut(name) else {
            return;
        };
        match group.phase {
            Phase::Joining { deadline, .. } if deadline <= now => self.complete_join(now, name),
            Phase::Joining {
                not_before: Some(t),
                deadline,
            } if t <= now => {
                group.phase = Phase::Joining {
                    not_before: None,
                    deadline,
                };
                self.try_complete_join(now, name);
            }
            Phase::Syncing { deadline } if deadline <= now => {
                // The leader never sent its assignment: everyone rejoins.
                for (_, r) in std::mem::take(&mut group.pending_syncs) {
                    let e = Reply::Sync(Err(GroupError::RebalanceInProgress));
                    self.out.push_back(Output::Reply(r, e));
                }
                group.start_rebalance(now);
            }
            _ => {}
        }
    }

    fn membership_changed(&mut self, now: Instant, name: &str) {
        let Some(group) = self.groups.get_mut(name) else {
            return;
        };
        if group.members.is_empty() && group.pending_joins.is_empty() {
            group.phase = Phase::Empty;
            group.leader = None;
            group.assignment = None;
            group.generation = group.generation.wrapping_add(1);
            let snapshot = group.snapshot(name);
            self.out.push_back(Output::Persist {
                snapshot,
                replies: Vec::new(),
            });
            return;
        }
        for (_, r) in std::mem::take(&mut group.pending_syncs) {
            let e = Reply::Sync(Err(GroupError::RebalanceInProgress));
            self.out.push_back(Output::Reply(r, e));
        }
        if !matches!(group.phase, Phase::Joining { .. }) {
            group.start_rebalance(now);
        }
        self.try_complete_join(now, name);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.groups
            .values()
            .flat_map(|g| {
                let phase = match g.phase {
                    Phase::Joining {
                        not_before,
                        deadline,
                    } => Some(not_before.map_or(deadline, |t| t.min(deadline))),
                    Phase::Syncing { deadline } => Some(deadline),
                    _ => None,
                };
                // A member waiting in a join does not expire while it waits (see
                // `expire_sessions`): its session is no deadline.
                let sessions = g
                    .members
                    .iter()
                    .filter(|(id, _)| !g.pending_joins.contains_key(*id))
                    .map(|(_, m)| m.expires);
                sessions.chain(phase)
            })
            .min()
    }

    pub fn poll_output(&mut self) -> Option<Output<R>> {
        self.out.pop_front()
    }

    /// The generation and share of `member`, for tests and metrics.
    pub fn member_state(
        &self,
        name: &str,
        member: &str,
    ) -> Option<(u32, BTreeSet<TopicPartition>)> {
        let g = self.groups.get(name)?;
        g.members.get(member)?;
        Some((g.generation, g.share(member)))
    }

    /// A known member of `generation`; its session restarts.
    fn check_member(
        &mut self,
        now: Instant,
        name: &str,
        member: &str,
        generation: u32,
    ) -> Result<(), GroupError> {
        let group = self
            .groups
            .get_mut(name)
            .ok_or(GroupError::UnknownMemberId)?;
        let m = group
            .members
            .get_mut(member)
            .ok_or(GroupError::UnknownMemberId)?;
        m.expires = now + Duration::from_millis(m.persisted.session_timeout_ms.into());
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }
}

impl<R> Group<R> {
    /// Kafka's answer to a known member that joins again with the same subscription after
    /// the join phase ended (its join answer was lost, or came after its request timed out):
    /// the current generation, persisted already, with no new rebalance. The leader gets the
    /// members again so that it can (re)send the assignment. As in Kafka, the leader joining
    /// a stable group does rebalance it (that is how a leader asks for a rebalance).
    fn rejoin_unchanged(&mut self, now: Instant, req: &JoinRequest) -> Option<JoinOk> {
        let is_leader = self.leader.as_ref() == Some(&req.member_id);
        match self.phase {
            Phase::Syncing { .. } => {}
            Phase::Stable if !is_leader => {}
            _ => return None,
        }
        let m = self.members.get_mut(&req.member_id)?;
        if m.persisted.subscription != req.subscription {
            return None;
        }
        m.expires = now + Duration::from_millis(m.persisted.session_timeout_ms.into());
        let leader = self.leader.clone().unwrap_or_default();
        let members = match leader == req.member_id {
            true => self
                .members
                .iter()
                .map(|(id, m)| (id.clone(), m.persisted.subscription.clone()))
                .collect(),
            false => BTreeMap::new(),
        };
        Some(JoinOk {
            generation: self.generation,
            leader,
            assignor: self.assignor,
            members,
        })
    }

    /// The member registered under `req`'s instance id with another member id, if any.
    fn static_member(&self, req: &JoinRequest) -> Option<MemberId> {
        let instance = req.instance_id.as_ref()?;
        self.members
            .iter()
            .find(|(id, m)| {
                m.persisted.instance_id.as_ref() == Some(instance) && **id != req.member_id
            })
            .map(|(id, _)| id.clone())
    }

    fn start_rebalance(&mut self, now: Instant) {
        self.start_rebalance_after(now, Duration::ZERO);
    }

    fn start_rebalance_after(&mut self, now: Instant, delay: Duration) {
        for m in self.members.values_mut() {
            m.joined = false;
        }
        for id in self.pending_joins.keys() {
            if let Some(m) = self.members.get_mut(id) {
                m.joined = true;
            }
        }
        let deadline = self.rebalance_deadline_from(now);
        let not_before = now + delay;
        self.phase = Phase::Joining {
            not_before: (delay > Duration::ZERO).then_some(not_before),
            deadline: deadline.max(not_before),
        };
    }

    /// The join (or sync) phase lasts the longest rebalance timeout of the members.
    fn rebalance_deadline_from(&self, start: Instant) -> Instant {
        let longest = self
            .members
            .values()
            .map(|m| m.persisted.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        start + Duration::from_millis(longest.into())
    }

    fn share(&self, member: &str) -> BTreeSet<TopicPartition> {
        self.assignment
            .as_ref()
            .and_then(|a| a.get(member))
            .cloned()
            .unwrap_or_default()
    }

    fn snapshot(&self, name: &str) -> GroupSnapshot {
        GroupSnapshot {
            group: name.to_string(),
            generation: self.generation,
            kind: self.kind,
            assignor: self.assignor,
            leader: self.leader.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| (id.clone(), m.persisted.clone()))
                .collect(),
            assignment: self.assignment.clone(),
        }
    }
}
