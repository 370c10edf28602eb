//! Crash tests of the Raft log storage (`sluice_core::raft::storage`) over faultfs, with
//! proptest: random appends (terms non-decreasing, random sizes, segments of 4 KiB so they
//! roll), conflict truncations, syncs, hard state writes, snapshots with compaction and
//! snapshot installs, then crashes in every mode between operations, inside operations (the
//! power fails after N more mutating calls) and inside recovery (the same, during `open`),
//! restarts without a crash (one kind of them with the first recovery's sync of the newest
//! segment failing, so the next recovery reads records a failed fsync left in the page
//! cache), and, in some cases, injected fsync EIO and ENOSPC. After every reopen the recovered
//! state is held to a model:
//!
//! * (a) every entry synced and not later truncated is recovered, byte for byte;
//! * (b) recovered entries are contiguous from the snapshot, terms non-decreasing, and each is
//!   an entry written at that index at some point (no invented data); stronger, each is the
//!   entry the model holds there now: nothing truncated comes back;
//! * (c) the hard state is the last one `set_hard_state` returned `Ok` for (or one attempted
//!   after it, if that attempt failed), except that a recovery that cut the log may have
//!   raised its commit to the floor it found, and no further;
//! * (d) `commit_floor` is at least every commit claim synced, the last hard state's commit
//!   and the snapshot's index;
//! * (e) the acknowledgement mark is at least the last index of every `persist` and `sync`
//!   that returned (what a node acknowledges), lowered only by truncations and installs, and
//!   never above the recovered log: with no bit flips, no crash may leave a node damaged.
//!
//! The operations respect what a Raft node does: commit claims never go down and never pass
//! the last index; truncation happens only above every claim; snapshots only of committed
//! entries.

use bytes::Bytes;
use proptest::prelude::*;
use sluice_core::disk::Disk;
use sluice_core::raft::node::PersistIo;
use sluice_core::raft::storage::{LogConfig, RaftStorage, RaftStorageError, Recovered};
use sluice_core::raft::types::{Entry, EntryKind, HardState, Index, Membership, Snapshot, SnapshotMeta, Term};
use sluice_faultfs::{CrashMode, FaultConfig, FaultFs, FaultKind};
use std::collections::BTreeMap;
use std::path::Path;

const DIR: &str = "groups/1";
const CONFIG: LogConfig = LogConfig { segment_bytes: 4096, sync_appends: true };

#[derive(Clone, Debug)]
enum Op {
    Append {
        count: u8,
        bump: u8,
        size: u16,
        claim: u16,
        /// Through `persist` (appended, synced, the ack mark raised) instead of `append`.
        persist: bool,
    },
    Truncate {
        pick: u16,
    },
    Sync,
    HardState {
        bump: u8,
        vote: u8,
        commit: u16,
    },
    Snapshot {
        pick: u16,
        keep: u8,
    },
    Install {
        ahead: u8,
        bump: u8,
    },
    Crash {
        mode: Option<CrashMode>,
    },
    Restart,
    /// A restart whose recovery fails to sync the newest segment (its unsynced records leave
    /// the writeback and stay readable: fsyncgate), then another in the same boot.
    RestartWithFailedSync,
    /// The power fails after this many more mutating calls: a crash inside an operation.
    PowerCut {
        after_calls: u8,
    },
    CrashInRecovery {
        mode: Option<CrashMode>,
        after_calls: u8,
    },
}

fn mode() -> impl Strategy<Value = Option<CrashMode>> {
    proptest::option::of((0..CrashMode::ALL.len()).prop_map(|i| CrashMode::ALL[i]))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (1u8..=6, prop_oneof![6 => Just(0u8), 1 => 1u8..=2], 0u16..700, any::<u16>(), any::<bool>())
            .prop_map(|(count, bump, size, claim, persist)| Op::Append { count, bump, size, claim, persist }),
        2 => any::<u16>().prop_map(|pick| Op::Truncate { pick }),
        5 => Just(Op::Sync),
        2 => (0u8..=2, 0u8..4, any::<u16>()).prop_map(|(bump, vote, commit)| Op::HardState { bump, vote, commit }),
        2 => (any::<u16>(), 0u8..20).prop_map(|(pick, keep)| Op::Snapshot { pick, keep }),
        1 => (0u8..40, 0u8..=2).prop_map(|(ahead, bump)| Op::Install { ahead, bump }),
        2 => mode().prop_map(|mode| Op::Crash { mode }),
        1 => Just(Op::Restart),
        1 => Just(Op::RestartWithFailedSync),
        2 => (0u8..12).prop_map(|after_calls| Op::PowerCut { after_calls }),
        1 => (mode(), 0u8..16).prop_map(|(mode, after_calls)| Op::CrashInRecovery { mode, after_calls }),
    ]
}

fn faults() -> impl Strategy<Value = FaultConfig> {
    prop_oneof![
        3 => Just(FaultConfig::none()),
        1 => (0u32..40_000, 0u32..20_000).prop_map(|(fsync, enospc)| FaultConfig {
            fsync_eio_ppm: fsync,
            write_enospc_ppm: enospc,
            ..FaultConfig::none()
        }),
    ]
}

/// Data naming the entry and the write that made it, so two versions at one index differ.
fn data(index: Index, term: Term, version: u64, size: u16) -> Bytes {
    let mut bytes = format!("i{index} t{term} v{version};").into_bytes();
    let mut x = version.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index;
    while bytes.len() < size as usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.push(x as u8);
    }
    bytes.truncate(size.max(1) as usize);
    Bytes::from(bytes)
}

/// What the storage has promised, and what it may legitimately show after a crash.
#[derive(Default)]
struct Model {
    snapshot: Option<Snapshot>,
    /// The log above the snapshot, with each record's commit claim.
    entries: Vec<(Entry, Index)>,
    /// Every entry at or below this index (and above the snapshot) is durable.
    synced_through: Index,
    hard: HardState,
    claim_max: Index,
    /// The acknowledgement mark is at least this (see (e)).
    acked: Index,
    /// Every entry ever written at each index.
    written: BTreeMap<Index, Vec<Entry>>,
    versions: u64,
    /// Outcomes a failed call may or may not have made durable, until the next reopen.
    maybe_hard: Vec<HardState>,
    maybe_snapshots: Vec<Snapshot>,
}

impl Model {
    fn base(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |s| s.meta.last_index)
    }

    fn last_index(&self) -> Index {
        self.base() + self.entries.len() as u64
    }

    fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot.as_ref().map_or(0, |s| s.meta.last_term), |(e, _)| e.term)
    }

    fn entry(&self, index: Index) -> Option<&(Entry, Index)> {
        let at = index.checked_sub(self.base() + 1)?;
        self.entries.get(at as usize)
    }

    fn truncate(&mut self, index: Index) {
        let keep = index.saturating_sub(self.base() + 1) as usize;
        self.entries.truncate(keep);
    }
}

struct Run {
    disk: FaultFs,
    faults: FaultConfig,
    storage: Option<RaftStorage<FaultFs>>,
    model: Model,
    /// A power cut is armed: the next reopen must follow a crash.
    power_cut: bool,
    step: usize,
    log: Vec<String>,
}

type Outcome = Result<(), TestCaseError>;

impl Run {
    fn fail(&self, what: String) -> TestCaseError {
        let tail = self.log[self.log.len().saturating_sub(30)..].join("\n");
        TestCaseError::fail(format!("step {}: {what}\nlast steps:\n{tail}", self.step))
    }

    fn storage(&mut self) -> &mut RaftStorage<FaultFs> {
        self.storage.as_mut().expect("storage is open between steps")
    }

    fn open(&mut self) -> Result<Recovered, TestCaseError> {
        if self.power_cut {
            // The power failed (or is about to): the machine crashes before anything else.
            self.power_cut = false;
            let report = self.disk.crash();
            self.log.push(format!("  power cut, crash: {report}"));
        }
        self.disk.set_config(FaultConfig::none());
        let (storage, recovered) = RaftStorage::open(self.disk.clone(), Path::new(DIR), CONFIG)
            .map_err(|e| self.fail(format!("open: {e}")))?;
        self.storage = Some(storage);
        self.check(&recovered)?;
        self.disk.set_config(self.faults);
        Ok(recovered)
    }

    /// A call failed: it must have been an injected fault. The storage is failed now; restart
    /// it (a process restart, no machine crash, unless the power was cut) and hold it to the
    /// model.
    fn failed(&mut self, what: &str, error: RaftStorageError) -> Outcome {
        if !error.is_injected() {
            return Err(self.fail(format!("{what}: unexpected error {error}")));
        }
        assert!(self.storage().failure().is_some(), "a failed call latches the storage");
        self.log.push(format!("  {what} failed: {error}"));
        self.storage = None;
        self.open().map(|_| ())
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        self.log.push(format!(
            "{}: {op:?} (model last {}, base {})",
            self.step,
            self.model.last_index(),
            self.model.base()
        ));
        match *op {
            Op::Append { count, bump, size, claim, persist } => {
                let first = self.model.last_index() + 1;
                let term = self.model.last_term() + u64::from(bump);
                let mut entries = Vec::new();
                for index in first..first + u64::from(count) {
                    self.model.versions += 1;
                    let data = data(index, term, self.model.versions, size);
                    entries.push(Entry { index, term, kind: EntryKind::Normal, data });
                }
                let last_after = first + u64::from(count) - 1;
                let claim_max = self.model.claim_max;
                let claim = if last_after <= claim_max {
                    claim_max
                } else {
                    claim_max + u64::from(claim) % (last_after - claim_max + 1)
                };
                let result = match persist {
                    false => self.storage().append(&entries, claim),
                    true => self.storage().persist(&PersistIo {
                        id: 1,
                        entries: entries.clone(),
                        commit_claim: claim,
                        ..Default::default()
                    }),
                };
                // Written either way: a failed append's records may still reach the disk.
                self.model.claim_max = claim;
                for entry in entries {
                    self.model.written.entry(entry.index).or_default().push(entry.clone());
                    self.model.entries.push((entry, claim));
                }
                if let Err(e) = result {
                    return self.failed(if persist { "persist" } else { "append" }, e);
                }
                if persist {
                    self.model.synced_through = last_after;
                    self.model.acked = last_after;
                }
            }
            Op::Truncate { pick } => {
                let lowest = self.model.base().max(self.model.claim_max) + 1;
                let last = self.model.last_index();
                if lowest > last {
                    return Ok(());
                }
                let index = lowest + u64::from(pick) % (last - lowest + 1);
                self.model.synced_through = self.model.synced_through.min(index - 1);
                self.model.acked = self.model.acked.min(index - 1);
                match self.storage().truncate_from(index) {
                    Ok(()) => self.model.truncate(index),
                    Err(e) => return self.failed("truncate", e),
                }
            }
            Op::Sync => match self.storage().sync() {
                Ok(()) => {
                    // A sync raises the mark over what it made durable.
                    self.model.synced_through = self.model.last_index();
                    self.model.acked = self.model.acked.max(self.model.last_index());
                }
                Err(e) => return self.failed("sync", e),
            },
            Op::HardState { bump, vote, commit } => {
                let current = self.model.hard;
                let term = current.term + u64::from(bump);
                let vote = if bump == 0 && current.vote != 0 { current.vote } else { u64::from(vote) };
                let commit = current.commit.max(u64::from(commit) % (self.model.claim_max + 1));
                let hs = HardState { term, vote, commit };
                match self.storage().set_hard_state(hs) {
                    Ok(()) => self.model.hard = hs,
                    Err(e) => {
                        self.model.maybe_hard.push(hs);
                        return self.failed("set_hard_state", e);
                    }
                }
            }
            Op::Snapshot { pick, keep } => {
                let low = self.model.base() + 1;
                let high = self.model.last_index().min(self.model.claim_max);
                if low > high {
                    return Ok(());
                }
                let index = low + u64::from(pick) % (high - low + 1);
                let (entry, _) = self.model.entry(index).expect("in the log").clone();
                self.model.versions += 1;
                let snap = Snapshot {
                    meta: SnapshotMeta {
                        last_index: index,
                        last_term: entry.term,
                        membership: Membership::new([1, 2, 3]),
                    },
                    data: data(index, entry.term, self.model.versions, 64),
                };
                if let Err(e) = self.storage().save_snapshot(&snap) {
                    self.model.maybe_snapshots.push(snap);
                    return self.failed("save_snapshot", e);
                }
                let covered = (index - self.model.base()) as usize;
                self.model.entries.drain(..covered);
                self.model.snapshot = Some(snap);
                self.model.synced_through = self.model.synced_through.max(index);
                let through = index.saturating_sub(u64::from(keep) * 3);
                if let Err(e) = self.storage().compact_through(through) {
                    return self.failed("compact_through", e);
                }
            }
            Op::Install { ahead, bump } => {
                let index = self.model.base().max(self.model.claim_max) + u64::from(ahead);
                let term = self.model.last_term() + u64::from(bump);
                self.model.versions += 1;
                let snap = Snapshot {
                    meta: SnapshotMeta { last_index: index, last_term: term, membership: Membership::new([1, 2, 4]) },
                    data: data(index, term, self.model.versions, 80),
                };
                self.model.claim_max = self.model.claim_max.max(index);
                // The storage lowers its mark to the snapshot only if the mark is within its
                // log, which without flips it always is.
                self.model.acked = self.model.acked.min(index);
                if let Err(e) = self.storage().install_snapshot(&snap) {
                    // The new snapshot may be durable and the log partly removed.
                    self.model.maybe_snapshots.push(snap);
                    self.model.synced_through = self.model.synced_through.min(index);
                    return self.failed("install_snapshot", e);
                }
                self.model.entries.clear();
                self.model.snapshot = Some(snap);
                self.model.synced_through = index;
            }
            Op::PowerCut { after_calls } => {
                self.disk.set_power_cut_after(Some(u64::from(after_calls)));
                self.power_cut = true;
            }
            Op::Crash { mode } => {
                self.power_cut = false;
                self.storage = None;
                let report = match mode {
                    Some(mode) => self.disk.crash_with(mode),
                    None => self.disk.crash(),
                };
                self.log.push(format!("  crash: {report}"));
                self.open()?;
            }
            Op::Restart => {
                self.storage = None;
                self.open()?;
            }
            Op::RestartWithFailedSync => {
                self.storage = None;
                if self.power_cut {
                    // The power is about to fail: the machine crashes first (in `open`).
                    return self.open().map(|_| ());
                }
                let log_dir = Path::new(DIR).join("log");
                let names = self.disk.list_dir(&log_dir).map_err(|e| self.fail(format!("list: {e}")))?;
                if let Some(newest) = names.into_iter().filter(|n| n.ends_with(".seg")).max() {
                    self.disk.fail_next_sync_data(&log_dir.join(newest)).map_err(|e| self.fail(format!("arm: {e}")))?;
                }
                self.disk.set_config(FaultConfig::none());
                match RaftStorage::open(self.disk.clone(), Path::new(DIR), CONFIG) {
                    // A cut removed the segment before its sync: an ordinary open.
                    Ok((storage, recovered)) => {
                        self.storage = Some(storage);
                        self.check(&recovered)?;
                        self.disk.set_config(self.faults);
                    }
                    Err(e) if e.is_injected() => {
                        self.log.push(format!("  recovery's sync failed: {e}"));
                        self.open()?;
                    }
                    Err(e) => return Err(self.fail(format!("recovery with a failing sync: {e}"))),
                }
            }
            Op::CrashInRecovery { mode, after_calls } => {
                self.power_cut = false;
                self.storage = None;
                let report = match mode {
                    Some(mode) => self.disk.crash_with(mode),
                    None => self.disk.crash(),
                };
                self.disk.set_config(FaultConfig::none());
                self.disk.set_power_cut_after(Some(u64::from(after_calls)));
                let attempt = RaftStorage::open(self.disk.clone(), Path::new(DIR), CONFIG).map(|_| ());
                if let Err(e) = &attempt {
                    if !e.is_injected() {
                        return Err(self.fail(format!("recovery under a power cut: {e}")));
                    }
                }
                let second = self.disk.crash();
                self.log.push(format!(
                    "  crash: {report}; recovery after {after_calls} calls: {attempt:?}; crash: {second}"
                ));
                self.open()?;
            }
        }
        if let Some(storage) = &self.storage {
            storage.check_invariants();
            let (last, base) = (storage.last_index(), storage.first_index() - 1);
            if (last, base) != (self.model.last_index(), self.model.base()) {
                return Err(self.fail(format!(
                    "storage says last {last} base {base}, model {} {}",
                    self.model.last_index(),
                    self.model.base()
                )));
            }
        }
        Ok(())
    }

    /// Holds a recovery to the model, then makes the model what was recovered.
    fn check(&mut self, recovered: &Recovered) -> Outcome {
        let model = &self.model;
        // (c), where a recovery that cut the log may also have raised the commit to the floor
        // it found (so the node stays damaged across restarts; a crash inside that recovery
        // leaves the raised value for the next one), but never past a commit index some
        // record claimed or a snapshot covered
        let got = recovered.hard_state;
        let claimed = model
            .claim_max
            .max(model.base())
            .max(model.maybe_snapshots.iter().map(|s| s.meta.last_index).max().unwrap_or(0));
        let raised_from = |hs: &HardState| {
            hs.term == got.term && hs.vote == got.vote && hs.commit < got.commit && got.commit <= claimed
        };
        let expected = got == model.hard || model.maybe_hard.contains(&got);
        if !(expected || raised_from(&model.hard) || model.maybe_hard.iter().any(raised_from)) {
            return Err(self.fail(format!("hard state {got:?}, expected {:?} (claims up to {claimed})", model.hard)));
        }
        if recovered.snapshot != model.snapshot
            && !model.maybe_snapshots.iter().any(|s| Some(s) == recovered.snapshot.as_ref())
        {
            return Err(self.fail(format!(
                "snapshot {:?}, expected {:?}",
                recovered.snapshot.as_ref().map(|s| &s.meta),
                model.snapshot.as_ref().map(|s| &s.meta)
            )));
        }
        if recovered.corrupt_snapshot.is_some() {
            return Err(self.fail(format!("corrupt snapshot: {:?}", recovered.corrupt_snapshot)));
        }
        let base = recovered.snapshot.as_ref().map_or(0, |s| s.meta.last_index);
        // (b)
        let mut previous_term = recovered.snapshot.as_ref().map_or(0, |s| s.meta.last_term);
        for (k, entry) in recovered.entries.iter().enumerate() {
            if entry.index != base + 1 + k as u64 || entry.term < previous_term {
                return Err(
                    self.fail(format!("entry {k} is {}@{} after term {previous_term}", entry.index, entry.term))
                );
            }
            previous_term = entry.term;
            if !model.written.get(&entry.index).is_some_and(|all| all.contains(entry)) {
                return Err(self.fail(format!("entry {} (term {}) was never written", entry.index, entry.term)));
            }
            if model.entry(entry.index).map(|(e, _)| e) != Some(entry) {
                return Err(self.fail(format!("entry {} (term {}) is not the current one", entry.index, entry.term)));
            }
        }
        // (a)
        let recovered_last = base + recovered.entries.len() as u64;
        if model.synced_through > recovered_last && model.synced_through > base {
            return Err(self.fail(format!(
                "entries through {} were synced, recovered through {recovered_last} (cut: {:?})",
                model.synced_through,
                recovered.cut.as_ref().map(|c| c.to_string())
            )));
        }
        // (d): claims of synced records still above the recovered snapshot (a failed install
        // may have made a newer snapshot durable and removed the records below it).
        let synced_claims = model
            .entries
            .iter()
            .filter(|(e, _)| e.index <= model.synced_through && e.index > base)
            .map(|&(_, claim)| claim)
            .max()
            .unwrap_or(0);
        let floor = synced_claims.max(model.hard.commit).max(model.base());
        if recovered.commit_floor < floor {
            return Err(self.fail(format!("commit floor {} below {floor}", recovered.commit_floor)));
        }
        // (e)
        if recovered.ack_mark < model.acked {
            return Err(self.fail(format!("ack mark {} below {} acknowledged", recovered.ack_mark, model.acked)));
        }
        if recovered.ack_mark > recovered_last.max(base) {
            return Err(self.fail(format!(
                "ack mark {} above the recovered log ({recovered_last}, snapshot {base}): damaged by a crash",
                recovered.ack_mark
            )));
        }

        let claims: Vec<Index> =
            recovered.entries.iter().map(|e| model.entry(e.index).expect("checked above").1).collect();
        let model = &mut self.model;
        model.entries = recovered.entries.iter().cloned().zip(claims).collect();
        model.snapshot = recovered.snapshot.clone();
        model.hard = recovered.hard_state;
        model.synced_through = recovered_last;
        model.acked = recovered.ack_mark;
        model.maybe_hard.clear();
        model.maybe_snapshots.clear();
        Ok(())
    }
}

fn run(seed: u64, faults: FaultConfig, ops: &[Op]) -> Outcome {
    let mut run = Run {
        disk: FaultFs::new(seed),
        faults,
        storage: None,
        model: Model::default(),
        power_cut: false,
        step: 0,
        log: Vec::new(),
    };
    run.open()?;
    for (step, op) in ops.iter().enumerate() {
        run.step = step;
        run.apply(op)?;
    }
    // Every case ends in a crash.
    run.step = ops.len();
    run.apply(&Op::Crash { mode: None })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random operations and crashes in every mode, with crashes inside recovery: the
    /// recovered log, hard state, snapshot and commit floor keep every promise (module docs).
    #[test]
    fn raft_log_survives_crashes(seed in any::<u64>(), faults in faults(),
                                 ops in proptest::collection::vec(op(), 1..80)) {
        run(seed, faults, &ops)?;
    }
}

/// A fixed, long run with every kind of operation, so a regression shows up without
/// proptest's shrinking in the way.
#[test]
fn a_long_fixed_run_survives() {
    let mut ops = Vec::new();
    for i in 0..400u16 {
        let op = match i % 23 {
            5 => Op::Sync,
            9 => Op::HardState { bump: (i % 3) as u8, vote: (i % 4) as u8, commit: i },
            11 => Op::Truncate { pick: i * 7 },
            13 => Op::Snapshot { pick: i * 13, keep: (i % 5) as u8 },
            17 => Op::Crash { mode: Some(CrashMode::ALL[(i as usize / 23) % CrashMode::ALL.len()]) },
            19 => Op::CrashInRecovery { mode: None, after_calls: (i % 11) as u8 },
            21 if i % 2 == 0 => Op::Install { ahead: (i % 9) as u8, bump: 1 },
            _ => Op::Append {
                count: (i % 5 + 1) as u8,
                bump: u8::from(i % 31 == 0),
                size: i * 37 % 650,
                claim: i,
                persist: i % 3 != 0,
            },
        };
        ops.push(op);
    }
    run(7, FaultConfig::none(), &ops).unwrap();
}

/// A bit flipped on the read path (the medium is intact) must not make recovery cut durable
/// entries or refuse a valid hard state: every invalid thing is read twice before it counts.
#[test]
fn a_flip_on_the_read_path_is_not_corruption() {
    let disk = FaultFs::new(3);
    let dir = Path::new(DIR);
    let (mut storage, _) = RaftStorage::open(disk.clone(), dir, CONFIG).unwrap();
    let entries: Vec<Entry> = (1..=60)
        .map(|index| Entry { index, term: 1, kind: EntryKind::Normal, data: data(index, 1, index, 200) })
        .collect();
    storage.append(&entries, 50).unwrap();
    storage.sync().unwrap();
    let hs = HardState { term: 1, vote: 2, commit: 40 };
    storage.set_hard_state(hs).unwrap();
    let snap = Snapshot {
        meta: SnapshotMeta { last_index: 30, last_term: 1, membership: Membership::new([1, 2]) },
        data: Bytes::from_static(b"state"),
    };
    storage.save_snapshot(&snap).unwrap();
    drop(storage);
    disk.crash_with(CrashMode::LoseUnsynced);

    let segment = dir.join("log/00000000000000000001.seg");
    for (path, offset) in [
        (segment.clone(), 3),                       // the segment header's magic
        (segment.clone(), 24 + 2 * (33 + 200) + 1), // a record's length field
        (segment, 24 + 5 * (33 + 200) + 100),       // a record's data
        (dir.join("hard.0"), 15),
        (dir.join("hard.1"), 15),
        (dir.join("snap-00000000000000000030"), 45),
    ] {
        disk.flip_next_read(&path, offset, 2).unwrap();
    }
    let (_, recovered) = RaftStorage::open(disk.clone(), dir, CONFIG).unwrap();
    assert_eq!(recovered.cut, None);
    assert_eq!(recovered.hard_state, hs);
    assert_eq!(recovered.snapshot, Some(snap));
    assert_eq!(recovered.entries, entries[30..].to_vec());
    assert_eq!(recovered.commit_floor, 50);
    assert_eq!(disk.fault_counts().get(&FaultKind::ReadBitflip), Some(&6), "every flip was read");
}

/// The interval mode (`sync_appends: false`): `persist` leaves appended entries to the OS,
/// so a power loss before the owner's `sync` loses them; after `sync` they survive. The
/// default mode syncs them inside `persist`.
#[test]
fn persist_syncs_appends_only_in_the_synchronous_mode() {
    use sluice_core::raft::PersistIo;
    let recovered_after_crash = |sync_appends: bool, sync_after: bool| -> usize {
        let disk = FaultFs::new(11);
        let config = LogConfig { sync_appends, ..CONFIG };
        let (mut storage, _) = RaftStorage::open(disk.clone(), Path::new(DIR), config).unwrap();
        let entries: Vec<Entry> = (1..=20)
            .map(|index| Entry { index, term: 1, kind: EntryKind::Normal, data: data(index, 1, index, 100) })
            .collect();
        storage.persist(&PersistIo { id: 1, entries, commit_claim: 0, ..Default::default() }).unwrap();
        if sync_after {
            storage.sync().unwrap();
        }
        drop(storage);
        disk.crash_with(CrashMode::LoseUnsynced);
        RaftStorage::open(disk, Path::new(DIR), config).unwrap().1.entries.len()
    };
    assert_eq!(recovered_after_crash(true, false), 20, "synchronous mode: durable when persist returns");
    // Interval mode writes no commit claim above the synced log: after a power loss the
    // floor stays within what survived, so the node is not taken for damaged.
    let disk = FaultFs::new(12);
    let config = LogConfig { sync_appends: false, ..CONFIG };
    let (mut storage, _) = RaftStorage::open(disk.clone(), Path::new(DIR), config).unwrap();
    let batch = |range: std::ops::RangeInclusive<Index>| -> Vec<Entry> {
        range.map(|index| Entry { index, term: 1, kind: EntryKind::Normal, data: data(index, 1, index, 100) }).collect()
    };
    storage.persist(&PersistIo { id: 1, entries: batch(1..=10), commit_claim: 10, ..Default::default() }).unwrap();
    storage.sync().unwrap();
    let hard_state = Some(HardState { term: 2, vote: 1, commit: 30 });
    storage
        .persist(&PersistIo { id: 2, entries: batch(11..=30), commit_claim: 30, hard_state, ..Default::default() })
        .unwrap();
    drop(storage);
    disk.crash_with(CrashMode::LoseUnsynced);
    let (_, recovered) = RaftStorage::open(disk, Path::new(DIR), config).unwrap();
    assert_eq!(recovered.entries.len(), 10, "the synced batch survives, the unsynced one is lost");
    assert_eq!(recovered.hard_state.term, 2, "votes stay synchronous");
    assert!(recovered.commit_floor <= 10, "commit floor {} above the surviving log", recovered.commit_floor);
    assert_eq!(recovered_after_crash(false, false), 0, "interval mode: nothing synced until sync()");
    assert_eq!(recovered_after_crash(false, true), 20, "interval mode: durable after sync()");
}
