//! A node's configuration: who is in the cluster, where data lives, and the timing and
//! snapshot policy of its Raft groups. Validated once, by `Node::open`.

use crate::env::{Buggify, NodeId};
use crate::raft::storage::LogConfig;
use crate::raft::{RaftConfig, PEERS_MAX};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// When a group snapshots (checkpoints) its state and compacts its log: after `entries`
/// applied entries or `bytes` of applied entry data since the last snapshot, or once
/// `interval` (plus a jitter drawn from the node's seeded RNG, so groups do not snapshot in
/// lockstep) has passed with anything new applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    pub entries: u64,
    pub bytes: u64,
    pub interval: Duration,
    pub jitter: Duration,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            entries: 64 * 1024,
            bytes: 64 * 1024 * 1024,
            interval: Duration::from_secs(120),
            jitter: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Every node of the cluster, this one included: the meta group's voters and the nodes
    /// streams are placed on. The same on every node.
    pub cluster: BTreeSet<NodeId>,
    /// This node's data directory on its `Disk` (relative to the disk's root).
    pub dir: PathBuf,
    /// Timing and batching for every group (its `id` is replaced by `id`).
    pub raft: RaftConfig,
    pub log: LogConfig,
    pub snapshot: SnapshotPolicy,
    /// How often a stream leader proposes an `Expire` entry (age limits, dedupe windows).
    pub expire_interval: Duration,
    /// A client request not answered in this time gets `Reply::Timeout`; it may still
    /// take effect (a publish with a message id can be retried safely).
    pub request_timeout: Duration,
    /// Flow control of catch-up: content bytes asked for per chunk (one chunk outstanding).
    pub catchup_chunk_bytes: u64,
    /// A catch-up request unanswered in this time is sent to the next peer.
    pub catchup_timeout: Duration,
    /// After this many whole rounds through the peers without a chunk that made progress,
    /// a catch-up falls back to asking the leader for a newer snapshot (and again after
    /// every further round). The range it needs may be gone from every peer, and a newer
    /// snapshot can start past it.
    pub catchup_rounds_before_snapshot: u32,
    /// Client requests (publishes, creates, deletes) awaiting their reply, per node.
    pub requests_max: usize,
    /// Seeds every random choice the node makes (election timeouts, snapshot jitter).
    pub seed: u64,
    /// Rare paths forced on purpose (simulation only; `Buggify::OFF` in production).
    pub buggify: Buggify,
    /// Every replica keeps a digest per message so `stream_state_hash_cheap` answers without
    /// reading the store (simulation only: it costs memory per message).
    pub keep_digests: bool,
}

impl NodeConfig {
    pub fn new(id: NodeId, cluster: impl IntoIterator<Item = NodeId>, dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            id,
            cluster: cluster.into_iter().collect(),
            dir: dir.into(),
            raft: RaftConfig::new(id),
            log: LogConfig::default(),
            snapshot: SnapshotPolicy::default(),
            expire_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            catchup_chunk_bytes: 1024 * 1024,
            catchup_timeout: Duration::from_secs(2),
            catchup_rounds_before_snapshot: 3,
            requests_max: 64 * 1024,
            seed: id,
            buggify: Buggify::OFF,
            keep_digests: false,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("node id 0 is reserved".into());
        }
        if !self.cluster.contains(&self.id) {
            return Err(format!("cluster {:?} does not list this node ({})", self.cluster, self.id));
        }
        if self.cluster.contains(&0) || self.cluster.len() > PEERS_MAX {
            return Err(format!("cluster {:?}: ids must be non-zero, at most {PEERS_MAX} nodes", self.cluster));
        }
        let mut raft = self.raft.clone();
        raft.id = self.id;
        raft.validate()?;
        if self.snapshot.entries == 0 || self.snapshot.bytes == 0 || self.snapshot.interval.is_zero() {
            return Err("snapshot policy: entries, bytes and interval must be non-zero".into());
        }
        if self.expire_interval.is_zero() || self.request_timeout.is_zero() || self.catchup_timeout.is_zero() {
            return Err("expire_interval, request_timeout and catchup_timeout must be non-zero".into());
        }
        if self.catchup_chunk_bytes == 0 || self.catchup_chunk_bytes > CATCHUP_CHUNK_REQUEST_BYTES_MAX {
            return Err(format!("catchup_chunk_bytes must be 1..={CATCHUP_CHUNK_REQUEST_BYTES_MAX}"));
        }
        if self.catchup_rounds_before_snapshot == 0 {
            return Err("catchup_rounds_before_snapshot must be non-zero".into());
        }
        if self.requests_max == 0 {
            return Err("requests_max must be non-zero".into());
        }
        Ok(())
    }
}

/// Largest catch-up chunk a node asks for, so that a chunk (its messages, their framing and
/// one oversized first message) always fits a network frame.
pub const CATCHUP_CHUNK_REQUEST_BYTES_MAX: u64 = 2 * 1024 * 1024;
