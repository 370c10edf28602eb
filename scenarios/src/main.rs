//! `sluice-sim`: the simulator's command line (list, bugs, run, replay, sweep, shrink).
//!
//! The harness reads the wall clock to report how long seeds took (`wall_ms`); that never
//! enters a trace or a decision, so runs stay pure functions of (scenario, seed, bug).
#![allow(clippy::disallowed_methods)]

use clap::{Parser, Subcommand};
use sluice_core::bugs::Bug;
use sluice_reports::SeedResult;
use sluice_scenarios::catalog::{self, Scenario, SCENARIOS};
use sluice_scenarios::runner::{self, reproduce, Outcome};
use sluice_scenarios::shrink;
use sluice_sim::cluster::schedule::{parse_header, Fault, Schedule};
use sluice_sim::runtime::panic_message;
use sluice_sim::trace::first_difference;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "sluice-sim", version, about = "sluice's deterministic simulator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One scenario per line: name, then what it is about.
    List,
    /// One planted bug per line: name, then what it does wrong.
    Bugs,
    /// Run one seed; the last two lines are `trace-hash: ...` and `result: ...`; exit 1 on failure.
    Run {
        scenario: String,
        #[arg(long)]
        seed: u64,
        /// Switch on a planted bug (see `sluice-sim bugs`).
        #[arg(long)]
        bug: Option<String>,
        /// Write the whole trace here, one line per event.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Play this fault schedule instead of the one the seed draws (see `shrink`).
        #[arg(long)]
        schedule: Option<PathBuf>,
    },
    /// Re-run the run a trace file came from and confirm its hash.
    Replay { file: PathBuf },
    /// Run many seeds in parallel; writes DIR/summary.json, summary.md and report.html.
    Sweep {
        /// A scenario name, or `all` (each seed then runs a scenario chosen from the seed).
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Seeds as START..END (END excluded).
        #[arg(long, default_value = "0..200", value_parser = parse_range)]
        seeds: (u64, u64),
        /// Parallel workers; defaults to the number of cores.
        #[arg(long)]
        jobs: Option<usize>,
        #[arg(long)]
        bug: Option<String>,
        #[arg(long, default_value = "out/sweep")]
        out: PathBuf,
        /// Stop at the first failing seed.
        #[arg(long)]
        fail_fast: bool,
        /// Start no new seed after this many minutes of wall time (the nightly's time box);
        /// the summary covers the seeds that ran.
        #[arg(long)]
        minutes: Option<u64>,
    },
    /// Reduce a failing run's fault schedule to a minimal one that still fails.
    Shrink {
        scenario: String,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        bug: Option<String>,
        /// Where to write the schedule (default out/shrink/SCENARIO-SEED.schedule).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

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
    // The nodes' own log lines, for debugging one seed: `RUST_LOG=info sluice-sim run ...`.
    // Off unless asked for; never timestamped (the wall clock has no place in a run), so two
    // runs of a seed print the same lines.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .without_time()
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let result = match Cli::parse().command {
        Command::List => {
            for s in SCENARIOS {
                println!("{:<24} {}", s.name, s.about);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bugs => {
            for b in Bug::ALL {
                println!("{:<28} {}", b.name(), b.description());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { scenario, seed, bug, trace, schedule } => {
            run_cmd(&scenario, seed, bug.as_deref(), trace.as_deref(), schedule.as_deref())
        }
        Command::Replay { file } => replay(&file),
        Command::Sweep { scenario, seeds, jobs, bug, out, fail_fast, minutes } => {
            let time_box = minutes.map(|m| Duration::from_secs(m.saturating_mul(60)));
            sweep(&scenario, seeds, jobs, bug.as_deref(), &out, fail_fast, time_box)
        }
        Command::Shrink { scenario, seed, bug, out } => shrink_cmd(&scenario, seed, bug.as_deref(), out),
    };
    result.unwrap_or_else(|e| {
        eprintln!("sluice-sim: {e}");
        ExitCode::from(2)
    })
}

fn scenario(name: &str) -> Result<&'static Scenario, String> {
    catalog::find(name).ok_or_else(|| format!("no scenario {name:?}; `sluice-sim list` shows them"))
}

fn bug(name: Option<&str>) -> Result<Option<Bug>, String> {
    name.map(|n| Bug::from_name(n).ok_or_else(|| format!("no planted bug {n:?}; `sluice-sim bugs` shows them")))
        .transpose()
}

fn write_trace(path: &Path, outcome: &Outcome) -> Result<(), String> {
    let lines = outcome.trace.lines().ok_or("trace lines were not kept")?;
    std::fs::write(path, lines.join("\n") + "\n").map_err(|e| format!("cannot write trace to {}: {e}", path.display()))
}

fn run_cmd(
    name: &str,
    seed: u64,
    bug_name: Option<&str>,
    trace: Option<&Path>,
    schedule: Option<&Path>,
) -> Result<ExitCode, String> {
    let sc = scenario(name)?;
    let bug = bug(bug_name)?;
    let schedule = match schedule {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let (file_scenario, file_seed, file_bug) = parse_header(&text);
            if file_scenario.as_deref().is_some_and(|s| s != name) || file_seed.is_some_and(|s| s != seed) {
                eprintln!(
                    "note: {} was written for {} seed {}",
                    path.display(),
                    file_scenario.unwrap_or_default(),
                    file_seed.map_or("?".into(), |s| s.to_string())
                );
            }
            if file_bug.as_deref() != bug_name {
                eprintln!("note: {} was written for bug {}", path.display(), file_bug.as_deref().unwrap_or("none"));
            }
            Some(Schedule::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?)
        }
    };
    println!("scenario {name} seed {seed} bug {}", bug.map_or("none", Bug::name));
    let outcome = runner::run(sc, seed, bug, schedule, trace.is_some());
    println!("params: {}", outcome.params);
    if let Some(s) = &outcome.schedule {
        println!("schedule: {} events", s.events.len());
    }
    if let Some(path) = trace {
        write_trace(path, &outcome)?;
    }
    println!("stats: {}", outcome.stats);
    println!("simulated: {}.{:03}s", outcome.sim_ms / 1000, outcome.sim_ms % 1000);
    println!("trace-hash: {}", outcome.trace.hash_hex());
    println!("result: {}", outcome.result);
    Ok(if outcome.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn replay(path: &Path) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header: serde_json::Value = lines
        .first()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or("the first line is not a run header (write traces with `run --trace FILE`)")?;
    let name = header["scenario"].as_str().ok_or("the header names no scenario")?;
    let seed = header["seed"].as_u64().ok_or("the header names no seed")?;
    let bug_name = header["bug"].as_str().filter(|b| *b != "none");
    let sc = scenario(name)?;
    let bug = bug(bug_name)?;
    // The schedule the run played is in the trace: replay that, not a fresh draw.
    let mut schedule_text = String::new();
    for l in &lines {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
            if v["ev"] == "schedule" {
                schedule_text.push_str(&format!("at {}ms {}\n", v["at"], v["fault"].as_str().unwrap_or("")));
            }
        }
    }
    let schedule = match sc.kind {
        catalog::Kind::Cluster(_) => Some(Schedule::parse(&schedule_text)?),
        catalog::Kind::Store { .. } => None,
    };
    println!("replaying {name} seed {seed} bug {} from {}", bug.map_or("none", Bug::name), path.display());
    let outcome = runner::run(sc, seed, bug, schedule, true);
    let mut file_trace = sluice_sim::trace::Trace::new(false);
    for l in &lines {
        file_trace.record(l);
    }
    println!("trace-hash: {}", outcome.trace.hash_hex());
    println!("result: {}", outcome.result);
    if file_trace.hash() == outcome.trace.hash() {
        println!("replay: same trace ({} lines, hash {})", lines.len(), file_trace.hash_hex());
        Ok(ExitCode::SUCCESS)
    } else {
        let again = outcome.trace.lines().expect("kept");
        match first_difference(&lines, again) {
            Some((n, a, b)) => println!("replay: DIFFERENT at line {n}:\n  file:   {a:?}\n  replay: {b:?}"),
            None => println!("replay: DIFFERENT hash with the same lines"),
        }
        Ok(ExitCode::from(1))
    }
}

fn run_seed(sc: &'static Scenario, seed: u64, bug: Option<Bug>) -> SeedResult {
    let started = Instant::now();
    let run = std::panic::catch_unwind(|| runner::run(sc, seed, bug, None, false));
    let wall_ms = started.elapsed().as_millis() as u64;
    let reproduce = reproduce(sc, seed, bug);
    let base = SeedResult {
        scenario: sc.name.to_string(),
        seed,
        bug: bug.map(|b| b.name().to_string()),
        params: String::new(),
        result: String::new(),
        trace_hash: String::new(),
        sim_secs: 0.0,
        wall_ms,
        faults: Default::default(),
        reproduce,
        latency_ms: Default::default(),
        coverage: Default::default(),
        timeline: Vec::new(),
    };
    match run {
        Ok(o) => SeedResult {
            params: o.params,
            result: o.result,
            trace_hash: o.trace.hash_hex(),
            sim_secs: o.sim_ms as f64 / 1000.0,
            faults: o.faults,
            latency_ms: o.latency_ms,
            coverage: o.coverage,
            timeline: o.timeline,
            ..base
        },
        Err(panic) => SeedResult { result: format!("fail: panic: {}", panic_message(&*panic)), ..base },
    }
}

fn sweep(
    name: &str,
    (start, end): (u64, u64),
    jobs: Option<usize>,
    bug_name: Option<&str>,
    out: &Path,
    fail_fast: bool,
    time_box: Option<Duration>,
) -> Result<ExitCode, String> {
    let fixed = if name == "all" { None } else { Some(scenario(name)?) };
    let bug = bug(bug_name)?;
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let total = end - start;
    println!("sweep: scenario {name}, seeds {start}..{end}, bug {}, {jobs} jobs", bug.map_or("none", Bug::name));
    let next = AtomicU64::new(start);
    let done = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let timed_out = AtomicBool::new(false);
    let results = Mutex::new(Vec::with_capacity(total.min(1 << 20) as usize));
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if time_box.is_some_and(|limit| started.elapsed() >= limit) {
                    timed_out.store(true, Ordering::Relaxed);
                    break;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let sc = fixed.unwrap_or_else(|| catalog::for_seed(seed));
                let result = run_seed(sc, seed, bug);
                if !result.passed() {
                    failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!("\n{} seed {seed} FAILED: {}\n  reproduce: {}", sc.name, result.result, result.reproduce);
                    if fail_fast {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                results.lock().expect("results").push(result);
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if tty {
                    let width = 40;
                    let filled = (finished * width / total) as usize;
                    eprint!(
                        "\r[{}{}] {finished}/{total} failures: {}",
                        "#".repeat(filled),
                        ".".repeat(width as usize - filled),
                        failures.load(Ordering::Relaxed)
                    );
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
    if timed_out.load(Ordering::Relaxed) {
        let last = results.iter().map(|r| r.seed).max();
        println!(
            "time box reached: {} of {total} seeds ran{}",
            results.len(),
            last.map(|l| format!(" (the last was {l})")).unwrap_or_default()
        );
    }
    let failed: Vec<&SeedResult> = results.iter().filter(|r| !r.passed()).collect();
    let sim: f64 = results.iter().map(|r| r.sim_secs).sum();
    println!(
        "{} seeds in {:.1}s ({sim:.0} simulated seconds): {} passed, {} failed",
        results.len(),
        started.elapsed().as_secs_f64(),
        results.len() - failed.len(),
        failed.len()
    );
    for r in &failed {
        println!("FAIL {} seed {}: {}\n  {}", r.scenario, r.seed, r.result, r.reproduce);
    }
    // Seeds are handed out in order and every seed handed out finishes, so the seeds that ran
    // are one range even when the time box or --fail-fast cut the sweep short.
    let ran_end = results.iter().map(|r| r.seed + 1).max().unwrap_or(start);
    let title = format!("sluice-sim sweep: {name}, seeds {start}..{ran_end}, bug {}", bug.map_or("none", Bug::name));
    let known: Vec<String> = sluice_core::coverage::all_keys()
        .into_iter()
        .chain(Fault::KINDS.iter().map(|k| format!("fault:{k}")))
        .collect();
    sluice_reports::write_sweep(out, &title, &results, &known)
        .map_err(|e| format!("cannot write the summary to {}: {e}", out.display()))?;
    println!("summary: {0}/summary.json, {0}/summary.md, {0}/report.html", out.display());
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn shrink_cmd(name: &str, seed: u64, bug_name: Option<&str>, out: Option<PathBuf>) -> Result<ExitCode, String> {
    let sc = scenario(name)?;
    let bug = bug(bug_name)?;
    let tty = std::io::stderr().is_terminal();
    let mut progress = |runs: usize, events: usize| {
        if tty {
            eprint!("\rrun {runs}: {events} events");
            let _ = std::io::stderr().flush();
        }
    };
    let shrunk = shrink::shrink(sc, seed, bug, &mut progress)?;
    if tty {
        eprintln!();
    }
    let path = out.unwrap_or_else(|| PathBuf::from(format!("out/shrink/{name}-{seed}.schedule")));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let note = format!(
        "shrunk from {} to {} events in {} runs; still fails {}",
        shrunk.original_events,
        shrunk.schedule.events.len(),
        shrunk.runs,
        shrunk.invariant
    );
    std::fs::write(&path, shrink::schedule_file(sc, seed, bug, &shrunk.schedule, &note))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("{note}");
    print!("{}", shrunk.schedule);
    let bug_arg = bug.map(|b| format!(" --bug {b}")).unwrap_or_default();
    println!(
        "replay: cargo run --release -p sluice-scenarios --bin sluice-sim -- run {name} --seed {seed}{bug_arg} --schedule {}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
