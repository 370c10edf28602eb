//! Peer messages and their wire format.
//!
//! Owns the encoding of every Raft message that crosses the network. Decoding is defensive:
//! the bytes come from a peer that may be buggy, stale or hostile, so every length is checked
//! against the bytes present and a hard bound before anything is allocated, unknown kinds and
//! out-of-range fields are errors, and trailing bytes are an error. A decode error drops the
//! message; it never panics. Byte layout: docs/raft.md ("Wire format"), golden tests below.

use super::types::{Entry, EntryKind, GroupId, Index, Membership, Snapshot, SnapshotMeta, Term};
use super::types::{BATCH_ENTRIES_MAX, ENTRY_DATA_BYTES_MAX, PEERS_MAX};
use crate::env::{NodeId, FRAME_BYTES_MAX};
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Wire format version, byte 0 of every frame.
pub const WIRE_VERSION: u8 = 1;
/// version u8, kind u8, group u64, from u64, to u64, term u64.
pub const HEADER_BYTES: usize = 34;
/// Per-entry framing in an AppendEntries: u32 length, u8 kind, u64 term.
pub const ENTRY_OVERHEAD_BYTES: usize = 13;
/// prev_index, prev_term, commit (u64 each) and the u16 entry count.
pub const APPEND_FIXED_BYTES: usize = 26;
/// Largest snapshot payload one InstallSnapshot frame carries.
pub const SNAPSHOT_WIRE_DATA_BYTES_MAX: usize = FRAME_BYTES_MAX - HEADER_BYTES - 64 - 8 * PEERS_MAX;

/// Frame kinds 1..=15 are Raft's; other layers multiplex their own frames from 16 up.
pub const KIND_RAFT_MAX: u8 = 15;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub group: GroupId,
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Entries `prev_index+1 ..` (possibly none: a heartbeat).
    Append {
        prev_index: Index,
        prev_term: Term,
        commit: Index,
        entries: Vec<Entry>,
    },
    /// `success`: the follower's log matches the leader's through `index`, durably.
    /// Otherwise `index` is a hint: the follower's log cannot match beyond it.
    AppendResponse {
        success: bool,
        index: Index,
    },
    Vote {
        pre_vote: bool,
        transfer: bool,
        last_index: Index,
        last_term: Term,
    },
    VoteResponse {
        pre_vote: bool,
        granted: bool,
    },
    InstallSnapshot {
        snapshot: Snapshot,
    },
    /// The follower holds (durably) a snapshot through `last_index` (or already had more).
    SnapshotResponse {
        last_index: Index,
    },
    /// Leader transfer: the receiver should start an election now, skipping pre-vote.
    TimeoutNow,
    /// A follower asks for a snapshot newer than its applied index `above` (its
    /// application could not rebuild its state from the last one).
    SnapshotRequest {
        above: Index,
    },
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Body::Append { .. } => 1,
            Body::AppendResponse { .. } => 2,
            Body::Vote { .. } => 3,
            Body::VoteResponse { .. } => 4,
            Body::InstallSnapshot { .. } => 5,
            Body::SnapshotResponse { .. } => 6,
            Body::TimeoutNow => 7,
            Body::SnapshotRequest { .. } => 8,
        }
    }
}

/// Why a frame was refused. Carries enough to log the offending peer's mistake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    Truncated { needed_bytes: usize, available_bytes: usize },
    TooLarge { size_bytes: usize, max_bytes: usize },
    UnsupportedVersion { version: u8 },
    UnknownKind { kind: u8 },
    BadField { field: &'static str, value: u64 },
    TrailingBytes { extra_bytes: usize },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { needed_bytes, available_bytes } => {
                write!(f, "truncated frame: need {needed_bytes} bytes, have {available_bytes}")
            }
            WireError::TooLarge { size_bytes, max_bytes } => write!(f, "{size_bytes} bytes exceeds {max_bytes}"),
            WireError::UnsupportedVersion { version } => write!(f, "unsupported wire version {version}"),
            WireError::UnknownKind { kind } => write!(f, "unknown message kind {kind}"),
            WireError::BadField { field, value } => write!(f, "invalid {field}: {value}"),
            WireError::TrailingBytes { extra_bytes } => write!(f, "{extra_bytes} bytes after the message"),
        }
    }
}

impl std::error::Error for WireError {}

/// The fixed header every frame starts with, readable without decoding the body, so a node
/// can route a frame to its group (or to another layer) first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub group: GroupId,
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
}

pub fn encode_header(out: &mut BytesMut, h: &Header) {
    out.put_u8(WIRE_VERSION);
    out.put_u8(h.kind);
    out.put_u64_le(h.group);
    out.put_u64_le(h.from);
    out.put_u64_le(h.to);
    out.put_u64_le(h.term);
}

pub fn decode_header(bytes: &[u8]) -> Result<Header, WireError> {
    if bytes.len() > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge { size_bytes: bytes.len(), max_bytes: FRAME_BYTES_MAX });
    }
    let mut r = Reader { bytes, at: 0 };
    let version = r.u8()?;
    if version != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion { version });
    }
    Ok(Header { kind: r.u8()?, group: r.u64()?, from: r.u64()?, to: r.u64()?, term: r.u64()? })
}

/// Encoded size of an AppendEntries carrying `entries`.
pub fn append_bytes<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> usize {
    HEADER_BYTES + APPEND_FIXED_BYTES + entries.into_iter().map(Entry::wire_bytes).sum::<usize>()
}

impl Message {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len_hint());
        let header =
            Header { kind: self.body.kind(), group: self.group, from: self.from, to: self.to, term: self.term };
        encode_header(&mut out, &header);
        match &self.body {
            Body::Append { prev_index, prev_term, commit, entries } => {
                assert!(entries.len() <= BATCH_ENTRIES_MAX, "batch of {} entries", entries.len());
                out.put_u64_le(*prev_index);
                out.put_u64_le(*prev_term);
                out.put_u64_le(*commit);
                out.put_u16_le(entries.len() as u16);
                for (i, e) in entries.iter().enumerate() {
                    assert_eq!(e.index, prev_index + 1 + i as u64, "entries of an append are contiguous");
                    assert!(e.data.len() <= ENTRY_DATA_BYTES_MAX);
                    out.put_u32_le((ENTRY_OVERHEAD_BYTES - 4 + e.data.len()) as u32);
                    out.put_u8(e.kind as u8);
                    out.put_u64_le(e.term);
                    out.put_slice(&e.data);
                }
            }
            Body::AppendResponse { success, index } => {
                out.put_u8(u8::from(*success));
                out.put_u64_le(*index);
            }
            Body::Vote { pre_vote, transfer, last_index, last_term } => {
                out.put_u8(u8::from(*pre_vote) | u8::from(*transfer) << 1);
                out.put_u64_le(*last_index);
                out.put_u64_le(*last_term);
            }
            Body::VoteResponse { pre_vote, granted } => {
                out.put_u8(u8::from(*pre_vote) | u8::from(*granted) << 1);
            }
            Body::InstallSnapshot { snapshot } => {
                encode_snapshot_meta(&mut out, &snapshot.meta);
                assert!(snapshot.data.len() <= SNAPSHOT_WIRE_DATA_BYTES_MAX);
                out.put_u32_le(snapshot.data.len() as u32);
                out.put_slice(&snapshot.data);
            }
            Body::SnapshotResponse { last_index } => out.put_u64_le(*last_index),
            Body::TimeoutNow => {}
            Body::SnapshotRequest { above } => out.put_u64_le(*above),
        }
        out.freeze()
    }

    fn encoded_len_hint(&self) -> usize {
        match &self.body {
            Body::Append { entries, .. } => append_bytes(entries),
            Body::InstallSnapshot { snapshot } => HEADER_BYTES + 64 + 8 * PEERS_MAX + snapshot.data.len(),
            _ => HEADER_BYTES + 24,
        }
    }

    /// Decodes a whole frame. `frame` must be the exact frame (it is sliced, not copied, for
    /// entry and snapshot data).
    pub fn decode(frame: &Bytes) -> Result<Message, WireError> {
        let h = decode_header(frame)?;
        let mut r = Reader { bytes: frame, at: HEADER_BYTES };
        let body = match h.kind {
            1 => {
                let prev_index = r.u64()?;
                let prev_term = r.u64()?;
                let commit = r.u64()?;
                let count = usize::from(r.u16()?);
                // Each entry takes at least its framing, so the count is bounded by the bytes
                // present before anything is allocated.
                let fits = r.remaining() / ENTRY_OVERHEAD_BYTES;
                if count > fits {
                    return Err(WireError::Truncated {
                        needed_bytes: count * ENTRY_OVERHEAD_BYTES,
                        available_bytes: r.remaining(),
                    });
                }
                let mut entries = Vec::with_capacity(count);
                for i in 0..count as u64 {
                    let len = r.u32()? as usize;
                    if len < ENTRY_OVERHEAD_BYTES - 4 {
                        return Err(WireError::BadField { field: "entry length", value: len as u64 });
                    }
                    let data_len = len - (ENTRY_OVERHEAD_BYTES - 4);
                    if data_len > ENTRY_DATA_BYTES_MAX {
                        return Err(WireError::TooLarge { size_bytes: data_len, max_bytes: ENTRY_DATA_BYTES_MAX });
                    }
                    let kind_byte = r.u8()?;
                    let kind = EntryKind::from_u8(kind_byte)
                        .ok_or(WireError::BadField { field: "entry kind", value: u64::from(kind_byte) })?;
                    let term = r.u64()?;
                    let data = r.slice(frame, data_len)?;
                    let index = prev_index
                        .checked_add(1 + i)
                        .ok_or(WireError::BadField { field: "prev_index", value: prev_index })?;
                    entries.push(Entry { index, term, kind, data });
                }
                Body::Append { prev_index, prev_term, commit, entries }
            }
            2 => Body::AppendResponse { success: r.flag()?, index: r.u64()? },
            3 => {
                let flags = r.u8()?;
                if flags > 3 {
                    return Err(WireError::BadField { field: "vote flags", value: u64::from(flags) });
                }
                Body::Vote {
                    pre_vote: flags & 1 != 0,
                    transfer: flags & 2 != 0,
                    last_index: r.u64()?,
                    last_term: r.u64()?,
                }
            }
            4 => {
                let flags = r.u8()?;
                if flags > 3 {
                    return Err(WireError::BadField { field: "vote response flags", value: u64::from(flags) });
                }
                Body::VoteResponse { pre_vote: flags & 1 != 0, granted: flags & 2 != 0 }
            }
            5 => {
                let meta = decode_snapshot_meta(&mut r)?;
                let len = r.u32()? as usize;
                if len > SNAPSHOT_WIRE_DATA_BYTES_MAX {
                    return Err(WireError::TooLarge { size_bytes: len, max_bytes: SNAPSHOT_WIRE_DATA_BYTES_MAX });
                }
                let data = r.slice(frame, len)?;
                Body::InstallSnapshot { snapshot: Snapshot { meta, data } }
            }
            6 => Body::SnapshotResponse { last_index: r.u64()? },
            7 => Body::TimeoutNow,
            8 => Body::SnapshotRequest { above: r.u64()? },
            kind => return Err(WireError::UnknownKind { kind }),
        };
        if r.remaining() != 0 {
            return Err(WireError::TrailingBytes { extra_bytes: r.remaining() });
        }
        Ok(Message { group: h.group, from: h.from, to: h.to, term: h.term, body })
    }
}

fn encode_snapshot_meta(out: &mut BytesMut, meta: &SnapshotMeta) {
    assert!(meta.membership.voters.len() <= PEERS_MAX);
    out.put_u64_le(meta.last_index);
    out.put_u64_le(meta.last_term);
    out.put_u8(meta.membership.voters.len() as u8);
    for id in &meta.membership.voters {
        out.put_u64_le(*id);
    }
}

fn decode_snapshot_meta(r: &mut Reader<'_>) -> Result<SnapshotMeta, WireError> {
    let last_index = r.u64()?;
    let last_term = r.u64()?;
    let count = usize::from(r.u8()?);
    if count > PEERS_MAX {
        return Err(WireError::BadField { field: "voter count", value: count as u64 });
    }
    let mut voters = std::collections::BTreeSet::new();
    for _ in 0..count {
        let id = r.u64()?;
        // Strictly increasing, so one snapshot has one encoding.
        if id == 0 || voters.last().is_some_and(|last| *last >= id) {
            return Err(WireError::BadField { field: "voter id", value: id });
        }
        voters.insert(id);
    }
    Ok(SnapshotMeta { last_index, last_term, membership: Membership { voters } })
}

/// A bounds-checked little-endian cursor.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated { needed_bytes: self.at + n, available_bytes: self.bytes.len() });
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn flag(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(WireError::BadField { field: "flag", value: u64::from(v) }),
        }
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// The next `n` bytes as a zero-copy slice of `frame` (which `self.bytes` views).
    fn slice(&mut self, frame: &Bytes, n: usize) -> Result<Bytes, WireError> {
        let start = self.at;
        self.take(n)?;
        Ok(frame.slice(start..start + n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::hex;
    use proptest::prelude::*;

    fn entry(index: Index, term: Term, kind: EntryKind, data: &'static [u8]) -> Entry {
        Entry { index, term, kind, data: Bytes::from_static(data) }
    }

    fn append() -> Message {
        Message {
            group: 7,
            from: 1,
            to: 2,
            term: 3,
            body: Body::Append {
                prev_index: 10,
                prev_term: 2,
                commit: 9,
                entries: vec![entry(11, 3, EntryKind::Noop, b""), entry(12, 3, EntryKind::Normal, b"hi")],
            },
        }
    }

    /// The AppendEntries layout of docs/raft.md, byte for byte.
    #[test]
    fn golden_append_entries() {
        let bytes = append().encode();
        assert_eq!(
            hex(&bytes),
            concat!(
                "01",               // version
                "01",               // kind: append
                "0700000000000000", // group
                "0100000000000000", // from
                "0200000000000000", // to
                "0300000000000000", // term
                "0a00000000000000", // prev_index 10
                "0200000000000000", // prev_term 2
                "0900000000000000", // commit 9
                "0200",             // 2 entries
                "09000000",
                "02",
                "0300000000000000", // len 9, noop, term 3
                "0b000000",
                "01",
                "0300000000000000",
                "6869", // len 11, normal, term 3, "hi"
            )
        );
        assert_eq!(
            bytes.len(),
            append_bytes(match &append().body {
                Body::Append { entries, .. } => entries,
                _ => unreachable!(),
            })
        );
        assert_eq!(Message::decode(&bytes).unwrap(), append());
    }

    #[test]
    fn golden_vote_and_snapshot() {
        let vote = Message {
            group: 0,
            from: 3,
            to: 1,
            term: 5,
            body: Body::Vote { pre_vote: true, transfer: false, last_index: 8, last_term: 4 },
        };
        assert_eq!(hex(&vote.encode()[HEADER_BYTES..]), "01".to_owned() + "0800000000000000" + "0400000000000000");
        let snap = Message {
            group: 9,
            from: 1,
            to: 2,
            term: 2,
            body: Body::InstallSnapshot {
                snapshot: Snapshot {
                    meta: SnapshotMeta { last_index: 20, last_term: 2, membership: Membership::new([1, 2]) },
                    data: Bytes::from_static(b"st"),
                },
            },
        };
        assert_eq!(
            hex(&snap.encode()[HEADER_BYTES..]),
            concat!(
                "1400000000000000",
                "0200000000000000",
                "02",
                "0100000000000000",
                "0200000000000000",
                "02000000",
                "7374"
            )
        );
        let ask = Message { group: 9, from: 2, to: 1, term: 2, body: Body::SnapshotRequest { above: 20 } };
        let bytes = ask.encode();
        assert_eq!(bytes[1], 8, "kind: snapshot request");
        assert_eq!(hex(&bytes[HEADER_BYTES..]), "1400000000000000");
        for m in [vote, snap, ask] {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn hostile_counts_and_lengths_are_refused_before_allocation() {
        let mut bytes = BytesMut::from(&append().encode()[..]);
        // Claim 65,535 entries in a frame that holds two.
        bytes[HEADER_BYTES + 24..HEADER_BYTES + 26].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(Message::decode(&bytes.clone().freeze()), Err(WireError::Truncated { .. })));
        // An entry length far beyond the frame.
        let mut bytes = BytesMut::from(&append().encode()[..]);
        let at = HEADER_BYTES + APPEND_FIXED_BYTES;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Message::decode(&bytes.freeze()), Err(WireError::TooLarge { .. })));
        // Trailing garbage, an unknown kind and a wrong version.
        let mut bytes = BytesMut::from(&append().encode()[..]);
        bytes.put_u8(0);
        assert_eq!(Message::decode(&bytes.freeze()), Err(WireError::TrailingBytes { extra_bytes: 1 }));
        let mut bytes = BytesMut::from(&append().encode()[..]);
        bytes[1] = 99;
        assert_eq!(Message::decode(&bytes.freeze()), Err(WireError::UnknownKind { kind: 99 }));
        let mut bytes = BytesMut::from(&append().encode()[..]);
        bytes[0] = 2;
        assert_eq!(Message::decode(&bytes.freeze()), Err(WireError::UnsupportedVersion { version: 2 }));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// No input panics the decoder; whatever decodes re-encodes to the same bytes.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), kind in 1u8..9) {
            let mut frame = bytes;
            if frame.len() >= 2 {
                frame[0] = WIRE_VERSION;
                frame[1] = kind;
            }
            let frame = Bytes::from(frame);
            if let Ok(m) = Message::decode(&frame) {
                prop_assert_eq!(m.encode(), frame);
            }
        }

        #[test]
        fn any_truncation_of_a_valid_frame_is_an_error(cut in 0usize..64) {
            let bytes = append().encode();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(Message::decode(&bytes.slice(..cut)).is_err());
        }
    }
}
