//! One Raft group on this node: the state machine and its log storage, and the loop that
//! executes the state machine's actions. Shared by the meta group and every stream group.
//!
//! Persist actions run inline (`RaftStorage::persist`, in the order `PersistIo`
//! prescribes), and only then is `handle_persisted` reported, so no
//! message that promises durability leaves before its write is synced. A storage error
//! latches the group as failed: nothing more is persisted or acknowledged, and the owner
//! reopens the group from disk (the Raft log recovers like the store: cut at the first bad
//! record).

use super::config::NodeConfig;
use crate::disk::Disk;
use crate::env::{MonoTime, NodeId};
use crate::raft::storage::{Leftovers, RaftStorage, RaftStorageError, Recovered, SnapshotWrite};
use crate::raft::{
    Action, Checkpoint, GroupId, Index, Membership, PersistIo, Raft, RecoveredLog, Snapshot, SnapshotMeta,
};
use bytes::Bytes;
use std::collections::VecDeque;
use std::path::Path;

/// Sends this group produced, for the node to frame and queue.
pub type Outbox = VecDeque<(NodeId, Bytes)>;

pub struct RaftGroup<D: Disk> {
    pub raft: Raft,
    pub storage: RaftStorage<D>,
    /// The storage error that stopped this group; it must be reopened.
    pub failed: Option<RaftStorageError>,
    /// Persists that appended entries, for `GroupStats::log_writes`.
    pub log_writes: u64,
    /// A write `drive_to_write` stopped at; the next `drive` makes it first.
    held_write: Option<PersistIo>,
}

/// What opening a group found, for logs and tests.
#[derive(Clone, Debug)]
pub struct GroupRecovery {
    pub recovered_entries: usize,
    pub snapshot_index: Option<Index>,
    pub commit_floor: Index,
    pub ack_mark: Index,
    pub cut: Option<String>,
    pub corrupt_snapshot: Option<String>,
}

impl<D: Disk> RaftGroup<D> {
    /// Opens (or creates) the group's log in `dir` and builds its Raft node with the
    /// node's timing (`cfg.raft`, its id replaced by `cfg.id`) and log settings.
    pub fn open(
        disk: D,
        dir: &Path,
        cfg: &NodeConfig,
        group: GroupId,
        voters: Membership,
        seed: u64,
        now: MonoTime,
    ) -> Result<(RaftGroup<D>, GroupRecovery), String> {
        let mut raft_cfg = cfg.raft.clone();
        raft_cfg.id = cfg.id;
        raft_cfg.buggify = cfg.buggify;
        disk.create_dir_all(dir).map_err(|e| format!("group {group}: create {}: {e}", dir.display()))?;
        let (storage, rec): (RaftStorage<D>, Recovered) =
            RaftStorage::open(disk, dir, cfg.log).map_err(|e| format!("group {group}: open log: {e}"))?;
        if rec.cut.is_some() {
            crate::coverage::mark("raft.log-tail-cut-at-recovery");
        }
        let recovered_last = storage.last_index();
        if rec.ack_mark > recovered_last && rec.commit_floor <= recovered_last {
            // Only the ack mark knows this node lost entries it acknowledged (`ack_mark.rs`).
            crate::coverage::mark("raft.log-lost-acknowledged-entries");
        }
        let recovery = GroupRecovery {
            recovered_entries: rec.entries.len(),
            snapshot_index: rec.snapshot.as_ref().map(|s| s.meta.last_index),
            commit_floor: rec.commit_floor,
            ack_mark: rec.ack_mark,
            cut: rec.cut.as_ref().map(|c| format!("{c:?}")),
            corrupt_snapshot: rec.corrupt_snapshot.clone(),
        };
        let raft = Raft::new(raft_cfg, group, voters, RecoveredLog::from(rec), seed, now)
            .map_err(|e| format!("group {group}: {e}"))?;
        Ok((RaftGroup { raft, storage, failed: None, log_writes: 0, held_write: None }, recovery))
    }

    /// Executes every pending action: sends go to `outbox`, persists run now.
    pub fn drive(&mut self, now: MonoTime, outbox: &mut Outbox) {
        // Each persist can release held messages, which the next poll returns; the Raft
        // outbox and its io queue are bounded, so this loop ends.
        loop {
            if let Some(io) = self.held_write.take() {
                self.persist(now, &io);
            }
            if !self.drive_to_write(now, outbox) {
                return;
            }
        }
    }

    /// The first half of `drive`: queues the sends that come before the next write and stops
    /// at that write, which the next `drive` makes. Returns whether a write is held. The
    /// runtime sends what this queued while the write runs, so a leader's appends reach the
    /// followers while its own disk writes them (Raft §10.2.1): those messages promise
    /// nothing, and the leader counts itself toward a commit only once its write is
    /// durable. Messages that promise a write stay held by Raft until it is.
    pub fn drive_to_write(&mut self, now: MonoTime, outbox: &mut Outbox) -> bool {
        if self.held_write.is_some() {
            return true;
        }
        while let Some(action) = self.raft.poll_action(now) {
            match action {
                Action::Send(m) => outbox.push_back((m.to, m.encode())),
                Action::Persist(io) => {
                    self.held_write = Some(io);
                    return true;
                }
            }
        }
        false
    }

    fn persist(&mut self, now: MonoTime, io: &PersistIo) {
        if self.failed.is_some() {
            return; // never acknowledge anything after a storage failure
        }
        match self.storage.persist(io) {
            Ok(()) => {
                self.log_writes += u64::from(!io.entries.is_empty());
                self.raft.handle_persisted(now, io.id);
            }
            Err(e) => {
                tracing::error!(group = self.raft.group(), error = %e, "raft log write failed; group stops");
                self.failed = Some(e);
                self.raft.set_campaign_allowed(false);
            }
        }
    }

    /// Writes the snapshot of checkpoint `cp` (the application state `data`, already made
    /// durable by the caller), then lets Raft re-check catch-ups and compacts the log files
    /// if it agrees. Returns the index compacted through, if any.
    pub fn finish_checkpoint(&mut self, now: MonoTime, cp: &Checkpoint, data: Bytes) -> Result<Option<Index>, String> {
        match self.prepare_checkpoint(cp, data.clone())? {
            None => Ok(None),
            Some(mut write) => {
                // Its error is latched by `adopt_checkpoint`, which reports it.
                let _ = write.run();
                let (compacted, leftovers) = self.adopt_checkpoint(now, cp, write, data)?;
                self.storage.remove_leftovers(&leftovers).map_err(|e| format!("compact: {e}"))?;
                Ok(compacted)
            }
        }
    }

    /// The first half of `finish_checkpoint`: the snapshot file's write, to run on any
    /// thread, or `None` if the checkpoint is moot (a leader's snapshot replaced the log).
    pub fn prepare_checkpoint(&mut self, cp: &Checkpoint, data: Bytes) -> Result<Option<SnapshotWrite<D>>, String> {
        if self.failed.is_some() {
            self.raft.checkpoint_failed(cp.generation);
            return Err("group failed".into());
        }
        if self.superseded(cp) {
            self.raft.abort_checkpoint(cp.generation);
            return Ok(None);
        }
        let snapshot = Snapshot {
            meta: SnapshotMeta { last_index: cp.index, last_term: cp.term, membership: cp.membership.clone() },
            data,
        };
        match self.storage.prepare_snapshot(&snapshot) {
            Ok(write) => Ok(Some(write)),
            Err(e) => {
                self.raft.checkpoint_failed(cp.generation);
                Err(format!("save snapshot at {}: {e}", cp.index))
            }
        }
    }

    /// The second half: the written snapshot becomes the saved one, Raft re-checks catch-ups
    /// (the log may have moved on while the file was written) and the log is compacted if it
    /// agrees. Returns the index compacted through, if any, and the files the snapshot and
    /// the compaction made unnecessary, detached, for the caller to remove (`Leftovers`).
    pub fn adopt_checkpoint(
        &mut self,
        now: MonoTime,
        cp: &Checkpoint,
        write: SnapshotWrite<D>,
        data: Bytes,
    ) -> Result<(Option<Index>, Leftovers), String> {
        if self.failed.is_some() {
            self.raft.checkpoint_failed(cp.generation);
            return Err("group failed".into());
        }
        if self.superseded(cp) {
            self.storage.discard_snapshot(write);
            self.raft.abort_checkpoint(cp.generation);
            return Ok((None, Leftovers::default()));
        }
        let mut leftovers = match self.storage.adopt_snapshot(write) {
            Ok(leftovers) => leftovers,
            Err(e) => {
                self.raft.checkpoint_failed(cp.generation);
                return Err(format!("save snapshot at {}: {e}", cp.index));
            }
        };
        match self.raft.checkpoint_saved(now, cp.generation, data) {
            Ok(through) => match self.storage.compact_detached(through) {
                Ok(segments) => {
                    leftovers.append(segments);
                    if let Some(entries) = self.raft.take_compacted() {
                        leftovers.discard(entries);
                    }
                    Ok((Some(through), leftovers))
                }
                // The snapshot is durable; the old segments stay until the next compaction.
                Err(e) => Err(format!("compact through {through}: {e}")),
            },
            // Catch-up started or superseded: the snapshot is kept, the log is not compacted.
            Err(_) => Ok((None, leftovers)),
        }
    }

    /// A leader's snapshot may have replaced the log since the checkpoint was taken.
    fn superseded(&self, cp: &Checkpoint) -> bool {
        self.storage.snapshot_meta().is_some_and(|m| m.last_index >= cp.index)
    }
}
