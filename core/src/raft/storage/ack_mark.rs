//! The acknowledgement mark (`acked`): the highest index this node may have acknowledged,
//! written down after the log is synced and before `persist` returns (so before any
//! acknowledgement leaves); in the interval mode, after each periodic sync. Every entry at or
//! below it was durable before it was written, so it is also how far recovery knows the log
//! durable: recovery writes back the records above it before its sync (`recovery.rs`).
//!
//! Why it exists: recovery cuts the log at the first invalid record, and a torn tail (never
//! synced, never acknowledged) looks exactly like a flipped bit in a synced record. The
//! commit claims in the records lag the leader's commit by a batch, so a flip in the last
//! batches could cut entries this node acknowledged, that counted toward a commit, without
//! the node knowing: it would then vote for a candidate that lacks them (found by
//! `log-flip` seeds 33, 98 and 395). The mark is written only once the entries under it are
//! durable, so it never covers a torn tail (a cluster-wide power loss damages no one), and a
//! log recovered shorter than the mark did lose acknowledged entries: the node stays damaged
//! (no vote, no campaign) until its log reaches the mark again.
//!
//! Recovery rewrites the mark at every open: to the recovered log's last index if the log
//! reaches the mark (recovery has just synced that log, and a node acknowledges what it
//! recovered without another persist), else to the same value. Either way what the node acts
//! on is durable: after a restart in the same boot, the mark read may be one whose sync
//! failed, visible in the page cache and never to reach the disk.
//!
//! Invariants: the mark only rises, except at a conflict truncation at `i` (down to `i - 1`)
//! and at a snapshot install over a log that reaches the mark (down to the snapshot's index):
//! Raft proves the entries above those points were never committed. Both lower the mark
//! durably **before** the log changes. The mark is never above the durable log, except when
//! the log lost what the mark covers.
//!
//! Layout: two 32-byte slots, 4 KiB apart (docs/formats.md, "Acknowledgement mark"). A write
//! goes to the slot the current one is not in, with the next generation, then `sync_data`; a
//! torn write leaves the other slot, whose mark covers every acknowledgement already sent. Missing or
//! empty file: mark 0 (a directory from before the mark existed reads that way too).

use super::RaftStorageError;
use crate::disk::{Disk, DiskFile, OpenMode};
use crate::format::raftlog::{decode_ack_mark, encode_ack_mark, AckMark, ACK_MARK_SLOT_BYTES};
use crate::raft::types::Index;
use std::path::{Path, PathBuf};

const ACK_MARK_FILE: &str = "acked";
const SLOTS: u64 = 2;
/// Slot `k` starts at `k * SLOT_STRIDE_BYTES`: a page apart, so a write torn or garbled at
/// sector or page granularity cannot damage both.
pub(super) const SLOT_STRIDE_BYTES: u64 = 4096;

pub(super) struct AckMarkFile<F> {
    file: F,
    path: PathBuf,
    current: AckMark,
}

impl<F: DiskFile> AckMarkFile<F> {
    /// Opens (creating if missing) `dir/acked` and reads the current mark. The caller syncs
    /// `dir` before anything relies on the name, and writes the mark recovery settles on
    /// (`set`): what was read may be in the page cache only.
    pub(super) fn open<D: Disk<File = F>>(disk: &D, dir: &Path) -> Result<Self, RaftStorageError> {
        let path = dir.join(ACK_MARK_FILE);
        let file = disk.open(&path, OpenMode::Create).map_err(|e| RaftStorageError::disk(&path, None, e))?;
        let current = read_current(&file, &path)?;
        Ok(AckMarkFile { file, path, current })
    }

    pub(super) fn index(&self) -> Index {
        self.current.index
    }

    /// Writes `index` as the mark, durably. On error the mark on disk is the old one or the
    /// new one; the caller latches the storage failed.
    pub(super) fn set(&mut self, index: Index) -> Result<(), RaftStorageError> {
        let next = AckMark { generation: self.current.generation + 1, index };
        let at = (next.generation % SLOTS) * SLOT_STRIDE_BYTES;
        let err = |e| RaftStorageError::disk(&self.path, Some(at), e);
        self.file.write_at(&encode_ack_mark(&next), at).map_err(err)?;
        self.file.sync_data().map_err(err)?;
        self.current = next;
        Ok(())
    }
}

/// The valid slot with the highest generation; each slot that fails is read again before
/// it counts (a flip on the read path is not corruption). No valid slot: mark 0, which is
/// what a torn first write leaves (nothing was acknowledged on it); a file with bytes but no
/// valid slot is logged, since it can also mean both slots were damaged.
fn read_current<F: DiskFile>(file: &F, path: &Path) -> Result<AckMark, RaftStorageError> {
    let len = file.len().map_err(|e| RaftStorageError::disk(path, None, e))?;
    let mut best = AckMark::default();
    for slot in 0..SLOTS {
        let at = slot * SLOT_STRIDE_BYTES;
        if len < at + ACK_MARK_SLOT_BYTES as u64 {
            break;
        }
        let mut bytes = [0u8; ACK_MARK_SLOT_BYTES];
        for _ in 0..2 {
            file.read_exact_at(&mut bytes, at).map_err(|e| RaftStorageError::disk(path, Some(at), e))?;
            if let Ok(mark) = decode_ack_mark(&bytes) {
                if mark.generation % SLOTS == slot && mark.generation > best.generation {
                    best = mark;
                }
                break;
            }
        }
    }
    if len > 0 && best.generation == 0 {
        tracing::warn!(path = %path.display(), len, "no valid ack mark slot; reading mark 0");
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::OsDisk;
    use crate::testutil::temp_root;

    fn reopen(disk: &OsDisk) -> Index {
        AckMarkFile::open(disk, Path::new("")).unwrap().index()
    }

    fn flip(disk: &OsDisk, offset: u64) {
        let file = disk.open(Path::new(ACK_MARK_FILE), OpenMode::ReadWrite).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, offset).unwrap();
        byte[0] ^= 0x04;
        file.write_at(&byte, offset).unwrap();
    }

    #[test]
    fn the_newer_valid_slot_wins_and_a_damaged_one_falls_back_to_the_other() {
        let disk = OsDisk::new(temp_root("ack-mark")).unwrap();
        let mut mark = AckMarkFile::open(&disk, Path::new("")).unwrap();
        assert_eq!(mark.index(), 0);
        mark.set(5).unwrap(); // generation 1, slot 1
        mark.set(9).unwrap(); // generation 2, slot 0
        drop(mark);
        assert_eq!(reopen(&disk), 9);
        // A flip in slot 0's index: the older slot still covers what was acknowledged then.
        flip(&disk, 21);
        assert_eq!(reopen(&disk), 5);
        // The next write goes to the slot after the current one and wins again.
        let mut mark = AckMarkFile::open(&disk, Path::new("")).unwrap();
        mark.set(12).unwrap(); // generation 2 again, slot 0, over the damaged one
        drop(mark);
        assert_eq!(reopen(&disk), 12);
        // A valid slot in the wrong position (a copied block, say) is not a mark.
        let file = disk.open(Path::new(ACK_MARK_FILE), OpenMode::ReadWrite).unwrap();
        file.write_at(&encode_ack_mark(&AckMark { generation: 7, index: 99 }), 0).unwrap();
        drop(file);
        assert_eq!(reopen(&disk), 5, "generation 7 belongs in slot 1");
        // Empty or missing: mark 0, which is what a torn first write leaves.
        let file = disk.open(Path::new(ACK_MARK_FILE), OpenMode::ReadWrite).unwrap();
        file.set_len(0).unwrap();
        drop(file);
        assert_eq!(reopen(&disk), 0);
        disk.remove_file(Path::new(ACK_MARK_FILE)).unwrap();
        assert_eq!(AckMarkFile::open(&disk, Path::new("")).unwrap().index(), 0);
    }
}
