//! One stream replica on this node: its Raft group, its state machine, the publishes it
//! leads that wait for their outcome, its catch-up (as follower and as source), and its
//! snapshot policy.
//!
//! Invariants:
//! * nothing is applied while the machine is catching up or failed (`poll_apply` is not
//!   called, so committed entries wait in the Raft log);
//! * a replica that is catching up does not campaign: its store is missing messages its
//!   snapshot counts, and a leader must hold everything it serves;
//! * a client request is answered with the outcome of the entry at its (index, term) only;
//!   an entry at that index with another term means the proposal was lost;
//! * a checkpoint's state is captured at the Raft applied index, which equals the machine's:
//!   every entry `poll_apply` returned was applied before anything else runs.

use super::config::NodeConfig;
use super::frame::{CatchupBody, CatchupFrame};
use super::group::{GroupRecovery, Outbox, RaftGroup};
use super::meta::StreamDef;
use super::pending::PendingRequests;
use super::{ClientError, Reply, RequestId, APPLY_BATCH_ENTRIES};
use crate::disk::Disk;
use crate::env::{Buggify, MonoTime, NodeId, FRAME_BYTES_MAX};
use crate::raft::storage::{Leftovers, SnapshotWrite};
use crate::raft::{Applied, Checkpoint, CheckpointError, EntryKind, Index, Membership, Role, Term};
use crate::store::SyncPlan;
use crate::stream::{
    ApplyOutcome, CatchupRequest, RestoreOutcome, StreamEntry, StreamError, StreamMachine, StreamSnapshot,
};
use bytes::Bytes;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// BUGGIFY `checkpoint-early` considers a checkpoint once per this many applied entries.
const BUGGIFY_CHECKPOINT_ENTRIES: u64 = 16;

/// This replica's catch-up: one request outstanding, to one peer at a time.
struct Catchup {
    /// Echoed by the peer; answers to older attempts are dropped.
    attempt: u64,
    /// Where the outstanding request went, and when.
    peer: Option<NodeId>,
    sent_at: MonoTime,
    /// Rotates through the peers after a timeout, a refusal or a bad chunk.
    rotation: usize,
    /// Failed attempts since the last chunk that made progress.
    failures: u32,
}

impl Catchup {
    fn new(now: MonoTime) -> Catchup {
        Catchup { attempt: 0, peer: None, sent_at: now, rotation: 0, failures: 0 }
    }
}

/// A checkpoint captured by the apply loop, waiting for its background work.
pub(super) struct CheckpointWork {
    pub checkpoint: Checkpoint,
    pub data: Bytes,
    /// The store's removal epoch at the capture: what to release once the snapshot is
    /// durable (store/hold.rs).
    pub removal_mark: u64,
}

/// A started checkpoint: its captured state and the I/O still to run.
pub(super) struct CheckpointJob<D: Disk> {
    work: CheckpointWork,
    pub io: CheckpointIo<D>,
    started: MonoTime,
}

/// A checkpoint's I/O, detached from the replica so it can run on another thread: the
/// store's fsyncs, then (only if they succeeded) the snapshot file. It touches no state the
/// replica's thread uses; its outcome is read back by `complete_checkpoint`.
pub(super) struct CheckpointIo<D: Disk> {
    /// `None` under the planted bug that skips the store sync.
    sync: Option<SyncPlan<D>>,
    snapshot: SnapshotWrite<D>,
    ran: bool,
}

impl<D: Disk> CheckpointIo<D> {
    pub fn run(&mut self) {
        assert!(!self.ran, "a checkpoint's I/O runs once");
        self.ran = true;
        let synced = self.sync.as_mut().map_or(Ok(()), |plan| plan.run());
        if synced.is_ok() {
            // Its error is read back (and latched) by `adopt_checkpoint`.
            let _ = self.snapshot.run();
        }
    }
}

pub(super) struct StreamGroup<D: Disk> {
    pub def: StreamDef,
    pub group: RaftGroup<D>,
    pub machine: StreamMachine<D>,
    /// Leader only: proposals awaiting their outcome, by log index.
    pub pending: PendingRequests,
    catchup: Option<Catchup>,
    next_attempt: u64,
    /// Flow control: content bytes asked for per chunk.
    chunk_bytes: u64,
    /// Applied since the last snapshot: entries and bytes of entry data.
    since_snapshot_entries: u64,
    since_snapshot_bytes: u64,
    next_snapshot_at: MonoTime,
    /// A refused checkpoint is retried no sooner than this.
    snapshot_retry_at: MonoTime,
    next_expire_at: MonoTime,
    /// Leader only: timestamps given to publishes never go backwards on this leader.
    last_timestamp_ns: i64,
    /// Why this replica stopped (a store or log failure); the node reopens it.
    pub failed: Option<String>,
    pub checkpoint_queued: bool,
    /// Replies ready for the node to hand out.
    pub replies: VecDeque<(RequestId, Reply)>,
    pub stats: GroupStats,
    buggify: Buggify,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    pub snapshots_restored: u64,
    pub catchups_completed: u64,
    pub catchup_chunks: u64,
    pub catchup_failures: u64,
    /// Catch-ups that could not progress and asked the leader for a newer snapshot.
    pub snapshot_requests: u64,
    pub chunks_served: u64,
    pub checkpoints: u64,
    pub compactions: u64,
    /// Raft log writes that appended entries (each one sync in the synchronous mode): a
    /// batch of proposals or appends shares one.
    pub log_writes: u64,
}

pub(super) fn group_dir(cfg: &NodeConfig, group: u64) -> PathBuf {
    cfg.dir.join("streams").join(group.to_string())
}

impl<D: Disk> StreamGroup<D> {
    /// Opens the replica's log and store. A store with no Raft snapshot to restore from is
    /// restored to the empty stream at once; otherwise the first `poll_apply` returns the
    /// snapshot and the machine is restored from it.
    pub fn open(
        disk: D,
        cfg: &NodeConfig,
        def: StreamDef,
        now: MonoTime,
        jitter: Duration,
    ) -> Result<(StreamGroup<D>, GroupRecovery), String> {
        let dir = group_dir(cfg, def.group);
        let seed = cfg.seed ^ def.group.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let voters = Membership::new(def.peers.iter().copied());
        let (group, recovery) = RaftGroup::open(disk.clone(), &dir.join("raft"), cfg, def.group, voters, seed, now)?;
        let (mut machine, report) = StreamMachine::open(disk, &dir.join("store"), def.config.clone())
            .map_err(|e| format!("stream {:?}: open store: {e}", def.config.name))?;
        if report.cut.is_some() || report.lost_count() > 0 {
            tracing::warn!(stream = %def.config.name, lost = report.lost_count(), cut = ?report.cut, "store recovery cut records; the log replay restores them");
        }
        if cfg.keep_digests {
            machine.keep_digests().map_err(|e| format!("stream {:?}: digest the store: {e}", def.config.name))?;
        }
        if recovery.snapshot_index.is_none() {
            machine
                .restore(&StreamSnapshot::initial())
                .map_err(|e| format!("stream {:?}: restore: {e}", def.config.name))?;
        }
        let mut g = StreamGroup {
            def,
            group,
            machine,
            pending: PendingRequests::default(),
            catchup: None,
            next_attempt: 1,
            chunk_bytes: cfg.catchup_chunk_bytes,
            since_snapshot_entries: 0,
            since_snapshot_bytes: 0,
            next_snapshot_at: now + cfg.snapshot.interval + jitter,
            snapshot_retry_at: now,
            next_expire_at: now + cfg.expire_interval,
            last_timestamp_ns: 0,
            failed: None,
            checkpoint_queued: false,
            replies: VecDeque::new(),
            stats: GroupStats::default(),
            buggify: cfg.buggify,
        };
        g.update_campaign();
        Ok((g, recovery))
    }

    pub fn name(&self) -> &str {
        &self.def.config.name
    }

    pub fn is_catching_up(&self) -> bool {
        self.catchup.is_some()
    }

    pub fn catchup_failures(&self) -> u32 {
        self.catchup.as_ref().map_or(0, |c| c.failures)
    }

    fn update_campaign(&mut self) {
        let allowed = self.failed.is_none() && self.catchup.is_none() && self.group.failed.is_none();
        self.group.raft.set_campaign_allowed(allowed);
    }

    pub(super) fn fail(&mut self, why: String) {
        if self.failed.is_none() {
            tracing::error!(stream = %self.def.config.name, group = self.def.group, %why, "stream replica stops");
            crate::coverage::mark("node.replica-stopped");
            self.failed = Some(why);
        }
        self.update_campaign();
    }

    /// Proposes a publish; the reply comes when the entry applies.
    pub fn propose_publish(
        &mut self,
        now: MonoTime,
        wall_ns: i64,
        mut publish: crate::stream::Publish,
        request: RequestId,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        self.check_leader()?;
        self.last_timestamp_ns = self.last_timestamp_ns.max(wall_ns);
        publish.timestamp_ns = self.last_timestamp_ns;
        let data = StreamEntry::Publish(publish)
            .encode()
            .map_err(|e| ClientError::InvalidRequest { reason: format!("publish: {e}") })?;
        self.propose(now, data, request, timeout)
    }

    /// Proposes the entry `make` builds with the leader's clock (monotonic across the
    /// group's entries, as publish timestamps are): consumer operations.
    pub fn propose_timed(
        &mut self,
        now: MonoTime,
        wall_ns: i64,
        make: impl FnOnce(i64) -> StreamEntry,
        request: RequestId,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        self.check_leader()?;
        self.last_timestamp_ns = self.last_timestamp_ns.max(wall_ns);
        let data =
            make(self.last_timestamp_ns).encode().map_err(|e| ClientError::InvalidRequest { reason: e.to_string() })?;
        self.propose(now, data, request, timeout)
    }

    pub fn propose_entry(
        &mut self,
        now: MonoTime,
        entry: StreamEntry,
        request: RequestId,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        self.check_leader()?;
        let data = entry.encode().map_err(|e| ClientError::InvalidRequest { reason: e.to_string() })?;
        self.propose(now, data, request, timeout)
    }

    fn check_leader(&self) -> Result<(), ClientError> {
        if let Some(why) = &self.failed {
            return Err(ClientError::Unavailable { reason: format!("replica stopped: {why}") });
        }
        if let Some(e) = &self.group.failed {
            return Err(ClientError::Unavailable { reason: format!("replica stopped: {e}") });
        }
        if self.group.raft.role() != Role::Leader {
            return Err(ClientError::NotLeader { leader: self.group.raft.leader() });
        }
        Ok(())
    }

    fn propose(
        &mut self,
        now: MonoTime,
        data: Vec<u8>,
        request: RequestId,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let (index, term) = self.group.raft.propose(now, Bytes::from(data)).map_err(ClientError::from_propose)?;
        if let Some(lost) = self.pending.insert(index, term, request, now + timeout) {
            self.replies.push_back((lost, Reply::Failed(ClientError::LeadershipLost)));
        }
        Ok(())
    }

    /// Executes Raft's actions, then applies what is committed (unless catching up).
    pub fn pump(&mut self, now: MonoTime, outbox: &mut Outbox) {
        self.group.drive(now, outbox);
        if self.group.failed.is_some() {
            let why = format!("raft log: {}", self.group.failed.as_ref().expect("checked"));
            self.fail(why);
            return;
        }
        self.apply(now, outbox);
    }

    fn apply(&mut self, now: MonoTime, outbox: &mut Outbox) {
        // While catching up, only a newer snapshot (asked for when the catch-up could not
        // progress) may be applied: it replaces the catch-up's target.
        while self.failed.is_none() && (self.catchup.is_none() || self.group.raft.snapshot_ready()) {
            let Some(applied) = self.group.raft.poll_apply(APPLY_BATCH_ENTRIES) else { return };
            match applied {
                Applied::Snapshot(snapshot) => {
                    self.stats.snapshots_restored += 1;
                    let index = snapshot.meta.last_index;
                    // Proposals the snapshot covers committed or not: nobody can tell now.
                    for request in self.pending.take_through(index) {
                        self.replies.push_back((request, Reply::Failed(ClientError::OutcomeUnknown)));
                    }
                    let snap = match StreamSnapshot::decode(&snapshot.data) {
                        Ok(s) => s,
                        Err(e) => return self.fail(format!("snapshot at index {index}: {e}")),
                    };
                    match self.machine.restore(&snap) {
                        Ok(RestoreOutcome::Ready { truncated_msgs, missing_msgs, .. }) => {
                            if missing_msgs > 0 {
                                // Held removals should make this impossible (store/hold.rs).
                                tracing::warn!(stream = %self.name(), index, missing_msgs, "store lacks messages its snapshot holds");
                            }
                            if self.catchup.take().is_some() {
                                crate::coverage::mark("node.catchup-ended-by-newer-snapshot");
                                tracing::info!(stream = %self.name(), index, "a newer snapshot ended the catch-up");
                                self.update_campaign();
                            }
                            if truncated_msgs > 0 {
                                tracing::info!(stream = %self.name(), index, truncated_msgs, "store truncated back to the snapshot; the log replays the rest");
                            }
                        }
                        Ok(RestoreOutcome::NeedCatchup { from_seq, to_seq }) => {
                            tracing::info!(stream = %self.name(), index, from_seq, to_seq, "store behind the snapshot; catching up from peers");
                            self.catchup = Some(Catchup::new(now));
                            self.update_campaign();
                            self.send_catchup_request(now, outbox);
                        }
                        Err(e) => return self.fail(format!("restore snapshot at index {index}: {e}")),
                    }
                    self.since_snapshot_entries = 0;
                    self.since_snapshot_bytes = 0;
                }
                Applied::Entries(entries) => {
                    for e in entries {
                        let outcome = if e.kind == EntryKind::Normal {
                            match self.machine.apply(e.index, &e.data) {
                                Ok(outcome) => Some(outcome),
                                Err(err) => {
                                    // Later entries of the batch stay unapplied; the replica
                                    // reopens and replays them from its log.
                                    return self.fail(format!("apply entry {}: {err}", e.index));
                                }
                            }
                        } else {
                            None
                        };
                        self.since_snapshot_entries += 1;
                        self.since_snapshot_bytes += e.data.len() as u64;
                        self.answer(e.index, e.term, outcome);
                    }
                }
            }
        }
    }

    /// Answers the request waiting for `index`, if any: with the outcome if its entry is the
    /// one that committed there, else as lost.
    fn answer(&mut self, index: Index, term: Term, outcome: Option<ApplyOutcome>) {
        // Indices below were all answered when they applied; one above cannot be waiting yet.
        let Some((request, own)) = self.pending.take(index, term) else { return };
        let reply = match outcome {
            Some(outcome) if own => Reply::from_outcome(outcome),
            _ => Reply::Failed(ClientError::LeadershipLost),
        };
        self.replies.push_back((request, reply));
    }

    /// Timers: request deadlines, catch-up retries, `Expire` proposals, snapshot policy.
    pub fn tick(
        &mut self,
        now: MonoTime,
        wall_ns: i64,
        cfg: &NodeConfig,
        outbox: &mut Outbox,
    ) -> Option<CheckpointWork> {
        self.group.raft.tick(now);
        for request in self.pending.take_expired(now) {
            self.replies.push_back((request, Reply::Failed(ClientError::Timeout)));
        }
        if self.failed.is_some() {
            return None;
        }
        if let Err(e) = self.machine.tick(now) {
            self.fail(format!("store tick: {e}"));
            return None;
        }
        if let Some(c) = &self.catchup {
            if now.saturating_since(c.sent_at) >= cfg.catchup_timeout {
                if c.peer.is_some() {
                    self.catchup_attempt_failed(now, cfg, outbox, true);
                } else {
                    self.send_catchup_request(now, outbox); // the pause after a refused round
                }
            }
        }
        self.maybe_expire(now, wall_ns, cfg);
        self.maybe_checkpoint(now, cfg)
    }

    fn maybe_expire(&mut self, now: MonoTime, wall_ns: i64, cfg: &NodeConfig) {
        let config = &self.def.config;
        let needed = config.store.limits.max_age.is_some() || !config.dedupe_window.is_zero();
        if !needed || !self.group.raft.is_leader_ready() || now < self.next_expire_at {
            return;
        }
        self.next_expire_at = now + cfg.expire_interval;
        self.last_timestamp_ns = self.last_timestamp_ns.max(wall_ns);
        let data =
            StreamEntry::Expire { now_wall_ns: self.last_timestamp_ns }.encode().expect("an expire entry encodes");
        // Busy (backpressure) or lost leadership: the next interval tries again.
        let _ = self.group.raft.propose(now, Bytes::from(data));
    }

    fn maybe_checkpoint(&mut self, now: MonoTime, cfg: &NodeConfig) -> Option<CheckpointWork> {
        if self.checkpoint_queued || self.catchup.is_some() || now < self.snapshot_retry_at {
            return None;
        }
        let policy = &cfg.snapshot;
        let applied = self.group.raft.applied_index();
        let since = applied.saturating_sub(self.group.raft.log().snapshot_index());
        // Snapshots at awkward moments: every 16 entries the policy may be overruled, so
        // checkpoints land mid-batch, beside catch-ups served and restarts.
        let early = self.since_snapshot_entries >= BUGGIFY_CHECKPOINT_ENTRIES
            && self.buggify.fires("checkpoint-early", self.def.group ^ ((applied / BUGGIFY_CHECKPOINT_ENTRIES) << 8));
        let due = self.since_snapshot_entries >= policy.entries
            || self.since_snapshot_bytes >= policy.bytes
            || early
            || (since > 0 && (now >= self.next_snapshot_at || self.group.raft.snapshot_wanted()));
        if !due && !self.group.raft.should_force_checkpoint() {
            return None;
        }
        let force = self.group.raft.should_force_checkpoint();
        match self.capture_checkpoint(now, force) {
            Ok(work) => Some(work),
            Err(CheckpointError::NoSnapshotAvailable) => {
                self.next_snapshot_at = now + policy.interval;
                None
            }
            Err(e) => {
                tracing::debug!(stream = %self.name(), error = %e, force, "checkpoint refused");
                self.snapshot_retry_at = now + cfg.catchup_timeout;
                None
            }
        }
    }

    /// Starts a checkpoint now, whatever the policy says (forced: catch-ups do not stop it).
    pub fn force_checkpoint(&mut self, now: MonoTime) -> Result<CheckpointWork, String> {
        if self.checkpoint_queued || self.catchup.is_some() || self.failed.is_some() {
            return Err("a checkpoint is queued, or the replica is catching up or stopped".into());
        }
        self.capture_checkpoint(now, true).map_err(|e| e.to_string())
    }

    /// Captures the state at the applied index for a checkpoint; the rest runs as work.
    fn capture_checkpoint(&mut self, now: MonoTime, force: bool) -> Result<CheckpointWork, CheckpointError> {
        let checkpoint = self.group.raft.create_checkpoint(now, force)?;
        // Every entry Raft handed out was applied, so the machine is at the same index.
        assert!(
            self.machine.applied_index().is_none_or(|i| i <= checkpoint.index),
            "machine ahead of raft's applied index"
        );
        let data = Bytes::from(self.machine.snapshot().encode());
        let removal_mark = self.machine.removal_mark();
        self.checkpoint_queued = true;
        self.stats.checkpoints += 1;
        Ok(CheckpointWork { checkpoint, data, removal_mark })
    }

    /// Starts the background half of a checkpoint (make the store durable through at least
    /// its index, write the snapshot file, compact the log): buffered records are written here, and the job holds the
    /// fsyncs and the snapshot file's write, to run on any thread (`CheckpointIo::run`) while
    /// this replica goes on applying. `None` if there is nothing to run (the checkpoint
    /// failed or became moot; the replica may have stopped).
    pub fn start_checkpoint(
        &mut self,
        now: MonoTime,
        cfg: &NodeConfig,
        work: CheckpointWork,
    ) -> Option<CheckpointJob<D>> {
        let generation = work.checkpoint.generation;
        if self.failed.is_some() {
            self.checkpoint_queued = false;
            self.group.raft.checkpoint_failed(generation);
            return None;
        }
        let sync = if crate::bugs::active(crate::bugs::Bug::SnapshotSkipsStoreSync) {
            None // planted: the snapshot is written without making the store durable first
        } else {
            match self.machine.begin_sync() {
                Ok(plan) => Some(plan),
                Err(e) => {
                    self.checkpoint_queued = false;
                    self.group.raft.checkpoint_failed(generation);
                    self.fail(format!("store sync before snapshot: {e}"));
                    return None;
                }
            }
        };
        match self.group.prepare_checkpoint(&work.checkpoint, work.data.clone()) {
            Ok(Some(snapshot)) => {
                Some(CheckpointJob { work, io: CheckpointIo { sync, snapshot, ran: false }, started: now })
            }
            Ok(None) => {
                self.checkpoint_queued = false;
                None
            }
            Err(e) => {
                self.checkpoint_queued = false;
                tracing::warn!(stream = %self.name(), error = %e, "checkpoint failed");
                self.snapshot_retry_at = now + cfg.catchup_timeout;
                None
            }
        }
    }

    /// Takes a job back after its I/O ran: records what the store sync made durable, then
    /// (if it succeeded) adopts the snapshot and compacts the log. Returns the files that
    /// made unnecessary, detached, for the caller to remove (`Leftovers`).
    pub fn complete_checkpoint(
        &mut self,
        now: MonoTime,
        cfg: &NodeConfig,
        jitter: Duration,
        job: CheckpointJob<D>,
    ) -> Leftovers {
        assert!(job.io.ran, "a checkpoint job completes after its I/O ran");
        self.checkpoint_queued = false;
        let CheckpointJob { work, io, started } = job;
        let generation = work.checkpoint.generation;
        let synced = match io.sync {
            Some(plan) => self.machine.finish_sync(plan).map_err(|e| format!("store sync before snapshot: {e}")),
            None => Ok(()),
        };
        if let Err(why) = synced {
            self.group.storage.discard_snapshot(io.snapshot);
            self.group.raft.checkpoint_failed(generation);
            self.fail(why);
            return Leftovers::default();
        }
        if self.failed.is_some() {
            self.group.storage.discard_snapshot(io.snapshot);
            self.group.raft.checkpoint_failed(generation);
            return Leftovers::default();
        }
        let index = work.checkpoint.index;
        let removal_mark = work.removal_mark;
        match self.group.adopt_checkpoint(now, &work.checkpoint, io.snapshot, work.data) {
            Ok((compacted, leftovers)) => {
                // The snapshot is the group's durable one: the removals it covers may reach
                // the store now. (Not when superseded or kept aside for a catch-up: a restart
                // may restore an older one.)
                if compacted.is_some() {
                    if let Err(e) = self.machine.release_removals(removal_mark) {
                        self.fail(format!("write removals after the snapshot at {index}: {e}"));
                        return leftovers;
                    }
                }
                // One line per checkpoint under its own target, for benchmarks that count them
                // (`RUST_LOG=info,sluice::checkpoint=debug`).
                let took_ms = now.saturating_since(started).as_millis() as u64;
                tracing::debug!(target: "sluice::checkpoint", stream = %self.def.config.name, index, ?compacted, took_ms, "checkpoint installed");
                if compacted.is_some() {
                    crate::coverage::mark("node.checkpoint-compacted-log");
                    self.stats.compactions += 1;
                    self.since_snapshot_entries = 0;
                    self.since_snapshot_bytes = 0;
                    self.next_snapshot_at = now + cfg.snapshot.interval + jitter;
                } else {
                    self.snapshot_retry_at = now + cfg.catchup_timeout;
                }
                leftovers
            }
            Err(e) => {
                tracing::warn!(stream = %self.name(), error = %e, "checkpoint failed");
                self.snapshot_retry_at = now + cfg.catchup_timeout;
                Leftovers::default()
            }
        }
    }

    // ----- catch-up -------------------------------------------------------------------

    /// Asks the next peer for the next chunk. Leader first (it is known to hold the
    /// snapshot's messages), then the other peers in turn.
    fn send_catchup_request(&mut self, now: MonoTime, outbox: &mut Outbox) {
        // Tiny chunks (one message each): many rounds, so a catch-up overlaps more of
        // everything else. The source always sends at least one message.
        let chunk_bytes = if self.buggify.fires("catchup-chunk-tiny", self.def.group ^ (self.next_attempt << 16)) {
            1
        } else {
            self.chunk_bytes
        };
        let Some(req) = self.machine.catchup_request(chunk_bytes) else {
            self.catchup = None;
            self.update_campaign();
            return;
        };
        let me = self.group.raft.id();
        let leader = self.group.raft.leader().filter(|l| *l != me);
        let mut order: Vec<NodeId> = leader.into_iter().collect();
        order.extend(self.def.peers.iter().copied().filter(|p| *p != me && Some(*p) != leader));
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        if self.buggify.fires("catchup-snapshot-request", self.def.group.rotate_left(32) ^ attempt) {
            self.request_newer_snapshot(); // legal at any time; normally only after failures
        }
        let c = self.catchup.as_mut().expect("catching up");
        c.attempt = attempt;
        c.sent_at = now;
        if order.is_empty() {
            c.peer = None; // a single replica with nobody to ask: wait for a peer to appear
            return;
        }
        let peer = order[c.rotation % order.len()];
        c.peer = Some(peer);
        let group = self.def.group;
        let body = CatchupBody::Request(req);
        outbox.push_back((peer, CatchupFrame { group, from: me, to: peer, attempt, body }.encode()));
    }

    /// A catch-up frame for this group.
    pub fn handle_catchup(&mut self, now: MonoTime, cfg: &NodeConfig, frame: CatchupFrame, outbox: &mut Outbox) {
        match frame.body {
            CatchupBody::Request(req) => self.serve(now, cfg, frame.from, frame.attempt, req, outbox),
            CatchupBody::Chunk(chunk) => {
                let Some(c) = &self.catchup else { return };
                if c.attempt != frame.attempt || c.peer != Some(frame.from) {
                    return; // an answer to an abandoned request
                }
                match self.machine.apply_catchup_chunk(&chunk) {
                    Ok(progress) => {
                        self.stats.catchup_chunks += 1;
                        let c = self.catchup.as_mut().expect("checked");
                        c.failures = 0;
                        if progress.next_from.is_none() {
                            tracing::info!(stream = %self.name(), "catch-up complete");
                            self.stats.catchups_completed += 1;
                            self.catchup = None;
                            self.update_campaign();
                            self.apply(now, outbox);
                        } else {
                            self.send_catchup_request(now, outbox);
                        }
                    }
                    Err(e @ (StreamError::Store(_) | StreamError::Failed { .. })) => {
                        self.fail(format!("catch-up write: {e}"))
                    }
                    Err(e) => {
                        tracing::warn!(stream = %self.name(), peer = frame.from, error = %e, "catch-up chunk refused");
                        self.catchup_attempt_failed(now, cfg, outbox, false);
                    }
                }
            }
            CatchupBody::Unavailable => {
                let Some(c) = &self.catchup else { return };
                if c.attempt == frame.attempt && c.peer == Some(frame.from) {
                    self.catchup_attempt_failed(now, cfg, outbox, false);
                }
            }
        }
    }

    /// The outstanding request failed: refused, answered with a chunk this replica cannot
    /// use, or unanswered for `catchup_timeout`. The next peer is asked; after a round in
    /// which every peer refused, after a pause of `catchup_timeout`. After
    /// `catchup_rounds_before_snapshot` rounds without progress, and after every round
    /// from then on, the leader is asked for a newer snapshot as well: catch-up goes on
    /// meanwhile, and the snapshot replaces its target when it comes.
    fn catchup_attempt_failed(&mut self, now: MonoTime, cfg: &NodeConfig, outbox: &mut Outbox, timed_out: bool) {
        let others = self.def.peers.len().saturating_sub(1).max(1) as u32;
        let c = self.catchup.as_mut().expect("catching up");
        c.failures += 1;
        c.rotation += 1;
        self.stats.catchup_failures += 1;
        let (failures, round_done) = (c.failures, c.failures % others == 0);
        if round_done && failures / others >= cfg.catchup_rounds_before_snapshot {
            tracing::warn!(stream = %self.name(), failures, "catch-up cannot progress; asking the leader for a newer snapshot");
            crate::coverage::mark("node.catchup-asks-newer-snapshot");
            self.request_newer_snapshot();
        }
        let c = self.catchup.as_mut().expect("catching up");
        if round_done && !timed_out {
            // Every peer refused in turn: wait for the timeout before the next round.
            c.peer = None;
            c.sent_at = now;
            return;
        }
        self.send_catchup_request(now, outbox);
    }

    fn request_newer_snapshot(&mut self) {
        if self.group.raft.request_snapshot() {
            self.stats.snapshot_requests += 1;
        }
    }

    /// Serves a peer's request from this replica's store, and tells Raft a catch-up is
    /// running so no checkpoint compacts the entries that follow the peer's snapshot.
    fn serve(
        &mut self,
        now: MonoTime,
        cfg: &NodeConfig,
        peer: NodeId,
        attempt: u64,
        req: CatchupRequest,
        outbox: &mut Outbox,
    ) {
        if !self.def.peers.contains(&peer) {
            return;
        }
        let me = self.group.raft.id();
        let group = self.def.group;
        let body = if self.failed.is_some() || self.catchup.is_some() {
            CatchupBody::Unavailable
        } else {
            match self.serve_chunk(req) {
                Ok(Some(chunk)) => {
                    let done = chunk.through_seq == req.to_seq;
                    let until = if done { None } else { Some(now + cfg.catchup_timeout * 2) };
                    self.group.raft.set_app_catchup(peer, until);
                    self.stats.chunks_served += 1;
                    CatchupBody::Chunk(chunk)
                }
                Ok(None) => CatchupBody::Unavailable,
                Err(e) => {
                    tracing::warn!(stream = %self.name(), peer, error = %e, "cannot serve catch-up");
                    CatchupBody::Unavailable
                }
            }
        };
        outbox.push_back((peer, CatchupFrame { group, from: me, to: peer, attempt, body }.encode()));
    }

    /// A chunk that fits one frame: if the asked size does not, the first message alone.
    fn serve_chunk(&self, req: CatchupRequest) -> Result<Option<crate::stream::CatchupChunk>, String> {
        for max_bytes in [req.max_bytes, 1] {
            let Some(chunk) =
                self.machine.serve_catchup(&CatchupRequest { max_bytes, ..req }).map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            if chunk.encode().len() + crate::raft::message::HEADER_BYTES <= FRAME_BYTES_MAX {
                return Ok(Some(chunk));
            }
        }
        Err(format!("a single message from sequence {} does not fit a frame", req.from_seq))
    }

    /// Removes the replica's files (the stream was deleted).
    pub fn remove_files(disk: &D, cfg: &NodeConfig, group: u64) -> Result<(), String> {
        let dir = group_dir(cfg, group);
        disk.remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
        let parent = dir.parent().unwrap_or(Path::new(""));
        disk.sync_dir(parent).map_err(|e| format!("sync {}: {e}", parent.display()))
    }
}
