//! Runs one (scenario, seed, bug[, schedule]) and reduces the outcome to what the command
//! line prints and a sweep records.

use crate::catalog::{Kind, Scenario};
use sluice_core::bugs::Bug;
use sluice_reports::TimelineEvent;
use sluice_sim::cluster::schedule::Schedule;
use sluice_sim::cluster::{self, RunSpec};
use sluice_sim::runtime::run_store_seed_with_bug;
use sluice_sim::trace::Trace;
use sluice_sim::workload::CaseParams;
use std::collections::BTreeMap;

pub struct Outcome {
    pub params: String,
    /// `pass` or `fail: <invariant>: <detail>`.
    pub result: String,
    pub trace: Trace,
    pub sim_ms: u64,
    pub faults: BTreeMap<String, u64>,
    /// One line of what the run did (acks, snapshots, catch-ups...).
    pub stats: String,
    /// The fault schedule the run played (cluster scenarios).
    pub schedule: Option<Schedule>,
    /// For the report: commit latencies, rare paths reached, and (failed runs) the timeline.
    pub latency_ms: BTreeMap<u64, u64>,
    pub coverage: BTreeMap<String, u64>,
    pub timeline: Vec<TimelineEvent>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.result == "pass"
    }

    /// The invariant a failure names.
    pub fn invariant(&self) -> Option<&str> {
        sluice_reports::invariant_of(&self.result)
    }
}

/// The command that replays a run.
pub fn reproduce(scenario: &Scenario, seed: u64, bug: Option<Bug>) -> String {
    let bug = bug.map(|b| format!(" --bug {b}")).unwrap_or_default();
    format!("cargo run --release -p sluice-scenarios --bin sluice-sim -- run {} --seed {seed}{bug}", scenario.name)
}

/// The schedule a cluster scenario draws for `seed` (`None` for the store scenario).
pub fn schedule_for(scenario: &Scenario, seed: u64) -> Option<Schedule> {
    match scenario.kind {
        Kind::Cluster(swarm) => Some(Schedule::generate(&swarm(seed))),
        Kind::Store { .. } => None,
    }
}

pub fn run(scenario: &Scenario, seed: u64, bug: Option<Bug>, schedule: Option<Schedule>, keep_trace: bool) -> Outcome {
    match scenario.kind {
        Kind::Cluster(make) => {
            let swarm = make(seed);
            let schedule = schedule.unwrap_or_else(|| Schedule::generate(&swarm));
            let params = swarm.to_string();
            let spec =
                RunSpec { scenario: scenario.name.to_string(), swarm, schedule: schedule.clone(), bug, keep_trace };
            let out = cluster::run(spec);
            let s = &out.stats;
            Outcome {
                params,
                result: match &out.result {
                    Ok(()) => "pass".into(),
                    Err(v) => format!("fail: {v}"),
                },
                stats: format!(
                    "acked {} reads-checked {} leaders {} compactions {} snapshots-restored {} catch-ups {} \
                     snapshot-requests {} over-budget-skipped {} schedule-events {} restores-checked {} \
                     hostile-archives {}",
                    s.acked,
                    s.reads_checked,
                    s.leaders_seen,
                    s.compactions,
                    s.snapshots_restored,
                    s.catchups_completed,
                    s.snapshot_requests,
                    s.over_budget,
                    schedule.events.len(),
                    s.restores_checked,
                    s.hostile_archives
                ),
                faults: out.stats.faults.clone(),
                trace: out.trace,
                sim_ms: out.sim_ms,
                schedule: Some(schedule),
                latency_ms: out.stats.latency_ms.clone(),
                coverage: out.stats.coverage.clone(),
                timeline: if out.result.is_err() { out.timeline } else { Vec::new() },
            }
        }
        Kind::Store { steps } => {
            let out = run_store_seed_with_bug(seed, steps, keep_trace, bug);
            let (stats, faults) = match &out.result {
                Ok(s) => (
                    format!(
                        "steps {} crashes {} unsynced-lost {} cuts {}",
                        s.steps, s.crashes, s.unsynced_lost, s.cuts
                    ),
                    s.faults
                        .iter()
                        .map(|(k, n)| (format!("{k:?}"), *n))
                        .chain([("crash".to_string(), s.crashes)])
                        .collect(),
                ),
                Err(_) => (String::new(), BTreeMap::new()),
            };
            Outcome {
                params: CaseParams(&out.case).to_string(),
                result: match &out.result {
                    Ok(_) => "pass".into(),
                    Err(v) => format!("fail: {v}"),
                },
                trace: out.trace,
                // The store checker counts operations, not simulated time.
                sim_ms: 0,
                faults,
                stats,
                schedule: None,
                latency_ms: BTreeMap::new(),
                coverage: BTreeMap::new(),
                timeline: Vec::new(),
            }
        }
    }
}
