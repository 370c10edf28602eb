//! The file store: one stream's messages in block files on a [`Disk`].
//!
//! Owns: the block files and state file of one stream directory, the in-memory index from
//! sequence to record, the stream's counts, its limits and its sync policy. Layout and
//! guarantees are written down in docs/store.md; byte formats in docs/formats.md.
//!
//! Invariants (checked by [`FileStore::check_invariants`] after every operation in tests):
//! * `first_seq <= next_seq`; sequences `first_seq..next_seq` are the stream's range, and
//!   each is either a message in the index or in `deleted` (never both);
//! * `msgs` and `bytes` are the count and stored size of the messages in range;
//! * blocks have consecutive indexes and increasing `first_seq`; only the last is written;
//! * nothing is appended after a failed write or sync (`failed` latches) until reopened:
//!   what is durable is then unknown, and only recovery can say;
//! * a block file is removed only after the compact record that makes its messages
//!   unnecessary is durable, and never while it holds the latest compact record: that record
//!   is what tells recovery the missing front blocks were purged, not lost;
//! * the first block starts at or below `first_seq` (recovery derives the front from it,
//!   `truncate_after` finds the block of a sequence by it);
//! * `truncate_after` writes the state file describing the truncated stream before it cuts
//!   anything (see `truncate`).

mod block;
mod config;
mod digest;
mod error;
mod hold;
mod recovery;
mod scan;
mod seqset;
mod sync_plan;
#[cfg(test)]
mod tests;
mod truncate;

pub use config::{
    Discard, Limits, StoreConfig, SyncPolicy, BLOCK_SIZE_BYTES_MAX, BLOCK_SIZE_BYTES_MIN, MSG_SIZE_BYTES_LIMIT,
    SUBJECT_BYTES_MAX, WRITE_BUFFER_BYTES_MAX,
};
pub use digest::{message_digest, stored_digest};
pub use error::{CorruptReason, LimitKind, StoreError};
pub use recovery::{Cut, CutReason, RecoveryReport, StateFileStatus};
pub use seqset::SeqSet;
pub use sync_plan::SyncPlan;

use crate::disk::{Disk, DiskFile, EntryKind, OpenMode};
use crate::env::MonoTime;
use crate::format::block::{
    decode_record, encode_record, encode_skip, record_len, BlockHeader, Record, RecordHead, RecordKind, SEQ_MAX,
};
use crate::format::state::StateFile;
use crate::format::FormatError;
use block::{block_name, AppendError, Block};
use bytes::Bytes;
use digest::Digests;
use hold::Holds;
use recovery::{recover, STATE_FILE, STATE_TMP_FILE};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// A message to append. The timestamp is chosen by the caller (the stream layer decides it
/// once, so every replica stores the same value).
#[derive(Clone, Copy, Debug)]
pub struct NewMessage<'a> {
    pub subject: &'a [u8],
    pub headers: &'a [u8],
    pub payload: &'a [u8],
    pub timestamp_ns: i64,
}

/// A message read back from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: u64,
    pub timestamp_ns: i64,
    pub subject: Bytes,
    pub headers: Bytes,
    pub payload: Bytes,
}

/// The stream's counts. An empty stream has `first_seq == last_seq + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamState {
    pub first_seq: u64,
    pub last_seq: u64,
    pub msgs: u64,
    pub bytes: u64,
    /// Sequences in range without a message (deleted or skipped).
    pub num_deleted: u64,
}

pub struct FileStore<D: Disk> {
    disk: D,
    dir: PathBuf,
    config: StoreConfig,
    blocks: VecDeque<Block<D::File>>,
    first_seq: u64,
    next_seq: u64,
    deleted: SeqSet,
    msgs: u64,
    bytes: u64,
    /// Index of the block holding the latest compact record.
    compact_block: Option<u32>,
    /// A block was created since the directory was last synced.
    dir_dirty: bool,
    /// Counts every change that set `dir_dirty`, so a background sync knows whether the
    /// directory sync it made still covers everything (see `sync_plan`).
    dir_changes: u64,
    /// Counts truncations: a background sync's view of the blocks is stale after one.
    cuts: u64,
    /// Blocks wholly below the written front, removed at the next flush (after the compact
    /// record that covers them is durable).
    removals: Vec<Block<D::File>>,
    /// Removals kept in memory until a snapshot covers them (`hold`).
    holds: Holds,
    /// Per-message digests, kept only when asked for (`keep_digests`; simulator only).
    digests: Option<Digests>,
    failed: Option<StoreError>,
    last_sync: Option<MonoTime>,
    /// Something changed since the state file was last written.
    state_stale: bool,
    /// A block was started since the state file was last written.
    rolled_since_state: bool,
    scratch: Vec<u8>,
}

impl<D: Disk> FileStore<D> {
    /// Opens the store in `dir`, creating it if missing, and recovers it: every record is read
    /// and verified, and the store is cut at the first invalid or missing one (see
    /// `recovery`). The report says what was found, cut and lost.
    pub fn open(disk: D, dir: &Path, config: StoreConfig) -> Result<(Self, RecoveryReport), StoreError> {
        config.validate()?;
        create_dir_durably(&disk, dir)?;
        let recovered = recover(&disk, dir, true)?;
        let mut store = FileStore {
            disk,
            dir: dir.to_path_buf(),
            config,
            blocks: recovered.blocks.into(),
            first_seq: recovered.first_seq,
            next_seq: recovered.next_seq,
            deleted: recovered.deleted,
            compact_block: recovered.compact_block,
            msgs: 0,
            bytes: 0,
            dir_dirty: false,
            dir_changes: 0,
            cuts: 0,
            removals: Vec::new(),
            holds: Holds::new(recovered.first_seq),
            digests: None,
            failed: None,
            last_sync: None,
            state_stale: true,
            rolled_since_state: false,
            scratch: Vec::new(),
        };
        (store.msgs, store.bytes) =
            count_messages(store.blocks.iter(), &store.deleted, store.first_seq, store.next_seq);
        if store.blocks.is_empty() {
            store.create_block(1)?;
        }
        // A trailing gap the state file knows of that the blocks lost (see `recovery`): write
        // it again, so the blocks carry it before the state file is replaced.
        if let Some(restore) = recovered.restore {
            if let Some(front) = restore.front {
                store.write_compact(front)?;
            }
            if store.next_seq <= restore.last {
                store.append_skip(restore.last)?;
            }
        }
        // Recovery rewrote everything past the state file's durable mark (it may exist only in
        // the page cache of a process whose fsync failed). Sync it, and the directory (names
        // created since the mark), before anything is built on it.
        store.mark_dir_dirty();
        store.schedule_front_removals()?;
        store.flush()?;
        // A state file from before a cut may describe sequences the store no longer has; once
        // new appends reuse them, its deletes and first sequence would apply to the wrong
        // messages. Replace it with one that describes what was recovered.
        store.write_state_file()?;
        store.state_stale = false;
        // O(messages): cheap next to the scan, but tests call it after every step anyway.
        if cfg!(debug_assertions) {
            store.check_invariants();
        }
        if recovered.report.cut.is_some() {
            crate::coverage::mark("store.tail-cut-at-recovery");
        }
        Ok((store, recovered.report))
    }

    /// Scans the store in `dir` exactly as `open` would, without changing anything on disk.
    pub fn verify(disk: &D, dir: &Path) -> Result<(StreamState, RecoveryReport), StoreError> {
        let recovered = recover(disk, dir, false)?;
        let (msgs, bytes) =
            count_messages(recovered.blocks.iter(), &recovered.deleted, recovered.first_seq, recovered.next_seq);
        // What `open` would add: the restored trailing gap (nothing is indexed or deleted from
        // `next_seq` on, and a restored front lies at or above `next_seq`).
        let (first_seq, last_seq, restored) = match recovered.restore {
            Some(restore) => {
                let front = restore.front.unwrap_or(recovered.first_seq);
                let skip_from = recovered.next_seq.max(front);
                (front, restore.last, (restore.last + 1).saturating_sub(skip_from))
            }
            None => (recovered.first_seq, recovered.next_seq - 1, 0),
        };
        let state = StreamState { first_seq, last_seq, msgs, bytes, num_deleted: recovered.deleted.len() + restored };
        Ok((state, recovered.report))
    }

    pub fn state(&self) -> StreamState {
        StreamState {
            first_seq: self.first_seq,
            last_seq: self.next_seq - 1,
            msgs: self.msgs,
            bytes: self.bytes,
            num_deleted: self.deleted.len(),
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The sequences in range without a message (deleted or skipped): every other sequence
    /// from `first_seq` to `last_seq` is a message in the index (an invariant).
    pub fn deleted(&self) -> &SeqSet {
        &self.deleted
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// From now on keeps a digest of every message (`digest`), for `content_digest`. Reads
    /// every message once to start. For a simulator's frequent state comparisons; production
    /// never calls it.
    pub fn keep_digests(&mut self) -> Result<(), StoreError> {
        let mut digests = Digests::default();
        self.for_each_message(|m| digests.insert(m.seq, stored_digest(m)))?;
        self.digests = Some(digests);
        Ok(())
    }

    /// Reads every message in order, in bounded batches, and hands each to `each`. Panics if
    /// the store returns another number of messages than it counts.
    pub fn for_each_message(&self, mut each: impl FnMut(&StoredMessage)) -> Result<(), StoreError> {
        const BATCH_MSGS: usize = 1024;
        const BATCH_BYTES: u64 = 4 * 1024 * 1024;
        let mut from = self.first_seq;
        let mut seen = 0u64;
        loop {
            let batch = self.get_range(from, BATCH_MSGS, BATCH_BYTES)?;
            let Some(last) = batch.last() else { break };
            batch.iter().for_each(&mut each);
            seen += batch.len() as u64;
            from = last.seq + 1;
        }
        assert_eq!(seen, self.msgs, "the store returned a different number of messages than it counts");
        Ok(())
    }

    /// Checks a window of the kept digests against the store (`keep_digests`): reads at most
    /// `max_msgs` messages (at least one) from `from_seq` on and panics unless the digests
    /// kept for that stretch of sequences are exactly those of the messages read. Returns
    /// where the next window starts, or `None` once a window reached the end of the store,
    /// and then also checks that the kept sum is the sum of the kept digests and that they are
    /// as many as the store's messages, all within its range (so none is left over from a
    /// removal). Successive windows cover the store (what a full read does, in steps); `None`
    /// too if no digests are kept.
    pub fn verify_digests(&self, from_seq: u64, max_msgs: usize) -> Result<Option<u64>, StoreError> {
        /// Bytes read per window at most (the first message is read whatever its size).
        const WINDOW_BYTES_MAX: u64 = 1024 * 1024;
        assert!(max_msgs > 0, "a window of no messages would end every pass at once");
        let Some(kept) = &self.digests else { return Ok(None) };
        let from = from_seq.clamp(self.first_seq, self.next_seq);
        let read = self.get_range(from, max_msgs, WINDOW_BYTES_MAX)?;
        let end = read.last().map_or(self.next_seq, |m| m.seq + 1);
        let mut expected = kept.range(from, end);
        for m in &read {
            let digest = stored_digest(m);
            assert_eq!(
                expected.next(),
                Some((m.seq, digest)),
                "the kept digests disagree with the store's message {}",
                m.seq
            );
        }
        assert_eq!(expected.next(), None, "a digest is kept for a sequence in {from}..{end} the store does not hold");
        if end < self.next_seq {
            return Ok(Some(end));
        }
        kept.check_whole(self.first_seq, self.next_seq, self.msgs);
        Ok(None)
    }

    /// The wrapping sum of every message's `message_digest`, if `keep_digests` was called.
    pub fn content_digest(&self) -> Option<u64> {
        self.digests.as_ref().map(Digests::sum)
    }

    /// Forgets the digests of messages outside `first_seq..next_seq`: called wherever the
    /// range shrinks in memory (a front move, a truncation), before anything can fail after.
    fn trim_digests(&mut self) {
        if let Some(d) = &mut self.digests {
            d.keep_range(self.first_seq, self.next_seq);
        }
    }

    /// The error that stopped writes, if any.
    pub fn failure(&self) -> Option<&StoreError> {
        self.failed.as_ref()
    }

    /// Appends a message and returns its sequence. Durable on return under
    /// `SyncPolicy::Always`; otherwise at the next `sync` (or interval `tick`).
    pub fn append(&mut self, msg: &NewMessage<'_>) -> Result<u64, StoreError> {
        self.check_writable()?;
        if msg.subject.is_empty() {
            return Err(StoreError::InvalidSubject { reason: "empty" });
        }
        if msg.subject.len() > SUBJECT_BYTES_MAX {
            return Err(StoreError::InvalidSubject { reason: "longer than SUBJECT_BYTES_MAX" });
        }
        let size = msg.headers.len() as u64 + msg.payload.len() as u64;
        let max_size = u64::from(self.config.limits.max_msg_size_bytes);
        if size > max_size {
            return Err(StoreError::MessageTooLarge { size_bytes: size, max_bytes: max_size });
        }
        let stored = record_len(msg.subject.len(), msg.headers.len(), msg.payload.len());
        let limits = self.config.limits;
        if let Some(max_bytes) = limits.max_bytes {
            if stored > max_bytes {
                return Err(StoreError::MessageTooLarge { size_bytes: stored, max_bytes });
            }
        }
        if limits.discard == Discard::New {
            if limits.max_msgs.is_some_and(|max| self.msgs + 1 > max) {
                return Err(StoreError::LimitExceeded { limit: LimitKind::MaxMsgs });
            }
            if limits.max_bytes.is_some_and(|max| self.bytes + stored > max) {
                return Err(StoreError::LimitExceeded { limit: LimitKind::MaxBytes });
            }
        }
        let seq = self.next_seq;
        if seq > SEQ_MAX {
            return Err(StoreError::InvalidArgument { reason: "sequence space exhausted (SEQ_MAX)".into() });
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        encode_record(&mut scratch, &Record::message(seq, msg.timestamp_ns, msg.subject, msg.headers, msg.payload));
        let written = self.write_record(&scratch);
        self.scratch = scratch;
        let offset = written?;
        self.last_block_mut().msgs.push(seq, offset, stored as u32);
        if let Some(d) = &mut self.digests {
            d.insert(seq, message_digest(seq, msg.timestamp_ns, msg.subject, msg.headers, msg.payload));
        }
        self.next_seq += 1;
        self.msgs += 1;
        self.bytes += stored;
        if limits.discard == Discard::Old {
            let new_first = self.first_seq_within_limits();
            if new_first > self.first_seq {
                self.write_compact(new_first)?;
            }
        }
        self.sync_if_always()?;
        Ok(seq)
    }

    /// Deletes message `seq`. Returns false if it was not in the stream (already deleted,
    /// never written, or purged).
    pub fn delete(&mut self, seq: u64) -> Result<bool, StoreError> {
        self.check_writable()?;
        if seq < self.first_seq || seq >= self.next_seq || self.deleted.contains(seq) {
            return Ok(false);
        }
        if seq == self.first_seq {
            // Deleting the first message moves the front: one compact record instead of a
            // tombstone, so front blocks can be removed.
            let new_first = self.deleted.next_absent(seq + 1).min(self.next_seq);
            self.write_compact(new_first)?;
        } else {
            let entry = self.entry(seq).expect("a sequence in range and not deleted is indexed");
            self.remove_message(seq, u64::from(entry.len))?;
            self.deleted.insert(seq);
            if let Some(d) = &mut self.digests {
                d.remove(seq);
            }
            self.msgs -= 1;
            self.bytes -= u64::from(entry.len);
        }
        self.sync_if_always()?;
        Ok(true)
    }

    /// Deletes every message below `seq` and returns how many there were. A `seq` beyond the
    /// last sequence also moves the last sequence, so the next append gets `seq`.
    pub fn purge_before(&mut self, seq: u64) -> Result<u64, StoreError> {
        self.check_writable()?;
        if seq > SEQ_MAX {
            return Err(StoreError::InvalidArgument { reason: format!("purge_before({seq}) beyond SEQ_MAX") });
        }
        if seq <= self.first_seq {
            return Ok(0);
        }
        let before = self.msgs;
        self.write_compact(seq)?;
        self.sync_if_always()?;
        Ok(before - self.msgs)
    }

    /// Records that sequences `next..=last` hold no message, so the next append gets
    /// `last + 1` (a gap kept as a gap, e.g. for sequences lost in a crash or absent from a
    /// restored archive). No-op if `last` is not beyond the last sequence.
    pub fn skip_through(&mut self, last: u64) -> Result<(), StoreError> {
        self.check_writable()?;
        if last >= SEQ_MAX {
            return Err(StoreError::InvalidArgument { reason: format!("skip_through({last}) reaches SEQ_MAX") });
        }
        if last < self.next_seq {
            return Ok(());
        }
        self.append_skip(last)?;
        self.sync_if_always()
    }

    /// Writes a skip record for `next_seq..=last` and applies it.
    fn append_skip(&mut self, last: u64) -> Result<(), StoreError> {
        let first = self.next_seq;
        assert!(first <= last, "skip {first}..={last} runs backwards");
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        encode_skip(&mut scratch, first, last, 0);
        let written = self.write_record(&scratch);
        self.scratch = scratch;
        written?;
        self.deleted.insert_range(first, last);
        self.next_seq = last + 1;
        Ok(())
    }

    /// Reads message `seq`, verifying its checksum. `Ok(None)` if the stream has no message
    /// at `seq`; `Err(Corrupt)` if the bytes on disk are not the message that was written
    /// (never wrong data).
    pub fn get(&self, seq: u64) -> Result<Option<StoredMessage>, StoreError> {
        if seq < self.first_seq || seq >= self.next_seq || self.deleted.contains(seq) {
            return Ok(None);
        }
        self.read_stored(seq).map(Some)
    }

    /// Reads the indexed message `seq` (its block still present).
    fn read_stored(&self, seq: u64) -> Result<StoredMessage, StoreError> {
        let (head, all) = self.read_message(seq)?;
        let subject_at = crate::format::block::RECORD_HEADER_BYTES;
        let headers_at = subject_at + head.subject_len as usize;
        let payload_at = headers_at + head.headers_len as usize;
        Ok(StoredMessage {
            seq,
            timestamp_ns: head.timestamp_ns,
            subject: all.slice(subject_at..headers_at),
            headers: all.slice(headers_at..payload_at),
            payload: all.slice(payload_at..payload_at + head.payload_len as usize),
        })
    }

    /// Reads the stored messages with sequence `from_seq` or later, in order, skipping deleted
    /// sequences: at most `max_msgs` of them, and no more than `max_bytes` of subjects,
    /// headers and payloads together, except that the first message is returned whatever its
    /// size (a reader in chunks always makes progress). Empty if there is nothing at or after
    /// `from_seq`, or if `max_msgs` is 0. For follower catch-up in bounded chunks.
    ///
    /// Work is bounded by what is returned: a deleted range is stepped over in one lookup, not
    /// one sequence at a time. Errors as `get`: `Corrupt` rather than wrong bytes.
    pub fn get_range(&self, from_seq: u64, max_msgs: usize, max_bytes: u64) -> Result<Vec<StoredMessage>, StoreError> {
        self.read_range(self.first_seq, &self.deleted, from_seq, max_msgs, max_bytes)
    }

    /// `get_range` as if no held removal had happened (`hold`): messages deleted or dropped
    /// since the last release are returned too (their records are still in the blocks). This
    /// is the stream as of the last released snapshot plus what was appended since, which is
    /// what a peer catching up to that snapshot needs.
    pub fn get_range_as_released(
        &self,
        from_seq: u64,
        max_msgs: usize,
        max_bytes: u64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if self.holds.is_empty() {
            return self.get_range(from_seq, max_msgs, max_bytes);
        }
        let view = self.holds.durable_view(self.first_seq, self.msgs, self.bytes, &self.deleted);
        self.read_range(view.first_seq, &view.deleted, from_seq, max_msgs, max_bytes)
    }

    /// The `get_range` loop over the range `first_seq..next_seq` with `deleted` as its gaps.
    fn read_range(
        &self,
        first_seq: u64,
        deleted: &SeqSet,
        from_seq: u64,
        max_msgs: usize,
        max_bytes: u64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut out = Vec::new();
        let mut total_bytes = 0u64;
        let mut seq = from_seq.max(first_seq);
        // Each pass returns one message or stops.
        while out.len() < max_msgs {
            // Every sequence in range is a message in the index or deleted (invariants, of
            // the memory view and of the durable one), so the first one not deleted is a
            // message.
            seq = deleted.next_absent(seq);
            if seq >= self.next_seq {
                break;
            }
            let entry = self.entry(seq).expect("a sequence in range and not deleted is indexed");
            let size = u64::from(entry.len) - crate::format::block::RECORD_OVERHEAD_BYTES as u64;
            if !out.is_empty() && total_bytes + size > max_bytes {
                break;
            }
            total_bytes += size;
            out.push(self.read_stored(seq)?);
            seq += 1;
        }
        Ok(out)
    }

    /// Reads and verifies the record of message `seq`, which must be in the index. A checksum
    /// mismatch is read a second time before it counts: flips on the read path are
    /// transient, corruption on the medium is not.
    fn read_message(&self, seq: u64) -> Result<(RecordHead, Bytes), StoreError> {
        let block = self.block_for(seq).expect("a sequence in range lies in some block");
        let entry = block.msgs.lookup(seq).expect("a sequence in range and not deleted is indexed");
        let offset = u64::from(entry.offset);
        if let Some(cause) = &self.failed {
            if offset + u64::from(entry.len) > block.synced_bytes {
                // Cut away when the sync that should have made it durable failed.
                return Err(StoreError::Failed { cause: Box::new(cause.clone()) });
            }
        }
        let mut bytes = vec![0u8; entry.len as usize];
        let mut reason = None;
        for _attempt in 0..2 {
            block.read_exact(&mut bytes, offset)?;
            match decode_record(&bytes) {
                Ok((_, record)) if record.kind != RecordKind::Message => {
                    reason = Some(CorruptReason::WrongKind);
                    break;
                }
                Ok((_, record)) if record.seq != seq => {
                    reason = Some(CorruptReason::WrongSequence { found: record.seq });
                    break;
                }
                Ok((head, _)) => return Ok((head, Bytes::from(bytes))),
                Err(error @ FormatError::BadChecksum { .. }) => reason = Some(CorruptReason::Format(error)),
                Err(error) => {
                    // A length or field error can also be a flip on the read path: the
                    // checksum could not even be located. Read again like a mismatch.
                    reason = Some(CorruptReason::Format(error));
                }
            }
        }
        Err(StoreError::Corrupt {
            file: block.path.clone(),
            offset,
            seq: Some(seq),
            reason: reason.expect("the loop sets a reason before it ends without returning"),
        })
    }

    /// Makes everything written so far durable: every dirty block in order, the directory,
    /// then a new state file (temp, sync, rename, sync directory). After a failed sync the
    /// store refuses writes; see `failure`.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.check_writable()?;
        self.flush()?;
        if self.state_stale {
            self.write_state_file()?;
            self.state_stale = false;
        }
        Ok(())
    }

    /// Time-driven work: deletes messages older than `max_age` (by `wall_ns`), and under
    /// `SyncPolicy::Interval` syncs once the interval has passed since the last sync. The
    /// sync happens even if expiry fails (a read error must not stop durability); the first
    /// error is returned.
    pub fn tick(&mut self, now: MonoTime, wall_ns: i64) -> Result<(), StoreError> {
        self.check_writable()?;
        let expired = self.expire(wall_ns);
        let mut synced = Ok(());
        if let SyncPolicy::Interval { interval } = self.config.sync {
            let last = *self.last_sync.get_or_insert(now);
            if now.saturating_since(last) >= interval {
                synced = self.sync();
                if synced.is_ok() {
                    self.last_sync = Some(now);
                }
            }
        }
        expired.and(synced)
    }

    fn expire(&mut self, wall_ns: i64) -> Result<(), StoreError> {
        let Some(max_age) = self.config.limits.max_age else { return Ok(()) };
        let max_age_ns = i64::try_from(max_age.as_nanos()).unwrap_or(i64::MAX);
        let new_first = self.first_seq_after_expiry(wall_ns.saturating_sub(max_age_ns))?;
        if new_first > self.first_seq {
            self.write_compact(new_first)?;
            self.sync_if_always()?;
        }
        Ok(())
    }

    /// True while something written is not yet durable (a sync is due or failed).
    pub fn has_unsynced_writes(&self) -> bool {
        self.dir_dirty || !self.removals.is_empty() || self.blocks.iter().any(|b| b.dirty)
    }

    /// Syncs and closes the store.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.sync()
    }

    /// Panics if an invariant in the module docs does not hold.
    pub fn check_invariants(&self) {
        assert!(self.first_seq >= 1);
        assert!(self.first_seq <= self.next_seq, "first_seq {} > next_seq {}", self.first_seq, self.next_seq);
        assert!(!self.blocks.is_empty(), "a store always has a block to write");
        // Recovery derives the front from the first block's header; truncate_after finds a
        // stream position's block by it.
        assert!(self.blocks[0].first_seq <= self.first_seq, "the first block starts after first_seq");
        assert!(self.blocks[0].first_seq <= self.holds.written_front, "a block below the written front was removed");
        let view = self.holds.durable_view(self.first_seq, self.msgs, self.bytes, &self.deleted);
        self.holds.check(self.first_seq, self.next_seq, &view);
        // What a held removal took out is still indexed and counted: a restore or a peer's
        // catch-up may need it (`get_range_as_released`). With nothing held the view is the
        // memory view, which the walk below counts.
        if !self.holds.is_empty() {
            assert_eq!(
                count_messages(self.blocks.iter(), &view.deleted, view.first_seq, self.next_seq),
                (view.msgs, view.bytes),
                "the store as released"
            );
        }
        self.deleted.check_invariants();
        if let Some((lowest, _)) = self.deleted.ranges().next() {
            assert!(lowest >= self.first_seq, "deleted sequence {lowest} below first_seq");
        }
        if let Some((_, highest)) = self.deleted.ranges().last() {
            assert!(highest < self.next_seq, "deleted sequence {highest} beyond the last");
        }
        let mut msgs = 0u64;
        let mut bytes = 0u64;
        let mut previous: Option<&Block<D::File>> = None;
        for (at, block) in self.blocks.iter().enumerate() {
            block.check_invariants(at + 1 == self.blocks.len());
            if let Some(previous) = previous {
                assert_eq!(block.index, previous.index + 1, "block indexes are consecutive");
                assert!(block.first_seq >= previous.first_seq, "blocks start in sequence order");
            }
            for (seq, entry) in block.msgs.range(self.first_seq, self.next_seq) {
                assert!(u64::from(entry.offset) + u64::from(entry.len) <= block.end_bytes);
                if !self.deleted.contains(seq) {
                    msgs += 1;
                    bytes += u64::from(entry.len);
                }
            }
            previous = Some(block);
        }
        assert_eq!(msgs, self.msgs, "message count");
        assert_eq!(bytes, self.bytes, "byte count");
        assert_eq!(
            self.msgs + self.deleted.len(),
            self.next_seq - self.first_seq,
            "every sequence in range is a message or deleted"
        );
    }

    // ---- internals ----

    fn check_writable(&self) -> Result<(), StoreError> {
        match &self.failed {
            Some(cause) => Err(StoreError::Failed { cause: Box::new(cause.clone()) }),
            None => Ok(()),
        }
    }

    fn mark_dir_dirty(&mut self) {
        self.dir_dirty = true;
        self.dir_changes += 1;
    }

    /// Latches `error` as the reason the store stops writing, and returns it.
    fn fail(&mut self, error: StoreError) -> StoreError {
        if self.failed.is_none() {
            self.failed = Some(error.clone());
        }
        error
    }

    fn last_block_mut(&mut self) -> &mut Block<D::File> {
        self.blocks.back_mut().expect("a store always has a block")
    }

    fn block_for(&self, seq: u64) -> Option<&Block<D::File>> {
        let at = self.blocks.partition_point(|b| b.first_seq <= seq).checked_sub(1)?;
        self.blocks.get(at)
    }

    fn entry(&self, seq: u64) -> Option<block::Entry> {
        self.block_for(seq)?.msgs.lookup(seq)
    }

    /// Writes one encoded record at the end of the last block, starting a new block first if
    /// the record would overflow a non-empty one. Returns the record's offset.
    fn write_record(&mut self, record: &[u8]) -> Result<u64, StoreError> {
        let last = self.blocks.back().expect("a store always has a block");
        let holds_records = last.end_bytes > crate::format::block::BLOCK_HEADER_BYTES as u64;
        if holds_records && last.end_bytes + record.len() as u64 > self.config.block_size_bytes {
            let index = last
                .index
                .checked_add(1)
                .ok_or_else(|| StoreError::InvalidArgument { reason: "block index space exhausted".into() })?;
            // A sealed block keeps nothing buffered: memory stays bounded by one buffer.
            let written = self.last_block_mut().write_pending();
            self.check_append(written)?;
            self.create_block(index)?;
        }
        self.state_stale = true;
        let buffer_limit = if self.config.sync == SyncPolicy::Always { 0 } else { self.config.write_buffer_bytes };
        let appended = self.last_block_mut().append(record, buffer_limit);
        self.check_append(appended)
    }

    /// Turns a block write result into the store's: a clean failure is returned as is; a
    /// failure that left a block's tail unknown also stops all writes.
    fn check_append<T>(&mut self, result: Result<T, AppendError>) -> Result<T, StoreError> {
        match result {
            Ok(value) => Ok(value),
            Err(AppendError::Clean(error)) => Err(error),
            Err(AppendError::Unknown(error)) => Err(self.fail(error)),
        }
    }

    /// Creates block `index` starting at `next_seq` and makes it the last block.
    fn create_block(&mut self, index: u32) -> Result<(), StoreError> {
        let path = self.dir.join(block_name(index));
        let file = self.disk.open(&path, OpenMode::CreateNew).map_err(|e| StoreError::disk(&path, None, e))?;
        self.mark_dir_dirty();
        let prev_end_bytes =
            self.blocks.back().map_or(0, |b| u32::try_from(b.end_bytes).expect("blocks end below 4 GiB"));
        let header = BlockHeader { index, first_seq: self.next_seq, prev_end_bytes };
        if let Err(e) = file.write_at(&header.encode(), 0) {
            let error = StoreError::disk(&path, Some(0), e);
            // Without the file gone, recovery would find a block with a bad header and cut
            // there; harmless, but remove it so the next attempt can reuse the name.
            return Err(match self.disk.remove_file(&path) {
                Ok(()) => error,
                Err(_) => self.fail(error),
            });
        }
        let mut block = Block::new(index, path, file, self.next_seq);
        block.dirty = true;
        self.blocks.push_back(block);
        self.rolled_since_state = true;
        Ok(())
    }

    fn write_marker(&mut self, kind: RecordKind, seq: u64) -> Result<(), StoreError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        encode_record(&mut scratch, &Record::marker(kind, seq, 0));
        let written = self.write_record(&scratch);
        self.scratch = scratch;
        written.map(|_| ())
    }

    /// Moves the front to `new_first`: writes a compact record and applies it, or, with
    /// holds, applies it and holds the record (`hold`).
    fn write_compact(&mut self, new_first: u64) -> Result<(), StoreError> {
        assert!(new_first > self.first_seq);
        if !self.holds.enabled() {
            self.write_marker(RecordKind::Compact, new_first)?;
        } else if new_first > self.next_seq {
            // A purge past the end also moves the end. That is not a removal (no message
            // goes), so it is written now, as a skip, and only the front move is held.
            self.append_skip(new_first - 1)?;
        }
        let end = new_first.min(self.next_seq);
        let (removed_msgs, removed_bytes) = count_messages(self.blocks.iter(), &self.deleted, self.first_seq, end);
        let held = self.hold_front_move(new_first, removed_msgs, removed_bytes);
        self.msgs -= removed_msgs;
        self.bytes -= removed_bytes;
        self.deleted.remove_below(new_first);
        self.first_seq = new_first;
        self.next_seq = self.next_seq.max(new_first);
        self.trim_digests();
        if held {
            return Ok(());
        }
        self.compact_written(new_first)
    }

    /// Moves blocks whose every message is below the written front to the removal list (a
    /// held front move keeps its blocks: a restore may need them). The last block is never
    /// removed: it is where the next record goes. If a removed block holds the latest compact
    /// record, the record is first written again to the last block.
    fn schedule_front_removals(&mut self) -> Result<(), StoreError> {
        let front = self.holds.written_front;
        let removable = self.blocks.iter().skip(1).take_while(|b| b.first_seq <= front).count();
        if removable == 0 {
            return Ok(());
        }
        let first_kept = self.blocks[removable].index;
        if self.compact_block.is_some_and(|at| at < first_kept) {
            self.write_marker(RecordKind::Compact, front)?;
            self.compact_block = Some(self.blocks.back().expect("a store always has a block").index);
        }
        for _ in 0..removable {
            let block = self.blocks.pop_front().expect("counted above");
            self.removals.push(block);
        }
        Ok(())
    }

    /// The first sequence that keeps the stream within max_msgs and max_bytes, deleting the
    /// oldest messages first. Never beyond the newest message.
    fn first_seq_within_limits(&self) -> u64 {
        let limits = self.config.limits;
        let mut msgs = self.msgs;
        let mut bytes = self.bytes;
        let over = |msgs: u64, bytes: u64| {
            limits.max_msgs.is_some_and(|max| msgs > max) || limits.max_bytes.is_some_and(|max| bytes > max)
        };
        if !over(msgs, bytes) {
            return self.first_seq;
        }
        let newest = self.next_seq - 1;
        for block in &self.blocks {
            for (seq, entry) in block.msgs.range(self.first_seq, newest) {
                if self.deleted.contains(seq) {
                    continue;
                }
                msgs -= 1;
                bytes -= u64::from(entry.len);
                if !over(msgs, bytes) {
                    return self.deleted.next_absent(seq + 1);
                }
            }
        }
        newest
    }

    /// The first sequence whose message is not older than `cutoff_ns`, reading (verified)
    /// timestamps from the front of the stream.
    fn first_seq_after_expiry(&self, cutoff_ns: i64) -> Result<u64, StoreError> {
        let mut first = self.first_seq;
        for block in &self.blocks {
            for (seq, _) in block.msgs.range(self.first_seq, self.next_seq) {
                if self.deleted.contains(seq) {
                    continue;
                }
                let (head, _) = self.read_message(seq)?;
                if head.timestamp_ns >= cutoff_ns {
                    return Ok(first);
                }
                first = self.deleted.next_absent(seq + 1);
            }
        }
        Ok(first.min(self.next_seq))
    }

    fn sync_if_always(&mut self) -> Result<(), StoreError> {
        if self.config.sync == SyncPolicy::Always {
            self.flush()?;
            // Once a block: moves the durable mark, so a later open rewrites at most about a
            // block. Best effort: failing only means a longer rewrite at the next open.
            if self.rolled_since_state && self.write_state_file().is_ok() {
                self.state_stale = false;
            }
        }
        Ok(())
    }

    /// Makes every written record durable: dirty blocks in index order, including blocks
    /// awaiting removal (until their removal is durable they are part of the chain recovery
    /// walks, and a hole in one would cut every later block); then removes front blocks
    /// (their compact record is now durable); then one directory sync makes both the new
    /// block names and the removals durable. `dir_dirty` clears only when that sync succeeds,
    /// so a failure leaves `has_unsynced_writes` true.
    fn flush(&mut self) -> Result<(), StoreError> {
        self.write_all_pending()?;
        let total = self.removals.len() + self.blocks.len();
        for at in 0..total {
            let block = if at < self.removals.len() {
                &mut self.removals[at]
            } else {
                &mut self.blocks[at - self.removals.len()]
            };
            if let Err(error) = block.sync() {
                // A failed fsync may have dropped the dirty pages while reads still show
                // them (Linux); a retry would report success for data that is gone.
                return Err(self.fail(error));
            }
        }
        // Oldest first: a crash part-way leaves the remaining blocks contiguous.
        while let Some(block) = self.removals.first() {
            match self.disk.remove_file(&block.path) {
                Ok(()) => {}
                Err(e) if e.kind == crate::disk::DiskErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::disk(&block.path, None, e)),
            }
            self.removals.remove(0);
            self.mark_dir_dirty();
        }
        if self.dir_dirty && crate::bugs::active(crate::bugs::Bug::BlockDirNotSynced) {
            self.dir_dirty = false; // planted: believes the directory is durable without syncing it
        }
        if self.dir_dirty {
            if let Err(e) = self.disk.sync_dir(&self.dir) {
                let error = StoreError::disk(&self.dir, None, e);
                return Err(self.fail(error));
            }
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Writes the buffered records to their file. Only the last block holds any: a block is
    /// appended to only while it is the last, and `write_record` writes its buffer out before
    /// it starts the next one (`check_invariants` asserts it). Walking every block here made
    /// each flush O(blocks).
    fn write_all_pending(&mut self) -> Result<(), StoreError> {
        let written = self.last_block_mut().write_pending();
        self.check_append(written)
    }

    fn write_state_file(&mut self) -> Result<(), StoreError> {
        // Called only right after a successful flush: every block is durable to its end.
        debug_assert!(!self.has_unsynced_writes());
        let state = self.state_file();
        self.write_state(&state)
    }

    /// The state file describing the store as its records do (without held removals), with
    /// the durable mark at the end of the last block (true only right after a flush).
    fn state_file(&self) -> StateFile {
        let last = self.blocks.back().expect("a store always has a block");
        let view = self.holds.durable_view(self.first_seq, self.msgs, self.bytes, &self.deleted);
        StateFile {
            first_seq: view.first_seq,
            last_seq: self.next_seq - 1,
            msgs: view.msgs,
            bytes: view.bytes,
            mark_block: last.index,
            mark_end_bytes: last.end_bytes,
            deleted: view.deleted.ranges().collect(),
        }
    }

    /// Replaces the state file with `state` atomically: temp file, sync, rename, directory
    /// sync.
    fn write_state(&mut self, state: &StateFile) -> Result<(), StoreError> {
        let bytes = state.encode();
        let tmp = self.dir.join(STATE_TMP_FILE);
        let dest = self.dir.join(STATE_FILE);
        let file = self.disk.open(&tmp, OpenMode::Create).map_err(|e| StoreError::disk(&tmp, None, e))?;
        file.set_len(0).map_err(|e| StoreError::disk(&tmp, None, e))?;
        file.write_at(&bytes, 0).map_err(|e| StoreError::disk(&tmp, Some(0), e))?;
        // A failed sync here loses only the new state file: the blocks are already durable
        // and an older state file is always safe to recover from (it knows less).
        file.sync_data().map_err(|e| StoreError::disk(&tmp, None, e))?;
        self.disk.rename(&tmp, &dest).map_err(|e| StoreError::disk(&tmp, None, e))?;
        self.disk.sync_dir(&self.dir).map_err(|e| StoreError::disk(&self.dir, None, e))?;
        self.rolled_since_state = false;
        Ok(())
    }
}

/// The number and stored size of the messages in `first..next` that are not deleted.
fn count_messages<'a, F: DiskFile + 'a>(
    blocks: impl Iterator<Item = &'a Block<F>>,
    deleted: &SeqSet,
    first: u64,
    next: u64,
) -> (u64, u64) {
    let mut msgs = 0u64;
    let mut bytes = 0u64;
    for block in blocks {
        for (seq, entry) in block.msgs.range(first, next) {
            // Most streams have no interior deletes; skip the lookup then.
            if deleted.is_empty() || !deleted.contains(seq) {
                msgs += 1;
                bytes += u64::from(entry.len);
            }
        }
    }
    (msgs, bytes)
}

/// Creates `dir` and any missing ancestors, and syncs every parent on the way, whether or not
/// this call created the child: an earlier open may have created it and failed before its
/// sync, and nothing may be written inside a directory whose name is not durable.
fn create_dir_durably<D: Disk>(disk: &D, dir: &Path) -> Result<(), StoreError> {
    let mut built = PathBuf::new();
    for component in dir.components() {
        let parent = built.clone();
        built.push(component);
        match disk.entry_kind(&built).map_err(|e| StoreError::disk(&built, None, e))? {
            Some(EntryKind::Dir) => {}
            Some(EntryKind::File) => {
                return Err(StoreError::InvalidArgument { reason: format!("{} is a file", built.display()) });
            }
            None => disk.create_dir(&built).map_err(|e| StoreError::disk(&built, None, e))?,
        }
        disk.sync_dir(&parent).map_err(|e| StoreError::disk(&parent, None, e))?;
    }
    Ok(())
}
