//! Sequential scan of the records in one block file, verifying each one.
//!
//! The scanner reads in bounded chunks, validates every length before it allocates, and
//! stops at the first record that does not decode or that the visitor rejects. It never
//! panics on file contents. A checksum mismatch is re-read once from the disk before it
//! counts, so a transient bit flip on the read path does not cost durable data.

use super::StoreError;
use crate::disk::DiskFile;
use crate::format::block::{
    decode_record, decode_record_head, verify_record, Record, RECORD_BYTES_MAX, RECORD_HEADER_BYTES,
};
use crate::format::FormatError;
use std::ops::ControlFlow;
use std::path::Path;

/// Bytes read per disk call while scanning (a record larger than this is read whole).
pub(crate) const SCAN_CHUNK_BYTES: usize = 1024 * 1024;

/// Why a scan stopped before the end of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ScanStop<R> {
    /// The bytes at `offset` are not a valid record.
    Invalid { offset: u64, error: FormatError },
    /// The record at `offset` is valid but the visitor refused it.
    Rejected { offset: u64, reason: R },
}

#[derive(Debug)]
pub(crate) struct ScanOutcome<R> {
    /// Offset just past the last accepted record.
    pub end_bytes: u64,
    pub stop: Option<ScanStop<R>>,
    pub records: u64,
    /// Checksum mismatches that a second read of the same bytes did not repeat.
    pub transient_mismatches: u32,
}

struct Window {
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
}

impl Window {
    /// Makes `[at, at + need)` available in the buffer, reading from the file as needed.
    /// Returns false if the file ends before `at + need`.
    fn fill<F: DiskFile>(
        &mut self,
        file: &F,
        path: &Path,
        file_len: u64,
        at: u64,
        need: usize,
    ) -> Result<bool, StoreError> {
        if at + need as u64 > file_len {
            return Ok(false);
        }
        let have_end = self.start + self.buf.len() as u64;
        if at >= self.start && at + need as u64 <= have_end {
            return Ok(true);
        }
        let want = need.max(SCAN_CHUNK_BYTES).min((file_len - at) as usize);
        // Resize without clearing first: zeroing a megabyte per refill showed in profiles,
        // and every byte is overwritten by the read below.
        self.buf.resize(want, 0);
        self.start = at;
        file.read_exact_at(&mut self.buf, at).map_err(|e| StoreError::disk(path, Some(at), e.with_path(path)))?;
        Ok(true)
    }

    /// Forgets the buffered bytes (rare: after a checksum mismatch a re-read fixed).
    fn invalidate(&mut self) {
        self.buf.clear();
    }

    fn slice(&self, at: u64, len: usize) -> &[u8] {
        let from = (at - self.start) as usize;
        &self.buf[from..from + len]
    }
}

/// Scans records from `start` to the end of `file`, calling `visit(offset, record)` for each
/// valid record in order. Disk errors abort the scan with `Err`; invalid bytes end it with
/// `stop` set.
pub(crate) fn scan_records<F: DiskFile, R>(
    file: &F,
    path: &Path,
    start: u64,
    mut visit: impl FnMut(u64, &Record<'_>) -> ControlFlow<R>,
) -> Result<ScanOutcome<R>, StoreError> {
    let file_len = file.len().map_err(|e| StoreError::disk(path, None, e))?;
    let mut window = Window { buf: Vec::new(), start };
    let mut outcome = ScanOutcome { end_bytes: start, stop: None, records: 0, transient_mismatches: 0 };
    let mut at = start;
    // Each pass accepts one record of at least RECORD_OVERHEAD_BYTES or returns, so the
    // loop runs at most file_len / 36 times.
    loop {
        if at == file_len {
            return Ok(outcome);
        }
        if !window.fill(file, path, file_len, at, RECORD_HEADER_BYTES)? {
            let error =
                FormatError::Truncated { needed_bytes: RECORD_HEADER_BYTES as u64, available_bytes: file_len - at };
            outcome.stop = Some(ScanStop::Invalid { offset: at, error });
            return Ok(outcome);
        }
        let head = match decode_record_head(window.slice(at, RECORD_HEADER_BYTES)) {
            Ok(head) => head,
            Err(error) => {
                outcome.stop = Some(ScanStop::Invalid { offset: at, error });
                return Ok(outcome);
            }
        };
        let len = head.len_bytes as usize;
        debug_assert!(len <= RECORD_BYTES_MAX);
        if !window.fill(file, path, file_len, at, len)? {
            let error = FormatError::Truncated { needed_bytes: len as u64, available_bytes: file_len - at };
            outcome.stop = Some(ScanStop::Invalid { offset: at, error });
            return Ok(outcome);
        }
        let verdict = match verify_record(window.slice(at, len), head) {
            Ok(record) => visit(at, &record),
            Err(FormatError::BadChecksum { .. }) => {
                let mut again = vec![0u8; len];
                file.read_exact_at(&mut again, at).map_err(|e| StoreError::disk(path, Some(at), e.with_path(path)))?;
                match decode_record(&again) {
                    Ok((_, record)) => {
                        outcome.transient_mismatches += 1;
                        // The window holds the flipped copy; forget it so later reads of these
                        // bytes come from the disk again.
                        window.invalidate();
                        visit(at, &record)
                    }
                    Err(error) => {
                        outcome.stop = Some(ScanStop::Invalid { offset: at, error });
                        return Ok(outcome);
                    }
                }
            }
            Err(error) => {
                outcome.stop = Some(ScanStop::Invalid { offset: at, error });
                return Ok(outcome);
            }
        };
        if let ControlFlow::Break(reason) = verdict {
            outcome.stop = Some(ScanStop::Rejected { offset: at, reason });
            return Ok(outcome);
        }
        outcome.records += 1;
        at += len as u64;
        outcome.end_bytes = at;
    }
}
