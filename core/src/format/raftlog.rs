//! Raft log files: segment headers and entry records, the hard state file, the
//! acknowledgement mark (`acked`) and the snapshot file. Layout in docs/formats.md ("Raft log"); the storage that uses them is
//! `raft::storage`.
//!
//! Invariants a decoded value satisfies (checked here, so the storage can rely on them):
//! every length is within its hard bound and equals the sum of its parts; indexes are in
//! `1..=INDEX_MAX` (a snapshot's may be 0), so `index + 1` never overflows; the entry kind is
//! known; snapshot voters are non-zero, strictly ascending and at most `PEERS_MAX`; the
//! CRC-32C over every other byte matches.

use super::le::{u16_at, u32_at, u64_at};
use super::{checksum, FormatError};
use crate::raft::types::{
    Entry, EntryKind, HardState, Index, Membership, Snapshot, SnapshotMeta, ENTRY_DATA_BYTES_MAX, PEERS_MAX,
};
use bytes::Bytes;

/// Largest index any record, segment header or snapshot may carry (`i64::MAX`, like store
/// sequences). Decoders refuse larger ones, so `index + 1` never overflows.
pub const INDEX_MAX: Index = i64::MAX as u64;

pub const SEGMENT_MAGIC: [u8; 8] = *b"SLUICERL";
pub const SEGMENT_VERSION: u16 = 1;
pub const SEGMENT_HEADER_BYTES: usize = 24;

/// Length, checksum, index, term, commit claim, kind: the fixed part of every record.
pub const RECORD_HEADER_BYTES: usize = 33;
/// Hard bound on one record, checked before any buffer is allocated for it.
pub const RECORD_BYTES_MAX: usize = RECORD_HEADER_BYTES + ENTRY_DATA_BYTES_MAX;

pub const HARD_STATE_MAGIC: [u8; 8] = *b"SLUICEHS";
pub const HARD_STATE_VERSION: u16 = 1;
pub const HARD_STATE_BYTES: usize = 40;

pub const ACK_MARK_MAGIC: [u8; 8] = *b"SLUICEAK";
pub const ACK_MARK_VERSION: u16 = 1;
/// One slot of the `acked` file; the file holds two, written in turn.
pub const ACK_MARK_SLOT_BYTES: usize = 32;

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SLUICESN";
pub const SNAPSHOT_VERSION: u16 = 1;
/// Largest snapshot payload (the application's state, opaque to Raft).
pub const SNAPSHOT_DATA_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Bytes of a snapshot file apart from its voter ids and data: 40 fixed, 4 checksum.
pub const SNAPSHOT_FIXED_BYTES: usize = 44;
/// Hard bound on a snapshot file, checked before the file is read into memory.
pub const SNAPSHOT_FILE_BYTES_MAX: usize = SNAPSHOT_FIXED_BYTES + 8 * PEERS_MAX + SNAPSHOT_DATA_BYTES_MAX;

fn truncated(needed: usize, available: usize) -> FormatError {
    FormatError::Truncated { needed_bytes: needed as u64, available_bytes: available as u64 }
}

fn check_crc(stored: u32, computed: u32) -> Result<(), FormatError> {
    if stored == computed {
        Ok(())
    } else {
        Err(FormatError::BadChecksum { stored, computed })
    }
}

fn check_index(field: &'static str, index: Index) -> Result<(), FormatError> {
    if index == 0 || index > INDEX_MAX {
        return Err(FormatError::BadField { field, value: index });
    }
    Ok(())
}

/// The header at offset 0 of every segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The index of the segment's first record, also the number in the file name
    /// (`00000000000000000042.seg` starts at 42); a mismatch means a renamed file.
    pub first_index: Index,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        assert!(self.first_index >= 1 && self.first_index <= INDEX_MAX, "segment first index {}", self.first_index);
        let mut out = [0u8; SEGMENT_HEADER_BYTES];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        out[12..20].copy_from_slice(&self.first_index.to_le_bytes());
        let crc = checksum(&out[..20]);
        out[20..24].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes the header from the first 24 bytes of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, FormatError> {
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Err(truncated(SEGMENT_HEADER_BYTES, bytes.len()));
        }
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic);
        }
        check_crc(u32_at(bytes, 20), checksum(&bytes[..20]))?;
        let version = u16_at(bytes, 8);
        if version != SEGMENT_VERSION {
            return Err(FormatError::UnsupportedVersion { version });
        }
        if bytes[10..12] != [0, 0] {
            return Err(FormatError::BadField { field: "segment reserved", value: u64::from(u16_at(bytes, 10)) });
        }
        let first_index = u64_at(bytes, 12);
        check_index("segment first_index", first_index)?;
        Ok(SegmentHeader { first_index })
    }
}

/// The fixed part of a record, before its checksum is verified: only for bounding the read
/// of the rest. Nothing in it may be trusted until [`decode_record`] succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHead {
    pub len_bytes: u32,
    pub index: Index,
}

/// A decoded, checksum-verified record borrowing its data from the buffer it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Bytes the record occupies, header included.
    pub len_bytes: u32,
    pub index: Index,
    pub term: u64,
    /// A commit index the writer knew when it wrote the record (see `raft::storage`).
    pub commit_claim: Index,
    pub kind: EntryKind,
    pub data: &'a [u8],
}

impl Record<'_> {
    pub fn to_entry(&self) -> Entry {
        Entry { index: self.index, term: self.term, kind: self.kind, data: Bytes::copy_from_slice(self.data) }
    }
}

/// Total encoded size of a record carrying `data_len` bytes of entry data.
pub fn record_len(data_len: usize) -> usize {
    RECORD_HEADER_BYTES + data_len
}

/// CRC-32C of the length field followed by everything after the checksum field: every byte
/// of the record except the checksum itself.
fn record_checksum(record: &[u8]) -> u32 {
    crc32c::crc32c_append(checksum(&record[0..4]), &record[8..])
}

/// Appends the encoding of `entry` to `out`. Panics if the entry breaks the format's bounds:
/// callers validate entries first, so a violation is a bug.
pub fn encode_record(out: &mut Vec<u8>, entry: &Entry, commit_claim: Index) {
    assert!(entry.data.len() <= ENTRY_DATA_BYTES_MAX, "entry data of {} bytes exceeds the bound", entry.data.len());
    assert!(entry.index >= 1 && entry.index <= INDEX_MAX, "entry index {} outside 1..=INDEX_MAX", entry.index);
    let len = record_len(entry.data.len());
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&entry.index.to_le_bytes());
    out.extend_from_slice(&entry.term.to_le_bytes());
    out.extend_from_slice(&commit_claim.to_le_bytes());
    out.push(entry.kind as u8);
    out.extend_from_slice(&entry.data);
    let crc = record_checksum(&out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(out.len() - start, len);
}

/// Decodes and bounds the length of the record starting at `bytes` (at least
/// [`RECORD_HEADER_BYTES`] of it), so the caller knows how much to read before it allocates.
pub fn decode_record_head(bytes: &[u8]) -> Result<RecordHead, FormatError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(truncated(RECORD_HEADER_BYTES, bytes.len()));
    }
    let len_bytes = u32_at(bytes, 0);
    if (len_bytes as usize) < RECORD_HEADER_BYTES {
        return Err(FormatError::LengthTooSmall {
            declared_bytes: u64::from(len_bytes),
            min_bytes: RECORD_HEADER_BYTES as u64,
        });
    }
    if len_bytes as usize > RECORD_BYTES_MAX {
        return Err(FormatError::LengthTooLarge {
            declared_bytes: u64::from(len_bytes),
            max_bytes: RECORD_BYTES_MAX as u64,
        });
    }
    Ok(RecordHead { len_bytes, index: u64_at(bytes, 8) })
}

/// Decodes the record at the start of `bytes` and verifies its checksum. `bytes` may extend
/// past the record; the record's own length says where it ends.
pub fn decode_record(bytes: &[u8]) -> Result<Record<'_>, FormatError> {
    let head = decode_record_head(bytes)?;
    let len = head.len_bytes as usize;
    if bytes.len() < len {
        return Err(truncated(len, bytes.len()));
    }
    let record = &bytes[..len];
    check_crc(u32_at(record, 4), record_checksum(record))?;
    check_index("record index", head.index)?;
    let Some(kind) = EntryKind::from_u8(record[32]) else {
        return Err(FormatError::BadField { field: "record kind", value: u64::from(record[32]) });
    };
    Ok(Record {
        len_bytes: head.len_bytes,
        index: head.index,
        term: u64_at(record, 16),
        commit_claim: u64_at(record, 24),
        kind,
        data: &record[RECORD_HEADER_BYTES..],
    })
}

/// Encodes the hard state file (`hard.0`, `hard.1`).
pub fn encode_hard_state(hs: &HardState) -> [u8; HARD_STATE_BYTES] {
    let mut out = [0u8; HARD_STATE_BYTES];
    out[0..8].copy_from_slice(&HARD_STATE_MAGIC);
    out[8..10].copy_from_slice(&HARD_STATE_VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&hs.term.to_le_bytes());
    out[20..28].copy_from_slice(&hs.vote.to_le_bytes());
    out[28..36].copy_from_slice(&hs.commit.to_le_bytes());
    let crc = checksum(&out[..36]);
    out[36..40].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a hard state file. `bytes` must be exactly the file's contents.
pub fn decode_hard_state(bytes: &[u8]) -> Result<HardState, FormatError> {
    if bytes.len() < HARD_STATE_BYTES {
        return Err(truncated(HARD_STATE_BYTES, bytes.len()));
    }
    if bytes.len() > HARD_STATE_BYTES {
        return Err(FormatError::LengthMismatch {
            declared_bytes: HARD_STATE_BYTES as u64,
            parts_bytes: bytes.len() as u64,
        });
    }
    if bytes[0..8] != HARD_STATE_MAGIC {
        return Err(FormatError::BadMagic);
    }
    check_crc(u32_at(bytes, 36), checksum(&bytes[..36]))?;
    let version = u16_at(bytes, 8);
    if version != HARD_STATE_VERSION {
        return Err(FormatError::UnsupportedVersion { version });
    }
    if bytes[10..12] != [0, 0] {
        return Err(FormatError::BadField { field: "hard state reserved", value: u64::from(u16_at(bytes, 10)) });
    }
    Ok(HardState { term: u64_at(bytes, 12), vote: u64_at(bytes, 20), commit: u64_at(bytes, 28) })
}

/// One slot of the acknowledgement mark: every entry its node may have acknowledged has
/// an index at most `index`. Of the two slots, the valid one with the higher `generation`
/// is current.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckMark {
    pub generation: u64,
    pub index: Index,
}

pub fn encode_ack_mark(mark: &AckMark) -> [u8; ACK_MARK_SLOT_BYTES] {
    assert!(mark.index <= INDEX_MAX, "ack mark {} beyond INDEX_MAX", mark.index);
    assert!(mark.generation <= INDEX_MAX, "ack mark generation {} beyond INDEX_MAX", mark.generation);
    let mut out = [0u8; ACK_MARK_SLOT_BYTES];
    out[0..8].copy_from_slice(&ACK_MARK_MAGIC);
    out[8..10].copy_from_slice(&ACK_MARK_VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&mark.generation.to_le_bytes());
    out[20..28].copy_from_slice(&mark.index.to_le_bytes());
    let crc = checksum(&out[..28]);
    out[28..32].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes one slot of the `acked` file; `bytes` must be exactly the slot.
pub fn decode_ack_mark(bytes: &[u8]) -> Result<AckMark, FormatError> {
    if bytes.len() < ACK_MARK_SLOT_BYTES {
        return Err(truncated(ACK_MARK_SLOT_BYTES, bytes.len()));
    }
    if bytes.len() > ACK_MARK_SLOT_BYTES {
        return Err(FormatError::LengthMismatch {
            declared_bytes: ACK_MARK_SLOT_BYTES as u64,
            parts_bytes: bytes.len() as u64,
        });
    }
    if bytes[0..8] != ACK_MARK_MAGIC {
        return Err(FormatError::BadMagic);
    }
    check_crc(u32_at(bytes, 28), checksum(&bytes[..28]))?;
    let version = u16_at(bytes, 8);
    if version != ACK_MARK_VERSION {
        return Err(FormatError::UnsupportedVersion { version });
    }
    if bytes[10..12] != [0, 0] {
        return Err(FormatError::BadField { field: "ack mark reserved", value: u64::from(u16_at(bytes, 10)) });
    }
    let index = u64_at(bytes, 20);
    if index > INDEX_MAX {
        return Err(FormatError::BadField { field: "ack mark index", value: index });
    }
    // Bounded like indexes, so the next generation never overflows.
    let generation = u64_at(bytes, 12);
    if generation > INDEX_MAX {
        return Err(FormatError::BadField { field: "ack mark generation", value: generation });
    }
    Ok(AckMark { generation, index })
}

/// Size of the snapshot file for these part sizes.
pub fn snapshot_file_len(voters: usize, data_len: usize) -> usize {
    SNAPSHOT_FIXED_BYTES + 8 * voters + data_len
}

/// Encodes a snapshot file. Panics if the snapshot breaks the format's bounds (more than
/// `PEERS_MAX` voters, a voter id 0, data over `SNAPSHOT_DATA_BYTES_MAX`, an index over
/// `INDEX_MAX`): the storage checks the data size and returns an error first.
pub fn encode_snapshot(snap: &Snapshot) -> Vec<u8> {
    let voters = &snap.meta.membership.voters;
    assert!(voters.len() <= PEERS_MAX, "{} voters exceed PEERS_MAX", voters.len());
    assert!(!voters.contains(&0), "voter id 0");
    assert!(snap.data.len() <= SNAPSHOT_DATA_BYTES_MAX, "snapshot data of {} bytes", snap.data.len());
    assert!(snap.meta.last_index <= INDEX_MAX, "snapshot index {}", snap.meta.last_index);
    let mut out = Vec::with_capacity(snapshot_file_len(voters.len(), snap.data.len()));
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(voters.len() as u32).to_le_bytes());
    out.extend_from_slice(&snap.meta.last_index.to_le_bytes());
    out.extend_from_slice(&snap.meta.last_term.to_le_bytes());
    out.extend_from_slice(&(snap.data.len() as u64).to_le_bytes());
    for voter in voters {
        out.extend_from_slice(&voter.to_le_bytes());
    }
    out.extend_from_slice(&snap.data);
    let crc = checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(out.len(), snapshot_file_len(voters.len(), snap.data.len()));
    out
}

/// Decodes a snapshot file. `bytes` must be exactly the file's contents; the snapshot's data
/// is a slice of it (no copy).
pub fn decode_snapshot(bytes: &Bytes) -> Result<Snapshot, FormatError> {
    if bytes.len() < SNAPSHOT_FIXED_BYTES {
        return Err(truncated(SNAPSHOT_FIXED_BYTES, bytes.len()));
    }
    if bytes.len() > SNAPSHOT_FILE_BYTES_MAX {
        return Err(FormatError::LengthTooLarge {
            declared_bytes: bytes.len() as u64,
            max_bytes: SNAPSHOT_FILE_BYTES_MAX as u64,
        });
    }
    if bytes[0..8] != SNAPSHOT_MAGIC {
        return Err(FormatError::BadMagic);
    }
    let voter_count = u32_at(bytes, 12);
    if voter_count as usize > PEERS_MAX {
        return Err(FormatError::BadField { field: "snapshot voter count", value: u64::from(voter_count) });
    }
    let data_len = u64_at(bytes, 32);
    if data_len > SNAPSHOT_DATA_BYTES_MAX as u64 {
        return Err(FormatError::LengthTooLarge {
            declared_bytes: data_len,
            max_bytes: SNAPSHOT_DATA_BYTES_MAX as u64,
        });
    }
    // Both parts are bounded now, so this cannot overflow.
    let parts = snapshot_file_len(voter_count as usize, data_len as usize);
    if parts != bytes.len() {
        return Err(FormatError::LengthMismatch { declared_bytes: parts as u64, parts_bytes: bytes.len() as u64 });
    }
    let body_end = bytes.len() - 4;
    check_crc(u32_at(bytes, body_end), checksum(&bytes[..body_end]))?;
    let version = u16_at(bytes, 8);
    if version != SNAPSHOT_VERSION {
        return Err(FormatError::UnsupportedVersion { version });
    }
    if bytes[10..12] != [0, 0] {
        return Err(FormatError::BadField { field: "snapshot reserved", value: u64::from(u16_at(bytes, 10)) });
    }
    let last_index = u64_at(bytes, 16);
    if last_index > INDEX_MAX {
        return Err(FormatError::BadField { field: "snapshot last_index", value: last_index });
    }
    let mut voters = Vec::with_capacity(voter_count as usize);
    for i in 0..voter_count as usize {
        let id = u64_at(bytes, 40 + 8 * i);
        if id == 0 || voters.last().is_some_and(|&previous| id <= previous) {
            return Err(FormatError::BadField { field: "snapshot voter", value: id });
        }
        voters.push(id);
    }
    let data_start = 40 + 8 * voter_count as usize;
    Ok(Snapshot {
        meta: SnapshotMeta { last_index, last_term: u64_at(bytes, 24), membership: Membership::new(voters) },
        data: bytes.slice(data_start..body_end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::hex;
    use proptest::prelude::*;

    fn entry(index: Index, term: u64, kind: EntryKind, data: &[u8]) -> Entry {
        Entry { index, term, kind, data: Bytes::copy_from_slice(data) }
    }

    fn sample_snapshot() -> Snapshot {
        Snapshot {
            meta: SnapshotMeta { last_index: 100, last_term: 3, membership: Membership::new([1, 2, 3]) },
            data: Bytes::from_static(b"state"),
        }
    }

    /// Golden bytes, also shown in docs/formats.md. A change here is a format change: bump
    /// the version and keep a decoder for the old one.
    #[test]
    fn golden_segment_header() {
        let header = SegmentHeader { first_index: 42 };
        let bytes = header.encode();
        assert_eq!(hex(&bytes), GOLDEN_SEGMENT_HEADER);
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
    }

    const GOLDEN_SEGMENT_HEADER: &str = "534c55494345524c010000002a000000000000008e0696b4";

    #[test]
    fn golden_log_record() {
        let mut out = Vec::new();
        encode_record(&mut out, &entry(42, 7, EntryKind::Normal, b"hello"), 40);
        assert_eq!(hex(&out), GOLDEN_LOG_RECORD);
        let record = decode_record(&out).unwrap();
        assert_eq!(record.len_bytes as usize, out.len());
        assert_eq!(record.to_entry(), entry(42, 7, EntryKind::Normal, b"hello"));
        assert_eq!(record.commit_claim, 40);
    }

    const GOLDEN_LOG_RECORD: &str = "26000000a2d083a62a00000000000000070000000000000028000000000000000168656c6c6f";

    #[test]
    fn golden_hard_state() {
        let hs = HardState { term: 5, vote: 2, commit: 99 };
        let bytes = encode_hard_state(&hs);
        assert_eq!(hex(&bytes), GOLDEN_HARD_STATE);
        assert_eq!(decode_hard_state(&bytes), Ok(hs));
    }

    const GOLDEN_HARD_STATE: &str = "534c55494345485301000000050000000000000002000000000000006300000000000000f14bc3d0";

    #[test]
    fn golden_ack_mark() {
        let mark = AckMark { generation: 3, index: 431 };
        let bytes = encode_ack_mark(&mark);
        assert_eq!(hex(&bytes), GOLDEN_ACK_MARK);
        assert_eq!(decode_ack_mark(&bytes), Ok(mark));
        for k in 0..ACK_MARK_SLOT_BYTES {
            let mut flipped = bytes;
            flipped[k] ^= 0x10;
            assert!(decode_ack_mark(&flipped).is_err(), "a flip at byte {k} went unseen");
        }
        assert!(matches!(decode_ack_mark(&bytes[..31]), Err(FormatError::Truncated { .. })));
        assert!(decode_ack_mark(&[0u8; ACK_MARK_SLOT_BYTES]).is_err(), "a slot never written is not a mark");
        // A checksummed slot with a generation past INDEX_MAX is refused (its successor would
        // overflow).
        let mut huge = bytes;
        huge[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = checksum(&huge[..28]);
        huge[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode_ack_mark(&huge), Err(FormatError::BadField { field: "ack mark generation", .. })));
    }

    const GOLDEN_ACK_MARK: &str = "534c55494345414b010000000300000000000000af0100000000000004c24e39";

    #[test]
    fn golden_snapshot_file() {
        let bytes = encode_snapshot(&sample_snapshot());
        assert_eq!(hex(&bytes), GOLDEN_SNAPSHOT_FILE);
        assert_eq!(decode_snapshot(&Bytes::from(bytes)), Ok(sample_snapshot()));
    }

    const GOLDEN_SNAPSHOT_FILE: &str = concat!(
        "534c55494345534e0100000003000000640000000000000003000000000000000500000000000000",
        "010000000000000002000000000000000300000000000000",
        "7374617465",
        "89a2484b"
    );

    #[test]
    fn zeros_are_rejected_by_length() {
        assert_eq!(
            decode_record(&[0u8; 64]),
            Err(FormatError::LengthTooSmall { declared_bytes: 0, min_bytes: RECORD_HEADER_BYTES as u64 })
        );
        assert_eq!(SegmentHeader::decode(&[0u8; 24]), Err(FormatError::BadMagic));
    }

    #[test]
    fn hostile_lengths_are_rejected_before_allocation() {
        let mut out = Vec::new();
        encode_record(&mut out, &entry(1, 1, EntryKind::Normal, b"x"), 0);
        out[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_record_head(&out), Err(FormatError::LengthTooLarge { .. })));

        let mut snap = encode_snapshot(&sample_snapshot());
        snap[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode_snapshot(&Bytes::from(snap)), Err(FormatError::LengthTooLarge { .. })));
        let mut snap = encode_snapshot(&sample_snapshot());
        snap[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_snapshot(&Bytes::from(snap)), Err(FormatError::BadField { .. })));
    }

    /// Valid checksums over invalid fields: only the field checks can catch these.
    #[test]
    fn checksummed_nonsense_is_refused() {
        let mut out = Vec::new();
        encode_record(&mut out, &entry(1, 1, EntryKind::Normal, b""), 0);
        out[32] = 9;
        let crc = record_checksum(&out);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_record(&out), Err(FormatError::BadField { field: "record kind", value: 9 }));

        out[32] = 1;
        out[8..16].copy_from_slice(&(INDEX_MAX + 1).to_le_bytes());
        let crc = record_checksum(&out);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_record(&out), Err(FormatError::BadField { field: "record index", value: INDEX_MAX + 1 }));

        let mut snap = encode_snapshot(&sample_snapshot());
        // Voters 1, 2, 3 -> 1, 3, 3: not strictly ascending.
        snap[48..56].copy_from_slice(&3u64.to_le_bytes());
        let end = snap.len() - 4;
        let crc = checksum(&snap[..end]);
        snap[end..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_snapshot(&Bytes::from(snap)),
            Err(FormatError::BadField { field: "snapshot voter", value: 3 })
        );
    }

    #[test]
    fn snapshot_at_index_zero_with_no_voters_round_trips() {
        let snap = Snapshot { meta: SnapshotMeta::default(), data: Bytes::new() };
        assert_eq!(decode_snapshot(&Bytes::from(encode_snapshot(&snap))), Ok(snap));
    }

    fn arb_entry() -> impl Strategy<Value = (Entry, u64)> {
        (1u64..=INDEX_MAX, any::<u64>(), 1u8..=5, proptest::collection::vec(any::<u8>(), 0..200), any::<u64>())
            .prop_map(|(index, term, kind, data, claim)| {
                (entry(index, term, EntryKind::from_u8(kind).expect("1..=5"), &data), claim)
            })
    }

    fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
        (
            0u64..=INDEX_MAX,
            any::<u64>(),
            proptest::collection::btree_set(1u64..u64::MAX, 0..=PEERS_MAX),
            proptest::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(last_index, last_term, voters, data)| Snapshot {
                meta: SnapshotMeta { last_index, last_term, membership: Membership { voters } },
                data: Bytes::from(data),
            })
    }

    fn flip(bytes: &mut [u8], bit: usize) {
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn records_round_trip((entry, claim) in arb_entry()) {
            let mut out = Vec::new();
            encode_record(&mut out, &entry, claim);
            out.extend_from_slice(b"trailing bytes of the next record");
            let record = decode_record(&out).unwrap();
            prop_assert_eq!(record.len_bytes as usize, record_len(entry.data.len()));
            prop_assert_eq!(record.commit_claim, claim);
            prop_assert_eq!(record.to_entry(), entry);
        }

        #[test]
        fn snapshots_and_hard_states_round_trip(snap in arb_snapshot(), term: u64, vote: u64, commit: u64) {
            prop_assert_eq!(decode_snapshot(&Bytes::from(encode_snapshot(&snap))), Ok(snap));
            let hs = HardState { term, vote, commit };
            prop_assert_eq!(decode_hard_state(&encode_hard_state(&hs)), Ok(hs));
        }

        /// Every single-bit flip anywhere in a record, header or file is detected.
        #[test]
        fn every_bit_flip_is_detected((entry, claim) in arb_entry(), snap in arb_snapshot(),
                                      index in 1u64..=INDEX_MAX, bit in any::<usize>()) {
            let mut record = Vec::new();
            encode_record(&mut record, &entry, claim);
            flip(&mut record, bit);
            prop_assert!(decode_record(&record).is_err());

            let mut header = SegmentHeader { first_index: index }.encode();
            flip(&mut header, bit);
            prop_assert!(SegmentHeader::decode(&header).is_err());

            let mut hard = encode_hard_state(&HardState { term: claim, vote: index, commit: entry.term });
            flip(&mut hard, bit);
            prop_assert!(decode_hard_state(&hard).is_err());

            let mut file = encode_snapshot(&snap);
            flip(&mut file, bit);
            prop_assert!(decode_snapshot(&Bytes::from(file)).is_err());
        }

        /// Arbitrary bytes never panic the decoders.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_record_head(&bytes);
            let _ = decode_record(&bytes);
            let _ = SegmentHeader::decode(&bytes);
            let _ = decode_hard_state(&bytes);
            let _ = decode_snapshot(&Bytes::from(bytes));
        }

        /// Plausible-looking garbage: a valid prefix with random bytes after it.
        #[test]
        fn mangled_valid_files_never_panic(snap in arb_snapshot(), cut in any::<usize>(),
                                           junk in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut file = encode_snapshot(&snap);
            let cut = cut % (file.len() + 1);
            file.truncate(cut);
            file.extend_from_slice(&junk);
            let _ = decode_snapshot(&Bytes::from(file.clone()));
            let _ = decode_record(&file);
        }
    }
}
