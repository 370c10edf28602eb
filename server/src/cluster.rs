//! Node-to-node transport on TCP: the production `Net` (DESIGN §2).
//!
//! One outbound connection per peer carries this node's frames to it; frames from a peer
//! arrive on the connection that peer opened. A link is a datagram channel with the Net
//! contract: a frame queued may be lost (the queue is full, the peer is down, the
//! connection broke), and Raft and catch-up retry on their own.
//!
//! Wire format (docs/server.md, "Cluster links"):
//! ```text
//! hello:  "SLUICE\x00\x01" from:u64 fingerprint:u64 name_len:u8 name     (little-endian)
//! frame:  len:u32 tag:u8 body[len - 1]                                   len <= FRAME_BYTES_MAX + 1
//! ```
//! `fingerprint` is FNV-1a over the sorted node names: a node configured with a different
//! cluster is refused at the handshake, before any frame of it is read.
//!
//! Bounds: `PEER_QUEUE_FRAMES` frames queued per peer; frames over `FRAME_BYTES_MAX` are
//! refused on send and a length over it closes the inbound connection unread.

use bytes::{Buf, Bytes, BytesMut};
use sluice_core::env::{NodeId, FRAME_BYTES_MAX};
use sluice_core::format::fnv::Fnv64;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const MAGIC: &[u8; 8] = b"SLUICE\x00\x01";
/// Frames waiting for one peer's connection. A full queue drops the frame (Net: `Full`).
pub const PEER_QUEUE_FRAMES: usize = 4096;
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// What a frame's tag byte says it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// A frame for the node (Raft, catch-up): handed to `Node::handle_frame`.
    Node = 0,
    /// A client request forwarded to the node that can serve it (`forward.rs`).
    Forward = 1,
    /// The answer to a forwarded request.
    ForwardReply = 2,
}

impl Tag {
    fn from_u8(b: u8) -> Option<Tag> {
        match b {
            0 => Some(Tag::Node),
            1 => Some(Tag::Forward),
            2 => Some(Tag::ForwardReply),
            _ => None,
        }
    }
}

/// A frame that arrived from a peer.
#[derive(Debug)]
pub struct Inbound {
    pub from: NodeId,
    pub tag: Tag,
    pub body: Bytes,
}

#[derive(Default, Debug)]
pub struct LinkStats {
    pub frames_sent: AtomicU64,
    pub frames_dropped_full: AtomicU64,
    pub connects: AtomicU64,
}

/// The sending side: one bounded queue per peer, each drained by its own connection task.
#[derive(Clone)]
pub struct Links {
    queues: Arc<BTreeMap<NodeId, mpsc::Sender<(Tag, Bytes)>>>,
    pub stats: Arc<LinkStats>,
}

impl Links {
    /// Queues a frame for `to`; `false` if it was dropped (queue full, unknown peer, too
    /// large). Never blocks.
    pub fn send(&self, to: NodeId, tag: Tag, body: Bytes) -> bool {
        let Some(q) = self.queues.get(&to) else { return false };
        if body.len() > FRAME_BYTES_MAX {
            tracing::warn!(to, size_bytes = body.len(), "frame above FRAME_BYTES_MAX dropped");
            return false;
        }
        match q.try_send((tag, body)) {
            Ok(()) => true,
            Err(_) => {
                self.stats.frames_dropped_full.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// The cluster's identity check: FNV-1a over the sorted names.
pub fn fingerprint(nodes: &BTreeMap<NodeId, (String, SocketAddr)>) -> u64 {
    let mut h = Fnv64::new();
    for (id, (name, _)) in nodes {
        h.write(&id.to_le_bytes());
        h.write(&(name.len() as u64).to_le_bytes());
        h.write(name.as_bytes());
    }
    h.finish()
}

fn hello(id: NodeId, fingerprint: u64, name: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + 16 + 1 + name.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&fingerprint.to_le_bytes());
    b.push(u8::try_from(name.len()).expect("names are checked to fit"));
    b.extend_from_slice(name.as_bytes());
    b
}

/// Starts a connection task per peer and returns the sending side.
pub fn start_links(me: NodeId, nodes: &BTreeMap<NodeId, (String, SocketAddr)>) -> Links {
    let fp = fingerprint(nodes);
    let stats = Arc::new(LinkStats::default());
    let my_name = nodes[&me].0.clone();
    let mut queues = BTreeMap::new();
    for (&id, (_, addr)) in nodes {
        if id == me {
            continue;
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE_FRAMES);
        queues.insert(id, tx);
        tokio::spawn(outbound(id, *addr, hello(me, fp, &my_name), rx, stats.clone()));
    }
    Links { queues: Arc::new(queues), stats }
}

/// Keeps one connection to `peer` up, reconnecting with exponential backoff, and writes
/// queued frames to it. Frames taken while no connection is up are dropped (Net allows it):
/// holding them would deliver stale Raft messages in a burst after a long outage.
async fn outbound(
    peer: NodeId,
    addr: SocketAddr,
    hello: Vec<u8>,
    mut rx: mpsc::Receiver<(Tag, Bytes)>,
    stats: Arc<LinkStats>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(peer, %addr, error = %e, "connect failed; retrying");
                // Drain what queued meanwhile so the queue does not fill with stale frames.
                while rx.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                if rx.is_closed() {
                    return;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        stats.connects.fetch_add(1, Ordering::Relaxed);
        let mut w = BufWriter::with_capacity(256 * 1024, stream);
        if w.write_all(&hello).await.is_err() || w.flush().await.is_err() {
            continue;
        }
        tracing::info!(peer, %addr, "cluster link up");
        backoff = BACKOFF_MIN;
        match write_frames(&mut w, &mut rx, &stats).await {
            Ok(()) => return, // the queue closed: shutting down
            Err(e) => tracing::info!(peer, %addr, error = %e, "cluster link down; reconnecting"),
        }
    }
}

async fn write_frames(
    w: &mut BufWriter<TcpStream>,
    rx: &mut mpsc::Receiver<(Tag, Bytes)>,
    stats: &LinkStats,
) -> std::io::Result<()> {
    while let Some((tag, body)) = rx.recv().await {
        let mut next = Some((tag, body));
        // Batch what is queued into one flush.
        while let Some((tag, body)) = next.take() {
            let len = u32::try_from(body.len() + 1).expect("bounded by FRAME_BYTES_MAX");
            w.write_all(&len.to_le_bytes()).await?;
            w.write_all(&[tag as u8]).await?;
            w.write_all(&body).await?;
            stats.frames_sent.fetch_add(1, Ordering::Relaxed);
            next = rx.try_recv().ok();
        }
        w.flush().await?;
    }
    Ok(())
}

/// Accepts peers' connections and hands their frames to `deliver` (bounded: a slow node
/// pushes back on the peer's TCP connection). `T` is whatever the receiver's queue holds, so
/// frames go straight into the node's event queue.
pub async fn accept<T: From<Inbound> + Send + 'static>(
    listener: TcpListener,
    nodes: Arc<BTreeMap<NodeId, (String, SocketAddr)>>,
    me: NodeId,
    deliver: mpsc::Sender<T>,
) {
    let fp = fingerprint(&nodes);
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "cluster accept failed");
                tokio::time::sleep(BACKOFF_MIN).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let nodes = nodes.clone();
        let deliver = deliver.clone();
        tokio::spawn(async move {
            match inbound(stream, &nodes, me, fp, deliver).await {
                Ok(()) => {}
                Err(e) => tracing::info!(%remote, error = %e, "cluster connection closed"),
            }
        });
    }
}

async fn inbound<T: From<Inbound>>(
    mut stream: TcpStream,
    nodes: &BTreeMap<NodeId, (String, SocketAddr)>,
    me: NodeId,
    fp: u64,
    deliver: mpsc::Sender<T>,
) -> Result<(), String> {
    let mut head = [0u8; 8 + 8 + 8 + 1];
    tokio::time::timeout(HELLO_TIMEOUT, stream.read_exact(&mut head))
        .await
        .map_err(|_| "no hello within 5 s".to_string())?
        .map_err(|e| format!("hello: {e}"))?;
    if &head[..8] != MAGIC {
        return Err("not a sluice node (bad magic)".into());
    }
    let mut h = &head[8..];
    let from = h.get_u64_le();
    let their_fp = h.get_u64_le();
    let name_len = h.get_u8() as usize;
    let mut name = vec![0u8; name_len];
    stream.read_exact(&mut name).await.map_err(|e| format!("hello name: {e}"))?;
    let Some((expected, _)) = nodes.get(&from).filter(|_| from != me) else {
        return Err(format!("hello from unknown node id {from}"));
    };
    if expected.as_bytes() != name.as_slice() || their_fp != fp {
        return Err(format!(
            "node {from} calls itself {:?} with cluster fingerprint {their_fp:016x}; expected {expected:?} and {fp:016x}: the nodes' peer lists differ",
            String::from_utf8_lossy(&name)
        ));
    }
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        while buf.len() < 4 {
            if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Ok(());
            }
        }
        let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        if len == 0 || len > FRAME_BYTES_MAX + 1 {
            return Err(format!("frame of {len} bytes from node {from}: outside 1..={}", FRAME_BYTES_MAX + 1));
        }
        buf.reserve((4 + len).saturating_sub(buf.len()));
        while buf.len() < 4 + len {
            if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err(format!("node {from} closed mid-frame"));
            }
        }
        buf.advance(4);
        let mut frame = buf.split_to(len).freeze();
        let tag = frame.get_u8();
        let Some(tag) = Tag::from_u8(tag) else {
            return Err(format!("frame with unknown tag {tag} from node {from}"));
        };
        if deliver.send(Inbound { from, tag, body: frame }.into()).await.is_err() {
            return Ok(()); // the node stopped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: u64) -> BTreeMap<NodeId, (String, SocketAddr)> {
        (1..=n).map(|i| (i, (format!("n{i}"), "127.0.0.1:1".parse().unwrap()))).collect()
    }

    #[test]
    fn fingerprint_depends_on_names_not_addresses() {
        let a = nodes(3);
        let mut b = nodes(3);
        b.get_mut(&2).unwrap().1 = "10.0.0.1:9".parse().unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.get_mut(&2).unwrap().0 = "x".into();
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }

    #[tokio::test]
    async fn frames_cross_and_a_stranger_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut cluster = nodes(2);
        cluster.get_mut(&2).unwrap().1 = addr;
        let (tx, mut rx) = mpsc::channel::<Inbound>(16);
        tokio::spawn(accept(listener, Arc::new(cluster.clone()), 2, tx));
        let links = start_links(1, &cluster);
        // The link connects in the background; frames sent before it is up may be dropped.
        let mut got = None;
        for _ in 0..200 {
            links.send(2, Tag::Node, Bytes::from_static(b"hello raft"));
            if let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await {
                got = Some(f);
                break;
            }
        }
        let f = got.expect("a frame crossed the link");
        assert_eq!((f.from, f.tag, &f.body[..]), (1, Tag::Node, &b"hello raft"[..]));

        // A node with another peer list is refused before its frames are read.
        let mut other = nodes(2);
        other.get_mut(&1).unwrap().0 = "stranger".into();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&hello(1, fingerprint(&other), "stranger")).await.unwrap();
        s.write_all(&[5, 0, 0, 0, 0, b'b', b'a', b'd', b'!']).await.unwrap();
        let mut end = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut end)).await.unwrap().unwrap_or(0);
        assert_eq!(n, 0, "the connection is closed");
        while let Ok(f) = rx.try_recv() {
            assert_ne!(&f.body[..], b"bad!", "a refused node's frame was delivered");
        }
    }
}
