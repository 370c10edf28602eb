//! Swarm parameters: everything one seed draws about a cluster run (TigerBeetle's swarm
//! testing): cluster size, streams and their replication, sync policy, which fault kinds are
//! on and at what rates, the workload's mix. A scenario then pins what it is about. The whole
//! draw is printed at the start of a run, so a failing seed says what it was testing.
//!
//! Rates of the nemesis are events per simulated minute of the safety phase; network rates
//! are parts per million per frame.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_core::store::SyncPolicy;
use sluice_faultfs::{CrashMode, FaultConfig};
use std::fmt;

/// Most nodes a simulated cluster has (a stream has 1, 3 or 5 replicas).
pub const NODES_MAX: usize = 5;
/// Most streams a run creates up front.
pub const STREAMS_MAX: usize = 8;

/// Whether the nemesis stays within what the replication factor claims to survive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// At most a minority of the nodes down or cut off at once.
    Within,
    /// Majorities may go down together: the cluster must refuse, never diverge.
    Beyond,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Swarm {
    pub seed: u64,
    pub nodes: usize,
    /// Replicas of each stream created up front (1, 3 or 5, at most `nodes`).
    pub replicas: Vec<usize>,
    pub sync: SyncPolicy,
    /// Length of the safety phase (faults on), simulated milliseconds.
    pub safety_ms: u64,
    /// Bound on the liveness phase: every stream must elect a leader and commit a new
    /// publish, and the replicas converge, within this much simulated time.
    pub liveness_ms: u64,
    pub budget: Budget,

    // ----- network -----
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// Share of frames that take the long tail instead (a slow link, a retransmit).
    pub latency_tail_ppm: u32,
    pub latency_tail_ms: u64,
    pub drop_ppm: u32,
    pub duplicate_ppm: u32,

    // ----- nemesis (events per simulated minute) -----
    pub crash_per_min: u32,
    /// A crash mode every crash uses instead of a random one.
    pub crash_mode: Option<CrashMode>,
    pub pause_per_min: u32,
    pub isolate_per_min: u32,
    pub partition_per_min: u32,
    pub one_way_per_min: u32,
    /// Injected disk errors switched on for a window on one node.
    pub disk_errors_per_min: u32,
    pub disk_faults: FaultConfig,
    /// A bit flipped in one replica's block file, found when the node restarts.
    pub block_flip_per_min: u32,
    /// A bit flipped in one replica's Raft log segment, found when the node restarts (off in
    /// the swarm draw; the `log-flip` scenario turns it on).
    pub log_flip_per_min: u32,
    /// Crash the stream's leader rather than a random node (share of crashes).
    pub target_leader_ppm: u32,
    /// Once per run, the three faults a damaged voter needs to elect a leader missing
    /// committed entries: a follower cut off, an old bit flip in another's log, the leader
    /// crashed at once (beyond the budget; scenario `damaged-voter`; off in the draw).
    pub damaged_voter: bool,
    /// Restart every node in turn, twice (a rolling upgrade).
    pub rolling_restarts: bool,

    // ----- clocks -----
    pub clock_skew_ms_max: u64,
    pub clock_drift_ppm_max: u32,

    // ----- background work and BUGGIFY -----
    /// Background work (checkpoints) waits this long, up to, before it runs: a slow disk.
    pub work_delay_ms_max: u64,
    /// Checkpoint I/O runs apart from the node, as production's background snapshot mode
    /// does: taken out (`Node::take_work`), run and given back (`finish_work`) at separate
    /// seeded delays while the node goes on. Off in the draw; scenarios turn it on.
    pub background_work: bool,
    /// A (re)started node restores its streams as jobs run a few per step in a seeded order
    /// (two workers' worth), down until the last is done, rather than all at once. Off in
    /// the draw; the `parallel-restore` scenario turns it on.
    pub parallel_restore: bool,
    /// Per step of a node's restore: the chance it crashes there, and (separately) that a
    /// window of disk errors opens on it.
    pub restore_fault_ppm: u32,
    pub buggify_ppm: u32,
    pub snapshot_entries: u64,

    // ----- workload -----
    pub publish_per_sec: u32,
    pub read_per_sec: u32,
    pub forced_snapshot_per_min: u32,
    /// Create and delete scratch streams during the run.
    pub stream_churn: bool,
    /// Stream 0 has a message limit (discard old), so acknowledged messages may leave it.
    pub limit_msgs: Option<u64>,
    /// A durable consumer on every stream, pulled from, acked and nakked as the run goes,
    /// so consumer state is in what the agreement and recovery checks compare (off in the
    /// draw; scenarios turn it on).
    pub consumers: bool,
    /// Streams are backed up to archives, damaged copies of each archive are read, and each
    /// archive is restored as a new stream through the log and checked against it (off in
    /// the draw; the `backup-restore` scenario turns it on).
    pub backup_restore: bool,
}

/// The most of `n` replicas (or nodes) that may fail while a majority stays: 1 of 3, 2 of 5.
pub fn minority_of(n: usize) -> usize {
    n.saturating_sub(1) / 2
}

impl Swarm {
    /// Everything drawn from `seed`.
    pub fn from_seed(seed: u64) -> Swarm {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5357_4152_4d00);
        let nodes = if rng.gen_ratio(1, 3) { 5 } else { 3 };
        let streams = rng.gen_range(1..=3);
        let replicas = (0..streams)
            .map(|_| match rng.gen_range(0..10) {
                0 => 1,
                9 if nodes == 5 => 5,
                _ => 3,
            })
            .collect();
        let on = |rng: &mut ChaCha8Rng, rate: u32| if rng.gen_bool(0.5) { rate } else { 0 };
        Swarm {
            seed,
            nodes,
            replicas,
            sync: if rng.gen_bool(0.5) { SyncPolicy::OnSnapshot } else { SyncPolicy::Always },
            safety_ms: 20_000,
            liveness_ms: 30_000,
            budget: Budget::Within,
            latency_min_ms: rng.gen_range(0..3),
            latency_max_ms: [5, 40, 150][rng.gen_range(0..3)],
            latency_tail_ppm: on(&mut rng, 10_000),
            latency_tail_ms: 800,
            drop_ppm: [0, 20_000, 100_000][rng.gen_range(0..3)],
            duplicate_ppm: on(&mut rng, 20_000),
            crash_per_min: [3, 10, 20][rng.gen_range(0..3)],
            crash_mode: None,
            pause_per_min: on(&mut rng, 6),
            isolate_per_min: on(&mut rng, 6),
            partition_per_min: on(&mut rng, 4),
            one_way_per_min: on(&mut rng, 4),
            disk_errors_per_min: on(&mut rng, 4),
            disk_faults: FaultConfig { fsync_eio_ppm: 2_000, write_enospc_ppm: 1_000, ..FaultConfig::none() },
            block_flip_per_min: on(&mut rng, 2),
            log_flip_per_min: 0,
            target_leader_ppm: 500_000,
            damaged_voter: false,
            rolling_restarts: false,
            clock_skew_ms_max: [0, 5_000][rng.gen_range(0..2)],
            clock_drift_ppm_max: [0, 200][rng.gen_range(0..2)],
            work_delay_ms_max: [20, 500, 3_000][rng.gen_range(0..3)],
            background_work: false,
            parallel_restore: false,
            restore_fault_ppm: 0,
            buggify_ppm: [0, 300_000][rng.gen_range(0..2)],
            snapshot_entries: [16, 64, 100_000][rng.gen_range(0..3)],
            publish_per_sec: [30, 80][rng.gen_range(0..2)],
            read_per_sec: 10,
            forced_snapshot_per_min: on(&mut rng, 6),
            stream_churn: rng.gen_bool(0.5),
            // Drawn last, so the draws above (and seeds without a limit) are as before the
            // limits finding was fixed (store/hold.rs).
            limit_msgs: rng.gen_bool(0.25).then_some(40),
            consumers: false,
            backup_restore: false,
        }
    }

    /// Turns every fault off: the run is a plain cluster under load.
    pub fn without_faults(mut self) -> Swarm {
        self.drop_ppm = 0;
        self.duplicate_ppm = 0;
        self.latency_tail_ppm = 0;
        self.crash_per_min = 0;
        self.pause_per_min = 0;
        self.isolate_per_min = 0;
        self.partition_per_min = 0;
        self.one_way_per_min = 0;
        self.disk_errors_per_min = 0;
        self.block_flip_per_min = 0;
        self.log_flip_per_min = 0;
        self.damaged_voter = false;
        self.restore_fault_ppm = 0;
        self.rolling_restarts = false;
        self
    }

    /// Nodes that may be down or cut off at once while safety is checked.
    pub fn minority(&self) -> usize {
        minority_of(self.nodes)
    }

    pub fn check(&self) -> Result<(), String> {
        if !(1..=NODES_MAX).contains(&self.nodes) {
            return Err(format!("{} nodes; a cluster has 1 to {NODES_MAX}", self.nodes));
        }
        if self.replicas.is_empty() || self.replicas.len() > STREAMS_MAX {
            return Err(format!("{} streams; a run has 1 to {STREAMS_MAX}", self.replicas.len()));
        }
        if let Some(r) = self.replicas.iter().find(|r| ![1, 3, 5].contains(*r) || **r > self.nodes) {
            return Err(format!("{r} replicas on {} nodes", self.nodes));
        }
        if self.latency_min_ms > self.latency_max_ms {
            return Err("latency_min_ms above latency_max_ms".into());
        }
        Ok(())
    }
}

impl fmt::Display for Swarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sync = match self.sync {
            SyncPolicy::Always => "always".to_string(),
            SyncPolicy::OnSnapshot => "on_snapshot".to_string(),
            SyncPolicy::Interval { interval } => format!("interval:{}ms", interval.as_millis()),
        };
        write!(
            f,
            "nodes={} replicas={:?} sync={sync} safety={}ms liveness={}ms budget={:?} \
             latency={}..{}ms tail={}ppm@{}ms drop={}ppm dup={}ppm \
             crash={}/min mode={} pause={}/min isolate={}/min partition={}/min one-way={}/min \
             disk-errors={}/min (fsync-eio={}ppm enospc={}ppm read-eio={}ppm) block-flip={}/min log-flip={}/min rolling={} \
             skew<={}ms drift<={}ppm work-delay<={}ms work={} restore={}@{}ppm buggify={}ppm snapshot-every={} \
             publish={}/s read={}/s forced-snapshot={}/min churn={} limit={:?}",
            self.nodes,
            self.replicas,
            self.safety_ms,
            self.liveness_ms,
            self.budget,
            self.latency_min_ms,
            self.latency_max_ms,
            self.latency_tail_ppm,
            self.latency_tail_ms,
            self.drop_ppm,
            self.duplicate_ppm,
            self.crash_per_min,
            self.crash_mode.map_or("any", CrashMode::name),
            self.pause_per_min,
            self.isolate_per_min,
            self.partition_per_min,
            self.one_way_per_min,
            self.disk_errors_per_min,
            self.disk_faults.fsync_eio_ppm,
            self.disk_faults.write_enospc_ppm,
            self.disk_faults.read_eio_ppm,
            self.block_flip_per_min,
            self.log_flip_per_min,
            self.rolling_restarts,
            self.clock_skew_ms_max,
            self.clock_drift_ppm_max,
            self.work_delay_ms_max,
            if self.background_work { "background" } else { "inline" },
            if self.parallel_restore { "parallel" } else { "at-once" },
            self.restore_fault_ppm,
            self.buggify_ppm,
            self.snapshot_entries,
            self.publish_per_sec,
            self.read_per_sec,
            self.forced_snapshot_per_min,
            self.stream_churn,
            self.limit_msgs,
        )?;
        // Only when on, so the runs of seeds from before these switches print (and hash) the same.
        if self.consumers || self.backup_restore {
            write!(f, " consumers={} backup-restore={}", self.consumers, self.backup_restore)?;
        }
        if self.damaged_voter {
            write!(f, " damaged-voter=once")?;
        }
        Ok(())
    }
}
