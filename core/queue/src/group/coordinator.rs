//! One coordinator for every kind of group a broker coordinates: it dispatches each
//! [`GroupRequest`] to the classic or the broker-side machine, fences commits for both, and
//! turns their outputs into wire answers and snapshot records. The broker holds one per
//! offsets partition it leads, built anew from the partition's snapshots whenever it becomes
//! the leader, and dropped when it stops being the leader.

use std::collections::{BTreeMap, VecDeque};

use super::classic::{self, ClassicCoordinator, GroupLimits};
use super::consumer::{self, ConsumerCoordinator};
use super::periodic::MemberRegistry;
use super::record::Snapshot;
use super::wire::{GroupRequest, GroupResponse};
use super::GroupError;
use crate::ids::TopicPartition;
use crate::time::{earliest, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<R> {
    Reply(R, GroupResponse),
    /// Append `snapshot` to the offsets partition; send `replies` once it commits, or answer
    /// them with [`GroupError::NotCoordinator`] if it does not.
    Persist {
        snapshot: Snapshot,
        replies: Vec<(R, GroupResponse)>,
    },
}

pub struct GroupCoordinator<R> {
    classic: ClassicCoordinator<R>,
    consumer: ConsumerCoordinator<R>,
    /// Membership only, for client-side rebalancing; not persisted (members re-register
    /// within a heartbeat).
    registry: MemberRegistry,
    out: VecDeque<Output<R>>,
}

impl<R> GroupCoordinator<R> {
    /// `topics`: partition counts of the topics members may subscribe to (the broker-side
    /// assignor needs them).
    pub fn new(limits: GroupLimits, topics: BTreeMap<String, u32>) -> Self {
        GroupCoordinator {
            classic: ClassicCoordinator::new(limits),
            consumer: ConsumerCoordinator::new(limits, topics),
            registry: MemberRegistry::new(limits),
            out: VecDeque::new(),
        }
    }

    /// Rebuilds every group from the offsets partition's last snapshots.
    pub fn load(&mut self, now: Instant, snapshots: impl IntoIterator<Item = Snapshot>) {
        let (mut classic, mut consumer) = (Vec::new(), Vec::new());
        for s in snapshots {
            match s {
                Snapshot::Classic(s) => classic.push(s),
                Snapshot::Consumer(s) => consumer.push(s),
            }
        }
        self.classic.load(now, classic);
        self.consumer.load(now, consumer);
    }

    pub fn handle_request(&mut self, now: Instant, request: GroupRequest, reply: R) {
        match request {
            GroupRequest::Join(j) => self.classic.join(now, j, reply),
            GroupRequest::Sync {
                group,
                member_id,
                generation,
                assignment,
            } => self
                .classic
                .sync(now, &group, &member_id, generation, assignment, reply),
            GroupRequest::Heartbeat {
                group,
                member_id,
                generation,
            } => {
                let r = self.classic.heartbeat(now, &group, &member_id, generation);
                self.out
                    .push_back(Output::Reply(reply, GroupResponse::Heartbeat(r)));
            }
            GroupRequest::Leave { group, member_id } => {
                let r = self
                    .classic
                    .leave(now, &group, &member_id)
                    .or_else(|_| self.consumer.leave(now, &group, &member_id))
                    .or_else(|_| self.registry.leave(&group, &member_id));
                self.out
                    .push_back(Output::Reply(reply, GroupResponse::Leave(r)));
            }
            GroupRequest::ConsumerHeartbeat(hb) => self.consumer.heartbeat(now, hb, reply),
            GroupRequest::Register {
                group,
                member_id,
                session_timeout_ms,
            } => {
                let r = self
                    .registry
                    .register(now, &group, &member_id, session_timeout_ms);
                self.out
                    .push_back(Output::Reply(reply, GroupResponse::Members(r)));
            }
        }
        self.collect();
    }

    /// The fence on offset commits, whichever protocol the group speaks.
    pub fn check_commit(
        &self,
        group: &str,
        member: Option<(&str, u32)>,
        partition: &TopicPartition,
    ) -> Result<(), GroupError> {
        let classic = self.classic.check_commit(group, member, partition);
        let consumer = || self.consumer.check_commit(group, member, partition);
        match (member, classic) {
            // Without a member: allowed only if neither kind of group has members.
            (None, r) => r.and_then(|()| consumer()),
            // A member unknown to the classic groups may belong to a broker-side one.
            (Some(_), Err(GroupError::UnknownMemberId)) => consumer(),
            (Some(_), r) => r,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.classic.handle_timeout(now);
        self.consumer.handle_timeout(now);
        self.registry.handle_timeout(now);
        self.collect();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest([
            self.classic.poll_timeout(),
            self.consumer.poll_timeout(),
            self.registry.poll_timeout(),
        ])
    }

    pub fn poll_output(&mut self) -> Option<Output<R>> {
        self.out.pop_front()
    }

    fn collect(&mut self) {
        while let Some(o) = self.classic.poll_output() {
            self.out.push_back(match o {
                classic::Output::Reply(r, reply) => Output::Reply(r, classic_answer(reply)),
                classic::Output::Persist { snapshot, replies } => Output::Persist {
                    snapshot: Snapshot::Classic(snapshot),
                    replies: replies
                        .into_iter()
                        .map(|(r, a)| (r, classic_answer(a)))
                        .collect(),
                },
            });
        }
        while let Some(o) = self.consumer.poll_output() {
            self.out.push_back(match o {
                consumer::Output::Reply(r, a) => {
                    Output::Reply(r, GroupResponse::ConsumerHeartbeat(a))
                }
                consumer::Output::Persist { snapshot, replies } => Output::Persist {
                    snapshot: Snapshot::Consumer(snapshot),
                    replies: replies
                        .into_iter()
                        .map(|(r, a)| (r, GroupResponse::ConsumerHeartbeat(a)))
                        .collect(),
                },
            });
        }
    }
}

fn classic_answer(reply: classic::Reply) -> GroupResponse {
    match reply {
        classic::Reply::Join(r) => GroupResponse::Join(r),
        classic::Reply::Sync(r) => GroupResponse::Sync(r),
    }
}
