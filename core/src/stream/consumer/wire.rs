//! The consumers' section of a stream snapshot (snapshot version 2 and later), little-endian:
//!
//! ```text
//! count u32, then per consumer, in strictly increasing name order:
//!   config_len u32, config (JSON, ConsumerConfig), created_ns i64,
//!   delivered_stream_seq u64, delivered_consumer_seq u64, redelivered u64,
//!   pending_count u32, then per pending delivery, by increasing stream sequence:
//!     seq u64, consumer_seq u64, deliveries u32, due_ns i64
//! ```
//!
//! Every count and length is checked against its bound before anything is allocated, and a
//! decoded section always satisfies `Consumers::check_invariants`.

use super::config::{ConsumerConfig, ACK_PENDING_MAX, CONSUMER_CONFIG_BYTES_MAX};
use super::state::{ConsumerState, PendingMsg};
use super::{Consumer, Consumers, CONSUMERS_MAX};
use crate::format::block::SEQ_MAX;
use crate::format::FormatError;
use crate::stream::wire::Reader;
use std::collections::BTreeMap;

const CONSUMER_FIXED_BYTES: usize = 4 + 8 + 8 + 8 + 8 + 4;
const PENDING_BYTES: usize = 8 + 8 + 4 + 8;
/// Largest encoded section: every consumer at its longest config and fullest pending map.
pub const CONSUMERS_SECTION_BYTES_MAX: usize =
    4 + CONSUMERS_MAX * (CONSUMER_FIXED_BYTES + CONSUMER_CONFIG_BYTES_MAX + ACK_PENDING_MAX as usize * PENDING_BYTES);

/// Largest encoding of one consumer (`Consumers::export`, the restore entry's payload).
pub const CONSUMER_EXPORT_BYTES_MAX: usize =
    CONSUMER_FIXED_BYTES + CONSUMER_CONFIG_BYTES_MAX + ACK_PENDING_MAX as usize * PENDING_BYTES;

impl Consumers {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.by_name.len() as u32).to_le_bytes());
        for c in self.by_name.values() {
            encode_consumer(c, out);
        }
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Consumers, FormatError> {
        let count = r.u32()? as usize;
        if count > CONSUMERS_MAX {
            return Err(FormatError::BadField { field: "snapshot consumer count", value: count as u64 });
        }
        let mut by_name = BTreeMap::new();
        let mut last_name: Option<String> = None;
        for _ in 0..count {
            let c = decode_consumer(r)?;
            if last_name.as_ref().is_some_and(|prev| *prev >= c.config.name) {
                return Err(FormatError::BadField { field: "snapshot consumer order", value: count as u64 });
            }
            last_name = Some(c.config.name.clone());
            by_name.insert(c.config.name.clone(), c);
        }
        Ok(Consumers { by_name })
    }

    /// One consumer with its state, in the section's per-consumer layout: what a backup
    /// archives and a restore entry carries. At most `CONSUMER_EXPORT_BYTES_MAX` bytes.
    pub fn export(&self, name: &str) -> Option<Vec<u8>> {
        let c = self.by_name.get(name)?;
        let mut out = Vec::new();
        encode_consumer(c, &mut out);
        debug_assert!(out.len() <= CONSUMER_EXPORT_BYTES_MAX);
        Some(out)
    }

    /// Adds a consumer from `export`'s bytes. Refused (deterministically) if the bytes are
    /// not exactly one valid consumer, a consumer of that name exists, or the stream holds
    /// `CONSUMERS_MAX` already.
    pub fn import(&mut self, bytes: &[u8]) -> Result<String, String> {
        if bytes.len() > CONSUMER_EXPORT_BYTES_MAX {
            return Err(format!("a consumer of {} bytes exceeds {CONSUMER_EXPORT_BYTES_MAX}", bytes.len()));
        }
        let mut r = Reader::new(bytes);
        let c = decode_consumer(&mut r).map_err(|e| format!("archived consumer: {e}"))?;
        r.finish().map_err(|e| format!("archived consumer: {e}"))?;
        let name = c.config.name.clone();
        if self.by_name.contains_key(&name) {
            return Err(format!("consumer {name:?} exists"));
        }
        if self.by_name.len() >= CONSUMERS_MAX {
            return Err(format!("the stream has {CONSUMERS_MAX} consumers, its maximum"));
        }
        self.by_name.insert(name.clone(), c);
        Ok(name)
    }
}

fn encode_consumer(c: &Consumer, out: &mut Vec<u8>) {
    let config = c.config.encode();
    out.extend_from_slice(&(config.len() as u32).to_le_bytes());
    out.extend_from_slice(&config);
    out.extend_from_slice(&c.created_ns.to_le_bytes());
    let s = &c.state;
    for v in [s.delivered_stream_seq, s.delivered_consumer_seq, s.redelivered] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(s.pending.len() as u32).to_le_bytes());
    for (&seq, p) in &s.pending {
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&p.consumer_seq.to_le_bytes());
        out.extend_from_slice(&p.deliveries.to_le_bytes());
        out.extend_from_slice(&p.due_ns.to_le_bytes());
    }
}

/// One consumer, every count and length checked before anything is allocated.
fn decode_consumer(r: &mut Reader<'_>) -> Result<Consumer, FormatError> {
    let bad = |field: &'static str, value: u64| FormatError::BadField { field, value };
    let config_len = r.u32()? as usize;
    if config_len > CONSUMER_CONFIG_BYTES_MAX {
        return Err(FormatError::LengthTooLarge {
            declared_bytes: config_len as u64,
            max_bytes: CONSUMER_CONFIG_BYTES_MAX as u64,
        });
    }
    let config =
        ConsumerConfig::decode(r.take(config_len)?).map_err(|_| bad("snapshot consumer config", config_len as u64))?;
    let created_ns = r.i64()?;
    let delivered_stream_seq = r.u64()?;
    let delivered_consumer_seq = r.u64()?;
    let redelivered = r.u64()?;
    // Counters a delivery adds one to: bounded, so no input can make that overflow.
    if delivered_stream_seq > SEQ_MAX || delivered_consumer_seq > SEQ_MAX {
        return Err(bad("snapshot consumer cursor", delivered_stream_seq.max(delivered_consumer_seq)));
    }
    if redelivered > delivered_consumer_seq {
        return Err(bad("snapshot consumer redelivered", redelivered));
    }
    let pending_count = r.u32()? as usize;
    if pending_count > ACK_PENDING_MAX as usize {
        return Err(bad("snapshot consumer pending count", pending_count as u64));
    }
    let mut pending = BTreeMap::new();
    let mut prev = 0u64;
    for _ in 0..pending_count {
        let seq = r.u64()?;
        let p = PendingMsg { consumer_seq: r.u64()?, deliveries: r.u32()?, due_ns: r.i64()? };
        if seq <= prev || seq > delivered_stream_seq {
            return Err(bad("snapshot consumer pending seq", seq));
        }
        if p.deliveries == 0 || p.consumer_seq == 0 || p.consumer_seq > delivered_consumer_seq {
            return Err(bad("snapshot consumer pending delivery", p.consumer_seq));
        }
        prev = seq;
        pending.insert(seq, p);
    }
    let state = ConsumerState { delivered_stream_seq, delivered_consumer_seq, pending, redelivered };
    Ok(Consumer { config, created_ns, state })
}
