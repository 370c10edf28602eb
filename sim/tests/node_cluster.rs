//! Full nodes (meta group, stream replicas on Raft, checkpoints, catch-up) on faultfs disks
//! under message loss, reordering, crashes with every faultfs crash mode and restarts, with
//! both the `always` and the `on_snapshot` store sync policies (sim/src/node_cluster.rs).
//! Every acknowledged publish must survive on every replica, no message id may be stored
//! twice, and the replicas must converge once faults stop.

use sluice_sim::node_cluster::{NodeCluster, NodeClusterParams};

const SEEDS: u64 = 40;
const STEPS: usize = 1_500;

/// Seeds to run: `SLUICE_NODE_SEEDS=FIRST..END` overrides the default `0..40` (nightly
/// sweeps, reproducing one seed).
fn seeds() -> std::ops::Range<u64> {
    let Ok(spec) = std::env::var("SLUICE_NODE_SEEDS") else { return 0..SEEDS };
    let (a, b) = spec.split_once("..").expect("SLUICE_NODE_SEEDS=FIRST..END");
    a.parse().expect("first seed")..b.parse().expect("end seed")
}

#[test]
fn acknowledged_publishes_survive_crashes() {
    let seeds = seeds();
    let n = seeds.end - seeds.start;
    let (mut acked, mut crashes, mut restored, mut catchups, mut compactions, mut requests) = (0, 0, 0, 0, 0, 0);
    for seed in seeds.clone() {
        let params = NodeClusterParams::from_seed(seed, STEPS);
        let stats = match NodeCluster::new(params.clone()).run() {
            Ok(stats) => stats,
            Err(v) => panic!("{v}\nparams: {params:?}"),
        };
        assert!(stats.acked > 0, "seed {seed} acknowledged nothing: the checks saw nothing ({params:?})");
        acked += stats.acked;
        crashes += stats.crashes;
        restored += stats.snapshots_restored;
        catchups += stats.catchups_completed;
        compactions += stats.compactions;
        requests += stats.snapshot_requests;
    }
    eprintln!(
        "node cluster: seeds {seeds:?}, {acked} publishes acknowledged, {crashes} crashes, {compactions} compactions, \
         {restored} snapshots restored, {catchups} catch-ups completed, {requests} newer snapshots asked for"
    );
    // The sweep must have exercised what it claims to check.
    if n >= SEEDS {
        assert!(crashes > n as usize, "only {crashes} crashes");
        assert!(compactions > n, "only {compactions} compactions");
        assert!(restored > 0 && catchups > 0, "{restored} snapshots restored, {catchups} catch-ups");
        assert!(requests > 0, "no catch-up fell back to asking for a newer snapshot");
    }
}

#[test]
fn same_seed_same_run() {
    for seed in [1, 5] {
        let a = NodeCluster::new(NodeClusterParams::from_seed(seed, 500)).run().unwrap();
        let b = NodeCluster::new(NodeClusterParams::from_seed(seed, 500)).run().unwrap();
        assert_eq!(a.trace_hash, b.trace_hash);
        assert_eq!(a.acked, b.acked);
    }
}
