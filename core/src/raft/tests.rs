//! Unit tests of the Raft state machine on a tiny in-memory harness: storage is a model
//! (what `PersistIo`s made durable), the network a FIFO the test controls. The seeded
//! many-node safety test with faultfs disks lives in sim/tests/raft_safety.rs.

use super::message::{append_bytes, Body, Message};
use super::*;
use crate::env::{MonoTime, NodeId};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

#[derive(Default, Clone)]
struct MemStorage {
    hs: HardState,
    /// Highest commit claim stored with entries (real storage keeps one per record).
    commit_claim: Index,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

impl MemStorage {
    fn apply(&mut self, io: &PersistIo) {
        if let Some(s) = &io.snapshot {
            self.snapshot = Some(s.clone());
            self.entries.clear();
        }
        if let Some(t) = io.truncate_from {
            self.entries.retain(|e| e.index < t);
        }
        for e in &io.entries {
            let base = self.snapshot.as_ref().map_or(0, |s| s.meta.last_index);
            assert_eq!(e.index, base + self.entries.len() as u64 + 1, "storage appends are contiguous");
            self.entries.push(e.clone());
        }
        if let Some(s) = &io.adopt_snapshot {
            self.entries.retain(|e| e.index > s.meta.last_index);
            self.snapshot = Some(s.clone());
        }
        if let Some(hs) = io.hard_state {
            self.hs = hs;
        }
        if !io.entries.is_empty() {
            self.commit_claim = self.commit_claim.max(io.commit_claim);
        }
    }

    fn recovered(&self) -> RecoveredLog {
        RecoveredLog {
            hard_state: self.hs,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
            commit_floor: self.hs.commit.max(self.commit_claim),
            // This model never loses a durable entry, so its log always reaches the mark.
            ack_mark: self.entries.last().map_or(0, |e| e.index),
        }
    }
}

struct Harness {
    nodes: BTreeMap<NodeId, Raft>,
    storage: BTreeMap<NodeId, MemStorage>,
    net: VecDeque<Message>,
    /// Every message sent, for inspection.
    sent: Vec<Message>,
    down: BTreeSet<NodeId>,
    applied: BTreeMap<NodeId, Vec<Entry>>,
    /// Nodes whose committed entries are left unapplied (an application catching up).
    hold_apply: BTreeSet<NodeId>,
    now: MonoTime,
}

fn cfg(id: NodeId) -> RaftConfig {
    RaftConfig::new(id)
}

/// A (non-pre-)vote request to node 1 of group 1.
/// Whether `r` grants the vote `request` at `now` (its actions run, its writes complete).
fn grants_vote(r: &mut Raft, now: MonoTime, request: Message) -> bool {
    r.handle_message(now, request).unwrap();
    let mut granted = false;
    while let Some(a) = r.poll_action(now) {
        match a {
            Action::Send(Message { body: Body::VoteResponse { granted: g, .. }, .. }) => granted |= g,
            Action::Persist(io) => r.handle_persisted(now, io.id),
            _ => {}
        }
    }
    granted
}

fn vote_to_1(from: NodeId, term: Term, last_index: Index, last_term: Term) -> Message {
    Message {
        group: 1,
        from,
        to: 1,
        term,
        body: Body::Vote { pre_vote: false, transfer: false, last_index, last_term },
    }
}

impl Harness {
    fn new(ids: &[NodeId]) -> Harness {
        Harness::with_config(ids, cfg)
    }

    fn with_config(ids: &[NodeId], make: impl Fn(NodeId) -> RaftConfig) -> Harness {
        let now = MonoTime::from_nanos(1);
        let membership = Membership::new(ids.iter().copied());
        let mut nodes = BTreeMap::new();
        for &id in ids {
            nodes.insert(
                id,
                Raft::new(make(id), 1, membership.clone(), RecoveredLog::default(), id * 7919, now).unwrap(),
            );
        }
        Harness {
            nodes,
            storage: ids.iter().map(|id| (*id, MemStorage::default())).collect(),
            net: VecDeque::new(),
            sent: Vec::new(),
            down: BTreeSet::new(),
            applied: BTreeMap::new(),
            hold_apply: BTreeSet::new(),
            now,
        }
    }

    /// Runs every node's actions, persisting immediately, and delivers messages until quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                if self.down.contains(&id) {
                    continue;
                }
                while let Some(action) = self.nodes.get_mut(&id).unwrap().poll_action(self.now) {
                    progressed = true;
                    match action {
                        Action::Send(m) => {
                            self.sent.push(m.clone());
                            self.net.push_back(m);
                        }
                        Action::Persist(io) => {
                            self.storage.get_mut(&id).unwrap().apply(&io);
                            self.nodes.get_mut(&id).unwrap().handle_persisted(self.now, io.id);
                        }
                    }
                }
                let raft = self.nodes.get_mut(&id).unwrap();
                while let Some(a) = if self.hold_apply.contains(&id) { None } else { raft.poll_apply(1000) } {
                    if let Applied::Entries(es) = a {
                        self.applied.entry(id).or_default().extend(es);
                    }
                }
                raft.check_invariants();
            }
            if let Some(m) = self.net.pop_front() {
                progressed = true;
                if !self.down.contains(&m.to) && !self.down.contains(&m.from) {
                    // Round-trip through the wire format, as a real network would.
                    let m = Message::decode(&m.encode()).expect("our own messages decode");
                    let _ = self.nodes.get_mut(&m.to).unwrap().handle_message(self.now, m);
                }
            }
            if !progressed {
                return;
            }
        }
        panic!("no quiescence");
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            if !self.down.contains(&id) {
                self.nodes.get_mut(&id).unwrap().tick(self.now);
            }
        }
        self.settle();
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes.iter().find(|(id, r)| r.role() == Role::Leader && !self.down.contains(id)).map(|(id, _)| *id)
    }

    fn elect(&mut self) -> NodeId {
        for _ in 0..200 {
            if let Some(l) = self.leader() {
                if self.nodes[&l].is_leader_ready() {
                    return l;
                }
            }
            self.advance(Duration::from_millis(100));
        }
        panic!("no leader elected");
    }

    fn raft(&mut self, id: NodeId) -> &mut Raft {
        self.nodes.get_mut(&id).unwrap()
    }
}

#[test]
fn three_nodes_elect_replicate_and_apply() {
    let mut h = Harness::new(&[1, 2, 3]);
    let leader = h.elect();
    let now = h.now;
    for i in 0..10u8 {
        h.raft(leader).propose(now, Bytes::from(vec![i])).unwrap();
    }
    h.settle();
    h.advance(Duration::from_millis(300)); // a heartbeat carries the commit index
    for id in [1, 2, 3] {
        let data: Vec<u8> = h.applied[&id].iter().filter(|e| e.kind == EntryKind::Normal).map(|e| e.data[0]).collect();
        assert_eq!(data, (0..10).collect::<Vec<u8>>(), "node {id}");
    }
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    assert_eq!(
        h.raft(follower).propose(now, Bytes::from_static(b"x")),
        Err(ProposeError::NotLeader { leader: Some(leader) })
    );
}

#[test]
fn a_vote_is_sent_only_after_the_term_and_vote_are_durable() {
    let mut h = Harness::new(&[1, 2, 3]);
    let now = h.now;
    h.raft(1).handle_message(now, vote_to_1(2, 5, 0, 0)).unwrap();
    let first = h.raft(1).poll_action(now).unwrap();
    let Action::Persist(io) = first else { panic!("expected the vote to be persisted first, got {first:?}") };
    assert_eq!(io.hard_state.map(|hs| (hs.term, hs.vote)), Some((5, 2)));
    assert_eq!(h.raft(1).poll_action(now), None, "the response waits for the io");
    h.raft(1).handle_persisted(now, io.id);
    let Some(Action::Send(m)) = h.raft(1).poll_action(now) else { panic!() };
    assert_eq!(m.body, Body::VoteResponse { pre_vote: false, granted: true });
    // A second candidate in the same term is refused.
    h.raft(1).handle_message(now, vote_to_1(3, 5, 9, 4)).unwrap();
    let Some(Action::Send(m)) = h.raft(1).poll_action(now) else { panic!() };
    assert_eq!(m.body, Body::VoteResponse { pre_vote: false, granted: false });
}

fn appends_to(sent: &[Message], to: NodeId) -> Vec<Vec<Entry>> {
    sent.iter()
        .filter(|m| m.to == to)
        .filter_map(|m| match &m.body {
            Body::Append { entries, .. } if !entries.is_empty() => Some(entries.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn batches_respect_the_byte_and_entry_caps() {
    let mut h = Harness::with_config(&[1, 2, 3], |id| RaftConfig {
        batch_entries_max: 7,
        batch_bytes_max: 1000,
        inflight_appends_max: 1024,
        ..cfg(id)
    });
    let leader = h.elect();
    let follower = if leader == 1 { 2 } else { 1 };
    h.sent.clear();
    let now = h.now;
    // 100 entries of 40 bytes: 7 per batch by count; 100 one-byte entries are capped by count.
    for i in 0..100u32 {
        let size = if i < 50 { 40 } else { 1 };
        h.raft(leader).propose(now, Bytes::from(vec![i as u8; size])).unwrap();
    }
    // A big entry (over half the byte cap) goes in a batch of its own.
    h.raft(leader).propose(now, Bytes::from(vec![9u8; 900])).unwrap();
    h.settle();
    let batches = appends_to(&h.sent, follower);
    assert!(!batches.is_empty());
    for b in &batches {
        assert!(b.len() <= 7, "{} entries", b.len());
        assert!(append_bytes(b) <= 1000, "{} bytes", append_bytes(b));
    }
    assert!(batches.iter().any(|b| b.len() == 7), "batches fill up to the entry cap");
    let big = batches.iter().find(|b| b.iter().any(|e| e.data.len() == 900)).unwrap();
    assert_eq!(big.len(), 1, "the 900-byte entry cannot share a 1000-byte batch");
    // Too large to ever fit one AppendEntries: refused at proposal.
    assert!(matches!(h.raft(leader).propose(now, Bytes::from(vec![0u8; 1000])), Err(ProposeError::TooLarge { .. })));
}

#[test]
fn default_caps_are_one_mebibyte_and_65535_entries() {
    let c = RaftConfig::new(1);
    assert_eq!(c.batch_bytes_max, 1024 * 1024);
    assert_eq!(c.batch_entries_max, 65_535);
    assert!(RaftConfig { batch_entries_max: 65_536, ..c.clone() }.validate().is_err());
}

#[test]
fn membership_and_snapshot_entries_travel_alone() {
    let mut h = Harness::new(&[1, 2, 3]);
    let leader = h.elect();
    let now = h.now;
    for i in 0..3u8 {
        h.raft(leader).propose(now, Bytes::from(vec![i])).unwrap();
    }
    h.raft(leader).propose_membership(now, true, 4).unwrap();
    for i in 3..6u8 {
        h.raft(leader).propose(now, Bytes::from(vec![i])).unwrap();
    }
    h.raft(leader).propose_snapshot_entry(now, Bytes::from_static(b"state")).unwrap();
    for i in 6..9u8 {
        h.raft(leader).propose(now, Bytes::from(vec![i])).unwrap();
    }
    let r = &h.nodes[&leader];
    let mut batches = Vec::new();
    let mut next = r.log().first_index();
    while next <= r.log().last_index() {
        let b = r.next_batch(next);
        next = b.last().unwrap().index + 1;
        batches.push(b);
    }
    let kinds: Vec<Vec<EntryKind>> = batches.iter().map(|b| b.iter().map(|e| e.kind).collect()).collect();
    use EntryKind::*;
    assert_eq!(
        kinds,
        vec![
            vec![Noop, Normal, Normal, Normal],
            vec![AddPeer],
            vec![Normal, Normal, Normal],
            vec![Snapshot],
            vec![Normal, Normal, Normal],
        ]
    );
}

#[test]
fn one_membership_change_at_a_time() {
    let mut h = Harness::new(&[1, 2, 3]);
    let leader = h.elect();
    let now = h.now;
    let victim = if leader == 3 { 2 } else { 3 };
    h.raft(leader).propose_membership(now, false, victim).unwrap();
    assert_eq!(h.raft(leader).propose_membership(now, true, 9), Err(ProposeError::MembershipChangePending));
    h.settle();
    h.advance(Duration::from_millis(300));
    assert!(!h.nodes[&leader].membership().contains(victim));
    let now = h.now;
    assert!(h.raft(leader).propose_membership(now, true, victim).is_ok(), "the next change may start once committed");
    assert!(matches!(h.raft(leader).propose_membership(now, false, 42), Err(ProposeError::MembershipChangePending)));
}

#[test]
fn leader_transfer_is_not_stored_in_the_log() {
    let mut h = Harness::new(&[1, 2, 3]);
    let leader = h.elect();
    let target = if leader == 1 { 2 } else { 1 };
    let last_before = h.nodes[&leader].log().last_index();
    let now = h.now;
    h.raft(leader).transfer_leadership(now, target).unwrap();
    assert_eq!(h.raft(leader).propose(now, Bytes::from_static(b"x")), Err(ProposeError::TransferInProgress));
    h.settle();
    assert_eq!(h.leader(), Some(target));
    let log = h.nodes[&target].log();
    // The only new entry is the new leader's no-op.
    assert_eq!(log.last_index(), last_before + 1);
    assert_eq!(log.get(last_before + 1).unwrap().kind, EntryKind::Noop);
    assert!(h.sent.iter().any(|m| m.body == Body::TimeoutNow));
}

#[test]
fn a_damaged_node_neither_votes_nor_campaigns() {
    let now = MonoTime::from_nanos(1);
    let recovered = RecoveredLog { commit_floor: 10, ..Default::default() };
    let mut r = Raft::new(cfg(1), 1, Membership::new([1, 2, 3]), recovered, 1, now).unwrap();
    assert!(r.is_damaged());
    let grants = |r: &mut Raft, request: Message| grants_vote(r, now, request);
    assert!(!grants(&mut r, vote_to_1(2, 3, 0, 0)), "a node that lost committed entries must not vote");
    // Nor pre-vote: a granted pre-vote lets the candidate start the election that the
    // damaged log would then decide.
    let pre_vote = Message {
        body: Body::Vote { pre_vote: true, transfer: false, last_index: 0, last_term: 0 },
        ..vote_to_1(2, 4, 0, 0)
    };
    assert!(!grants(&mut r, pre_vote), "a node that lost committed entries must not pre-vote either");
    r.tick(now + Duration::from_secs(10));
    assert_eq!(r.role(), Role::Follower, "nor campaign");
    // Entries from a leader repair it.
    let entries: Vec<Entry> =
        (1..=10).map(|i| Entry { index: i, term: 3, kind: EntryKind::Normal, data: Bytes::new() }).collect();
    let append = Message {
        group: 1,
        from: 2,
        to: 1,
        term: 3,
        body: Body::Append { prev_index: 0, prev_term: 0, commit: 10, entries },
    };
    r.handle_message(now, append).unwrap();
    assert!(!r.is_damaged());
}

#[test]
fn a_log_below_its_ack_mark_is_damaged_but_commits_nothing_more() {
    let now = MonoTime::from_nanos(1);
    let entries: Vec<Entry> =
        (1..=4).map(|i| Entry { index: i, term: 2, kind: EntryKind::Normal, data: Bytes::new() }).collect();
    let recovered = RecoveredLog {
        hard_state: HardState { term: 2, vote: 2, commit: 2 },
        entries,
        commit_floor: 2,
        ack_mark: 7,
        ..Default::default()
    };
    let mut r = Raft::new(cfg(1), 1, Membership::new([1, 2, 3]), recovered, 1, now).unwrap();
    assert!(r.is_damaged(), "entries 5..=7 may have been acknowledged and are gone");
    assert_eq!((r.commit_floor(), r.damage_floor()), (2, 7));
    assert_eq!(r.commit_index(), 2, "the mark says what was acknowledged, not what was committed");
    assert!(
        !grants_vote(&mut r, now, vote_to_1(3, 3, 4, 2)),
        "a candidate with the same log could lack the acknowledged entries"
    );
    let more: Vec<Entry> =
        (5..=7).map(|i| Entry { index: i, term: 3, kind: EntryKind::Normal, data: Bytes::new() }).collect();
    let append = Message {
        group: 1,
        from: 2,
        to: 1,
        term: 3,
        body: Body::Append { prev_index: 4, prev_term: 2, commit: 6, entries: more },
    };
    r.handle_message(now, append).unwrap();
    assert!(!r.is_damaged(), "the log reaches the mark again");
}

#[test]
fn a_conflict_truncation_below_the_ack_mark_leaves_the_node_whole() {
    // Recovery sets the mark to at least the log it kept, so a leader that restarted with
    // uncommitted entries has a mark over them; the next leader's conflicting entries prove
    // them uncommitted, and the node must not stay damaged (unable to vote) after dropping them.
    let now = MonoTime::from_nanos(1);
    let entries: Vec<Entry> =
        (1..=10).map(|i| Entry { index: i, term: 2, kind: EntryKind::Normal, data: Bytes::new() }).collect();
    let recovered = RecoveredLog {
        hard_state: HardState { term: 2, vote: 1, commit: 5 },
        entries,
        commit_floor: 5,
        ack_mark: 10,
        ..Default::default()
    };
    let mut r = Raft::new(cfg(1), 1, Membership::new([1, 2, 3]), recovered, 1, now).unwrap();
    assert!(!r.is_damaged());
    let conflicting = vec![Entry { index: 8, term: 3, kind: EntryKind::Normal, data: Bytes::new() }];
    let append = Message {
        group: 1,
        from: 2,
        to: 1,
        term: 3,
        body: Body::Append { prev_index: 7, prev_term: 2, commit: 5, entries: conflicting },
    };
    r.handle_message(now, append).unwrap();
    assert_eq!(r.log().last_index(), 8);
    assert_eq!(r.damage_floor(), 7, "the floor came down with the truncation");
    assert!(!r.is_damaged());
    // And it votes again: a candidate as up to date as it is gets the vote in a later term
    // (once the leader's lease has run out).
    let later = now + Duration::from_secs(10);
    assert!(grants_vote(&mut r, later, vote_to_1(3, 4, 8, 3)), "a whole node votes");
}

fn committed_cluster() -> (Harness, NodeId) {
    let mut h = Harness::new(&[1, 2, 3]);
    let leader = h.elect();
    let now = h.now;
    for i in 0..20u8 {
        h.raft(leader).propose(now, Bytes::from(vec![i])).unwrap();
    }
    h.settle();
    h.advance(Duration::from_millis(300));
    (h, leader)
}

#[test]
fn checkpoint_is_refused_during_catchup_unless_forced() {
    let (mut h, leader) = committed_cluster();
    let now = h.now;
    let lagger = if leader == 3 { 2 } else { 3 };
    h.raft(leader).set_app_catchup(lagger, Some(now + Duration::from_secs(5)));
    assert_eq!(h.raft(leader).create_checkpoint(now, false), Err(CheckpointError::CatchupsRunning));
    let cp = h.raft(leader).create_checkpoint(now, true).unwrap();
    assert!(cp.forced);
    assert_eq!(cp.index, h.nodes[&leader].applied_index());
    // A follower that answers but lags behind the checkpoint index is a raft-level catch-up.
    let (mut h, leader) = committed_cluster();
    let now = h.now;
    let lagger = if leader == 3 { 2 } else { 3 };
    h.raft(leader).set_app_catchup(lagger, None);
    let p = h.nodes.get_mut(&leader).unwrap();
    assert_eq!(p.create_checkpoint(now, false).map(|c| c.forced), Ok(false));
}

#[test]
fn snapshot_is_forced_after_four_failures() {
    let (mut h, leader) = committed_cluster();
    let now = h.now;
    h.raft(leader).set_app_catchup(9, Some(now + Duration::from_secs(60)));
    for attempt in 1..=5 {
        assert!(!h.nodes[&leader].should_force_checkpoint(), "attempt {attempt}");
        assert_eq!(h.raft(leader).create_checkpoint(now, false), Err(CheckpointError::CatchupsRunning));
    }
    assert_eq!(h.nodes[&leader].checkpoint_failures(), 5);
    assert!(h.nodes[&leader].should_force_checkpoint(), "more than four failures force the next one");
    let force = h.nodes[&leader].should_force_checkpoint();
    let cp = h.raft(leader).create_checkpoint(now, force).unwrap();
    let compacted = h.raft(leader).checkpoint_saved(now, cp.generation, Bytes::from_static(b"s")).unwrap();
    assert_eq!(compacted, cp.index);
    assert_eq!(h.nodes[&leader].checkpoint_failures(), 0);
    assert_eq!(h.nodes[&leader].log().first_index(), cp.index + 1);
}

#[test]
fn catchups_are_checked_again_before_compaction() {
    let (mut h, leader) = committed_cluster();
    let now = h.now;
    let cp = h.raft(leader).create_checkpoint(now, false).unwrap();
    let first_before = h.nodes[&leader].log().first_index();
    // A catch-up starts while the snapshot is being written.
    h.raft(leader).set_app_catchup(3, Some(now + Duration::from_secs(5)));
    assert_eq!(
        h.raft(leader).checkpoint_saved(now, cp.generation, Bytes::from_static(b"s")),
        Err(CheckpointError::CatchupsRunning)
    );
    let r = &h.nodes[&leader];
    assert_eq!(r.log().first_index(), first_before, "the log is not compacted");
    assert_eq!(r.log().snapshot_index(), cp.index, "the durable snapshot is kept");
    assert_eq!(r.checkpoint_failures(), 1);
    assert!(!r.checkpoint_in_progress());
}

#[test]
fn a_stale_abort_cannot_cancel_a_newer_checkpoint() {
    let (mut h, leader) = committed_cluster();
    let now = h.now;
    let old = h.raft(leader).create_checkpoint(now, false).unwrap();
    assert_eq!(h.raft(leader).create_checkpoint(now, false), Err(CheckpointError::InProgress));
    let new = h.raft(leader).create_checkpoint(now, true).unwrap();
    h.raft(leader).abort_checkpoint(old.generation);
    assert!(h.nodes[&leader].checkpoint_in_progress());
    assert_eq!(h.raft(leader).checkpoint_saved(now, old.generation, Bytes::new()), Err(CheckpointError::Superseded));
    assert!(h.raft(leader).checkpoint_saved(now, new.generation, Bytes::new()).is_ok());
}

#[test]
fn a_follower_behind_the_compacted_log_gets_the_snapshot() {
    let (mut h, leader) = committed_cluster();
    let lagger = if leader == 3 { 2 } else { 3 };
    h.down.insert(lagger);
    let now = h.now;
    for i in 0..5u8 {
        h.raft(leader).propose(now, Bytes::from(vec![100 + i])).unwrap();
    }
    h.settle();
    // Long enough that the leader no longer counts the silent follower as catching up.
    for _ in 0..12 {
        h.advance(Duration::from_millis(300));
    }
    let now = h.now;
    let cp = h.raft(leader).create_checkpoint(now, false).unwrap();
    h.raft(leader).checkpoint_saved(now, cp.generation, Bytes::from_static(b"state")).unwrap();
    h.down.remove(&lagger);
    h.advance(Duration::from_millis(300));
    h.advance(Duration::from_millis(300));
    assert!(h.sent.iter().any(|m| m.to == lagger && matches!(m.body, Body::InstallSnapshot { .. })));
    let r = h.raft(lagger);
    assert_eq!(r.log().snapshot_index(), cp.index);
    assert_eq!(r.log().snapshot().data, Bytes::from_static(b"state"));
    assert_eq!(h.storage[&lagger].snapshot.as_ref().map(|s| s.meta.last_index), Some(cp.index));
}

/// A follower whose application cannot rebuild its state from the snapshot it has (its
/// catch-up from peers failed) asks for a newer one. The leader sends its next snapshot even
/// though the follower's log holds those entries; the follower adopts it, keeps the entries
/// after it (they may count toward a commit), and applies it only once it is durable.
#[test]
fn a_follower_that_asks_adopts_a_newer_snapshot_and_keeps_its_log() {
    let (mut h, leader) = committed_cluster();
    let asker = if leader == 3 { 2 } else { 3 };
    let other = [1, 2, 3].into_iter().find(|id| *id != leader && *id != asker).unwrap();
    h.hold_apply.insert(asker);
    let now = h.now;
    for i in 0..10u8 {
        h.raft(leader).propose(now, Bytes::from(vec![50 + i])).unwrap();
    }
    h.settle();
    h.advance(Duration::from_millis(300));
    let above = h.nodes[&asker].applied_index();
    assert!(h.nodes[&asker].commit_index() > above, "the asker holds committed entries it has not applied");
    assert!(h.raft(asker).request_snapshot());
    assert!(!h.raft(leader).request_snapshot(), "a leader has nobody to ask");
    h.settle();
    assert!(h.nodes[&leader].snapshot_wanted(), "no snapshot newer than {above} yet");
    let now = h.now;
    let cp = h.raft(leader).create_checkpoint(now, false).unwrap();
    assert!(cp.index > above);
    for i in 0..3u8 {
        h.raft(leader).propose(now, Bytes::from(vec![90 + i])).unwrap();
    }
    h.settle();
    h.advance(Duration::from_millis(300));
    let last = h.nodes[&leader].log().last_index();
    assert_eq!(h.nodes[&asker].log().last_index(), last);
    h.raft(leader).checkpoint_saved(now, cp.generation, Bytes::from_static(b"newer")).unwrap();
    assert!(!h.nodes[&leader].snapshot_wanted());
    // Deliver by hand to look between the install and its durability.
    let mut install = None;
    while let Some(action) = h.raft(leader).poll_action(now) {
        match action {
            Action::Send(m) if matches!(m.body, Body::InstallSnapshot { .. }) => install = Some(m),
            Action::Send(m) => h.net.push_back(m),
            Action::Persist(io) => {
                h.storage.get_mut(&leader).unwrap().apply(&io);
                h.raft(leader).handle_persisted(now, io.id);
            }
        }
    }
    let install = install.expect("the leader sends its new snapshot to the asker");
    assert_eq!(install.to, asker);
    h.raft(asker).handle_message(now, install).unwrap();
    let r = h.raft(asker);
    assert_eq!(r.log().snapshot_index(), cp.index);
    assert_eq!(r.log().last_index(), last, "the entries after the snapshot are kept");
    assert!(!r.snapshot_ready(), "not durable yet");
    assert_eq!(r.poll_apply(1000), None);
    let Some(Action::Persist(io)) = r.poll_action(now) else { panic!("the adoption is persisted first") };
    assert!(io.snapshot.is_none(), "the log is not replaced");
    assert_eq!(io.adopt_snapshot.as_ref().map(|s| s.meta.last_index), Some(cp.index));
    h.storage.get_mut(&asker).unwrap().apply(&io);
    h.raft(asker).handle_persisted(now, io.id);
    let stored = &h.storage[&asker];
    assert_eq!(stored.snapshot.as_ref().map(|s| s.meta.last_index), Some(cp.index));
    assert_eq!(stored.entries.last().map(|e| e.index), Some(last));
    let r = h.raft(asker);
    assert!(r.snapshot_ready());
    match r.poll_apply(1000) {
        Some(Applied::Snapshot(s)) => assert_eq!(s.data, Bytes::from_static(b"newer")),
        other => panic!("expected the snapshot, got {other:?}"),
    }
    match r.poll_apply(1000) {
        Some(Applied::Entries(es)) => {
            assert_eq!(es.first().map(|e| e.index), Some(cp.index + 1));
            assert_eq!(es.last().map(|e| e.index), Some(last));
        }
        other => panic!("expected the entries after the snapshot, got {other:?}"),
    }
    h.hold_apply.clear();
    h.settle();
    assert!(
        !h.sent.iter().any(|m| m.to == other && matches!(m.body, Body::InstallSnapshot { .. })),
        "a follower that did not ask is not sent a snapshot it does not need"
    );
}

#[test]
fn restart_recovers_and_applies_from_storage() {
    let (mut h, leader) = committed_cluster();
    let follower = if leader == 1 { 2 } else { 1 };
    // One more entry carries the commit index the follower learnt from heartbeats into its
    // log records (commit claims ride on appends; docs/raft.md names the gap this leaves).
    let now = h.now;
    h.raft(leader).propose(now, Bytes::from_static(b"last")).unwrap();
    h.settle();
    let stored = h.storage[&follower].recovered();
    let floor = stored.commit_floor;
    let now = h.now;
    let mut r = Raft::new(cfg(follower), 1, Membership::new([1, 2, 3]), stored, 5, now).unwrap();
    assert!(floor >= 21, "the follower stored commit claims with its entries (floor {floor})");
    assert!(!r.is_damaged(), "its log reaches its ack mark");
    let mut applied = Vec::new();
    while let Some(Applied::Entries(es)) = r.poll_apply(1000) {
        applied.extend(es);
    }
    // Entries up to the durable commit claim apply at once, before any leader is heard.
    assert_eq!(applied.last().map(|e| e.index), Some(floor));
    assert_eq!(applied.len() as u64, floor);
}

/// Appends lost during a short outage must be sent again even though the follower answers
/// every heartbeat after it (found by the node tests: a restarted follower stayed behind
/// forever, its lost appends filling the in-flight window).
#[test]
fn appends_lost_in_a_blip_are_resent() {
    let mut h = Harness::with_config(&[1, 2, 3], |id| RaftConfig { inflight_appends_max: 2, ..cfg(id) });
    let leader = h.elect();
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    h.advance(Duration::from_millis(250)); // everyone answered a heartbeat
    h.down.insert(follower);
    for i in 0..2u8 {
        let now = h.now;
        h.raft(leader).propose(now, Bytes::from(vec![i])).unwrap();
        h.settle(); // the append to `follower` is lost
    }
    h.down.remove(&follower);
    for _ in 0..10 {
        h.advance(Duration::from_millis(250));
    }
    let got: Vec<u8> = h.applied[&follower].iter().filter(|e| e.kind == EntryKind::Normal).map(|e| e.data[0]).collect();
    assert_eq!(got, vec![0, 1]);
}
