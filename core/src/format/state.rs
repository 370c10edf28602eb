//! The stream state file (`state.db`): a checksummed summary of the store written atomically
//! (temp file, sync, rename, sync directory) at every store sync. Layout in docs/formats.md.
//!
//! Recovery never trusts it instead of the blocks (every record is still scanned and
//! verified); it is the durable memory of how far the stream had got, so a scan that comes up
//! short can say exactly which sequences were lost, and a cross-check of the deletes.

use super::le::{u16_at, u32_at, u64_at};
use super::{checksum, FormatError};

pub const STATE_MAGIC: [u8; 8] = *b"SLUICEST";
pub const STATE_VERSION: u16 = 1;
const PREFIX_BYTES: usize = 16;
const FIXED_BODY_BYTES: usize = 52;
const RANGE_BYTES: usize = 16;
/// Hard bound on a state file, checked before the body is read into memory.
pub const STATE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What the state file records. Sequences `first_seq..=last_seq` are the stream's range;
/// `deleted` lists interior deletions within it as sorted, disjoint, non-adjacent inclusive
/// ranges; `msgs` is the number of sequences in the range not deleted. An empty stream has
/// `first_seq == last_seq + 1`.
///
/// The durable mark says how far the blocks were durable when the file was written (it is
/// written only right after a successful flush): every block below `mark_block` whole, and
/// block `mark_block` up to `mark_end_bytes`. Recovery rewrites what lies past it, because
/// bytes past it may be in the page cache only (after a failed fsync) even though they read
/// back fine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateFile {
    pub first_seq: u64,
    pub last_seq: u64,
    pub msgs: u64,
    pub bytes: u64,
    pub mark_block: u32,
    pub mark_end_bytes: u64,
    pub deleted: Vec<(u64, u64)>,
}

impl StateFile {
    pub fn encode(&self) -> Vec<u8> {
        self.validate().expect("encoding an inconsistent state is a bug");
        let body_len = FIXED_BODY_BYTES + RANGE_BYTES * self.deleted.len();
        let mut out = Vec::with_capacity(PREFIX_BYTES + body_len + 4);
        out.extend_from_slice(&STATE_MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        for v in [self.first_seq, self.last_seq, self.msgs, self.bytes] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.mark_block.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&self.mark_end_bytes.to_le_bytes());
        out.extend_from_slice(&(self.deleted.len() as u32).to_le_bytes());
        for &(first, last) in &self.deleted {
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&last.to_le_bytes());
        }
        let crc = checksum(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        assert!(out.len() <= STATE_BYTES_MAX, "state file of {} bytes exceeds the bound", out.len());
        out
    }

    /// Decodes a whole state file. `bytes` must be exactly the file's contents.
    pub fn decode(bytes: &[u8]) -> Result<StateFile, FormatError> {
        let min = PREFIX_BYTES + FIXED_BODY_BYTES + 4;
        if bytes.len() < min {
            return Err(FormatError::Truncated { needed_bytes: min as u64, available_bytes: bytes.len() as u64 });
        }
        if bytes.len() > STATE_BYTES_MAX {
            return Err(FormatError::LengthTooLarge {
                declared_bytes: bytes.len() as u64,
                max_bytes: STATE_BYTES_MAX as u64,
            });
        }
        if bytes[0..8] != STATE_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let body_len = u32_at(bytes, 12) as usize;
        let expected_total = PREFIX_BYTES as u64 + body_len as u64 + 4;
        if expected_total != bytes.len() as u64 {
            return Err(FormatError::LengthMismatch {
                declared_bytes: expected_total,
                parts_bytes: bytes.len() as u64,
            });
        }
        let stored = u32_at(bytes, PREFIX_BYTES + body_len);
        let computed = checksum(&bytes[..PREFIX_BYTES + body_len]);
        if stored != computed {
            return Err(FormatError::BadChecksum { stored, computed });
        }
        let version = u16_at(bytes, 8);
        if version != STATE_VERSION {
            return Err(FormatError::UnsupportedVersion { version });
        }
        let body = &bytes[PREFIX_BYTES..PREFIX_BYTES + body_len];
        let ranges = u32_at(body, 48) as usize;
        // Bounded by the file size already checked: ranges * 16 <= body_len <= STATE_BYTES_MAX.
        let parts = FIXED_BODY_BYTES as u64 + RANGE_BYTES as u64 * ranges as u64;
        if parts != body_len as u64 {
            return Err(FormatError::LengthMismatch { declared_bytes: body_len as u64, parts_bytes: parts });
        }
        let mut deleted = Vec::with_capacity(ranges);
        for i in 0..ranges {
            let at = FIXED_BODY_BYTES + RANGE_BYTES * i;
            deleted.push((u64_at(body, at), u64_at(body, at + 8)));
        }
        if u32_at(body, 36) != 0 {
            return Err(FormatError::BadField { field: "state reserved", value: u64::from(u32_at(body, 36)) });
        }
        let state = StateFile {
            first_seq: u64_at(body, 0),
            last_seq: u64_at(body, 8),
            msgs: u64_at(body, 16),
            bytes: u64_at(body, 24),
            mark_block: u32_at(body, 32),
            mark_end_bytes: u64_at(body, 40),
            deleted,
        };
        state.validate()?;
        Ok(state)
    }

    /// Checks the invariants in the type's docs.
    pub fn validate(&self) -> Result<(), FormatError> {
        let bad = |field: &'static str, value: u64| Err(FormatError::BadField { field, value });
        if self.first_seq == 0 || self.first_seq > super::block::SEQ_MAX {
            return bad("state first_seq", self.first_seq);
        }
        if self.last_seq >= super::block::SEQ_MAX {
            return bad("state last_seq", self.last_seq);
        }
        if self.last_seq.checked_add(1).is_none_or(|next| next < self.first_seq) {
            return bad("state last_seq", self.last_seq);
        }
        let mut deleted_total = 0u64;
        let mut previous_last: Option<u64> = None;
        for &(first, last) in &self.deleted {
            if first > last || first < self.first_seq || last > self.last_seq {
                return bad("state deleted range", first);
            }
            if previous_last.is_some_and(|p| first <= p.saturating_add(1)) {
                return bad("state deleted ranges order", first);
            }
            previous_last = Some(last);
            deleted_total += last - first + 1;
        }
        let span = (self.last_seq + 1) - self.first_seq;
        if span.checked_sub(deleted_total) != Some(self.msgs) {
            return bad("state msgs", self.msgs);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::hex;
    use proptest::prelude::*;

    fn sample() -> StateFile {
        StateFile {
            first_seq: 10,
            last_seq: 20,
            msgs: 8,
            bytes: 4096,
            mark_block: 3,
            mark_end_bytes: 5000,
            deleted: vec![(12, 13), (15, 15)],
        }
    }

    /// Golden bytes, also shown in docs/formats.md.
    #[test]
    fn golden_state_file() {
        let bytes = sample().encode();
        assert_eq!(hex(&bytes), GOLDEN_STATE_FILE);
        assert_eq!(StateFile::decode(&bytes), Ok(sample()));
    }

    const GOLDEN_STATE_FILE: &str = concat!(
        "534c554943455354010000005400000",
        "00a000000000000001400000000000000080000000000000000100000000000000300000000000000",
        "8813000000000000020000000c000000000000000d000000000000000f000000000000000f0000000000",
        "0000910f487a"
    );

    #[test]
    fn empty_stream_is_valid() {
        let empty = StateFile { first_seq: 1, last_seq: 0, ..Default::default() };
        assert_eq!(StateFile::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn inconsistent_counts_are_rejected() {
        let mut bytes = sample().encode();
        // msgs is body offset 16 = file offset 32; recompute the checksum so only the
        // consistency check can catch it.
        bytes[32] = 9;
        let body_end = bytes.len() - 4;
        let crc = checksum(&bytes[..body_end]).to_le_bytes();
        bytes[body_end..].copy_from_slice(&crc);
        assert_eq!(StateFile::decode(&bytes), Err(FormatError::BadField { field: "state msgs", value: 9 }));
    }

    #[test]
    fn hostile_range_count_is_rejected_without_allocation() {
        let mut bytes = sample().encode();
        bytes[16 + 48..16 + 52].copy_from_slice(&u32::MAX.to_le_bytes());
        let body_end = bytes.len() - 4;
        let crc = checksum(&bytes[..body_end]).to_le_bytes();
        bytes[body_end..].copy_from_slice(&crc);
        assert!(matches!(StateFile::decode(&bytes), Err(FormatError::LengthMismatch { .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = StateFile::decode(&bytes);
        }

        #[test]
        fn any_bit_flip_is_detected(bit in 0usize..(sample().encode().len() * 8)) {
            let mut bytes = sample().encode();
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(StateFile::decode(&bytes).is_err());
        }
    }
}
