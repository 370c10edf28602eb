//! A deterministic, in-process cluster of full sluice nodes (`core::node`: meta group,
//! stream replicas, checkpoints, catch-up) on faultfs disks, without madsim: a seeded RNG
//! decides everything. The network delays, drops and reorders frames; nodes crash (a faultfs
//! crash mode is applied to their disk: unsynced writes dropped, torn or reordered), restart
//! and recover; background work (checkpoints) runs after seeded delays.
//!
//! A client publishes messages with unique ids and retries anything not acknowledged with
//! the same id. Checked during the run: a sequence is never acknowledged for two ids, an id
//! is never acknowledged at two sequences. Checked at the end, after a liveness phase (faults
//! off, every node up): every replica converges to the same state; every acknowledged
//! publish is stored at its sequence on every replica; no id is stored twice.
//!
//! Fault budget: at most a minority of nodes is down at once (R = 3 claims to survive one).
//! This is the precursor of issue 4's simulator; see docs/node.md.

use crate::cluster::node_config;
pub use crate::raft_cluster::Violation;
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_core::env::{MonoTime, NodeId};
use sluice_core::format::fnv::Fnv64;
use sluice_core::node::{ClientError, Node, Reply, RequestId};
use sluice_core::raft::Role;
use sluice_core::store::SyncPolicy;
use sluice_core::stream::{Publish, StreamConfig};
use sluice_faultfs::FaultFs;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const STREAM: &str = "s";
const STEP: Duration = Duration::from_millis(10);

#[derive(Clone, Debug)]
pub struct NodeClusterParams {
    pub seed: u64,
    pub nodes: usize,
    pub steps: usize,
    pub drop_ppm: u32,
    pub latency_max_ms: u64,
    pub crash_ppm: u32,
    /// Chance per step of cutting one node off the network (counts toward the budget).
    pub isolate_ppm: u32,
    pub publish_ppm: u32,
    /// Snapshot after this many applied entries.
    pub snapshot_entries: u64,
    pub sync: SyncPolicy,
    /// Probability per step that queued background work runs.
    pub work_ppm: u32,
    /// Rate at which the nodes' BUGGIFY sites fire (e.g. a failed catch-up asks for a newer
    /// snapshot at once instead of after whole rounds).
    pub buggify_ppm: u32,
}

impl NodeClusterParams {
    pub fn from_seed(seed: u64, steps: usize) -> NodeClusterParams {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e0d_e5ee);
        NodeClusterParams {
            seed,
            nodes: if seed % 3 == 2 { 5 } else { 3 },
            steps,
            drop_ppm: [0, 20_000, 100_000][rng.gen_range(0..3)],
            latency_max_ms: [5, 40, 150][rng.gen_range(0..3)],
            crash_ppm: [2_000, 8_000][rng.gen_range(0..2)],
            isolate_ppm: [0, 3_000][rng.gen_range(0..2)],
            publish_ppm: [300_000, 800_000][rng.gen_range(0..2)],
            snapshot_entries: [16, 64, 100_000][rng.gen_range(0..3)],
            sync: if rng.gen_bool(0.5) { SyncPolicy::OnSnapshot } else { SyncPolicy::Always },
            work_ppm: [100_000, 900_000][rng.gen_range(0..2)],
            buggify_ppm: [0, 300_000][rng.gen_range(0..2)],
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct NodeRunStats {
    pub acked: usize,
    pub crashes: usize,
    pub snapshots_restored: u64,
    pub catchups_completed: u64,
    /// Catch-ups that asked the leader for a newer snapshot.
    pub snapshot_requests: u64,
    pub compactions: u64,
    pub trace_hash: u64,
}

struct Frame {
    deliver_at: MonoTime,
    from: NodeId,
    to: NodeId,
    bytes: Bytes,
}

pub struct NodeCluster {
    params: NodeClusterParams,
    rng: ChaCha8Rng,
    now: MonoTime,
    wall_ns: i64,
    disks: Vec<FaultFs>,
    nodes: Vec<Option<Node<FaultFs>>>,
    down_until: Vec<MonoTime>,
    net: Vec<Frame>,
    faults_on: bool,
    /// A node cut off from every other, until a time.
    isolated: Option<(NodeId, MonoTime)>,
    /// Ids not yet acknowledged (retried with the same id until they are).
    unacked: BTreeSet<u64>,
    next_id: u64,
    /// Requests in flight: (node, request) → id.
    in_flight: BTreeMap<(NodeId, RequestId), u64>,
    /// The history: seq → id, id → seq.
    acked_seq: BTreeMap<u64, u64>,
    acked_id: BTreeMap<u64, u64>,
    leader_hint: Option<NodeId>,
    /// Replies to requests other than publishes (the stream's create).
    other_replies: BTreeMap<(NodeId, RequestId), Reply>,
    stats: NodeRunStats,
    trace: Fnv64,
}

impl NodeCluster {
    pub fn new(params: NodeClusterParams) -> NodeCluster {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let disks: Vec<FaultFs> = (0..params.nodes).map(|_| FaultFs::new(rng.gen())).collect();
        NodeCluster {
            nodes: (0..params.nodes).map(|_| None).collect(),
            down_until: vec![MonoTime::ZERO; params.nodes],
            disks,
            rng,
            now: MonoTime::from_nanos(1_000_000_000),
            wall_ns: 1_700_000_000_000_000_000,
            net: Vec::new(),
            faults_on: true,
            isolated: None,
            unacked: BTreeSet::new(),
            next_id: 1,
            in_flight: BTreeMap::new(),
            acked_seq: BTreeMap::new(),
            acked_id: BTreeMap::new(),
            leader_hint: None,
            other_replies: BTreeMap::new(),
            stats: NodeRunStats::default(),
            trace: Fnv64::new(),
            params,
        }
    }

    fn violation(&self, step: usize, what: String) -> Violation {
        Violation { seed: self.params.seed, step, what }
    }

    fn chance(&mut self, ppm: u32) -> bool {
        self.rng.gen_range(0..1_000_000) < ppm
    }

    fn start(&mut self, i: usize, step: usize) -> Result<(), Violation> {
        let p = &self.params;
        let cfg = node_config(i as u64 + 1, p.nodes, p.seed, p.buggify_ppm, p.snapshot_entries);
        let node = Node::open(self.disks[i].clone(), cfg, self.now)
            .map_err(|e| self.violation(step, format!("n{} failed to open: {e}", i + 1)))?;
        self.nodes[i] = Some(node);
        Ok(())
    }

    pub fn run(mut self) -> Result<NodeRunStats, Violation> {
        for i in 0..self.params.nodes {
            self.start(i, 0)?;
        }
        self.create_stream()?;
        for step in 0..self.params.steps {
            self.step(step)?;
        }
        // Liveness phase: faults off, everyone up, outstanding ids retried until acked.
        self.faults_on = false;
        let end = self.params.steps;
        for i in 0..self.params.nodes {
            if self.nodes[i].is_none() {
                self.start(i, end)?;
            }
        }
        let mut settled = false;
        for step in end..end + 6_000 {
            self.step(step)?;
            if self.unacked.is_empty() && self.in_flight.is_empty() && self.converged() {
                settled = true;
                break;
            }
        }
        if !settled {
            return Err(
                self.violation(end, format!("no convergence with faults off: {} ids unacked", self.unacked.len()))
            );
        }
        self.check_final(end)?;
        for n in self.nodes.iter().flatten() {
            if let Ok(info) = n.stream_info(STREAM) {
                self.stats.snapshots_restored += info.stats.snapshots_restored;
                self.stats.catchups_completed += info.stats.catchups_completed;
                self.stats.snapshot_requests += info.stats.snapshot_requests;
                self.stats.compactions += info.stats.compactions;
            }
        }
        self.stats.acked = self.acked_seq.len();
        self.stats.trace_hash = self.trace.finish();
        Ok(self.stats)
    }

    fn create_stream(&mut self) -> Result<(), Violation> {
        let mut config = StreamConfig::new(STREAM, [format!("{STREAM}.>")]);
        config.store.sync = self.params.sync;
        config.store.block_size_bytes = 1024;
        for step in 0..3_000 {
            let now = self.now;
            let mut accepted = None;
            for n in self.nodes.iter_mut().flatten() {
                if n.meta_role() == Role::Leader {
                    if let Ok(req) = n.create_stream(now, config.clone(), 3) {
                        accepted = Some((n.id(), req));
                    }
                }
            }
            if let Some(key) = accepted {
                for _ in 0..1_000 {
                    self.step_quiet(step)?;
                    if let Some(reply) = self.other_replies.remove(&key) {
                        return match reply {
                            Reply::StreamCreated { .. } => Ok(()),
                            other => Err(self.violation(step, format!("create: {other:?}"))),
                        };
                    }
                }
            }
            self.step_quiet(step)?;
        }
        Err(self.violation(0, "stream never created".into()))
    }

    /// One step without faults or client traffic (setup).
    fn step_quiet(&mut self, step: usize) -> Result<(), Violation> {
        let on = std::mem::replace(&mut self.faults_on, false);
        self.advance(step)?;
        self.faults_on = on;
        Ok(())
    }

    fn step(&mut self, step: usize) -> Result<(), Violation> {
        if self.faults_on {
            self.nemesis(step)?;
        }
        self.client(step);
        self.advance(step)?;
        self.collect(step)
    }

    fn advance(&mut self, step: usize) -> Result<(), Violation> {
        self.now = self.now + STEP;
        self.wall_ns += STEP.as_nanos() as i64;
        let (now, wall) = (self.now, self.wall_ns);
        for i in 0..self.nodes.len() {
            let run_work = !self.faults_on || self.chance(self.params.work_ppm);
            let Some(node) = self.nodes[i].as_mut() else { continue };
            node.tick(now, wall);
            if run_work {
                node.run_work(now);
            }
        }
        self.deliver(step)
    }

    fn deliver(&mut self, step: usize) -> Result<(), Violation> {
        for _ in 0..64 {
            // Frames produced this round.
            for i in 0..self.nodes.len() {
                let Some(node) = self.nodes[i].as_mut() else { continue };
                let mut out = Vec::new();
                while let Some(f) = node.poll_send() {
                    out.push(f);
                }
                for (to, bytes) in out {
                    if self.faults_on && self.chance(self.params.drop_ppm) {
                        continue;
                    }
                    let latency_ms =
                        if self.faults_on { self.rng.gen_range(0..=self.params.latency_max_ms) } else { 1 };
                    let deliver_at = self.now + Duration::from_millis(latency_ms);
                    self.net.push(Frame { deliver_at, from: i as u64 + 1, to, bytes });
                }
            }
            // Deliver what is due, in delivery-time order (ties: send order).
            let due: Vec<usize> = (0..self.net.len()).filter(|&k| self.net[k].deliver_at <= self.now).collect();
            if due.is_empty() {
                return Ok(());
            }
            let mut frames: Vec<Frame> = Vec::new();
            for k in due.into_iter().rev() {
                frames.push(self.net.remove(k));
            }
            frames.reverse();
            frames.sort_by_key(|f| f.deliver_at);
            for f in frames {
                let cut = self.isolated.is_some_and(|(n, _)| n == f.from || n == f.to);
                if cut && self.faults_on {
                    continue;
                }
                let Some(node) = self.nodes.get_mut(f.to as usize - 1).and_then(Option::as_mut) else { continue };
                node.handle_frame(self.now, f.from, f.bytes);
                node.check_invariants();
            }
            self.collect(step)?;
        }
        Ok(())
    }

    fn nemesis(&mut self, step: usize) -> Result<(), Violation> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() && self.now >= self.down_until[i] {
                self.trace.write(format!("{step} restart n{}\n", i + 1).as_bytes());
                self.start(i, step)?;
            }
        }
        if self.isolated.is_some_and(|(_, until)| self.now >= until) {
            self.trace.write(format!("{step} heal\n").as_bytes());
            self.isolated = None;
        }
        let down = self.nodes.iter().filter(|n| n.is_none()).count() + usize::from(self.isolated.is_some());
        let minority = (self.params.nodes - 1) / 2;
        if down < minority && self.chance(self.params.isolate_ppm) {
            // Favour the stream's leader: its uncommitted proposals are then overwritten.
            let leader =
                self.nodes.iter().flatten().find(|n| n.stream_info(STREAM).is_ok_and(|i| i.role == Role::Leader));
            let victim = match leader {
                Some(n) if self.rng.gen_bool(0.7) => n.id(),
                _ => self.rng.gen_range(1..=self.params.nodes as u64),
            };
            let until = self.now + Duration::from_millis(self.rng.gen_range(500..3_000));
            self.trace.write(format!("{step} isolate n{victim}\n").as_bytes());
            self.isolated = Some((victim, until));
            return Ok(());
        }
        if down < minority && self.chance(self.params.crash_ppm) {
            let i = self.rng.gen_range(0..self.nodes.len());
            if self.nodes[i].is_some() {
                self.nodes[i] = None;
                let report = self.disks[i].crash();
                self.trace.write(format!("{step} crash n{} {report}\n", i + 1).as_bytes());
                self.down_until[i] = self.now + Duration::from_millis(self.rng.gen_range(10..2_000));
                self.stats.crashes += 1;
                // Requests in flight to it are lost; their ids are retried.
                self.in_flight.retain(|(node, _), id| {
                    if *node == i as u64 + 1 {
                        self.unacked.insert(*id);
                        false
                    } else {
                        true
                    }
                });
            }
        }
        Ok(())
    }

    fn client(&mut self, step: usize) {
        let _ = step;
        if !self.chance(self.params.publish_ppm) || self.in_flight.len() >= 32 {
            return;
        }
        // Retry the oldest unacknowledged id not in flight, else a new one (during faults).
        let busy: BTreeSet<u64> = self.in_flight.values().copied().collect();
        let id = match self.unacked.iter().find(|id| !busy.contains(id)) {
            Some(id) => *id,
            None if self.faults_on => {
                let id = self.next_id;
                self.next_id += 1;
                self.unacked.insert(id);
                id
            }
            None => return,
        };
        let live: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].is_some()).collect();
        if live.is_empty() {
            return;
        }
        let target = match self.leader_hint {
            Some(l) if self.nodes[l as usize - 1].is_some() => l as usize - 1,
            _ => live[self.rng.gen_range(0..live.len())],
        };
        let publish = Publish {
            timestamp_ns: 0,
            msg_id: Bytes::from(format!("id-{id}")),
            subject: Bytes::from(format!("{STREAM}.x")),
            headers: Bytes::new(),
            payload: Bytes::from(format!("payload-{id}")),
            expected_last_seq: None,
        };
        let (now, wall) = (self.now, self.wall_ns);
        let node = self.nodes[target].as_mut().expect("live");
        match node.publish(now, wall, STREAM, publish) {
            Ok(req) => {
                self.in_flight.insert((target as u64 + 1, req), id);
            }
            Err(ClientError::NotLeader { leader }) => self.leader_hint = leader,
            Err(_) => self.leader_hint = None,
        }
    }

    fn collect(&mut self, step: usize) -> Result<(), Violation> {
        for i in 0..self.nodes.len() {
            let Some(node) = self.nodes[i].as_mut() else { continue };
            let mut replies = Vec::new();
            while let Some(r) = node.poll_reply() {
                replies.push(r);
            }
            for (req, reply) in replies {
                let Some(id) = self.in_flight.remove(&(i as u64 + 1, req)) else {
                    self.other_replies.insert((i as u64 + 1, req), reply);
                    continue;
                };
                match reply {
                    Reply::Published { seq, duplicate } => {
                        self.trace.write(format!("{step} ack id-{id} seq {seq} dup {duplicate}\n").as_bytes());
                        if let Some(other) = self.acked_seq.get(&seq).filter(|other| **other != id) {
                            return Err(
                                self.violation(step, format!("seq {seq} acknowledged for id-{other} and id-{id}"))
                            );
                        }
                        if let Some(prev) = self.acked_id.get(&id).filter(|prev| **prev != seq) {
                            return Err(self.violation(step, format!("id-{id} acknowledged at seq {prev} and {seq}")));
                        }
                        self.acked_seq.insert(seq, id);
                        self.acked_id.insert(id, seq);
                        self.unacked.remove(&id);
                    }
                    Reply::Rejected { reason } => {
                        return Err(self.violation(step, format!("publish id-{id} rejected: {reason}")));
                    }
                    _ => {
                        self.unacked.insert(id);
                    }
                }
            }
        }
        Ok(())
    }

    /// Every node up, with the same state at the same applied index, equal to the highest
    /// commit index any replica knows.
    fn converged(&self) -> bool {
        let mut seen = BTreeSet::new();
        let mut commit = 0;
        for n in &self.nodes {
            let Some(n) = n else { return false };
            let Ok(info) = n.stream_info(STREAM) else { continue };
            commit = commit.max(info.commit_index);
            match n.stream_state_hash(STREAM) {
                Ok(h) => seen.insert(h),
                Err(_) => return false,
            };
        }
        seen.len() == 1 && seen.iter().next().is_some_and(|(index, _)| *index == commit)
    }

    fn check_final(&self, step: usize) -> Result<(), Violation> {
        for n in self.nodes.iter().flatten() {
            let Ok(info) = n.stream_info(STREAM) else { continue };
            for (&seq, &id) in &self.acked_seq {
                let m = n.get_message(STREAM, seq).map_err(|e| self.violation(step, format!("n{}: {e}", n.id())))?;
                let want = format!("payload-{id}");
                if m.as_ref().map(|m| &m.payload[..]) != Some(want.as_bytes()) {
                    return Err(self.violation(
                        step,
                        format!("n{}: acknowledged seq {seq} (id-{id}) holds {:?}", n.id(), m.map(|m| m.payload)),
                    ));
                }
            }
            // No id stored twice.
            let mut ids = BTreeSet::new();
            for seq in info.stream.state.first_seq..=info.stream.state.last_seq {
                if let Ok(Some(m)) = n.get_message(STREAM, seq) {
                    if !ids.insert(m.payload.clone()) {
                        return Err(self.violation(step, format!("n{}: {:?} stored twice", n.id(), m.payload)));
                    }
                }
            }
        }
        Ok(())
    }
}
