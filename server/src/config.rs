//! The server's configuration: command-line flags or a TOML file with the same keys, checked
//! once at start-up so that a bad value is a clear message and a non-zero exit, never a panic
//! later.
//!
//! Node ids: every node of the cluster is named (`--name`, and one `name=host:port` per
//! peer). Ids are the positions of the names in sorted order, from 1, so every node derives
//! the same id for the same name without a separate id flag. The handshake between nodes
//! checks the name behind each id and a fingerprint of the whole name list (`cluster.rs`).

use serde::Deserialize;
use sluice_core::env::NodeId;
use sluice_core::store::SyncPolicy;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest node name, in bytes (it travels in the handshake).
pub const NAME_BYTES_MAX: usize = 64;
/// Largest cluster (core's `PEERS_MAX` bounds it too).
pub const NODES_MAX: usize = 16;
/// Longest config file read, in bytes.
const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;

pub const DEFAULT_CLIENT_ADDR: &str = "127.0.0.1:4222";
pub const DEFAULT_CLUSTER_ADDR: &str = "127.0.0.1:6222";

/// When a stream's store and Raft log are made durable; the server-wide default for new
/// streams (docs/server.md, "Durability modes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// An acknowledgement means a quorum synced the entry (the default).
    Always,
    /// nats-server's default guarantee: data reaches the disk at the next periodic sync
    /// (every `sync_interval`); a power loss on a quorum can lose acknowledged messages.
    Interval,
}

/// Where checkpoint I/O (the store's fsync and the snapshot file) runs (docs/server.md,
/// "Snapshots").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotMode {
    /// On the node thread, between batches: publishes wait while it runs.
    Inline,
    /// On a thread of its own while the node goes on (the default).
    Background,
}

/// Default entries applied between a stream's snapshots.
pub const SNAPSHOT_ENTRIES_DEFAULT: u64 = 64 * 1024;

/// The keys a TOML file may hold: the same as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub name: Option<String>,
    pub data: Option<PathBuf>,
    pub client: Option<String>,
    pub cluster: Option<String>,
    /// `["n2=127.0.0.1:6223", ...]`.
    pub peers: Option<Vec<String>>,
    pub sync: Option<SyncMode>,
    pub sync_interval_ms: Option<u64>,
    pub snapshot_mode: Option<SnapshotMode>,
    pub snapshot_entries: Option<u64>,
    pub restore_workers: Option<usize>,
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub name: String,
    pub id: NodeId,
    pub data: PathBuf,
    pub client_addr: SocketAddr,
    pub cluster_addr: SocketAddr,
    /// Every node, this one included: id → (name, cluster address).
    pub nodes: BTreeMap<NodeId, (String, SocketAddr)>,
    pub sync: SyncMode,
    pub sync_interval: Duration,
    pub snapshot_mode: SnapshotMode,
    /// A stream takes a snapshot after this many applied entries (or the size and time
    /// triggers of core's `SnapshotPolicy`, whichever comes first).
    pub snapshot_entries: u64,
    /// Threads that restore streams at start-up.
    pub restore_workers: usize,
}

#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn bad<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Reads a TOML config file (bounded, unknown keys refused).
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| ConfigError(format!("config {}: {e}", path.display())))?;
    if meta.len() > CONFIG_FILE_BYTES_MAX {
        return bad(format!("config {}: {} bytes, above {CONFIG_FILE_BYTES_MAX}", path.display(), meta.len()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("config {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigError(format!("config {}: {e}", path.display())))
}

impl FileConfig {
    /// Flags win over the file: `self` is the file, `flags` what the command line set.
    pub fn merge(self, flags: FileConfig) -> FileConfig {
        FileConfig {
            name: flags.name.or(self.name),
            data: flags.data.or(self.data),
            client: flags.client.or(self.client),
            cluster: flags.cluster.or(self.cluster),
            peers: flags.peers.or(self.peers),
            sync: flags.sync.or(self.sync),
            sync_interval_ms: flags.sync_interval_ms.or(self.sync_interval_ms),
            snapshot_mode: flags.snapshot_mode.or(self.snapshot_mode),
            snapshot_entries: flags.snapshot_entries.or(self.snapshot_entries),
            restore_workers: flags.restore_workers.or(self.restore_workers),
        }
    }

    pub fn check(self) -> Result<ServerConfig, ConfigError> {
        let name = self.name.unwrap_or_else(|| "n1".to_string());
        check_name(&name)?;
        let Some(data) = self.data else { return bad("no data directory: give --data DIR (or `data` in the file)") };
        let client_addr = parse_addr("client", self.client.as_deref().unwrap_or(DEFAULT_CLIENT_ADDR))?;
        let cluster_addr = parse_addr("cluster", self.cluster.as_deref().unwrap_or(DEFAULT_CLUSTER_ADDR))?;
        if client_addr == cluster_addr {
            return bad(format!("the client and cluster addresses are the same ({client_addr})"));
        }
        let mut by_name = BTreeMap::new();
        by_name.insert(name.clone(), cluster_addr);
        for peer in self.peers.unwrap_or_default() {
            for item in peer.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let Some((peer_name, addr)) = item.split_once('=') else {
                    return bad(format!("peer {item:?}: expected NAME=HOST:PORT"));
                };
                check_name(peer_name)?;
                let addr = parse_addr(&format!("peer {peer_name}"), addr)?;
                if by_name.insert(peer_name.to_string(), addr).is_some() {
                    return bad(format!("node name {peer_name:?} appears twice (a peer may not repeat --name)"));
                }
            }
        }
        if by_name.len() > NODES_MAX {
            return bad(format!("{} nodes; at most {NODES_MAX}", by_name.len()));
        }
        let nodes: BTreeMap<NodeId, (String, SocketAddr)> =
            by_name.into_iter().enumerate().map(|(i, (n, a))| (i as NodeId + 1, (n, a))).collect();
        let id = nodes.iter().find(|(_, (n, _))| *n == name).map(|(id, _)| *id).expect("own name inserted");
        let sync_interval = Duration::from_millis(self.sync_interval_ms.unwrap_or(120_000));
        if sync_interval.is_zero() {
            return bad("sync_interval_ms must be above zero");
        }
        let snapshot_entries = self.snapshot_entries.unwrap_or(SNAPSHOT_ENTRIES_DEFAULT);
        if snapshot_entries == 0 {
            return bad("snapshot_entries must be above zero");
        }
        let restore_workers = self.restore_workers.unwrap_or_else(crate::startup::default_workers);
        if !(1..=crate::startup::RESTORE_WORKERS_MAX).contains(&restore_workers) {
            return bad(format!("restore_workers must be 1 to {}", crate::startup::RESTORE_WORKERS_MAX));
        }
        Ok(ServerConfig {
            name,
            id,
            data,
            client_addr,
            cluster_addr,
            nodes,
            sync: self.sync.unwrap_or(SyncMode::Always),
            sync_interval,
            snapshot_mode: self.snapshot_mode.unwrap_or(SnapshotMode::Background),
            snapshot_entries,
            restore_workers,
        })
    }
}

impl ServerConfig {
    /// The store policy new streams get. In `Always` mode the Raft log, synced on every
    /// append, is what makes an acknowledgement durable; the store is synced before every
    /// snapshot and truncated back to it on recovery (docs/streams.md, the restore rule), so
    /// syncing it on every append as well would buy nothing but a second fsync.
    pub fn store_sync(&self) -> SyncPolicy {
        match self.sync {
            SyncMode::Always => SyncPolicy::OnSnapshot,
            SyncMode::Interval => SyncPolicy::Interval { interval: self.sync_interval },
        }
    }
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return bad(format!("node name {name:?}: 1 to {NAME_BYTES_MAX} ASCII letters, digits, '-' or '_'"));
    }
    Ok(())
}

fn parse_addr(what: &str, addr: &str) -> Result<SocketAddr, ConfigError> {
    addr.trim()
        .parse()
        .map_err(|e| ConfigError(format!("{what} address {addr:?}: {e} (expected HOST:PORT with a numeric IP)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(name: &str, peers: &[&str]) -> FileConfig {
        FileConfig {
            name: Some(name.into()),
            data: Some("d".into()),
            client: Some("127.0.0.1:4001".into()),
            cluster: Some(format!("127.0.0.1:{}", 6000 + name.len())),
            peers: Some(peers.iter().map(|s| s.to_string()).collect()),
            ..FileConfig::default()
        }
    }

    #[test]
    fn every_node_derives_the_same_ids_from_names() {
        let a = flags("b", &["a=127.0.0.1:7001,c=127.0.0.1:7003"]).check().unwrap();
        assert_eq!(a.id, 2);
        let names: Vec<&str> = a.nodes.values().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(a.nodes[&1].1, "127.0.0.1:7001".parse().unwrap());
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let err = |f: FileConfig| f.check().unwrap_err().0;
        assert!(err(flags("a", &["a=127.0.0.1:1"])).contains("appears twice"));
        assert!(err(flags("a", &["b:127.0.0.1:1"])).contains("NAME=HOST:PORT"));
        assert!(err(flags("a", &["b=localhost"])).contains("peer b address"));
        assert!(err(flags("a b", &[])).contains("node name"));
        assert!(err(FileConfig { data: None, ..flags("a", &[]) }).contains("--data"));
        let same = FileConfig { cluster: Some("127.0.0.1:4001".into()), ..flags("a", &[]) };
        assert!(err(same).contains("same"));
        assert!(err(FileConfig { snapshot_entries: Some(0), ..flags("a", &[]) }).contains("snapshot_entries"));
        assert!(err(FileConfig { restore_workers: Some(0), ..flags("a", &[]) }).contains("restore_workers"));
    }

    #[test]
    fn a_file_holds_the_same_keys_and_flags_win() {
        let file: FileConfig = toml::from_str(
            "name = \"n1\"\ndata = \"/tmp/x\"\nclient = \"127.0.0.1:4222\"\npeers = [\"n2=127.0.0.1:6223\"]\nsync = \"interval\"\nsnapshot_mode = \"inline\"\n",
        )
        .unwrap();
        let merged = file.merge(FileConfig { data: Some("/tmp/y".into()), ..FileConfig::default() }).check().unwrap();
        assert_eq!(merged.data, PathBuf::from("/tmp/y"));
        assert_eq!(merged.sync, SyncMode::Interval);
        assert_eq!(merged.snapshot_mode, SnapshotMode::Inline);
        assert_eq!(merged.snapshot_entries, SNAPSHOT_ENTRIES_DEFAULT);
        assert_eq!(merged.nodes.len(), 2);
        assert!(toml::from_str::<FileConfig>("nmae = \"x\"").is_err(), "unknown keys are refused");
        let defaults = flags("a", &[]).check().unwrap();
        assert_eq!(defaults.snapshot_mode, SnapshotMode::Background);
    }
}
