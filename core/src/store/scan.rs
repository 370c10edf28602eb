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

/// Reads the record at `at` afresh from the disk (not through the scan window) and decodes it:
/// `Ok(Ok(..))` with its length and bytes if it is valid this time, `Ok(Err(..))` with the
/// reason if it is still invalid.
fn reread_record<F: DiskFile>(
    file: &F,
    path: &Path,
    file_len: u64,
    at: u64,
) -> Result<Result<(usize, Vec<u8>), FormatError>, StoreError> {
    let read = |len: usize| -> Result<Vec<u8>, StoreError> {
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, at).map_err(|e| StoreError::disk(path, Some(at), e.with_path(path)))?;
        Ok(bytes)
    };
    let available = file_len - at;
    if available < RECORD_HEADER_BYTES as u64 {
        return Ok(Err(FormatError::Truncated {
            needed_bytes: RECORD_HEADER_BYTES as u64,
            available_bytes: available,
        }));
    }
    let head = match decode_record_head(&read(RECORD_HEADER_BYTES)?) {
        Ok(head) => head,
        Err(error) => return Ok(Err(error)),
    };
    // Bounded by RECORD_BYTES_MAX, checked by decode_record_head.
    let len = head.len_bytes as usize;
    if available < len as u64 {
        return Ok(Err(FormatError::Truncated { needed_bytes: len as u64, available_bytes: available }));
    }
    let bytes = read(len)?;
    Ok(decode_record(&bytes).map(|_| ()).map(|()| (len, bytes)))
}

/// Writes verified records back in place, batched into large contiguous writes (records are
/// back to back, so consecutive ones form one range).
struct Rewriter {
    from: Option<u64>,
    buf: Vec<u8>,
    at: u64,
}

impl Rewriter {
    fn push<F: DiskFile>(&mut self, file: &F, path: &Path, at: u64, bytes: &[u8]) -> Result<(), StoreError> {
        if self.from.is_none_or(|from| at < from) {
            return Ok(());
        }
        if self.buf.is_empty() {
            self.at = at;
        }
        debug_assert_eq!(self.at + self.buf.len() as u64, at, "records are contiguous");
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= SCAN_CHUNK_BYTES {
            self.flush(file, path)?;
        }
        Ok(())
    }

    fn flush<F: DiskFile>(&mut self, file: &F, path: &Path) -> Result<(), StoreError> {
        if !self.buf.is_empty() {
            file.write_at(&self.buf, self.at).map_err(|e| StoreError::disk(path, Some(self.at), e.with_path(path)))?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Scans records from `start` to the end of `file`, calling `visit(offset, record)` for each
/// valid record in order. Disk errors abort the scan with `Err`; invalid bytes end it with
/// `stop` set. With `rewrite_from`, every verified record at or past that offset is written
/// back in place, from the verified bytes (see `recovery`: past the durable mark, bytes that
/// read back fine may exist only in the page cache).
pub(crate) fn scan_records<F: DiskFile, R>(
    file: &F,
    path: &Path,
    start: u64,
    rewrite_from: Option<u64>,
    visit: impl FnMut(u64, &Record<'_>) -> ControlFlow<R>,
) -> Result<ScanOutcome<R>, StoreError> {
    let mut rewriter = Rewriter { from: rewrite_from, buf: Vec::new(), at: 0 };
    let outcome = scan_loop(file, path, start, &mut rewriter, visit)?;
    rewriter.flush(file, path)?;
    Ok(outcome)
}

fn scan_loop<F: DiskFile, R>(
    file: &F,
    path: &Path,
    start: u64,
    rewriter: &mut Rewriter,
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
        // The common path: the record verifies in the window, checksummed once.
        let mut verdict = None;
        if let Ok(head) = decode_record_head(window.slice(at, RECORD_HEADER_BYTES)) {
            let len = head.len_bytes as usize;
            debug_assert!(len <= RECORD_BYTES_MAX);
            if window.fill(file, path, file_len, at, len)? {
                if let Ok(record) = verify_record(window.slice(at, len), head) {
                    verdict = Some((len, visit(at, &record)));
                    if matches!(verdict, Some((_, ControlFlow::Continue(())))) {
                        rewriter.push(file, path, at, window.slice(at, len))?;
                    }
                }
            }
        }
        let (len, flow) = match verdict {
            Some(found) => found,
            // Any invalid record, not only a checksum mismatch, is read once more straight
            // from the disk before it counts: a flipped bit in a length field on the read
            // path must not make recovery throw away durable data.
            None => match reread_record(file, path, file_len, at)? {
                Ok((len, bytes)) => {
                    outcome.transient_mismatches += 1;
                    // The window holds the flipped copy; forget it so later reads of these
                    // bytes come from the disk again.
                    window.invalidate();
                    let (_, record) = decode_record(&bytes).expect("reread_record verified it");
                    let flow = visit(at, &record);
                    if flow.is_continue() {
                        rewriter.push(file, path, at, &bytes)?;
                    }
                    (len, flow)
                }
                Err(error) => {
                    outcome.stop = Some(ScanStop::Invalid { offset: at, error });
                    return Ok(outcome);
                }
            },
        };
        if let ControlFlow::Break(reason) = flow {
            outcome.stop = Some(ScanStop::Rejected { offset: at, reason });
            return Ok(outcome);
        }
        outcome.records += 1;
        at += len as u64;
        outcome.end_bytes = at;
    }
}
