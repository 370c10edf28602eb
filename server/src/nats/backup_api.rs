//! The backup and restore API on `$SLUICE.API.>`: what `sluice backup` and `sluice restore`
//! call (docs/archive.md, "The API"). The archive itself is written and read by the client;
//! the server serves reads of a stream's leader and applies restore entries through the
//! stream's own log, checking each the way the stream machine checks any entry.
//!
//! Subjects (a request with a reply subject; `<s>` a stream, `<c>` a consumer):
//!
//! | subject | body | answer |
//! |---|---|---|
//! | `BACKUP.BEGIN.<s>` | empty | JSON `BackupStart` |
//! | `BACKUP.CONSUMER.<s>.<c>` | empty | blob: `Consumers::export` bytes |
//! | `BACKUP.CHUNK.<s>` | JSON `{"from_seq","to_seq","max_bytes"}` | blob: a `CatchupChunk` |
//! | `RESTORE.BEGIN.<s>` | JSON `{"config","replicas"}` | JSON `{"group"}` |
//! | `RESTORE.CHUNK.<s>.<group>` | a `CatchupChunk` | JSON `{"last_seq","stored","expired"}` |
//! | `RESTORE.CONSUMER.<s>.<group>` | `Consumers::export` bytes | JSON `{"consumer"}` |
//!
//! `<group>` is what `RESTORE.BEGIN` answered: writes go only into the stream it created.
//! | `RESTORE.ABANDON.<s>` | JSON `{"group"}` | JSON `{"deleted":true}` |
//!
//! A blob answer is the byte 0 then the data; anything else is JSON, an error being
//! `{"error":{"code","err_code","description"}}` as on `$JS.API`.

use super::conn::Context;
use super::jsapi::{call, err, error_json, op_error, overlap_refusal, ApiReply};
use crate::ops::{BackupOp, Op, OpResult, RestoreOp};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::stream::StreamConfig;

pub const PREFIX: &[u8] = b"$SLUICE.API.";

/// The first byte of a blob answer (JSON never starts with it).
pub const BLOB_TAG: u8 = 0;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkRequest {
    from_seq: u64,
    to_seq: u64,
    max_bytes: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BeginRequest {
    config: StreamConfig,
    replicas: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AbandonRequest {
    group: u64,
}

pub async fn handle(ctx: &Context, subject: &[u8], payload: Bytes) -> ApiReply {
    let api = std::str::from_utf8(&subject[PREFIX.len()..]).unwrap_or("");
    let json = |v: Value| ApiReply { headers: None, body: serde_json::to_vec(&v).expect("JSON values serialize") };
    let bad = |text: &str| json(error_json("", err::BAD_REQUEST, text));
    let parts: Vec<&str> = api.split('.').collect();
    let op = match parts.as_slice() {
        ["BACKUP", "BEGIN", s] => Op::Backup { stream: (*s).into(), op: BackupOp::Begin },
        ["BACKUP", "CONSUMER", s, c] => {
            Op::Backup { stream: (*s).into(), op: BackupOp::Consumer { name: (*c).into() } }
        }
        ["BACKUP", "CHUNK", s] => match serde_json::from_slice::<ChunkRequest>(&payload) {
            Ok(r) => Op::Backup {
                stream: (*s).into(),
                op: BackupOp::Chunk { from_seq: r.from_seq, to_seq: r.to_seq, max_bytes: r.max_bytes },
            },
            Err(e) => return bad(&format!("invalid chunk request: {e}")),
        },
        ["RESTORE", "BEGIN", s] => match serde_json::from_slice::<BeginRequest>(&payload) {
            Ok(r) if r.config.name == *s => {
                // As for a create: a restored stream's subjects must not overlap another's.
                if let Some(refusal) = overlap_refusal(ctx, "", s, &r.config.subjects) {
                    return json(refusal);
                }
                Op::Restore {
                    stream: (*s).into(),
                    op: RestoreOp::Begin { config: r.config, replicas: r.replicas },
                    body: Bytes::new(),
                }
            }
            Ok(_) => return bad("the subject's stream name and the config's differ"),
            Err(e) => return bad(&format!("invalid restore request: {e}")),
        },
        ["RESTORE", "CHUNK", s, g] => match g.parse() {
            Ok(group) => Op::Restore { stream: (*s).into(), op: RestoreOp::Chunk { group }, body: payload },
            Err(_) => return bad("the group in the subject is not a number"),
        },
        ["RESTORE", "CONSUMER", s, g] => match g.parse() {
            Ok(group) => Op::Restore { stream: (*s).into(), op: RestoreOp::Consumer { group }, body: payload },
            Err(_) => return bad("the group in the subject is not a number"),
        },
        ["RESTORE", "ABANDON", s] => match serde_json::from_slice::<AbandonRequest>(&payload) {
            Ok(r) => Op::Restore { stream: (*s).into(), op: RestoreOp::Abandon { group: r.group }, body: Bytes::new() },
            Err(e) => return bad(&format!("invalid abandon request: {e}")),
        },
        _ => return bad(&format!("unknown sluice API {api:?}")),
    };
    match call(ctx, op).await {
        OpResult::Blob(data) => {
            let mut body = Vec::with_capacity(1 + data.len());
            body.push(BLOB_TAG);
            body.extend_from_slice(&data);
            ApiReply { headers: None, body }
        }
        OpResult::BackupStart(start) => json(serde_json::to_value(&start).expect("a backup start serializes")),
        OpResult::Stream(view) => json(json!({ "group": view.group })),
        OpResult::Restored { last_seq, stored, expired } => {
            json(json!({ "last_seq": last_seq, "stored": stored, "expired": expired }))
        }
        OpResult::Consumer(view) => json(json!({ "consumer": view.info.config.name })),
        OpResult::Deleted => json(json!({ "deleted": true })),
        OpResult::Error { code, text } => json(op_error("", code, &text)),
        other => json(error_json("", err::BAD_REQUEST, &format!("unexpected answer {other:?}"))),
    }
}
