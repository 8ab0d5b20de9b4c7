//! An in-memory directory that applies a log's `StorageOp`s, with a crash model.
//!
//! The model follows what POSIX promises (and turmoil's file-system model enforces): an op
//! changes what reads see at once, but only a completed `Sync` of a file makes its contents as
//! of that `Sync` durable, together with the directory's entries (creations and removals) as of
//! that moment. A crash keeps what is durable; with `writeback`, it may also keep part of what
//! was not (a page-cache flush nobody asked for): any prefix of bytes appended to a durable file,
//! or a cut that was not synced. Files are told apart by incarnation, so a segment removed and
//! created again under the same name is a different file.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::log::{PartitionLog, StorageOp};
use crate::rng::Rng;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    incarnation: u64,
    pub bytes: Vec<u8>,
}

/// A `Sync` the driver has started but not yet reported: what it will make durable.
#[derive(Debug, Clone)]
struct SyncInFlight {
    /// Order in which the syncs were applied: a sync that finishes late never undoes what a
    /// later one made durable.
    seq: u64,
    token: u64,
    path: String,
    file: Option<File>,
    /// Every name in the directory and its incarnation, when the `Sync` was applied.
    entries: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    /// What reads see.
    pub files: BTreeMap<String, File>,
    /// What survives a crash.
    durable: BTreeMap<String, File>,
    syncs: VecDeque<SyncInFlight>,
    next_incarnation: u64,
    next_sync_seq: u64,
    /// The latest sync whose directory entries are durable.
    dir_synced_seq: u64,
    /// By path, the latest sync whose contents are durable.
    file_synced_seq: BTreeMap<String, u64>,
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// Applies every op the log has queued, in order.
    pub fn apply_ops(&mut self, log: &mut PartitionLog) {
        while let Some(op) = log.poll_op() {
            self.apply(op);
        }
    }

    pub fn apply(&mut self, op: StorageOp) {
        match op {
            StorageOp::Append { path, bytes } => {
                let next = &mut self.next_incarnation;
                let file = self.files.entry(path).or_insert_with(|| {
                    *next += 1;
                    File {
                        incarnation: *next,
                        bytes: Vec::new(),
                    }
                });
                file.bytes.extend_from_slice(&bytes);
            }
            StorageOp::Truncate { path, len } => {
                let file = self
                    .files
                    .get_mut(&path)
                    .expect("truncating a missing file");
                assert!(len <= file.bytes.len() as u64, "truncate grows {path}");
                file.bytes.truncate(len as usize);
            }
            StorageOp::Remove { path } => {
                assert!(
                    self.files.remove(&path).is_some(),
                    "removing missing {path}"
                );
            }
            StorageOp::Sync { path, token } => {
                let entries = self
                    .files
                    .iter()
                    .map(|(name, f)| (name.clone(), f.incarnation))
                    .collect();
                self.next_sync_seq += 1;
                self.syncs.push_back(SyncInFlight {
                    seq: self.next_sync_seq,
                    token: token.seq,
                    file: self.files.get(&path).cloned(),
                    path,
                    entries,
                });
            }
        }
    }

    pub fn syncs_in_flight(&self) -> usize {
        self.syncs.len()
    }

    /// The paths of the syncs in flight, oldest first.
    pub fn sync_paths(&self) -> Vec<String> {
        self.syncs.iter().map(|s| s.path.clone()).collect()
    }

    /// Completes the oldest `n` syncs in flight and reports each to the log, applying the ops
    /// that causes (a deferred sync) as they come.
    pub fn complete_syncs(&mut self, log: &mut PartitionLog, n: usize) {
        for _ in 0..n {
            self.complete_sync_at(log, 0);
        }
    }

    /// Completes the sync at position `at` (mod the number in flight; oldest first), as a
    /// driver running several fsyncs at once may, and reports it to the log.
    pub fn complete_sync_at(&mut self, log: &mut PartitionLog, at: usize) {
        if self.syncs.is_empty() {
            return;
        }
        let sync = self
            .syncs
            .remove(at % self.syncs.len())
            .expect("index is in range");
        if sync.seq > self.dir_synced_seq {
            self.dir_synced_seq = sync.seq;
            self.durable
                .retain(|name, _| sync.entries.contains_key(name));
            for (name, &incarnation) in &sync.entries {
                let durable_incarnation = self.durable.get(name).map(|f| f.incarnation);
                if durable_incarnation != Some(incarnation) {
                    self.durable.insert(
                        name.clone(),
                        File {
                            incarnation,
                            bytes: Vec::new(),
                        },
                    );
                }
            }
        }
        let newer = self
            .file_synced_seq
            .get(&sync.path)
            .is_none_or(|&seq| seq < sync.seq);
        if let Some(file) = sync.file.filter(|_| newer) {
            let durable = self.durable.get_mut(&sync.path);
            if let Some(durable) = durable.filter(|d| d.incarnation == file.incarnation) {
                *durable = file;
                self.file_synced_seq.insert(sync.path, sync.seq);
            }
        }
        log.handle_synced(sync.token);
        self.apply_ops(log);
    }

    /// Loses power: unsynced changes are gone, except what `writeback` (if given) decides the
    /// operating system had already written. Syncs in flight never complete.
    pub fn crash(&mut self, mut writeback: Option<&mut Rng>) {
        let mut after = self.durable.clone();
        for (name, file) in after.iter_mut() {
            let (Some(rng), Some(now)) = (writeback.as_deref_mut(), self.files.get(name)) else {
                continue;
            };
            if now.incarnation != file.incarnation {
                continue;
            }
            if now.bytes.starts_with(&file.bytes) {
                let extra = now.bytes.len() - file.bytes.len();
                let kept = rng.range_u64(0, extra as u64) as usize;
                file.bytes = now.bytes[..file.bytes.len() + kept].to_vec();
            } else if file.bytes.starts_with(&now.bytes) && rng.chance(0.5) {
                file.bytes = now.bytes.clone();
            }
        }
        self.files = after.clone();
        self.durable = after;
        self.syncs.clear();
    }

    /// The files of directory `dir`, as `recover` takes them.
    pub fn dir_files(&self, dir: &str) -> Vec<(String, Bytes)> {
        let prefix = format!("{dir}/");
        self.files
            .iter()
            .filter_map(|(path, f)| {
                let name = path.strip_prefix(&prefix)?;
                Some((name.to_string(), Bytes::from(f.bytes.clone())))
            })
            .collect()
    }

    pub fn file(&self, path: &str) -> &[u8] {
        &self.files[path].bytes
    }

    pub fn file_mut(&mut self, path: &str) -> &mut Vec<u8> {
        &mut self.files.get_mut(path).expect("no such file").bytes
    }

    /// Puts a file there as if someone else had written it (and it was durable).
    pub fn put(&mut self, path: &str, bytes: &[u8]) {
        self.next_incarnation += 1;
        let file = File {
            incarnation: self.next_incarnation,
            bytes: bytes.to_vec(),
        };
        self.files.insert(path.to_string(), file.clone());
        self.durable.insert(path.to_string(), file);
    }
}
