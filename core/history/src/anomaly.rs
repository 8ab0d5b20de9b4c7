//! The anomaly classes the checker counts: one [`Anomaly`] variant per class, and [`Anomalies`],
//! a count per class. Everything that names a class (the checker, `fathom check`, summaries,
//! a scenario's `[expect]` bounds and its validation) derives the name from the variant, so a
//! new class is one variant here and one rule in the checker.

use std::fmt;
use std::ops::{Index, IndexMut};
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// One anomaly class, after Jepsen's Kafka workload. The declaration order is the fixed order
/// of every listing (text output, JSON objects, bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Anomaly {
    /// Ids acknowledged `ok` but never read by any poll, final read included.
    Lost,
    /// Ids read at more than one (topic, partition, offset).
    Duplicate,
    /// (topic, partition, offset) keys associated with more than one id, over acknowledged
    /// sends' offsets and reads together.
    InconsistentOffsets,
    /// Ids read whose send ended in `fail` (and never in `ok`).
    AbortedRead,
    /// Consecutive acknowledged sends of one process to one partition, in invoke order, whose
    /// offsets do not strictly rise.
    NonmonotonicSend,
    /// Polls of one process on one partition that jump over an offset known to hold a record:
    /// from the last offset of its previous non-empty poll (no assign between) to its first
    /// offset, or between two of its own records.
    PollSkip,
    /// Polls that start at or before the previous non-empty poll's last offset (same process
    /// and partition, no assign between), or whose offsets do not strictly rise.
    NonmonotonicPoll,
    /// Acknowledged messages below their group's final committed offset for their partition
    /// that no member of the group ever processed: the downstream missed them (claim C4's
    /// loss, what committing before processing risks). A group class.
    Unprocessed,
    /// Messages processed more than once by one group: counted, not bounded, in at-least-once
    /// configurations (claim C4's duplicates). A group class.
    Reprocessed,
    /// Pairs of members of one group whose processing of one partition overlaps in time (each
    /// member's span per generation, from its first to its last `process` of the partition).
    /// Expected with client-side rebalancing only; a bug anywhere else. A group class.
    SplitOwnership,
    /// Partitions whose replicas' committed logs differ; set by the caller from
    /// [`crate::check_replicas`], never by [`crate::check`].
    ReplicaDivergence,
    /// Acknowledged messages of a topic a share group consumed that the group never accepted
    /// nor rejected by the end (an acknowledgement of unknown outcome counts as made). A
    /// share class.
    Unconsumed,
    /// Records (a topic, partition and offset) a share group acquired again after one of its
    /// members' acceptance of them was confirmed: the share state forgot an acknowledgement
    /// (KIP-932 forbids it, across failovers too). A share class.
    RedeliveredAccepted,
}

impl Anomaly {
    /// Every class, in the fixed order.
    pub const ALL: [Anomaly; 13] = [
        Anomaly::Lost,
        Anomaly::Duplicate,
        Anomaly::InconsistentOffsets,
        Anomaly::AbortedRead,
        Anomaly::NonmonotonicSend,
        Anomaly::PollSkip,
        Anomaly::NonmonotonicPoll,
        Anomaly::Unprocessed,
        Anomaly::Reprocessed,
        Anomaly::SplitOwnership,
        Anomaly::ReplicaDivergence,
        Anomaly::Unconsumed,
        Anomaly::RedeliveredAccepted,
    ];

    /// A class judged from `process` events of consumer groups: a history with none cannot
    /// say anything about it, so its count is absent there rather than a silent zero.
    pub const fn is_group_class(self) -> bool {
        matches!(
            self,
            Anomaly::Unprocessed | Anomaly::Reprocessed | Anomaly::SplitOwnership
        )
    }

    /// A class judged from share groups' `acquire` and `acknowledge` events: absent from a
    /// history without them, like the group classes.
    pub const fn is_share_class(self) -> bool {
        matches!(self, Anomaly::Unconsumed | Anomaly::RedeliveredAccepted)
    }

    /// The class's name in files and output (`lost`, `poll_skip`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Anomaly::Lost => "lost",
            Anomaly::Duplicate => "duplicate",
            Anomaly::InconsistentOffsets => "inconsistent_offsets",
            Anomaly::AbortedRead => "aborted_read",
            Anomaly::NonmonotonicSend => "nonmonotonic_send",
            Anomaly::PollSkip => "poll_skip",
            Anomaly::NonmonotonicPoll => "nonmonotonic_poll",
            Anomaly::Unprocessed => "unprocessed",
            Anomaly::Reprocessed => "reprocessed",
            Anomaly::SplitOwnership => "split_ownership",
            Anomaly::ReplicaDivergence => "replica_divergence",
            Anomaly::Unconsumed => "unconsumed",
            Anomaly::RedeliveredAccepted => "redelivered_accepted",
        }
    }

    /// A short phrase for a report's column list: what one count of the class is.
    pub const fn describe(self) -> &'static str {
        match self {
            Anomaly::Lost => "acknowledged messages missing from every read",
            Anomaly::Duplicate => "messages stored at more than one offset",
            Anomaly::InconsistentOffsets => "offsets holding more than one message",
            Anomaly::AbortedRead => "reads of messages whose send failed",
            Anomaly::NonmonotonicSend => "acknowledgements out of send order",
            Anomaly::PollSkip => "polls that skipped an offset holding a record",
            Anomaly::NonmonotonicPoll => "polls that went backwards",
            Anomaly::ReplicaDivergence => {
                "partitions whose replicas disagree below the high watermark"
            }
            Anomaly::Unprocessed => {
                "acknowledged messages below a group's committed offset it never processed"
            }
            Anomaly::Reprocessed => "messages a group processed more than once",
            Anomaly::SplitOwnership => {
                "partitions two members of a group processed at overlapping times"
            }
            Anomaly::Unconsumed => {
                "acknowledged messages a share group never accepted nor rejected"
            }
            Anomaly::RedeliveredAccepted => "records a share group got again after accepting them",
        }
    }

    /// The class called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Anomaly> {
        Anomaly::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Every class's name, in the fixed order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Anomaly::ALL.into_iter().map(Anomaly::name)
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that width and alignment (`{:<22}`) apply.
        f.pad(self.name())
    }
}

impl FromStr for Anomaly {
    type Err = String;

    fn from_str(s: &str) -> Result<Anomaly, String> {
        Anomaly::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Anomaly::names().collect();
            format!(
                "unknown anomaly class {s:?} (classes: {})",
                names.join(", ")
            )
        })
    }
}

impl Serialize for Anomaly {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Anomaly {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Anomaly, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(de::Error::custom)
    }
}

/// A count per anomaly class; zero everywhere means the history is clean. Indexed by
/// [`Anomaly`]; serialized as an object with one member per class, in the fixed order. The
/// group classes ([`Anomaly::is_group_class`]) are present only when the history had group
/// consumption to judge ([`Anomalies::judge_groups`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Anomalies {
    counts: [u64; Anomaly::ALL.len()],
    groups: bool,
    shares: bool,
}

impl Anomalies {
    /// Every class judged, with its count, in the fixed order of [`Anomaly::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (Anomaly, u64)> + '_ {
        Anomaly::ALL
            .into_iter()
            .filter(|&a| self.is_judged(a))
            .map(|a| (a, self[a]))
    }

    /// Whether `class` was judged: always, but for a group or share class of a history
    /// without that kind of consumption.
    pub fn is_judged(&self, class: Anomaly) -> bool {
        (self.groups || !class.is_group_class()) && (self.shares || !class.is_share_class())
    }

    /// The count of the class called `name`, or `None` for an unknown name or a group class
    /// of a history without groups.
    pub fn get(&self, name: &str) -> Option<u64> {
        let class = Anomaly::from_name(name)?;
        self.is_judged(class).then(|| self[class])
    }

    /// The history had group consumption: the group classes are judged.
    pub fn judge_groups(&mut self) {
        self.groups = true;
    }

    pub fn groups_judged(&self) -> bool {
        self.groups
    }

    /// The history had share-group consumption: the share classes are judged.
    pub fn judge_shares(&mut self) {
        self.shares = true;
    }

    /// The sum over all classes.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Index<Anomaly> for Anomalies {
    type Output = u64;

    fn index(&self, class: Anomaly) -> &u64 {
        &self.counts[class.index()]
    }
}

impl IndexMut<Anomaly> for Anomalies {
    fn index_mut(&mut self, class: Anomaly) -> &mut u64 {
        &mut self.counts[class.index()]
    }
}

impl FromIterator<(Anomaly, u64)> for Anomalies {
    fn from_iter<I: IntoIterator<Item = (Anomaly, u64)>>(iter: I) -> Anomalies {
        let mut anomalies = Anomalies::default();
        for (class, count) in iter {
            anomalies[class] += count;
            anomalies.groups |= class.is_group_class();
            anomalies.shares |= class.is_share_class();
        }
        anomalies
    }
}

impl Serialize for Anomalies {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (class, count) in self.iter() {
            map.serialize_entry(class.name(), &count)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Anomalies {
    /// Every class must be present (the group classes all or none); unknown names are
    /// ignored, so an old reader can read a newer summary.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Anomalies, D::Error> {
        struct AnomaliesVisitor;
        impl<'de> Visitor<'de> for AnomaliesVisitor {
            type Value = Anomalies;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from anomaly class to count")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Anomalies, A::Error> {
                let mut anomalies = Anomalies::default();
                let mut seen = [false; Anomaly::ALL.len()];
                while let Some(name) = map.next_key::<String>()? {
                    match Anomaly::from_name(&name) {
                        Some(class) => {
                            anomalies[class] = map.next_value()?;
                            seen[class.index()] = true;
                        }
                        None => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                anomalies.groups = Anomaly::ALL
                    .into_iter()
                    .any(|a| a.is_group_class() && seen[a.index()]);
                anomalies.shares = Anomaly::ALL
                    .into_iter()
                    .any(|a| a.is_share_class() && seen[a.index()]);
                let required = |a: &Anomaly| anomalies.is_judged(*a);
                let missing = Anomaly::ALL.into_iter().filter(required);
                if let Some(class) = missing.into_iter().find(|a| !seen[a.index()]) {
                    return Err(de::Error::missing_field(class.name()));
                }
                Ok(anomalies)
            }
        }
        deserializer.deserialize_map(AnomaliesVisitor)
    }
}
