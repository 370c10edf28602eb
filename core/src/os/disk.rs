//! The production disk: `std::fs` under a root directory, `fdatasync` for files and `fsync`
//! of the directory file descriptor for names. Passes `disk::conformance::run`.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use crate::disk::{check_relative_path, Disk, DiskError, DiskErrorKind, DiskFile, EntryKind, OpenMode};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A directory tree rooted at a real directory.
#[derive(Clone, Debug)]
pub struct OsDisk {
    root: Arc<PathBuf>,
}

/// An open file on an [`OsDisk`].
#[derive(Debug)]
pub struct OsFile {
    file: File,
    path: PathBuf,
    writable: bool,
}

fn error(op: &'static str, path: &Path, err: io::Error) -> DiskError {
    const ENOENT: i32 = 2;
    const EIO: i32 = 5;
    const EEXIST: i32 = 17;
    const ENOTDIR: i32 = 20;
    const EISDIR: i32 = 21;
    const EINVAL: i32 = 22;
    const ENOSPC: i32 = 28;
    const ENOTEMPTY: i32 = 39;
    const EDQUOT: i32 = 122;
    let kind = match err.raw_os_error() {
        Some(ENOENT) | Some(ENOTDIR) => DiskErrorKind::NotFound,
        Some(EEXIST) => DiskErrorKind::AlreadyExists,
        Some(ENOSPC) | Some(EDQUOT) => DiskErrorKind::NoSpace,
        Some(EIO) => DiskErrorKind::Io,
        Some(EISDIR) | Some(ENOTEMPTY) | Some(EINVAL) => DiskErrorKind::InvalidInput,
        _ => match err.kind() {
            io::ErrorKind::NotFound => DiskErrorKind::NotFound,
            io::ErrorKind::AlreadyExists => DiskErrorKind::AlreadyExists,
            io::ErrorKind::UnexpectedEof => DiskErrorKind::UnexpectedEof,
            _ => DiskErrorKind::Other,
        },
    };
    DiskError::new(kind, op, path, err.to_string())
}

impl OsDisk {
    /// A disk rooted at `root`, which must be an existing, readable directory.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, DiskError> {
        let root = root.into();
        let meta = fs::metadata(&root).map_err(|e| error("open root", &root, e))?;
        if !meta.is_dir() {
            return Err(DiskError::new(DiskErrorKind::InvalidInput, "open root", &root, "not a directory"));
        }
        fs::read_dir(&root).map_err(|e| error("open root", &root, e))?;
        Ok(OsDisk { root: Arc::new(root) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, op: &'static str, path: &Path) -> Result<PathBuf, DiskError> {
        check_relative_path(op, path)?;
        Ok(self.root.join(path))
    }
}

impl Disk for OsDisk {
    type File = OsFile;

    fn open(&self, path: &Path, mode: OpenMode) -> Result<OsFile, DiskError> {
        let full = self.full("open", path)?;
        let mut options = OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                options.write(true);
            }
            OpenMode::Create => {
                options.write(true).create(true);
            }
            OpenMode::CreateNew => {
                options.write(true).create_new(true);
            }
        }
        let file = options.open(&full).map_err(|e| error("open", path, e))?;
        // Linux lets a directory be opened read-only; the contract says files only.
        let meta = file.metadata().map_err(|e| error("open", path, e))?;
        if meta.is_dir() {
            return Err(DiskError::new(DiskErrorKind::InvalidInput, "open", path, "is a directory"));
        }
        Ok(OsFile { file, path: path.to_path_buf(), writable: mode != OpenMode::Read })
    }

    fn create_dir(&self, path: &Path) -> Result<(), DiskError> {
        let full = self.full("create_dir", path)?;
        fs::create_dir(full).map_err(|e| error("create_dir", path, e))
    }

    fn remove_file(&self, path: &Path) -> Result<(), DiskError> {
        let full = self.full("remove_file", path)?;
        fs::remove_file(full).map_err(|e| error("remove_file", path, e))
    }

    fn remove_dir(&self, path: &Path) -> Result<(), DiskError> {
        let full = self.full("remove_dir", path)?;
        fs::remove_dir(full).map_err(|e| error("remove_dir", path, e))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), DiskError> {
        let full_from = self.full("rename", from)?;
        let full_to = self.full("rename", to)?;
        if from.parent() != to.parent() {
            return Err(DiskError::new(DiskErrorKind::InvalidInput, "rename", from, "across directories"));
        }
        fs::rename(full_from, full_to).map_err(|e| error("rename", from, e))
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>, DiskError> {
        let full = self.full("list_dir", path)?;
        let mut names = Vec::new();
        for entry in fs::read_dir(full).map_err(|e| error("list_dir", path, e))? {
            let entry = entry.map_err(|e| error("list_dir", path, e))?;
            // A name that is not UTF-8 cannot be one of ours; list it lossily (with U+FFFD) so
            // a stray file is reported as ignored rather than stopping recovery.
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn entry_kind(&self, path: &Path) -> Result<Option<EntryKind>, DiskError> {
        let full = self.full("entry_kind", path)?;
        match fs::symlink_metadata(full) {
            Ok(meta) if meta.is_dir() => Ok(Some(EntryKind::Dir)),
            Ok(_) => Ok(Some(EntryKind::File)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error("entry_kind", path, e)),
        }
    }

    fn sync_dir(&self, path: &Path) -> Result<(), DiskError> {
        let full = self.full("sync_dir", path)?;
        let dir = File::open(full).map_err(|e| error("sync_dir", path, e))?;
        dir.sync_all().map_err(|e| error("sync_dir", path, e))
    }
}

impl OsFile {
    fn check_writable(&self, op: &'static str) -> Result<(), DiskError> {
        if self.writable {
            Ok(())
        } else {
            Err(DiskError::new(DiskErrorKind::InvalidInput, op, &self.path, "handle is read-only"))
        }
    }
}

impl DiskFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, DiskError> {
        let mut done = 0usize;
        // pread may return short counts before EOF (signals); loop until full or EOF.
        // Each pass reads >= 1 byte or ends the loop, so it runs at most buf.len() times.
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(error("read_at", &self.path, e)),
            }
        }
        Ok(done)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        self.check_writable("write_at")?;
        self.file.write_all_at(buf, offset).map_err(|e| error("write_at", &self.path, e))
    }

    fn len(&self) -> Result<u64, DiskError> {
        Ok(self.file.metadata().map_err(|e| error("len", &self.path, e))?.len())
    }

    fn set_len(&self, len_bytes: u64) -> Result<(), DiskError> {
        self.check_writable("set_len")?;
        self.file.set_len(len_bytes).map_err(|e| error("set_len", &self.path, e))
    }

    fn sync_data(&self) -> Result<(), DiskError> {
        self.file.sync_data().map_err(|e| error("sync_data", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::conformance;
    use crate::testutil::temp_root;

    #[test]
    fn os_disk_passes_the_conformance_suite() {
        let roots = std::sync::Mutex::new(Vec::new());
        conformance::run(&|| {
            let root = temp_root("conformance");
            roots.lock().unwrap().push(root.clone());
            OsDisk::new(root).unwrap()
        });
        for root in roots.into_inner().unwrap() {
            fs::remove_dir_all(root).unwrap();
        }
    }

    #[test]
    fn names_that_are_not_utf8_are_listed_lossily() {
        use std::os::unix::ffi::OsStrExt;
        let root = temp_root("non-utf8");
        fs::write(root.join(std::ffi::OsStr::from_bytes(b"bad\xffname")), b"x").unwrap();
        fs::write(root.join("good"), b"x").unwrap();
        let disk = OsDisk::new(&root).unwrap();
        assert_eq!(disk.list_dir(Path::new("")).unwrap(), ["bad\u{fffd}name", "good"]);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn root_must_be_a_readable_directory() {
        let root = temp_root("root");
        let err = OsDisk::new(root.join("missing")).unwrap_err();
        assert_eq!(err.kind, DiskErrorKind::NotFound);
        fs::write(root.join("file"), b"x").unwrap();
        let err = OsDisk::new(root.join("file")).unwrap_err();
        assert_eq!(err.kind, DiskErrorKind::InvalidInput);
        fs::remove_dir_all(root).unwrap();
    }
}
