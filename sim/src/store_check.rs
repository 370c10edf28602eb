//! Crash checking of the file store over faultfs.
//!
//! A workload of store operations (appends, deletes, purges, skips, syncs, time passing,
//! reads, crashes, clean restarts) runs against a `FileStore` on a faultfs disk and against a
//! reference model. The model remembers two states: `current` (what the store has
//! acknowledged) and `synced` (what it had acknowledged at its last durability point), plus
//! every message ever appended at each sequence still in use. After each crash the recovered
//! store must hold:
//! * **durability**: every message of `synced` not deleted since; its last sequence at least
//!   `synced`'s; no message `synced` did not have (deleted or purged) at or below its last;
//! * **prefix**: beyond `synced`, at most a contiguous run of the unsynced appends: no gap
//!   (a present message after a missing one that was never deleted);
//! * **integrity**: every message it returns is exactly the one appended at that sequence;
//! * **honest report**: every sequence the recovery report calls lost is absent and was
//!   never synced.
//!
//! Between crashes every read must return the acknowledged message, `None` for a deleted one,
//! or an error that was injected, never other bytes.
//!
//! `truncate_after(seq)` flushes first, then writes the state file, then cuts. If it fails
//! after the store has taken the truncation in (its last sequence is `seq`), the disk may be
//! anywhere between the old stream and the truncated one, and a crash then must recover to:
//! * every message at or below `seq` exactly as before the call: none missing, none that was
//!   deleted or purged coming back, the same front (a truncation below the front may leave
//!   the front anywhere between `seq + 1` and the old front);
//! * a last sequence at least `seq` (a gap the target fell into is kept) and at most the old
//!   last;
//! * above `seq`, only messages that were appended there, with no old message missing before
//!   one that survived: a prefix of the old stream, for the caller to truncate again;
//! * losses reported only above `seq`.

use crate::trace::Trace;
use sluice_core::env::{Clock, MonoTime};
use sluice_core::format::block::record_len;
use sluice_core::store::{Discard, FileStore, LimitKind, NewMessage, RecoveryReport, StoreConfig, StoreError};
use sluice_faultfs::{CrashMode, CrashReport, FaultConfig, FaultFs, FaultKind};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One step of a store workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    Append {
        subject: u8,
        len: u16,
    },
    /// Deletes the `pick`-th present message (modulo the count).
    Delete {
        pick: u16,
    },
    /// Purges before a sequence chosen by `pick` (sometimes beyond the last).
    Purge {
        pick: u16,
    },
    Skip {
        count: u8,
    },
    Sync,
    Tick {
        advance_ms: u16,
    },
    /// Reads the `pick`-th sequence of the range (present or not).
    Get {
        pick: u16,
    },
    /// A machine crash; `None` lets faultfs draw the mode.
    Crash {
        mode: Option<CrashMode>,
    },
    /// A clean close and reopen, no crash.
    Reopen,
    /// `truncate_after` a sequence chosen by `pick`, from a little below the front to a little
    /// beyond the end.
    Truncate {
        pick: u16,
    },
    /// A crash, then recovery loses power after `after_calls` mutating disk calls, then
    /// another crash, then recovery.
    CrashInRecovery {
        mode: Option<CrashMode>,
        after_calls: u8,
    },
}

impl fmt::Display for StoreOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreOp::Append { subject, len } => write!(f, "append subject={subject} len={len}"),
            StoreOp::Delete { pick } => write!(f, "delete pick={pick}"),
            StoreOp::Purge { pick } => write!(f, "purge pick={pick}"),
            StoreOp::Skip { count } => write!(f, "skip count={count}"),
            StoreOp::Sync => write!(f, "sync"),
            StoreOp::Tick { advance_ms } => write!(f, "tick +{advance_ms}ms"),
            StoreOp::Get { pick } => write!(f, "get pick={pick}"),
            StoreOp::Crash { mode: Some(mode) } => write!(f, "crash {}", mode.name()),
            StoreOp::Crash { mode: None } => write!(f, "crash random"),
            StoreOp::Reopen => write!(f, "reopen"),
            StoreOp::Truncate { pick } => write!(f, "truncate pick={pick}"),
            StoreOp::CrashInRecovery { mode, after_calls } => {
                write!(
                    f,
                    "crash {} then crash in recovery after {after_calls} calls",
                    mode.map_or("random", |m| m.name())
                )
            }
        }
    }
}

/// A broken invariant: which, at which step, and the evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub step: usize,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: step {}: {}", self.invariant, self.step, self.detail)
    }
}

/// What a passing run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreRunStats {
    pub steps: usize,
    pub appends: u64,
    /// Truncations that removed something.
    pub truncations: u64,
    /// Truncations that failed part-way, leaving the disk between two streams.
    pub truncations_interrupted: u64,
    /// Recoveries checked against a truncation that failed part-way.
    pub recoveries_mid_truncate: u64,
    pub crashes: u64,
    /// Unsynced messages a crash legitimately lost.
    pub unsynced_lost: u64,
    /// Recoveries that cut at an invalid or missing record.
    pub cuts: u64,
    pub faults: BTreeMap<FaultKind, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    subject: Vec<u8>,
    payload: Vec<u8>,
    timestamp_ns: i64,
}

/// The messages of a stream as the model sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Model {
    first: u64,
    next: u64,
    msgs: BTreeMap<u64, Msg>,
}

impl Model {
    fn empty() -> Self {
        Model { first: 1, next: 1, msgs: BTreeMap::new() }
    }

    /// Moves the front to `seq`, dropping messages below it.
    fn purge_before(&mut self, seq: u64) {
        self.msgs = self.msgs.split_off(&seq);
        self.first = self.first.max(seq);
        self.next = self.next.max(seq);
    }

    /// Stored bytes, counted as the store counts them (whole records).
    fn bytes(&self) -> u64 {
        self.msgs.values().map(|m| record_len(m.subject.len(), 0, m.payload.len())).sum()
    }

    /// What `truncate_after(seq)` leaves: nothing above `seq`; below the front, an empty
    /// stream whose front moved back to `seq + 1`.
    fn truncate_after(&mut self, seq: u64) {
        if seq + 1 >= self.next {
            return;
        }
        self.msgs.split_off(&(seq + 1));
        self.next = seq + 1;
        self.first = self.first.min(seq + 1);
    }

    /// The front after the first message (or nothing) is gone, skipping deleted sequences.
    fn first_after_deleting_front(&self) -> u64 {
        self.msgs.keys().next().copied().unwrap_or(self.next)
    }
}

/// What an operation did to the stream, in the order the store wrote it. The store writes
/// records in operation order and recovery keeps a prefix of them, so if an unsynced append
/// survived a crash, every earlier effect must have survived too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Appended(u64),
    Deleted(u64),
    FrontTo(u64),
    Skipped(u64),
}

/// A `truncate_after(seq)` that failed part-way: the disk holds something between `before`
/// and the truncated stream until the next recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Truncating {
    seq: u64,
    before: Model,
}

/// How the workload reads time: a clock and a way to move it forward.
pub struct TimeSource<'a, C: Clock> {
    pub clock: &'a C,
    pub advance: &'a dyn Fn(Duration),
}

impl<C: Clock> Clone for TimeSource<'_, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C: Clock> Copy for TimeSource<'_, C> {}

struct Run<'a, C: Clock> {
    disk: FaultFs,
    dir: &'a Path,
    config: StoreConfig,
    faults: FaultConfig,
    time: TimeSource<'a, C>,
    store: Option<FileStore<FaultFs>>,
    current: Model,
    synced: Model,
    /// Every message appended at each sequence, deleted or not, until a crash or truncation
    /// frees the sequence for another.
    appended: BTreeMap<u64, Msg>,
    /// Effects since `synced` was last taken, in order.
    effects: Vec<Effect>,
    /// A truncation the disk may hold only part of.
    truncating: Option<Truncating>,
    /// Read flips injected before the current step began.
    flips_before: u64,
    counter: u64,
    step: usize,
    stats: StoreRunStats,
}

fn violation(invariant: &'static str, step: usize, detail: impl Into<String>) -> Violation {
    Violation { invariant, step, detail: detail.into() }
}

/// Runs `ops` against a store on `disk` and checks every invariant in the module docs. Each
/// step and its outcome goes to `trace`. Injected faults follow `faults` except while the
/// store recovers (recovery itself is checked with a healthy disk).
pub fn run_store_check<C: Clock>(
    disk: FaultFs,
    config: StoreConfig,
    faults: FaultConfig,
    time: TimeSource<'_, C>,
    ops: &[StoreOp],
    trace: &mut Trace,
) -> Result<StoreRunStats, Violation> {
    let mut checker = StoreChecker::new(disk, config, faults, time)?;
    for op in ops {
        checker.step(op, trace)?;
    }
    Ok(checker.finish())
}

/// A store under check, one step at a time, that can also be forked to check one particular
/// crash at the current point (for exhaustive enumeration of crash states).
pub struct StoreChecker<'a, C: Clock> {
    run: Run<'a, C>,
    events: Arc<Mutex<Vec<String>>>,
}

impl<'a, C: Clock> StoreChecker<'a, C> {
    /// Opens a fresh store in directory `stream` of `disk`.
    pub fn new(
        disk: FaultFs,
        config: StoreConfig,
        faults: FaultConfig,
        time: TimeSource<'a, C>,
    ) -> Result<Self, Violation> {
        let dir = Path::new("stream");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        disk.set_observer(Box::new(move |event| sink.lock().expect("event sink").push(event.to_string())));
        let faults_during_open = disk.config();
        disk.set_config(FaultConfig::none());
        let opened = FileStore::open(disk.clone(), dir, config);
        disk.set_config(faults_during_open);
        let (store, _) = opened.map_err(|e| violation("open", 0, format!("open failed: {e}")))?;
        disk.set_config(faults);
        let run = Run {
            disk,
            dir,
            config,
            faults,
            time,
            store: Some(store),
            current: Model::empty(),
            synced: Model::empty(),
            appended: BTreeMap::new(),
            effects: Vec::new(),
            truncating: None,
            flips_before: 0,
            counter: 0,
            step: 0,
            stats: StoreRunStats::default(),
        };
        Ok(StoreChecker { run, events })
    }

    /// Applies one operation and checks everything that can be checked after it.
    pub fn step(&mut self, op: &StoreOp, trace: &mut Trace) -> Result<(), Violation> {
        let step = self.run.stats.steps;
        self.run.step = step;
        let outcome = self.run.apply(op);
        for event in self.events.lock().expect("event sink").drain(..) {
            trace.record(format_args!("{step} fault: {event}"));
        }
        let outcome = outcome?;
        trace.record(format_args!("{step} {op} -> {outcome}"));
        self.run.store().check_invariants();
        self.run.check_state()?;
        self.run.stats.steps += 1;
        Ok(())
    }

    pub fn disk(&self) -> &FaultFs {
        &self.run.disk
    }

    /// Crashes a fork of the disk with exactly `choice` (one of `disk().crash_states()`),
    /// recovers the store from it and checks the recovery. This checker is left untouched.
    pub fn check_crash_as(&self, choice: &CrashReport) -> Result<String, Violation> {
        let run = &self.run;
        let mut fork = Run {
            disk: run.disk.fork(),
            dir: run.dir,
            config: run.config,
            faults: FaultConfig::none(),
            time: run.time,
            store: None,
            current: run.current.clone(),
            synced: run.synced.clone(),
            appended: run.appended.clone(),
            effects: run.effects.clone(),
            truncating: run.truncating.clone(),
            flips_before: 0,
            counter: run.counter,
            step: run.step,
            stats: StoreRunStats::default(),
        };
        fork.disk.set_config(FaultConfig::none());
        fork.disk.crash_as(choice);
        fork.reopen(true)
    }

    pub fn finish(self) -> StoreRunStats {
        let mut stats = self.run.stats;
        stats.faults = self.run.disk.fault_counts();
        stats
    }
}

impl<C: Clock> Run<'_, C> {
    fn store(&mut self) -> &mut FileStore<FaultFs> {
        self.store.as_mut().expect("the store is open between steps")
    }

    fn now(&self) -> (MonoTime, i64) {
        (self.time.clock.now(), self.time.clock.wall_ns() as i64)
    }

    /// An error from the store is acceptable only if a fault was injected behind it: an
    /// injected disk error, or a checksum failure in a step where reads were flipped (two
    /// flipped reads of one record look like corruption, and must be reported as such).
    fn expect_injected(&self, what: &str, error: &StoreError) -> Result<(), Violation> {
        let flips_now = self.disk.fault_counts().get(&FaultKind::ReadBitflip).copied().unwrap_or(0);
        let flipped = matches!(error, StoreError::Corrupt { .. }) && flips_now > self.flips_before;
        if error.is_injected() || flipped {
            Ok(())
        } else {
            Err(violation("unexpected-error", self.step, format!("{what}: {error}")))
        }
    }

    fn apply(&mut self, op: &StoreOp) -> Result<String, Violation> {
        self.flips_before = self.disk.fault_counts().get(&FaultKind::ReadBitflip).copied().unwrap_or(0);
        let outcome = self.apply_op(op)?;
        // The store says everything it acknowledged is durable: hold it to that at the next
        // crash.
        if let Some(store) = &self.store {
            if !store.has_unsynced_writes() {
                self.synced = self.current.clone();
                self.effects.clear();
            }
        }
        Ok(outcome)
    }

    fn apply_op(&mut self, op: &StoreOp) -> Result<String, Violation> {
        match *op {
            StoreOp::Append { subject, len } => {
                self.counter += 1;
                let mut payload = self.counter.to_le_bytes().to_vec();
                payload.resize(8 + len as usize, subject);
                let msg = Msg { subject: format!("s.{subject}").into_bytes(), payload, timestamp_ns: self.now().1 };
                let new = NewMessage {
                    subject: &msg.subject,
                    headers: b"",
                    payload: &msg.payload,
                    timestamp_ns: msg.timestamp_ns,
                };
                let expected = self.current.next;
                let result = self.store().append(&new);
                let state = self.store().state();
                match &result {
                    Err(StoreError::LimitExceeded { limit }) => return self.check_refusal(*limit, &msg),
                    Err(e) => self.expect_injected("append", e)?,
                    Ok(_) => {}
                }
                if state.last_seq >= expected {
                    // Appended (perhaps the sync behind it failed): acknowledged in memory.
                    if let Ok(seq) = result {
                        if seq != expected {
                            return Err(violation(
                                "sequence",
                                self.step,
                                format!("append got {seq}, expected {expected}"),
                            ));
                        }
                    }
                    self.appended.insert(expected, msg.clone());
                    self.current.msgs.insert(expected, msg);
                    self.current.next = expected + 1;
                    self.stats.appends += 1;
                    self.effects.push(Effect::Appended(expected));
                    // Discard-old limits may have moved the front.
                    if state.first_seq > self.current.first {
                        self.effects.push(Effect::FrontTo(state.first_seq));
                    }
                    self.current.purge_before(state.first_seq);
                }
                Ok(result.map_or_else(|e| format!("err {e}"), |seq| format!("seq {seq}")))
            }
            StoreOp::Delete { pick } => {
                let Some(&seq) = self.pick_present(pick) else { return Ok("nothing to delete".into()) };
                let msgs_before = self.store().state().msgs;
                let result = self.store().delete(seq);
                let gone = self.store().state().msgs < msgs_before;
                match &result {
                    Ok(true) => {}
                    Ok(false) => return Err(violation("delete", self.step, format!("delete({seq}) found nothing"))),
                    Err(e) => self.expect_injected("delete", e)?,
                }
                if result.is_ok() || gone {
                    self.current.msgs.remove(&seq);
                    if seq == self.current.first {
                        self.current.first = self.current.first_after_deleting_front();
                        self.effects.push(Effect::FrontTo(self.current.first));
                    } else {
                        self.effects.push(Effect::Deleted(seq));
                    }
                }
                Ok(format!("delete {seq}: {result:?}"))
            }
            StoreOp::Purge { pick } => {
                let span = self.current.next - self.current.first + 3;
                let seq = self.current.first + u64::from(pick) % span;
                let result = self.store().purge_before(seq);
                let first = self.store().state().first_seq;
                if let Err(e) = &result {
                    self.expect_injected("purge", e)?;
                }
                if (first >= seq || result.is_ok()) && seq > self.current.first {
                    self.current.purge_before(seq);
                    self.effects.push(Effect::FrontTo(seq));
                }
                Ok(format!("purge before {seq}: {result:?}"))
            }
            StoreOp::Skip { count } => {
                let last = self.current.next + u64::from(count);
                let result = self.store().skip_through(last);
                let state = self.store().state();
                if let Err(e) = &result {
                    self.expect_injected("skip", e)?;
                }
                if state.last_seq == last {
                    self.current.next = last + 1;
                    self.effects.push(Effect::Skipped(last));
                }
                Ok(format!("skip through {last}: {result:?}"))
            }
            StoreOp::Sync => {
                let result = self.store().sync();
                if let Err(e) = &result {
                    self.expect_injected("sync", e)?;
                }
                Ok(format!("{result:?}"))
            }
            StoreOp::Tick { advance_ms } => {
                (self.time.advance)(Duration::from_millis(u64::from(advance_ms)));
                let (now, wall_ns) = self.now();
                let result = self.store().tick(now, wall_ns);
                let first = self.store().state().first_seq;
                if let Err(e) = &result {
                    self.expect_injected("tick", e)?;
                }
                // Expiry happens before the interval sync: a tick that failed may still have
                // moved the front, and then it must have moved it exactly right.
                if first != self.current.first || result.is_ok() {
                    self.check_expiry(first, wall_ns)?;
                    if first > self.current.first {
                        self.effects.push(Effect::FrontTo(first));
                    }
                    self.current.purge_before(first);
                }
                Ok(format!("tick: {result:?}"))
            }
            StoreOp::Get { pick } => {
                let span = self.current.next - self.current.first + 1;
                let seq = self.current.first + u64::from(pick) % span;
                let got = self.store().get(seq);
                let expected = self.current.msgs.get(&seq);
                match (&got, expected) {
                    (Ok(Some(m)), Some(e)) if m.payload == e.payload && m.subject == e.subject => {}
                    (Ok(None), None) => {}
                    (Err(e), _) => self.expect_injected("get", e)?,
                    (got, expected) => {
                        return Err(violation(
                            "read-integrity",
                            self.step,
                            format!(
                                "get({seq}) returned {:?}, model has {:?}",
                                got.as_ref().map(|o| o.as_ref().map(|m| m.seq)),
                                expected.map(|m| &m.payload)
                            ),
                        ))
                    }
                }
                Ok(format!("get {seq}: {}", if got.is_ok() { "ok" } else { "injected error" }))
            }
            StoreOp::Truncate { pick } => {
                let low = self.current.first.saturating_sub(3);
                let seq = low + u64::from(pick) % (self.current.next + 1 - low);
                let before = self.current.clone();
                let mut after = before.clone();
                after.truncate_after(seq);
                let result = self.store().truncate_after(seq);
                let state = self.store().state();
                let removed = (before.msgs.len() - after.msgs.len()) as u64;
                match &result {
                    Ok(n) if *n == removed => {}
                    Ok(n) => {
                        return Err(violation("truncate", self.step, format!("removed {n}, expected {removed}")));
                    }
                    Err(e) => self.expect_injected("truncate", e)?,
                }
                if after != before {
                    if result.is_ok() {
                        // Durable: the old messages above `seq` can never come back.
                        self.appended.split_off(&(seq + 1));
                        self.current = after;
                        self.stats.truncations += 1;
                    } else if state.last_seq == seq {
                        // Failed after the state file said `seq` (flushed before it): the
                        // disk is part-way, and everything at or below `seq` is durable.
                        self.truncating = Some(Truncating { seq, before });
                        self.stats.truncations_interrupted += 1;
                        self.current = after.clone();
                        self.synced = after;
                        self.effects.clear();
                    }
                }
                Ok(format!("truncate after {seq}: {result:?}"))
            }
            StoreOp::Reopen => {
                let store = self.store.take().expect("open");
                let closed = store.close();
                if let Err(e) = &closed {
                    self.expect_injected("close", e)?;
                }
                // No crash: after a clean close the store must come back exactly. After a
                // failed one, what was written after the last good sync may be gone (the
                // store cuts it rather than trust a page cache that failed to write back).
                let outcome = self.reopen(closed.is_err())?;
                Ok(format!("reopen (close {:?}): {outcome}", closed.is_ok()))
            }
            StoreOp::Crash { mode } => {
                self.store = None;
                self.disk.set_config(FaultConfig::none());
                let report = self.crash(mode);
                let outcome = self.reopen(true)?;
                Ok(format!("crash ({report}): {outcome}"))
            }
            StoreOp::CrashInRecovery { mode, after_calls } => {
                self.store = None;
                self.disk.set_config(FaultConfig::none());
                let first = self.crash(mode);
                // Recovery itself loses power part-way (mid-cut, mid-sync, mid-state-write),
                // and the machine crashes again before anything else happens.
                self.disk.set_power_cut_after(Some(u64::from(after_calls)));
                let attempt = FileStore::open(self.disk.clone(), self.dir, self.config).map(|_| ());
                if let Err(e) = &attempt {
                    self.expect_injected("recovery under a power cut", e)?;
                }
                let second = self.crash(None);
                let outcome = self.reopen(true)?;
                Ok(format!("crash ({first}), recovery cut after {after_calls} calls ({attempt:?}), crash ({second}): {outcome}"))
            }
        }
    }

    fn crash(&mut self, mode: Option<CrashMode>) -> CrashReport {
        self.stats.crashes += 1;
        match mode {
            Some(mode) => self.disk.crash_with(mode),
            None => self.disk.crash(),
        }
    }

    /// A `Discard::New` refusal must be exactly what the limits call for.
    fn check_refusal(&self, limit: LimitKind, msg: &Msg) -> Result<String, Violation> {
        let limits = self.config.limits;
        let size = record_len(msg.subject.len(), 0, msg.payload.len());
        let justified = limits.discard == Discard::New
            && match limit {
                LimitKind::MaxMsgs => limits.max_msgs.is_some_and(|max| self.current.msgs.len() as u64 + 1 > max),
                LimitKind::MaxBytes => limits.max_bytes.is_some_and(|max| self.current.bytes() + size > max),
            };
        if justified {
            Ok(format!("refused: {limit:?}"))
        } else {
            Err(violation(
                "limits",
                self.step,
                format!("refused {limit:?} with {} msgs, {} bytes", self.current.msgs.len(), self.current.bytes()),
            ))
        }
    }

    /// The store's counts agree with the model.
    fn check_state(&mut self) -> Result<(), Violation> {
        let state = self.store().state();
        let model = (self.current.first, self.current.next - 1, self.current.msgs.len() as u64, self.current.bytes());
        let got = (state.first_seq, state.last_seq, state.msgs, state.bytes);
        if got != model {
            return Err(violation(
                "state",
                self.step,
                format!("store (first, last, msgs, bytes) = {got:?}, model {model:?}"),
            ));
        }
        Ok(())
    }

    fn pick_present(&self, pick: u16) -> Option<&u64> {
        let n = self.current.msgs.len();
        (n > 0).then(|| self.current.msgs.keys().nth(usize::from(pick) % n)).flatten()
    }

    /// After a tick, the front must have moved exactly past the leading messages older than
    /// max_age: to the first message after the last expired one (or the end), and not at all
    /// if none expired.
    fn check_expiry(&self, first: u64, wall_ns: i64) -> Result<(), Violation> {
        let expected = match self.config.limits.max_age {
            None => self.current.first,
            Some(max_age) => {
                let cutoff = wall_ns.saturating_sub(max_age.as_nanos() as i64);
                let last_expired = self.current.msgs.iter().take_while(|(_, m)| m.timestamp_ns < cutoff).last();
                match last_expired {
                    None => self.current.first,
                    Some((&seq, _)) => self.current.msgs.range(seq + 1..).next().map_or(self.current.next, |(&s, _)| s),
                }
            }
        };
        if first != expected {
            return Err(violation("expiry", self.step, format!("front at {first}, expected {expected}")));
        }
        Ok(())
    }

    /// Reopens the store with a healthy disk and checks what it recovered. `crashed` says
    /// whether unsynced data may be gone; otherwise the store must come back exactly. Open
    /// syncs what it recovered, so afterwards everything it holds is durable.
    fn reopen(&mut self, crashed: bool) -> Result<String, Violation> {
        // Every other reopen first runs recovery with the run's faults on. If that fails (it
        // may only fail for an injected fault), recovery runs again on a healthy disk and must
        // find nothing damaged by the failed attempt.
        let mut failed_attempt = String::new();
        // Random read flips are left out here: recovery reads a bad-looking record twice, and
        // at the simulator's flip rates two flips in a row are common enough to make it cut
        // durable data, as specified. The re-read is tested with one-shot flips instead
        // (tests/store_faults.rs).
        let recovery_faults = FaultConfig { read_bitflip_ppm: 0, ..self.faults };
        if recovery_faults != FaultConfig::none() && self.step % 2 == 0 {
            self.disk.set_config(recovery_faults);
            match FileStore::open(self.disk.clone(), self.dir, self.config) {
                Ok((store, report)) => return self.adopt(store, report, crashed, ""),
                Err(e) => {
                    self.expect_injected("recovery with faults", &e)?;
                    failed_attempt = format!(" after a failed recovery ({e})");
                }
            }
        }
        self.disk.set_config(FaultConfig::none());
        let (store, report) = FileStore::open(self.disk.clone(), self.dir, self.config).map_err(|e| {
            violation("recovery", self.step, format!("reopen failed on a healthy disk{failed_attempt}: {e}"))
        })?;
        self.adopt(store, report, crashed, &failed_attempt)
    }

    /// Checks a freshly recovered store against the model and makes it the one under test.
    fn adopt(
        &mut self,
        store: FileStore<FaultFs>,
        report: RecoveryReport,
        crashed: bool,
        note: &str,
    ) -> Result<String, Violation> {
        self.disk.set_config(FaultConfig::none());
        store.check_invariants();
        let state = store.state();
        let mut recovered = Model { first: state.first_seq, next: state.last_seq + 1, msgs: BTreeMap::new() };
        for seq in state.first_seq..=state.last_seq {
            match store.get(seq) {
                Ok(Some(m)) => {
                    let msg =
                        Msg { subject: m.subject.to_vec(), payload: m.payload.to_vec(), timestamp_ns: m.timestamp_ns };
                    recovered.msgs.insert(seq, msg);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(violation("recovery", self.step, format!("read of {seq} after recovery failed: {e}")))
                }
            }
        }
        if report.cut.is_some() {
            self.stats.cuts += 1;
        }
        if crashed {
            self.stats.recoveries_mid_truncate += u64::from(self.truncating.is_some());
            let checked = match &self.truncating {
                Some(truncating) => self.check_recovered_mid_truncate(&recovered, &report, truncating),
                None => self.check_recovered(&recovered, &report),
            };
            checked.map_err(|mut v| {
                v.detail.push_str(&format!(
                    " [recovery: cut {}, dropped {:?}, lost {:?}, state file {:?}]",
                    report.cut.as_ref().map_or("none".to_string(), |c| c.to_string()),
                    report.dropped_blocks,
                    report.lost,
                    report.state_file
                ));
                v
            })?;
            self.stats.unsynced_lost += self.current.msgs.keys().filter(|&&s| s > recovered.next - 1).count() as u64;
        } else if recovered != self.current {
            return Err(violation(
                "restart",
                self.step,
                format!(
                    "clean reopen changed the stream: had {}..{} ({} msgs), got {}..{} ({} msgs)",
                    self.current.first,
                    self.current.next,
                    self.current.msgs.len(),
                    recovered.first,
                    recovered.next,
                    recovered.msgs.len()
                ),
            ));
        }
        let outcome = format!(
            "recovered{note} {}..={} msgs={} cut={} lost={:?}",
            state.first_seq,
            state.last_seq,
            state.msgs,
            report.cut.as_ref().map_or("none".to_string(), |c| c.reason.to_string()),
            report.lost
        );
        if crashed {
            // What lay past the recovered end is gone for good (recovery cut it durably), and
            // the next appends reuse those sequences.
            self.appended.split_off(&recovered.next);
        }
        self.current = recovered.clone();
        self.synced = recovered;
        self.effects.clear();
        self.truncating = None;
        self.store = Some(store);
        self.disk.set_config(self.faults);
        Ok(outcome)
    }

    /// What may survive a crash after a truncation failed part-way (module docs).
    fn check_recovered_mid_truncate(
        &self,
        r: &Model,
        report: &RecoveryReport,
        t: &Truncating,
    ) -> Result<(), Violation> {
        let (c, before, seq) = (&self.current, &t.before, t.seq);
        let step = self.step;
        let r_last = r.next - 1;
        let before_last = before.next - 1;
        if r_last < seq {
            return Err(violation("durability", step, format!("last sequence {r_last} below the truncation to {seq}")));
        }
        if r_last > before_last {
            return Err(violation("prefix", step, format!("last sequence {r_last} beyond the old last {before_last}")));
        }
        for (s, msg) in &r.msgs {
            if self.appended.get(s) != Some(msg) {
                return Err(violation("integrity", step, format!("sequence {s} holds {:?}", msg.payload)));
            }
        }
        for s in c.msgs.keys() {
            if !r.msgs.contains_key(s) {
                return Err(violation("durability", step, format!("message {s} at or below {seq} is gone")));
            }
        }
        if let Some(s) = r.msgs.range(..=seq).map(|(s, _)| s).find(|s| !c.msgs.contains_key(s)) {
            return Err(violation("resurrection", step, format!("message {s}, not in the stream, is back")));
        }
        let front_ok =
            if seq + 1 >= before.first { r.first == before.first } else { (seq + 1..=before.first).contains(&r.first) };
        if !front_ok {
            return Err(violation(
                "front",
                step,
                format!("front {} (before the truncation: {})", r.first, before.first),
            ));
        }
        for s in seq + 1..=r_last {
            if before.msgs.contains_key(&s) && !r.msgs.contains_key(&s) {
                return Err(violation("no-gap", step, format!("old message {s} missing while {r_last} survived")));
            }
        }
        for &(first, last) in &report.lost {
            if first <= seq || last > before_last || r.msgs.range(first..=last).next().is_some() {
                return Err(violation(
                    "honest-report",
                    step,
                    format!("reported {first}..={last} lost; truncating to {seq} from {before_last}"),
                ));
            }
        }
        Ok(())
    }

    fn check_recovered(&self, r: &Model, report: &RecoveryReport) -> Result<(), Violation> {
        let (s, c) = (&self.synced, &self.current);
        let step = self.step;
        let r_last = r.next - 1;
        if r_last < s.next - 1 {
            return Err(violation(
                "durability",
                step,
                format!("last sequence {r_last} below the synced {}", s.next - 1),
            ));
        }
        if r_last > c.next - 1 {
            return Err(violation(
                "prefix",
                step,
                format!("last sequence {r_last} beyond the acknowledged {}", c.next - 1),
            ));
        }
        for (seq, msg) in &r.msgs {
            match self.appended.get(seq) {
                Some(expected) if expected == msg => {}
                other => {
                    return Err(violation(
                        "integrity",
                        step,
                        format!("sequence {seq} holds {:?}, appended was {:?}", msg.payload, other.map(|m| &m.payload)),
                    ))
                }
            }
        }
        for seq in s.msgs.keys() {
            if c.msgs.contains_key(seq) && !r.msgs.contains_key(seq) {
                return Err(violation("durability", step, format!("synced message {seq} (never deleted) is gone")));
            }
        }
        if let Some(seq) = r.msgs.range(..s.next).map(|(seq, _)| seq).find(|seq| !s.msgs.contains_key(seq)) {
            return Err(violation(
                "resurrection",
                step,
                format!("message {seq}, deleted or purged when synced, is back"),
            ));
        }
        for seq in s.next..r.next {
            if c.msgs.contains_key(&seq) && !r.msgs.contains_key(&seq) {
                return Err(violation(
                    "no-gap",
                    step,
                    format!("unsynced message {seq} missing while {r_last} survived"),
                ));
            }
        }
        // Records are written in operation order and recovery keeps a prefix: if an unsynced
        // append survived, everything before it must have survived too.
        let surviving =
            self.effects.iter().rposition(|e| matches!(e, Effect::Appended(seq) if r.msgs.contains_key(seq)));
        if let Some(k) = surviving {
            for effect in &self.effects[..k] {
                let held = match *effect {
                    Effect::Appended(_) => true,
                    Effect::Deleted(seq) => !r.msgs.contains_key(&seq),
                    Effect::FrontTo(first) => r.first >= first,
                    Effect::Skipped(last) => r.next > last,
                };
                if !held {
                    return Err(violation(
                        "op-order",
                        step,
                        format!("{effect:?} was lost but the later {:?} survived", self.effects[k]),
                    ));
                }
            }
        }
        for &(first, last) in &report.lost {
            if first < s.next || last > c.next - 1 {
                return Err(violation(
                    "honest-report",
                    step,
                    format!(
                        "reported {first}..={last} lost; synced through {}, acknowledged through {}",
                        s.next - 1,
                        c.next - 1
                    ),
                ));
            }
            if r.msgs.range(first..=last).next().is_some() {
                return Err(violation(
                    "honest-report",
                    step,
                    format!("reported {first}..={last} lost but some are present"),
                ));
            }
        }
        Ok(())
    }
}
