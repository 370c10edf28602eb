//! A minimal NATS client on one TCP connection, for the `sluice` commands that talk to a
//! server (`bench`, `backup`, `restore`). It speaks the protocol directly, so no client
//! library's queueing hides in `bench`'s numbers, and it trusts nothing it reads: a line is
//! at most 64 KiB and a message at most `MSG_BYTES_MAX`.

use bytes::{Buf, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const NO_RESPONDERS: &str = "no responders: no stream holds the subject";
/// Largest message body accepted from the server.
const MSG_BYTES_MAX: usize = 64 << 20;
const LINE_BYTES_MAX: usize = 64 * 1024;

/// `nats://host:port` or `host:port`.
fn address(url: &str) -> &str {
    url.strip_prefix("nats://").unwrap_or(url)
}

pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    /// Every reply subject starts with this; the client is subscribed to `<inbox>.>`.
    inbox: String,
}

/// One message the server sent: (subject, payload, whether it is a no-responders status).
pub type Msg = (String, Vec<u8>, bool);

impl Client {
    /// Connects, announces itself as `lang`, and subscribes to `<inbox>.>`.
    pub async fn open(url: &str, lang: &str, inbox: &str) -> Result<Client, String> {
        let stream = TcpStream::connect(address(url)).await.map_err(|e| format!("connect {url}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut c = Client { stream, buf: BytesMut::with_capacity(1 << 20), inbox: inbox.to_string() };
        let info = c.line().await?;
        if !info.starts_with("INFO ") {
            return Err(format!("{url} did not start with INFO: {info:?}"));
        }
        let connect = serde_json::json!({
            "verbose": false, "pedantic": false, "headers": true, "no_responders": true, "protocol": 1, "lang": lang,
        });
        c.send(format!("CONNECT {connect}\r\nSUB {inbox}.> 1\r\nPING\r\n").as_bytes()).await?;
        loop {
            let l = c.line().await?;
            if l == "PONG" {
                return Ok(c);
            }
            if l.starts_with("-ERR") {
                return Err(format!("{url}: {l}"));
            }
        }
    }

    pub async fn send(&mut self, b: &[u8]) -> Result<(), String> {
        self.stream.write_all(b).await.map_err(|e| format!("write: {e}"))
    }

    async fn fill(&mut self) -> Result<(), String> {
        let n = self.stream.read_buf(&mut self.buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        Ok(())
    }

    async fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.advance(i + 2);
                return Ok(l);
            }
            if self.buf.len() > LINE_BYTES_MAX {
                return Err("a protocol line longer than 64 KiB".into());
            }
            self.fill().await?;
        }
    }

    /// The next MSG or HMSG; answers PINGs on the way.
    pub async fn next_msg(&mut self) -> Result<Msg, String> {
        loop {
            let l = self.line().await?;
            let parts: Vec<&str> = l.split_ascii_whitespace().collect();
            match parts.first().copied() {
                Some("PING") => self.send(b"PONG\r\n").await?,
                Some("MSG") | Some("HMSG") if parts.len() >= 4 => {
                    let total: usize =
                        parts.last().and_then(|n| n.parse().ok()).ok_or_else(|| format!("bad line {l:?}"))?;
                    let headers: usize = if parts[0] == "HMSG" {
                        parts[parts.len() - 2].parse().map_err(|_| format!("bad line {l:?}"))?
                    } else {
                        0
                    };
                    if total > MSG_BYTES_MAX || headers > total {
                        return Err(format!("bad sizes in {l:?}"));
                    }
                    while self.buf.len() < total + 2 {
                        self.fill().await?;
                    }
                    let body = self.buf[headers..total].to_vec();
                    let no_responders = self.buf[..headers].starts_with(b"NATS/1.0 503");
                    self.buf.advance(total + 2);
                    return Ok((parts[1].to_string(), body, no_responders));
                }
                Some("-ERR") => return Err(l),
                _ => {}
            }
        }
    }

    /// The next message on `subject`; messages on other subjects (late answers to earlier
    /// attempts) are dropped.
    pub async fn next_on(&mut self, subject: &str) -> Result<Vec<u8>, String> {
        loop {
            let (got, body, no_responders) = self.next_msg().await?;
            if got == subject {
                return if no_responders { Err(NO_RESPONDERS.into()) } else { Ok(body) };
            }
        }
    }

    /// Whether `subject` is the reply subject of an API request.
    pub fn is_api_inbox(&self, subject: &str) -> bool {
        subject.strip_prefix(self.inbox.as_str()).is_some_and(|rest| rest.starts_with(".api."))
    }

    /// A request on its own reply subject (`attempt` numbers it), answered within `timeout`;
    /// returns the answer's raw body.
    pub async fn request_raw(
        &mut self,
        subject: &str,
        body: &[u8],
        attempt: u32,
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let inbox = format!("{}.api.{attempt}", self.inbox);
        let mut b = format!("PUB {subject} {inbox} {}\r\n", body.len()).into_bytes();
        b.extend_from_slice(body);
        b.extend_from_slice(b"\r\n");
        self.send(&b).await?;
        tokio::time::timeout(timeout, self.next_on(&inbox))
            .await
            .map_err(|_| format!("no answer to {subject} in {} s", timeout.as_secs()))?
    }

    /// An API request answered with JSON within 5 s.
    pub async fn request(&mut self, subject: &str, body: &[u8], attempt: u32) -> Result<serde_json::Value, String> {
        let body = self.request_raw(subject, body, attempt, Duration::from_secs(5)).await?;
        serde_json::from_slice(&body).map_err(|e| format!("{subject}: answer is not JSON: {e}"))
    }
}
