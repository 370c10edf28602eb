//! No gaps, no duplicates: a sequence is acknowledged for one message id only and an id at
//! one sequence only (checked at every acknowledgement); at the end every replica holds a
//! message at every sequence from its first to its last (the workload deletes nothing, so
//! only the limits, which cut the front, may remove messages) and no id twice.

use super::{ReplicaDump, Violation};
use crate::cluster::history::StreamHistory;
use std::collections::BTreeMap;

pub const NAME: &str = "no-gaps-no-duplicates";

/// An acknowledgement: `id` stored at `seq`.
pub fn check_ack(stream: &StreamHistory, node: u64, seq: u64, id: u64, at_ms: u64) -> Result<(), Violation> {
    let fail = |detail: String| Err(Violation::new(NAME, at_ms, detail).node(node).stream(&stream.name).seq(seq));
    if let Some(other) = stream.acked_seq.get(&seq).filter(|other| **other != id) {
        return fail(format!("acknowledged for id-{other} and for id-{id}"));
    }
    if let Some(prev) = stream.acked_id.get(&id).filter(|prev| **prev != seq) {
        return fail(format!("id-{id} acknowledged at seq {prev} and at seq {seq}"));
    }
    Ok(())
}

pub fn check_final(stream: &StreamHistory, replica: &ReplicaDump, at_ms: u64) -> Result<(), Violation> {
    let fail = |seq: u64, detail: String| {
        Err(Violation::new(NAME, at_ms, detail).node(replica.node).stream(&stream.name).seq(seq))
    };
    if replica.last_seq >= replica.first_seq {
        for seq in replica.first_seq..=replica.last_seq {
            if !replica.messages.contains_key(&seq) {
                return fail(seq, format!("a gap in {}..={}", replica.first_seq, replica.last_seq));
            }
        }
    }
    let mut seen: BTreeMap<&[u8], u64> = BTreeMap::new();
    for (&seq, payload) in &replica.messages {
        if let Some(first) = seen.insert(payload, seq) {
            return fail(seq, format!("{:?} stored at seq {first} and again", String::from_utf8_lossy(payload)));
        }
    }
    Ok(())
}
