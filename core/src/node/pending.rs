//! Client requests waiting for the log entry their proposal got, shared by the meta group and
//! every stream replica. A request is answered once by whichever comes first: the entry at its
//! index applies (with its term: the outcome; another term: the proposal was lost), a snapshot
//! covers the index (outcome unknown), its deadline passes, or its replica closes.

use super::RequestId;
use crate::env::MonoTime;
use crate::raft::{Index, Term};
use std::collections::BTreeMap;

struct Waiting {
    term: Term,
    request: RequestId,
    deadline: MonoTime,
}

#[derive(Default)]
pub(super) struct PendingRequests {
    by_index: BTreeMap<Index, Waiting>,
}

impl PendingRequests {
    /// Records the proposal at (`index`, `term`). Returns the request an earlier term's
    /// proposal at that index had: overwritten, it is lost.
    pub fn insert(&mut self, index: Index, term: Term, request: RequestId, deadline: MonoTime) -> Option<RequestId> {
        let previous = self.by_index.insert(index, Waiting { term, request, deadline });
        assert!(previous.as_ref().is_none_or(|p| p.term < term), "index {index} proposed twice in term {term}");
        previous.map(|p| p.request)
    }

    /// The request waiting for the entry that applied at (`index`, `term`), and whether that
    /// entry is its own (same term).
    pub fn take(&mut self, index: Index, term: Term) -> Option<(RequestId, bool)> {
        self.by_index.remove(&index).map(|p| (p.request, p.term == term))
    }

    /// Requests at or below `index` (a snapshot covers them).
    pub fn take_through(&mut self, index: Index) -> Vec<RequestId> {
        let rest = match index.checked_add(1) {
            Some(next) => self.by_index.split_off(&next),
            None => BTreeMap::new(),
        };
        std::mem::replace(&mut self.by_index, rest).into_values().map(|p| p.request).collect()
    }

    /// Requests whose deadline has passed.
    pub fn take_expired(&mut self, now: MonoTime) -> Vec<RequestId> {
        let expired: Vec<Index> = self.by_index.iter().filter(|(_, p)| p.deadline <= now).map(|(i, _)| *i).collect();
        expired.into_iter().map(|i| self.by_index.remove(&i).expect("listed").request).collect()
    }

    pub fn take_all(&mut self) -> Vec<RequestId> {
        std::mem::take(&mut self.by_index).into_values().map(|p| p.request).collect()
    }

    pub fn len(&self) -> usize {
        self.by_index.len()
    }

    pub fn first_index(&self) -> Option<Index> {
        self.by_index.keys().next().copied()
    }
}
