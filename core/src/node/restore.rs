//! Startup: restoring every stream replica placed on this node, in parallel.
//!
//! `Node::begin_open` recovers the meta group (which says which streams live here), starts
//! the services restores share, and hands out one `RestoreJob` per replica. The runtime runs
//! the jobs however it likes: production on a bounded pool of threads (`sluice server
//! --restore-workers`), the simulator in a seeded order spread over simulated time, with
//! crashes and disk faults between them. `Restoring::finish` then adopts the results in
//! group order, so what the node looks like afterwards does not depend on the order the jobs
//! ran in.
//!
//! Invariants:
//! * shared services are started before any job exists (NATS #7503: under parallel restore
//!   a worker read a service another worker had registered but not yet started, and the
//!   server panicked); a job reading one that is not running is a bug, and panics;
//! * a job touches only its replica's directory, and nothing of the node: jobs are `Send`
//!   and independent, and their results are adopted on the node's thread;
//! * a replica that fails to restore is reported and retried later (as any replica that
//!   fails to open); it never stops the others;
//! * every decision that draws randomness (snapshot jitter) is made in `begin_open`, in
//!   group order, so the node's random stream is the same whatever order jobs run in.

use super::group::GroupRecovery;
use super::meta::StreamDef;
use super::stream_group::StreamGroup;
use super::{Node, NodeConfig};
use crate::disk::Disk;
use crate::env::MonoTime;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Services every restore job uses. Today one: the clock each job times itself with (the
/// per-stream log line says how long its restore took).
struct RestoreServices {
    clock: Box<dyn Fn() -> MonoTime + Send + Sync>,
    running: AtomicBool,
}

impl RestoreServices {
    fn new(clock: Box<dyn Fn() -> MonoTime + Send + Sync>) -> RestoreServices {
        RestoreServices { clock, running: AtomicBool::new(false) }
    }

    fn start(&self) {
        self.running.store(true, Ordering::Release);
    }

    /// The time, for a job. Reading it before the node started it is the bug NATS #7503
    /// fixed; here it is a panic, so the simulator names it.
    fn now(&self) -> MonoTime {
        assert!(self.running.load(Ordering::Acquire), "restore clock read before it was started (NATS #7503)");
        (self.clock)()
    }
}

enum Task {
    /// Planted bug `restore-before-services` only: starting the services is queued with the
    /// jobs instead of done before them.
    StartServices,
    Stream {
        def: StreamDef,
        jitter: Duration,
    },
}

/// What one stream's restore found.
struct Restored<D: Disk> {
    result: Result<(StreamGroup<D>, GroupRecovery), String>,
    took: Duration,
}

/// One unit of startup work: restore one stream replica (open its Raft log and store, which
/// scans them). `Send`: run it on any thread, then hand it back to `Restoring::finish`.
pub struct RestoreJob<D: Disk> {
    /// Position in `begin_open`'s order; `finish` adopts in this order.
    at: usize,
    task: Task,
    disk: D,
    cfg: Arc<NodeConfig>,
    now: MonoTime,
    services: Arc<RestoreServices>,
    restored: Option<Restored<D>>,
    ran: bool,
}

impl<D: Disk> RestoreJob<D> {
    /// Restores the replica. Runs once; touches only the disk.
    pub fn run(&mut self) {
        assert!(!self.ran, "a restore job runs once");
        self.ran = true;
        match &self.task {
            Task::StartServices => self.services.start(),
            Task::Stream { def, jitter } => {
                let started = self.services.now();
                let result = StreamGroup::open(self.disk.clone(), &self.cfg, def.clone(), self.now, *jitter);
                let took = self.services.now().saturating_since(started);
                self.restored = Some(Restored { result, took });
            }
        }
    }
}

/// A node between `begin_open` and `finish`: its meta group is recovered; its stream
/// replicas are being restored by jobs.
pub struct Restoring<D: Disk> {
    node: Node<D>,
    jobs: Vec<RestoreJob<D>>,
    handed_out: usize,
    services: Arc<RestoreServices>,
    started: MonoTime,
}

impl<D: Disk> Restoring<D> {
    pub(super) fn new(
        node: Node<D>,
        defs: Vec<(StreamDef, Duration)>,
        now: MonoTime,
        clock: Box<dyn Fn() -> MonoTime + Send + Sync>,
    ) -> Restoring<D> {
        let services = Arc::new(RestoreServices::new(clock));
        let mut tasks = Vec::new();
        if crate::bugs::active(crate::bugs::Bug::RestoreBeforeServices) {
            tasks.push(Task::StartServices); // planted: started by a job, racing the others
        } else {
            services.start();
        }
        tasks.extend(defs.into_iter().map(|(def, jitter)| Task::Stream { def, jitter }));
        let cfg = Arc::new(node.cfg.clone());
        let jobs = tasks
            .into_iter()
            .enumerate()
            .map(|(at, task)| RestoreJob {
                at,
                task,
                disk: node.disk.clone(),
                cfg: Arc::clone(&cfg),
                now,
                services: Arc::clone(&services),
                restored: None,
                ran: false,
            })
            .collect();
        let started = if services.running.load(Ordering::Acquire) { services.now() } else { now };
        Restoring { node, jobs, handed_out: 0, services, started }
    }

    /// The jobs, to run in any order on any threads. Call once.
    pub fn take_jobs(&mut self) -> Vec<RestoreJob<D>> {
        assert_eq!(self.handed_out, 0, "restore jobs are handed out once");
        self.handed_out = self.jobs.len();
        std::mem::take(&mut self.jobs)
    }

    /// Runs every job on this thread, in group order, and finishes.
    pub fn finish_here(mut self, now: MonoTime) -> Node<D> {
        let mut jobs = self.take_jobs();
        for job in &mut jobs {
            job.run();
        }
        self.finish(now, jobs)
    }

    /// Adopts every job's result (in group order, whatever order they ran in) and returns
    /// the running node. Replicas that failed are retried later by the node.
    pub fn finish(self, now: MonoTime, mut jobs: Vec<RestoreJob<D>>) -> Node<D> {
        let Restoring { mut node, handed_out, services, started, .. } = self;
        assert_eq!(jobs.len(), handed_out, "every restore job comes back");
        jobs.sort_by_key(|j| j.at);
        let (mut restored, mut failed) = (0usize, 0usize);
        let (mut msgs, mut bytes) = (0u64, 0u64);
        for job in jobs {
            assert!(job.ran, "a restore job comes back after it ran");
            let Task::Stream { def, .. } = job.task else { continue };
            let r = job.restored.expect("a stream job that ran has a result");
            let took_ms = r.took.as_millis() as u64;
            match &r.result {
                Ok((g, _)) => {
                    let state = g.machine.state();
                    restored += 1;
                    msgs += state.msgs;
                    bytes += state.bytes;
                    tracing::info!(group = def.group, stream = %def.config.name, messages = state.msgs, bytes = state.bytes, took_ms, "stream restored");
                }
                Err(e) => {
                    failed += 1;
                    tracing::error!(group = def.group, stream = %def.config.name, error = %e, took_ms, "stream failed to restore; the others go on, it is retried");
                }
            }
            node.adopt_opened(now, def.group, r.result);
        }
        let took_ms = services.now().saturating_since(started).as_millis() as u64;
        tracing::info!(
            node = node.cfg.id,
            streams = restored,
            failed,
            messages = msgs,
            bytes,
            took_ms,
            "streams restored"
        );
        node.reconcile(now);
        node
    }
}
