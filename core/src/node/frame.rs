//! Frames between nodes that are not Raft messages: the stream catch-up exchange. They share
//! the Raft frame header (version, kind, group, from, to, term) so a node routes every frame
//! by its header alone; kinds above `KIND_RAFT_MAX` belong here. Layout: docs/node.md.
//!
//! * `CATCHUP_REQUEST` (16): header + `CatchupRequest` encoding;
//! * `CATCHUP_CHUNK` (17): header + `CatchupChunk` encoding;
//! * `CATCHUP_UNAVAILABLE` (18): header only; the peer cannot serve that range now.
//!
//! The header's `term` carries the requester's catch-up attempt number, echoed in the
//! answer, so a late answer to an abandoned request is recognised and dropped.

use crate::env::NodeId;
use crate::raft::message::{encode_header, Header, WireError, HEADER_BYTES, KIND_RAFT_MAX};
use crate::raft::GroupId;
use crate::stream::{CatchupChunk, CatchupRequest};
use bytes::{Bytes, BytesMut};

pub const KIND_CATCHUP_REQUEST: u8 = 16;
pub const KIND_CATCHUP_CHUNK: u8 = 17;
pub const KIND_CATCHUP_UNAVAILABLE: u8 = 18;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatchupBody {
    Request(CatchupRequest),
    Chunk(CatchupChunk),
    Unavailable,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchupFrame {
    pub group: GroupId,
    pub from: NodeId,
    pub to: NodeId,
    pub attempt: u64,
    pub body: CatchupBody,
}

impl CatchupFrame {
    pub fn encode(&self) -> Bytes {
        let (kind, body) = match &self.body {
            CatchupBody::Request(r) => (KIND_CATCHUP_REQUEST, r.encode()),
            CatchupBody::Chunk(c) => (KIND_CATCHUP_CHUNK, c.encode()),
            CatchupBody::Unavailable => (KIND_CATCHUP_UNAVAILABLE, Vec::new()),
        };
        let mut out = BytesMut::with_capacity(HEADER_BYTES + body.len());
        let h = Header { kind, group: self.group, from: self.from, to: self.to, term: self.attempt };
        encode_header(&mut out, &h);
        out.extend_from_slice(&body);
        out.freeze()
    }

    /// Decodes a frame whose header was already read as `h` (a non-Raft kind).
    pub fn decode(h: &Header, frame: &[u8]) -> Result<CatchupFrame, String> {
        assert!(h.kind > KIND_RAFT_MAX);
        let body = frame.get(HEADER_BYTES..).ok_or("frame shorter than its header")?;
        let body = match h.kind {
            KIND_CATCHUP_REQUEST => CatchupBody::Request(CatchupRequest::decode(body).map_err(|e| e.to_string())?),
            KIND_CATCHUP_CHUNK => CatchupBody::Chunk(CatchupChunk::decode(body).map_err(|e| e.to_string())?),
            KIND_CATCHUP_UNAVAILABLE if body.is_empty() => CatchupBody::Unavailable,
            KIND_CATCHUP_UNAVAILABLE => return Err(format!("{} bytes after an unavailable answer", body.len())),
            kind => return Err(WireError::UnknownKind { kind }.to_string()),
        };
        Ok(CatchupFrame { group: h.group, from: h.from, to: h.to, attempt: h.term, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::decode_header;
    use crate::store::StoredMessage;

    #[test]
    fn round_trip_and_hostile_input() {
        let frames = [
            CatchupBody::Request(CatchupRequest { from_seq: 3, to_seq: 9, max_bytes: 100 }),
            CatchupBody::Chunk(CatchupChunk {
                from_seq: 3,
                through_seq: 5,
                messages: vec![StoredMessage {
                    seq: 4,
                    timestamp_ns: 7,
                    subject: Bytes::from_static(b"a.b"),
                    headers: Bytes::new(),
                    payload: Bytes::from_static(b"hi"),
                }],
            }),
            CatchupBody::Unavailable,
        ];
        for body in frames {
            let f = CatchupFrame { group: 12, from: 1, to: 2, attempt: 4, body };
            let bytes = f.encode();
            let h = decode_header(&bytes).unwrap();
            assert_eq!(CatchupFrame::decode(&h, &bytes).unwrap(), f);
            // Every truncation fails cleanly.
            for cut in HEADER_BYTES..bytes.len() {
                assert!(CatchupFrame::decode(&h, &bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert!(CatchupFrame::decode(&h, &longer).is_err());
        }
        let mut h = decode_header(
            &CatchupFrame { group: 1, from: 1, to: 2, attempt: 0, body: CatchupBody::Unavailable }.encode(),
        )
        .unwrap();
        h.kind = 99;
        assert!(CatchupFrame::decode(&h, &[0; HEADER_BYTES]).is_err());
    }
}
