//! Why a run fails: one [`Violation`] per broken bound or run-level property, typed so that
//! `explore` can list them, `shrink` can ask whether a smaller schedule breaks the *same* bound,
//! and the text stays in one place.

use std::fmt;

use fathom_history::Anomaly;

/// One reason a run fails.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    /// More of an anomaly class than the scenario's `[expect]` allows.
    Anomaly {
        class: Anomaly,
        count: u64,
        bound: u64,
    },
    /// A bound on a group class in a run without group processing to judge it by: never a
    /// silent zero.
    Unjudged { class: Anomaly },
    /// Fewer acknowledged sends than `acked_min`.
    AckedMin { acked: u64, min: u64 },
    /// Fewer distinct messages read than `read_min`.
    ReadMin { read: u64, min: u64 },
    /// Fewer push overflows than `push_overflows_min`: the slow consumer was not flooded.
    PushOverflowsMin { overflows: u64, min: u64 },
    /// Fewer records rejected by share groups than `rejected_min`: a poison message was not.
    RejectedMin { rejected: u64, min: u64 },
    /// More out-of-order first deliveries per ordering key by share groups than
    /// `out_of_order_per_key` allows (a `key_shared` group must keep each key's order).
    OutOfOrderPerKey { count: u64, bound: u64 },
    /// More sends ended unknown although their record was read than `unknown_in_log` allows.
    UnknownInLog { count: u64, bound: u64 },
    /// The final read gave up before the high watermark of these partitions.
    FinalReadIncomplete { partitions: Vec<String> },
    /// Two brokers led one partition in one epoch (a term): never allowed, so never a bound of
    /// its own. `seen_by_brokers` counts the times a broker met another leader of its own term;
    /// `epochs` are the partitions' epochs the simulator saw two brokers lead, met or not.
    LeaderConflict {
        seen_by_brokers: u64,
        epochs: Vec<String>,
    },
    /// After the final heal these partitions had no leader, or the final read did not deliver
    /// them, within `liveness_s`.
    Unavailable {
        partitions: Vec<String>,
        liveness_s: f64,
    },
    /// The run had not finished by its simulated-time limit (seconds from the start).
    Stuck { limit_s: f64 },
}

impl Violation {
    /// The bound or property broken, without the counts: what `shrink` keeps violated
    /// (`lost`, `acked_min`, `unavailable`, ...).
    pub fn key(&self) -> &'static str {
        match self {
            Violation::Anomaly { class, .. } | Violation::Unjudged { class } => class.name(),
            Violation::AckedMin { .. } => "acked_min",
            Violation::ReadMin { .. } => "read_min",
            Violation::PushOverflowsMin { .. } => "push_overflows_min",
            Violation::RejectedMin { .. } => "rejected_min",
            Violation::OutOfOrderPerKey { .. } => "out_of_order_per_key",
            Violation::UnknownInLog { .. } => "unknown_in_log",
            Violation::FinalReadIncomplete { .. } => "final_read_incomplete",
            Violation::LeaderConflict { .. } => "leader_conflict",
            Violation::Unavailable { .. } => "unavailable",
            Violation::Stuck { .. } => "stuck",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Anomaly {
                class,
                count,
                bound,
            } => write!(f, "{class}: {count} found, at most {bound} allowed"),
            Violation::Unjudged { class } => write!(
                f,
                "{class}: bounded, but the run had no group or share consumption to judge it by"
            ),
            Violation::AckedMin { acked, min } => write!(
                f,
                "acked: {acked} sends acknowledged, at least {min} expected"
            ),
            Violation::ReadMin { read, min } => {
                write!(f, "read: {read} messages read, at least {min} expected")
            }
            Violation::PushOverflowsMin { overflows, min } => write!(
                f,
                "push_overflows: {overflows} receive-buffer overflows, at least {min} expected"
            ),
            Violation::RejectedMin { rejected, min } => write!(
                f,
                "rejected: {rejected} records rejected by share groups, at least {min} expected"
            ),
            Violation::OutOfOrderPerKey { count, bound } => write!(
                f,
                "out_of_order_per_key: {count} first deliveries behind a later one of their \
                 ordering key, at most {bound} allowed"
            ),
            Violation::UnknownInLog { count, bound } => write!(
                f,
                "unknown_in_log: {count} sends ended unknown although their record was read, \
                 at most {bound} allowed"
            ),
            Violation::FinalReadIncomplete { partitions } => write!(
                f,
                "the final read did not reach the high watermark of {}",
                partitions.join(", ")
            ),
            Violation::LeaderConflict {
                seen_by_brokers,
                epochs,
            } => write!(
                f,
                "leader_conflict: two brokers led {} ({seen_by_brokers} times a broker saw two \
                 leaders in one term)",
                match epochs.is_empty() {
                    true => "a partition in one epoch".to_string(),
                    false => epochs.join(", "),
                }
            ),
            Violation::Unavailable {
                partitions,
                liveness_s,
            } => write!(
                f,
                "unavailable: {} had no leader or were not delivered within {liveness_s} s \
                 of the final heal",
                partitions.join(", ")
            ),
            Violation::Stuck { limit_s } => write!(
                f,
                "stuck: the run had not finished after {limit_s} simulated seconds"
            ),
        }
    }
}
