//! Every message's life in one run, as the history tells it: indexed once, then read by every
//! figure of judging (the throughput window, latencies, the breakdown, delivery, group figures).
//!
//! Before this index each of those passes rebuilt its own maps keyed by message-id strings, and
//! two of them disagreed on what a delivery is. Here a delivery is defined once: a record in a
//! consumer's `poll` or a share member's `acquire`, not the final read.

use fathom_history::{Event, EventType, IdMap, Op};
use fathom_workload::clients::FINAL_READ_PROCESS;

/// A process's place in [`Messages::processes`].
pub type ProcessIx = usize;

/// What the history says about one message id.
#[derive(Debug, Clone)]
pub struct Life<'a> {
    pub id: &'a str,
    /// Its send's invoke (the last one, should an id be invoked twice).
    pub invoked_ns: Option<u64>,
    /// The first completion (`ok`, `fail` or `info`) after the invoke.
    pub outcome_ns: Option<u64>,
    /// Where and when it was acknowledged (the last `ok`).
    pub acked: Option<Acked<'a>>,
    /// Its first delivery to any consumer process.
    pub delivered_ns: Option<u64>,
    /// Each consumer process it was delivered to, with the first time, in delivery order.
    pub deliveries: Vec<(ProcessIx, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: u64,
    pub at_ns: u64,
}

/// The index: every message id named in a send, a poll or an acquisition.
#[derive(Debug, Default)]
pub struct Messages<'a> {
    ix: IdMap<&'a str, usize>,
    /// In order of first mention in the history.
    lives: Vec<Life<'a>>,
    /// Consumer processes, in order of first delivery.
    processes: Vec<&'a str>,
}

impl<'a> Messages<'a> {
    /// One pass over `events`, which are in time order.
    pub fn index(events: &'a [Event]) -> Messages<'a> {
        let mut m = Messages::default();
        for e in events {
            match (&e.op, e.kind) {
                (Op::Send { id, .. }, EventType::Invoke) => {
                    let life = m.life_mut(id);
                    life.invoked_ns = Some(e.time_ns);
                    life.outcome_ns = None;
                }
                (
                    Op::Send {
                        id,
                        topic,
                        partition,
                        offset,
                        ..
                    },
                    kind,
                ) => m.on_outcome(id, kind, (topic, *partition, *offset), e.time_ns),
                (Op::Poll { records, .. }, EventType::Ok) if e.process != FINAL_READ_PROCESS => {
                    m.on_delivery(records, &e.process, e.time_ns);
                }
                (Op::Acquire { records, .. }, EventType::Ok) => {
                    m.on_delivery(records, &e.process, e.time_ns);
                }
                _ => {}
            }
        }
        m
    }

    fn on_outcome(
        &mut self,
        id: &'a str,
        kind: EventType,
        (topic, partition, offset): (&'a str, u32, Option<u64>),
        t: u64,
    ) {
        let life = self.life_mut(id);
        if life.invoked_ns.is_some() && life.outcome_ns.is_none() {
            life.outcome_ns = Some(t);
        }
        if let (EventType::Ok, Some(offset)) = (kind, offset) {
            life.acked = Some(Acked {
                topic,
                partition,
                offset,
                at_ns: t,
            });
        }
    }

    fn on_delivery(&mut self, records: &'a [(u64, String)], process: &'a str, t: u64) {
        let p = match self.processes.iter().position(|q| *q == process) {
            Some(p) => p,
            None => {
                self.processes.push(process);
                self.processes.len() - 1
            }
        };
        for (_, id) in records {
            let life = self.life_mut(id);
            life.delivered_ns.get_or_insert(t);
            if !life.deliveries.iter().any(|&(q, _)| q == p) {
                life.deliveries.push((p, t));
            }
        }
    }

    fn life_mut(&mut self, id: &'a str) -> &mut Life<'a> {
        let next = self.lives.len();
        let i = *self.ix.entry(id).or_insert(next);
        if i == next {
            self.lives.push(Life {
                id,
                invoked_ns: None,
                outcome_ns: None,
                acked: None,
                delivered_ns: None,
                deliveries: Vec::new(),
            });
        }
        &mut self.lives[i]
    }

    /// Every message, in order of first mention.
    pub fn lives(&self) -> &[Life<'a>] {
        &self.lives
    }

    /// The consumer processes that got anything, each at its [`ProcessIx`].
    pub fn processes(&self) -> &[&'a str] {
        &self.processes
    }

    pub fn get(&self, id: &str) -> Option<&Life<'a>> {
        self.ix.get(id).map(|&i| &self.lives[i])
    }
}

impl Life<'_> {
    /// The first delivery to a process `within` accepts.
    pub fn delivered_to(&self, within: impl Fn(ProcessIx) -> bool) -> Option<u64> {
        self.deliveries
            .iter()
            .find(|&&(p, _)| within(p))
            .map(|&(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(t: u64, kind: EventType, id: &str, offset: Option<u64>) -> Event {
        let op = Op::Send {
            id: id.into(),
            topic: "t".into(),
            partition: 0,
            offset,
            error: None,
        };
        Event::new(t, "p-0", kind, op)
    }

    fn poll(t: u64, who: &str, ids: &[&str]) -> Event {
        let records = ids.iter().zip(0..).map(|(id, o)| (o, id.to_string()));
        let op = Op::Poll {
            topic: "t".into(),
            partition: 0,
            records: records.collect(),
        };
        Event::new(t, who, EventType::Ok, op)
    }

    #[test]
    fn a_messages_life_is_its_invoke_first_outcome_ack_and_first_deliveries() {
        let events = vec![
            send(1, EventType::Invoke, "a", None),
            send(2, EventType::Invoke, "b", None),
            send(3, EventType::Info, "a", None),
            send(4, EventType::Ok, "a", Some(7)),
            poll(5, "c-0", &["a"]),
            poll(6, FINAL_READ_PROCESS, &["b"]),
            poll(7, "d-0", &["a"]),
            poll(8, "c-0", &["a"]),
        ];
        let m = Messages::index(&events);
        let a = m.get("a").expect("indexed");
        assert_eq!((a.invoked_ns, a.outcome_ns), (Some(1), Some(3)));
        assert_eq!(a.acked.map(|k| (k.offset, k.at_ns)), Some((7, 4)));
        assert_eq!(a.delivered_ns, Some(5));
        assert_eq!(a.deliveries, vec![(0, 5), (1, 7)]);
        assert_eq!(a.delivered_to(|p| m.processes()[p] == "d-0"), Some(7));
        let b = m.get("b").expect("indexed");
        assert_eq!(
            (b.outcome_ns, b.delivered_ns),
            (None, None),
            "the final read is no delivery"
        );
        assert_eq!(
            m.lives().iter().map(|l| l.id).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn a_share_members_acquisition_is_a_delivery() {
        let op = Op::Acquire {
            topic: "t".into(),
            partition: 0,
            records: vec![(0, "a".into())],
            requested_ns: None,
        };
        let events = vec![
            send(1, EventType::Invoke, "a", None),
            Event::new(9, "s-0", EventType::Ok, op),
        ];
        assert_eq!(
            Messages::index(&events)
                .get("a")
                .and_then(|l| l.delivered_ns),
            Some(9)
        );
    }
}
