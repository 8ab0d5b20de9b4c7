//! Push subscriptions (claim C1): the state a broker keeps so that it can send committed
//! batches to consumers without being asked.
//!
//! The claim says push "makes the broker keep consumer state"; this is that state, bounded by
//! [`BrokerLimits::push_subscriptions_max`](super::BrokerLimits) and measured by
//! [`Subscriptions::state_bytes`]. Per subscription it holds the next offset to push, the credit
//! window and the credits left (Pulsar's receiver-queue permits, NATS JetStream's max ack
//! pending).
//!
//! The table knows nothing of logs: [`Subscriptions::pushes`] takes a reader of committed
//! batches, so the broker decides what is committed and this module decides what may be sent.
//! A push carries whole batches. With a credit window, a batch goes out while any credit is
//! left, so the records unconfirmed exceed the window by less than one batch; credits returned
//! beyond the window are capped at the window, so a client cannot raise it by lying.

use std::collections::BTreeMap;
use std::mem::size_of;

use bytes::Bytes;

use crate::ids::TopicPartition;
use crate::log::batch;
use crate::protocol::{ErrorCode, FetchOk, Push, SubscriptionKey};

use super::ConnId;

/// Subscriptions one broker holds over all partitions and connections, by default.
pub const PUSH_SUBSCRIPTIONS_MAX_DEFAULT: usize = 1_000;

/// One consumer's subscription of one partition on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subscription {
    /// The client's id for it, echoed in every push.
    id: u64,
    /// The next offset to push.
    position: u64,
    /// The credit window in records; `None` is no flow control.
    window: Option<u32>,
    /// Records that may still be pushed before the client returns credits.
    credits: u32,
    /// Ceiling on one push's batch bytes.
    max_bytes: u32,
}

impl Subscription {
    fn may_push(&self) -> bool {
        self.window.is_none() || self.credits > 0
    }
}

/// Every push subscription of one broker, keyed by partition then connection so that a
/// partition's subscriptions are one range.
#[derive(Debug)]
pub struct Subscriptions {
    by_partition: BTreeMap<(TopicPartition, ConnId), Subscription>,
    limit: usize,
    /// Subscriptions refused because the table was full, since the broker started.
    refused: u64,
}

/// What a reader of committed batches answers: the high watermark and the whole batches from
/// an offset, at most `max_bytes` of them (at least one when any is committed).
pub type ReadCommitted<'a> = dyn FnMut(u64, u32) -> FetchOk + 'a;

impl Subscriptions {
    pub fn new(limit: usize) -> Subscriptions {
        Subscriptions {
            by_partition: BTreeMap::new(),
            limit,
            refused: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.by_partition.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_partition.is_empty()
    }

    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The memory this state takes: every entry's key and value, with the topic name's bytes.
    pub fn state_bytes(&self) -> u64 {
        let entry = size_of::<(TopicPartition, ConnId)>() + size_of::<Subscription>();
        self.by_partition
            .keys()
            .map(|(tp, _)| (entry + tp.topic.len()) as u64)
            .sum()
    }

    /// Registers (or replaces) `conn`'s subscription of `key.partition` from `offset`. A new
    /// one beyond the limit is refused with [`ErrorCode::SubscriptionsFull`].
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        key: &SubscriptionKey,
        offset: u64,
        credits: u32,
        max_bytes: u32,
    ) -> Result<(), ErrorCode> {
        if max_bytes == 0 {
            return Err(ErrorCode::InvalidSubscription);
        }
        let slot = (key.partition.clone(), conn);
        if !self.by_partition.contains_key(&slot) && self.by_partition.len() >= self.limit {
            self.refused = self.refused.saturating_add(1);
            let limit = u32::try_from(self.limit).unwrap_or(u32::MAX);
            return Err(ErrorCode::SubscriptionsFull { limit });
        }
        let window = (credits > 0).then_some(credits);
        let subscription = Subscription {
            id: key.id,
            position: offset,
            window,
            credits,
            max_bytes,
        };
        self.by_partition.insert(slot, subscription);
        Ok(())
    }

    /// The client took `records` of the subscription's records. Ignored for a subscription it
    /// has replaced or ended; credits never exceed the window.
    pub fn credit(&mut self, conn: ConnId, key: &SubscriptionKey, records: u32) {
        let Some(s) = self.current(conn, key) else {
            return;
        };
        if let Some(window) = s.window {
            s.credits = s.credits.saturating_add(records).min(window);
        }
    }

    pub fn unsubscribe(&mut self, conn: ConnId, key: &SubscriptionKey) {
        if self.current(conn, key).is_some() {
            self.by_partition.remove(&(key.partition.clone(), conn));
        }
    }

    /// The connection closed: its subscriptions go with it.
    pub fn drop_conn(&mut self, conn: ConnId) {
        self.by_partition.retain(|(_, c), _| *c != conn);
    }

    /// Ends every subscription of `partition` (this broker stopped leading it): each
    /// subscriber is told with `error`, and resubscribes from its own position elsewhere.
    pub fn end_partition(
        &mut self,
        partition: &TopicPartition,
        error: ErrorCode,
    ) -> Vec<(ConnId, Push)> {
        let conns: Vec<ConnId> = self.range(partition).map(|((_, c), _)| *c).collect();
        let mut ended = Vec::with_capacity(conns.len());
        for conn in conns {
            let Some(s) = self.by_partition.remove(&(partition.clone(), conn)) else {
                continue;
            };
            let subscription = SubscriptionKey {
                partition: partition.clone(),
                id: s.id,
            };
            let push = Push {
                subscription,
                result: Err(error.clone()),
            };
            ended.push((conn, push));
        }
        ended
    }

    /// Every push due on `partition`: for each subscription with credit left, the committed
    /// batches from its position, as many pushes of at most its `max_bytes` as the credits
    /// and `read` allow. Positions and credits move past what is returned.
    pub fn pushes(
        &mut self,
        partition: &TopicPartition,
        read: &mut ReadCommitted<'_>,
    ) -> Vec<(ConnId, Push)> {
        let mut out = Vec::new();
        let start = (partition.clone(), ConnId::MIN);
        let end = (partition.clone(), ConnId::MAX);
        for ((_, conn), s) in self.by_partition.range_mut(start..=end) {
            while s.may_push() {
                let Some(ok) = next_push(s, read) else {
                    break;
                };
                let subscription = SubscriptionKey {
                    partition: partition.clone(),
                    id: s.id,
                };
                let push = Push {
                    subscription,
                    result: Ok(ok),
                };
                out.push((*conn, push));
            }
        }
        out
    }

    fn current(&mut self, conn: ConnId, key: &SubscriptionKey) -> Option<&mut Subscription> {
        let slot = (key.partition.clone(), conn);
        self.by_partition.get_mut(&slot).filter(|s| s.id == key.id)
    }

    fn range(
        &self,
        partition: &TopicPartition,
    ) -> impl Iterator<Item = (&(TopicPartition, ConnId), &Subscription)> {
        let start = (partition.clone(), ConnId::MIN);
        let end = (partition.clone(), ConnId::MAX);
        self.by_partition.range(start..=end)
    }
}

/// The next push of `s`, if anything committed lies at its position: whole batches until the
/// credits run out, and the position and credits moved past them.
fn next_push(s: &mut Subscription, read: &mut ReadCommitted<'_>) -> Option<FetchOk> {
    let ok = read(s.position, s.max_bytes);
    let mut batches: Vec<Bytes> = Vec::new();
    for bytes in ok.batches {
        if !s.may_push() {
            break;
        }
        // A batch the log returned is one it checked; one that does not parse is not sent, and
        // the subscription waits there (the consumer's own checks would refuse it anyway).
        let Ok(header) = batch::parse(&bytes) else {
            break;
        };
        if header.end_offset() <= s.position {
            continue;
        }
        if !header.is_control() {
            let records = header.record_count;
            s.credits = s.credits.saturating_sub(records);
        }
        s.position = header.end_offset();
        batches.push(bytes);
    }
    if batches.is_empty() {
        return None;
    }
    Some(FetchOk {
        high_watermark: ok.high_watermark,
        batches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::NewRecord;

    /// A committed log of `batches` batches of `per_batch` records each, from offset 0.
    fn log(batches: u64, per_batch: u64) -> Vec<Bytes> {
        (0..batches)
            .map(|b| {
                let records: Vec<NewRecord> = (0..per_batch)
                    .map(|i| NewRecord {
                        timestamp_ns: 1,
                        key: Bytes::from(format!("m{}", b * per_batch + i)),
                        value: Bytes::from_static(b"v"),
                    })
                    .collect();
                batch::stamp(&batch::build(&records), b * per_batch, 1)
            })
            .collect()
    }

    /// A reader over `log` with the high watermark at its end, as the leader's would be.
    fn reader(log: &[Bytes]) -> impl FnMut(u64, u32) -> FetchOk + '_ {
        move |offset, max_bytes| {
            let mut out = Vec::new();
            let mut bytes = 0;
            for b in log {
                let h = batch::parse(b).expect("built above");
                if h.end_offset() <= offset {
                    continue;
                }
                if !out.is_empty() && bytes + b.len() > max_bytes as usize {
                    break;
                }
                bytes += b.len();
                out.push(b.clone());
            }
            let hw = log
                .last()
                .map(|b| batch::parse(b).expect("built above").end_offset())
                .unwrap_or(0);
            FetchOk {
                high_watermark: hw,
                batches: out,
            }
        }
    }

    fn key(id: u64) -> SubscriptionKey {
        SubscriptionKey {
            partition: TopicPartition::new("t", 0),
            id,
        }
    }

    fn pushed_records(pushes: &[(ConnId, Push)]) -> u64 {
        pushes
            .iter()
            .flat_map(|(_, p)| p.result.as_ref().expect("a push").batches.iter())
            .map(|b| batch::parse(b).expect("a batch").record_count as u64)
            .sum()
    }

    /// Claim C1, flow control: with a window of 10 records the broker pushes 10 (whole
    /// batches of 5), then nothing until the consumer returns credits, then 5 more per 5.
    #[test]
    fn credits_bound_what_is_pushed_until_the_consumer_returns_them() {
        let log = log(10, 5);
        let mut subs = Subscriptions::new(4);
        subs.subscribe(1, &key(1), 0, 10, 1 << 20).expect("room");
        let tp = key(1).partition;
        let first = subs.pushes(&tp, &mut reader(&log));
        assert_eq!(pushed_records(&first), 10);
        assert!(
            subs.pushes(&tp, &mut reader(&log)).is_empty(),
            "window used up"
        );
        subs.credit(1, &key(1), 5);
        let more = subs.pushes(&tp, &mut reader(&log));
        assert_eq!(pushed_records(&more), 5);
        let offsets: Vec<u64> = more
            .iter()
            .flat_map(|(_, p)| p.result.as_ref().expect("a push").batches.iter())
            .map(|b| batch::parse(b).expect("a batch").base_offset)
            .collect();
        assert_eq!(offsets, [10], "the next batch, nothing skipped");
    }

    /// Claim C1, no flow control: credits 0 pushes everything committed at once, in pushes of
    /// at most `max_bytes`.
    #[test]
    fn without_credits_everything_committed_is_pushed() {
        let log = log(20, 5);
        let mut subs = Subscriptions::new(4);
        let one_batch = log[0].len() as u32;
        subs.subscribe(1, &key(1), 0, 0, one_batch).expect("room");
        let pushes = subs.pushes(&key(1).partition, &mut reader(&log));
        assert_eq!(pushed_records(&pushes), 100);
        assert_eq!(pushes.len(), 20, "one batch per push at this max_bytes");
    }

    /// Credits returned beyond the window are capped, and credits or an unsubscribe for a
    /// subscription the client replaced change nothing.
    #[test]
    fn credits_cannot_raise_the_window_and_stale_ids_are_ignored() {
        let log = log(10, 5);
        let mut subs = Subscriptions::new(4);
        let tp = key(1).partition;
        subs.subscribe(1, &key(1), 0, 5, 1 << 20).expect("room");
        assert_eq!(pushed_records(&subs.pushes(&tp, &mut reader(&log))), 5);
        subs.credit(1, &key(1), u32::MAX);
        assert_eq!(pushed_records(&subs.pushes(&tp, &mut reader(&log))), 5);
        // Replaced by a resubscription from offset 10: the old id's messages are ignored.
        subs.subscribe(1, &key(2), 10, 5, 1 << 20)
            .expect("replaces");
        assert_eq!(subs.len(), 1);
        subs.unsubscribe(1, &key(1));
        assert_eq!(
            subs.len(),
            1,
            "a stale unsubscribe keeps the new subscription"
        );
        let again = subs.pushes(&tp, &mut reader(&log));
        let first = again[0].1.result.as_ref().expect("a push").batches[0].clone();
        assert_eq!(batch::parse(&first).expect("a batch").base_offset, 10);
        subs.unsubscribe(1, &key(2));
        assert!(subs.is_empty());
    }

    /// The broker's subscription state is bounded: one beyond the limit is refused with its
    /// own error code, counted, and the state's memory is measured.
    #[test]
    fn a_subscription_beyond_the_limit_is_refused_clearly() {
        let mut subs = Subscriptions::new(2);
        subs.subscribe(1, &key(1), 0, 0, 100).expect("room");
        subs.subscribe(2, &key(1), 0, 0, 100).expect("room");
        let refused = subs.subscribe(3, &key(1), 0, 0, 100);
        assert_eq!(refused, Err(ErrorCode::SubscriptionsFull { limit: 2 }));
        assert_eq!(subs.refused(), 1);
        assert!(subs.state_bytes() > 0);
        assert_eq!(
            subs.subscribe(1, &key(1), 0, 0, 0),
            Err(ErrorCode::InvalidSubscription)
        );
        subs.drop_conn(1);
        subs.drop_conn(2);
        assert_eq!((subs.len(), subs.state_bytes()), (0, 0));
    }

    /// A leader stepping down ends every subscription of the partition with an error, so each
    /// consumer resubscribes elsewhere from its own position.
    #[test]
    fn stepping_down_ends_the_partition_subscriptions() {
        let mut subs = Subscriptions::new(4);
        subs.subscribe(1, &key(7), 0, 0, 100).expect("room");
        let ended = subs.end_partition(&key(7).partition, ErrorCode::NotLeader { leader: None });
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].1.subscription, key(7));
        assert!(ended[0].1.result.is_err());
        assert!(subs.is_empty());
    }
}
