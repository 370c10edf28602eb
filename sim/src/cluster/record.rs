//! What a run keeps for its report beside the trace: the timeline a failed run is drawn from
//! (leaders, faults, healing, the violation), the state each scheduled fault found its target
//! in, and the commit latency of every acknowledged publish. Nothing here feeds back into
//! the run: it reads the world and the lines the trace already records, and draws no random
//! number, so a seed's trace hash does not depend on it.

use super::schedule::Fault;
use super::world::World;
use sluice_core::env::NodeId;
use sluice_core::raft::Role;
use sluice_reports::{latency_bucket, TimelineEvent, TIMELINE_EVENTS_MAX};

/// Trace events the timeline shows besides the scheduled faults (`Fault::KINDS`).
const TIMELINE_EXTRA_KINDS: &[&str] = &["leader", "restart-all", "heal-all"];

impl World {
    /// Whether the report's timeline draws trace lines of kind `ev`.
    pub(super) fn on_timeline(ev: &str) -> bool {
        Fault::KINDS.contains(&ev) || TIMELINE_EXTRA_KINDS.contains(&ev)
    }

    /// Keeps a trace line for the timeline if its kind is one the report draws.
    pub(super) fn note_timeline(&mut self, ev: &str, line: &str) {
        if !Self::on_timeline(ev) || self.timeline.len() >= TIMELINE_EVENTS_MAX {
            return;
        }
        // The line is our own JSON; a line that does not parse is kept without its fields.
        let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        let num = |k: &str| fields.get(k).and_then(serde_json::Value::as_u64);
        let nodes: Vec<u64> = match (num("node"), fields.get("side").and_then(|s| s.as_array())) {
            (Some(n), _) => vec![n],
            (None, Some(side)) => side.iter().filter_map(serde_json::Value::as_u64).collect(),
            (None, None) => num("from").into_iter().collect(),
        };
        let until_ms = num("down_ms").or_else(|| num("ms")).map(|ms| self.t_ms + ms);
        let detail = fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "t" | "ev"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        self.timeline.push(TimelineEvent { t_ms: self.t_ms, kind: ev.to_string(), nodes, until_ms, detail });
    }

    /// Node `n`'s state, as fault coverage names it: `down`, `paused`, or its most telling
    /// role over the streams it replicates (`leader`, `catching-up`, `candidate`,
    /// `follower`), with `+checkpoint` while checkpoint work is queued or out.
    pub(super) fn node_state(&self, n: NodeId) -> String {
        let i = n as usize - 1;
        let Some(node) = self.nodes.get(i).and_then(Option::as_ref) else { return "down".into() };
        if self.paused_until[i].is_some() {
            return "paused".into();
        }
        let (mut leader, mut catching_up, mut candidate) = (false, false, false);
        for s in &self.streams {
            let Ok(r) = node.replica_status(&s.name) else { continue };
            leader |= r.role == Role::Leader;
            candidate |= matches!(r.role, Role::Candidate | Role::PreCandidate);
            catching_up |= r.catching_up;
        }
        let role = match (leader, catching_up, candidate) {
            (true, _, _) => "leader",
            (false, true, _) => "catching-up",
            (false, false, true) => "candidate",
            _ => "follower",
        };
        if node.pending_work() > 0 || self.work_busy(i) {
            format!("{role}+checkpoint")
        } else {
            role.into()
        }
    }

    /// Counts a fault that struck, under `fault:KIND@STATE`.
    pub(super) fn note_fault_state(&mut self, kind: &str, state: &str) {
        *self.stats.coverage.entry(format!("fault:{kind}@{state}")).or_insert(0) += 1;
    }

    /// A publish of `id` went out; only its first send counts.
    pub(super) fn note_sent(&mut self, id: u64) {
        self.first_sent.entry(id).or_insert(self.t_ms);
    }

    /// A publish of `id` was acknowledged: its latency goes into the histogram.
    pub(super) fn note_acked(&mut self, id: u64) {
        if let Some(sent_ms) = self.first_sent.remove(&id) {
            let bucket = latency_bucket(self.t_ms - sent_ms);
            *self.stats.latency_ms.entry(bucket).or_insert(0) += 1;
        }
    }
}
