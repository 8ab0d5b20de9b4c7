//! The producer: accumulates records into per-partition batches, sends each batch to its
//! partition's leader, retries what may be retried, and reports every record's fate exactly once.
//!
//! Records go into the partition's open batch, picked by the caller ([`Producer::send`]) or by
//! a [`Partitioner`] ([`Producer::send_to_topic`]). The open batch closes when the next record
//! would take it past `batch_bytes_max`, as soon as it holds `batch_records_max` records, or is
//! sent once `linger_ms` has passed since its first record and the partition has room in its
//! in-flight window (`in_flight_max` requests). While the window is full, records keep joining
//! the open batch: under load batches grow by themselves. A closed batch may be compressed
//! (`compression`). Each partition's requests take one connection ("lane") to its leader, out
//! of `connections_per_broker`.
//!
//! Besides the one `Delivered` event per record, `attempt_events` turns on the send journal: one
//! [`ProducerEvent::Attempt`] per produce attempt (claim P6).
//!
//! Each produce request carries one batch. A batch keeps its bytes across retries, so a retry
//! re-sends the very same records. With `in_flight_max > 1` a retried batch can land after a
//! later one: the reordering the source text warns about for asynchronous sends (claim P4).
//!
//! # Idempotence (claim P4)
//!
//! With `enable_idempotence` the producer first asks any broker for a producer id
//! (`InitProducerId`) and sends nothing until it has one. Each partition has an epoch (starting
//! at the id's) and a sequence counter. When a batch is first handed out it is stamped with the
//! producer id, the partition's epoch and the next sequence number ([`batch::set_producer`]),
//! which it keeps across retries, so the leader recognises a retry of a batch it already has and
//! answers with the original offset instead of appending it again (see
//! [`crate::broker::producer_state`]).
//!
//! Order is kept as well: batches of a partition are handed out in sequence order, a retry only
//! once no batch before it is in flight, and a batch refused with `OutOfOrderSequence` because
//! an earlier one is still being retried is retried after it. `in_flight_max` may not exceed
//! the leader's window of [`PRODUCER_BATCHES_RETAINED`] batches, and a new batch is stamped only
//! fewer than that many stampings after the oldest unresolved one, so that a retry always finds
//! its original among the batches the leader remembers.
//!
//! When a batch that was stamped fails for good (delivery timeout, retries exhausted, an error
//! that cannot be retried, or a sequence gap that no earlier batch will fill), its sequence
//! number is lost and the partition would refuse every later batch. The producer then bumps the
//! partition's epoch itself (the new epoch restarts at sequence 0 and fences the old one at the
//! leader), or asks for a new producer id once the epoch is exhausted. Batches of the old epoch
//! already handed out cannot be re-stamped without risking a duplicate, so each fails (definite
//! only if none of its attempts may have been appended) unless its attempt in flight succeeds;
//! batches not yet handed out go out under the new epoch. No batch of the new epoch is handed
//! out while one of the old is in flight.
//!
//! A record's failure is `definite` only when no attempt of its batch can have been appended:
//! every attempt ended in an error for which [`ErrorCode::produce_definitely_failed`] holds, or
//! the batch never left the client. A timeout, a connection lost with the request in flight, or
//! an error such as `RequestTimedOut` or `LeaderChanged` makes the outcome unknown for good.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::{NonZeroU16, NonZeroU32, NonZeroUsize};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use crate::broker::producer_state::PRODUCER_BATCHES_RETAINED;
use crate::config::BrokerAddr;
use crate::ids::{NodeId, TopicPartition};
use crate::log::batch::{self, Compression, NewRecord};
use crate::protocol::{Acks, ErrorCode, Message, ProduceOk, ProducerIdentity, Request, Response};
use crate::rng::Rng;
use crate::time::{earliest, Earliest, Instant, MillisRange};

use super::metadata::{Metadata, MetadataConfig};
use super::partitioner::{Partitioner, PartitionerState};
use super::{exponential_backoff, CorrelationIds, RequestFailure, Transmit};

/// Records given to [`Producer::send_to_topic`] that wait for their topic's partition count;
/// past it `send_to_topic` fails with [`SendError::BufferFull`]. They count against
/// `buffer_bytes_max` too.
pub const UNPARTITIONED_RECORDS_MAX: usize = 10_000;

/// Default of [`ProducerConfig::batch_records_max`]: more than a batch within the broker's
/// default `batch_bytes_max` of 1 MiB can hold, so only a byte limit cuts batches by default.
pub const BATCH_RECORDS_MAX_DEFAULT: NonZeroU32 = NonZeroU32::new(1 << 16).expect("not zero");

/// Default of [`ProducerConfig::in_flight_max`]: Kafka's
/// `max.in.flight.requests.per.connection`, and the most idempotence allows.
pub const IN_FLIGHT_MAX_DEFAULT: NonZeroUsize =
    NonZeroUsize::new(PRODUCER_BATCHES_RETAINED).expect("not zero");

/// The partition reported for a record that failed before a partition was chosen for it (its
/// topic's partition count never became known).
pub const UNKNOWN_PARTITION: u32 = u32::MAX;

/// The error text of every record sent with `acks = None`.
pub const ACKS_NONE_ERROR: &str = "acks=0: no acknowledgement";

/// The producer's settings. This is also the client half of a scenario's `[[producers]]` table:
/// serde reads it with these names (`enable_idempotence` is spelt `idempotence` there) and takes
/// [`ProducerConfig::default`] for every field a table leaves out; the workload's own fields sit
/// beside it (`fathom_workload::spec::ProducerSpec`). What a field's type cannot refuse,
/// [`ProducerConfig::validate`] does, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ProducerConfig {
    #[serde(deserialize_with = "crate::protocol::acks_by_name")]
    pub acks: Acks,
    /// How long an open batch waits for more records before it is sent; 0 sends at once.
    pub linger_ms: u64,
    /// A batch closes before it would grow past this many bytes (a single larger record is sent
    /// alone).
    pub batch_bytes_max: usize,
    /// A batch closes when it holds this many records.
    pub batch_records_max: NonZeroU32,
    /// How batches store their records; a batch is compressed only when that makes it smaller.
    /// The byte limits count uncompressed bytes.
    pub compression: Compression,
    /// Bytes of records accepted and not yet resolved (open, queued or in flight); `send`
    /// beyond it fails with [`SendError::BufferFull`].
    pub buffer_bytes_max: usize,
    /// Produce requests in flight per partition.
    pub in_flight_max: NonZeroUsize,
    /// Attempts of one batch after its first.
    pub retries_max: u32,
    /// The wait before a retry, jittered between its two ends from the producer's seed and
    /// doubling per attempt up to the upper one.
    pub retry_backoff_ms: MillisRange,
    /// A produce request unanswered for this long has an unknown outcome and is retried. The
    /// broker is asked to answer within three quarters of it.
    pub request_timeout_ms: u64,
    /// A record not acknowledged this long after `send` fails (in flight attempts are still
    /// awaited, up to `request_timeout_ms`).
    pub delivery_timeout_ms: u64,
    pub metadata_refresh_backoff_ms: u64,
    /// Exactly-once appends and order per partition through producer ids and sequence numbers
    /// (see the module docs). Needs `acks = All` and `in_flight_max <= 5`.
    #[serde(rename = "idempotence")]
    pub enable_idempotence: bool,
    /// Report every produce attempt as a [`ProducerEvent::Attempt`] (the send journal). Not a
    /// scenario field: the simulator always keeps the journal.
    #[serde(skip)]
    pub attempt_events: bool,
    /// How [`Producer::send_to_topic`] picks partitions. Not read from a scenario table, whose
    /// `partitioner` also offers the workload's own choices and sets this one.
    #[serde(skip)]
    pub partitioner: Partitioner,
    /// Connections (lanes) to each broker; each partition's requests always take the same lane
    /// ([`Producer::lane_of`]), so they stay in order, while partitions spread over the lanes.
    /// Metadata and producer id requests take lane 0.
    pub connections_per_broker: NonZeroU16,
}

/// A [`ProducerConfig`] that cannot run: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidProducerConfig {
    /// The field's name as a scenario spells it.
    pub field: &'static str,
    pub reason: String,
}

impl ProducerConfig {
    /// Why this config cannot run, if it cannot: what the fields' types do not already refuse.
    pub fn validate(&self) -> Result<(), InvalidProducerConfig> {
        let invalid = |field, reason: &str| {
            Err(InvalidProducerConfig {
                field,
                reason: reason.to_string(),
            })
        };
        if self.request_timeout_ms == 0 {
            return invalid("request_timeout_ms", "must be at least 1");
        }
        if self.batch_bytes_max == 0 {
            return invalid("batch_bytes_max", "must be at least 1");
        }
        if self.enable_idempotence {
            if self.acks != Acks::All {
                return invalid(
                    "idempotence",
                    "needs acks = \"all\": the leader deduplicates only what it waits to commit",
                );
            }
            if self.in_flight_max.get() > PRODUCER_BATCHES_RETAINED {
                return invalid(
                    "in_flight_max",
                    &format!(
                        "{} is above {PRODUCER_BATCHES_RETAINED}, the most an idempotent producer \
                         may have in flight (the leader remembers the last \
                         {PRODUCER_BATCHES_RETAINED} batches of each producer)",
                        self.in_flight_max
                    ),
                );
            }
        }
        Ok(())
    }
}

impl ProducerConfig {
    /// Why no send under this config could succeed, if none could: a config that runs (see
    /// [`validate`](Self::validate)) but whose limits leave no room for a batch or for a send
    /// to complete. Scenarios refuse such configs; the state machine runs them (a test may want
    /// every send to fail).
    pub fn check_useful(&self) -> Result<(), InvalidProducerConfig> {
        let invalid = |field, reason: &str| {
            Err(InvalidProducerConfig {
                field,
                reason: reason.to_string(),
            })
        };
        if self.buffer_bytes_max < self.batch_bytes_max {
            return invalid(
                "buffer_bytes_max",
                &format!(
                    "{} is below batch_bytes_max ({}): not even one batch would fit",
                    self.buffer_bytes_max, self.batch_bytes_max
                ),
            );
        }
        let reach = self.linger_ms.saturating_add(self.request_timeout_ms);
        if self.delivery_timeout_ms < reach {
            return invalid(
                "delivery_timeout_ms",
                &format!(
                    "{} is below linger_ms + request_timeout_ms ({reach}): no send could \
                     complete in time",
                    self.delivery_timeout_ms
                ),
            );
        }
        Ok(())
    }
}

impl Default for ProducerConfig {
    /// Fathom's one set of producer defaults: what a scenario's `[[producers]]` table gets for a
    /// setting it leaves out (README, "Client defaults", lists them beside Kafka's). Timeouts and
    /// retries are a few seconds long, not Kafka's minutes, so that a fault's effect shows within
    /// a short run; the rest are Kafka's.
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            // Kafka before 4.0; Kafka 4.0 lingers 5 ms.
            linger_ms: 0,
            batch_bytes_max: 16 * 1024,
            batch_records_max: BATCH_RECORDS_MAX_DEFAULT,
            compression: Compression::None,
            buffer_bytes_max: 32 * 1024 * 1024,
            in_flight_max: IN_FLIGHT_MAX_DEFAULT,
            // Kafka retries until the delivery timeout; a bound keeps a dead cluster's retries
            // short and countable.
            retries_max: 10,
            retry_backoff_ms: MillisRange {
                min_ms: 50,
                max_ms: 500,
            },
            request_timeout_ms: 2_000,
            delivery_timeout_ms: 10_000,
            metadata_refresh_backoff_ms: 100,
            enable_idempotence: false,
            attempt_events: false,
            partitioner: Partitioner::KeyHash,
            connections_per_broker: NonZeroU16::MIN,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the producer's buffer is full")]
    BufferFull,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error} (definite: {definite})")]
pub struct SendFailure {
    /// True only if the record was certainly not appended by any attempt.
    pub definite: bool,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProducerEvent {
    /// The fate of one record given to `send`, reported exactly once.
    Delivered {
        id: String,
        partition: TopicPartition,
        /// The record's offset.
        result: Result<u64, SendFailure>,
    },
    /// The send journal (claim P6), with `attempt_events` on: one produce attempt of one batch,
    /// reported once when it resolves (answered, timed out, or lost with its connection), before
    /// the `Delivered` events of the batch's records if it was the last attempt. Every attempt
    /// that was handed to `poll_transmit` is reported, so the journal shows each retry and why it
    /// was needed.
    Attempt {
        partition: TopicPartition,
        /// The records of the batch, in offset order.
        ids: Vec<String>,
        /// 1 for the first attempt of the batch.
        attempt: u32,
        /// Where it was sent.
        broker: NodeId,
        /// When it was handed out by `poll_transmit`.
        sent_at: Instant,
        /// The batch's base offset, or why the attempt failed (an error that leaves the outcome
        /// unknown included; with `acks = None` every attempt reports [`ACKS_NONE_ERROR`]).
        outcome: Result<u64, String>,
    },
}

/// A record given to `send_to_topic` before its topic's partition count was known.
#[derive(Debug)]
struct Unpartitioned {
    topic: String,
    key: Option<Bytes>,
    id: String,
    record: NewRecord,
    record_bytes: usize,
    created: Instant,
}

/// The batch still taking records.
#[derive(Debug)]
struct OpenBatch {
    seq: u64,
    ids: Vec<String>,
    records: Vec<NewRecord>,
    encoded_bytes: usize,
    created: Instant,
}

/// A closed batch, queued or in flight.
#[derive(Debug)]
struct Batch {
    /// Creation order within the producer; queued batches of a partition go out in this order.
    seq: u64,
    ids: Vec<String>,
    bytes: Bytes,
    /// What the batch counts against `buffer_bytes_max`.
    buffer_bytes: usize,
    /// When its first record was given to `send`; the delivery timeout counts from here.
    created: Instant,
    attempts: u32,
    /// Some attempt may have been appended: any failure is no longer definite.
    maybe_appended: bool,
    retry_at: Instant,
    last_error: String,
    /// With idempotence: the identity the batch was stamped with when first handed out.
    producer: Option<ProducerIdentity>,
}

#[derive(Debug, Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    /// Closed batches waiting to be sent, by `seq`.
    queued: BatchQueue,
    /// Batches in flight, by `seq`, with the identity each was stamped with.
    in_flight: BTreeMap<u64, Option<ProducerIdentity>>,
    /// With idempotence: stamped batches not yet resolved (in flight or waiting for a retry),
    /// by `seq`, with their place in the partition's stamping order.
    stamped: BTreeMap<u64, u64>,
}

/// Closed batches waiting to be sent, by `seq`, with the two times the producer's timers ask
/// for kept in order beside them: the earliest retry and the oldest creation. Under overload a
/// partition can queue hundreds of thousands of one-record batches; scanning them on every
/// timer query made a run quadratic in the backlog.
#[derive(Debug, Default)]
struct BatchQueue {
    by_seq: BTreeMap<u64, Batch>,
    by_retry: BTreeSet<(Instant, u64)>,
    by_created: BTreeSet<(Instant, u64)>,
}

impl BatchQueue {
    fn insert(&mut self, batch: Batch) {
        // A seq is queued at most once; should it come twice, the new batch replaces the old
        // one in the indexes too.
        self.remove(batch.seq);
        self.by_retry.insert((batch.retry_at, batch.seq));
        self.by_created.insert((batch.created, batch.seq));
        self.by_seq.insert(batch.seq, batch);
    }

    fn remove(&mut self, seq: u64) -> Option<Batch> {
        let batch = self.by_seq.remove(&seq)?;
        self.by_retry.remove(&(batch.retry_at, seq));
        self.by_created.remove(&(batch.created, seq));
        Some(batch)
    }

    fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// The batch with the lowest `seq`: the next to go out in order.
    fn first(&self) -> Option<&Batch> {
        self.by_seq.values().next()
    }

    fn iter(&self) -> impl Iterator<Item = &Batch> {
        self.by_seq.values()
    }

    /// Batches with a `seq` below `seq`.
    fn before(&self, seq: u64) -> impl Iterator<Item = &Batch> {
        self.by_seq.range(..seq).map(|(_, b)| b)
    }

    fn earliest_retry(&self) -> Option<Instant> {
        self.by_retry.first().map(|(at, _)| *at)
    }

    fn oldest_created(&self) -> Option<Instant> {
        self.by_created.first().map(|(at, _)| *at)
    }

    /// The seqs of batches created at or before `cutoff`, in `seq` order.
    fn created_by(&self, cutoff: Instant) -> Vec<u64> {
        let mut seqs: Vec<u64> = self
            .by_created
            .iter()
            .take_while(|(created, _)| *created <= cutoff)
            .map(|(_, seq)| *seq)
            .collect();
        seqs.sort_unstable();
        seqs
    }
}

impl PartitionQueue {
    fn is_empty(&self) -> bool {
        self.open.is_none() && self.queued.is_empty() && self.in_flight.is_empty()
    }

    fn has_unsent(&self) -> bool {
        self.open.is_some() || !self.queued.is_empty()
    }
}

/// An idempotent producer's numbering of one partition; kept while the producer lives, since
/// the partition's leader remembers it.
#[derive(Debug, Clone, Copy, Default)]
struct PartitionSequence {
    /// `None` until the first batch is stamped, and again after the epoch ran out.
    identity: Option<ProducerIdentity>,
    next_sequence: u32,
    /// Batches stamped with `identity` so far.
    stamped_batches: u64,
}

/// The `InitProducerId` exchange of an idempotent producer.
#[derive(Debug, Default)]
struct ProducerIdRequest {
    /// Correlation id, broker and deadline of the request in flight.
    in_flight: Option<(u64, NodeId, Instant)>,
    /// No request before this: failure backoff.
    next_at: Instant,
    failures_consecutive: u32,
    /// Index, in id order, of the broker asked next.
    cursor: usize,
}

#[derive(Debug)]
struct InFlightProduce {
    partition: TopicPartition,
    broker: NodeId,
    lane: u16,
    sent_at: Instant,
    deadline: Instant,
    batch: Batch,
}

/// The producer state machine.
///
/// Calling contract: feed inputs (`send`, `handle_message`, `handle_disconnected`,
/// `handle_timeout`), then drain `poll_transmit` until `None` and `poll_event` until `None`, then
/// sleep until `poll_timeout` (or the next input) and call `handle_timeout`. `poll_transmit` acts
/// at the time of the latest input, so drain it right after the input.
#[derive(Debug)]
pub struct Producer {
    config: ProducerConfig,
    metadata: Metadata,
    rng: Rng,
    ids: CorrelationIds,
    now: Instant,
    partitions: BTreeMap<TopicPartition, PartitionQueue>,
    /// Produce requests awaiting an answer, by correlation id.
    in_flight: BTreeMap<u64, InFlightProduce>,
    /// One event per record accepted by `send`; bounded by what `buffer_bytes_max` admits
    /// between two drains.
    events: VecDeque<ProducerEvent>,
    buffered_bytes: usize,
    next_batch_seq: u64,
    /// Round-robin start for the next partition to send from.
    next_partition: Option<TopicPartition>,
    /// With idempotence: the id new partition identities take; `None` while one is requested.
    producer_id: Option<u64>,
    producer_id_request: ProducerIdRequest,
    sequences: BTreeMap<TopicPartition, PartitionSequence>,
    partitioner: PartitionerState,
    /// Oldest first; at most [`UNPARTITIONED_RECORDS_MAX`].
    unpartitioned: VecDeque<Unpartitioned>,
}

impl Producer {
    /// Panics if `config` does not [`validate`](ProducerConfig::validate).
    pub fn new(config: ProducerConfig, bootstrap: Vec<BrokerAddr>, mut rng: Rng) -> Producer {
        if let Err(e) = config.validate() {
            panic!("invalid producer config: {e}");
        }
        let metadata_config = MetadataConfig {
            refresh_backoff_ms: config.metadata_refresh_backoff_ms,
            request_timeout_ms: config.request_timeout_ms,
        };
        let metadata = Metadata::new(bootstrap, metadata_config, rng.fork(1));
        Producer {
            config,
            metadata,
            rng,
            ids: CorrelationIds::new(),
            now: Instant::ZERO,
            partitions: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            events: VecDeque::new(),
            buffered_bytes: 0,
            next_batch_seq: 0,
            next_partition: None,
            producer_id: None,
            producer_id_request: ProducerIdRequest::default(),
            sequences: BTreeMap::new(),
            partitioner: PartitionerState::default(),
            unpartitioned: VecDeque::new(),
        }
    }

    /// With idempotence: the producer id in use for new partitions, once a broker gave one.
    pub fn producer_id(&self) -> Option<u64> {
        self.producer_id
    }

    /// With idempotence: the identity `partition`'s batches are stamped with now.
    pub fn partition_identity(&self, partition: &TopicPartition) -> Option<ProducerIdentity> {
        self.sequences.get(partition).and_then(|s| s.identity)
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The address of a broker, for the driver to connect to.
    pub fn broker_addr(&self, broker: NodeId) -> Option<&str> {
        self.metadata.broker_addr(broker)
    }

    /// Produce requests awaiting an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Bytes of records accepted and not yet resolved; counted against `buffer_bytes_max`.
    pub fn queued_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Queues a record with key `id` and timestamp `now` for `partition`.
    pub fn send(
        &mut self,
        now: Instant,
        partition: TopicPartition,
        id: String,
        value: Bytes,
    ) -> Result<(), SendError> {
        self.advance(now);
        let (record, record_bytes) = self.admit(now, &id, value)?;
        self.enqueue(now, partition, id, record, record_bytes);
        self.want_unknown_leaders();
        Ok(())
    }

    /// Queues a record with key `id` for a partition of `topic` that the configured
    /// [`Partitioner`] picks, from `partition_key` for [`Partitioner::KeyHash`]. The record's own
    /// key slot carries `id`, as with [`send`](Self::send); `partition_key` only picks the
    /// partition.
    ///
    /// Returns the partition, or `None` while the topic's partition count is unknown: the record
    /// then waits (counted against `buffer_bytes_max`, at most [`UNPARTITIONED_RECORDS_MAX`]
    /// records) for a metadata answer naming the topic, and its `Delivered` event names the
    /// partition it got; if none comes within `delivery_timeout_ms` it fails definitely with
    /// partition [`UNKNOWN_PARTITION`].
    pub fn send_to_topic(
        &mut self,
        now: Instant,
        topic: &str,
        partition_key: Option<&[u8]>,
        id: String,
        value: Bytes,
    ) -> Result<Option<TopicPartition>, SendError> {
        self.advance(now);
        if self.metadata.partition_count(topic).is_none()
            && self.unpartitioned.len() >= UNPARTITIONED_RECORDS_MAX
        {
            return Err(SendError::BufferFull);
        }
        let (record, record_bytes) = self.admit(now, &id, value)?;
        let placed = match self.metadata.partition_count(topic) {
            Some(count) => {
                Some(self.place(now, topic, partition_key, count, id, record, record_bytes))
            }
            None => {
                self.unpartitioned.push_back(Unpartitioned {
                    topic: topic.to_string(),
                    key: partition_key.map(Bytes::copy_from_slice),
                    id,
                    record,
                    record_bytes,
                    created: now,
                });
                None
            }
        };
        self.want_unknown_leaders();
        Ok(placed)
    }

    /// Builds a record and takes its room in the buffer.
    fn admit(
        &mut self,
        now: Instant,
        id: &str,
        value: Bytes,
    ) -> Result<(NewRecord, usize), SendError> {
        let record = NewRecord {
            timestamp_ns: now.as_nanos(),
            key: Bytes::from(id.as_bytes().to_vec()),
            value,
        };
        let record_bytes = batch::record_encoded_len(&record);
        if self.buffered_bytes + record_bytes > self.config.buffer_bytes_max {
            return Err(SendError::BufferFull);
        }
        self.buffered_bytes += record_bytes;
        Ok((record, record_bytes))
    }

    /// Picks the partition of an admitted record and queues it there.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        now: Instant,
        topic: &str,
        partition_key: Option<&[u8]>,
        count: u32,
        id: String,
        record: NewRecord,
        record_bytes: usize,
    ) -> TopicPartition {
        let partitions = &self.partitions;
        let open_batch = |p: u32| {
            partitions
                .get(&TopicPartition::new(topic, p))
                .and_then(|q| q.open.as_ref())
                .map(|o| o.seq)
        };
        let kind = self.config.partitioner;
        let p =
            self.partitioner
                .choose(kind, topic, partition_key, count, open_batch, &mut self.rng);
        let partition = TopicPartition::new(topic, p);
        let batch = self.enqueue(now, partition.clone(), id, record, record_bytes);
        self.partitioner
            .placed(kind, topic, partition_key.is_some(), p, batch);
        partition
    }

    /// Adds an admitted record to `partition`'s open batch, closing the batch first if the
    /// record would not fit; returns the creation number of the batch it joined.
    fn enqueue(
        &mut self,
        now: Instant,
        partition: TopicPartition,
        id: String,
        record: NewRecord,
        record_bytes: usize,
    ) -> u64 {
        let queue = self.partitions.entry(partition).or_default();
        let bytes_max = self.config.batch_bytes_max;
        // A u32 count of records always fits a usize on the targets Fathom builds for.
        let records_max = self.config.batch_records_max.get() as usize;
        if queue
            .open
            .as_ref()
            .is_some_and(|open| open.encoded_bytes + record_bytes > bytes_max)
        {
            let batch = close(
                queue.open.take().expect("checked above"),
                self.config.compression,
            );
            queue.queued.insert(batch);
        }
        let seq = &mut self.next_batch_seq;
        let open = queue.open.get_or_insert_with(|| {
            *seq += 1;
            OpenBatch {
                seq: *seq,
                ids: Vec::new(),
                records: Vec::new(),
                encoded_bytes: batch::HEADER_BYTES,
                created: now,
            }
        });
        open.ids.push(id);
        open.records.push(record);
        open.encoded_bytes += record_bytes;
        let joined = open.seq;
        // Full by count: no later record can join, so it need not wait for its linger.
        if open.records.len() >= records_max {
            let batch = close(
                queue.open.take().expect("just filled"),
                self.config.compression,
            );
            queue.queued.insert(batch);
        }
        joined
    }

    /// Places the records that waited for their topic's partition count, now that metadata may
    /// know it; fails those whose delivery timeout passed.
    fn place_unpartitioned(&mut self, now: Instant) {
        if self.unpartitioned.is_empty() {
            return;
        }
        let delivery_timeout = Duration::from_millis(self.config.delivery_timeout_ms);
        let waiting = std::mem::take(&mut self.unpartitioned);
        for u in waiting {
            if let Some(count) = self.metadata.partition_count(&u.topic) {
                let key = u.key.as_deref();
                self.place(
                    u.created,
                    &u.topic,
                    key,
                    count,
                    u.id,
                    u.record,
                    u.record_bytes,
                );
            } else if u.created + delivery_timeout <= now {
                self.buffered_bytes -= u.record_bytes;
                self.events.push_back(ProducerEvent::Delivered {
                    id: u.id,
                    partition: TopicPartition::new(u.topic.clone(), UNKNOWN_PARTITION),
                    result: Err(SendFailure {
                        definite: true,
                        error: format!(
                            "delivery timeout expired before the partitions of topic {} \
                             were known",
                            u.topic
                        ),
                    }),
                });
            } else {
                self.unpartitioned.push_back(u);
            }
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
            self.place_unpartitioned(now);
        } else if self
            .producer_id_request
            .in_flight
            .is_some_and(|(id, _, _)| id == correlation_id)
        {
            self.producer_id_request.in_flight = None;
            match response {
                Response::InitProducerId(Ok(identity)) => self.producer_id_granted(identity),
                _ => self.producer_id_failed(),
            }
        } else if let Some(f) = self.in_flight.remove(&correlation_id) {
            // A late answer to a request already given up on was removed above and lands here
            // as unknown: ignored.
            debug_assert_eq!(f.broker, from);
            let outcome = match response {
                Response::Produce(Ok(ProduceOk { base_offset })) => Ok(base_offset),
                Response::Produce(Err(e)) => Err(RequestFailure::Broker(e)),
                _ => Err(RequestFailure::Unexpected),
            };
            self.attempt_resolved(f, outcome);
        }
        self.want_unknown_leaders();
    }

    /// Every connection to `broker` is gone (or could not be opened): each request in flight to
    /// it has an unknown outcome.
    pub fn handle_disconnected(&mut self, now: Instant, broker: NodeId) {
        self.disconnected(now, broker, None);
    }

    /// Connection number `lane` to `broker` is gone: each request in flight on it has an
    /// unknown outcome; the other lanes are untouched.
    pub fn handle_lane_disconnected(&mut self, now: Instant, broker: NodeId, lane: u16) {
        self.disconnected(now, broker, Some(lane));
    }

    /// The lane `partition`'s requests take: spread by topic and partition number, the same
    /// on every run.
    pub fn lane_of(&self, partition: &TopicPartition) -> u16 {
        let lanes = u64::from(self.config.connections_per_broker.get());
        let spread = crc32c::crc32c(partition.topic.as_bytes()) as u64 + partition.partition as u64;
        (spread % lanes) as u16
    }

    fn disconnected(&mut self, now: Instant, broker: NodeId, lane: Option<u16>) {
        self.advance(now);
        let on_lane = |l: u16| lane.is_none_or(|lane| lane == l);
        // Metadata and producer id requests take lane 0.
        if on_lane(0) {
            self.metadata.handle_disconnected(now, broker);
            if self
                .producer_id_request
                .in_flight
                .is_some_and(|(_, b, _)| b == broker)
            {
                self.producer_id_request.in_flight = None;
                self.producer_id_failed();
            }
        }
        let lost: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.broker == broker && on_lane(f.lane))
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            let f = self.in_flight.remove(&id).expect("listed above");
            self.attempt_resolved(f, Err(RequestFailure::Disconnected));
        }
        self.want_unknown_leaders();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.metadata.handle_timeout(now);
        if self
            .producer_id_request
            .in_flight
            .is_some_and(|(_, _, deadline)| deadline <= now)
        {
            self.producer_id_request.in_flight = None;
            self.producer_id_failed();
        }
        let expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let f = self.in_flight.remove(&id).expect("listed above");
            self.attempt_resolved(f, Err(RequestFailure::TimedOut));
        }
        self.expire_unsent(now);
        self.place_unpartitioned(now);
        self.want_unknown_leaders();
    }

    /// The earliest time `handle_timeout` has work: a request or delivery deadline, a linger or
    /// retry backoff ending, a metadata refresh. `None` when idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let delivery_timeout = Duration::from_millis(self.config.delivery_timeout_ms);
        // Folded as they come: this runs on every turn of the driver's loop.
        let mut deadlines = Earliest::of([
            self.metadata.poll_timeout(),
            self.in_flight.values().map(|f| f.deadline).min(),
            self.producer_id_request.in_flight.map(|(_, _, d)| d),
            self.unpartitioned
                .front()
                .map(|u| u.created + delivery_timeout),
            self.wants_producer_id()
                .then_some(self.producer_id_request.next_at),
        ]);
        for (partition, queue) in &self.partitions {
            let oldest = earliest([
                queue.open.as_ref().map(|o| o.created),
                queue.queued.oldest_created(),
            ]);
            deadlines.add(oldest.map(|t| t + delivery_timeout));
            deadlines.add(self.send_at(partition, queue));
        }
        deadlines.get()
    }

    /// The next message for a broker.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let now = self.now;
        if let Some(t) = self.metadata.poll_transmit(now, &mut self.ids) {
            return Some(t);
        }
        if let Some(t) = self.poll_producer_id_request(now) {
            return Some(t);
        }
        // Round robin from the partition after the last one served.
        let (from, wrapped) = match &self.next_partition {
            Some(s) => (self.partitions.range(s..), Some(self.partitions.range(..s))),
            None => (self.partitions.range::<TopicPartition, _>(..), None),
        };
        let ready = from
            .chain(wrapped.into_iter().flatten())
            .find(|(partition, queue)| self.send_at(partition, queue).is_some_and(|at| at <= now))
            .map(|(partition, _)| partition.clone());
        let partition = ready?;
        let leader = self.metadata.leader(&partition).expect("send_at checked");
        let idempotent = self.config.enable_idempotence;
        let queue = self.partitions.get_mut(&partition).expect("found above");
        // With idempotence batches go out strictly in order; send_at checked the first.
        let ready = if idempotent {
            queue.queued.first().map(|b| b.seq)
        } else if queue.queued.earliest_retry().is_some_and(|at| at <= now) {
            queue
                .queued
                .iter()
                .find(|b| b.retry_at <= now)
                .map(|b| b.seq)
        } else {
            None
        };
        let batch = match ready.and_then(|seq| queue.queued.remove(seq)) {
            Some(batch) => batch,
            None => close(
                queue.open.take().expect("send_at found a ready batch"),
                self.config.compression,
            ),
        };
        self.next_partition = self
            .partitions
            .range(&partition..)
            .nth(1)
            .map(|(p, _)| p.clone());
        Some(self.transmit(partition, leader, batch))
    }

    pub fn poll_event(&mut self) -> Option<ProducerEvent> {
        self.events.pop_front()
    }

    /// Moves the clock on; an input stamped a little in the past (the application read the
    /// time before the driver's last step) is taken as happening now.
    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn partition_mut(&mut self, partition: &TopicPartition) -> &mut PartitionQueue {
        self.partitions
            .get_mut(partition)
            .expect("a partition with work has a queue")
    }

    /// When `partition` can next send a batch: `None` while it has nothing to send, no known
    /// leader, or a full in-flight window (and, with idempotence, while the batch next in order
    /// must wait for an identity or for the batches ahead of it).
    fn send_at(&self, partition: &TopicPartition, queue: &PartitionQueue) -> Option<Instant> {
        self.metadata.leader(partition)?;
        if self.config.acks != Acks::None
            && queue.in_flight.len() >= self.config.in_flight_max.get()
        {
            return None;
        }
        let linger = Duration::from_millis(self.config.linger_ms);
        if !self.config.enable_idempotence {
            return earliest([
                queue.queued.earliest_retry(),
                queue.open.as_ref().map(|o| o.created + linger),
            ]);
        }
        let identity = self.identity_for(partition)?;
        // Nothing of a new epoch while the old one is in flight: the leader would fence it.
        if queue.in_flight.values().any(|i| *i != Some(identity)) {
            return None;
        }
        match queue.queued.first() {
            // A retry waits for every batch ahead of it to come back.
            Some(first) if first.attempts > 0 && queue.in_flight.keys().any(|s| *s < first.seq) => {
                None
            }
            Some(first) if first.attempts > 0 => Some(first.retry_at),
            // A new batch is stamped only within the leader's window of the oldest unresolved
            // one: were that one appended, a retry of it must still find it among the last
            // PRODUCER_BATCHES_RETAINED batches, however many of those after it were acked.
            _ if queue.stamped.first_key_value().is_some_and(|(_, oldest)| {
                let stamped = self
                    .sequences
                    .get(partition)
                    .map_or(0, |s| s.stamped_batches);
                stamped - oldest >= PRODUCER_BATCHES_RETAINED as u64
            }) =>
            {
                None
            }
            Some(first) => Some(first.retry_at),
            None => queue.open.as_ref().map(|o| o.created + linger),
        }
    }

    /// The identity the next batch of `partition` would be stamped with: its own, or a fresh
    /// one from the producer id once known.
    fn identity_for(&self, partition: &TopicPartition) -> Option<ProducerIdentity> {
        match self.sequences.get(partition).and_then(|s| s.identity) {
            Some(identity) => Some(identity),
            None => self.producer_id.map(|producer_id| ProducerIdentity {
                producer_id,
                producer_epoch: 0,
            }),
        }
    }

    fn transmit(
        &mut self,
        partition: TopicPartition,
        leader: NodeId,
        mut batch: Batch,
    ) -> Transmit {
        if self.config.enable_idempotence && batch.producer.is_none() {
            self.stamp(&partition, &mut batch);
        }
        let lane = self.lane_of(&partition);
        batch.attempts += 1;
        let correlation_id = self.ids.next_id();
        let server_timeout_ms = (self.config.request_timeout_ms / 4 * 3).min(u32::MAX as u64);
        let msg = Message::Request {
            correlation_id,
            request: Request::Produce {
                partition: partition.clone(),
                acks: self.config.acks,
                timeout_ms: server_timeout_ms as u32,
                batch: batch.bytes.clone(),
            },
        };
        if self.config.acks == Acks::None {
            self.journal(
                &partition,
                &batch,
                leader,
                self.now,
                Err(ACKS_NONE_ERROR.into()),
            );
            let failure = SendFailure {
                definite: false,
                error: ACKS_NONE_ERROR.to_string(),
            };
            self.resolve(partition, batch, |_| Err(failure.clone()));
        } else {
            self.partition_mut(&partition)
                .in_flight
                .insert(batch.seq, batch.producer);
            let deadline = self.now + Duration::from_millis(self.config.request_timeout_ms);
            self.in_flight.insert(
                correlation_id,
                InFlightProduce {
                    partition,
                    broker: leader,
                    lane,
                    sent_at: self.now,
                    deadline,
                    batch,
                },
            );
        }
        Transmit {
            to: leader,
            lane,
            msg,
        }
    }

    /// Gives a batch its producer id, epoch and sequence numbers, for good.
    fn stamp(&mut self, partition: &TopicPartition, batch: &mut Batch) {
        let identity = self
            .identity_for(partition)
            .expect("send_at checked for an identity");
        let seqs = self.sequences.entry(partition.clone()).or_default();
        if seqs.identity != Some(identity) {
            *seqs = PartitionSequence {
                identity: Some(identity),
                next_sequence: 0,
                stamped_batches: 0,
            };
        }
        let base_sequence = seqs.next_sequence;
        seqs.next_sequence = base_sequence.wrapping_add(batch.ids.len() as u32);
        let index = seqs.stamped_batches;
        seqs.stamped_batches += 1;
        self.partition_mut(partition)
            .stamped
            .insert(batch.seq, index);
        batch.bytes = batch::set_producer(
            &batch.bytes,
            identity.producer_id,
            identity.producer_epoch,
            base_sequence,
        );
        batch.producer = Some(identity);
    }

    /// One attempt came back (or never will): journal it, then deliver or handle the failure.
    fn attempt_resolved(&mut self, f: InFlightProduce, outcome: Result<u64, RequestFailure>) {
        self.partition_mut(&f.partition)
            .in_flight
            .remove(&f.batch.seq);
        let journaled = outcome.as_ref().map(|o| *o).map_err(|e| e.to_string());
        self.journal(&f.partition, &f.batch, f.broker, f.sent_at, journaled);
        match outcome {
            Ok(base_offset) => self.delivered(f.partition, f.batch, base_offset),
            Err(failure) => self.attempt_failed(f.partition, f.broker, f.batch, failure),
        }
    }

    fn journal(
        &mut self,
        partition: &TopicPartition,
        batch: &Batch,
        broker: NodeId,
        sent_at: Instant,
        outcome: Result<u64, String>,
    ) {
        if !self.config.attempt_events {
            return;
        }
        self.events.push_back(ProducerEvent::Attempt {
            partition: partition.clone(),
            ids: batch.ids.clone(),
            attempt: batch.attempts,
            broker,
            sent_at,
            outcome,
        });
    }

    fn delivered(&mut self, partition: TopicPartition, batch: Batch, base_offset: u64) {
        // An offset that leaves no room for the batch is an answer no log gives: fate unknown.
        self.resolve(partition, batch, |i| {
            base_offset
                .checked_add(i as u64)
                .ok_or_else(|| SendFailure {
                    definite: false,
                    error: format!(
                        "broker answered base offset {base_offset}, past the offset space"
                    ),
                })
        });
    }

    fn attempt_failed(
        &mut self,
        partition: TopicPartition,
        broker: NodeId,
        mut batch: Batch,
        failure: RequestFailure,
    ) {
        let now = self.now;
        let attempt_definite =
            matches!(&failure, RequestFailure::Broker(e) if e.produce_definitely_failed());
        batch.maybe_appended |= !attempt_definite;
        batch.last_error = failure.to_string();
        self.metadata
            .handle_request_failure(&partition, broker, &failure);
        let delivery_deadline =
            batch.created + Duration::from_millis(self.config.delivery_timeout_ms);
        let give_up = if self.is_stale(&partition, &batch) {
            Some("abandoned after an earlier batch of the partition failed (epoch bumped)")
        } else if failure == RequestFailure::Broker(ErrorCode::OutOfOrderSequence)
            && !self.has_unresolved_before(&partition, &batch)
        {
            Some("sequence gap that no earlier batch will fill")
        } else if !failure.is_retriable() {
            Some("not retriable")
        } else if batch.attempts > self.config.retries_max {
            Some("retries exhausted")
        } else if now >= delivery_deadline {
            Some("delivery timeout expired")
        } else {
            None
        };
        if let Some(reason) = give_up {
            self.fail(partition, batch, reason);
            return;
        }
        let backoff = exponential_backoff(
            &mut self.rng,
            self.config.retry_backoff_ms.min_ms,
            self.config.retry_backoff_ms.max_ms,
            batch.attempts,
        );
        batch.retry_at = now + backoff;
        self.partition_mut(&partition).queued.insert(batch);
    }

    /// A batch stamped with an identity its partition has moved on from.
    fn is_stale(&self, partition: &TopicPartition, batch: &Batch) -> bool {
        batch.producer.is_some()
            && batch.producer != self.sequences.get(partition).and_then(|s| s.identity)
    }

    /// Whether a batch of the same identity ahead of `batch` may still be appended (it is in
    /// flight or waiting for a retry), so that `batch`'s `OutOfOrderSequence` may go away.
    fn has_unresolved_before(&self, partition: &TopicPartition, batch: &Batch) -> bool {
        let Some(queue) = self.partitions.get(partition) else {
            return false;
        };
        queue
            .in_flight
            .range(..batch.seq)
            .any(|(_, identity)| *identity == batch.producer)
            || queue
                .queued
                .before(batch.seq)
                .any(|b| b.producer == batch.producer)
    }

    /// Fails unsent batches whose delivery timeout has passed.
    fn expire_unsent(&mut self, now: Instant) {
        let delivery_timeout = Duration::from_millis(self.config.delivery_timeout_ms);
        let mut expired = Vec::new();
        let compression = self.config.compression;
        for (partition, queue) in &mut self.partitions {
            if queue
                .open
                .as_ref()
                .is_some_and(|o| o.created + delivery_timeout <= now)
            {
                let batch = close(queue.open.take().expect("checked above"), compression);
                expired.push((partition.clone(), batch));
            }
            // Created at or before `now - delivery_timeout`; nothing is that old early on.
            let Some(cutoff) = now.checked_sub(delivery_timeout) else {
                continue;
            };
            for seq in queue.queued.created_by(cutoff) {
                let batch = queue.queued.remove(seq).expect("listed above");
                expired.push((partition.clone(), batch));
            }
        }
        for (partition, batch) in expired {
            let reason = "delivery timeout expired";
            self.fail(partition, batch, reason);
        }
    }

    fn fail(&mut self, partition: TopicPartition, batch: Batch, reason: &str) {
        let error = if batch.attempts == 0 {
            format!("{reason} before the batch was sent")
        } else {
            format!(
                "{reason} after {} attempt(s); last: {}",
                batch.attempts, batch.last_error
            )
        };
        let failure = SendFailure {
            definite: !batch.maybe_appended,
            error,
        };
        let bump = batch.producer.is_some() && !self.is_stale(&partition, &batch);
        self.resolve(partition.clone(), batch, |_| Err(failure.clone()));
        if bump {
            self.bump_epoch(&partition);
        }
    }

    /// Restarts `partition`'s sequence numbers under a new epoch after a stamped batch failed
    /// for good (see the module docs), and fails the batches of the old epoch waiting for a
    /// retry. Those in flight fail when their attempt does, unless it succeeds.
    fn bump_epoch(&mut self, partition: &TopicPartition) {
        let seqs = self.sequences.entry(partition.clone()).or_default();
        let old = seqs.identity;
        seqs.next_sequence = 0;
        seqs.stamped_batches = 0;
        seqs.identity = match old {
            Some(i) if i.producer_epoch < u16::MAX => Some(ProducerIdentity {
                producer_epoch: i.producer_epoch + 1,
                ..i
            }),
            _ => None,
        };
        if seqs.identity.is_none() {
            // The epoch ran out: this partition needs an id it has never used.
            if old.map(|i| i.producer_id) == self.producer_id {
                self.producer_id = None;
            }
        }
        tracing::debug!(%partition, ?old, new = ?seqs.identity, "producer epoch bumped");
        let Some(queue) = self.partitions.get_mut(partition) else {
            return;
        };
        let stale: Vec<u64> = queue
            .queued
            .iter()
            .filter(|b| b.producer.is_some())
            .map(|b| b.seq)
            .collect();
        let stale: Vec<Batch> = stale
            .into_iter()
            .map(|seq| queue.queued.remove(seq).expect("listed above"))
            .collect();
        for batch in stale {
            let reason = "abandoned after an earlier batch of the partition failed (epoch bumped)";
            self.fail(partition.clone(), batch, reason);
        }
    }

    /// Reports every record of `batch` and releases its buffer space.
    fn resolve(
        &mut self,
        partition: TopicPartition,
        batch: Batch,
        result: impl Fn(usize) -> Result<u64, SendFailure>,
    ) {
        self.buffered_bytes -= batch.buffer_bytes;
        if let Some(queue) = self.partitions.get_mut(&partition) {
            queue.stamped.remove(&batch.seq);
        }
        for (i, id) in batch.ids.into_iter().enumerate() {
            self.events.push_back(ProducerEvent::Delivered {
                id,
                partition: partition.clone(),
                result: result(i),
            });
        }
        if self
            .partitions
            .get(&partition)
            .is_some_and(PartitionQueue::is_empty)
        {
            self.partitions.remove(&partition);
        }
    }

    /// Asks for metadata when a partition has records to send and no known leader.
    fn want_unknown_leaders(&mut self) {
        let unknown = !self.unpartitioned.is_empty()
            || self
                .partitions
                .iter()
                .any(|(p, q)| q.has_unsent() && self.metadata.leader(p).is_none());
        if unknown {
            self.metadata.request_refresh();
        }
    }

    // --- producer ids ----------------------------------------------------------------------

    fn wants_producer_id(&self) -> bool {
        self.config.enable_idempotence
            && self.producer_id.is_none()
            && self.producer_id_request.in_flight.is_none()
            && self.metadata.brokers().next().is_some()
    }

    fn poll_producer_id_request(&mut self, now: Instant) -> Option<Transmit> {
        if !self.wants_producer_id() || now < self.producer_id_request.next_at {
            return None;
        }
        let brokers: Vec<NodeId> = self.metadata.brokers().map(|(id, _)| id).collect();
        let broker = *brokers.get(self.producer_id_request.cursor % brokers.len().max(1))?;
        let correlation_id = self.ids.next_id();
        let deadline = now + Duration::from_millis(self.config.request_timeout_ms);
        self.producer_id_request.in_flight = Some((correlation_id, broker, deadline));
        Some(Transmit {
            to: broker,
            lane: 0,
            msg: Message::Request {
                correlation_id,
                request: Request::InitProducerId,
            },
        })
    }

    fn producer_id_granted(&mut self, identity: ProducerIdentity) {
        self.producer_id_request.failures_consecutive = 0;
        self.producer_id = Some(identity.producer_id);
    }

    /// The `InitProducerId` in flight failed: ask the next broker after a backoff.
    fn producer_id_failed(&mut self) {
        let r = &mut self.producer_id_request;
        r.cursor = r.cursor.wrapping_add(1);
        r.failures_consecutive = r.failures_consecutive.saturating_add(1);
        let backoff = exponential_backoff(
            &mut self.rng,
            self.config.retry_backoff_ms.min_ms,
            self.config.retry_backoff_ms.max_ms,
            r.failures_consecutive,
        );
        r.next_at = self.now + backoff;
    }
}

fn close(open: OpenBatch, compression: Compression) -> Batch {
    Batch {
        seq: open.seq,
        bytes: batch::build_with(&open.records, compression),
        buffer_bytes: open.encoded_bytes - batch::HEADER_BYTES,
        ids: open.ids,
        created: open.created,
        attempts: 0,
        maybe_appended: false,
        retry_at: Instant::ZERO,
        last_error: String::new(),
        producer: None,
    }
}

#[cfg(test)]
mod batch_queue_tests {
    use proptest::prelude::*;

    use super::*;

    fn batch(seq: u64, created_ms: u64, retry_ms: u64) -> Batch {
        Batch {
            seq,
            ids: Vec::new(),
            bytes: Bytes::new(),
            buffer_bytes: 0,
            created: Instant::from_nanos(created_ms * 1_000_000),
            attempts: 0,
            maybe_appended: false,
            retry_at: Instant::from_nanos(retry_ms * 1_000_000),
            last_error: String::new(),
            producer: None,
        }
    }

    proptest! {
        /// The ordered indexes answer what a scan of every queued batch would.
        #[test]
        fn indexes_agree_with_a_scan(
            ops in proptest::collection::vec((any::<bool>(), 0u64..40, 0u64..100, 0u64..100), 1..200),
            cutoff_ms in 0u64..100,
        ) {
            let mut q = BatchQueue::default();
            for (insert, seq, created, retry) in ops {
                if insert {
                    q.insert(batch(seq, created, retry));
                } else {
                    q.remove(seq);
                }
                let scan_retry = q.iter().map(|b| b.retry_at).min();
                let scan_created = q.iter().map(|b| b.created).min();
                prop_assert_eq!(q.earliest_retry(), scan_retry);
                prop_assert_eq!(q.oldest_created(), scan_created);
                prop_assert_eq!(q.by_retry.len(), q.by_seq.len());
                prop_assert_eq!(q.by_created.len(), q.by_seq.len());
            }
            let cutoff = Instant::from_nanos(cutoff_ms * 1_000_000);
            let scan: Vec<u64> = q.iter().filter(|b| b.created <= cutoff).map(|b| b.seq).collect();
            prop_assert_eq!(q.created_by(cutoff), scan);
        }
    }
}
