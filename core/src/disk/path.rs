//! Validation of the relative paths every `Disk` accepts.

use super::{DiskError, DiskErrorKind};
use std::path::{Component, Path};

/// Longest path a disk accepts, in bytes; a bound so hostile names cannot grow maps.
pub const PATH_BYTES_MAX: usize = 1024;

/// Checks that `path` is a relative path of plain components (no `..`, no root, no `.`),
/// valid UTF-8 and at most [`PATH_BYTES_MAX`] bytes. The empty path names the root.
///
/// It must also be written canonically: no empty component (`a//b`, a trailing `/`) and no
/// `.` anywhere, which `Path` would quietly normalize. Then two paths naming one file have
/// the same text, so a disk may key its names by text (faultfs does).
pub fn check_relative_path(op: &'static str, path: &Path) -> Result<(), DiskError> {
    let bad = |why: &str| Err(DiskError::new(DiskErrorKind::InvalidInput, op, path, why));
    let Some(text) = path.to_str() else {
        return bad("path is not UTF-8");
    };
    if text.len() > PATH_BYTES_MAX {
        return bad("path too long");
    }
    if text.contains('\0') {
        return bad("path contains NUL");
    }
    for component in path.components() {
        match component {
            Component::Normal(_) => {}
            Component::CurDir => return bad("path contains `.`"),
            Component::ParentDir => return bad("path contains `..`"),
            Component::RootDir | Component::Prefix(_) => return bad("path is absolute"),
        }
    }
    if !text.is_empty() && text.split('/').any(|c| c.is_empty() || c == ".") {
        return bad("path is not canonical (an empty or `.` component)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_relative_paths() {
        assert!(check_relative_path("t", Path::new("")).is_ok());
        assert!(check_relative_path("t", Path::new("a/b.blk")).is_ok());
    }

    #[test]
    fn rejects_escapes() {
        for bad in ["/etc/passwd", "../x", "a/../../x", "./a", "a//b", "a/", "a/./b", "a/."] {
            let err = check_relative_path("t", Path::new(bad)).unwrap_err();
            assert_eq!(err.kind, DiskErrorKind::InvalidInput, "{bad}");
        }
        let long = "a".repeat(PATH_BYTES_MAX + 1);
        assert!(check_relative_path("t", Path::new(&long)).is_err());
    }
}
