//! The Raft state machine for one group: elections with pre-vote, log replication with
//! conflict truncation, commit, membership changes one peer at a time, leader transfer, and
//! the bookkeeping of snapshots by checkpoint.
//!
//! Sans-IO (DESIGN §2 layer 1): no clock, no disk, no network, no ambient randomness. Inputs
//! are `handle_*`/`tick`/`propose` calls carrying `now`; outputs are [`Action`]s from
//! [`Raft::poll_action`] and committed entries from [`Raft::poll_apply`].
//!
//! Durability rule: every write that a message promises (a granted vote, an acknowledged
//! append, an installed snapshot) is emitted as a [`PersistIo`] with an io id, and the
//! message is held until the driver reports `handle_persisted(io_id)`. Completions are
//! cumulative: reporting id N says every io up to N is durable. The leader's own
//! AppendEntries are sent before its write is durable (they promise nothing); the leader
//! counts itself toward a quorum only up to its persisted index.
//!
//! Invariants (`check_invariants`, asserted after every step in tests):
//! `compacted < first_index <= snapshot + 1`, `snapshot <= commit <= last`,
//! `applied <= commit`, `persisted <= last`, at most one vote per term, and a leader's
//! progress entries never point past its log.

use super::checkpoint::{Checkpoint, CheckpointError, Checkpoints};
use super::config::RaftConfig;
use super::log::RaftLog;
use super::message::{append_bytes, Body, Message};
use super::progress::Progress;
use super::types::{Entry, EntryKind, GroupId, HardState, Index, Membership, Snapshot, Term, PEERS_MAX};
use crate::env::{MonoTime, NodeId};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

pub type IoId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Writes the driver must make durable, in this order: snapshot (replacing the whole log),
/// truncation, entries (synced), adopted snapshot (saved, then the log compacted through
/// it), then hard state. Then it calls `handle_persisted(id)`. `RaftStorage::persist` is
/// that order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistIo {
    pub id: IoId,
    pub snapshot: Option<Snapshot>,
    pub truncate_from: Option<Index>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// A leader's snapshot this follower asked for, at an index its log already holds with
    /// the same term: saved, and the log compacted through it, keeping the entries after it
    /// (they may count toward a commit quorum, so they must not be dropped).
    pub adopt_snapshot: Option<Snapshot>,
    /// A commit index this node knows; stored with the entries so recovery can tell a cut
    /// that lost committed entries from one that lost only unacknowledged ones.
    pub commit_claim: Index,
}

impl PersistIo {
    fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.adopt_snapshot.is_none()
            && self.hard_state.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Send(Message),
    Persist(PersistIo),
}

/// What the state machine must apply next, in log order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Replace the application state with this snapshot (at startup, or sent by the leader).
    Snapshot(Snapshot),
    Entries(Vec<Entry>),
}

/// What a node recovered from storage (see `storage::Recovered`).
#[derive(Clone, Debug, Default)]
pub struct RecoveredLog {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    /// Committed entries never change: if the log ends below this index, the node lost
    /// committed entries (corruption) and must not vote until it has them again.
    pub commit_floor: Index,
    /// Every entry this node may have acknowledged is at or below this index
    /// (`storage::Recovered::ack_mark`): a log ending below it lost acknowledged entries,
    /// which may have been committed counting on this node, so the node is damaged the same
    /// way. It does not make anything committed.
    pub ack_mark: Index,
}

/// The acknowledgement floor (`RecoveredLog::ack_mark`) after a conflict truncation at
/// `index`: the leader's conflicting entry proves ours from `index` on were never committed,
/// lost ones included. Storage lowers its durable mark by the same rule.
pub fn ack_floor_after_truncation(floor: Index, index: Index) -> Index {
    floor.min(index - 1)
}

/// The acknowledgement floor after installing a snapshot through `snapshot_index` over a log
/// ending at `last_index`: Raft installs (rather than adopts) a snapshot only when the log
/// lacks its last entry, so what the log holds past it is another history, never committed.
/// Not if the log already ends below the floor: what it lost is unknown. Storage lowers its
/// durable mark by the same rule.
pub fn ack_floor_after_install(floor: Index, snapshot_index: Index, last_index: Index) -> Index {
    if floor > snapshot_index && floor <= last_index {
        snapshot_index
    } else {
        floor
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader {
        leader: Option<NodeId>,
    },
    /// Too much is uncommitted; retry later (backpressure).
    Busy,
    TooLarge {
        size_bytes: usize,
        max_bytes: usize,
    },
    /// A membership change is uncommitted, or this leader's first entry is not yet committed.
    MembershipChangePending,
    TransferInProgress,
    InvalidPeer {
        peer: NodeId,
        reason: &'static str,
    },
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NotLeader { leader: Some(l) } => write!(f, "not the leader (node {l} is)"),
            ProposeError::NotLeader { leader: None } => write!(f, "not the leader (no leader known)"),
            ProposeError::Busy => write!(f, "too many uncommitted entries; retry"),
            ProposeError::TooLarge { size_bytes, max_bytes } => {
                write!(f, "entry of {size_bytes} bytes exceeds {max_bytes}")
            }
            ProposeError::MembershipChangePending => write!(f, "a membership change is in progress"),
            ProposeError::TransferInProgress => write!(f, "leadership is being transferred"),
            ProposeError::InvalidPeer { peer, reason } => write!(f, "peer {peer}: {reason}"),
        }
    }
}

/// Why a peer message was dropped. Never fatal: the sender may be buggy, stale or hostile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageError {
    WrongGroup {
        group: GroupId,
    },
    WrongDestination {
        to: NodeId,
    },
    BadSender {
        from: NodeId,
    },
    /// The message contradicts what Raft guarantees (a committed entry replaced, terms going
    /// down, a malformed membership entry). Logged as a peer bug.
    ProtocolViolation {
        from: NodeId,
        what: String,
    },
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::WrongGroup { group } => write!(f, "message for group {group}"),
            MessageError::WrongDestination { to } => write!(f, "message addressed to node {to}"),
            MessageError::BadSender { from } => write!(f, "message from invalid sender {from}"),
            MessageError::ProtocolViolation { from, what } => write!(f, "protocol violation by node {from}: {what}"),
        }
    }
}

struct PendingIo {
    id: IoId,
    /// Highest entry index this io makes durable (lowered when a later io truncates it).
    last_index: Index,
    snapshot_index: Option<Index>,
}

pub struct Raft {
    cfg: RaftConfig,
    group: GroupId,
    rng: ChaCha8Rng,
    hs: HardState,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    commit: Index,
    applied: Index,
    /// Entries through this index of the current log are durable.
    persisted: Index,
    /// The snapshot file through this index is durable: the state machine may load it.
    snapshot_durable: Index,
    /// Follower only: the application asked the leader for a snapshot newer than its
    /// applied index (its catch-up from peers failed; see `request_snapshot`).
    snapshot_requested: bool,
    next_io: IoId,
    pending_ios: VecDeque<PendingIo>,
    building: Option<PersistIo>,
    /// Messages waiting for an io to be durable.
    held: VecDeque<(IoId, Message)>,
    outbox: VecDeque<Action>,
    votes: BTreeMap<NodeId, bool>,
    progress: BTreeMap<NodeId, Progress>,
    election_deadline: MonoTime,
    heartbeat_deadline: MonoTime,
    last_heartbeat: MonoTime,
    leader_contact: Option<MonoTime>,
    /// Index of this leader's no-op entry; leadership is usable once it commits.
    noop_index: Index,
    transfer: Option<(NodeId, MonoTime)>,
    /// Damaged until the log reaches this index again (`RecoveredLog::commit_floor`).
    commit_floor: Index,
    /// Damaged until the log reaches this index again, too (`RecoveredLog::ack_mark`). It
    /// comes down where storage lowers the mark: a conflict truncation and a snapshot
    /// install prove the entries above them were never committed. Recovery sets the mark to
    /// at least the recovered log's end, so without that every node that restarted with
    /// uncommitted entries would be damaged after the truncation that drops them.
    ack_floor: Index,
    /// The application may veto campaigning (e.g. a stream still fetching lost messages).
    campaign_allowed: bool,
    need_broadcast: bool,
    checkpoints: Checkpoints,
    /// Leader only: bytes of entry data appended but not yet committed (backpressure).
    uncommitted_bytes: usize,
    /// What the last checkpoint compacted away, until `take_compacted` (or the next one).
    compacted: Option<VecDeque<Entry>>,
}

impl Raft {
    /// A node of `group`. `initial` is the membership to use when the log holds none (a new
    /// group); `seed` drives the election timeouts and nothing else.
    pub fn new(
        cfg: RaftConfig,
        group: GroupId,
        initial: Membership,
        recovered: RecoveredLog,
        seed: u64,
        now: MonoTime,
    ) -> Result<Raft, String> {
        cfg.validate()?;
        let snapshot = recovered.snapshot.unwrap_or(Snapshot { meta: Default::default(), data: Bytes::new() });
        if let Some(first) = recovered.entries.first() {
            if first.index != snapshot.meta.last_index + 1 {
                return Err(format!("log starts at {} after snapshot {}", first.index, snapshot.meta.last_index));
            }
        }
        let log = RaftLog::new(snapshot, recovered.entries, initial);
        let last = log.last_index();
        let hs = recovered.hard_state;
        // Entries up to a known commit index are committed, so they can be applied at once.
        let commit = hs.commit.max(recovered.commit_floor).min(last).max(log.snapshot_index());
        let mut raft = Raft {
            rng: ChaCha8Rng::seed_from_u64(seed),
            group,
            hs,
            role: Role::Follower,
            leader: None,
            commit,
            applied: 0,
            persisted: last,
            snapshot_durable: log.snapshot_index(),
            snapshot_requested: false,
            next_io: 1,
            pending_ios: VecDeque::new(),
            building: None,
            held: VecDeque::new(),
            outbox: VecDeque::new(),
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            election_deadline: now,
            heartbeat_deadline: now,
            last_heartbeat: now,
            leader_contact: None,
            noop_index: 0,
            transfer: None,
            commit_floor: recovered.commit_floor.max(hs.commit),
            ack_floor: recovered.ack_mark,
            campaign_allowed: true,
            need_broadcast: false,
            checkpoints: Checkpoints::default(),
            uncommitted_bytes: 0,
            compacted: None,
            log,
            cfg,
        };
        raft.reset_election_timer(now);
        raft.check_invariants();
        Ok(raft)
    }

    // ----- accessors -------------------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    pub fn group(&self) -> GroupId {
        self.group
    }
    pub fn config(&self) -> &RaftConfig {
        &self.cfg
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.hs.term
    }
    pub fn hard_state(&self) -> HardState {
        self.hs
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> Index {
        self.commit
    }
    pub fn applied_index(&self) -> Index {
        self.applied
    }
    pub fn persisted_index(&self) -> Index {
        self.persisted
    }
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    pub fn membership(&self) -> &Membership {
        self.log.membership()
    }
    /// The leader's own entry of this term has committed: commits are now reported and
    /// reads reflect every earlier commit.
    pub fn is_leader_ready(&self) -> bool {
        self.role == Role::Leader && self.commit >= self.noop_index
    }
    /// Recovery cut committed entries and the log has not yet been repaired from peers.
    pub fn is_damaged(&self) -> bool {
        self.log.last_index() < self.damage_floor()
    }
    /// The index the log must reach for the node to be whole: the higher of the commit
    /// floor and the acknowledgement floor.
    pub fn damage_floor(&self) -> Index {
        self.commit_floor.max(self.ack_floor)
    }
    pub fn commit_floor(&self) -> Index {
        self.commit_floor
    }
    /// The application allows (or forbids) this node to campaign.
    pub fn set_campaign_allowed(&mut self, allowed: bool) {
        self.campaign_allowed = allowed;
    }
    pub fn progress(&self) -> &BTreeMap<NodeId, Progress> {
        &self.progress
    }
    /// The earliest time `tick` has something to do.
    pub fn next_deadline(&self) -> MonoTime {
        match self.role {
            Role::Leader => self.heartbeat_deadline,
            _ => self.election_deadline,
        }
    }

    // ----- outputs ---------------------------------------------------------------------

    /// The next action for the driver. Call until `None` after every input.
    #[must_use]
    pub fn poll_action(&mut self, now: MonoTime) -> Option<Action> {
        if self.need_broadcast {
            self.need_broadcast = false;
            if self.role == Role::Leader {
                self.broadcast(now, false);
            }
        }
        if let Some(io) = self.building.take() {
            assert!(!io.is_empty(), "an io is built only when something must be written");
            let pending = self.pending_ios.back_mut().expect("the building io is pending");
            assert_eq!(pending.id, io.id);
            pending.last_index = io.entries.last().map_or(0, |e| e.index);
            pending.snapshot_index =
                io.snapshot.iter().chain(io.adopt_snapshot.iter()).map(|s| s.meta.last_index).max();
            self.outbox.push_back(Action::Persist(io));
        }
        self.outbox.pop_front()
    }

    /// Committed, durable entries (or a snapshot) for the application, at most
    /// `max_entries` at a time. Entries returned count as applied.
    #[must_use]
    pub fn poll_apply(&mut self, max_entries: usize) -> Option<Applied> {
        let snapshot_index = self.log.snapshot_index();
        if self.applied < snapshot_index {
            if !self.snapshot_ready() {
                return None; // an installed snapshot that is not durable yet
            }
            self.applied = snapshot_index;
            return Some(Applied::Snapshot(self.log.snapshot().clone()));
        }
        let to = self.commit.min(self.persisted).min(self.applied + max_entries as u64);
        if to <= self.applied {
            return None;
        }
        let entries: Vec<Entry> = self.log.range(self.applied + 1, to).cloned().collect();
        assert_eq!(entries.len() as u64, to - self.applied, "committed entries are in memory");
        self.applied = to;
        Some(Applied::Entries(entries))
    }

    // ----- inputs ----------------------------------------------------------------------

    /// Timers: elections for followers, heartbeats, retransmission and transfer timeouts for
    /// leaders.
    pub fn tick(&mut self, now: MonoTime) {
        match self.role {
            Role::Leader => {
                if let Some((_, deadline)) = self.transfer {
                    if now >= deadline {
                        self.transfer = None;
                    }
                }
                if now >= self.heartbeat_deadline {
                    if !self.quorum_active(now) {
                        // Check-quorum: a leader cut off from a majority stops claiming to lead.
                        crate::coverage::mark("raft.leader-steps-down-no-quorum");
                        self.become_follower(now, self.hs.term, None);
                        return;
                    }
                    self.broadcast(now, true);
                    self.last_heartbeat = now;
                    self.heartbeat_deadline = now + self.cfg.heartbeat_interval;
                }
            }
            _ => {
                if now >= self.election_deadline {
                    self.reset_election_timer(now);
                    if self.can_campaign() {
                        self.start_pre_vote(now);
                    }
                }
            }
        }
    }

    /// Appends one application entry (leader only). Returns its index and term: the entry
    /// is committed if an entry applied at that index has that term.
    pub fn propose(&mut self, _now: MonoTime, data: Bytes) -> Result<(Index, Term), ProposeError> {
        self.check_can_propose(data.len())?;
        Ok(self.append_local(EntryKind::Normal, data))
    }

    /// Proposes a state-replacing snapshot entry (travels alone; e.g. restoring a backup).
    pub fn propose_snapshot_entry(&mut self, _now: MonoTime, data: Bytes) -> Result<(Index, Term), ProposeError> {
        self.check_can_propose(data.len())?;
        Ok(self.append_local(EntryKind::Snapshot, data))
    }

    /// Adds or removes one voter. Only one change may be uncommitted, and not before this
    /// leader's first entry has committed (the single-server change rule, Raft thesis §4.1).
    pub fn propose_membership(
        &mut self,
        _now: MonoTime,
        add: bool,
        peer: NodeId,
    ) -> Result<(Index, Term), ProposeError> {
        self.check_can_propose(8)?;
        if !self.is_leader_ready() || self.log.last_membership_index().is_some_and(|i| i > self.commit) {
            return Err(ProposeError::MembershipChangePending);
        }
        let voters = &self.log.membership().voters;
        if peer == 0 {
            return Err(ProposeError::InvalidPeer { peer, reason: "node id 0 is reserved" });
        }
        if add && voters.contains(&peer) {
            return Err(ProposeError::InvalidPeer { peer, reason: "already a voter" });
        }
        if add && voters.len() >= PEERS_MAX {
            return Err(ProposeError::InvalidPeer { peer, reason: "group already has PEERS_MAX voters" });
        }
        if !add && !voters.contains(&peer) {
            return Err(ProposeError::InvalidPeer { peer, reason: "not a voter" });
        }
        if !add && voters.len() == 1 {
            return Err(ProposeError::InvalidPeer { peer, reason: "cannot remove the last voter" });
        }
        let kind = if add { EntryKind::AddPeer } else { EntryKind::RemovePeer };
        let at = self.append_local(kind, Bytes::copy_from_slice(&peer.to_le_bytes()));
        self.sync_progress_with_membership();
        Ok(at)
    }

    /// Hands leadership to `target`: stop taking proposals, bring it up to date, then tell it
    /// to campaign at once (TimeoutNow). Nothing is written to the log.
    pub fn transfer_leadership(&mut self, now: MonoTime, target: NodeId) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if target == self.cfg.id || !self.log.membership().contains(target) {
            return Err(ProposeError::InvalidPeer { peer: target, reason: "not another voter" });
        }
        self.transfer = Some((target, now + self.cfg.transfer_timeout));
        self.maybe_send_timeout_now(now, target);
        Ok(())
    }

    /// Every io up to `io_id` is durable.
    pub fn handle_persisted(&mut self, now: MonoTime, io_id: IoId) {
        assert!(io_id < self.next_io, "io {io_id} was never issued");
        while self.pending_ios.front().is_some_and(|io| io.id <= io_id) {
            let io = self.pending_ios.pop_front().expect("non-empty");
            self.persisted = self.persisted.max(io.last_index);
            if let Some(s) = io.snapshot_index {
                self.persisted = self.persisted.max(s);
                self.snapshot_durable = self.snapshot_durable.max(s);
            }
        }
        self.persisted = self.persisted.min(self.log.last_index());
        while self.held.front().is_some_and(|(id, _)| *id <= io_id) {
            let (_, msg) = self.held.pop_front().expect("non-empty");
            self.outbox.push_back(Action::Send(msg));
        }
        if self.role == Role::Leader {
            self.maybe_commit(now);
        }
    }

    /// A message from a peer. Errors mean the message was dropped; the node is unchanged.
    pub fn handle_message(&mut self, now: MonoTime, msg: Message) -> Result<(), MessageError> {
        if msg.group != self.group {
            return Err(MessageError::WrongGroup { group: msg.group });
        }
        if msg.to != self.cfg.id {
            return Err(MessageError::WrongDestination { to: msg.to });
        }
        if msg.from == 0 || msg.from == self.cfg.id {
            return Err(MessageError::BadSender { from: msg.from });
        }
        if msg.term > self.hs.term {
            match &msg.body {
                Body::Vote { pre_vote: true, .. } => {}
                Body::VoteResponse { pre_vote: true, granted: true } => {}
                Body::Vote { transfer: false, .. } if self.lease_active(now) => {
                    // A leader is alive: a node that merely lost contact must not depose it.
                    return Ok(());
                }
                Body::Append { .. } | Body::InstallSnapshot { .. } | Body::TimeoutNow => {
                    self.become_follower(now, msg.term, Some(msg.from));
                }
                _ => self.become_follower(now, msg.term, None),
            }
        } else if msg.term < self.hs.term {
            match &msg.body {
                // Tell a deposed leader or a stale candidate about the newer term.
                Body::Append { .. } | Body::InstallSnapshot { .. } => {
                    self.send_now(msg.from, Body::AppendResponse { success: false, index: self.log.last_index() });
                }
                Body::Vote { pre_vote, .. } => {
                    self.send_now(msg.from, Body::VoteResponse { pre_vote: *pre_vote, granted: false });
                }
                _ => {}
            }
            return Ok(());
        }
        let from = msg.from;
        let term = msg.term;
        match msg.body {
            Body::Append { prev_index, prev_term, commit, entries } => {
                self.handle_append(now, from, prev_index, prev_term, commit, entries)
            }
            Body::AppendResponse { success, index } => {
                self.handle_append_response(now, from, success, index);
                Ok(())
            }
            Body::Vote { pre_vote, transfer: _, last_index, last_term } => {
                self.handle_vote(now, from, term, pre_vote, last_index, last_term);
                Ok(())
            }
            Body::VoteResponse { pre_vote, granted } => {
                self.handle_vote_response(now, from, term, pre_vote, granted);
                Ok(())
            }
            Body::InstallSnapshot { snapshot } => self.handle_snapshot(now, from, snapshot),
            Body::SnapshotResponse { last_index } => {
                self.handle_snapshot_response(now, from, last_index);
                Ok(())
            }
            Body::SnapshotRequest { above } => {
                self.handle_snapshot_request(now, from, above);
                Ok(())
            }
            Body::TimeoutNow => {
                if self.role != Role::Leader && self.can_campaign() {
                    self.start_election(now, true);
                }
                Ok(())
            }
        }
    }

    // ----- checkpoints -----------------------------------------------------------------

    /// Starts a snapshot of the state applied so far (see `checkpoint.rs` for the life cycle).
    pub fn create_checkpoint(&mut self, now: MonoTime, force: bool) -> Result<Checkpoint, CheckpointError> {
        let index = self.applied;
        let catchups = !force && self.catchups_running(now, index);
        let term = self.log.term(index);
        let membership = if index + 1 >= self.log.first_index() { Some(self.log.membership_at(index)) } else { None };
        self.checkpoints.create(force, index, self.log.snapshot_index(), term, membership, catchups)
    }

    /// The checkpoint's snapshot file is durable (the store was synced before it was
    /// written). Re-checks catch-ups; on `Ok(index)` the driver compacts the log files
    /// through `index` (the in-memory log already is).
    pub fn checkpoint_saved(&mut self, now: MonoTime, generation: u64, data: Bytes) -> Result<Index, CheckpointError> {
        let cp = self.checkpoints.current(generation)?.clone();
        if cp.index <= self.log.snapshot_index() || self.log.term(cp.index) != Some(cp.term) {
            // A leader's snapshot replaced the log meanwhile.
            self.checkpoints.finish(generation, false);
            return Err(CheckpointError::Superseded);
        }
        self.log.set_snapshot(Snapshot {
            meta: super::types::SnapshotMeta {
                last_index: cp.index,
                last_term: cp.term,
                membership: cp.membership.clone(),
            },
            data,
        });
        self.snapshot_durable = self.snapshot_durable.max(cp.index);
        if self.progress.values().any(|p| p.snapshot_wanted_above.is_some()) {
            self.need_broadcast = true; // a follower asked for a snapshot; this may be it
        }
        if !cp.forced && self.catchups_running(now, cp.index) {
            // NATS checks only at creation; a catch-up that started since would lose the
            // entries it is being sent. Keep the snapshot, skip the compaction.
            self.checkpoints.finish(generation, false);
            return Err(CheckpointError::CatchupsRunning);
        }
        self.compacted = Some(self.log.compact_through(cp.index));
        self.checkpoints.finish(generation, true);
        Ok(cp.index)
    }

    /// The entries the last `checkpoint_saved` compacted away, for the caller to drop where
    /// it costs nothing (freeing them took tens of milliseconds; see `Log::compact_through`).
    pub fn take_compacted(&mut self) -> Option<VecDeque<Entry>> {
        self.compacted.take()
    }

    /// Abandons a checkpoint. A stale generation is ignored, so a late abort from a
    /// superseded checkpoint cannot cancel a newer one.
    pub fn abort_checkpoint(&mut self, generation: u64) {
        self.checkpoints.abort(generation);
    }

    /// The checkpoint's background work failed (counts toward forcing the next one).
    pub fn checkpoint_failed(&mut self, generation: u64) {
        if self.checkpoints.current(generation).is_ok() {
            self.checkpoints.finish(generation, false);
        }
    }

    /// More than four snapshot attempts in a row failed: the next one is forced so the log
    /// cannot grow without bound.
    pub fn should_force_checkpoint(&self) -> bool {
        self.checkpoints.should_force()
    }

    pub fn checkpoint_failures(&self) -> u32 {
        self.checkpoints.failures()
    }

    pub fn checkpoint_in_progress(&self) -> bool {
        self.checkpoints.in_progress()
    }

    /// Follower: asks the leader for a snapshot newer than this node's applied index, for
    /// an application that cannot rebuild its state from the current one (its catch-up
    /// from peers failed). The snapshot, when it comes, is installed even though the log
    /// already holds its entries, and `poll_apply` returns it. Not retried: the caller asks
    /// again if nothing came. False if there is no leader to ask.
    pub fn request_snapshot(&mut self) -> bool {
        let Some(leader) = self.leader.filter(|l| self.role == Role::Follower && *l != self.cfg.id) else {
            return false;
        };
        self.snapshot_requested = true;
        self.send_now(leader, Body::SnapshotRequest { above: self.applied });
        true
    }

    /// Leader: a follower asked for a snapshot newer than the current one, so the
    /// application should take a checkpoint.
    pub fn snapshot_wanted(&self) -> bool {
        let snapshot = self.log.snapshot_index();
        self.role == Role::Leader
            && self.progress.values().any(|p| p.snapshot_wanted_above.is_some_and(|a| a >= snapshot))
    }

    /// `poll_apply` would return a snapshot: one was installed and is durable.
    pub fn snapshot_ready(&self) -> bool {
        self.applied < self.log.snapshot_index() && self.snapshot_durable >= self.log.snapshot_index()
    }

    /// The application is serving a catch-up to `peer` until `until` (or stops: `None`).
    pub fn set_app_catchup(&mut self, peer: NodeId, until: Option<MonoTime>) {
        self.checkpoints.set_app_catchup(peer, until);
    }

    /// A follower still needs entries at or below `index`: it answered recently and either
    /// has not matched through `index`, or is being sent a snapshot; or the application is
    /// serving a catch-up.
    fn catchups_running(&self, now: MonoTime, index: Index) -> bool {
        if self.checkpoints.app_catchups_running(now) {
            return true;
        }
        if self.role != Role::Leader {
            return false;
        }
        self.progress.values().any(|p| {
            p.is_active(now, self.cfg.election_timeout_max) && (p.match_index < index || p.snapshot_sent.is_some())
        })
    }

    // ----- internals: elections --------------------------------------------------------

    fn can_campaign(&self) -> bool {
        self.log.membership().contains(self.cfg.id) && !self.is_damaged() && self.campaign_allowed
    }

    fn lease_active(&self, now: MonoTime) -> bool {
        match self.role {
            Role::Leader => true,
            _ => {
                self.leader.is_some()
                    && self.leader_contact.is_some_and(|t| now.saturating_since(t) < self.cfg.election_timeout_min)
            }
        }
    }

    fn reset_election_timer(&mut self, now: MonoTime) {
        let min = self.cfg.election_timeout_min.as_nanos() as u64;
        let max = self.cfg.election_timeout_max.as_nanos() as u64;
        let mut timeout_ns = self.rng.gen_range(min..max);
        // Legal at any length: a node that times out early only asks for a pre-vote sooner,
        // and peers that heard from a leader within election_timeout_min refuse it.
        if self.cfg.buggify.fires("raft-election-timeout-short", self.hs.term ^ (self.log.last_index() << 24)) {
            timeout_ns = min / 4;
        }
        self.election_deadline = now + std::time::Duration::from_nanos(timeout_ns);
    }

    fn start_pre_vote(&mut self, now: MonoTime) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.cfg.id, true);
        let body = Body::Vote {
            pre_vote: true,
            transfer: false,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        };
        for peer in self.other_voters() {
            self.push_send(Message {
                group: self.group,
                from: self.cfg.id,
                to: peer,
                term: self.hs.term + 1,
                body: body.clone(),
            });
        }
        self.check_election_result(now, true);
    }

    fn start_election(&mut self, now: MonoTime, transfer: bool) {
        self.role = Role::Candidate;
        self.leader = None;
        self.hs.term += 1;
        self.hs.vote = self.cfg.id;
        self.persist_hard_state();
        self.reset_election_timer(now);
        self.votes.clear();
        self.votes.insert(self.cfg.id, true);
        let body = Body::Vote {
            pre_vote: false,
            transfer,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        };
        for peer in self.other_voters() {
            // Held until the new term and self-vote are durable.
            self.send_after_io(peer, body.clone());
        }
        self.check_election_result(now, false);
    }

    fn handle_vote(
        &mut self,
        now: MonoTime,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_index: Index,
        last_term: Term,
    ) {
        let up_to_date = (last_term, last_index) >= (self.log.last_term(), self.log.last_index());
        // A damaged node's log is shorter than what it once acknowledged: comparing a
        // candidate against it could elect a leader missing committed entries.
        let damaged = self.is_damaged() && !crate::bugs::active(crate::bugs::Bug::DamagedNodeVotes);
        if damaged && up_to_date {
            crate::coverage::mark("raft.vote-refused-damaged-log");
        }
        if pre_vote {
            let granted = term > self.hs.term && up_to_date && !self.lease_active(now) && !damaged;
            let reply_term = if granted { term } else { self.hs.term };
            self.push_send(Message {
                group: self.group,
                from: self.cfg.id,
                to: from,
                term: reply_term,
                body: Body::VoteResponse { pre_vote: true, granted },
            });
            return;
        }
        debug_assert_eq!(term, self.hs.term);
        let granted = (self.hs.vote == 0 || self.hs.vote == from) && up_to_date && !damaged;
        if granted {
            if self.hs.vote != from {
                self.hs.vote = from;
                self.persist_hard_state();
            }
            self.reset_election_timer(now);
        }
        self.send_after_io(from, Body::VoteResponse { pre_vote: false, granted });
    }

    fn handle_vote_response(&mut self, now: MonoTime, from: NodeId, term: Term, pre_vote: bool, granted: bool) {
        let expected = match self.role {
            Role::PreCandidate if pre_vote => term == self.hs.term + 1 || !granted,
            Role::Candidate if !pre_vote => term == self.hs.term,
            _ => false,
        };
        if !expected || !self.log.membership().contains(from) {
            return;
        }
        self.votes.insert(from, granted);
        self.check_election_result(now, pre_vote);
    }

    fn check_election_result(&mut self, now: MonoTime, pre_vote: bool) {
        let m = self.log.membership();
        let quorum = m.quorum();
        let granted = m.voters.iter().filter(|v| self.votes.get(v) == Some(&true)).count();
        let rejected = m.voters.iter().filter(|v| self.votes.get(v) == Some(&false)).count();
        if granted >= quorum {
            if pre_vote {
                self.start_election(now, false);
            } else {
                self.become_leader(now);
            }
        } else if rejected >= quorum {
            self.become_follower(now, self.hs.term, None);
        }
    }

    fn become_follower(&mut self, now: MonoTime, term: Term, leader: Option<NodeId>) {
        if term > self.hs.term {
            self.hs.term = term;
            self.hs.vote = 0;
            self.persist_hard_state();
        }
        self.role = Role::Follower;
        self.leader = leader;
        if leader.is_some() {
            self.leader_contact = Some(now);
        }
        self.progress.clear();
        self.transfer = None;
        self.votes.clear();
        self.reset_election_timer(now);
    }

    fn become_leader(&mut self, now: MonoTime) {
        assert_eq!(self.hs.vote, self.cfg.id, "a leader voted for itself in its term");
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.snapshot_requested = false;
        self.votes.clear();
        self.progress.clear();
        self.sync_progress_with_membership();
        self.uncommitted_bytes = self.log.range(self.commit + 1, self.log.last_index()).map(|e| e.data.len()).sum();
        let (index, _) = self.append_local(EntryKind::Noop, Bytes::new());
        self.noop_index = index;
        self.heartbeat_deadline = now + self.cfg.heartbeat_interval;
        self.last_heartbeat = now;
        for p in self.progress.values_mut() {
            // Treat every follower as heard from now, so check-quorum gives them a full
            // election timeout to answer.
            p.last_heard = Some(now);
        }
    }

    // ----- internals: replication ------------------------------------------------------

    fn check_can_propose(&self, size: usize) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        let max = self.cfg.entry_data_bytes_max();
        if size > max {
            return Err(ProposeError::TooLarge { size_bytes: size, max_bytes: max });
        }
        let uncommitted = self.log.last_index() - self.commit;
        if uncommitted >= self.cfg.uncommitted_entries_max
            || self.uncommitted_bytes + size > self.cfg.uncommitted_bytes_max
        {
            return Err(ProposeError::Busy);
        }
        Ok(())
    }

    fn append_local(&mut self, kind: EntryKind, data: Bytes) -> (Index, Term) {
        let entry = Entry { index: self.log.last_index() + 1, term: self.hs.term, kind, data };
        let at = (entry.index, entry.term);
        self.uncommitted_bytes += entry.data.len();
        self.log.append(entry.clone());
        self.io().entries.push(entry);
        self.need_broadcast = true;
        at
    }

    fn other_voters(&self) -> Vec<NodeId> {
        self.log.membership().voters.iter().copied().filter(|v| *v != self.cfg.id).collect()
    }

    /// Progress for exactly the current voters other than this node.
    fn sync_progress_with_membership(&mut self) {
        let voters = self.other_voters();
        self.progress.retain(|id, _| voters.contains(id));
        let last = self.log.last_index();
        for v in voters {
            self.progress.entry(v).or_insert_with(|| Progress::new(last));
        }
    }

    fn broadcast(&mut self, now: MonoTime, heartbeat: bool) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            let p = self.progress.get_mut(&peer).expect("listed above");
            let silent = p.last_heard.is_none_or(|t| t < self.last_heartbeat);
            let stalled = now.saturating_since(p.inflight_since) >= self.cfg.election_timeout_min;
            if heartbeat && !p.inflight.is_empty() && (silent || stalled) {
                // Nothing heard for a whole heartbeat interval, or no append acknowledged
                // for an election timeout: assume the appends were lost.
                p.inflight.clear();
                p.next_index = p.match_index + 1;
            }
            if heartbeat {
                if let Some((_, sent)) = p.snapshot_sent {
                    if now.saturating_since(sent) >= self.cfg.election_timeout_max {
                        p.snapshot_sent = None; // lost: send it again
                    }
                }
            }
            self.send_append(now, peer, heartbeat);
        }
    }

    /// Sends `peer` what it lacks: a snapshot if its next entry is compacted away, else a
    /// batch of entries (or, with `heartbeat`, an empty append if nothing can be sent).
    fn send_append(&mut self, now: MonoTime, peer: NodeId, heartbeat: bool) {
        let Some(p) = self.progress.get(&peer) else { return };
        if p.snapshot_sent.is_some() {
            if heartbeat {
                self.send_heartbeat(peer);
            }
            return;
        }
        let next = p.next_index;
        let prev = next - 1;
        let known = if next < self.log.first_index() { None } else { self.log.term(prev) };
        let wanted = p.snapshot_wanted_above.is_some_and(|above| self.log.snapshot_index() > above);
        let room = p.inflight.len() < self.cfg.inflight_appends_max;
        if wanted {
            self.progress.get_mut(&peer).expect("checked").snapshot_wanted_above = None;
        }
        let Some(prev_term) = known.filter(|_| !wanted) else {
            // Compacted (or asked for): only a snapshot can bring this follower up to date.
            let snapshot = self.log.snapshot().clone();
            let index = snapshot.meta.last_index;
            self.progress.get_mut(&peer).expect("checked").snapshot_sent = Some((index, now));
            self.send_now(peer, Body::InstallSnapshot { snapshot });
            return;
        };
        let entries = if room { self.next_batch(next) } else { Vec::new() };
        if entries.is_empty() {
            if heartbeat {
                self.send_heartbeat(peer);
            }
            return;
        }
        let last = entries.last().expect("non-empty").index;
        let p = self.progress.get_mut(&peer).expect("checked");
        if p.inflight.is_empty() {
            p.inflight_since = now;
        }
        p.inflight.push_back(last);
        p.next_index = last + 1;
        let commit = self.commit;
        self.send_now(peer, Body::Append { prev_index: prev, prev_term, commit, entries });
    }

    /// Entries from `next` for one AppendEntries: at most `batch_entries_max` entries and
    /// `batch_bytes_max` encoded bytes; an entry that must travel alone (membership,
    /// snapshot) is sent by itself and ends the batch before it.
    pub fn next_batch(&self, next: Index) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        let mut bytes = append_bytes([]);
        // Tiny batches: a follower then sees a leader's log one entry per message.
        let entries_max = if self.cfg.buggify.fires("raft-batch-one-entry", next ^ (self.hs.term << 40)) {
            1
        } else {
            self.cfg.batch_entries_max
        };
        for e in self.log.range(next, self.log.last_index()) {
            if out.len() >= entries_max {
                break;
            }
            if e.kind.travels_alone() && !out.is_empty() {
                break;
            }
            if !out.is_empty() && bytes + e.wire_bytes() > self.cfg.batch_bytes_max {
                break;
            }
            bytes += e.wire_bytes();
            out.push(e.clone());
            if e.kind.travels_alone() {
                break;
            }
        }
        assert!(out.len() <= self.cfg.batch_entries_max);
        assert!(out.len() <= 1 || bytes <= self.cfg.batch_bytes_max, "batch of {bytes} bytes");
        out
    }

    /// An empty append that proves leadership and carries the commit index. It claims only
    /// what the follower is known to match, so it never triggers a truncation.
    fn send_heartbeat(&mut self, peer: NodeId) {
        let prev = self.progress[&peer].match_index;
        let Some(prev_term) = self.log.term(prev) else { return };
        let commit = self.commit.min(prev);
        self.send_now(peer, Body::Append { prev_index: prev, prev_term, commit, entries: Vec::new() });
    }

    fn handle_append(
        &mut self,
        now: MonoTime,
        from: NodeId,
        prev_index: Index,
        prev_term: Term,
        leader_commit: Index,
        entries: Vec<Entry>,
    ) -> Result<(), MessageError> {
        if self.role == Role::Leader {
            return Err(MessageError::ProtocolViolation {
                from,
                what: format!("append in term {} while this node leads it", self.hs.term),
            });
        }
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(now, self.hs.term, Some(from));
        }
        self.leader_contact = Some(now);
        self.reset_election_timer(now);
        // Validate before changing anything.
        let term = self.hs.term;
        let mut prev_term_seen = prev_term;
        for e in &entries {
            if e.term > term || e.term < prev_term_seen {
                return Err(MessageError::ProtocolViolation {
                    from,
                    what: format!("entry {} has term {}", e.index, e.term),
                });
            }
            prev_term_seen = e.term;
            if matches!(e.kind, EntryKind::AddPeer | EntryKind::RemovePeer) && e.peer().is_none_or(|p| p == 0) {
                return Err(MessageError::ProtocolViolation {
                    from,
                    what: format!("malformed membership entry {}", e.index),
                });
            }
        }
        // Entries at or below our snapshot are committed, hence identical: skip them.
        let snapshot_index = self.log.snapshot_index();
        let (prev_index, prev_term, entries) = if prev_index < snapshot_index {
            let skip = (snapshot_index - prev_index) as usize;
            (snapshot_index, self.log.snapshot_meta().last_term, entries.into_iter().skip(skip).collect())
        } else {
            (prev_index, prev_term, entries)
        };
        if prev_index > self.log.last_index() {
            self.send_after_io(from, Body::AppendResponse { success: false, index: self.log.last_index() });
            return Ok(());
        }
        if self.log.term(prev_index) != Some(prev_term) {
            // Skip back over the whole conflicting term in one round trip.
            let conflict_term = self.log.term(prev_index);
            let mut hint = prev_index - 1;
            while hint > self.commit && hint >= self.log.first_index() && self.log.term(hint) == conflict_term {
                hint -= 1;
            }
            self.send_after_io(
                from,
                Body::AppendResponse { success: false, index: hint.max(self.commit.min(prev_index - 1)) },
            );
            return Ok(());
        }
        let match_index = prev_index + entries.len() as u64;
        let mut first_new = None;
        for (pos, e) in entries.iter().enumerate() {
            match self.log.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    if e.index <= self.commit {
                        return Err(MessageError::ProtocolViolation {
                            from,
                            what: format!("entry {} conflicts with a committed entry", e.index),
                        });
                    }
                    self.truncate_local(e.index);
                    first_new = Some(pos);
                    break;
                }
                None => {
                    first_new = Some(pos);
                    break;
                }
            }
        }
        if let Some(pos) = first_new {
            for e in entries.into_iter().skip(pos) {
                self.log.append(e.clone());
                self.io().entries.push(e);
            }
        }
        let new_commit = leader_commit.min(match_index);
        if new_commit > self.commit {
            self.commit = new_commit;
        }
        self.send_after_io(from, Body::AppendResponse { success: true, index: match_index });
        Ok(())
    }

    fn truncate_local(&mut self, index: Index) {
        assert!(index > self.commit, "committed entries are never truncated");
        crate::coverage::mark("raft.follower-truncates-suffix");
        self.ack_floor = ack_floor_after_truncation(self.ack_floor, index);
        self.log.truncate_from(index);
        let io = self.io();
        io.entries.retain(|e| e.index < index);
        io.truncate_from = Some(io.truncate_from.map_or(index, |t| t.min(index)));
        self.persisted = self.persisted.min(index - 1);
        for p in &mut self.pending_ios {
            p.last_index = p.last_index.min(index - 1);
        }
    }

    fn handle_append_response(&mut self, now: MonoTime, from: NodeId, success: bool, index: Index) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let Some(p) = self.progress.get_mut(&from) else { return };
        p.last_heard = Some(now);
        if success {
            let index = index.min(last);
            if index > p.match_index {
                p.match_index = index;
            }
            p.next_index = p.next_index.max(p.match_index + 1);
            while p.inflight.front().is_some_and(|i| *i <= index) {
                p.inflight.pop_front();
                p.inflight_since = now;
            }
            self.maybe_commit(now);
        } else {
            let hint = index.min(last);
            if hint < p.match_index {
                // The follower lost entries it once acknowledged (corruption repaired by
                // truncation): believe it, so they are sent again.
                p.match_index = hint;
            }
            p.next_index = (hint + 1).min(p.next_index.saturating_sub(1)).max(p.match_index + 1);
            p.inflight.clear();
        }
        if let Some((target, _)) = self.transfer {
            if target == from {
                self.maybe_send_timeout_now(now, from);
            }
        }
        self.send_append(now, from, false);
    }

    fn handle_snapshot(&mut self, now: MonoTime, from: NodeId, snapshot: Snapshot) -> Result<(), MessageError> {
        if self.role == Role::Leader {
            return Err(MessageError::ProtocolViolation {
                from,
                what: "snapshot sent to the leader of the term".into(),
            });
        }
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(now, self.hs.term, Some(from));
        }
        self.leader_contact = Some(now);
        self.reset_election_timer(now);
        let meta = &snapshot.meta;
        if meta.last_term > self.hs.term || meta.last_index == 0 {
            return Err(MessageError::ProtocolViolation { from, what: format!("snapshot {meta:?}") });
        }
        let index = meta.last_index;
        let requested = self.snapshot_requested && index > self.applied;
        if requested && index > self.log.snapshot_index() && self.log.term(index) == Some(meta.last_term) {
            // Asked for, and our log holds its last entry: the entries through `index` match
            // the leader's (log matching), so they are committed. Keep the entries after it.
            self.snapshot_requested = false;
            self.log.set_snapshot(snapshot.clone());
            drop(self.log.compact_through(index));
            self.commit = self.commit.max(index);
            self.io().adopt_snapshot = Some(snapshot);
            self.send_after_io(from, Body::SnapshotResponse { last_index: index });
            return Ok(());
        }
        if index <= self.commit || self.log.term(index) == Some(meta.last_term) {
            // We already hold everything the snapshot covers.
            self.commit = self.commit.max(index.min(self.log.last_index()));
            self.send_after_io(from, Body::SnapshotResponse { last_index: index.min(self.log.last_index()) });
            return Ok(());
        }
        self.snapshot_requested = false;
        crate::coverage::mark("raft.snapshot-installed");
        self.ack_floor = ack_floor_after_install(self.ack_floor, index, self.log.last_index());
        self.log.reset_to(snapshot.clone());
        self.commit = self.commit.max(index);
        // Nothing of the old log counts as durable any more; the snapshot will be.
        self.persisted = 0;
        for p in &mut self.pending_ios {
            p.last_index = 0;
        }
        let io = self.io();
        io.entries.clear();
        io.truncate_from = None;
        io.adopt_snapshot = None; // at or below the commit index, so below this one
        io.snapshot = Some(snapshot);
        self.send_after_io(from, Body::SnapshotResponse { last_index: index });
        Ok(())
    }

    fn handle_snapshot_response(&mut self, now: MonoTime, from: NodeId, last_index: Index) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let Some(p) = self.progress.get_mut(&from) else { return };
        p.last_heard = Some(now);
        p.snapshot_sent = None;
        p.inflight.clear();
        p.match_index = p.match_index.max(last_index.min(last));
        p.next_index = p.match_index + 1;
        self.maybe_commit(now);
        self.send_append(now, from, false);
    }

    /// A follower wants a snapshot newer than its applied index `above`: it is sent as soon
    /// as this leader's snapshot is newer (the application sees `snapshot_wanted`).
    fn handle_snapshot_request(&mut self, now: MonoTime, from: NodeId, above: Index) {
        if self.role != Role::Leader {
            return;
        }
        let Some(p) = self.progress.get_mut(&from) else { return };
        p.last_heard = Some(now);
        p.snapshot_wanted_above = Some(above);
        self.send_append(now, from, false);
    }

    fn maybe_send_timeout_now(&mut self, now: MonoTime, target: NodeId) {
        if self.progress.get(&target).is_some_and(|p| p.match_index == self.log.last_index()) {
            self.send_now(target, Body::TimeoutNow);
        } else {
            self.send_append(now, target, false);
        }
    }

    fn quorum_active(&self, now: MonoTime) -> bool {
        let m = self.log.membership();
        let active = m
            .voters
            .iter()
            .filter(|v| {
                **v == self.cfg.id
                    || self.progress.get(v).is_some_and(|p| p.is_active(now, self.cfg.election_timeout_max))
            })
            .count();
        active >= m.quorum()
    }

    /// Advances the commit index to the highest index a quorum holds durably, if it is from
    /// this term (Raft §5.4.2: earlier terms commit only indirectly).
    fn maybe_commit(&mut self, now: MonoTime) {
        let m = self.log.membership();
        let mut matches: Vec<Index> = m
            .voters
            .iter()
            .map(|v| if *v == self.cfg.id { self.persisted } else { self.progress.get(v).map_or(0, |p| p.match_index) })
            .collect();
        matches.sort_unstable_by(|a, b| b.cmp(a));
        if matches.len() < m.quorum() {
            return;
        }
        let candidate = if crate::bugs::active(crate::bugs::Bug::AckBeforeCommit) {
            self.persisted // planted: the leader's own disk stands in for a quorum
        } else {
            matches[m.quorum() - 1]
        };
        if candidate > self.commit && self.log.term(candidate) == Some(self.hs.term) {
            let newly: usize = self.log.range(self.commit + 1, candidate).map(|e| e.data.len()).sum();
            self.uncommitted_bytes -= newly;
            self.commit = candidate;
            self.need_broadcast = true;
            // A leader removed from the group leads until the removal commits, then steps down.
            if !self.log.membership().contains(self.cfg.id)
                && self.log.last_membership_index().is_some_and(|i| i <= self.commit)
            {
                self.become_follower(now, self.hs.term, None);
            }
        }
    }

    // ----- internals: io and sends -----------------------------------------------------

    /// The io being built in this step (one per step, emitted by `poll_action`).
    fn io(&mut self) -> &mut PersistIo {
        if self.building.is_none() {
            let id = self.next_io;
            self.next_io += 1;
            self.pending_ios.push_back(PendingIo { id, last_index: 0, snapshot_index: None });
            self.building = Some(PersistIo { id, ..Default::default() });
        }
        let commit = self.commit;
        let io = self.building.as_mut().expect("just built");
        io.commit_claim = commit;
        io
    }

    fn persist_hard_state(&mut self) {
        self.hs.commit = self.hs.commit.max(self.commit);
        let hs = self.hs;
        self.io().hard_state = Some(hs);
    }

    fn push_send(&mut self, msg: Message) {
        self.outbox.push_back(Action::Send(msg));
    }

    fn send_now(&mut self, to: NodeId, body: Body) {
        self.push_send(Message { group: self.group, from: self.cfg.id, to, term: self.hs.term, body });
    }

    /// Sends once every io issued so far is durable.
    fn send_after_io(&mut self, to: NodeId, body: Body) {
        let msg = Message { group: self.group, from: self.cfg.id, to, term: self.hs.term, body };
        let barrier = self.building.as_ref().map(|io| io.id).or_else(|| self.pending_ios.back().map(|io| io.id));
        match barrier {
            Some(id) => self.held.push_back((id, msg)),
            None => self.push_send(msg),
        }
    }

    pub fn check_invariants(&self) {
        self.log.check_invariants();
        let last = self.log.last_index();
        assert!(
            self.log.snapshot_index() <= self.commit,
            "snapshot {} beyond commit {}",
            self.log.snapshot_index(),
            self.commit
        );
        assert!(self.commit <= last, "commit {} beyond last {last}", self.commit);
        assert!(self.applied <= self.commit, "applied {} beyond commit {}", self.applied, self.commit);
        assert!(self.persisted <= last, "persisted {} beyond last {last}", self.persisted);
        assert!(self.snapshot_durable <= self.log.snapshot_index(), "a durable snapshot beyond the log's");
        assert!(!self.snapshot_requested || self.role != Role::Leader, "a leader asks nobody for snapshots");
        assert!(self.hs.vote == 0 || self.role != Role::Leader || self.hs.vote == self.cfg.id);
        if self.role == Role::Leader {
            for p in self.progress.values() {
                p.check_invariants(last, self.cfg.inflight_appends_max);
            }
        } else {
            assert!(self.progress.is_empty(), "only a leader tracks progress");
        }
        assert!(self.pending_ios.iter().all(|io| io.last_index <= last));
    }
}
