//! A store sync split in three, so its fsyncs can run off the thread that appends (issue 7's
//! background checkpoints): `begin_sync` writes every buffered record and captures what must
//! be made durable; `SyncPlan::run` makes it so, on any thread, while appends go on;
//! `finish_sync`, back on the store's thread, records what became durable.
//!
//! Invariants:
//! * after `run` returns `Ok`, every record written before `begin_sync` is durable, and so
//!   is every block name created before it (the plan syncs the directory if it was dirty);
//! * `finish_sync` moves a block's durable mark only to the end the plan saw, and only if no
//!   truncation happened since `begin_sync` (a truncation may reuse block indexes and cut
//!   bytes the plan's fsync did or did not cover): otherwise blocks stay dirty and the next
//!   sync covers them again;
//! * the directory counts as synced only if nothing changed it since `begin_sync`;
//! * blocks waiting for removal are removed only if they were in the plan: their compact
//!   record was written before `begin_sync`, so the plan made it durable;
//! * a failed fsync latches the store exactly as an inline `sync` does, and cuts that block
//!   back to its last durable end (the fsyncgate rule of `Block::sync`); both threads fsync
//!   through one `SharedFile`, which remembers the durable end either reached and poisons the
//!   file after any failure, so neither is told a later fsync succeeded;
//! * `finish_sync` of a store that failed meanwhile is an error: the snapshot must not count
//!   on it;
//! * the state file is not written: it stays stale (behind, never ahead), and the next inline
//!   `sync` or `close` writes it. Recovery scans forward from an older mark.

use super::block::{sync_data, SharedFile};
use super::{FileStore, StoreError};
use crate::disk::{Disk, DiskErrorKind};
use std::path::PathBuf;
use std::sync::Arc;

/// One dirty block: its index, path, shared handle, and the end `begin_sync` saw.
type PlannedFile<F> = (u32, PathBuf, Arc<SharedFile<F>>, u64);

/// The durable half of a sync, detached from the store: `Send`, so it can run on a worker.
pub struct SyncPlan<D: Disk> {
    disk: D,
    /// Dirty blocks, in index order.
    files: Vec<PlannedFile<D::File>>,
    /// Blocks already waiting for removal: their compact record was written before the plan.
    removals: Vec<u32>,
    /// The store directory, if it needed a sync.
    dir: Option<PathBuf>,
    cuts: u64,
    dir_changes: u64,
    /// Set by `run`: the fsync that failed, with the block's path.
    failed: Option<(PathBuf, StoreError)>,
    ran: bool,
}

impl<D: Disk> SyncPlan<D> {
    /// Makes durable what `begin_sync` captured: the blocks in index order, then the
    /// directory. Stops at the first failure. Touches only the disk, never the store.
    pub fn run(&mut self) -> Result<(), StoreError> {
        assert!(!self.ran, "a sync plan runs once");
        self.ran = true;
        for (_, path, file, end_bytes) in &self.files {
            if let Err(e) = sync_data(file, path, *end_bytes) {
                let error = StoreError::disk(path, None, e);
                self.failed = Some((path.clone(), error.clone()));
                return Err(error);
            }
        }
        if let Some(dir) = &self.dir {
            if let Err(e) = self.disk.sync_dir(dir) {
                let error = StoreError::disk(dir, None, e);
                self.failed = Some((dir.clone(), error.clone()));
                return Err(error);
            }
        }
        Ok(())
    }
}

impl<D: Disk> FileStore<D> {
    /// Writes every buffered record to its file and captures the fsyncs that would make
    /// them durable. Nothing is durable until the plan runs and `finish_sync` takes it back.
    pub fn begin_sync(&mut self) -> Result<SyncPlan<D>, StoreError> {
        self.check_writable()?;
        self.write_all_pending()?;
        let files = (self.removals.iter().chain(self.blocks.iter()))
            .filter(|b| b.dirty)
            .map(|b| (b.index, b.path.clone(), Arc::clone(&b.file), b.end_bytes))
            .collect();
        let removals = self.removals.iter().map(|b| b.index).collect();
        let mut dir = self.dir_dirty.then(|| self.dir.clone());
        if dir.is_some() && crate::bugs::active(crate::bugs::Bug::BlockDirNotSynced) {
            dir = None; // planted: believes the directory is durable without syncing it
        }
        Ok(SyncPlan {
            disk: self.disk.clone(),
            files,
            removals,
            dir,
            cuts: self.cuts,
            dir_changes: self.dir_changes,
            failed: None,
            ran: false,
        })
    }

    /// Takes back a plan that ran (see the module docs for what moves). On a failed fsync
    /// the store latches and the error is returned again.
    pub fn finish_sync(&mut self, plan: SyncPlan<D>) -> Result<(), StoreError> {
        assert!(plan.ran, "finish_sync takes a plan that ran");
        let unchanged = plan.cuts == self.cuts;
        if let Some((path, error)) = plan.failed {
            if unchanged {
                if let Some(block) = self.blocks.iter().chain(self.removals.iter()).find(|b| b.path == path) {
                    block.cut_to_durable(); // as `Block::sync` does
                }
            }
            return Err(self.fail(error));
        }
        // A store that failed meanwhile (an fsync on this thread) may have cut what the plan
        // made durable, or lost pages the plan was told were written: no snapshot may count
        // on it.
        self.check_writable()?;
        if !unchanged {
            return Ok(()); // the data the plan covered is durable; the bookkeeping stays dirty
        }
        for (index, _, _, end) in &plan.files {
            let block = self.blocks.iter_mut().chain(self.removals.iter_mut()).find(|b| b.index == *index);
            if let Some(block) = block {
                block.synced_bytes = block.synced_bytes.max(*end);
                block.dirty = block.synced_bytes < block.end_bytes;
            }
        }
        let dir_synced = plan.dir.is_some() || crate::bugs::active(crate::bugs::Bug::BlockDirNotSynced);
        if dir_synced && plan.dir_changes == self.dir_changes {
            self.dir_dirty = false;
        }
        // Front blocks the plan covered: their compact record is durable, so they can go.
        // The unlinks are cheap; their directory sync is left to the next sync.
        while let Some(block) = self.removals.first() {
            if block.dirty || !plan.removals.contains(&block.index) {
                break;
            }
            match self.disk.remove_file(&block.path) {
                Ok(()) => {}
                Err(e) if e.kind == DiskErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::disk(&block.path, None, e)),
            }
            self.removals.remove(0);
            self.mark_dir_dirty();
        }
        Ok(())
    }
}
