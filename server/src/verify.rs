//! `sluice verify DIR`: scan a stream store directory the way recovery would and report
//! what it finds, changing nothing. Exit 0 clean, 1 recovery would cut, 2 unreadable.

use sluice_core::os::OsDisk;
use sluice_core::store::FileStore;
use std::path::Path;
use std::process::ExitCode;

pub fn verify(dir: &Path) -> ExitCode {
    let (root, name) = match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => (if parent.as_os_str().is_empty() { Path::new(".") } else { parent }, name),
        _ => {
            eprintln!("sluice verify: {} is not a directory path", dir.display());
            return ExitCode::from(2);
        }
    };
    let disk = match OsDisk::new(root) {
        Ok(disk) => disk,
        Err(e) => {
            eprintln!("sluice verify: {e}");
            return ExitCode::from(2);
        }
    };
    match FileStore::verify(&disk, Path::new(name)) {
        Ok((state, report)) => {
            println!(
                "stream: first_seq={} last_seq={} msgs={} bytes={} deleted={}",
                state.first_seq, state.last_seq, state.msgs, state.bytes, state.num_deleted
            );
            println!(
                "scanned: {} blocks, {} records, {} bytes, {} transient checksum mismatches",
                report.blocks_scanned, report.records_scanned, report.bytes_scanned, report.transient_mismatches
            );
            println!("state file: {:?}", report.state_file);
            for name in &report.ignored_files {
                println!("ignored: {name}");
            }
            match &report.cut {
                None => {
                    println!("result: clean");
                    ExitCode::SUCCESS
                }
                Some(cut) => {
                    println!("cut: {cut}");
                    for path in &report.dropped_blocks {
                        println!("would drop: {}", path.display());
                    }
                    for (first, last) in &report.lost {
                        println!("lost: sequences {first}..={last}");
                    }
                    println!("result: recovery would cut");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!("sluice verify: {e}");
            ExitCode::from(2)
        }
    }
}
