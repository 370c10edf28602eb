//! Recovery equivalence: a replica rebuilt from its snapshot plus its log tail holds the
//! same state as one that applied every entry.
//!
//! Two checks. During the run, the first states a restarted replica reports are compared
//! with what any replica had at the same index (the agreement table, under this name). At
//! the end, once the replicas agree, every node is restarted cleanly; after they converge
//! again each replica must hold exactly what it held before.

use super::{ReplicaDump, Violation};

pub const NAME: &str = "recovery-equivalence";

/// `after` may hold more (the probe published after the restart, and what limits then
/// dropped from the front); every sequence of `before` still in `after`'s range must hold
/// the same message.
pub fn check_restart(stream: &str, before: &ReplicaDump, after: &ReplicaDump, at_ms: u64) -> Result<(), Violation> {
    let from = before.first_seq.max(after.first_seq);
    let seq = if after.last_seq < before.last_seq || after.first_seq > before.last_seq.saturating_add(1) {
        Some(after.last_seq.min(before.last_seq))
    } else {
        (from..=before.last_seq).find(|s| before.messages.get(s) != after.messages.get(s))
    };
    if seq.is_none() {
        return Ok(());
    }
    let mut v = Violation::new(
        NAME,
        at_ms,
        format!(
            "before a clean restart {}..={} ({} messages), after {}..={} ({} messages)",
            before.first_seq,
            before.last_seq,
            before.messages.len(),
            after.first_seq,
            after.last_seq,
            after.messages.len()
        ),
    )
    .node(before.node)
    .stream(stream);
    if let Some(seq) = seq {
        v = v.seq(seq);
    }
    Err(v)
}
