//! The simulated network between nodes: per-frame latency (a uniform range plus a long
//! tail), loss and duplication drawn from the seed, and the cuts the nemesis makes
//! (isolation, partitions, one-way links), checked when a frame would arrive, so frames in
//! flight when a cut starts are lost too. Latency spread also reorders frames.
//!
//! Why the cluster must survive each: TCP connections break and reconnect (loss), a retry
//! after a reconnect resends (duplication), routes and queues differ per frame (reordering,
//! tails), and switches, firewalls and NICs fail partially (partitions, one-way loss).

use crate::cluster::swarm::Swarm;
use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use sluice_core::env::NodeId;

/// Frames in flight at most; beyond it a send is dropped (a full socket buffer).
pub const FRAMES_IN_FLIGHT_MAX: usize = 200_000;

pub struct Frame {
    pub deliver_at_ms: u64,
    /// Send order, to break ties deterministically.
    pub order: u64,
    pub from: NodeId,
    pub to: NodeId,
    pub bytes: Bytes,
}

#[derive(Default)]
pub struct Cuts {
    /// node → isolated until.
    pub isolated: Vec<(NodeId, u64)>,
    /// (nodes on one side, until): no frame crosses between the side and the rest.
    pub partitions: Vec<(Vec<NodeId>, u64)>,
    /// (from, to, until).
    pub one_way: Vec<(NodeId, NodeId, u64)>,
}

impl Cuts {
    pub fn blocks(&self, from: NodeId, to: NodeId) -> bool {
        self.isolated.iter().any(|(n, _)| *n == from || *n == to)
            || self.partitions.iter().any(|(side, _)| side.contains(&from) != side.contains(&to))
            || self.one_way.iter().any(|(a, b, _)| *a == from && *b == to)
    }

    /// Drops the cuts that ended by `now_ms`; returns how many did.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.isolated.len() + self.partitions.len() + self.one_way.len();
        self.isolated.retain(|(_, until)| *until > now_ms);
        self.partitions.retain(|(_, until)| *until > now_ms);
        self.one_way.retain(|(_, _, until)| *until > now_ms);
        before - (self.isolated.len() + self.partitions.len() + self.one_way.len())
    }

    pub fn clear(&mut self) {
        *self = Cuts::default();
    }

    /// Nodes cut off from some peer (counted against the fault budget).
    pub fn impaired(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.isolated.iter().map(|(n, _)| *n).collect();
        for (side, _) in &self.partitions {
            v.extend(side);
        }
        v.extend(self.one_way.iter().map(|(a, _, _)| *a));
        v.sort_unstable();
        v.dedup();
        v
    }
}

pub struct Net {
    rng: ChaCha8Rng,
    frames: Vec<Frame>,
    next_order: u64,
    pub cuts: Cuts,
    pub dropped: u64,
    pub duplicated: u64,
}

/// What happened to a frame at send time.
pub enum Fate {
    Dropped,
    Queued { at_ms: u64, copies: u8 },
}

impl Net {
    pub fn new(rng: ChaCha8Rng) -> Net {
        Net { rng, frames: Vec::new(), next_order: 0, cuts: Cuts::default(), dropped: 0, duplicated: 0 }
    }

    fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.rng.gen_range(0..1_000_000) < ppm
    }

    fn latency_ms(&mut self, swarm: &Swarm, faults_on: bool) -> u64 {
        if !faults_on {
            return 1;
        }
        if self.chance(swarm.latency_tail_ppm) {
            return self.rng.gen_range(swarm.latency_max_ms..=swarm.latency_max_ms + swarm.latency_tail_ms);
        }
        self.rng.gen_range(swarm.latency_min_ms..=swarm.latency_max_ms)
    }

    pub fn send(
        &mut self,
        now_ms: u64,
        from: NodeId,
        to: NodeId,
        bytes: Bytes,
        swarm: &Swarm,
        faults_on: bool,
    ) -> Fate {
        if (faults_on && self.chance(swarm.drop_ppm)) || self.frames.len() >= FRAMES_IN_FLIGHT_MAX {
            self.dropped += 1;
            return Fate::Dropped;
        }
        let copies = if faults_on && self.chance(swarm.duplicate_ppm) { 2 } else { 1 };
        let mut first_at = 0;
        for copy in 0..copies {
            let at_ms = now_ms + self.latency_ms(swarm, faults_on);
            if copy == 0 {
                first_at = at_ms;
            } else {
                self.duplicated += 1;
            }
            self.frames.push(Frame { deliver_at_ms: at_ms, order: self.next_order, from, to, bytes: bytes.clone() });
            self.next_order += 1;
        }
        Fate::Queued { at_ms: first_at, copies }
    }

    /// Frames due by `now_ms` whose destination `ready` accepts (a paused node's frames
    /// wait), in arrival order; frames a cut blocks are dropped here.
    pub fn take_due(&mut self, now_ms: u64, ready: impl Fn(NodeId) -> bool) -> (Vec<Frame>, u64) {
        let mut due = Vec::new();
        let mut kept = Vec::with_capacity(self.frames.len());
        let mut cut = 0;
        for f in self.frames.drain(..) {
            if f.deliver_at_ms > now_ms || !ready(f.to) {
                kept.push(f);
            } else if self.cuts.blocks(f.from, f.to) {
                cut += 1;
            } else {
                due.push(f);
            }
        }
        self.frames = kept;
        due.sort_by_key(|f| (f.deliver_at_ms, f.order));
        (due, cut)
    }

    /// Drops every frame to or from `node` (it crashed: its sockets are gone).
    pub fn forget(&mut self, node: NodeId) {
        self.frames.retain(|f| f.to != node && f.from != node);
    }

    pub fn in_flight(&self) -> usize {
        self.frames.len()
    }
}
