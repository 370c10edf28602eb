//! Client operations as the server executes them, whichever protocol asked: the NATS port
//! turns subjects into `Op`s, the node thread (`driver.rs`) runs them on the node that can
//! serve them, forwarding over a cluster link when that is another node (`forward` frames).
//!
//! The forward encoding is binary and bounded: every length is checked against the bytes
//! present before anything is allocated, so a hostile or corrupt frame is an error, never a
//! panic or a large allocation. Layout (little-endian; `bytes` = u32 length + data):
//! ```text
//! forward:       request:u64 hops:u8 op
//! forward reply: request:u64 result
//! op:     kind:u8, then  1 create: config_json:bytes replicas:u8 | 2 delete: name:bytes
//!         3 publish: stream subject msg_id headers payload:bytes expected:u8 [seq:u64]
//!         4 info: name | 5 get: name seq:u64 | 6 names | 7 direct get: name seq:u64
//!         8 consumer: stream:bytes op_json:bytes (ConsumerOp)
//!         9 backup: stream:bytes op_json:bytes (BackupOp)
//!         10 restore: stream:bytes op_json:bytes (RestoreOp) body:bytes
//! result: kind:u8, then  1 stream: view_json:bytes | 2 deleted | 3 published: seq:u64 dup:u8
//!         4 message: seq:u64 ts:i64 subject headers payload:bytes | 5 names: n:u32 name*
//!         6 error: code:u8 text:bytes | 7 consumer: view_json:bytes
//!         8 delivered: num_pending:u64 n:u32 (message consumer_seq:u64 deliveries:u32)*
//!         9 acked | 10 blob: bytes | 11 restored: last_seq:u64 stored:u64 expired:u64
//!         12 backup start: json:bytes (BackupStart)
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sluice_core::archive::ArchivedState;
use sluice_core::env::NodeId;
use sluice_core::store::StoredMessage;
use sluice_core::stream::consumer::{AckKind, ConsumerConfig, ConsumerInfo, NEXT_BATCH_MAX};
use sluice_core::stream::StreamConfig;

/// Hops a forwarded request may still take: a publish to a node that holds no replica goes
/// to a replica, which may forward it to the leader once more.
pub const HOPS_MAX: u8 = 2;
/// Most stream names in one answer (NATS pages at 1,024; core allows 10,000 streams).
pub const NAMES_MAX: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    CreateStream {
        config: StreamConfig,
        replicas: u8,
    },
    DeleteStream {
        name: String,
    },
    Publish {
        stream: String,
        subject: Bytes,
        msg_id: Bytes,
        headers: Bytes,
        payload: Bytes,
        expected_last_seq: Option<u64>,
    },
    StreamInfo {
        name: String,
    },
    GetMsg {
        name: String,
        seq: u64,
    },
    /// A read served by whichever replica it reaches, leader or not (NATS's direct get):
    /// what that replica has applied, which may trail the leader.
    DirectGet {
        name: String,
        seq: u64,
    },
    StreamNames,
    Consumer {
        stream: String,
        op: ConsumerOp,
    },
    /// A backup's reads, on the stream's leader (docs/archive.md, "The API").
    Backup {
        stream: String,
        op: BackupOp,
    },
    /// A restore's writes; `body` is a chunk or a consumer export for those two ops.
    Restore {
        stream: String,
        op: RestoreOp,
        body: Bytes,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupOp {
    /// The stream's config, state and consumers' names: `OpResult::BackupStart`.
    Begin,
    /// One consumer with its state (`Consumers::export` bytes): `OpResult::Blob`.
    Consumer { name: String },
    /// Messages and gaps from `from_seq`, through `to_seq` at most, about `max_bytes`: an
    /// encoded `CatchupChunk` in `OpResult::Blob`.
    Chunk { from_seq: u64, to_seq: u64, max_bytes: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestoreOp {
    /// Creates the stream, refused if the name exists: `OpResult::Stream` (with its group).
    Begin { config: StreamConfig, replicas: u8 },
    /// `body` is an encoded `CatchupChunk`: `OpResult::Restored`. Refused unless the
    /// stream is still `group`, the one the restore's `Begin` created.
    Chunk { group: u64 },
    /// `body` is one consumer's export: `OpResult::Consumer`. Refused unless the stream is
    /// still `group`.
    Consumer { group: u64 },
    /// Deletes the stream if it is still `group`: what a failed restore leaves.
    Abandon { group: u64 },
}

/// Where a backup starts: what the manifest records, and the consumers to fetch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStart {
    pub config: StreamConfig,
    pub state: ArchivedState,
    pub replicas: u8,
    pub consumers: Vec<String>,
}

/// A consumer operation on a stream, run on the stream's leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsumerOp {
    Create {
        config: ConsumerConfig,
    },
    Delete {
        name: String,
    },
    Info {
        name: String,
    },
    Names,
    /// Up to `batch` (at most `NEXT_BATCH_MAX`) messages; if none is due, the leader waits up
    /// to `wait_ms` for one before it answers with none.
    Next {
        name: String,
        batch: u32,
        max_bytes: u32,
        wait_ms: u32,
    },
    Ack {
        name: String,
        seq: u64,
        kind: AckWire,
    },
}

/// `AckKind` on the forward link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckWire {
    Ack,
    Nak { delay_ns: i64 },
    Progress,
    Term,
}

impl From<AckWire> for AckKind {
    fn from(a: AckWire) -> AckKind {
        match a {
            AckWire::Ack => AckKind::Ack,
            AckWire::Nak { delay_ns } => AckKind::Nak { delay_ns },
            AckWire::Progress => AckKind::Progress,
            AckWire::Term => AckKind::Term,
        }
    }
}

/// A consumer as the API shows it: as the stream's leader has applied it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerView {
    pub stream: String,
    pub info: ConsumerInfo,
    pub leader: Option<NodeId>,
    pub peers: Vec<NodeId>,
}

/// One message a pull hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveredMsg {
    pub message: StoredMessage,
    pub consumer_seq: u64,
    pub deliveries: u32,
}

impl Op {
    /// The stream a create makes: its answer waits until this node's meta state has it.
    pub fn created_stream(&self) -> Option<&str> {
        match self {
            Op::CreateStream { config, .. } | Op::Restore { op: RestoreOp::Begin { config, .. }, .. } => {
                Some(&config.name)
            }
            _ => None,
        }
    }

    /// The stream a consumer create is on: its answer shows the consumer as applied.
    pub fn consumer_stream(&self) -> Option<&str> {
        match self {
            Op::Consumer { stream, op: ConsumerOp::Create { .. } }
            | Op::Restore { stream, op: RestoreOp::Consumer { .. }, .. } => Some(stream),
            _ => None,
        }
    }
}

/// A stream as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamView {
    pub config: StreamConfig,
    /// The stream's Raft group: a new one each time a stream of this name is created.
    #[serde(default)]
    pub group: u64,
    pub peers: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub first_seq: u64,
    pub last_seq: u64,
    pub msgs: u64,
    pub bytes: u64,
    pub num_deleted: u64,
    pub first_ts_ns: i64,
    pub last_ts_ns: i64,
    /// Durable consumers on the stream, as this node's replica has applied them.
    #[serde(default)]
    pub consumers: u64,
}

/// Why an operation failed, as the API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    NoSuchStream = 1,
    NoSuchMessage = 2,
    /// The stream's replicas refused the entry the same way (limits, wrong last sequence).
    Rejected = 3,
    BadRequest = 4,
    /// No leader, busy, timed out, outcome unknown: the client may retry.
    Unavailable = 5,
    /// A stream with that name exists with another configuration.
    NameInUse = 6,
    NoSuchConsumer = 7,
}

impl ErrorCode {
    fn from_u8(b: u8) -> Option<ErrorCode> {
        use ErrorCode::*;
        [NoSuchStream, NoSuchMessage, Rejected, BadRequest, Unavailable, NameInUse, NoSuchConsumer]
            .into_iter()
            .find(|c| *c as u8 == b)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    Stream(Box<StreamView>),
    Consumer(Box<ConsumerView>),
    /// A pull's messages and the stream messages left past the consumer's cursor.
    Delivered {
        msgs: Vec<DeliveredMsg>,
        num_pending: u64,
    },
    Acked,
    /// Binary data for a backup: a catch-up chunk or a consumer export.
    Blob(Bytes),
    Restored {
        last_seq: u64,
        stored: u64,
        expired: u64,
    },
    BackupStart(Box<BackupStart>),
    Deleted,
    Published {
        seq: u64,
        duplicate: bool,
    },
    Message(StoredMessage),
    Names(Vec<String>),
    Error {
        code: ErrorCode,
        text: String,
    },
}

impl OpResult {
    pub fn error(code: ErrorCode, text: impl Into<String>) -> OpResult {
        OpResult::Error { code, text: text.into() }
    }
}

// ----- encoding ---------------------------------------------------------------------------

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_u32_le(u32::try_from(v.len()).expect("fields are bounded by the frame size"));
    b.put_slice(v);
}

pub fn encode_forward(request: u64, hops: u8, op: &Op) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_u64_le(request);
    b.put_u8(hops);
    match op {
        Op::CreateStream { config, replicas } => {
            b.put_u8(1);
            put_bytes(&mut b, &serde_json::to_vec(config).expect("a config serializes"));
            b.put_u8(*replicas);
        }
        Op::DeleteStream { name } => {
            b.put_u8(2);
            put_bytes(&mut b, name.as_bytes());
        }
        Op::Publish { stream, subject, msg_id, headers, payload, expected_last_seq } => {
            b.put_u8(3);
            for f in [stream.as_bytes(), subject, msg_id, headers, payload] {
                put_bytes(&mut b, f);
            }
            match expected_last_seq {
                None => b.put_u8(0),
                Some(seq) => {
                    b.put_u8(1);
                    b.put_u64_le(*seq);
                }
            }
        }
        Op::StreamInfo { name } => {
            b.put_u8(4);
            put_bytes(&mut b, name.as_bytes());
        }
        Op::GetMsg { name, seq } => {
            b.put_u8(5);
            put_bytes(&mut b, name.as_bytes());
            b.put_u64_le(*seq);
        }
        Op::StreamNames => b.put_u8(6),
        Op::DirectGet { name, seq } => {
            b.put_u8(7);
            put_bytes(&mut b, name.as_bytes());
            b.put_u64_le(*seq);
        }
        Op::Consumer { stream, op } => {
            b.put_u8(8);
            put_bytes(&mut b, stream.as_bytes());
            put_bytes(&mut b, &serde_json::to_vec(op).expect("a consumer op serializes"));
        }
        Op::Backup { stream, op } => {
            b.put_u8(9);
            put_bytes(&mut b, stream.as_bytes());
            put_bytes(&mut b, &serde_json::to_vec(op).expect("a backup op serializes"));
        }
        Op::Restore { stream, op, body } => {
            b.put_u8(10);
            put_bytes(&mut b, stream.as_bytes());
            put_bytes(&mut b, &serde_json::to_vec(op).expect("a restore op serializes"));
            put_bytes(&mut b, body);
        }
    }
    b.freeze()
}

fn put_message(b: &mut BytesMut, m: &StoredMessage) {
    b.put_u64_le(m.seq);
    b.put_i64_le(m.timestamp_ns);
    for f in [&m.subject, &m.headers, &m.payload] {
        put_bytes(b, f);
    }
}

pub fn encode_reply(request: u64, result: &OpResult) -> Bytes {
    let mut b = BytesMut::with_capacity(32);
    b.put_u64_le(request);
    match result {
        OpResult::Stream(view) => {
            b.put_u8(1);
            put_bytes(&mut b, &serde_json::to_vec(view).expect("a view serializes"));
        }
        OpResult::Deleted => b.put_u8(2),
        OpResult::Published { seq, duplicate } => {
            b.put_u8(3);
            b.put_u64_le(*seq);
            b.put_u8(u8::from(*duplicate));
        }
        OpResult::Message(m) => {
            b.put_u8(4);
            put_message(&mut b, m);
        }
        OpResult::Names(names) => {
            b.put_u8(5);
            b.put_u32_le(u32::try_from(names.len()).expect("bounded by NAMES_MAX"));
            for n in names {
                put_bytes(&mut b, n.as_bytes());
            }
        }
        OpResult::Error { code, text } => {
            b.put_u8(6);
            b.put_u8(*code as u8);
            put_bytes(&mut b, text.as_bytes());
        }
        OpResult::Consumer(view) => {
            b.put_u8(7);
            put_bytes(&mut b, &serde_json::to_vec(view).expect("a view serializes"));
        }
        OpResult::Delivered { msgs, num_pending } => {
            b.put_u8(8);
            b.put_u64_le(*num_pending);
            b.put_u32_le(u32::try_from(msgs.len()).expect("bounded by NEXT_BATCH_MAX"));
            for d in msgs {
                put_message(&mut b, &d.message);
                b.put_u64_le(d.consumer_seq);
                b.put_u32_le(d.deliveries);
            }
        }
        OpResult::Acked => b.put_u8(9),
        OpResult::Blob(blob) => {
            b.put_u8(10);
            put_bytes(&mut b, blob);
        }
        OpResult::Restored { last_seq, stored, expired } => {
            b.put_u8(11);
            for v in [last_seq, stored, expired] {
                b.put_u64_le(*v);
            }
        }
        OpResult::BackupStart(start) => {
            b.put_u8(12);
            put_bytes(&mut b, &serde_json::to_vec(start).expect("a backup start serializes"));
        }
    }
    b.freeze()
}

/// A bounds-checked reader over a frame body.
struct Reader {
    buf: Bytes,
    what: &'static str,
}

impl Reader {
    fn need(&self, n: usize, field: &str) -> Result<(), String> {
        if self.buf.remaining() < n {
            return Err(format!("{}: {field} needs {n} bytes, {} left", self.what, self.buf.remaining()));
        }
        Ok(())
    }
    fn u8(&mut self, field: &str) -> Result<u8, String> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }
    fn u64(&mut self, field: &str) -> Result<u64, String> {
        self.need(8, field)?;
        Ok(self.buf.get_u64_le())
    }
    fn u32(&mut self, field: &str) -> Result<u32, String> {
        self.need(4, field)?;
        Ok(self.buf.get_u32_le())
    }
    fn message(&mut self) -> Result<StoredMessage, String> {
        Ok(StoredMessage {
            seq: self.u64("seq")?,
            timestamp_ns: self.u64("timestamp")? as i64,
            subject: self.bytes("subject")?,
            headers: self.bytes("headers")?,
            payload: self.bytes("payload")?,
        })
    }
    fn bytes(&mut self, field: &str) -> Result<Bytes, String> {
        self.need(4, field)?;
        let len = self.buf.get_u32_le() as usize;
        self.need(len, field)?;
        Ok(self.buf.split_to(len))
    }
    fn string(&mut self, field: &str) -> Result<String, String> {
        let b = self.bytes(field)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("{}: {field} is not UTF-8", self.what))
    }
    fn end(&self) -> Result<(), String> {
        if self.buf.has_remaining() {
            return Err(format!("{}: {} bytes after the end", self.what, self.buf.remaining()));
        }
        Ok(())
    }
}

pub fn decode_forward(body: Bytes) -> Result<(u64, u8, Op), String> {
    let mut r = Reader { buf: body, what: "forwarded request" };
    let request = r.u64("request id")?;
    let hops = r.u8("hops")?;
    let op = match r.u8("kind")? {
        1 => {
            let json = r.bytes("config")?;
            let config = serde_json::from_slice(&json).map_err(|e| format!("forwarded config: {e}"))?;
            Op::CreateStream { config, replicas: r.u8("replicas")? }
        }
        2 => Op::DeleteStream { name: r.string("name")? },
        3 => Op::Publish {
            stream: r.string("stream")?,
            subject: r.bytes("subject")?,
            msg_id: r.bytes("msg id")?,
            headers: r.bytes("headers")?,
            payload: r.bytes("payload")?,
            expected_last_seq: match r.u8("expected flag")? {
                0 => None,
                1 => Some(r.u64("expected seq")?),
                other => return Err(format!("forwarded request: expected flag {other}")),
            },
        },
        4 => Op::StreamInfo { name: r.string("name")? },
        5 => Op::GetMsg { name: r.string("name")?, seq: r.u64("seq")? },
        6 => Op::StreamNames,
        7 => Op::DirectGet { name: r.string("name")?, seq: r.u64("seq")? },
        8 => {
            let stream = r.string("stream")?;
            let json = r.bytes("consumer op")?;
            let op = serde_json::from_slice(&json).map_err(|e| format!("forwarded consumer op: {e}"))?;
            Op::Consumer { stream, op }
        }
        9 => {
            let stream = r.string("stream")?;
            let json = r.bytes("backup op")?;
            let op = serde_json::from_slice(&json).map_err(|e| format!("forwarded backup op: {e}"))?;
            Op::Backup { stream, op }
        }
        10 => {
            let stream = r.string("stream")?;
            let json = r.bytes("restore op")?;
            let op = serde_json::from_slice(&json).map_err(|e| format!("forwarded restore op: {e}"))?;
            Op::Restore { stream, op, body: r.bytes("restore body")? }
        }
        other => return Err(format!("forwarded request: unknown kind {other}")),
    };
    r.end()?;
    Ok((request, hops, op))
}

pub fn decode_reply(body: Bytes) -> Result<(u64, OpResult), String> {
    let mut r = Reader { buf: body, what: "forwarded reply" };
    let request = r.u64("request id")?;
    let result = match r.u8("kind")? {
        1 => {
            let json = r.bytes("view")?;
            OpResult::Stream(Box::new(serde_json::from_slice(&json).map_err(|e| format!("forwarded view: {e}"))?))
        }
        2 => OpResult::Deleted,
        3 => OpResult::Published { seq: r.u64("seq")?, duplicate: r.u8("duplicate")? != 0 },
        4 => OpResult::Message(r.message()?),
        5 => {
            let n = r.u32_count("names")?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.string("name")?);
            }
            OpResult::Names(names)
        }
        6 => {
            let code = r.u8("code")?;
            let code = ErrorCode::from_u8(code).ok_or_else(|| format!("forwarded reply: error code {code}"))?;
            OpResult::Error { code, text: r.string("text")? }
        }
        7 => {
            let json = r.bytes("consumer view")?;
            OpResult::Consumer(Box::new(serde_json::from_slice(&json).map_err(|e| format!("forwarded consumer: {e}"))?))
        }
        8 => {
            let num_pending = r.u64("num pending")?;
            let n = r.u32("deliveries")?;
            if n > NEXT_BATCH_MAX {
                return Err(format!("forwarded reply: {n} deliveries, above {NEXT_BATCH_MAX}"));
            }
            let mut msgs = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let message = r.message()?;
                msgs.push(DeliveredMsg {
                    message,
                    consumer_seq: r.u64("consumer seq")?,
                    deliveries: r.u32("deliveries")?,
                });
            }
            OpResult::Delivered { msgs, num_pending }
        }
        9 => OpResult::Acked,
        10 => OpResult::Blob(r.bytes("blob")?),
        11 => OpResult::Restored { last_seq: r.u64("last seq")?, stored: r.u64("stored")?, expired: r.u64("expired")? },
        12 => {
            let json = r.bytes("backup start")?;
            OpResult::BackupStart(Box::new(
                serde_json::from_slice(&json).map_err(|e| format!("forwarded backup start: {e}"))?,
            ))
        }
        other => return Err(format!("forwarded reply: unknown kind {other}")),
    };
    r.end()?;
    Ok((request, result))
}

impl Reader {
    /// A count of length-prefixed items: each needs at least 4 bytes, so a count the body
    /// cannot hold is refused before the vector is allocated.
    fn u32_count(&mut self, field: &str) -> Result<usize, String> {
        self.need(4, field)?;
        let n = self.buf.get_u32_le() as usize;
        if n > NAMES_MAX || n.saturating_mul(4) > self.buf.remaining() {
            return Err(format!("{}: {n} {field} cannot fit {} bytes", self.what, self.buf.remaining()));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<Op> {
        vec![
            Op::CreateStream { config: StreamConfig::new("s", ["a.>"]), replicas: 3 },
            Op::DeleteStream { name: "s".into() },
            Op::Publish {
                stream: "s".into(),
                subject: Bytes::from_static(b"a.b"),
                msg_id: Bytes::from_static(b"id-1"),
                headers: Bytes::from_static(b"NATS/1.0\r\n\r\n"),
                payload: Bytes::from_static(b"x"),
                expected_last_seq: Some(7),
            },
            Op::StreamInfo { name: "s".into() },
            Op::GetMsg { name: "s".into(), seq: 9 },
            Op::DirectGet { name: "s".into(), seq: 10 },
            Op::StreamNames,
            Op::Consumer { stream: "s".into(), op: ConsumerOp::Create { config: ConsumerConfig::new("c") } },
            Op::Consumer {
                stream: "s".into(),
                op: ConsumerOp::Next { name: "c".into(), batch: 3, max_bytes: 100, wait_ms: 5 },
            },
            Op::Consumer {
                stream: "s".into(),
                op: ConsumerOp::Ack { name: "c".into(), seq: 4, kind: AckWire::Nak { delay_ns: 9 } },
            },
            Op::Backup { stream: "s".into(), op: BackupOp::Begin },
            Op::Backup { stream: "s".into(), op: BackupOp::Chunk { from_seq: 1, to_seq: 9, max_bytes: 100 } },
            Op::Restore {
                stream: "s".into(),
                op: RestoreOp::Begin { config: StreamConfig::new("s", ["a.>"]), replicas: 1 },
                body: Bytes::new(),
            },
            Op::Restore { stream: "s".into(), op: RestoreOp::Chunk { group: 4 }, body: Bytes::from_static(b"chunk") },
            Op::Restore { stream: "s".into(), op: RestoreOp::Abandon { group: 7 }, body: Bytes::new() },
        ]
    }

    #[test]
    fn forwards_and_replies_round_trip() {
        for op in ops() {
            let body = encode_forward(42, 1, &op);
            assert_eq!(decode_forward(body).unwrap(), (42, 1, op));
        }
        let results = [
            OpResult::Deleted,
            OpResult::Published { seq: 5, duplicate: true },
            OpResult::Message(StoredMessage {
                seq: 3,
                timestamp_ns: -1,
                subject: Bytes::from_static(b"a"),
                headers: Bytes::new(),
                payload: Bytes::from_static(b"p"),
            }),
            OpResult::Names(vec!["a".into(), "b".into()]),
            OpResult::error(ErrorCode::NameInUse, "exists"),
            OpResult::Acked,
            OpResult::Delivered {
                msgs: vec![DeliveredMsg {
                    message: StoredMessage {
                        seq: 8,
                        timestamp_ns: 2,
                        subject: Bytes::from_static(b"a.b"),
                        headers: Bytes::from_static(b"h"),
                        payload: Bytes::from_static(b"p"),
                    },
                    consumer_seq: 3,
                    deliveries: 2,
                }],
                num_pending: 11,
            },
            OpResult::Blob(Bytes::from_static(b"\x00\x01")),
            OpResult::Restored { last_seq: 9, stored: 4, expired: 1 },
            OpResult::BackupStart(Box::new(BackupStart {
                config: StreamConfig::new("s", ["a.>"]),
                state: ArchivedState { first_seq: 2, last_seq: 9, msgs: 5, bytes: 500 },
                replicas: 3,
                consumers: vec!["c".into()],
            })),
        ];
        for result in results {
            assert_eq!(decode_reply(encode_reply(7, &result)).unwrap(), (7, result));
        }
    }

    #[test]
    fn every_truncation_and_extension_is_an_error_not_a_panic() {
        for op in ops() {
            let body = encode_forward(1, 0, &op);
            for cut in 0..body.len() {
                assert!(decode_forward(body.slice(..cut)).is_err(), "{op:?} cut at {cut}");
            }
            let mut long = body.to_vec();
            long.push(0);
            assert!(decode_forward(Bytes::from(long)).is_err());
        }
        // A count far beyond the body is refused before allocating.
        let mut b = BytesMut::new();
        b.put_u64_le(1);
        b.put_u8(5);
        b.put_u32_le(u32::MAX);
        assert!(decode_reply(b.freeze()).unwrap_err().contains("cannot fit"));
        let mut b = BytesMut::new();
        b.put_u64_le(1);
        b.put_u8(8);
        b.put_u64_le(0);
        b.put_u32_le(u32::MAX);
        assert!(decode_reply(b.freeze()).unwrap_err().contains("deliveries"));
    }
}
