//! The driver's network on madsim (built with `--cfg madsim`): madsim's TCP, with the link
//! behaviour of turmoil added on the receiving side of each stream.
//!
//! madsim has one latency range and one loss rate for the whole network, draws latency
//! uniformly, and its TCP is reliable (a lost packet is resent). turmoil's links each have their
//! own latency range and fail rate, draw latency skewed to the minimum (an exponential draw), and
//! a lost segment stalls the stream for good. So madsim gives every packet the network's minimum
//! latency, and [`Links`] keeps the per-link settings (zone latencies, `loss` and `latency`
//! faults, the network's base loss) that [`MadsimStream`] applies to what it reads: a chunk
//! over a lossy link is lost with the link's rate and the stream then delivers nothing more (the
//! driver's idle timeout closes it, as under turmoil); otherwise the chunk is held for the rest
//! of its link's latency, drawn as turmoil draws it, in order. Every draw comes from madsim's
//! seeded generator; a link with a single latency and no loss draws nothing.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use fathom_driver::Net;
use madsim::rand::Rng as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
}

thread_local! {
    static LINKS: RefCell<Links> = RefCell::new(Links::default());
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
    }

    pub fn set_base_fail_rate(rate: f64) {
        LINKS.with(|l| l.borrow_mut().base_fail_rate = rate);
    }

    pub fn set_fail_rate(a: &str, b: &str, rate: f64) {
        LINKS.with(|l| {
            let mut l = l.borrow_mut();
            l.fail_rate.insert((a.into(), b.into()), rate);
            l.fail_rate.insert((b.into(), a.into()), rate);
        });
    }

    pub fn set_max_latency(a: &str, b: &str, max: Duration) {
        LINKS.with(|l| {
            let mut l = l.borrow_mut();
            l.max_latency.insert((a.into(), b.into()), max);
            l.max_latency.insert((b.into(), a.into()), max);
        });
    }

    /// What the link from `from` to `to` does to a chunk: its loss rate, and its latency range
    /// with what madsim already adds (the network's minimum).
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
                madsim_min: l.network.latency_ms.min(),
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
    /// The latency madsim itself gives every packet.
    madsim_min: Duration,
}

impl LinkFaults {
    fn none(&self) -> bool {
        self.fail_rate <= 0.0 && self.max <= self.madsim_min
    }

    /// The delay to add to madsim's, drawn as turmoil draws a link's latency.
    fn extra(&self, rng: &mut impl madsim::rand::Rng) -> Duration {
        let range_ms = self.max.saturating_sub(self.min).as_millis() as f64;
        let u: f64 = rng.gen();
        let mult = -(1.0 - u).ln() / LATENCY_EXP_RATE;
        let delay = self.min + Duration::from_millis((range_ms * mult) as u64);
        delay.min(self.max).saturating_sub(self.madsim_min)
    }
}

/// The driver's [`Net`] on madsim.
pub struct MadsimNet;

impl Net for MadsimNet {
    type Stream = MadsimStream;
    type Listener = madsim::net::TcpListener;

    async fn bind(addr: &str) -> io::Result<Self::Listener> {
        madsim::net::TcpListener::bind(addr).await
    }

    async fn accept(listener: &Self::Listener) -> io::Result<Self::Stream> {
        Ok(MadsimStream::new(listener.accept().await?.0))
    }

    async fn connect(addr: &str) -> io::Result<Self::Stream> {
        Ok(MadsimStream::new(
            madsim::net::TcpStream::connect(addr).await?,
        ))
    }

    fn peer_ip(stream: &Self::Stream) -> Option<IpAddr> {
        stream.inner.peer_addr().ok().map(|a| a.ip())
    }
}

/// A madsim TCP stream whose reads go through its link's faults.
pub struct MadsimStream {
    inner: madsim::net::TcpStream,
    /// The hosts at the other end and this one (unknown: no faults).
    link: Option<(String, String)>,
    /// A chunk was lost: nothing more is delivered.
    stalled: bool,
    /// A chunk waiting for its extra delay.
    held: Option<(Bytes, Pin<Box<madsim::time::Sleep>>)>,
    /// When the last held chunk was released: later ones never overtake it.
    last_release: Option<std::time::Instant>,
    ready: Bytes,
}

impl MadsimStream {
    fn new(inner: madsim::net::TcpStream) -> MadsimStream {
        let name = |addr: io::Result<std::net::SocketAddr>| {
            addr.ok().and_then(|a| crate::madsim_run::host_name(a.ip()))
        };
        let link = name(inner.peer_addr()).zip(name(inner.local_addr()));
        MadsimStream {
            inner,
            link,
            stalled: false,
            held: None,
            last_release: None,
            ready: Bytes::new(),
        }
    }

    fn faults(&self) -> Option<LinkFaults> {
        let (from, to) = self.link.as_ref()?;
        Some(Links::faults(from, to)).filter(|f| !f.none())
    }

    /// Holds `chunk` until its link's delay has passed, behind any chunk held before it.
    fn hold(&mut self, chunk: Bytes, extra: Duration) {
        let now = madsim::time::Instant::now();
        let release = self
            .last_release
            .map_or(now + extra, |last| last.max(now + extra));
        self.last_release = Some(release);
        // `reset`: madsim's `sleep_until` would wait at least a millisecond (see the driver's
        // `sleep_until`).
        let mut sleep = Box::pin(madsim::time::sleep_until(release));
        sleep.as_mut().reset(release);
        self.held = Some((chunk, sleep));
    }
}

impl AsyncRead for MadsimStream {
    /// A chunk read from madsim goes to the caller at once when its link adds nothing and
    /// nothing is held; otherwise it is taken back out of `buf` and held (or lost).
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some((_, sleep)) = &mut this.held {
                ready!(sleep.as_mut().poll(cx));
                this.ready = this.held.take().map(|h| h.0).unwrap_or_default();
                continue;
            }
            if this.stalled {
                // The segment was lost; turmoil's TCP never resends it either.
                return Poll::Pending;
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let Some(faults) = this.faults() else {
                return Poll::Ready(Ok(()));
            };
            if buf.filled().len() == before {
                return Poll::Ready(Ok(())); // end of stream
            }
            let mut rng = madsim::rand::thread_rng();
            if faults.fail_rate > 0.0 && rng.gen_bool(faults.fail_rate.min(1.0)) {
                this.stalled = true;
            } else {
                let extra = faults.extra(&mut rng);
                if extra.is_zero()
                    && this
                        .last_release
                        .is_none_or(|l| l <= madsim::time::Instant::now())
                {
                    return Poll::Ready(Ok(()));
                }
                this.hold(Bytes::copy_from_slice(&buf.filled()[before..]), extra);
            }
            buf.set_filled(before);
        }
    }
}

impl AsyncWrite for MadsimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
