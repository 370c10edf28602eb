//! Content digests: one 64-bit digest per stored message, kept as messages come and go, so
//! that a simulator can compare replicas' states every few steps without reading every
//! message back (docs/benchmarks.md, "Simulator speed").
//!
//! Off unless asked for (`FileStore::keep_digests`): production never pays for it. The store
//! digest is the wrapping sum of the message digests, so it does not depend on the order in
//! which messages came and a removal subtracts exactly what its append added.
//!
//! Invariants: `sum` is the wrapping sum of the values in `by_seq` (`check_whole`); `by_seq`
//! holds exactly the store's messages. The second is checked from outside:
//! `StreamMachine::state_hash` reads every message and asserts that the digest it computes
//! equals the kept one, and `FileStore::verify_digests` compares a window of messages with
//! their kept digests one by one, so a removal path that forgot to tell the digests (or a
//! store that lost a message) shows there.
//!
//! Bound: one entry per message in the store, so it grows with the store and no further.

use super::StoredMessage;
use crate::format::fnv::Fnv64;
use std::collections::BTreeMap;

/// The digest of one message: sequence, timestamp, subject, headers and payload.
pub fn message_digest(seq: u64, timestamp_ns: i64, subject: &[u8], headers: &[u8], payload: &[u8]) -> u64 {
    let mut h = Fnv64::new();
    h.u64(seq);
    h.i64(timestamp_ns);
    h.bytes(subject);
    h.bytes(headers);
    h.bytes(payload);
    h.finish()
}

/// `message_digest` of a message read back.
pub fn stored_digest(m: &StoredMessage) -> u64 {
    message_digest(m.seq, m.timestamp_ns, &m.subject, &m.headers, &m.payload)
}

#[derive(Debug, Default)]
pub(crate) struct Digests {
    by_seq: BTreeMap<u64, u64>,
    sum: u64,
}

impl Digests {
    pub fn insert(&mut self, seq: u64, digest: u64) {
        let old = self.by_seq.insert(seq, digest);
        assert!(old.is_none(), "message {seq} digested twice");
        self.sum = self.sum.wrapping_add(digest);
    }

    pub fn remove(&mut self, seq: u64) {
        let digest = self.by_seq.remove(&seq).unwrap_or_else(|| panic!("message {seq} removed but never digested"));
        self.sum = self.sum.wrapping_sub(digest);
    }

    /// Forgets every message outside `first..next`.
    pub fn keep_range(&mut self, first: u64, next: u64) {
        let mut kept = self.by_seq.split_off(&first);
        let above = kept.split_off(&next.max(first));
        let below = std::mem::replace(&mut self.by_seq, kept);
        for digest in below.into_values().chain(above.into_values()) {
            self.sum = self.sum.wrapping_sub(digest);
        }
    }

    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// The kept digests of sequences in `from..end`, in order.
    pub fn range(&self, from: u64, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_seq.range(from..end.max(from)).map(|(&seq, &digest)| (seq, digest))
    }

    /// Panics unless `sum` is the sum of the kept digests, and they are `msgs` digests, all
    /// for sequences in `first_seq..next_seq` (none left over from a removal). The
    /// per-message half of the invariants is checked against the store's reads
    /// (`FileStore::verify_digests`). O(messages), in memory.
    pub fn check_whole(&self, first_seq: u64, next_seq: u64, msgs: u64) {
        let walked = self.by_seq.values().fold(0u64, |sum, &d| sum.wrapping_add(d));
        assert_eq!(walked, self.sum, "the kept digests' sum disagrees with the digests");
        assert_eq!(self.by_seq.len() as u64, msgs, "as many kept digests as messages");
        if let (Some((&first, _)), Some((&last, _))) = (self.by_seq.first_key_value(), self.by_seq.last_key_value()) {
            assert!(
                first >= first_seq && last < next_seq,
                "a digest kept for a sequence outside {first_seq}..{next_seq}"
            );
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    /// Breaks the invariant on purpose, for tests of `check_whole`.
    #[cfg(test)]
    pub fn add_to_sum_for_test(&mut self, amount: u64) {
        self.sum = self.sum.wrapping_add(amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_undoes_insertion_in_any_order() {
        let mut d = Digests::default();
        let digests: Vec<(u64, u64)> = (1..=6).map(|s| (s, message_digest(s, 7, b"a", b"", &[s as u8]))).collect();
        for &(s, x) in &digests {
            d.insert(s, x);
        }
        let all = d.sum();
        d.remove(3);
        assert_ne!(d.sum(), all);
        d.insert(3, digests[2].1);
        assert_eq!(d.sum(), all);
        d.keep_range(2, 5);
        assert_eq!(d.len(), 3);
        let expected = digests[1..4].iter().fold(0u64, |s, &(_, x)| s.wrapping_add(x));
        assert_eq!(d.sum(), expected);
        d.keep_range(9, 9);
        assert_eq!((d.len(), d.sum()), (0, 0));
    }

    #[test]
    fn the_digest_covers_every_field() {
        let base = message_digest(1, 2, b"s", b"h", b"p");
        assert_ne!(base, message_digest(2, 2, b"s", b"h", b"p"));
        assert_ne!(base, message_digest(1, 3, b"s", b"h", b"p"));
        assert_ne!(base, message_digest(1, 2, b"t", b"h", b"p"));
        assert_ne!(base, message_digest(1, 2, b"s", b"i", b"p"));
        assert_ne!(base, message_digest(1, 2, b"s", b"h", b"q"));
        // Length prefixes keep a byte from moving between fields unnoticed.
        assert_ne!(message_digest(1, 2, b"sh", b"", b"p"), message_digest(1, 2, b"s", b"h", b"p"));
    }
}
