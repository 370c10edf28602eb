//! Backup and restore throughput (issue 6) next to minlz's raw compress and decompress speed
//! on the same bytes, measured in the same run.
//!
//! ```sh
//! cargo build --release -p sluice-server --bins
//! target/release/sluice-backup-bench [--dir target/backup-bench] [--bytes 1073741824] [--size 1024]
//! ```
//!
//! 1. Starts one `sluice server` (the `sluice` binary next to this one; `--sync always`) with
//!    its data in `--dir`, creates an R1 stream and publishes `--size`-byte messages until
//!    `--bytes` of payload are stored (pipelined, 500 in flight). The payloads are
//!    JSON-like text with varying fields: compressible, but not trivially.
//! 2. `sluice backup` of the stream (the library call the command makes), timed.
//! 3. The codec alone, in memory, on exactly the bytes the archive holds: its S2 stream
//!    decompressed by minlz (1 MiB reads into one reused buffer), and its tar stream
//!    compressed by minlz into a sink (1 MiB writes), each timed.
//! 4. The stream deleted, and `sluice restore` of the archive, timed. This includes the
//!    restore's first pass, which reads and checks the whole archive before anything is
//!    created (docs/archive.md).
//!
//! Rates are MB/s (10^6 bytes) of the archive's uncompressed size, so the four compare like
//! with like; the report also gives the payload bytes. Prints a markdown table.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // a benchmark: real clock, real files

use sluice_server::backup;
use sluice_server::client::Client;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STREAM: &str = "BACKUPBENCH";
const SUBJECT: &str = "backupbench.orders";
const CLIENT: &str = "127.0.0.1:45322";
const CLUSTER: &str = "127.0.0.1:47322";
const IN_FLIGHT: usize = 500;

struct Args {
    dir: PathBuf,
    bytes: u64,
    size: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args { dir: "target/backup-bench".into(), bytes: 1 << 30, size: 1024 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--dir" => a.dir = value.into(),
            "--bytes" => a.bytes = num(&value)?,
            "--size" => a.size = num(&value)? as usize,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.size < 64 || a.size > 512 * 1024 {
        return Err("--size must be 64..=524288".into());
    }
    Ok(a)
}

/// Stops the server when the benchmark ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &std::path::Path) -> Result<Server, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let sluice = exe.with_file_name("sluice");
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let child = Command::new(&sluice)
        .args(["server", "--name", "n1", "--client", CLIENT, "--cluster", CLUSTER, "--sync", "always"])
        .arg("--data")
        .arg(dir.join("n1"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("start {}: {e}", sluice.display()))?;
    let server = Server(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(CLIENT).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            return Err("the server did not start in 30 s (see server.log)".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

/// A payload of `size` bytes: JSON-like text whose fields vary with `i`.
fn payload(i: u64, size: usize, words: &[&str]) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = format!("{{\"order\":{i},\"customer\":\"c{}\",\"note\":\"", x % 10_007).into_bytes();
    while out.len() < size - 2 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
        out.push(b' ');
        if x % 7 == 0 {
            out.extend_from_slice(format!("{:x} ", x >> 40).as_bytes());
        }
    }
    out.truncate(size - 2);
    out.extend_from_slice(b"\"}");
    out
}

async fn fill(a: &Args) -> Result<u64, String> {
    let mut c = Client::open(CLIENT, "sluice-backup-bench", "_INBOX.bb").await?;
    let cfg = serde_json::json!({ "name": STREAM, "subjects": [SUBJECT], "num_replicas": 1, "storage": "file" });
    let mut created = false;
    for attempt in 0..300 {
        match c.request(&format!("$JS.API.STREAM.CREATE.{STREAM}"), cfg.to_string().as_bytes(), attempt).await {
            Ok(v) if v.get("error").is_none() => {
                created = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    if !created {
        return Err("could not create the stream".into());
    }
    let words = ["widget", "gadget", "express", "standard", "paid", "shipped", "returned", "eu-west", "us-east"];
    let (mut stored, mut i) = (0u64, 0u64);
    let mut out = Vec::new();
    while stored < a.bytes {
        out.clear();
        for k in 0..IN_FLIGHT {
            let p = payload(i + k as u64, a.size, &words);
            out.extend_from_slice(format!("PUB {SUBJECT} _INBOX.bb.p{k} {}\r\n", p.len()).as_bytes());
            out.extend_from_slice(&p);
            out.extend_from_slice(b"\r\n");
        }
        c.send(&out).await?;
        let mut acked = 0;
        while acked < IN_FLIGHT {
            let (subject, body, _) = tokio::time::timeout(Duration::from_secs(30), c.next_msg())
                .await
                .map_err(|_| "no ack in 30 s".to_string())??;
            if !subject.starts_with("_INBOX.bb.p") {
                continue;
            }
            if body.windows(7).any(|w| w == b"\"error\"") {
                return Err(format!("a publish was refused: {}", String::from_utf8_lossy(&body)));
            }
            acked += 1;
        }
        i += IN_FLIGHT as u64;
        stored += (IN_FLIGHT * a.size) as u64;
    }
    Ok(i)
}

async fn delete_stream() -> Result<(), String> {
    let mut c = Client::open(CLIENT, "sluice-backup-bench", "_INBOX.bb").await?;
    let v = c.request(&format!("$JS.API.STREAM.DELETE.{STREAM}"), b"", 1).await?;
    match v.get("error") {
        None => Ok(()),
        Some(e) => Err(format!("delete: {e}")),
    }
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn run(a: &Args) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(&a.dir);
    std::fs::create_dir_all(&a.dir).map_err(|e| e.to_string())?;
    let _server = start_server(&a.dir)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let t = Instant::now();
    let msgs = rt.block_on(fill(a))?;
    eprintln!("published {msgs} messages of {} bytes in {:.1} s", a.size, t.elapsed().as_secs_f64());

    let archive = a.dir.join("stream.archive");
    let b = backup::backup(CLIENT, STREAM, &archive)?;

    // The codec alone on the same bytes, all in memory: the archive file's S2 stream
    // decompressed (1 MiB reads into one reused buffer), and its tar stream (decompressed
    // once, untimed) compressed into a sink in 1 MiB writes. No file, no allocation growth.
    let compressed = std::fs::read(&archive).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 20];
    let t = Instant::now();
    let mut reader = minlz::Reader::new(&compressed[..]);
    let mut raw = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        raw += n as u64;
    }
    let decompress = t.elapsed();
    let mut tar = Vec::with_capacity(raw as usize);
    minlz::Reader::new(&compressed[..]).read_to_end(&mut tar).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let mut w = minlz::Writer::new(std::io::sink());
    for piece in tar.chunks(1 << 20) {
        w.write_all(piece).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())?;
    drop(w);
    let compress = t.elapsed();
    drop(tar);

    rt.block_on(delete_stream())?;
    let r = backup::restore(CLIENT, &archive, None, None)?;
    if r.stored != msgs {
        return Err(format!("restored {} messages of {msgs}", r.stored));
    }

    println!(
        "{} messages of {} B: {:.0} MB of payload, archive {:.0} MB uncompressed, {:.0} MB on disk",
        msgs,
        a.size,
        b.content_bytes as f64 / 1e6,
        raw as f64 / 1e6,
        b.archive_bytes as f64 / 1e6
    );
    println!();
    println!("| operation | seconds | MB/s (uncompressed archive bytes) | vs the codec alone |");
    println!("|---|---|---|---|");
    let (bk, rs) = (mb_s(raw, b.elapsed), mb_s(raw, r.elapsed));
    let (cz, dz) = (mb_s(raw, compress), mb_s(raw, decompress));
    println!("| minlz compress (raw) | {:.2} | {cz:.0} | 1.00× |", compress.as_secs_f64());
    println!("| sluice backup | {:.2} | {bk:.0} | {:.2}× of compress |", b.elapsed.as_secs_f64(), bk / cz);
    println!("| minlz decompress (raw) | {:.2} | {dz:.0} | 1.00× |", decompress.as_secs_f64());
    println!("| sluice restore | {:.2} | {rs:.0} | {:.2}× of decompress |", r.elapsed.as_secs_f64(), rs / dz);
    Ok(())
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sluice-backup-bench: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&a) {
        eprintln!("sluice-backup-bench: {e}");
        std::process::exit(1);
    }
}
