//! The in-memory view of one group's log: the latest snapshot, the entries after the point
//! the log was compacted to, and the membership each prefix implies.
//!
//! Invariants (`check_invariants`):
//! * `first_index <= snapshot.last_index + 1`: the entries continue the snapshot with no
//!   gap (they may overlap it: a snapshot can be taken before the log is compacted);
//! * entry `i` sits at position `i - first_index`; terms never decrease;
//! * `memberships` holds one record per membership entry still in the log, ascending, and
//!   `base_membership` is the membership as of `first_index - 1`.

use super::types::{Entry, EntryKind, Index, Membership, Snapshot, SnapshotMeta, Term};
use std::collections::VecDeque;

pub struct RaftLog {
    /// The latest snapshot this node holds durably (meta plus data, for followers that need it).
    snapshot: Snapshot,
    first_index: Index,
    entries: VecDeque<Entry>,
    /// Membership as of `first_index - 1`.
    base_membership: Membership,
    memberships: Vec<(Index, Membership)>,
    entry_bytes: usize,
}

impl RaftLog {
    /// A log recovered from storage: `entries` start right after `snapshot` (or at 1).
    pub fn new(snapshot: Snapshot, entries: Vec<Entry>, initial: Membership) -> RaftLog {
        let first_index = snapshot.meta.last_index + 1;
        let base_membership = if snapshot.meta.last_index == 0 { initial } else { snapshot.meta.membership.clone() };
        let mut log = RaftLog {
            snapshot,
            first_index,
            entries: VecDeque::new(),
            base_membership,
            memberships: Vec::new(),
            entry_bytes: 0,
        };
        for e in entries {
            log.append(e);
        }
        log
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn snapshot_index(&self) -> Index {
        self.snapshot.meta.last_index
    }

    pub fn first_index(&self) -> Index {
        self.first_index
    }

    pub fn last_index(&self) -> Index {
        (self.first_index + self.entries.len() as u64 - 1).max(self.snapshot_index())
    }

    pub fn last_term(&self) -> Term {
        self.term(self.last_index()).expect("the last index always has a known term")
    }

    /// Bytes of entry data held in memory.
    pub fn entry_bytes(&self) -> usize {
        self.entry_bytes
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// The term of entry `index`, if this node still knows it.
    pub fn term(&self, index: Index) -> Option<Term> {
        if let Some(e) = self.get(index) {
            return Some(e.term);
        }
        if index == self.snapshot_index() {
            return Some(self.snapshot.meta.last_term);
        }
        if index == 0 {
            return Some(0);
        }
        None
    }

    pub fn get(&self, index: Index) -> Option<&Entry> {
        let pos = index.checked_sub(self.first_index)?;
        self.entries.get(usize::try_from(pos).ok()?)
    }

    /// Entries `from..=to` that are in memory.
    pub fn range(&self, from: Index, to: Index) -> impl Iterator<Item = &Entry> {
        let start = from.max(self.first_index);
        let skip = (start - self.first_index) as usize;
        let take = (to + 1).saturating_sub(start) as usize;
        self.entries.iter().skip(skip).take(take)
    }

    pub fn append(&mut self, e: Entry) {
        assert_eq!(e.index, self.last_index() + 1, "log entries are contiguous");
        assert!(e.term >= self.last_term(), "terms never decrease along the log");
        // Entries below first_index can appear only while the log restarts at a snapshot.
        assert!(e.index >= self.first_index);
        if matches!(e.kind, EntryKind::AddPeer | EntryKind::RemovePeer) {
            let mut m = self.membership().clone();
            let peer = e.peer().expect("membership entries are validated before they reach the log");
            if e.kind == EntryKind::AddPeer {
                m.voters.insert(peer);
            } else {
                m.voters.remove(&peer);
            }
            self.memberships.push((e.index, m));
        }
        self.entry_bytes += e.data.len();
        self.entries.push_back(e);
    }

    /// Removes every entry at or after `index`.
    pub fn truncate_from(&mut self, index: Index) {
        assert!(index > self.snapshot_index(), "entries covered by a snapshot are committed");
        while self.last_index() >= index && !self.entries.is_empty() {
            let e = self.entries.pop_back().expect("non-empty");
            self.entry_bytes -= e.data.len();
        }
        self.memberships.retain(|(i, _)| *i < index);
    }

    /// The membership implied by the whole log (the latest entry wins, committed or not:
    /// single-server changes take effect when appended, Raft thesis §4.1).
    pub fn membership(&self) -> &Membership {
        self.memberships.last().map(|(_, m)| m).unwrap_or(&self.base_membership)
    }

    /// The membership as of `index` (which must not be below `first_index - 1`).
    pub fn membership_at(&self, index: Index) -> Membership {
        self.memberships.iter().rev().find(|(i, _)| *i <= index).map(|(_, m)| m.clone()).unwrap_or_else(|| {
            assert!(index + 1 >= self.first_index, "membership below the log's start");
            self.base_membership.clone()
        })
    }

    /// Index of the latest membership entry, if one is in the log.
    pub fn last_membership_index(&self) -> Option<Index> {
        self.memberships.last().map(|(i, _)| *i)
    }

    /// A new snapshot is durable; the log is kept (compaction is separate).
    pub fn set_snapshot(&mut self, snapshot: Snapshot) {
        assert!(snapshot.meta.last_index >= self.snapshot_index(), "snapshots only move forward");
        assert!(snapshot.meta.last_index <= self.last_index(), "a local snapshot covers only logged entries");
        assert_eq!(self.term(snapshot.meta.last_index), Some(snapshot.meta.last_term));
        self.snapshot = snapshot;
    }

    /// Removes entries at or below `index`, which the snapshot must cover, and returns them:
    /// freeing a few hundred thousand entries took tens of milliseconds, so a caller on a hot
    /// thread can have them dropped elsewhere. The entries kept are moved, not the removed.
    pub fn compact_through(&mut self, index: Index) -> VecDeque<Entry> {
        assert!(index <= self.snapshot_index(), "compacting beyond the snapshot loses entries");
        let removed = usize::try_from((index + 1).saturating_sub(self.first_index)).unwrap_or(usize::MAX);
        let kept = self.entries.split_off(removed.min(self.entries.len()));
        let removed = std::mem::replace(&mut self.entries, kept);
        self.entry_bytes -= removed.iter().map(|e| e.data.len()).sum::<usize>();
        self.first_index = (self.first_index + removed.len() as u64).max(index + 1);
        self.base_membership = self.membership_at(index);
        self.memberships.retain(|(i, _)| *i > index);
        removed
    }

    /// Replaces the whole log with a snapshot from the leader.
    pub fn reset_to(&mut self, snapshot: Snapshot) {
        self.first_index = snapshot.meta.last_index + 1;
        self.entries.clear();
        self.entry_bytes = 0;
        self.memberships.clear();
        self.base_membership = snapshot.meta.membership.clone();
        self.snapshot = snapshot;
    }

    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot.meta
    }

    pub fn check_invariants(&self) {
        assert!(self.first_index <= self.snapshot_index() + 1, "gap between snapshot and log");
        let mut prev_term = 0;
        for (pos, e) in self.entries.iter().enumerate() {
            assert_eq!(e.index, self.first_index + pos as u64, "entry out of place");
            assert!(e.term >= prev_term, "term decreased at {}", e.index);
            prev_term = e.term;
        }
        assert!(self.memberships.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(self.entry_bytes, self.entries.iter().map(|e| e.data.len()).sum::<usize>());
    }
}
