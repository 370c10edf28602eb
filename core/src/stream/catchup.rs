//! The stream catch-up protocol's messages: a replica whose store ends below its snapshot
//! asks a peer for the missing sequences in bounded chunks. Pure encode/decode and
//! validation; layout in docs/streams.md next to `golden_catchup`.
//!
//! A chunk covers `from_seq..=through_seq` exactly: the messages it carries, with their
//! original sequences and timestamps, and gaps (sequences deleted or purged at the sender)
//! for the rest. The receiver accepts a chunk only if it starts where the receiver's store
//! ends, stays within the range it asked for, and respects the bounds below; see
//! `StreamMachine::apply_catchup_chunk`.

use super::entry::check_message_lengths;
use super::wire::{check_seq, Reader};
use crate::format::block::SEQ_MAX;
use crate::format::FormatError;
use crate::store::{StoredMessage, MSG_SIZE_BYTES_LIMIT, SUBJECT_BYTES_MAX};
use bytes::Bytes;

pub const CATCHUP_VERSION: u8 = 1;
const KIND_REQUEST: u8 = 1;
const KIND_CHUNK: u8 = 2;
const REQUEST_BYTES: usize = 28;
const CHUNK_FIXED_BYTES: usize = 28;
const MSG_FIXED_BYTES: usize = 28;
/// Most messages in one chunk.
pub const CATCHUP_CHUNK_MSGS_MAX: usize = 16_384;
/// Most subject + header + payload bytes in one chunk, not counting its first message (a
/// single message larger than this still travels, alone, so catch-up always progresses).
pub const CATCHUP_CHUNK_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// Largest encoded chunk.
pub const CATCHUP_CHUNK_ENCODED_BYTES_MAX: usize = CHUNK_FIXED_BYTES
    + CATCHUP_CHUNK_MSGS_MAX * MSG_FIXED_BYTES
    + CATCHUP_CHUNK_BYTES_MAX as usize
    + SUBJECT_BYTES_MAX
    + MSG_SIZE_BYTES_LIMIT as usize;

/// "Send me what you have of `from_seq..=to_seq`, about `max_bytes` of it."
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchupRequest {
    pub from_seq: u64,
    pub to_seq: u64,
    /// Flow control: subject + header + payload bytes wanted in this chunk (the sender clamps
    /// it to `1..=CATCHUP_CHUNK_BYTES_MAX`; the first message is sent whatever its size).
    pub max_bytes: u64,
}

/// Sequences `from_seq..=through_seq`: `messages` (strictly increasing sequences within the
/// range) and gaps for every other sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchupChunk {
    pub from_seq: u64,
    pub through_seq: u64,
    pub messages: Vec<StoredMessage>,
}

/// Subject + headers + payload of a message, as the chunk bound counts them.
pub(crate) fn content_bytes(m: &StoredMessage) -> u64 {
    m.subject.len() as u64 + m.headers.len() as u64 + m.payload.len() as u64
}

impl CatchupRequest {
    pub fn encode(&self) -> Vec<u8> {
        self.validate().expect("encoding an invalid catch-up request is a bug");
        let mut out = Vec::with_capacity(REQUEST_BYTES);
        out.extend_from_slice(&[CATCHUP_VERSION, KIND_REQUEST, 0, 0]);
        for v in [self.from_seq, self.to_seq, self.max_bytes] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<CatchupRequest, FormatError> {
        let mut r = Reader::new(bytes);
        check_header(&mut r, KIND_REQUEST)?;
        let req = CatchupRequest { from_seq: r.u64()?, to_seq: r.u64()?, max_bytes: r.u64()? };
        r.finish()?;
        req.validate()?;
        Ok(req)
    }

    /// `1 <= from_seq <= to_seq <= SEQ_MAX`, `max_bytes >= 1`.
    pub fn validate(&self) -> Result<(), FormatError> {
        check_seq("catch-up from_seq", self.from_seq)?;
        check_seq("catch-up to_seq", self.to_seq)?;
        if self.to_seq < self.from_seq {
            return Err(FormatError::BadField { field: "catch-up to_seq", value: self.to_seq });
        }
        if self.max_bytes == 0 {
            return Err(FormatError::BadField { field: "catch-up max_bytes", value: 0 });
        }
        Ok(())
    }
}

impl CatchupChunk {
    pub fn encode(&self) -> Vec<u8> {
        self.validate().expect("encoding an invalid catch-up chunk is a bug");
        let content: u64 = self.messages.iter().map(content_bytes).sum();
        let mut out = Vec::with_capacity(CHUNK_FIXED_BYTES + MSG_FIXED_BYTES * self.messages.len() + content as usize);
        out.extend_from_slice(&[CATCHUP_VERSION, KIND_CHUNK, 0, 0]);
        out.extend_from_slice(&self.from_seq.to_le_bytes());
        out.extend_from_slice(&self.through_seq.to_le_bytes());
        out.extend_from_slice(&(self.messages.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        for m in &self.messages {
            out.extend_from_slice(&m.seq.to_le_bytes());
            out.extend_from_slice(&m.timestamp_ns.to_le_bytes());
            out.extend_from_slice(&(m.subject.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(m.headers.len() as u32).to_le_bytes());
            out.extend_from_slice(&(m.payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&m.subject);
            out.extend_from_slice(&m.headers);
            out.extend_from_slice(&m.payload);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<CatchupChunk, FormatError> {
        if bytes.len() > CATCHUP_CHUNK_ENCODED_BYTES_MAX {
            return Err(FormatError::LengthTooLarge {
                declared_bytes: bytes.len() as u64,
                max_bytes: CATCHUP_CHUNK_ENCODED_BYTES_MAX as u64,
            });
        }
        let mut r = Reader::new(bytes);
        check_header(&mut r, KIND_CHUNK)?;
        let from_seq = r.u64()?;
        let through_seq = r.u64()?;
        let count = r.u32()? as usize;
        r.reserved(4, "catch-up chunk reserved")?;
        if count > CATCHUP_CHUNK_MSGS_MAX {
            return Err(FormatError::BadField { field: "catch-up message count", value: count as u64 });
        }
        // Each message takes at least its fixed part plus a one-byte subject.
        let min_rest = count as u64 * (MSG_FIXED_BYTES as u64 + 1);
        if min_rest > r.remaining() as u64 {
            return Err(FormatError::Truncated {
                needed_bytes: CHUNK_FIXED_BYTES as u64 + min_rest,
                available_bytes: bytes.len() as u64,
            });
        }
        let mut messages = Vec::with_capacity(count);
        for _ in 0..count {
            let seq = r.u64()?;
            let timestamp_ns = r.i64()?;
            let subject_len = usize::from(r.u16()?);
            r.reserved(2, "catch-up message reserved")?;
            let headers_len = r.u32()? as usize;
            let payload_len = r.u32()? as usize;
            check_message_lengths(subject_len as u64, headers_len as u64, payload_len as u64)?;
            messages.push(StoredMessage {
                seq,
                timestamp_ns,
                subject: Bytes::copy_from_slice(r.take(subject_len)?),
                headers: Bytes::copy_from_slice(r.take(headers_len)?),
                payload: Bytes::copy_from_slice(r.take(payload_len)?),
            });
        }
        r.finish()?;
        let chunk = CatchupChunk { from_seq, through_seq, messages };
        chunk.validate()?;
        Ok(chunk)
    }

    /// The chunk on its own: a non-empty range within `1..=SEQ_MAX`, messages in strictly
    /// increasing order within it, each within the format's bounds, at most
    /// `CATCHUP_CHUNK_MSGS_MAX` of them and `CATCHUP_CHUNK_BYTES_MAX` of content after the
    /// first. Whether it is the chunk the receiver needs is `apply_catchup_chunk`'s check.
    pub fn validate(&self) -> Result<(), FormatError> {
        check_seq("catch-up from_seq", self.from_seq)?;
        check_seq("catch-up through_seq", self.through_seq)?;
        if self.through_seq < self.from_seq {
            return Err(FormatError::BadField { field: "catch-up through_seq", value: self.through_seq });
        }
        if self.messages.len() > CATCHUP_CHUNK_MSGS_MAX {
            return Err(FormatError::BadField { field: "catch-up message count", value: self.messages.len() as u64 });
        }
        let mut next = self.from_seq;
        let mut rest_bytes = 0u64;
        for (i, m) in self.messages.iter().enumerate() {
            if m.seq < next || m.seq > self.through_seq {
                return Err(FormatError::BadField { field: "catch-up message seq", value: m.seq });
            }
            check_message_lengths(m.subject.len() as u64, m.headers.len() as u64, m.payload.len() as u64)?;
            if i > 0 {
                rest_bytes += content_bytes(m);
                if rest_bytes > CATCHUP_CHUNK_BYTES_MAX {
                    return Err(FormatError::LengthTooLarge {
                        declared_bytes: rest_bytes,
                        max_bytes: CATCHUP_CHUNK_BYTES_MAX,
                    });
                }
            }
            next = m.seq + 1;
        }
        debug_assert!(self.through_seq <= SEQ_MAX);
        Ok(())
    }
}

fn check_header(r: &mut Reader<'_>, kind: u8) -> Result<(), FormatError> {
    let version = r.u8()?;
    if version != CATCHUP_VERSION {
        return Err(FormatError::UnsupportedVersion { version: u16::from(version) });
    }
    let found = r.u8()?;
    if found != kind {
        return Err(FormatError::BadField { field: "catch-up kind", value: u64::from(found) });
    }
    r.reserved(2, "catch-up reserved")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::hex;
    use proptest::prelude::*;

    fn msg(seq: u64, payload: &'static [u8]) -> StoredMessage {
        StoredMessage {
            seq,
            timestamp_ns: seq as i64 * 10,
            subject: Bytes::from_static(b"s"),
            headers: Bytes::new(),
            payload: Bytes::from_static(payload),
        }
    }

    fn sample() -> CatchupChunk {
        CatchupChunk { from_seq: 5, through_seq: 8, messages: vec![msg(5, b"ab"), msg(7, b"c")] }
    }

    /// Golden bytes, also shown in docs/streams.md.
    #[rustfmt::skip] // golden bytes laid out by field
    #[test]
    fn golden_catchup() {
        let req = CatchupRequest { from_seq: 5, to_seq: 9, max_bytes: 4096 };
        assert_eq!(
            hex(&req.encode()),
            concat!("01010000", "0500000000000000", "0900000000000000", "0010000000000000")
        );
        assert_eq!(CatchupRequest::decode(&req.encode()), Ok(req));

        let bytes = sample().encode();
        assert_eq!(
            hex(&bytes),
            concat!(
                "01020000", "0500000000000000", "0800000000000000", "02000000", "00000000",
                "0500000000000000", "3200000000000000", "0100", "0000", "00000000", "02000000", "73", "6162",
                "0700000000000000", "4600000000000000", "0100", "0000", "00000000", "01000000", "73", "63",
            )
        );
        assert_eq!(CatchupChunk::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn hostile_chunks_are_rejected() {
        let bad = |chunk: CatchupChunk| chunk.validate().unwrap_err();
        assert!(matches!(
            bad(CatchupChunk { from_seq: 5, through_seq: 4, messages: vec![] }),
            FormatError::BadField { field: "catch-up through_seq", .. }
        ));
        assert!(matches!(
            bad(CatchupChunk { from_seq: 5, through_seq: 8, messages: vec![msg(7, b""), msg(6, b"")] }),
            FormatError::BadField { field: "catch-up message seq", value: 6 }
        ));
        assert!(matches!(
            bad(CatchupChunk { from_seq: 5, through_seq: 8, messages: vec![msg(9, b"")] }),
            FormatError::BadField { field: "catch-up message seq", value: 9 }
        ));
        assert!(matches!(
            bad(CatchupChunk { from_seq: 5, through_seq: 8, messages: vec![msg(4, b"")] }),
            FormatError::BadField { field: "catch-up message seq", value: 4 }
        ));
        let big = Bytes::from(vec![0u8; CATCHUP_CHUNK_BYTES_MAX as usize]);
        let mut m6 = msg(6, b"");
        m6.payload = big.clone();
        let mut m5 = msg(5, b"");
        m5.payload = big;
        // The first message may exceed the chunk bound on its own; a second may not follow.
        assert!(CatchupChunk { from_seq: 5, through_seq: 6, messages: vec![m5.clone()] }.validate().is_ok());
        assert!(matches!(
            bad(CatchupChunk { from_seq: 5, through_seq: 6, messages: vec![msg(5, b""), m6] }),
            FormatError::LengthTooLarge { .. }
        ));

        // A count far beyond the bytes present is refused before allocating.
        let mut bytes = sample().encode();
        bytes[20..24].copy_from_slice(&(CATCHUP_CHUNK_MSGS_MAX as u32).to_le_bytes());
        assert!(matches!(CatchupChunk::decode(&bytes), Err(FormatError::Truncated { .. })));
        bytes[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(CatchupChunk::decode(&bytes), Err(FormatError::BadField { .. })));
        // A request is not a chunk.
        let req = CatchupRequest { from_seq: 1, to_seq: 1, max_bytes: 1 }.encode();
        assert!(matches!(CatchupChunk::decode(&req), Err(FormatError::BadField { field: "catch-up kind", .. })));
        assert!(CatchupRequest::decode(&CatchupRequest { from_seq: 1, to_seq: 2, max_bytes: 1 }.encode()).is_ok());
        let mut req = req;
        req[12..20].copy_from_slice(&0u64.to_le_bytes());
        assert!(CatchupRequest::decode(&req).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = CatchupChunk::decode(&bytes);
            let _ = CatchupRequest::decode(&bytes);
        }

        #[test]
        fn mutations_never_panic(at in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = sample().encode();
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = CatchupChunk::decode(&bytes);
            let _ = CatchupChunk::decode(&bytes[..at]);
        }

        #[test]
        fn round_trip(
            from in 1u64..1000,
            span in 0u64..50,
            picks in proptest::collection::btree_set(0u64..50, 0..20),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let through = from + span;
            let messages = picks
                .into_iter()
                .filter(|p| *p <= span)
                .map(|p| StoredMessage {
                    seq: from + p,
                    timestamp_ns: -(p as i64),
                    subject: Bytes::from_static(b"a.b"),
                    headers: Bytes::from_static(b"h"),
                    payload: Bytes::from(payload.clone()),
                })
                .collect();
            let chunk = CatchupChunk { from_seq: from, through_seq: through, messages };
            prop_assert_eq!(CatchupChunk::decode(&chunk.encode()), Ok(chunk));
        }
    }
}
