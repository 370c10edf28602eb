//! Turns an archive's messages into restore chunks: `CatchupChunk`s that each start right
//! after the previous one ends (the first at sequence 1), cover the gaps between messages,
//! and fit one restore entry. The last chunk runs through the archive's last sequence, so
//! trailing gaps are kept too. `restore_writes` is a whole restore's writes, in order.

use super::{ArchiveItem, ArchiveReader};
use crate::store::StoredMessage;
use crate::stream::{CatchupChunk, CATCHUP_CHUNK_BYTES_MAX, CATCHUP_CHUNK_MSGS_MAX, RESTORE_CHUNK_BYTES_MAX};
use bytes::Bytes;
use std::io::Read;

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

/// One write of a restore.
#[derive(Debug)]
pub enum RestoreWrite {
    /// Messages and gaps, for a restore entry.
    Chunk(CatchupChunk),
    /// One consumer's export, for a consumer-restore entry.
    Consumer(Bytes),
}

/// Reads the archive `input` and hands `write` what restoring it takes, in the order a restore
/// makes it: the messages as chunks of about `chunk_bytes` (the last through the archive's
/// last sequence, so trailing gaps are kept), then the consumers. Consumers go last: one
/// restored before its messages would find its pending deliveries missing at its first pull
/// and drop them. They are held meanwhile: at most `CONSUMERS_MAX` exports of at most
/// `CONSUMER_EXPORT_BYTES_MAX` each (the reader checks both). Returns the archive's last
/// sequence. The command, the simulator and the tests restore through this.
pub fn restore_writes<R: Read>(
    input: R,
    chunk_bytes: usize,
    mut write: impl FnMut(RestoreWrite) -> Result<(), String>,
) -> Result<u64, String> {
    let mut chunker = RestoreChunker::new(chunk_bytes);
    let mut last_seq = 0;
    let mut consumers = Vec::new();
    ArchiveReader::read(input, |item| {
        match item {
            ArchiveItem::Manifest(m) => last_seq = m.state.last_seq,
            ArchiveItem::Consumer(c) => consumers.push(c),
            ArchiveItem::Message(m) => {
                if let Some(chunk) = chunker.push(m) {
                    write(RestoreWrite::Chunk(chunk))?;
                }
            }
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    if let Some(chunk) = chunker.finish(last_seq) {
        write(RestoreWrite::Chunk(chunk))?;
    }
    for c in consumers {
        write(RestoreWrite::Consumer(c))?;
    }
    Ok(last_seq)
}
