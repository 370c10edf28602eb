//! The `sluice verify` command on real directories: exit codes and what it prints.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use sluice_core::os::OsDisk;
use sluice_core::store::{FileStore, NewMessage, StoreConfig};
use std::path::{Path, PathBuf};
use std::process::Command;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn verify(dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice")).arg("verify").arg(dir).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn verify_reports_clean_cut_and_unreadable_stores() {
    let root = temp_dir("verify");
    let config = StoreConfig { block_size_bytes: 200, ..StoreConfig::default() };
    let (mut store, _) = FileStore::open(OsDisk::new(&root).unwrap(), Path::new("stream"), config).unwrap();
    for i in 0..10u8 {
        store.append(&NewMessage { subject: b"s", headers: b"", payload: &[i; 50], timestamp_ns: 0 }).unwrap();
    }
    store.close().unwrap();

    let (code, out, _) = verify(&root.join("stream"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("first_seq=1 last_seq=10 msgs=10"), "{out}");
    assert!(out.trim_end().ends_with("result: clean"), "{out}");

    let block = root.join("stream/0000000002.blk");
    let mut bytes = std::fs::read(&block).unwrap();
    bytes[60] ^= 0x08;
    std::fs::write(&block, bytes).unwrap();
    let before = snapshot(&root.join("stream"));
    let (code, out, _) = verify(&root.join("stream"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cut: stream/0000000002.blk at offset 32"), "{out}");
    assert!(out.contains("lost: sequences"), "{out}");
    assert!(out.trim_end().ends_with("result: recovery would cut"), "{out}");
    assert_eq!(snapshot(&root.join("stream")), before, "verify changes nothing, not even the cut it reports");

    let (code, _, err) = verify(&root.join("missing"));
    assert_eq!(code, 2);
    assert!(err.contains("missing"), "{err}");
    std::fs::remove_dir_all(root).unwrap();
}

/// Every file in `dir` with its bytes, sorted by name.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}
