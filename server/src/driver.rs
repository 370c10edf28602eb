//! The node thread: owns the core `Node` on the real disk and clock, and is the only code
//! that calls it. Everything else talks to it through one bounded event queue.
//!
//! Why a thread of its own: the node is synchronous and does its disk work inline (appends,
//! fsyncs of the Raft log, checkpoints), so it runs on a dedicated OS thread with a
//! single-threaded tokio runtime for its timers and queues. The network and client tasks run
//! on the multi-threaded runtime and never wait on the disk.
//!
//! Each loop iteration: take one event (or wake for the next tick), drain up to
//! `EVENTS_PER_TURN` more without waiting, tick the node every `TICK` and retry parked
//! requests, all inside one node batch (`Node::begin_batch`), so a burst of publishes or
//! appends becomes one log write and one fsync per stream; send the frames that do not wait
//! for those writes (a leader's appends) before making them, so followers write in parallel;
//! then start queued background work (checkpoints) and flush frames to the links and answers
//! to their waiters. Checkpoint I/O runs here between turns (`--snapshot-mode inline`), or on
//! the checkpoint thread (`checkpoint.rs`, the default) while turns go on; finished work comes
//! back through its own channel and is taken back at the next turn. In interval mode (`--sync interval`) appends are not synced as written; every
//! Raft log and store is synced every `sync_interval` here instead.
//!
//! Requests the node cannot serve here are forwarded (see `ops.rs`): a write or a read goes
//! to the stream's leader (reads too, so a client reads what it was just acknowledged), a
//! stream create or delete to the meta leader. A request that finds no leader yet (a stream
//! just created, an election under way) is parked and retried every tick until its deadline.

use crate::checkpoint::{Worker, WORK_IN_FLIGHT_MAX};
use crate::cluster::{Inbound, Links, Tag};
use crate::ops::{
    self, BackupOp, BackupStart, ConsumerOp, ConsumerView, DeliveredMsg, ErrorCode, Op, OpResult, RestoreOp, StreamView,
};
use bytes::Bytes;
use sluice_core::env::{Clock, MonoTime, NodeId};
use sluice_core::node::{ClientError, Node, Reply, RequestId, StreamDef, Work};
use sluice_core::os::{OsClock, OsDisk};
use sluice_core::raft::Role;
use sluice_core::stream::consumer::Consumers;
use sluice_core::stream::{CatchupChunk, Publish};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Events taken per loop iteration before the node ticks and flushes.
const EVENTS_PER_TURN: usize = 1024;
const TICK: Duration = Duration::from_millis(10);
/// Requests parked waiting for a leader, at most.
const PARKED_MAX: usize = 16 * 1024;
/// Pulls waiting on this node (the consumer's leader) for a message, at most.
const PULLS_MAX: usize = 16 * 1024;
/// Most message bytes in one backup read, so its answer fits a forwarded reply
/// (`FRAME_BYTES_MAX`) with room for one largest message beyond it.
const BACKUP_CHUNK_BYTES_MAX: u64 = 1024 * 1024;
/// Requests forwarded to peers and not yet answered, at most.
const FORWARDED_MAX: usize = 64 * 1024;
/// The bound on the node's event queue (client requests and peer frames).
pub const EVENT_QUEUE: usize = 16 * 1024;

pub enum Event {
    Client {
        op: Op,
        reply: oneshot::Sender<OpResult>,
    },
    Peer(Inbound),
    /// Sync every store and stop; answered when done.
    Shutdown(oneshot::Sender<()>),
}

impl From<Inbound> for Event {
    fn from(f: Inbound) -> Event {
        Event::Peer(f)
    }
}

/// The streams' subject filters, published whenever the meta state moves, so the client
/// port can route a publish without asking the node thread.
pub type StreamSubjects = Arc<Vec<(String, Vec<String>)>>;

enum ReplyTo {
    Local(oneshot::Sender<OpResult>),
    Peer { node: NodeId, request: u64 },
}

/// Who a node request's reply goes to; for a create, the stream's name; for a consumer
/// create, the consumer's stream.
struct Waiter {
    to: ReplyTo,
    created: Option<String>,
    consumer_of: Option<String>,
}

/// A pull that found nothing to deliver: it waits here, on the consumer's leader, until the
/// consumer has something (`Node::consumer_has_work`) or its wait runs out. Nothing is
/// proposed meanwhile, so an idle consumer writes nothing to the log.
struct WaitingPull {
    stream: String,
    name: String,
    op: Op,
    hops: u8,
    to: ReplyTo,
    deadline: MonoTime,
}

struct Parked {
    op: Op,
    hops: u8,
    to: ReplyTo,
    deadline: MonoTime,
    why: String,
}

pub struct Driver {
    node: Node<OsDisk>,
    clock: OsClock,
    links: Links,
    me: NodeId,
    request_timeout: Duration,
    waiting: BTreeMap<RequestId, Waiter>,
    parked: VecDeque<Parked>,
    pulls: VecDeque<WaitingPull>,
    /// Forwarded requests: who to answer, by when, and for a create the stream's name.
    forwarded: BTreeMap<u64, (ReplyTo, MonoTime, Option<String>)>,
    /// Creates that succeeded elsewhere, answered once this node's meta state has the stream
    /// too, so the client's next publish through this node finds it.
    created_elsewhere: Vec<(String, ReplyTo, OpResult, MonoTime)>,
    next_forward: u64,
    subjects: watch::Sender<StreamSubjects>,
    subjects_at: Option<u64>,
    /// Interval mode: sync every Raft log and store this often (`None`: every append is
    /// synced as it is written).
    periodic_sync: Option<Duration>,
    /// Background snapshot mode: the checkpoint thread, and how much work it holds.
    worker: Option<Worker>,
    work_out: usize,
}

impl Driver {
    pub fn new(
        node: Node<OsDisk>,
        clock: OsClock,
        links: Links,
        subjects: watch::Sender<StreamSubjects>,
        periodic_sync: Option<Duration>,
        worker: Option<Worker>,
    ) -> Driver {
        let me = node.id();
        let request_timeout = node.config().request_timeout;
        Driver {
            node,
            clock,
            links,
            me,
            request_timeout,
            waiting: BTreeMap::new(),
            parked: VecDeque::new(),
            pulls: VecDeque::new(),
            forwarded: BTreeMap::new(),
            created_elsewhere: Vec::new(),
            next_forward: 1,
            subjects,
            subjects_at: None,
            periodic_sync,
            worker,
            work_out: 0,
        }
    }

    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        let mut next_tick = self.clock.now();
        let mut next_sync = self.clock.now() + self.periodic_sync.unwrap_or_default();
        loop {
            let wait = next_tick.saturating_since(self.clock.now());
            let mut finished = None;
            let first = tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => Some(ev),
                    None => return, // every sender dropped: the server is gone
                },
                work = Self::work_done(&mut self.worker) => {
                    finished = Some(work);
                    None
                }
                () = tokio::time::sleep(wait) => None,
            };
            let mut shutdown = None;
            // One batch per turn: every publish and append of the turn shares one log
            // write and one fsync per stream.
            self.node.begin_batch();
            for ev in first.into_iter().chain(std::iter::from_fn(|| events.try_recv().ok()).take(EVENTS_PER_TURN)) {
                match ev {
                    Event::Client { op, reply } => {
                        let deadline = self.clock.now() + self.request_timeout;
                        self.exec(op, ops::HOPS_MAX, ReplyTo::Local(reply), deadline);
                    }
                    Event::Peer(f) => self.peer_frame(f),
                    Event::Shutdown(done) => shutdown = Some(done),
                }
            }
            let now = self.clock.now();
            if !self.pulls.is_empty() {
                self.retry_pulls(now);
            }
            if now >= next_tick {
                self.node.tick(now, self.wall_ns());
                self.retry_parked(now);
                self.expire_forwarded(now);
                next_tick = now + TICK;
            }
            // The leader's appends leave before its own log write, so followers write in
            // parallel with it; what promises durability waits for the write.
            if self.node.end_batch(self.clock.now()) > 0 {
                self.flush();
            }
            self.node.write_batch(self.clock.now());
            if let Some(interval) = self.periodic_sync {
                if now >= next_sync {
                    for (what, why) in self.node.sync_all() {
                        tracing::error!(%what, %why, "periodic sync failed");
                    }
                    next_sync = now + interval;
                }
            }
            self.take_back_work(finished);
            self.start_work();
            self.publish_subjects();
            self.answer_created(self.clock.now());
            self.flush();
            if let Some(done) = shutdown {
                for (stream, why) in self.node.sync_all() {
                    tracing::error!(%stream, %why, "final sync failed");
                }
                tracing::info!("node stopped");
                let _ = done.send(());
                return;
            }
        }
    }

    /// The next piece of work the checkpoint thread finished (never, in inline mode).
    async fn work_done(worker: &mut Option<Worker>) -> Work<OsDisk> {
        match worker {
            Some(w) => match w.done.recv().await {
                Some(work) => work,
                None => std::future::pending().await, // the thread is gone; so is its work
            },
            None => std::future::pending().await,
        }
    }

    /// Finishes what the checkpoint thread handed back: `first` (what woke the loop) and
    /// whatever else is ready.
    fn take_back_work(&mut self, first: Option<Work<OsDisk>>) {
        let Some(worker) = &mut self.worker else { return };
        let rest = std::iter::from_fn(|| worker.done.try_recv().ok());
        let done: Vec<Work<OsDisk>> = first.into_iter().chain(rest).collect();
        for work in done {
            self.work_out -= 1;
            let (group, started) = (work.group(), self.clock.now());
            self.node.finish_work(started, work);
            node_thread_time(group, "finish", started, self.clock.now());
        }
    }

    /// Inline mode runs queued checkpoints here; background mode hands their I/O to the
    /// checkpoint thread, up to `WORK_IN_FLIGHT_MAX` at once.
    fn start_work(&mut self) {
        if self.worker.is_none() {
            // `Node::run_work`, spelt out so each half reads the clock (the checkpoint's log
            // line reports how long its I/O took).
            loop {
                let started = self.clock.now();
                let Some(work) = self.node.take_work(started) else { return };
                self.run_inline(work, started);
            }
        }
        while self.work_out < WORK_IN_FLIGHT_MAX {
            let started = self.clock.now();
            let Some(work) = self.node.take_work(started) else { return };
            node_thread_time(work.group(), "take", started, self.clock.now());
            let worker = self.worker.as_ref().expect("background mode");
            match worker.to_worker.try_send(work) {
                Ok(()) => self.work_out += 1,
                // Cannot happen while `work_out` bounds it; if the thread died, finish the
                // work here rather than lose its replica's checkpoint.
                Err(std::sync::mpsc::TrySendError::Full(work) | std::sync::mpsc::TrySendError::Disconnected(work)) => {
                    tracing::error!(group = work.group(), "checkpoint thread unavailable; running inline");
                    self.run_inline(work, started);
                }
            }
        }
    }

    /// Runs taken work here, between turns, and takes it back (`started`: when it was taken).
    fn run_inline(&mut self, mut work: Work<OsDisk>, started: MonoTime) {
        work.run();
        let group = work.group();
        self.node.finish_work(self.clock.now(), work);
        node_thread_time(group, "inline", started, self.clock.now());
    }

    fn wall_ns(&self) -> i64 {
        i64::try_from(self.clock.wall_ns()).unwrap_or(i64::MAX)
    }

    fn peer_frame(&mut self, f: Inbound) {
        let now = self.clock.now();
        match f.tag {
            Tag::Node => self.node.handle_frame(now, f.from, f.body),
            Tag::Forward => match ops::decode_forward(f.body) {
                Ok((request, hops, op)) => {
                    let deadline = now + self.request_timeout;
                    self.exec(op, hops, ReplyTo::Peer { node: f.from, request }, deadline);
                }
                Err(e) => tracing::warn!(from = f.from, error = %e, "bad forwarded request dropped"),
            },
            Tag::ForwardReply => match ops::decode_reply(f.body) {
                Ok((request, result)) => match self.forwarded.remove(&request) {
                    Some((to, deadline, Some(name)))
                        if matches!(result, OpResult::Stream(_)) && self.def(&name).is_none() =>
                    {
                        self.created_elsewhere.push((name, to, result, deadline));
                    }
                    Some((to, _, _)) => self.answer(to, result),
                    None => {}
                },
                Err(e) => tracing::warn!(from = f.from, error = %e, "bad forwarded reply dropped"),
            },
        }
    }

    /// Runs `op` here, forwards it, parks it, or answers it at once.
    fn exec(&mut self, op: Op, hops: u8, to: ReplyTo, deadline: MonoTime) {
        let now = self.clock.now();
        match self.try_exec(&op, now) {
            Step::Done(result) => self.answer(to, result),
            Step::Waiting(request) => {
                let created = op.created_stream().map(str::to_string);
                let consumer_of = op.consumer_stream().map(str::to_string);
                self.waiting.insert(request, Waiter { to, created, consumer_of });
            }
            Step::Pull { wait } => {
                let Op::Consumer { stream, op: ConsumerOp::Next { name, .. } } = &op else {
                    unreachable!("only pulls wait")
                };
                if self.pulls.len() >= PULLS_MAX {
                    return self.answer(to, OpResult::error(ErrorCode::Unavailable, "too many waiting pulls; retry"));
                }
                let (stream, name) = (stream.clone(), name.clone());
                self.pulls.push_back(WaitingPull { stream, name, op, hops, to, deadline: now + wait });
            }
            Step::Forward(node) if hops > 0 => self.forward(node, op, hops - 1, to),
            Step::Forward(node) => self
                .answer(to, OpResult::error(ErrorCode::Unavailable, format!("node {node} serves this; too many hops"))),
            Step::Retry(why) => {
                if now >= deadline || self.parked.len() >= PARKED_MAX {
                    self.answer(to, OpResult::error(ErrorCode::Unavailable, why));
                } else {
                    self.parked.push_back(Parked { op, hops, to, deadline, why });
                }
            }
        }
    }

    fn try_exec(&mut self, op: &Op, now: MonoTime) -> Step {
        match op {
            Op::CreateStream { config, replicas } => {
                if let Some(def) = self.def(&config.name) {
                    if def.config != *config {
                        return Step::Done(OpResult::error(
                            ErrorCode::NameInUse,
                            "stream name already in use with a different configuration",
                        ));
                    }
                    if def.peers.len() != usize::from(*replicas) {
                        return Step::Done(OpResult::error(
                            ErrorCode::NameInUse,
                            "stream exists with another replica count",
                        ));
                    }
                    return Step::Done(self.view(&def));
                }
                match self.node.create_stream(now, config.clone(), usize::from(*replicas)) {
                    Ok(r) => Step::Waiting(r),
                    Err(e) => self.meta_error(e),
                }
            }
            Op::DeleteStream { name } => match self.node.delete_stream(now, name) {
                Ok(r) => Step::Waiting(r),
                Err(e) => self.meta_error(e),
            },
            Op::Publish { stream, subject, msg_id, headers, payload, expected_last_seq } => {
                let publish = Publish {
                    timestamp_ns: 0,
                    msg_id: msg_id.clone(),
                    subject: subject.clone(),
                    headers: headers.clone(),
                    payload: payload.clone(),
                    expected_last_seq: *expected_last_seq,
                };
                match self.node.publish(now, self.wall_ns(), stream, publish) {
                    Ok(r) => Step::Waiting(r),
                    Err(e) => self.stream_error(e),
                }
            }
            Op::StreamInfo { name } | Op::GetMsg { name, .. } => {
                let Some(def) = self.def(name) else {
                    return Step::Done(OpResult::error(ErrorCode::NoSuchStream, "stream not found"));
                };
                if let Some(step) = self.unless_leader(name) {
                    return step;
                }
                match op {
                    Op::GetMsg { seq, .. } => self.read_here(name, *seq),
                    _ => Step::Done(self.view(&def)),
                }
            }
            Op::DirectGet { name, seq } => {
                if self.node.stream_def(name).is_none() {
                    return Step::Done(OpResult::error(ErrorCode::NoSuchStream, "stream not found"));
                }
                // This replica's own view, leader or not.
                self.read_here(name, *seq)
            }
            Op::Consumer { stream, op } => self.consumer_op(stream, op, now),
            Op::Backup { stream, op } => self.backup_op(stream, op),
            Op::Restore { stream, op, body } => self.restore_op(stream, op, body, now),
            Op::StreamNames => match self.node.meta_leader() {
                Some(l) if l != self.me => Step::Forward(l),
                None => Step::Retry("no meta leader yet".into()),
                Some(_) => {
                    let names = self.node.streams().into_iter().map(|d| d.config.name).take(ops::NAMES_MAX).collect();
                    Step::Done(OpResult::Names(names))
                }
            },
        }
    }

    /// `None` if this node leads stream `name`; else where the request goes instead.
    fn unless_leader(&self, name: &str) -> Option<Step> {
        match self.node.stream_leader(name) {
            Ok((Role::Leader, _)) => None,
            Ok((_, Some(l))) if l != self.me => Some(Step::Forward(l)),
            Ok(_) => Some(Step::Retry("the stream has no leader yet".into())),
            Err(e) => Some(self.stream_error(e)),
        }
    }

    fn consumer_op(&mut self, stream: &str, op: &ConsumerOp, now: MonoTime) -> Step {
        let Some(def) = self.def(stream) else {
            return Step::Done(OpResult::error(ErrorCode::NoSuchStream, "stream not found"));
        };
        // Reads and waits happen on the leader: it holds every applied ack and delivery.
        if let Some(step) = self.unless_leader(stream) {
            return step;
        }
        let wall = self.wall_ns();
        let result = match op {
            ConsumerOp::Create { config } => self.node.create_consumer(now, wall, stream, config.clone()),
            ConsumerOp::Delete { name } => {
                if let Some(step) = self.require_consumer(stream, name) {
                    return step;
                }
                self.node.delete_consumer(now, stream, name)
            }
            ConsumerOp::Info { name } => {
                return match self.consumer_view(&def, name) {
                    Some(view) => Step::Done(OpResult::Consumer(Box::new(view))),
                    None => Step::Done(OpResult::error(ErrorCode::NoSuchConsumer, "consumer not found")),
                };
            }
            ConsumerOp::Names => {
                return match self.node.consumer_names(stream) {
                    Ok(names) => Step::Done(OpResult::Names(names)),
                    Err(e) => self.stream_error(e),
                };
            }
            ConsumerOp::Next { name, batch, max_bytes, wait_ms } => {
                if let Some(step) = self.require_consumer(stream, name) {
                    return step;
                }
                if !self.node.consumer_has_work(stream, name, wall) {
                    // Nothing to deliver: wait, or answer none without writing an entry (an
                    // empty no-wait fetch would otherwise cost a log write and an fsync).
                    if *wait_ms == 0 {
                        return Step::Done(OpResult::Delivered { msgs: Vec::new(), num_pending: 0 });
                    }
                    return Step::Pull { wait: Duration::from_millis(u64::from(*wait_ms)) };
                }
                self.node.consumer_next(now, wall, stream, name, *batch, *max_bytes)
            }
            ConsumerOp::Ack { name, seq, kind } => {
                self.node.consumer_ack(now, wall, stream, name, *seq, (*kind).into())
            }
        };
        match result {
            Ok(r) => Step::Waiting(r),
            Err(e) => self.stream_error(e),
        }
    }

    /// A backup's reads, served by the stream's leader: it holds every committed message.
    fn backup_op(&mut self, stream: &str, op: &BackupOp) -> Step {
        let Some(def) = self.def(stream) else {
            return Step::Done(OpResult::error(ErrorCode::NoSuchStream, "stream not found"));
        };
        if let Some(step) = self.unless_leader(stream) {
            return step;
        }
        match op {
            BackupOp::Begin => {
                let (info, consumers) = match (self.node.stream_info(stream), self.node.consumer_names(stream)) {
                    (Ok(info), Ok(names)) => (info, names),
                    (Err(e), _) | (_, Err(e)) => return self.stream_error(e),
                };
                Step::Done(OpResult::BackupStart(Box::new(BackupStart {
                    config: def.config,
                    state: info.stream.state.into(),
                    replicas: u8::try_from(def.peers.len()).expect("at most 5 replicas"),
                    consumers,
                })))
            }
            BackupOp::Consumer { name } => match self.node.consumer_export(stream, name) {
                Ok(Some(bytes)) => Step::Done(OpResult::Blob(bytes.into())),
                Ok(None) => Step::Done(OpResult::error(ErrorCode::NoSuchConsumer, "consumer not found")),
                Err(e) => self.stream_error(e),
            },
            BackupOp::Chunk { from_seq, to_seq, max_bytes } => {
                let max_bytes = (*max_bytes).min(BACKUP_CHUNK_BYTES_MAX);
                match self.node.backup_chunk(stream, *from_seq, *to_seq, max_bytes) {
                    Ok(Some(chunk)) => Step::Done(OpResult::Blob(chunk.encode().into())),
                    Ok(None) => Step::Retry("the leader's replica does not hold that range yet".into()),
                    Err(e) => self.stream_error(e),
                }
            }
        }
    }

    /// A restore's writes: the create goes to the meta leader, the rest to the stream's.
    fn restore_op(&mut self, stream: &str, op: &RestoreOp, body: &Bytes, now: MonoTime) -> Step {
        let result = match op {
            RestoreOp::Begin { config, replicas } => {
                if config.name != stream {
                    return Step::Done(OpResult::error(ErrorCode::BadRequest, "stream name and config name differ"));
                }
                if self.def(stream).is_some() {
                    return Step::Done(OpResult::error(
                        ErrorCode::NameInUse,
                        "stream exists; a restore does not write into an existing stream",
                    ));
                }
                return match self.node.restore_stream(now, config.clone(), usize::from(*replicas)) {
                    Ok(r) => Step::Waiting(r),
                    Err(e) => self.meta_error(e),
                };
            }
            RestoreOp::Abandon { group } => {
                return match self.node.abandon_restore(now, stream, *group) {
                    Ok(r) => Step::Waiting(r),
                    Err(e) => self.meta_error(e),
                };
            }
            RestoreOp::Chunk { group } | RestoreOp::Consumer { group } => {
                // Only into the stream this restore created: not one made since under the name.
                if self.def(stream).is_none_or(|d| d.group != *group) {
                    return Step::Done(OpResult::error(
                        ErrorCode::NoSuchStream,
                        "stream not found (or not the one this restore created)",
                    ));
                }
                if let Some(step) = self.unless_leader(stream) {
                    return step;
                }
                // Checked here too, so garbage is refused before it is proposed and logged.
                let valid = match op {
                    RestoreOp::Chunk { .. } => CatchupChunk::decode(body).map(drop).map_err(|e| e.to_string()),
                    _ => Consumers::new().import(body).map(drop),
                };
                if let Err(e) = valid {
                    return Step::Done(OpResult::error(ErrorCode::BadRequest, format!("restore body: {e}")));
                }
                if matches!(op, RestoreOp::Chunk { .. }) {
                    self.node.restore_chunk(now, self.wall_ns(), stream, body.clone())
                } else {
                    self.node.restore_consumer(now, stream, body.clone())
                }
            }
        };
        match result {
            Ok(r) => Step::Waiting(r),
            Err(e) => self.stream_error(e),
        }
    }

    fn require_consumer(&self, stream: &str, name: &str) -> Option<Step> {
        match self.node.consumer_info(stream, name) {
            Ok(Some(_)) => None,
            Ok(None) => Some(Step::Done(OpResult::error(ErrorCode::NoSuchConsumer, "consumer not found"))),
            Err(e) => Some(self.stream_error(e)),
        }
    }

    fn consumer_view(&self, def: &StreamDef, name: &str) -> Option<ConsumerView> {
        let info = self.node.consumer_info(&def.config.name, name).ok().flatten()?;
        let leader = self.node.stream_leader(&def.config.name).ok().and_then(|(_, l)| l);
        Some(ConsumerView { stream: def.config.name.clone(), info, leader, peers: def.peers.clone() })
    }

    /// Releases waiting pulls whose consumer now has something (one per consumer per turn:
    /// the others would find nothing) and answers those whose wait ran out with nothing.
    fn retry_pulls(&mut self, now: MonoTime) {
        let mut released = std::collections::BTreeSet::new();
        let wall = self.wall_ns();
        for _ in 0..self.pulls.len() {
            let p = self.pulls.pop_front().expect("counted");
            if now >= p.deadline {
                self.answer(p.to, OpResult::Delivered { msgs: Vec::new(), num_pending: 0 });
                continue;
            }
            let key = (p.stream.clone(), p.name.clone());
            let leader_here = self.node.stream_leader(&p.stream).is_ok_and(|(role, _)| role == Role::Leader);
            let ready = !leader_here || self.node.consumer_has_work(&p.stream, &p.name, wall);
            if !ready || released.contains(&key) {
                self.pulls.push_back(p);
                continue;
            }
            released.insert(key);
            // What is left of its wait goes with it, in case the pull finds nothing after all.
            let mut op = p.op;
            if let Op::Consumer { op: ConsumerOp::Next { wait_ms, .. }, .. } = &mut op {
                *wait_ms = u32::try_from(p.deadline.saturating_since(now).as_millis()).unwrap_or(u32::MAX).max(1);
            }
            self.exec(op, p.hops, p.to, p.deadline);
        }
    }

    /// Message `seq` from this node's replica. A node that holds none forwards to one that
    /// does; a replica catching up (its store has holes) makes the request wait.
    fn read_here(&self, name: &str, seq: u64) -> Step {
        match self.node.get_message(name, seq) {
            Ok(Some(m)) => Step::Done(OpResult::Message(m)),
            Ok(None) => Step::Done(OpResult::error(ErrorCode::NoSuchMessage, "no message found")),
            Err(e) => self.stream_error(e),
        }
    }

    fn meta_error(&self, e: ClientError) -> Step {
        match e {
            ClientError::NotLeader { leader: Some(l) } if l != self.me => Step::Forward(l),
            other => self.common_error(other),
        }
    }

    fn stream_error(&self, e: ClientError) -> Step {
        match e {
            ClientError::NotLeader { leader: Some(l) } if l != self.me => Step::Forward(l),
            // No replica here: ask one (it forwards on to its leader if it must).
            ClientError::NotHere { peers } => match peers.first() {
                Some(&p) => Step::Forward(p),
                None => Step::Done(OpResult::error(ErrorCode::Unavailable, "stream has no replicas")),
            },
            other => self.common_error(other),
        }
    }

    /// Refusals that may pass (no leader yet, busy) are retried; the rest are the answer.
    fn common_error(&self, e: ClientError) -> Step {
        match e {
            ClientError::NotLeader { .. } | ClientError::Unavailable { .. } | ClientError::Busy => {
                Step::Retry(e.to_string())
            }
            other => Step::Done(client_error(other)),
        }
    }

    fn def(&self, name: &str) -> Option<StreamDef> {
        self.node.stream_def(name).cloned()
    }

    /// The stream as this node's replica sees it (counts zero where it holds none).
    fn view(&self, def: &StreamDef) -> OpResult {
        let mut v = StreamView {
            config: def.config.clone(),
            group: def.group,
            peers: def.peers.clone(),
            leader: None,
            first_seq: 0,
            last_seq: 0,
            msgs: 0,
            bytes: 0,
            num_deleted: 0,
            first_ts_ns: 0,
            last_ts_ns: 0,
            consumers: 0,
        };
        if let Ok(info) = self.node.stream_info(&def.config.name) {
            let s = info.stream.state;
            v.leader = info.leader;
            v.consumers = self.node.consumer_names(&def.config.name).map_or(0, |n| n.len() as u64);
            (v.first_seq, v.last_seq, v.msgs, v.bytes, v.num_deleted) =
                (s.first_seq, s.last_seq, s.msgs, s.bytes, s.num_deleted);
            let ts = |seq| self.node.get_message(&def.config.name, seq).ok().flatten().map_or(0, |m| m.timestamp_ns);
            if s.msgs > 0 {
                v.first_ts_ns = ts(s.first_seq);
                v.last_ts_ns = ts(s.last_seq);
            }
        }
        OpResult::Stream(Box::new(v))
    }

    fn forward(&mut self, node: NodeId, op: Op, hops: u8, to: ReplyTo) {
        if self.forwarded.len() >= FORWARDED_MAX {
            return self.answer(to, OpResult::error(ErrorCode::Unavailable, "too many forwarded requests; retry"));
        }
        let id = self.next_forward;
        self.next_forward += 1;
        let created = op.created_stream().map(str::to_string);
        if !self.links.send(node, Tag::Forward, ops::encode_forward(id, hops, &op)) {
            return self.answer(to, OpResult::error(ErrorCode::Unavailable, format!("link to node {node} is full")));
        }
        // The peer answers within its own request timeout; allow for the trip both ways.
        let deadline = self.clock.now() + self.request_timeout * 2;
        self.forwarded.insert(id, (to, deadline, created));
    }

    fn retry_parked(&mut self, now: MonoTime) {
        for _ in 0..self.parked.len() {
            let p = self.parked.pop_front().expect("counted");
            if now >= p.deadline {
                self.answer(p.to, OpResult::error(ErrorCode::Unavailable, p.why));
                continue;
            }
            self.exec(p.op, p.hops, p.to, p.deadline);
        }
    }

    fn answer_created(&mut self, now: MonoTime) {
        if self.created_elsewhere.is_empty() {
            return;
        }
        for (name, to, result, deadline) in std::mem::take(&mut self.created_elsewhere) {
            // Past the deadline the create still succeeded: answer, the stream just has not
            // reached this node's meta state yet.
            if self.def(&name).is_some() || now >= deadline {
                self.answer(to, result);
            } else {
                self.created_elsewhere.push((name, to, result, deadline));
            }
        }
    }

    fn expire_forwarded(&mut self, now: MonoTime) {
        let expired: Vec<u64> = self.forwarded.iter().filter(|(_, (_, d, _))| now >= *d).map(|(id, _)| *id).collect();
        for id in expired {
            let (to, _, _) = self.forwarded.remove(&id).expect("listed");
            self.answer(
                to,
                OpResult::error(ErrorCode::Unavailable, "forwarded request timed out; it may still take effect"),
            );
        }
    }

    fn publish_subjects(&mut self) {
        let at = self.node.meta_applied_index();
        if self.subjects_at == Some(at) {
            return;
        }
        self.subjects_at = Some(at);
        let list: Vec<(String, Vec<String>)> =
            self.node.streams().into_iter().map(|d| (d.config.name, d.config.subjects)).collect();
        self.subjects.send_replace(Arc::new(list));
    }

    fn flush(&mut self) {
        while let Some((to, frame)) = self.node.poll_send() {
            self.links.send(to, Tag::Node, frame);
        }
        while let Some((request, reply)) = self.node.poll_reply() {
            let Some(Waiter { to, created, consumer_of }) = self.waiting.remove(&request) else { continue };
            let result = match reply {
                Reply::Published { seq, duplicate } => OpResult::Published { seq, duplicate },
                Reply::StreamDeleted { .. } => OpResult::Deleted,
                // The stream the entry created, by group: a restore's clean-up names it.
                Reply::StreamCreated { group } => match created.as_deref().and_then(|name| self.def(name)) {
                    Some(def) if def.group == group => self.view(&def),
                    _ => OpResult::error(ErrorCode::Unavailable, "created and deleted again"),
                },
                Reply::ConsumerCreated { name } => {
                    match consumer_of.as_deref().and_then(|s| self.def(s)).and_then(|d| self.consumer_view(&d, &name)) {
                        Some(view) => OpResult::Consumer(Box::new(view)),
                        None => OpResult::error(ErrorCode::Unavailable, "consumer created and deleted again"),
                    }
                }
                Reply::ConsumerDeleted { .. } => OpResult::Deleted,
                Reply::Delivered { deliveries, num_pending } => OpResult::Delivered {
                    msgs: deliveries
                        .into_iter()
                        .map(|d| DeliveredMsg {
                            message: d.message,
                            consumer_seq: d.consumer_seq,
                            deliveries: d.deliveries,
                        })
                        .collect(),
                    num_pending,
                },
                Reply::Acked { .. } => OpResult::Acked,
                Reply::Restored { last_seq, stored, expired } => OpResult::Restored { last_seq, stored, expired },
                Reply::Rejected { reason } => OpResult::error(ErrorCode::Rejected, reason),
                Reply::Failed(e) => client_error(e),
                other => OpResult::error(ErrorCode::Unavailable, format!("unexpected reply {other:?}")),
            };
            self.answer(to, result);
        }
    }

    fn answer(&mut self, to: ReplyTo, result: OpResult) {
        match to {
            ReplyTo::Local(tx) => {
                let _ = tx.send(result); // the client may have gone
            }
            ReplyTo::Peer { node, request } => {
                self.links.send(node, Tag::ForwardReply, ops::encode_reply(request, &result));
            }
        }
    }
}

enum Step {
    Done(OpResult),
    Waiting(RequestId),
    /// A pull with nothing to deliver yet: wait on this node up to `wait`.
    Pull {
        wait: Duration,
    },
    Forward(NodeId),
    Retry(String),
}

/// A client error as the API reports it (whether the node refused at once or replied later).
fn client_error(e: ClientError) -> OpResult {
    match e {
        ClientError::NoSuchStream { .. } => OpResult::error(ErrorCode::NoSuchStream, "stream not found"),
        ClientError::InvalidRequest { reason } => OpResult::error(ErrorCode::BadRequest, reason),
        other => OpResult::error(ErrorCode::Unavailable, other.to_string()),
    }
}

/// What a checkpoint costs the node thread (publishes wait behind it): one debug line per
/// part (`take` and `finish` in background mode, `inline` for the whole in inline mode), for
/// `bench/snapshot-stalls`.
fn node_thread_time(group: u64, part: &str, from: MonoTime, to: MonoTime) {
    let us = to.saturating_since(from).as_micros() as u64;
    tracing::debug!(target: "sluice::checkpoint", group, part, node_thread_us = us, "checkpoint work on the node thread");
}
