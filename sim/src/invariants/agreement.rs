//! Replica agreement: replicas that applied the same index hold the same state (the stream
//! state machine's hash over its store and de-duplication table). Every sampled (index,
//! hash) of every replica is kept; a later sample of the same index from any replica must
//! match. This also catches a committed entry that changed: the states after it would differ.
//! At the end, all replicas of a stream must hold identical contents.

use super::{ReplicaDump, Violation};
use crate::cluster::history::StreamHistory;

pub const NAME: &str = "replica-agreement";

pub fn observe(
    stream: &mut StreamHistory,
    node: u64,
    index: u64,
    hash: u64,
    at_ms: u64,
    invariant: &'static str,
) -> Result<(), Violation> {
    if index == 0 {
        return Ok(());
    }
    match stream.hashes.get(&index) {
        Some(&(other_hash, other_node)) if other_hash != hash => Err(Violation::new(
            invariant,
            at_ms,
            format!("state at index {index} is {hash:016x}, but n{other_node} had {other_hash:016x}"),
        )
        .node(node)
        .stream(&stream.name)),
        Some(_) => Ok(()),
        None => {
            stream.hashes.insert(index, (hash, node));
            Ok(())
        }
    }
}

pub fn check_final(stream: &StreamHistory, replicas: &[ReplicaDump], at_ms: u64) -> Result<(), Violation> {
    let Some(first) = replicas.first() else { return Ok(()) };
    for r in &replicas[1..] {
        if r.first_seq != first.first_seq || r.last_seq != first.last_seq || r.messages != first.messages {
            let seq = (first.first_seq.min(r.first_seq)..=first.last_seq.max(r.last_seq))
                .find(|s| first.messages.get(s) != r.messages.get(s));
            let mut v = Violation::new(
                NAME,
                at_ms,
                format!(
                    "n{} holds {}..={} and n{} holds {}..={}, contents differ",
                    first.node, first.first_seq, first.last_seq, r.node, r.first_seq, r.last_seq
                ),
            )
            .node(r.node)
            .stream(&stream.name);
            if let Some(seq) = seq {
                v = v.seq(seq);
            }
            return Err(v);
        }
    }
    Ok(())
}
