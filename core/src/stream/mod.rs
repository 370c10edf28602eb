//! The replicated stream's state machine: what every replica does with the stream's committed
//! Raft log entries, in log order. Sans-IO apart from its own store (no clock, no randomness,
//! no default-hasher maps), so replicas that applied the same entries hold the same state,
//! which `state_hash` compares. Rules and formats: docs/streams.md.
//!
//! Life cycle:
//! 1. `open` recovers the store (cutting at the first bad record). The machine is
//!    *unrestored*: `apply` panics until
//! 2. `restore(snapshot)` (the last Raft snapshot, or `StreamSnapshot::initial()` if there is
//!    none) truncates a store that is ahead of the snapshot back to it (DESIGN §4: never "skip
//!    entries below the recovered last sequence"), aligns its front and deletes, and loads the
//!    dedupe state. If the store is behind the snapshot the machine is *catching up*:
//! 3. `catchup_request` / a peer's `serve_catchup` / `apply_catchup_chunk`, until done.
//! 4. `apply(index, entry)` for every log entry after the snapshot.
//!
//! Invariants (`check_invariants`, called by tests and the simulator after every step):
//! * the store's own invariants; the dedupe state's;
//! * `gaps` is exactly the store's set of sequences in range without a message;
//! * once restored, the front is canonical: `first_seq` is a message, or `last_seq + 1`;
//! * active: every remembered message id names a sequence at or below `last_seq`;
//! * catching up: the store ends exactly where the next chunk must start, below the target.
//! * a store error latches `failed`: nothing more is applied until the replica is reopened.

mod catchup;
mod config;
pub mod consumer;
mod dedupe;
mod entry;
mod error;
mod snapshot;
#[cfg(test)]
mod tests;
mod wire;

pub use catchup::{
    CatchupChunk, CatchupRequest, CATCHUP_CHUNK_BYTES_MAX, CATCHUP_CHUNK_ENCODED_BYTES_MAX, CATCHUP_CHUNK_MSGS_MAX,
    CATCHUP_VERSION,
};
pub use config::{
    subject_matches, validate_stream_name, validate_subject, StreamConfig, STREAM_NAME_BYTES_MAX, STREAM_SUBJECTS_MAX,
};
pub use dedupe::{Dedupe, DedupeEntry, DedupeLoadError, DEDUPE_IDS_MAX};
pub use entry::{
    EntryRef, Publish, PublishRef, Purge, StreamEntry, ENTRY_BYTES_MAX, ENTRY_VERSION, MSG_ID_BYTES_MAX,
    PUBLISH_FIXED_BYTES, RESTORE_CHUNK_BYTES_MAX,
};
pub use error::{RejectReason, StreamError};
pub use snapshot::{StreamSnapshot, SNAPSHOT_BYTES_MAX, SNAPSHOT_DELETED_RANGES_MAX, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};

use crate::disk::Disk;
use crate::env::MonoTime;
use crate::format::block::SEQ_MAX;
use crate::format::fnv::Fnv64;
use crate::store::{
    stored_digest, FileStore, NewMessage, RecoveryReport, SeqSet, StoreError, StoredMessage, StreamState, SyncPlan,
};
use consumer::{ConsumerConfig, ConsumerInfo, Consumers, Delivery, NextRequest};
use std::path::Path;

/// Messages read per batch when the machine scans its store (hash, expiry, open).
const SCAN_BATCH_MSGS: usize = 1024;
const SCAN_BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// The replicated result of applying one entry: the same on every replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Stored {
        seq: u64,
    },
    /// The message id was stored within the dedupe window, as message `seq`.
    Duplicate {
        seq: u64,
    },
    Rejected {
        reason: RejectReason,
    },
    Deleted {
        seq: u64,
    },
    Purged {
        count: u64,
    },
    Expired {
        count: u64,
    },
    ConsumerCreated {
        name: String,
    },
    ConsumerDeleted {
        name: String,
    },
    /// A pull's messages (possibly none), and how many stream messages lie past the
    /// consumer's cursor afterwards.
    Delivered {
        deliveries: Vec<Delivery>,
        num_pending: u64,
    },
    /// An ack applied; `pending`: the sequence was waiting for one.
    Acked {
        pending: bool,
    },
    /// A restore chunk written: `stored` messages kept, `expired` left out as gaps because
    /// their age passed `max_age` while archived; the stream now ends at `last_seq`.
    Restored {
        last_seq: u64,
        stored: u64,
        expired: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The store holds the snapshot's range; apply the log after the snapshot's index.
    Ready {
        /// Messages above the snapshot's last sequence that the store dropped.
        truncated_msgs: u64,
        /// Messages the snapshot says were deleted that the store still held.
        deleted_msgs: u64,
        /// Messages the snapshot counts that the store no longer holds. Always 0 while
        /// removals are held until a snapshot covers them (docs/streams.md, "Removals wait for
        /// the snapshot"); non-zero would mean this replica's state differs from its peers'
        /// until the replay passes the removing entries. Kept as a diagnostic.
        missing_msgs: u64,
    },
    /// The store ends below the snapshot's last sequence: fetch `from_seq..=to_seq` from a
    /// peer (`catchup_request`) before applying anything.
    NeedCatchup { from_seq: u64, to_seq: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchupProgress {
    /// Where the next chunk must start; `None` when catch-up is complete.
    pub next_from: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: String,
    pub subjects: Vec<String>,
    pub state: StreamState,
    pub dedupe_ids: usize,
    /// `(next_from, to_seq)` while catching up.
    pub catching_up: Option<(u64, u64)>,
}

#[derive(Debug)]
struct Catchup {
    next_from: u64,
    to_seq: u64,
    target: StreamSnapshot,
    target_deleted: SeqSet,
}

#[derive(Debug)]
enum Mode {
    /// Opened, not yet restored: the store may be ahead of the last snapshot.
    Unrestored,
    Active,
    CatchingUp(Box<Catchup>),
}

pub struct StreamMachine<D: Disk> {
    config: StreamConfig,
    store: FileStore<D>,
    /// The sequences in the store's range without a message, kept in step with every store
    /// operation. The store holds the same set privately; this copy goes once `FileStore`
    /// exposes its own (it is built by a scan at `open` meanwhile).
    gaps: SeqSet,
    dedupe: Dedupe,
    consumers: Consumers,
    /// `config.store.limits.max_age`, applied at `Expire` entries (the store itself is
    /// opened without it, so it never expires by a local clock).
    max_age_ns: Option<i64>,
    mode: Mode,
    failed: Option<StreamError>,
    applied_index: Option<u64>,
}

impl<D: Disk> StreamMachine<D> {
    /// Opens (creating or recovering) the stream's store in `dir`. The machine must be
    /// `restore`d before anything is applied.
    pub fn open(disk: D, dir: &Path, config: StreamConfig) -> Result<(Self, RecoveryReport), StreamError> {
        config.validate()?;
        let mut store_config = config.store;
        let max_age_ns =
            store_config.limits.max_age.take().map(|age| i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
        let (mut store, report) = FileStore::open(disk, dir, store_config)?;
        // Removals reach the disk only once a snapshot covers them: a restore must find every
        // message of its snapshot (store/hold.rs).
        store.hold_removals();
        // The store's index already knows them: re-reading every message to find them doubled
        // the cost of a start-up (docs/benchmarks.md, "Startup").
        let gaps = store.deleted().clone();
        let machine = StreamMachine {
            dedupe: Dedupe::new(config.dedupe_window),
            consumers: Consumers::new(),
            config,
            store,
            gaps,
            max_age_ns,
            mode: Mode::Unrestored,
            failed: None,
            applied_index: None,
        };
        if cfg!(debug_assertions) {
            machine.check_invariants();
        }
        Ok((machine, report))
    }

    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Read access to the store (backups, diagnostics). All writes go through the machine.
    pub fn store(&self) -> &FileStore<D> {
        &self.store
    }

    pub fn state(&self) -> StreamState {
        self.store.state()
    }

    /// Index of the last entry applied since the last `restore`.
    pub fn applied_index(&self) -> Option<u64> {
        self.applied_index
    }

    /// The store failure that stopped this replica, if any.
    pub fn failure(&self) -> Option<&StreamError> {
        self.failed.as_ref()
    }

    pub fn is_catching_up(&self) -> bool {
        matches!(self.mode, Mode::CatchingUp(_))
    }

    pub fn get(&self, seq: u64) -> Result<Option<StoredMessage>, StreamError> {
        Ok(self.store.get(seq)?)
    }

    /// The stream's consumers as this replica has applied them.
    pub fn consumers(&self) -> &Consumers {
        &self.consumers
    }

    pub fn consumer_info(&self, name: &str) -> Option<ConsumerInfo> {
        self.consumers.info(name, |seq| self.msgs_after(seq))
    }

    /// Whether a pull of consumer `name` applied at `now_ns` would deliver (or drop) something:
    /// the leader's test before it proposes a waiting pull again.
    pub fn consumer_has_work(&self, name: &str, now_ns: i64) -> bool {
        self.consumers.has_work(name, self.store.state(), now_ns)
    }

    /// Stream messages with a sequence above `seq`.
    fn msgs_after(&self, seq: u64) -> u64 {
        let s = self.store.state();
        if seq < s.first_seq {
            return s.msgs;
        }
        if seq >= s.last_seq {
            return 0;
        }
        (s.last_seq - seq) - self.gaps.count_within(seq + 1, s.last_seq)
    }

    pub fn info(&self) -> StreamInfo {
        StreamInfo {
            name: self.config.name.clone(),
            subjects: self.config.subjects.clone(),
            state: self.store.state(),
            dedupe_ids: self.dedupe.len(),
            catching_up: match &self.mode {
                Mode::CatchingUp(c) => Some((c.next_from, c.to_seq)),
                _ => None,
            },
        }
    }

    /// Applies committed log entry `index` (entries arrive in log order). `Ok` carries the
    /// replicated outcome, refusals included; `Err` only for a local store failure, after
    /// which the replica must stop and be reopened (`failure`).
    ///
    /// Panics if the machine was not restored, or is catching up: applying over a store that
    /// may be ahead of the snapshot, or is missing the snapshot's messages, would diverge.
    pub fn apply(&mut self, index: u64, data: &[u8]) -> Result<ApplyOutcome, StreamError> {
        self.check_not_failed()?;
        match &self.mode {
            Mode::Active => {}
            Mode::Unrestored => panic!("apply({index}) before restore: the store may be ahead of the snapshot"),
            Mode::CatchingUp(c) => {
                panic!("apply({index}) while catching up (next {}, target {})", c.next_from, c.to_seq)
            }
        }
        if let Some(previous) = self.applied_index {
            assert!(index > previous, "apply({index}) after {previous}: entries must arrive in log order");
        }
        let outcome = match EntryRef::decode(data) {
            Ok(entry) => self.apply_entry(entry),
            Err(e) => Ok(ApplyOutcome::Rejected { reason: RejectReason::Malformed(e) }),
        };
        match outcome {
            Ok(outcome) => {
                self.applied_index = Some(index);
                Ok(outcome)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn apply_entry(&mut self, entry: EntryRef<'_>) -> Result<ApplyOutcome, StreamError> {
        match entry {
            EntryRef::Publish(p) => self.apply_publish(p),
            EntryRef::Delete { seq } => {
                if !self.store.delete(seq)? {
                    return Ok(ApplyOutcome::Rejected { reason: RejectReason::NoSuchMessage { seq } });
                }
                // Deleting the first message moves the front instead (see the store).
                if seq >= self.store.state().first_seq {
                    self.gaps.insert(seq);
                }
                self.trim_gaps();
                Ok(ApplyOutcome::Deleted { seq })
            }
            EntryRef::Purge(purge) => {
                let next = self.store.state().last_seq + 1;
                let before = match purge {
                    Purge::All => next,
                    Purge::Before { seq } => seq.min(next),
                };
                let count = self.store.purge_before(before)?;
                self.trim_gaps();
                self.canonicalize_front()?;
                Ok(ApplyOutcome::Purged { count })
            }
            EntryRef::ConsumerCreate { now_wall_ns, config } => {
                let config = match ConsumerConfig::decode(config) {
                    Ok(c) => c,
                    Err(reason) => {
                        return Ok(ApplyOutcome::Rejected { reason: RejectReason::ConsumerRefused { reason } })
                    }
                };
                let name = config.name.clone();
                match self.consumers.create(config, self.store.state(), now_wall_ns) {
                    Ok(()) => Ok(ApplyOutcome::ConsumerCreated { name }),
                    Err(reason) => Ok(ApplyOutcome::Rejected { reason: RejectReason::ConsumerRefused { reason } }),
                }
            }
            EntryRef::ConsumerDelete { name } => {
                let name = String::from_utf8_lossy(name).into_owned();
                if self.consumers.delete(&name) {
                    Ok(ApplyOutcome::ConsumerDeleted { name })
                } else {
                    Ok(ApplyOutcome::Rejected { reason: RejectReason::NoSuchConsumer { name } })
                }
            }
            EntryRef::ConsumerNext { now_wall_ns, name, batch, max_bytes } => {
                let name = String::from_utf8_lossy(name);
                let req = NextRequest { batch, max_bytes: u64::from(max_bytes) };
                match self.consumers.next(&name, &self.store, req, now_wall_ns)? {
                    None => {
                        Ok(ApplyOutcome::Rejected { reason: RejectReason::NoSuchConsumer { name: name.into_owned() } })
                    }
                    Some(deliveries) => {
                        let cursor = self.consumers.get(&name).expect("it just delivered").state.delivered_stream_seq;
                        Ok(ApplyOutcome::Delivered { deliveries, num_pending: self.msgs_after(cursor) })
                    }
                }
            }
            EntryRef::ConsumerAck { now_wall_ns, name, seq, kind } => {
                let name = String::from_utf8_lossy(name);
                match self.consumers.ack(&name, seq, kind, now_wall_ns) {
                    Some(pending) => Ok(ApplyOutcome::Acked { pending }),
                    None => {
                        Ok(ApplyOutcome::Rejected { reason: RejectReason::NoSuchConsumer { name: name.into_owned() } })
                    }
                }
            }
            EntryRef::Restore { now_wall_ns, chunk } => self.apply_restore(now_wall_ns, chunk),
            EntryRef::ConsumerRestore { consumer } => match self.consumers.import(consumer) {
                Ok(name) => Ok(ApplyOutcome::ConsumerCreated { name }),
                Err(reason) => Ok(ApplyOutcome::Rejected { reason: RejectReason::ConsumerRefused { reason } }),
            },
            EntryRef::Expire { now_wall_ns } => {
                self.dedupe.advance(now_wall_ns);
                let Some(max_age_ns) = self.max_age_ns else { return Ok(ApplyOutcome::Expired { count: 0 }) };
                let new_first = self.first_unexpired(now_wall_ns.saturating_sub(max_age_ns))?;
                let count = self.store.purge_before(new_first)?;
                self.trim_gaps();
                Ok(ApplyOutcome::Expired { count })
            }
        }
    }

    /// A chunk of a restored archive: checked whole before anything is written, so a refusal
    /// leaves the stream as it was. Messages older than `max_age` at `now_wall_ns` become
    /// gaps, keeping their sequence.
    fn apply_restore(&mut self, now_wall_ns: i64, chunk: &[u8]) -> Result<ApplyOutcome, StreamError> {
        let refuse = |reason: String| Ok(ApplyOutcome::Rejected { reason: RejectReason::RestoreRefused { reason } });
        let chunk = match CatchupChunk::decode(chunk) {
            Ok(c) => c,
            Err(e) => return refuse(format!("chunk: {e}")),
        };
        let state = self.store.state();
        if chunk.from_seq != state.last_seq + 1 {
            return refuse(format!("chunk starts at {} but the stream ends at {}", chunk.from_seq, state.last_seq));
        }
        let expired_before = self.max_age_ns.map(|age| now_wall_ns.saturating_sub(age));
        let limits = self.config.store.limits;
        let (mut msgs, mut bytes) = (state.msgs, state.bytes);
        let mut kept = Vec::with_capacity(chunk.messages.len());
        let mut expired = 0u64;
        for m in chunk.messages {
            if let Err(reason) = validate_subject(&m.subject, false) {
                return refuse(format!("message {}: invalid subject: {reason}", m.seq));
            }
            if !self.config.accepts(&m.subject) {
                return refuse(format!("message {}: subject not in the stream", m.seq));
            }
            let size = m.headers.len() as u64 + m.payload.len() as u64;
            if size > u64::from(limits.max_msg_size_bytes) {
                return refuse(format!("message {} of {size} bytes above max_msg_size_bytes", m.seq));
            }
            // Every refusal the store would make is made here first: a store error while
            // writing would stop the replica, and every replica would stop at this entry.
            let stored = crate::format::block::record_len(m.subject.len(), m.headers.len(), m.payload.len());
            if limits.max_bytes.is_some_and(|max| stored > max) {
                return refuse(format!("message {} of {stored} stored bytes above the stream's max_bytes", m.seq));
            }
            if expired_before.is_some_and(|t| m.timestamp_ns < t) {
                expired += 1;
                continue;
            }
            // Discard-new limits refuse the chunk before any of it is written; discard-old
            // ones drop the oldest messages as the store writes, as for publishes.
            msgs += 1;
            bytes += stored;
            if limits.discard == crate::store::Discard::New
                && (limits.max_msgs.is_some_and(|max| msgs > max) || limits.max_bytes.is_some_and(|max| bytes > max))
            {
                return refuse(format!("message {} would exceed the stream's limits", m.seq));
            }
            kept.push(m);
        }
        // The store cannot record a gap reaching SEQ_MAX (`skip_through`): refused here, as
        // an outcome, rather than failing every replica's store at the same entry. Checked on
        // what is kept, after expiry.
        if chunk.through_seq >= SEQ_MAX && kept.last().is_none_or(|m| m.seq < chunk.through_seq) {
            return refuse(format!(
                "a gap through sequence {} reaches the end of the sequence space",
                chunk.through_seq
            ));
        }
        let stored = kept.len() as u64;
        let kept_chunk = CatchupChunk { from_seq: chunk.from_seq, through_seq: chunk.through_seq, messages: kept };
        self.write_chunk(&kept_chunk)?;
        self.trim_gaps();
        Ok(ApplyOutcome::Restored { last_seq: self.store.state().last_seq, stored, expired })
    }

    fn apply_publish(&mut self, p: PublishRef<'_>) -> Result<ApplyOutcome, StreamError> {
        let reject = |reason| Ok(ApplyOutcome::Rejected { reason });
        self.dedupe.advance(p.timestamp_ns);
        if let Err(reason) = validate_subject(p.subject, false) {
            return reject(RejectReason::InvalidSubject { reason });
        }
        if !self.config.accepts(p.subject) {
            return reject(RejectReason::SubjectNotInStream);
        }
        // Before the sequence check: a client retrying a publish that carried an expected
        // last sequence must get its original sequence back, not a mismatch.
        if let Some(seq) = self.dedupe.check(p.msg_id) {
            crate::coverage::mark("stream.duplicate-publish");
            return Ok(ApplyOutcome::Duplicate { seq });
        }
        let state = self.store.state();
        if let Some(expected) = p.expected_last_seq {
            if expected != state.last_seq {
                return reject(RejectReason::WrongLastSeq { expected, last_seq: state.last_seq });
            }
        }
        if state.last_seq >= SEQ_MAX {
            return reject(RejectReason::SequenceSpaceExhausted);
        }
        let msg =
            NewMessage { subject: p.subject, headers: p.headers, payload: p.payload, timestamp_ns: p.timestamp_ns };
        // The store checks size and limits before it writes anything; those refusals depend
        // only on replicated state, so they are outcomes, not failures.
        match self.store.append(&msg) {
            Ok(seq) => {
                assert_eq!(seq, state.last_seq + 1, "the store appended out of sequence");
                self.trim_gaps();
                self.dedupe.record(p.msg_id, seq);
                Ok(ApplyOutcome::Stored { seq })
            }
            Err(StoreError::MessageTooLarge { size_bytes, max_bytes }) => {
                reject(RejectReason::MessageTooLarge { size_bytes, max_bytes })
            }
            Err(StoreError::LimitExceeded { limit }) => {
                crate::coverage::mark("stream.discard-new-refused");
                reject(RejectReason::LimitExceeded { limit })
            }
            Err(StoreError::InvalidSubject { reason }) => reject(RejectReason::InvalidSubject { reason }),
            Err(e) => Err(e.into()),
        }
    }

    /// The first sequence whose message is not older than `cutoff_ns` (messages expire from
    /// the front, as the store's own `max_age` does), or `last_seq + 1`.
    fn first_unexpired(&self, cutoff_ns: i64) -> Result<u64, StreamError> {
        let state = self.store.state();
        let mut from = state.first_seq;
        loop {
            let batch = self.store.get_range(from, SCAN_BATCH_MSGS, SCAN_BATCH_BYTES)?;
            let Some(last) = batch.last() else { return Ok(state.last_seq + 1) };
            if let Some(m) = batch.iter().find(|m| m.timestamp_ns >= cutoff_ns) {
                return Ok(m.seq);
            }
            from = last.seq + 1;
        }
    }

    /// The stream's replicated state for a Raft snapshot: counts, deletes, clock and dedupe
    /// ids; the messages stay in the store, which the caller `sync`s before writing the
    /// snapshot. While catching up, the snapshot being caught up to.
    pub fn snapshot(&self) -> StreamSnapshot {
        match &self.mode {
            Mode::Unrestored => panic!("snapshot before restore"),
            Mode::CatchingUp(c) => c.target.clone(),
            Mode::Active => {
                let state = self.store.state();
                StreamSnapshot {
                    first_seq: state.first_seq,
                    last_seq: state.last_seq,
                    msgs: state.msgs,
                    bytes: state.bytes,
                    deleted: self.gaps.ranges().collect(),
                    last_timestamp_ns: self.dedupe.clock_ns(),
                    dedupe: self.dedupe.entries().collect(),
                    consumers: self.consumers.clone(),
                }
            }
        }
    }

    /// Ends the store's removal epoch (store/hold.rs): taken with `snapshot`, and given to
    /// `release_removals` once that snapshot is durable.
    pub fn removal_mark(&mut self) -> u64 {
        self.store.removal_mark()
    }

    /// The snapshot taken with `mark` is durable: the deletes and front moves applied before
    /// it may be written to the store (durable at its next sync).
    pub fn release_removals(&mut self, mark: u64) -> Result<(), StreamError> {
        self.check_not_failed()?;
        self.store.release_removals(mark).map_err(|e| self.fail(e.into()))
    }

    /// Makes the store durable (before a snapshot is written: DESIGN §4, flush-then-snapshot).
    pub fn sync(&mut self) -> Result<(), StreamError> {
        self.check_not_failed()?;
        self.store.sync().map_err(|e| self.fail(e.into()))
    }

    /// `sync` split for a background checkpoint: writes what is buffered and returns the
    /// fsyncs to run off this thread (`store::SyncPlan`); `finish_sync` takes them back.
    pub fn begin_sync(&mut self) -> Result<SyncPlan<D>, StreamError> {
        self.check_not_failed()?;
        self.store.begin_sync().map_err(|e| self.fail(e.into()))
    }

    pub fn finish_sync(&mut self, plan: SyncPlan<D>) -> Result<(), StreamError> {
        self.store.finish_sync(plan).map_err(|e| self.fail(e.into()))
    }

    /// Time-driven store work: the `Interval` sync policy. Never expires messages (age limits
    /// apply only at `Expire` entries).
    pub fn tick(&mut self, now: MonoTime) -> Result<(), StreamError> {
        self.check_not_failed()?;
        // The store was opened without `max_age`, so the wall time given here is unused.
        self.store.tick(now, 0).map_err(|e| self.fail(e.into()))
    }

    /// Brings the store and dedupe state to `snap` (at startup with the last Raft snapshot or
    /// `StreamSnapshot::initial()`, or when a leader sends one). The rule of DESIGN §4:
    /// * store ahead (`last_seq > snap.last_seq`): `truncate_after(snap.last_seq)`; the log
    ///   after the snapshot is then replayed in full. Never skip entries below the store's
    ///   recovered last sequence: the OS may have persisted a later block but not an earlier
    ///   one, and skipping would lose the hole.
    /// * then the front moves to `snap.first_seq` and messages the snapshot lists as deleted
    ///   are deleted (a store prefix older than the snapshot still holds them);
    /// * store behind: `NeedCatchup`; `apply` must not be called until catch-up completes.
    ///
    /// The dedupe state is replaced by the snapshot's: ids remembered from store contents or
    /// entries past the snapshot would be wrong after the truncation.
    pub fn restore(&mut self, snap: &StreamSnapshot) -> Result<RestoreOutcome, StreamError> {
        self.check_not_failed()?;
        snap.validate().map_err(|e| StreamError::InvalidSnapshot { reason: e.to_string() })?;
        let mut dedupe = Dedupe::new(self.config.dedupe_window);
        dedupe
            .load(snap.last_timestamp_ns, &snap.dedupe)
            .map_err(|e| StreamError::InvalidSnapshot { reason: format!("dedupe ids: {e:?}") })?;
        // `snap` is durable (the last snapshot, or an installed one persisted first), and
        // everything held was applied before it: writing it can no longer lose a restore
        // anything. The restore's own deletes and purge are covered by `snap` too.
        let restored = self.store.release_removals(u64::MAX).map_err(StreamError::from).and_then(|()| {
            let outcome = self.restore_store(snap)?;
            self.store.release_removals(u64::MAX)?;
            Ok(outcome)
        });
        let outcome = match restored {
            Ok(outcome) => outcome,
            Err(e) => return Err(self.fail(e)),
        };
        self.dedupe = dedupe;
        self.consumers = snap.consumers.clone();
        self.applied_index = None;
        self.mode = match outcome {
            RestoreOutcome::Ready { .. } => Mode::Active,
            RestoreOutcome::NeedCatchup { from_seq, to_seq } => {
                let mut target_deleted = SeqSet::new();
                for &(first, last) in &snap.deleted {
                    target_deleted.insert_range(first, last);
                }
                Mode::CatchingUp(Box::new(Catchup {
                    next_from: from_seq,
                    to_seq,
                    target: snap.clone(),
                    target_deleted,
                }))
            }
        };
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
        Ok(outcome)
    }

    fn restore_store(&mut self, snap: &StreamSnapshot) -> Result<RestoreOutcome, StreamError> {
        let mut truncated_msgs = 0;
        if self.store.state().last_seq > snap.last_seq {
            truncated_msgs = self.store.truncate_after(snap.last_seq)?;
            self.trim_gaps();
        }
        // Deletes before the front moves, so a sequence deleted before the snapshot's purge
        // ends up exactly as on the replica that took the snapshot.
        let mut deleted_msgs = 0;
        let store_last = self.store.state().last_seq;
        for &(first, last) in &snap.deleted {
            let last = last.min(store_last);
            let mut seq = first;
            loop {
                // The first message at or after `seq` (deleting the first message moves the
                // front, so re-read it each time).
                seq = self.gaps.next_absent(seq.max(self.store.state().first_seq));
                if seq > last {
                    break;
                }
                let removed = self.store.delete(seq)?;
                assert!(removed, "sequence {seq} is in range and not a gap, so it holds a message");
                if seq >= self.store.state().first_seq {
                    self.gaps.insert(seq);
                }
                self.trim_gaps();
                deleted_msgs += 1;
                seq += 1;
            }
        }
        if self.store.state().first_seq < snap.first_seq {
            self.store.purge_before(snap.first_seq)?;
            self.trim_gaps();
        }
        self.canonicalize_front()?;
        let state = self.store.state();
        assert!(state.last_seq <= snap.last_seq, "truncated to the snapshot");
        if state.last_seq < snap.last_seq {
            return Ok(RestoreOutcome::NeedCatchup { from_seq: state.last_seq + 1, to_seq: snap.last_seq });
        }
        Ok(RestoreOutcome::Ready { truncated_msgs, deleted_msgs, missing_msgs: snap.msgs.saturating_sub(state.msgs) })
    }

    /// The next catch-up request while catching up: from where the store ends to the
    /// snapshot's last sequence, `max_bytes` clamped to `1..=CATCHUP_CHUNK_BYTES_MAX`.
    pub fn catchup_request(&self, max_bytes: u64) -> Option<CatchupRequest> {
        match &self.mode {
            Mode::CatchingUp(c) => Some(CatchupRequest {
                from_seq: c.next_from,
                to_seq: c.to_seq,
                max_bytes: max_bytes.clamp(1, CATCHUP_CHUNK_BYTES_MAX),
            }),
            _ => None,
        }
    }

    /// Serves a peer's catch-up request from this replica's store: the messages of
    /// `from_seq..` up to `to_seq`, at most `CATCHUP_CHUNK_MSGS_MAX` of them and about
    /// `max_bytes` (at least one message). `None` if this replica does not hold the range
    /// (its last sequence is below `to_seq`, or it is not active itself).
    ///
    /// Read as released (`FileStore::get_range_as_released`): a message deleted or dropped
    /// here after the last snapshot is still part of that snapshot, which is what the peer
    /// is catching up to.
    pub fn serve_catchup(&self, req: &CatchupRequest) -> Result<Option<CatchupChunk>, StreamError> {
        self.read_chunk(req, true)
    }

    /// A chunk of the stream as it is now (deletes applied), for a backup; otherwise as
    /// `serve_catchup`.
    pub fn backup_chunk(&self, req: &CatchupRequest) -> Result<Option<CatchupChunk>, StreamError> {
        self.read_chunk(req, false)
    }

    fn read_chunk(&self, req: &CatchupRequest, as_released: bool) -> Result<Option<CatchupChunk>, StreamError> {
        req.validate().map_err(|e| StreamError::InvalidCatchupRequest { reason: e.to_string() })?;
        if !matches!(self.mode, Mode::Active) || self.store.state().last_seq < req.to_seq {
            return Ok(None);
        }
        let max_bytes = req.max_bytes.clamp(1, CATCHUP_CHUNK_BYTES_MAX);
        let mut messages = if as_released {
            self.store.get_range_as_released(req.from_seq, CATCHUP_CHUNK_MSGS_MAX, max_bytes)?
        } else {
            self.store.get_range(req.from_seq, CATCHUP_CHUNK_MSGS_MAX, max_bytes)?
        };
        let reached_target = messages.last().is_none_or(|m| m.seq >= req.to_seq);
        messages.retain(|m| m.seq <= req.to_seq);
        // Empty, or past the target: nothing else in the range. Otherwise the read may have
        // stopped at a bound, so the chunk ends at its last message.
        let through_seq = match messages.last() {
            Some(m) if !reached_target => m.seq,
            _ => req.to_seq,
        };
        let chunk = CatchupChunk { from_seq: req.from_seq, through_seq, messages };
        debug_assert_eq!(chunk.validate(), Ok(()));
        Ok(Some(chunk))
    }

    /// Writes a catch-up chunk: its messages with their original sequences and timestamps,
    /// and the other sequences of its range as gaps (`skip_through`). Messages the target
    /// snapshot lists as deleted are written as gaps too (a source whose last snapshot is
    /// older still holds them). The chunk must start where the store ends, end at or before
    /// the catch-up target, respect the bounds, and carry every message of the target in its
    /// range; otherwise nothing is written and `InvalidCatchupChunk` says why (a source that
    /// dropped some after a newer snapshot of its own cannot serve this target: ask another,
    /// or for a newer snapshot). Catch-up ends, and `apply` may be called, when a chunk
    /// reaches the target.
    pub fn apply_catchup_chunk(&mut self, chunk: &CatchupChunk) -> Result<CatchupProgress, StreamError> {
        self.check_not_failed()?;
        let Mode::CatchingUp(c) = &self.mode else { return Err(StreamError::NotCatchingUp) };
        let chunk = self.check_chunk(c, chunk).map_err(|reason| {
            crate::coverage::mark("stream.catchup-chunk-refused");
            StreamError::InvalidCatchupChunk { reason }
        })?;
        if let Err(e) = self.write_chunk(&chunk) {
            return Err(self.fail(e));
        }
        let Mode::CatchingUp(c) = &mut self.mode else { unreachable!("checked above") };
        let progress = if chunk.through_seq == c.to_seq {
            self.mode = Mode::Active;
            CatchupProgress { next_from: None }
        } else {
            c.next_from = chunk.through_seq + 1;
            CatchupProgress { next_from: Some(c.next_from) }
        };
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
        Ok(progress)
    }

    /// The chunk to write (without messages the target deletes), or why it cannot be used.
    fn check_chunk(&self, c: &Catchup, chunk: &CatchupChunk) -> Result<CatchupChunk, String> {
        if chunk.from_seq != c.next_from {
            return Err(format!("starts at {} but this replica needs {} next", chunk.from_seq, c.next_from));
        }
        if chunk.through_seq > c.to_seq {
            return Err(format!("ends at {} beyond the catch-up target {}", chunk.through_seq, c.to_seq));
        }
        chunk.validate().map_err(|e| e.to_string())?;
        let max_size = u64::from(self.config.store.limits.max_msg_size_bytes);
        for m in &chunk.messages {
            let size = m.headers.len() as u64 + m.payload.len() as u64;
            if size > max_size {
                return Err(format!("message {} of {size} bytes above max_msg_size_bytes {max_size}", m.seq));
            }
            if let Err(reason) = validate_subject(&m.subject, false) {
                return Err(format!("message {}: invalid subject: {reason}", m.seq));
            }
        }
        let messages: Vec<StoredMessage> =
            chunk.messages.iter().filter(|m| !c.target_deleted.contains(m.seq)).cloned().collect();
        let span = chunk.through_seq - chunk.from_seq + 1;
        let missing = span - messages.len() as u64 - c.target_deleted.count_within(chunk.from_seq, chunk.through_seq);
        if missing > 0 {
            return Err(format!(
                "{missing} of the snapshot's messages in {}..={} are gone at the source (removed after a newer snapshot there)",
                chunk.from_seq, chunk.through_seq
            ));
        }
        Ok(CatchupChunk { from_seq: chunk.from_seq, through_seq: chunk.through_seq, messages })
    }

    fn write_chunk(&mut self, chunk: &CatchupChunk) -> Result<(), StreamError> {
        for m in &chunk.messages {
            self.skip_to(m.seq - 1)?;
            let msg = NewMessage {
                subject: &m.subject,
                headers: &m.headers,
                payload: &m.payload,
                timestamp_ns: m.timestamp_ns,
            };
            let seq = self.store.append(&msg)?;
            assert_eq!(seq, m.seq, "a catch-up message landed at the wrong sequence");
            self.trim_gaps();
        }
        self.skip_to(chunk.through_seq)?;
        Ok(self.canonicalize_front()?)
    }

    /// Moves the front past deleted sequences, so that `first_seq` is a message or
    /// `last_seq + 1`. The store keeps `first_seq` where a purge put it even if that sequence
    /// was deleted earlier, but moves it past when the first message is deleted: without
    /// this, replicas holding the same messages could report different fronts depending on
    /// the order they learnt the deletes and the purge (a snapshot's vs the log's).
    fn canonicalize_front(&mut self) -> Result<(), StoreError> {
        let first = self.store.state().first_seq;
        if self.gaps.contains(first) {
            self.store.purge_before(self.gaps.next_absent(first))?;
            self.trim_gaps();
        }
        Ok(())
    }

    /// Records the sequences from the store's end through `last` as gaps.
    fn skip_to(&mut self, last: u64) -> Result<(), StreamError> {
        let next = self.store.state().last_seq + 1;
        if last >= next {
            self.store.skip_through(last)?;
            self.gaps.insert_range(next, last);
        }
        Ok(())
    }

    /// A deterministic hash of the stream's logical content: range, counts, clock, every
    /// message (sequence, timestamp, subject, headers, payload) and every dedupe id. Replicas
    /// that applied the same entries return the same value. Reads the whole store; if the
    /// store keeps digests (`keep_digests`), asserts that what it read is what they say.
    pub fn state_hash(&self) -> Result<u64, StreamError> {
        self.state_hash_visiting(|_| {})
    }

    /// `state_hash`, handing every message to `visit` in sequence order as it is read: one
    /// pass for a caller that wants the contents as well (the simulator's final dumps).
    pub fn state_hash_visiting(&self, mut visit: impl FnMut(&StoredMessage)) -> Result<u64, StreamError> {
        let mut content = 0u64;
        self.store.for_each_message(|m| {
            assert!(!self.gaps.contains(m.seq), "gap {} holds a message", m.seq);
            content = content.wrapping_add(stored_digest(m));
            visit(m);
        })?;
        if let Some(kept) = self.store.content_digest() {
            assert_eq!(kept, content, "the kept message digests disagree with the store's messages");
        }
        self.dedupe.check_digest();
        Ok(self.hash_with_content(content))
    }

    /// What `state_hash` checks of the kept digests, one window at a time
    /// (`FileStore::verify_digests`): the next window's start, or `None` once a window
    /// reached the end, which also walks the dedupe table's digest. The simulator calls it
    /// every sample, so a long run pays per window, not per message held.
    pub fn verify_kept_digests(&self, from_seq: u64, max_msgs: usize) -> Result<Option<u64>, StreamError> {
        let next = self.store.verify_digests(from_seq, max_msgs)?;
        if next.is_none() {
            self.dedupe.check_digest();
        }
        Ok(next)
    }

    /// `state_hash` from the digests the store keeps, without reading a message: `None`
    /// unless `keep_digests` was called. Equal to `state_hash` whenever both answer.
    pub fn state_hash_kept(&self) -> Option<u64> {
        self.store.content_digest().map(|content| self.hash_with_content(content))
    }

    /// Keeps message digests in the store from now on (`state_hash_kept`). Reads every
    /// message once.
    pub fn keep_digests(&mut self) -> Result<(), StreamError> {
        Ok(self.store.keep_digests()?)
    }

    /// The state hash, given the wrapping sum of the messages' digests (the dedupe ids'
    /// sum is always kept).
    fn hash_with_content(&self, content: u64) -> u64 {
        let mut h = Fnv64::new();
        let state = self.store.state();
        for v in [state.first_seq, state.last_seq, state.msgs, state.bytes, content] {
            h.u64(v);
        }
        h.i64(self.dedupe.clock_ns());
        h.u64(self.dedupe.len() as u64);
        h.u64(self.dedupe.digest());
        // Without consumers the hash is what it was before they existed.
        if !self.consumers.is_empty() {
            self.consumers.hash_into(&mut h);
        }
        h.finish()
    }

    /// Panics if an invariant in the module docs does not hold. O(messages): the store's
    /// check walks its index.
    pub fn check_invariants(&self) {
        self.store.check_invariants();
        self.dedupe.check_invariants();
        self.gaps.check_invariants();
        self.consumers.check_invariants();
        let state = self.store.state();
        assert_eq!(self.gaps.len(), state.num_deleted, "gaps disagree with the store's deleted count");
        if let Some((lowest, _)) = self.gaps.ranges().next() {
            assert!(lowest >= state.first_seq, "gap {lowest} below first_seq");
        }
        if let Some((_, highest)) = self.gaps.ranges().last() {
            assert!(highest <= state.last_seq, "gap {highest} beyond last_seq");
        }
        // A batch that failed part-way can leave the front deleted: a restore write that
        // skipped to its first message and then could not append it (backup-restore 2704,
        // ENOSPC). The replica has stopped and is reopened from disk, so only a live one is
        // held to it.
        if !matches!(self.mode, Mode::Unrestored) && self.failed.is_none() {
            assert!(!self.gaps.contains(state.first_seq), "first_seq {} is a deleted sequence", state.first_seq);
        }
        match &self.mode {
            Mode::Unrestored => {}
            Mode::Active => {
                if let Some(seq) = self.dedupe.last_seq() {
                    assert!(seq <= state.last_seq, "dedupe remembers {seq} beyond last_seq {}", state.last_seq);
                }
            }
            // A chunk whose write failed part-way leaves the store ahead of `next_from`; the
            // replica has stopped and is reopened from disk, so only a live one is held to it.
            Mode::CatchingUp(_) if self.failed.is_some() => {}
            Mode::CatchingUp(c) => {
                assert_eq!(c.next_from, state.last_seq + 1, "catch-up resumes where the store ends");
                assert!(c.next_from <= c.to_seq, "catch-up past its target");
                assert_eq!(c.to_seq, c.target.last_seq);
            }
        }
    }

    // ---- internals ----

    fn check_not_failed(&self) -> Result<(), StreamError> {
        match &self.failed {
            Some(cause) => Err(StreamError::Failed { cause: Box::new(cause.clone()) }),
            None => Ok(()),
        }
    }

    /// Latches a store failure (the replica stops until reopened) and returns the error.
    fn fail(&mut self, error: StreamError) -> StreamError {
        if matches!(error, StreamError::Store(_)) && self.failed.is_none() {
            self.failed = Some(error.clone());
        }
        error
    }

    /// Drops gaps outside the store's range after the front moved (purge, discard-old,
    /// deleting the first message) or the end moved back (truncation).
    fn trim_gaps(&mut self) {
        let state = self.store.state();
        self.gaps.remove_below(state.first_seq);
        self.gaps.remove_above(state.last_seq);
    }
}
