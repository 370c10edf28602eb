//! Functional tests of the Raft log storage on the production disk. Crash behaviour is tested
//! over faultfs in sluice-sim (`sim/tests/raft_log_crash.rs`; core may not depend on it).
//! Corruption is made through the `Disk` trait, so these tests need no `std::fs`.

use super::*;
use crate::format::raftlog::{record_len, RECORD_HEADER_BYTES};
use crate::format::FormatError;
use crate::os::OsDisk;
use crate::raft::types::{EntryKind, Membership};
use crate::testutil::temp_root;
use bytes::Bytes;

const GROUP: &str = "groups/7";

fn config() -> LogConfig {
    LogConfig { segment_bytes: SEGMENT_BYTES_MIN, sync_appends: true }
}

/// Entry `index` of term `term`, with 100 bytes of data that name both.
fn entry(index: Index, term: Term) -> Entry {
    let mut data = format!("entry {index} term {term} ").into_bytes();
    data.resize(100, b'.');
    Entry { index, term, kind: EntryKind::Normal, data: Bytes::from(data) }
}

fn entries(range: std::ops::RangeInclusive<Index>, term: Term) -> Vec<Entry> {
    range.map(|i| entry(i, term)).collect()
}

const RECORD_BYTES: u64 = (RECORD_HEADER_BYTES + 100) as u64;

fn snapshot(last_index: Index, last_term: Term) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta { last_index, last_term, membership: Membership::new([1, 2, 3]) },
        data: Bytes::from(format!("state through {last_index}")),
    }
}

struct Fixture {
    disk: OsDisk,
}

impl Fixture {
    fn new(tag: &str) -> Self {
        Fixture { disk: OsDisk::new(temp_root(tag)).unwrap() }
    }

    fn dir(&self) -> &'static Path {
        Path::new(GROUP)
    }

    fn open(&self) -> (RaftStorage<OsDisk>, Recovered) {
        let (storage, recovered) = self.try_open().unwrap();
        storage.check_invariants();
        (storage, recovered)
    }

    fn try_open(&self) -> Result<(RaftStorage<OsDisk>, Recovered), RaftStorageError> {
        RaftStorage::open(self.disk.clone(), self.dir(), config())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    fn segment(&self, first_index: Index) -> PathBuf {
        self.dir().join(LOG_DIR_NAME).join(files::segment_name(first_index))
    }

    fn segments(&self) -> Vec<Index> {
        let names = self.disk.list_dir(&self.dir().join(LOG_DIR_NAME)).unwrap();
        names.iter().filter_map(|n| files::parse_segment_name(n)).collect()
    }

    fn names(&self) -> Vec<String> {
        self.disk.list_dir(self.dir()).unwrap()
    }

    fn flip(&self, path: &Path, offset: u64) {
        let file = self.disk.open(path, OpenMode::ReadWrite).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, offset).unwrap();
        byte[0] ^= 0x10;
        file.write_at(&byte, offset).unwrap();
        file.sync_data().unwrap();
    }

    fn write(&self, path: &Path, bytes: &[u8]) {
        let file = self.disk.open(path, OpenMode::Create).unwrap();
        file.set_len(0).unwrap();
        file.write_at(bytes, 0).unwrap();
        file.sync_data().unwrap();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Empties the temporary root (removing the root itself would need std::fs).
        if !std::thread::panicking() {
            for name in self.disk.list_dir(Path::new("")).unwrap() {
                self.disk.remove_dir_all(Path::new(&name)).unwrap();
            }
        }
    }
}

const LOG_DIR_NAME: &str = files::LOG_DIR;

/// Offset of entry `index` in a segment starting at `first` whose entries are all from
/// [`entry`] (100 bytes of data each).
fn offset_of(first: Index, index: Index) -> u64 {
    SEGMENT_HEADER_BYTES as u64 + (index - first) * RECORD_BYTES
}

#[test]
fn a_new_group_is_empty() {
    let fx = Fixture::new("raft-new");
    let (storage, recovered) = fx.open();
    assert_eq!(recovered.hard_state, HardState::default());
    assert_eq!(recovered.snapshot, None);
    assert!(recovered.entries.is_empty());
    assert_eq!(recovered.commit_floor, 0);
    assert_eq!(recovered.cut, None);
    assert_eq!((storage.first_index(), storage.last_index()), (1, 0));
}

#[test]
fn appends_round_trip_across_segments() {
    let fx = Fixture::new("raft-round-trip");
    let (mut storage, _) = fx.open();
    let mut written = Vec::new();
    for batch in 0..20u64 {
        let batch_entries: Vec<Entry> = (1..=10).map(|i| entry(batch * 10 + i, 1 + batch / 5)).collect();
        storage.append(&batch_entries, batch * 10).unwrap();
        written.extend(batch_entries);
        if batch % 3 == 0 {
            storage.sync().unwrap();
        }
        storage.check_invariants();
    }
    storage.sync().unwrap();
    assert_eq!(storage.last_index(), 200);
    assert_eq!(storage.term(200), Some(4));
    drop(storage);
    let segments = fx.segments();
    assert!(segments.len() >= 4, "segments: {segments:?}");
    assert_eq!(segments[0], 1);

    let (storage, recovered) = fx.open();
    assert_eq!(recovered.entries, written);
    assert_eq!(recovered.cut, None);
    assert_eq!(recovered.commit_floor, 190);
    assert_eq!((storage.first_index(), storage.last_index()), (1, 200));
}

#[test]
fn each_segment_is_cut_at_the_size_bound() {
    let fx = Fixture::new("raft-roll");
    let (mut storage, _) = fx.open();
    storage.append(&entries(1..=100, 1), 0).unwrap();
    storage.sync().unwrap();
    drop(storage);
    // A segment rolls once it has reached segment_bytes, so each holds exactly as many
    // records as it takes to reach it.
    let per_segment = (SEGMENT_BYTES_MIN - SEGMENT_HEADER_BYTES as u64).div_ceil(RECORD_BYTES);
    let expected: Vec<Index> = (0..100u64.div_ceil(per_segment)).map(|k| 1 + k * per_segment).collect();
    assert_eq!(fx.segments(), expected);
}

#[test]
fn truncate_then_append_other_terms_survives_reopen() {
    let fx = Fixture::new("raft-truncate");
    let (mut storage, _) = fx.open();
    storage.append(&entries(1..=100, 1), 5).unwrap();
    storage.sync().unwrap();
    let before = fx.segments();
    storage.truncate_from(40).unwrap();
    storage.check_invariants();
    assert_eq!(storage.last_index(), 39);
    assert!(fx.segments().len() < before.len());
    storage.append(&entries(40..=100, 2), 10).unwrap();
    storage.sync().unwrap();
    // Truncating at a segment's first index leaves that segment empty, and appends go there.
    let boundary = *fx.segments().last().unwrap();
    assert!(boundary > 40);
    storage.truncate_from(boundary).unwrap();
    storage.check_invariants();
    storage.append(&entries(boundary..=boundary + 10, 3), 12).unwrap();
    storage.sync().unwrap();
    drop(storage);

    let (storage, recovered) = fx.open();
    let mut expected = entries(1..=39, 1);
    expected.extend(entries(40..=boundary - 1, 2));
    expected.extend(entries(boundary..=boundary + 10, 3));
    assert_eq!(recovered.entries, expected);
    assert_eq!(recovered.cut, None);
    assert_eq!(storage.term(boundary - 1), Some(2));
    assert_eq!(recovered.commit_floor, 12);
}

#[test]
fn truncate_past_the_end_does_nothing() {
    let fx = Fixture::new("raft-truncate-noop");
    let (mut storage, _) = fx.open();
    storage.truncate_from(1).unwrap();
    storage.append(&entries(1..=3, 1), 0).unwrap();
    storage.truncate_from(4).unwrap();
    assert_eq!(storage.last_index(), 3);
}

#[test]
fn compaction_after_a_snapshot_removes_covered_segments() {
    let fx = Fixture::new("raft-compact");
    let (mut storage, _) = fx.open();
    storage.append(&entries(1..=100, 1), 0).unwrap();
    storage.append(&entries(101..=200, 2), 90).unwrap();
    storage.sync().unwrap();
    storage.save_snapshot(&snapshot(150, 2)).unwrap();
    let before = fx.segments();
    storage.compact_through(150).unwrap();
    storage.check_invariants();
    let after = fx.segments();
    assert!(after.len() < before.len());
    assert!(after[0] <= 151 && after[0] > 1, "first segment {}", after[0]);
    assert_eq!(storage.first_index(), 151);
    // A later snapshot supersedes the file of the earlier one.
    storage.save_snapshot(&snapshot(160, 2)).unwrap();
    assert_eq!(fx.names().iter().filter(|n| n.starts_with("snap-")).count(), 1);
    drop(storage);

    let (storage, recovered) = fx.open();
    assert_eq!(recovered.snapshot, Some(snapshot(160, 2)));
    assert_eq!(recovered.entries, entries(161..=200, 2));
    assert_eq!(recovered.cut, None);
    assert_eq!(recovered.commit_floor, 160);
    assert_eq!((storage.first_index(), storage.last_index()), (161, 200));
}

#[test]
fn installing_a_snapshot_drops_the_log() {
    let fx = Fixture::new("raft-install");
    let (mut storage, _) = fx.open();
    storage.append(&entries(1..=80, 1), 0).unwrap();
    storage.sync().unwrap();
    storage.install_snapshot(&snapshot(120, 4)).unwrap();
    storage.check_invariants();
    assert!(fx.segments().is_empty());
    assert_eq!((storage.first_index(), storage.last_index()), (121, 120));
    assert_eq!(storage.term(120), Some(4));
    storage.append(&entries(121..=130, 4), 120).unwrap();
    storage.sync().unwrap();
    drop(storage);

    let (mut storage, recovered) = fx.open();
    assert_eq!(recovered.snapshot, Some(snapshot(120, 4)));
    assert_eq!(recovered.entries, entries(121..=130, 4));
    assert_eq!(fx.segments(), vec![121]);
    // A snapshot at or below the last index keeps nothing of the log either.
    storage.install_snapshot(&snapshot(125, 4)).unwrap();
    assert_eq!(storage.last_index(), 125);
    drop(storage);
    let (_, recovered) = fx.open();
    assert!(recovered.entries.is_empty());
}

#[test]
fn an_interrupted_install_keeps_old_entries_only_if_they_agree_with_the_snapshot() {
    // The snapshot was saved but the crash came before the old log was removed.
    for (snapshot_term, kept) in [(1, true), (2, false)] {
        let fx = Fixture::new("raft-install-crash");
        let (mut storage, _) = fx.open();
        storage.append(&entries(1..=60, 1), 0).unwrap();
        storage.sync().unwrap();
        drop(storage);
        fx.write(
            &fx.path(&files::snapshot_name(30)),
            &crate::format::raftlog::encode_snapshot(&snapshot(30, snapshot_term)),
        );

        let (storage, recovered) = fx.open();
        if kept {
            assert_eq!(recovered.entries, entries(31..=60, 1));
            assert_eq!(recovered.cut, None);
        } else {
            assert!(recovered.entries.is_empty());
            let cut = recovered.cut.unwrap();
            assert_eq!(cut.reason, LogCutReason::SnapshotTermMismatch { index: 30, log_term: 1, snapshot_term: 2 });
            assert_eq!(storage.last_index(), 30);
        }
    }
}

#[test]
fn a_flipped_middle_record_cuts_there_and_later_claims_raise_the_floor() {
    let fx = Fixture::new("raft-flip");
    let (mut storage, _) = fx.open();
    for i in 1..=100 {
        storage.append(&[entry(i, 1)], i - 1).unwrap();
    }
    storage.sync().unwrap();
    drop(storage);
    assert!(fx.segments().len() >= 3);
    // A bit in entry 10's data: its checksum fails, later records in the segment still parse.
    fx.flip(&fx.segment(1), offset_of(1, 10) + 40);

    let (storage, recovered) = fx.open();
    assert_eq!(recovered.entries, entries(1..=9, 1));
    let cut = recovered.cut.unwrap();
    assert_eq!((cut.file.clone(), cut.offset, cut.expected_index), (fx.segment(1), offset_of(1, 10), 10));
    assert!(matches!(cut.reason, LogCutReason::BadRecord(FormatError::BadChecksum { .. })), "{cut}");
    // Entry 100 claimed commit 99; it was past the cut, in a later segment.
    assert_eq!(recovered.commit_floor, 99);
    assert_eq!(storage.last_index(), 9);
    assert_eq!(fx.segments(), vec![1]);
    drop(storage);

    // The cut is durable: the next open finds a clean log and no evidence past it, but the
    // floor was written into the hard state before the evidence went, so the node is still
    // known to have lost committed entries (and must not vote) until it is repaired.
    let (mut storage, recovered) = fx.open();
    assert_eq!(recovered.cut, None);
    assert_eq!(recovered.entries, entries(1..=9, 1));
    assert_eq!(recovered.commit_floor, 99);
    assert_eq!(recovered.hard_state.commit, 99);
    storage.append(&entries(10..=12, 2), 0).unwrap();
    storage.sync().unwrap();
}

/// A persist of `entries` that claims commit `claim` (what a follower runs before it acknowledges).
fn persist_entries(storage: &mut RaftStorage<OsDisk>, entries: Vec<Entry>, claim: Index) {
    storage.persist(&PersistIo { id: 1, entries, commit_claim: claim, ..Default::default() }).unwrap();
}

#[test]
fn a_flip_in_the_last_acknowledged_batch_is_caught_by_the_ack_mark() {
    // The hole the mark closes (log-flip 395): the records' commit claims lag the leader's
    // commit by a batch, so a cut in the last batch is below no claim, yet those entries were
    // synced and acknowledged, and may have been committed counting on this node.
    let fx = Fixture::new("raft-ack-mark");
    let (mut storage, _) = fx.open();
    persist_entries(&mut storage, entries(1..=10, 1), 0);
    persist_entries(&mut storage, entries(11..=16, 1), 8);
    assert_eq!(storage.ack_mark(), 16);
    drop(storage);
    fx.flip(&fx.segment(1), offset_of(1, 12) + 40);

    let (storage, recovered) = fx.open();
    assert_eq!(recovered.entries, entries(1..=11, 1));
    assert_eq!(recovered.commit_floor, 8, "the claims alone see nothing lost");
    assert_eq!(recovered.ack_mark, 16, "the mark does: 12..=16 were acknowledged");
    drop(storage);
    // The mark does not come down with the cut, so a second restart still knows.
    let (mut storage, recovered) = fx.open();
    assert_eq!((recovered.cut, recovered.ack_mark), (None, 16));
    // Appends below the mark leave it; past it, it rises again.
    persist_entries(&mut storage, entries(12..=14, 2), 11);
    assert_eq!(storage.ack_mark(), 16);
    persist_entries(&mut storage, entries(15..=20, 2), 14);
    assert_eq!(storage.ack_mark(), 20);
    drop(storage);
    assert_eq!(fx.open().1.ack_mark, 20);
}

#[test]
fn a_truncation_lowers_the_ack_mark_and_recovery_raises_it_to_the_log_it_keeps() {
    let fx = Fixture::new("raft-ack-truncate");
    let (mut storage, _) = fx.open();
    persist_entries(&mut storage, entries(1..=30, 1), 0);
    storage.truncate_from(21).unwrap();
    assert_eq!(storage.ack_mark(), 20, "a leader's conflict proves 21.. were never committed");
    // Appended without `persist` (the interval mode): the write leaves the mark, the sync
    // that makes them durable raises it.
    storage.append(&entries(21..=25, 2), 0).unwrap();
    assert_eq!(storage.ack_mark(), 20);
    storage.sync().unwrap();
    assert_eq!(storage.ack_mark(), 25);
    // Written, never synced, when the process stops: recovery syncs the log it keeps, and
    // the node acknowledges what it recovered without another persist, so the mark rises.
    storage.append(&entries(26..=27, 2), 0).unwrap();
    drop(storage);
    let (mut storage, recovered) = fx.open();
    assert_eq!((recovered.ack_mark, storage.last_index()), (27, 27));
    storage.truncate_from(21).unwrap();
    assert_eq!(storage.ack_mark(), 20);
    // An installed snapshot (the log lacks its last entry) drops another history: the mark
    // comes down to the snapshot, which the log then reaches.
    storage.install_snapshot(&snapshot(22, 3)).unwrap();
    assert_eq!(storage.ack_mark(), 20, "the mark was below the snapshot already");
    persist_entries(&mut storage, entries(23..=40, 3), 22);
    storage.install_snapshot(&snapshot(30, 4)).unwrap();
    assert_eq!(storage.ack_mark(), 30);
    drop(storage);
    let (storage, recovered) = fx.open();
    assert_eq!((recovered.ack_mark, storage.last_index()), (30, 30));
}

#[test]
fn a_lost_segment_tail_cuts_the_later_segments() {
    let fx = Fixture::new("raft-lost-tail");
    let (mut storage, _) = fx.open();
    storage.append(&entries(1..=100, 1), 0).unwrap();
    storage.sync().unwrap();
    drop(storage);
    let segments = fx.segments();
    // Shorten the first segment by one record: the second no longer continues it.
    let file = fx.disk.open(&fx.segment(1), OpenMode::ReadWrite).unwrap();
    let len = file.len().unwrap();
    file.set_len(len - RECORD_BYTES).unwrap();
    file.sync_data().unwrap();
    drop(file);

    let (storage, recovered) = fx.open();
    let last = segments[1] - 2;
    assert_eq!(storage.last_index(), last);
    assert_eq!(recovered.entries, entries(1..=last, 1));
    let cut = recovered.cut.unwrap();
    assert_eq!(cut.reason, LogCutReason::SegmentStartMismatch { expected: last + 1, found: segments[1] });
    assert_eq!(fx.segments(), vec![1]);
}

#[test]
fn a_zeroed_hole_cuts_the_log() {
    let fx = Fixture::new("raft-hole");
    let (mut storage, _) = fx.open();
    storage.append(&entries(1..=20, 1), 0).unwrap();
    storage.sync().unwrap();
    drop(storage);
    let file = fx.disk.open(&fx.segment(1), OpenMode::ReadWrite).unwrap();
    file.write_at(&[0u8; 200], offset_of(1, 5)).unwrap();
    file.sync_data().unwrap();
    drop(file);
    let (_, recovered) = fx.open();
    assert_eq!(recovered.entries, entries(1..=4, 1));
    assert!(matches!(recovered.cut.unwrap().reason, LogCutReason::BadRecord(FormatError::LengthTooSmall { .. })));
}

#[test]
fn a_log_starting_late_is_dropped() {
    let fx = Fixture::new("raft-late");
    let (mut storage, _) = fx.open();
    storage.append(&entries(1..=100, 1), 77).unwrap();
    storage.sync().unwrap();
    drop(storage);
    let segments = fx.segments();
    fx.disk.remove_file(&fx.segment(1)).unwrap();

    let (storage, recovered) = fx.open();
    assert!(recovered.entries.is_empty());
    let cut = recovered.cut.unwrap();
    assert_eq!(cut.reason, LogCutReason::LogStartsLate { first_index: segments[1] });
    assert_eq!(cut.expected_index, 1);
    assert_eq!(recovered.commit_floor, 77);
    assert!(fx.segments().is_empty());
    assert_eq!(storage.last_index(), 0);
}

#[test]
fn a_corrupt_snapshot_is_reported_and_its_name_raises_the_floor() {
    let fx = Fixture::new("raft-corrupt-snap");
    let (mut storage, _) = fx.open();
    storage.append(&entries(1..=50, 1), 3).unwrap();
    storage.sync().unwrap();
    storage.save_snapshot(&snapshot(40, 1)).unwrap();
    drop(storage);
    fx.flip(&fx.path(&files::snapshot_name(40)), 50);

    let (mut storage, recovered) = fx.open();
    assert_eq!(recovered.snapshot, None);
    let report = recovered.corrupt_snapshot.unwrap();
    assert!(report.contains("snap-00000000000000000040") && report.contains("checksum"), "{report}");
    assert_eq!(recovered.commit_floor, 40);
    // The log was not compacted, so it is all still there.
    assert_eq!(recovered.entries, entries(1..=50, 1));
    assert_eq!(storage.first_index(), 1);
    // A newer snapshot supersedes the corrupt file.
    storage.save_snapshot(&snapshot(45, 1)).unwrap();
    drop(storage);
    let (_, recovered) = fx.open();
    assert_eq!(recovered.corrupt_snapshot, None);
    assert_eq!(recovered.snapshot, Some(snapshot(45, 1)));
    assert_eq!(fx.names().iter().filter(|n| n.starts_with("snap-")).count(), 1);
}

#[test]
fn a_snapshot_whose_name_disagrees_is_corrupt() {
    let fx = Fixture::new("raft-snap-name");
    fx.open();
    fx.write(&fx.path(&files::snapshot_name(9)), &crate::format::raftlog::encode_snapshot(&snapshot(8, 1)));
    let (_, recovered) = fx.open();
    assert_eq!(recovered.snapshot, None);
    assert!(recovered.corrupt_snapshot.unwrap().contains("holds index 8"));
    assert_eq!(recovered.commit_floor, 9);
}

#[test]
fn hard_state_survives_one_corrupt_copy_and_refuses_two() {
    let fx = Fixture::new("raft-hard");
    let (mut storage, _) = fx.open();
    storage.set_hard_state(HardState { term: 3, vote: 2, commit: 0 }).unwrap();
    storage.set_hard_state(HardState { term: 3, vote: 2, commit: 7 }).unwrap();
    drop(storage);
    let (_, recovered) = fx.open();
    assert_eq!(recovered.hard_state, HardState { term: 3, vote: 2, commit: 7 });
    assert_eq!(recovered.commit_floor, 7);

    for corrupt in ["hard.0", "hard.1"] {
        fx.flip(&fx.path(corrupt), 13);
        let (_, recovered) = fx.open();
        assert_eq!(recovered.hard_state, HardState { term: 3, vote: 2, commit: 7 }, "{corrupt} corrupt");
        fx.flip(&fx.path(corrupt), 13);
    }

    fx.flip(&fx.path("hard.0"), 13);
    fx.flip(&fx.path("hard.1"), 20);
    match fx.try_open() {
        Err(RaftStorageError::Corrupt { files, .. }) => {
            assert_eq!(files.len(), 2);
            assert_eq!(files[0].0, fx.path("hard.0"));
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|(_, r)| r)),
    }
}

#[test]
fn the_newer_hard_state_copy_wins() {
    let fx = Fixture::new("raft-hard-order");
    fx.open();
    // A crash between the two copies: hard.0 is new, hard.1 old.
    let old = HardState { term: 4, vote: 0, commit: 9 };
    let new = HardState { term: 4, vote: 3, commit: 9 };
    fx.write(&fx.path("hard.0"), &crate::format::raftlog::encode_hard_state(&new));
    fx.write(&fx.path("hard.1"), &crate::format::raftlog::encode_hard_state(&old));
    assert_eq!(fx.open().1.hard_state, new);
    // Only hard.1 present (hard.0's name lost): it is used.
    fx.disk.remove_file(&fx.path("hard.0")).unwrap();
    assert_eq!(fx.open().1.hard_state, old);
}

#[test]
fn leftover_temporary_files_are_removed_and_strangers_left_alone() {
    let fx = Fixture::new("raft-tmp");
    fx.open();
    fx.write(&fx.path("hard.0.tmp"), b"half a hard state");
    fx.write(&fx.path("snap-00000000000000000005.tmp"), b"half a snapshot");
    fx.write(&fx.path("notes.txt"), b"operator notes");
    fx.write(&fx.dir().join("log").join("5.seg"), b"not a segment name");
    let (_, recovered) = fx.open();
    assert_eq!(recovered.cut, None);
    assert_eq!(recovered.commit_floor, 0);
    assert_eq!(fx.names(), vec!["acked".to_string(), "log".to_string(), "notes.txt".to_string()]);
}

#[test]
fn invalid_config_is_refused() {
    let fx = Fixture::new("raft-config");
    let result = RaftStorage::open(fx.disk.clone(), fx.dir(), LogConfig { segment_bytes: 100, sync_appends: true });
    assert!(matches!(result, Err(RaftStorageError::InvalidConfig { .. })));
}

#[test]
fn an_oversized_snapshot_is_refused_without_failing_the_storage() {
    let fx = Fixture::new("raft-big-snap");
    let (mut storage, _) = fx.open();
    let big = Snapshot {
        meta: SnapshotMeta::default(),
        data: Bytes::from(vec![0u8; crate::format::raftlog::SNAPSHOT_DATA_BYTES_MAX + 1]),
    };
    assert!(matches!(storage.save_snapshot(&big), Err(RaftStorageError::SnapshotTooLarge { .. })));
    assert!(storage.failure().is_none());
    storage.append(&entries(1..=2, 1), 0).unwrap();
}

#[test]
#[should_panic(expected = "append does not continue the log")]
fn an_append_that_skips_an_index_is_a_bug() {
    let fx = Fixture::new("raft-skip");
    let (mut storage, _) = fx.open();
    storage.append(&entries(1..=2, 1), 0).unwrap();
    let _ = storage.append(&entries(4..=4, 1), 0);
}

#[test]
fn a_snapshot_ahead_of_a_short_log_covers_it() {
    // The snapshot (durable) is ahead of what survived of the log: the log is wholly covered
    // and removed, and appends continue after the snapshot in a fresh segment.
    let fx = Fixture::new("raft-covered");
    let (mut storage, _) = fx.open();
    storage.append(&entries(1..=30, 1), 0).unwrap();
    storage.sync().unwrap();
    storage.truncate_from(21).unwrap();
    drop(storage);
    fx.write(&fx.path(&files::snapshot_name(25)), &crate::format::raftlog::encode_snapshot(&snapshot(25, 1)));
    let (mut storage, recovered) = fx.open();
    assert!(recovered.entries.is_empty());
    assert_eq!(recovered.cut, None);
    assert!(fx.segments().is_empty());
    storage.append(&entries(26..=27, 1), 25).unwrap();
    storage.sync().unwrap();
    drop(storage);
    assert_eq!(fx.open().1.entries, entries(26..=27, 1));
}

#[test]
fn record_sizes_match_the_format() {
    assert_eq!(record_len(100) as u64, RECORD_BYTES);
}
