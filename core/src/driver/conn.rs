//! Connection tasks: one reader and one writer per TCP stream, speaking frames.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use super::{Net, LINK_IDLE_TIMEOUT, PING_INTERVAL, READ_CHUNK_BYTES};
use crate::protocol::frame::{self, FrameDecoder, FrameError};
use crate::protocol::Message;

/// What a reader task reports.
pub(crate) enum ReadEvent {
    Frame(Message),
    Malformed(FrameError),
    Closed,
}

/// Reads frames until the stream ends or a frame is bad, sending each tagged with `key`. A full
/// event queue pushes back on the socket rather than dropping input.
pub(crate) async fn read_frames<N: Net, K: Copy>(
    mut reader: ReadHalf<N::Stream>,
    events: mpsc::Sender<(K, ReadEvent)>,
    key: K,
) {
    let deliver = |e: ReadEvent| {
        let events = events.clone();
        async move { events.send((key, e)).await.is_ok() }
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut decoder = FrameDecoder::default();
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(msg)) => {
                    if !deliver(ReadEvent::Frame(msg)).await {
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
pub(crate) async fn write_frames<N: Net>(
    mut writer: WriteHalf<N::Stream>,
    mut frames: mpsc::Receiver<Bytes>,
) -> bool {
    let ping = frame::encode(&Message::Ping);
    // The first ping waits a full interval, so the hello always goes first.
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let frame = tokio::select! {
            biased;
            f = frames.recv() => match f {
                Some(f) => f,
                None => break,
            },
            _ = ticker.tick() => ping.clone(),
        };
        if writer.write_all(&frame).await.is_err() {
            return false;
        }
        // Coalesce whatever else is queued before flushing.
        while let Ok(frame) = frames.try_recv() {
            if writer.write_all(&frame).await.is_err() {
                return false;
            }
        }
        if writer.flush().await.is_err() {
            return false;
        }
    }
    let _ = writer.shutdown().await;
    true
}
