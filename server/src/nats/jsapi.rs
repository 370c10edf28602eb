//! The JetStream API on `$JS.API.>` subjects, with NATS-shaped JSON, and the PubAck a
//! publish to a stream's subject gets.
//!
//! Served: `INFO`, `STREAM.CREATE.<name>`, `STREAM.INFO.<name>`, `STREAM.DELETE.<name>`,
//! `STREAM.NAMES`, `STREAM.MSG.GET.<name>`, and `DIRECT.GET.<name>` (answered by whichever
//! replica the request reaches, as a message with `Nats-Stream`/`Nats-Subject`/
//! `Nats-Sequence`/`Nats-Time-Stamp` headers, or a `404`/`408`/`503` status, 503 meaning no
//! such stream or no replica can answer now, as nats-server does for streams with
//! `allow_direct`). Anything else under `$JS.API.` gets a NATS error
//! response (`code` 400, `err_code` 10003 "not supported by sluice"). Request bodies are
//! parsed with bounded size (the payload limit) and unknown fields ignored, as nats-server
//! does; fields sluice cannot honour (memory storage, retention other than limits,
//! replicas other than 1, 3 or 5) are refused by name, never silently changed.

use super::conn::Context;
use crate::ops::{ErrorCode, Op, OpResult, StreamView};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::store::{Discard, Limits, StoreConfig, SyncPolicy};
use sluice_core::stream::StreamConfig;
use std::time::Duration;

/// Server-wide settings the API applies to new streams.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    pub store_sync: SyncPolicy,
    pub nodes: usize,
}

/// NATS's JetStream error codes (nats-server errors.json) for what sluice reports.
pub(super) mod err {
    pub const BAD_REQUEST: (u16, u32) = (400, 10003);
    pub const STREAM_NOT_FOUND: (u16, u32) = (404, 10059);
    pub const NAME_MISMATCH: (u16, u32) = (400, 10056);
    pub const NAME_IN_USE: (u16, u32) = (400, 10058);
    pub const MSG_NOT_FOUND: (u16, u32) = (404, 10037);
    pub const REPLICAS_NOT_SUPPORTED: (u16, u32) = (500, 10074);
    pub const INSUFFICIENT_RESOURCES: (u16, u32) = (503, 10023);
    pub const SUBJECT_OVERLAP: (u16, u32) = (400, 10065);
    pub const MESSAGE_TOO_LARGE: (u16, u32) = (400, 10054);
    pub const WRONG_LAST_SEQUENCE: (u16, u32) = (400, 10071);
    pub const STORE_FAILED: (u16, u32) = (503, 10077);
    pub const NOT_SUPPORTED: (u16, u32) = (400, 10003);
    pub const TEMPORARILY_UNAVAILABLE: (u16, u32) = (503, 10008);
    pub const CONSUMER_NOT_FOUND: (u16, u32) = (404, 10014);
    pub const CONSUMER_EXISTS: (u16, u32) = (400, 10148);
    pub const CONSUMER_DOES_NOT_EXIST: (u16, u32) = (400, 10149);
}

pub(super) fn error_json(kind: &str, (code, err_code): (u16, u32), description: &str) -> Value {
    let mut v = json!({ "error": { "code": code, "err_code": err_code, "description": description } });
    if !kind.is_empty() {
        v["type"] = json!(format!("io.nats.jetstream.api.v1.{kind}"));
    }
    v
}

/// The error a failed operation becomes.
pub(super) fn op_error(kind: &str, code: ErrorCode, text: &str) -> Value {
    match code {
        ErrorCode::NoSuchStream => error_json(kind, err::STREAM_NOT_FOUND, "stream not found"),
        ErrorCode::NoSuchMessage => error_json(kind, err::MSG_NOT_FOUND, "no message found"),
        ErrorCode::NameInUse => error_json(kind, err::NAME_IN_USE, text),
        ErrorCode::BadRequest => error_json(kind, err::BAD_REQUEST, text),
        ErrorCode::Rejected => rejected(kind, text),
        ErrorCode::Unavailable => error_json(kind, err::TEMPORARILY_UNAVAILABLE, text),
        ErrorCode::NoSuchConsumer => error_json(kind, err::CONSUMER_NOT_FOUND, "consumer not found"),
    }
}

/// A publish every replica refused, by core's reason (`RejectReason`'s text), in NATS's
/// terms: a `Discard::New` limit is nats-server's "store failed" with its store error text.
fn rejected(kind: &str, text: &str) -> Value {
    if text.starts_with("wrong last sequence") {
        error_json(kind, err::WRONG_LAST_SEQUENCE, text)
    } else if text.ends_with("limit reached: MaxMsgs") {
        error_json(kind, err::STORE_FAILED, "maximum messages exceeded")
    } else if text.ends_with("limit reached: MaxBytes") {
        error_json(kind, err::STORE_FAILED, "maximum bytes exceeded")
    } else if text.starts_with("message of") {
        error_json(kind, err::MESSAGE_TOO_LARGE, "message size exceeds maximum allowed")
    } else {
        error_json(kind, err::BAD_REQUEST, text)
    }
}

pub(super) async fn call(ctx: &Context, op: Op) -> OpResult {
    match ctx.submit(op).await {
        Ok(answer) => answer.get().await,
        Err(_) => OpResult::error(ErrorCode::Unavailable, "server shutting down"),
    }
}

/// An answer to the reply subject: a header block (a direct get) and the body.
pub struct ApiReply {
    pub headers: Option<Vec<u8>>,
    pub body: Vec<u8>,
}

/// Answers one API request.
pub async fn handle(ctx: &Context, subject: &[u8], payload: &[u8]) -> ApiReply {
    let api = std::str::from_utf8(&subject[b"$JS.API.".len()..]).unwrap_or("");
    if let Some(name) = api.strip_prefix("DIRECT.GET.") {
        return direct_get(ctx, name, payload).await;
    }
    let v = route(ctx, api, payload).await;
    ApiReply { headers: None, body: serde_json::to_vec(&v).expect("JSON values serialize") }
}

/// A direct get by sequence (`{"seq": N}`); sluice has no by-subject lookups.
async fn direct_get(ctx: &Context, name: &str, payload: &[u8]) -> ApiReply {
    let status =
        |line: &str| ApiReply { headers: Some(format!("NATS/1.0 {line}\r\n\r\n").into_bytes()), body: Vec::new() };
    if sluice_core::stream::validate_stream_name(name).is_err() {
        return status("408 Bad Request");
    }
    let seq = match serde_json::from_slice::<MsgGetRequest>(payload) {
        Ok(MsgGetRequest { seq: Some(seq) }) if seq > 0 => seq,
        _ => return status("408 Bad Request"),
    };
    match call(ctx, Op::DirectGet { name: name.into(), seq }).await {
        OpResult::Message(m) => ApiReply { headers: Some(direct_headers(name, &m)), body: m.payload.to_vec() },
        OpResult::Error { code: ErrorCode::NoSuchMessage, .. } => status("404 Message Not Found"),
        // nats-server: no stream, nobody subscribed to its direct-get subject.
        _ => status("503"),
    }
}

/// The stored message's own headers (if any), then the stream's. The stored block came from
/// a publisher and is not trusted to be well formed: only its `Name: value` lines are kept,
/// each re-terminated, so no stored block can cut the answer short or glue itself onto the
/// stream's headers.
fn direct_headers(stream: &str, m: &sluice_core::store::StoredMessage) -> Vec<u8> {
    let mut h = b"NATS/1.0\r\n".to_vec();
    if m.headers.starts_with(b"NATS/1.0") {
        for line in m.headers.split(|b| *b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let name_ok = line
                .iter()
                .position(|b| *b == b':')
                .is_some_and(|colon| colon > 0 && line[..colon].iter().all(u8::is_ascii_graphic));
            if name_ok && !line.contains(&b'\r') {
                h.extend_from_slice(line);
                h.extend_from_slice(b"\r\n");
            }
        }
    }
    let subject = String::from_utf8_lossy(&m.subject);
    let ts = rfc3339(m.timestamp_ns);
    h.extend_from_slice(
        format!(
            "Nats-Stream: {stream}\r\nNats-Subject: {subject}\r\nNats-Sequence: {}\r\nNats-Time-Stamp: {ts}\r\n\r\n",
            m.seq
        )
        .as_bytes(),
    );
    h
}

async fn route(ctx: &Context, api: &str, payload: &[u8]) -> Value {
    if api == "INFO" {
        return account_info(ctx).await;
    }
    if api == "STREAM.NAMES" {
        return match call(ctx, Op::StreamNames).await {
            OpResult::Names(names) => json!({
                "type": "io.nats.jetstream.api.v1.stream_names_response",
                "total": names.len(), "offset": 0, "limit": names.len().max(1024), "streams": names,
            }),
            OpResult::Error { code, text } => op_error("stream_names_response", code, &text),
            other => unexpected("stream_names_response", &other),
        };
    }
    if let Some(rest) = api.strip_prefix("CONSUMER.") {
        return super::consumer_api::route(ctx, rest, payload).await;
    }
    let Some((verb, name)) = api.strip_prefix("STREAM.").and_then(split_verb) else {
        return error_json("", err::NOT_SUPPORTED, &format!("$JS.API.{api} is not supported by sluice"));
    };
    if sluice_core::stream::validate_stream_name(name).is_err() {
        return error_json("", err::BAD_REQUEST, &format!("invalid stream name {name:?}"));
    }
    match verb {
        "CREATE" => create(ctx, name, payload).await,
        "INFO" => {
            let r = call(ctx, Op::StreamInfo { name: name.into() }).await;
            stream_response("stream_info_response", r)
        }
        "DELETE" => match call(ctx, Op::DeleteStream { name: name.into() }).await {
            OpResult::Deleted => json!({ "type": "io.nats.jetstream.api.v1.stream_delete_response", "success": true }),
            OpResult::Error { code, text } => op_error("stream_delete_response", code, &text),
            other => unexpected("stream_delete_response", &other),
        },
        "MSG.GET" => msg_get(ctx, name, payload).await,
        _ => error_json("", err::NOT_SUPPORTED, &format!("$JS.API.STREAM.{verb} is not supported by sluice")),
    }
}

/// `CREATE.name` → ("CREATE", "name"); `MSG.GET.name` → ("MSG.GET", "name").
fn split_verb(rest: &str) -> Option<(&str, &str)> {
    for verb in ["MSG.GET", "CREATE", "INFO", "DELETE"] {
        if let Some(name) = rest.strip_prefix(verb).and_then(|r| r.strip_prefix('.')) {
            return Some((verb, name));
        }
    }
    let (verb, name) = rest.split_once('.')?;
    Some((verb, name))
}

pub(super) fn unexpected(kind: &str, r: &OpResult) -> Value {
    error_json(kind, err::TEMPORARILY_UNAVAILABLE, &format!("unexpected answer {r:?}"))
}

async fn account_info(ctx: &Context) -> Value {
    let streams = match call(ctx, Op::StreamNames).await {
        OpResult::Names(n) => n.len(),
        _ => 0,
    };
    json!({
        "type": "io.nats.jetstream.api.v1.account_info_response",
        "memory": 0, "storage": 0, "reserved_memory": 0, "reserved_storage": 0,
        "streams": streams, "consumers": 0,
        "limits": { "max_memory": -1, "max_storage": -1, "max_streams": -1, "max_consumers": -1,
                    "max_ack_pending": -1, "memory_max_stream_bytes": -1, "storage_max_stream_bytes": -1,
                    "max_bytes_required": false },
        "api": { "total": 0, "errors": 0 },
    })
}

/// The stream configuration fields sluice reads from a create request (NATS names; the
/// rest are ignored, as nats-server ignores what it does not know).
#[derive(Deserialize)]
struct CreateRequest {
    name: Option<String>,
    #[serde(default)]
    subjects: Vec<String>,
    retention: Option<String>,
    storage: Option<String>,
    max_msgs: Option<i64>,
    max_bytes: Option<i64>,
    /// Nanoseconds; 0 is unlimited.
    max_age: Option<i64>,
    max_msg_size: Option<i64>,
    discard: Option<String>,
    num_replicas: Option<i64>,
    /// Nanoseconds.
    duplicate_window: Option<i64>,
}

fn positive(v: Option<i64>) -> Option<u64> {
    v.filter(|v| *v > 0).map(|v| v as u64)
}

fn parse_create(name: &str, payload: &[u8], defaults: &Defaults) -> Result<(StreamConfig, u8), Value> {
    let kind = "stream_create_response";
    let req: CreateRequest = if payload.is_empty() {
        return Err(error_json(kind, err::BAD_REQUEST, "a stream create request needs a JSON configuration"));
    } else {
        serde_json::from_slice(payload)
            .map_err(|e| error_json(kind, err::BAD_REQUEST, &format!("invalid JSON: {e}")))?
    };
    if req.name.as_deref().is_some_and(|n| n != name) {
        return Err(error_json(kind, err::NAME_MISMATCH, "stream name in subject does not match request"));
    }
    if let Some(r) = req.retention.as_deref().filter(|r| *r != "limits") {
        return Err(error_json(
            kind,
            err::NOT_SUPPORTED,
            &format!("retention {r:?} is not supported by sluice (limits only)"),
        ));
    }
    if let Some(s) = req.storage.as_deref().filter(|s| *s != "file") {
        return Err(error_json(
            kind,
            err::NOT_SUPPORTED,
            &format!("storage {s:?} is not supported by sluice (file only)"),
        ));
    }
    let replicas = req.num_replicas.unwrap_or(1).max(1);
    if !matches!(replicas, 1 | 3 | 5) {
        return Err(error_json(kind, err::REPLICAS_NOT_SUPPORTED, "replicas must be 1, 3 or 5"));
    }
    if replicas as usize > defaults.nodes {
        return Err(error_json(
            kind,
            err::INSUFFICIENT_RESOURCES,
            &format!("{replicas} replicas on a cluster of {} nodes", defaults.nodes),
        ));
    }
    let discard = match req.discard.as_deref() {
        None | Some("old") => Discard::Old,
        Some("new") => Discard::New,
        Some(other) => return Err(error_json(kind, err::BAD_REQUEST, &format!("discard {other:?}: old or new"))),
    };
    let mut limits = Limits {
        max_msgs: positive(req.max_msgs),
        max_bytes: positive(req.max_bytes),
        max_age: positive(req.max_age).map(Duration::from_nanos),
        discard,
        ..Limits::default()
    };
    if let Some(size) = positive(req.max_msg_size) {
        limits.max_msg_size_bytes = u32::try_from(size).unwrap_or(u32::MAX).min(limits.max_msg_size_bytes);
    }
    let subjects = if req.subjects.is_empty() { vec![name.to_string()] } else { req.subjects };
    let mut config = StreamConfig::new(name, subjects);
    // nats-server: 0 means the default, two minutes, or max_age if that is shorter.
    match positive(req.duplicate_window) {
        Some(ns) => config.dedupe_window = Duration::from_nanos(ns),
        None => {
            if let Some(age) = limits.max_age.filter(|age| *age < config.dedupe_window) {
                config.dedupe_window = age;
            }
        }
    }
    config.store = StoreConfig { sync: defaults.store_sync, limits, ..StoreConfig::default() };
    config.validate().map_err(|e| error_json(kind, err::BAD_REQUEST, &e.to_string()))?;
    Ok((config, replicas as u8))
}

async fn create(ctx: &Context, name: &str, payload: &[u8]) -> Value {
    let (config, replicas) = match parse_create(name, payload, &ctx.defaults) {
        Ok(c) => c,
        Err(v) => return v,
    };
    if let Some(refusal) = overlap_refusal(ctx, "stream_create_response", name, &config.subjects) {
        return refusal;
    }
    stream_response("stream_create_response", call(ctx, Op::CreateStream { config, replicas }).await)
}

/// The refusal for `subjects` if they overlap another stream's (a publish must have one home).
pub(super) fn overlap_refusal(ctx: &Context, kind: &str, name: &str, subjects: &[String]) -> Option<Value> {
    let overlap = ctx
        .subjects
        .borrow()
        .iter()
        .any(|(other, theirs)| other != name && theirs.iter().any(|s| subjects.iter().any(|c| overlaps(s, c))));
    overlap.then(|| error_json(kind, err::SUBJECT_OVERLAP, "subjects overlap with an existing stream"))
}

/// Whether two subject filters can match one subject.
fn overlaps(a: &str, b: &str) -> bool {
    let (mut x, mut y) = (a.split('.'), b.split('.'));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(p), Some(q)) if p == q || p == "*" || q == "*" => continue,
            _ => return false,
        }
    }
}

fn stream_response(kind: &str, r: OpResult) -> Value {
    match r {
        OpResult::Stream(view) => {
            let mut v = stream_info(&view);
            v["type"] = json!(format!("io.nats.jetstream.api.v1.{kind}"));
            v
        }
        OpResult::Error { code, text } => op_error(kind, code, &text),
        other => unexpected(kind, &other),
    }
}

/// A stream's info in NATS's shape.
fn stream_info(v: &StreamView) -> Value {
    let c = &v.config;
    let l = &c.store.limits;
    let opt = |x: Option<u64>| x.map_or(-1, |x| x as i64);
    json!({
        "config": {
            "name": c.name,
            "subjects": c.subjects,
            "retention": "limits",
            "max_consumers": -1,
            "max_msgs": opt(l.max_msgs),
            "max_bytes": opt(l.max_bytes),
            "max_age": l.max_age.map_or(0, |d| d.as_nanos() as i64),
            "max_msgs_per_subject": -1,
            "max_msg_size": l.max_msg_size_bytes,
            "discard": if l.discard == Discard::New { "new" } else { "old" },
            "storage": "file",
            "num_replicas": v.peers.len(),
            "duplicate_window": c.dedupe_window.as_nanos() as i64,
            "allow_direct": false,
            "mirror_direct": false,
            "sealed": false, "deny_delete": false, "deny_purge": false, "allow_rollup_hdrs": false,
        },
        "created": rfc3339(0),
        "ts": rfc3339(v.last_ts_ns),
        "state": {
            "messages": v.msgs,
            "bytes": v.bytes,
            "first_seq": v.first_seq,
            "first_ts": rfc3339(v.first_ts_ns),
            "last_seq": v.last_seq,
            "last_ts": rfc3339(v.last_ts_ns),
            "num_deleted": v.num_deleted,
            "consumer_count": v.consumers,
        },
        "cluster": cluster_json(v.leader, &v.peers),
    })
}

/// The `cluster` block of a stream's or a consumer's info: nodes are named `n<id>`.
pub(super) fn cluster_json(leader: Option<u64>, peers: &[u64]) -> Value {
    let node = |id: u64| format!("n{id}");
    json!({
        "name": "sluice",
        "leader": leader.map(node),
        "replicas": peers.iter().filter(|p| Some(**p) != leader)
            .map(|p| json!({ "name": node(*p), "current": true, "active": 0 })).collect::<Vec<_>>(),
    })
}

#[derive(Deserialize)]
struct MsgGetRequest {
    seq: Option<u64>,
}

async fn msg_get(ctx: &Context, name: &str, payload: &[u8]) -> Value {
    let kind = "stream_msg_get_response";
    let seq = match serde_json::from_slice::<MsgGetRequest>(payload) {
        Ok(MsgGetRequest { seq: Some(seq) }) if seq > 0 => seq,
        Ok(_) => return error_json(kind, err::BAD_REQUEST, "sluice gets messages by sequence only: {\"seq\": N}"),
        Err(e) => return error_json(kind, err::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    match call(ctx, Op::GetMsg { name: name.into(), seq }).await {
        OpResult::Message(m) => {
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut msg = json!({
                "subject": String::from_utf8_lossy(&m.subject),
                "seq": m.seq,
                "data": b64.encode(&m.payload),
                "time": rfc3339(m.timestamp_ns),
            });
            if !m.headers.is_empty() {
                msg["hdrs"] = json!(b64.encode(&m.headers));
            }
            json!({ "type": format!("io.nats.jetstream.api.v1.{kind}"), "message": msg })
        }
        OpResult::Error { code, text } => op_error(kind, code, &text),
        other => unexpected(kind, &other),
    }
}

/// The JSON a publish's reply subject gets.
pub fn pub_ack(stream: &str, r: &OpResult) -> Vec<u8> {
    let v = match r {
        OpResult::Published { seq, duplicate: false } => json!({ "stream": stream, "seq": seq }),
        OpResult::Published { seq, duplicate: true } => json!({ "stream": stream, "seq": seq, "duplicate": true }),
        OpResult::Error { code, text } => {
            let mut v = op_error("", *code, text);
            v["stream"] = json!(stream);
            v
        }
        other => unexpected("", other),
    };
    serde_json::to_vec(&v).expect("JSON values serialize")
}

/// `ns` since the Unix epoch as RFC 3339 UTC with nanoseconds (`1970-01-01T00:00:00Z` for 0
/// and for anything before the epoch).
pub fn rfc3339(ns: i64) -> String {
    let ns = ns.max(0) as u64;
    let secs = ns / 1_000_000_000;
    let nanos = ns % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if nanos == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{nanos:09}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        // 2024-02-29T12:34:56.000000789Z
        assert_eq!(rfc3339(1_709_210_096_000_000_789), "2024-02-29T12:34:56.000000789Z");
        assert_eq!(rfc3339(951_782_400 * 1_000_000_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn subject_overlap() {
        assert!(overlaps("a.>", "a.b.c"));
        assert!(overlaps("a.*", "a.b"));
        assert!(overlaps("a.b", "a.b"));
        assert!(!overlaps("a.b", "a.c"));
        assert!(!overlaps("a.*", "a.b.c"));
        assert!(overlaps("*.b", "a.*"));
    }

    fn defaults() -> Defaults {
        Defaults { store_sync: SyncPolicy::OnSnapshot, nodes: 3 }
    }

    #[test]
    fn create_requests_map_to_stream_configs_or_are_refused_by_name() {
        let (c, r) = parse_create(
            "ORDERS",
            br#"{"name":"ORDERS","subjects":["orders.>"],"max_msgs":-1,"max_bytes":1000,"max_age":0,
                 "discard":"new","num_replicas":3,"duplicate_window":60000000000,"storage":"file",
                 "retention":"limits","unknown_field":{"x":1}}"#,
            &defaults(),
        )
        .unwrap();
        assert_eq!(
            (c.name.as_str(), r, c.store.limits.max_bytes, c.store.limits.max_msgs),
            ("ORDERS", 3, Some(1000), None)
        );
        assert_eq!(c.store.limits.discard, Discard::New);
        assert_eq!(c.dedupe_window, Duration::from_secs(60));
        let (c, r) = parse_create(
            "S",
            br#"{"max_msgs":0,"num_replicas":0,"duplicate_window":0,"max_age":1000000000}"#,
            &defaults(),
        )
        .unwrap();
        assert_eq!((c.subjects.as_slice(), r, c.store.limits.max_msgs), (&["S".to_string()][..], 1, None));
        assert_eq!(c.dedupe_window, Duration::from_secs(1), "zero window: the default, capped by max_age");
        let code =
            |body: &[u8]| parse_create("S", body, &defaults()).unwrap_err()["error"]["err_code"].as_u64().unwrap();
        assert_eq!(code(br#"{"name":"T"}"#), 10056);
        assert_eq!(code(br#"{"num_replicas":2}"#), 10074);
        assert_eq!(code(br#"{"num_replicas":5}"#), 10023);
        assert_eq!(code(br#"{"storage":"memory"}"#), 10003);
        assert_eq!(code(br#"{"retention":"workqueue"}"#), 10003);
        assert_eq!(code(br#"not json"#), 10003);
        assert_eq!(code(br#"{"subjects":["a b"]}"#), 10003);
    }

    #[test]
    fn refusals_map_to_nats_codes_by_cores_own_wording() {
        use sluice_core::store::LimitKind;
        use sluice_core::stream::RejectReason;
        let code = |r: RejectReason| rejected("", &r.to_string())["error"]["err_code"].as_u64().unwrap();
        assert_eq!(code(RejectReason::WrongLastSeq { expected: 1, last_seq: 2 }), 10071);
        assert_eq!(code(RejectReason::LimitExceeded { limit: LimitKind::MaxMsgs }), 10077);
        assert_eq!(code(RejectReason::LimitExceeded { limit: LimitKind::MaxBytes }), 10077);
        assert_eq!(code(RejectReason::MessageTooLarge { size_bytes: 9, max_bytes: 1 }), 10054);
        assert_eq!(code(RejectReason::SubjectNotInStream), 10003);
        let d = rejected("", &RejectReason::LimitExceeded { limit: LimitKind::MaxMsgs }.to_string());
        assert_eq!(d["error"]["description"], "maximum messages exceeded");
    }

    #[test]
    fn direct_get_headers_keep_the_message_headers_and_name_the_stream() {
        let mut m = sluice_core::store::StoredMessage {
            seq: 12,
            timestamp_ns: 0,
            subject: bytes::Bytes::from_static(b"a.b"),
            headers: bytes::Bytes::from_static(b"NATS/1.0\r\nNats-Msg-Id: k-1\r\nX: y\r\n\r\n"),
            payload: bytes::Bytes::from_static(b"p"),
        };
        let expected_tail =
            "Nats-Stream: S\r\nNats-Subject: a.b\r\nNats-Sequence: 12\r\nNats-Time-Stamp: 1970-01-01T00:00:00Z\r\n\r\n";
        let h = String::from_utf8(direct_headers("S", &m)).unwrap();
        assert_eq!(h, format!("NATS/1.0\r\nNats-Msg-Id: k-1\r\nX: y\r\n{expected_tail}"));
        // No headers, or a block that is not NATS-shaped: the stream's headers only. Lines
        // without a name, blank lines and a missing final CRLF cannot shape the answer.
        for stored in [&b""[..], b"garbage", b"NATS/1.0", b"NATS/1.0\r\n\r\n\r\nBad line\r\n: no name\r\n"] {
            m.headers = bytes::Bytes::copy_from_slice(stored);
            let h = String::from_utf8(direct_headers("S", &m)).unwrap();
            assert_eq!(h, format!("NATS/1.0\r\n{expected_tail}"), "{stored:?}");
        }
        m.headers = bytes::Bytes::from_static(b"NATS/1.0\r\nA: 1\r\n\r\nB: 2\nC: 3");
        let h = String::from_utf8(direct_headers("S", &m)).unwrap();
        assert_eq!(h, format!("NATS/1.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n{expected_tail}"));
    }

    #[test]
    fn pub_acks_have_nats_shape() {
        let ack: Value =
            serde_json::from_slice(&pub_ack("S", &OpResult::Published { seq: 7, duplicate: true })).unwrap();
        assert_eq!(ack, json!({ "stream": "S", "seq": 7, "duplicate": true }));
        let e: Value =
            serde_json::from_slice(&pub_ack("S", &OpResult::error(ErrorCode::Rejected, "wrong last sequence: 4")))
                .unwrap();
        assert_eq!(e["error"]["err_code"], 10071);
    }
}
