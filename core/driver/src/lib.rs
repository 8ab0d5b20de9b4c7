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
mod timer;

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

pub mod stats;

pub use broker::{run_broker, BrokerObserver, BrokerRunError, NoObserver};
pub use client::{ClientIo, ClientMachine};
pub use timer::LoopTimer;

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
/// A connect that has not completed in this long fails. A SYN to a crashed host can go
/// unanswered (turmoil drops it; a real OS retries it for a minute or more), and every frame
/// queued for that broker waits behind the connect, so a client would wait for the broker's
/// restart instead of failing over. As long as [`LINK_IDLE_TIMEOUT`]: a peer silent that long is
/// dead either way. Kafka's `socket.connection.setup.timeout.ms` is 10 s, for WAN round trips.
pub const CONNECT_TIMEOUT: std::time::Duration = LINK_IDLE_TIMEOUT;

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

/// [`Net::connect`] bounded by [`CONNECT_TIMEOUT`]; running out is an `io::ErrorKind::TimedOut`.
async fn connect<N: Net>(addr: &str) -> io::Result<N::Stream> {
    tokio::time::timeout(CONNECT_TIMEOUT, N::connect(addr))
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))
}

/// Sleeps for `wait` unless it is zero (a zero sleep would still yield to the scheduler).
pub async fn pay(wait: Duration) {
    if !wait.is_zero() {
        sleep(wait).await;
    }
}

/// A timer for `deadline` exactly. madsim's `sleep_until` waits at least a millisecond, even
/// for a deadline already passed (tokio's completes at once): a deadline re-armed on every turn
/// of a busy loop would never fire, and a resource cost of microseconds would take a
/// millisecond. Its `Sleep::reset` sets the deadline without that floor.
pub fn sleep_until(deadline: tokio::time::Instant) -> tokio::time::Sleep {
    #[cfg(madsim)]
    {
        let mut sleep = tokio::time::sleep_until(deadline);
        std::pin::Pin::new(&mut sleep).reset(deadline);
        sleep
    }
    #[cfg(not(madsim))]
    {
        tokio::time::sleep_until(deadline)
    }
}

/// A timer `duration` from now, exactly (see [`sleep_until`]).
pub fn sleep(duration: Duration) -> tokio::time::Sleep {
    #[cfg(madsim)]
    {
        sleep_until(tokio::time::Instant::now() + duration)
    }
    #[cfg(not(madsim))]
    {
        tokio::time::sleep(duration)
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

/// True time: what `tokio::time::Instant::now()` reads, at less cost under madsim.
///
/// madsim answers every clock read through its `clock_gettime` override, which looks the
/// runtime up in a thread local and clones and drops its time handle each time: about 4 % of
/// a madsim run's CPU went there. This keeps the handle of the runtime it was made in, so it
/// must be made inside that runtime (every driver task is); it reads the same instant. Under
/// tokio it holds nothing.
#[derive(Clone)]
pub struct TrueClock {
    #[cfg(madsim)]
    time: tokio::time::TimeHandle,
}

impl TrueClock {
    /// The clock of the current runtime. Under madsim, panics outside a runtime.
    pub fn current() -> TrueClock {
        TrueClock {
            #[cfg(madsim)]
            time: tokio::time::TimeHandle::current(),
        }
    }

    pub fn now(&self) -> tokio::time::Instant {
        #[cfg(madsim)]
        {
            self.time.now_instant()
        }
        #[cfg(not(madsim))]
        {
            tokio::time::Instant::now()
        }
    }
}

impl std::fmt::Debug for TrueClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrueClock")
    }
}

/// The driver's clock: `tokio::time`, counted from when the driver started, as the host's
/// clock reads it (see [`Skew`]).
#[derive(Debug)]
pub struct Clock {
    start: tokio::time::Instant,
    true_time: TrueClock,
    skew: Option<(Skew, std::cell::Cell<Anchor>)>,
}

/// Where a skewed clock last took its bearings: at true instant `true_at` it read `local_at`,
/// and it has run at `rate` since. Kept per incarnation: instants of one runtime only.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    true_at: tokio::time::Instant,
    local_at: tokio::time::Instant,
    rate: f64,
    /// The skew's jump total and version this anchor has taken in.
    jumped: Duration,
    version: u64,
}

impl Clock {
    /// A clock starting now. Must be made inside the runtime it is read in (see
    /// [`TrueClock`]).
    pub fn start() -> Clock {
        let true_time = TrueClock::current();
        Clock {
            start: true_time.now(),
            true_time,
            skew: None,
        }
    }

    /// A clock that reads the host's time through `skew`, which a fault injector changes.
    /// Jumps made before it started do not move it: a new process counts from its own start.
    /// Must be made inside the runtime it is read in (see [`TrueClock`]).
    pub fn skewed(skew: Skew) -> Clock {
        let true_time = TrueClock::current();
        let start = true_time.now();
        let setting = skew.0.get();
        let anchor = Anchor {
            true_at: start,
            local_at: start,
            rate: setting.rate,
            jumped: setting.jumped,
            version: setting.version,
        };
        Clock {
            start,
            true_time,
            skew: Some((skew, std::cell::Cell::new(anchor))),
        }
    }

    pub fn now(&self) -> Instant {
        self.from_tokio(self.true_now())
    }

    /// True time now, unskewed (for `tokio::time` deadlines).
    pub fn true_now(&self) -> tokio::time::Instant {
        self.true_time.now()
    }

    /// When true time reaches local time `t` (for timers).
    pub fn to_tokio(&self, t: Instant) -> tokio::time::Instant {
        let local = self.start + std::time::Duration::from_nanos(t.as_nanos());
        let Some(a) = self.anchor() else {
            return local;
        };
        if local <= a.local_at {
            return a.true_at;
        }
        let local_since = local - a.local_at;
        if a.rate == 1.0 {
            return a.true_at + local_since;
        }
        a.true_at + std::time::Duration::from_secs_f64(local_since.as_secs_f64() / a.rate)
    }

    /// The local time of true time `t`.
    pub fn from_tokio(&self, t: tokio::time::Instant) -> Instant {
        let local = match self.anchor() {
            Some(a) => local_of(a, t),
            None => t,
        };
        Instant::from_nanos(local.saturating_duration_since(self.start).as_nanos() as u64)
    }

    /// The current anchor, re-taken first if the skew changed since the last look.
    fn anchor(&self) -> Option<Anchor> {
        let (skew, cell) = self.skew.as_ref()?;
        let mut a = cell.get();
        let setting = skew.0.get();
        if setting.version != a.version {
            let now = self.true_time.now();
            let jumped = setting.jumped.saturating_sub(a.jumped);
            a = Anchor {
                true_at: now,
                local_at: local_of(a, now) + jumped,
                rate: setting.rate,
                jumped: setting.jumped,
                version: setting.version,
            };
            cell.set(a);
        }
        Some(a)
    }
}

/// At rate 1 (every clock without a rate fault) the time since the anchor carries over as it
/// is, without the float round trip: the same instant (`from_secs_f64(d.as_secs_f64())` is `d`
/// for any duration a run reaches), at a fraction of the cost of a read that every turn of
/// every loop makes.
fn local_of(a: Anchor, t: tokio::time::Instant) -> tokio::time::Instant {
    let since = t.saturating_duration_since(a.true_at);
    if a.rate == 1.0 {
        return a.local_at + since;
    }
    a.local_at + std::time::Duration::from_secs_f64(since.as_secs_f64() * a.rate)
}

/// How a host's clock departs from true time: it runs at `rate` times true speed, and it leaps
/// forward when a jump is applied. It never runs backwards (a monotonic clock can run fast or
/// slow, or leap after a VM pause or a suspend, but not step back), so every local deadline
/// maps to one true instant. Shared by every incarnation of a host's software and the fault
/// injector; it holds no instants, so it can be changed from outside the host's runtime.
#[derive(Debug, Clone, Default)]
pub struct Skew(Rc<std::cell::Cell<SkewSetting>>);

#[derive(Debug, Clone, Copy)]
struct SkewSetting {
    rate: f64,
    /// Every jump so far, summed.
    jumped: Duration,
    /// Bumped on every change, so each clock knows to re-anchor.
    version: u64,
}

impl Default for SkewSetting {
    fn default() -> Self {
        SkewSetting {
            rate: 1.0,
            jumped: Duration::ZERO,
            version: 0,
        }
    }
}

impl Skew {
    /// The slowest and fastest rate a clock may run at; outside, timeouts stop meaning anything.
    pub const RATE_RANGE: (f64, f64) = (0.1, 10.0);

    /// From now on the clock runs at `rate` times true speed (clamped to [`Skew::RATE_RANGE`]).
    pub fn set_rate(&self, rate: f64) {
        let mut s = self.0.get();
        s.rate = rate.clamp(Self::RATE_RANGE.0, Self::RATE_RANGE.1);
        self.bump(s);
    }

    /// The clock leaps forward by `by`.
    pub fn jump(&self, by: Duration) {
        let mut s = self.0.get();
        s.jumped = s.jumped.saturating_add(by);
        self.bump(s);
    }

    pub fn rate(&self) -> f64 {
        self.0.get().rate
    }

    fn bump(&self, mut s: SkewSetting) {
        s.version = s.version.wrapping_add(1);
        self.0.set(s);
    }
}

// madsim's test macro has no paused start; the clock is the same code under both runtimes.
#[cfg(all(test, not(madsim)))]
mod clock_tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn secs(i: Instant) -> f64 {
        i.as_nanos() as f64 / 1e9
    }

    #[tokio::test(start_paused = true)]
    async fn a_skewed_clock_runs_at_its_rate_and_only_leaps_forward() {
        let skew = Skew::default();
        let clock = Clock::skewed(skew.clone());
        tokio::time::advance(S).await;
        assert_eq!(secs(clock.now()), 1.0);

        // A change takes effect at the host's next read of its clock.
        skew.set_rate(2.0);
        assert_eq!(secs(clock.now()), 1.0);
        tokio::time::advance(S).await;
        assert_eq!(secs(clock.now()), 3.0);
        // A timer for local 5 s fires at true 3 s: two local seconds at double speed.
        assert_eq!(
            clock.to_tokio(Instant::from_nanos(5_000_000_000)),
            clock.start + 3 * S
        );
        // A deadline the clock has passed fires at once (no earlier than its last bearings).
        assert!(clock.to_tokio(Instant::ZERO) <= tokio::time::Instant::now());

        skew.jump(10 * S);
        skew.set_rate(1.0);
        assert_eq!(secs(clock.now()), 13.0);
        tokio::time::advance(S).await;
        assert_eq!(secs(clock.now()), 14.0);

        // A restarted process counts from its own start, at the host clock's current rate.
        skew.set_rate(0.5);
        let restarted = Clock::skewed(skew.clone());
        tokio::time::advance(2 * S).await;
        assert_eq!(secs(restarted.now()), 1.0);
        assert_eq!(Skew::RATE_RANGE, (0.1, 10.0));
        skew.set_rate(1_000.0);
        assert_eq!(skew.rate(), 10.0, "clamped");
    }
}
