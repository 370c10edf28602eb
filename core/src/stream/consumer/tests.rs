//! Consumer rules against an in-memory stream: where each deliver policy starts, redelivery
//! after the ack wait, nak, progress, term, max deliveries, max ack pending, filters,
//! messages removed from the stream while pending, and the snapshot section's bounds.

use super::*;
use crate::stream::wire::Reader;
use bytes::Bytes;

/// A stream in memory: `msgs` by sequence, `last_seq` possibly past the last message.
struct Mem {
    msgs: BTreeMap<u64, StoredMessage>,
    first_seq: u64,
    last_seq: u64,
}

impl Mem {
    fn new(subjects: &[&str]) -> Mem {
        let mut m = Mem { msgs: BTreeMap::new(), first_seq: 1, last_seq: 0 };
        for s in subjects {
            m.push(s);
        }
        m
    }

    fn push(&mut self, subject: &str) {
        self.last_seq += 1;
        let seq = self.last_seq;
        let payload = Bytes::from(format!("m{seq}"));
        self.msgs.insert(
            seq,
            StoredMessage {
                seq,
                timestamp_ns: seq as i64,
                subject: Bytes::copy_from_slice(subject.as_bytes()),
                headers: Bytes::new(),
                payload,
            },
        );
    }

    fn purge_before(&mut self, seq: u64) {
        self.msgs = self.msgs.split_off(&seq);
        self.first_seq = seq;
    }
}

impl MessageSource for Mem {
    fn state(&self) -> StreamState {
        StreamState {
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            msgs: self.msgs.len() as u64,
            bytes: 0,
            num_deleted: 0,
        }
    }
    fn get(&self, seq: u64) -> Result<Option<StoredMessage>, StoreError> {
        Ok(self.msgs.get(&seq).cloned())
    }
    fn get_range(&self, from_seq: u64, max_msgs: usize, _max_bytes: u64) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(self.msgs.range(from_seq..).take(max_msgs).map(|(_, m)| m.clone()).collect())
    }
}

const SEC: i64 = 1_000_000_000;

fn pull(c: &mut Consumers, src: &Mem, batch: u32, now_ns: i64) -> Vec<(u64, u32)> {
    let req = NextRequest { batch, max_bytes: NEXT_BYTES_MAX };
    let out = c.next("c", src, req, now_ns).unwrap().expect("consumer exists");
    c.check_invariants();
    out.iter().map(|d| (d.message.seq, d.deliveries)).collect()
}

fn with(config: ConsumerConfig, src: &Mem) -> Consumers {
    let mut c = Consumers::new();
    c.create(config, src.state(), 0).unwrap();
    c
}

#[test]
fn deliver_policies_start_where_they_say() {
    let src = Mem::new(&["a", "a", "a", "a"]);
    let start = |policy| {
        let mut config = ConsumerConfig::new("c");
        config.deliver_policy = policy;
        let mut c = with(config, &src);
        pull(&mut c, &src, 10, 0).first().map(|d| d.0)
    };
    assert_eq!(start(DeliverPolicy::All), Some(1));
    assert_eq!(start(DeliverPolicy::Last), Some(4));
    assert_eq!(start(DeliverPolicy::New), None);
    assert_eq!(start(DeliverPolicy::ByStartSequence { seq: 3 }), Some(3));
    assert_eq!(start(DeliverPolicy::ByStartSequence { seq: 9 }), None);
}

#[test]
fn unacked_messages_come_back_after_the_ack_wait_and_acked_ones_never() {
    let src = Mem::new(&["a", "a", "a"]);
    let mut config = ConsumerConfig::new("c");
    config.ack_wait_ms = 1000;
    let mut c = with(config, &src);
    assert_eq!(pull(&mut c, &src, 10, 0), vec![(1, 1), (2, 1), (3, 1)]);
    assert_eq!(c.ack("c", 2, AckKind::Ack, 0), Some(true));
    assert_eq!(c.ack("c", 2, AckKind::Ack, 0), Some(false), "a second ack changes nothing");
    assert_eq!(pull(&mut c, &src, 10, SEC - 1), vec![], "nothing due before the ack wait");
    assert_eq!(pull(&mut c, &src, 10, SEC), vec![(1, 2), (3, 2)]);
    let info = c.info("c", |_| 0).unwrap();
    assert_eq!((info.num_ack_pending, info.num_redelivered, info.delivered_consumer_seq), (2, 2, 5));
    assert_eq!((info.ack_floor_stream_seq, info.delivered_stream_seq), (0, 3));
    c.ack("c", 1, AckKind::Ack, SEC);
    c.ack("c", 3, AckKind::Term, SEC);
    let info = c.info("c", |_| 0).unwrap();
    assert_eq!((info.num_ack_pending, info.ack_floor_stream_seq), (0, 3));
    assert_eq!(pull(&mut c, &src, 10, 100 * SEC), vec![]);
}

#[test]
fn nak_progress_and_max_deliver() {
    let src = Mem::new(&["a", "a"]);
    let mut config = ConsumerConfig::new("c");
    config.ack_wait_ms = 1000;
    config.max_deliver = Some(2);
    let mut c = with(config, &src);
    assert_eq!(pull(&mut c, &src, 10, 0), vec![(1, 1), (2, 1)]);
    c.ack("c", 1, AckKind::Nak { delay_ns: 0 }, 0);
    c.ack("c", 2, AckKind::Progress, SEC / 2);
    assert_eq!(pull(&mut c, &src, 10, SEC / 2), vec![(1, 2)], "a nak is due at once; progress restarts the wait");
    assert_eq!(pull(&mut c, &src, 10, SEC + SEC / 2), vec![(2, 2)]);
    // Both have been delivered twice: when their wait runs out they are dropped.
    assert_eq!(pull(&mut c, &src, 10, 10 * SEC), vec![]);
    assert_eq!(c.info("c", |_| 0).unwrap().num_ack_pending, 0);
}

#[test]
fn max_ack_pending_and_batch_bound_deliveries() {
    let src = Mem::new(&["a"; 10]);
    let mut config = ConsumerConfig::new("c");
    config.max_ack_pending = 3;
    let mut c = with(config, &src);
    assert_eq!(pull(&mut c, &src, 2, 0).len(), 2);
    assert_eq!(pull(&mut c, &src, 5, 0).len(), 1, "max ack pending stops at 3");
    assert!(!c.has_work("c", src.state(), 0));
    c.ack("c", 1, AckKind::Ack, 0);
    assert!(c.has_work("c", src.state(), 0));
    assert_eq!(pull(&mut c, &src, 5, 0), vec![(4, 1)]);
}

#[test]
fn purged_pending_frees_room_for_waiting_pulls() {
    let mut src = Mem::new(&["a", "a"]);
    let mut config = ConsumerConfig::new("c");
    config.max_ack_pending = 2;
    let mut c = with(config, &src);
    assert_eq!(pull(&mut c, &src, 10, 0).len(), 2);
    src.push("a");
    assert!(!c.has_work("c", src.state(), 0), "full: nothing to do until an ack");
    src.purge_before(3);
    assert!(c.has_work("c", src.state(), 0), "the purge freed both places");
    assert_eq!(pull(&mut c, &src, 10, 0), vec![(3, 1)]);
}

#[test]
fn filter_skips_other_subjects_and_moves_the_cursor() {
    let src = Mem::new(&["a.x", "b.x", "a.y", "b.y"]);
    let mut config = ConsumerConfig::new("c");
    config.filter_subject = Some("b.*".into());
    let mut c = with(config, &src);
    assert_eq!(pull(&mut c, &src, 10, 0), vec![(2, 1), (4, 1)]);
    assert_eq!(c.get("c").unwrap().state.delivered_stream_seq, 4);
}

#[test]
fn messages_gone_from_the_stream_leave_pending() {
    let mut src = Mem::new(&["a", "a", "a", "a"]);
    let mut c = with(ConsumerConfig::new("c"), &src);
    assert_eq!(pull(&mut c, &src, 2, 0).len(), 2);
    src.msgs.remove(&2); // deleted
    src.purge_before(2); // and 1 purged
    assert_eq!(pull(&mut c, &src, 10, 100 * SEC), vec![(3, 1), (4, 1)]);
    assert_eq!(c.get("c").unwrap().state.pending.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
}

#[test]
fn updates_may_change_waits_and_limits_only() {
    let src = Mem::new(&[]);
    let mut c = with(ConsumerConfig::new("c"), &src);
    let mut update = ConsumerConfig::new("c");
    update.ack_wait_ms = 5;
    update.max_ack_pending = 7;
    assert_eq!(c.create(update.clone(), src.state(), 9), Ok(()));
    assert_eq!(c.get("c").unwrap().config, update);
    assert_eq!(c.get("c").unwrap().created_ns, 0, "an update keeps the creation time");
    update.filter_subject = Some("x".into());
    assert!(c.create(update, src.state(), 9).is_err());
    let mut bad = ConsumerConfig::new("c.d");
    assert!(c.create(bad.clone(), src.state(), 0).is_err(), "a dot in the name");
    bad.name = "d".into();
    bad.max_ack_pending = ACK_PENDING_MAX + 1;
    assert!(c.create(bad, src.state(), 0).is_err());
    for i in 1..CONSUMERS_MAX {
        c.create(ConsumerConfig::new(format!("n{i}")), src.state(), 0).unwrap();
    }
    assert!(c.create(ConsumerConfig::new("one-too-many"), src.state(), 0).is_err());
}

fn sample() -> Consumers {
    let src = Mem::new(&["a", "b", "a"]);
    let mut c = with(ConsumerConfig::new("c"), &src);
    pull(&mut c, &src, 10, 5);
    c.ack("c", 2, AckKind::Ack, 6);
    c.create(ConsumerConfig::new("b"), src.state(), 7).unwrap();
    c
}

#[test]
fn snapshot_section_round_trips_and_refuses_hostile_counts() {
    let c = sample();
    let mut bytes = Vec::new();
    c.encode_into(&mut bytes);
    let mut r = Reader::new(&bytes);
    assert_eq!(Consumers::decode_from(&mut r).unwrap(), c);
    r.finish().unwrap();

    let mut hostile = bytes.clone();
    hostile[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Consumers::decode_from(&mut Reader::new(&hostile)).is_err());
    // The first consumer ("b") has no pending; its pending count is the u32 after its
    // fixed fields.
    let config_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let pending_at = 8 + config_len + 8 + 24;
    let mut hostile = bytes.clone();
    hostile[pending_at..pending_at + 4].copy_from_slice(&(ACK_PENDING_MAX + 1).to_le_bytes());
    assert!(Consumers::decode_from(&mut Reader::new(&hostile)).is_err());
    hostile[pending_at..pending_at + 4].copy_from_slice(&ACK_PENDING_MAX.to_le_bytes());
    assert!(Consumers::decode_from(&mut Reader::new(&hostile)).is_err(), "declared more than present");
    for cut in 0..bytes.len() {
        assert!(Consumers::decode_from(&mut Reader::new(&bytes[..cut])).is_err(), "cut at {cut}");
    }
}

#[test]
fn hash_covers_pending_state() {
    let a = sample();
    let mut b = sample();
    b.ack("c", 1, AckKind::Progress, 99);
    let hash = |c: &Consumers| {
        let mut h = Fnv64::new();
        c.hash_into(&mut h);
        h.finish()
    };
    assert_eq!(hash(&a), hash(&sample()));
    assert_ne!(hash(&a), hash(&b));
}
