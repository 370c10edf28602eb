//! Plain data shared by the Raft state machine, its wire codec and its log storage:
//! entries, hard state, snapshot metadata and membership.

use crate::env::NodeId;
use bytes::Bytes;
use std::collections::BTreeSet;

pub type Term = u64;
pub type Index = u64;
/// Names one Raft group on a node: 0 is the meta group, every stream group gets the meta-log
/// index of the entry that created it, so ids are unique and never reused.
pub type GroupId = u64;

/// Entries per AppendEntries: the wire format counts them in a u16.
pub const BATCH_ENTRIES_MAX: usize = 65_535;
/// Largest entry payload accepted from a proposer, a peer or a log file.
pub const ENTRY_DATA_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest cluster: configurations are carried whole in snapshots and membership entries.
pub const PEERS_MAX: usize = 16;

/// What an entry means to Raft. The byte value is part of the log and wire formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// Application data, opaque to Raft; batched freely.
    Normal = 1,
    /// The entry a new leader appends in its term, so it can commit earlier entries
    /// (Raft §5.4.2); also the point at which leadership is reported upward. Empty data.
    Noop = 2,
    /// Adds one voter. Data: the new peer id (8 bytes). Travels alone.
    AddPeer = 3,
    /// Removes one voter. Data: the peer id (8 bytes). Travels alone.
    RemovePeer = 4,
    /// Replaces the application state wholesale (bootstrap from a restored backup). Data is
    /// opaque to Raft. Travels alone.
    Snapshot = 5,
}

impl EntryKind {
    pub fn from_u8(byte: u8) -> Option<EntryKind> {
        Some(match byte {
            1 => EntryKind::Normal,
            2 => EntryKind::Noop,
            3 => EntryKind::AddPeer,
            4 => EntryKind::RemovePeer,
            5 => EntryKind::Snapshot,
            _ => return None,
        })
    }

    /// Membership and snapshot entries must be the only entry of their AppendEntries.
    pub fn travels_alone(self) -> bool {
        matches!(self, EntryKind::AddPeer | EntryKind::RemovePeer | EntryKind::Snapshot)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub index: Index,
    pub term: Term,
    pub kind: EntryKind,
    pub data: Bytes,
}

impl Entry {
    /// Bytes this entry adds to an AppendEntries message (see `message.rs`).
    pub fn wire_bytes(&self) -> usize {
        crate::raft::message::ENTRY_OVERHEAD_BYTES + self.data.len()
    }

    /// The peer named by a membership entry, if the data is well formed.
    pub fn peer(&self) -> Option<NodeId> {
        let bytes: [u8; 8] = self.data.as_ref().try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    }
}

/// What must be on stable storage before this node grants a vote or acknowledges an append.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    /// Whom this node voted for in `term` (0: nobody; node ids are never 0).
    pub vote: NodeId,
    /// A commit index this node knew of; committed entries never change, so this is a
    /// lower bound the node's log must reach before it may vote (DESIGN §4, corruption).
    pub commit: Index,
}

/// The voters of a group, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
}

impl Membership {
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership { voters: voters.into_iter().collect() }
    }

    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }
}

/// Identifies the state a snapshot captures: everything up to and including `last_index`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub last_index: Index,
    pub last_term: Term,
    pub membership: Membership,
}

/// A snapshot: metadata plus the application's state, opaque to Raft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Bytes,
}
