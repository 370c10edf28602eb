//! Functional tests of the file store on the production disk. Crash behaviour is tested over
//! faultfs in sluice-sim (core may not depend on it).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use super::*;
use crate::format::state::StateFile;
use crate::os::OsDisk;
use crate::testutil::temp_root;
use std::time::Duration;

fn msg<'a>(subject: &'a [u8], payload: &'a [u8], timestamp_ns: i64) -> NewMessage<'a> {
    NewMessage { subject, headers: b"", payload, timestamp_ns }
}

fn small_blocks(sync: SyncPolicy, limits: Limits) -> StoreConfig {
    StoreConfig { block_size_bytes: 256, write_buffer_bytes: 100, sync, limits }
}

struct Fixture {
    root: PathBuf,
    disk: OsDisk,
}

impl Fixture {
    fn new(tag: &str) -> Self {
        let root = temp_root(tag);
        let disk = OsDisk::new(&root).unwrap();
        Fixture { root, disk }
    }

    /// Opens keeping message digests, so `present` can check them against what it reads.
    fn open(&self, config: StoreConfig) -> (FileStore<OsDisk>, RecoveryReport) {
        let (mut store, report) = FileStore::open(self.disk.clone(), Path::new("s"), config).unwrap();
        store.keep_digests().unwrap();
        store.check_invariants();
        (store, report)
    }

    fn block_path(&self, index: u32) -> PathBuf {
        self.root.join("s").join(block::block_name(index))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn payload(seq: u64) -> Vec<u8> {
    format!("payload-{seq:04}").into_bytes()
}

fn fill(store: &mut FileStore<OsDisk>, count: u64) {
    for _ in 0..count {
        let seq = store.state().last_seq + 1;
        assert_eq!(store.append(&msg(b"orders", &payload(seq), seq as i64)).unwrap(), seq);
        store.check_invariants();
    }
}

#[test]
fn append_get_and_reopen_across_blocks() {
    let fx = Fixture::new("basic");
    let config = small_blocks(SyncPolicy::Always, Limits::default());
    let (mut store, report) = fx.open(config);
    assert_eq!(report.cut, None);
    assert_eq!(store.state(), StreamState { first_seq: 1, last_seq: 0, msgs: 0, bytes: 0, num_deleted: 0 });
    fill(&mut store, 20);
    assert!(store.blocks.len() > 3, "small blocks roll over");
    let got = store.get(7).unwrap().unwrap();
    assert_eq!(
        (got.seq, &got.subject[..], &got.payload[..], got.timestamp_ns),
        (7, &b"orders"[..], &payload(7)[..], 7)
    );
    assert_eq!(store.get(0).unwrap(), None);
    assert_eq!(store.get(21).unwrap(), None);
    let before = store.state();
    store.close().unwrap();

    let (store, report) = fx.open(config);
    assert_eq!(report.cut, None);
    assert_eq!(report.lost, Vec::<(u64, u64)>::new());
    assert!(matches!(report.state_file, StateFileStatus::Valid { last_seq: 20, .. }));
    assert_eq!(store.state(), before);
    for seq in 1..=20 {
        assert_eq!(store.get(seq).unwrap().unwrap().payload, payload(seq));
    }
}

#[test]
fn deletes_survive_reopen_and_front_blocks_are_removed() {
    let fx = Fixture::new("delete");
    let config = small_blocks(SyncPolicy::Always, Limits::default());
    let (mut store, _) = fx.open(config);
    fill(&mut store, 20);
    assert!(store.delete(5).unwrap());
    assert!(!store.delete(5).unwrap(), "deleting twice reports nothing deleted");
    assert!(!store.delete(99).unwrap());
    store.check_invariants();
    assert_eq!(store.get(5).unwrap(), None);
    assert_eq!(store.state().num_deleted, 1);
    // Deleting the first message moves the front.
    assert!(store.delete(1).unwrap());
    assert_eq!(store.state().first_seq, 2);
    assert_eq!(store.purge_before(12).unwrap(), 9, "2..=11 minus the deleted 5");
    store.check_invariants();
    assert_eq!(store.state().first_seq, 12);
    assert_eq!(store.state().msgs, 9);
    assert!(!fx.block_path(1).exists(), "a block wholly below first_seq is removed");
    let before = store.state();
    drop(store); // no close: Always made everything durable already

    let (store, report) = fx.open(config);
    assert_eq!(report.cut, None);
    assert_eq!(store.state(), before);
    assert_eq!(store.get(11).unwrap(), None);
    assert_eq!(store.get(12).unwrap().unwrap().payload, payload(12));
}

/// Held removals (store/hold.rs): deletes, purges and discard-old drops change what the store
/// serves at once, but reach the disk (records, state file, removed blocks) only once
/// released; a reopen before that finds every message again.
#[test]
fn held_removals_reach_the_disk_only_when_released() {
    let fx = Fixture::new("hold");
    let config = small_blocks(SyncPolicy::Always, Limits { max_msgs: Some(25), ..Limits::default() });
    let seqs_of = |msgs: Vec<StoredMessage>| msgs.iter().map(|m| m.seq).collect::<Vec<_>>();
    let (mut store, _) = fx.open(config);
    store.hold_removals();
    fill(&mut store, 20);
    assert!(store.delete(5).unwrap());
    assert!(store.delete(1).unwrap());
    assert_eq!(store.purge_before(8).unwrap(), 5, "2..=7 minus the deleted 5");
    fill(&mut store, 15); // 8..=35 is 28 messages: the limit drops 8..=10
    store.check_invariants();
    let memory = store.state();
    assert_eq!((memory.first_seq, memory.last_seq, memory.msgs), (11, 35, 25));
    assert_eq!(store.get(3).unwrap(), None);
    // A peer catching up to the last released state still gets every message.
    assert_eq!(seqs_of(store.get_range_as_released(1, 100, u64::MAX).unwrap()), (1..=35).collect::<Vec<_>>());
    assert_eq!(seqs_of(store.get_range(1, 100, u64::MAX).unwrap()), (11..=35).collect::<Vec<_>>());
    assert!(fx.block_path(1).exists(), "a block below a held front stays");
    store.sync().unwrap();
    // The state file and the blocks describe the store without the held removals.
    let (verified, _) = FileStore::verify(&fx.disk, Path::new("s")).unwrap();
    assert_eq!((verified.first_seq, verified.last_seq, verified.msgs), (1, 35, 35));
    drop(store);

    let (mut store, report) = fx.open(config);
    assert_eq!(report.cut, None);
    assert_eq!(present(&store), (1..=35).collect::<Vec<_>>(), "nothing held reached the disk");

    // Again, now released at the mark: what came before it is durable, what came after is not.
    store.hold_removals();
    assert_eq!(store.purge_before(8).unwrap(), 7);
    let mark2 = store.removal_mark();
    assert!(store.delete(20).unwrap());
    assert!(store.delete(9).unwrap());
    store.release_removals(mark2).unwrap();
    store.check_invariants();
    assert_eq!(seqs_of(store.get_range_as_released(1, 100, u64::MAX).unwrap()), (8..=35).collect::<Vec<_>>());
    store.sync().unwrap();
    assert!(!fx.block_path(1).exists(), "a released front removes its blocks");
    drop(store);
    let (store, report) = fx.open(config);
    assert_eq!(report.cut, None);
    assert_eq!(present(&store), (8..=35).collect::<Vec<_>>());

    // A purge past the end moves the end at once (a skip, not a removal); the front waits.
    let (mut store, _) = fx.open(config);
    store.hold_removals();
    assert_eq!(store.purge_before(100).unwrap(), 28);
    assert_eq!(store.state(), StreamState { first_seq: 100, last_seq: 99, msgs: 0, bytes: 0, num_deleted: 0 });
    store.sync().unwrap();
    drop(store);
    let (store, _) = fx.open(config);
    assert_eq!(store.state().last_seq, 99);
    assert_eq!(store.state().first_seq, 8);
    assert_eq!(present(&store), (8..=35).collect::<Vec<_>>());
}

#[test]
fn skip_through_keeps_a_gap_as_a_gap() {
    let fx = Fixture::new("skip");
    let config = small_blocks(SyncPolicy::Always, Limits::default());
    let (mut store, _) = fx.open(config);
    fill(&mut store, 3);
    store.skip_through(10).unwrap();
    assert_eq!(store.append(&msg(b"s", b"x", 0)).unwrap(), 11);
    store.check_invariants();
    assert_eq!(store.state().msgs, 4);
    assert_eq!(store.state().num_deleted, 7);
    drop(store);
    let (store, _) = fx.open(config);
    assert_eq!(store.state().last_seq, 11);
    assert_eq!(store.get(7).unwrap(), None);
    assert_eq!(store.get(11).unwrap().unwrap().payload, &b"x"[..]);
}

#[test]
fn purge_beyond_the_end_moves_the_next_sequence() {
    let fx = Fixture::new("purge-beyond");
    let config = small_blocks(SyncPolicy::Always, Limits::default());
    let (mut store, _) = fx.open(config);
    fill(&mut store, 3);
    assert_eq!(store.purge_before(100).unwrap(), 3);
    assert_eq!(store.state(), StreamState { first_seq: 100, last_seq: 99, msgs: 0, bytes: 0, num_deleted: 0 });
    assert_eq!(store.append(&msg(b"s", b"x", 0)).unwrap(), 100);
    drop(store);
    let (store, report) = fx.open(config);
    assert_eq!(report.cut, None);
    assert_eq!(store.state().first_seq, 100);
    assert_eq!(store.state().last_seq, 100);
}

#[test]
fn max_msgs_and_max_bytes_discard_old() {
    let fx = Fixture::new("limits-old");
    let limits = Limits { max_msgs: Some(5), ..Limits::default() };
    let (mut store, _) = fx.open(small_blocks(SyncPolicy::Always, limits));
    fill(&mut store, 12);
    assert_eq!(store.state().msgs, 5);
    assert_eq!(store.state().first_seq, 8);
    drop(store);

    let fx = Fixture::new("limits-bytes");
    let one = record_len(6, 0, payload(1).len());
    let limits = Limits { max_bytes: Some(3 * one), ..Limits::default() };
    let (mut store, _) = fx.open(small_blocks(SyncPolicy::Always, limits));
    fill(&mut store, 10);
    assert_eq!(store.state().msgs, 3);
    assert_eq!(store.state().bytes, 3 * one);
    assert_eq!(store.state().first_seq, 8);
}

#[test]
fn discard_new_refuses_and_keeps_the_stream() {
    let fx = Fixture::new("limits-new");
    let limits = Limits { max_msgs: Some(3), discard: Discard::New, ..Limits::default() };
    let (mut store, _) = fx.open(small_blocks(SyncPolicy::Always, limits));
    fill(&mut store, 3);
    let err = store.append(&msg(b"s", b"x", 0)).unwrap_err();
    assert_eq!(err, StoreError::LimitExceeded { limit: LimitKind::MaxMsgs });
    assert_eq!(store.state().last_seq, 3);
    store.check_invariants();
}

#[test]
fn oversized_messages_and_bad_subjects_are_refused() {
    let fx = Fixture::new("sizes");
    let limits = Limits { max_msg_size_bytes: 10, ..Limits::default() };
    let (mut store, _) = fx.open(small_blocks(SyncPolicy::Always, limits));
    let err = store.append(&msg(b"s", &[0u8; 11], 0)).unwrap_err();
    assert_eq!(err, StoreError::MessageTooLarge { size_bytes: 11, max_bytes: 10 });
    assert!(matches!(store.append(&msg(b"", b"x", 0)), Err(StoreError::InvalidSubject { .. })));
    let long = vec![b'a'; SUBJECT_BYTES_MAX + 1];
    assert!(matches!(store.append(&msg(&long, b"x", 0)), Err(StoreError::InvalidSubject { .. })));
    assert_eq!(store.state().last_seq, 0);
    let config = StoreConfig { block_size_bytes: 1, ..StoreConfig::default() };
    assert!(matches!(FileStore::open(fx.disk.clone(), Path::new("t"), config), Err(StoreError::InvalidConfig { .. })));
}

#[test]
fn a_record_larger_than_a_block_gets_its_own_block() {
    let fx = Fixture::new("big");
    let (mut store, _) = fx.open(small_blocks(SyncPolicy::Always, Limits::default()));
    fill(&mut store, 2);
    let big = vec![9u8; 1000];
    let seq = store.append(&msg(b"big", &big, 0)).unwrap();
    fill(&mut store, 2);
    store.check_invariants();
    assert_eq!(store.get(seq).unwrap().unwrap().payload, big);
}

#[test]
fn max_age_expires_from_the_front_on_tick() {
    let fx = Fixture::new("age");
    let limits = Limits { max_age: Some(Duration::from_nanos(100)), ..Limits::default() };
    let (mut store, _) = fx.open(small_blocks(SyncPolicy::Always, limits));
    for ts in [10i64, 20, 30, 200, 210] {
        store.append(&msg(b"s", b"x", ts)).unwrap();
    }
    store.tick(MonoTime::ZERO, 150).unwrap();
    assert_eq!(store.state().first_seq, 4, "messages stamped before 50 expired");
    store.tick(MonoTime::ZERO, 1000).unwrap();
    assert_eq!(store.state().msgs, 0);
    store.check_invariants();
}

#[test]
fn interval_policy_syncs_when_the_interval_passes() {
    let fx = Fixture::new("interval");
    let config = small_blocks(SyncPolicy::Interval { interval: Duration::from_millis(10) }, Limits::default());
    let (mut store, _) = fx.open(config);
    let state_path = fx.root.join("s").join(recovery::STATE_FILE);
    let state_last_seq = || StateFile::decode(&std::fs::read(&state_path).unwrap()).unwrap().last_seq;
    assert_eq!(state_last_seq(), 0, "open writes a state file describing what it recovered");
    fill(&mut store, 3);
    assert!(store.has_unsynced_writes());
    store.tick(MonoTime::from_nanos(0), 0).unwrap();
    store.tick(MonoTime::from_nanos(9_000_000), 0).unwrap();
    assert!(store.has_unsynced_writes(), "no sync before the interval");
    assert_eq!(state_last_seq(), 0);
    store.tick(MonoTime::from_nanos(10_000_000), 0).unwrap();
    assert!(!store.has_unsynced_writes(), "the interval passed: synced");
    assert_eq!(state_last_seq(), 3);
}

fn corrupt(path: &Path, offset: u64, xor: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= xor;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_bit_mid_stream_cuts_there_and_reports_file_offset_and_sequence() {
    let fx = Fixture::new("flip");
    let config = small_blocks(SyncPolicy::Always, Limits::default());
    let (mut store, _) = fx.open(config);
    fill(&mut store, 20);
    store.close().unwrap();
    // Block 2's first record holds some sequence s; flip a payload bit in it.
    let block2 = fx.block_path(2);
    let header = BlockHeader::decode(&std::fs::read(&block2).unwrap()).unwrap();
    corrupt(&block2, 32 + 40, 0x10);

    let (verify_state, verify_report) = FileStore::verify(&fx.disk, Path::new("s")).unwrap();
    let (store, report) = fx.open(config);
    assert_eq!(report, verify_report, "verify predicts exactly what open does");
    assert_eq!(verify_state, store.state());
    let cut = report.cut.expect("recovery cut");
    assert_eq!(cut.file, Path::new("s").join(block::block_name(2)));
    assert_eq!(cut.offset, 32);
    assert_eq!(cut.expected_seq, Some(header.first_seq));
    assert!(matches!(cut.reason, CutReason::BadRecord(FormatError::BadChecksum { .. })), "{cut}");
    assert_eq!(report.lost, vec![(header.first_seq, 20)], "state file and later blocks say how far it went");
    assert_eq!(store.state().last_seq, header.first_seq - 1);
    assert!(!fx.block_path(3).exists(), "later blocks are dropped");
    let text = cut.to_string();
    assert!(text.contains("0000000002.blk") && text.contains("offset 32"), "{text}");
}

#[test]
fn corruption_found_by_a_read_is_an_error_never_wrong_data() {
    let fx = Fixture::new("read-corrupt");
    let config = small_blocks(SyncPolicy::Always, Limits::default());
    let (mut store, _) = fx.open(config);
    fill(&mut store, 5);
    let entry = store.entry(3).unwrap();
    let block = fx.block_path(store.block_for(3).unwrap().index);
    corrupt(&block, u64::from(entry.offset) + 45, 0x01);
    match store.get(3) {
        Err(StoreError::Corrupt { file, offset, seq, reason }) => {
            assert!(file.ends_with(block::block_name(store.block_for(3).unwrap().index)));
            assert_eq!(offset, u64::from(entry.offset));
            assert_eq!(seq, Some(3));
            assert!(matches!(reason, CorruptReason::Format(FormatError::BadChecksum { .. })));
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
    assert_eq!(store.get(4).unwrap().unwrap().payload, payload(4), "neighbours are unaffected");
}

#[test]
fn truncated_and_hostile_blocks_are_cut_without_panic_or_huge_allocation() {
    let fx = Fixture::new("hostile");
    let config = small_blocks(SyncPolicy::Always, Limits::default());
    let (mut store, _) = fx.open(config);
    fill(&mut store, 6);
    store.close().unwrap();
    let last = {
        let mut names: Vec<_> = std::fs::read_dir(fx.root.join("s")).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        fx.root.join("s").join(names.iter().rev().find(|n| n.to_str().unwrap().ends_with(".blk")).unwrap())
    };
    // Truncate the last block in the middle of its last record.
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(len - 5).unwrap();
    let (store, report) = fx.open(config);
    let cut = report.cut.expect("cut at the torn record");
    assert!(matches!(cut.reason, CutReason::BadRecord(FormatError::Truncated { .. })), "{cut}");
    assert_eq!(store.state().last_seq, 5);
    assert_eq!(report.lost, vec![(6, 6)], "the state file knew about 6");
    drop(store);

    // A record claiming 4 GiB: refused by the bound before any allocation.
    let first = fx.block_path(1);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&first, bytes).unwrap();
    let (store, report) = fx.open(config);
    let cut = report.cut.expect("cut at the hostile length");
    assert_eq!(cut.offset, 32);
    assert!(matches!(cut.reason, CutReason::BadRecord(FormatError::LengthTooLarge { .. })), "{cut}");
    assert_eq!(store.state().msgs, 0);
    assert_eq!(report.lost, vec![(1, 5)], "the previous open rewrote the state file without 6");
}

#[test]
fn a_missing_middle_block_cuts_at_the_gap() {
    let fx = Fixture::new("missing");
    let config = small_blocks(SyncPolicy::Always, Limits::default());
    let (mut store, _) = fx.open(config);
    fill(&mut store, 20);
    store.close().unwrap();
    let block3 = BlockHeader::decode(&std::fs::read(fx.block_path(3)).unwrap()).unwrap();
    std::fs::remove_file(fx.block_path(3)).unwrap();
    let (store, report) = fx.open(config);
    let cut = report.cut.unwrap();
    assert_eq!(cut.reason, CutReason::MissingBlock { index: 3 });
    assert_eq!(store.state().last_seq, block3.first_seq - 1);
    assert_eq!(report.lost, vec![(block3.first_seq, 20)]);
}

#[test]
fn a_block_starting_at_the_wrong_sequence_is_cut() {
    let fx = Fixture::new("misdirected");
    let config = small_blocks(SyncPolicy::Always, Limits::default());
    let (mut store, _) = fx.open(config);
    fill(&mut store, 20);
    store.close().unwrap();
    // Block 3 replaced by block 4's contents under block 3's name: the header says 4.
    std::fs::copy(fx.block_path(4), fx.block_path(3)).unwrap();
    let (_, report) = fx.open(config);
    assert_eq!(report.cut.unwrap().reason, CutReason::BlockIndexMismatch { in_header: 4 });
}

#[test]
fn a_corrupt_state_file_is_reported_and_ignored() {
    let fx = Fixture::new("state-corrupt");
    let config = small_blocks(SyncPolicy::Always, Limits::default());
    let (mut store, _) = fx.open(config);
    fill(&mut store, 4);
    store.close().unwrap();
    let state = fx.root.join("s").join(recovery::STATE_FILE);
    corrupt(&state, 20, 0xff);
    std::fs::write(fx.root.join("s").join("notes.txt"), b"hi").unwrap();
    let (store, report) = fx.open(config);
    assert!(matches!(report.state_file, StateFileStatus::Invalid { .. }));
    assert_eq!(report.cut, None);
    assert_eq!(report.ignored_files, vec!["notes.txt".to_string()]);
    assert_eq!(store.state().last_seq, 4);
}

#[test]
fn verify_changes_nothing() {
    let fx = Fixture::new("verify");
    let config = small_blocks(SyncPolicy::Always, Limits::default());
    let (mut store, _) = fx.open(config);
    fill(&mut store, 20);
    store.close().unwrap();
    corrupt(&fx.block_path(2), 40, 0x40);
    let listing = |root: &Path| {
        let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(root.join("s"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap())
            })
            .collect();
        all.sort();
        all
    };
    let before = listing(&fx.root);
    let (_, report) = FileStore::verify(&fx.disk, Path::new("s")).unwrap();
    assert!(report.cut.is_some());
    assert_eq!(listing(&fx.root), before);
}

// ---- truncate_after ----

const POLICIES: [SyncPolicy; 3] =
    [SyncPolicy::Always, SyncPolicy::OnSnapshot, SyncPolicy::Interval { interval: Duration::from_secs(3600) }];

/// Every message of the stream, by sequence, read back and checked against `payload(seq)`;
/// the kept digests (`Fixture::open`) must sum to what was read.
fn present(store: &FileStore<OsDisk>) -> Vec<u64> {
    let state = store.state();
    let mut seqs = Vec::new();
    let mut content = 0u64;
    for seq in state.first_seq..=state.last_seq {
        if let Some(m) = store.get(seq).unwrap() {
            assert_eq!(m.payload, payload(seq), "sequence {seq} holds another message");
            seqs.push(seq);
            content = content.wrapping_add(stored_digest(&m));
        }
    }
    assert_eq!(seqs.len() as u64, state.msgs);
    if let Some(kept) = store.content_digest() {
        assert_eq!(kept, content, "the kept digests disagree with the messages");
    }
    // The windowed check covers the same ground in steps, each one further on.
    let (mut from, mut windows) = (0, 0u64);
    while let Some(next) = store.verify_digests(from, 3).unwrap() {
        assert!(next > from && next <= state.last_seq, "a window moves on and stays inside the store");
        (from, windows) = (next, windows + 1);
    }
    assert!(windows <= state.msgs / 3 + 1, "{windows} windows of 3 for {} messages", state.msgs);
    seqs
}

#[test]
fn windowed_digest_checks_step_through_the_store_and_find_a_wrong_or_extra_digest() {
    let fx = Fixture::new("verify-window");
    let (mut store, _) = fx.open(small_blocks(SyncPolicy::Always, Limits::default()));
    fill(&mut store, 10);
    assert!(store.delete(6).unwrap());
    // Windows of 4 messages: 1..=4, then 5, 7, 8, 9 (6 is deleted), then 10 ends the pass.
    assert_eq!(store.verify_digests(0, 4).unwrap(), Some(5));
    assert_eq!(store.verify_digests(5, 4).unwrap(), Some(10));
    assert_eq!(store.verify_digests(10, 4).unwrap(), None);
    // A window that starts past the end is empty and ends the pass too.
    assert_eq!(store.verify_digests(99, 4).unwrap(), None);
    let check = |store: &FileStore<OsDisk>, from| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.verify_digests(from, 4))).is_err()
    };
    // A digest kept for the deleted 6: found by the window spanning it, not by the others.
    store.digests.as_mut().unwrap().insert(6, 1);
    assert!(!check(&store, 0));
    assert!(check(&store, 5), "a digest for a sequence the store does not hold");
    store.digests.as_mut().unwrap().remove(6);
    // A wrong digest for 3.
    let digests = store.digests.as_mut().unwrap();
    digests.remove(3);
    digests.insert(3, 1);
    assert!(!check(&store, 5));
    assert!(check(&store, 0), "a digest that is not the message's");
    // A sum that disagrees with the digests it sums: found when a window ends the pass.
    let right = stored_digest(&store.get(3).unwrap().unwrap());
    let digests = store.digests.as_mut().unwrap();
    digests.remove(3);
    digests.insert(3, right);
    assert_eq!(store.verify_digests(0, 4).unwrap(), Some(5));
    store.digests.as_mut().unwrap().add_to_sum_for_test(1);
    assert!(check(&store, 10), "the sum is checked at the end of a pass");
    store.digests.as_mut().unwrap().add_to_sum_for_test(1u64.wrapping_neg());
    assert_eq!(store.verify_digests(10, 4).unwrap(), None);
    // A digest left past the end (a removal that forgot it): no window reads there, the end
    // of a pass counts them.
    store.digests.as_mut().unwrap().insert(99, 1);
    assert_eq!(store.verify_digests(0, 4).unwrap(), Some(5));
    assert!(check(&store, 10), "a digest for a sequence outside the store");
}

/// Truncates, checks the result, appends one message, then reopens without a close (what
/// truncate_after made durable must be there; the append is synced first) and checks again.
fn truncate_and_reopen(
    fx: &Fixture,
    config: StoreConfig,
    mut store: FileStore<OsDisk>,
    seq: u64,
    expected: &[u64],
) -> FileStore<OsDisk> {
    let before = store.state().msgs;
    let removed = store.truncate_after(seq).unwrap();
    store.check_invariants();
    assert!(!store.has_unsynced_writes(), "durable on return under {:?}", config.sync);
    assert_eq!(removed, before - expected.len() as u64);
    assert_eq!(present(&store), expected, "after truncate_after({seq})");
    assert_eq!(store.state().last_seq, seq.max(store.state().first_seq - 1));
    let after = store.state();
    drop(store); // no close: truncate_after is durable on return
    let (mut store, report) = fx.open(config);
    assert_eq!(report.cut, None);
    assert_eq!(report.lost, Vec::<(u64, u64)>::new());
    assert_eq!(store.state(), after, "reopen after truncate_after({seq})");
    assert_eq!(present(&store), expected);
    let next = store.append(&msg(b"orders", &payload(after.last_seq + 1), 0)).unwrap();
    assert_eq!(next, after.last_seq + 1, "the next append gets seq + 1");
    store.sync().unwrap();
    store.check_invariants();
    drop(store);
    let (store, report) = fx.open(config);
    assert_eq!(report.cut, None);
    assert_eq!(store.state().last_seq, after.last_seq + 1);
    let mut with_next = expected.to_vec();
    with_next.push(after.last_seq + 1);
    assert_eq!(present(&store), with_next);
    store
}

fn seqs(range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    range.collect()
}

#[test]
fn truncate_in_the_middle_of_a_block_and_at_a_block_boundary() {
    for (p, sync) in POLICIES.into_iter().enumerate() {
        let fx = Fixture::new(&format!("trunc-mid-{p}"));
        let config = small_blocks(sync, Limits::default());
        let (mut store, _) = fx.open(config);
        fill(&mut store, 30);
        assert!(store.blocks.len() > 4);
        // Middle of a block: 14 is neither a block's first nor its last message.
        let block = store.block_for(14).unwrap();
        assert!(block.first_seq < 14 && block.msgs.lookup(15).is_some(), "14 is mid-block");
        let mut store = truncate_and_reopen(&fx, config, store, 14, &seqs(1..=14));
        // At a block boundary: the last message of a block, the next block removed whole.
        fill(&mut store, 20);
        let boundary = store.blocks[2].first_seq - 1;
        let blocks_before = store.blocks.len();
        let store = truncate_and_reopen(&fx, config, store, boundary, &seqs(1..=boundary));
        assert!(store.blocks.len() < blocks_before);
        assert!(!fx.block_path(store.blocks.back().unwrap().index + 1).exists(), "blocks above are removed");
    }
}

#[test]
fn truncate_to_a_deleted_sequence_keeps_deletes_written_after_the_cut() {
    for (p, sync) in POLICIES.into_iter().enumerate() {
        let fx = Fixture::new(&format!("trunc-del-{p}"));
        let config = small_blocks(sync, Limits::default());
        let (mut store, _) = fx.open(config);
        fill(&mut store, 20);
        // Deletes of kept messages, written after every message above the target.
        assert!(store.delete(10).unwrap());
        assert!(store.delete(4).unwrap());
        assert!(store.delete(15).unwrap());
        let expected: Vec<u64> = (1..=10).filter(|s| ![4, 10].contains(s)).collect();
        let store = truncate_and_reopen(&fx, config, store, 10, &expected);
        assert_eq!(store.state().num_deleted, 2);
        drop(store);
        // The blocks alone carry the deletes again: without the state file nothing returns.
        std::fs::remove_file(fx.root.join("s").join(recovery::STATE_FILE)).unwrap();
        let (store, _) = fx.open(config);
        assert_eq!(store.get(4).unwrap(), None);
        assert_eq!(store.get(10).unwrap(), None);
        assert_eq!(store.state().last_seq, 11, "the append made after truncating");
    }
}

#[test]
fn truncate_after_deleting_the_front_keeps_the_front() {
    for (p, sync) in POLICIES.into_iter().enumerate() {
        let fx = Fixture::new(&format!("trunc-front-{p}"));
        let config = small_blocks(sync, Limits::default());
        let (mut store, _) = fx.open(config);
        fill(&mut store, 12);
        // Compact records written after every message above the target.
        assert!(store.delete(1).unwrap());
        assert_eq!(store.purge_before(3).unwrap(), 1);
        let store = truncate_and_reopen(&fx, config, store, 6, &seqs(3..=6));
        assert_eq!(store.state().first_seq, 3);
        drop(store);
        std::fs::remove_file(fx.root.join("s").join(recovery::STATE_FILE)).unwrap();
        let (store, _) = fx.open(config);
        assert_eq!(store.state().first_seq, 3, "the blocks alone carry the front again");
        assert_eq!(present(&store), seqs(3..=7));
    }
}

#[test]
fn truncate_inside_a_skipped_range() {
    for (p, sync) in POLICIES.into_iter().enumerate() {
        let fx = Fixture::new(&format!("trunc-skip-{p}"));
        let config = small_blocks(sync, Limits::default());
        let (mut store, _) = fx.open(config);
        fill(&mut store, 3);
        store.skip_through(40).unwrap();
        fill(&mut store, 5);
        let store = truncate_and_reopen(&fx, config, store, 20, &seqs(1..=3));
        assert_eq!(store.state().num_deleted, 17, "4..=20 stay skipped");
        drop(store);
        std::fs::remove_file(fx.root.join("s").join(recovery::STATE_FILE)).unwrap();
        let (store, _) = fx.open(config);
        assert_eq!(store.state().last_seq, 21, "the skip record ends at the target");
    }
}

#[test]
fn truncate_to_the_front_or_below_it_empties_the_stream() {
    for (p, sync) in POLICIES.into_iter().enumerate() {
        let fx = Fixture::new(&format!("trunc-empty-{p}"));
        let config = small_blocks(sync, Limits::default());
        let (mut store, _) = fx.open(config);
        fill(&mut store, 10);
        // To first - 1: empty, the front stays.
        let mut store = truncate_and_reopen(&fx, config, store, 0, &[]);
        assert_eq!(store.state().first_seq, 1);
        fill(&mut store, 20);
        assert_eq!(store.purge_before(15).unwrap(), 14);
        let mut store = truncate_and_reopen(&fx, config, store, 14, &[]);
        assert_eq!(store.state().first_seq, 15);
        // Below the front (purged already): the front moves back.
        fill(&mut store, 10);
        assert_eq!(store.state().first_seq, 15);
        let store = truncate_and_reopen(&fx, config, store, 9, &[]);
        assert_eq!(store.state().first_seq, 10);
        assert_eq!(store.state().last_seq, 10, "the append after the truncation");
        let blocks = std::fs::read_dir(fx.root.join("s"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_str().unwrap().ends_with(".blk"))
            .count();
        assert_eq!(blocks, store.blocks.len(), "the old blocks are gone");
        drop(store);
        // And to 0 after a purge beyond the end.
        let (mut store, _) = fx.open(config);
        assert_eq!(store.purge_before(50).unwrap(), 1);
        let store = truncate_and_reopen(&fx, config, store, 0, &[]);
        assert_eq!(store.state().first_seq, 1);
    }
}

#[test]
fn truncate_at_or_beyond_the_end_changes_nothing_but_syncs() {
    for (p, sync) in POLICIES.into_iter().enumerate() {
        let fx = Fixture::new(&format!("trunc-noop-{p}"));
        let config = small_blocks(sync, Limits::default());
        let (mut store, _) = fx.open(config);
        fill(&mut store, 5);
        store.delete(5).unwrap();
        let before = store.state();
        assert_eq!(store.truncate_after(5).unwrap(), 0);
        assert_eq!(store.truncate_after(99).unwrap(), 0);
        assert_eq!(store.state(), before);
        assert!(!store.has_unsynced_writes());
        drop(store);
        let (store, _) = fx.open(config);
        assert_eq!(store.state(), before);
    }
}

#[test]
fn a_failed_store_refuses_to_truncate() {
    let fx = Fixture::new("trunc-failed");
    let (mut store, _) = fx.open(small_blocks(SyncPolicy::Always, Limits::default()));
    fill(&mut store, 3);
    store.failed = Some(StoreError::InvalidArgument { reason: "test".into() });
    assert!(matches!(store.truncate_after(1), Err(StoreError::Failed { .. })));
    assert_eq!(store.state().last_seq, 3);
}

#[test]
fn recovery_restores_a_gap_the_state_file_records_and_the_blocks_lost() {
    // What a crash inside truncate_after(seq) can leave when seq falls inside a skip: the
    // state file (written first) says the stream ends at seq with a gap, the skip record is
    // cut away.
    let fx = Fixture::new("restore-gap");
    let config = small_blocks(SyncPolicy::Always, Limits::default());
    let (mut store, _) = fx.open(config);
    fill(&mut store, 2);
    let end_of_messages = store.blocks.back().unwrap().end_bytes;
    store.skip_through(9).unwrap();
    store.close().unwrap();
    let block = fx.block_path(1);
    std::fs::OpenOptions::new().write(true).open(&block).unwrap().set_len(end_of_messages).unwrap();
    let (verify_state, verify_report) = FileStore::verify(&fx.disk, Path::new("s")).unwrap();
    let (store, report) = fx.open(config);
    assert_eq!(report, verify_report);
    assert_eq!(verify_state, store.state());
    assert_eq!(report.restored_gap, Some((3, 9)));
    assert_eq!(report.lost, Vec::<(u64, u64)>::new());
    assert_eq!(
        store.state(),
        StreamState { first_seq: 1, last_seq: 9, msgs: 2, bytes: store.state().bytes, num_deleted: 7 }
    );
    drop(store);
    std::fs::remove_file(fx.root.join("s").join(recovery::STATE_FILE)).unwrap();
    let (store, _) = fx.open(config);
    assert_eq!(store.state().last_seq, 9, "open wrote the skip record again");
}

// ---- get_range ----

#[test]
fn get_range_returns_messages_in_order_within_bounds() {
    let fx = Fixture::new("range");
    let (mut store, _) = fx.open(small_blocks(SyncPolicy::OnSnapshot, Limits::default()));
    fill(&mut store, 20);
    store.delete(5).unwrap();
    store.delete(6).unwrap();
    store.skip_through(1_000_000).unwrap();
    fill(&mut store, 3);
    assert_eq!(store.purge_before(3).unwrap(), 2);
    let seqs_of = |v: Vec<StoredMessage>| v.into_iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(seqs_of(store.get_range(0, 4, u64::MAX).unwrap()), [3, 4, 7, 8], "from below the front");
    assert_eq!(seqs_of(store.get_range(5, 3, u64::MAX).unwrap()), [7, 8, 9], "over deleted sequences");
    // Over a million skipped sequences in one step (bounded work).
    assert_eq!(seqs_of(store.get_range(19, 10, u64::MAX).unwrap()), [19, 20, 1_000_001, 1_000_002, 1_000_003]);
    assert_eq!(seqs_of(store.get_range(21, 10, u64::MAX).unwrap()), [1_000_001, 1_000_002, 1_000_003]);
    assert!(store.get_range(1_000_004, 10, u64::MAX).unwrap().is_empty(), "past the end");
    assert!(store.get_range(3, 0, u64::MAX).unwrap().is_empty(), "max_msgs 0");
    // Bytes: subject, headers and payload; the first message always comes back.
    let one = (b"orders".len() + payload(3).len()) as u64;
    assert_eq!(seqs_of(store.get_range(3, 10, 0).unwrap()), [3]);
    assert_eq!(seqs_of(store.get_range(3, 10, 2 * one).unwrap()), [3, 4]);
    assert_eq!(seqs_of(store.get_range(3, 10, 3 * one - 1).unwrap()), [3, 4]);
    assert_eq!(seqs_of(store.get_range(3, 10, 3 * one).unwrap()), [3, 4, 7]);
    let got = store.get_range(8, 1, u64::MAX).unwrap();
    assert_eq!(got, vec![store.get(8).unwrap().unwrap()]);
}
