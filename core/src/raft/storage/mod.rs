//! Durable storage of one Raft group: its log in segment files, its hard state and its
//! latest snapshot, on a [`Disk`]. Byte formats are in `format::raftlog` and docs/formats.md
//! ("Raft log"), which also states the rules below for operators.
//!
//! # Layout of the group directory
//!
//! * `hard.0`, `hard.1`: two copies of the [`HardState`]. `set_hard_state` replaces
//!   `hard.0` atomically and durably (write `hard.0.tmp`, sync, rename, sync the directory),
//!   then `hard.1` the same way, so at every instant at least one copy is whole and `hard.0`
//!   is never older than `hard.1`.
//! * `acked`: the acknowledgement mark, the highest index this node may have acknowledged
//!   (`ack_mark.rs`: why it exists, its invariants and its two slots).
//! * `snap-<last index, 20 digits>`: the latest snapshot, replaced atomically the same way;
//!   older `snap-*` files are removed once the new one is durable.
//! * `log/<first index, 20 digits>.seg`: segment files, a header and then records back to
//!   back. Appends go to the last segment only; a new segment starts when the last one has
//!   reached `segment_bytes`.
//!
//! # Write rules, and the crash each one is for
//!
//! * Appends are written, not synced; [`RaftStorage::sync`] syncs every segment written to
//!   and then the `log/` directory if segments were created, then raises the
//!   acknowledgement mark to the last index. A crash may keep any subset of unsynced writes,
//!   so recovery must find holes (below).
//! * [`RaftStorage::truncate_from`] removes later segments (newest first), shortens the
//!   boundary segment, and makes both durable **before it returns**, not at the next sync: a
//!   new record is later written where the removed ones were, and if the shortening were not
//!   yet durable a crash could keep a removed record next to a new one, making a log that
//!   mixes two histories with contiguous indexes (the index checks cannot see it).
//! * [`RaftStorage::persist`] with `sync_appends` syncs, and so raises the acknowledgement
//!   mark, before it returns (so before the caller acknowledges); a truncation, and a
//!   snapshot install over a log that reaches the mark, lower it durably before they change
//!   the log. Every entry at or below the mark was synced before the mark was written.
//! * [`RaftStorage::compact_through`] removes whole segments, oldest first, never the last
//!   one, only below a durable snapshot; a crash keeps a suffix of them, which still starts
//!   at or below `snapshot + 1`.
//! * [`RaftStorage::install_snapshot`] saves the snapshot durably **first** and only then
//!   removes every segment (newest first). The other order could lose, in a crash between,
//!   entries this node had acknowledged and that were committed counting on it. In this
//!   order a crash between leaves the new snapshot with a prefix of the old log; recovery
//!   keeps old entries above the snapshot only if the old log holds the snapshot's last
//!   index with the snapshot's term (by Raft's log matching property, the old log then agrees
//!   with the snapshot's history up to there, and Raft keeps the entries after it, §7);
//!   otherwise it cuts them.
//! * A failed write or sync latches the storage failed until reopened (a failed fsync may
//!   have dropped the pages it was given while reads still show them). Before latching, a
//!   failed sync shortens every segment back to its last durable length, so a reopen in the
//!   same boot does not read back records that may never reach the disk.
//!
//! # Recovery (`open`)
//!
//! 1. Remove leftover `*.tmp` files. Read both hard state copies; take the greater valid one
//!    by (term, voted, commit), `hard.0` on a tie; none present: the default; present but
//!    none valid: [`RaftStorageError::Corrupt`] (a lost vote could make the node vote twice).
//! 2. Take the snapshot file with the highest index that verifies (its name must equal its
//!    index); report every higher one that does not in `corrupt_snapshot`; remove lower ones.
//! 3. Walk the segments in index order, verifying every record, and **cut** at the first of:
//!    a bad segment header, a header naming another index than its file name, a segment not
//!    starting where the previous one ended (a lost tail or a missing segment), a first
//!    segment starting past `snapshot + 1` (past 1 without a snapshot), a record that is
//!    invalid or torn, does not carry the next index, has a term below the previous
//!    record's or the snapshot's, or sits at the snapshot's index with another term. The cut
//!    segment is shortened there, later segments removed (newest first), every kept segment
//!    and the directory synced, before anything can be appended behind stale bytes. (Kept
//!    segments are synced even without a cut: after a restart without a machine crash, what
//!    was read may be in the page cache only, and from now on it is acknowledged. A record
//!    above the acknowledgement mark as read, and the header of a segment that starts above
//!    it, is first written back from the bytes that verified: a page whose fsync failed
//!    earlier in this boot is served but no longer dirty, and a sync alone would not write
//!    it.)
//! 4. A log that ends below the snapshot is wholly covered by it and removed.
//! 5. `commit_floor` is the maximum of every commit claim in a checksum-valid record found
//!    anywhere (past the cut too, stepping over records whose length is plausible but whose
//!    checksum fails), the hard state's commit, the snapshot's index and the index in every
//!    `snap-*` name, valid or not. Committed entries never change, so a log recovered short
//!    of the floor lost committed data: the node must not vote or lead until it has refetched.
//!    When there is a cut, a floor above the hard state's commit is written into the hard
//!    state **before** the cut is applied: the cut destroys the records that carried the
//!    claims, and a node restarted again must still know it is damaged.
//! 6. `ack_mark` is read from `acked` and rewritten durably as at least the recovered log's
//!    last index (that log is synced now and will be acknowledged as it is). Claims lag the
//!    leader's commit by a batch, so only the mark shows a cut in the newest acknowledged
//!    entries; the node is damaged while its log ends below either.
//!
//! An invalid header, record or file is read a second time before it counts (a flip on the
//! read path is not corruption). A disk error (EIO) fails `open` rather than cutting: an
//! unreadable sector is not evidence that data was never written; errors reading past the
//! cut are ignored, as those bytes are dropped anyway.

mod ack_mark;
mod error;
mod files;
mod leftovers;
mod recovery;
mod snapshot_write;
#[cfg(test)]
mod tests;

pub use error::{LogCut, LogCutReason, RaftStorageError};
/// The index in a segment's or a snapshot's file name (tools and the simulator read them).
pub use files::{parse_segment_name, parse_snapshot_name};
pub use leftovers::Leftovers;
pub use snapshot_write::SnapshotWrite;

use crate::disk::{Disk, DiskFile, OpenMode};
use crate::format::raftlog::{encode_record, SegmentHeader, INDEX_MAX, SEGMENT_HEADER_BYTES, SNAPSHOT_DATA_BYTES_MAX};
use crate::raft::node::{ack_floor_after_install, ack_floor_after_truncation, PersistIo};
use crate::raft::types::{Entry, HardState, Index, Snapshot, SnapshotMeta, Term, ENTRY_DATA_BYTES_MAX, PEERS_MAX};
use files::{segment_name, snapshot_name, write_hard_state};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Smallest and largest `segment_bytes` accepted.
pub const SEGMENT_BYTES_MIN: u64 = 4 * 1024;
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A new segment starts when the last one has reached this size (so a segment exceeds
    /// it by less than one record). `SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX`.
    pub segment_bytes: u64,
    /// Whether `persist` syncs the entries it appends before it returns (so an entry counts
    /// toward a commit quorum only once it is on stable storage). `false` is the interval
    /// mode: appends reach the OS at once and stable storage at the owner's next `sync`, so
    /// a power loss on a quorum can lose acknowledged entries (a process crash cannot).
    /// Votes, truncations and snapshots stay synchronous either way: a lost vote could elect
    /// two leaders in one term, and a lost truncation could mix two histories.
    pub sync_appends: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { segment_bytes: 4 * 1024 * 1024, sync_appends: true }
    }
}

/// What `open` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    /// Contiguous, ascending by index, terms non-decreasing; starts at
    /// `snapshot.last_index + 1` (entries at or below the snapshot's index are dropped from
    /// this vec), or at 1 with no snapshot.
    pub entries: Vec<Entry>,
    /// Max over: the commit claim of every checksum-valid record found (including records
    /// past the cut that recovery could still parse), `hard_state.commit`, the snapshot's
    /// last index, and the index in every `snap-*` file name even if its contents were
    /// corrupt. Committed entries never change, so if the recovered log ends below this
    /// floor the node lost committed data.
    pub commit_floor: Index,
    /// The acknowledgement mark (`ack_mark`): every entry this node may have acknowledged
    /// is at or below it. If the recovered log ends below it, the node lost acknowledged
    /// entries (a flipped bit in a synced record) and must not vote until it has them again.
    /// Unlike `commit_floor` it says nothing about what is committed.
    pub ack_mark: Index,
    /// Where recovery cut the log and why, if it did.
    pub cut: Option<LogCut>,
    /// Snapshot files that failed verification (`path: reason`, highest first, `; `
    /// between). They are treated as absent; the caller refetches state from peers because
    /// `commit_floor` is above what it has.
    pub corrupt_snapshot: Option<String>,
}

impl From<Recovered> for crate::raft::RecoveredLog {
    /// What the Raft node is built from; the cut and the corrupt snapshots are for logs.
    fn from(rec: Recovered) -> Self {
        crate::raft::RecoveredLog {
            hard_state: rec.hard_state,
            snapshot: rec.snapshot,
            entries: rec.entries,
            commit_floor: rec.commit_floor,
            ack_mark: rec.ack_mark,
        }
    }
}

/// One segment file, as far as this storage has written or verified it.
struct Segment<F> {
    first_index: Index,
    path: PathBuf,
    file: F,
    /// Offset and term of each record: entry `first_index + i` is at position `i`.
    records: Vec<(u64, Term)>,
    /// Where the records end (the file's length).
    len_bytes: u64,
    /// How much of the file is known durable.
    durable_bytes: u64,
    /// Written or shortened since its last sync.
    unsynced: bool,
}

impl<F> Segment<F> {
    /// The index after this segment's last record.
    fn next_index(&self) -> Index {
        self.first_index + self.records.len() as u64
    }

    fn term(&self, index: Index) -> Option<Term> {
        let at = index.checked_sub(self.first_index)?;
        self.records.get(usize::try_from(at).ok()?).map(|&(_, term)| term)
    }
}

/// Durable storage of one Raft group's log, hard state and snapshot (see the module docs).
pub struct RaftStorage<D: Disk> {
    disk: D,
    dir: PathBuf,
    log_dir: PathBuf,
    config: LogConfig,
    /// Contiguous: each starts where the previous one ends. Only the last may be empty.
    segments: Vec<Segment<D::File>>,
    /// The durable snapshot's metadata.
    snapshot: Option<SnapshotMeta>,
    /// Indexes of the `snap-*` files in the directory.
    snapshot_files: BTreeSet<Index>,
    hard_state: HardState,
    /// The highest index this node may have acknowledged (`ack_mark`).
    acked: ack_mark::AckMarkFile<D::File>,
    /// Segments were created since the last sync of `log/`.
    log_dir_dirty: bool,
    failed: Option<RaftStorageError>,
}

impl<D: Disk> RaftStorage<D> {
    /// Creates (durably) or recovers the group in `dir`. See the module docs for recovery.
    pub fn open(disk: D, dir: &Path, config: LogConfig) -> Result<(Self, Recovered), RaftStorageError> {
        recovery::open(disk, dir, config)
    }

    /// Appends entries, which must continue exactly at `last_index() + 1` with terms not
    /// below the last entry's (or the snapshot's), else a panic: a caller bug. Written but
    /// not durable until [`sync`](Self::sync). `commit_claim` is a commit index the caller
    /// knows, stored in each record; recovery reports the highest it finds.
    pub fn append(&mut self, entries: &[Entry], commit_claim: Index) -> Result<(), RaftStorageError> {
        self.usable()?;
        let mut previous_term = self.last_term();
        for (i, entry) in entries.iter().enumerate() {
            let expected = self.last_index() + 1 + i as u64;
            assert_eq!(entry.index, expected, "append does not continue the log");
            assert!(entry.index <= INDEX_MAX, "index {} beyond INDEX_MAX", entry.index);
            assert!(entry.term >= previous_term, "entry {} has term {} below {previous_term}", entry.index, entry.term);
            assert!(entry.data.len() <= ENTRY_DATA_BYTES_MAX, "entry {} data over the bound", entry.index);
            previous_term = entry.term;
        }
        let result = self.append_unchecked(entries, commit_claim);
        self.latch(result)
    }

    fn append_unchecked(&mut self, entries: &[Entry], commit_claim: Index) -> Result<(), RaftStorageError> {
        let mut buf = Vec::new();
        // Records encoded into `buf` for the last segment, not yet written.
        let mut batch: Vec<(u64, Term)> = Vec::new();
        for entry in entries {
            let needs_segment = match self.segments.last() {
                None => true,
                Some(last) => {
                    let written = last.len_bytes + buf.len() as u64;
                    written >= self.config.segment_bytes && (!last.records.is_empty() || !batch.is_empty())
                }
            };
            if needs_segment {
                self.write_batch(&mut buf, &mut batch)?;
                self.create_segment(entry.index)?;
            }
            let last = self.segments.last().expect("a segment exists now");
            batch.push((last.len_bytes + buf.len() as u64, entry.term));
            encode_record(&mut buf, entry, commit_claim);
        }
        self.write_batch(&mut buf, &mut batch)
    }

    /// Writes the encoded records in `buf` at the end of the last segment.
    fn write_batch(&mut self, buf: &mut Vec<u8>, batch: &mut Vec<(u64, Term)>) -> Result<(), RaftStorageError> {
        if buf.is_empty() {
            return Ok(());
        }
        let segment = self.segments.last_mut().expect("records are encoded for an existing segment");
        let at = segment.len_bytes;
        segment.unsynced = true;
        if let Err(e) = segment.file.write_at(buf, at) {
            // Any prefix may have been written; best effort to take it back so a reopen in
            // this boot does not find half a record. The storage is failed either way.
            let _ = segment.file.set_len(at);
            let mut error = RaftStorageError::disk(&segment.path, Some(at), e);
            if let RaftStorageError::Disk { index, .. } = &mut error {
                *index = Some(segment.next_index());
            }
            return Err(error);
        }
        segment.len_bytes += buf.len() as u64;
        segment.records.append(batch);
        buf.clear();
        Ok(())
    }

    fn create_segment(&mut self, first_index: Index) -> Result<(), RaftStorageError> {
        let path = self.log_dir.join(segment_name(first_index));
        let err = |e| RaftStorageError::disk(&path, None, e);
        let file = self.disk.open(&path, OpenMode::CreateNew).map_err(err)?;
        self.log_dir_dirty = true;
        file.write_at(&SegmentHeader { first_index }.encode(), 0).map_err(err)?;
        self.segments.push(Segment {
            first_index,
            path,
            file,
            records: Vec::new(),
            len_bytes: SEGMENT_HEADER_BYTES as u64,
            durable_bytes: 0,
            unsynced: true,
        });
        Ok(())
    }

    /// Removes every entry with index `>= index` (a conflict), durably before it returns
    /// (see the module docs for why not at the next sync). `index` must be above the
    /// snapshot (committed entries never conflict); at or past `last_index() + 1` this does
    /// nothing.
    pub fn truncate_from(&mut self, index: Index) -> Result<(), RaftStorageError> {
        self.usable()?;
        assert!(index > self.snapshot_index(), "truncating at {index}, at or below the snapshot");
        if index > self.last_index() {
            return Ok(());
        }
        let result = self.truncate_unchecked(index);
        self.latch(result)
    }

    fn truncate_unchecked(&mut self, index: Index) -> Result<(), RaftStorageError> {
        // The mark comes down as Raft's floor does; durably first, or a crash after the log
        // is shortened would leave a mark above it and the node damaged for nothing.
        let mark = ack_floor_after_truncation(self.acked.index(), index);
        if mark != self.acked.index() {
            self.acked.set(mark)?;
        }
        // Newest first, so a crash part-way leaves a contiguous prefix of segments.
        while self.segments.last().is_some_and(|s| s.first_index > index) {
            let segment = self.segments.pop().expect("checked");
            self.log_dir_dirty = true;
            self.disk.remove_file(&segment.path).map_err(|e| RaftStorageError::disk(&segment.path, None, e))?;
        }
        let segment = self.segments.last_mut().expect("index > snapshot, so some segment holds it");
        let position = (index - segment.first_index) as usize;
        let (offset, _) = segment.records[position];
        segment.unsynced = true;
        segment.file.set_len(offset).map_err(|e| RaftStorageError::disk(&segment.path, Some(offset), e))?;
        segment.records.truncate(position);
        segment.len_bytes = offset;
        segment.durable_bytes = segment.durable_bytes.min(offset);
        self.sync_unchecked()
    }

    /// Makes every append and truncation so far durable, then raises the acknowledgement
    /// mark to the last index. In the interval mode too, where entries are acknowledged
    /// before they are synced: the mark is also how far recovery knows the log durable, and
    /// recovery writes back every record above it (`recovery::recover_log`), so a mark that
    /// followed only the opens would make every open rewrite all that came since the last.
    pub fn sync(&mut self) -> Result<(), RaftStorageError> {
        self.usable()?;
        let result = self.sync_unchecked();
        self.latch(result)?;
        self.raise_ack_mark()
    }

    fn sync_unchecked(&mut self) -> Result<(), RaftStorageError> {
        for k in 0..self.segments.len() {
            let segment = &self.segments[k];
            if !segment.unsynced {
                continue;
            }
            if let Err(e) = segment.file.sync_data() {
                let error = RaftStorageError::disk(&segment.path, None, e);
                self.forget_unsynced();
                return Err(error);
            }
            let segment = &mut self.segments[k];
            segment.durable_bytes = segment.len_bytes;
            segment.unsynced = false;
        }
        if self.log_dir_dirty {
            self.disk.sync_dir(&self.log_dir).map_err(|e| RaftStorageError::disk(&self.log_dir, None, e))?;
            self.log_dir_dirty = false;
        }
        Ok(())
    }

    /// After a failed sync: shorten every segment to what is known durable, so the page
    /// cache stops serving records a failed fsync may have dropped. Best effort; the storage
    /// is failed either way and recovery verifies everything.
    fn forget_unsynced(&mut self) {
        for segment in &mut self.segments {
            if segment.unsynced {
                let _ = segment.file.set_len(segment.durable_bytes);
            }
        }
    }

    /// Replaces the hard state; durable on return. Term must not go down, nor the vote
    /// change within a term (Raft safety: a bug otherwise).
    /// Writes `commit` into the hard state if it is above what is there (and within what this
    /// mode may write down, see `persist`). A clean shutdown calls it (`Node::sync_all`): the
    /// last entries a leader committed are otherwise known committed on disk only once a later
    /// write carried the claim, and a restart would wait for an election to apply them (a
    /// stream created last would then be restored after start-up, not with the others).
    pub fn record_commit(&mut self, commit: Index) -> Result<(), RaftStorageError> {
        let commit = commit.min(self.claim_max()).min(self.last_index());
        if commit <= self.hard_state.commit {
            return Ok(());
        }
        self.set_hard_state(HardState { commit, ..self.hard_state })
    }

    pub fn set_hard_state(&mut self, hs: HardState) -> Result<(), RaftStorageError> {
        self.usable()?;
        let current = self.hard_state;
        assert!(hs.term >= current.term, "hard state term goes down from {} to {}", current.term, hs.term);
        assert!(
            hs.term > current.term || current.vote == 0 || hs.vote == current.vote,
            "vote changes from {} to {} within term {}",
            current.vote,
            hs.vote,
            hs.term
        );
        let result = write_hard_state(&self.disk, &self.dir, &hs);
        self.latch(result)?;
        self.hard_state = hs;
        Ok(())
    }

    /// Writes the snapshot file durably; does not touch the log. The snapshot must not go
    /// back (`last_index` at or above the current snapshot's), must describe entries this
    /// log has (`last_index <= last_index()`), and must carry the log's term at its index.
    pub fn save_snapshot(&mut self, snap: &Snapshot) -> Result<(), RaftStorageError> {
        self.check_save(snap)?;
        let result = self.write_snapshot(snap);
        self.latch(result)
    }

    /// Checks `snap` as `save_snapshot` does and hands back its file write, to run on any
    /// thread (`SnapshotWrite::run`) and then `adopt_snapshot` here. The log and any other
    /// snapshot may change meanwhile: the write touches only its own file name.
    pub fn prepare_snapshot(&self, snap: &Snapshot) -> Result<SnapshotWrite<D>, RaftStorageError> {
        self.check_save(snap)?;
        Ok(SnapshotWrite::new(self.disk.clone(), self.dir.clone(), snap))
    }

    /// What `save_snapshot` requires of `snap` (see there).
    fn check_save(&self, snap: &Snapshot) -> Result<(), RaftStorageError> {
        self.usable()?;
        let index = snap.meta.last_index;
        assert!(index >= self.snapshot_index(), "snapshot at {index} is older than the saved one");
        assert!(index <= self.last_index(), "snapshot at {index} is beyond the log's last index");
        let term = self.term(index);
        assert!(
            term.is_none_or(|t| t == snap.meta.last_term),
            "snapshot term {} at {index}, the log says {term:?}",
            snap.meta.last_term
        );
        self.check_snapshot(snap)
    }

    /// Makes a snapshot written by `SnapshotWrite::run` the saved one. Must not be older than
    /// the saved snapshot (the caller aborts then: `discard_snapshot`). A failed write latches
    /// the storage, as it does in `save_snapshot`.
    /// Older snapshot files come back detached, for the caller to remove (`Leftovers`).
    pub fn adopt_snapshot(&mut self, write: SnapshotWrite<D>) -> Result<Leftovers, RaftStorageError> {
        self.usable()?;
        let result = write.outcome().map(|()| {
            assert!(write.meta.last_index >= self.snapshot_index(), "adopting a snapshot older than the saved one");
            self.record_snapshot_meta(&write.meta)
        });
        self.latch(result)
    }

    /// Drops a snapshot write that lost to a newer snapshot: its file goes (best effort; a
    /// file left behind is an older snapshot, which recovery passes over).
    pub fn discard_snapshot(&mut self, write: SnapshotWrite<D>) {
        let index = write.meta.last_index;
        if !self.snapshot_files.contains(&index) {
            let _ = self.disk.remove_file(&self.dir.join(snapshot_name(index)));
        }
    }

    fn check_snapshot(&self, snap: &Snapshot) -> Result<(), RaftStorageError> {
        assert!(snap.meta.membership.voters.len() <= PEERS_MAX, "more than PEERS_MAX voters");
        assert!(!snap.meta.membership.voters.contains(&0), "voter id 0");
        assert!(snap.meta.last_index <= INDEX_MAX, "snapshot index beyond INDEX_MAX");
        if snap.data.len() > SNAPSHOT_DATA_BYTES_MAX {
            return Err(RaftStorageError::SnapshotTooLarge {
                size_bytes: snap.data.len() as u64,
                max_bytes: SNAPSHOT_DATA_BYTES_MAX as u64,
            });
        }
        Ok(())
    }

    fn write_snapshot(&mut self, snap: &Snapshot) -> Result<(), RaftStorageError> {
        let mut write = SnapshotWrite::new(self.disk.clone(), self.dir.clone(), snap);
        write.run()?;
        self.record_snapshot(&write.meta)
    }

    /// A durable snapshot file becomes the saved snapshot; older files go.
    fn record_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), RaftStorageError> {
        self.record_snapshot_meta(meta).remove(&self.disk)
    }

    /// A durable snapshot file becomes the saved snapshot; older files are detached (see
    /// `Leftovers`) for the caller to remove.
    fn record_snapshot_meta(&mut self, meta: &SnapshotMeta) -> Leftovers {
        let index = meta.last_index;
        self.snapshot = Some(meta.clone());
        self.snapshot_files.insert(index);
        // Older snapshot files are superseded. Higher names can only be corrupt files recovery
        // skipped: they stay, as evidence for `commit_floor`, until a snapshot reaches them.
        let older: Vec<Index> = self.snapshot_files.range(..index).copied().collect();
        let mut leftovers = Leftovers::default();
        for old in older {
            self.snapshot_files.remove(&old);
            leftovers.add(self.dir.join(snapshot_name(old)), &self.dir);
        }
        leftovers
    }

    /// Removes whole segments whose entries are all `<= index`, oldest first, never the last
    /// segment. Requires a durable snapshot at or above `index`. Durable on return.
    pub fn compact_through(&mut self, index: Index) -> Result<(), RaftStorageError> {
        self.usable()?;
        assert!(index <= self.snapshot_index(), "compacting through {index}, beyond the snapshot");
        let result = self.detach_compacted(index).remove(&self.disk);
        self.latch(result)
    }

    /// Removes leftovers on this thread (a failure latches the storage, as `compact_through`'s
    /// does).
    pub fn remove_leftovers(&mut self, leftovers: &Leftovers) -> Result<(), RaftStorageError> {
        self.usable()?;
        let result = leftovers.remove(&self.disk);
        self.latch(result)
    }

    /// `compact_through` without the removal: the segments are forgotten here and handed
    /// back, to be removed off this thread (`Leftovers::remove`).
    pub fn compact_detached(&mut self, index: Index) -> Result<Leftovers, RaftStorageError> {
        self.usable()?;
        assert!(index <= self.snapshot_index(), "compacting through {index}, beyond the snapshot");
        Ok(self.detach_compacted(index))
    }

    fn detach_compacted(&mut self, index: Index) -> Leftovers {
        let mut leftovers = Leftovers::default();
        while self.segments.len() > 1 && self.segments[0].next_index() <= index + 1 {
            let segment = self.segments.remove(0);
            leftovers.add(segment.path.clone(), &self.log_dir);
            leftovers.discard(segment);
        }
        leftovers
    }

    /// A follower installs a leader's snapshot: saves it durably, then removes the whole log
    /// (newest segment first); the next append starts at `snap.meta.last_index + 1`. Durable
    /// on return. See the module docs for why this order is crash-safe and the other is not.
    pub fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), RaftStorageError> {
        self.usable()?;
        assert!(snap.meta.last_index >= self.snapshot_index(), "installing a snapshot older than the saved one");
        self.check_snapshot(snap)?;
        let result = self.install_unchecked(snap);
        self.latch(result)
    }

    fn install_unchecked(&mut self, snap: &Snapshot) -> Result<(), RaftStorageError> {
        // The mark comes down as Raft's floor does. First, durably: recovery after a crash
        // between the snapshot write and the removals cuts the entries past the snapshot
        // (they disagree with it), and a mark still above them would leave the node damaged
        // for nothing.
        let mark = ack_floor_after_install(self.acked.index(), snap.meta.last_index, self.last_index());
        if mark != self.acked.index() {
            self.acked.set(mark)?;
        }
        self.write_snapshot(snap)?;
        let removed = !self.segments.is_empty();
        while let Some(segment) = self.segments.pop() {
            self.disk.remove_file(&segment.path).map_err(|e| RaftStorageError::disk(&segment.path, None, e))?;
        }
        if removed || self.log_dir_dirty {
            self.disk.sync_dir(&self.log_dir).map_err(|e| RaftStorageError::disk(&self.log_dir, None, e))?;
            self.log_dir_dirty = false;
        }
        Ok(())
    }

    /// Executes one `PersistIo` in the order it prescribes (see its docs). Durable on
    /// return; the caller then reports `handle_persisted(io.id)`.
    pub fn persist(&mut self, io: &PersistIo) -> Result<(), RaftStorageError> {
        if let Some(s) = &io.snapshot {
            self.install_snapshot(s)?;
        }
        if let Some(t) = io.truncate_from {
            self.truncate_from(t)?;
        }
        // Interval mode: a commit index claimed on disk must not outrun the synced log, or a
        // power loss that keeps the claim but drops the entries under it would make every
        // node recover as damaged (`commit_floor` above its log) and no one could vote.
        if !io.entries.is_empty() {
            self.append(&io.entries, io.commit_claim.min(self.claim_max()))?;
            if self.config.sync_appends {
                // Raises the mark too: the caller acknowledges these entries once this
                // returns (`ack_mark`).
                self.sync()?;
            }
        }
        if let Some(s) = &io.adopt_snapshot {
            self.save_snapshot(s)?;
            self.compact_through(s.meta.last_index)?;
        }
        if let Some(mut hs) = io.hard_state {
            // The commit index in the hard state is a hint for recovery; lowering it is
            // safe (the same claim rule as above), but never below what is already on disk:
            // a floor recovery wrote there keeps a damaged node from voting.
            hs.commit = hs.commit.min(self.claim_max().max(self.hard_state.commit));
            self.set_hard_state(hs)?;
        }
        Ok(())
    }

    /// Writes the last index down as the acknowledgement mark if it is above it. The log
    /// must be synced. A log that ends below the mark (it lost acknowledged entries) leaves
    /// the mark where it is.
    fn raise_ack_mark(&mut self) -> Result<(), RaftStorageError> {
        self.usable()?;
        let last = self.last_index();
        debug_assert_eq!(last, self.durable_last_index(), "the mark is raised over a synced log only");
        if last <= self.acked.index() {
            return Ok(());
        }
        let result = self.acked.set(last);
        self.latch(result)
    }

    /// The highest index this node may have acknowledged, as written down (`ack_mark`).
    pub fn ack_mark(&self) -> Index {
        self.acked.index()
    }

    /// The last index whose record is known durable (the snapshot's if no record is).
    fn durable_last_index(&self) -> Index {
        let mut last = self.snapshot_index();
        for s in &self.segments {
            // Records are in offset order; count those that end within the durable bytes.
            let end = |k: usize| s.records.get(k + 1).map_or(s.len_bytes, |r| r.0);
            let (mut lo, mut hi) = (0, s.records.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                if end(mid) <= s.durable_bytes {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if lo > 0 {
                last = last.max(s.first_index + lo as u64 - 1);
            }
            if lo < s.records.len() {
                break;
            }
        }
        last
    }

    /// The highest commit index this mode may write down now (see `persist`).
    fn claim_max(&self) -> Index {
        if self.config.sync_appends {
            Index::MAX
        } else {
            self.durable_last_index()
        }
    }

    /// The last entry's index; the snapshot's when the log holds nothing above it.
    pub fn last_index(&self) -> Index {
        self.segments.last().map_or(self.snapshot_index(), |s| s.next_index() - 1)
    }

    /// The first index recovery would return an entry for: the snapshot's last index + 1,
    /// or 1. Entries at or below the snapshot that a segment still holds are not counted.
    pub fn first_index(&self) -> Index {
        self.snapshot_index() + 1
    }

    /// The term of the entry at `index`, if the log holds it (also at or below the
    /// snapshot, while a segment still holds it), or the snapshot's term at its index.
    pub fn term(&self, index: Index) -> Option<Term> {
        let position = self.segments.partition_point(|s| s.first_index <= index);
        let from_log = position.checked_sub(1).and_then(|k| self.segments[k].term(index));
        from_log.or_else(|| self.snapshot.as_ref().filter(|s| s.last_index == index).map(|s| s.last_term))
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The durable snapshot's metadata.
    pub fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }

    /// The error that made this storage stop, if one did.
    pub fn failure(&self) -> Option<&RaftStorageError> {
        self.failed.as_ref()
    }

    /// Checks the in-memory invariants; panics naming the one that broke.
    pub fn check_invariants(&self) {
        let snapshot = self.snapshot_index();
        if let Some(first) = self.segments.first() {
            assert!(
                first.first_index <= snapshot + 1,
                "log starts at {} past the snapshot {snapshot}",
                first.first_index
            );
            assert!(self.last_index() >= snapshot, "log ends at {} below the snapshot {snapshot}", self.last_index());
        }
        let mut previous_term = 0;
        for (k, segment) in self.segments.iter().enumerate() {
            if k + 1 < self.segments.len() {
                assert!(!segment.records.is_empty(), "empty segment {} before the last", segment.path.display());
                assert_eq!(self.segments[k + 1].first_index, segment.next_index(), "segments not contiguous");
            }
            assert!(segment.durable_bytes <= segment.len_bytes);
            let mut previous_offset = None;
            for &(offset, term) in &segment.records {
                assert!(offset >= SEGMENT_HEADER_BYTES as u64 && offset < segment.len_bytes);
                assert!(previous_offset.is_none_or(|p| p < offset), "record offsets not ascending");
                assert!(term >= previous_term, "terms go down in {}", segment.path.display());
                previous_offset = Some(offset);
                previous_term = term;
            }
        }
        if let (Some(meta), Some(term)) = (&self.snapshot, self.term(snapshot)) {
            assert_eq!(term, meta.last_term, "log and snapshot disagree at {snapshot}");
        }
    }

    fn snapshot_index(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |s| s.last_index)
    }

    fn last_term(&self) -> Term {
        self.term(self.last_index()).unwrap_or(0)
    }

    fn usable(&self) -> Result<(), RaftStorageError> {
        match &self.failed {
            Some(cause) => Err(RaftStorageError::Failed { cause: Box::new(cause.clone()) }),
            None => Ok(()),
        }
    }

    fn latch<T>(&mut self, result: Result<T, RaftStorageError>) -> Result<T, RaftStorageError> {
        if let Err(error) = &result {
            if self.failed.is_none() {
                self.failed = Some(error.clone());
            }
        }
        result
    }
}
