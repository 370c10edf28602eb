//! Store errors: operating errors as values, each naming the file, offset and sequence
//! involved, so an operator can find the bytes.

use crate::disk::DiskError;
use crate::format::FormatError;
use std::fmt;
use std::path::PathBuf;

/// Which limit refused a message under `Discard::New`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    MaxMsgs,
    MaxBytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The disk failed an operation on `file`.
    Disk {
        file: PathBuf,
        offset: Option<u64>,
        source: DiskError,
    },
    /// Bytes on disk are not what the store wrote: a checksum, length or sequence check failed
    /// when reading `seq` at `offset` of `file`.
    Corrupt {
        file: PathBuf,
        offset: u64,
        seq: Option<u64>,
        reason: CorruptReason,
    },
    /// Headers plus payload exceed the stream's `max_msg_size_bytes` (or the record bound).
    MessageTooLarge {
        size_bytes: u64,
        max_bytes: u64,
    },
    InvalidSubject {
        reason: &'static str,
    },
    /// `Discard::New` and the message would break a limit.
    LimitExceeded {
        limit: LimitKind,
    },
    /// A write or sync failed earlier and what is durable is unknown; the store refuses
    /// writes until it is reopened (and recovered). Reads of synced messages still work;
    /// reads of messages written after the last successful sync may fail.
    Failed {
        cause: Box<StoreError>,
    },
    InvalidConfig {
        reason: String,
    },
    InvalidArgument {
        reason: String,
    },
}

/// Why bytes on disk were rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorruptReason {
    Format(FormatError),
    /// A record's sequence is not the one the index expects.
    WrongSequence {
        found: u64,
    },
    /// A record's kind is not the one the index expects.
    WrongKind,
    /// The block ends before a record the index expects.
    Missing,
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptReason::Format(e) => write!(f, "{e}"),
            CorruptReason::WrongSequence { found } => write!(f, "record holds sequence {found}"),
            CorruptReason::WrongKind => write!(f, "record is not a message"),
            CorruptReason::Missing => write!(f, "the block ends before the record"),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Disk { file, offset, source } => {
                write!(f, "disk error on {}", file.display())?;
                if let Some(offset) = offset {
                    write!(f, " at offset {offset}")?;
                }
                write!(f, ": {source}")
            }
            StoreError::Corrupt { file, offset, seq, reason } => {
                write!(f, "corrupt record in {} at offset {offset}", file.display())?;
                if let Some(seq) = seq {
                    write!(f, " (sequence {seq})")?;
                }
                write!(f, ": {reason}")
            }
            StoreError::MessageTooLarge { size_bytes, max_bytes } => {
                write!(f, "message of {size_bytes} bytes exceeds the maximum of {max_bytes}")
            }
            StoreError::InvalidSubject { reason } => write!(f, "invalid subject: {reason}"),
            StoreError::LimitExceeded { limit } => write!(f, "stream limit reached: {limit:?}"),
            StoreError::Failed { cause } => {
                write!(f, "store failed earlier and must be reopened: {cause}")
            }
            StoreError::InvalidConfig { reason } => write!(f, "invalid store config: {reason}"),
            StoreError::InvalidArgument { reason } => write!(f, "invalid argument: {reason}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    pub(crate) fn disk(file: impl Into<PathBuf>, offset: Option<u64>, source: DiskError) -> Self {
        StoreError::Disk { file: file.into(), offset, source }
    }

    /// True if a fault injector produced the underlying disk error.
    pub fn is_injected(&self) -> bool {
        match self {
            StoreError::Disk { source, .. } => source.injected,
            StoreError::Failed { cause } => cause.is_injected(),
            _ => false,
        }
    }
}
