//! The client's view of the cluster: which broker leads which partition.
//!
//! A client starts from the bootstrap broker list and learns leaders with `Request::Metadata`.
//! Hints in errors (`NotLeader { leader: Some(n) }`) update the cache directly; anything that
//! leaves a leader in doubt (`NotLeader { leader: None }`, `LeaderChanged`, a timeout, a lost
//! connection) removes it, and the client asks again. Refreshes are rate-limited: at most one
//! metadata request in flight and at most one per `refresh_backoff_ms`. When a request fails the
//! next one goes to the next broker in id order, after a jittered, growing backoff. A partition
//! whose leader is unknown simply waits for the next answer.
//!
//! [`Metadata`] is owned by a client, which forwards the relevant inputs and polls it before its
//! own requests; it follows the same calling contract as the clients (see [`super`]).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::BrokerAddr;
use crate::ids::{NodeId, TopicPartition, OFFSETS_TOPIC};
use crate::protocol::{ErrorCode, Message, Request, Response};
use crate::rng::Rng;
use crate::time::{earliest, Instant};

use super::{jittered, CorrelationIds, RequestFailure, Transmit};

/// Backoff after consecutive failed refreshes doubles up to this many times.
const FAILURE_BACKOFF_DOUBLINGS_MAX: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataConfig {
    /// At most one metadata request per this interval.
    pub refresh_backoff_ms: u64,
    /// A metadata request unanswered for this long has failed; the next goes elsewhere.
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Leader {
    node: NodeId,
    /// The epoch the cluster reported with this leader; a response carrying an older epoch is
    /// stale (it came from a broker that has not heard of the election yet) and is ignored.
    epoch: u64,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    correlation_id: u64,
    broker: NodeId,
    deadline: Instant,
}

/// A map by partition, looked up topic first: the leader cache is read for every batch and
/// fetch, and a map keyed by [`TopicPartition`] compares topic names at every level (the
/// offsets topic alone has dozens of partitions).
#[derive(Debug, Clone)]
struct ByTopic<V>(BTreeMap<String, BTreeMap<u32, V>>);

impl<V> Default for ByTopic<V> {
    fn default() -> Self {
        ByTopic(BTreeMap::new())
    }
}

impl<V> ByTopic<V> {
    fn get(&self, tp: &TopicPartition) -> Option<&V> {
        self.0.get(tp.topic.as_str())?.get(&tp.partition)
    }

    fn insert(&mut self, tp: &TopicPartition, value: V) {
        match self.0.get_mut(tp.topic.as_str()) {
            Some(partitions) => partitions.insert(tp.partition, value),
            None => {
                let partitions = BTreeMap::from([(tp.partition, value)]);
                self.0.insert(tp.topic.clone(), partitions);
                None
            }
        };
    }

    fn remove(&mut self, tp: &TopicPartition) {
        if let Some(partitions) = self.0.get_mut(tp.topic.as_str()) {
            partitions.remove(&tp.partition);
        }
    }

    /// Keeps the values `keep` accepts; returns whether any was removed.
    fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) -> bool {
        let mut removed = false;
        for partitions in self.0.values_mut() {
            partitions.retain(|_, v| {
                let kept = keep(v);
                removed |= !kept;
                kept
            });
        }
        removed
    }
}

/// The leader cache and the refresh state machine. See the module docs.
#[derive(Debug, Clone)]
pub struct Metadata {
    config: MetadataConfig,
    /// Every broker heard of, bootstrap or metadata; the refresh rotation goes in id order.
    brokers: BTreeMap<NodeId, String>,
    leaders: ByTopic<Leader>,
    /// Highest leader epoch seen per partition, kept when the leader is forgotten.
    epochs: BTreeMap<TopicPartition, u64>,
    offsets_partitions: Option<u32>,
    /// Partitions per topic, as the last metadata response that named the topic said.
    partition_counts: BTreeMap<String, u32>,
    refresh_wanted: bool,
    in_flight: Option<InFlight>,
    /// No metadata request before this: rate limit and failure backoff.
    next_request_at: Instant,
    /// Index, in id order, of the broker the next refresh goes to.
    cursor: usize,
    failures_consecutive: u32,
    rng: Rng,
}

impl Metadata {
    pub fn new(bootstrap: Vec<BrokerAddr>, config: MetadataConfig, mut rng: Rng) -> Metadata {
        let brokers: BTreeMap<NodeId, String> =
            bootstrap.into_iter().map(|b| (b.id, b.addr)).collect();
        // Start the rotation at a seeded random broker so clients spread their first requests.
        let cursor = rng.range_u64(0, brokers.len().saturating_sub(1) as u64) as usize;
        Metadata {
            config,
            brokers,
            leaders: ByTopic::default(),
            epochs: BTreeMap::new(),
            offsets_partitions: None,
            partition_counts: BTreeMap::new(),
            refresh_wanted: false,
            in_flight: None,
            next_request_at: Instant::ZERO,
            cursor,
            failures_consecutive: 0,
            rng,
        }
    }

    /// The cached leader of `partition`, if known.
    pub fn leader(&self, partition: &TopicPartition) -> Option<NodeId> {
        self.leaders.get(partition).map(|l| l.node)
    }

    /// How many partitions the offsets topic has, once a metadata response said so.
    pub fn offsets_partitions(&self) -> Option<u32> {
        self.offsets_partitions
    }

    /// How many partitions `topic` has, once a metadata response named it.
    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        self.partition_counts.get(topic).copied()
    }

    /// The address of a broker, for the driver to connect to.
    pub fn broker_addr(&self, broker: NodeId) -> Option<&str> {
        self.brokers.get(&broker).map(String::as_str)
    }

    pub fn brokers(&self) -> impl Iterator<Item = (NodeId, &str)> {
        self.brokers.iter().map(|(id, addr)| (*id, addr.as_str()))
    }

    /// Whether a refresh is wanted and not yet sent.
    pub fn refresh_wanted(&self) -> bool {
        self.refresh_wanted
    }

    /// Asks for a refresh as soon as the rate limit allows.
    pub fn request_refresh(&mut self) {
        self.refresh_wanted = true;
    }

    /// Forgets the leader of `partition` and asks for a refresh.
    pub fn invalidate(&mut self, partition: &TopicPartition) {
        self.leaders.remove(partition);
        self.refresh_wanted = true;
    }

    /// Broker `from` said it does not lead `partition`, perhaps naming who does.
    pub fn handle_not_leader(
        &mut self,
        partition: &TopicPartition,
        from: NodeId,
        hint: Option<NodeId>,
    ) {
        match hint {
            Some(node) if node != from => {
                let epoch = self.epochs.get(partition).copied().unwrap_or(0);
                self.leaders.insert(partition, Leader { node, epoch });
            }
            _ => self.invalidate(partition),
        }
    }

    /// A request about `partition` sent to `broker` failed: follow a leader hint, or forget a
    /// leader the failure puts in doubt.
    pub(crate) fn handle_request_failure(
        &mut self,
        partition: &TopicPartition,
        broker: NodeId,
        failure: &RequestFailure,
    ) {
        match failure {
            RequestFailure::Broker(ErrorCode::NotLeader { leader }) => {
                self.handle_not_leader(partition, broker, *leader)
            }
            RequestFailure::Broker(ErrorCode::LeaderChanged | ErrorCode::UnknownPartition)
            | RequestFailure::TimedOut
            | RequestFailure::Disconnected
                if self.leader(partition) == Some(broker) =>
            {
                self.invalidate(partition)
            }
            _ => {}
        }
    }

    /// The connection to `broker` is gone: forget it as a leader, and fail a metadata request
    /// in flight to it.
    pub fn handle_disconnected(&mut self, now: Instant, broker: NodeId) {
        if self.leaders.retain(|l| l.node != broker) {
            self.refresh_wanted = true;
        }
        if self.in_flight.is_some_and(|f| f.broker == broker) {
            self.in_flight = None;
            self.refresh_failed(now, &RequestFailure::Disconnected);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.in_flight.is_some_and(|f| f.deadline <= now) {
            self.in_flight = None;
            self.refresh_failed(now, &RequestFailure::TimedOut);
        }
    }

    /// The next time [`Metadata::handle_timeout`] or [`Metadata::poll_transmit`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let send_at = (self.refresh_wanted && self.in_flight.is_none() && !self.brokers.is_empty())
            .then_some(self.next_request_at);
        earliest([self.in_flight.map(|f| f.deadline), send_at])
    }

    /// Whether `correlation_id` is the metadata request in flight.
    pub fn owns(&self, correlation_id: u64) -> bool {
        self.in_flight
            .is_some_and(|f| f.correlation_id == correlation_id)
    }

    /// The metadata request, when one is wanted and allowed at `now`.
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        ids: &mut CorrelationIds,
    ) -> Option<Transmit> {
        if !self.refresh_wanted || self.in_flight.is_some() || now < self.next_request_at {
            return None;
        }
        let broker = *self
            .brokers
            .keys()
            .nth(self.cursor % self.brokers.len().max(1))?;
        let correlation_id = ids.next_id();
        self.refresh_wanted = false;
        self.in_flight = Some(InFlight {
            correlation_id,
            broker,
            deadline: now + Duration::from_millis(self.config.request_timeout_ms),
        });
        self.next_request_at = now + Duration::from_millis(self.config.refresh_backoff_ms);
        Some(Transmit {
            to: broker,
            lane: 0,
            msg: Message::Request {
                correlation_id,
                request: Request::Metadata,
            },
        })
    }

    /// The answer to the request [`Metadata::owns`].
    pub fn handle_response(&mut self, now: Instant, correlation_id: u64, response: Response) {
        if !self.owns(correlation_id) {
            return;
        }
        self.in_flight = None;
        let Response::Metadata {
            brokers,
            partitions,
        } = response
        else {
            self.refresh_failed(now, &RequestFailure::Unexpected);
            return;
        };
        self.failures_consecutive = 0;
        // Wants raised while this request was in flight are settled by its answer; the client
        // raises a new one for any partition whose leader is still unknown.
        self.refresh_wanted = false;
        for b in brokers {
            self.brokers.insert(b.id, b.addr);
        }
        let offsets_partitions = partitions
            .iter()
            .filter(|p| p.partition.topic == OFFSETS_TOPIC)
            .count() as u32;
        if offsets_partitions > 0 {
            self.offsets_partitions = Some(offsets_partitions);
        }
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for p in &partitions {
            *counts.entry(p.partition.topic.clone()).or_default() += 1;
        }
        self.partition_counts.extend(counts);
        for p in partitions {
            let known_epoch = self.epochs.get(&p.partition).copied().unwrap_or(0);
            if p.leader_epoch < known_epoch {
                continue;
            }
            self.epochs.insert(p.partition.clone(), p.leader_epoch);
            match p.leader {
                Some(node) => {
                    let leader = Leader {
                        node,
                        epoch: p.leader_epoch,
                    };
                    self.leaders.insert(&p.partition, leader);
                }
                None => {
                    self.leaders.remove(&p.partition);
                }
            }
        }
    }

    fn refresh_failed(&mut self, now: Instant, failure: &RequestFailure) {
        tracing::debug!(%failure, "metadata refresh failed; trying the next broker");
        self.refresh_wanted = true;
        self.cursor = self.cursor.wrapping_add(1);
        self.failures_consecutive = self.failures_consecutive.saturating_add(1);
        let doublings = (self.failures_consecutive - 1).min(FAILURE_BACKOFF_DOUBLINGS_MAX);
        let backoff = jittered(&mut self.rng, self.config.refresh_backoff_ms << doublings);
        self.next_request_at = self.next_request_at.max(now + backoff);
    }
}
