//! Opening the node at start-up: the meta group first, then every stream replica restored in
//! parallel on a bounded pool of threads (`--restore-workers`, default: the machine's cores).
//! Core decides what the jobs are and adopts their results in group order
//! (`Node::begin_open`, `Restoring::finish`; docs/node.md, "Startup"); this file only runs
//! them. Core logs a line per stream (messages, bytes, time) and one for the whole.

use sluice_core::env::Clock;
use sluice_core::node::{Node, NodeConfig, RestoreJob};
use sluice_core::os::{OsClock, OsDisk};
use std::collections::VecDeque;
use std::sync::Mutex;

/// Most restore threads, whatever is asked.
pub const RESTORE_WORKERS_MAX: usize = 256;

/// The default worker count: the cores this process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(RESTORE_WORKERS_MAX)
}

/// Opens the node, restoring its streams on `workers` threads.
pub fn open_node(disk: OsDisk, cfg: NodeConfig, clock: &OsClock, workers: usize) -> Result<Node<OsDisk>, String> {
    let reader = clock.clone();
    let mut restoring = Node::begin_open(disk, cfg, clock.now(), Box::new(move || reader.now()))?;
    let jobs = run_jobs(restoring.take_jobs(), workers);
    Ok(restoring.finish(clock.now(), jobs))
}

/// Runs every job on at most `workers` threads, each taking the next job from a shared
/// queue; returns them all (in the order they finished). A panic in a job is a bug in
/// recovery and ends start-up with it.
pub fn run_jobs(jobs: Vec<RestoreJob<OsDisk>>, workers: usize) -> Vec<RestoreJob<OsDisk>> {
    let count = jobs.len();
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let done = Mutex::new(Vec::with_capacity(count));
    let threads = workers.clamp(1, RESTORE_WORKERS_MAX).min(count.max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let next = queue.lock().expect("no job panics while holding the queue").pop_front();
                let Some(mut job) = next else { return };
                job.run();
                done.lock().expect("no job panics while holding the results").push(job);
            });
        }
    });
    let done = done.into_inner().expect("every worker has stopped");
    assert_eq!(done.len(), count, "every restore job ran");
    done
}
