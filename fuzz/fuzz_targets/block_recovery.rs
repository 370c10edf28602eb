//! Store recovery over arbitrary block files: the input becomes one or two block files of a
//! stream directory on faultfs (split where its first byte says), then the directory is
//! verified and opened the way a node opens a stream at start-up. Recovery must return a
//! store or an error, never panic, and a store it returns must hold its invariants and read
//! back without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::disk::{Disk, DiskFile, OpenMode};
use sluice_core::store::{FileStore, StoreConfig};
use sluice_faultfs::FaultFs;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let disk = FaultFs::new(0);
    let dir = Path::new("stream");
    disk.create_dir_all(dir).expect("memory");
    let at = rest.len() * usize::from(split) / 255;
    for (name, bytes) in [("0000000001.blk", &rest[..at]), ("0000000002.blk", &rest[at..])] {
        if bytes.is_empty() {
            continue;
        }
        let f = disk.open(&dir.join(name), OpenMode::CreateNew).expect("memory");
        f.write_at(bytes, 0).expect("memory");
        f.sync_data().expect("memory");
    }
    disk.sync_dir(dir).expect("memory");
    let _ = FileStore::verify(&disk, dir);
    if let Ok((store, _report)) = FileStore::open(disk.clone(), dir, StoreConfig::default()) {
        store.check_invariants();
        let s = store.state();
        let _ = store.get_range(s.first_seq, 64, 1 << 20);
        let _ = store.get(s.last_seq);
    }
});
