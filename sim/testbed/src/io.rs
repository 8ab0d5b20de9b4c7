//! The simulated home of the driver's seams: turmoil's TCP and turmoil's file-system shim.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use fathom_driver::{Disk, Net};
use fathom_queue::log::StorageOp;

pub struct SimNet;

impl Net for SimNet {
    type Stream = turmoil::net::TcpStream;
    type Listener = turmoil::net::TcpListener;

    async fn bind(addr: &str) -> io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(addr).await
    }

    async fn accept(listener: &Self::Listener) -> io::Result<Self::Stream> {
        Ok(listener.accept().await?.0)
    }

    async fn connect(addr: &str) -> io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect(addr).await
    }

    fn peer_ip(stream: &Self::Stream) -> Option<std::net::IpAddr> {
        stream.peer_addr().ok().map(|a| a.ip())
    }
}

fathom_driver::fs_disk!(
    /// A broker's data directory on turmoil's simulated disk: unsynced writes vanish at a crash,
    /// and the scenario's fault model can tear writes, fail them or corrupt reads.
    SimDisk,
    turmoil::fs::shim::std::fs,
    turmoil::fs::shim::std::fs::sync_dir
);

/// A [`SimDisk`] with an operating system's background writeback: whatever the broker wrote
/// reaches the disk within `writeback` of simulated time, fsync or not. Without it a broker
/// that never fsyncs would keep every write pending forever, which no real kernel does.
pub struct WritebackDisk {
    inner: SimDisk,
    writeback: Option<Duration>,
    last_writeback: Duration,
}

impl WritebackDisk {
    pub fn new(inner: SimDisk, writeback: Option<Duration>) -> WritebackDisk {
        WritebackDisk {
            inner,
            writeback,
            last_writeback: turmoil::sim_elapsed().unwrap_or_default(),
        }
    }
}

impl Disk for WritebackDisk {
    fn load(&mut self) -> io::Result<Vec<(String, Bytes)>> {
        self.inner.load()
    }

    fn apply(&mut self, op: &StorageOp) -> io::Result<()> {
        if let Some(every) = self.writeback {
            let now = turmoil::sim_elapsed().unwrap_or_default();
            if now >= self.last_writeback + every {
                self.last_writeback = now;
                self.inner.sync_everything()?;
            }
        }
        self.inner.apply(op)
    }
}
