//! Runs one seed inside a madsim runtime, on its own OS thread.
//!
//! A fresh thread per seed because std seeds its hash keys once per thread: a second runtime
//! on the same thread would not be deterministic if anything hashed with `RandomState`
//! (madsim's own note). Threads are the harness's business, never the code under test's.
#![allow(clippy::disallowed_methods)]

use crate::clock::SimClock;
use crate::store_check::{run_store_check, StoreRunStats, TimeSource, Violation};
use crate::time::WALL_ORIGIN_NS;
use crate::trace::Trace;
use crate::workload::{store_case, CaseParams, StoreCase};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_core::bugs::Bug;
use sluice_faultfs::FaultFs;

/// Runs `f` inside a madsim runtime seeded with `seed`, on a fresh thread.
pub fn in_madsim<T, F>(seed: u64, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    std::thread::Builder::new()
        .name(format!("sim-seed-{seed}"))
        .spawn(move || {
            let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            runtime.block_on(async move { f() })
        })
        .expect("spawn a simulation thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The message of a caught panic (a `String` or `&str` payload; anything else is named so).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "non-string panic".into())
}

/// The outcome of one store crash seed.
pub struct StoreSeedOutcome {
    pub case: StoreCase,
    pub result: Result<StoreRunStats, Violation>,
    pub trace: Trace,
}

/// Runs store crash case `seed` with `steps` operations in madsim, on a fresh thread: the
/// store's clock is a `SimClock` with skew and drift drawn from the seed, and time moves with
/// madsim's.
pub fn run_store_seed(seed: u64, steps: usize, keep_lines: bool) -> StoreSeedOutcome {
    run_store_seed_with_bug(seed, steps, keep_lines, None)
}

/// [`run_store_seed`] with a planted bug switched on for the run's thread.
pub fn run_store_seed_with_bug(seed: u64, steps: usize, keep_lines: bool, bug: Option<Bug>) -> StoreSeedOutcome {
    in_madsim(seed, move || {
        sluice_core::bugs::set(bug);
        let outcome = run_store_case_here(seed, steps, keep_lines, bug);
        sluice_core::bugs::set(None);
        outcome
    })
}

/// The body of [`run_store_seed`], for a caller already inside a madsim runtime. The first
/// trace line is a JSON header naming the run (`sluice-sim replay` reads it).
pub fn run_store_case_here(seed: u64, steps: usize, keep_lines: bool, bug: Option<Bug>) -> StoreSeedOutcome {
    let case = store_case(seed, steps);
    let mut trace = Trace::new(keep_lines);
    trace.record(format_args!(
        "{{\"ev\":\"run\",\"scenario\":\"store-crash\",\"seed\":{seed},\"bug\":\"{}\",\"steps\":{steps},\"params\":{}}}",
        bug.map_or("none", Bug::name),
        serde_json::to_string(&CaseParams(&case).to_string()).expect("a string serializes")
    ));
    let mut clock_rng = ChaCha8Rng::seed_from_u64(seed ^ CLOCK_STREAM);
    let skew_ns = clock_rng.gen_range(-5_000_000_000..5_000_000_000);
    let drift_ppm = clock_rng.gen_range(-200..200);
    trace.record(format_args!("clock skew={skew_ns}ns drift={drift_ppm}ppm"));
    let clock = SimClock::new(WALL_ORIGIN_NS, skew_ns, drift_ppm);
    let advance = |by| madsim::time::advance(by);
    let time = TimeSource { clock: &clock, advance: &advance };
    let result = run_store_check(FaultFs::new(seed), case.config, case.faults, time, &case.ops, &mut trace);
    match &result {
        Ok(_) => trace.record("result: pass"),
        Err(v) => trace.record(format_args!("result: fail: {v}")),
    }
    StoreSeedOutcome { case, result, trace }
}

/// Separates the clock's random stream from the workload's, which also starts from `seed`.
const CLOCK_STREAM: u64 = 0x636c_6f63_6b00_0000;
