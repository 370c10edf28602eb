//! Turns an archive's messages into restore chunks: `CatchupChunk`s that each start right
//! after the previous one ends (the first at sequence 1), cover the gaps between messages,
//! and fit one restore entry. The last chunk runs through the archive's last sequence, so
//! trailing gaps are kept too.

use crate::store::StoredMessage;
use crate::stream::{CatchupChunk, CATCHUP_CHUNK_BYTES_MAX, CATCHUP_CHUNK_MSGS_MAX, RESTORE_CHUNK_BYTES_MAX};

/// Encoded bytes of a chunk besides its messages, and of a message besides its content
/// (`CatchupChunk::encode`).
const CHUNK_FIXED_BYTES: usize = 28;
const MSG_FIXED_BYTES: usize = 28;

pub struct RestoreChunker {
    next_from: u64,
    messages: Vec<StoredMessage>,
    encoded_bytes: usize,
    target_bytes: usize,
}

impl RestoreChunker {
    /// Chunks of about `target_bytes` encoded, clamped to what one restore entry and one
    /// catch-up chunk hold (a single larger message still goes, alone).
    pub fn new(target_bytes: usize) -> RestoreChunker {
        RestoreChunker {
            next_from: 1,
            messages: Vec::new(),
            encoded_bytes: CHUNK_FIXED_BYTES,
            target_bytes: target_bytes
                .clamp(CHUNK_FIXED_BYTES + 1, RESTORE_CHUNK_BYTES_MAX.min(CATCHUP_CHUNK_BYTES_MAX as usize)),
        }
    }

    /// Adds the next message (sequences strictly increasing, as the archive reader
    /// guarantees). Returns a chunk to write when this message does not fit the current one.
    pub fn push(&mut self, m: StoredMessage) -> Option<CatchupChunk> {
        assert!(m.seq >= self.next_from, "message {} before the chunk start {}", m.seq, self.next_from);
        assert!(self.messages.last().is_none_or(|last| last.seq < m.seq), "sequences must increase");
        let size = MSG_FIXED_BYTES + m.subject.len() + m.headers.len() + m.payload.len();
        let full = !self.messages.is_empty()
            && (self.encoded_bytes + size > self.target_bytes || self.messages.len() >= CATCHUP_CHUNK_MSGS_MAX);
        let out = if full { self.cut() } else { None };
        self.encoded_bytes += size;
        self.messages.push(m);
        out
    }

    /// The last chunk: what is left, through `last_seq` (the archive's last sequence).
    /// `None` if nothing is left and the stream already ends at `last_seq`.
    pub fn finish(mut self, last_seq: u64) -> Option<CatchupChunk> {
        let through_seq = self.messages.last().map_or(last_seq, |m| m.seq.max(last_seq));
        if self.messages.is_empty() && through_seq < self.next_from {
            return None;
        }
        let messages = std::mem::take(&mut self.messages);
        Some(CatchupChunk { from_seq: self.next_from, through_seq, messages })
    }

    /// The messages so far as a chunk ending at the last of them.
    fn cut(&mut self) -> Option<CatchupChunk> {
        let messages = std::mem::take(&mut self.messages);
        let through_seq = messages.last()?.seq;
        let chunk = CatchupChunk { from_seq: self.next_from, through_seq, messages };
        self.next_from = through_seq + 1;
        self.encoded_bytes = CHUNK_FIXED_BYTES;
        Some(chunk)
    }
}
