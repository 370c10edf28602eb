//! The payload of a stream's Raft log entry (opaque bytes to Raft): publish, delete, purge,
//! expire, the consumer operations (create, delete, next, ack) and the two restore entries
//! (a chunk of archived messages, an archived consumer). Pure encode/decode; layout in docs/streams.md next to `golden_entries`.
//!
//! The decoder bounds every length before it slices (nothing is allocated from a declared
//! length: [`EntryRef`] borrows the input), rejects unknown versions, kinds, flags and
//! trailing bytes, and never panics. Every replica decodes the same committed bytes, so a
//! decoding error is a deterministic refusal, not a local fault.

use super::config::STREAM_NAME_BYTES_MAX;
use super::consumer::{AckKind, ConsumerConfig, CONSUMER_CONFIG_BYTES_MAX, CONSUMER_EXPORT_BYTES_MAX};
use super::wire::{check_seq, Reader};
use crate::format::FormatError;
use crate::store::{MSG_SIZE_BYTES_LIMIT, SUBJECT_BYTES_MAX};
use bytes::Bytes;

pub const ENTRY_VERSION: u8 = 1;
/// Longest `Nats-Msg-Id` accepted, in bytes.
pub const MSG_ID_BYTES_MAX: usize = 256;
const KIND_PUBLISH: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_PURGE: u8 = 3;
const KIND_EXPIRE: u8 = 4;
const KIND_CONSUMER_CREATE: u8 = 5;
const KIND_CONSUMER_DELETE: u8 = 6;
const KIND_CONSUMER_NEXT: u8 = 7;
const KIND_CONSUMER_ACK: u8 = 8;
const KIND_RESTORE: u8 = 9;
const KIND_CONSUMER_RESTORE: u8 = 10;
/// The ack kind travels in the flags byte of a consumer-ack entry.
const ACK_ACK: u8 = 1;
const ACK_NAK: u8 = 2;
const ACK_PROGRESS: u8 = 3;
const ACK_TERM: u8 = 4;
/// Bytes of a publish entry besides its message id, subject, headers and payload.
pub const PUBLISH_FIXED_BYTES: usize = 32;
const FLAG_EXPECTED_LAST_SEQ: u8 = 1;
const FLAG_PURGE_BEFORE: u8 = 1;
/// Largest encoded entry: a publish with every field at its bound.
pub const ENTRY_BYTES_MAX: usize =
    PUBLISH_FIXED_BYTES + MSG_ID_BYTES_MAX + SUBJECT_BYTES_MAX + MSG_SIZE_BYTES_LIMIT as usize;
/// Bytes of a restore entry besides its chunk.
const RESTORE_FIXED_BYTES: usize = 4 + 8 + 4;
/// Largest catch-up chunk a restore entry carries: whatever fits the entry bound, which is
/// one largest message and more (a chunk's header and one message's fixed part are smaller
/// than a publish's fixed part and message id).
pub const RESTORE_CHUNK_BYTES_MAX: usize = ENTRY_BYTES_MAX - RESTORE_FIXED_BYTES;
const _: () = assert!(CONSUMER_EXPORT_BYTES_MAX + 8 <= ENTRY_BYTES_MAX, "a consumer export fits one entry");

/// What a purge removes. Applied at the same log position on every replica, so "all" means
/// the same sequences everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purge {
    /// Every message; the last sequence stays (the next publish gets `last_seq + 1`).
    All,
    /// Every message with a sequence below `seq`. A `seq` beyond `last_seq + 1` purges all
    /// and does not move the last sequence.
    Before { seq: u64 },
}

/// A publish as the leader proposes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Chosen once by the leader; stored as the message's timestamp on every replica, and the
    /// clock that de-duplication windows are measured on.
    pub timestamp_ns: i64,
    /// `Nats-Msg-Id`; empty for none. At most `MSG_ID_BYTES_MAX` bytes.
    pub msg_id: Bytes,
    pub subject: Bytes,
    pub headers: Bytes,
    pub payload: Bytes,
    /// Refuse unless the stream's last sequence is exactly this (optimistic concurrency).
    pub expected_last_seq: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEntry {
    Publish(Publish),
    Delete {
        seq: u64,
    },
    Purge(Purge),
    /// Proposed by the leader periodically with its wall clock, so age limits and dedupe
    /// windows advance at the same log position on every replica.
    Expire {
        now_wall_ns: i64,
    },
    /// Creates (or updates) a consumer; `config` is its JSON (`ConsumerConfig::encode`).
    ConsumerCreate {
        now_wall_ns: i64,
        config: Bytes,
    },
    ConsumerDelete {
        name: Bytes,
    },
    /// A pull: deliver up to `batch` messages of about `max_bytes` at the leader's time.
    ConsumerNext {
        now_wall_ns: i64,
        name: Bytes,
        batch: u32,
        max_bytes: u32,
    },
    ConsumerAck {
        now_wall_ns: i64,
        name: Bytes,
        seq: u64,
        kind: AckKind,
    },
    /// Part of a restore from an archive: an encoded `CatchupChunk` (messages with their
    /// original sequences and timestamps, gaps for the rest of its range) that must start
    /// right after the stream's last sequence. `now_wall_ns` (the leader's clock) decides
    /// which messages expired while archived.
    Restore {
        now_wall_ns: i64,
        chunk: Bytes,
    },
    /// A consumer with its state, as `Consumers::export` encodes it, from an archive.
    ConsumerRestore {
        consumer: Bytes,
    },
}

impl StreamEntry {
    pub fn consumer_create(now_wall_ns: i64, config: &ConsumerConfig) -> StreamEntry {
        StreamEntry::ConsumerCreate { now_wall_ns, config: Bytes::from(config.encode()) }
    }
}

/// A publish borrowing the entry's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishRef<'a> {
    pub timestamp_ns: i64,
    pub msg_id: &'a [u8],
    pub subject: &'a [u8],
    pub headers: &'a [u8],
    pub payload: &'a [u8],
    pub expected_last_seq: Option<u64>,
}

/// An entry borrowing its bytes: what `apply` decodes, without copying the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryRef<'a> {
    Publish(PublishRef<'a>),
    Delete { seq: u64 },
    Purge(Purge),
    Expire { now_wall_ns: i64 },
    ConsumerCreate { now_wall_ns: i64, config: &'a [u8] },
    ConsumerDelete { name: &'a [u8] },
    ConsumerNext { now_wall_ns: i64, name: &'a [u8], batch: u32, max_bytes: u32 },
    ConsumerAck { now_wall_ns: i64, name: &'a [u8], seq: u64, kind: AckKind },
    Restore { now_wall_ns: i64, chunk: &'a [u8] },
    ConsumerRestore { consumer: &'a [u8] },
}

impl StreamEntry {
    pub fn as_ref(&self) -> EntryRef<'_> {
        match self {
            StreamEntry::Publish(p) => EntryRef::Publish(PublishRef {
                timestamp_ns: p.timestamp_ns,
                msg_id: &p.msg_id,
                subject: &p.subject,
                headers: &p.headers,
                payload: &p.payload,
                expected_last_seq: p.expected_last_seq,
            }),
            StreamEntry::Delete { seq } => EntryRef::Delete { seq: *seq },
            StreamEntry::Purge(purge) => EntryRef::Purge(*purge),
            StreamEntry::Expire { now_wall_ns } => EntryRef::Expire { now_wall_ns: *now_wall_ns },
            StreamEntry::ConsumerCreate { now_wall_ns, config } => {
                EntryRef::ConsumerCreate { now_wall_ns: *now_wall_ns, config }
            }
            StreamEntry::ConsumerDelete { name } => EntryRef::ConsumerDelete { name },
            StreamEntry::ConsumerNext { now_wall_ns, name, batch, max_bytes } => {
                EntryRef::ConsumerNext { now_wall_ns: *now_wall_ns, name, batch: *batch, max_bytes: *max_bytes }
            }
            StreamEntry::ConsumerAck { now_wall_ns, name, seq, kind } => {
                EntryRef::ConsumerAck { now_wall_ns: *now_wall_ns, name, seq: *seq, kind: *kind }
            }
            StreamEntry::Restore { now_wall_ns, chunk } => EntryRef::Restore { now_wall_ns: *now_wall_ns, chunk },
            StreamEntry::ConsumerRestore { consumer } => EntryRef::ConsumerRestore { consumer },
        }
    }

    /// Encodes the entry, or refuses one that breaks a bound (the leader validates a client's
    /// publish here, before proposing it).
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        let mut out = Vec::new();
        self.as_ref().encode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes one whole entry, copying its fields.
    pub fn decode(bytes: &[u8]) -> Result<StreamEntry, FormatError> {
        EntryRef::decode(bytes).map(|e| e.to_owned())
    }
}

impl<'a> EntryRef<'a> {
    pub fn to_owned(&self) -> StreamEntry {
        match *self {
            EntryRef::Publish(p) => StreamEntry::Publish(Publish {
                timestamp_ns: p.timestamp_ns,
                msg_id: Bytes::copy_from_slice(p.msg_id),
                subject: Bytes::copy_from_slice(p.subject),
                headers: Bytes::copy_from_slice(p.headers),
                payload: Bytes::copy_from_slice(p.payload),
                expected_last_seq: p.expected_last_seq,
            }),
            EntryRef::Delete { seq } => StreamEntry::Delete { seq },
            EntryRef::Purge(purge) => StreamEntry::Purge(purge),
            EntryRef::Expire { now_wall_ns } => StreamEntry::Expire { now_wall_ns },
            EntryRef::ConsumerCreate { now_wall_ns, config } => {
                StreamEntry::ConsumerCreate { now_wall_ns, config: Bytes::copy_from_slice(config) }
            }
            EntryRef::ConsumerDelete { name } => StreamEntry::ConsumerDelete { name: Bytes::copy_from_slice(name) },
            EntryRef::ConsumerNext { now_wall_ns, name, batch, max_bytes } => {
                StreamEntry::ConsumerNext { now_wall_ns, name: Bytes::copy_from_slice(name), batch, max_bytes }
            }
            EntryRef::ConsumerAck { now_wall_ns, name, seq, kind } => {
                StreamEntry::ConsumerAck { now_wall_ns, name: Bytes::copy_from_slice(name), seq, kind }
            }
            EntryRef::Restore { now_wall_ns, chunk } => {
                StreamEntry::Restore { now_wall_ns, chunk: Bytes::copy_from_slice(chunk) }
            }
            EntryRef::ConsumerRestore { consumer } => {
                StreamEntry::ConsumerRestore { consumer: Bytes::copy_from_slice(consumer) }
            }
        }
    }

    /// Appends the encoding to `out`. On error nothing is appended.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FormatError> {
        match *self {
            EntryRef::Publish(p) => {
                check_publish_lengths(
                    p.msg_id.len() as u64,
                    p.subject.len() as u64,
                    p.headers.len() as u64,
                    p.payload.len() as u64,
                )?;
                if let Some(seq) = p.expected_last_seq {
                    // 0 is allowed: "the stream must be empty".
                    if seq > crate::format::block::SEQ_MAX {
                        return Err(FormatError::BadField { field: "entry expected_last_seq", value: seq });
                    }
                }
                let flags = if p.expected_last_seq.is_some() { FLAG_EXPECTED_LAST_SEQ } else { 0 };
                out.reserve(PUBLISH_FIXED_BYTES + p.msg_id.len() + p.subject.len() + p.headers.len() + p.payload.len());
                out.extend_from_slice(&[ENTRY_VERSION, KIND_PUBLISH, flags, 0]);
                out.extend_from_slice(&p.timestamp_ns.to_le_bytes());
                out.extend_from_slice(&p.expected_last_seq.unwrap_or(0).to_le_bytes());
                // Lengths checked above: each fits its field.
                out.extend_from_slice(&(p.msg_id.len() as u16).to_le_bytes());
                out.extend_from_slice(&(p.subject.len() as u16).to_le_bytes());
                out.extend_from_slice(&(p.headers.len() as u32).to_le_bytes());
                out.extend_from_slice(&(p.payload.len() as u32).to_le_bytes());
                out.extend_from_slice(p.msg_id);
                out.extend_from_slice(p.subject);
                out.extend_from_slice(p.headers);
                out.extend_from_slice(p.payload);
            }
            EntryRef::Delete { seq } => {
                check_seq("entry delete seq", seq)?;
                out.extend_from_slice(&[ENTRY_VERSION, KIND_DELETE, 0, 0]);
                out.extend_from_slice(&seq.to_le_bytes());
            }
            EntryRef::Purge(purge) => {
                let (flags, seq) = match purge {
                    Purge::All => (0, 0),
                    Purge::Before { seq } => (FLAG_PURGE_BEFORE, check_seq("entry purge seq", seq)?),
                };
                out.extend_from_slice(&[ENTRY_VERSION, KIND_PURGE, flags, 0]);
                out.extend_from_slice(&seq.to_le_bytes());
            }
            EntryRef::Expire { now_wall_ns } => {
                out.extend_from_slice(&[ENTRY_VERSION, KIND_EXPIRE, 0, 0]);
                out.extend_from_slice(&now_wall_ns.to_le_bytes());
            }
            EntryRef::ConsumerCreate { now_wall_ns, config } => {
                if config.len() > CONSUMER_CONFIG_BYTES_MAX {
                    return Err(FormatError::LengthTooLarge {
                        declared_bytes: config.len() as u64,
                        max_bytes: CONSUMER_CONFIG_BYTES_MAX as u64,
                    });
                }
                out.extend_from_slice(&[ENTRY_VERSION, KIND_CONSUMER_CREATE, 0, 0]);
                out.extend_from_slice(&now_wall_ns.to_le_bytes());
                out.extend_from_slice(&(config.len() as u32).to_le_bytes());
                out.extend_from_slice(config);
            }
            EntryRef::ConsumerDelete { name } => {
                check_name_length(name.len())?;
                out.extend_from_slice(&[ENTRY_VERSION, KIND_CONSUMER_DELETE, 0, 0]);
                put_name(out, name);
            }
            EntryRef::ConsumerNext { now_wall_ns, name, batch, max_bytes } => {
                check_name_length(name.len())?;
                out.extend_from_slice(&[ENTRY_VERSION, KIND_CONSUMER_NEXT, 0, 0]);
                out.extend_from_slice(&now_wall_ns.to_le_bytes());
                out.extend_from_slice(&batch.to_le_bytes());
                out.extend_from_slice(&max_bytes.to_le_bytes());
                put_name(out, name);
            }
            EntryRef::ConsumerAck { now_wall_ns, name, seq, kind } => {
                check_name_length(name.len())?;
                check_seq("entry ack seq", seq)?;
                let (flag, delay_ns) = match kind {
                    AckKind::Ack => (ACK_ACK, 0),
                    AckKind::Nak { delay_ns } => (ACK_NAK, delay_ns),
                    AckKind::Progress => (ACK_PROGRESS, 0),
                    AckKind::Term => (ACK_TERM, 0),
                };
                out.extend_from_slice(&[ENTRY_VERSION, KIND_CONSUMER_ACK, flag, 0]);
                out.extend_from_slice(&now_wall_ns.to_le_bytes());
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&delay_ns.to_le_bytes());
                put_name(out, name);
            }
            EntryRef::Restore { now_wall_ns, chunk } => {
                check_blob_length(chunk.len(), RESTORE_CHUNK_BYTES_MAX)?;
                out.extend_from_slice(&[ENTRY_VERSION, KIND_RESTORE, 0, 0]);
                out.extend_from_slice(&now_wall_ns.to_le_bytes());
                out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
                out.extend_from_slice(chunk);
            }
            EntryRef::ConsumerRestore { consumer } => {
                check_blob_length(consumer.len(), CONSUMER_EXPORT_BYTES_MAX)?;
                out.extend_from_slice(&[ENTRY_VERSION, KIND_CONSUMER_RESTORE, 0, 0]);
                out.extend_from_slice(&(consumer.len() as u32).to_le_bytes());
                out.extend_from_slice(consumer);
            }
        }
        Ok(())
    }

    /// Decodes one whole entry, borrowing from `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<EntryRef<'a>, FormatError> {
        if bytes.len() > ENTRY_BYTES_MAX {
            return Err(FormatError::LengthTooLarge {
                declared_bytes: bytes.len() as u64,
                max_bytes: ENTRY_BYTES_MAX as u64,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != ENTRY_VERSION {
            return Err(FormatError::UnsupportedVersion { version: u16::from(version) });
        }
        let kind = r.u8()?;
        let flags = r.u8()?;
        r.reserved(1, "entry reserved")?;
        let allowed_flags = match kind {
            KIND_PUBLISH => FLAG_EXPECTED_LAST_SEQ,
            KIND_PURGE => FLAG_PURGE_BEFORE,
            KIND_DELETE
            | KIND_EXPIRE
            | KIND_CONSUMER_CREATE
            | KIND_CONSUMER_DELETE
            | KIND_CONSUMER_NEXT
            | KIND_RESTORE
            | KIND_CONSUMER_RESTORE => 0,
            KIND_CONSUMER_ACK => 0xff, // the ack kind, checked below
            _ => return Err(FormatError::BadField { field: "entry kind", value: u64::from(kind) }),
        };
        if flags & !allowed_flags != 0 {
            return Err(FormatError::BadField { field: "entry flags", value: u64::from(flags) });
        }
        let entry = match kind {
            KIND_PUBLISH => {
                let timestamp_ns = r.i64()?;
                let expected = r.u64()?;
                let expected_last_seq = if flags & FLAG_EXPECTED_LAST_SEQ != 0 {
                    if expected > crate::format::block::SEQ_MAX {
                        return Err(FormatError::BadField { field: "entry expected_last_seq", value: expected });
                    }
                    Some(expected)
                } else if expected != 0 {
                    return Err(FormatError::BadField { field: "entry expected_last_seq", value: expected });
                } else {
                    None
                };
                let msg_id_len = r.u16()?;
                let subject_len = r.u16()?;
                let headers_len = r.u32()?;
                let payload_len = r.u32()?;
                check_publish_lengths(
                    u64::from(msg_id_len),
                    u64::from(subject_len),
                    u64::from(headers_len),
                    u64::from(payload_len),
                )?;
                EntryRef::Publish(PublishRef {
                    timestamp_ns,
                    expected_last_seq,
                    msg_id: r.take(usize::from(msg_id_len))?,
                    subject: r.take(usize::from(subject_len))?,
                    headers: r.take(headers_len as usize)?,
                    payload: r.take(payload_len as usize)?,
                })
            }
            KIND_DELETE => EntryRef::Delete { seq: check_seq("entry delete seq", r.u64()?)? },
            KIND_PURGE => {
                let seq = r.u64()?;
                if flags & FLAG_PURGE_BEFORE != 0 {
                    EntryRef::Purge(Purge::Before { seq: check_seq("entry purge seq", seq)? })
                } else if seq != 0 {
                    return Err(FormatError::BadField { field: "entry purge seq", value: seq });
                } else {
                    EntryRef::Purge(Purge::All)
                }
            }
            KIND_EXPIRE => EntryRef::Expire { now_wall_ns: r.i64()? },
            KIND_CONSUMER_CREATE => {
                let now_wall_ns = r.i64()?;
                let len = r.u32()? as usize;
                if len > CONSUMER_CONFIG_BYTES_MAX {
                    return Err(FormatError::LengthTooLarge {
                        declared_bytes: len as u64,
                        max_bytes: CONSUMER_CONFIG_BYTES_MAX as u64,
                    });
                }
                EntryRef::ConsumerCreate { now_wall_ns, config: r.take(len)? }
            }
            KIND_CONSUMER_DELETE => EntryRef::ConsumerDelete { name: take_name(&mut r)? },
            KIND_CONSUMER_NEXT => {
                let now_wall_ns = r.i64()?;
                let batch = r.u32()?;
                let max_bytes = r.u32()?;
                EntryRef::ConsumerNext { now_wall_ns, batch, max_bytes, name: take_name(&mut r)? }
            }
            KIND_CONSUMER_ACK => {
                let now_wall_ns = r.i64()?;
                let seq = check_seq("entry ack seq", r.u64()?)?;
                let delay_ns = r.i64()?;
                let kind = match (flags, delay_ns) {
                    (ACK_ACK, 0) => AckKind::Ack,
                    (ACK_NAK, delay_ns) => AckKind::Nak { delay_ns },
                    (ACK_PROGRESS, 0) => AckKind::Progress,
                    (ACK_TERM, 0) => AckKind::Term,
                    (ACK_ACK | ACK_PROGRESS | ACK_TERM, _) => {
                        return Err(FormatError::BadField { field: "entry ack delay", value: delay_ns as u64 })
                    }
                    _ => return Err(FormatError::BadField { field: "entry ack kind", value: u64::from(flags) }),
                };
                EntryRef::ConsumerAck { now_wall_ns, seq, kind, name: take_name(&mut r)? }
            }
            KIND_RESTORE => {
                let now_wall_ns = r.i64()?;
                let len = r.u32()? as usize;
                check_blob_length(len, RESTORE_CHUNK_BYTES_MAX)?;
                EntryRef::Restore { now_wall_ns, chunk: r.take(len)? }
            }
            KIND_CONSUMER_RESTORE => {
                let len = r.u32()? as usize;
                check_blob_length(len, CONSUMER_EXPORT_BYTES_MAX)?;
                EntryRef::ConsumerRestore { consumer: r.take(len)? }
            }
            _ => unreachable!("kinds checked above"),
        };
        r.finish()?;
        Ok(entry)
    }
}

fn check_blob_length(len: usize, max: usize) -> Result<(), FormatError> {
    if len == 0 {
        return Err(FormatError::LengthTooSmall { declared_bytes: 0, min_bytes: 1 });
    }
    if len > max {
        return Err(FormatError::LengthTooLarge { declared_bytes: len as u64, max_bytes: max as u64 });
    }
    Ok(())
}

fn check_name_length(len: usize) -> Result<(), FormatError> {
    if len == 0 {
        return Err(FormatError::LengthTooSmall { declared_bytes: 0, min_bytes: 1 });
    }
    if len > STREAM_NAME_BYTES_MAX {
        return Err(FormatError::LengthTooLarge {
            declared_bytes: len as u64,
            max_bytes: STREAM_NAME_BYTES_MAX as u64,
        });
    }
    Ok(())
}

/// A consumer name: `len u16` and its bytes.
fn put_name(out: &mut Vec<u8>, name: &[u8]) {
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
}

fn take_name<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], FormatError> {
    let len = usize::from(r.u16()?);
    check_name_length(len)?;
    r.take(len)
}

fn check_publish_lengths(msg_id: u64, subject: u64, headers: u64, payload: u64) -> Result<(), FormatError> {
    if msg_id > MSG_ID_BYTES_MAX as u64 {
        return Err(FormatError::LengthTooLarge { declared_bytes: msg_id, max_bytes: MSG_ID_BYTES_MAX as u64 });
    }
    check_message_lengths(subject, headers, payload)
}

/// The store's bounds on a message, checked before anything is allocated (also used by
/// catch-up chunks, which carry stored messages).
pub(super) fn check_message_lengths(subject: u64, headers: u64, payload: u64) -> Result<(), FormatError> {
    if subject == 0 {
        return Err(FormatError::LengthTooSmall { declared_bytes: 0, min_bytes: 1 });
    }
    if subject > SUBJECT_BYTES_MAX as u64 {
        return Err(FormatError::LengthTooLarge { declared_bytes: subject, max_bytes: SUBJECT_BYTES_MAX as u64 });
    }
    if headers + payload > u64::from(MSG_SIZE_BYTES_LIMIT) {
        return Err(FormatError::LengthTooLarge {
            declared_bytes: headers + payload,
            max_bytes: u64::from(MSG_SIZE_BYTES_LIMIT),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::hex;
    use proptest::prelude::*;

    fn publish() -> StreamEntry {
        StreamEntry::Publish(Publish {
            timestamp_ns: 1_700_000_000_000_000_000,
            msg_id: Bytes::from_static(b"id-1"),
            subject: Bytes::from_static(b"orders.eu"),
            headers: Bytes::from_static(b"h"),
            payload: Bytes::from_static(b"hello"),
            expected_last_seq: Some(41),
        })
    }

    /// Golden bytes, also shown in docs/streams.md.
    #[rustfmt::skip] // golden bytes laid out by field
    #[test]
    fn golden_entries() {
        let cases = [
            (
                publish(),
                concat!(
                    "01010100", "00002a36fe9c9717", "2900000000000000",
                    "0400", "0900", "01000000", "05000000",
                    "69642d31", "6f72646572732e6575", "68", "68656c6c6f"
                ),
            ),
            (StreamEntry::Delete { seq: 7 }, "010200000700000000000000"),
            (StreamEntry::Purge(Purge::All), "010300000000000000000000"),
            (StreamEntry::Purge(Purge::Before { seq: 9 }), "010301000900000000000000"),
            (StreamEntry::Expire { now_wall_ns: -2 }, "01040000feffffffffffffff"),
            (
                StreamEntry::ConsumerCreate { now_wall_ns: 1, config: Bytes::from_static(b"{}") },
                concat!("01050000", "0100000000000000", "02000000", "7b7d"),
            ),
            (StreamEntry::ConsumerDelete { name: Bytes::from_static(b"c") }, concat!("01060000", "0100", "63")),
            (
                StreamEntry::ConsumerNext { now_wall_ns: 2, name: Bytes::from_static(b"c"), batch: 3, max_bytes: 4 },
                concat!("01070000", "0200000000000000", "03000000", "04000000", "0100", "63"),
            ),
            (
                StreamEntry::ConsumerAck {
                    now_wall_ns: 5,
                    name: Bytes::from_static(b"c"),
                    seq: 6,
                    kind: AckKind::Nak { delay_ns: 7 },
                },
                concat!("01080200", "0500000000000000", "0600000000000000", "0700000000000000", "0100", "63"),
            ),
            (
                StreamEntry::Restore { now_wall_ns: 8, chunk: Bytes::from_static(b"ck") },
                concat!("01090000", "0800000000000000", "02000000", "636b"),
            ),
            (StreamEntry::ConsumerRestore { consumer: Bytes::from_static(b"c") }, concat!("010a0000", "01000000", "63")),
        ];
        for (entry, golden) in cases {
            let bytes = entry.encode().unwrap();
            assert_eq!(hex(&bytes), golden, "{entry:?}");
            assert_eq!(StreamEntry::decode(&bytes), Ok(entry));
        }
    }

    #[test]
    fn publish_without_id_or_expectation() {
        let entry = StreamEntry::Publish(Publish {
            timestamp_ns: 0,
            msg_id: Bytes::new(),
            subject: Bytes::from_static(b"a"),
            headers: Bytes::new(),
            payload: Bytes::new(),
            expected_last_seq: None,
        });
        let bytes = entry.encode().unwrap();
        assert_eq!(bytes.len(), PUBLISH_FIXED_BYTES + 1);
        assert_eq!(StreamEntry::decode(&bytes), Ok(entry));
    }

    #[test]
    fn bounds_are_enforced_on_encode_and_decode() {
        let mut long_id = publish();
        if let StreamEntry::Publish(p) = &mut long_id {
            p.msg_id = Bytes::from(vec![b'x'; MSG_ID_BYTES_MAX + 1]);
        }
        assert!(matches!(long_id.encode(), Err(FormatError::LengthTooLarge { .. })));

        let mut empty_subject = publish();
        if let StreamEntry::Publish(p) = &mut empty_subject {
            p.subject = Bytes::new();
        }
        assert!(matches!(empty_subject.encode(), Err(FormatError::LengthTooSmall { .. })));
        assert!(StreamEntry::Delete { seq: 0 }.encode().is_err());

        let good = publish().encode().unwrap();
        // A declared payload length far beyond the bytes present.
        let mut hostile = good.clone();
        hostile[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(StreamEntry::decode(&hostile), Err(FormatError::LengthTooLarge { .. })));
        hostile[28..32].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(StreamEntry::decode(&hostile), Err(FormatError::Truncated { .. })));
        // Trailing bytes.
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(StreamEntry::decode(&trailing), Err(FormatError::LengthMismatch { .. })));
        // Unknown version, kind, flags.
        let mut bad = good.clone();
        bad[0] = 2;
        assert_eq!(StreamEntry::decode(&bad), Err(FormatError::UnsupportedVersion { version: 2 }));
        let mut bad = good.clone();
        bad[1] = 11;
        assert_eq!(StreamEntry::decode(&bad), Err(FormatError::BadField { field: "entry kind", value: 11 }));
        // Restore entries: an empty or oversized body is refused on both sides.
        assert!(StreamEntry::Restore { now_wall_ns: 0, chunk: Bytes::new() }.encode().is_err());
        let huge = Bytes::from(vec![0; RESTORE_CHUNK_BYTES_MAX + 1]);
        assert!(matches!(
            StreamEntry::Restore { now_wall_ns: 0, chunk: huge }.encode(),
            Err(FormatError::LengthTooLarge { .. })
        ));
        let mut hostile = StreamEntry::ConsumerRestore { consumer: Bytes::from_static(b"c") }.encode().unwrap();
        hostile[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(StreamEntry::decode(&hostile), Err(FormatError::LengthTooLarge { .. })));
        let mut bad = good;
        bad[2] = 3;
        assert_eq!(StreamEntry::decode(&bad), Err(FormatError::BadField { field: "entry flags", value: 3 }));
        assert!(StreamEntry::decode(&[]).is_err());
    }

    fn any_entry() -> impl Strategy<Value = StreamEntry> {
        let bytes = |max: usize| proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from);
        let publish = (
            any::<i64>(),
            bytes(MSG_ID_BYTES_MAX + 1),
            proptest::collection::vec(any::<u8>(), 1..64).prop_map(Bytes::from),
            bytes(64),
            bytes(256),
            proptest::option::of(0..=crate::format::block::SEQ_MAX),
        )
            .prop_map(|(timestamp_ns, msg_id, subject, headers, payload, expected_last_seq)| {
                StreamEntry::Publish(Publish { timestamp_ns, msg_id, subject, headers, payload, expected_last_seq })
            });
        let seq = 1..=crate::format::block::SEQ_MAX;
        let name = proptest::collection::vec(any::<u8>(), 1..=STREAM_NAME_BYTES_MAX).prop_map(Bytes::from);
        let ack_kind = prop_oneof![
            Just(AckKind::Ack),
            any::<i64>().prop_map(|delay_ns| AckKind::Nak { delay_ns }),
            Just(AckKind::Progress),
            Just(AckKind::Term),
        ];
        let consumer = prop_oneof![
            (any::<i64>(), bytes(512))
                .prop_map(|(now_wall_ns, config)| StreamEntry::ConsumerCreate { now_wall_ns, config }),
            name.clone().prop_map(|name| StreamEntry::ConsumerDelete { name }),
            (any::<i64>(), name.clone(), any::<u32>(), any::<u32>()).prop_map(
                |(now_wall_ns, name, batch, max_bytes)| {
                    StreamEntry::ConsumerNext { now_wall_ns, name, batch, max_bytes }
                }
            ),
            (any::<i64>(), name, seq.clone(), ack_kind)
                .prop_map(|(now_wall_ns, name, seq, kind)| StreamEntry::ConsumerAck { now_wall_ns, name, seq, kind }),
        ];
        let blob = proptest::collection::vec(any::<u8>(), 1..512).prop_map(Bytes::from);
        let restore = prop_oneof![
            (any::<i64>(), blob.clone()).prop_map(|(now_wall_ns, chunk)| StreamEntry::Restore { now_wall_ns, chunk }),
            blob.prop_map(|consumer| StreamEntry::ConsumerRestore { consumer }),
        ];
        prop_oneof![
            consumer,
            restore,
            publish,
            seq.clone().prop_map(|seq| StreamEntry::Delete { seq }),
            Just(StreamEntry::Purge(Purge::All)),
            seq.prop_map(|seq| StreamEntry::Purge(Purge::Before { seq })),
            any::<i64>().prop_map(|now_wall_ns| StreamEntry::Expire { now_wall_ns }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = StreamEntry::decode(&bytes);
        }

        #[test]
        fn round_trip(entry in any_entry()) {
            let bytes = entry.encode().unwrap();
            prop_assert_eq!(StreamEntry::decode(&bytes), Ok(entry));
        }

        #[test]
        fn mutated_entries_never_panic(entry in any_entry(), at in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = entry.encode().unwrap();
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = StreamEntry::decode(&bytes);
            let _ = StreamEntry::decode(&bytes[..at]);
        }
    }
}
