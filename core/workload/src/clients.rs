//! The client processes of a run: producers, consumers and the final reader. Each drives a core
//! client state machine through the shared driver and records every operation in the history.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use fathom_driver::{pay, ClientIo, Net, SharedResources};
use fathom_history::{Event, EventType, Op};
use fathom_queue::client::{
    Consumer, ConsumerConfig, ConsumerEvent, Producer, ProducerEvent, SendError,
};
use fathom_queue::config::ClusterConfig;
use fathom_queue::group::member::MemberConfig;
use fathom_queue::ids::TopicPartition;
use fathom_queue::rng::Rng;
use fathom_queue::time::Instant;

use fathom_queue::client::producer::UNKNOWN_PARTITION;

use crate::spec::{
    restarted_process_name, CommitMode, ConsumerSpec, MemberAction, Partitioner, ProducerMode,
    ProducerSpec, HOT_KEY_PARTITION,
};
use crate::trace::{AttemptRecord, SharedTrace};

mod share;

/// How a client process ends: `Err` when it could not run at all (the simulator fails the run).
pub type ProcessResult = Result<(), Box<dyn std::error::Error>>;

/// The process name of the final read.
pub const FINAL_READ_PROCESS: &str = "final-read";
/// A group that never commits, so the final read starts from offset 0.
const FINAL_READ_GROUP: &str = "__fathom_final_read";

/// The time left until `at` (on the trace's clock), as a deadline on the driver's clock, which
/// started with the process.
fn deadline_at(trace: &SharedTrace, io_now: Instant, at: Duration) -> Instant {
    let left = at.saturating_sub(Duration::from_nanos(trace.borrow().now_ns()));
    io_now + left
}

fn record(trace: &SharedTrace, process: &str, kind: EventType, op: Op) {
    trace.borrow_mut().record(process, kind, op);
}

/// Records a group member's operation, stamped with its group and generation.
fn record_in_group(
    trace: &SharedTrace,
    process: &str,
    kind: EventType,
    op: Op,
    group: &str,
    generation: Option<u32>,
) {
    let now_ns = trace.borrow().now_ns();
    let event = Event::new(now_ns, process, kind, op).in_group(group, generation);
    trace.borrow_mut().record_event(event);
}

fn partition_list(partitions: &BTreeSet<TopicPartition>) -> Vec<(String, u32)> {
    partitions
        .iter()
        .map(|tp| (tp.topic.clone(), tp.partition))
        .collect()
}

fn send_op(tp: &TopicPartition, id: &str) -> Op {
    Op::Send {
        id: id.to_string(),
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset: None,
        error: None,
    }
}

/// How far an open-loop producer may fall behind its schedule and still catch up: sends due
/// longer ago than this are skipped, so a long block does not end in an unbounded burst.
const SEND_BACKLOG_MAX: Duration = Duration::from_millis(100);

/// Whether message `n` (from 0) of a producer goes to its hot key: exactly `share` of every
/// prefix of the messages, rounded down, spread evenly (message `n` is hot when
/// `floor((n + 1) * share)` passes `floor(n * share)`). Deterministic and drawing nothing, so a
/// share of 0 leaves the partitioner's draws, and the run, as they were.
fn is_hot(n: u64, share: f64) -> bool {
    share > 0.0 && ((n + 1) as f64 * share).floor() > (n as f64 * share).floor()
}

/// The next send time of a producer sending every `interval`. Sends due in the past go out at
/// once (several per tick when the rate is above the tick rate), within [`SEND_BACKLOG_MAX`].
fn next_send_after(previous: Instant, interval: Duration, now: Instant) -> Instant {
    let next = previous + interval;
    let oldest = Instant::from_nanos(
        now.as_nanos()
            .saturating_sub(SEND_BACKLOG_MAX.as_nanos() as u64),
    );
    next.max(oldest)
}

pub struct ProducerProcess {
    pub name: String,
    pub spec: ProducerSpec,
    pub partitions: u32,
    pub cluster: ClusterConfig,
    pub seed: u64,
    pub trace: SharedTrace,
    /// Stop starting sends here (simulated time since the start of the run).
    pub stop_at: Duration,
    /// This host's network and CPU.
    pub resources: SharedResources,
    /// CPU time to prepare one message for sending.
    pub message_cpu: Duration,
}

impl ProducerProcess {
    pub async fn run<N: Net>(self) -> ProcessResult {
        let spec = &self.spec;
        let mut rng = Rng::new(self.seed ^ name_salt(&self.name));
        let config = spec.producer_config();
        let mut producer = Producer::new(config, self.cluster.brokers.clone(), rng.fork(1));
        let mut io = ClientIo::<N>::new(self.name.clone(), &self.cluster.brokers)
            .with_resources(self.resources.clone());
        let value = Bytes::from(vec![b'x'; spec.message_bytes.get() as usize]);
        let interval = Duration::from_secs_f64(1.0 / spec.rate_per_s);
        let stop = deadline_at(&self.trace, io.now(), self.stop_at);
        // Every send resolves within the delivery timeout plus one request timeout.
        let give_up =
            stop + Duration::from_millis(
                spec.client.delivery_timeout_ms + spec.client.request_timeout_ms,
            ) + Duration::from_secs(1);
        let mut next_send = io.now();
        let mut sent: u64 = 0;
        let mut outstanding: u64 = 0;
        let mut round_robin: u32 = rng.range_u64(0, self.partitions as u64 - 1) as u32;
        let max_block = Duration::from_millis(spec.max_block_ms);
        // Since when `send` has been refused for a full buffer.
        let mut blocked_since: Option<Instant> = None;
        // The CPU cost of the message about to be sent is paid.
        let mut cpu_paid = false;
        loop {
            let now = io.now();
            while let Some(event) = producer.poll_event() {
                if self.record_event(event, io.now()) {
                    outstanding -= 1;
                }
            }
            if spec.connect_per_send && outstanding == 0 {
                io.close_idle();
            }
            let may_send = sent < spec.messages.get()
                && now < stop
                && (spec.mode != ProducerMode::Sync || outstanding == 0);
            if may_send && now >= next_send {
                let hot = is_hot(sent, spec.hot_key_share);
                let id = spec.message_id(&self.name, sent, hot);
                let explicit = if hot {
                    Some(HOT_KEY_PARTITION)
                } else {
                    self.explicit_partition(&mut round_robin, &mut rng)
                };
                // The application prepares each message once, however long `send` blocks.
                if !cpu_paid {
                    pay(self.resources.compute(self.message_cpu)).await;
                    cpu_paid = true;
                }
                let now = io.now();
                match self.send(&mut producer, now, explicit, &id, &value) {
                    Ok(tp) => {
                        self.record_sent(&tp, &id);
                        sent += 1;
                        outstanding += 1;
                        next_send = next_send_after(next_send, interval, now);
                        blocked_since = None;
                        cpu_paid = false;
                        continue;
                    }
                    // An asynchronous send blocks while the buffer is full (claim P4), for at
                    // most `max_block_ms`; then that send fails.
                    Err(SendError::BufferFull) => {
                        // Handing queued batches to the network may free room at once (acks=0
                        // frees a batch when it is sent): try again before blocking.
                        let queued = producer.queued_bytes();
                        io.flush(&mut producer);
                        if producer.queued_bytes() < queued {
                            continue;
                        }
                        let since = *blocked_since.get_or_insert(now);
                        if now.saturating_since(since) >= max_block {
                            self.record_blocked_too_long(explicit, &id);
                            sent += 1;
                            next_send = next_send_after(next_send, interval, now);
                            blocked_since = None;
                            cpu_paid = false;
                            continue;
                        }
                    }
                }
            }
            let done_sending = sent >= spec.messages.get() || now >= stop;
            if (done_sending && outstanding == 0) || now >= give_up {
                // Like a producer's close(): what was handed to the network goes out.
                io.drain(&mut producer, give_up).await;
                break;
            }
            // While sending, wake for the next send; after, only the outcomes still due matter.
            let wake = if let (true, Some(since)) = (may_send, blocked_since) {
                // Blocked on a full buffer: wake when an outcome frees room, or to give up.
                since + max_block
            } else if may_send {
                next_send
            } else if now < stop {
                stop
            } else {
                give_up
            };
            io.step(&mut producer, Some(wake)).await;
        }
        Ok(())
    }

    /// Records one producer event: an attempt in the send journal, a delivery in the history
    /// (unless fire-and-forget, whose outcome the application never sees). True for a delivery.
    fn record_event(&self, event: ProducerEvent, io_now: Instant) -> bool {
        match event {
            ProducerEvent::Attempt {
                partition,
                ids,
                attempt,
                broker,
                sent_at,
                outcome,
            } => {
                let mut trace = self.trace.borrow_mut();
                let resolved_ns = trace.now_ns();
                let age = io_now.saturating_since(sent_at).as_nanos() as u64;
                let (offset, error) = match outcome {
                    Ok(offset) => (Some(offset), None),
                    Err(e) => (None, Some(e)),
                };
                trace.attempts.push(AttemptRecord {
                    process: self.name.clone(),
                    topic: partition.topic,
                    partition: partition.partition,
                    attempt,
                    broker,
                    sent_ns: resolved_ns.saturating_sub(age),
                    resolved_ns,
                    offset,
                    error,
                    ids,
                });
                false
            }
            ProducerEvent::Delivered {
                id,
                partition,
                result,
            } => {
                if self.observes_outcome() {
                    let (kind, offset, error) = match result {
                        Ok(offset) => (EventType::Ok, Some(offset), None),
                        Err(f) if f.definite => (EventType::Fail, None, Some(f.error)),
                        Err(f) => (EventType::Info, None, Some(f.error)),
                    };
                    let op = Op::Send {
                        id,
                        topic: partition.topic,
                        partition: partition.partition,
                        offset,
                        error,
                    };
                    record(&self.trace, &self.name, kind, op);
                }
                true
            }
        }
    }

    fn observes_outcome(&self) -> bool {
        self.spec.mode != ProducerMode::FireAndForget
    }

    /// The partition the workload picks for the next message, or `None` when the producer's own
    /// partitioner picks.
    fn explicit_partition(&self, round_robin: &mut u32, rng: &mut Rng) -> Option<u32> {
        match self.spec.partitioner {
            Partitioner::RoundRobin => {
                *round_robin = (*round_robin + 1) % self.partitions;
                Some(*round_robin)
            }
            Partitioner::Random => Some(rng.range_u64(0, self.partitions as u64 - 1) as u32),
            Partitioner::KeyHash | Partitioner::Sticky => None,
        }
    }

    /// Hands message `id` to the producer. The producer's own partitioners pick once it knows
    /// the partition count; a send before that is invoked with `UNKNOWN_PARTITION` and
    /// completes with the real one.
    fn send(
        &self,
        producer: &mut Producer,
        now: Instant,
        explicit: Option<u32>,
        id: &str,
        value: &Bytes,
    ) -> Result<TopicPartition, SendError> {
        let topic = &self.spec.topic;
        match explicit {
            Some(partition) => {
                let tp = TopicPartition::new(topic.clone(), partition);
                producer
                    .send(now, tp.clone(), id.to_string(), value.clone())
                    .map(|()| tp)
            }
            None => {
                let key = (self.spec.partitioner == Partitioner::KeyHash).then_some(id.as_bytes());
                producer
                    .send_to_topic(now, topic, key, id.to_string(), value.clone())
                    .map(|tp| {
                        tp.unwrap_or_else(|| TopicPartition::new(topic.clone(), UNKNOWN_PARTITION))
                    })
            }
        }
    }

    /// The invoke of a send the producer accepted, and at once its unknown outcome if
    /// fire-and-forget.
    fn record_sent(&self, tp: &TopicPartition, id: &str) {
        record(&self.trace, &self.name, EventType::Invoke, send_op(tp, id));
        if !self.observes_outcome() {
            let mut op = send_op(tp, id);
            if let Op::Send { error, .. } = &mut op {
                *error = Some("fire-and-forget: outcome not observed".into());
            }
            record(&self.trace, &self.name, EventType::Info, op);
        }
    }

    /// A send that blocked on a full buffer for `max_block_ms`: invoked, then failed.
    fn record_blocked_too_long(&self, explicit: Option<u32>, id: &str) {
        let tp = TopicPartition::new(
            self.spec.topic.clone(),
            explicit.unwrap_or(UNKNOWN_PARTITION),
        );
        record(&self.trace, &self.name, EventType::Invoke, send_op(&tp, id));
        let mut op = send_op(&tp, id);
        if let Op::Send { error, .. } = &mut op {
            *error = Some(format!(
                "buffer full: blocked {} ms (max_block_ms)",
                self.spec.max_block_ms
            ));
        }
        record(&self.trace, &self.name, EventType::Fail, op);
    }
}

pub struct ConsumerProcess {
    pub spec: ConsumerSpec,
    pub instance: u32,
    pub partitions: u32,
    pub cluster: ClusterConfig,
    pub seed: u64,
    pub trace: SharedTrace,
    /// When the last incarnation stops (simulated time since the start of the run).
    pub stop_at: Duration,
    /// This host's network and CPU.
    pub resources: SharedResources,
    /// When the instance starts (a group member that joins later); zero for the others.
    pub start_at: Duration,
    /// A group member's membership faults, in time order (simulated time since the start).
    pub actions: Vec<(Duration, MemberAction)>,
    /// When the workload phase ends: delivery counters are also kept as they stood then.
    pub workload_end: Duration,
}

/// How one process of a group member ended.
enum Ending {
    /// The run's consumption phase is over.
    Stopped,
    /// Left for good.
    Left,
    Crashed {
        restart_after: Option<Duration>,
    },
    Restarted,
}

/// How long a leaving member waits for its last commits and its leave to go out.
const LEAVE_WAIT: Duration = Duration::from_secs(2);

impl ConsumerProcess {
    /// Runs each incarnation in turn: a restart drops the consumer without a final commit, as a
    /// crash would, and a new process resumes from the committed offsets.
    pub async fn run<N: Net>(self) -> ProcessResult {
        if self.spec.kind.is_share() {
            return self.run_share::<N>().await;
        }
        if let Some(member) = self.spec.member_config(self.instance) {
            return self.run_group::<N>(member).await;
        }
        let names = self.spec.incarnation_names(self.instance);
        let assignment: Vec<TopicPartition> = self
            .spec
            .assignment(self.instance, self.partitions)
            .into_iter()
            .map(|p| TopicPartition::new(self.spec.topic.clone(), p))
            .collect();
        for (k, name) in names.iter().enumerate() {
            let stop_at = self
                .spec
                .restart_at_s
                .get(k)
                .map(|s| Duration::from_secs_f64(*s))
                .unwrap_or(self.stop_at);
            self.incarnation::<N>(name, &assignment, stop_at).await;
        }
        Ok(())
    }

    /// A group member's life: it starts at `start_at`, and each process ends when the run's
    /// consumption ends or a membership fault (or a `restart_at_s`, a crash with an immediate
    /// restart) ends it.
    async fn run_group<N: Net>(&self, member: MemberConfig) -> ProcessResult {
        let now = Duration::from_nanos(self.trace.borrow().now_ns());
        pay(self.start_at.saturating_sub(now)).await;
        let mut actions = self.member_actions();
        let mut restarts = 0;
        loop {
            let name = restarted_process_name(&self.spec.name, self.instance, restarts);
            let ending = self
                .group_incarnation::<N>(&name, member.clone(), &mut actions)
                .await;
            match ending {
                Ending::Stopped
                | Ending::Left
                | Ending::Crashed {
                    restart_after: None,
                } => return Ok(()),
                Ending::Crashed {
                    restart_after: Some(after),
                } => pay(after).await,
                Ending::Restarted => {}
            }
            restarts += 1;
        }
    }

    /// The membership faults of this instance in time order, a `restart_at_s` being a crash
    /// with an immediate restart.
    fn member_actions(&self) -> std::collections::VecDeque<(Duration, MemberAction)> {
        let mut actions: Vec<(Duration, MemberAction)> = self.actions.clone();
        for &t in &self.spec.restart_at_s {
            let crash = MemberAction::Crash {
                restart_after: Some(Duration::ZERO),
            };
            actions.push((Duration::from_secs_f64(t), crash));
        }
        actions.sort_by_key(|(at, _)| *at);
        actions.into()
    }

    /// One process of a group member (issue 8): the group assigns its partitions. It records
    /// `process` when a poll result's processing ends, commits per `commit`, and on a
    /// revocation commits what it processed of the revoked partitions and lets them go once
    /// those commits are answered (Kafka's `commitSync` in `onPartitionsRevoked`).
    async fn group_incarnation<N: Net>(
        &self,
        name: &str,
        member: MemberConfig,
        actions: &mut std::collections::VecDeque<(Duration, MemberAction)>,
    ) -> Ending {
        let spec = &self.spec;
        let stop_at = self.stop_at;
        let rng = Rng::new(self.seed ^ name_salt(name));
        let mut consumer = Consumer::new(spec.consumer_config(), self.cluster.brokers.clone(), rng);
        let mut io = ClientIo::<N>::new(name.to_string(), &self.cluster.brokers)
            .with_resources(self.resources.clone());
        let stop = deadline_at(&self.trace, io.now(), stop_at);
        consumer.subscribe(io.now(), member, name);
        let mut app = GroupApp {
            name,
            group: &spec.group,
            trace: &self.trace,
            commit: spec.commit,
            process_ms: spec.process_ms_of(self.instance),
            processing: None,
            to_commit: BTreeMap::new(),
            committing: BTreeMap::new(),
            revoking: None,
            busy_until: io.now(),
        };
        let commit_interval = Duration::from_millis(spec.commit_interval_ms.max(1));
        let mut next_commit = io.now() + commit_interval;
        loop {
            let now = io.now();
            self.report_delivery(name, &consumer);
            if now >= stop {
                return Ending::Stopped;
            }
            if now >= app.busy_until {
                app.finish_processing();
            }
            let due = actions
                .front()
                .filter(|(at, _)| deadline_at(&self.trace, now, *at) <= now)
                .map(|(_, a)| *a);
            if let Some(action) = due {
                let busy = now < app.busy_until;
                let ending = match action {
                    // A stall of the poll loop, between two poll results.
                    MemberAction::Pause(d) if !busy => {
                        actions.pop_front();
                        pay(d).await;
                        continue;
                    }
                    MemberAction::Pause(_) => None,
                    MemberAction::Crash { restart_after } => {
                        Some(Ending::Crashed { restart_after })
                    }
                    // A clean shutdown finishes the batch in hand first.
                    MemberAction::Leave if !busy => Some(Ending::Left),
                    MemberAction::Restart if !busy => Some(Ending::Restarted),
                    MemberAction::Leave | MemberAction::Restart => None,
                };
                if let Some(ending) = ending {
                    actions.pop_front();
                    if matches!(ending, Ending::Left | Ending::Restarted) {
                        app.finish_processing();
                        app.shut_down(&mut consumer, &mut io).await;
                    }
                    return ending;
                }
            }
            while now >= app.busy_until {
                app.finish_processing();
                let Some(event) = consumer.poll(now) else {
                    break;
                };
                app.handle(&mut consumer, now, event);
            }
            app.release_revoked(&mut consumer, now);
            if now >= next_commit {
                if now >= app.busy_until {
                    app.commit_all(&mut consumer, now);
                }
                next_commit = now + commit_interval;
            }
            let next_action = actions
                .front()
                .map(|(at, _)| deadline_at(&self.trace, now, *at));
            let wake = [
                Some(stop),
                Some(next_commit),
                Some(app.busy_until.max(now)),
                next_action,
            ]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .min()
            .unwrap_or(stop);
            io.step(&mut consumer, Some(wake)).await;
        }
    }

    async fn incarnation<N: Net>(
        &self,
        name: &str,
        assignment: &[TopicPartition],
        stop_at: Duration,
    ) {
        let spec = &self.spec;
        let config = spec.consumer_config();
        let rng = Rng::new(self.seed ^ name_salt(name));
        let mut consumer = Consumer::new(config, self.cluster.brokers.clone(), rng);
        let mut io = ClientIo::<N>::new(name.to_string(), &self.cluster.brokers)
            .with_resources(self.resources.clone());
        let stop = deadline_at(&self.trace, io.now(), stop_at);
        consumer.assign(io.now(), assignment.to_vec());
        let partitions = assignment
            .iter()
            .map(|tp| (tp.topic.clone(), tp.partition))
            .collect();
        record(&self.trace, name, EventType::Ok, Op::Assign { partitions });
        let commit_interval = Duration::from_millis(spec.commit_interval_ms.max(1));
        let mut next_commit = io.now() + commit_interval;
        let mut to_commit: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        let mut busy_until = io.now();
        loop {
            let now = io.now();
            self.report_delivery(name, &consumer);
            if now >= stop {
                return;
            }
            while now >= busy_until {
                let Some(event) = consumer.poll_event() else {
                    break;
                };
                match event {
                    ConsumerEvent::Records { partition, records } => {
                        let Some(last) = records.last().map(|r| r.offset) else {
                            continue;
                        };
                        if spec.commit == CommitMode::BeforeProcess {
                            self.commit(&mut consumer, now, name, &partition, last + 1);
                        }
                        let read = records
                            .iter()
                            .map(|r| (r.offset, String::from_utf8_lossy(&r.key).into_owned()))
                            .collect();
                        let op = Op::Poll {
                            topic: partition.topic.clone(),
                            partition: partition.partition,
                            records: read,
                        };
                        record(&self.trace, name, EventType::Ok, op);
                        let process_ms = spec.process_ms_of(self.instance);
                        busy_until = now + Duration::from_millis(process_ms * records.len() as u64);
                        if matches!(spec.commit, CommitMode::AfterProcess | CommitMode::Auto) {
                            to_commit.insert(partition, last + 1);
                        }
                    }
                    ConsumerEvent::Committed {
                        partition,
                        offset,
                        result,
                    } => {
                        let (kind, op) = commit_event(partition, offset, result);
                        record(&self.trace, name, kind, op);
                    }
                    ConsumerEvent::PositionReset {
                        partition,
                        from,
                        to,
                    } => {
                        let now_ns = self.trace.borrow().now_ns();
                        self.trace.borrow_mut().note(
                            now_ns,
                            format!("{name}: position of {partition} reset from {from} to {to}"),
                        );
                    }
                    ConsumerEvent::Assigned { .. }
                    | ConsumerEvent::Offsets { .. }
                    | ConsumerEvent::GroupAssigned { .. }
                    | ConsumerEvent::Revoked { .. }
                    | ConsumerEvent::Lost { .. } => {}
                }
            }
            if now >= next_commit {
                // Offsets are committed only once their records were processed (claim C4);
                // auto commit commits what poll returned, processed or not.
                if now >= busy_until || spec.commit == CommitMode::Auto {
                    for (tp, offset) in std::mem::take(&mut to_commit) {
                        self.commit(&mut consumer, now, name, &tp, offset);
                    }
                }
                next_commit = now + commit_interval;
            }
            let wake = [stop, next_commit, busy_until.max(now)]
                .into_iter()
                .filter(|t| *t > now)
                .min()
                .unwrap_or(stop);
            io.step(&mut consumer, Some(wake)).await;
        }
    }

    /// Hands the consumer's delivery counters to the trace, for the run's metrics.
    fn report_delivery(&self, name: &str, consumer: &Consumer) {
        let mut trace = self.trace.borrow_mut();
        let in_workload = Duration::from_nanos(trace.now_ns()) < self.workload_end;
        trace.report_delivery(name, consumer.delivery_stats(), in_workload);
    }

    fn commit(
        &self,
        consumer: &mut Consumer,
        now: Instant,
        name: &str,
        tp: &TopicPartition,
        offset: u64,
    ) {
        consumer.commit(now, tp.clone(), offset);
        let op = Op::Commit {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset,
            error: None,
        };
        record(&self.trace, name, EventType::Invoke, op);
    }
}

/// The poll result a group member is processing, with the generation it was polled in.
struct Processing {
    partition: TopicPartition,
    records: Vec<(u64, String)>,
    generation: Option<u32>,
}

/// A group member's application between polls: the batch it is processing, the offsets it
/// may commit, and a revocation waiting for its commits.
struct GroupApp<'a> {
    name: &'a str,
    group: &'a str,
    trace: &'a SharedTrace,
    commit: CommitMode,
    process_ms: u64,
    processing: Option<Processing>,
    /// The next offset to commit per partition: processed (after_process) or returned (auto).
    to_commit: BTreeMap<TopicPartition, u64>,
    /// Commits sent and not yet answered, per partition.
    committing: BTreeMap<TopicPartition, u32>,
    /// Revoked partitions whose commits must be answered before the member lets them go.
    revoking: Option<BTreeSet<TopicPartition>>,
    busy_until: Instant,
}

impl GroupApp<'_> {
    fn record(&self, kind: EventType, op: Op, generation: Option<u32>) {
        record_in_group(self.trace, self.name, kind, op, self.group, generation);
    }

    /// The batch in processing is done: its `process` line, and its offset is committable
    /// under `after_process`.
    fn finish_processing(&mut self) {
        let Some(Processing {
            partition: tp,
            records,
            generation,
        }) = self.processing.take()
        else {
            return;
        };
        if let (CommitMode::AfterProcess, Some((last, _))) = (self.commit, records.last()) {
            self.to_commit.insert(tp.clone(), last + 1);
        }
        let op = Op::Process {
            topic: tp.topic,
            partition: tp.partition,
            records,
        };
        self.record(EventType::Ok, op, generation);
    }

    fn handle(&mut self, consumer: &mut Consumer, now: Instant, event: ConsumerEvent) {
        let generation = consumer.member().map(|m| m.generation());
        match event {
            ConsumerEvent::Records { partition, records } => {
                self.polled(consumer, now, partition, records, generation)
            }
            ConsumerEvent::Committed {
                partition,
                offset,
                result,
            } => {
                if let Some(n) = self.committing.get_mut(&partition) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.committing.remove(&partition);
                    }
                }
                let (kind, op) = commit_event(partition, offset, result);
                self.record(kind, op, generation);
            }
            ConsumerEvent::GroupAssigned {
                partitions,
                generation,
            } => {
                let op = Op::Assign {
                    partitions: partition_list(&partitions),
                };
                self.record(EventType::Ok, op, Some(generation));
            }
            ConsumerEvent::Revoked {
                partitions,
                generation,
            } => {
                for tp in &partitions {
                    if let Some(offset) = self.to_commit.remove(tp) {
                        self.commit(consumer, now, tp, offset);
                    }
                }
                let op = Op::Revoke {
                    partitions: partition_list(&partitions),
                };
                self.record(EventType::Ok, op, Some(generation));
                self.revoking = Some(partitions);
            }
            ConsumerEvent::Lost {
                partitions,
                generation,
            } => {
                // Too late to commit: the next owner reads on from the last commit.
                self.to_commit.retain(|tp, _| !partitions.contains(tp));
                let op = Op::Revoke {
                    partitions: partition_list(&partitions),
                };
                self.record(EventType::Ok, op, Some(generation));
            }
            ConsumerEvent::PositionReset {
                partition,
                from,
                to,
            } => {
                let now_ns = self.trace.borrow().now_ns();
                self.trace.borrow_mut().note(
                    now_ns,
                    format!(
                        "{}: position of {partition} reset from {from} to {to}",
                        self.name
                    ),
                );
            }
            ConsumerEvent::Assigned { .. } | ConsumerEvent::Offsets { .. } => {}
        }
    }

    fn polled(
        &mut self,
        consumer: &mut Consumer,
        now: Instant,
        partition: TopicPartition,
        records: Vec<fathom_queue::log::batch::Record>,
        generation: Option<u32>,
    ) {
        let Some(last) = records.last().map(|r| r.offset) else {
            return;
        };
        if self.commit == CommitMode::BeforeProcess {
            self.commit(consumer, now, &partition, last + 1);
        }
        if self.commit == CommitMode::Auto {
            self.to_commit.insert(partition.clone(), last + 1);
        }
        let read: Vec<(u64, String)> = records
            .iter()
            .map(|r| (r.offset, String::from_utf8_lossy(&r.key).into_owned()))
            .collect();
        let op = Op::Poll {
            topic: partition.topic.clone(),
            partition: partition.partition,
            records: read.clone(),
        };
        self.record(EventType::Ok, op, generation);
        self.busy_until = now + Duration::from_millis(self.process_ms * records.len() as u64);
        self.processing = Some(Processing {
            partition,
            records: read,
            generation,
        });
    }

    /// Every committable offset (`after_process`: processed; `auto`: returned by poll).
    fn commit_all(&mut self, consumer: &mut Consumer, now: Instant) {
        for (tp, offset) in std::mem::take(&mut self.to_commit) {
            self.commit(consumer, now, &tp, offset);
        }
    }

    fn commit(&mut self, consumer: &mut Consumer, now: Instant, tp: &TopicPartition, offset: u64) {
        consumer.commit(now, tp.clone(), offset);
        *self.committing.entry(tp.clone()).or_default() += 1;
        let op = Op::Commit {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset,
            error: None,
        };
        let generation = consumer.member().map(|m| m.generation());
        self.record(EventType::Invoke, op, generation);
    }

    /// A clean shutdown: commit what was processed, wait (bounded) for the answers, then close
    /// the consumer so a dynamic member's leave goes out.
    async fn shut_down<N: Net>(&mut self, consumer: &mut Consumer, io: &mut ClientIo<N>) {
        let now = io.now();
        self.commit_all(consumer, now);
        let until = now + LEAVE_WAIT;
        while !self.committing.is_empty() && io.now() < until {
            io.step(consumer, Some(until)).await;
            while let Some(event) = consumer.poll_event() {
                if let ConsumerEvent::Committed { .. } = event {
                    let now = io.now();
                    self.handle(consumer, now, event);
                }
            }
        }
        consumer.close(io.now());
        let until = io.now() + LEAVE_WAIT;
        while consumer.member().is_some_and(|m| m.leaving()) && io.now() < until {
            io.step(consumer, Some(until)).await;
        }
    }

    /// Lets revoked partitions go once their commits are answered.
    fn release_revoked(&mut self, consumer: &mut Consumer, now: Instant) {
        let done = self
            .revoking
            .as_ref()
            .is_some_and(|ps| ps.iter().all(|p| !self.committing.contains_key(p)));
        if done {
            self.revoking = None;
            consumer.revoked(now);
        }
    }
}

/// Reads every partition from offset 0 to its high watermark after the cluster settled.
pub struct FinalRead {
    /// The process name in the history; [`FINAL_READ_PROCESS`] in simulation.
    pub process: String,
    pub partitions: Vec<TopicPartition>,
    pub cluster: ClusterConfig,
    pub seed: u64,
    pub trace: SharedTrace,
    /// Give up here (simulated time since the start of the run).
    pub give_up_at: Duration,
    /// Set to the partitions not read to their end if the final read gave up.
    pub incomplete: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
}

impl FinalRead {
    pub async fn run<N: Net>(self) -> ProcessResult {
        let name = self.process.as_str();
        let config = ConsumerConfig {
            group: FINAL_READ_GROUP.to_string(),
            max_wait_ms: 100,
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::new(
            config,
            self.cluster.brokers.clone(),
            Rng::new(self.seed ^ name_salt(name)),
        );
        let mut io = ClientIo::<N>::new(name, &self.cluster.brokers);
        let give_up = deadline_at(&self.trace, io.now(), self.give_up_at);
        let now = io.now();
        consumer.assign(now, self.partitions.clone());
        for tp in &self.partitions {
            consumer.list_offsets(now, tp.clone());
        }
        let partitions = self
            .partitions
            .iter()
            .map(|tp| (tp.topic.clone(), tp.partition))
            .collect();
        record(&self.trace, name, EventType::Ok, Op::Assign { partitions });
        let mut targets: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        loop {
            while let Some(event) = consumer.poll_event() {
                match event {
                    ConsumerEvent::Offsets {
                        partition,
                        high_watermark,
                        ..
                    } => {
                        targets.insert(partition, high_watermark);
                    }
                    ConsumerEvent::Records { partition, records } => {
                        let read = records
                            .iter()
                            .map(|r| (r.offset, String::from_utf8_lossy(&r.key).into_owned()))
                            .collect();
                        let op = Op::Poll {
                            topic: partition.topic.clone(),
                            partition: partition.partition,
                            records: read,
                        };
                        record(&self.trace, name, EventType::Ok, op);
                    }
                    _ => {}
                }
            }
            let unfinished: Vec<String> = self
                .partitions
                .iter()
                .filter(|tp| match targets.get(tp) {
                    Some(&hw) => consumer.position(tp).unwrap_or(0) < hw,
                    None => true,
                })
                .map(|tp| tp.to_string())
                .collect();
            if unfinished.is_empty() {
                return Ok(());
            }
            if io.now() >= give_up {
                *self.incomplete.borrow_mut() = unfinished;
                return Ok(());
            }
            io.step(&mut consumer, Some(give_up)).await;
        }
    }
}

/// Separates the random streams of differently named processes.
pub fn name_salt(name: &str) -> u64 {
    let mut h = crate::trace::TraceHash::default();
    h.update(name.as_bytes());
    h.value()
}

/// The history line of a commit's outcome: `ok`, or `fail` with the error.
fn commit_event(
    partition: TopicPartition,
    offset: u64,
    result: Result<(), String>,
) -> (EventType, Op) {
    let (kind, error) = match result {
        Ok(()) => (EventType::Ok, None),
        Err(e) => (EventType::Fail, Some(e)),
    };
    let op = Op::Commit {
        topic: partition.topic,
        partition: partition.partition,
        offset,
        error,
    };
    (kind, op)
}

#[cfg(test)]
mod tests {
    use super::is_hot;

    #[test]
    fn a_hot_key_share_sends_exactly_that_share_spread_evenly() {
        let hot = |share: f64, n: u64| (0..n).filter(|&i| is_hot(i, share)).count();
        assert_eq!(hot(0.0, 1000), 0, "off: no message is hot");
        assert_eq!(hot(1.0, 1000), 1000);
        assert_eq!(hot(0.5, 1000), 500);
        assert_eq!(hot(0.25, 1000), 250);
        // Every other message, not the first half then none.
        let first: Vec<bool> = (0..4).map(|i| is_hot(i, 0.5)).collect();
        assert_eq!(first, [false, true, false, true]);
    }
}
