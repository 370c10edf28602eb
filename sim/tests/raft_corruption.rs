//! A node whose log lost committed entries to corruption must not vote with the shortened
//! log (DESIGN §4; Jepsen's NATS 2.12.1 analysis): real `RaftStorage` on faultfs, a bit flip
//! in the middle of a synced segment, recovery, then the Raft node built from it.

use bytes::Bytes;
use sluice_core::disk::Disk;
use sluice_core::env::MonoTime;
use sluice_core::raft::message::{Body, Message};
use sluice_core::raft::storage::{LogConfig, RaftStorage};
use sluice_core::raft::{Action, Entry, EntryKind, HardState, Membership, Raft, RaftConfig, RecoveredLog, Role};
use sluice_faultfs::FaultFs;
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
    let recovered = RecoveredLog {
        hard_state: rec.hard_state,
        snapshot: rec.snapshot,
        entries: rec.entries,
        commit_floor: rec.commit_floor,
    };
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
