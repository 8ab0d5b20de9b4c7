//! Connection tasks: one reader and one writer per TCP stream, speaking frames.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use std::net::IpAddr;

use super::{pay, Net, SharedResources, LINK_IDLE_TIMEOUT, PING_INTERVAL, READ_CHUNK_BYTES};

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
    loop {
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(msg)) => {
                    crate::stats::frame_delivered();
                    let arrived = tokio::time::Instant::now();
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
        match tokio::time::timeout(LINK_IDLE_TIMEOUT, reader.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                deliver(ReadEvent::Closed).await;
                return;
            }
            Ok(Ok(_)) => {}
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
    // The first ping waits a full interval, so the hello always goes first.
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            gathered.extend_from_slice(&frame);
            next = frames.try_recv().ok();
        }
        if writer.write_all(&gathered).await.is_err() || writer.flush().await.is_err() {
            return false;
        }
        gathered.clear();
    }
    let _ = writer.shutdown().await;
    true
}
