//! sluice-sim: the deterministic simulator.
//!
//! Today it holds the pieces the store needs: a madsim-backed clock with per-node skew and
//! drift ([`clock`]), run traces and their hash ([`trace`]), a manual clock for tests outside
//! madsim ([`time`]), the store crash checker with its reference model ([`store_check`]), its
//! workload generator ([`workload`]) and the madsim harness that runs a seed ([`runtime`]).
//! The cluster simulator (nodes, network faults, nemesis, checkers) builds on these.

pub mod clock;
pub mod cluster;
pub mod invariants;
pub mod raft_cluster;
pub mod runtime;
pub mod store_check;
pub mod time;
pub mod trace;
pub mod workload;
