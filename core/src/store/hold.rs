//! Held removals: a replicated stream's deletes and front moves, kept out of the block files
//! until a Raft snapshot that covers them is durable.
//!
//! Why: after a crash a replica restores its last snapshot and replays the log after it
//! (DESIGN §4). Truncating the store back to the snapshot removes what was appended after it,
//! but nothing can bring back a message the store already dropped. If a delete, purge, expiry
//! or discard-old drop applied after the snapshot reached the disk, the restored replica's
//! front lies past the snapshot's: until the replay passes that entry again its state differs
//! from its peers' at the same index, and an entry that reads the store in between (a
//! consumer's pull, a delete of a message it no longer has) decides differently for good.
//!
//! With holds on (`hold_removals`, set by the stream machine) a removal changes the store in
//! memory only: reads, counts and limits see it at once, but no tombstone or compact record is
//! written, no block file is removed, and the state file describes the store without it, until
//! `release_removals` says a snapshot taken after it is durable. A crash before that loses the
//! removal, and the replay repeats it. Appends and skips are never held: a restore truncates
//! what lies above its snapshot.
//!
//! Invariants (`check`):
//! * `written_front <= first_seq`; equal, with an empty queue and no shadow, without holds;
//! * an empty queue means every compact was written: `written_front == first_seq`;
//! * `shadow` is the deleted or skipped sequences in `written_front..first_seq`, which the
//!   memory view forgot when its front passed them;
//! * `msgs` and `bytes` are the sums over the queue (what the held removals took out);
//! * epochs in the queue never decrease.
//!
//! Bounds: one queue item per held delete, and consecutive compacts merge into one, so the
//! queue holds the deletes since the last released checkpoint plus one front per epoch. Disk
//! use grows by what was appended since then: block files below the memory front stay until
//! their compact record is written.

use super::seqset::SeqSet;
use super::{FileStore, StoreError};
use crate::disk::Disk;
use crate::format::block::RecordKind;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    /// The front moved to `new_first`.
    Compact { new_first: u64 },
    /// Message `seq` was deleted (not at the front).
    Tombstone { seq: u64 },
}

#[derive(Clone, Copy, Debug)]
struct Held {
    epoch: u64,
    removal: Removal,
    /// Messages and stored bytes the removal took out.
    msgs: u64,
    bytes: u64,
}

#[derive(Debug, Default)]
pub(super) struct Holds {
    enabled: bool,
    epoch: u64,
    queue: VecDeque<Held>,
    /// The front the disk may know: the last compact record written (or recovered).
    pub(super) written_front: u64,
    shadow: SeqSet,
    msgs: u64,
    bytes: u64,
}

/// The store as its durable records and state file may describe it.
pub(super) struct DurableView {
    pub first_seq: u64,
    pub msgs: u64,
    pub bytes: u64,
    pub deleted: SeqSet,
}

impl Holds {
    pub(super) fn new(written_front: u64) -> Holds {
        Holds { written_front, ..Holds::default() }
    }

    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Records a held removal. Consecutive front moves of one epoch merge: only the last
    /// needs writing.
    fn push(&mut self, removal: Removal, msgs: u64, bytes: u64) {
        debug_assert!(self.enabled);
        self.msgs += msgs;
        self.bytes += bytes;
        if let (Removal::Compact { .. }, Some(last)) = (removal, self.queue.back_mut()) {
            if last.epoch == self.epoch && matches!(last.removal, Removal::Compact { .. }) {
                last.removal = removal;
                last.msgs += msgs;
                last.bytes += bytes;
                return;
            }
        }
        self.queue.push_back(Held { epoch: self.epoch, removal, msgs, bytes });
    }

    /// The memory view (`deleted`, counts) turned back into the durable one.
    pub(super) fn durable_view(&self, first_seq: u64, msgs: u64, bytes: u64, deleted: &SeqSet) -> DurableView {
        if self.queue.is_empty() {
            return DurableView { first_seq, msgs, bytes, deleted: deleted.clone() };
        }
        let mut view = self.shadow.clone();
        for (first, last) in deleted.ranges() {
            view.insert_range(first, last);
        }
        for held in &self.queue {
            if let Removal::Tombstone { seq } = held.removal {
                if seq >= self.written_front {
                    let removed = view.remove(seq);
                    debug_assert!(removed, "a held tombstone names a deleted sequence");
                }
            }
        }
        DurableView { first_seq: self.written_front, msgs: msgs + self.msgs, bytes: bytes + self.bytes, deleted: view }
    }

    /// Panics unless the module's invariants hold for a store at `first_seq..next_seq` whose
    /// durable view (`durable_view` of its memory view) is `view`.
    pub(super) fn check(&self, first_seq: u64, next_seq: u64, view: &DurableView) {
        assert!(self.written_front <= first_seq, "written front {} past first_seq {first_seq}", self.written_front);
        if !self.enabled || self.queue.is_empty() {
            assert!(self.queue.is_empty(), "removals held without holds");
            assert_eq!(self.written_front, first_seq, "every front move is written");
            assert!(self.shadow.is_empty(), "shadow deletes without a held front");
        }
        self.shadow.check_invariants();
        if let Some((lowest, _)) = self.shadow.ranges().next() {
            assert!(lowest >= self.written_front, "shadow delete {lowest} below the written front");
        }
        if let Some((_, highest)) = self.shadow.ranges().last() {
            assert!(highest < first_seq, "shadow delete {highest} at or past first_seq");
        }
        let mut epoch = 0;
        let (mut sum_msgs, mut sum_bytes) = (0, 0);
        for held in &self.queue {
            assert!(held.epoch >= epoch, "held removals out of epoch order");
            epoch = held.epoch;
            sum_msgs += held.msgs;
            sum_bytes += held.bytes;
        }
        assert_eq!((sum_msgs, sum_bytes), (self.msgs, self.bytes), "held counts");
        assert_eq!(
            view.msgs + view.deleted.len(),
            next_seq - view.first_seq,
            "every sequence of the durable view is a message or deleted"
        );
    }
}

impl<D: Disk> FileStore<D> {
    /// Holds every later delete and front move in memory until `release_removals` (see the
    /// module docs). For a store under a replicated stream; without it removals are written
    /// as they happen.
    pub fn hold_removals(&mut self) {
        assert!(self.holds.queue.is_empty());
        self.holds.enabled = true;
    }

    /// Ends the current epoch and returns its mark: `release_removals(mark)` writes the
    /// removals made before this call. Taken with the snapshot it belongs to.
    pub fn removal_mark(&mut self) -> u64 {
        self.holds.epoch += 1;
        self.holds.epoch
    }

    /// Writes the held removals made before `mark` (`u64::MAX`: all of them): a snapshot
    /// taken after them is durable, so a restore no longer needs what they remove. The records
    /// are durable at the next sync; front blocks are removed then.
    pub fn release_removals(&mut self, mark: u64) -> Result<(), StoreError> {
        self.check_writable()?;
        while let Some(&held) = self.holds.queue.front() {
            if held.epoch >= mark {
                break;
            }
            match held.removal {
                Removal::Compact { new_first } => {
                    assert!(new_first > self.holds.written_front, "front moves are written in order");
                    self.write_marker(RecordKind::Compact, new_first)?;
                }
                Removal::Tombstone { seq } => {
                    // Below the written front the compact record covers it already.
                    if seq >= self.holds.written_front {
                        self.write_marker(RecordKind::Tombstone, seq)?;
                    }
                }
            }
            self.holds.queue.pop_front();
            crate::coverage::mark("store.removals-released");
            self.holds.msgs -= held.msgs;
            self.holds.bytes -= held.bytes;
            if let Removal::Compact { new_first } = held.removal {
                self.compact_written(new_first)?;
            }
        }
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
        Ok(())
    }

    /// A compact record moving the disk's front to `front` was just written (by a move made
    /// now, or a held one released): blocks wholly below it may go.
    pub(super) fn compact_written(&mut self, front: u64) -> Result<(), StoreError> {
        self.compact_block = Some(self.blocks.back().expect("a store always has a block").index);
        self.holds.written_front = front;
        self.holds.shadow.remove_below(front);
        self.schedule_front_removals()
    }

    /// A delete of `seq` (not the front), `len` stored bytes: a tombstone, written now or held.
    pub(super) fn remove_message(&mut self, seq: u64, len: u64) -> Result<(), StoreError> {
        if self.holds.enabled {
            self.holds.push(Removal::Tombstone { seq }, 1, len);
            Ok(())
        } else {
            self.write_marker(RecordKind::Tombstone, seq)
        }
    }

    /// Before the memory front moves to `new_first`, taking out `msgs` messages of `bytes`:
    /// remembers what the memory view forgets, and holds the move. False without holds (the
    /// caller writes the compact record).
    pub(super) fn hold_front_move(&mut self, new_first: u64, msgs: u64, bytes: u64) -> bool {
        if !self.holds.enabled {
            return false;
        }
        for (first, last) in self.deleted.ranges() {
            if first >= new_first {
                break;
            }
            self.holds.shadow.insert_range(first, last.min(new_first - 1));
        }
        self.holds.push(Removal::Compact { new_first }, msgs, bytes);
        true
    }
}
