//! The broker: one node of the cluster, hosting replicas of many partitions and answering
//! clients.
//!
//! # Calling contract
//!
//! The driver owns connections and files; the broker owns everything else.
//!
//! - Start: [`Broker::recover`] with every file under the broker's data directory (none on a
//!   fresh disk).
//! - Inputs: [`Broker::handle_message`] for every frame that arrives on an accepted connection
//!   (identified by a driver-chosen [`ConnId`]), [`Broker::handle_disconnected`] when one closes,
//!   [`Broker::handle_synced`] when a `Sync` storage op completes, and
//!   [`Broker::handle_timeout`]. A storage op that fails leaves the broker unable to know what
//!   reached the disk: the driver stops it, and it recovers from the disk on restart (as
//!   Redpanda does on a failed fsync).
//! - After each input, drain [`Broker::poll_output`]: execute `Storage` ops in order, send
//!   `Transmit`s (to a connection, or to a peer broker over an outgoing connection the driver
//!   keeps), and close connections on `Close`. Then sleep until
//!   [`Broker::poll_timeout`] or the next input.
//!
//! Messages to peers may be lost (replication tolerates it); messages to connections are sent in
//! order or the connection is closed.

pub mod offsets;
pub mod producer_ids;
pub mod producer_state;
pub mod push;
pub mod share;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use crate::config::{ClusterConfig, BUGGIFY_PROBABILITY};
use crate::group::classic::GroupLimits;
use crate::group::coordinator::{GroupCoordinator, Output as GroupOutput};
use crate::group::wire::{GroupRequest, GroupResponse};
use crate::group::{self, GroupError};
use crate::ids::{NodeId, TopicPartition, OFFSETS_TOPIC};
use crate::log::{LogError, RecoveryReport, StorageOp, SyncOwner, SyncToken};
use crate::protocol::frame::FRAME_BYTES_MAX;
use crate::protocol::{
    Acks, CommitFence, ErrorCode, FetchOk, LeaderInfo, ListOffsetsOk, Message, PartitionMetadata,
    Peer, ProduceOk, Request, Response, ShareFetchOk, SubscriptionKey, PROTOCOL_VERSION,
};
use crate::replication::{ProposeError, RaftEnvelope, Replica, ReplicaEvent};
use crate::rng::Rng;
use crate::time::{earliest, Instant};

use offsets::{encode_commit, OffsetStore};
use producer_ids::{ProducerIdAllocator, PRODUCER_IDS_DIR};
use producer_state::{ProducerStates, SequenceCheck};
use push::{Subscriptions, PUSH_SUBSCRIPTIONS_MAX_DEFAULT};
use share::{PartitionShares, ShareFetchWait, SHARE_PARTITIONS_MAX_DEFAULT};

/// A connection accepted by the driver.
pub type ConnId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dest {
    Conn(ConnId),
    Broker(NodeId),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Transmit { to: Dest, msg: Message },
    Close { conn: ConnId },
    Storage(StorageOp),
}

/// Bounds on what clients can make a broker hold.
#[derive(Debug, Clone)]
pub struct BrokerLimits {
    /// `acks=all` produce requests waiting for their commit, over all partitions.
    pub produce_waiters_max: usize,
    /// Long-polling fetches waiting for data.
    pub fetch_waiters_max: usize,
    /// Offset commits waiting for their commit.
    pub commit_waiters_max: usize,
    /// How often a broker tells its peers which partitions it leads.
    pub gossip_interval_ms: u64,
    /// Ceiling on a long poll's wait, whatever the client asks.
    pub fetch_wait_max_ms: u32,
    /// Group coordinator answers waiting for their snapshot to commit; a group request that
    /// finds this many is answered `Busy` before it changes anything.
    pub group_waiters_max: usize,
    /// The group coordinators' bounds (groups, members per group, session timeouts).
    pub groups: GroupLimits,
    /// Push subscriptions held over all partitions and connections; one more is refused with
    /// [`ErrorCode::SubscriptionsFull`].
    pub push_subscriptions_max: usize,
    /// Share-partitions (a share group on a partition) held over every led partition.
    pub share_partitions_max: usize,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        BrokerLimits {
            produce_waiters_max: 10_000,
            fetch_waiters_max: 1_000,
            commit_waiters_max: 1_000,
            gossip_interval_ms: 500,
            fetch_wait_max_ms: 30_000,
            group_waiters_max: 1_000,
            groups: GroupLimits::default(),
            push_subscriptions_max: PUSH_SUBSCRIPTIONS_MAX_DEFAULT,
            share_partitions_max: SHARE_PARTITIONS_MAX_DEFAULT,
        }
    }
}

#[derive(Debug)]
struct Waiter {
    conn: ConnId,
    correlation_id: u64,
    deadline: Instant,
    kind: WaiterKind,
}

#[derive(Debug, Clone)]
enum WaiterKind {
    Produce {
        base_offset: u64,
        end_offset: u64,
    },
    Commit {
        end_offset: u64,
    },
    Fetch {
        offset: u64,
        min_bytes: u32,
        max_bytes: u32,
    },
    /// A group coordinator's answer, sent once the snapshot it depends on commits.
    Group {
        end_offset: u64,
        response: GroupResponse,
    },
    /// A share fetch held while nothing can be acquired.
    ShareFetch(Box<ShareFetchWait>),
    /// A share answer, sent once the change batch it reports commits.
    ShareCommit {
        end_offset: u64,
        response: Box<Response>,
    },
}

/// Waiters held, per kind; each kind is bounded by its [`BrokerLimits`] entry.
#[derive(Debug, Default, Clone, Copy)]
struct WaiterCounts {
    produce: usize,
    commit: usize,
    fetch: usize,
    group: usize,
}

impl WaiterCounts {
    fn of(&mut self, kind: &WaiterKind) -> &mut usize {
        match kind {
            WaiterKind::Produce { .. } => &mut self.produce,
            WaiterKind::Commit { .. } => &mut self.commit,
            WaiterKind::Fetch { .. } | WaiterKind::ShareFetch(_) => &mut self.fetch,
            WaiterKind::Group { .. } => &mut self.group,
            WaiterKind::ShareCommit { .. } => &mut self.commit,
        }
    }
}

/// An offset commit waits this many maximal election timeouts for its record to commit before
/// it is answered `RequestTimedOut`: enough for the coordinator's leader to change and the new
/// one to commit its first entry, after which a client retry is cheaper than waiting on.
const COMMIT_WAIT_ELECTION_TIMEOUTS: u64 = 4;

/// Forks the broker's BUGGIFY generator from its seed's stream.
const BUGGIFY_SALT: u64 = 0x0B06_61F7;

/// Ceiling on a fetch's `max_bytes`, whatever the client asks: a response must fit in one
/// frame ([`FRAME_BYTES_MAX`]), and half of it leaves room for the first batch, which a fetch
/// returns whatever its size, and for the response's envelope.
pub const FETCH_BYTES_MAX: u32 = FRAME_BYTES_MAX / 2;
const _: () = assert!(FETCH_BYTES_MAX < FRAME_BYTES_MAX);

/// Bytes of committed offset-commit records read per step while the offset store catches up
/// with the high watermark: bounds one step's memory; the loop runs until the store is current.
const OFFSETS_APPLY_READ_BYTES_MAX: usize = 1 << 20;

#[derive(Debug, Default)]
struct Conn {
    peer: Option<Peer>,
}

/// Where a group coordinator's answer goes: the connection and the request's correlation id.
type ReplyTo = (ConnId, u64);

/// The coordinator of the groups of one offsets partition this broker leads, and the term it
/// was loaded in: a coordinator of another term is stale and is rebuilt.
struct LoadedCoordinator {
    term: u64,
    coordinator: GroupCoordinator<ReplyTo>,
}

pub struct Broker {
    id: NodeId,
    config: ClusterConfig,
    limits: BrokerLimits,
    replicas: BTreeMap<TopicPartition, Replica>,
    offset_stores: BTreeMap<TopicPartition, OffsetStore>,
    /// Idempotent producers' sequences per led partition, with the leader term they were built
    /// for; rebuilt from the log when the term differs (see [`producer_state`]).
    producer_states: BTreeMap<TopicPartition, (u64, ProducerStates)>,
    producer_ids: ProducerIdAllocator,
    /// Leaders of partitions this broker does not host, as gossiped by their leaders.
    known_leaders: BTreeMap<TopicPartition, (u64, Option<NodeId>)>,
    conns: BTreeMap<ConnId, Conn>,
    waiters: BTreeMap<TopicPartition, Vec<Waiter>>,
    waiter_counts: WaiterCounts,
    /// One group coordinator per offsets partition this broker leads, loaded from the
    /// partition's replayed snapshots on the first group request after this broker became a
    /// ready leader with its offset store current; dropped when it steps down.
    coordinators: BTreeMap<TopicPartition, LoadedCoordinator>,
    /// Terms in which one of our replicas, leading, heard from another leader of the same term
    /// ([`ReplicaEvent::ConflictingLeader`]): a safety anomaly, counted rather than fatal.
    leader_conflicts: u64,
    /// Events taken from the replicas (see [`Broker::replica_events`]).
    replica_events: u64,
    /// Push subscriptions of the partitions this broker leads (claim C1).
    subscriptions: Subscriptions,
    /// Share-group state of the partitions this broker leads (claim C3; see [`share`]).
    shares: BTreeMap<TopicPartition, PartitionShares>,
    gossip_deadline: Instant,
    /// The broker's own BUGGIFY draws (see [`ReplicationConfig::buggify`]), apart from its
    /// replicas' generators.
    ///
    /// [`ReplicationConfig::buggify`]: crate::config::ReplicationConfig::buggify
    buggify_rng: Rng,
    outputs: VecDeque<Output>,
}

impl Broker {
    /// Starts a broker from the files of its data directory: `(path, contents)` with paths
    /// relative to that directory (`orders-0/00000000000000000000.log`).
    pub fn recover(
        id: NodeId,
        config: ClusterConfig,
        limits: BrokerLimits,
        files: Vec<(String, Bytes)>,
        seed: u64,
        now: Instant,
    ) -> (Broker, Vec<RecoveryReport>) {
        let mut by_partition: BTreeMap<String, Vec<(String, Bytes)>> = BTreeMap::new();
        for (path, bytes) in files {
            if let Some((dir, name)) = path.split_once('/') {
                by_partition
                    .entry(dir.to_string())
                    .or_default()
                    .push((name.to_string(), bytes));
            }
        }
        let producer_ids = ProducerIdAllocator::recover(
            id,
            &by_partition.remove(PRODUCER_IDS_DIR).unwrap_or_default(),
        );
        let mut rng = Rng::new(seed ^ (id as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let mut replicas = BTreeMap::new();
        let mut offset_stores = BTreeMap::new();
        let mut reports = Vec::new();
        for (tp, voters) in config.placement() {
            if !voters.contains(&id) {
                continue;
            }
            let dir = tp.dir();
            let files = by_partition.remove(&dir).unwrap_or_default();
            let child = rng.fork(crc32c::crc32c(dir.as_bytes()) as u64);
            let (replica, report) = Replica::recover(
                id,
                tp.clone(),
                &voters,
                &config.log,
                &config.replication,
                files,
                child,
                now,
            );
            reports.push(report);
            if tp.topic == OFFSETS_TOPIC {
                offset_stores.insert(tp.clone(), OffsetStore::default());
            }
            replicas.insert(tp, replica);
        }
        let subscriptions = Subscriptions::new(limits.push_subscriptions_max);
        let buggify_rng = rng.fork(BUGGIFY_SALT);
        let mut broker = Broker {
            id,
            config,
            limits,
            replicas,
            offset_stores,
            producer_states: BTreeMap::new(),
            producer_ids,
            known_leaders: BTreeMap::new(),
            conns: BTreeMap::new(),
            waiters: BTreeMap::new(),
            waiter_counts: WaiterCounts::default(),
            coordinators: BTreeMap::new(),
            leader_conflicts: 0,
            replica_events: 0,
            subscriptions,
            shares: BTreeMap::new(),
            gossip_deadline: now,
            buggify_rng,
            outputs: VecDeque::new(),
        };
        broker.drain_replicas(now);
        (broker, reports)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn replica(&self, tp: &TopicPartition) -> Option<&Replica> {
        self.replicas.get(tp)
    }

    pub fn replicas(&self) -> impl Iterator<Item = &Replica> {
        self.replicas.values()
    }

    /// Events taken from this broker's replicas so far. A replica emits one on every change of
    /// its high watermark or leadership, and every input ends by taking them, so while this
    /// stands between two inputs no replica's high watermark or leader has changed.
    pub fn replica_events(&self) -> u64 {
        self.replica_events
    }

    /// The offset `group` committed for `tp`, as this broker's replay of the group's offsets
    /// partition knows it (for tests and metrics; clients ask with `OffsetFetch`).
    pub fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Option<u64> {
        self.offset_stores
            .get(&self.coordinator(group))?
            .get(group, tp)
    }

    /// How many times one of this broker's replicas, leading a term, met another leader of the
    /// same term. Always 0 unless a voter forgot its vote; the simulator counts it as an anomaly.
    pub fn leader_conflicts(&self) -> u64 {
        self.leader_conflicts
    }

    /// The push subscriptions this broker holds: how many, and the memory their state takes.
    pub fn push_subscriptions(&self) -> (usize, u64) {
        (self.subscriptions.len(), self.subscriptions.state_bytes())
    }

    pub fn handle_message(&mut self, now: Instant, conn: ConnId, msg: Message) {
        let peer_known = self.conns.get(&conn).is_some_and(|c| c.peer.is_some());
        match msg {
            Message::Hello { version, peer } => {
                if version != PROTOCOL_VERSION {
                    return self.protocol_error(
                        conn,
                        format!("protocol version {version} not supported (this broker speaks {PROTOCOL_VERSION})"),
                    );
                }
                self.conns.entry(conn).or_default().peer = Some(peer);
                self.transmit(
                    Dest::Conn(conn),
                    Message::HelloOk {
                        version: PROTOCOL_VERSION,
                        broker: self.id,
                    },
                );
            }
            _ if !peer_known => {
                self.protocol_error(conn, "the first frame must be Hello".to_string())
            }
            Message::Request {
                correlation_id,
                request,
            } => self.on_request(now, conn, correlation_id, request),
            Message::Raft(env) => match self.peer_broker(conn) {
                // A broker speaks only for itself; clients do not speak replication at all.
                Some(from) if from == env.from => self.on_raft(now, env),
                _ => self.protocol_error(conn, "replication traffic from a non-peer".into()),
            },
            Message::LeaderGossip { leaders } => match self.peer_broker(conn) {
                Some(_) => self.on_gossip(leaders),
                None => self.protocol_error(conn, "leader gossip from a non-peer".into()),
            },
            Message::Ping => self.transmit(Dest::Conn(conn), Message::Pong),
            Message::Pong => {}
            Message::PushCredit {
                subscription,
                records,
            } => {
                self.subscriptions.credit(conn, &subscription, records);
                self.push_partition(&subscription.partition);
            }
            Message::Unsubscribe { subscription } => {
                self.subscriptions.unsubscribe(conn, &subscription)
            }
            Message::HelloOk { .. } | Message::Response { .. } | Message::Push(_) => {
                self.protocol_error(conn, "brokers do not accept responses".to_string())
            }
            Message::ProtocolError { message } => {
                tracing::debug!(conn, %message, "peer reported a protocol error");
                self.close(conn);
            }
        }
        self.drain_replicas(now);
    }

    pub fn handle_disconnected(&mut self, _now: Instant, conn: ConnId) {
        self.conns.remove(&conn);
        self.producer_ids.handle_disconnected(conn);
        self.subscriptions.drop_conn(conn);
        let counts = &mut self.waiter_counts;
        for ws in self.waiters.values_mut() {
            ws.retain(|w| {
                let keep = w.conn != conn;
                if !keep {
                    *counts.of(&w.kind) -= 1;
                }
                keep
            });
        }
    }

    /// A `Sync` storage op finished; its token's owner says whose it was.
    pub fn handle_synced(&mut self, now: Instant, token: &SyncToken) {
        match &token.owner {
            SyncOwner::ProducerIds => {
                for (conn, correlation_id, answer) in self.producer_ids.handle_synced(token.seq) {
                    self.respond(conn, correlation_id, Response::InitProducerId(answer));
                }
                self.drain_producer_ids();
            }
            SyncOwner::Log(tp) | SyncOwner::RaftMeta(tp) => {
                if let Some(r) = self.replicas.get_mut(tp) {
                    r.handle_synced(now, token);
                }
                self.drain_replicas(now);
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for r in self.replicas.values_mut() {
            if r.poll_timeout().is_some_and(|t| t <= now) {
                r.handle_timeout(now);
            }
        }
        self.drain_replicas(now);
        self.expire_waiters(now);
        self.group_timeouts(now);
        self.share_timeouts(now);
        if now >= self.gossip_deadline {
            self.gossip_deadline = now + Duration::from_millis(self.limits.gossip_interval_ms);
            self.gossip();
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let replicas = self.replicas.values().map(|r| r.poll_timeout());
        let waiters = self
            .waiters
            .values()
            .flat_map(|ws| ws.iter().map(|w| Some(w.deadline)));
        let groups = self
            .coordinators
            .values()
            .map(|c| c.coordinator.poll_timeout());
        earliest(
            replicas
                .chain(waiters)
                .chain(groups)
                .chain(std::iter::once(self.share_deadline()))
                .chain(std::iter::once(Some(self.gossip_deadline))),
        )
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    // --- requests --------------------------------------------------------------------------

    fn on_request(&mut self, now: Instant, conn: ConnId, correlation_id: u64, request: Request) {
        let response = match request {
            Request::Metadata => Some(self.metadata()),
            Request::Produce {
                partition,
                acks,
                timeout_ms,
                batch,
            } => self
                .produce(
                    now,
                    conn,
                    correlation_id,
                    partition,
                    acks,
                    timeout_ms,
                    batch,
                )
                .map(Response::Produce),
            Request::Fetch {
                partition,
                offset,
                max_wait_ms,
                min_bytes,
                max_bytes,
            } => self
                .fetch(
                    now,
                    conn,
                    correlation_id,
                    partition,
                    offset,
                    max_wait_ms,
                    min_bytes,
                    max_bytes,
                )
                .map(Response::Fetch),
            Request::ListOffsets { partition } => {
                Some(Response::ListOffsets(self.list_offsets(&partition)))
            }
            Request::OffsetCommit {
                group,
                partition,
                offset,
            } => self
                .offset_commit(now, conn, correlation_id, &group, &partition, offset, None)
                .map(Response::OffsetCommit),
            Request::MemberOffsetCommit {
                group,
                partition,
                offset,
                fence,
            } => self
                .offset_commit(
                    now,
                    conn,
                    correlation_id,
                    &group,
                    &partition,
                    offset,
                    Some(&fence),
                )
                .map(Response::OffsetCommit),
            Request::Group(request) => self
                .group_request(now, (conn, correlation_id), request)
                .map(|e| Response::Group(Err(e))),
            Request::OffsetFetch { group, partition } => {
                Some(Response::OffsetFetch(self.offset_fetch(&group, &partition)))
            }
            Request::InitProducerId => {
                let answer = self.producer_ids.allocate(conn, correlation_id);
                self.drain_producer_ids();
                answer.map(Response::InitProducerId)
            }
            Request::Subscribe {
                subscription,
                offset,
                credits,
                max_bytes,
            } => {
                let result = self.subscribe(conn, &subscription, offset, credits, max_bytes);
                self.respond(conn, correlation_id, Response::Subscribe(result));
                // The answer goes first, then what is already committed.
                self.push_partition(&subscription.partition);
                None
            }
            Request::ShareFetch {
                group,
                member,
                partition,
                max_records,
                max_wait_ms,
                max_bytes,
                settings,
                mode,
            } => {
                let wait = ShareFetchWait {
                    group,
                    member,
                    max_records,
                    max_bytes,
                    settings,
                    mode,
                };
                self.share_fetch(now, conn, correlation_id, partition, wait, max_wait_ms)
                    .map(Response::ShareFetch)
            }
            Request::ShareAcknowledge {
                group,
                member,
                partition,
                acks,
            } => self
                .share_acknowledge(now, conn, correlation_id, partition, &group, &member, &acks)
                .map(Response::ShareAcknowledge),
        };
        if let Some(response) = response {
            self.respond(conn, correlation_id, response);
        }
    }

    /// Registers a push subscription at a position a fetch could read from.
    fn subscribe(
        &mut self,
        conn: ConnId,
        key: &SubscriptionKey,
        offset: u64,
        credits: u32,
        max_bytes: u32,
    ) -> Result<(), ErrorCode> {
        let replica = self.leader_replica(&key.partition)?;
        // As for a fetch: a new leader's high watermark may lag its predecessor's.
        if !replica.is_ready_leader() {
            return Err(ErrorCode::LeaderNotReady);
        }
        if offset > replica.log().end_offset() || offset < replica.log().start_offset() {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        let max_bytes = max_bytes.min(FETCH_BYTES_MAX);
        self.subscriptions
            .subscribe(conn, key, offset, credits, max_bytes)
    }

    /// Sends what the subscriptions of `tp` may have of its committed batches.
    fn push_partition(&mut self, tp: &TopicPartition) {
        if self.subscriptions.is_empty() {
            return;
        }
        let Some(replica) = self.replicas.get(tp).filter(|r| r.is_leader()) else {
            return;
        };
        let mut read = |offset: u64, max_bytes: u32| read_committed(replica, offset, max_bytes);
        let pushes = self.subscriptions.pushes(tp, &mut read);
        for (conn, push) in pushes {
            self.transmit(Dest::Conn(conn), Message::Push(push));
        }
    }

    fn metadata(&self) -> Response {
        let partitions = self
            .config
            .placement()
            .into_iter()
            .map(|(tp, replicas)| {
                let (leader_epoch, leader) = self.leader_of(&tp);
                PartitionMetadata {
                    partition: tp,
                    leader,
                    leader_epoch,
                    replicas,
                }
            })
            .collect();
        Response::Metadata {
            brokers: self.config.brokers.clone(),
            partitions,
        }
    }

    /// Our best knowledge of who leads a partition: our own replica's view, or gossip.
    fn leader_of(&self, tp: &TopicPartition) -> (u64, Option<NodeId>) {
        let gossip = self.known_leaders.get(tp).copied().unwrap_or((0, None));
        match self.replicas.get(tp) {
            Some(r) if r.leader().is_some() && r.term() >= gossip.0 => (r.term(), r.leader()),
            _ => gossip,
        }
    }

    fn leader_replica(&mut self, tp: &TopicPartition) -> Result<&mut Replica, ErrorCode> {
        let hint = self.leader_of(tp).1;
        match self.replicas.get_mut(tp) {
            Some(r) if r.is_leader() => Ok(r),
            Some(_) => Err(ErrorCode::NotLeader { leader: hint }),
            None if self.config.placement().contains_key(tp) => {
                Err(ErrorCode::NotLeader { leader: hint })
            }
            None => Err(ErrorCode::UnknownPartition),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn produce(
        &mut self,
        now: Instant,
        conn: ConnId,
        correlation_id: u64,
        tp: TopicPartition,
        acks: Acks,
        timeout_ms: u32,
        batch: Bytes,
    ) -> Option<Result<ProduceOk, ErrorCode>> {
        let respond = acks != Acks::None;
        let full = self.waiter_counts.produce >= self.limits.produce_waiters_max;
        let result = (|| {
            if batch.len() > self.config.log.batch_bytes_max as usize {
                return Err(ErrorCode::BatchTooLarge);
            }
            if acks == Acks::All && full {
                return Err(ErrorCode::Busy);
            }
            // The offsets topic is written only through offset commits, and control batches
            // only by leaders; a client may write neither.
            if tp.topic == OFFSETS_TOPIC {
                return Err(ErrorCode::UnknownPartition);
            }
            let header = crate::log::batch::parse(&batch).ok();
            if header.as_ref().is_some_and(|h| h.is_control()) {
                return Err(ErrorCode::CorruptBatch);
            }
            let term = self.leader_replica(&tp)?.term();
            let idempotent = header.filter(|h| h.has_producer());
            if let Some(h) = &idempotent {
                if let SequenceCheck::Duplicate(original) =
                    self.producer_states_of(&tp, term).check(h)?
                {
                    return Ok((original.base_offset, original.end_offset, true));
                }
            }
            let replica = self.leader_replica(&tp)?;
            let (base, end) = replica.propose(now, &batch).map_err(|e| match e {
                ProposeError::NotLeader { leader } => ErrorCode::NotLeader { leader },
                ProposeError::Log(LogError::BatchTooLarge { .. }) => ErrorCode::BatchTooLarge,
                ProposeError::Log(_) => ErrorCode::CorruptBatch,
            })?;
            if let Some(h) = idempotent {
                let stamped = crate::log::batch::BatchHeader {
                    base_offset: base,
                    ..h
                };
                self.producer_states_of(&tp, term).record(&stamped);
            }
            Ok((base, end, false))
        })();
        let (base_offset, end_offset, duplicate) = match result {
            Ok(range) => range,
            Err(e) => return respond.then_some(Err(e)),
        };
        match acks {
            Acks::None => None,
            Acks::Leader => Some(Ok(ProduceOk { base_offset })),
            // A duplicate's original may be committed already: nothing to wait for.
            Acks::All if duplicate && end_offset <= self.replicas[&tp].high_watermark() => {
                Some(Ok(ProduceOk { base_offset }))
            }
            Acks::All => {
                self.add_waiter(
                    tp,
                    Waiter {
                        conn,
                        correlation_id,
                        deadline: now + Duration::from_millis(timeout_ms as u64),
                        kind: WaiterKind::Produce {
                            base_offset,
                            end_offset,
                        },
                    },
                );
                None
            }
        }
    }

    /// The producer state of a partition this broker leads in `term`, rebuilt from its log if
    /// it was built for another term.
    fn producer_states_of(&mut self, tp: &TopicPartition, term: u64) -> &mut ProducerStates {
        let log = self.replicas[tp].log();
        let entry = self
            .producer_states
            .entry(tp.clone())
            .or_insert_with(|| (term, ProducerStates::rebuild(log)));
        if entry.0 != term {
            *entry = (term, ProducerStates::rebuild(log));
        }
        &mut entry.1
    }

    #[allow(clippy::too_many_arguments)]
    fn fetch(
        &mut self,
        now: Instant,
        conn: ConnId,
        correlation_id: u64,
        tp: TopicPartition,
        offset: u64,
        max_wait_ms: u32,
        min_bytes: u32,
        max_bytes: u32,
    ) -> Option<Result<FetchOk, ErrorCode>> {
        let full = self.waiter_counts.fetch >= self.limits.fetch_waiters_max;
        let max_bytes = max_bytes.min(FETCH_BYTES_MAX);
        let replica = match self.leader_replica(&tp) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        // A new leader's high watermark can lag the one it replaced until it commits an entry
        // of its own term; answering now could show a consumer the high watermark going back.
        if !replica.is_ready_leader() {
            return Some(Err(ErrorCode::LeaderNotReady));
        }
        // A position past the log's end means this log lost records the consumer saw.
        if offset > replica.log().end_offset() || offset < replica.log().start_offset() {
            return Some(Err(ErrorCode::OffsetOutOfRange));
        }
        let ok = read_committed(replica, offset, max_bytes);
        let bytes: usize = ok.batches.iter().map(|b| b.len()).sum();
        // BUGGIFY: the answer comes at the fetch's deadline although records wait, as from a
        // broker stalled in a GC pause or behind a slow disk: consumers meet their slowest legal
        // fetch (sessions, heartbeats and rebalances run on while it is out).
        let hold = max_wait_ms > 0 && !full && self.buggify();
        let min_bytes = if hold { u32::MAX } else { min_bytes };
        if bytes >= min_bytes as usize || max_wait_ms == 0 || full {
            return Some(Ok(ok));
        }
        let wait_ms = max_wait_ms.min(self.limits.fetch_wait_max_ms);
        self.add_waiter(
            tp,
            Waiter {
                conn,
                correlation_id,
                deadline: now + Duration::from_millis(wait_ms as u64),
                kind: WaiterKind::Fetch {
                    offset,
                    min_bytes,
                    max_bytes,
                },
            },
        );
        None
    }

    fn list_offsets(&mut self, tp: &TopicPartition) -> Result<ListOffsetsOk, ErrorCode> {
        let replica = self.leader_replica(tp)?;
        if !replica.is_ready_leader() {
            return Err(ErrorCode::LeaderNotReady);
        }
        Ok(ListOffsetsOk {
            log_start: replica.log().start_offset(),
            high_watermark: replica.high_watermark(),
        })
    }

    fn coordinator(&self, group: &str) -> TopicPartition {
        let n = self.config.offsets_partitions;
        TopicPartition::new(OFFSETS_TOPIC, crc32c::crc32c(group.as_bytes()) % n)
    }

    #[allow(clippy::too_many_arguments)]
    fn offset_commit(
        &mut self,
        now: Instant,
        conn: ConnId,
        correlation_id: u64,
        group: &str,
        tp: &TopicPartition,
        offset: u64,
        fence: Option<&CommitFence>,
    ) -> Option<Result<(), ErrorCode>> {
        if !self.config.placement().contains_key(tp) {
            return Some(Err(ErrorCode::UnknownPartition));
        }
        if self.waiter_counts.commit >= self.limits.commit_waiters_max {
            return Some(Err(ErrorCode::Busy));
        }
        if let Err(e) = self.check_commit_fence(now, group, tp, fence) {
            return Some(Err(e));
        }
        let coordinator = self.coordinator(group);
        let record = encode_commit(group, tp, offset, now.as_nanos());
        let replica = match self.leader_replica(&coordinator) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let end_offset = match replica.propose(now, &record) {
            Ok((_, end)) => end,
            Err(_) => return Some(Err(ErrorCode::StorageError)),
        };
        let timeout = self.commit_wait();
        self.add_waiter(
            coordinator,
            Waiter {
                conn,
                correlation_id,
                deadline: now + timeout,
                kind: WaiterKind::Commit { end_offset },
            },
        );
        None
    }

    fn offset_fetch(&mut self, group: &str, tp: &TopicPartition) -> Result<Option<u64>, ErrorCode> {
        let coordinator = self.coordinator(group);
        let replica = self.leader_replica(&coordinator)?;
        let hw = replica.high_watermark();
        if !replica.is_ready_leader() {
            return Err(ErrorCode::LeaderNotReady);
        }
        let store = &self.offset_stores[&coordinator];
        if store.applied() < hw {
            return Err(ErrorCode::LeaderNotReady);
        }
        Ok(store.get(group, tp))
    }

    // --- groups ----------------------------------------------------------------------------

    /// The fence on a commit (see [`GroupCoordinator::check_commit`]). A commit that names no
    /// member, for a group of which the offsets partition holds no snapshot, never used a
    /// group protocol: it is a manual consumer's and passes without loading the coordinator.
    fn check_commit_fence(
        &mut self,
        now: Instant,
        group: &str,
        tp: &TopicPartition,
        fence: Option<&CommitFence>,
    ) -> Result<(), ErrorCode> {
        group::check_group_name(group).map_err(ErrorCode::Group)?;
        let offsets = self.coordinator(group);
        let never_a_group = self
            .offset_stores
            .get(&offsets)
            .is_none_or(|s| s.group_snapshots().all(|g| g.group() != group));
        if fence.is_none() && never_a_group && !self.coordinators.contains_key(&offsets) {
            return Ok(());
        }
        let member = fence.map(|f| (f.member_id.as_str(), f.generation));
        self.group_coordinator(now, &offsets)?
            .check_commit(group, member, tp)
            .map_err(ErrorCode::Group)
    }

    /// Hands a group request to its coordinator; `Some` is an answer for a request that never
    /// reached one.
    fn group_request(
        &mut self,
        now: Instant,
        reply_to: ReplyTo,
        request: GroupRequest,
    ) -> Option<ErrorCode> {
        if let Err(e) = group::check_group_name(request.group()) {
            return Some(ErrorCode::Group(e));
        }
        if self.waiter_counts.group >= self.limits.group_waiters_max {
            return Some(ErrorCode::Busy);
        }
        let offsets = self.coordinator(request.group());
        match self.group_coordinator(now, &offsets) {
            Ok(c) => c.handle_request(now, request, reply_to),
            Err(e) => return Some(e),
        }
        self.drain_group_outputs(now, &offsets);
        None
    }

    /// The coordinator of `offsets`'s groups: this broker must be its ready leader with every
    /// committed record applied, so the snapshots it loads are the last ones (a leader's first
    /// commit of its term commits everything its predecessors appended).
    fn group_coordinator(
        &mut self,
        now: Instant,
        offsets: &TopicPartition,
    ) -> Result<&mut GroupCoordinator<ReplyTo>, ErrorCode> {
        let replica = self.leader_replica(offsets)?;
        if !replica.is_ready_leader() {
            return Err(ErrorCode::LeaderNotReady);
        }
        let (term, hw) = (replica.term(), replica.high_watermark());
        let store = &self.offset_stores[offsets];
        if store.applied() < hw {
            return Err(ErrorCode::LeaderNotReady);
        }
        let stale = self
            .coordinators
            .get(offsets)
            .is_none_or(|c| c.term != term);
        if stale {
            let topics = self
                .config
                .topics
                .iter()
                .map(|t| (t.name.clone(), t.partitions))
                .collect();
            let mut coordinator = GroupCoordinator::new(self.limits.groups, topics);
            coordinator.load(now, store.group_snapshots().cloned());
            let loaded = LoadedCoordinator { term, coordinator };
            self.coordinators.insert(offsets.clone(), loaded);
        }
        let loaded = self.coordinators.get_mut(offsets);
        loaded
            .map(|c| &mut c.coordinator)
            .ok_or(ErrorCode::LeaderNotReady)
    }

    fn group_timeouts(&mut self, now: Instant) {
        let due: Vec<TopicPartition> = self
            .coordinators
            .iter()
            .filter(|(_, c)| c.coordinator.poll_timeout().is_some_and(|t| t <= now))
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in due {
            if let Some(c) = self.coordinators.get_mut(&tp) {
                c.coordinator.handle_timeout(now);
            }
            self.drain_group_outputs(now, &tp);
        }
    }

    /// Sends a coordinator's immediate answers and appends its snapshots to the offsets
    /// partition, each with the answers that wait for it to commit. A snapshot that cannot be
    /// appended ends this coordinator: its waiting answers say `NotCoordinator`.
    fn drain_group_outputs(&mut self, now: Instant, offsets: &TopicPartition) {
        let mut outputs = Vec::new();
        if let Some(c) = self.coordinators.get_mut(offsets) {
            while let Some(o) = c.coordinator.poll_output() {
                outputs.push(o);
            }
        }
        let mut failed = false;
        for output in outputs {
            match output {
                GroupOutput::Reply((conn, id), r) => self.respond(conn, id, Response::Group(Ok(r))),
                GroupOutput::Persist { replies, .. } if failed => {
                    self.refuse_group_replies(replies)
                }
                GroupOutput::Persist { snapshot, replies } => {
                    let record = group::record::encode(&snapshot, now.as_nanos());
                    let proposed = self
                        .replicas
                        .get_mut(offsets)
                        .ok_or(ErrorCode::UnknownPartition)
                        .and_then(|r| r.propose(now, &record).map_err(|_| ErrorCode::StorageError));
                    match proposed {
                        Ok((_, end_offset)) => {
                            self.await_group_commit(now, offsets, end_offset, replies)
                        }
                        Err(_) => {
                            failed = true;
                            self.coordinators.remove(offsets);
                            self.refuse_group_replies(replies);
                        }
                    }
                }
            }
        }
    }

    fn await_group_commit(
        &mut self,
        now: Instant,
        offsets: &TopicPartition,
        end_offset: u64,
        replies: Vec<(ReplyTo, GroupResponse)>,
    ) {
        let deadline = now + self.commit_wait();
        for ((conn, correlation_id), response) in replies {
            let kind = WaiterKind::Group {
                end_offset,
                response,
            };
            let waiter = Waiter {
                conn,
                correlation_id,
                deadline,
                kind,
            };
            self.add_waiter(offsets.clone(), waiter);
        }
    }

    fn refuse_group_replies(&mut self, replies: Vec<(ReplyTo, GroupResponse)>) {
        for ((conn, id), _) in replies {
            let e = ErrorCode::Group(GroupError::NotCoordinator);
            self.respond(conn, id, Response::Group(Err(e)));
        }
    }

    /// How long a write to an offsets partition may take to commit before its waiter gives up.
    fn commit_wait(&self) -> Duration {
        Duration::from_millis(
            self.config
                .replication
                .election_timeout_max_ms
                .saturating_mul(COMMIT_WAIT_ELECTION_TIMEOUTS),
        )
    }

    // --- replication -----------------------------------------------------------------------

    fn peer_broker(&self, conn: ConnId) -> Option<NodeId> {
        match self.conns.get(&conn)?.peer {
            Some(Peer::Broker(id)) => Some(id),
            _ => None,
        }
    }

    fn on_raft(&mut self, now: Instant, env: RaftEnvelope) {
        if env.to != self.id {
            return;
        }
        if let Some(r) = self.replicas.get_mut(&env.partition) {
            r.handle_message(now, env);
        }
    }

    fn on_gossip(&mut self, leaders: Vec<LeaderInfo>) {
        for info in leaders {
            let entry = self
                .known_leaders
                .entry(info.partition)
                .or_insert((0, None));
            if info.leader_epoch >= entry.0 {
                *entry = (info.leader_epoch, info.leader);
            }
        }
    }

    fn gossip(&mut self) {
        let leaders: Vec<LeaderInfo> = self
            .replicas
            .values()
            .filter(|r| r.is_leader())
            .map(|r| LeaderInfo {
                partition: r.partition().clone(),
                leader_epoch: r.term(),
                leader: Some(self.id),
            })
            .collect();
        if leaders.is_empty() {
            return;
        }
        for peer in self.config.broker_ids() {
            if peer != self.id {
                self.transmit(
                    Dest::Broker(peer),
                    Message::LeaderGossip {
                        leaders: leaders.clone(),
                    },
                );
            }
        }
    }

    /// Moves every replica's outputs to ours and reacts to their events.
    fn drain_replicas(&mut self, now: Instant) {
        let mut events = Vec::new();
        // Runs after every input: most replicas have nothing, and a look is cheaper than polls.
        for (tp, r) in self.replicas.iter_mut().filter(|(_, r)| r.has_output()) {
            while let Some(op) = r.poll_storage() {
                self.outputs.push_back(Output::Storage(op));
            }
            while let Some(env) = r.poll_message() {
                self.outputs.push_back(Output::Transmit {
                    to: Dest::Broker(env.to),
                    msg: Message::Raft(env),
                });
            }
            while let Some(e) = r.poll_event() {
                events.push((tp.clone(), e));
            }
        }
        self.replica_events = self.replica_events.wrapping_add(events.len() as u64);
        let mut leadership_changed = false;
        for (tp, event) in events {
            match event {
                ReplicaEvent::Committed { .. } => self.on_committed(now, &tp),
                ReplicaEvent::BecameLeader { .. } => leadership_changed = true,
                ReplicaEvent::CommittedTruncated { .. } => {
                    // Offsets applied from the lost records are void; replay what remains.
                    if let Some(store) = self.offset_stores.get_mut(&tp) {
                        *store = OffsetStore::default();
                    }
                    // So are the groups built from them: reload at the next request.
                    self.coordinators.remove(&tp);
                    self.forget_shares(&tp);
                    self.on_committed(now, &tp);
                }
                ReplicaEvent::ConflictingLeader { term, other } => {
                    tracing::warn!(partition = %tp, term, other, "two leaders in one term");
                    self.leader_conflicts += 1;
                }
                ReplicaEvent::SteppedDown { .. } => {
                    leadership_changed = true;
                    self.producer_states.remove(&tp);
                    self.coordinators.remove(&tp);
                    self.forget_shares(&tp);
                    self.on_stepped_down(&tp);
                    self.end_subscriptions(&tp);
                }
            }
        }
        if leadership_changed {
            self.gossip();
        }
    }

    /// A leader that steps down ends its push subscriptions: each subscriber resubscribes
    /// from its own position at the next leader, so nothing is skipped or lost.
    fn end_subscriptions(&mut self, tp: &TopicPartition) {
        let leader = self.leader_of(tp).1;
        let ended = self
            .subscriptions
            .end_partition(tp, ErrorCode::NotLeader { leader });
        for (conn, push) in ended {
            self.transmit(Dest::Conn(conn), Message::Push(push));
        }
    }

    fn on_committed(&mut self, now: Instant, tp: &TopicPartition) {
        self.push_partition(tp);
        let Some(replica) = self.replicas.get(tp) else {
            return;
        };
        let hw = replica.high_watermark();
        if let Some(store) = self.offset_stores.get_mut(tp) {
            while store.applied() < hw {
                let batches = replica
                    .log()
                    .read(store.applied(), hw, OFFSETS_APPLY_READ_BYTES_MAX);
                if batches.is_empty() {
                    break;
                }
                // Without this stop a damaged batch would be read and refused forever: the loop
                // must make progress or end. Commits past it stay unapplied (a consumer resumes
                // from an older offset: duplicates, never a skip).
                let before = store.applied();
                if let Err(damaged) = store.apply(&batches) {
                    tracing::debug!(partition = %tp, offset = damaged.at, "damaged offsets batch: replay stopped");
                    break;
                }
                if store.applied() == before {
                    break;
                }
            }
        }
        let Some(mut waiters) = self.waiters.remove(tp) else {
            return;
        };
        let mut done = Vec::new();
        waiters.retain_mut(|w| {
            let response = match w.kind {
                WaiterKind::Produce {
                    base_offset,
                    end_offset,
                } if end_offset <= hw => Response::Produce(Ok(ProduceOk { base_offset })),
                WaiterKind::Commit { end_offset } if end_offset <= hw => {
                    Response::OffsetCommit(Ok(()))
                }
                WaiterKind::Group {
                    end_offset,
                    ref response,
                } if end_offset <= hw => Response::Group(Ok(response.clone())),
                WaiterKind::ShareCommit {
                    end_offset,
                    ref response,
                } if end_offset <= hw => (**response).clone(),
                WaiterKind::Fetch {
                    offset,
                    min_bytes,
                    max_bytes,
                } => {
                    let ok = read_committed(replica, offset, max_bytes);
                    let bytes: usize = ok.batches.iter().map(|b| b.len()).sum();
                    if bytes < min_bytes as usize {
                        return true;
                    }
                    Response::Fetch(Ok(ok))
                }
                _ => return true,
            };
            done.push((w.conn, w.correlation_id, w.kind.clone(), response));
            false
        });
        self.waiters.insert(tp.clone(), waiters);
        for (conn, correlation_id, kind, response) in done {
            *self.waiter_counts.of(&kind) -= 1;
            self.respond(conn, correlation_id, response);
        }
        self.retry_share_fetches(now, tp);
    }

    /// A leader that steps down answers everyone waiting on it. Appended-but-uncommitted writes
    /// may still commit under the next leader, so their outcome is unknown: `LeaderChanged`.
    fn on_stepped_down(&mut self, tp: &TopicPartition) {
        let Some(waiters) = self.waiters.remove(tp) else {
            return;
        };
        let leader = self.leader_of(tp).1;
        for w in waiters {
            *self.waiter_counts.of(&w.kind) -= 1;
            let response = match w.kind {
                WaiterKind::Produce { .. } => Response::Produce(Err(ErrorCode::LeaderChanged)),
                WaiterKind::Commit { .. } => Response::OffsetCommit(Err(ErrorCode::LeaderChanged)),
                WaiterKind::Fetch { .. } => Response::Fetch(Err(ErrorCode::NotLeader { leader })),
                WaiterKind::Group { .. } => {
                    Response::Group(Err(ErrorCode::Group(GroupError::NotCoordinator)))
                }
                WaiterKind::ShareFetch(_) => {
                    Response::ShareFetch(Err(ErrorCode::NotLeader { leader }))
                }
                WaiterKind::ShareCommit { ref response, .. } => {
                    share_refusal(response, ErrorCode::LeaderChanged)
                }
            };
            self.respond(w.conn, w.correlation_id, response);
        }
    }

    fn expire_waiters(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (tp, ws) in self.waiters.iter_mut() {
            ws.retain(|w| {
                if w.deadline > now {
                    return true;
                }
                expired.push((tp.clone(), w.conn, w.correlation_id, w.kind.clone()));
                false
            });
        }
        for (tp, conn, correlation_id, kind) in expired {
            *self.waiter_counts.of(&kind) -= 1;
            let response = match kind {
                WaiterKind::Produce { .. } => Response::Produce(Err(ErrorCode::RequestTimedOut)),
                WaiterKind::Commit { .. } => {
                    Response::OffsetCommit(Err(ErrorCode::RequestTimedOut))
                }
                WaiterKind::Fetch {
                    offset, max_bytes, ..
                } => match self.leader_replica(&tp) {
                    Ok(r) => Response::Fetch(Ok(read_committed(r, offset, max_bytes))),
                    Err(e) => Response::Fetch(Err(e)),
                },
                // The coordinator's state moved on; whether the snapshot commits is unknown,
                // and the member asks again.
                WaiterKind::Group { .. } => Response::Group(Err(ErrorCode::RequestTimedOut)),
                WaiterKind::ShareFetch(_) => Response::ShareFetch(Ok(ShareFetchOk::empty())),
                WaiterKind::ShareCommit { ref response, .. } => {
                    share_refusal(response, ErrorCode::RequestTimedOut)
                }
            };
            self.respond(conn, correlation_id, response);
        }
    }

    // --- plumbing --------------------------------------------------------------------------

    fn drain_producer_ids(&mut self) {
        while let Some(op) = self.producer_ids.poll_storage() {
            self.outputs.push_back(Output::Storage(op));
        }
    }

    /// Whether a BUGGIFY point fires: never unless the configuration asks for it.
    fn buggify(&mut self) -> bool {
        self.config.replication.buggify && self.buggify_rng.chance(BUGGIFY_PROBABILITY)
    }

    fn add_waiter(&mut self, tp: TopicPartition, w: Waiter) {
        *self.waiter_counts.of(&w.kind) += 1;
        self.waiters.entry(tp).or_default().push(w);
    }

    fn respond(&mut self, conn: ConnId, correlation_id: u64, response: Response) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.transmit(
            Dest::Conn(conn),
            Message::Response {
                correlation_id,
                response,
            },
        );
    }

    fn transmit(&mut self, to: Dest, msg: Message) {
        self.outputs.push_back(Output::Transmit { to, msg });
    }

    fn protocol_error(&mut self, conn: ConnId, message: String) {
        tracing::debug!(conn, %message, "closing connection after a protocol error");
        self.transmit(Dest::Conn(conn), Message::ProtocolError { message });
        self.close(conn);
    }

    fn close(&mut self, conn: ConnId) {
        self.handle_disconnected(Instant::ZERO, conn);
        self.outputs.push_back(Output::Close { conn });
    }
}

/// The error answer of the same kind as a share answer that could not be confirmed: whether
/// its change commits later is unknown, and the member's locks decide what happens next.
fn share_refusal(response: &Response, error: ErrorCode) -> Response {
    match response {
        Response::ShareAcknowledge(_) => Response::ShareAcknowledge(Err(error)),
        _ => Response::ShareFetch(Err(error)),
    }
}

/// Committed batches from `offset`, as a fetch returns them.
fn read_committed(replica: &Replica, offset: u64, max_bytes: u32) -> FetchOk {
    let hw = replica.high_watermark();
    let batches = if offset < hw {
        replica.log().read(offset, hw, max_bytes as usize)
    } else {
        Vec::new()
    };
    FetchOk {
        high_watermark: hw,
        batches,
    }
}

#[cfg(test)]
mod tests;
