//! A node whose log lost committed entries to corruption must not vote with the shortened
//! log (DESIGN §4; Jepsen's NATS 2.12.1 analysis): real `RaftStorage` on faultfs, a bit flip
//! in the middle of a synced segment, recovery, then the Raft node built from it.

use bytes::Bytes;
use sluice_core::disk::Disk;
use sluice_core::env::MonoTime;
use sluice_core::raft::message::{Body, Message};
use sluice_core::raft::storage::{LogConfig, RaftStorage};
use sluice_core::raft::{
    Action, Entry, EntryKind, HardState, Membership, PersistIo, Raft, RaftConfig, RecoveredLog, Role,
};
use sluice_faultfs::{CrashMode, FaultFs};
use std::path::Path;
use std::time::Duration;

#[test]
fn a_node_that_lost_committed_entries_refuses_to_vote_until_repaired() {
    let disk = FaultFs::new(7);
    let dir = Path::new("g");
    let (mut storage, _) = RaftStorage::open(disk.clone(), dir, LogConfig::default()).unwrap();
    storage.set_hard_state(HardState { term: 2, vote: 1, commit: 0 }).unwrap();
    // 40 entries written in batches of 4, each batch carrying the commit index known then.
    for batch in 0..10u64 {
        let entries: Vec<Entry> = (1..=4)
            .map(|i| Entry {
                index: batch * 4 + i,
                term: 2,
                kind: EntryKind::Normal,
                data: Bytes::from(vec![7u8; 100]),
            })
            .collect();
        storage.append(&entries, (batch * 4).saturating_sub(2)).unwrap();
        storage.sync().unwrap();
    }
    drop(storage);
    // Bit rot in the middle of the segment.
    let names = disk.list_dir(&dir.join("log")).unwrap();
    let segment = dir.join("log").join(&names[0]);
    let len = disk.durable_contents(&segment).unwrap().len() as u64;
    disk.flip_bit(&segment, len / 3, 2).unwrap();

    let (_, rec) = RaftStorage::open(disk.clone(), dir, LogConfig::default()).unwrap();
    assert!(rec.cut.is_some(), "recovery cut at the flipped record");
    let last = rec.entries.last().map_or(0, |e| e.index);
    assert!(last < 20, "cut in the middle (log ends at {last})");
    assert!(rec.commit_floor >= 30, "later records' claims survive the cut (floor {})", rec.commit_floor);

    let now = MonoTime::from_nanos(1);
    let recovered = RecoveredLog::from(rec);
    let mut raft = Raft::new(RaftConfig::new(2), 1, Membership::new([1, 2, 3]), recovered, 3, now).unwrap();
    assert!(raft.is_damaged());
    // A candidate whose log is as long as the shortened one (but lacks committed entries).
    let vote = |kind_pre: bool| Message {
        group: 1,
        from: 3,
        to: 2,
        term: 3,
        body: Body::Vote { pre_vote: kind_pre, transfer: false, last_index: last, last_term: 2 },
    };
    for pre in [true, false] {
        raft.handle_message(now, vote(pre)).unwrap();
        while let Some(action) = raft.poll_action(now) {
            match action {
                Action::Persist(io) => raft.handle_persisted(now, io.id),
                Action::Send(m) => {
                    assert!(!matches!(m.body, Body::VoteResponse { granted: true, .. }), "granted {m:?}")
                }
            }
        }
    }
    raft.tick(now + Duration::from_secs(60));
    assert_eq!(raft.role(), Role::Follower, "a damaged node does not campaign");
    // The leader re-sends what was lost; the node is whole again and may vote.
    let entries: Vec<Entry> = (last + 1..=40)
        .map(|i| Entry { index: i, term: 2, kind: EntryKind::Normal, data: Bytes::from(vec![7u8; 100]) })
        .collect();
    let append = Message {
        group: 1,
        from: 1,
        to: 2,
        term: 3,
        body: Body::Append { prev_index: last, prev_term: 2, commit: 38, entries },
    };
    raft.handle_message(now, append).unwrap();
    assert!(!raft.is_damaged(), "repaired from the leader");
}

/// What a follower does with one AppendEntries batch before it answers: append, sync, mark.
fn persist_batch(storage: &mut RaftStorage<FaultFs>, first: u64, count: u64, claim: u64) {
    let entries = (first..first + count)
        .map(|index| Entry { index, term: 2, kind: EntryKind::Normal, data: Bytes::from(vec![7u8; 100]) })
        .collect();
    storage.persist(&PersistIo { id: 1, entries, commit_claim: claim, ..Default::default() }).unwrap();
}

#[test]
fn a_flip_in_the_newest_acknowledged_batch_damages_the_node_but_a_torn_tail_does_not() {
    let disk = FaultFs::new(11);
    let dir = Path::new("g");
    let (mut storage, _) = RaftStorage::open(disk.clone(), dir, LogConfig::default()).unwrap();
    // Batches of 4; each claims the commit its leader knew, which lags by a batch.
    for batch in 0..5u64 {
        persist_batch(&mut storage, batch * 4 + 1, 4, (batch * 4).saturating_sub(2));
    }
    // An append written but not yet synced when the power goes: never acknowledged.
    let torn: Vec<Entry> = (21..=24)
        .map(|index| Entry { index, term: 2, kind: EntryKind::Normal, data: Bytes::from(vec![9u8; 100]) })
        .collect();
    storage.append(&torn, 18).unwrap();
    drop(storage);
    disk.crash();
    let (_, rec) = RaftStorage::open(disk.clone(), dir, LogConfig::default()).unwrap();
    let last = rec.entries.last().map_or(0, |e| e.index);
    assert!((20..=24).contains(&last), "synced entries survive a crash (log ends at {last})");
    assert!(rec.ack_mark <= last, "a crash never leaves the mark above the log ({} > {last})", rec.ack_mark);
    assert_eq!(rec.ack_mark, last, "recovery raises the mark to the log it keeps and will acknowledge");

    // Bit rot in entry 18, in the newest acknowledged batch (17..=20): its claims say 14.
    let names = disk.list_dir(&dir.join("log")).unwrap();
    let segment = dir.join("log").join(&names[0]);
    let record_bytes = disk.durable_contents(&segment).unwrap().len() as u64 / last;
    disk.flip_bit(&segment, record_bytes * 17 + record_bytes / 2, 3).unwrap();
    let (_, rec) = RaftStorage::open(disk.clone(), dir, LogConfig::default()).unwrap();
    let cut_last = rec.entries.last().map_or(0, |e| e.index);
    assert!((16..20).contains(&cut_last), "cut in the last batch (log ends at {cut_last})");
    assert!(rec.commit_floor <= cut_last, "the claims alone see no loss (floor {})", rec.commit_floor);
    assert_eq!(rec.ack_mark, last, "the mark does");
    let recovered = RecoveredLog::from(rec);
    let now = MonoTime::from_nanos(1);
    let raft = Raft::new(RaftConfig::new(2), 1, Membership::new([1, 2, 3]), recovered, 3, now).unwrap();
    assert!(raft.is_damaged(), "it may have acknowledged committed entries it no longer has");
    assert!(raft.commit_index() <= cut_last, "and the mark commits nothing");
}

/// Entries `indexes` of term 2, as one append.
fn entries(indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    indexes.map(|index| Entry { index, term: 2, kind: EntryKind::Normal, data: Bytes::from(vec![5u8; 100]) }).collect()
}

#[test]
fn records_left_in_the_page_cache_by_a_failed_recovery_sync_are_written_again_by_the_next_open() {
    let disk = FaultFs::new(13);
    let dir = Path::new("g");
    // The interval mode: entries are synced by the periodic sync, which raises the mark.
    let config = LogConfig { sync_appends: false, ..LogConfig::default() };
    let (mut storage, _) = RaftStorage::open(disk.clone(), dir, config).unwrap();
    storage.append(&entries(1..=8), 0).unwrap();
    storage.sync().unwrap();
    assert_eq!(storage.ack_mark(), 8, "the periodic sync raises the mark over what it synced");
    // 9..=12 are written but not synced when the process stops; the machine stays up.
    storage.append(&entries(9..=12), 6).unwrap();
    drop(storage);
    // The next open's sync of the segment fails: Linux drops those pages from the writeback
    // and goes on serving them.
    let names = disk.list_dir(&dir.join("log")).unwrap();
    let segment = dir.join("log").join(&names[0]);
    disk.fail_next_sync_data(&segment).unwrap();
    assert!(RaftStorage::open(disk.clone(), dir, config).is_err(), "recovery reports its failed sync");
    // The open after it, in the same boot, reads 9..=12 from the page cache. A sync alone
    // would find nothing to write and the mark would cover them.
    let (storage, rec) = RaftStorage::open(disk.clone(), dir, config).unwrap();
    assert_eq!(rec.entries.last().map(|e| e.index), Some(12));
    assert_eq!(rec.ack_mark, 12);
    drop(storage);
    // Power loss: only what reached the medium is left.
    disk.crash_with(CrashMode::LoseUnsynced);
    let (_, rec) = RaftStorage::open(disk.clone(), dir, config).unwrap();
    let last = rec.entries.last().map_or(0, |e| e.index);
    assert_eq!(last, 12, "the second open wrote 9..=12 again, so its sync made them durable");
    assert!(rec.ack_mark <= last, "the mark covers nothing the log lost");
    let raft = Raft::new(
        RaftConfig::new(2),
        1,
        Membership::new([1, 2, 3]),
        RecoveredLog::from(rec),
        3,
        MonoTime::from_nanos(1),
    )
    .unwrap();
    assert!(!raft.is_damaged(), "whole: nothing it acknowledged is missing");
}
