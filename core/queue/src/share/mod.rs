//! Share groups: message-granularity consumption (KIP-932; RocketMQ 5's POP, Pulsar's Shared
//! subscriptions), claim C3.
//!
//! The members of a share group read the same partitions together. For every partition, the
//! partition's leader is the share-partition leader: it keeps a [`SharePartition`] per group,
//! hands each fetching member records no other member holds, and takes each record's
//! acknowledgement. A record is *available*, *acquired* by one member until a lock deadline,
//! or done (*acknowledged* or *archived*, after which it is forgotten). A lock that expires makes
//! the record available again; each acquisition counts a delivery attempt, and an available
//! record that has used up its attempts is archived instead of delivered again.
//!
//! A group with a dead-letter topic gives such a record [`ShareSettings::dead_letter_deliveries`]
//! more deliveries before it archives it (Pulsar's redelivery past `maxRedeliverCount`). Their
//! delivery count exceeds `delivery_attempts_max`, which tells the member to copy the record to
//! the dead-letter topic and reject it instead of processing it: so a record whose last attempt
//! ended in a lock expiry (its member crashed or stalled) still reaches the dead-letter topic,
//! which the member alone, holding it, could not have ensured.
//!
//! # Key_Shared
//!
//! A group in [`ShareMode::KeyShared`] (Pulsar's Key_Shared subscription) keeps, besides the
//! above, the order of each [ordering key](ordering_key): a record is acquired only while no
//! record of its key is acquired by any member and no earlier record of its key is still in
//! flight, so per partition and key, records are first delivered in offset order, to one member
//! at a time (PIP-379's "draining hashes" in spirit: a key moves to another member only once
//! nothing of it is held). A new record passed over for its key is *deferred*: it enters the
//! in-flight window as available ([`Change::Defer`]), to be acquired once its key is free. The
//! price is the one Pulsar documents: the records of one key go no faster than one member.
//!
//! # Persistence
//!
//! Every change but a lock's expiry is a [`Change`], written as a control batch into the
//! partition's own log (see [`record`]) before the member hears of it, so it is replicated and
//! committed like the data it describes. A new leader rebuilds the share state of a partition by
//! replaying the control batches of its log, exactly as the old leader applied them: it neither
//! hands out an acknowledged record again nor forgets an acquired one. The locks it rebuilds run
//! from the moment of the rebuild (the old leader's deadlines are in another clock), which can
//! only hold a record longer, never shorter.
//!
//! Expiry is not persisted: an expired lock and a replayed one differ only in when the record
//! becomes available again, which a new leader's fresh deadline decides.
//!
//! That is the default, [`ShareFailover::KeepLocks`](crate::config::ShareFailover). Under
//! `Release` (KIP-932's behaviour, whose share-group state persists delivery counts but not
//! acquisitions), a new leader replays the log the same way and then releases every record
//! acquired in an earlier term, with that acquisition's delivery attempt taken back, as
//! KIP-932's new leader, which never learns of the acquisition, would: nothing waits out a
//! lock, and a member still holding such a record is refused its acknowledgement
//! ([`ShareError::LockExpired`]) and the record goes to whoever fetches it next. Acquisitions of
//! the leader's own term survive a rebuild in that term (after a failed proposal).
//!
//! # Bounds
//!
//! In-flight records (available after a release, or acquired) per share-partition are at most
//! [`ShareSettings::record_locks_max`] (KIP-932's `group.share.partition.max.record.locks`,
//! default 200): a fetch that finds the window full acquires only redeliveries.

pub mod record;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Instant;

/// KIP-932's `group.share.record.lock.duration.ms` default.
pub const ACQUISITION_LOCK_MS_DEFAULT: u32 = 30_000;
/// KIP-932's `group.share.delivery.count.limit` default.
pub const DELIVERY_ATTEMPTS_MAX_DEFAULT: u16 = 5;
/// KIP-932's `group.share.partition.max.record.locks` default.
pub const RECORD_LOCKS_MAX_DEFAULT: u32 = 200;
/// Range the broker accepts for a lock (KIP-932 bounds it to 1 s–1 h by broker configuration).
pub const ACQUISITION_LOCK_MS_RANGE: std::ops::RangeInclusive<u32> = 100..=3_600_000;
/// Range of delivery attempts (KIP-932: 2–10).
pub const DELIVERY_ATTEMPTS_RANGE: std::ops::RangeInclusive<u16> = 1..=100;
/// Range of the dead-letter deliveries after the attempts (0: archive at once, as KIP-932).
pub const DEAD_LETTER_DELIVERIES_RANGE: std::ops::RangeInclusive<u16> = 0..=10;
/// Range of the in-flight window (KIP-932: 100–10,000).
pub const RECORD_LOCKS_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;
/// Longest member id a broker accepts: an id is written into every change record.
pub const MEMBER_ID_BYTES_MAX: usize = 255;
/// Most distinct ordering keys one acquisition tracks (the keys of the records it scans, at most
/// the in-flight window [`RECORD_LOCKS_RANGE`] allows) and a workload's producer may use.
pub const ORDERING_KEYS_MAX: u32 = 10_000;
// The keys an acquisition holds are those of in-flight records: the window bounds them.
const _: () = assert!(*RECORD_LOCKS_RANGE.end() <= ORDERING_KEYS_MAX);

/// How a share group hands out records, named by every fetch ([`crate::protocol::Request::ShareFetch`]).
/// All members of a group must agree: a share-partition serves one mode, fixed by its first
/// acquisition, and refuses a fetch naming the other with [`ShareError::ModeMismatch`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ShareMode {
    /// Any available record to any member (KIP-932; Pulsar Shared): order is given up.
    #[default]
    Shared,
    /// One member at a time per ordering key, in offset order (Pulsar Key_Shared).
    KeyShared,
}

/// The ordering key of a record key: the key up to its first `/` (all of it without one), so
/// that keys like `customer-7/order-912` order by customer. The workload's message ids carry
/// their ordering key this way.
pub fn ordering_key(key: &[u8]) -> &[u8] {
    key.iter()
        .position(|&b| b == b'/')
        .map_or(key, |slash| &key[..slash])
}

/// The hash a share-partition keeps per in-flight record of a [`ShareMode::KeyShared`] group:
/// CRC32C of its [`ordering_key`]. Two keys that collide are ordered as one key (stricter, never
/// looser).
pub fn ordering_key_hash(key: &[u8]) -> u32 {
    crc32c::crc32c(ordering_key(key))
}

/// A share group's settings, as its members send them with every fetch. All members of a group
/// are expected to agree; the values of the fetch that acquires a record are the ones that
/// record's lock and attempt count use.
///
/// A scenario's `[[consumers]]` table of `kind = "share"` holds these under the same names;
/// serde takes [`ShareSettings::default`] for what it leaves out (on the wire every field is
/// always present).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShareSettings {
    pub acquisition_lock_ms: u32,
    pub delivery_attempts_max: u16,
    pub record_locks_max: u32,
    /// Deliveries of a record past `delivery_attempts_max`, each for copying it to a
    /// dead-letter topic (see the module docs); 0 archives it at once.
    pub dead_letter_deliveries: u16,
}

impl Default for ShareSettings {
    fn default() -> Self {
        ShareSettings {
            acquisition_lock_ms: ACQUISITION_LOCK_MS_DEFAULT,
            delivery_attempts_max: DELIVERY_ATTEMPTS_MAX_DEFAULT,
            record_locks_max: RECORD_LOCKS_MAX_DEFAULT,
            dead_letter_deliveries: 0,
        }
    }
}

impl ShareSettings {
    /// Whether every value lies in the range the broker accepts.
    pub fn check(&self) -> Result<(), ShareError> {
        match self.out_of_range() {
            None => Ok(()),
            Some(_) => Err(ShareError::InvalidSettings),
        }
    }

    /// Deliveries of one record in all, dead-letter deliveries included.
    pub fn deliveries_max(&self) -> u16 {
        self.delivery_attempts_max
            .saturating_add(self.dead_letter_deliveries)
    }

    /// Whether a delivery with this count is a dead-letter delivery: past the attempts.
    pub fn is_dead_letter_delivery(&self, delivery_count: u16) -> bool {
        delivery_count > self.delivery_attempts_max
    }

    /// The first field outside the range the broker accepts, with that range.
    pub fn out_of_range(&self) -> Option<(&'static str, String)> {
        let fields = [
            (
                "acquisition_lock_ms",
                ACQUISITION_LOCK_MS_RANGE.contains(&self.acquisition_lock_ms),
                format!("{ACQUISITION_LOCK_MS_RANGE:?}"),
            ),
            (
                "delivery_attempts_max",
                DELIVERY_ATTEMPTS_RANGE.contains(&self.delivery_attempts_max),
                format!("{DELIVERY_ATTEMPTS_RANGE:?}"),
            ),
            (
                "record_locks_max",
                RECORD_LOCKS_RANGE.contains(&self.record_locks_max),
                format!("{RECORD_LOCKS_RANGE:?}"),
            ),
            (
                "dead_letter_deliveries",
                DEAD_LETTER_DELIVERIES_RANGE.contains(&self.dead_letter_deliveries),
                format!("{DEAD_LETTER_DELIVERIES_RANGE:?}"),
            ),
        ];
        fields
            .into_iter()
            .find(|(_, within, _)| !within)
            .map(|(field, _, range)| (field, range))
    }
}

/// How a member acknowledges a record it holds (KIP-932's accept, release, reject).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AckKind {
    /// Processed: never delivered again.
    Accept,
    /// Not processed: deliver it again (to any member), if attempts remain.
    Release,
    /// Unprocessable: archive it (a client that dead-letters copies it first).
    Reject,
}

impl AckKind {
    pub const ALL: [AckKind; 3] = [AckKind::Accept, AckKind::Release, AckKind::Reject];

    pub const fn name(self) -> &'static str {
        match self {
            AckKind::Accept => "accept",
            AckKind::Release => "release",
            AckKind::Reject => "reject",
        }
    }

    pub fn from_name(name: &str) -> Option<AckKind> {
        AckKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Why a share request, or one acknowledgement in it, was refused; each has its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ShareError {
    /// The record is not held by this member: never acquired by it, acknowledged already, or
    /// acquired by another member since.
    #[error("the record is not acquired by this member")]
    NotAcquired,
    /// The member held the record, but its lock expired before the acknowledgement came: the
    /// record is available again (or already someone else's).
    #[error("the record's acquisition lock expired")]
    LockExpired,
    #[error("share settings outside the broker's accepted ranges")]
    InvalidSettings,
    #[error("invalid share group name or member id")]
    InvalidName,
    /// The broker keeps as many share-partitions as its limit allows.
    #[error("the broker holds as many share-partitions as it may")]
    SharePartitionsFull,
    /// The fetch names a [`ShareMode`] other than the one the share-partition serves.
    #[error("the share group's members disagree on its mode (shared or key_shared)")]
    ModeMismatch,
}

impl ShareError {
    /// Worth asking again unchanged: only a full broker may make room.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ShareError::SharePartitionsFull)
    }
}

/// One persisted change of a share-partition; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// `member` acquired `offsets` (ascending), each one more delivery attempt, for
    /// `lock_ms`. `keys` is `None` in [`ShareMode::Shared`]; in [`ShareMode::KeyShared`] it holds
    /// each offset's [`ordering_key_hash`], in the same order.
    Acquire {
        member: String,
        offsets: Vec<u64>,
        lock_ms: u32,
        keys: Option<Vec<u32>>,
    },
    /// New records (offset, ordering key hash; ascending, at or past the end) a
    /// [`ShareMode::KeyShared`] acquisition passed over because their key was held: in flight
    /// and available from now on, so that neither this leader nor a new one forgets them.
    /// Written before the acquisition it came with.
    Defer { records: Vec<(u64, u32)> },
    /// Acknowledgements by their holder.
    Acknowledge { offsets: Vec<(u64, AckKind)> },
    /// Available records that used up their delivery attempts.
    Archive { offsets: Vec<u64> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// `last_holder` is the member whose lock expired (or who released it), so that its late
    /// acknowledgement is told [`ShareError::LockExpired`] rather than "not acquired".
    Available {
        last_holder: Option<String>,
    },
    Acquired {
        member: String,
        deadline: Instant,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct InFlight {
    state: State,
    /// Acquisitions so far.
    deliveries: u16,
    /// The [`ordering_key_hash`] of the record, in a [`ShareMode::KeyShared`] partition.
    key: Option<u32>,
}

/// One record a fetch acquired, with its attempt number (1 for a first delivery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acquired {
    pub offset: u64,
    pub delivery_count: u16,
}

/// What one acquisition decided: the records a member gets and those archived on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acquisition {
    pub acquired: Vec<Acquired>,
    pub archived: Vec<u64>,
    /// The changes to persist, in the order they were applied.
    pub changes: Vec<Change>,
}

/// The share state of one partition for one group.
///
/// Contract: every offset below [`end`](Self::end) that is not in flight is done (acknowledged,
/// archived, or not a data record); no offset at or past `end` was ever acquired (deferred
/// records, in flight and available, may lie there: [`Change::Defer`] does not move `end`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharePartition {
    /// KIP-932's share-partition end offset (SPEO).
    end: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// Fixed by the first acquisition (or its replay); `None` before.
    mode: Option<ShareMode>,
}

impl SharePartition {
    /// The share-partition start offset (SPSO): the first offset not yet done.
    pub fn start(&self) -> u64 {
        self.in_flight.keys().next().copied().unwrap_or(self.end)
    }

    pub fn end(&self) -> u64 {
        self.end
    }

    /// Records available or acquired: the window [`ShareSettings::record_locks_max`] bounds.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The memory this state takes: the struct, each in-flight record's map entry, and the
    /// member names records carry (the holder, or the last one of an available record).
    pub fn state_bytes(&self) -> u64 {
        let entry = size_of::<(u64, InFlight)>();
        let names: usize = self
            .in_flight
            .values()
            .map(|r| match &r.state {
                State::Acquired { member, .. } => member.len(),
                State::Available { last_holder } => last_holder.as_ref().map_or(0, String::len),
            })
            .sum();
        (size_of::<Self>() + entry * self.in_flight.len() + names) as u64
    }

    pub fn acquired(&self) -> usize {
        self.in_flight
            .values()
            .filter(|r| matches!(r.state, State::Acquired { .. }))
            .count()
    }

    /// The earliest lock deadline, for the broker's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.in_flight
            .values()
            .filter_map(|r| match r.state {
                State::Acquired { deadline, .. } => Some(deadline),
                State::Available { .. } => None,
            })
            .min()
    }

    /// Whether a fetch now could acquire something, given the offsets of data records that
    /// exist past [`end`](Self::end) (`new_records`).
    pub fn has_available(&self, settings: &ShareSettings, new_records: bool) -> bool {
        let redeliverable = self
            .in_flight
            .values()
            .any(|r| matches!(r.state, State::Available { .. }));
        let room = self.in_flight.len() < settings.record_locks_max as usize;
        redeliverable || (new_records && room)
    }

    /// Checks that a fetch naming `mode` may use this share-partition, whose mode the first
    /// such check (or a replayed change) fixes.
    pub fn check_mode(&mut self, mode: ShareMode) -> Result<(), ShareError> {
        match *self.mode.get_or_insert(mode) == mode {
            true => Ok(()),
            false => Err(ShareError::ModeMismatch),
        }
    }

    /// Acquires up to `max_records` for `member`: records released or whose lock expired
    /// first (oldest first), then new records from `new_offsets` (the data records at or past
    /// [`end`](Self::end), ascending), while the window has room. An available record that has
    /// used its attempts is archived instead. The result's changes are applied already.
    pub fn acquire(
        &mut self,
        now: Instant,
        member: &str,
        max_records: u32,
        settings: &ShareSettings,
        new_offsets: impl IntoIterator<Item = u64>,
    ) -> Acquisition {
        let max = max_records as usize;
        let mut out = Acquisition::default();
        let mut offsets = Vec::new();
        for (&offset, r) in &self.in_flight {
            if offsets.len() >= max {
                break;
            }
            if !matches!(r.state, State::Available { .. }) {
                continue;
            }
            match r.deliveries >= settings.deliveries_max() {
                true => out.archived.push(offset),
                false => offsets.push(offset),
            }
        }
        let fresh = max
            .saturating_sub(offsets.len())
            .min(self.room(settings, &out));
        offsets.extend(
            new_offsets
                .into_iter()
                .filter(|&o| o >= self.end)
                .take(fresh),
        );
        self.conclude(now, member, settings, out, Vec::new(), offsets, None)
    }

    /// [`acquire`](Self::acquire) for a [`ShareMode::KeyShared`] group: `new_records` are the
    /// data records at or past [`end`](Self::end) with their [`ordering_key_hash`], ascending.
    /// A record is taken only when its key is free (see the module documentation): no record of
    /// it acquired by anyone, and none earlier in flight that this acquisition does not take
    /// too. A new record whose key is not free is deferred; it uses room in the window.
    pub fn acquire_keyed(
        &mut self,
        now: Instant,
        member: &str,
        max_records: u32,
        settings: &ShareSettings,
        new_records: impl IntoIterator<Item = (u64, u32)>,
    ) -> Acquisition {
        let max = max_records as usize;
        let mut out = Acquisition::default();
        // Keys that are not free. Bounded by the records in flight (at most the window, which
        // RECORD_LOCKS_RANGE keeps within ORDERING_KEYS_MAX).
        let held: std::collections::BTreeSet<u32> = self
            .in_flight
            .values()
            .filter(|r| matches!(r.state, State::Acquired { .. }))
            .filter_map(|r| r.key)
            .collect();
        let mut taken: Vec<(u64, u32)> = Vec::new();
        for (&offset, r) in &self.in_flight {
            if taken.len() >= max {
                break;
            }
            if !matches!(r.state, State::Available { .. }) {
                continue;
            }
            if r.deliveries >= settings.deliveries_max() {
                out.archived.push(offset);
                continue;
            }
            // Skipped, its key stays held: later records of it wait behind this one. (Every
            // record of a keyed partition has a key; one without would order nothing.)
            if !r.key.is_some_and(|k| held.contains(&k)) {
                taken.push((offset, r.key.unwrap_or_default()));
            }
        }
        // Every available record of a key not held was taken, or the fetch is full: a key is
        // not free for new records once an earlier record of it stays behind.
        let mut room = self.room(settings, &out);
        let mut deferred = Vec::new();
        for (offset, key) in new_records {
            if taken.len() >= max || room == 0 {
                break;
            }
            // Deferred records at or past the end are in flight already.
            if offset < self.end || self.in_flight.contains_key(&offset) {
                continue;
            }
            room -= 1;
            // A deferred record's key is held already, so every later one waits behind it.
            match held.contains(&key) {
                true => deferred.push((offset, key)),
                false => taken.push((offset, key)),
            }
        }
        let (offsets, keys) = taken.into_iter().unzip();
        self.conclude(now, member, settings, out, deferred, offsets, Some(keys))
    }

    /// Room the window leaves for new records, once `out`'s archives free theirs.
    fn room(&self, settings: &ShareSettings, out: &Acquisition) -> usize {
        let window = settings.record_locks_max as usize;
        (window + out.archived.len()).saturating_sub(self.in_flight.len())
    }

    /// Turns an acquisition's decisions into changes (archive, defer, acquire, in that order),
    /// applies them, and lists the acquired records.
    #[allow(clippy::too_many_arguments)]
    fn conclude(
        &mut self,
        now: Instant,
        member: &str,
        settings: &ShareSettings,
        mut out: Acquisition,
        deferred: Vec<(u64, u32)>,
        offsets: Vec<u64>,
        keys: Option<Vec<u32>>,
    ) -> Acquisition {
        let mut changes = Vec::new();
        if !out.archived.is_empty() {
            changes.push(Change::Archive {
                offsets: out.archived.clone(),
            });
        }
        if !deferred.is_empty() {
            changes.push(Change::Defer { records: deferred });
        }
        if !offsets.is_empty() {
            changes.push(Change::Acquire {
                member: member.to_string(),
                offsets,
                lock_ms: settings.acquisition_lock_ms,
                keys,
            });
        }
        for change in &changes {
            self.apply(now, change);
        }
        if let Some(Change::Acquire { offsets, .. }) = changes.last() {
            out.acquired = offsets
                .iter()
                .filter_map(|&offset| {
                    let r = self.in_flight.get(&offset)?;
                    Some(Acquired {
                        offset,
                        delivery_count: r.deliveries,
                    })
                })
                .collect();
        }
        out.changes = changes;
        out
    }

    /// Checks `acks` from `member` against the records it holds at `now`: the valid ones
    /// become one [`Change::Acknowledge`] (applied already), the others are returned with
    /// their error and change nothing. A record named twice counts once.
    pub fn acknowledge(
        &mut self,
        now: Instant,
        member: &str,
        acks: &[(u64, AckKind)],
    ) -> (Option<Change>, Vec<(u64, ShareError)>) {
        let mut valid: BTreeMap<u64, AckKind> = BTreeMap::new();
        let mut refused = Vec::new();
        for &(offset, kind) in acks {
            match self.check_holder(now, member, offset) {
                Ok(()) => {
                    valid.entry(offset).or_insert(kind);
                }
                Err(e) => refused.push((offset, e)),
            }
        }
        if valid.is_empty() {
            return (None, refused);
        }
        let change = Change::Acknowledge {
            offsets: valid.into_iter().collect(),
        };
        self.apply(now, &change);
        (Some(change), refused)
    }

    fn check_holder(&self, now: Instant, member: &str, offset: u64) -> Result<(), ShareError> {
        let Some(r) = self.in_flight.get(&offset) else {
            return Err(ShareError::NotAcquired);
        };
        match &r.state {
            State::Acquired {
                member: m,
                deadline,
            } if m == member => {
                if *deadline <= now {
                    Err(ShareError::LockExpired)
                } else {
                    Ok(())
                }
            }
            State::Available {
                last_holder: Some(m),
            } if m == member => Err(ShareError::LockExpired),
            _ => Err(ShareError::NotAcquired),
        }
    }

    /// Makes every record whose lock passed its deadline available again; returns how many.
    /// Not persisted (see the module documentation).
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        for r in self.in_flight.values_mut() {
            if let State::Acquired { member, deadline } = &r.state {
                if *deadline <= now {
                    r.state = State::Available {
                        last_holder: Some(member.clone()),
                    };
                    expired += 1;
                }
            }
        }
        expired
    }

    /// Makes those of `offsets` that are acquired available again and takes their
    /// acquisition's delivery attempt back: a new leader under
    /// [`ShareFailover::Release`](crate::config::ShareFailover) replaying an earlier leader's
    /// acquisition, which KIP-932's persisted state would not hold at all. Returns how many it
    /// released.
    pub fn release_acquired(&mut self, offsets: &[u64]) -> usize {
        let mut released = 0;
        for offset in offsets {
            let Some(r) = self.in_flight.get_mut(offset) else {
                continue;
            };
            if let State::Acquired { member, .. } = &r.state {
                r.state = State::Available {
                    last_holder: Some(member.clone()),
                };
                r.deliveries = r.deliveries.saturating_sub(1);
                released += 1;
            }
        }
        released
    }

    /// Applies one persisted change, as the leader that made it did or as a replay does. A
    /// replayed acquisition's lock runs from `now`.
    pub fn apply(&mut self, now: Instant, change: &Change) {
        match change {
            Change::Acquire {
                member,
                offsets,
                lock_ms,
                keys,
            } => {
                let mode = match keys {
                    None => ShareMode::Shared,
                    Some(_) => ShareMode::KeyShared,
                };
                self.mode.get_or_insert(mode);
                let deadline = now + Duration::from_millis(u64::from(*lock_ms));
                for (i, &offset) in offsets.iter().enumerate() {
                    if offset < self.end && !self.in_flight.contains_key(&offset) {
                        continue; // done already: a replay of a stale change must not revive it
                    }
                    let key = keys.as_ref().and_then(|k| k.get(i).copied());
                    let r = self.in_flight.entry(offset).or_insert(InFlight {
                        state: State::Available { last_holder: None },
                        deliveries: 0,
                        key,
                    });
                    r.deliveries = r.deliveries.saturating_add(1);
                    r.state = State::Acquired {
                        member: member.clone(),
                        deadline,
                    };
                    self.end = self.end.max(offset.saturating_add(1));
                }
            }
            Change::Acknowledge { offsets } => {
                for &(offset, kind) in offsets {
                    match kind {
                        AckKind::Accept | AckKind::Reject => {
                            self.in_flight.remove(&offset);
                        }
                        AckKind::Release => {
                            if let Some(r) = self.in_flight.get_mut(&offset) {
                                let last_holder = match &r.state {
                                    State::Acquired { member, .. } => Some(member.clone()),
                                    State::Available { last_holder } => last_holder.clone(),
                                };
                                r.state = State::Available { last_holder };
                            }
                        }
                    }
                }
            }
            Change::Archive { offsets } => {
                for offset in offsets {
                    self.in_flight.remove(offset);
                }
            }
            // Leaves `end` where it is: the acquisition it came with (applied next) may take
            // records between the deferred ones, which must still count as new then.
            Change::Defer { records } => {
                self.mode.get_or_insert(ShareMode::KeyShared);
                for &(offset, key) in records {
                    if offset < self.end || self.in_flight.contains_key(&offset) {
                        continue; // in flight or done already: a stale replay changes nothing
                    }
                    self.in_flight.insert(
                        offset,
                        InFlight {
                            state: State::Available { last_holder: None },
                            deliveries: 0,
                            key: Some(key),
                        },
                    );
                }
            }
        }
    }
}

/// Whether `name` may name a share group or a member: non-empty, short, no `\0` (the change
/// records' keys use it as a separator).
pub fn check_name(name: &str) -> Result<(), ShareError> {
    let ok = !name.is_empty() && name.len() <= MEMBER_ID_BYTES_MAX && !name.contains('\0');
    ok.then_some(()).ok_or(ShareError::InvalidName)
}
