//! The driver's network on madsim (built with `--cfg madsim`): madsim's TCP to open
//! connections (so refusals, clogged links and killed nodes behave as madsim has them), and a
//! byte pipe of Fathom's own per direction to carry the data, with turmoil's link behaviour.
//!
//! Why not madsim's TCP for the data: its receiving side waits with `sleep_until(arrival)`,
//! which in madsim sleeps at least a millisecond even for an arrival already passed, so a
//! stream delivers at most one payload (one flushed write) per millisecond; under load that
//! halved the saturated scenarios' throughput. Its `accept` also starts with a random delay of
//! the same floor, so an `accept` future rebuilt on every turn of a busy loop never completed.
//!
//! madsim has one latency range and one loss rate for the whole network, draws latency
//! uniformly, and its TCP is reliable. turmoil's links each have their own latency range and
//! fail rate, draw latency skewed to the minimum (an exponential draw), and a lost segment
//! stalls the stream for good. So [`Links`] keeps the per-link settings (zone latencies, `loss`
//! and `latency` faults, the network's base loss, clogged links), and each write becomes one
//! chunk in its direction's [`Pipe`]: lost with the link's rate (the pipe then carries nothing
//! more; the driver's idle timeout closes it, as under turmoil), otherwise released to the
//! reader after a latency drawn as turmoil draws it, in order. A chunk written while its link
//! is clogged waits until the link clears (madsim's hold), then takes its latency. Every draw
//! comes from madsim's seeded generator; a link with a single latency and no loss draws nothing.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes};
use fathom_driver::{LoopTimer, Net, TrueClock};
use madsim::rand::Rng as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::scenario::NetworkSpec;

/// Every link's settings for the run on this thread.
#[derive(Default)]
pub struct Links {
    network: NetworkSpec,
    /// The network's loss rate, on every link without its own.
    base_fail_rate: f64,
    /// Per direction `(from, to)`; a fault sets both.
    fail_rate: BTreeMap<(String, String), f64>,
    max_latency: BTreeMap<(String, String), Duration>,
    /// Clogged directions `(from, to)` (partitions and holds).
    clogged: BTreeSet<(String, String)>,
    /// Readers waiting for a clogged link to clear.
    unclog_waiters: Vec<Waker>,
}

thread_local! {
    static LINKS: RefCell<Links> = RefCell::new(Links::default());
    /// Bumped on every change to the table, so a pipe can keep its link's settings.
    static LINKS_VERSION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Connections opened and not yet accepted: the acceptor's pipes, by `(client, server)`.
    static PENDING: RefCell<BTreeMap<(SocketAddr, SocketAddr), Conn>> =
        const { RefCell::new(BTreeMap::new()) };
}

impl Links {
    /// Starts a run's table: the network's latencies and base loss, no fault.
    pub fn reset(network: &NetworkSpec) {
        LINKS.with(|l| {
            *l.borrow_mut() = Links {
                network: network.clone(),
                base_fail_rate: network.loss,
                ..Links::default()
            }
        });
        PENDING.with(|p| p.borrow_mut().clear());
        Links::changed();
    }

    fn changed() {
        LINKS_VERSION.with(|v| v.set(v.get().wrapping_add(1)));
    }

    fn version() -> u64 {
        LINKS_VERSION.with(std::cell::Cell::get)
    }

    /// Clogs or clears the direction `from` → `to`; clearing wakes the readers held by it.
    pub fn set_clogged(from: &str, to: &str, clogged: bool) {
        Links::changed();
        let waiters = LINKS.with(|l| {
            let mut l = l.borrow_mut();
            let key = (from.to_string(), to.to_string());
            if clogged {
                l.clogged.insert(key);
                Vec::new()
            } else {
                l.clogged.remove(&key);
                std::mem::take(&mut l.unclog_waiters)
            }
        });
        waiters.into_iter().for_each(Waker::wake);
    }

    fn clogged(from: &str, to: &str) -> bool {
        LINKS.with(|l| {
            l.borrow()
                .clogged
                .contains(&(from.to_string(), to.to_string()))
        })
    }

    fn wait_unclogged(waker: &Waker) {
        LINKS.with(|l| l.borrow_mut().unclog_waiters.push(waker.clone()));
    }

    pub fn set_base_fail_rate(rate: f64) {
        LINKS.with(|l| l.borrow_mut().base_fail_rate = rate);
        Links::changed();
    }

    pub fn set_fail_rate(a: &str, b: &str, rate: f64) {
        LINKS.with(|l| {
            let mut l = l.borrow_mut();
            l.fail_rate.insert((a.into(), b.into()), rate);
            l.fail_rate.insert((b.into(), a.into()), rate);
        });
        Links::changed();
    }

    pub fn set_max_latency(a: &str, b: &str, max: Duration) {
        LINKS.with(|l| {
            let mut l = l.borrow_mut();
            l.max_latency.insert((a.into(), b.into()), max);
            l.max_latency.insert((b.into(), a.into()), max);
        });
        Links::changed();
    }

    /// What the link from `from` to `to` does to a chunk: its loss rate and latency range.
    fn faults(from: &str, to: &str) -> LinkFaults {
        LINKS.with(|l| {
            let l = l.borrow();
            let key = (from.to_string(), to.to_string());
            let fail_rate = l.fail_rate.get(&key).copied().unwrap_or(l.base_fail_rate);
            let link = l.network.link_latency(from, to);
            let max = l.max_latency.get(&key).copied().unwrap_or(link.max());
            LinkFaults {
                fail_rate,
                min: link.min(),
                max: max.max(link.min()),
            }
        })
    }
}

/// turmoil's latency distribution: the minimum plus the range times an exponential draw with
/// rate 5 (mean a fifth of the range), in whole milliseconds, capped at the maximum.
const LATENCY_EXP_RATE: f64 = 5.0;

#[derive(Debug, Clone, Copy)]
struct LinkFaults {
    fail_rate: f64,
    min: Duration,
    max: Duration,
}

impl LinkFaults {
    /// A chunk's latency, drawn as turmoil draws a link's (nothing drawn for a fixed one).
    fn latency(&self, rng: &mut impl madsim::rand::Rng) -> Duration {
        if self.max <= self.min {
            return self.min;
        }
        let range_ms = self.max.saturating_sub(self.min).as_millis() as f64;
        let u: f64 = rng.gen();
        let mult = -(1.0 - u).ln() / LATENCY_EXP_RATE;
        let delay = self.min + Duration::from_millis((range_ms * mult) as u64);
        delay.min(self.max)
    }
}

/// The driver's [`Net`] on madsim.
pub struct MadsimNet;

/// A listening socket: madsim's listener, accepted by a task of its own so that accepting
/// never depends on the caller keeping one `accept` future alive (madsim's `accept` sleeps
/// first, and the broker's loop builds a new one every turn).
pub struct MadsimListener {
    /// Borrowed only within a poll, so a dropped `accept` future holds nothing.
    accepted: RefCell<mpsc::UnboundedReceiver<MadsimStream>>,
    task: madsim::task::JoinHandle<()>,
}

impl Drop for MadsimListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Net for MadsimNet {
    type Stream = MadsimStream;
    type Listener = MadsimListener;

    async fn bind(addr: &str) -> io::Result<Self::Listener> {
        let listener = madsim::net::TcpListener::bind(addr).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = madsim::task::spawn_local(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (Ok(peer), Ok(local)) = (tcp.peer_addr(), tcp.local_addr()) else {
                    continue;
                };
                // Opened by a connect that has set up both pipes (see `connect`).
                let Some(conn) = PENDING.with(|p| p.borrow_mut().remove(&(peer, local))) else {
                    continue;
                };
                if tx.send(MadsimStream::new(tcp, conn)).is_err() {
                    break;
                }
            }
        });
        Ok(MadsimListener {
            accepted: RefCell::new(rx),
            task,
        })
    }

    async fn accept(listener: &Self::Listener) -> io::Result<Self::Stream> {
        // The broker's loop builds an `accept` future on every turn: a poll of the queue,
        // not a lock taken and released each time.
        std::future::poll_fn(|cx| listener.accepted.borrow_mut().poll_recv(cx))
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionAborted, "listener closed"))
    }

    async fn connect(addr: &str) -> io::Result<Self::Stream> {
        let tcp = madsim::net::TcpStream::connect(addr).await?;
        let (local, peer) = (tcp.local_addr()?, tcp.peer_addr()?);
        let host = |a: SocketAddr| crate::madsim_run::host_name(a.ip());
        let (client, server) = (host(local), host(peer));
        // madsim has handed the server its end already, without yielding since: register the
        // server's pipes before anything else runs.
        let up = Pipe::new(client.clone(), server.clone());
        let down = Pipe::new(server, client);
        PENDING.with(|p| {
            p.borrow_mut().insert(
                (local, peer),
                Conn {
                    outgoing: down.clone(),
                    incoming: up.clone(),
                },
            )
        });
        Ok(MadsimStream::new(
            tcp,
            Conn {
                outgoing: up,
                incoming: down,
            },
        ))
    }

    fn peer_ip(stream: &Self::Stream) -> Option<IpAddr> {
        stream.tcp.peer_addr().ok().map(|a| a.ip())
    }
}

/// One end's two pipes.
struct Conn {
    outgoing: Rc<RefCell<Pipe>>,
    incoming: Rc<RefCell<Pipe>>,
}

/// One direction of a connection: chunks in flight from the writer to the reader.
struct Pipe {
    /// Host names at the ends (unknown: no faults).
    link: Option<(String, String)>,
    /// The link's settings and whether it is clogged, as of a version of [`Links`]: looking
    /// them up costs string keys, and they change only with a fault.
    settings: Option<(u64, LinkFaults, bool)>,
    /// In write order, each with when it may be read; `None` while it waits for a clogged link.
    chunks: VecDeque<(Option<madsim::time::Instant>, Bytes)>,
    /// No chunk released earlier than this: chunks never overtake each other.
    last_release: Option<madsim::time::Instant>,
    /// A chunk was lost: nothing more is delivered (turmoil's TCP never resends it either).
    lost: bool,
    writer_closed: bool,
    reader_closed: bool,
    reader: Option<Waker>,
    /// Read at every write and at every read of a chunk.
    clock: TrueClock,
}

impl Pipe {
    fn new(from: Option<String>, to: Option<String>) -> Rc<RefCell<Pipe>> {
        Rc::new(RefCell::new(Pipe {
            link: from.zip(to),
            settings: None,
            chunks: VecDeque::new(),
            last_release: None,
            lost: false,
            writer_closed: false,
            reader_closed: false,
            reader: None,
            clock: TrueClock::current(),
        }))
    }

    /// The link's faults and whether it is clogged (none for an unknown link).
    fn settings(&mut self) -> Option<(LinkFaults, bool)> {
        let (from, to) = self.link.as_ref()?;
        let version = Links::version();
        match self.settings {
            Some((v, faults, clogged)) if v == version => Some((faults, clogged)),
            _ => {
                let (faults, clogged) = (Links::faults(from, to), Links::clogged(from, to));
                self.settings = Some((version, faults, clogged));
                Some((faults, clogged))
            }
        }
    }

    fn faults(&mut self) -> Option<LinkFaults> {
        self.settings().map(|s| s.0)
    }

    fn clogged(&mut self) -> bool {
        self.settings().is_some_and(|s| s.1)
    }

    /// When a chunk that leaves now arrives: its link's latency, behind every earlier chunk.
    fn release_time(&mut self) -> madsim::time::Instant {
        let now = self.clock.now();
        let latency = self.faults().map_or(Duration::ZERO, |f| {
            f.latency(&mut madsim::rand::thread_rng())
        });
        let at = self
            .last_release
            .map_or(now + latency, |l| l.max(now + latency));
        self.last_release = Some(at);
        at
    }

    /// Takes a written chunk: lost, held for a clogged link, or on its way.
    fn send(&mut self, chunk: Bytes) {
        if self.lost {
            return;
        }
        let fail_rate = self.faults().map_or(0.0, |f| f.fail_rate);
        if fail_rate > 0.0 && madsim::rand::thread_rng().gen_bool(fail_rate.min(1.0)) {
            self.lost = true;
            return;
        }
        let release = (!self.clogged()).then(|| self.release_time());
        self.chunks.push_back((release, chunk));
        self.wake_reader();
    }

    fn close_writer(&mut self) {
        self.writer_closed = true;
        self.wake_reader();
    }

    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// When the first chunk may be read, giving a chunk held by a clogged link its time once
    /// the link has cleared; `None` while it stays clogged.
    fn front_release(&mut self) -> Option<madsim::time::Instant> {
        let front = self.chunks.front()?.0;
        match front {
            Some(at) => Some(at),
            None if self.clogged() => None,
            None => {
                let at = self.release_time();
                if let Some(front) = self.chunks.front_mut() {
                    front.0 = Some(at);
                }
                Some(at)
            }
        }
    }
}

/// One end of a connection: reads its incoming pipe, writes its outgoing one. madsim's stream
/// is kept for its addresses and the port it holds.
pub struct MadsimStream {
    tcp: madsim::net::TcpStream,
    conn: Conn,
    /// Wakes the reader when the first chunk in flight arrives.
    timer: LoopTimer,
}

impl MadsimStream {
    fn new(tcp: madsim::net::TcpStream, conn: Conn) -> MadsimStream {
        MadsimStream {
            tcp,
            conn,
            timer: LoopTimer::new(),
        }
    }
}

impl Drop for MadsimStream {
    fn drop(&mut self) {
        self.conn.outgoing.borrow_mut().close_writer();
        let mut incoming = self.conn.incoming.borrow_mut();
        incoming.reader_closed = true;
        incoming.chunks.clear();
    }
}

impl AsyncRead for MadsimStream {
    /// Copies every chunk that has arrived, as far as `buf` has room; waits for the first one
    /// still in flight, for a clogged link to clear, or for a write.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut pipe = this.conn.incoming.borrow_mut();
        let mut copied = false;
        while buf.remaining() > 0 {
            if pipe.chunks.is_empty() {
                if copied || (pipe.writer_closed && !pipe.lost) {
                    return Poll::Ready(Ok(())); // data, or the end of the stream
                }
                pipe.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let Some(release) = pipe.front_release() else {
                if copied {
                    return Poll::Ready(Ok(()));
                }
                Links::wait_unclogged(cx.waker());
                return Poll::Pending;
            };
            if release > pipe.clock.now() {
                if copied {
                    return Poll::Ready(Ok(()));
                }
                // A write may come before the timer fires; it changes nothing in front.
                ready!(this.timer.poll_until(cx, release));
                continue;
            }
            let Some((_, chunk)) = pipe.chunks.front_mut() else {
                break;
            };
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            chunk.advance(n);
            if chunk.is_empty() {
                pipe.chunks.pop_front();
            }
            copied = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MadsimStream {
    /// Every write is one chunk on its way at once: nothing waits for a flush.
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut pipe = self.conn.outgoing.borrow_mut();
        if pipe.reader_closed {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        pipe.send(Bytes::copy_from_slice(buf));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.conn.outgoing.borrow_mut().close_writer();
        Poll::Ready(Ok(()))
    }
}
