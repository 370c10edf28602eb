//! The named scenarios: each pins the part of the swarm it is about and leaves the rest to
//! the seed. `store-crash` is the single-node store crash checker (sim::store_check); every
//! other scenario is a cluster run (sim::cluster).

use sluice_core::store::SyncPolicy;
use sluice_faultfs::{CrashMode, FaultConfig};
use sluice_sim::cluster::swarm::{Budget, Swarm};

pub enum Kind {
    /// A cluster run with this swarm.
    Cluster(fn(u64) -> Swarm),
    /// The store crash checker with this many operations.
    Store { steps: usize },
}

pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub kind: Kind,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "swarm",
        about: "everything drawn from the seed: cluster size, streams, sync policy, every fault kind and rate",
        kind: Kind::Cluster(Swarm::from_seed),
    },
    Scenario {
        name: "out-of-order-persist",
        about: "crashes that keep a random subset of unsynced writes (a later block durable, an earlier one not), on_snapshot sync",
        kind: Kind::Cluster(|seed| Swarm {
            sync: SyncPolicy::OnSnapshot,
            crash_mode: Some(CrashMode::KeepSubset),
            crash_per_min: 20,
            snapshot_entries: 16,
            ..Swarm::from_seed(seed)
        }),
    },
    Scenario {
        name: "snapshot-vs-catchup",
        about: "snapshots forced and taken every 16 entries while isolated followers catch up",
        kind: Kind::Cluster(|seed| Swarm {
            snapshot_entries: 16,
            forced_snapshot_per_min: 40,
            isolate_per_min: 12,
            buggify_ppm: 300_000,
            work_delay_ms_max: 500,
            ..Swarm::from_seed(seed)
        }),
    },
    Scenario {
        name: "leader-crash-mid-batch",
        about: "the stream leader crashes while batches of publishes are in flight",
        kind: Kind::Cluster(|seed| Swarm {
            crash_per_min: 20,
            target_leader_ppm: 1_000_000,
            publish_per_sec: 100,
            ..Swarm::from_seed(seed)
        }),
    },
    Scenario {
        name: "partition-during-install",
        about: "partitions and isolations while followers install snapshots (every 16 entries, forced often)",
        kind: Kind::Cluster(|seed| Swarm {
            partition_per_min: 12,
            isolate_per_min: 12,
            snapshot_entries: 16,
            forced_snapshot_per_min: 20,
            crash_per_min: 3,
            ..Swarm::from_seed(seed)
        }),
    },
    Scenario {
        name: "fsync-failure",
        about: "windows in which fsync fails with EIO and drops the dirty pages (fsyncgate)",
        kind: Kind::Cluster(|seed| Swarm {
            disk_errors_per_min: 15,
            disk_faults: FaultConfig { fsync_eio_ppm: 100_000, ..FaultConfig::none() },
            ..Swarm::from_seed(seed)
        }),
    },
    Scenario {
        name: "disk-full",
        about: "windows in which writes fail with ENOSPC after a partial write",
        kind: Kind::Cluster(|seed| Swarm {
            disk_errors_per_min: 15,
            disk_faults: FaultConfig { write_enospc_ppm: 100_000, ..FaultConfig::none() },
            ..Swarm::from_seed(seed)
        }),
    },
    Scenario {
        name: "slow-disk",
        about: "background work (checkpoints) delayed by up to 3 s, process pauses, a long network tail",
        kind: Kind::Cluster(|seed| Swarm {
            work_delay_ms_max: 3_000,
            pause_per_min: 12,
            latency_tail_ppm: 20_000,
            ..Swarm::from_seed(seed)
        }),
    },
    Scenario {
        name: "clock-skew",
        about: "node clocks skewed by up to 60 s and drifting 1,000 ppm",
        kind: Kind::Cluster(|seed| Swarm { clock_skew_ms_max: 60_000, clock_drift_ppm_max: 1_000, ..Swarm::from_seed(seed) }),
    },
    Scenario {
        name: "limits",
        about: "stream 0 keeps at most 40 messages (discard old) under crashes and restarts (open finding: fronts diverge)",
        kind: Kind::Cluster(|seed| Swarm { limit_msgs: Some(40), crash_per_min: 10, ..Swarm::from_seed(seed) }),
    },
    Scenario {
        name: "rolling-restarts",
        about: "every node restarted in turn, twice, under load",
        kind: Kind::Cluster(|seed| Swarm { rolling_restarts: true, ..Swarm::from_seed(seed).without_faults() }),
    },
    Scenario {
        name: "bit-flip",
        about: "a bit flips on the medium in one replica's block file; the node restarts and must not serve it",
        kind: Kind::Cluster(|seed| Swarm { block_flip_per_min: 12, ..Swarm::from_seed(seed) }),
    },
    Scenario {
        name: "log-flip",
        about: "a bit flips in one replica's Raft log; the node restarts, and if the cut lost committed entries it must not vote until repaired",
        kind: Kind::Cluster(|seed| Swarm { log_flip_per_min: 12, ..Swarm::from_seed(seed) }),
    },
    Scenario {
        name: "background-checkpoints",
        about: "checkpoint I/O runs apart from the node (taken out, run, given back at seeded delays) while publishes, crashes and catch-ups go on",
        kind: Kind::Cluster(|seed| Swarm {
            background_work: true,
            snapshot_entries: 16,
            forced_snapshot_per_min: 12,
            work_delay_ms_max: 1_000,
            ..Swarm::from_seed(seed)
        }),
    },
    Scenario {
        name: "parallel-restore",
        about: "eight streams per node restored job by job in a seeded order after each crash, with crashes and disk errors in the middle of the restore",
        kind: Kind::Cluster(|seed| Swarm { parallel_restore: true, restore_fault_ppm: 100_000, ..many_streams(seed) }),
    },
    Scenario {
        name: "many-streams",
        about: "eight streams on every node, crashed and restarted, so each restart recovers them all",
        kind: Kind::Cluster(many_streams),
    },
    Scenario {
        name: "network-chaos",
        about: "heavy loss, duplication, one-way links, partitions and a long latency tail",
        kind: Kind::Cluster(|seed| Swarm {
            drop_ppm: 150_000,
            duplicate_ppm: 50_000,
            one_way_per_min: 12,
            partition_per_min: 8,
            latency_tail_ppm: 30_000,
            ..Swarm::from_seed(seed)
        }),
    },
    Scenario {
        name: "beyond-budget",
        about: "a majority crashed at once, twice: the cluster must refuse writes, never diverge or lose acknowledged ones",
        kind: Kind::Cluster(|seed| Swarm { budget: Budget::Beyond, ..Swarm::from_seed(seed) }),
    },
    Scenario {
        name: "damaged-voter",
        about: "beyond the budget, once: a follower cut off, an old bit flipped in another's Raft log, the leader crashed at once; the damaged node must not elect the lagging one",
        kind: Kind::Cluster(|seed| Swarm {
            nodes: 3,
            replicas: vec![3],
            budget: Budget::Beyond,
            damaged_voter: true,
            // Only the faults the test is about (and the network's), so a failure names them.
            crash_per_min: 0,
            block_flip_per_min: 0,
            disk_errors_per_min: 0,
            snapshot_entries: 100_000,
            forced_snapshot_per_min: 0,
            ..Swarm::from_seed(seed)
        }),
    },
    Scenario {
        name: "backup-restore",
        about: "streams with a pulled and acked consumer backed up, forged damage to each archive read, and each archive restored as a new stream under the nemesis, then checked against it",
        kind: Kind::Cluster(|seed| Swarm { consumers: true, backup_restore: true, ..Swarm::from_seed(seed) }),
    },
    Scenario {
        name: "store-crash",
        about: "one store on faultfs under random operations, crashes in every mode, fsync EIO, ENOSPC, read faults",
        kind: Kind::Store { steps: 500 },
    },
];

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// The scenario `--scenario all` runs for `seed`.
pub fn for_seed(seed: u64) -> &'static Scenario {
    // SplitMix64's finalizer, so consecutive seeds spread over the scenarios.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    &SCENARIOS[(z % SCENARIOS.len() as u64) as usize]
}

/// Eight R3 streams on every node, crashed often: each restart recovers them all.
fn many_streams(seed: u64) -> Swarm {
    Swarm { replicas: vec![3; 8], crash_per_min: 12, publish_per_sec: 20, ..Swarm::from_seed(seed) }
}
