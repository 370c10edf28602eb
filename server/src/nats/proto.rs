//! The NATS client protocol, client-to-server direction: an incremental parser over the
//! bytes a connection has read so far. Sans-IO: the connection task feeds it a buffer and
//! gets whole operations back.
//!
//! Grammar (the subset sluice serves; docs/server.md lists what else is refused):
//! ```text
//! CONNECT <json>            PING            PONG
//! PUB <subject> [reply] <#payload>\r\n<payload>\r\n
//! HPUB <subject> [reply] <#headers> <#total>\r\n<headers><payload>\r\n
//! SUB <subject> [queue] <sid>               UNSUB <sid> [max]
//! ```
//! Operation names are case-insensitive; arguments are separated by spaces or tabs; lines end
//! in `\r\n` (a bare `\n` is accepted, as nats-server does).
//!
//! Bounds, so a hostile client cannot make the server allocate: a control line is at most
//! `CONTROL_LINE_BYTES_MAX`; a payload at most the `max_payload` the server announced. Either
//! violation is a protocol error: the connection answers `-ERR` and closes.

use bytes::{Buf, Bytes, BytesMut};
use std::fmt;

/// nats-server's MAX_CONTROL_LINE_SIZE.
pub const CONTROL_LINE_BYTES_MAX: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOp {
    Connect(Bytes),
    Ping,
    Pong,
    Pub { subject: Bytes, reply: Option<Bytes>, headers: Option<Bytes>, payload: Bytes },
    Sub { subject: Bytes, sid: Bytes },
    Unsub { sid: Bytes, max: Option<u64> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtoError {
    ControlLineTooLong,
    PayloadTooLarge {
        size_bytes: usize,
        max_bytes: usize,
    },
    UnknownOp(String),
    BadArgs {
        op: &'static str,
        line: String,
    },
    /// The payload was not followed by `\r\n`.
    BadPayloadEnd,
}

impl fmt::Display for ProtoError {
    /// The text nats-server sends in `-ERR '...'` where one exists.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::ControlLineTooLong => write!(f, "Maximum Control Line Exceeded"),
            ProtoError::PayloadTooLarge { .. } => write!(f, "Maximum Payload Violation"),
            ProtoError::UnknownOp(op) => write!(f, "Unknown Protocol Operation: {op}"),
            ProtoError::BadArgs { op, .. } => write!(f, "Parser Error: bad arguments to {op}"),
            ProtoError::BadPayloadEnd => write!(f, "Parser Error: payload not terminated by CRLF"),
        }
    }
}

/// Takes the next whole operation off the front of `buf`; `Ok(None)` if more bytes are
/// needed (nothing is consumed then).
pub fn parse(buf: &mut BytesMut, max_payload: usize) -> Result<Option<ClientOp>, ProtoError> {
    let Some(nl) = buf.iter().take(CONTROL_LINE_BYTES_MAX + 2).position(|&b| b == b'\n') else {
        if buf.len() > CONTROL_LINE_BYTES_MAX {
            return Err(ProtoError::ControlLineTooLong);
        }
        return Ok(None);
    };
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    if line_end > CONTROL_LINE_BYTES_MAX {
        return Err(ProtoError::ControlLineTooLong);
    }
    let line = &buf[..line_end];
    let (name, rest) = split_op(line);
    let upper = name.to_ascii_uppercase();
    let op = match upper.as_slice() {
        b"PING" => {
            buf.advance(nl + 1);
            return Ok(Some(ClientOp::Ping));
        }
        b"PONG" => {
            buf.advance(nl + 1);
            return Ok(Some(ClientOp::Pong));
        }
        b"CONNECT" => {
            let json = Bytes::copy_from_slice(trim(rest));
            buf.advance(nl + 1);
            return Ok(Some(ClientOp::Connect(json)));
        }
        b"SUB" => {
            let args = fields(rest);
            let (subject, sid) = match args.as_slice() {
                [s, sid] | [s, _, sid] => (Bytes::copy_from_slice(s), Bytes::copy_from_slice(sid)),
                _ => return Err(bad("SUB", line)),
            };
            buf.advance(nl + 1);
            return Ok(Some(ClientOp::Sub { subject, sid }));
        }
        b"UNSUB" => {
            let args = fields(rest);
            let (sid, max) = match args.as_slice() {
                [sid] => (Bytes::copy_from_slice(sid), None),
                [sid, max] => (Bytes::copy_from_slice(sid), Some(number(max).ok_or_else(|| bad("UNSUB", line))?)),
                _ => return Err(bad("UNSUB", line)),
            };
            buf.advance(nl + 1);
            return Ok(Some(ClientOp::Unsub { sid, max }));
        }
        b"PUB" | b"HPUB" => upper,
        _ => return Err(ProtoError::UnknownOp(String::from_utf8_lossy(&name[..name.len().min(32)]).into_owned())),
    };
    let hpub = op == b"HPUB";
    let what = if hpub { "HPUB" } else { "PUB" };
    let args = fields(rest);
    let n = args.len();
    let sizes = if hpub { 2 } else { 1 };
    if n < 1 + sizes || n > 2 + sizes {
        return Err(bad(what, line));
    }
    let subject = args[0];
    let reply = (n == 2 + sizes).then(|| args[1]);
    let total = number(args[n - 1]).ok_or_else(|| bad(what, line))? as usize;
    let header_len = if hpub { number(args[n - 2]).ok_or_else(|| bad(what, line))? as usize } else { 0 };
    if header_len > total {
        return Err(bad(what, line));
    }
    if total > max_payload {
        return Err(ProtoError::PayloadTooLarge { size_bytes: total, max_bytes: max_payload });
    }
    let subject = Bytes::copy_from_slice(subject);
    let reply = reply.map(Bytes::copy_from_slice);
    let start = nl + 1;
    if buf.len() < start + total + 2 {
        // Wait for the payload; reserve once so the read loop does not grow in steps.
        buf.reserve(start + total + 2 - buf.len());
        return Ok(None);
    }
    if &buf[start + total..start + total + 2] != b"\r\n" {
        return Err(ProtoError::BadPayloadEnd);
    }
    buf.advance(start);
    let mut body = buf.split_to(total).freeze();
    buf.advance(2);
    let headers = hpub.then(|| body.split_to(header_len));
    Ok(Some(ClientOp::Pub { subject, reply, headers, payload: body }))
}

fn bad(op: &'static str, line: &[u8]) -> ProtoError {
    ProtoError::BadArgs { op, line: String::from_utf8_lossy(&line[..line.len().min(128)]).into_owned() }
}

fn split_op(line: &[u8]) -> (&[u8], &[u8]) {
    let line = trim(line);
    match line.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[]),
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn fields(s: &[u8]) -> Vec<&[u8]> {
    s.split(|b| *b == b' ' || *b == b'\t').filter(|f| !f.is_empty()).take(8).collect()
}

fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// The value of header `name` (case-insensitive) in a NATS header block
/// (`NATS/1.0[ status]\r\nKey: Value\r\n...\r\n`).
pub fn header<'a>(block: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut lines = block.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    lines.next()?; // the version line
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        if line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            return Some(trim(&line[colon + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Result<Vec<ClientOp>, ProtoError> {
        let mut buf = BytesMut::from(input);
        let mut ops = Vec::new();
        while let Some(op) = parse(&mut buf, 1024)? {
            ops.push(op);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(ops)
    }

    #[test]
    fn parses_every_operation() {
        let ops = all(b"CONNECT {\"verbose\":false}\r\nping\r\nPONG\r\nSUB _INBOX.a.* 1\r\nSUB x q 2\r\nUNSUB 1 5\r\n\
PUB a.b 3\r\nabc\r\nPUB a.b _INBOX.a.1 0\r\n\r\nHPUB a.b r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
        .unwrap();
        assert_eq!(ops[0], ClientOp::Connect(Bytes::from_static(b"{\"verbose\":false}")));
        assert_eq!(ops[1..3], [ClientOp::Ping, ClientOp::Pong]);
        assert_eq!(ops[4], ClientOp::Sub { subject: Bytes::from_static(b"x"), sid: Bytes::from_static(b"2") });
        assert_eq!(ops[5], ClientOp::Unsub { sid: Bytes::from_static(b"1"), max: Some(5) });
        assert_eq!(
            ops[7],
            ClientOp::Pub {
                subject: Bytes::from_static(b"a.b"),
                reply: Some(Bytes::from_static(b"_INBOX.a.1")),
                headers: None,
                payload: Bytes::new()
            }
        );
        assert_eq!(
            ops[8],
            ClientOp::Pub {
                subject: Bytes::from_static(b"a.b"),
                reply: Some(Bytes::from_static(b"r")),
                headers: Some(Bytes::from_static(b"NATS/1.0\r\n\r\n")),
                payload: Bytes::from_static(b"hi")
            }
        );
    }

    #[test]
    fn every_split_point_gives_the_same_operations() {
        let input: &[u8] = b"PUB a 5\r\nhello\r\nHPUB b r 12 13\r\nNATS/1.0\r\n\r\nx\r\nPING\r\n";
        let whole = all(input).unwrap();
        for cut in 0..input.len() {
            let mut buf = BytesMut::from(&input[..cut]);
            let mut ops = Vec::new();
            while let Some(op) = parse(&mut buf, 1024).unwrap() {
                ops.push(op);
            }
            buf.extend_from_slice(&input[cut..]);
            while let Some(op) = parse(&mut buf, 1024).unwrap() {
                ops.push(op);
            }
            assert_eq!(ops, whole, "split at {cut}");
        }
    }

    #[test]
    fn hostile_input_is_an_error_not_an_allocation() {
        assert_eq!(all(b"PUB a 2000\r\n"), Err(ProtoError::PayloadTooLarge { size_bytes: 2000, max_bytes: 1024 }));
        assert_eq!(
            all(b"PUB a 99999999999999999999999\r\n").unwrap_err().to_string(),
            "Parser Error: bad arguments to PUB"
        );
        assert!(matches!(all(b"HPUB a 5 3\r\nabc\r\n"), Err(ProtoError::BadArgs { .. })));
        assert_eq!(all(b"PUB a 1\r\nxx\r\n"), Err(ProtoError::BadPayloadEnd));
        assert!(matches!(all(b"FOO bar\r\n"), Err(ProtoError::UnknownOp(_))));
        let long = vec![b'a'; CONTROL_LINE_BYTES_MAX + 10];
        assert_eq!(all(&long), Err(ProtoError::ControlLineTooLong));
        assert!(matches!(all(b"SUB\r\n"), Err(ProtoError::BadArgs { .. })));
    }

    #[test]
    fn headers_are_found_case_insensitively() {
        let block = b"NATS/1.0\r\nNats-Msg-Id: abc \r\nOther: x\r\n\r\n";
        assert_eq!(header(block, "nats-msg-id"), Some(&b"abc"[..]));
        assert_eq!(header(block, "Missing"), None);
        assert_eq!(header(b"NATS/1.0\r\n\r\n", "Nats-Msg-Id"), None);
    }
}
