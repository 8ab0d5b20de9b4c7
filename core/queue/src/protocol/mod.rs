//! The wire protocol: every message between brokers and clients.
//!
//! Messages are serde values encoded with postcard, one per length-delimited frame (see
//! [`frame`]). A connection starts with [`Message::Hello`] from the side that connected, which
//! names the protocol version and who is speaking; the broker answers [`Message::HelloOk`] or a
//! [`Message::ProtocolError`] and closes. Record batches travel as the very bytes the log stores
//! (see [`crate::log::batch`]), so the broker checks their CRC once and never re-encodes records.

pub mod frame;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::BrokerAddr;
use crate::group::wire::{GroupRequest, GroupResponse};
use crate::group::GroupError;
use crate::ids::{NodeId, TopicPartition};
use crate::replication::RaftEnvelope;
use crate::share::{AckKind, Acquired, ShareError, ShareMode, ShareSettings};

/// Bumped on any incompatible change to [`Message`]. 3: consumer groups ([`Request::Group`],
/// [`Request::MemberOffsetCommit`], [`ErrorCode::Group`]). 4: push delivery
/// ([`Request::Subscribe`], [`Message::Push`], [`Message::PushCredit`], [`Message::Unsubscribe`]).
/// 5: share groups ([`Request::ShareFetch`], [`Request::ShareAcknowledge`], [`ErrorCode::Share`]).
/// 6: dead-letter deliveries in a share fetch's settings
/// ([`crate::share::ShareSettings::dead_letter_deliveries`]). 7: Key_Shared share groups (the
/// [`ShareMode`] of a [`Request::ShareFetch`], [`crate::share::ShareError::ModeMismatch`]).
pub const PROTOCOL_VERSION: u16 = 7;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Hello {
        version: u16,
        peer: Peer,
    },
    HelloOk {
        version: u16,
        broker: NodeId,
    },
    Request {
        correlation_id: u64,
        request: Request,
    },
    Response {
        correlation_id: u64,
        response: Response,
    },
    /// Replication traffic between brokers; one-way, answered by another `Raft` message.
    Raft(RaftEnvelope),
    /// Between brokers: who leads the partitions the sender hosts, so that every broker can
    /// answer metadata requests for partitions it does not replicate.
    LeaderGossip {
        leaders: Vec<LeaderInfo>,
    },
    /// The last frame on a connection the receiver is about to close because of bad input.
    ProtocolError {
        message: String,
    },
    /// Link liveness: a broker answers every `Ping` with a `Pong` on the same connection, so a
    /// connection that stalls (a peer gone, segments lost for good) is noticed and replaced.
    Ping,
    Pong,
    /// Broker to client, unasked: committed batches of a partition the client subscribed to
    /// with [`Request::Subscribe`], or the end of that subscription (`Err`: the broker no longer
    /// leads the partition, say). Variants are appended last so that the encoding of the
    /// earlier ones is unchanged.
    Push(Push),
    /// Client to broker, one-way: the application took `records` of a subscription's records,
    /// so the broker may push that many more (the credit window of [`Request::Subscribe`]).
    PushCredit {
        subscription: SubscriptionKey,
        records: u32,
    },
    /// Client to broker, one-way: end a subscription (the consumer's receive buffer overflowed,
    /// or it no longer wants the partition). Unknown subscriptions are ignored.
    Unsubscribe {
        subscription: SubscriptionKey,
    },
}

/// Names one subscription on one connection: the partition and the client's own id for this
/// subscription of it, so that pushes of a subscription the client has replaced are told
/// apart from the new one's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubscriptionKey {
    pub partition: TopicPartition,
    pub id: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Push {
    pub subscription: SubscriptionKey,
    pub result: Result<FetchOk, ErrorCode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Peer {
    Broker(NodeId),
    Client(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Acks {
    /// No response at all.
    None,
    /// Respond once the leader has appended the batch to its own log.
    Leader,
    /// Respond once the batch is committed: durable on a quorum under the fsync policy.
    All,
}

impl Acks {
    /// Every setting, weakest first.
    pub const ALL: [Acks; 3] = [Acks::None, Acks::Leader, Acks::All];

    /// Kafka's name of the setting: `0`, `1` or `all` (what scenarios and the CLI write).
    pub const fn name(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }

    /// The setting called `name`; Kafka's `-1` is accepted for `all`.
    pub fn from_name(name: &str) -> Option<Acks> {
        match name {
            "-1" => Some(Acks::All),
            _ => Acks::ALL.into_iter().find(|a| a.name() == name),
        }
    }
}

impl std::fmt::Display for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Acks {
    type Err = String;

    fn from_str(s: &str) -> Result<Acks, String> {
        Acks::from_name(s).ok_or_else(|| format!(r#"expected one of "0", "1", "all", got "{s}""#))
    }
}

/// Reads an [`Acks`] by its [`Acks::name`] (a string, or the integers 0, 1 and -1), as
/// configurations write it; the derived `Deserialize` is the wire's.
pub fn acks_by_name<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Acks, D::Error> {
    struct ByName;
    impl serde::de::Visitor<'_> for ByName {
        type Value = Acks;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(r#"one of "0", "1", "all""#)
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Acks, E> {
            s.parse().map_err(E::custom)
        }

        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Acks, E> {
            Acks::from_name(&n.to_string())
                .ok_or_else(|| E::custom(format!(r#"expected one of "0", "1", "all", got {n}"#)))
        }

        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Acks, E> {
            Acks::from_name(&n.to_string())
                .ok_or_else(|| E::custom(format!(r#"expected one of "0", "1", "all", got {n}"#)))
        }
    }
    deserializer.deserialize_any(ByName)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Which broker leads which partition.
    Metadata,
    Produce {
        partition: TopicPartition,
        acks: Acks,
        /// How long the leader may wait for the commit before answering `RequestTimedOut`.
        timeout_ms: u32,
        batch: Bytes,
    },
    /// Long poll: the leader answers once `min_bytes` of committed batches at or after `offset`
    /// exist, or after `max_wait_ms`.
    Fetch {
        partition: TopicPartition,
        offset: u64,
        max_wait_ms: u32,
        min_bytes: u32,
        max_bytes: u32,
    },
    /// The first offset and the high watermark of a partition.
    ListOffsets { partition: TopicPartition },
    OffsetCommit {
        group: String,
        partition: TopicPartition,
        /// The next offset the group will read.
        offset: u64,
    },
    OffsetFetch {
        group: String,
        partition: TopicPartition,
    },
    /// A producer id for an idempotent producer, unique in the cluster for good (see
    /// [`crate::broker::producer_ids`]). Any broker answers it.
    InitProducerId,
    /// A group member's request to the group's coordinator, the leader of the group's offsets
    /// partition (see [`crate::group`]).
    Group(GroupRequest),
    /// An offset commit by a member of a group: the coordinator accepts it only from the
    /// member's current generation (or KIP-848 member epoch) and for a partition the member
    /// holds, so a zombie cannot overwrite the next owner's offset. Answered as
    /// [`Response::OffsetCommit`]. [`Request::OffsetCommit`] stays the commit of a consumer
    /// outside any group (manual assignment); a separate variant keeps its encoding unchanged.
    MemberOffsetCommit {
        group: String,
        partition: TopicPartition,
        offset: u64,
        fence: CommitFence,
    },
    /// Push delivery (claim C1): from `offset`, the leader sends every committed batch of
    /// `partition` as a [`Message::Push`] as soon as its high watermark covers it, without a
    /// request each time. With `credits > 0` it keeps at most that many records unconfirmed by
    /// a [`Message::PushCredit`] (a whole batch goes out while any credit is left, so the
    /// window overshoots by less than one batch); `credits == 0` is no flow control at all.
    /// Answered [`Response::Subscribe`], after which the pushes follow on the same connection.
    /// A new subscription of the same partition on the same connection replaces the old one.
    Subscribe {
        subscription: SubscriptionKey,
        offset: u64,
        credits: u32,
        max_bytes: u32,
    },
    /// A share-group member's fetch (KIP-932) from the partition's leader, the
    /// share-partition leader: it acquires up to `max_records` records no other member holds
    /// (redeliveries first) and answers once the acquisition is committed to the partition's
    /// log, or holds the request up to `max_wait_ms` while nothing can be acquired. Answered
    /// [`Response::ShareFetch`]. `mode` must be the one the group's share-partition serves.
    ShareFetch {
        group: String,
        member: String,
        partition: TopicPartition,
        max_records: u32,
        max_wait_ms: u32,
        max_bytes: u32,
        settings: ShareSettings,
        mode: ShareMode,
    },
    /// A share-group member's acknowledgements of records it holds, answered
    /// [`Response::ShareAcknowledge`] once they are committed; the ones it does not hold are
    /// refused record by record and change nothing.
    ShareAcknowledge {
        group: String,
        member: String,
        partition: TopicPartition,
        acks: Vec<(u64, AckKind)>,
    },
}

/// Who commits, for the coordinator's fence: the member id and the generation (classic) or
/// member epoch (KIP-848) the member had when it processed what it commits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CommitFence {
    pub member_id: String,
    pub generation: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Metadata {
        brokers: Vec<BrokerAddr>,
        partitions: Vec<PartitionMetadata>,
    },
    Produce(Result<ProduceOk, ErrorCode>),
    Fetch(Result<FetchOk, ErrorCode>),
    ListOffsets(Result<ListOffsetsOk, ErrorCode>),
    OffsetCommit(Result<(), ErrorCode>),
    OffsetFetch(Result<Option<u64>, ErrorCode>),
    InitProducerId(Result<ProducerIdentity, ErrorCode>),
    /// The coordinator's answer; `Err` when the request never reached a coordinator (this
    /// broker does not lead the group's offsets partition, is not ready, or is busy) or its
    /// effect could not be made durable ([`GroupError::NotCoordinator`]).
    Group(Result<GroupResponse, ErrorCode>),
    /// The subscription is registered; pushes follow.
    Subscribe(Result<(), ErrorCode>),
    ShareFetch(Result<ShareFetchOk, ErrorCode>),
    ShareAcknowledge(Result<ShareAcknowledgeOk, ErrorCode>),
}

/// Records a share fetch acquired: the stored batches that hold them (which hold other records
/// too: the member takes only `acquired`) and each acquired offset with its delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareFetchOk {
    pub batches: Vec<Bytes>,
    pub acquired: Vec<Acquired>,
}

impl ShareFetchOk {
    /// A fetch that acquired nothing.
    pub fn empty() -> ShareFetchOk {
        ShareFetchOk {
            batches: Vec::new(),
            acquired: Vec::new(),
        }
    }
}

/// The acknowledgements of a [`Request::ShareAcknowledge`] not in `refused` are committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareAcknowledgeOk {
    pub refused: Vec<(u64, ShareError)>,
}

/// Who wrote an idempotent batch: the producer id and its epoch, as a batch header carries them
/// (see [`crate::log::batch`]). A fresh id starts at epoch 0; the producer raises the epoch
/// itself when it has to restart a partition's sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProducerIdentity {
    pub producer_id: u64,
    pub producer_epoch: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMetadata {
    pub partition: TopicPartition,
    pub leader: Option<NodeId>,
    pub leader_epoch: u64,
    pub replicas: Vec<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    pub partition: TopicPartition,
    pub leader_epoch: u64,
    pub leader: Option<NodeId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceOk {
    pub base_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchOk {
    pub high_watermark: u64,
    /// Whole committed batches, the first one containing the requested offset; the client skips
    /// records before it and control batches.
    pub batches: Vec<Bytes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOffsetsOk {
    pub log_start: u64,
    pub high_watermark: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ErrorCode {
    #[error("this broker does not lead the partition (leader hint: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("unknown topic or partition")]
    UnknownPartition,
    /// The batch was appended but not committed in time: it may or may not commit later.
    #[error("request timed out waiting for replication")]
    RequestTimedOut,
    /// The batch was appended, then this broker lost leadership before it committed.
    #[error("leadership changed before the batch committed")]
    LeaderChanged,
    #[error("record batch failed its checksum or is malformed")]
    CorruptBatch,
    #[error("record batch larger than the broker accepts")]
    BatchTooLarge,
    #[error("offset out of range")]
    OffsetOutOfRange,
    #[error("the broker's storage failed")]
    StorageError,
    #[error("too many requests waiting on this broker")]
    Busy,
    /// The broker leads the partition but has not yet committed an entry of its own term, so
    /// its high watermark may be stale; ask again shortly.
    #[error("the new leader is not ready yet")]
    LeaderNotReady,
    /// An idempotent batch whose sequence does not follow the producer's last one in this
    /// partition's log: an earlier batch is missing (lost, or still being retried). Not
    /// appended.
    #[error("out-of-order sequence number for this producer")]
    OutOfOrderSequence,
    /// An idempotent batch from an epoch older than one already in this partition's log.
    /// Not appended.
    #[error("producer epoch is older than the partition has seen (fenced)")]
    ProducerFenced,
    /// An idempotent batch whose sequence lies below the batches the leader remembers: it was
    /// appended before, at an offset no longer known. Not appended again.
    #[error("duplicate sequence number outside the remembered batches")]
    DuplicateSequence,
    /// The group coordinator refused the request: a stale generation, a fenced or unknown
    /// member, a full group, not the coordinator... each with its own [`GroupError`].
    #[error("group: {0}")]
    Group(GroupError),
    /// The broker holds as many push subscriptions as its limit allows: retry later or
    /// elsewhere, or fetch instead.
    #[error("too many push subscriptions on this broker (limit {limit})")]
    SubscriptionsFull { limit: u32 },
    /// A subscription's `max_bytes` is 0: nothing could ever be pushed.
    #[error("a subscription must allow at least one byte per push")]
    InvalidSubscription,
    /// A share request the share-partition leader refused as a whole.
    #[error("share group: {0}")]
    Share(ShareError),
}

impl ErrorCode {
    /// Worth trying again, perhaps at another broker.
    pub fn is_retriable(&self) -> bool {
        match self {
            ErrorCode::CorruptBatch
            | ErrorCode::BatchTooLarge
            | ErrorCode::UnknownPartition
            | ErrorCode::ProducerFenced
            | ErrorCode::DuplicateSequence
            | ErrorCode::InvalidSubscription => false,
            ErrorCode::Share(e) => e.is_retriable(),
            ErrorCode::Group(e) => e.is_retriable(),
            _ => true,
        }
    }

    /// For a produce: the broker says the batch was certainly not appended by this attempt.
    /// Other errors leave the outcome unknown.
    pub fn produce_definitely_failed(&self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader { .. }
                | ErrorCode::UnknownPartition
                | ErrorCode::CorruptBatch
                | ErrorCode::BatchTooLarge
                | ErrorCode::Busy
                | ErrorCode::LeaderNotReady
                | ErrorCode::OutOfOrderSequence
                | ErrorCode::ProducerFenced
        )
    }
}
