//! Connection tasks: one reader and one writer per TCP stream, speaking frames.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use std::net::IpAddr;

use super::{
    pay, Net, SharedResources, TrueClock, LINK_IDLE_TIMEOUT, PING_INTERVAL, READ_CHUNK_BYTES,
};

/// The most bytes of queued frames written to a socket at once.
pub const WRITE_COALESCE_BYTES: usize = 256 * 1024;
use fathom_queue::protocol::frame::{self, FrameDecoder, FrameError};
use fathom_queue::protocol::Message;

/// What a reader task reports.
pub(crate) enum ReadEvent {
    /// A frame, with when it arrived from the network (before the receive costs were paid).
    Frame(Message, tokio::time::Instant),
    Malformed(FrameError),
    Closed,
}

/// Reads frames until the stream ends or a frame is bad, sending each tagged with `key` once
/// its receive costs are paid. A full event queue pushes back on the socket rather than
/// dropping input; so does a busy CPU, one frame at a time per connection.
pub(crate) async fn read_frames<N: Net, K: Copy>(
    mut reader: ReadHalf<N::Stream>,
    events: mpsc::Sender<(K, ReadEvent)>,
    key: K,
    resources: SharedResources,
    peer: Option<IpAddr>,
) {
    let deliver = |e: ReadEvent| {
        let events = events.clone();
        async move { events.send((key, e)).await.is_ok() }
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut decoder = FrameDecoder::default();
    let clock = TrueClock::current();
    let mut idle = IdleWatch::new(&clock);
    loop {
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(msg)) => {
                    crate::stats::frame_delivered();
                    let arrived = clock.now();
                    pay(resources.receive(peer, before - buf.len())).await;
                    if !deliver(ReadEvent::Frame(msg, arrived)).await {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    deliver(ReadEvent::Malformed(e)).await;
                    return;
                }
            }
        }
        buf.reserve(READ_CHUNK_BYTES);
        match idle.read(&mut reader, &mut buf).await {
            Some(Ok(0)) | Some(Err(_)) | None => {
                deliver(ReadEvent::Closed).await;
                return;
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Writes encoded frames, and a `Ping` every [`PING_INTERVAL`], until the channel closes or a
/// write fails; then shuts the stream. Returns whether every frame was written.
///
/// Frames queued together go out in one write of up to [`WRITE_COALESCE_BYTES`]: fewer, larger
/// writes, as a kernel's socket buffer would coalesce them (and turmoil's TCP, which counts
/// segments against a window of 64, stays out of its window). A frame whose transmit cost must
/// be waited for first sends what is already gathered, so the wait delays only later frames.
pub(crate) async fn write_frames<N: Net>(
    mut writer: WriteHalf<N::Stream>,
    mut frames: mpsc::Receiver<Bytes>,
    resources: SharedResources,
    peer: Option<IpAddr>,
) -> bool {
    let ping = frame::encode(&Message::Ping);
    let mut ticker = PingTicker::new();
    let mut gathered = BytesMut::new();
    loop {
        let mut next = Some(tokio::select! {
            biased;
            f = frames.recv() => match f {
                Some(f) => f,
                None => break,
            },
            _ = ticker.tick() => ping.clone(),
        });
        // A frame alone (the usual case) is written as it is, not copied into `gathered`.
        let mut alone = None;
        while let Some(frame) = next.take() {
            let wait = resources.transmit(peer, frame.len());
            let full = gathered.len() + frame.len() > WRITE_COALESCE_BYTES;
            if (!wait.is_zero() || full) && !gathered.is_empty() {
                if writer.write_all(&gathered).await.is_err() {
                    return false;
                }
                gathered.clear();
            }
            pay(wait).await;
            next = frames.try_recv().ok();
            if next.is_none() && gathered.is_empty() {
                alone = Some(frame);
            } else {
                gathered.extend_from_slice(&frame);
            }
        }
        let out = alone.as_deref().unwrap_or(&gathered);
        if writer.write_all(out).await.is_err() || writer.flush().await.is_err() {
            return false;
        }
        gathered.clear();
    }
    let _ = writer.shutdown().await;
    true
}

/// Notices a link that delivers nothing for [`LINK_IDLE_TIMEOUT`].
///
/// Under tokio each read is wrapped in a `timeout`, as before (turmoil's schedule unchanged).
/// Under madsim, where every timer ever polled stays in the simulator's heap, one timer per
/// idle period is armed: when it fires early (the link delivered since), it moves to the last
/// delivery plus the timeout.
struct IdleWatch {
    #[cfg(madsim)]
    clock: TrueClock,
    #[cfg(madsim)]
    timer: crate::LoopTimer,
    #[cfg(madsim)]
    last_read: tokio::time::Instant,
    #[cfg(madsim)]
    check_at: tokio::time::Instant,
}

impl IdleWatch {
    #[cfg_attr(not(madsim), allow(unused_variables))]
    fn new(clock: &TrueClock) -> IdleWatch {
        #[cfg(madsim)]
        {
            let now = clock.now();
            IdleWatch {
                clock: clock.clone(),
                timer: crate::LoopTimer::new(),
                last_read: now,
                check_at: now + LINK_IDLE_TIMEOUT,
            }
        }
        #[cfg(not(madsim))]
        IdleWatch {}
    }

    /// One read into `buf`; `None` when the link stayed silent for the timeout.
    #[cfg(not(madsim))]
    async fn read<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        buf: &mut BytesMut,
    ) -> Option<std::io::Result<usize>> {
        tokio::time::timeout(LINK_IDLE_TIMEOUT, reader.read_buf(buf))
            .await
            .ok()
    }

    /// One read into `buf`; `None` when the link stayed silent for the timeout.
    #[cfg(madsim)]
    async fn read<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        buf: &mut BytesMut,
    ) -> Option<std::io::Result<usize>> {
        loop {
            tokio::select! {
                biased;
                read = reader.read_buf(buf) => {
                    self.last_read = self.clock.now();
                    return Some(read);
                }
                _ = self.timer.until(self.check_at) => {
                    let due = self.last_read + LINK_IDLE_TIMEOUT;
                    if self.clock.now() >= due {
                        return None;
                    }
                    self.check_at = due;
                }
            }
        }
    }
}

/// When a connection sends its next `Ping`: every [`PING_INTERVAL`], the first a full interval
/// after the connection opened so the hello always goes first; a late tick delays the rest.
///
/// Under tokio it is a tokio `Interval` as before; under madsim a [`crate::LoopTimer`], since
/// madsim's `Interval` adds a simulator timer on every poll while it waits.
struct PingTicker {
    #[cfg(not(madsim))]
    interval: tokio::time::Interval,
    #[cfg(madsim)]
    timer: crate::LoopTimer,
    #[cfg(madsim)]
    next: tokio::time::Instant,
}

impl PingTicker {
    fn new() -> PingTicker {
        let first = tokio::time::Instant::now() + PING_INTERVAL;
        #[cfg(not(madsim))]
        {
            let mut interval = tokio::time::interval_at(first, PING_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            PingTicker { interval }
        }
        #[cfg(madsim)]
        PingTicker {
            timer: crate::LoopTimer::new(),
            next: first,
        }
    }

    #[cfg(not(madsim))]
    async fn tick(&mut self) {
        self.interval.tick().await;
    }

    #[cfg(madsim)]
    async fn tick(&mut self) {
        self.timer.until(self.next).await;
        self.next = tokio::time::Instant::now() + PING_INTERVAL;
    }
}
