//! The client processes of a run: producers, consumers and the final reader. Each drives a core
//! client state machine through the shared driver and records every operation in the history.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use fathom_driver::{pay, ClientIo, Net, SharedResources};
use fathom_history::{EventType, Op};
use fathom_queue::client::{
    Consumer, ConsumerConfig, ConsumerEvent, Producer, ProducerEvent, SendError,
};
use fathom_queue::config::ClusterConfig;
use fathom_queue::ids::TopicPartition;
use fathom_queue::rng::Rng;
use fathom_queue::time::Instant;

use fathom_queue::client::producer::UNKNOWN_PARTITION;

use crate::spec::{CommitMode, ConsumerSpec, Partitioner, ProducerMode, ProducerSpec};
use crate::trace::{AttemptRecord, SharedTrace};

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
        let value = Bytes::from(vec![b'x'; spec.message_bytes as usize]);
        let interval = Duration::from_secs_f64(1.0 / spec.rate_per_s);
        let stop = deadline_at(&self.trace, io.now(), self.stop_at);
        // Every send resolves within the delivery timeout plus one request timeout.
        let give_up = stop
            + Duration::from_millis(spec.delivery_timeout_ms + spec.request_timeout_ms)
            + Duration::from_secs(1);
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
            let may_send = sent < spec.messages
                && now < stop
                && (spec.mode != ProducerMode::Sync || outstanding == 0);
            if may_send && now >= next_send {
                let id = format!("{}-{sent}", self.name);
                let explicit = self.explicit_partition(&mut round_robin, &mut rng);
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
            let done_sending = sent >= spec.messages || now >= stop;
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
}

impl ConsumerProcess {
    /// Runs each incarnation in turn: a restart drops the consumer without a final commit, as a
    /// crash would, and a new process resumes from the committed offsets.
    pub async fn run<N: Net>(self) -> ProcessResult {
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
                        busy_until =
                            now + Duration::from_millis(spec.process_ms * records.len() as u64);
                        if spec.commit == CommitMode::AfterProcess {
                            to_commit.insert(partition, last + 1);
                        }
                    }
                    ConsumerEvent::Committed {
                        partition,
                        offset,
                        result,
                    } => {
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
                // Offsets are committed only once their records were processed (claim C4).
                if now >= busy_until {
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
