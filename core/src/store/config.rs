//! Store configuration: block size, sync policy and limits. Validated once at open.

use super::StoreError;
use crate::format::block::{RECORD_BYTES_MAX, RECORD_OVERHEAD_BYTES};
use std::time::Duration;

/// When appended data is made durable. See docs/store.md for what each guarantees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SyncPolicy {
    /// Every append, delete and purge is synced before it returns.
    Always,
    /// Nothing is synced until the owner calls `sync()` (before every Raft snapshot). Correct
    /// only for a replicated stream whose log covers everything since the last sync, with
    /// truncate-on-recovery.
    OnSnapshot,
    /// `tick()` syncs when the interval has passed since the last sync.
    Interval { interval: Duration },
}

/// What to do when an append would break `max_msgs` or `max_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Discard {
    /// Delete the oldest messages until the new one fits.
    Old,
    /// Refuse the new message.
    New,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub max_msgs: Option<u64>,
    /// Sum of stored record sizes (subject, headers, payload and 36 bytes of framing).
    pub max_bytes: Option<u64>,
    /// Messages older than this (by their timestamp, against the wall time given to `tick`)
    /// are deleted from the front.
    pub max_age: Option<Duration>,
    /// Largest headers + payload accepted, in bytes.
    pub max_msg_size_bytes: u32,
    pub discard: Discard,
}

/// Longest subject the store accepts, in bytes.
pub const SUBJECT_BYTES_MAX: usize = 4096;
/// The largest `max_msg_size_bytes` allowed: a record must fit `RECORD_BYTES_MAX`.
pub const MSG_SIZE_BYTES_LIMIT: u32 = (RECORD_BYTES_MAX - RECORD_OVERHEAD_BYTES - SUBJECT_BYTES_MAX) as u32;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_msgs: None,
            max_bytes: None,
            max_age: None,
            max_msg_size_bytes: 1024 * 1024,
            discard: Discard::Old,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreConfig {
    /// A block is sealed and a new one started once it reaches this size. A record larger
    /// than this gets a block of its own.
    pub block_size_bytes: u64,
    /// Appended records are buffered in memory and written to the file once this many bytes
    /// are waiting (and at every sync and block roll). Ignored under `SyncPolicy::Always`,
    /// where every append is written and synced at once. Buffered records are unsynced
    /// records: a crash loses them, as it loses unsynced writes in the page cache.
    pub write_buffer_bytes: usize,
    pub sync: SyncPolicy,
    pub limits: Limits,
}

pub const BLOCK_SIZE_BYTES_MIN: u64 = 64;
/// Bound on the write buffer, so a config cannot make the store hold gigabytes unwritten.
pub const WRITE_BUFFER_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Blocks index records with u32 offsets; this bound plus one maximal record fits.
pub const BLOCK_SIZE_BYTES_MAX: u64 = 1024 * 1024 * 1024;

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            block_size_bytes: 8 * 1024 * 1024,
            write_buffer_bytes: 256 * 1024,
            sync: SyncPolicy::Always,
            limits: Limits::default(),
        }
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |reason: String| Err(StoreError::InvalidConfig { reason });
        if !(BLOCK_SIZE_BYTES_MIN..=BLOCK_SIZE_BYTES_MAX).contains(&self.block_size_bytes) {
            return bad(format!(
                "block_size_bytes {} outside {BLOCK_SIZE_BYTES_MIN}..={BLOCK_SIZE_BYTES_MAX}",
                self.block_size_bytes
            ));
        }
        if self.write_buffer_bytes > WRITE_BUFFER_BYTES_MAX {
            return bad(format!("write_buffer_bytes {} above {WRITE_BUFFER_BYTES_MAX}", self.write_buffer_bytes));
        }
        if self.limits.max_msg_size_bytes > MSG_SIZE_BYTES_LIMIT {
            return bad(format!(
                "max_msg_size_bytes {} above the format limit {MSG_SIZE_BYTES_LIMIT}",
                self.limits.max_msg_size_bytes
            ));
        }
        if self.limits.max_msgs == Some(0) || self.limits.max_bytes == Some(0) {
            return bad("max_msgs and max_bytes must be at least 1 when set".into());
        }
        if let SyncPolicy::Interval { interval } = self.sync {
            if interval.is_zero() {
                return bad("sync interval must be positive".into());
            }
        }
        if self.limits.max_age.is_some_and(|age| age.is_zero()) {
            return bad("max_age must be positive when set".into());
        }
        Ok(())
    }
}
