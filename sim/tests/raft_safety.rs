//! Raft safety across 500 seeds of the in-process driver (sim/src/raft_cluster.rs): 3- and
//! 5-node groups under message loss, duplication, reordering, partitions, crashes with every
//! faultfs crash mode, restarts, leader transfers, checkpoints with log compaction, and
//! followers that stop applying and ask for a newer snapshot.
//! Checked after every step: one leader per term, committed entries never change, a new
//! leader holds every committed entry, replicas agree on the state at each applied index.

use sluice_sim::raft_cluster::{ClusterParams, RaftCluster};

const SEEDS: u64 = 500;
const STEPS: usize = 1_500;

#[test]
fn raft_safety_over_500_seeds() {
    let mut committed_total = 0;
    let mut crashes = 0;
    let mut compactions = 0;
    let mut installs = 0;
    let mut requested = 0;
    for seed in 0..SEEDS {
        let params = ClusterParams::from_seed(seed, STEPS);
        let stats = match RaftCluster::new(params.clone()).run() {
            Ok(stats) => stats,
            Err(v) => panic!("{v}\nparams: {params:?}"),
        };
        assert!(stats.committed > 0, "seed {seed} committed nothing: the checks saw nothing ({params:?})");
        committed_total += stats.committed;
        crashes += stats.crashes;
        compactions += stats.compactions;
        installs += stats.snapshots_installed;
        requested += stats.snapshots_requested_applied;
    }
    // The sweep as a whole must have exercised the paths it claims to check.
    assert!(crashes > SEEDS as usize, "only {crashes} crashes");
    assert!(compactions > SEEDS as usize / 2, "only {compactions} compactions");
    assert!(installs > 50, "only {installs} snapshot installs");
    assert!(requested > 10, "only {requested} snapshots asked for and applied");
    eprintln!(
        "raft safety: {SEEDS} seeds, {committed_total} entries committed, {crashes} crashes, {compactions} compactions, \
         {installs} snapshots applied ({requested} of them asked for)"
    );
}

#[test]
fn same_seed_same_run() {
    for seed in [3, 8] {
        let a = RaftCluster::new(ClusterParams::from_seed(seed, 400)).run().unwrap();
        let b = RaftCluster::new(ClusterParams::from_seed(seed, 400)).run().unwrap();
        assert_eq!(a.trace_hash, b.trace_hash);
        assert_eq!(a.committed, b.committed);
    }
}
