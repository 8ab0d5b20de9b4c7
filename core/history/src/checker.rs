//! The history checker, after Jepsen's Kafka workload.
//!
//! It reads only what clients observed (sends, their outcomes, and polled
//! records) and counts the classes of [`Anomaly`] (see each variant for its
//! definition). Seven are computed from the history by [`check`]; the eighth,
//! `replica_divergence`, needs the brokers' logs, so the caller computes it with
//! [`check_replicas`] and stores it with [`CheckReport::set_replica_divergence`].
//!
//! Offsets are not dense: control batches, and records that were written but
//! never acknowledged nor read, take offsets that no client ever sees. So a
//! consumer jumping over an offset is a skip only when the offset is *known to
//! hold a record*: some poll returned it, or some acknowledged send was given it.
//!
//! Only `ok` polls count as reads. Sends are matched to their completions by
//! id; a send's producer is the process that invoked it.
//!
//! The example histories in `tests/histories/` (checked by this module's tests)
//! report:
//! - `clean.jsonl`: no anomalies; sent 6, acked 5, read 5, unknown 1, failed 0.
//! - `lost-and-duplicate.jsonl`: lost 1 (`p0-2`), duplicate 1 (`p0-1`, read at
//!   offsets 1 and 3), inconsistent_offsets 1 (offset 3 is `p0-3` by its ack but
//!   `p0-1` by a read), poll_skip 2 (`c0` and `final-read` both jump over offset
//!   2, acked for `p0-2`); sent 4, acked 4, read 3, unknown 0, failed 0.
//! - `poll-anomalies.jsonl`: aborted_read 1 (`p0-9`, failed but read),
//!   nonmonotonic_send 1 (`p0` acked offset 5 then 4), nonmonotonic_poll 1 (`c0`
//!   polls offset 4 again after reading it); sent 4, acked 3, read 4, unknown 0,
//!   failed 1.
//!
//! The group classes (`unprocessed`, `reprocessed`, `split_ownership`) are judged from the
//! `process` and `commit` lines stamped with a group, and only when the history has `process`
//! lines (see [`Anomalies::judge_groups`]). `poll_skip` stays per process and partition: a
//! group member's `assign` starts a new sequence, and the new owner's first poll starts at the
//! group's committed offset.
//!
//! Cost: each event is visited a constant number of times, with hash lookups by id and
//! BTreeMap lookups by place, so O(n log n) in the number of events and records. Maps by id
//! are [`IdMap`]s; what reaches an example is sorted by id first.

use std::collections::BTreeMap;

use crate::IdMap;

use serde::{Deserialize, Serialize};

use super::{Anomalies, Anomaly, Event, EventType, Op};

/// How many examples each anomaly class keeps.
pub(crate) const EXAMPLES_PER_CLASS: usize = 5;

/// What [`check`] found, plus totals that say how much the history exercised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub anomalies: Anomalies,
    /// Up to five human-readable examples per anomaly class that has any,
    /// keyed by class name.
    pub examples: BTreeMap<String, Vec<String>>,
    /// Send invocations.
    pub sent: u64,
    /// Sends completed `ok`.
    pub acked: u64,
    /// Distinct ids returned by any poll.
    pub read: u64,
    /// Sends completed `info` (outcome unknown).
    pub unknown: u64,
    /// Sends completed `fail`.
    pub failed: u64,
    /// Sends whose outcome the producer left unknown (`info`, never `ok` nor `fail`) although
    /// a poll read their record: answers a definite configuration (idempotence, a delivery
    /// timeout longer than the faults) should have given. A fate, not an anomaly: nothing
    /// was lost, the client just could not tell.
    #[serde(default)]
    pub unknown_in_log: u64,
    /// Per share group, what its members were given and did (absent without share groups).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shares: BTreeMap<String, crate::shares::ShareStats>,
}

impl CheckReport {
    /// True when every anomaly count is zero.
    pub fn is_clean(&self) -> bool {
        self.anomalies.total() == 0
    }

    /// Record the result of [`check_replicas`].
    pub fn set_replica_divergence(&mut self, count: u64, examples: Vec<String>) {
        self.anomalies[Anomaly::ReplicaDivergence] = count;
        let examples: Vec<String> = examples.into_iter().take(EXAMPLES_PER_CLASS).collect();
        if examples.is_empty() {
            self.examples.remove(Anomaly::ReplicaDivergence.name());
        } else {
            self.examples
                .insert(Anomaly::ReplicaDivergence.name().to_string(), examples);
        }
    }

    pub(crate) fn example(&mut self, class: Anomaly, text: impl FnOnce() -> String) {
        let list = self.examples.entry(class.name().to_string()).or_default();
        if list.len() < EXAMPLES_PER_CLASS {
            list.push(text());
        }
    }
}

/// One replica's log of a partition: `(offset, id)` in offset order.
pub type ReplicaLog = Vec<(u64, String)>;

/// Per (topic, partition), each replica's `(node id, log)`.
pub type ReplicaLogs = BTreeMap<(String, u32), Vec<(u32, ReplicaLog)>>;

/// Compare each partition's replicas. The caller passes, per partition, each
/// replica's `(node id, log)` with the log cut at the partition's committed
/// high watermark, so all of them must be exactly equal. Returns how many
/// partitions have a replica that differs from the first one, with up to five
/// examples.
pub fn check_replicas(replicas: &ReplicaLogs) -> (u64, Vec<String>) {
    let mut count = 0;
    let mut examples = Vec::new();
    for ((topic, partition), logs) in replicas {
        let Some(((first_node, first_log), others)) = logs.split_first() else {
            continue;
        };
        let Some((node, log)) = others.iter().find(|(_, log)| log != first_log) else {
            continue;
        };
        count += 1;
        if examples.len() < EXAMPLES_PER_CLASS {
            examples.push(describe_divergence(
                &format!("{topic}-{partition}"),
                (*first_node, first_log),
                (*node, log),
            ));
        }
    }
    (count, examples)
}

fn describe_divergence(
    partition: &str,
    (first_node, first_log): (u32, &[(u64, String)]),
    (node, log): (u32, &[(u64, String)]),
) -> String {
    let show = |entry: Option<&(u64, String)>| match entry {
        Some((offset, id)) => format!("{id}@{offset}"),
        None => "nothing".to_string(),
    };
    let index = first_log
        .iter()
        .zip(log)
        .position(|(a, b)| a != b)
        .unwrap_or(first_log.len().min(log.len()));
    format!(
        "{partition}: record {index} is {} on node {first_node} but {} on node {node} \
         ({} vs {} committed records)",
        show(first_log.get(index)),
        show(log.get(index)),
        first_log.len(),
        log.len(),
    )
}

/// A topic-partition, interned to a small number so the maps below key on
/// integers instead of cloned strings.
type Tp = usize;

/// Interns topic-partitions and remembers their names for examples.
#[derive(Default)]
struct Partitions<'a> {
    ids: BTreeMap<(&'a str, u32), Tp>,
    names: Vec<String>,
}

impl<'a> Partitions<'a> {
    fn intern(&mut self, topic: &'a str, partition: u32) -> Tp {
        let next = self.names.len();
        *self.ids.entry((topic, partition)).or_insert_with(|| {
            self.names.push(format!("{topic}-{partition}"));
            next
        })
    }

    fn name(&self, tp: Tp) -> &str {
        &self.names[tp]
    }

    fn at(&self, (tp, offset): (Tp, u64)) -> String {
        format!("{}@{offset}", self.name(tp))
    }
}

/// What the history says about one send id.
#[derive(Default)]
struct SendRecord<'a> {
    /// The invoking process and the invoke's index in the history.
    invoke: Option<(&'a str, usize)>,
    /// The partition and offset of an `ok` completion.
    acked: Option<(Tp, u64)>,
    /// The error of a `fail` completion, if one was given.
    failed: Option<Option<&'a str>>,
    /// An `info` completion: the producer gave up without knowing the outcome.
    unknown: bool,
}

/// Everything [`check`] gathers in its first pass over the history.
#[derive(Default)]
struct Facts<'a> {
    partitions: Partitions<'a>,
    sends: IdMap<&'a str, SendRecord<'a>>,
    /// For each id read, every (partition, offset) it was read at.
    reads: IdMap<&'a str, SortedSet<(Tp, u64)>>,
    /// For each offset known to hold a record, the ids seen there by acks and reads.
    /// Its keys are exactly the offsets "known to hold a record".
    ids_at: BTreeMap<(Tp, u64), SortedSet<&'a str>>,
    /// What each consumer group processed and committed.
    groups: BTreeMap<&'a str, GroupFacts<'a>>,
}

/// A set kept as a sorted vector: almost every id is read at one place and almost every place
/// holds one id, and a one-element `BTreeSet` allocates a whole node.
#[derive(Debug)]
struct SortedSet<T>(Vec<T>);

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet(Vec::new())
    }
}

impl<T: Ord> SortedSet<T> {
    fn insert(&mut self, x: T) {
        if let Err(i) = self.0.binary_search(&x) {
            self.0.insert(i, x);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

/// A member (process) of a group in one generation, if it has generations.
type MemberGeneration<'a> = (&'a str, Option<u32>);

/// The first and last time a member processed records of a partition, in nanoseconds.
type Span = (u64, u64);

/// One consumer group's `process` and `commit` lines.
#[derive(Default)]
struct GroupFacts<'a> {
    /// How often each id was processed.
    processed: IdMap<&'a str, u64>,
    /// Per partition, each (member, generation)'s processing span: first and last time.
    spans: BTreeMap<Tp, BTreeMap<MemberGeneration<'a>, Span>>,
    /// The last `ok` commit per partition.
    committed: BTreeMap<Tp, u64>,
}

/// Check a history for the anomalies in [`Anomalies`]; `replica_divergence`
/// is left 0 (see [`check_replicas`]).
pub fn check(events: &[Event]) -> CheckReport {
    let mut report = CheckReport::default();
    let facts = gather(events, &mut report);
    check_sends(&facts, &mut report);
    check_reads(&facts, &mut report);
    check_polls(events, &facts, &mut report);
    check_groups(&facts, &mut report);
    crate::shares::check_shares(events, &mut report);
    report.unknown_in_log = unknown_in_log(&facts);
    // Keep only classes that have examples, so a clean report is short.
    report.examples.retain(|_, list| !list.is_empty());
    report
}

/// First pass: index sends, acks and reads, and count the totals.
fn gather<'a>(events: &'a [Event], report: &mut CheckReport) -> Facts<'a> {
    let mut facts = Facts::default();
    for (index, event) in events.iter().enumerate() {
        match &event.op {
            Op::Send {
                id,
                topic,
                partition,
                offset,
                error,
            } => {
                let record = facts.sends.entry(id).or_default();
                match event.kind {
                    EventType::Invoke => {
                        report.sent += 1;
                        record.invoke = Some((&event.process, index));
                    }
                    EventType::Ok => {
                        report.acked += 1;
                        // The parser insists on an offset for an ok send; a
                        // hand-built event without one cannot be placed.
                        if let Some(offset) = offset {
                            let tp = facts.partitions.intern(topic, *partition);
                            record.acked = Some((tp, *offset));
                            facts.ids_at.entry((tp, *offset)).or_default().insert(id);
                        }
                    }
                    EventType::Fail => {
                        report.failed += 1;
                        record.failed = Some(error.as_deref());
                    }
                    EventType::Info => {
                        report.unknown += 1;
                        record.unknown = true;
                    }
                }
            }
            Op::Poll {
                topic,
                partition,
                records,
            } if event.kind == EventType::Ok => {
                let tp = facts.partitions.intern(topic, *partition);
                for (offset, id) in records {
                    facts.reads.entry(id).or_default().insert((tp, *offset));
                    facts.ids_at.entry((tp, *offset)).or_default().insert(id);
                }
            }
            Op::Process {
                topic,
                partition,
                records,
            } if event.kind == EventType::Ok => {
                let Some(stamp) = &event.group else { continue };
                let tp = facts.partitions.intern(topic, *partition);
                let group = facts.groups.entry(&stamp.group).or_default();
                for (_, id) in records {
                    *group.processed.entry(id).or_default() += 1;
                }
                let member = (event.process.as_str(), stamp.generation);
                let t = event.time_ns;
                let span = group.spans.entry(tp).or_default().entry(member);
                span.and_modify(|(_, end)| *end = t).or_insert((t, t));
            }
            Op::Commit {
                topic,
                partition,
                offset,
                ..
            } if event.kind == EventType::Ok => {
                let Some(stamp) = &event.group else { continue };
                let tp = facts.partitions.intern(topic, *partition);
                let group = facts.groups.entry(&stamp.group).or_default();
                group.committed.insert(tp, *offset);
            }
            _ => {}
        }
    }
    report.read = facts.reads.len() as u64;
    facts
}

/// The group classes, for groups that processed anything.
fn check_groups(facts: &Facts<'_>, report: &mut CheckReport) {
    let processing: Vec<(&str, &GroupFacts<'_>)> = facts
        .groups
        .iter()
        .filter(|(_, g)| !g.processed.is_empty())
        .map(|(name, g)| (*name, g))
        .collect();
    if processing.is_empty() {
        return;
    }
    report.anomalies.judge_groups();
    // Two ids acknowledged at one place (inconsistent offsets): the greater id stands for it,
    // whatever order the map by id yields them in.
    let mut acked: BTreeMap<(Tp, u64), &str> = BTreeMap::new();
    for (&id, send) in &facts.sends {
        if let Some(place) = send.acked {
            let at = acked.entry(place).or_insert(id);
            *at = (*at).max(id);
        }
    }
    for (name, group) in processing {
        check_unprocessed(name, group, &acked, facts, report);
        check_reprocessed(name, group, report);
        check_split_ownership(name, group, facts, report);
    }
}

fn check_unprocessed(
    name: &str,
    group: &GroupFacts<'_>,
    acked: &BTreeMap<(Tp, u64), &str>,
    facts: &Facts<'_>,
    report: &mut CheckReport,
) {
    for (&tp, &committed) in &group.committed {
        for (&place, id) in acked.range((tp, 0)..(tp, committed)) {
            if !group.processed.contains_key(id) {
                report.anomalies[Anomaly::Unprocessed] += 1;
                report.example(Anomaly::Unprocessed, || {
                    format!(
                        "{id} acked at {} below {name}'s committed offset {committed}, \
                         never processed",
                        facts.partitions.at(place)
                    )
                });
            }
        }
    }
}

fn check_reprocessed(name: &str, group: &GroupFacts<'_>, report: &mut CheckReport) {
    let twice = group.processed.iter().filter(|(_, &times)| times > 1);
    for (id, times) in by_id(twice) {
        report.anomalies[Anomaly::Reprocessed] += 1;
        report.example(Anomaly::Reprocessed, || {
            format!("{id} processed {times} times by {name}")
        });
    }
}

/// Entries of an [`IdMap`] in id order, as examples list them.
fn by_id<'m, 'a: 'm, V>(
    entries: impl Iterator<Item = (&'m &'a str, &'m V)>,
) -> Vec<(&'a str, &'m V)> {
    let mut entries: Vec<(&'a str, &'m V)> = entries.map(|(id, v)| (*id, v)).collect();
    entries.sort_unstable_by_key(|&(id, _)| id);
    entries
}

fn check_split_ownership(
    name: &str,
    group: &GroupFacts<'_>,
    facts: &Facts<'_>,
    report: &mut CheckReport,
) {
    for (&tp, spans) in &group.spans {
        let spans: Vec<(&MemberGeneration<'_>, &Span)> = spans.iter().collect();
        for (i, (a, (a_start, a_end))) in spans.iter().enumerate() {
            for (b, (b_start, b_end)) in &spans[i + 1..] {
                if a.0 == b.0 || a_start > b_end || b_start > a_end {
                    continue;
                }
                report.anomalies[Anomaly::SplitOwnership] += 1;
                report.example(Anomaly::SplitOwnership, || {
                    format!(
                        "{name} on {}: {}{} processed {a_start}..{a_end}ns, \
                         {}{} {b_start}..{b_end}ns",
                        facts.partitions.name(tp),
                        a.0,
                        generation(a.1),
                        b.0,
                        generation(b.1)
                    )
                });
            }
        }
    }
}

/// An acknowledged send: its invoke's index in the history, offset and id.
type Ack<'a> = (usize, u64, &'a str);

/// Lost and aborted reads, and sends whose offsets go backwards.
fn check_sends(facts: &Facts<'_>, report: &mut CheckReport) {
    check_lost_and_aborted(facts, report);
    check_send_order(facts, report);
}

/// Acknowledged sends no poll read, and failed sends some poll read; examples in id order.
fn check_lost_and_aborted(facts: &Facts<'_>, report: &mut CheckReport) {
    let was_read = |id: &str| facts.reads.contains_key(id);
    let suspect = facts
        .sends
        .iter()
        .filter(|(&id, record)| match record.acked {
            Some(_) => !was_read(id),
            None => record.failed.is_some() && was_read(id),
        });
    for (id, record) in by_id(suspect) {
        match (record.acked, record.failed) {
            (Some((tp, offset)), _) => {
                report.anomalies[Anomaly::Lost] += 1;
                report.example(Anomaly::Lost, || {
                    format!(
                        "{id} acked at {} never read",
                        facts.partitions.at((tp, offset))
                    )
                });
            }
            (None, Some(error)) => {
                report.anomalies[Anomaly::AbortedRead] += 1;
                report.example(Anomaly::AbortedRead, || {
                    let places = facts.reads.get(id).map(|at| list(&facts.partitions, at));
                    format!(
                        "{id} failed ({}) but read at {}",
                        error.unwrap_or("no error given"),
                        places.unwrap_or_default()
                    )
                });
            }
            (None, None) => {}
        }
    }
}

/// A producer's acknowledged sends to one partition whose offsets do not grow in invoke order.
fn check_send_order(facts: &Facts<'_>, report: &mut CheckReport) {
    // Acknowledged sends per (process, partition), keyed by invoke index.
    let mut by_producer: BTreeMap<(&str, Tp), Vec<Ack<'_>>> = BTreeMap::new();
    for (&id, record) in &facts.sends {
        if let (Some((tp, offset)), Some((process, invoke_index))) = (record.acked, record.invoke) {
            by_producer
                .entry((process, tp))
                .or_default()
                .push((invoke_index, offset, id));
        }
    }
    for ((process, tp), mut acks) in by_producer {
        acks.sort_unstable();
        for pair in acks.windows(2) {
            let [(_, before, before_id), (_, after, after_id)] = pair else {
                continue;
            };
            if after <= before {
                report.anomalies[Anomaly::NonmonotonicSend] += 1;
                report.example(Anomaly::NonmonotonicSend, || {
                    format!(
                        "{process} on {}: {before_id} acked at {before} \
                         then {after_id} acked at {after}",
                        facts.partitions.name(tp)
                    )
                });
            }
        }
    }
}

/// Duplicates and offsets claimed by more than one id.
fn check_reads(facts: &Facts<'_>, report: &mut CheckReport) {
    let twice = facts.reads.iter().filter(|(_, places)| places.len() > 1);
    for (id, places) in by_id(twice) {
        report.anomalies[Anomaly::Duplicate] += 1;
        report.example(Anomaly::Duplicate, || {
            format!("{id} read at {}", list(&facts.partitions, places))
        });
    }
    for (&place, ids) in &facts.ids_at {
        if ids.len() > 1 {
            report.anomalies[Anomaly::InconsistentOffsets] += 1;
            report.example(Anomaly::InconsistentOffsets, || {
                let ids: Vec<&str> = ids.iter().copied().collect();
                format!("{} holds {}", facts.partitions.at(place), ids.join(", "))
            });
        }
    }
}

/// Sends that ended unknown, never `ok` nor `fail`, whose id some poll read.
fn unknown_in_log(facts: &Facts<'_>) -> u64 {
    let unknown_read = |(id, r): &(&&str, &SendRecord<'_>)| {
        r.unknown && r.acked.is_none() && r.failed.is_none() && facts.reads.contains_key(**id)
    };
    facts.sends.iter().filter(unknown_read).count() as u64
}

/// Second pass: each process's sequence of polls on each partition.
fn check_polls(events: &[Event], facts: &Facts<'_>, report: &mut CheckReport) {
    // The last offset of each process's last non-empty poll per partition,
    // since its last assign.
    let mut positions: BTreeMap<&str, BTreeMap<Tp, u64>> = BTreeMap::new();
    for event in events {
        match &event.op {
            // Any assign may move positions; forgetting them can only hide an
            // anomaly, never invent one.
            Op::Assign { .. } => {
                positions.remove(event.process.as_str());
            }
            Op::Poll {
                topic,
                partition,
                records,
            } if event.kind == EventType::Ok => {
                let (Some(&(first, _)), Some(&(last, _))) = (records.first(), records.last())
                else {
                    continue;
                };
                // Every polled partition was interned by `gather`.
                let Some(&tp) = facts.partitions.ids.get(&(topic.as_str(), *partition)) else {
                    continue;
                };
                let position = positions
                    .entry(event.process.as_str())
                    .or_default()
                    .insert(tp, last);
                check_poll(event, tp, position, first, records, facts, report);
            }
            _ => {}
        }
    }
}

/// One non-empty poll against the previous one's last offset, `position`.
fn check_poll(
    event: &Event,
    tp: Tp,
    position: Option<u64>,
    first: u64,
    records: &[(u64, String)],
    facts: &Facts<'_>,
    report: &mut CheckReport,
) {
    let name = facts.partitions.name(tp);
    let process = &event.process;
    let time_ns = event.time_ns;
    let mut rewound = None;
    let mut skipped = None;
    if let Some(position) = position {
        if first <= position {
            rewound = Some(format!("starts at {first} after reading up to {position}"));
        } else {
            skipped = known_between(facts, tp, position, first).map(|hole| (position, hole, first));
        }
    }
    for pair in records.windows(2) {
        let [(before, _), (after, _)] = pair else {
            continue;
        };
        if after <= before {
            rewound.get_or_insert_with(|| format!("returns offset {after} after {before}"));
        } else if skipped.is_none() {
            skipped = known_between(facts, tp, *before, *after).map(|hole| (*before, hole, *after));
        }
    }
    if let Some(what) = rewound {
        report.anomalies[Anomaly::NonmonotonicPoll] += 1;
        report.example(Anomaly::NonmonotonicPoll, || {
            format!("{process} on {name} at {time_ns}ns: poll {what}")
        });
    }
    if let Some((before, hole, after)) = skipped {
        report.anomalies[Anomaly::PollSkip] += 1;
        report.example(Anomaly::PollSkip, || {
            format!(
                "{process} on {name} at {time_ns}ns: went from {before} to {after}, \
                 skipping {name}@{hole}"
            )
        });
    }
}

/// The first offset strictly between `low` and `high` known to hold a record.
fn known_between(facts: &Facts<'_>, tp: Tp, low: u64, high: u64) -> Option<u64> {
    let start = low.checked_add(1)?;
    if start >= high {
        return None;
    }
    facts
        .ids_at
        .range((tp, start)..(tp, high))
        .next()
        .map(|(&(_, offset), _)| offset)
}

/// " (generation 3)", or nothing for a member without generations.
fn generation(g: Option<u32>) -> String {
    g.map(|g| format!(" (generation {g})")).unwrap_or_default()
}

/// "orders-0@1, orders-0@3" for a set of places.
fn list(partitions: &Partitions<'_>, places: &SortedSet<(Tp, u64)>) -> String {
    let places: Vec<String> = places.iter().map(|&place| partitions.at(place)).collect();
    places.join(", ")
}
