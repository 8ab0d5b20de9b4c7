//! Disk faults with a start and an end, at the driver's disk seam, the same in both harnesses:
//!
//! - `disk_full`: while the broker's id is in [`ClusterView::full_disks`], every append fails
//!   with ENOSPC, as when another tenant of the volume has taken its free space. Truncations,
//!   removals and syncs still succeed (they free space or write none), and reads are untouched.
//! - `disk_eio`: while the broker has an [`EioWindow`] in [`ClusterView::eio_disks`], each
//!   operation (the load at start included) fails with EIO with the window's probability.
//!
//! The broker treats either error as any storage failure: it stops, and the run loop's
//! supervisor restarts it a second later, when it may stop again until the fault ends.
//!
//! [`ClusterView::full_disks`]: crate::view::ClusterView::full_disks
//! [`ClusterView::eio_disks`]: crate::view::ClusterView::eio_disks

use std::io;

use bytes::Bytes;
use fathom_driver::Disk;
use fathom_queue::ids::NodeId;
use fathom_queue::log::StorageOp;
use fathom_queue::rng::Rng;

use crate::view::SharedView;

/// A `disk_eio` fault in force: each disk operation fails with probability `rate`.
#[derive(Debug, Clone)]
pub struct EioWindow {
    pub rate: f64,
    pub rng: Rng,
}

/// `inner` with the fault schedule's disk faults for broker `id` in front of it.
pub struct FaultyDisk<D> {
    inner: D,
    id: NodeId,
    view: SharedView,
}

impl<D: Disk> FaultyDisk<D> {
    pub fn new(inner: D, id: NodeId, view: SharedView) -> FaultyDisk<D> {
        FaultyDisk { inner, id, view }
    }

    fn full(&self) -> bool {
        self.view.borrow().full_disks.contains(&self.id)
    }

    /// An EIO drawn for this operation, if the broker's disk is in an EIO window.
    fn eio(&self) -> io::Result<()> {
        let mut view = self.view.borrow_mut();
        let Some(w) = view.eio_disks.get_mut(&self.id) else {
            return Ok(());
        };
        if w.rng.chance(w.rate) {
            return Err(io::Error::other("input/output error (disk_eio fault)"));
        }
        Ok(())
    }
}

impl<D: Disk> Disk for FaultyDisk<D> {
    fn load(&mut self) -> io::Result<Vec<(String, Bytes)>> {
        self.eio()?;
        self.inner.load()
    }

    fn apply(&mut self, op: &StorageOp) -> io::Result<()> {
        self.eio()?;
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
        let mut d = FaultyDisk::new(ModelDisk::new(state, zero), 2, view.clone());
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

    #[test]
    fn operations_fail_with_eio_only_inside_the_window_at_its_rate() {
        let view = SharedView::default();
        let state = DiskState::new(DiskSpec::default(), Rng::new(1));
        let mut d = FaultyDisk::new(ModelDisk::new(state, zero), 2, view.clone());
        let append = StorageOp::Append {
            path: "p/a".into(),
            bytes: Bytes::from_static(b"x"),
        };
        let failures =
            |d: &mut FaultyDisk<_>| (0..1000).filter(|_| d.apply(&append).is_err()).count();
        assert_eq!(failures(&mut d), 0);
        let window = EioWindow {
            rate: 0.3,
            rng: Rng::new(7),
        };
        view.borrow_mut().eio_disks.insert(2, window);
        let failed = failures(&mut d);
        assert!((200..400).contains(&failed), "{failed} of 1000 at rate 0.3");
        view.borrow_mut().eio_disks.insert(
            2,
            EioWindow {
                rate: 1.0,
                rng: Rng::new(7),
            },
        );
        let err = d.load().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        view.borrow_mut().eio_disks.remove(&2);
        assert_eq!(failures(&mut d), 0);
        assert_eq!(
            d.load().unwrap()[0].1.len(),
            3000 - failed,
            "a failed append wrote nothing"
        );
    }
}
