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
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

pub use broker::{run_broker, BrokerObserver, BrokerRunError, NoObserver};
pub use client::{ClientIo, ClientMachine};

pub use fathom_queue::log::StorageOp;
use fathom_queue::time::Instant;

/// Frames waiting to be written to one connection. A peer that cannot keep up is disconnected
/// (clients) or has frames dropped (brokers, whose replication tolerates loss).
pub const CONN_WRITE_QUEUE_MAX: usize = 1024;
/// Frames waiting to be written to one client connection: about a socket send buffer (1 MiB of
/// 16 kB batches). Beyond it the client stalls and its producer buffer fills.
pub const CLIENT_WRITE_QUEUE_MAX: usize = 64;
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
    /// The address of the other end, for [`Resources`] to tell links apart.
    fn peer_ip(stream: &Self::Stream) -> Option<IpAddr>;
}

/// The costs of the resources a process uses: NIC and path bandwidth, CPU cores, the disk,
/// connection handshakes. A home that models them (the simulator) books the resource in each
/// call and returns how long the caller must wait before going on; the driver then sleeps on
/// `tokio::time`, which the simulator drives. The production build uses [`Unmetered`]: real
/// hardware charges its own costs.
///
/// The state machines never see this seam: costs only move *when* inputs reach them.
pub trait Resources {
    /// A connection to `peer` was opened: the handshakes still to pay before the first frame
    /// (the rest of TCP's round trip, TLS).
    fn connect(&self, peer: Option<IpAddr>) -> Duration;
    /// One frame of `bytes` leaves for `peer`: encryption, the NIC, the path.
    fn transmit(&self, peer: Option<IpAddr>, bytes: usize) -> Duration;
    /// One frame of `bytes` arrived from `peer`: the NIC, decryption and the CPU work of
    /// handling it. The frame reaches the state machine when this is paid.
    fn receive(&self, peer: Option<IpAddr>, bytes: usize) -> Duration;
    /// Application work on this process's CPU (e.g. a producer serializing a message).
    fn compute(&self, work: Duration) -> Duration;
    /// A storage operation. For a sync, the time until it is durable; for an append, how long
    /// the writer is throttled because too much data waits for writeback.
    fn storage(&self, op: &StorageOp) -> Duration;
}

/// Free resources: every cost is zero.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unmetered;

impl Resources for Unmetered {
    fn connect(&self, _: Option<IpAddr>) -> Duration {
        Duration::ZERO
    }
    fn transmit(&self, _: Option<IpAddr>, _: usize) -> Duration {
        Duration::ZERO
    }
    fn receive(&self, _: Option<IpAddr>, _: usize) -> Duration {
        Duration::ZERO
    }
    fn compute(&self, _: Duration) -> Duration {
        Duration::ZERO
    }
    fn storage(&self, _: &StorageOp) -> Duration {
        Duration::ZERO
    }
}

/// Shared by a process's connection tasks.
pub type SharedResources = std::rc::Rc<dyn Resources>;

/// Sleeps for `wait` unless it is zero (a zero sleep would still yield to the scheduler).
pub async fn pay(wait: Duration) {
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// A broker's data directory as the driver needs it.
pub trait Disk {
    /// Every file under the data directory with its contents, as `(relative path, bytes)`
    /// sorted by path. Paths use `/`.
    fn load(&mut self) -> io::Result<Vec<(String, Bytes)>>;

    /// Carries out one storage operation. Returns once it is done; for `Sync`, once the file
    /// and its directory entry are durable. The driver calls a `Sync` when the modelled sync
    /// completes (see [`Resources::storage`]), not when the broker asks for it, so that a crash
    /// in between loses the unsynced bytes; the file may have been removed by then.
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

    pub fn from_tokio(&self, t: tokio::time::Instant) -> Instant {
        Instant::from_nanos(t.saturating_duration_since(self.start).as_nanos() as u64)
    }
}
