//! Files a snapshot or a compaction made unnecessary, detached from `RaftStorage` so that
//! removing them (unlinks and a directory fsync, which can take tens of milliseconds while
//! the log is being synced) can run off the storage's thread. Nothing reads them any more:
//! the storage forgot them before handing them out.
//!
//! Safe to remove late or never: a crash before the removal leaves what a crash between a
//! snapshot and its compaction always left (segments below the snapshot, older snapshot
//! files), and recovery passes over them. Removed oldest first, so a crash part-way leaves
//! a contiguous log.

use super::RaftStorageError;
use crate::disk::{Disk, DiskErrorKind};
use std::any::Any;
use std::path::{Path, PathBuf};

#[derive(Default)]
pub struct Leftovers {
    /// Per directory, in the order to handle them: the files to remove, oldest first; the
    /// directory is synced once its files are gone.
    dirs: Vec<(PathBuf, Vec<PathBuf>)>,
    /// Memory to free wherever the leftovers are dropped: compacted log entries and segment
    /// bookkeeping, which took tens of milliseconds to free on the node's thread.
    garbage: Vec<Box<dyn Any + Send>>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.garbage.is_empty() && self.dirs.iter().all(|(_, files)| files.is_empty())
    }

    /// Frees the memory kept by `discard` now (on the thread that runs the cleanup).
    pub fn free(&mut self) {
        self.garbage.clear();
    }

    /// Keeps `value` until the leftovers are dropped or `free`d.
    pub fn discard(&mut self, value: impl Any + Send) {
        self.garbage.push(Box::new(value));
    }

    pub(super) fn add(&mut self, file: PathBuf, dir: &Path) {
        match self.dirs.iter_mut().find(|(d, _)| d == dir) {
            Some((_, files)) => files.push(file),
            None => self.dirs.push((dir.to_path_buf(), vec![file])),
        }
    }

    pub fn append(&mut self, other: Leftovers) {
        self.garbage.extend(other.garbage);
        for (dir, files) in other.dirs {
            for file in files {
                self.add(file, &dir);
            }
        }
    }

    /// Per directory: removes its files (one already gone is fine), then syncs it.
    pub fn remove<D: Disk>(&self, disk: &D) -> Result<(), RaftStorageError> {
        for (dir, files) in &self.dirs {
            for path in files {
                match disk.remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind == DiskErrorKind::NotFound => {}
                    Err(e) => return Err(RaftStorageError::disk(path, None, e)),
                }
            }
            if !files.is_empty() {
                disk.sync_dir(dir).map_err(|e| RaftStorageError::disk(dir, None, e))?;
            }
        }
        Ok(())
    }
}
