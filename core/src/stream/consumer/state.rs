//! One consumer's replicated progress: how far it has read the stream (`delivered`), and the
//! deliveries still waiting for an ack (`pending`), each with the time it may go again.
//!
//! Every change happens while a committed log entry applies, with the leader's clock from
//! that entry, so replicas that applied the same entries hold the same state. Invariants
//! (`check_invariants`): pending sequences are at or below the cursor and their consumer
//! sequences at or below `delivered_consumer_seq`; every pending entry was delivered at least
//! once; at most `ACK_PENDING_MAX` are pending.

use super::config::{ConsumerConfig, DeliverPolicy, ACK_PENDING_MAX};
use super::MessageSource;
use crate::store::{StoreError, StoredMessage, StreamState};
use std::collections::BTreeMap;

/// Messages one `next` delivers at most, whatever the request asks (the rest of a larger
/// request is asked for again by the server).
pub const NEXT_BATCH_MAX: u32 = 256;
/// Bytes of messages (subject, headers, payload) one `next` delivers at most, past the first.
pub const NEXT_BYTES_MAX: u64 = 1024 * 1024;
/// Stream messages one `next` reads past the cursor looking for ones the filter accepts:
/// the apply of one entry stays bounded on a sparse filter; the next request goes on.
pub const NEXT_SCAN_MSGS_MAX: usize = 4096;
const SCAN_READ_MSGS: usize = 256;
const SCAN_READ_BYTES: u64 = 4 * 1024 * 1024;

/// A delivery waiting for its ack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingMsg {
    /// The consumer sequence of its latest delivery.
    pub consumer_seq: u64,
    /// Times delivered, at least 1.
    pub deliveries: u32,
    /// When it may be delivered again (leader's wall clock, ns).
    pub due_ns: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerState {
    /// The last stream sequence the consumer has passed (delivered, or skipped by its filter).
    pub delivered_stream_seq: u64,
    /// Deliveries made, redeliveries included: the last consumer sequence handed out.
    pub delivered_consumer_seq: u64,
    /// Unacknowledged deliveries by stream sequence.
    pub pending: BTreeMap<u64, PendingMsg>,
    /// Redeliveries made (for info).
    pub redelivered: u64,
}

impl ConsumerState {
    /// The starting point of a consumer created now over a stream in `state`.
    pub fn start(config: &ConsumerConfig, state: StreamState) -> ConsumerState {
        let before_first = state.first_seq - 1;
        let cursor = match config.deliver_policy {
            DeliverPolicy::All => before_first,
            DeliverPolicy::Last => state.last_seq.saturating_sub(1).max(before_first),
            DeliverPolicy::New => state.last_seq,
            DeliverPolicy::ByStartSequence { seq } => (seq - 1).max(before_first),
        };
        ConsumerState { delivered_stream_seq: cursor, ..ConsumerState::default() }
    }

    /// The stream sequence below which every delivery was acknowledged.
    pub fn ack_floor_stream_seq(&self) -> u64 {
        self.pending.keys().next().map_or(self.delivered_stream_seq, |&first| first - 1)
    }

    /// The consumer sequence below which every delivery was acknowledged.
    pub fn ack_floor_consumer_seq(&self) -> u64 {
        self.pending.values().map(|p| p.consumer_seq).min().map_or(self.delivered_consumer_seq, |c| c - 1)
    }

    pub fn check_invariants(&self) {
        assert!(self.pending.len() <= ACK_PENDING_MAX as usize, "{} pending, above the bound", self.pending.len());
        for (&seq, p) in &self.pending {
            assert!(seq >= 1 && seq <= self.delivered_stream_seq, "pending {seq} beyond the cursor");
            assert!(p.deliveries >= 1, "pending {seq} never delivered");
            assert!(
                p.consumer_seq >= 1 && p.consumer_seq <= self.delivered_consumer_seq,
                "pending {seq} has consumer sequence {} beyond {}",
                p.consumer_seq,
                self.delivered_consumer_seq
            );
        }
    }
}

/// One message handed out by `next`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub message: StoredMessage,
    pub consumer_seq: u64,
    /// Times delivered, this one included.
    pub deliveries: u32,
}

/// What a pull asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextRequest {
    /// 1..=`NEXT_BATCH_MAX` messages.
    pub batch: u32,
    /// About this many bytes at most (at least one message is delivered).
    pub max_bytes: u64,
}

/// How a delivery is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckKind {
    /// Processed: never delivered again.
    Ack,
    /// Not processed: deliver it again after `delay_ns` (0: at the next pull).
    Nak { delay_ns: i64 },
    /// Still working on it: the ack wait starts over.
    Progress,
    /// Never deliver it again, processed or not.
    Term,
}

fn message_bytes(m: &StoredMessage) -> u64 {
    (m.subject.len() + m.headers.len() + m.payload.len()) as u64
}

/// Delivers what is due: first deliveries whose ack wait ran out (oldest stream sequence
/// first), then messages past the cursor that the filter accepts, within the request's
/// bounds and `max_ack_pending`. Pending messages the stream no longer holds, and ones
/// delivered `max_deliver` times, are dropped from pending when their turn comes.
pub fn next<S: MessageSource>(
    config: &ConsumerConfig,
    st: &mut ConsumerState,
    src: &S,
    req: NextRequest,
    now_ns: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let state = src.state();
    let batch = req.batch.clamp(1, NEXT_BATCH_MAX) as usize;
    let max_bytes = req.max_bytes.clamp(1, NEXT_BYTES_MAX);
    let ack_wait_ns = config.ack_wait_ns();
    // Purged or expired from the front: neither pending nor to be read.
    st.pending = st.pending.split_off(&state.first_seq);
    st.delivered_stream_seq = st.delivered_stream_seq.max(state.first_seq - 1);
    let mut out: Vec<Delivery> = Vec::new();
    let mut out_bytes = 0u64;
    let full = |out: &Vec<Delivery>, out_bytes: u64, size: u64| {
        out.len() >= batch || (!out.is_empty() && out_bytes + size > max_bytes)
    };

    let due: Vec<u64> = st.pending.iter().filter(|(_, p)| p.due_ns <= now_ns).map(|(&s, _)| s).collect();
    for seq in due {
        if out.len() >= batch {
            break;
        }
        let p = st.pending[&seq];
        if config.max_deliver.is_some_and(|max| p.deliveries >= max) {
            st.pending.remove(&seq);
            continue;
        }
        let Some(message) = src.get(seq)? else {
            st.pending.remove(&seq); // deleted from the stream
            continue;
        };
        let size = message_bytes(&message);
        if full(&out, out_bytes, size) {
            break;
        }
        st.delivered_consumer_seq += 1;
        st.redelivered += 1;
        let p = st.pending.get_mut(&seq).expect("listed");
        *p = PendingMsg {
            consumer_seq: st.delivered_consumer_seq,
            deliveries: p.deliveries.saturating_add(1),
            due_ns: now_ns.saturating_add(ack_wait_ns),
        };
        out_bytes += size;
        out.push(Delivery { message, consumer_seq: p.consumer_seq, deliveries: p.deliveries });
    }

    let mut scanned = 0usize;
    'scan: while st.delivered_stream_seq < state.last_seq
        && scanned < NEXT_SCAN_MSGS_MAX
        && out.len() < batch
        && st.pending.len() < config.max_ack_pending as usize
    {
        let read =
            if config.filter_subject.is_some() { SCAN_READ_MSGS } else { (batch - out.len()).min(SCAN_READ_MSGS) };
        let messages = src.get_range(st.delivered_stream_seq + 1, read, SCAN_READ_BYTES)?;
        if messages.is_empty() {
            st.delivered_stream_seq = state.last_seq; // only gaps remain
            break;
        }
        for message in messages {
            if message.seq > state.last_seq {
                break 'scan;
            }
            scanned += 1;
            if !config.accepts(&message.subject) {
                st.delivered_stream_seq = message.seq;
                continue;
            }
            let size = message_bytes(&message);
            if full(&out, out_bytes, size) || st.pending.len() >= config.max_ack_pending as usize {
                break 'scan;
            }
            st.delivered_stream_seq = message.seq;
            st.delivered_consumer_seq += 1;
            let p = PendingMsg {
                consumer_seq: st.delivered_consumer_seq,
                deliveries: 1,
                due_ns: now_ns.saturating_add(ack_wait_ns),
            };
            st.pending.insert(message.seq, p);
            out_bytes += size;
            out.push(Delivery { message, consumer_seq: p.consumer_seq, deliveries: 1 });
        }
    }
    Ok(out)
}

/// Applies an acknowledgement of stream sequence `seq`. Returns whether it was pending (an
/// ack of something not pending, acked twice say, changes nothing).
pub fn ack(config: &ConsumerConfig, st: &mut ConsumerState, seq: u64, kind: AckKind, now_ns: i64) -> bool {
    let Some(p) = st.pending.get_mut(&seq) else { return false };
    match kind {
        AckKind::Ack | AckKind::Term => {
            st.pending.remove(&seq);
        }
        AckKind::Nak { delay_ns } => p.due_ns = now_ns.saturating_add(delay_ns.max(0)),
        AckKind::Progress => p.due_ns = now_ns.saturating_add(config.ack_wait_ns()),
    }
    true
}

/// Whether a `next` at `now_ns` would deliver or drop something: a delivery is due, or a
/// message past the cursor exists and there is room for it. The leader asks before it
/// proposes a waiting pull again, so an idle consumer writes nothing to the log. (With a
/// filter, a message past the cursor may not match: the `next` then only moves the cursor.)
pub fn has_work(config: &ConsumerConfig, st: &ConsumerState, state: StreamState, now_ns: i64) -> bool {
    // Pending entries the stream purged are dropped by the next pull: that is work too, and
    // they must not count against `max_ack_pending` meanwhile.
    let purged = st.pending.keys().next().is_some_and(|&seq| seq < state.first_seq);
    let live = st.pending.range(state.first_seq..);
    let live_count = live.clone().count();
    let due = live.map(|(_, p)| p).any(|p| p.due_ns <= now_ns);
    let unread = st.delivered_stream_seq < state.last_seq && state.msgs > 0;
    purged || due || (unread && live_count < config.max_ack_pending as usize)
}
