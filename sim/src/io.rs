//! The simulated home of the driver's seams: turmoil's TCP and turmoil's file-system shim.

use std::io;

use fathom_core::driver::Net;

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
}

fathom_core::fs_disk!(
    /// A broker's data directory on turmoil's simulated disk: unsynced writes vanish at a crash,
    /// and the scenario's fault model can tear writes, fail them or corrupt reads.
    SimDisk,
    turmoil::fs::shim::std::fs,
    turmoil::fs::shim::std::fs::sync_dir
);
