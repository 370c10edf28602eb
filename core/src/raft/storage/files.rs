//! File names of a group directory, the atomic replace used for the hard state and snapshot
//! files, and a bounded buffered reader for scanning segments.

use super::RaftStorageError;
use crate::disk::{Disk, DiskFile, OpenMode};
use crate::format::raftlog::{encode_hard_state, INDEX_MAX};
use crate::raft::types::{HardState, Index};
use std::path::Path;

pub(super) const LOG_DIR: &str = "log";
pub(super) const HARD_STATE_FILES: [&str; 2] = ["hard.0", "hard.1"];
pub(super) const TMP_SUFFIX: &str = ".tmp";
const SNAPSHOT_PREFIX: &str = "snap-";
const SEGMENT_SUFFIX: &str = ".seg";
const INDEX_DIGITS: usize = 20;
/// Bytes read at once while scanning a segment (more if one record is larger).
const SCAN_CHUNK_BYTES: usize = 1024 * 1024;

pub(super) fn segment_name(first_index: Index) -> String {
    format!("{first_index:020}{SEGMENT_SUFFIX}")
}

pub(super) fn snapshot_name(last_index: Index) -> String {
    format!("{SNAPSHOT_PREFIX}{last_index:020}")
}

/// The index in a name that is exactly 20 decimal digits, at most `INDEX_MAX`, or `None`
/// (this storage never writes other names, so a stray file cannot raise the commit floor to
/// an index no log can reach).
fn parse_index(digits: &str) -> Option<Index> {
    if digits.len() != INDEX_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&index| index <= INDEX_MAX)
}

pub fn parse_segment_name(name: &str) -> Option<Index> {
    parse_index(name.strip_suffix(SEGMENT_SUFFIX)?)
}

pub fn parse_snapshot_name(name: &str) -> Option<Index> {
    parse_index(name.strip_prefix(SNAPSHOT_PREFIX)?)
}

/// A temporary file this storage writes (`hard.N.tmp`, `snap-<index>.tmp`): only a rename
/// publishes it, so one found at open is an interrupted write.
pub(super) fn is_own_tmp(name: &str) -> bool {
    name.strip_suffix(TMP_SUFFIX)
        .is_some_and(|base| HARD_STATE_FILES.contains(&base) || parse_snapshot_name(base).is_some())
}

/// Replaces `dir/name` with `bytes` atomically and durably: write `name.tmp`, sync it, rename
/// it over `name`, sync `dir`. A crash at any point leaves the old or the new file.
pub(super) fn replace_file<D: Disk>(disk: &D, dir: &Path, name: &str, bytes: &[u8]) -> Result<(), RaftStorageError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let err = |e| RaftStorageError::disk(&tmp, None, e);
    let file = disk.open(&tmp, OpenMode::Create).map_err(err)?;
    if file.len().map_err(err)? != 0 {
        file.set_len(0).map_err(err)?;
    }
    file.write_at(bytes, 0).map_err(|e| RaftStorageError::disk(&tmp, Some(0), e))?;
    if crate::bugs::active(crate::bugs::Bug::VoteBeforeSync) && HARD_STATE_FILES.contains(&name) {
        // Planted: the vote is renamed into place but never made durable.
        return disk.rename(&tmp, &path).map_err(|e| RaftStorageError::disk(&path, None, e));
    }
    file.sync_data().map_err(err)?;
    disk.rename(&tmp, &path).map_err(|e| RaftStorageError::disk(&path, None, e))?;
    disk.sync_dir(dir).map_err(|e| RaftStorageError::disk(dir, None, e))
}

/// Replaces both hard state copies with `hs`, `hard.0` first (the module docs say why).
pub(super) fn write_hard_state<D: Disk>(disk: &D, dir: &Path, hs: &HardState) -> Result<(), RaftStorageError> {
    let bytes = encode_hard_state(hs);
    HARD_STATE_FILES.iter().try_for_each(|name| replace_file(disk, dir, name, &bytes))
}

/// Reads a whole small file (at most `max_bytes`); `Ok(Err(len))` if it is longer.
pub(super) fn read_small_file<F: DiskFile>(
    file: &F,
    path: &Path,
    max_bytes: usize,
) -> Result<Result<Vec<u8>, u64>, RaftStorageError> {
    let len = file.len().map_err(|e| RaftStorageError::disk(path, None, e))?;
    if len > max_bytes as u64 {
        return Ok(Err(len));
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0).map_err(|e| RaftStorageError::disk(path, Some(0), e.with_path(path)))?;
    Ok(Ok(bytes))
}

/// Buffered reads of a file of known length, one window at a time.
pub(super) struct Reader<'a, F> {
    file: &'a F,
    path: &'a Path,
    len: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a, F: DiskFile> Reader<'a, F> {
    pub fn new(file: &'a F, path: &'a Path, len: u64) -> Self {
        Reader { file, path, len, buf: Vec::new(), buf_start: 0 }
    }

    /// Up to `n` bytes at `offset`: fewer only where the file ends. `n` must be bounded by
    /// the caller (a record's checked length at most).
    pub fn get(&mut self, offset: u64, n: usize) -> Result<&[u8], RaftStorageError> {
        let available = self.len.saturating_sub(offset).min(n as u64) as usize;
        let buf_end = self.buf_start + self.buf.len() as u64;
        if offset < self.buf_start || offset + available as u64 > buf_end {
            let read = self.len.saturating_sub(offset).min(available.max(SCAN_CHUNK_BYTES) as u64) as usize;
            self.buf.resize(read, 0);
            self.buf_start = offset;
            self.file
                .read_exact_at(&mut self.buf, offset)
                .map_err(|e| RaftStorageError::disk(self.path, Some(offset), e.with_path(self.path)))?;
        }
        let at = (offset - self.buf_start) as usize;
        Ok(&self.buf[at..at + available])
    }

    /// Forgets the buffer, so the next read goes to the disk again (to re-read bytes that
    /// failed a check: a flip on the read path is not corruption).
    pub fn invalidate(&mut self) {
        self.buf.clear();
        self.buf_start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        assert_eq!(segment_name(42), "00000000000000000042.seg");
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_snapshot_name(&snapshot_name(7)), Some(7));
        for stranger in [
            "42.seg",
            "0000000000000000004x.seg",
            "99999999999999999999.seg",
            "18446744073709551615.seg",
            "00000000000000000042.seg.tmp",
        ] {
            assert_eq!(parse_segment_name(stranger), None, "{stranger}");
        }
        assert!(is_own_tmp("hard.0.tmp"));
        assert!(is_own_tmp("snap-00000000000000000007.tmp"));
        assert!(!is_own_tmp("other.tmp"));
        assert!(!is_own_tmp("hard.0"));
    }
}
