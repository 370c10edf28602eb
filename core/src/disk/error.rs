//! The one error type every `Disk` implementation returns.

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong, in terms a caller can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiskErrorKind {
    NotFound,
    AlreadyExists,
    /// No space left on the device (ENOSPC). Retrying after space is freed may succeed.
    NoSpace,
    /// The device failed (EIO): a read of a bad sector, a failed write-back, a failed fsync.
    Io,
    /// The file ended before the requested range.
    UnexpectedEof,
    /// The call itself was wrong: bad path, write on a read-only handle, rename across
    /// directories, removing a non-empty directory.
    InvalidInput,
    /// The handle belongs to a process incarnation that crashed; reopen the file.
    StaleHandle,
    /// Anything else the operating system reported.
    Other,
}

/// A failed disk operation: what failed, on which path, and whether it was injected by a
/// fault model (so simulation checkers can tell injected faults from real bugs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskError {
    pub kind: DiskErrorKind,
    pub op: &'static str,
    pub path: PathBuf,
    /// True when a fault injector (faultfs) produced this error on purpose.
    pub injected: bool,
    pub detail: String,
}

impl DiskError {
    pub fn new(kind: DiskErrorKind, op: &'static str, path: &Path, detail: impl Into<String>) -> Self {
        DiskError { kind, op, path: path.to_path_buf(), injected: false, detail: detail.into() }
    }

    /// An error a fault injector produced on purpose.
    pub fn injected(kind: DiskErrorKind, op: &'static str, path: &Path, detail: impl Into<String>) -> Self {
        DiskError { injected: true, ..DiskError::new(kind, op, path, detail) }
    }

    /// The same error, naming `path` if it did not name one yet.
    pub fn with_path(mut self, path: &Path) -> Self {
        if self.path.as_os_str().is_empty() {
            self.path = path.to_path_buf();
        }
        self
    }
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {:?}", self.op, self.path.display(), self.kind)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if self.injected {
            write!(f, " (injected)")?;
        }
        Ok(())
    }
}

impl std::error::Error for DiskError {}
