//! The client state machines: a [`Producer`] and a [`Consumer`], each with a [`Metadata`] cache
//! that finds partition leaders.
//!
//! Both are sans-IO in the quinn-proto manner. The driver feeds inputs through `handle_*` calls
//! (and the application's `send`/`assign`/`commit` calls), then drains `poll_transmit` (messages
//! for brokers, addressed by [`NodeId`]) and `poll_event` (results for the application), then
//! sleeps until `poll_timeout` and calls `handle_timeout`. The driver owns the connections: it
//! connects lazily to whichever broker a [`Transmit`] names, does the `Hello` handshake itself,
//! sends each broker's messages in order, and reports a lost (or never opened) connection with
//! `handle_disconnected`. Clients never see `Hello`/`HelloOk`.
//!
//! Each client numbers its requests with its own increasing correlation id. A response whose id
//! the client no longer waits for (it timed out, or its broker was reported disconnected) is
//! ignored, so a late answer can never complete a request twice.

pub mod consumer;
pub mod metadata;
pub mod partitioner;
pub mod producer;
pub mod share;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use crate::ids::NodeId;
use crate::protocol::{ErrorCode, Message};
use crate::rng::Rng;

pub use consumer::{
    coordinator_partition, Consumer, ConsumerConfig, ConsumerEvent, Delivery, DeliveryStats,
    RECEIVE_BUFFER_BYTES_MAX_DEFAULT,
};
pub use metadata::{Metadata, MetadataConfig};
pub use partitioner::Partitioner;
pub use producer::{Producer, ProducerConfig, ProducerEvent, SendError, SendFailure};
pub use share::{ShareConsumer, ShareConsumerConfig, ShareConsumerEvent, ShareRecord};

/// A message for the driver to send to broker `to` over connection number `lane` to it.
///
/// A client may keep several connections to one broker (lanes, numbered from 0); the driver
/// opens one per `(to, lane)` and keeps each one's messages in order. Only the producer uses
/// lanes other than 0 (see `ProducerConfig::connections_per_broker`).
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    pub to: NodeId,
    pub lane: u16,
    pub msg: Message,
}

/// Hands out one client's correlation ids: increasing, never reused.
#[derive(Debug, Clone)]
pub(crate) struct CorrelationIds {
    next: u64,
}

impl CorrelationIds {
    pub(crate) fn new() -> CorrelationIds {
        CorrelationIds { next: 1 }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }
}

/// Why one request got no useful answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RequestFailure {
    /// The broker answered with an error.
    Broker(ErrorCode),
    /// No answer within the request timeout.
    TimedOut,
    /// The connection to the broker was lost after the request was handed out.
    Disconnected,
    /// The broker answered with a response of the wrong kind.
    Unexpected,
}

impl RequestFailure {
    /// Worth another attempt. Only the broker's own verdict can rule that out.
    pub(crate) fn is_retriable(&self) -> bool {
        match self {
            RequestFailure::Broker(e) => e.is_retriable(),
            _ => true,
        }
    }
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestFailure::Broker(e) => write!(f, "{e}"),
            RequestFailure::TimedOut => write!(f, "no response before the request timeout"),
            RequestFailure::Disconnected => write!(f, "connection lost with the request in flight"),
            RequestFailure::Unexpected => write!(f, "response of the wrong kind"),
        }
    }
}

/// `base_ms` stretched by a random factor in `[1, 1.2]`, so that clients that failed together do
/// not retry in lockstep. Drawn from the client's seeded generator, so a seed replays it.
pub(crate) fn jittered(rng: &mut Rng, base_ms: u64) -> Duration {
    let base = Duration::from_millis(base_ms);
    rng.duration_between(base, base + base / 5)
}

/// The exponential backoff before retry number `retry` (1 for the first retry): `min_ms`
/// doubled per retry, jittered by ±20%, then capped at `max_ms`.
pub(crate) fn exponential_backoff(rng: &mut Rng, min_ms: u64, max_ms: u64, retry: u32) -> Duration {
    let exp_ms = min_ms
        .saturating_mul(1u64 << retry.saturating_sub(1).min(32))
        .min(max_ms.max(min_ms));
    let exp = Duration::from_millis(exp_ms);
    let d = rng.duration_between(exp - exp / 5, exp + exp / 5);
    d.min(Duration::from_millis(max_ms.max(min_ms)))
}
