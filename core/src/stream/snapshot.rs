//! The stream's part of a Raft snapshot: its range and counts, its interior deletes, its clock,
//! its de-duplication ids and (version 2) its consumers.
//! The messages stay in the store (synced before the snapshot is written); a replica whose
//! store is short fetches them from a peer (catch-up). Layout in docs/streams.md next to
//! `golden_snapshot`.
//!
//! No checksum: the Raft snapshot file that carries these bytes has its own. Every length
//! and count is still bounded before anything is allocated, and the contents are validated
//! (ranges, counts, canonical order of the ids), so a decoded snapshot is always one
//! `StreamMachine::snapshot` could have produced.

use super::consumer::{Consumers, CONSUMERS_SECTION_BYTES_MAX};
use super::dedupe::{DedupeEntry, DEDUPE_IDS_MAX};
use super::entry::MSG_ID_BYTES_MAX;
use super::wire::Reader;
use crate::format::block::SEQ_MAX;
use crate::format::FormatError;
use bytes::Bytes;

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SLUICESN";
/// Version 2 appends the consumers section (`consumer/wire.rs`). A stream without consumers
/// is still written as version 1, byte for byte as before consumers existed; both decode.
pub const SNAPSHOT_VERSION: u16 = 2;
const SNAPSHOT_VERSION_NO_CONSUMERS: u16 = 1;
const FIXED_BYTES: usize = 64;
const RANGE_BYTES: usize = 16;
const DEDUPE_FIXED_BYTES: usize = 18;
/// Most deleted ranges a snapshot carries: the store's state file has the same bound
/// (`STATE_BYTES_MAX` / 16), so a store that could write its state file fits.
pub const SNAPSHOT_DELETED_RANGES_MAX: usize = 4 * 1024 * 1024;
/// Largest encoded snapshot: every range and every dedupe id at its longest.
pub const SNAPSHOT_BYTES_MAX: usize = FIXED_BYTES
    + SNAPSHOT_DELETED_RANGES_MAX * RANGE_BYTES
    + DEDUPE_IDS_MAX * (DEDUPE_FIXED_BYTES + MSG_ID_BYTES_MAX)
    + CONSUMERS_SECTION_BYTES_MAX;

/// What a replica needs, besides its store's messages, to continue applying the log after the
/// snapshot's index. `first_seq..=last_seq` is the stream's range (empty: `first_seq ==
/// last_seq + 1`); `msgs` and `bytes` count the stored messages in it; `deleted` lists the
/// sequences in it without a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSnapshot {
    pub first_seq: u64,
    pub last_seq: u64,
    pub msgs: u64,
    pub bytes: u64,
    /// Interior deletes (deleted or skipped sequences within the range, never `first_seq`:
    /// replicas keep the front on a message) as sorted, disjoint,
    /// non-adjacent inclusive ranges; `msgs` = span minus their total. A replica whose store
    /// prefix is older than the snapshot deletes these from it: without them it would keep
    /// messages deleted between its last apply and the snapshot, forever (the deletes are in
    /// the compacted log, never replayed).
    pub deleted: Vec<(u64, u64)>,
    /// The stream's clock: the highest leader-chosen timestamp applied (publish or expire);
    /// `i64::MIN` before any.
    pub last_timestamp_ns: i64,
    /// Remembered message ids, oldest first (strictly increasing (timestamp, seq)).
    pub dedupe: Vec<DedupeEntry>,
    /// The stream's durable consumers and their progress.
    pub consumers: Consumers,
}

impl StreamSnapshot {
    /// The state of a stream before its first log entry. A replica with no Raft snapshot
    /// restores this one, which truncates its store to nothing before the log is replayed.
    pub fn initial() -> Self {
        StreamSnapshot {
            first_seq: 1,
            last_seq: 0,
            msgs: 0,
            bytes: 0,
            deleted: Vec::new(),
            last_timestamp_ns: i64::MIN,
            dedupe: Vec::new(),
            consumers: Consumers::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.validate().expect("encoding an inconsistent snapshot is a bug");
        let mut out = Vec::with_capacity(
            FIXED_BYTES
                + RANGE_BYTES * self.deleted.len()
                + self.dedupe.iter().map(|e| DEDUPE_FIXED_BYTES + e.msg_id.len()).sum::<usize>(),
        );
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        let version = if self.consumers.is_empty() { SNAPSHOT_VERSION_NO_CONSUMERS } else { SNAPSHOT_VERSION };
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(self.dedupe.len() as u32).to_le_bytes());
        for v in [self.first_seq, self.last_seq, self.msgs, self.bytes] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.last_timestamp_ns.to_le_bytes());
        out.extend_from_slice(&(self.deleted.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        for &(first, last) in &self.deleted {
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&last.to_le_bytes());
        }
        for e in &self.dedupe {
            out.extend_from_slice(&(e.msg_id.len() as u16).to_le_bytes());
            out.extend_from_slice(&e.msg_id);
            out.extend_from_slice(&e.seq.to_le_bytes());
            out.extend_from_slice(&e.timestamp_ns.to_le_bytes());
        }
        if version >= 2 {
            self.consumers.encode_into(&mut out);
        }
        out
    }

    /// Decodes a whole snapshot payload.
    pub fn decode(bytes: &[u8]) -> Result<StreamSnapshot, FormatError> {
        if bytes.len() > SNAPSHOT_BYTES_MAX {
            return Err(FormatError::LengthTooLarge {
                declared_bytes: bytes.len() as u64,
                max_bytes: SNAPSHOT_BYTES_MAX as u64,
            });
        }
        let mut r = Reader::new(bytes);
        if r.take(8)? != SNAPSHOT_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = r.u16()?;
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_NO_CONSUMERS {
            return Err(FormatError::UnsupportedVersion { version });
        }
        r.reserved(2, "snapshot reserved")?;
        let count = r.u32()? as usize;
        if count > DEDUPE_IDS_MAX {
            return Err(FormatError::BadField { field: "snapshot dedupe count", value: count as u64 });
        }
        let first_seq = r.u64()?;
        let last_seq = r.u64()?;
        let msgs = r.u64()?;
        let bytes_total = r.u64()?;
        let last_timestamp_ns = r.i64()?;
        let ranges = r.u32()? as usize;
        r.reserved(4, "snapshot reserved")?;
        if ranges > SNAPSHOT_DELETED_RANGES_MAX {
            return Err(FormatError::BadField { field: "snapshot deleted ranges", value: ranges as u64 });
        }
        let ranges_bytes = ranges as u64 * RANGE_BYTES as u64;
        if ranges_bytes > r.remaining() as u64 {
            return Err(FormatError::Truncated {
                needed_bytes: FIXED_BYTES as u64 + ranges_bytes,
                available_bytes: bytes.len() as u64,
            });
        }
        let mut deleted = Vec::with_capacity(ranges);
        for _ in 0..ranges {
            deleted.push((r.u64()?, r.u64()?));
        }
        // Each entry takes at least DEDUPE_FIXED_BYTES + 1: check before allocating.
        let min_rest = count as u64 * (DEDUPE_FIXED_BYTES as u64 + 1);
        if min_rest > r.remaining() as u64 {
            return Err(FormatError::Truncated {
                needed_bytes: (FIXED_BYTES as u64) + ranges_bytes + min_rest,
                available_bytes: bytes.len() as u64,
            });
        }
        let mut dedupe = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(r.u16()?);
            if len == 0 {
                return Err(FormatError::LengthTooSmall { declared_bytes: 0, min_bytes: 1 });
            }
            if len > MSG_ID_BYTES_MAX {
                return Err(FormatError::LengthTooLarge {
                    declared_bytes: len as u64,
                    max_bytes: MSG_ID_BYTES_MAX as u64,
                });
            }
            let msg_id = Bytes::copy_from_slice(r.take(len)?);
            dedupe.push(DedupeEntry { msg_id, seq: r.u64()?, timestamp_ns: r.i64()? });
        }
        let consumers = if version >= 2 { Consumers::decode_from(&mut r)? } else { Consumers::new() };
        if version >= 2 && consumers.is_empty() {
            // One stream state, one encoding: without consumers it is version 1.
            return Err(FormatError::BadField { field: "snapshot consumer count", value: 0 });
        }
        r.finish()?;
        let snap = StreamSnapshot {
            first_seq,
            last_seq,
            msgs,
            bytes: bytes_total,
            deleted,
            last_timestamp_ns,
            dedupe,
            consumers,
        };
        snap.validate()?;
        Ok(snap)
    }

    /// The invariants in the type's docs. Uniqueness of ids is checked when they are loaded
    /// (`Dedupe::load`), which `StreamMachine::restore` does before anything else.
    pub fn validate(&self) -> Result<(), FormatError> {
        let bad = |field: &'static str, value: u64| Err(FormatError::BadField { field, value });
        if self.first_seq == 0 || self.first_seq > SEQ_MAX {
            return bad("snapshot first_seq", self.first_seq);
        }
        if self.last_seq >= SEQ_MAX || self.last_seq + 1 < self.first_seq {
            return bad("snapshot last_seq", self.last_seq);
        }
        if self.deleted.len() > SNAPSHOT_DELETED_RANGES_MAX {
            return bad("snapshot deleted ranges", self.deleted.len() as u64);
        }
        if self.deleted.first().is_some_and(|&(first, _)| first == self.first_seq) {
            // Replicas keep the front canonical: the first sequence is a message, or the
            // stream is empty with `first_seq == last_seq + 1`.
            return bad("snapshot first_seq deleted", self.first_seq);
        }
        let mut deleted_total = 0u64;
        let mut previous_last: Option<u64> = None;
        for &(first, last) in &self.deleted {
            if first > last || first < self.first_seq || last > self.last_seq {
                return bad("snapshot deleted range", first);
            }
            if previous_last.is_some_and(|p| first <= p + 1) {
                return bad("snapshot deleted ranges order", first);
            }
            previous_last = Some(last);
            deleted_total += last - first + 1;
        }
        if (self.last_seq + 1 - self.first_seq).checked_sub(deleted_total) != Some(self.msgs) {
            return bad("snapshot msgs", self.msgs);
        }
        if self.bytes < self.msgs {
            return bad("snapshot bytes", self.bytes);
        }
        if self.dedupe.len() > DEDUPE_IDS_MAX {
            return bad("snapshot dedupe count", self.dedupe.len() as u64);
        }
        let mut previous: Option<(i64, u64)> = None;
        for e in &self.dedupe {
            if e.msg_id.is_empty() || e.msg_id.len() > MSG_ID_BYTES_MAX {
                return bad("snapshot dedupe id length", e.msg_id.len() as u64);
            }
            if e.seq == 0 || e.seq > self.last_seq {
                return bad("snapshot dedupe seq", e.seq);
            }
            if e.timestamp_ns > self.last_timestamp_ns {
                return bad("snapshot dedupe timestamp", e.timestamp_ns as u64);
            }
            if previous.is_some_and(|(ts, seq)| ts > e.timestamp_ns || seq >= e.seq) {
                return bad("snapshot dedupe order", e.seq);
            }
            previous = Some((e.timestamp_ns, e.seq));
        }
        // A consumer's cursor may lie past `last_seq` (a start sequence the stream has not
        // reached yet); it stays within the sequence space.
        for c in self.consumers.iter() {
            if c.state.delivered_stream_seq > SEQ_MAX {
                return bad("snapshot consumer cursor", c.state.delivered_stream_seq);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::hex;
    use proptest::prelude::*;

    fn sample() -> StreamSnapshot {
        StreamSnapshot {
            first_seq: 3,
            last_seq: 10,
            msgs: 6,
            bytes: 300,
            deleted: vec![(5, 5), (7, 7)],
            last_timestamp_ns: 5000,
            dedupe: vec![
                DedupeEntry { msg_id: Bytes::from_static(b"a"), seq: 4, timestamp_ns: 4000 },
                DedupeEntry { msg_id: Bytes::from_static(b"bc"), seq: 9, timestamp_ns: 5000 },
            ],
            consumers: Consumers::new(),
        }
    }

    /// Golden bytes, also shown in docs/streams.md.
    #[test]
    fn golden_snapshot() {
        let bytes = sample().encode();
        assert_eq!(hex(&bytes), GOLDEN_SNAPSHOT);
        assert_eq!(StreamSnapshot::decode(&bytes), Ok(sample()));
    }

    #[rustfmt::skip] // golden bytes laid out by field
    const GOLDEN_SNAPSHOT: &str = concat!(
        "534c55494345534e", "0100", "0000", "02000000",
        "0300000000000000", "0a00000000000000", "0600000000000000", "2c01000000000000",
        "8813000000000000", "02000000", "00000000",
        "0500000000000000", "0500000000000000", "0700000000000000", "0700000000000000",
        "0100", "61", "0400000000000000", "a00f000000000000",
        "0200", "6263", "0900000000000000", "8813000000000000",
    );

    #[test]
    fn initial_round_trips() {
        let initial = StreamSnapshot::initial();
        assert_eq!(StreamSnapshot::decode(&initial.encode()), Ok(initial));
    }

    #[test]
    fn inconsistent_snapshots_are_rejected() {
        let check = |edit: fn(&mut StreamSnapshot), field: &'static str| {
            let mut s = sample();
            edit(&mut s);
            let err = s.validate().unwrap_err();
            assert!(matches!(err, FormatError::BadField { field: f, .. } if f == field), "{err:?}");
        };
        check(|s| s.first_seq = 0, "snapshot first_seq");
        check(|s| s.last_seq = 1, "snapshot last_seq");
        check(|s| s.msgs = 5, "snapshot msgs");
        check(|s| s.deleted = vec![(5, 6), (7, 7)], "snapshot deleted ranges order");
        check(|s| s.deleted = vec![(2, 2), (7, 8)], "snapshot deleted range");
        check(|s| s.deleted = vec![(3, 3), (7, 7)], "snapshot first_seq deleted");
        check(|s| s.dedupe[1].seq = 11, "snapshot dedupe seq");
        check(|s| s.dedupe[1].seq = 4, "snapshot dedupe order");
        check(|s| s.dedupe[0].timestamp_ns = 6000, "snapshot dedupe timestamp");
    }

    #[test]
    fn hostile_count_is_rejected_without_allocation() {
        let mut bytes = sample().encode();
        bytes[12..16].copy_from_slice(&(DEDUPE_IDS_MAX as u32).to_le_bytes());
        assert!(matches!(StreamSnapshot::decode(&bytes), Err(FormatError::Truncated { .. })));
        bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(StreamSnapshot::decode(&bytes), Err(FormatError::BadField { .. })));
        let mut bytes = sample().encode();
        bytes[56..60].copy_from_slice(&(SNAPSHOT_DELETED_RANGES_MAX as u32).to_le_bytes());
        assert!(matches!(StreamSnapshot::decode(&bytes), Err(FormatError::Truncated { .. })));
        bytes[56..60].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(StreamSnapshot::decode(&bytes), Err(FormatError::BadField { .. })));
        let mut trailing = sample().encode();
        trailing.push(0);
        assert!(matches!(StreamSnapshot::decode(&trailing), Err(FormatError::LengthMismatch { .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = StreamSnapshot::decode(&bytes);
        }

        #[test]
        fn mutations_never_panic(at in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = sample().encode();
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = StreamSnapshot::decode(&bytes);
            let _ = StreamSnapshot::decode(&bytes[..at]);
        }
    }
}
