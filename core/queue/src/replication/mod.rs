//! Replication: every partition is a Raft group over its replicas, as in Redpanda.
//!
//! A [`Replica`] is one member of one partition's group. Leader epochs are Raft terms; the
//! partition log is the Raft log, addressed by end offsets on batch boundaries instead of entry
//! indexes; the commit index is the high watermark. On top of textbook Raft (Ongaro, "Consensus:
//! Bridging Theory and Practice", 2014) it implements pre-vote (§9.6), leader stickiness and
//! check-quorum (§6.2, §9.6: a leader that stops hearing from a quorum steps down, and a replica
//! that heard from a leader recently refuses to vote), and a no-op control batch at the start of
//! every term so that a new leader can commit (§3.6.2).
//!
//! # Calling contract
//!
//! Inputs: [`Replica::handle_message`], [`Replica::handle_timeout`], [`Replica::propose`] and
//! [`Replica::handle_synced`] (the driver finished a `Sync` storage op). After any input, drain
//! [`Replica::poll_storage`] (and execute the ops in order), [`Replica::poll_message`] and
//! [`Replica::poll_event`], then call `handle_timeout` no later than [`Replica::poll_timeout`].
//!
//! Durability: term and vote are written to `{dir}/raft.meta` and fsynced before any message
//! that depends on them leaves; every outgoing message waits in `held` until then. Under
//! [`FsyncPolicy::EveryBatch`] a replica's log counts toward the commit quorum only up to its
//! fsynced end, so an `acks=all` write is acknowledged only once it is durable on a majority.

mod message;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

pub use message::{RaftEnvelope, RaftMessage};

use crate::config::{FsyncPolicy, LogConfig, ReplicationConfig, BUGGIFY_PROBABILITY};
use crate::ids::{NodeId, TopicPartition};
use crate::log::{
    batch, meta, LogError, PartitionLog, RecoveryReport, StorageOp, SyncOwner, SyncToken,
};
use crate::rng::Rng;
use crate::time::{earliest, Instant};

/// Messages held back while the hard state is being fsynced. Past this the oldest are dropped:
/// Raft tolerates lost messages, and a replica this far behind on fsync is stalled anyway.
const HELD_MESSAGES_MAX: usize = 4096;
/// Hard state goes to one of two files in turn: when the one in use holds
/// `META_RECORDS_PER_FILE_MAX` records, the other is cut to nothing and the current state is
/// written there. One of the two always holds the newest durable state, with no rename.
const META_FILES: [&str; 2] = ["raft.meta", "raft.meta.1"];
const META_RECORDS_PER_FILE_MAX: u32 = 1024;
/// A follower with an append in flight that has not been heard from for this many heartbeat
/// intervals is taken to have lost it (a dropped segment, a broken link): the leader empties its
/// window and probes again. Several round trips long, so a slow answer is not mistaken for a
/// loss, and well under the election timeout, so a lost append is resent before the follower
/// gives up on the leader and campaigns.
const APPEND_STALL_HEARTBEATS: u64 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaEvent {
    BecameLeader {
        epoch: u64,
    },
    SteppedDown {
        epoch: u64,
    },
    /// The high watermark rose.
    Committed {
        high_watermark: u64,
    },
    /// A leader made this replica truncate records it had seen committed: acknowledged data
    /// was lost because a majority did not keep it (no fsync, or a damaged disk).
    CommittedTruncated {
        high_watermark: u64,
        to: u64,
    },
    /// While leading `term`, this replica heard an append from `other` claiming to lead the same
    /// term: two leaders in one term, which Raft rules out while every voter keeps its vote (a
    /// damaged term/vote record can break that). Reported once per term; the append is ignored
    /// and this replica keeps serving. A safety anomaly for the simulator to count.
    ConflictingLeader {
        term: u64,
        other: NodeId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader")]
    NotLeader { leader: Option<NodeId> },
    #[error(transparent)]
    Log(#[from] LogError),
}

#[derive(Debug)]
enum Role {
    Follower,
    PreCandidate { granted: BTreeSet<NodeId> },
    Candidate(CandidateState),
    Leader(LeaderState),
}

/// A candidate's election in its term.
#[derive(Debug)]
struct CandidateState {
    granted: BTreeSet<NodeId>,
    /// Voters that answered, yes or no; the others are asked again at `retry_at`.
    answered: BTreeSet<NodeId>,
    /// When the vote request goes out again to voters that have not answered (Raft retries an
    /// RPC that got no answer, §3.4): a request lost with a broken connection or a restarted
    /// peer would otherwise cost the whole election time-out.
    retry_at: Instant,
}

#[derive(Debug)]
struct LeaderState {
    progress: BTreeMap<NodeId, Progress>,
    heartbeat_deadline: Instant,
    /// End offset of this term's control batch; the leader is ready once it commits.
    term_start_end: u64,
}

/// What the leader knows of one follower.
#[derive(Debug)]
struct Progress {
    /// Where the next append starts.
    next_end: u64,
    /// The follower's log matches ours up to here.
    matched_end: u64,
    /// The part of `matched_end` that counts toward the quorum (see [`RaftMessage`]).
    quorum_end: u64,
    in_flight: u32,
    /// After a rejection or a stall, send one append at a time until one succeeds.
    probing: bool,
    last_heard: Instant,
}

pub struct Replica {
    id: NodeId,
    partition: TopicPartition,
    voters: BTreeSet<NodeId>,
    dir: String,
    log: PartitionLog,
    fsync: FsyncPolicy,
    fsync_interval: Duration,
    config: ReplicationConfig,
    rng: Rng,

    term: u64,
    voted_for: Option<NodeId>,
    meta_sync_token: u64,
    meta_sync_pending: Option<u64>,
    /// The last term for which [`ReplicaEvent::ConflictingLeader`] was reported.
    conflict_reported_term: Option<u64>,
    /// Which of [`META_FILES`] takes the next record, how many it holds, which exist.
    meta_file: usize,
    meta_records: u32,
    meta_exists: [bool; 2],
    held: VecDeque<RaftEnvelope>,
    /// Recovery found state that may have been durable damaged: the log cut by corruption, or
    /// the newest term/vote record lost. Such a replica may hold less than it acknowledged or
    /// have forgotten a vote, so until an append from a leader brings its log up to that
    /// leader's high watermark it neither votes nor campaigns (Protocol-Aware Recovery,
    /// Alagappan et al., FAST 2018): it must not help elect a leader that lacks what it had.
    repairing: bool,

    role: Role,
    leader: Option<NodeId>,
    last_leader_contact: Option<Instant>,
    high_watermark: u64,
    /// As a follower: our log matches the current leader's up to here.
    follower_matched_end: u64,
    election_deadline: Instant,
    sync_deadline: Option<Instant>,

    outbox: VecDeque<RaftEnvelope>,
    storage: VecDeque<StorageOp>,
    events: VecDeque<ReplicaEvent>,
}

impl Replica {
    /// A replica with an empty log and no hard state, as on a fresh broker.
    pub fn new(
        id: NodeId,
        partition: TopicPartition,
        voters: &[NodeId],
        log_config: &LogConfig,
        config: &ReplicationConfig,
        rng: Rng,
        now: Instant,
    ) -> Replica {
        let log = PartitionLog::new(partition.clone(), log_config.clone());
        Replica::with_state(
            id, partition, voters, log, log_config, config, rng, now, 0, None,
        )
    }

    /// Rebuilds a replica from the files of its directory after a restart or crash.
    #[allow(clippy::too_many_arguments)]
    pub fn recover(
        id: NodeId,
        partition: TopicPartition,
        voters: &[NodeId],
        log_config: &LogConfig,
        config: &ReplicationConfig,
        files: Vec<(String, Bytes)>,
        rng: Rng,
        now: Instant,
    ) -> (Replica, RecoveryReport) {
        // The newest state of the two files: a vote only ever follows its term's first record.
        // Between records of one term and vote, one that says "repairing" wins: the files do
        // not say which was written last, and abstaining once more only costs a repair.
        let mut newest: Option<(usize, HardState)> = None;
        let mut exists = [false; 2];
        let mut meta_lost = false;
        for (i, name) in META_FILES.iter().enumerate() {
            let Some((_, bytes)) = files.iter().find(|(n, _)| n == name) else {
                continue;
            };
            exists[i] = true;
            let read = meta::read(bytes);
            meta_lost |= read.newest_lost;
            let state = read.last.and_then(|r| decode_hard_state(&r));
            if let Some(state) = state {
                let key = |s: &HardState| (s.term, s.voted_for.is_some(), s.repairing);
                if newest.is_none_or(|(_, n)| key(&state) > key(&n)) {
                    newest = Some((i, state));
                }
            }
        }
        let (file, hard) = newest.unwrap_or_default();
        let (term, voted_for) = (hard.term, hard.voted_for);
        let (log, report) = PartitionLog::recover(partition.clone(), log_config.clone(), files);
        let mut replica = Replica::with_state(
            id, partition, voters, log, log_config, config, rng, now, term, voted_for,
        );
        // Unknown how full the file is: the next record starts the other file afresh.
        replica.meta_file = file;
        replica.meta_records = META_RECORDS_PER_FILE_MAX;
        replica.meta_exists = exists;
        // A group of one has nobody to repair from; what it lost is lost.
        let damaged = (report.corrupt || meta_lost) && replica.voters.len() > 1;
        // A repair that a restart interrupted is not over: recovery has since cut the damaged
        // log, which now reads back clean, shorter than what this replica acknowledged.
        replica.repairing = damaged || hard.repairing;
        if damaged && !hard.repairing {
            // Durable before the cut: the log's recovery ops are drained after this record.
            replica.push_hard_state();
        }
        if replica.repairing {
            tracing::warn!(
                partition = %replica.partition,
                node = id,
                log_corrupt = report.corrupt,
                meta_lost,
                interrupted = hard.repairing,
                "durable state damaged: not voting until repaired from a leader"
            );
        }
        (replica, report)
    }

    #[allow(clippy::too_many_arguments)]
    fn with_state(
        id: NodeId,
        partition: TopicPartition,
        voters: &[NodeId],
        log: PartitionLog,
        log_config: &LogConfig,
        config: &ReplicationConfig,
        mut rng: Rng,
        now: Instant,
        term: u64,
        voted_for: Option<NodeId>,
    ) -> Replica {
        // The broker creates replicas only where the placement names it a voter; no message
        // or file reaches this.
        assert!(
            voters.contains(&id),
            "a replica is one of its group's voters"
        );
        let election_deadline = now + election_timeout(&mut rng, config);
        let mut r = Replica {
            id,
            dir: partition.dir(),
            partition,
            voters: voters.iter().copied().collect(),
            log,
            fsync: log_config.fsync,
            fsync_interval: Duration::from_millis(log_config.fsync_interval_ms.max(1)),
            config: config.clone(),
            rng,
            term,
            voted_for,
            meta_sync_token: 0,
            meta_sync_pending: None,
            conflict_reported_term: None,
            meta_file: 0,
            meta_records: 0,
            meta_exists: [false; 2],
            held: VecDeque::new(),
            repairing: false,
            role: Role::Follower,
            leader: None,
            last_leader_contact: None,
            high_watermark: 0,
            follower_matched_end: 0,
            election_deadline,
            sync_deadline: None,
            outbox: VecDeque::new(),
            storage: VecDeque::new(),
            events: VecDeque::new(),
        };
        r.drain_log_ops();
        r
    }

    pub fn partition(&self) -> &TopicPartition {
        &self.partition
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// A leader whose high watermark is current: it has committed an entry of its own term.
    pub fn is_ready_leader(&self) -> bool {
        match &self.role {
            Role::Leader(l) => self.high_watermark >= l.term_start_end,
            _ => false,
        }
    }

    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().copied()
    }

    /// Appends a producer's batch as leader. The batch is committed once the high watermark
    /// reaches the returned end offset.
    pub fn propose(&mut self, now: Instant, batch: &[u8]) -> Result<(u64, u64), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        let (base, end) = self.log.append_as_leader(batch, self.term)?;
        self.after_local_append(now);
        let followers: Vec<NodeId> = self.followers().collect();
        for f in followers {
            self.send_append(now, f, false);
        }
        self.maybe_commit();
        Ok((base, end))
    }

    pub fn handle_message(&mut self, now: Instant, env: RaftEnvelope) {
        debug_assert_eq!(env.partition, self.partition);
        if env.to != self.id || !self.voters.contains(&env.from) {
            return;
        }
        let from = env.from;
        match env.msg {
            RaftMessage::Vote {
                term,
                pre_vote,
                last_end,
                last_epoch,
            } => self.on_vote(now, from, term, pre_vote, last_end, last_epoch),
            RaftMessage::VoteResponse {
                term,
                pre_vote,
                granted,
            } => self.on_vote_response(now, from, term, pre_vote, granted),
            RaftMessage::Append {
                term,
                prev_end,
                prev_epoch,
                batches,
                commit,
            } => self.on_append(now, from, term, prev_end, prev_epoch, batches, commit),
            RaftMessage::AppendResponse {
                term,
                success,
                end,
                quorum_end,
                after_sync,
            } => self.on_append_response(now, from, term, success, end, quorum_end, after_sync),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.sync_deadline.is_some_and(|d| now >= d) {
            self.sync_deadline = None;
            self.log.request_sync();
            self.drain_log_ops();
        }
        if matches!(self.role, Role::Leader(_)) {
            self.leader_tick(now);
        } else if now >= self.election_deadline && self.repairing {
            self.reset_election_deadline(now);
        } else if now >= self.election_deadline {
            self.start_pre_vote(now);
        } else {
            self.retry_vote(now);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let role = match &self.role {
            Role::Leader(l) => l.heartbeat_deadline,
            Role::Candidate(c) => c.retry_at.min(self.election_deadline),
            _ => self.election_deadline,
        };
        earliest([Some(role), self.sync_deadline])
    }

    /// The driver finished a `Sync` op with a token this replica issued (owned by
    /// [`SyncOwner::RaftMeta`] or [`SyncOwner::Log`] of its partition; others are ignored).
    pub fn handle_synced(&mut self, now: Instant, token: &SyncToken) {
        match &token.owner {
            SyncOwner::RaftMeta(tp) if *tp == self.partition => {
                if self.meta_sync_pending == Some(token.seq) {
                    self.meta_sync_pending = None;
                    self.outbox.extend(self.held.drain(..));
                }
                return;
            }
            SyncOwner::Log(tp) if *tp == self.partition => {}
            _ => {
                tracing::warn!(partition = %self.partition, ?token, "sync completion for another owner");
                return;
            }
        }
        self.log.handle_synced(token.seq);
        self.drain_log_ops();
        if self.fsync != FsyncPolicy::EveryBatch {
            return;
        }
        if self.is_leader() {
            self.maybe_commit();
        } else if let Some(leader) = self.leader {
            // Tell the leader how much of what it sent is now durable here.
            let quorum_end = self.local_quorum_end().min(self.follower_matched_end);
            self.send(
                leader,
                RaftMessage::AppendResponse {
                    term: self.term,
                    success: true,
                    end: self.follower_matched_end,
                    quorum_end,
                    after_sync: true,
                },
            );
        }
        let _ = now;
    }

    pub fn poll_storage(&mut self) -> Option<StorageOp> {
        self.storage.pop_front()
    }

    pub fn poll_message(&mut self) -> Option<RaftEnvelope> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ReplicaEvent> {
        self.events.pop_front()
    }

    /// Whether any of the `poll_*` queues holds something.
    pub fn has_output(&self) -> bool {
        !(self.storage.is_empty() && self.outbox.is_empty() && self.events.is_empty())
    }

    // --- elections -------------------------------------------------------------------------

    fn in_leader_lease(&self, now: Instant) -> bool {
        if self.is_leader() {
            return true;
        }
        let lease = Duration::from_millis(self.config.election_timeout_min_ms);
        self.leader.is_some()
            && self
                .last_leader_contact
                .is_some_and(|t| now.saturating_since(t) < lease)
    }

    fn log_is_at_least(&self, last_end: u64, last_epoch: u64) -> bool {
        (last_epoch, last_end) >= (self.log.last_epoch(), self.log.end_offset())
    }

    fn on_vote(
        &mut self,
        now: Instant,
        from: NodeId,
        term: u64,
        pre_vote: bool,
        last_end: u64,
        last_epoch: u64,
    ) {
        // A repairing replica cannot judge: its log or its vote may be older than it promised.
        let up_to_date = !self.repairing && self.log_is_at_least(last_end, last_epoch);
        if pre_vote {
            let granted = term > self.term && up_to_date && !self.in_leader_lease(now);
            let reply_term = if granted { term } else { self.term };
            self.send(
                from,
                RaftMessage::VoteResponse {
                    term: reply_term,
                    pre_vote: true,
                    granted,
                },
            );
            return;
        }
        if term < self.term || (term > self.term && self.in_leader_lease(now)) {
            let t = self.term;
            self.send(
                from,
                RaftMessage::VoteResponse {
                    term: t,
                    pre_vote: false,
                    granted: false,
                },
            );
            return;
        }
        if term > self.term {
            self.become_follower(now, term, None);
        }
        let granted = up_to_date && self.voted_for.is_none_or(|v| v == from);
        if granted && self.voted_for.is_none() {
            self.voted_for = Some(from);
            self.persist_hard_state();
            self.reset_election_deadline(now);
        }
        self.send(
            from,
            RaftMessage::VoteResponse {
                term: self.term,
                pre_vote: false,
                granted,
            },
        );
    }

    fn on_vote_response(
        &mut self,
        now: Instant,
        from: NodeId,
        term: u64,
        pre_vote: bool,
        granted: bool,
    ) {
        if let Role::Candidate(c) = &mut self.role {
            if !pre_vote && term == self.term {
                c.answered.insert(from);
            }
        }
        if !granted {
            if term > self.term {
                self.become_follower(now, term, None);
            }
            return;
        }
        let majority = self.majority();
        match &mut self.role {
            Role::PreCandidate { granted }
                if pre_vote && Some(term) == self.term.checked_add(1) =>
            {
                granted.insert(from);
                if granted.len() >= majority {
                    self.start_election(now);
                }
            }
            Role::Candidate(c) if !pre_vote && term == self.term => {
                c.granted.insert(from);
                if c.granted.len() >= majority {
                    self.become_leader(now);
                }
            }
            _ => {}
        }
    }

    fn start_pre_vote(&mut self, now: Instant) {
        self.reset_election_deadline(now);
        // A peer can push the term to u64::MAX; there is no term after it to campaign in.
        let Some(next_term) = self.term.checked_add(1) else {
            tracing::error!(partition = %self.partition, node = self.id, "term exhausted; not campaigning");
            return;
        };
        self.leader = None;
        self.role = Role::PreCandidate {
            granted: BTreeSet::from([self.id]),
        };
        if self.majority() == 1 || !self.config.pre_vote {
            return self.start_election(now);
        }
        self.broadcast_vote(next_term, true);
    }

    fn start_election(&mut self, now: Instant) {
        let Some(next_term) = self.term.checked_add(1) else {
            return;
        };
        self.term = next_term;
        self.voted_for = Some(self.id);
        self.persist_hard_state();
        self.reset_election_deadline(now);
        self.role = Role::Candidate(CandidateState {
            granted: BTreeSet::from([self.id]),
            answered: BTreeSet::from([self.id]),
            retry_at: now + self.heartbeat_interval(),
        });
        if self.majority() == 1 {
            return self.become_leader(now);
        }
        let others: Vec<NodeId> = self.followers().collect();
        self.request_votes(self.term, false, others);
    }

    fn broadcast_vote(&mut self, term: u64, pre_vote: bool) {
        let others: Vec<NodeId> = self.followers().collect();
        self.request_votes(term, pre_vote, others);
    }

    /// Asks the voters that have not answered again, once per heartbeat interval.
    fn retry_vote(&mut self, now: Instant) {
        let interval = self.heartbeat_interval();
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        if now < c.retry_at {
            return;
        }
        c.retry_at = now + interval;
        let silent: Vec<NodeId> = self
            .voters
            .iter()
            .copied()
            .filter(|v| !c.answered.contains(v))
            .collect();
        self.request_votes(self.term, false, silent);
    }

    fn request_votes(&mut self, term: u64, pre_vote: bool, to: Vec<NodeId>) {
        let (last_end, last_epoch) = (self.log.end_offset(), self.log.last_epoch());
        for to in to {
            self.send(
                to,
                RaftMessage::Vote {
                    term,
                    pre_vote,
                    last_end,
                    last_epoch,
                },
            );
        }
    }

    fn become_leader(&mut self, now: Instant) {
        let progress = self
            .followers()
            .map(|f| {
                let p = Progress {
                    next_end: self.log.end_offset(),
                    matched_end: 0,
                    quorum_end: 0,
                    in_flight: 0,
                    probing: true,
                    last_heard: now,
                };
                (f, p)
            })
            .collect();
        let control = batch::build_control(now.as_nanos());
        let term_start_end = match self.log.append_as_leader(&control, self.term) {
            Ok((_, end)) => end,
            // Only a log whose offsets reach u64::MAX (a damaged file name) refuses it; such a
            // replica cannot lead, but can still vote and follow.
            Err(e) => {
                tracing::error!(partition = %self.partition, node = self.id, error = %e, "cannot lead");
                let term = self.term;
                return self.become_follower(now, term, None);
            }
        };
        self.role = Role::Leader(LeaderState {
            progress,
            heartbeat_deadline: now,
            term_start_end,
        });
        self.leader = Some(self.id);
        self.events
            .push_back(ReplicaEvent::BecameLeader { epoch: self.term });
        tracing::debug!(partition = %self.partition, node = self.id, term = self.term, "became leader");
        self.after_local_append(now);
        self.leader_tick(now);
        self.maybe_commit();
    }

    fn become_follower(&mut self, now: Instant, term: u64, leader: Option<NodeId>) {
        if let Role::Leader(_) = self.role {
            self.events
                .push_back(ReplicaEvent::SteppedDown { epoch: self.term });
        }
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.persist_hard_state();
            self.follower_matched_end = 0;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.reset_election_deadline(now);
    }

    fn reset_election_deadline(&mut self, now: Instant) {
        self.election_deadline = now + election_timeout(&mut self.rng, &self.config);
    }

    // --- log replication -------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn on_append(
        &mut self,
        now: Instant,
        from: NodeId,
        term: u64,
        prev_end: u64,
        prev_epoch: u64,
        batches: Vec<Bytes>,
        commit: u64,
    ) {
        if term < self.term {
            let t = self.term;
            let end = self.log.end_offset();
            self.send(
                from,
                RaftMessage::AppendResponse {
                    term: t,
                    success: false,
                    end,
                    quorum_end: 0,
                    after_sync: false,
                },
            );
            return;
        }
        if self.is_leader() && term == self.term {
            return self.on_conflicting_leader(from, term);
        }
        if term > self.term || !matches!(self.role, Role::Follower) || self.leader != Some(from) {
            self.become_follower(now, term, Some(from));
        }
        self.last_leader_contact = Some(now);
        self.reset_election_deadline(now);

        if self.log.epoch_at_end(prev_end) != Some(prev_epoch) {
            let hint = if prev_end > self.log.end_offset() {
                self.log.end_offset()
            } else {
                self.log
                    .batch_boundary_at_or_below(prev_end.saturating_sub(1))
            };
            self.send(
                from,
                RaftMessage::AppendResponse {
                    term,
                    success: false,
                    end: hint,
                    quorum_end: 0,
                    after_sync: false,
                },
            );
            return;
        }

        let mut matched = prev_end;
        let mut appended = false;
        for b in batches {
            let Ok(header) = batch::parse(&b) else { break };
            if header.base_offset != matched {
                break;
            }
            if self.log.end_offset() > matched {
                if self.log.epoch_at_end(header.end_offset()) == Some(header.leader_epoch) {
                    matched = header.end_offset();
                    continue;
                }
                if matched < self.high_watermark {
                    // Committed records are being overwritten. Raft rules this out only while a
                    // majority keeps what it acknowledged; without fsync (or after disk
                    // corruption) a majority can lose it, and this is where that loss shows.
                    tracing::warn!(
                        partition = %self.partition,
                        node = self.id,
                        high_watermark = self.high_watermark,
                        to = matched,
                        "truncating committed records"
                    );
                    self.events.push_back(ReplicaEvent::CommittedTruncated {
                        high_watermark: self.high_watermark,
                        to: matched,
                    });
                    self.high_watermark = matched;
                }
                self.log.truncate_to(matched);
            }
            if self.log.append_replicated(b).is_err() {
                break;
            }
            appended = true;
            matched = header.end_offset();
        }
        self.follower_matched_end = matched;
        if appended {
            self.after_local_append(now);
        }
        if self.repairing && matched >= commit && self.log.epoch_at_end(commit) == Some(term) {
            // The leader has committed a batch of its own term, so its high watermark covers
            // everything committed before it; holding all that, this replica holds whatever it
            // had acknowledged that counted, and may vote again.
            self.repairing = false;
            self.persist_hard_state();
            tracing::info!(partition = %self.partition, node = self.id, end = matched, "repaired from the leader");
        }
        let hw = commit.min(matched);
        if hw > self.high_watermark {
            self.high_watermark = hw;
            self.events
                .push_back(ReplicaEvent::Committed { high_watermark: hw });
        }
        let quorum_end = self.local_quorum_end().min(matched);
        self.send(
            from,
            RaftMessage::AppendResponse {
                term,
                success: true,
                end: matched,
                quorum_end,
                after_sync: false,
            },
        );
    }

    /// An append from `other` for the term this replica leads. Ignored, so that neither leader
    /// takes the other's log for its own; reported once per term.
    fn on_conflicting_leader(&mut self, other: NodeId, term: u64) {
        tracing::warn!(partition = %self.partition, node = self.id, other, term, "two leaders in one term");
        if self.conflict_reported_term != Some(term) {
            self.conflict_reported_term = Some(term);
            self.events
                .push_back(ReplicaEvent::ConflictingLeader { term, other });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_append_response(
        &mut self,
        now: Instant,
        from: NodeId,
        term: u64,
        success: bool,
        end: u64,
        quorum_end: u64,
        after_sync: bool,
    ) {
        if term > self.term {
            self.become_follower(now, term, None);
            return;
        }
        if term < self.term {
            return;
        }
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let Some(p) = leader.progress.get_mut(&from) else {
            return;
        };
        p.last_heard = now;
        if after_sync {
            // Within one leader's term a follower's durable, matching prefix only grows.
            p.quorum_end = p.quorum_end.max(quorum_end.min(end));
            self.maybe_commit();
            return;
        }
        p.in_flight = p.in_flight.saturating_sub(1);
        if success {
            p.matched_end = end;
            p.quorum_end = quorum_end.min(end);
            p.next_end = p.next_end.max(end);
            p.probing = false;
        } else {
            // A follower that restarted with a log cut by corruption holds less than it once
            // acknowledged; never count it for more than it now says it has.
            p.matched_end = p.matched_end.min(end);
            p.quorum_end = p.quorum_end.min(end);
            // Walk back to a boundary of our own log below what the follower rejected.
            p.next_end = self.log.batch_boundary_at_or_below(end.min(p.next_end));
            p.in_flight = 0;
            p.probing = true;
        }
        self.maybe_commit();
        self.send_append(now, from, !success);
    }

    fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.config.heartbeat_interval_ms)
    }

    fn leader_tick(&mut self, now: Instant) {
        let heartbeat_ms = self.config.heartbeat_interval_ms;
        let heartbeat = self.heartbeat_interval();
        let stall = Duration::from_millis(heartbeat_ms.saturating_mul(APPEND_STALL_HEARTBEATS));
        let quorum_timeout = Duration::from_millis(self.config.election_timeout_max_ms);
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if now < leader.heartbeat_deadline {
            return;
        }
        leader.heartbeat_deadline = now + heartbeat;
        // Check quorum: a leader that has not heard from a majority steps down, so that a leader
        // cut off by a partition stops accepting writes it can never commit.
        let heard = 1 + leader
            .progress
            .values()
            .filter(|p| now.saturating_since(p.last_heard) < quorum_timeout)
            .count();
        if heard < self.majority() {
            tracing::debug!(partition = %self.partition, node = self.id, "lost quorum, stepping down");
            let term = self.term;
            return self.become_follower(now, term, None);
        }
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let mut to_send = Vec::new();
        for (&f, p) in leader.progress.iter_mut() {
            if p.in_flight > 0 && now.saturating_since(p.last_heard) >= stall {
                p.in_flight = 0;
                p.next_end = p.matched_end;
                p.probing = true;
            }
            if p.in_flight == 0 {
                to_send.push(f);
            }
        }
        for f in to_send {
            self.send_append(now, f, true);
        }
    }

    /// Sends the next append to a follower if its window allows; a heartbeat if `allow_empty`.
    fn send_append(&mut self, _now: Instant, to: NodeId, allow_empty: bool) {
        let limit = self.config.append_in_flight_max.max(1);
        // BUGGIFY: one batch per append, so followers catch up over many small rounds.
        let bytes_max = if self.config.buggify && self.rng.chance(BUGGIFY_PROBABILITY) {
            1
        } else {
            self.config.append_bytes_max as usize
        };
        let commit = self.high_watermark;
        let term = self.term;
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let Some(p) = leader.progress.get_mut(&to) else {
            return;
        };
        if p.in_flight >= if p.probing { 1 } else { limit } {
            return;
        }
        // Whatever end a follower claims, the boundary comes from our own log, and every
        // boundary of a log has an epoch; no message reaches the `else`.
        let prev_end = self.log.batch_boundary_at_or_below(p.next_end);
        let Some(prev_epoch) = self.log.epoch_at_end(prev_end) else {
            debug_assert!(false, "boundary {prev_end} of our own log has no epoch");
            return;
        };
        let batches = self.log.read(prev_end, self.log.end_offset(), bytes_max);
        if batches.is_empty() && !allow_empty {
            return;
        }
        if let Some(last) = batches.last() {
            // Our own log holds only batches it checked on the way in.
            let Ok(h) = batch::parse(last) else {
                debug_assert!(false, "our own log holds an invalid batch");
                return;
            };
            p.next_end = h.end_offset();
        } else {
            p.next_end = prev_end;
        }
        p.in_flight += 1;
        self.send(
            to,
            RaftMessage::Append {
                term,
                prev_end,
                prev_epoch,
                batches,
                commit,
            },
        );
    }

    /// Raises the high watermark to the largest end that a majority holds, if that end lies in
    /// a batch of the current term (§3.6.2: earlier terms commit only indirectly).
    fn maybe_commit(&mut self) {
        let majority = self.majority();
        let own = self.local_quorum_end();
        let Role::Leader(leader) = &self.role else {
            return;
        };
        let mut ends: Vec<u64> = leader.progress.values().map(|p| p.quorum_end).collect();
        ends.push(own);
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = ends[majority - 1];
        if candidate > self.high_watermark && self.log.epoch_at_end(candidate) == Some(self.term) {
            self.high_watermark = candidate;
            self.events.push_back(ReplicaEvent::Committed {
                high_watermark: candidate,
            });
        }
    }

    // --- storage ---------------------------------------------------------------------------

    fn local_quorum_end(&self) -> u64 {
        match self.fsync {
            FsyncPolicy::EveryBatch => self.log.durable_end_offset(),
            FsyncPolicy::Interval | FsyncPolicy::Never => self.log.end_offset(),
        }
    }

    fn after_local_append(&mut self, now: Instant) {
        match self.fsync {
            FsyncPolicy::EveryBatch => {
                self.log.request_sync();
            }
            FsyncPolicy::Interval => {
                if self.sync_deadline.is_none() {
                    self.sync_deadline = Some(now + self.fsync_interval);
                }
            }
            FsyncPolicy::Never => {}
        }
        self.drain_log_ops();
    }

    fn drain_log_ops(&mut self) {
        while let Some(op) = self.log.poll_op() {
            self.storage.push_back(op);
        }
    }

    fn meta_path(&self) -> String {
        format!("{}/{}", self.dir, META_FILES[self.meta_file])
    }

    fn persist_hard_state(&mut self) {
        self.drain_log_ops();
        self.push_hard_state();
    }

    /// Queues a record of the hard state and its sync, after whatever is queued already.
    fn push_hard_state(&mut self) {
        self.meta_sync_token += 1;
        if self.meta_records >= META_RECORDS_PER_FILE_MAX {
            self.meta_file ^= 1;
            self.meta_records = 0;
            if self.meta_exists[self.meta_file] {
                self.storage.push_back(StorageOp::Truncate {
                    path: self.meta_path(),
                    len: 0,
                });
            }
        }
        self.meta_records += 1;
        self.meta_exists[self.meta_file] = true;
        let path = self.meta_path();
        let record = meta::encode_mirrored(&encode_hard_state(&HardState {
            term: self.term,
            voted_for: self.voted_for,
            repairing: self.repairing,
        }));
        self.storage.push_back(StorageOp::Append {
            path: path.clone(),
            bytes: record,
        });
        self.storage.push_back(StorageOp::Sync {
            path,
            token: SyncToken {
                owner: SyncOwner::RaftMeta(self.partition.clone()),
                seq: self.meta_sync_token,
            },
        });
        self.meta_sync_pending = Some(self.meta_sync_token);
    }

    // --- helpers ---------------------------------------------------------------------------

    fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    fn followers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.id;
        self.voters.iter().copied().filter(move |&v| v != me)
    }

    fn send(&mut self, to: NodeId, msg: RaftMessage) {
        let env = RaftEnvelope {
            partition: self.partition.clone(),
            from: self.id,
            to,
            msg,
        };
        if self.meta_sync_pending.is_some() {
            if self.held.len() >= HELD_MESSAGES_MAX {
                self.held.pop_front();
            }
            self.held.push_back(env);
        } else {
            self.outbox.push_back(env);
        }
    }
}

fn election_timeout(rng: &mut Rng, config: &ReplicationConfig) -> Duration {
    let (min, max) = (
        Duration::from_millis(config.election_timeout_min_ms),
        Duration::from_millis(config.election_timeout_max_ms),
    );
    // BUGGIFY: the extremes are where split votes (min) and slow fail-overs (max) live.
    if config.buggify && rng.chance(BUGGIFY_PROBABILITY) {
        return if rng.chance(0.5) { min } else { max };
    }
    rng.duration_between(min, max)
}

/// What a replica must not forget across a restart: its term, its vote in it, and whether it
/// is still being repaired after finding its durable state damaged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HardState {
    term: u64,
    voted_for: Option<NodeId>,
    repairing: bool,
}

/// 13 bytes (term, vote flag, vote), and a 14th, 1, while repairing: records of a replica
/// that is not repairing keep the size they always had.
fn encode_hard_state(s: &HardState) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    out.extend_from_slice(&s.term.to_be_bytes());
    out.push(s.voted_for.is_some() as u8);
    out.extend_from_slice(&s.voted_for.unwrap_or(0).to_be_bytes());
    if s.repairing {
        out.push(1);
    }
    out
}

fn decode_hard_state(b: &[u8]) -> Option<HardState> {
    let repairing = match b.len() {
        13 => false,
        14 if b[13] == 1 => true,
        _ => return None,
    };
    let term = u64::from_be_bytes(b[0..8].try_into().ok()?);
    let vote = u32::from_be_bytes(b[9..13].try_into().ok()?);
    Some(HardState {
        term,
        voted_for: (b[8] == 1).then_some(vote),
        repairing,
    })
}

#[cfg(test)]
mod tests;
