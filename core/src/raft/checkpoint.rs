//! Snapshots by checkpoint: the bookkeeping half (the driver does the I/O).
//!
//! Life cycle (docs/raft.md, "Snapshots"):
//! 1. `Raft::create_checkpoint(force)` captures the applied index, its term and membership,
//!    and gives the checkpoint a generation. Refused with `CatchupsRunning` while a follower
//!    catch-up is in progress (unless forced), `NoSnapshotAvailable` when nothing was applied
//!    since the last snapshot, `InProgress` while another checkpoint is running (a forced one
//!    supersedes it).
//! 2. The application captures its state at that index; background work syncs the store and
//!    writes the snapshot file atomically. The apply loop keeps running meanwhile.
//! 3. `Raft::checkpoint_saved(generation, data)` checks the checkpoint is still current and
//!    re-checks catch-ups (NATS checks only at creation), then compacts the in-memory log;
//!    the driver then compacts the log files. `abort_checkpoint` cancels; a stale generation
//!    is ignored so a late abort cannot cancel a newer checkpoint.
//! 4. Every failed attempt counts; after more than four in a row the next one is forced.

use super::types::{Index, Membership, Term};
use crate::env::{MonoTime, NodeId};
use std::collections::BTreeMap;
use std::fmt;

/// Attempts that may fail in a row before the next checkpoint is forced.
pub const CHECKPOINT_FAILURES_BEFORE_FORCE: u32 = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub generation: u64,
    /// The snapshot covers entries through this index.
    pub index: Index,
    pub term: Term,
    pub membership: Membership,
    pub forced: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointError {
    /// A follower catch-up is in progress; compacting now would take entries it needs.
    CatchupsRunning,
    /// Nothing applied since the last snapshot (or the entry is no longer in the log).
    NoSnapshotAvailable,
    /// Another checkpoint is running.
    InProgress,
    /// The checkpoint was aborted or superseded by a newer one or by a leader's snapshot.
    Superseded,
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckpointError::CatchupsRunning => "snapshot can not be installed while catch-ups are running",
            CheckpointError::NoSnapshotAvailable => "no snapshot available",
            CheckpointError::InProgress => "a snapshot is already in progress",
            CheckpointError::Superseded => "checkpoint aborted or superseded",
        })
    }
}

impl std::error::Error for CheckpointError {}

#[derive(Default)]
pub struct Checkpoints {
    generation: u64,
    current: Option<Checkpoint>,
    failures: u32,
    /// Catch-ups the application serves (stream messages after a snapshot), with the time
    /// after which a silent one no longer counts.
    app_catchups: BTreeMap<NodeId, MonoTime>,
}

impl Checkpoints {
    pub fn create(
        &mut self,
        force: bool,
        applied: Index,
        snapshot_index: Index,
        term: Option<Term>,
        membership: Option<Membership>,
        catchups_running: bool,
    ) -> Result<Checkpoint, CheckpointError> {
        if self.current.is_some() && !force {
            return Err(CheckpointError::InProgress);
        }
        if catchups_running {
            assert!(!force);
            self.failures += 1;
            return Err(CheckpointError::CatchupsRunning);
        }
        let (Some(term), Some(membership)) = (term, membership) else {
            return Err(CheckpointError::NoSnapshotAvailable);
        };
        if applied == 0 || applied <= snapshot_index {
            return Err(CheckpointError::NoSnapshotAvailable);
        }
        self.generation += 1;
        let cp = Checkpoint { generation: self.generation, index: applied, term, membership, forced: force };
        self.current = Some(cp.clone());
        Ok(cp)
    }

    pub fn current(&self, generation: u64) -> Result<&Checkpoint, CheckpointError> {
        self.current.as_ref().filter(|cp| cp.generation == generation).ok_or(CheckpointError::Superseded)
    }

    /// Ends the current checkpoint; `compacted` says whether it achieved its purpose.
    pub fn finish(&mut self, generation: u64, compacted: bool) {
        assert!(self.current.as_ref().is_some_and(|cp| cp.generation == generation));
        self.current = None;
        if compacted {
            self.failures = 0;
        } else {
            self.failures += 1;
        }
    }

    pub fn abort(&mut self, generation: u64) {
        if self.current.as_ref().is_some_and(|cp| cp.generation == generation) {
            self.current = None;
        }
    }

    pub fn should_force(&self) -> bool {
        self.failures > CHECKPOINT_FAILURES_BEFORE_FORCE
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    pub fn set_app_catchup(&mut self, peer: NodeId, until: Option<MonoTime>) {
        match until {
            Some(t) => {
                self.app_catchups.insert(peer, t);
            }
            None => {
                self.app_catchups.remove(&peer);
            }
        }
    }

    pub fn app_catchups_running(&self, now: MonoTime) -> bool {
        self.app_catchups.values().any(|until| now < *until)
    }
}
