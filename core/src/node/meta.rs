//! The meta group's replicated state: which streams exist, their configuration, and which
//! nodes hold each one (placement). Every node applies the same committed meta entries in the
//! same order, so every node agrees on the stream list; a stream's Raft group id is the meta
//! log index of the entry that created it, so a stream deleted and created again under the
//! same name gets a new group (and new directories) and stale frames for the old one are
//! dropped.
//!
//! Placement is decided by the meta leader when it proposes (as NATS's meta leader proposes a
//! stream assignment) and carried in the entry, so applying never depends on local
//! configuration. Entries and snapshots are JSON (docs/node.md, "Meta entries"): meta traffic
//! is rare and small, and a readable log helps operators.

use crate::env::NodeId;
use crate::raft::{GroupId, Index, PEERS_MAX};
use crate::stream::StreamConfig;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Replication factors a stream may ask for (DESIGN §4: R = 1, 3 or 5).
pub const REPLICAS_ALLOWED: [usize; 3] = [1, 3, 5];
/// Most streams one cluster holds; bounds the meta state and its snapshot.
pub const STREAMS_MAX: usize = 10_000;
/// Largest encoded meta entry or snapshot this node decodes.
pub const META_ENTRY_BYTES_MAX: usize = 64 * 1024;
pub const META_SNAPSHOT_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaEntry {
    CreateStream {
        config: StreamConfig,
        peers: Vec<NodeId>,
    },
    /// Deletes the stream; with `group`, only if the stream is still that group (a failed
    /// restore removing what it created). Old entries have no `group` field.
    DeleteStream {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<GroupId>,
    },
    /// Creates a stream for a restore: refused if the name exists, whatever its config.
    RestoreStream {
        config: StreamConfig,
        peers: Vec<NodeId>,
    },
}

impl MetaEntry {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("meta entries always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<MetaEntry, String> {
        if bytes.len() > META_ENTRY_BYTES_MAX {
            return Err(format!("meta entry of {} bytes exceeds {META_ENTRY_BYTES_MAX}", bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(|e| format!("meta entry: {e}"))
    }
}

/// One stream as the cluster knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDef {
    pub group: GroupId,
    pub config: StreamConfig,
    /// The voters of the stream's Raft group, ascending.
    pub peers: Vec<NodeId>,
}

/// The replicated result of a meta entry: the same on every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaOutcome {
    Created {
        group: GroupId,
    },
    /// A stream of that name and the same configuration exists (a retried create).
    AlreadyExists {
        group: GroupId,
    },
    Deleted {
        group: GroupId,
    },
    Rejected {
        reason: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    streams: BTreeMap<String, StreamDef>,
}

impl MetaState {
    pub fn streams(&self) -> impl Iterator<Item = &StreamDef> {
        self.streams.values()
    }

    pub fn get(&self, name: &str) -> Option<&StreamDef> {
        self.streams.get(name)
    }

    pub fn by_group(&self, group: GroupId) -> Option<&StreamDef> {
        self.streams.values().find(|d| d.group == group)
    }

    /// Applies committed meta entry `index`. Refusals are outcomes: they depend only on the
    /// entry and the replicated state.
    pub fn apply(&mut self, index: Index, data: &[u8]) -> MetaOutcome {
        let reject = |reason: String| MetaOutcome::Rejected { reason };
        let entry = match MetaEntry::decode(data) {
            Ok(e) => e,
            Err(reason) => return reject(reason),
        };
        match entry {
            MetaEntry::RestoreStream { config, .. } if self.streams.contains_key(&config.name) => {
                reject(format!("stream {:?} exists; a restore does not write into an existing stream", config.name))
            }
            MetaEntry::CreateStream { config, peers } | MetaEntry::RestoreStream { config, peers } => {
                if let Err(e) = config.validate() {
                    return reject(e.to_string());
                }
                if let Err(reason) = check_peers(&peers) {
                    return reject(reason);
                }
                if let Some(existing) = self.streams.get(&config.name) {
                    if existing.config == config {
                        return MetaOutcome::AlreadyExists { group: existing.group };
                    }
                    return reject(format!("stream {:?} exists with another configuration", config.name));
                }
                if self.streams.len() >= STREAMS_MAX {
                    return reject(format!("the cluster holds the maximum of {STREAMS_MAX} streams"));
                }
                let def = StreamDef { group: index, config, peers };
                self.streams.insert(def.config.name.clone(), def);
                MetaOutcome::Created { group: index }
            }
            MetaEntry::DeleteStream { name, group } => match self.streams.get(&name) {
                Some(def) if group.is_none_or(|g| g == def.group) => {
                    let def = self.streams.remove(&name).expect("just found");
                    MetaOutcome::Deleted { group: def.group }
                }
                Some(_) => reject(format!("stream {name:?} is another stream than the one to delete")),
                None => reject(format!("no stream named {name:?}")),
            },
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("meta state always serializes")
    }

    /// Decodes and validates a meta snapshot.
    pub fn decode(bytes: &[u8]) -> Result<MetaState, String> {
        if bytes.len() > META_SNAPSHOT_BYTES_MAX {
            return Err(format!("meta snapshot of {} bytes exceeds {META_SNAPSHOT_BYTES_MAX}", bytes.len()));
        }
        if bytes.is_empty() {
            return Ok(MetaState::default());
        }
        let state: MetaState = serde_json::from_slice(bytes).map_err(|e| format!("meta snapshot: {e}"))?;
        if state.streams.len() > STREAMS_MAX {
            return Err(format!("meta snapshot lists {} streams, above {STREAMS_MAX}", state.streams.len()));
        }
        let mut groups = BTreeSet::new();
        for (name, def) in &state.streams {
            def.config.validate().map_err(|e| format!("meta snapshot, stream {name:?}: {e}"))?;
            check_peers(&def.peers).map_err(|e| format!("meta snapshot, stream {name:?}: {e}"))?;
            if *name != def.config.name || def.group == 0 || !groups.insert(def.group) {
                return Err(format!("meta snapshot, stream {name:?}: inconsistent name or group {}", def.group));
            }
        }
        Ok(state)
    }
}

fn check_peers(peers: &[NodeId]) -> Result<(), String> {
    if !REPLICAS_ALLOWED.contains(&peers.len()) || peers.len() > PEERS_MAX {
        return Err(format!("{} peers; a stream has 1, 3 or 5", peers.len()));
    }
    if !peers.windows(2).all(|w| w[0] < w[1]) || peers.contains(&0) {
        return Err(format!("peers {peers:?} are not distinct, ascending, non-zero node ids"));
    }
    Ok(())
}

/// The leader's placement of a new stream: `replicas` nodes of `cluster`, starting at a
/// position that rotates with `salt` (the number of streams so far) so streams spread over
/// the cluster. Deterministic; `None` if the cluster is too small.
pub fn place(cluster: &BTreeSet<NodeId>, replicas: usize, salt: usize) -> Option<Vec<NodeId>> {
    if !REPLICAS_ALLOWED.contains(&replicas) || replicas > cluster.len() {
        return None;
    }
    let nodes: Vec<NodeId> = cluster.iter().copied().collect();
    let start = salt % nodes.len();
    let mut peers: Vec<NodeId> = (0..replicas).map(|i| nodes[(start + i) % nodes.len()]).collect();
    peers.sort_unstable();
    Some(peers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::StreamConfig;

    fn config(name: &str) -> StreamConfig {
        StreamConfig::new(name, [format!("{name}.>")])
    }

    #[test]
    fn create_delete_and_retries() {
        let mut m = MetaState::default();
        let create = MetaEntry::CreateStream { config: config("orders"), peers: vec![1, 2, 3] }.encode();
        assert_eq!(m.apply(5, &create), MetaOutcome::Created { group: 5 });
        assert_eq!(m.apply(6, &create), MetaOutcome::AlreadyExists { group: 5 });
        let mut other = config("orders");
        other.subjects = vec!["x".into()];
        let conflicting = MetaEntry::CreateStream { config: other, peers: vec![1, 2, 3] }.encode();
        assert!(matches!(m.apply(7, &conflicting), MetaOutcome::Rejected { .. }));
        let delete = MetaEntry::DeleteStream { name: "orders".into(), group: None }.encode();
        assert_eq!(m.apply(8, &delete), MetaOutcome::Deleted { group: 5 });
        assert!(matches!(m.apply(9, &delete), MetaOutcome::Rejected { .. }));
        // Created again: a new group.
        assert_eq!(m.apply(10, &create), MetaOutcome::Created { group: 10 });
        let decoded = MetaState::decode(&m.encode()).unwrap();
        assert_eq!(decoded, m);
    }

    /// A restore never lands in an existing stream, even one with the same config, and its
    /// clean-up removes only the stream it created.
    #[test]
    fn restores_create_only_new_streams_and_clean_up_only_their_own() {
        let mut m = MetaState::default();
        let create = MetaEntry::CreateStream { config: config("orders"), peers: vec![1] }.encode();
        let restore = MetaEntry::RestoreStream { config: config("orders"), peers: vec![1] }.encode();
        assert_eq!(m.apply(3, &create), MetaOutcome::Created { group: 3 });
        assert!(matches!(m.apply(4, &restore), MetaOutcome::Rejected { reason } if reason.contains("exists")));
        let abandon = |group| MetaEntry::DeleteStream { name: "orders".into(), group: Some(group) }.encode();
        assert!(matches!(m.apply(5, &abandon(4)), MetaOutcome::Rejected { .. }));
        assert_eq!(m.apply(6, &abandon(3)), MetaOutcome::Deleted { group: 3 });
        assert_eq!(m.apply(7, &restore), MetaOutcome::Created { group: 7 });
        // An entry from before `group` existed decodes, and encodes without it.
        let old = br#"{"DeleteStream":{"name":"orders"}}"#;
        assert_eq!(MetaEntry::decode(old).unwrap().encode(), old.to_vec());
        assert_eq!(m.apply(8, old), MetaOutcome::Deleted { group: 7 });
    }

    #[test]
    fn hostile_entries_and_snapshots_are_refused() {
        let mut m = MetaState::default();
        for bad in [&b"{"[..], b"\xff\xfe", b"{\"CreateStream\":{}}", &[b'['; 200_000]] {
            assert!(matches!(m.apply(1, bad), MetaOutcome::Rejected { .. }), "{:?}", &bad[..bad.len().min(20)]);
        }
        for peers in [vec![], vec![1, 2], vec![3, 2, 1], vec![1, 1, 2], vec![0, 1, 2]] {
            let e = MetaEntry::CreateStream { config: config("a"), peers: peers.clone() }.encode();
            assert!(matches!(m.apply(2, &e), MetaOutcome::Rejected { .. }), "{peers:?}");
        }
        assert!(MetaState::decode(b"{\"streams\":{\"a\":{\"group\":0}}}").is_err());
        // A snapshot whose key and name disagree.
        let mut s = MetaState::default();
        s.apply(3, &MetaEntry::CreateStream { config: config("a"), peers: vec![1] }.encode());
        let text = String::from_utf8(s.encode()).unwrap().replacen("\"a\":", "\"b\":", 1);
        assert!(MetaState::decode(text.as_bytes()).is_err());
    }

    #[test]
    fn placement_rotates_and_respects_cluster_size() {
        let cluster: BTreeSet<NodeId> = [1, 2, 3, 4, 5].into();
        assert_eq!(place(&cluster, 3, 0), Some(vec![1, 2, 3]));
        assert_eq!(place(&cluster, 3, 4), Some(vec![1, 2, 5]));
        assert_eq!(place(&cluster, 1, 7), Some(vec![3]));
        assert_eq!(place(&cluster, 5, 1), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(place(&cluster, 2, 0), None);
        assert_eq!(place(&[1, 2].into(), 3, 0), None);
    }
}
