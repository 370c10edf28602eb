//! `$JS.API.CONSUMER.>`: durable pull consumers in NATS's JSON. Served: `CREATE.<stream>`,
//! `CREATE.<stream>.<name>[.<filter>]`, `DURABLE.CREATE.<stream>.<name>`,
//! `INFO.<stream>.<name>`, `DELETE.<stream>.<name>`, `NAMES.<stream>`, `LIST.<stream>`.
//! Pulls (`MSG.NEXT`) and acks (`$JS.ACK.>`) are in `pull.rs`.
//!
//! What sluice cannot honour is refused by name, never silently changed: push consumers
//! (`deliver_subject`), ack policies other than explicit, replay other than instant, several
//! filter subjects, consumers without a name (ephemeral).

use super::conn::Context;
use super::jsapi::{call, cluster_json, err, error_json, op_error, rfc3339, unexpected};
use crate::ops::{ConsumerOp, ConsumerView, ErrorCode, Op, OpResult};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::stream::consumer::{ConsumerConfig, DeliverPolicy, MAX_ACK_PENDING_DEFAULT};
use sluice_core::stream::validate_stream_name;

#[derive(Deserialize)]
struct CreateRequest {
    stream_name: Option<String>,
    config: Option<NatsConfig>,
    /// "create", "update", or empty (either).
    #[serde(default)]
    action: String,
}

/// The consumer configuration fields sluice reads (NATS names; others are ignored).
#[derive(Deserialize, Default)]
struct NatsConfig {
    durable_name: Option<String>,
    name: Option<String>,
    deliver_subject: Option<String>,
    deliver_policy: Option<String>,
    opt_start_seq: Option<u64>,
    ack_policy: Option<String>,
    /// Nanoseconds.
    ack_wait: Option<i64>,
    max_deliver: Option<i64>,
    filter_subject: Option<String>,
    #[serde(default)]
    filter_subjects: Vec<String>,
    replay_policy: Option<String>,
    max_ack_pending: Option<i64>,
}

pub async fn route(ctx: &Context, api: &str, payload: &[u8]) -> Value {
    let (verb, rest) = match api.strip_prefix("DURABLE.CREATE.") {
        Some(rest) => ("CREATE", rest),
        None => match api.split_once('.') {
            Some(x) => x,
            None => return error_json("", err::NOT_SUPPORTED, &format!("$JS.API.CONSUMER.{api} is not supported")),
        },
    };
    let mut parts = rest.splitn(3, '.');
    let stream = parts.next().unwrap_or("");
    let name = parts.next();
    if validate_stream_name(stream).is_err() {
        return error_json("", err::BAD_REQUEST, &format!("invalid stream name {stream:?}"));
    }
    let kind = match verb {
        "CREATE" => "consumer_create_response",
        "INFO" => "consumer_info_response",
        "DELETE" => "consumer_delete_response",
        "NAMES" => "consumer_names_response",
        "LIST" => "consumer_list_response",
        _ => return error_json("", err::NOT_SUPPORTED, &format!("$JS.API.CONSUMER.{verb} is not supported by sluice")),
    };
    let op = |op| Op::Consumer { stream: stream.to_string(), op };
    match (verb, name) {
        ("CREATE", _) => create(ctx, stream, name, payload).await,
        ("INFO", Some(name)) => consumer_response(kind, call(ctx, op(ConsumerOp::Info { name: name.into() })).await),
        ("DELETE", Some(name)) => match call(ctx, op(ConsumerOp::Delete { name: name.into() })).await {
            OpResult::Deleted => json!({ "type": format!("io.nats.jetstream.api.v1.{kind}"), "success": true }),
            OpResult::Error { code, text } => op_error(kind, code, &text),
            other => unexpected(kind, &other),
        },
        ("NAMES", None) => match call(ctx, op(ConsumerOp::Names)).await {
            OpResult::Names(names) => json!({
                "type": format!("io.nats.jetstream.api.v1.{kind}"),
                "total": names.len(), "offset": 0, "limit": names.len().max(1024), "consumers": names,
            }),
            OpResult::Error { code, text } => op_error(kind, code, &text),
            other => unexpected(kind, &other),
        },
        ("LIST", None) => {
            let names = match call(ctx, op(ConsumerOp::Names)).await {
                OpResult::Names(names) => names,
                OpResult::Error { code, text } => return op_error(kind, code, &text),
                other => return unexpected(kind, &other),
            };
            let mut list = Vec::with_capacity(names.len());
            for name in names {
                if let OpResult::Consumer(view) = call(ctx, op(ConsumerOp::Info { name })).await {
                    list.push(consumer_info(&view));
                }
            }
            json!({
                "type": format!("io.nats.jetstream.api.v1.{kind}"),
                "total": list.len(), "offset": 0, "limit": list.len().max(256), "consumers": list,
            })
        }
        _ => error_json(kind, err::BAD_REQUEST, &format!("$JS.API.CONSUMER.{api}: wrong number of tokens")),
    }
}

async fn create(ctx: &Context, stream: &str, subject_name: Option<&str>, payload: &[u8]) -> Value {
    let kind = "consumer_create_response";
    let (config, action) = match parse_create(stream, subject_name, payload) {
        Ok(x) => x,
        Err(v) => return v,
    };
    // "create" must not change an existing consumer, "update" must find one.
    if !action.is_empty() {
        let existing =
            call(ctx, Op::Consumer { stream: stream.into(), op: ConsumerOp::Info { name: config.name.clone() } }).await;
        match (&action[..], &existing) {
            ("create", OpResult::Consumer(view)) if view.info.config != config => {
                return error_json(kind, err::CONSUMER_EXISTS, "consumer already exists");
            }
            ("update", OpResult::Error { code: ErrorCode::NoSuchConsumer, .. }) => {
                return error_json(kind, err::CONSUMER_DOES_NOT_EXIST, "consumer does not exist");
            }
            (_, OpResult::Error { code, text }) if *code != ErrorCode::NoSuchConsumer => {
                return op_error(kind, *code, text);
            }
            _ => {}
        }
    }
    consumer_response(kind, call(ctx, Op::Consumer { stream: stream.into(), op: ConsumerOp::Create { config } }).await)
}

fn parse_create(stream: &str, subject_name: Option<&str>, payload: &[u8]) -> Result<(ConsumerConfig, String), Value> {
    let kind = "consumer_create_response";
    let bad = |text: String| error_json(kind, err::BAD_REQUEST, &text);
    let req: CreateRequest = serde_json::from_slice(payload).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    if req.stream_name.as_deref().is_some_and(|s| s != stream) {
        return Err(error_json(kind, err::NAME_MISMATCH, "stream name in subject does not match request"));
    }
    let c = req.config.unwrap_or_default();
    // CREATE.<stream>.<name>.<filter>: only the name part is ours to check.
    let subject_name = subject_name.map(|n| n.split('.').next().unwrap_or(n));
    let name = match (c.durable_name.as_deref(), c.name.as_deref(), subject_name) {
        (Some(d), Some(n), _) if d != n => return Err(bad("durable_name and name differ".into())),
        (Some(n), _, s) | (None, Some(n), s) if s.is_some_and(|s| s != n) => {
            return Err(bad(format!("consumer name {n:?} does not match the subject's {:?}", s.unwrap_or(""))))
        }
        (Some(n), _, _) | (None, Some(n), _) | (None, None, Some(n)) => n.to_string(),
        (None, None, None) => return Err(bad("sluice has durable consumers only: give the consumer a name".into())),
    };
    if c.deliver_subject.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(bad("push consumers (deliver_subject) are not supported by sluice; use a pull consumer".into()));
    }
    if c.ack_policy.as_deref().is_some_and(|p| p != "explicit") {
        return Err(bad(format!(
            "ack policy {:?} is not supported by sluice (explicit only)",
            c.ack_policy.unwrap_or_default()
        )));
    }
    if c.replay_policy.as_deref().is_some_and(|p| p != "instant") {
        return Err(bad("replay policy other than instant is not supported by sluice".into()));
    }
    let filter_subject = match (c.filter_subject.filter(|f| !f.is_empty()), &c.filter_subjects[..]) {
        (Some(f), []) => Some(f),
        (None, []) => None,
        (None, [one]) => Some(one.clone()),
        _ => return Err(bad("sluice supports one filter subject per consumer".into())),
    };
    let deliver_policy = match (c.deliver_policy.as_deref().unwrap_or("all"), c.opt_start_seq) {
        ("all", _) => DeliverPolicy::All,
        ("last", _) => DeliverPolicy::Last,
        ("new", _) => DeliverPolicy::New,
        ("by_start_sequence", Some(seq)) => DeliverPolicy::ByStartSequence { seq },
        (other, _) => return Err(bad(format!("deliver policy {other:?} is not supported by sluice"))),
    };
    let config = ConsumerConfig {
        name,
        deliver_policy,
        filter_subject,
        ack_wait_ms: match c.ack_wait {
            Some(ns) if ns > 0 => (ns as u64).div_ceil(1_000_000),
            _ => sluice_core::stream::consumer::ACK_WAIT_MS_DEFAULT,
        },
        max_deliver: c.max_deliver.filter(|m| *m > 0).map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
        max_ack_pending: match c.max_ack_pending {
            Some(m) if m > 0 => u32::try_from(m).unwrap_or(u32::MAX),
            _ => MAX_ACK_PENDING_DEFAULT,
        },
    };
    config.validate().map_err(bad)?;
    Ok((config, req.action))
}

fn consumer_response(kind: &str, r: OpResult) -> Value {
    match r {
        OpResult::Consumer(view) => {
            let mut v = consumer_info(&view);
            v["type"] = json!(format!("io.nats.jetstream.api.v1.{kind}"));
            v
        }
        OpResult::Error { code, text } => op_error(kind, code, &text),
        other => unexpected(kind, &other),
    }
}

/// A consumer's info in NATS's shape.
pub fn consumer_info(view: &ConsumerView) -> Value {
    let v = &view.info;
    let c = &v.config;
    let mut config = json!({
        "durable_name": c.name,
        "name": c.name,
        "ack_policy": "explicit",
        "ack_wait": (c.ack_wait_ms as i64).saturating_mul(1_000_000),
        "max_deliver": c.max_deliver.map_or(-1, i64::from),
        "replay_policy": "instant",
        "max_ack_pending": c.max_ack_pending,
        "max_waiting": 512,
        "num_replicas": view.peers.len(),
    });
    match c.deliver_policy {
        DeliverPolicy::All => config["deliver_policy"] = json!("all"),
        DeliverPolicy::Last => config["deliver_policy"] = json!("last"),
        DeliverPolicy::New => config["deliver_policy"] = json!("new"),
        DeliverPolicy::ByStartSequence { seq } => {
            config["deliver_policy"] = json!("by_start_sequence");
            config["opt_start_seq"] = json!(seq);
        }
    }
    if let Some(f) = &c.filter_subject {
        config["filter_subject"] = json!(f);
    }
    json!({
        "stream_name": view.stream,
        "name": c.name,
        "created": rfc3339(v.created_ns),
        "config": config,
        "delivered": { "consumer_seq": v.delivered_consumer_seq, "stream_seq": v.delivered_stream_seq },
        "ack_floor": { "consumer_seq": v.ack_floor_consumer_seq, "stream_seq": v.ack_floor_stream_seq },
        "num_ack_pending": v.num_ack_pending,
        "num_redelivered": v.num_redelivered,
        "num_waiting": 0,
        "num_pending": v.num_pending,
        "cluster": cluster_json(view.leader, &view.peers),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(subject_name: Option<&str>, body: &str) -> Result<ConsumerConfig, String> {
        parse_create("S", subject_name, body.as_bytes())
            .map(|(c, _)| c)
            .map_err(|v| v["error"]["description"].to_string())
    }

    #[test]
    fn nats_configs_map_to_consumer_configs_or_are_refused_by_name() {
        let c = parse(
            Some("C"),
            r#"{"stream_name":"S","config":{"durable_name":"C","deliver_policy":"by_start_sequence","opt_start_seq":5,
                "ack_policy":"explicit","ack_wait":1500000000,"max_deliver":3,"filter_subject":"a.*","max_ack_pending":-1}}"#,
        )
        .unwrap();
        assert_eq!(c.deliver_policy, DeliverPolicy::ByStartSequence { seq: 5 });
        assert_eq!((c.ack_wait_ms, c.max_deliver, c.max_ack_pending), (1500, Some(3), MAX_ACK_PENDING_DEFAULT));
        assert_eq!(c.filter_subject.as_deref(), Some("a.*"));
        let defaults = parse(Some("D"), r#"{"stream_name":"S","config":{"max_deliver":-1}}"#).unwrap();
        assert_eq!(
            (defaults.name.as_str(), defaults.max_deliver, defaults.deliver_policy),
            ("D", None, DeliverPolicy::All)
        );

        for (body, words) in [
            (r#"{"config":{"durable_name":"C","deliver_subject":"x"}}"#, "push consumers"),
            (r#"{"config":{"durable_name":"C","ack_policy":"none"}}"#, "ack policy"),
            (r#"{"config":{"durable_name":"C","filter_subjects":["a","b"]}}"#, "one filter subject"),
            (r#"{"config":{}}"#, "durable consumers only"),
            (r#"{"config":{"durable_name":"X"}}"#, "does not match"),
            (r#"{"config":{"durable_name":"C","deliver_policy":"by_start_time"}}"#, "deliver policy"),
            (r#"{"config":{"durable_name":"C","max_ack_pending":1000000}}"#, "max ack pending"),
            (r#"{"config":"#, "invalid JSON"),
        ] {
            let subject_name = if body.contains("\"X\"") { Some("C") } else { None };
            let err = parse(subject_name, body).unwrap_err();
            assert!(err.contains(words), "{body}: {err}");
        }
        let err = parse_create("S", None, br#"{"stream_name":"T","config":{"durable_name":"C"}}"#).unwrap_err();
        assert_eq!(err["error"]["err_code"], 10056);
    }
}
