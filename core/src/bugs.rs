//! Planted bugs: named, switchable mistakes modelled on real ones (DESIGN §5), so the
//! simulator's power to find bugs can be measured. The harness must catch each of them within
//! a bounded number of seeds, and the clean build must pass every seed.
//!
//! Two locks keep them out of production:
//! * they exist only with the cargo feature `planted-bugs`, which only the simulator crates
//!   enable; without it [`active`] is a constant `false` and every site compiles away;
//! * even with the feature, a bug is on only on a thread that called [`set`], and only the
//!   simulator's harness does. Nothing in the `sluice` binary calls it.
//!
//! A thread-local rather than a field in some config: the sites sit deep in the store, the
//! Raft log and the state machine, and threading a flag through every constructor would
//! change the code under test more than the bug does. The simulator runs each seed on one
//! thread, so a run is still a pure function of (scenario, seed, bug).

use std::fmt;

/// Every planted bug. `name()` is what `sluice-sim --bug NAME` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bug {
    /// The leader counts an entry committed once it is on its own disk, without a quorum, so
    /// it acknowledges publishes a new leader may never have seen.
    AckBeforeCommit,
    /// A granted vote is written without fsync (and its rename without a directory sync):
    /// after a crash the node may vote again in the same term, electing two leaders.
    VoteBeforeSync,
    /// A node whose log recovery cut committed entries still votes (pre-votes included),
    /// comparing candidates against a log shorter than what it once acknowledged.
    DamagedNodeVotes,
    /// A checkpoint writes the snapshot and compacts the Raft log without syncing the store
    /// first: with the `on_snapshot` policy the compacted entries may exist nowhere.
    SnapshotSkipsStoreSync,
    /// A new block file is written and synced but its directory entry never is: a crash can
    /// lose the whole file.
    BlockDirNotSynced,
    /// A failed fsync is retried, and the retry's success believed (fsyncgate): the pages
    /// the kernel dropped are acknowledged as durable.
    FsyncFailureBelieved,
    /// Startup restores streams in parallel before the services they share are started:
    /// starting them is queued as one more job, so a worker may read one that is not
    /// running yet (NATS #7503, a panic under parallel restore).
    RestoreBeforeServices,
    /// The archive reader trusts a record's declared lengths to fit its chunk (the class of
    /// NATS's restore bugs: a length from the archive used unchecked).
    RestoreTrustsArchiveLength,
}

impl Bug {
    pub const ALL: [Bug; 8] = [
        Bug::AckBeforeCommit,
        Bug::VoteBeforeSync,
        Bug::DamagedNodeVotes,
        Bug::SnapshotSkipsStoreSync,
        Bug::BlockDirNotSynced,
        Bug::FsyncFailureBelieved,
        Bug::RestoreBeforeServices,
        Bug::RestoreTrustsArchiveLength,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeCommit => "ack-before-commit",
            Bug::VoteBeforeSync => "vote-before-sync",
            Bug::DamagedNodeVotes => "damaged-node-votes",
            Bug::SnapshotSkipsStoreSync => "snapshot-skips-store-sync",
            Bug::BlockDirNotSynced => "block-dir-not-synced",
            Bug::FsyncFailureBelieved => "fsync-failure-believed",
            Bug::RestoreBeforeServices => "restore-before-services",
            Bug::RestoreTrustsArchiveLength => "restore-trusts-archive-length",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Bug::AckBeforeCommit => {
                "the leader commits (and acks) an entry once it is on its own disk, without a quorum"
            }
            Bug::VoteBeforeSync => "a granted vote is not fsynced, so after a crash the node can vote twice in a term",
            Bug::DamagedNodeVotes => "a node whose recovery cut committed log entries still grants votes",
            Bug::SnapshotSkipsStoreSync => "a checkpoint compacts the Raft log without syncing the store first",
            Bug::BlockDirNotSynced => "a new block file's directory entry is never synced",
            Bug::FsyncFailureBelieved => "a failed fsync is retried and the retry's success believed (fsyncgate)",
            Bug::RestoreBeforeServices => {
                "parallel startup restores streams before their shared services are started (NATS #7503)"
            }
            Bug::RestoreTrustsArchiveLength => "the archive reader trusts a record's declared lengths to fit its chunk",
        }
    }

    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(feature = "planted-bugs")]
mod switch {
    use super::Bug;
    use std::cell::Cell;

    thread_local! {
        static ACTIVE: Cell<Option<Bug>> = const { Cell::new(None) };
    }

    pub fn active(bug: Bug) -> bool {
        ACTIVE.with(|a| a.get() == Some(bug))
    }

    pub fn set(bug: Option<Bug>) {
        ACTIVE.with(|a| a.set(bug));
    }
}

/// Whether `bug` is switched on for this thread.
#[cfg(feature = "planted-bugs")]
pub use switch::active;

/// Switches one bug on for this thread (or none). The simulator's harness only.
#[cfg(feature = "planted-bugs")]
pub use switch::set;

/// Without the feature no bug can be on: every site compiles to the correct code.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub const fn active(_bug: Bug) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for bug in Bug::ALL {
            assert_eq!(Bug::from_name(bug.name()), Some(bug));
            assert!(!bug.description().is_empty());
        }
        let mut names: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Bug::ALL.len());
        assert_eq!(Bug::from_name("no-such-bug"), None);
    }
}
