//! The consumer: manual partition assignment (as Flink does it, claim C2), long-poll fetching,
//! and offset commits to the group's coordinator.
//!
//! For each assigned partition the consumer first reads the group's committed offset with
//! `OffsetFetch` from the leader of the group's offsets partition ([`coordinator_partition`]),
//! and starts there, or at 0 when nothing was committed. It then keeps one `Fetch` in flight per
//! partition at its position: the broker holds it until data arrives or `max_wait_ms` passes, and
//! each answer is followed at once by the next fetch (long polling, claim C1). Fetching a
//! partition pauses while `buffered_records_max` of its records wait for the application, which
//! is the pull model's back-pressure.
//!
//! Commits are explicit (claim C4): the application calls [`Consumer::commit`] after it has
//! processed records, and learns the result from a [`ConsumerEvent::Committed`].
//!
//! Group membership (issue 8): after [`Consumer::subscribe`] the consumer owns a
//! [`GroupMember`] and the group's coordinator decides what it reads. It sends the member's
//! requests to the coordinator, starts a partition the member is given at the group's committed
//! offset ([`ConsumerEvent::GroupAssigned`], then [`ConsumerEvent::Assigned`]), and stops
//! fetching one the member must give up ([`ConsumerEvent::Revoked`]: the application commits
//! what it processed of it, then calls [`Consumer::revoked`]) or has lost
//! ([`ConsumerEvent::Lost`]). Every commit carries the member's fence as it was when the
//! application asked for the commit, so a commit of a generation that has ended is refused.
//! Without `subscribe` the consumer is assigned by hand ([`Consumer::assign`]), as before.
//!
//! Delivery models (claim C1, [`Delivery`]): `long_poll` is the fetch loop above; `pull`
//! fetches without waiting and, after an empty answer, fetches again only after
//! `poll_interval_ms` (the naive polling loop); `push` subscribes once per partition and the
//! leader sends each newly committed batch unasked ([`Request::Subscribe`],
//! [`Message::Push`]). A push subscription with a credit window returns credits as the
//! application takes records; without one, pushes land in the receive buffer whatever its
//! fill, and a push that would take the buffer past `receive_buffer_bytes_max` is dropped with
//! the subscription, which is renewed from the position after the buffered records once the
//! retry backoff passes: an overflow, counted in [`DeliveryStats`]. A subscription the broker
//! ends (it stopped leading) or whose connection closes is renewed the same way, at the
//! partition's current leader, so a leader change neither skips nor repeats records.
//!
//! When the broker says a position is out of range the consumer asks for the partition's offsets
//! and moves the position, reporting a [`ConsumerEvent::PositionReset`]: a reset skips or repeats
//! records, so it is never silent.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

use crate::config::BrokerAddr;
use crate::group::member::{GroupMember, MemberConfig, MemberEvent};
use crate::group::wire::GroupRequest;
use crate::ids::{NodeId, TopicPartition, OFFSETS_TOPIC};
use crate::log::batch::{self, Record};
use crate::protocol::{
    CommitFence, ErrorCode, FetchOk, ListOffsetsOk, Message, Push, Request, Response,
    SubscriptionKey,
};
use crate::rng::Rng;
use crate::time::{Earliest, Instant};

use super::metadata::{Metadata, MetadataConfig};
use super::{jittered, CorrelationIds, RequestFailure, Transmit};

/// Kafka's `JOIN_GROUP_TIMEOUT_LAPSE`: what a join or sync may wait beyond the rebalance
/// timeout before the member gives up on it.
const JOIN_WAIT_LAPSE_MS: u64 = 5_000;

/// A consumer's receive buffer, by default: bytes of records (keys and values) fetched or
/// pushed and not yet taken by the application, over all its partitions.
pub const RECEIVE_BUFFER_BYTES_MAX_DEFAULT: u64 = 32 * 1024 * 1024;

/// How records reach the consumer (claim C1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Delivery {
    /// The broker holds a fetch until `min_bytes` arrive or `max_wait_ms` passes (Kafka).
    #[default]
    LongPoll,
    /// A fetch is answered at once; after an empty answer the next one waits this long.
    Pull { poll_interval_ms: u64 },
    /// One subscription per partition; the leader pushes committed batches. `credits` is the
    /// window of records pushed and not yet taken by the application; 0 is no flow control.
    Push { credits: u32 },
}

/// What the consumer counted of its deliveries since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Fetch answers received.
    pub fetches: u64,
    /// Fetch answers that brought no new data record: the cost of polling an idle partition.
    pub empty_fetches: u64,
    /// Pushes received with batches.
    pub pushes: u64,
    /// Bytes of records (keys and values) waiting for the application now.
    pub buffer_bytes: u64,
    /// The most `buffer_bytes` has been.
    pub buffer_bytes_peak: u64,
    /// Subscriptions the consumer dropped because a push would overflow its receive buffer
    /// (each renewed later): the "push floods slow consumers" count.
    pub overflows: u64,
    /// Subscriptions ended by the broker (it stopped leading) or by a closed connection.
    pub subscriptions_ended: u64,
    /// Bytes of records pushed that did not fit in the receive buffer and were thrown away:
    /// the broker sends them again after the subscription is renewed.
    pub push_discarded_bytes: u64,
}

/// The offsets partition that stores `group`'s commits: `crc32c(group) % offsets_partitions`.
pub fn coordinator_partition(group: &str, offsets_partitions: u32) -> u32 {
    assert!(offsets_partitions > 0, "the offsets topic has partitions");
    crc32c::crc32c(group.as_bytes()) % offsets_partitions
}

/// The consumer's settings. This is also the client half of a scenario's `[[consumers]]` table,
/// read by serde with these names and [`ConsumerConfig::default`] for what a table leaves out;
/// the table's `group` and delivery model (`delivery`, `poll_interval_ms`, `push_credits`) are
/// the workload's fields (`fathom_workload::spec::ConsumerSpec`), which set `group` and
/// `delivery` here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ConsumerConfig {
    #[serde(skip)]
    pub group: String,
    /// How long the broker may hold a fetch waiting for `min_bytes`.
    pub max_wait_ms: u32,
    pub min_bytes: u32,
    /// Bytes of batches in one fetch response.
    pub max_bytes: NonZeroU32,
    /// A request unanswered this long (plus `max_wait_ms` for a fetch) has failed.
    pub request_timeout_ms: u64,
    /// Fetching a partition stops while this many of its records wait for `poll_event`.
    pub buffered_records_max: usize,
    pub retry_backoff_ms: u64,
    pub metadata_refresh_backoff_ms: u64,
    /// Attempts of one commit after its first, for retriable failures.
    pub commit_retries_max: u32,
    /// Commits per partition waiting to be sent; one more is refused at once with an error.
    pub commits_pending_max: usize,
    #[serde(skip)]
    pub delivery: Delivery,
    /// Bytes of records held for the application over all partitions; only push can reach it
    /// (fetching pauses at `buffered_records_max`), and a push past it is an overflow.
    pub receive_buffer_bytes_max: u64,
}

/// A [`ConsumerConfig`] that cannot work: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidConsumerConfig {
    /// The field's name as a scenario spells it.
    pub field: &'static str,
    pub reason: String,
}

impl ConsumerConfig {
    /// Why this config cannot work, if it cannot: what the fields' types do not already refuse.
    pub fn validate(&self) -> Result<(), InvalidConsumerConfig> {
        if self.min_bytes > self.max_bytes.get() {
            return Err(InvalidConsumerConfig {
                field: "min_bytes",
                reason: format!(
                    "{} is above max_bytes ({}): no fetch could be answered before max_wait_ms",
                    self.min_bytes, self.max_bytes
                ),
            });
        }
        if self.request_timeout_ms == 0 {
            return Err(InvalidConsumerConfig {
                field: "request_timeout_ms",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

impl Default for ConsumerConfig {
    /// Kafka's defaults where Kafka has one.
    fn default() -> Self {
        ConsumerConfig {
            group: "fathom".to_string(),
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: NonZeroU32::new(1024 * 1024).expect("not zero"),
            request_timeout_ms: 30_000,
            buffered_records_max: 500,
            retry_backoff_ms: 100,
            metadata_refresh_backoff_ms: 100,
            commit_retries_max: 5,
            commits_pending_max: 64,
            delivery: Delivery::default(),
            receive_buffer_bytes_max: RECEIVE_BUFFER_BYTES_MAX_DEFAULT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerEvent {
    /// The committed offset of an assigned partition is known and fetching starts at `position`.
    Assigned {
        partition: TopicPartition,
        position: u64,
    },
    /// Data records in offset order, all buffered ones of one partition (up to a reset).
    Records {
        partition: TopicPartition,
        records: Vec<Record>,
    },
    /// The position was out of range on the broker and moved from `from` to `to`.
    PositionReset {
        partition: TopicPartition,
        from: u64,
        to: u64,
    },
    Committed {
        partition: TopicPartition,
        offset: u64,
        result: Result<(), String>,
    },
    /// The answer to [`Consumer::list_offsets`].
    Offsets {
        partition: TopicPartition,
        log_start: u64,
        high_watermark: u64,
    },
    /// The group gave this member `partitions` in `generation` (its member epoch under the
    /// broker-side protocol; 0 under client-side rebalancing). Each is then
    /// [`ConsumerEvent::Assigned`] once its committed offset is known.
    GroupAssigned {
        partitions: BTreeSet<TopicPartition>,
        generation: u32,
    },
    /// The member must give these up: fetching them has stopped and their buffered records are
    /// dropped. Commit what was processed of them, then call [`Consumer::revoked`].
    Revoked {
        partitions: BTreeSet<TopicPartition>,
        generation: u32,
    },
    /// No longer this member's, too late to commit (its session ended, it was fenced, or it
    /// missed `max_poll_interval_ms`): the next owner reads on from the last commit.
    Lost {
        partitions: BTreeSet<TopicPartition>,
        generation: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the group's committed offset.
    Starting,
    Fetching,
    /// The broker said the position at `from` is out of range; asking for the offsets.
    Resetting {
        from: u64,
    },
}

/// What waits in a partition's buffer for the application.
#[derive(Debug)]
enum Buffered {
    Record(Record),
    /// Kept in line with the records so the application sees the reset between the records
    /// before and after it.
    Reset {
        from: u64,
        to: u64,
    },
}

#[derive(Debug)]
struct Assignment {
    phase: Phase,
    /// The next offset to fetch; meaningful once `phase` is past `Starting`.
    position: u64,
    high_watermark: Option<u64>,
    buffer: VecDeque<Buffered>,
    buffered_records: usize,
    /// Bytes of the buffered records' keys and values.
    buffered_bytes: u64,
    in_flight: Option<u64>,
    retry_at: Instant,
    /// The push subscription, from the moment it is asked for until it ends.
    push: Option<PushSubscription>,
}

#[derive(Debug)]
struct PushSubscription {
    id: u64,
    broker: NodeId,
    /// Buffered records pushed under an earlier subscription: taking them returns no credit,
    /// as the broker's window for this one started full.
    stale_records: usize,
    /// Records taken by the application and not yet credited to the broker.
    to_credit: u32,
}

#[derive(Debug)]
struct PendingCommit {
    offset: u64,
    attempts: u32,
    /// The member's fence when the application asked; `None` outside a fenced group.
    fence: Option<CommitFence>,
}

#[derive(Debug, Default)]
struct CommitQueue {
    /// In commit order; the front is the one sent or about to be.
    pending: VecDeque<PendingCommit>,
    in_flight: Option<u64>,
    retry_at: Instant,
}

#[derive(Debug, Default)]
struct OffsetsQuery {
    in_flight: Option<u64>,
    retry_at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    OffsetFetch,
    Fetch,
    /// `ListOffsets` to resolve an out-of-range position.
    Reset,
    /// `ListOffsets` for the application.
    ListOffsets,
    Commit,
    /// The group member's request to the coordinator.
    Group,
    Subscribe,
}

#[derive(Debug)]
struct PendingRequest {
    kind: RequestKind,
    partition: TopicPartition,
    broker: NodeId,
    deadline: Instant,
}

/// The consumer state machine.
///
/// Calling contract: feed inputs (`assign` or `subscribe`, `commit`, `revoked`,
/// `list_offsets`, `handle_message`,
/// `handle_disconnected`, `handle_timeout`), then drain `poll_transmit` until `None` and
/// `poll_event` until `None`, then sleep until `poll_timeout` (or the next input) and call
/// `handle_timeout`. Taking records with `poll_event` can resume a paused partition, which
/// `poll_timeout` then reports as due at once.
#[derive(Debug)]
pub struct Consumer {
    config: ConsumerConfig,
    metadata: Metadata,
    rng: Rng,
    ids: CorrelationIds,
    now: Instant,
    assigned: BTreeMap<TopicPartition, Assignment>,
    requests: BTreeMap<u64, PendingRequest>,
    commits: BTreeMap<TopicPartition, CommitQueue>,
    offsets_queries: BTreeMap<TopicPartition, OffsetsQuery>,
    /// Events other than records; bounded by the assignment, the commit queues and the offsets
    /// queries that produce them.
    events: VecDeque<ConsumerEvent>,
    /// Round-robin start for the next partition whose records `poll_event` hands out.
    next_records: Option<TopicPartition>,
    /// The group membership, once subscribed.
    member: Option<GroupMember>,
    stats: DeliveryStats,
    /// Ids of push subscriptions, one new one per subscribe.
    next_subscription: u64,
    /// Subscriptions to end at their broker; at most one per partition ever assigned between
    /// two `poll_transmit` drains, which the driver runs after every input.
    unsubscribes: VecDeque<(NodeId, SubscriptionKey)>,
}

impl Consumer {
    pub fn new(config: ConsumerConfig, bootstrap: Vec<BrokerAddr>, mut rng: Rng) -> Consumer {
        let metadata_config = MetadataConfig {
            refresh_backoff_ms: config.metadata_refresh_backoff_ms,
            request_timeout_ms: config.request_timeout_ms,
        };
        let metadata = Metadata::new(bootstrap, metadata_config, rng.fork(1));
        Consumer {
            config,
            metadata,
            rng,
            ids: CorrelationIds::new(),
            now: Instant::ZERO,
            assigned: BTreeMap::new(),
            requests: BTreeMap::new(),
            commits: BTreeMap::new(),
            offsets_queries: BTreeMap::new(),
            events: VecDeque::new(),
            next_records: None,
            member: None,
            stats: DeliveryStats::default(),
            next_subscription: 0,
            unsubscribes: VecDeque::new(),
        }
    }

    /// What the consumer counted of its deliveries (claim C1's metrics).
    pub fn delivery_stats(&self) -> DeliveryStats {
        self.stats
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Asks for fresh metadata, as an operator's `metadata` command does.
    pub fn refresh_metadata(&mut self) {
        self.metadata.request_refresh();
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The address of a broker, for the driver to connect to.
    pub fn broker_addr(&self, broker: NodeId) -> Option<&str> {
        self.metadata.broker_addr(broker)
    }

    /// The next offset to fetch, once the committed offset is known.
    pub fn position(&self, partition: &TopicPartition) -> Option<u64> {
        self.assigned
            .get(partition)
            .filter(|a| a.phase != Phase::Starting)
            .map(|a| a.position)
    }

    /// The high watermark the last fetch response reported.
    pub fn high_watermark(&self, partition: &TopicPartition) -> Option<u64> {
        self.assigned.get(partition)?.high_watermark
    }

    /// The leader of the group's offsets partition, and that partition.
    pub fn coordinator(&self) -> Option<(TopicPartition, Option<NodeId>)> {
        let n = self.metadata.offsets_partitions()?;
        let partition =
            TopicPartition::new(OFFSETS_TOPIC, coordinator_partition(&self.config.group, n));
        let leader = self.metadata.leader(&partition);
        Some((partition, leader))
    }

    /// Replaces the assignment. Partitions kept keep their position and buffered records;
    /// dropped ones lose them; new ones start from the group's committed offset.
    pub fn assign(&mut self, now: Instant, partitions: Vec<TopicPartition>) {
        self.advance(now);
        let wanted: BTreeMap<TopicPartition, ()> =
            partitions.into_iter().map(|p| (p, ())).collect();
        let dropped: Vec<TopicPartition> = self
            .assigned
            .keys()
            .filter(|p| !wanted.contains_key(*p))
            .cloned()
            .collect();
        for partition in dropped {
            self.drop_assignment(partition);
        }
        self.requests.retain(|_, r| {
            !matches!(
                r.kind,
                RequestKind::OffsetFetch
                    | RequestKind::Fetch
                    | RequestKind::Reset
                    | RequestKind::Subscribe
            ) || wanted.contains_key(&r.partition)
        });
        for partition in wanted.into_keys() {
            self.assigned
                .entry(partition)
                .or_insert_with(|| Assignment {
                    phase: Phase::Starting,
                    position: 0,
                    high_watermark: None,
                    buffer: VecDeque::new(),
                    buffered_records: 0,
                    buffered_bytes: 0,
                    in_flight: None,
                    retry_at: Instant::ZERO,
                    push: None,
                });
        }
        self.want_metadata();
    }

    /// Joins the consumer's group as `client_id` under `member`'s protocol (its `group` is
    /// replaced by the consumer's): from now on the coordinator assigns the partitions.
    pub fn subscribe(&mut self, now: Instant, mut member: MemberConfig, client_id: &str) {
        self.advance(now);
        member.group = self.config.group.clone();
        self.member = Some(GroupMember::new(member, client_id, now));
        self.want_metadata();
    }

    /// The group member, once subscribed.
    pub fn member(&self) -> Option<&GroupMember> {
        self.member.as_ref()
    }

    /// The application has committed what it processed of the last
    /// [`ConsumerEvent::Revoked`] partitions: the member may let them go.
    pub fn revoked(&mut self, now: Instant) {
        self.advance(now);
        if let Some(m) = self.member.as_mut() {
            m.revoked(now);
        }
    }

    /// A clean shutdown of a group member (after the application committed what it
    /// processed): a dynamic member leaves the group at once, and nothing more is fetched.
    pub fn close(&mut self, now: Instant) {
        self.advance(now);
        if let Some(m) = self.member.as_mut() {
            m.close();
        }
        self.drop_partitions(&self.assigned.keys().cloned().collect());
    }

    /// Commits `offset` (the next offset the group will read) for `partition`; the result comes
    /// as a [`ConsumerEvent::Committed`].
    pub fn commit(&mut self, now: Instant, partition: TopicPartition, offset: u64) {
        self.advance(now);
        let fence =
            self.member
                .as_ref()
                .and_then(|m| m.commit_fence())
                .map(|(member_id, generation)| CommitFence {
                    member_id,
                    generation,
                });
        let queue = self.commits.entry(partition.clone()).or_default();
        if queue.pending.len() >= self.config.commits_pending_max {
            self.events.push_back(ConsumerEvent::Committed {
                partition,
                offset,
                result: Err(format!(
                    "{} commits already pending for this partition",
                    self.config.commits_pending_max
                )),
            });
            return;
        }
        queue.pending.push_back(PendingCommit {
            offset,
            attempts: 0,
            fence,
        });
        self.want_metadata();
    }

    /// Asks the partition's leader for its offsets; the answer comes as a
    /// [`ConsumerEvent::Offsets`]. Retried until it succeeds.
    pub fn list_offsets(&mut self, now: Instant, partition: TopicPartition) {
        self.advance(now);
        self.offsets_queries.entry(partition).or_default();
        self.want_metadata();
    }

    pub fn handle_message(&mut self, now: Instant, from: NodeId, msg: Message) {
        self.advance(now);
        let (correlation_id, response) = match msg {
            Message::Response {
                correlation_id,
                response,
            } => (correlation_id, response),
            Message::Push(push) => {
                self.pushed(from, push);
                self.want_metadata();
                return;
            }
            _ => return,
        };
        if self.metadata.owns(correlation_id) {
            self.metadata.handle_response(now, correlation_id, response);
        } else if let Some(request) = self.requests.remove(&correlation_id) {
            self.handle_response(correlation_id, from, request, response);
        }
        self.want_metadata();
    }

    /// The connection to `broker` is gone: each request in flight to it has failed.
    pub fn handle_disconnected(&mut self, now: Instant, broker: NodeId) {
        self.advance(now);
        self.metadata.handle_disconnected(now, broker);
        let lost: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.broker == broker)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            let request = self.requests.remove(&id).expect("listed above");
            self.request_failed(id, request, RequestFailure::Disconnected);
        }
        self.end_subscriptions_at(broker);
        self.want_metadata();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.metadata.handle_timeout(now);
        if let Some(m) = self.member.as_mut() {
            if m.poll_timeout().is_some_and(|t| t <= now) {
                m.handle_timeout(now);
            }
        }
        self.member_events();
        let expired: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let request = self.requests.remove(&id).expect("listed above");
            self.request_failed(id, request, RequestFailure::TimedOut);
        }
        self.want_metadata();
    }

    /// The earliest time `handle_timeout` has work: a request deadline, a backoff ending, a
    /// metadata refresh, or now if `poll_event` freed room for a fetch. `None` when idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Folded as they come: this runs on every turn of the driver's loop.
        let mut deadlines = Earliest::of([
            self.metadata.poll_timeout(),
            self.requests.values().map(|r| r.deadline).min(),
        ]);
        let coordinator = self.coordinator().and_then(|(_, leader)| leader);
        if let Some(m) = &self.member {
            // Without a coordinator to send to, only the member's own timers count.
            let in_flight = self.requests.values().any(|r| r.kind == RequestKind::Group);
            let request = coordinator.is_some() && !in_flight;
            deadlines.add(match request {
                true => m.poll_timeout(),
                false => m.poll_timeout().filter(|t| *t > self.now),
            });
        }
        for (partition, a) in &self.assigned {
            deadlines.add(
                self.fetch_target(partition, a, coordinator)
                    .map(|(_, at)| at),
            );
        }
        let credit_due = self.assigned.values().any(|a| self.credit_due(a).is_some());
        if credit_due || !self.unsubscribes.is_empty() {
            deadlines.add(Some(self.now));
        }
        for q in self.commits.values() {
            let ready = coordinator.is_some() && q.in_flight.is_none() && !q.pending.is_empty();
            deadlines.add(ready.then_some(q.retry_at));
        }
        for (partition, q) in &self.offsets_queries {
            let ready = q.in_flight.is_none() && self.metadata.leader(partition).is_some();
            deadlines.add(ready.then_some(q.retry_at));
        }
        deadlines.get()
    }

    /// The next message for a broker.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let now = self.now;
        if let Some(t) = self.metadata.poll_transmit(now, &mut self.ids) {
            return Some(t);
        }
        if let Some(t) = self.group_transmit() {
            return Some(t);
        }
        if let Some(t) = self.push_control_transmit() {
            return Some(t);
        }
        let coordinator = self.coordinator();
        let coordinator_leader = coordinator.as_ref().and_then(|(_, leader)| *leader);
        let next = self.assigned.iter().find_map(|(partition, a)| {
            let (to, at) = self.fetch_target(partition, a, coordinator_leader)?;
            (at <= now).then(|| (partition.clone(), to, a.phase, a.position))
        });
        if let Some((partition, to, phase, position)) = next {
            let (kind, request) = match phase {
                Phase::Starting => (
                    RequestKind::OffsetFetch,
                    Request::OffsetFetch {
                        group: self.config.group.clone(),
                        partition: partition.clone(),
                    },
                ),
                Phase::Fetching => self.delivery_request(&partition, position),
                Phase::Resetting { .. } => (
                    RequestKind::Reset,
                    Request::ListOffsets {
                        partition: partition.clone(),
                    },
                ),
            };
            let subscription = match &request {
                Request::Subscribe { subscription, .. } => Some(subscription.id),
                _ => None,
            };
            let (id, transmit) = self.request(kind, partition.clone(), to, request, Duration::ZERO);
            let a = self.assigned.get_mut(&partition).expect("found above");
            a.in_flight = Some(id);
            if let Some(id) = subscription {
                a.push = Some(PushSubscription {
                    id,
                    broker: to,
                    stale_records: a.buffered_records,
                    to_credit: 0,
                });
            }
            return Some(transmit);
        }
        if let Some(to) = coordinator_leader {
            let next = self.commits.iter().find_map(|(partition, q)| {
                let ready = q.in_flight.is_none() && q.retry_at <= now;
                ready.then(|| {
                    let c = q.pending.front()?;
                    Some((partition.clone(), c.offset, c.fence.clone()))
                })?
            });
            if let Some((partition, offset, fence)) = next {
                let group = self.config.group.clone();
                let request = match fence {
                    Some(fence) => Request::MemberOffsetCommit {
                        group,
                        partition: partition.clone(),
                        offset,
                        fence,
                    },
                    None => Request::OffsetCommit {
                        group,
                        partition: partition.clone(),
                        offset,
                    },
                };
                let (id, transmit) = self.request(
                    RequestKind::Commit,
                    partition.clone(),
                    to,
                    request,
                    Duration::ZERO,
                );
                self.commits
                    .get_mut(&partition)
                    .expect("found above")
                    .in_flight = Some(id);
                return Some(transmit);
            }
        }
        let next = self.offsets_queries.iter().find_map(|(partition, q)| {
            let ready = q.in_flight.is_none() && q.retry_at <= now;
            ready.then(|| Some((partition.clone(), self.metadata.leader(partition)?)))?
        });
        if let Some((partition, to)) = next {
            let request = Request::ListOffsets {
                partition: partition.clone(),
            };
            let (id, transmit) = self.request(
                RequestKind::ListOffsets,
                partition.clone(),
                to,
                request,
                Duration::ZERO,
            );
            self.offsets_queries
                .get_mut(&partition)
                .expect("found above")
                .in_flight = Some(id);
            return Some(transmit);
        }
        None
    }

    /// [`Consumer::poll_event`] for a group member's application, which says when it polls:
    /// as Kafka's `poll()` does first, a member that let `max_poll_interval_ms` pass has left
    /// the group, so its partitions (and their buffered records) are lost before anything is
    /// handed out; then its poll clock restarts at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<ConsumerEvent> {
        self.advance(now);
        if let Some(m) = self.member.as_mut() {
            if m.poll_timeout().is_some_and(|t| t <= self.now) {
                m.handle_timeout(self.now);
            }
            self.member_events();
        }
        if let Some(m) = self.member.as_mut() {
            m.polled(self.now);
        }
        self.poll_event()
    }

    /// The next result for the application: other events first, then the buffered records of
    /// one partition at a time, round-robin. A group member's application polls with
    /// [`Consumer::poll`], which keeps its max poll interval.
    pub fn poll_event(&mut self) -> Option<ConsumerEvent> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        let partition = match &self.next_records {
            Some(start) => self
                .assigned
                .range(start.clone()..)
                .chain(self.assigned.range(..start.clone()))
                .find(|(_, a)| !a.buffer.is_empty())
                .map(|(p, _)| p.clone()),
            None => self
                .assigned
                .iter()
                .find(|(_, a)| !a.buffer.is_empty())
                .map(|(p, _)| p.clone()),
        }?;
        self.next_records = self
            .assigned
            .range(&partition..)
            .nth(1)
            .map(|(p, _)| p.clone());
        let a = self.assigned.get_mut(&partition).expect("found above");
        if let Some(Buffered::Reset { from, to }) = a.buffer.front() {
            let (from, to) = (*from, *to);
            a.buffer.pop_front();
            return Some(ConsumerEvent::PositionReset {
                partition,
                from,
                to,
            });
        }
        let mut records = Vec::new();
        while let Some(Buffered::Record(_)) = a.buffer.front() {
            let Some(Buffered::Record(r)) = a.buffer.pop_front() else {
                unreachable!("checked above");
            };
            records.push(r);
        }
        a.buffered_records -= records.len();
        let bytes: u64 = records.iter().map(record_bytes).sum();
        a.buffered_bytes = a.buffered_bytes.saturating_sub(bytes);
        self.stats.buffer_bytes = self.stats.buffer_bytes.saturating_sub(bytes);
        if let Some(s) = a.push.as_mut() {
            // Records pushed under an earlier subscription earn this one no credit.
            let stale = s.stale_records.min(records.len());
            s.stale_records -= stale;
            let fresh = u32::try_from(records.len() - stale).unwrap_or(u32::MAX);
            s.to_credit = s.to_credit.saturating_add(fresh);
        }
        Some(ConsumerEvent::Records { partition, records })
    }

    /// The member's next request, if one is due and the coordinator is known.
    fn group_transmit(&mut self) -> Option<Transmit> {
        let (offsets, leader) = self.coordinator()?;
        let to = leader?;
        if self.requests.values().any(|r| r.kind == RequestKind::Group) {
            return None;
        }
        let counts: BTreeMap<String, u32> = {
            let m = self.member.as_ref()?;
            m.config()
                .topics
                .iter()
                .filter_map(|t| Some((t.clone(), self.metadata.partition_count(t)?)))
                .collect()
        };
        let m = self.member.as_mut()?;
        m.set_topic_partitions(counts);
        let request = m.poll_request(self.now)?;
        // A join or sync may rightly wait for the whole group, up to the rebalance timeout
        // and the initial rebalance delay: Kafka gives a join the rebalance timeout plus 5 s.
        let waits = matches!(request, GroupRequest::Join(_) | GroupRequest::Sync { .. });
        let wait_ms = match waits {
            true => u64::from(m.config().max_poll_interval_ms) + JOIN_WAIT_LAPSE_MS,
            false => 0,
        };
        let (_, transmit) = self.request(
            RequestKind::Group,
            offsets,
            to,
            Request::Group(request),
            Duration::from_millis(wait_ms),
        );
        Some(transmit)
    }

    /// Carries out what the member decided: start, stop or drop partitions, and tell the
    /// application.
    fn member_events(&mut self) {
        loop {
            let Some(m) = self.member.as_mut() else {
                return;
            };
            let generation = m.generation();
            let Some(event) = m.poll_event() else {
                return;
            };
            match event {
                MemberEvent::Assigned {
                    partitions,
                    generation,
                } => {
                    self.add_partitions(&partitions);
                    self.events.push_back(ConsumerEvent::GroupAssigned {
                        partitions,
                        generation,
                    });
                }
                MemberEvent::Revoke { partitions } => {
                    self.drop_partitions(&partitions);
                    self.events.push_back(ConsumerEvent::Revoked {
                        partitions,
                        generation,
                    });
                }
                MemberEvent::Lost { partitions } => {
                    self.drop_partitions(&partitions);
                    self.events.push_back(ConsumerEvent::Lost {
                        partitions,
                        generation,
                    });
                }
            }
        }
    }

    fn add_partitions(&mut self, partitions: &BTreeSet<TopicPartition>) {
        let mut wanted: Vec<TopicPartition> = self.assigned.keys().cloned().collect();
        wanted.extend(partitions.iter().cloned());
        self.assign(self.now, wanted);
    }

    fn drop_partitions(&mut self, partitions: &BTreeSet<TopicPartition>) {
        let wanted: Vec<TopicPartition> = self
            .assigned
            .keys()
            .filter(|p| !partitions.contains(*p))
            .cloned()
            .collect();
        self.assign(self.now, wanted);
    }

    /// Moves the clock on; an input stamped a little in the past (the application read the
    /// time before the driver's last step) is taken as happening now.
    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Where and when an assigned partition's next request can go: `None` while one is in
    /// flight, its broker is unknown, or its buffer is full.
    fn fetch_target(
        &self,
        partition: &TopicPartition,
        a: &Assignment,
        coordinator: Option<NodeId>,
    ) -> Option<(NodeId, Instant)> {
        if a.in_flight.is_some() {
            return None;
        }
        let push = matches!(self.config.delivery, Delivery::Push { .. });
        let to = match a.phase {
            Phase::Starting => coordinator?,
            // A subscription, once asked for, needs no further request.
            Phase::Fetching if a.push.is_some() => return None,
            // Pull's back-pressure; push has its credit window (or none) instead.
            Phase::Fetching if !push && a.buffered_records >= self.config.buffered_records_max => {
                return None
            }
            Phase::Fetching | Phase::Resetting { .. } => self.metadata.leader(partition)?,
        };
        Some((to, a.retry_at))
    }

    fn request(
        &mut self,
        kind: RequestKind,
        partition: TopicPartition,
        to: NodeId,
        request: Request,
        extra_wait: Duration,
    ) -> (u64, Transmit) {
        let correlation_id = self.ids.next_id();
        let mut timeout = Duration::from_millis(self.config.request_timeout_ms) + extra_wait;
        if kind == RequestKind::Fetch {
            // The broker may rightly hold a fetch for max_wait_ms before answering.
            timeout += Duration::from_millis(self.config.max_wait_ms as u64);
        }
        self.requests.insert(
            correlation_id,
            PendingRequest {
                kind,
                partition,
                broker: to,
                deadline: self.now + timeout,
            },
        );
        let msg = Message::Request {
            correlation_id,
            request,
        };
        (correlation_id, Transmit { to, lane: 0, msg })
    }

    fn handle_response(
        &mut self,
        correlation_id: u64,
        from: NodeId,
        request: PendingRequest,
        response: Response,
    ) {
        let partition = request.partition.clone();
        let failure = match (request.kind, response) {
            (RequestKind::OffsetFetch, Response::OffsetFetch(Ok(committed))) => {
                let Some(a) = owned_assignment(&mut self.assigned, &partition, correlation_id)
                else {
                    return;
                };
                a.phase = Phase::Fetching;
                a.position = committed.unwrap_or(0);
                a.retry_at = Instant::ZERO;
                let position = a.position;
                self.events.push_back(ConsumerEvent::Assigned {
                    partition,
                    position,
                });
                return;
            }
            (RequestKind::Fetch, Response::Fetch(Ok(ok))) => {
                self.fetched(correlation_id, &partition, ok);
                return;
            }
            (RequestKind::Subscribe, Response::Subscribe(Ok(()))) => {
                // The subscription stands from when it was asked for; pushes follow.
                let _ = owned_assignment(&mut self.assigned, &partition, correlation_id);
                return;
            }
            (RequestKind::Reset, Response::ListOffsets(Ok(offsets))) => {
                self.reset(correlation_id, &partition, offsets);
                return;
            }
            (RequestKind::ListOffsets, Response::ListOffsets(Ok(offsets))) => {
                if self
                    .offsets_queries
                    .get(&partition)
                    .is_none_or(|q| q.in_flight != Some(correlation_id))
                {
                    return;
                }
                self.offsets_queries.remove(&partition);
                self.events.push_back(ConsumerEvent::Offsets {
                    partition,
                    log_start: offsets.log_start,
                    high_watermark: offsets.high_watermark,
                });
                return;
            }
            (RequestKind::Commit, Response::OffsetCommit(Ok(()))) => {
                let Some(q) = self.commits.get_mut(&partition) else {
                    return;
                };
                if q.in_flight != Some(correlation_id) {
                    return;
                }
                q.in_flight = None;
                let commit = q.pending.pop_front().expect("a commit was in flight");
                if q.pending.is_empty() {
                    self.commits.remove(&partition);
                }
                self.events.push_back(ConsumerEvent::Committed {
                    partition,
                    offset: commit.offset,
                    result: Ok(()),
                });
                return;
            }
            (RequestKind::Group, Response::Group(Ok(answer))) => {
                if let Some(m) = self.member.as_mut() {
                    m.handle_response(self.now, answer);
                }
                self.member_events();
                return;
            }
            (RequestKind::Fetch, Response::Fetch(Err(ErrorCode::OffsetOutOfRange)))
            | (RequestKind::Subscribe, Response::Subscribe(Err(ErrorCode::OffsetOutOfRange))) => {
                let Some(a) = owned_assignment(&mut self.assigned, &partition, correlation_id)
                else {
                    return;
                };
                a.phase = Phase::Resetting { from: a.position };
                a.retry_at = Instant::ZERO;
                a.push = None;
                return;
            }
            (
                _,
                Response::OffsetFetch(Err(e))
                | Response::Fetch(Err(e))
                | Response::ListOffsets(Err(e))
                | Response::OffsetCommit(Err(e))
                | Response::Group(Err(e))
                | Response::Subscribe(Err(e)),
            ) => RequestFailure::Broker(e),
            _ => RequestFailure::Unexpected,
        };
        let request = PendingRequest {
            broker: from,
            ..request
        };
        self.request_failed(correlation_id, request, failure);
    }

    fn fetched(&mut self, correlation_id: u64, partition: &TopicPartition, ok: FetchOk) {
        let Some(a) = owned_assignment(&mut self.assigned, partition, correlation_id) else {
            return;
        };
        self.stats.fetches += 1;
        a.high_watermark = Some(ok.high_watermark);
        let Some(decoded) = decode_batches(partition, &ok) else {
            a.retry_at = self.now + jittered(&mut self.rng, self.config.retry_backoff_ms);
            return;
        };
        let added = take_batches(a, decoded, &mut self.stats);
        a.retry_at = match (added, self.config.delivery) {
            // The naive polling loop: nothing new, so wait before asking again.
            (0, Delivery::Pull { poll_interval_ms }) => {
                self.now + Duration::from_millis(poll_interval_ms)
            }
            _ => Instant::ZERO,
        };
        if added == 0 {
            self.stats.empty_fetches += 1;
        }
    }

    /// A push from `from`: batches of a current subscription go to the buffer unless they
    /// would overflow it, which drops the subscription; an error ends the subscription. Either
    /// way it is renewed from the position after the retry backoff. Pushes of a subscription
    /// the consumer has replaced or dropped are ignored.
    fn pushed(&mut self, from: NodeId, push: Push) {
        let partition = push.subscription.partition.clone();
        let Some(a) = self.assigned.get_mut(&partition) else {
            return;
        };
        let current = a
            .push
            .as_ref()
            .is_some_and(|s| s.id == push.subscription.id && s.broker == from);
        if !current || a.phase != Phase::Fetching {
            return;
        }
        let backoff = jittered(&mut self.rng, self.config.retry_backoff_ms);
        let ok = match push.result {
            Ok(ok) => ok,
            Err(e) => {
                tracing::debug!(%partition, error = %e, "push subscription ended by the broker");
                a.push = None;
                a.retry_at = self.now + backoff;
                self.stats.subscriptions_ended += 1;
                let failure = RequestFailure::Broker(e);
                self.metadata
                    .handle_request_failure(&partition, from, &failure);
                return;
            }
        };
        a.high_watermark = Some(ok.high_watermark);
        // A corrupt push, or one that does not start at the position (a gap would skip
        // records), cannot be taken: the subscription is renewed from the position.
        let decoded = decode_batches(&partition, &ok)
            .filter(|d| d.first().is_some_and(|(h, _)| h.base_offset <= a.position));
        let room = self
            .config
            .receive_buffer_bytes_max
            .saturating_sub(self.stats.buffer_bytes);
        let incoming = decoded.as_ref().map_or(0, |d| batches_bytes(d));
        let (fitting, overflowed) = match decoded {
            Some(d) => fit_in(d, room, self.stats.buffer_bytes == 0),
            None => (Vec::new(), false),
        };
        let kept = batches_bytes(&fitting);
        self.stats.push_discarded_bytes = self
            .stats
            .push_discarded_bytes
            .saturating_add(incoming.saturating_sub(kept));
        let whole = !fitting.is_empty() && !overflowed;
        if !fitting.is_empty() {
            self.stats.pushes += 1;
            take_batches(a, fitting, &mut self.stats);
        }
        if whole {
            return;
        }
        // Overflowed, corrupt or out of place: drop the subscription, renew it from the
        // position (just past what was buffered) after the backoff.
        if overflowed {
            self.stats.overflows += 1;
        }
        if let Some(s) = a.push.take() {
            let key = SubscriptionKey {
                partition: partition.clone(),
                id: s.id,
            };
            self.unsubscribes.push_back((s.broker, key));
        }
        a.retry_at = self.now + backoff;
    }

    /// The connection to `broker` closed: its push subscriptions end and are renewed after
    /// the backoff. The backoff is drawn only when one ends, so that consumers without push
    /// draw from their generator exactly as before push existed (same seed, same run).
    fn end_subscriptions_at(&mut self, broker: NodeId) {
        let ended: Vec<TopicPartition> = self
            .assigned
            .iter()
            .filter(|(_, a)| a.push.as_ref().is_some_and(|s| s.broker == broker))
            .map(|(p, _)| p.clone())
            .collect();
        if ended.is_empty() {
            return;
        }
        let backoff = jittered(&mut self.rng, self.config.retry_backoff_ms);
        for partition in ended {
            if let Some(a) = self.assigned.get_mut(&partition) {
                a.push = None;
                a.retry_at = self.now + backoff;
                self.stats.subscriptions_ended += 1;
            }
        }
    }

    /// The request that brings `partition` its records from `position`, by delivery model.
    fn delivery_request(
        &mut self,
        partition: &TopicPartition,
        position: u64,
    ) -> (RequestKind, Request) {
        let partition = partition.clone();
        let max_bytes = self.config.max_bytes.get();
        let max_wait_ms = match self.config.delivery {
            Delivery::LongPoll => self.config.max_wait_ms,
            Delivery::Pull { .. } => 0,
            Delivery::Push { credits } => {
                self.next_subscription += 1;
                let subscription = SubscriptionKey {
                    partition,
                    id: self.next_subscription,
                };
                let request = Request::Subscribe {
                    subscription,
                    offset: position,
                    credits,
                    max_bytes,
                };
                return (RequestKind::Subscribe, request);
            }
        };
        let request = Request::Fetch {
            partition,
            offset: position,
            max_wait_ms,
            min_bytes: self.config.min_bytes,
            max_bytes,
        };
        (RequestKind::Fetch, request)
    }

    /// Credits the broker is owed for `a`'s subscription: half a window taken, or all the
    /// records taken once nothing is left buffered (so a window smaller than a batch moves).
    fn credit_due(&self, a: &Assignment) -> Option<u32> {
        let Delivery::Push { credits } = self.config.delivery else {
            return None;
        };
        let s = a.push.as_ref()?;
        let threshold = (credits / 2).max(1);
        let due = s.to_credit >= threshold || (s.to_credit > 0 && a.buffered_records == 0);
        (credits > 0 && due).then_some(s.to_credit)
    }

    /// The next one-way push message: an unsubscribe, or credits returned.
    fn push_control_transmit(&mut self) -> Option<Transmit> {
        if let Some((to, subscription)) = self.unsubscribes.pop_front() {
            let msg = Message::Unsubscribe { subscription };
            return Some(Transmit { to, lane: 0, msg });
        }
        let (partition, records) = self
            .assigned
            .iter()
            .find_map(|(p, a)| Some((p, self.credit_due(a)?)))?;
        let partition = partition.clone();
        let s = self.assigned.get_mut(&partition)?.push.as_mut()?;
        s.to_credit = 0;
        let subscription = SubscriptionKey {
            partition,
            id: s.id,
        };
        let msg = Message::PushCredit {
            subscription,
            records,
        };
        Some(Transmit {
            to: s.broker,
            lane: 0,
            msg,
        })
    }

    /// Forgets a partition: its buffered records and its subscription, which its broker is
    /// told to end.
    fn drop_assignment(&mut self, partition: TopicPartition) {
        let Some(a) = self.assigned.remove(&partition) else {
            return;
        };
        self.stats.buffer_bytes = self.stats.buffer_bytes.saturating_sub(a.buffered_bytes);
        if let Some(s) = a.push {
            let key = SubscriptionKey {
                partition,
                id: s.id,
            };
            self.unsubscribes.push_back((s.broker, key));
        }
    }

    fn reset(&mut self, correlation_id: u64, partition: &TopicPartition, offsets: ListOffsetsOk) {
        let Some(a) = owned_assignment(&mut self.assigned, partition, correlation_id) else {
            return;
        };
        let Phase::Resetting { from } = a.phase else {
            return;
        };
        // Below the log start the earliest record is the nearest; above the end, the end.
        // Within range the out-of-range answer was transient (say, a new leader whose high
        // watermark had not caught up) and the position stands.
        let to = if from < offsets.log_start {
            offsets.log_start
        } else if from > offsets.high_watermark {
            offsets.high_watermark
        } else {
            from
        };
        a.phase = Phase::Fetching;
        a.position = to;
        a.high_watermark = Some(offsets.high_watermark);
        a.retry_at = Instant::ZERO;
        if to != from {
            a.buffer.push_back(Buffered::Reset { from, to });
        }
    }

    fn request_failed(
        &mut self,
        correlation_id: u64,
        request: PendingRequest,
        failure: RequestFailure,
    ) {
        let partition = request.partition;
        let backoff = jittered(&mut self.rng, self.config.retry_backoff_ms);
        let retry_at = self.now + backoff;
        tracing::debug!(%partition, kind = ?request.kind, %failure, "consumer request failed");
        let target = match request.kind {
            RequestKind::OffsetFetch | RequestKind::Commit | RequestKind::Group => {
                self.coordinator().map(|(p, _)| p)
            }
            _ => Some(partition.clone()),
        };
        if let Some(target) = target {
            self.metadata
                .handle_request_failure(&target, request.broker, &failure);
        }
        match request.kind {
            RequestKind::Group => {
                if let Some(m) = self.member.as_mut() {
                    m.handle_failure(self.now);
                }
                self.member_events();
            }
            RequestKind::OffsetFetch
            | RequestKind::Fetch
            | RequestKind::Reset
            | RequestKind::Subscribe => {
                // Retried until it works: a partition has nothing better to do.
                if let Some(a) = owned_assignment(&mut self.assigned, &partition, correlation_id) {
                    a.retry_at = retry_at;
                    if request.kind == RequestKind::Subscribe {
                        a.push = None;
                    }
                }
            }
            RequestKind::ListOffsets => {
                if let Some(q) = self.offsets_queries.get_mut(&partition) {
                    if q.in_flight != Some(correlation_id) {
                        return;
                    }
                    q.in_flight = None;
                    q.retry_at = retry_at;
                }
            }
            RequestKind::Commit => {
                let Some(q) = self.commits.get_mut(&partition) else {
                    return;
                };
                if q.in_flight != Some(correlation_id) {
                    return;
                }
                q.in_flight = None;
                q.retry_at = retry_at;
                let commit = q.pending.front_mut().expect("a commit was in flight");
                commit.attempts += 1;
                if failure.is_retriable() && commit.attempts <= self.config.commit_retries_max {
                    return;
                }
                let offset = commit.offset;
                q.pending.pop_front();
                if q.pending.is_empty() {
                    self.commits.remove(&partition);
                }
                self.events.push_back(ConsumerEvent::Committed {
                    partition,
                    offset,
                    result: Err(failure.to_string()),
                });
            }
        }
    }

    /// Asks for metadata while some request has no broker to go to.
    fn want_metadata(&mut self) {
        let coordinator = self.coordinator();
        let coordinator_known = coordinator.as_ref().is_some_and(|(_, l)| l.is_some());
        let needs_coordinator = self.assigned.values().any(|a| a.phase == Phase::Starting)
            || !self.commits.is_empty()
            || self.member.is_some();
        let leader_unknown = |p: &TopicPartition| self.metadata.leader(p).is_none();
        let needs_leader = self
            .assigned
            .iter()
            .any(|(p, a)| a.phase != Phase::Starting && leader_unknown(p))
            || self.offsets_queries.keys().any(leader_unknown);
        if (needs_coordinator && !coordinator_known) || needs_leader {
            self.metadata.request_refresh();
        }
    }
}

/// Every batch of a fetch or push answer with its records, or `None` when one fails its
/// checks: a corrupt batch voids the whole answer.
fn decode_batches(
    partition: &TopicPartition,
    ok: &FetchOk,
) -> Option<Vec<(batch::BatchHeader, Vec<Record>)>> {
    let mut decoded = Vec::with_capacity(ok.batches.len());
    for bytes in &ok.batches {
        match batch::validate(bytes).and_then(|h| Ok((h, batch::records(bytes)?))) {
            Ok(d) => decoded.push(d),
            Err(error) => {
                tracing::warn!(%partition, %error, "corrupt batch in a fetch or push; asking again");
                return None;
            }
        }
    }
    Some(decoded)
}

/// Buffers the data records at or past the position and moves the position past the batches;
/// returns how many records were added.
fn take_batches(
    a: &mut Assignment,
    decoded: Vec<(batch::BatchHeader, Vec<Record>)>,
    stats: &mut DeliveryStats,
) -> usize {
    let mut added = 0;
    for (header, records) in decoded {
        if header.end_offset() <= a.position {
            continue;
        }
        if !header.is_control() {
            for r in records.into_iter().filter(|r| r.offset >= a.position) {
                let bytes = record_bytes(&r);
                a.buffered_bytes = a.buffered_bytes.saturating_add(bytes);
                stats.buffer_bytes = stats.buffer_bytes.saturating_add(bytes);
                a.buffer.push_back(Buffered::Record(r));
                a.buffered_records += 1;
                added += 1;
            }
        }
        a.position = header.end_offset();
    }
    stats.buffer_bytes_peak = stats.buffer_bytes_peak.max(stats.buffer_bytes);
    added
}

/// The leading batches of a push that fit in `room` bytes of the receive buffer, and whether
/// any did not. Into an empty buffer the first batch always goes, as a fetch always returns
/// its first batch whatever its size: the buffer is bounded by its limit plus one batch.
#[allow(clippy::type_complexity)]
fn fit_in(
    decoded: Vec<(batch::BatchHeader, Vec<Record>)>,
    room: u64,
    buffer_empty: bool,
) -> (Vec<(batch::BatchHeader, Vec<Record>)>, bool) {
    let mut fitting = Vec::with_capacity(decoded.len());
    let mut used: u64 = 0;
    let total = decoded.len();
    for (header, records) in decoded {
        let bytes: u64 = records.iter().map(record_bytes).sum();
        let first_into_empty = buffer_empty && fitting.is_empty();
        if used.saturating_add(bytes) > room && !first_into_empty {
            break;
        }
        used = used.saturating_add(bytes);
        fitting.push((header, records));
    }
    let overflowed = fitting.len() < total;
    (fitting, overflowed)
}

/// Bytes of the records of `decoded`, as the receive buffer counts them.
fn batches_bytes(decoded: &[(batch::BatchHeader, Vec<Record>)]) -> u64 {
    decoded
        .iter()
        .flat_map(|(_, records)| records)
        .map(record_bytes)
        .sum()
}

/// What a record takes in the receive buffer: its key and value.
fn record_bytes(r: &Record) -> u64 {
    (r.key.len() + r.value.len()) as u64
}

/// The assignment `correlation_id` was sent for, if it is still assigned and still waiting for
/// that request; it no longer waits afterwards.
fn owned_assignment<'a>(
    assigned: &'a mut BTreeMap<TopicPartition, Assignment>,
    partition: &TopicPartition,
    correlation_id: u64,
) -> Option<&'a mut Assignment> {
    let a = assigned.get_mut(partition)?;
    if a.in_flight != Some(correlation_id) {
        return None;
    }
    a.in_flight = None;
    Some(a)
}
