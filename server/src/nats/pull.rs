//! Pull requests (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`) and acks (`$JS.ACK.>`)
//! on the client port, as NATS clients send them.
//!
//! A pull is served by one task per request: it asks the stream's leader for up to
//! `NEXT_BATCH_MAX` messages at a time (each ask is one `ConsumerNext` entry in the stream's
//! log), delivers each to the request's reply subject with the message's own subject and an
//! ack subject `$JS.ACK.<stream>.<consumer>.<deliveries>.<stream seq>.<consumer seq>.<ts>.
//! <pending>`, and ends as nats-server does: when the batch is complete; with `404 No
//! Messages` (no_wait, nothing delivered) or `408 Request Timeout` (no_wait with part of the
//! batch, or `expires` reached, with `Nats-Pending-Messages`/`Nats-Pending-Bytes`); or when
//! the client no longer listens on the reply subject. While it waits it sends `100 Idle
//! Heartbeat` at the requested interval. Waiting happens on the leader (`driver.rs`), which
//! proposes nothing until the consumer has a message.

use super::conn::{Context, Shared};
use crate::ops::{AckWire, ConsumerOp, ErrorCode, Op, OpResult};
use serde::Deserialize;
use sluice_core::stream::consumer::NEXT_BATCH_MAX;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Messages one pull request may ask for in total.
pub const PULL_BATCH_MAX: u64 = 100_000;
/// The longest a pull request waits, whatever `expires` says.
const PULL_WAIT_MAX: Duration = Duration::from_secs(3600);
/// The longest one ask waits on the leader before the task looks at its client again.
const ASK_WAIT_MAX: Duration = Duration::from_secs(5);
/// Pause before asking again after the leader could not answer (an election).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

#[derive(Deserialize, Default)]
struct NextRequest {
    #[serde(default)]
    batch: u64,
    /// Nanoseconds; 0 or absent: no expiry.
    #[serde(default)]
    expires: u64,
    #[serde(default)]
    no_wait: bool,
    #[serde(default)]
    max_bytes: u64,
    /// Nanoseconds.
    #[serde(default)]
    idle_heartbeat: u64,
}

struct Pull {
    batch: u64,
    max_bytes: u64,
    no_wait: bool,
    deadline: Option<Instant>,
    heartbeat: Option<Duration>,
}

/// A request body: empty (one message), a bare number (a batch, the old form), or JSON.
fn parse(payload: &[u8], now: Instant) -> Result<Pull, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "pull request is not UTF-8".to_string())?.trim();
    let req = if text.is_empty() {
        NextRequest { batch: 1, ..NextRequest::default() }
    } else if let Ok(batch) = text.parse::<u64>() {
        NextRequest { batch, ..NextRequest::default() }
    } else {
        serde_json::from_str(text).map_err(|e| format!("pull request: {e}"))?
    };
    if req.batch == 0 || req.batch > PULL_BATCH_MAX {
        return Err(format!("pull batch {} outside 1..={PULL_BATCH_MAX}", req.batch));
    }
    let expires = Duration::from_nanos(req.expires).min(PULL_WAIT_MAX);
    Ok(Pull {
        batch: req.batch,
        max_bytes: if req.max_bytes == 0 { u64::MAX } else { req.max_bytes },
        no_wait: req.no_wait,
        deadline: (req.expires > 0).then(|| now + expires),
        heartbeat: (req.idle_heartbeat > 0)
            .then(|| Duration::from_nanos(req.idle_heartbeat).max(Duration::from_millis(100))),
    })
}

fn status(shared: &Shared, reply: &[u8], line: &str, extra: &str) {
    let headers = format!("NATS/1.0 {line}\r\n{extra}\r\n");
    shared.deliver(reply, Some(headers.as_bytes()), b"");
}

/// Serves one pull request to the end. `api` is the subject after `$JS.API.CONSUMER.MSG.NEXT.`.
pub async fn serve(ctx: Context, shared: Arc<Shared>, api: String, reply: bytes::Bytes, payload: bytes::Bytes) {
    let Some((stream, consumer)) =
        api.split_once('.').filter(|(s, c)| !s.is_empty() && !c.is_empty() && !c.contains('.'))
    else {
        return status(&shared, &reply, "400 Bad Request", "");
    };
    let mut pull = match parse(&payload, Instant::now()) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "bad pull request");
            return status(&shared, &reply, "400 Bad Request", "");
        }
    };
    let mut delivered = 0u64;
    loop {
        if !shared.has_interest(&reply) {
            return; // the client stopped listening
        }
        let now = Instant::now();
        if pull.deadline.is_some_and(|d| now >= d) {
            let extra = format!(
                "Nats-Pending-Messages: {}\r\nNats-Pending-Bytes: {}\r\n",
                pull.batch,
                if pull.max_bytes == u64::MAX { 0 } else { pull.max_bytes }
            );
            return status(&shared, &reply, "408 Request Timeout", &extra);
        }
        let mut wait = if pull.no_wait { Duration::ZERO } else { ASK_WAIT_MAX };
        if let Some(d) = pull.deadline {
            wait = wait.min(d - now);
        }
        if let Some(h) = pull.heartbeat {
            wait = wait.min(h);
        }
        let op = Op::Consumer {
            stream: stream.to_string(),
            op: ConsumerOp::Next {
                name: consumer.to_string(),
                batch: u32::try_from(pull.batch.min(u64::from(NEXT_BATCH_MAX))).expect("bounded"),
                max_bytes: u32::try_from(pull.max_bytes.min(u64::from(u32::MAX))).expect("bounded"),
                wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            },
        };
        let Ok(answer) = ctx.submit(op).await else { return };
        match answer.get().await {
            OpResult::Delivered { msgs, num_pending } => {
                let empty = msgs.is_empty();
                for (i, d) in msgs.iter().enumerate() {
                    let m = &d.message;
                    let pending = num_pending + (msgs.len() - i - 1) as u64;
                    let ack = format!(
                        "$JS.ACK.{stream}.{consumer}.{}.{}.{}.{}.{pending}",
                        d.deliveries, m.seq, d.consumer_seq, m.timestamp_ns
                    );
                    let headers = (!m.headers.is_empty()).then_some(&m.headers[..]);
                    shared.deliver_msg(&reply, &m.subject, Some(ack.as_bytes()), headers, &m.payload);
                    pull.batch -= 1;
                    pull.max_bytes = pull.max_bytes.saturating_sub((m.headers.len() + m.payload.len()) as u64);
                    delivered += 1;
                }
                if pull.batch == 0 || pull.max_bytes == 0 {
                    return;
                }
                if empty {
                    if pull.no_wait {
                        return if delivered == 0 {
                            status(&shared, &reply, "404 No Messages", "")
                        } else {
                            status(&shared, &reply, "408 Request Timeout", "")
                        };
                    }
                    if pull.heartbeat.is_some() {
                        status(&shared, &reply, "100 Idle Heartbeat", "");
                    }
                }
            }
            OpResult::Error { code: ErrorCode::NoSuchConsumer | ErrorCode::NoSuchStream, .. } => {
                return status(&shared, &reply, "409 Consumer Deleted", "");
            }
            OpResult::Error { code: ErrorCode::Unavailable, .. } => tokio::time::sleep(RETRY_PAUSE).await,
            OpResult::Error { code, text } => {
                tracing::debug!(?code, %text, "pull refused");
                return status(&shared, &reply, "400 Bad Request", "");
            }
            other => {
                tracing::warn!(?other, "unexpected answer to a pull");
                return;
            }
        }
    }
}

/// An ack published to `$JS.ACK.<stream>.<consumer>.<deliveries>.<sseq>.<cseq>.<ts>.<pending>`
/// (or the 12-token form with domain and account hash first). Returns the stream, consumer,
/// stream sequence and kind, or why not.
pub fn parse_ack(subject: &[u8], payload: &[u8]) -> Result<(String, String, u64, AckWire), String> {
    let subject = std::str::from_utf8(subject).map_err(|_| "ack subject is not UTF-8")?;
    let tokens: Vec<&str> = subject.split('.').take(13).collect();
    let at = match tokens.len() {
        9 => 2,
        12.. => 4,
        n => return Err(format!("ack subject with {n} tokens")),
    };
    let (stream, consumer) = (tokens[at], tokens[at + 1]);
    let seq: u64 = tokens[at + 3].parse().map_err(|_| format!("ack stream sequence {:?}", tokens[at + 3]))?;
    let body = std::str::from_utf8(payload).map_err(|_| "ack body is not UTF-8")?.trim();
    let (word, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
    let kind = match word {
        "" | "+ACK" | "+NXT" => AckWire::Ack,
        "+WPI" => AckWire::Progress,
        "+TERM" => AckWire::Term,
        "-NAK" => {
            #[derive(Deserialize)]
            struct Delay {
                delay: i64,
            }
            let delay_ns = if rest.trim().is_empty() {
                0
            } else {
                serde_json::from_str::<Delay>(rest.trim()).map_err(|e| format!("nak delay: {e}"))?.delay
            };
            AckWire::Nak { delay_ns }
        }
        other => return Err(format!("unknown ack {other:?}")),
    };
    Ok((stream.to_string(), consumer.to_string(), seq, kind))
}

/// Applies an ack; a reply subject (a double ack, `ack_sync`) gets an empty message once it
/// is committed, or a `500` status if it was not.
pub async fn ack(
    ctx: Context,
    shared: Arc<Shared>,
    subject: bytes::Bytes,
    reply: Option<bytes::Bytes>,
    payload: bytes::Bytes,
) {
    let (stream, name, seq, kind) = match parse_ack(&subject, &payload) {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(error = %e, "bad ack ignored");
            return;
        }
    };
    let Ok(answer) = ctx.submit(Op::Consumer { stream, op: ConsumerOp::Ack { name, seq, kind } }).await else { return };
    let result = answer.get().await;
    if let Some(reply) = reply {
        match result {
            OpResult::Acked => shared.deliver(&reply, None, b""),
            _ => status(&shared, &reply, "500 Ack Failed", ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_requests_parse_in_each_form_and_are_bounded() {
        let now = Instant::now();
        assert_eq!(parse(b"", now).unwrap().batch, 1);
        assert_eq!(parse(b"7", now).unwrap().batch, 7);
        let p = parse(br#"{"batch":10,"expires":2000000000,"idle_heartbeat":500000000,"max_bytes":64}"#, now).unwrap();
        assert_eq!((p.batch, p.max_bytes, p.no_wait), (10, 64, false));
        assert_eq!(p.deadline, Some(now + Duration::from_secs(2)));
        assert_eq!(p.heartbeat, Some(Duration::from_millis(500)));
        assert!(parse(br#"{"batch":5,"no_wait":true}"#, now).unwrap().no_wait);
        assert!(parse(b"0", now).is_err());
        assert!(parse(br#"{"batch":100000000}"#, now).is_err());
        assert!(parse(b"{", now).is_err());
        assert!(parse(&[0xff], now).is_err());
    }

    #[test]
    fn acks_parse_from_both_subject_forms() {
        let nine = b"$JS.ACK.S.C.2.41.7.1700000000000000000.3";
        assert_eq!(parse_ack(nine, b"+ACK").unwrap(), ("S".into(), "C".into(), 41, AckWire::Ack));
        assert_eq!(parse_ack(nine, b"").unwrap().3, AckWire::Ack);
        assert_eq!(parse_ack(nine, b"-NAK").unwrap().3, AckWire::Nak { delay_ns: 0 });
        assert_eq!(parse_ack(nine, br#"-NAK {"delay":5000}"#).unwrap().3, AckWire::Nak { delay_ns: 5000 });
        assert_eq!(parse_ack(nine, b"+WPI").unwrap().3, AckWire::Progress);
        assert_eq!(parse_ack(nine, b"+TERM reason").unwrap().3, AckWire::Term);
        let twelve = b"$JS.ACK.dom.hash.S.C.2.41.7.1700000000000000000.3.tok";
        assert_eq!(parse_ack(twelve, b"+ACK").unwrap().2, 41);
        assert!(parse_ack(b"$JS.ACK.S.C.2", b"+ACK").is_err());
        assert!(parse_ack(b"$JS.ACK.S.C.2.x.7.1.3", b"+ACK").is_err());
        assert!(parse_ack(nine, b"+WHAT").is_err());
        assert!(parse_ack(nine, b"-NAK {").is_err());
    }
}
