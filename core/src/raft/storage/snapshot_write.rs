//! One snapshot file's write, detached from `RaftStorage` so a background checkpoint can run
//! it on another thread: temp file, sync, rename to `snap-<index>`, directory sync. It
//! touches no file but its own, so the storage may append, compact or install another
//! snapshot meanwhile; `RaftStorage::adopt_snapshot` or `discard_snapshot` takes it back.

use super::files::{replace_file, snapshot_name};
use super::RaftStorageError;
use crate::disk::Disk;
use crate::format::raftlog::encode_snapshot;
use crate::raft::types::{Snapshot, SnapshotMeta};
use std::path::PathBuf;

pub struct SnapshotWrite<D: Disk> {
    disk: D,
    dir: PathBuf,
    pub(super) meta: SnapshotMeta,
    bytes: Vec<u8>,
    /// `None` until `run`.
    result: Option<Result<(), RaftStorageError>>,
}

impl<D: Disk> SnapshotWrite<D> {
    pub(super) fn new(disk: D, dir: PathBuf, snap: &Snapshot) -> SnapshotWrite<D> {
        SnapshotWrite { disk, dir, meta: snap.meta.clone(), bytes: encode_snapshot(snap), result: None }
    }

    /// Writes the file durably. Runs once.
    pub fn run(&mut self) -> Result<(), RaftStorageError> {
        assert!(self.result.is_none(), "a snapshot write runs once");
        let result = replace_file(&self.disk, &self.dir, &snapshot_name(self.meta.last_index), &self.bytes);
        self.result = Some(result.clone());
        result
    }

    /// What `run` returned.
    pub(super) fn outcome(&self) -> Result<(), RaftStorageError> {
        self.result.clone().expect("a snapshot write is taken back only after it ran")
    }
}
