//! Durability: every publish acknowledged to a client is stored, at the sequence it was
//! acknowledged with and with its payload, on every replica once the cluster has healed,
//! whatever crashed, as long as a quorum survived. Reads during the run must return the
//! acknowledged payload or nothing, never other bytes.
//!
//! The one allowed absence: a stream with limits drops old messages from its front, so an
//! acknowledged sequence below the replica's first sequence is gone by design.

use super::{ReplicaDump, Violation};
use crate::cluster::history::StreamHistory;
use bytes::Bytes;

pub const NAME: &str = "durability";

/// At the end, on every replica of a stream.
pub fn check_final(stream: &StreamHistory, replica: &ReplicaDump, at_ms: u64) -> Result<(), Violation> {
    for (&seq, &id) in &stream.acked_seq {
        if stream.limited && seq < replica.first_seq {
            continue;
        }
        let want = StreamHistory::payload(id);
        match replica.messages.get(&seq) {
            Some(got) if *got == want => {}
            got => {
                return Err(Violation::new(
                    NAME,
                    at_ms,
                    format!("acknowledged id-{id} holds {:?}", got.map(|b| String::from_utf8_lossy(b).into_owned())),
                )
                .node(replica.node)
                .stream(&stream.name)
                .seq(seq))
            }
        }
    }
    Ok(())
}

/// A read during the run: `got` is what the replica returned at `seq`.
pub fn check_read(stream: &StreamHistory, node: u64, seq: u64, got: &Bytes, at_ms: u64) -> Result<(), Violation> {
    let Some(&id) = stream.acked_seq.get(&seq) else { return Ok(()) };
    if *got != StreamHistory::payload(id) {
        return Err(Violation::new(
            NAME,
            at_ms,
            format!("read of acknowledged id-{id} returned {:?}", String::from_utf8_lossy(got)),
        )
        .node(node)
        .stream(&stream.name)
        .seq(seq));
    }
    Ok(())
}
