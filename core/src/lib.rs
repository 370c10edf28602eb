//! sluice-core: the replication and storage core of sluice, written against abstract clock,
//! network and disk interfaces (DESIGN §2) so the same code runs in production and in the
//! deterministic simulator.
//!
//! Modules:
//! * [`archive`]: stream backup archives (S2-compressed tar), written and read defensively;
//! * [`bugs`]: planted bugs for the simulator (feature `planted-bugs`, never in production);
//! * [`coverage`]: coverage marks on rare paths, counted only when a simulator run asks;
//! * [`disk`]: the `Disk` boundary, its contract and conformance suite;
//! * [`env`]: clock, network, background work and BUGGIFY boundaries;
//! * [`format`]: on-disk formats as pure encode/decode functions;
//! * [`store`]: the file store (block files, state file, recovery, limits, sync policies);
//! * [`node`]: the node driver: meta group, stream replicas, catch-up, checkpoints;
//! * [`stream`]: the replicated stream's state machine (entries, dedupe, snapshot, catch-up);
//! * [`os`]: the production binding (the only module that touches the operating system).

pub mod archive;
pub mod bugs;
pub mod coverage;
pub mod disk;
pub mod env;
pub mod format;
pub mod node;
pub mod os;
pub mod raft;
pub mod store;
pub mod stream;

#[cfg(test)]
mod testutil;
