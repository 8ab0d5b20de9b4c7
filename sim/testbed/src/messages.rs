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

/// An event's place in the history (time order; events of one nanosecond keep their order).
pub type At = usize;

/// What the history says about one message id.
#[derive(Debug, Clone)]
pub struct Life<'a> {
    pub id: &'a str,
    /// Every invoke of its send, in history order: `(place, time)`. Almost always one; a share
    /// group's dead-letter copy is sent again after an unknown outcome.
    invokes: Vec<(At, u64)>,
    /// Where and when it was acknowledged: the last `ok` with an offset.
    pub acked: Option<Acked<'a>>,
    /// Its first delivery to each consumer process, in delivery order.
    deliveries: Vec<Delivery>,
    /// The last invoke has had no outcome yet.
    awaiting_outcome: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: u64,
    pub at_ns: u64,
}

/// A message's first delivery to one consumer process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub process: ProcessIx,
    pub at: At,
    pub ns: u64,
}

/// The index: every message id named in a send, in an `ok` poll by a consumer (not the final
/// read), or in an `ok` acquisition.
#[derive(Debug, Default)]
pub struct Messages<'a> {
    ix: IdMap<&'a str, usize>,
    /// In order of first mention in the history.
    lives: Vec<Life<'a>>,
    /// Consumer processes, in order of their first `ok` poll or acquisition (empty or not).
    processes: Vec<&'a str>,
    /// `(invoke, outcome)` of every invoke that had an outcome: the first completion after it.
    outcomes: Vec<(u64, u64)>,
    /// `(invoke, ok)` of every `ok` with an offset, against the invoke in effect then.
    acks: Vec<(u64, u64)>,
}

impl<'a> Messages<'a> {
    /// One pass over `events`, which are in time order.
    pub fn index(events: &'a [Event]) -> Messages<'a> {
        let mut m = Messages::default();
        for (at, e) in events.iter().enumerate() {
            match (&e.op, e.kind) {
                (Op::Send { id, .. }, EventType::Invoke) => {
                    let i = m.place(id);
                    let life = &mut m.lives[i];
                    life.invokes.push((at, e.time_ns));
                    life.awaiting_outcome = true;
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
                    m.on_delivery(records, &e.process, at, e.time_ns);
                }
                (Op::Acquire { records, .. }, EventType::Ok) => {
                    m.on_delivery(records, &e.process, at, e.time_ns);
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
        let i = self.place(id);
        let life = &mut self.lives[i];
        let sent = life.invoked_ns();
        if let (true, Some(sent)) = (std::mem::take(&mut life.awaiting_outcome), sent) {
            self.outcomes.push((sent, t));
        }
        if let (EventType::Ok, Some(offset)) = (kind, offset) {
            life.acked = Some(Acked {
                topic,
                partition,
                offset,
                at_ns: t,
            });
            if let Some(sent) = sent {
                self.acks.push((sent, t));
            }
        }
    }

    fn on_delivery(&mut self, records: &'a [(u64, String)], process: &'a str, at: At, ns: u64) {
        let p = match self.processes.iter().position(|q| *q == process) {
            Some(p) => p,
            None => {
                self.processes.push(process);
                self.processes.len() - 1
            }
        };
        for (_, id) in records {
            let i = self.place(id);
            let life = &mut self.lives[i];
            if !life.deliveries.iter().any(|d| d.process == p) {
                life.deliveries.push(Delivery { process: p, at, ns });
            }
        }
    }

    /// `id`'s place in `lives`, a new life if it is new.
    fn place(&mut self, id: &'a str) -> usize {
        let next = self.lives.len();
        let i = *self.ix.entry(id).or_insert(next);
        if i == next {
            self.lives.push(Life {
                id,
                invokes: Vec::new(),
                acked: None,
                deliveries: Vec::new(),
                awaiting_outcome: false,
            });
        }
        i
    }

    /// Every message, in order of first mention.
    pub fn lives(&self) -> &[Life<'a>] {
        &self.lives
    }

    /// The consumer processes, each at its [`ProcessIx`].
    pub fn processes(&self) -> &[&'a str] {
        &self.processes
    }

    /// `(invoke, outcome)` of every invoke that had an outcome, in outcome order.
    pub fn outcomes(&self) -> &[(u64, u64)] {
        &self.outcomes
    }

    /// `(invoke, ok)` of every acknowledgement with an offset, in history order.
    pub fn acks(&self) -> &[(u64, u64)] {
        &self.acks
    }

    pub fn get(&self, id: &str) -> Option<&Life<'a>> {
        self.ix.get(id).map(|&i| &self.lives[i])
    }
}

impl Life<'_> {
    /// When its send was last invoked.
    pub fn invoked_ns(&self) -> Option<u64> {
        self.invokes.last().map(|&(_, t)| t)
    }

    /// The send in effect at history place `at`: the last invoke before it whose time `within`
    /// accepts.
    pub fn sent_before(&self, at: At, within: impl Fn(u64) -> bool) -> Option<u64> {
        let before = self.invokes.iter().rev().skip_while(|&&(i, _)| i >= at);
        before.map(|&(_, t)| t).find(|&t| within(t))
    }

    /// Its first delivery to any consumer process.
    pub fn delivered(&self) -> Option<Delivery> {
        self.deliveries.first().copied()
    }

    /// Its first delivery to a process `within` accepts.
    pub fn delivered_to(&self, within: impl Fn(ProcessIx) -> bool) -> Option<Delivery> {
        self.deliveries.iter().find(|d| within(d.process)).copied()
    }

    /// Its first delivery to each consumer process, in delivery order.
    pub fn deliveries(&self) -> &[Delivery] {
        &self.deliveries
    }

    /// Send to first delivery: from the send in effect when it was first delivered (none if it
    /// was delivered before any invoke).
    pub fn end_to_end(&self) -> Option<(u64, u64)> {
        let d = self.delivered()?;
        let sent = self.sent_before(d.at, |_| true)?;
        Some((sent, d.ns.saturating_sub(sent)))
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
    fn a_messages_life_is_its_invokes_ack_and_first_deliveries() {
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
        assert_eq!(a.invoked_ns(), Some(1));
        assert_eq!(
            m.outcomes(),
            [(1, 3)],
            "the first completion is the outcome"
        );
        assert_eq!(m.acks(), [(1, 4)]);
        assert_eq!(a.acked.map(|k| (k.offset, k.at_ns)), Some((7, 4)));
        let firsts: Vec<(ProcessIx, u64)> =
            a.deliveries().iter().map(|d| (d.process, d.ns)).collect();
        assert_eq!(firsts, [(0, 5), (1, 7)]);
        let to_d = a.delivered_to(|p| m.processes()[p] == "d-0");
        assert_eq!(to_d.map(|d| d.ns), Some(7));
        assert_eq!(a.end_to_end(), Some((1, 4)));
        let b = m.get("b").expect("indexed");
        assert_eq!(b.delivered(), None, "the final read is no delivery");
        let ids: Vec<&str> = m.lives().iter().map(|l| l.id).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    /// A send invoked again (a share group's dead-letter copy after an unknown outcome): each
    /// outcome, acknowledgement and delivery is measured from the invoke in effect at the time.
    #[test]
    fn a_send_invoked_again_is_measured_from_the_invoke_in_effect() {
        let events = vec![
            send(10, EventType::Invoke, "x", None),
            send(20, EventType::Info, "x", None),
            poll(25, "c-0", &["x"]),
            send(30, EventType::Invoke, "x", None),
            send(45, EventType::Ok, "x", Some(0)),
            poll(50, "d-0", &["x"]),
        ];
        let m = Messages::index(&events);
        assert_eq!(m.outcomes(), [(10, 20), (30, 45)]);
        assert_eq!(m.acks(), [(30, 45)]);
        let x = m.get("x").expect("indexed");
        assert_eq!(x.invoked_ns(), Some(30));
        assert_eq!(
            x.end_to_end(),
            Some((10, 15)),
            "first delivered under the first invoke"
        );
        let to_d = x
            .delivered_to(|p| m.processes()[p] == "d-0")
            .expect("delivered");
        assert_eq!(x.sent_before(to_d.at, |_| true), Some(30));
        assert_eq!(x.sent_before(to_d.at, |t| t < 30), Some(10));
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
        let m = Messages::index(&events);
        assert_eq!(m.get("a").and_then(Life::delivered).map(|d| d.ns), Some(9));
    }
}
