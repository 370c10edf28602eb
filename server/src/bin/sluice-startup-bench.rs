//! Startup benchmark (issue 7): how long a node takes to restore many streams, with one
//! restore worker and with the default (the cores), next to the disk's raw sequential read
//! rate over the same block files, measured in the same run.
//!
//! ```sh
//! cargo run --release -p sluice-server --bin sluice-startup-bench -- \
//!     [--dir target/startup-bench] [--streams 8] [--messages 1000000] [--size 128] [--rounds 3]
//! ```
//!
//! 1. Builds the data once (kept in `--dir`, reused while the parameters match): a one-node
//!    cluster on the production disk, `--streams` R1 streams, `--messages` publishes of
//!    `--size` bytes each through core's `Node` in batches of 1,000, a forced snapshot per
//!    stream at the end (so the Raft logs are compacted and recovery is the store scan).
//! 2. Measures, `--rounds` times each, alternating, with the page cache dropped before each
//!    if the kernel lets us (`/proc/sys/vm/drop_caches`; the report says whether it could):
//!    opening the node (the server's start-up path, `startup::open_node`) with 1 worker and
//!    with the default, first with every store's state file (`state.db`) removed (recovery
//!    then verifies every record and, knowing nothing durable, rewrites and fsyncs it all:
//!    docs/store.md, recovery step 6), then with the state files the previous open wrote
//!    (every record is still verified: the state file is never trusted in place of the
//!    blocks); and a raw read of every block file, sequentially with a 1 MiB buffer. Prints
//!    a markdown table of the medians.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // a benchmark: real clock, real files

use bytes::Bytes;
use sluice_core::env::Clock;
use sluice_core::node::{Node, NodeConfig, Reply, SnapshotPolicy};
use sluice_core::os::{OsClock, OsDisk};
use sluice_core::store::SyncPolicy;
use sluice_core::stream::{Publish, StreamConfig};
use sluice_server::startup;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BATCH: u64 = 1_000;

struct Args {
    dir: PathBuf,
    streams: u64,
    messages: u64,
    size: usize,
    rounds: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args { dir: "target/startup-bench".into(), streams: 8, messages: 1_000_000, size: 128, rounds: 3 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--dir" => a.dir = value.into(),
            "--streams" => a.streams = num(&value)?,
            "--messages" => a.messages = num(&value)?,
            "--size" => a.size = num(&value)? as usize,
            "--rounds" => a.rounds = num(&value)? as usize,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.streams == 0 || a.messages == 0 || a.rounds == 0 || a.size > 1024 * 1024 {
        return Err("streams, messages and rounds must be above zero; size at most 1 MiB".into());
    }
    Ok(a)
}

fn node_config() -> NodeConfig {
    let mut cfg = NodeConfig::new(1, [1], "node");
    // Snapshots only when asked: the data set ends with one per stream.
    cfg.snapshot = SnapshotPolicy {
        entries: u64::MAX,
        bytes: u64::MAX,
        interval: Duration::from_secs(24 * 3600),
        jitter: Duration::ZERO,
    };
    cfg
}

/// Steps the node until `done` holds (timers need real time to pass for elections).
fn pump(node: &mut Node<OsDisk>, clock: &OsClock, what: &str, mut done: impl FnMut(&mut Node<OsDisk>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(node) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        node.tick(clock.now(), clock.wall_ns() as i64);
        while node.run_work(clock.now()) {}
        while node.poll_send().is_some() {}
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn build(args: &Args, disk: &OsDisk, clock: &OsClock) {
    let mut node = Node::open(disk.clone(), node_config(), clock.now()).expect("open a fresh node");
    pump(&mut node, clock, "a meta leader", |n| n.meta_leader() == Some(1));
    let payload = Bytes::from(vec![b'x'; args.size]);
    for s in 0..args.streams {
        let name = format!("S{s}");
        let mut config = StreamConfig::new(&name, [format!("s{s}.>")]);
        config.store.sync = SyncPolicy::OnSnapshot; // as `sluice server --sync always` makes them
        let request = node.create_stream(clock.now(), config, 1).expect("create");
        pump(&mut node, clock, "the create", |n| {
            std::iter::from_fn(|| n.poll_reply())
                .any(|(r, reply)| r == request && matches!(reply, Reply::StreamCreated { .. }))
        });
        pump(&mut node, clock, "the stream's leader", |n| n.stream_info(&name).is_ok_and(|i| i.leader == Some(1)));
        let subject = Bytes::from(format!("s{s}.x"));
        let mut sent = 0;
        while sent < args.messages {
            let n = BATCH.min(args.messages - sent);
            node.begin_batch();
            for _ in 0..n {
                let publish = Publish {
                    timestamp_ns: 0,
                    msg_id: Bytes::new(),
                    subject: subject.clone(),
                    headers: Bytes::new(),
                    payload: payload.clone(),
                    expected_last_seq: None,
                };
                node.publish(clock.now(), clock.wall_ns() as i64, &name, publish).expect("publish");
            }
            node.end_batch(clock.now());
            node.write_batch(clock.now());
            let mut acked = 0u64;
            pump(&mut node, clock, "acks", |node| {
                while let Some((_, reply)) = node.poll_reply() {
                    assert!(matches!(reply, Reply::Published { .. }), "publish refused: {reply:?}");
                    acked += 1;
                }
                acked == n
            });
            sent += n;
        }
        node.force_snapshot(clock.now(), &name).expect("snapshot");
        while node.run_work(clock.now()) {}
        eprintln!("built stream {name}: {} messages", args.messages);
    }
    let failed = node.sync_all();
    assert!(failed.is_empty(), "sync failed: {failed:?}");
}

/// Every block file of every store, with its size.
fn block_files(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    let streams = root.join("node").join("streams");
    for group in std::fs::read_dir(&streams).expect("streams dir").flatten() {
        let store = group.path().join("store");
        let Ok(entries) = std::fs::read_dir(&store) else { continue };
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "blk") {
                files.push((e.path(), e.metadata().expect("stat").len()));
            }
        }
    }
    files.sort();
    files
}

fn remove_state_files(root: &Path) {
    let streams = root.join("node").join("streams");
    for group in std::fs::read_dir(&streams).expect("streams dir").flatten() {
        let _ = std::fs::remove_file(group.path().join("store").join("state.db"));
    }
}

/// Drops the page cache; `false` if the kernel refused (not root, or a container).
fn drop_caches() -> bool {
    flush_dirty_pages();
    std::fs::write("/proc/sys/vm/drop_caches", b"3\n").is_ok()
}

/// `sync(1)`: dirty pages out first, so dropping the cache drops them all.
fn flush_dirty_pages() {
    let _ = std::process::Command::new("sync").status();
}

fn raw_read(files: &[(PathBuf, u64)]) -> Duration {
    let mut buf = vec![0u8; 1024 * 1024];
    let start = Instant::now();
    for (path, _) in files {
        let mut f = std::fs::File::open(path).expect("open block");
        while f.read(&mut buf).expect("read block") > 0 {}
    }
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    sluice_server::logging::init(); // RUST_LOG=info shows core's per-stream restore lines
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sluice-startup-bench: {e}");
            std::process::exit(2);
        }
    };
    let marker = args.dir.join("built-with");
    let params = format!("streams={} messages={} size={}\n", args.streams, args.messages, args.size);
    std::fs::create_dir_all(&args.dir).expect("create --dir");
    let disk = OsDisk::new(&args.dir).expect("disk");
    let clock = OsClock::new();
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(params.as_str()) {
        let _ = std::fs::remove_dir_all(args.dir.join("node"));
        let _ = std::fs::remove_file(&marker);
        let start = Instant::now();
        build(&args, &disk, &clock);
        std::fs::write(&marker, &params).expect("marker");
        eprintln!("data built in {:.1} s", start.elapsed().as_secs_f64());
    }
    let files = block_files(&args.dir);
    let total_bytes: u64 = files.iter().map(|(_, len)| len).sum();
    let default_workers = startup::default_workers();
    // (state files removed?, workers) → times.
    let cases = [(true, 1), (true, default_workers), (false, 1), (false, default_workers)];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    let mut raw = Vec::new();
    let mut cold = true;
    for _ in 0..args.rounds {
        for (k, (remove_state, workers)) in cases.iter().enumerate() {
            if *remove_state {
                remove_state_files(&args.dir);
            }
            cold &= drop_caches();
            let start = Instant::now();
            let node = startup::open_node(disk.clone(), node_config(), &clock, *workers).expect("open");
            let took = start.elapsed();
            let restored: u64 =
                (0..args.streams).map(|s| node.stream_info(&format!("S{s}")).map_or(0, |i| i.stream.state.msgs)).sum();
            assert_eq!(restored, args.streams * args.messages, "every message restored");
            drop(node);
            times[k].push(took);
        }
        cold &= drop_caches();
        raw.push(raw_read(&files));
    }
    let raw = median(raw);
    let mb = total_bytes as f64 / 1e6;
    let rate = |d: Duration| mb / d.as_secs_f64();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "Command: `cargo run --release -p sluice-server --bin sluice-startup-bench -- --streams {} --messages {} --size {} --rounds {}`",
        args.streams, args.messages, args.size, args.rounds
    );
    let cache = if cold { "dropped" } else { "NOT dropped (no permission): every figure is from a warm cache" };
    println!("Machine: {default_workers} cores; sluice at {commit}; page cache {cache} before every measurement.");
    println!(
        "Data: {} streams × {} messages of {} B; {} block files, {:.0} MB. Medians of {} rounds.",
        args.streams,
        args.messages,
        args.size,
        files.len(),
        mb,
        args.rounds
    );
    println!();
    println!("| measurement | time | MB/s of block files |");
    println!("|---|---|---|");
    let mut medians = Vec::new();
    for ((remove_state, workers), t) in cases.iter().zip(times) {
        let t = median(t);
        medians.push(t);
        let state = if *remove_state {
            "state files removed (verify, rewrite and fsync every record)"
        } else {
            "state files kept (verify every record)"
        };
        let who =
            if *workers == 1 { "1 restore worker".to_string() } else { format!("{workers} restore workers (default)") };
        println!("| node start-up, {state}, {who} | {:.3} s | {:.0} |", t.as_secs_f64(), rate(t));
    }
    println!(
        "| raw sequential read of the same files (1 MiB reads, one thread) | {:.3} s | {:.0} |",
        raw.as_secs_f64(),
        rate(raw)
    );
    println!();
    for (i, what) in [(0, "state files removed"), (2, "state files kept")] {
        let (one, many) = (medians[i], medians[i + 1]);
        println!(
            "* {what}: {:.2}× faster with {default_workers} workers than with 1; start-up scan rate / raw read rate: {:.2}.",
            one.as_secs_f64() / many.as_secs_f64(),
            rate(many) / rate(raw)
        );
    }
}
