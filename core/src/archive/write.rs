//! The streaming writer: one chunk of records in memory at a time.

use super::{
    chunk_name, consumer_member_name, ArchiveError, EndMarker, Manifest, CHUNK_TARGET_BYTES, CONSUMER_MEMBER_BYTES_MAX,
    END_MEMBER, MANIFEST_MEMBER, MESSAGE_BYTES_MAX, RECORD_HEADER_BYTES,
};
use crate::store::{StoredMessage, SUBJECT_BYTES_MAX};
use crate::stream::consumer::CONSUMERS_MAX;
use std::io::Write;

pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<minlz::Writer<W>>,
    state: super::ArchivedState,
    chunk: Vec<u8>,
    chunks_written: u64,
    consumers_written: u64,
    crc32c: u32,
    msgs: u64,
    last_seq: u64,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ArchiveError {
    let context = context.into();
    move |source| ArchiveError::Io { context, source }
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive of a stream with `manifest` (its format fields are set here).
    pub fn new(out: W, mut manifest: Manifest) -> Result<ArchiveWriter<W>, ArchiveError> {
        manifest.format = super::FORMAT_NAME.to_owned();
        manifest.version = super::FORMAT_VERSION;
        let state = manifest.state;
        state.validate().map_err(|reason| ArchiveError::invalid(MANIFEST_MEMBER, 0, reason))?;
        let json = serde_json::to_vec(&manifest).expect("a manifest serializes");
        let mut w = ArchiveWriter {
            tar: tar::Builder::new(minlz::Writer::new(out)),
            state,
            chunk: Vec::new(),
            chunks_written: 0,
            consumers_written: 0,
            crc32c: crc32c::crc32c(&json),
            msgs: 0,
            last_seq: 0,
        };
        w.member(MANIFEST_MEMBER, &json)?;
        Ok(w)
    }

    /// Appends a consumer (`Consumers::export` bytes). Consumers come before any message.
    pub fn push_consumer(&mut self, consumer: &[u8]) -> Result<(), ArchiveError> {
        let name = consumer_member_name(self.consumers_written);
        if self.msgs > 0 || self.chunks_written > 0 {
            return Err(ArchiveError::invalid(&name, 0, "consumers go before the messages"));
        }
        if self.consumers_written >= CONSUMERS_MAX as u64 || consumer.len() > CONSUMER_MEMBER_BYTES_MAX {
            return Err(ArchiveError::invalid(&name, 0, "beyond the archive's bounds on consumers"));
        }
        self.member(&name, consumer)?;
        self.crc32c = crc32c::crc32c_append(self.crc32c, consumer);
        self.consumers_written += 1;
        Ok(())
    }

    /// Appends a message. Sequences must increase and lie within the manifest's range.
    pub fn push(&mut self, m: &StoredMessage) -> Result<(), ArchiveError> {
        let at = self.chunk.len() as u64;
        let bad = |reason: String| Err(ArchiveError::invalid(&chunk_name(self.chunks_written), at, reason));
        if let Err(reason) = self.state.check_next(self.last_seq, m.seq) {
            return bad(reason);
        }
        if m.subject.is_empty()
            || m.subject.len() > SUBJECT_BYTES_MAX
            || m.headers.len() + m.payload.len() > MESSAGE_BYTES_MAX
        {
            return bad(format!("message {} exceeds the archive's bounds", m.seq));
        }
        let start = self.chunk.len();
        self.chunk.reserve(RECORD_HEADER_BYTES + m.subject.len() + m.headers.len() + m.payload.len());
        self.chunk.extend_from_slice(&m.seq.to_le_bytes());
        self.chunk.extend_from_slice(&m.timestamp_ns.to_le_bytes());
        self.chunk.extend_from_slice(&(m.subject.len() as u16).to_le_bytes());
        self.chunk.extend_from_slice(&(m.headers.len() as u32).to_le_bytes());
        self.chunk.extend_from_slice(&(m.payload.len() as u32).to_le_bytes());
        self.chunk.extend_from_slice(&m.subject);
        self.chunk.extend_from_slice(&m.headers);
        self.chunk.extend_from_slice(&m.payload);
        self.crc32c = crc32c::crc32c_append(self.crc32c, &self.chunk[start..]);
        self.msgs += 1;
        self.last_seq = m.seq;
        if self.chunk.len() >= CHUNK_TARGET_BYTES {
            self.flush_chunk()?;
        }
        Ok(())
    }

    /// Writes the last chunk and the end marker, and flushes the compressed stream.
    pub fn finish(mut self) -> Result<EndMarker, ArchiveError> {
        self.flush_chunk()?;
        let end = EndMarker { msgs: self.msgs, last_seq: self.state.last_seq, crc32c: self.crc32c };
        let json = serde_json::to_vec(&end).expect("an end marker serializes");
        self.member(END_MEMBER, &json)?;
        let mut s2 = self.tar.into_inner().map_err(io("finish the tar stream"))?;
        s2.flush().map_err(io("flush the compressed stream"))?;
        Ok(end)
    }

    fn flush_chunk(&mut self) -> Result<(), ArchiveError> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.chunk);
        self.member(&chunk_name(self.chunks_written), &chunk)?;
        self.chunks_written += 1;
        self.chunk = chunk;
        self.chunk.clear();
        Ok(())
    }

    /// One regular-file member with fixed metadata, so the same stream gives the same bytes.
    fn member(&mut self, name: &str, data: &[u8]) -> Result<(), ArchiveError> {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        self.tar.append_data(&mut header, name, data).map_err(io(format!("write member {name}")))
    }
}
