//! The store under specific disk faults, one scenario each: what it must do, stated exactly.
//! (The crash property test meets these faults at random; these pin the behaviour down.)

use sluice_core::disk::{Disk, DiskErrorKind, EntryKind};
use sluice_core::format::FormatError;
use sluice_core::store::{CutReason, FileStore, Limits, NewMessage, StoreConfig, StoreError, SyncPolicy};
use sluice_faultfs::{CrashMode, FaultConfig, FaultFs};
use std::path::Path;

fn config(sync: SyncPolicy) -> StoreConfig {
    StoreConfig { block_size_bytes: 300, write_buffer_bytes: 0, sync, limits: Limits::default() }
}

fn msg(payload: &[u8]) -> NewMessage<'_> {
    NewMessage { subject: b"s", headers: b"", payload, timestamp_ns: 0 }
}

fn payload(i: u64) -> Vec<u8> {
    format!("message-{i:03}").into_bytes()
}

fn filled(fs: &FaultFs, sync: SyncPolicy, count: u64) -> FileStore<FaultFs> {
    let (mut store, _) = FileStore::open(fs.clone(), Path::new("s"), config(sync)).unwrap();
    for i in 1..=count {
        assert_eq!(store.append(&msg(&payload(i))).unwrap(), i);
    }
    store
}

#[test]
fn a_latent_sector_error_fails_recovery_with_file_and_offset_and_loses_nothing() {
    let fs = FaultFs::new(1);
    filled(&fs, SyncPolicy::Always, 20).close().unwrap();
    let block = Path::new("s/0000000002.blk");
    fs.make_sector_bad(block, 40).unwrap();
    let err = FileStore::open(fs.clone(), Path::new("s"), config(SyncPolicy::Always)).map(|_| ()).unwrap_err();
    match &err {
        StoreError::Disk { file, offset, source } => {
            assert_eq!(file, block);
            assert!(offset.is_some(), "the error names where the read failed: {err}");
            assert_eq!(source.kind, DiskErrorKind::Io);
            assert!(source.injected);
        }
        other => panic!("expected a disk error naming the block, got {other}"),
    }
    // Refusing is not cutting: the blocks are all still there for a retry or a repair.
    assert_eq!(fs.entry_kind(Path::new("s/0000000003.blk")).unwrap(), Some(EntryKind::File));
    assert!(err.to_string().contains("0000000002.blk"), "{err}");
}

#[test]
fn a_failed_fsync_stops_writes_and_is_never_believed() {
    let fs = FaultFs::new(2);
    let mut store = filled(&fs, SyncPolicy::Always, 3);
    fs.set_config(FaultConfig { fsync_eio_ppm: 1_000_000, ..FaultConfig::none() });
    let err = store.append(&msg(b"doomed")).unwrap_err();
    assert!(err.is_injected(), "{err}");
    fs.set_config(FaultConfig::none());
    // The device works again, but the store does not retry and believe: writes stay refused.
    let refused = store.append(&msg(b"after")).unwrap_err();
    assert!(matches!(refused, StoreError::Failed { .. }), "{refused}");
    assert!(matches!(store.sync(), Err(StoreError::Failed { .. })));
    assert!(store.has_unsynced_writes());
    // The message whose sync failed is not served as if it were stored.
    assert!(store.get(4).is_err());
    assert_eq!(store.get(3).unwrap().unwrap().payload, payload(3));
    drop(store);
    // A restart without a machine crash must not find the dropped record in the page cache.
    let (mut store, report) = FileStore::open(fs.clone(), Path::new("s"), config(SyncPolicy::Always)).unwrap();
    assert_eq!(store.state().last_seq, 3, "{report:?}");
    assert_eq!(store.append(&msg(b"next")).unwrap(), 4);
    drop(store);
    fs.crash_with(CrashMode::LoseUnsynced);
    let (store, _) = FileStore::open(fs, Path::new("s"), config(SyncPolicy::Always)).unwrap();
    assert_eq!(store.get(4).unwrap().unwrap().payload, &b"next"[..], "acknowledged after the reopen, so durable");
}

#[test]
fn a_bit_flipped_on_the_medium_is_cut_reported_and_never_served() {
    let fs = FaultFs::new(3);
    filled(&fs, SyncPolicy::Always, 20).close().unwrap();
    // Flip a payload bit of the first record in block 2.
    fs.flip_bit(Path::new("s/0000000002.blk"), 32 + 36, 3).unwrap();
    let (store, report) = FileStore::open(fs.clone(), Path::new("s"), config(SyncPolicy::Always)).unwrap();
    let cut = report.cut.expect("the flipped record is cut");
    assert_eq!(cut.file, Path::new("s/0000000002.blk"));
    assert_eq!(cut.offset, 32);
    assert!(matches!(cut.reason, CutReason::BadRecord(FormatError::BadChecksum { .. })));
    let first_lost = cut.expected_seq.unwrap();
    assert_eq!(report.lost, vec![(first_lost, 20)]);
    for seq in 1..first_lost {
        assert_eq!(store.get(seq).unwrap().unwrap().payload, payload(seq));
    }
    assert_eq!(store.get(first_lost).unwrap(), None);
}

#[test]
fn read_flips_give_the_right_message_or_an_error_never_other_bytes() {
    let mut recovered_by_reread = 0;
    let mut reported = 0;
    for seed in 0..40 {
        let fs = FaultFs::new(seed);
        let store = filled(&fs, SyncPolicy::Always, 10);
        fs.set_config(FaultConfig { read_bitflip_ppm: 500_000, ..FaultConfig::none() });
        for seq in 1..=10 {
            match store.get(seq) {
                Ok(Some(m)) => {
                    assert_eq!(m.payload, payload(seq), "seed {seed}: wrong bytes for {seq}");
                    recovered_by_reread += 1;
                }
                Ok(None) => panic!("seed {seed}: message {seq} vanished"),
                Err(StoreError::Corrupt { seq: Some(s), .. }) => {
                    assert_eq!(s, seq);
                    reported += 1;
                }
                Err(other) => panic!("seed {seed}: unexpected error {other}"),
            }
        }
    }
    // At a 50% flip rate both outcomes must occur: re-reads repair some, two flips in a row
    // are reported as corruption.
    assert!(recovered_by_reread > 100 && reported > 10, "{recovered_by_reread} / {reported}");
}

#[test]
fn enospc_refuses_the_append_and_the_store_goes_on() {
    let fs = FaultFs::new(4);
    let mut store = filled(&fs, SyncPolicy::Always, 3);
    fs.set_config(FaultConfig { write_enospc_ppm: 1_000_000, ..FaultConfig::none() });
    let err = store.append(&msg(b"no room")).unwrap_err();
    assert!(matches!(&err, StoreError::Disk { source, .. } if source.kind == DiskErrorKind::NoSpace), "{err}");
    fs.set_config(FaultConfig::none());
    assert_eq!(store.append(&msg(b"room again")).unwrap(), 4, "ENOSPC is not a reason to stop the store");
    drop(store);
    fs.crash_with(CrashMode::LoseUnsynced);
    let (store, report) = FileStore::open(fs, Path::new("s"), config(SyncPolicy::Always)).unwrap();
    assert_eq!(report.cut, None, "the partial write was cut back before the next append");
    assert_eq!(store.get(4).unwrap().unwrap().payload, &b"room again"[..]);
}

#[test]
fn recovery_reads_a_bad_looking_record_or_header_again_before_cutting() {
    // One transient flip at a time, in the fields a checksum alone would not cover first:
    // a record's length, its kind, a payload byte, and a block header's magic.
    for (what, path, offset) in [
        ("record length", "s/0000000001.blk", 32 + 1),
        ("record kind", "s/0000000002.blk", 32 + 4),
        ("payload byte", "s/0000000002.blk", 32 + 40),
        ("block magic", "s/0000000003.blk", 2),
    ] {
        let fs = FaultFs::new(5);
        filled(&fs, SyncPolicy::Always, 20).close().unwrap();
        fs.flip_next_read(Path::new(path), offset, 6).unwrap();
        let (store, report) = FileStore::open(fs.clone(), Path::new("s"), config(SyncPolicy::Always)).unwrap();
        assert_eq!(report.cut, None, "{what}: a transient flip must not cut");
        assert_eq!(report.transient_mismatches, 1, "{what}: the flip was seen and read past");
        assert_eq!(store.state().last_seq, 20, "{what}");
        assert!(fs.fault_counts().get(&sluice_faultfs::FaultKind::ReadBitflip) == Some(&1), "{what}: the flip fired");
    }
}

/// `begin_sync` / `SyncPlan::run` / `finish_sync` (a background checkpoint's store sync):
/// what was written before `begin_sync` is durable once the plan ran, appends made while it
/// ran are not claimed, and without the run nothing is.
#[test]
fn a_background_sync_makes_durable_what_was_written_before_it_began() {
    let crash_after = |run: bool| {
        let fs = FaultFs::new(7);
        let mut store = filled(&fs, SyncPolicy::OnSnapshot, 10);
        let mut plan = store.begin_sync().unwrap();
        for i in 11..=20 {
            assert_eq!(store.append(&msg(&payload(i))).unwrap(), i); // while the plan runs
        }
        if run {
            plan.run().unwrap();
            store.finish_sync(plan).unwrap();
            assert!(store.has_unsynced_writes(), "the appends made during the run are not synced");
        }
        drop(store);
        fs.crash_with(CrashMode::LoseUnsynced);
        let (store, _) = FileStore::open(fs, Path::new("s"), config(SyncPolicy::OnSnapshot)).unwrap();
        store.state().last_seq
    };
    assert!(crash_after(false) < 10, "without the run, the first ten are not all durable");
    let last = crash_after(true);
    assert!(last >= 10, "everything written before begin_sync survives: last {last}");
}

#[test]
fn a_failed_background_fsync_latches_the_store() {
    let fs = FaultFs::new(8);
    let mut store = filled(&fs, SyncPolicy::OnSnapshot, 5);
    let mut plan = store.begin_sync().unwrap();
    fs.set_config(FaultConfig { fsync_eio_ppm: 1_000_000, ..FaultConfig::none() });
    let err = plan.run().unwrap_err();
    assert!(err.is_injected(), "{err}");
    fs.set_config(FaultConfig::none());
    assert!(store.finish_sync(plan).is_err(), "the failure is reported again where the store lives");
    let refused = store.append(&msg(b"after")).unwrap_err();
    assert!(matches!(refused, StoreError::Failed { .. }), "{refused}");
}

/// A truncation while the plan runs may reuse block indexes: the plan must not mark the new
/// blocks durable; the next inline sync does the work.
#[test]
fn a_truncation_during_a_background_sync_leaves_the_blocks_dirty() {
    let fs = FaultFs::new(9);
    let mut store = filled(&fs, SyncPolicy::OnSnapshot, 20);
    let mut plan = store.begin_sync().unwrap();
    store.truncate_after(6).unwrap();
    for i in 7..=9 {
        assert_eq!(store.append(&msg(&payload(100 + i))).unwrap(), i);
    }
    plan.run().unwrap();
    store.finish_sync(plan).unwrap();
    assert!(store.has_unsynced_writes(), "appends after the truncation were never synced");
    store.sync().unwrap();
    drop(store);
    fs.crash_with(CrashMode::LoseUnsynced);
    let (store, _) = FileStore::open(fs, Path::new("s"), config(SyncPolicy::OnSnapshot)).unwrap();
    assert_eq!(store.state().last_seq, 9);
    assert_eq!(store.get(7).unwrap().unwrap().payload, payload(107));
    assert_eq!(store.get(6).unwrap().unwrap().payload, payload(6));
}

/// Both threads fsync one file (the store's and the plan's): what the plan made durable
/// survives a later failed fsync on the store's thread (which cuts back only to the durable
/// end either reached), and a failure the plan saw fails the store's next fsync too, rather
/// than being reported once and then forgotten (fsyncgate across threads).
#[test]
fn a_background_sync_and_the_stores_own_fsyncs_share_what_they_learn() {
    let fs = FaultFs::new(10);
    let mut store = filled(&fs, SyncPolicy::OnSnapshot, 10);
    let mut plan = store.begin_sync().unwrap();
    plan.run().unwrap();
    for i in 11..=12 {
        assert_eq!(store.append(&msg(&payload(i))).unwrap(), i);
    }
    fs.set_config(FaultConfig { fsync_eio_ppm: 1_000_000, ..FaultConfig::none() });
    assert!(store.sync().is_err(), "the store's own fsync fails");
    fs.set_config(FaultConfig::none());
    assert!(store.finish_sync(plan).is_err(), "a store that failed meanwhile backs no snapshot");
    drop(store);
    let (store, report) = FileStore::open(fs.clone(), Path::new("s"), config(SyncPolicy::OnSnapshot)).unwrap();
    assert!(store.state().last_seq >= 10, "the plan's durable records were not cut: {report:?}");
    drop(store);

    let fs = FaultFs::new(11);
    let mut store = filled(&fs, SyncPolicy::OnSnapshot, 10);
    let mut plan = store.begin_sync().unwrap();
    fs.set_config(FaultConfig { fsync_eio_ppm: 1_000_000, ..FaultConfig::none() });
    assert!(plan.run().is_err());
    fs.set_config(FaultConfig::none());
    assert!(store.sync().is_err(), "the device works again, but the failure the plan saw is not forgotten");
}
