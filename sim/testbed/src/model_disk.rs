//! Fathom's own simulated disk, for a harness whose simulator has none (madsim's `fs` passes
//! through to the real disk and has no durability model).
//!
//! Each file has what the broker wrote (the page cache) and what survives a crash (the durable
//! copy). A crash throws the page cache away; with a block size, each unsynced append survives
//! as a random prefix of its whole blocks, a torn tail recovery must cut off. Reads can fail
//! (EIO) or return a flipped byte; writes can fail (EIO) or run out of space; a write can become
//! durable on its own (`sync_probability`), and the operating system writes everything back every
//! `os_writeback_ms`. The faults are the ones turmoil's file system offers (see [`DiskSpec`]),
//! and every draw comes from the run's seed through a ChaCha8 generator per broker.
//!
//! A new file survives a crash only once synced, as with turmoil's `sync_dir`; a removal becomes
//! durable at the next sync or writeback, so a crash before it brings the file back.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use fathom_driver::Disk;
use fathom_queue::log::StorageOp;
use fathom_queue::rng::Rng;

use crate::scenario::DiskSpec;

/// One file: the bytes the broker sees, the bytes a crash keeps, and what happened since the
/// last sync, in order (to tear it on a crash).
#[derive(Debug, Default, Clone)]
struct File {
    cached: Vec<u8>,
    /// `None`: never synced, so a crash removes it.
    durable: Option<Vec<u8>>,
    pending: Vec<Pending>,
}

#[derive(Debug, Clone)]
enum Pending {
    Append(Bytes),
    Truncate(u64),
}

impl File {
    /// Replays the pending operations onto the durable copy, which then equals the cache: a
    /// sync costs what was written since the last one, not the file's size (a saturated broker
    /// syncs a segment of many megabytes hundreds of times a second).
    fn make_durable(&mut self) {
        let durable = self.durable.get_or_insert_with(Vec::new);
        for op in self.pending.drain(..) {
            match op {
                Pending::Append(bytes) => durable.extend_from_slice(&bytes),
                Pending::Truncate(len) => {
                    durable.truncate(usize::try_from(len).unwrap_or(usize::MAX));
                }
            }
        }
        debug_assert_eq!(
            durable.len(),
            self.cached.len(),
            "the pending ops replay the cache"
        );
    }

    /// What a crash leaves: the durable copy, and with `block` a prefix of whole blocks of the
    /// pending appends in order, up to the first one torn short.
    fn after_crash(&self, block: Option<u64>, rng: &mut Rng) -> Option<Vec<u8>> {
        let mut kept = self.durable.clone()?;
        let Some(block) = block.and_then(|b| usize::try_from(b).ok()) else {
            return Some(kept);
        };
        for op in &self.pending {
            match op {
                Pending::Truncate(len) => {
                    kept.truncate(usize::try_from(*len).unwrap_or(usize::MAX));
                }
                Pending::Append(bytes) => {
                    let blocks = bytes.len().div_ceil(block) as u64;
                    let survive = rng.range_u64(0, blocks) as usize;
                    let end = (survive * block).min(bytes.len());
                    kept.extend_from_slice(&bytes[..end]);
                    if end < bytes.len() {
                        break;
                    }
                }
            }
        }
        Some(kept)
    }
}

/// One broker's disk, kept across the broker's restarts.
#[derive(Debug)]
pub struct DiskState {
    files: BTreeMap<String, File>,
    /// Removed since the last sync: a crash brings them back.
    removed: BTreeMap<String, File>,
    spec: DiskSpec,
    rng: Rng,
    last_writeback: Duration,
}

pub type SharedDisk = Rc<RefCell<DiskState>>;

impl DiskState {
    pub fn new(spec: DiskSpec, rng: Rng) -> SharedDisk {
        Rc::new(RefCell::new(DiskState {
            files: BTreeMap::new(),
            removed: BTreeMap::new(),
            spec,
            rng,
            last_writeback: Duration::ZERO,
        }))
    }

    /// A power cut or a crash of the host: everything not durable is lost (torn, with a
    /// block size).
    pub fn crash(&mut self) {
        let block = self.spec.torn_write_block_size();
        let mut files = std::mem::take(&mut self.files);
        files.append(&mut self.removed);
        for (path, file) in files {
            if let Some(kept) = file.after_crash(block, &mut self.rng) {
                let durable = File {
                    cached: kept.clone(),
                    durable: Some(kept),
                    pending: Vec::new(),
                };
                self.files.insert(path, durable);
            }
        }
    }

    /// Makes everything durable, as the operating system's writeback does.
    pub fn sync_everything(&mut self) {
        for f in self.files.values_mut() {
            f.make_durable();
        }
        self.removed.clear();
    }

    /// Bytes the broker sees, per file (for tests).
    pub fn cached(&self) -> BTreeMap<String, Vec<u8>> {
        let files = self.files.iter();
        files.map(|(p, f)| (p.clone(), f.cached.clone())).collect()
    }

    fn io_error(&mut self) -> io::Result<()> {
        let p = self.spec.io_error_probability;
        if p > 0.0 && self.rng.chance(p) {
            return Err(io::Error::other("I/O error (simulated)"));
        }
        Ok(())
    }

    fn used_bytes(&self) -> u64 {
        self.files.values().map(|f| f.cached.len() as u64).sum()
    }

    fn writeback_if_due(&mut self, now: Duration) {
        if self.spec.os_writeback_ms == 0 {
            return;
        }
        let every = Duration::from_millis(self.spec.os_writeback_ms);
        if now >= self.last_writeback + every {
            self.last_writeback = now;
            self.sync_everything();
        }
    }

    fn append(&mut self, path: &str, bytes: &Bytes) -> io::Result<()> {
        self.io_error()?;
        if let Some(cap) = self.spec.capacity() {
            if self.used_bytes().saturating_add(bytes.len() as u64) > cap {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on device (simulated)",
                ));
            }
        }
        let spontaneous = self.spec.sync_probability;
        let synced = spontaneous > 0.0 && self.rng.chance(spontaneous);
        let file = self.files.entry(path.to_string()).or_default();
        file.cached.extend_from_slice(bytes);
        file.pending.push(Pending::Append(bytes.clone()));
        // Data only: a file never synced stays without a directory entry, as with turmoil.
        if synced && file.durable.is_some() {
            file.make_durable();
        }
        Ok(())
    }

    fn read(&mut self, path: &str) -> io::Result<Vec<u8>> {
        self.io_error()?;
        let mut bytes = self.files.get(path).map(|f| f.cached.clone());
        let bytes = bytes.get_or_insert_with(Vec::new);
        let p = self.spec.corruption_probability;
        if !bytes.is_empty() && p > 0.0 && self.rng.chance(p) {
            let at = self.rng.range_u64(0, bytes.len() as u64 - 1) as usize;
            let flip = (self.rng.range_u64(1, 255)) as u8;
            bytes[at] ^= flip;
        }
        Ok(std::mem::take(bytes))
    }
}

/// The driver's [`Disk`] over a [`DiskState`]; `now` reads the harness's clock (for writeback).
pub struct ModelDisk {
    state: SharedDisk,
    now: fn() -> Duration,
}

impl ModelDisk {
    pub fn new(state: SharedDisk, now: fn() -> Duration) -> ModelDisk {
        ModelDisk { state, now }
    }
}

impl Disk for ModelDisk {
    /// Every file in path order, each read once (a read draws its fault dice).
    fn load(&mut self) -> io::Result<Vec<(String, Bytes)>> {
        let mut state = self.state.borrow_mut();
        let paths: BTreeSet<String> = state.files.keys().cloned().collect();
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            let bytes = state.read(&path)?;
            out.push((path, Bytes::from(bytes)));
        }
        Ok(out)
    }

    fn apply(&mut self, op: &StorageOp) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.writeback_if_due((self.now)());
        match op {
            StorageOp::Append { path, bytes } => state.append(path, bytes),
            StorageOp::Sync { path, .. } => {
                // Like fs_disk's sync: the file and every pending directory change.
                if let Some(f) = state.files.get_mut(path.as_str()) {
                    f.make_durable();
                }
                state.removed.clear();
                Ok(())
            }
            StorageOp::Truncate { path, len } => {
                let file = state.files.entry(path.clone()).or_default();
                file.cached
                    .truncate(usize::try_from(*len).unwrap_or(usize::MAX));
                file.pending.push(Pending::Truncate(*len));
                Ok(())
            }
            StorageOp::Remove { path } => {
                if let Some(f) = state.files.remove(path.as_str()) {
                    state.removed.insert(path.clone(), f);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fathom_queue::log::{SyncOwner, SyncToken};
    use std::cell::Cell;

    thread_local! {
        /// The tests' clock, for writeback.
        static NOW: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }

    fn now() -> Duration {
        NOW.with(Cell::get)
    }

    fn zero() -> Duration {
        Duration::ZERO
    }

    fn disk(spec: DiskSpec) -> (SharedDisk, ModelDisk) {
        let state = DiskState::new(spec, Rng::new(7));
        (state.clone(), ModelDisk::new(state, zero))
    }

    fn no_writeback() -> DiskSpec {
        DiskSpec {
            os_writeback_ms: 0,
            ..DiskSpec::default()
        }
    }

    fn append(path: &str, bytes: &[u8]) -> StorageOp {
        StorageOp::Append {
            path: path.into(),
            bytes: Bytes::copy_from_slice(bytes),
        }
    }

    fn sync(path: &str) -> StorageOp {
        StorageOp::Sync {
            path: path.into(),
            token: SyncToken {
                owner: SyncOwner::ProducerIds,
                seq: 0,
            },
        }
    }

    #[test]
    fn a_crash_loses_unsynced_bytes_and_never_synced_files() {
        let (state, mut d) = disk(no_writeback());
        d.apply(&append("p/a", b"durable")).unwrap();
        d.apply(&sync("p/a")).unwrap();
        d.apply(&append("p/a", b"+lost")).unwrap();
        d.apply(&append("p/b", b"never synced")).unwrap();
        state.borrow_mut().crash();
        let loaded = d.load().unwrap();
        assert_eq!(loaded, vec![("p/a".into(), Bytes::from_static(b"durable"))]);
    }

    #[test]
    fn a_sync_makes_exactly_the_cached_bytes_durable() {
        let (state, mut d) = disk(no_writeback());
        d.apply(&append("p/a", b"first")).unwrap();
        d.apply(&sync("p/a")).unwrap();
        d.apply(&append("p/a", b"+second")).unwrap();
        d.apply(&StorageOp::Truncate {
            path: "p/a".into(),
            len: 8,
        })
        .unwrap();
        d.apply(&append("p/a", b"+third")).unwrap();
        d.apply(&sync("p/a")).unwrap();
        d.apply(&append("p/a", b"+lost")).unwrap();
        state.borrow_mut().crash();
        let loaded = d.load().unwrap();
        assert_eq!(
            loaded,
            vec![("p/a".into(), Bytes::from_static(b"first+se+third"))]
        );
    }

    #[test]
    fn a_removal_is_undone_by_a_crash_before_the_next_sync() {
        let (state, mut d) = disk(no_writeback());
        d.apply(&append("p/a", b"x")).unwrap();
        d.apply(&sync("p/a")).unwrap();
        d.apply(&StorageOp::Remove { path: "p/a".into() }).unwrap();
        assert!(d.load().unwrap().is_empty());
        state.borrow_mut().crash();
        assert_eq!(d.load().unwrap().len(), 1, "the removal was not durable");
    }

    #[test]
    fn torn_writes_keep_a_prefix_of_whole_blocks() {
        let spec = DiskSpec {
            block_size: 4,
            ..no_writeback()
        };
        let mut lengths = BTreeSet::new();
        for seed in 0..40 {
            let state = DiskState::new(spec.clone(), Rng::new(seed));
            let mut d = ModelDisk::new(state.clone(), zero);
            d.apply(&append("p/a", b"")).unwrap();
            d.apply(&sync("p/a")).unwrap();
            d.apply(&append("p/a", b"0123456789")).unwrap();
            state.borrow_mut().crash();
            let bytes = d.load().unwrap()[0].1.clone();
            assert!(b"0123456789".starts_with(&bytes));
            lengths.insert(bytes.len());
        }
        assert_eq!(
            lengths,
            BTreeSet::from([0, 4, 8, 10]),
            "every whole-block prefix"
        );
    }

    #[test]
    fn io_errors_capacity_and_corruption_come_from_the_spec() {
        let (_, mut d) = disk(DiskSpec {
            capacity_bytes: 4,
            ..no_writeback()
        });
        d.apply(&append("p/a", b"1234")).unwrap();
        let full = d.apply(&append("p/a", b"5")).unwrap_err();
        assert_eq!(full.kind(), io::ErrorKind::StorageFull);

        let (_, mut d) = disk(DiskSpec {
            io_error_probability: 1.0,
            ..no_writeback()
        });
        assert!(d.apply(&append("p/a", b"x")).is_err());

        let (_, mut d) = disk(DiskSpec {
            corruption_probability: 1.0,
            ..no_writeback()
        });
        d.apply(&append("p/a", b"abcd")).unwrap();
        assert_ne!(&d.load().unwrap()[0].1[..], b"abcd", "one byte flipped");
        assert_eq!(d.load().unwrap()[0].1.len(), 4);
    }

    #[test]
    fn writeback_makes_everything_durable_on_its_period() {
        let state = DiskState::new(
            DiskSpec {
                os_writeback_ms: 1_000,
                ..DiskSpec::default()
            },
            Rng::new(1),
        );
        let mut d = ModelDisk::new(state.clone(), now);
        NOW.with(|n| n.set(Duration::from_millis(500)));
        d.apply(&append("p/a", b"x")).unwrap();
        // The writeback runs before each operation: at 1 s the append before it becomes durable.
        NOW.with(|n| n.set(Duration::from_millis(1_000)));
        d.apply(&append("p/a", b"y")).unwrap();
        state.borrow_mut().crash();
        assert_eq!(&d.load().unwrap()[0].1[..], b"x");
    }
}
