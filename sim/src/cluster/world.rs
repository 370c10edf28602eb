//! One run of the cluster simulator: the world's state, its step, the nemesis and the final
//! checks. The clients live in `workload.rs`.

use super::history::StreamHistory;
use super::net::{Fate, Net};
use super::schedule::{Event, Fault, Schedule, Target};
use super::swarm::{Budget, Swarm};
use crate::clock::SimClock;
use crate::invariants::{agreement, durability, liveness, no_gaps, raft_safety, recovery, ReplicaDump, Violation};
use crate::time::WALL_ORIGIN_NS;
use crate::trace::Trace;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_core::bugs::{self, Bug};
use sluice_core::disk::Disk;
use sluice_core::env::{Buggify, Clock, NodeId};
use sluice_core::node::{Node, NodeConfig, RequestId, RestoreJob, Restoring, SnapshotPolicy, Work};
use sluice_core::raft::storage::LogConfig;
use sluice_core::raft::storage::{parse_segment_name, parse_snapshot_name};
use sluice_core::raft::Role;
use sluice_faultfs::{FaultConfig, FaultFs};
use sluice_reports::TimelineEvent;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub(super) const STEP_MS: u64 = 10;
/// Sample every replica's state hash this often: from the digests the replica keeps as it
/// applies, without reading its store.
const HASH_EVERY_STEPS: u64 = 25;
/// At every sample each replica also checks a window of its kept digests against its store
/// (`Node::stream_verify_kept`), continuing where the last window stopped and starting over
/// at the end: a full check of the kept digests in steps, so a long run does not pay for a
/// full read of every store every few seconds. A window is this many messages plus the
/// entries the replica applied since its last window, so the cursor gains this many a sample
/// on a growing store (a pass over N messages takes about N / 32 s) and every new message is
/// checked within a pass. After a restart, and at the end, a replica's hash is a full scan of
/// its store instead, with the same check.
const VERIFY_MSGS_PER_SAMPLE: u64 = 8;
/// A window's size at most (a snapshot install moves the applied index by a lot at once).
const VERIFY_WINDOW_MSGS_MAX: u64 = 1024;
/// Run every node's `check_invariants` this often (O(messages) each: every step would be
/// most of a run's time).
const INVARIANTS_EVERY_STEPS: u64 = 50;
/// Delivery rounds per step: frames answered within the step (bounded).
const DELIVERY_ROUNDS_MAX: usize = 64;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub scenario: String,
    pub swarm: Swarm,
    pub schedule: Schedule,
    pub bug: Option<Bug>,
    /// Keep every trace line (for `--trace FILE` and for finding where two runs diverge).
    pub keep_trace: bool,
}

#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub acked: u64,
    pub reads_checked: u64,
    pub snapshots_restored: u64,
    pub catchups_completed: u64,
    pub snapshot_requests: u64,
    pub compactions: u64,
    pub leaders_seen: u64,
    /// Faults injected, by kind (schedule faults, network faults, disk faults).
    pub faults: BTreeMap<String, u64>,
    /// Schedule events skipped because they would exceed the fault budget.
    pub over_budget: u64,
    /// Damaged archives read (`Swarm::backup_restore`).
    pub hostile_archives: u64,
    /// Restores whose every write was acknowledged and checked against their archive.
    pub restores_checked: u64,
    /// Commit latencies: count per bucket (`sluice_reports::LATENCY_BOUNDS_MS`).
    pub latency_ms: BTreeMap<u64, u64>,
    /// Rare paths reached: core's marks and BUGGIFY sites, and `fault:KIND@STATE`.
    pub coverage: BTreeMap<String, u64>,
}

pub struct RunOutcome {
    pub result: Result<(), Violation>,
    pub stats: RunStats,
    pub trace: Trace,
    pub sim_ms: u64,
    /// Leaders, faults and (on failure) the violation, for the report.
    pub timeline: Vec<TimelineEvent>,
}

/// Runs `spec` in a fresh madsim runtime seeded with the swarm's seed, on its own thread,
/// with the planted bug (if any) switched on for that thread only.
pub fn run(spec: RunSpec) -> RunOutcome {
    let seed = spec.swarm.seed;
    crate::runtime::in_madsim(seed, move || {
        bugs::set(spec.bug);
        sluice_core::coverage::record();
        let mut world = World::new(spec);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run()));
        bugs::set(None);
        for (point, hits) in sluice_core::coverage::take() {
            *world.stats.coverage.entry(point).or_insert(0) += hits;
        }
        let result = match result {
            Ok(r) => r,
            Err(panic) => {
                let msg = crate::runtime::panic_message(&*panic);
                Err(Violation::new("assertion", world.t_ms, format!("a node panicked: {msg}")))
            }
        };
        let line = match &result {
            Ok(()) => "{\"ev\":\"result\",\"result\":\"pass\"}".to_string(),
            Err(v) => format!("{{\"ev\":\"result\",\"result\":{}}}", json_str(&format!("fail: {v}"))),
        };
        world.trace.record(line);
        world.finish_stats();
        if let Err(v) = &result {
            world.timeline.push(TimelineEvent {
                t_ms: v.at_ms,
                kind: "violation".into(),
                nodes: v.node.into_iter().collect(),
                until_ms: None,
                detail: v.to_string(),
            });
        }
        RunOutcome { result, stats: world.stats, trace: world.trace, sim_ms: world.t_ms, timeline: world.timeline }
    })
}

pub(super) fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Stream restore jobs run per step by a restarting node (parallel restore): two workers.
const RESTORE_JOBS_PER_STEP_MAX: usize = 2;

/// A node restoring its streams (`Swarm::parallel_restore`): down until every job ran.
struct Starting {
    restoring: Restoring<FaultFs>,
    pending: Vec<RestoreJob<FaultFs>>,
    done: Vec<RestoreJob<FaultFs>>,
}

/// Checkpoint I/O taken out of a node (background mode).
struct WorkOut {
    run_at: u64,
    finish_at: u64,
    work: Work<FaultFs>,
    ran: bool,
}

pub(super) struct World {
    pub(super) spec: RunSpec,
    pub(super) t_ms: u64,
    pub(super) rng: ChaCha8Rng,
    pub(super) disks: Vec<FaultFs>,
    pub(super) clocks: Vec<SimClock>,
    pub(super) nodes: Vec<Option<Node<FaultFs>>>,
    pub(super) down_until: Vec<Option<u64>>,
    pub(super) paused_until: Vec<Option<u64>>,
    pub(super) disk_errors_until: Vec<Option<u64>>,
    /// Background work of a node may run from this time (a slow disk delays it).
    work_due: Vec<Option<u64>>,
    /// With `Swarm::background_work`: checkpoint I/O taken out of each node, with when it
    /// runs and when it is given back (a crash drops it, as it would a thread's).
    work_out: Vec<Vec<WorkOut>>,
    /// Nodes restoring their streams job by job (parallel restore).
    starting: Vec<Option<Starting>>,
    /// Restarted since its last state sample: its next sample is a recovery check.
    restarted: Vec<bool>,
    pub(super) net: Net,
    pub(super) faults_on: bool,
    next_event: usize,
    pub(super) streams: Vec<StreamHistory>,
    /// Requests in flight: (node, request) → what they were.
    pub(super) in_flight: BTreeMap<(NodeId, RequestId), super::workload::Request>,
    pub(super) leader_hint: Vec<Option<NodeId>>,
    pub(super) next_id: u64,
    pub(super) trace: Trace,
    pub(super) stats: RunStats,
    pub(super) churn: super::workload::Churn,
    pub(super) restores: super::backup::Restores,
    /// For the report (`record.rs`): when each publish id was first sent,
    pub(super) first_sent: BTreeMap<u64, u64>,
    /// the timeline,
    pub(super) timeline: Vec<TimelineEvent>,
    /// and the state the node a fault resolved to was in just before it struck.
    pub(super) fault_state: Option<String>,
}

/// The configuration of simulated node `id` of `nodes`: short timeouts, tiny batches,
/// segments and chunks so rare paths come up in seconds of simulated time.
pub fn node_config(id: NodeId, nodes: usize, seed: u64, buggify_ppm: u32, snapshot_entries: u64) -> NodeConfig {
    let mut cfg = NodeConfig::new(id, 1..=nodes as u64, format!("n{id}"));
    cfg.seed = seed.wrapping_mul(31).wrapping_add(id);
    cfg.buggify = Buggify::new(cfg.seed, buggify_ppm);
    cfg.keep_digests = true;
    cfg.raft.election_timeout_min = Duration::from_millis(300);
    cfg.raft.election_timeout_max = Duration::from_millis(600);
    cfg.raft.heartbeat_interval = Duration::from_millis(100);
    cfg.raft.batch_bytes_max = 4096;
    cfg.raft.batch_entries_max = 16;
    cfg.log = LogConfig { segment_bytes: 4096, sync_appends: true };
    cfg.catchup_timeout = Duration::from_millis(400);
    cfg.catchup_chunk_bytes = 256;
    cfg.request_timeout = Duration::from_secs(3);
    cfg.expire_interval = Duration::from_millis(500);
    cfg.snapshot = SnapshotPolicy {
        entries: snapshot_entries,
        bytes: u64::MAX,
        interval: Duration::from_secs(5),
        jitter: Duration::from_secs(1),
    };
    cfg
}

impl World {
    fn new(spec: RunSpec) -> World {
        let swarm = &spec.swarm;
        let mut rng = ChaCha8Rng::seed_from_u64(swarm.seed);
        let n = swarm.nodes;
        let disks: Vec<FaultFs> = (0..n).map(|_| FaultFs::new(rng.gen())).collect();
        let mut trace = Trace::new(spec.keep_trace);
        trace.record(format!(
            "{{\"ev\":\"run\",\"scenario\":{},\"seed\":{},\"bug\":{},\"swarm\":{}}}",
            json_str(&spec.scenario),
            swarm.seed,
            json_str(spec.bug.map_or("none", Bug::name)),
            json_str(&swarm.to_string())
        ));
        for e in &spec.schedule.events {
            trace.record(format!(
                "{{\"ev\":\"schedule\",\"at\":{},\"fault\":{}}}",
                e.at_ms,
                json_str(&e.fault.to_string())
            ));
        }
        let mut clocks = Vec::new();
        for i in 0..n {
            let skew_ms = swarm.clock_skew_ms_max as i64;
            let skew_ns = if skew_ms == 0 { 0 } else { rng.gen_range(-skew_ms..=skew_ms) * 1_000_000 };
            let drift = swarm.clock_drift_ppm_max as i32;
            let drift_ppm = if drift == 0 { 0 } else { rng.gen_range(-drift..=drift) };
            trace.record(format!(
                "{{\"ev\":\"clock\",\"node\":{},\"skew_ns\":{skew_ns},\"drift_ppm\":{drift_ppm}}}",
                i + 1
            ));
            clocks.push(SimClock::new(WALL_ORIGIN_NS, skew_ns, drift_ppm));
        }
        let net = Net::new(ChaCha8Rng::seed_from_u64(swarm.seed ^ 0x004e_4554));
        let streams = swarm.replicas.len();
        World {
            t_ms: 0,
            rng,
            disks,
            clocks,
            nodes: (0..n).map(|_| None).collect(),
            down_until: vec![None; n],
            paused_until: vec![None; n],
            disk_errors_until: vec![None; n],
            work_due: vec![None; n],
            work_out: (0..n).map(|_| Vec::new()).collect(),
            starting: (0..n).map(|_| None).collect(),
            restarted: vec![false; n],
            net,
            faults_on: true,
            next_event: 0,
            streams: Vec::with_capacity(streams),
            in_flight: BTreeMap::new(),
            leader_hint: vec![None; streams],
            next_id: 1,
            trace,
            stats: RunStats::default(),
            churn: super::workload::Churn::default(),
            restores: super::backup::Restores::default(),
            first_sent: BTreeMap::new(),
            timeline: Vec::new(),
            fault_state: None,
            spec,
        }
    }

    pub(super) fn chance(&mut self, ppm: u64) -> bool {
        ppm > 0 && self.rng.gen_range(0..1_000_000) < ppm
    }

    pub(super) fn log(&mut self, ev: &str, fields: std::fmt::Arguments<'_>) {
        let line = format_args!("{{\"t\":{},\"ev\":\"{ev}\",{fields}}}", self.t_ms);
        if !Self::on_timeline(ev) {
            self.trace.record(line);
            return;
        }
        let line = line.to_string();
        self.note_timeline(ev, &line);
        self.trace.record(line);
    }

    fn count(&mut self, kind: &str) {
        *self.stats.faults.entry(kind.to_string()).or_insert(0) += 1;
        if let Some(state) = self.fault_state.take() {
            self.note_fault_state(kind, &state);
        }
    }

    pub(super) fn is_up(&self, i: usize) -> bool {
        self.nodes[i].is_some() && self.paused_until[i].is_none()
    }

    pub(super) fn now(&self, i: usize) -> sluice_core::env::MonoTime {
        self.clocks[i].now()
    }

    pub(super) fn wall(&self, i: usize) -> i64 {
        self.clocks[i].wall_ns() as i64
    }

    fn start(&mut self, i: usize) -> Result<(), Violation> {
        let swarm = &self.spec.swarm;
        let cfg = node_config(i as u64 + 1, swarm.nodes, swarm.seed, swarm.buggify_ppm, swarm.snapshot_entries);
        let now = self.now(i);
        let clock = self.clocks[i].clone();
        match Node::begin_open(self.disks[i].clone(), cfg, now, Box::new(move || clock.now())) {
            Ok(restoring) if !self.spec.swarm.parallel_restore => {
                let node = restoring.finish_here(now);
                self.started(i, node);
                Ok(())
            }
            Ok(mut restoring) => {
                let mut pending = restoring.take_jobs();
                pending.shuffle(&mut self.rng);
                let jobs = pending.len();
                self.starting[i] = Some(Starting { restoring, pending, done: Vec::new() });
                if self.faults_on && jobs > 0 {
                    self.log("restore-begin", format_args!("\"node\":{},\"jobs\":{jobs}", i + 1));
                    self.down_until[i] = None;
                } else {
                    self.complete_restore(i);
                }
                Ok(())
            }
            // An injected disk error may stop an open; try again later.
            Err(e) if self.disk_errors_until[i].is_some() => {
                self.log("open-failed", format_args!("\"node\":{},\"error\":{}", i + 1, json_str(&e)));
                self.down_until[i] = Some(self.t_ms + 500);
                Ok(())
            }
            Err(e) => {
                Err(Violation::new("recovery", self.t_ms, format!("node failed to open: {e}")).node(i as u64 + 1))
            }
        }
    }

    fn started(&mut self, i: usize, node: Node<FaultFs>) {
        self.nodes[i] = Some(node);
        self.down_until[i] = None;
        self.restarted[i] = true;
        self.log("start", format_args!("\"node\":{}", i + 1));
    }

    /// One step of every restoring node: up to two jobs (two workers), in the seeded order
    /// `start` drew; between them the nemesis may crash the node or open a window of disk
    /// errors on it. The node comes up when its last job has run.
    fn restore_step(&mut self) {
        for i in 0..self.nodes.len() {
            if self.starting[i].is_none() {
                continue;
            }
            let ppm = self.spec.swarm.restore_fault_ppm;
            if self.faults_on && self.rng.gen_range(0..1_000_000) < ppm {
                let down_ms = self.rng.gen_range(100..=2_000);
                self.count("crash-restoring");
                self.crash(i, None, down_ms);
                continue;
            }
            if self.faults_on && self.disk_errors_until[i].is_none() && self.rng.gen_range(0..1_000_000) < ppm {
                let ms = self.rng.gen_range(100..=1_000);
                self.count("disk-errors-restoring");
                self.disks[i].set_config(self.spec.swarm.disk_faults);
                self.disk_errors_until[i] = Some(self.t_ms + ms);
                self.log("disk-errors", format_args!("\"node\":{},\"ms\":{ms},\"why\":\"restoring\"", i + 1));
            }
            let jobs = self.rng.gen_range(1..=RESTORE_JOBS_PER_STEP_MAX);
            let s = self.starting[i].as_mut().expect("checked");
            for _ in 0..jobs {
                let Some(mut job) = s.pending.pop() else { break };
                job.run();
                s.done.push(job);
            }
            if s.pending.is_empty() {
                self.complete_restore(i);
            }
        }
    }

    /// Runs what is left of node `i`'s restore now and brings it up.
    fn complete_restore(&mut self, i: usize) {
        let Some(mut s) = self.starting[i].take() else { return };
        while let Some(mut job) = s.pending.pop() {
            job.run();
            s.done.push(job);
        }
        let now = self.now(i);
        let node = s.restoring.finish(now, s.done);
        self.started(i, node);
    }

    fn run(&mut self) -> Result<(), Violation> {
        self.spec.swarm.check().map_err(|e| Violation::new("swarm", 0, e))?;
        for i in 0..self.nodes.len() {
            self.start(i)?;
        }
        self.create_streams()?;
        let safety_end = self.t_ms + self.spec.swarm.safety_ms;
        // The schedule's times count from the end of set-up.
        let origin = self.t_ms;
        while self.t_ms < safety_end {
            self.nemesis(origin)?;
            self.step()?;
        }
        self.heal()?;
        self.liveness()?;
        self.final_checks()
    }

    /// One step of simulated time.
    pub(super) fn step(&mut self) -> Result<(), Violation> {
        madsim::time::advance(Duration::from_millis(STEP_MS));
        self.t_ms += STEP_MS;
        self.expire_faults()?;
        self.restore_step();
        // As the production driver does, a step's client requests and timers share one
        // batch per node (one log write each), and so does each round of delivered frames.
        self.begin_batches();
        self.clients()?;
        for i in 0..self.nodes.len() {
            if !self.is_up(i) {
                continue;
            }
            let (now, wall) = (self.now(i), self.wall(i));
            let node = self.nodes[i].as_mut().expect("up");
            node.tick(now, wall);
            if node.pending_work() > 0 {
                let due = match self.work_due[i] {
                    Some(due) => due,
                    None => {
                        let delay =
                            if self.faults_on { self.rng.gen_range(0..=self.spec.swarm.work_delay_ms_max) } else { 0 };
                        let due = self.t_ms + delay;
                        self.work_due[i] = Some(due);
                        due
                    }
                };
                if due <= self.t_ms {
                    self.work_due[i] = None;
                    self.start_work(i);
                }
            }
            self.background_work(i);
        }
        self.end_batches();
        self.deliver()?;
        if self.t_ms / STEP_MS % INVARIANTS_EVERY_STEPS == 0 {
            for node in self.nodes.iter().flatten() {
                node.check_invariants();
            }
        }
        self.collect()?;
        self.observe()
    }

    /// Runs the node's next piece of background work: all at once, or (background mode)
    /// taken out now, its I/O run and its result given back after seeded delays.
    fn start_work(&mut self, i: usize) {
        let now = self.now(i);
        let node = self.nodes[i].as_mut().expect("up");
        if !self.spec.swarm.background_work {
            node.run_work(now);
            return;
        }
        let Some(work) = node.take_work(now) else { return };
        let delay_max = if self.faults_on { self.spec.swarm.work_delay_ms_max } else { 0 };
        let run_at = self.t_ms + self.rng.gen_range(0..=delay_max);
        let finish_at = run_at + self.rng.gen_range(0..=delay_max);
        self.work_out[i].push(WorkOut { run_at, finish_at, work, ran: false });
    }

    /// Background work of node `i` whose time has come: I/O first, then the hand-back.
    fn background_work(&mut self, i: usize) {
        let t = self.t_ms;
        for out in self.work_out[i].iter_mut().filter(|o| !o.ran && o.run_at <= t) {
            out.work.run();
            out.ran = true;
        }
        while let Some(at) = self.work_out[i].iter().position(|o| o.ran && o.finish_at <= t) {
            let out = self.work_out[i].remove(at);
            let now = self.now(i);
            self.nodes[i].as_mut().expect("up").finish_work(now, out.work);
        }
    }

    /// Whether node `i` has background work out (taken, not yet given back).
    pub(super) fn work_busy(&self, i: usize) -> bool {
        !self.work_out[i].is_empty()
    }

    fn begin_batches(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            node.begin_batch();
        }
    }

    /// Ends the batch of every node that is in one (a node started inside it is not) and
    /// makes its writes. Frames queued before a write are already in the node's outbox, ahead
    /// of what the write releases, so the network sees production's order.
    fn end_batches(&mut self) {
        for i in 0..self.nodes.len() {
            let now = self.now(i);
            if let Some(node) = self.nodes[i].as_mut().filter(|n| n.in_batch()) {
                node.end_batch(now);
                node.write_batch(now);
            }
        }
    }

    fn deliver(&mut self) -> Result<(), Violation> {
        for _ in 0..DELIVERY_ROUNDS_MAX {
            for i in 0..self.nodes.len() {
                let Some(node) = self.nodes[i].as_mut() else { continue };
                let mut out = Vec::new();
                while let Some(f) = node.poll_send() {
                    out.push(f);
                }
                for (to, bytes) in out {
                    let len = bytes.len();
                    let fate = self.net.send(self.t_ms, i as u64 + 1, to, bytes, &self.spec.swarm, self.faults_on);
                    match fate {
                        Fate::Dropped => {
                            self.count("net-drop");
                            self.log(
                                "send",
                                format_args!("\"from\":{},\"to\":{to},\"len\":{len},\"fate\":\"drop\"", i + 1),
                            );
                        }
                        Fate::Queued { at_ms, copies } => {
                            if copies > 1 {
                                self.count("net-duplicate");
                            }
                            self.log(
                                "send",
                                format_args!(
                                    "\"from\":{},\"to\":{to},\"len\":{len},\"at\":{at_ms},\"copies\":{copies}",
                                    i + 1
                                ),
                            );
                        }
                    }
                }
            }
            let ready: Vec<bool> = (0..self.nodes.len()).map(|i| self.paused_until[i].is_none()).collect();
            let (frames, cut) = self.net.take_due(self.t_ms, |to| ready.get(to as usize - 1).copied().unwrap_or(true));
            for _ in 0..cut {
                self.count("net-cut");
            }
            if frames.is_empty() {
                return Ok(());
            }
            self.begin_batches();
            for f in frames {
                let i = f.to as usize - 1;
                let now = self.now(i);
                let Some(node) = self.nodes.get_mut(i).and_then(Option::as_mut) else { continue };
                node.handle_frame(now, f.from, f.bytes);
            }
            self.end_batches();
            self.collect()?;
        }
        Ok(())
    }

    // ----- nemesis ----------------------------------------------------------------------

    fn impaired(&self) -> Vec<NodeId> {
        let mut v = self.net.cuts.impaired();
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() || self.paused_until[i].is_some() || self.disk_errors_until[i].is_some() {
                v.push(i as u64 + 1);
            }
            // A replica whose log lost committed entries (a flipped bit) cannot vote until
            // repaired: it counts against the budget like a node that is down. So does a
            // replica not reopened yet after a restart: whether its log is damaged is not
            // known until it opens, and a second fault in that window could take out a
            // majority (log-flip 283). And so does a replica catching up: its store lacks a
            // range (a flipped block cut it, say) and it serves no one until it is whole;
            // flips in all three stores left each waiting for the others (bit-flip 2093).
            let id = i as u64 + 1;
            let damaged = self.nodes[i].as_ref().is_some_and(|n| {
                self.streams
                    .iter()
                    .filter(|s| s.peers.contains(&id))
                    .any(|s| n.replica_status(&s.name).map_or(true, |r| r.damaged || r.catching_up))
            });
            if damaged {
                v.push(id);
            }
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether taking `nodes` out keeps the cluster within its budget: at most a minority of
    /// all nodes (the meta group spans them all), and at most a minority of the replicas of
    /// each stream that has three or more (a 3-replica stream on 5 nodes survives one, not
    /// two). A single replica claims to survive nothing, and its faults are not limited here.
    fn within_budget(&self, nodes: &[NodeId]) -> bool {
        if self.spec.swarm.budget == Budget::Beyond {
            return true;
        }
        let mut v = self.impaired();
        v.extend(nodes);
        v.sort_unstable();
        v.dedup();
        let per_stream = self.streams.iter().filter(|s| s.peers.len() >= 3).all(|s| {
            let hit = s.peers.iter().filter(|p| v.contains(p)).count();
            hit <= super::swarm::minority_of(s.peers.len())
        });
        v.len() <= self.spec.swarm.minority() && per_stream
    }

    fn resolve(&mut self, target: Target) -> NodeId {
        let n = self.resolve_node(target);
        self.fault_state = Some(self.node_state(n));
        n
    }

    fn resolve_node(&mut self, target: Target) -> NodeId {
        match target {
            Target::Node(n) => n.min(self.nodes.len() as u64).max(1),
            Target::Leader(s) => match self.leader_of_any(s) {
                Some(n) => n,
                None => self.rng.gen_range(1..=self.nodes.len() as u64),
            },
            Target::Follower(s, k) => {
                let leader = self.leader_of_any(s);
                let followers: Vec<NodeId> = match (leader, self.streams.get(s % self.streams.len().max(1))) {
                    (Some(l), Some(stream)) => stream.peers.iter().copied().filter(|&p| p != l).collect(),
                    _ => Vec::new(),
                };
                match followers.is_empty() {
                    false => followers[k % followers.len()],
                    true => self.rng.gen_range(1..=self.nodes.len() as u64),
                }
            }
        }
    }

    /// The leader of stream `s` modulo the streams (a schedule may name any number).
    fn leader_of_any(&self, s: usize) -> Option<NodeId> {
        (!self.streams.is_empty()).then(|| self.stream_leader(s % self.streams.len())).flatten()
    }

    fn nemesis(&mut self, origin: u64) -> Result<(), Violation> {
        while let Some(e) = self.spec.schedule.events.get(self.next_event) {
            if origin + e.at_ms > self.t_ms {
                break;
            }
            let e: Event = e.clone();
            self.next_event += 1;
            self.fire(&e.fault)?;
        }
        Ok(())
    }

    /// The node `target` names, as (id, index), if it is up and taking it out keeps the
    /// cluster within its budget; `None`: the fault is skipped.
    fn up_within_budget(&mut self, target: Target) -> Option<(NodeId, usize)> {
        let n = self.resolve(target);
        let i = n as usize - 1;
        (self.nodes[i].is_some() && self.within_budget(&[n])).then_some((n, i))
    }

    fn skip(&mut self, fault: &Fault) -> Result<(), Violation> {
        self.stats.over_budget += 1;
        self.log("skip", format_args!("\"fault\":{},\"why\":\"over budget\"", json_str(&fault.to_string())));
        Ok(())
    }

    /// Fires one scheduled fault. The state its target was in (`fault_state`, set when the
    /// target is resolved) is counted for coverage by `count` if the fault strikes.
    fn fire(&mut self, fault: &Fault) -> Result<(), Violation> {
        self.fault_state = None;
        let fired = self.fire_fault(fault);
        self.fault_state = None;
        fired
    }

    fn fire_fault(&mut self, fault: &Fault) -> Result<(), Violation> {
        match fault {
            Fault::Crash { target, down_ms, mode } => {
                let Some((_, i)) = self.up_within_budget(*target) else { return self.skip(fault) };
                self.crash(i, *mode, *down_ms);
            }
            Fault::Restart { target } => {
                let Some((n, i)) = self.up_within_budget(*target) else { return self.skip(fault) };
                self.count("restart");
                self.log("restart", format_args!("\"node\":{n}"));
                self.stop(i);
                self.start(i)?;
            }
            Fault::Pause { target, ms } => {
                let Some((n, i)) = self.up_within_budget(*target) else { return self.skip(fault) };
                self.count("pause");
                self.log("pause", format_args!("\"node\":{n},\"ms\":{ms}"));
                self.paused_until[i] = Some(self.t_ms + ms);
            }
            Fault::Isolate { target, ms } => {
                let n = self.resolve(*target);
                if !self.within_budget(&[n]) {
                    return self.skip(fault);
                }
                self.count("isolate");
                self.log("isolate", format_args!("\"node\":{n},\"ms\":{ms}"));
                self.net.cuts.isolated.push((n, self.t_ms + ms));
            }
            Fault::Partition { side, ms } => {
                let side: Vec<NodeId> = side.iter().copied().filter(|n| *n as usize <= self.nodes.len()).collect();
                // The smaller side counts against the budget.
                let rest: Vec<NodeId> = (1..=self.nodes.len() as u64).filter(|n| !side.contains(n)).collect();
                let smaller = if side.len() <= rest.len() { &side } else { &rest };
                if side.is_empty() || rest.is_empty() || !self.within_budget(smaller) {
                    return self.skip(fault);
                }
                let leads = side.iter().any(|n| self.node_state(*n).starts_with("leader"));
                self.fault_state = Some(if leads { "side-with-leader" } else { "side-without-leader" }.into());
                self.count("partition");
                self.log("partition", format_args!("\"side\":{side:?},\"ms\":{ms}"));
                self.net.cuts.partitions.push((side, self.t_ms + ms));
            }
            Fault::OneWay { from, to, ms } => {
                let n = self.nodes.len() as u64;
                if *from > n || *to > n || from == to || !self.within_budget(&[*from]) {
                    return self.skip(fault);
                }
                self.fault_state = Some(self.node_state(*from));
                self.count("one-way");
                self.log("one-way", format_args!("\"from\":{from},\"to\":{to},\"ms\":{ms}"));
                self.net.cuts.one_way.push((*from, *to, self.t_ms + ms));
            }
            Fault::DiskErrors { target, ms } => {
                let n = self.resolve(*target);
                let i = n as usize - 1;
                if !self.within_budget(&[n]) {
                    return self.skip(fault);
                }
                self.count("disk-errors");
                self.log("disk-errors", format_args!("\"node\":{n},\"ms\":{ms}"));
                self.disks[i].set_config(self.spec.swarm.disk_faults);
                self.disk_errors_until[i] = Some(self.t_ms + ms);
            }
            Fault::FlipBlock { target } | Fault::FlipLog { target } | Fault::FlipOldLog { target } => {
                let Some((n, i)) = self.up_within_budget(*target) else { return self.skip(fault) };
                let kind = fault.kind();
                let (dir, suffix) = match fault {
                    Fault::FlipBlock { .. } => ("store", ".blk"),
                    _ => ("raft/log", ".seg"),
                };
                let old = matches!(fault, Fault::FlipOldLog { .. });
                match self.flip_bit(i, dir, suffix, old) {
                    Some((path, offset, bit)) => {
                        self.count(kind);
                        self.log(
                            kind,
                            format_args!("\"node\":{n},\"file\":{},\"offset\":{offset},\"bit\":{bit}", json_str(&path)),
                        );
                        self.stop(i);
                        self.start(i)?;
                    }
                    None => self.log("skip", format_args!("\"fault\":\"{kind} n{n}\",\"why\":\"no {suffix} file\"")),
                }
            }
        }
        Ok(())
    }

    /// Stops node `i` without a crash (a clean exit: the page cache survives).
    fn stop(&mut self, i: usize) {
        self.add_group_stats(i);
        self.nodes[i] = None;
        self.paused_until[i] = None;
        self.work_due[i] = None;
        self.work_out[i].clear();
        self.starting[i] = None;
        self.net.forget(i as u64 + 1);
        self.fail_requests_to(i as u64 + 1);
    }

    fn crash(&mut self, i: usize, mode: Option<sluice_faultfs::CrashMode>, down_ms: u64) {
        self.stop(i);
        let report = match mode {
            Some(m) => self.disks[i].crash_with(m),
            None => self.disks[i].crash(),
        };
        self.count("crash");
        self.log(
            "crash",
            format_args!("\"node\":{},\"down_ms\":{down_ms},\"report\":{}", i + 1, json_str(&report.to_string())),
        );
        self.down_until[i] = Some(self.t_ms + down_ms);
    }

    /// Flips one bit on the medium in one of node `i`'s stream files `streams/<group>/<dir>/
    /// *<suffix>` (block files or Raft log segments): (file, offset, bit). `old`: only in
    /// each group's oldest file, in its first half.
    fn flip_bit(&mut self, i: usize, dir: &str, suffix: &str, old: bool) -> Option<(String, u64, u8)> {
        let disk = &self.disks[i];
        let root = PathBuf::from(format!("n{}", i + 1)).join("streams");
        // Only replicas that peers can repair: a flip in a stream's only replica destroys
        // data no replication factor claimed to protect, and the replica can never finish
        // the catch-up it starts (it has no one to ask).
        let repairable: Vec<String> = self.nodes[i]
            .as_ref()?
            .streams()
            .into_iter()
            .filter(|d| d.peers.len() >= 3)
            .map(|d| d.group.to_string())
            .collect();
        let mut files = Vec::new();
        for group in disk.list_dir(&root).ok()?.into_iter().filter(|g| repairable.contains(g)) {
            let in_group = root.join(&group).join(dir);
            let mut names: Vec<String> =
                disk.list_dir(&in_group).unwrap_or_default().into_iter().filter(|n| n.ends_with(suffix)).collect();
            if old {
                // The oldest segment holding only entries past the group's snapshot, and not
                // the newest: a cut must leave a whole segment of later records, whose claims
                // tell the node it lost committed entries. A cut below the snapshot, or close
                // to the end, loses only the newest entries, whose commit no record claims
                // yet: the open finding `log-flip 210` (docs/simulator.md), not this test.
                let snapshot = disk
                    .list_dir(&root.join(&group).join("raft"))
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|n| parse_snapshot_name(n))
                    .max()
                    .unwrap_or(0);
                // Names are the zero-padded first index (raft::storage): they sort by index.
                names.sort();
                let first = |n: &String| parse_segment_name(n).unwrap_or(0);
                let pick = names.iter().position(|n| first(n) > snapshot).filter(|&p| p + 1 < names.len());
                names = pick.map_or_else(Vec::new, |p| vec![names.swap_remove(p)]);
            }
            files.extend(names.into_iter().map(|name| in_group.join(name)));
        }
        files.sort();
        let candidates: Vec<(PathBuf, u64)> = files
            .into_iter()
            .filter_map(|p| disk.durable_contents(&p).map(|c| (p, c.len() as u64)))
            .filter(|(_, len)| *len > 0)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (path, len) = candidates[self.rng.gen_range(0..candidates.len())].clone();
        let offset = self.rng.gen_range(0..if old { len.div_ceil(2) } else { len });
        let bit = self.rng.gen_range(0..8u8);
        self.disks[i].flip_bit(&path, offset, bit).ok()?;
        Some((path.display().to_string(), offset, bit))
    }

    /// Ends the faults whose time is up: restarts, resumes, cuts, disk error windows.
    fn expire_faults(&mut self) -> Result<(), Violation> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() && self.down_until[i].is_some_and(|t| t <= self.t_ms) {
                self.start(i)?;
            }
            if self.paused_until[i].is_some_and(|t| t <= self.t_ms) {
                self.paused_until[i] = None;
                self.log("resume", format_args!("\"node\":{}", i + 1));
            }
            if self.disk_errors_until[i].is_some_and(|t| t <= self.t_ms) {
                self.disk_errors_until[i] = None;
                self.disks[i].set_config(FaultConfig::none());
                self.log("disk-ok", format_args!("\"node\":{}", i + 1));
            }
        }
        if self.net.cuts.expire(self.t_ms) > 0 {
            self.log("heal", format_args!("\"cuts_left\":{}", self.net.cuts.impaired().len()));
        }
        Ok(())
    }

    /// The start of the liveness phase: faults off, every node up, the network whole. A node
    /// whose meta group stopped on a disk error is restarted, as an operator would.
    fn heal(&mut self) -> Result<(), Violation> {
        self.faults_on = false;
        self.net.cuts.clear();
        self.log("heal-all", format_args!("\"in_flight\":{}", self.net.in_flight()));
        for i in 0..self.nodes.len() {
            self.paused_until[i] = None;
            self.disk_errors_until[i] = None;
            self.disks[i].set_config(FaultConfig::none());
            self.complete_restore(i);
            let meta_failed = self.nodes[i].as_ref().is_some_and(|n| n.meta_failed().is_some());
            if meta_failed {
                self.log("restart", format_args!("\"node\":{},\"why\":\"meta group stopped\"", i + 1));
                self.stop(i);
            }
            if self.nodes[i].is_none() {
                self.start(i)?;
            }
        }
        Ok(())
    }

    /// Every stream must elect a leader, commit a new publish and converge within the bound.
    fn liveness(&mut self) -> Result<(), Violation> {
        self.start_probes();
        let bound_ms = self.spec.swarm.liveness_ms;
        let deadline = self.t_ms + bound_ms;
        while self.t_ms < deadline {
            self.step()?;
            if self.waiting().is_empty() {
                self.log("live", format_args!("\"after_ms\":{}", bound_ms - (deadline - self.t_ms)));
                return Ok(());
            }
        }
        let waiting = self.waiting();
        liveness::check(bound_ms, &waiting, self.t_ms)
    }

    /// What the liveness phase still waits for.
    fn waiting(&self) -> Vec<String> {
        let mut w = Vec::new();
        for s in &self.streams {
            if s.probe.is_some_and(|(_, done)| !done) {
                w.push(format!("stream {} has not committed a new publish", s.name));
            }
            if !s.unacked.is_empty() {
                w.push(format!("stream {}: {} publishes unacknowledged", s.name, s.unacked.len()));
            }
            if !self.converged(s) {
                w.push(format!("stream {}: replicas not converged", s.name));
            }
        }
        if !self.in_flight.is_empty() {
            w.push(format!("{} requests unanswered", self.in_flight.len()));
        }
        if self.churn.busy() {
            w.push("a stream create or delete unanswered".into());
        }
        if self.restores.busy() {
            w.push("a restore in progress".into());
        }
        if let Some(n) = self.nodes.iter().flatten().find(|n| n.meta_role() == Role::Leader) {
            if let Some(name) = self.restores.abandoned().find(|name| n.stream_def(name).is_some()) {
                w.push(format!("abandoned restore stream {name} still exists"));
            }
        }
        for (name, peers) in self.restored_streams() {
            if !self.converged_peers(&name, &peers) {
                w.push(format!("restored stream {name}: replicas not converged"));
            }
            // No publishes reach a restored stream, so after a restart its last entries (the
            // consumers, say) are known committed, and applied, only once a leader commits in
            // its own term (backup-restore 8822: a consumer missing at the final check).
            let ready = peers.iter().any(|&p| {
                self.nodes[p as usize - 1].as_ref().is_some_and(|n| n.stream_leader_ready(&name).unwrap_or(false))
            });
            if !ready {
                w.push(format!("restored stream {name}: no leader has committed in its term"));
            }
        }
        // The final check compares every node's stream list with the last acknowledged
        // create or delete: a follower learns of a commit a heartbeat after the leader. And
        // after every node restarted, none knows the last entries are committed (no record
        // claims them yet) until a leader commits one of its own term: equal applied indexes
        // below them are not convergence (scenarios/findings/meta-scratch-lost.schedule).
        let meta_applied: Vec<_> = self.nodes.iter().flatten().map(|n| n.meta_applied_index()).collect();
        if meta_applied.windows(2).any(|w| w[0] != w[1]) {
            w.push(format!("meta state not converged: applied indexes {meta_applied:?}"));
        }
        match self.nodes.iter().flatten().find(|n| n.meta_leader_ready()) {
            None => w.push("no meta leader has committed in its term".into()),
            Some(l) if meta_applied.iter().any(|&a| a < l.meta_commit_index()) => {
                w.push(format!("meta state behind the leader's commit {}: {meta_applied:?}", l.meta_commit_index()));
            }
            Some(_) => {}
        }
        w
    }

    /// Every replica of `s` up, at the same applied index with the same state, equal to the
    /// highest commit index any of them knows.
    fn converged(&self, s: &StreamHistory) -> bool {
        self.converged_peers(&s.name, &s.peers)
    }

    fn converged_peers(&self, name: &str, peers: &[NodeId]) -> bool {
        let mut applied = Vec::new();
        let mut commit = 0;
        for &p in peers {
            let Some(n) = &self.nodes[p as usize - 1] else { return false };
            let Ok(r) = n.replica_status(name) else { return false };
            if r.catching_up {
                return false;
            }
            commit = commit.max(r.commit_index);
            applied.push(r.applied_index);
        }
        if applied.iter().any(|a| *a != commit) {
            return false;
        }
        // The kept hashes: the liveness phase asks every step, and `final_checks` reads every
        // store anyway.
        let mut seen = Vec::new();
        for &p in peers {
            let n = self.nodes[p as usize - 1].as_ref().expect("checked above");
            match n.stream_state_hash_cheap(name) {
                Ok(h) => seen.push(h),
                Err(_) => return false,
            }
        }
        seen.windows(2).all(|w| w[0] == w[1]) && seen.first().is_some_and(|(index, _)| *index == commit)
    }

    // ----- observation ------------------------------------------------------------------

    fn observe(&mut self) -> Result<(), Violation> {
        let sample = self.t_ms / STEP_MS % HASH_EVERY_STEPS == 0;
        for s in 0..self.streams.len() {
            let name = self.streams[s].name.clone();
            let peers = self.streams[s].peers.clone();
            let mut observed = Vec::new();
            for &p in &peers {
                let i = p as usize - 1;
                let Some(node) = &self.nodes[i] else { continue };
                let Ok(info) = node.replica_status(&name) else { continue };
                let sampled = match (sample || self.restarted[i]) && !info.catching_up {
                    false => None,
                    true if self.restarted[i] => node.stream_state_hash(&name).ok(),
                    true => {
                        let (from, applied_before) = self.streams[s].verify_from.get(&p).copied().unwrap_or((0, 0));
                        let grown = info.applied_index.saturating_sub(applied_before);
                        let window = (VERIFY_MSGS_PER_SAMPLE + grown).min(VERIFY_WINDOW_MSGS_MAX);
                        // A read error is left to the full scans, as it was when these were
                        // full scans (the agreement check needs the hash, not the read); the
                        // cursor steps over the window, so one bad spot does not stop the rest.
                        let next = match node.stream_verify_kept(&name, from, window as usize) {
                            Ok(next) => next.unwrap_or(0),
                            Err(_) => from + window,
                        };
                        self.streams[s].verify_from.insert(p, (next, info.applied_index));
                        node.stream_state_hash_cheap(&name).ok()
                    }
                };
                let o = raft_safety::Observation {
                    node: p,
                    role: info.role,
                    term: info.term,
                    last_index: info.last_index,
                    commit: info.commit_index,
                };
                if o.role == Role::Leader && !self.streams[s].leaders.contains_key(&o.term) {
                    self.stats.leaders_seen += 1;
                    self.log("leader", format_args!("\"stream\":{},\"node\":{p},\"term\":{}", json_str(&name), o.term));
                }
                raft_safety::observe(&mut self.streams[s], &o, self.t_ms)?;
                observed.push(o);
                if let Some((index, hash)) = sampled {
                    let which = if self.restarted[i] { recovery::NAME } else { agreement::NAME };
                    agreement::observe(&mut self.streams[s], p, index, hash, self.t_ms, which)?;
                }
            }
            raft_safety::end_step(&mut self.streams[s], &observed);
            self.update_quorum_watch(s);
        }
        for r in &mut self.restarted {
            *r = false;
        }
        Ok(())
    }

    /// Tracks whether a majority of stream `s`'s replicas is down (beyond-budget runs).
    fn update_quorum_watch(&mut self, s: usize) {
        let peers = &self.streams[s].peers;
        let down = peers.iter().filter(|p| self.nodes[**p as usize - 1].is_none()).count();
        let majority_down = down > peers.len() / 2;
        let st = &mut self.streams[s];
        match (majority_down, st.no_quorum_ceiling) {
            (true, None) => st.no_quorum_ceiling = Some(st.max_last_index),
            (false, Some(_)) => st.no_quorum_ceiling = None,
            _ => {}
        }
    }

    /// One replica's contents, read in one pass that also asserts the digests kept for the
    /// sampled hashes still match the store (`Node::stream_contents`).
    fn dump(&self, i: usize, name: &str) -> Result<ReplicaDump, Violation> {
        let node = self.nodes[i].as_ref().expect("every node is up at the end");
        let fail = |e: String| Violation::new(durability::NAME, self.t_ms, e).node(i as u64 + 1).stream(name);
        let info = node.stream_info(name).map_err(|e| fail(format!("stream info: {e}")))?;
        let state = info.stream.state;
        let mut messages = BTreeMap::new();
        node.stream_contents(name, |m| {
            messages.insert(m.seq, m.payload.clone());
        })
        .map_err(|e| fail(format!("reading seqs {}..={}: {e}", state.first_seq, state.last_seq)))?;
        Ok(ReplicaDump { node: i as u64 + 1, first_seq: state.first_seq, last_seq: state.last_seq, messages })
    }

    fn dump_all(&self) -> Result<Vec<Vec<ReplicaDump>>, Violation> {
        let mut all = Vec::new();
        for s in &self.streams {
            let mut dumps = Vec::new();
            for &p in &s.peers {
                dumps.push(self.dump(p as usize - 1, &s.name)?);
            }
            all.push(dumps);
        }
        Ok(all)
    }

    fn final_checks(&mut self) -> Result<(), Violation> {
        let dumps = self.dump_all()?;
        for (s, replicas) in self.streams.iter().zip(&dumps) {
            for r in replicas {
                durability::check_final(s, r, self.t_ms)?;
                no_gaps::check_final(s, r, self.t_ms)?;
            }
            agreement::check_final(s, replicas, self.t_ms)?;
        }
        self.churn.check_final(&self.nodes, self.t_ms)?;
        self.check_restores()?;
        // Recovery equivalence: every node restarts cleanly and must come back the same.
        for i in 0..self.nodes.len() {
            self.stop(i);
            self.start(i)?;
        }
        self.log("restart-all", format_args!("\"why\":\"recovery equivalence\""));
        // A new publish per stream: a restarted replica learns its commit index only when a
        // leader of a new term commits something.
        self.start_probes();
        let deadline = self.t_ms + self.spec.swarm.liveness_ms;
        // Converged again, and past where they were: a restarted replica knows its commit
        // index only once a leader tells it, so equal-but-behind is not yet the end.
        let back = |w: &World| {
            w.in_flight.is_empty()
                && w.streams.iter().zip(&dumps).all(|(s, before)| {
                    w.converged(s)
                        && s.unacked.is_empty()
                        && before.iter().all(|b| {
                            w.nodes[b.node as usize - 1]
                                .as_ref()
                                .and_then(|n| n.stream_info(&s.name).ok())
                                .is_some_and(|i| i.stream.state.last_seq >= b.last_seq)
                        })
                })
        };
        while !back(self) {
            if self.t_ms >= deadline {
                return liveness::check(
                    self.spec.swarm.liveness_ms,
                    &["replicas converge after a clean restart".into()],
                    self.t_ms,
                );
            }
            self.step()?;
        }
        let after = self.dump_all()?;
        for ((s, before), after) in self.streams.iter().zip(&dumps).zip(&after) {
            for (b, a) in before.iter().zip(after) {
                recovery::check_restart(&s.name, b, a, self.t_ms)?;
            }
        }
        Ok(())
    }

    /// Adds node `i`'s replica counters (they restart from zero when it does).
    fn add_group_stats(&mut self, i: usize) {
        let Some(n) = &self.nodes[i] else { return };
        for s in &self.streams {
            if let Ok(info) = n.stream_info(&s.name) {
                self.stats.snapshots_restored += info.stats.snapshots_restored;
                self.stats.catchups_completed += info.stats.catchups_completed;
                self.stats.snapshot_requests += info.stats.snapshot_requests;
                self.stats.compactions += info.stats.compactions;
            }
        }
    }

    fn finish_stats(&mut self) {
        self.stats.acked = self.streams.iter().map(|s| s.acked_seq.len() as u64).sum();
        for i in 0..self.nodes.len() {
            self.add_group_stats(i);
        }
        for d in &self.disks {
            for (kind, count) in d.fault_counts() {
                if kind != sluice_faultfs::FaultKind::Crash {
                    *self.stats.faults.entry(format!("disk-{kind:?}")).or_insert(0) += count;
                }
            }
        }
    }
}
