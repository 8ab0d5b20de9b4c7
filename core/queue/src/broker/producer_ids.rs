//! Producer ids that are unique across the cluster and across restarts, without a central
//! allocator.
//!
//! An id packs `(broker id, incarnation, counter)` into a u64:
//!
//! ```text
//! bits 63..48  broker id      (BROKER_ID_BITS)
//! bits 47..24  incarnation    (INCARNATION_BITS), from 1
//! bits 23..0   counter        (COUNTER_BITS)
//! ```
//!
//! Uniqueness: broker ids are unique in the cluster config, so two brokers never share an id.
//! One broker hands out the ids of an incarnation only after a record naming that incarnation is
//! durable (appended and synced through [`StorageOp`]s, never as a side effect), and a
//! restarted broker starts past the highest incarnation on its disk, so no two runs of a broker
//! share an incarnation; within a run the counter only rises, and a full counter moves on to a
//! new incarnation the same way. Incarnation 0 is never used, so no id is 0
//! ([`crate::log::batch::NO_PRODUCER_ID`]). This relies on the disk returning what was synced,
//! as replication's hard state does.
//!
//! The incarnation is written lazily, on the first `InitProducerId` a run receives, so a broker
//! that never serves an idempotent producer never writes the file.
//!
//! Files: `producer-ids/incarnation.0` and `incarnation.1` under the broker's data dir (a name no
//! partition directory can take), each holding one [`meta`] record. Incarnation `n` goes to file
//! `n % 2` after that file is cut to nothing, so the other file keeps `n - 1` until `n` is
//! durable and the files never grow.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::broker::ConnId;
use crate::ids::NodeId;
use crate::log::{meta, StorageOp, SyncOwner, SyncToken};
use crate::protocol::{ErrorCode, ProducerIdentity};

pub const BROKER_ID_BITS: u32 = 16;
pub const INCARNATION_BITS: u32 = 24;
pub const COUNTER_BITS: u32 = 24;
/// `InitProducerId` requests waiting for an incarnation to become durable; past this they are
/// refused with `Busy`.
pub const INIT_WAITERS_MAX: usize = 1024;

/// The directory of the incarnation files, relative to the broker's data dir.
pub const PRODUCER_IDS_DIR: &str = "producer-ids";
const INCARNATION_FILES: [&str; 2] = ["incarnation.0", "incarnation.1"];

const INCARNATION_MAX: u64 = (1 << INCARNATION_BITS) - 1;
const COUNTER_END: u64 = 1 << COUNTER_BITS;
const BROKER_ID_MAX: NodeId = (1 << BROKER_ID_BITS) - 1;

/// Packs an id; see the module docs.
pub fn producer_id(broker: NodeId, incarnation: u64, counter: u64) -> u64 {
    debug_assert!(broker <= BROKER_ID_MAX && incarnation <= INCARNATION_MAX);
    debug_assert!(counter < COUNTER_END);
    ((broker as u64) << (INCARNATION_BITS + COUNTER_BITS)) | (incarnation << COUNTER_BITS) | counter
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incarnation {
    /// Nothing written this run; the disk's highest is `durable`.
    Unwritten {
        durable: u64,
    },
    /// Written; waiting for its sync with this token.
    Syncing {
        incarnation: u64,
        token: u64,
    },
    Ready {
        incarnation: u64,
    },
}

/// Hands out producer ids for one broker. Calling contract: feed `InitProducerId` requests to
/// [`allocate`](Self::allocate), drain [`poll_storage`](Self::poll_storage) after each call,
/// report finished syncs of tokens owned by [`SyncOwner::ProducerIds`] with
/// [`handle_synced`](Self::handle_synced), and send the answers it returns.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    broker: NodeId,
    incarnation: Incarnation,
    counter: u64,
    files_exist: [bool; 2],
    next_token: u64,
    waiters: Vec<(ConnId, u64)>,
    storage: VecDeque<StorageOp>,
}

impl ProducerIdAllocator {
    /// From the files of [`PRODUCER_IDS_DIR`]: `(name within the dir, contents)`.
    pub fn recover(broker: NodeId, files: &[(String, Bytes)]) -> ProducerIdAllocator {
        let mut durable = 0;
        let mut files_exist = [false; 2];
        for (i, name) in INCARNATION_FILES.iter().enumerate() {
            let Some((_, bytes)) = files.iter().find(|(n, _)| n == name) else {
                continue;
            };
            files_exist[i] = true;
            if let Some(n) = meta::last_valid_record(bytes).and_then(|r| decode(&r)) {
                durable = durable.max(n);
            }
        }
        ProducerIdAllocator {
            broker,
            incarnation: Incarnation::Unwritten { durable },
            counter: 0,
            files_exist,
            next_token: 1,
            waiters: Vec::new(),
            storage: VecDeque::new(),
        }
    }

    /// An id for the request `(conn, correlation_id)`: `Some(answer)` now, or `None` when the
    /// answer waits for an incarnation to become durable (it comes out of `handle_synced`).
    pub fn allocate(
        &mut self,
        conn: ConnId,
        correlation_id: u64,
    ) -> Option<Result<ProducerIdentity, ErrorCode>> {
        // An id space too small for this broker: ask another.
        if self.broker > BROKER_ID_MAX {
            return Some(Err(ErrorCode::Busy));
        }
        if let Incarnation::Ready { incarnation } = self.incarnation {
            if self.counter < COUNTER_END {
                let id = producer_id(self.broker, incarnation, self.counter);
                self.counter += 1;
                return Some(Ok(ProducerIdentity {
                    producer_id: id,
                    producer_epoch: 0,
                }));
            }
        }
        if self.waiters.len() >= INIT_WAITERS_MAX {
            return Some(Err(ErrorCode::Busy));
        }
        let next = match self.incarnation {
            // Saturating: a damaged file may hold any number, and one past the limit is refused
            // below.
            Incarnation::Unwritten { durable } => durable.saturating_add(1),
            Incarnation::Ready { incarnation } => incarnation.saturating_add(1),
            Incarnation::Syncing { .. } => {
                self.waiters.push((conn, correlation_id));
                return None;
            }
        };
        if next > INCARNATION_MAX {
            return Some(Err(ErrorCode::Busy));
        }
        self.write(next);
        self.waiters.push((conn, correlation_id));
        None
    }

    /// The `Sync` with sequence number `token` of one of our files finished: the answers for
    /// every waiting request.
    pub fn handle_synced(
        &mut self,
        token: u64,
    ) -> Vec<(ConnId, u64, Result<ProducerIdentity, ErrorCode>)> {
        let Incarnation::Syncing {
            incarnation,
            token: t,
        } = self.incarnation
        else {
            return Vec::new();
        };
        if t != token {
            return Vec::new();
        }
        self.incarnation = Incarnation::Ready { incarnation };
        self.counter = 0;
        let waiters = std::mem::take(&mut self.waiters);
        let mut answers = Vec::with_capacity(waiters.len());
        for (conn, correlation_id) in waiters {
            // Should the counter run out again, the rest wait for the next incarnation.
            if let Some(answer) = self.allocate(conn, correlation_id) {
                answers.push((conn, correlation_id, answer));
            }
        }
        answers
    }

    /// A connection closed: forget its waiting requests.
    pub fn handle_disconnected(&mut self, conn: ConnId) {
        self.waiters.retain(|(c, _)| *c != conn);
    }

    pub fn poll_storage(&mut self) -> Option<StorageOp> {
        self.storage.pop_front()
    }

    fn write(&mut self, incarnation: u64) {
        let file = (incarnation % 2) as usize;
        let path = format!("{PRODUCER_IDS_DIR}/{}", INCARNATION_FILES[file]);
        if self.files_exist[file] {
            self.storage.push_back(StorageOp::Truncate {
                path: path.clone(),
                len: 0,
            });
        }
        self.files_exist[file] = true;
        self.storage.push_back(StorageOp::Append {
            path: path.clone(),
            bytes: meta::encode_mirrored(&incarnation.to_be_bytes()),
        });
        let token = self.next_token;
        self.next_token += 1;
        self.storage.push_back(StorageOp::Sync {
            path,
            token: SyncToken {
                owner: SyncOwner::ProducerIds,
                seq: token,
            },
        });
        self.incarnation = Incarnation::Syncing { incarnation, token };
    }
}

fn decode(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::MemDisk;

    fn run_storage(a: &mut ProducerIdAllocator, disk: &mut MemDisk) -> Vec<u64> {
        let mut tokens = Vec::new();
        while let Some(op) = a.poll_storage() {
            disk.apply(&op);
            if let StorageOp::Sync { path, token } = &op {
                disk.complete_sync(path);
                tokens.push(token.seq);
            }
        }
        tokens
    }

    fn files(disk: &MemDisk) -> Vec<(String, Bytes)> {
        disk.load()
            .into_iter()
            .filter_map(|(p, b)| Some((p.strip_prefix("producer-ids/")?.to_string(), b)))
            .collect()
    }

    /// Ids are handed out only once their incarnation is durable, and a restarted broker never
    /// repeats an id of an earlier run, however many runs there were.
    #[test]
    fn ids_are_unique_across_restarts() {
        let mut disk = MemDisk::default();
        let mut seen = std::collections::BTreeSet::new();
        for run in 0..5 {
            let mut a = ProducerIdAllocator::recover(7, &files(&disk));
            assert_eq!(a.allocate(1, 1), None, "run {run}: waits for the sync");
            let tokens = run_storage(&mut a, &mut disk);
            let answers = a.handle_synced(tokens[0]);
            let mut ids: Vec<u64> = answers
                .into_iter()
                .map(|(_, _, r)| r.unwrap().producer_id)
                .collect();
            for c in 2..5 {
                ids.push(a.allocate(1, c).unwrap().unwrap().producer_id);
            }
            for id in ids {
                assert_ne!(id, 0);
                assert_eq!(id >> 48, 7, "the broker id is in the top bits");
                assert!(seen.insert(id), "run {run}: id {id:#x} repeated");
            }
            if run % 2 == 1 {
                // A crash that tears nothing durable away.
                disk.crash();
            }
        }
        assert!(
            disk.files.values().all(|f| f.len() <= 32),
            "the files never grow (one record, mirrored)"
        );
    }

    /// A crash before the incarnation's sync completes loses it; since no id of it was handed
    /// out, the next run may reuse the number.
    #[test]
    fn unsynced_incarnation_hands_out_nothing() {
        let mut disk = MemDisk::default();
        let mut a = ProducerIdAllocator::recover(1, &files(&disk));
        assert_eq!(a.allocate(1, 1), None);
        while let Some(op) = a.poll_storage() {
            disk.apply(&op);
        }
        disk.crash();
        let mut b = ProducerIdAllocator::recover(1, &files(&disk));
        assert_eq!(b.allocate(1, 1), None);
        let tokens = run_storage(&mut b, &mut disk);
        let answers = b.handle_synced(tokens[0]);
        assert_eq!(
            answers[0].2.clone().unwrap().producer_id,
            producer_id(1, 1, 0)
        );
    }
}
