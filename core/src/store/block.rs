//! One block file in memory: its handle, where its valid records end, and the index from
//! sequence to record offset for the messages it holds.
//!
//! Invariants: message sequences in a block increase; `runs` hold contiguous sequences (a
//! skip starts a new run); every indexed record lies inside `[BLOCK_HEADER_BYTES, end_bytes)`.
//! Only the store's last block is ever written; earlier blocks are sealed.

use super::StoreError;
use crate::disk::DiskFile;
use crate::format::block::BLOCK_HEADER_BYTES;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Where one message record lives in its block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub offset: u32,
    pub len: u32,
}

#[derive(Debug)]
struct Run {
    first_seq: u64,
    entries: Vec<Entry>,
}

/// Sequence -> record location for the messages of one block, as runs of contiguous
/// sequences (4 + 4 bytes per message).
#[derive(Debug, Default)]
pub(crate) struct MsgIndex {
    runs: Vec<Run>,
}

impl MsgIndex {
    /// Records that message `seq` is at `offset` with `len` bytes. Sequences must increase.
    pub fn push(&mut self, seq: u64, offset: u64, len: u32) {
        assert!(offset >= BLOCK_HEADER_BYTES as u64);
        let offset = u32::try_from(offset).expect("block offsets fit u32 (BLOCK_SIZE_BYTES_MAX)");
        let entry = Entry { offset, len };
        match self.runs.last_mut() {
            Some(run) if run.first_seq + run.entries.len() as u64 == seq => run.entries.push(entry),
            Some(run) => {
                assert!(seq > run.first_seq + run.entries.len() as u64, "message {seq} out of order");
                self.runs.push(Run { first_seq: seq, entries: vec![entry] });
            }
            None => self.runs.push(Run { first_seq: seq, entries: vec![entry] }),
        }
    }

    pub fn lookup(&self, seq: u64) -> Option<Entry> {
        let at = self.runs.partition_point(|run| run.first_seq <= seq).checked_sub(1)?;
        let run = &self.runs[at];
        run.entries.get(usize::try_from(seq - run.first_seq).ok()?).copied()
    }

    /// The indexed message with the largest sequence at or below `seq`.
    pub fn last_at_or_below(&self, seq: u64) -> Option<(u64, Entry)> {
        let at = self.runs.partition_point(|run| run.first_seq <= seq).checked_sub(1)?;
        let run = &self.runs[at];
        // Runs are never empty: `push` starts one with an entry, `truncate_after` keeps >= 1.
        let within = (seq - run.first_seq).min(run.entries.len() as u64 - 1);
        Some((run.first_seq + within, run.entries[within as usize]))
    }

    /// Forgets every message above `seq`.
    pub fn truncate_after(&mut self, seq: u64) {
        while let Some(run) = self.runs.last_mut() {
            if run.first_seq > seq {
                self.runs.pop();
                continue;
            }
            let keep = (seq - run.first_seq + 1).min(run.entries.len() as u64);
            run.entries.truncate(keep as usize);
            break;
        }
    }

    /// Indexed messages with `from <= seq < to`, in order.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, Entry)> + '_ {
        let start = self.runs.partition_point(|run| run.first_seq + (run.entries.len() as u64) <= from);
        self.runs[start..]
            .iter()
            .take_while(move |run| run.first_seq < to)
            .flat_map(|run| run.entries.iter().enumerate().map(|(i, e)| (run.first_seq + i as u64, *e)))
            .filter(move |&(seq, _)| seq >= from && seq < to)
    }
}

pub(crate) struct Block<F> {
    pub index: u32,
    pub path: PathBuf,
    /// Shared with a background sync (`SyncPlan`), which fsyncs while appends go on.
    pub file: Arc<SharedFile<F>>,
    /// From the block header: the stream's next sequence when this block was created.
    pub first_seq: u64,
    /// Offset just past the last valid record; appends go here.
    pub end_bytes: u64,
    /// Offset up to which records have been written to the file; the rest,
    /// `[written_bytes, end_bytes)`, is in `pending`. Always a record boundary.
    pub written_bytes: u64,
    /// Encoded records appended but not yet written to the file (bounded by the store's
    /// `write_buffer_bytes` plus one record).
    pending: Vec<u8>,
    /// Offset up to which the contents are known durable (a `sync_data` covering them
    /// succeeded in this process).
    pub synced_bytes: u64,
    /// Holds writes not yet synced.
    pub dirty: bool,
    pub msgs: MsgIndex,
}

/// The file name of block `index`: ten digits and `.blk`, so names sort in index order.
pub(crate) fn block_name(index: u32) -> String {
    format!("{index:010}.blk")
}

/// The index in a block file name, or `None` if `name` is not exactly a block name
/// (`0000000001.blk.tmp`, `1.blk` and `x.blk` are not).
pub(crate) fn parse_block_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".blk")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl<F: DiskFile> Block<F> {
    pub fn new(index: u32, path: PathBuf, file: F, first_seq: u64) -> Self {
        Block {
            index,
            path,
            file: Arc::new(SharedFile::new(file)),
            first_seq,
            end_bytes: BLOCK_HEADER_BYTES as u64,
            written_bytes: BLOCK_HEADER_BYTES as u64,
            pending: Vec::new(),
            synced_bytes: 0,
            dirty: false,
            msgs: MsgIndex::default(),
        }
    }

    /// Sets where valid records end after recovery has scanned (nothing is buffered). What
    /// recovery read counts as durable: if the sync `open` then runs fails, the block must not
    /// be cut back below it (that would destroy data that was almost certainly on disk).
    pub fn set_recovered_end(&mut self, end_bytes: u64) {
        assert!(self.pending.is_empty());
        self.end_bytes = end_bytes;
        self.written_bytes = end_bytes;
        self.synced_bytes = end_bytes;
    }

    /// Appends an encoded record at the end of the block and returns its offset. The record
    /// is buffered; once the buffer holds `buffer_limit_bytes` or more it is written to the
    /// file. If that write fails, this record is taken back out (the append did not happen)
    /// and the earlier buffered records stay buffered for the next attempt.
    pub fn append(&mut self, record: &[u8], buffer_limit_bytes: usize) -> Result<u64, AppendError> {
        let offset = self.end_bytes;
        self.pending.extend_from_slice(record);
        self.end_bytes += record.len() as u64;
        self.dirty = true;
        if self.pending.len() >= buffer_limit_bytes {
            if let Err(error) = self.write_pending() {
                self.pending.truncate(self.pending.len() - record.len());
                self.end_bytes = offset;
                return Err(error);
            }
        }
        Ok(offset)
    }

    /// Writes the buffered records to the file. On failure the file is cut back to
    /// `written_bytes`, so a partial write cannot be mistaken for records later, and the
    /// buffer is kept; if even the cut fails the error says the tail is unknown.
    pub fn write_pending(&mut self) -> Result<(), AppendError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(source) = self.file.write_at(&self.pending, self.written_bytes) {
            let error = StoreError::disk(&self.path, Some(self.written_bytes), source);
            return match self.file.set_len(self.written_bytes) {
                Ok(()) => Err(AppendError::Clean(error)),
                Err(_) => Err(AppendError::Unknown(error)),
            };
        }
        self.written_bytes = self.end_bytes;
        self.pending.clear();
        Ok(())
    }

    /// Cuts the block back to `offset`, a record boundary, in memory and in the file (the
    /// shrink is durable after the next `sync` and directory sync). The buffer must have been
    /// written. The bookkeeping moves even if `set_len` fails: the caller then stops writing,
    /// and nothing past `offset` may be read again either way. The message index is the
    /// caller's to cut.
    pub fn truncate_to(&mut self, offset: u64) -> Result<(), StoreError> {
        assert!(self.pending.is_empty(), "write the buffer before truncating");
        assert!(offset >= BLOCK_HEADER_BYTES as u64, "{}: truncating into the header", self.path.display());
        assert!(offset <= self.end_bytes, "{}: truncating beyond the end", self.path.display());
        self.end_bytes = offset;
        self.written_bytes = offset;
        self.synced_bytes = self.synced_bytes.min(offset);
        self.file.durable_bytes.fetch_min(offset, Ordering::AcqRel);
        self.dirty = true;
        self.file.set_len(offset).map_err(|e| StoreError::disk(&self.path, Some(offset), e))
    }

    /// After a failed fsync: cuts the file back to what is known durable, by this thread's
    /// syncs or a background one's. Best effort: if even this fails the device is failing and
    /// nothing written after it can be acknowledged either (the store latches).
    pub fn cut_to_durable(&self) {
        let keep = self.synced_bytes.max(self.file.durable_bytes.load(Ordering::Acquire)).min(self.end_bytes);
        let _ = self.file.set_len(keep);
    }

    /// Reads `buf.len()` bytes at `offset`, from the buffer if they are not written yet.
    /// Records never straddle `written_bytes`.
    pub fn read_exact(&self, buf: &mut [u8], offset: u64) -> Result<(), StoreError> {
        if offset >= self.written_bytes {
            let start = (offset - self.written_bytes) as usize;
            buf.copy_from_slice(&self.pending[start..start + buf.len()]);
            return Ok(());
        }
        assert!(offset + buf.len() as u64 <= self.written_bytes, "a record straddles the written boundary");
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| StoreError::disk(&self.path, Some(offset), e.with_path(&self.path)))
    }

    /// Panics if the block's bookkeeping is inconsistent. Only the last block may hold
    /// buffered records.
    pub fn check_invariants(&self, is_last: bool) {
        assert!(self.end_bytes >= BLOCK_HEADER_BYTES as u64, "{}: end before the header", self.path.display());
        assert_eq!(
            self.written_bytes + self.pending.len() as u64,
            self.end_bytes,
            "{}: buffer accounting",
            self.path.display()
        );
        assert!(is_last || self.pending.is_empty(), "{}: a sealed block holds buffered records", self.path.display());
        assert!(self.end_bytes <= u64::from(u32::MAX), "{}: beyond u32 offsets", self.path.display());
        if !self.dirty {
            assert_eq!(self.synced_bytes, self.end_bytes, "{}: clean but not synced to its end", self.path.display());
        }
    }

    /// Makes the block durable; the buffer must have been written first. On failure, cuts
    /// the file back to the last durable offset: after a failed fsync Linux may drop the
    /// dirty pages yet keep serving them from the page cache, and a later open would read
    /// back records that will never reach the disk, then build on them (fsyncgate).
    /// Truncating removes them from the cache too.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        assert!(self.pending.is_empty(), "write the buffer before syncing");
        if self.dirty {
            if let Err(e) = sync_data(&self.file, &self.path, self.end_bytes) {
                self.cut_to_durable();
                return Err(StoreError::disk(&self.path, None, e));
            }
            self.synced_bytes = self.end_bytes;
            self.dirty = false;
        }
        Ok(())
    }
}

/// A failed append: whether the block is known to be back as it was.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// Nothing of the write remains visible; the store may go on.
    Clean(StoreError),
    /// The block's tail is in an unknown state; the store must stop writing.
    Unknown(StoreError),
}

/// A block's file handle, shared by the store and a background sync (`SyncPlan`). Both may
/// fsync it, so what either learns is kept here where both see it: how far the file is known
/// durable, and whether an fsync of it ever failed. Linux reports a failed write-back once
/// per open file: the second thread to fsync would be told all is well about pages that are
/// gone (fsyncgate), so after one failure every later fsync of the file fails too.
pub(crate) struct SharedFile<F> {
    file: F,
    durable_bytes: AtomicU64,
    poisoned: AtomicBool,
}

impl<F> SharedFile<F> {
    fn new(file: F) -> SharedFile<F> {
        SharedFile { file, durable_bytes: AtomicU64::new(0), poisoned: AtomicBool::new(false) }
    }
}

impl<F> std::ops::Deref for SharedFile<F> {
    type Target = F;
    fn deref(&self) -> &F {
        &self.file
    }
}

/// One `sync_data` of a block file, known to hold `end_bytes`; the only place blocks are
/// fsynced (by the store and by background syncs alike).
pub(crate) fn sync_data<F: DiskFile>(
    shared: &SharedFile<F>,
    path: &std::path::Path,
    end_bytes: u64,
) -> Result<(), crate::disk::DiskError> {
    if shared.poisoned.load(Ordering::Acquire) {
        let why = "an earlier fsync of this file failed; its unsynced pages may be gone";
        return Err(crate::disk::DiskError::new(crate::disk::DiskErrorKind::Io, "sync_data", path, why));
    }
    let mut result = shared.file.sync_data();
    if result.is_err() && crate::bugs::active(crate::bugs::Bug::FsyncFailureBelieved) {
        result = shared.file.sync_data(); // planted: the retry "succeeds" without the dropped pages
    }
    match &result {
        Ok(()) => {
            shared.durable_bytes.fetch_max(end_bytes, Ordering::AcqRel);
        }
        Err(_) => shared.poisoned.store(true, Ordering::Release),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_handles_runs_and_ranges() {
        let mut index = MsgIndex::default();
        for (seq, offset) in [(5u64, 32u64), (6, 100), (7, 200), (10, 300), (11, 400)] {
            index.push(seq, offset, 50);
        }
        assert_eq!(index.lookup(4), None);
        assert_eq!(index.lookup(6), Some(Entry { offset: 100, len: 50 }));
        assert_eq!(index.lookup(8), None, "a skipped sequence is not indexed");
        assert_eq!(index.lookup(11), Some(Entry { offset: 400, len: 50 }));
        assert_eq!(index.lookup(12), None);
        let seqs: Vec<u64> = index.range(6, 11).map(|(s, _)| s).collect();
        assert_eq!(seqs, [6, 7, 10]);
        assert_eq!(index.range(0, u64::MAX).count(), 5);
        assert_eq!(index.last_at_or_below(4), None);
        assert_eq!(index.last_at_or_below(9), Some((7, Entry { offset: 200, len: 50 })));
        assert_eq!(index.last_at_or_below(u64::MAX), Some((11, Entry { offset: 400, len: 50 })));
    }

    #[test]
    fn index_truncates_after_a_sequence() {
        let mut index = MsgIndex::default();
        for (seq, offset) in [(5u64, 32u64), (6, 100), (7, 200), (10, 300), (11, 400)] {
            index.push(seq, offset, 50);
        }
        index.truncate_after(10);
        assert_eq!(index.range(0, u64::MAX).map(|(s, _)| s).collect::<Vec<_>>(), [5, 6, 7, 10]);
        index.truncate_after(8);
        assert_eq!(index.range(0, u64::MAX).map(|(s, _)| s).collect::<Vec<_>>(), [5, 6, 7]);
        index.truncate_after(5);
        assert_eq!(index.range(0, u64::MAX).map(|(s, _)| s).collect::<Vec<_>>(), [5]);
        index.push(6, 500, 10);
        assert_eq!(index.lookup(6), Some(Entry { offset: 500, len: 10 }));
        index.truncate_after(4);
        assert_eq!(index.range(0, u64::MAX).count(), 0);
        assert_eq!(index.last_at_or_below(100), None);
    }

    #[test]
    fn block_names_are_exact() {
        assert_eq!(block_name(7), "0000000007.blk");
        assert_eq!(parse_block_name("0000000007.blk"), Some(7));
        assert_eq!(parse_block_name(&block_name(u32::MAX)), Some(u32::MAX));
        for bad in ["7.blk", "0000000007.blk.tmp", "000000000x.blk", "00000000007.blk", "9999999999.blk", "state.db"] {
            assert_eq!(parse_block_name(bad), None, "{bad}");
        }
    }
}
