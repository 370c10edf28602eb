//! The `Disk` conformance suite: one set of checks that the production disk, faultfs and any
//! other implementation must pass, so the store sees the same contract everywhere.
//!
//! [`run`] checks the visible behaviour of every method on a fresh, empty disk.
//! [`run_crash`] additionally checks durability for implementations that can simulate a
//! power failure: everything synced survives, everything else is gone. A check that fails
//! panics with the check's name and what differed.

use super::{Disk, DiskErrorKind, DiskFile, EntryKind, OpenMode};
use std::path::Path;

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn read_all<F: DiskFile>(file: &F) -> Vec<u8> {
    let len = file.len().expect("len") as usize;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0).expect("read_exact_at");
    buf
}

fn expect_kind<T: std::fmt::Debug>(check: &str, result: Result<T, super::DiskError>, kind: DiskErrorKind) {
    match result {
        Ok(value) => panic!("conformance `{check}`: expected {kind:?}, got Ok({value:?})"),
        Err(err) => assert_eq!(err.kind, kind, "conformance `{check}`: {err}"),
    }
}

/// Runs every visible-behaviour check. `fresh` must return a new, empty disk each call.
pub fn run<D: Disk>(fresh: &dyn Fn() -> D) {
    open_modes(&fresh());
    write_read_and_short_reads(&fresh());
    write_past_end_zero_fills(&fresh());
    set_len_truncates_and_extends(&fresh());
    read_only_handle_refuses_writes(&fresh());
    handles_share_contents(&fresh());
    directories(&fresh());
    rename_replaces_atomically(&fresh());
    remove_keeps_open_handles_working(&fresh());
    rejects_bad_paths(&fresh());
    syncs_succeed(&fresh());
    unaligned_large_writes(&fresh());
}

/// Runs the durability checks. `crash` simulates a power failure of the disk it is given
/// that loses every write and name that was not synced, and returns the disk as it is
/// after restart.
pub fn run_crash<D: Disk>(fresh: &dyn Fn() -> D, crash: &dyn Fn(&D) -> D) {
    synced_data_and_names_survive(fresh(), crash);
    unsynced_name_vanishes(fresh(), crash);
    unsynced_write_is_lost(fresh(), crash);
    rename_is_durable_after_sync_dir(fresh(), crash);
}

fn open_modes<D: Disk>(disk: &D) {
    expect_kind("open Read of a missing file", disk.open(p("a"), OpenMode::Read).map(|_| ()), DiskErrorKind::NotFound);
    expect_kind(
        "open ReadWrite of a missing file",
        disk.open(p("a"), OpenMode::ReadWrite).map(|_| ()),
        DiskErrorKind::NotFound,
    );
    let file = disk.open(p("a"), OpenMode::CreateNew).expect("CreateNew");
    assert_eq!(file.len().unwrap(), 0, "a new file is empty");
    expect_kind(
        "CreateNew of an existing name",
        disk.open(p("a"), OpenMode::CreateNew).map(|_| ()),
        DiskErrorKind::AlreadyExists,
    );
    file.write_at(b"xyz", 0).unwrap();
    let again = disk.open(p("a"), OpenMode::Create).expect("Create of an existing file");
    assert_eq!(read_all(&again), b"xyz", "Create must not truncate an existing file");
    expect_kind(
        "open in a missing directory",
        disk.open(p("nodir/a"), OpenMode::Create).map(|_| ()),
        DiskErrorKind::NotFound,
    );
    disk.create_dir(p("d")).unwrap();
    expect_kind("open of a directory", disk.open(p("d"), OpenMode::Read).map(|_| ()), DiskErrorKind::InvalidInput);
    expect_kind("open of a directory", disk.open(p("d"), OpenMode::Create).map(|_| ()), DiskErrorKind::InvalidInput);
}

fn write_read_and_short_reads<D: Disk>(disk: &D) {
    let file = disk.open(p("f"), OpenMode::CreateNew).unwrap();
    file.write_at(b"hello world", 0).unwrap();
    assert_eq!(file.len().unwrap(), 11);
    let mut buf = [0u8; 5];
    assert_eq!(file.read_at(&mut buf, 6).unwrap(), 5);
    assert_eq!(&buf, b"world");
    let mut big = [0u8; 32];
    assert_eq!(file.read_at(&mut big, 8).unwrap(), 3, "read_at returns a short count at the end");
    assert_eq!(&big[..3], b"rld");
    assert_eq!(file.read_at(&mut big, 11).unwrap(), 0, "read_at at the end returns 0");
    assert_eq!(file.read_at(&mut big, 1000).unwrap(), 0, "read_at past the end returns 0");
    expect_kind("read_exact_at past the end", file.read_exact_at(&mut big, 0), DiskErrorKind::UnexpectedEof);
    file.write_at(b"W", 6).unwrap();
    assert_eq!(read_all(&file), b"hello World", "overwrite in place");
}

fn write_past_end_zero_fills<D: Disk>(disk: &D) {
    let file = disk.open(p("f"), OpenMode::CreateNew).unwrap();
    file.write_at(b"ab", 0).unwrap();
    file.write_at(b"cd", 6).unwrap();
    assert_eq!(read_all(&file), b"ab\0\0\0\0cd", "a gap reads as zeros");
}

fn set_len_truncates_and_extends<D: Disk>(disk: &D) {
    let file = disk.open(p("f"), OpenMode::CreateNew).unwrap();
    file.write_at(b"abcdef", 0).unwrap();
    file.set_len(3).unwrap();
    assert_eq!(read_all(&file), b"abc");
    file.set_len(5).unwrap();
    assert_eq!(read_all(&file), b"abc\0\0", "extension reads as zeros, not old bytes");
    file.set_len(0).unwrap();
    assert_eq!(file.len().unwrap(), 0);
}

fn read_only_handle_refuses_writes<D: Disk>(disk: &D) {
    disk.open(p("f"), OpenMode::CreateNew).unwrap().write_at(b"data", 0).unwrap();
    let ro = disk.open(p("f"), OpenMode::Read).unwrap();
    expect_kind("write_at on a Read handle", ro.write_at(b"x", 0), DiskErrorKind::InvalidInput);
    expect_kind("set_len on a Read handle", ro.set_len(0), DiskErrorKind::InvalidInput);
    assert_eq!(read_all(&ro), b"data", "a refused write changes nothing");
}

fn handles_share_contents<D: Disk>(disk: &D) {
    let a = disk.open(p("f"), OpenMode::CreateNew).unwrap();
    let b = disk.open(p("f"), OpenMode::ReadWrite).unwrap();
    a.write_at(b"one", 0).unwrap();
    assert_eq!(read_all(&b), b"one", "a write is visible through another handle at once");
    b.write_at(b"two", 3).unwrap();
    assert_eq!(read_all(&a), b"onetwo");
}

fn directories<D: Disk>(disk: &D) {
    assert_eq!(disk.list_dir(p("")).unwrap(), Vec::<String>::new(), "a fresh disk is empty");
    disk.create_dir(p("b")).unwrap();
    disk.create_dir(p("a")).unwrap();
    expect_kind("create_dir of an existing name", disk.create_dir(p("a")), DiskErrorKind::AlreadyExists);
    expect_kind("create_dir in a missing parent", disk.create_dir(p("x/y")), DiskErrorKind::NotFound);
    disk.open(p("a/z"), OpenMode::CreateNew).unwrap();
    disk.open(p("a/m"), OpenMode::CreateNew).unwrap();
    disk.open(p("c"), OpenMode::CreateNew).unwrap();
    assert_eq!(disk.list_dir(p("")).unwrap(), ["a", "b", "c"], "list_dir is sorted");
    assert_eq!(disk.list_dir(p("a")).unwrap(), ["m", "z"]);
    expect_kind("list_dir of a missing directory", disk.list_dir(p("nope")), DiskErrorKind::NotFound);
    assert_eq!(disk.entry_kind(p("a")).unwrap(), Some(EntryKind::Dir));
    assert_eq!(disk.entry_kind(p("a/m")).unwrap(), Some(EntryKind::File));
    assert_eq!(disk.entry_kind(p("a/q")).unwrap(), None);
    expect_kind("remove_dir of a non-empty directory", disk.remove_dir(p("a")), DiskErrorKind::InvalidInput);
    disk.remove_file(p("a/m")).unwrap();
    disk.remove_file(p("a/z")).unwrap();
    disk.remove_dir(p("a")).unwrap();
    assert_eq!(disk.entry_kind(p("a")).unwrap(), None);
    expect_kind("remove_file of a missing name", disk.remove_file(p("a/m")), DiskErrorKind::NotFound);
    disk.create_dir_all(p("deep/er/est")).unwrap();
    disk.create_dir_all(p("deep/er/est")).unwrap();
    assert_eq!(disk.entry_kind(p("deep/er/est")).unwrap(), Some(EntryKind::Dir));
}

fn rename_replaces_atomically<D: Disk>(disk: &D) {
    let old = disk.open(p("state"), OpenMode::CreateNew).unwrap();
    old.write_at(b"old", 0).unwrap();
    let tmp = disk.open(p("state.tmp"), OpenMode::CreateNew).unwrap();
    tmp.write_at(b"new", 0).unwrap();
    disk.rename(p("state.tmp"), p("state")).unwrap();
    assert_eq!(disk.entry_kind(p("state.tmp")).unwrap(), None, "rename removes the old name");
    let now = disk.open(p("state"), OpenMode::Read).unwrap();
    assert_eq!(read_all(&now), b"new");
    assert_eq!(read_all(&old), b"old", "a handle to the replaced file still reads it");
    expect_kind("rename of a missing file", disk.rename(p("nope"), p("x")), DiskErrorKind::NotFound);
    disk.create_dir(p("d")).unwrap();
    expect_kind("rename across directories", disk.rename(p("state"), p("d/state")), DiskErrorKind::InvalidInput);
}

fn remove_keeps_open_handles_working<D: Disk>(disk: &D) {
    let file = disk.open(p("f"), OpenMode::CreateNew).unwrap();
    file.write_at(b"keep", 0).unwrap();
    disk.remove_file(p("f")).unwrap();
    assert_eq!(disk.entry_kind(p("f")).unwrap(), None);
    assert_eq!(read_all(&file), b"keep");
    file.write_at(b"!", 4).unwrap();
    assert_eq!(read_all(&file), b"keep!");
    let fresh = disk.open(p("f"), OpenMode::CreateNew).unwrap();
    assert_eq!(fresh.len().unwrap(), 0, "a new file under a removed name starts empty");
}

fn rejects_bad_paths<D: Disk>(disk: &D) {
    for bad in ["../escape", "/abs", "a/../../b"] {
        expect_kind("open of a bad path", disk.open(p(bad), OpenMode::Create).map(|_| ()), DiskErrorKind::InvalidInput);
        expect_kind("create_dir of a bad path", disk.create_dir(p(bad)), DiskErrorKind::InvalidInput);
    }
}

fn syncs_succeed<D: Disk>(disk: &D) {
    disk.create_dir(p("d")).unwrap();
    let file = disk.open(p("d/f"), OpenMode::CreateNew).unwrap();
    file.write_at(b"x", 0).unwrap();
    file.sync_data().unwrap();
    file.sync_data().unwrap();
    disk.sync_dir(p("d")).unwrap();
    disk.sync_dir(p("")).unwrap();
    expect_kind("sync_dir of a missing directory", disk.sync_dir(p("nope")), DiskErrorKind::NotFound);
}

fn unaligned_large_writes<D: Disk>(disk: &D) {
    let file = disk.open(p("f"), OpenMode::CreateNew).unwrap();
    let mut model = Vec::new();
    // A deterministic pattern of overlapping, unaligned writes crossing sector boundaries.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let offset = (x % 9000) as usize;
        let len = ((x >> 20) % 1500) as usize + 1;
        let byte = (x >> 40) as u8;
        let data = vec![byte; len];
        file.write_at(&data, offset as u64).unwrap();
        if model.len() < offset + len {
            model.resize(offset + len, 0);
        }
        model[offset..offset + len].copy_from_slice(&data);
    }
    assert_eq!(read_all(&file), model, "overlapping unaligned writes read back as written");
}

fn synced_data_and_names_survive<D: Disk>(disk: D, crash: &dyn Fn(&D) -> D) {
    disk.create_dir(p("d")).unwrap();
    disk.sync_dir(p("")).unwrap();
    let file = disk.open(p("d/f"), OpenMode::CreateNew).unwrap();
    file.write_at(b"durable", 0).unwrap();
    file.sync_data().unwrap();
    disk.sync_dir(p("d")).unwrap();
    let after = crash(&disk);
    let file = after.open(p("d/f"), OpenMode::Read).expect("a synced name survives a crash");
    assert_eq!(read_all(&file), b"durable", "synced data survives a crash");
}

fn unsynced_name_vanishes<D: Disk>(disk: D, crash: &dyn Fn(&D) -> D) {
    let file = disk.open(p("f"), OpenMode::CreateNew).unwrap();
    file.write_at(b"data", 0).unwrap();
    file.sync_data().unwrap();
    let after = crash(&disk);
    assert_eq!(after.entry_kind(p("f")).unwrap(), None, "a name never dir-synced is lost by a crash");
}

fn unsynced_write_is_lost<D: Disk>(disk: D, crash: &dyn Fn(&D) -> D) {
    let file = disk.open(p("f"), OpenMode::CreateNew).unwrap();
    disk.sync_dir(p("")).unwrap();
    file.write_at(b"synced", 0).unwrap();
    file.sync_data().unwrap();
    file.write_at(b"-lost", 6).unwrap();
    let after = crash(&disk);
    let file = after.open(p("f"), OpenMode::Read).unwrap();
    assert_eq!(read_all(&file), b"synced", "an unsynced write is lost by a crash that drops the page cache");
}

fn rename_is_durable_after_sync_dir<D: Disk>(disk: D, crash: &dyn Fn(&D) -> D) {
    let state = disk.open(p("state"), OpenMode::CreateNew).unwrap();
    state.write_at(b"v1", 0).unwrap();
    state.sync_data().unwrap();
    disk.sync_dir(p("")).unwrap();
    let tmp = disk.open(p("state.tmp"), OpenMode::CreateNew).unwrap();
    tmp.write_at(b"v2", 0).unwrap();
    tmp.sync_data().unwrap();
    disk.rename(p("state.tmp"), p("state")).unwrap();
    let before_dir_sync = crash(&disk);
    let seen = read_all(&before_dir_sync.open(p("state"), OpenMode::Read).unwrap());
    assert_eq!(seen, b"v1", "a rename not yet dir-synced is undone by a crash that loses everything unsynced");
    let tmp = before_dir_sync.open(p("state.tmp"), OpenMode::CreateNew).unwrap();
    tmp.write_at(b"v2", 0).unwrap();
    tmp.sync_data().unwrap();
    before_dir_sync.rename(p("state.tmp"), p("state")).unwrap();
    before_dir_sync.sync_dir(p("")).unwrap();
    let after = crash(&before_dir_sync);
    assert_eq!(read_all(&after.open(p("state"), OpenMode::Read).unwrap()), b"v2");
    assert_eq!(after.entry_kind(p("state.tmp")).unwrap(), None);
}
