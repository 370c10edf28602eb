//! What a leader knows about one follower: how far its log matches, what is in flight to it,
//! and when it last answered. Owned by `Raft` while it leads; dropped when it steps down.

use super::types::Index;
use crate::env::MonoTime;
use std::collections::VecDeque;

#[derive(Clone, Debug)]
pub struct Progress {
    /// The follower durably holds the leader's entries through this index.
    pub match_index: Index,
    /// The next entry to send.
    pub next_index: Index,
    /// Last index of each AppendEntries sent and not yet answered (bounded by the config's
    /// `inflight_appends_max`).
    pub inflight: VecDeque<Index>,
    pub last_heard: Option<MonoTime>,
    /// When the oldest append in flight was sent, or last acknowledged: appends lost while
    /// the follower was down stay in flight while its heartbeat answers keep `last_heard`
    /// fresh, so a stall is judged by this.
    pub inflight_since: MonoTime,
    /// An InstallSnapshot was sent at this time for this index and not yet answered.
    pub snapshot_sent: Option<(Index, MonoTime)>,
    /// The follower asked for a snapshot newer than this index (`Body::SnapshotRequest`).
    pub snapshot_wanted_above: Option<Index>,
}

impl Progress {
    pub fn new(last_index: Index) -> Progress {
        Progress {
            match_index: 0,
            next_index: last_index + 1,
            inflight: VecDeque::new(),
            last_heard: None,
            inflight_since: MonoTime::ZERO,
            snapshot_sent: None,
            snapshot_wanted_above: None,
        }
    }

    /// Answered within `window` of `now`.
    pub fn is_active(&self, now: MonoTime, window: std::time::Duration) -> bool {
        self.last_heard.is_some_and(|t| now.saturating_since(t) <= window)
    }

    pub fn check_invariants(&self, last_index: Index, inflight_max: usize) {
        assert!(self.match_index < self.next_index, "match {} next {}", self.match_index, self.next_index);
        assert!(self.next_index <= last_index + 1, "next {} beyond last {}", self.next_index, last_index);
        assert!(self.inflight.len() <= inflight_max);
    }
}
