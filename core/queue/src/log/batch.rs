//! The record batch: the unit the producer builds, the wire carries, the log stores and
//! replication copies. One encoding serves all four, so a batch is checked once and never
//! re-encoded on its way from producer to consumer.
//!
//! Layout (big-endian):
//!
//! ```text
//!  0  base_offset         u64   set by the leader on append
//!  8  batch_len           u32   bytes after this field
//! 12  leader_epoch        u64   set by the leader on append
//! 20  magic               u8    = 1
//! 21  crc                 u32   CRC32C, see below
//! 25  attributes          u16   bit 0: control batch; bit 1: records LZ4-compressed
//! 27  last_offset_delta   u32   record_count - 1
//! 31  first_timestamp_ns  u64
//! 39  max_timestamp_ns    u64
//! 47  producer_id         u64   idempotent producer's id; 0 (`NO_PRODUCER_ID`) for none
//! 55  producer_epoch      u16   that producer's epoch
//! 57  base_sequence       u32   the first record's sequence number in this partition
//! 61  record_count        u32
//! 65  records: (offset_delta u32, timestamp_ns u64, key_len u32, key, value_len u32, value)*
//! ```
//!
//! A compressed batch (attribute bit 1) stores instead, from byte 65, `records_len u32` (the
//! records' uncompressed length) and then the records as one LZ4 block. The checksum covers the
//! stored (compressed) bytes, so the broker checks and stores a compressed batch as is, and
//! [`records`] decompresses. A batch is stored compressed only if that makes it smaller.
//!
//! The CRC covers `base_offset`, `leader_epoch` and every byte after the CRC field. Kafka leaves
//! the offset and epoch out so the leader can stamp them without rehashing; Fathom rehashes on
//! stamp instead, so a flipped bit in the offset or epoch read back from disk is caught too.
//!
//! Idempotent producers number their records per partition, as Kafka does: a batch's
//! `base_sequence` is the sequence of its first record, the next batch starts at
//! `base_sequence + record_count` (wrapping). The producer sets the three producer fields with
//! [`set_producer`] before the batch is first sent and never changes them afterwards, so a retry
//! carries the very same bytes and the leader can recognise it.

use bytes::{BufMut, Bytes, BytesMut};

pub const MAGIC: u8 = 1;
pub const HEADER_BYTES: usize = 65;
/// Bytes before `batch_len`'s count starts.
pub const LOG_OVERHEAD_BYTES: usize = 12;
const RECORD_OVERHEAD_BYTES: usize = 4 + 8 + 4 + 4;
pub const ATTR_CONTROL: u16 = 1;
pub const ATTR_LZ4: u16 = 2;
/// Largest uncompressed records section a compressed batch may claim, so that a corrupt or
/// hostile length cannot make a reader allocate without bound.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// How a producer's batch stores its records (`compression = "none" | "lz4"` in a scenario).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    /// One LZ4 block (the `lz4_flex` block format, no frame).
    Lz4,
}
/// The `producer_id` of a batch written without idempotence (and of control batches). Real
/// producer ids are never 0 (see [`crate::broker::producer_ids`]).
pub const NO_PRODUCER_ID: u64 = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    pub batch_len: u32,
    pub leader_epoch: u64,
    pub crc: u32,
    pub attributes: u16,
    pub first_timestamp_ns: u64,
    pub max_timestamp_ns: u64,
    pub producer_id: u64,
    pub producer_epoch: u16,
    pub base_sequence: u32,
    pub record_count: u32,
}

impl BatchHeader {
    /// The offset after this batch's last record. [`parse`] refuses a batch whose end does not
    /// fit in a u64 ([`BatchError::OffsetOverflow`]), so for a parsed header this is exact; the
    /// saturation only keeps a hand-built header from wrapping.
    pub fn end_offset(&self) -> u64 {
        self.base_offset
            .saturating_add(u64::from(self.record_count))
    }

    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_len as usize
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn is_compressed(&self) -> bool {
        self.attributes & ATTR_LZ4 != 0
    }

    /// Written by an idempotent producer.
    pub fn has_producer(&self) -> bool {
        self.producer_id != NO_PRODUCER_ID
    }

    /// The sequence number of the batch's last record.
    pub fn last_sequence(&self) -> u32 {
        self.base_sequence
            .wrapping_add(self.record_count.saturating_sub(1))
    }
}

/// A record as the producer hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub timestamp_ns: u64,
    pub key: Bytes,
    pub value: Bytes,
}

/// A record as read back, with its absolute offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub timestamp_ns: u64,
    pub key: Bytes,
    pub value: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the batch needs: a torn write, or a read that stopped short.
    #[error("incomplete batch: have {have} bytes, need {need}")]
    Incomplete { have: usize, need: usize },
    #[error("unknown batch magic {0}")]
    BadMagic(u8),
    #[error("batch checksum mismatch")]
    CrcMismatch,
    #[error("malformed batch: {0}")]
    Malformed(&'static str),
    #[error("compressed records do not decompress: {0}")]
    Decompress(String),
    /// `base_offset + record_count` does not fit in a u64: no log can hold such a batch.
    #[error("batch offsets overflow: base {base_offset} with {record_count} records")]
    OffsetOverflow { base_offset: u64, record_count: u32 },
}

/// Bytes a batch of these records will take, so a producer can cut batches by size.
pub fn encoded_len(records: &[NewRecord]) -> usize {
    HEADER_BYTES
        + records
            .iter()
            .map(|r| RECORD_OVERHEAD_BYTES + r.key.len() + r.value.len())
            .sum::<usize>()
}

pub fn record_encoded_len(record: &NewRecord) -> usize {
    RECORD_OVERHEAD_BYTES + record.key.len() + record.value.len()
}

/// Encodes a data batch with base offset and epoch 0, as a producer sends it.
pub fn build(records: &[NewRecord]) -> Bytes {
    build_with(records, Compression::None)
}

/// [`build`], with the records compressed if `compression` asks for it and it saves space.
pub fn build_with(records: &[NewRecord], compression: Compression) -> Bytes {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let plain = encode(records, 0);
    if compression == Compression::None {
        return plain;
    }
    let section = &plain[HEADER_BYTES..];
    let block = lz4_flex::block::compress(section);
    let len = HEADER_BYTES + 4 + block.len();
    if len >= plain.len() || section.len() > DECOMPRESSED_BYTES_MAX {
        return plain;
    }
    let mut b = BytesMut::with_capacity(len);
    b.put_slice(&plain[..HEADER_BYTES]);
    b.put_u32(section.len() as u32);
    b.put_slice(&block);
    b[8..12].copy_from_slice(&((len - LOG_OVERHEAD_BYTES) as u32).to_be_bytes());
    b[25..27].copy_from_slice(&ATTR_LZ4.to_be_bytes());
    let crc = checksum(&b);
    b[21..25].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// A batch of one empty control record, which a new leader appends to commit its term.
pub fn build_control(timestamp_ns: u64) -> Bytes {
    let r = NewRecord {
        timestamp_ns,
        key: Bytes::new(),
        value: Bytes::new(),
    };
    encode(std::slice::from_ref(&r), ATTR_CONTROL)
}

/// A control batch of `records`: state a leader keeps in a partition's own log (share-group
/// changes, see [`crate::share::record`]), which consumers skip like any control batch.
pub fn build_control_records(records: &[NewRecord]) -> Bytes {
    encode(records, ATTR_CONTROL)
}

fn encode(records: &[NewRecord], attributes: u16) -> Bytes {
    let len = encoded_len(records);
    let mut b = BytesMut::with_capacity(len);
    let first_ts = records[0].timestamp_ns;
    let max_ts = records.iter().map(|r| r.timestamp_ns).max().unwrap_or(0);
    b.put_u64(0);
    b.put_u32((len - LOG_OVERHEAD_BYTES) as u32);
    b.put_u64(0);
    b.put_u8(MAGIC);
    b.put_u32(0);
    b.put_u16(attributes);
    b.put_u32(records.len() as u32 - 1);
    b.put_u64(first_ts);
    b.put_u64(max_ts);
    b.put_u64(0);
    b.put_u16(0);
    b.put_u32(0);
    b.put_u32(records.len() as u32);
    for (delta, r) in records.iter().enumerate() {
        b.put_u32(delta as u32);
        b.put_u64(r.timestamp_ns);
        b.put_u32(r.key.len() as u32);
        b.put_slice(&r.key);
        b.put_u32(r.value.len() as u32);
        b.put_slice(&r.value);
    }
    debug_assert_eq!(b.len(), len);
    let crc = checksum(&b);
    b[21..25].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

fn checksum(batch: &[u8]) -> u32 {
    let c = crc32c::crc32c(&batch[0..8]);
    let c = crc32c::crc32c_append(c, &batch[12..20]);
    crc32c::crc32c_append(c, &batch[25..])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// Reads the header of the batch at the front of `buf` without checking its checksum or its
/// records: for batches already checked, such as those of an in-memory log, when only the
/// header matters.
pub fn peek_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < HEADER_BYTES {
        return Err(BatchError::Incomplete {
            have: buf.len(),
            need: HEADER_BYTES,
        });
    }
    if buf[20] != MAGIC {
        return Err(BatchError::BadMagic(buf[20]));
    }
    Ok(BatchHeader {
        base_offset: u64_at(buf, 0),
        batch_len: u32_at(buf, 8),
        leader_epoch: u64_at(buf, 12),
        crc: u32_at(buf, 21),
        attributes: u16_at(buf, 25),
        first_timestamp_ns: u64_at(buf, 31),
        max_timestamp_ns: u64_at(buf, 39),
        producer_id: u64_at(buf, 47),
        producer_epoch: u16_at(buf, 55),
        base_sequence: u32_at(buf, 57),
        record_count: u32_at(buf, 61),
    })
}

/// Reads and checks the batch at the front of `buf` (which may hold more after it). On success
/// the batch is `buf[..header.total_bytes()]`, its checksum verified.
pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < HEADER_BYTES {
        return Err(BatchError::Incomplete {
            have: buf.len(),
            need: HEADER_BYTES,
        });
    }
    let batch_len = u32_at(buf, 8);
    let Some(total) = usize::try_from(batch_len)
        .ok()
        .and_then(|len| len.checked_add(LOG_OVERHEAD_BYTES))
    else {
        return Err(BatchError::Malformed("batch length does not fit in memory"));
    };
    if total < HEADER_BYTES {
        return Err(BatchError::Malformed(
            "batch length shorter than its header",
        ));
    }
    if buf[20] != MAGIC {
        return Err(BatchError::BadMagic(buf[20]));
    }
    if buf.len() < total {
        return Err(BatchError::Incomplete {
            have: buf.len(),
            need: total,
        });
    }
    let batch = &buf[..total];
    let header = BatchHeader {
        base_offset: u64_at(batch, 0),
        batch_len,
        leader_epoch: u64_at(batch, 12),
        crc: u32_at(batch, 21),
        attributes: u16_at(batch, 25),
        first_timestamp_ns: u64_at(batch, 31),
        max_timestamp_ns: u64_at(batch, 39),
        producer_id: u64_at(batch, 47),
        producer_epoch: u16_at(batch, 55),
        base_sequence: u32_at(batch, 57),
        record_count: u32_at(batch, 61),
    };
    if checksum(batch) != header.crc {
        return Err(BatchError::CrcMismatch);
    }
    if header.record_count == 0 || u32_at(batch, 27) != header.record_count - 1 {
        return Err(BatchError::Malformed(
            "record count disagrees with last offset delta",
        ));
    }
    if header
        .base_offset
        .checked_add(u64::from(header.record_count))
        .is_none()
    {
        return Err(BatchError::OffsetOverflow {
            base_offset: header.base_offset,
            record_count: header.record_count,
        });
    }
    Ok(header)
}

/// Checks that `bytes` is exactly one well-formed batch whose records decode.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse(bytes)?;
    if header.total_bytes() != bytes.len() {
        return Err(BatchError::Malformed("trailing bytes after the batch"));
    }
    records_of(&header, bytes)?;
    Ok(header)
}

/// Returns a copy of a checked batch with its base offset and leader epoch set and its checksum
/// recomputed.
pub fn stamp(batch: &[u8], base_offset: u64, leader_epoch: u64) -> Bytes {
    let mut b = BytesMut::from(batch);
    b[0..8].copy_from_slice(&base_offset.to_be_bytes());
    b[12..20].copy_from_slice(&leader_epoch.to_be_bytes());
    let crc = checksum(&b);
    b[21..25].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// Returns a copy of a batch with its producer id, epoch and base sequence set and its checksum
/// recomputed. The producer calls it once per batch, before the first attempt.
pub fn set_producer(
    batch: &[u8],
    producer_id: u64,
    producer_epoch: u16,
    base_sequence: u32,
) -> Bytes {
    let mut b = BytesMut::from(batch);
    b[47..55].copy_from_slice(&producer_id.to_be_bytes());
    b[55..57].copy_from_slice(&producer_epoch.to_be_bytes());
    b[57..61].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = checksum(&b);
    b[21..25].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// Decodes every record of one checked batch, decompressing it first if it is compressed.
pub fn records(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    records_of(&parse(batch)?, batch)
}

/// [`records`] of a batch already parsed into `header` (its checksum checked once, not again).
pub fn records_of(header: &BatchHeader, batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    let stored = &batch[HEADER_BYTES..header.total_bytes()];
    if !header.is_compressed() {
        return decode_records(header, stored);
    }
    let Some((len, block)) = stored.split_first_chunk::<4>() else {
        return Err(BatchError::Malformed("compressed batch without its length"));
    };
    let len = u32::from_be_bytes(*len) as usize;
    if len > DECOMPRESSED_BYTES_MAX {
        return Err(BatchError::Malformed(
            "compressed batch claims too many bytes",
        ));
    }
    let mut section = vec![0u8; len];
    let written = lz4_flex::block::decompress_into(block, &mut section)
        .map_err(|e| BatchError::Decompress(e.to_string()))?;
    if written != len {
        return Err(BatchError::Malformed(
            "compressed records shorter than their stated length",
        ));
    }
    decode_records(header, &section)
}

/// Decodes the records section `section` (uncompressed) of a batch with `header`.
fn decode_records(header: &BatchHeader, section: &[u8]) -> Result<Vec<Record>, BatchError> {
    let end = section.len();
    let mut at = 0;
    let mut out = Vec::with_capacity((header.record_count as usize).min(end));
    let take = |at: &mut usize, n: usize| -> Result<std::ops::Range<usize>, BatchError> {
        if n > end - *at {
            return Err(BatchError::Malformed(
                "record runs past the end of its batch",
            ));
        }
        let r = *at..*at + n;
        *at += n;
        Ok(r)
    };
    for i in 0..header.record_count {
        let delta = u32_at(section, take(&mut at, 4)?.start);
        if delta != i {
            return Err(BatchError::Malformed(
                "record offset deltas are not consecutive",
            ));
        }
        let timestamp_ns = u64_at(section, take(&mut at, 8)?.start);
        let key_len = u32_at(section, take(&mut at, 4)?.start) as usize;
        let key = take(&mut at, key_len)?;
        let value_len = u32_at(section, take(&mut at, 4)?.start) as usize;
        let value = take(&mut at, value_len)?;
        // `parse` checked that the batch's end fits, and `delta` is below the record count.
        let offset =
            header
                .base_offset
                .checked_add(u64::from(delta))
                .ok_or(BatchError::OffsetOverflow {
                    base_offset: header.base_offset,
                    record_count: header.record_count,
                })?;
        out.push(Record {
            offset,
            timestamp_ns,
            key: Bytes::copy_from_slice(&section[key]),
            value: Bytes::copy_from_slice(&section[value]),
        });
    }
    if at != end {
        return Err(BatchError::Malformed(
            "bytes left over after the last record",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(key: &str, value_len: usize, ts: u64) -> NewRecord {
        NewRecord {
            timestamp_ns: ts,
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::from(vec![7u8; value_len]),
        }
    }

    #[test]
    fn stamped_batch_reads_back_with_absolute_offsets() {
        let b = build(&[rec("p0-1", 10, 5), rec("p0-2", 0, 9)]);
        assert_eq!(
            b.len(),
            encoded_len(&[rec("p0-1", 10, 5), rec("p0-2", 0, 9)])
        );
        let s = stamp(&b, 40, 3);
        let h = validate(&s).unwrap();
        assert_eq!((h.base_offset, h.end_offset(), h.leader_epoch), (40, 42, 3));
        assert_eq!((h.first_timestamp_ns, h.max_timestamp_ns), (5, 9));
        let r = records(&s).unwrap();
        assert_eq!(r[1].offset, 41);
        assert_eq!(&r[1].key[..], b"p0-2");
        assert_eq!(r[0].value.len(), 10);
    }

    /// Offsets from the wire or the disk are checked: a batch whose records would run past
    /// `u64::MAX` is a decode error with a valid checksum, not a wrapped or panicking end, and
    /// the last offset that fits is still accepted.
    #[test]
    fn a_batch_whose_offsets_overflow_is_a_decode_error() {
        let three = build(&[rec("a", 1, 1), rec("b", 1, 2), rec("c", 1, 3)]);
        let overflowing = stamp(&three, u64::MAX - 2, 1);
        let error = BatchError::OffsetOverflow {
            base_offset: u64::MAX - 2,
            record_count: 3,
        };
        assert_eq!(parse(&overflowing), Err(error.clone()));
        assert_eq!(validate(&overflowing), Err(error.clone()));
        assert_eq!(records(&overflowing), Err(error));

        let fits = stamp(&three, u64::MAX - 3, 1);
        assert_eq!(validate(&fits).unwrap().end_offset(), u64::MAX);
        let offsets: Vec<u64> = records(&fits).unwrap().iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [u64::MAX - 3, u64::MAX - 2, u64::MAX - 1]);
    }

    #[test]
    fn producer_fields_survive_stamping() {
        let b = set_producer(&build(&[rec("a", 1, 1), rec("b", 1, 2)]), 77, 3, u32::MAX);
        let s = stamp(&b, 10, 4);
        let h = validate(&s).unwrap();
        assert_eq!((h.producer_id, h.producer_epoch), (77, 3));
        assert_eq!((h.base_sequence, h.last_sequence()), (u32::MAX, 0));
        assert!(h.has_producer());
        assert_eq!(peek_header(&s).unwrap(), h);
        assert!(!validate(&build(&[rec("a", 1, 1)])).unwrap().has_producer());
    }

    #[test]
    fn control_batch_is_marked() {
        let h = validate(&build_control(1)).unwrap();
        assert!(h.is_control());
        assert_eq!(h.record_count, 1);
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let b = stamp(&build(&[rec("a", 30, 1)]), 0, 1);
        for cut in 0..b.len() {
            assert!(
                matches!(parse(&b[..cut]), Err(BatchError::Incomplete { .. })),
                "cut at {cut}"
            );
        }
    }

    fn repetitive(n: usize) -> Vec<NewRecord> {
        (0..n)
            .map(|i| NewRecord {
                timestamp_ns: i as u64,
                key: Bytes::from(format!("producer-0-{i}")),
                value: Bytes::from(vec![b'x'; 100]),
            })
            .collect()
    }

    #[test]
    fn compressed_batch_reads_back_and_is_smaller() {
        let recs = repetitive(50);
        let plain = build(&recs);
        let lz4 = build_with(&recs, Compression::Lz4);
        assert!(
            lz4.len() * 4 < plain.len(),
            "{} vs {} bytes",
            lz4.len(),
            plain.len()
        );
        let s = stamp(&set_producer(&lz4, 5, 0, 0), 7, 2);
        let h = validate(&s).unwrap();
        assert!(h.is_compressed());
        assert_eq!(h.record_count, 50);
        let out = records(&s).unwrap();
        let plain_out = records(&stamp(&plain, 7, 2)).unwrap();
        assert_eq!(out, plain_out);
        assert_eq!(out[49].offset, 56);
    }

    #[test]
    fn incompressible_batch_is_stored_plain() {
        let mut rng = crate::rng::Rng::new(3);
        let noise: Vec<u8> = (0..64).map(|_| rng.next_u64() as u8).collect();
        let recs = vec![NewRecord {
            timestamp_ns: u64::MAX / 3,
            key: Bytes::from_static(b"k"),
            value: Bytes::from(noise),
        }];
        let b = build_with(&recs, Compression::Lz4);
        assert!(!validate(&b).unwrap().is_compressed());
        assert_eq!(b, build(&recs));
    }

    /// A compressed batch whose block is damaged but whose checksum was recomputed (as a buggy
    /// or hostile producer could send) is an error from `validate`, never a panic.
    #[test]
    fn corrupt_compressed_records_are_an_error() {
        let b = build_with(&repetitive(20), Compression::Lz4);
        let mut rng = crate::rng::Rng::new(9);
        for _ in 0..2_000 {
            let mut bad = b.to_vec();
            let at = rng.range_u64(HEADER_BYTES as u64, bad.len() as u64 - 1) as usize;
            bad[at] ^= 1 << rng.range_u64(0, 7);
            let resealed = stamp(&bad, 0, 0);
            let _ = validate(&resealed);
            assert!(validate(&bad).is_err(), "checksum catches it");
        }
        let mut huge = b.to_vec();
        huge[HEADER_BYTES..HEADER_BYTES + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            validate(&stamp(&huge, 0, 0)),
            Err(BatchError::Malformed(_))
        ));
        let mut short = b.to_vec();
        let len = u32::from_be_bytes(short[HEADER_BYTES..HEADER_BYTES + 4].try_into().unwrap());
        short[HEADER_BYTES..HEADER_BYTES + 4].copy_from_slice(&(len + 10).to_be_bytes());
        assert!(validate(&stamp(&short, 0, 0)).is_err());
    }

    proptest! {
        #[test]
        fn any_flipped_bit_is_caught(
            n in 1usize..5, value_len in 0usize..40, byte in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let recs: Vec<NewRecord> = (0..n).map(|i| rec(&format!("k{i}"), value_len, i as u64)).collect();
            let b = stamp(&build(&recs), 100, 2);
            let mut bad = b.to_vec();
            let i = byte.index(bad.len());
            bad[i] ^= 1 << bit;
            prop_assert!(validate(&bad).is_err(), "flip at byte {} went unnoticed", i);
        }

        #[test]
        fn round_trip(keys in proptest::collection::vec("[a-z0-9-]{0,12}", 1..8), base in 0u64..1<<40, epoch in 0u64..1000) {
            let recs: Vec<NewRecord> = keys.iter().enumerate().map(|(i, k)| rec(k, i, i as u64)).collect();
            let s = stamp(&build(&recs), base, epoch);
            let out = records(&s).unwrap();
            prop_assert_eq!(out.len(), recs.len());
            for (i, (o, r)) in out.iter().zip(&recs).enumerate() {
                prop_assert_eq!(o.offset, base + i as u64);
                prop_assert_eq!(&o.key, &r.key);
                prop_assert_eq!(&o.value, &r.value);
            }
        }
    }
}
