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
//! A disk can also flip bits in data that was durable; then falling back to an older record
//! is not safe (a replica that forgets its vote may vote twice in a term). So each state is
//! written as two copies of its record in one append ([`encode_mirrored`]), and the reader
//! steps over a damaged record to the next valid one ([`read`]): one damaged copy costs
//! nothing, and a newest state lost with both copies is reported, for the owner to act
//! conservatively. Both copies sit in one disk block, so a device that loses whole sectors can
//! still lose both; the model here is a flipped byte on read.
//!
//! The file grows by one record per change; rewriting it to its last record from time to time
//! is the owner's business.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes before a record's payload: its length and its checksum.
pub const META_RECORD_HEADER_BYTES: usize = 8;

/// The largest payload a meta record holds (replication's hard state takes 13 bytes). The
/// reader searches this far past a damaged record for the next valid one.
pub const META_PAYLOAD_MAX: usize = 64;

/// What [`read`] found in a meta file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetaRead {
    /// The payload of the last valid record.
    pub last: Option<Bytes>,
    /// Bytes after the last valid record that are neither a torn or zero-filled tail nor the
    /// damaged mirror copy of that record: the newest state may have been lost to corruption,
    /// so the file's owner must not trust `last` to be its newest state.
    pub newest_lost: bool,
}

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

/// Frames `payload` as a record written twice (see the module docs).
pub fn encode_mirrored(payload: &[u8]) -> Bytes {
    let one = encode_record(payload);
    let mut b = BytesMut::with_capacity(2 * one.len());
    b.put_slice(&one);
    b.put_slice(&one);
    b.freeze()
}

/// The record at the front of `buf`: `(payload, record length)` if it is whole and its
/// checksum matches.
fn record_at(buf: &[u8]) -> Option<(&[u8], usize)> {
    let mut header = buf.get(..META_RECORD_HEADER_BYTES)?;
    let payload_len = header.get_u32();
    let crc = header.get_u32();
    if payload_len as usize > META_PAYLOAD_MAX {
        return None;
    }
    let end = META_RECORD_HEADER_BYTES + payload_len as usize;
    let payload = buf.get(META_RECORD_HEADER_BYTES..end)?;
    (checksum(payload_len, payload) == crc).then_some((payload, end))
}

/// Reads a meta file: the last valid record, stepping over damaged ones (a damaged record is
/// followed by its mirror copy or by later records, found by searching the next
/// `2 * (header + META_PAYLOAD_MAX)` bytes), and whether the newest state may be lost.
pub fn read(file: &[u8]) -> MetaRead {
    const SEARCH: usize = 2 * (META_RECORD_HEADER_BYTES + META_PAYLOAD_MAX);
    let mut last: Option<(&[u8], usize)> = None;
    let mut at = 0;
    while at < file.len() {
        if let Some((payload, len)) = record_at(&file[at..]) {
            last = Some((payload, len));
            at += len;
            continue;
        }
        let next = (at + 1..file.len().min(at + SEARCH)).find(|&q| record_at(&file[q..]).is_some());
        match next {
            Some(q) => at = q,
            None => break,
        }
    }
    let tail = &file[at.min(file.len())..];
    let mirror = last.is_some_and(|(_, len)| tail.len() == len);
    MetaRead {
        last: last.map(|(p, _)| Bytes::copy_from_slice(p)),
        newest_lost: !torn(tail) && !mirror,
    }
}

/// Whether the bytes after the last valid record are what a crash mid-append leaves: nothing,
/// or a record whose written part (before the zeros a lost block reads back as) stops short of
/// its declared end. A flipped length field can also make a record run past what was written;
/// that is read as torn.
fn torn(tail: &[u8]) -> bool {
    let written = tail.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if written < META_RECORD_HEADER_BYTES {
        return true;
    }
    let declared = u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]) as usize;
    META_RECORD_HEADER_BYTES.saturating_add(declared) > written
}

/// The payload of the last valid record of a meta file (see [`read`]).
pub fn last_valid_record(file: &[u8]) -> Option<Bytes> {
    read(file).last
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
    fn a_damaged_record_in_the_middle_is_stepped_over() {
        let len = encode_record(b"term=1").len();
        for byte in len..2 * len {
            let mut f = file(&[b"term=1", b"term=2", b"term=3"]);
            f[byte] ^= 0x20;
            let r = read(&f);
            assert_eq!(r.last.as_deref(), Some(&b"term=3"[..]), "flip at {byte}");
            assert!(!r.newest_lost);
        }
    }

    fn mirrored(payloads: &[&[u8]]) -> Vec<u8> {
        payloads.iter().flat_map(|p| encode_mirrored(p)).collect()
    }

    /// The vote-twice bug: the newest record damaged on read must not silently fall back.
    #[test]
    fn a_flip_anywhere_in_a_mirrored_file_keeps_the_newest_state() {
        let clean = mirrored(&[b"term=1", b"term=2 vote=3"]);
        for byte in 0..clean.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut f = clean.clone();
                f[byte] ^= flip;
                let r = read(&f);
                assert_eq!(
                    r.last.as_deref(),
                    Some(&b"term=2 vote=3"[..]),
                    "flip {flip:#x} at {byte}"
                );
                assert!(!r.newest_lost, "flip {flip:#x} at {byte}");
            }
        }
    }

    #[test]
    fn both_copies_of_the_newest_record_damaged_is_reported() {
        let mut f = mirrored(&[b"term=1", b"term=2 vote=3"]);
        let pair = encode_mirrored(b"term=1").len();
        let one = pair / 2;
        f[pair + META_RECORD_HEADER_BYTES] ^= 0x04;
        f[pair + one + META_RECORD_HEADER_BYTES] ^= 0x04;
        let r = read(&f);
        assert_eq!(r.last.as_deref(), Some(&b"term=1"[..]));
        assert!(r.newest_lost);
    }

    #[test]
    fn a_torn_mirrored_append_is_not_a_lost_state() {
        let whole = mirrored(&[b"term=1", b"term=2 vote=3"]);
        let pair = encode_mirrored(b"term=1").len();
        for cut in pair..whole.len() {
            let r = read(&whole[..cut]);
            assert!(!r.newest_lost, "cut at {cut}");
            assert!(r.last.is_some());
        }
        // Zero-filled from a block boundary on, as a lost block reads back.
        let mut f = whole[..pair + 4].to_vec();
        f.extend_from_slice(&[0u8; 40]);
        assert_eq!(read(&f).last.as_deref(), Some(&b"term=1"[..]));
        assert!(!read(&f).newest_lost);
    }

    /// Some file systems leave a zero-filled tail after a crash.
    #[test]
    fn zero_filled_tail_is_not_a_record() {
        let mut f = file(&[b"term=4"]);
        f.extend_from_slice(&[0u8; 64]);
        assert_eq!(last_valid_record(&f).as_deref(), Some(&b"term=4"[..]));
    }
}
