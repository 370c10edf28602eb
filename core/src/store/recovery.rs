//! Recovery: rebuild a store's index from its block files, verifying every record, and cut at
//! the first invalid or missing record.
//!
//! Why cut rather than skip: the OS may persist a later write before an earlier one, so a
//! hole means everything after it is suspect (DESIGN §4). Recovery drops every record after
//! the first bad one and every later block, and reports which sequences it knows existed and
//! are now gone (from the state file and from what it can still read past the cut).
//!
//! Why rewrite past the durable mark: bytes written after the last state file may exist only
//! in the page cache of a process whose fsync failed (Linux drops the dirty pages and keeps
//! serving them). They read back as valid records, and a sync does nothing for them; writing
//! them again does. With `repair`, every verified record past the state file's mark is written
//! back in place from the verified bytes, and `open` syncs it.
//!
//! Invariants of a recovered store: message and skip records form one contiguous run of
//! sequences across blocks; block indexes are consecutive; each block header's `first_seq`
//! equals the next sequence after the previous block and its `prev_end_bytes` where the
//! previous block's records end; every tombstone refers to an earlier sequence. Disk errors
//! (EIO) fail recovery rather than cut: an unreadable sector is not evidence that data was
//! never written.

use super::block::{block_name, parse_block_name, Block};
use super::scan::{scan_records, ScanStop};
use super::seqset::SeqSet;
use super::StoreError;
use crate::disk::{Disk, DiskFile, OpenMode};
use crate::format::block::{
    decode_record_head, record_len, BlockHeader, RecordKind, BLOCK_HEADER_BYTES, RECORD_HEADER_BYTES,
};
use crate::format::state::{StateFile, STATE_BYTES_MAX};
use crate::format::FormatError;
use std::fmt;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

pub(crate) const STATE_FILE: &str = "state.db";
pub(crate) const STATE_TMP_FILE: &str = "state.db.tmp";

/// Why recovery cut the store at some point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CutReason {
    /// The bytes are not a valid record (torn, zeroed, flipped, truncated).
    BadRecord(FormatError),
    /// The block file's header is invalid.
    BadBlockHeader(FormatError),
    /// The header names another block than the file name does.
    BlockIndexMismatch { in_header: u32 },
    /// A block is missing from the sequence of block files.
    MissingBlock { index: u32 },
    /// A block starts at another sequence than the previous block ended.
    BlockStartMismatch { expected_seq: u64, header_seq: u64 },
    /// A message or skip record does not continue the sequence.
    SequenceGap { expected_seq: u64, found_seq: u64 },
    /// A tombstone names a sequence not yet written.
    TombstoneAhead { seq: u64 },
    /// Records continue past what a block can index (4 GiB).
    BlockTooLong { offset: u64 },
    /// The previous block's records end elsewhere than this block's header says they did
    /// when it was created: the previous block lost its tail.
    PreviousBlockEnds { expected_bytes: u64, found_bytes: u64 },
}

impl fmt::Display for CutReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CutReason::BadRecord(e) => write!(f, "invalid record: {e}"),
            CutReason::BadBlockHeader(e) => write!(f, "invalid block header: {e}"),
            CutReason::BlockIndexMismatch { in_header } => {
                write!(f, "header names block {in_header}")
            }
            CutReason::MissingBlock { index } => write!(f, "block {index} is missing"),
            CutReason::BlockStartMismatch { expected_seq, header_seq } => {
                write!(f, "block starts at sequence {header_seq}, expected {expected_seq}")
            }
            CutReason::SequenceGap { expected_seq, found_seq } => {
                write!(f, "record has sequence {found_seq}, expected {expected_seq}")
            }
            CutReason::TombstoneAhead { seq } => {
                write!(f, "tombstone for unwritten sequence {seq}")
            }
            CutReason::BlockTooLong { offset } => write!(f, "block continues past {offset}, beyond 4 GiB"),
            CutReason::PreviousBlockEnds { expected_bytes, found_bytes } => {
                write!(f, "previous block ends at {found_bytes}, this block's header says {expected_bytes}")
            }
        }
    }
}

/// Where recovery cut: every record from `offset` of `file` on, and every later block, was
/// dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    pub file: PathBuf,
    pub offset: u64,
    /// The sequence the next record should have carried, if a block header had said.
    pub expected_seq: Option<u64>,
    pub reason: CutReason,
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.file.display(), self.offset)?;
        if let Some(seq) = self.expected_seq {
            write!(f, " (expected sequence {seq})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateFileStatus {
    Missing,
    Valid {
        first_seq: u64,
        last_seq: u64,
    },
    /// Present but unusable; recovery went on from the blocks alone.
    Invalid {
        error: FormatError,
    },
}

/// What recovery found and did. A clean restart has `cut == None` and `lost` empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    pub dir: PathBuf,
    pub blocks_scanned: u32,
    pub records_scanned: u64,
    pub bytes_scanned: u64,
    /// Checksum mismatches that did not repeat on a second read (flips on the read path).
    pub transient_mismatches: u32,
    pub state_file: StateFileStatus,
    pub cut: Option<Cut>,
    /// Block files dropped whole because they came after the cut.
    pub dropped_blocks: Vec<PathBuf>,
    /// Ranges of sequences known to have been stored (by the state file, or by records still
    /// readable past the cut) that the recovered store no longer holds. Sequences written
    /// after the last state file and unreadable past the cut leave no trace to report.
    pub lost: Vec<(u64, u64)>,
    /// Deletes the state file recorded that no surviving tombstone did.
    pub deletes_from_state: u64,
    /// A trailing run of sequences the state file records as holding no message (below its
    /// first sequence, or deleted), which the blocks no longer carry: an interrupted
    /// `truncate_after` cut away the records that said so. Kept as a gap (`open` writes a
    /// compact and a skip record for it), not reported lost.
    pub restored_gap: Option<(u64, u64)>,
    /// Errors reading what lay past the cut (for the report only; `lost` may be incomplete).
    pub unread_past_cut: Vec<String>,
    /// Names in the directory that are not part of the store; left alone.
    pub ignored_files: Vec<String>,
}

impl RecoveryReport {
    /// Total number of sequences in `lost`.
    pub fn lost_count(&self) -> u64 {
        self.lost.iter().map(|&(first, last)| last - first + 1).sum()
    }
}

/// A trailing gap the state file knows of: move the front to `front` if set (everything from
/// `next_seq` below it was purged), then skip through `last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Restore {
    pub front: Option<u64>,
    pub last: u64,
}

pub(crate) struct Recovered<F> {
    pub blocks: Vec<Block<F>>,
    /// Index of the block holding the highest compact record, if any survived.
    pub compact_block: Option<u32>,
    pub first_seq: u64,
    pub next_seq: u64,
    pub deleted: SeqSet,
    /// The trailing gap to restore (`report.restored_gap`); `open` writes its records, and
    /// nothing else here includes it yet.
    pub restore: Option<Restore>,
    pub report: RecoveryReport,
}

/// Where the cut falls relative to the block files, by position in the sorted listing.
#[derive(Clone, Copy)]
enum CutAt {
    /// Inside the last kept block, which is truncated at the cut offset.
    Within { position: usize },
    /// Before the file at `position`: it and every later block file are dropped.
    Before { position: usize },
}

/// What the block scan accumulates across blocks.
struct Walk {
    /// The sequence the next message or skip record must carry; `None` before the first
    /// block header is read.
    next_seq: Option<u64>,
    compact_max: u64,
    compact_block: Option<u32>,
    deleted: SeqSet,
    /// Highest sequence seen in anything read, including what lies past the cut.
    observed_max: u64,
}

/// Rebuilds the index of the store in `dir`. With `repair`, the cut is applied on disk (the
/// cut block truncated and synced, later blocks removed, the directory synced) before this
/// returns, so new appends never land behind stale records; without it the disk is only read.
pub(crate) fn recover<D: Disk>(disk: &D, dir: &Path, repair: bool) -> Result<Recovered<D::File>, StoreError> {
    let dir_err = |e| StoreError::disk(dir, None, e);
    let mut report = RecoveryReport {
        dir: dir.to_path_buf(),
        blocks_scanned: 0,
        records_scanned: 0,
        bytes_scanned: 0,
        transient_mismatches: 0,
        state_file: StateFileStatus::Missing,
        cut: None,
        dropped_blocks: Vec::new(),
        lost: Vec::new(),
        deletes_from_state: 0,
        restored_gap: None,
        unread_past_cut: Vec::new(),
        ignored_files: Vec::new(),
    };
    let mut indexes = Vec::new();
    let mut state_present = false;
    for name in disk.list_dir(dir).map_err(dir_err)? {
        if let Some(index) = parse_block_name(&name) {
            indexes.push(index);
        } else if name == STATE_FILE {
            state_present = true;
        } else if name == STATE_TMP_FILE {
            // A state write that never completed; the rename is what publishes it.
            if repair {
                disk.remove_file(&dir.join(&name)).map_err(dir_err)?;
            }
        } else {
            report.ignored_files.push(name);
        }
    }
    let state = if state_present { read_state(disk, &dir.join(STATE_FILE), &mut report)? } else { None };
    // Without a valid state file nothing is known durable: everything is rewritten.
    let mark = state.as_ref().map(|s| (s.mark_block, s.mark_end_bytes));

    let mode = if repair { OpenMode::ReadWrite } else { OpenMode::Read };
    let mut walk =
        Walk { next_seq: None, compact_max: 0, compact_block: None, deleted: SeqSet::new(), observed_max: 0 };
    let mut blocks: Vec<Block<D::File>> = Vec::new();
    let mut cut_at: Option<CutAt> = None;
    for (position, &index) in indexes.iter().enumerate() {
        let path = dir.join(block_name(index));
        if let Some(previous) = blocks.last() {
            if index != previous.index + 1 {
                let reason = CutReason::MissingBlock { index: previous.index + 1 };
                report.cut = Some(cut_here(&path, 0, &walk, reason));
                cut_at = Some(CutAt::Before { position });
                break;
            }
        }
        let file = disk.open(&path, mode).map_err(|e| StoreError::disk(&path, None, e))?;
        report.blocks_scanned += 1;
        let (header, transient) = read_header(&file, &path)?;
        report.transient_mismatches += u32::from(transient);
        let header = match header {
            Ok(header) => header,
            Err(reason) => {
                report.cut = Some(cut_here(&path, 0, &walk, reason));
                cut_at = Some(CutAt::Before { position });
                break;
            }
        };
        let previous_end = blocks.last().map(|b| b.end_bytes);
        let header_problem = if header.index != index {
            Some(CutReason::BlockIndexMismatch { in_header: header.index })
        } else if let Some(end) =
            previous_end.filter(|&end| header.prev_end_bytes != 0 && end != u64::from(header.prev_end_bytes))
        {
            Some(CutReason::PreviousBlockEnds { expected_bytes: u64::from(header.prev_end_bytes), found_bytes: end })
        } else {
            walk.next_seq
                .filter(|&expected| expected != header.first_seq)
                .map(|expected_seq| CutReason::BlockStartMismatch { expected_seq, header_seq: header.first_seq })
        };
        if let Some(reason) = header_problem {
            report.cut = Some(cut_here(&path, 0, &walk, reason));
            cut_at = Some(CutAt::Before { position });
            break;
        }
        let next = walk.next_seq.get_or_insert(header.first_seq);
        let mut block = Block::new(index, path, file, header.first_seq);
        // Past the durable mark, write back what is verified (module docs).
        let rewrite_from = if !repair {
            None
        } else {
            match mark {
                Some((mark_block, _)) if index < mark_block => None,
                Some((mark_block, mark_end)) if index == mark_block => Some(mark_end.max(BLOCK_HEADER_BYTES as u64)),
                _ => Some(0),
            }
        };
        if rewrite_from == Some(0) {
            let path = &block.path;
            block.file.write_at(&header.encode(), 0).map_err(|e| StoreError::disk(path, Some(0), e))?;
        }
        block.dirty = rewrite_from.is_some();
        let msgs = &mut block.msgs;
        let outcome =
            scan_records(&**block.file, &block.path, BLOCK_HEADER_BYTES as u64, rewrite_from, |offset, record| {
                match record.kind {
                    RecordKind::Message | RecordKind::Skip if record.seq != *next => {
                        ControlFlow::Break(CutReason::SequenceGap { expected_seq: *next, found_seq: record.seq })
                    }
                    RecordKind::Message => {
                        let len = record_len(record.subject.len(), record.headers.len(), record.payload.len());
                        if offset + len > u64::from(u32::MAX) {
                            // The store never writes past BLOCK_SIZE_BYTES_MAX plus one record; a
                            // block this long was not written by it.
                            return ControlFlow::Break(CutReason::BlockTooLong { offset });
                        }
                        msgs.push(record.seq, offset, len as u32);
                        *next += 1;
                        ControlFlow::Continue(())
                    }
                    RecordKind::Skip => {
                        walk.deleted.insert_range(record.seq, record.last_seq());
                        *next = record.last_seq() + 1;
                        ControlFlow::Continue(())
                    }
                    RecordKind::Tombstone if record.seq >= *next => {
                        ControlFlow::Break(CutReason::TombstoneAhead { seq: record.seq })
                    }
                    RecordKind::Tombstone => {
                        walk.deleted.insert(record.seq);
                        ControlFlow::Continue(())
                    }
                    RecordKind::Compact => {
                        if record.seq >= walk.compact_max {
                            walk.compact_block = Some(index);
                        }
                        walk.compact_max = walk.compact_max.max(record.seq);
                        *next = (*next).max(record.seq);
                        ControlFlow::Continue(())
                    }
                }
            })?;
        report.records_scanned += outcome.records;
        report.bytes_scanned += outcome.end_bytes;
        report.transient_mismatches += outcome.transient_mismatches;
        block.set_recovered_end(outcome.end_bytes);
        blocks.push(block);
        if let Some(stop) = outcome.stop {
            let (offset, reason) = match stop {
                ScanStop::Invalid { offset, error } => (offset, CutReason::BadRecord(error)),
                ScanStop::Rejected { offset, reason } => (offset, reason),
            };
            report.cut = Some(cut_here(&blocks.last().expect("just pushed").path, offset, &walk, reason));
            cut_at = Some(CutAt::Within { position });
            break;
        }
    }

    if let Some(at) = cut_at {
        let cut = report.cut.clone().expect("cut_at is set with report.cut");
        // Learn what lay past the cut, for the report only.
        // Best effort: what is unreadable past the cut is about to be dropped anyway, and an
        // error reading it must not stop the store from opening (it would, forever).
        let first_dropped = match at {
            CutAt::Within { position } => {
                let block = blocks.last().expect("the cut block is the last kept");
                match observe_past(&**block.file, &block.path, cut.offset) {
                    Ok(max) => walk.observed_max = walk.observed_max.max(max),
                    Err(error) => report.unread_past_cut.push(error.to_string()),
                }
                position + 1
            }
            CutAt::Before { position } => position,
        };
        for &index in &indexes[first_dropped..] {
            let path = dir.join(block_name(index));
            let observed =
                disk.open(&path, OpenMode::Read).map_err(|e| StoreError::disk(&path, None, e)).and_then(|file| {
                    let mut max = 0;
                    if let Ok((Ok(header), _)) = read_header(&file, &path) {
                        max = header.first_seq.saturating_sub(1);
                    }
                    Ok(max.max(observe_past(&file, &path, BLOCK_HEADER_BYTES as u64)?))
                });
            match observed {
                Ok(max) => walk.observed_max = walk.observed_max.max(max),
                Err(error) => report.unread_past_cut.push(error.to_string()),
            }
            report.dropped_blocks.push(path);
        }
        if repair {
            // Tail blocks first, so a crash part-way leaves a contiguous prefix.
            for path in report.dropped_blocks.iter().rev() {
                disk.remove_file(path).map_err(|e| StoreError::disk(path, None, e))?;
            }
            if let CutAt::Within { .. } = at {
                let block = blocks.last().expect("the cut block is the last kept");
                let path = &block.path;
                block.file.set_len(cut.offset).map_err(|e| StoreError::disk(path, Some(cut.offset), e))?;
                block.file.sync_data().map_err(|e| StoreError::disk(path, None, e))?;
            }
            if !report.dropped_blocks.is_empty() {
                disk.sync_dir(dir).map_err(dir_err)?;
            }
        }
    }
    if let Some(next_seq) = walk.next_seq {
        walk.observed_max = walk.observed_max.max(next_seq - 1);
    }

    // The stream's range. A brand-new or wholly lost store starts where the state file says,
    // or at 1.
    let state_first = state.as_ref().map_or(1, |s| s.first_seq);
    let next_seq = walk.next_seq.unwrap_or(state_first);
    let start_seq = blocks.first().map_or(next_seq, |b| b.first_seq);
    let mut first_seq = start_seq.max(walk.compact_max).max(state_first).min(next_seq);
    // Sequences below the first block that nothing accounts for were lost from the front.
    let accounted_front = walk.compact_max.max(state_first);
    if let Some(first_block) = blocks.first() {
        if first_block.first_seq > accounted_front {
            report.lost.push((accounted_front, first_block.first_seq - 1));
            first_seq = first_seq.max(first_block.first_seq);
        }
    }
    let mut deleted = walk.deleted;
    deleted.remove_below(first_seq);
    if let Some(state) = &state {
        for &(first, last) in &state.deleted {
            let last = last.min(next_seq - 1);
            let first = first.max(first_seq);
            if first <= last {
                report.deletes_from_state += deleted.insert_range(first, last);
            }
        }
        walk.observed_max = walk.observed_max.max(state.last_seq);
    }
    // `truncate_after` writes the state file before it cuts, so a truncation cut short may
    // leave the blocks ending before the state file's last sequence: the cut removed a skip
    // record, or the compact record that moved the front, and the shorter ones written again
    // were lost. If the state file says no sequence from where the blocks end through its last
    // held a message (below its front, or deleted), they are kept as a gap rather than handed
    // to new appends.
    let restore = state.as_ref().and_then(|state| {
        if state.last_seq < next_seq {
            return None;
        }
        let skip_from = next_seq.max(state.first_seq);
        let deleted = skip_from > state.last_seq
            || state.deleted.iter().any(|&(first, last)| first <= skip_from && state.last_seq <= last);
        let front = (next_seq < state.first_seq).then_some(state.first_seq);
        deleted.then_some(Restore { front, last: state.last_seq })
    });
    let mut lost_from = next_seq;
    if let Some(restore) = restore {
        report.restored_gap = Some((next_seq, restore.last));
        lost_from = restore.last + 1;
    }
    if walk.observed_max >= lost_from {
        report.lost.push((lost_from, walk.observed_max));
    }
    let compact_block = walk.compact_block.filter(|i| blocks.iter().any(|b| b.index == *i));
    Ok(Recovered { blocks, compact_block, first_seq, next_seq, deleted, restore, report })
}

fn cut_here(file: &Path, offset: u64, walk: &Walk, reason: CutReason) -> Cut {
    Cut { file: file.to_path_buf(), offset, expected_seq: walk.next_seq, reason }
}

/// Reads and validates a block header. `Ok(Err(reason))` means the header is bad (a cut);
/// `Err` means the disk failed. An invalid header is read a second time before it counts: a
/// flip on the read path is not corruption. The flag says a second read was needed and fixed it.
fn read_header<F: DiskFile>(file: &F, path: &Path) -> Result<(Result<BlockHeader, CutReason>, bool), StoreError> {
    let len = file.len().map_err(|e| StoreError::disk(path, None, e))?;
    let mut bytes = [0u8; BLOCK_HEADER_BYTES];
    let have = (len as usize).min(BLOCK_HEADER_BYTES);
    let mut decoded = Err(FormatError::BadMagic);
    for attempt in 0..2 {
        file.read_exact_at(&mut bytes[..have], 0).map_err(|e| StoreError::disk(path, Some(0), e.with_path(path)))?;
        decoded = BlockHeader::decode(&bytes[..have]);
        if decoded.is_ok() {
            return Ok((decoded.map_err(CutReason::BadBlockHeader), attempt > 0));
        }
        if have < BLOCK_HEADER_BYTES {
            break;
        }
    }
    Ok((decoded.map_err(CutReason::BadBlockHeader), false))
}

/// The highest message or skip sequence readable in `file` from `offset` on, stepping over a
/// record whose head is sane even if its checksum is not. Best effort, for reporting only:
/// only records that pass their checksum count as evidence of a sequence.
fn observe_past<F: DiskFile>(file: &F, path: &Path, offset: u64) -> Result<u64, StoreError> {
    let mut max_seq = 0u64;
    let mut at = offset;
    let len = file.len().map_err(|e| StoreError::disk(path, None, e))?;
    // Each pass moves `at` forward by at least one record (>= 36 bytes) or stops.
    while at < len {
        let outcome = scan_records::<_, ()>(file, path, at, None, |_, record| {
            if matches!(record.kind, RecordKind::Message | RecordKind::Skip) {
                max_seq = max_seq.max(record.last_seq());
            }
            ControlFlow::Continue(())
        })?;
        let Some(ScanStop::Invalid { offset: bad, .. }) = outcome.stop else {
            break;
        };
        if bad + RECORD_HEADER_BYTES as u64 > len {
            break;
        }
        let mut head = [0u8; RECORD_HEADER_BYTES];
        file.read_exact_at(&mut head, bad).map_err(|e| StoreError::disk(path, Some(bad), e.with_path(path)))?;
        match decode_record_head(&head) {
            Ok(head) => at = bad + u64::from(head.len_bytes),
            Err(_) => break,
        }
    }
    Ok(max_seq)
}

fn read_state<D: Disk>(disk: &D, path: &Path, report: &mut RecoveryReport) -> Result<Option<StateFile>, StoreError> {
    let file = disk.open(path, OpenMode::Read).map_err(|e| StoreError::disk(path, None, e))?;
    let len = file.len().map_err(|e| StoreError::disk(path, None, e))?;
    if len > STATE_BYTES_MAX as u64 {
        let error = FormatError::LengthTooLarge { declared_bytes: len, max_bytes: STATE_BYTES_MAX as u64 };
        report.state_file = StateFileStatus::Invalid { error };
        return Ok(None);
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0).map_err(|e| StoreError::disk(path, Some(0), e.with_path(path)))?;
    let decoded = StateFile::decode(&bytes).or_else(|first_error| {
        // Re-read once before believing a checksum failure.
        match first_error {
            FormatError::BadChecksum { .. } => {
                file.read_exact_at(&mut bytes, 0).map_err(|_| first_error.clone())?;
                StateFile::decode(&bytes)
            }
            other => Err(other),
        }
    });
    match decoded {
        Ok(state) => {
            report.state_file = StateFileStatus::Valid { first_seq: state.first_seq, last_seq: state.last_seq };
            Ok(Some(state))
        }
        Err(error) => {
            report.state_file = StateFileStatus::Invalid { error };
            Ok(None)
        }
    }
}
