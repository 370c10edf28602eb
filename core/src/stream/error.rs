//! Stream errors (local faults and invalid input) and deterministic refusals.
//!
//! Two different things: a [`RejectReason`] is part of the replicated outcome of an entry
//! (every replica refuses the same entry for the same reason, and the state moves on), while
//! a [`StreamError`] is local to one replica (its disk failed, or a peer sent it a bad
//! catch-up chunk) and never changes the replicated state.

use crate::format::FormatError;
use crate::store::{LimitKind, StoreError};
use std::fmt;

/// Why a committed entry was refused. Deterministic: it depends only on the entry's bytes and
/// the replicated state, so every replica gives the same answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The entry's bytes do not decode (every replica sees the same bytes).
    Malformed(FormatError),
    InvalidSubject {
        reason: &'static str,
    },
    /// The subject matches none of the stream's subjects.
    SubjectNotInStream,
    /// Headers plus payload above the stream's `max_msg_size_bytes`, or the stored record
    /// above `max_bytes`.
    MessageTooLarge {
        size_bytes: u64,
        max_bytes: u64,
    },
    /// `Discard::New` and the stream is full.
    LimitExceeded {
        limit: LimitKind,
    },
    WrongLastSeq {
        expected: u64,
        last_seq: u64,
    },
    /// A delete of a sequence that holds no message.
    NoSuchMessage {
        seq: u64,
    },
    /// The stream reached `SEQ_MAX`.
    SequenceSpaceExhausted,
    NoSuchConsumer {
        name: String,
    },
    /// A consumer create or update that is invalid or not allowed (too many consumers, a
    /// change to the start or the filter).
    ConsumerRefused {
        reason: String,
    },
    /// A restore entry that does not continue the stream (it must start right after the last
    /// sequence), or holds a message the stream cannot take (subject, size, limits).
    RestoreRefused {
        reason: String,
    },
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Malformed(e) => write!(f, "malformed entry: {e}"),
            RejectReason::InvalidSubject { reason } => write!(f, "invalid subject: {reason}"),
            RejectReason::SubjectNotInStream => write!(f, "subject does not match the stream's subjects"),
            RejectReason::MessageTooLarge { size_bytes, max_bytes } => {
                write!(f, "message of {size_bytes} bytes exceeds the maximum of {max_bytes}")
            }
            RejectReason::LimitExceeded { limit } => write!(f, "stream limit reached: {limit:?}"),
            RejectReason::WrongLastSeq { expected, last_seq } => {
                write!(f, "wrong last sequence: expected {expected}, stream is at {last_seq}")
            }
            RejectReason::NoSuchMessage { seq } => write!(f, "no message at sequence {seq}"),
            RejectReason::SequenceSpaceExhausted => write!(f, "sequence space exhausted"),
            RejectReason::NoSuchConsumer { name } => write!(f, "consumer {name:?} not found"),
            RejectReason::ConsumerRefused { reason } => write!(f, "consumer refused: {reason}"),
            RejectReason::RestoreRefused { reason } => write!(f, "restore refused: {reason}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    InvalidConfig {
        reason: String,
    },
    /// The store failed (disk error, corruption). The replica must stop applying and
    /// recover: reopen, restore the last snapshot, replay its log. Latched: see `Failed`.
    Store(StoreError),
    /// An earlier store error stopped this replica; it must be reopened.
    Failed {
        cause: Box<StreamError>,
    },
    /// A snapshot's contents are inconsistent (its dedupe ids, or its bounds).
    InvalidSnapshot {
        reason: String,
    },
    /// A catch-up request this replica cannot serve as asked.
    InvalidCatchupRequest {
        reason: String,
    },
    /// A catch-up chunk from a peer is not one this replica asked for, or breaks a bound.
    /// Nothing was written; ask again (perhaps from another peer).
    InvalidCatchupChunk {
        reason: String,
    },
    /// A catch-up chunk arrived while this replica is not catching up.
    NotCatchingUp,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::InvalidConfig { reason } => write!(f, "invalid stream config: {reason}"),
            StreamError::Store(e) => write!(f, "store: {e}"),
            StreamError::Failed { cause } => write!(f, "stream stopped after an earlier failure: {cause}"),
            StreamError::InvalidSnapshot { reason } => write!(f, "invalid stream snapshot: {reason}"),
            StreamError::InvalidCatchupRequest { reason } => write!(f, "invalid catch-up request: {reason}"),
            StreamError::InvalidCatchupChunk { reason } => write!(f, "invalid catch-up chunk: {reason}"),
            StreamError::NotCatchingUp => write!(f, "catch-up chunk received while not catching up"),
        }
    }
}

impl std::error::Error for StreamError {}

impl From<StoreError> for StreamError {
    fn from(e: StoreError) -> Self {
        StreamError::Store(e)
    }
}

impl StreamError {
    /// True if a fault injector produced the underlying disk error.
    pub fn is_injected(&self) -> bool {
        match self {
            StreamError::Store(e) => e.is_injected(),
            StreamError::Failed { cause } => cause.is_injected(),
            _ => false,
        }
    }
}
