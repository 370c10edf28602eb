//! A deterministic, in-process driver for one Raft group of 3 or 5 nodes, without madsim:
//! a seeded RNG decides everything; the network is a list of frames with delivery times that
//! drops, duplicates, delays (hence reorders) and partitions; each node has its own faultfs
//! disk holding a real `RaftStorage`; nodes crash (a faultfs crash mode is applied to their
//! disk), restart and recover; checkpoints run as delayed background work with compaction.
//!
//! After every step the checker asserts Raft safety: at most one leader per term; an entry
//! a node has committed never changes (every node's committed prefix agrees with one global
//! log); a node that becomes leader holds every entry committed so far (leader completeness);
//! replicas that applied the same index hold the same state hash. A violation is returned
//! as an error naming the seed, step, node and index.
//!
//! Fault budget: at most a minority of nodes is down at once, so the group keeps making
//! progress and the checks see commits (a run that commits nothing fails: a checker that saw
//! nothing has checked nothing).

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_core::env::{MonoTime, NodeId};
use sluice_core::format::fnv::Fnv64;
use sluice_core::raft::message::Message;
use sluice_core::raft::storage::{LogConfig, RaftStorage};
use sluice_core::raft::{
    Action, Applied, Checkpoint, Entry, Index, Membership, PersistIo, Raft, RaftConfig, RecoveredLog, Role, Snapshot,
    SnapshotMeta, Term,
};
use sluice_faultfs::FaultFs;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

const GROUP: u64 = 1;
const GROUP_DIR: &str = "g1";

/// What one seed does; every field is drawn from the seed.
#[derive(Clone, Debug)]
pub struct ClusterParams {
    pub seed: u64,
    pub nodes: usize,
    pub steps: usize,
    pub drop_ppm: u32,
    pub dup_ppm: u32,
    pub latency_max_ms: u64,
    pub crash_ppm: u32,
    pub partition_ppm: u32,
    pub propose_ppm: u32,
    pub checkpoint_ppm: u32,
    pub transfer_ppm: u32,
    /// Persist ios complete after a random delay instead of at once.
    pub slow_io: bool,
    /// Chance per step that a follower stops applying and asks the leader for a newer
    /// snapshot (what a stream whose catch-up failed does).
    pub snapshot_request_ppm: u32,
}

impl ClusterParams {
    pub fn from_seed(seed: u64, steps: usize) -> ClusterParams {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5a17_c0de);
        ClusterParams {
            seed,
            nodes: if seed % 2 == 0 { 3 } else { 5 },
            steps,
            drop_ppm: [0, 20_000, 100_000][rng.gen_range(0..3)],
            dup_ppm: [0, 20_000][rng.gen_range(0..2)],
            latency_max_ms: [5, 50, 200][rng.gen_range(0..3)],
            crash_ppm: [5_000, 20_000][rng.gen_range(0..2)],
            partition_ppm: [0, 3_000][rng.gen_range(0..2)],
            propose_ppm: [200_000, 600_000][rng.gen_range(0..2)],
            checkpoint_ppm: [5_000, 30_000][rng.gen_range(0..2)],
            transfer_ppm: [0, 2_000][rng.gen_range(0..2)],
            slow_io: rng.gen_bool(0.5),
            snapshot_request_ppm: [0, 20_000][rng.gen_range(0..2)],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub seed: u64,
    pub step: usize,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed {} step {}: {}", self.seed, self.step, self.what)
    }
}

/// What a run did, for assertions that the checks saw something.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub committed: Index,
    pub leaders: usize,
    pub crashes: usize,
    pub snapshots_installed: usize,
    /// Snapshots a follower asked for and applied.
    pub snapshots_requested_applied: usize,
    pub compactions: usize,
    pub trace_hash: u64,
}

struct Frame {
    deliver_at: MonoTime,
    bytes: Bytes,
    from: NodeId,
    to: NodeId,
}

struct Pending {
    io: PersistIo,
    done_at: MonoTime,
}

struct Background {
    checkpoint: Checkpoint,
    data: Bytes,
    done_at: MonoTime,
}

struct Node {
    id: NodeId,
    disk: FaultFs,
    live: Option<Live>,
    down_until: MonoTime,
}

struct Live {
    raft: Raft,
    storage: RaftStorage<FaultFs>,
    ios: Vec<Pending>,
    background: Option<Background>,
    /// The application: a hash over applied entries, and the index it covers.
    app_index: Index,
    app_hash: u64,
    /// Asked for a newer snapshot: applies nothing until it is ready or until this time.
    stalled_until: Option<MonoTime>,
}

/// The safety checker's global view.
#[derive(Default)]
struct Checker {
    leaders: BTreeMap<Term, NodeId>,
    /// The one committed log: index → (term, data hash).
    committed: BTreeMap<Index, (Term, u64)>,
    /// Application state hash after applying each index.
    state_at: BTreeMap<Index, u64>,
}

pub struct RaftCluster {
    params: ClusterParams,
    rng: ChaCha8Rng,
    now: MonoTime,
    nodes: Vec<Node>,
    net: Vec<Frame>,
    partition: Option<BTreeSet<NodeId>>,
    checker: Checker,
    stats: RunStats,
    trace: crate::trace::Trace,
    proposals: u64,
}

fn entry_hash(e: &Entry) -> u64 {
    let mut h = Fnv64::new();
    h.write(&[e.kind as u8]);
    h.write(&e.data);
    h.finish()
}

/// The application state after applying `e` on top of `state`.
fn next_state(state: u64, e: &Entry) -> u64 {
    let mut h = Fnv64::new();
    h.u64(state);
    h.u64(entry_hash(e));
    h.u64(e.index);
    h.finish()
}

fn raft_config(id: NodeId) -> RaftConfig {
    RaftConfig {
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        heartbeat_interval: Duration::from_millis(100),
        batch_bytes_max: 4096,
        batch_entries_max: 16,
        ..RaftConfig::new(id)
    }
}

impl RaftCluster {
    pub fn new(params: ClusterParams) -> RaftCluster {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let now = MonoTime::from_nanos(1_000_000);
        let ids: Vec<NodeId> = (1..=params.nodes as u64).collect();
        let mut nodes = Vec::new();
        for &id in &ids {
            let disk = FaultFs::new(rng.gen());
            nodes.push(Node { id, disk, live: None, down_until: now });
        }
        let mut c = RaftCluster {
            params,
            rng,
            now,
            nodes,
            net: Vec::new(),
            partition: None,
            checker: Checker::default(),
            stats: RunStats::default(),
            trace: crate::trace::Trace::new(false),
            proposals: 0,
        };
        for i in 0..c.nodes.len() {
            c.start(i).expect("a fresh disk opens");
        }
        c
    }

    /// Opens node `i`'s storage and builds its Raft from what it recovered.
    fn start(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let (storage, rec) = RaftStorage::open(
            node.disk.clone(),
            Path::new(GROUP_DIR),
            LogConfig { segment_bytes: 4096, sync_appends: true },
        )
        .map_err(|e| format!("node {} recovery failed: {e}", node.id))?;
        let recovered = RecoveredLog::from(rec);
        let seed = self.rng.gen();
        let raft = Raft::new(
            raft_config(node.id),
            GROUP,
            Membership::new(1..=self.params.nodes as u64),
            recovered,
            seed,
            self.now,
        )
        .map_err(|e| format!("node {}: {e}", node.id))?;
        node.live = Some(Live {
            raft,
            storage,
            ios: Vec::new(),
            background: None,
            app_index: 0,
            app_hash: 0,
            stalled_until: None,
        });
        Ok(())
    }

    fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.rng.gen_range(0..1_000_000) < ppm
    }

    fn violation(&self, step: usize, what: String) -> Violation {
        Violation { seed: self.params.seed, step, what }
    }

    pub fn run(mut self) -> Result<RunStats, Violation> {
        for step in 0..self.params.steps {
            self.step(step)?;
        }
        self.stats.committed = self.checker.committed.keys().next_back().copied().unwrap_or(0);
        self.stats.leaders = self.checker.leaders.len();
        self.stats.trace_hash = self.trace.hash();
        Ok(self.stats)
    }

    fn step(&mut self, step: usize) -> Result<(), Violation> {
        self.now = self.now + Duration::from_millis(self.rng.gen_range(1..30));
        self.nemesis(step);
        self.client(step);
        self.deliver(step)?;
        for i in 0..self.nodes.len() {
            if let Some(live) = &mut self.nodes[i].live {
                live.raft.tick(self.now);
            }
            self.complete_ios(i, step)?;
            self.background(i);
            self.drain(i, step)?;
        }
        self.check(step)
    }

    fn nemesis(&mut self, step: usize) {
        // Restart nodes whose downtime is over.
        for i in 0..self.nodes.len() {
            if self.nodes[i].live.is_none() && self.now >= self.nodes[i].down_until {
                self.trace.record(format_args!("{step} restart n{}", self.nodes[i].id));
                // Recovery must succeed on a crashed faultfs disk without injected errors.
                self.start(i).unwrap_or_else(|e| panic!("seed {}: {e}", self.params.seed));
            }
        }
        let down = self.nodes.iter().filter(|n| n.live.is_none()).count();
        let minority = (self.params.nodes - 1) / 2;
        // Crashes favour nodes with writes in flight: the moment between a decision and its
        // durability is where lost votes and lost acknowledgements hide (BUGGIFY-style).
        let in_flight: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].live.as_ref().is_some_and(|l| !l.ios.is_empty())).collect();
        if down < minority && self.chance(self.params.crash_ppm) {
            let i = if !in_flight.is_empty() && self.rng.gen_bool(0.7) {
                in_flight[self.rng.gen_range(0..in_flight.len())]
            } else {
                self.rng.gen_range(0..self.nodes.len())
            };
            if self.nodes[i].live.is_some() {
                let report = self.nodes[i].disk.crash();
                self.trace.record(format_args!("{step} crash n{} {report}", self.nodes[i].id));
                self.nodes[i].live = None;
                self.nodes[i].down_until = self.now + Duration::from_millis(self.rng.gen_range(10..1_000));
                self.stats.crashes += 1;
            }
        }
        if self.chance(self.params.partition_ppm) {
            if self.partition.is_some() {
                self.partition = None;
            } else {
                // Cut a minority off from the rest.
                let k = self.rng.gen_range(1..=minority.max(1));
                let mut side = BTreeSet::new();
                while side.len() < k {
                    side.insert(self.rng.gen_range(1..=self.params.nodes as u64));
                }
                self.trace.record(format_args!("{step} partition {side:?}"));
                self.partition = Some(side);
            }
        }
    }

    fn client(&mut self, step: usize) {
        if self.chance(self.params.propose_ppm) {
            let leader = self.nodes.iter().position(|n| n.live.as_ref().is_some_and(|l| l.raft.role() == Role::Leader));
            if let Some(i) = leader {
                self.proposals += 1;
                let size = self.rng.gen_range(1..200);
                let mut data = vec![0u8; size];
                data[..8.min(size)].copy_from_slice(&self.proposals.to_le_bytes()[..8.min(size)]);
                let now = self.now;
                let live = self.nodes[i].live.as_mut().expect("found live");
                let _ = live.raft.propose(now, Bytes::from(data));
            }
        }
        if self.chance(self.params.transfer_ppm) {
            let leader = self.nodes.iter().position(|n| n.live.as_ref().is_some_and(|l| l.raft.role() == Role::Leader));
            if let Some(i) = leader {
                let target = self.rng.gen_range(1..=self.params.nodes as u64);
                let now = self.now;
                let live = self.nodes[i].live.as_mut().expect("found live");
                let _ = live.raft.transfer_leadership(now, target);
            }
        }
        if self.chance(self.params.snapshot_request_ppm) {
            let i = self.rng.gen_range(0..self.nodes.len());
            let stall = Duration::from_millis(self.rng.gen_range(100..3_000));
            let now = self.now;
            if let Some(live) = &mut self.nodes[i].live {
                if live.stalled_until.is_none() && live.raft.request_snapshot() {
                    live.stalled_until = Some(now + stall);
                    self.trace.record(format_args!("{step} n{} asks for a snapshot", self.nodes[i].id));
                }
            }
        }
        // A leader asked for a snapshot checkpoints soon, as the stream's policy does.
        let wanted = self.nodes.iter().position(|n| n.live.as_ref().is_some_and(|l| l.raft.snapshot_wanted()));
        let chosen = match wanted {
            Some(i) if self.chance(100_000) => Some(i),
            _ if self.chance(self.params.checkpoint_ppm) => Some(self.rng.gen_range(0..self.nodes.len())),
            _ => None,
        };
        if let Some(i) = chosen {
            let now = self.now;
            let delay = Duration::from_millis(self.rng.gen_range(0..500));
            if let Some(live) = &mut self.nodes[i].live {
                if live.background.is_none() {
                    let force = live.raft.should_force_checkpoint();
                    if let Ok(cp) = live.raft.create_checkpoint(now, force) {
                        assert_eq!(cp.index, live.app_index, "a checkpoint captures the applied state");
                        let data = Bytes::copy_from_slice(&live.app_hash.to_le_bytes());
                        live.background = Some(Background { checkpoint: cp, data, done_at: now + delay });
                    }
                }
            }
        }
    }

    fn blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.partition.as_ref().is_some_and(|side| side.contains(&from) != side.contains(&to))
    }

    fn deliver(&mut self, step: usize) -> Result<(), Violation> {
        let now = self.now;
        let mut due: Vec<Frame> = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].deliver_at <= now {
                due.push(self.net.swap_remove(i));
            } else {
                i += 1;
            }
        }
        // swap_remove scrambles the order; sort by time then a stable key so the run is a
        // function of the seed alone.
        due.sort_by(|a, b| (a.deliver_at, a.from, a.to, &a.bytes).cmp(&(b.deliver_at, b.from, b.to, &b.bytes)));
        for f in due {
            let idx = (f.to - 1) as usize;
            let Some(live) = &mut self.nodes[idx].live else { continue };
            let msg = Message::decode(&f.bytes).map_err(|e| Violation {
                seed: self.params.seed,
                step,
                what: format!("own frame failed to decode: {e}"),
            })?;
            if let Err(e) = live.raft.handle_message(now, msg) {
                return Err(self.violation(step, format!("n{} refused a message from n{}: {e}", f.to, f.from)));
            }
        }
        Ok(())
    }

    /// Runs node `i`'s outputs: sends go to the network, ios to the pending list.
    fn drain(&mut self, i: usize, step: usize) -> Result<(), Violation> {
        let now = self.now;
        let slow = self.params.slow_io;
        loop {
            let Some(live) = &mut self.nodes[i].live else { return Ok(()) };
            let Some(action) = live.raft.poll_action(now) else { break };
            match action {
                Action::Send(m) => {
                    let (from, to) = (m.from, m.to);
                    if self.blocked(from, to) || self.chance(self.params.drop_ppm) {
                        continue;
                    }
                    let bytes = m.encode();
                    let copies = if self.chance(self.params.dup_ppm) { 2 } else { 1 };
                    for _ in 0..copies {
                        let latency = Duration::from_millis(self.rng.gen_range(0..=self.params.latency_max_ms));
                        self.net.push(Frame { deliver_at: now + latency, bytes: bytes.clone(), from, to });
                    }
                }
                Action::Persist(io) => {
                    let delay = if slow { Duration::from_millis(self.rng.gen_range(0..100)) } else { Duration::ZERO };
                    let live = self.nodes[i].live.as_mut().expect("checked");
                    // Completions stay in issue order (cumulative acknowledgement).
                    let done_at = live.ios.last().map_or(now + delay, |p| p.done_at.max(now + delay));
                    live.ios.push(Pending { io, done_at });
                }
            }
        }
        self.complete_ios(i, step)?;
        self.apply(i, step)
    }

    fn complete_ios(&mut self, i: usize, step: usize) -> Result<(), Violation> {
        let now = self.now;
        let id = self.nodes[i].id;
        let Some(live) = &mut self.nodes[i].live else { return Ok(()) };
        let mut done = None;
        while live.ios.first().is_some_and(|p| p.done_at <= now) {
            let p = live.ios.remove(0);
            let io = p.io;
            let result = live.storage.persist(&io);
            if let Err(e) = result {
                return Err(Violation { seed: self.params.seed, step, what: format!("n{id} storage failed: {e}") });
            }
            done = Some(io.id);
        }
        if let Some(io_id) = done {
            live.raft.handle_persisted(now, io_id);
        }
        Ok(())
    }

    fn background(&mut self, i: usize) {
        let now = self.now;
        let Some(live) = &mut self.nodes[i].live else { return };
        let Some(bg) = live.background.take_if(|bg| bg.done_at <= now) else { return };
        let cp = &bg.checkpoint;
        let snapshot = Snapshot {
            meta: SnapshotMeta { last_index: cp.index, last_term: cp.term, membership: cp.membership.clone() },
            data: bg.data.clone(),
        };
        // A leader's snapshot may have replaced the log meanwhile; then this one is stale.
        if live.storage.snapshot_meta().is_some_and(|m| m.last_index >= cp.index) {
            live.raft.abort_checkpoint(cp.generation);
            return;
        }
        live.storage.save_snapshot(&snapshot).expect("no injected disk errors in this test");
        // Refusals (a catch-up started, superseded) keep the snapshot and skip compaction.
        if let Ok(through) = live.raft.checkpoint_saved(now, cp.generation, bg.data) {
            live.storage.compact_through(through).expect("no injected disk errors in this test");
            self.stats.compactions += 1;
        }
    }

    fn apply(&mut self, i: usize, step: usize) -> Result<(), Violation> {
        let id = self.nodes[i].id;
        let Some(live) = &mut self.nodes[i].live else { return Ok(()) };
        if let Some(until) = live.stalled_until {
            let ready = live.raft.snapshot_ready();
            if !ready && self.now < until {
                return Ok(());
            }
            live.stalled_until = None;
            if ready {
                self.stats.snapshots_requested_applied += 1;
            }
        }
        while let Some(applied) = live.raft.poll_apply(64) {
            match applied {
                Applied::Snapshot(s) => {
                    let hash = u64::from_le_bytes(s.data.as_ref().try_into().map_err(|_| Violation {
                        seed: self.params.seed,
                        step,
                        what: format!("n{id}: snapshot data of {} bytes", s.data.len()),
                    })?);
                    if let Some(expected) = self.checker.state_at.get(&s.meta.last_index) {
                        if *expected != hash {
                            return Err(Violation {
                                seed: self.params.seed,
                                step,
                                what: format!("n{id}: snapshot at {} has another state", s.meta.last_index),
                            });
                        }
                    }
                    live.app_index = s.meta.last_index;
                    live.app_hash = hash;
                    self.stats.snapshots_installed += 1;
                }
                Applied::Entries(es) => {
                    for e in es {
                        if e.index != live.app_index + 1 {
                            return Err(Violation {
                                seed: self.params.seed,
                                step,
                                what: format!("n{id} applied {} after {}", e.index, live.app_index),
                            });
                        }
                        let h = entry_hash(&e);
                        match self.checker.committed.get(&e.index) {
                            Some(&(t, dh)) if (t, dh) != (e.term, h) => {
                                return Err(Violation {
                                    seed: self.params.seed,
                                    step,
                                    what: format!(
                                        "n{id} applied entry {} term {} unlike the committed term {t}",
                                        e.index, e.term
                                    ),
                                });
                            }
                            Some(_) => {}
                            None => {
                                self.checker.committed.insert(e.index, (e.term, h));
                            }
                        }
                        live.app_hash = next_state(live.app_hash, &e);
                        live.app_index = e.index;
                        match self.checker.state_at.get(&e.index) {
                            Some(s) if *s != live.app_hash => {
                                return Err(Violation {
                                    seed: self.params.seed,
                                    step,
                                    what: format!("n{id} state after {} differs from another replica's", e.index),
                                });
                            }
                            Some(_) => {}
                            None => {
                                self.checker.state_at.insert(e.index, live.app_hash);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Raft safety over every live node, after every step.
    fn check(&mut self, step: usize) -> Result<(), Violation> {
        for n in &self.nodes {
            let Some(live) = &n.live else { continue };
            let r = &live.raft;
            r.check_invariants();
            live.storage.check_invariants();
            // Committed entries still in memory agree with the one committed log.
            let from = r.log().first_index().max(1);
            for e in r.log().range(from, r.commit_index()) {
                let h = entry_hash(e);
                match self.checker.committed.get(&e.index) {
                    Some(&(t, dh)) if (t, dh) != (e.term, h) => {
                        return Err(self.violation(
                            step,
                            format!(
                                "n{}: committed entry {} is term {} but was committed as term {t}",
                                n.id, e.index, e.term
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.checker.committed.insert(e.index, (e.term, h));
                    }
                }
            }
            if r.role() == Role::Leader {
                let term = r.term();
                match self.checker.leaders.get(&term) {
                    Some(l) if *l != n.id => {
                        return Err(self.violation(step, format!("two leaders in term {term}: n{l} and n{}", n.id)));
                    }
                    Some(_) => {}
                    None => {
                        self.checker.leaders.insert(term, n.id);
                        self.trace.record(format_args!("{step} leader n{} term {term}", n.id));
                        // Leader completeness: every entry committed so far is in its log.
                        let snap = r.log().snapshot_index();
                        for (&index, &(t, _)) in &self.checker.committed {
                            if index <= snap {
                                continue;
                            }
                            if r.log().term(index) != Some(t) {
                                return Err(self.violation(
                                    step,
                                    format!(
                                        "new leader n{} of term {term} lacks committed entry {index} (term {t})",
                                        n.id
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
