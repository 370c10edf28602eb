//! Block files: a 32-byte header, then records back to back. Layout in docs/formats.md.
//!
//! Invariants a decoded record satisfies (checked here, so the store can rely on them):
//! the declared length is within `[RECORD_OVERHEAD_BYTES, RECORD_BYTES_MAX]` and equals the
//! sum of its parts; kind and flags are known; kind-specific fields are well formed; the
//! CRC-32C over everything before the trailer matches.

use super::le::{u16_at, u32_at, u64_at};
use super::{checksum, FormatError};

pub const BLOCK_MAGIC: [u8; 8] = *b"SLUICEBK";
pub const BLOCK_VERSION: u16 = 1;
pub const BLOCK_HEADER_BYTES: usize = 32;

pub const RECORD_HEADER_BYTES: usize = 32;
pub const RECORD_TRAILER_BYTES: usize = 4;
pub const RECORD_OVERHEAD_BYTES: usize = RECORD_HEADER_BYTES + RECORD_TRAILER_BYTES;
/// Hard bound on one record, checked before any buffer is allocated for it.
pub const RECORD_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Largest sequence any record or header may carry (`i64::MAX`, as NATS sequences are).
/// Decoders refuse larger ones, so `seq + 1` never overflows anywhere in the store.
pub const SEQ_MAX: u64 = i64::MAX as u64;

/// The header at offset 0 of every block file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// The number in the file name (`0000000007.blk` has index 7); a mismatch means the
    /// file was renamed or misdirected.
    pub index: u32,
    /// The stream's next sequence when the block was created: every message or skip record
    /// in this block has a sequence at or above it.
    pub first_seq: u64,
    /// Where the previous block's records ended when this block was created (0 for none).
    /// Recovery checks it, so a lost tail of the previous block is found even when it held
    /// only tombstones or compact records, which carry no sequence of their own.
    pub prev_end_bytes: u32,
}

impl BlockHeader {
    pub fn encode(&self) -> [u8; BLOCK_HEADER_BYTES] {
        let mut out = [0u8; BLOCK_HEADER_BYTES];
        out[0..8].copy_from_slice(&BLOCK_MAGIC);
        out[8..10].copy_from_slice(&BLOCK_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.index.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        out[24..28].copy_from_slice(&self.prev_end_bytes.to_le_bytes());
        let crc = checksum(&out[..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<BlockHeader, FormatError> {
        if bytes.len() < BLOCK_HEADER_BYTES {
            return Err(FormatError::Truncated {
                needed_bytes: BLOCK_HEADER_BYTES as u64,
                available_bytes: bytes.len() as u64,
            });
        }
        if bytes[0..8] != BLOCK_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let stored = u32_at(bytes, 28);
        let computed = checksum(&bytes[..28]);
        if stored != computed {
            return Err(FormatError::BadChecksum { stored, computed });
        }
        let version = u16_at(bytes, 8);
        if version != BLOCK_VERSION {
            return Err(FormatError::UnsupportedVersion { version });
        }
        if bytes[10..12] != [0, 0] {
            return Err(FormatError::BadField { field: "header reserved", value: u64::from(u16_at(bytes, 10)) });
        }
        let first_seq = u64_at(bytes, 16);
        if first_seq == 0 || first_seq > SEQ_MAX {
            return Err(FormatError::BadField { field: "block first_seq", value: first_seq });
        }
        Ok(BlockHeader { index: u32_at(bytes, 12), first_seq, prev_end_bytes: u32_at(bytes, 24) })
    }
}

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// A stored message with sequence `seq`.
    Message = 1,
    /// Message `seq` (earlier in the stream) was deleted.
    Tombstone = 2,
    /// Sequences `seq..=last` hold no message (a gap kept as a gap); payload is `last`.
    Skip = 3,
    /// Every sequence below `seq` is deleted (purge from the front).
    Compact = 4,
}

impl RecordKind {
    fn from_u8(value: u8) -> Option<RecordKind> {
        match value {
            1 => Some(RecordKind::Message),
            2 => Some(RecordKind::Tombstone),
            3 => Some(RecordKind::Skip),
            4 => Some(RecordKind::Compact),
            _ => None,
        }
    }
}

/// The fixed 32-byte head of a record, validated, before the body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHead {
    pub len_bytes: u32,
    pub kind: RecordKind,
    pub seq: u64,
    pub timestamp_ns: i64,
    pub subject_len: u16,
    pub headers_len: u32,
    pub payload_len: u32,
}

/// A decoded, checksum-verified record borrowing from the buffer it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: RecordKind,
    pub seq: u64,
    pub timestamp_ns: i64,
    pub subject: &'a [u8],
    pub headers: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Record<'a> {
    pub fn message(seq: u64, timestamp_ns: i64, subject: &'a [u8], headers: &'a [u8], payload: &'a [u8]) -> Self {
        Record { kind: RecordKind::Message, seq, timestamp_ns, subject, headers, payload }
    }

    pub fn marker(kind: RecordKind, seq: u64, timestamp_ns: i64) -> Self {
        assert!(matches!(kind, RecordKind::Tombstone | RecordKind::Compact));
        Record { kind, seq, timestamp_ns, subject: &[], headers: &[], payload: &[] }
    }

    /// The last sequence a record covers: `seq` for messages, the range end for skips.
    pub fn last_seq(&self) -> u64 {
        match self.kind {
            RecordKind::Skip => u64_at(self.payload, 0),
            _ => self.seq,
        }
    }
}

/// Total encoded size of a record with these part lengths.
pub fn record_len(subject_len: usize, headers_len: usize, payload_len: usize) -> u64 {
    RECORD_OVERHEAD_BYTES as u64 + subject_len as u64 + headers_len as u64 + payload_len as u64
}

/// Appends the encoding of `record` to `out`. Panics if the record breaks the format's
/// bounds: callers (the store) validate sizes against limits first, so a violation is a bug.
pub fn encode_record(out: &mut Vec<u8>, record: &Record<'_>) {
    let len = record_len(record.subject.len(), record.headers.len(), record.payload.len());
    assert!(len <= RECORD_BYTES_MAX as u64, "record of {len} bytes exceeds RECORD_BYTES_MAX");
    assert!(record.subject.len() <= u16::MAX as usize);
    assert!(record.seq >= 1 && record.seq <= SEQ_MAX, "sequence {} outside 1..=SEQ_MAX", record.seq);
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(record.kind as u8);
    out.push(0);
    out.extend_from_slice(&(record.subject.len() as u16).to_le_bytes());
    out.extend_from_slice(&record.seq.to_le_bytes());
    out.extend_from_slice(&record.timestamp_ns.to_le_bytes());
    out.extend_from_slice(&(record.headers.len() as u32).to_le_bytes());
    out.extend_from_slice(&(record.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(record.subject);
    out.extend_from_slice(record.headers);
    out.extend_from_slice(record.payload);
    let crc = checksum(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    assert_eq!((out.len() - start) as u64, len);
}

/// Encodes a skip record for sequences `first..=last`.
pub fn encode_skip(out: &mut Vec<u8>, first: u64, last: u64, timestamp_ns: i64) {
    assert!(first >= 1 && first <= last && last <= SEQ_MAX, "skip range {first}..={last}");
    let payload = last.to_le_bytes();
    let record =
        Record { kind: RecordKind::Skip, seq: first, timestamp_ns, subject: &[], headers: &[], payload: &payload };
    encode_record(out, &record);
}

/// Decodes and validates the fixed head of a record from the first 32 bytes of `bytes`.
/// Validates every length before the caller allocates a buffer for the body.
pub fn decode_record_head(bytes: &[u8]) -> Result<RecordHead, FormatError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(FormatError::Truncated {
            needed_bytes: RECORD_HEADER_BYTES as u64,
            available_bytes: bytes.len() as u64,
        });
    }
    let len_bytes = u32_at(bytes, 0);
    if (len_bytes as usize) < RECORD_OVERHEAD_BYTES {
        return Err(FormatError::LengthTooSmall {
            declared_bytes: u64::from(len_bytes),
            min_bytes: RECORD_OVERHEAD_BYTES as u64,
        });
    }
    if len_bytes as usize > RECORD_BYTES_MAX {
        return Err(FormatError::LengthTooLarge {
            declared_bytes: u64::from(len_bytes),
            max_bytes: RECORD_BYTES_MAX as u64,
        });
    }
    let Some(kind) = RecordKind::from_u8(bytes[4]) else {
        return Err(FormatError::BadField { field: "record kind", value: u64::from(bytes[4]) });
    };
    if bytes[5] != 0 {
        return Err(FormatError::BadField { field: "record flags", value: u64::from(bytes[5]) });
    }
    let head = RecordHead {
        len_bytes,
        kind,
        subject_len: u16_at(bytes, 6),
        seq: u64_at(bytes, 8),
        timestamp_ns: u64_at(bytes, 16) as i64,
        headers_len: u32_at(bytes, 24),
        payload_len: u32_at(bytes, 28),
    };
    let parts = record_len(head.subject_len as usize, head.headers_len as usize, head.payload_len as usize);
    if parts != u64::from(len_bytes) {
        return Err(FormatError::LengthMismatch { declared_bytes: u64::from(len_bytes), parts_bytes: parts });
    }
    if head.seq == 0 || head.seq > SEQ_MAX {
        return Err(FormatError::BadField { field: "record seq", value: head.seq });
    }
    let body_ok = match kind {
        RecordKind::Message => true,
        RecordKind::Tombstone | RecordKind::Compact => parts == RECORD_OVERHEAD_BYTES as u64,
        RecordKind::Skip => head.subject_len == 0 && head.headers_len == 0 && head.payload_len == 8,
    };
    if !body_ok {
        return Err(FormatError::BadField { field: "record body for its kind", value: parts });
    }
    Ok(head)
}

/// Decodes a whole record from the start of `bytes` and verifies its checksum. `bytes` may
/// extend past the record; the record's own length says where it ends.
pub fn decode_record(bytes: &[u8]) -> Result<(RecordHead, Record<'_>), FormatError> {
    let head = decode_record_head(bytes)?;
    let record = verify_record(bytes, head)?;
    Ok((head, record))
}

/// The rest of [`decode_record`] for a head already decoded from `bytes`: checks the length
/// available and the checksum, and splits the body.
pub fn verify_record(bytes: &[u8], head: RecordHead) -> Result<Record<'_>, FormatError> {
    let len = head.len_bytes as usize;
    if bytes.len() < len {
        return Err(FormatError::Truncated { needed_bytes: len as u64, available_bytes: bytes.len() as u64 });
    }
    let stored = u32_at(bytes, len - RECORD_TRAILER_BYTES);
    let computed = checksum(&bytes[..len - RECORD_TRAILER_BYTES]);
    if stored != computed {
        return Err(FormatError::BadChecksum { stored, computed });
    }
    let subject_end = RECORD_HEADER_BYTES + head.subject_len as usize;
    let headers_end = subject_end + head.headers_len as usize;
    let payload_end = headers_end + head.payload_len as usize;
    let record = Record {
        kind: head.kind,
        seq: head.seq,
        timestamp_ns: head.timestamp_ns,
        subject: &bytes[RECORD_HEADER_BYTES..subject_end],
        headers: &bytes[subject_end..headers_end],
        payload: &bytes[headers_end..payload_end],
    };
    if head.kind == RecordKind::Skip && (record.last_seq() < head.seq || record.last_seq() > SEQ_MAX) {
        return Err(FormatError::BadField { field: "skip range end", value: record.last_seq() });
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::hex;
    use proptest::prelude::*;

    /// Golden bytes, also shown in docs/formats.md. A change here is a format change:
    /// bump BLOCK_VERSION and keep a decoder for the old version.
    #[test]
    fn golden_block_header() {
        let header = BlockHeader { index: 7, first_seq: 1000, prev_end_bytes: 4096 };
        let bytes = header.encode();
        assert_eq!(hex(&bytes), GOLDEN_BLOCK_HEADER);
        assert_eq!(BlockHeader::decode(&bytes), Ok(header));
    }

    const GOLDEN_BLOCK_HEADER: &str = "534c55494345424b0100000007000000e803000000000000001000006357102f";

    #[test]
    fn golden_message_record() {
        let mut out = Vec::new();
        encode_record(&mut out, &Record::message(42, 1_700_000_000_000_000_000, b"orders.new", b"H", b"hello"));
        assert_eq!(hex(&out), GOLDEN_MESSAGE_RECORD);
        let (head, record) = decode_record(&out).unwrap();
        assert_eq!(head.len_bytes as usize, out.len());
        assert_eq!(record.subject, b"orders.new");
        assert_eq!(record.headers, b"H");
        assert_eq!(record.payload, b"hello");
    }

    const GOLDEN_MESSAGE_RECORD: &str =
        "3400000001000a002a0000000000000000002a36fe9c971701000000050000006f72646572732e6e65774868656c6c6fe6c82d68";

    fn arb_record() -> impl Strategy<Value = (u8, u64, i64, Vec<u8>, Vec<u8>, Vec<u8>)> {
        (
            1u8..=4,
            1u64..u64::MAX / 2,
            any::<i64>(),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..200),
        )
    }

    fn encode_kind(out: &mut Vec<u8>, kind: u8, seq: u64, ts: i64, s: &[u8], h: &[u8], p: &[u8]) {
        match kind {
            1 => encode_record(out, &Record::message(seq, ts, s, h, p)),
            2 => encode_record(out, &Record::marker(RecordKind::Tombstone, seq, ts)),
            3 => encode_skip(out, seq, seq + p.len() as u64, ts),
            _ => encode_record(out, &Record::marker(RecordKind::Compact, seq, ts)),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn records_round_trip((kind, seq, ts, s, h, p) in arb_record()) {
            let mut out = Vec::new();
            encode_kind(&mut out, kind, seq, ts, &s, &h, &p);
            let (head, record) = decode_record(&out).unwrap();
            prop_assert_eq!(head.len_bytes as usize, out.len());
            prop_assert_eq!(record.seq, seq);
            prop_assert_eq!(record.timestamp_ns, ts);
            if kind == 1 {
                prop_assert_eq!(record.subject, &s[..]);
                prop_assert_eq!(record.headers, &h[..]);
                prop_assert_eq!(record.payload, &p[..]);
            }
        }

        /// Every single-bit flip anywhere in a record is detected (CRC-32C guarantees it).
        #[test]
        fn every_bit_flip_is_detected((kind, seq, ts, s, h, p) in arb_record(), bit in any::<usize>()) {
            let mut out = Vec::new();
            encode_kind(&mut out, kind, seq, ts, &s, &h, &p);
            let bit = bit % (out.len() * 8);
            out[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_record(&out).is_err());
        }

        /// Arbitrary bytes never panic the decoders.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_record(&bytes);
            let _ = BlockHeader::decode(&bytes);
        }
    }

    #[test]
    fn zeros_are_rejected_by_length() {
        let zeros = [0u8; 64];
        assert_eq!(
            decode_record_head(&zeros),
            Err(FormatError::LengthTooSmall { declared_bytes: 0, min_bytes: RECORD_OVERHEAD_BYTES as u64 })
        );
    }

    #[test]
    fn hostile_lengths_are_rejected_before_allocation() {
        let mut out = Vec::new();
        encode_record(&mut out, &Record::message(1, 0, b"s", b"", b"p"));
        out[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_record_head(&out), Err(FormatError::LengthTooLarge { .. })));
        let mut out2 = Vec::new();
        encode_record(&mut out2, &Record::message(1, 0, b"s", b"", b"p"));
        out2[28..32].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(decode_record_head(&out2), Err(FormatError::LengthMismatch { .. })));
    }

    #[test]
    fn sequences_beyond_seq_max_are_refused() {
        let mut out = Vec::new();
        encode_record(&mut out, &Record::message(SEQ_MAX, 0, b"s", b"", b""));
        assert!(decode_record(&out).is_ok());
        out[8..16].copy_from_slice(&(SEQ_MAX + 1).to_le_bytes());
        assert_eq!(decode_record_head(&out), Err(FormatError::BadField { field: "record seq", value: SEQ_MAX + 1 }));
        let mut header = BlockHeader { index: 1, first_seq: SEQ_MAX, prev_end_bytes: 0 }.encode();
        assert!(BlockHeader::decode(&header).is_ok());
        header[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = checksum(&header[..28]).to_le_bytes();
        header[28..32].copy_from_slice(&crc);
        assert!(matches!(BlockHeader::decode(&header), Err(FormatError::BadField { .. })));
    }

    #[test]
    fn skip_range_must_not_run_backwards() {
        let payload = 3u64.to_le_bytes();
        let mut out = Vec::new();
        encode_record(
            &mut out,
            &Record { kind: RecordKind::Skip, seq: 5, timestamp_ns: 0, subject: &[], headers: &[], payload: &payload },
        );
        assert_eq!(decode_record(&out).unwrap_err(), FormatError::BadField { field: "skip range end", value: 3 });
    }
}
