//! The defensive reader. Each member is checked against its bound before it is read; no
//! more than one chunk member (at most `CHUNK_BYTES_MAX`) is in memory at a time.

use super::{
    chunk_name, consumer_member_name, ArchiveError, EndMarker, Manifest, CHUNK_BYTES_MAX, CONSUMER_MEMBER_BYTES_MAX,
    END_MEMBER, FORMAT_NAME, FORMAT_VERSION, JSON_MEMBER_BYTES_MAX, MANIFEST_MEMBER, MESSAGE_BYTES_MAX,
    RECORD_HEADER_BYTES,
};
use crate::bugs::{self, Bug};
use crate::store::{StoredMessage, SUBJECT_BYTES_MAX};
use crate::stream::consumer::Consumers;
use bytes::Bytes;
use std::io::Read;

/// What the reader hands out, in archive order: the manifest, each consumer, each message.
#[derive(Debug)]
pub enum ArchiveItem {
    Manifest(Manifest),
    /// One consumer with its state (`Consumers::export` bytes, already checked to decode).
    Consumer(Bytes),
    Message(StoredMessage),
}

/// Reads a whole archive from `input`, handing each item to `on_item` as it is read (a
/// restore writes it, and may refuse it with a reason). Returns the end marker once the
/// archive has been read to its end and every check passed.
pub struct ArchiveReader;

impl ArchiveReader {
    pub fn read<R: Read>(
        input: R,
        mut on_item: impl FnMut(ArchiveItem) -> Result<(), String>,
    ) -> Result<EndMarker, ArchiveError> {
        let mut archive = tar::Archive::new(minlz::Reader::new(input));
        let entries = archive.entries().map_err(|e| ArchiveError::invalid("(tar)", 0, e.to_string()))?;
        // Long names and PAX headers are not part of this format: see them raw, refuse them.
        let mut entries = entries.raw(true);
        let mut state = None;
        let mut crc = 0u32;
        let (mut msgs, mut last_seq) = (0u64, 0u64);
        let mut next_chunk = 0u64;
        // Decoding each consumer here checks its bytes, its name's uniqueness and the count.
        let mut consumers = Consumers::new();
        loop {
            let Some(entry) = entries.next() else {
                let member = if state.is_none() { MANIFEST_MEMBER } else { END_MEMBER };
                return Err(ArchiveError::invalid(member, 0, "missing: the archive was cut short"));
            };
            let entry = entry.map_err(|e| ArchiveError::invalid("(tar)", 0, e.to_string()))?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(ArchiveError::invalid(&name, 0, "not a regular file member"));
            }
            let size = entry.header().size().map_err(|e| ArchiveError::invalid(&name, 0, e.to_string()))?;
            let consumer_next = consumer_member_name(consumers.len() as u64);
            let expected = match state {
                None => vec![MANIFEST_MEMBER.to_owned()],
                // Consumers only before the first chunk of messages.
                Some(_) if next_chunk == 0 => vec![consumer_next.clone(), chunk_name(0), END_MEMBER.to_owned()],
                Some(_) => vec![chunk_name(next_chunk), END_MEMBER.to_owned()],
            };
            if !expected.contains(&name) {
                let expected = expected.join(" or ");
                return Err(ArchiveError::invalid(&name, 0, format!("unexpected member; expected {expected}")));
            }
            let bound = if name.ends_with(".json") {
                JSON_MEMBER_BYTES_MAX
            } else if name == consumer_next {
                CONSUMER_MEMBER_BYTES_MAX
            } else {
                CHUNK_BYTES_MAX
            };
            if size > bound as u64 {
                return Err(ArchiveError::invalid(&name, 0, format!("{size} bytes exceeds the bound of {bound}")));
            }
            let data = read_member(entry, size, &name)?;
            match state {
                None => {
                    let manifest = parse_manifest(&data)?;
                    crc = crc32c::crc32c(&data);
                    state = Some(manifest.state);
                    on_item(ArchiveItem::Manifest(manifest))
                        .map_err(|reason| ArchiveError::invalid(MANIFEST_MEMBER, 0, reason))?;
                }
                Some(s) if name == END_MEMBER => {
                    let end: EndMarker = serde_json::from_slice(&data)
                        .map_err(|e| ArchiveError::invalid(&name, e.column() as u64, e.to_string()))?;
                    if end.crc32c != crc || end.msgs != msgs || end.last_seq != s.last_seq {
                        return Err(ArchiveError::invalid(
                            &name,
                            0,
                            format!(
                                "says {} messages through {} with CRC {:08x}; read {msgs} with CRC {crc:08x} \
                                 (manifest last sequence {})",
                                end.msgs, end.last_seq, end.crc32c, s.last_seq
                            ),
                        ));
                    }
                    if let Some(extra) = entries.next() {
                        let what = match extra {
                            Ok(e) => String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                            Err(e) => e.to_string(),
                        };
                        return Err(ArchiveError::invalid(END_MEMBER, 0, format!("followed by {what}")));
                    }
                    return Ok(end);
                }
                Some(_) if name == consumer_next => {
                    crc = crc32c::crc32c_append(crc, &data);
                    consumers.import(&data).map_err(|reason| ArchiveError::invalid(&name, 0, reason))?;
                    on_item(ArchiveItem::Consumer(data)).map_err(|reason| ArchiveError::invalid(&name, 0, reason))?;
                }
                Some(s) => {
                    crc = crc32c::crc32c_append(crc, &data);
                    let mut at = 0usize;
                    while at < data.len() {
                        let m = parse_record(&data, at).map_err(|r| ArchiveError::invalid(&name, at as u64, r))?;
                        s.check_next(last_seq, m.seq).map_err(|r| ArchiveError::invalid(&name, at as u64, r))?;
                        let start = at as u64;
                        at += RECORD_HEADER_BYTES + m.subject.len() + m.headers.len() + m.payload.len();
                        last_seq = m.seq;
                        msgs += 1;
                        on_item(ArchiveItem::Message(m)).map_err(|r| ArchiveError::invalid(&name, start, r))?;
                    }
                    next_chunk += 1;
                }
            }
        }
    }
}

/// The member's content: exactly `size` bytes (a shorter stream is a cut archive).
fn read_member(entry: impl Read, size: u64, name: &str) -> Result<Bytes, ArchiveError> {
    let mut data = Vec::new();
    entry
        .take(size)
        .read_to_end(&mut data)
        .map_err(|e| ArchiveError::invalid(name, data.len() as u64, e.to_string()))?;
    if data.len() as u64 != size {
        return Err(ArchiveError::invalid(name, data.len() as u64, format!("cut short: {size} bytes declared")));
    }
    Ok(Bytes::from(data))
}

fn parse_manifest(data: &[u8]) -> Result<Manifest, ArchiveError> {
    // The format and version first, so an unknown version is named as such.
    #[derive(serde::Deserialize)]
    struct Head {
        format: String,
        version: u32,
    }
    let bad = |offset: u64, reason: String| ArchiveError::invalid(MANIFEST_MEMBER, offset, reason);
    let head: Head = serde_json::from_slice(data).map_err(|e| bad(e.column() as u64, e.to_string()))?;
    if head.format != FORMAT_NAME {
        return Err(bad(0, format!("not a sluice stream archive (format {:?})", head.format)));
    }
    if head.version != FORMAT_VERSION {
        return Err(bad(
            0,
            format!("unsupported archive version {} (this build reads {FORMAT_VERSION})", head.version),
        ));
    }
    let m: Manifest = serde_json::from_slice(data).map_err(|e| bad(e.column() as u64, e.to_string()))?;
    m.config.validate().map_err(|e| bad(0, format!("stream config: {e}")))?;
    m.state.validate().map_err(|reason| bad(0, reason))?;
    Ok(m)
}

/// The record at `at` of a chunk, its lengths checked against the bounds and the bytes left.
fn parse_record(chunk: &Bytes, at: usize) -> Result<StoredMessage, String> {
    let rest = &chunk[at..];
    if rest.len() < RECORD_HEADER_BYTES {
        return Err(format!("{} bytes left, a record header needs {RECORD_HEADER_BYTES}", rest.len()));
    }
    let u64_at = |o: usize| u64::from_le_bytes(rest[o..o + 8].try_into().expect("8 bytes"));
    let u32_at = |o: usize| u32::from_le_bytes(rest[o..o + 4].try_into().expect("4 bytes")) as usize;
    let seq = u64_at(0);
    let timestamp_ns = u64_at(8) as i64;
    let subject_len = usize::from(u16::from_le_bytes(rest[16..18].try_into().expect("2 bytes")));
    let headers_len = u32_at(18);
    let payload_len = u32_at(22);
    if subject_len == 0 || subject_len > SUBJECT_BYTES_MAX {
        return Err(format!("sequence {seq}: subject of {subject_len} bytes"));
    }
    if headers_len.saturating_add(payload_len) > MESSAGE_BYTES_MAX {
        return Err(format!("sequence {seq}: {headers_len} + {payload_len} bytes exceeds {MESSAGE_BYTES_MAX}"));
    }
    let body = subject_len + headers_len + payload_len;
    // Planted bug: the record's own lengths are trusted to fit its chunk.
    if rest.len() - RECORD_HEADER_BYTES < body && !bugs::active(Bug::RestoreTrustsArchiveLength) {
        return Err(format!("sequence {seq}: record of {body} bytes runs past the chunk's end"));
    }
    let s = at + RECORD_HEADER_BYTES;
    let (h, p) = (s + subject_len, s + subject_len + headers_len);
    Ok(StoredMessage {
        seq,
        timestamp_ns,
        subject: chunk.slice(s..h),
        headers: chunk.slice(h..p),
        payload: chunk.slice(p..p + payload_len),
    })
}
