//! Errors of the Raft log storage, and the report of where recovery cut the log: operating
//! errors as values naming the file, offset and index involved.

use crate::disk::DiskError;
use crate::format::FormatError;
use crate::raft::types::{Index, Term};
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaftStorageError {
    /// The disk failed an operation on `file`.
    Disk {
        file: PathBuf,
        offset: Option<u64>,
        /// The entry being read or written, if one was.
        index: Option<Index>,
        /// Boxed to keep results small.
        source: Box<DiskError>,
    },
    /// Files that must be valid are not: both hard state copies. The node must not run,
    /// because it might vote twice in a term it already voted in.
    Corrupt {
        what: &'static str,
        files: Vec<(PathBuf, FormatError)>,
    },
    /// The snapshot's data exceeds `SNAPSHOT_DATA_BYTES_MAX`; nothing was written.
    SnapshotTooLarge {
        size_bytes: u64,
        max_bytes: u64,
    },
    InvalidConfig {
        reason: String,
    },
    /// A write or sync failed earlier and what is durable is unknown (a failed fsync may
    /// have dropped the data it was given); the storage refuses every call until reopened.
    Failed {
        cause: Box<RaftStorageError>,
    },
}

impl RaftStorageError {
    pub(crate) fn disk(file: impl Into<PathBuf>, offset: Option<u64>, source: DiskError) -> Self {
        RaftStorageError::Disk { file: file.into(), offset, index: None, source: Box::new(source) }
    }

    /// True if a fault injector produced the underlying disk error.
    pub fn is_injected(&self) -> bool {
        match self {
            RaftStorageError::Disk { source, .. } => source.injected,
            RaftStorageError::Failed { cause } => cause.is_injected(),
            _ => false,
        }
    }
}

impl fmt::Display for RaftStorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RaftStorageError::Disk { file, offset, index, source } => {
                write!(f, "disk error on {}", file.display())?;
                if let Some(offset) = offset {
                    write!(f, " at offset {offset}")?;
                }
                if let Some(index) = index {
                    write!(f, " (index {index})")?;
                }
                write!(f, ": {source}")
            }
            RaftStorageError::Corrupt { what, files } => {
                write!(f, "{what} is corrupt:")?;
                for (file, error) in files {
                    write!(f, " {}: {error};", file.display())?;
                }
                Ok(())
            }
            RaftStorageError::SnapshotTooLarge { size_bytes, max_bytes } => {
                write!(f, "snapshot of {size_bytes} bytes exceeds the maximum of {max_bytes}")
            }
            RaftStorageError::InvalidConfig { reason } => write!(f, "invalid log config: {reason}"),
            RaftStorageError::Failed { cause } => {
                write!(f, "raft storage failed earlier and must be reopened: {cause}")
            }
        }
    }
}

impl std::error::Error for RaftStorageError {}

/// Why recovery cut the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogCutReason {
    /// The bytes are not a valid record (torn, zeroed, flipped, truncated).
    BadRecord(FormatError),
    /// The segment's header is invalid.
    BadSegmentHeader(FormatError),
    /// The header names another first index than the file name does.
    SegmentNameMismatch { in_header: Index },
    /// A segment starts elsewhere than where the previous one ended: the previous segment
    /// lost its tail, or a segment is missing.
    SegmentStartMismatch { expected: Index, found: Index },
    /// A record does not carry the next index.
    IndexGap { found: Index },
    /// A record's term is below the previous record's (or the snapshot's) term.
    TermRegressed { previous: Term, found: Term },
    /// The log's first segment starts past `snapshot.last_index + 1` (or past 1 without a
    /// snapshot): the entries between are gone, so nothing after them can be used.
    LogStartsLate { first_index: Index },
    /// The entry at the snapshot's last index has another term than the snapshot says: the
    /// log is from another history (an interrupted snapshot install).
    SnapshotTermMismatch { index: Index, log_term: Term, snapshot_term: Term },
}

impl fmt::Display for LogCutReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogCutReason::BadRecord(e) => write!(f, "invalid record: {e}"),
            LogCutReason::BadSegmentHeader(e) => write!(f, "invalid segment header: {e}"),
            LogCutReason::SegmentNameMismatch { in_header } => write!(f, "header says first index {in_header}"),
            LogCutReason::SegmentStartMismatch { expected, found } => {
                write!(f, "segment starts at index {found}, expected {expected}")
            }
            LogCutReason::IndexGap { found } => write!(f, "record has index {found}"),
            LogCutReason::TermRegressed { previous, found } => {
                write!(f, "record has term {found}, below the previous term {previous}")
            }
            LogCutReason::LogStartsLate { first_index } => {
                write!(f, "log starts at index {first_index}, after the snapshot's next index")
            }
            LogCutReason::SnapshotTermMismatch { index, log_term, snapshot_term } => {
                write!(f, "entry {index} has term {log_term}, the snapshot says {snapshot_term}")
            }
        }
    }
}

/// Where recovery cut: every record from `offset` of `file` on, and every later segment,
/// was dropped (offset 0: the whole file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCut {
    pub file: PathBuf,
    pub offset: u64,
    /// The index the next entry should have carried.
    pub expected_index: Index,
    pub reason: LogCutReason,
}

impl fmt::Display for LogCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {} (expected index {}): {}",
            self.file.display(),
            self.offset,
            self.expected_index,
            self.reason
        )
    }
}
