//! The broker as share-partition leader (KIP-932): the share states of the partitions it leads,
//! the share fetch and acknowledge requests, and lock expiry. The state machine of one
//! share-partition is [`crate::share::SharePartition`]; this module feeds it the log and
//! persists its changes into the same log.
//!
//! A leader's share states are the replay of every share change in its log, rebuilt when it
//! first serves a share request in a term (as the idempotent producers' states are) and kept
//! current by applying each change it makes before proposing it. A change is answered only when
//! its control batch commits, so a member never acts on an acquisition or acknowledgement that a
//! failover could undo.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Broker, ConnId, Waiter, WaiterKind, FETCH_BYTES_MAX};
use crate::config::ShareFailover;
use crate::ids::TopicPartition;
use crate::log::batch;
use crate::protocol::{ErrorCode, Response, ShareAcknowledgeOk, ShareFetchOk};
use crate::replication::{ProposeError, Replica};
use crate::share::{self, record, AckKind, Change, ShareMode, SharePartition, ShareSettings};
use crate::time::Instant;

/// Share-partitions (a group on a partition) a broker keeps state for, over all the partitions
/// it leads: one more is refused with [`share::ShareError::SharePartitionsFull`].
pub const SHARE_PARTITIONS_MAX_DEFAULT: usize = 10_000;

/// Bytes of log read per step while rebuilding share states from a log.
const SHARE_REBUILD_READ_BYTES_MAX: usize = 1 << 20;

/// The share states of one led partition and the term they were built in.
#[derive(Debug, Default)]
pub(super) struct PartitionShares {
    term: u64,
    groups: BTreeMap<String, SharePartition>,
}

/// A share fetch as it waits for something to acquire.
#[derive(Debug, Clone)]
pub(super) struct ShareFetchWait {
    pub group: String,
    pub member: String,
    pub max_records: u32,
    pub max_bytes: u32,
    pub settings: ShareSettings,
    pub mode: ShareMode,
}

impl Broker {
    /// Share-partitions held over every led partition.
    pub fn share_partitions(&self) -> usize {
        self.shares.values().map(|s| s.groups.len()).sum()
    }

    /// In-flight share records held over every led partition (the broker memory the share
    /// model costs, claim C3).
    pub fn share_records_in_flight(&self) -> usize {
        let groups = self.shares.values().flat_map(|s| s.groups.values());
        groups.map(SharePartition::in_flight).sum()
    }

    /// The memory the share state of every led partition takes, in bytes: each group's
    /// name and [`SharePartition::state_bytes`] (claim C3's cost of message-level sharing).
    pub fn share_state_bytes(&self) -> u64 {
        let groups = self.shares.values().flat_map(|s| s.groups.iter());
        groups
            .map(|(name, sp)| name.len() as u64 + sp.state_bytes())
            .sum()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn share_fetch(
        &mut self,
        now: Instant,
        conn: ConnId,
        correlation_id: u64,
        tp: TopicPartition,
        wait: ShareFetchWait,
        max_wait_ms: u32,
    ) -> Option<Result<ShareFetchOk, ErrorCode>> {
        let checked = share::check_name(&wait.group)
            .and_then(|()| share::check_name(&wait.member))
            .and_then(|()| wait.settings.check());
        if let Err(e) = checked {
            return Some(Err(ErrorCode::Share(e)));
        }
        let deadline =
            now + Duration::from_millis(u64::from(max_wait_ms.min(self.limits.fetch_wait_max_ms)));
        self.share_fetch_attempt(now, conn, correlation_id, tp, wait, deadline)
    }

    /// Acquires what it can; holds the fetch while there is nothing and its deadline is ahead.
    fn share_fetch_attempt(
        &mut self,
        now: Instant,
        conn: ConnId,
        correlation_id: u64,
        tp: TopicPartition,
        wait: ShareFetchWait,
        deadline: Instant,
    ) -> Option<Result<ShareFetchOk, ErrorCode>> {
        let full = self.waiter_counts.fetch >= self.limits.fetch_waiters_max;
        match self.acquire(now, &tp, &wait) {
            Err(e) => Some(Err(e)),
            Ok(Some((ok, end_offset))) => {
                self.await_share_commit(
                    now,
                    conn,
                    correlation_id,
                    tp,
                    end_offset,
                    Response::ShareFetch(Ok(ok)),
                );
                None
            }
            Ok(None) if deadline <= now || full => Some(Ok(ShareFetchOk::empty())),
            Ok(None) => {
                let kind = WaiterKind::ShareFetch(Box::new(wait));
                self.add_waiter(
                    tp,
                    Waiter {
                        conn,
                        correlation_id,
                        deadline,
                        kind,
                    },
                );
                None
            }
        }
    }

    /// One acquisition for a member: `None` when nothing changed; else the answer and the end
    /// offset of the proposed change batch it waits for.
    fn acquire(
        &mut self,
        now: Instant,
        tp: &TopicPartition,
        wait: &ShareFetchWait,
    ) -> Result<Option<(ShareFetchOk, u64)>, ErrorCode> {
        let state = self.share_state(now, tp, &wait.group)?;
        state.check_mode(wait.mode).map_err(ErrorCode::Share)?;
        let end = state.end();
        let replica = &self.replicas[tp];
        let max_bytes = wait.max_bytes.min(FETCH_BYTES_MAX) as usize;
        let (member, max, settings) = (&wait.member, wait.max_records, &wait.settings);
        let acquisition = match wait.mode {
            ShareMode::Shared => {
                let new_offsets = committed_data_offsets(replica, end, max_bytes);
                let state = self.share_state(now, tp, &wait.group)?;
                state.acquire(now, member, max, settings, new_offsets)
            }
            ShareMode::KeyShared => {
                let new_records = committed_keyed_records(replica, end, max_bytes);
                let state = self.share_state(now, tp, &wait.group)?;
                state.acquire_keyed(now, member, max, settings, new_records)
            }
        };
        if acquisition.changes.is_empty() {
            return Ok(None);
        }
        let end_offset = self.propose_changes(now, tp, &wait.group, &acquisition.changes)?;
        let offsets: Vec<u64> = acquisition.acquired.iter().map(|a| a.offset).collect();
        let batches = batches_holding(&self.replicas[tp], &offsets);
        let ok = ShareFetchOk {
            batches,
            acquired: acquisition.acquired,
        };
        Ok(Some((ok, end_offset)))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn share_acknowledge(
        &mut self,
        now: Instant,
        conn: ConnId,
        correlation_id: u64,
        tp: TopicPartition,
        group: &str,
        member: &str,
        acks: &[(u64, AckKind)],
    ) -> Option<Result<ShareAcknowledgeOk, ErrorCode>> {
        let result = (|| {
            share::check_name(group)
                .and_then(|()| share::check_name(member))
                .map_err(ErrorCode::Share)?;
            let state = self.share_state(now, &tp, group)?;
            let (change, refused) = state.acknowledge(now, member, acks);
            let Some(change) = change else {
                return Ok((ShareAcknowledgeOk { refused }, None));
            };
            let end_offset =
                self.propose_changes(now, &tp, group, std::slice::from_ref(&change))?;
            Ok((ShareAcknowledgeOk { refused }, Some(end_offset)))
        })();
        match result {
            Err(e) => Some(Err(e)),
            Ok((ok, None)) => Some(Ok(ok)),
            Ok((ok, Some(end_offset))) => {
                let response = Response::ShareAcknowledge(Ok(ok));
                self.await_share_commit(now, conn, correlation_id, tp, end_offset, response);
                None
            }
        }
    }

    /// The share state of `group` on `tp`, which this broker must lead, ready, in its current
    /// term; rebuilt from the log when it was built in another term.
    fn share_state(
        &mut self,
        now: Instant,
        tp: &TopicPartition,
        group: &str,
    ) -> Result<&mut SharePartition, ErrorCode> {
        let replica = self.leader_replica(tp)?;
        if !replica.is_ready_leader() {
            return Err(ErrorCode::LeaderNotReady);
        }
        let term = replica.term();
        if self.shares.get(tp).is_none_or(|s| s.term != term) {
            let failover = self.config.share.failover;
            let rebuilt = rebuild(&self.replicas[tp], term, failover, now);
            self.shares.insert(tp.clone(), rebuilt);
        }
        let held = self.share_partitions();
        let shares = self.shares.get_mut(tp).ok_or(ErrorCode::UnknownPartition)?;
        if !shares.groups.contains_key(group) && held >= self.limits.share_partitions_max {
            return Err(ErrorCode::Share(share::ShareError::SharePartitionsFull));
        }
        Ok(shares.groups.entry(group.to_string()).or_default())
    }

    /// Appends `changes` (applied to the state already) as one control batch; returns its end
    /// offset. A failed proposal leaves the in-memory state ahead of the log, so it is dropped
    /// and rebuilt from the log at the next request.
    fn propose_changes(
        &mut self,
        now: Instant,
        tp: &TopicPartition,
        group: &str,
        changes: &[Change],
    ) -> Result<u64, ErrorCode> {
        let timestamp_ns = now.as_nanos();
        let bytes = record::encode(group, changes, timestamp_ns);
        let proposed = self.leader_replica(tp)?.propose(now, &bytes);
        match proposed {
            Ok((_, end)) => Ok(end),
            Err(e) => {
                self.shares.remove(tp);
                Err(match e {
                    ProposeError::NotLeader { leader } => ErrorCode::NotLeader { leader },
                    ProposeError::Log(_) => ErrorCode::StorageError,
                })
            }
        }
    }

    fn await_share_commit(
        &mut self,
        now: Instant,
        conn: ConnId,
        correlation_id: u64,
        tp: TopicPartition,
        end_offset: u64,
        response: Response,
    ) {
        let deadline = now + self.commit_wait();
        let kind = WaiterKind::ShareCommit {
            end_offset,
            response: Box::new(response),
        };
        self.add_waiter(
            tp,
            Waiter {
                conn,
                correlation_id,
                deadline,
                kind,
            },
        );
        // A single-voter partition commits at once.
        self.drain_replicas(now);
    }

    /// Expires locks on every led partition and gives held fetches another try where records
    /// came back.
    pub(super) fn share_timeouts(&mut self, now: Instant) {
        let mut freed = Vec::new();
        for (tp, shares) in self.shares.iter_mut() {
            let expired: usize = shares.groups.values_mut().map(|g| g.expire(now)).sum();
            if expired > 0 {
                freed.push(tp.clone());
            }
        }
        for tp in freed {
            self.retry_share_fetches(now, &tp);
        }
    }

    pub(super) fn share_deadline(&self) -> Option<Instant> {
        let groups = self.shares.values().flat_map(|s| s.groups.values());
        groups.filter_map(SharePartition::next_deadline).min()
    }

    /// Held share fetches of `tp` try again: new records committed, or locks expired.
    pub(super) fn retry_share_fetches(&mut self, now: Instant, tp: &TopicPartition) {
        let Some(waiters) = self.waiters.get_mut(tp) else {
            return;
        };
        let (held, rest): (Vec<_>, Vec<_>) = std::mem::take(waiters)
            .into_iter()
            .partition(|w| matches!(w.kind, WaiterKind::ShareFetch(_)));
        *waiters = rest;
        for w in held {
            *self.waiter_counts.of(&w.kind) -= 1;
            let WaiterKind::ShareFetch(wait) = w.kind else {
                continue;
            };
            let answer = self.share_fetch_attempt(
                now,
                w.conn,
                w.correlation_id,
                tp.clone(),
                *wait,
                w.deadline,
            );
            if let Some(answer) = answer {
                self.respond(w.conn, w.correlation_id, Response::ShareFetch(answer));
            }
        }
    }

    /// The leader stopped leading `tp` (or its committed log was cut): its share states are
    /// rebuilt from the log the next time it leads.
    pub(super) fn forget_shares(&mut self, tp: &TopicPartition) {
        self.shares.remove(tp);
    }
}

/// Replays every share change in `replica`'s log, the uncommitted tail included: a leader's log
/// is the one that will be committed. Under [`ShareFailover::Release`], acquisitions written in
/// an earlier term than `term` are released as they are replayed.
fn rebuild(replica: &Replica, term: u64, failover: ShareFailover, now: Instant) -> PartitionShares {
    let mut shares = PartitionShares {
        term,
        groups: BTreeMap::new(),
    };
    let log = replica.log();
    let mut offset = log.start_offset();
    while offset < log.end_offset() {
        let batches = log.read(offset, log.end_offset(), SHARE_REBUILD_READ_BYTES_MAX);
        let Some(last) = batches.last().and_then(|b| batch::peek_header(b).ok()) else {
            break;
        };
        for b in &batches {
            let earlier_term = batch::peek_header(b).is_ok_and(|h| h.leader_epoch < term);
            let release = failover == ShareFailover::Release && earlier_term;
            for (group, change) in record::decode(b) {
                let state = shares.groups.entry(group).or_default();
                state.apply(now, &change);
                if let (true, Change::Acquire { offsets, .. }) = (release, &change) {
                    state.release_acquired(offsets);
                }
            }
        }
        if last.end_offset() <= offset {
            break;
        }
        offset = last.end_offset();
    }
    shares
}

/// Offsets of the committed data records at or after `from`, up to about `max_bytes` of
/// batches: what a share-partition may acquire anew.
fn committed_data_offsets(replica: &Replica, from: u64, max_bytes: usize) -> Vec<u64> {
    let hw = replica.high_watermark();
    if from >= hw {
        return Vec::new();
    }
    let mut offsets = Vec::new();
    for b in replica.log().read(from, hw, max_bytes) {
        let Ok(header) = batch::peek_header(&b) else {
            break;
        };
        if !header.is_control() {
            offsets.extend(header.base_offset.max(from)..header.end_offset().min(hw));
        }
    }
    offsets
}

/// [`committed_data_offsets`] with each record's [`share::ordering_key_hash`], for a
/// Key_Shared acquisition. A batch whose records do not decode ends the list: its records stay
/// unacquired rather than be handed out without their key.
fn committed_keyed_records(replica: &Replica, from: u64, max_bytes: usize) -> Vec<(u64, u32)> {
    let hw = replica.high_watermark();
    if from >= hw {
        return Vec::new();
    }
    let mut out = Vec::new();
    for b in replica.log().read(from, hw, max_bytes) {
        let Ok(header) = batch::peek_header(&b) else {
            break;
        };
        if header.is_control() {
            continue;
        }
        let Ok(records) = batch::records(&b) else {
            break;
        };
        let wanted = records.iter().filter(|r| r.offset >= from && r.offset < hw);
        out.extend(wanted.map(|r| (r.offset, share::ordering_key_hash(&r.key))));
    }
    out
}

/// The stored batches that hold `offsets` (ascending), each once.
fn batches_holding(replica: &Replica, offsets: &[u64]) -> Vec<bytes::Bytes> {
    let hw = replica.high_watermark();
    let mut out: Vec<bytes::Bytes> = Vec::new();
    let mut covered_end = 0;
    for &offset in offsets {
        if offset < covered_end && out.last().is_some() {
            continue;
        }
        // The first batch a read returns is the one holding `offset`.
        if let Some(b) = replica.log().read(offset, hw, 1).into_iter().next() {
            covered_end = batch::peek_header(&b).map_or(offset + 1, |h| h.end_offset());
            out.push(b);
        }
    }
    out
}
