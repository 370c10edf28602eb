//! What the checkers see: per stream, every acknowledgement, the leaders seen per term, the
//! highest commit index and term seen, and sampled replica states by applied index. Filled by
//! the world as the run goes; read by `invariants`.

use bytes::Bytes;
use sluice_core::env::NodeId;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default)]
pub struct StreamHistory {
    pub name: String,
    /// The stream drops old messages (max messages), so acknowledged ones may leave it.
    pub limited: bool,
    pub peers: Vec<NodeId>,
    /// seq → id and id → seq of every acknowledged publish.
    pub acked_seq: BTreeMap<u64, u64>,
    /// The keys of `acked_seq` in order, kept beside it (`record_ack`) so a reader picks the
    /// k-th in O(1): `keys().nth(k)` walked the map, a tenth of a long run.
    pub acked_in_order: Vec<u64>,
    pub acked_id: BTreeMap<u64, u64>,
    /// Ids published and not yet acknowledged: retried with the same id until they are.
    pub unacked: BTreeSet<u64>,
    /// term → the node seen leading it.
    pub leaders: BTreeMap<u64, NodeId>,
    pub max_term: u64,
    pub max_commit: u64,
    pub max_last_index: u64,
    /// applied index → (state hash, the first node seen with it).
    pub hashes: BTreeMap<u64, (u64, NodeId)>,
    /// While a majority of the replicas is down: the longest log there was when it went down.
    pub no_quorum_ceiling: Option<u64>,
    /// The liveness phase's new publish, and whether it was acknowledged.
    pub probe: Option<(u64, bool)>,
    /// node → the sequence its next window of kept-digest checks starts at, and its applied
    /// index when it took the last one.
    pub verify_from: BTreeMap<NodeId, (u64, u64)>,
}

impl StreamHistory {
    pub fn new(name: String, peers: Vec<NodeId>, limited: bool) -> StreamHistory {
        StreamHistory { name, peers, limited, ..StreamHistory::default() }
    }

    /// The payload the workload publishes for `id` (so every stored message names its id).
    pub fn payload(id: u64) -> Bytes {
        Bytes::from(format!("payload-{id}"))
    }

    pub fn record_ack(&mut self, seq: u64, id: u64) {
        if self.acked_seq.insert(seq, id).is_none() {
            // Acknowledgements come mostly in sequence order: usually a push at the end.
            let at = self.acked_in_order.partition_point(|&s| s < seq);
            self.acked_in_order.insert(at, seq);
        }
        assert_eq!(self.acked_in_order.len(), self.acked_seq.len(), "the ordered keys follow the map");
        self.acked_id.insert(id, seq);
        self.unacked.remove(&id);
        if let Some((probe, done)) = &mut self.probe {
            if *probe == id {
                *done = true;
            }
        }
    }
}
