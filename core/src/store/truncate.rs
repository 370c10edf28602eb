//! `truncate_after`: cutting a stream back to a sequence, so that a replicated stream can drop
//! what its store holds beyond the last snapshot and replay its log from there (DESIGN §4).
//!
//! The order of disk operations, and why (docs/store.md has the long form):
//! 1. **Flush.** Everything the store acknowledged becomes durable first, so that what is kept
//!    (everything at or below the target) is durable and the state file may be written.
//! 2. **State file first**, describing the truncated stream (last sequence, counts, the
//!    deletes at or below the target). Records to be cut away can hold deletes of kept
//!    messages (a tombstone written after a later message) and the latest compact record;
//!    from here until step 5 is durable, the state file is what recovery learns them from.
//!    A crash from here on recovers at least through the target (see `recovery`: a gap the
//!    state file records and the blocks lost is restored).
//! 3. **Blocks wholly above the target are removed, newest first**, so a crash part-way
//!    leaves a contiguous prefix of the old chain: some messages above the target may
//!    survive, never one after a missing one.
//! 4. **The boundary block is cut** at the first record that carries the stream past the
//!    target; a block that keeps its old tail while a later block is gone, or the reverse, is
//!    caught by the chain fields in block headers.
//! 5. **Records written again** past the cut: a skip record cut short (the target fell inside
//!    it), tombstones of kept messages, and the front (compact record), so the blocks alone
//!    describe the stream again. Then sync the block and the directory, and write the state
//!    file with the final durable mark.
//!
//! Truncating below the front (`seq + 1 < first_seq`: the messages up to `seq` were purged)
//! empties the stream and moves its front back to `seq + 1`: after the flush, a new block
//! starting there is created (recovery drops it while any old block is left: it does not
//! continue their chain), then the state file is written, then every old block is removed,
//! newest first.
//!
//! The state file is the point of no return: once writing it has begun, even if it failed,
//! memory describes the truncated stream and any error stops writes.

use super::block::{AppendError, Block};
use super::scan::{scan_records, ScanStop};
use super::seqset::SeqSet;
use super::{count_messages, CorruptReason, FileStore, StoreError};
use crate::disk::{Disk, DiskErrorKind};
use crate::format::block::{encode_skip, RecordKind, BLOCK_HEADER_BYTES};
use crate::format::state::StateFile;
use std::ops::ControlFlow;

/// Where a truncation cuts, and what it must write again after the cut.
#[derive(Debug)]
struct Plan {
    /// Position in `blocks` of the block holding the cut.
    at: usize,
    /// Offset there of the first record that carries the stream past the target.
    cut_bytes: u64,
    /// The target falls inside a skip record that starts here: it is written again, ending
    /// at the target.
    skip_from: Option<u64>,
    /// Tombstones of kept messages found past the cut, sorted, without duplicates.
    tombstones: Vec<u64>,
    /// A compact record lay past the cut: the front is written again.
    compact_past_cut: bool,
}

impl<D: Disk> FileStore<D> {
    /// Removes every message with a sequence above `seq`, so the next append gets `seq + 1`,
    /// and returns how many messages it removed. Durable on return under every sync policy:
    /// the store is flushed first and the truncation synced.
    ///
    /// * `seq >= last_seq`: nothing to remove (the store is synced, nothing else).
    /// * `first_seq - 1 <= seq < last_seq`: messages `seq + 1..=last_seq` are gone, and so are
    ///   deleted and skipped sequences above `seq`; `last_seq` becomes `seq`. `seq` itself may
    ///   be a deleted or skipped sequence.
    /// * `seq < first_seq - 1`: the messages up to `seq` were purged already, so the stream
    ///   becomes empty with `first_seq = seq + 1` (the front moves back; a replicated stream
    ///   replays its log from there and purges again).
    ///
    /// Cost: besides the flush and a few syncs, it reads the records being cut away (they may
    /// hold deletes of kept messages, written after them).
    ///
    /// A crash during the call recovers to a store holding every message at or below `seq`
    /// exactly as before (none lost, none deleted coming back), with `last_seq >= seq`, and
    /// perhaps a prefix of the messages above `seq` (never one after a missing one): call
    /// again after recovery. An error while cutting stops writes like a failed write
    /// (`failure`); reopen and call again.
    ///
    /// Held removals (`hold`) must be released first: the truncation rewrites the front and
    /// the deletes it keeps.
    pub fn truncate_after(&mut self, seq: u64) -> Result<u64, StoreError> {
        self.check_writable()?;
        assert!(self.holds.is_empty(), "truncate_after with held removals");
        if seq >= self.next_seq - 1 {
            self.sync()?;
            return Ok(0);
        }
        self.flush()?;
        crate::coverage::mark("store.truncated-after");
        let msgs_before = self.msgs;
        if seq + 1 < self.first_seq {
            self.truncate_to_empty(seq + 1)?;
        } else {
            let plan = self.plan_truncation(seq)?;
            self.truncate_at(seq, plan)?;
        }
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
        Ok(msgs_before - self.msgs)
    }

    /// Finds the cut for truncating after `seq` (with `first_seq - 1 <= seq < last_seq`) by
    /// reading the records from the boundary block on. Changes nothing.
    ///
    /// The cut lies in the last block starting at or below `seq + 1`: message and skip records
    /// carry the sequences in order, and a block's header holds the next sequence when it was
    /// created, so every earlier block ends at or below `seq` and every later one was started
    /// after the stream had passed `seq + 1`.
    fn plan_truncation(&self, seq: u64) -> Result<Plan, StoreError> {
        let at = self
            .blocks
            .partition_point(|b| b.first_seq <= seq + 1)
            .checked_sub(1)
            .expect("the first block starts at or below first_seq (invariant)");
        let first_seq = self.first_seq;
        let mut cut: Option<(u64, Option<u64>)> = None;
        let mut tombstones = Vec::new();
        let mut compact_past_cut = false;
        for (position, block) in self.blocks.iter().enumerate().skip(at) {
            // The boundary block is read from the end of its last message at or below `seq`
            // (a record boundary); what lies between is a few markers at most.
            let start = match block.msgs.last_at_or_below(seq) {
                Some((_, entry)) if position == at => u64::from(entry.offset) + u64::from(entry.len),
                _ => BLOCK_HEADER_BYTES as u64,
            };
            let outcome = scan_records::<_, ()>(&**block.file, &block.path, start, None, |offset, record| {
                if cut.is_none() {
                    let past = match record.kind {
                        RecordKind::Message => record.seq > seq,
                        RecordKind::Skip => record.last_seq() > seq,
                        RecordKind::Tombstone | RecordKind::Compact => false,
                    };
                    if past {
                        let skip_from = (record.kind == RecordKind::Skip && record.seq <= seq).then_some(record.seq);
                        cut = Some((offset, skip_from));
                    }
                    return ControlFlow::Continue(());
                }
                match record.kind {
                    RecordKind::Tombstone if first_seq <= record.seq && record.seq <= seq => {
                        tombstones.push(record.seq)
                    }
                    RecordKind::Compact => compact_past_cut = true,
                    _ => {}
                }
                ControlFlow::Continue(())
            })?;
            if position == at && cut.is_none() {
                // What the index says is there is not: the file changed under the store.
                let (offset, reason) = match outcome.stop {
                    Some(ScanStop::Invalid { offset, error }) => (offset, CorruptReason::Format(error)),
                    _ => (outcome.end_bytes, CorruptReason::Missing),
                };
                return Err(StoreError::Corrupt { file: block.path.clone(), offset, seq: Some(seq + 1), reason });
            }
            // An invalid record past the cut ends this block's scan: it is being removed, and
            // the state file (written first) records every delete of a kept message anyway.
        }
        let (cut_bytes, skip_from) = cut.expect("checked at the boundary block");
        tombstones.sort_unstable();
        tombstones.dedup();
        Ok(Plan { at, cut_bytes, skip_from, tombstones, compact_past_cut })
    }

    fn truncate_at(&mut self, seq: u64, plan: Plan) -> Result<(), StoreError> {
        let mut deleted = self.deleted.clone();
        deleted.remove_above(seq);
        let (msgs, bytes) = count_messages(self.blocks.iter().take(plan.at + 1), &deleted, self.first_seq, seq + 1);
        let target = StateFile {
            first_seq: self.first_seq,
            last_seq: seq,
            msgs,
            bytes,
            mark_block: self.blocks[plan.at].index,
            mark_end_bytes: plan.cut_bytes,
            deleted: deleted.ranges().collect(),
        };
        // Once the state file may say `seq` (even if writing it failed, it may be on disk),
        // memory follows, and any failure stops writes: the disk is somewhere between the old
        // stream and the truncated one.
        let written = self.write_state(&target);
        self.next_seq = seq + 1;
        self.deleted = deleted;
        self.msgs = msgs;
        self.bytes = bytes;
        self.trim_digests();
        self.state_stale = true;
        // Not durable until the cut and the directory are synced.
        self.mark_dir_dirty();
        self.cuts += 1;
        let tail: Vec<Block<D::File>> = self.blocks.drain(plan.at + 1..).collect();
        let boundary_index = self.blocks[plan.at].index;
        if plan.compact_past_cut || self.compact_block.is_some_and(|at| at > boundary_index) {
            self.compact_block = None;
        }
        self.blocks[plan.at].msgs.truncate_after(seq);
        match written.and_then(|()| self.cut_and_rewrite(seq, &plan, tail, &target)) {
            Ok(()) => Ok(()),
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Steps 3 to 5 of the module docs.
    fn cut_and_rewrite(
        &mut self,
        seq: u64,
        plan: &Plan,
        tail: Vec<Block<D::File>>,
        target: &StateFile,
    ) -> Result<(), StoreError> {
        self.remove_newest_first(tail)?;
        let block = self.blocks.back_mut().expect("the boundary block is kept");
        block.truncate_to(plan.cut_bytes)?;
        if let Some(first) = plan.skip_from {
            // In place of the skip record the cut removed, and no longer: it cannot roll to a
            // new block, whose header would start past it.
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            encode_skip(&mut scratch, first, seq, 0);
            let appended = self.blocks.back_mut().expect("kept").append(&scratch, 0);
            self.scratch = scratch;
            if let Err(AppendError::Clean(error) | AppendError::Unknown(error)) = appended {
                return Err(error);
            }
        }
        for &tombstone in &plan.tombstones {
            self.write_marker(RecordKind::Tombstone, tombstone)?;
        }
        if plan.compact_past_cut {
            self.write_marker(RecordKind::Compact, self.first_seq)?;
            self.compact_block = Some(self.blocks.back().expect("a store always has a block").index);
        }
        self.flush()?;
        let state = self.state_file();
        if state != *target {
            self.write_state(&state)?;
        }
        self.state_stale = false;
        Ok(())
    }

    /// Empties the stream and moves its front back to `first` (below the current front).
    fn truncate_to_empty(&mut self, first: u64) -> Result<(), StoreError> {
        let last_index = self.blocks.back().expect("a store always has a block").index;
        let index = last_index
            .checked_add(1)
            .ok_or_else(|| StoreError::InvalidArgument { reason: "block index space exhausted".into() })?;
        let target = StateFile {
            first_seq: first,
            last_seq: first - 1,
            msgs: 0,
            bytes: 0,
            mark_block: index,
            mark_end_bytes: BLOCK_HEADER_BYTES as u64,
            deleted: Vec::new(),
        };
        // The new block first: while any old block is left, recovery finds the new one does
        // not continue the chain (it starts below where the old blocks end) and drops it.
        let next_before = self.next_seq;
        self.next_seq = first;
        let created = self.create_block(index);
        self.next_seq = next_before;
        if let Err(error) = created {
            return Err(self.fail(error));
        }
        // Once the state file may say `first` (even if writing it failed), memory follows.
        let written = self.write_state(&target);
        let old: Vec<Block<D::File>> = self.blocks.drain(..self.blocks.len() - 1).collect();
        self.next_seq = first;
        self.first_seq = first;
        self.holds.written_front = first;
        self.deleted = SeqSet::new();
        self.msgs = 0;
        self.bytes = 0;
        self.trim_digests();
        self.compact_block = None;
        self.state_stale = true;
        let result = written.and_then(|()| self.remove_newest_first(old)).and_then(|()| {
            self.flush()?;
            let state = self.state_file();
            if state != target {
                self.write_state(&state)?;
            }
            self.state_stale = false;
            Ok(())
        });
        result.map_err(|error| self.fail(error))
    }

    /// Removes the files of `blocks` (in index order), newest first, so that a crash part-way
    /// leaves a contiguous chain. Durable at the next directory sync.
    fn remove_newest_first(&mut self, blocks: Vec<Block<D::File>>) -> Result<(), StoreError> {
        self.mark_dir_dirty();
        self.cuts += 1;
        for block in blocks.iter().rev() {
            match self.disk.remove_file(&block.path) {
                Ok(()) => {}
                Err(e) if e.kind == DiskErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::disk(&block.path, None, e)),
            }
        }
        Ok(())
    }
}
