//! A share-group member's process (issue 9, claim C3): it takes the records its
//! [`ShareConsumer`] acquired one at a time, spends `process_ms` on each, and acknowledges it:
//! accept, or for a poison message release (a failed attempt) until its last delivery attempt
//! and then reject. It records `acquire` and `acknowledge` lines stamped with its share group.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use fathom_driver::{pay, ClientIo, Net};
use fathom_history::shares::DEAD_LETTER_SUFFIX;
use fathom_history::{AckVerdict, Event, EventType, Op};
use fathom_queue::client::producer::UNKNOWN_PARTITION;
use fathom_queue::client::{
    Producer, ProducerConfig, ProducerEvent, ShareConsumer, ShareConsumerEvent, ShareRecord,
};
use fathom_queue::ids::TopicPartition;
use fathom_queue::protocol::Acks;
use fathom_queue::rng::Rng;
use fathom_queue::share::AckKind;
use fathom_queue::time::Instant;

use super::{deadline_at, name_salt, send_op, ConsumerProcess, ProcessResult, LEAVE_WAIT};
use crate::spec::{restarted_process_name, MemberAction};

/// How one process of a share member ended.
enum ShareEnding {
    Stopped,
    Crashed { restart_after: Option<Duration> },
}

/// The member's application: records waiting to be processed, the one in hand, and the id of
/// every record it holds (acknowledgement answers carry only offsets).
struct ShareApp<'a> {
    process: &'a ConsumerProcess,
    name: &'a str,
    queue: VecDeque<(TopicPartition, ShareRecord)>,
    in_hand: Option<(TopicPartition, ShareRecord)>,
    busy_until: Instant,
    ids: BTreeMap<(TopicPartition, u64), String>,
    /// The verdict asked for each acknowledgement in flight, for its refusal's line.
    asked: BTreeMap<(TopicPartition, u64), AckKind>,
    /// Records to copy to the dead-letter topic before they are rejected.
    dead_letters: VecDeque<(TopicPartition, ShareRecord)>,
}

/// The member's producer for its dead-letter topic, made at the first dead letter.
struct DeadLetterProducer<N: Net> {
    producer: Producer,
    io: ClientIo<N>,
}

impl ConsumerProcess {
    /// A share member's life: processes one after another, each ended by the run's end or a
    /// crash (a `consumer_crash` fault, or a `restart_at_s`).
    pub(super) async fn run_share<N: Net>(&self) -> ProcessResult {
        let now = Duration::from_nanos(self.trace.borrow().now_ns());
        pay(self.start_at.saturating_sub(now)).await;
        let mut actions = self.member_actions();
        for restarts in 0.. {
            let name = restarted_process_name(&self.spec.name, self.instance, restarts);
            match self.share_incarnation::<N>(&name, &mut actions).await {
                ShareEnding::Stopped
                | ShareEnding::Crashed {
                    restart_after: None,
                } => break,
                ShareEnding::Crashed {
                    restart_after: Some(after),
                } => pay(after).await,
            }
        }
        Ok(())
    }

    async fn share_incarnation<N: Net>(
        &self,
        name: &str,
        actions: &mut VecDeque<(Duration, MemberAction)>,
    ) -> ShareEnding {
        let rng = Rng::new(self.seed ^ name_salt(name));
        let config = self.spec.share_config(name);
        let mut consumer = ShareConsumer::new(config, self.cluster.brokers.clone(), rng);
        let mut io = ClientIo::<N>::new(name.to_string(), &self.cluster.brokers)
            .with_resources(self.resources.clone());
        let stop = deadline_at(&self.trace, io.now(), self.stop_at);
        let mut app = ShareApp {
            process: self,
            name,
            queue: VecDeque::new(),
            in_hand: None,
            busy_until: io.now(),
            ids: BTreeMap::new(),
            asked: BTreeMap::new(),
            dead_letters: VecDeque::new(),
        };
        let mut dlq: Option<DeadLetterProducer<N>> = None;
        loop {
            let now = io.now();
            if now >= stop {
                return ShareEnding::Stopped;
            }
            if let Some(ending) = self.due_action(actions, now).await {
                if matches!(ending, ShareEnding::Stopped) {
                    app.release_all(&mut consumer);
                    let until = io.now() + LEAVE_WAIT;
                    io.drain(&mut consumer, until).await;
                }
                return ending;
            }
            while let Some(event) = consumer.poll_event() {
                app.handle(io.now(), event);
            }
            app.work(&mut consumer, now);
            while let Some((tp, r)) = app.dead_letters.pop_front() {
                let copied = self.dead_letter::<N>(name, &mut dlq, &r).await;
                let kind = if copied {
                    AckKind::Reject
                } else {
                    AckKind::Release
                };
                app.acknowledge(&mut consumer, &tp, &r, kind);
            }
            let next_action = actions
                .front()
                .map(|(at, _)| deadline_at(&self.trace, now, *at));
            let wake = [Some(stop), Some(app.busy_until), next_action]
                .into_iter()
                .flatten()
                .filter(|t| *t > now)
                .min()
                .unwrap_or(stop);
            io.step(&mut consumer, Some(wake)).await;
        }
    }

    /// Copies `r` to the dead-letter topic with acks=all as `{id}@dlq` ([`DEAD_LETTER_SUFFIX`]):
    /// a send in the history like any other, read back by the final read. Waits at most half
    /// the record's lock; returns whether the copy was acknowledged.
    async fn dead_letter<N: Net>(
        &self,
        name: &str,
        dlq: &mut Option<DeadLetterProducer<N>>,
        r: &ShareRecord,
    ) -> bool {
        let Some(topic) = &self.spec.dead_letter_topic else {
            return false;
        };
        let d = dlq.get_or_insert_with(|| {
            let config = ProducerConfig {
                acks: Acks::All,
                linger_ms: 0,
                ..ProducerConfig::default()
            };
            let rng = Rng::new(self.seed ^ name_salt(name) ^ 0xD1_0D1D);
            DeadLetterProducer {
                producer: Producer::new(config, self.cluster.brokers.clone(), rng),
                io: ClientIo::<N>::new(format!("{name}-dlq"), &self.cluster.brokers)
                    .with_resources(self.resources.clone()),
            }
        });
        let id = format!(
            "{}{DEAD_LETTER_SUFFIX}",
            String::from_utf8_lossy(&r.record.key)
        );
        let now = d.io.now();
        let sent = d.producer.send_to_topic(
            now,
            topic,
            Some(&r.record.key),
            id.clone(),
            r.record.value.clone(),
        );
        // Before the producer knows the topic's partitions the record waits unpartitioned; its
        // delivery names the partition (as the producer processes record it).
        let tp = match sent {
            Ok(tp) => tp.unwrap_or_else(|| TopicPartition::new(topic.clone(), UNKNOWN_PARTITION)),
            Err(_) => return false,
        };
        self.record_dlq(name, EventType::Invoke, send_op(&tp, &id));
        let wait = Duration::from_millis(u64::from(self.spec.share.acquisition_lock_ms) / 2);
        let give_up = now + wait;
        while d.io.now() < give_up {
            while let Some(event) = d.producer.poll_event() {
                if let ProducerEvent::Delivered {
                    id: done,
                    partition,
                    result,
                } = event
                {
                    if done != id {
                        continue;
                    }
                    let mut op = send_op(&partition, &id);
                    let (kind, ok) = match result {
                        Ok(offset) => {
                            if let Op::Send { offset: o, .. } = &mut op {
                                *o = Some(offset);
                            }
                            (EventType::Ok, true)
                        }
                        Err(f) => {
                            if let Op::Send { error, .. } = &mut op {
                                *error = Some(f.error);
                            }
                            (
                                if f.definite {
                                    EventType::Fail
                                } else {
                                    EventType::Info
                                },
                                false,
                            )
                        }
                    };
                    self.record_dlq(name, kind, op);
                    return ok;
                }
            }
            d.io.step(&mut d.producer, Some(give_up)).await;
        }
        let mut op = send_op(&tp, &id);
        if let Op::Send { error, .. } = &mut op {
            *error = Some("no answer within half the lock".into());
        }
        self.record_dlq(name, EventType::Info, op);
        false
    }

    fn record_dlq(&self, name: &str, kind: EventType, op: Op) {
        let now_ns = self.trace.borrow().now_ns();
        let event = Event::new(now_ns, name, kind, op);
        self.trace.borrow_mut().record_event(event);
    }

    /// The membership fault due now, if any: a crash ends the process at once (its locks
    /// expire at the leader), a pause stalls it, a leave or restart stops it cleanly.
    async fn due_action(
        &self,
        actions: &mut VecDeque<(Duration, MemberAction)>,
        now: Instant,
    ) -> Option<ShareEnding> {
        let due = actions
            .front()
            .filter(|(at, _)| deadline_at(&self.trace, now, *at) <= now)
            .map(|(_, a)| *a)?;
        actions.pop_front();
        match due {
            MemberAction::Crash { restart_after } => Some(ShareEnding::Crashed { restart_after }),
            MemberAction::Pause(d) => {
                pay(d).await;
                None
            }
            MemberAction::Leave => Some(ShareEnding::Stopped),
            MemberAction::Restart => Some(ShareEnding::Crashed {
                restart_after: Some(Duration::ZERO),
            }),
        }
    }
}

impl ShareApp<'_> {
    fn record(&self, kind: EventType, op: Op) {
        let trace = &self.process.trace;
        let now_ns = trace.borrow().now_ns();
        let event =
            Event::new(now_ns, self.name, kind, op).in_group(&self.process.spec.group, None);
        trace.borrow_mut().record_event(event);
    }

    /// `now` is the consumer's clock, which the client's times are on.
    fn handle(&mut self, now: Instant, event: ShareConsumerEvent) {
        match event {
            ShareConsumerEvent::Records {
                partition,
                records,
                requested_at,
            } => {
                let listed = records
                    .iter()
                    .map(|r| {
                        (
                            r.record.offset,
                            String::from_utf8_lossy(&r.record.key).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>();
                for (offset, id) in &listed {
                    self.ids.insert((partition.clone(), *offset), id.clone());
                }
                let waited = now.saturating_since(requested_at);
                let now_ns = self.process.trace.borrow().now_ns();
                let requested_ns = now_ns.saturating_sub(waited.as_nanos() as u64);
                self.record(
                    EventType::Ok,
                    Op::Acquire {
                        topic: partition.topic.clone(),
                        partition: partition.partition,
                        records: listed,
                        requested_ns: Some(requested_ns),
                    },
                );
                self.queue
                    .extend(records.into_iter().map(|r| (partition.clone(), r)));
            }
            ShareConsumerEvent::Acknowledged {
                partition,
                acks,
                refused,
            } => {
                self.outcomes(&partition, &acks, EventType::Ok, None);
                for (offset, error) in refused {
                    let asked = self.asked.get(&(partition.clone(), offset)).copied();
                    let kind = asked.unwrap_or(AckKind::Accept);
                    self.outcome(
                        &partition,
                        kind,
                        &[offset],
                        EventType::Fail,
                        Some(error.to_string()),
                    );
                }
            }
            ShareConsumerEvent::AcknowledgeUnknown {
                partition,
                acks,
                error,
            } => {
                self.outcomes(&partition, &acks, EventType::Info, Some(error));
            }
        }
    }

    /// Records the outcome of `acks`, one line per verdict.
    fn outcomes(
        &mut self,
        tp: &TopicPartition,
        acks: &[(u64, AckKind)],
        event: EventType,
        error: Option<String>,
    ) {
        for kind in AckKind::ALL {
            let done: Vec<u64> = acks
                .iter()
                .filter(|(_, k)| *k == kind)
                .map(|(o, _)| *o)
                .collect();
            self.outcome(tp, kind, &done, event, error.clone());
        }
    }

    /// Records the outcome of acknowledgements of `offsets` and forgets their ids.
    fn outcome(
        &mut self,
        tp: &TopicPartition,
        kind: AckKind,
        offsets: &[u64],
        event: EventType,
        error: Option<String>,
    ) {
        if offsets.is_empty() {
            return;
        }
        let records = offsets
            .iter()
            .map(|o| {
                let key = (tp.clone(), *o);
                self.asked.remove(&key);
                (*o, self.ids.remove(&key).unwrap_or_default())
            })
            .collect();
        let op = Op::Acknowledge {
            topic: tp.topic.clone(),
            partition: tp.partition,
            ack: verdict(kind),
            records,
            error,
        };
        self.record(event, op);
    }

    /// Finishes the record in hand when its processing time is over, and takes the next.
    fn work(&mut self, consumer: &mut ShareConsumer, now: Instant) {
        let process_ms = self.process.spec.process_ms_of(self.process.instance);
        while now >= self.busy_until {
            if let Some((tp, r)) = self.in_hand.take() {
                let kind = self.verdict_on(&r);
                let dead_letter = self.process.spec.dead_letter_topic.is_some();
                match kind {
                    AckKind::Reject if dead_letter => self.dead_letters.push_back((tp, r)),
                    _ => self.acknowledge(consumer, &tp, &r, kind),
                }
            }
            let Some(next) = self.queue.pop_front() else {
                break;
            };
            self.in_hand = Some(next);
            self.busy_until = now + Duration::from_millis(process_ms);
        }
    }

    fn verdict_on(&self, r: &ShareRecord) -> AckKind {
        let id = String::from_utf8_lossy(&r.record.key);
        let spec = &self.process.spec;
        // Past the group's attempts: a delivery for the dead-letter topic only (the application
        // does not get it again), whatever ended the last attempt.
        if spec.share.is_dead_letter_delivery(r.delivery_count) {
            return AckKind::Reject;
        }
        if !spec.poison_ids.iter().any(|p| *p == id) {
            return AckKind::Accept;
        }
        match r.delivery_count >= spec.share.delivery_attempts_max {
            true => AckKind::Reject,
            false => AckKind::Release,
        }
    }

    fn acknowledge(
        &mut self,
        consumer: &mut ShareConsumer,
        tp: &TopicPartition,
        r: &ShareRecord,
        kind: AckKind,
    ) {
        consumer.acknowledge(tp, r.record.offset, kind);
        self.asked.insert((tp.clone(), r.record.offset), kind);
        let id = String::from_utf8_lossy(&r.record.key).into_owned();
        let op = Op::Acknowledge {
            topic: tp.topic.clone(),
            partition: tp.partition,
            ack: verdict(kind),
            records: vec![(r.record.offset, id)],
            error: None,
        };
        self.record(EventType::Invoke, op);
    }

    /// A clean stop: what is not processed goes back to the group at once.
    fn release_all(&mut self, consumer: &mut ShareConsumer) {
        let held: Vec<_> = self
            .in_hand
            .take()
            .into_iter()
            .chain(self.queue.drain(..))
            .collect();
        for (tp, r) in held {
            self.acknowledge(consumer, &tp, &r, AckKind::Release);
        }
    }
}

fn verdict(kind: AckKind) -> AckVerdict {
    match kind {
        AckKind::Accept => AckVerdict::Accept,
        AckKind::Release => AckVerdict::Release,
        AckKind::Reject => AckVerdict::Reject,
    }
}
