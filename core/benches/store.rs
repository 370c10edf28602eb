//! File store benchmark on the production disk: append throughput per sync policy and
//! recovery rate (with and without the state file), each printed next to the machine's raw
//! limits measured in the same run (sequential write MB/s, fdatasync latency, sequential read
//! MB/s).
//!
//! `cargo bench -p sluice-core --bench store` runs the full benchmark (about 3 GiB of disk
//! under target/bench-store, or SLUICE_BENCH_DIR); without `--bench` (as `cargo test
//! --all-targets` runs it) it does a tiny smoke run to prove it works. Results and the
//! command are recorded in docs/benchmarks.md.
#![allow(unsafe_code, clippy::disallowed_methods, clippy::disallowed_types)]

use sluice_core::env::Clock;
use sluice_core::os::{OsClock, OsDisk};
use sluice_core::store::{FileStore, Limits, NewMessage, StoreConfig, SyncPolicy};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Sizes {
    raw_file_bytes: u64,
    fsync_samples: usize,
    always_msgs: u64,
    buffered_bytes: u64,
    scan_store_bytes: u64,
}

const FULL: Sizes = Sizes {
    raw_file_bytes: 1 << 30,
    fsync_samples: 2000,
    always_msgs: 3000,
    buffered_bytes: 1 << 30,
    scan_store_bytes: 1 << 30,
};

const SMOKE: Sizes = Sizes {
    raw_file_bytes: 4 << 20,
    fsync_samples: 20,
    always_msgs: 20,
    buffered_bytes: 1 << 20,
    scan_store_bytes: 2 << 20,
};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { FULL } else { SMOKE };
    let root = std::env::var_os("SLUICE_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join(if full {
            "bench-store"
        } else {
            "bench-smoke"
        })
    });
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    println!("# sluice store benchmark ({})\n", if full { "full" } else { "smoke" });
    println!("data dir: {}\n", root.display());

    let raw = raw_limits(&root, &sizes);
    println!("## Raw disk, measured in this run\n");
    println!("| measure | value |\n|---|---|");
    println!(
        "| sequential write of {} MiB, 1 MiB writes + one fdatasync | {:.0} MB/s |",
        sizes.raw_file_bytes >> 20,
        raw.write_mb_s
    );
    for (size, (p50, p99, mean)) in [(128, raw.fsync_128), (4096, raw.fsync_4k)] {
        println!("| {size} B append + fdatasync, p50 / p99 / mean | {p50:.0} / {p99:.0} / {mean:.0} µs |");
    }
    println!("| sequential read, cold (page cache evicted) | {:.0} MB/s |", raw.cold_read_mb_s);
    println!("| sequential read, warm (page cache) | {:.0} MB/s |\n", raw.warm_read_mb_s);

    println!("## Appends\n");
    println!("| payload | sync policy | messages | msg/s | MB/s (payload) | vs raw |");
    println!("|---|---|---|---|---|---|");
    for payload in [128usize, 4096] {
        let always = append_bench(&root, payload, SyncPolicy::Always, sizes.always_msgs);
        let raw_mean_us = if payload == 128 { raw.fsync_128.2 } else { raw.fsync_4k.2 };
        println!(
            "| {payload} B | always | {} | {:.0} | {:.1} | {:.2}× raw append+fdatasync rate ({:.0}/s) |",
            always.msgs,
            always.msgs_per_s,
            always.mb_per_s,
            always.msgs_per_s * raw_mean_us / 1e6,
            1e6 / raw_mean_us
        );
        let msgs = sizes.buffered_bytes / payload as u64;
        for (name, policy) in [
            ("on-snapshot (one sync at the end)", SyncPolicy::OnSnapshot),
            ("interval 100 ms", SyncPolicy::Interval { interval: Duration::from_millis(100) }),
        ] {
            let r = append_bench(&root, payload, policy, msgs);
            println!(
                "| {payload} B | {name} | {} | {:.0} | {:.1} | {:.2}× raw sequential write (store MB/s incl. framing {:.0}) |",
                r.msgs,
                r.msgs_per_s,
                r.mb_per_s,
                r.store_mb_per_s / raw.write_mb_s,
                r.store_mb_per_s
            );
        }
    }

    println!("\n## Recovery\n");
    println!("`open` of a 1 GiB store. With the state file present every record is still read and verified,");
    println!("and nothing is rewritten (the durable mark is at the end). With it removed nothing is known");
    println!("durable, so recovery also writes every verified record back and syncs it. Each is compared with");
    println!("a plain sequential read of the same block files measured just before it.\n");
    println!("| payload | store size | records | state present, cold | MB/s | vs raw cold read | state present, warm | MB/s | vs raw warm read | state removed (scan + rewrite + sync) | MB/s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for payload in [4096usize, 128] {
        let s = scan_bench(&root, payload, sizes.scan_store_bytes);
        let mb = s.bytes as f64 / 1e6;
        println!(
            "| {payload} B | {:.0} MiB | {} | {:.2} s | {:.0} | {:.2}× ({:.0} MB/s) | {:.2} s | {:.0} | {:.2}× ({:.0} MB/s) | {:.2} s | {:.0} |",
            s.bytes as f64 / (1 << 20) as f64,
            s.records,
            s.cold_s,
            mb / s.cold_s,
            mb / s.cold_s / s.raw_cold_mb_s,
            s.raw_cold_mb_s,
            s.warm_s,
            mb / s.warm_s,
            mb / s.warm_s / s.raw_warm_mb_s,
            s.raw_warm_mb_s,
            s.no_state_s,
            mb / s.no_state_s,
        );
    }
    let _ = fs::remove_dir_all(&root);
}

/// Drops a file's cached pages so the next read comes from the device. The file must be
/// synced (dirty pages are not dropped).
fn evict(path: &Path) {
    let file = File::open(path).unwrap();
    // SAFETY: posix_fadvise only reads its integer arguments; the fd is valid for the call.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise failed on {}", path.display());
}

fn evict_dir(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            evict(&path);
        }
    }
}

struct Raw {
    write_mb_s: f64,
    /// (p50, p99, mean) in µs of an append followed by fdatasync, 128 B / 4 KiB appends.
    fsync_128: (f64, f64, f64),
    fsync_4k: (f64, f64, f64),
    cold_read_mb_s: f64,
    warm_read_mb_s: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn raw_limits(root: &Path, sizes: &Sizes) -> Raw {
    let path = root.join("raw.bin");
    let chunk = vec![0xA5u8; 1 << 20];
    let started = Instant::now();
    let mut file = File::create(&path).unwrap();
    let mut written = 0u64;
    while written < sizes.raw_file_bytes {
        file.write_all(&chunk).unwrap();
        written += chunk.len() as u64;
    }
    file.sync_data().unwrap();
    let write_mb_s = written as f64 / 1e6 / started.elapsed().as_secs_f64();

    evict(&path);
    let cold_read_mb_s = read_files(std::slice::from_ref(&path));
    let warm_read_mb_s = read_files(std::slice::from_ref(&path));

    let fsync_latency = |size: usize| {
        let log = root.join("fsync.bin");
        let mut file = OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let block = vec![0x5Au8; size];
        let mut samples = Vec::with_capacity(sizes.fsync_samples);
        for _ in 0..sizes.fsync_samples {
            let started = Instant::now();
            file.write_all(&block).unwrap();
            file.sync_data().unwrap();
            samples.push(started.elapsed().as_secs_f64() * 1e6);
        }
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        samples.sort_by(|a, b| a.total_cmp(b));
        fs::remove_file(&log).unwrap();
        (percentile(&samples, 50.0), percentile(&samples, 99.0), mean)
    };
    let fsync_128 = fsync_latency(128);
    let fsync_4k = fsync_latency(4096);
    fs::remove_file(&path).unwrap();
    Raw { write_mb_s, fsync_128, fsync_4k, cold_read_mb_s, warm_read_mb_s }
}

struct AppendResult {
    msgs: u64,
    msgs_per_s: f64,
    mb_per_s: f64,
    store_mb_per_s: f64,
}

fn config(sync: SyncPolicy, payload: usize) -> StoreConfig {
    let limits = Limits { max_msg_size_bytes: payload as u32 + 1024, ..Limits::default() };
    StoreConfig { block_size_bytes: 8 << 20, sync, limits, ..StoreConfig::default() }
}

fn append_bench(root: &Path, payload: usize, sync: SyncPolicy, msgs: u64) -> AppendResult {
    let disk = OsDisk::new(root).unwrap();
    let dir = Path::new("append");
    let clock = OsClock::new();
    let (mut store, _) = FileStore::open(disk, dir, config(sync, payload)).unwrap();
    let body = vec![7u8; payload];
    let started = Instant::now();
    for i in 0..msgs {
        let msg = NewMessage { subject: b"bench.append", headers: b"", payload: &body, timestamp_ns: i as i64 };
        store.append(&msg).unwrap();
        if matches!(sync, SyncPolicy::Interval { .. }) {
            store.tick(clock.now(), clock.wall_ns() as i64).unwrap();
        }
    }
    store.sync().unwrap();
    let secs = started.elapsed().as_secs_f64();
    let store_bytes = store.state().bytes;
    drop(store);
    fs::remove_dir_all(root.join(dir)).unwrap();
    AppendResult {
        msgs,
        msgs_per_s: msgs as f64 / secs,
        mb_per_s: (msgs * payload as u64) as f64 / 1e6 / secs,
        store_mb_per_s: store_bytes as f64 / 1e6 / secs,
    }
}

struct ScanResult {
    bytes: u64,
    records: u64,
    cold_s: f64,
    warm_s: f64,
    raw_cold_mb_s: f64,
    raw_warm_mb_s: f64,
    /// `open` with the state file removed: scan, rewrite, sync.
    no_state_s: f64,
}

/// Reads every file of `dir` in name order; returns MB/s.
fn read_dir_files(dir: &Path) -> f64 {
    let mut paths: Vec<PathBuf> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    paths.sort();
    read_files(&paths)
}

/// Reads `paths` one after another, sequentially, in 1 MiB reads; returns MB/s.
fn read_files(paths: &[PathBuf]) -> f64 {
    let started = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    for path in paths {
        let mut file = File::open(path).unwrap();
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    total as f64 / 1e6 / started.elapsed().as_secs_f64()
}

fn scan_bench(root: &Path, payload: usize, store_bytes: u64) -> ScanResult {
    let disk = OsDisk::new(root).unwrap();
    let dir = Path::new("scan");
    let (mut store, _) = FileStore::open(disk.clone(), dir, config(SyncPolicy::OnSnapshot, payload)).unwrap();
    let body = vec![3u8; payload];
    let mut i = 0i64;
    while store.state().bytes < store_bytes {
        store.append(&NewMessage { subject: b"bench.scan", headers: b"", payload: &body, timestamp_ns: i }).unwrap();
        i += 1;
    }
    store.close().unwrap();
    let state_path = root.join(dir).join("state.db");
    let open = |remove_state: bool| {
        if remove_state {
            fs::remove_file(&state_path).unwrap();
        }
        let started = Instant::now();
        let (store, report) = FileStore::open(disk.clone(), dir, config(SyncPolicy::OnSnapshot, payload)).unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert!(report.cut.is_none(), "a clean store must not be cut");
        let records = report.records_scanned;
        let bytes = report.bytes_scanned;
        store.close().unwrap();
        (secs, records, bytes)
    };
    evict_dir(&root.join(dir));
    let raw_cold_mb_s = read_dir_files(&root.join(dir));
    let raw_warm_mb_s = read_dir_files(&root.join(dir));
    evict_dir(&root.join(dir));
    let (cold_s, records, bytes) = open(false);
    let (warm_s, _, _) = open(false);
    let (no_state_s, _, _) = open(true);
    fs::remove_dir_all(root.join(dir)).unwrap();
    ScanResult { bytes, records, cold_s, warm_s, raw_cold_mb_s, raw_warm_mb_s, no_state_s }
}
