//! A consumer's side of group membership, for both protocols: the classic one (Kafka's
//! `ConsumerCoordinator`: join, leader-side assignment, sync, heartbeat; eager or cooperative;
//! static with an instance id) and the broker-side one (KIP-848's heartbeat-only member).
//!
//! [`GroupMember`] is sans-IO and owned by the consumer, which sends what
//! [`poll_request`](GroupMember::poll_request) hands out to the group's coordinator (the leader
//! of its offsets partition) and feeds back [`handle_response`](GroupMember::handle_response)
//! or [`handle_failure`](GroupMember::handle_failure). At most one request is in flight. The
//! application learns what it reads from [`poll_event`](GroupMember::poll_event):
//!
//! - [`MemberEvent::Assigned`]: start fetching these from their committed offsets;
//! - [`MemberEvent::Revoke`]: stop fetching these, commit what was processed, then call
//!   [`revoked`](GroupMember::revoked) — the member waits for that before it rejoins (eager,
//!   and cooperative's follow-up) or reports them gone (KIP-848), so offsets are committed
//!   before anyone else reads the partition;
//! - [`MemberEvent::Lost`]: no longer ours and too late to commit (the session ended, the
//!   member was fenced or missed `max_poll_interval_ms`): whatever was not committed will be
//!   read again by the next owner.
//!
//! Commits carry [`commit_fence`](GroupMember::commit_fence) (member id and generation or
//! epoch), which the coordinator checks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::assignor::{cooperative, Assignor, MemberId, MemberSubscription};
use super::classic::{JoinOk, JoinRequest, RebalanceKind};
use super::consumer::{Heartbeat, HeartbeatOk, JOIN_EPOCH};
use super::wire::{GroupRequest, GroupResponse};
use super::GroupError;
use crate::ids::TopicPartition;
use crate::time::{earliest, Instant};

/// RocketMQ 4's `rebalanceInterval` default (20 s): how often a client-side member recomputes
/// its share.
pub const REBALANCE_INTERVAL_MS_DEFAULT: u32 = 20_000;

/// Which protocol the member speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberProtocol {
    Classic(RebalanceKind),
    /// KIP-848: the coordinator assigns.
    Consumer,
    /// RocketMQ 4: each member computes its own share from the member list it last saw,
    /// every `rebalance_interval_ms`.
    ClientPeriodic {
        rebalance_interval_ms: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberConfig {
    pub group: String,
    pub protocol: MemberProtocol,
    pub assignor: Assignor,
    /// KIP-345 static membership.
    pub instance_id: Option<String>,
    pub topics: BTreeSet<String>,
    /// Kafka 4's default 45 s.
    pub session_timeout_ms: u32,
    /// Kafka's default 3 s.
    pub heartbeat_interval_ms: u32,
    /// Kafka's `max.poll.interval.ms` (default 5 min), also the rebalance timeout.
    pub max_poll_interval_ms: u32,
    /// Wait after a failed request before the next.
    pub retry_backoff_ms: u32,
}

impl Default for MemberConfig {
    fn default() -> Self {
        MemberConfig {
            group: String::new(),
            protocol: MemberProtocol::Classic(RebalanceKind::Eager),
            assignor: Assignor::Sticky,
            instance_id: None,
            topics: BTreeSet::new(),
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 3_000,
            max_poll_interval_ms: 300_000,
            retry_backoff_ms: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    Assigned {
        partitions: BTreeSet<TopicPartition>,
        generation: u32,
    },
    Revoke {
        partitions: BTreeSet<TopicPartition>,
    },
    Lost {
        partitions: BTreeSet<TopicPartition>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Classic: needs to (re)join. KIP-848: needs to heartbeat with epoch 0.
    Unjoined,
    /// Classic: joined generation `generation`, waiting for the sync answer.
    Syncing {
        generation: u32,
    },
    Stable,
    /// Waiting for the application to finish revoking; then rejoin (classic) or heartbeat at
    /// once (KIP-848).
    Revoking,
    /// Left after missing `max_poll_interval_ms`; rejoins at the next poll.
    LeftUntilPoll,
    /// Closed, or fenced for good (another process took the instance id).
    Closed,
}

#[derive(Debug)]
pub struct GroupMember {
    config: MemberConfig,
    /// The client's own part of its member ids; a fresh id adds a counter.
    base_id: String,
    ids_used: u32,
    member_id: MemberId,
    /// Classic generation, or KIP-848 member epoch.
    generation: u32,
    state: State,
    owned: BTreeSet<TopicPartition>,
    revoking: BTreeSet<TopicPartition>,
    /// Partition counts of subscribed topics: what a classic leader assigns.
    topic_partitions: BTreeMap<String, u32>,
    in_flight: bool,
    /// A Sync to send after a join answer (the leader's carries its assignment).
    sync_due: Option<GroupRequest>,
    /// A leave to send, under the member id that is leaving (the member may already have taken
    /// a fresh id to rejoin with).
    leave_as: Option<MemberId>,
    next_heartbeat: Instant,
    retry_at: Instant,
    last_poll: Instant,
    /// Client-side rebalancing: the membership as last seen, and when to recompute.
    view: Vec<MemberId>,
    next_rebalance: Instant,
    events: VecDeque<MemberEvent>,
}

impl GroupMember {
    /// `client_id` makes the member ids unique in the group (the workload uses the process
    /// name; a restarted process has a new name).
    pub fn new(config: MemberConfig, client_id: &str, now: Instant) -> GroupMember {
        let base_id = client_id.to_string();
        GroupMember {
            config,
            member_id: format!("{base_id}-0"),
            base_id,
            ids_used: 1,
            generation: 0,
            state: State::Unjoined,
            owned: BTreeSet::new(),
            revoking: BTreeSet::new(),
            topic_partitions: BTreeMap::new(),
            in_flight: false,
            sync_due: None,
            leave_as: None,
            next_heartbeat: now,
            retry_at: now,
            last_poll: now,
            view: Vec::new(),
            next_rebalance: now,
            events: VecDeque::new(),
        }
    }

    /// Partition counts of the subscribed topics, from metadata (a classic leader needs them).
    pub fn set_topic_partitions(&mut self, counts: BTreeMap<String, u32>) {
        self.topic_partitions = counts;
    }

    /// What a commit must carry for the coordinator's fence.
    pub fn commit_fence(&self) -> Option<(MemberId, u32)> {
        let fenced = !matches!(self.config.protocol, MemberProtocol::ClientPeriodic { .. });
        (fenced && matches!(self.state, State::Stable | State::Revoking))
            .then(|| (self.member_id.clone(), self.generation))
    }

    pub fn config(&self) -> &MemberConfig {
        &self.config
    }

    pub fn owned(&self) -> &BTreeSet<TopicPartition> {
        &self.owned
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The application took records: the `max_poll_interval_ms` clock restarts.
    pub fn polled(&mut self, now: Instant) {
        self.last_poll = now;
        if self.state == State::LeftUntilPoll {
            self.rejoin_fresh();
        }
    }

    /// The application finished the last [`MemberEvent::Revoke`].
    pub fn revoked(&mut self, now: Instant) {
        for p in std::mem::take(&mut self.revoking) {
            self.owned.remove(&p);
        }
        if self.state != State::Revoking {
            return;
        }
        self.state = match self.config.protocol {
            MemberProtocol::Classic(_) => State::Unjoined,
            MemberProtocol::Consumer | MemberProtocol::ClientPeriodic { .. } => State::Stable,
        };
        // Tell the coordinator now rather than at the next heartbeat.
        self.next_heartbeat = now;
    }

    /// A clean shutdown, after the application committed what it processed: a dynamic member
    /// leaves so the others rebalance at once; a static member does not (KIP-345), so a restart
    /// within its session changes nothing. Either way this process reads nothing more.
    pub fn close(&mut self) {
        self.owned.clear();
        self.revoking.clear();
        let dynamic = self.config.instance_id.is_none();
        if dynamic && self.state != State::Unjoined {
            self.leave_as = Some(self.member_id.clone());
        }
        self.state = State::Closed;
    }

    /// Closed, with its leave not yet sent or not yet answered.
    pub fn leaving(&self) -> bool {
        self.state == State::Closed && (self.leave_as.is_some() || self.in_flight)
    }

    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        self.events.pop_front()
    }

    /// The earliest of: the next request (when none is in flight), the max-poll-interval
    /// check, the next client-side rebalance.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stable = self.state == State::Stable;
        let active = stable || matches!(self.state, State::Syncing { .. });
        let poll_deadline = active.then(|| self.last_poll + ms(self.config.max_poll_interval_ms));
        let periodic = matches!(self.config.protocol, MemberProtocol::ClientPeriodic { .. });
        let rebalance = (stable && periodic).then_some(self.next_rebalance);
        earliest([self.next_request_at(), poll_deadline, rebalance])
    }

    fn next_request_at(&self) -> Option<Instant> {
        if self.in_flight {
            return None;
        }
        if self.leave_as.is_some() || self.sync_due.is_some() {
            return Some(self.retry_at);
        }
        match self.state {
            State::Unjoined => Some(self.retry_at),
            State::Stable => Some(self.next_heartbeat.max(self.retry_at)),
            State::Closed | State::LeftUntilPoll | State::Revoking | State::Syncing { .. } => None,
        }
    }

    /// Runs the timers: the poll-interval check and a client-side rebalance. Requests come
    /// from `poll_request`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let MemberProtocol::ClientPeriodic {
            rebalance_interval_ms,
        } = self.config.protocol
        {
            if self.state == State::Stable && now >= self.next_rebalance {
                self.next_rebalance = now + ms(rebalance_interval_ms);
                self.rebalance_locally();
            }
        }
        let missed_poll =
            now.saturating_since(self.last_poll) > ms(self.config.max_poll_interval_ms);
        if missed_poll && matches!(self.state, State::Stable | State::Syncing { .. }) {
            // Kafka's heartbeat thread leaves the group for a consumer stuck in processing.
            self.lose_all();
            self.leave_as = Some(self.member_id.clone());
            self.state = State::LeftUntilPoll;
        }
    }

    /// The next request for the coordinator, if one is due.
    pub fn poll_request(&mut self, now: Instant) -> Option<GroupRequest> {
        if self.in_flight || now < self.retry_at {
            return None;
        }
        let request = self.next_request(now)?;
        self.in_flight = true;
        Some(request)
    }

    fn next_request(&mut self, now: Instant) -> Option<GroupRequest> {
        if let Some(member_id) = self.leave_as.take() {
            return Some(GroupRequest::Leave {
                group: self.config.group.clone(),
                member_id,
            });
        }
        if let Some(sync) = self.sync_due.take() {
            return Some(sync);
        }
        match (self.config.protocol, self.state) {
            (_, State::Closed | State::LeftUntilPoll | State::Revoking) => None,
            (MemberProtocol::Classic(kind), State::Unjoined) => Some(self.join_request(kind)),
            (MemberProtocol::Classic(_), State::Stable) if now >= self.next_heartbeat => {
                self.next_heartbeat = now + ms(self.config.heartbeat_interval_ms);
                Some(GroupRequest::Heartbeat {
                    group: self.config.group.clone(),
                    member_id: self.member_id.clone(),
                    generation: self.generation,
                })
            }
            (MemberProtocol::Consumer, State::Unjoined) => {
                Some(self.consumer_heartbeat(now, JOIN_EPOCH))
            }
            (MemberProtocol::Consumer, State::Stable) if now >= self.next_heartbeat => {
                Some(self.consumer_heartbeat(now, self.generation))
            }
            (MemberProtocol::ClientPeriodic { .. }, State::Unjoined) => Some(self.register(now)),
            (MemberProtocol::ClientPeriodic { .. }, State::Stable)
                if now >= self.next_heartbeat =>
            {
                Some(self.register(now))
            }
            _ => None,
        }
    }

    fn join_request(&self, kind: RebalanceKind) -> GroupRequest {
        // Eager members have revoked everything before they rejoin.
        let owned = match kind {
            RebalanceKind::Eager => BTreeSet::new(),
            RebalanceKind::Cooperative => self.owned.clone(),
        };
        GroupRequest::Join(JoinRequest {
            group: self.config.group.clone(),
            member_id: self.member_id.clone(),
            instance_id: self.config.instance_id.clone(),
            kind,
            assignor: self.config.assignor,
            subscription: MemberSubscription {
                topics: self.config.topics.clone(),
                owned,
            },
            session_timeout_ms: self.config.session_timeout_ms,
            rebalance_timeout_ms: self.config.max_poll_interval_ms,
        })
    }

    fn consumer_heartbeat(&mut self, now: Instant, epoch: u32) -> GroupRequest {
        self.next_heartbeat = now + ms(self.config.heartbeat_interval_ms);
        GroupRequest::ConsumerHeartbeat(Heartbeat {
            group: self.config.group.clone(),
            member_id: self.member_id.clone(),
            member_epoch: epoch,
            instance_id: self.config.instance_id.clone(),
            assignor: self.config.assignor,
            topics: self.config.topics.clone(),
            owned: self.owned.clone(),
            session_timeout_ms: self.config.session_timeout_ms,
            rebalance_timeout_ms: self.config.max_poll_interval_ms,
        })
    }

    fn register(&mut self, now: Instant) -> GroupRequest {
        self.next_heartbeat = now + ms(self.config.heartbeat_interval_ms);
        GroupRequest::Register {
            group: self.config.group.clone(),
            member_id: self.member_id.clone(),
            session_timeout_ms: self.config.session_timeout_ms,
        }
    }

    /// RocketMQ 4: take this member's share of the membership it last saw, whatever the
    /// others see. Gains start at once; losses are revoked (committed) first.
    fn rebalance_locally(&mut self) {
        if !self.view.contains(&self.member_id) {
            return;
        }
        let share = super::periodic::own_share(
            &self.member_id,
            &self.view,
            &self.config.topics,
            &self.topic_partitions,
        );
        let added: BTreeSet<TopicPartition> = share.difference(&self.owned).cloned().collect();
        let lost: BTreeSet<TopicPartition> = self
            .owned
            .difference(&share)
            .filter(|p| !self.revoking.contains(*p))
            .cloned()
            .collect();
        if !added.is_empty() {
            self.owned.extend(added.iter().cloned());
            self.events.push_back(MemberEvent::Assigned {
                partitions: added,
                generation: 0,
            });
        }
        if !lost.is_empty() {
            self.revoking.extend(lost.iter().cloned());
            self.events
                .push_back(MemberEvent::Revoke { partitions: lost });
        }
    }

    /// The request failed without an answer (timeout, lost connection, not the coordinator):
    /// try again after the backoff. A sync that failed is not resent: the generation it
    /// belonged to may be over, so the member joins again (as Kafka's does).
    pub fn handle_failure(&mut self, now: Instant) {
        self.in_flight = false;
        self.retry_at = now + ms(self.config.retry_backoff_ms);
        if matches!(self.state, State::Syncing { .. }) {
            self.state = State::Unjoined;
        }
    }

    pub fn handle_response(&mut self, now: Instant, response: GroupResponse) {
        self.in_flight = false;
        match response {
            GroupResponse::Join(r) => self.on_join(now, r),
            GroupResponse::Sync(r) => self.on_sync(now, r),
            GroupResponse::Heartbeat(r) => self.on_heartbeat(now, r),
            GroupResponse::ConsumerHeartbeat(r) => self.on_consumer_heartbeat(now, r),
            GroupResponse::Members(r) => self.on_members(now, r),
            GroupResponse::Leave(_) => {}
        }
    }

    fn on_join(&mut self, now: Instant, r: Result<JoinOk, GroupError>) {
        if self.state != State::Unjoined {
            return;
        }
        let ok = match r {
            Ok(ok) => ok,
            Err(e) => return self.on_error(now, e),
        };
        let assignment = (ok.leader == self.member_id).then(|| self.lead(&ok));
        self.generation = ok.generation;
        self.state = State::Syncing {
            generation: ok.generation,
        };
        self.sync_due = Some(GroupRequest::Sync {
            group: self.config.group.clone(),
            member_id: self.member_id.clone(),
            generation: ok.generation,
            assignment,
        });
    }

    /// The leader's work: assign with the group's assignor; under the cooperative protocol,
    /// withhold what another member must revoke first (KIP-429).
    fn lead(&self, ok: &JoinOk) -> super::assignor::Assignment {
        let target = ok.assignor.assign(&ok.members, &self.topic_partitions);
        match self.config.protocol {
            MemberProtocol::Classic(RebalanceKind::Cooperative) => {
                cooperative(&ok.members, &target).0
            }
            _ => target,
        }
    }

    fn on_sync(&mut self, now: Instant, r: Result<BTreeSet<TopicPartition>, GroupError>) {
        let State::Syncing { generation } = self.state else {
            return;
        };
        let given = match r {
            Ok(given) => given,
            Err(e) => return self.on_error(now, e),
        };
        self.next_heartbeat = now + ms(self.config.heartbeat_interval_ms);
        let revoke: BTreeSet<TopicPartition> = self.owned.difference(&given).cloned().collect();
        let added: BTreeSet<TopicPartition> = given.difference(&self.owned).cloned().collect();
        self.owned.extend(added.iter().cloned());
        self.state = State::Stable;
        if !added.is_empty() || revoke.is_empty() {
            self.events.push_back(MemberEvent::Assigned {
                partitions: added,
                generation,
            });
        }
        if !revoke.is_empty() {
            // Cooperative: give these up, then rejoin for the follow-up rebalance.
            self.start_revoking(revoke);
        }
    }

    fn on_heartbeat(&mut self, now: Instant, r: Result<(), GroupError>) {
        if let Err(e) = r {
            if self.state == State::Stable {
                self.on_error(now, e);
            }
        }
    }

    fn on_consumer_heartbeat(&mut self, now: Instant, r: Result<HeartbeatOk, GroupError>) {
        if !matches!(self.state, State::Unjoined | State::Stable) {
            return;
        }
        let ok = match r {
            Ok(ok) => ok,
            Err(e) => return self.on_error(now, e),
        };
        self.generation = ok.member_epoch;
        self.state = State::Stable;
        let revoke: BTreeSet<TopicPartition> =
            self.owned.difference(&ok.assignment).cloned().collect();
        let added: BTreeSet<TopicPartition> =
            ok.assignment.difference(&self.owned).cloned().collect();
        if !added.is_empty() {
            self.owned.extend(added.iter().cloned());
            self.events.push_back(MemberEvent::Assigned {
                partitions: added,
                generation: ok.member_epoch,
            });
        }
        if !revoke.is_empty() {
            self.start_revoking(revoke);
        }
    }

    fn on_members(&mut self, now: Instant, r: Result<Vec<MemberId>, GroupError>) {
        if !matches!(self.state, State::Unjoined | State::Stable) {
            return;
        }
        match r {
            Ok(view) => {
                self.view = view;
                self.state = State::Stable;
            }
            Err(e) => self.on_error(now, e),
        }
    }

    fn on_error(&mut self, now: Instant, e: GroupError) {
        match e {
            GroupError::RebalanceInProgress => self.rebalance(),
            GroupError::UnknownMemberId | GroupError::IllegalGeneration => {
                self.lose_all();
                self.rejoin_fresh();
            }
            GroupError::FencedInstanceId => {
                // Another process holds our instance id: this one is the zombie.
                self.lose_all();
                self.state = State::Closed;
            }
            _ => {
                self.retry_at = now + ms(self.config.retry_backoff_ms);
                if matches!(self.state, State::Syncing { .. }) {
                    self.state = State::Unjoined;
                }
            }
        }
    }

    /// The coordinator asked for a rebalance: eager members give up everything first.
    fn rebalance(&mut self) {
        match self.config.protocol {
            MemberProtocol::Classic(RebalanceKind::Eager) if !self.owned.is_empty() => {
                let all = self.owned.clone();
                self.start_revoking(all);
            }
            _ => self.state = State::Unjoined,
        }
    }

    fn start_revoking(&mut self, partitions: BTreeSet<TopicPartition>) {
        self.revoking = partitions.clone();
        self.state = State::Revoking;
        self.events.push_back(MemberEvent::Revoke { partitions });
    }

    fn lose_all(&mut self) {
        let lost = std::mem::take(&mut self.owned);
        self.revoking.clear();
        if !lost.is_empty() {
            self.events
                .push_back(MemberEvent::Lost { partitions: lost });
        }
    }

    /// Starts over under a new member id (the old one is gone from the group).
    fn rejoin_fresh(&mut self) {
        self.member_id = format!("{}-{}", self.base_id, self.ids_used);
        self.ids_used = self.ids_used.wrapping_add(1);
        self.generation = 0;
        self.state = State::Unjoined;
    }
}

fn ms(v: u32) -> Duration {
    Duration::from_millis(v.into())
}
