//! How the consumers shared the work (claim C3), from the history: when each acknowledged
//! message was first processed (a group member's `process` line, a share member's confirmed
//! `accept` or `reject`), by which consumer instance, and in which order per partition; and
//! ([`backlog`]) how much each consumer instance had waiting over time.
//!
//! Figures come from processing, not from fetching: a consumer that fetched far ahead of what
//! it processed has a backlog all the same.

pub mod backlog;

use std::collections::BTreeMap;

use fathom_history::{AckVerdict, Event, EventType, Op};

pub use backlog::{backlog_over_time, BacklogSeries, GroupBacklog, GroupKind};

/// The consumption figures of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Consumption {
    /// Seconds from `workload_end_s` until every acknowledged message had been processed once;
    /// `None` when some never were.
    pub drain_s: Option<f64>,
    /// The smallest share of first processings one consumer instance made (restarts count
    /// with their instance); `None` without processing.
    pub member_share_min: Option<f64>,
    /// The largest such share: what the busiest instance did (a hot key's owner).
    pub member_share_max: Option<f64>,
    /// First processings of a record below one already processed from its partition.
    pub out_of_order: u64,
    /// First processings of a record below one already processed from its partition with the
    /// same ordering key ([`fathom_history::shares::ordering_key`] of its id): the order a
    /// `key_shared` group keeps.
    pub out_of_order_per_key: u64,
    /// Acknowledged messages not yet processed, most at any second's end.
    pub backlog_max: u64,
}

/// One processing: the application finished with `records` of `tp`. What counts is a group
/// member's `process` line, or a share member's `accept` or `reject`, confirmed or of unknown
/// outcome (the application processed the record; the group may have kept the acknowledgement,
/// and then never hands the record out again), not one the leader refused (the group threw the
/// work away) nor a `release` (it hands the record back unprocessed). Every figure of this
/// module uses this one definition.
pub(crate) struct Processing<'a> {
    pub tp: (&'a str, u32),
    pub records: &'a [(u64, String)],
}

/// The processing `e` records, if it records one.
pub(crate) fn processing(e: &Event) -> Option<Processing<'_>> {
    match &e.op {
        Op::Process {
            topic,
            partition,
            records,
        } if e.group.is_some() && e.kind == EventType::Ok => Some(Processing {
            tp: (topic, *partition),
            records,
        }),
        Op::Acknowledge {
            topic,
            partition,
            ack,
            records,
            ..
        } if *ack != AckVerdict::Release && matches!(e.kind, EventType::Ok | EventType::Info) => {
            Some(Processing {
                tp: (topic, *partition),
                records,
            })
        }
        _ => None,
    }
}

/// The figures of `events`, whose workload phase ended at `workload_end_s`.
pub fn consumption(events: &[Event], workload_end_s: f64) -> Consumption {
    let mut acked: BTreeMap<&str, u64> = BTreeMap::new();
    // id -> (time, instance, partition, offset) of its first processing.
    let mut first: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_instance: BTreeMap<&str, u64> = BTreeMap::new();
    let mut order = Order::default();
    for e in events {
        if let (Op::Send { id, .. }, EventType::Ok) = (&e.op, e.kind) {
            acked.entry(id).or_insert(e.time_ns);
        }
        if let Some(p) = processing(e) {
            processed(e, p.tp, p.records, &mut first, &mut by_instance, &mut order);
        }
    }
    let total: u64 = by_instance.values().sum();
    let share = |pick: fn(&BTreeMap<&str, u64>) -> Option<u64>| {
        (total > 0).then(|| pick(&by_instance).unwrap_or(0) as f64 / total as f64)
    };
    let member_share_min = share(|m| m.values().copied().min());
    let member_share_max = share(|m| m.values().copied().max());
    let done = acked.keys().all(|id| first.contains_key(id));
    let last = acked.keys().filter_map(|id| first.get(id)).copied().max();
    let drain_s = match (done, last) {
        (true, Some(t)) => Some((t as f64 / 1e9 - workload_end_s).max(0.0)),
        _ => None,
    };
    Consumption {
        drain_s,
        member_share_min,
        member_share_max,
        out_of_order: order.out_of_order,
        out_of_order_per_key: order.out_of_order_per_key,
        backlog_max: backlog_max(&acked, &first),
    }
}

/// The order of first processings: per partition, and per partition and ordering key.
#[derive(Default)]
struct Order<'a> {
    highest: BTreeMap<(&'a str, u32), u64>,
    highest_per_key: BTreeMap<(&'a str, u32, &'a str), u64>,
    out_of_order: u64,
    out_of_order_per_key: u64,
}

impl<'a> Order<'a> {
    fn first_processing(&mut self, (topic, partition): (&'a str, u32), offset: u64, id: &'a str) {
        let key = (topic, partition, fathom_history::shares::ordering_key(id));
        let per_key = self.highest_per_key.entry(key).or_insert(offset);
        self.out_of_order_per_key += u64::from(offset < *per_key);
        *per_key = (*per_key).max(offset);
        let top = self.highest.entry((topic, partition)).or_insert(offset);
        self.out_of_order += u64::from(offset < *top);
        *top = (*top).max(offset);
    }
}

fn processed<'a>(
    e: &'a Event,
    tp: (&'a str, u32),
    records: &'a [(u64, String)],
    first: &mut BTreeMap<&'a str, u64>,
    by_instance: &mut BTreeMap<&'a str, u64>,
    order: &mut Order<'a>,
) {
    for (offset, id) in records {
        if first.contains_key(id.as_str()) {
            continue;
        }
        first.insert(id, e.time_ns);
        *by_instance.entry(instance_of(&e.process)).or_default() += 1;
        order.first_processing(tp, *offset, id);
    }
}

/// The instance a process belongs to: `c-1-r2` (a restart) is instance `c-1`.
pub(crate) fn instance_of(process: &str) -> &str {
    match process.rsplit_once("-r") {
        Some((base, n)) if n.parse::<u32>().is_ok() => base,
        _ => process,
    }
}

/// The most acknowledged-and-unprocessed messages at any second's end.
fn backlog_max(acked: &BTreeMap<&str, u64>, first: &BTreeMap<&str, u64>) -> u64 {
    let mut changes: BTreeMap<u64, i64> = BTreeMap::new();
    for (id, &t) in acked {
        *changes.entry(t / 1_000_000_000).or_default() += 1;
        if let Some(&p) = first.get(id) {
            *changes.entry(p / 1_000_000_000).or_default() -= 1;
        }
    }
    let (mut level, mut most) = (0i64, 0i64);
    for delta in changes.values() {
        level += delta;
        most = most.max(level);
    }
    most.max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use fathom_history::Op;

    fn sent(t: u64, id: &str, offset: u64) -> Event {
        let op = Op::Send {
            id: id.into(),
            topic: "t".into(),
            partition: 0,
            offset: Some(offset),
            error: None,
        };
        Event::new(t, "p-0", EventType::Ok, op)
    }

    fn accept(t: u64, who: &str, offset: u64, id: &str) -> Event {
        accept_as(EventType::Ok, t, who, offset, id)
    }

    fn accept_as(kind: EventType, t: u64, who: &str, offset: u64, id: &str) -> Event {
        let op = Op::Acknowledge {
            topic: "t".into(),
            partition: 0,
            ack: AckVerdict::Accept,
            records: vec![(offset, id.into())],
            error: None,
        };
        Event::new(t, who, kind, op).in_group("s", None)
    }

    /// An accept of unknown outcome is a processing (the application did the work; the group
    /// may have kept it and never hand the record out again); a refused one is not.
    #[test]
    fn an_unknown_accept_is_a_processing_and_a_refused_one_is_not() {
        let events = vec![
            sent(0, "a", 0),
            sent(0, "b", 1),
            accept_as(EventType::Info, S, "s-0", 0, "a"),
            accept_as(EventType::Fail, S, "s-0", 1, "b"),
        ];
        let c = consumption(&events, 0.0);
        assert_eq!(c.drain_s, None, "b's processing was refused");
        let mut done = events.clone();
        done.push(accept(3 * S, "s-1", 1, "b"));
        assert_eq!(consumption(&done, 0.0).drain_s, Some(3.0));
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn drain_share_order_and_backlog_come_from_first_processings() {
        let events = vec![
            sent(0, "a", 0),
            sent(0, "b", 1),
            sent(S / 2, "c", 2),
            accept(S, "s-0", 1, "b"),
            accept(2 * S, "s-1-r1", 0, "a"),
            accept(2 * S, "s-1", 0, "a"),
            accept(5 * S, "s-1", 2, "c"),
        ];
        let c = consumption(&events, 3.0);
        assert_eq!(c.drain_s, Some(2.0));
        assert_eq!(c.member_share_min, Some(1.0 / 3.0));
        assert_eq!(c.member_share_max, Some(2.0 / 3.0));
        assert_eq!(c.out_of_order, 1, "a after b");
        assert_eq!(
            c.out_of_order_per_key, 0,
            "ids without a `/` are keys of their own"
        );
        assert_eq!(c.backlog_max, 3);
        let unfinished = consumption(&events[..5], 3.0);
        assert_eq!(unfinished.drain_s, None);
    }

    /// Per ordering key (the id up to its first `/`): records of another key do not count.
    #[test]
    fn out_of_order_per_key_compares_only_records_of_one_key() {
        let events = vec![
            accept(S, "s-0", 1, "k1/b"),
            accept(S, "s-0", 0, "k2/a"),
            accept(S, "s-0", 3, "k1/d"),
            accept(S, "s-0", 2, "k1/c"),
        ];
        let c = consumption(&events, 0.0);
        assert_eq!((c.out_of_order, c.out_of_order_per_key), (2, 1));
    }
}
