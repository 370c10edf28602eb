//! The clients: publishers with message ids that retry anything not acknowledged with the
//! same id (so de-duplication is exercised: an ack lost in a crash is retried), readers by
//! sequence, forced snapshots at random moments, and scratch streams created and deleted
//! while the rest runs. Every completion is checked as it arrives.

use super::history::StreamHistory;
use super::world::{json_str, World};
use crate::invariants::{durability, no_gaps, Violation};
use bytes::Bytes;
use rand::Rng;
use sluice_core::env::NodeId;
use sluice_core::node::{ClientError, Node, Reply};
use sluice_core::raft::Role;
use sluice_core::stream::{Publish, StreamConfig};
use sluice_faultfs::FaultFs;

/// Publishes in flight per stream at most.
const IN_FLIGHT_PER_STREAM_MAX: usize = 32;
/// Set-up gives up on creating the streams after this much simulated time.
const SETUP_MS_MAX: u64 = 60_000;
const SCRATCH: &str = "scratch";

#[derive(Clone, Copy, Debug)]
pub(super) enum Request {
    Publish {
        stream: usize,
        id: u64,
    },
    Create,
    Delete,
    /// A consumer create, pull or ack on stream `stream` (`consumers.rs`).
    Consumer {
        stream: usize,
    },
    Restore(super::backup::Step),
}

/// The scratch stream's life: created and deleted over and over during the run.
#[derive(Default)]
pub(super) struct Churn {
    pending: Option<(NodeId, sluice_core::node::RequestId)>,
    /// What the last answered request left: `Some(true)` exists, `Some(false)` deleted.
    pub exists: Option<bool>,
}

impl Churn {
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    /// After a delete was acknowledged and nothing created it again, no node lists it.
    pub fn check_final(&self, nodes: &[Option<Node<FaultFs>>], at_ms: u64) -> Result<(), Violation> {
        let Some(exists) = self.exists else { return Ok(()) };
        for n in nodes.iter().flatten() {
            let listed = n.streams().iter().any(|d| d.config.name == SCRATCH);
            if listed != exists {
                return Err(Violation::new(
                    "replica-agreement",
                    at_ms,
                    format!(
                        "the meta state says {SCRATCH} exists={listed}, the last acknowledged request left it {exists}"
                    ),
                )
                .node(n.id()));
            }
        }
        Ok(())
    }
}

fn stream_config(name: &str, world: &World, limited: bool) -> StreamConfig {
    let mut config = StreamConfig::new(name, [format!("{name}.>")]);
    config.store.sync = world.spec.swarm.sync;
    config.store.block_size_bytes = 1024;
    if limited {
        config.store.limits.max_msgs = world.spec.swarm.limit_msgs;
    }
    config
}

impl World {
    pub(super) fn meta_leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .find(|&i| self.is_up(i) && self.nodes[i].as_ref().is_some_and(|n| n.meta_role() == Role::Leader))
    }

    /// Creates the swarm's streams through the meta leader, before any fault.
    pub(super) fn create_streams(&mut self) -> Result<(), Violation> {
        let count = self.spec.swarm.replicas.len();
        let faults = std::mem::replace(&mut self.faults_on, false);
        let deadline = self.t_ms + SETUP_MS_MAX;
        for s in 0..count {
            let name = format!("s{s}");
            let limited = s == 0 && self.spec.swarm.limit_msgs.is_some();
            let config = stream_config(&name, self, limited);
            let replicas = self.spec.swarm.replicas[s];
            let peers = loop {
                if self.t_ms > deadline {
                    return Err(Violation::new("liveness", self.t_ms, format!("stream {name} never created")));
                }
                if let Some(i) = self.meta_leader() {
                    let now = self.now(i);
                    let node = self.nodes[i].as_mut().expect("leader is up");
                    if let Ok(req) = node.create_stream(now, config.clone(), replicas) {
                        let key = (i as u64 + 1, req);
                        self.in_flight.insert(key, Request::Create);
                        let mut created = None;
                        for _ in 0..500 {
                            self.step()?;
                            if !self.in_flight.contains_key(&key) {
                                created = self.nodes[i]
                                    .as_ref()
                                    .and_then(|n| n.streams().into_iter().find(|d| d.config.name == name));
                                break;
                            }
                        }
                        if let Some(def) = created {
                            break def.peers;
                        }
                    }
                }
                self.step()?;
            };
            self.log("stream", format_args!("\"name\":{},\"peers\":{peers:?}", json_str(&name)));
            self.streams.push(StreamHistory::new(name, peers, limited));
        }
        // Wait until every stream has a leader, so the safety phase starts from a formed cluster.
        while !(0..count).all(|s| self.stream_leader(s).is_some()) {
            if self.t_ms > deadline {
                return Err(Violation::new("liveness", self.t_ms, "streams never elected leaders"));
            }
            self.step()?;
        }
        self.faults_on = faults;
        Ok(())
    }

    pub(super) fn stream_leader(&self, s: usize) -> Option<NodeId> {
        let name = &self.streams[s].name;
        self.nodes
            .iter()
            .flatten()
            .find(|n| n.replica_status(name).is_ok_and(|r| r.role == Role::Leader))
            .map(|n| n.id())
    }

    /// Per step: publishes, reads, forced snapshots, scratch stream churn.
    pub(super) fn clients(&mut self) -> Result<(), Violation> {
        if self.streams.is_empty() {
            return Ok(()); // set-up
        }
        let swarm = &self.spec.swarm;
        let (publish_ppm, read_ppm) =
            (u64::from(swarm.publish_per_sec) * 10_000, u64::from(swarm.read_per_sec) * 10_000);
        let snapshot_ppm = u64::from(swarm.forced_snapshot_per_min) * 1_000_000 / 6_000;
        let churn = swarm.stream_churn;
        for s in 0..self.streams.len() {
            if self.chance(publish_ppm) {
                self.publish(s, None);
            }
        }
        if self.chance(read_ppm) {
            self.read()?;
        }
        if self.faults_on && self.chance(snapshot_ppm) {
            let s = self.rng.gen_range(0..self.streams.len());
            let p = self.streams[s].peers[self.rng.gen_range(0..self.streams[s].peers.len())];
            let i = p as usize - 1;
            if self.is_up(i) {
                let now = self.now(i);
                let name = self.streams[s].name.clone();
                let ok = self.nodes[i].as_mut().expect("up").force_snapshot(now, &name).is_ok();
                self.log("force-snapshot", format_args!("\"node\":{p},\"stream\":{},\"ok\":{ok}", json_str(&name)));
            }
        }
        if churn && self.faults_on && !self.churn.busy() && self.chance(2_000) {
            self.churn_step();
        }
        self.consumer_clients();
        self.restore_clients()
    }

    /// Publishes to stream `s`: the oldest unacknowledged id not in flight, else a new one
    /// (during the safety phase), or `probe`.
    pub(super) fn publish(&mut self, s: usize, probe: Option<u64>) {
        let in_flight: Vec<u64> = self
            .in_flight
            .values()
            .filter_map(|r| match r {
                Request::Publish { stream, id } if *stream == s => Some(*id),
                _ => None,
            })
            .collect();
        if in_flight.len() >= IN_FLIGHT_PER_STREAM_MAX {
            return;
        }
        let id = match (probe, self.streams[s].unacked.iter().find(|id| !in_flight.contains(id))) {
            (Some(id), _) => id,
            (None, Some(id)) => *id,
            (None, None) if self.faults_on => {
                let id = self.next_id;
                self.next_id += 1;
                self.streams[s].unacked.insert(id);
                id
            }
            (None, None) => return,
        };
        let peers = self.streams[s].peers.clone();
        let live: Vec<NodeId> = peers.iter().copied().filter(|p| self.is_up(*p as usize - 1)).collect();
        if live.is_empty() {
            return;
        }
        let target = match self.leader_hint[s] {
            Some(l) if live.contains(&l) => l,
            _ => live[self.rng.gen_range(0..live.len())],
        };
        let name = self.streams[s].name.clone();
        let publish = Publish {
            timestamp_ns: 0,
            msg_id: Bytes::from(format!("id-{id}")),
            subject: Bytes::from(format!("{name}.x")),
            headers: Bytes::new(),
            payload: StreamHistory::payload(id),
            expected_last_seq: None,
        };
        let i = target as usize - 1;
        let (now, wall) = (self.now(i), self.wall(i));
        let node = self.nodes[i].as_mut().expect("live");
        match node.publish(now, wall, &name, publish) {
            Ok(req) => {
                self.in_flight.insert((target, req), Request::Publish { stream: s, id });
                self.note_sent(id);
                self.log("publish", format_args!("\"node\":{target},\"stream\":{},\"id\":{id}", json_str(&name)));
            }
            Err(ClientError::NotLeader { leader }) => self.leader_hint[s] = leader,
            Err(_) => self.leader_hint[s] = None,
        }
    }

    fn read(&mut self) -> Result<(), Violation> {
        let s = self.rng.gen_range(0..self.streams.len());
        let acked = self.streams[s].acked_seq.len();
        if acked == 0 {
            return Ok(());
        }
        let k = self.rng.gen_range(0..acked);
        let seq = self.streams[s].acked_in_order[k];
        let peers = &self.streams[s].peers;
        let p = peers[self.rng.gen_range(0..peers.len())];
        let i = p as usize - 1;
        if !self.is_up(i) {
            return Ok(());
        }
        let name = self.streams[s].name.clone();
        let got = self.nodes[i].as_ref().expect("up").get_message(&name, seq);
        let outcome = match &got {
            Ok(Some(_)) => "message",
            Ok(None) => "none",
            Err(_) => "error",
        };
        self.log(
            "read",
            format_args!("\"node\":{p},\"stream\":{},\"seq\":{seq},\"got\":\"{outcome}\"", json_str(&name)),
        );
        if let Ok(Some(m)) = got {
            self.stats.reads_checked += 1;
            durability::check_read(&self.streams[s], p, seq, &m.payload, self.t_ms)?;
        }
        Ok(())
    }

    fn churn_step(&mut self) {
        let Some(i) = self.meta_leader() else { return };
        let now = self.now(i);
        let create = self.churn.exists != Some(true);
        let config = stream_config(SCRATCH, self, false);
        let replicas = if self.nodes.len() >= 3 { 3 } else { 1 };
        let node = self.nodes[i].as_mut().expect("leader is up");
        let result = if create { node.create_stream(now, config, replicas) } else { node.delete_stream(now, SCRATCH) };
        if let Ok(req) = result {
            let key = (i as u64 + 1, req);
            self.churn.pending = Some(key);
            self.in_flight.insert(key, if create { Request::Create } else { Request::Delete });
            self.log(
                if create { "create" } else { "delete" },
                format_args!("\"node\":{},\"stream\":\"{SCRATCH}\"", i + 1),
            );
        }
    }

    /// The liveness phase's probes: one new publish per stream.
    pub(super) fn start_probes(&mut self) {
        for s in 0..self.streams.len() {
            let id = self.next_id;
            self.next_id += 1;
            self.streams[s].unacked.insert(id);
            self.streams[s].probe = Some((id, false));
        }
    }

    /// Requests to a node that stopped never get their reply: publishes are retried.
    pub(super) fn fail_requests_to(&mut self, node: NodeId) {
        let lost: Vec<_> = self.in_flight.keys().filter(|(n, _)| *n == node).copied().collect();
        for key in lost {
            if let Some(Request::Publish { stream, id }) = self.in_flight.remove(&key) {
                self.streams[stream].unacked.insert(id);
            }
            if self.churn.pending == Some(key) {
                // Outcome unknown: the next churn step finds out by trying again.
                self.churn.pending = None;
                self.churn.exists = None;
            }
            self.restores.lost(key);
        }
    }

    /// Drains every node's replies and checks each acknowledgement.
    pub(super) fn collect(&mut self) -> Result<(), Violation> {
        for i in 0..self.nodes.len() {
            let Some(node) = self.nodes[i].as_mut() else { continue };
            let mut replies = Vec::new();
            while let Some(r) = node.poll_reply() {
                replies.push(r);
            }
            let n = i as u64 + 1;
            for (req, reply) in replies {
                let Some(request) = self.in_flight.remove(&(n, req)) else { continue };
                match (request, reply) {
                    (Request::Publish { stream, id }, Reply::Published { seq, duplicate }) => {
                        let name = json_str(&self.streams[stream].name);
                        self.log(
                            "ack",
                            format_args!(
                                "\"node\":{n},\"stream\":{name},\"id\":{id},\"seq\":{seq},\"dup\":{duplicate}"
                            ),
                        );
                        no_gaps::check_ack(&self.streams[stream], n, seq, id, self.t_ms)?;
                        self.streams[stream].record_ack(seq, id);
                        self.note_acked(id);
                    }
                    (Request::Publish { stream, id }, Reply::Rejected { reason }) => {
                        return Err(Violation::new(
                            "workload",
                            self.t_ms,
                            format!("publish id-{id} rejected: {reason}"),
                        )
                        .node(n)
                        .stream(&self.streams[stream].name));
                    }
                    (Request::Publish { stream, id }, other) => {
                        self.log(
                            "fail",
                            format_args!("\"node\":{n},\"id\":{id},\"reply\":{}", json_str(&format!("{other:?}"))),
                        );
                        self.streams[stream].unacked.insert(id);
                    }
                    (Request::Consumer { stream }, Reply::Delivered { deliveries, .. }) => {
                        self.consumer_delivered(n, stream, deliveries);
                    }
                    (Request::Consumer { .. }, reply) => {
                        self.log(
                            "consumer-reply",
                            format_args!("\"node\":{n},\"reply\":{}", json_str(&format!("{reply:?}"))),
                        );
                    }
                    (Request::Restore(step), reply) => self.restore_reply(n, step, reply)?,
                    (Request::Create | Request::Delete, reply) => {
                        if self.churn.pending == Some((n, req)) {
                            self.churn.pending = None;
                            self.churn.exists = match reply {
                                Reply::StreamCreated { .. } => Some(true),
                                Reply::StreamDeleted { .. } => Some(false),
                                _ => None,
                            };
                        }
                        self.log(
                            "meta-reply",
                            format_args!("\"node\":{n},\"reply\":{}", json_str(&format!("{reply:?}"))),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}
