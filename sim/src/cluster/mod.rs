//! The cluster simulator: N full sluice nodes (`core::node`) on faultfs disks, each reading
//! its own simulated clock (madsim time through the node's skew and drift), a simulated
//! network, a nemesis that plays a fault [`schedule`], client workloads, and the checkers of
//! [`crate::invariants`], all in one madsim runtime seeded by the run's seed.
//!
//! The nodes are synchronous state machines (DESIGN §2 layer 3), so the world steps them
//! itself, 10 ms of simulated time per step: fire due faults, run the clients, tick every
//! node that is up and not paused, run background work whose (seeded, possibly slow) delay
//! has passed, deliver the frames that are due, collect replies, observe. A crash drops the
//! node and applies a faultfs crash to its disk; a restart opens a new node on that disk.
//!
//! A run has two phases. Safety: faults on, invariants checked after every step. Liveness:
//! faults off, everything healed; every stream must elect a leader, commit a new publish and
//! converge within the swarm's bound. Then the final checks run over every replica's
//! contents, every node restarts cleanly, and the contents must come back the same.
//!
//! Everything is a function of (scenario's swarm, schedule, seed, planted bug): the trace
//! and its hash say so.

pub mod backup;
mod consumers;
pub mod history;
pub mod net;
mod record;
pub mod schedule;
pub mod swarm;
mod workload;
mod world;

pub use world::{node_config, run, RunOutcome, RunSpec, RunStats};
