//! A `disk_full` fault at the driver's disk seam, the same in both harnesses: while the
//! broker's id is in [`ClusterView::full_disks`], every append fails with ENOSPC, as when
//! another tenant of the volume has taken its free space. Truncations, removals and syncs still
//! succeed (they free space or write none), and reads are untouched.
//!
//! The broker treats the error as any storage failure: it stops, and the run loop's supervisor
//! restarts it a second later, when it stops again at its next append until the space is back.
//!
//! [`ClusterView::full_disks`]: crate::view::ClusterView::full_disks

use std::io;

use bytes::Bytes;
use fathom_driver::Disk;
use fathom_queue::ids::NodeId;
use fathom_queue::log::StorageOp;

use crate::view::SharedView;

/// `inner` with the fault schedule's full-disk switch for broker `id` in front of it.
pub struct FillableDisk<D> {
    inner: D,
    id: NodeId,
    view: SharedView,
}

impl<D: Disk> FillableDisk<D> {
    pub fn new(inner: D, id: NodeId, view: SharedView) -> FillableDisk<D> {
        FillableDisk { inner, id, view }
    }

    fn full(&self) -> bool {
        self.view.borrow().full_disks.contains(&self.id)
    }
}

impl<D: Disk> Disk for FillableDisk<D> {
    fn load(&mut self) -> io::Result<Vec<(String, Bytes)>> {
        self.inner.load()
    }

    fn apply(&mut self, op: &StorageOp) -> io::Result<()> {
        if matches!(op, StorageOp::Append { .. }) && self.full() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (disk_full fault)",
            ));
        }
        self.inner.apply(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_disk::{DiskState, ModelDisk};
    use crate::scenario::DiskSpec;
    use fathom_queue::rng::Rng;
    use std::time::Duration;

    fn zero() -> Duration {
        Duration::ZERO
    }

    #[test]
    fn appends_fail_only_while_the_broker_is_in_the_full_set() {
        let view = SharedView::default();
        let state = DiskState::new(DiskSpec::default(), Rng::new(1));
        let mut d = FillableDisk::new(ModelDisk::new(state, zero), 2, view.clone());
        let append = StorageOp::Append {
            path: "p/a".into(),
            bytes: Bytes::from_static(b"x"),
        };
        d.apply(&append).unwrap();
        view.borrow_mut().full_disks.insert(3);
        d.apply(&append)
            .expect("another broker's disk is full, not this one");
        view.borrow_mut().full_disks.insert(2);
        let err = d.apply(&append).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        let truncate = StorageOp::Truncate {
            path: "p/a".into(),
            len: 1,
        };
        d.apply(&truncate).expect("a truncation frees space");
        view.borrow_mut().full_disks.remove(&2);
        d.apply(&append).unwrap();
        assert_eq!(d.load().unwrap()[0].1, Bytes::from_static(b"xx"));
    }
}
