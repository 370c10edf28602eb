//! The backup archive reader on arbitrary input. Input whose first byte is odd is the rest
//! taken as a tar stream and S2-compressed here first, so mutations reach the tar and record
//! layers instead of stopping at S2's checksums. The reader must return (Ok or Err), never
//! panic, and never allocate beyond its bounds (libFuzzer's -malloc_limit_mb, set by
//! scripts/fuzz, turns an oversized allocation into a crash).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::archive::{ArchiveItem, ArchiveReader};
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let compressed;
    let input = match data.split_first() {
        Some((mode, tar)) if mode & 1 == 1 => {
            let mut out = Vec::new();
            let mut w = minlz::Writer::new(&mut out);
            w.write_all(tar).expect("memory");
            w.flush().expect("memory");
            drop(w);
            compressed = out;
            &compressed[..]
        }
        _ => data,
    };
    let mut last_seq = 0u64;
    let _ = ArchiveReader::read(input, |item| {
        if let ArchiveItem::Message(m) = item {
            // The reader's own promise: sequences handed out increase strictly.
            assert!(m.seq > last_seq, "sequence {} after {last_seq}", m.seq);
            last_seq = m.seq;
        }
        Ok(())
    });
});
