//! The record of a run: the client history and every other event, with a hash over all of it.

use std::cell::RefCell;
use std::rc::Rc;

use std::collections::BTreeMap;

use fathom_history::{self as history, Event, EventType, Op};
use fathom_queue::client::DeliveryStats;

/// FNV-1a, 64 bits: fixed by its definition, so trace hashes compare across builds.
#[derive(Debug, Clone, Copy)]
pub struct TraceHash(u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn value(&self) -> u64 {
        self.0
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// Hashes what is written, so that an event is hashed as it is serialised.
impl std::io::Write for TraceHash {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Shared by every client process of one run; turmoil runs them all on one thread, and the
/// production commands run on one thread too.
pub struct Trace {
    pub events: Vec<Event>,
    /// The producers' send journal: every produce attempt (claim P6).
    pub attempts: Vec<AttemptRecord>,
    /// Non-client events (faults, leader changes, restarts) as text lines with their time.
    pub notes: Vec<(u64, String)>,
    /// Each consumer process's delivery counters as last reported (claim C1); not hashed, as
    /// they are measurements of what the history already fixes.
    pub delivery: BTreeMap<String, DeliveryStats>,
    /// The same, as last reported before the workload phase ended.
    pub delivery_in_workload: BTreeMap<String, DeliveryStats>,
    hash: TraceHash,
    /// Nanoseconds for `time_ns`: simulated time under turmoil, wall-clock time in production.
    clock: fn() -> u64,
}

pub type SharedTrace = Rc<RefCell<Trace>>;

/// One produce attempt of one batch, as `journal.jsonl` holds it. Times are the trace's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptRecord {
    pub process: String,
    pub topic: String,
    pub partition: u32,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub broker: u32,
    /// When the request was handed to the network.
    pub sent_ns: u64,
    /// When its outcome was known.
    pub resolved_ns: u64,
    /// The batch's base offset, when the attempt succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The messages of the batch, in batch order.
    pub ids: Vec<String>,
}

impl Trace {
    pub fn with_clock(clock: fn() -> u64) -> Trace {
        Trace {
            events: Vec::new(),
            attempts: Vec::new(),
            notes: Vec::new(),
            delivery: BTreeMap::new(),
            delivery_in_workload: BTreeMap::new(),
            hash: TraceHash::default(),
            clock,
        }
    }

    pub fn now_ns(&self) -> u64 {
        (self.clock)()
    }

    pub fn record(&mut self, process: &str, kind: EventType, op: Op) {
        let event = Event::new(self.now_ns(), process, kind, op);
        self.record_event(event);
    }

    /// Records an event built by the caller (a group member's, stamped with its group).
    pub fn record_event(&mut self, event: Event) {
        // Only strings, integers and sequences of them, written into a hash: cannot fail.
        history::write_json_line(&event, &mut self.hash)
            .expect("history events always serialize to JSON");
        self.events.push(event);
    }

    pub fn note(&mut self, time_ns: u64, text: String) {
        self.hash.update(&time_ns.to_be_bytes());
        self.hash.update(text.as_bytes());
        self.notes.push((time_ns, text));
    }

    /// Records `process`'s delivery counters; `in_workload` while the workload phase runs.
    pub fn report_delivery(&mut self, process: &str, stats: DeliveryStats, in_workload: bool) {
        let mut maps = vec![&mut self.delivery];
        if in_workload {
            maps.push(&mut self.delivery_in_workload);
        }
        for map in maps {
            match map.get_mut(process) {
                Some(s) => *s = stats,
                None => {
                    map.insert(process.to_string(), stats);
                }
            }
        }
    }

    pub fn hash(&self) -> String {
        self.hash.hex()
    }
}
