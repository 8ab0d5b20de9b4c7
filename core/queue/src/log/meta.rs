//! Small durable records, such as replication's hard state (term and vote).
//!
//! A meta file is append-only: each new state is a record appended after the previous ones,
//! and a reader takes the last record that is whole and whose checksum matches. Record layout
//! (big-endian): `payload_len u32, crc u32, payload`, where the CRC32C covers the length field
//! and the payload. Covering the length matters: a file tail that a crash left zero-filled
//! would otherwise read as a run of valid empty records.
//!
//! A crash in the middle of an append leaves a torn last record, and the reader falls back to
//! the record before it. That is only safe if nobody acted on the new state before it was
//! durable: the writer must append, `Sync`, and wait for the sync to complete before it sends
//! anything (a vote, a higher term) that depends on the new record.
//!
//! The file grows by one record per change; rewriting it to its last record from time to time
//! is the owner's business.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes before a record's payload: its length and its checksum.
pub const META_RECORD_HEADER_BYTES: usize = 8;

fn checksum(payload_len: u32, payload: &[u8]) -> u32 {
    let c = crc32c::crc32c(&payload_len.to_be_bytes());
    crc32c::crc32c_append(c, payload)
}

/// Frames `payload` as one record, ready to append to a meta file.
pub fn encode_record(payload: &[u8]) -> Bytes {
    let payload_len = u32::try_from(payload.len()).expect("a meta record payload fits in u32");
    let mut b = BytesMut::with_capacity(META_RECORD_HEADER_BYTES + payload.len());
    b.put_u32(payload_len);
    b.put_u32(checksum(payload_len, payload));
    b.put_slice(payload);
    b.freeze()
}

/// The payload of the last valid record of a meta file, reading from the start and stopping at
/// the first record that is incomplete or fails its checksum; `None` if the first one does.
pub fn last_valid_record(file: &[u8]) -> Option<Bytes> {
    let mut last = None;
    let mut rest = file;
    while rest.len() >= META_RECORD_HEADER_BYTES {
        let mut header = &rest[..META_RECORD_HEADER_BYTES];
        let payload_len = header.get_u32();
        let crc = header.get_u32();
        let Some(end) = META_RECORD_HEADER_BYTES.checked_add(payload_len as usize) else {
            break;
        };
        let Some(payload) = rest.get(META_RECORD_HEADER_BYTES..end) else {
            break;
        };
        if checksum(payload_len, payload) != crc {
            break;
        }
        last = Some(payload);
        rest = &rest[end..];
    }
    last.map(Bytes::copy_from_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(payloads: &[&[u8]]) -> Vec<u8> {
        payloads.iter().flat_map(|p| encode_record(p)).collect()
    }

    #[test]
    fn last_whole_record_wins() {
        let f = file(&[b"term=1", b"term=2 vote=3", b""]);
        assert_eq!(last_valid_record(&f).as_deref(), Some(&b""[..]));
        let f = file(&[b"term=1", b"term=2 vote=3"]);
        assert_eq!(
            last_valid_record(&f).as_deref(),
            Some(&b"term=2 vote=3"[..])
        );
        assert_eq!(last_valid_record(&[]), None);
    }

    /// A crash mid-append must fall back to the previous state, never to garbage.
    #[test]
    fn torn_last_record_falls_back_to_the_previous_one() {
        let whole = file(&[b"term=1", b"term=2 vote=3"]);
        let first_len = encode_record(b"term=1").len();
        for cut in first_len..whole.len() {
            assert_eq!(
                last_valid_record(&whole[..cut]).as_deref(),
                Some(&b"term=1"[..]),
                "cut at {cut}"
            );
        }
        for cut in 0..first_len {
            assert_eq!(last_valid_record(&whole[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn corrupt_record_stops_the_scan() {
        let mut f = file(&[b"term=1", b"term=2", b"term=3"]);
        let second = encode_record(b"term=1").len();
        f[second + META_RECORD_HEADER_BYTES] ^= 0x20;
        assert_eq!(
            last_valid_record(&f).as_deref(),
            Some(&b"term=1"[..]),
            "a bad record hides everything after it"
        );
    }

    /// Some file systems leave a zero-filled tail after a crash.
    #[test]
    fn zero_filled_tail_is_not_a_record() {
        let mut f = file(&[b"term=4"]);
        f.extend_from_slice(&[0u8; 64]);
        assert_eq!(last_valid_record(&f).as_deref(), Some(&b"term=4"[..]));
    }
}
