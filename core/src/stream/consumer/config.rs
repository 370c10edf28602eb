//! A durable pull consumer's configuration: what it delivers, and how long a delivery may
//! stay unacknowledged. Carried as JSON inside the stream's log entries and snapshots, so
//! every length is bounded (`CONSUMER_CONFIG_BYTES_MAX`) before it is parsed.

use super::super::config::{validate_stream_name, validate_subject};
use crate::format::block::SEQ_MAX;

/// Largest encoded configuration accepted from a log entry or a snapshot.
pub const CONSUMER_CONFIG_BYTES_MAX: usize = 16 * 1024;
/// The largest `max_ack_pending`: it bounds each consumer's pending map, and so the
/// stream's snapshot.
pub const ACK_PENDING_MAX: u32 = 10_000;
/// NATS's defaults.
pub const ACK_WAIT_MS_DEFAULT: u64 = 30_000;
pub const MAX_ACK_PENDING_DEFAULT: u32 = 1_000;
/// The longest ack wait: a day.
pub const ACK_WAIT_MS_MAX: u64 = 24 * 3600 * 1000;

/// Where a new consumer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DeliverPolicy {
    /// From the first message in the stream.
    All,
    /// From the stream's last message (whatever its subject).
    Last,
    /// Only messages stored after the consumer was created.
    New,
    /// From stream sequence `seq`.
    ByStartSequence { seq: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// The durable name: the same rules as a stream name.
    pub name: String,
    pub deliver_policy: DeliverPolicy,
    /// Deliver only messages whose subject matches this filter (wildcards allowed).
    pub filter_subject: Option<String>,
    /// A delivery not acknowledged within this time is delivered again.
    pub ack_wait_ms: u64,
    /// Deliveries of one message at most; `None` for no limit. A message delivered this
    /// often whose last ack wait ran out is dropped from pending (docs/consumers.md).
    pub max_deliver: Option<u32>,
    /// Unacknowledged deliveries at most; no new message is delivered beyond it.
    pub max_ack_pending: u32,
}

impl ConsumerConfig {
    /// A consumer with NATS's defaults: every message, 30 s ack wait, 1,000 pending.
    pub fn new(name: impl Into<String>) -> ConsumerConfig {
        ConsumerConfig {
            name: name.into(),
            deliver_policy: DeliverPolicy::All,
            filter_subject: None,
            ack_wait_ms: ACK_WAIT_MS_DEFAULT,
            max_deliver: None,
            max_ack_pending: MAX_ACK_PENDING_DEFAULT,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        validate_stream_name(&self.name).map_err(|reason| format!("consumer name {:?}: {reason}", self.name))?;
        if let Some(filter) = &self.filter_subject {
            validate_subject(filter.as_bytes(), true)
                .map_err(|reason| format!("filter subject {filter:?}: {reason}"))?;
        }
        if self.ack_wait_ms == 0 || self.ack_wait_ms > ACK_WAIT_MS_MAX {
            return Err(format!("ack wait of {} ms outside 1..={ACK_WAIT_MS_MAX}", self.ack_wait_ms));
        }
        if self.max_deliver == Some(0) {
            return Err("max deliver must be at least 1".into());
        }
        if self.max_ack_pending == 0 || self.max_ack_pending > ACK_PENDING_MAX {
            return Err(format!("max ack pending {} outside 1..={ACK_PENDING_MAX}", self.max_ack_pending));
        }
        if let DeliverPolicy::ByStartSequence { seq } = self.deliver_policy {
            if seq == 0 || seq > SEQ_MAX {
                return Err(format!("start sequence {seq} outside 1..={SEQ_MAX}"));
            }
        }
        // Escaping can grow a long filter; the bound must hold for what is written.
        let encoded_bytes = serde_json::to_vec(self).map_or(usize::MAX, |b| b.len());
        if encoded_bytes > CONSUMER_CONFIG_BYTES_MAX {
            return Err(format!("config of {encoded_bytes} bytes encoded, above {CONSUMER_CONFIG_BYTES_MAX}"));
        }
        Ok(())
    }

    /// Whether a live consumer may change from `self` to `new`: everything but the name,
    /// the start and the filter may change (those decide which messages were delivered).
    pub fn check_update(&self, new: &ConsumerConfig) -> Result<(), String> {
        if self.deliver_policy != new.deliver_policy {
            return Err("deliver policy can not be updated".into());
        }
        if self.filter_subject != new.filter_subject {
            return Err("filter subject can not be updated".into());
        }
        Ok(())
    }

    pub fn accepts(&self, subject: &[u8]) -> bool {
        self.filter_subject.as_ref().is_none_or(|f| super::super::subject_matches(f, subject))
    }

    pub fn ack_wait_ns(&self) -> i64 {
        i64::try_from(self.ack_wait_ms).unwrap_or(i64::MAX).saturating_mul(1_000_000)
    }

    /// The bounded JSON carried in entries and snapshots.
    pub fn encode(&self) -> Vec<u8> {
        let bytes = serde_json::to_vec(self).expect("a consumer config serializes");
        assert!(bytes.len() <= CONSUMER_CONFIG_BYTES_MAX, "a valid config fits its bound");
        bytes
    }

    /// Parses and validates; the length is checked before parsing.
    pub fn decode(bytes: &[u8]) -> Result<ConsumerConfig, String> {
        if bytes.len() > CONSUMER_CONFIG_BYTES_MAX {
            return Err(format!("config of {} bytes above {CONSUMER_CONFIG_BYTES_MAX}", bytes.len()));
        }
        let config: ConsumerConfig = serde_json::from_slice(bytes).map_err(|e| format!("config: {e}"))?;
        config.validate()?;
        Ok(config)
    }
}
