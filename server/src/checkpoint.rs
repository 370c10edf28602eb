//! `--snapshot-mode background`: the thread that runs checkpoint I/O (a store's fsyncs and
//! the snapshot file) apart from the node thread, so a snapshot never stalls the publishes
//! the node thread is handling. The node hands out a `Work` (`Node::take_work`); this thread
//! runs it and hands it back over a channel the driver waits on (`Node::finish_work`).
//!
//! Bounds: at most `WORK_IN_FLIGHT_MAX` pieces of work are out at once (the driver counts
//! them), and both channels hold that many. One thread: checkpoints of different streams
//! queue behind each other, which bounds the disk bandwidth snapshots take from appends.

use sluice_core::node::Work;
use sluice_core::os::OsDisk;
use tokio::sync::mpsc;

/// Pieces of checkpoint work out of the node at once.
pub const WORK_IN_FLIGHT_MAX: usize = 8;

pub struct Worker {
    pub to_worker: std::sync::mpsc::SyncSender<Work<OsDisk>>,
    pub done: mpsc::Receiver<Work<OsDisk>>,
}

/// Starts the worker thread. It stops when the driver drops its sender, or when nobody is
/// left to take finished work back.
pub fn start(name: &str) -> Result<Worker, String> {
    let (to_worker, jobs) = std::sync::mpsc::sync_channel::<Work<OsDisk>>(WORK_IN_FLIGHT_MAX);
    let (done_tx, done) = mpsc::channel(WORK_IN_FLIGHT_MAX);
    std::thread::Builder::new()
        .name(format!("sluice-checkpoint-{name}"))
        .spawn(move || {
            for mut work in jobs {
                // A panic here is a bug in core; without this thread the node could never
                // checkpoint again (its work would never come back), so stop the process,
                // as a crash would: what the work wrote is safe to find after a restart.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.run()));
                if ran.is_err() {
                    tracing::error!(group = work.group(), "checkpoint work panicked; stopping the process");
                    std::process::abort();
                }
                if done_tx.blocking_send(work).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("starting the checkpoint thread: {e}"))?;
    Ok(Worker { to_worker, done })
}
