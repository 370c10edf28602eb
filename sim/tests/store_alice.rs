//! Exhaustive crash-state testing of the file store, ALICE-style.
//!
//! For a few short operation sequences, the power is cut after every possible number of
//! mutating disk calls (so inside operations too: mid-flush, between a block sync and the
//! directory sync, halfway through writing the state file, between the steps of a
//! truncation), and at each cut point every
//! crash state faultfs allows is enumerated and recovered from. Each recovery must satisfy
//! the store checker's invariants: everything synced present, at most a contiguous run of
//! the rest, exact payloads, an honest loss report.

use sluice_core::store::{Discard, Limits, StoreConfig, SyncPolicy};
use sluice_faultfs::{FaultConfig, FaultFs};
use sluice_sim::store_check::{StoreChecker, StoreOp, TimeSource};
use sluice_sim::time::ManualClock;
use sluice_sim::trace::Trace;
use std::time::Duration;

struct Scenario {
    name: &'static str,
    config: StoreConfig,
    ops: Vec<StoreOp>,
}

fn append(len: u16) -> StoreOp {
    StoreOp::Append { subject: 1, len }
}

/// A small write buffer, so appends reach the disk (and the crash states) between syncs.
fn config(block_size_bytes: u64, sync: SyncPolicy, limits: Limits) -> StoreConfig {
    StoreConfig { block_size_bytes, write_buffer_bytes: 40, sync, limits }
}

fn scenarios() -> Vec<Scenario> {
    let plain = Limits { max_msg_size_bytes: 4096, ..Limits::default() };
    vec![
        Scenario {
            name: "always: appends across blocks, delete the first",
            config: config(200, SyncPolicy::Always, plain),
            ops: vec![append(40), append(60), append(10), StoreOp::Delete { pick: 0 }, append(5)],
        },
        Scenario {
            name: "on-snapshot: appends, sync, purge, sync",
            config: config(150, SyncPolicy::OnSnapshot, plain),
            ops: vec![
                append(10),
                append(30),
                StoreOp::Sync,
                append(20),
                append(70),
                StoreOp::Purge { pick: 2 },
                StoreOp::Sync,
                append(1),
            ],
        },
        Scenario {
            name: "interval: ticks sync, a skip keeps a gap",
            config: config(300, SyncPolicy::Interval { interval: Duration::from_millis(10) }, plain),
            ops: vec![
                append(20),
                StoreOp::Tick { advance_ms: 20 },
                append(20),
                StoreOp::Skip { count: 2 },
                append(8),
                StoreOp::Tick { advance_ms: 20 },
            ],
        },
        Scenario {
            name: "always: max_msgs discards old, front blocks removed",
            config: config(120, SyncPolicy::Always, Limits { max_msgs: Some(2), discard: Discard::Old, ..plain }),
            ops: vec![append(10), append(10), append(10), append(10), append(10)],
        },
        Scenario {
            name: "on-snapshot: many unsynced appends across blocks, then sync",
            config: config(160, SyncPolicy::OnSnapshot, plain),
            ops: vec![
                append(30),
                append(5),
                append(50),
                append(12),
                append(40),
                append(9),
                append(20),
                StoreOp::Sync,
                append(3),
            ],
        },
        Scenario {
            name: "on-snapshot: purge blocks whose tails are unsynced",
            config: config(110, SyncPolicy::OnSnapshot, plain),
            ops: vec![
                append(10),
                StoreOp::Sync,
                append(10),
                append(10),
                append(10),
                StoreOp::Purge { pick: 4 },
                append(2),
                StoreOp::Sync,
            ],
        },
        Scenario {
            // Truncate into a skip (cut short and written again) with a delete of a kept
            // message written after the cut, then below the front after a purge.
            name: "always: truncate into a skip, then below a purged front",
            config: config(160, SyncPolicy::Always, plain),
            ops: vec![
                append(10),
                append(10),
                StoreOp::Skip { count: 2 },
                append(10),
                append(10),
                StoreOp::Delete { pick: 1 },
                StoreOp::Truncate { pick: 4 },
                append(5),
                StoreOp::Purge { pick: 5 },
                append(3),
                StoreOp::Truncate { pick: 0 },
                append(1),
            ],
        },
        Scenario {
            name: "on-snapshot: unsynced appends and a delete, truncate mid-block",
            config: config(200, SyncPolicy::OnSnapshot, plain),
            ops: vec![
                append(10),
                append(10),
                StoreOp::Sync,
                append(10),
                append(10),
                StoreOp::Delete { pick: 1 },
                StoreOp::Truncate { pick: 3 },
                append(2),
                StoreOp::Sync,
            ],
        },
        Scenario {
            name: "always: interior delete and state file writes",
            config: config(4096, SyncPolicy::Always, plain),
            ops: vec![append(3), StoreOp::Sync, append(4), append(5), StoreOp::Delete { pick: 1 }, StoreOp::Sync],
        },
    ]
}

#[test]
fn every_crash_state_of_short_sequences_recovers_correctly() {
    let clock = ManualClock::new();
    let advance = |by| clock.advance(by);
    let mut total_states = 0u64;
    for scenario in scenarios() {
        let time = TimeSource { clock: &clock, advance: &advance };
        // A full run without a power cut says how many mutating calls the operations make.
        let disk = FaultFs::new(1);
        let mut checker = StoreChecker::new(disk.clone(), scenario.config, FaultConfig::none(), time).unwrap();
        let calls_before = disk.mutating_calls();
        for op in &scenario.ops {
            checker.step(op, &mut Trace::new(false)).unwrap();
        }
        let calls = disk.mutating_calls() - calls_before;
        assert!(calls > scenario.ops.len() as u64, "{}: the operations must touch the disk", scenario.name);

        let mut scenario_states = 0u64;
        for cut in 0..=calls {
            let disk = FaultFs::new(1);
            let mut checker = StoreChecker::new(disk.clone(), scenario.config, FaultConfig::none(), time).unwrap();
            disk.set_power_cut_after(Some(cut));
            let mut trace = Trace::new(true);
            for op in &scenario.ops {
                if let Err(v) = checker.step(op, &mut trace) {
                    panic!(
                        "{}: power cut after {cut} calls: {v}\n{}",
                        scenario.name,
                        trace.lines().unwrap().join("\n")
                    );
                }
            }
            for choice in disk.crash_states() {
                if let Err(v) = checker.check_crash_as(&choice) {
                    panic!(
                        "{}: power cut after {cut} calls, crash {choice}: {v}\n{}",
                        scenario.name,
                        trace.lines().unwrap().join("\n")
                    );
                }
                scenario_states += 1;
            }
        }
        eprintln!("{}: {} cut points, {scenario_states} crash states", scenario.name, calls + 1);
        total_states += scenario_states;
    }
    // A guard against an enumeration that silently shrank to nothing.
    assert!(total_states > 80_000, "only {total_states} crash states checked");
}
