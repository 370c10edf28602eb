//! `sluice bench`: a closed-loop JetStream publisher against any NATS-protocol server
//! (sluice or nats-server), reporting throughput and per-message publish-to-ack latency, the
//! way NATS engineers' `lats` tool does.
//!
//! Closed loop: a batch of `batch` publishes goes out (each with its own reply subject), and
//! the next batch starts when every ack of this one is in. A message's latency is from the
//! moment its PUB was written to the moment its ack arrived, recorded in microseconds in an
//! HDR histogram (3 significant digits). The client speaks the protocol directly on one TCP
//! connection, so no client library's queueing hides in the numbers. One untimed publish
//! goes first (a new stream's leader election is not publish latency).

use crate::client::{Client, NO_RESPONDERS};
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

pub struct BenchArgs {
    pub server: String,
    pub stream: String,
    pub subject: String,
    pub batch: usize,
    pub size_bytes: usize,
    pub duration: Duration,
    pub replicas: Option<u8>,
}

pub struct BenchResult {
    pub msgs: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    pub errors: u64,
}

/// Reply subjects: `_INBOX.bench.api.<attempt>` for API requests, `_INBOX.bench.warm` for
/// the warm-up publish, `_INBOX.bench.<index in the batch>` for the timed publishes.
const INBOX: &str = "_INBOX.bench";
const WARM_INBOX: &str = "_INBOX.bench.warm";

pub async fn run(a: &BenchArgs) -> Result<BenchResult, String> {
    if a.batch == 0 || a.batch > 100_000 {
        return Err("--batch must be 1..=100000".into());
    }
    let mut c = Client::open(&a.server, "sluice-bench", INBOX).await?;
    if let Some(replicas) = a.replicas {
        let cfg = serde_json::json!({
            "name": a.stream, "subjects": [a.subject], "num_replicas": replicas,
            "storage": "file", "retention": "limits", "discard": "old",
        });
        let start = Instant::now();
        // A cluster that just started may drop the request (nats-server does until its
        // meta leader is elected) or refuse it: ask again, for up to a minute.
        for attempt in 0.. {
            let r =
                c.request(&format!("$JS.API.STREAM.CREATE.{}", a.stream), cfg.to_string().as_bytes(), attempt).await;
            let why = match r {
                Ok(r) => match r.get("error") {
                    None => break,
                    // Exists already (with the same config it is not an error on sluice;
                    // nats-server says 10058 only if it differs): publish to it.
                    Some(e) if e["err_code"] == 10058 => break,
                    Some(e) => e.to_string(),
                },
                // A cluster still starting: nothing answered yet, or nobody serves the API.
                Err(e) if e.starts_with("no answer") || e == NO_RESPONDERS => e,
                Err(e) => return Err(e),
            };
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("create {}: {why}", a.stream));
            }
            eprintln!("create {}: {why}; retrying", a.stream);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let payload = vec![b'x'; a.size_bytes];
    // One untimed publish first: a stream just created is still electing its leader, and
    // that wait is not publish latency.
    let warm = format!("PUB {} {WARM_INBOX} {}\r\n", a.subject, payload.len());
    c.send(&[warm.as_bytes(), &payload, b"\r\n"].concat()).await?;
    tokio::time::timeout(Duration::from_secs(30), c.next_on(WARM_INBOX))
        .await
        .map_err(|_| "no ack to the warm-up publish in 30 s")??;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut sent_at = vec![Instant::now(); a.batch];
    let (mut msgs, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    let mut out = Vec::with_capacity(a.batch * (a.size_bytes + 64));
    while start.elapsed() < a.duration {
        out.clear();
        for i in 0..a.batch {
            out.extend_from_slice(format!("PUB {} _INBOX.bench.{i} {}\r\n", a.subject, payload.len()).as_bytes());
            out.extend_from_slice(&payload);
            out.extend_from_slice(b"\r\n");
        }
        let now = Instant::now();
        sent_at.iter_mut().for_each(|t| *t = now);
        c.send(&out).await?;
        let mut answered = 0;
        while answered < a.batch {
            let (subject, body, no_responders) = tokio::time::timeout(Duration::from_secs(30), c.next_msg())
                .await
                .map_err(|_| "no ack in 30 s".to_string())??;
            if c.is_api_inbox(&subject) {
                continue; // a late answer to a create that was retried
            }
            if no_responders {
                return Err(NO_RESPONDERS.into());
            }
            answered += 1;
            let i: usize =
                subject.rsplit('.').next().and_then(|s| s.parse().ok()).ok_or("ack on an unknown subject")?;
            let us = sent_at.get(i).ok_or("ack index out of range")?.elapsed().as_micros() as u64;
            hist.record(us.max(1)).map_err(|e| e.to_string())?;
            if body.windows(7).any(|w| w == b"\"error\"") {
                errors += 1;
            } else {
                msgs += 1;
            }
        }
    }
    Ok(BenchResult { msgs, elapsed: start.elapsed(), latency_us: hist, errors })
}

impl BenchResult {
    pub fn report(&self, a: &BenchArgs) -> String {
        let h = &self.latency_us;
        let rate = self.msgs as f64 / self.elapsed.as_secs_f64();
        format!(
            "server {} stream {} batch {} size {} B: {} msgs in {:.1} s = {:.0} msg/s ({} errors)\n\
             latency us: min {} p50 {} p90 {} p99 {} p99.9 {} max {}",
            a.server,
            a.stream,
            a.batch,
            a.size_bytes,
            self.msgs,
            self.elapsed.as_secs_f64(),
            rate,
            self.errors,
            h.min(),
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.90),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        )
    }
}

/// `20s`, `1500ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("duration {s:?}: expected e.g. 20s, 1500ms or 2m");
    let (n, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = n.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("s").is_err());
    }
}
