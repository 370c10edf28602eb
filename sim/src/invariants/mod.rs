//! The invariants the cluster simulator checks, one per file, each over the recorded
//! [`History`](crate::cluster::history::History) or the replicas' final contents:
//! * [`durability`]: every acknowledged publish is stored, at its sequence, with its payload;
//! * [`no_gaps`]: sequences are contiguous apart from what the limits explain, and a message
//!   id is stored once (and acknowledged at one sequence);
//! * [`agreement`]: replicas that applied the same index hold the same state;
//! * [`raft_safety`]: one leader per term; a new leader holds every committed entry;
//!   nothing commits without a quorum;
//! * [`recovery`]: a replica rebuilt from its snapshot and log tail equals the replica that
//!   applied every entry;
//! * [`liveness`]: once faults stop, every stream elects a leader and commits a new publish
//!   within a bound;
//! * [`round_trip`]: a stream restored from a backup holds exactly what the archive holds;
//! * [`hostile_archive`]: a forged, damaged archive is refused or reads the same, never
//!   panics.
//!
//! A violation stops the run and names the invariant, node, stream, sequence and simulated
//! time. Faults the simulator injected are never violations by themselves: an injected disk
//! error may make a replica refuse a read, never return other bytes.

pub mod agreement;
pub mod durability;
pub mod hostile_archive;
pub mod liveness;
pub mod no_gaps;
pub mod raft_safety;
pub mod recovery;
pub mod round_trip;

use sluice_core::env::NodeId;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name, as `sluice-sim` prints it (`result: fail: <invariant>: ...`).
    pub invariant: &'static str,
    pub node: Option<NodeId>,
    pub stream: Option<String>,
    pub seq: Option<u64>,
    /// Simulated time since the start of the run.
    pub at_ms: u64,
    pub detail: String,
}

impl Violation {
    pub fn new(invariant: &'static str, at_ms: u64, detail: impl Into<String>) -> Violation {
        Violation { invariant, node: None, stream: None, seq: None, at_ms, detail: detail.into() }
    }

    pub fn node(mut self, node: NodeId) -> Violation {
        self.node = Some(node);
        self
    }

    pub fn stream(mut self, stream: &str) -> Violation {
        self.stream = Some(stream.to_string());
        self
    }

    pub fn seq(mut self, seq: u64) -> Violation {
        self.seq = Some(seq);
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (", self.invariant, self.detail)?;
        if let Some(n) = self.node {
            write!(f, "node n{n}, ")?;
        }
        if let Some(s) = &self.stream {
            write!(f, "stream {s}, ")?;
        }
        if let Some(q) = self.seq {
            write!(f, "seq {q}, ")?;
        }
        write!(f, "at {}.{:03}s)", self.at_ms / 1000, self.at_ms % 1000)
    }
}

/// One replica's contents at the end of a run, read message by message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaDump {
    pub node: NodeId,
    pub first_seq: u64,
    pub last_seq: u64,
    /// seq → payload, for every message the replica holds.
    pub messages: std::collections::BTreeMap<u64, bytes::Bytes>,
}
