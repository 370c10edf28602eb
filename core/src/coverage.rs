//! Coverage marks: named points on rare paths (a torn log tail cut at recovery, a follower's
//! conflicting suffix truncated, a BUGGIFY site firing), counted while a simulator run asks
//! for it, so a sweep's report can list the rare paths no seed reached. A path no seed
//! reaches is a path no seed tests (FoundationDB's `TEST()` macro, TigerBeetle's marks).
//!
//! Counting is per thread and off unless the harness called [`record`] on that thread; the
//! simulator runs each seed on one thread, as it does for planted bugs (`bugs.rs`). Production
//! never turns it on and pays one thread-local read per mark on a rare path. A mark never
//! steers a decision, so counting cannot change a run.
//!
//! Every name passed to [`mark`] is in [`MARKS`], and every BUGGIFY site in
//! `env::BUGGIFY_SITES` (asserted in debug builds, and by `core/tests/tidy.rs` in the other
//! direction: every listed name is used in the source).

use std::cell::RefCell;
use std::collections::BTreeMap;

/// Every coverage mark, as `area.what-happened`.
pub const MARKS: &[&str] = &[
    "raft.follower-truncates-suffix",
    "raft.snapshot-installed",
    "raft.vote-refused-damaged-log",
    "raft.leader-steps-down-no-quorum",
    "raft.log-tail-cut-at-recovery",
    "raft.log-lost-acknowledged-entries",
    "raft.recovery-rewrote-records-above-mark",
    "store.tail-cut-at-recovery",
    "store.truncated-after",
    "store.removals-released",
    "stream.duplicate-publish",
    "stream.discard-new-refused",
    "stream.catchup-chunk-refused",
    "node.catchup-ended-by-newer-snapshot",
    "node.catchup-asks-newer-snapshot",
    "node.checkpoint-compacted-log",
    "node.replica-stopped",
];

/// What a point is: a mark, or a BUGGIFY site that fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Point {
    Mark(&'static str),
    Buggify(&'static str),
}

impl Point {
    /// `mark:NAME` or `buggify:NAME`, as reports print it.
    pub fn key(self) -> String {
        match self {
            Point::Mark(name) => format!("mark:{name}"),
            Point::Buggify(site) => format!("buggify:{site}"),
        }
    }
}

/// Every point a run could reach, as keys: the marks, then the BUGGIFY sites.
pub fn all_keys() -> Vec<String> {
    let marks = MARKS.iter().map(|m| Point::Mark(m));
    let sites = crate::env::BUGGIFY_SITES.iter().map(|s| Point::Buggify(s));
    marks.chain(sites).map(Point::key).collect()
}

/// Hits are bounded by the number of names; each count saturates.
type Hits = BTreeMap<Point, u64>;

thread_local! {
    static HITS: RefCell<Option<Hits>> = const { RefCell::new(None) };
}

/// Notes that the rare path `name` (one of [`MARKS`]) ran.
pub fn mark(name: &'static str) {
    debug_assert!(MARKS.contains(&name), "coverage mark {name:?} is not in MARKS");
    hit(Point::Mark(name));
}

/// Notes that the BUGGIFY site `site` fired (called by `env::Buggify`).
pub(crate) fn buggify_fired(site: &'static str) {
    debug_assert!(crate::env::BUGGIFY_SITES.contains(&site), "BUGGIFY site {site:?} is not in BUGGIFY_SITES");
    hit(Point::Buggify(site));
}

fn hit(point: Point) {
    HITS.with(|h| {
        if let Some(hits) = h.borrow_mut().as_mut() {
            let n = hits.entry(point).or_insert(0);
            *n = n.saturating_add(1);
        }
    });
}

/// Starts counting on this thread, from zero.
pub fn record() {
    HITS.with(|h| *h.borrow_mut() = Some(Hits::new()));
}

/// Stops counting on this thread and returns the counts, keyed as [`Point::key`].
pub fn take() -> BTreeMap<String, u64> {
    let hits = HITS.with(|h| h.borrow_mut().take()).unwrap_or_default();
    hits.into_iter().map(|(p, n)| (p.key(), n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_while_recording() {
        mark("raft.snapshot-installed");
        record();
        mark("raft.snapshot-installed");
        mark("raft.snapshot-installed");
        mark("store.truncated-after");
        let hits = take();
        assert_eq!(hits.get("mark:raft.snapshot-installed"), Some(&2));
        assert_eq!(hits.get("mark:store.truncated-after"), Some(&1));
        assert_eq!(hits.len(), 2);
        mark("store.truncated-after");
        assert!(take().is_empty(), "nothing is kept after take()");
    }

    #[test]
    fn keys_are_unique_and_cover_marks_and_sites() {
        let keys = all_keys();
        let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "a name is listed twice");
        assert_eq!(keys.len(), MARKS.len() + crate::env::BUGGIFY_SITES.len());
    }
}
