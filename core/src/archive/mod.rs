//! Stream backup archives: the format, a streaming writer and a defensive reader.
//!
//! An archive is an S2 frame stream (crate `minlz`, with its own per-chunk CRCs) around a
//! ustar tar stream (crate `tar`) whose members come in a fixed order:
//!
//! 1. `manifest.json`: format name and version, the stream's config and its state when the
//!    backup started (first and last sequence, message count and bytes);
//! 2. `consumers/<n>.bin`, n = 0, 1, ... (at most `CONSUMERS_MAX`): each one consumer with
//!    its state, as `Consumers::export` encodes it;
//! 3. `messages/<n>.rec`, n = 0, 1, ...: records of stored messages in increasing sequence
//!    order, at most `CHUNK_BYTES_MAX` per member, so neither side ever holds more than one
//!    chunk of the stream in memory (tar needs a member's size before its content);
//! 4. `end.json`: the message count, the last sequence, and a CRC-32C over the bytes of
//!    every member before it, in order. Its absence means the archive was cut.
//!
//! Record (little-endian): `seq u64`, `timestamp_ns i64`, `subject_len u16`,
//! `headers_len u32`, `payload_len u32`, then subject, headers, payload. See docs/archive.md.
//!
//! The reader trusts nothing: every length is checked against a hard bound and against the
//! bytes that remain before anything is allocated, tar extensions (long names, PAX) and any
//! member type but a regular file are refused, sequences must increase and stay within the
//! manifest's range, and every error names the member and the offset in it.

mod chunker;
pub mod hostile;
mod read;
mod write;

#[cfg(test)]
mod tests;

pub use chunker::{restore_writes, RestoreChunker, RestoreWrite};
pub use read::{ArchiveItem, ArchiveReader};
pub use write::ArchiveWriter;

use crate::format::block::SEQ_MAX;
use crate::store::{StreamState, SUBJECT_BYTES_MAX};
use crate::stream::StreamConfig;
use std::fmt;

pub const FORMAT_NAME: &str = "sluice-stream-archive";
pub const FORMAT_VERSION: u32 = 1;

pub const MANIFEST_MEMBER: &str = "manifest.json";
pub const END_MEMBER: &str = "end.json";
pub const CHUNK_PREFIX: &str = "messages/";
pub const CHUNK_SUFFIX: &str = ".rec";
pub const CONSUMER_PREFIX: &str = "consumers/";
pub const CONSUMER_SUFFIX: &str = ".bin";
/// Largest consumer member: one consumer at its longest config and fullest pending map.
pub const CONSUMER_MEMBER_BYTES_MAX: usize = crate::stream::consumer::CONSUMER_EXPORT_BYTES_MAX;

/// A chunk member is cut once it reaches this size; one record may take it beyond, up to
/// `CHUNK_BYTES_MAX`.
pub const CHUNK_TARGET_BYTES: usize = 4 * 1024 * 1024;
/// Largest chunk member a reader accepts: the target plus one largest record.
pub const CHUNK_BYTES_MAX: usize = CHUNK_TARGET_BYTES + RECORD_BYTES_MAX;
/// Largest manifest or end member.
pub const JSON_MEMBER_BYTES_MAX: usize = 1024 * 1024;
/// `seq`, `timestamp_ns`, `subject_len`, `headers_len`, `payload_len`.
pub const RECORD_HEADER_BYTES: usize = 8 + 8 + 2 + 4 + 4;
/// Headers plus payload of one message: the store's own bound on a message.
pub const MESSAGE_BYTES_MAX: usize = crate::store::MSG_SIZE_BYTES_LIMIT as usize;
pub const RECORD_BYTES_MAX: usize = RECORD_HEADER_BYTES + SUBJECT_BYTES_MAX + MESSAGE_BYTES_MAX;

/// What `manifest.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub config: StreamConfig,
    pub state: ArchivedState,
    /// The replica count the stream had, a restore's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u8>,
}

/// The stream's counts when the backup started. Sequences between `first_seq` and
/// `last_seq` without a record are gaps and stay gaps on restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivedState {
    pub first_seq: u64,
    pub last_seq: u64,
    pub msgs: u64,
    pub bytes: u64,
}

impl ArchivedState {
    /// The counts describe a possible stream: sequences start at 1, an empty one has
    /// `first_seq == last_seq + 1`, and the messages fit the range.
    pub fn validate(&self) -> Result<(), String> {
        let s = self;
        if s.first_seq == 0 || s.last_seq.checked_add(1).is_none_or(|next| s.first_seq > next) {
            return Err(format!("inconsistent state {s:?}"));
        }
        if s.last_seq > SEQ_MAX {
            return Err(format!("last sequence {} beyond the sequence space ({SEQ_MAX})", s.last_seq));
        }
        if s.msgs > s.last_seq + 1 - s.first_seq {
            return Err(format!("{} messages cannot fit sequences {}..={}", s.msgs, s.first_seq, s.last_seq));
        }
        Ok(())
    }

    /// Message `seq` may follow message `prev` (0 before the first): sequences increase
    /// and stay within the range.
    pub fn check_next(&self, prev: u64, seq: u64) -> Result<(), String> {
        if seq <= prev || seq < self.first_seq || seq > self.last_seq {
            return Err(format!("sequence {seq} after {prev} or outside {}..={}", self.first_seq, self.last_seq));
        }
        Ok(())
    }
}

impl From<StreamState> for ArchivedState {
    fn from(s: StreamState) -> Self {
        ArchivedState { first_seq: s.first_seq, last_seq: s.last_seq, msgs: s.msgs, bytes: s.bytes }
    }
}

/// What `end.json` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndMarker {
    pub msgs: u64,
    pub last_seq: u64,
    pub crc32c: u32,
}

/// Why an archive could not be read or written. `member` and `offset` locate the fault
/// (the offset is within the member's content; for the S2 or tar layer, within that layer).
#[derive(Debug)]
pub enum ArchiveError {
    Io { context: String, source: std::io::Error },
    Invalid { member: String, offset: u64, reason: String },
}

impl ArchiveError {
    pub(crate) fn invalid(member: &str, offset: u64, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Invalid { member: member.to_owned(), offset, reason: reason.into() }
    }
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveError::Io { context, source } => write!(f, "archive: {context}: {source}"),
            ArchiveError::Invalid { member, offset, reason } => {
                write!(f, "archive member {member:?} at offset {offset}: {reason}")
            }
        }
    }
}

impl std::error::Error for ArchiveError {}

/// The name of chunk member `n`.
pub(crate) fn chunk_name(n: u64) -> String {
    format!("{CHUNK_PREFIX}{n:010}{CHUNK_SUFFIX}")
}

/// The name of consumer member `n`.
pub(crate) fn consumer_member_name(n: u64) -> String {
    format!("{CONSUMER_PREFIX}{n:010}{CONSUMER_SUFFIX}")
}
