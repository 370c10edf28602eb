//! Recovery of a group directory: hard state, snapshot, and a log walk that cuts at the first
//! invalid or missing record. The rules, and why, are in the parent module's docs.

use super::ack_mark::AckMarkFile;
use super::files::{
    is_own_tmp, parse_segment_name, parse_snapshot_name, read_small_file, segment_name, write_hard_state, Reader,
    HARD_STATE_FILES, LOG_DIR,
};
use super::*;
use crate::format::raftlog::{
    decode_hard_state, decode_record, decode_record_head, decode_snapshot, HARD_STATE_BYTES, RECORD_HEADER_BYTES,
    SNAPSHOT_FILE_BYTES_MAX,
};
use crate::format::FormatError;
use bytes::Bytes;

pub(super) fn open<D: Disk>(
    disk: D,
    dir: &Path,
    config: LogConfig,
) -> Result<(RaftStorage<D>, Recovered), RaftStorageError> {
    if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&config.segment_bytes) {
        return Err(RaftStorageError::InvalidConfig {
            reason: format!("segment_bytes {} outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}", config.segment_bytes),
        });
    }
    let log_dir = dir.join(LOG_DIR);
    disk.create_dir_all(&log_dir).map_err(dir_err(&log_dir))?;
    // Every ancestor's entry is synced at every open, not only when created: a first open
    // that failed after creating them must not leave names a crash can lose with the log.
    let ancestors: Vec<&Path> = log_dir.ancestors().skip(1).collect();
    for path in ancestors.into_iter().rev() {
        disk.sync_dir(path).map_err(dir_err(path))?;
    }

    let names = disk.list_dir(dir).map_err(dir_err(dir))?;
    let acked = AckMarkFile::open(&disk, dir)?;
    for name in names.iter().filter(|n| is_own_tmp(n)) {
        let path = dir.join(name);
        disk.remove_file(&path).map_err(dir_err(&path))?;
    }

    let mut hard_state = read_hard_state(&disk, dir, &names)?;
    let snapshots = read_snapshots(&disk, dir, &names)?;
    for index in &snapshots.stale {
        let path = dir.join(snapshot_name(*index));
        disk.remove_file(&path).map_err(dir_err(&path))?;
    }
    // Synced at every open: the removals above, and the mark file's name (created now, or by
    // an earlier incarnation that may have stopped before syncing it), which must be durable
    // before a mark in it is relied on.
    disk.sync_dir(dir).map_err(dir_err(dir))?;

    let meta = snapshots.snapshot.as_ref().map(|s| s.meta.clone());
    let known = meta.as_ref().map_or(0, |m| m.last_index).max(snapshots.files.last().copied().unwrap_or(0));
    // A cut destroys the records whose claims say how far the log was committed; the floor
    // they give is written into the hard state first, so the node stays damaged (no vote)
    // across later restarts until a leader has repaired its log. Without this, a second
    // restart would find no evidence and let a node that lost committed entries vote.
    let mut record_floor = |claims_max: Index| -> Result<(), RaftStorageError> {
        let floor = claims_max.max(known);
        if floor > hard_state.commit {
            let hs = HardState { commit: floor, ..hard_state };
            write_hard_state(&disk, dir, &hs)?;
            hard_state = hs;
        }
        Ok(())
    };
    let log = recover_log(&disk, &log_dir, meta.as_ref(), acked.index(), &mut record_floor)?;
    let commit_floor = log.claims_max.max(hard_state.commit).max(known);
    let mut storage = RaftStorage {
        disk,
        dir: dir.to_path_buf(),
        log_dir,
        config,
        segments: log.segments,
        snapshot: meta,
        snapshot_files: snapshots.files,
        hard_state,
        acked,
        log_dir_dirty: false,
        failed: None,
    };
    // The log is synced now and its entries will be acknowledged as they are; a log that
    // ends below the mark lost acknowledged entries and keeps it (`ack_mark.rs`).
    let mark = storage.last_index().max(storage.acked.index());
    storage.acked.set(mark)?;
    storage.check_invariants();
    let recovered = Recovered {
        hard_state,
        snapshot: snapshots.snapshot,
        entries: log.entries,
        commit_floor,
        ack_mark: storage.acked.index(),
        cut: log.cut,
        corrupt_snapshot: (!snapshots.corrupt.is_empty()).then(|| snapshots.corrupt.join("; ")),
    };
    Ok((storage, recovered))
}

fn dir_err(path: &Path) -> impl Fn(crate::disk::DiskError) -> RaftStorageError + '_ {
    move |e| RaftStorageError::disk(path, None, e)
}

/// Reads a whole file of at most `max_bytes` and decodes it; a file that does not decode is
/// read and decoded a second time before the failure counts.
fn read_verified<F: DiskFile, T>(
    file: &F,
    path: &Path,
    max_bytes: usize,
    decode: impl Fn(Vec<u8>) -> Result<T, FormatError>,
) -> Result<Result<T, FormatError>, RaftStorageError> {
    let mut result = Err(FormatError::BadMagic);
    for _ in 0..2 {
        result = match read_small_file(file, path, max_bytes)? {
            Ok(bytes) => decode(bytes),
            Err(len) => Err(FormatError::LengthTooLarge { declared_bytes: len, max_bytes: max_bytes as u64 }),
        };
        if result.is_ok() {
            break;
        }
    }
    Ok(result)
}

/// The greater valid copy by (term, voted, commit), `hard.0` on a tie: `hard.0` is written
/// first, so it is never older. Raft's hard state only grows in that order.
fn read_hard_state<D: Disk>(disk: &D, dir: &Path, names: &[String]) -> Result<HardState, RaftStorageError> {
    let key = |hs: &HardState| (hs.term, hs.vote != 0, hs.commit);
    let mut best: Option<HardState> = None;
    let mut invalid = Vec::new();
    for name in HARD_STATE_FILES {
        if !names.iter().any(|n| n == name) {
            continue;
        }
        let path = dir.join(name);
        let file = disk.open(&path, OpenMode::Read).map_err(|e| RaftStorageError::disk(&path, None, e))?;
        match read_verified(&file, &path, HARD_STATE_BYTES, |bytes| decode_hard_state(&bytes))? {
            Ok(hs) => {
                if best.is_none_or(|b| key(&hs) > key(&b)) {
                    best = Some(hs);
                }
            }
            Err(error) => invalid.push((path, error)),
        }
    }
    match best {
        Some(hs) => Ok(hs),
        None if invalid.is_empty() => Ok(HardState::default()),
        None => Err(RaftStorageError::Corrupt { what: "hard state (both copies)", files: invalid }),
    }
}

struct SnapshotScan {
    snapshot: Option<Snapshot>,
    /// `path: reason` of each snapshot file above the chosen one that failed verification.
    corrupt: Vec<String>,
    /// Files kept: the chosen one and the corrupt ones above it.
    files: BTreeSet<Index>,
    /// Files below the chosen one: superseded, to be removed.
    stale: Vec<Index>,
}

fn read_snapshots<D: Disk>(disk: &D, dir: &Path, names: &[String]) -> Result<SnapshotScan, RaftStorageError> {
    let mut indexes: Vec<Index> = names.iter().filter_map(|n| parse_snapshot_name(n)).collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    let mut scan = SnapshotScan { snapshot: None, corrupt: Vec::new(), files: BTreeSet::new(), stale: Vec::new() };
    for index in indexes {
        if scan.snapshot.is_some() {
            scan.stale.push(index);
            continue;
        }
        scan.files.insert(index);
        let path = dir.join(snapshot_name(index));
        let file = disk.open(&path, OpenMode::Read).map_err(|e| RaftStorageError::disk(&path, None, e))?;
        match read_verified(&file, &path, SNAPSHOT_FILE_BYTES_MAX, |bytes| decode_snapshot(&Bytes::from(bytes)))? {
            Ok(snapshot) if snapshot.meta.last_index == index => scan.snapshot = Some(snapshot),
            Ok(snapshot) => {
                scan.corrupt.push(format!("{}: holds index {}", path.display(), snapshot.meta.last_index));
            }
            Err(error) => scan.corrupt.push(format!("{}: {error}", path.display())),
        }
    }
    Ok(scan)
}

struct LogScan<F> {
    segments: Vec<Segment<F>>,
    /// The entries above the snapshot.
    entries: Vec<Entry>,
    claims_max: Index,
    cut: Option<LogCut>,
}

/// What the walk knows while it goes.
struct Walk<F> {
    scan: LogScan<F>,
    snapshot: Option<(Index, Term)>,
    last_term: Option<Term>,
    /// Records above this index are written back as they verify (see `recover_log`).
    known_durable: Index,
}

/// Walks and cuts the log (module docs, recovery step 3).
///
/// Every kept record above `known_durable` (the acknowledgement mark as read: every entry at
/// or below it was synced before the mark was written) is written back in place from the
/// bytes that verified, and a segment that starts above it gets its header written back,
/// before the kept segments are synced. After a process restart without a machine crash the
/// page cache may serve records whose fsync failed: Linux drops such pages from the
/// writeback and keeps serving them, so a sync now would succeed with nothing to write and
/// they would be believed durable (fsyncgate). Written again, they are dirty, and the sync
/// writes them or fails. The store does the same past its durable mark.
fn recover_log<D: Disk>(
    disk: &D,
    log_dir: &Path,
    snapshot: Option<&SnapshotMeta>,
    known_durable: Index,
    record_floor: &mut dyn FnMut(Index) -> Result<(), RaftStorageError>,
) -> Result<LogScan<D::File>, RaftStorageError> {
    let base = snapshot.map_or(0, |s| s.last_index);
    let names = disk.list_dir(log_dir).map_err(|e| RaftStorageError::disk(log_dir, None, e))?;
    let mut indexes: Vec<Index> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    indexes.sort_unstable();
    let mut walk = Walk {
        scan: LogScan { segments: Vec::new(), entries: Vec::new(), claims_max: 0, cut: None },
        snapshot: snapshot.map(|s| (s.last_index, s.last_term)),
        last_term: None,
        known_durable,
    };
    let mut first_dropped = indexes.len();
    let mut cut_within = false;
    for (position, &index) in indexes.iter().enumerate() {
        let path = log_dir.join(segment_name(index));
        let err = |e| RaftStorageError::disk(&path, None, e);
        let file = disk.open(&path, OpenMode::ReadWrite).map_err(err)?;
        let len = file.len().map_err(err)?;
        let expected_index = walk.scan.segments.last().map_or(base + 1, |s| s.next_index());
        let reason = match read_header(&file, &path, len)? {
            Err(error) => Some(LogCutReason::BadSegmentHeader(error)),
            Ok(header) if header.first_index != index => {
                Some(LogCutReason::SegmentNameMismatch { in_header: header.first_index })
            }
            Ok(_) if walk.scan.segments.is_empty() && index > base + 1 => {
                Some(LogCutReason::LogStartsLate { first_index: index })
            }
            Ok(_) if !walk.scan.segments.is_empty() && index != expected_index => {
                Some(LogCutReason::SegmentStartMismatch { expected: expected_index, found: index })
            }
            Ok(header) => {
                if index > known_durable {
                    file.write_at(&header.encode(), 0).map_err(err)?;
                }
                None
            }
        };
        if let Some(reason) = reason {
            walk.scan.cut = Some(LogCut { file: path, offset: 0, expected_index, reason });
            first_dropped = position;
            break;
        }
        let segment = Segment {
            first_index: index,
            path,
            file,
            records: Vec::new(),
            len_bytes: SEGMENT_HEADER_BYTES as u64,
            durable_bytes: 0,
            unsynced: false,
        };
        let cut = walk.records(segment, len)?;
        if cut.is_some() {
            walk.scan.cut = cut;
            first_dropped = position + 1;
            cut_within = true;
            break;
        }
    }
    let mut scan = walk.scan;

    // Learn the commit claims of what lies past the cut. Best effort: those bytes are about to
    // be dropped, and an error reading them must not stop the log from opening (forever).
    for &index in &indexes[first_dropped..] {
        let path = log_dir.join(segment_name(index));
        if let Ok(file) = disk.open(&path, OpenMode::Read) {
            if let Ok(len) = file.len() {
                let mut reader = Reader::new(&file, &path, len);
                if let Ok(max) = observe_claims(&mut reader, SEGMENT_HEADER_BYTES as u64, len) {
                    scan.claims_max = scan.claims_max.max(max);
                }
            }
        }
    }

    if scan.cut.is_some() {
        record_floor(scan.claims_max)?;
    }
    // Apply the cut: later segments newest first, so a crash part-way leaves a contiguous
    // prefix (which the next recovery cuts the same way), then shorten the cut segment.
    for &index in indexes[first_dropped..].iter().rev() {
        let path = log_dir.join(segment_name(index));
        disk.remove_file(&path).map_err(|e| RaftStorageError::disk(&path, None, e))?;
    }
    // A log ending below the snapshot is wholly covered by it: remove it, so the next append
    // (at snapshot + 1) starts a segment that continues nothing stale.
    if scan.segments.last().is_some_and(|s| s.next_index() <= base) {
        while let Some(segment) = scan.segments.pop() {
            disk.remove_file(&segment.path).map_err(|e| RaftStorageError::disk(&segment.path, None, e))?;
        }
    }
    // Make what is kept durable, whether or not there was a cut: after a process restart
    // without a machine crash the records read may still be in the page cache only, and from
    // now on they are acknowledged. A cut segment is shortened first. Then the directory:
    // the removals above, and any segment name an earlier incarnation never synced.
    let cut_segment = if cut_within { first_dropped.checked_sub(1) } else { None };
    for (k, segment) in scan.segments.iter_mut().enumerate() {
        let path = &segment.path;
        if cut_segment == Some(k) {
            segment
                .file
                .set_len(segment.len_bytes)
                .map_err(|e| RaftStorageError::disk(path, Some(segment.len_bytes), e))?;
        }
        segment.file.sync_data().map_err(|e| RaftStorageError::disk(path, None, e))?;
        segment.durable_bytes = segment.len_bytes;
    }
    disk.sync_dir(log_dir).map_err(|e| RaftStorageError::disk(log_dir, None, e))?;
    Ok(scan)
}

impl<F: DiskFile> Walk<F> {
    /// Verifies the records of `segment` (whose header is valid), keeps it, and returns the
    /// cut if a record fails.
    fn records(&mut self, mut segment: Segment<F>, len: u64) -> Result<Option<LogCut>, RaftStorageError> {
        let mut reader = Reader::new(&segment.file, &segment.path, len);
        let mut at = SEGMENT_HEADER_BYTES as u64;
        let mut cut = None;
        // Each pass accepts a record of at least RECORD_HEADER_BYTES or stops.
        while at < len {
            let expected = segment.first_index + segment.records.len() as u64;
            let reason = match read_record(&mut reader, at)? {
                Err(error) => Some(LogCutReason::BadRecord(error)),
                Ok((entry, claim, record_bytes)) => {
                    self.scan.claims_max = self.scan.claims_max.max(claim);
                    match self.check(&entry, expected) {
                        Some(reason) => Some(reason),
                        None => {
                            if entry.index > self.known_durable {
                                crate::coverage::mark("raft.recovery-rewrote-records-above-mark");
                                // The bytes that just verified: still in the reader's buffer.
                                let bytes = reader.get(at, record_bytes as usize)?;
                                segment
                                    .file
                                    .write_at(bytes, at)
                                    .map_err(|e| RaftStorageError::disk(&segment.path, Some(at), e))?;
                            }
                            segment.records.push((at, entry.term));
                            self.last_term = Some(entry.term);
                            if self.snapshot.is_none_or(|(base, _)| entry.index > base) {
                                self.scan.entries.push(entry);
                            }
                            at += record_bytes;
                            None
                        }
                    }
                }
            };
            if let Some(reason) = reason {
                if let Ok(max) = observe_claims(&mut reader, at, len) {
                    self.scan.claims_max = self.scan.claims_max.max(max);
                }
                cut = Some(LogCut { file: segment.path.clone(), offset: at, expected_index: expected, reason });
                break;
            }
        }
        drop(reader);
        segment.len_bytes = at;
        self.scan.segments.push(segment);
        Ok(cut)
    }

    /// Why a checksum-valid record cannot continue the log, if it cannot.
    fn check(&self, entry: &Entry, expected: Index) -> Option<LogCutReason> {
        if entry.index != expected {
            return Some(LogCutReason::IndexGap { found: entry.index });
        }
        if let Some(previous) = self.last_term.filter(|&t| entry.term < t) {
            return Some(LogCutReason::TermRegressed { previous, found: entry.term });
        }
        let (base, snapshot_term) = self.snapshot?;
        if entry.index == base && entry.term != snapshot_term {
            return Some(LogCutReason::SnapshotTermMismatch { index: base, log_term: entry.term, snapshot_term });
        }
        if entry.index > base && entry.term < snapshot_term {
            return Some(LogCutReason::TermRegressed { previous: snapshot_term, found: entry.term });
        }
        None
    }
}

/// Reads and validates a segment header, twice before an invalid one counts.
fn read_header<F: DiskFile>(
    file: &F,
    path: &Path,
    len: u64,
) -> Result<Result<SegmentHeader, FormatError>, RaftStorageError> {
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    let have = len.min(SEGMENT_HEADER_BYTES as u64) as usize;
    let mut decoded = Err(FormatError::BadMagic);
    for _ in 0..2 {
        file.read_exact_at(&mut bytes[..have], 0)
            .map_err(|e| RaftStorageError::disk(path, Some(0), e.with_path(path)))?;
        decoded = SegmentHeader::decode(&bytes[..have]);
        if decoded.is_ok() {
            break;
        }
    }
    Ok(decoded)
}

/// The record at `at` as an entry, its commit claim and its size; read twice before an
/// invalid one counts.
fn read_record<F: DiskFile>(
    reader: &mut Reader<'_, F>,
    at: u64,
) -> Result<Result<(Entry, Index, u64), FormatError>, RaftStorageError> {
    let mut result = Err(FormatError::BadMagic);
    for attempt in 0..2 {
        if attempt > 0 {
            reader.invalidate();
        }
        let head = reader.get(at, RECORD_HEADER_BYTES)?;
        result = match decode_record_head(head) {
            Err(error) => Err(error),
            Ok(head) => {
                let bytes = reader.get(at, head.len_bytes as usize)?;
                decode_record(bytes).map(|r| (r.to_entry(), r.commit_claim, u64::from(r.len_bytes)))
            }
        };
        if result.is_ok() {
            break;
        }
    }
    Ok(result)
}

/// The highest commit claim of a checksum-valid record from `at` on, stepping over records
/// whose length is plausible even if their checksum is not.
fn observe_claims<F: DiskFile>(reader: &mut Reader<'_, F>, mut at: u64, len: u64) -> Result<Index, RaftStorageError> {
    let mut max = 0;
    // Each pass moves `at` forward by at least RECORD_HEADER_BYTES or stops.
    while at < len {
        let Ok(head) = decode_record_head(reader.get(at, RECORD_HEADER_BYTES)?) else {
            break;
        };
        let bytes = reader.get(at, head.len_bytes as usize)?;
        if bytes.len() < head.len_bytes as usize {
            break;
        }
        if let Ok(record) = decode_record(bytes) {
            max = max.max(record.commit_claim);
        }
        at += u64::from(head.len_bytes);
    }
    Ok(max)
}
