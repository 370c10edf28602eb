//! Durable pull consumers: part of the stream's replicated state. A consumer is created,
//! pulled from, acknowledged and deleted by entries in the stream's own Raft log, applied by
//! the stream machine in log order, and it travels in the stream's snapshot (format section
//! in `wire.rs`). So ack floors and pending deliveries survive leader changes and restarts
//! with no group of their own. Rules: docs/consumers.md.
//!
//! Bounds: `CONSUMERS_MAX` per stream, `ACK_PENDING_MAX` pending each, `NEXT_BATCH_MAX` and
//! `NEXT_BYTES_MAX` per pull entry, `NEXT_SCAN_MSGS_MAX` messages read per pull entry.

mod config;
mod state;
#[cfg(test)]
mod tests;
mod wire;

pub use config::{
    ConsumerConfig, DeliverPolicy, ACK_PENDING_MAX, ACK_WAIT_MS_DEFAULT, ACK_WAIT_MS_MAX, CONSUMER_CONFIG_BYTES_MAX,
    MAX_ACK_PENDING_DEFAULT,
};
pub use state::{
    AckKind, ConsumerState, Delivery, NextRequest, PendingMsg, NEXT_BATCH_MAX, NEXT_BYTES_MAX, NEXT_SCAN_MSGS_MAX,
};
pub use wire::{CONSUMERS_SECTION_BYTES_MAX, CONSUMER_EXPORT_BYTES_MAX};

use crate::disk::Disk;
use crate::format::fnv::Fnv64;
use crate::store::{FileStore, StoreError, StoredMessage, StreamState};
use std::collections::BTreeMap;

/// Consumers one stream holds at most.
pub const CONSUMERS_MAX: usize = 64;

/// What consumers read: the stream's store, or a stand-in in tests.
pub trait MessageSource {
    fn state(&self) -> StreamState;
    fn get(&self, seq: u64) -> Result<Option<StoredMessage>, StoreError>;
    fn get_range(&self, from_seq: u64, max_msgs: usize, max_bytes: u64) -> Result<Vec<StoredMessage>, StoreError>;
}

impl<D: Disk> MessageSource for FileStore<D> {
    fn state(&self) -> StreamState {
        FileStore::state(self)
    }
    fn get(&self, seq: u64) -> Result<Option<StoredMessage>, StoreError> {
        FileStore::get(self, seq)
    }
    fn get_range(&self, from_seq: u64, max_msgs: usize, max_bytes: u64) -> Result<Vec<StoredMessage>, StoreError> {
        FileStore::get_range(self, from_seq, max_msgs, max_bytes)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub config: ConsumerConfig,
    /// The leader's clock when the create entry applied.
    pub created_ns: i64,
    pub state: ConsumerState,
}

/// A consumer as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsumerInfo {
    pub config: ConsumerConfig,
    pub created_ns: i64,
    pub delivered_stream_seq: u64,
    pub delivered_consumer_seq: u64,
    pub ack_floor_stream_seq: u64,
    pub ack_floor_consumer_seq: u64,
    pub num_ack_pending: u64,
    pub num_redelivered: u64,
    /// Messages in the stream past the cursor (an upper bound with a filter).
    pub num_pending: u64,
}

/// The stream's consumers, by name (so iteration, hashing and encoding are in name order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consumers {
    by_name: BTreeMap<String, Consumer>,
}

impl Consumers {
    pub fn new() -> Consumers {
        Consumers::default()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Consumer> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Consumer> {
        self.by_name.values()
    }

    /// Creates a consumer, or updates one whose change `check_update` allows (an identical
    /// config is a no-op). Refusals are deterministic: the same on every replica.
    pub fn create(&mut self, config: ConsumerConfig, stream: StreamState, now_ns: i64) -> Result<(), String> {
        config.validate()?;
        if let Some(existing) = self.by_name.get_mut(&config.name) {
            existing.config.check_update(&config)?;
            existing.config = config;
            return Ok(());
        }
        if self.by_name.len() >= CONSUMERS_MAX {
            return Err(format!("the stream has {CONSUMERS_MAX} consumers, its maximum"));
        }
        let state = ConsumerState::start(&config, stream);
        self.by_name.insert(config.name.clone(), Consumer { config, created_ns: now_ns, state });
        Ok(())
    }

    pub fn delete(&mut self, name: &str) -> bool {
        self.by_name.remove(name).is_some()
    }

    /// A pull: see `state::next`. `Ok(None)` if there is no such consumer.
    pub fn next<S: MessageSource>(
        &mut self,
        name: &str,
        src: &S,
        req: NextRequest,
        now_ns: i64,
    ) -> Result<Option<Vec<Delivery>>, StoreError> {
        let Some(c) = self.by_name.get_mut(name) else { return Ok(None) };
        let out = state::next(&c.config, &mut c.state, src, req, now_ns)?;
        if cfg!(debug_assertions) {
            c.state.check_invariants();
        }
        Ok(Some(out))
    }

    /// `None` if there is no such consumer, else whether `seq` was pending.
    pub fn ack(&mut self, name: &str, seq: u64, kind: AckKind, now_ns: i64) -> Option<bool> {
        let c = self.by_name.get_mut(name)?;
        Some(state::ack(&c.config, &mut c.state, seq, kind, now_ns))
    }

    pub fn has_work(&self, name: &str, stream: StreamState, now_ns: i64) -> bool {
        self.by_name.get(name).is_some_and(|c| state::has_work(&c.config, &c.state, stream, now_ns))
    }

    /// `msgs_after(seq)`: stream messages above `seq`.
    pub fn info(&self, name: &str, msgs_after: impl Fn(u64) -> u64) -> Option<ConsumerInfo> {
        let c = self.by_name.get(name)?;
        let s = &c.state;
        Some(ConsumerInfo {
            config: c.config.clone(),
            created_ns: c.created_ns,
            delivered_stream_seq: s.delivered_stream_seq,
            delivered_consumer_seq: s.delivered_consumer_seq,
            ack_floor_stream_seq: s.ack_floor_stream_seq(),
            ack_floor_consumer_seq: s.ack_floor_consumer_seq(),
            num_ack_pending: s.pending.len() as u64,
            num_redelivered: s.redelivered,
            num_pending: msgs_after(s.delivered_stream_seq),
        })
    }

    /// Feeds every consumer's config and state, in name order, to a replica-agreement hash.
    pub fn hash_into(&self, h: &mut Fnv64) {
        h.u64(self.by_name.len() as u64);
        for c in self.by_name.values() {
            h.bytes(&c.config.encode());
            h.i64(c.created_ns);
            let s = &c.state;
            for v in [s.delivered_stream_seq, s.delivered_consumer_seq, s.redelivered, s.pending.len() as u64] {
                h.u64(v);
            }
            for (&seq, p) in &s.pending {
                h.u64(seq);
                h.u64(p.consumer_seq);
                h.u64(u64::from(p.deliveries));
                h.i64(p.due_ns);
            }
        }
    }

    pub fn check_invariants(&self) {
        assert!(self.by_name.len() <= CONSUMERS_MAX, "{} consumers, above the bound", self.by_name.len());
        for (name, c) in &self.by_name {
            assert_eq!(name, &c.config.name, "consumer filed under another name");
            c.state.check_invariants();
        }
    }
}
