//! One NATS client connection: reads operations, runs publishes and JetStream API requests
//! through the node thread, and delivers answers to the connection's reply subscriptions.
//!
//! Memory per connection is bounded: the read buffer by the control line plus the announced
//! `max_payload`; subscriptions by `SUBS_MAX`; requests in flight by `IN_FLIGHT_MAX` (more
//! waits: reading stops, and TCP pushes back on the client); frames queued for the socket by
//! `OUT_QUEUE_FRAMES` (a client that does not read its answers is a slow consumer and is
//! disconnected, as nats-server does).

use super::jsapi;
use super::proto::{self, ClientOp};
use crate::driver::{Event, StreamSubjects};
use crate::ops::{ErrorCode, Op, OpResult};
use bytes::{BufMut, Bytes, BytesMut};
use sluice_core::stream::subject_matches;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};

pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
const SUBS_MAX: usize = 1024;
const IN_FLIGHT_MAX: usize = 4096;
const OUT_QUEUE_FRAMES: usize = 8192;
/// A subject or sid longer than this in SUB is refused.
const SUBJECT_BYTES_MAX: usize = 1024;

struct Sub {
    subject: Bytes,
    /// Deliveries left before the subscription ends (UNSUB with a max).
    left: Option<u64>,
}

/// What the tasks answering this connection's requests share with it.
pub struct Shared {
    subs: Mutex<BTreeMap<Bytes, Sub>>,
    out: mpsc::Sender<Bytes>,
    headers: AtomicBool,
    no_responders: AtomicBool,
    closed: AtomicBool,
    close: Notify,
}

impl Shared {
    /// Sends `payload` (with `headers`, a NATS header block, if any) to every subscription
    /// of this connection that matches `subject`. Nothing matches: dropped, as in NATS.
    pub fn deliver(&self, subject: &[u8], headers: Option<&[u8]>, payload: &[u8]) {
        self.deliver_msg(subject, subject, None, headers, payload);
    }

    /// Whether a subscription of this connection matches `subject`.
    pub fn has_interest(&self, subject: &[u8]) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false; // a closed connection hears nothing: its pulls end
        }
        let subs = self.subs.lock().expect("no panics while held");
        subs.values().any(|s| subject_matches(&s.subject, subject))
    }

    /// Sends a message to the subscriptions matching `route`, shown with `subject` and
    /// `reply` (a pulled message goes to the pull's inbox with its own subject and an ack
    /// subject).
    pub fn deliver_msg(
        &self,
        route: &[u8],
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) {
        let subject_and_reply = |b: &mut BytesMut, sid: &[u8]| {
            b.put_slice(subject);
            b.put_u8(b' ');
            b.put_slice(sid);
            if let Some(r) = reply {
                b.put_u8(b' ');
                b.put_slice(r);
            }
        };
        let sids: Vec<Bytes> = {
            let mut subs = self.subs.lock().expect("no panics while held");
            let mut hit = Vec::new();
            subs.retain(|sid, sub| {
                if !subject_matches(&sub.subject, route) {
                    return true;
                }
                hit.push(sid.clone());
                match &mut sub.left {
                    Some(left) => {
                        *left -= 1;
                        *left > 0
                    }
                    None => true,
                }
            });
            hit
        };
        for sid in sids {
            let mut b = BytesMut::with_capacity(64 + subject.len() + payload.len());
            match headers {
                Some(h) if self.headers.load(Ordering::Relaxed) => {
                    b.put_slice(b"HMSG ");
                    subject_and_reply(&mut b, &sid);
                    b.put_slice(format!(" {} {}\r\n", h.len(), h.len() + payload.len()).as_bytes());
                    b.put_slice(h);
                }
                _ => {
                    b.put_slice(b"MSG ");
                    subject_and_reply(&mut b, &sid);
                    b.put_slice(format!(" {}\r\n", payload.len()).as_bytes());
                }
            }
            b.put_slice(payload);
            b.put_slice(b"\r\n");
            self.send(b.freeze());
        }
    }

    fn send(&self, frame: Bytes) {
        if self.out.try_send(frame).is_err() && !self.closed.swap(true, Ordering::Relaxed) {
            tracing::info!("slow consumer: its answers are not read; closing the connection");
            self.close.notify_one();
        }
    }
}

/// Everything a connection needs from the server.
#[derive(Clone)]
pub struct Context {
    pub events: mpsc::Sender<Event>,
    pub subjects: watch::Receiver<StreamSubjects>,
    pub info: Arc<String>,
    pub defaults: jsapi::Defaults,
}

/// The node thread went away: the server is shutting down.
pub struct ShuttingDown;

impl Context {
    /// Queues `op` for the node thread, in the order called (waiting while the queue is
    /// full), and returns where its answer will come from.
    pub async fn submit(&self, op: Op) -> Result<Answer, ShuttingDown> {
        let (reply, rx) = oneshot::channel();
        self.events.send(Event::Client { op, reply }).await.map_err(|_| ShuttingDown)?;
        Ok(Answer(rx))
    }
}

/// A submitted operation's answer to come.
pub struct Answer(oneshot::Receiver<OpResult>);

impl Answer {
    pub async fn get(self) -> OpResult {
        self.0.await.unwrap_or_else(|_| OpResult::error(ErrorCode::Unavailable, "server shutting down"))
    }
}

pub async fn serve(stream: TcpStream, ctx: Context) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(OUT_QUEUE_FRAMES);
    let shared = Arc::new(Shared {
        subs: Mutex::new(BTreeMap::new()),
        out: out_tx,
        headers: AtomicBool::new(false),
        no_responders: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        close: Notify::new(),
    });
    let writer = tokio::spawn(write_loop(wr, out_rx));
    shared.send(Bytes::from(format!("INFO {}\r\n", ctx.info)));
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let mut verbose = false;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut fatal = false;
    'conn: loop {
        loop {
            match proto::parse(&mut buf, MAX_PAYLOAD_BYTES) {
                Ok(Some(op)) => {
                    if let Err(e) = handle(op, &ctx, &shared, &in_flight, &mut verbose).await {
                        shared.send(Bytes::from(format!("-ERR '{e}'\r\n")));
                        fatal = true;
                        break 'conn;
                    }
                    if verbose {
                        shared.send(Bytes::from_static(b"+OK\r\n"));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = ?e, "protocol error; closing");
                    shared.send(Bytes::from(format!("-ERR '{e}'\r\n")));
                    fatal = true;
                    break 'conn;
                }
            }
        }
        if shared.closed.load(Ordering::Relaxed) {
            break;
        }
        tokio::select! {
            n = rd.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            () = shared.close.notified() => break,
        }
    }
    // Pulls still running for this connection see it closed and stop asking (`has_interest`).
    shared.closed.store(true, Ordering::Relaxed);
    // Let the answers already queued (an -ERR) go out, then close.
    drop(shared);
    let _ = writer.await;
    if fatal {
        linger(&mut rd, buf).await;
    }
}

/// How long a connection closed for a protocol error keeps reading after its `-ERR` and FIN.
const LINGER_MS: u64 = 500;

/// Reads and discards the client's input until it closes, for at most `LINGER_MS`.
///
/// Closing a socket whose input is unread makes the kernel send an RST instead of a FIN, and it
/// discards what was still queued to send. On loopback the RST can even overtake the data, so the
/// client sees `connection reset` without the INFO and `-ERR` that explain why. The write half is
/// already shut down here, so the client has its FIN and is expected to close.
async fn linger(rd: &mut tokio::net::tcp::OwnedReadHalf, mut scratch: BytesMut) {
    let drain = async {
        loop {
            scratch.clear();
            match rd.read_buf(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_millis(LINGER_MS), drain).await;
}

async fn write_loop(wr: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(frame) = rx.recv().await {
        let mut next = Some(frame);
        while let Some(f) = next.take() {
            if w.write_all(&f).await.is_err() {
                return;
            }
            next = rx.try_recv().ok();
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// A protocol violation after which the connection closes (the text goes in `-ERR`).
type Fatal = String;

async fn handle(
    op: ClientOp,
    ctx: &Context,
    shared: &Arc<Shared>,
    in_flight: &Arc<Semaphore>,
    verbose: &mut bool,
) -> Result<(), Fatal> {
    match op {
        ClientOp::Ping => shared.send(Bytes::from_static(b"PONG\r\n")),
        ClientOp::Pong => {}
        ClientOp::Connect(json) => {
            let c: serde_json::Value =
                serde_json::from_slice(&json).map_err(|e| format!("Parser Error: CONNECT is not JSON: {e}"))?;
            let flag = |k: &str| c.get(k).and_then(serde_json::Value::as_bool).unwrap_or(false);
            *verbose = flag("verbose");
            shared.headers.store(flag("headers"), Ordering::Relaxed);
            shared.no_responders.store(flag("no_responders") && flag("headers"), Ordering::Relaxed);
        }
        ClientOp::Sub { subject, sid } => {
            if subject.len() > SUBJECT_BYTES_MAX || sid.len() > SUBJECT_BYTES_MAX {
                return Err("Invalid Subject".into());
            }
            if sluice_core::stream::validate_subject(&subject, true).is_err() {
                return Err("Invalid Subject".into());
            }
            let mut subs = shared.subs.lock().expect("no panics while held");
            if subs.len() >= SUBS_MAX && !subs.contains_key(&sid) {
                return Err(format!("Maximum Subscriptions Exceeded ({SUBS_MAX})"));
            }
            subs.insert(sid, Sub { subject, left: None });
        }
        ClientOp::Unsub { sid, max } => {
            let mut subs = shared.subs.lock().expect("no panics while held");
            match max {
                Some(max) if max > 0 => {
                    if let Some(s) = subs.get_mut(&sid) {
                        s.left = Some(max);
                    }
                }
                _ => {
                    subs.remove(&sid);
                }
            }
        }
        ClientOp::Pub { subject, reply, headers, payload } => {
            const NEXT: &[u8] = b"$JS.API.CONSUMER.MSG.NEXT.";
            if subject.starts_with(NEXT) {
                let Some(reply) = reply else { return Ok(()) }; // a pull nobody hears
                let api = String::from_utf8_lossy(&subject[NEXT.len()..]).into_owned();
                let permit = in_flight.clone().acquire_owned().await.expect("never closed");
                let (ctx, shared) = (ctx.clone(), shared.clone());
                tokio::spawn(async move {
                    super::pull::serve(ctx, shared, api, reply, payload).await;
                    drop(permit);
                });
                return Ok(());
            }
            if subject.starts_with(b"$JS.ACK.") {
                let permit = in_flight.clone().acquire_owned().await.expect("never closed");
                let (ctx, shared) = (ctx.clone(), shared.clone());
                tokio::spawn(async move {
                    super::pull::ack(ctx, shared, subject, reply, payload).await;
                    drop(permit);
                });
                return Ok(());
            }
            let sluice_api = subject.starts_with(super::backup_api::PREFIX);
            if subject.starts_with(b"$JS.API.") || sluice_api {
                let Some(reply) = reply else { return Ok(()) }; // an API call nobody hears
                let permit = in_flight.clone().acquire_owned().await.expect("never closed");
                let (ctx, shared) = (ctx.clone(), shared.clone());
                tokio::spawn(async move {
                    let answer = if sluice_api {
                        super::backup_api::handle(&ctx, &subject, payload).await
                    } else {
                        jsapi::handle(&ctx, &subject, &payload).await
                    };
                    shared.deliver(&reply, answer.headers.as_deref(), &answer.body);
                    drop(permit);
                });
                return Ok(());
            }
            let stream = {
                let list = ctx.subjects.borrow();
                list.iter()
                    .find(|(_, subjects)| subjects.iter().any(|f| subject_matches(f, &subject)))
                    .map(|(n, _)| n.clone())
            };
            let Some(stream) = stream else {
                // Core NATS: no subscriber here. A request gets "no responders" if it asked.
                if let Some(reply) = reply {
                    if shared.no_responders.load(Ordering::Relaxed) {
                        shared.deliver(&reply, Some(b"NATS/1.0 503\r\n\r\n"), b"");
                    }
                }
                return Ok(());
            };
            let headers = headers.unwrap_or_default();
            let msg_id = proto::header(&headers, "Nats-Msg-Id").map(Bytes::copy_from_slice).unwrap_or_default();
            let expected_last_seq = match proto::header(&headers, "Nats-Expected-Last-Sequence") {
                None => None,
                Some(v) => Some(
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .ok_or("Parser Error: Nats-Expected-Last-Sequence is not a number")?,
                ),
            };
            let op = Op::Publish { stream: stream.clone(), subject, msg_id, headers, payload, expected_last_seq };
            let permit = in_flight.clone().acquire_owned().await.expect("never closed");
            let Ok(answer) = ctx.submit(op).await else { return Err("server shutting down".into()) };
            let shared = shared.clone();
            tokio::spawn(async move {
                let result = answer.get().await;
                if let Some(reply) = reply {
                    shared.deliver(&reply, None, &jsapi::pub_ack(&stream, &result));
                }
                drop(permit);
            });
        }
    }
    Ok(())
}
