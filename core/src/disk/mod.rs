//! The disk boundary: the only way core reads or writes bytes that outlive a process.
//!
//! Owns the `Disk` / `DiskFile` traits, their written contract, and the error type every
//! implementation returns. Implementations: `os::OsDisk` (production, `std::fs`) and
//! `sluice_faultfs::FaultFs` (simulation, crash model). Both run [`conformance`].
//!
//! # Contract (every implementation)
//!
//! Paths are relative to the disk's root, use `/` separators, and name files or
//! directories below it; `..`, absolute paths and empty components are rejected with
//! [`DiskErrorKind::InvalidInput`].
//!
//! **Durability.** A write is visible to every later read at once, through any handle, but
//! it is *durable* (survives a crash of the machine) only after [`DiskFile::sync_data`] on
//! that file returns `Ok`. `sync_data` makes the file's contents *and length* durable, as
//! Linux `fdatasync(2)` does: the size is metadata needed to read the data back.
//! A *name* (a file or directory created, removed or renamed) is durable only after
//! [`Disk::sync_dir`] of its parent directory returns `Ok`. A file whose data was synced
//! but whose name never was can vanish in a crash, data and all.
//!
//! **Ordering.** Nothing orders unsynced writes against each other: after a crash any
//! subset of them may have reached the medium, a later one without an earlier one, and a
//! multi-sector write may be torn at a 512-byte sector boundary. Directory operations
//! within one directory reach the medium in the order they were issued (a journal), so
//! a crash keeps a prefix of them.
//!
//! **After an error.** Every method either succeeds or returns a [`DiskError`]:
//! * `write_at` failing may have written any prefix of the range (short write). The caller
//!   must treat the bytes in `[offset, offset + len)` as unknown.
//! * `sync_data` failing means the unsynced writes *may be lost even though a later
//!   `sync_data` returns `Ok`* (Linux drops or cleans dirty pages after a failed fsync).
//!   A caller that needs durability must treat a failed sync as a lost write: stop using
//!   the file and recover from what is durable.
//! * A failing `read_at` changes nothing. A read can also return *wrong bytes without an
//!   error* (bit rot, misbehaving controllers): callers check checksums.
//! * Directory operations that fail change nothing visible.
//!
//! Implementations are `Clone + Send + Sync`: clones share the same files, so a store can
//! hand its disk to background work.

pub mod conformance;
mod error;
mod path;

pub use error::{DiskError, DiskErrorKind};
pub use path::check_relative_path;

use std::path::Path;

/// How [`Disk::open`] treats a missing or existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading only; writes fail with `InvalidInput`.
    Read,
    /// Open an existing file for reading and writing.
    ReadWrite,
    /// Open for reading and writing, creating an empty file if missing.
    Create,
    /// Create a new empty file; fail with `AlreadyExists` if the name exists.
    CreateNew,
}

/// What a name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
}

/// Deepest tree `Disk::remove_dir_all` descends.
pub const REMOVE_TREE_DEPTH_MAX: usize = 16;

/// A directory tree of files with explicit durability. See the module docs for the
/// contract every method follows.
pub trait Disk: Clone + Send + Sync + 'static {
    type File: DiskFile;

    /// Opens `path` per `mode`. Creating a file adds a name to its parent directory,
    /// which is durable only after `sync_dir(parent)`. The parent must exist
    /// (`NotFound` otherwise). Opening a directory fails with `InvalidInput`.
    fn open(&self, path: &Path, mode: OpenMode) -> Result<Self::File, DiskError>;

    /// Creates an empty directory. The parent must exist. `AlreadyExists` if the name is
    /// taken. Durable after `sync_dir(parent)`.
    fn create_dir(&self, path: &Path) -> Result<(), DiskError>;

    /// Creates `path` and every missing ancestor (no error if it already exists as a
    /// directory). Each new name is durable after `sync_dir` of its own parent.
    fn create_dir_all(&self, path: &Path) -> Result<(), DiskError> {
        let mut built = std::path::PathBuf::new();
        for component in path.components() {
            built.push(component);
            match self.entry_kind(&built)? {
                Some(EntryKind::Dir) => {}
                Some(EntryKind::File) => {
                    return Err(DiskError::new(
                        DiskErrorKind::AlreadyExists,
                        "create_dir_all",
                        &built,
                        "a file has this name",
                    ));
                }
                None => self.create_dir(&built)?,
            }
        }
        Ok(())
    }

    /// Removes a file's name. Handles that are already open keep working on the
    /// (now unnamed) file. Durable after `sync_dir(parent)`.
    fn remove_file(&self, path: &Path) -> Result<(), DiskError>;

    /// Removes an empty directory (`InvalidInput` if not empty). Durable after
    /// `sync_dir(parent)`.
    fn remove_dir(&self, path: &Path) -> Result<(), DiskError>;

    /// Removes `path` and everything under it (no error if it does not exist), children
    /// first, so a crash part-way leaves a smaller tree, never a dangling entry. Each
    /// removal is durable after `sync_dir` of its parent; this syncs none of them. Bounded:
    /// refuses trees deeper than `REMOVE_TREE_DEPTH_MAX`.
    fn remove_dir_all(&self, path: &Path) -> Result<(), DiskError> {
        fn remove<D: Disk>(disk: &D, path: &Path, depth: usize) -> Result<(), DiskError> {
            if depth > REMOVE_TREE_DEPTH_MAX {
                return Err(DiskError::new(DiskErrorKind::InvalidInput, "remove_dir_all", path, "tree too deep"));
            }
            match disk.entry_kind(path)? {
                None => Ok(()),
                Some(EntryKind::File) => disk.remove_file(path),
                Some(EntryKind::Dir) => {
                    for name in disk.list_dir(path)? {
                        remove(disk, &path.join(name), depth + 1)?;
                    }
                    disk.remove_dir(path)
                }
            }
        }
        remove(self, path, 0)
    }

    /// Atomically points `to` at the file named `from`, replacing any file at `to`; after a
    /// crash either the old or the new binding of `to` is seen, never neither. Both names
    /// must be in the same directory (`InvalidInput` otherwise); durable after
    /// `sync_dir(parent)`.
    fn rename(&self, from: &Path, to: &Path) -> Result<(), DiskError>;

    /// The names in a directory, sorted bytewise, without `.` and `..`. A name that is not
    /// UTF-8 is listed lossily (invalid bytes as U+FFFD); such a name cannot be opened.
    fn list_dir(&self, path: &Path) -> Result<Vec<String>, DiskError>;

    /// What `path` names, or `None` if nothing.
    fn entry_kind(&self, path: &Path) -> Result<Option<EntryKind>, DiskError>;

    /// Makes every create, remove and rename of names in directory `path` durable.
    /// The empty path is the root.
    fn sync_dir(&self, path: &Path) -> Result<(), DiskError>;
}

/// An open file. Positions are explicit: there is no cursor, so clones of a handle and
/// concurrent readers never interfere.
// `len` can fail (it asks the disk), and nothing needs an `is_empty`.
#[allow(clippy::len_without_is_empty)]
pub trait DiskFile: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read, fewer only
    /// at the end of the file (0 at or past the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, DiskError>;

    /// Writes all of `buf` at `offset`, growing the file (with zeros in any gap) if
    /// needed. Not durable until `sync_data`. On error any prefix may have been written.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError>;

    /// The current length in bytes, including unsynced writes.
    fn len(&self) -> Result<u64, DiskError>;

    /// Truncates or zero-extends the file to `len_bytes`. Not durable until `sync_data`.
    fn set_len(&self, len_bytes: u64) -> Result<(), DiskError>;

    /// Makes this file's writes and length durable. See the module docs for what a failure
    /// means: data written before a failed sync must be presumed lost.
    fn sync_data(&self) -> Result<(), DiskError>;

    /// Reads exactly `buf.len()` bytes at `offset`, failing with `UnexpectedEof` if the file
    /// ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        let mut done = 0usize;
        // Each iteration reads at least one byte or returns, so this loop is bounded by
        // buf.len() iterations.
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(DiskError::new(
                    DiskErrorKind::UnexpectedEof,
                    "read_exact_at",
                    Path::new(""),
                    format!("file ended at {} of {} bytes", offset + done as u64, offset + buf.len() as u64),
                ));
            }
            done += n;
        }
        Ok(())
    }
}
