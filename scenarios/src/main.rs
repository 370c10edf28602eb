//! `sluice-sim`: the simulator's command line.
//!
//! Today it drives the store crash checker: `store-run` replays one seed exactly,
//! `store-sweep` runs a range of seeds in parallel and writes a summary. Every failure
//! prints the one command that reproduces it.
//!
//! The harness reads the wall clock to report how long seeds took (`wall_ms`); that never
//! enters a trace or a decision, so runs stay pure functions of their seed.
#![allow(clippy::disallowed_methods)]

use clap::{Parser, Subcommand};
use sluice_reports::SeedResult;
use sluice_sim::runtime::{run_store_seed, StoreSeedOutcome};
use sluice_sim::workload::CaseParams;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "sluice-sim", version, about = "sluice's deterministic simulator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one store crash seed: prints its parameters, then `trace-hash: ...` and
    /// `result: pass` or `result: fail: ...`; exits 1 on failure.
    StoreRun {
        #[arg(long)]
        seed: u64,
        /// Operations in the workload.
        #[arg(long, default_value_t = DEFAULT_STEPS)]
        steps: usize,
        /// Write the whole trace here, one line per event.
        #[arg(long)]
        trace: Option<PathBuf>,
    },
    /// Run store crash seeds in parallel and write DIR/summary.json and DIR/summary.md;
    /// exits 1 if any seed failed.
    StoreSweep {
        /// Seeds as START..END (END excluded).
        #[arg(long, default_value = "0..2000", value_parser = parse_range)]
        seeds: (u64, u64),
        #[arg(long, default_value_t = DEFAULT_STEPS)]
        steps: usize,
        /// Parallel workers; defaults to the number of cores.
        #[arg(long)]
        jobs: Option<usize>,
        #[arg(long, default_value = "out/store-sweep")]
        out: PathBuf,
        /// Stop at the first failing seed.
        #[arg(long)]
        fail_fast: bool,
    },
}

const DEFAULT_STEPS: usize = 500;

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text.split_once("..").ok_or("expected START..END")?;
    let a: u64 = a.parse().map_err(|e| format!("bad start: {e}"))?;
    let b: u64 = b.parse().map_err(|e| format!("bad end: {e}"))?;
    if a >= b {
        return Err(format!("empty range {a}..{b}"));
    }
    Ok((a, b))
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::StoreRun { seed, steps, trace } => store_run(seed, steps, trace.as_deref()),
        Command::StoreSweep { seeds, steps, jobs, out, fail_fast } => store_sweep(seeds, steps, jobs, &out, fail_fast),
    }
}

fn reproduce(seed: u64, steps: usize) -> String {
    let steps = if steps == DEFAULT_STEPS { String::new() } else { format!(" --steps {steps}") };
    format!("cargo run --release -p sluice-scenarios --bin sluice-sim -- store-run --seed {seed}{steps}")
}

fn result_line(outcome: &StoreSeedOutcome) -> String {
    match &outcome.result {
        Ok(_) => "pass".to_string(),
        Err(v) => format!("fail: {v}"),
    }
}

fn store_run(seed: u64, steps: usize, trace_file: Option<&Path>) -> ExitCode {
    let outcome = run_store_seed(seed, steps, trace_file.is_some());
    println!("seed {seed}: {}", CaseParams(&outcome.case));
    if let (Some(path), Some(lines)) = (trace_file, outcome.trace.lines()) {
        if let Err(e) = std::fs::write(path, lines.join("\n") + "\n") {
            eprintln!("sluice-sim: cannot write trace to {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if let Ok(stats) = &outcome.result {
        println!(
            "steps {} crashes {} unsynced-lost {} cuts {} faults {:?}",
            stats.steps, stats.crashes, stats.unsynced_lost, stats.cuts, stats.faults
        );
    }
    println!("trace-hash: {}", outcome.trace.hash_hex());
    println!("result: {}", result_line(&outcome));
    if outcome.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs one seed, turning a panic (a bug: an assertion in the store or the checker) into a
/// failed result rather than killing the sweep.
fn run_seed(seed: u64, steps: usize) -> SeedResult {
    let started = Instant::now();
    let run = std::panic::catch_unwind(|| run_store_seed(seed, steps, false));
    let wall_ms = started.elapsed().as_millis() as u64;
    let reproduce = reproduce(seed, steps);
    match run {
        Ok(outcome) => {
            let stats = outcome.result.as_ref().ok().cloned().unwrap_or_default();
            SeedResult {
                seed,
                params: CaseParams(&outcome.case).to_string(),
                result: result_line(&outcome),
                trace_hash: outcome.trace.hash_hex(),
                steps: stats.steps as u64,
                crashes: stats.crashes,
                unsynced_lost: stats.unsynced_lost,
                cuts: stats.cuts,
                faults: stats.faults.iter().map(|(k, n)| (format!("{k:?}"), *n)).collect(),
                wall_ms,
                reproduce,
            }
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            SeedResult {
                seed,
                params: String::new(),
                result: format!("fail: panic: {message}"),
                trace_hash: String::new(),
                steps: 0,
                crashes: 0,
                unsynced_lost: 0,
                cuts: 0,
                faults: Default::default(),
                wall_ms,
                reproduce,
            }
        }
    }
}

fn store_sweep((start, end): (u64, u64), steps: usize, jobs: Option<usize>, out: &Path, fail_fast: bool) -> ExitCode {
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let total = end - start;
    println!("store sweep: seeds {start}..{end}, {steps} steps each, {jobs} jobs");
    let next = AtomicU64::new(start);
    let done = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let results = Mutex::new(Vec::with_capacity(total as usize));
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let result = run_seed(seed, steps);
                if !result.passed() {
                    failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!("\nseed {seed} FAILED: {}\n  reproduce: {}", result.result, result.reproduce);
                    if fail_fast {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                results.lock().expect("results").push(result);
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if tty {
                    eprint!("\r[{finished}/{total}] failures: {}", failures.load(Ordering::Relaxed));
                    let _ = std::io::stderr().flush();
                }
            });
        }
    });
    if tty {
        eprintln!();
    }
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|r| r.seed);
    let failed: Vec<&SeedResult> = results.iter().filter(|r| !r.passed()).collect();
    let crashes: u64 = results.iter().map(|r| r.crashes).sum();
    let lost: u64 = results.iter().map(|r| r.unsynced_lost).sum();
    let cuts: u64 = results.iter().map(|r| r.cuts).sum();
    println!(
        "{} seeds in {:.1}s: {} passed, {} failed; {crashes} crashes, {cuts} recovery cuts, {lost} unsynced messages lost (allowed)",
        results.len(),
        started.elapsed().as_secs_f64(),
        results.len() - failed.len(),
        failed.len()
    );
    for r in &failed {
        println!("FAIL seed {}: {}\n  {}", r.seed, r.result, r.reproduce);
    }
    if let Err(e) = sluice_reports::write_sweep(out, "sluice store crash sweep", &results) {
        eprintln!("sluice-sim: cannot write the summary to {}: {e}", out.display());
        return ExitCode::from(2);
    }
    println!("summary: {}/summary.json, {}/summary.md", out.display(), out.display());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
