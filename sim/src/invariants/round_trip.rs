//! Backup round trip: a stream restored from an archive holds exactly what the archive
//! holds: the same range and count, every message at its sequence with its timestamp,
//! subject, headers and payload, every other sequence a gap, and the same consumers with
//! the same state (compared as their exports' bytes).

use super::Violation;
use crate::cluster::backup::Archived;
use sluice_core::disk::Disk;
use sluice_core::node::Node;

pub const NAME: &str = "backup-round-trip";

/// Checks stream `name` on `node` against `archived`.
pub fn check<D: Disk>(node: &Node<D>, name: &str, archived: &Archived, at_ms: u64) -> Result<(), Violation> {
    let fail = |detail: String| Violation::new(NAME, at_ms, detail).node(node.id()).stream(name);
    let info = node.stream_info(name).map_err(|e| fail(format!("stream info: {e}")))?;
    let (have, want) = (info.stream.state, archived.manifest.state);
    let first_msg = archived.messages.first().map_or(want.last_seq + 1, |m| m.seq);
    if (have.first_seq, have.last_seq, have.msgs) != (first_msg, want.last_seq, archived.messages.len() as u64) {
        return Err(fail(format!(
            "holds {}..={} with {} messages; the archive {first_msg}..={} with {}",
            have.first_seq,
            have.last_seq,
            have.msgs,
            want.last_seq,
            archived.messages.len()
        )));
    }
    let mut archived_msgs = archived.messages.iter().peekable();
    for seq in have.first_seq..=have.last_seq {
        let got = node.get_message(name, seq).map_err(|e| fail(format!("reading {seq}: {e}")).seq(seq))?;
        let want = archived_msgs.next_if(|m| m.seq == seq);
        if got.as_ref() != want {
            return Err(fail(format!("holds {got:?}; the archive {want:?}")).seq(seq));
        }
    }
    let names = node.consumer_names(name).map_err(|e| fail(format!("consumers: {e}")))?;
    let exports: Vec<Vec<u8>> = names.iter().filter_map(|c| node.consumer_export(name, c).ok().flatten()).collect();
    if exports != archived.consumers {
        return Err(fail(format!("consumers {names:?} differ from the archive's {}", archived.consumers.len())));
    }
    Ok(())
}
