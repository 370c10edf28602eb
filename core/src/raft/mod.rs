//! Raft, as a sans-IO state machine plus the storage of its log (DESIGN §2 layer 1, §4).
//!
//! * [`types`]: entries, hard state, membership, snapshot metadata;
//! * [`message`]: the peer wire format, decoded defensively;
//! * [`storage`]: the log's segment files, hard state and snapshot files on a `Disk`.

pub mod checkpoint;
pub mod config;
pub mod log;
pub mod message;
pub mod node;
pub mod progress;
pub mod storage;
pub mod types;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use config::RaftConfig;
pub use node::{Action, Applied, IoId, MessageError, PersistIo, ProposeError, Raft, RecoveredLog, Role};
pub use types::*;

#[cfg(test)]
mod tests;
