//! Tests of the stream state machine on the production disk (temporary directories).

use super::*;
use crate::os::OsDisk;
use crate::store::{Discard, LimitKind, Limits, StoreConfig, SyncPolicy};
use crate::testutil::temp_root;
use bytes::Bytes;
use std::path::PathBuf;
use std::time::Duration;

const SEC: i64 = 1_000_000_000;

struct Fixture {
    disk: OsDisk,
    dirs: Vec<PathBuf>,
}

impl Fixture {
    fn new(tag: &str) -> Self {
        Fixture { disk: OsDisk::new(temp_root(tag)).unwrap(), dirs: Vec::new() }
    }

    /// Opens keeping message digests, so every `state_hash` below also asserts that the
    /// kept digests match the store, and `apply_all` compares the two hashes.
    fn open(&mut self, dir: &str, config: StreamConfig) -> StreamMachine<OsDisk> {
        self.dirs.push(PathBuf::from(dir));
        let (mut m, _report) = StreamMachine::open(self.disk.clone(), Path::new(dir), config).unwrap();
        m.keep_digests().unwrap();
        m.check_invariants();
        m
    }

    /// Opens and restores to the initial snapshot: a fresh, active replica.
    fn fresh(&mut self, dir: &str, config: StreamConfig) -> StreamMachine<OsDisk> {
        let mut m = self.open(dir, config);
        assert!(matches!(m.restore(&StreamSnapshot::initial()).unwrap(), RestoreOutcome::Ready { .. }));
        m
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Through the Disk trait: this file may not use std::fs (tidy).
        for dir in &self.dirs {
            for name in self.disk.list_dir(dir).unwrap_or_default() {
                let _ = self.disk.remove_file(&dir.join(name));
            }
            let _ = self.disk.remove_dir(dir);
        }
    }
}

fn config(limits: Limits) -> StreamConfig {
    StreamConfig {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        store: StoreConfig { block_size_bytes: 512, write_buffer_bytes: 256, sync: SyncPolicy::OnSnapshot, limits },
        dedupe_window: Duration::from_secs(10),
    }
}

fn publish(ts: i64, id: &str, subject: &str, payload: &str) -> Vec<u8> {
    publish_expecting(ts, id, subject, payload, None)
}

fn publish_expecting(ts: i64, id: &str, subject: &str, payload: &str, expected_last_seq: Option<u64>) -> Vec<u8> {
    StreamEntry::Publish(Publish {
        timestamp_ns: ts,
        msg_id: Bytes::copy_from_slice(id.as_bytes()),
        subject: Bytes::copy_from_slice(subject.as_bytes()),
        headers: Bytes::from_static(b"h:1"),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        expected_last_seq,
    })
    .encode()
    .unwrap()
}

fn entry(e: StreamEntry) -> Vec<u8> {
    e.encode().unwrap()
}

fn stored(seq: u64) -> ApplyOutcome {
    ApplyOutcome::Stored { seq }
}

fn rejected(reason: RejectReason) -> ApplyOutcome {
    ApplyOutcome::Rejected { reason }
}

/// A log: (index, entry bytes) from index 1.
fn log_of(entries: Vec<Vec<u8>>) -> Vec<(u64, Vec<u8>)> {
    entries.into_iter().enumerate().map(|(i, e)| (i as u64 + 1, e)).collect()
}

fn apply_all(m: &mut StreamMachine<OsDisk>, log: &[(u64, Vec<u8>)]) -> Vec<ApplyOutcome> {
    log.iter()
        .map(|(index, data)| {
            let outcome = m.apply(*index, data).unwrap();
            m.check_invariants();
            assert_eq!(m.state_hash_kept(), Some(m.state_hash().unwrap()), "after entry {index}");
            outcome
        })
        .collect()
}

/// A mixed workload: publishes (some with ids, some repeated), deletes, a purge.
fn workload() -> Vec<Vec<u8>> {
    let mut log = Vec::new();
    for i in 0..30i64 {
        let id = if i % 3 == 0 { format!("id-{i}") } else { String::new() };
        log.push(publish(i * SEC, &id, &format!("orders.{}", i % 4), &format!("payload-{i}")));
        if i % 7 == 6 {
            log.push(entry(StreamEntry::Delete { seq: (i as u64) - 2 }));
        }
        if i == 20 {
            log.push(entry(StreamEntry::Purge(Purge::Before { seq: 4 })));
        }
        if i % 9 == 8 {
            // A client retry of an earlier publish.
            log.push(publish(i * SEC, &format!("id-{}", i - 2), "orders.x", "retry"));
        }
    }
    log
}

#[test]
fn publishes_deletes_purges_and_refusals() {
    let mut fx = Fixture::new("stream-basic");
    let mut m = fx.fresh("s", config(Limits::default()));
    assert_eq!(m.apply(1, &publish(SEC, "", "orders.eu", "a")).unwrap(), stored(1));
    assert_eq!(m.apply(2, &publish(SEC, "", "orders.us", "b")).unwrap(), stored(2));
    assert_eq!(m.apply(3, &publish(SEC, "", "audit.x", "c")).unwrap(), rejected(RejectReason::SubjectNotInStream));
    assert_eq!(
        m.apply(4, &publish(SEC, "", "orders.*", "c")).unwrap(),
        rejected(RejectReason::InvalidSubject { reason: "wildcard in a literal subject" })
    );
    assert!(matches!(
        m.apply(5, b"\x01\x09garbage").unwrap(),
        ApplyOutcome::Rejected { reason: RejectReason::Malformed(_) }
    ));
    assert_eq!(
        m.apply(6, &publish_expecting(SEC, "", "orders.eu", "d", Some(1))).unwrap(),
        rejected(RejectReason::WrongLastSeq { expected: 1, last_seq: 2 })
    );
    assert_eq!(m.apply(7, &publish_expecting(SEC, "", "orders.eu", "d", Some(2))).unwrap(), stored(3));
    assert_eq!(m.apply(8, &publish(SEC, "", "orders.eu", "e")).unwrap(), stored(4));
    assert_eq!(m.apply(9, &entry(StreamEntry::Delete { seq: 2 })).unwrap(), ApplyOutcome::Deleted { seq: 2 });
    assert_eq!(
        m.apply(10, &entry(StreamEntry::Delete { seq: 2 })).unwrap(),
        rejected(RejectReason::NoSuchMessage { seq: 2 })
    );
    assert_eq!(
        m.apply(11, &entry(StreamEntry::Delete { seq: 99 })).unwrap(),
        rejected(RejectReason::NoSuchMessage { seq: 99 })
    );
    m.check_invariants();
    let got = m.get(3).unwrap().unwrap();
    assert_eq!(
        (&got.subject[..], &got.headers[..], &got.payload[..], got.timestamp_ns),
        (&b"orders.eu"[..], &b"h:1"[..], &b"d"[..], SEC)
    );
    assert_eq!(m.get(2).unwrap(), None);
    // Purge before 4 removes 1 and 3 (2 was deleted).
    assert_eq!(
        m.apply(12, &entry(StreamEntry::Purge(Purge::Before { seq: 4 }))).unwrap(),
        ApplyOutcome::Purged { count: 2 }
    );
    // A purge point far beyond the end purges everything but does not move the last sequence.
    assert_eq!(
        m.apply(13, &entry(StreamEntry::Purge(Purge::Before { seq: 1000 }))).unwrap(),
        ApplyOutcome::Purged { count: 1 }
    );
    assert_eq!(m.state().last_seq, 4);
    assert_eq!(m.apply(14, &publish(SEC, "", "orders.eu", "f")).unwrap(), stored(5));
    assert_eq!(m.apply(15, &entry(StreamEntry::Purge(Purge::All))).unwrap(), ApplyOutcome::Purged { count: 1 });
    assert_eq!(m.state().first_seq, 6);
    assert_eq!(m.state().msgs, 0);
    m.check_invariants();
    let info = m.info();
    assert_eq!((info.name.as_str(), info.catching_up), ("ORDERS", None));
}

#[test]
#[should_panic(expected = "before restore")]
fn apply_before_restore_panics() {
    let mut fx = Fixture::new("stream-unrestored");
    let mut m = fx.open("s", config(Limits::default()));
    let _ = m.apply(1, &publish(0, "", "orders.a", "x"));
}

#[test]
#[should_panic(expected = "log order")]
fn apply_out_of_order_panics() {
    let mut fx = Fixture::new("stream-order");
    let mut m = fx.fresh("s", config(Limits::default()));
    m.apply(5, &publish(0, "", "orders.a", "x")).unwrap();
    let _ = m.apply(5, &publish(0, "", "orders.a", "x"));
}

#[test]
fn dedupe_within_and_after_the_window() {
    let mut fx = Fixture::new("stream-dedupe");
    let mut m = fx.fresh("s", config(Limits::default()));
    assert_eq!(m.apply(1, &publish(100 * SEC, "a", "orders.1", "x")).unwrap(), stored(1));
    assert_eq!(m.apply(2, &publish(105 * SEC, "b", "orders.1", "y")).unwrap(), stored(2));
    // A retry within the window returns the original sequence, even with a stale
    // expected_last_seq (dedupe is checked first).
    assert_eq!(
        m.apply(3, &publish_expecting(109 * SEC, "a", "orders.1", "x", Some(0))).unwrap(),
        ApplyOutcome::Duplicate { seq: 1 }
    );
    // A leader whose clock lags does not shorten the window.
    assert_eq!(m.apply(4, &publish(50 * SEC, "a", "orders.1", "x")).unwrap(), ApplyOutcome::Duplicate { seq: 1 });
    // Past the window: "a" is new again, "b" is still remembered.
    assert_eq!(m.apply(5, &publish(111 * SEC, "a", "orders.1", "x")).unwrap(), stored(3));
    assert_eq!(m.apply(6, &publish(112 * SEC, "b", "orders.1", "y")).unwrap(), ApplyOutcome::Duplicate { seq: 2 });
    // An Expire entry moves the clock too: everything is forgotten.
    assert_eq!(
        m.apply(7, &entry(StreamEntry::Expire { now_wall_ns: 200 * SEC })).unwrap(),
        ApplyOutcome::Expired { count: 0 }
    );
    assert_eq!(m.info().dedupe_ids, 0);
    assert_eq!(m.apply(8, &publish(200 * SEC, "b", "orders.1", "y")).unwrap(), stored(4));
    // Empty ids are never duplicates.
    assert_eq!(m.apply(9, &publish(200 * SEC, "", "orders.1", "y")).unwrap(), stored(5));
    assert_eq!(m.apply(10, &publish(200 * SEC, "", "orders.1", "y")).unwrap(), stored(6));
    m.check_invariants();
}

#[test]
fn the_kept_hash_follows_discard_old_expiry_and_is_off_by_default() {
    let mut fx = Fixture::new("stream-kept-hash");
    let limits = Limits { max_msgs: Some(4), max_age: Some(Duration::from_secs(10)), ..Limits::default() };
    let mut m = fx.fresh("k", config(limits));
    let mut log = workload();
    log.push(entry(StreamEntry::Expire { now_wall_ns: 50 * SEC }));
    let before = m.state_hash().unwrap();
    let outcomes = apply_all(&mut m, &log_of(log));
    assert!(outcomes.iter().any(|o| matches!(o, ApplyOutcome::Expired { count } if *count > 0)));
    assert_ne!(m.state_hash_kept(), Some(before), "the publishes changed the kept hash");
    // Production opens without digests: no kept hash, and the full scan still answers.
    fx.dirs.push(PathBuf::from("plain"));
    let (mut plain, _) = StreamMachine::open(fx.disk.clone(), Path::new("plain"), config(limits)).unwrap();
    plain.restore(&StreamSnapshot::initial()).unwrap();
    assert_eq!(plain.state_hash_kept(), None);
    assert_eq!(plain.state_hash().unwrap(), before, "the same empty stream, digests or not");
}

#[test]
fn limits_refuse_the_same_entries_on_every_replica() {
    let mut fx = Fixture::new("stream-limits");
    let limits = Limits { max_msgs: Some(3), max_msg_size_bytes: 16, discard: Discard::New, ..Limits::default() };
    let mut a = fx.fresh("a", config(limits));
    let mut b = fx.fresh("b", config(limits));
    let log = log_of(vec![
        publish(SEC, "", "orders.1", "one"),
        publish(SEC, "", "orders.1", "way too large a payload"),
        publish(SEC, "", "orders.1", "two"),
        publish(SEC, "", "orders.1", "three"),
        publish(SEC, "", "orders.1", "four"),
        entry(StreamEntry::Delete { seq: 1 }),
        publish(SEC, "", "orders.1", "five"),
    ]);
    let outcomes = apply_all(&mut a, &log);
    assert_eq!(apply_all(&mut b, &log), outcomes);
    assert_eq!(
        outcomes,
        vec![
            stored(1),
            rejected(RejectReason::MessageTooLarge { size_bytes: 26, max_bytes: 16 }),
            stored(2),
            stored(3),
            rejected(RejectReason::LimitExceeded { limit: LimitKind::MaxMsgs }),
            ApplyOutcome::Deleted { seq: 1 },
            stored(4),
        ]
    );
    assert_eq!(a.state_hash().unwrap(), b.state_hash().unwrap());
}

#[test]
fn expire_applies_max_age_at_the_leaders_time_only() {
    let mut fx = Fixture::new("stream-expire");
    let limits = Limits { max_age: Some(Duration::from_secs(10)), ..Limits::default() };
    let mut m = fx.fresh("s", config(limits));
    for (i, ts) in [0, 5 * SEC, 20 * SEC].into_iter().enumerate() {
        m.apply(i as u64 + 1, &publish(ts, "", "orders.1", "x")).unwrap();
    }
    // The store never expires on its own (it was opened without max_age).
    m.tick(MonoTime::from_nanos(u64::MAX / 2)).unwrap();
    assert_eq!(m.state().msgs, 3);
    assert_eq!(
        m.apply(4, &entry(StreamEntry::Expire { now_wall_ns: 15 * SEC })).unwrap(),
        ApplyOutcome::Expired { count: 1 }
    );
    assert_eq!(
        m.apply(5, &entry(StreamEntry::Expire { now_wall_ns: 16 * SEC })).unwrap(),
        ApplyOutcome::Expired { count: 1 }
    );
    assert_eq!(m.state().first_seq, 3);
    assert_eq!(
        m.apply(6, &entry(StreamEntry::Expire { now_wall_ns: 100 * SEC })).unwrap(),
        ApplyOutcome::Expired { count: 1 }
    );
    assert_eq!((m.state().first_seq, m.state().last_seq, m.state().msgs), (4, 3, 0));
    m.check_invariants();
}

/// Recovery equivalence and dedupe across a restart: snapshot + log tail rebuilds the same
/// state as a full replay, and ids from before and after the snapshot are still duplicates.
#[test]
fn restart_from_snapshot_and_log_tail_rebuilds_the_same_state() {
    let mut fx = Fixture::new("stream-restart");
    let log = log_of(workload());
    let split = log.len() / 2;
    let mut a = fx.fresh("a", config(Limits::default()));
    let outcomes_before = apply_all(&mut a, &log[..split]);
    assert!(outcomes_before.iter().any(|o| matches!(o, ApplyOutcome::Duplicate { .. })));
    // Flush-then-snapshot.
    a.sync().unwrap();
    let snap_bytes = a.snapshot().encode();
    apply_all(&mut a, &log[split..]);
    let expected = a.state_hash().unwrap();
    let expected_state = a.state();
    // Crash: whatever was buffered and not synced since the snapshot is lost.
    drop(a);

    let mut a = fx.open("a", config(Limits::default()));
    let snap = StreamSnapshot::decode(&snap_bytes).unwrap();
    assert!(matches!(a.restore(&snap).unwrap(), RestoreOutcome::Ready { .. }));
    assert_eq!(a.state().last_seq, snap.last_seq);
    apply_all(&mut a, &log[split..]);
    assert_eq!(a.state(), expected_state);
    assert_eq!(a.state_hash().unwrap(), expected);

    // A full replay on a fresh replica gives the same state.
    let mut b = fx.fresh("b", config(Limits::default()));
    apply_all(&mut b, &log);
    assert_eq!(b.state_hash().unwrap(), expected);

    // Ids stored before the snapshot (id-27 at 27s) and after it are duplicates on both.
    let next = log.len() as u64 + 1;
    for m in [&mut a, &mut b] {
        assert!(matches!(
            m.apply(next, &publish(29 * SEC, "id-27", "orders.1", "r")).unwrap(),
            ApplyOutcome::Duplicate { .. }
        ));
        assert!(matches!(
            m.apply(next + 1, &publish(29 * SEC, "id-21", "orders.1", "r")).unwrap(),
            ApplyOutcome::Duplicate { .. }
        ));
    }
    assert_eq!(a.state_hash().unwrap(), b.state_hash().unwrap());
}

/// A store that is ahead of the snapshot (here: synced past it) is truncated back to it and
/// the log tail replayed; nothing is skipped. The deletes and the purge applied after the
/// snapshot were held (store/hold.rs), so the truncated store is exactly the snapshot's.
#[test]
fn restore_truncates_a_store_that_is_ahead() {
    let mut fx = Fixture::new("stream-ahead");
    let log = log_of(workload());
    let split = 10;
    let mut a = fx.fresh("a", config(Limits::default()));
    apply_all(&mut a, &log[..split]);
    a.sync().unwrap();
    let snap = a.snapshot();
    // As the node does once the snapshot is durable: removals before it may be written.
    let mark = a.removal_mark();
    a.release_removals(mark).unwrap();
    let at_snapshot = a.state_hash().unwrap();
    apply_all(&mut a, &log[split..]);
    a.sync().unwrap();
    let expected = a.state_hash().unwrap();
    let last_before = a.state().last_seq;
    drop(a);

    let mut a = fx.open("a", config(Limits::default()));
    assert_eq!(a.state().last_seq, last_before, "everything was synced");
    let RestoreOutcome::Ready { truncated_msgs, deleted_msgs, missing_msgs } = a.restore(&snap).unwrap() else {
        panic!("ahead")
    };
    assert!(truncated_msgs > 0);
    assert_eq!(deleted_msgs, 0);
    assert_eq!(missing_msgs, 0);
    assert_eq!(a.state().last_seq, snap.last_seq);
    assert_eq!(a.state_hash().unwrap(), at_snapshot, "the store at the snapshot, removals included");
    apply_all(&mut a, &log[split..]);
    assert_eq!(a.state_hash().unwrap(), expected);
}

/// The hazard the holds close (docs/streams.md, "Removals wait for the snapshot"): under a
/// message limit every publish drops the oldest message. If those drops reached the disk, a
/// replica restarted from an older snapshot would hold a later front than its peers at the
/// same index, and a consumer's pull there would deliver other messages. Only once a newer
/// snapshot is durable (`release_removals`) do the drops reach the disk.
#[test]
fn discard_old_drops_after_the_snapshot_do_not_survive_a_restart() {
    let mut fx = Fixture::new("stream-limit-hold");
    let limits = Limits { max_msgs: Some(5), ..Limits::default() };
    let log = log_of((0..30).map(|i| publish(i * SEC, "", "orders.1", &format!("m{i}"))).collect());
    let mut a = fx.fresh("a", config(limits));
    apply_all(&mut a, &log[..10]);
    a.sync().unwrap();
    let snap = a.snapshot();
    let at_snapshot = a.state_hash().unwrap();
    assert_eq!((snap.first_seq, snap.last_seq), (6, 10));
    apply_all(&mut a, &log[10..20]);
    assert_eq!(a.state().first_seq, 16, "the memory view drops at once");
    a.sync().unwrap();
    drop(a);

    let mut a = fx.open("a", config(limits));
    assert!(a.state().first_seq <= snap.first_seq, "no drop after the snapshot is durable");
    assert!(matches!(a.restore(&snap).unwrap(), RestoreOutcome::Ready { missing_msgs: 0, .. }));
    assert_eq!(a.state_hash().unwrap(), at_snapshot);
    let replayed = apply_all(&mut a, &log[10..20]);
    assert_eq!(a.state().first_seq, 16);

    // A newer snapshot at entry 20 becomes durable: the drops before it may be written now,
    // and a restart restores that snapshot with its front.
    a.sync().unwrap();
    let snap2 = a.snapshot();
    let mark2 = a.removal_mark();
    let at_snapshot2 = a.state_hash().unwrap();
    apply_all(&mut a, &log[20..]);
    a.release_removals(mark2).unwrap();
    a.sync().unwrap();
    drop(a);
    let mut a = fx.open("a", config(limits));
    assert_eq!(a.state().first_seq, snap2.first_seq, "released drops are durable, later ones held");
    assert!(matches!(a.restore(&snap2).unwrap(), RestoreOutcome::Ready { missing_msgs: 0, .. }));
    assert_eq!(a.state_hash().unwrap(), at_snapshot2);

    // A full replay agrees at every step.
    let mut b = fx.fresh("b", config(limits));
    assert_eq!(apply_all(&mut b, &log[..10]), apply_all(&mut fx.fresh("c", config(limits)), &log[..10]));
    assert_eq!(apply_all(&mut b, &log[10..20]), replayed);
    assert_eq!(b.state_hash().unwrap(), at_snapshot2);
}

/// Drives catch-up of `follower` from `leader` in small chunks (through the wire format).
fn catch_up(follower: &mut StreamMachine<OsDisk>, leader: &StreamMachine<OsDisk>, max_bytes: u64) -> u32 {
    let mut chunks = 0;
    loop {
        let req = follower.catchup_request(max_bytes).expect("catching up");
        let req = CatchupRequest::decode(&req.encode()).unwrap();
        let chunk = leader.serve_catchup(&req).unwrap().expect("the leader has the range");
        let chunk = CatchupChunk::decode(&chunk.encode()).unwrap();
        let progress = follower.apply_catchup_chunk(&chunk).unwrap();
        follower.check_invariants();
        chunks += 1;
        assert!(chunks < 1000, "catch-up does not progress");
        if progress.next_from.is_none() {
            assert!(!follower.is_catching_up());
            return chunks;
        }
        assert!(follower.is_catching_up());
    }
}

#[test]
fn a_replica_behind_the_snapshot_catches_up_in_chunks_with_gaps() {
    let mut fx = Fixture::new("stream-catchup");
    let log = log_of(workload());
    let mut leader = fx.fresh("leader", config(Limits::default()));
    // A follower that applied only the first few entries (its store prefix is older than the
    // snapshot: the leader deletes some of those messages later).
    let mut stale = fx.fresh("stale", config(Limits::default()));
    apply_all(&mut stale, &log[..5]);
    apply_all(&mut leader, &log);
    // Trailing gaps too: the last two messages deleted.
    let last = leader.state().last_seq;
    let n = log.len() as u64;
    apply_all(
        &mut leader,
        &log_of_from(
            n + 1,
            vec![entry(StreamEntry::Delete { seq: last }), entry(StreamEntry::Delete { seq: last - 1 })],
        ),
    );
    leader.sync().unwrap();
    let snap = leader.snapshot();
    assert!(!snap.deleted.is_empty());
    let expected = leader.state_hash().unwrap();

    // An empty follower.
    let mut empty = fx.open("empty", config(Limits::default()));
    let outcome = empty.restore(&StreamSnapshot::decode(&snap.encode()).unwrap()).unwrap();
    assert_eq!(outcome, RestoreOutcome::NeedCatchup { from_seq: snap.first_seq, to_seq: snap.last_seq });
    assert_eq!(empty.snapshot(), snap, "while catching up, the snapshot is the target");
    assert_eq!(empty.info().catching_up, Some((snap.first_seq, snap.last_seq)));
    let chunks = catch_up(&mut empty, &leader, 40);
    assert!(chunks > 3, "small chunks: {chunks}");
    assert_eq!(empty.state(), leader.state());
    for seq in snap.first_seq..=snap.last_seq {
        assert_eq!(empty.get(seq).unwrap(), leader.get(seq).unwrap(), "seq {seq}");
    }
    assert_eq!(empty.snapshot(), leader.snapshot());
    assert_eq!(empty.state_hash().unwrap(), expected);
    assert_eq!(empty.snapshot(), snap);

    // The stale follower: its prefix loses the messages deleted since, then catches up.
    let stale_last = stale.state().last_seq;
    let RestoreOutcome::NeedCatchup { from_seq, to_seq } = stale.restore(&snap).unwrap() else { panic!("behind") };
    assert_eq!((from_seq, to_seq), (stale_last + 1, snap.last_seq));
    catch_up(&mut stale, &leader, 1 << 20);
    assert_eq!(stale.state(), leader.state());
    for seq in snap.first_seq..=snap.last_seq {
        assert_eq!(stale.get(seq).unwrap(), leader.get(seq).unwrap(), "seq {seq}");
    }
    assert_eq!(stale.snapshot(), leader.snapshot());
    assert_eq!(stale.state_hash().unwrap(), expected);

    // Both continue with the log in step.
    let tail = log_of_from(
        n + 3,
        vec![publish(30 * SEC, "id-27", "orders.1", "dup"), publish(30 * SEC, "new", "orders.1", "z")],
    );
    let outcomes = apply_all(&mut leader, &tail);
    assert_eq!(apply_all(&mut empty, &tail), outcomes);
    assert_eq!(apply_all(&mut stale, &tail), outcomes);
    assert!(matches!(outcomes[0], ApplyOutcome::Duplicate { .. }));
    assert_eq!(empty.state_hash().unwrap(), leader.state_hash().unwrap());
    assert_eq!(stale.state_hash().unwrap(), leader.state_hash().unwrap());
}

fn log_of_from(first: u64, entries: Vec<Vec<u8>>) -> Vec<(u64, Vec<u8>)> {
    entries.into_iter().enumerate().map(|(i, e)| (first + i as u64, e)).collect()
}

#[test]
fn a_source_that_deleted_after_the_snapshot_still_serves_it() {
    let mut fx = Fixture::new("stream-missing");
    let log = log_of(workload());
    let mut leader = fx.fresh("leader", config(Limits::default()));
    apply_all(&mut leader, &log);
    let snap = leader.snapshot();
    let at_snapshot = leader.state_hash().unwrap();
    // After the snapshot the leader deletes a message the follower has not fetched yet.
    let victim = snap.last_seq - 1;
    let tail = log_of_from(log.len() as u64 + 1, vec![entry(StreamEntry::Delete { seq: victim })]);
    let outcomes = apply_all(&mut leader, &tail);
    assert_eq!(outcomes, vec![ApplyOutcome::Deleted { seq: victim }]);
    assert_eq!(leader.get(victim).unwrap(), None);

    // The delete is held until a newer snapshot: the leader serves the snapshot's message.
    let mut f = fx.open("f", config(Limits::default()));
    assert!(matches!(f.restore(&snap).unwrap(), RestoreOutcome::NeedCatchup { .. }));
    catch_up(&mut f, &leader, 1 << 20);
    assert_eq!(f.state_hash().unwrap(), at_snapshot, "exactly the snapshot");
    assert_eq!(apply_all(&mut f, &tail), outcomes, "the replay decides as the leader did");
    assert_eq!(f.state_hash().unwrap(), leader.state_hash().unwrap());

    // Once a newer snapshot released the delete, the leader no longer has the message: a
    // follower still catching up to the old snapshot refuses the chunk (and asks elsewhere,
    // or for the newer snapshot) rather than start from a state nobody had.
    let mark = leader.removal_mark();
    leader.release_removals(mark).unwrap();
    let mut g = fx.open("g", config(Limits::default()));
    let RestoreOutcome::NeedCatchup { from_seq, to_seq } = g.restore(&snap).unwrap() else { panic!("behind") };
    let chunk = leader.serve_catchup(&CatchupRequest { from_seq, to_seq, max_bytes: 1 << 20 }).unwrap().unwrap();
    match g.apply_catchup_chunk(&chunk) {
        Err(StreamError::InvalidCatchupChunk { reason }) => assert!(reason.contains("gone at the source"), "{reason}"),
        other => panic!("a lossy chunk was accepted: {other:?}"),
    }
    assert!(g.is_catching_up());
    // The newer snapshot itself serves fine.
    let snap2 = leader.snapshot();
    let RestoreOutcome::NeedCatchup { .. } = g.restore(&snap2).unwrap() else { panic!("behind") };
    catch_up(&mut g, &leader, 1 << 20);
    assert_eq!(g.state_hash().unwrap(), leader.state_hash().unwrap());
}

#[test]
fn serve_catchup_declines_a_range_it_does_not_have() {
    let mut fx = Fixture::new("stream-serve");
    let mut leader = fx.fresh("leader", config(Limits::default()));
    apply_all(&mut leader, &log_of(vec![publish(0, "", "orders.1", "a"), publish(0, "", "orders.1", "b")]));
    let req = CatchupRequest { from_seq: 1, to_seq: 3, max_bytes: 100 };
    assert_eq!(leader.serve_catchup(&req).unwrap(), None);
    let req = CatchupRequest { from_seq: 3, to_seq: 2, max_bytes: 100 };
    assert!(matches!(leader.serve_catchup(&req), Err(StreamError::InvalidCatchupRequest { .. })));
    // A range wholly purged at the source is served as one gap, once a snapshot after the
    // purge released it (until then the purge is held and the messages are served).
    apply_all(&mut leader, &log_of_from(3, vec![entry(StreamEntry::Purge(Purge::All))]));
    let held = leader.serve_catchup(&CatchupRequest { from_seq: 1, to_seq: 2, max_bytes: 100 }).unwrap().unwrap();
    assert_eq!(held.messages.len(), 2);
    let mark = leader.removal_mark();
    leader.release_removals(mark).unwrap();
    let chunk = leader.serve_catchup(&CatchupRequest { from_seq: 1, to_seq: 2, max_bytes: 100 }).unwrap().unwrap();
    assert_eq!(chunk, CatchupChunk { from_seq: 1, through_seq: 2, messages: vec![] });
    assert_eq!(leader.catchup_request(100), None);
}

#[test]
fn hostile_chunks_are_refused_and_write_nothing() {
    let mut fx = Fixture::new("stream-hostile");
    let mut leader = fx.fresh("leader", config(Limits::default()));
    let log = log_of(workload());
    apply_all(&mut leader, &log);
    let snap = leader.snapshot();
    let mut f = fx.open("f", config(Limits::default()));
    // Active replicas refuse chunks.
    assert_eq!(
        leader.apply_catchup_chunk(&CatchupChunk { from_seq: 1, through_seq: 1, messages: vec![] }),
        Err(StreamError::NotCatchingUp)
    );
    let RestoreOutcome::NeedCatchup { from_seq, to_seq } = f.restore(&snap).unwrap() else { panic!("behind") };
    let before = (f.state(), f.state_hash().unwrap());
    let good = leader.serve_catchup(&CatchupRequest { from_seq, to_seq, max_bytes: 1 << 20 }).unwrap().unwrap();
    assert!(good.messages.len() > 3);

    let refuse = |f: &mut StreamMachine<OsDisk>, chunk: CatchupChunk, why: &str| {
        match f.apply_catchup_chunk(&chunk) {
            Err(StreamError::InvalidCatchupChunk { reason }) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{why}: {other:?}"),
        }
        assert!(f.failure().is_none(), "a bad chunk is not a local failure");
    };
    // Not contiguous with the store.
    refuse(&mut f, CatchupChunk { from_seq: from_seq + 1, ..good.clone() }, "needs");
    // Beyond the target.
    refuse(&mut f, CatchupChunk { through_seq: to_seq + 1, ..good.clone() }, "beyond the catch-up target");
    // Messages out of order.
    let mut swapped = good.clone();
    swapped.messages.swap(1, 2);
    refuse(&mut f, swapped, "catch-up message seq");
    // A message outside the chunk's own range.
    let mut outside = good.clone();
    outside.through_seq = outside.messages[1].seq;
    refuse(&mut f, outside, "catch-up message seq");
    // A message at a sequence the snapshot says is deleted.
    let (deleted, _) = snap.deleted[0];
    let mut resurrected = good.clone();
    let mut m = resurrected.messages[0].clone();
    m.seq = deleted;
    resurrected.messages.retain(|x| x.seq != deleted);
    let at = resurrected.messages.partition_point(|x| x.seq < deleted);
    resurrected.messages.insert(at, m);
    // A chunk without one of the snapshot's messages.
    let mut lossy = good.clone();
    lossy.messages.remove(1);
    refuse(&mut f, lossy, "gone at the source");
    // A message above the stream's max_msg_size_bytes.
    let mut oversize = good.clone();
    oversize.messages[0].payload = Bytes::from(vec![0u8; 2 * 1024 * 1024]);
    refuse(&mut f, oversize, "max_msg_size_bytes");
    // More content than the chunk bound.
    let mut bloated = good.clone();
    for m in bloated.messages.iter_mut().skip(1).take(10) {
        m.payload = Bytes::from(vec![0u8; 1024 * 1024]);
    }
    refuse(&mut f, bloated, "above maximum");
    // An invalid subject.
    let mut bad_subject = good.clone();
    bad_subject.messages[0].subject = Bytes::from_static(b"a..b");
    refuse(&mut f, bad_subject, "invalid subject");

    assert_eq!((f.state(), f.state_hash().unwrap()), before, "refused chunks wrote nothing");
    // The good chunk still applies, and catch-up completes. A message at a sequence the
    // snapshot says is deleted (a source whose own snapshot is older still has it) is left
    // out: the snapshot decides.
    f.apply_catchup_chunk(&resurrected).unwrap();
    assert_eq!(f.get(deleted).unwrap(), None);
    if f.is_catching_up() {
        catch_up(&mut f, &leader, 1 << 20);
    }
    assert_eq!(f.state_hash().unwrap(), leader.state_hash().unwrap());
}

#[test]
#[should_panic(expected = "while catching up")]
fn apply_while_catching_up_panics() {
    let mut fx = Fixture::new("stream-catching");
    let mut leader = fx.fresh("leader", config(Limits::default()));
    apply_all(&mut leader, &log_of(vec![publish(0, "", "orders.1", "a")]));
    let mut f = fx.open("f", config(Limits::default()));
    assert!(matches!(f.restore(&leader.snapshot()).unwrap(), RestoreOutcome::NeedCatchup { .. }));
    let _ = f.apply(2, &publish(0, "", "orders.1", "b"));
}

#[test]
fn invalid_snapshots_are_refused_before_the_store_is_touched() {
    let mut fx = Fixture::new("stream-badsnap");
    let mut m = fx.fresh("s", config(Limits::default()));
    apply_all(&mut m, &log_of(vec![publish(5, "a", "orders.1", "x"), publish(6, "b", "orders.1", "y")]));
    let before = m.state_hash().unwrap();
    let mut snap = m.snapshot();
    snap.dedupe[1].msg_id = snap.dedupe[0].msg_id.clone();
    assert!(matches!(m.restore(&snap), Err(StreamError::InvalidSnapshot { .. })));
    let mut snap = m.snapshot();
    snap.msgs += 1;
    assert!(matches!(m.restore(&snap), Err(StreamError::InvalidSnapshot { .. })));
    assert_eq!(m.state_hash().unwrap(), before);
    assert!(m.failure().is_none());
}

#[test]
fn state_hash_sees_every_field() {
    let mut fx = Fixture::new("stream-hash");
    let base = vec![publish(SEC, "a", "orders.1", "x"), publish(2 * SEC, "", "orders.2", "y")];
    let variants = [
        vec![publish(SEC, "a", "orders.1", "x"), publish(2 * SEC, "", "orders.2", "Y")],
        vec![publish(SEC, "a", "orders.1", "x"), publish(2 * SEC, "", "orders.3", "y")],
        vec![publish(SEC, "a", "orders.1", "x"), publish(3 * SEC, "", "orders.2", "y")],
        vec![publish(SEC, "b", "orders.1", "x"), publish(2 * SEC, "", "orders.2", "y")],
    ];
    let mut m = fx.fresh("base", config(Limits::default()));
    apply_all(&mut m, &log_of(base));
    let h = m.state_hash().unwrap();
    for (i, v) in variants.into_iter().enumerate() {
        let mut other = fx.fresh(&format!("v{i}"), config(Limits::default()));
        apply_all(&mut other, &log_of(v));
        assert_ne!(other.state_hash().unwrap(), h, "variant {i}");
    }
}

/// A workload with two consumers interleaved: pulls, acks of each kind, a purge under a
/// pending delivery, an update and a delete.
fn consumer_workload() -> Vec<Vec<u8>> {
    use super::consumer::{AckKind, ConsumerConfig, DeliverPolicy};
    let name = |n: &str| Bytes::copy_from_slice(n.as_bytes());
    let next = |ts: i64, n: &str, batch: u32| {
        entry(StreamEntry::ConsumerNext { now_wall_ns: ts, name: name(n), batch, max_bytes: 1 << 20 })
    };
    let ack = |ts: i64, n: &str, seq: u64, kind: AckKind| {
        entry(StreamEntry::ConsumerAck { now_wall_ns: ts, name: name(n), seq, kind })
    };
    let mut all = ConsumerConfig::new("ALL");
    all.ack_wait_ms = 1000;
    let mut odd = ConsumerConfig::new("ODD");
    odd.filter_subject = Some("orders.1".into());
    odd.deliver_policy = DeliverPolicy::ByStartSequence { seq: 3 };
    let mut log = vec![entry(StreamEntry::consumer_create(0, &all)), entry(StreamEntry::consumer_create(0, &odd))];
    for i in 0..24i64 {
        log.push(publish(i * SEC, "", &format!("orders.{}", i % 2), &format!("p{i}")));
        if i % 5 == 4 {
            log.push(next(i * SEC, "ALL", 3));
            log.push(next(i * SEC, "ODD", 2));
            log.push(ack(i * SEC, "ALL", (i as u64) - 3, AckKind::Ack));
            log.push(ack(i * SEC, "ALL", (i as u64) - 2, AckKind::Nak { delay_ns: 0 }));
            log.push(ack(i * SEC, "ODD", (i as u64) - 2, AckKind::Progress));
        }
        if i == 12 {
            log.push(entry(StreamEntry::Purge(Purge::Before { seq: 6 })));
            all.max_ack_pending = 2;
            log.push(entry(StreamEntry::consumer_create(i * SEC, &all)));
        }
        if i == 20 {
            log.push(entry(StreamEntry::ConsumerDelete { name: name("ODD") }));
            log.push(ack(i * SEC, "ODD", 1, AckKind::Term)); // refused: gone
        }
    }
    log.push(next(30 * SEC, "ALL", 10)); // redeliveries after the ack wait
    log
}

/// A consumer that starts beyond the stream's end: its cursor lies past `last_seq`, the
/// snapshot carrying it must still decode, and it delivers only from its start.
#[test]
fn a_consumer_starting_past_the_end_snapshots_and_waits_for_its_start() {
    use super::consumer::{ConsumerConfig, DeliverPolicy};
    let mut fx = Fixture::new("stream-consumer-ahead");
    let mut a = fx.fresh("a", config(Limits::default()));
    let mut later = ConsumerConfig::new("LATER");
    later.deliver_policy = DeliverPolicy::ByStartSequence { seq: 5 };
    let mut log = vec![publish(SEC, "", "orders.1", "p1"), entry(StreamEntry::consumer_create(SEC, &later))];
    for i in 2..=6 {
        log.push(publish(i * SEC, "", "orders.1", &format!("p{i}")));
    }
    let log = log_of(log);
    apply_all(&mut a, &log[..2]);
    a.sync().unwrap();
    let snap = StreamSnapshot::decode(&a.snapshot().encode()).expect("a cursor past the end decodes");
    apply_all(&mut a, &log[2..]);
    let expected = a.state_hash().unwrap();
    drop(a);
    let mut a = fx.open("a", config(Limits::default()));
    assert!(matches!(a.restore(&snap).unwrap(), RestoreOutcome::Ready { .. }));
    apply_all(&mut a, &log[2..]);
    assert_eq!(a.state_hash().unwrap(), expected);
    let next = StreamEntry::ConsumerNext {
        now_wall_ns: 9 * SEC,
        name: Bytes::from_static(b"LATER"),
        batch: 9,
        max_bytes: 1 << 20,
    };
    match a.apply(log.len() as u64 + 1, &entry(next)).unwrap() {
        ApplyOutcome::Delivered { deliveries, .. } => {
            assert_eq!(deliveries.iter().map(|d| d.message.seq).collect::<Vec<_>>(), vec![5, 6]);
        }
        other => panic!("{other:?}"),
    }
}

/// Consumers are replicated state: a replica restarted from a snapshot taken mid-workload
/// plus the log tail ends with the same consumers, and the same hash, as a full replay; the
/// snapshot carries them (version 2), and every pull's outcome is identical on both.
#[test]
fn consumers_survive_snapshot_and_replay_identically() {
    let mut fx = Fixture::new("stream-consumers");
    let log = log_of(consumer_workload());
    let split = log.len() / 2;
    let mut a = fx.fresh("a", config(Limits::default()));
    let mut outcomes = apply_all(&mut a, &log[..split]);
    a.sync().unwrap();
    let snap_bytes = a.snapshot().encode();
    assert_eq!(u16::from_le_bytes([snap_bytes[8], snap_bytes[9]]), SNAPSHOT_VERSION, "consumers need version 2");
    outcomes.extend(apply_all(&mut a, &log[split..]));
    let expected = a.state_hash().unwrap();
    let delivered: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| match o {
            ApplyOutcome::Delivered { deliveries, .. } => Some(deliveries.iter().map(|d| d.message.seq)),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(delivered.len() >= 10, "the workload delivers: {delivered:?}");
    assert!(outcomes
        .iter()
        .any(|o| matches!(o, ApplyOutcome::Rejected { reason: RejectReason::NoSuchConsumer { .. } })));
    let info = a.consumer_info("ALL").unwrap();
    assert!(info.num_redelivered > 0 && info.config.max_ack_pending == 2, "{info:?}");
    assert!(a.consumer_info("ODD").is_none());
    drop(a);

    let mut a = fx.open("a", config(Limits::default()));
    let snap = StreamSnapshot::decode(&snap_bytes).unwrap();
    assert_eq!(snap.consumers.len(), 2);
    assert!(matches!(a.restore(&snap).unwrap(), RestoreOutcome::Ready { .. }));
    let tail = apply_all(&mut a, &log[split..]);
    // Removals after the snapshot were held, so the replay decides exactly as before, the
    // purge's count included (docs/streams.md, "Removals wait for the snapshot").
    assert_eq!(tail, outcomes[split..]);
    assert_eq!(a.state_hash().unwrap(), expected);

    let mut b = fx.fresh("b", config(Limits::default()));
    assert_eq!(apply_all(&mut b, &log), outcomes);
    assert_eq!(b.state_hash().unwrap(), expected);
    // One more ack changes the hash: consumers are in it.
    let next = log.len() as u64 + 1;
    let seq = b.consumers().get("ALL").unwrap().state.pending.keys().next().copied().expect("something pending");
    let ack = StreamEntry::ConsumerAck {
        now_wall_ns: 31 * SEC,
        name: Bytes::from_static(b"ALL"),
        seq,
        kind: super::consumer::AckKind::Ack,
    };
    assert_eq!(b.apply(next, &entry(ack)).unwrap(), ApplyOutcome::Acked { pending: true });
    assert_ne!(b.state_hash().unwrap(), expected);
}

/// Everything a backup keeps: the range and counts, each message with its sequence and
/// timestamp, and the consumers with their state (dedupe ids are not archived).
fn archived_view(m: &StreamMachine<OsDisk>) -> (StreamState, Vec<StoredMessage>, Consumers) {
    let s = m.state();
    let msgs = (s.first_seq..=s.last_seq).filter_map(|seq| m.get(seq).unwrap()).collect();
    (s, msgs, m.consumers().clone())
}

/// Backs `m` up the way `sluice backup` does: the manifest, each consumer's export, then
/// the messages read as catch-up chunks through the last sequence.
fn backup(m: &StreamMachine<OsDisk>, cfg: StreamConfig) -> Vec<u8> {
    use crate::archive::{ArchiveWriter, Manifest};
    let state = m.state();
    let manifest = Manifest { format: String::new(), version: 0, config: cfg, state: state.into(), replicas: None };
    let mut out = Vec::new();
    let mut w = ArchiveWriter::new(&mut out, manifest).unwrap();
    for name in m.consumers().names() {
        w.push_consumer(&m.consumers().export(name).unwrap()).unwrap();
    }
    let mut from = state.first_seq;
    while from <= state.last_seq {
        let req = CatchupRequest { from_seq: from, to_seq: state.last_seq, max_bytes: 200 };
        let chunk = m.backup_chunk(&req).unwrap().expect("the source holds its own range");
        for msg in &chunk.messages {
            w.push(msg).unwrap();
        }
        from = chunk.through_seq + 1;
    }
    w.finish().unwrap();
    out
}

/// Restores an archive into the fresh machine `m` the way `sluice restore` does, applying
/// each restore entry from log index 1; returns the outcomes.
fn restore_into(m: &mut StreamMachine<OsDisk>, archive: &[u8], now_ns: i64, chunk_bytes: usize) -> Vec<ApplyOutcome> {
    use crate::archive::{restore_writes, RestoreWrite};
    let mut entries = Vec::new();
    restore_writes(archive, chunk_bytes, |w| {
        entries.push(entry(match w {
            RestoreWrite::Chunk(c) => StreamEntry::Restore { now_wall_ns: now_ns, chunk: Bytes::from(c.encode()) },
            RestoreWrite::Consumer(c) => StreamEntry::ConsumerRestore { consumer: c },
        }));
        Ok(())
    })
    .unwrap();
    apply_all(m, &log_of(entries))
}

#[test]
fn a_stream_restored_from_its_backup_has_its_messages_gaps_and_consumers() {
    let mut fx = Fixture::new("stream-backup-restore");
    let mut src = fx.fresh("src", config(Limits::default()));
    let mut log = consumer_workload();
    // Gaps inside the range and at its end, beside the purge at the front.
    for seq in [9, 10, 17, 24] {
        log.push(entry(StreamEntry::Delete { seq }));
    }
    apply_all(&mut src, &log_of(log));
    let before = archived_view(&src);
    assert!(before.0.first_seq > 1 && before.0.num_deleted >= 3, "{:?}", before.0);
    assert_eq!(before.0.last_seq, 24, "the last message is deleted: a trailing gap");
    let archive = backup(&src, config(Limits::default()));

    for chunk_bytes in [1, 300, 1 << 20] {
        let mut dst = fx.fresh(&format!("dst-{chunk_bytes}"), config(Limits::default()));
        let outcomes = restore_into(&mut dst, &archive, 100 * SEC, chunk_bytes);
        assert!(outcomes.iter().all(|o| !matches!(o, ApplyOutcome::Rejected { .. })), "{outcomes:?}");
        assert_eq!(archived_view(&dst), before, "chunks of {chunk_bytes} bytes");
        // The next publish continues after the trailing gap.
        let next = outcomes.len() as u64 + 1;
        assert_eq!(dst.apply(next, &publish(101 * SEC, "", "orders.1", "after")).unwrap(), stored(25));
    }
}

#[test]
fn restore_chunks_that_do_not_fit_are_refused_whole() {
    let mut fx = Fixture::new("stream-restore-refusals");
    let msg = |seq: u64, subject: &str, ts: i64| StoredMessage {
        seq,
        timestamp_ns: ts,
        subject: Bytes::copy_from_slice(subject.as_bytes()),
        headers: Bytes::new(),
        payload: Bytes::from_static(b"payload"),
    };
    let restore = |from_seq, through_seq, messages: Vec<StoredMessage>, now: i64| {
        let chunk = CatchupChunk { from_seq, through_seq, messages };
        entry(StreamEntry::Restore { now_wall_ns: now, chunk: Bytes::from(chunk.encode()) })
    };
    let refused =
        |o: &ApplyOutcome| matches!(o, ApplyOutcome::Rejected { reason: RejectReason::RestoreRefused { .. } });
    let limits = Limits { max_msgs: Some(2), discard: Discard::New, ..Limits::default() };
    let mut m = fx.fresh("a", config(limits));
    let outcomes = apply_all(
        &mut m,
        &log_of(vec![
            restore(2, 3, vec![msg(2, "orders.a", SEC)], SEC),  // must start at 1
            restore(1, 3, vec![msg(1, "elsewhere", SEC)], SEC), // subject not in the stream
            restore(1, 5, vec![msg(1, "orders.a", SEC), msg(3, "orders.b", SEC), msg(5, "orders.c", SEC)], SEC), // limits
            b"\x01\x09\x00\x00garbage".to_vec(), // not an entry
        ]),
    );
    assert!(refused(&outcomes[0]) && refused(&outcomes[1]) && refused(&outcomes[2]), "{outcomes:?}");
    assert!(matches!(outcomes[3], ApplyOutcome::Rejected { reason: RejectReason::Malformed(_) }), "{outcomes:?}");
    assert_eq!(m.state().last_seq, 0, "refusals write nothing");

    // What the store itself would refuse is refused as an outcome, not a store failure that
    // would stop every replica: one message above max_bytes, a gap reaching SEQ_MAX.
    let tiny = Limits { max_bytes: Some(40), discard: Discard::Old, ..Limits::default() };
    let mut m = fx.fresh("c", config(tiny));
    let out = m.apply(1, &restore(1, 1, vec![msg(1, "orders.a", SEC)], SEC)).unwrap();
    assert!(refused(&out), "{out:?}");
    let out = m.apply(2, &restore(1, crate::format::block::SEQ_MAX, vec![], SEC)).unwrap();
    assert!(refused(&out), "{out:?}");
    assert!(m.failure().is_none() && m.state().last_seq == 0);
    m.check_invariants();

    // Messages past max_age at the leader's time are left out, keeping their sequences.
    let mut aged = config(Limits::default());
    aged.store.limits.max_age = Some(Duration::from_secs(10));
    let mut m = fx.fresh("b", aged);
    let now = 100 * SEC;
    let out = m.apply(1, &restore(1, 4, vec![msg(1, "orders.a", 5 * SEC), msg(2, "orders.b", 95 * SEC)], now)).unwrap();
    assert_eq!(out, ApplyOutcome::Restored { last_seq: 4, stored: 1, expired: 1 });
    let s = m.state();
    assert_eq!((s.first_seq, s.last_seq, s.msgs), (2, 4, 1));
    assert!(m.get(1).unwrap().is_none() && m.get(2).unwrap().unwrap().timestamp_ns == 95 * SEC);
    m.check_invariants();
}

#[test]
fn a_restored_consumer_is_refused_if_its_name_exists() {
    use super::consumer::ConsumerConfig;
    let mut fx = Fixture::new("stream-consumer-restore");
    let mut src = fx.fresh("src", config(Limits::default()));
    apply_all(&mut src, &log_of(vec![entry(StreamEntry::consumer_create(7, &ConsumerConfig::new("C")))]));
    let export = Bytes::from(src.consumers().export("C").unwrap());
    let mut dst = fx.fresh("dst", config(Limits::default()));
    let outcomes = apply_all(
        &mut dst,
        &log_of(vec![
            entry(StreamEntry::ConsumerRestore { consumer: export.clone() }),
            entry(StreamEntry::ConsumerRestore { consumer: export.clone() }),
            entry(StreamEntry::ConsumerRestore { consumer: export.slice(..export.len() - 1) }),
        ]),
    );
    assert_eq!(outcomes[0], ApplyOutcome::ConsumerCreated { name: "C".into() });
    assert!(
        matches!(&outcomes[1], ApplyOutcome::Rejected { reason: RejectReason::ConsumerRefused { reason } } if reason.contains("exists"))
    );
    assert!(matches!(&outcomes[2], ApplyOutcome::Rejected { reason: RejectReason::ConsumerRefused { .. } }));
    assert_eq!(dst.consumers(), src.consumers());
}
