//! Raft timing, batching and flow-control settings, validated once.

use super::message::{append_bytes, HEADER_BYTES};
use super::types::{BATCH_ENTRIES_MAX, ENTRY_DATA_BYTES_MAX};
use crate::env::{Buggify, NodeId, FRAME_BYTES_MAX};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RaftConfig {
    pub id: NodeId,
    /// Followers start a (pre-)election after a silence drawn uniformly from
    /// `election_timeout_min..election_timeout_max` with the node's seeded RNG.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// The leader sends an AppendEntries (a heartbeat if empty) at least this often.
    pub heartbeat_interval: Duration,
    /// Largest encoded AppendEntries, header included (NATS: the server's max payload).
    pub batch_bytes_max: usize,
    /// Most entries per AppendEntries; the wire format caps it at 65,535.
    pub batch_entries_max: usize,
    /// AppendEntries in flight to one follower before the leader waits for an answer.
    pub inflight_appends_max: usize,
    /// Proposals refused (backpressure) while this many entries are not yet committed.
    pub uncommitted_entries_max: u64,
    /// ... or while this many bytes of entry data are not yet committed.
    pub uncommitted_bytes_max: usize,
    /// A leader transfer that has not completed in this time is abandoned.
    pub transfer_timeout: Duration,
    /// Rare paths forced on purpose (simulation only; `Buggify::OFF` in production).
    pub buggify: Buggify,
}

impl RaftConfig {
    pub fn new(id: NodeId) -> RaftConfig {
        RaftConfig {
            id,
            election_timeout_min: Duration::from_millis(1_500),
            election_timeout_max: Duration::from_millis(3_000),
            heartbeat_interval: Duration::from_millis(250),
            batch_bytes_max: 1024 * 1024,
            batch_entries_max: BATCH_ENTRIES_MAX,
            inflight_appends_max: 8,
            uncommitted_entries_max: 4 * BATCH_ENTRIES_MAX as u64,
            uncommitted_bytes_max: 64 * 1024 * 1024,
            transfer_timeout: Duration::from_millis(3_000),
            buggify: Buggify::OFF,
        }
    }

    /// Largest entry data a proposal may carry: it must fit one AppendEntries alone.
    pub fn entry_data_bytes_max(&self) -> usize {
        (self.batch_bytes_max - append_bytes([]))
            .saturating_sub(super::message::ENTRY_OVERHEAD_BYTES)
            .min(ENTRY_DATA_BYTES_MAX)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("node id 0 is reserved (it means 'nobody')".into());
        }
        if self.election_timeout_min.is_zero() || self.election_timeout_min >= self.election_timeout_max {
            return Err("need 0 < election_timeout_min < election_timeout_max".into());
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval * 2 > self.election_timeout_min {
            return Err("heartbeat_interval must be positive and at most half election_timeout_min".into());
        }
        if self.batch_bytes_max < HEADER_BYTES + 128 || self.batch_bytes_max > FRAME_BYTES_MAX {
            return Err(format!("batch_bytes_max must be within 162..={FRAME_BYTES_MAX}"));
        }
        if self.batch_entries_max == 0 || self.batch_entries_max > BATCH_ENTRIES_MAX {
            return Err(format!("batch_entries_max must be within 1..={BATCH_ENTRIES_MAX}"));
        }
        if self.inflight_appends_max == 0 || self.inflight_appends_max > 1024 {
            return Err("inflight_appends_max must be within 1..=1024".into());
        }
        if self.uncommitted_entries_max == 0 || self.uncommitted_bytes_max == 0 {
            return Err("uncommitted limits must be positive".into());
        }
        Ok(())
    }
}
