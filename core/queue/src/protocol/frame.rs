//! Length-delimited frames: a 4-byte big-endian length, then a postcard-encoded [`Message`].
//!
//! Decoding is sans-IO: the driver appends whatever bytes arrived to a buffer and calls
//! [`FrameDecoder::decode`] until it returns `Ok(None)`. A frame longer than the limit, or one
//! that does not decode, is an error after which the connection must be closed: the stream has
//! lost its framing.

use bytes::{Buf, Bytes, BytesMut};

use super::Message;

/// Largest frame either side accepts. Bounds the memory one connection can pin.
pub const FRAME_BYTES_MAX: u32 = 16 * 1024 * 1024;
const LEN_BYTES: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u32, max: u32 },
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Encodes one frame. No peer's request can make a message outgrow [`FRAME_BYTES_MAX`]: a
/// fetch's bytes are capped by `broker::FETCH_BYTES_MAX`, and batches and appends by the
/// cluster config's `batch_bytes_max` and `append_bytes_max`, which must stay well under it.
pub fn encode(msg: &Message) -> Bytes {
    // The body is serialised once, behind room for its length, into a buffer sized by a first
    // pass that only counts: no copy of the body behind the length (a fetch answer carries up
    // to megabytes of batches), and no spare capacity pinned while the frame is in flight (a
    // growing Vec would hold up to twice the frame).
    let len = postcard::experimental::serialized_size(msg).expect("every Message is serializable");
    let mut out = Vec::with_capacity(LEN_BYTES + len);
    out.extend_from_slice(&[0; LEN_BYTES]);
    let mut out =
        postcard::serialize_with_flavor(msg, Presized(out)).expect("every Message is serializable");
    debug_assert_eq!(out.len(), LEN_BYTES + len, "the size pass counted the body");
    assert!(
        len <= FRAME_BYTES_MAX as usize,
        "encoding a frame over the limit"
    );
    out[..LEN_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Bytes::from(out)
}

/// postcard's output into a `Vec` sized beforehand. Each field's bytes are copied at once
/// (postcard's `to_extend` pushes them byte by byte), and nothing is zeroed first (as
/// `to_slice` into a zeroed buffer needs).
struct Presized(Vec<u8>);

impl postcard::ser_flavors::Flavor for Presized {
    type Output = Vec<u8>;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

#[derive(Debug)]
pub struct FrameDecoder {
    max_len: u32,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder {
            max_len: FRAME_BYTES_MAX,
        }
    }
}

impl FrameDecoder {
    pub fn with_limit(max_len: u32) -> FrameDecoder {
        FrameDecoder { max_len }
    }

    /// Takes one whole frame off the front of `buf`, if there is one.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, FrameError> {
        if buf.len() < LEN_BYTES {
            return Ok(None);
        }
        let len = u32::from_be_bytes(buf[..LEN_BYTES].try_into().unwrap());
        if len > self.max_len {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_len,
            });
        }
        if buf.len() < LEN_BYTES + len as usize {
            buf.reserve(LEN_BYTES + len as usize - buf.len());
            return Ok(None);
        }
        buf.advance(LEN_BYTES);
        let body = buf.split_to(len as usize);
        postcard::from_bytes(&body)
            .map(Some)
            .map_err(|e| FrameError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Peer, Request, PROTOCOL_VERSION};
    use bytes::BufMut;
    use proptest::prelude::*;

    #[test]
    fn frames_split_anywhere_decode_whole() {
        let msgs = vec![
            Message::Hello {
                version: PROTOCOL_VERSION,
                peer: Peer::Client("p0".into()),
            },
            Message::Request {
                correlation_id: 9,
                request: Request::Metadata,
            },
        ];
        let mut wire = BytesMut::new();
        for m in &msgs {
            wire.extend_from_slice(&encode(m));
        }
        for cut in 0..wire.len() {
            let mut dec = FrameDecoder::default();
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                got.push(m);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                got.push(m);
            }
            assert_eq!(got, msgs);
        }
    }

    #[test]
    fn oversized_frame_is_rejected_before_buffering() {
        let mut buf = BytesMut::new();
        buf.put_u32(FRAME_BYTES_MAX + 1);
        let err = FrameDecoder::default().decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = BytesMut::from(&data[..]);
            let mut dec = FrameDecoder::with_limit(1024);
            for _ in 0..64 {
                match dec.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
