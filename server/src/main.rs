//! The `sluice` binary: the server, offline inspection of a store directory, and the
//! publish benchmark.

use clap::{Parser, Subcommand};
use sluice_server::config::{self, FileConfig, SnapshotMode, SyncMode};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "sluice", version, about = "sluice: a replicated, append-only message stream store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node. Flags override the keys of the same name in --config.
    Server {
        /// A TOML file with any of the keys below (name, data, client, cluster, peers, sync,
        /// sync_interval_ms, snapshot_mode, snapshot_entries, restore_workers).
        #[arg(long)]
        config: Option<PathBuf>,
        /// This node's name; node ids follow from the sorted names of all nodes.
        #[arg(long)]
        name: Option<String>,
        /// The data directory (created if missing).
        #[arg(long)]
        data: Option<PathBuf>,
        /// The NATS client port [default: 127.0.0.1:4222].
        #[arg(long)]
        client: Option<String>,
        /// The address other nodes connect to [default: 127.0.0.1:6222].
        #[arg(long)]
        cluster: Option<String>,
        /// The other nodes: NAME=HOST:PORT, comma-separated or repeated.
        #[arg(long, num_args = 1..)]
        peers: Vec<String>,
        /// When appends reach stable storage (docs/server.md, "Durability modes").
        #[arg(long, value_enum)]
        sync: Option<SyncMode>,
        /// With --sync interval: how often every log and store is synced [default: 120000].
        #[arg(long)]
        sync_interval_ms: Option<u64>,
        /// Where snapshot I/O runs: on the node thread, or beside it [default: background].
        #[arg(long, value_enum)]
        snapshot_mode: Option<SnapshotMode>,
        /// A stream snapshots after this many applied entries [default: 65536].
        #[arg(long)]
        snapshot_entries: Option<u64>,
        /// Threads that restore streams at start-up [default: the machine's cores].
        #[arg(long)]
        restore_workers: Option<usize>,
    },
    /// A closed-loop JetStream publisher against any NATS-protocol server: throughput and
    /// publish-to-ack latency (min, p50, p90, p99, p99.9, max, microseconds).
    Bench {
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        server: String,
        #[arg(long, default_value = "BENCH")]
        stream: String,
        #[arg(long, default_value = "bench.x")]
        subject: String,
        /// Publishes in flight per round trip (1 or 500 in docs/benchmarks.md).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Payload bytes per message.
        #[arg(long, default_value_t = 128)]
        size: usize,
        /// How long to publish: 20s, 1500ms, 2m.
        #[arg(long, default_value = "20s", value_parser = sluice_server::bench::parse_duration)]
        duration: std::time::Duration,
        /// Create the stream first (file storage) with this many replicas.
        #[arg(long)]
        replicas: Option<u8>,
    },
    /// Write a stream (messages, gaps, consumers, config) to an archive file (docs/archive.md).
    Backup {
        /// Any node of the cluster: nats://host:port or host:port.
        #[arg(long, default_value = "127.0.0.1:4222")]
        server: String,
        #[arg(long)]
        stream: String,
        /// The archive to write; it appears only once complete.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a stream from an archive: checked whole first, into a new stream only.
    Restore {
        /// Any node of the cluster: nats://host:port or host:port.
        #[arg(long, default_value = "127.0.0.1:4222")]
        server: String,
        /// The archive `sluice backup` wrote.
        file: PathBuf,
        /// Restore under this name instead of the archived one.
        #[arg(long = "as")]
        rename: Option<String>,
        /// Replicas of the restored stream [default: as archived].
        #[arg(long)]
        replicas: Option<u8>,
    },
    /// Scan a stream store directory and report what recovery would find, changing nothing.
    Verify {
        /// The stream's directory (holding NNNNNNNNNN.blk files and state.db).
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify { dir } => sluice_server::verify::verify(&dir),
        Command::Backup { server, stream, out } => match sluice_server::backup::backup(&server, &stream, &out) {
            Ok(r) => {
                println!(
                    "backed up {stream}: {} messages ({:.1} MB), {} consumers, to {} ({:.1} MB) in {:.2} s",
                    r.msgs,
                    r.content_bytes as f64 / 1e6,
                    r.consumers,
                    out.display(),
                    r.archive_bytes as f64 / 1e6,
                    r.elapsed.as_secs_f64()
                );
                ExitCode::SUCCESS
            }
            Err(e) => failed(&format!("backup: {e}")),
        },
        Command::Restore { server, file, rename, replicas } => {
            match sluice_server::backup::restore(&server, &file, rename.as_deref(), replicas) {
                Ok(r) => {
                    println!(
                        "restored {}: {} messages, {} expired while archived, {} consumers, last sequence {} in {:.2} s",
                        r.stream,
                        r.stored,
                        r.expired,
                        r.consumers,
                        r.last_seq,
                        r.elapsed.as_secs_f64()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => failed(&format!("restore: {e}")),
            }
        }
        Command::Bench { server, stream, subject, batch, size, duration, replicas } => {
            let args = sluice_server::bench::BenchArgs {
                server,
                stream,
                subject,
                batch,
                size_bytes: size,
                duration,
                replicas,
            };
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("starting the runtime: {e}")),
            };
            match rt.block_on(sluice_server::bench::run(&args)) {
                Ok(r) => {
                    println!("{}", r.report(&args));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("bench: {e}")),
            }
        }
        Command::Server {
            config: file,
            name,
            data,
            client,
            cluster,
            peers,
            sync,
            sync_interval_ms,
            snapshot_mode,
            snapshot_entries,
            restore_workers,
        } => {
            let flags = FileConfig {
                name,
                data,
                client,
                cluster,
                peers: (!peers.is_empty()).then_some(peers),
                sync,
                sync_interval_ms,
                snapshot_mode,
                snapshot_entries,
                restore_workers,
            };
            let merged = match file.as_deref().map(config::read_file).transpose() {
                Ok(f) => f.unwrap_or_default().merge(flags),
                Err(e) => return fail(&e.to_string()),
            };
            let cfg = match merged.check() {
                Ok(cfg) => cfg,
                Err(e) => return fail(&e.to_string()),
            };
            sluice_server::logging::init();
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("starting the runtime: {e}")),
            };
            match rt.block_on(sluice_server::server::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}

/// A command that ran and failed (exit 1; 2 is for bad arguments and start-up refusals).
fn failed(msg: &str) -> ExitCode {
    eprintln!("sluice: {msg}");
    ExitCode::from(1)
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("sluice: {msg}");
    ExitCode::from(2)
}
