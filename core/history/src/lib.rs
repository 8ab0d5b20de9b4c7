//! The client-observed history of a run (`history.jsonl`) and its checker.
//!
//! Every client operation is recorded twice: once when it is invoked and once
//! when it completes (`ok`, `fail` = definitely did not happen, `info` = outcome
//! unknown). The checker ([`checker::check`]) then looks for anomalies the way
//! Jepsen's Kafka workload does, using only what clients saw, so it judges the
//! system from the outside and cannot be fooled by a bug in the broker's own
//! bookkeeping.
//!
//! The file holds one compact JSON object per line, in simulated-time order:
//!
//! ```text
//! {"time_ns":1000,"process":"p0","type":"invoke","f":"send","id":"p0-0","topic":"orders","partition":0}
//! {"time_ns":2000,"process":"p0","type":"ok","f":"send","id":"p0-0","topic":"orders","partition":0,"offset":0}
//! {"time_ns":3000,"process":"c0","type":"ok","f":"poll","topic":"orders","partition":0,"records":[[0,"p0-0"]]}
//! ```
//!
//! A consumer in a group (issue 8) stamps its `assign`, `revoke`, `poll`, `commit` and
//! `process` lines with `group` (and `generation` where it has one); `process` marks where the
//! business logic finished with the records of one poll result:
//!
//! ```text
//! {"time_ns":4000,"process":"c0","type":"ok","f":"process","group":"g1","generation":3,"topic":"orders","partition":0,"records":[[0,"p0-0"]]}
//! ```
//!
//! A share-group member (issue 9) records what it acquired (`acquire`, records as
//! `(offset, id)`) and each acknowledgement (`acknowledge`, with `ack` one of `accept`, `release`,
//! `reject`), stamped with its share group:
//!
//! ```text
//! {"time_ns":5000,"process":"s0","type":"ok","f":"acquire","group":"s1","topic":"orders","partition":0,"records":[[0,"p0-0"]]}
//! {"time_ns":6000,"process":"s0","type":"ok","f":"acknowledge","group":"s1","topic":"orders","partition":0,"records":[[0,"p0-0"]],"ack":"accept"}
//! ```
//!
//! Serialization goes through a struct with a fixed field order and omits
//! absent optional fields, so the same events always give the same bytes: two
//! runs of one seed can be compared with `cmp`. Reading is lenient in the ways
//! that let the format grow: unknown `f` values are skipped and unknown extra
//! fields are ignored, so an old checker can read a newer history.

pub mod anomaly;
pub mod checker;
pub mod command;
pub mod shares;

#[cfg(test)]
mod tests;

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

pub use anomaly::{Anomalies, Anomaly};
pub use checker::{check, check_replicas, CheckReport, ReplicaLog, ReplicaLogs};
pub use shares::ShareStats;

/// A map keyed by message id, for lookups. Its hasher is fixed (FxHash has no keys and is the
/// same arithmetic on every machine), so it behaves the same in every process; a `BTreeMap`
/// would compare id strings at every level of every lookup, and SipHash cost twice as much as
/// the rest of a lookup. Whoever turns one into output sorts first.
pub type IdMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;

/// How an event relates to its operation: its start, or one of three endings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The client started the operation.
    Invoke,
    /// The operation completed and took effect.
    Ok,
    /// The operation definitely did not take effect.
    Fail,
    /// The outcome is unknown: it may or may not have taken effect.
    Info,
}

/// What the operation was, with the fields that describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Produce one message with a unique `id`. `offset` is present on `ok`;
    /// `error` on `fail` and `info`.
    Send {
        id: String,
        topic: String,
        partition: u32,
        offset: Option<u64>,
        error: Option<String>,
    },
    /// A fetch that returned `records` as `(offset, id)` in returned order.
    Poll {
        topic: String,
        partition: u32,
        records: Vec<(u64, String)>,
    },
    /// The consumer's assignment changed; its poll positions may have reset.
    Assign { partitions: Vec<(String, u32)> },
    /// Commit `offset` (the next offset to read) for a partition.
    Commit {
        topic: String,
        partition: u32,
        offset: u64,
        error: Option<String>,
    },
    /// The group took these partitions from the consumer (it stopped reading them).
    Revoke { partitions: Vec<(String, u32)> },
    /// The application finished processing `records` (`(offset, id)`) of one poll result.
    Process {
        topic: String,
        partition: u32,
        records: Vec<(u64, String)>,
    },
    /// A share-group member acquired `records` (`(offset, id)`): no other member holds them
    /// until their lock expires or the member acknowledges them.
    Acquire {
        topic: String,
        partition: u32,
        records: Vec<(u64, String)>,
        /// When the member sent the fetch that acquired them: the leader acquired them between
        /// then and the event's time (the member may take them long after the answer came).
        requested_ns: Option<u64>,
    },
    /// A share-group member's acknowledgement of records it acquired.
    Acknowledge {
        topic: String,
        partition: u32,
        ack: AckVerdict,
        records: Vec<(u64, String)>,
        error: Option<String>,
    },
    /// An operation this module has no fields for; written as just its `f`.
    /// Never produced by [`parse_line`], which skips unknown `f` values.
    Other { f: String },
}

impl Op {
    /// The `f` name this operation is written under.
    pub fn f(&self) -> &str {
        match self {
            Op::Send { .. } => "send",
            Op::Poll { .. } => "poll",
            Op::Assign { .. } => "assign",
            Op::Commit { .. } => "commit",
            Op::Revoke { .. } => "revoke",
            Op::Process { .. } => "process",
            Op::Acquire { .. } => "acquire",
            Op::Acknowledge { .. } => "acknowledge",
            Op::Other { f } => f,
        }
    }
}

/// A share-group member's verdict on a record (KIP-932's acknowledgement types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckVerdict {
    /// Processed: the group is done with it.
    Accept,
    /// Not processed: deliver it again.
    Release,
    /// Unprocessable: archive it (after copying it to a dead-letter topic, if one is set).
    Reject,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Simulated nanoseconds since the start of the run.
    pub time_ns: u64,
    /// The client instance; a restarted client gets a new name.
    pub process: String,
    pub kind: EventType,
    pub op: Op,
    /// The consumer group the operation was done for, when the consumer is a group member.
    pub group: Option<GroupStamp>,
}

/// A group member's group and, where it has one, its generation (classic) or member epoch
/// (KIP-848).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStamp {
    pub group: String,
    pub generation: Option<u32>,
}

impl Event {
    pub fn new(time_ns: u64, process: impl Into<String>, kind: EventType, op: Op) -> Event {
        Event {
            time_ns,
            process: process.into(),
            kind,
            op,
            group: None,
        }
    }

    /// The event, stamped with a group member's group and generation.
    pub fn in_group(mut self, group: impl Into<String>, generation: Option<u32>) -> Event {
        self.group = Some(GroupStamp {
            group: group.into(),
            generation,
        });
        self
    }
}

/// Why a history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// One line is not a valid event (from [`parse_line`], which has no line number).
    #[error("{0}")]
    Invalid(String),
    /// A line of a file is not a valid event (from [`read_jsonl`]); `line` is 1-based.
    #[error("line {line}: {reason}")]
    AtLine { line: usize, reason: String },
    #[error("writing history: {0}")]
    Io(#[from] io::Error),
}

impl HistoryError {
    /// The 1-based line the error is on, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            HistoryError::AtLine { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// The on-disk shape of a line, borrowed from an [`Event`]. The field order
/// here is the order in the file; absent fields are left out.
#[derive(Serialize)]
struct LineOut<'a> {
    time_ns: u64,
    process: &'a str,
    #[serde(rename = "type")]
    kind: EventType,
    f: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<&'a [(u64, String)]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partitions: Option<&'a [(String, u32)]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ack: Option<AckVerdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requested_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl<'a> LineOut<'a> {
    fn from_event(event: &'a Event) -> LineOut<'a> {
        let mut line = LineOut {
            time_ns: event.time_ns,
            process: &event.process,
            kind: event.kind,
            f: event.op.f(),
            group: event.group.as_ref().map(|g| g.group.as_str()),
            generation: event.group.as_ref().and_then(|g| g.generation),
            id: None,
            topic: None,
            partition: None,
            offset: None,
            records: None,
            partitions: None,
            ack: None,
            requested_ns: None,
            error: None,
        };
        match &event.op {
            Op::Send {
                id,
                topic,
                partition,
                offset,
                error,
            } => {
                line.id = Some(id);
                line.topic = Some(topic);
                line.partition = Some(*partition);
                line.offset = *offset;
                line.error = error.as_deref();
            }
            Op::Poll {
                topic,
                partition,
                records,
            } => {
                line.topic = Some(topic);
                line.partition = Some(*partition);
                line.records = Some(records);
            }
            Op::Assign { partitions } | Op::Revoke { partitions } => {
                line.partitions = Some(partitions)
            }
            Op::Process {
                topic,
                partition,
                records,
            } => {
                line.topic = Some(topic);
                line.partition = Some(*partition);
                line.records = Some(records);
            }
            Op::Commit {
                topic,
                partition,
                offset,
                error,
            } => {
                line.topic = Some(topic);
                line.partition = Some(*partition);
                line.offset = Some(*offset);
                line.error = error.as_deref();
            }
            Op::Acquire {
                topic,
                partition,
                records,
                requested_ns,
            } => {
                line.topic = Some(topic);
                line.partition = Some(*partition);
                line.records = Some(records);
                line.requested_ns = *requested_ns;
            }
            Op::Acknowledge {
                topic,
                partition,
                ack,
                records,
                error,
            } => {
                line.topic = Some(topic);
                line.partition = Some(*partition);
                line.ack = Some(*ack);
                line.records = Some(records);
                line.error = error.as_deref();
            }
            Op::Other { .. } => {}
        }
        line
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        LineOut::from_event(self).serialize(serializer)
    }
}

/// The event as one compact JSON object, without a trailing newline.
pub fn to_json_line(event: &Event) -> String {
    // Only strings, integers and sequences of them: serde_json cannot fail here.
    serde_json::to_string(event).expect("history events always serialize to JSON")
}

/// The bytes of [`to_json_line`], written to `out` as they are made (no line is built); an
/// error is `out`'s.
pub fn write_json_line(event: &Event, out: impl Write) -> io::Result<()> {
    serde_json::to_writer(out, event).map_err(io::Error::from)
}

/// The fields every known operation has, read before the operation's own.
#[derive(Deserialize)]
struct Header {
    time_ns: u64,
    process: String,
    #[serde(rename = "type")]
    kind: EventType,
    group: Option<String>,
    generation: Option<u32>,
}

#[derive(Deserialize)]
struct SendIn {
    id: String,
    topic: String,
    partition: u32,
    offset: Option<u64>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct PollIn {
    topic: String,
    partition: u32,
    records: Option<Vec<(u64, String)>>,
    /// Acquisitions only.
    requested_ns: Option<u64>,
}

#[derive(Deserialize)]
struct AcknowledgeIn {
    topic: String,
    partition: u32,
    ack: AckVerdict,
    records: Vec<(u64, String)>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct AssignIn {
    partitions: Option<Vec<(String, u32)>>,
}

#[derive(Deserialize)]
struct CommitIn {
    topic: String,
    partition: u32,
    offset: u64,
    error: Option<String>,
}

/// Parse one line. `Ok(None)` for an operation with an unknown `f`, so that
/// histories from newer writers still check.
///
/// Fields an operation only has on some outcomes are required exactly there:
/// an `ok` send needs `offset`, and an `ok` poll or assign needs its list (an
/// `invoke` of either may leave it out).
pub fn parse_line(line: &str) -> Result<Option<Event>, HistoryError> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(json_syntax_error)?;
    let Some(object) = value.as_object() else {
        return Err(HistoryError::Invalid("not a JSON object".to_string()));
    };
    let f = match object.get("f") {
        Some(serde_json::Value::String(f)) => f.as_str(),
        Some(_) => return Err(HistoryError::Invalid("field `f` is not a string".into())),
        None => return Err(HistoryError::Invalid("missing field `f`".into())),
    };
    if !matches!(
        f,
        "send" | "poll" | "assign" | "commit" | "revoke" | "process" | "acquire" | "acknowledge"
    ) {
        return Ok(None);
    }
    let header: Header = from_value(&value)?;
    let op = match f {
        "send" => {
            let send: SendIn = from_value(&value)?;
            if header.kind == EventType::Ok && send.offset.is_none() {
                return Err(HistoryError::Invalid(
                    "missing field `offset` (required on an ok send)".into(),
                ));
            }
            Op::Send {
                id: send.id,
                topic: send.topic,
                partition: send.partition,
                offset: send.offset,
                error: send.error,
            }
        }
        "acknowledge" => {
            let a: AcknowledgeIn = from_value(&value)?;
            Op::Acknowledge {
                topic: a.topic,
                partition: a.partition,
                ack: a.ack,
                records: a.records,
                error: a.error,
            }
        }
        "poll" | "process" | "acquire" => {
            let poll: PollIn = from_value(&value)?;
            let records = required_on_ok(poll.records, header.kind, "records")?;
            let (topic, partition) = (poll.topic, poll.partition);
            match f {
                "poll" => Op::Poll {
                    topic,
                    partition,
                    records,
                },
                "acquire" => Op::Acquire {
                    topic,
                    partition,
                    records,
                    requested_ns: poll.requested_ns,
                },
                _ => Op::Process {
                    topic,
                    partition,
                    records,
                },
            }
        }
        "assign" | "revoke" => {
            let assign: AssignIn = from_value(&value)?;
            let partitions = required_on_ok(assign.partitions, header.kind, "partitions")?;
            match f {
                "assign" => Op::Assign { partitions },
                _ => Op::Revoke { partitions },
            }
        }
        _ => {
            let commit: CommitIn = from_value(&value)?;
            Op::Commit {
                topic: commit.topic,
                partition: commit.partition,
                offset: commit.offset,
                error: commit.error,
            }
        }
    };
    let group = header.group.map(|group| GroupStamp {
        group,
        generation: header.generation,
    });
    Ok(Some(Event {
        time_ns: header.time_ns,
        process: header.process,
        kind: header.kind,
        op,
        group,
    }))
}

/// Read a whole `history.jsonl`, skipping blank lines and unknown operations.
/// The error names the 1-based line and what is wrong with it.
pub fn read_jsonl(text: &str) -> Result<Vec<Event>, HistoryError> {
    let mut events = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(Some(event)) => events.push(event),
            Ok(None) => {}
            Err(error) => {
                return Err(HistoryError::AtLine {
                    line: index + 1,
                    reason: error.to_string(),
                })
            }
        }
    }
    Ok(events)
}

fn from_value<'de, T: Deserialize<'de>>(value: &'de serde_json::Value) -> Result<T, HistoryError> {
    T::deserialize(value).map_err(|error| HistoryError::Invalid(error.to_string()))
}

fn required_on_ok<T: Default>(
    field: Option<T>,
    kind: EventType,
    name: &str,
) -> Result<T, HistoryError> {
    match field {
        Some(value) => Ok(value),
        None if kind == EventType::Ok => Err(HistoryError::Invalid(format!(
            "missing field `{name}` (required when type is ok)"
        ))),
        None => Ok(T::default()),
    }
}

/// serde_json reports syntax errors "at line 1 column N" of the string it was
/// given; the line is always 1 here, so keep only the column.
fn json_syntax_error(error: serde_json::Error) -> HistoryError {
    let message = error.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(head, _)| head);
    HistoryError::Invalid(format!(
        "invalid JSON at column {}: {message}",
        error.column()
    ))
}

/// Writes events as JSON lines to any [`Write`]; by default into memory.
///
/// The writer does no buffering of its own: wrap a file in a
/// [`std::io::BufWriter`] before handing it over.
#[derive(Debug)]
pub struct HistoryWriter<W: Write = Vec<u8>> {
    out: W,
    lines: u64,
}

impl HistoryWriter<Vec<u8>> {
    /// A writer that accumulates the history in a `Vec<u8>`.
    pub fn in_memory() -> HistoryWriter<Vec<u8>> {
        HistoryWriter::new(Vec::new())
    }

    /// The lines written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.out
    }
}

impl Default for HistoryWriter<Vec<u8>> {
    fn default() -> Self {
        HistoryWriter::in_memory()
    }
}

impl<W: Write> HistoryWriter<W> {
    pub fn new(out: W) -> HistoryWriter<W> {
        HistoryWriter { out, lines: 0 }
    }

    /// Append one event and its newline.
    pub fn write(&mut self, event: &Event) -> Result<(), HistoryError> {
        let mut line = to_json_line(event);
        line.push('\n');
        self.out.write_all(line.as_bytes())?;
        self.lines += 1;
        Ok(())
    }

    /// How many events have been written.
    pub fn lines_written(&self) -> u64 {
        self.lines
    }

    pub fn flush(&mut self) -> Result<(), HistoryError> {
        self.out.flush()?;
        Ok(())
    }

    /// The underlying writer (for the in-memory writer: the bytes).
    pub fn into_inner(self) -> W {
        self.out
    }
}
