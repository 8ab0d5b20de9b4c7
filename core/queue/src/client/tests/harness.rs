//! A fake cluster and a virtual network for the client tests.
//!
//! Why a fake next to the real brokers of [`crate::testkit`] (which `real_cluster.rs` drives the
//! clients against): these tests need a broker to misbehave on cue in ways the real one cannot
//! be made to — answer one chosen request with a canned error (`NotLeader` naming a stale
//! leader, a sequence error), drop exactly the first attempt of a batch,
//! delay one response past the request timeout, break a connection mid-request, or hand out a
//! corrupt fetch response — and to check the exact requests a client sends. Where a test only
//! needs brokers to behave, it belongs in `real_cluster.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use crate::broker::producer_state::{ProducerStates, SequenceCheck};
use crate::client::{Consumer, ConsumerEvent, Producer, ProducerEvent, Transmit};
use crate::config::BrokerAddr;
use crate::ids::{NodeId, TopicPartition, OFFSETS_TOPIC};
use crate::log::batch::{self, NewRecord, Record};
use crate::protocol::{
    Acks, ErrorCode, FetchOk, ListOffsetsOk, Message, PartitionMetadata, ProduceOk,
    ProducerIdentity, Request, Response,
};
use crate::time::Instant;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn at_ms(n: u64) -> Instant {
    Instant::ZERO + ms(n)
}

pub fn tp(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

pub fn bootstrap(ids: &[NodeId]) -> Vec<BrokerAddr> {
    ids.iter()
        .map(|&id| BrokerAddr {
            id,
            addr: format!("broker-{id}:9092"),
        })
        .collect()
}

pub fn new_record(key: &str) -> NewRecord {
    NewRecord {
        timestamp_ns: 0,
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::from_static(b"v"),
    }
}

/// Brokers that answer from an in-memory map of stamped batches, all agreeing on the leaders.
#[derive(Debug)]
pub struct FakeCluster {
    pub brokers: Vec<NodeId>,
    /// Who really leads each partition; `None` means no leader right now.
    pub leaders: BTreeMap<TopicPartition, Option<NodeId>>,
    pub epoch: u64,
    pub logs: BTreeMap<TopicPartition, Vec<Bytes>>,
    pub committed: BTreeMap<(String, TopicPartition), u64>,
    /// Idempotent producers' sequences per partition, checked as a leader checks them.
    pub producer_states: BTreeMap<TopicPartition, ProducerStates>,
    /// Producer ids handed out so far.
    pub producer_ids_granted: u64,
}

impl FakeCluster {
    /// `brokers` brokers; `partitions` with their leaders; `offsets_leaders[i]` leads partition
    /// `i` of the offsets topic.
    pub fn new(
        brokers: &[NodeId],
        partitions: &[(TopicPartition, NodeId)],
        offsets_leaders: &[NodeId],
    ) -> FakeCluster {
        let mut leaders: BTreeMap<TopicPartition, Option<NodeId>> = partitions
            .iter()
            .map(|(p, l)| (p.clone(), Some(*l)))
            .collect();
        for (i, l) in offsets_leaders.iter().enumerate() {
            leaders.insert(tp(OFFSETS_TOPIC, i as u32), Some(*l));
        }
        let logs = leaders.keys().map(|p| (p.clone(), Vec::new())).collect();
        FakeCluster {
            brokers: brokers.to_vec(),
            leaders,
            epoch: 1,
            logs,
            committed: BTreeMap::new(),
            producer_states: BTreeMap::new(),
            producer_ids_granted: 0,
        }
    }

    pub fn end_offset(&self, partition: &TopicPartition) -> u64 {
        self.logs[partition]
            .last()
            .map(|b| batch::parse(b).unwrap().end_offset())
            .unwrap_or(0)
    }

    /// Stamps and appends a batch the way a leader does; returns its base offset.
    pub fn append(&mut self, partition: &TopicPartition, unstamped: &[u8]) -> u64 {
        let base = self.end_offset(partition);
        let stamped = batch::stamp(unstamped, base, self.epoch);
        let header = batch::parse(&stamped).unwrap();
        self.producer_states
            .entry(partition.clone())
            .or_default()
            .record(&header);
        self.logs.get_mut(partition).unwrap().push(stamped);
        base
    }

    /// A leader's produce: sequence checks for idempotent batches, then the append; the base
    /// offset of the batch (the original one for a duplicate).
    pub fn produce(&mut self, partition: &TopicPartition, b: &[u8]) -> Result<u64, ErrorCode> {
        let header = batch::validate(b).map_err(|_| ErrorCode::CorruptBatch)?;
        if header.has_producer() {
            let states = self.producer_states.entry(partition.clone()).or_default();
            if let SequenceCheck::Duplicate(original) = states.check(&header)? {
                return Ok(original.base_offset);
            }
        }
        Ok(self.append(partition, b))
    }

    pub fn append_records(&mut self, partition: &TopicPartition, keys: &[&str]) -> u64 {
        let records: Vec<NewRecord> = keys.iter().map(|k| new_record(k)).collect();
        self.append(partition, &batch::build(&records))
    }

    pub fn append_control(&mut self, partition: &TopicPartition) -> u64 {
        self.append(partition, &batch::build_control(0))
    }

    /// Every record in the log, control records included.
    pub fn read_all(&self, partition: &TopicPartition) -> Vec<Record> {
        self.logs[partition]
            .iter()
            .flat_map(|b| batch::records(b).unwrap())
            .collect()
    }

    fn leader_check(&self, at: NodeId, partition: &TopicPartition) -> Result<(), ErrorCode> {
        match self.leaders.get(partition) {
            None => Err(ErrorCode::UnknownPartition),
            Some(&Some(l)) if l == at => Ok(()),
            Some(&leader) => Err(ErrorCode::NotLeader { leader }),
        }
    }

    /// Broker `at` answers `request`: the response, or `None` for none, and how long the broker
    /// holds it (a long poll with nothing to return waits `max_wait_ms`).
    pub fn answer(&mut self, at: NodeId, request: &Request) -> Option<(Response, Duration)> {
        let now = Duration::ZERO;
        let response = match request {
            Request::Metadata => Response::Metadata {
                brokers: bootstrap(&self.brokers),
                partitions: self
                    .leaders
                    .iter()
                    .map(|(p, l)| PartitionMetadata {
                        partition: p.clone(),
                        leader: *l,
                        leader_epoch: self.epoch,
                        replicas: self.brokers.clone(),
                    })
                    .collect(),
            },
            Request::Produce {
                partition,
                acks,
                batch: b,
                ..
            } => {
                let result = self.leader_check(at, partition).and_then(|()| {
                    Ok(ProduceOk {
                        base_offset: self.produce(partition, b)?,
                    })
                });
                if *acks == Acks::None {
                    return None;
                }
                Response::Produce(result)
            }
            Request::Fetch {
                partition,
                offset,
                max_wait_ms,
                max_bytes,
                ..
            } => {
                if let Err(e) = self.leader_check(at, partition) {
                    return Some((Response::Fetch(Err(e)), now));
                }
                let high_watermark = self.end_offset(partition);
                if *offset > high_watermark {
                    return Some((Response::Fetch(Err(ErrorCode::OffsetOutOfRange)), now));
                }
                let mut batches = Vec::new();
                let mut bytes = 0;
                for b in &self.logs[partition] {
                    let h = batch::parse(b).unwrap();
                    if h.end_offset() <= *offset {
                        continue;
                    }
                    if !batches.is_empty() && bytes + b.len() > *max_bytes as usize {
                        break;
                    }
                    bytes += b.len();
                    batches.push(b.clone());
                }
                let wait = if batches.is_empty() {
                    ms(*max_wait_ms as u64)
                } else {
                    now
                };
                let ok = FetchOk {
                    high_watermark,
                    batches,
                };
                return Some((Response::Fetch(Ok(ok)), wait));
            }
            Request::ListOffsets { partition } => {
                Response::ListOffsets(self.leader_check(at, partition).map(|()| ListOffsetsOk {
                    log_start: 0,
                    high_watermark: self.end_offset(partition),
                }))
            }
            Request::OffsetCommit {
                group,
                partition,
                offset,
            } => {
                let result = self.coordinator_check(at, group).map(|()| {
                    self.committed
                        .insert((group.clone(), partition.clone()), *offset);
                });
                Response::OffsetCommit(result)
            }
            // Groups are tested against the real brokers (tests/groups.rs): no imitation here.
            Request::Group(_) | Request::MemberOffsetCommit { .. } => {
                Response::Group(Err(ErrorCode::UnknownPartition))
            }
            // Push needs unasked messages from the broker: tested against the real brokers.
            Request::Subscribe { .. } => Response::Subscribe(Err(ErrorCode::UnknownPartition)),
            // Share groups are tested against the real brokers.
            Request::ShareFetch { .. } => Response::ShareFetch(Err(ErrorCode::UnknownPartition)),
            Request::ShareAcknowledge { .. } => {
                Response::ShareAcknowledge(Err(ErrorCode::UnknownPartition))
            }
            Request::OffsetFetch { group, partition } => {
                Response::OffsetFetch(self.coordinator_check(at, group).map(|()| {
                    self.committed
                        .get(&(group.clone(), partition.clone()))
                        .copied()
                }))
            }
            Request::InitProducerId => {
                self.producer_ids_granted += 1;
                Response::InitProducerId(Ok(ProducerIdentity {
                    producer_id: 1000 + self.producer_ids_granted,
                    producer_epoch: 0,
                }))
            }
        };
        Some((response, now))
    }

    fn offsets_partitions(&self) -> u32 {
        self.leaders
            .keys()
            .filter(|p| p.topic == OFFSETS_TOPIC)
            .count() as u32
    }

    fn coordinator_check(&self, at: NodeId, group: &str) -> Result<(), ErrorCode> {
        let p = crate::client::coordinator_partition(group, self.offsets_partitions());
        self.leader_check(at, &tp(OFFSETS_TOPIC, p))
    }
}

/// What the network does with one transmit.
#[derive(Debug, Clone)]
pub enum Fate {
    /// The broker handles it and its answer arrives after the network latency.
    Deliver,
    /// Lost on the way; the broker never sees it.
    Drop,
    /// The broker handles it, but its answer arrives this much later than usual.
    Delay(Duration),
    /// The broker does not handle it and answers this instead.
    Reply(Response),
    /// Lost, and the driver reports the connection to that broker lost.
    Disconnect,
}

/// A client state machine as the harness drives it.
pub trait Client {
    type Event;
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_message(&mut self, now: Instant, from: NodeId, msg: Message);
    fn handle_disconnected(&mut self, now: Instant, broker: NodeId);
    fn poll_transmit(&mut self) -> Option<Transmit>;
    fn poll_event(&mut self) -> Option<Self::Event>;
}

impl Client for Producer {
    type Event = ProducerEvent;
    fn handle_timeout(&mut self, now: Instant) {
        Producer::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Producer::poll_timeout(self)
    }
    fn handle_message(&mut self, now: Instant, from: NodeId, msg: Message) {
        Producer::handle_message(self, now, from, msg)
    }
    fn handle_disconnected(&mut self, now: Instant, broker: NodeId) {
        Producer::handle_disconnected(self, now, broker)
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Producer::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<ProducerEvent> {
        Producer::poll_event(self)
    }
}

impl Client for Consumer {
    type Event = ConsumerEvent;
    fn handle_timeout(&mut self, now: Instant) {
        Consumer::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Consumer::poll_timeout(self)
    }
    fn handle_message(&mut self, now: Instant, from: NodeId, msg: Message) {
        Consumer::handle_message(self, now, from, msg)
    }
    fn handle_disconnected(&mut self, now: Instant, broker: NodeId) {
        Consumer::handle_disconnected(self, now, broker)
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Consumer::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<ConsumerEvent> {
        Consumer::poll_event(self)
    }
}

impl Client for crate::client::ShareConsumer {
    type Event = crate::client::ShareConsumerEvent;
    fn handle_timeout(&mut self, now: Instant) {
        Self::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Self::poll_timeout(self)
    }
    fn handle_message(&mut self, now: Instant, from: NodeId, msg: Message) {
        Self::handle_message(self, now, from, msg)
    }
    fn handle_disconnected(&mut self, now: Instant, broker: NodeId) {
        Self::handle_disconnected(self, now, broker)
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Self::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<Self::Event> {
        Self::poll_event(self)
    }
}

enum Arrival {
    Message(NodeId, Message),
    Disconnected(NodeId),
}

type FateFn = Box<dyn FnMut(Instant, &Transmit) -> Fate>;

/// One client, the fake cluster and the network between them, on a virtual clock.
pub struct Net<C: Client> {
    pub now: Instant,
    pub client: C,
    pub cluster: FakeCluster,
    /// One-way network delay; an answer arrives two of these after its request left.
    pub latency: Duration,
    /// Every transmit, with the time it left the client.
    pub sent: Vec<(Instant, Transmit)>,
    pub events: Vec<C::Event>,
    /// Whether the harness takes events from the client after every step.
    pub drain_events: bool,
    fate: FateFn,
    arrivals: BTreeMap<(Instant, u64), Arrival>,
    arrival_seq: u64,
}

impl<C: Client> Net<C> {
    pub fn new(client: C, cluster: FakeCluster) -> Net<C> {
        Net {
            now: Instant::ZERO,
            client,
            cluster,
            latency: ms(1),
            sent: Vec::new(),
            events: Vec::new(),
            drain_events: true,
            fate: Box::new(|_, _| Fate::Deliver),
            arrivals: BTreeMap::new(),
            arrival_seq: 0,
        }
    }

    pub fn set_fate(&mut self, fate: impl FnMut(Instant, &Transmit) -> Fate + 'static) {
        self.fate = Box::new(fate);
    }

    /// Gives the client an input at the current time, then drains its outputs.
    pub fn input<R>(&mut self, f: impl FnOnce(&mut C, Instant) -> R) -> R {
        let r = f(&mut self.client, self.now);
        self.pump();
        r
    }

    pub fn take_events(&mut self) {
        while let Some(e) = self.client.poll_event() {
            self.events.push(e);
        }
    }

    fn pump(&mut self) {
        while let Some(t) = self.client.poll_transmit() {
            self.carry(t);
        }
        if self.drain_events {
            self.take_events();
        }
    }

    fn arrive(&mut self, at: Instant, arrival: Arrival) {
        self.arrival_seq += 1;
        self.arrivals.insert((at, self.arrival_seq), arrival);
    }

    fn carry(&mut self, t: Transmit) {
        self.sent.push((self.now, t.clone()));
        let fate = (self.fate)(self.now, &t);
        let Message::Request {
            correlation_id,
            request,
        } = &t.msg
        else {
            panic!("a client sent a non-request: {:?}", t.msg);
        };
        let answer_at = |extra: Duration| self.now + self.latency * 2 + extra;
        let respond = |response| Message::Response {
            correlation_id: *correlation_id,
            response,
        };
        match fate {
            Fate::Deliver | Fate::Delay(_) => {
                let extra = match fate {
                    Fate::Delay(d) => d,
                    _ => Duration::ZERO,
                };
                if let Some((response, wait)) = self.cluster.answer(t.to, request) {
                    let at = answer_at(wait + extra);
                    self.arrive(at, Arrival::Message(t.to, respond(response)));
                }
            }
            Fate::Drop => {}
            Fate::Reply(response) => {
                let at = answer_at(Duration::ZERO);
                self.arrive(at, Arrival::Message(t.to, respond(response)));
            }
            Fate::Disconnect => {
                let at = self.now + self.latency;
                self.arrive(at, Arrival::Disconnected(t.to));
            }
        }
    }

    /// Advances to the next arrival or client timer and handles it. False when nothing is left
    /// to happen before `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.pump();
        let arrival = self.arrivals.keys().next().map(|(at, _)| *at);
        let timer = self.client.poll_timeout();
        let next = match (arrival, timer) {
            (Some(a), Some(t)) => a.min(t),
            (a, t) => match a.or(t) {
                Some(n) => n,
                None => return false,
            },
        };
        if next > limit {
            self.now = self.now.max(limit);
            return false;
        }
        self.now = self.now.max(next);
        if arrival == Some(next) {
            let key = *self.arrivals.keys().next().unwrap();
            match self.arrivals.remove(&key).unwrap() {
                Arrival::Message(from, msg) => self.client.handle_message(self.now, from, msg),
                Arrival::Disconnected(b) => self.client.handle_disconnected(self.now, b),
            }
        } else {
            self.client.handle_timeout(self.now);
        }
        self.pump();
        true
    }

    /// Runs until `limit`, panicking if the client spins: many wake-ups at one instant with no
    /// progress means `poll_timeout` reports work that `handle_timeout` does not do.
    pub fn run_until(&mut self, limit: Instant) {
        let mut same_instant = 0;
        let mut last = (self.now, self.sent.len(), self.arrivals.len());
        while self.step(limit) {
            let here = (self.now, self.sent.len(), self.arrivals.len());
            if here == last {
                same_instant += 1;
                assert!(same_instant < 1000, "client spins at {:?}", self.now);
            } else {
                same_instant = 0;
            }
            last = here;
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        self.run_until(limit);
    }

    /// Runs until `done` holds (checked after each step) or `limit` passes; returns whether it
    /// held.
    pub fn run_until_pred(&mut self, limit: Instant, mut done: impl FnMut(&Self) -> bool) -> bool {
        let mut spins = 0;
        loop {
            if done(self) {
                return true;
            }
            let before = (self.now, self.sent.len(), self.arrivals.len());
            if !self.step(limit) {
                return done(self);
            }
            if before == (self.now, self.sent.len(), self.arrivals.len()) {
                spins += 1;
                assert!(spins < 1000, "client spins at {:?}", self.now);
            } else {
                spins = 0;
            }
        }
    }

    /// The requests sent, with time and destination.
    pub fn requests(&self) -> Vec<(Instant, NodeId, Request)> {
        self.sent
            .iter()
            .filter_map(|(at, t)| match &t.msg {
                Message::Request { request, .. } => Some((*at, t.to, request.clone())),
                _ => None,
            })
            .collect()
    }
}

pub fn is_produce(r: &Request) -> bool {
    matches!(r, Request::Produce { .. })
}

pub fn is_fetch(r: &Request) -> bool {
    matches!(r, Request::Fetch { .. })
}
