//! The simulator's own tests: the regression corpus (planted bugs caught, open findings
//! still failing, clean seeds passing), cluster runs that are pure functions of their seed,
//! and a short clean sweep of every scenario but the open-finding one.

use sluice_core::bugs::Bug;
use sluice_scenarios::catalog::{self, SCENARIOS};
use sluice_scenarios::corpus::{parse, CORPUS};
use sluice_scenarios::runner::run;
use sluice_sim::trace::first_difference;

#[test]
fn the_regression_corpus_holds() {
    let entries = parse(CORPUS).expect("the corpus parses");
    assert!(entries.iter().filter(|e| e.bug.is_some()).count() >= 5, "planted bugs in the corpus");
    for e in entries {
        let sc = catalog::find(&e.scenario).unwrap_or_else(|| panic!("line {}: no scenario {}", e.line, e.scenario));
        let what = format!("corpus line {}: {} seed {} ({})", e.line, e.scenario, e.seed, e.note);
        match (&e.bug, &e.expect) {
            (Some(name), _) => {
                let bug = Bug::from_name(name).unwrap_or_else(|| panic!("{what}: no bug {name}"));
                let with = run(sc, e.seed, Some(bug), None, false);
                assert!(!with.passed(), "{what}: the planted bug {name} went unnoticed");
                let without = run(sc, e.seed, None, None, false);
                assert!(without.passed(), "{what}: fails without the bug too: {}", without.result);
            }
            (None, Some(invariant)) => {
                let out = run(sc, e.seed, None, None, false);
                assert_eq!(
                    out.invariant(),
                    Some(invariant.as_str()),
                    "{what}: the open finding changed ({}); update the corpus",
                    out.result
                );
            }
            (None, None) => {
                let out = run(sc, e.seed, None, None, false);
                assert!(out.passed(), "{what}: {}", out.result);
            }
        }
    }
}

#[test]
fn a_cluster_run_is_a_pure_function_of_its_seed() {
    for (name, seed) in [("swarm", 2), ("network-chaos", 3), ("bit-flip", 5), ("backup-restore", 4)] {
        let sc = catalog::find(name).unwrap();
        let a = run(sc, seed, None, None, true);
        let b = run(sc, seed, None, None, true);
        if a.trace.hash() != b.trace.hash() {
            let (line, l, r) =
                first_difference(a.trace.lines().unwrap(), b.trace.lines().unwrap()).expect("some line differs");
            panic!("{name} seed {seed} diverged at trace line {line}:\n  first:  {l:?}\n  second: {r:?}");
        }
        assert!(a.trace.len() > 1_000, "{name}: the trace records messages and operations");
        assert_ne!(a.trace.hash(), run(sc, seed + 1, None, None, false).trace.hash(), "{name}: seeds differ");
    }
}

#[test]
fn every_scenario_runs_and_injects_what_it_is_about() {
    for sc in SCENARIOS.iter().filter(|s| !["limits", "store-crash"].contains(&s.name)) {
        let out = run(sc, 1_000, None, None, false);
        // Seed 1000 of every scenario passes today; a failure here is a finding.
        assert!(out.passed(), "{} seed 1000: {}", sc.name, out.result);
        assert!(
            out.stats.contains("acked ") && !out.stats.contains("acked 0 "),
            "{}: nothing acknowledged: {}",
            sc.name,
            out.stats
        );
        let faults: u64 = out.faults.values().sum();
        assert!(faults > 0, "{}: no fault injected: {:?}", sc.name, out.faults);
        if sc.name == "backup-restore" {
            assert!(
                !out.stats.contains("restores-checked 0 ") && !out.stats.ends_with("hostile-archives 0"),
                "backup-restore: nothing restored or no damaged archive read: {}",
                out.stats
            );
        }
    }
}

/// Kept findings (`scenarios/findings/*.schedule`): a fault schedule that once made the clean
/// build fail, replayed against its scenario and seed; each must pass now.
#[test]
fn kept_findings_pass() {
    use sluice_sim::cluster::schedule::{parse_header, Schedule};
    let text = include_str!("../findings/meta-scratch-lost.schedule");
    let (scenario, seed, _) = parse_header(text);
    let sc = catalog::find(&scenario.expect("a scenario line")).expect("a known scenario");
    let schedule = Schedule::parse(text).expect("the schedule parses");
    assert!(schedule.events.len() > 10, "the schedule holds the faults that found it");
    let out = run(sc, seed.expect("a seed line"), None, Some(schedule), false);
    assert!(out.passed(), "meta-scratch-lost: {}", out.result);
}
