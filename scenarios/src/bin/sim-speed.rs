//! `sim-speed`: how fast the simulator runs (docs/benchmarks.md, "Simulator speed").
//!
//! A 3-node cluster with one stream of 3 replicas under steady publishes and no faults, for a
//! fixed stretch of simulated time, at a few publish rates: it prints simulated seconds per
//! wall second (the goal is 1,000 or more) and publishes acknowledged per wall second. The
//! baseline is the run's own wall time; the machine's noise cancels out of the ratio, not of
//! the absolute figures. Seeds per minute come from a sweep (`sluice-sim sweep`), which
//! prints its wall time.
//!
//! Each rate runs `REPEATS` times (the same seeded run each time) and the table shows the
//! fastest and the median: on a shared 2-core machine single runs of tens of milliseconds
//! vary by a third, and the fastest is the best estimate of what the harness itself costs.
//!
//! Usage: `sim-speed [SIM_SECONDS] [RATES] [REPEATS]` (default 60 s, rates `1,10,30,80,300`
//! publishes a second, 5 repeats), built with `--release`. A single rate is handy under
//! `perf record`.
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
    let repeats: usize = match std::env::args().nth(3).map(|a| a.parse()) {
        None => 5,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return usage(),
    };
    println!(
        "3 nodes, 1 stream x 3 replicas, no faults, {sim_seconds} s of publishing (plus the liveness and final checks), fastest and median of {repeats} runs"
    );
    println!(
        "{:>10} {:>7} {:>8} {:>8} {:>12} {:>12} {:>14}",
        "publish/s", "sim s", "wall s", "median", "sim s/wall s", "median", "acked/wall s"
    );
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
        let mut walls_s = Vec::with_capacity(repeats);
        let mut sim_s = 0.0;
        let mut acked = 0u64;
        for _ in 0..repeats {
            let spec = RunSpec {
                scenario: "sim-speed".into(),
                swarm: swarm.clone(),
                schedule: Schedule::default(),
                bug: None,
                keep_trace: false,
            };
            let started = Instant::now();
            let out = cluster::run(spec);
            walls_s.push(started.elapsed().as_secs_f64());
            if let Err(v) = &out.result {
                eprintln!("the run failed: {v}");
                return ExitCode::FAILURE;
            }
            sim_s = out.sim_ms as f64 / 1_000.0;
            acked = out.stats.acked;
        }
        walls_s.sort_by(f64::total_cmp);
        let (fastest, median) = (walls_s[0], walls_s[walls_s.len() / 2]);
        println!(
            "{publish_per_sec:>10} {sim_s:>7.1} {fastest:>8.3} {median:>8.3} {:>12.0} {:>12.0} {:>14.0}",
            sim_s / fastest,
            sim_s / median,
            acked as f64 / fastest
        );
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: sim-speed [SIM_SECONDS in 1..=3600] [RATES, e.g. 1,10,30 (each in 1..=10000)] [REPEATS in 1..=100]"
    );
    ExitCode::from(2)
}
