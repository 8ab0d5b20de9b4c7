//! The async shell that runs a core state machine over real or simulated I/O.
//!
//! One driver serves every home. It is generic over two seams, [`Net`] (listen, accept,
//! connect) and [`Disk`] (load files, apply [`StorageOp`]s), and uses `tokio::time` for its
//! clock and timers, which turmoil drives in simulated time. The simulator plugs in
//! `turmoil::net` and turmoil's file-system shim; the production build plugs in `tokio::net` and
//! `std::fs` (see [`production`]). Nothing else differs between the homes.
//!
//! The driver is single-threaded: it runs on a current-thread runtime inside a `LocalSet`, as
//! turmoil hosts do, so state machines need not be `Send`.

mod broker;
mod client;
mod conn;
mod disk;
#[cfg(feature = "production")]
pub mod production;

use std::future::Future;
use std::io;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

pub use broker::{run_broker, BrokerObserver, BrokerRunError, NoObserver};
pub use client::{ClientIo, ClientMachine};

use crate::log::StorageOp;
use crate::time::Instant;

/// Frames waiting to be written to one connection. A peer that cannot keep up is disconnected
/// (clients) or has frames dropped (brokers, whose replication tolerates loss).
pub const CONN_WRITE_QUEUE_MAX: usize = 1024;
/// Inputs from connection tasks waiting for the state machine.
pub const EVENT_QUEUE_MAX: usize = 4096;
/// Bytes read from a socket per read call.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Every connection sends a `Ping` this often; brokers answer with a `Pong`.
pub const PING_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// A connection that delivers nothing for this long is closed. TCP would retransmit lost
/// segments or reset the connection; turmoil's TCP does neither, and a real peer can vanish
/// without a reset, so the driver must notice a dead link itself.
pub const LINK_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The network as the driver needs it.
pub trait Net: 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + 'static;
    type Listener: 'static;

    fn bind(addr: &str) -> impl Future<Output = io::Result<Self::Listener>>;
    fn accept(listener: &Self::Listener) -> impl Future<Output = io::Result<Self::Stream>>;
    fn connect(addr: &str) -> impl Future<Output = io::Result<Self::Stream>>;
}

/// A broker's data directory as the driver needs it.
pub trait Disk {
    /// Every file under the data directory with its contents, as `(relative path, bytes)`
    /// sorted by path. Paths use `/`.
    fn load(&mut self) -> io::Result<Vec<(String, Bytes)>>;

    /// Carries out one storage operation. Returns once it is done; for `Sync`, once the file
    /// and its directory entry are durable.
    fn apply(&mut self, op: &StorageOp) -> io::Result<()>;
}

/// The driver's clock: `tokio::time`, counted from when the driver started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Instant {
        Instant::from_nanos(self.start.elapsed().as_nanos() as u64)
    }

    pub fn to_tokio(&self, t: Instant) -> tokio::time::Instant {
        self.start + std::time::Duration::from_nanos(t.as_nanos())
    }
}
