//! Shrinking a failing run's fault schedule: remove events while the run still fails the
//! same invariant (delta debugging: halves, then quarters, down to single events), so what is
//! left is a short schedule a person can read, edit and replay with `run --schedule FILE`.

use crate::catalog::Scenario;
use crate::runner::{run, schedule_for};
use sluice_core::bugs::Bug;
use sluice_sim::cluster::schedule::Schedule;

/// Re-runs at most this many times.
pub const RUNS_MAX: usize = 400;

pub struct Shrunk {
    pub invariant: String,
    pub original_events: usize,
    pub schedule: Schedule,
    pub runs: usize,
}

/// `Err` if the scenario has no schedule or the run passes.
pub fn shrink(
    scenario: &Scenario,
    seed: u64,
    bug: Option<Bug>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Shrunk, String> {
    let schedule = schedule_for(scenario, seed).ok_or("this scenario has no fault schedule to shrink")?;
    let first = run(scenario, seed, bug, Some(schedule.clone()), false);
    let Some(invariant) = first.invariant().map(str::to_string) else {
        return Err(format!("{} seed {seed} passes: nothing to shrink", scenario.name));
    };
    let original_events = schedule.events.len();
    let mut events = schedule.events;
    let mut runs = 1;
    let mut chunk = events.len().div_ceil(2).max(1);
    while !events.is_empty() && runs < RUNS_MAX {
        let mut start = 0;
        let mut removed_any = false;
        while start < events.len() && runs < RUNS_MAX {
            let mut candidate = events.clone();
            let end = (start + chunk).min(candidate.len());
            candidate.drain(start..end);
            runs += 1;
            let out = run(scenario, seed, bug, Some(Schedule { events: candidate.clone() }), false);
            progress(runs, candidate.len());
            if out.invariant() == Some(invariant.as_str()) {
                events = candidate;
                removed_any = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !removed_any {
            break;
        }
        chunk = (chunk / 2).max(1);
    }
    Ok(Shrunk { invariant, original_events, schedule: Schedule { events }, runs })
}

/// The schedule file: header lines naming the run, then the events.
pub fn schedule_file(scenario: &Scenario, seed: u64, bug: Option<Bug>, schedule: &Schedule, note: &str) -> String {
    format!(
        "# sluice-sim fault schedule ({note})\n# one event per line: at <ms>ms <fault>; see sim/src/cluster/schedule.rs\nscenario {}\nseed {seed}\nbug {}\n{schedule}",
        scenario.name,
        bug.map_or("none", Bug::name)
    )
}
