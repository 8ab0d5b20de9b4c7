//! A share-group member (KIP-932, claim C3): it reads every partition of a topic together with
//! the group's other members, one record at a time, and acknowledges each record it is given.
//!
//! For every partition it keeps one [`Request::ShareFetch`] in flight to the partition's
//! leader, which holds it until it can acquire records for this member; the records come as
//! [`ShareConsumerEvent::Records`], each with its delivery attempt. The application answers
//! each with [`ShareConsumer::acknowledge`] (accept, release or reject); the consumer sends a
//! partition's pending acknowledgements in one [`Request::ShareAcknowledge`] at a time and
//! reports the outcome: [`ShareConsumerEvent::Acknowledged`] (with the refusals the leader made,
//! such as an expired lock), or [`ShareConsumerEvent::AcknowledgeUnknown`] when the request
//! failed without an answer, in which case the acknowledgement may or may not have committed
//! and the lock decides (at-least-once).
//!
//! Fetching pauses while `held_records_max` records are held unacknowledged, the share
//! consumer's back-pressure. There is no membership protocol: a member that stops
//! is noticed by its locks expiring, and its records go to the others then.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::config::BrokerAddr;
use crate::ids::{NodeId, TopicPartition};
use crate::log::batch::{self, Record};
use crate::protocol::{ErrorCode, Message, Request, Response, ShareAcknowledgeOk, ShareFetchOk};
use crate::rng::Rng;
use crate::share::{AckKind, ShareError, ShareMode, ShareSettings};
use crate::time::{earliest, Instant};

use super::metadata::{Metadata, MetadataConfig};
use super::{jittered, CorrelationIds, RequestFailure, Transmit};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareConsumerConfig {
    pub group: String,
    /// This member's id, unique in the group (a restarted process takes a new one).
    pub member: String,
    pub topic: String,
    pub settings: ShareSettings,
    /// Shared or Key_Shared; every member of the group must name the same.
    pub mode: ShareMode,
    /// Records one fetch may acquire.
    pub max_records: u32,
    /// How long the leader may hold a fetch that finds nothing to acquire.
    pub max_wait_ms: u32,
    pub max_bytes: u32,
    pub request_timeout_ms: u64,
    pub retry_backoff_ms: u64,
    pub metadata_refresh_backoff_ms: u64,
    /// Fetching pauses while the member holds this many records unacknowledged, over all
    /// partitions (each fetch in flight may still bring `max_records`). With the lock, it
    /// bounds how much work a member takes on: records it cannot process before their lock
    /// expires go to another member and its acknowledgements of them are refused.
    pub held_records_max: usize,
}

/// One record as a share fetch delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    pub record: Record,
    /// 1 on the first delivery; the leader archives a record after its attempts run out.
    pub delivery_count: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareConsumerEvent {
    Records {
        partition: TopicPartition,
        records: Vec<ShareRecord>,
        /// When the fetch that acquired them was sent. The leader acquired them between then
        /// and the answer, so only a fetch sent after a record's acceptance can show that it
        /// was handed out again; the application may take the records much later (it was
        /// busy, or stopped).
        requested_at: Instant,
    },
    /// `acks` are committed; `refused` changed nothing.
    Acknowledged {
        partition: TopicPartition,
        acks: Vec<(u64, AckKind)>,
        refused: Vec<(u64, ShareError)>,
    },
    /// The request carrying `acks` failed without an answer or with an error that leaves its
    /// effect unknown.
    AcknowledgeUnknown {
        partition: TopicPartition,
        acks: Vec<(u64, AckKind)>,
        error: String,
    },
}

#[derive(Debug, Default)]
struct PartitionState {
    fetch_in_flight: Option<u64>,
    /// When the fetch in flight was sent: the earliest its records can have been acquired.
    fetch_sent_at: Instant,
    retry_at: Instant,
    /// Records delivered to the application and not yet acknowledged by it.
    held: usize,
    pending_acks: Vec<(u64, AckKind)>,
    ack_in_flight: Option<(u64, Vec<(u64, AckKind)>)>,
}

#[derive(Debug)]
struct Pending {
    partition: TopicPartition,
    broker: NodeId,
    deadline: Instant,
}

/// See the module documentation; the calling contract is the other clients' (see [`super`]).
#[derive(Debug)]
pub struct ShareConsumer {
    config: ShareConsumerConfig,
    metadata: Metadata,
    rng: Rng,
    ids: CorrelationIds,
    now: Instant,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    requests: BTreeMap<u64, Pending>,
    /// Bounded by the partitions times (one fetch answer + one acknowledgement answer) between
    /// two drains of `poll_event`, which the driver runs after every input.
    events: VecDeque<ShareConsumerEvent>,
}

impl ShareConsumer {
    pub fn new(
        config: ShareConsumerConfig,
        bootstrap: Vec<BrokerAddr>,
        mut rng: Rng,
    ) -> ShareConsumer {
        let metadata_config = MetadataConfig {
            refresh_backoff_ms: config.metadata_refresh_backoff_ms,
            request_timeout_ms: config.request_timeout_ms,
        };
        let mut metadata = Metadata::new(bootstrap, metadata_config, rng.fork(1));
        metadata.request_refresh();
        ShareConsumer {
            config,
            metadata,
            rng,
            ids: CorrelationIds::new(),
            now: Instant::ZERO,
            partitions: BTreeMap::new(),
            requests: BTreeMap::new(),
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &ShareConsumerConfig {
        &self.config
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Records delivered and not yet acknowledged, over all partitions.
    pub fn held(&self) -> usize {
        self.partitions.values().map(|p| p.held).sum()
    }

    /// The application's verdict on a record it was given; sent with the partition's next
    /// acknowledgement request.
    pub fn acknowledge(&mut self, partition: &TopicPartition, offset: u64, kind: AckKind) {
        if let Some(p) = self.partitions.get_mut(partition) {
            p.held = p.held.saturating_sub(1);
            p.pending_acks.push((offset, kind));
        }
    }

    pub fn handle_message(&mut self, now: Instant, from: NodeId, msg: Message) {
        self.advance(now);
        let Message::Response {
            correlation_id,
            response,
        } = msg
        else {
            return;
        };
        if self.metadata.owns(correlation_id) {
            self.metadata.handle_response(now, correlation_id, response);
            self.learn_partitions();
        } else if let Some(pending) = self.requests.remove(&correlation_id) {
            self.handle_response(correlation_id, from, pending, response);
        }
        self.want_metadata();
    }

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
            if let Some(pending) = self.requests.remove(&id) {
                self.failed(id, pending, RequestFailure::Disconnected);
            }
        }
        self.want_metadata();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.metadata.handle_timeout(now);
        let expired: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(pending) = self.requests.remove(&id) {
                self.failed(id, pending, RequestFailure::TimedOut);
            }
        }
        self.want_metadata();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let requests = self.requests.values().map(|r| Some(r.deadline));
        let partitions = self.partitions.iter().map(|(tp, p)| {
            self.metadata.leader(tp)?;
            let ack = p.ack_in_flight.is_none() && !p.pending_acks.is_empty();
            match (ack, self.fetch_ready(p)) {
                (true, _) => Some(self.now),
                (false, true) => Some(p.retry_at),
                (false, false) => None,
            }
        });
        earliest(
            requests
                .chain(partitions)
                .chain(std::iter::once(self.metadata.poll_timeout())),
        )
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let now = self.now;
        if let Some(t) = self.metadata.poll_transmit(now, &mut self.ids) {
            return Some(t);
        }
        let ack = self.partitions.iter().find_map(|(tp, p)| {
            let ready = p.ack_in_flight.is_none() && !p.pending_acks.is_empty();
            ready.then(|| Some((tp.clone(), self.metadata.leader(tp)?)))?
        });
        if let Some((tp, to)) = ack {
            return Some(self.send_acks(tp, to));
        }
        let fetch = self.partitions.iter().find_map(|(tp, p)| {
            let ready = self.fetch_ready(p) && p.retry_at <= now;
            ready.then(|| Some((tp.clone(), self.metadata.leader(tp)?)))?
        });
        let (tp, to) = fetch?;
        let request = Request::ShareFetch {
            group: self.config.group.clone(),
            member: self.config.member.clone(),
            partition: tp.clone(),
            max_records: self.config.max_records,
            max_wait_ms: self.config.max_wait_ms,
            max_bytes: self.config.max_bytes,
            settings: self.config.settings,
            mode: self.config.mode,
        };
        let wait = Duration::from_millis(u64::from(self.config.max_wait_ms));
        let (id, transmit) = self.request(tp.clone(), to, request, wait);
        if let Some(p) = self.partitions.get_mut(&tp) {
            p.fetch_in_flight = Some(id);
            p.fetch_sent_at = self.now;
        }
        Some(transmit)
    }

    pub fn poll_event(&mut self) -> Option<ShareConsumerEvent> {
        self.events.pop_front()
    }

    /// A partition may fetch while the member holds fewer than `held_records_max` records
    /// over all partitions: records held past their lock are wasted work.
    fn fetch_ready(&self, p: &PartitionState) -> bool {
        p.fetch_in_flight.is_none() && self.held() < self.config.held_records_max
    }

    fn send_acks(&mut self, tp: TopicPartition, to: NodeId) -> Transmit {
        let acks = self
            .partitions
            .get_mut(&tp)
            .map(|p| std::mem::take(&mut p.pending_acks))
            .unwrap_or_default();
        let request = Request::ShareAcknowledge {
            group: self.config.group.clone(),
            member: self.config.member.clone(),
            partition: tp.clone(),
            acks: acks.clone(),
        };
        let (id, transmit) = self.request(tp.clone(), to, request, Duration::ZERO);
        if let Some(p) = self.partitions.get_mut(&tp) {
            p.ack_in_flight = Some((id, acks));
        }
        transmit
    }

    fn request(
        &mut self,
        partition: TopicPartition,
        to: NodeId,
        request: Request,
        extra: Duration,
    ) -> (u64, Transmit) {
        let correlation_id = self.ids.next_id();
        let deadline = self.now + Duration::from_millis(self.config.request_timeout_ms) + extra;
        self.requests.insert(
            correlation_id,
            Pending {
                partition,
                broker: to,
                deadline,
            },
        );
        let msg = Message::Request {
            correlation_id,
            request,
        };
        (correlation_id, Transmit { to, lane: 0, msg })
    }

    fn handle_response(&mut self, id: u64, from: NodeId, pending: Pending, response: Response) {
        match response {
            Response::ShareFetch(Ok(ok)) => self.fetched(id, &pending.partition, ok),
            Response::ShareAcknowledge(Ok(ok)) => self.acknowledged(id, &pending.partition, ok),
            Response::ShareFetch(Err(e)) | Response::ShareAcknowledge(Err(e)) => {
                self.metadata.handle_request_failure(
                    &pending.partition,
                    from,
                    &RequestFailure::Broker(e.clone()),
                );
                self.failed(id, pending, RequestFailure::Broker(e))
            }
            _ => self.failed(id, pending, RequestFailure::Unexpected),
        }
    }

    fn fetched(&mut self, id: u64, tp: &TopicPartition, ok: ShareFetchOk) {
        let Some(p) = self.partitions.get_mut(tp) else {
            return;
        };
        if p.fetch_in_flight != Some(id) {
            return;
        }
        p.fetch_in_flight = None;
        let counts: BTreeMap<u64, u16> = ok
            .acquired
            .iter()
            .map(|a| (a.offset, a.delivery_count))
            .collect();
        let records: Vec<ShareRecord> = ok
            .batches
            .iter()
            .filter(|b| batch::parse(b).is_ok_and(|h| !h.is_control()))
            .flat_map(|b| batch::records(b).unwrap_or_default())
            .filter_map(|record| {
                let delivery_count = *counts.get(&record.offset)?;
                Some(ShareRecord {
                    record,
                    delivery_count,
                })
            })
            .collect();
        // Acquired records the batches did not hold (a corrupt answer) are not ours to give:
        // their locks expire and they go to another fetch.
        p.held += records.len();
        if records.is_empty() {
            // A held fetch that came back empty may go again at once; an unheld one waits, or
            // the member would spin on an idle partition.
            p.retry_at = match self.config.max_wait_ms {
                0 => self.now + jittered(&mut self.rng, self.config.retry_backoff_ms),
                _ => self.now,
            };
            return;
        }
        let requested_at = p.fetch_sent_at;
        self.events.push_back(ShareConsumerEvent::Records {
            partition: tp.clone(),
            records,
            requested_at,
        });
    }

    fn acknowledged(&mut self, id: u64, tp: &TopicPartition, ok: ShareAcknowledgeOk) {
        let Some(p) = self.partitions.get_mut(tp) else {
            return;
        };
        let Some((_, acks)) = p.ack_in_flight.take_if(|(sent, _)| *sent == id) else {
            return;
        };
        let acks = acks
            .into_iter()
            .filter(|(o, _)| !ok.refused.iter().any(|(r, _)| r == o))
            .collect();
        self.events.push_back(ShareConsumerEvent::Acknowledged {
            partition: tp.clone(),
            acks,
            refused: ok.refused,
        });
    }

    fn failed(&mut self, id: u64, pending: Pending, failure: RequestFailure) {
        if !matches!(failure, RequestFailure::Broker(_)) {
            self.metadata
                .handle_request_failure(&pending.partition, pending.broker, &failure);
        }
        let backoff = jittered(&mut self.rng, self.config.retry_backoff_ms);
        let Some(p) = self.partitions.get_mut(&pending.partition) else {
            return;
        };
        if p.fetch_in_flight == Some(id) {
            p.fetch_in_flight = None;
            p.retry_at = self.now + backoff;
        }
        if let Some((_, acks)) = p.ack_in_flight.take_if(|(sent, _)| *sent == id) {
            let refused_whole =
                matches!(&failure, RequestFailure::Broker(e) if definitely_not_applied(e));
            let error = failure.to_string();
            let event = match refused_whole {
                // Nothing was proposed: the acknowledgements can go again, to the new leader.
                true => {
                    p.pending_acks.splice(0..0, acks);
                    None
                }
                false => Some(ShareConsumerEvent::AcknowledgeUnknown {
                    partition: pending.partition.clone(),
                    acks,
                    error,
                }),
            };
            self.events.extend(event);
        }
        self.metadata.request_refresh();
    }

    /// Every partition of the topic, once metadata names how many there are.
    fn learn_partitions(&mut self) {
        let Some(n) = self.metadata.partition_count(&self.config.topic) else {
            return;
        };
        for i in 0..n {
            let tp = TopicPartition::new(&self.config.topic, i);
            self.partitions.entry(tp).or_default();
        }
    }

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Asks for metadata while the topic's partitions or a leader are unknown; the metadata
    /// cache rate-limits the requests.
    fn want_metadata(&mut self) {
        let unknown = self.partitions.is_empty()
            || self
                .partitions
                .keys()
                .any(|tp| self.metadata.leader(tp).is_none());
        if unknown {
            self.metadata.request_refresh();
        }
    }
}

/// Errors with which the leader refused an acknowledgement request before proposing anything.
fn definitely_not_applied(e: &ErrorCode) -> bool {
    matches!(
        e,
        ErrorCode::NotLeader { .. }
            | ErrorCode::LeaderNotReady
            | ErrorCode::UnknownPartition
            | ErrorCode::Share(_)
            | ErrorCode::Busy
    )
}
