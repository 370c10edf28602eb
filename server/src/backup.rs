//! `sluice backup` and `sluice restore`: a stream to an archive file and back, through the
//! server's `$SLUICE.API` (nats/backup_api.rs). The archive format and its reader live in
//! `core::archive`; docs/archive.md has both and the restore's rules.
//!
//! Backup reads the stream's state and consumers from its leader, then its messages as
//! catch-up chunks through the last sequence it had at the start, writing each into the
//! archive as it arrives: at most one chunk and one archive member are in memory. The file
//! is written as `<out>.partial`, synced, and renamed into place only once complete.
//!
//! Restore reads the archive twice. The first pass checks all of it (every bound, every
//! sequence, the checksum) and writes nothing: a damaged or hostile archive is refused before
//! a stream exists. The second pass creates the stream (refused if the name exists) and
//! writes messages, then consumers, through the stream's log, each write naming the group
//! the create made; if anything fails after the create, the stream is deleted again, on a
//! fresh connection (only that stream: the delete names its group).

use crate::client::Client;
use crate::nats::backup_api::BLOB_TAG;
use crate::ops::BackupStart;
use sluice_core::archive::{restore_writes, ArchiveItem, ArchiveReader, ArchiveWriter, Manifest, RestoreWrite};
use sluice_core::stream::CatchupChunk;
use std::io::{BufReader, BufWriter, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Message bytes asked for per backup read (the server caps it too).
const BACKUP_READ_BYTES: u64 = 1024 * 1024;
/// Encoded bytes per restore chunk: one Raft entry each, well inside the entry bound.
const RESTORE_CHUNK_BYTES: usize = 512 * 1024;
const API_TIMEOUT: Duration = Duration::from_secs(30);
const INBOX: &str = "_INBOX.sluice";

/// The blocking side of the API: each call waits for its answer on a current-thread runtime,
/// so the archive reader's callback (synchronous) can make calls.
struct Api {
    rt: tokio::runtime::Runtime,
    client: Client,
    attempt: u32,
}

enum Answer {
    Json(serde_json::Value),
    Blob(Vec<u8>),
}

impl Api {
    fn open(server: &str, lang: &str) -> Result<Api, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the runtime: {e}"))?;
        let client = rt.block_on(Client::open(server, lang, INBOX))?;
        Ok(Api { rt, client, attempt: 0 })
    }

    fn call(&mut self, subject: &str, body: &[u8]) -> Result<Answer, String> {
        self.attempt += 1;
        let raw = self.rt.block_on(self.client.request_raw(subject, body, self.attempt, API_TIMEOUT))?;
        if raw.first() == Some(&BLOB_TAG) {
            return Ok(Answer::Blob(raw[1..].to_vec()));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|e| format!("{subject}: answer is neither data nor JSON: {e}"))?;
        if let Some(e) = v.get("error") {
            let text = e.get("description").and_then(|d| d.as_str()).unwrap_or("unknown error");
            return Err(format!("{subject}: {text}"));
        }
        Ok(Answer::Json(v))
    }

    fn json(&mut self, subject: &str, body: &[u8]) -> Result<serde_json::Value, String> {
        match self.call(subject, body)? {
            Answer::Json(v) => Ok(v),
            Answer::Blob(_) => Err(format!("{subject}: expected JSON, got data")),
        }
    }

    fn blob(&mut self, subject: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        match self.call(subject, body)? {
            Answer::Blob(b) => Ok(b),
            Answer::Json(v) => Err(format!("{subject}: expected data, got {v}")),
        }
    }
}

/// A one-line progress display on a terminal (stderr), redrawn at most every 200 ms; silent
/// when stderr is not a terminal.
pub struct Progress {
    verb: &'static str,
    total_msgs: u64,
    shown_at: Option<Instant>,
    enabled: bool,
}

impl Progress {
    pub fn new(verb: &'static str, total_msgs: u64) -> Progress {
        Progress { verb, total_msgs, shown_at: None, enabled: std::io::stderr().is_terminal() }
    }

    fn update(&mut self, msgs: u64, bytes: u64) {
        if !self.enabled || self.shown_at.is_some_and(|t| t.elapsed() < Duration::from_millis(200)) {
            return;
        }
        self.shown_at = Some(Instant::now());
        let pct = if self.total_msgs == 0 { 100.0 } else { msgs as f64 * 100.0 / self.total_msgs as f64 };
        eprint!("\r{} {msgs}/{} messages ({pct:.0}%), {:.1} MB  ", self.verb, self.total_msgs, bytes as f64 / 1e6);
    }

    fn done(&self) {
        if self.enabled && self.shown_at.is_some() {
            eprintln!();
        }
    }
}

pub struct BackupReport {
    pub msgs: u64,
    pub consumers: usize,
    pub archive_bytes: u64,
    pub content_bytes: u64,
    pub elapsed: Duration,
}

/// Writes stream `stream` on `server` to the archive `out`.
pub fn backup(server: &str, stream: &str, out: &Path) -> Result<BackupReport, String> {
    let started = Instant::now();
    sluice_core::stream::validate_stream_name(stream).map_err(|e| format!("--stream {stream:?}: {e}"))?;
    let mut api = Api::open(server, "sluice-backup")?;
    let start: BackupStart = serde_json::from_value(api.json(&format!("$SLUICE.API.BACKUP.BEGIN.{stream}"), b"")?)
        .map_err(|e| format!("backup start: {e}"))?;
    let partial = partial_path(out);
    let file = std::fs::File::create(&partial).map_err(|e| format!("create {}: {e}", partial.display()))?;
    let result = write_archive(&mut api, stream, &start, BufWriter::with_capacity(1 << 20, file));
    let (msgs, content_bytes) = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let archive_bytes = match publish_file(&partial, out) {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    Ok(BackupReport {
        msgs,
        consumers: start.consumers.len(),
        archive_bytes,
        content_bytes,
        elapsed: started.elapsed(),
    })
}

/// Makes the finished `partial` durable as `out`: the file synced, renamed, and the rename
/// synced (the directory). Returns the file's size.
fn publish_file(partial: &Path, out: &Path) -> Result<u64, String> {
    let file = std::fs::File::open(partial).map_err(|e| format!("open {}: {e}", partial.display()))?;
    file.sync_all().map_err(|e| format!("sync {}: {e}", partial.display()))?;
    let bytes = file.metadata().map_err(|e| e.to_string())?.len();
    std::fs::rename(partial, out).map_err(|e| format!("rename to {}: {e}", out.display()))?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("sync the directory {}: {e}", dir.display()))?;
    Ok(bytes)
}

/// `<out>.partial` beside `out`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

/// The archive's members, in order; returns the messages and their content bytes.
fn write_archive(
    api: &mut Api,
    stream: &str,
    start: &BackupStart,
    out: BufWriter<std::fs::File>,
) -> Result<(u64, u64), String> {
    let manifest = Manifest {
        format: String::new(),
        version: 0,
        config: start.config.clone(),
        state: start.state,
        replicas: Some(start.replicas),
    };
    let mut w = ArchiveWriter::new(out, manifest).map_err(|e| e.to_string())?;
    for name in &start.consumers {
        match api.blob(&format!("$SLUICE.API.BACKUP.CONSUMER.{stream}.{name}"), b"") {
            Ok(bytes) => w.push_consumer(&bytes).map_err(|e| e.to_string())?,
            // Deleted since the backup began: the archive holds the consumers that remain.
            Err(e) if e.ends_with("consumer not found") => {}
            Err(e) => return Err(e),
        }
    }
    let mut progress = Progress::new("backup", start.state.msgs);
    let (mut msgs, mut bytes) = (0u64, 0u64);
    let mut from_seq = start.state.first_seq;
    let last_seq = start.state.last_seq;
    while from_seq <= last_seq {
        let req = serde_json::json!({ "from_seq": from_seq, "to_seq": last_seq, "max_bytes": BACKUP_READ_BYTES });
        let blob = api.blob(&format!("$SLUICE.API.BACKUP.CHUNK.{stream}"), req.to_string().as_bytes())?;
        let chunk = CatchupChunk::decode(&blob).map_err(|e| format!("backup read at {from_seq}: {e}"))?;
        if chunk.from_seq != from_seq || chunk.through_seq > last_seq {
            return Err(format!(
                "backup read at {from_seq}: the server sent {}..={} (wanted up to {last_seq})",
                chunk.from_seq, chunk.through_seq
            ));
        }
        for m in &chunk.messages {
            w.push(m).map_err(|e| e.to_string())?;
            msgs += 1;
            bytes += (m.subject.len() + m.headers.len() + m.payload.len()) as u64;
        }
        progress.update(msgs, bytes);
        from_seq = chunk.through_seq + 1;
    }
    progress.done();
    w.finish().map_err(|e| e.to_string())?;
    Ok((msgs, bytes))
}

pub struct RestoreReport {
    pub stream: String,
    pub stored: u64,
    pub expired: u64,
    pub consumers: u64,
    pub last_seq: u64,
    pub elapsed: Duration,
}

/// Restores the archive `file` on `server`, as stream `rename` if given, with `replicas`
/// replicas (default: the archived count).
pub fn restore(server: &str, file: &Path, rename: Option<&str>, replicas: Option<u8>) -> Result<RestoreReport, String> {
    let started = Instant::now();
    let open = || {
        std::fs::File::open(file)
            .map(|f| BufReader::with_capacity(1 << 20, f))
            .map_err(|e| format!("{}: {e}", file.display()))
    };
    // Pass 1: check everything before anything is created.
    let mut manifest = None;
    ArchiveReader::read(open()?, |item| {
        if let ArchiveItem::Manifest(m) = item {
            manifest = Some(m);
        }
        Ok(())
    })
    .map_err(|e| format!("{}: {e}", file.display()))?;
    let manifest = manifest.expect("a read archive has a manifest");
    let mut config = manifest.config.clone();
    if let Some(name) = rename {
        config.name = name.to_string();
        config.validate().map_err(|e| format!("--as {name}: {e}"))?;
    }
    let name = config.name.clone();
    let replicas = replicas.or(manifest.replicas).unwrap_or(1);

    let mut api = Api::open(server, "sluice-restore")?;
    let begin = serde_json::json!({ "config": config, "replicas": replicas });
    let created = match api.json(&format!("$SLUICE.API.RESTORE.BEGIN.{name}"), begin.to_string().as_bytes()) {
        Ok(v) => v,
        // Refused outright: nothing was created.
        Err(e) if e.contains("exists") || e.contains("overlap") || e.contains("invalid") => return Err(e),
        // No answer, or one that leaves the outcome open: the create may still commit.
        Err(e) => {
            return Err(format!(
                "{e}; the stream {name} may have been created all the same: if it exists and is empty, delete it"
            ))
        }
    };
    let group = created.get("group").and_then(|g| g.as_u64()).ok_or("restore begin: no group in the answer")?;
    match write_stream(&mut api, &name, group, open()?, manifest.state.msgs) {
        Ok(mut report) => {
            report.stream = name;
            report.elapsed = started.elapsed();
            Ok(report)
        }
        Err(e) => {
            // On a new connection: the failure may have been this one closing.
            drop(api);
            let abandon = serde_json::json!({ "group": group });
            let deleted = Api::open(server, "sluice-restore").and_then(|mut api| {
                api.json(&format!("$SLUICE.API.RESTORE.ABANDON.{name}"), abandon.to_string().as_bytes())
            });
            match deleted {
                Ok(_) => Err(format!("{e}; the partly restored stream {name} was deleted")),
                Err(e2) => {
                    Err(format!("{e}; the partly restored stream {name} could not be deleted ({e2}): delete it"))
                }
            }
        }
    }
}

/// Pass 2: the archive's messages, then its consumers (`restore_writes`), into the stream
/// created for them (group `group`).
fn write_stream(
    api: &mut Api,
    name: &str,
    group: u64,
    input: impl std::io::Read,
    total: u64,
) -> Result<RestoreReport, String> {
    let mut report = RestoreReport {
        stream: String::new(),
        stored: 0,
        expired: 0,
        consumers: 0,
        last_seq: 0,
        elapsed: Duration::ZERO,
    };
    let mut progress = Progress::new("restore", total);
    let (mut read, mut bytes) = (0u64, 0u64);
    let chunk_subject = format!("$SLUICE.API.RESTORE.CHUNK.{name}.{group}");
    let consumer_subject = format!("$SLUICE.API.RESTORE.CONSUMER.{name}.{group}");
    let last_seq = restore_writes(input, RESTORE_CHUNK_BYTES, |w| match w {
        RestoreWrite::Chunk(chunk) => {
            read += chunk.messages.len() as u64;
            bytes += chunk
                .messages
                .iter()
                .map(|m| (m.subject.len() + m.headers.len() + m.payload.len()) as u64)
                .sum::<u64>();
            let answer = api.json(&chunk_subject, &chunk.encode())?;
            let field = |k: &str| answer.get(k).and_then(|v| v.as_u64()).ok_or(format!("restore chunk: no {k}"));
            report.stored += field("stored")?;
            report.expired += field("expired")?;
            report.last_seq = field("last_seq")?;
            progress.update(read, bytes);
            Ok(())
        }
        RestoreWrite::Consumer(c) => {
            api.json(&consumer_subject, &c)?;
            report.consumers += 1;
            Ok(())
        }
    })?;
    progress.done();
    if report.last_seq < last_seq {
        return Err(format!("the stream ends at {} after the restore, the archive at {last_seq}", report.last_seq));
    }
    Ok(report)
}
