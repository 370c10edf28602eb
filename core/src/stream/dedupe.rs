//! De-duplication of publishes by message id (`Nats-Msg-Id`) within a time window.
//!
//! Time here is the stream's **clock**: the highest leader-chosen timestamp applied so far
//! (publish timestamps and `Expire` entries). It never reads a local clock and never goes
//! backwards, so every replica that applied the same entries holds the same ids, and a
//! leader whose clock lags its predecessor's cannot shorten the window. An id is recorded at
//! the clock's value when its message was stored, so records are ordered by (time, sequence)
//! in insertion order; the oldest is evicted first, both by age and by count
//! (`DEDUPE_IDS_MAX`).
//!
//! An id is live while `clock - recorded_ns <= window`. A window of zero turns
//! de-duplication off. Rules in docs/streams.md.
//!
//! `digest` is the wrapping sum of `entry_digest` over the remembered ids, kept as ids come
//! and go, so a state hash need not walk them all (`StreamMachine::state_hash_kept`); the full
//! `state_hash` walks them and asserts that it agrees.

use crate::format::fnv::Fnv64;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::Duration;

/// Most message ids remembered at once; beyond it the oldest is forgotten first. Bounds the
/// memory (about 300 bytes an id) and the snapshot (at most ~18 MiB of ids).
pub const DEDUPE_IDS_MAX: usize = 65_536;

/// Consecutive entries `check_invariants` checks per call, at most (order, and a lookup in
/// the id index each).
const CHECK_WINDOW_MAX: usize = 32;

/// One remembered id: the message it stored and when (stream clock, ns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DedupeEntry {
    pub msg_id: Bytes,
    pub seq: u64,
    pub timestamp_ns: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dedupe {
    window_ns: i64,
    clock_ns: i64,
    /// id -> (seq, recorded_ns).
    by_id: BTreeMap<Bytes, (u64, i64)>,
    /// (recorded_ns, seq) -> id: the eviction order.
    by_age: BTreeMap<(i64, u64), Bytes>,
    /// Wrapping sum of `entry_digest` over `by_age`.
    digest: u64,
}

/// The digest of one remembered id (see the module docs).
fn entry_digest(msg_id: &[u8], seq: u64, timestamp_ns: i64) -> u64 {
    let mut h = Fnv64::new();
    h.bytes(msg_id);
    h.u64(seq);
    h.i64(timestamp_ns);
    h.finish()
}

/// The sum of `entry_digest` over `by_age`, walking it.
fn walked_digest(by_age: &BTreeMap<(i64, u64), Bytes>) -> u64 {
    by_age.iter().fold(0u64, |sum, (&(ns, seq), id)| sum.wrapping_add(entry_digest(id, seq, ns)))
}

/// Why a set of dedupe entries cannot be loaded (from a snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DedupeLoadError {
    TooMany {
        count: usize,
    },
    EmptyId,
    DuplicateId {
        seq: u64,
    },
    /// Entries are not in strictly increasing (timestamp, seq) order.
    OutOfOrder {
        seq: u64,
    },
    /// An entry is newer than the clock it is loaded with.
    AfterClock {
        seq: u64,
    },
}

impl Dedupe {
    pub fn new(window: Duration) -> Self {
        Dedupe {
            window_ns: i64::try_from(window.as_nanos()).unwrap_or(i64::MAX),
            clock_ns: i64::MIN,
            by_id: BTreeMap::new(),
            by_age: BTreeMap::new(),
            digest: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.window_ns > 0
    }

    pub fn clock_ns(&self) -> i64 {
        self.clock_ns
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The wrapping sum of `entry_digest` over every remembered id.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Panics unless `digest` is the sum over the remembered ids. O(ids): `check_invariants`
    /// leaves it to the full `StreamMachine::state_hash`.
    pub fn check_digest(&self) {
        assert_eq!(walked_digest(&self.by_age), self.digest, "the dedupe table's digest disagrees with its ids");
    }

    fn forget(&mut self, (ns, seq): (i64, u64), id: &[u8]) {
        self.digest = self.digest.wrapping_sub(entry_digest(id, seq, ns));
    }

    /// Moves the clock forward to `now_ns` (never back) and forgets ids older than the window.
    pub fn advance(&mut self, now_ns: i64) {
        self.clock_ns = self.clock_ns.max(now_ns);
        let oldest_live = self.clock_ns.saturating_sub(self.window_ns);
        while let Some(entry) = self.by_age.first_entry() {
            if entry.key().0 >= oldest_live {
                break;
            }
            let (key, id) = entry.remove_entry();
            self.forget(key, &id);
            self.by_id.remove(&id);
        }
    }

    /// The sequence of the message stored under `msg_id` within the window, if any. Call
    /// after `advance` to the entry's timestamp. An empty id is never a duplicate.
    pub fn check(&self, msg_id: &[u8]) -> Option<u64> {
        if msg_id.is_empty() || !self.enabled() {
            return None;
        }
        self.by_id.get(msg_id).map(|&(seq, _)| seq)
    }

    /// Records that `msg_id` stored message `seq` now (at the clock). `seq` must be above
    /// every recorded sequence (messages are stored in order).
    pub fn record(&mut self, msg_id: &[u8], seq: u64) {
        if msg_id.is_empty() || !self.enabled() {
            return;
        }
        if let Some((&(_, last_seq), _)) = self.by_age.last_key_value() {
            assert!(seq > last_seq, "dedupe records sequence {seq} after {last_seq}");
        }
        let id = Bytes::copy_from_slice(msg_id);
        if let Some((old_seq, old_ns)) = self.by_id.insert(id.clone(), (seq, self.clock_ns)) {
            // Only an id outside the window can be recorded again, and those are pruned by
            // `advance`; keep the indexes consistent regardless.
            if let Some(old_id) = self.by_age.remove(&(old_ns, old_seq)) {
                self.forget((old_ns, old_seq), &old_id);
            }
        }
        self.digest = self.digest.wrapping_add(entry_digest(&id, seq, self.clock_ns));
        self.by_age.insert((self.clock_ns, seq), id);
        while self.by_id.len() > DEDUPE_IDS_MAX {
            let (key, oldest) = self.by_age.pop_first().expect("more ids than the bound, so at least one");
            self.forget(key, &oldest);
            self.by_id.remove(&oldest);
        }
    }

    /// Every remembered id, oldest first: the canonical order the snapshot encodes.
    pub fn entries(&self) -> impl Iterator<Item = DedupeEntry> + '_ {
        self.by_age.iter().map(|(&(timestamp_ns, seq), id)| DedupeEntry { msg_id: id.clone(), seq, timestamp_ns })
    }

    /// Replaces the state with `entries` (oldest first, as `entries()` yields them) at clock
    /// `clock_ns`, then prunes by this window (which may be shorter than the one they were
    /// recorded under).
    pub fn load(&mut self, clock_ns: i64, entries: &[DedupeEntry]) -> Result<(), DedupeLoadError> {
        if entries.len() > DEDUPE_IDS_MAX {
            return Err(DedupeLoadError::TooMany { count: entries.len() });
        }
        let mut by_id = BTreeMap::new();
        let mut by_age = BTreeMap::new();
        let mut previous: Option<(i64, u64)> = None;
        for e in entries {
            if e.msg_id.is_empty() {
                return Err(DedupeLoadError::EmptyId);
            }
            let key = (e.timestamp_ns, e.seq);
            if previous.is_some_and(|p| p >= key || p.1 >= e.seq) {
                return Err(DedupeLoadError::OutOfOrder { seq: e.seq });
            }
            if e.timestamp_ns > clock_ns {
                return Err(DedupeLoadError::AfterClock { seq: e.seq });
            }
            previous = Some(key);
            if by_id.insert(e.msg_id.clone(), (e.seq, e.timestamp_ns)).is_some() {
                return Err(DedupeLoadError::DuplicateId { seq: e.seq });
            }
            by_age.insert(key, e.msg_id.clone());
        }
        self.clock_ns = clock_ns;
        self.by_id = by_id;
        self.digest = walked_digest(&by_age);
        self.by_age = by_age;
        if self.enabled() {
            self.advance(clock_ns);
        } else {
            self.by_id.clear();
            self.by_age.clear();
            self.digest = 0;
        }
        Ok(())
    }

    /// Highest sequence remembered.
    pub fn last_seq(&self) -> Option<u64> {
        self.by_age.last_key_value().map(|(&(_, seq), _)| seq)
    }

    pub fn check_invariants(&self) {
        assert_eq!(self.by_id.len(), self.by_age.len(), "dedupe indexes disagree in size");
        assert!(self.by_id.len() <= DEDUPE_IDS_MAX, "dedupe holds more than DEDUPE_IDS_MAX");
        let (Some((&oldest, _)), Some((&newest, _))) = (self.by_age.first_key_value(), self.by_age.last_key_value())
        else {
            return;
        };
        // The ends bound every entry: keys are ordered by time first.
        assert!(newest.0 <= self.clock_ns, "dedupe id recorded after the clock");
        assert!(oldest.0 >= self.clock_ns.saturating_sub(self.window_ns), "dedupe holds an expired id");
        assert!(oldest.1 < newest.1 || self.by_age.len() == 1, "dedupe sequences out of order");
        // Order and the id index are checked over a window of CHECK_WINDOW_MAX consecutive
        // entries that the clock places in time, not over all of them: the simulator runs
        // this every 500 ms on every replica, where walking a full table was a twentieth of a
        // run and cross-checking every id a quarter. The clock moves with every publish, so
        // over a run the window passes over every entry and every adjacent pair.
        // Sequences place it among ids recorded at one time (a batch shares its timestamp). A
        // run of more than CHECK_WINDOW_MAX ids at one time, in a table spanning more than that
        // instant, is reached past its first ids only when the start falls on that instant;
        // batches are smaller than that in practice (the simulator keeps 32 in flight).
        let ns_span = i128::from(newest.0) - i128::from(oldest.0) + 1;
        let start_ns = i64::try_from(i128::from(oldest.0) + i128::from(self.clock_ns).rem_euclid(ns_span))
            .expect("within oldest..=newest");
        let seq_span = newest.1 - oldest.1 + 1;
        let start_seq = oldest.1 + self.clock_ns.unsigned_abs() % seq_span;
        let mut previous_seq: Option<u64> = None;
        for (&(ns, seq), id) in self.by_age.range((start_ns, start_seq)..).take(CHECK_WINDOW_MAX) {
            assert_eq!(self.by_id.get(id), Some(&(seq, ns)), "dedupe indexes disagree on an id");
            if let Some(previous) = previous_seq {
                assert!(seq > previous, "dedupe sequences out of order");
            }
            previous_seq = Some(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn duplicate_within_window_and_forgotten_after() {
        let mut d = Dedupe::new(Duration::from_secs(10));
        d.advance(100 * SEC);
        assert_eq!(d.check(b"a"), None);
        d.record(b"a", 1);
        d.advance(110 * SEC);
        assert_eq!(d.check(b"a"), Some(1), "exactly at the window's edge: still a duplicate");
        d.advance(110 * SEC + 1);
        assert_eq!(d.check(b"a"), None);
        assert!(d.is_empty());
        d.check_invariants();
    }

    #[test]
    fn the_cross_check_finds_an_id_that_disagrees_once_its_window_covers_it() {
        let mut d = Dedupe::new(Duration::from_secs(1_000));
        d.advance(1_000 * SEC);
        for seq in 1..=200u64 {
            d.record(format!("id-{seq}").as_bytes(), seq);
        }
        d.check_invariants();
        // Entry 150 now disagrees between the two indexes.
        d.by_id.insert(Bytes::from("id-150"), (151, 1_000 * SEC));
        // All 200 share one timestamp, so sequences place the window: 1 + clock % 200. At a
        // clock of 1,000 s it starts at 1 and misses 150.
        d.check_invariants();
        d.clock_ns = 1_000 * SEC + 140;
        let caught = std::panic::catch_unwind(|| d.check_invariants());
        assert!(caught.is_err(), "sequences 141..=204 include 150");
    }

    #[test]
    fn the_window_is_placed_in_time_when_ids_are_spread_out() {
        let mut d = Dedupe::new(Duration::from_secs(1_000));
        for seq in 1..=200u64 {
            d.advance(seq as i64 * SEC);
            d.record(format!("id-{seq}").as_bytes(), seq);
        }
        d.by_id.insert(Bytes::from("id-150"), (151, 150 * SEC));
        // The window starts at oldest + clock % (199 s + 1 ns): at a clock of 200 s that is
        // just under 2 s, so it holds 2..=65.
        d.advance(200 * SEC);
        d.check_invariants();
        // At 318 s + 1 ns it starts at 120 s, and 120..=183 include 150.
        d.advance(318 * SEC + 1);
        let caught = std::panic::catch_unwind(|| d.check_invariants());
        assert!(caught.is_err(), "the window placed at 120 s covers 150");
    }

    #[test]
    fn a_sequence_out_of_order_inside_the_window_is_found() {
        let mut d = Dedupe::new(Duration::from_secs(1_000));
        d.advance(SEC);
        for seq in [1u64, 2, 3] {
            d.record(format!("id-{seq}").as_bytes(), seq);
        }
        d.check_invariants();
        // Same time, so (ns, seq) order is seq order; a later time with a lower seq is not.
        d.by_age.insert((2 * SEC, 2), Bytes::from("late"));
        d.by_id.insert(Bytes::from("late"), (2, 2 * SEC));
        d.by_age.insert((2 * SEC, 4), Bytes::from("later"));
        d.by_id.insert(Bytes::from("later"), (4, 2 * SEC));
        // At 2 s + 2 ns the window starts at (1 s + 0, 1 + 2) = (1 s, 3): 3, then 2.
        d.clock_ns = 2 * SEC + 2;
        let caught = std::panic::catch_unwind(|| d.check_invariants());
        assert!(caught.is_err(), "seq 2 after seq 3 in age order");
    }

    #[test]
    fn clock_never_goes_back() {
        let mut d = Dedupe::new(Duration::from_secs(10));
        d.advance(100 * SEC);
        d.record(b"a", 1);
        // A new leader whose clock lags by a minute: the id is still within the window.
        d.advance(40 * SEC);
        assert_eq!(d.clock_ns(), 100 * SEC);
        assert_eq!(d.check(b"a"), Some(1));
        d.record(b"b", 2);
        assert_eq!(d.entries().map(|e| e.timestamp_ns).collect::<Vec<_>>(), vec![100 * SEC, 100 * SEC]);
        d.check_invariants();
    }

    #[test]
    fn count_bound_evicts_oldest() {
        let mut d = Dedupe::new(Duration::from_secs(3600));
        for seq in 1..=(DEDUPE_IDS_MAX as u64 + 2) {
            d.advance(seq as i64);
            d.record(format!("id-{seq}").as_bytes(), seq);
        }
        assert_eq!(d.len(), DEDUPE_IDS_MAX);
        assert_eq!(d.check(b"id-1"), None);
        assert_eq!(d.check(b"id-2"), None);
        assert_eq!(d.check(b"id-3"), Some(3));
        d.check_invariants();
        d.check_digest(); // eviction by count keeps the digest
    }

    #[test]
    fn the_kept_digest_follows_every_change() {
        let mut d = Dedupe::new(Duration::from_nanos(10 * SEC as u64));
        assert_eq!(d.digest(), 0);
        for seq in 1..=20u64 {
            d.advance(seq as i64 * SEC);
            d.record(format!("id-{}", seq % 7).as_bytes(), seq);
            d.check_digest();
        }
        let (full, ids) = (d.digest(), d.len());
        d.advance(25 * SEC);
        assert!(d.len() < ids && d.digest() != full, "expiry forgot ids");
        d.check_digest();
        let entries: Vec<DedupeEntry> = d.entries().collect();
        let mut loaded = Dedupe::new(Duration::from_nanos(10 * SEC as u64));
        loaded.load(d.clock_ns(), &entries).unwrap();
        assert_eq!(loaded.digest(), d.digest(), "a load computes the same digest");
        let mut off = Dedupe::new(Duration::ZERO);
        off.load(d.clock_ns(), &entries).unwrap();
        assert_eq!(off.digest(), 0, "a disabled table remembers nothing");
    }

    #[test]
    fn zero_window_disables() {
        let mut d = Dedupe::new(Duration::ZERO);
        d.advance(5);
        d.record(b"a", 1);
        assert_eq!(d.check(b"a"), None);
        assert!(d.is_empty());
    }

    #[test]
    fn load_round_trips_and_rejects_bad_input() {
        let mut d = Dedupe::new(Duration::from_secs(10));
        d.advance(SEC);
        d.record(b"a", 1);
        d.advance(2 * SEC);
        d.record(b"b", 5);
        let entries: Vec<_> = d.entries().collect();
        let mut e = Dedupe::new(Duration::from_secs(10));
        e.load(d.clock_ns(), &entries).unwrap();
        assert_eq!(e, d);

        let dup =
            vec![entries[0].clone(), DedupeEntry { msg_id: Bytes::from_static(b"a"), seq: 6, timestamp_ns: 2 * SEC }];
        assert_eq!(e.load(2 * SEC, &dup), Err(DedupeLoadError::DuplicateId { seq: 6 }));
        let reversed: Vec<_> = entries.iter().rev().cloned().collect();
        assert_eq!(e.load(2 * SEC, &reversed), Err(DedupeLoadError::OutOfOrder { seq: 1 }));
        assert_eq!(e.load(SEC, &entries), Err(DedupeLoadError::AfterClock { seq: 5 }));
        // A failed load changes nothing.
        assert_eq!(e, d);
        // A shorter window prunes on load.
        let mut short = Dedupe::new(Duration::from_millis(500));
        short.load(2 * SEC, &entries).unwrap();
        assert_eq!(short.check(b"a"), None);
        assert_eq!(short.check(b"b"), Some(5));
    }
}
