//! `sim-speed`: how fast the simulator runs (docs/benchmarks.md, "Simulator speed").
//!
//! A 3-node cluster with one stream of 3 replicas under steady publishes and no faults, for a
//! fixed stretch of simulated time, at a few publish rates: it prints simulated seconds per
//! wall second (the goal is 1,000 or more) and publishes acknowledged per wall second. The
//! baseline is the run's own wall time; the machine's noise cancels out of the ratio, not of
//! the absolute figures. Seeds per minute come from a sweep (`sluice-sim sweep`), which
//! prints its wall time.
//!
//! Usage: `sim-speed [SIM_SECONDS] [RATES]` (default 60 s, and rates `1,10,30,80,300` publishes
//! a second), built with `--release`. A single rate is handy under `perf record`.
#![allow(clippy::disallowed_methods)] // the wall clock measures the harness, never drives it

use sluice_sim::cluster::schedule::Schedule;
use sluice_sim::cluster::swarm::Swarm;
use sluice_sim::cluster::{self, RunSpec};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let sim_seconds: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 60,
        Some(Ok(s)) if (1..=3_600).contains(&s) => s,
        Some(_) => return usage(),
    };
    let rates: Vec<u32> = match std::env::args().nth(2) {
        None => vec![1, 10, 30, 80, 300],
        Some(list) => match list.split(',').map(str::parse).collect::<Result<Vec<u32>, _>>() {
            Ok(rates) if !rates.is_empty() && rates.iter().all(|r| (1..=10_000).contains(r)) => rates,
            _ => return usage(),
        },
    };
    println!(
        "3 nodes, 1 stream x 3 replicas, no faults, {sim_seconds} s of publishing (plus the liveness and final checks)"
    );
    println!("{:>12} {:>10} {:>10} {:>14} {:>16}", "publish/s", "sim s", "wall s", "sim s/wall s", "acked/wall s");
    for publish_per_sec in rates {
        let swarm = Swarm {
            nodes: 3,
            replicas: vec![3],
            safety_ms: sim_seconds * 1_000,
            publish_per_sec,
            stream_churn: false,
            limit_msgs: None,
            forced_snapshot_per_min: 0,
            buggify_ppm: 0,
            ..Swarm::from_seed(1).without_faults()
        };
        let spec = RunSpec {
            scenario: "sim-speed".into(),
            swarm,
            schedule: Schedule::default(),
            bug: None,
            keep_trace: false,
        };
        let started = Instant::now();
        let out = cluster::run(spec);
        let wall_s = started.elapsed().as_secs_f64();
        if let Err(v) = &out.result {
            eprintln!("the run failed: {v}");
            return ExitCode::FAILURE;
        }
        let sim_s = out.sim_ms as f64 / 1_000.0;
        println!(
            "{publish_per_sec:>12} {sim_s:>10.1} {wall_s:>10.2} {:>14.0} {:>16.0}",
            sim_s / wall_s,
            out.stats.acked as f64 / wall_s
        );
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: sim-speed [SIM_SECONDS in 1..=3600] [RATES, e.g. 1,10,30 (each in 1..=10000)]");
    ExitCode::from(2)
}
