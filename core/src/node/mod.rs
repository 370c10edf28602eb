//! The node driver (DESIGN §2 layer 3): one sluice node hosting the meta group (stream
//! definitions and placement) and one Raft group per stream replica it holds. It executes
//! the protocols' actions against its disk, queues frames for the network and answers
//! client requests once their entries have committed and applied.
//!
//! The node is synchronous and takes `now` (monotonic) and `wall_ns` (timestamps) as
//! arguments; a runtime (the simulator, or the production binding) feeds it:
//! * `handle_frame(now, from, frame)`: a frame from a peer (untrusted: decoded defensively,
//!   dropped with a log line if invalid);
//! * `tick(now, wall_ns)`: timers (elections, heartbeats, expiry, snapshot policy, request
//!   deadlines, catch-up retries, reopening failed replicas), at least every heartbeat;
//! * client requests: `create_stream`, `delete_stream`, `publish`, `delete_message`, `purge`
//!   return a `RequestId` whose `Reply` arrives later; `stream_info`, `get_message`, `streams`
//!   answer at once from this node's replica;
//! * `run_work(now)`: one piece of background work (a checkpoint: sync the store, write the
//!   snapshot, compact the log). The apply loop never waits for it; the runtime decides when
//!   it runs. Or split: `take_work(now)` hands out its I/O (`Work`, `Send`), the runtime runs
//!   it on another thread while the node goes on, and `finish_work(now, work)` takes it
//!   back (production's `--snapshot-mode background`; the simulator spreads the three
//!   over seeded delays).
//!
//! and drains `poll_send` (frames to peers) and `poll_reply` (answers to requests).
//!
//! Batching: between `begin_batch` and `end_batch(now)`, frames and requests for stream
//! groups only stage their Raft work; `end_batch` then drives each touched group up to its
//! one log write and holds it, the runtime sends what is queued (a leader's appends), and
//! `write_batch(now)` makes the writes and finishes. A burst of publishes or appends costs
//! one log write and one fsync per group instead of one each, and the followers write while
//! the leader does. Outside a batch every input drives its group at once. Either way nothing
//! that promises a write is sent before the write is durable (`RaftGroup::drive`).
//!
//! Invariants:
//! * a reply to a publish carries the stream sequence only after its entry committed and
//!   applied at the (index, term) the proposal got; anything else is `Failed`;
//! * every decision is a function of inputs and the seed: maps are `BTreeMap`, randomness is
//!   the node's ChaCha8 RNG seeded from the config;
//! * every accepted request gets exactly one reply (`outstanding` counts them; bounded by
//!   `requests_max`).

mod config;
mod frame;
mod group;
pub mod meta;
mod pending;
mod restore;
mod stream_group;
#[cfg(test)]
mod tests;

pub use config::{NodeConfig, SnapshotPolicy, CATCHUP_CHUNK_REQUEST_BYTES_MAX};
pub use frame::{CatchupBody, CatchupFrame, KIND_CATCHUP_CHUNK, KIND_CATCHUP_REQUEST, KIND_CATCHUP_UNAVAILABLE};
pub use group::GroupRecovery;
pub use meta::{MetaEntry, MetaOutcome, MetaState, StreamDef};
pub use restore::{RestoreJob, Restoring};
pub use stream_group::GroupStats;

use crate::disk::Disk;
use crate::env::{MonoTime, NodeId};
use crate::raft::message::{decode_header, Message, KIND_RAFT_MAX};
use crate::raft::storage::Leftovers;
use crate::raft::{Applied, EntryKind, GroupId, Index, Membership, ProposeError, Role, Term};
use crate::store::StoredMessage;
use crate::stream::consumer::{AckKind, ConsumerConfig, ConsumerInfo, Delivery};
use crate::stream::{ApplyOutcome, Publish, Purge, StreamConfig, StreamEntry, StreamInfo};
use bytes::Bytes;
use group::{Outbox, RaftGroup};
use pending::PendingRequests;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;
use stream_group::{CheckpointJob, CheckpointWork, StreamGroup};

/// Background work waiting in the node's queue.
enum WorkItem {
    /// A checkpoint's second half.
    Checkpoint(CheckpointWork),
    /// Files a finished checkpoint made unnecessary (older snapshots, compacted segments).
    Cleanup(Leftovers),
}

enum Job<D: Disk> {
    Checkpoint(Box<CheckpointJob<D>>),
    Cleanup { disk: D, leftovers: Leftovers, failed: Option<String> },
}

/// Background I/O handed out by `Node::take_work`: a checkpoint's (the store's fsyncs, then
/// the snapshot file) or a cleanup's (removing files a checkpoint made unnecessary). `Send`,
/// so a runtime can run it on a worker thread while the node goes on (`--snapshot-mode
/// background`), then give it back to `Node::finish_work`. Dropping it (a crash) is safe: a
/// checkpoint writes its snapshot file only after the store sync it depends on succeeded, so
/// recovery may use that file like any other; files a cleanup did not remove are passed over.
pub struct Work<D: Disk> {
    group: GroupId,
    incarnation: u64,
    job: Job<D>,
}

impl<D: Disk> Work<D> {
    /// The I/O. Touches only the disk.
    pub fn run(&mut self) {
        match &mut self.job {
            Job::Checkpoint(job) => job.io.run(),
            Job::Cleanup { disk, leftovers, failed } => {
                *failed = leftovers.remove(disk).err().map(|e| e.to_string());
                leftovers.free(); // here, not on the node's thread when the work comes back
            }
        }
    }

    pub fn group(&self) -> GroupId {
        self.group
    }
}

/// The meta group's id; stream groups are numbered by the meta index that created them.
pub const META_GROUP: GroupId = 0;
/// Entries applied per `poll_apply`, so one busy group cannot hold the node for long.
const APPLY_BATCH_ENTRIES: usize = 1024;
/// Background work items waiting at once: per group at most one checkpoint and one cleanup.
const WORK_QUEUE_MAX: usize = 2 * meta::STREAMS_MAX;

/// Identifies a client request on this node until its reply.
pub type RequestId = u64;

/// The answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Stored at `seq` (or, if `duplicate`, its message id was stored earlier as `seq`).
    Published {
        seq: u64,
        duplicate: bool,
    },
    MessageDeleted {
        seq: u64,
    },
    Purged {
        count: u64,
    },
    StreamCreated {
        group: GroupId,
    },
    StreamDeleted {
        group: GroupId,
    },
    ConsumerCreated {
        name: String,
    },
    ConsumerDeleted {
        name: String,
    },
    /// A pull's messages (possibly none) and the stream messages past the consumer's cursor.
    Delivered {
        deliveries: Vec<Delivery>,
        num_pending: u64,
    },
    /// An ack applied (`pending`: the message was waiting for one).
    Acked {
        pending: bool,
    },
    /// A restore chunk written (see `ApplyOutcome::Restored`).
    Restored {
        last_seq: u64,
        stored: u64,
        expired: u64,
    },
    /// The entry committed and every replica refused it the same way.
    Rejected {
        reason: String,
    },
    /// The request did not take effect through this node, or its outcome is unknown.
    Failed(ClientError),
}

impl Reply {
    fn from_outcome(outcome: ApplyOutcome) -> Reply {
        match outcome {
            ApplyOutcome::Stored { seq } => Reply::Published { seq, duplicate: false },
            ApplyOutcome::Duplicate { seq } => Reply::Published { seq, duplicate: true },
            ApplyOutcome::Rejected { reason } => Reply::Rejected { reason: reason.to_string() },
            ApplyOutcome::Deleted { seq } => Reply::MessageDeleted { seq },
            ApplyOutcome::Purged { count } => Reply::Purged { count },
            // Expire entries are proposed by the leader itself, never by a client.
            ApplyOutcome::Expired { count } => Reply::Purged { count },
            ApplyOutcome::ConsumerCreated { name } => Reply::ConsumerCreated { name },
            ApplyOutcome::ConsumerDeleted { name } => Reply::ConsumerDeleted { name },
            ApplyOutcome::Delivered { deliveries, num_pending } => Reply::Delivered { deliveries, num_pending },
            ApplyOutcome::Acked { pending } => Reply::Acked { pending },
            ApplyOutcome::Restored { last_seq, stored, expired } => Reply::Restored { last_seq, stored, expired },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Ask the leader instead (if known).
    NotLeader {
        leader: Option<NodeId>,
    },
    /// This node holds no replica of the stream; these nodes do.
    NotHere {
        peers: Vec<NodeId>,
    },
    NoSuchStream {
        name: String,
    },
    InvalidRequest {
        reason: String,
    },
    /// Too many requests or uncommitted entries; retry later.
    Busy,
    /// The replica or group cannot serve now (stopped after a disk error, catching up).
    Unavailable {
        reason: String,
    },
    /// No reply within `request_timeout`. The request may still take effect.
    Timeout,
    /// Leadership changed before the entry committed; it did not take effect.
    LeadershipLost,
    /// A snapshot replaced the log around the entry: it may or may not have taken effect.
    OutcomeUnknown,
}

impl ClientError {
    fn from_propose(e: ProposeError) -> ClientError {
        match e {
            ProposeError::NotLeader { leader } => ClientError::NotLeader { leader },
            ProposeError::Busy => ClientError::Busy,
            ProposeError::TooLarge { size_bytes, max_bytes } => {
                ClientError::InvalidRequest { reason: format!("entry of {size_bytes} bytes exceeds {max_bytes}") }
            }
            other => ClientError::Unavailable { reason: other.to_string() },
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NotLeader { leader: Some(l) } => write!(f, "not the leader; node {l} is"),
            ClientError::NotLeader { leader: None } => write!(f, "not the leader; no leader known"),
            ClientError::NotHere { peers } => write!(f, "no replica on this node; nodes {peers:?} hold it"),
            ClientError::NoSuchStream { name } => write!(f, "no stream named {name:?}"),
            ClientError::InvalidRequest { reason } => write!(f, "invalid request: {reason}"),
            ClientError::Busy => write!(f, "busy; retry later"),
            ClientError::Unavailable { reason } => write!(f, "unavailable: {reason}"),
            ClientError::Timeout => write!(f, "timed out; the request may still take effect"),
            ClientError::LeadershipLost => write!(f, "leadership changed before the entry committed"),
            ClientError::OutcomeUnknown => write!(f, "outcome unknown (a snapshot replaced the log)"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Stream info as this node's replica sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStreamInfo {
    pub group: GroupId,
    pub peers: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub role: Role,
    pub term: Term,
    /// The last index in this replica's Raft log (durable or not).
    pub last_index: Index,
    pub commit_index: Index,
    pub applied_index: Index,
    pub stream: StreamInfo,
    pub catchup_failures: u32,
    /// Recovery cut committed entries from this replica's log and no leader has repaired it
    /// yet: it neither votes nor campaigns.
    pub damaged: bool,
    pub stats: GroupStats,
}

/// The Raft side of one replica, cheap to take (no stream info, no allocation): what a driver
/// or the simulator polls every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub role: Role,
    pub leader: Option<NodeId>,
    pub term: Term,
    /// The last index in this replica's Raft log (durable or not).
    pub last_index: Index,
    pub commit_index: Index,
    pub applied_index: Index,
    pub catching_up: bool,
    /// As `NodeStreamInfo::damaged`.
    pub damaged: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub frames_dropped: u64,
    pub groups_reopened: u64,
    pub work_done: u64,
}

pub struct Node<D: Disk> {
    cfg: NodeConfig,
    disk: D,
    rng: ChaCha8Rng,
    meta: RaftGroup<D>,
    meta_state: MetaState,
    meta_pending: PendingRequests,
    meta_failed: Option<String>,
    meta_since_snapshot: u64,
    streams: BTreeMap<GroupId, StreamGroup<D>>,
    /// Replicas that failed to open or stopped, with when to try opening them again.
    broken: BTreeMap<GroupId, (String, MonoTime)>,
    next_incarnation: u64,
    incarnations: BTreeMap<GroupId, u64>,
    outbox: Outbox,
    replies: VecDeque<(RequestId, Reply)>,
    work: VecDeque<(GroupId, u64, WorkItem)>,
    /// Replicas whose checkpoint I/O is out (`take_work`), not yet back (`finish_work`).
    work_out: BTreeSet<GroupId>,
    /// `take_work` calls so far: the key of BUGGIFY `work-deferred`.
    work_asks: u64,
    next_request: RequestId,
    outstanding: usize,
    /// Look for directories of deleted streams at the next reconcile.
    scan_orphans: bool,
    /// Inside `begin_batch`..`end_batch`: the stream groups with staged, undriven work.
    batch: Option<BTreeSet<GroupId>>,
    /// After `end_batch`: the stream groups whose log write waits for `write_batch`.
    writes_held: BTreeSet<GroupId>,
    stats: NodeStats,
}

impl<D: Disk> Node<D> {
    /// Opens the node's data directory (creating it), recovers the meta group and then every
    /// stream replica placed on this node, one after another on this thread. `begin_open`
    /// is the same with the replicas restored in parallel.
    pub fn open(disk: D, cfg: NodeConfig, now: MonoTime) -> Result<Node<D>, String> {
        Ok(Node::begin_open(disk, cfg, now, Box::new(move || now))?.finish_here(now))
    }

    /// Recovers the meta group, starts the services stream restores share, and hands back
    /// one job per stream replica placed here (`Restoring::take_jobs`), to run in parallel;
    /// `Restoring::finish` then returns the node. `clock` times the jobs, for the log.
    pub fn begin_open(
        disk: D,
        cfg: NodeConfig,
        now: MonoTime,
        clock: Box<dyn Fn() -> MonoTime + Send + Sync>,
    ) -> Result<Restoring<D>, String> {
        cfg.validate()?;
        let voters = Membership::new(cfg.cluster.iter().copied());
        let (meta, recovery) =
            RaftGroup::open(disk.clone(), &cfg.dir.join("meta"), &cfg, META_GROUP, voters, cfg.seed, now)?;
        tracing::info!(node = cfg.id, ?recovery, "meta group recovered");
        let mut node = Node {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x6e6f_6465),
            disk,
            meta,
            meta_state: MetaState::default(),
            meta_pending: PendingRequests::default(),
            meta_failed: None,
            meta_since_snapshot: 0,
            streams: BTreeMap::new(),
            broken: BTreeMap::new(),
            next_incarnation: 1,
            incarnations: BTreeMap::new(),
            outbox: VecDeque::new(),
            replies: VecDeque::new(),
            work: VecDeque::new(),
            work_out: BTreeSet::new(),
            work_asks: 0,
            next_request: 1,
            outstanding: 0,
            scan_orphans: true,
            batch: None,
            writes_held: BTreeSet::new(),
            stats: NodeStats::default(),
            cfg,
        };
        node.pump_meta(now);
        // Jitter is drawn here, in group order, so the node's random stream does not depend
        // on the order the jobs run in.
        let defs: Vec<StreamDef> =
            node.meta_state.streams().filter(|d| d.peers.contains(&node.cfg.id)).cloned().collect();
        let defs = defs.into_iter().map(|def| (def, node.jitter())).collect();
        Ok(Restoring::new(node, defs, now, clock))
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    // ----- inputs ---------------------------------------------------------------------

    /// A frame from peer `from`. Invalid frames are dropped (and counted).
    pub fn handle_frame(&mut self, now: MonoTime, from: NodeId, frame: Bytes) {
        let h = match decode_header(&frame) {
            Ok(h) if h.from == from && h.to == self.cfg.id => h,
            Ok(h) => return self.drop_frame(from, &format!("addressed {} → {}", h.from, h.to)),
            Err(e) => return self.drop_frame(from, &e.to_string()),
        };
        if h.kind <= KIND_RAFT_MAX {
            let msg = match Message::decode(&frame) {
                Ok(m) => m,
                Err(e) => return self.drop_frame(from, &e.to_string()),
            };
            if h.group == META_GROUP {
                if let Err(e) = self.meta.raft.handle_message(now, msg) {
                    self.drop_frame(from, &e.to_string());
                }
                // Heartbeats change nothing: replicas are reconciled only when the meta
                // state moved.
                if self.pump_meta(now) {
                    self.reconcile(now);
                }
            } else if let Some(g) = self.streams.get_mut(&h.group) {
                let result = g.group.raft.handle_message(now, msg);
                self.drive_stream(now, h.group);
                if let Err(e) = result {
                    self.drop_frame(from, &format!("group {}: {e}", h.group));
                }
            }
            // A group this node does not (yet) hold: its create has not applied here. The
            // sender retries.
            return;
        }
        let f = match CatchupFrame::decode(&h, &frame) {
            Ok(f) => f,
            Err(e) => return self.drop_frame(from, &e),
        };
        if let Some(g) = self.streams.get_mut(&h.group) {
            g.handle_catchup(now, &self.cfg, f, &mut self.outbox);
            self.collect_replies(h.group);
        }
    }

    fn drop_frame(&mut self, from: NodeId, why: &str) {
        self.stats.frames_dropped += 1;
        tracing::debug!(from, %why, "frame dropped");
    }

    /// Timers. Call at least every heartbeat interval.
    pub fn tick(&mut self, now: MonoTime, wall_ns: i64) {
        self.meta.raft.tick(now);
        for request in self.meta_pending.take_expired(now) {
            self.reply(request, Reply::Failed(ClientError::Timeout));
        }
        self.pump_meta(now);
        self.maybe_checkpoint_meta(now);
        let ids: Vec<GroupId> = self.streams.keys().copied().collect();
        for id in ids {
            let g = self.streams.get_mut(&id).expect("listed");
            if let Some(work) = g.tick(now, wall_ns, &self.cfg, &mut self.outbox) {
                assert!(self.work.len() < WORK_QUEUE_MAX, "a checkpoint and a cleanup per open group at most");
                self.work.push_back((id, self.incarnations[&id], WorkItem::Checkpoint(work)));
            }
            g.pump(now, &mut self.outbox);
            self.collect_replies(id);
            if self.streams[&id].failed.is_some() {
                self.close_stream(id, now, true);
            }
        }
        self.reconcile(now);
    }

    /// Runs one piece of background work here and now (inline mode); `false` if none could
    /// go. Files a checkpoint made unnecessary are removed at once.
    pub fn run_work(&mut self, now: MonoTime) -> bool {
        let Some(mut work) = self.take_work(now) else { return false };
        work.run();
        self.finish(now, work, false);
        true
    }

    /// Starts the next piece of background work and hands out its I/O, to run on any thread
    /// (`Work::run`) while this node goes on; `finish_work` takes it back. `None` if no work
    /// is queued or none can go now (each replica has at most one piece out). Until it is
    /// back, its replica is neither reopened nor has its files removed.
    pub fn take_work(&mut self, now: MonoTime) -> Option<Work<D>> {
        self.work_asks += 1;
        // Slow background work: the queue waits a turn, so checkpoints finish later than the
        // entries and requests around them.
        if !self.work.is_empty() && self.cfg.buggify.fires("work-deferred", self.work_asks) {
            return None;
        }
        while let Some(at) = self.work.iter().position(|(id, _, _)| !self.work_out.contains(id)) {
            let (id, incarnation, item) = self.work.remove(at).expect("found above");
            self.stats.work_done += 1;
            if self.incarnations.get(&id) != Some(&incarnation) {
                continue; // the replica was closed or reopened since
            }
            let job = match item {
                WorkItem::Cleanup(leftovers) => Some(Job::Cleanup { disk: self.disk.clone(), leftovers, failed: None }),
                WorkItem::Checkpoint(work) => {
                    let g = self.streams.get_mut(&id).expect("incarnation matches an open group");
                    let job = g.start_checkpoint(now, &self.cfg, work);
                    g.pump(now, &mut self.outbox);
                    self.collect_replies(id);
                    job.map(|j| Job::Checkpoint(Box::new(j)))
                }
            };
            if let Some(job) = job {
                self.work_out.insert(id);
                return Some(Work { group: id, incarnation, job });
            }
        }
        None
    }

    /// Takes back work whose I/O ran, and finishes it on this thread. Files a checkpoint
    /// made unnecessary are queued as a cleanup, handed out like a checkpoint (their
    /// removal ends in a directory fsync, which would stall this thread).
    pub fn finish_work(&mut self, now: MonoTime, work: Work<D>) {
        self.finish(now, work, true);
    }

    fn finish(&mut self, now: MonoTime, work: Work<D>, defer_cleanup: bool) {
        let Work { group: id, incarnation, job } = work;
        let out = self.work_out.remove(&id);
        assert!(out, "work for group {id} was not handed out");
        if self.incarnations.get(&id) != Some(&incarnation) {
            // Closed while the I/O ran: whatever it wrote belongs to no open replica. Let the
            // orphan scan judge the directory, and a reopen proceed.
            self.scan_orphans = true;
            return;
        }
        let job = match job {
            Job::Cleanup { failed, .. } => {
                if let Some(e) = failed {
                    // The files stay; nothing reads them (see `Leftovers`).
                    tracing::warn!(group = id, error = %e, "removing files a snapshot made unnecessary failed");
                }
                return;
            }
            Job::Checkpoint(job) => job,
        };
        let jitter = self.jitter();
        let g = self.streams.get_mut(&id).expect("incarnation matches an open group");
        let leftovers = g.complete_checkpoint(now, &self.cfg, jitter, *job);
        if !leftovers.is_empty() {
            if defer_cleanup {
                let queued = self.work.iter_mut().find_map(|(g, i, item)| match item {
                    WorkItem::Cleanup(l) if *g == id && *i == incarnation => Some(l),
                    _ => None,
                });
                match queued {
                    Some(l) => l.append(leftovers),
                    None => self.work.push_back((id, incarnation, WorkItem::Cleanup(leftovers))),
                }
            } else if let Err(e) = g.group.storage.remove_leftovers(&leftovers) {
                tracing::warn!(group = id, error = %e, "compaction failed");
            }
        }
        g.pump(now, &mut self.outbox);
        self.collect_replies(id);
    }

    /// Work queued, not counting work handed out by `take_work`.
    pub fn pending_work(&self) -> usize {
        self.work.len()
    }

    // ----- outputs --------------------------------------------------------------------

    /// The next frame to send: (destination, bytes).
    pub fn poll_send(&mut self) -> Option<(NodeId, Bytes)> {
        self.outbox.pop_front()
    }

    pub fn poll_reply(&mut self) -> Option<(RequestId, Reply)> {
        self.replies.pop_front()
    }

    // ----- client requests ------------------------------------------------------------

    /// Proposes a new stream on `replicas` nodes (1, 3 or 5). Must be sent to the meta
    /// leader. Creating a stream that exists with the same configuration succeeds. A
    /// publish must also fit one Raft entry (`RaftConfig::entry_data_bytes_max`, about
    /// `batch_bytes_max`); a larger one is refused at publish time.
    pub fn create_stream(
        &mut self,
        now: MonoTime,
        config: StreamConfig,
        replicas: usize,
    ) -> Result<RequestId, ClientError> {
        let peers = self.place(&config, replicas)?;
        self.propose_meta(now, MetaEntry::CreateStream { config, peers })
    }

    /// A new stream's voters, after checking its config: `replicas` of the meta group's.
    fn place(&self, config: &StreamConfig, replicas: usize) -> Result<Vec<NodeId>, ClientError> {
        let invalid = |reason: String| ClientError::InvalidRequest { reason };
        config.validate().map_err(|e| invalid(e.to_string()))?;
        let voters = &self.meta.raft.membership().voters;
        meta::place(voters, replicas, self.meta_state.streams().count()).ok_or_else(|| {
            invalid(format!("{replicas} replicas on a cluster of {} nodes; a stream has 1, 3 or 5", voters.len()))
        })
    }

    pub fn delete_stream(&mut self, now: MonoTime, name: &str) -> Result<RequestId, ClientError> {
        if self.meta_state.get(name).is_none() {
            return Err(ClientError::NoSuchStream { name: name.into() });
        }
        self.propose_meta(now, MetaEntry::DeleteStream { name: name.into(), group: None })
    }

    // ----- backup and restore ---------------------------------------------------------
    // docs/archive.md: a restore creates the stream with `restore_stream`, writes the
    // archive's messages as `restore_chunk`s and its consumers as `restore_consumer`s, and on
    // any failure removes the stream it created with `abandon_restore`.

    /// Like `create_stream`, but refused if a stream of that name exists, whatever its
    /// configuration: a restore never writes into a stream it did not create.
    pub fn restore_stream(
        &mut self,
        now: MonoTime,
        config: StreamConfig,
        replicas: usize,
    ) -> Result<RequestId, ClientError> {
        let peers = self.place(&config, replicas)?;
        self.propose_meta(now, MetaEntry::RestoreStream { config, peers })
    }

    /// Deletes stream `name` only if it is still group `group` (the one a failed restore
    /// created), so an abandoned restore never removes a stream made since under that name.
    pub fn abandon_restore(&mut self, now: MonoTime, name: &str, group: GroupId) -> Result<RequestId, ClientError> {
        if self.meta_state.get(name).is_none_or(|d| d.group != group) {
            return Err(ClientError::NoSuchStream { name: name.into() });
        }
        self.propose_meta(now, MetaEntry::DeleteStream { name: name.into(), group: Some(group) })
    }

    /// Writes an encoded `CatchupChunk` of archived messages into stream `name`; answered
    /// with `Reply::Restored`. Must be sent to the stream's leader.
    pub fn restore_chunk(
        &mut self,
        now: MonoTime,
        wall_ns: i64,
        name: &str,
        chunk: Bytes,
    ) -> Result<RequestId, ClientError> {
        self.propose_timed(now, wall_ns, name, move |ts| StreamEntry::Restore { now_wall_ns: ts, chunk })
    }

    /// Adds an archived consumer (`Consumers::export` bytes); answered with
    /// `Reply::ConsumerCreated`.
    pub fn restore_consumer(&mut self, now: MonoTime, name: &str, consumer: Bytes) -> Result<RequestId, ClientError> {
        self.propose_stream_entry(now, name, StreamEntry::ConsumerRestore { consumer })
    }

    /// A backup's read of `from_seq..=to_seq` on this replica: its messages (about
    /// `max_bytes`, at least one) and gaps, as a catch-up chunk that may end before `to_seq`.
    /// `Ok(None)` if the replica does not hold `to_seq` yet.
    pub fn backup_chunk(
        &self,
        name: &str,
        from_seq: u64,
        to_seq: u64,
        max_bytes: u64,
    ) -> Result<Option<crate::stream::CatchupChunk>, ClientError> {
        let id = self.local_group(name)?;
        let req = crate::stream::CatchupRequest { from_seq, to_seq, max_bytes };
        req.validate().map_err(|e| ClientError::InvalidRequest { reason: e.to_string() })?;
        self.streams[&id].machine.backup_chunk(&req).map_err(|e| ClientError::Unavailable { reason: e.to_string() })
    }

    /// Consumer `consumer` with its state, as a backup archives it.
    pub fn consumer_export(&self, name: &str, consumer: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let id = self.local_group(name)?;
        Ok(self.streams[&id].machine.consumers().export(consumer))
    }

    fn propose_meta(&mut self, now: MonoTime, entry: MetaEntry) -> Result<RequestId, ClientError> {
        if let Some(why) = &self.meta_failed {
            return Err(ClientError::Unavailable { reason: format!("meta group stopped: {why}") });
        }
        self.check_capacity()?;
        let (index, term) =
            self.meta.raft.propose(now, Bytes::from(entry.encode())).map_err(ClientError::from_propose)?;
        let request = self.new_request();
        if let Some(lost) = self.meta_pending.insert(index, term, request, now + self.cfg.request_timeout) {
            self.reply(lost, Reply::Failed(ClientError::LeadershipLost));
        }
        if self.pump_meta(now) {
            self.reconcile(now);
        }
        Ok(request)
    }

    /// Publishes to stream `name`; `publish.timestamp_ns` is ignored (the leader sets it).
    /// Must be sent to the stream's leader.
    pub fn publish(
        &mut self,
        now: MonoTime,
        wall_ns: i64,
        name: &str,
        publish: Publish,
    ) -> Result<RequestId, ClientError> {
        self.check_capacity()?;
        let id = self.local_group(name)?;
        let request = self.next_request;
        let timeout = self.cfg.request_timeout;
        let g = self.streams.get_mut(&id).expect("local group");
        g.propose_publish(now, wall_ns, publish, request, timeout)?;
        self.accept_stream_request(now, id)
    }

    pub fn delete_message(&mut self, now: MonoTime, name: &str, seq: u64) -> Result<RequestId, ClientError> {
        self.propose_stream_entry(now, name, StreamEntry::Delete { seq })
    }

    pub fn purge(&mut self, now: MonoTime, name: &str, purge: Purge) -> Result<RequestId, ClientError> {
        self.propose_stream_entry(now, name, StreamEntry::Purge(purge))
    }

    // ----- consumers ------------------------------------------------------------------
    // Each is an entry in the stream's own log, proposed on its leader with the leader's
    // clock; the reply comes when it applies (docs/consumers.md).

    /// Creates durable consumer `config.name` on stream `name` (or updates it: see
    /// `Consumers::create`).
    pub fn create_consumer(
        &mut self,
        now: MonoTime,
        wall_ns: i64,
        name: &str,
        config: ConsumerConfig,
    ) -> Result<RequestId, ClientError> {
        config.validate().map_err(|reason| ClientError::InvalidRequest { reason })?;
        self.propose_timed(now, wall_ns, name, move |ts| StreamEntry::consumer_create(ts, &config))
    }

    pub fn delete_consumer(&mut self, now: MonoTime, name: &str, consumer: &str) -> Result<RequestId, ClientError> {
        let name_bytes = Bytes::copy_from_slice(consumer.as_bytes());
        self.propose_stream_entry(now, name, StreamEntry::ConsumerDelete { name: name_bytes })
    }

    /// A pull of up to `batch` messages (about `max_bytes`); answered with `Reply::Delivered`.
    pub fn consumer_next(
        &mut self,
        now: MonoTime,
        wall_ns: i64,
        name: &str,
        consumer: &str,
        batch: u32,
        max_bytes: u32,
    ) -> Result<RequestId, ClientError> {
        let consumer = Bytes::copy_from_slice(consumer.as_bytes());
        self.propose_timed(now, wall_ns, name, move |ts| StreamEntry::ConsumerNext {
            now_wall_ns: ts,
            name: consumer,
            batch,
            max_bytes,
        })
    }

    pub fn consumer_ack(
        &mut self,
        now: MonoTime,
        wall_ns: i64,
        name: &str,
        consumer: &str,
        seq: u64,
        kind: AckKind,
    ) -> Result<RequestId, ClientError> {
        let consumer = Bytes::copy_from_slice(consumer.as_bytes());
        self.propose_timed(now, wall_ns, name, move |ts| StreamEntry::ConsumerAck {
            now_wall_ns: ts,
            name: consumer,
            seq,
            kind,
        })
    }

    /// Consumer `consumer` of stream `name` as this node's replica has applied it.
    pub fn consumer_info(&self, name: &str, consumer: &str) -> Result<Option<ConsumerInfo>, ClientError> {
        let id = self.local_group(name)?;
        Ok(self.streams[&id].machine.consumer_info(consumer))
    }

    pub fn consumer_names(&self, name: &str) -> Result<Vec<String>, ClientError> {
        let id = self.local_group(name)?;
        Ok(self.streams[&id].machine.consumers().names().map(str::to_string).collect())
    }

    /// Whether a pull of `consumer` now would deliver something, on this replica's state:
    /// a waiting pull is proposed again only then, so an idle consumer writes nothing.
    pub fn consumer_has_work(&self, name: &str, consumer: &str, wall_ns: i64) -> bool {
        let Ok(id) = self.local_group(name) else { return false };
        let g = &self.streams[&id];
        !g.is_catching_up() && g.machine.consumer_has_work(consumer, wall_ns)
    }

    fn propose_timed(
        &mut self,
        now: MonoTime,
        wall_ns: i64,
        name: &str,
        make: impl FnOnce(i64) -> StreamEntry,
    ) -> Result<RequestId, ClientError> {
        self.check_capacity()?;
        let id = self.local_group(name)?;
        let request = self.next_request;
        let timeout = self.cfg.request_timeout;
        self.streams.get_mut(&id).expect("local group").propose_timed(now, wall_ns, make, request, timeout)?;
        self.accept_stream_request(now, id)
    }

    fn propose_stream_entry(
        &mut self,
        now: MonoTime,
        name: &str,
        entry: StreamEntry,
    ) -> Result<RequestId, ClientError> {
        self.check_capacity()?;
        let id = self.local_group(name)?;
        let request = self.next_request;
        let timeout = self.cfg.request_timeout;
        self.streams.get_mut(&id).expect("local group").propose_entry(now, entry, request, timeout)?;
        self.accept_stream_request(now, id)
    }

    fn accept_stream_request(&mut self, now: MonoTime, id: GroupId) -> Result<RequestId, ClientError> {
        let request = self.new_request();
        self.drive_stream(now, id);
        Ok(request)
    }

    /// Drives stream group `id` now, or at `end_batch` inside a batch.
    fn drive_stream(&mut self, now: MonoTime, id: GroupId) {
        if let Some(touched) = &mut self.batch {
            touched.insert(id);
            return;
        }
        if let Some(g) = self.streams.get_mut(&id) {
            g.pump(now, &mut self.outbox);
            self.collect_replies(id);
        }
    }

    // ----- batching -------------------------------------------------------------------

    /// Starts a batch: until `end_batch`, inputs for stream groups stage their Raft work
    /// without writing it. Keep a batch short and bounded (the production driver closes
    /// one after at most `EVENTS_PER_TURN` events): staged entries wait in memory, and
    /// Raft's uncommitted-entry limits refuse proposals beyond them.
    pub fn begin_batch(&mut self) {
        assert!(self.batch.is_none(), "batches do not nest");
        assert!(self.writes_held.is_empty(), "write_batch must follow end_batch");
        self.batch = Some(BTreeSet::new());
    }

    pub fn in_batch(&self) -> bool {
        self.batch.is_some()
    }

    /// Ends the batch, first half: drives every stream group it touched up to its log write
    /// (one per group for everything the batch staged) and holds that write. The frames
    /// that do not wait for it (a leader's appends) are in `poll_send` now: send them, then
    /// call `write_batch`, so followers write while this node does. A group with nothing
    /// to write is driven to the end here. Returns how many writes are held.
    pub fn end_batch(&mut self, now: MonoTime) -> usize {
        let touched = self.batch.take().expect("end_batch without begin_batch");
        for id in touched {
            // A group closed inside the batch (a reconcile) lost its staged work with it,
            // as a crash before the write would; nothing of it was sent or acknowledged.
            let Some(g) = self.streams.get_mut(&id) else { continue };
            if g.group.drive_to_write(now, &mut self.outbox) {
                self.writes_held.insert(id);
            } else {
                self.drive_stream(now, id);
            }
        }
        self.writes_held.len()
    }

    /// Ends the batch, second half: makes the held writes (one log write, and in durable
    /// mode one sync, per group), then finishes driving those groups: acknowledgements and
    /// votes that waited for the writes, commits, applies, replies.
    pub fn write_batch(&mut self, now: MonoTime) {
        for id in std::mem::take(&mut self.writes_held) {
            self.drive_stream(now, id);
        }
    }

    fn check_capacity(&self) -> Result<(), ClientError> {
        if self.outstanding >= self.cfg.requests_max {
            return Err(ClientError::Busy);
        }
        Ok(())
    }

    fn new_request(&mut self) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        self.outstanding += 1;
        id
    }

    fn reply(&mut self, request: RequestId, reply: Reply) {
        assert!(self.outstanding > 0, "a reply for request {request} that was never accepted");
        self.outstanding -= 1;
        self.replies.push_back((request, reply));
    }

    fn local_group(&self, name: &str) -> Result<GroupId, ClientError> {
        let def = self.meta_state.get(name).ok_or_else(|| ClientError::NoSuchStream { name: name.into() })?;
        if !def.peers.contains(&self.cfg.id) {
            return Err(ClientError::NotHere { peers: def.peers.clone() });
        }
        if !self.streams.contains_key(&def.group) {
            let reason = self.broken.get(&def.group).map_or("opening".to_string(), |(why, _)| why.clone());
            return Err(ClientError::Unavailable { reason });
        }
        Ok(def.group)
    }

    /// The streams the cluster holds, as this node's meta state knows them.
    pub fn streams(&self) -> Vec<StreamDef> {
        self.meta_state.streams().cloned().collect()
    }

    /// One stream's definition, as this node's meta state knows it.
    pub fn stream_def(&self, name: &str) -> Option<&StreamDef> {
        self.meta_state.get(name)
    }

    pub fn meta_leader(&self) -> Option<NodeId> {
        self.meta.raft.leader()
    }

    pub fn meta_role(&self) -> Role {
        self.meta.raft.role()
    }

    /// This node leads the meta group and has committed an entry of its own term, so every
    /// entry before that is known committed: `meta_commit_index` is the whole committed log.
    pub fn meta_leader_ready(&self) -> bool {
        self.meta.raft.is_leader_ready()
    }

    pub fn meta_commit_index(&self) -> Index {
        self.meta.raft.commit_index()
    }

    /// The meta group's applied index: the stream list changes only when it moves, so a
    /// runtime can cache what it derives from `streams()` until then.
    pub fn meta_applied_index(&self) -> Index {
        self.meta.raft.applied_index()
    }

    /// Makes every Raft log and every open replica's store durable: the periodic sync of
    /// the interval mode (`LogConfig::sync_appends` off, stores under the interval or
    /// on-snapshot policy) and the final one of a graceful shutdown. Returns what failed to
    /// sync (`"meta"` or a stream's name), with why; the rest is synced. A failed log sync
    /// latches that log failed, so its group stops at its next write and is reopened.
    pub fn sync_all(&mut self) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        let commit = self.meta.raft.commit_index();
        if let Err(e) = self.meta.storage.sync().and_then(|()| self.meta.storage.record_commit(commit)) {
            failed.push(("meta".to_string(), format!("raft log: {e}")));
        }
        for g in self.streams.values_mut() {
            let commit = g.group.raft.commit_index();
            if let Err(e) = g.group.storage.sync().and_then(|()| g.group.storage.record_commit(commit)) {
                failed.push((g.name().to_string(), format!("raft log: {e}")));
            }
            if let Err(e) = g.machine.sync() {
                failed.push((g.name().to_string(), e.to_string()));
                // The store latched: stop the replica now (the next tick closes and reopens
                // it), so no checkpoint out on another thread is adopted over it.
                g.fail(format!("store sync: {e}"));
            }
        }
        failed
    }

    /// Why the meta group stopped (a disk error), if it did; a restart recovers it.
    pub fn meta_failed(&self) -> Option<&str> {
        self.meta_failed.as_deref()
    }

    /// Stream info from this node's replica (a follower's may trail the leader's).
    pub fn stream_info(&self, name: &str) -> Result<NodeStreamInfo, ClientError> {
        let id = self.local_group(name)?;
        let g = &self.streams[&id];
        let r = &g.group.raft;
        Ok(NodeStreamInfo {
            group: id,
            peers: g.def.peers.clone(),
            leader: r.leader(),
            role: r.role(),
            term: r.term(),
            last_index: r.log().last_index(),
            commit_index: r.commit_index(),
            applied_index: r.applied_index(),
            stream: g.machine.info(),
            catchup_failures: g.catchup_failures(),
            damaged: r.is_damaged(),
            stats: GroupStats { log_writes: g.group.log_writes, ..g.stats },
        })
    }

    /// This replica's Raft state in stream `name`, without building a whole `stream_info`.
    pub fn replica_status(&self, name: &str) -> Result<ReplicaStatus, ClientError> {
        let g = &self.streams[&self.local_group(name)?];
        let r = &g.group.raft;
        Ok(ReplicaStatus {
            role: r.role(),
            leader: r.leader(),
            term: r.term(),
            last_index: r.log().last_index(),
            commit_index: r.commit_index(),
            applied_index: r.applied_index(),
            catching_up: g.machine.is_catching_up(),
            damaged: r.is_damaged(),
        })
    }

    /// This replica's Raft role in stream `name` and the leader it knows: what the driver
    /// needs on every request and waiting pull, without building a whole `stream_info`.
    pub fn stream_leader(&self, name: &str) -> Result<(Role, Option<NodeId>), ClientError> {
        let id = self.local_group(name)?;
        let r = &self.streams[&id].group.raft;
        Ok((r.role(), r.leader()))
    }

    /// Whether this replica leads stream `name` and has committed an entry of its own term.
    /// Only then is everything in its log known committed: after a restart no record claims
    /// the last entries, and a quiet stream applies them only once such a commit happens.
    pub fn stream_leader_ready(&self, name: &str) -> Result<bool, ClientError> {
        let id = self.local_group(name)?;
        Ok(self.streams[&id].group.raft.is_leader_ready())
    }

    /// The message at `seq` in this node's replica (`None`: deleted, purged or not yet
    /// applied here). Refused while the replica is catching up: its store has holes then.
    pub fn get_message(&self, name: &str, seq: u64) -> Result<Option<StoredMessage>, ClientError> {
        let id = self.local_group(name)?;
        let g = &self.streams[&id];
        if g.is_catching_up() {
            return Err(ClientError::Unavailable { reason: "replica is catching up".into() });
        }
        g.machine.get(seq).map_err(|e| ClientError::Unavailable { reason: e.to_string() })
    }

    /// A hash of the replica's state at its applied index (tests compare replicas). Reads
    /// the whole store, and asserts that the digests it keeps (if any) match it.
    pub fn stream_state_hash(&self, name: &str) -> Result<(Index, u64), ClientError> {
        let g = self.hashable_replica(name)?;
        let hash = g.machine.state_hash().map_err(|e| ClientError::Unavailable { reason: e.to_string() })?;
        Ok((g.group.raft.applied_index(), hash))
    }

    /// `stream_state_hash`, handing every message to `visit` in sequence order as it is read
    /// (the simulator's dumps: the contents and the check of the kept digests in one pass).
    /// Refuses a replica that is catching up, as `get_message` does: its store has a hole.
    pub fn stream_contents(&self, name: &str, visit: impl FnMut(&StoredMessage)) -> Result<(Index, u64), ClientError> {
        let g = self.hashable_replica(name)?;
        if g.is_catching_up() {
            return Err(ClientError::Unavailable { reason: "replica is catching up".into() });
        }
        let hash =
            g.machine.state_hash_visiting(visit).map_err(|e| ClientError::Unavailable { reason: e.to_string() })?;
        Ok((g.group.raft.applied_index(), hash))
    }

    /// One window of `stream_state_hash`'s check of the kept digests
    /// (`StreamMachine::verify_kept_digests`): where the next window starts, `None` after the
    /// last.
    pub fn stream_verify_kept(&self, name: &str, from_seq: u64, max_msgs: usize) -> Result<Option<u64>, ClientError> {
        let g = self.hashable_replica(name)?;
        g.machine
            .verify_kept_digests(from_seq, max_msgs)
            .map_err(|e| ClientError::Unavailable { reason: e.to_string() })
    }

    /// The same value as `stream_state_hash`, from the digests the replica keeps
    /// (`NodeConfig::keep_digests`) without reading its store; by reading it if it keeps none.
    pub fn stream_state_hash_cheap(&self, name: &str) -> Result<(Index, u64), ClientError> {
        let g = self.hashable_replica(name)?;
        match g.machine.state_hash_kept() {
            Some(hash) => Ok((g.group.raft.applied_index(), hash)),
            None => self.stream_state_hash(name),
        }
    }

    /// The replica of `name`, if its state can be hashed. A replica that stopped in the
    /// middle of an applied batch holds less than Raft's applied index says; it is closed and
    /// reopened at the next tick.
    fn hashable_replica(&self, name: &str) -> Result<&StreamGroup<D>, ClientError> {
        let g = &self.streams[&self.local_group(name)?];
        match &g.failed {
            Some(why) => Err(ClientError::Unavailable { reason: format!("replica stopped: {why}") }),
            None => Ok(g),
        }
    }

    /// Asks the stream's leader on this node to hand leadership to `target`.
    pub fn transfer_stream_leader(&mut self, now: MonoTime, name: &str, target: NodeId) -> Result<(), ClientError> {
        let id = self.local_group(name)?;
        let g = self.streams.get_mut(&id).expect("local group");
        g.group.raft.transfer_leadership(now, target).map_err(ClientError::from_propose)?;
        g.pump(now, &mut self.outbox);
        self.collect_replies(id);
        Ok(())
    }

    /// Forces a snapshot of the stream now (operators, tests): captured at once, written by
    /// the next `run_work`.
    pub fn force_snapshot(&mut self, now: MonoTime, name: &str) -> Result<(), ClientError> {
        let id = self.local_group(name)?;
        if self.work.len() >= WORK_QUEUE_MAX {
            return Err(ClientError::Busy);
        }
        let g = self.streams.get_mut(&id).expect("local group");
        let work = g.force_checkpoint(now).map_err(|e| ClientError::Unavailable { reason: e })?;
        self.work.push_back((id, self.incarnations[&id], WorkItem::Checkpoint(work)));
        Ok(())
    }

    pub fn check_invariants(&self) {
        self.meta.raft.check_invariants();
        for (id, g) in &self.streams {
            assert_eq!(*id, g.def.group);
            g.group.raft.check_invariants();
            g.machine.check_invariants();
            // A failed group stopped applying in the middle of a batch Raft already counts as
            // applied; its requests are answered when the next tick closes it.
            assert!(
                g.failed.is_some() || g.pending.first_index().is_none_or(|i| i > g.group.raft.applied_index()),
                "an applied request unanswered"
            );
        }
        let pending: usize = self.meta_pending.len() + self.streams.values().map(|g| g.pending.len()).sum::<usize>();
        assert!(pending <= self.outstanding, "{pending} pending requests, {} outstanding", self.outstanding);
    }

    // ----- meta group -----------------------------------------------------------------

    /// Runs the meta group's actions and applies what committed; `true` if the meta state
    /// changed (the caller then reconciles the replicas this node holds).
    fn pump_meta(&mut self, now: MonoTime) -> bool {
        self.meta.drive(now, &mut self.outbox);
        if let Some(e) = &self.meta.failed {
            if self.meta_failed.is_none() {
                self.meta_failed = Some(e.to_string());
                tracing::error!(node = self.cfg.id, error = %e, "meta group stopped");
            }
            return false;
        }
        let mut changed = false;
        while self.meta_failed.is_none() {
            let Some(applied) = self.meta.raft.poll_apply(APPLY_BATCH_ENTRIES) else { break };
            changed = true;
            match applied {
                Applied::Snapshot(s) => match MetaState::decode(&s.data) {
                    Ok(state) => {
                        self.meta_state = state;
                        self.meta_since_snapshot = 0;
                        self.scan_orphans = true;
                        for request in self.meta_pending.take_through(s.meta.last_index) {
                            self.reply(request, Reply::Failed(ClientError::OutcomeUnknown));
                        }
                    }
                    Err(e) => {
                        tracing::error!(node = self.cfg.id, error = %e, "meta snapshot unreadable; meta group stopped");
                        self.meta_failed = Some(e);
                    }
                },
                Applied::Entries(entries) => {
                    for e in entries {
                        self.meta_since_snapshot += 1;
                        let outcome = (e.kind == EntryKind::Normal).then(|| self.meta_state.apply(e.index, &e.data));
                        if let Some(MetaOutcome::Rejected { reason }) = &outcome {
                            tracing::debug!(index = e.index, %reason, "meta entry refused");
                        }
                        self.answer_meta(e.index, e.term, outcome);
                    }
                }
            }
        }
        changed
    }

    fn answer_meta(&mut self, index: Index, term: Term, outcome: Option<MetaOutcome>) {
        let Some((request, own)) = self.meta_pending.take(index, term) else { return };
        let reply = match outcome {
            Some(outcome) if own => match outcome {
                MetaOutcome::Created { group } | MetaOutcome::AlreadyExists { group } => Reply::StreamCreated { group },
                MetaOutcome::Deleted { group } => Reply::StreamDeleted { group },
                MetaOutcome::Rejected { reason } => Reply::Rejected { reason },
            },
            _ => Reply::Failed(ClientError::LeadershipLost),
        };
        self.reply(request, reply);
    }

    fn maybe_checkpoint_meta(&mut self, now: MonoTime) {
        if self.meta_failed.is_some() || self.meta_since_snapshot < self.cfg.snapshot.entries {
            return;
        }
        let force = self.meta.raft.should_force_checkpoint();
        let Ok(cp) = self.meta.raft.create_checkpoint(now, force) else { return };
        // The meta state is the snapshot: nothing else to make durable first.
        match self.meta.finish_checkpoint(now, &cp, Bytes::from(self.meta_state.encode())) {
            Ok(Some(_)) => self.meta_since_snapshot = 0,
            Ok(None) => {}
            Err(e) => tracing::warn!(node = self.cfg.id, error = %e, "meta checkpoint failed"),
        }
    }

    /// Opens the replicas the meta state places here, closes those it no longer lists.
    fn reconcile(&mut self, now: MonoTime) {
        let gone: Vec<GroupId> =
            self.streams.keys().copied().filter(|id| self.meta_state.by_group(*id).is_none()).collect();
        for id in gone {
            self.close_stream(id, now, false);
            if self.work_out.contains(&id) {
                continue; // its checkpoint I/O may still write there; `finish_work` rescans
            }
            if let Err(e) = StreamGroup::<D>::remove_files(&self.disk, &self.cfg, id) {
                tracing::warn!(group = id, error = %e, "files of a deleted stream not removed");
            }
        }
        self.broken.retain(|id, _| self.meta_state.by_group(*id).is_some());
        let wanted: Vec<StreamDef> = self
            .meta_state
            .streams()
            .filter(|d| d.peers.contains(&self.cfg.id) && !self.streams.contains_key(&d.group))
            .filter(|d| !self.work_out.contains(&d.group))
            .filter(|d| self.broken.get(&d.group).is_none_or(|(_, retry_at)| *retry_at <= now))
            .cloned()
            .collect();
        for def in wanted {
            let id = def.group;
            let jitter = self.jitter();
            let opened = StreamGroup::open(self.disk.clone(), &self.cfg, def, now, jitter);
            if let Err(e) = &opened {
                tracing::error!(group = id, error = %e, "stream replica failed to open; retrying later");
            }
            self.adopt_opened(now, id, opened);
        }
        if self.scan_orphans && self.meta.raft.applied_index() >= self.meta.raft.commit_index() {
            self.scan_orphans = false;
            self.remove_orphans();
        }
    }

    /// Takes in a replica just opened (or the reason it did not open: retried later).
    fn adopt_opened(&mut self, now: MonoTime, id: GroupId, opened: Result<(StreamGroup<D>, GroupRecovery), String>) {
        match opened {
            Ok((mut g, recovery)) => {
                tracing::info!(group = id, stream = %g.name(), ?recovery, "stream replica opened");
                self.broken.remove(&id);
                self.incarnations.insert(id, self.next_incarnation);
                self.next_incarnation += 1;
                g.pump(now, &mut self.outbox);
                self.streams.insert(id, g);
                self.collect_replies(id);
            }
            Err(e) => {
                self.broken.insert(id, (e, now + self.cfg.catchup_timeout));
            }
        }
    }

    /// Removes directories of streams this node no longer holds (deleted while it was down,
    /// or moved away in a snapshot). Only groups created at or below the applied meta index
    /// are judged: a newer one may be a create not yet applied here.
    fn remove_orphans(&mut self) {
        let dir = self.cfg.dir.join("streams");
        let Ok(names) = self.disk.list_dir(&dir) else { return };
        let applied = self.meta.raft.applied_index();
        for name in names {
            let Ok(id) = name.parse::<GroupId>() else { continue };
            let held = self.meta_state.by_group(id).is_some_and(|d| d.peers.contains(&self.cfg.id));
            if id <= applied && !held && !self.streams.contains_key(&id) && !self.work_out.contains(&id) {
                tracing::info!(group = id, "removing files of a stream this node no longer holds");
                if let Err(e) = StreamGroup::<D>::remove_files(&self.disk, &self.cfg, id) {
                    tracing::warn!(group = id, error = %e, "orphan stream files not removed");
                }
            }
        }
    }

    /// Closes a replica, failing its waiting requests; with `reopen`, it is opened again
    /// from disk after a delay (recovery replays its log).
    fn close_stream(&mut self, id: GroupId, now: MonoTime, reopen: bool) {
        let Some(mut g) = self.streams.remove(&id) else { return };
        self.incarnations.remove(&id);
        // Queued work of this incarnation would be dropped when reached; drop it now, so the
        // queue stays within a checkpoint and a cleanup per open group.
        self.work.retain(|(queued, _, _)| *queued != id);
        for request in g.pending.take_all() {
            g.replies.push_back((request, Reply::Failed(ClientError::OutcomeUnknown)));
        }
        while let Some((request, reply)) = g.replies.pop_front() {
            self.reply(request, reply);
        }
        if reopen {
            let why = g.failed.clone().unwrap_or_default();
            self.stats.groups_reopened += 1;
            self.broken.insert(id, (why, now + self.cfg.catchup_timeout));
        }
    }

    fn collect_replies(&mut self, id: GroupId) {
        let Some(g) = self.streams.get_mut(&id) else { return };
        let replies = std::mem::take(&mut g.replies);
        for (request, reply) in replies {
            self.reply(request, reply);
        }
    }

    fn jitter(&mut self) -> Duration {
        let max_ns = u64::try_from(self.cfg.snapshot.jitter.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(if max_ns == 0 { 0 } else { self.rng.gen_range(0..=max_ns) })
    }
}
